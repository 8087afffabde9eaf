//! Reading as much of a broken topology as can be read, so that one `scalelab check` lists
//! every problem instead of one per run.
//!
//! serde stops at the first problem it meets. To go on, the YAML value is repaired where serde
//! says it failed, and read again, until it reads:
//! - an unknown field is dropped (it meant nothing);
//! - a value of the wrong type, or an unknown enum variant, is dropped, so the field takes its
//!   default (a required field then reads as missing, silently: its problem is said already);
//! - a missing required field is filled in from [`FILLER`].
//!
//! The file's structure stays described once, by the serde types: field names, variants and
//! types all come from serde's own errors. [`FILLER`] is a sample topology of the required
//! fields only, whose values stand in for unreadable ones (a unit test keeps it readable; were
//! it behind the types, the repair would drop the whole struct around the gap instead).
//!
//! A value dropped or filled in is *unread*. The rules of [`crate::validate`] then run on the
//! repaired topology, and [`Salvage::trusts`] keeps only the problems they find that cannot
//! come from an unread value.
//!
//! A YAML syntax error ends the reading: the longest prefix of the text, cut at a line, that
//! parses is read instead, and problems past it are not listed (they may not be problems).

use serde_path_to_error::Segment;
use serde_yaml::Value;

use crate::error::Problem;
use crate::model::Topology;
use crate::spans::Spans;

/// The most repairs one reading makes; past them it stops and says so (a file of thousands of
/// unknown fields is refused quickly, not read thousands of times).
pub const MAX_REPAIRS: usize = 100;

/// Prefixes of the text tried after a syntax error, at most (each is one parse).
const MAX_PREFIXES: usize = 24;

/// Stand-ins for the required fields: a value the types accept wherever a required one is
/// missing or unreadable (sequence items are looked up at index 0). Out-of-the-way ports and
/// names, so a stand-in does not clash with the file's own values.
pub const FILLER: &str = "\
balancer: { listen: 127.0.0.1:65001, admin: 127.0.0.1:65002 }
nodes:
  - name: unread
    replicas: 1
    workers: 1
    port: 65010
    autoscale: { max_replicas: 1, target: 0.5 }
";

/// What could be read of a text, and what could not.
#[derive(Debug)]
pub struct Salvage {
    /// The topology read, repaired where needed; `None` when even repairs did not make it
    /// readable.
    pub topology: Option<Topology>,
    /// The syntax and structure problems found (unknown fields and variants, wrong types,
    /// missing fields), each placed.
    pub problems: Vec<Problem>,
    /// Where each key of the part read sits.
    pub spans: Spans,
    /// Field paths whose values were dropped or filled in (`""` is the whole document).
    unread: Vec<String>,
    /// After a syntax error: the first line not read.
    read_to: Option<usize>,
}

impl Salvage {
    /// Whether the text read as it is, with nothing repaired.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() && self.unread.is_empty() && self.read_to.is_none()
    }

    /// Whether a problem the rules found on the repaired topology is one of the file's own:
    /// it lies in the part read, and neither sits at, under or over an unread value nor names
    /// one (an unread value's stand-in could have caused it).
    pub fn trusts(&self, p: &Problem) -> bool {
        if self.read_to.is_some_and(|line| p.line >= line) {
            return false;
        }
        !self.unread.iter().any(|u| touches(p, u))
    }
}

/// Reads `src` as far as it can; `spans` indexes `src`.
pub fn read(src: &str, spans: Spans) -> Salvage {
    let mut problems = Vec::new();
    let (mut value, spans, read_to) = match serde_yaml::from_str::<Value>(src) {
        Ok(value) => (value, spans, None),
        Err(e) => {
            let (line, column, message) = syntax_error(&e, src);
            let (prefix, value) = readable_prefix(src, line);
            let lines = prefix.lines().count();
            let rest = match lines {
                0 => "nothing before it could be read either, so no other problem is listed".to_string(),
                n => format!("the rest of the file, from line {} on, could not be read, so problems there are not listed", n + 1),
            };
            problems.push(Problem {
                path: String::new(),
                line,
                column,
                message: format!("YAML syntax: {message}; {rest}"),
            });
            (value, Spans::index(prefix), Some(lines + 1))
        }
    };
    let mut repair = Repair {
        filler: serde_yaml::from_str(FILLER).expect("the filler is YAML"),
        spans: &spans,
        cut: read_to.is_some(),
        problems,
        unread: Vec::new(),
        filled: Vec::new(),
    };
    let topology = repair.run(&mut value);
    let Repair { problems, unread, .. } = repair;
    Salvage { topology, problems, spans, unread, read_to }
}

