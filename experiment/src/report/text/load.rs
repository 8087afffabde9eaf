//! A load series in words: which model the measured p99 followed (pooled M/D/c, partitioned
//! c × M/D/1, between them, or outside both), where its knee fell against the models', and
//! why, from what the node's `distribution` does with the balancer's kept-alive connections.

use scalelab_topology::{Distribution, Topology};

use super::FitText;
use crate::report::format;
use crate::results::Series;

/// A point is "above" a model line when its p99 is this many times the model's or more.
const CLEARLY: f64 = 1.15;

/// Explains a load series.
pub fn explain(series: &Series) -> FitText {
    let pairs: Vec<(f64, f64, f64)> = series
        .points
        .iter()
        .filter(|p| !p.nothing_completed() && p.latency_ms.p99 > 0.0)
        .filter_map(|p| {
            let o = p.offered.as_ref()?;
            Some((p.latency_ms.p99, o.pooled?.p99, o.partitioned?.p99))
        })
        .collect();
    let note = series.points.iter().find_map(|p| p.offered.as_ref()?.model_note.clone());
    let (verdict, mut sentences) = match follows(&pairs) {
        Some((verdict, sentence)) => (verdict, vec![sentence]),
        None => (
            "no model to compare".to_string(),
            vec![format!(
                "No point below capacity has both models' predictions{}.",
                note.map(|n| format!(" ({n})")).unwrap_or_default()
            )],
        ),
    };
    if let Some(k) = &series.knee {
        let rho = |r: Option<f64>| r.map_or("nowhere below ρ = 1".to_string(), |r| format!("at ρ ≈ {r:.2}"));
        let measured = match (k.measured, &k.measured_note) {
            (Some(r), _) => format!(
                "Measured p99 crossed 10 service times ({} ms) at ρ ≈ {r:.2}",
                format::ms(k.threshold_ms)
            ),
            (None, why) => format!(
                "No measured knee at 10 service times ({} ms){}",
                format::ms(k.threshold_ms),
                why.as_ref().map(|w| format!(": {w}")).unwrap_or_default()
            ),
        };
        sentences.push(format!(
            "{measured}; the pooled model puts the knee {}, the partitioned one {}.",
            rho(k.pooled),
            rho(k.partitioned)
        ));
    }
    if let Some(why) = series.points.first().and_then(|p| why(&p.topology, p.offered.as_ref()?.servers?)) {
        sentences.push(why);
    }
    if let Some((p, s)) = series.points.iter().find_map(|p| Some((p, p.offered.as_ref()?.service_ms?))) {
        if p.latency_ms.p50 > 0.0 && !p.nothing_completed() {
            sentences.push(format!(
                "At the lightest load the median was {} ms against a service time of {} ms: the rest is the \
                 balancer, the loopback network and the load tool's timer, which no model here includes.",
                format::ms(p.latency_ms.p50),
                format::ms(s)
            ));
        }
    }
    FitText { series: series.title(), verdict, explanation: sentences.join(" ") }
}

/// Which model (p99 measured, pooled, partitioned) points follow: the verdict and a sentence.
fn follows(pairs: &[(f64, f64, f64)]) -> Option<(String, String)> {
    if pairs.is_empty() {
        return None;
    }
    let n = pairs.len() as f64;
    let above = pairs.iter().filter(|(m, _, part)| *m >= part * CLEARLY).count();
    let below = pairs.iter().filter(|(m, pool, _)| *m * CLEARLY <= *pool).count();
    let distance = |i: usize| pairs.iter().map(|t| (t.0 / [t.1, t.2][i]).ln().abs()).sum::<f64>() / n;
    let (to_pooled, to_partitioned) = (distance(0), distance(1));
    let count = |k: usize| format!("{k} of {} points", pairs.len());
    Some(if above * 2 > pairs.len() {
        (
            "slower than both models".into(),
            format!(
                "Measured p99 was above even the partitioned model's at {}: something the models leave out \
                 (CPU shared with more workers than cores, or with the balancer and the load tool) added \
                 its own wait.",
                count(above)
            ),
        )
    } else if below * 2 > pairs.len() {
        (
            "faster than both models".into(),
            format!("Measured p99 was below even the pooled model's at {}.", count(below)),
        )
    } else if to_pooled < to_partitioned * 0.8 {
        (
            "followed the pooled model".into(),
            format!(
                "Measured p99 stayed closest to the pooled model (M/D/c): on average {} apart in log terms, \
                 against {} from the partitioned one.",
                ratio(to_pooled),
                ratio(to_partitioned)
            ),
        )
    } else if to_partitioned < to_pooled * 0.8 {
        (
            "followed the partitioned model".into(),
            format!(
                "Measured p99 stayed closest to the partitioned model (c × M/D/1): on average {} apart, \
                 against {} from the pooled one.",
                ratio(to_partitioned),
                ratio(to_pooled)
            ),
        )
    } else {
        (
            "between the two models".into(),
            format!(
                "Measured p99 lay between the models, about as far from each ({} from pooled, {} from \
                 partitioned).",
                ratio(to_pooled),
                ratio(to_partitioned)
            ),
        )
    })
}

