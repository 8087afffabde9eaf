//! Step 4: latency against offered load on one worker, against what queueing theory predicts
//! for it (one server of a fixed service time: M/D/1), and the knee where p99 turns upward.

use std::path::Path;

use super::scaling::{blank, series, sweep_in};
use super::setup::{self, Pace};
use super::Step;
use crate::report::charts;

/// Step 4.
pub async fn run(dir: &Path, pace: Pace) -> anyhow::Result<Step> {
    let loads = format!("load={}", pace.loads());
    let results = sweep_in(dir, setup::KNEE, &[&loads], None, pace).await?;
    let series = series(&results)?;
    let rows: Vec<String> = series
        .points
        .iter()
        .filter_map(|p| {
            let o = p.offered.as_ref()?;
            let predicted =
                o.pooled.map_or("no prediction".to_string(), |m| format!("{:.0} ms predicted", m.p99));
            Some(format!(
                "at ρ = {:.2} ({:.0} req/s) p99 {:.0} ms, {predicted}",
                o.utilization.unwrap_or(0.0),
                o.rate_rps,
                p.latency_ms.p99
            ))
        })
        .collect();
    let knee = series.knee.as_ref();
    let threshold = knee.map_or(50.0, |k| k.threshold_ms);
    let measured = match knee.and_then(|k| k.measured) {
        Some(rho) => format!("p99 crossed {threshold:.0} ms (10 service times) at ρ ≈ {rho:.2}"),
        None => format!(
            "p99 did not cross {threshold:.0} ms (10 service times) between the loads measured ({})",
            knee.and_then(|k| k.measured_note.clone()).unwrap_or_default()
        ),
    };
    let predicted =
        knee.and_then(|k| k.pooled).map_or("the model has no knee below ρ = 1".to_string(), |rho| {
            format!("the model says ρ ≈ {rho:.2}")
        });
    Ok(Step {
        setup: format!(
            "One worker (one server) and /op2 at 5 ms of CPU: 200 requests a second at most. Requests \
             arrive at random (Poisson) at {} of that capacity, as on a real service, with nothing shed.",
            pace.loads().replace(',', ", ")
        ),
        lesson: vec![
            format!("{}.", rows.join("; ")),
            format!(
                "Latency does not grow with load in a straight line: it stays near the service time, \
                 then turns sharply upward as utilization nears 1, because random arrivals bunch up \
                 and a busy server makes each bunch wait. {measured}; {predicted}. Capacity planning \
                 therefore aims below the knee, not at 100%: the headroom is what keeps the tail \
                 short."
            ),
        ],
        charts: vec![(
            "Latency against utilization, with the queueing model".into(),
            charts::knee::draw(series)?,
        )],
        details: Some("4-knee/report.html".into()),
        ..blank()
    })
}
