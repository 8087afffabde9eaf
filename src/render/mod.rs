//! `scalelab compose`: one topology rendered for three container platforms, deterministically,
//! into files next to it:
//! - `compose.yaml` (`docker compose`) and `stack.yaml` (`docker stack deploy`): [`compose`];
//! - `kubernetes.yaml` (`kubectl apply -f`): [`kubernetes`].
//!
//! What they share lives here: the topology as read ([`Source`]: parsed, and its text, which
//! the Kubernetes ConfigMap carries), the image they run ([`Image`], `--image`), where the
//! topology is mounted in a container ([`LAB_DIR`]), and the names a node group may not take
//! because a rendering gives them to something else. `--check` compares instead of writing.

pub mod compose;
pub mod image;
pub mod kubernetes;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use scalelab_balancer::{BalancerArgs, Discovery};
use scalelab_node::NodeArgs;
use scalelab_topology::{NodeGroup, Topology};

pub use compose::Loader;
pub use image::Image;

/// Where the topology's directory is mounted inside containers: the project directory under
/// Compose and Swarm, the ConfigMap under Kubernetes. Nodes read `<LAB_DIR>/<file name>`.
pub const LAB_DIR: &str = "/lab";

/// Service names the renderings use for themselves: the balancer everywhere, the load tool in
/// `compose.yaml`. A node group of the same name would be two services in one.
const RESERVED_NAMES: [&str; 2] = ["balancer", "load"];

/// A topology as read from its file: what every rendering starts from.
#[derive(Debug, Clone)]
pub struct Source {
    /// The parsed, validated topology.
    pub topology: Topology,
    /// The file's name without its directory: the name nodes read it by in a container.
    pub file_name: String,
    /// The file's text, exactly as validated (comments included).
    pub text: String,
}

impl Source {
    /// Reads and validates the topology at `path`.
    pub fn load(path: &Path) -> anyhow::Result<Source> {
        let (topology, text) = Topology::load_with_text(path)?;
        let file_name = path.file_name().context("the topology path has no file name")?;
        Ok(Source { topology, file_name: file_name.to_string_lossy().into_owned(), text })
    }

    /// A topology from its text, as if read from a file called `file_name`.
    pub fn from_text(text: String, file_name: &str) -> anyhow::Result<Source> {
        let topology = Topology::from_yaml(&text)?;
        Ok(Source { topology, file_name: file_name.to_string(), text })
    }

    /// The topology's path inside a container.
    pub fn mounted_path(&self) -> String {
        format!("{LAB_DIR}/{}", self.file_name)
    }
}

/// A file `scalelab compose` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `compose.yaml`, for `docker compose`.
    Compose,
    /// `stack.yaml`, for `docker stack deploy`.
    Swarm,
    /// `kubernetes.yaml`, for `kubectl apply -f`.
    Kubernetes,
}

impl Target {
    /// Every file, in the order they are written.
    pub const ALL: [Target; 3] = [Target::Compose, Target::Swarm, Target::Kubernetes];

    /// The file name, next to the topology.
    pub fn file_name(self) -> &'static str {
        match self {
            Target::Compose => Loader::Compose.file_name(),
            Target::Swarm => Loader::Swarm.file_name(),
            Target::Kubernetes => kubernetes::FILE_NAME,
        }
    }
}

/// The text of `target`'s file for `src`, every container running `image`.
pub fn render(src: &Source, target: Target, image: &Image) -> anyhow::Result<String> {
    check_names(&src.topology)?;
    match target {
        Target::Compose => Ok(compose::render(src, Loader::Compose, image)),
        Target::Swarm => Ok(compose::render(src, Loader::Swarm, image)),
        Target::Kubernetes => kubernetes::render(src, image),
    }
}

