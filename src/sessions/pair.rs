//! A connection pair (client + backend) and its state machine.
//!
//! ```text
//!  accept ──greeting──▶ AWAITING-CLIENT-RESPONSE ──plugin not native──▶ AWAITING-AUTH-SWITCH
//!                              │ token checked (protocol::accept)             │ token checked
//!                              ├──────────────────────────────────────────────┘
//!                     wrong ──▶ CLOSING (ERR 1045)
//!                     right ──▶ CONNECTING ──connected──▶ AWAITING-BACKEND-HANDSHAKE
//!                                 ▲                               │ HandshakeResponse41 sent (protocol::dial)
//!                                 │ next server                   ▼
//!                                 └──── failed/timed out ── AWAITING-BACKEND-AUTH ⟲ AuthSwitchRequest
//!                                        (none left: ERR 1429)    │ OK          │ ERR
//!                                                                 ▼             ▼
//!                                                             RELAYING ──EOF──▶ CLOSING (flush, close)
//! ```
//!
//! The pair owns the state, the two rings and myroute's own outgoing login
//! bytes, and never touches a socket: the event loop moves bytes between
//! sockets and rings, tells the pair what happened through [`Pair::handle`],
//! and then opens or drops the backend socket the pair asks for
//! ([`Pair::backend`]). `now` is always passed in, so tests step the machine,
//! timeouts included, without sockets or sleeping. The two logins are the
//! protocol's own exchanges ([`Accept`] toward the client, [`Dial`] toward
//! the server); the pair decides what follows from their outcomes.
//!
//! Ring use: `up` holds client bytes (parsed during login, relayed to the
//! backend after); `down` holds bytes for the client (myroute's own packets
//! during login, the backend's after). During login the backend's replies
//! are read into `down` too and consumed there before any reach the client.

use crate::config::{ClientTls, Config, ProxyProtocol, UserConf};
use crate::operations::access::{printable, EndReason, RateLimit};
use crate::operations::stats::Stats;
use crate::protocol::accept::{self, Accept, Accounts, Denial, Step, Verified};
use crate::protocol::constants::{caps, com, ext};
use crate::protocol::dial::{Dial, Failure, Identity, Leg, Progress};
use crate::protocol::errors::{parse_err, Refusal};
use crate::protocol::handshake::{self, Response};
use crate::protocol::proxy_proto;
use crate::protocol::ring::{BufPool, Ring};
use crate::protocol::scramble::{self, Secret};
use crate::protocol::wire::{put_packet, take_packet, Framer, HEADER_LEN};
use crate::servers::pool::{BackendInfo, Pools};
use crate::sessions::kill::{self, Kill};
use crate::sessions::track::Tracker;
use log::{debug, info, warn};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Everything the pair needs from the rest of the proxy while it handles an
/// event.
pub struct Ctx<'a> {
    pub now: Instant,
    pub cfg: &'a Config,
    pub pools: &'a mut Pools,
    pub bufs: &'a mut BufPool,
    /// A fresh 20-byte salt each call (from getrandom in the proxy).
    pub salt: &'a mut dyn FnMut() -> [u8; scramble::LEN],
    /// Hash checked for unknown users, so they take the same path as a
    /// wrong password.
    pub decoy: &'a Secret,
    /// Bounds the failed-login warnings.
    pub login_warnings: &'a mut RateLimit,
    pub stats: &'a mut Stats,
}

/// What the pair is waiting for, with the data that phase needs.
enum State {
    /// Greeting sent; the client's login exchange is under way.
    AwaitingClientLogin(Box<Accept>),
    /// Client verified; backend connect in progress.
    Connecting { login: Box<Login>, id: Box<Identity>, deadline: Instant },
    /// Backend connected; the backend login exchange is under way.
    AwaitingBackendLogin { login: Box<Login>, dial: Box<Dial>, deadline: Instant },
    /// Logged in on both legs; bytes flow untouched.
    Relaying,
    /// Flushing what is buffered toward `flush`, then closing both sides.
    Closing { reason: EndReason, flush: Side },
}

/// One leg of a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Backend,
}

/// A verified client on its way to a backend: where it may go and how the
/// attempts went.
struct Login {
    pool: usize,
    /// Servers already tried for this login.
    tried: Vec<usize>,
    server: usize,
    /// Sequence id of the packet the client gets when the login ends.
    client_seq: u8,
    /// What went wrong with each server tried, for the final ERR and log.
    failures: Vec<String>,
    /// When the client's token was checked (for the backend-login latency).
    verified_at: Instant,
    /// For a COM_CHANGE_USER (not the connection's first login), the user
    /// it changes from.
    change_of_user: Option<Vec<u8>>,
}

/// Something that happened to the pair, as the event loop saw it.
#[derive(Debug)]
pub enum Event {
    /// New bytes from the client are in `up`.
    ClientData,
    /// The client closed its side (or its socket failed).
    ClientClosed(Option<std::io::ErrorKind>),
    /// The backend socket finished connecting.
    BackendConnected,
    /// New bytes from the backend are in `down`.
    BackendData,
    /// The backend socket failed or closed; the loop has dropped it.
    BackendFailed(String),
    /// No backend socket could be opened for a reason of this host's own
    /// (out of descriptors or ports): not the server's fault.
    NoBackendSocket(String),
    /// `deadline()` has passed.
    Timeout,
    /// End the pair (KILL, shutdown): a relaying pair that is idle tells
    /// its backend COM_QUIT; any other is cut at once.
    Stop(EndReason),
    /// What becomes of the KILL the pair handed over ([`Pair::wants_kill`]).
    Kill(KillVerdict),
    /// The TLS handshake the pair asked for ([`Pair::take_tls_request`]) on
    /// this side is done.
    TlsReady(Side, TlsInfo),
    /// TLS on this side failed (handshake, alert, bad record).
    TlsFailed(Side, &'static str),
}

/// What a TLS handshake settled, as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: &'static str,
    pub cipher: String,
    /// SHA-256 of the certificate myroute presented (the client leg), for
    /// MariaDB's zero-configuration proof.
    pub cert_sha256: Option<[u8; 32]>,
}

/// What the loop decided about a client's KILL naming a myroute id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KillVerdict {
    /// The target's backend session is on this pair's server: kill it
    /// through this pair's own backend session, by its backend id.
    Through(u32),
    /// A side connection carries it; its answer comes as `Answer` later.
    Side,
    /// The client's answer (an OK or ERR payload), sent once every reply
    /// before it has been relayed.
    Answer(Vec<u8>),
}

/// A client command myroute may have to handle itself, held back from the
/// backend while it is looked at. Only while relaying.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Hold {
    /// Nothing held: client bytes flow as they are scanned.
    None,
    /// The command packet at stream position `at` (payload `len` bytes)
    /// may be a KILL: nothing from `at` on is relayed until it is read whole.
    Waiting { at: u64, len: usize },
    /// The packet was a KILL naming a myroute id (with the statements that
    /// followed it in the same query, if any); the loop decides.
    Kill(Kill, Vec<u8>),
    /// A side connection carries the KILL.
    Side,
    /// The packet to answer the KILL with, once the backend is quiet.
    Answer(Vec<u8>),
    /// A COM_CHANGE_USER (its payload, which holds a token), taken once the
    /// backend has answered everything before it.
    ChangeUser(Vec<u8>),
}

impl State {
    /// The state's stable name, as logs and docs spell it.
    fn name(&self) -> &'static str {
        match self {
            State::AwaitingClientLogin(a) => a.state_name(),
            State::Connecting { .. } => "CONNECTING",
            State::AwaitingBackendLogin { dial, .. } => dial.state_name(),
            State::Relaying => "RELAYING",
            State::Closing { .. } => "CLOSING",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The configured users, as the client login checks them.
impl Accounts for Config {
    fn stage2(&self, user: &[u8]) -> Option<Option<&Secret>> {
        self.user(user).map(|u: &UserConf| u.stage2.as_ref())
    }
}

/// A client connection and, once chosen, its backend connection.
pub struct Pair {
    pub id: u32,
    /// The client's address: the TCP peer, or what a trusted PROXY header
    /// said.
    pub peer: SocketAddr,
    /// The address the client connected to (for an outgoing PROXY header).
    local: SocketAddr,
    /// The peer may open with a PROXY protocol header (proxy_protocol_from).
    trusted: bool,
    /// No client byte has been examined yet: a PROXY header may come.
    header_possible: bool,
    pub started: Instant,
    state: State,
    /// Client → backend bytes.
    pub up: Ring,
    /// Backend → client bytes (and myroute's own packets to the client).
    pub down: Ring,
    /// myroute's own packets to the backend during login, sent before `up`.
    pub to_backend: Vec<u8>,
    up_framer: Framer,
    /// Where the framer stands in the client's stream (a position counted
    /// from its first byte, as `up.consumed()` counts).
    scanned: u64,
    /// A client command held back from the backend, if any.
    hold: Hold,
    /// Follows the backend's replies to know when the session is idle.
    tracker: Tracker,
    handshake_deadline: Instant,
    /// Backend connection attempt number and server the pair wants now.
    attempt: u32,
    backend: Option<usize>,
    pub user: Option<Vec<u8>>,
    pub pool: Option<usize>,
    /// Server of the last backend login (kept for the access log).
    pub server: Option<usize>,
    /// The backend session's own connection id, once logged in.
    pub backend_id: Option<u32>,
    /// A TLS handshake the runtime should start on this side.
    tls_request: Option<Side>,
    /// What each leg's TLS settled, if it uses TLS.
    pub client_tls: Option<TlsInfo>,
    pub backend_tls: Option<TlsInfo>,
    /// The salt of the client's greeting (MariaDB's TLS proof hashes it).
    greeting_salt: [u8; scramble::LEN],
    /// The salt the client's last token answered: what a COM_CHANGE_USER's
    /// token is made on.
    scramble: [u8; scramble::LEN],
    /// The client's login (its auth data wiped): what a COM_CHANGE_USER is
    /// read against.
    session: Option<Box<Response>>,
    /// The pool the client's user belongs to (before any fallback).
    home_pool: Option<usize>,
    /// What the backend login negotiated, for a COM_CHANGE_USER on it.
    leg: Option<Leg>,
    /// The backend session being left gets a COM_QUIT before its socket is
    /// dropped (a change of user to another server).
    quit_backend: bool,
    /// Who the pair logged in as (its `SHA1(password)` included), kept for
    /// the session's life with `kill_across_servers`, so a KILL can be
    /// carried to another server as this user; zeroed when the pair ends.
    identity: Option<Box<Identity>>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The client sent COM_QUIT: the backend's close that follows is the
    /// client's doing.
    quit_sent: bool,
    /// When bytes last moved, and how long a relaying pair may stay idle.
    last_active: Instant,
    idle_timeout: Option<Duration>,
}

/// Greeting fields myroute uses when no backend has answered yet.
pub const FALLBACK_VERSION: &str = "8.0.0-myroute";
const FALLBACK_CHARSET: u8 = 45; // utf8mb4_general_ci

impl Pair {
    /// A new pair for a just-accepted client; queues the greeting. `local`
    /// is the address it connected to; `trusted` says it may send a PROXY
    /// protocol header.
    pub fn new(id: u32, peer: SocketAddr, local: SocketAddr, trusted: bool, ctx: &mut Ctx) -> Pair {
        let info = ctx.pools.advertised();
        let version = ctx
            .cfg
            .server_version
            .clone()
            .or_else(|| info.as_ref().map(|i| i.version.clone()))
            .unwrap_or_else(|| FALLBACK_VERSION.to_string());
        let tls = ctx.cfg.tls.mode;
        let greeting = accept::Greeting {
            version: &version,
            connection_id: id,
            capabilities: advertised_caps(info.as_ref())
                | if tls.offered() { caps::SSL } else { 0 },
            ext: advertised_ext(info.as_ref()),
            charset: info.as_ref().map_or(FALLBACK_CHARSET, |i| i.charset),
            tls_required: tls == ClientTls::Required,
        };
        let mut out = Vec::new();
        let login = Accept::new(&greeting, (ctx.salt)(), peer.ip().to_string(), &mut out);
        let mut pair = Pair {
            id,
            peer,
            local,
            trusted,
            header_possible: true,
            started: ctx.now,
            state: State::AwaitingClientLogin(Box::new(login)),
            up: Ring::default(),
            down: Ring::default(),
            to_backend: Vec::new(),
            up_framer: Framer::new(1),
            scanned: 0,
            hold: Hold::None,
            tracker: Tracker::new(0, 0),
            handshake_deadline: ctx.now + ctx.cfg.handshake_timeout,
            attempt: 0,
            backend: None,
            user: None,
            pool: None,
            server: None,
            backend_id: None,
            identity: None,
            tls_request: None,
            client_tls: None,
            backend_tls: None,
            greeting_salt: [0; scramble::LEN],
            scramble: [0; scramble::LEN],
            session: None,
            home_pool: None,
            leg: None,
            quit_backend: false,
            bytes_in: 0,
            bytes_out: 0,
            quit_sent: false,
            last_active: ctx.now,
            idle_timeout: ctx.cfg.idle_timeout,
        };
        pair.send_client(ctx.bufs, &out);
        pair
    }

    /// The backend connection the pair wants open now: `(attempt, server)`.
    /// The loop opens it when the attempt number is new and drops its
    /// socket when this becomes `None` or changes.
    pub fn backend(&self) -> Option<(u32, usize)> {
        self.backend.map(|s| (self.attempt, s))
    }

    /// When the pair must be woken even if no byte moves.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.state {
            State::AwaitingClientLogin(_) => Some(self.handshake_deadline),
            State::Connecting { deadline, .. } | State::AwaitingBackendLogin { deadline, .. } => {
                Some(self.handshake_deadline.min(*deadline))
            }
            // A closing pair whose peer stops reading is bounded by the same
            // idle limit as a relaying one.
            State::Relaying | State::Closing { .. } => {
                self.idle_timeout.map(|d| self.last_active + d)
            }
        }
    }

