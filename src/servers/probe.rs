//! A probe: a short session myroute opens to a server on its own account
//! (log in, run at most one statement, COM_QUIT), as a state machine without
//! I/O. Health checks and the side connections that carry a client's KILL
//! to another server are probes.
//!
//! A probe completes a real login, never just a TCP connect: a server counts
//! every handshake a client drops as a connection error and, after
//! `max_connect_errors` of them, blocks the host (ERR 1129), which would
//! block every user behind the proxy.
//!
//! A health check reads the greeting (and learns the server's version,
//! capabilities and character set), logs in as `health.user`, reads
//! `@@read_only` when a pool role needs it, and quits. Without `health.user`
//! it logs in as a user named `myroute` without password and takes the
//! server's refusal as a sign of life: an authentication failure, unlike a
//! dropped handshake, does not count toward host blocking.

use crate::config::HealthUser;
use crate::protocol::constants::{caps, com};
use crate::protocol::dial::{Dial, Failure, Identity, Progress, TlsWant};
use crate::protocol::errors::parse_err;
use crate::protocol::handshake::{Response, NATIVE};
use crate::protocol::wire::{put_packet, take_packet, Reader};
use crate::servers::pool::BackendInfo;

/// The user a check without `health.user` logs in as (and is refused).
pub const ANONYMOUS_USER: &[u8] = b"myroute";
/// A probe's replies are small; anything larger is a failure.
const MAX_INPUT: usize = 64 * 1024;
/// utf8mb4_general_ci, the character set a probe's session uses.
const CHARSET: u8 = 45;

/// What the probe is waiting for.
enum Step {
    /// The login exchange (greeting, response, OK or ERR).
    LoggingIn(Box<Dial>),
    /// The statement's reply: an OK or ERR, or a one-column result set
    /// (column count, column definition, EOF, then the row).
    AwaitingReply { packets_seen: u8 },
    /// It has ended.
    Done,
}

/// What the statement got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// No statement was run.
    Nothing,
    /// An OK or ERR payload.
    Packet(Vec<u8>),
    /// The first value of the first row (`None`: NULL or no row).
    Value(Option<Vec<u8>>),
}

/// How a probe ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Logged in; the statement's reply.
    Done(Reply),
    /// The server refused the login: its ERR payload.
    Refused(Vec<u8>),
    /// The connection or the protocol failed: why.
    Failed(String),
}

/// One probe of one server.
pub struct Probe {
    step: Step,
    /// The COM_QUERY payload run once logged in.
    statement: Option<Vec<u8>>,
    input: Vec<u8>,
    /// Bytes for the server; the runtime writes them out.
    pub out: Vec<u8>,
    /// Learned from the greeting.
    pub info: Option<BackendInfo>,
    /// The SSLRequest in `out` must be followed by a TLS handshake.
    tls_request: bool,
}

impl Probe {
    /// A probe that logs in as `id` once the server greets (over TLS as
    /// `tls` says), then runs `statement` (a COM_QUERY payload), if any, and
    /// quits.
    pub fn new(id: Identity, statement: Option<Vec<u8>>, tls: TlsWant) -> Probe {
        Probe {
            step: Step::LoggingIn(Box::new(Dial::new(id, tls))),
            statement,
            input: Vec::new(),
            out: Vec::new(),
            info: None,
            tls_request: false,
        }
    }

    /// True once when the runtime should start TLS (after writing `out`).
    pub fn take_tls_request(&mut self) -> bool {
        std::mem::take(&mut self.tls_request)
    }

    /// The TLS handshake is done: the login goes on inside it.
    pub fn tls_started(&mut self) {
        if let Step::LoggingIn(dial) = &mut self.step {
            dial.tls_started(&mut self.out);
        }
    }

