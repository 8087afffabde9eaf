//! `kubernetes.yaml`: the topology as one multi-document manifest for `kubectl apply -f`.
//!
//! - A ConfigMap holds the topology file itself, mounted as a directory at [`LAB_DIR`] in every
//!   pod: kubelet replaces a directory-mounted ConfigMap's files in place after an edit, so
//!   node primaries follow `workers` and `workload` as they follow a file edit natively.
//! - Per node group: a Deployment (`replicas`; the `cpus` cap as the CPU limit *and* request,
//!   so an HPA's CPU utilization, which Kubernetes measures against the request, is cores used
//!   / `cpus`, the topology's own measure; `/health` probes; the node's own command line) and
//!   a headless Service, whose name resolves to every ready pod: the balancer's DNS discovery
//!   finds the pods as it finds Compose replicas or Swarm's `tasks.<group>`.
//! - The balancer: a Deployment and a Service for its traffic and admin listeners.
//! - Per group with `autoscale`: an `autoscaling/v2` HorizontalPodAutoscaler ([`hpa`]).
//!
//! Every pod runs hardened: non-root (the image's uid 10001), read-only root filesystem, every
//! capability dropped, no privilege escalation, the runtime's default seccomp profile, no
//! service-account token, no Service environment variables, and the user's image
//! (`--image`) with `imagePullPolicy: IfNotPresent`.
//!
//! The objects are serde types ([`objects`]); each document is preceded by comments saying
//! what it is for and what it cannot express.

mod hpa;
pub mod objects;

use std::fmt::Write;

use anyhow::bail;
use scalelab_topology::{AutoscaleMetric, NodeGroup, Topology};
use serde::Serialize;

use super::{balancer_args, node_args, Image, Source, LAB_DIR};
use objects::*;

/// The file `scalelab compose` writes next to the topology.
pub const FILE_NAME: &str = "kubernetes.yaml";
/// The ConfigMap that holds the topology.
pub const CONFIG_MAP: &str = "scalelab-topology";
/// The pods' volume of that ConfigMap.
const VOLUME: &str = "topology";
/// The image's user and group (`scripts/docker-image.sh`, the Dockerfile's `USER`).
pub const UID: u32 = 10001;
/// A stopping node gets 5 s to finish in-flight requests (`--grace-ms`), then its workers are
/// killed; the pod's grace leaves it room.
const GRACE_S: u32 = 10;
/// Kubernetes refuses a ConfigMap whose keys and values add up to more than 1 MiB.
const CONFIG_MAP_MAX_BYTES: usize = 1 << 20;
/// The label key that selects one Deployment's pods, with `app.kubernetes.io/name: scalelab`.
const INSTANCE: &str = "app.kubernetes.io/instance";

/// The manifest for `src`, every pod running `image`.
pub fn render(src: &Source, image: &Image) -> anyhow::Result<String> {
    let t = &src.topology;
    let mut y = String::new();
    header(&mut y, src, image);
    document(&mut y, &config_map_comment(), &config_map(src)?);
    document(
        &mut y,
        &[format!(
            "The balancer: it finds each group's pods by the name of the group's headless Service \
         ({}), re-resolved every second.",
            t.nodes.iter().map(|g| format!("`{}`", g.name)).collect::<Vec<_>>().join(", ")
        )],
        &balancer_deployment(src, image),
    );
    document(
        &mut y,
        &[format!(
            "Traffic ({}) and the admin listener ({}: dashboard /, /metrics, /state), inside the cluster; \
         from outside: kubectl port-forward service/balancer {} {}",
            t.balancer.listen.port(),
            t.balancer.admin.port(),
            t.balancer.listen.port(),
            t.balancer.admin.port()
        )],
        &balancer_service(t),
    );
    for g in &t.nodes {
        document(&mut y, &node_deployment_comment(g), &node_deployment(src, g, image));
        document(
            &mut y,
            &[format!("Headless (clusterIP: None): `{}` resolves to every ready pod of the group.", g.name)],
            &node_service(g),
        );
        if let Some(a) = &g.autoscale {
            document(&mut y, &hpa::comment(g, a), &hpa::autoscaler(g, a));
        }
    }
    Ok(y)
}

