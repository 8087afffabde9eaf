#!/usr/bin/env python3
"""Probes a running scalelab lab as an attacker and a careless user would, and prints the
table in SECURITY.md. Every probe is bounded in time and count, talks only to 127.0.0.1, and
stops what it started by PID.

    cargo build --release && python3 scripts/probe.py        # about 3.5 minutes

Probes:
  slow      clients trickling a request head (one byte every 2 s) and clients idle after one
            request: connections the balancer still holds, and its memory, over time
  dos       /op2 at its cap (max_cpu_ms) on every worker, against /op1 throughput
  shed      more /op2 than the workers queue: 503 + Retry-After, and how fast
  restart   a balancer: edit, then a SIGKILL of the balancer, under load: failed requests
  topology  the mutation fuzzer (tests/topology_fuzz.rs) and the hostile topologies of the
            original probe, through `scalelab check`
  hung      a node stopped with SIGSTOP under load, then every node: how long clients wait
  sse       100 dashboard streams that never read, against /metrics and /state
  sighup    clients that connect, pause 20-50 ms, then send, across SIGHUPs, in each
            distribution mode, straight to a node
  readd     a replica removed and re-added while it drains, under load: EADDRINUSE, and how
            soon the new one answers
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "scalelab")
LISTEN, ADMIN, NODE = 18480, 18490, 18481


def topology(workers=2, extra_balancer="", workload=""):
    return f"""balancer:
  listen: 127.0.0.1:{LISTEN}
  admin: 127.0.0.1:{ADMIN}
{extra_balancer}workload:
  op2_cpu_ms: 20
{workload}nodes:
  - name: node
    replicas: 2
    workers: {workers}
    cpus: 1.0
    port: {NODE}
