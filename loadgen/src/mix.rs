//! The request mix: which paths a run requests and in what proportion (`--mix op1=9,op2=1`).
//!
//! A mix is parsed once, then unrolled into a fixed *sequence* of path indices, one per
//! request: request `i` of a run uses `sequence[i % len]`. The sequence is made of cycles of
//! `weight` copies of each path, every cycle shuffled by a PRNG with a fixed seed, so:
//!
//! - every whole cycle (10 requests for `op1=9,op2=1`) holds each path exactly `weight` times;
//! - two runs of the same mix send the same paths in the same order (reproducible);
//! - the order has no short period. A strictly periodic order (`op1` nine times, then `op2`)
//!   aliases with a round-robin balancer: with two backends every `/op2` lands on the same
//!   one, and round robin looks far worse than it is on real traffic.

use std::fmt;
use std::str::FromStr;

/// The largest sum of weights accepted: it is the length of one cycle of the sequence.
pub const MAX_TOTAL_WEIGHT: u32 = 100_000;

/// The sequence repeats whole cycles until it is at least this long, so its period is far
/// longer than any balancer's rotation.
const MIN_SEQUENCE: usize = 4096;

/// The PRNG seed: fixed, so a mix always unrolls to the same sequence.
const SEED: u64 = 0x5CA1_E1AB;

/// Why a `--mix` value was rejected; every message names the entry at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MixError {
    /// The whole value was empty.
    #[error("empty mix: expected entries like `op1=9,op2=1`")]
    Empty,
    /// An entry had no `=weight`.
    #[error("entry `{0}` has no weight: expected `NAME=WEIGHT`, e.g. `op1=9`")]
    MissingWeight(String),
    /// An entry's weight was not a whole number of at least 1.
    #[error("entry `{entry}`: weight `{weight}` is not a whole number >= 1")]
    BadWeight { entry: String, weight: String },
    /// An entry named no path, or a name that is neither `opN`-like nor a `/path`.
    #[error("entry `{0}`: expected a name like `op1` (meaning /op1) or a path starting with `/`")]
    BadPath(String),
    /// The same path appeared twice.
    #[error("entry `{0}`: path listed twice")]
    Duplicate(String),
    /// The weights add up to more than [`MAX_TOTAL_WEIGHT`].
    #[error("weights add up to {0}, more than the limit of {MAX_TOTAL_WEIGHT}")]
    TooHeavy(u64),
}

/// One path of a mix and its weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MixEntry {
    /// The request target, path and optional query, always starting with `/`.
    pub path: String,
    /// How many requests per cycle go to this path (>= 1).
    pub weight: u32,
}

/// A parsed, non-empty request mix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    entries: Vec<MixEntry>,
}

impl Mix {
    /// A mix of one path, every request to it.
    pub fn single(path: &str) -> Result<Mix, MixError> {
        Ok(Mix { entries: vec![MixEntry { path: parse_path(path, path)?, weight: 1 }] })
    }

    /// The entries in the order they were given.
    pub fn entries(&self) -> &[MixEntry] {
        &self.entries
    }

    /// The paths, in entry order (index `i` is entry `i`).
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.path.as_str())
    }

    /// The per-request sequence of entry indices: whole shuffled cycles (see the module
    /// comment), at least [`MIN_SEQUENCE`] long unless the mix has a single path.
    pub fn sequence(&self) -> Vec<u16> {
        let cycle: Vec<u16> = (0u16..)
            .zip(&self.entries)
            .flat_map(|(i, e)| std::iter::repeat_n(i, e.weight as usize))
            .collect();
        if self.entries.len() == 1 {
            return cycle;
        }
        let cycles = MIN_SEQUENCE.div_ceil(cycle.len());
        let mut rng = fastrand::Rng::with_seed(SEED);
        let mut seq = Vec::with_capacity(cycles * cycle.len());
        for _ in 0..cycles {
            let mut c = cycle.clone();
            rng.shuffle(&mut c);
            seq.extend_from_slice(&c);
        }
        seq
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}={}", e.path, e.weight)?;
        }
        Ok(())
    }
}

impl FromStr for Mix {
    type Err = MixError;

