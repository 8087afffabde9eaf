# scalelab image: one image for the balancer, the nodes and the load tool.
#
#   docker build -t scalelab:latest .
#   docker run --rm scalelab:latest --help
#   docker compose up -d          # compose.yaml (rendered by `scalelab compose`) uses it
#
# The tests cannot run this build (no registry to pull the base images from); they lint it
# with hadolint, check offline that its dependency stage and its build context resolve the
# workspace (scripts/test-docker.sh, check dockerfile-workspace), and assemble an image with
# the same runtime layout from the locally built binary instead (scripts/docker-image.sh):
# binary at /usr/local/bin/scalelab, user scalelab (uid/gid 10001), working directory
# /home/scalelab, the same ENTRYPOINT and CMD.

# ---- builder: release binary ------------------------------------------------------------
FROM rust:1-bookworm AS builder

# pingora builds zlib-ng (through libz-ng-sys) with cmake and a C compiler.
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake=3.25.* gcc=4:12.2.* \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# Dependencies first: this layer is rebuilt only when a manifest or the lock file changes.
# Stub sources give every workspace member a target so cargo can build the dependency graph.
# Every member of [workspace] members needs its manifest here (scripts/test-docker.sh checks
# that the list below matches `cargo metadata`).
COPY Cargo.toml Cargo.lock ./
COPY topology/Cargo.toml topology/
COPY wire/Cargo.toml wire/
COPY node/Cargo.toml node/
COPY balancer/Cargo.toml balancer/
COPY loadgen/Cargo.toml loadgen/
COPY lab/Cargo.toml lab/
COPY experiment/Cargo.toml experiment/
# The benchmarks' pingora peer: a workspace member whose one target is an example, never
# built here.
COPY bench/Cargo.toml bench/
ARG MEMBERS="topology wire node balancer loadgen lab experiment bench"
RUN for m in $MEMBERS; do mkdir -p "$m/src" && touch "$m/src/lib.rs"; done \
    && mkdir -p src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && for m in $MEMBERS; do rm -rf "$m/src"; done \
    && rm -rf src

# Then the sources. COPY keeps their modification times, which can be older than the stub
# build's artifacts: touch them so cargo rebuilds the workspace crates for real. The debug
# line tables the release profile keeps are dropped (80 MB -> 15 MB); symbols stay.
COPY . .
RUN for m in $MEMBERS; do find "$m/src" -name '*.rs' -exec touch {} +; done \
    && find src -name '*.rs' -exec touch {} + \
    && cargo build --release --locked \
    && mkdir /out \
    && strip --strip-debug -o /out/scalelab target/release/scalelab

# ---- runtime: Debian slim (the same glibc as the builder), non-root -------------------------
FROM debian:bookworm-slim AS runtime

RUN groupadd --gid 10001 scalelab \
    && useradd --no-log-init --uid 10001 --gid 10001 --create-home --home-dir /home/scalelab \
        --shell /usr/sbin/nologin scalelab

COPY --from=builder /out/scalelab /usr/local/bin/scalelab

# Numeric, so a runtime can check "not root" without reading /etc/passwd.
USER 10001:10001
WORKDIR /home/scalelab

# 8080 balancer traffic, 9090 balancer admin (/metrics, /state), 8081 a node.
EXPOSE 8080 9090 8081

# The subcommand comes from compose.yaml (`balancer`, `node`, `load`). `up` would start the
# whole lab inside one container, which is not what a container is for.
ENTRYPOINT ["/usr/local/bin/scalelab"]
CMD ["--help"]
