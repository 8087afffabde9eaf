//! What a sweep varies: `--vary FIELD=V1,V2,...`, one series per flag, and the topology each
//! value turns the base into. Every other field stays as in the base; a value applies to every
//! node group of the base. `workers`, `replicas` and `cpus` are scales (the USL's N);
//! `algorithm` and `distribution` are choices, compared side by side.

use std::fmt;
use std::str::FromStr;

use scalelab_topology::{Algorithm, Distribution, Topology};

/// Values one series may have, at most (each is a measured point).
pub const MAX_VALUES: usize = 32;

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
}

impl Field {
    /// The name in `--vary` and in `results.json`.
    pub fn name(self) -> &'static str {
        match self {
            Field::Workers => "workers",
            Field::Replicas => "replicas",
            Field::Cpus => "cpus",
            Field::Algorithm => "algorithm",
            Field::Distribution => "distribution",
        }
    }

    /// Whether its values are choices rather than a scale.
    pub fn is_choice(self) -> bool {
        matches!(self, Field::Algorithm | Field::Distribution)
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One value of a series: a number on a scale, or a named choice.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    Choice(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Number(x) => write!(f, "{x}"),
            Value::Choice(name) => f.write_str(name),
        }
    }
}

/// One `--vary`: the field and its values, in the order given.
#[derive(Debug, Clone, PartialEq)]
pub struct Vary {
    pub field: Field,
    pub values: Vec<Value>,
}

/// Why a `--vary` was refused; each message names the flag's text.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum VaryError {
    #[error("--vary {0:?}: expected FIELD=V1,V2,... (e.g. workers=1,2,4)")]
    Shape(String),
    #[error("--vary {0:?}: unknown field; expected workers, replicas or cpus")]
    Field(String),
    #[error("--vary {0:?}: no values; give at least one after '='")]
    Empty(String),
    #[error("--vary {text:?}: at most {MAX_VALUES} values, found {found}")]
    TooMany { text: String, found: usize },
    #[error("--vary {text:?}: {value:?} is not {what}")]
    Value { text: String, value: String, what: &'static str },
    #[error("--vary {text:?}: {value} appears twice")]
    Duplicate { text: String, value: String },
}

impl FromStr for Vary {
    type Err = VaryError;

    fn from_str(text: &str) -> Result<Vary, VaryError> {
        let (name, list) = text.split_once('=').ok_or_else(|| VaryError::Shape(text.into()))?;
        let field = match name.trim() {
            "workers" => Field::Workers,
            "replicas" => Field::Replicas,
            "cpus" => Field::Cpus,
            "algorithm" => Field::Algorithm,
            "distribution" => Field::Distribution,
            _ => return Err(VaryError::Field(text.into())),
        };
        let items: Vec<&str> = list.split(',').map(str::trim).filter(|v| !v.is_empty()).collect();
        if items.is_empty() {
            return Err(VaryError::Empty(text.into()));
        }
        if items.len() > MAX_VALUES {
            return Err(VaryError::TooMany { text: text.into(), found: items.len() });
        }
        let mut values = Vec::with_capacity(items.len());
        for item in items {
            let value = parse_value(field, item).ok_or_else(|| VaryError::Value {
                text: text.into(),
                value: item.into(),
                what: match field {
                    Field::Cpus => "a number of cores above 0",
                    Field::Algorithm => "an algorithm (round_robin, random, least_conn, p2c, peak_ewma)",
                    Field::Distribution => "a distribution (shared, reuseport, round_robin)",
                    Field::Workers | Field::Replicas => "a whole number of 1 or more",
                },
            })?;
            if values.contains(&value) {
                return Err(VaryError::Duplicate { text: text.into(), value: item.into() });
            }
            values.push(value);
        }
        Ok(Vary { field, values })
    }
}

fn parse_value(field: Field, item: &str) -> Option<Value> {
    match field {
        Field::Cpus => item.parse::<f64>().ok().filter(|c| c.is_finite() && *c > 0.0).map(Value::Number),
        Field::Workers | Field::Replicas => {
            item.parse::<u32>().ok().filter(|n| *n >= 1).map(|n| Value::Number(f64::from(n)))
        }
        // The topology's own spelling decides: what the YAML accepts, --vary accepts.
        Field::Algorithm => serde_yaml::from_str::<Algorithm>(item).ok().map(|_| Value::Choice(item.into())),
        Field::Distribution => {
            serde_yaml::from_str::<Distribution>(item).ok().map(|_| Value::Choice(item.into()))
        }
    }
}

