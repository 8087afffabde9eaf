//! A sweep checked and laid out before anything starts: every flag against its bound, every
//! point's topology validated and preflighted, every load point's rate and model worked out.
//! Bad input is refused here, naming the flag, so a sweep never stops half-way for it.

use std::time::Duration;

use anyhow::{bail, Context};
use scalelab_loadgen::{Arrivals, LoadConfig, Mix};
use scalelab_topology::{limits, Topology};

use super::vary::{self, Field, Setting, Vary};
use super::{load, theory, SweepArgs, MAX_DURATION, MAX_SERIES, MAX_WAIT};
use crate::queueing::Queue;
use crate::results::{LoadSpec, Offered};

/// Points a whole sweep may have (a `--grid` multiplies two series).
pub const MAX_POINTS: usize = 256;

/// A validated sweep: every series and every point.
pub struct Plan {
    pub series: Vec<PlannedSeries>,
    /// The load of a point that sets no rate of its own.
    pub load: LoadConfig,
    pub spec: LoadSpec,
    /// (path, weight) of each request kind, for the theory.
    pub paths: Vec<(String, u32)>,
    /// The machine's cores, bounding the theory.
    pub cores: usize,
}

/// One series: the field it varies, what its points share in a grid, its points.
pub struct PlannedSeries {
    pub field: Field,
    /// In a `--grid`, the first flag's value every point shares.
    pub at: Option<Setting>,
    pub points: Vec<PlannedPoint>,
    /// A load series: (threshold, pooled knee, partitioned knee), when a model applies.
    pub knee: Option<(f64, Option<f64>, Option<f64>)>,
}

/// One point: what it sets, the topology it runs, the load it is measured with.
pub struct PlannedPoint {
    pub setting: Setting,
    pub topology: Topology,
    pub load: LoadConfig,
    /// A load point: its rate and the models' predictions.
    pub offered: Option<Offered>,
}

impl Plan {
    /// Checks every flag and every point before anything starts.
    pub fn new(args: &SweepArgs) -> anyhow::Result<Plan> {
        check_flags(args)?;
        let base = Topology::load(&args.topology)
            .with_context(|| format!("--topology {}", args.topology.display()))?;
        let mix = match &args.mix {
            Some(m) => m.clone(),
            None => Mix::single(&args.path).map_err(|e| anyhow::anyhow!("--path: {e}"))?,
        };
        let paths: Vec<(String, u32)> = mix.entries().iter().map(|e| (e.path.clone(), e.weight)).collect();
        let any_load = args.vary.iter().any(|v| v.field.is_load());
        let arrivals = match (args.arrivals, any_load || args.rate.is_some()) {
            (Some(a), true) => a,
            (Some(_), false) => {
                bail!("--arrivals: spaces open-loop requests; it needs --rate or --vary load/rate")
            }
            (None, true) if any_load => Arrivals::Poisson { seed: scalelab_loadgen::DEFAULT_ARRIVAL_SEED },
            (None, _) => Arrivals::Uniform,
        };
        let url = format!("http://{}", reachable(base.balancer.listen));
        let load = LoadConfig {
            url: url.parse()?,
            mix: mix.clone(),
            connections: args.connections,
            duration: Some(args.duration),
            requests: None,
            rate: args.rate,
            arrivals: if args.rate.is_some() { arrivals } else { Arrivals::Uniform },
            stages: None,
            timeout: Duration::from_secs(10),
            threads: scalelab_loadgen::default_threads(),
        };
        load.validate()?;
        let cores = limits::cores();
        let mut series = Vec::new();
        for (at, vary) in layout(args) {
            let mut points = Vec::with_capacity(vary.values.len());
            for setting in &vary.values {
                let settings: Vec<Setting> = at.iter().copied().chain([*setting]).collect();
                let topology = vary::topology_at(&base, &settings).map_err(anyhow::Error::msg)?;
                scalelab_lab::preflight(&topology)?;
                let mut point_load = load.clone();
                let mut offered = None;
                if let Some(rate_setting) = settings.iter().find(|s| s.field().is_load()) {
                    let capacity = theory::capacity(&topology, cores, &paths);
                    let rate = load::rate(*rate_setting, capacity).map_err(anyhow::Error::msg)?;
                    point_load.rate = Some(rate);
                    point_load.arrivals = arrivals;
                    point_load.validate()?;
                    let queue = load::queue(&topology, cores, &paths);
                    offered = Some(load::offered(rate, capacity, &queue));
                }
                points.push(PlannedPoint { setting: *setting, topology, load: point_load, offered });
            }
            let knee = match vary.field.is_load() {
                true => load::predicted_knee(&queue_of(&points, cores, &paths)),
                false => None,
            };
            series.push(PlannedSeries { field: vary.field, at, points, knee });
        }
        let total: usize = series.iter().map(|s| s.points.len()).sum();
        if total > MAX_POINTS {
            bail!("--vary: at most {MAX_POINTS} points in all, this sweep has {total}");
        }
        let spec = LoadSpec {
            target: args.mix.as_ref().map_or_else(|| args.path.clone(), |m| m.to_string()),
            connections: args.connections,
            rate: args.rate,
            duration_s: args.duration.as_secs_f64(),
            warmup_s: args.warmup.as_secs_f64(),
            rounds: args.rounds,
            arrivals: (any_load || args.rate.is_some()).then(|| arrivals.name().to_string()),
        };
        Ok(Plan { series, load, spec, paths, cores })
    }