    /// Bytes from the server. Returns the outcome once there is one; the
    /// COM_QUIT that ends a login is then in `out`.
    pub fn on_bytes(&mut self, data: &[u8]) -> Option<Outcome> {
        if self.input.len() + data.len() > MAX_INPUT {
            return Some(Outcome::Failed("reply too large".into()));
        }
        self.input.extend_from_slice(data);
        loop {
            let (seq, payload) = match take_packet(&mut self.input, MAX_INPUT) {
                Ok(Some(p)) => p,
                Ok(None) => return None,
                Err(e) => return Some(Outcome::Failed(e.to_string())),
            };
            if let Some(outcome) = self.on_packet(seq, &payload) {
                self.step = Step::Done;
                return Some(outcome);
            }
        }
    }

    fn on_packet(&mut self, seq: u8, p: &[u8]) -> Option<Outcome> {
        match &mut self.step {
            Step::Done => Some(Outcome::Failed("data out of turn".into())),
            Step::LoggingIn(dial) => {
                let progress = dial.on_packet(seq, p, &mut self.out);
                if self.info.is_none() {
                    self.info = dial.greeting().map(BackendInfo::of);
                }
                match progress {
                    Progress::Continue => None,
                    Progress::StartTls => {
                        self.tls_request = true;
                        None
                    }
                    Progress::LoggedIn(_) => match self.statement.take() {
                        Some(sql) => {
                            put_packet(&mut self.out, 0, &sql);
                            self.step = Step::AwaitingReply { packets_seen: 0 };
                            None
                        }
                        None => Some(self.quit(Reply::Nothing)),
                    },
                    Progress::Refused(err) => Some(Outcome::Refused(err)),
                    Progress::Failed(Failure::Server(why)) if self.info.is_none() => {
                        Some(Outcome::Failed(format!("refused before greeting: {why}")))
                    }
                    Progress::Failed(Failure::Server(why) | Failure::Incompatible(why)) => {
                        Some(Outcome::Failed(why))
                    }
                    Progress::Failed(Failure::Plugin(plugin)) => {
                        let name = String::from_utf8_lossy(&plugin).into_owned();
                        Some(Outcome::Failed(format!("server asks for auth plugin '{name}'")))
                    }
                }
            }
            Step::AwaitingReply { packets_seen: 0 } if matches!(p.first(), Some(0x00 | 0xFF)) => {
                Some(self.quit(Reply::Packet(p.to_vec())))
            }
            // Column count, column definition and EOF are skipped; the
            // fourth packet is the row.
            Step::AwaitingReply { packets_seen } if *packets_seen < 3 => {
                *packets_seen += 1;
                None
            }
            Step::AwaitingReply { .. } => {
                let value = Reader::new(p).lenenc_bytes().ok().map(<[u8]>::to_vec);
                Some(self.quit(Reply::Value(value)))
            }
        }
    }

    /// Queues COM_QUIT and ends the probe.
    fn quit(&mut self, reply: Reply) -> Outcome {
        put_packet(&mut self.out, 0, &[com::QUIT]);
        Outcome::Done(reply)
    }
}

/// How a finished health check went: `Ok(read_only)` or `Err(why)`.
pub type Verdict = Result<Option<bool>, String>;

/// A health check that logs in as `user` (anonymously without one), over
/// TLS as `tls` says, and, if `want_read_only` (only possible with a user),
/// reads `@@read_only`.
pub fn health_check(user: Option<&HealthUser>, want_read_only: bool, tls: TlsWant) -> Probe {
    // No DEPRECATE_EOF, so `@@read_only` comes back with classic EOF packets.
    let flags = caps::LONG_PASSWORD
        | caps::LONG_FLAG
        | caps::PROTOCOL_41
        | caps::TRANSACTIONS
        | caps::SECURE_CONNECTION
        | caps::PLUGIN_AUTH;
    let id = Identity {
        hello: Response {
            capabilities: flags,
            ext: 0,
            max_packet: 1 << 24,
            charset: CHARSET,
            user: user.map_or(ANONYMOUS_USER.to_vec(), |u| u.name.clone().into_bytes()),
            auth: Vec::new(),
            database: None,
            plugin: NATIVE.to_vec(),
            attrs: None,
        },
        stage1: user.and_then(|u| u.stage1.clone()).map(Box::new),
        anonymous: user.is_none(),
    };
    let read_only = (want_read_only && user.is_some()).then(|| b"\x03SELECT @@read_only".to_vec());
    Probe::new(id, read_only, tls)
}

