#!/usr/bin/env bash
# The Kubernetes checks (issue 14): installs what they need, then runs the ignored tests of
# tests/kubernetes.rs and tests/podman_kube.rs through nextest. The checks themselves are Rust, with the rest of the
# suite's harness and typed reports (README, "Testing": why not a second engine in bash).
#
#   scripts/test-kubernetes.sh
#
# What it installs when missing (as root, from Debian's and PyPI's registries only):
#   - Debian's podman 4.3 without its recommends, runc (the runtime the tests configure: crun
#     1.8 refuses hybrid cgroups), catatonit (podman builds its pause image from it, so
#     nothing is pulled) and iproute2 (the tests remove their bridge with `ip`);
#   - PyPI's kubernetes-validate (it bundles the Kubernetes OpenAPI schemas, so validation is
#     offline), pinned, into target/tools/ with `pip install --target`: neither Debian's
#     externally managed Python nor a pyenv shim matters, and the next run reuses it.
#
# Then, in one nextest run:
#   - kubernetes every_document_passes_the_kubernetes_schema: strict validation at 1.37.0
#     and 1.25.0;
#   - podman_kube podman_kube_play_runs_the_manifest: the manifest under `podman kube play`, in a podman
#     of its own (tests/common/podman.rs: configuration, storage, network in 198.19.255.0/24,
#     all in one directory, removed at the end).
# About 30 s once installed (the first install takes about a minute).
set -euo pipefail
cd "$(dirname "$0")/.."

readonly kv_version=1.37.0
readonly kv_dir=target/tools/kubernetes-validate-$kv_version

log() { echo "test-kubernetes: $*" >&2; }
t0=$SECONDS

need_apt=()
command -v podman >/dev/null || need_apt+=(podman)
command -v runc >/dev/null || need_apt+=(runc)
command -v catatonit >/dev/null || need_apt+=(catatonit)
command -v ip >/dev/null || need_apt+=(iproute2)
python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
if ((${#need_apt[@]})); then
    log "installing ${need_apt[*]} (apt)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [[ ! -f $kv_dir/.installed ]]; then
    log "installing kubernetes-validate==$kv_version (pip) -> $kv_dir"
    rm -rf "$kv_dir"
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
        --target "$kv_dir" "kubernetes-validate==$kv_version"
    touch "$kv_dir/.installed"
fi
export SCALELAB_KUBERNETES_VALIDATE=$PWD/$kv_dir

log "podman $(podman version --format '{{.Client.Version}}'), $(runc --version | head -n 1), kubernetes-validate $kv_version"
cargo nextest run --release --locked --no-fail-fast --test kubernetes --test podman_kube --run-ignored only \
    --success-output final
log "took $((SECONDS - t0)) s"