    /// Parses `NAME=WEIGHT[,NAME=WEIGHT...]`; a bare name `opN` means `/opN`, a name starting
    /// with `/` is taken literally (it may carry a query, e.g. `/op2?cpu_ms=5=1`).
    fn from_str(s: &str) -> Result<Mix, MixError> {
        if s.trim().is_empty() {
            return Err(MixError::Empty);
        }
        let mut entries: Vec<MixEntry> = Vec::new();
        let mut total: u64 = 0;
        for raw in s.split(',') {
            let entry = raw.trim();
            // The weight follows the *last* `=`, so a literal path may contain `=` in its query.
            let (name, weight) =
                entry.rsplit_once('=').ok_or_else(|| MixError::MissingWeight(entry.to_string()))?;
            let weight: u32 = match weight.trim().parse() {
                Ok(w) if w >= 1 => w,
                _ => {
                    return Err(MixError::BadWeight { entry: entry.to_string(), weight: weight.to_string() })
                }
            };
            let path = parse_path(name.trim(), entry)?;
            if entries.iter().any(|e| e.path == path) {
                return Err(MixError::Duplicate(entry.to_string()));
            }
            total += u64::from(weight);
            entries.push(MixEntry { path, weight });
        }
        if total > u64::from(MAX_TOTAL_WEIGHT) {
            return Err(MixError::TooHeavy(total));
        }
        Ok(Mix { entries })
    }
}

/// `op1` → `/op1`; `/x?y` stays as it is; anything else is an error naming `entry`.
fn parse_path(name: &str, entry: &str) -> Result<String, MixError> {
    let ok_name =
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if name.starts_with('/') && !name.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        Ok(name.to_string())
    } else if ok_name {
        Ok(format!("/{name}"))
    } else {
        Err(MixError::BadPath(entry.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix(s: &str) -> Mix {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn paths_of(m: &Mix, seq: &[u16]) -> Vec<String> {
        seq.iter().map(|&i| m.entries()[i as usize].path.clone()).collect()
    }

    #[test]
    fn names_become_paths_and_literals_stay() {
        let m = mix("op1=9, op2=1,/health=2,/op2?cpu_ms=5=3");
        let got: Vec<(&str, u32)> = m.entries().iter().map(|e| (e.path.as_str(), e.weight)).collect();
        assert_eq!(got, [("/op1", 9), ("/op2", 1), ("/health", 2), ("/op2?cpu_ms=5", 3)]);
    }

    #[test]
    fn every_cycle_holds_the_exact_weights() {
        let m = mix("a=5,b=3,c=2");
        let seq = m.sequence();
        assert!(seq.len() >= MIN_SEQUENCE && seq.len().is_multiple_of(10), "len {}", seq.len());
        for cycle in seq.chunks(10) {
            let mut counts = [0u32; 3];
            for &i in cycle {
                counts[i as usize] += 1;
            }
            assert_eq!(counts, [5, 3, 2]);
        }
        assert_eq!(paths_of(&m, &seq[..10]).iter().filter(|p| *p == "/b").count(), 3);
    }

    #[test]
    fn the_sequence_is_reproducible() {
        assert_eq!(mix("op1=9,op2=1").sequence(), mix("op1=9,op2=1").sequence());
    }

    /// The reason for the shuffle: a two-backend round robin sees requests alternately, and
    /// each backend must still get about its share of the rare path.
    #[test]
    fn the_rare_path_splits_evenly_between_alternate_requests() {
        let seq = mix("op1=9,op2=1").sequence();
        let even = seq.iter().step_by(2).filter(|&&i| i == 1).count() as f64;
        let odd = seq.iter().skip(1).step_by(2).filter(|&&i| i == 1).count() as f64;
        let share = even / (even + odd);
        assert!((0.45..=0.55).contains(&share), "even {even}, odd {odd}");
        // Same for a three-way rotation.
        for k in 0..3 {
            let n = seq.iter().skip(k).step_by(3).filter(|&&i| i == 1).count() as f64;
            assert!((n / (even + odd) - 1.0 / 3.0).abs() < 0.05, "rotation slot {k}: {n}");
        }
    }

    #[test]
    fn single_path() {
        let m = Mix::single("/op1").unwrap();
        assert_eq!(m.sequence(), [0]);
        assert_eq!(m.to_string(), "/op1=1");
        assert_eq!(Mix::single("op2").unwrap().entries()[0].path, "/op2");
    }

    #[test]
    fn errors_name_the_entry() {
        let cases = [
            ("", MixError::Empty),
            ("op1", MixError::MissingWeight("op1".into())),
            ("op1=9,op2", MixError::MissingWeight("op2".into())),
            ("op1=x", MixError::BadWeight { entry: "op1=x".into(), weight: "x".into() }),
            ("op1=0", MixError::BadWeight { entry: "op1=0".into(), weight: "0".into() }),
            ("=3", MixError::BadPath("=3".into())),
            ("op 1=3", MixError::BadPath("op 1=3".into())),
            ("op1=1,/op1=2", MixError::Duplicate("/op1=2".into())),
            ("a=60000,b=60000", MixError::TooHeavy(120_000)),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<Mix>().unwrap_err(), want, "input {input:?}");
        }
        assert!(MixError::BadWeight { entry: "op1=x".into(), weight: "x".into() }
            .to_string()
            .contains("op1=x"));
    }
}