/// The base with `field` set to `value` in every node group, validated as a topology file
/// would be (so `workers=100` is refused with the topology's own bound).
pub fn topology_at(base: &Topology, field: Field, value: &Value) -> Result<Topology, String> {
    let mut t = base.clone();
    match value {
        Value::Number(x) => {
            for g in &mut t.nodes {
                match field {
                    Field::Workers => g.workers = *x as usize,
                    Field::Replicas => g.replicas = *x as usize,
                    Field::Cpus => g.cpus = Some(*x),
                    Field::Algorithm | Field::Distribution => {}
                }
            }
        }
        Value::Choice(name) => {
            let bad = |e: serde_yaml::Error| format!("--vary {field}={name}: {e}");
            match field {
                Field::Algorithm => t.balancer.algorithm = serde_yaml::from_str(name).map_err(bad)?,
                Field::Distribution => {
                    let d: Distribution = serde_yaml::from_str(name).map_err(bad)?;
                    t.nodes.iter_mut().for_each(|g| g.distribution = d);
                }
                Field::Workers | Field::Replicas | Field::Cpus => {}
            }
        }
    }
    Topology::from_yaml(&t.to_yaml()).map_err(|e| {
        let problems: Vec<String> =
            e.problems().iter().map(|p| format!("{}: {}", p.path, p.message)).collect();
        format!("--vary {field}={value}: the topology it makes is invalid: {}", problems.join("; "))
    })
}

/// The scale the USL sees at a point: total workers for the workers and replicas series, total
/// capped cores for the cpus series; for a choice, its position in the series (1, 2, ...).
pub fn scale(t: &Topology, field: Field, position: usize) -> f64 {
    match field {
        Field::Workers | Field::Replicas => t.total_workers() as f64,
        Field::Cpus => t.nodes.iter().map(|g| g.replicas as f64 * g.cpus.unwrap_or(0.0)).sum(),
        Field::Algorithm | Field::Distribution => position as f64 + 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "balancer: { listen: 127.0.0.1:8080, admin: 127.0.0.1:9090 }\n\
                        nodes: [{ name: node, replicas: 1, workers: 1, cpus: 0.5, port: 8081 }]\n";

    #[test]
    fn parses_fields_and_values_in_order() {
        let n = Value::Number;
        assert_eq!(
            "workers=1,2,4".parse::<Vary>(),
            Ok(Vary { field: Field::Workers, values: vec![n(1.0), n(2.0), n(4.0)] })
        );
        assert_eq!("cpus= 0.5, 1,2".parse::<Vary>().unwrap().values, vec![n(0.5), n(1.0), n(2.0)]);
        let choices = "algorithm=round_robin,least_conn".parse::<Vary>().unwrap();
        assert_eq!(choices.values, [Value::Choice("round_robin".into()), Value::Choice("least_conn".into())]);
        assert!(choices.field.is_choice());
    }

    #[test]
    fn bad_vary_flags_are_named() {
        for (text, words) in [
            ("workers", "expected FIELD=V1,V2"),
            ("threads=1,2", "unknown field"),
            ("workers=", "no values"),
            ("workers=0,1", "\"0\" is not a whole number of 1 or more"),
            ("replicas=1.5", "is not a whole number"),
            ("cpus=-1", "a number of cores above 0"),
            ("workers=2,2", "2 appears twice"),
            ("algorithm=fastest", "is not an algorithm"),
            ("distribution=random", "is not a distribution"),
        ] {
            let err = text.parse::<Vary>().unwrap_err().to_string();
            assert!(err.contains(words) && err.contains(text), "{text}: {err}");
        }
    }

    #[test]
    fn each_value_makes_a_valid_topology_or_says_why() {
        let base = Topology::from_yaml(BASE).unwrap();
        let n = Value::Number;
        let t = topology_at(&base, Field::Replicas, &n(3.0)).unwrap();
        assert_eq!((t.nodes[0].replicas, scale(&t, Field::Replicas, 0)), (3, 3.0));
        assert_eq!(scale(&topology_at(&base, Field::Cpus, &n(2.0)).unwrap(), Field::Cpus, 0), 2.0);
        let p2c = topology_at(&base, Field::Algorithm, &Value::Choice("p2c".into())).unwrap();
        assert_eq!(p2c.balancer.algorithm, Algorithm::P2c);
        let rr = topology_at(&base, Field::Distribution, &Value::Choice("round_robin".into())).unwrap();
        assert_eq!(rr.nodes[0].distribution, Distribution::RoundRobin);
        let err = topology_at(&base, Field::Workers, &n(100.0)).unwrap_err();
        assert!(err.contains("nodes[0].workers: expected 1 to 64 workers"), "{err}");
    }
}
