#!/usr/bin/env bash
# Writes .env for `docker compose`: the compose project name and freshly generated
# secrets (the cluster secret, the first admin password, the PostgreSQL password,
# and for the `s3` profile Garage's RPC secret and the access key bcm5 uses).
# .env is ignored by git and readable only by you; an existing .env is kept as it
# is (the cluster's data was made with those secrets), so running this again is safe.
#
#   scripts/compose-init.sh            # writes ./.env unless it exists
#   scripts/compose-init.sh FILE       # writes FILE instead (the tests use this)
set -euo pipefail
cd "$(dirname "$0")/.."

file="${1:-.env}"

if [ -e "$file" ]; then
  echo "$file exists; keeping it (delete it and the volumes, docker compose down -v, to start over)"
else
  # 32 letters and digits from the kernel's random source: safe in a URL and in YAML.
  random() { LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32; }
  # Garage wants hex: a 64-digit RPC secret and secret key, a GK + 24-digit key id.
  hex() { LC_ALL=C tr -dc '0-9a-f' </dev/urandom | head -c "$1"; }
  umask 077
  cat >"$file" <<ENV
# Written by scripts/compose-init.sh on $(date -u +%Y-%m-%d). Keep it secret; never commit it.
# The cluster's data was created with these values: change them only together with
# \`docker compose down -v\` (which deletes all data).
COMPOSE_PROJECT_NAME=bcm
BCM_CLUSTER_SECRET=$(random)
BCM_ADMIN_PASSWORD=$(random)
POSTGRES_PASSWORD=$(random)
GARAGE_RPC_SECRET=$(hex 64)
GARAGE_ACCESS_KEY_ID=GK$(hex 24)
GARAGE_SECRET_KEY=$(hex 64)
ENV
  echo "wrote $file with generated secrets"
fi

password=$(sed -n 's/^BCM_ADMIN_PASSWORD=//p' "$file")
cat <<MSG

next: docker compose up -d
then: http://127.0.0.1:8080  (the cluster through HAProxy; bcm1-bcm3 on :8081-:8083)
      user admin, password ${password:-(see BCM_ADMIN_PASSWORD in $file)}
MSG
