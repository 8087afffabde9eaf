#!/usr/bin/env bash
# scalelab's test command: installs what a fresh Debian machine lacks, then runs every test
# (unit tests and the integration tests that start real nodes and balancers on loopback).
#
#   scripts/test.sh            # all tests
#   scripts/test.sh up         # only tests whose name matches "up" (nextest filter)
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cmake >/dev/null || need_apt+=(cmake)       # pingora's zlib-ng build
command -v cc >/dev/null || need_apt+=(build-essential)
command -v curl >/dev/null || need_apt+=(curl)
if ((${#need_apt[@]})); then
    echo "test.sh: installing ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! cargo nextest --version >/dev/null 2>&1; then
    echo "test.sh: installing cargo-nextest"
    cargo install --locked cargo-nextest
fi

# One profile for everything: the tests drive load, and the lab is run in release anyway.
cargo build --release --locked
cargo nextest run --release --locked --workspace --no-fail-fast "$@"
