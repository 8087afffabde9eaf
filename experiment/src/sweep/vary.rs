//! What a sweep varies: `--vary FIELD=V1,V2,...`, one series per flag (or, with `--grid`, a
//! series of the second flag for each value of the first), and the topology and load each
//! value makes. Every other field stays as in the base; a topology value applies to every node
//! group of the base.
//!
//! - `workers`, `replicas` and `cpus` are scales (the USL's N);
//! - `algorithm` and `distribution` are choices, compared side by side, kept as the topology's
//!   own [`Algorithm`] and [`Distribution`] enums;
//! - `load` (a fraction of the lab's theoretical capacity) and `rate` (requests per second)
//!   set an open-loop rate per point, for latency against offered load.

use std::fmt;
use std::str::FromStr;

use scalelab_topology::{Algorithm, Distribution, Topology};
use serde::de::{value::StrDeserializer, Deserialize};

/// Values one series may have, at most (each is a measured point).
pub const MAX_VALUES: usize = 32;
/// `load` fractions must stay below this: beyond 1.2× capacity a point only measures how fast
/// the queue grows.
pub const MAX_LOAD: f64 = 1.2;
/// `rate` values are at most this many requests per second.
pub const MAX_RATE: f64 = 1_000_000.0;

/// A field a sweep can vary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// Worker processes per node (vertical scaling).
    Workers,
    /// Nodes per group (horizontal scaling).
    Replicas,
    /// The CPU cap of each node, in cores.
    Cpus,
    /// The balancer's algorithm (a choice).
    Algorithm,
    /// How each node spreads connections over its workers (a choice).
    Distribution,
    /// The open-loop rate as a fraction of the lab's theoretical capacity.
    Load,
    /// The open-loop rate in requests per second.
    Rate,
}

impl Field {
    /// Every field, in the order the errors list them.
    pub const ALL: [Field; 7] = [
        Field::Workers,
        Field::Replicas,
        Field::Cpus,
        Field::Algorithm,
        Field::Distribution,
        Field::Load,
        Field::Rate,
    ];

    /// The name in `--vary` and in `results.json`.
    pub fn name(self) -> &'static str {
        match self {
            Field::Workers => "workers",
            Field::Replicas => "replicas",
            Field::Cpus => "cpus",
            Field::Algorithm => "algorithm",
            Field::Distribution => "distribution",
            Field::Load => "load",
            Field::Rate => "rate",
        }
    }

    /// Whether its values are choices rather than a scale.
    pub fn is_choice(self) -> bool {
        matches!(self, Field::Algorithm | Field::Distribution)
    }

    /// Whether it sets the offered load rather than the topology.
    pub fn is_load(self) -> bool {
        matches!(self, Field::Load | Field::Rate)
    }

    /// What a value of it must be, for errors.
    fn expected(self) -> String {
        match self {
            Field::Workers | Field::Replicas => "a whole number of 1 or more".into(),
            Field::Cpus => "a number of cores above 0".into(),
            Field::Algorithm => {
                let names: Vec<&str> = Algorithm::ALL.iter().map(|a| a.as_str()).collect();
                format!("an algorithm ({})", names.join(", "))
            }
            Field::Distribution => {
                let names: Vec<&str> = DISTRIBUTIONS.iter().map(|d| d.as_str()).collect();
                format!("a distribution ({})", names.join(", "))
            }
            Field::Load => format!("a fraction of capacity above 0 and below {MAX_LOAD}"),
            Field::Rate => format!("a rate in requests per second above 0 and at most {MAX_RATE}"),
        }
    }
}

/// Every distribution, for the error that lists them.
const DISTRIBUTIONS: [Distribution; 3] =
    [Distribution::Shared, Distribution::Reuseport, Distribution::RoundRobin];

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One value of a series, typed by its field: a setting can only be the kind of value its
/// field takes, so no field is ever paired with the wrong kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Setting {
    Workers(usize),
    Replicas(usize),
    Cpus(f64),
    Algorithm(Algorithm),
    Distribution(Distribution),
    /// A fraction of the lab's theoretical capacity, 0 < x < [`MAX_LOAD`].
    Load(f64),
    /// Requests per second, 0 < x ≤ [`MAX_RATE`].
    Rate(f64),
}

