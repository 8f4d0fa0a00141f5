//! `pymqttbench`: a reproduction of the original Python tool's runs. N subscribers on
//! `pybench/#` each wait for `--sub-count` messages (a subscriber's clock runs from its first
//! message to that one); M publishers each send `--pub-count` messages on `pybench`, each
//! through a new connection. Its `--brief` line and human report are printed as the original
//! printed them, followed by this generator's latency and loss figures.
//!
//! By default the original's defects are reproduced: an argument-order bug made the payload
//! as long as the QoS value's text (0 bytes for QoS 0) and every publish QoS 0, and the
//! subscribers ignore `--topic`. With `--intended` the run honours `--msg-size`, `--qos` and
//! `--topic`. Unlike the original, subscribers are connected and subscribed before the
//! publishers start, so no message races a subscription.

use std::time::Duration;

use hydrant::protocol::QoS;
use serde::Serialize;

use super::{base_plan, count, filter, qos, topic};
use crate::cli::{PymqttbenchArgs, TargetArgs};
use crate::engine::RunOutcome;
use crate::payload::HEADER_LEN;
use crate::plan::{
    impossible, PayloadSpec, Plan, PlanError, PublishMode, PublisherPlan, SubscriberPlan, Timing,
};
use crate::transport::Transport;

/// The original's base topic.
pub const BASE_TOPIC: &str = "pybench";

/// The target options with the original's `--cacert` applied: it names the CA and turns TLS
/// on (WebSocket stays WebSocket, over TLS).
fn with_cacert(args: &PymqttbenchArgs) -> TargetArgs {
    let mut target = args.target.clone();
    if let Some(cacert) = &args.cacert {
        target.cafile = Some(cacert.clone());
        target.transport = match target.transport {
            Transport::Ws | Transport::Wss => Transport::Wss,
            Transport::Mqtt | Transport::MqttTls => Transport::MqttTls,
        };
    }
    target
}

/// The plan of a pymqttbench run.
pub fn plan(args: &PymqttbenchArgs) -> Result<Plan, PlanError> {
    if args.pub_count.saturating_mul(args.pub_clients as u64) < args.sub_count {
        return Err(impossible(
            "The configured number of publisher clients and published message count is too \
             small for the configured subscriber count. Increase the value of --pub-count \
             and/or --pub-clients, or decrease the value of --sub-count.",
        ));
    }
    if args.pub_clients == 0 || args.sub_clients == 0 {
        return Err(impossible(
            "--pub-clients and --sub-clients must be at least 1",
        ));
    }
    if args.sub_timeout == 0 || args.pub_timeout == 0 {
        return Err(impossible(
            "--sub-timeout and --pub-timeout must be at least 1",
        ));
    }
    let requested = qos(args.qos)?;
    let publish_topic = args.topic.clone().unwrap_or_else(|| BASE_TOPIC.to_owned());
    let (subscription, publish_qos, payload, mode) = if args.intended {
        if args.msg_size < HEADER_LEN {
            return Err(impossible(format!(
                "--msg-size {} is too small for --intended runs: payloads carry a {HEADER_LEN}-byte \
                 tracking header",
                args.msg_size
            )));
        }
        (
            format!("{publish_topic}/#"),
            requested,
            PayloadSpec::Filler {
                size: args.msg_size,
            },
            "intended behaviour",
        )
    } else {
        (
            format!("{BASE_TOPIC}/#"),
            QoS::AtMostOnce,
            PayloadSpec::Untracked {
                size: usize::from(args.qos),
            },
            "original behaviour",
        )
    };
    let payload_text = match payload {
        PayloadSpec::Untracked { size } => format!("{size}-byte untracked payloads"),
        PayloadSpec::Filler { size } | PayloadSpec::GerritJson { max: size, .. } => {
            format!("{size}-byte payloads")
        }
    };
    let description = format!(
        "pymqttbench ({mode}): {} on {subscription} (QoS {}) waiting for {} messages, {} \
         each sending {} messages on {publish_topic} through a new connection per message, \
         QoS {}, {payload_text}",
        count(args.sub_clients, "subscriber"),
        requested as u8,
        args.sub_count,
        count(args.pub_clients, "publisher"),
        args.pub_count,
        publish_qos as u8,
    );
    let mut plan = base_plan(
        "pymqttbench",
        description,
        &with_cacert(args),
        Timing::UntilPublished {
            timeout: Duration::from_secs(args.pub_timeout),
        },
        Duration::from_secs(args.sub_timeout),
    )?;
    plan.subscriber_target = Some(args.sub_count);
    let subscription = filter(&subscription)?;
    for _ in 0..args.sub_clients {
        plan.subscribers.push(SubscriberPlan {
            filter: subscription.clone(),
            qos: requested,
        });
    }
    let name = topic(&publish_topic)?;
    for index in 0..args.pub_clients {
        let stream = plan.add_stream(index, name.clone())?;
        plan.publishers.push(PublisherPlan {
            streams: vec![stream],
            qos: publish_qos,
            payload,
            mode: PublishMode::Churn,
            rate: None,
            limit: Some(args.pub_count),
            label: Some(format!("pub-{index}")),
        });
    }
    Ok(plan)
}

