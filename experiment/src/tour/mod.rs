//! `scalelab tour`: the whole lesson on this machine in one command. Seven steps, each on a lab
//! started from a built-in topology: one process where `/op2` blocks `/op1`; more workers on
//! one node up to its CPU cap (vertical); more nodes (horizontal); the latency knee against
//! the queueing models; a slow node under round robin and peak-EWMA; a node killed under load;
//! the autoscaler following a staged load. Each step prints what it measured in words, keeps
//! its own outputs in `--out/N-name/` (the topology it ran, and a sweep's report or a run's
//! timeline), and `tour.html` holds every step's chart.
//!
//! # Layout
//! - this file: the flags, the order of the steps, progress, Ctrl-C, the page at the end.
//! - [`setup`]: the built-in topologies, on free loopback ports, and the steps' timings.
//! - `blocking`, `scaling`, `knee`, `failover`, `elastic`: the steps (one file per lesson).
//! - `charts`: the one chart no other page draws (step 1's latency bars).
//! - `page`: `tour.html`'s data; the template is `templates/tour.html`.

mod blocking;
mod charts;
mod elastic;
mod failover;
mod knee;
mod page;
mod scaling;
pub mod setup;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};

use crate::report::write_atomically;
use setup::Pace;

/// The page the tour ends with, in `--out`.
pub const TOUR_HTML: &str = "tour.html";

/// Flags of `scalelab tour`.
#[derive(Debug, Clone, clap::Args)]
pub struct TourArgs {
    /// Where each step's outputs and tour.html go (created if missing).
    #[arg(long, default_value = "tour")]
    pub out: PathBuf,
    /// Shorter measurements (about a minute and a half in all instead of four): the same
    /// steps, noisier numbers.
    #[arg(long)]
    pub quick: bool,
}

/// What one step measured, for the terminal and the page.
#[derive(Debug, Clone)]
pub struct Step {
    /// 1 to 7.
    pub number: usize,
    /// What it shows, e.g. `More workers on one node (vertical)`.
    pub title: String,
    /// What was run, in a sentence.
    pub setup: String,
    /// What the numbers say, one paragraph each.
    pub lesson: Vec<String>,
    /// The step's charts as `<svg>` text, each with a caption.
    pub charts: Vec<(String, String)>,
    /// The step's own outputs (report.html or timeline.html), relative to `--out`.
    pub details: Option<String>,
    /// How long it took.
    pub took: Duration,
}

/// The steps, in order: (directory name, title).
pub const STEPS: [(&str, &str); 7] = [
    ("1-blocking", "One process: /op2 blocks /op1"),
    ("2-vertical", "More workers on one node, up to its CPU cap (vertical)"),
    ("3-horizontal", "More nodes (horizontal)"),
    ("4-knee", "The latency knee"),
    ("5-slow-node", "A slow node: round robin against peak-EWMA"),
    ("6-failover", "A node killed under load"),
    ("7-autoscale", "The autoscaler following a staged load"),
];

/// `scalelab tour`: runs every step, prints each lesson, writes tour.html. Exits 130 when
/// interrupted (the steps done are kept, and nothing is left running).
pub fn run(args: TourArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("--out: cannot create {}", args.out.display()))?;
    let runtime = scalelab_loadgen::runtime(scalelab_loadgen::default_threads())?;
    let pace = Pace::new(args.quick);
    let started = Instant::now();
    println!(
        "scalelab tour: 7 steps, about {} ({} mode); outputs in {}\n",
        humantime::format_duration(pace.expected()),
        if args.quick { "quick" } else { "full" },
        args.out.display()
    );
    let (steps, stopped) = runtime.block_on(run_steps(&args.out, pace));
    // A dropped step's lab kills its children; give the runtime a moment to reap them.
    runtime.shutdown_timeout(Duration::from_secs(5));
    let page = write_page(&args.out, &steps, pace, started.elapsed())?;
    println!("tour.html: {}", page.display());
    match stopped {
        None => {
            println!("the tour took {}", humantime::format_duration(secs(started.elapsed())));
            Ok(ExitCode::SUCCESS)
        }
        Some(why) => {
            eprintln!(
                "scalelab tour: stopped at step {} ({why}); the steps before it are kept",
                steps.len() + 1
            );
            Ok(ExitCode::from(if why == "interrupted" { 130 } else { 1 }))
        }
    }
}

/// Runs the steps in order until one fails or Ctrl-C (or SIGTERM) arrives: the steps done,
/// and why it stopped early if it did.
async fn run_steps(out: &Path, pace: Pace) -> (Vec<Step>, Option<String>) {
    let (mut int, mut term) = match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(i), Ok(t)) => (i, t),
        _ => return (Vec::new(), Some("cannot watch SIGINT and SIGTERM".into())),
    };
    let mut done = Vec::new();
    for (i, (dir, title)) in STEPS.iter().enumerate() {
        let number = i + 1;
        println!("── step {number} of {}: {title} ──", STEPS.len());
        let dir = out.join(dir);
        let started = Instant::now();
        let outside = crate::sweep::outside::Span::start();
        let step = async {
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            match number {
                1 => blocking::run(&dir, pace).await,
                2 => scaling::vertical(&dir, pace).await,
                3 => scaling::horizontal(&dir, pace).await,
                4 => knee::run(&dir, pace).await,
                5 => scaling::slow_node(&dir, pace).await,
                6 => failover::run(&dir, pace).await,
                _ => elastic::run(&dir, pace).await,
            }
        };
        // Dropping a step's future drops its lab, which stops every process it started.
        let outcome = tokio::select! {
            o = step => o,
            _ = int.recv() => return (done, Some("interrupted".into())),
            _ = term.recv() => return (done, Some("interrupted".into())),
        };
        match outcome {
            Ok(mut step) => {
                step.number = number;
                step.title = title.to_string();
                step.took = started.elapsed();
                step.lesson.extend(crate::sweep::outside::step_caveat(outside.cores()));
                print_step(&step);
                done.push(step);
            }
            Err(e) if e.is::<scaling::Interrupted>() => return (done, Some("interrupted".into())),
            Err(e) => {
                eprintln!("scalelab tour: step {number}: {e:#}");
                return (done, Some(format!("step {number} failed")));
            }
        }
    }
    (done, None)
}

/// The step's lesson on the terminal, wrapped for reading.
fn print_step(step: &Step) {
    println!("\n{}", wrap(&step.setup, 92));
    for paragraph in &step.lesson {
        println!("\n{}", wrap(paragraph, 92));
    }
    if let Some(details) = &step.details {
        println!("\n(details: {details}; took {})", humantime::format_duration(secs(step.took)));
    }
    println!();
}

/// Writes tour.html from the steps done so far.
fn write_page(out: &Path, steps: &[Step], pace: Pace, took: Duration) -> anyhow::Result<PathBuf> {
    let html = page::render(steps, pace, took)?;
    let path = out.join(TOUR_HTML);
    write_atomically(&path, &html)?;
    Ok(path)
}

/// `d` to the whole second, for printing.
fn secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs_f64().round() as u64)
}

/// `text` broken into lines of at most `width` characters, at spaces.
fn wrap(text: &str, width: usize) -> String {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let line = lines.last_mut().expect("never empty");
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(word.to_string());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_breaks_at_spaces_within_the_width() {
        let w = wrap("one two three four five six", 9);
        assert_eq!(w, "one two\nthree\nfour five\nsix");
        assert!(w.lines().all(|l| l.chars().count() <= 9));
    }
}
