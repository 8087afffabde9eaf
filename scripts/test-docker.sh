#!/usr/bin/env bash
# The Docker tests, on a real engine, no mocks (issue 3): the image, compose.yaml under
# `docker compose` (with the live dashboard in headless Chromium, `scalelab sweep --compose`
# and the node distribution modes), and the same file under a single-node Docker Swarm.
#
#   scripts/test-docker.sh
#
# It installs what is missing and starts dockerd when none answers (scripts/docker-env.sh;
# chromium and cargo-nextest too, for the dashboard check), lints the Dockerfile, assembles
# the runtime image from the locally built binary (scripts/docker-image.sh: no registry is
# reachable, so the Dockerfile itself cannot be built here), then runs the checks in order.
# Each check prints `==> name` and `ok (N s)`. About 3 minutes on 2 cores.
#
# Bounds:
#   - traffic goes only to ports published on 127.0.0.1 and to the containers' own networks
#     (address pools in 198.18.0.0/15, reserved for network tests);
#   - every load has a duration or a request count; every wait has a deadline; the whole run
#     has a budget (SCALELAB_DOCKER_BUDGET_S, default 900 s) after which it stops itself;
#   - on any exit, failure or Ctrl-C included, it removes what it started: the compose
#     projects (the lab's, the sweep's, the distribution check's), the stack, the swarm it
#     created, the containers and networks of its own checks, and the dockerd it started. An
#     engine or swarm that was there before is left alone. The dashboard check rewrites the
#     lab's copy of topology.yaml, never the checkout's.
#
# Exit status: 0 when every check passed, 1 when one failed (it is named).
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
load_pid=""         # the load running in the background, if any (start_load, balancer checks)
watch_pid=""        # `scalelab apply --watch` of the autoscale check, while it runs
passed=0
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

# Compose projects that checks other than the lab start (the sweep's, the distribution
# check's): name -> its compose file. Cleanup brings down whichever is still listed.
declare -A other_projects=()

