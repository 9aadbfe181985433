//! The service-wide set of segments being fetched, so that no segment is
//! asked of two peers at once.

use std::collections::HashSet;
use std::sync::Mutex;

use crate::peers::frames::SegmentRef;

/// Segments being fetched right now, over all connections of a service: a
/// segment is never asked of two peers at once.
#[derive(Debug, Default)]
pub struct InFlight {
    set: Mutex<HashSet<SegmentRef>>,
}

impl InFlight {
    /// True when the caller now owns the fetch of `r`.
    pub fn claim(&self, r: &SegmentRef) -> bool {
        self.lock().insert(r.clone())
    }

    /// Gives up the fetch of `r` (stored, refused, answered GONE, or its
    /// connection ended), so that any connection may ask for it again.
    pub fn release(&self, r: &SegmentRef) {
        self.lock().remove(r);
    }

    /// Segments being fetched now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no segment is being fetched.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<SegmentRef>> {
        self.set.lock().unwrap_or_else(|p| p.into_inner())
    }
}
