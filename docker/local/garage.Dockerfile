# Stands in for the public dxflrs/garage image where none can be pulled: the
# garage binary built on the host (cargo install garage), at the same path, with
# the same entrypoint and default command.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY garage /garage
ENTRYPOINT ["/garage"]
CMD ["server"]
