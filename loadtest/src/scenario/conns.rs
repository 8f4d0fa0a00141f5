//! `conns`: N idle connections opened at a given rate and held: the test of connection rate
//! and of the broker's memory per connection.

use super::{base_plan, count, rate};
use crate::cli::ConnsArgs;
use crate::plan::{impossible, IdlePlan, Plan, PlanError, Timing};

/// The plan of a conns run.
pub fn plan(args: &ConnsArgs) -> Result<Plan, PlanError> {
    if args.connections == 0 {
        return Err(impossible("--connections must be at least 1"));
    }
    let connect_rate = rate(args.connect_rate)?;
    let pace = connect_rate.map_or("as fast as possible".to_owned(), |r| format!("at {r}/s"));
    let description = format!(
        "{} opened {pace}, held {:?}",
        count(args.connections, "idle connection"),
        args.duration
    );
    let mut plan = base_plan(
        "conns",
        description,
        &args.target,
        Timing::Hold {
            duration: args.duration,
        },
        std::time::Duration::ZERO,
    )?;
    plan.idle = Some(IdlePlan {
        connections: args.connections,
        connect_rate,
    });
    Ok(plan)
}
