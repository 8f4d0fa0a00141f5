//! `firehose`: the deployment hydrant is built for. A few services publish Gerrit events as
//! JSON (1–10 KiB) on `gerrit/<namespace>/<repo>/<event>`, each event through a new
//! authenticated connection at QoS 2; many long-lived subscribers listen on `#` and on
//! narrower wildcards.

use super::{count, filter, qos, rate, timed_plan, topic};
use crate::cli::FirehoseArgs;
use crate::payload::GERRIT_EVENTS;
use crate::plan::{
    impossible, PayloadSpec, Plan, PlanError, PublishMode, PublisherPlan, SubscriberPlan,
};

/// Namespaces of the synthetic topic tree (the first `--namespaces` are used).
const NAMESPACES: [&str; 8] = [
    "openstack",
    "openstack-infra",
    "openstack-dev",
    "x",
    "zuul",
    "starlingx",
    "airship",
    "kata",
];

/// Repository names (the first `--repos` are used, then numbered ones).
const REPOS: [&str; 20] = [
    "nova",
    "neutron",
    "cinder",
    "glance",
    "keystone",
    "swift",
    "horizon",
    "heat",
    "ironic",
    "octavia",
    "manila",
    "designate",
    "barbican",
    "zaqar",
    "trove",
    "sahara",
    "magnum",
    "kolla",
    "tempest",
    "devstack",
];

/// Default events per second per publisher.
const DEFAULT_RATE: f64 = 10.0;

fn repo_name(index: usize) -> String {
    REPOS
        .get(index)
        .map_or_else(|| format!("repo{index}"), |name| (*name).to_owned())
}

/// The filter of subscriber `index`: half on `#`, the rest spread over narrower wildcards.
fn subscription(index: usize) -> String {
    let (namespace, repo) = (NAMESPACES[0], repo_name(0));
    match index % 10 {
        0..=4 => "#".to_owned(),
        5 => "gerrit/#".to_owned(),
        6 => format!("gerrit/{namespace}/#"),
        7 => "gerrit/+/+/comment-added".to_owned(),
        8 => format!("gerrit/{namespace}/{repo}/#"),
        _ => format!("gerrit/+/{repo}/+"),
    }
}

/// The plan of a firehose run.
pub fn plan(args: &FirehoseArgs) -> Result<Plan, PlanError> {
    if args.namespaces == 0 || args.namespaces > NAMESPACES.len() {
        return Err(impossible(format!(
            "--namespaces must be between 1 and {}",
            NAMESPACES.len()
        )));
    }
    if args.repos == 0 || args.repos > 10_000 {
        return Err(impossible("--repos must be between 1 and 10000"));
    }
    if args.load.size.is_some() {
        return Err(impossible(
            "firehose payloads are JSON of random sizes: use --min-size and --max-size, not --size",
        ));
    }
    let level = qos(args.load.qos.unwrap_or(2))?;
    let publish_rate = rate(args.load.rate.unwrap_or(DEFAULT_RATE))?;
    let pace = publish_rate.map_or("back to back".to_owned(), |r| format!("{r} events/s each"));
    let description = format!(
        "{} of Gerrit events (new connection per event, QoS {}, {pace}, JSON {}–{} bytes) → {} \
         on '#' and narrower wildcards of gerrit/<ns>/<repo>/<event>",
        count(args.publishers, "publisher"),
        level as u8,
        args.min_size,
        args.max_size,
        count(args.subscribers, "subscriber"),
    );
    let mut plan = timed_plan("firehose", description, &args.target, &args.load)?;
    for index in 0..args.subscribers {
        plan.subscribers.push(SubscriberPlan {
            filter: filter(&subscription(index))?,
            qos: level,
        });
    }
    for index in 0..args.publishers {
        let mut streams = Vec::new();
        for namespace in &NAMESPACES[..args.namespaces] {
            for repo in 0..args.repos {
                for event in GERRIT_EVENTS {
                    let name = topic(&format!("gerrit/{namespace}/{}/{event}", repo_name(repo)))?;
                    streams.push(plan.add_stream(index, name)?);
                }
            }
        }
        plan.publishers.push(PublisherPlan {
            streams,
            qos: level,
            payload: PayloadSpec::GerritJson {
                min: args.min_size,
                max: args.max_size,
            },
            mode: PublishMode::Churn,
            rate: publish_rate,
            limit: None,
            label: None,
        });
    }
    Ok(plan)
}
