//! Load series (`--vary load=...` or `rate=...`): the open-loop rate each point is offered,
//! what the pooled and partitioned queueing models predict for it, and the knee, the
//! utilization where p99 first exceeds 10 service times, measured and predicted.

use scalelab_topology::Topology;

use super::theory;
use super::vary::Setting;
use crate::queueing::{Model, Queue, KNEE_FACTOR};
use crate::results::{Knee, Offered, Point};

/// The rate `setting` offers `t`, req/s, and the capacity it was taken from; an error (naming
/// the flag) when `load=` asks for a fraction of a capacity the load does not have.
pub fn rate(setting: Setting, capacity: Option<f64>) -> Result<f64, String> {
    match (setting, capacity) {
        (Setting::Rate(r), _) => Ok(r),
        (Setting::Load(x), Some(c)) => Ok(x * c),
        (Setting::Load(x), None) => Err(format!(
            "--vary load={x}: these requests cost no CPU (no /op2 in --path or --mix), so the lab has no \
             theoretical capacity to take a fraction of; use --vary rate=R1,R2,... instead"
        )),
        (other, _) => Err(format!("--vary {}: not a load", other.label())),
    }
}

/// The queue the models see for requests to `paths` on `t`: only a single path has the one
/// fixed service time M/D/c assumes; `Err` says why there is no model.
pub fn queue(t: &Topology, cores: usize, paths: &[(String, u32)]) -> Result<Queue, String> {
    let [(path, _)] = paths else {
        return Err("the models assume one fixed service time; a mix of paths has several".into());
    };
    let cpu_ms = theory::cpu_ms(path, t);
    Queue::of(t, cores, cpu_ms).ok_or_else(|| format!("{path} costs no CPU: there is no queue to model"))
}

/// What a point offered at `rate` req/s is, with the models' predictions.
pub fn offered(rate: f64, capacity: Option<f64>, queue: &Result<Queue, String>) -> Offered {
    let utilization = capacity.filter(|c| *c > 0.0).map(|c| rate / c);
    let (servers, service_ms, pooled, partitioned, model_note) = match (queue, utilization) {
        (Ok(q), Some(rho)) => {
            let note = (rho >= 1.0).then(|| {
                "at or above capacity no queue settles: the models predict no steady latency".to_string()
            });
            (
                Some(q.servers),
                Some(q.service_ms),
                q.predict(Model::Pooled, rho),
                q.predict(Model::Partitioned, rho),
                note,
            )
        }
        (Ok(_), None) => (None, None, None, None, Some("no capacity to take a utilization from".into())),
        (Err(why), _) => (None, None, None, None, Some(why.clone())),
    };
    Offered {
        rate_rps: rate,
        capacity_rps: capacity,
        utilization,
        servers,
        service_ms,
        pooled,
        partitioned,
        model_note,
    }
}

/// The predicted half of a series' knee: `(threshold, pooled, partitioned)`; `None` without a
/// model.
pub fn predicted_knee(queue: &Result<Queue, String>) -> Option<(f64, Option<f64>, Option<f64>)> {
    let q = queue.as_ref().ok()?;
    Some((KNEE_FACTOR * q.service_ms, q.knee(Model::Pooled), q.knee(Model::Partitioned)))
}

/// The knee of `points` (a load series' points, in any order) against `threshold_ms`:
/// between the last point with p99 at or below it and the first above, interpolated in log
/// p99; `Err` says why there is none.
pub fn measured_knee(points: &[Point], threshold_ms: f64) -> Result<f64, String> {
    let mut measured: Vec<(f64, f64)> = points
        .iter()
        .filter(|p| !p.nothing_completed() && p.latency_ms.p99 > 0.0)
        .filter_map(|p| Some((p.offered.as_ref()?.utilization?, p.latency_ms.p99)))
        .collect();
    measured.sort_by(|a, b| a.0.total_cmp(&b.0));
    let Some(first_above) = measured.iter().position(|(_, p99)| *p99 > threshold_ms) else {
        return Err(match measured.last() {
            Some((rho, _)) => {
                format!("p99 stayed under 10 service times up to ρ = {rho:.2}, the highest load measured")
            }
            None => "no point was measured".into(),
        });
    };
    if first_above == 0 {
        return Err(format!(
            "p99 was already above 10 service times at ρ = {:.2}, the lowest load measured",
            measured[0].0
        ));
    }
    let ((r0, l0), (r1, l1)) = (measured[first_above - 1], measured[first_above]);
    let t = (threshold_ms.ln() - l0.ln()) / (l1.ln() - l0.ln());
    Ok(r0 + t.clamp(0.0, 1.0) * (r1 - r0))
}

/// A load series' knee: the predicted one with the measured one of `points`.
pub fn knee(points: &[Point], predicted: Option<(f64, Option<f64>, Option<f64>)>) -> Option<Knee> {
    let (threshold_ms, pooled, partitioned) = predicted?;
    let (measured, measured_note) = match measured_knee(points, threshold_ms) {
        Ok(rho) => (Some(rho), None),
        Err(why) => (None, Some(why)),
    };
    Some(Knee { threshold_ms, measured, measured_note, pooled, partitioned })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::point;

    fn at(rho: f64, p99: f64) -> Point {
        let mut p = point(rho, rho, 100.0 * rho, 1);
        p.latency_ms.p99 = p99;
        p.offered = Some(Offered {
            rate_rps: 100.0 * rho,
            capacity_rps: Some(100.0),
            utilization: Some(rho),
            servers: Some(2),
            service_ms: Some(5.0),
            pooled: None,
            partitioned: None,
            model_note: None,
        });
        p
    }

    #[test]
    fn the_measured_knee_is_interpolated_in_log_latency() {
        // p99 10 ms at 0.6, 100 ms at 0.8: log-halfway (31.6 ms) is ρ = 0.7, 50 ms is further.
        let points = [at(0.8, 100.0), at(0.2, 6.0), at(0.6, 10.0)];
        let rho = measured_knee(&points, 10f64.powf(1.5)).unwrap();
        assert!((rho - 0.7).abs() < 1e-9, "{rho}");
        assert!(measured_knee(&points, 50.0).unwrap() > 0.7);
        let never = measured_knee(&points, 500.0).unwrap_err();
        assert!(never.contains("stayed under") && never.contains("0.80"), "{never}");
        let always = measured_knee(&points, 5.0).unwrap_err();
        assert!(always.contains("already above") && always.contains("0.20"), "{always}");
    }

    #[test]
    fn rates_models_and_their_absence() {
        assert_eq!(rate(Setting::Load(0.5), Some(400.0)), Ok(200.0));
        assert_eq!(rate(Setting::Rate(30.0), None), Ok(30.0));
        assert!(rate(Setting::Load(0.5), None).unwrap_err().contains("use --vary rate="));
        let q = Ok(Queue { servers: 2, service_ms: 5.0 });
        let o = offered(360.0, Some(400.0), &q);
        assert_eq!((o.utilization, o.servers), (Some(0.9), Some(2)));
        assert!(o.pooled.unwrap().p99 < o.partitioned.unwrap().p99);
        let over = offered(440.0, Some(400.0), &q);
        assert!(over.pooled.is_none() && over.model_note.unwrap().contains("no steady latency"));
        let mix = offered(100.0, Some(400.0), &Err("a mix".into()));
        assert_eq!((mix.pooled, mix.model_note.as_deref()), (None, Some("a mix")));
    }
}
