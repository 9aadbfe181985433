use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// Where a bucket reads the time. Monotonic in production; a manual clock in
/// tests, so rate accuracy can be checked without sleeping.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// The CPU's invariant time-stamp counter (or the OS monotonic clock where
    /// there is none), calibrated to nanoseconds: never goes backwards and is
    /// unaffected by wall-clock changes, at a third of the cost of `Instant::now()`.
    #[default]
    Monotonic,
    /// A [`ManualClock`] the test moves by hand (shared, so the test keeps a handle).
    Manual(Arc<ManualClock>),
}

impl Clock {
    /// Nanoseconds since an arbitrary fixed origin.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        match self {
            Clock::Monotonic => {
                // Calibrated once, on first use (not at import).
                static SOURCE: OnceLock<(quanta::Clock, u64)> = OnceLock::new();
                let (source, origin) = SOURCE.get_or_init(|| {
                    let source = quanta::Clock::new();
                    let origin = source.raw();
                    (source, origin)
                });
                // u64 nanoseconds from the origin cover 584 years of uptime.
                source.delta_as_nanos(*origin, source.raw())
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
    /// A clock standing at `start_ns` nanoseconds.
    pub fn new(start_ns: u64) -> ManualClock {
        ManualClock {
            now_ns: AtomicU64::new(start_ns),
        }
    }

    /// Nanoseconds since the clock's origin: the start plus every advance.
    pub fn now_ns(&self) -> u64 {
        self.now_ns.load(Ordering::Acquire)
    }

    /// Moves the clock forward; it never moves back, as a monotonic clock would not.
    pub fn advance_ns(&self, delta_ns: u64) {
        self.now_ns.fetch_add(delta_ns, Ordering::AcqRel);
    }
}