/// Refuses a node group named like a service the renderings add themselves.
fn check_names(t: &Topology) -> anyhow::Result<()> {
    for (i, g) in t.nodes.iter().enumerate() {
        if RESERVED_NAMES.contains(&g.name.as_str()) {
            bail!(
                "nodes[{i}].name: {:?} is the name of the {} in the rendered files; \
                 expected a group name other than {}",
                g.name,
                if g.name == "load" { "load tool's service" } else { "balancer's service" },
                RESERVED_NAMES.join(" and ")
            );
        }
    }
    Ok(())
}

/// A node of group `g` in a container: named `name` in `x-node` (containers of one group
/// share a command line, so `{hostname}` tells them apart), listening on the group's port on
/// every address, following `g` in the topology mounted at `cfg`. `workers` is not on the
/// command line: the node reads it from the topology, so a worker edit recreates nothing.
pub(crate) fn node_args(g: &NodeGroup, cfg: &str, name: String) -> NodeArgs {
    let mut args = NodeArgs::new(name, SocketAddr::from(([0, 0, 0, 0], g.port)));
    args.topology = Some(cfg.into());
    args.group = Some(g.name.clone());
    args.distribution = g.distribution;
    args
}

/// The balancer in a container: its listeners on every address at the topology's ports, its
/// groups found by DNS as `<prefix><group>`.
pub(crate) fn balancer_args(t: &Topology, cfg: &str, dns_prefix: &str) -> BalancerArgs {
    let mut args = BalancerArgs::new(cfg);
    args.listen = Some(SocketAddr::from(([0, 0, 0, 0], t.balancer.listen.port())));
    args.admin = Some(SocketAddr::from(([0, 0, 0, 0], t.balancer.admin.port())));
    args.discovery = Discovery::Dns;
    args.dns_prefix = dns_prefix.to_string();
    args
}

/// Every rendered file for `src`, read from `path`: (where, content). All or none: a
/// rendering that fails leaves no file half-updated.
pub fn rendered(src: &Source, path: &Path, image: &Image) -> anyhow::Result<Vec<(PathBuf, String)>> {
    Target::ALL
        .into_iter()
        .map(|target| Ok((path.with_file_name(target.file_name()), render(src, target, image)?)))
        .collect()
}

/// Writes (or with `check`, compares) the rendered files next to the topology at `path`;
/// `Ok(false)` when the check finds one stale. Writing also prints what a file needs besides
/// itself (a metric only a metrics adapter can serve).
pub fn run(path: &Path, check: bool, image: &Image) -> anyhow::Result<bool> {
    let src = Source::load(path)?;
    let mut fresh = true;
    for (out, text) in rendered(&src, path, image)? {
        if check {
            if std::fs::read_to_string(&out).ok().as_deref() == Some(text.as_str()) {
                println!("{} is up to date", out.display());
            } else {
                eprintln!("{} is out of date with {}: run `scalelab compose`", out.display(), path.display());
                fresh = false;
            }
        } else {
            std::fs::write(&out, text).with_context(|| format!("cannot write {}", out.display()))?;
            println!("wrote {}", out.display());
        }
    }
    if !check {
        for note in kubernetes::notes(&src.topology) {
            eprintln!("note: {note}");
        }
    }
    Ok(fresh)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_named_like_a_rendered_service_is_refused() {
        for name in RESERVED_NAMES {
            let yaml = format!(
                "balancer: {{ listen: 127.0.0.1:8080, admin: 127.0.0.1:9090 }}\n\
                 nodes:\n  - {{ name: node, replicas: 1, workers: 1, port: 8081 }}\n\
                 \x20 - {{ name: {name}, replicas: 1, workers: 1, port: 8091 }}\n"
            );
            let src = Source::from_text(yaml, "topology.yaml").unwrap();
            for target in Target::ALL {
                let err = render(&src, target, &Image::default()).unwrap_err().to_string();
                assert!(err.starts_with(&format!("nodes[1].name: \"{name}\" is the name of the")), "{err}");
                assert!(err.contains("other than balancer and load"), "{err}");
            }
        }
    }
}
