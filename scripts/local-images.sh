#!/usr/bin/env bash
# Builds the images the compose stack needs from local parts, for machines that
# cannot pull from an image registry (CI here, air-gapped hosts):
#
#   bcm-local/base:bookworm-<recipe>  Debian bookworm made with debootstrap and
#                                     `docker import`, with PostgreSQL and HAProxy
#                                     from Debian's packages. Built once, then cached.
#   bcm-local/postgres:15             stands in for postgres:15-bookworm
#   bcm-local/haproxy:2               stands in for haproxy:2.8-bookworm
#   bcm-local/bcm:latest              the Dockerfile's `prebuilt` target: the
#                                     host-built bcm binary on the base image
#   bcm-local/garage:2                stands in for dxflrs/garage (the `s3`
#                                     profile): a garage binary built on the host
#                                     (GARAGE_BINARY, else `garage` on the PATH or
#                                     in ~/.cargo/bin); skipped when there is none
#
# docker/compose.local.yml puts these in place of the public images; everything
# else (compose file, configuration, health checks, HAProxy config) stays as users
# run it. Usage:
#
#   scripts/local-images.sh [BCM_BINARY]     # default target/debug/bcm
#
# Needs root (debootstrap) the first time, and the Debian mirror
# (DEBIAN_MIRROR, default http://deb.debian.org/debian).
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
cd "$(dirname "$0")/.."

binary="${1:-target/debug/bcm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
packages="postgresql,haproxy,ca-certificates,curl"
# The recipe names the base image: change the packages (or this line) and the
# next run builds a new one instead of reusing a stale cache.
recipe=$(printf 'bookworm minbase %s v1' "$packages" | sha256sum | cut -c1-12)
base="bcm-local/base:bookworm-$recipe"

say() { printf '== %s\n' "$*"; }
# docker build, quiet unless it fails (the legacy builder also warns on every run).
build() {
  local out
  out=$(docker build -q "$@" 2>&1) || {
    printf '%s\n' "$out" >&2
    echo "docker build $* failed" >&2
    return 1
  }
}

if docker image inspect "$base" >/dev/null 2>&1; then
  say "base image $base: cached"
else
  say "base image $base: debootstrap (minbase + $packages), once"
  if ! command -v debootstrap >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      say "installing debootstrap (apt-get)"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    else
      echo "debootstrap is not installed: run as root, or apt-get install debootstrap" >&2
      exit 1
    fi
  fi
  root=$(mktemp -d /var/tmp/bcm-base.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  start=$SECONDS
  # debootstrap replaces policy-rc.d and start-stop-daemon while it installs, so
  # the PostgreSQL package's post-install step cannot start a server here.
  debootstrap --variant=minbase --include="$packages" bookworm "$root" "$mirror" \
    >"$root.log" 2>&1 || {
    tail -30 "$root.log" >&2
    echo "debootstrap failed; its log: $root.log" >&2
    exit 1
  }
  rm -f "$root.log"
  # The package made a cluster at /var/lib/postgresql/15/main; the postgres
  # image makes its own in its volume, as the public image does.
  rm -rf "$root"/var/lib/postgresql/15 "$root"/etc/postgresql/15
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
    "$root"/var/cache/apt/archives/*.deb "$root"/var/log/*.log
  tar -C "$root" --numeric-owner -c . |
    docker import \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'CMD ["bash"]' \
      - "$base" >/dev/null
  rm -rf "$root"
  trap - EXIT
  say "base image built in $((SECONDS - start)) s"
fi

say "bcm-local/postgres:15 and bcm-local/haproxy:2 (from the base image)"
build --build-arg BASE_IMAGE="$base" -t bcm-local/postgres:15 \
  -f docker/local/postgres.Dockerfile docker/local
build --build-arg BASE_IMAGE="$base" -t bcm-local/haproxy:2 \
  -f docker/local/haproxy.Dockerfile docker/local

say "bcm-local/bcm:latest (Dockerfile target prebuilt, binary $binary)"
if [ ! -x "$binary" ]; then
  if [ "$binary" = target/debug/bcm ] && command -v cargo >/dev/null; then
    say "building $binary (cargo build --bin bcm)"
    cargo build --bin bcm
  else
    echo "$binary does not exist: build it first (cargo build --bin bcm)" >&2
    exit 1
  fi
fi
# Staged without debug info: a tenth of the size, so the image builds in seconds.
mkdir -p target/docker
strip --strip-debug -o target/docker/bcm "$binary"
build --target prebuilt --build-arg BASE_IMAGE="$base" \
  --build-arg BCM_BINARY=target/docker/bcm -t bcm-local/bcm:latest .
garage_bin="${GARAGE_BINARY:-$(command -v garage || echo "$HOME/.cargo/bin/garage")}"
if [ -x "$garage_bin" ]; then
  say "bcm-local/garage:2 (garage binary $garage_bin)"
  mkdir -p target/docker-garage
  strip --strip-debug -o target/docker-garage/garage "$garage_bin"
  build --build-arg BASE_IMAGE="$base" -t bcm-local/garage:2 \
    -f docker/local/garage.Dockerfile target/docker-garage
else
  say "bcm-local/garage:2 skipped: no garage binary (cargo install garage), so no s3 profile"
fi
# Each new binary leaves the previous bcm image untagged: remove those.
docker image prune --force --filter label=org.opencontainers.image.title=bcm >/dev/null
say "local images ready"
