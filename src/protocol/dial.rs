//! The client side of a login: myroute logs in to a server, on a client's
//! behalf or for its own probes. The pair and the health check both run
//! this one exchange.
//!
//! ```text
//!  connected ──▶ AWAITING-BACKEND-HANDSHAKE ──HandshakeResponse41──▶ AWAITING-BACKEND-AUTH ⟲ AuthSwitchRequest
//!                   │ ERR                                               │ OK        │ ERR
//!                   ▼                                                   ▼           ▼
//!                Failed                                             LoggedIn     Refused
//! ```
//!
//! Heads up (MySQL "Connection Phase Packets"; MariaDB "Connection"):
//! - the server greets with HandshakeV10 (sequence 0), or refuses with an
//!   ERR before greeting (too many connections, host blocked);
//! - myroute answers with a HandshakeResponse41 (1) carrying a
//!   mysql_native_password token computed from the server's own salt and
//!   the SHA1 of the password; the server replies OK or ERR (2), or an
//!   AuthSwitchRequest (2), answered once (3), then OK or ERR (4);
//! - only mysql_native_password can be answered with SHA1(password): any
//!   other plugin the server asks for ends the login;
//! - with TLS, an SSLRequest (1) goes instead of the response; after the
//!   TLS handshake on the raw socket the response follows inside it (2) and
//!   every later sequence id is one higher ("Protocol::SSLRequest").
//!
//! Sans-IO: the caller takes whole packets off its buffer, hands each to
//! [`Dial::on_packet`], and sends what it wrote to `out`.

use crate::protocol::constants::caps;
use crate::protocol::errors::parse_err;
use crate::protocol::handshake::{self, Greeting, Response, NATIVE};
use crate::protocol::scramble::{self, Secret, LEN as SALT_LEN};
use crate::protocol::wire::put_packet;

/// Who logs in.
#[derive(Clone)]
pub struct Identity {
    /// The HandshakeResponse41 to send, its auth data empty: a client's own
    /// (capabilities, max packet, character set, user, database,
    /// attributes), or a probe's.
    pub hello: Response,
    /// `SHA1(password)`, or `None` for an account without password.
    pub stage1: Option<Box<Secret>>,
    /// A login that expects to be refused (the health check without a
    /// user): any switch request is answered with an empty response, which
    /// ends the handshake cleanly.
    pub anonymous: bool,
}

/// Whether the login uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsWant {
    No,
    /// When the server offers it.
    IfOffered,
    /// The server must offer it.
    Must,
}

/// What the login is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// HandshakeV10.
    AwaitingGreeting,
    /// The TLS handshake that follows the SSLRequest.
    AwaitingTls,
    /// OK, ERR or AuthSwitchRequest with sequence id `seq`.
    AwaitingAuth { seq: u8, switched: bool },
    /// Logged in, refused or failed: nothing more is read.
    Done,
}

/// Why a login failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The server refused before greeting, broke the protocol or sent
    /// something too large: it counts against the server's health.
    Server(String),
    /// The server lacks capabilities the client negotiated: not its fault.
    Incompatible(String),
    /// The account asks for this auth plugin, which myroute cannot answer.
    Plugin(Vec<u8>),
}

/// The result of one packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// Handled; keep feeding (a packet for the server may be in `out`).
    Continue,
    /// The SSLRequest is in `out`: once it is sent, the caller runs the TLS
    /// handshake, then calls [`Dial::tls_started`].
    StartTls,
    /// The server accepted the login: its OK payload.
    LoggedIn(Vec<u8>),
    /// The server refused the login after greeting: its ERR payload.
    Refused(Vec<u8>),
    /// The login cannot go on.
    Failed(Failure),
}

/// One login to a server in progress.
pub struct Dial {
    state: State,
    id: Identity,
    greeting: Option<Greeting>,
    tls: TlsWant,
    /// What the login negotiated, for a later COM_CHANGE_USER.
    leg: Option<Leg>,
}

