//! `p2p`: N independent publisher → subscriber pairs, each on its own topic: many small
//! flows, the test of per-topic routing cost.

use super::{
    count, describe_persistent_load, filter, persistent_publisher, qos, timed_plan, topic,
};
use crate::cli::P2pArgs;
use crate::plan::{Plan, PlanError, SubscriberPlan};

/// The plan of a p2p run.
pub fn plan(args: &P2pArgs) -> Result<Plan, PlanError> {
    let level = qos(args.load.qos.unwrap_or(0))?;
    let description = format!(
        "{} on {}/<i>, {}",
        count(args.pairs, "publisher/subscriber pair"),
        args.topic_prefix,
        describe_persistent_load(level, &args.load)
    );
    let mut plan = timed_plan("p2p", description, &args.target, &args.load)?;
    for index in 0..args.pairs {
        let text = format!("{}/{index}", args.topic_prefix);
        plan.subscribers.push(SubscriberPlan {
            filter: filter(&text)?,
            qos: level,
        });
        persistent_publisher(&mut plan, index, topic(&text)?, &args.load)?;
    }
    Ok(plan)
}
