//! The `scalelab` binary: parse the command line, hand it to the library, print errors with
//! their whole context chain.

use clap::Parser;

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
