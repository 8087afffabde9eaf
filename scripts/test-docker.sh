#!/usr/bin/env bash
# The Docker tests, on a real engine, no mocks (issue 3): the image, compose.yaml under
# `docker compose`, and the same file under a single-node Docker Swarm.
#
#   scripts/test-docker.sh
#
# It installs what is missing and starts dockerd when none answers (scripts/docker-env.sh),
# lints the Dockerfile, assembles the runtime image from the locally built binary
# (scripts/docker-image.sh: no registry is reachable, so the Dockerfile itself cannot be
# built here), then runs the checks in order. Each check prints `==> name` and `ok (N s)`.
#
# Bounds:
#   - traffic goes only to ports published on 127.0.0.1 and to the containers' own networks
#     (address pools in 198.18.0.0/15, reserved for network tests);
#   - every load has a duration or a request count; every wait has a deadline; the whole run
#     has a budget (SCALELAB_DOCKER_BUDGET_S, default 900 s) after which it stops itself;
#   - on any exit, failure or Ctrl-C included, it removes what it started: the compose
#     project, the stack, the swarm it created, the containers and networks of its own checks,
#     and the dockerd it started. An engine or swarm that was there before is left alone.
#
# Exit status: 0 when every check passed; 1 when one failed; 3 when the checks that ran
# passed but some are not implemented yet (listed at the end), so nothing passes by omission.
#
# To see the clean-up work on failure: SCALELAB_DOCKER_FAIL_AFTER=<check name> makes the run
# fail right after that check.
set -euo pipefail
cd "$(dirname "$0")/.."

readonly image=${SCALELAB_IMAGE:-scalelab:latest}
readonly project=scalelab            # compose project name and stack name
readonly swarm_pool=198.19.0.0/16    # Swarm's own pool (overlay networks), inside 198.18.0.0/15
readonly budget_s=${SCALELAB_DOCKER_BUDGET_S:-900}
readonly fail_after=${SCALELAB_DOCKER_FAIL_AFTER:-}
export SCALELAB_IMAGE=$image
run_label=org.scalelab.test-run=$$   # on every container and network the checks create

# shellcheck source=scripts/docker-env.sh
source scripts/docker-env.sh

work=$(mktemp -d "${TMPDIR:-/tmp}/scalelab-test-docker.XXXXXX")
compose_started=0   # 1 once `docker compose up` ran: cleanup brings the project down
swarm_created=0     # 1 once this run did `docker swarm init`: cleanup leaves the swarm
stack_deployed=0    # 1 once this run deployed the stack: cleanup removes it
watchdog_pid=""
passed=0
todo=()
current=""

log() { echo "test-docker: $*" >&2; }
fail() {
    log "FAIL${current:+ in $current}: $*"
    exit 1
}

# Run `cmd...` every 0.5 s until it succeeds, for at most `deadline` seconds.
#   wait_until DEADLINE_S DESCRIPTION CMD...
wait_until() {
    local deadline=$1 what=$2 end=$((SECONDS + $1))
    shift 2
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < end)) || fail "$what: not within $deadline s"
        sleep 0.5
    done
}

# ---- clean-up ----------------------------------------------------------------------------

remove_stack() {
    ((stack_deployed)) || return 0
    docker stack rm "$project" >/dev/null 2>&1 || true
    # `stack rm` returns at once; containers stop within their stop_grace_period. Leaving the
    # swarm before they are gone fails with "context deadline exceeded".
    local end=$((SECONDS + 60))
    while [[ -n $(docker ps -aq --filter "label=com.docker.stack.namespace=$project") ]]; do
        ((SECONDS < end)) || {
            log "stack containers still present after 60 s"
            break
        }
        sleep 1
    done
    stack_deployed=0
}

leave_swarm() {
    ((swarm_created)) || return 0
    docker swarm leave --force >/dev/null
    # The bridge that Swarm made for its containers' outside traffic stays behind otherwise.
    docker network rm docker_gwbridge >/dev/null 2>&1 || true
    swarm_created=0
}

compose_down() {
    ((compose_started)) || return 0
    docker compose -p "$project" down --volumes --remove-orphans --timeout 20 >/dev/null 2>&1
    compose_started=0
}

