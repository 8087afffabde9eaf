#!/usr/bin/env bash
# scalelab's test command: installs what a fresh Debian machine lacks, then runs every test
# (unit tests and the integration tests that start real nodes and balancers on loopback).
#
#   scripts/test.sh            # all tests: cargo tests, then the Docker tests
#   scripts/test.sh up         # only cargo tests matching "up" (nextest filter), no Docker
#   SCALELAB_DOCKER=0 scripts/test.sh   # skip the Docker tests
#   SCALELAB_KUBERNETES=0 scripts/test.sh   # skip the Kubernetes checks
#
# The Kubernetes checks (scripts/test-kubernetes.sh) install podman and kubernetes-validate when
# missing, validate kubernetes.yaml against the Kubernetes schemas and run it under
# `podman kube play`. The Docker tests (scripts/test-docker.sh) install Debian's docker.io and
# Compose v2 when missing, start an engine when none runs, and run the lab under Compose and
# Swarm.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cmake >/dev/null || need_apt+=(cmake)       # pingora's zlib-ng build
command -v cc >/dev/null || need_apt+=(build-essential)
command -v curl >/dev/null || need_apt+=(curl)
# The report and dashboard tests open pages in headless Chromium, with a font to draw text.
command -v chromium >/dev/null || need_apt+=(chromium fonts-dejavu-core)
if ((${#need_apt[@]})); then
    echo "test.sh: installing ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! cargo nextest --version >/dev/null 2>&1; then
    echo "test.sh: installing cargo-nextest"
    cargo install --locked cargo-nextest
fi

# CPU caps need writable cgroups. Where they are (root, cgroup v1 or v2), the tests that need
# them must run: a skip there would hide a broken cap.
if [ -w /sys/fs/cgroup/cpu ] || [ -w /sys/fs/cgroup/cgroup.subtree_control ]; then
    export SCALELAB_REQUIRE_CGROUPS=1
fi
# The topology fuzzer's budget (tests/topology_fuzz.rs): fixed, so CI time is too.
export PROPTEST_CASES=${PROPTEST_CASES:-4000}

# One profile for everything: the tests drive load, and the lab is run in release anyway.
cargo build --release --locked
cargo nextest run --release --locked --workspace --no-fail-fast "$@"

if [ "${SCALELAB_KUBERNETES:-1}" != 0 ] && [ $# -eq 0 ]; then
    bash scripts/test-kubernetes.sh
fi
if [ "${SCALELAB_DOCKER:-1}" != 0 ] && [ $# -eq 0 ]; then
    bash scripts/test-docker.sh
fi
