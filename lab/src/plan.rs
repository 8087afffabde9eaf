//! What a topology edit means for the running lab: which nodes to start, stop, restart or
//! re-cap, and whether the balancer must be replaced. Pure, so it is tested without processes.

use scalelab_topology::{Replica, Topology};

/// The steps that turn the lab running `old` into one running `new`.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// New replicas.
    pub start: Vec<Replica>,
    /// Replicas gone from the topology.
    pub stop: Vec<Replica>,
    /// Replicas whose address or distribution changed: a new process starts (on the new
    /// address, or side by side on the same one), then the old one is retired like a removed
    /// replica. (A workload edit needs no restart here: node primaries
    /// watch the published topology and roll their workers themselves.)
    pub restart: Vec<Replica>,
    /// Replicas whose CPU cap changed: new quota in place.
    pub recap: Vec<Replica>,
    /// Replicas whose worker count changed: their primary applies it itself (it watches the
    /// file); listed so the change is reported.
    pub resize: Vec<(Replica, usize)>,
    /// The balancer section changed (listeners, health checks, algorithm), or the read
    /// timeout it derives from the workload did: a new balancer
    /// takes over on the same sockets. Backend changes need no restart, the balancer
    /// discovers them.
    pub restart_balancer: bool,
}

impl Plan {
    /// True when the edit changes nothing that runs.
    pub fn is_empty(&self) -> bool {
        *self == Plan::default()
    }
}

/// Compares two valid topologies.
pub fn plan(old: &Topology, new: &Topology) -> Plan {
    let before = old.replicas();
    let after = new.replicas();
    // The read timeout may be derived from the workload: a workload edit can change it too.
    let read_timeout = |t: &Topology| t.balancer.upstream.read_timeout_in_force(&t.workload);
    let restart_balancer = old.balancer != new.balancer || read_timeout(old) != read_timeout(new);
    let mut p = Plan { restart_balancer, ..Plan::default() };
    for r in &after {
        match before.iter().find(|o| o.name == r.name) {
            None => p.start.push(r.clone()),
            Some(o) if o.listen != r.listen || o.distribution != r.distribution => p.restart.push(r.clone()),
            Some(o) => {
                if o.cpus != r.cpus {
                    p.recap.push(r.clone());
                }
                if o.workers != r.workers {
                    p.resize.push((r.clone(), o.workers));
                }
            }
        }
    }
    p.stop = before.into_iter().filter(|o| !after.iter().any(|r| r.name == o.name)).collect();
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo(replicas: usize, workers: usize, cpus: &str, port: u16) -> Topology {
        Topology::from_yaml(&format!(
            "balancer: {{ listen: 127.0.0.1:8080, admin: 127.0.0.1:9090 }}\n\
             nodes: [{{ name: node, replicas: {replicas}, workers: {workers}, port: {port} {cpus} }}]\n"
        ))
        .unwrap()
    }

    fn names(rs: &[Replica]) -> Vec<&str> {
        rs.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn same_topology_is_an_empty_plan() {
        assert!(plan(&topo(2, 2, "", 8081), &topo(2, 2, "", 8081)).is_empty());
    }

    #[test]
    fn replica_count_starts_and_stops_the_tail() {
        // node-1 node-2            node-1 node-2 node-3 node-4
        //   kept   kept    ──►       kept   kept   start  start
        let up = plan(&topo(2, 1, "", 8081), &topo(4, 1, "", 8081));
        assert_eq!(names(&up.start), ["node-3", "node-4"]);
        let down = plan(&topo(4, 1, "", 8081), &topo(1, 1, "", 8081));
        assert_eq!(names(&down.stop), ["node-2", "node-3", "node-4"]);
        assert!(down.start.is_empty() && down.restart.is_empty());
    }

    #[test]
    fn workers_and_cpus_change_in_place() {
        let p = plan(&topo(2, 1, ", cpus: 1.0", 8081), &topo(2, 3, ", cpus: 0.5", 8081));
        assert_eq!(names(&p.recap), ["node-1", "node-2"]);
        assert_eq!(p.resize.iter().map(|(r, old)| (r.workers, *old)).collect::<Vec<_>>(), [(3, 1), (3, 1)]);
        assert!(p.start.is_empty() && p.stop.is_empty() && p.restart.is_empty() && !p.restart_balancer);
    }

    #[test]
    fn moving_ports_restarts_nodes() {
        let p = plan(&topo(2, 1, "", 8081), &topo(2, 1, "", 8181));
        assert_eq!(names(&p.restart), ["node-1", "node-2"]);
    }

    #[test]
    fn balancer_edits_restart_only_the_balancer() {
        let old = topo(1, 1, "", 8081);
        let mut new = old.clone();
        new.balancer.health_check.interval_ms = 250;
        let p = plan(&old, &new);
        assert!(p.restart_balancer && p.start.is_empty() && p.restart.is_empty());
    }
}