/// One step of a field path.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
    /// A key that is not a string (serde cannot name it).
    Other,
}

/// `nodes[1].workers`, as serde_path_to_error writes it and [`Spans`] indexes it.
fn path_string(steps: &[Step]) -> String {
    let mut out = String::new();
    for s in steps {
        match s {
            Step::Key(k) if out.is_empty() => out.push_str(k),
            Step::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
            Step::Other => out.push_str(if out.is_empty() { "?" } else { ".?" }),
        }
    }
    out
}

/// The repair loop's state.
struct Repair<'a> {
    filler: Value,
    spans: &'a Spans,
    /// The text was cut at a syntax error: a missing field or an empty value may be the cut's.
    cut: bool,
    problems: Vec<Problem>,
    unread: Vec<String>,
    /// Paths already filled in: filling one twice means the filler no longer fits the types.
    filled: Vec<String>,
}

impl Repair<'_> {
    /// Reads `value` as a topology, repairing it after each error, at most [`MAX_REPAIRS`]
    /// times.
    fn run(&mut self, value: &mut Value) -> Option<Topology> {
        for _ in 0..MAX_REPAIRS {
            let error = match serde_path_to_error::deserialize::<_, Topology>(&*value) {
                Ok(topology) => return Some(topology),
                Err(e) => e,
            };
            let steps: Vec<Step> = error
                .path()
                .iter()
                .filter_map(|s| match s {
                    Segment::Map { key } => Some(Step::Key(key.clone())),
                    Segment::Seq { index } => Some(Step::Index(*index)),
                    Segment::Enum { .. } => None,
                    Segment::Unknown => Some(Step::Other),
                })
                .collect();
            let message = error.into_inner().to_string();
            let repaired = match missing_field(&message) {
                Some(field) => {
                    let mut at = steps.clone();
                    at.push(Step::Key(field.to_string()));
                    let said = self.unread.contains(&path_string(&at));
                    if !self.cut && !said {
                        self.report(&steps, message);
                    }
                    self.unread.push(path_string(&at));
                    self.fill(value, &at) || self.discard(value, &steps)
                }
                None => {
                    let empty_at_cut = self.cut && matches!(get(value, &steps), Some(Value::Null));
                    if !empty_at_cut {
                        self.report(&steps, message.clone());
                    }
                    if !message.starts_with("unknown field") {
                        self.unread.push(path_string(&steps));
                    }
                    self.discard(value, &steps)
                }
            };
            if !repaired {
                return None;
            }
        }
        let (line, column) = self.problems.last().map_or((1, 1), |p| (p.line, p.column));
        self.problems.push(Problem {
            path: String::new(),
            line,
            column,
            message: format!(
                "stopped reading after {MAX_REPAIRS} problems of structure; fix these and check again"
            ),
        });
        None
    }

    fn report(&mut self, steps: &[Step], message: String) {
        let path = path_string(steps);
        let (line, column) = self.spans.find(&path).unwrap_or((1, 1));
        self.problems.push(Problem { path, line, column, message });
    }

    /// Takes the value at `steps` out of the way: drops it from its mapping, or fills a
    /// sequence item or the whole document in; failing that, the value around it. `false`
    /// when nothing is left to take.
    fn discard(&mut self, value: &mut Value, steps: &[Step]) -> bool {
        let Some((last, parent)) = steps.split_last() else {
            return self.fill(value, steps);
        };
        let removed = match (last, get_mut(value, parent)) {
            (Step::Key(k), Some(Value::Mapping(m))) => m.remove(k.as_str()).is_some(),
            (Step::Other, Some(Value::Mapping(m))) => {
                let key = m.keys().find(|k| !k.is_string()).cloned();
                key.is_some_and(|k| m.remove(&k).is_some())
            }
            (Step::Index(_), _) => self.fill(value, steps),
            _ => false,
        };
        if removed {
            return true;
        }
        self.unread.push(path_string(parent));
        self.discard(value, parent)
    }

    /// Puts the filler's value for `steps` there (sequence indices read as 0). `false` when
    /// the filler has none, or it was put there before.
    fn fill(&mut self, value: &mut Value, steps: &[Step]) -> bool {
        let path = path_string(steps);
        if self.filled.contains(&path) {
            return false;
        }
        let generic: Vec<Step> =
            steps.iter().map(|s| if let Step::Index(_) = s { Step::Index(0) } else { s.clone() }).collect();
        let Some(stand_in) = get(&self.filler, &generic).cloned() else {
            return false;
        };
        let put = match steps.split_last() {
            None => {
                *value = stand_in;
                true
            }
            Some((last, parent)) => match (last, get_mut(value, parent)) {
                (Step::Key(k), Some(v @ Value::Null)) => {
                    // An empty document or section: a mapping to fill.
                    let mut m = serde_yaml::Mapping::new();
                    m.insert(Value::String(k.clone()), stand_in);
                    *v = Value::Mapping(m);
                    true
                }
                (Step::Key(k), Some(Value::Mapping(m))) => {
                    m.insert(Value::String(k.clone()), stand_in);
                    true
                }
                (Step::Index(i), Some(Value::Sequence(s))) if *i < s.len() => {
                    s[*i] = stand_in;
                    true
                }
                _ => false,
            },
        };
        if put {
            self.filled.push(path.clone());
            self.unread.push(path);
        }
        put
    }
}

