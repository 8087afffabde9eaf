//! `scalelab load`: checks every flag, runs the load (the `loadgen` crate), asks the balancer's
//! admin listener meanwhile when `--admin` names it, judges the `--slo` thresholds, prints the
//! report, writes `--hdr` and `--timeline`, and picks the exit status.
//!
//! Exit status: 0 when the run got 2xx responses and met every threshold; 1 when no request
//! got a 2xx response, or on an error; 2 for bad flags ([`EXIT_BAD_FLAGS`]: from clap, or from
//! the checks made before anything is sent); 3 ([`EXIT_THRESHOLD_FAILED`]) when the run
//! completed but a threshold failed.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use scalelab_experiment::timeline::{self, admin::AdminPoller, Timeline};
use scalelab_loadgen::{
    hgrm, judge, LoadArgs, LoadConfig, Output, Report, EXIT_THRESHOLD_FAILED, MAX_SECONDS, MAX_SLOS,
};

/// The exit status of a run refused before it started: clap's for bad flags.
pub const EXIT_BAD_FLAGS: u8 = 2;

/// Runs `scalelab load`.
pub fn run(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let cfg = match preflight(&args) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(EXIT_BAD_FLAGS));
        }
    };
    let show_progress = !args.json && !args.no_progress && std::io::stderr().is_terminal();
    let runtime = scalelab_loadgen::runtime(cfg.threads)?;
    let (mut run, admin) = runtime.block_on(async {
        let poller = match &args.admin {
            Some(url) => Some(AdminPoller::start(url).await?),
            None => None,
        };
        let run = scalelab_loadgen::run_load_full(cfg, show_progress).await;
        let admin = match poller {
            Some(p) => Some(p.finish().await),
            None => None,
        };
        anyhow::Ok((run?, admin))
    })?;
    run.report.thresholds = judge(&args.slos, &run.report);
    let output = if args.json { Output::Json } else { Output::Text };
    print!("{}", output.render(&run.report));

    if let Some(file) = &args.hdr {
        std::fs::write(file, hgrm::write(&run.latency))
            .with_context(|| format!("--hdr: cannot write {}", file.display()))?;
        eprintln!("latency histogram: {}", file.display());
    }
    if let Some(dir) = &args.timeline {
        if run.seconds_dropped > 0 {
            eprintln!(
                "note: the timeline keeps the run's first {MAX_SECONDS} s; later seconds are not in it"
            );
        }
        if let Some(a) = admin.as_ref().filter(|a| a.failed > 0) {
            eprintln!(
                "note: {} of {} asks of {} got no answer: gaps in the timeline",
                a.failed, a.polls, a.url
            );
        }
        let page = timeline::write(dir, &Timeline::new(&run, admin))
            .with_context(|| format!("--timeline: writing into {}", dir.display()))?;
        eprintln!("timeline: {}", page.display());
    }
    Ok(exit_status(&run.report))
}

/// Every check that can be made before a request is sent: the flags' ranges, the files to
/// write (a run whose results could not be written is not worth running). Returns the run's
/// configuration.
fn preflight(args: &LoadArgs) -> anyhow::Result<LoadConfig> {
    let cfg = LoadConfig::from_args(args)?;
    if args.slos.len() > MAX_SLOS {
        bail!("--slo: at most {MAX_SLOS} thresholds, found {}", args.slos.len());
    }
    if let Some(file) = &args.hdr {
        let parent = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !parent.is_dir() {
            bail!("--hdr {}: the directory {} does not exist", file.display(), parent.display());
        }
        if file.is_dir() {
            bail!("--hdr {}: is a directory; give a file name, e.g. run.hgrm", file.display());
        }
        check_writable(file).with_context(|| format!("--hdr {}: cannot write it", file.display()))?;
    }
    if let Some(dir) = &args.timeline {
        let hour = Duration::from_secs(MAX_SECONDS as u64);
        if cfg.duration.is_some_and(|d| d > hour) {
            bail!("--timeline: the run must last at most 1h (the timeline keeps one row a second, {MAX_SECONDS} rows)");
        }
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--timeline: cannot create {}", dir.display()))?;
        for name in [timeline::TIMELINE_JSON, timeline::TIMELINE_CSV, timeline::TIMELINE_HTML] {
            let file = dir.join(name);
            check_writable(&file).with_context(|| format!("--timeline: cannot write {}", file.display()))?;
        }
    }
    Ok(cfg)
}

/// Whether `file` can be written, found without changing it: opened for appending (created,
/// then removed again, when it did not exist).
fn check_writable(file: &Path) -> std::io::Result<()> {
    let existed = file.exists();
    std::fs::OpenOptions::new().append(true).create(true).open(file)?;
    if !existed {
        std::fs::remove_file(file)?;
    }
    Ok(())
}

/// 1 without a single 2xx response, 3 when a threshold failed, 0 otherwise.
fn exit_status(r: &Report) -> ExitCode {
    if !r.any_ok() {
        ExitCode::FAILURE
    } else if !r.thresholds_passed() {
        ExitCode::from(EXIT_THRESHOLD_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writability_is_checked_without_leaving_a_trace() {
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("run.hgrm");
        check_writable(&new).unwrap();
        assert!(!new.exists(), "a file made to check is removed again");
        let old = dir.path().join("old.hgrm");
        std::fs::write(&old, "kept").unwrap();
        check_writable(&old).unwrap();
        assert_eq!(std::fs::read_to_string(&old).unwrap(), "kept", "an existing file is left as it is");
        // /proc takes no new files, not even from root.
        assert!(check_writable(Path::new("/proc/scalelab-run.hgrm")).is_err());
    }
}
