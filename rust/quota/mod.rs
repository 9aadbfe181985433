//! Token buckets: per-caller request rates and per-peer bandwidth (INV-07, INV-13).

mod bucket;
mod clock;
mod table;

pub use bucket::{QuotaError, TokenBucket};
pub use clock::{Clock, ManualClock};
pub use table::QuotaTable;