/// The field serde says is missing.
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// The value at `steps` (through tags).
fn get<'v>(mut value: &'v Value, steps: &[Step]) -> Option<&'v Value> {
    for step in steps {
        while let Value::Tagged(t) = value {
            value = &t.value;
        }
        value = match (step, value) {
            (Step::Key(k), Value::Mapping(m)) => m.get(k.as_str())?,
            (Step::Index(i), Value::Sequence(s)) => s.get(*i)?,
            _ => return None,
        };
    }
    Some(value)
}

fn get_mut<'v>(mut value: &'v mut Value, steps: &[Step]) -> Option<&'v mut Value> {
    for step in steps {
        while let Value::Tagged(t) = value {
            value = &mut t.value;
        }
        value = match (step, value) {
            (Step::Key(k), Value::Mapping(m)) => m.get_mut(k.as_str())?,
            (Step::Index(i), Value::Sequence(s)) => s.get_mut(*i)?,
            _ => return None,
        };
    }
    while let Value::Tagged(t) = value {
        value = &mut t.value;
    }
    Some(value)
}

/// serde_yaml's syntax error: line, column (its own, or the end of the text when it has none,
/// e.g. an empty document) and the message without the position it appends.
fn syntax_error(e: &serde_yaml::Error, src: &str) -> (usize, usize, String) {
    let mut message = e.to_string();
    let Some(at) = e.location() else {
        let line = src.lines().count().max(1);
        let column = src.lines().last().map_or(0, |l| l.chars().count()) + 1;
        return (line, column, message);
    };
    let suffix = format!(" at line {} column {}", at.line(), at.column());
    if let Some(pos) = message.find(&suffix) {
        message.replace_range(pos..pos + suffix.len(), "");
    }
    (at.line(), at.column(), message)
}

/// The longest prefix of `src` that ends before line `error_line` at a line break and parses,
/// with its value: the lines just before the error are tried one by one, then earlier
/// top-level keys (a cut inside a flow collection only parses before it starts). Empty (a
/// null value) when none does within [`MAX_PREFIXES`] tries.
fn readable_prefix(src: &str, error_line: usize) -> (&str, Value) {
    let starts: Vec<usize> = std::iter::once(0).chain(src.match_indices('\n').map(|(i, _)| i + 1)).collect();
    let last = error_line.saturating_sub(1).min(starts.len() - 1);
    let mut tries = 0;
    for line in (1..=last).rev() {
        let prefix = &src[..starts[line]];
        let top_level = src[starts[line]..].starts_with(|c: char| !c.is_whitespace() && c != '#');
        if tries >= MAX_PREFIXES / 2 && !top_level {
            continue;
        }
        tries += 1;
        if let Ok(value) = serde_yaml::from_str::<Value>(prefix) {
            return (prefix, value);
        }
        if tries >= MAX_PREFIXES {
            break;
        }
    }
    ("", Value::Null)
}

