use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use lru::LruCache;

use super::bucket::{validate, QuotaError, TokenBucket};
use super::clock::Clock;

const MAX_SHARDS: usize = 16;
/// Shards hold at least this many keys, so that in a small table one busy
/// key is not pushed out by a few others that happen to hash to its shard.
const MIN_KEYS_PER_SHARD: usize = 64;

/// Token buckets by key (caller id, peer id), all with one rate and burst.
///
/// Enforces INV-07 for quotas: the table never holds more than `max_keys`
/// buckets. Keys are spread over independently locked shards, each an LRU;
/// when a shard is full, its least recently used bucket is dropped. A dropped
/// bucket that had refilled loses nothing (a new bucket starts full); one that
/// had not is forgiven its debt, so size `max_keys` above the number of keys
/// that are active at once (authenticated callers or peers, not raw addresses).
pub struct QuotaTable {
    rate_per_s: f64,
    burst: f64,
    max_keys: usize,
    clock: Clock,
    shards: Vec<Mutex<LruCache<String, TokenBucket>>>,
    evictions: AtomicU64,
}

impl QuotaTable {
    /// A table whose buckets each refill at `rate_per_s` tokens per second up to `burst` tokens,
    /// holding at most `max_keys` buckets (at least 1), on `clock`.
    pub fn new(
        rate_per_s: f64,
        burst: f64,
        max_keys: usize,
        clock: Clock,
    ) -> Result<QuotaTable, QuotaError> {
        validate(rate_per_s, burst)?;
        if max_keys == 0 {
            return Err(QuotaError::InvalidMaxKeys(max_keys));
        }
        let shard_count = (max_keys / MIN_KEYS_PER_SHARD).clamp(1, MAX_SHARDS);
        // Shard capacities add up to exactly max_keys.
        let shards = (0..shard_count)
            .map(|i| {
                let capacity = max_keys / shard_count + usize::from(i < max_keys % shard_count);
                let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
                Mutex::new(LruCache::new(capacity))
            })
            .collect();
        Ok(QuotaTable {
            rate_per_s,
            burst,
            max_keys,
            clock,
            shards,
            evictions: AtomicU64::new(0),
        })
    }

    /// Tokens per second every bucket refills.
    pub fn rate_per_s(&self) -> f64 {
        self.rate_per_s
    }

    /// Tokens a full bucket holds.
    pub fn burst(&self) -> f64 {
        self.burst
    }

    /// Most buckets the table holds at once.
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// Buckets dropped to keep within `max_keys` since the table was made.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Buckets held now (at most `max_keys`).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).len()).sum()
    }

    /// Whether the table holds no bucket.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes `n` tokens from `key`'s bucket if they are there (`Ok(false)` if not); never waits. A
    /// key not held gets a full bucket first, which may drop the least recently used one.
    pub fn try_take(&self, key: &str, n: f64) -> Result<bool, QuotaError> {
        self.with_bucket(key, |bucket| bucket.try_take(n))?
    }

    /// Seconds until `key`'s bucket holds `n` tokens (0 if it does now); takes nothing.
    pub fn wait_time(&self, key: &str, n: f64) -> Result<f64, QuotaError> {
        self.with_bucket(key, |bucket| bucket.wait_time(n))?
    }

    /// Tokens in `key`'s bucket now (a full bucket for a key not held).
    pub fn available(&self, key: &str) -> Result<f64, QuotaError> {
        self.with_bucket(key, TokenBucket::available)
    }

    fn with_bucket<T>(
        &self,
        key: &str,
        action: impl FnOnce(&TokenBucket) -> T,
    ) -> Result<T, QuotaError> {
        let mut shard = lock(&self.shards[self.shard_of(key)]);
        if let Some(bucket) = shard.get(key) {
            return Ok(action(bucket));
        }
        let bucket = TokenBucket::new(self.rate_per_s, self.burst, self.clock.clone())?;
        if shard.push(key.to_owned(), bucket).is_some() {
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        // Just pushed, so it is there; fall back to a fresh bucket rather than panic.
        match shard.get(key) {
            Some(bucket) => Ok(action(bucket)),
            None => Ok(action(&TokenBucket::new(
                self.rate_per_s,
                self.burst,
                self.clock.clone(),
            )?)),
        }
    }

    fn shard_of(&self, key: &str) -> usize {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        (hasher.finish() % self.shards.len() as u64) as usize
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::quota::ManualClock;

    #[test]
    fn keys_have_independent_buckets() {
        let clock = Arc::new(ManualClock::new(0));
        let table = QuotaTable::new(1.0, 2.0, 100, Clock::Manual(Arc::clone(&clock))).unwrap();
        assert!(table.try_take("a", 2.0).unwrap());
        assert!(!table.try_take("a", 1.0).unwrap());
        assert!(table.try_take("b", 2.0).unwrap());
        assert!((table.wait_time("a", 1.0).unwrap() - 1.0).abs() < 1e-9);
        clock.advance_ns(1_000_000_000);
        assert!(table.try_take("a", 1.0).unwrap());
    }

    #[test]
    fn key_bound_holds() {
        for max_keys in [1, 7, 16, 17, 1000] {
            let table = QuotaTable::new(1.0, 1.0, max_keys, Clock::Monotonic).unwrap();
            for i in 0..(3 * max_keys + 50) {
                table.try_take(&format!("key-{i}"), 1.0).unwrap();
                assert!(table.len() <= max_keys);
            }
            assert!(table.evictions() > 0);
        }
        assert!(QuotaTable::new(1.0, 1.0, 0, Clock::Monotonic).is_err());
    }
}
