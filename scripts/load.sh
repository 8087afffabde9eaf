#!/usr/bin/env bash
# Drive load at the lab: `scalelab load` aimed at the balancer (http://127.0.0.1:8080) unless
# --url says otherwise. Every argument is passed through; see `scalelab load --help`.
#
#   scripts/load.sh                                   # 10 s closed loop, 16 connections, /op1
#   scripts/load.sh --mix op1=9,op2=1 --duration 30s  # weighted paths
#   scripts/load.sh --rate 500 --duration 20s         # open loop, latency from intended send
#   scripts/load.sh --url http://127.0.0.1:8081 --requests 1000 --json
#
# SCALELAB_BIN names the binary to run instead of the release build.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
bin="${SCALELAB_BIN:-$target_dir/release/scalelab}"

if [ ! -x "$bin" ]; then
    if command -v cargo >/dev/null; then
        echo "load.sh: building $bin" >&2
        (cd "$root" && cargo build --release)
    else
        # No Rust toolchain: the Docker image fallback goes here.
        echo "load.sh: $bin is missing and cargo is not installed" >&2
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

exec "$bin" load "${args[@]}"
