# bcm in a container.
#
#   docker build -t bcm .                        # build from source in the rust image
#   cargo build --release --bin bcm && \
#   docker build --target prebuilt -t bcm .      # package a binary built on this host
#
# The host-built binary must be linked against a glibc no newer than the base
# image's (Debian bookworm: 2.36); build on bookworm or older.
# BASE_IMAGE and RUST_IMAGE can point at local mirrors of the public images.

ARG RUST_IMAGE=rust:1-bookworm
ARG BASE_IMAGE=debian:bookworm-slim

# ---- what every bcm image has: a non-root user, a data volume, a health check ----
FROM ${BASE_IMAGE} AS runtime-base
LABEL org.opencontainers.image.title="bcm" \
      org.opencontainers.image.description="Backup Cluster Manager: one node of a bcm cluster" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 bcm \
 && useradd --system --uid 10001 --gid bcm --home-dir /var/lib/bcm --shell /usr/sbin/nologin bcm \
 && mkdir -p /var/lib/bcm /etc/bcm \
 && chown bcm:bcm /var/lib/bcm
WORKDIR /var/lib/bcm
# Public HTTP (API, web UI, health, metrics) and cluster-internal Raft RPC.
EXPOSE 8080 9080
VOLUME ["/var/lib/bcm"]
ENV BCM_NODE__DATA_DIR=/var/lib/bcm \
    BCM_NODE__API_LISTEN=0.0.0.0:8080 \
    BCM_NODE__RPC_LISTEN=0.0.0.0:9080
# Runs bcm as bcm; started as root (compose does), it first copies the secrets
# in /run/secrets to /run/bcm for bcm alone (docker/entrypoint.sh).
COPY docker/entrypoint.sh /usr/local/bin/bcm-entrypoint
USER bcm
# Healthy = ready: the node knows the leader and has applied what it committed.
# `bcm healthcheck` needs no curl in the image.
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 \
  CMD ["bcm", "healthcheck", "--url", "http://127.0.0.1:8080/readyz"]
ENTRYPOINT ["bcm-entrypoint"]
CMD ["node", "--config", "/etc/bcm/bcm.toml"]

# ---- a binary built on the host (before the source build, so that building this
#      target never needs the rust image) ----
FROM runtime-base AS prebuilt
ARG BCM_BINARY=target/release/bcm
USER root
# The classic builder (Docker without BuildKit, docker-compose v1) builds every
# stage before the one it is asked for, so this stage must also build when there
# is no host binary: the trailing * lets the pattern match nothing, and Cargo.lock
# (always there) keeps COPY from having no source at all.
COPY Cargo.lock ${BCM_BINARY}* /tmp/prebuilt/
RUN bin=$(find /tmp/prebuilt -type f ! -name Cargo.lock | head -n 1); \
    if [ -n "$bin" ]; then install -m 0755 "$bin" /usr/local/bin/bcm; \
    else echo "no ${BCM_BINARY} in the build context: this stage has no bcm binary"; fi; \
    rm -rf /tmp/prebuilt
USER bcm

# ---- the source build ----
FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin bcm \
 && install -m 0755 target/release/bcm /usr/local/bin/bcm

# ---- the default image: the source build on debian:bookworm-slim ----
FROM runtime-base AS runtime
COPY --from=build /usr/local/bin/bcm /usr/local/bin/bcm
