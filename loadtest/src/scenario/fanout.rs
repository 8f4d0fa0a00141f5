//! `fanout`: few publishers, many subscribers, one topic: the firehose's shape, and the test of
//! a broker's delivery path.

use super::{
    count, describe_load, filter, persistent_publisher, qos, timed_plan, topic, DEFAULT_SIZE,
};
use crate::cli::FanoutArgs;
use crate::plan::{Plan, PlanError, SubscriberPlan};

/// The plan of a fanout run.
pub fn plan(args: &FanoutArgs) -> Result<Plan, PlanError> {
    let level = qos(args.load.qos.unwrap_or(0))?;
    let description = format!(
        "{} → {} on {}, {}",
        count(args.publishers, "publisher"),
        count(args.subscribers, "subscriber"),
        args.topic,
        describe_load(
            level,
            &format!("{}-byte payloads", args.load.size.unwrap_or(DEFAULT_SIZE)),
            args.load.rate.filter(|&r| r > 0.0),
            Some(args.load.window),
        )
    );
    let mut plan = timed_plan("fanout", description, &args.target, &args.load)?;
    let subscription = filter(&args.topic)?;
    for _ in 0..args.subscribers {
        plan.subscribers.push(SubscriberPlan {
            filter: subscription.clone(),
            qos: level,
        });
    }
    let name = topic(&args.topic)?;
    for index in 0..args.publishers {
        persistent_publisher(&mut plan, index, name.clone(), &args.load)?;
    }
    Ok(plan)
}