/// A logged-in backend session, as a COM_CHANGE_USER on it needs it: the
/// server's current scramble and the capabilities the login sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leg {
    pub scramble: Vec<u8>,
    pub capabilities: u32,
}

impl Dial {
    /// A login that starts once the server greets.
    pub fn new(mut id: Identity, tls: TlsWant) -> Dial {
        // TLS belongs to each leg: whether the client's leg has it says
        // nothing about this one.
        id.hello.capabilities &= !caps::SSL;
        Dial { state: State::AwaitingGreeting, id, greeting: None, tls, leg: None }
    }

    /// The state's stable name, as logs and SHOW CLIENTS spell it.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            State::AwaitingGreeting => "AWAITING-BACKEND-HANDSHAKE",
            State::AwaitingTls => "AWAITING-BACKEND-TLS",
            _ => "AWAITING-BACKEND-AUTH",
        }
    }

    /// What the server's greeting said, once it has greeted.
    pub fn greeting(&self) -> Option<&Greeting> {
        self.greeting.as_ref()
    }

    /// A COM_CHANGE_USER to `id` on a logged-in session `leg` (written to
    /// `out`, sequence 0): the exchange goes on as a login's does, from the
    /// server's first answer (sequence 1).
    pub fn change_user(id: Identity, leg: Leg, out: &mut Vec<u8>) -> Dial {
        let mut dial = Dial {
            state: State::AwaitingAuth { seq: 1, switched: false },
            id,
            greeting: None,
            tls: TlsWant::No,
            leg: None,
        };
        let token = dial.token(&leg.scramble);
        put_packet(
            out,
            0,
            &handshake::encode_change_user(&dial.id.hello, leg.capabilities, &token),
        );
        dial.leg = Some(leg);
        dial
    }

    /// What the login negotiated, once it is logged in.
    pub fn leg(&self) -> Option<&Leg> {
        self.leg.as_ref()
    }

    /// Who logs in.
    pub fn identity(&self) -> &Identity {
        &self.id
    }

    /// Takes the identity back (the login is over or abandoned).
    pub fn into_identity(self) -> Identity {
        self.id
    }

    /// Handles one whole packet from the server.
    pub fn on_packet(&mut self, seq: u8, payload: &[u8], out: &mut Vec<u8>) -> Progress {
        let progress = match self.state {
            State::AwaitingGreeting => self.on_greeting(seq, payload, out),
            State::AwaitingAuth { seq: want, .. } if seq != want => {
                fail("login reply out of sequence")
            }
            State::AwaitingAuth { seq, switched } => {
                self.on_auth_reply(seq, switched, payload, out)
            }
            State::AwaitingTls | State::Done => fail("data out of turn"),
        };
        if !matches!(progress, Progress::Continue | Progress::StartTls) {
            self.state = State::Done;
        }
        progress
    }

    fn on_greeting(&mut self, seq: u8, payload: &[u8], out: &mut Vec<u8>) -> Progress {
        if payload.first() == Some(&0xFF) {
            // Refused before greeting: too many connections, host blocked...
            let (code, msg) = parse_err(payload).unwrap_or((0, String::new()));
            return fail(&format!("ERR {code} {msg}"));
        }
        let g = match handshake::parse_greeting(payload) {
            Ok(g) if seq == 0 => g,
            Ok(_) => return fail("greeting out of sequence"),
            Err(e) => return fail(&format!("greeting: {e}")),
        };
        // After login the two legs talk directly: every stream-shaping flag
        // the client chose must be one the server supports too, or result
        // sets would be framed differently on each leg.
        let stream = self.id.hello.capabilities & !caps::LOGIN_ONLY;
        let required = caps::PROTOCOL_41 | caps::SECURE_CONNECTION;
        let missing = (stream | required) & !g.capabilities;
        let missing_ext = self.id.hello.ext & !g.ext;
        let server_caps = g.capabilities;
        self.greeting = Some(g);
        if missing != 0 {
            return Progress::Failed(Failure::Incompatible(format!(
                "lacks capabilities {missing:#x} the client negotiated"
            )));
        }
        if missing_ext != 0 {
            return Progress::Failed(Failure::Incompatible(format!(
                "lacks MariaDB extended capabilities {missing_ext:#x} the client negotiated"
            )));
        }
        let offered = server_caps & caps::SSL != 0;
        match (self.tls, offered) {
            (TlsWant::No, _) | (TlsWant::IfOffered, false) => {
                self.respond(seq.wrapping_add(1), out);
                Progress::Continue
            }
            (_, true) => {
                let h = &self.id.hello;
                let request =
                    handshake::build_ssl_request(h.capabilities, h.ext, h.max_packet, h.charset);
                put_packet(out, seq.wrapping_add(1), &request);
                self.id.hello.capabilities |= caps::SSL;
                self.state = State::AwaitingTls;
                Progress::StartTls
            }
            (TlsWant::Must, false) => fail("does not offer TLS"),
        }
    }

    /// The TLS handshake after the SSLRequest is done: the response follows
    /// inside it.
    pub fn tls_started(&mut self, out: &mut Vec<u8>) {
        if self.state == State::AwaitingTls {
            self.respond(2, out);
        }
    }

    /// HandshakeResponse41 with sequence id `seq`, with a native token for
    /// the greeting's salt.
    fn respond(&mut self, seq: u8, out: &mut Vec<u8>) {
        let Some(g) = &self.greeting else {
            return;
        };
        let (salt, server_caps) = (g.salt.clone(), g.capabilities);
        let token = self.token(&salt);
        let response = handshake::build_response(&self.id.hello, server_caps, &token);
        put_packet(out, seq, &response);
        let capabilities = handshake::response_flags(&self.id.hello, server_caps);
        self.leg = Some(Leg { scramble: salt, capabilities });
        self.state = State::AwaitingAuth { seq: seq.wrapping_add(1), switched: false };
    }

    fn on_auth_reply(
        &mut self,
        seq: u8,
        switched: bool,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Progress {
        match payload.first() {
            Some(0x00) => Progress::LoggedIn(payload.to_vec()),
            Some(0xFF) => Progress::Refused(payload.to_vec()),
            // AuthSwitchRequest: answered once.
            Some(0xFE) if !switched => {
                let Ok((plugin, salt)) = handshake::parse_auth_switch(payload) else {
                    return fail("bad auth switch");
                };
                let token = if self.id.anonymous {
                    // No password for any plugin: the refusal that follows
                    // ends the handshake cleanly.
                    Vec::new()
                } else if plugin == NATIVE && salt.len() == SALT_LEN {
                    if let Some(leg) = &mut self.leg {
                        leg.scramble = salt.clone();
                    }
                    self.token(&salt)
                } else {
                    return Progress::Failed(Failure::Plugin(plugin));
                };
                put_packet(out, seq.wrapping_add(1), &token);
                self.state = State::AwaitingAuth { seq: seq.wrapping_add(2), switched: true };
                Progress::Continue
            }
            Some(0xFE) => fail("second auth switch"),
            // AuthMoreData and anything else: a plugin exchange myroute
            // cannot take part in.
            _ => Progress::Failed(Failure::Plugin(b"(more auth data)".to_vec())),
        }
    }

    /// The native token for `salt`, or nothing for an account without
    /// password.
    fn token(&self, salt: &[u8]) -> Vec<u8> {
        let token = match &self.id.stage1 {
            Some(stage1) => scramble::token_for(salt, stage1).to_vec(),
            None => Vec::new(),
        };
        scramble::wipe_stack();
        token
    }
}

fn fail(why: &str) -> Progress {
    Progress::Failed(Failure::Server(why.to_string()))
}