/// A mean |ln ratio| as a factor: `1.3×`.
fn ratio(log_distance: f64) -> String {
    format!("{}×", format::sig3(log_distance.exp()))
}

/// Why the lab should sit where it does, from its topology (`yaml`) and the model's `servers`.
fn why(yaml: &str, servers: u32) -> Option<String> {
    let t = Topology::from_yaml(yaml).ok()?;
    let group = t.nodes.first()?;
    let mut out = match group.distribution {
        Distribution::Shared => "Its workers accept from one shared socket, a pooled design; but the balancer keeps \
            its upstream connections alive, and each stays on the worker that accepted it, so a request waits \
            behind its own connection's worker even while another is idle: pooled per connection, partitioned \
            per request."
            .to_string(),
        Distribution::Reuseport => "Each worker has its own SO_REUSEPORT socket and the kernel hashes every \
            connection to one of them: the queues are partitioned by design, and the hash need not split the \
            balancer's few kept-alive connections evenly."
            .to_string(),
        Distribution::RoundRobin => "The node's primary hands connections to its workers in turn: the partitions \
            are even, but each request still queues behind its own connection's worker, never in a shared queue."
            .to_string(),
    };
    let workers = t.total_workers();
    if workers as u32 > servers {
        out.push_str(&format!(
            " And {workers} workers share {servers} cores: a busy worker can be descheduled mid-request, a wait \
             neither model has (each serves one request at a time at full speed)."
        ));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_followed_is_named() {
        // (measured, pooled, partitioned) p99s.
        let near_partitioned = [(20.0, 8.0, 21.0), (60.0, 15.0, 55.0), (100.0, 30.0, 110.0)];
        assert_eq!(follows(&near_partitioned).unwrap().0, "followed the partitioned model");
        let near_pooled = [(9.0, 8.0, 21.0), (16.0, 15.0, 55.0), (31.0, 30.0, 110.0)];
        assert_eq!(follows(&near_pooled).unwrap().0, "followed the pooled model");
        let between = [(13.0, 8.0, 21.0), (29.0, 15.0, 55.0), (57.0, 30.0, 110.0)];
        assert_eq!(follows(&between).unwrap().0, "between the two models");
        let above = [(40.0, 8.0, 21.0), (90.0, 15.0, 55.0), (100.0, 30.0, 110.0)];
        let (verdict, sentence) = follows(&above).unwrap();
        assert_eq!(verdict, "slower than both models");
        assert!(sentence.contains("2 of 3 points"), "{sentence}");
        assert!(follows(&[]).is_none());
    }

    #[test]
    fn the_reason_depends_on_the_distribution() {
        let yaml = |d: &str| {
            format!(
                "balancer: {{ listen: 127.0.0.1:8080, admin: 127.0.0.1:9090 }}\n\
                 nodes: [{{ name: node, replicas: 1, workers: 4, port: 8081, distribution: {d} }}]\n"
            )
        };
        let shared = why(&yaml("shared"), 2).unwrap();
        assert!(shared.contains("kept-alive") || shared.contains("keeps its upstream connections alive"));
        assert!(shared.contains("4 workers share 2 cores"), "{shared}");
        assert!(why(&yaml("reuseport"), 4).unwrap().contains("SO_REUSEPORT"));
        assert!(!why(&yaml("round_robin"), 4).unwrap().contains("cores"));
        assert_eq!(why("not yaml: [", 2), None);
    }

    #[test]
    fn a_fixture_series_is_explained_with_its_knee() {
        let s = crate::report::tests::load_series(None, &[0.2, 0.5, 0.7, 0.85, 0.95]);
        let t = explain(&s);
        assert_eq!(t.series, "load");
        assert!(t.explanation.contains("the pooled model puts the knee at ρ ≈ 0."), "{}", t.explanation);
        assert!(t.explanation.contains("At the lightest load the median was"), "{}", t.explanation);
    }
}
