//! `compare.html`: the two runs on the same charts, one per metric, and the table of every
//! matching point; the unmatched points and the thresholds' outcome named above them. The
//! numbers are formatted here; the template is `templates/compare.html`.

use anyhow::Context;
use askama::Template;

use super::chart;
use super::judge::{Metric, Verdict};
use super::pair::Comparison;
use crate::report::format;
use crate::results::Results;

/// The page.
#[derive(Template)]
#[template(path = "compare.html")]
struct Page {
    a: String,
    b: String,
    /// What each run was: machine, load, when.
    a_facts: String,
    b_facts: String,
    /// One (id, title, svg) per metric.
    charts: Vec<(String, String, String)>,
    rows: Vec<Row>,
    only_a: Vec<String>,
    only_b: Vec<String>,
    notes: Vec<String>,
    /// One line per threshold crossed (empty: none).
    failures: Vec<String>,
    /// The significance level of the test.
    alpha: f64,
}

/// One metric of one matching point.
struct Row {
    series: String,
    point: String,
    metric: String,
    a: String,
    b: String,
    ratio: String,
    /// The Mann–Whitney U test's p, and the rounds it counted (`4+4`).
    p: String,
    rounds: String,
    verdict: String,
    /// `better`, `worse`, `noise` or `few`: the cell's CSS class.
    class: String,
    notes: String,
}

/// The page for `c`, with `names` for A and B.
pub fn render(c: &Comparison, a: &Results, b: &Results, names: &(String, String)) -> anyhow::Result<String> {
    let short = (super::short(&names.0), super::short(&names.1));
    let charts = Metric::ALL
        .into_iter()
        .map(|m| {
            let id = format!("chart-compare-{}", m.name().replace('.', ""));
            let svg = chart::draw(c, m, (&short.0, &short.1))
                .with_context(|| format!("drawing the {} chart", m.name()))?;
            Ok((id, m.title().to_string(), svg))
        })
        .collect::<anyhow::Result<_>>()?;
    let facts = |r: &Results| {
        let machine = r
            .machine
            .as_ref()
            .map_or(format!("{} cores", r.cores), |m| format!("{} cores of {}", m.cores, m.cpu_model));
        format!(
            "{machine}, {} runner; {}; {} rounds of {} s; {}",
            r.runner,
            r.load.target,
            r.load.rounds,
            format::n(r.load.duration_s),
            r.started
        )
    };
    let mut rows = Vec::new();
    for p in &c.pairs {
        for (i, cell) in p.cells.iter().enumerate() {
            let value = |v: Option<f64>| match (v, cell.metric) {
                (None, _) => "-".to_string(),
                (Some(x), Metric::Rps) => format::rps(x),
                (Some(x), _) => format::ms(x),
            };
            let span = |s: Option<(f64, f64)>| {
                s.filter(|(lo, hi)| hi > lo)
                    .map(|(lo, hi)| {
                        let f = |x| if cell.metric == Metric::Rps { format::rps(x) } else { format::ms(x) };
                        format!(" ({}–{})", f(lo), f(hi))
                    })
                    .unwrap_or_default()
            };
            rows.push(Row {
                series: if i == 0 { p.series.clone() } else { String::new() },
                point: if i == 0 { p.point.clone() } else { String::new() },
                metric: cell.metric.name().to_string(),
                a: format!("{}{}", value(cell.a), span(cell.a_span)),
                b: format!("{}{}", value(cell.b), span(cell.b_span)),
                ratio: cell.change.map_or("-".into(), |ch| format!("{:.2}", ch + 1.0)),
                p: cell.p.map_or("-".into(), |p| format!("{p:.3}")),
                rounds: format!("{}+{}", cell.rounds.0, cell.rounds.1),
                verdict: cell.verdict.map_or("no measurement", Verdict::name).to_string(),
                class: match cell.verdict {
                    Some(Verdict::Better) => "better",
                    Some(Verdict::Worse) => "worse",
                    Some(Verdict::TooFewRounds) => "few",
                    _ => "noise",
                }
                .to_string(),
                notes: if i == 0 { p.notes.join("; ") } else { String::new() },
            });
        }
    }
    let page = Page {
        a: names.0.clone(),
        b: names.1.clone(),
        a_facts: facts(a),
        b_facts: facts(b),
        charts,
        rows,
        only_a: c.only_a.clone(),
        only_b: c.only_b.clone(),
        notes: c.notes.clone(),
        failures: c.crossings.iter().map(super::crossing).collect(),
        alpha: super::mann_whitney::ALPHA,
    };
    page.render().context("filling templates/compare.html")
}