/// What applying the manifest needs besides the manifest, one line per need (printed by
/// `scalelab compose`): a group autoscaled on a metric Kubernetes does not measure.
pub fn notes(t: &Topology) -> Vec<String> {
    t.nodes
        .iter()
        .filter_map(|g| g.autoscale.as_ref().map(|a| (g, a)))
        .filter(|(_, a)| a.metric != AutoscaleMetric::Cpu)
        .map(|(g, a)| {
            format!(
                "{FILE_NAME}: group {} autoscales on {}, which Kubernetes does not measure: its \
                 HorizontalPodAutoscaler reads the Pods metric {}, which only a custom-metrics adapter \
                 serves (see the comment above it); without one it does not scale",
                g.name,
                a.metric.as_str(),
                hpa::pods_metric_name(a.metric)
            )
        })
        .collect()
}

fn header(y: &mut String, src: &Source, image: &Image) {
    let topology = &src.file_name;
    let _ =
        writeln!(y, "# {FILE_NAME}: generated by `scalelab compose` from {topology}. Do not edit by hand:");
    let _ =
        writeln!(y, "# edit {topology}, then run `scalelab compose`; `scalelab compose --check` fails when");
    let _ = writeln!(y, "# this file is out of date.");
    let _ = writeln!(y, "#   kubectl apply -f {FILE_NAME}");
    let _ = writeln!(
        y,
        "# Every node of the cluster must have the image {image} or reach a registry that has it"
    );
    let _ =
        writeln!(y, "# (README, \"Kubernetes\": kind load, k3s ctr images import, or a registry you run).");
}

/// `---`, the comment lines, then the object as YAML.
fn document(y: &mut String, comment: &[String], object: &impl Serialize) {
    y.push_str("---\n");
    for line in comment {
        for wrapped in wrap(line, 92) {
            let _ = writeln!(y, "# {wrapped}");
        }
    }
    y.push_str(&serde_yaml::to_string(object).expect("manifest objects serialize"));
}

/// `text` in lines of at most `width` characters, broken at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split(' ') {
        let line = lines.last_mut().expect("never empty");
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(word.to_string());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
}

fn labels(instance: &str, component: &str) -> Labels {
    let mut l = selector(instance);
    l.insert("app.kubernetes.io/component".into(), component.into());
    l
}

/// What selects one Deployment's pods: immutable once applied, so no more than needed.
fn selector(instance: &str) -> Labels {
    Labels::from([("app.kubernetes.io/name".into(), "scalelab".into()), (INSTANCE.into(), instance.into())])
}

fn meta(name: &str, component: &str) -> ObjectMeta {
    ObjectMeta { name: name.into(), labels: labels(name, component) }
}

fn config_map_comment() -> Vec<String> {
    vec![format!(
        "The topology, mounted as a directory at {LAB_DIR} in every pod. After `kubectl apply` of an \
         edit, kubelet replaces the file in place (within about a minute): node primaries follow \
         `workers` and `workload` as they follow a file edit natively. (A subPath mount would never \
         be updated.)"
    )]
}

fn config_map(src: &Source) -> anyhow::Result<ConfigMap> {
    let size = src.file_name.len() + src.text.len();
    if size > CONFIG_MAP_MAX_BYTES {
        bail!(
            "{}: the topology is {size} bytes with its name; a Kubernetes ConfigMap holds at most \
             {CONFIG_MAP_MAX_BYTES} (shorten its comments)",
            src.file_name
        );
    }
    Ok(ConfigMap {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        metadata: ObjectMeta {
            name: CONFIG_MAP.into(),
            labels: Labels::from([
                ("app.kubernetes.io/name".into(), "scalelab".into()),
                ("app.kubernetes.io/component".into(), "topology".into()),
            ]),
        },
        data: [(src.file_name.clone(), src.text.clone())].into(),
    })
}

