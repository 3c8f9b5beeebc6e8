#!/usr/bin/env bash
# Writes what `docker compose` needs before its first start: .env (the compose
# project's name and where its secrets are; nothing secret) and the secrets, each
# a file readable by you alone (0600) in a directory only you may enter (0700):
#
#   cluster_secret       the cluster's shared secret
#   admin_password       the first `admin` user's password
#   postgres_password    bcm's PostgreSQL password, and postgres_url, its URL
#   garage_rpc_secret    the `s3` profile's Garage: its RPC secret, its admin API
#   garage_admin_token   token, and the secret of the access key bcm5 keeps its
#   garage_secret_key    chunks with (docker/garage-init.sh gives Garage that key)
#   api_ca_cert          the API's HTTPS: the stack's own CA (its certificate, for
#   api_ca_key           clients to trust, and its key), and the certificate the
#   api_cert, api_key    nodes and HAProxy serve, with its key (api_pem: both in
#   api_pem              one file, for HAProxy); made with openssl
#
# Compose mounts into each container the secrets it needs, and bcm, PostgreSQL
# and Garage read them from there: none is in .env, docker-compose.yml, or a
# container's environment. Both are ignored by git.
#
# What exists is kept (the cluster's data was made with those secrets), so running
# this again is safe. A .env written by an older version, which held the secrets
# itself, is converted: its values go into the files and out of .env.
#
#   scripts/compose-init.sh               # writes ./.env and ./secrets/
#   scripts/compose-init.sh FILE [DIR]    # writes FILE, and the secrets into DIR
#                                         # (default: secrets/ beside FILE); the tests use this
set -euo pipefail
cd "$(dirname "$0")/.."

file="${1:-.env}"
dir="${2:-$(dirname "$file")/secrets}"
umask 077

# 32 letters and digits from the kernel's random source: safe in a URL and in YAML.
random() { LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32; }
# Garage wants hex: a 64-digit RPC secret and secret key, a GK + 24-digit key id.
hex() { LC_ALL=C tr -dc '0-9a-f' </dev/urandom | head -c "$1"; }
# The value of $1 in an existing .env (an older one held the secrets), else $2.
kept() {
  local v=""
  if [ -f "$file" ]; then v=$(sed -n "s/^$1=//p" "$file" | tail -n1); fi
  printf '%s' "${v:-$2}"
}

mkdir -p "$dir"
chmod 0700 "$dir"
wrote=()
# secret NAME VALUE: writes $dir/NAME (0600) unless it exists.
secret() {
  local path="$dir/$1"
  if [ ! -e "$path" ]; then
    printf '%s' "$2" >"$path"
    wrote+=("$1")
  fi
  chmod 0600 "$path"
}
secret cluster_secret "$(kept BCM_CLUSTER_SECRET "$(random)")"
secret admin_password "$(kept BCM_ADMIN_PASSWORD "$(random)")"
secret postgres_password "$(kept POSTGRES_PASSWORD "$(random)")"
secret postgres_url "postgres://bcm:$(cat "$dir/postgres_password")@postgres:5432/bcm"
secret garage_rpc_secret "$(kept GARAGE_RPC_SECRET "$(hex 64)")"
secret garage_secret_key "$(kept GARAGE_SECRET_KEY "$(hex 64)")"
secret garage_admin_token "$(hex 64)"
# Older versions handed Garage its key in an env file; garage-init does it now.
if [ -e "$dir/garage.env" ]; then
  rm -f "$dir/garage.env"
  echo "removed $dir/garage.env (Garage gets its key from garage-init now)"
