//! What goes wrong with a topology, said so a person can fix it: the file, the field path
//! (`nodes[0].workers`), the line and column, and what was expected.

use std::fmt;
use std::path::PathBuf;

/// One problem in a topology document.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Dotted field path, e.g. `nodes[1].cpus`; empty for the document as a whole.
    pub path: String,
    /// 1-based line of the offending key or value (of its nearest ancestor that has one, or
    /// of the end of the text).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {} column {}: ", self.line, self.column)?;
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why a topology could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The file could not be read.
    #[error("cannot read topology {}: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },
    /// The document was read but is not a valid topology; every problem found is listed.
    #[error("{}", render_invalid(file.as_ref(), problems))]
    Invalid { file: Option<PathBuf>, problems: Vec<Problem> },
}

impl TopologyError {
    /// The problems, if the document was invalid (empty for I/O errors).
    pub fn problems(&self) -> &[Problem] {
        match self {
            TopologyError::Invalid { problems, .. } => problems,
            TopologyError::Io { .. } => &[],
        }
    }

    /// Attaches the file name the document came from.
    pub fn in_file(self, path: PathBuf) -> TopologyError {
        match self {
            TopologyError::Invalid { problems, .. } => TopologyError::Invalid { file: Some(path), problems },
            io => io,
        }
    }
}

fn render_invalid(file: Option<&PathBuf>, problems: &[Problem]) -> String {
    let name = file.map_or_else(|| "topology".to_string(), |p| p.display().to_string());
    let mut out = format!(
        "{name} is invalid ({} problem{}):",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        out.push_str(&format!("\n  {name}: {p}"));
    }
    out
}
