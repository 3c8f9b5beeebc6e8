# Stands in for the public haproxy:2.8-bookworm image where none can be pulled:
# HAProxy from Debian's packages (in the debootstrap base image), the same config
# path, the same non-root user and the same stop signal.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN mkdir -p /usr/local/etc/haproxy /var/lib/haproxy \
 && chown haproxy:haproxy /var/lib/haproxy
USER haproxy
WORKDIR /var/lib/haproxy
STOPSIGNAL SIGUSR1
CMD ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