impl Setting {
    /// The field it sets.
    pub fn field(self) -> Field {
        match self {
            Setting::Workers(_) => Field::Workers,
            Setting::Replicas(_) => Field::Replicas,
            Setting::Cpus(_) => Field::Cpus,
            Setting::Algorithm(_) => Field::Algorithm,
            Setting::Distribution(_) => Field::Distribution,
            Setting::Load(_) => Field::Load,
            Setting::Rate(_) => Field::Rate,
        }
    }

    /// Its number, for a scale or a load; `None` for a choice.
    pub fn number(self) -> Option<f64> {
        match self {
            Setting::Workers(n) | Setting::Replicas(n) => Some(n as f64),
            Setting::Cpus(x) | Setting::Load(x) | Setting::Rate(x) => Some(x),
            Setting::Algorithm(_) | Setting::Distribution(_) => None,
        }
    }

    /// Its name, for a choice (`least_conn`); `None` for a number.
    pub fn choice(self) -> Option<&'static str> {
        match self {
            Setting::Algorithm(a) => Some(a.as_str()),
            Setting::Distribution(d) => Some(d.as_str()),
            _ => None,
        }
    }

    /// `field=value`, as in `--vary` and the sweep's progress.
    pub fn label(self) -> String {
        format!("{}={self}", self.field())
    }

    /// Sets its field in every node group of `t` (or the balancer's algorithm); a load or a
    /// rate leaves the topology alone.
    fn apply(self, t: &mut Topology) {
        match self {
            Setting::Workers(n) => t.nodes.iter_mut().for_each(|g| g.workers = n),
            Setting::Replicas(n) => t.nodes.iter_mut().for_each(|g| g.replicas = n),
            Setting::Cpus(c) => t.nodes.iter_mut().for_each(|g| g.cpus = Some(c)),
            Setting::Distribution(d) => t.nodes.iter_mut().for_each(|g| g.distribution = d),
            Setting::Algorithm(a) => t.balancer.algorithm = a,
            Setting::Load(_) | Setting::Rate(_) => {}
        }
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.number(), self.choice()) {
            (_, Some(name)) => f.write_str(name),
            (Some(x), None) => write!(f, "{x}"),
            (None, None) => unreachable!("a setting is a number or a choice"),
        }
    }
}

/// One `--vary`: the field and its values, in the order given (each of that field).
#[derive(Debug, Clone, PartialEq)]
pub struct Vary {
    pub field: Field,
    pub values: Vec<Setting>,
}

/// Why a `--vary` was refused; each message names the flag's text.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum VaryError {
    #[error("--vary {0:?}: expected FIELD=V1,V2,... (e.g. workers=1,2,4)")]
    Shape(String),
    #[error("--vary {0:?}: unknown field; expected workers, replicas, cpus, algorithm, distribution, load or rate")]
    Field(String),
    #[error("--vary {0:?}: no values; give at least one after '='")]
    Empty(String),
    #[error("--vary {text:?}: value {position} is empty (two commas in a row, or one at an end)")]
    EmptyValue { text: String, position: usize },
    #[error("--vary {text:?}: at most {MAX_VALUES} values, found {found}")]
    TooMany { text: String, found: usize },
    #[error("--vary {text:?}: {value:?} is not {what}")]
    Value { text: String, value: String, what: String },
    #[error("--vary {text:?}: {value} appears twice")]
    Duplicate { text: String, value: String },
}

impl FromStr for Vary {
    type Err = VaryError;

