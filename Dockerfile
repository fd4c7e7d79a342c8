# syntax=docker/dockerfile:1
#
# Container image of the `portcullis` binary: controller, data plane, key tool
# and demo function.
#
#   docker build -t portcullis:dev .
#
# The build needs BuildKit (the default builder since Docker Engine 23).

ARG RUST_VERSION=1.95

# Build stage. The builder is Debian 12 (bookworm) so that the binary links
# against the same glibc as the distroless runtime stage below.
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src

# Dependency caching uses BuildKit cache mounts instead of a dependency-only
# layer. The cargo registry, the git checkouts and the target directory
# persist between builds, so a source change recompiles only the workspace
# crates that changed. A dependency-only layer would need a stub of every
# crate under crates/ (manifest plus empty targets, kept in sync by hand) and
# would still rebuild every dependency whenever any Cargo.toml changes. The
# sources are bind-mounted read-only, and because cache mounts are not part
# of the image, the binary is copied out of target/ in the same step.
RUN --mount=type=bind,target=/src \
    --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/cargo-target,sharing=locked \
    CARGO_TARGET_DIR=/cargo-target cargo build --release --locked -p portcullis \
    && install -D -m 0755 /cargo-target/release/portcullis /out/portcullis

# Runtime stage: glibc, libgcc and CA certificates, no shell and no package
# manager. The `nonroot` variant runs as UID and GID 65532.
FROM gcr.io/distroless/cc-debian12:nonroot

LABEL org.opencontainers.image.title="portcullis" \
      org.opencontainers.image.description="Kubernetes ingress controller that authenticates every route before any function runs" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=build /out/portcullis /portcullis

# A numeric user lets the kubelet verify `runAsNonRoot: true` without a
# `runAsUser` in the pod spec, because it cannot resolve a user name.
USER 65532:65532

# 8080 carries traffic and 9090 serves /healthz, /readyz and /metrics.
EXPOSE 8080 9090

ENTRYPOINT ["/portcullis"]
CMD ["run"]
