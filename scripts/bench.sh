#!/usr/bin/env bash
# scalelab's benchmarks. Every number is a ratio against a peer measured in the same run, on
# the same machine, with the same load: the machine is shared and noisy, so one absolute
# req/s figure means little.
#
#   scripts/bench.sh                  # all five comparisons (about 4.5 minutes)
#   DURATION=3 ROUNDS=3 scripts/bench.sh   # a quicker, noisier look
#   scripts/bench.sh knobs            # pingora's tuning knobs, one at a time (about 9 minutes,
#                                     # plus a first build with --cfg tokio_unstable)
#
# Comparisons (targets from the project's issue):
#   1. /op1 on one worker vs one Node.js cluster worker  (wrk)            target >= 1.8x
#   2. saturated /op2 vs theoretical capacity            (scalelab load)  within 5%
#   3. balancer vs nginx, 2 nodes x 1 worker, 1 thread   (wrk)            target >= 0.9x
#      and vs a bare pingora proxy (bench/src/bare_pingora.rs: the same pingora, round robin,
#      a kept-alive pool, the balancer's runtime, no hooks), in the same run  target >= 0.95x
#   4. scalelab load vs wrk on /op1, same connections                     target >= 0.8x
#   5. balancer with its live dashboard open vs closed (the same balancer) target >= 0.97x
#
# `knobs` runs instead: the bare pingora proxy with one of pingora's public tuning knobs
# changed against the same proxy with pingora's defaults, in the setting of comparison 3
# (proxy on CPU $SERVER_CPU, wrk and 2 nodes on CPU $CLIENT_CPU, wrk -t1 -c$CONNS on /op1), one
# knob per comparison, with the method below. The knobs are the BARE_* variables of
# bench/src/bare_pingora.rs; KNOBS="BARE_POOL_SIZE=16 ..." picks some (default: all, see
# knobs_default below; "A=1,B=2" changes two at once). An entry prefixed "unstable:" runs
# both sides from a build with RUSTFLAGS="--cfg tokio_unstable" (pingora ignores
# runtime_enable_alt_timer without it).
# BASE_KNOBS="BARE_WORK_STEALING=0" applies to both sides (a knob on top of another); an
# entry that changes nothing (BARE_LISTENER_TASKS=1, pingora's default) is an A/A control:
# its ratio shows how far two identical proxies differ in this method.
#
# Method, the same for every comparison:
#   - Equal load on both sides: the same tool, threads (1) and connections ($CONNS) and
#     duration; both proxies add X-Forwarded-For and x-upstream; both nodes answer the same
#     JSON with the same identity headers.
#   - Warm-up: each side first serves $WARMUP s of the same load, unmeasured (Node's JIT,
#     connection pools, page cache).
#   - Rounds: $ROUNDS rounds of $DURATION s per side, alternating which side goes first
#     (AB, BA, AB, ...), so a slow drift in background load hits both sides alike.
#   - Statistic: the MEDIAN round per side, and the ratio of the medians. The median ignores
#     one disturbed round in either direction, and unlike best-of it does not favour the side
#     whose results scatter more. Every round is printed, so the spread is visible.
#   - Validity: a round with socket errors or non-2xx responses is flagged in the output.
#   - CPU placement (2-core machine): the load generator and the side being measured would
#     otherwise fight over cores, and the scheduler would place them differently from run to
#     run. So, with at least 2 CPUs, every comparison pins both of its sides the same way
#     with taskset:
#       1, 4: the server (primary and worker) on CPU $SERVER_CPU, the load generator on
#             CPU $CLIENT_CPU: each server gets exactly one core, as a 1-worker server
#             would in production.
#       3:    the proxy on CPU $SERVER_CPU alone; wrk and both nodes on CPU $CLIENT_CPU. The
#             proxy is then the one bottleneck, and the comparison is one proxy core against
#             one proxy core.
#       2:    not pinned: `scalelab up` caps each node with a cgroup, the subject of that row.
#     PIN=0 turns pinning off (the script still runs both sides the same way).
#   - Only 127.0.0.1; every process started here is stopped by PID at exit.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5}      # seconds per measured round
ROUNDS=${ROUNDS:-5}          # alternating rounds per side; the median is reported
WARMUP=${WARMUP:-2}          # unmeasured seconds per side before the rounds
CONNS=${CONNS:-32}           # connections for the throughput runs
PIN=${PIN:-1}                # 1: pin with taskset (see above), 0: let the scheduler place
CLIENT_CPU=${CLIENT_CPU:-0}  # load generators (and, in 3, the nodes)
SERVER_CPU=${SERVER_CPU:-1}  # the server or proxy under test

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
command -v node >/dev/null || need+=(nodejs)
command -v curl >/dev/null || need+=(curl)
command -v taskset >/dev/null || need+=(util-linux)
if ((${#need[@]})); then
    echo "installing ${need[*]}" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Always build: a stale binary would benchmark old code (a no-op when up to date).
cargo build --release --quiet
cargo build --release --quiet -p scalelab-bench --example bare_pingora
BIN=$PWD/target/release/scalelab
BARE=$PWD/target/release/examples/bare_pingora

if ((PIN)) && (($(nproc) < 2)); then
    echo "fewer than 2 CPUs: running unpinned" >&2
    PIN=0
fi
# on CPU CMD...: runs CMD in the foreground, pinned to CPU (unpinned with PIN=0 or CPU "-").
on() {
    local cpu=$1; shift
    if ((PIN)) && [ "$cpu" != - ]; then taskset -c "$cpu" "$@"; else "$@"; fi
}

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    # Everything here stops within a few seconds of SIGTERM; whatever does not gets SIGKILL.
    for _ in $(seq 50); do
        local alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.2
    done
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# N distinct free loopback ports, all held at once while choosing so none repeats.
ports() {
    python3 - "$1" <<'PY'
import socket, sys
held = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); held.append(s)
print(" ".join(str(s.getsockname()[1]) for s in held))
PY
}
# The first of two consecutive free loopback ports (node replicas use port, port+1).
port_pair() {
    python3 - <<'PY'
import socket
for _ in range(200):
    probe = socket.socket(); probe.bind(("127.0.0.1", 0)); p = probe.getsockname()[1]; probe.close()
    try:
        held = [socket.socket(), socket.socket()]
        held[0].bind(("127.0.0.1", p)); held[1].bind(("127.0.0.1", p + 1))
        [h.close() for h in held]; print(p); break
    except OSError:
        pass
PY
}
# Waits until http://127.0.0.1:$1$2 answers 2xx (10 s at most).
ready() {
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$1$2" >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "127.0.0.1:$1$2 not ready; log:" >&2; tail -20 "$WORK/log" >&2; exit 1
}
# start CPU CMD...: starts CMD in the background like `on`, remembering its PID. No shell
# function or subshell sits in between (taskset execs), so the PID is the program's own and
# the cleanup's SIGTERM reaches it.
start() {
    local cpu=$1; shift
    if ((PIN)) && [ "$cpu" != - ]; then
        taskset -c "$cpu" "$@" >>"$WORK/log" 2>&1 &
    else
        "$@" >>"$WORK/log" 2>&1 &
    fi
    PIDS+=($!)
}

# wrk req/s against a URL; "!" is appended when the round had errors or non-2xx answers.
wrk_rps() {
    local out
    out=$(on "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"$1s" "$2")
    local rps bad=""
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    grep -qE 'Socket errors|Non-2xx' <<<"$out" && bad="!"
    echo "$rps$bad"
}
# load_rps CPU SECONDS URL PATH CONNS: scalelab load req/s, 1 runtime thread (the same as
# wrk -t1); "!" is appended when any request failed or was not 2xx.
load_rps() {
    on "$1" "$BIN" load --url "$3" --path "$4" --connections "$5" --threads 1 \
        --duration "$2s" --json --no-progress |
        python3 -c 'import json, sys; r = json.load(sys.stdin); print("%.1f%s" % (r["rps"], "!" if r["errors"] else ""))'
}
median() { python3 -c "import statistics,sys; print(f'{statistics.median(float(a.rstrip(\"!\")) for a in sys.argv[1:]):.1f}')" "$@"; }
ratio() { python3 -c "print(f'{float($1)/float($2):.2f}')"; }
flagged() { if [[ "$*" == *"!"* ]]; then echo " (! marks a round with errors or non-2xx answers)"; fi; }

# compare NAME_A CMD_A NAME_B CMD_B: warm-up, then ROUNDS alternating rounds; sets A and B to
# the median req/s of each side. CMD_x is a function taking the duration in seconds.
compare() {
    local name_a=$1 cmd_a=$2 name_b=$3 cmd_b=$4 a=() b=() r
    $cmd_a "$WARMUP" >/dev/null; $cmd_b "$WARMUP" >/dev/null
    for r in $(seq "$ROUNDS"); do
        if ((r % 2)); then
            a+=("$($cmd_a "$DURATION")"); b+=("$($cmd_b "$DURATION")")
        else
            b+=("$($cmd_b "$DURATION")"); a+=("$($cmd_a "$DURATION")")
        fi
    done
    A=$(median "${a[@]}"); B=$(median "${b[@]}")
    ROUNDS_A="${a[*]}"; ROUNDS_B="${b[*]}"
    echo "   rounds: $name_a ${a[*]}  |  $name_b ${b[*]}$(flagged "${a[@]}" "${b[@]}")"
    echo "   median: $name_a $A  |  $name_b $B  ->  $(ratio "$A" "$B")x"
}

RESULTS=()
report() { RESULTS+=("$(printf '| %s | %s | %s | %s | %s |' "$@")"); }
placement() { ((PIN)) && echo "$1" || echo "unpinned"; }

# min-max of a list of rounds.
span() { python3 -c "import sys; v=[float(a.rstrip('!')) for a in sys.argv[1:]]; print(f'{min(v):.0f}-{max(v):.0f}')" "$@"; }

if [ "${1:-}" = knobs ]; then
    knobs_default="BARE_LISTENER_TASKS=1 BARE_LISTENER_TASKS=4 BARE_POOL_SIZE=16 BARE_POOL_SIZE=1024 BARE_WORK_STEALING=0
        BARE_L4_WRITE=16384 BARE_L4_READ=4096 BARE_SOCK_BUF=262144 unstable:BARE_ALT_TIMER=1"
    read -r -d '' -a knobs <<<"${KNOBS:-$knobs_default}" || true
    if [[ "${knobs[*]}" == *unstable:* ]]; then
        # A build of its own (its own target directory): the flag changes every crate's hash.
        RUSTFLAGS="--cfg tokio_unstable" cargo build --release --quiet -p scalelab-bench \
            --example bare_pingora --target-dir target/tokio-unstable
    fi
    UNSTABLE=$PWD/target/tokio-unstable/release/examples/bare_pingora
    echo "scalelab bench knobs: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at the start, ${DURATION}s x $ROUNDS alternating rounds per side (median), ${WARMUP}s warm-up, $CONNS connections, pinning $( ((PIN)) && echo on || echo off)"
    BASE_KNOBS=${BASE_KNOBS:-}
    echo "bare pingora with one knob changed vs the same binary with pingora's defaults${BASE_KNOBS:+ and $BASE_KNOBS on both sides}; wrk -t1 -c$CONNS /op1, 2 nodes x 1 worker, $(placement "proxy on CPU $SERVER_CPU, wrk and nodes on CPU $CLIENT_CPU")"
    BASE=$(port_pair)
    start "$CLIENT_CPU" "$BIN" node --name node-1 --listen "127.0.0.1:$BASE" --workers 1
    start "$CLIENT_CPU" "$BIN" node --name node-2 --listen "127.0.0.1:$((BASE + 1))" --workers 1
    ready "$BASE" /op1; ready "$((BASE + 1))" /op1
    # The baseline from each binary, started once and kept for every knob.
    declare -A BASELINE
    for bin in "$BARE" "$UNSTABLE"; do
        [ "$bin" = "$BARE" ] || [[ "${knobs[*]}" == *unstable:* ]] || continue
        read -r p <<<"$(ports 1)"
        # shellcheck disable=SC2086
        start "$SERVER_CPU" env ${BASE_KNOBS//,/ } "$bin" "127.0.0.1:$p" "127.0.0.1:$BASE" "127.0.0.1:$((BASE + 1))"
        ready "$p" /op1
        BASELINE[$bin]=$p
    done
    TABLE=()
    for knob in "${knobs[@]}"; do
        bin=$BARE
        if [[ "$knob" == unstable:* ]]; then bin=$UNSTABLE; knob=${knob#unstable:}; fi
        read -r KP <<<"$(ports 1)"
        # shellcheck disable=SC2086  # "A=1,B=2" sets two variables
        start "$SERVER_CPU" env ${BASE_KNOBS//,/ } ${knob//,/ } "$bin" "127.0.0.1:$KP" "127.0.0.1:$BASE" "127.0.0.1:$((BASE + 1))"
        VARIANT=${PIDS[-1]}
        ready "$KP" /op1
        seen=$(for _ in 1 2 3 4; do curl -fsi "http://127.0.0.1:$KP/op1" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-node" {print $2}'; done | sort -u | wc -l)
        [ "$seen" = 2 ] || { echo "proxy with $knob does not alternate between both nodes" >&2; exit 1; }
        BP=${BASELINE[$bin]}
        knob_on() { wrk_rps "$1" "http://127.0.0.1:$KP/op1"; }
        knob_off() { wrk_rps "$1" "http://127.0.0.1:$BP/op1"; }
        label=$knob; [ "$bin" = "$BARE" ] || label="$knob (tokio_unstable build)"
        echo "== $label"
        compare "knob" knob_on "defaults" knob_off
        # shellcheck disable=SC2086
        TABLE+=("$(printf '| %s | %s (%s) | %s (%s) | %sx |' "$label" "$A" "$(span $ROUNDS_A)" "$B" "$(span $ROUNDS_B)" "$(ratio "$A" "$B")")")
        kill -TERM "$VARIANT" 2>/dev/null || true
        wait "$VARIANT" 2>/dev/null || true
        kept=(); for pid in "${PIDS[@]}"; do [ "$pid" = "$VARIANT" ] || kept+=("$pid"); done; PIDS=("${kept[@]}")
    done
    echo
    echo "| knob | with the knob, req/s (rounds) | pingora's defaults, req/s (rounds) | ratio |"
    echo "|---|---|---|---|"
    printf '%s\n' "${TABLE[@]}"
    exit 0
fi

echo "scalelab bench: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at the start, ${DURATION}s x $ROUNDS alternating rounds per side (median), ${WARMUP}s warm-up, $CONNS connections, pinning $( ((PIN)) && echo on || echo off)"

read -r P1 P2 <<<"$(ports 2)"
start "$SERVER_CPU" "$BIN" node --name bench-1 --listen "127.0.0.1:$P1" --workers 1
PORT=$P2 WORKERS=1 start "$SERVER_CPU" node bench/node-cluster.js
ready "$P1" /op1; ready "$P2" /op1

echo "== 1. /op1: scalelab node (1 worker) vs Node.js cluster (1 worker), wrk -t1 -c$CONNS, $(placement "servers on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU")"
side_scalelab() { wrk_rps "$1" "http://127.0.0.1:$P1/op1"; }
side_nodejs() { wrk_rps "$1" "http://127.0.0.1:$P2/op1"; }
compare "scalelab" side_scalelab "node.js" side_nodejs
report "/op1, 1 worker (wrk -t1 -c$CONNS)" "scalelab node $A req/s" "Node.js cluster $B req/s" "$(ratio "$A" "$B")x" ">= 1.8x"

echo "== 4. load generator: scalelab load vs wrk, /op1 on the same node, 1 thread, $CONNS connections, $(placement "node on CPU $SERVER_CPU, generator on CPU $CLIENT_CPU")"
gen_scalelab() { load_rps "$CLIENT_CPU" "$1" "http://127.0.0.1:$P1" /op1 "$CONNS"; }
gen_wrk() { wrk_rps "$1" "http://127.0.0.1:$P1/op1"; }
compare "scalelab load" gen_scalelab "wrk" gen_wrk
report "load generator (/op1, 1 thread, $CONNS conns)" "scalelab load $A req/s" "wrk $B req/s" "$(ratio "$A" "$B")x" ">= 0.8x"

echo "== 3. balancer vs nginx: round robin over 2 nodes x 1 worker, 1 proxy thread/worker, wrk -t1 -c$CONNS, $(placement "proxy on CPU $SERVER_CPU, wrk and nodes on CPU $CLIENT_CPU")"
read -r LB ADMIN NG BP <<<"$(ports 4)"
# The balancer's topology names replicas by consecutive ports: start a pair there.
BASE=$(port_pair)
start "$CLIENT_CPU" "$BIN" node --name node-1 --listen "127.0.0.1:$BASE" --workers 1
start "$CLIENT_CPU" "$BIN" node --name node-2 --listen "127.0.0.1:$((BASE + 1))" --workers 1
cat >"$WORK/topology.yaml" <<YAML
balancer:
  listen: 127.0.0.1:$LB
  admin: 127.0.0.1:$ADMIN
  threads: 1
  health_check: { path: /health, interval_ms: 1000, unhealthy_after: 2, healthy_after: 1 }
nodes:
  - { name: node, replicas: 2, workers: 1, port: $BASE }
YAML
start "$SERVER_CPU" "$BIN" balancer --topology "$WORK/topology.yaml"
# nginx as the same proxy: one worker process, round robin, kept-alive upstream connections
# (as pingora's pool), HTTP/1.1 upstream, the same two headers added.
cat >"$WORK/nginx.conf" <<NGINX
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    upstream nodes { server 127.0.0.1:$BASE; server 127.0.0.1:$((BASE + 1)); keepalive 128; }
    server {
        listen 127.0.0.1:$NG;
        location / {
            proxy_pass http://nodes;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            add_header x-upstream \$upstream_addr;
        }
    }
}
NGINX
start "$SERVER_CPU" nginx -c "$WORK/nginx.conf" -g 'daemon off;'
# The bare proxy runs the balancer's runtime (no work stealing on its one thread: the knob
# that measured 1.12x in `scripts/bench.sh knobs`), so the two differ by the hooks alone.
start "$SERVER_CPU" env BARE_WORK_STEALING=0 "$BARE" "127.0.0.1:$BP" "127.0.0.1:$BASE" "127.0.0.1:$((BASE + 1))"
ready "$BASE" /op1; ready "$((BASE + 1))" /op1; ready "$LB" /op1; ready "$NG" /op1; ready "$BP" /op1
# All three must really alternate between the two nodes.
for p in "$LB" "$NG" "$BP"; do
    seen=$(for _ in 1 2 3 4; do curl -fsi "http://127.0.0.1:$p/op1" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-node" {print $2}'; done | sort -u | wc -l)
    [ "$seen" = 2 ] || { echo "proxy on port $p does not alternate between both nodes" >&2; exit 1; }
done
proxy_scalelab() { wrk_rps "$1" "http://127.0.0.1:$LB/op1"; }
proxy_nginx() { wrk_rps "$1" "http://127.0.0.1:$NG/op1"; }
compare "scalelab balancer" proxy_scalelab "nginx" proxy_nginx
report "balancer, 2 nodes x 1 worker (wrk -t1 -c$CONNS)" "scalelab balancer $A req/s" "nginx $B req/s" "$(ratio "$A" "$B")x" ">= 0.9x"
proxy_bare() { wrk_rps "$1" "http://127.0.0.1:$BP/op1"; }
compare "scalelab balancer" proxy_scalelab "bare pingora" proxy_bare
report "balancer vs bare pingora, same nodes (wrk -t1 -c$CONNS)" "scalelab balancer $A req/s" "bare pingora $B req/s" "$(ratio "$A" "$B")x" ">= 0.95x"
compare "bare pingora" proxy_bare "nginx" proxy_nginx
report "bare pingora vs nginx, same nodes (wrk -t1 -c$CONNS)" "bare pingora $A req/s" "nginx $B req/s" "$(ratio "$A" "$B")x" "(pingora's own cost)"

echo "== 5. balancer with the dashboard open vs closed: the same balancer as in 3, an /events reader (a dashboard's stream) on CPU $CLIENT_CPU during the open rounds"
dashboard_open() {
    local reader
    if ((PIN)); then taskset -c "$CLIENT_CPU" curl -sN "http://127.0.0.1:$ADMIN/events" >/dev/null 2>&1 &
    else curl -sN "http://127.0.0.1:$ADMIN/events" >/dev/null 2>&1 &
    fi
    reader=$!
    PIDS+=("$reader")
    sleep 1.2  # the page's first samples
    wrk_rps "$1" "http://127.0.0.1:$LB/op1"
    kill -TERM "$reader" 2>/dev/null || true
    wait "$reader" 2>/dev/null || true
}
dashboard_closed() { sleep 1.2; wrk_rps "$1" "http://127.0.0.1:$LB/op1"; }
compare "dashboard open" dashboard_open "dashboard closed" dashboard_closed
report "balancer, dashboard open vs closed (wrk -t1 -c$CONNS)" "open $A req/s" "closed $B req/s" "$(ratio "$A" "$B")x" ">= 0.97x"

echo "== 2. saturated /op2 vs theory: scalelab up, 2 nodes x 1 worker, cpus 0.5 each, op2 20 ms, scalelab load -c8, unpinned"
read -r UL UA <<<"$(ports 2)"
UB=$(port_pair)
cat >"$WORK/up.yaml" <<YAML
balancer: { listen: 127.0.0.1:$UL, admin: 127.0.0.1:$UA }
workload: { op2_cpu_ms: 20, max_cpu_ms: 1000 }
nodes:
  - { name: node, replicas: 2, workers: 1, cpus: 0.5, port: $UB }
YAML
start - "$BIN" up --topology "$WORK/up.yaml"
# `up` prints its table, with the CPU-cap verdict, once every listener is ready.
for _ in $(seq 100); do grep -q "^CPU caps:" "$WORK/log" && break; sleep 0.1; done
ready "$UL" /op1
CAPS=$(grep -m1 "^CPU caps:" "$WORK/log" || echo "CPU caps: unknown")
echo "   $CAPS"
# Capacity = sum over nodes of min(workers, cpus, cores) x 1000 / op2_cpu_ms.
if [[ "$CAPS" == "CPU caps: enforced"* ]]; then CPUS=0.5; else CPUS=$(nproc); fi
THEORY=$(python3 -c "print(f'{2 * min(1, $CPUS, $(nproc)) * 1000 / 20:.1f}')")
# A run that ends cuts off its in-flight requests, but each node still burns the CPU of the
# ones it already read (up to 4 x 20 ms, 160 ms of wall time at 0.5 CPU). Starting the next
# round before that drains would charge it ~3% of stale work, so every round starts after a
# 1 s pause.
op2() { sleep 1; load_rps - "$1" "http://127.0.0.1:$UL" /op2 8; }
op2 "$WARMUP" >/dev/null
a=()
for _ in $(seq "$ROUNDS"); do a+=("$(op2 "$DURATION")"); done
A=$(median "${a[@]}")
echo "   rounds: ${a[*]}$(flagged "${a[@]}")"
echo "   median: $A  theory $THEORY  ->  $(ratio "$A" "$THEORY")x"
report "saturated /op2, 2 nodes x 1 worker, cpus 0.5 (scalelab load -c8)" "measured $A req/s" "theory $THEORY req/s" "$(ratio "$A" "$THEORY")x" "0.95x .. 1.05x"

echo
echo "| comparison | scalelab | peer | ratio | target |"
echo "|---|---|---|---|---|"
printf '%s\n' "${RESULTS[@]}"
