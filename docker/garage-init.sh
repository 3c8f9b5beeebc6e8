#!/usr/bin/env bash
# The compose stack's `s3` profile: makes Garage ready for bcm5 through Garage's
# admin API (v2), so that no secret is in any container's environment or command
# line: imports bcm5's access key (its secret from the file /run/secrets/
# garage_secret_key), creates the bucket and lets the key read and write it.
# Each step that finds its work done (the key or the bucket already there) passes,
# so it runs again on every `up`. It runs in the bcm image, which has bash but no
# curl: the requests are HTTP/1.0 over bash's /dev/tcp, one connection each.
#
# Environment: GARAGE_ADMIN (host:port of the admin API), GARAGE_ACCESS_KEY_ID,
# GARAGE_BUCKET; files: /run/secrets/garage_admin_token, /run/secrets/garage_secret_key
# (GARAGE_ADMIN_TOKEN_FILE and GARAGE_SECRET_KEY_FILE name others).
set -euo pipefail

admin="${GARAGE_ADMIN:-garage:3903}"
host="${admin%:*}"
port="${admin##*:}"
key_id="${GARAGE_ACCESS_KEY_ID:?}"
bucket="${GARAGE_BUCKET:-bcm}"
token=$(cat "${GARAGE_ADMIN_TOKEN_FILE:-/run/secrets/garage_admin_token}")
secret=$(cat "${GARAGE_SECRET_KEY_FILE:-/run/secrets/garage_secret_key}")

# request METHOD PATH [BODY]: sets $status and $body (printf and read are bash
# builtins, so the token and the secret appear in no process's arguments).
request() {
  local method=$1 path=$2 payload=${3:-} line
  exec 3<>"/dev/tcp/$host/$port" || return 1
  printf '%s %s HTTP/1.0\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s' \
    "$method" "$path" "$host" "$token" "${#payload}" "$payload" >&3
  IFS= read -r line <&3 || line=""
  status=$(printf '%s' "$line" | cut -d' ' -f2)
  # The headers end at the first empty line; the rest is the body.
  while IFS= read -r line <&3 && [ "${line%$'\r'}" != "" ]; do :; done
  body=$(cat <&3)
  exec 3<&-
}

# Garage answers /health once it runs (no token needed); give it a minute.
for _ in $(seq 60); do
  if request GET /health 2>/dev/null && [ "$status" = 200 ]; then break; fi
  sleep 1
done
[ "${status:-}" = 200 ] || { echo "garage-init: Garage's admin API at $admin did not answer" >&2; exit 1; }

request POST /v2/ImportKey "{\"accessKeyId\":\"$key_id\",\"secretAccessKey\":\"$secret\",\"name\":\"bcm\"}"
case "$status" in
  200) echo "garage-init: imported the access key $key_id" ;;
  409) echo "garage-init: the access key $key_id is there" ;;
  *) echo "garage-init: ImportKey answered $status: $body" >&2; exit 1 ;;
esac

request GET "/v2/GetBucketInfo?globalAlias=$bucket"
if [ "$status" = 404 ]; then
  request POST /v2/CreateBucket "{\"globalAlias\":\"$bucket\"}"
  [ "$status" = 200 ] || { echo "garage-init: CreateBucket answered $status: $body" >&2; exit 1; }
  echo "garage-init: created the bucket $bucket"
elif [ "$status" != 200 ]; then
  echo "garage-init: GetBucketInfo answered $status: $body" >&2
  exit 1
fi
# The answer's first "id" is the bucket's (64 hex digits).
bucket_id=$(printf '%s' "$body" | grep -o '"id" *: *"[0-9a-f]\{64\}"' | head -n1 | grep -o '[0-9a-f]\{64\}' || true)
[ -n "$bucket_id" ] || { echo "garage-init: no bucket id in: $body" >&2; exit 1; }

request POST /v2/AllowBucketKey "{\"bucketId\":\"$bucket_id\",\"accessKeyId\":\"$key_id\",\"permissions\":{\"read\":true,\"write\":true,\"owner\":true}}"
[ "$status" = 200 ] || { echo "garage-init: AllowBucketKey answered $status: $body" >&2; exit 1; }
echo "garage-init: $key_id may read and write the bucket $bucket"
