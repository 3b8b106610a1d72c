//! The errors myroute itself sends to clients, each mapped to its MySQL
//! error code, SQLSTATE and message in this one place.
//!
//! Codes are from the server's ranges (1000-1999, 3000 and up): codes
//! 2000-2999 belong to client libraries, which treat an ERR packet
//! carrying one as malformed.
//! Messages never contain a password, hash, salt or token.

use crate::protocol::wire::put_packet;

/// Why myroute refuses or ends a client connection itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown user or wrong password: indistinguishable on purpose.
    AccessDenied { user: String, host: String, using_password: bool },
    /// The client asked for TLS (SSLRequest), which is not offered.
    SslUnsupported,
    /// `tls = required` and the client logs in without TLS.
    InsecureTransport,
    /// A pre-4.1 HandshakeResponse320.
    Pre41Client,
    /// A connection-phase packet that does not parse; the text says what.
    BadHandshake(String),
    /// A packet whose sequence id is not the one the phase expects.
    PacketsOutOfOrder,
    /// No server of the user's pool could be reached or logged in to.
    PoolUnreachable { pool: String, detail: String },
    /// The backend account wants an auth plugin myroute cannot answer.
    PluginUnsupported { user: String, server: String, plugin: String },
    /// The client did not finish logging in within `handshake_timeout`.
    HandshakeTimeout,
    /// `max_clients` connections are open already.
    TooManyConnections,
    /// A shutdown ends a client that has not logged in yet.
    ShuttingDown,
    /// The admin console's KILL ends a client that has not logged in yet.
    Killed,
}

impl Refusal {
    /// `(error code, SQLSTATE)`.
    pub fn code(&self) -> (u16, &'static str) {
        match self {
            Refusal::AccessDenied { .. } => (1045, "28000"), // ER_ACCESS_DENIED_ERROR
            Refusal::SslUnsupported
            | Refusal::Pre41Client
            | Refusal::BadHandshake(_)
            | Refusal::HandshakeTimeout => (1043, "08S01"), // ER_HANDSHAKE_ERROR
            Refusal::PacketsOutOfOrder => (1156, "08S01"),   // ER_NET_PACKETS_OUT_OF_ORDER
            // ER_SECURE_TRANSPORT_REQUIRED, as MySQL and MariaDB (11.4) send it.
            Refusal::InsecureTransport => (3159, "HY000"),
            // ER_CONNECT_TO_FOREIGN_DATA_SOURCE, with a connection-class
            // SQLSTATE so drivers treat it as a failed connection.
            Refusal::PoolUnreachable { .. } => (1429, "08S01"),
            // ER_NOT_SUPPORTED_AUTH_MODE: what a server answers a client
            // that lacks the account's plugin.
            Refusal::PluginUnsupported { .. } => (1251, "08004"),
            Refusal::TooManyConnections => (1040, "08004"), // ER_CON_COUNT_ERROR
            Refusal::ShuttingDown => (1053, "08S01"),       // ER_SERVER_SHUTDOWN
            Refusal::Killed => (1927, "70100"),             // ER_CONNECTION_KILLED
        }
    }

    /// The human-readable message.
    pub fn message(&self) -> String {
        match self {
            Refusal::AccessDenied {
                user,
                host,
                using_password,
            } => format!(
                "Access denied for user '{}'@'{host}' (using password: {})",
                clip(user, 128),
                if *using_password { "YES" } else { "NO" }
            ),
            Refusal::SslUnsupported => {
                "Bad handshake: TLS is not offered here (tls = off); connect without SSL".into()
            }
            Refusal::InsecureTransport => "Connections using insecure transport are prohibited while --require_secure_transport=ON.".into(),
            Refusal::Pre41Client => {
                "Bad handshake: client does not support protocol 4.1 authentication".into()
            }
            Refusal::BadHandshake(what) => format!("Bad handshake: {what}"),
            Refusal::PacketsOutOfOrder => "Got packets out of order".into(),
            Refusal::PoolUnreachable { pool, detail } => {
                format!("Unable to connect to pool '{pool}': {detail}")
            }
            Refusal::PluginUnsupported { user, server, plugin } => format!(
                "Client does not support authentication protocol requested by server: account '{}' on {server} uses auth plugin '{plugin}', and myroute logs in to servers with mysql_native_password only",
                clip(user, 128)
            ),
            Refusal::HandshakeTimeout => "Bad handshake: handshake_timeout expired".into(),
            Refusal::TooManyConnections => "Too many connections".into(),
            Refusal::ShuttingDown => "Server shutdown in progress".into(),
            Refusal::Killed => "Connection was killed".into(),
        }
    }

    /// The ERR packet (header included) with sequence id `seq`.
    pub fn packet(&self, seq: u8) -> Vec<u8> {
        let (code, state) = self.code();
        err_packet(seq, code, state, &self.message())
    }
}

