//! The command line: one subcommand per scenario, each with the common target, load and output
//! options, plus `run FILE.toml` for the same options written in a file (see [`file`]).

pub mod file;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::transport::Transport;

/// A load generator for MQTT brokers: reproduces the classic broker load tests and reports
/// throughput, loss and latency histograms.
#[derive(Parser, Debug)]
#[command(name = "hydrant-loadtest", version, about, args_override_self = true)]
pub struct Cli {
    /// The scenario to run.
    #[command(subcommand)]
    pub command: Command,
}

/// A scenario, or a scenario file.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Few publishers, many subscribers on one topic (the firehose shape).
    Fanout(FanoutArgs),
    /// Many publishers, each on its own topic, few subscribers on a wildcard.
    Fanin(FaninArgs),
    /// N publishers each on its own topic, each with its own subscriber.
    P2p(P2pArgs),
    /// N idle connections opened at a given rate and held.
    Conns(ConnsArgs),
    /// Publishers that connect, publish one message and disconnect, over and over.
    Churn(ChurnArgs),
    /// Compatibility mode of the original pymqttbench tool, with its --brief line.
    Pymqttbench(PymqttbenchArgs),
    /// The infrastructure firehose: churning QoS 2 publishers of Gerrit events in JSON, many
    /// long-lived wildcard subscribers.
    Firehose(FirehoseArgs),
    /// Runs a scenario file (TOML); options given after the file override it.
    Run(RunArgs),
}

/// `run`: a scenario file and overrides.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The scenario file: `scenario = "NAME"` and any option of that scenario as `key = value`.
    pub file: PathBuf,
    /// Options that override the file's (e.g. --port 1884 --json out.json).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub overrides: Vec<OsString>,
}

/// Where the broker is and how clients connect.
#[derive(Args, Debug, Clone)]
pub struct TargetArgs {
    /// Broker host name or address.
    #[arg(long, visible_alias = "hostname", default_value = "127.0.0.1")]
    pub host: String,
    /// Broker port (of the listener speaking --transport).
    #[arg(long, default_value_t = 1883)]
    pub port: u16,
    /// How clients reach the broker: MQTT over TCP, over TLS, over WebSocket, or over
    /// WebSocket over TLS.
    #[arg(long, value_enum, default_value_t = Transport::Mqtt)]
    pub transport: Transport,
    /// PEM CA certificates the broker's certificate must be signed by (mqtt+tls, wss)
    /// [default: the system's, $SSL_CERT_FILE or /etc/ssl/certs/ca-certificates.crt].
    #[arg(long, value_name = "PATH")]
    pub cafile: Option<PathBuf>,
    /// Do not verify the broker's certificate (self-signed benchmarking only).
    #[arg(long, conflicts_with = "cafile")]
    pub insecure: bool,
    /// PEM client certificate chain every client presents when the broker asks (needs
    /// --keyfile).
    #[arg(long, value_name = "PATH", requires = "keyfile")]
    pub certfile: Option<PathBuf>,
    /// PEM private key of --certfile.
    #[arg(long, value_name = "PATH", requires = "certfile")]
    pub keyfile: Option<PathBuf>,
    /// Name the broker's certificate must be valid for, also sent as SNI [default: --host].
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,
    /// HTTP path of the WebSocket upgrade (ws, wss).
    #[arg(long, value_name = "PATH", default_value = "/mqtt")]
    pub ws_path: String,
    /// User name every client sends.
    #[arg(long)]
    pub username: Option<String>,
    /// Password every client sends (needs --username).
    #[arg(long, requires = "username")]
    pub password: Option<String>,
    /// Keep-alive in seconds every client announces (0 = off; runs never idle that long).
    #[arg(long, default_value_t = 0)]
    pub keepalive: u16,
    /// Subscribers connect with a persistent session (MQTT 3.1.1 clean session 0), which the
    /// broker keeps (and, with persistence, writes) for them: to measure QoS 1/2 publishing to
    /// persistent sessions. The sessions outlive the run; start the broker afresh for the next.
    #[arg(long)]
    pub persistent_subscribers: bool,
    /// Longest wait for a TCP connect, TLS handshake, WebSocket upgrade, CONNACK, SUBACK or
    /// acknowledgement.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Generator threads (glommio executors), each running a share of the clients.
    #[arg(long, default_value_t = 1)]
    pub cores: usize,
    /// Prefix of every client id (default: "hl" and the process id).
    #[arg(long)]
    pub client_id_prefix: Option<String>,
    /// Seed of the random choices (topics, payload sizes); default: the process id.
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Load shape shared by the publishing scenarios.
#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// QoS of publications and subscriptions: 0, 1 or 2 [default: 0; firehose: 2].
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: Option<u8>,
    /// Payload size in bytes, at least 24 (the tracking header) [default: 64].
    #[arg(long)]
    pub size: Option<usize>,
    /// Messages per second per publisher; 0 = unlimited (bounded by --window for QoS 1/2)
    /// [default: 0; firehose: 10].
    #[arg(long)]
    pub rate: Option<f64>,
    /// Unacknowledged QoS 1/2 messages a persistent publisher may have in flight.
    #[arg(long, default_value_t = 64)]
    pub window: u16,
    /// Publishing time before measuring starts (excluded from every figure).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Measured publishing time.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Longest wait for the last deliveries after publishing stops.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Connections opened per second while setting up subscribers and publishers
    /// [default: unlimited, 64 at a time per core].
    #[arg(long)]
    pub connect_rate: Option<f64>,
}

