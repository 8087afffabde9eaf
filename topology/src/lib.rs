//! The lab's one source of truth: `topology.yaml`, parsed, validated and watched.
//!
//! # Layout
//! - [`model`]: the types (`Topology`, `BalancerConfig`, `NodeGroup`, ...) and what they derive
//!   (`replicas`, `backend_targets`).
//! - [`parse`]: text to types: `Topology::from_yaml`, `from_bytes`, `load`; one yaml-rust2
//!   pass for positions and the document count, one serde pass for the values.
//! - [`salvage`]: reading past what serde stops at (a syntax error, an unknown field, a
//!   wrong type), so that every problem of a file is listed in one pass.
//! - [`error`]: `TopologyError` and `Problem`: every problem with its field path, line and column.
//! - [`spans`]: where each key (and each document) sits in the source text, so every problem
//!   can point at it.
//! - [`validate`]: the rules a parsed topology must satisfy beyond its types.
//! - [`limits`]: every bound those rules hold a topology to.
//! - [`watch`]: `TopologyWatch`, polling the file for edits.
//! - [`diff`]: what changed between two topologies, in words.
//!
//! Parsing is two steps, as in `Topology::from_yaml`: serde builds the types (syntax, unknown
//! fields, wrong types), then `validate` checks what types cannot say (workers 0, port clashes).
//! Both report every problem they find: where serde stops, `salvage` repairs and reads on.

pub mod diff;
pub mod error;
pub mod limits;
pub mod model;
pub mod parse;
pub mod salvage;
pub mod spans;
pub mod validate;
pub mod watch;

pub use error::{Problem, TopologyError};
pub use model::{
    Algorithm, Autoscale, AutoscaleMetric, BackendTarget, BalancerConfig, Discovery, DiscoveryMode,
    Distribution, HealthCheckConfig, NodeGroup, Replica, Topology, UpstreamConfig, Workload,
};
pub use watch::TopologyWatch;
