//! Counters and latency histograms: what SHOW STATS and /metrics report.
//!
//! Plain numbers bumped in place by the loop and the pairs; nothing here
//! allocates after start-up, so counting costs nothing on the relay path.

use crate::operations::access::EndReason;
pub use crate::operations::exposition::Histogram;
use std::time::Instant;

/// Totals since start.
#[derive(Debug, Clone)]
pub struct Stats {
    pub started: Instant,
    /// Client connections accepted (including those refused by max_clients).
    pub accepted: u64,
    /// Refused because `max_clients` connections were open.
    pub refused: u64,
    pub logins_ok: u64,
    pub logins_failed: u64,
    /// Logins that succeeded, by the client leg's transport.
    pub logins_tls: u64,
    pub logins_plain: u64,
    /// Logins refused because `tls = required` and the client had none.
    pub logins_insecure: u64,
    /// TLS handshakes that failed, toward clients and toward servers.
    pub tls_failures_client: u64,
    pub tls_failures_server: u64,
    /// Backend connections opened, and attempts that failed.
    pub backend_connects: u64,
    pub backend_failures: u64,
    /// Bytes from and to clients of pairs that have ended (open pairs are
    /// added when reporting).
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Ended pairs by [`EndReason::kind_index`].
    pub ends: [u64; EndReason::KINDS.len()],
    pub reloads: u64,
    pub reload_failures: u64,
    pub admin_logins_failed: u64,
    /// Accept to client verified (myroute's own handshake).
    pub handshake: Histogram,
    /// Client verified to backend OK (logging in to the backend).
    pub backend_login: Histogram,
}

impl Stats {
    pub fn new(now: Instant) -> Stats {
        Stats {
            started: now,
            accepted: 0,
            refused: 0,
            logins_ok: 0,
            logins_failed: 0,
            logins_tls: 0,
            logins_plain: 0,
            logins_insecure: 0,
            tls_failures_client: 0,
            tls_failures_server: 0,
            backend_connects: 0,
            backend_failures: 0,
            bytes_in: 0,
            bytes_out: 0,
            ends: [0; EndReason::KINDS.len()],
            reloads: 0,
            reload_failures: 0,
            admin_logins_failed: 0,
            handshake: Histogram::default(),
            backend_login: Histogram::default(),
        }
    }

    /// Counts a pair that has ended.
    pub fn ended(&mut self, reason: &EndReason, bytes_in: u64, bytes_out: u64) {
        self.ends[reason.kind_index()] += 1;
        self.bytes_in += bytes_in;
        self.bytes_out += bytes_out;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_are_counted_by_kind() {
        let mut s = Stats::new(Instant::now());
        s.ended(&EndReason::Timeout("idle_timeout"), 10, 20);
        s.ended(&EndReason::Shutdown, 1, 2);
        assert_eq!(s.ends[5], 1);
        assert_eq!(EndReason::KINDS[EndReason::Shutdown.kind_index()], "shutdown");
        assert_eq!((s.bytes_in, s.bytes_out), (11, 22));
    }
}