    /// May the loop read from this side now? (Before relaying, backend bytes
    /// are read only while the pair waits for them; client bytes may be read
    /// ahead, a pipelining client's commands wait in `up`.)
    pub fn may_read(&self, side: Side) -> bool {
        !matches!(
            (&self.state, side),
            (State::Closing { .. }, _) | (State::Connecting { .. }, Side::Backend)
        )
    }

    /// May the loop write `up` to the backend? Only once logged in (or when
    /// flushing toward the backend at the end).
    pub fn may_relay_up(&self) -> bool {
        matches!(self.state, State::Relaying | State::Closing { flush: Side::Backend, .. })
    }

    /// True when the pair is relaying.
    pub fn is_relaying(&self) -> bool {
        matches!(self.state, State::Relaying)
    }

    /// The end reason once the pair has nothing more to flush.
    pub fn finished(&self) -> Option<&EndReason> {
        match &self.state {
            State::Closing { reason, flush } => {
                let pending = match flush {
                    Side::Client => !self.down.is_empty(),
                    Side::Backend => !self.up.is_empty() || !self.to_backend.is_empty(),
                };
                (!pending).then_some(reason)
            }
            _ => None,
        }
    }

    /// Name of the current state, for logs and tests.
    pub fn state_name(&self) -> &'static str {
        self.state.name()
    }

    /// Still waiting for the client to log in.
    pub fn awaits_client_login(&self) -> bool {
        matches!(self.state, State::AwaitingClientLogin(_))
    }

    /// Relaying with nothing in flight: every command answered, nothing
    /// buffered either way, and no transaction open. Such a pair can be
    /// ended without cutting anyone off mid-query.
    pub fn is_idle(&self) -> bool {
        self.is_relaying()
            && self.up.is_empty()
            && self.down.is_empty()
            && self.up_framer.at_boundary()
            && self.tracker.idle()
    }

    /// Counts bytes that just entered `up` and, while relaying, scans them
    /// for commands.
    pub fn client_bytes_arrived(&mut self, _from: usize, n: usize, ctx: &mut Ctx) {
        self.bytes_in += n as u64;
        self.last_active = ctx.now;
        if self.is_relaying() {
            self.advance(ctx);
        }
    }

    /// How many bytes at the front of `up` may go to the backend: all that
    /// were scanned, up to a held command.
    pub fn up_limit(&self) -> usize {
        let front = self.up.consumed();
        let upto = match self.hold {
            Hold::None => self.scanned,
            Hold::Waiting { at, .. } => at,
            // A KILL being handled was taken out of `up`; what follows it
            // waits for its answer.
            Hold::Kill(..) | Hold::Side | Hold::Answer(_) | Hold::ChangeUser(_) => front,
        };
        usize::try_from(upto.saturating_sub(front)).unwrap_or(usize::MAX)
    }

    /// Bytes went from `up` to the backend: a held command may now be at
    /// the front.
    pub fn up_sent(&mut self, ctx: &mut Ctx) {
        self.advance(ctx);
    }

    /// Offset in `up` of stream position `pos` (not before its front).
    fn offset(&self, pos: u64) -> usize {
        usize::try_from(pos.saturating_sub(self.up.consumed())).unwrap_or(usize::MAX)
    }

    /// Walks relayed client bytes with the framer, up to a command that must
    /// be held. Refuses COM_CHANGE_USER: the backend would check its token
    /// against a salt the client never saw, and it could switch to a user of
    /// another pool.
    fn scan_up(&mut self, ctx: &mut Ctx) {
        // Bytes consumed without a scan (none while relaying) are skipped.
        self.scanned = self.scanned.max(self.up.consumed());
        while self.hold == Hold::None && self.offset(self.scanned) < self.up.len() {
            let at = self.offset(self.scanned);
            let (a, b) = self.up.as_slices();
            let chunk = slice_at(a, b, at, self.up.len() - at);
            let (walked, head) = self.up_framer.feed(chunk);
            // A command is the first byte of a non-empty packet with
            // sequence id 0 (continuations of 16 MiB packets are skipped).
            let command = head.filter(|h| h.seq == 0 && h.len > 0).map(|h| (h.bytes[0], h.len));
            self.scanned += walked as u64;
            // During a LOAD DATA LOCAL transfer, file packets are numbered
            // on and wrap to sequence id 0: they are content, not commands.
            // (A client that sends stray empty packets only turns this off.)
            let pending =
                self.tracker.files_requested().wrapping_sub(self.up_framer.empty_packets());
            let in_file = (pending as i32) > 0;
            let Some((c, len)) = command.filter(|_| !in_file) else {
                continue;
            };
            // Its header began 5 bytes before the scan's position.
            let at = self.scanned - 1 - HEADER_LEN as u64;
            match c {
                // A short query or a COM_PROCESS_KILL may be a KILL naming
                // a myroute id: read it whole before anything from it on is
                // relayed.
                com::QUERY | com::PROCESS_KILL if len <= kill::MAX_STATEMENT + 1 => {
                    self.hold = Hold::Waiting { at, len };
                }
                com::CHANGE_USER if HEADER_LEN + len <= self.up.capacity() => {
                    self.hold = Hold::Waiting { at, len };
                }
                com::CHANGE_USER => return self.refuse_change_user(self.offset(at), ctx),
                _ => self.forwarded(c),
            }
        }
    }

    /// The client's command `c` goes to the backend.
    fn forwarded(&mut self, c: u8) {
        self.tracker.command(c);
        if c == com::QUIT {
            self.quit_sent = true;
        }
    }

    /// A COM_CHANGE_USER at offset `at` of `up` too large to read: refused
    /// with ERR at a clean point (no earlier command still unsent, the
    /// backend's last reply complete); else the connection just closes.
    fn refuse_change_user(&mut self, at: usize, ctx: &mut Ctx) {
        let clean = at == 0 && self.down.is_empty() && self.tracker.at_boundary();
        info!("conn={} client sent a COM_CHANGE_USER too large to read; refused", self.id);
        let next = if clean {
            self.refuse(
                Refusal::BadHandshake("COM_CHANGE_USER too large".into()),
                1,
                EndReason::ChangeUser,
                ctx,
            )
        } else {
            State::Closing { reason: EndReason::ChangeUser, flush: Side::Client }
        };
        let from = self.state.name();
        self.set_state(from, next, ctx);
    }

    /// Moves a held command on when it can: a waiting packet, once whole and
    /// at the front, is a KILL for the loop or is relayed; an answer goes
    /// out once the backend has answered everything before it.
    fn settle_hold(&mut self, bufs: &mut BufPool) -> bool {
        match self.hold {
            Hold::Waiting { at, len }
                if self.offset(at) == 0
                    && self.up.len() >= HEADER_LEN + len
                    && self.up.byte_at(HEADER_LEN) == Some(com::CHANGE_USER) =>
            {
                let mut payload = vec![0u8; len];
                self.up.peek(HEADER_LEN, &mut payload);
                self.skip_held(at, len);
                self.up.scrub();
                self.hold = Hold::ChangeUser(payload);
                false
            }
            Hold::Waiting { at, len }
                if self.offset(at) == 0 && self.up.len() >= HEADER_LEN + len =>
            {
                // On the stack: the relay path allocates nothing. (Only
                // packets this short are held for a KILL.)
                let mut buf = [0u8; kill::MAX_STATEMENT + 1];
                let payload = &mut buf[..len.min(kill::MAX_STATEMENT + 1)];
                self.up.peek(HEADER_LEN, payload);
                match kill::parse(payload).filter(|k| kill::is_ours(k.id)) {
                    Some(k) => {
                        self.skip_held(at, len);
                        let rest = payload.get(k.rest..).filter(|_| k.rest > 0).unwrap_or_default();
                        self.hold = Hold::Kill(k, rest.to_vec());
                        false
                    }
                    None => {
                        self.hold = Hold::None;
                        self.forwarded(payload[0]);
                        true
                    }
                }
            }
            Hold::Answer(ref pkt) if self.down.is_empty() && self.tracker.quiet() => {
                let pkt = pkt.clone();
                self.send_client(bufs, &pkt);
                self.hold = Hold::None;
                true
            }
            _ => false,
        }
    }

    /// Takes the held packet at stream position `at` (payload `len`) out
    /// of `up`, walking the framer past it: it never reaches the backend.
    fn skip_held(&mut self, at: u64, len: usize) {
        let end = at + (HEADER_LEN + len) as u64;
        while self.scanned < end {
            let (a, b) = self.up.as_slices();
            let from = self.offset(self.scanned);
            let rest = usize::try_from(end - self.scanned).unwrap_or(0);
            let (walked, _) = self.up_framer.feed(slice_at(a, b, from, rest));
            self.scanned += walked as u64;
        }
        self.up.consume(HEADER_LEN + len);
    }

    /// Scans what the client sent and settles held commands, for as long as
    /// either moves; a COM_CHANGE_USER begins once every reply before it
    /// has gone to the client.
    fn advance(&mut self, ctx: &mut Ctx) {
        loop {
            self.scan_up(ctx);
            if !self.is_relaying() {
                return;
            }
            let moved = self.settle_hold(ctx.bufs);
            if matches!(self.hold, Hold::ChangeUser(_))
                && self.down.is_empty()
                && self.tracker.quiet()
            {
                return self.begin_change_user(ctx);
            }
            if !moved {
                return;
            }
        }
    }

    /// COM_CHANGE_USER: the new user is checked here, as at login (an
    /// AuthSwitchRequest if its client named another plugin), then logged
    /// in on the backend (see [`Pair::verified`]).
    fn begin_change_user(&mut self, ctx: &mut Ctx) {
        let Hold::ChangeUser(mut payload) = std::mem::replace(&mut self.hold, Hold::None) else {
            return;
        };
        let Some(session) = self.session.as_deref() else {
            return;
        };
        info!("conn={} client sent COM_CHANGE_USER", self.id);
        let mut out = Vec::new();
        let host = self.peer.ip().to_string();
        let (login, step) =
            Accept::change_user(session, self.scramble, host, &mut payload, &mut out);
        scramble::wipe_stack();
        self.user = login.user().map(<[u8]>::to_vec);
        self.send_client(ctx.bufs, &out);
        self.handshake_deadline = ctx.now + ctx.cfg.handshake_timeout;
        let next = match step {
            Step::Continue | Step::StartTls => State::AwaitingClientLogin(Box::new(login)),
            Step::Verified(v) => self.verified(*v, ctx),
            Step::Refused(why) => self.login_refused(why, ctx),
        };
        let from = self.state.name();
        self.set_state(from, next, ctx);
    }

    /// A KILL naming a myroute id that the loop must decide on, until it
    /// does (with [`Event::Kill`]).
    pub fn wants_kill(&self) -> Option<Kill> {
        match self.hold {
            Hold::Kill(k, _) => Some(k),
            _ => None,
        }
    }

    /// The server and backend id of the session this pair relays to, if it
    /// is relaying.
    pub fn backend_session(&self) -> Option<(usize, u32)> {
        self.backend.zip(self.backend_id).filter(|_| self.is_relaying())
    }

    /// Who the pair logged in as, to carry its KILL to another server.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_deref()
    }

    /// The loop's verdict on the pair's KILL.
    fn on_kill(&mut self, verdict: KillVerdict, ctx: &mut Ctx) {
        match (&self.hold, verdict) {
            (Hold::Kill(k, rest), KillVerdict::Through(backend_id)) => {
                let statement = k.statement(backend_id, rest);
                put_packet(&mut self.to_backend, 0, &statement);
                self.forwarded(com::QUERY);
                self.hold = Hold::None;
            }
            (Hold::Kill(..), KillVerdict::Side) => self.hold = Hold::Side,
            (Hold::Kill(..) | Hold::Side, KillVerdict::Answer(payload)) => {
                let mut pkt = Vec::with_capacity(payload.len() + HEADER_LEN);
                put_packet(&mut pkt, 1, &payload);
                self.hold = Hold::Answer(pkt);
            }
            // Not waiting for this verdict: nothing to do.
            _ => return,
        }
        self.advance(ctx);
    }

    /// Feeds bytes that just entered `down` (at offset `from`) to the
    /// tracker while relaying, so the proxy knows where backend packets end.
    pub fn backend_bytes_arrived(&mut self, from: usize, n: usize, ctx: &mut Ctx) {
        self.last_active = ctx.now;
        if !self.is_relaying() {
            return;
        }
        let mut offset = from;
        let end = from + n;
        while offset < end {
            let (a, b) = self.down.as_slices();
            let chunk = slice_at(a, b, offset, end - offset);
            self.tracker.backend(chunk);
            offset += chunk.len();
        }
        self.advance(ctx);
    }

    /// Counts bytes written to the client.
    pub fn client_bytes_sent(&mut self, n: usize, ctx: &mut Ctx) {
        self.bytes_out += n as u64;
        if n > 0 {
            self.last_active = ctx.now;
        }
        if self.is_relaying() {
            self.advance(ctx);
        }
    }

    /// The one place where the pair reacts to what happened. Transitions go
    /// through `set_state`.
    pub fn handle(&mut self, ev: Event, ctx: &mut Ctx) {
        let was_relaying = self.is_relaying();
        let from = self.state.name();
        let state = std::mem::replace(&mut self.state, State::Relaying);
        let next = match (state, ev) {
            (s @ State::Closing { .. }, ev) => self.while_closing(s, ev, ctx),
            // Stopped while idle: the backend gets COM_QUIT, so the server
            // sees a clean goodbye rather than an aborted connection.
            (State::Relaying, Event::Stop(reason)) if self.is_idle() => {
                self.up.attach(ctx.bufs);
                // `up` is empty (idle), so the five bytes fit.
                let _ = self.up.push(&[1, 0, 0, 0, com::QUIT]);
                State::Closing { reason, flush: Side::Backend }
            }
            // Not logged in yet: told why, as a server would tell it.
            (State::AwaitingClientLogin(login), Event::Stop(reason)) => {
                self.refuse(stop_refusal(&reason), login.reply_seq(), reason, ctx)
            }
            // Stopped mid-query or mid-backend-login: cut both sides now.
            (_, Event::Stop(reason)) => {
                self.down.clear(ctx.bufs);
                State::Closing { reason, flush: Side::Client }
            }

            // The client left: nothing to finish on its behalf.
            (State::Relaying, Event::ClientClosed(None)) => {
                State::Closing { reason: EndReason::ClientClosed, flush: Side::Backend }
            }
            (_, Event::ClientClosed(err)) => {
                self.down.clear(ctx.bufs);
                State::Closing {
                    reason: err.map_or(EndReason::ClientClosed, EndReason::IoError),
                    flush: Side::Client,
                }
            }

            // HandshakeResponse41, AuthSwitchResponse (or junk).
            (State::AwaitingClientLogin(login), Event::ClientData) => {
                self.on_client_login(login, ctx)
            }
            // Pipelined client bytes during backend login wait in `up`;
            // relayed bytes were already scanned by `client_bytes_arrived`.
            (
                s @ (State::Connecting { .. }
                | State::AwaitingBackendLogin { .. }
                | State::Relaying),
                Event::ClientData,
            ) => s,

            // TCP connect done: the backend speaks first, after the PROXY
            // header when the pool sends one.
            (State::Connecting { login, id, deadline }, Event::BackendConnected) => {
                self.queue_proxy_header(ctx);
                let tls = ctx.pools.tls_want(self.pool.unwrap_or(login.pool));
                State::AwaitingBackendLogin { login, dial: Box::new(Dial::new(*id, tls)), deadline }
            }
            (State::AwaitingBackendLogin { login, dial, deadline }, Event::BackendData) => {
                self.on_backend_login(login, dial, deadline, ctx)
            }

            (s, ev @ (Event::TlsReady(..) | Event::TlsFailed(..))) => self.on_tls(s, ev, ctx),
            (State::Relaying, Event::BackendData) => State::Relaying,
            (State::Relaying, Event::Kill(verdict)) => {
                self.on_kill(verdict, ctx);
                State::Relaying
            }
            // The pair ended while its KILL was decided: nothing to answer.
            (s, Event::Kill(_)) => s,

            // A backend attempt failed before login completed: next server.
            (State::Connecting { login, id, .. }, Event::BackendFailed(why)) => {
                self.backend_attempt_failed(login, id, why, true, ctx)
            }
            (State::AwaitingBackendLogin { login, dial, .. }, Event::BackendFailed(why)) => {
                let id = Box::new(dial.into_identity());
                self.backend_attempt_failed(login, id, why, true, ctx)
            }
            (State::Connecting { login, id, .. }, Event::NoBackendSocket(why)) => {
                self.backend_attempt_failed(login, id, why, false, ctx)
            }
            (State::Relaying, Event::BackendFailed(_)) => State::Closing {
                reason: if self.quit_sent {
                    EndReason::ClientClosed
                } else {
                    EndReason::BackendClosed
                },
                flush: Side::Client,
            },

            // Deadlines: the whole login, or one backend attempt.
            (s, Event::Timeout) => self.on_timeout(s, ctx),

            (s, ev) => self.unexpected(s, ev),
        };
        self.set_state(from, next, ctx);
        if !was_relaying && self.is_relaying() {
            // Commands a client pipelined behind its login (or change of
            // user) are relayed now: scan them like any other, from a
            // packet boundary.
            self.up_framer = Framer::new(1);
            self.scanned = self.up.consumed();
            self.advance(ctx);
        }
    }

    /// A TLS handshake ended, or TLS failed, on either side.
    fn on_tls(&mut self, state: State, ev: Event, ctx: &mut Ctx) -> State {
        match (state, ev) {
            // TLS, after an SSLRequest: the login goes on inside it.
            (State::AwaitingClientLogin(mut login), Event::TlsReady(Side::Client, info)) => {
                login.tls_started();
                self.client_tls = Some(info);
                self.on_client_login(login, ctx)
            }
            (
                State::AwaitingBackendLogin { login, mut dial, deadline },
                Event::TlsReady(Side::Backend, info),
            ) => {
                dial.tls_started(&mut self.to_backend);
                ctx.pools.tls_seen(login.server, Some(info.version));
                self.backend_tls = Some(info);
                State::AwaitingBackendLogin { login, dial, deadline }
            }
            // Nothing more can be said to a client whose TLS failed.
            (_, Event::TlsFailed(Side::Client, why)) => {
                ctx.stats.tls_failures_client += 1;
                info!("conn={} client={} TLS failed: {why}", self.id, self.peer);
                self.down.clear(ctx.bufs);
                State::Closing { reason: EndReason::Tls(why), flush: Side::Client }
            }
            // TLS toward the server broke mid-session.
            (State::Relaying, Event::TlsFailed(Side::Backend, why)) => {
                State::Closing { reason: EndReason::Tls(why), flush: Side::Client }
            }
            // A server whose TLS failed is a failed attempt.
            (
                State::AwaitingBackendLogin { login, dial, .. },
                Event::TlsFailed(Side::Backend, why),
            ) => {
                ctx.stats.tls_failures_server += 1;
                let id = Box::new(dial.into_identity());
                self.backend_attempt_failed(login, id, format!("TLS: {why}"), true, ctx)
            }
            (s, ev) => self.unexpected(s, ev),
        }
    }

    /// Anything else is a protocol error: a backend speaking when it should
    /// not, or an event for a phase that is over.
    fn unexpected(&self, s: State, ev: Event) -> State {
        debug!("conn={} unexpected {ev:?} in {s}", self.id);
        State::Closing { reason: EndReason::ProtocolError("unexpected event"), flush: Side::Client }
    }

    /// Events for a pair whose end is decided: only the flushing changes.
    fn while_closing(&mut self, state: State, ev: Event, ctx: &mut Ctx) -> State {
        let State::Closing { reason, flush } = state else {
            return state;
        };
        match (flush, ev) {
            // The side being flushed went away: nothing left to flush.
            (Side::Client, Event::ClientClosed(_)) => self.down.clear(ctx.bufs),
            (Side::Backend, Event::BackendFailed(_)) => self.up.clear(ctx.bufs),
            // Stopped while flushing (KILL, shutdown_timeout): give up on
            // what is still buffered.
            (_, Event::Stop(_)) => self.drop_buffers(ctx.bufs),
            // The side being flushed stopped taking bytes: give up on them.
            (_, Event::Timeout) => {
                let idle = self.idle_timeout.map(|d| self.last_active + d);
                if idle.is_some_and(|t| ctx.now >= t) {
                    self.drop_buffers(ctx.bufs);
                }
            }
            _ => {}
        }
        State::Closing { reason, flush }
    }

    /// The only assignment to `self.state`.
    fn set_state(&mut self, from: &'static str, next: State, ctx: &mut Ctx) {
        // Which backend socket the new state needs.
        self.backend = match &next {
            State::Connecting { login, .. } | State::AwaitingBackendLogin { login, .. } => {
                Some(login.server)
            }
            // (A change of user is checked with the backend session kept.)
            State::AwaitingClientLogin(_)
            | State::Relaying
            | State::Closing { flush: Side::Backend, .. } => self.backend,
            _ => None,
        };
        if let State::Closing { flush, .. } = next {
            // Whatever the client sent after its end is dropped.
            if flush != Side::Backend {
                self.up.clear(ctx.bufs);
            }
            self.to_backend.clear();
        }
        if from != next.name() {
            log::trace!("conn={} state={from}=>{next}", self.id);
        }
        self.state = next;
    }

    /// Drops every byte still buffered either way, so a closing pair ends.
    fn drop_buffers(&mut self, bufs: &mut BufPool) {
        self.down.clear(bufs);
        self.up.clear(bufs);
        self.to_backend.clear();
    }

    /// Queues bytes for the client (myroute's own packets).
    fn send_client(&mut self, bufs: &mut BufPool, pkt: &[u8]) {
        if pkt.is_empty() {
            return;
        }
        self.down.attach(bufs);
        // Connection-phase packets are far smaller than any ring
        // (buffer_size >= 4096), and `down` is empty whenever myroute speaks.
        let n = self.down.push(pkt);
        debug_assert_eq!(n, pkt.len());
    }

    /// Queues an ERR for the client and ends the pair after it is flushed.
    fn refuse(&mut self, r: Refusal, seq: u8, reason: EndReason, ctx: &mut Ctx) -> State {
        // Drop anything half-read from a failed backend first, so the ERR is
        // the next thing the client sees.
        self.down.clear(ctx.bufs);
        self.send_client(ctx.bufs, &r.packet(seq));
        State::Closing { reason, flush: Side::Client }
    }

    /// Starts a backend connection with a PROXY protocol header carrying
    /// the client's address, when its pool asks for one.
    fn queue_proxy_header(&mut self, ctx: &Ctx) {
        let version = self.pool.map(|p| ctx.pools.pool(p).proxy_protocol);
        let header = match version {
            Some(ProxyProtocol::V1) => proxy_proto::build_v1(self.peer, self.local),
            Some(ProxyProtocol::V2) => proxy_proto::build_v2(self.peer, self.local),
            Some(ProxyProtocol::None) | None => return,
        };
        // Nothing else is queued for a backend that has just connected.
        self.to_backend.splice(0..0, header);
    }

    /// Reads a PROXY protocol header at the very start of the client's
    /// bytes (before or after the greeting, as MariaDB accepts it). Returns
    /// `Err(refusal state)` to refuse, `Ok(false)` to wait for more bytes.
    fn take_proxy_header(&mut self, login: &mut Accept, ctx: &mut Ctx) -> Result<bool, State> {
        let mut head = [0u8; proxy_proto::V2_MAX];
        let n = self.up.peek(0, &mut head);
        let bad = |why: &str| Refusal::BadHandshake(why.into());
        match proxy_proto::looks_like_header(&head[..n]) {
            None => return Ok(false),
            Some(false) => {
                self.header_possible = false;
                return Ok(true);
            }
            Some(true) if !self.trusted => {
                warn!(
                    "conn={} client={} sent a PROXY protocol header but is not in proxy_protocol_from; refused",
                    self.id,
                    self.peer.ip()
                );
                let why = "PROXY protocol header from an address not in proxy_protocol_from";
                let reason = EndReason::ProtocolError("untrusted PROXY header");
                return Err(self.refuse(bad(why), 2, reason, ctx));
            }
            Some(true) => {}
        }
        match proxy_proto::parse(&head[..n]) {
            Err(proxy_proto::Error::Incomplete) if n < head.len() => Ok(false),
            Err(_) => {
                let reason = EndReason::ProtocolError("bad PROXY header");
                Err(self.refuse(bad("malformed PROXY protocol header"), 2, reason, ctx))
            }
            Ok((header, used)) => {
                self.up.consume(used);
                self.header_possible = false;
                if let proxy_proto::Header::Proxied { src, dst } = header {
                    debug!("conn={} PROXY header: client {src} via {}", self.id, self.peer);
                    self.peer = src;
                    self.local = dst;
                    login.set_host(src.ip().to_string());
                }
                Ok(true)
            }
        }
    }

    /// Client bytes while its login runs: each whole packet goes to the
    /// login exchange.
    fn on_client_login(&mut self, mut login: Box<Accept>, ctx: &mut Ctx) -> State {
        if self.header_possible {
            match self.take_proxy_header(&mut login, ctx) {
                Ok(true) => {}
                Ok(false) => return State::AwaitingClientLogin(login),
                Err(refused) => return refused,
            }
        }
        if self.tls_request.is_some() {
            // The bytes behind the SSLRequest are TLS records, for the
            // runtime's handshake.
            return State::AwaitingClientLogin(login);
        }
        let mut head = [0u8; 3];
        if self.client_tls.is_none() && self.up.peek(0, &mut head) == 3 && is_tls_record(&head) {
            // A client that speaks TLS first, without an SSLRequest.
            return State::Closing { reason: EndReason::Tls("no SSLRequest"), flush: Side::Client };
        }
        let mut out = Vec::new();
        loop {
            let step = match take_packet(&mut self.up, max_login_payload(ctx)) {
                Ok(None) => return State::AwaitingClientLogin(login),
                Ok(Some((seq, mut payload))) => {
                    // The packet holds the token: no copy may linger in the
                    // ring it came through.
                    self.up.scrub();
                    let salt = &mut *ctx.salt;
                    login.on_packet(seq, &mut payload, ctx.cfg, ctx.decoy, salt, &mut out)
                }
                Err(e) => login.bad_packet(e, &mut out),
            };
            self.user = login.user().map(<[u8]>::to_vec);
            self.send_client(ctx.bufs, &out);
            out.clear();
            match step {
                Step::Continue => {}
                Step::StartTls => {
                    self.tls_request = Some(Side::Client);
                    return State::AwaitingClientLogin(login);
                }
                Step::Verified(v) => return self.verified(*v, ctx),
                Step::Refused(why) => return self.login_refused(why, ctx),
            }
        }
    }

    /// The client login (or change of user) was refused; the ERR is
    /// queued and the connection closes. After a failed COM_CHANGE_USER
    /// MariaDB goes on as the previous user, its session reset all the
    /// same; closing instead leaves no half-reset session behind and no
    /// way to try passwords without reconnecting.
    fn login_refused(&mut self, why: Denial, ctx: &mut Ctx) -> State {
        let reason = match why {
            Denial::AccessDenied => {
                ctx.stats.logins_failed += 1;
                if ctx.login_warnings.allow(ctx.now) {
                    warn!(
                        "login failed: conn={} client={} user={} (wrong password or unknown user)",
                        self.id,
                        self.peer.ip(),
                        printable(self.user.as_deref().unwrap_or_default())
                    );
                }
                EndReason::AuthFailed
            }
            Denial::Protocol(what) => EndReason::ProtocolError(what),
            Denial::Insecure => {
                ctx.stats.logins_insecure += 1;
                if ctx.login_warnings.allow(ctx.now) {
                    warn!(
                        "login refused: conn={} client={} user={} came without TLS (tls = required)",
                        self.id,
                        self.peer.ip(),
                        printable(self.user.as_deref().unwrap_or_default())
                    );
                }
                EndReason::ProtocolError("no TLS")
            }
        };
        State::Closing { reason, flush: Side::Client }
    }

    /// The client proved its password: start the backend login.
    fn verified(&mut self, v: Verified, ctx: &mut Ctx) -> State {
        // `verified` only happens for a configured user.
        let Some(user) = ctx.cfg.user(&v.hello.user) else {
            return State::Closing { reason: EndReason::AuthFailed, flush: Side::Client };
        };
        let pool = ctx.pools.of_config(user.pool);
        let previous = self.session.as_ref().map(|s| s.user.clone());
        let changing = previous.is_some();
        if !changing {
            ctx.stats.handshake.observe(ctx.now.saturating_duration_since(self.started));
            self.greeting_salt = v.greeting_salt;
        }
        let mut session = v.hello.clone();
        session.auth.clear();
        self.session = Some(Box::new(session));
        self.scramble = v.salt;
        let mut login = Box::new(Login {
            pool,
            tried: Vec::new(),
            server: 0,
            client_seq: v.seq,
            failures: Vec::new(),
            verified_at: ctx.now,
            change_of_user: previous,
        });
        let id = Box::new(Identity { hello: v.hello, stage1: v.stage1, anonymous: false });
        // A change of user stays on its backend session when the new user
        // belongs to the same pool and that server may still take it.
        let server = self.backend.filter(|_| changing && self.home_pool == Some(pool));
        let stay = server
            .filter(|&s| self.pool.is_some_and(|p| ctx.pools.usable(s, ctx.pools.pool(p).role)));
        self.home_pool = Some(pool);
        match (stay, self.leg.take()) {
            (Some(server), Some(leg)) => {
                login.server = server;
                login.tried.push(server);
                let dial = Box::new(Dial::change_user(*id, leg, &mut self.to_backend));
                let deadline = ctx.now + ctx.cfg.connect_timeout;
                State::AwaitingBackendLogin { login, dial, deadline }
            }
            _ => {
                // Another pool (or a server that may not take it): the
                // backend session is ended cleanly, then a login on a
                // server of the new pool.
                self.quit_backend = changing;
                self.pool = Some(pool);
                self.next_backend(login, id, ctx)
            }
        }
    }

    /// Picks the next untried server of the login's pool, or gives up.
    fn next_backend(&mut self, mut login: Box<Login>, id: Box<Identity>, ctx: &mut Ctx) -> State {
        self.down.clear(ctx.bufs);
        self.to_backend.clear();
        let Some((pool, server)) = ctx.pools.pick(login.pool, &login.tried) else {
            return self.pool_unreachable(&login, ctx);
        };
        if pool != login.pool && self.pool != Some(pool) {
            info!(
                "conn={} pool '{}' has no usable server; using its fallback '{}'",
                self.id,
                ctx.pools.pool(login.pool).name,
                ctx.pools.pool(pool).name
            );
        }
        self.pool = Some(pool);
        self.backend_tls = None;
        login.tried.push(server);
        login.server = server;
        self.server = Some(server);
        self.attempt += 1;
        State::Connecting { login, id, deadline: ctx.now + ctx.cfg.connect_timeout }
    }

    /// No server of the pool (or its fallbacks) is left: ERR 1429.
    fn pool_unreachable(&mut self, login: &Login, ctx: &mut Ctx) -> State {
        let pool = ctx.pools.pool(login.pool).name.clone();
        let detail = if login.failures.is_empty() {
            // Nothing was tried: every server is known to be down.
            ctx.pools.down_summary(login.pool)
        } else {
            login.failures.join("; ")
        };
        warn!("conn={} client={} pool '{pool}' unreachable: {detail}", self.id, self.peer);
        self.refuse(
            Refusal::PoolUnreachable { pool, detail },
            login.client_seq,
            EndReason::PoolUnreachable,
            ctx,
        )
    }

    fn backend_attempt_failed(
        &mut self,
        mut login: Box<Login>,
        id: Box<Identity>,
        why: String,
        server_at_fault: bool,
        ctx: &mut Ctx,
    ) -> State {
        let addr = ctx.pools.server(login.server).addr;
        info!("conn={} backend {addr} failed: {why}", self.id);
        // A failed real login counts like a failed health check.
        if server_at_fault {
            ctx.stats.backend_failures += 1;
            ctx.pools.record_failure(login.server, &why, ctx.now, ctx.cfg.health.fall);
        }
        login.failures.push(format!("{addr}: {why}"));
        self.next_backend(login, id, ctx)
    }

    /// Backend bytes while its login runs: each whole packet goes to the
    /// login exchange.
    fn on_backend_login(
        &mut self,
        login: Box<Login>,
        mut dial: Box<Dial>,
        deadline: Instant,
        ctx: &mut Ctx,
    ) -> State {
        loop {
            let greeted = dial.greeting().is_some();
            let progress = match take_packet(&mut self.down, max_payload(ctx)) {
                Ok(None) => return State::AwaitingBackendLogin { login, dial, deadline },
                Ok(Some((seq, payload))) => dial.on_packet(seq, &payload, &mut self.to_backend),
                Err(e) => {
                    let id = Box::new(dial.into_identity());
                    let why = if greeted {
                        "login reply too large".to_string()
                    } else {
                        format!("greeting: {e}")
                    };
                    return self.backend_attempt_failed(login, id, why, true, ctx);
                }
            };
            if let (false, Some(g)) = (greeted, dial.greeting()) {
                ctx.pools.learned(login.server, BackendInfo::of(g));
            }
            match progress {
                Progress::Continue => {}
                // The SSLRequest is queued; the runtime starts TLS once it
                // is sent.
                Progress::StartTls => self.tls_request = Some(Side::Backend),
                Progress::LoggedIn(ok) => {
                    let next = self.logged_in(&login, &dial, &ok, ctx);
                    if let Some(g) = dial.greeting() {
                        self.backend_id = Some(g.connection_id);
                    }
                    self.leg = dial.leg().cloned();
                    // Kept only to carry KILLs across servers; otherwise
                    // dropped here, which zeroes its stage1.
                    if ctx.cfg.kill_across_servers {
                        self.identity = Some(Box::new(dial.into_identity()));
                    }
                    return next;
                }
                Progress::Refused(err) => return self.backend_refused(&login, &dial, &err, ctx),
                Progress::Failed(Failure::Plugin(plugin)) => {
                    return self.backend_plugin_unsupported(&login, &dial, &plugin, ctx)
                }
                Progress::Failed(f) => {
                    let (why, at_fault) = match f {
                        Failure::Server(why) => (why, true),
                        Failure::Incompatible(why) => (why, false),
                        Failure::Plugin(_) => (String::new(), false),
                    };
                    let id = Box::new(dial.into_identity());
                    return self.backend_attempt_failed(login, id, why, at_fault, ctx);
                }
            }
        }
    }

    /// The backend accepted the login: the client gets the backend's own OK,
    /// renumbered to the client's sequence, and relaying begins.
    fn logged_in(&mut self, login: &Login, dial: &Dial, ok: &[u8], ctx: &mut Ctx) -> State {
        let caps = dial.identity().hello.capabilities;
        // The proof is checked by clients at connect time only.
        let proof = self
            .tls_proof(&dial.identity().hello.user, ctx)
            .filter(|_| login.change_of_user.is_none());
        // The backend's own info concerns the backend's certificate: over
        // TLS it is replaced by the proof for myroute's.
        let ok = match proof.map(|p| handshake::ok_with_info(ok, caps, &p)) {
            Some(Ok(with_proof)) => with_proof,
            _ => ok.to_vec(),
        };
        let mut pkt = Vec::with_capacity(ok.len() + HEADER_LEN);
        put_packet(&mut pkt, login.client_seq, &ok);
        self.send_client(ctx.bufs, &pkt);
        // Login bytes are done with; an idle relaying pair keeps no buffer
        // of its own. The identity (and its stage1) is dropped, which zeroes
        // it.
        self.to_backend = Vec::new();
        ctx.pools.record_success(login.server);
        let hello = &dial.identity().hello;
        self.tracker = Tracker::new(hello.capabilities, hello.ext);
        ctx.stats.logins_ok += 1;
        ctx.stats.backend_login.observe(ctx.now.saturating_duration_since(login.verified_at));
        if let Some(p) = self.pool {
            ctx.pools.routed(p);
        }
        let addr = ctx.pools.server(login.server).addr;
        if let Some(from) = &login.change_of_user {
            let pool = self.pool.map_or("-", |p| ctx.pools.pool(p).name.as_str());
            info!(
                "conn={} client={} changed user from {} to {} pool={pool} server={addr}",
                self.id,
                self.peer,
                printable(from),
                printable(&dial.identity().hello.user)
            );
            return State::Relaying;
        }
        if self.client_tls.is_some() {
            ctx.stats.logins_tls += 1;
        } else {
            ctx.stats.logins_plain += 1;
        }
        debug!("conn={} logged in to {addr}", self.id);
        State::Relaying
    }

    /// MariaDB's zero-configuration TLS proof for `user`, when the client
    /// leg uses TLS and the account has a password.
    #[cfg(feature = "tls")]
    fn tls_proof(&self, user: &[u8], ctx: &Ctx) -> Option<Vec<u8>> {
        let digest = self.client_tls.as_ref()?.cert_sha256?;
        let stage2 = ctx.cfg.user(user)?.stage2.as_ref()?;
        Some(scramble::tls_proof(stage2, &self.greeting_salt, &digest))
    }

    #[cfg(not(feature = "tls"))]
    fn tls_proof(&self, _: &[u8], _: &Ctx) -> Option<Vec<u8>> {
        None
    }

    /// True once when the backend socket being dropped should get a
    /// COM_QUIT first (a change of user left it for another server).
    pub fn take_backend_quit(&mut self) -> bool {
        std::mem::take(&mut self.quit_backend)
    }

    /// A TLS handshake the runtime should start now on this side: the
    /// client's right after its SSLRequest (what `up` holds behind it are
    /// the first TLS records), the backend's once the SSLRequest queued in
    /// `to_backend` is sent. Taken once.
    pub fn take_tls_request(&mut self) -> Option<Side> {
        match self.tls_request {
            Some(Side::Backend) if !self.to_backend.is_empty() => None,
            side => {
                self.tls_request = None;
                side
            }
        }
    }

    /// ERR (unknown database, access denied, too many connections): relayed
    /// as it is, then both sides close.
    fn backend_refused(&mut self, login: &Login, dial: &Dial, err: &[u8], ctx: &mut Ctx) -> State {
        let mut pkt = Vec::with_capacity(err.len() + HEADER_LEN);
        put_packet(&mut pkt, login.client_seq, err);
        self.send_client(ctx.bufs, &pkt);
        let (code, msg) = parse_err(err).unwrap_or((0, String::new()));
        info!(
            "conn={} backend {} refused login of user {}: ERR {code} {msg}",
            self.id,
            ctx.pools.server(login.server).addr,
            printable(&dial.identity().hello.user)
        );
        State::Closing { reason: EndReason::BackendRefused(code), flush: Side::Client }
    }

    fn backend_plugin_unsupported(
        &mut self,
        login: &Login,
        dial: &Dial,
        plugin: &[u8],
        ctx: &mut Ctx,
    ) -> State {
        let addr = ctx.pools.server(login.server).addr;
        let plugin = printable(plugin);
        warn!(
            "conn={} backend {addr} wants auth plugin {plugin} for user {}; backend accounts must use mysql_native_password",
            self.id,
            printable(&dial.identity().hello.user)
        );
        // The account is at fault, not the server: its health is untouched.
        let user = String::from_utf8_lossy(&dial.identity().hello.user).into_owned();
        let refusal = Refusal::PluginUnsupported { user, server: addr.to_string(), plugin };
        self.refuse(refusal, login.client_seq, EndReason::BackendRefused(1251), ctx)
    }

    fn on_timeout(&mut self, state: State, ctx: &mut Ctx) -> State {
        if let State::Relaying = state {
            let idle = self.idle_timeout.map(|d| self.last_active + d);
            if idle.is_some_and(|t| ctx.now >= t) {
                // Nothing moved for idle_timeout: close both sides. Bytes
                // still buffered are dropped: a packet cannot be injected
                // into the middle of a relayed stream to explain why.
                self.down.clear(ctx.bufs);
                return State::Closing {
                    reason: EndReason::Timeout("idle_timeout"),
                    flush: Side::Client,
                };
            }
            return State::Relaying;
        }
        if ctx.now >= self.handshake_deadline {
            let reason = EndReason::Timeout("handshake_timeout");
            return match state {
                // The client is waiting for our answer: tell it why.
                State::Connecting { login, .. } | State::AwaitingBackendLogin { login, .. } => {
                    self.refuse(Refusal::HandshakeTimeout, login.client_seq, reason, ctx)
                }
                // The client owes us a packet: just close, as servers do.
                _ => State::Closing { reason, flush: Side::Client },
            };
        }
        let failed = |id| {
            let ms = ctx.cfg.connect_timeout.as_millis();
            (id, format!("no answer within connect_timeout ({ms}ms)"))
        };
        match state {
            State::Connecting { login, id, deadline } if ctx.now >= deadline => {
                let (id, why) = failed(id);
                self.backend_attempt_failed(login, id, why, true, ctx)
            }
            State::AwaitingBackendLogin { login, dial, deadline } if ctx.now >= deadline => {
                let (id, why) = failed(Box::new(dial.into_identity()));
                self.backend_attempt_failed(login, id, why, true, ctx)
            }
            s => s,
        }
    }
}