fn balancer_deployment(src: &Source, image: &Image) -> Deployment {
    let t = &src.topology;
    let args = balancer_args(t, &src.mounted_path(), "");
    let mut container = container("balancer", image, "balancer", args.to_args(), None);
    // Ready once it accepts traffic (it listens after its first discovery pass); alive while
    // its admin listener answers.
    container.readiness_probe = probe(None, Some(t.balancer.listen.port()), 2, 2, 3);
    container.liveness_probe = probe(Some(("/state", t.balancer.admin.port())), None, 10, 5, 6);
    deployment("balancer", "balancer", Some(1), container)
}

fn balancer_service(t: &Topology) -> Service {
    let port = |name: &str, port: u16| ServicePort { name: name.into(), port, target_port: port };
    Service {
        api_version: "v1".into(),
        kind: "Service".into(),
        metadata: meta("balancer", "balancer"),
        spec: ServiceSpec {
            cluster_ip: None,
            selector: selector("balancer"),
            ports: vec![port("traffic", t.balancer.listen.port()), port("admin", t.balancer.admin.port())],
        },
    }
}

fn node_deployment_comment(g: &NodeGroup) -> Vec<String> {
    let cap = match g.cpus {
        Some(c) => format!(
            "cpus {c}: the CPU limit, and the request too, so the HPA's CPU utilization (measured against \
             the request) is cores used / cpus, the topology's own measure"
        ),
        None => "no cpus: no CPU limit or request".into(),
    };
    let mut lines = vec![format!(
        "Node group `{}`: {} worker(s) per pod (read from the ConfigMap, not from the command line), \
         port {}; {cap}.",
        g.name, g.workers, g.port
    )];
    if let Some(a) = &g.autoscale {
        lines.push(format!(
            "No replicas: the HorizontalPodAutoscaler below owns the count (a replicas field would reset \
             it on every `kubectl apply`). It starts from minReplicas ({}); the topology's replicas ({}) \
             is where scalelab's own controller starts.",
            a.min_replicas, g.replicas
        ));
    }
    lines
}

fn node_deployment(src: &Source, g: &NodeGroup, image: &Image) -> Deployment {
    let args = node_args(g, &src.mounted_path(), format!("{}@{{hostname}}", g.name));
    let resources =
        g.cpus.map(|c| Resources { requests: Cpu { cpu: quantity(c) }, limits: Cpu { cpu: quantity(c) } });
    let mut container = container("node", image, "node", args.to_args(), resources);
    // Readiness takes a pod out of its Service's DNS answers after 3 failed checks 2 s apart.
    // Liveness restarts only a node that has not answered for a minute: a node saturated by
    // /op2 answers /health late (its workers are burning CPU), and restarting it then would
    // only lose its queue.
    container.readiness_probe = probe(Some(("/health", g.port)), None, 2, 2, 3);
    container.liveness_probe = probe(Some(("/health", g.port)), None, 10, 5, 6);
    let replicas = if g.autoscale.is_some() { None } else { Some(g.replicas as u32) };
    deployment(&g.name, "node", replicas, container)
}

fn node_service(g: &NodeGroup) -> Service {
    Service {
        api_version: "v1".into(),
        kind: "Service".into(),
        metadata: meta(&g.name, "node"),
        spec: ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: selector(&g.name),
            ports: vec![ServicePort { name: "http".into(), port: g.port, target_port: g.port }],
        },
    }
}

