//! Bounded retry of dials (INV-12).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};

/// How dials to one peer are spaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Backoff before the first retry, doubled after each failure…
    pub base: Duration,
    /// …up to this.
    pub cap: Duration,
    /// At most this many dials to one peer in any `window`, whatever the
    /// outcome: a link that connects and drops at once cannot amplify.
    pub budget: u32,
    /// The sliding window `budget` counts dials over.
    pub window: Duration,
}

impl RetryPolicy {
    /// The longest wait after `failures` failures in a row: `min(cap, base ×
    /// 2^failures)`. Full jitter draws the wait uniformly below it; this is
    /// the one rule for every backoff in vedette (peers, the control-plane
    /// poller, the archive uplink).
    pub fn ceiling(&self, failures: u32) -> Duration {
        self.base
            .saturating_mul(1u32.checked_shl(failures.min(30)).unwrap_or(u32::MAX))
            .min(self.cap)
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(60),
            budget: 10,
            window: Duration::from_secs(60),
        }
    }
}

/// Enforces INV-12 for one peer: full-jitter exponential backoff (a delay
/// drawn uniformly from `[0, min(cap, base × 2^failures))`) on a monotonic
/// clock, a counter of attempts that only grows, and the retry budget.
#[derive(Debug)]
pub struct Backoff {
    policy: RetryPolicy,
    failures: u32,
    attempts: u64,
    next_at: Option<Instant>,
    recent: VecDeque<Instant>,
}

impl Backoff {
    /// A backoff under `policy` with no dial or failure yet: the first dial
    /// may be made at once.
    pub fn new(policy: RetryPolicy) -> Backoff {
        Backoff {
            policy,
            failures: 0,
            attempts: 0,
            next_at: None,
            recent: VecDeque::new(),
        }
    }

    /// Dials made so far (never reset).
    pub fn attempts(&self) -> u64 {
        self.attempts
    }

    /// Failures in a row since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// How long to wait before the next dial may be made (zero: now).
    pub fn wait(&mut self, now: Instant) -> Duration {
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.policy.window)
        {
            self.recent.pop_front();
        }
        let backoff = self
            .next_at
            .map_or(Duration::ZERO, |at| at.saturating_duration_since(now));
        let budget = if self.recent.len() >= self.policy.budget as usize {
            self.recent.front().map_or(Duration::ZERO, |t| {
                (*t + self.policy.window).saturating_duration_since(now)
            })
        } else {
            Duration::ZERO
        };
        backoff.max(budget)
    }

    /// Records a dial starting now; the caller has waited [`Backoff::wait`].
    pub fn attempt(&mut self, now: Instant) {
        self.attempts += 1;
        self.recent.push_back(now);
        while self.recent.len() > self.policy.budget as usize {
            self.recent.pop_front();
        }
    }

    /// The dial failed: the next one waits a jittered, growing delay.
    pub fn failed(&mut self, now: Instant) -> Duration {
        let ceiling = self.policy.ceiling(self.failures);
        self.failures = self.failures.saturating_add(1);
        let delay = ceiling.mul_f64(unit_random());
        self.next_at = Some(now + delay);
        delay
    }

    /// The dial succeeded: backoff starts over (the budget does not).
    pub fn succeeded(&mut self) {
        self.failures = 0;
        self.next_at = None;
    }
}

/// A uniform draw from [0, 1) from the system's secure generator (0.5 if it fails).
fn unit_random() -> f64 {
    let mut bytes = [0u8; 8];
    if SystemRandom::new().fill(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_within_the_cap_and_resets_on_success() {
        let policy = RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
            budget: 1000,
            window: Duration::from_secs(60),
        };
        let mut b = Backoff::new(policy);
        let now = Instant::now();
        for failures in 0..40u32 {
            b.attempt(now);
            let d = b.failed(now);
            let ceiling = Duration::from_millis(100)
                .saturating_mul(1u32.checked_shl(failures.min(30)).unwrap_or(u32::MAX))
                .min(Duration::from_secs(2));
            assert!(
                d < ceiling.max(Duration::from_nanos(1)),
                "{d:?} over {ceiling:?}"
            );
            assert_eq!(b.wait(now), d);
        }
        assert_eq!(b.attempts(), 40);
        b.succeeded();
        assert_eq!(b.wait(now), Duration::ZERO);
        assert_eq!(b.failures(), 0);
    }

    #[test]
    fn the_budget_bounds_dials_per_window_even_when_each_succeeds() {
        let policy = RetryPolicy {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(1),
            budget: 5,
            window: Duration::from_secs(10),
        };
        let mut b = Backoff::new(policy);
        let start = Instant::now();
        let mut now = start;
        let mut dials = 0;
        // Simulate 100 s of a link that connects and drops at once.
        while now < start + Duration::from_secs(100) {
            let wait = b.wait(now);
            if wait > Duration::ZERO {
                now += wait;
                continue;
            }
            b.attempt(now);
            b.succeeded();
            dials += 1;
            now += Duration::from_millis(1);
        }
        // 5 per 10 s window: at most 50 in 100 s, plus the window in progress.
        assert!(dials <= 55, "{dials} dials");
        assert!(dials >= 45, "{dials} dials");
    }
}