remove_run_objects() {
    local ids
    mapfile -t ids < <(docker ps -aq --filter "label=$run_label" 2>/dev/null)
    ((${#ids[@]} == 0)) || docker rm -f "${ids[@]}" >/dev/null 2>&1 || true
    mapfile -t ids < <(docker network ls -q --filter "label=$run_label" 2>/dev/null)
    ((${#ids[@]} == 0)) || docker network rm "${ids[@]}" >/dev/null 2>&1 || true
}

cleanup() {
    local rc=$?
    set +e
    trap - INT TERM
    if [[ -n $watchdog_pid ]]; then
        kill "$watchdog_pid" "$(cat "$work/watchdog.pid" 2>/dev/null)" 2>/dev/null
        wait "$watchdog_pid" 2>/dev/null
    fi
    if docker_env_engine_answers; then
        remove_stack
        leave_swarm
        compose_down
        remove_run_objects
    fi
    if ((rc != 0 && rc != 3)) && ((DOCKER_ENV_STARTED)); then
        log "last lines of the dockerd log:"
        tail -n 15 "$DOCKER_ENV_RUN_DIR/dockerd.log" >&2
    fi
    docker_env_down
    rm -rf "$work"
    log "took $SECONDS s"
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# The budget: past it, the run TERMs itself, and cleanup runs as for any failure.
(
    sleep "$budget_s" &
    echo $! >"$work/watchdog.pid"
    wait $! && log "over the ${budget_s} s budget; stopping" && kill -TERM $$
) &
watchdog_pid=$!

# ---- the check runner --------------------------------------------------------------------

not_implemented() {
    todo+=("$current")
    log "TODO: $current is not yet implemented${1:+ ($1)}"
}

check() {
    current=$1
    shift
    local t0=$SECONDS n_todo=${#todo[@]}
    echo "==> $current" >&2
    "$@"
    if ((${#todo[@]} == n_todo)); then
        passed=$((passed + 1))
        echo "    ok ($((SECONDS - t0)) s)" >&2
    fi
    if [[ $current == "$fail_after" ]]; then
        fail "forced by SCALELAB_DOCKER_FAIL_AFTER"
    fi
    current=""
}

# ---- checks: image -----------------------------------------------------------------------

lint_dockerfile() {
    hadolint Dockerfile
}

assemble_image() {
    cargo build --release --locked --bin scalelab
    scripts/docker-image.sh
}

# True when the container runs exactly N processes. (`docker top` needs a pid column.)
process_count_is() {
    [[ $(docker top "$1" -eo pid | tail -n +2 | wc -l) -eq $2 ]]
}

# The image answers, runs as uid 10001 (every process, workers too), and resolves and
# reaches another container by name on a user network: getaddrinfo in the assembled root
# filesystem against Docker's embedded DNS, then HTTP.
image_runs() {
    local out user net
    out=$(docker run --rm "$image" --help) || fail "--help failed"
    grep -q '^Usage: scalelab' <<<"$out" || fail "--help printed: $out"
    user=$(docker image inspect --format '{{.Config.User}}' "$image")
    [[ $user == 10001:10001 ]] || fail "image user is '$user', want 10001:10001"

    net=scalelab-check-$$
    docker network create --label "$run_label" "$net" >/dev/null
    docker run -d --label "$run_label" --network "$net" --name "$net-node" "$image" \
        node --name check-node --listen 0.0.0.0:8081 --workers 2 >/dev/null
    # The primary and its two workers, every one as 10001.
    wait_until 20 "node primary and 2 workers running" process_count_is "$net-node" 3
    local uids
    uids=$(docker top "$net-node" -eo pid,uid | awk 'NR > 1 { print $2 }' | sort -u)
    [[ $uids == 10001 ]] || fail "node processes run as uid(s) $uids"

    out=$(docker run --rm --label "$run_label" --network "$net" "$image" \
        load --url "http://$net-node:8081" --requests 50 --connections 2 --duration 20s \
        --no-progress) || fail "load by name on a user network failed: $out"
    docker rm -f "$net-node" >/dev/null
    docker network rm "$net" >/dev/null
}

# ---- checks: compose ---------------------------------------------------------------------
# TODO: the checks below wait for `scalelab compose` and compose.yaml. Each note says what
# was seen working on this engine with a hand-written compose.yaml (not committed), so the
# real one can follow it.

compose_up() {
    not_implemented "scalelab compose --check; docker compose up -d --no-build --wait"
    # Seen working (2 nodes healthy, balancer up, ~5 s):
    #   target/release/scalelab compose --check
    #   compose_started=1     # before `up`, so a half-started project is brought down too
    #   docker compose -p "$project" up -d --no-build --wait --wait-timeout 120
    # Engine 20.10 refuses `healthcheck.start_interval` ("requires Docker Engine v25").
    # The image has no shell or curl: a healthcheck that worked is
    #   ["CMD", "/usr/local/bin/scalelab", "load", "--url", "http://127.0.0.1:8081",
    #    "--path", "/health", "--requests", "1", "--connections", "1", "--threads", "1"]
}

load_reaches_every_node() {
    not_implemented "bounded load on 127.0.0.1:8080; every node container serves; cpus limit in force"
    # Seen: `scalelab load --url http://127.0.0.1:8080 --duration 5s --connections 8`, 0
    # errors, /state on 127.0.0.1:9090 listing both node IPs with equal request counts.
    # Every replica answered `x-node: node-1` (the --name default): for "reaches every
    # container", a node in a container needs a per-container name (its hostname?).
    # The cpus limit is visible as HostConfig.NanoCpus, and in cgroup v1 as
    # /sys/fs/cgroup/cpu/docker/<id>/cpu.cfs_quota_us (100000 for 1.0 with a 100000 period).
}

scale_under_load() {
    not_implemented "docker compose up -d --scale node=N under load, up then down, no failed request"
    # Seen: 14 s load; `up -d --no-build --wait --scale node=4`, then `--scale node=2`:
    # 90775 requests, 0 errors; the balancer's /state followed (4, then 2 backends).
}

kill_node_under_load() {
    not_implemented "docker kill one node container under load; GETs keep succeeding"
    # Seen: `docker kill scalelab-node-2` 2 s into a 10 s load: 78832 requests, 0 errors.
}

worker_edit_applies_live() {
    not_implemented "edit workers in the topology; the node follows without a container restart"
    # Seen: with the topology's *directory* bind-mounted, `sed -i` of workers 2 -> 3 gave
    # each node a third worker within 3 s, no restart. With the *file* bind-mounted, it did
    # not: a file mount pins the inode, and editors that write a new file and rename it
    # over the old one (sed -i, vim by default) leave the container on the old content.
    # Count workers with `docker top <container> -eo pid,args | grep -c 'scalelab worker'`.
}

compose_down_leaves_nothing() {
    not_implemented "docker compose down; no container, network or volume of the project left"
    # Seen: `docker compose -p scalelab down --volumes --remove-orphans --timeout 20`, then
    # `docker {ps -a,network ls,volume ls} -q --filter label=com.docker.compose.project=scalelab`
    # all empty (for volumes, compose sets the same label).
}

# ---- checks: swarm -----------------------------------------------------------------------

# A single-node swarm on loopback, its overlay networks from the test pool.
swarm_init() {
    local state subnet
    state=$(docker info --format '{{.Swarm.LocalNodeState}}')
    [[ $state == inactive ]] || fail "this engine is already in a swarm ($state); not touching it"
    docker swarm init --advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:2377 \
        --default-addr-pool "$swarm_pool" --default-addr-pool-mask-length 24 >/dev/null
    swarm_created=1
    subnet=$(docker network inspect ingress --format '{{range .IPAM.Config}}{{.Subnet}}{{end}}')
    [[ $subnet == 198.19.* ]] || fail "ingress network got $subnet, outside $swarm_pool"
}

stack_deploy_and_load() {
    not_implemented "docker stack deploy --resolve-image never -c <file> $project; load; stack rm"
    # stack_deployed=1 before deploying, so cleanup removes it. Seen working: a version "3.8"
    # file, nodes and balancer with `endpoint_mode: dnsrr`, balancer `--discovery dns
    # --dns-prefix tasks.`, ports in long syntax with `mode: host`; wait for
    # `docker service ls` 2/2 and the balancer's /state before loading (Swarm has no
    # depends_on health wait; loading at once gave 503s and resets); then 35338 requests,
    # 0 errors. What `docker stack deploy` refuses or ignores (both clients, 20.10 and 28):
    #   - `depends_on` with conditions ("must be a list"), `profiles`, `host_ip`: rejected;
    #   - no top-level `version`: the 20.10 client says "unsupported Compose file version";
    #   - "127.0.0.1:8080:8080" becomes an ingress port on 0.0.0.0, and the ingress routing
    #     mesh needs IPVS, which this kernel lacks: nothing answers. `mode: host` works
    #     (docker-proxy, bound on 0.0.0.0 too: Swarm has no host IP for ports).
    # `--resolve-image never` and dockerd's DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 (see
    # docker-env.sh) keep Swarm from asking a registry about scalelab:latest.
}

swarm_leave() {
    remove_stack
    leave_swarm
    local state
    state=$(docker info --format '{{.Swarm.LocalNodeState}}')
    [[ $state == inactive ]] || fail "swarm state after leave: $state"
    if docker network inspect docker_gwbridge >/dev/null 2>&1; then
        fail "docker_gwbridge left behind"
    fi
}

# ---- run ---------------------------------------------------------------------------------

check setup docker_env_up
check hadolint lint_dockerfile
check image assemble_image
check image-runs image_runs
check compose-up compose_up
check load-every-node load_reaches_every_node
check scale-under-load scale_under_load
check kill-node-under-load kill_node_under_load
check worker-edit-live worker_edit_applies_live
check compose-down compose_down_leaves_nothing
check swarm-init swarm_init
check stack-deploy stack_deploy_and_load
check swarm-leave swarm_leave

if ((${#todo[@]})); then
    log "$passed checks passed; not yet implemented: ${todo[*]}"
    exit 3
fi
log "all $passed checks passed"
