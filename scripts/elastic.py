#!/usr/bin/env python3
"""Elastic scaling, measured: one staged /op2 load (low, high, low) against the group of
experiments/autoscale.yaml run five ways, one after the other, each by `scalelab up`:

  fixed-1      replicas: 1, no autoscale
  fixed-4      replicas: 4, no autoscale
  auto         autoscale 1..4 on cpu, target 0.6, 30 s scale-down window (the experiment)
  auto-nowin   the same without a scale-down window (scale_down_stabilization_ms: 0)
  auto-max2    the same with max_replicas: 2 (the ceiling)

For each: the SLO verdict (p99 < 250 ms, errors < 1%), p99 in each stage, failed requests
apart from 503s, 503s, node-seconds (replicas integrated over the run: the cost), and the
autoscaler's decisions. For `auto`: the lag from the step to the first decision and to p99
back under the SLO, and each new node's cold start (from its decision to being healthy at
the balancer). Each run's timeline (timeline.json, .csv, .html) is kept in OUT/SETUP/.

    python3 scripts/elastic.py [--quick] [--out DIR] [--only SETUP,...]

Traffic goes to 127.0.0.1 only (the topology's ports); each run is bounded by its stages, and
every lab is stopped (SIGINT, then SIGKILL of its process group after 20 s) when it ends.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "scalelab")
BASE = os.path.join(ROOT, "experiments", "autoscale.yaml")
SLO_P99_MS = 250.0
# (stages, the stage index where the load steps up, from 0)
STAGES = {False: ("20s:10,5s:70,40s:70,5s:10,50s:10", 1), True: ("10s:10,3s:70,20s:70,3s:10,40s:10", 1)}
SETUPS = ["fixed-1", "fixed-4", "auto", "auto-nowin", "auto-max2"]


def topology(setup):
    """experiments/autoscale.yaml, changed for `setup`."""
    text = open(BASE).read()
    block = re.search(r"\n    autoscale:\n(?:      .*\n)+", text)
    assert block, "experiments/autoscale.yaml has no autoscale block"
    if setup.startswith("fixed-"):
        text = text.replace(block.group(0), "\n")
        text = re.sub(r"replicas: 1 .*", "replicas: " + setup.split("-")[1], text)
    elif setup == "auto-nowin":
        text = re.sub(r"scale_down_stabilization_ms: \d+", "scale_down_stabilization_ms: 0", text)
    elif setup == "auto-max2":
        text = re.sub(r"max_replicas: \d+", "max_replicas: 2", text)
    return text


def addresses(text):
    listen = re.search(r"listen: (\S+)", text).group(1)
    admin = re.search(r"admin: (\S+)", text).group(1)
    return listen, admin


def get_json(url, timeout=1.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


class Poller(threading.Thread):
    """/state every 100 ms: the group's replicas and which nodes are healthy, with times."""

    def __init__(self, admin):
        super().__init__(daemon=True)
        self.admin, self.samples, self.last, self.stop = admin, [], None, threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                s = get_json("http://%s/state" % self.admin)
                groups = s.get("groups") or []
                replicas = groups[0]["replicas"] if groups else len(s["backends"])
                healthy = sorted(b["name"] for b in s["backends"] if b["healthy"])
                self.samples.append((time.time(), replicas, healthy))
                self.last = s
            except Exception:
                pass
            time.sleep(0.1)


def run_setup(setup, stages, out):
    text = topology(setup)
    listen, admin = addresses(text)
    os.makedirs(os.path.join(out, setup), exist_ok=True)
    path = os.path.join(out, setup, "topology.yaml")
    open(path, "w").write(text)
    log = open(os.path.join(out, setup, "up.log"), "w")
    up = subprocess.Popen([BIN, "up", "-t", path], stdout=log, stderr=subprocess.STDOUT,
                          start_new_session=True, env={**os.environ, "RUST_LOG": "warn"})
    try:
        deadline = time.time() + 30
        while "Ctrl-C stops everything" not in open(log.name).read():
            if time.time() > deadline or up.poll() is not None:
                raise SystemExit("%s: the lab did not start:\n%s" % (setup, open(log.name).read()))
            time.sleep(0.2)
        time.sleep(2)  # the balancer's first samples
        poller = Poller(admin)
        poller.start()
        started = time.time()
        load = subprocess.run(
            [BIN, "load", "--url", "http://" + listen, "--path", "/op2", "--stages", stages,
             "--connections", "64", "--slo", "p99<%dms" % SLO_P99_MS, "--slo", "errors<1%",
             "--timeline", os.path.join(out, setup), "--admin", "http://" + admin,
             "--json", "--no-progress"],
            capture_output=True, text=True, timeout=600)
        ended = time.time()
        time.sleep(1)
        poller.stop.set()
        poller.join()
    finally:
        os.kill(up.pid, signal.SIGINT)
        try:
            up.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
    if load.returncode not in (0, 3):
        raise SystemExit("%s: load failed (exit %d):\n%s" % (setup, load.returncode, load.stderr))
    report = json.loads(load.stdout)
    return {"setup": setup, "exit": load.returncode, "report": report, "started": started,
            "ended": ended, "samples": poller.samples, "state": poller.last,
            "timeline": json.load(open(os.path.join(out, setup, "timeline.json"))),
            "up_log": open(log.name).read()}