/// A container of the image running `scalelab <subcommand> <args>`, hardened, with the
/// topology mounted; probes are set by the caller.
fn container(
    name: &str,
    image: &Image,
    subcommand: &str,
    args: Vec<String>,
    resources: Option<Resources>,
) -> Container {
    Container {
        name: name.into(),
        image: image.to_string(),
        image_pull_policy: "IfNotPresent".into(),
        args: std::iter::once(subcommand.to_string()).chain(args).collect(),
        env: vec![EnvVar { name: "RUST_LOG".into(), value: "info".into() }],
        resources,
        readiness_probe: probe(None, None, 0, 0, 0),
        liveness_probe: probe(None, None, 0, 0, 0),
        security_context: SecurityContext {
            allow_privilege_escalation: false,
            read_only_root_filesystem: true,
            capabilities: Capabilities { drop: vec!["ALL".into()] },
        },
        volume_mounts: vec![VolumeMount { name: VOLUME.into(), mount_path: LAB_DIR.into(), read_only: true }],
    }
}

/// An HTTP GET of (path, port), or a TCP connect to `tcp`, every `period` s.
fn probe(http: Option<(&str, u16)>, tcp: Option<u16>, period: u32, timeout: u32, failures: u32) -> Probe {
    Probe {
        http_get: http.map(|(path, port)| HttpGet { path: path.into(), port }),
        tcp_socket: tcp.map(|port| TcpSocket { port }),
        period_seconds: period,
        timeout_seconds: timeout,
        failure_threshold: failures,
    }
}

fn deployment(name: &str, component: &str, replicas: Option<u32>, container: Container) -> Deployment {
    Deployment {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        metadata: meta(name, component),
        spec: DeploymentSpec {
            replicas,
            selector: LabelSelector { match_labels: selector(name) },
            template: PodTemplateSpec {
                metadata: TemplateMeta { labels: labels(name, component) },
                spec: PodSpec {
                    automount_service_account_token: false,
                    enable_service_links: false,
                    termination_grace_period_seconds: GRACE_S,
                    security_context: PodSecurityContext {
                        run_as_non_root: true,
                        run_as_user: UID,
                        run_as_group: UID,
                        seccomp_profile: SeccompProfile { kind: "RuntimeDefault".into() },
                    },
                    containers: vec![container],
                    volumes: vec![Volume {
                        name: VOLUME.into(),
                        config_map: ConfigMapVolume { name: CONFIG_MAP.into() },
                    }],
                },
            },
        },
    }
}

/// A Kubernetes quantity for `x`, to the millis the API keeps: `1`, `500m`, `2500m`.
pub fn quantity(x: f64) -> String {
    let millis = (x * 1000.0).round() as u64;
    if millis % 1000 == 0 {
        (millis / 1000).to_string()
    } else {
        format!("{millis}m")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_exact_to_the_milli() {
        assert_eq!(quantity(1.0), "1");
        assert_eq!(quantity(0.5), "500m");
        assert_eq!(quantity(0.01), "10m");
        assert_eq!(quantity(2.25), "2250m");
        assert_eq!(quantity(1024.0), "1024");
        assert_eq!(quantity(0.3333), "333m");
        assert_eq!(quantity(1_000_000.0), "1000000");
    }

    #[test]
    fn comments_wrap_at_spaces() {
        let lines = wrap("aaa bbb ccc ddd", 7);
        assert_eq!(lines, ["aaa bbb", "ccc ddd"]);
        assert_eq!(wrap("a-very-long-word x", 4), ["a-very-long-word", "x"]);
    }

    #[test]
    fn a_topology_too_big_for_a_config_map_is_refused() {
        let base = "balancer: { listen: 127.0.0.1:8080, admin: 127.0.0.1:9090 }\n\
                    nodes: [{ name: node, replicas: 1, workers: 1, port: 8081 }]\n";
        let padded = format!("{base}#{}\n", "x".repeat(CONFIG_MAP_MAX_BYTES - base.len() - 2));
        let src = Source::from_text(padded, "topology.yaml").unwrap();
        let err = render(&src, &Image::default()).unwrap_err().to_string();
        assert!(err.contains("a Kubernetes ConfigMap holds at most 1048576"), "{err}");
    }
}