/// The original tool's figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PymqttbenchResult {
    /// Subscriber workers configured.
    pub sub_clients: usize,
    /// Publisher workers configured.
    pub pub_clients: usize,
    /// Mean subscriber duration (first to `--sub-count`-th message), seconds.
    pub sub_mean_duration: f64,
    /// Population standard deviation of the subscriber durations.
    pub sub_std_dev: f64,
    /// `sub_count / sub_mean_duration`.
    pub sub_avg_throughput: f64,
    /// `sub_count * sub_clients / sub_mean_duration`.
    pub sub_total_throughput: f64,
    /// Mean publisher duration (start to last message), seconds.
    pub pub_mean_duration: f64,
    /// Population standard deviation of the publisher durations.
    pub pub_std_dev: f64,
    /// `pub_count / pub_mean_duration`.
    pub pub_avg_throughput: f64,
    /// `pub_count * pub_clients / pub_mean_duration`.
    pub pub_total_throughput: f64,
    /// Subscribers that never received `--sub-count` messages.
    pub failed_subscribers: usize,
    /// Publishers that did not send all their messages.
    pub failed_publishers: usize,
}

/// Mean and population standard deviation (NaN for no values, as numpy gives).
pub fn mean_and_std(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, variance.sqrt())
}

/// The original's figures from a finished run.
pub fn result(args: &PymqttbenchArgs, outcome: &RunOutcome) -> PymqttbenchResult {
    let seconds = |from: u64, to: u64| to.saturating_sub(from) as f64 / 1e9;
    let sub_times: Vec<f64> = outcome
        .executors
        .iter()
        .flat_map(|e| &e.subscribers)
        .filter_map(|s| Some(seconds(s.first_delivery_ns?, s.target_reached_ns?)))
        .collect();
    let pub_times: Vec<f64> = outcome
        .executors
        .iter()
        .flat_map(|e| &e.publishers)
        .filter(|p| p.completed)
        .filter_map(|p| Some(seconds(p.started_ns?, p.finished_ns?)))
        .collect();
    let (sub_mean, sub_std) = mean_and_std(&sub_times);
    let (pub_mean, pub_std) = mean_and_std(&pub_times);
    let sub_count = args.sub_count as f64;
    let pub_count = args.pub_count as f64;
    PymqttbenchResult {
        sub_clients: args.sub_clients,
        pub_clients: args.pub_clients,
        sub_mean_duration: sub_mean,
        sub_std_dev: sub_std,
        sub_avg_throughput: sub_count / sub_mean,
        sub_total_throughput: sub_count * args.sub_clients as f64 / sub_mean,
        pub_mean_duration: pub_mean,
        pub_std_dev: pub_std,
        pub_avg_throughput: pub_count / pub_mean,
        pub_total_throughput: pub_count * args.pub_clients as f64 / pub_mean,
        failed_subscribers: args.sub_clients - sub_times.len().min(args.sub_clients),
        failed_publishers: args.pub_clients - pub_times.len().min(args.pub_clients),
    }
}

