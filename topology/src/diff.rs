//! What changed between two topologies, in words a person reads on a chart marker:
//! `workers 2→4 on node`, `replicas 2→3 (node)`, `cpus 1→0.5 on node`, `algorithm
//! round_robin→least_conn`.

use crate::model::Topology;

/// One line per change from `old` to `new`, in the order of the file; empty when nothing the
/// lab runs changed.
pub fn changes(old: &Topology, new: &Topology) -> Vec<String> {
    let mut out = Vec::new();
    let (a, b) = (&old.balancer, &new.balancer);
    if a.algorithm != b.algorithm {
        out.push(format!("algorithm {}→{}", a.algorithm.as_str(), b.algorithm.as_str()));
    }
    if (a.listen, a.admin) != (b.listen, b.admin) {
        out.push(format!("balancer listens on {} (admin {})", b.listen, b.admin));
    }
    let rest_a = (
        &a.health_check,
        a.threads,
        a.header_timeout_ms,
        a.keepalive_timeout_ms,
        a.max_connections,
        &a.upstream,
    );
    let rest_b = (
        &b.health_check,
        b.threads,
        b.header_timeout_ms,
        b.keepalive_timeout_ms,
        b.max_connections,
        &b.upstream,
    );
    if rest_a != rest_b {
        out.push("balancer settings".to_string());
    }
    if old.workload != new.workload {
        let (w, v) = (&old.workload, &new.workload);
        out.push(format!(
            "workload op2_cpu_ms {}→{}, max_cpu_ms {}→{}, max_queue {}→{}",
            w.op2_cpu_ms, v.op2_cpu_ms, w.max_cpu_ms, v.max_cpu_ms, w.max_queue, v.max_queue
        ));
    }
    for g in &new.nodes {
        let Some(o) = old.group(&g.name) else {
            out.push(format!("group {} added ({} x {} workers)", g.name, g.replicas, g.workers));
            continue;
        };
        if o.replicas != g.replicas {
            out.push(format!("replicas {}→{} ({})", o.replicas, g.replicas, g.name));
        }
        if o.autoscale != g.autoscale {
            out.push(match &g.autoscale {
                Some(a) => format!(
                    "autoscale {}..{} on {} {} (target {})",
                    a.min_replicas,
                    a.max_replicas,
                    a.metric.as_str(),
                    g.name,
                    a.target
                ),
                None => format!("autoscale off ({})", g.name),
            });
        }
        if o.workers != g.workers {
            out.push(format!("workers {}→{} on {}", o.workers, g.workers, g.name));
        }
        if o.cpus != g.cpus {
            let cpus = |c: Option<f64>| c.map_or_else(|| "uncapped".to_string(), |c| format!("{c}"));
            out.push(format!("cpus {}→{} on {}", cpus(o.cpus), cpus(g.cpus), g.name));
        }
        if o.port != g.port {
            out.push(format!("port {}→{} ({})", o.port, g.port, g.name));
        }
        if o.distribution != g.distribution {
            out.push(format!(
                "distribution {}→{} on {}",
                o.distribution.as_str(),
                g.distribution.as_str(),
                g.name
            ));
        }
    }
    for o in &old.nodes {
        if new.group(&o.name).is_none() {
            out.push(format!("group {} removed", o.name));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo(group: &str) -> Topology {
        Topology::from_yaml(&format!(
            "balancer: {{ listen: 127.0.0.1:8080, admin: 127.0.0.1:9090 }}\nnodes: [{group}]\n"
        ))
        .unwrap()
    }

    #[test]
    fn each_change_is_one_line() {
        let old = topo("{ name: node, replicas: 2, workers: 2, cpus: 1.0, port: 8081 }");
        let new = topo(
            "{ name: node, replicas: 3, workers: 4, cpus: 0.5, port: 8081 }, \
             { name: big, replicas: 1, workers: 1, port: 8091 }",
        );
        assert_eq!(
            changes(&old, &new),
            [
                "replicas 2→3 (node)",
                "workers 2→4 on node",
                "cpus 1→0.5 on node",
                "group big added (1 x 1 workers)"
            ]
        );
        assert!(changes(&new, &new).is_empty());
        assert_eq!(changes(&new, &old).last().unwrap(), "group big removed");
    }
}
