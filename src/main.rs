//! The `scalelab` binary: parse the command line, hand it to the library, print errors with
//! their whole context chain.

use clap::Parser;

/// mimalloc for every subcommand: the balancer's hot path is allocation-heavy inside pingora
/// (boxed hook futures, header maps, channels, pool entries), and glibc's malloc cost it ~9% of
/// its CPU (BENCHMARKS.md). The other parts allocate little per request either way.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = scalelab::cli::Cli::parse();
    match scalelab::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