/// What to write besides the summary table.
#[derive(Args, Debug, Clone, Default)]
pub struct OutputArgs {
    /// Write the full report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the latency distribution as an HdrHistogram percentile file (.hgrm, milliseconds).
    #[arg(long, value_name = "FILE")]
    pub hgrm: Option<PathBuf>,
    /// Write a latency-by-percentile plot as SVG.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Sample this broker process's memory and CPU during the run.
    #[arg(long, value_name = "PID")]
    pub broker_pid: Option<u32>,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// `fanout`.
#[derive(Args, Debug, Clone)]
pub struct FanoutArgs {
    /// Publishers, all on the one topic.
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Subscribers, all on the one topic.
    #[arg(long, default_value_t = 100)]
    pub subscribers: usize,
    /// The topic.
    #[arg(long, default_value = "loadtest/fanout")]
    pub topic: String,
    /// Where the broker is and how clients connect.
    #[command(flatten, next_help_heading = "Broker")]
    pub target: TargetArgs,
    /// The load shape.
    #[command(flatten, next_help_heading = "Load")]
    pub load: LoadArgs,
    /// Outputs.
    #[command(flatten, next_help_heading = "Output")]
    pub output: OutputArgs,
}

/// `fanin`.
#[derive(Args, Debug, Clone)]
pub struct FaninArgs {
    /// Publishers, publisher i on PREFIX/i.
    #[arg(long, default_value_t = 100)]
    pub publishers: usize,
    /// Subscribers, each on PREFIX/+.
    #[arg(long, default_value_t = 1)]
    pub subscribers: usize,
    /// Topic prefix.
    #[arg(long, default_value = "loadtest/fanin")]
    pub topic_prefix: String,
    /// Where the broker is and how clients connect.
    #[command(flatten, next_help_heading = "Broker")]
    pub target: TargetArgs,
    /// The load shape.
    #[command(flatten, next_help_heading = "Load")]
    pub load: LoadArgs,
    /// Outputs.
    #[command(flatten, next_help_heading = "Output")]
    pub output: OutputArgs,
}

/// `p2p`.
#[derive(Args, Debug, Clone)]
pub struct P2pArgs {
    /// Publisher/subscriber pairs, pair i on PREFIX/i.
    #[arg(long, default_value_t = 100)]
    pub pairs: usize,
    /// Topic prefix.
    #[arg(long, default_value = "loadtest/p2p")]
    pub topic_prefix: String,
    /// Where the broker is and how clients connect.
    #[command(flatten, next_help_heading = "Broker")]
    pub target: TargetArgs,
    /// The load shape.
    #[command(flatten, next_help_heading = "Load")]
    pub load: LoadArgs,
    /// Outputs.
    #[command(flatten, next_help_heading = "Output")]
    pub output: OutputArgs,
}

/// `conns`.
#[derive(Args, Debug, Clone)]
pub struct ConnsArgs {
    /// Idle connections to open.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Connections opened per second; 0 = as fast as possible (128 at a time per core).
    #[arg(long, default_value_t = 1000.0)]
    pub connect_rate: f64,
    /// How long all connections are held once open.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Where the broker is and how clients connect.
    #[command(flatten, next_help_heading = "Broker")]
    pub target: TargetArgs,
    /// Outputs.
    #[command(flatten, next_help_heading = "Output")]
    pub output: OutputArgs,
}

/// `churn`.
#[derive(Args, Debug, Clone)]
pub struct ChurnArgs {
    /// Churning publishers; each runs connect → publish → disconnect in a loop, --rate times a
    /// second (0 = back to back).
    #[arg(long, default_value_t = 10)]
    pub publishers: usize,
    /// Long-lived subscribers on the topic.
    #[arg(long, default_value_t = 10)]
    pub subscribers: usize,
    /// The topic.
    #[arg(long, default_value = "loadtest/churn")]
    pub topic: String,
    /// Where the broker is and how clients connect.
    #[command(flatten, next_help_heading = "Broker")]
    pub target: TargetArgs,
    /// The load shape.
    #[command(flatten, next_help_heading = "Load")]
    pub load: LoadArgs,
    /// Outputs.
    #[command(flatten, next_help_heading = "Output")]
    pub output: OutputArgs,
}

/// `pymqttbench`: the original tool's options, under the original names.
#[derive(Args, Debug, Clone)]
pub struct PymqttbenchArgs {
    /// Publisher workers.
    #[arg(long, default_value_t = 10)]
    pub pub_clients: usize,
    /// Subscriber workers.
    #[arg(long, default_value_t = 10)]
    pub sub_clients: usize,
    /// Messages each publisher sends, each through a new connection.
    #[arg(long, default_value_t = 10)]
    pub pub_count: u64,
    /// Messages after which a subscriber's clock stops.
    #[arg(long, default_value_t = 10)]
    pub sub_count: u64,
    /// Payload size in bytes (honoured with --intended only).
    #[arg(long, default_value_t = 1024)]
    pub msg_size: usize,
    /// Seconds a subscriber waits for its messages (and the drain bound).
    #[arg(long, default_value_t = 60)]
    pub sub_timeout: u64,
    /// Seconds the publishers may take.
    #[arg(long, default_value_t = 60)]
    pub pub_timeout: u64,
    /// Topic the publishers use [default: pybench]; the original's subscribers ignore it.
    #[arg(long)]
    pub topic: Option<String>,
    /// QoS (the original publishes at QoS 0 whatever this says; subscriptions honour it).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Print the original's one-line colon-separated result first.
    #[arg(long)]
    pub brief: bool,
    /// Behave as the original was meant to: honour --msg-size, --qos and --topic.
    #[arg(long)]
    pub intended: bool,
    /// The original's TLS option: CA file of the broker's certificate; turns TLS on (as
    /// --transport mqtt+tls --cafile, or the CA of --transport wss).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["cafile", "insecure"])]
    pub cacert: Option<PathBuf>,
    /// Where the broker is and how clients connect.
    #[command(flatten, next_help_heading = "Broker")]
    pub target: TargetArgs,
    /// Outputs.
    #[command(flatten, next_help_heading = "Output")]
    pub output: OutputArgs,
}

/// `firehose`.
#[derive(Args, Debug, Clone)]
pub struct FirehoseArgs {
    /// Churning publishers (services), each publishing --rate events a second.
    #[arg(long, default_value_t = 3)]
    pub publishers: usize,
    /// Long-lived subscribers: half on '#', the rest on narrower wildcards.
    #[arg(long, default_value_t = 100)]
    pub subscribers: usize,
    /// Namespaces in the topic tree gerrit/<namespace>/<repo>/<event>.
    #[arg(long, default_value_t = 3)]
    pub namespaces: usize,
    /// Repositories per namespace.
    #[arg(long, default_value_t = 20)]
    pub repos: usize,
    /// Smallest JSON payload in bytes.
    #[arg(long, default_value_t = 1024)]
    pub min_size: usize,
    /// Largest JSON payload in bytes.
    #[arg(long, default_value_t = 10240)]
    pub max_size: usize,
    /// Where the broker is and how clients connect.
    #[command(flatten, next_help_heading = "Broker")]
    pub target: TargetArgs,
    /// The load shape.
    #[command(flatten, next_help_heading = "Load")]
    pub load: LoadArgs,
    /// Outputs.
    #[command(flatten, next_help_heading = "Output")]
    pub output: OutputArgs,
}

/// Parses a duration: a number of seconds ("10", "2.5") or with a unit ("500ms", "10s",
/// "2m", "1h").
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (e.g. 10, 2.5s, 500ms, 2m)"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit '{other}' (use ms, s, m or h)"
            ))
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("'{text}' is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_parse_with_and_without_units() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 fortnights").is_err());
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn later_options_override_earlier_ones() {
        let cli = Cli::try_parse_from([
            "hydrant-loadtest",
            "fanout",
            "--port",
            "1",
            "--port",
            "2",
            "--hostname",
            "localhost",
        ])
        .unwrap();
        let Command::Fanout(args) = cli.command else {
            panic!("not fanout")
        };
        assert_eq!(args.target.port, 2);
        assert_eq!(args.target.host, "localhost");
        assert_eq!(args.subscribers, 100);
    }
}