other_projects_down() {
    local p
    for p in "${!other_projects[@]}"; do
        if [[ -f ${other_projects[$p]} ]]; then
            docker compose -p "$p" -f "${other_projects[$p]}" down --volumes --remove-orphans --timeout 10 >/dev/null 2>&1
        fi
        unset "other_projects[$p]"
    done
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
    mapfile -t ids < <(docker image ls -q --filter "label=$run_label" 2>/dev/null)
    ((${#ids[@]} == 0)) || docker image rm -f "${ids[@]}" >/dev/null 2>&1 || true
}

cleanup() {
    local rc=$?
    set +e
    trap - INT TERM
    if [[ -n $watchdog_pid ]]; then
        kill "$watchdog_pid" "$(cat "$work/watchdog.pid" 2>/dev/null)" 2>/dev/null
        wait "$watchdog_pid" 2>/dev/null
    fi
    # A load still running in the background because a check failed meanwhile: it is bounded
    # in time, but need not outlive the run. (By its PID: dockerd, when this run started it,
    # is a background job of this shell too, and must outlive the clean-up below.)
    if [[ -n $load_pid ]] && kill "$load_pid" 2>/dev/null; then
        wait "$load_pid" 2>/dev/null
    fi
    # `apply --watch` of the autoscale check, by its PID, like the load.
    if [[ -n $watch_pid ]] && kill -INT "$watch_pid" 2>/dev/null; then
        wait "$watch_pid" 2>/dev/null
    fi
    if docker_env_engine_answers; then
        remove_stack
        leave_swarm
        compose_down
        other_projects_down
        remove_run_objects
    fi
    if ((rc != 0)) && ((DOCKER_ENV_STARTED)); then
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

check() {
    current=$1
    shift
    local t0=$SECONDS
    echo "==> $current" >&2
    "$@"
    passed=$((passed + 1))
    echo "    ok ($((SECONDS - t0)) s)" >&2
    if [[ $current == "$fail_after" ]]; then
        fail "forced by SCALELAB_DOCKER_FAIL_AFTER"
    fi
    current=""
}

# What the checks need besides Docker: the dashboard check runs a cargo test through nextest,
# which opens the page in Debian's chromium (with a font to draw text).
setup_tools() {
    docker_env_up
    command -v chromium >/dev/null || docker_env_apt chromium fonts-dejavu-core
    cargo nextest --version >/dev/null 2>&1 || cargo install --locked cargo-nextest
}

# ---- checks: image -----------------------------------------------------------------------

lint_dockerfile() {
    hadolint Dockerfile
}

# The Dockerfile's builder stage cannot run here (no registry to pull rust:1-bookworm from),
# so what it relies on is checked offline instead:
#   - its dependency stage copies the manifest of every workspace member and stubs each one
#     (`ARG MEMBERS`): the same members as `cargo metadata`, and the copied manifests with the
#     stubs resolve against Cargo.lock (`cargo tree --locked --offline` in a replica of it);
#   - the build context that .dockerignore leaves (taken by a `FROM scratch` build, which
#     pulls nothing) holds every member's manifest and sources and Cargo.lock, and resolves
#     the same way; target/ and .git/ stay out.
# A workspace member added without its Dockerfile lines fails here, not at a user's first
# `docker compose up`.
dockerfile_matches_workspace() {
    local members declared copied dir ctx cid
    # `cargo tree --offline` below resolves the whole graph, dev-dependencies included, which a
    # bare `cargo build` never downloads: fetch them first (nothing to do when present).
    cargo fetch --locked --quiet
    members=$(cargo metadata --no-deps --format-version 1 --offline | python3 -c '
import json, os, sys
m = json.load(sys.stdin)
root = m["workspace_root"]
print(" ".join(sorted(os.path.relpath(os.path.dirname(p["manifest_path"]), root)
                      for p in m["packages"] if os.path.dirname(p["manifest_path"]) != root)))')
    declared=$(sed -n 's/^ARG MEMBERS="\(.*\)"$/\1/p' Dockerfile | tr ' ' '\n' | sort | xargs)
    [[ $declared == "$members" ]] || fail "Dockerfile ARG MEMBERS is [$declared], the workspace members are [$members]"
    local manifests
    mapfile -t manifests < <(awk '$1 == "COPY" && /Cargo\.(toml|lock)/ { for (i = 2; i < NF; i++) print $i }' Dockerfile)
    copied=$(printf '%s\n' "${manifests[@]}" | sed -n 's|^\(.*\)/Cargo\.toml$|\1|p' | sort | xargs)
    [[ $copied == "$members" ]] || fail "the Dockerfile copies the manifests of [$copied], the workspace members are [$members]"

    dir=$work/dependency-stage
    local f m
    for f in "${manifests[@]}"; do install -D -m 0644 "$f" "$dir/$f"; done
    for m in $declared; do mkdir -p "$dir/$m/src" && touch "$dir/$m/src/lib.rs"; done
    mkdir -p "$dir/src" && echo 'fn main() {}' >"$dir/src/main.rs" && touch "$dir/src/lib.rs"
    cargo tree --locked --offline --quiet --workspace --depth 1 --manifest-path "$dir/Cargo.toml" >/dev/null ||
        fail "the Dockerfile's dependency stage does not resolve (see cargo's message above)"

    ctx=$work/build-context
    mkdir -p "$ctx"
    printf 'FROM scratch\nCOPY . /context/\n' |
        docker build --quiet --label "$run_label" -t "scalelab-context-$$:check" -f - . >/dev/null 2>"$work/context.err" ||
        fail "cannot take the build context: $(cat "$work/context.err")"
    cid=$(docker create --label "$run_label" "scalelab-context-$$:check" /none)
    docker cp "$cid:/context" - | tar -x -C "$ctx"
    docker rm "$cid" >/dev/null
    docker image rm "scalelab-context-$$:check" >/dev/null
    for m in . $members; do
        [[ -f $ctx/context/$m/Cargo.toml && -d $ctx/context/$m/src ]] || fail "the build context lacks $m/Cargo.toml or $m/src"
    done
    [[ -f $ctx/context/Cargo.lock ]] || fail "the build context lacks Cargo.lock"
    [[ ! -e $ctx/context/target && ! -e $ctx/context/.git ]] || fail "the build context holds target/ or .git/"
    cargo tree --locked --offline --quiet --workspace --depth 1 --manifest-path "$ctx/context/Cargo.toml" >/dev/null ||
        fail "the build context does not resolve (see cargo's message above)"
    log "workspace members [$members]; build context $(du -sh "$ctx/context" | cut -f1), $(find "$ctx/context" -type f | wc -l) files"
}

# The binary the image holds, and the test binary of the dashboard check (built here so that
# check spends its time on the lab, not on the compiler).
assemble_image() {
    cargo build --release --locked --bin scalelab --test dashboard
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
# The lab runs from a copy of the project's real compose.yaml and topology.yaml in $lab, so
# the edits below never touch the checkout. The compose file mounts its own directory.

lab=$work/lab
bin=target/release/scalelab
readonly listen=127.0.0.1:8080 admin=127.0.0.1:9090   # the committed topology's balancer

# `scalelab load` against the balancer's published port; extra flags follow. Prints JSON.
load_json() {
    "$bin" load --url "http://$listen" --json --no-progress "$@"
}

# A field of a JSON document on stdin, by Python expression over `r`.
json() { python3 -c "import json,sys; r=json.load(sys.stdin); print($1)"; }

# The balancer's backends that are healthy, from /state.
healthy_backends() {
    curl -fsS "http://$admin/state" | json 'sum(1 for b in r["backends"] if b["healthy"])'
}
healthy_backends_are() { [[ $(healthy_backends 2>/dev/null) == "$1" ]]; }

node_containers() { docker ps -q --filter "label=com.docker.compose.project=$project" --filter label=com.docker.compose.service=node; }
node_count_is() { [[ $(node_containers | wc -l) -eq $1 ]]; }

# Rewrites the lab's topology like an editor does (new file, then rename over the old one).
edit_topology() {
    sed "$1" "$lab/topology.yaml" >"$lab/topology.yaml.new"
    mv "$lab/topology.yaml.new" "$lab/topology.yaml"
}

# Waits for the background load and forgets its PID (reaped, it may be reused), so that the
# clean-up never signals another process.
wait_load() {
    local pid=$load_pid
    load_pid=""
    wait "$pid"
}

# Runs a bounded load in the background; `finish_load` waits and asserts no request failed.
start_load() {
    load_json --path /op1 --connections 4 --duration "$1" >"$work/load.json" 2>"$work/load.err" &
    load_pid=$!
}
finish_load() {
    wait_load || true
    local requests errors
    requests=$(json 'r["requests"]' <"$work/load.json") || fail "no load report: $(cat "$work/load.err")"
    errors=$(json 'r["errors"]' <"$work/load.json")
    log "$current: $requests requests, $errors failed"
    ((errors == 0)) || fail "$errors of $requests requests failed: $(json 'r["error_kinds"], r["status"]' <"$work/load.json")"
    ((requests > 0)) || fail "no request was sent"
}

# What a first `docker compose up` does with compose.yaml, shown without a registry:
#   - `docker compose config` accepts the file; the balancer (which every `up` starts) and the
#     load tool (which `docker compose run` starts alone) carry `build:` with the project
#     directory as context; the node groups only name the image, so `up` builds it once
#     (Compose builds once per service with `build:`, even for one shared image); every
#     service has `pull_policy: never`; the long-running ones `restart: unless-stopped`;
#   - with the image present, a dry run of `up` plans no pull and no build (so the tests'
#     `--no-build` changes nothing);
#   - with the image absent (the same file naming an image that does not exist), a dry run of
#     `up`, as a user types it, plans exactly one build, the balancer's, before creating any
#     container, and no pull: nothing is asked of a registry (a pull, even in a dry run, would
#     make the engine look the image up in one).
compose_build_plan() {
    local dir=$work/build-plan cfg plan absent=scalelab-absent-$$:dry-run
    mkdir -p "$dir"
    cp compose.yaml topology.yaml Dockerfile .dockerignore "$dir/"
    cfg=$(docker compose -f "$dir/compose.yaml" --profile tools config --format json) ||
        fail "docker compose config rejects compose.yaml"
    local facts
    facts=$(python3 -c '
import json, sys
r = json.loads(sys.argv[1]); d = sys.argv[2]; s = r["services"]
builds = sorted(n for n in s if "build" in s[n])
ok = all(s[n]["build"].get("context") == d and s[n]["build"].get("dockerfile") == "Dockerfile" for n in builds)
restart = sorted(n for n in s if s[n].get("restart") == "unless-stopped")
pulls = sorted(set(s[n].get("pull_policy", "missing (default)") for n in s))
print("build: %s (context %s); restart: %s; pull_policy: %s"
      % (" ".join(builds), "ok" if ok else "wrong", " ".join(restart), " ".join(pulls)))' "$cfg" "$dir")
    log "compose config: $facts"
    [[ $facts == "build: balancer load (context ok); restart: balancer node; pull_policy: never" ]] ||
        fail "compose config: want build on balancer and load (context $dir, Dockerfile), restart on balancer and node, pull_policy never everywhere"

    plan=$(docker compose -f "$dir/compose.yaml" up --dry-run -d 2>&1) || fail "up --dry-run failed: $plan"
    ! grep -Eq 'Pulling|Built' <<<"$plan" || fail "with the image present, up plans a pull or a build: $plan"
    log "image present: up plans $(grep -c 'Container .* Created$' <<<"$plan") containers, no pull, no build"

    ! docker image inspect "$absent" >/dev/null 2>&1 || fail "$absent exists"
    sed "s|^    image: .*|    image: $absent|" "$dir/compose.yaml" >"$dir/compose.absent.yaml"
    plan=$(docker compose -f "$dir/compose.absent.yaml" up --dry-run -d 2>&1) ||
        fail "up --dry-run with the image absent failed: $plan"
    ! grep -q 'Pulling' <<<"$plan" || fail "with the image absent, up plans a pull: $plan"
    local built
    built=$(grep -E ' Built$' <<<"$plan" | awk '{ print $(NF - 1) }' | xargs)
    [[ $built == balancer ]] || fail "with the image absent, up should build once (balancer), plans [$built]: $plan"
    # The build comes before the first container is created.
    [[ $(grep -nE ' Built$| Creating$' <<<"$plan" | head -n 1) == *Built ]] ||
        fail "the build is not planned before the containers: $plan"
    log "image absent: up plans no pull, 1 build ($built), then $(grep -c 'Container .* Created$' <<<"$plan") containers"
    ! docker image inspect "$absent" >/dev/null 2>&1 || fail "the dry run made $absent"
}

compose_up() {
    "$bin" compose --check || fail "compose.yaml or stack.yaml is out of date: run scalelab compose"
    mkdir -p "$lab"
    cp compose.yaml topology.yaml "$lab/"
    compose_started=1   # before `up`, so a half-started project is brought down too
    docker compose -p "$project" -f "$lab/compose.yaml" up -d --no-build --wait --wait-timeout 120
    wait_until 30 "balancer sees 2 healthy nodes" healthy_backends_are 2
}

# Under the same load, the balancer's /live (the dashboard's data) gives every node container
# its CPU use, read by the node from its own cgroup, and its cap: numbers, the cap the
# group's cpus (1.0).
load_reaches_every_node() {
    local report served expected c nanos quota live stats
    load_json --path /op2 --connections 8 --duration 5s >"$work/every.json" 2>"$work/every.err" &
    load_pid=$!
    sleep 3.5
    curl -fsS --max-time 5 "http://$admin/live" >"$work/live.json" || fail "GET /live failed"
    wait_load || fail "load: $(cat "$work/every.err")"
    report=$(cat "$work/every.json")
    [[ $(json 'r["errors"]' <<<"$report") == 0 ]] || fail "errors: $report"
    live=$(json '"; ".join("%s %s cpu %s cap %s" % (n["name"], n["addr"], n["cpu"], n["cpu_cap"]) for n in r["nodes"])' <"$work/live.json")
    log "/live under load: $live"
    [[ $(json 'len(r["nodes"])' <"$work/live.json") == $(node_containers | wc -l) ]] ||
        fail "/live lists $(json 'len(r["nodes"])' <"$work/live.json") nodes, there are $(node_containers | wc -l) node containers"
    json 'all(isinstance(n["cpu"], (int, float)) and n["cpu"] > 0 and n["cpu_cap"] == 1.0 for n in r["nodes"])' <"$work/live.json" |
        grep -qx True || fail "/live should give every node a CPU use above 0 and a cap of 1.0: $live"
    # The numbers come from each node's /stats, read from its container's cgroup (/live would
    # fall back on the topology's cpus for the cap, not for the use).
    for c in $(node_containers); do
        stats=$(curl -fsS --max-time 5 "http://$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$c"):8081/stats") ||
            fail "GET /stats of node container ${c:0:12}"
        [[ $(json 'r["cpu_cap"] == 1.0 and r["cpu_used_us"] > 0' <<<"$stats") == True ]] ||
            fail "/stats of node container ${c:0:12} should read a cap of 1.0 and a CPU use from its cgroup: $stats"
    done
    served=$(json '" ".join(sorted(r["by_node"]))' <<<"$report")
    expected=$(for c in $(node_containers); do echo "node@$(docker inspect -f '{{.Config.Hostname}}' "$c")"; done | sort | xargs)
    [[ $served == "$expected" ]] || fail "served by [$served], node containers are [$expected]"
    log "served by: $(json 'r["by_worker"]' <<<"$report")"
    # The topology's cpus: 1.0 is the containers' limit, and the kernel enforces it.
    for c in $(node_containers); do
        nanos=$(docker inspect -f '{{.HostConfig.NanoCpus}}' "$c")
        [[ $nanos == 1000000000 ]] || fail "container $c has NanoCpus=$nanos, want 1 CPU"
        local id
        id=$(docker inspect -f '{{.Id}}' "$c")
        for f in "/sys/fs/cgroup/cpu/docker/$id/cpu.cfs_quota_us" "/sys/fs/cgroup/system.slice/docker-$id.scope/cpu.max"; do
            if [[ -r $f ]]; then
                quota=$(cat "$f")
                [[ $quota == 100000* ]] || fail "$f is '$quota', want a 1-CPU quota"
                log "cpu quota of ${c:0:12}: $quota ($f)"
            fi
        done
    done
}

# Scale node 2 -> 4 -> 2 through `scalelab apply` while a load runs: no request may fail.
scale_under_load() {
    start_load 25s
    sleep 2
    edit_topology 's/replicas: 2 /replicas: 4 /'
    "$bin" apply --topology "$lab/topology.yaml" >/dev/null
    wait_until 60 "4 node containers" node_count_is 4
    wait_until 30 "balancer sees 4 healthy nodes" healthy_backends_are 4
    edit_topology 's/replicas: 4 /replicas: 2 /'
    "$bin" apply --topology "$lab/topology.yaml" >/dev/null
    wait_until 60 "2 node containers" node_count_is 2
    wait_until 30 "balancer sees 2 healthy nodes" healthy_backends_are 2
    finish_load
}

kill_node_under_load() {
    start_load 10s
    sleep 2
    local victim
    victim=$(node_containers | head -n 1)
    docker kill "$victim" >/dev/null
    log "killed node container ${victim:0:12}"
    finish_load
    # `restart: unless-stopped` does not apply to a container killed through Docker's API
    # (see balancer_killed_under_load): compose up starts it again.
    log "killed node container after the load: $(docker inspect -f '{{.State.Status}}, RestartCount {{.RestartCount}}' "$victim")"
    # Back to the topology's two replicas for the checks that follow.
    docker compose -p "$project" -f "$lab/compose.yaml" up -d --no-build --wait --wait-timeout 120 >/dev/null 2>&1
    wait_until 30 "balancer sees 2 healthy nodes" healthy_backends_are 2
}

# ---- the balancer killed under load -----------------------------------------------------
# Under compose the balancer is one container, and bringing it back is Docker's business
# (`restart: unless-stopped`). Two ways to lose it, each under a bounded load from the host
# (16 connections on /op1), each measured: the requests, the errors by kind, how long until
# /op1 answers again (polled every 0.1 s with 0.5 s timeouts), and Docker's RestartCount.
#   1. `docker kill`: Docker counts a kill through its API as an explicit stop, and its
#      restart policy leaves the container stopped (engine 20.10.24: after `docker kill`, with
#      any signal, neither `unless-stopped` nor `always` restarts). The check watches for 3 s
#      whether it comes back, then does what an operator does, `docker compose up -d`.
#   2. a crash: the balancer process dies outside Docker's API (here `kill -9` of its host PID,
#      as the OOM killer would): the restart policy brings it back.
# Asserted: each time the balancer answers again within 15 s of what brings it back, the
# restart policy (not anything else) restarted it after the crash, and a load right after
# each recovery has no error.

now_us() { echo "${EPOCHREALTIME//[.,]/}"; }
answers() { curl -fsS -o /dev/null --max-time 0.5 "http://$listen/op1" 2>/dev/null; }

# Milliseconds from T0 (now_us) until /op1 answers; returns 1 after DEADLINE_S seconds.
#   ms_until_answer T0 DEADLINE_S
ms_until_answer() {
    local t0=$1 end=$(($1 + $2 * 1000000))
    until answers; do
        (($(now_us) < end)) || return 1
        sleep 0.1
    done
    echo $((($(now_us) - t0) / 1000))
}

balancer_container() { docker ps -aq --filter "label=com.docker.compose.project=$project" --filter label=com.docker.compose.service=balancer; }
restart_count() { docker inspect -f '{{.RestartCount}}' "$1"; }

# One line about a load report: requests, ok, errors by kind, resent requests.
describe_load() {
    json '"%d requests, %d ok, %d errors (%s), %d retried" % (r["requests"], r["requests"] - r["errors"], r["errors"], ", ".join("%s %d" % (k, v) for k, v in r["error_kinds"].items() if k != "total" and v) or "none", r.get("retried", 0))' <"$1"
}

# A 3 s load right after a recovery: no request may fail.
load_after_recovery() {
    load_json --path /op1 --connections 16 --duration 3s >"$work/after.json" 2>"$work/after.err" ||
        fail "load after recovery: $(cat "$work/after.err")"
    log "  load after recovery (16 connections, 3 s): $(describe_load "$work/after.json")"
    [[ $(json 'r["errors"]' <"$work/after.json") == 0 ]] || fail "errors after recovery: $(describe_load "$work/after.json")"
}

balancer_killed_under_load() {
    local c before after t0 t_up ms state pid
    c=$(balancer_container)
    [[ $(wc -l <<<"$c") == 1 && -n $c ]] || fail "expected one balancer container, found [$c]"

    # 1. docker kill
    before=$(restart_count "$c")
    load_json --path /op1 --connections 16 --duration 10s >"$work/kill.json" 2>"$work/kill.err" &
    load_pid=$!
    sleep 2
    t0=$(now_us)
    docker kill "$c" >/dev/null
    if ms=$(ms_until_answer "$t0" 3); then
        state=$(docker inspect -f '{{.State.Status}}' "$c")
        log "docker kill: Docker restarted the balancer by itself; /op1 answered ${ms} ms after the kill (RestartCount $before -> $(restart_count "$c"), $state)"
    else
        state=$(docker inspect -f '{{.State.Status}}, exit code {{.State.ExitCode}}' "$c")
        after=$(restart_count "$c")
        log "docker kill: not restarted by Docker within 3 s ($state; RestartCount $before -> $after)"
        t_up=$(now_us)
        docker compose -p "$project" -f "$lab/compose.yaml" up -d --no-build >/dev/null 2>&1 ||
            fail "docker compose up -d after the kill failed"
        ms=$(ms_until_answer "$t_up" 15) || fail "the balancer does not answer within 15 s of docker compose up -d"
        log "  docker compose up -d: /op1 answered ${ms} ms after it, $((($(now_us) - t0) / 1000)) ms after the kill (RestartCount now $(restart_count "$c"))"
    fi
    wait_load || fail "load during docker kill: $(cat "$work/kill.err")"
    log "  load during it (16 connections, 10 s, killed at 2 s): $(describe_load "$work/kill.json")"
    load_after_recovery

    # 2. a crash
    wait_until 30 "balancer sees 2 healthy nodes" healthy_backends_are 2
    before=$(restart_count "$c")
    pid=$(docker top "$c" -eo pid,args | awk '$2 == "/usr/local/bin/scalelab" && $3 == "balancer" { print $1 }')
    [[ $pid =~ ^[0-9]+$ ]] || fail "cannot find the balancer process in its container: [$pid]"
    load_json --path /op1 --connections 16 --duration 6s >"$work/crash.json" 2>"$work/crash.err" &
    load_pid=$!
    sleep 2
    t0=$(now_us)
    kill -KILL "$pid"
    ms=$(ms_until_answer "$t0" 15) || fail "the balancer does not answer within 15 s of its crash"
    after=$(restart_count "$c")
    log "crash (kill -9 of the balancer process, host PID $pid): /op1 answered ${ms} ms after it (RestartCount $before -> $after, $(docker inspect -f '{{.State.Status}}' "$c"))"
    ((after == before + 1)) || fail "Docker's restart policy should have restarted it once: RestartCount $before -> $after"
    wait_load || fail "load during the crash: $(cat "$work/crash.err")"
    log "  load during it (16 connections, 6 s, killed at 2 s): $(describe_load "$work/crash.json")"
    load_after_recovery
    wait_until 30 "balancer sees 2 healthy nodes" healthy_backends_are 2
}

workers_of() { docker top "$1" -eo pid,args | grep -c 'scalelab worker'; }
every_node_has_workers() {
    local c
    for c in $(node_containers); do [[ $(workers_of "$c") -eq $1 ]] || return 1; done
}

# The distinct workers (x-worker) that answer N requests /op2?cpu_ms=100 sent to ADDR 30 ms
# apart, each on a new connection. A worker burning CPU for one request cannot accept the
# next connection (the burn holds its only thread), so they spread over the idle workers.
#   workers_answering ADDR N
workers_answering() {
    local i
    for ((i = 0; i < $2; i++)); do
        curl -fsS -o /dev/null -D - --max-time 5 "http://$1/op2?cpu_ms=100" 2>/dev/null |
            tr -d '\r' | awk -F': ' 'tolower($1) == "x-worker" { print $2 }' &
        sleep 0.03
    done
    wait
}

# workers: 2 -> 3 in the topology, applied with `scalelab apply`: every node gets a third
# worker, and no container is recreated or restarted, and the third worker serves. That is
# asked of each node container directly (its address on the project's network, reachable from
# the host), on new connections: the balancer keeps reusing the upstream connections it
# pooled, which the first two workers accepted, so through it a new worker serves only once
# the balancer opens more connections than it pooled (after the 16-connection loads above, a
# 12-connection load did not).
worker_edit_applies_live() {
    local before after c ip seen
    before=$(for c in $(node_containers); do docker inspect -f '{{.Id}} {{.State.StartedAt}}' "$c"; done | sort)
    every_node_has_workers 2 || fail "expected 2 workers per node before the edit"
    edit_topology 's/workers: 2 /workers: 3 /'
    "$bin" apply --topology "$lab/topology.yaml" >/dev/null
    wait_until 20 "3 workers in every node container" every_node_has_workers 3
    after=$(for c in $(node_containers); do docker inspect -f '{{.Id}} {{.State.StartedAt}}' "$c"; done | sort)
    [[ $before == "$after" ]] || fail "node containers were recreated or restarted: [$before] -> [$after]"
    for c in $(node_containers); do
        ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$c")
        # Three tries: a try is ~0.5 s, and scheduling may still put two requests on one worker.
        for _ in 1 2 3; do
            seen=$(workers_answering "$ip:8081" 6 | sort -un | xargs)
            [[ $seen == "1 2 3" ]] && break
        done
        log "node container ${c:0:12}: workers answering 6 new connections: [$seen]"
        [[ $seen == "1 2 3" ]] || fail "workers 1, 2 and 3 should answer on ${c:0:12}, saw [$seen]"
    done
}

# The live dashboard on the compose lab, as a person sees it: the cargo test
# `compose_lab_dashboard` (tests/dashboard.rs) keeps the page open in headless Chromium under
# its own 15 s load, checks that every node container and each of its workers shows a rate
# above zero, rewrites the lab's topology (by rename, as an editor does) to one more worker,
# and checks the page shows the new workers serving and the change as a marker. Its
# screenshot stays at target/test-artifacts/dashboard-compose.png. The topology is then put
# back, and every node container returns to the workers it had.
dashboard_follows_compose_lab() {
    local workers t0 t_test names shot=target/test-artifacts/dashboard-compose.png
    workers=$(sed -n 's/^    workers: \([0-9][0-9]*\) .*/\1/p' "$lab/topology.yaml")
    [[ $workers =~ ^[0-9]+$ ]] || fail "cannot read workers from $lab/topology.yaml"
    every_node_has_workers "$workers" || fail "expected $workers workers per node before the test"
    cp "$lab/topology.yaml" "$work/topology.before-dashboard"
    rm -f "$shot"
    t0=$SECONDS
    SCALELAB_COMPOSE_ADMIN=$admin SCALELAB_COMPOSE_LISTEN=$listen \
        SCALELAB_COMPOSE_TOPOLOGY=$lab/topology.yaml SCALELAB_COMPOSE_WORKERS=$workers \
        cargo nextest run --release --locked --no-tests fail --test dashboard --run-ignored only \
        -E 'test(compose_lab_dashboard)' --cargo-quiet --success-output final ||
        fail "compose_lab_dashboard failed (its output is above)"
    t_test=$((SECONDS - t0))
    [[ -s $shot ]] || fail "the test left no $shot"
    every_node_has_workers $((workers + 1)) || fail "the test's edit should have given every node $((workers + 1)) workers"
    cp "$work/topology.before-dashboard" "$lab/topology.yaml.new"
    mv "$lab/topology.yaml.new" "$lab/topology.yaml"
    # Known and left to the balancer's side: with DNS discovery every container of a group is
    # a backend named after the group, and the page's charts key their series by name, so the
    # containers share one line (the worker bars and the table still show each). Said, not failed.
    names=$(curl -fsS --max-time 5 "http://$admin/live" | json '" ".join(n["name"] for n in r["nodes"])')
    if [[ $(tr ' ' '\n' <<<"$names" | sort | uniq -d) ]]; then
        log "note: /live names its nodes [$names]: the dashboard's charts draw same-named nodes as one series"
    fi
    t0=$SECONDS
    wait_until 20 "$workers workers again in every node container" every_node_has_workers "$workers"
    log "dashboard: every node container's $workers workers, then $((workers + 1)), served on the page (test $t_test s, back to $workers workers in $((SECONDS - t0)) s); screenshot $shot ($(du -h "$shot" | cut -f1))"
}

compose_down_leaves_nothing() {
    docker compose -p "$project" -f "$lab/compose.yaml" down --volumes --remove-orphans --timeout 20
    compose_started=0
    local kind left
    for kind in "ps -a" "network ls" "volume ls"; do
        # shellcheck disable=SC2086 # kind is two words on purpose
        left=$(docker $kind -q --filter "label=com.docker.compose.project=$project")
        [[ -z $left ]] || fail "docker $kind still lists: $left"
    done
    ! curl -fs "http://$listen/op1" >/dev/null 2>&1 || fail "something still answers on $listen"
}

# ---- check: elastic scaling under compose ------------------------------------------------

# `scalelab apply --watch` runs the lab's autoscaler against a Compose project of its own
# topology (experiments/autoscale.yaml's group, with a shorter period and window): open-loop
# /op2 at 60 req/s against 25 req/s per half-core node raises the group from 1 container to at
# least 2, and once the load stops it falls back to 1 after its scale-down window. The
# balancer's /state shows the autoscaler's decisions (apply --watch writes autoscale.json into
# the directory the balancer mounts).
compose_autoscale() {
    local dir=$work/autoscale ports peak=0 n t0 decisions
    mkdir -p "$dir"
    read -r -a ports < <(free_ports 2)
    cat >"$dir/topology.yaml" <<EOF
balancer:
  listen: 127.0.0.1:${ports[0]}
  admin: 127.0.0.1:${ports[1]}
  health_check: { path: /health, interval_ms: 500, timeout_ms: 2000 }
nodes:
  - name: node
    replicas: 1
    workers: 1
    cpus: 0.5
    port: 8081
    autoscale: { min_replicas: 1, max_replicas: 3, metric: cpu, target: 0.6, sync_ms: 2000, scale_down_stabilization_ms: 10000 }
EOF
    other_projects[$project]=$dir/compose.yaml   # for cleanup, should it fail midway
    "$bin" apply --watch --topology "$dir/topology.yaml" >"$dir/watch.out" 2>"$dir/watch.err" &
    watch_pid=$!
    wait_until 90 "the autoscaled lab to answer" curl -fsS -o /dev/null "http://127.0.0.1:${ports[0]}/op1"
    "$bin" load --url "http://127.0.0.1:${ports[0]}" --path /op2 --rate 60 --connections 32 --duration 25s \
        --json --no-progress >"$dir/load.json" 2>"$dir/load.err" &
    load_pid=$!
    while kill -0 "$load_pid" 2>/dev/null; do
        n=$(node_containers | wc -l)
        ((n > peak)) && peak=$n
        sleep 1
    done
    wait_load || true
    log "autoscale: peak $peak node containers under load ($(json 'r["rps"]' <"$dir/load.json") req/s served)"
    ((peak >= 2)) || fail "the group did not grow under load: $(tail -n 5 "$dir/watch.out")"
    t0=$SECONDS
    wait_until 60 "the group back at 1 container" node_count_is 1
    log "autoscale: back to 1 container $((SECONDS - t0)) s after the load"
    decisions=$(curl -fsS "http://127.0.0.1:${ports[1]}/state" |
        json '[g["autoscale"]["decisions_total"] for g in r["groups"] if g.get("autoscale")][0]') ||
        fail "the balancer's /state has no autoscale state"
    ((decisions >= 2)) || fail "/state counts $decisions decisions, expected a rise and a fall"
    grep -q "scalelab apply: node: replicas 1 -> " "$dir/watch.out" ||
        fail "apply --watch printed no decision: $(cat "$dir/watch.out")"
    kill -INT "$watch_pid"
    wait "$watch_pid" || fail "apply --watch did not stop cleanly on Ctrl-C: $(tail -n 3 "$dir/watch.err")"
    watch_pid=""
    docker compose -p "$project" -f "$dir/compose.yaml" down --volumes --remove-orphans --timeout 10 >/dev/null 2>&1
    unset "other_projects[$project]"
    [[ -z $(node_containers) ]] || fail "node containers left after down"
}

# ---- checks: sweep and distribution modes under compose ---------------------------------
# Both run once the lab is down, so nothing else competes for the 2 cores they measure.

# N distinct free TCP ports on 127.0.0.1, space-separated.
free_ports() {
    python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

# The project names: the sweep's own (experiment/src/sweep/runner.rs), and this check's.
readonly sweep_project=scalelab-sweep dist_project=scalelab-dist

# What results.json of the compose sweep below must say; prints one line per point.
check_sweep_results() {
    python3 - "$1" "$sweep_project" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
project = sys.argv[2]
problems = []
if r["runner"] != "compose":
    problems.append("runner is %r" % r["runner"])
points = [p for s in r["series"] for p in s["points"]]
if [p["value"] for p in points] != [1.0, 2.0]:
    problems.append("points %s, want replicas 1 and 2" % [p["value"] for p in points])
lines = []
for p in points:
    n, cpu = int(p["value"]), p["cpu_used"]
    # cpu_used is keyed like by_node: each container's node@<hostname>.
    want = sorted(p["by_node"])
    if p["errors"]:
        problems.append("replicas=%d: %d errors" % (n, p["errors"]))
    if len(want) != n or sorted(cpu) != want:
        problems.append("replicas=%d: cpu_used for %s, want %s" % (n, sorted(cpu), want))
    if not all(0 < v <= 0.6 for v in cpu.values()):
        problems.append("replicas=%d: cpu_used %s, want each in (0, 0.6]" % (n, cpu))
    lines.append("replicas=%d %.1f req/s (theory %.1f), p99 %.0f ms, %d errors, cpu used %s"
                 % (n, p["rps"], p["theory_rps"], p["latency_ms"]["p99"], p["errors"],
                    ", ".join("%s %.2f" % (k, v) for k, v in sorted(cpu.items()))))
if len(points) == 2 and not points[1]["rps"] > 1.2 * points[0]["rps"]:
    problems.append("replicas=2 (%.1f req/s) is not 1.2x replicas=1 (%.1f req/s)"
                    % (points[1]["rps"], points[0]["rps"]))
print("; ".join(lines))
if problems:
    sys.exit("results.json: " + "; ".join(problems))
PY
}

# `scalelab sweep --compose`: a series of replicas 1 then 2 of one group (2 workers, cpus 0.5)
# as the Compose project scalelab-sweep, its balancer on ports picked now, /op2 for 2 s a
# point. Its results.json must hold 2 points with no error, replicas=2 faster than replicas=1
# by at least 1.2x (the theory says 2x), and for each point the CPU of every node container
# (from the container's cgroup), each above 0 and within its 0.5-core limit (0.6 allows for
# the edges of the measured window). The sweep brings its project down itself: afterwards
# nothing of it is left.
compose_sweep() {
    local dir=$work/sweep ports facts kind left
    mkdir -p "$dir"
    read -r -a ports < <(free_ports 2)
    cat >"$dir/base.yaml" <<EOF
balancer:
  listen: 127.0.0.1:${ports[0]}
  admin: 127.0.0.1:${ports[1]}
nodes:
  - { name: node, replicas: 1, workers: 2, cpus: 0.5, port: 8081 }
EOF
    other_projects[$sweep_project]=$dir/out/compose-lab/compose.yaml   # for cleanup, should it fail midway
    "$bin" sweep --topology "$dir/base.yaml" --compose --vary replicas=1,2 --path /op2 \
        --duration 2s --rounds 1 --warmup 1s --pause 300ms --out "$dir/out" >"$dir/sweep.out" 2>"$dir/sweep.err" ||
        fail "scalelab sweep --compose failed: $(tail -n 5 "$dir/sweep.err")"
    facts=$(check_sweep_results "$dir/out/results.json" 2>&1) || fail "$facts"
    log "sweep: $facts"
    [[ -z $(docker compose -p "$sweep_project" -f "$dir/out/compose-lab/compose.yaml" ps -aq) ]] ||
        fail "docker compose -p $sweep_project ps still lists containers"
    for kind in "ps -a" "network ls" "volume ls"; do
        # shellcheck disable=SC2086 # kind is two words on purpose
        left=$(docker $kind -q --filter "label=com.docker.compose.project=$sweep_project")
        [[ -z $left ]] || fail "after the sweep, docker $kind still lists: $left"
    done
    unset "other_projects[$sweep_project]"
}

workers_of_is() { [[ $(workers_of "$1") -eq $2 ]]; }

# One line about a load report on one node of WORKERS workers: throughput, fairness over the
# workers, latency. The report's Jain index counts only the workers that answered (one worker
# taking everything scores 1.0), so the line adds the index over all WORKERS, idle ones as 0.
#   describe_spread REPORT WORKERS
describe_spread() {
    python3 - "$1" "$2" <<'PY'
import json, sys
r, n = json.load(open(sys.argv[1])), int(sys.argv[2])
counts = [sum(v for k, v in r["by_worker"].items() if k.endswith("/%d" % w)) for w in range(1, n + 1)]
jain_all = sum(counts) ** 2 / (n * sum(c * c for c in counts)) if any(counts) else 0
f, l = r["fairness"]["workers"], r["latency_ms"]
print("%.1f req/s; requests by worker [%s]; Jain %.3f over the %d that answered (busiest %.2fx the mean), "
      "%.3f over all %d; latency ms mean %.1f, p50 %.1f, p99 %.1f, stdev %.1f; %d errors"
      % (r["rps"], " ".join(map(str, counts)), f["jain"], f["count"], f["max_over_mean"], jain_all, n,
         l["mean"], l["p50"], l["p99"], l["stdev"], r["errors"]))
PY
}

# The distribution modes (nodes[].distribution), each rendered into the node's command: one
# node container of 4 workers (cpus 1.0) per mode, as the Compose project scalelab-dist (its
# node service only: no balancer), loaded straight at the container's address on the
# project's network (not published; the host reaches it) with 16 connections of /op2 for 5 s.
# Logged for each mode: throughput, requests per worker, Jain's index over the workers (1 =
# even, 0.25 = one of 4 took everything), the busiest worker against the mean, and latency
# (mean, p50, p99, stdev).
# Asserted: the node says it runs that mode (/info); no request of the load fails; and all 4
# workers serve, asked on new connections spread in time (workers_answering: a worker busy
# with a 100 ms request cannot accept the next one), up to 3 times 16 of them. Not from the
# load itself: its 16 connections are all opened at once and kept, so how they land is the
# very thing measured. With `shared`, one worker may accept all 16 (seen: [212 0 0 0]); with
# `reuseport`, the kernel's hash leaves a worker without any 4 times in 100.
distribution_modes() {
    local dir=$work/dist mode c ip got facts seen
    mkdir -p "$dir"
    other_projects[$dist_project]=$dir/compose.yaml
    for mode in shared reuseport round_robin; do
        # The balancer's addresses are never bound: only the node service is started.
        cat >"$dir/topology.yaml" <<EOF
balancer: { listen: 127.0.0.1:8080, admin: 127.0.0.1:9090 }
nodes:
  - { name: node, replicas: 1, workers: 4, cpus: 1.0, port: 8081, distribution: $mode }
EOF
        "$bin" compose --topology "$dir/topology.yaml" >/dev/null
        docker compose -p "$dist_project" -f "$dir/compose.yaml" up -d --no-build --wait --wait-timeout 60 node \
            >"$dir/up.log" 2>&1 || fail "up with distribution $mode: $(tail -n 5 "$dir/up.log")"
        c=$(docker ps -q --filter "label=com.docker.compose.project=$dist_project" --filter label=com.docker.compose.service=node)
        [[ -n $c && $(wc -l <<<"$c") == 1 ]] || fail "expected one node container, found [$c]"
        wait_until 20 "4 workers with distribution $mode" workers_of_is "$c" 4
        ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$c")
        got=$(curl -fsS --max-time 5 "http://$ip:8081/info" | json 'r["distribution"]') || fail "GET /info on $ip:8081"
        [[ $got == "$mode" ]] || fail "the node runs distribution $got, the topology says $mode"
        "$bin" load --url "http://$ip:8081" --path /op2 --connections 16 --duration 5s --json --no-progress \
            >"$dir/$mode.json" 2>"$dir/load.err" || fail "load with distribution $mode: $(cat "$dir/load.err")"
        facts=$(describe_spread "$dir/$mode.json" 4) || fail "no fairness in the load report with distribution $mode"
        log "distribution $mode: $facts"
        [[ $(json 'r["errors"]' <"$dir/$mode.json") == 0 ]] || fail "distribution $mode: requests failed"
        seen=""
        for _ in 1 2 3; do
            seen=$({ tr ' ' '\n' <<<"$seen"; workers_answering "$ip:8081" 16; } | grep . | sort -un | xargs)
            [[ $seen == "1 2 3 4" ]] && break
        done
        [[ $seen == "1 2 3 4" ]] || fail "distribution $mode: workers 1 to 4 should answer new connections, saw [$seen]"
    done
    docker compose -p "$dist_project" -f "$dir/compose.yaml" down --volumes --remove-orphans --timeout 10 >/dev/null 2>&1 ||
        fail "docker compose down of $dist_project failed"
    unset "other_projects[$dist_project]"
    [[ -z $(docker ps -aq --filter "label=com.docker.compose.project=$dist_project") ]] || fail "$dist_project left containers"
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

service_replicas_are() {
    [[ $(docker service ls --filter "name=${project}_$1" --format '{{.Replicas}}') == "$2" ]]
}

# The real stack.yaml (with the committed topology) on the single-node swarm; load through
# the balancer's host-mode port reaches both node tasks, which Swarm names node-1 and node-2.
stack_deploy_and_load() {
    local dir=$work/stack report
    mkdir -p "$dir"
    cp stack.yaml topology.yaml "$dir/"
    stack_deployed=1   # before deploying, so cleanup removes a half-deployed stack
    (cd "$dir" && docker stack deploy --resolve-image never -c stack.yaml "$project")
    wait_until 90 "node service 2/2" service_replicas_are node 2/2
    wait_until 60 "balancer service 1/1" service_replicas_are balancer 1/1
    # Swarm has no depends_on: the balancer comes up on its own time and finds the tasks.
    wait_until 60 "balancer sees 2 healthy nodes" healthy_backends_are 2
    report=$(load_json --path /op1 --connections 4 --duration 5s)
    [[ $(json 'r["errors"]' <<<"$report") == 0 ]] || fail "errors: $report"
    [[ $(json '" ".join(sorted(r["by_node"]))' <<<"$report") == "node-1 node-2" ]] ||
        fail "expected node-1 and node-2 to serve: $(json 'r["by_node"]' <<<"$report")"
    log "stack served $(json 'r["requests"]' <<<"$report") requests: $(json 'r["by_node"]' <<<"$report")"
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

check setup setup_tools
check hadolint lint_dockerfile
check dockerfile-workspace dockerfile_matches_workspace
check image assemble_image
check image-runs image_runs
check compose-build-plan compose_build_plan
check compose-up compose_up
check load-every-node load_reaches_every_node
check scale-under-load scale_under_load
check kill-node-under-load kill_node_under_load
check balancer-killed-under-load balancer_killed_under_load
check worker-edit-live worker_edit_applies_live
check dashboard dashboard_follows_compose_lab
check compose-down compose_down_leaves_nothing
check compose-sweep compose_sweep
check distribution-modes distribution_modes
check compose-autoscale compose_autoscale
check swarm-init swarm_init
check stack-deploy stack_deploy_and_load
check swarm-leave swarm_leave

log "all $passed checks passed"
echo "docker: $passed passed, 0 failed"