    fn from_str(text: &str) -> Result<Vary, VaryError> {
        let (name, list) = text.split_once('=').ok_or_else(|| VaryError::Shape(text.into()))?;
        let field = Field::ALL
            .into_iter()
            .find(|f| f.name() == name.trim())
            .ok_or_else(|| VaryError::Field(text.into()))?;
        if list.trim().is_empty() {
            return Err(VaryError::Empty(text.into()));
        }
        let items: Vec<&str> = list.split(',').map(str::trim).collect();
        if let Some(i) = items.iter().position(|v| v.is_empty()) {
            return Err(VaryError::EmptyValue { text: text.into(), position: i + 1 });
        }
        if items.len() > MAX_VALUES {
            return Err(VaryError::TooMany { text: text.into(), found: items.len() });
        }
        let mut values = Vec::with_capacity(items.len());
        for item in items {
            let value = parse_value(field, item).ok_or_else(|| VaryError::Value {
                text: text.into(),
                value: item.into(),
                what: field.expected(),
            })?;
            if values.contains(&value) {
                return Err(VaryError::Duplicate { text: text.into(), value: item.into() });
            }
            values.push(value);
        }
        Ok(Vary { field, values })
    }
}

fn parse_value(field: Field, item: &str) -> Option<Setting> {
    let number = || item.parse::<f64>().ok().filter(|x| x.is_finite());
    let count = || item.parse::<usize>().ok().filter(|n| *n >= 1);
    match field {
        Field::Workers => count().map(Setting::Workers),
        Field::Replicas => count().map(Setting::Replicas),
        Field::Cpus => number().filter(|c| *c > 0.0).map(Setting::Cpus),
        Field::Load => number().filter(|x| *x > 0.0 && *x < MAX_LOAD).map(Setting::Load),
        Field::Rate => number().filter(|x| *x > 0.0 && *x <= MAX_RATE).map(Setting::Rate),
        // The topology's own spelling decides, through the enums' serde names.
        Field::Algorithm => variant::<Algorithm>(item).map(Setting::Algorithm),
        Field::Distribution => variant::<Distribution>(item).map(Setting::Distribution),
    }
}

/// The enum variant serde spells `name`.
fn variant<'a, T: Deserialize<'a>>(name: &'a str) -> Option<T> {
    T::deserialize(StrDeserializer::<serde::de::value::Error>::new(name)).ok()
}

/// The base with every `settings` applied, validated as a topology file would be (so
/// `workers=100` is refused with the topology's own bound).
pub fn topology_at(base: &Topology, settings: &[Setting]) -> Result<Topology, String> {
    let mut t = base.clone();
    for s in settings {
        s.apply(&mut t);
    }
    Topology::from_yaml(&t.to_yaml()).map_err(|e| {
        let problems: Vec<String> =
            e.problems().iter().map(|p| format!("{}: {}", p.path, p.message)).collect();
        let labels: Vec<String> = settings.iter().map(|s| s.label()).collect();
        format!("--vary {}: the topology it makes is invalid: {}", labels.join(" "), problems.join("; "))
    })
}

