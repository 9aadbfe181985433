//! Decision counts and latency, kept where every call passes anyway.
//!
//! A Prometheus client library counter and histogram cost the runtime a few
//! microseconds per call in locks and label lookups; these are one short
//! critical section and a few atomic adds. The runtime exposes them in its
//! Prometheus registry (`vedette_decisions_total`, `vedette_decision_seconds`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds (seconds) of the latency histogram's buckets; `+Inf` is implied.
pub const LATENCY_BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];

/// One label set of the decision counter and its count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecisionCount {
    /// The `outcome` label: how the call was answered.
    pub outcome: String,
    /// The `tool` label: the tool the call named, as the runtime labels it.
    pub tool: String,
    /// The `agent` label: the caller's agent.
    pub agent: String,
    /// Decisions counted under these labels since the runtime started.
    pub count: u64,
}

/// The latency histogram: cumulative counts per bucket (`+Inf` last), total, sum.
#[derive(Clone, Debug, PartialEq)]
pub struct LatencySnapshot {
    /// Decisions at or under each bound of [`LATENCY_BUCKETS`], in order, then all of them
    /// (`+Inf`).
    pub cumulative: Vec<u64>,
    /// Decisions observed in all (the `+Inf` count).
    pub count: u64,
    /// Sum of every observed latency, in seconds.
    pub sum_seconds: f64,
}

/// Decision counts by outcome, tool and agent, and the latency histogram, shared by every call of a
/// runtime and read when its metrics are scraped.
#[derive(Default)]
pub struct DecisionMetrics {
    // Label sets are few (outcomes x tools x agents): a short list searched
    // by borrowed strings allocates nothing per call.
    counts: Mutex<Vec<DecisionCount>>,
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl DecisionMetrics {
    /// Counters with no label set yet and every bucket empty.
    pub fn new() -> DecisionMetrics {
        DecisionMetrics::default()
    }

    /// Counts one decision and its latency.
    pub fn record(&self, outcome: &str, tool: &str, agent: &str, seconds: f64) {
        {
            let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            match counts
                .iter_mut()
                .find(|c| c.outcome == outcome && c.tool == tool && c.agent == agent)
            {
                Some(entry) => entry.count += 1,
                None => counts.push(DecisionCount {
                    outcome: outcome.to_string(),
                    tool: tool.to_string(),
                    agent: agent.to_string(),
                    count: 1,
                }),
            }
        }
        let seconds = if seconds.is_finite() {
            seconds.max(0.0)
        } else {
            0.0
        };
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add((seconds * 1e9) as u64, Ordering::Relaxed);
    }

    /// A copy of every label set counted so far with its count, in the order first seen.
    pub fn counts(&self) -> Vec<DecisionCount> {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The histogram as it stands; read without a lock, so during calls the sum may be off from the
    /// counts by the calls recorded meanwhile.
    pub fn latency(&self) -> LatencySnapshot {
        let mut running = 0;
        let cumulative: Vec<u64> = self
            .buckets
            .iter()
            .map(|bucket| {
                running += bucket.load(Ordering::Relaxed);
                running
            })
            .collect();
        LatencySnapshot {
            count: running,
            cumulative,
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}
