//! The server side of a login: myroute greets a client and accepts or
//! refuses its login. The pair and the admin console both run this one
//! exchange.
//!
//! ```text
//!  new ──HandshakeV10──▶ AWAITING-CLIENT-RESPONSE ──plugin not native──▶ AWAITING-AUTH-SWITCH
//!                              │ token checked                                 │ token checked
//!                              ├───────────────────────────────────────────────┘
//!                     wrong ──▶ Refused (ERR 1045)        right ──▶ Verified
//! ```
//!
//! Heads up (MySQL "Connection Phase Packets"; MariaDB "Connection"):
//! - the greeting is sequence 0, HandshakeResponse41 sequence 1, the
//!   server's reply sequence 2; an AuthSwitchRequest (2) is answered by an
//!   AuthSwitchResponse (3) and the login ends with sequence 4;
//! - a client that starts with another plugin (MySQL 8 clients start with
//!   caching_sha2_password) is switched to mysql_native_password with a
//!   fresh salt, so a token is never checked twice against one salt;
//! - an unknown user is checked against a decoy hash and refused with the
//!   same ERR as a wrong password, so neither time nor text tells them apart;
//! - with TLS offered (CLIENT_SSL), a client may send a 32-byte SSLRequest
//!   (sequence 1) instead: the TLS handshake follows on the raw socket, then
//!   the HandshakeResponse41 inside it (sequence 2), and every later
//!   sequence id is one higher ("Protocol::SSLRequest"). On a TLS connection
//!   the switch request reuses the greeting's salt, which MariaDB's
//!   zero-configuration TLS proof is computed over (MariaDB's own server
//!   does the same).
//!
//! Sans-IO: the caller takes whole packets off its buffer
//! ([`crate::protocol::wire::take_packet`]), hands each to
//! [`Accept::on_packet`], and sends what it wrote to `out`.

use crate::protocol::constants::caps;
use crate::protocol::errors::Refusal;
use crate::protocol::handshake::{self, ClientHello, Response, NATIVE};
use crate::protocol::scramble::{self, Secret, LEN as SALT_LEN};
use crate::protocol::wire::{put_packet, Error as WireError};

/// Where the accounts a login is checked against come from.
pub trait Accounts {
    /// The stored `SHA1(SHA1(password))` of `user`: `None` for an unknown
    /// user, `Some(None)` for an account without password.
    fn stage2(&self, user: &[u8]) -> Option<Option<&Secret>>;
}

/// What the greeting announces.
pub struct Greeting<'a> {
    pub version: &'a str,
    pub connection_id: u32,
    /// With CLIENT_SSL when TLS is offered; CLIENT_MYSQL clear when `ext`
    /// is offered.
    pub capabilities: u32,
    /// MariaDB extended capabilities offered.
    pub ext: u32,
    pub charset: u8,
    /// A login without TLS is refused (ERR 3159).
    pub tls_required: bool,
}

/// What the login is waiting for.
enum State {
    /// HandshakeResponse41 (or an SSLRequest) with sequence id `seq`.
    AwaitingResponse,
    /// The TLS handshake that follows an SSLRequest.
    AwaitingTls,
    /// AuthSwitchResponse to our request with `salt`.
    AwaitingSwitch { salt: [u8; SALT_LEN], hello: Box<Response> },
    /// Verified or refused: nothing more is read.
    Done,
}

/// A client that proved its password.
pub struct Verified {
    /// The client's HandshakeResponse41, its auth data wiped, capabilities
    /// narrowed to those offered.
    pub hello: Response,
    /// `SHA1(password)`, or `None` for an account without password.
    pub stage1: Option<Box<Secret>>,
    /// Sequence id of the packet that ends the login (OK or ERR).
    pub seq: u8,
    /// The salt the client's token answered: the greeting's, or the
    /// switch request's (the scramble a later COM_CHANGE_USER is made on).
    pub salt: [u8; SALT_LEN],
    /// The greeting's salt (what MariaDB's TLS proof is computed over).
    pub greeting_salt: [u8; SALT_LEN],
}

