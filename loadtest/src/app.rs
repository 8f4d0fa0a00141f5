//! From a parsed command to printed results: build the scenario's plan, run it, print the
//! report, and write the requested files.

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;

use clap::Parser;
use thiserror::Error;

use crate::cli::file::{command_line, FileError};
use crate::cli::{Cli, Command};
use crate::engine::{self, EngineError, RunOptions};
use crate::plan::PlanError;
use crate::report::{self, hgrm, svg, table};
use crate::scenario::{self, pymqttbench};

/// Why a run produced no result.
#[derive(Debug, Error)]
pub enum AppError {
    /// The scenario file cannot be used.
    #[error(transparent)]
    File(#[from] FileError),
    /// The scenario file's options are not valid.
    #[error("in scenario file {path}: {message}")]
    FileOptions {
        /// The file.
        path: String,
        /// clap's message.
        message: String,
    },
    /// The parameters describe an impossible run.
    #[error("impossible parameters: {0}")]
    Plan(#[from] PlanError),
    /// The run failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// An output file cannot be written.
    #[error("cannot write {path}: {reason}")]
    Output {
        /// The file.
        path: String,
        /// The system's reason.
        reason: String,
    },
}

/// Replaces `run FILE [overrides]` by the scenario command the file describes.
pub fn resolve(command: Command) -> Result<Command, AppError> {
    let Command::Run(run) = command else {
        return Ok(command);
    };
    let args: Vec<OsString> = command_line(&run.file, &run.overrides)?;
    let cli = Cli::try_parse_from(args).map_err(|e| AppError::FileOptions {
        path: run.file.display().to_string(),
        message: e.render().to_string().trim_end().to_owned(),
    })?;
    match cli.command {
        Command::Run(_) => Err(AppError::Plan(crate::plan::impossible(
            "a scenario file cannot run another one",
        ))),
        command => Ok(command),
    }
}

/// Runs a scenario command and prints its report.
pub fn execute(command: Command) -> Result<(), AppError> {
    let command = resolve(command)?;
    let scenario = scenario::build(&command)?;
    let output = scenario.output.clone();
    let outcome = engine::run(
        scenario.plan,
        RunOptions {
            broker_pid: output.broker_pid,
            quiet: output.quiet,
        },
    )?;
    let (mut run_report, histograms) = report::build(&outcome);
    let mut text = String::new();
    if let Some(args) = &scenario.pymqttbench {
        let result = pymqttbench::result(args, &outcome);
        for line in result.failure_lines() {
            text.push_str(&line);
            text.push('\n');
        }
        if args.brief {
            text.push_str(&result.brief_line());
            text.push('\n');
        } else {
            text.push_str(&result.human_report());
        }
        run_report.pymqttbench = Some(result);
    }
    text.push_str(&table::render(&run_report));
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();

    if let Some(path) = &output.json {
        write_file(path, &report::to_json(&run_report))?;
    }
    if let Some(path) = &output.hgrm {
        write_file(path, &hgrm::render(&histograms.latency))?;
    }
    if let Some(path) = &output.svg {
        // Delivery latency is the plot's subject; connect times are plotted when there is no
        // delivery (conns), as their scale would flatten the delivery curve.
        let series = if histograms.latency.is_empty() {
            vec![svg::Series {
                label: "connect (TCP connect → CONNACK)".to_owned(),
                histogram: &histograms.connect,
            }]
        } else {
            vec![svg::Series {
                label: "publish → deliver".to_owned(),
                histogram: &histograms.latency,
            }]
        };
        let title = format!(
            "hydrant-loadtest {} against {}",
            run_report.scenario, run_report.broker
        );
        write_file(path, &svg::render(&title, &run_report.description, &series))?;
    }
    Ok(())
}

fn write_file(path: &Path, contents: &str) -> Result<(), AppError> {
    std::fs::write(path, contents).map_err(|e| AppError::Output {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}
