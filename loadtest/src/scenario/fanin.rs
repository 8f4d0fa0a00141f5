//! `fanin`: many publishers, each on its own topic, into few subscribers on one wildcard: the
//! test of a broker's ingest path and of flow control towards a busy subscriber.

use super::{
    count, describe_load, filter, persistent_publisher, qos, timed_plan, topic, DEFAULT_SIZE,
};
use crate::cli::FaninArgs;
use crate::plan::{Plan, PlanError, SubscriberPlan};

/// The plan of a fanin run.
pub fn plan(args: &FaninArgs) -> Result<Plan, PlanError> {
    let level = qos(args.load.qos.unwrap_or(0))?;
    let description = format!(
        "{} on {prefix}/<i> → {} on {prefix}/+, {}",
        count(args.publishers, "publisher"),
        count(args.subscribers, "subscriber"),
        describe_load(
            level,
            &format!("{}-byte payloads", args.load.size.unwrap_or(DEFAULT_SIZE)),
            args.load.rate.filter(|&r| r > 0.0),
            Some(args.load.window),
        ),
        prefix = args.topic_prefix,
    );
    let mut plan = timed_plan("fanin", description, &args.target, &args.load)?;
    let subscription = filter(&format!("{}/+", args.topic_prefix))?;
    for _ in 0..args.subscribers {
        plan.subscribers.push(SubscriberPlan {
            filter: subscription.clone(),
            qos: level,
        });
    }
    for index in 0..args.publishers {
        let name = topic(&format!("{}/{index}", args.topic_prefix))?;
        persistent_publisher(&mut plan, index, name, &args.load)?;
    }
    Ok(plan)
}
