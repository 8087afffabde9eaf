//! What a worker is told by its primary, and the environment variables that carry it across
//! the re-exec (the analogue of Node's `NODE_UNIQUE_ID`).

use std::time::Duration;

use scalelab_topology::{Distribution, Workload};

/// Exit code of a worker that could not boot (bad environment, no inherited socket, no event
/// loop). The primary does not respawn it: it would fail the same way, in a storm.
pub const EXIT_BOOT_FAILED: i32 = 3;

const ENV_WORKER_ID: &str = "SCALELAB_WORKER_ID";
const ENV_NODE: &str = "SCALELAB_NODE";
/// The topology's `workload`, as JSON: one variable for the one type.
const ENV_WORKLOAD: &str = "SCALELAB_WORKLOAD";
const ENV_GRACE_MS: &str = "SCALELAB_GRACE_MS";
const ENV_LIFELINE_FD: &str = "SCALELAB_LIFELINE_FD";
/// How connections reach the worker, in the topology's spelling (`shared`, `reuseport`,
/// `round_robin`): it says what the descriptor at fd 3 is.
const ENV_DISTRIBUTION: &str = "SCALELAB_DISTRIBUTION";
/// The cgroup directories `/stats` reads (`:`-separated; empty for none).
const ENV_CGROUPS: &str = "SCALELAB_CGROUPS";

/// Every setting a worker runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Slot number, 1..=W; a respawned worker keeps the id of the one it replaces.
    pub id: usize,
    /// Replica name (`x-node`).
    pub node: String,
    /// What `/op2` costs and how many requests may wait for the CPU.
    pub workload: Workload,
    /// How long the worker drains in-flight requests once told to stop.
    pub grace: Duration,
    /// Read end of the lifeline pipe; EOF means the primary is gone.
    pub lifeline_fd: i32,
    /// How connections reach this worker: a listening socket at fd 3 (`shared`, `reuseport`)
    /// or a Unix socket the primary hands connections over (`round_robin`).
    pub distribution: Distribution,
    /// The cgroup directories its CPU is accounted in (for `/stats`); empty when unknown.
    pub cgroups: Vec<std::path::PathBuf>,
}

/// A missing or unparsable worker variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set (a worker is started by `scalelab node`, not by hand)")]
    Missing(&'static str),
    #[error("{name}={value:?} is not a valid {what}")]
    Invalid { name: &'static str, value: String, what: &'static str },
}

