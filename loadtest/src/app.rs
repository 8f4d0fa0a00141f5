//! From a parsed command to printed results: build the scenario's plan, run it, print the
//! report, and write the requested files. The report is written by a thread of its own for at
//! most [`OUTPUT_GRACE`], so a stdout nobody reads or a FIFO nobody opens ends the generator
//! with an error instead of holding it forever.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Parser;
use thiserror::Error;

use crate::cli::file::{command_line, FileError};
use crate::cli::{Cli, Command};
use crate::engine::{self, EngineError, RunOptions};
use crate::plan::PlanError;
use crate::report::{self, hgrm, svg, table};
use crate::scenario::{self, pymqttbench};

/// Longest writing the report (stdout and the requested files) may take.
pub const OUTPUT_GRACE: Duration = Duration::from_secs(10);

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
    /// The parameters describe an impossible run, or name unusable files.
    #[error(transparent)]
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
    /// Writing the report did not finish in time.
    #[error(
        "writing the report to {target} did not finish within {grace:?}: is anything reading it?"
    )]
    OutputStalled {
        /// Where it was being written: "stdout" or a file.
        target: String,
        /// How long it was given.
        grace: Duration,
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
    let mut outputs = vec![Output {
        file: None,
        contents: text,
    }];
    if let Some(path) = &output.json {
        outputs.push(Output::file(path, report::to_json(&run_report)));
    }
    if let Some(path) = &output.hgrm {
        outputs.push(Output::file(path, hgrm::render(&histograms.latency)));
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
        let contents = svg::render(&title, &run_report.description, &series);
        outputs.push(Output::file(path, contents));
    }
    write_outputs(outputs, OUTPUT_GRACE)
}

/// One piece of the report and where it goes.
struct Output {
    /// The file, or `None` for stdout.
    file: Option<PathBuf>,
    contents: String,
}

impl Output {
    fn file(path: &std::path::Path, contents: String) -> Output {
        Output {
            file: Some(path.to_owned()),
            contents,
        }
    }

    fn target(&self) -> String {
        self.file
            .as_ref()
            .map_or_else(|| "stdout".to_owned(), |p| p.display().to_string())
    }

    /// Writes it; a stdout that cannot be written (closed) is not an error of the run.
    fn write(&self) -> Result<(), AppError> {
        match &self.file {
            None => {
                let mut stdout = std::io::stdout().lock();
                let _ = stdout.write_all(self.contents.as_bytes());
                let _ = stdout.flush();
                Ok(())
            }
            Some(path) => std::fs::write(path, &self.contents).map_err(|e| AppError::Output {
                path: path.display().to_string(),
                reason: e.to_string(),
            }),
        }
    }
}

/// Writes `outputs` in order from a writer thread, waiting at most `grace` in all; a writer
/// still stuck then is left behind.
fn write_outputs(outputs: Vec<Output>, grace: Duration) -> Result<(), AppError> {
    let targets: Vec<String> = outputs.iter().map(Output::target).collect();
    let (done, written) = mpsc::channel();
    std::thread::Builder::new()
        .name("output".into())
        .spawn(move || {
            for output in outputs {
                let result = output.write();
                let failed = result.is_err();
                if done.send(result).is_err() || failed {
                    return;
                }
            }
        })
        .map_err(|e| AppError::Output {
            path: "stdout".into(),
            reason: format!("cannot start the output thread: {e}"),
        })?;
    let give_up = Instant::now() + grace;
    for target in targets {
        let left = give_up.saturating_duration_since(Instant::now());
        match written.recv_timeout(left) {
            Ok(result) => result?,
            Err(_) => return Err(AppError::OutputStalled { target, grace }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_nobody_reads_is_a_clear_error_not_a_hang() {
        let dir = std::env::temp_dir().join(format!("hl-output-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let written = dir.join("written.json");
        let fifo = dir.join("nobody-reads.json");
        let _ = std::fs::remove_file(&fifo);
        let c_path = std::ffi::CString::new(fifo.display().to_string()).unwrap();
        // SAFETY: mkfifo reads one NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let started = Instant::now();
        let result = write_outputs(
            vec![
                Output::file(&written, "{}".into()),
                Output::file(&fifo, "{}".into()),
            ],
            Duration::from_millis(200),
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        match result {
            Err(AppError::OutputStalled { target, .. }) => {
                assert_eq!(target, fifo.display().to_string())
            }
            other => panic!("expected a stalled output, got {other:?}"),
        }
        assert_eq!(std::fs::read_to_string(&written).unwrap(), "{}");
        // Opening the FIFO releases the writer thread left behind.
        let _ = std::fs::read(&fifo);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
