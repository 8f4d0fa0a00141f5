//! The scenarios: each turns its command-line options into a [`Plan`]. What they share (the
//! target, topics, QoS, rates, timing) is here; one module per scenario holds its shape.

mod churn;
mod conns;
mod fanin;
mod fanout;
mod firehose;
mod p2p;
pub mod pymqttbench;

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use hydrant::protocol::QoS;
use hydrant::topic::{TopicFilter, TopicName};

use crate::cli::{Command, LoadArgs, OutputArgs, PymqttbenchArgs, TargetArgs};
use crate::client::ConnectOptions;
use crate::plan::{
    impossible, PayloadSpec, Plan, PlanError, PublishMode, PublisherPlan, SubscriberPlan, Target,
    Timing,
};
use crate::transport::tls::TlsOptions;
use crate::transport::TransportSetup;

/// Default payload size of the publishing scenarios.
pub const DEFAULT_SIZE: usize = 64;

/// A scenario ready to run: its plan, its outputs, and what its report adds.
#[derive(Debug)]
pub struct Scenario {
    /// What to run.
    pub plan: Plan,
    /// What to write.
    pub output: OutputArgs,
    /// pymqttbench's options, for its extra report lines.
    pub pymqttbench: Option<PymqttbenchArgs>,
}

/// Builds the scenario a command asks for (not `run`, which is resolved before).
pub fn build(command: &Command) -> Result<Scenario, PlanError> {
    let (plan, output, pymqttbench) = match command {
        Command::Fanout(args) => (fanout::plan(args)?, args.output.clone(), None),
        Command::Fanin(args) => (fanin::plan(args)?, args.output.clone(), None),
        Command::P2p(args) => (p2p::plan(args)?, args.output.clone(), None),
        Command::Conns(args) => (conns::plan(args)?, args.output.clone(), None),
        Command::Churn(args) => (churn::plan(args)?, args.output.clone(), None),
        Command::Firehose(args) => (firehose::plan(args)?, args.output.clone(), None),
        Command::Pymqttbench(args) => (
            pymqttbench::plan(args)?,
            args.output.clone(),
            Some(args.clone()),
        ),
        Command::Run(_) => return Err(impossible("a scenario file cannot run another one")),
    };
    Ok(Scenario {
        plan: plan.finish()?,
        output,
        pymqttbench,
    })
}

/// Resolves the broker address (IPv4 preferred).
fn resolve(host: &str, port: u16) -> Result<SocketAddr, PlanError> {
    let addresses: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| impossible(format!("cannot resolve broker host '{host}': {e}")))?
        .collect();
    addresses
        .iter()
        .find(|a| a.is_ipv4())
        .or(addresses.first())
        .copied()
        .ok_or_else(|| impossible(format!("broker host '{host}' has no address")))
}

/// An empty plan for `scenario` with the target and generator settings of `args`.
fn base_plan(
    scenario: &'static str,
    description: String,
    args: &TargetArgs,
    timing: Timing,
    drain_timeout: Duration,
) -> Result<Plan, PlanError> {
    let addr = resolve(&args.host, args.port)?;
    let pid = std::process::id();
    let prefix = args
        .client_id_prefix
        .clone()
        .unwrap_or_else(|| format!("hl{pid:x}"));
    if prefix.is_empty() || prefix.len() > 64 {
        return Err(impossible("--client-id-prefix must be 1 to 64 characters"));
    }
    let transport = transport_setup(args)?;
    Ok(Plan {
        scenario,
        description,
        target: Target {
            addr,
            display: transport.describe(&args.host, args.port),
            connect: ConnectOptions {
                addr,
                username: args.username.clone(),
                password: Plan::password_bytes(args.password.as_deref()),
                keep_alive: args.keepalive,
                timeout: args.connect_timeout,
                persistent_subscribers: args.persistent_subscribers,
                transport,
            },
            client_id_prefix: prefix,
        },
        subscribers: Vec::new(),
        publishers: Vec::new(),
        streams: Vec::new(),
        idle: None,
        timing,
        drain_timeout,
        setup_connect_rate: None,
        subscriber_target: None,
        cores: args.cores,
        seed: args.seed.unwrap_or(u64::from(pid)),
    })
}

