//! Noticing edits to the topology file. Polling the content (not inotify) keeps it right
//! when editors replace the file by rename and inside containers with bind mounts; the file
//! is small, so reading it twice a second costs nothing.

use std::path::PathBuf;

use crate::error::TopologyError;
use crate::model::Topology;
use crate::parse::read_bounded;

/// Remembers the last content seen so each edit is reported once.
#[derive(Debug)]
pub struct TopologyWatch {
    path: PathBuf,
    /// The content last returned; `None` before the first poll.
    last: Option<Vec<u8>>,
}

impl TopologyWatch {
    /// Watches `path`; nothing is read until the first `poll`.
    pub fn new(path: impl Into<PathBuf>) -> TopologyWatch {
        TopologyWatch { path: path.into(), last: None }
    }

    /// The watched file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// `Some` with the parsed topology (or why it is invalid) when the content differs from
    /// the last poll; the first poll always returns `Some`. An unreadable file is reported
    /// once, until it changes again.
    pub fn poll(&mut self) -> Option<Result<Topology, TopologyError>> {
        let content = match read_bounded(&self.path) {
            Ok(c) => c,
            Err(e) => {
                let marker = format!("\0unreadable: {e}").into_bytes();
                if self.last.as_deref() == Some(marker.as_slice()) {
                    return None;
                }
                self.last = Some(marker);
                return Some(Err(e));
            }
        };
        if self.last.as_deref() == Some(content.as_slice()) {
            return None;
        }
        let parsed = Topology::from_bytes(&content).map_err(|e| e.in_file(self.path.clone()));
        self.last = Some(content);
        Some(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_each_change_once() {
        let dir = std::env::temp_dir().join(format!("scalelab-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.yaml");
        let yaml = |workers: usize| {
            format!(
                "balancer: {{ listen: 127.0.0.1:8080, admin: 127.0.0.1:9090 }}\n\
                 nodes: [{{ name: node, replicas: 1, workers: {workers}, port: 8081 }}]\n"
            )
        };
        std::fs::write(&path, yaml(1)).unwrap();
        let mut w = TopologyWatch::new(&path);
        assert_eq!(w.poll().unwrap().unwrap().nodes[0].workers, 1);
        assert!(w.poll().is_none());
        std::fs::write(&path, yaml(3)).unwrap();
        assert_eq!(w.poll().unwrap().unwrap().nodes[0].workers, 3);
        std::fs::write(&path, yaml(0)).unwrap();
        assert!(w.poll().unwrap().is_err());
        assert!(w.poll().is_none());
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(w.poll(), Some(Err(TopologyError::Io { .. }))));
        assert!(w.poll().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
