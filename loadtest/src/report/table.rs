//! The summary table printed at the end of every run.

use std::fmt::Write;

use super::progress::{format_ms, group};
use super::RunReport;
use crate::latency::Percentiles;
use crate::sampler::Usage;

/// Bytes as MiB with one decimal.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// A rate with thousands separators and one decimal.
fn rate(per_second: f64) -> String {
    let whole = per_second.trunc().max(0.0) as u64;
    let tenth = ((per_second - per_second.trunc()) * 10.0)
        .round()
        .clamp(0.0, 9.0) as u64;
    format!("{}.{tenth}/s", group(whole))
}

fn percentile_line(p: &Percentiles) -> String {
    format!(
        "p50 {}   p90 {}   p99 {}   p99.9 {}   max {}",
        format_ms(p.p50_ms),
        format_ms(p.p90_ms),
        format_ms(p.p99_ms),
        format_ms(p.p999_ms),
        format_ms(p.max_ms)
    )
}

fn usage_line(usage: &Usage) -> String {
    format!(
        "CPU {:.2} s ({:.1}% of one core)   peak RSS {}   RSS start → end {} → {}",
        usage.cpu_seconds,
        usage.cpu_percent,
        mib(usage.peak_rss_bytes),
        mib(usage.baseline_rss_bytes),
        mib(usage.end_rss_bytes)
    )
}

/// The summary table of a report.
pub fn render(report: &RunReport) -> String {
    let mut rows: Vec<(&str, String)> = Vec::new();
    let t = &report.timing;
    rows.push(("broker", report.broker.clone()));
    rows.push((
        "timing",
        format!(
            "set-up {:.2} s   warm-up {:.1} s   measured {:.2} s   drain {:.2} s{}",
            t.setup_s,
            t.warmup_s,
            t.measured_s,
            t.drain_s,
            if t.drain_timed_out {
                "  (drain timed out)"
            } else {
                ""
            }
        ),
    ));
    let m = &report.messages;
    let d = &m.deliveries;
    let has_messages = m.sent_total > 0 || d.delivered > 0 || d.expected > 0;
    if has_messages {
        rows.push((
            "sent",
            format!(
                "{:>14}   {}   ({} in all, warm-up included)",
                group(m.sent),
                rate(m.sent_per_s),
                group(m.sent_total)
            ),
        ));
        rows.push(("expected", format!("{:>14}", group(d.expected))));
        rows.push((
            "delivered",
            format!("{:>14}   {}", group(d.delivered), rate(m.delivered_per_s)),
        ));
        rows.push((
            "receive rate",
            format!(
                "{:>14}   (every delivery arriving during the window, whenever sent)",
                rate(m.received_per_s)
            ),
        ));
        rows.push((
            "lost",
            format!(
                "{:>14}   {:.3}%   ({} of {} publisher/subscriber pairs lost messages){}",
                group(d.lost),
                m.loss_percent,
                group(m.pairs_with_loss as u64),
                group(m.pairs as u64),
                if t.drain_timed_out && d.lost > 0 {
                    "; the drain timed out, so some may only be late"
                } else {
                    ""
                }
            ),
        ));
        let untracked = if m.untracked {
            "   (untracked payloads: surplus deliveries only)"
        } else {
            ""
        };
        rows.push((
            "duplicated",
            format!("{:>14}{untracked}", group(d.duplicated)),
        ));
        rows.push(("reordered", format!("{:>14}", group(d.reordered))));
        if d.unexpected > 0 {
            rows.push(("unexpected", format!("{:>14}", group(d.unexpected))));
        }
        rows.push((
            "latency",
            match &report.latency {
                Some(p) => format!("{}   (n = {})", percentile_line(p), group(p.count)),
                None if m.untracked => {
                    "not measured: payloads too short for the tracking header".to_owned()
                }
                None => "no deliveries".to_owned(),
            },
        ));
    }
    let c = &report.connect;
    rows.push((
        "connections",
        format!(
            "{} opened   {} errors   {} subscribers dropped",
            group(c.connections),
            group(c.errors),
            group(c.subscribers_dropped)
        ),
    ));
    if c.connections > 0 {
        rows.push(("connect time", percentile_line(&c.latency)));
    }
    if let Some(conns) = &report.conns {
        rows.push((
            "conns",
            format!(
                "{} of {} open in {:.2} s   {}{}",
                group(conns.open),
                group(conns.requested as u64),
                conns.connect_s,
                rate(conns.connects_per_s),
                conns
                    .broker_bytes_per_connection
                    .map_or(String::new(), |b| format!(
                        "   broker memory {b:.0} bytes per connection"
                    ))
            ),
        ));
    }
    if let Some(usage) = &report.broker_usage {
        rows.push(("broker use", usage_line(usage)));
    }
    if let Some(usage) = &report.generator_usage {
        rows.push(("generator use", usage_line(usage)));
    }
    for error in &report.errors {
        rows.push((
            "error",
            format!(
                "{} × {} (first: {})",
                group(error.count),
                error.message,
                error.first_client
            ),
        ));
    }

    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "hydrant-loadtest {} — {}",
        report.scenario, report.description
    );
    for (key, value) in rows {
        let _ = writeln!(out, "  {key:<width$}  {value}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::DeliveryCounts;
    use crate::report::{ConnectReport, MessageReport, TimingReport};

    fn sample() -> RunReport {
        RunReport {
            scenario: "fanout",
            description: "1 publisher → 2 subscribers".into(),
            broker: "127.0.0.1:1883".into(),
            generator_cores: 1,
            timing: TimingReport {
                measured_s: 2.0,
                ..TimingReport::default()
            },
            messages: MessageReport {
                sent_total: 120,
                sent: 100,
                deliveries: DeliveryCounts {
                    expected: 200,
                    delivered: 190,
                    unique: 190,
                    lost: 10,
                    ..DeliveryCounts::default()
                },
                loss_percent: 5.0,
                sent_per_s: 50.0,
                delivered_per_s: 95.0,
                received_per_s: 96.0,
                pairs: 2,
                pairs_with_loss: 1,
                untracked: false,
            },
            latency: Some(Percentiles {
                count: 190,
                p50_ms: 0.25,
                p99_ms: 1.5,
                max_ms: 12.0,
                ..Percentiles::default()
            }),
            connect: ConnectReport {
                connections: 3,
                ..ConnectReport::default()
            },
            broker_usage: None,
            generator_usage: None,
            conns: None,
            pymqttbench: None,
            errors: vec![],
            anomalous_pairs: vec![],
        }
    }

    #[test]
    fn table_shows_every_figure() {
        let rendered = render(&sample());
        let table = rendered.split_whitespace().collect::<Vec<_>>().join(" ");
        for needle in [
            "hydrant-loadtest fanout — 1 publisher → 2 subscribers",
            "sent 100 50.0/s",
            "expected 200",
            "delivered 190 95.0/s",
            "lost 10 5.000% (1 of 2",
            "duplicated 0",
            "reordered 0",
            "p50 0.250 ms",
            "p99 1.500 ms",
            "max 12.0 ms",
            "3 opened",
        ] {
            assert!(table.contains(needle), "missing {needle:?} in\n{rendered}");
        }
    }

    #[test]
    fn json_report_round_trips_through_serde_json() {
        let json = crate::report::to_json(&sample());
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["messages"]["lost"], 10);
        assert_eq!(value["messages"]["expected"], 200);
        assert_eq!(value["latency"]["p99_ms"], 1.5);
        assert_eq!(value["scenario"], "fanout");
    }
}
