#!/usr/bin/env bash
# The failover demo: bcm's cluster in containers loses its leader, and carries on.
#
#   scripts/failover-demo.sh                  # with the public images (builds bcm)
#   scripts/failover-demo.sh --local-images   # with images built from local parts
#                                             # (scripts/local-images.sh), no registry
#
# It brings docker-compose.yml up (writing .env and the secrets first, unless
# they exist), writes through HAProxy, shows the cluster, kills the leader's
# container with `docker kill`, measures how long until writes through HAProxy
# succeed again and who leads then, kills the backup manager's container to show
# that role move too, starts both containers again and shows them rejoin, and
# ends by reading back every write that was acknowledged. The stack keeps running
# afterwards: open the cluster in a browser, or `docker compose down`.
#
# Needs docker with Compose (v2 `docker compose` or v1 `docker-compose`), curl,
# and GNU date.
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
cd "$(dirname "$0")/.."

files=(-f docker-compose.yml)
if [ "${1:-}" = "--local-images" ]; then
  scripts/local-images.sh >/dev/null
  files+=(-f docker/compose.local.yml)
fi

if docker compose version >/dev/null 2>&1; then
  compose_cmd=(docker compose)
else
  compose_cmd=(docker-compose)
fi
compose() { "${compose_cmd[@]}" "${files[@]}" "$@"; }

