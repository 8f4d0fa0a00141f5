//! Sessions: what the broker keeps for one client id (subscriptions and the QoS flows in both
//! directions), who owns it across cores, how it moves when a client reconnects elsewhere, how
//! long it outlives its connection (the session expiry interval), and the will it may hold for
//! a while (the will delay interval).

mod ack_rate;
mod flow;
mod hasher;
mod incoming;
mod persisted;
mod state;
mod subscription;
mod takeover;
mod will;

pub use flow::{
    FlowAction, FlowError, FlowEvent, FlowLimits, HeldMessage, OutgoingFlow, QueueFull,
    RestoredMessage,
};
pub use hasher::{SessionHasher, SessionMap, SessionSet};
pub use incoming::IncomingQos2;
pub use persisted::RestoredSessions;
pub use state::{SessionState, NEVER_EXPIRES};
pub use subscription::{Subscription, Subscriptions};
pub use takeover::Directory;
pub use will::DelayedWill;