fi
# The API's HTTPS: a CA of this stack (api_ca_cert, api_ca_key) and one
# certificate (api_cert, api_key; api_pem is both, for HAProxy) for every name
# the API is reached by: HAProxy and the nodes on the stack's network, and
# localhost where their ports are published. Clients trust secrets/api_ca_cert
# (`curl --cacert`, `bcm --cacert`, or a browser's certificate settings). Delete
# api_cert to have a new one made (the nodes and HAProxy load it at their next
# start; a node also reloads it as it changes).
api_names="DNS:localhost,DNS:haproxy,DNS:bcm1,DNS:bcm2,DNS:bcm3,DNS:bcm4,DNS:bcm5,IP:127.0.0.1,IP:::1"
if ! command -v openssl >/dev/null; then
  echo "openssl is needed to make the API's certificates (apt-get install openssl)" >&2
  exit 1
fi
if [ ! -e "$dir/api_ca_cert" ] || [ ! -e "$dir/api_ca_key" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=bcm compose stack API CA" -keyout "$dir/api_ca_key" -out "$dir/api_ca_cert" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  rm -f "$dir/api_cert"
  wrote+=(api_ca_cert api_ca_key)
fi
if [ ! -e "$dir/api_cert" ] || [ ! -e "$dir/api_key" ] || [ ! -e "$dir/api_pem" ]; then
  csr=$(mktemp)
  ext=$(mktemp)
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n' \
    "$api_names" >"$ext"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=bcm API" \
    -keyout "$dir/api_key" -out "$csr" 2>/dev/null
  openssl x509 -req -in "$csr" -CA "$dir/api_ca_cert" -CAkey "$dir/api_ca_key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 825 -extfile "$ext" -out "$dir/api_cert" 2>/dev/null
  rm -f "$csr" "$ext"
  cat "$dir/api_cert" "$dir/api_key" >"$dir/api_pem"
  chmod 0600 "$dir/api_cert" "$dir/api_key" "$dir/api_pem"
  wrote+=(api_cert api_key api_pem)
fi
if [ ${#wrote[@]} -gt 0 ]; then
  echo "wrote ${wrote[*]} in $dir"
fi

# .env names the secrets' directory: as given when it is the default, else absolute.
if [ "$file" = .env ] && [ "$dir" = ./secrets ]; then
  secrets_dir=./secrets
else
  secrets_dir=$(cd "$dir" && pwd)
fi
old_secrets='^(BCM_CLUSTER_SECRET|BCM_ADMIN_PASSWORD|POSTGRES_PASSWORD|GARAGE_RPC_SECRET|GARAGE_SECRET_KEY)='
if [ ! -e "$file" ]; then
  cat >"$file" <<ENV
# Written by scripts/compose-init.sh on $(date -u +%Y-%m-%d). The secrets are files
# in BCM_SECRETS; the cluster's data was created with them: change them only
# together with \`docker compose down -v\` (which deletes all data).
COMPOSE_PROJECT_NAME=bcm
BCM_SECRETS=$secrets_dir
# The access key bcm5 uses with Garage (the \`s3\` profile); its secret is a file.
GARAGE_ACCESS_KEY_ID=GK$(hex 24)
ENV
  echo "wrote $file"
elif grep -Eq "$old_secrets" "$file" || ! grep -q '^BCM_SECRETS=' "$file"; then
  converted=$(grep -Ev "$old_secrets" "$file" || true)
  grep -q '^BCM_SECRETS=' <<<"$converted" || converted+=$'\n'"BCM_SECRETS=$secrets_dir"
  grep -q '^GARAGE_ACCESS_KEY_ID=' <<<"$converted" || converted+=$'\n'"GARAGE_ACCESS_KEY_ID=GK$(hex 24)"
  printf '%s\n' "$converted" >"$file"
  echo "$file converted: its secrets are files in $secrets_dir now, and no longer in $file"
else
  echo "$file and $dir exist; keeping them (delete them and the volumes, docker compose down -v, to start over)"
fi

cat <<MSG

next: docker compose up -d
then: https://127.0.0.1:8080  (the cluster through HAProxy; bcm1-bcm3 on :8081-:8083)
      its certificate's CA: $dir/api_ca_cert  (curl --cacert, bcm --cacert, or your browser)
      user admin, password $(cat "$dir/admin_password")  (in $dir/admin_password)
MSG
