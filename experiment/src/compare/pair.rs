//! Two runs side by side: checks that they can be compared at all (the same machine, the same
//! workload), then pairs their points by series and value, naming every point found in only
//! one of them, and judges each pair metric by metric.

use std::collections::BTreeMap;

use scalelab_topology::{Topology, Workload};

use super::judge::{self, Metric, Threshold, Verdict};
use super::mann_whitney;
use crate::report::format;
use crate::results::{Point, Results, Series};

/// Why two runs cannot be compared; each names what differs, in both runs.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Mismatch {
    #[error("A and B ran on different machines (A: {a}; B: {b}): their numbers are not comparable")]
    Machine { a: String, b: String },
    #[error("A and B offered different workloads: {what} is {a} in A and {b} in B")]
    Load { what: &'static str, a: String, b: String },
    #[error("{point}: A's points ran workload {a}, B's {b}: the requests cost differently")]
    Workload { point: String, a: String, b: String },
    #[error("{point}: cannot read the topology {run} recorded for it: {why}")]
    Topology { point: String, run: &'static str, why: String },
    #[error("no point of A matches a point of B (A has {a}; B has {b})")]
    NothingInCommon { a: String, b: String },
}

/// One metric of one pair of points.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub metric: Metric,
    /// The median of each run's rounds (benchstat's summary); `None` for a latency where
    /// nothing completed.
    pub a: Option<f64>,
    pub b: Option<f64>,
    /// The rounds' [lowest, highest] of each run.
    pub a_span: Option<(f64, f64)>,
    pub b_span: Option<(f64, f64)>,
    /// B / A − 1 of the medians; `None` without both values or when A is 0.
    pub change: Option<f64>,
    /// The Mann–Whitney U test's two-sided p over the rounds; `None` without both.
    pub p: Option<f64>,
    /// The rounds counted in A and in B.
    pub rounds: (usize, usize),
    /// `None` without both values.
    pub verdict: Option<Verdict>,
    /// Which way B moved, when significantly.
    pub moved: Option<bool>,
}

/// A pair of points that match.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    /// The series' title (`load at distribution=shared`).
    pub series: String,
    /// The point (`load=0.9`, `least_conn`).
    pub point: String,
    pub cells: Vec<Cell>,
    /// Differences worth a note: a different offered rate, nothing completed.
    pub notes: Vec<String>,
}

/// A `--fail-if` crossed at a pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Crossing {
    pub threshold: Threshold,
    pub series: String,
    pub point: String,
    pub change: f64,
    /// The test's p (at most α) and the rounds it counted in A and B.
    pub p: f64,
    pub rounds: (usize, usize),
}

/// Everything `scalelab compare` reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub pairs: Vec<Pair>,
    /// `series: point` of the points only A has, and only B has.
    pub only_a: Vec<String>,
    pub only_b: Vec<String>,
    /// Differences between the runs that do not stop the comparison (rounds, durations).
    pub notes: Vec<String>,
    pub crossings: Vec<Crossing>,
}

/// A point's key within its series: its choice's name or its value.
fn point_key(s: &Series, p: &Point) -> String {
    match &p.label {
        Some(name) => format!("{}={name}", s.vary),
        None => format!("{}={}", s.vary, format::n(p.value)),
    }
}

