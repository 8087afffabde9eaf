// The scalelab dashboard: reads the balancer's live samples (/events, server-sent events:
// the balancer's last 5 minutes at once, then about one a second), keeps the last few minutes
// of them, and draws them with uPlot. Charts: throughput per node with the
// theoretical capacity, latency, in-flight requests, CPU against the cap, errors, timeouts and
// retries, and the clients that left before their answer (apart: not a node's failure);
// every topology change is a marker on the charts. Autoscaled groups get their own charts:
// replicas as steps and the metric against its target, with a marker per decision. Workers
// and the topology are HTML tables and bars, with data-* attributes a test (or a curious
// reader) can query.
"use strict";

const HISTORY_SECONDS = 300;
const COLORS = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#bf8700", "#0a7285", "#bc4c00", "#57606a"];

const state = {
  times: [],          // sample times, unix seconds
  theory: [],         // theoretical capacity at each sample
  op2: [],            // /op2 requests per second over all nodes
  aborts: [],         // requests per second whose client went away (nginx's 499)
  nodes: new Map(),   // name -> { color, rps[], p50[], p99[], inflight[], cpu[], cap[], errors[], retries[], timeouts[] }
  changes: [],        // { t, what }
  groups: new Map(),  // autoscaled group -> { color, replicas[], desired[], value[], target[], metric }
  decisions: [],      // { t, what, mark }: the autoscalers' decisions (mark: the chart's short label)
  charts: {},         // id -> uPlot
  nodeKey: "",        // names the charts were built for
  last: null,         // the latest sample
  renderPending: false,
};

function colorOf(name) {
  const node = state.nodes.get(name);
  if (node) return node.color;
  return COLORS[state.nodes.size % COLORS.length];
}

// ---- samples ----

function ingest(sample) {
  // The stream starts with the balancer's recent samples; after a reconnect some of them are
  // already drawn.
  if (state.times.length && sample.t <= state.times[state.times.length - 1]) return;
  state.last = sample;
  state.times.push(sample.t);
  state.theory.push(sample.theory_rps);
  state.op2.push(sample.op2_rps);
  state.aborts.push(sample.client_aborts_per_s ?? 0);
  const seen = new Set();
  for (const n of sample.nodes) {
    seen.add(n.name);
    if (!state.nodes.has(n.name)) {
      const empty = () => state.times.slice(0, -1).map(() => null);
      state.nodes.set(n.name, {
        color: colorOf(n.name), rps: empty(), p50: empty(), p99: empty(), inflight: empty(),
        cpu: empty(), cap: empty(), errors: empty(), retries: empty(), timeouts: empty(),
      });
    }
    const s = state.nodes.get(n.name);
    s.rps.push(n.rps); s.p50.push(n.p50_ms || null); s.p99.push(n.p99_ms || null);
    s.inflight.push(n.in_flight); s.cpu.push(n.cpu); s.cap.push(n.cpu_cap);
    s.errors.push(n.errors_per_s); s.retries.push(n.retries_per_s); s.timeouts.push(n.timeouts_per_s);
  }
  for (const [name, s] of state.nodes) {
    if (!seen.has(name)) for (const k of ["rps", "p50", "p99", "inflight", "cpu", "cap", "errors", "retries", "timeouts"]) s[k].push(null);
  }
  // Keep the last HISTORY_SECONDS; forget nodes with nothing left in view.
  while (state.times.length > HISTORY_SECONDS) {
    state.times.shift(); state.theory.shift(); state.op2.shift(); state.aborts.shift();
    for (const s of state.nodes.values()) for (const k of ["rps", "p50", "p99", "inflight", "cpu", "cap", "errors", "retries", "timeouts"]) s[k].shift();
  }
  for (const [name, s] of state.nodes) if (s.rps.every((v) => v === null)) state.nodes.delete(name);
  ingestGroups(sample);
  for (const c of sample.changes) {
    if (!state.changes.some((k) => k.t === c.t && k.what === c.what)) state.changes.push(c);
  }
  scheduleRender();
}

