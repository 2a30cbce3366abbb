# The swarmcard builder: the compiled CLI and the programs it runs, nothing else (docs/docker.md).
#
#   make build && docker build -t swarmcard .        # or: swarmcard build PROFILE --in-docker
#   docker run --rm -v "$PWD:/src" -w /src --user "$(id -u):$(id -g)" swarmcard build profiles/x.yaml
#
# The base is pinned by release name; a release build pins its digest as well, e.g.
#   docker build --build-arg BASE=debian:trixie-slim@sha256:<digest> -t swarmcard:VERSION .
# Nothing here is architecture-specific (the JavaScript is compiled on the host, the dependencies are
# pure JavaScript, the rest comes from Debian), so the same file builds for amd64, arm64 and armhf.
ARG BASE=debian:trixie-slim

FROM ${BASE} AS runtime
# trixie's nodejs is 20.19. ca-certificates: base images given as https:// URLs are downloaded inside.
# No recommends, documentation, manual pages or translations (dpkg skips them, as Debian's slim
# images do), no apt lists or logs: they only add size (and bytes that change with the date).
RUN printf '%s\n' 'path-exclude=/usr/share/doc/*' 'path-include=/usr/share/doc/*/copyright' \
      'path-exclude=/usr/share/man/*' 'path-exclude=/usr/share/locale/*' 'path-exclude=/usr/share/info/*' \
      > /etc/dpkg/dpkg.cfg.d/swarmcard-slim \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      nodejs mtools e2fsprogs fdisk dosfstools xz-utils zstd unzip openssh-client ca-certificates \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/apt /var/log/dpkg.log /var/log/alternatives.log

# The context is the package as it is after `make build` (see .dockerignore). A checkout's
# node_modules also holds the development tools (TypeScript, Biome, ava): pruned here, in a stage
# of its own, so they never reach a layer of the final image.
FROM runtime AS app
WORKDIR /opt/swarmcard
COPY . .
RUN node build/builder/docker/prune-dev-deps.js

FROM runtime
COPY --from=app /opt/swarmcard /opt/swarmcard
# Any uid works (swarmcard build --in-docker runs as the caller's uid:gid); HOME must be writable by it.
ENV HOME=/tmp NODE_ENV=production
USER 10001:10001
WORKDIR /src
# Node as the CLI's first line starts it (the young generation capped: builder/cli.ts).
ENTRYPOINT ["node", "--max-semi-space-size=4", "/opt/swarmcard/build/builder/cli.js"]
CMD ["--help"]
