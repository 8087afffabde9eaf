//! Where each key of a YAML document sits, by field path (`nodes[0].workers` → line 14,
//! column 5). serde keeps no positions once it has built the types, so validation asks this
//! index, built from yaml-rust2's marked events over the same text.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use crate::error::Problem;

/// Field path → (line, column), both 1-based; and where each YAML document starts.
#[derive(Debug, Default)]
pub struct Spans {
    at: HashMap<String, (usize, usize)>,
    /// Where each document of the text starts (a topology file must hold one).
    documents: Vec<Marker>,
}

impl Spans {
    /// Indexes `src`, every document of it, in one pass. A text yaml-rust2 cannot parse
    /// yields an empty index (serde reports the syntax error itself).
    pub fn index(src: &str) -> Spans {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(src);
        if parser.load(&mut builder, true).is_err() {
            return Spans::default();
        }
        Spans { at: builder.at, documents: builder.documents }
    }

    /// The problem of a text holding more than one YAML document, at the line where the
    /// second one starts; `None` for a single document (or an empty index).
    pub fn second_document(&self) -> Option<Problem> {
        let second = self.documents.get(1)?;
        Some(Problem {
            path: String::new(),
            line: second.line().max(1),
            column: second.col() + 1,
            message: format!(
                "expected one YAML document, found {}: a second one starts here (remove this `---` \
                 and what follows, or put it in a file of its own)",
                self.documents.len()
            ),
        })
    }

    /// Position of `path`, or of its nearest indexed ancestor (a missing field points at its
    /// parent mapping).
    pub fn find(&self, path: &str) -> Option<(usize, usize)> {
        let mut p = path;
        loop {
            if let Some(pos) = self.at.get(p) {
                return Some(*pos);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

/// One open container while walking the event stream.
#[derive(Debug)]
enum Frame {
    /// A mapping: `key` is the key whose value comes next (None: expecting a key).
    Map { path: String, key: Option<String> },
    /// A sequence and the index its next item gets.
    Seq { path: String, next: usize },
}

#[derive(Debug, Default)]
struct Builder {
    stack: Vec<Frame>,
    at: HashMap<String, (usize, usize)>,
    documents: Vec<Marker>,
}

impl Builder {
    /// The path of the value about to start, advancing the parent's state; `None` when the
    /// event is a mapping key (recorded, not a value).
    fn value_path(&mut self, scalar: Option<&str>, mark: Marker) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                if scalar.is_some() {
                    self.at.entry(p.clone()).or_insert((mark.line(), mark.col() + 1));
                }
                Some(p)
            }
            Some(Frame::Map { path, key }) => match key.take() {
                Some(k) => Some(join(path, &k)),
                None => {
                    let k = scalar.unwrap_or_default().to_string();
                    let pos = (mark.line(), mark.col() + 1);
                    // A mapping sits where its first key does (a sequence item has no key).
                    self.at.entry(path.clone()).or_insert(pos);
                    self.at.insert(join(path, &k), pos);
                    *key = Some(k);
                    None
                }
            },
        }
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::DocumentStart => self.documents.push(mark),
            Event::Scalar(value, ..) => {
                self.value_path(Some(&value), mark);
            }
            Event::Alias(_) => {
                self.value_path(None, mark);
            }
            Event::MappingStart(..) => {
                if let Some(path) = self.value_path(None, mark) {
                    self.stack.push(Frame::Map { path, key: None });
                } else {
                    // A mapping used as a key: not part of any topology; keep the stack balanced.
                    self.stack.push(Frame::Map { path: String::from("?"), key: None });
                }
            }
            Event::SequenceStart(..) => {
                let path = self.value_path(None, mark).unwrap_or_else(|| "?".into());
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_keys_and_sequence_items() {
        let src = "a:\n  b: 1\nlist:\n  - name: x\n    n: 2\n  - name: y\n    n: 3\n";
        let s = Spans::index(src);
        assert_eq!(s.find("a"), Some((1, 1)));
        assert_eq!(s.find("a.b"), Some((2, 3)));
        assert_eq!(s.find("list[1].n"), Some((7, 5)));
        // A missing key points at its nearest ancestor.
        assert_eq!(s.find("list[1].missing"), Some((6, 5)));
    }

    #[test]
    fn a_second_document_is_found_with_its_line() {
        assert!(Spans::index("a: 1\nb: 2\n").second_document().is_none());
        assert!(Spans::index("---\na: 1\n").second_document().is_none());
        let p = Spans::index("a: 1\n---\nb: 2\n").second_document().unwrap();
        assert_eq!(p.line, 2, "{p:?}");
        assert!(p.message.contains("found 2"), "{p:?}");
    }

    #[test]
    fn flow_mappings_are_indexed() {
        let s = Spans::index("hc: { path: /h, interval_ms: 5 }\n");
        assert_eq!(s.find("hc.interval_ms"), Some((1, 17)));
    }
}
