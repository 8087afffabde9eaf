//! The rules a topology must follow beyond its types. Each broken rule becomes a `Problem`
//! naming the field, where it is, and what was expected; all of them are collected.
//!
//! The rule behind the rules: whatever passes here must run. Anything a node or the balancer
//! would refuse at start (a health path that is not a URI, a thread count the machine cannot
//! spawn) is refused here first, so a live edit that `scalelab check` accepts never stops the
//! lab. The bounds themselves live in [`crate::limits`].

use std::net::SocketAddr;

use crate::error::Problem;
use crate::limits::{self, *};
use crate::model::{Autoscale, AutoscaleMetric, NodeGroup, Topology, NODE_HOST};
use crate::spans::Spans;

/// Every rule `t` breaks; empty when it is valid.
pub fn problems(t: &Topology, spans: &Spans) -> Vec<Problem> {
    let mut out = Problems { spans, list: Vec::new() };
    check_balancer(t, &mut out);
    check_workload(t, &mut out);
    check_nodes(t, &mut out);
    check_size(t, &mut out);
    out.list
}

struct Problems<'a> {
    spans: &'a Spans,
    list: Vec<Problem>,
}

impl Problems<'_> {
    fn add(&mut self, path: String, message: String) {
        let (line, column) = self.spans.find(&path).unwrap_or((1, 1));
        self.list.push(Problem { path, line, column, message });
    }

    /// Adds a problem unless `ok`.
    fn require(&mut self, ok: bool, path: impl Into<String>, message: impl FnOnce() -> String) {
        if !ok {
            self.add(path.into(), message());
        }
    }

    /// Requires `value` in `lo..=hi`, naming the unit in the message.
    fn in_range(&mut self, value: u64, (lo, hi): (u64, u64), path: &str, unit: &str) {
        self.require((lo..=hi).contains(&value), path, || {
            format!("expected {lo} to {hi} {unit}, found {value}")
        });
    }
}

fn check_balancer(t: &Topology, out: &mut Problems) {
    let b = &t.balancer;
    out.require(b.listen != b.admin, "balancer.admin", || {
        format!("expected a different address than balancer.listen, found {} for both", b.admin)
    });
    for (field, addr) in [("balancer.listen", b.listen), ("balancer.admin", b.admin)] {
        check_port(t, addr.port(), field, out);
    }
    let max_threads = limits::max_threads();
    out.require((1..=max_threads).contains(&b.threads), "balancer.threads", || {
        format!(
            "expected 1 to {max_threads} threads ({THREADS_PER_CORE} per core of this machine's {}), found {}",
            limits::cores(),
            b.threads
        )
    });
    out.in_range(b.header_timeout_ms, HEADER_TIMEOUT_MS, "balancer.header_timeout_ms", "ms");
    out.in_range(b.keepalive_timeout_ms, KEEPALIVE_TIMEOUT_MS, "balancer.keepalive_timeout_ms", "ms");
    out.require((1..=MAX_CONNECTIONS).contains(&b.max_connections), "balancer.max_connections", || {
        format!("expected 1 to {MAX_CONNECTIONS} connections, found {}", b.max_connections)
    });
    out.in_range(
        b.upstream.pool_size as u64,
        (0, MAX_POOL_SIZE as u64),
        "balancer.upstream.pool_size",
        "connections",
    );
    let age = b.upstream.max_age_ms;
    out.require(
        age == 0 || (100..=MAX_UPSTREAM_AGE_MS).contains(&age),
        "balancer.upstream.max_age_ms",
        || format!("expected 0 (no limit) or 100 to {MAX_UPSTREAM_AGE_MS} ms, found {age}"),
    );
    if let Some(ms) = b.upstream.read_timeout_ms {
        let path = "balancer.upstream.read_timeout_ms";
        out.in_range(ms, READ_TIMEOUT_MS, path, "ms");
        let queue = t.workload.longest_queue_ms();
        out.require(ms < READ_TIMEOUT_MS.0 || ms >= queue, path, || {
            format!(
                "expected at least {queue} ms, the CPU time of a full /op2 queue \
                 ((workload.max_queue + 1) x workload.max_cpu_ms), found {ms}: a shorter wait \
                 answers 504 to requests the node accepted; lower max_queue or max_cpu_ms, or \
                 remove the line for the derived default"
            )
        });
    }
    let hc = &b.health_check;
    if let Err(why) = check_health_path(&hc.path) {
        out.add("balancer.health_check.path".into(), format!("expected {why}, found {:?}", hc.path));
    }
    out.in_range(
        hc.interval_ms,
        (MIN_HEALTH_INTERVAL_MS, MAX_HEALTH_MS),
        "balancer.health_check.interval_ms",
        "ms",
    );
    out.in_range(hc.timeout_ms, (1, MAX_HEALTH_MS), "balancer.health_check.timeout_ms", "ms");
    let streak = (1, MAX_HEALTH_STREAK as u64);
    out.in_range(hc.unhealthy_after as u64, streak, "balancer.health_check.unhealthy_after", "failed checks");
    out.in_range(hc.healthy_after as u64, streak, "balancer.health_check.healthy_after", "passed checks");
}

