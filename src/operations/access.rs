//! How a connection ended, and the one access-log line written for it.
//!
//! This is the only place that formats per-connection log lines, and it is
//! given nothing secret to format: user names, addresses, counts and reasons.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// How a connection pair ended (the access log's last field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// The client closed its connection (normally after COM_QUIT).
    ClientClosed,
    /// The backend closed its connection.
    BackendClosed,
    /// The client failed authentication.
    AuthFailed,
    /// The backend refused the login with this error code.
    BackendRefused(u16),
    /// No server of the pool could be used.
    PoolUnreachable,
    /// A timeout fired; the text is the config key.
    Timeout(&'static str),
    /// The client broke the protocol; the text says how.
    ProtocolError(&'static str),
    /// The client sent COM_CHANGE_USER.
    ChangeUser,
    /// A socket failed with this error.
    IoError(std::io::ErrorKind),
    /// KILL from the admin console.
    Killed,
    /// Closed by a graceful shutdown.
    Shutdown,
    /// A TLS handshake or record failed; the text says how.
    Tls(&'static str),
}

impl EndReason {
    /// Every kind, in the order of [`EndReason::kind_index`] (names for SHOW
    /// STATS and the metrics' `reason` label).
    pub const KINDS: [&'static str; 12] = [
        "client_closed",
        "backend_closed",
        "auth_failed",
        "backend_refused",
        "pool_unreachable",
        "timeout",
        "protocol_error",
        "change_user_refused",
        "io_error",
        "killed",
        "shutdown",
        "tls_error",
    ];

    /// Index into [`EndReason::KINDS`].
    pub fn kind_index(&self) -> usize {
        match self {
            EndReason::ClientClosed => 0,
            EndReason::BackendClosed => 1,
            EndReason::AuthFailed => 2,
            EndReason::BackendRefused(_) => 3,
            EndReason::PoolUnreachable => 4,
            EndReason::Timeout(_) => 5,
            EndReason::ProtocolError(_) => 6,
            EndReason::ChangeUser => 7,
            EndReason::IoError(_) => 8,
            EndReason::Killed => 9,
            EndReason::Shutdown => 10,
            EndReason::Tls(_) => 11,
        }
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndReason::ClientClosed => f.write_str("client-closed"),
            EndReason::BackendClosed => f.write_str("backend-closed"),
            EndReason::AuthFailed => f.write_str("auth-failed"),
            EndReason::BackendRefused(code) => write!(f, "backend-refused({code})"),
            EndReason::PoolUnreachable => f.write_str("pool-unreachable"),
            EndReason::Timeout(key) => write!(f, "timeout({key})"),
            EndReason::ProtocolError(what) => write!(f, "protocol-error({what})"),
            EndReason::ChangeUser => f.write_str("change-user-refused"),
            EndReason::IoError(kind) => write!(f, "io-error({kind})"),
            EndReason::Killed => f.write_str("killed"),
            EndReason::Shutdown => f.write_str("shutdown"),
            EndReason::Tls(what) => write!(f, "tls-error({what})"),
        }
    }
}

/// Lets through at most `burst` events per `window` and counts the rest, so
/// an attacker cannot fill the disk with failed-login warnings.
pub struct RateLimit {
    window: Duration,
    burst: u32,
    started: Option<std::time::Instant>,
    passed: u32,
    suppressed: u64,
}

impl RateLimit {
    pub const fn new(window: Duration, burst: u32) -> RateLimit {
        RateLimit { window, burst, started: None, passed: 0, suppressed: 0 }
    }

    /// Whether to log an event happening at `now`.
    pub fn allow(&mut self, now: std::time::Instant) -> bool {
        if self.started.is_none_or(|t| now.saturating_duration_since(t) >= self.window) {
            self.started = Some(now);
            self.passed = 0;
        }
        if self.passed < self.burst {
            self.passed += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }

    /// When `take_suppressed` will have something to say, so the loop can
    /// wake up for it.
    pub fn flush_at(&self) -> Option<std::time::Instant> {
        self.started.filter(|_| self.suppressed > 0).map(|t| t + self.window)
    }

    /// Once the window in which events were suppressed is over, returns how
    /// many were (and forgets them), so the log can say so once.
    pub fn take_suppressed(&mut self, now: std::time::Instant) -> Option<u64> {
        let over = self.started.is_some_and(|t| now.saturating_duration_since(t) >= self.window);
        (over && self.suppressed > 0).then(|| std::mem::take(&mut self.suppressed))
    }
}

/// Everything the access line reports about one finished connection.
pub struct Record<'a> {
    pub id: u32,
    pub client: SocketAddr,
    pub user: Option<&'a [u8]>,
    pub pool: Option<&'a str>,
    pub server: Option<SocketAddr>,
    pub duration: Duration,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub reason: &'a EndReason,
    /// The client leg's TLS version, if it used TLS.
    pub tls: Option<&'a str>,
}

/// Makes a peer-supplied name printable on one log line: no control
/// characters, bounded length.
pub fn printable(name: &[u8]) -> String {
    let s: String = String::from_utf8_lossy(&name[..name.len().min(64)])
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if name.len() > 64 {
        format!("{s}...")
    } else {
        s
    }
}

impl fmt::Display for Record<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "conn={} client={} user={} pool={} server={} duration={:.3}s bytes_in={} bytes_out={} end={} tls={}",
            self.id,
            self.client,
            self.user.map_or_else(|| "-".to_string(), printable),
            self.pool.unwrap_or("-"),
            self.server.map_or_else(|| "-".to_string(), |s| s.to_string()),
            self.duration.as_secs_f64(),
            self.bytes_in,
            self.bytes_out,
            self.reason,
            self.tls.unwrap_or("-")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_line_has_every_field() {
        let r = Record {
            id: 3,
            client: "127.0.0.1:5000".parse().unwrap(),
            user: Some(b"app_ro"),
            pool: Some("replicas"),
            server: Some("127.0.0.1:23307".parse().unwrap()),
            duration: Duration::from_millis(1500),
            bytes_in: 10,
            bytes_out: 20,
            reason: &EndReason::ClientClosed,
            tls: Some("TLSv1.3"),
        };
        assert_eq!(
            r.to_string(),
            "conn=3 client=127.0.0.1:5000 user=app_ro pool=replicas server=127.0.0.1:23307 \
             duration=1.500s bytes_in=10 bytes_out=20 end=client-closed tls=TLSv1.3"
        );
    }

    #[test]
    fn rate_limit_passes_a_burst_per_window_and_counts_the_rest() {
        let t0 = std::time::Instant::now();
        let mut r = RateLimit::new(Duration::from_secs(1), 3);
        let passed = (0..10).filter(|_| r.allow(t0)).count();
        assert_eq!(passed, 3);
        assert_eq!(r.take_suppressed(t0), None, "window not over yet");
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(r.take_suppressed(t1), Some(7));
        assert_eq!(r.take_suppressed(t1), None);
        assert!(r.allow(t1));
    }

    #[test]
    fn hostile_names_stay_on_one_bounded_line() {
        assert_eq!(printable(b"a\nb\x1b"), "a?b?");
        assert!(printable(&[b'x'; 70_000]).len() < 80);
    }
}
