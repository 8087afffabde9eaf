//! The request mix: which paths a run requests and in what proportion (`--mix op1=9,op2=1`).
//!
//! A mix is parsed once, then unrolled into a fixed *interleave*: a sequence of path indices,
//! one per request, in which every path appears exactly `weight` times per cycle, spread as
//! evenly as the weights allow (smooth weighted round robin, the algorithm nginx uses for
//! upstream weights). Request `i` of a run uses `interleave[i % len]`, so a run of a whole
//! number of cycles hits every path in exactly the asked proportion, with no randomness.

use std::fmt;
use std::str::FromStr;

/// The largest sum of weights accepted: it is the length of the unrolled interleave.
pub const MAX_TOTAL_WEIGHT: u32 = 100_000;

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

    /// The deterministic per-request sequence of entry indices, one weight-sum long.
    ///
    /// ```text
    /// op1=3,op2=1:  current += weight; pick the largest; picked -= total (4)
    ///   step  current(before pick)  pick   current(after)
    ///   1     [3, 1]                op1    [-1, 1]
    ///   2     [2, 2]                op1    [-2, 2]   (ties go to the first entry)
    ///   3     [1, 3]                op2    [ 1,-1]
    ///   4     [4, 0]                op1    [ 0, 0]   -> back to the start
    /// ```
    pub fn interleave(&self) -> Vec<u16> {
        let total: i64 = self.entries.iter().map(|e| i64::from(e.weight)).sum();
        let mut current = vec![0i64; self.entries.len()];
        let mut seq = Vec::with_capacity(total as usize);
        for _ in 0..total {
            for (c, e) in current.iter_mut().zip(&self.entries) {
                *c += i64::from(e.weight);
            }
            let mut pick = 0;
            for (i, c) in current.iter().enumerate() {
                if *c > current[pick] {
                    pick = i;
                }
            }
            current[pick] -= total;
            seq.push(pick as u16);
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
    fn interleave_is_exact_and_spread() {
        let m = mix("op1=3,op2=1");
        let seq = m.interleave();
        assert_eq!(paths_of(&m, &seq), ["/op1", "/op1", "/op2", "/op1"]);

        let m = mix("a=9,b=1");
        let seq = m.interleave();
        assert_eq!(seq.len(), 10);
        assert_eq!(seq.iter().filter(|&&i| i == 1).count(), 1);

        // Equal weights alternate rather than run in blocks.
        let m = mix("a=2,b=2");
        assert_eq!(m.interleave(), [0, 1, 0, 1]);
    }

    #[test]
    fn interleave_counts_match_weights_over_many_cycles() {
        let m = mix("a=5,b=3,c=2");
        let seq = m.interleave();
        let mut counts = [0u32; 3];
        for i in 0..1000 {
            counts[seq[i % seq.len()] as usize] += 1;
        }
        assert_eq!(counts, [500, 300, 200]);
    }

    #[test]
    fn single_path() {
        let m = Mix::single("/op1").unwrap();
        assert_eq!(m.interleave(), [0]);
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
