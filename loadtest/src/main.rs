//! The `hydrant-loadtest` command: parse the command line, run, and exit 0 on a completed run,
//! 1 when the run failed, 2 on a usage error (on the command line or in a scenario file).

use std::process::ExitCode;

use clap::Parser;
use hydrant_loadtest::app::{self, AppError};
use hydrant_loadtest::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match app::execute(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hydrant-loadtest: error: {error}");
            match error {
                AppError::FileOptions { .. } => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}