/// Compares `a` with `b`, or says why they cannot be compared.
pub fn compare(a: &Results, b: &Results, thresholds: &[Threshold]) -> Result<Comparison, Mismatch> {
    check_machines(a, b)?;
    check_loads(a, b)?;
    let mut notes = Vec::new();
    let index = |r: &Results| -> BTreeMap<(String, String), (usize, usize)> {
        let mut out = BTreeMap::new();
        for (i, s) in r.series.iter().enumerate() {
            for (j, p) in s.points.iter().enumerate() {
                out.entry((s.title(), point_key(s, p))).or_insert((i, j));
            }
        }
        out
    };
    let (ia, ib) = (index(a), index(b));
    let name = |(s, p): &(String, String)| format!("{s}: {p}");
    let only_a: Vec<String> = ia.keys().filter(|k| !ib.contains_key(*k)).map(name).collect();
    let only_b: Vec<String> = ib.keys().filter(|k| !ia.contains_key(*k)).map(name).collect();
    let mut pairs = Vec::new();
    // In A's order, so the table reads as A's report does.
    for (i, s) in a.series.iter().enumerate() {
        for (j, pa) in s.points.iter().enumerate() {
            let key = (s.title(), point_key(s, pa));
            let (Some(&(ai, aj)), Some(&(bi, bj))) = (ia.get(&key), ib.get(&key)) else { continue };
            if (ai, aj) != (i, j) {
                continue; // a repeated key: the first one stands
            }
            let pb = &b.series[bi].points[bj];
            check_workload(&name(&key), pa, pb)?;
            pairs.push(pair(key.0, key.1, pa, pb));
        }
    }
    if pairs.is_empty() {
        let list = |r: &Results| {
            let all: Vec<String> =
                r.series.iter().map(|s| format!("{} ({} points)", s.title(), s.points.len())).collect();
            if all.is_empty() {
                "no points".to_string()
            } else {
                all.join(", ")
            }
        };
        return Err(Mismatch::NothingInCommon { a: list(a), b: list(b) });
    }
    if a.load.rounds != b.load.rounds || a.load.duration_s != b.load.duration_s {
        notes.push(format!(
            "A measured {} rounds of {} s per point, B {} of {} s: their spreads differ in width",
            a.load.rounds,
            format::n(a.load.duration_s),
            b.load.rounds,
            format::n(b.load.duration_s)
        ));
    }
    notes.extend(too_few_rounds(&pairs));
    let crossings = pairs
        .iter()
        .flat_map(|p| {
            p.cells.iter().flat_map(move |c| {
                thresholds.iter().filter(move |t| t.metric == c.metric).filter_map(move |t| {
                    let change = c.change?;
                    t.crossed(change, c.moved).then(|| Crossing {
                        threshold: *t,
                        series: p.series.clone(),
                        point: p.point.clone(),
                        change,
                        p: c.p.unwrap_or(1.0),
                        rounds: c.rounds,
                    })
                })
            })
        })
        .collect();
    Ok(Comparison { pairs, only_a, only_b, notes, crossings })
}

/// The note when some metric had too few rounds for any difference to be significant: the
/// smallest p its rounds allow, and how many rounds a side can reach α.
fn too_few_rounds(pairs: &[Pair]) -> Option<String> {
    let few = pairs.iter().flat_map(|p| &p.cells).filter(|c| c.verdict == Some(Verdict::TooFewRounds));
    let (n1, n2) = few.map(|c| c.rounds).max_by_key(|&(x, y)| x.min(y))?;
    let need = mann_whitney::rounds_needed(mann_whitney::ALPHA);
    Some(format!(
        "too few rounds to tell: with {n1} round(s) in A and {n2} in B, the smallest p a Mann–Whitney U \
         test can give is {}, above α = {}, so no difference can be significant however large; \
         run at least {need} rounds a side (--rounds {need}) to judge",
        format::sig3(mann_whitney::min_p(n1, n2)),
        mann_whitney::ALPHA
    ))
}