"""


class Lab:
    """`scalelab up` on a topology file of its own; stopped by PID."""

    def __init__(self, text):
        self.dir = tempfile.mkdtemp(prefix="scalelab-probe-")
        self.file = os.path.join(self.dir, "topology.yaml")
        self.write(text)
        self.log = open(os.path.join(self.dir, "up.log"), "w+")
        self.proc = subprocess.Popen([BIN, "up", "-t", self.file], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while "Ctrl-C stops everything" not in self.output():
            if time.time() > deadline:
                raise SystemExit(f"lab did not start:\n{self.output()}")
            time.sleep(0.1)

    def write(self, text):
        tmp = self.file + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.file)

    def output(self):
        with open(self.log.name) as f:
            return f.read()

    def balancer_pid(self):
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if ppid == self.proc.pid and len(argv) > 1 and argv[1] == b"balancer":
                return int(pid)
        raise SystemExit("no balancer process")

    def metric(self, name):
        text = http_get(ADMIN, "/metrics")[1]
        m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
        return float(m.group(1)) if m else None

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def http_get(port, path, timeout=5):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split()[1]) if head else 0
    return status, body.decode(errors="replace"), head.decode(errors="replace")


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def load(args, duration):
    out = subprocess.run(
        [BIN, "load", "--json", "--no-progress", "--url", f"http://127.0.0.1:{LISTEN}", "--duration", duration] + args,
        capture_output=True, text=True, timeout=120,
    )
    return json.loads(out.stdout)


def probe_slow(rows):
    lab = Lab(topology())
    try:
        pid = lab.balancer_pid()
        before = rss_kb(pid)
        trickle, idle = [], []
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", LISTEN))
            s.sendall(b"G")
            trickle.append(s)
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", LISTEN))
            s.sendall(b"GET /op1 HTTP/1.1\r\nHost: idle\r\n\r\n")
            s.recv(4096)
            idle.append(s)
        held, peak = [], before
        start = time.time()
        for t in (1, 12, 30, 65):
            while time.time() - start < t:
                for s in trickle:
                    try:
                        s.send(b"E")
                    except OSError:
                        pass
                time.sleep(2)
            peak = max(peak, rss_kb(pid))
            held.append((t, lab.metric("scalelab_balancer_client_connections")))
        for s in trickle + idle:
            s.close()
        time.sleep(2)
        after = rss_kb(pid)
        rows.append(("slow and idle clients",
                     "300 trickling a head (1 byte / 2 s) + 300 idle after one request",
                     "connections held at " + ", ".join(f"{t} s: {int(n)}" for t, n in held)
                     + f"; 408s sent {int(lab.metric('scalelab_balancer_header_timeouts_total'))}, "
                     f"idle closed {int(lab.metric('scalelab_balancer_idle_closed_total'))}; balancer RSS "
                     f"{before // 1024} MB before, {peak // 1024} MB peak, {after // 1024} MB after"))
    finally:
        lab.stop()


def probe_dos(rows):
    lab = Lab(topology())
    try:
        base = load(["--path", "/op1", "-c", "16"], "3s")
        import threading
        stop = time.time() + 4
        def hog():
            while time.time() < stop:
                try:
                    http_get(LISTEN, "/op2?cpu_ms=200", timeout=10)
                except OSError:
                    pass
        hogs = [threading.Thread(target=hog) for _ in range(8)]
        for h in hogs:
            h.start()
        during = load(["--path", "/op1", "-c", "16"], "3s")
        for h in hogs:
            h.join()
        over = http_get(LISTEN, "/op2?cpu_ms=1000")
        rows.append(("/op2 at its cap",
                     "8 clients looping /op2?cpu_ms=200 (the default max_cpu_ms) on 4 workers",
                     f"/op1 {base['ok_rps']:.0f} req/s before, {during['ok_rps']:.0f} req/s during "
                     f"(p99 {during['latency_ms']['p99']:.0f} ms, max {during['latency_ms']['max']:.0f} ms); "
                     f"cpu_ms=1000 answered {over[0]}"))
    finally:
        lab.stop()


def probe_shed(rows):
    lab = Lab(topology(workers=1, workload="  max_queue: 4\n"))
    try:
        load(["--path", "/op2?cpu_ms=5", "-c", "64"], "1s")  # open the balancer's pool
        r = load(["--path", "/op2?cpu_ms=50", "-c", "64"], "5s")
        shed = r["status"].get("503", 0)
        rows.append(("/op2 shedding",
                     "64 connections of /op2?cpu_ms=50 on 2 nodes x 1 worker, max_queue 4",
                     f"{r['ok']} served ({r['ok_rps']:.1f} req/s, theory 40), {shed} shed with 503 + "
                     f"Retry-After; latency p50 {r['latency_ms']['p50']:.0f} ms, p99 {r['latency_ms']['p99']:.0f} ms"))
    finally:
        lab.stop()


def probe_restart(rows):
    lab = Lab(topology())
    try:
        import threading
        results = {}
        t = threading.Thread(target=lambda: results.update(edit=load(["--path", "/op1", "-c", "16"], "6s")))
        t.start()
        time.sleep(2)
        lab.write(topology(extra_balancer="  health_check: { interval_ms: 500 }\n"))
        t.join()
        t = threading.Thread(target=lambda: results.update(kill=load(["--path", "/op1", "-c", "16"], "6s")))
        t.start()
        time.sleep(2)
        os.kill(lab.balancer_pid(), signal.SIGKILL)
        t.join()
        for what, key in (("balancer: edit under load", "edit"), ("balancer SIGKILL under load", "kill")):
            r = results[key]
            rows.append((what, "16 connections of /op1 for 6 s",
                         f"{r['requests']} requests, {r['errors']} errors, {r.get('retried', 0)} resent on a new "
                         f"connection; max latency {r['latency_ms']['max']:.0f} ms"))
    finally:
        lab.stop()


def children(parent, arg1):
    """PIDs of `parent`'s children whose argv[1] is `arg1`, with their argv."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if ppid == parent and len(argv) > 1 and argv[1] == arg1:
            found.append((int(pid), argv))
    return found


def timed_request(port, method, path, timeout=60):
    """(status, seconds) of one request on a fresh connection; status 0 when none came."""
    started = time.time()
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: probe\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        head = s.recv(12)
        s.close()
        status = int(head[9:12]) if len(head) >= 12 else 0
    except OSError:
        status = 0
    return status, time.time() - started


