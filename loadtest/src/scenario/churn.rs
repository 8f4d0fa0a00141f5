//! `churn`: publishers that connect, publish one message and disconnect, in a loop, as the
//! firehose's real publishers and the original manual tests did: the test of CONNECT cost.

use super::{
    add_subscribers, count, describe_load, filter, qos, rate, timed_plan, topic, DEFAULT_SIZE,
};
use crate::cli::ChurnArgs;
use crate::plan::{PayloadSpec, Plan, PlanError, PublishMode, PublisherPlan};

/// The plan of a churn run.
pub fn plan(args: &ChurnArgs) -> Result<Plan, PlanError> {
    let level = qos(args.load.qos.unwrap_or(0))?;
    let size = args.load.size.unwrap_or(DEFAULT_SIZE);
    let publish_rate = rate(args.load.rate.unwrap_or(0.0))?;
    let description = format!(
        "{} (one connection per message) → {} on {}, {}",
        count(args.publishers, "churning publisher"),
        count(args.subscribers, "subscriber"),
        args.topic,
        describe_load(level, &format!("{size}-byte payloads"), publish_rate, None)
    );
    let mut plan = timed_plan("churn", description, &args.target, &args.load)?;
    let subscription = filter(&args.topic)?;
    add_subscribers(&mut plan, args.subscribers, &subscription, level);
    let name = topic(&args.topic)?;
    for index in 0..args.publishers {
        let stream = plan.add_stream(index, name.clone())?;
        plan.publishers.push(PublisherPlan {
            streams: vec![stream],
            qos: level,
            payload: PayloadSpec::Filler { size },
            mode: PublishMode::Churn,
            rate: publish_rate,
            limit: None,
            label: None,
        });
    }
    Ok(plan)
}