# ---- output helpers ----------------------------------------------------------
bold=$'\e[1m' dim=$'\e[2m' green=$'\e[32m' red=$'\e[31m' off=$'\e[0m'
[ -t 1 ] || bold='' dim='' green='' red='' off=''
step=0
section() { step=$((step + 1)); printf '\n%s%d. %s%s\n' "$bold" "$step" "$*" "$off"; }
say() { printf '   %s\n' "$*"; }
ok() { printf '   %s✔%s %s\n' "$green" "$off" "$*"; }
fail() { printf '   %s✘ %s%s\n' "$red" "$*" "$off" >&2; exit 1; }
indent() { sed 's/^/   /'; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# ---- the stack ---------------------------------------------------------------
scripts/compose-init.sh >/dev/null # writes, or converts, .env and the secrets; keeps what exists
env_value() { sed -n "s/^$1=//p" .env | tail -n1; }
secrets=$(env_value BCM_SECRETS)
password=$(cat "${secrets:-./secrets}/admin_password")
port=$(env_value BCM_PORT)
proxy="https://127.0.0.1:${port:-8080}"
# The API is HTTPS with the stack's own CA (scripts/compose-init.sh made it).
cacert="${secrets:-./secrets}/api_ca_cert"
curl() { command curl --cacert "$cacert" "$@"; }

container() { compose ps --all -q "$1"; }
health() {
  local id
  id=$(container "$1")
  [ -n "$id" ] || { echo missing; return; }
  docker inspect --format '{{if .State.Running}}{{if .State.Health}}{{.State.Health.Status}}{{else}}running{{end}}{{else}}{{.State.Status}}{{end}}' "$id"
}
wait_healthy() { # wait_healthy TIMEOUT SERVICE...
  local deadline=$((SECONDS + $1)) s all
  shift
  while :; do
    all=true
    for s in "$@"; do [ "$(health "$s")" = healthy ] || all=false; done
    $all && return 0
    [ $SECONDS -lt $deadline ] || fail "not healthy after waiting: $(for s in "$@"; do printf '%s=%s ' "$s" "$(health "$s")"; done)"
    sleep 0.5
  done
}

# ---- the API, through HAProxy ------------------------------------------------
token=
login() {
  local body
  body=$(curl -sf -m 5 -X POST "$proxy/api/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"username\":\"admin\",\"password\":\"$password\"}") || return 1
  token=$(printf '%s' "$body" | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
  [ -n "$token" ]
}
# put KEY VALUE: the HTTP status of PUT /api/v1/config/KEY through HAProxy.
put() {
  curl -s -o /dev/null -w '%{http_code}' -m 3 -X PUT "$proxy/api/v1/config/$1" \
    -H "authorization: Bearer $token" -H 'content-type: application/json' \
    -d "{\"value\":$2}" || true
}
leader() { curl -s -m 2 "$proxy/leader" | sed -n 's/.*"node_id":\([0-9]*\).*/\1/p'; }
cluster_json() { curl -s -m 5 "$proxy/api/v1/cluster" -H "authorization: Bearer $token"; }
backup_manager() { # prints "NODE EPOCH" of the backup-manager role
  local bm
  bm=$(cluster_json | grep -o '"backup_manager":{[^}]*}' || true)
  printf '%s %s\n' "$(sed -n 's/.*"node_id":\([0-9]*\).*/\1/p' <<<"$bm")" \
    "$(sed -n 's/.*"epoch":\([0-9]*\).*/\1/p' <<<"$bm")"
}
# wait_bm_moved EPOCH: waits until the role has an epoch above EPOCH; prints "NODE EPOCH".
wait_bm_moved() {
  local n e deadline=$((SECONDS + 60))
  while :; do
    read -r n e <<<"$(backup_manager)"
    if [ -n "$e" ] && [ "$e" -gt "$1" ]; then
      echo "$n $e"
      return
    fi
    [ $SECONDS -lt $deadline ] || fail "the backup-manager role did not move within 60 s"
    sleep 0.2
  done
}
status() { # bcm status, run inside a node that is up
  local s
  for s in bcm1 bcm2 bcm3; do
    if [ "$(health "$s")" = healthy ]; then
      compose exec -T "$s" sh -c \
        'BCM_PASSWORD="$(cat /run/bcm/admin_password)" bcm --cacert /run/bcm/api_ca_cert status --server https://haproxy:8080' |
        indent || say "(bcm status in $s failed)"
      return
    fi
  done
}

# start_again NODE BEFORE AFTER: docker start bcmNODE, wait until it is ready, say
# "bcmNODE BEFORE <seconds it took> AFTER", and show the cluster.
start_again() {
  local t
  t=$(now)
  docker start "$(container "bcm$1")" >/dev/null
  wait_healthy 120 "bcm$1"
  ok "bcm$1 $2 $(since "$t") $3"
  sleep 1.5
  status
}

run="demo-$(date +%H%M%S)"
acked=()
write_n() { # write_n N: N writes through HAProxy, each retried until acknowledged
  local i k
  for i in $(seq 1 "$1"); do
    k="$run-${#acked[@]}"
    until [ "$(put "$k" "${#acked[@]}")" = 200 ]; do sleep 0.1; done
    acked+=("$k")
  done
}

# ---- the story ---------------------------------------------------------------
printf '%sbcm failover demo%s  (%s)\n' "$bold" "$off" "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"

section "Starting the stack: PostgreSQL, bcm1-bcm3, HAProxy"
t0=$(now)
compose up -d 2>&1 | sed 's/^/   /' | grep -v '^ *$' || true
wait_healthy 300 postgres bcm1 bcm2 bcm3 haproxy
ok "all containers healthy after $(since "$t0") s"
until login; do sleep 0.5; done
say "HAProxy at $proxy sends every request to the leader (GET /leader)"

section "Writing 20 settings through HAProxy"
write_n 20
ok "${#acked[@]} writes acknowledged"

section "The cluster"
status

old=$(leader)
read -r bm_node bm_epoch <<<"$(backup_manager)"
section "Killing the leader's container: docker kill (bcm$old, the cluster manager)"
t_kill=$(now)
docker kill "$(container "bcm$old")" >/dev/null
say "killed bcm$old at $(date -u +%H:%M:%S.%3N)"
failed=0
until [ "$(put "$run-${#acked[@]}" "${#acked[@]}")" = 200 ]; do
  failed=$((failed + 1))
  sleep 0.05
done
took=$(since "$t_kill")
acked+=("$run-${#acked[@]}")
new=$(leader)
ok "writes through HAProxy succeed again ${bold}$took s${off} after the kill ($failed attempts failed meanwhile)"
ok "bcm$new leads now: the cluster-manager role moved from bcm$old to bcm$new"
write_n 10
ok "10 more writes acknowledged"
sleep 1.5
status

section "The backup-manager role"
say "before the kill bcm$bm_node held it (epoch $bm_epoch)"
if [ "$bm_node" = "$old" ]; then
  say "it died with the leader: the new cluster manager moves it after a grace period (3 s)"
  moved_to=$(wait_bm_moved "$bm_epoch")
  read -r n e <<<"$moved_to"
  ok "the role moved from bcm$bm_node to ${bold}bcm$n${off} (epoch $e), $(since "$t_kill") s after the kill"
  moved=true
else
  say "the cluster manager gives it to another node than itself, so losing the leader did not"
  say "lose the backup manager: it stays on bcm$bm_node until bcm$bm_node fails"
  moved=false
fi

section "Starting bcm$old again: docker start"
start_again "$old" "rejoined and caught up (ready)" "s after docker start"

if [ "$moved" = false ]; then
  section "Killing the backup manager's container: docker kill (bcm$bm_node)"
  [ "$bm_node" != "$(leader)" ] ||
    say "bcm$bm_node leads now as well: both roles move, the cluster manager's first"
  t_bm=$(now)
  docker kill "$(container "bcm$bm_node")" >/dev/null
  moved_to=$(wait_bm_moved "$bm_epoch")
  read -r n e <<<"$moved_to"
  ok "the role moved from bcm$bm_node to ${bold}bcm$n${off} (epoch $e), $(since "$t_bm") s after the kill"
  say "(epoch $e fences off the old holder: storage nodes refuse work from epoch $bm_epoch)"
  write_n 10
  ok "10 more writes acknowledged meanwhile"
  start_again "$bm_node" "started again, rejoined and caught up" "s later"
fi

section "Checking every acknowledged write (${#acked[@]}) through HAProxy, linearizable reads"
lost=0
for i in "${!acked[@]}"; do
  body=$(curl -s -m 5 "$proxy/api/v1/config/${acked[$i]}?consistency=linearizable" \
    -H "authorization: Bearer $token")
  case "$body" in
    *"\"value\":$i,"* | *"\"value\":$i}"*) ;;
    *) lost=$((lost + 1)); say "${acked[$i]}: expected $i, got $body" ;;
  esac
done
[ "$lost" = 0 ] || fail "$lost of ${#acked[@]} acknowledged writes are missing"
ok "all ${#acked[@]} acknowledged writes are there: nothing was lost"

printf '\n%sThe stack keeps running.%s\n' "$bold" "$off"
say "the cluster (API and web UI, on the leader): $proxy   user admin, password in ${secrets:-./secrets}/admin_password"
say "its certificate's CA (trust it in your browser, or curl --cacert): $cacert"
say "each node itself: https://127.0.0.1:$(env_value BCM1_PORT | grep . || echo 8081) (bcm1), likewise bcm2, bcm3"
say "stop it: docker compose down (data stays in volumes; down -v deletes it)"
