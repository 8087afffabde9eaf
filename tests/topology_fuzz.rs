//! A property test over hostile edits: the committed `topology.yaml` mutated at random (bytes
//! flipped, deleted or inserted, lines duplicated or swapped, numbers replaced with extremes,
//! document markers and byte-order marks added). For every mutant:
//! - parsing never panics, and every problem carries a line and a column;
//! - whatever is accepted runs: it reads back equal from its own YAML, every child's own
//!   start-up checks pass on the arguments the lab would start it with (the rule "whatever
//!   `scalelab check` accepts must run"), and those arguments parse back into the same flags.
//!
//! The budget is fixed (`PROPTEST_CASES`, default 4000) so CI time stays bounded.

use std::path::Path;

use clap::Parser;
use proptest::prelude::*;
use scalelab::cli::{Cli, Command};
use scalelab_topology::Topology;

const BASE: &str = include_str!("../topology.yaml");

/// Values that probe bounds and types.
const EXTREMES: &[&str] = &[
    "0",
    "-1",
    "1e-300",
    "18446744073709551615",
    "4294967296",
    "1000000",
    "65535",
    "80",
    "0.001",
    "NaN",
    ".inf",
    "~",
    "[]",
    "{}",
    "\"/a b\"",
    "&a x",
    "*a",
    "---",
    "...",
    "\u{feff}",
    "'",
    "\"",
];

#[derive(Debug, Clone)]
enum Mutation {
    FlipByte { at: usize, value: u8 },
    Delete { at: usize, len: usize },
    Insert { at: usize, text: String },
    DuplicateLine { line: usize },
    SwapLines { a: usize, b: usize },
    ReplaceNumber { nth: usize, with: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, value)| Mutation::FlipByte { at, value }),
        (any::<usize>(), 1usize..20).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), prop_oneof!["[ -~]{0,12}", "\\PC{0,4}", Just("\n---\n".to_string())])
            .prop_map(|(at, text)| Mutation::Insert { at, text }),
        any::<usize>().prop_map(|line| Mutation::DuplicateLine { line }),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines { a, b }),
        (any::<usize>(), 0..EXTREMES.len()).prop_map(|(nth, with)| Mutation::ReplaceNumber { nth, with }),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len().max(1);
    match m {
        Mutation::FlipByte { at, value } => {
            if !bytes.is_empty() {
                bytes[at % len] = *value;
            }
        }
        Mutation::Delete { at, len: n } => {
            let start = at % len;
            let end = (start + n).min(bytes.len());
            bytes.drain(start.min(end)..end);
        }
        Mutation::Insert { at, text } => {
            let at = at % (bytes.len() + 1);
            bytes.splice(at..at, text.bytes());
        }
        Mutation::DuplicateLine { line } | Mutation::SwapLines { a: line, .. } => {
            let text = String::from_utf8_lossy(bytes).into_owned();
            let mut lines: Vec<&str> = text.split('\n').collect();
            let i = line % lines.len();
            match m {
                Mutation::SwapLines { b, .. } => {
                    let j = b % lines.len();
                    lines.swap(i, j);
                }
                _ => lines.insert(i, lines[i]),
            }
            *bytes = lines.join("\n").into_bytes();
        }
        Mutation::ReplaceNumber { nth, with } => {
            let text = String::from_utf8_lossy(bytes).into_owned();
            let numbers: Vec<(usize, usize)> = number_spans(&text);
            if !numbers.is_empty() {
                let (s, e) = numbers[nth % numbers.len()];
                *bytes = format!("{}{}{}", &text[..s], EXTREMES[*with], &text[e..]).into_bytes();
            }
        }
    }
}

/// Byte ranges of the runs of ASCII digits in `text`.
fn number_spans(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices().chain(std::iter::once((text.len(), ' '))) {
        match (c.is_ascii_digit(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(4000),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_mutant_is_placed_or_runs(mutations in proptest::collection::vec(mutation(), 1..4)) {
        let mut bytes = BASE.as_bytes().to_vec();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        match Topology::from_bytes(&bytes) {
            Ok(t) => {
                prop_assert_eq!(&Topology::from_yaml(&t.to_yaml()).unwrap(), &t);
                if let Err(e) = scalelab_lab::preflight(&t) {
                    prop_assert!(false, "accepted but would not run: {:#}\n{}", e, String::from_utf8_lossy(&bytes));
                }
                for r in t.replicas() {
                    let args = scalelab_lab::node_args(&t, &r, Path::new("/lab/topology.yaml"));
                    let argv = ["scalelab", "node"].into_iter().map(String::from).chain(args.to_args());
                    match Cli::try_parse_from(argv).map(|c| c.command) {
                        Ok(Command::Node(parsed)) => prop_assert_eq!(parsed, args),
                        other => prop_assert!(false, "{:?}", other.err()),
                    }
                }
            }
            Err(e) => {
                prop_assert!(!e.problems().is_empty());
                for p in e.problems() {
                    prop_assert!(p.line >= 1 && p.column >= 1, "no position: {:?}", p);
                    prop_assert!(!p.message.is_empty());
                }
            }
        }
    }
}
