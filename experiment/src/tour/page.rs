//! tour.html's data: every step's title, what it ran, what it showed and its charts, already
//! formatted for `templates/tour.html`.

use std::time::Duration;

use anyhow::Context;
use askama::Template;

use super::setup::Pace;
use super::{Step, STEPS};

/// The whole page, rendered by askama from `templates/tour.html`.
#[derive(Template)]
#[template(path = "tour.html")]
struct Page<'a> {
    version: &'static str,
    /// `full` or `quick`, how long it took, and when.
    facts: String,
    steps: &'a [Step],
    /// The steps not run (the tour stopped early): their titles.
    missing: Vec<String>,
}

/// The page for `steps` (the ones done, in order).
pub fn render(steps: &[Step], pace: Pace, took: Duration) -> anyhow::Result<String> {
    let missing = STEPS.iter().skip(steps.len()).map(|(_, title)| title.to_string()).collect();
    let facts = format!(
        "{} mode, {} on {} core(s), {}",
        if pace.quick { "quick" } else { "full" },
        humantime::format_duration(Duration::from_secs(took.as_secs())),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
    );
    Page { version: env!("CARGO_PKG_VERSION"), facts, steps, missing }
        .render()
        .context("filling templates/tour.html")
}
