# model-agent: the sidecar image for KServe predictor pods (and its storage initializer).
#
# With a registry:
#   docker build --build-arg GIT_COMMIT="$(git rev-parse --short=12 HEAD)" -t model-agent .
# Without one (CI, air-gapped machines), from a binary built on the host, with
# `scripts/image`, which builds the binary, a bookworm base with debootstrap, then:
#   buildah bud --target runtime --build-arg BINARY_FROM=prebuilt \
#       --build-arg BASE_IMAGE=localhost/bookworm-minbase -t model-agent .
#
# The runtime image runs as uid/gid 65532 (`runAsNonRoot` works; a pod needs no
# runAsUser), has `model-agent` as its entrypoint so KServe's injected agent arguments
# work unchanged, and holds only the shared libraries the static-stdlib binary links.

# The toolchain that builds the binary, and the base the runtime stage starts from (glibc
# 2.36 or later: the release link packs relocations as DT_RELR, see Package.swift).
ARG SWIFT_IMAGE=swift:6.3-bookworm
ARG BASE_IMAGE=debian:bookworm-slim
# `build` compiles in the toolchain image; `prebuilt` takes .build/image/model-agent,
# a stripped static-stdlib binary made on the host by scripts/image. (buildah 1.28 needs
# it passed as --build-arg: it does not resolve a stage named by the default value.)
ARG BINARY_FROM=build

FROM ${SWIFT_IMAGE} AS build
ARG GIT_COMMIT=unknown
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libcurl4-openssl-dev libssl-dev zlib1g-dev libisal-dev binutils \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Package.swift names the test and fuzz targets' folders, so they come along; the
# .dockerignore keeps build products, venvs and git out.
COPY . .
# Then the release link of Package.swift's releaseLinkerFlags is checked, as scripts/image
# does: no symbol of its own exported, relocations packed.
RUN MODEL_AGENT_GIT_COMMIT="${GIT_COMMIT}" \
        swift build -c release --product model-agent --static-swift-stdlib \
    && nm -D --defined-only .build/release/model-agent >/tmp/exported && test ! -s /tmp/exported \
    && readelf -d .build/release/model-agent >/tmp/dynamic && grep -q '(RELR)' /tmp/dynamic \
    && install -D -m 0755 .build/release/model-agent /out/model-agent \
    && strip /out/model-agent

FROM scratch AS prebuilt
COPY .build/image/model-agent /out/model-agent

# Global ARGs are expanded in FROM lines only: this picks which stage provides the binary.
# (The label gives the stage an instruction: buildah leaves an empty stage's container behind.)
FROM ${BINARY_FROM} AS binary
LABEL org.opencontainers.image.title="model-agent binary"

# The CA bundle alone: the ca-certificates package depends on the openssl command (2.3 MiB
# and most of the CVE reports a scanner raises against such an image), which nothing here
# runs. libcurl reads /etc/ssl/certs/ca-certificates.crt; rebuilding the image refreshes it.
FROM ${BASE_IMAGE} AS certs
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

FROM ${BASE_IMAGE} AS runtime
ARG GIT_COMMIT=unknown
LABEL org.opencontainers.image.title="model-agent" \
      org.opencontainers.image.description="Sidecar keeping a KServe V2 model server holding the models of a mounted models.json" \
      org.opencontainers.image.revision="${GIT_COMMIT}"
# What `ldd model-agent` needs beyond the base (glibc, zlib, libstdc++, libgcc): libcurl
# with OpenSSL, OpenSSL's libcrypto, ISA-L for CRC-32C/CRC-32. Versions are not pinned:
# the suite's current security updates are wanted (.hadolint.yaml).
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libcurl4 libssl3 libisal2 \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \
    && install -d -o 65532 -g 65532 -m 0755 /mnt/models /mnt/configs
COPY --from=certs /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=binary /out/model-agent /usr/local/bin/model-agent
# KServe's agent port and the admin port (/v1/models, /metrics, /readyz, /livez).
EXPOSE 9081 9082
USER 65532:65532
ENTRYPOINT ["model-agent"]
