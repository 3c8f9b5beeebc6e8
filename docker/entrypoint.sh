#!/bin/sh
# The bcm image's entrypoint: `bcm ARGS`, run as the user bcm.
#
# Started as root (the compose stack starts its nodes so), it first copies the
# secrets Compose mounted in /run/secrets to /run/bcm (a tmpfs in the compose
# stack), owned by bcm and readable by it alone, and then becomes bcm. Compose
# mounts each secret as the host's file itself, with its owner and its mode, and
# scripts/compose-init.sh writes them readable by their owner only (0600): bcm
# could not read them where they are, and no one else in the container needs to.
set -eu

if [ "$(id -u)" = 0 ]; then
  if [ -d /run/secrets ]; then
    install -d -o bcm -g bcm -m 0700 /run/bcm
    for secret in /run/secrets/*; do
      if [ -f "$secret" ]; then
        install -o bcm -g bcm -m 0400 "$secret" "/run/bcm/${secret##*/}"
      fi
    done
  fi
  exec setpriv --reuid=bcm --regid=bcm --init-groups bcm "$@"
fi
exec bcm "$@"
