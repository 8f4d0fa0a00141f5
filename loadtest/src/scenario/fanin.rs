//! `fanin`: many publishers, each on its own topic, into few subscribers on one wildcard: the
//! test of a broker's ingest path and of flow control towards a busy subscriber.

use super::{
    add_subscribers, count, describe_persistent_load, filter, persistent_publisher, qos,
    timed_plan, topic,
};
use crate::cli::FaninArgs;
use crate::plan::{Plan, PlanError};

/// The plan of a fanin run.
pub fn plan(args: &FaninArgs) -> Result<Plan, PlanError> {
    let level = qos(args.load.qos.unwrap_or(0))?;
    let description = format!(
        "{} on {prefix}/<i> → {} on {prefix}/+, {}",
        count(args.publishers, "publisher"),
        count(args.subscribers, "subscriber"),
        describe_persistent_load(level, &args.load),
        prefix = args.topic_prefix,
    );
    let mut plan = timed_plan("fanin", description, &args.target, &args.load)?;
    let subscription = filter(&format!("{}/+", args.topic_prefix))?;
    add_subscribers(&mut plan, args.subscribers, &subscription, level);
    for index in 0..args.publishers {
        let name = topic(&format!("{}/{index}", args.topic_prefix))?;
        persistent_publisher(&mut plan, index, name, &args.load)?;
    }
    Ok(plan)
}
