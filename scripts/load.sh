#!/usr/bin/env bash
# Drive load at the lab: `scalelab load` aimed at the balancer (http://127.0.0.1:8080) unless
# --url says otherwise. Every argument is passed through; see `scalelab load --help`.
#
#   scripts/load.sh                                   # 10 s closed loop, 16 connections, /op1
#   scripts/load.sh --mix op1=9,op2=1 --duration 30s  # weighted paths
#   scripts/load.sh --rate 500 --duration 20s         # open loop, latency from intended send
#   scripts/load.sh --url http://127.0.0.1:8081 --requests 1000 --json
#
# Which load tool runs:
#   - SCALELAB_BIN, if set;
#   - else the release build (built first when cargo is installed and it is missing);
#   - else, with no Rust on the machine, the load tool inside the lab's Docker image
#     (scalelab:latest): on the host's network, so http://127.0.0.1:8080 is the balancer's
#     published port; or on the Compose network when SCALELAB_DOCKER_NETWORK names it
#     (e.g. SCALELAB_DOCKER_NETWORK=scalelab_default scripts/load.sh --url http://balancer:8080).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
bin="${SCALELAB_BIN:-$target_dir/release/scalelab}"

run=("$bin" load)
if [ ! -x "$bin" ]; then
    if command -v cargo >/dev/null; then
        echo "load.sh: building $bin" >&2
        (cd "$root" && cargo build --release)
    elif command -v docker >/dev/null && docker image inspect scalelab:latest >/dev/null 2>&1; then
        network="${SCALELAB_DOCKER_NETWORK:-host}"
        echo "load.sh: no Rust here; running the load tool from scalelab:latest (network $network)" >&2
        tty=()
        [ -t 1 ] && tty=(-t)
        run=(docker run --rm "${tty[@]}" --network "$network" scalelab:latest load)
    else
        echo "load.sh: $bin is missing; install Rust (cargo) or build the image (scripts/docker-image.sh)" >&2
        exit 1
    fi
fi

args=("$@")
has_url=false
for arg in "${args[@]}"; do
    case "$arg" in
        --url | --url=*) has_url=true ;;
        --) break ;;
    esac
done
if ! $has_url; then
    args=(--url http://127.0.0.1:8080 "${args[@]}")
fi

exec "${run[@]}" "${args[@]}"