/// The transport of `args`: TLS options are refused for transports without TLS, so that a
/// forgotten `--transport` is not a silent plain-text run.
fn transport_setup(args: &TargetArgs) -> Result<TransportSetup, PlanError> {
    let tls_options = [
        ("--cafile", args.cafile.is_some()),
        ("--insecure", args.insecure),
        ("--certfile", args.certfile.is_some()),
        ("--server-name", args.server_name.is_some()),
    ];
    if !args.transport.uses_tls() {
        if let Some((option, _)) = tls_options.iter().find(|(_, given)| *given) {
            return Err(impossible(format!(
                "{option} is a TLS option: add --transport mqtt+tls or --transport wss"
            )));
        }
    }
    let tls = TlsOptions {
        cafile: args.cafile.clone(),
        certfile: args.certfile.clone(),
        keyfile: args.keyfile.clone(),
        insecure: args.insecure,
        server_name: args
            .server_name
            .clone()
            .unwrap_or_else(|| args.host.clone()),
    };
    Ok(TransportSetup::new(
        args.transport,
        &args.host,
        args.port,
        Some(&tls),
        &args.ws_path,
    )?)
}

/// The timed plan of a publishing scenario.
fn timed_plan(
    scenario: &'static str,
    description: String,
    target: &TargetArgs,
    load: &LoadArgs,
) -> Result<Plan, PlanError> {
    let mut plan = base_plan(
        scenario,
        description,
        target,
        Timing::Timed {
            warmup: load.warmup,
            duration: load.duration,
        },
        load.drain_timeout,
    )?;
    plan.setup_connect_rate = load.connect_rate;
    Ok(plan)
}

/// A validated topic name.
fn topic(text: &str) -> Result<TopicName, PlanError> {
    TopicName::try_from(text).map_err(|e| impossible(format!("invalid topic '{text}': {e}")))
}

/// A validated topic filter.
fn filter(text: &str) -> Result<TopicFilter, PlanError> {
    TopicFilter::try_from(text)
        .map_err(|e| impossible(format!("invalid topic filter '{text}': {e}")))
}

/// The QoS of a validated 0..=2 option.
fn qos(level: u8) -> Result<QoS, PlanError> {
    QoS::from_u8(level).ok_or_else(|| impossible(format!("QoS {level} does not exist (0, 1 or 2)")))
}

/// A rate option: 0 = unlimited.
fn rate(value: f64) -> Result<Option<f64>, PlanError> {
    if !value.is_finite() || value < 0.0 {
        return Err(impossible(format!(
            "rate {value} is not a positive number (0 = unlimited)"
        )));
    }
    Ok((value > 0.0).then_some(value))
}

/// Describes a load for reports, e.g. "QoS 1, 64-byte payloads, unlimited rate (window 64)".
fn describe_load(qos: QoS, payload: &str, rate: Option<f64>, window: Option<u16>) -> String {
    let pace = match (rate, window) {
        (Some(rate), _) => format!("{rate} msg/s per publisher"),
        (None, Some(window)) if qos != QoS::AtMostOnce => {
            format!("unlimited rate (window {window})")
        }
        (None, _) => "unlimited rate".to_owned(),
    };
    format!("QoS {}, {payload}, {pace}", qos as u8)
}

/// Describes the load of persistent publishers (fanout, fanin, p2p) from the common options.
fn describe_persistent_load(qos: QoS, load: &LoadArgs) -> String {
    describe_load(
        qos,
        &format!("{}-byte payloads", load.size.unwrap_or(DEFAULT_SIZE)),
        load.rate.filter(|&r| r > 0.0),
        Some(load.window),
    )
}

/// Adds `count` subscribers on `filter` at `qos`.
fn add_subscribers(plan: &mut Plan, count: usize, filter: &TopicFilter, qos: QoS) {
    plan.subscribers.extend((0..count).map(|_| SubscriberPlan {
        filter: filter.clone(),
        qos,
    }));
}

/// A persistent publisher of one stream with the common load options.
fn persistent_publisher(
    plan: &mut Plan,
    index: usize,
    topic: TopicName,
    load: &LoadArgs,
) -> Result<(), PlanError> {
    let stream = plan.add_stream(index, topic)?;
    plan.publishers.push(PublisherPlan {
        streams: vec![stream],
        qos: qos(load.qos.unwrap_or(0))?,
        payload: PayloadSpec::Filler {
            size: load.size.unwrap_or(DEFAULT_SIZE),
        },
        mode: PublishMode::Persistent {
            window: load.window,
        },
        rate: rate(load.rate.unwrap_or(0.0))?,
        limit: None,
        label: None,
    });
    Ok(())
}