/// Why a login was refused (the ERR is already written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// Unknown user or wrong password.
    AccessDenied,
    /// The client broke the protocol; the text says how.
    Protocol(&'static str),
    /// `tls = required` and the client came without TLS.
    Insecure,
}

/// The result of one packet.
pub enum Step {
    /// Handled; keep feeding (an AuthSwitchRequest may be in `out`).
    Continue,
    /// An SSLRequest: the caller runs the TLS handshake on the raw socket
    /// (bytes already read behind the request are its first records), then
    /// calls [`Accept::tls_started`].
    StartTls,
    /// The client proved its password; nothing was written.
    Verified(Box<Verified>),
    /// The ERR is in `out`; the connection ends after it.
    Refused(Denial),
}

/// One client login in progress.
pub struct Accept {
    state: State,
    /// Capabilities offered: the client's choice is narrowed to these.
    offered: u32,
    /// MariaDB extended capabilities offered, likewise.
    offered_ext: u32,
    /// The greeting's salt.
    salt: [u8; SALT_LEN],
    /// Sequence id the next client packet must carry.
    seq: u8,
    /// The user name the client sent, once it has.
    user: Option<Vec<u8>>,
    /// The client's address as ERR 1045 names it.
    host: String,
    /// A login without TLS is refused.
    tls_required: bool,
    /// The login runs inside TLS.
    tls: bool,
}

impl Accept {
    /// A login for a client just accepted: writes the HandshakeV10 greeting
    /// (sequence 0) with `salt` to `out`. `host` is the client's address as
    /// an ERR 1045 names it.
    pub fn new(g: &Greeting, salt: [u8; SALT_LEN], host: String, out: &mut Vec<u8>) -> Accept {
        let greeting = handshake::build_greeting(
            g.version,
            g.connection_id,
            &salt,
            g.capabilities,
            g.ext,
            g.charset,
        );
        put_packet(out, 0, &greeting);
        Accept {
            state: State::AwaitingResponse,
            offered: g.capabilities,
            offered_ext: g.ext,
            salt,
            seq: 1,
            user: None,
            host,
            tls_required: g.tls_required,
            tls: false,
        }
    }

