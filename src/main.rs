//! The `hydrant` command: parse the command line, load the configuration, start the shards;
//! `hydrant passwd` edits a password file.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use hydrant::auth::passwd::{HashScheme, PasswdAction, PasswdRequest};
use hydrant::auth::PBKDF2_DEFAULT_ITERATIONS;
use hydrant::config::{Config, DEFAULT_CONFIG_TOML};
use tracing_subscriber::EnvFilter;

/// A thread-per-core MQTT broker on io_uring.
#[derive(Parser, Debug)]
#[command(name = "hydrant", version, about)]
struct Cli {
    /// Configuration file (TOML); without it the embedded defaults apply.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address of the plain MQTT listener, replacing the configured one (port 0 = any free port).
    #[arg(long, value_name = "ADDR:PORT")]
    bind: Option<SocketAddr>,
    /// Number of cores (shards) to run; 0 = one per CPU the process may use.
    #[arg(long, value_name = "N")]
    cores: Option<usize>,
    /// Print the embedded default configuration and exit.
    #[arg(long)]
    print_default_config: bool,
    /// Check the configuration and exit (0 when valid).
    #[arg(long)]
    check_config: bool,
    /// More log output (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// A tool to run instead of the broker.
    #[command(subcommand)]
    tool: Option<Tool>,
}

/// Tools that share the broker's binary.
#[derive(Subcommand, Debug)]
enum Tool {
    /// Create, update or delete a user in a password file (mosquitto_passwd compatible).
    Passwd(PasswdArgs),
}

/// `hydrant passwd [-c | -D] [--pbkdf2] FILE USER`; the password is read from a prompt
/// without echo, or from the first line of standard input when it is not a terminal.
#[derive(Args, Debug)]
struct PasswdArgs {
    /// Create a new password file, replacing any existing one.
    #[arg(short = 'c', conflicts_with = "delete")]
    create: bool,
    /// Delete the user instead of setting its password.
    #[arg(short = 'D')]
    delete: bool,
    /// Write a `$7$` PBKDF2-SHA512 entry, readable by Mosquitto 2.x, instead of argon2id.
    #[arg(long, conflicts_with = "delete")]
    pbkdf2: bool,
    /// PBKDF2 iterations for --pbkdf2.
    #[arg(long, value_name = "N", default_value_t = PBKDF2_DEFAULT_ITERATIONS,
          value_parser = clap::value_parser!(u32).range(1..), requires = "pbkdf2")]
    iterations: u32,
    /// The password file.
    file: PathBuf,
    /// The user to create, update or delete.
    user: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Tool::Passwd(args)) = &cli.tool {
        return passwd(args);
    }
    if cli.print_default_config {
        print!("{DEFAULT_CONFIG_TOML}");
        return ExitCode::SUCCESS;
    }
    init_logging(cli.verbose);
    let config = match load_config(&cli) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("hydrant: {error}");
            return ExitCode::from(2);
        }
    };
    if cli.check_config {
        println!("hydrant: configuration is valid");
        return ExitCode::SUCCESS;
    }
    match hydrant::shard::boot::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hydrant: {error}");
            ExitCode::FAILURE
        }
    }
}

fn passwd(args: &PasswdArgs) -> ExitCode {
    let action = if args.delete {
        PasswdAction::Delete
    } else if args.pbkdf2 {
        PasswdAction::Set(HashScheme::Pbkdf2Sha512 {
            iterations: args.iterations,
        })
    } else {
        PasswdAction::Set(HashScheme::Argon2id)
    };
    let request = PasswdRequest {
        file: args.file.clone(),
        username: args.user.clone(),
        action,
        create: args.create,
    };
    match hydrant::auth::passwd::run(&request) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hydrant passwd: {error}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(cli: &Cli) -> Result<Config, hydrant::config::ConfigError> {
    let mut config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(addr) = cli.bind {
        config.override_bind(addr);
    }
    if let Some(cores) = cli.cores {
        config.cores = cores;
    }
    config.validate()?;
    Ok(config)
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    // rustls warns once per client that sends an IP address as its TLS server name (as
    // mosquitto_pub does): on a busy TLS listener that would drown the log. hydrant logs
    // every failed handshake itself, so rustls is quiet unless RUST_LOG names it.
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| default.to_owned());
    let spec = if spec.contains("rustls") {
        spec
    } else {
        format!("{spec},rustls=error")
    };
    let filter = EnvFilter::try_new(&spec).unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