impl WorkerConfig {
    /// The variables to set on a worker's command.
    pub fn to_env(&self) -> Vec<(&'static str, String)> {
        vec![
            (ENV_WORKER_ID, self.id.to_string()),
            (ENV_NODE, self.node.clone()),
            (ENV_WORKLOAD, serde_json::to_string(&self.workload).expect("a workload serializes")),
            (ENV_GRACE_MS, self.grace.as_millis().to_string()),
            (ENV_LIFELINE_FD, self.lifeline_fd.to_string()),
            (ENV_DISTRIBUTION, self.distribution.as_str().to_string()),
            (ENV_CGROUPS, self.cgroups.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(":")),
        ]
    }

    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<WorkerConfig, ConfigError> {
        WorkerConfig::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<WorkerConfig, ConfigError> {
        let text = |name: &'static str| lookup(name).ok_or(ConfigError::Missing(name));
        let number = |name: &'static str, what: &'static str| -> Result<u64, ConfigError> {
            let value = text(name)?;
            value.parse().map_err(|_| ConfigError::Invalid { name, value, what })
        };
        let id = number(ENV_WORKER_ID, "worker id (1 or more)")?;
        if id == 0 {
            return Err(ConfigError::Invalid {
                name: ENV_WORKER_ID,
                value: "0".into(),
                what: "worker id (1 or more)",
            });
        }
        let lifeline_fd = number(ENV_LIFELINE_FD, "file descriptor")?;
        let workload = text(ENV_WORKLOAD)?;
        let workload = serde_json::from_str(&workload).map_err(|_| ConfigError::Invalid {
            name: ENV_WORKLOAD,
            value: workload,
            what: "workload (JSON)",
        })?;
        let distribution = text(ENV_DISTRIBUTION)?;
        let distribution = parse_distribution(&distribution).ok_or(ConfigError::Invalid {
            name: ENV_DISTRIBUTION,
            value: distribution,
            what: "distribution (shared, reuseport or round_robin)",
        })?;
        Ok(WorkerConfig {
            id: id as usize,
            node: text(ENV_NODE)?,
            workload,
            grace: Duration::from_millis(number(ENV_GRACE_MS, "number of milliseconds")?),
            lifeline_fd: i32::try_from(lifeline_fd).map_err(|_| ConfigError::Invalid {
                name: ENV_LIFELINE_FD,
                value: lifeline_fd.to_string(),
                what: "file descriptor",
            })?,
            distribution,
            cgroups: lookup(ENV_CGROUPS)
                .unwrap_or_default()
                .split(':')
                .filter(|d| !d.is_empty())
                .map(std::path::PathBuf::from)
                .collect(),
        })
    }
}

/// The [`Distribution`] spelled `text` (its YAML spelling, as [`Distribution::as_str`] writes it).
fn parse_distribution(text: &str) -> Option<Distribution> {
    use clap::ValueEnum;
    Distribution::value_variants().iter().copied().find(|d| d.as_str() == text)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn sample() -> WorkerConfig {
        WorkerConfig {
            id: 2,
            node: "node-1".into(),
            workload: Workload::default(),
            grace: Duration::from_millis(5000),
            lifeline_fd: 4,
            distribution: Distribution::RoundRobin,
            cgroups: vec!["/sys/fs/cgroup/cpu/x".into(), "/sys/fs/cgroup/cpuacct/x".into()],
        }
    }

    #[test]
    fn round_trips_through_the_environment() {
        let env: HashMap<_, _> = sample().to_env().into_iter().collect();
        let back = WorkerConfig::from_lookup(|k| env.get(k).cloned()).unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn names_the_bad_variable() {
        let mut env: HashMap<_, _> = sample().to_env().into_iter().collect();
        env.insert(ENV_WORKLOAD, "fast".into());
        let err = WorkerConfig::from_lookup(|k| env.get(k).cloned()).unwrap_err();
        assert!(err.to_string().contains("SCALELAB_WORKLOAD=\"fast\""), "{err}");
        env.remove(ENV_NODE);
        env.insert(ENV_WORKLOAD, serde_json::to_string(&Workload::default()).unwrap());
        let err = WorkerConfig::from_lookup(|k| env.get(k).cloned()).unwrap_err();
        assert!(err.to_string().contains("SCALELAB_NODE is not set"), "{err}");
    }

    #[test]
    fn every_distribution_round_trips() {
        use clap::ValueEnum;
        for &distribution in Distribution::value_variants() {
            let config = WorkerConfig { distribution, ..sample() };
            let env: HashMap<_, _> = config.to_env().into_iter().collect();
            assert_eq!(WorkerConfig::from_lookup(|k| env.get(k).cloned()).unwrap(), config);
        }
        let mut env: HashMap<_, _> = sample().to_env().into_iter().collect();
        env.insert(ENV_DISTRIBUTION, "round-robin".into());
        let err = WorkerConfig::from_lookup(|k| env.get(k).cloned()).unwrap_err();
        assert!(err.to_string().contains("SCALELAB_DISTRIBUTION=\"round-robin\""), "{err}");
    }

    #[test]
    fn worker_ids_start_at_one() {
        let mut env: HashMap<_, _> = sample().to_env().into_iter().collect();
        env.insert(ENV_WORKER_ID, "0".into());
        assert!(WorkerConfig::from_lookup(|k| env.get(k).cloned()).is_err());
    }
}
