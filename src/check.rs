//! A health check of one backend server, as a state machine without I/O.
//!
//! A check completes a real login, never just a TCP connect: a server counts
//! every handshake a client drops as a connection error and, after
//! `max_connect_errors` of them, blocks the host (ERR 1129), which would
//! block every user behind the proxy. So a check reads the greeting (and
//! learns the server's version, capabilities and character set), logs in
//! as `health.user`, reads `@@read_only` when a pool role needs it, and sends
//! COM_QUIT. Without `health.user` it logs in as a user named `myroute`
//! without password and takes the server's refusal as a sign of life: an
//! authentication failure, unlike a dropped handshake, does not count toward
//! host blocking.

use crate::config::HealthUser;
use crate::errors::parse_err;
use crate::handshake::{self, caps, NATIVE};
use crate::pool::BackendInfo;
use crate::scramble;
use crate::wire::{self, put_packet, Reader, HEADER_LEN};

/// The user a check without `health.user` logs in as (and is refused).
pub const ANONYMOUS_USER: &[u8] = b"myroute";
/// A check's replies are small; anything larger is a failure.
const MAX_INPUT: usize = 64 * 1024;
/// COM_QUIT command byte.
const COM_QUIT: u8 = 0x01;

/// What the check is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// TCP connect in progress.
    Connecting,
    /// HandshakeV10 from the server.
    AwaitingGreeting,
    /// OK, ERR or AuthSwitchRequest with this sequence id.
    AwaitingLogin { seq: u8, switched: bool },
    /// The `SELECT @@read_only` result set: column count, column
    /// definition, EOF, then the row.
    AwaitingReadOnly { packets_seen: u8 },
}

/// How a finished check went.
pub type Verdict = Result<Option<bool>, String>;

/// One check of one server.
pub struct Check {
    step: Step,
    input: Vec<u8>,
    /// Bytes for the server; the event loop writes them out.
    pub out: Vec<u8>,
    /// Learned from the greeting.
    pub info: Option<BackendInfo>,
    want_read_only: bool,
}

impl Check {
    /// A check that will also read `@@read_only` if `want_read_only` (only
    /// possible with a health user).
    pub fn new(want_read_only: bool) -> Check {
        Check {
            step: Step::Connecting,
            input: Vec::new(),
            out: Vec::new(),
            info: None,
            want_read_only,
        }
    }

    /// The TCP connect completed.
    pub fn connected(&mut self) {
        if self.step == Step::Connecting {
            self.step = Step::AwaitingGreeting;
        }
    }

    /// Bytes from the server. Returns the verdict once there is one.
    pub fn on_bytes(&mut self, data: &[u8], user: Option<&HealthUser>) -> Option<Verdict> {
        if self.input.len() + data.len() > MAX_INPUT {
            return Some(Err("reply too large".into()));
        }
        self.input.extend_from_slice(data);
        loop {
            let (seq, payload) = self.take_packet()?;
            if let Some(verdict) = self.on_packet(seq, &payload, user) {
                return Some(verdict);
            }
        }
    }

    fn take_packet(&mut self) -> Option<(u8, Vec<u8>)> {
        let (len, seq) = wire::header_of(&self.input)?;
        if self.input.len() < HEADER_LEN + len {
            return None;
        }
        let payload = self.input[HEADER_LEN..HEADER_LEN + len].to_vec();
        self.input.drain(..HEADER_LEN + len);
        Some((seq, payload))
    }