/// What a client that has not logged in is told when `reason` ends it.
fn stop_refusal(reason: &EndReason) -> Refusal {
    match reason {
        EndReason::Killed => Refusal::Killed,
        _ => Refusal::ShuttingDown,
    }
}

/// The greeting's capabilities: what myroute relays, narrowed to what the
/// backends support; CLIENT_MYSQL is cleared, as MariaDB's servers do, only
/// when MariaDB's extended capabilities are offered too.
pub fn advertised_caps(info: Option<&BackendInfo>) -> u32 {
    let backend = info.map_or(
        caps::RELAYABLE & !(caps::QUERY_ATTRIBUTES | caps::OPTIONAL_RESULTSET_METADATA),
        |i| i.capabilities,
    );
    let mysql = if advertised_ext(info) == 0 { caps::LONG_PASSWORD } else { 0 };
    (caps::RELAYABLE & backend & !caps::LONG_PASSWORD)
        | mysql
        | caps::PROTOCOL_41
        | caps::SECURE_CONNECTION
        | caps::PLUGIN_AUTH
}

/// MariaDB's extended capabilities the greeting offers: those every known
/// server offers, of the ones myroute relays.
pub fn advertised_ext(info: Option<&BackendInfo>) -> u32 {
    info.map_or(0, |i| i.ext) & ext::OFFERED
}