/// Why a KILL naming a myroute id is answered by myroute itself, with an
/// ERR in place of the server's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KillError {
    /// No connection has that id.
    UnknownThread(u64),
    /// The target belongs to another user and runs nowhere yet.
    NotOwner(u64),
    /// Statements follow the KILL, and it is not carried out on the
    /// killer's own session: one reply cannot hold both.
    FollowedByStatements(u64),
    /// The target's session is on another server and
    /// `kill_across_servers = no`.
    OtherServer { id: u64, server: String },
    /// The side connection that would run the KILL failed.
    ServerUnreachable { server: String, why: String },
}

impl KillError {
    /// `(error code, SQLSTATE)`.
    pub fn code(&self) -> (u16, &'static str) {
        match self {
            KillError::UnknownThread(_) => (1094, "HY000"), // ER_NO_SUCH_THREAD
            KillError::NotOwner(_) => (1095, "HY000"),      // ER_KILL_DENIED_ERROR
            // ER_NOT_SUPPORTED_YET: what a server says of what it cannot do.
            KillError::FollowedByStatements(_) | KillError::OtherServer { .. } => (1235, "42000"),
            KillError::ServerUnreachable { .. } => (1429, "08S01"),
        }
    }

    /// The human-readable message.
    pub fn message(&self) -> String {
        match self {
            KillError::UnknownThread(id) => format!("Unknown thread id: {id}"),
            KillError::NotOwner(id) => format!("You are not owner of thread {id}"),
            KillError::FollowedByStatements(id) => format!(
                "This version of MySQL doesn't yet support 'KILL of connection {id} followed by other statements in one query: myroute carries it only to a session on your own server; send the KILL on its own'"
            ),
            KillError::OtherServer { id, server } => format!(
                "This version of MySQL doesn't yet support 'KILL of connection {id}: its session is on server {server}, another than yours; set kill_across_servers = yes'"
            ),
            KillError::ServerUnreachable { server, why } => {
                format!("Unable to connect to server {server} to run the KILL: {why}")
            }
        }
    }

    /// The ERR payload (no header: the pair numbers it).
    pub fn payload(&self) -> Vec<u8> {
        let (code, state) = self.code();
        err_packet(0, code, state, &self.message()).split_off(4)
    }
}

/// Why the admin console answers a statement or command with an ERR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleError {
    /// A statement that is not a console command; the text lists them.
    UnknownStatement(&'static str),
    /// A command other than COM_QUERY, COM_PING, COM_QUIT, COM_INIT_DB.
    UnknownCommand,
    /// A packet over the console's limit, after the login.
    PacketTooLarge,
    /// KILL of an id no client has.
    UnknownThread(u32),
    /// DRAIN or ENABLE of an address no pool has.
    NoSuchServer(String),
    /// RELOAD refused; the configuration is unchanged.
    ReloadFailed(String),
}

impl ConsoleError {
    /// `(error code, SQLSTATE)`.
    pub fn code(&self) -> (u16, &'static str) {
        match self {
            ConsoleError::UnknownStatement(_) => (1064, "42000"), // ER_PARSE_ERROR
            ConsoleError::UnknownCommand => (1047, "08S01"),      // ER_UNKNOWN_COM_ERROR
            ConsoleError::PacketTooLarge => (1153, "08S01"),      // ER_NET_PACKET_TOO_LARGE
            ConsoleError::UnknownThread(_) => (1094, "HY000"),    // ER_NO_SUCH_THREAD
            // ER_UNKNOWN_ERROR: what a server says when no code fits.
            ConsoleError::NoSuchServer(_) | ConsoleError::ReloadFailed(_) => (1105, "HY000"),
        }
    }

    /// The human-readable message.
    pub fn message(&self) -> String {
        match self {
            ConsoleError::UnknownStatement(list) => (*list).into(),
            ConsoleError::UnknownCommand => "Unknown command".into(),
            ConsoleError::PacketTooLarge => {
                "Got a packet bigger than 'max_allowed_packet' bytes".into()
            }
            ConsoleError::UnknownThread(id) => format!("Unknown thread id: {id}"),
            ConsoleError::NoSuchServer(addr) => {
                format!("no server {addr} (name it by the address SHOW SERVERS shows)")
            }
            ConsoleError::ReloadFailed(why) => {
                format!("reload failed, configuration unchanged: {why}")
            }
        }
    }