/// What a health check's outcome says about the server. `anonymous`: the
/// check logged in without `health.user`.
pub fn verdict(outcome: Outcome, anonymous: bool) -> Verdict {
    match outcome {
        Outcome::Done(Reply::Nothing) => Ok(None),
        Outcome::Done(Reply::Packet(p)) => Err(err_text("SELECT @@read_only failed", &p)),
        Outcome::Done(Reply::Value(v)) => match v.as_deref() {
            Some(b"0") => Ok(Some(false)),
            Some(b"1") => Ok(Some(true)),
            _ => Err("unexpected @@read_only value".into()),
        },
        // For the anonymous check a refused login is the answer expected;
        // a host block or a full server is not.
        Outcome::Refused(p) if anonymous => match parse_err(&p).map(|(c, _)| c) {
            Some(1044 | 1045 | 1698) => Ok(None),
            _ => Err(err_text("login refused", &p)),
        },
        Outcome::Refused(p) => Err(err_text("health.user login refused", &p)),
        Outcome::Failed(why) => Err(why),
    }
}

fn err_text(what: &str, payload: &[u8]) -> String {
    match parse_err(payload) {
        Some((code, msg)) => format!("{what}: ERR {code} {msg}"),
        None => what.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A health check as the runtime drives it.
    struct Check(Probe, bool);

    impl Check {
        fn new(user: Option<&HealthUser>, want_read_only: bool) -> Check {
            Check(health_check(user, want_read_only, TlsWant::No), user.is_none())
        }

        fn on_bytes(&mut self, bytes: &[u8]) -> Option<Verdict> {
            self.0.on_bytes(bytes).map(|o| verdict(o, self.1))
        }
    }
    use crate::protocol::errors::err_packet;
    use crate::protocol::scramble::stage1_of;
    use crate::protocol::{handshake, scramble};

    fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        put_packet(&mut v, seq, payload);
        v
    }

    fn greeting() -> Vec<u8> {
        packet(
            0,
            &handshake::build_greeting(
                "5.5.5-10.11.6-MariaDB",
                9,
                &[b's'; 20],
                caps::RELAYABLE,
                0,
                45,
            ),
        )
    }

    fn user() -> HealthUser {
        HealthUser { name: "monitor".into(), stage1: Some(stage1_of(b"pw")) }
    }

    const OK: &[u8] = &[0, 0, 0, 2, 0, 0, 0];

    /// The HandshakeResponse41 the check sent, and its sequence id.
    fn sent_login(c: &mut Check) -> (u8, handshake::Response) {
        let login = sent(c);
        match handshake::parse_client_hello(&login[0].1) {
            Ok(handshake::ClientHello::Response(r)) => (login[0].0, r),
            other => panic!("not a login: {other:?}"),
        }
    }

    fn sent(c: &mut Check) -> Vec<(u8, Vec<u8>)> {
        let mut r = Reader::new(&c.0.out);
        let mut v = Vec::new();
        while r.remaining() >= 4 {
            let h = r.bytes(4).unwrap();
            let n = usize::from(h[0]) | usize::from(h[1]) << 8;
            v.push((h[3], r.bytes(n).unwrap().to_vec()));
        }
        c.0.out.clear();
        v
    }

    #[test]
    fn logs_in_reads_read_only_and_quits() {
        let mut c = Check::new(Some(&user()), true);
        assert_eq!(c.on_bytes(&greeting()), None);
        let (seq, r) = sent_login(&mut c);
        assert_eq!((seq, r.user.as_slice()), (1, &b"monitor"[..]));
        let s2 = scramble::hash_password(b"pw");
        assert!(scramble::check_token(&[b's'; 20], &s2, &r.auth).is_some());
        assert_eq!(c.0.info.as_ref().unwrap().version, "5.5.5-10.11.6-MariaDB");
        assert_eq!(c.on_bytes(&packet(2, OK)), None);
        assert_eq!(sent(&mut c), vec![(0, b"\x03SELECT @@read_only".to_vec())]);
        // Result set: count, column definition, EOF, row "1", EOF, in one read.
        let mut rs = packet(1, &[1]);
        rs.extend(packet(2, b"\x03def\0\0\0\x0b@@read_only\0\x0c\x3f\0\x01\0\0\0\x08\x80\0\0\0\0"));
        rs.extend(packet(3, &[0xFE, 0, 0, 2, 0]));
        rs.extend(packet(4, b"\x011"));
        rs.extend(packet(5, &[0xFE, 0, 0, 2, 0]));
        assert_eq!(c.on_bytes(&rs), Some(Ok(Some(true))));
        assert_eq!(sent(&mut c), vec![(0, vec![com::QUIT])]);
    }

    #[test]
    fn without_health_user_a_refused_login_is_a_sign_of_life() {
        let mut c = Check::new(None, false);
        assert_eq!(c.on_bytes(&greeting()), None);
        let (_, r) = sent_login(&mut c);
        assert_eq!(r.user, ANONYMOUS_USER);
        assert!(r.auth.is_empty());
        let denied = err_packet(2, 1045, "28000", "Access denied");
        assert_eq!(c.on_bytes(&denied), Some(Ok(None)));
        // ... but a blocked host is a failure.
        let mut c = Check::new(None, false);
        c.on_bytes(&greeting());
        let blocked = err_packet(2, 1129, "HY000", "Host is blocked");
        assert!(matches!(c.on_bytes(&blocked), Some(Err(e)) if e.contains("1129")));
    }

    #[test]
    fn refusals_and_junk_fail_the_check() {
        let u = user();
        let cases: Vec<Vec<u8>> =
            vec![err_packet(0, 1040, "08004", "Too many connections"), packet(0, b"\x09garbage")];
        for bytes in cases {
            let mut c = Check::new(Some(&u), false);
            assert!(matches!(c.on_bytes(&bytes), Some(Err(_))));
        }
        let mut c = Check::new(Some(&u), false);
        c.on_bytes(&greeting());
        let denied = err_packet(2, 1045, "28000", "Access denied");
        assert!(matches!(c.on_bytes(&denied), Some(Err(e)) if e.contains("health.user")));
        let mut c = Check::new(None, false);
        assert!(matches!(c.on_bytes(&[0xFF; 70_000]), Some(Err(_))));
    }

    #[test]
    fn anonymous_check_answers_any_auth_switch_with_nothing() {
        let mut c = Check::new(None, false);
        c.on_bytes(&greeting());
        sent(&mut c);
        let mut switch = vec![0xFE];
        switch.extend_from_slice(b"caching_sha2_password\0");
        switch.extend_from_slice(&[7; 20]);
        assert_eq!(c.on_bytes(&packet(2, &switch)), None);
        assert_eq!(sent(&mut c), vec![(3, vec![])]);
        let denied = err_packet(4, 1045, "28000", "Access denied");
        assert_eq!(c.on_bytes(&denied), Some(Ok(None)));
    }

    #[test]
    fn answers_a_native_auth_switch_once() {
        let u = user();
        let mut c = Check::new(Some(&u), false);
        c.on_bytes(&greeting());
        sent(&mut c);
        let salt = [b'n'; 20];
        assert_eq!(c.on_bytes(&packet(2, &handshake::build_auth_switch(&salt))), None);
        let reply = sent(&mut c);
        assert_eq!(reply[0].0, 3);
        assert_eq!(reply[0].1, scramble::token_for(&salt, u.stage1.as_ref().unwrap()).to_vec());
        assert_eq!(c.on_bytes(&packet(4, OK)), Some(Ok(None)));
    }
}