/// A health-check path the balancer can send: what it parses into (an `http::Uri` in origin
/// form) and how long it may be. `Err` says what was expected.
pub fn check_health_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err("a path starting with '/'".into());
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(format!("a path of at most {MAX_PATH_BYTES} bytes"));
    }
    match path.parse::<http::Uri>() {
        Ok(uri) if uri.scheme().is_none() && uri.authority().is_none() => Ok(()),
        _ => Err("a URI path (no spaces or control characters; escape others as %XX)".into()),
    }
}

/// Ports 1..1024 need `allow_privileged_ports: true`; port 0 would pick a random port, which
/// nothing could then reach.
fn check_port(t: &Topology, port: u16, path: &str, out: &mut Problems) {
    if port == 0 {
        out.add(path.into(), "expected a port number from 1024 to 65535, found 0".into());
    } else if port < FIRST_UNPRIVILEGED_PORT && !t.allow_privileged_ports {
        out.add(
            path.into(),
            format!(
                "expected a port from {FIRST_UNPRIVILEGED_PORT} to 65535, found {port} (a privileged port; \
                 set `allow_privileged_ports: true` at the top of the file to use it)"
            ),
        );
    }
}

fn check_workload(t: &Topology, out: &mut Problems) {
    for (field, message) in t.workload.problems() {
        out.add(format!("workload.{field}"), message);
    }
}

fn check_nodes(t: &Topology, out: &mut Problems) {
    out.require(!t.nodes.is_empty(), "nodes", || "expected at least one node group, found none".into());
    out.require(t.nodes.len() <= MAX_GROUPS, "nodes", || {
        format!("expected at most {MAX_GROUPS} node groups, found {}", t.nodes.len())
    });
    for (i, g) in t.nodes.iter().enumerate().take(MAX_GROUPS) {
        let at = |field: &str| format!("nodes[{i}].{field}");
        out.require(valid_name(&g.name), at("name"), || {
            format!(
                "expected lowercase letters, digits and '-', starting with a letter, at most 40 long and \
                 not ending in '-<number>' (replicas get that suffix), found {:?}",
                g.name
            )
        });
        if let Some(first) = t.nodes[..i].iter().position(|o| o.name == g.name) {
            out.add(at("name"), format!("expected a unique name, {:?} is also nodes[{first}]", g.name));
        }
        out.in_range(g.replicas as u64, (1, MAX_REPLICAS as u64), &at("replicas"), "replicas");
        out.in_range(g.workers as u64, (1, MAX_WORKERS as u64), &at("workers"), "workers");
        if let Some(cpus) = g.cpus {
            out.require(cpus.is_finite() && (MIN_CPUS..=MAX_CPUS).contains(&cpus), at("cpus"), || {
                format!("expected a number of cores from {MIN_CPUS} to {MAX_CPUS} (e.g. 0.5), found {cpus}")
            });
        }
        if let Some(a) = &g.autoscale {
            check_autoscale(g, a, &at, out);
        }
        let last = g.port as usize + g.max_replicas().clamp(1, MAX_REPLICAS) - 1;
        if last > u16::MAX as usize {
            out.add(at("port"), format!("expected ports {}..={last} to fit in 1024..=65535", g.port));
        } else {
            check_port(t, g.port, &at("port"), out);
        }
    }
    if t.nodes.len() <= MAX_GROUPS {
        check_port_clashes(t, out);
    }
}

