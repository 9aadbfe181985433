use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Where a bucket reads the time. Monotonic in production; a manual clock in
/// tests, so rate accuracy can be checked without sleeping.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// `std::time::Instant`: never goes backwards, unaffected by wall-clock changes.
    #[default]
    Monotonic,
    Manual(Arc<ManualClock>),
}

impl Clock {
    /// Nanoseconds since an arbitrary fixed origin.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        match self {
            Clock::Monotonic => {
                static ORIGIN: OnceLock<Instant> = OnceLock::new();
                let origin = *ORIGIN.get_or_init(Instant::now);
                // u64 nanoseconds cover 584 years of uptime.
                u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
            }
            Clock::Manual(clock) => clock.now_ns(),
        }
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ns: AtomicU64,
}

impl ManualClock {
    pub fn new(start_ns: u64) -> ManualClock {
        ManualClock {
            now_ns: AtomicU64::new(start_ns),
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.now_ns.load(Ordering::Acquire)
    }

    /// Moves the clock forward; it never moves back, as a monotonic clock would not.
    pub fn advance_ns(&self, delta_ns: u64) {
        self.now_ns.fetch_add(delta_ns, Ordering::AcqRel);
    }
}
