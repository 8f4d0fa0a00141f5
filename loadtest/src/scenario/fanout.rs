//! `fanout`: few publishers, many subscribers, one topic: the firehose's shape, and the test of
//! a broker's delivery path.

use super::{
    add_subscribers, count, describe_persistent_load, filter, persistent_publisher, qos,
    timed_plan, topic,
};
use crate::cli::FanoutArgs;
use crate::plan::{Plan, PlanError};

/// The plan of a fanout run.
pub fn plan(args: &FanoutArgs) -> Result<Plan, PlanError> {
    let level = qos(args.load.qos.unwrap_or(0))?;
    let description = format!(
        "{} → {} on {}, {}",
        count(args.publishers, "publisher"),
        count(args.subscribers, "subscriber"),
        args.topic,
        describe_persistent_load(level, &args.load)
    );
    let mut plan = timed_plan("fanout", description, &args.target, &args.load)?;
    let subscription = filter(&args.topic)?;
    add_subscribers(&mut plan, args.subscribers, &subscription, level);
    let name = topic(&args.topic)?;
    for index in 0..args.publishers {
        persistent_publisher(&mut plan, index, name.clone(), &args.load)?;
    }
    Ok(plan)
}
