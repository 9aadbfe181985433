//! The decision gate: one intent from untrusted body bytes to a verdict and
//! the evidence record that must be durable before anything else happens.
//!
//! - [`parse_intent`] is the one strict intent parser (every path uses it);
//! - [`Gate::decide`] validates, checks the caller's quota and the declared
//!   tools, and asks the policy, in the runtime's order, in one call;
//! - [`RecordWriter`] encodes every evidence record the runtime writes;
//! - [`DecisionMetrics`] counts decisions and their latency.
//!
//! Making records durable, running tools and answering stay in the runtime.

mod decide;
mod intent;
mod mask;
mod metrics;
mod record;

pub use decide::{Gate, Outcome, Refusal, Release, ReleasePlan, Verdict};
pub use intent::{parse_intent, py_repr, Intent, IntentLimits, InvalidIntent};
pub use mask::{scrub, Mask, MASK};
pub use metrics::{DecisionCount, DecisionMetrics, LatencySnapshot, LATENCY_BUCKETS};
pub use record::{
    now_unix_ns, timestamp, DecisionFacts, DecisionIds, OutcomeFacts, RecordWriter, SCHEMA,
};

#[cfg(test)]
mod tests;