    /// The ERR packet (header included) with sequence id `seq`.
    pub fn packet(&self, seq: u8) -> Vec<u8> {
        let (code, state) = self.code();
        err_packet(seq, code, state, &self.message())
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn clip(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Builds an ERR packet (CLIENT_PROTOCOL_41 layout: 0xFF, code, '#',
/// SQLSTATE, message), header included.
pub fn err_packet(seq: u8, code: u16, sqlstate: &str, message: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(9 + message.len());
    p.push(0xFF);
    p.extend_from_slice(&code.to_le_bytes());
    p.push(b'#');
    p.extend_from_slice(&sqlstate.as_bytes()[..5]);
    // Keep the packet small whatever a peer-supplied name inside contains.
    let msg = message.as_bytes();
    p.extend_from_slice(&msg[..msg.len().min(512)]);
    let mut out = Vec::with_capacity(p.len() + 4);
    put_packet(&mut out, seq, &p);
    out
}

/// Reads `(code, message)` out of an ERR payload, for logs.
pub fn parse_err(payload: &[u8]) -> Option<(u16, String)> {
    let rest = payload.strip_prefix(&[0xFF])?;
    let code = u16::from_le_bytes([*rest.first()?, *rest.get(1)?]);
    let mut msg = &rest[2..];
    if msg.first() == Some(&b'#') && msg.len() >= 6 {
        msg = &msg[6..];
    }
    Some((code, String::from_utf8_lossy(msg).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_errors_are_the_servers() {
        let p = KillError::UnknownThread(1 << 30).payload();
        assert_eq!(parse_err(&p), Some((1094, "Unknown thread id: 1073741824".into())));
        assert_eq!(&p[3..9], b"#HY000");
        let p = KillError::OtherServer { id: 7, server: "10.0.0.2:3306".into() }.payload();
        let (code, msg) = parse_err(&p).unwrap();
        assert_eq!((code, &p[3..9]), (1235, &b"#42000"[..]));
        assert!(msg.contains("10.0.0.2:3306") && msg.contains("kill_across_servers"), "{msg}");
    }

    #[test]
    fn access_denied_is_the_servers_message() {
        let r = Refusal::AccessDenied {
            user: "app_rw".into(),
            host: "127.0.0.1".into(),
            using_password: true,
        };
        let p = r.packet(2);
        assert_eq!(&p[..4], &[(p.len() - 4) as u8, 0, 0, 2]);
        assert_eq!(&p[4..7], &[0xFF, 0x15, 0x04]); // 1045
        assert_eq!(&p[7..13], b"#28000");
        assert_eq!(&p[13..], b"Access denied for user 'app_rw'@'127.0.0.1' (using password: YES)");
        assert_eq!(parse_err(&p[4..]).unwrap().0, 1045);
    }

    #[test]
    fn every_code_is_in_the_server_range() {
        let all = [
            Refusal::AccessDenied {
                user: String::new(),
                host: String::new(),
                using_password: false,
            },
            Refusal::SslUnsupported,
            Refusal::Pre41Client,
            Refusal::BadHandshake("x".into()),
            Refusal::PacketsOutOfOrder,
            Refusal::PoolUnreachable { pool: "p".into(), detail: "d".into() },
            Refusal::HandshakeTimeout,
            Refusal::TooManyConnections,
        ];
        for r in all {
            let (code, state) = r.code();
            assert!((1000..2000).contains(&code), "{r:?}");
            assert_eq!(state.len(), 5);
        }
        let console = [
            ConsoleError::UnknownStatement("x"),
            ConsoleError::UnknownCommand,
            ConsoleError::PacketTooLarge,
            ConsoleError::UnknownThread(1),
            ConsoleError::NoSuchServer("a".into()),
            ConsoleError::ReloadFailed("r".into()),
        ];
        for e in console {
            let (code, state) = e.code();
            assert!((1000..2000).contains(&code), "{e:?}");
            assert_eq!(state.len(), 5);
        }
    }

    #[test]
    fn console_errors_are_the_servers() {
        let p = ConsoleError::UnknownThread(99).packet(1);
        assert_eq!(p[3], 1);
        assert_eq!(parse_err(&p[4..]), Some((1094, "Unknown thread id: 99".into())));
        assert_eq!(&p[7..13], b"#HY000");
        let p = ConsoleError::UnknownCommand.packet(1);
        assert_eq!((parse_err(&p[4..]).unwrap().0, &p[7..13]), (1047, &b"#08S01"[..]));
        let p = ConsoleError::ReloadFailed("line 3: bad".into()).packet(1);
        assert_eq!(
            parse_err(&p[4..]).unwrap().1,
            "reload failed, configuration unchanged: line 3: bad"
        );
    }

    #[test]
    fn pool_unreachable_names_the_pool_with_a_connection_sqlstate() {
        let r = Refusal::PoolUnreachable {
            pool: "replicas".into(),
            detail: "127.0.0.1:1: connection refused".into(),
        };
        assert_eq!(r.code().1.get(..2), Some("08"));
        assert!(r.message().contains("'replicas'"));
    }

    #[test]
    fn long_messages_are_capped() {
        let r = Refusal::AccessDenied {
            user: "u".repeat(70_000),
            host: "h".into(),
            using_password: true,
        };
        let p = r.packet(2);
        assert!(p.len() < 600);
        assert!(String::from_utf8_lossy(&p).ends_with("'@'h' (using password: YES)"));
    }
}
