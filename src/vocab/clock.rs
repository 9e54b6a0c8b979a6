//! The process's monotonic clock, in milliseconds since the agent started.
//!
//! Liveness is judged from it: the tailer's heartbeat, the shippers' promised deadlines and the
//! `/health` checks that compare them with "now". The wall clock cannot be used for that: an
//! NTP step forward by minutes would make a healthy tailer look stalled (and the kubelet would
//! restart the agent for nothing), a step back would make a stalled one look alive for as long
//! as the step. [`Instant`] never steps; this module turns it into a plain `u64` so that it fits
//! in an atomic shared between threads and the HTTP server.
//!
//! What stays on the wall clock: everything about *records* — their timestamps, the buffer's
//! frame times and so `logferry_buffer_oldest_record_age_seconds` — because those say when a
//! line was written, which is a calendar fact, not a measure of the agent's own progress.
//!
//! A leaf: imports nothing of the crate.

use std::sync::OnceLock;
use std::time::Instant;

/// The instant every reading is measured from: the first call in the process.
static START: OnceLock<Instant> = OnceLock::new();

/// Milliseconds on the monotonic clock. Never goes back and never jumps with the wall clock;
/// only differences between two readings mean anything.
pub fn now_ms() -> u64 {
    let start = START.get_or_init(Instant::now);
    // u64 milliseconds last 584 million years: the cast cannot truncate in practice.
    start.elapsed().as_millis() as u64
}

/// `now_ms() + within`, saturating: a deadline can be promised as far out as a caller likes
/// (a huge `Retry-After`) without wrapping around into the past.
pub fn after_ms(within: std::time::Duration) -> u64 {
    now_ms().saturating_add(u64::try_from(within.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn readings_never_go_back() {
        let mut last = now_ms();
        for _ in 0..1000 {
            let now = now_ms();
            assert!(now >= last, "{now} < {last}");
            last = now;
        }
    }

    #[test]
    fn a_far_deadline_saturates_instead_of_wrapping_into_the_past() {
        assert_eq!(after_ms(Duration::MAX), u64::MAX);
        assert!(after_ms(Duration::from_secs(30)) >= now_ms() + 29_000);
    }
}