def probe_hung(rows):
    lab = Lab(topology(extra_balancer="  upstream: { read_timeout_ms: 2000 }\n", workload="  max_cpu_ms: 200\n  max_queue: 8\n"))
    stopped = []
    try:
        import threading
        nodes = {argv[argv.index(b"--name") + 1].decode(): pid for pid, argv in children(lab.proc.pid, b"node")}
        result = {}
        t = threading.Thread(target=lambda: result.update(r=load(["--path", "/op1", "-c", "16"], "8s")))
        t.start()
        time.sleep(2)
        os.killpg(nodes["node-2"], signal.SIGSTOP)
        stopped.append(nodes["node-2"])
        t.join()
        r = result["r"]
        timeouts = sum(float(v) for v in re.findall(r"^scalelab_balancer_upstream_timeouts_total\{[^}]*\} (\S+)$",
                                                      http_get(ADMIN, "/metrics")[1], re.M))
        rows.append(("hung node (SIGSTOP)", "16 connections of /op1 for 8 s, node-2 stopped 2 s in, read_timeout_ms 2000",
                     f"{r['requests']} requests, {r['errors']} errors, max latency {r['latency_ms']['max']:.0f} ms "
                     f"(before: requests hung until the node resumed, 54.9 s); {timeouts:.0f} attempts timed out and retried"))
        os.killpg(nodes["node-1"], signal.SIGSTOP)
        stopped.append(nodes["node-1"])
        get, post = timed_request(LISTEN, "GET", "/op1"), timed_request(LISTEN, "POST", "/op1")
        rows.append(("every node stopped", "one GET and one POST with both nodes stopped",
                     f"GET {get[0]} after {get[1]:.1f} s, POST {post[0]} after {post[1]:.1f} s (at most two read timeouts) "
                     f"(before: no answer at all)"))
    finally:
        for pid in stopped:
            os.killpg(pid, signal.SIGCONT)
        lab.stop()


def probe_sse(rows):
    lab = Lab(topology())
    streams = []
    try:
        for _ in range(100):
            s = socket.create_connection(("127.0.0.1", ADMIN), timeout=10)
            s.sendall(b"GET /events HTTP/1.1\r\nHost: probe\r\n\r\n")
            streams.append(s)
        time.sleep(1)
        took = {}
        for path in ("/metrics", "/state"):
            started = time.time()
            status = http_get(ADMIN, path)[0]
            took[path] = (status, time.time() - started)
        answers = {}
        for s in streams:
            try:
                code = s.recv(12)[9:12].decode() or "closed"
            except OSError as e:
                code = type(e).__name__
            answers[code] = answers.get(code, 0) + 1
        rows.append(("dashboard streams that never read", "100 /events connections that never read, then /metrics and /state",
                     ", ".join(f"{p} {st} in {t * 1000:.0f} ms" for p, (st, t) in took.items())
                     + f"; streams: {answers.get('200', 0)} served, {answers.get('503', 0)} answered 503 and closed "
                     "(before: 64 streams reset everything at accept)"))
    finally:
        for s in streams:
            s.close()
        lab.stop()