/// "1 publisher", "2 publishers".
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn scenario(args: &[&str]) -> Result<Scenario, PlanError> {
        let mut argv = vec!["hydrant-loadtest"];
        argv.extend_from_slice(args);
        build(&Cli::try_parse_from(argv).unwrap().command)
    }

    #[test]
    fn fanout_plan_has_one_stream_seen_by_every_subscriber() {
        let s = scenario(&[
            "fanout",
            "--publishers",
            "2",
            "--subscribers",
            "5",
            "--qos",
            "1",
        ])
        .unwrap();
        assert_eq!(s.plan.subscribers.len(), 5);
        assert_eq!(s.plan.publishers.len(), 2);
        assert!(s.plan.streams.iter().all(|st| st.fanout == 5));
        assert_eq!(s.plan.publishers[0].qos, QoS::AtLeastOnce);
    }

    #[test]
    fn fanin_and_p2p_fanouts() {
        let s = scenario(&["fanin", "--publishers", "7", "--subscribers", "2"]).unwrap();
        assert_eq!(s.plan.streams.len(), 7);
        assert!(s.plan.streams.iter().all(|st| st.fanout == 2));
        let s = scenario(&["p2p", "--pairs", "4"]).unwrap();
        assert!(s.plan.streams.iter().all(|st| st.fanout == 1));
        assert_eq!(s.plan.subscribers.len(), 4);
    }

    #[test]
    fn firehose_streams_cover_the_topic_tree() {
        let s = scenario(&[
            "firehose",
            "--publishers",
            "2",
            "--namespaces",
            "2",
            "--repos",
            "3",
        ])
        .unwrap();
        assert_eq!(s.plan.streams.len(), 2 * 2 * 3 * 11);
        assert!(s
            .plan
            .streams
            .iter()
            .all(|st| st.topic.as_str().starts_with("gerrit/")));
        assert!(s
            .plan
            .publishers
            .iter()
            .all(|p| p.mode == PublishMode::Churn));
        assert_eq!(s.plan.publishers[0].qos, QoS::ExactlyOnce);
        // Half the subscribers are on '#', so every stream reaches at least half of them.
        assert!(s.plan.streams.iter().all(|st| st.fanout >= 50));
    }

    #[test]
    fn impossible_parameters_are_refused_with_a_reason() {
        let too_small = scenario(&["fanout", "--size", "10"]).unwrap_err();
        assert!(too_small.to_string().contains("24-byte"), "{too_small}");
        assert!(scenario(&["fanout", "--subscribers", "0"]).is_err());
        assert!(scenario(&["fanout", "--duration", "0"]).is_err());
        assert!(scenario(&["fanout", "--rate=-5"]).is_err());
        assert!(scenario(&["fanout", "--topic", "a/#"]).is_err());
        assert!(scenario(&["fanout", "--cores", "0"]).is_err());
        assert!(scenario(&["firehose", "--min-size", "5000", "--max-size", "4000"]).is_err());
        assert!(scenario(&[
            "pymqttbench",
            "--pub-count",
            "1",
            "--pub-clients",
            "1",
            "--sub-count",
            "5"
        ])
        .is_err());
        assert!(scenario(&["fanout", "--cafile", "ca.pem"]).is_err());
        assert!(scenario(&["fanout", "--transport", "ws", "--insecure"]).is_err());
        assert!(scenario(&["fanout", "--transport", "ws", "--ws-path", "mqtt"]).is_err());
        let missing_ca = [
            "fanout",
            "--transport",
            "wss",
            "--cafile",
            "/nonexistent.pem",
        ];
        assert!(matches!(
            scenario(&missing_ca),
            Err(PlanError::Transport(_))
        ));
        // pymqttbench's --cacert turns TLS on, so its CA file is read.
        assert!(matches!(
            scenario(&["pymqttbench", "--cacert", "/nonexistent.pem"]),
            Err(PlanError::Transport(_))
        ));
        assert!(scenario(&["conns", "--connections", "0"]).is_err());
    }
}
