#!/usr/bin/env bash
# scalelab's benchmarks. Every number is a ratio against a peer measured in the same run, on
# the same machine, with the same load: the machine is shared and noisy, so one absolute
# req/s figure means little. Each comparison runs ROUNDS times, alternating the two sides,
# and keeps each side's best.
#
#   scripts/bench.sh                  # all four comparisons (about 3 minutes)
#   DURATION=10 ROUNDS=3 scripts/bench.sh
#
# Comparisons (targets from the project's issue):
#   1. /op1 on one worker vs one Node.js cluster worker  (wrk)     target >= 1.8x
#   2. saturated /op2 vs theoretical capacity            (scalelab load) within 5%
#   3. balancer vs nginx, 2 nodes x 1 worker, 1 thread   (wrk)     target >= 0.9x
#   4. scalelab load vs wrk on /op1, same connections               target >= 0.8x
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5}      # seconds per measurement
ROUNDS=${ROUNDS:-2}          # alternating rounds per comparison
CONNS=${CONNS:-32}           # connections for throughput runs

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
command -v node >/dev/null || need+=(nodejs)
if ((${#need[@]})); then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
[ -x target/release/scalelab ] || cargo build --release
BIN=$PWD/target/release/scalelab

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# A free loopback port.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
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
# Waits until http://127.0.0.1:$1$2 answers (10 s at most).
ready() { for _ in $(seq 100); do curl -fs "http://127.0.0.1:$1$2" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "127.0.0.1:$1 not ready" >&2; exit 1; }
# Starts a process in the background, remembering its PID.
start() { "$@" >>"$WORK/log" 2>&1 & PIDS+=($!); }
# wrk req/s against a URL.
wrk_rps() { wrk -t1 -c"$CONNS" -d"${DURATION}s" "$1" | awk '/Requests\/sec/ {print $2}'; }
# scalelab load req/s against a base URL and path.
load_rps() { "$BIN" load --url "$1" --path "$2" --connections "$3" --duration "${DURATION}s" --json --no-progress | python3 -c 'import json,sys; print(json.load(sys.stdin)["rps"])'; }
max() { python3 -c "import sys; print(max(float(a) for a in sys.argv[1:]))" "$@"; }
ratio() { python3 -c "print(f'{float($1)/float($2):.2f}')"; }
RESULTS=()
report() { RESULTS+=("$(printf '| %s | %s | %s | %s | %s |' "$@")"); }

echo "== 1. /op1: scalelab node (1 worker) vs Node.js cluster (1 worker), wrk -t1 -c$CONNS"
P1=$(port); P2=$(port)
start "$BIN" node --name bench-1 --listen "127.0.0.1:$P1" --workers 1
PORT=$P2 WORKERS=1 start node bench/node-cluster.js
ready "$P1" /op1; ready "$P2" /op1
a=(); b=()
for _ in $(seq "$ROUNDS"); do a+=("$(wrk_rps "http://127.0.0.1:$P1/op1")"); b+=("$(wrk_rps "http://127.0.0.1:$P2/op1")"); done
A=$(max "${a[@]}"); B=$(max "${b[@]}")
echo "   scalelab ${a[*]}  node.js ${b[*]}"
report "/op1, 1 worker" "scalelab node $A req/s" "Node.js cluster $B req/s" "$(ratio "$A" "$B")x" ">= 1.8x"

echo "== 4. load tool: scalelab load vs wrk, /op1 on the same node, $CONNS connections"
a=(); b=()
for _ in $(seq "$ROUNDS"); do a+=("$(load_rps "http://127.0.0.1:$P1" /op1 "$CONNS")"); b+=("$(wrk_rps "http://127.0.0.1:$P1/op1")"); done
A=$(max "${a[@]}"); B=$(max "${b[@]}")
echo "   scalelab load ${a[*]}  wrk ${b[*]}"
report "load generator" "scalelab load $A req/s" "wrk $B req/s" "$(ratio "$A" "$B")x" ">= 0.8x"

echo "== 3. balancer vs nginx: round robin over 2 nodes x 1 worker, 1 proxy thread, wrk -t1 -c$CONNS"
LB=$(port); ADMIN=$(port); NG=$(port)
# The balancer's topology names replicas by consecutive ports: start a pair there.
BASE=$(port_pair)
start "$BIN" node --name node-1 --listen "127.0.0.1:$BASE" --workers 1
start "$BIN" node --name node-2 --listen "127.0.0.1:$((BASE + 1))" --workers 1
cat >"$WORK/topology.yaml" <<YAML
balancer:
  listen: 127.0.0.1:$LB
  admin: 127.0.0.1:$ADMIN
  threads: 1
  health_check: { path: /health, interval_ms: 1000, unhealthy_after: 2, healthy_after: 1 }
nodes:
  - { name: node, replicas: 2, workers: 1, port: $BASE }
YAML
start "$BIN" balancer --topology "$WORK/topology.yaml"
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
start nginx -c "$WORK/nginx.conf" -g 'daemon off;'
ready "$BASE" /op1; ready "$((BASE + 1))" /op1; ready "$LB" /op1; ready "$NG" /op1
a=(); b=()
for _ in $(seq "$ROUNDS"); do a+=("$(wrk_rps "http://127.0.0.1:$LB/op1")"); b+=("$(wrk_rps "http://127.0.0.1:$NG/op1")"); done
A=$(max "${a[@]}"); B=$(max "${b[@]}")
echo "   scalelab balancer ${a[*]}  nginx ${b[*]}"
report "balancer, 2 nodes" "scalelab balancer $A req/s" "nginx $B req/s" "$(ratio "$A" "$B")x" ">= 0.9x"

echo "== 2. saturated /op2 vs theory: scalelab up, 2 nodes x 1 worker, cpus 0.5 each, op2 20 ms"
UL=$(port); UA=$(port); UB=$(port_pair)
cat >"$WORK/up.yaml" <<YAML
balancer: { listen: 127.0.0.1:$UL, admin: 127.0.0.1:$UA }
workload: { op2_cpu_ms: 20, max_cpu_ms: 1000 }
nodes:
  - { name: node, replicas: 2, workers: 1, cpus: 0.5, port: $UB }
YAML
start "$BIN" up --topology "$WORK/up.yaml"
ready "$UL" /op1
if grep -q "CPU caps: NOT enforced" "$WORK/log"; then
    CORES=$(nproc); THEORY=$(python3 -c "print(2 * min(1, $CORES) * 1000 / 20)")
else
    THEORY=$(python3 -c "print(2 * min(1, 0.5) * 1000 / 20)")
fi
load_rps "http://127.0.0.1:$UL" /op2 8 >/dev/null   # warm-up
a=()
for _ in $(seq "$ROUNDS"); do a+=("$(load_rps "http://127.0.0.1:$UL" /op2 8)"); done
A=$(max "${a[@]}")
echo "   measured ${a[*]}  theory $THEORY"
report "saturated /op2" "measured $A req/s" "theory $THEORY req/s" "$(ratio "$A" "$THEORY")x" "0.95x .. 1.05x"

echo
echo "| comparison | scalelab | peer | ratio | target |"
echo "|---|---|---|---|---|"
printf '%s\n' "${RESULTS[@]}"
