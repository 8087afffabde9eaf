//! The rules a topology must follow beyond its types. Each broken rule becomes a `Problem`
//! naming the field, where it is, and what was expected; all of them are collected.

use std::net::SocketAddr;

use crate::error::Problem;
use crate::model::{Topology, NODE_HOST};
use crate::spans::Spans;

/// Upper bounds that keep a typo (workers: 4000) from taking the machine down.
const MAX_WORKERS: usize = 64;
const MAX_REPLICAS: usize = 64;
const MAX_CPU_MS: u64 = 60_000;

/// Every rule `t` breaks; empty when it is valid.
pub fn problems(t: &Topology, spans: &Spans) -> Vec<Problem> {
    let mut out = Problems { spans, list: Vec::new() };
    check_balancer(t, &mut out);
    check_workload(t, &mut out);
    check_nodes(t, &mut out);
    out.list
}

struct Problems<'a> {
    spans: &'a Spans,
    list: Vec<Problem>,
}

impl Problems<'_> {
    fn add(&mut self, path: String, message: String) {
        let (line, column) = self.spans.find(&path).unzip();
        self.list.push(Problem { path, line, column, message });
    }

    /// Adds a problem unless `ok`.
    fn require(&mut self, ok: bool, path: impl Into<String>, message: impl Into<String>) {
        if !ok {
            self.add(path.into(), message.into());
        }
    }
}

fn check_balancer(t: &Topology, out: &mut Problems) {
    let b = &t.balancer;
    out.require(
        b.listen != b.admin,
        "balancer.admin",
        format!("expected a different address than balancer.listen, found {} for both", b.admin),
    );
    out.require(b.threads >= 1, "balancer.threads", "expected at least 1 thread, found 0");
    let hc = &b.health_check;
    out.require(
        hc.path.starts_with('/'),
        "balancer.health_check.path",
        format!("expected a path starting with '/', found {:?}", hc.path),
    );
    out.require(
        hc.interval_ms >= 50,
        "balancer.health_check.interval_ms",
        format!("expected at least 50 ms, found {}", hc.interval_ms),
    );
    out.require(hc.timeout_ms >= 1, "balancer.health_check.timeout_ms", "expected at least 1 ms, found 0");
    out.require(
        hc.unhealthy_after >= 1,
        "balancer.health_check.unhealthy_after",
        "expected at least 1 failed check, found 0",
    );
    out.require(
        hc.healthy_after >= 1,
        "balancer.health_check.healthy_after",
        "expected at least 1 passed check, found 0",
    );
}

fn check_workload(t: &Topology, out: &mut Problems) {
    let w = &t.workload;
    out.require(
        (1..=MAX_CPU_MS).contains(&w.max_cpu_ms),
        "workload.max_cpu_ms",
        format!("expected 1 to {MAX_CPU_MS} ms, found {}", w.max_cpu_ms),
    );
    out.require(
        w.op2_cpu_ms >= 1 && w.op2_cpu_ms <= w.max_cpu_ms,
        "workload.op2_cpu_ms",
        format!("expected 1 to max_cpu_ms ({}) ms, found {}", w.max_cpu_ms, w.op2_cpu_ms),
    );
}

fn check_nodes(t: &Topology, out: &mut Problems) {
    out.require(!t.nodes.is_empty(), "nodes", "expected at least one node group, found none");
    for (i, g) in t.nodes.iter().enumerate() {
        let at = |field: &str| format!("nodes[{i}].{field}");
        out.require(
            valid_name(&g.name),
            at("name"),
            format!(
                "expected lowercase letters, digits and '-', starting with a letter and not ending \
                 in '-<number>' (replicas get that suffix), found {:?}",
                g.name
            ),
        );
        if let Some(first) = t.nodes[..i].iter().position(|o| o.name == g.name) {
            out.add(at("name"), format!("expected a unique name, {:?} is also nodes[{first}]", g.name));
        }
        out.require(
            (1..=MAX_REPLICAS).contains(&g.replicas),
            at("replicas"),
            format!("expected 1 to {MAX_REPLICAS} replicas, found {}", g.replicas),
        );
        out.require(
            (1..=MAX_WORKERS).contains(&g.workers),
            at("workers"),
            format!("expected 1 to {MAX_WORKERS} workers, found {}", g.workers),
        );
        if let Some(cpus) = g.cpus {
            out.require(
                cpus.is_finite() && cpus > 0.0 && cpus <= 1024.0,
                at("cpus"),
                format!("expected a number of cores greater than 0 (e.g. 0.5), found {cpus}"),
            );
        }
        let last = g.port as usize + g.replicas.max(1) - 1;
        out.require(
            g.port >= 1 && last <= u16::MAX as usize,
            at("port"),
            format!("expected ports {}..={last} to fit in 1..=65535", g.port),
        );
    }
    check_port_clashes(t, out);
}

/// Natively a group takes ports `port ..= port + replicas - 1` on loopback; no two groups may
/// share one, and none may be a balancer port on the same address.
fn check_port_clashes(t: &Topology, out: &mut Problems) {
    let range = |i: usize| {
        let g = &t.nodes[i];
        g.port as usize..g.port as usize + g.replicas.max(1)
    };
    for i in 0..t.nodes.len() {
        for j in 0..i {
            let (a, b) = (range(i), range(j));
            if a.start < b.end && b.start < a.end {
                out.add(
                    format!("nodes[{i}].port"),
                    format!(
                        "expected ports that do not overlap: {}..={} clashes with nodes[{j}] ({}..={})",
                        a.start,
                        a.end - 1,
                        b.start,
                        b.end - 1
                    ),
                );
            }
        }
        for (field, addr) in [("listen", t.balancer.listen), ("admin", t.balancer.admin)] {
            if shares_loopback_port(addr, range(i)) {
                out.add(
                    format!("nodes[{i}].port"),
                    format!(
                        "expected ports apart from balancer.{field} ({addr}); node ports are {}..={}",
                        range(i).start,
                        range(i).end - 1
                    ),
                );
            }
        }
    }
}

fn shares_loopback_port(addr: SocketAddr, ports: std::ops::Range<usize>) -> bool {
    let same_host = addr.ip() == NODE_HOST || addr.ip().is_unspecified();
    same_host && ports.contains(&(addr.port() as usize))
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let charset = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let replica_like =
        name.rsplit_once('-').is_some_and(|(_, n)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    starts_with_letter && charset && !name.ends_with('-') && !replica_like && name.len() <= 40
}