// The autoscaled groups of a sample, aligned with state.times like the nodes.
const GROUP_KEYS = ["replicas", "desired", "value", "target"];
function ingestGroups(sample) {
  const seen = new Set();
  for (const g of sample.groups || []) {
    const a = g.autoscale;
    if (!a) continue;
    seen.add(g.name);
    if (!state.groups.has(g.name)) {
      const empty = () => state.times.slice(0, -1).map(() => null);
      state.groups.set(g.name, { color: COLORS[state.groups.size % COLORS.length], metric: a.metric,
        replicas: empty(), desired: empty(), value: empty(), target: empty() });
    }
    const s = state.groups.get(g.name);
    s.metric = a.metric;
    s.replicas.push(g.replicas); s.desired.push(a.desired); s.value.push(a.value); s.target.push(a.target);
    for (const d of a.decisions) {
      const what = `${g.name}: ${d.from}→${d.to} (${d.reason})`;
      // The chart marker says the step; the list below the charts gives the reason.
      const mark = `${g.name} ${d.from}→${d.to}`;
      if (!state.decisions.some((k) => k.t === d.at && k.what === what)) state.decisions.push({ t: d.at, what, mark });
    }
  }
  for (const [name, s] of state.groups) if (!seen.has(name)) for (const k of GROUP_KEYS) s[k].push(null);
  for (const s of state.groups.values()) while (s.replicas.length > state.times.length) for (const k of GROUP_KEYS) s[k].shift();
  for (const [name, s] of state.groups) if (s.replicas.every((v) => v === null)) state.groups.delete(name);
}

// A burst of samples (the history a new stream starts with) is drawn once, not sample by sample.
function scheduleRender() {
  if (state.renderPending) return;
  state.renderPending = true;
  setTimeout(() => { state.renderPending = false; render(); }, 50);
}

// ---- charts ----

// Draws every change in `list()` (topology changes by default) in view as a vertical line
// with its text.
function markers(list = () => state.changes) {
  return {
    hooks: {
      draw: [(u) => {
        const { ctx } = u;
        const [lo, hi] = [u.scales.x.min, u.scales.x.max];
        ctx.save();
        ctx.strokeStyle = "#8c959f"; ctx.fillStyle = "#424a53"; ctx.setLineDash([4, 3]);
        ctx.font = `${Math.round(11 * devicePixelRatio)}px system-ui, sans-serif`;
        let row = 0;
        for (const c of list()) {
          if (c.t < lo || c.t > hi) continue;
          const x = u.valToPos(c.t, "x", true);
          ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
          ctx.fillText(c.mark || c.what, x + 4 * devicePixelRatio, u.bbox.top + (12 + 13 * (row++ % 3)) * devicePixelRatio);
        }
        ctx.restore();
      }],
    },
  };
}

function chart(id, yLabel, series, data, marks = markers()) {
  const el = document.getElementById(id);
  const width = Math.max(320, el.clientWidth);
  const opts = {
    width, height: 220,
    scales: { x: { time: true } },
    axes: [{}, { label: yLabel, size: 60 }],
    series: [{}].concat(series),
    legend: { live: false },
    plugins: [marks],
  };
  if (state.charts[id]) state.charts[id].destroy();
  el.textContent = "";
  state.charts[id] = new uPlot(opts, data, el);
}

function nodeSeries(label, opts = {}) {
  return [...state.nodes.entries()].map(([name, s]) => ({
    label: `${name}${label}`, stroke: s.color, width: opts.width || 2, dash: opts.dash, spanGaps: false,
  }));
}

