//! What the Kubernetes tests share: topologies that give every rendered field a value, and
//! `kubernetes.yaml` rendered by the real CLI and read back through its own serde types.

use std::fs;
use std::path::Path;
use std::time::Duration;

use scalelab::render::kubernetes::objects::{self, Deployment, HorizontalPodAutoscaler, Object, Service};

use super::run_scalelab;

/// Deadline of one `scalelab compose`.
const T: Duration = Duration::from_secs(30);

/// Two groups: a fixed one, and one autoscaled on CPU with its own windows and a
/// distribution mode, so every field has a value that is not its default somewhere.
pub const TWO_GROUPS: &str = "\
balancer: { listen: 127.0.0.1:8080, admin: 127.0.0.1:9090 }
nodes:
  - { name: node, replicas: 2, workers: 2, cpus: 0.5, port: 8081 }
  - name: big
    replicas: 2
    workers: 3
    cpus: 1.0
    port: 8091
    distribution: round_robin
    autoscale:
      min_replicas: 1
      max_replicas: 3
      metric: cpu
      target: 0.6
      scale_down_stabilization_ms: 90500
      scale_up_stabilization_ms: 15000
";

/// Groups autoscaled on the metrics Kubernetes does not measure, one with a tolerance
/// other than Kubernetes' default.
pub const ADAPTER_METRICS: &str = "\
balancer: { listen: 127.0.0.1:8080, admin: 127.0.0.1:9090 }
nodes:
  - name: busy
    replicas: 1
    workers: 1
    port: 8081
    autoscale: { max_replicas: 4, metric: in_flight, target: 2.5, tolerance: 0.05 }
  - name: fast
    replicas: 1
    workers: 1
    port: 8091
    autoscale: { max_replicas: 2, metric: rps, target: 150 }
";

/// `scalelab compose` on `topology` (extra flags after), which must succeed; returns the
/// rendered kubernetes.yaml and the command's stderr.
pub fn compose(topology: &Path, extra: &[&str]) -> (String, String) {
    let mut args = vec!["compose", "--topology", topology.to_str().unwrap()];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = run_scalelab(&args, T);
    assert_eq!(code, 0, "scalelab {args:?}\nstdout: {stdout}\nstderr: {stderr}");
    (fs::read_to_string(topology.with_file_name("kubernetes.yaml")).unwrap(), stderr)
}

/// The manifest's objects, by kind and name.
pub struct Manifest {
    pub objects: Vec<Object>,
}

impl Manifest {
    pub fn parse(text: &str) -> Manifest {
        Manifest { objects: objects::parse_all(text).unwrap_or_else(|e| panic!("{e:#}\n{text}")) }
    }

    pub fn ids(&self) -> Vec<String> {
        self.objects.iter().map(Object::id).collect()
    }

    pub fn deployment(&self, name: &str) -> &Deployment {
        self.objects
            .iter()
            .find_map(|o| match o {
                Object::Deployment(d) if d.metadata.name == name => Some(d),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no Deployment {name}"))
    }

    pub fn service(&self, name: &str) -> &Service {
        self.objects
            .iter()
            .find_map(|o| match o {
                Object::Service(s) if s.metadata.name == name => Some(s),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no Service {name}"))
    }

    pub fn hpa(&self, name: &str) -> Option<&HorizontalPodAutoscaler> {
        self.objects.iter().find_map(|o| match o {
            Object::HorizontalPodAutoscaler(h) if h.metadata.name == name => Some(h),
            _ => None,
        })
    }
}
