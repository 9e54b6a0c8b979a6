//! Loopback ports for servers a test starts, stops and starts again on the same number.
//!
//! A port from `bind("127.0.0.1:0")` comes from the kernel's ephemeral range, the range it also
//! hands out to outgoing connections. While a test has stopped the agent and not yet started it
//! again, any `connect` on the machine may be given that port, and the next start fails with
//! "Address already in use" (seen in CI: a restart loop in `tests/routing.rs`). So the ports
//! here come from below that range, where the kernel never assigns one by itself.

use std::hash::{BuildHasher, RandomState};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

/// The lowest port handed out here; the highest is one below the ephemeral range.
const LOWEST: u16 = 10_000;

/// A loopback port nothing listens on now, outside the ephemeral range when the machine leaves
/// room below it (from the kernel's choice otherwise).
pub fn free_port() -> u16 {
    let high = ephemeral_low().unwrap_or(0);
    if high <= LOWEST + 1_000 {
        return kernel_port();
    }
    let span = u32::from(high - LOWEST);
    // Each test binary starts at its own random place and walks on, so that tests running side
    // by side in one process never get the same port, and successive binaries rarely do.
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (RandomState::new().hash_one(std::process::id()) % u64::from(span)) as u32,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..span {
        let port = LOWEST + (NEXT.fetch_add(1, Ordering::Relaxed) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    kernel_port()
}

fn kernel_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The low end of `net.ipv4.ip_local_port_range`.
fn ephemeral_low() -> Option<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_from_below_the_ephemeral_range_and_differ() {
        let a = free_port();
        let b = free_port();
        assert_ne!(a, b);
        if let Some(low) = ephemeral_low().filter(|&l| l > LOWEST + 1_000) {
            assert!(a < low && b < low, "{a} {b} not below {low}");
            assert!(a >= LOWEST && b >= LOWEST);
        }
        // Free means free: the server can listen on it.
        assert!(TcpListener::bind(("127.0.0.1", a)).is_ok());
    }
}