function buildCharts() {
  const names = [...state.nodes.keys()];
  const t = state.times;
  const col = (k) => names.map((n) => state.nodes.get(n)[k]);
  chart("chart-rps", "req/s",
    nodeSeries("").concat([
      { label: "all /op2", stroke: "#24292f", width: 2.5 },
      { label: "theory /op2 capacity", stroke: "#57606a", dash: [8, 4], width: 1.5 },
    ]),
    [t, ...col("rps"), state.op2, state.theory]);
  chart("chart-latency", "ms",
    nodeSeries(" p50", { width: 1 }).concat(nodeSeries(" p99", { width: 2.5 })),
    [t, ...col("p50"), ...col("p99")]);
  chart("chart-inflight", "requests", nodeSeries(""), [t, ...col("inflight")]);
  chart("chart-cpu", "cores",
    nodeSeries(" used").concat(nodeSeries(" cap", { dash: [2, 3], width: 1.5 })),
    [t, ...col("cpu"), ...col("cap")]);
  chart("chart-errors", "per second",
    nodeSeries(" errors").concat(nodeSeries(" retries", { dash: [2, 3] }),
      nodeSeries(" timeouts", { dash: [8, 3], width: 1.5 }),
      [{ label: "clients gone (499)", stroke: "#8c959f", width: 1.5 }]),
    [t, ...col("errors"), ...col("retries"), ...col("timeouts"), state.aborts]);
  buildGroupCharts();
  state.nodeKey = names.join(",") + "|" + [...state.groups.keys()].join(",");
}

function groupData() {
  const names = [...state.groups.keys()];
  const col = (k) => names.map((n) => state.groups.get(n)[k]);
  return {
    replicas: [state.times, ...col("replicas"), ...col("desired")],
    metric: [state.times, ...col("value"), ...col("target")],
  };
}

function buildGroupCharts() {
  const groups = [...state.groups.entries()];
  document.getElementById("autoscaling").hidden = groups.length === 0;
  if (!groups.length) return;
  const series = (suffix, opts = {}) => groups.map(([name, g]) => ({
    label: `${name}${typeof suffix === "function" ? suffix(g) : suffix}`, stroke: g.color,
    width: opts.width || 2, dash: opts.dash, paths: opts.steps ? uPlot.paths.stepped({ align: 1 }) : undefined,
  }));
  const decided = markers(() => state.decisions);
  const data = groupData();
  chart("chart-replicas", "replicas",
    series(" replicas", { steps: true, width: 2.5 }).concat(series(" desired", { steps: true, dash: [6, 4], width: 1.5 })),
    data.replicas, decided);
  const unit = (g) => ({ cpu: " cpu (used / cap)", in_flight: " in flight per node", rps: " req/s per node" }[g.metric] || "");
  chart("chart-metric", "metric per node",
    series(unit).concat(series((g) => ` target`, { dash: [2, 3], width: 1.5 })), data.metric, decided);
}

function updateCharts() {
  const names = [...state.nodes.keys()];
  const key = names.join(",") + "|" + [...state.groups.keys()].join(",");
  if (key !== state.nodeKey || !state.charts["chart-rps"]) return buildCharts();
  const t = state.times;
  const col = (k) => names.map((n) => state.nodes.get(n)[k]);
  state.charts["chart-rps"].setData([t, ...col("rps"), state.op2, state.theory]);
  state.charts["chart-latency"].setData([t, ...col("p50"), ...col("p99")]);
  state.charts["chart-inflight"].setData([t, ...col("inflight")]);
  state.charts["chart-cpu"].setData([t, ...col("cpu"), ...col("cap")]);
  state.charts["chart-errors"].setData([t, ...col("errors"), ...col("retries"), ...col("timeouts"), state.aborts]);
  if (state.groups.size) {
    const data = groupData();
    state.charts["chart-replicas"].setData(data.replicas);
    state.charts["chart-metric"].setData(data.metric);
  }
}

// ---- tables ----

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k === "style") e.style.cssText = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

const fmt = (x, digits = 1) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));
const clock = (t) => new Date(t * 1000).toLocaleTimeString();

function renderWorkers(sample) {
  const root = document.getElementById("workers");
  root.textContent = "";
  for (const n of sample.nodes) {
    const box = el("div", { class: "node-workers", "data-node": n.name });
    box.append(el("h3", {}, el("span", { class: "swatch", style: `background:${colorOf(n.name)}` }),
      `${n.name} — ${fmt(n.rps)} req/s over ${n.workers.length} worker(s)`));
    for (const w of n.workers) {
      const pct = (w.share * 100).toFixed(0);
      box.append(el("div", { class: "worker", "data-node": n.name, "data-worker": String(w.id), "data-rps": fmt(w.rps, 2) },
        el("span", { class: "label" }, `worker ${w.id}`),
        el("div", { class: "bar" }, el("div", { style: `width:${pct}%;background:${colorOf(n.name)}` })),
        el("span", {}, `${fmt(w.rps)} req/s · ${pct}%`)));
    }
    root.append(box);
  }
}