/// The first bytes of a TLS record (a handshake record, TLS 1.0 to 1.3
/// in its version field): what a client speaking TLS first sends.
fn is_tls_record(head: &[u8; 3]) -> bool {
    head[0] == 0x16 && head[1] == 0x03 && head[2] <= 0x04
}

/// The largest backend packet myroute reads during login: one that fits a
/// ring.
fn max_payload(ctx: &Ctx) -> usize {
    ctx.cfg.buffer_size - HEADER_LEN
}

/// The largest client packet myroute accepts during login: it must fit a
/// ring, and a login myroute rebuilds from it for the backend must fit one
/// packet, so it is bounded well below 16 MiB whatever `buffer_size` is.
pub const MAX_LOGIN_PAYLOAD: usize = 64 * 1024;

fn max_login_payload(ctx: &Ctx) -> usize {
    max_payload(ctx).min(MAX_LOGIN_PAYLOAD)
}

/// `len` bytes starting `offset` bytes into the ring data split as `(a, b)`,
/// limited to one contiguous piece.
fn slice_at<'a>(a: &'a [u8], b: &'a [u8], offset: usize, len: usize) -> &'a [u8] {
    if offset < a.len() {
        &a[offset..(offset + len).min(a.len())]
    } else {
        let o = offset - a.len();
        &b[o..(o + len).min(b.len())]
    }
}