/// A float as Python's `str()` writes it: shortest round-trip digits, `.0` on integral
/// values, scientific notation below 1e-4 and from 1e16, `nan` and `inf`.
pub fn python_float(value: f64) -> String {
    if value.is_nan() {
        return "nan".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    let magnitude = value.abs();
    if magnitude != 0.0 && !(1e-4..1e16).contains(&magnitude) {
        let text = format!("{value:e}");
        let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
        let (sign, digits) = match exponent.strip_prefix('-') {
            Some(digits) => ('-', digits),
            None => ('+', exponent),
        };
        return format!("{mantissa}e{sign}{digits:0>2}");
    }
    if value.fract() == 0.0 {
        return format!("{value:.1}");
    }
    format!("{value}")
}

impl PymqttbenchResult {
    fn fields(&self) -> [String; 10] {
        [
            self.sub_clients.to_string(),
            self.pub_clients.to_string(),
            python_float(self.sub_mean_duration),
            python_float(self.sub_std_dev),
            python_float(self.sub_avg_throughput),
            python_float(self.sub_total_throughput),
            python_float(self.pub_mean_duration),
            python_float(self.pub_std_dev),
            python_float(self.pub_avg_throughput),
            python_float(self.pub_total_throughput),
        ]
    }

    /// The `--brief` line:
    /// `SubCount:PubCount:SubMeanDur:SubStdDev:SubAvgThpt:SubTotalThpt:PubMeanDur:PubStdDev:PubAvgThpt:PubTotalThpt`.
    pub fn brief_line(&self) -> String {
        self.fields().join(":")
    }

    /// The original's lines about failed workers (none when all finished).
    pub fn failure_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.failed_subscribers > 0 {
            lines.push(format!(
                "{} subscription workers failed",
                self.failed_subscribers
            ));
        }
        if self.failed_publishers > 0 {
            lines.push(format!(
                "{} publishing workers failed",
                self.failed_publishers
            ));
        }
        lines
    }

    /// The original's human-readable report.
    pub fn human_report(&self) -> String {
        let [subs, pubs, sub_mean, sub_std, sub_avg, sub_total, pub_mean, pub_std, pub_avg, pub_total] =
            self.fields();
        let rule = "=".repeat(80);
        format!(
            "[ran with {subs} subscribers and {pubs} publishers]\n{rule}\nSubscription Results\n\
             {rule}\nAvg. subscriber duration: {sub_mean}\nSubscriber duration std dev: {sub_std}\n\
             Avg. Client Throughput: {sub_avg}\n\
             Total Throughput (msg_count * clients) / (avg. sub time): {sub_total}\n{rule}\n\
             Publisher Results\n{rule}\nAvg. publisher duration: {pub_mean}\n\
             Publisher duration std dev: {pub_std}\nAvg. Client Throughput: {pub_avg}\n\
             Total Throughput (msg_count * clients) / (avg. sub time): {pub_total}\n"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_python_prints_them() {
        assert_eq!(python_float(1.0), "1.0");
        assert_eq!(python_float(0.5), "0.5");
        assert_eq!(python_float(0.012345678901234567), "0.012345678901234567");
        assert_eq!(python_float(1.5e-5), "1.5e-05");
        assert_eq!(python_float(2e20), "2e+20");
        assert_eq!(python_float(f64::NAN), "nan");
        assert_eq!(python_float(f64::INFINITY), "inf");
        assert_eq!(python_float(1234.25), "1234.25");
    }

    #[test]
    fn population_standard_deviation() {
        let (mean, std) = mean_and_std(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(mean, 2.5);
        assert!((std - 1.118_033_988_749_895).abs() < 1e-12);
        assert!(mean_and_std(&[]).0.is_nan());
    }

    #[test]
    fn brief_line_has_ten_fields_in_order() {
        let result = PymqttbenchResult {
            sub_clients: 10,
            pub_clients: 5,
            sub_mean_duration: 0.5,
            sub_std_dev: 0.25,
            sub_avg_throughput: 20.0,
            sub_total_throughput: 200.0,
            pub_mean_duration: 2.0,
            pub_std_dev: 0.0,
            pub_avg_throughput: 5.0,
            pub_total_throughput: 25.0,
            failed_subscribers: 0,
            failed_publishers: 1,
        };
        assert_eq!(
            result.brief_line(),
            "10:5:0.5:0.25:20.0:200.0:2.0:0.0:5.0:25.0"
        );
        assert_eq!(result.brief_line().split(':').count(), 10);
        assert_eq!(result.failure_lines(), ["1 publishing workers failed"]);
        let human = result.human_report();
        assert!(human.starts_with("[ran with 10 subscribers and 5 publishers]\n"));
        assert!(human.contains("Avg. subscriber duration: 0.5\n"));
        assert!(human.contains("Publisher duration std dev: 0.0\n"));
    }
}
