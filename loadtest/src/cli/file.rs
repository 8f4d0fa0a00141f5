//! Scenario files: a TOML table with `scenario = "NAME"` and that scenario's options as
//! `key = value` (key = the long option without its dashes; `_` and `-` both work). The file
//! is turned into the equivalent command line and parsed by the same definitions, so a file
//! accepts exactly what the command line accepts, and an unknown key is refused with clap's
//! suggestion of the nearest option. Options given after the file on the command line win.

use std::ffi::OsString;
use std::path::Path;

use thiserror::Error;

/// Why a scenario file cannot be used.
#[derive(Debug, Error)]
pub enum FileError {
    /// The file cannot be read.
    #[error("cannot read scenario file {path}: {reason}")]
    Unreadable {
        /// The file.
        path: String,
        /// The system's reason.
        reason: String,
    },
    /// The file is not valid TOML.
    #[error("scenario file {path} is not valid TOML: {reason}")]
    Syntax {
        /// The file.
        path: String,
        /// The parser's message.
        reason: String,
    },
    /// The file's content is not a scenario.
    #[error("scenario file {path}: {reason}")]
    Content {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// The command line (program name first) equivalent to the file at `path` followed by
/// `overrides`.
pub fn command_line(path: &Path, overrides: &[OsString]) -> Result<Vec<OsString>, FileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| FileError::Unreadable {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    let mut args = file_arguments(&text).map_err(|e| match e {
        TableError::Syntax(reason) => FileError::Syntax {
            path: shown.clone(),
            reason,
        },
        TableError::Content(reason) => FileError::Content {
            path: shown.clone(),
            reason,
        },
    })?;
    args.insert(0, OsString::from("hydrant-loadtest"));
    args.extend(overrides.iter().cloned());
    Ok(args)
}

/// What is wrong with a file's text.
#[derive(Debug, PartialEq, Eq)]
pub enum TableError {
    /// Not TOML.
    Syntax(String),
    /// TOML, but not a scenario.
    Content(String),
}

/// The scenario name and options of a scenario file's text, as command-line arguments.
pub fn file_arguments(text: &str) -> Result<Vec<OsString>, TableError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| TableError::Syntax(e.message().to_owned()))?;
    let scenario =
        match table.get("scenario") {
            Some(toml::Value::String(name)) if name != "run" => name.clone(),
            Some(_) => {
                return Err(TableError::Content(
                    "`scenario` must be the name of a scenario, e.g. scenario = \"fanout\"".into(),
                ))
            }
            None => return Err(TableError::Content(
                "missing `scenario = \"NAME\"` (fanout, fanin, p2p, conns, churn, pymqttbench, \
                 firehose)"
                    .into(),
            )),
        };
    let mut args = vec![OsString::from(scenario)];
    for (key, value) in &table {
        if key == "scenario" {
            continue;
        }
        let flag = format!("--{}", key.replace('_', "-"));
        push_value(&mut args, &flag, key, value)?;
    }
    Ok(args)
}

fn push_value(
    args: &mut Vec<OsString>,
    flag: &str,
    key: &str,
    value: &toml::Value,
) -> Result<(), TableError> {
    match value {
        toml::Value::String(text) => args.extend([flag.into(), text.into()]),
        toml::Value::Integer(number) => args.extend([flag.into(), number.to_string().into()]),
        toml::Value::Float(number) => args.extend([flag.into(), number.to_string().into()]),
        toml::Value::Boolean(true) => args.push(flag.into()),
        toml::Value::Boolean(false) => {}
        toml::Value::Array(items) => {
            for item in items {
                push_value(args, flag, key, item)?;
            }
        }
        toml::Value::Datetime(_) | toml::Value::Table(_) => {
            return Err(TableError::Content(format!(
                "`{key}` must be a string, number or boolean"
            )))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn keys_become_long_options() {
        let args = file_arguments(
            "scenario = \"fanout\"\nsubscribers = 10\nqos = 1\nrate = 2.5\nwarmup = \"500ms\"\n\
             quiet = true\nbroker_pid = 7\n",
        )
        .unwrap();
        assert_eq!(
            strings(&args),
            [
                "fanout",
                "--broker-pid",
                "7",
                "--qos",
                "1",
                "--quiet",
                "--rate",
                "2.5",
                "--subscribers",
                "10",
                "--warmup",
                "500ms"
            ]
        );
    }

    #[test]
    fn file_options_parse_and_command_line_overrides_win() {
        let mut args = vec![OsString::from("hydrant-loadtest")];
        args.extend(file_arguments("scenario = \"fanin\"\nport = 1884\npublishers = 5\n").unwrap());
        args.extend(["--port".into(), "1999".into()]);
        let cli = Cli::try_parse_from(args).unwrap();
        let Command::Fanin(fanin) = cli.command else {
            panic!("not fanin");
        };
        assert_eq!(fanin.publishers, 5);
        assert_eq!(fanin.target.port, 1999);
    }

    #[test]
    fn unknown_keys_and_bad_files_are_refused() {
        let mut args = vec![OsString::from("hydrant-loadtest")];
        args.extend(file_arguments("scenario = \"fanout\"\nsubscriber = 3\n").unwrap());
        let error = Cli::try_parse_from(args).unwrap_err().to_string();
        assert!(error.contains("--subscriber"), "{error}");
        assert!(matches!(file_arguments("x ="), Err(TableError::Syntax(_))));
        assert!(matches!(
            file_arguments("port = 1"),
            Err(TableError::Content(_))
        ));
        assert!(matches!(
            file_arguments("scenario = \"run\""),
            Err(TableError::Content(_))
        ));
        assert!(matches!(
            file_arguments("scenario = \"fanout\"\n[nested]\nx = 1\n"),
            Err(TableError::Content(_))
        ));
    }

    #[test]
    fn every_shipped_scenario_file_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let args = command_line(&path, &[]).unwrap();
                if let Err(error) = Cli::try_parse_from(args) {
                    panic!("{}: {error}", path.display());
                }
                seen += 1;
            }
        }
        assert!(seen >= 7, "only {seen} scenario files");
    }
}