/// The scale the USL sees at a point: total workers for the workers and replicas series, total
/// capped cores for the cpus series; for a choice, its position in the series (1, 2, ...); for
/// a load or a rate, its value.
pub fn scale(t: &Topology, setting: Setting, position: usize) -> f64 {
    match setting {
        Setting::Workers(_) | Setting::Replicas(_) => t.total_workers() as f64,
        Setting::Cpus(_) => t.nodes.iter().map(|g| g.replicas as f64 * g.cpus.unwrap_or(0.0)).sum(),
        Setting::Algorithm(_) | Setting::Distribution(_) => position as f64 + 1.0,
        Setting::Load(x) | Setting::Rate(x) => x,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "balancer: { listen: 127.0.0.1:8080, admin: 127.0.0.1:9090 }\n\
                        nodes: [{ name: node, replicas: 1, workers: 1, cpus: 0.5, port: 8081 }]\n";

    #[test]
    fn parses_fields_and_typed_values_in_order() {
        assert_eq!(
            "workers=1,2,4".parse::<Vary>(),
            Ok(Vary {
                field: Field::Workers,
                values: vec![Setting::Workers(1), Setting::Workers(2), Setting::Workers(4)]
            })
        );
        let cpus = "cpus= 0.5, 1,2".parse::<Vary>().unwrap().values;
        assert_eq!(cpus, [Setting::Cpus(0.5), Setting::Cpus(1.0), Setting::Cpus(2.0)]);
        let choices = "algorithm=round_robin,least_conn".parse::<Vary>().unwrap();
        assert_eq!(
            choices.values,
            [Setting::Algorithm(Algorithm::RoundRobin), Setting::Algorithm(Algorithm::LeastConn)]
        );
        assert!(choices.field.is_choice());
        let d = "distribution=shared,reuseport,round_robin".parse::<Vary>().unwrap().values;
        assert_eq!(d[2], Setting::Distribution(Distribution::RoundRobin));
        assert_eq!(d[2].to_string(), "round_robin");
        let load = "load=0.2,0.95,1.1".parse::<Vary>().unwrap();
        assert!(load.field.is_load());
        assert_eq!(load.values, [Setting::Load(0.2), Setting::Load(0.95), Setting::Load(1.1)]);
        assert_eq!(load.values[1].label(), "load=0.95");
        assert_eq!("rate=50,400".parse::<Vary>().unwrap().values[1], Setting::Rate(400.0));
    }

    #[test]
    fn bad_vary_flags_are_named() {
        for (text, words) in [
            ("workers", "expected FIELD=V1,V2"),
            (
                "threads=1,2",
                "unknown field; expected workers, replicas, cpus, algorithm, distribution, load or rate",
            ),
            ("workers=", "no values"),
            ("workers=1,,2", "value 2 is empty"),
            ("workers=1,2,", "value 3 is empty"),
            ("workers=0,1", "\"0\" is not a whole number of 1 or more"),
            ("replicas=1.5", "is not a whole number"),
            ("cpus=-1", "a number of cores above 0"),
            ("workers=2,2", "2 appears twice"),
            ("algorithm=fastest", "is not an algorithm (round_robin, random, least_conn, p2c, peak_ewma)"),
            ("distribution=random", "is not a distribution (shared, reuseport, round_robin)"),
            ("load=0.5,1.2", "\"1.2\" is not a fraction of capacity above 0 and below 1.2"),
            ("load=0", "\"0\" is not a fraction of capacity"),
            ("load=-0.5", "is not a fraction of capacity"),
            ("load=nan", "is not a fraction of capacity"),
            ("rate=0", "is not a rate in requests per second above 0 and at most 1000000"),
            ("rate=2e6", "is not a rate"),
        ] {
            let err = text.parse::<Vary>().unwrap_err().to_string();
            assert!(err.contains(words) && err.contains(text), "{text}: {err}");
        }
    }

    #[test]
    fn each_setting_makes_a_valid_topology_or_says_why() {
        let base = Topology::from_yaml(BASE).unwrap();
        let t = topology_at(&base, &[Setting::Replicas(3)]).unwrap();
        assert_eq!((t.nodes[0].replicas, scale(&t, Setting::Replicas(3), 0)), (3, 3.0));
        let two = topology_at(&base, &[Setting::Cpus(2.0)]).unwrap();
        assert_eq!(scale(&two, Setting::Cpus(2.0), 0), 2.0);
        let p2c = topology_at(&base, &[Setting::Algorithm(Algorithm::P2c)]).unwrap();
        assert_eq!(p2c.balancer.algorithm, Algorithm::P2c);
        let rr = Setting::Distribution(Distribution::RoundRobin);
        assert_eq!(topology_at(&base, &[rr]).unwrap().nodes[0].distribution, Distribution::RoundRobin);
        // A grid point applies both; a load leaves the topology as it is.
        let both = topology_at(&base, &[rr, Setting::Workers(4)]).unwrap();
        assert_eq!((both.nodes[0].distribution, both.nodes[0].workers), (Distribution::RoundRobin, 4));
        assert_eq!(topology_at(&base, &[Setting::Load(0.5)]).unwrap(), base);
        let err = topology_at(&base, &[Setting::Workers(100)]).unwrap_err();
        assert!(
            err.contains("--vary workers=100") && err.contains("nodes[0].workers: expected 1 to 64 workers"),
            "{err}"
        );
    }
}