#[cfg(test)]
mod tests {
    //! Each test is a short script: bytes in, expected bytes out, one state
    //! at a time, with `now` stepped by hand.
    use super::*;
    use crate::protocol::handshake::{self, ClientHello, NATIVE};
    use crate::protocol::wire::{self, put_lenenc_bytes, Reader};

    const PW: &[u8] = b"password"; // *2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19
    /// These tests speak plain MySQL; TLS has its own below.
    const TLS_OFF: &str = if cfg!(feature = "tls") { "tls = off\n" } else { "" };
    const CONF: &str = "\
handshake_timeout = 10s
connect_timeout = 1s
pool.primary.servers = 127.0.0.1:1001
pool.replicas.servers = 127.0.0.1:1002, 127.0.0.1:1003
user.app_rw.password = *2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19
user.app_rw.pool = primary
user.app_ro.password = *2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19
user.app_ro.pool = replicas
user.nopw.password =
user.nopw.pool = primary
";

    /// Everything a Ctx borrows, owned by the test.
    struct World {
        cfg: Config,
        pools: Pools,
        bufs: BufPool,
        decoy: Secret,
        now: Instant,
        salts: u8,
        warnings: RateLimit,
        stats: Stats,
    }

    impl World {
        fn new() -> World {
            let cfg = crate::config::parse(&format!("{CONF}{TLS_OFF}")).unwrap();
            let mut pools = Pools::from_config(&cfg);
            for s in 0..pools.servers().len() {
                let info = BackendInfo {
                    version: "10.11.6-MariaDB".into(),
                    capabilities: caps::RELAYABLE & !caps::LONG_PASSWORD,
                    ext: 0,
                    charset: 45,
                };
                pools.learned(s, info);
            }
            World {
                bufs: BufPool::new(cfg.buffer_size, 8),
                cfg,
                pools,
                decoy: Secret([0x42; 20]),
                now: Instant::now(),
                salts: 0,
                warnings: RateLimit::new(Duration::from_secs(1), 10),
                stats: Stats::new(Instant::now()),
            }
        }

        /// The primary pool's backend connections start with a v1 PROXY
        /// header from now on, as a reload would make it.
        fn proxy_protocol_v1(&mut self) {
            self.settings("pool.primary.proxy_protocol = v1\n");
        }

        /// `extra` lines on top of the tests' configuration (without
        /// `tls = off`), as a reload would make it.
        fn settings(&mut self, extra: &str) {
            let tls = if extra.contains("tls") { "" } else { TLS_OFF };
            self.cfg = crate::config::parse(&format!("{CONF}{tls}{extra}")).unwrap();
            self.pools.apply(&self.cfg);
        }

        /// Runs `f` with a Ctx whose salts are 'a'*20, 'b'*20, ...
        fn with<R>(&mut self, f: impl FnOnce(&mut Ctx) -> R) -> R {
            let mut n = self.salts;
            let mut salt = || {
                n = n.wrapping_add(1);
                [b'a' + n % 26; 20]
            };
            let r = {
                let mut ctx = Ctx {
                    now: self.now,
                    cfg: &self.cfg,
                    pools: &mut self.pools,
                    bufs: &mut self.bufs,
                    salt: &mut salt,
                    decoy: &self.decoy,
                    login_warnings: &mut self.warnings,
                    stats: &mut self.stats,
                };
                f(&mut ctx)
            };
            self.salts = n;
            r
        }
    }

    fn peer() -> SocketAddr {
        "127.0.0.1:40000".parse().unwrap()
    }

    fn local() -> SocketAddr {
        "127.0.0.1:3306".parse().unwrap()
    }

