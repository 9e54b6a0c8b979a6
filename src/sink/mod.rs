//! Shipping: batches from the disk buffer to the one output the config names, each behind the
//! buffer's own interface — a shipper leases a batch, delivers it, and acknowledges it — so
//! neither output knows a source, and no source knows an output (the agent glues them).
//!
//! - [`elasticsearch`]: the `_bulk` API, with host failover, retries of only what failed, the
//!   dead-letter file, and the cluster's setup (templates, policies) before the first batch;
//! - [`kafka`] (`[kafka]`): each record produced as a message, a batch acknowledged once the
//!   brokers have it all.
//!
//! What both share lives here: what `/health` is told ([`SinkState`], read by
//! [`ShippingCheck`]), the wait between attempts (`full_jitter`), and what a shipper that
//! failed said ([`panic_message`]).

pub mod elasticsearch;
mod health;
pub mod kafka;
mod state;

pub use health::ShippingCheck;
pub use state::SinkState;

use std::time::{Duration, Instant};

/// A uniformly random wait in `[0, cap]` (AWS's "full jitter"), at least 10 ms.
fn full_jitter(cap: Duration) -> Duration {
    use std::hash::{BuildHasher, RandomState};
    // RandomState is seeded per process and per instance: enough to spread agents apart.
    let r = RandomState::new().hash_one(Instant::now());
    let fraction = (r >> 11) as f64 / (1u64 << 53) as f64;
    cap.mul_f64(fraction).max(Duration::from_millis(10))
}

/// What a failed task said when it panicked.
pub fn panic_message(e: tokio::task::JoinError) -> String {
    if !e.is_panic() {
        return e.to_string();
    }
    let payload = e.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests;