/// An autoscaler's bounds: `min_replicas ≤ replicas ≤ max_replicas`, a target within its
/// metric's range, `cpu` only on a capped group.
fn check_autoscale(g: &NodeGroup, a: &Autoscale, at: &dyn Fn(&str) -> String, out: &mut Problems) {
    let field = |f: &str| at(&format!("autoscale.{f}"));
    out.in_range(a.min_replicas as u64, (1, MAX_REPLICAS as u64), &field("min_replicas"), "replicas");
    out.require(
        (a.min_replicas.max(1)..=MAX_REPLICAS).contains(&a.max_replicas),
        field("max_replicas"),
        || {
            format!(
                "expected min_replicas ({}) to {MAX_REPLICAS} replicas, found {}",
                a.min_replicas, a.max_replicas
            )
        },
    );
    out.require((a.min_replicas..=a.max_replicas).contains(&g.replicas), at("replicas"), || {
        format!(
            "expected min_replicas ({}) to max_replicas ({}) while autoscale is set (replicas is the \
                 starting count), found {}",
            a.min_replicas, a.max_replicas, g.replicas
        )
    });
    let (lo, hi, unit) = match a.metric {
        AutoscaleMetric::Cpu => (AUTOSCALE_CPU_TARGET.0, AUTOSCALE_CPU_TARGET.1, "of the node's CPU cap"),
        AutoscaleMetric::InFlight => {
            (AUTOSCALE_IN_FLIGHT_TARGET.0, AUTOSCALE_IN_FLIGHT_TARGET.1, "requests in flight per node")
        }
        AutoscaleMetric::Rps => {
            (AUTOSCALE_RPS_TARGET.0, AUTOSCALE_RPS_TARGET.1, "requests per second per node")
        }
    };
    out.require(a.target.is_finite() && (lo..=hi).contains(&a.target), field("target"), || {
        format!("expected {lo} to {hi} {unit} for metric {}, found {}", a.metric.as_str(), a.target)
    });
    out.require(a.metric != AutoscaleMetric::Cpu || g.cpus.is_some(), field("metric"), || {
        format!(
            "expected `cpus` on this group: metric cpu is cores used / the cap, and {} has no cap",
            g.name
        )
    });
    out.in_range(a.sync_ms, AUTOSCALE_SYNC_MS, &field("sync_ms"), "ms");
    out.require(
        a.tolerance.is_finite() && (0.0..=MAX_AUTOSCALE_TOLERANCE).contains(&a.tolerance),
        field("tolerance"),
        || {
            format!(
                "expected 0 to {MAX_AUTOSCALE_TOLERANCE} (a fraction of the target), found {}",
                a.tolerance
            )
        },
    );
    out.in_range(
        a.scale_down_stabilization_ms,
        AUTOSCALE_WINDOW_MS,
        &field("scale_down_stabilization_ms"),
        "ms",
    );
    out.in_range(a.scale_up_stabilization_ms, AUTOSCALE_WINDOW_MS, &field("scale_up_stabilization_ms"), "ms");
    out.in_range(
        a.cpu_initialization_period_ms,
        AUTOSCALE_CPU_INITIALIZATION_MS,
        &field("cpu_initialization_period_ms"),
        "ms",
    );
}

/// The whole lab's process count (autoscaled groups at their `max_replicas`): big topologies
/// are refused as a whole, naming the total.
fn check_size(t: &Topology, out: &mut Problems) {
    let processes = t.processes();
    out.require(processes <= MAX_PROCESSES, "nodes", || {
        format!(
            "expected at most {MAX_PROCESSES} processes in the whole lab (each node is a primary plus its \
             workers, plus one balancer), found {processes}"
        )
    });
}

/// Natively a group takes ports `port ..= port + replicas - 1` on loopback; no two groups may
/// share one, and none may be a balancer port on the same address.
fn check_port_clashes(t: &Topology, out: &mut Problems) {
    let range = |i: usize| {
        let g = &t.nodes[i];
        g.port as usize..g.port as usize + g.max_replicas().clamp(1, MAX_REPLICAS)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_paths_must_be_uri_paths() {
        assert!(check_health_path("/health").is_ok());
        assert!(check_health_path("/health?deep=1").is_ok());
        assert!(check_health_path("/a%20b").is_ok());
        assert!(check_health_path("/a b").unwrap_err().contains("URI path"));
        assert!(check_health_path("health").unwrap_err().contains("starting with '/'"));
        assert!(check_health_path(&format!("/{}", "a".repeat(2000))).unwrap_err().contains("at most"));
    }
}