    fn on_packet(&mut self, seq: u8, p: &[u8], user: Option<&HealthUser>) -> Option<Verdict> {
        match self.step {
            Step::Connecting => Some(Err("data before connect".into())),
            Step::AwaitingGreeting => {
                if p.first() == Some(&0xFF) {
                    return Some(Err(err_text("refused before greeting", p)));
                }
                let g = match handshake::parse_greeting(p) {
                    Ok(g) => g,
                    Err(e) => return Some(Err(format!("bad greeting: {e}"))),
                };
                let token = match user.and_then(|u| u.stage1.as_ref()) {
                    Some(stage1) => scramble::token_for(&g.salt, stage1).to_vec(),
                    None => Vec::new(),
                };
                scramble::wipe_stack();
                let name = user.map_or(ANONYMOUS_USER, |u| u.name.as_bytes());
                put_packet(
                    &mut self.out,
                    seq.wrapping_add(1),
                    &login_packet(name, &token, g.charset),
                );
                self.info = Some(BackendInfo {
                    version: g.version,
                    capabilities: g.capabilities,
                    charset: g.charset,
                });
                self.step = Step::AwaitingLogin {
                    seq: seq.wrapping_add(2),
                    switched: false,
                };
                None
            }
            Step::AwaitingLogin {
                seq: want,
                switched,
            } => {
                if seq != want {
                    return Some(Err("login reply out of sequence".into()));
                }
                match (p.first(), user) {
                    // Logged in: read read_only if a role needs it, then quit.
                    (Some(0x00), Some(_)) if self.want_read_only => {
                        // COM_QUERY (0x03).
                        put_packet(&mut self.out, 0, b"\x03SELECT @@read_only");
                        self.step = Step::AwaitingReadOnly { packets_seen: 0 };
                        None
                    }
                    (Some(0x00), _) => Some(self.quit(None)),
                    // Refused: for the anonymous check a refused login is the
                    // answer expected; a host block or a full server is not.
                    (Some(0xFF), None) => match parse_err(p).map(|(c, _)| c) {
                        Some(1044 | 1045 | 1698) => Some(Ok(None)),
                        _ => Some(Err(err_text("login refused", p))),
                    },
                    (Some(0xFF), Some(_)) => Some(Err(err_text("health.user login refused", p))),
                    (Some(0xFE), _) if !switched => {
                        let (plugin, salt) = match handshake::parse_auth_switch(p) {
                            Ok(x) => x,
                            Err(e) => return Some(Err(format!("bad auth switch: {e}"))),
                        };
                        if user.is_none() {
                            // The anonymous login has no password for any
                            // plugin: an empty answer gets the refusal that
                            // ends the handshake cleanly.
                            put_packet(&mut self.out, seq.wrapping_add(1), &[]);
                            self.step = Step::AwaitingLogin {
                                seq: seq.wrapping_add(2),
                                switched: true,
                            };
                            return None;
                        }
                        if plugin != NATIVE || salt.len() != scramble::LEN {
                            let name = String::from_utf8_lossy(&plugin).into_owned();
                            return Some(Err(format!("server asks for auth plugin '{name}'")));
                        }
                        let token = match user.and_then(|u| u.stage1.as_ref()) {
                            Some(stage1) => scramble::token_for(&salt, stage1).to_vec(),
                            None => Vec::new(),
                        };
                        scramble::wipe_stack();
                        put_packet(&mut self.out, seq.wrapping_add(1), &token);
                        self.step = Step::AwaitingLogin {
                            seq: seq.wrapping_add(2),
                            switched: true,
                        };
                        None
                    }
                    _ => Some(Err("unexpected login reply".into())),
                }
            }
            Step::AwaitingReadOnly { packets_seen } => {
                if p.first() == Some(&0xFF) {
                    return Some(Err(err_text("SELECT @@read_only failed", p)));
                }
                // Column count, column definition and EOF are skipped; the
                // fourth packet is the row.
                if packets_seen < 3 {
                    self.step = Step::AwaitingReadOnly {
                        packets_seen: packets_seen + 1,
                    };
                    return None;
                }
                let value = Reader::new(p).lenenc_bytes().ok().map(|v| v.to_vec());
                let read_only = match value.as_deref() {
                    Some(b"0") => false,
                    Some(b"1") => true,
                    _ => return Some(Err("unexpected @@read_only value".into())),
                };
                Some(self.quit(Some(read_only)))
            }
        }
    }

    /// Queues COM_QUIT and ends the check with success.
    fn quit(&mut self, read_only: Option<bool>) -> Verdict {
        put_packet(&mut self.out, 0, &[COM_QUIT]);
        Ok(read_only)
    }
}