    /// The state's stable name, as logs and SHOW CLIENTS spell it.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            State::AwaitingSwitch { .. } => "AWAITING-AUTH-SWITCH",
            State::AwaitingTls => "AWAITING-TLS-HANDSHAKE",
            _ => "AWAITING-CLIENT-RESPONSE",
        }
    }

    /// The TLS handshake an SSLRequest asked for is done: the
    /// HandshakeResponse41 comes next, inside TLS.
    pub fn tls_started(&mut self) {
        if let State::AwaitingTls = self.state {
            self.state = State::AwaitingResponse;
            self.tls = true;
        }
    }

    /// The user name the client sent, once it has (peer bytes: print with
    /// `access::printable`).
    pub fn user(&self) -> Option<&[u8]> {
        self.user.as_deref()
    }

    /// Names the client by another address (a trusted PROXY header said
    /// where it really comes from).
    pub fn set_host(&mut self, host: String) {
        self.host = host;
    }

    /// The salt of the greeting.
    pub fn greeting_salt(&self) -> &[u8; SALT_LEN] {
        &self.salt
    }

    /// Sequence id of the reply to the packet expected next (for an ERR
    /// the caller sends on its own, e.g. a timeout or a shutdown).
    pub fn reply_seq(&self) -> u8 {
        self.seq.wrapping_add(1)
    }

    /// Handles one whole client packet; the payload is zeroed afterwards
    /// (it may hold a token). `fresh_salt` gives the salt of a switch
    /// request; `decoy` is checked for unknown users.
    pub fn on_packet(
        &mut self,
        seq: u8,
        payload: &mut [u8],
        accounts: &dyn Accounts,
        decoy: &Secret,
        fresh_salt: &mut dyn FnMut() -> [u8; SALT_LEN],
        out: &mut Vec<u8>,
    ) -> Step {
        let step = if seq != self.seq {
            self.refuse(
                Refusal::PacketsOutOfOrder,
                seq.wrapping_add(1),
                Denial::Protocol("sequence id"),
                out,
            )
        } else {
            match std::mem::replace(&mut self.state, State::Done) {
                State::AwaitingResponse => {
                    self.on_response(payload, accounts, decoy, fresh_salt, out)
                }
                State::AwaitingSwitch { salt, mut hello } => {
                    hello.auth = payload.to_vec(); // wiped by verify
                    self.verify(*hello, salt, accounts, decoy, out)
                }
                // Plaintext bytes while the TLS handshake should run: the
                // caller feeds none; nothing sensible can follow.
                State::AwaitingTls => self.refuse(
                    Refusal::BadHandshake("data before TLS".into()),
                    self.reply_seq(),
                    Denial::Protocol("bad handshake"),
                    out,
                ),
                State::Done => Step::Continue,
            }
        };
        payload.fill(0);
        step
    }

    /// A packet that could not even be framed (too large, truncated).
    pub fn bad_packet(&mut self, e: WireError, out: &mut Vec<u8>) -> Step {
        let seq = self.reply_seq();
        self.refuse(
            Refusal::BadHandshake(e.to_string()),
            seq,
            Denial::Protocol("bad handshake"),
            out,
        )
    }

    /// HandshakeResponse41 (or SSLRequest / pre-4.1 response).
    fn on_response(
        &mut self,
        payload: &[u8],
        accounts: &dyn Accounts,
        decoy: &Secret,
        fresh_salt: &mut dyn FnMut() -> [u8; SALT_LEN],
        out: &mut Vec<u8>,
    ) -> Step {
        let reply = self.reply_seq();
        let mut hello = match handshake::parse_client_hello(payload) {
            Ok(ClientHello::Response(r)) => r,
            Ok(ClientHello::SslRequest) if self.offered & caps::SSL != 0 && !self.tls => {
                self.state = State::AwaitingTls;
                self.seq = reply;
                return Step::StartTls;
            }
            Ok(ClientHello::SslRequest) => {
                return self.refuse(
                    Refusal::SslUnsupported,
                    reply,
                    Denial::Protocol("SSLRequest"),
                    out,
                )
            }
            Ok(ClientHello::Pre41) => {
                return self.refuse(
                    Refusal::Pre41Client,
                    reply,
                    Denial::Protocol("pre-4.1 client"),
                    out,
                )
            }
            Err(e) => return self.bad_packet(e, out),
        };
        // CLIENT_MYSQL stays as the client sent it: it says whether the
        // client speaks of extended capabilities at all.
        hello.capabilities &= self.offered | caps::LONG_PASSWORD;
        hello.ext &= self.offered_ext;
        if self.tls_required && !self.tls {
            self.user = Some(hello.user.clone());
            return self.refuse(Refusal::InsecureTransport, reply, Denial::Insecure, out);
        }
        self.check(hello, accounts, decoy, fresh_salt, out)
    }

    /// A COM_CHANGE_USER (its payload, sequence 0) on a logged-in
    /// connection whose login was `session`. Its own token is ignored, as
    /// MariaDB's server does: clients disagree on the salt they make it on
    /// (the greeting's or the last switch's). The client always gets an
    /// AuthSwitchRequest carrying `scramble`, the salt its last token
    /// answered: libmariadb answers a change of user's switch with that
    /// salt whatever the request carries, other clients with the request's.
    pub fn change_user(
        session: &Response,
        scramble: [u8; SALT_LEN],
        host: String,
        payload: &mut [u8],
        out: &mut Vec<u8>,
    ) -> (Accept, Step) {
        let mut a = Accept {
            state: State::AwaitingResponse,
            offered: session.capabilities,
            offered_ext: session.ext,
            salt: scramble,
            seq: 0,
            user: None,
            host,
            tls_required: false,
            tls: true, // no SSLRequest can come now
        };
        let parsed = handshake::parse_change_user(payload, session);
        payload.fill(0);
        let step = match parsed {
            Ok(hello) => {
                a.user = Some(hello.user.clone());
                a.switch(hello, scramble, out)
            }
            Err(e) => a.bad_packet(e, out),
        };
        (a, step)
    }

    /// A response (of a login or a change of user): switched to a native
    /// token if it was made for another plugin, else verified.
    fn check(
        &mut self,
        hello: Response,
        accounts: &dyn Accounts,
        decoy: &Secret,
        fresh_salt: &mut dyn FnMut() -> [u8; SALT_LEN],
        out: &mut Vec<u8>,
    ) -> Step {
        self.user = Some(hello.user.clone());
        if !hello.plugin.is_empty() && hello.plugin != NATIVE {
            // The token was made for another plugin: ask for a native one,
            // with a new salt (the same one inside TLS).
            let salt = if self.tls { self.salt } else { fresh_salt() };
            return self.switch(hello, salt, out);
        }
        let salt = self.salt;
        self.verify(hello, salt, accounts, decoy, out)
    }

    /// AuthSwitchRequest to mysql_native_password with `salt`; the token in
    /// `hello` is dropped.
    fn switch(&mut self, mut hello: Response, salt: [u8; SALT_LEN], out: &mut Vec<u8>) -> Step {
        hello.auth.fill(0);
        hello.auth.clear();
        let reply = self.reply_seq();
        put_packet(out, reply, &handshake::build_auth_switch(&salt));
        self.seq = reply.wrapping_add(1);
        self.state = State::AwaitingSwitch { salt, hello: Box::new(hello) };
        Step::Continue
    }

    /// Checks the token in `hello.auth` against `salt`.
    fn verify(
        &mut self,
        mut hello: Response,
        salt: [u8; SALT_LEN],
        accounts: &dyn Accounts,
        decoy: &Secret,
        out: &mut Vec<u8>,
    ) -> Step {
        let seq = self.seq.wrapping_add(1);
        let stage1 = recover_stage1(accounts.stage2(&hello.user), decoy, &salt, &hello.auth);
        // stage1 now lives only on the heap; wipe the copies the checking
        // left in stack frames below this one.
        scramble::wipe_stack();
        let using_password = !hello.auth.is_empty();
        hello.auth.fill(0);
        hello.auth.clear();
        match stage1 {
            Some(stage1) => Step::Verified(Box::new(Verified {
                hello,
                stage1,
                seq,
                salt,
                greeting_salt: self.salt,
            })),
            None => {
                let refusal = Refusal::AccessDenied {
                    user: String::from_utf8_lossy(&hello.user).into_owned(),
                    host: self.host.clone(),
                    using_password,
                };
                self.refuse(refusal, seq, Denial::AccessDenied, out)
            }
        }
    }

    fn refuse(&mut self, r: Refusal, seq: u8, why: Denial, out: &mut Vec<u8>) -> Step {
        out.extend(r.packet(seq));
        self.state = State::Done;
        Step::Refused(why)
    }
}

/// Checks a token against `stage2` (an unknown user against the decoy, so
/// it costs the same and fails the same way as a wrong password) and
/// returns `Some(stage1)` if it is right (`Some(None)` for an account
/// without password, which accepts only an empty token, as MySQL does).
/// Kept out of line so every stack copy of stage1 lies below the caller,
/// which wipes it.
#[inline(never)]
fn recover_stage1(
    stored: Option<Option<&Secret>>,
    decoy: &Secret,
    salt: &[u8; SALT_LEN],
    token: &[u8],
) -> Option<Option<Box<Secret>>> {
    let known = stored.is_some();
    let stage1 = match stored {
        Some(None) => return token.is_empty().then_some(None),
        Some(Some(s2)) => scramble::check_token(salt, s2, token),
        None => scramble::check_token(salt, decoy, token),
    };
    stage1.filter(|_| known).map(|s| Some(Box::new(s)))
}
