//! `scalelab check FILE`: validate a topology and say what it would run, or list every problem.

use std::process::ExitCode;

use scalelab_topology::Topology;

use crate::cli::CheckArgs;

/// Prints a summary and exits 0 when valid; prints every problem to stderr and exits 1 otherwise.
pub fn run(args: CheckArgs) -> ExitCode {
    match Topology::load(&args.file) {
        Ok(t) => {
            println!(
                "{} is valid: {} node(s) in {} group(s), {} worker(s); balancer on {} (admin {})",
                args.file.display(),
                t.replicas().len(),
                t.nodes.len(),
                t.total_workers(),
                t.balancer.listen,
                t.balancer.admin
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