/// HandshakeResponse41 for a check: no DEPRECATE_EOF, so `@@read_only`
/// comes back with classic EOF packets.
fn login_packet(user: &[u8], token: &[u8], charset: u8) -> Vec<u8> {
    let flags = caps::LONG_PASSWORD
        | caps::LONG_FLAG
        | caps::PROTOCOL_41
        | caps::TRANSACTIONS
        | caps::SECURE_CONNECTION
        | caps::PLUGIN_AUTH;
    let mut p = Vec::with_capacity(64);
    p.extend_from_slice(&flags.to_le_bytes());
    p.extend_from_slice(&(1u32 << 24).to_le_bytes());
    p.push(charset);
    p.extend_from_slice(&[0; 23]);
    p.extend_from_slice(user);
    p.push(0);
    p.push(token.len() as u8);
    p.extend_from_slice(token);
    p.extend_from_slice(NATIVE);
    p.push(0);
    p
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
    use crate::errors::err_packet;
    use crate::scramble::stage1_of;

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
                45,
            ),
        )
    }

    fn user() -> HealthUser {
        HealthUser {
            name: "monitor".into(),
            stage1: Some(stage1_of(b"pw")),
        }
    }

    const OK: &[u8] = &[0, 0, 0, 2, 0, 0, 0];

    fn sent(c: &mut Check) -> Vec<(u8, Vec<u8>)> {
        let mut r = Reader::new(&c.out);
        let mut v = Vec::new();
        while r.remaining() >= 4 {
            let h = r.bytes(4).unwrap();
            let n = usize::from(h[0]) | usize::from(h[1]) << 8;
            v.push((h[3], r.bytes(n).unwrap().to_vec()));
        }
        c.out.clear();
        v
    }

    #[test]
    fn logs_in_reads_read_only_and_quits() {
        let mut c = Check::new(true);
        c.connected();
        let u = user();
        assert_eq!(c.on_bytes(&greeting(), Some(&u)), None);
        let login = sent(&mut c);
        let handshake::ClientHello::Response(r) =
            handshake::parse_client_hello(&login[0].1).unwrap()
        else {
            panic!()
        };
        assert_eq!((login[0].0, r.user.as_slice()), (1, &b"monitor"[..]));
        let s2 = scramble::hash_password(b"pw");
        assert!(scramble::check_token(&[b's'; 20], &s2, &r.auth).is_some());
        assert_eq!(c.info.as_ref().unwrap().version, "5.5.5-10.11.6-MariaDB");
        assert_eq!(c.on_bytes(&packet(2, OK), Some(&u)), None);
        assert_eq!(sent(&mut c), vec![(0, b"\x03SELECT @@read_only".to_vec())]);
        // Result set: count, column definition, EOF, row "1", EOF, in one read.
        let mut rs = packet(1, &[1]);
        rs.extend(packet(
            2,
            b"\x03def\0\0\0\x0b@@read_only\0\x0c\x3f\0\x01\0\0\0\x08\x80\0\0\0\0",
        ));
        rs.extend(packet(3, &[0xFE, 0, 0, 2, 0]));
        rs.extend(packet(4, b"\x011"));
        rs.extend(packet(5, &[0xFE, 0, 0, 2, 0]));
        assert_eq!(c.on_bytes(&rs, Some(&u)), Some(Ok(Some(true))));
        assert_eq!(sent(&mut c), vec![(0, vec![COM_QUIT])]);
    }

    #[test]
    fn without_health_user_a_refused_login_is_a_sign_of_life() {
        let mut c = Check::new(false);
        c.connected();
        assert_eq!(c.on_bytes(&greeting(), None), None);
        let login = sent(&mut c);
        let handshake::ClientHello::Response(r) =
            handshake::parse_client_hello(&login[0].1).unwrap()
        else {
            panic!()
        };
        assert_eq!(r.user, ANONYMOUS_USER);
        assert!(r.auth.is_empty());
        let denied = err_packet(2, 1045, "28000", "Access denied");
        assert_eq!(c.on_bytes(&denied, None), Some(Ok(None)));
        // ... but a blocked host is a failure.
        let mut c = Check::new(false);
        c.connected();
        c.on_bytes(&greeting(), None);
        let blocked = err_packet(2, 1129, "HY000", "Host is blocked");
        assert!(matches!(c.on_bytes(&blocked, None), Some(Err(e)) if e.contains("1129")));
    }

    #[test]
    fn refusals_and_junk_fail_the_check() {
        let u = user();
        let cases: Vec<Vec<u8>> = vec![
            err_packet(0, 1040, "08004", "Too many connections"),
            packet(0, b"\x09garbage"),
        ];
        for bytes in cases {
            let mut c = Check::new(false);
            c.connected();
            assert!(matches!(c.on_bytes(&bytes, Some(&u)), Some(Err(_))));
        }
        let mut c = Check::new(false);
        c.connected();
        c.on_bytes(&greeting(), Some(&u));
        let denied = err_packet(2, 1045, "28000", "Access denied");
        assert!(matches!(c.on_bytes(&denied, Some(&u)), Some(Err(e)) if e.contains("health.user")));
        let mut c = Check::new(false);
        assert!(matches!(c.on_bytes(&[0xFF; 70_000], None), Some(Err(_))));
    }

    #[test]
    fn anonymous_check_answers_any_auth_switch_with_nothing() {
        let mut c = Check::new(false);
        c.connected();
        c.on_bytes(&greeting(), None);
        sent(&mut c);
        let mut switch = vec![0xFE];
        switch.extend_from_slice(b"caching_sha2_password\0");
        switch.extend_from_slice(&[7; 20]);
        assert_eq!(c.on_bytes(&packet(2, &switch), None), None);
        assert_eq!(sent(&mut c), vec![(3, vec![])]);
        let denied = err_packet(4, 1045, "28000", "Access denied");
        assert_eq!(c.on_bytes(&denied, None), Some(Ok(None)));
    }

    #[test]
    fn answers_a_native_auth_switch_once() {
        let u = user();
        let mut c = Check::new(false);
        c.connected();
        c.on_bytes(&greeting(), Some(&u));
        sent(&mut c);
        let salt = [b'n'; 20];
        assert_eq!(
            c.on_bytes(&packet(2, &handshake::build_auth_switch(&salt)), Some(&u)),
            None
        );
        let reply = sent(&mut c);
        assert_eq!(reply[0].0, 3);
        assert_eq!(
            reply[0].1,
            scramble::token_for(&salt, u.stage1.as_ref().unwrap()).to_vec()
        );
        assert_eq!(c.on_bytes(&packet(4, OK), Some(&u)), Some(Ok(None)));
    }
}