def probe_sighup(rows):
    import threading
    results = []
    for mode in ("shared", "reuseport", "round_robin"):
        port = NODE + 20
        node = subprocess.Popen([BIN, "node", "--name", "node-1", "--listen", f"127.0.0.1:{port}", "--workers", "2",
                                 "--distribution", mode], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            deadline = time.time() + 15
            while time.time() < deadline:
                try:
                    if http_get(port, "/health")[0] == 200:
                        break
                except OSError:
                    time.sleep(0.1)
            stop, counts = threading.Event(), {"answered": 0, "lost": 0}
            lock = threading.Lock()

            def client(c):
                for i in range(3000):
                    if stop.is_set():
                        return
                    ok = False
                    try:
                        s = socket.create_connection(("127.0.0.1", port), timeout=10)
                        time.sleep((20 + (c * 7 + i * 13) % 31) / 1000)
                        s.sendall(b"GET /op1 HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
                        ok = s.recv(12).startswith(b"HTTP/1.1 200")
                        s.close()
                    except OSError:
                        pass
                    with lock:
                        counts["answered" if ok else "lost"] += 1

            threads = [threading.Thread(target=client, args=(c,)) for c in range(16)]
            for t in threads:
                t.start()
            for _ in range(3):
                time.sleep(1)
                node.send_signal(signal.SIGHUP)
            time.sleep(1.5)
            stop.set()
            for t in threads:
                t.join()
            results.append(f"{mode}: {counts['answered']} answered, {counts['lost']} unanswered")
        finally:
            os.killpg(node.pid, signal.SIGTERM)
            node.wait(20)
    rows.append(("SIGHUP rolling restart", "16 clients that connect, pause 20-50 ms, then send, straight to a node of 2 "
                 "workers, 3 SIGHUPs", "; ".join(results) + " (before: 10-18 lost per SIGHUP in shared)"))


def probe_topology(rows):
    cases = {
        "health_check.path \"/a b\"": ("  admin: 127.0.0.1:9090\n", '  admin: 127.0.0.1:9090\n  health_check: { path: "/a b" }\n'),
        "threads 1000000": ("  admin: 127.0.0.1:9090\n", "  admin: 127.0.0.1:9090\n  threads: 1000000\n"),
        "200 groups x 64 replicas x 64 workers": None,
        "cpus 1e-300": ("    cpus: 1.0\n", "    cpus: 1e-300\n"),
        "interval_ms 2^64-1": ("  admin: 127.0.0.1:9090\n", "  admin: 127.0.0.1:9090\n  health_check: { interval_ms: 18446744073709551615 }\n"),
        "privileged port 80": ("    port: 8081\n", "    port: 80\n"),
    }
    base = topology().replace(f"127.0.0.1:{LISTEN}", "127.0.0.1:8080").replace(f"127.0.0.1:{ADMIN}", "127.0.0.1:9090").replace(f"port: {NODE}", "port: 8081")
    refused, panics = 0, 0
    with tempfile.TemporaryDirectory() as d:
        for name, edit in cases.items():
            if edit is None:
                text = base.split("nodes:")[0] + "nodes:\n" + "".join(
                    f"  - {{ name: g{i}x, replicas: 64, workers: 64, port: {2000 + i * 64} }}\n" for i in range(200))
            else:
                text = base.replace(*edit)
            path = os.path.join(d, "t.yaml")
            with open(path, "w") as f:
                f.write(text)
            out = subprocess.run([BIN, "check", path], capture_output=True, text=True, timeout=30)
            refused += out.returncode == 1 and "line " in out.stderr
            panics += "panicked" in out.stderr
    fuzz = subprocess.run(["cargo", "nextest", "run", "--release", "--test", "topology_fuzz", "--no-capture"],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PROPTEST_CASES": "4000"}, timeout=600)
    ok = "1 passed" in fuzz.stdout + fuzz.stderr
    rows.append(("hostile topologies", f"the {len(cases)} topologies of the original probe, through scalelab check",
                 f"{refused} of {len(cases)} refused with a line and the bound named; {panics} panics"))
    rows.append(("topology fuzzer", "4000 random mutations of topology.yaml (tests/topology_fuzz.rs)",
                 "every problem placed by line and column, every accepted topology passes every child's "
                 f"start-up checks: {'passed' if ok else 'FAILED'}; 0 panics" if ok else "FAILED (see cargo output)"))


def topology_replicas(n):
    return topology().replace("    replicas: 2\n", f"    replicas: {n}\n")


def probe_readd(rows):
    """Defect 4: a replica removed and re-added while its predecessor drains, under load."""
    lab = Lab(topology_replicas(2))
    try:
        import threading
        results = {}
        t = threading.Thread(target=lambda: results.update(r=load(["--path", "/op1", "-c", "16"], "10s")))
        t.start()
        time.sleep(1)
        answered = []
        for pause in (0.4, 3.2):  # back before its stop (kept), back while it drains (waits)
            lab.write(topology_replicas(1))
            time.sleep(pause)
            lab.write(topology_replicas(2))
            edited = time.time()
            while time.time() - edited < 5:
                try:
                    if http_get(NODE + 1, "/health", timeout=0.5)[0] == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.02)
            answered.append(time.time() - edited)
        t.join()
        r = results["r"]
        out = lab.output()
        clashes = out.count("Address already in use")
        rows.append(("replica re-added while it drains",
                     "2 -> 1 -> 2 replicas within 0.4 s, then again 3.2 s apart, under 16 connections of /op1",
                     f"{r['requests']} requests, {r['errors']} errors; node-2 answered "
                     f"{answered[0] * 1000:.0f} ms and {answered[1] * 1000:.0f} ms after the re-adds; "
                     f"{clashes} EADDRINUSE in the log"))
    finally:
        lab.stop()


def main():
    if not os.path.exists(BIN):
        raise SystemExit("build first: cargo build --release")
    which = sys.argv[1:] or ["slow", "dos", "shed", "restart", "topology", "hung", "sse", "sighup", "readd"]
    probes = {"slow": probe_slow, "dos": probe_dos, "shed": probe_shed, "restart": probe_restart,
              "topology": probe_topology, "hung": probe_hung, "sse": probe_sse, "sighup": probe_sighup, "readd": probe_readd}
    unknown = [w for w in which if w not in probes]
    if unknown:
        raise SystemExit("usage: python3 scripts/probe.py [PROBE...]\nprobes: " + " ".join(probes)
                         + (f"\nunknown: {' '.join(unknown)}" if unknown != ["--help"] and unknown != ["-h"] else ""))
    rows = []
    for name in which:
        print(f"probe: {name}", file=sys.stderr)
        probes[name](rows)
    print("| probe | what | result |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