def node_seconds(r):
    """Replicas integrated over the load's run, from the 100 ms polls."""
    pts = [(t, n) for t, n, _ in r["samples"] if r["started"] <= t <= r["ended"]]
    total = 0.0
    for (t0, n0), (t1, _) in zip(pts, pts[1:]):
        total += n0 * (t1 - t0)
    return total


def decisions(r):
    groups = (r["state"] or {}).get("groups") or []
    a = groups[0].get("autoscale") if groups else None
    return a["decisions"] if a else []


def stage_starts(stages):
    t, out = 0.0, []
    for part in stages.split(","):
        out.append(t)
        t += float(part.split(":")[0].rstrip("s"))
    return out


def lessons(r, stages, step):
    """Lag to the first decision and to p99 back under the SLO; cold starts."""
    step_at = r["started"] + stage_starts(stages)[step]
    ups = [d for d in decisions(r) if d["to"] > d["from"] and d["at"] >= step_at]
    first = ups[0]["at"] - step_at if ups else None
    seconds = r["timeline"]["seconds"]
    step_s = int(stage_starts(stages)[step])
    over = [s["t"] for s in seconds if s["t"] >= step_s and (s["p99_ms"] or 0) > SLO_P99_MS]
    # back: seconds from the step until p99 was under the SLO again; 0 when it never went
    # over, None when it never came back within the run.
    back = 0
    if over:
        later = [s["t"] for s in seconds
                 if s["t"] > over[0] and s["p99_ms"] is not None and s["p99_ms"] <= SLO_P99_MS]
        back = (later[0] - step_s) if later else None
    cold = []
    for d in ups:
        before = set()
        for t, _, healthy in r["samples"]:
            if t <= d["at"]:
                before = set(healthy)
        for t, _, healthy in r["samples"]:
            if t > d["at"] and len(set(healthy) - before) >= d["to"] - d["from"]:
                cold.append(t - d["at"])
                break
    return first, back, cold


def fmt_ms(x):
    return "-" if x is None else ("%.0f ms" % x if x < 10000 else "%.1f s" % (x / 1000))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter stages (about 1 minute a setup)")
    ap.add_argument("--out", default="elastic-out", help="where the timelines go (default elastic-out)")
    ap.add_argument("--only", default=",".join(SETUPS), help="setups to run, comma-separated")
    args = ap.parse_args()
    if not os.path.exists(BIN):
        raise SystemExit("build first: cargo build --release")
    stages, step = STAGES[args.quick]
    only = args.only.split(",")
    unknown = [s for s in only if s not in SETUPS]
    if unknown:
        raise SystemExit("--only: unknown setups %s; expected some of %s" % (unknown, ",".join(SETUPS)))
    print("staged /op2 load: --stages %s (the step up is stage %d)" % (stages, step + 1), flush=True)
    results = []
    for setup in only:
        print("== %s ..." % setup, flush=True)
        r = run_setup(setup, stages, args.out)
        results.append(r)
        rep = r["report"]
        print("   %d requests, %d ok, %d 503, exit %d" % (rep["requests"], rep["ok"], rep["status"].get("503", 0), r["exit"]), flush=True)
    n_stages = len(stages.split(","))
    head = "| setup | SLO | " + " | ".join("p99 stage %d" % (i + 1) for i in range(n_stages)) + \
        " | failed (not 503) | 503s | node-seconds | decisions |"
    print("\n" + head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in results:
        rep = r["report"]
        p99 = {s["stage"]: s["p99_ms"] for s in rep.get("by_stage", [])}
        shed = rep["status"].get("503", 0)
        failed = [t["slo"] for t in rep.get("thresholds", []) if not t["passed"]]
        verdict = "pass" if r["exit"] == 0 else "fail (%s)" % ", ".join(failed)
        row = ["`%s`" % r["setup"], verdict] + [fmt_ms(p99.get(i + 1)) for i in range(n_stages)] + \
            [str(rep["errors"] - shed), str(shed), "%.0f" % node_seconds(r), str(len(decisions(r)))]
        print("| " + " | ".join(row) + " |")
    for r in results:
        if r["setup"].startswith("auto"):
            first, back, cold = lessons(r, stages, step)
            ds = ", ".join("%d→%d" % (d["from"], d["to"]) for d in decisions(r))
            print("\n%s: decisions %s" % (r["setup"], ds or "none"))
            print("  first decision %s after the step; p99 back under %d ms %s after it" % (
                "-" if first is None else "%.1f s" % first, SLO_P99_MS,
                "never (not within the run)" if back is None else
                "0 s (it never went over)" if back == 0 else "%d s" % back))
            if cold:
                print("  cold start (decision to healthy at the balancer): %s" % ", ".join("%.2f s" % c for c in cold))
    print("\ntimelines: %s/SETUP/timeline.html" % args.out)


if __name__ == "__main__":
    main()