/// Judges two matching points metric by metric.
fn pair(series: String, point: String, a: &Point, b: &Point) -> Pair {
    let cells = Metric::ALL
        .into_iter()
        .map(|m| {
            let (ra, rb) = (m.samples(a), m.samples(b));
            let (va, vb) = (median(&ra), median(&rb));
            let span = |rounds: &[f64]| {
                let (lo, hi) = rounds
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
                (lo <= hi).then_some((lo, hi))
            };
            let judged = judge::judge(m, &ra, &rb);
            Cell {
                metric: m,
                a: va,
                b: vb,
                a_span: span(&ra),
                b_span: span(&rb),
                change: va.zip(vb).filter(|(x, _)| *x > 0.0).map(|(x, y)| y / x - 1.0),
                p: judged.map(|j| j.test.p),
                rounds: (ra.len(), rb.len()),
                verdict: judged.map(|j| j.verdict),
                moved: judged.and_then(|j| j.moved),
            }
        })
        .collect();
    let mut notes = Vec::new();
    for (run, p) in [("A", a), ("B", b)] {
        if p.nothing_completed() {
            notes.push(format!("nothing completed in {run}: no request finished in any round"));
        }
        if let (true, Some(cores)) = (p.noisy, p.outside_cpu_cores) {
            notes.push(format!(
                "noisy in {run}: processes outside the lab used {cores:.2} cores while it was measured, \
                 so its numbers include their interference"
            ));
        }
    }
    let rate = |p: &Point| p.offered.as_ref().map(|o| o.rate_rps);
    if let (Some(ra), Some(rb)) = (rate(a), rate(b)) {
        if (ra - rb).abs() > 0.01 * ra.max(rb) {
            notes.push(format!(
                "offered {} req/s in A and {} in B (the same fraction of different capacities)",
                format::rps(ra),
                format::rps(rb)
            ));
        }
    }
    Pair { series, point, cells, notes }
}

/// The median of `values` (the mean of the middle two of an even count); `None` when empty.
fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// The machines: CPU model and cores (where both runs recorded them) and the runner.
fn check_machines(a: &Results, b: &Results) -> Result<(), Mismatch> {
    let describe = |r: &Results| match &r.machine {
        Some(m) => format!("{} cores of {}, {} runner", m.cores, m.cpu_model, r.runner),
        None => format!("{} cores, {} runner", r.cores, r.runner),
    };
    let same_cpu = match (&a.machine, &b.machine) {
        (Some(x), Some(y)) => x.cpu_model == y.cpu_model,
        _ => true, // an older file did not record it: cores and runner must do
    };
    if a.cores != b.cores || a.runner != b.runner || !same_cpu {
        return Err(Mismatch::Machine { a: describe(a), b: describe(b) });
    }
    Ok(())
}

/// The offered load: target, loop, rate, arrivals (rounds and durations may differ).
fn check_loads(a: &Results, b: &Results) -> Result<(), Mismatch> {
    let (x, y) = (&a.load, &b.load);
    let rate = |r: Option<f64>| r.map_or("closed loop".to_string(), |r| format!("{} req/s", format::rps(r)));
    let arrivals = |v: &Option<String>| v.clone().unwrap_or_else(|| "uniform".into());
    let checks = [
        ("the target (--path or --mix)", x.target.clone(), y.target.clone()),
        ("--connections", x.connections.to_string(), y.connections.to_string()),
        ("--rate", rate(x.rate), rate(y.rate)),
        ("the arrival process", arrivals(&x.arrivals), arrivals(&y.arrivals)),
    ];
    for (what, va, vb) in checks {
        if va != vb {
            return Err(Mismatch::Load { what, a: va, b: vb });
        }
    }
    Ok(())
}

/// The points' request costs (`workload:` of their topologies).
fn check_workload(point: &str, a: &Point, b: &Point) -> Result<(), Mismatch> {
    let read = |run: &'static str, p: &Point| -> Result<Workload, Mismatch> {
        Topology::from_yaml(&p.topology).map(|t| t.workload).map_err(|e| Mismatch::Topology {
            point: point.to_string(),
            run,
            why: e.to_string(),
        })
    };
    let (wa, wb) = (read("A", a)?, read("B", b)?);
    if wa != wb {
        let show = |w: Workload| {
            format!("op2_cpu_ms {}, max_cpu_ms {}, max_queue {}", w.op2_cpu_ms, w.max_cpu_ms, w.max_queue)
        };
        return Err(Mismatch::Workload { point: point.to_string(), a: show(wa), b: show(wb) });
    }
    Ok(())
}
