use std::sync::Mutex;

use super::clock::Clock;

const NANOS_PER_SECOND: f64 = 1e9;

/// A bucket or table setting, or an amount asked for, that cannot work; each
/// variant carries the value refused. Nothing is taken when one is returned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuotaError {
    /// A refill rate (tokens per second) that is not a finite number above 0.
    #[error("rate_per_s must be a finite number > 0, got {0}")]
    InvalidRate(f64),
    /// A burst (tokens a full bucket holds) that is not a finite number of at least 1.
    #[error("burst must be a finite number >= 1, got {0}")]
    InvalidBurst(f64),
    /// A token count that is negative, NaN or infinite.
    #[error("token count must be a finite number >= 0, got {0}")]
    InvalidAmount(f64),
    /// More tokens asked for at once than the bucket can ever hold, so the
    /// take could never succeed however long the caller waits.
    #[error("cannot take {n} tokens from a bucket whose burst is {burst}: it would never succeed")]
    ExceedsBurst {
        /// The tokens asked for.
        n: f64,
        /// The bucket's burst.
        burst: f64,
    },
    /// A key bound of 0 for a [`super::QuotaTable`]: it could hold no bucket.
    #[error("max_keys must be >= 1, got {0}")]
    InvalidMaxKeys(usize),
}

/// When the bucket will next be full again, as GCRA's "theoretical arrival
/// time": whole nanoseconds plus a fraction, so that many small takes at a
/// high rate do not drift (no refill is ever accumulated in small steps).
#[derive(Debug, Clone, Copy)]
struct FullAt {
    ns: u64,
    fraction: f64,
}

/// Slack for float rounding when comparing debt with the burst, in nanoseconds
/// of refill: far below one token at any rate a bucket can be given.
const ROUNDING_SLACK_NS: f64 = 1e-3;