/// Whether problem `p` could come from the unread value at `unread`: it is at, under or over
/// it (not the document itself), names it (`balancer.listen`, `workload.max_queue`), or, within
/// the same item or section, names its field (`metric`, `cpus`, `min_replicas`). Other rules
/// do not read it; a stand-in's out-of-the-way values keep them from clashing with it.
fn touches(p: &Problem, unread: &str) -> bool {
    if unread.is_empty() {
        return true;
    }
    let path = p.path.as_str();
    if within(path, unread) || (!path.is_empty() && within(unread, path)) || mentions(&p.message, unread) {
        return true;
    }
    let field = unread.rsplit_once('.').map_or(unread, |(_, f)| f);
    !field.ends_with(']') && scope(path) == scope(unread) && mentions(&p.message, field)
}

/// Whether `path` is `of` or lies under it.
fn within(path: &str, of: &str) -> bool {
    path.strip_prefix(of).is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// The item (`nodes[0]`) or top-level section (`balancer`) that `path` belongs to.
fn scope(path: &str) -> &str {
    match path.find(']') {
        Some(i) => &path[..=i],
        None => path.split(['.', '[']).next().unwrap_or(path),
    }
}

/// Whether `text` names `word` on its own (not as part of a longer name or path).
fn mentions(text: &str, word: &str) -> bool {
    let part_of_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(|c| part_of_name(c) || c == '.')
            && !after.is_some_and(|c| part_of_name(c) || (c == '[' && !word.ends_with(']')))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(src: &str) -> Salvage {
        read(src, Spans::index(src))
    }

    fn problem(path: &str, message: &str) -> Problem {
        Problem { path: path.into(), line: 1, column: 1, message: message.into() }
    }

    #[test]
    fn the_filler_reads_as_a_topology() {
        let value: Value = serde_yaml::from_str(FILLER).unwrap();
        serde_path_to_error::deserialize::<_, Topology>(&value).unwrap();
    }

    #[test]
    fn a_clean_text_needs_no_repair() {
        let s = read_text("balancer: { listen: 127.0.0.1:8080, admin: 127.0.0.1:9090 }\nnodes: []\n");
        assert!(s.is_clean() && s.topology.is_some(), "{s:?}");
    }

    #[test]
    fn every_structure_problem_is_found_and_a_misspelt_field_reads_as_missing() {
        //   line 2: wrong type of a required field (filled in; its absence is not said twice)
        //   line 5: an unknown field, an unknown variant (a defaulted field: dropped), and
        //           the field the unknown one misspells, missing (serde checks that last)
        let s = read_text(
            "balancer:\n  listen: nowhere\n  admin: 127.0.0.1:9090\n\
             nodes:\n  - { name: a, replicas: 1, wrkers: 1, port: 8081, distribution: spread }\n",
        );
        let found: Vec<(&str, usize, &str)> =
            s.problems.iter().map(|p| (p.path.as_str(), p.line, &p.message[..14])).collect();
        assert_eq!(
            found,
            [
                ("balancer.listen", 2, "invalid socket"),
                ("nodes[0].wrkers", 5, "unknown field "),
                ("nodes[0].distribution", 5, "unknown varian"),
                ("nodes[0]", 5, "missing field "),
            ]
        );
        let t = s.topology.as_ref().expect("read, with stand-ins");
        assert_eq!((t.balancer.listen.port(), t.nodes[0].workers), (65001, 1));
        for unread in ["balancer.listen", "nodes[0].workers", "nodes[0].distribution"] {
            assert!(s.unread.iter().any(|u| u == unread), "{unread}: {:?}", s.unread);
        }
        assert!(!s.unread.iter().any(|u| u == "nodes[0].wrkers"), "an unknown field meant nothing");
    }

    #[test]
    fn a_whole_item_of_the_wrong_type_is_filled_in() {
        let s = read_text("balancer: { listen: 127.0.0.1:8080, admin: 127.0.0.1:9090 }\nnodes: [5]\n");
        assert_eq!(s.problems.len(), 1, "{:?}", s.problems);
        assert!(s.problems[0].message.contains("expected struct NodeGroup"), "{:?}", s.problems);
        assert_eq!(s.topology.unwrap().nodes[0].name, "unread");
        assert!(s.unread.contains(&"nodes[0]".to_string()), "{:?}", s.unread);
    }

    #[test]
    fn not_a_mapping_at_all_is_one_problem() {
        let s = read_text("just words\n");
        assert_eq!(s.problems.len(), 1, "{:?}", s.problems);
        assert!(!s.trusts(&problem("nodes[0].workers", "anything")), "nothing was read");
    }

    #[test]
    fn a_syntax_error_reads_the_lines_before_it() {
        //   line 6 opens a flow sequence that never closes: lines 1 to 5 are read
        let s = read_text(
            "balancer:\n  listen: 127.0.0.1:8080\n  admin: 127.0.0.1:9090\n\
             nodes:\n  - name: a\n    workers: [1\n    port: 8081\n",
        );
        assert_eq!(s.problems.len(), 1, "the group's missing fields may lie past the cut: {:?}", s.problems);
        assert!(s.problems[0].message.contains("from line 6 on, could not be read"), "{:?}", s.problems);
        let t = s.topology.as_ref().unwrap();
        assert_eq!((t.nodes[0].name.as_str(), t.balancer.listen.port()), ("a", 8080));
        assert!(!s.trusts(&Problem { line: 6, ..problem("x", "y") }), "past the cut");
        assert!(s.trusts(&Problem { line: 3, ..problem("balancer.admin", "y") }));
    }

    #[test]
    fn repairs_are_bounded() {
        let fields: String = (0..2 * MAX_REPAIRS).map(|i| format!("  x{i}: 1\n")).collect();
        let s = read_text(&format!("balancer:\n{fields}"));
        assert_eq!(s.problems.len(), MAX_REPAIRS + 1);
        assert!(s.problems.last().unwrap().message.starts_with("stopped reading after 100"));
        assert!(s.topology.is_none());
    }

    #[test]
    fn problems_near_an_unread_value_are_not_trusted() {
        let cases = [
            // (unread, problem path, message, trusted)
            ("nodes[0].workers", "nodes[0].workers", "expected 1 to 64 workers", false),
            ("nodes[0].workers", "nodes", "expected at most 256 processes", false),
            ("nodes[0]", "nodes[0].autoscale.target", "anything", false),
            ("nodes[0].autoscale.metric", "nodes[0].autoscale.target", "for metric cpu", false),
            ("nodes[0].cpus", "nodes[0].autoscale.metric", "expected `cpus` on this group", false),
            ("nodes[1].cpus", "nodes[0].autoscale.metric", "expected `cpus` on this group", true),
            ("nodes[0]", "nodes[1].port", "clashes with nodes[0] (8081..=8082)", false),
            ("nodes[0].workers", "nodes[1].port", "clashes with nodes[0] (8081..=8082)", true),
            ("nodes[1]", "nodes[11].port", "clashes with nodes[10] (8081..=8082)", true),
            ("workload.max_queue", "balancer.upstream.read_timeout_ms", "(workload.max_queue + 1)", false),
            ("balancer.listen", "nodes[0].port", "apart from balancer.listen (127.0.0.1:8080)", false),
            ("balancer.algorithm", "balancer.threads", "expected 1 to 8 threads", true),
            ("nodes[0].distribution", "nodes[0].workers", "expected 1 to 64 workers, found 0", true),
        ];
        for (unread, path, message, trusted) in cases {
            let s = Salvage {
                topology: None,
                problems: Vec::new(),
                spans: Spans::default(),
                unread: vec![unread.into()],
                read_to: None,
            };
            assert_eq!(s.trusts(&problem(path, message)), trusted, "{unread} / {path}: {message}");
        }
    }
}