function renderTopology(sample) {
  const root = document.getElementById("topology");
  const table = el("table", {},
    el("tr", {}, ...["node", "group", "address", "health", "since", "workers", "cpu cap", "req/s", "in flight", "p99 ms"]
      .map((h, i) => el("th", { class: i >= 5 ? "num" : "" }, h))));
  for (const n of sample.nodes) {
    table.append(el("tr", { "data-node": n.name, "data-healthy": String(n.healthy) },
      el("td", {}, el("span", { class: "swatch", style: `background:${colorOf(n.name)}` }), n.name),
      el("td", {}, n.group), el("td", {}, n.addr),
      el("td", { class: `health ${n.healthy ? "up" : "down"}` }, n.healthy ? "healthy" : "down"),
      el("td", {}, clock(n.healthy_since)),
      el("td", { class: "num" }, String(n.workers_configured)),
      el("td", { class: "num" }, n.cpu_cap ? fmt(n.cpu_cap, 2) : "none"),
      el("td", { class: "num" }, fmt(n.rps)), el("td", { class: "num" }, String(n.in_flight)),
      el("td", { class: "num" }, fmt(n.p99_ms, 2))));
  }
  root.textContent = "";
  root.append(table);
  const list = document.getElementById("changes");
  list.textContent = "";
  for (const c of state.changes.slice().reverse()) {
    list.append(el("li", { "data-what": c.what }, el("time", {}, clock(c.t)), c.what));
  }
  if (!state.changes.length) list.append(el("li", {}, "no change since the balancer started"));
  const decisions = document.getElementById("decisions");
  decisions.textContent = "";
  for (const d of state.decisions.slice().reverse()) {
    decisions.append(el("li", { "data-decision": d.what }, el("time", {}, clock(d.t)), d.what));
  }
  if (state.groups.size) {
    const replicas = document.getElementById("chart-replicas");
    replicas.dataset.groups = [...state.groups.keys()].join(",");
    replicas.dataset.decisions = String(state.decisions.length);
    replicas.dataset.replicas = [...state.groups.values()].map((g) => g.replicas[g.replicas.length - 1]).join(",");
  }
  document.getElementById("chart-rps").dataset.markers = String(state.changes.length);
  document.getElementById("chart-rps").dataset.samples = String(state.times.length);
}

function render() {
  const s = state.last;
  document.getElementById("summary").textContent =
    `${s.nodes.length} node(s) · ${s.algorithm} · ${fmt(s.rps)} req/s, of which /op2 ${fmt(s.op2_rps)} · ` +
    `theory for /op2 ${fmt(s.theory_rps)} req/s on ${s.cores} core(s) at ${s.op2_cpu_ms} ms each`;
  const banner = document.getElementById("last-error");
  banner.hidden = !s.last_error;
  if (s.last_error) banner.textContent = `Rejected edit at ${clock(s.last_error.t)}, the lab keeps its last good topology:\n${s.last_error.what}`;
  updateCharts();
  renderWorkers(s);
  renderTopology(s);
}

// ---- the stream ----

function setStatus(kind, text) {
  const s = document.getElementById("status");
  s.className = `status ${kind}`;
  s.textContent = text;
}

function connect() {
  const events = new EventSource("/events");
  events.onopen = () => setStatus("live", "live");
  events.onmessage = (m) => {
    setStatus("live", "live");
    try { ingest(JSON.parse(m.data)); } catch (e) { console.error("bad sample", e); }
  };
  // EventSource reconnects by itself (every 2 s, the `retry` the balancer sends); say so.
  events.onerror = () => setStatus("down", "balancer not reachable — reconnecting…");
}

window.addEventListener("resize", () => { state.nodeKey = ""; if (state.last) updateCharts(); });
connect();