/// A token bucket: holds up to `burst` tokens and refills at `rate_per_s`.
///
/// Each bucket has its own small lock (no lock is shared between buckets), so
/// concurrent takers of one bucket serialise on it and can never be granted
/// more than the bucket holds; buckets of different callers never contend.
/// Time comes from a monotonic clock, so wall-clock jumps neither grant nor
/// withhold tokens.
#[derive(Debug)]
pub struct TokenBucket {
    rate_per_s: f64,
    burst: f64,
    /// Nanoseconds of refill per token.
    interval_ns: f64,
    /// Nanoseconds of refill a full bucket holds (`burst * interval_ns`).
    capacity_ns: f64,
    clock: Clock,
    full_at: Mutex<FullAt>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_per_s: f64, burst: f64, clock: Clock) -> Result<TokenBucket, QuotaError> {
        validate(rate_per_s, burst)?;
        let interval_ns = NANOS_PER_SECOND / rate_per_s;
        Ok(TokenBucket {
            rate_per_s,
            burst,
            interval_ns,
            capacity_ns: burst * interval_ns,
            clock,
            full_at: Mutex::new(FullAt {
                ns: 0,
                fraction: 0.0,
            }),
        })
    }

    /// Tokens added per second.
    pub fn rate_per_s(&self) -> f64 {
        self.rate_per_s
    }

    /// Tokens a full bucket holds: the most one caller can take at once.
    pub fn burst(&self) -> f64 {
        self.burst
    }

    /// Takes `n` tokens if they are there; never waits.
    pub fn try_take(&self, n: f64) -> Result<bool, QuotaError> {
        self.check_amount(n)?;
        let now = self.clock.now_ns();
        let mut full_at = self.lock();
        let cost_ns = n * self.interval_ns;
        if debt_ns(&full_at, now) + cost_ns > self.capacity_ns + ROUNDING_SLACK_NS {
            return Ok(false);
        }
        let (base_ns, base_fraction) = if full_at.ns >= now {
            (full_at.ns, full_at.fraction)
        } else {
            (now, 0.0)
        };
        let total = base_fraction + cost_ns;
        let whole = total.floor();
        // `whole` is at most capacity_ns, a finite non-negative float.
        full_at.ns = base_ns.saturating_add(whole as u64);
        full_at.fraction = total - whole;
        Ok(true)
    }

    /// Seconds until `n` tokens will be there (0 if they are now). Takes nothing.
    pub fn wait_time(&self, n: f64) -> Result<f64, QuotaError> {
        self.check_amount(n)?;
        let now = self.clock.now_ns();
        let full_at = self.lock();
        let short_ns = debt_ns(&full_at, now) + n * self.interval_ns - self.capacity_ns;
        Ok((short_ns / NANOS_PER_SECOND).max(0.0))
    }

    /// Tokens there now.
    pub fn available(&self) -> f64 {
        let now = self.clock.now_ns();
        let full_at = self.lock();
        ((self.capacity_ns - debt_ns(&full_at, now)) / self.interval_ns).clamp(0.0, self.burst)
    }

    fn check_amount(&self, n: f64) -> Result<(), QuotaError> {
        if !n.is_finite() || n < 0.0 {
            return Err(QuotaError::InvalidAmount(n));
        }
        if n > self.burst {
            return Err(QuotaError::ExceedsBurst {
                n,
                burst: self.burst,
            });
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FullAt> {
        // The critical section cannot panic (plain arithmetic), and a poisoned
        // lock still guards a consistent value, so keep using it.
        self.full_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Nanoseconds of refill the bucket is short of full at `now`.
fn debt_ns(full_at: &FullAt, now: u64) -> f64 {
    if full_at.ns >= now {
        (full_at.ns - now) as f64 + full_at.fraction
    } else {
        0.0
    }
}

pub(super) fn validate(rate_per_s: f64, burst: f64) -> Result<(), QuotaError> {
    if !rate_per_s.is_finite() || rate_per_s <= 0.0 {
        return Err(QuotaError::InvalidRate(rate_per_s));
    }
    if !burst.is_finite() || burst < 1.0 {
        return Err(QuotaError::InvalidBurst(burst));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::quota::ManualClock;

    fn manual(rate: f64, burst: f64) -> (TokenBucket, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(1_000));
        let bucket = TokenBucket::new(rate, burst, Clock::Manual(Arc::clone(&clock))).unwrap();
        (bucket, clock)
    }

    #[test]
    fn starts_full_and_refills_at_rate() {
        let (bucket, clock) = manual(10.0, 5.0);
        for _ in 0..5 {
            assert!(bucket.try_take(1.0).unwrap());
        }
        assert!(!bucket.try_take(1.0).unwrap());
        assert!((bucket.wait_time(1.0).unwrap() - 0.1).abs() < 1e-9);
        clock.advance_ns(100_000_000);
        assert!(bucket.try_take(1.0).unwrap());
        assert!(!bucket.try_take(1.0).unwrap());
        // Over 1000 simulated seconds exactly rate * seconds tokens are granted.
        let mut granted = 0u64;
        for _ in 0..1_000_000 {
            clock.advance_ns(1_000);
            if bucket.try_take(1.0).unwrap() {
                granted += 1;
            }
        }
        assert_eq!(granted, 10);
        clock.advance_ns(3_600 * 1_000_000_000);
        assert_eq!(bucket.available(), 5.0, "refill is capped at burst");
    }

    #[test]
    fn refuses_bad_parameters() {
        for (rate, burst) in [
            (0.0, 1.0),
            (-1.0, 1.0),
            (f64::NAN, 1.0),
            (f64::INFINITY, 1.0),
        ] {
            assert!(matches!(
                TokenBucket::new(rate, burst, Clock::Monotonic),
                Err(QuotaError::InvalidRate(_))
            ));
        }
        assert!(TokenBucket::new(1.0, 0.5, Clock::Monotonic).is_err());
        let (bucket, _) = manual(1.0, 3.0);
        assert_eq!(
            bucket.try_take(4.0),
            Err(QuotaError::ExceedsBurst { n: 4.0, burst: 3.0 })
        );
        assert!(bucket.wait_time(4.0).is_err());
        assert!(bucket.try_take(-1.0).is_err());
        assert!(bucket.try_take(f64::NAN).is_err());
    }

    #[test]
    fn many_threads_never_over_grant() {
        let bucket = Arc::new(TokenBucket::new(1e-3, 1000.0, Clock::Monotonic).unwrap());
        let granted = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let bucket = Arc::clone(&bucket);
                let granted = Arc::clone(&granted);
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        if bucket.try_take(1.0).unwrap() {
                            granted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        // 1000 to start with, plus at most a token or two refilled during the run.
        let granted = granted.load(Ordering::Relaxed);
        assert!((1000..=1001).contains(&granted), "granted {granted}");
    }
}