    /// Points in all series.
    pub fn points(&self) -> usize {
        self.series.iter().map(|s| s.points.len()).sum()
    }
}

/// The queue of a load series' (single) topology.
fn queue_of(points: &[PlannedPoint], cores: usize, paths: &[(String, u32)]) -> Result<Queue, String> {
    let first = points.first().ok_or("no point")?;
    load::queue(&first.topology, cores, paths)
}

/// The flags' own bounds, and how the `--vary` flags combine.
fn check_flags(args: &SweepArgs) -> anyhow::Result<()> {
    if args.vary.len() > MAX_SERIES {
        bail!("--vary: at most {MAX_SERIES} series, found {}", args.vary.len());
    }
    for (i, v) in args.vary.iter().enumerate() {
        if args.vary[..i].iter().any(|w| w.field == v.field) {
            bail!("--vary {}: given twice; put all its values in one flag", v.field);
        }
    }
    if args.grid && args.vary.len() != 2 {
        bail!("--grid: crosses exactly two --vary flags (a series of the second per value of the first), found {}", args.vary.len());
    }
    if args.grid && args.vary.iter().all(|v| v.field.is_load()) {
        bail!("--grid: crosses a load with a topology field; load and rate both set the rate");
    }
    if let (Some(rate), Some(v)) = (args.rate, args.vary.iter().find(|v| v.field.is_load())) {
        bail!("--rate {rate}: --vary {} sets each point's rate; drop --rate", v.field);
    }
    for (flag, value, max) in [
        ("--duration", args.duration, MAX_DURATION),
        ("--warmup", args.warmup, MAX_WAIT),
        ("--pause", args.pause, MAX_WAIT),
    ] {
        if value > max {
            bail!(
                "{flag}: at most {}, found {}",
                humantime::format_duration(max),
                humantime::format_duration(value)
            );
        }
    }
    if args.duration.is_zero() {
        bail!("--duration: must be longer than 0");
    }
    Ok(())
}

/// The series to run: each `--vary` alone, or with `--grid` one series of the second flag per
/// value of the first (that value shared by its points).
fn layout(args: &SweepArgs) -> Vec<(Option<Setting>, Vary)> {
    match (&args.vary[..], args.grid) {
        ([first, second], true) => first.values.iter().map(|v| (Some(*v), second.clone())).collect(),
        (all, _) => all.iter().map(|v| (None, v.clone())).collect(),
    }
}

/// A wildcard listener is reached through loopback.
fn reachable(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    if addr.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}
