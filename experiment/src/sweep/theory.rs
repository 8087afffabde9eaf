//! What a point should do in theory: the lab's `/op2` capacity,
//! min(Σ over nodes of min(workers, cpus), cores) × 1000 / op2_cpu_ms req/s. A worker is
//! single-threaded, so it uses at most one core; a node uses at most its cap; the lab at most
//! the machine. For a mix the capacity is for the whole mix, counting only its `/op2` CPU
//! (`/op1` costs microseconds).

use scalelab_topology::Topology;

/// The CPU milliseconds one request to `path` costs: `?cpu_ms=N` on `/op2`, else the
/// workload's `op2_cpu_ms`; 0 for anything but `/op2`.
pub fn cpu_ms(path: &str, t: &Topology) -> f64 {
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    if route != "/op2" {
        return 0.0;
    }
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("cpu_ms="))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(t.workload.op2_cpu_ms as f64)
}

/// The theoretical throughput of `t` for requests spread over `paths` by `weights`, req/s;
/// `None` when no request costs CPU (the model says nothing about `/op1` alone).
pub fn capacity(t: &Topology, cores: usize, paths: &[(String, u32)]) -> Option<f64> {
    let total: f64 = paths.iter().map(|(_, w)| f64::from(*w)).sum();
    let ms_per_request: f64 = paths.iter().map(|(p, w)| cpu_ms(p, t) * f64::from(*w)).sum::<f64>() / total;
    (ms_per_request > 0.0).then(|| t.usable_cores(cores) * 1000.0 / ms_per_request)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo(replicas: usize, workers: usize, cpus: &str) -> Topology {
        Topology::from_yaml(&format!(
            "balancer: {{ listen: 127.0.0.1:8080, admin: 127.0.0.1:9090 }}\n\
             nodes: [{{ name: node, replicas: {replicas}, workers: {workers}, port: 8081 {cpus} }}]\n"
        ))
        .unwrap()
    }

    #[test]
    fn the_cap_the_workers_and_the_machine_each_bound_capacity() {
        let op2 = vec![("/op2".to_string(), 1)];
        // 1 node x 4 workers capped at 0.5 core: 0.5 x 1000 / 20 = 25 req/s.
        assert_eq!(capacity(&topo(1, 4, ", cpus: 0.5"), 2, &op2), Some(25.0));
        // 3 nodes x 1 worker at 0.5: 1.5 cores, under the machine's 2.
        assert_eq!(capacity(&topo(3, 1, ", cpus: 0.5"), 2, &op2), Some(75.0));
        // 4 nodes x 2 workers uncapped: 8 cores wanted, 2 on the machine.
        assert_eq!(capacity(&topo(4, 2, ""), 2, &op2), Some(100.0));
        // One worker uses one core even when its node may use two.
        assert_eq!(capacity(&topo(1, 1, ", cpus: 2.0"), 4, &op2), Some(50.0));
    }

    #[test]
    fn mixes_and_overrides_count_only_op2_cpu() {
        let t = topo(1, 1, "");
        let mix = vec![("/op1".to_string(), 9), ("/op2".to_string(), 1)];
        assert_eq!(capacity(&t, 2, &mix), Some(500.0)); // 2 ms per request on average
        assert_eq!(capacity(&t, 2, &[("/op2?cpu_ms=5".to_string(), 1)]), Some(200.0));
        assert_eq!(capacity(&t, 2, &[("/op1".to_string(), 1)]), None);
    }
}