    /// Takes every whole packet queued for the client.
    fn client_packets(p: &mut Pair) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while let Ok(Some(pkt)) = take_packet(&mut p.down, 1 << 20) {
            out.push(pkt);
        }
        out
    }

    fn backend_packets(p: &mut Pair) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        let mut r = Reader::new(&p.to_backend);
        while r.remaining() >= 4 {
            let (len, seq) = wire::header_of(r.bytes(4).unwrap()).unwrap();
            out.push((seq, r.bytes(len).unwrap().to_vec()));
        }
        p.to_backend.clear();
        out
    }

    fn from_client(w: &mut World, p: &mut Pair, seq: u8, payload: &[u8]) {
        let mut pkt = Vec::new();
        put_packet(&mut pkt, seq, payload);
        w.with(|ctx| {
            p.up.attach(ctx.bufs);
            let before = p.up.len();
            assert_eq!(p.up.push(&pkt), pkt.len());
            p.client_bytes_arrived(before, pkt.len(), ctx);
            p.handle(Event::ClientData, ctx);
        });
    }

    fn from_backend(w: &mut World, p: &mut Pair, seq: u8, payload: &[u8]) {
        let mut pkt = Vec::new();
        put_packet(&mut pkt, seq, payload);
        w.with(|ctx| {
            p.down.attach(ctx.bufs);
            let before = p.down.len();
            assert_eq!(p.down.push(&pkt), pkt.len());
            p.backend_bytes_arrived(before, pkt.len(), ctx);
            p.handle(Event::BackendData, ctx);
        });
    }

    fn event(w: &mut World, p: &mut Pair, ev: Event) {
        w.with(|ctx| p.handle(ev, ctx));
    }

    fn client_token(password: &[u8], salt: &[u8]) -> Vec<u8> {
        if password.is_empty() {
            return Vec::new();
        }
        let s1 = scramble::stage1_of(password);
        scramble::token_for(salt, &s1).to_vec()
    }

    fn response(user: &[u8], token: &[u8], db: Option<&[u8]>, plugin: &[u8]) -> Vec<u8> {
        let flags = caps::PROTOCOL_41
            | caps::SECURE_CONNECTION
            | caps::PLUGIN_AUTH
            | caps::PLUGIN_AUTH_LENENC_DATA
            | caps::DEPRECATE_EOF
            | caps::MULTI_RESULTS
            | caps::CONNECT_ATTRS
            | caps::COMPRESS // not offered: must not reach the backend
            | if db.is_some() { caps::CONNECT_WITH_DB } else { 0 };
        let mut attrs = Vec::new();
        put_lenenc_bytes(&mut attrs, b"_client_name");
        put_lenenc_bytes(&mut attrs, b"test");
        handshake::encode_response(&handshake::ResponseFields {
            capabilities: flags,
            ext: 0,
            max_packet: 16 << 20,
            charset: 33,
            user,
            auth: token,
            database: db,
            plugin,
            attrs: Some(&attrs),
        })
    }

    /// A greeted pair that has sent `user`'s right password.
    fn sent_login(w: &mut World, user: &[u8]) -> Pair {
        let (mut p, salt) = greeted(w);
        from_client(w, &mut p, 1, &response(user, &client_token(PW, &salt), None, NATIVE));
        p
    }

    /// The client logs in with a caching_sha2_password token, as MySQL 8
    /// clients start.
    fn start_with_sha2(w: &mut World, p: &mut Pair) {
        from_client(w, p, 1, &response(b"app_rw", &[1; 32], None, b"caching_sha2_password"));
    }

    /// A new pair; returns it with the salt from its greeting.
    fn greeted(w: &mut World) -> (Pair, Vec<u8>) {
        let mut p = w.with(|ctx| Pair::new(7, peer(), local(), false, ctx));
        let pkts = client_packets(&mut p);
        assert_eq!(pkts.len(), 1);
        let (seq, greeting) = &pkts[0];
        assert_eq!(*seq, 0);
        let g = handshake::parse_greeting(greeting).unwrap();
        (p, g.salt)
    }

    fn backend_greeting(salt: &[u8; 20]) -> Vec<u8> {
        handshake::build_greeting(
            "5.5.5-10.11.6-MariaDB",
            99,
            salt,
            caps::RELAYABLE & !caps::LONG_PASSWORD,
            0,
            45,
        )
    }

    /// A pair logged in as `user` and waiting for the backend's auth reply.
    fn awaiting_backend_auth(w: &mut World, user: &[u8]) -> Pair {
        let mut p = sent_login(w, user);
        assert_eq!(p.state_name(), "CONNECTING");
        event(w, &mut p, Event::BackendConnected);
        from_backend(w, &mut p, 0, &backend_greeting(&[b'z'; 20]));
        assert_eq!(p.state_name(), "AWAITING-BACKEND-AUTH");
        backend_packets(&mut p);
        p
    }

    fn relaying(w: &mut World) -> Pair {
        let mut p = awaiting_backend_auth(w, b"app_rw");
        from_backend(w, &mut p, 2, &[0, 0, 0, 2, 0, 0, 0]);
        assert!(p.is_relaying());
        client_packets(&mut p);
        p
    }

    fn err_code(payload: &[u8]) -> (u16, String) {
        parse_err(payload).expect("an ERR packet")
    }

    // ----- Tests for the AwaitingClientResponse state -----

    /// Every server greets as MariaDB 10.11 does: CLIENT_MYSQL clear and
    /// extended capabilities 0x1d, and one of them also 0x20.
    fn mariadb_servers(w: &mut World) {
        for s in 0..w.pools.servers().len() {
            let info = BackendInfo {
                version: "10.11.6-MariaDB".into(),
                capabilities: caps::RELAYABLE & !caps::LONG_PASSWORD,
                ext: if s == 0 { 0x3d } else { 0x1d },
                charset: 45,
            };
            w.pools.learned(s, info);
        }
    }

    #[test]
    fn mariadb_extended_capabilities_are_offered_and_passed_on_as_chosen() {
        let mut w = World::new();
        mariadb_servers(&mut w);
        let mut p = w.with(|ctx| Pair::new(7, peer(), local(), false, ctx));
        let g = handshake::parse_greeting(&client_packets(&mut p)[0].1).unwrap();
        assert_eq!(g.capabilities & caps::LONG_PASSWORD, 0, "CLIENT_MYSQL clear");
        assert_eq!(g.ext, ext::OFFERED, "what every server offers and myroute relays");
        // A client choosing PROGRESS and EXTENDED_METADATA, and BULK_UNIT_RESULTS
        // which was not offered.
        let mut hello = response(b"app_rw", &client_token(PW, &g.salt), None, NATIVE);
        hello[0] &= !1;
        hello[28..32].copy_from_slice(
            &(ext::PROGRESS | ext::EXTENDED_METADATA | ext::BULK_UNIT_RESULTS).to_le_bytes(),
        );
        from_client(&mut w, &mut p, 1, &hello);
        event(&mut w, &mut p, Event::BackendConnected);
        let flags = caps::RELAYABLE & !caps::LONG_PASSWORD;
        let greeting =
            handshake::build_greeting("10.11.6-MariaDB", 9, &[b'z'; 20], flags, 0x1d, 45);
        from_backend(&mut w, &mut p, 0, &greeting);
        let sent = backend_packets(&mut p);
        let handshake::ClientHello::Response(r) =
            handshake::parse_client_hello(&sent[0].1).unwrap()
        else {
            panic!("a login")
        };
        assert_eq!(r.capabilities & caps::LONG_PASSWORD, 0);
        assert_eq!(r.ext, ext::PROGRESS | ext::EXTENDED_METADATA, "the client's choice, narrowed");
        from_backend(&mut w, &mut p, 2, &[0, 0, 0, 2, 0, 0, 0]);
        assert!(p.is_relaying());
        assert!(p.tracker.idle());
    }

    #[test]
    fn a_mysql_server_among_them_keeps_client_mysql_in_the_greeting() {
        let mut w = World::new();
        mariadb_servers(&mut w);
        let info = BackendInfo {
            version: "8.0.36".into(),
            capabilities: caps::RELAYABLE,
            ext: 0,
            charset: 255,
        };
        w.pools.learned(2, info);
        let mut p = w.with(|ctx| Pair::new(7, peer(), local(), false, ctx));
        let g = handshake::parse_greeting(&client_packets(&mut p)[0].1).unwrap();
        assert_ne!(g.capabilities & caps::LONG_PASSWORD, 0);
        assert_eq!(g.ext, 0);
    }

    #[test]
    fn a_server_lacking_the_chosen_extended_capabilities_is_skipped() {
        let mut w = World::new();
        mariadb_servers(&mut w);
        let mut p = w.with(|ctx| Pair::new(7, peer(), local(), false, ctx));
        let g = handshake::parse_greeting(&client_packets(&mut p)[0].1).unwrap();
        let mut hello = response(b"app_ro", &client_token(PW, &g.salt), None, NATIVE);
        hello[0] &= !1;
        hello[28..32].copy_from_slice(&ext::CACHE_METADATA.to_le_bytes());
        from_client(&mut w, &mut p, 1, &hello);
        let (_, first) = p.backend().unwrap();
        event(&mut w, &mut p, Event::BackendConnected);
        // This replica offers none of them now (an older MariaDB).
        from_backend(&mut w, &mut p, 0, &backend_greeting(&[b'z'; 20]));
        let (_, next) = p.backend().unwrap();
        assert_ne!(next, first, "the other replica is tried");
        assert_eq!(p.state_name(), "CONNECTING");
    }

    #[test]
    fn greeting_offers_native_auth_without_ssl_or_compression() {
        let mut w = World::new();
        let mut p = w.with(|ctx| Pair::new(7, peer(), local(), false, ctx));
        let (_, payload) = client_packets(&mut p).remove(0);
        let g = handshake::parse_greeting(&payload).unwrap();
        assert_eq!(g.version, "10.11.6-MariaDB");
        assert_eq!(g.connection_id, 7);
        assert_eq!(g.auth_plugin, NATIVE);
        assert_eq!(g.salt.len(), 20);
        assert_eq!(g.capabilities & (caps::SSL | caps::COMPRESS), 0);
        assert_ne!(g.capabilities & caps::LONG_PASSWORD, 0, "CLIENT_MYSQL set");
        assert_eq!(p.deadline(), Some(w.now + Duration::from_secs(10)));
    }

    #[test]
    fn right_password_starts_the_backend_login_with_a_recomputed_token() {
        let mut w = World::new();
        let (mut p, salt) = greeted(&mut w);
        from_client(
            &mut w,
            &mut p,
            1,
            &response(b"app_rw", &client_token(PW, &salt), Some(b"app"), NATIVE),
        );
        assert_eq!(p.backend(), Some((1, 0)), "primary's only server");
        assert!(client_packets(&mut p).is_empty(), "no OK before the backend accepts");
        event(&mut w, &mut p, Event::BackendConnected);
        let bsalt = [b'q'; 20];
        from_backend(&mut w, &mut p, 0, &backend_greeting(&bsalt));
        let pkts = backend_packets(&mut p);
        assert_eq!(pkts.len(), 1);
        assert_eq!(pkts[0].0, 1);
        let ClientHello::Response(r) = handshake::parse_client_hello(&pkts[0].1).unwrap() else {
            panic!("not a HandshakeResponse41")
        };
        assert_eq!(r.user, b"app_rw");
        assert_eq!(r.auth, client_token(PW, &bsalt));
        assert_eq!(r.database.as_deref(), Some(&b"app"[..]));
        assert_eq!(r.plugin, NATIVE);
        assert_eq!(r.charset, 33);
        assert_eq!(r.capabilities & caps::COMPRESS, 0);
        assert_ne!(r.capabilities & caps::DEPRECATE_EOF, 0);
        assert!(r.attrs.is_some());
    }

    #[test]
    fn wrong_password_and_unknown_user_get_the_same_err_and_no_backend() {
        let mut w = World::new();
        let mut msgs = Vec::new();
        for user in [&b"app_rw"[..], b"nobody"] {
            let (mut p, salt) = greeted(&mut w);
            from_client(
                &mut w,
                &mut p,
                1,
                &response(user, &client_token(b"wrong", &salt), None, NATIVE),
            );
            assert_eq!(p.backend(), None);
            let pkts = client_packets(&mut p);
            assert_eq!(pkts[0].0, 2, "ERR follows the response's sequence id");
            let (code, msg) = err_code(&pkts[0].1);
            assert_eq!(code, 1045);
            assert_eq!(&pkts[0].1[3..9], b"#28000");
            msgs.push(msg.replace(&*String::from_utf8_lossy(user), "U"));
            assert_eq!(p.finished(), Some(&EndReason::AuthFailed));
        }
        assert_eq!(msgs[0], msgs[1]);
        assert_eq!(msgs[0], "Access denied for user 'U'@'127.0.0.1' (using password: YES)");
    }

    #[test]
    fn empty_passwords_follow_mysql() {
        let mut w = World::new();
        // No password given for an account that has one.
        let (mut p, _) = greeted(&mut w);
        from_client(&mut w, &mut p, 1, &response(b"app_rw", b"", None, NATIVE));
        let (code, msg) = err_code(&client_packets(&mut p)[0].1);
        assert_eq!(code, 1045);
        assert!(msg.ends_with("(using password: NO)"));
        // An account without password: empty token in, empty token out.
        let (mut p, _) = greeted(&mut w);
        from_client(&mut w, &mut p, 1, &response(b"nopw", b"", None, NATIVE));
        event(&mut w, &mut p, Event::BackendConnected);
        from_backend(&mut w, &mut p, 0, &backend_greeting(&[b'z'; 20]));
        let ClientHello::Response(r) =
            handshake::parse_client_hello(&backend_packets(&mut p)[0].1).unwrap()
        else {
            panic!()
        };
        assert!(r.auth.is_empty());
        // ... and refuses a password.
        let (mut p, salt) = greeted(&mut w);
        from_client(
            &mut w,
            &mut p,
            1,
            &response(b"nopw", &client_token(b"x", &salt), None, NATIVE),
        );
        assert_eq!(err_code(&client_packets(&mut p)[0].1).0, 1045);
    }

    #[test]
    fn user_names_match_exactly() {
        let mut w = World::new();
        for user in [&b"APP_RW"[..], b"app_rw ", b"app_r"] {
            let mut p = sent_login(&mut w, user);
            assert_eq!(err_code(&client_packets(&mut p)[0].1).0, 1045, "{user:?}");
        }
    }

    #[test]
    fn ssl_request_pre41_bad_sequence_and_garbage_get_err_and_close() {
        let mut w = World::new();
        let mut ssl = (caps::PROTOCOL_41 | caps::SSL).to_le_bytes().to_vec();
        ssl.extend_from_slice(&[0; 28]);
        let cases: [(u8, Vec<u8>, u16, u8); 4] = [
            (1, ssl, 1043, 2),
            (1, vec![0x85, 0x04, 0, 0, 0, b'u', 0], 1043, 2),
            (5, response(b"app_rw", b"", None, NATIVE), 1156, 6),
            (1, vec![0xFF; 40], 1043, 2),
        ];
        for (seq, payload, code, err_seq) in cases {
            let (mut p, _) = greeted(&mut w);
            from_client(&mut w, &mut p, seq, &payload);
            let pkts = client_packets(&mut p);
            assert_eq!(err_code(&pkts[0].1).0, code);
            assert_eq!(pkts[0].0, err_seq);
            assert!(p.finished().is_some());
            assert_eq!(p.backend(), None);
        }
    }

    #[test]
    fn a_response_larger_than_the_ring_is_refused() {
        let mut w = World::new();
        let (mut p, _) = greeted(&mut w);
        w.with(|ctx| {
            p.up.attach(ctx.bufs);
            assert_eq!(p.up.push(&[0xFF, 0xFF, 0x00, 1]), 4);
            p.handle(Event::ClientData, ctx);
        });
        assert_eq!(err_code(&client_packets(&mut p)[0].1).0, 1043);
    }

    #[test]
    fn a_login_over_64_kib_is_refused_even_with_16_mib_rings() {
        let mut w = World::new();
        w.cfg.buffer_size = crate::config::MAX_BUFFER;
        w.bufs = BufPool::new(w.cfg.buffer_size, 1);
        let (mut p, _) = greeted(&mut w);
        let big = response(&vec![b'u'; MAX_LOGIN_PAYLOAD], b"", None, NATIVE);
        from_client(&mut w, &mut p, 1, &big);
        let pkts = client_packets(&mut p);
        assert_eq!((pkts[0].0, err_code(&pkts[0].1).0), (2, 1043));
        assert_eq!(p.backend(), None);
    }

    #[test]
    fn silent_client_is_closed_at_handshake_timeout() {
        let mut w = World::new();
        let (mut p, _) = greeted(&mut w);
        w.now += Duration::from_secs(10);
        event(&mut w, &mut p, Event::Timeout);
        assert_eq!(p.finished(), Some(&EndReason::Timeout("handshake_timeout")));
    }

    // ----- Tests for the AwaitingAuthSwitch state -----

    #[test]
    fn other_plugin_gets_auth_switch_with_a_fresh_salt() {
        let mut w = World::new();
        let (mut p, salt) = greeted(&mut w);
        start_with_sha2(&mut w, &mut p);
        let pkts = client_packets(&mut p);
        assert_eq!(pkts[0].0, 2);
        let (plugin, new_salt) = handshake::parse_auth_switch(&pkts[0].1).unwrap();
        assert_eq!(plugin, NATIVE);
        assert_ne!(new_salt, salt, "a token is never checked twice against one salt");
        // A token for the greeting's salt no longer works...
        let (mut q, salt_q) = greeted(&mut w);
        start_with_sha2(&mut w, &mut q);
        from_client(&mut w, &mut q, 3, &client_token(PW, &salt_q));
        let pkts = client_packets(&mut q);
        assert_eq!(pkts.last().unwrap().0, 4);
        assert_eq!(err_code(&pkts.last().unwrap().1).0, 1045);
        // ... the one for the switch's salt does.
        from_client(&mut w, &mut p, 3, &client_token(PW, &new_salt));
        assert_eq!(p.state_name(), "CONNECTING");
        event(&mut w, &mut p, Event::BackendConnected);
        from_backend(&mut w, &mut p, 0, &backend_greeting(&[b'z'; 20]));
        from_backend(&mut w, &mut p, 2, &[0, 0, 0, 2, 0, 0, 0]);
        let pkts = client_packets(&mut p);
        assert_eq!(pkts, vec![(4, vec![0, 0, 0, 2, 0, 0, 0])], "backend OK renumbered to 4");
    }

    #[test]
    fn auth_switch_answer_of_the_wrong_length_is_access_denied() {
        let mut w = World::new();
        let (mut p, _) = greeted(&mut w);
        start_with_sha2(&mut w, &mut p);
        client_packets(&mut p);
        from_client(&mut w, &mut p, 3, &[7; 19]);
        assert_eq!(err_code(&client_packets(&mut p)[0].1).0, 1045);
    }

    // ----- Tests for the Connecting and AwaitingBackend* states -----

    #[test]
    fn failed_servers_are_skipped_until_none_is_left() {
        let mut w = World::new();
        let mut p = sent_login(&mut w, b"app_ro");
        let (a1, s1) = p.backend().unwrap();
        event(&mut w, &mut p, Event::BackendFailed("connection refused".into()));
        let (a2, s2) = p.backend().unwrap();
        assert!(a2 > a1 && s2 != s1, "the other replica");
        // The second one times out.
        w.now += Duration::from_secs(1);
        event(&mut w, &mut p, Event::Timeout);
        assert_eq!(p.backend(), None);
        let pkts = client_packets(&mut p);
        assert_eq!(pkts[0].0, 2);
        let (code, msg) = err_code(&pkts[0].1);
        assert_eq!(code, 1429);
        assert_eq!(&pkts[0].1[3..9], b"#08S01");
        assert!(
            msg.contains("'replicas'")
                && msg.contains("connection refused")
                && msg.contains("connect_timeout"),
            "{msg}"
        );
        assert_eq!(p.finished(), Some(&EndReason::PoolUnreachable));
    }

    #[test]
    fn a_backend_refusing_before_greeting_is_skipped() {
        let mut w = World::new();
        let mut p = sent_login(&mut w, b"app_ro");
        let first = p.backend().unwrap();
        event(&mut w, &mut p, Event::BackendConnected);
        let blocked = crate::protocol::errors::err_packet(0, 1129, "HY000", "Host is blocked");
        from_backend(&mut w, &mut p, 0, &blocked[4..]);
        assert_ne!(p.backend(), Some(first));
        assert_eq!(p.state_name(), "CONNECTING");
        assert!(client_packets(&mut p).is_empty());
    }

    #[test]
    fn a_backend_without_a_negotiated_capability_is_skipped() {
        let mut w = World::new();
        let mut p = sent_login(&mut w, b"app_rw");
        event(&mut w, &mut p, Event::BackendConnected);
        let g = handshake::build_greeting(
            "5.7.0",
            1,
            &[b'z'; 20],
            caps::RELAYABLE & !caps::DEPRECATE_EOF,
            0,
            8,
        );
        from_backend(&mut w, &mut p, 0, &g);
        let (code, msg) = err_code(&client_packets(&mut p)[0].1);
        assert_eq!(code, 1429);
        assert!(msg.contains("lacks capabilities 0x1000000"), "{msg}");
    }

    #[test]
    fn backend_auth_switch_to_native_is_answered_once() {
        let mut w = World::new();
        let mut p = awaiting_backend_auth(&mut w, b"app_rw");
        let new_salt = [b'n'; 20];
        from_backend(&mut w, &mut p, 2, &handshake::build_auth_switch(&new_salt));
        assert_eq!(backend_packets(&mut p), vec![(3, client_token(PW, &new_salt))]);
        from_backend(&mut w, &mut p, 4, &[0, 0, 0, 2, 0, 0, 0]);
        assert!(p.is_relaying());
        assert_eq!(client_packets(&mut p)[0].0, 2);
    }

    #[test]
    fn backend_asking_for_another_plugin_is_a_clear_error() {
        let mut w = World::new();
        let mut p = awaiting_backend_auth(&mut w, b"app_rw");
        let mut switch = vec![0xFE];
        switch.extend_from_slice(b"caching_sha2_password\0");
        switch.extend_from_slice(&[1; 20]);
        from_backend(&mut w, &mut p, 2, &switch);
        let (code, msg) = err_code(&client_packets(&mut p)[0].1);
        // The account's error, naming the plugin; the server is not at fault.
        assert_eq!(code, 1251);
        assert!(
            msg.contains("'caching_sha2_password'") && msg.contains("mysql_native_password"),
            "{msg}"
        );
        assert!(msg.contains("'app_rw'"), "{msg}");
        assert_eq!(w.pools.server(0).health.fails, 0);
        assert_eq!(p.finished(), Some(&EndReason::BackendRefused(1251)));
    }

    #[test]
    fn backend_err_is_relayed_as_it_is_then_closes() {
        let mut w = World::new();
        let mut p = awaiting_backend_auth(&mut w, b"app_rw");
        let err = crate::protocol::errors::err_packet(2, 1049, "42000", "Unknown database 'x'");
        from_backend(&mut w, &mut p, 2, &err[4..]);
        assert_eq!(client_packets(&mut p), vec![(2, err[4..].to_vec())]);
        assert_eq!(p.finished(), Some(&EndReason::BackendRefused(1049)));
        assert_eq!(p.backend(), None);
    }

    #[test]
    fn client_commands_pipelined_during_login_wait_for_it() {
        let mut w = World::new();
        let (mut p, salt) = greeted(&mut w);
        let mut bytes = Vec::new();
        put_packet(&mut bytes, 1, &response(b"app_rw", &client_token(PW, &salt), None, NATIVE));
        put_packet(&mut bytes, 0, b"\x03SELECT 1");
        w.with(|ctx| {
            p.up.attach(ctx.bufs);
            assert_eq!(p.up.push(&bytes), bytes.len());
            p.client_bytes_arrived(0, bytes.len(), ctx);
            p.handle(Event::ClientData, ctx);
        });
        assert!(!p.may_relay_up());
        assert_eq!(p.up.len(), 13);
        event(&mut w, &mut p, Event::BackendConnected);
        from_backend(&mut w, &mut p, 0, &backend_greeting(&[b'z'; 20]));
        from_backend(&mut w, &mut p, 2, &[0, 0, 0, 2, 0, 0, 0]);
        assert!(p.may_relay_up());
        assert_eq!(p.up.len(), 13);
    }

    // ----- Tests for the Relaying state -----

    /// COM_CHANGE_USER to `user` as a client sends it; its own token is
    /// one myroute ignores.
    fn change_user(user: &[u8]) -> Vec<u8> {
        let mut p = vec![com::CHANGE_USER];
        p.extend_from_slice(user);
        p.push(0);
        p.push(20);
        p.extend_from_slice(&[7; 20]);
        p.push(0); // no database
        p.extend_from_slice(&33u16.to_le_bytes());
        p.extend_from_slice(NATIVE);
        p.push(0);
        p
    }

    /// The client sends COM_CHANGE_USER to `user` and gets an
    /// AuthSwitchRequest carrying the greeting's salt; returns the token
    /// answering it with `password`.
    fn changing_user(w: &mut World, p: &mut Pair, user: &[u8], password: &[u8]) -> Vec<u8> {
        from_client(w, p, 0, &change_user(user));
        assert!(p.up.is_empty(), "the command never reaches the backend as it is");
        let pkts = client_packets(p);
        assert_eq!(pkts.len(), 1);
        assert_eq!(pkts[0].0, 1);
        let mut switch = vec![0xFE];
        switch.extend_from_slice(NATIVE);
        switch.push(0);
        switch.extend_from_slice(&p.greeting_salt);
        switch.push(0);
        assert_eq!(pkts[0].1, switch);
        client_token(password, &p.greeting_salt)
    }

    #[test]
    fn change_user_within_the_pool_is_done_on_the_same_backend_session() {
        let mut w = World::new();
        let mut p = relaying(&mut w);
        let backend = p.backend();
        let token = changing_user(&mut w, &mut p, b"nopw", b"");
        from_client(&mut w, &mut p, 2, &token);
        assert_eq!(p.state_name(), "AWAITING-BACKEND-AUTH");
        assert_eq!(p.backend(), backend, "the same backend session");
        let sent = backend_packets(&mut p);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, 0);
        assert!(sent[0].1.starts_with(b"\x11nopw\0\0"), "nopw's empty token");
        // The server asks again, as MariaDB does on a change of user.
        let mut switch = vec![0xFE];
        switch.extend_from_slice(NATIVE);
        switch.push(0);
        switch.extend_from_slice(&[b'y'; 20]);
        switch.push(0);
        from_backend(&mut w, &mut p, 1, &switch);
        assert_eq!(backend_packets(&mut p), vec![(2, Vec::new())]);
        from_backend(&mut w, &mut p, 3, &[0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(client_packets(&mut p), vec![(3, vec![0, 0, 0, 2, 0, 0, 0])]);
        assert!(p.is_relaying());
        assert_eq!(p.user.as_deref(), Some(&b"nopw"[..]));
        // Commands flow again.
        from_client(&mut w, &mut p, 0, b"\x03SELECT 1");
        assert_eq!(p.up.len(), 13);
    }

    #[test]
    fn change_user_to_another_pool_quits_the_backend_and_logs_in_there() {
        let mut w = World::new();
        let mut p = relaying(&mut w);
        let token = changing_user(&mut w, &mut p, b"app_ro", PW);
        from_client(&mut w, &mut p, 2, &token);
        assert_eq!(p.state_name(), "CONNECTING");
        let (_, server) = p.backend().unwrap();
        assert!(server == 1 || server == 2, "a replica");
        assert!(p.take_backend_quit(), "the old session gets COM_QUIT");
        event(&mut w, &mut p, Event::BackendConnected);
        from_backend(&mut w, &mut p, 0, &backend_greeting(&[b'x'; 20]));
        let sent = backend_packets(&mut p);
        let hello = handshake::parse_client_hello(&sent[0].1).unwrap();
        let handshake::ClientHello::Response(hello) = hello else { panic!("a login") };
        assert_eq!(hello.user, b"app_ro");
        assert_eq!(hello.auth, client_token(PW, &[b'x'; 20]));
        from_backend(&mut w, &mut p, 2, &[0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(client_packets(&mut p), vec![(3, vec![0, 0, 0, 2, 0, 0, 0])]);
        assert!(p.is_relaying());
    }

    #[test]
    fn a_failed_change_user_gets_1045_and_closes() {
        let mut w = World::new();
        let mut p = relaying(&mut w);
        let failed = w.stats.logins_failed;
        let token = changing_user(&mut w, &mut p, b"app_ro", b"wrong");
        from_client(&mut w, &mut p, 2, &token);
        let pkts = client_packets(&mut p);
        assert_eq!(pkts[0].0, 3);
        let (code, msg) = err_code(&pkts[0].1);
        assert_eq!(code, 1045);
        assert!(msg.contains("'app_ro'"), "{msg}");
        assert_eq!(p.state_name(), "CLOSING");
        assert_eq!(p.backend(), None, "the backend session is dropped");
        assert_eq!(w.stats.logins_failed, failed + 1);
        assert!(backend_packets(&mut p).is_empty() && p.up.is_empty());
    }

    #[test]
    fn change_user_waits_for_the_reply_before_it() {
        let mut w = World::new();
        let mut p = relaying(&mut w);
        from_client(&mut w, &mut p, 0, b"\x03SELECT 1");
        from_client(&mut w, &mut p, 0, &change_user(b"nopw"));
        assert_eq!(p.up_limit(), 13, "SELECT 1 may go, the change waits");
        w.with(|ctx| {
            p.up.consume(13);
            p.up_sent(ctx);
        });
        assert!(client_packets(&mut p).is_empty(), "nothing until SELECT 1 is answered");
        from_backend(&mut w, &mut p, 1, &[0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(client_packets(&mut p).len(), 1, "the reply");
        w.with(|ctx| p.client_bytes_sent(11, ctx));
        let pkts = client_packets(&mut p);
        assert_eq!(pkts.len(), 1, "then the switch");
        assert_eq!(pkts[0].0, 1);
        assert_eq!(pkts[0].1[0], 0xFE);
    }

    #[test]
    fn reset_connection_and_queries_pass_through() {
        let mut w = World::new();
        let mut p = relaying(&mut w);
        from_client(&mut w, &mut p, 0, b"\x1f");
        from_client(&mut w, &mut p, 0, b"\x03SELECT 1");
        assert_eq!(p.up.len(), 5 + 13);
        assert!(p.is_relaying());
    }

    /// The client's query went out and the backend's reply `reply` came
    /// back and was delivered to the client.
    fn round_trip(w: &mut World, p: &mut Pair, query: &[u8], reply: &[u8]) {
        from_client(w, p, 0, query);
        w.with(|ctx| p.up.clear(ctx.bufs)); // written to the backend
        assert!(!p.is_idle(), "a command awaits its reply");
        from_backend(w, p, 1, reply);
        client_packets(p);
    }

    #[test]
    fn stopping_an_idle_pair_says_goodbye_to_the_backend() {
        let mut w = World::new();
        let mut p = relaying(&mut w);
        assert!(p.is_idle());
        round_trip(&mut w, &mut p, b"\x03SET @a = 1", &[0, 0, 0, 2, 0, 0, 0]);
        assert!(p.is_idle());
        event(&mut w, &mut p, Event::Stop(EndReason::Shutdown));
        assert_eq!(p.state_name(), "CLOSING");
        let mut quit = [0u8; 5];
        assert_eq!(p.up.peek(0, &mut quit), 5);
        assert_eq!(quit, [1, 0, 0, 0, com::QUIT], "com::QUIT for the backend");
        assert_eq!(p.finished(), None);
        w.with(|ctx| p.up.clear(ctx.bufs));
        assert_eq!(p.finished(), Some(&EndReason::Shutdown));
    }

    #[test]
    fn a_pair_mid_query_or_in_a_transaction_is_not_idle() {
        let mut w = World::new();
        let mut p = relaying(&mut w);
        from_client(&mut w, &mut p, 0, b"\x03SELECT SLEEP(10)");
        w.with(|ctx| p.up.clear(ctx.bufs));
        assert!(!p.is_idle());
        // BEGIN's OK carries SERVER_STATUS_IN_TRANS.
        let mut p = relaying(&mut w);
        round_trip(&mut w, &mut p, b"\x03BEGIN", &[0, 0, 0, 3, 0, 0, 0]);
        assert!(!p.is_idle(), "inside a transaction");
        round_trip(&mut w, &mut p, b"\x03COMMIT", &[0, 0, 0, 2, 0, 0, 0]);
        assert!(p.is_idle());
        // Stopping a busy pair cuts it at once (KILL, shutdown_timeout).
        from_client(&mut w, &mut p, 0, b"\x03SELECT 1");
        event(&mut w, &mut p, Event::Stop(EndReason::Killed));
        assert_eq!(p.finished(), Some(&EndReason::Killed));
    }

    #[test]
    fn a_client_not_logged_in_is_told_why_it_is_stopped() {
        for (reason, code) in [(EndReason::Shutdown, 1053), (EndReason::Killed, 1927)] {
            let mut w = World::new();
            let (mut p, _) = greeted(&mut w);
            assert!(p.awaits_client_login());
            event(&mut w, &mut p, Event::Stop(reason.clone()));
            let pkts = client_packets(&mut p);
            assert_eq!(pkts[0].0, 2);
            assert_eq!(err_code(&pkts[0].1).0, code);
            assert_eq!(p.finished(), Some(&reason));
        }
    }

    #[test]
    fn local_infile_content_is_not_mistaken_for_commands() {
        let mut w = World::new();
        let mut p = relaying(&mut w);
        from_client(&mut w, &mut p, 0, b"\x03LOAD DATA LOCAL INFILE 'f' INTO TABLE t");
        w.with(|ctx| p.up.clear(ctx.bufs));
        from_backend(&mut w, &mut p, 1, b"\xFBf");
        // 256 packets on, a file packet has sequence id 0 and starts with
        // com::CHANGE_USER's byte: content, relayed as it is.
        from_client(&mut w, &mut p, 0, b"\x11 not a command");
        assert!(p.is_relaying());
        from_client(&mut w, &mut p, 1, b"");
        w.with(|ctx| p.up.clear(ctx.bufs));
        from_backend(&mut w, &mut p, 3, &[0, 1, 0, 2, 0, 0, 0]);
        client_packets(&mut p);
        // After the file, commands are commands again.
        from_client(&mut w, &mut p, 0, &change_user(b"nopw"));
        assert_eq!(p.state_name(), "AWAITING-AUTH-SWITCH");
    }

    /// A greeted pair from `peer()`, trusted or not, that received `bytes`
    /// first.
    fn sent_first(w: &mut World, trusted: bool, bytes: &[u8]) -> (Pair, Vec<u8>) {
        let mut p = w.with(|ctx| Pair::new(7, peer(), local(), trusted, ctx));
        let salt = handshake::parse_greeting(&client_packets(&mut p)[0].1).unwrap().salt;
        w.with(|ctx| {
            p.up.attach(ctx.bufs);
            assert_eq!(p.up.push(bytes), bytes.len());
            p.client_bytes_arrived(0, bytes.len(), ctx);
            p.handle(Event::ClientData, ctx);
        });
        (p, salt)
    }

    #[test]
    fn a_trusted_peer_may_name_the_client_with_a_proxy_header() {
        let mut w = World::new();
        let header = b"PROXY TCP4 10.1.2.3 10.0.0.1 5555 3306\r\n";
        // The header arrives in two pieces: the pair waits for the rest.
        let (mut p, salt) = sent_first(&mut w, true, &header[..9]);
        assert_eq!(p.state_name(), "AWAITING-CLIENT-RESPONSE");
        assert_eq!(p.peer, peer());
        w.with(|ctx| {
            assert_eq!(p.up.push(&header[9..]), header.len() - 9);
            p.client_bytes_arrived(9, header.len() - 9, ctx);
            p.handle(Event::ClientData, ctx);
        });
        assert_eq!(p.peer, "10.1.2.3:5555".parse().unwrap());
        from_client(
            &mut w,
            &mut p,
            1,
            &response(b"app_rw", &client_token(PW, &salt), None, NATIVE),
        );
        assert_eq!(p.state_name(), "CONNECTING");
        // And it is passed on as the client's address, with the original
        // destination.
        w.proxy_protocol_v1();
        event(&mut w, &mut p, Event::BackendConnected);
        assert!(p.to_backend.starts_with(b"PROXY TCP4 10.1.2.3 10.0.0.1 5555 3306\r\n"));
    }

    #[test]
    fn proxy_headers_from_untrusted_or_malformed_are_refused() {
        for (trusted, bytes) in [
            (false, &b"PROXY TCP4 10.1.2.3 10.0.0.1 5555 3306\r\n"[..]),
            (false, &b"\r\n\r\n\0\r\nQUIT\n\x21\x11\0\x0c"[..]),
            (true, &b"PROXY TCP4 10.1.2.300 10.0.0.1 5555 3306\r\n"[..]),
        ] {
            let mut w = World::new();
            let (mut p, _) = sent_first(&mut w, trusted, bytes);
            let pkts = client_packets(&mut p);
            assert_eq!(pkts.len(), 1, "{bytes:?}");
            assert_eq!(pkts[0].0, 2);
            assert_eq!(err_code(&pkts[0].1).0, 1043);
            assert_eq!(p.peer, peer());
            assert_eq!(p.state_name(), "CLOSING");
        }
    }

    #[test]
    fn a_pool_with_proxy_protocol_opens_with_the_clients_address() {
        let mut w = World::new();
        w.proxy_protocol_v1();
        let mut p = sent_login(&mut w, b"app_rw");
        event(&mut w, &mut p, Event::BackendConnected);
        let want = b"PROXY TCP4 127.0.0.1 127.0.0.1 40000 3306\r\n";
        assert_eq!(&p.to_backend[..], &want[..]);
        // The login follows the header.
        from_backend(&mut w, &mut p, 0, &backend_greeting(&[b'z'; 20]));
        assert!(p.to_backend.starts_with(want));
        assert!(p.to_backend.len() > want.len());
    }

    #[test]
    fn client_close_flushes_toward_the_backend_then_ends() {
        let mut w = World::new();
        let mut p = relaying(&mut w);
        from_client(&mut w, &mut p, 0, b"\x01");
        event(&mut w, &mut p, Event::ClientClosed(None));
        assert_eq!(p.finished(), None, "com::QUIT still to deliver");
        w.with(|ctx| p.up.clear(ctx.bufs));
        assert_eq!(p.finished(), Some(&EndReason::ClientClosed));
    }

    #[test]
    fn idle_timeout_closes_relaying_and_stalled_closing_pairs() {
        let mut w = World::new();
        w.cfg.idle_timeout = Some(Duration::from_secs(5));
        let mut p = relaying(&mut w);
        // No deadline moved by the login: relaying starts the idle clock.
        w.now += Duration::from_secs(3);
        from_client(&mut w, &mut p, 0, b"\x03SELECT 1");
        assert_eq!(p.deadline(), Some(w.now + Duration::from_secs(5)));
        w.now += Duration::from_secs(4);
        event(&mut w, &mut p, Event::Timeout);
        assert!(p.is_relaying(), "activity 4s ago: not idle yet");
        w.now += Duration::from_secs(1);
        event(&mut w, &mut p, Event::Timeout);
        assert_eq!(p.finished(), Some(&EndReason::Timeout("idle_timeout")));
        // A pair flushing toward a client that never reads ends too.
        let mut q = relaying(&mut w);
        from_backend(&mut w, &mut q, 1, b"\x00\x00\x00\x02\x00\x00\x00");
        event(&mut w, &mut q, Event::BackendFailed("closed".into()));
        assert_eq!(q.finished(), None);
        w.now += Duration::from_secs(5);
        event(&mut w, &mut q, Event::Timeout);
        assert_eq!(q.finished(), Some(&EndReason::BackendClosed));
    }

    #[test]
    fn backend_closing_after_com_quit_is_the_clients_doing() {
        let mut w = World::new();
        let mut p = relaying(&mut w);
        from_client(&mut w, &mut p, 0, b"\x01");
        w.with(|ctx| p.up.clear(ctx.bufs));
        event(&mut w, &mut p, Event::BackendFailed("closed".into()));
        assert_eq!(p.finished(), Some(&EndReason::ClientClosed));
    }

    #[test]
    fn backend_close_flushes_toward_the_client_then_ends() {
        let mut w = World::new();
        let mut p = relaying(&mut w);
        from_backend(&mut w, &mut p, 1, b"\x00\x00\x00\x02\x00\x00\x00");
        event(&mut w, &mut p, Event::BackendFailed("closed".into()));
        assert_eq!(p.backend(), None);
        assert_eq!(p.finished(), None);
        client_packets(&mut p);
        assert_eq!(p.finished(), Some(&EndReason::BackendClosed));
    }

    // ----- Tests for TLS toward the client -----

    #[cfg(feature = "tls")]
    #[test]
    fn an_ssl_request_starts_tls_and_the_login_goes_on_inside_it() {
        let mut w = World::new();
        w.settings("tls = optional\n");
        let (mut p, salt) = greeted(&mut w);
        let ssl = handshake::build_ssl_request(
            caps::PROTOCOL_41 | caps::SECURE_CONNECTION,
            0,
            1 << 24,
            45,
        );
        from_client(&mut w, &mut p, 1, &ssl);
        assert_eq!(p.state_name(), "AWAITING-TLS-HANDSHAKE");
        assert_eq!(p.take_tls_request(), Some(Side::Client));
        assert_eq!(p.take_tls_request(), None, "asked once");
        let info = TlsInfo { version: "TLSv1.3", cipher: "X".into(), cert_sha256: Some([7; 32]) };
        event(&mut w, &mut p, Event::TlsReady(Side::Client, info));
        // Inside TLS: the response is sequence 2, the switch request 3
        // reusing the greeting's salt (MariaDB's TLS proof hashes it).
        from_client(
            &mut w,
            &mut p,
            2,
            &response(b"app_rw", &[1; 32], None, b"caching_sha2_password"),
        );
        let pkts = client_packets(&mut p);
        assert_eq!(pkts[0].0, 3);
        let (_, switch_salt) = handshake::parse_auth_switch(&pkts[0].1).unwrap();
        assert_eq!(switch_salt, salt);
        from_client(&mut w, &mut p, 4, &client_token(PW, &salt));
        assert_eq!(p.state_name(), "CONNECTING");
        event(&mut w, &mut p, Event::BackendConnected);
        from_backend(&mut w, &mut p, 0, &backend_greeting(&[b'z'; 20]));
        backend_packets(&mut p);
        from_backend(&mut w, &mut p, 2, &[0, 0, 0, 2, 0, 0, 0]);
        // The OK is the client's sequence 5 and carries the proof.
        let ok = client_packets(&mut p);
        assert_eq!(ok[0].0, 5);
        let stage2 = scramble::parse_hash("*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19").unwrap();
        let salt: [u8; 20] = salt.try_into().unwrap();
        let proof = scramble::tls_proof(&stage2, &salt, &[7; 32]);
        let mut want = vec![0, 0, 0, 2, 0, 0, 0, proof.len() as u8];
        want.extend_from_slice(&proof);
        assert_eq!(ok[0].1, want);
        assert_eq!(w.stats.logins_tls, 1);
    }

    #[cfg(feature = "tls")]
    #[test]
    fn tls_required_refuses_a_plain_login_before_any_backend() {
        let mut w = World::new();
        w.settings("tls = required\n");
        let mut p = sent_login(&mut w, b"app_rw");
        let pkts = client_packets(&mut p);
        assert_eq!(pkts[0].0, 2);
        assert_eq!(err_code(&pkts[0].1).0, 3159);
        assert_eq!(p.backend(), None);
        assert_eq!(p.state_name(), "CLOSING");
        assert_eq!(w.stats.logins_insecure, 1);
    }

    #[test]
    fn a_client_speaking_tls_first_is_closed() {
        let mut w = World::new();
        let (mut p, _) = greeted(&mut w);
        w.with(|ctx| {
            p.up.attach(ctx.bufs);
            let hello = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01];
            assert_eq!(p.up.push(&hello), 6);
            p.client_bytes_arrived(0, 6, ctx);
            p.handle(Event::ClientData, ctx);
        });
        assert_eq!(p.finished(), Some(&EndReason::Tls("no SSLRequest")));
    }

    // ----- Tests for KILL while relaying -----

    fn kill_query(id: u32) -> Vec<u8> {
        format!("\x03KILL QUERY {id}").into_bytes()
    }

    #[test]
    fn a_kill_naming_a_myroute_id_is_held_and_handed_to_the_loop() {
        let mut w = World::new();
        let mut p = relaying(&mut w);
        from_client(&mut w, &mut p, 0, &kill_query(kill::FIRST_ID + 5));
        assert_eq!(
            p.wants_kill(),
            Some(Kill { id: u64::from(kill::FIRST_ID) + 5, query: true, rest: 0 })
        );
        assert!(p.up.is_empty(), "taken out of the stream");
        assert_eq!(p.up_limit(), 0);
        // Bytes behind it wait.
        from_client(&mut w, &mut p, 0, b"\x03SELECT 1");
        assert_eq!(p.up_limit(), 0);
        // Through its own backend session, by the backend's id.
        event(&mut w, &mut p, Event::Kill(KillVerdict::Through(42)));
        assert_eq!(backend_packets(&mut p), vec![(0, b"\x03KILL QUERY 42".to_vec())]);
        assert_eq!(p.up_limit(), p.up.len(), "the rest flows again");
        // Other KILLs, and short queries, go through untouched.
        let mut p = relaying(&mut w);
        from_client(&mut w, &mut p, 0, &kill_query(77));
        assert_eq!(p.wants_kill(), None);
        assert_eq!(p.up_limit(), p.up.len());
    }

    #[test]
    fn a_kill_leading_a_multi_statement_query_keeps_its_other_statements() {
        let mut w = World::new();
        let mut p = relaying(&mut w);
        let sql = format!("\x03kill {}; select sleep(0.05)", kill::FIRST_ID + 3);
        from_client(&mut w, &mut p, 0, sql.as_bytes());
        assert!(p.wants_kill().is_some_and(|k| k.rest > 0));
        event(&mut w, &mut p, Event::Kill(KillVerdict::Through(42)));
        let sent = backend_packets(&mut p);
        assert_eq!(sent, vec![(0, b"\x03KILL CONNECTION 42; select sleep(0.05)".to_vec())]);
    }

    #[test]
    fn a_kill_answered_by_myroute_waits_for_the_replies_before_it() {
        let mut w = World::new();
        let mut p = relaying(&mut w);
        // A query still unanswered, then the KILL.
        from_client(&mut w, &mut p, 0, b"\x03SELECT 1");
        w.with(|ctx| {
            let n = p.up_limit();
            p.up.consume(n);
            p.up_sent(ctx);
        });
        from_client(&mut w, &mut p, 0, &kill_query(kill::FIRST_ID + 9));
        assert!(p.wants_kill().is_some());
        let unknown = crate::protocol::errors::err_packet(0, 1094, "HY000", "Unknown thread id")
            [4..]
            .to_vec();
        event(&mut w, &mut p, Event::Kill(KillVerdict::Answer(unknown)));
        assert!(client_packets(&mut p).is_empty(), "the SELECT's reply comes first");
        from_backend(&mut w, &mut p, 1, &[0, 0, 0, 2, 0, 0, 0]);
        let pkts = client_packets(&mut p);
        assert_eq!(pkts.len(), 1, "{pkts:?}");
        // The OK went to the client; now the KILL's answer follows.
        w.with(|ctx| p.client_bytes_sent(0, ctx));
        let pkts = client_packets(&mut p);
        assert_eq!((pkts[0].0, err_code(&pkts[0].1).0), (1, 1094));
        assert!(p.is_idle());
    }
}
