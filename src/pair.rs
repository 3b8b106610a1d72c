//! A connection pair (client + backend) and its state machine.
//!
//! ```text
//!  accept ──greeting──▶ AWAITING-CLIENT-RESPONSE ──plugin not native──▶ AWAITING-AUTH-SWITCH
//!                              │ token checked                                │ token checked
//!                              ├──────────────────────────────────────────────┘
//!                     wrong ──▶ CLOSING (ERR 1045)
//!                     right ──▶ CONNECTING ──connected──▶ AWAITING-BACKEND-HANDSHAKE
//!                                 ▲                               │ HandshakeResponse41 sent
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
//! timeouts included, without sockets or sleeping.
//!
//! Ring use: `up` holds client bytes (parsed during login, relayed to the
//! backend after); `down` holds bytes for the client (myroute's own packets
//! during login, the backend's after). During login the backend's replies
//! are read into `down` too and consumed there before any reach the client.

use crate::access::{printable, EndReason, RateLimit};
use crate::config::{Config, ProxyProtocol};
use crate::errors::{parse_err, Refusal};
use crate::handshake::{self, caps, ClientHello, Response, NATIVE};
use crate::pool::{BackendInfo, Pools};
use crate::proxy_proto;
use crate::ring::{BufPool, Ring};
use crate::scramble::{self, Secret};
use crate::stats::Stats;
use crate::track::Tracker;
use crate::wire::{self, put_packet, take_packet, Framer, HEADER_LEN};
use log::{debug, info, warn};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// COM_QUIT and COM_CHANGE_USER command bytes.
const COM_QUIT: u8 = 0x01;
const COM_CHANGE_USER: u8 = 0x11;

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
    /// Greeting sent; waiting for HandshakeResponse41.
    AwaitingClientResponse { salt: [u8; scramble::LEN] },
    /// AuthSwitchRequest sent; waiting for the client's AuthSwitchResponse.
    AwaitingAuthSwitch {
        salt: [u8; scramble::LEN],
        hello: Box<Response>,
    },
    /// Client verified; backend connect in progress.
    Connecting {
        login: Box<Login>,
        deadline: Instant,
    },
    /// Backend connected; waiting for its HandshakeV10.
    AwaitingBackendHandshake {
        login: Box<Login>,
        deadline: Instant,
    },
    /// HandshakeResponse41 sent to the backend; waiting for OK, ERR or
    /// AuthSwitchRequest with sequence id `seq`.
    AwaitingBackendAuth {
        login: Box<Login>,
        deadline: Instant,
        seq: u8,
        switched: bool,
    },
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

/// A verified client on its way to a backend.
struct Login {
    hello: Response,
    /// `SHA1(password)`, or `None` for an account without password. Zeroed
    /// when the login ends (see `Secret`'s `Drop`).
    stage1: Option<Box<Secret>>,
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
}

impl State {
    /// The state's stable name, as logs and docs spell it.
    fn name(&self) -> &'static str {
        match self {
            State::AwaitingClientResponse { .. } => "AWAITING-CLIENT-RESPONSE",
            State::AwaitingAuthSwitch { .. } => "AWAITING-AUTH-SWITCH",
            State::Connecting { .. } => "CONNECTING",
            State::AwaitingBackendHandshake { .. } => "AWAITING-BACKEND-HANDSHAKE",
            State::AwaitingBackendAuth { .. } => "AWAITING-BACKEND-AUTH",
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
    /// Follows the backend's replies to know when the session is idle.
    tracker: Tracker,
    handshake_deadline: Instant,
    /// Capabilities offered in the greeting: the client's choice is
    /// narrowed to these, as the protocol's negotiation does.
    offered: u32,
    /// Backend connection attempt number and server the pair wants now.
    attempt: u32,
    backend: Option<usize>,
    pub user: Option<Vec<u8>>,
    pub pool: Option<usize>,
    /// Server of the last backend login (kept for the access log).
    pub server: Option<usize>,
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
        let salt = (ctx.salt)();
        let info = ctx.pools.advertised();
        let version = ctx
            .cfg
            .server_version
            .clone()
            .or_else(|| info.as_ref().map(|i| i.version.clone()))
            .unwrap_or_else(|| FALLBACK_VERSION.to_string());
        let capabilities = advertised_caps(info.as_ref());
        let charset = info.as_ref().map_or(FALLBACK_CHARSET, |i| i.charset);
        let greeting = handshake::build_greeting(&version, id, &salt, capabilities, charset);
        let mut pair = Pair {
            id,
            peer,
            local,
            trusted,
            header_possible: true,
            started: ctx.now,
            state: State::AwaitingClientResponse { salt },
            up: Ring::default(),
            down: Ring::default(),
            to_backend: Vec::new(),
            up_framer: Framer::default(),
            tracker: Tracker::new(0),
            handshake_deadline: ctx.now + ctx.cfg.handshake_timeout,
            offered: capabilities,
            attempt: 0,
            backend: None,
            user: None,
            pool: None,
            server: None,
            bytes_in: 0,
            bytes_out: 0,
            quit_sent: false,
            last_active: ctx.now,
            idle_timeout: ctx.cfg.idle_timeout,
        };
        let mut pkt = Vec::with_capacity(greeting.len() + HEADER_LEN);
        put_packet(&mut pkt, 0, &greeting);
        pair.send_client(ctx.bufs, &pkt);
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
            State::AwaitingClientResponse { .. } | State::AwaitingAuthSwitch { .. } => {
                Some(self.handshake_deadline)
            }
            State::Connecting { deadline, .. }
            | State::AwaitingBackendHandshake { deadline, .. }
            | State::AwaitingBackendAuth { deadline, .. } => {
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
        matches!(
            self.state,
            State::Relaying
                | State::Closing {
                    flush: Side::Backend,
                    ..
                }
        )
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
        matches!(
            self.state,
            State::AwaitingClientResponse { .. } | State::AwaitingAuthSwitch { .. }
        )
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

    /// Counts bytes that just entered `up` (at offset `from`) and, while
    /// relaying, scans them for commands.
    pub fn client_bytes_arrived(&mut self, from: usize, n: usize, ctx: &mut Ctx) {
        self.bytes_in += n as u64;
        self.last_active = ctx.now;
        if self.is_relaying() {
            self.scan_up(from, n, ctx);
        }
    }

    /// Walks relayed client bytes with the framer and refuses
    /// COM_CHANGE_USER: the backend would check its token against a salt the
    /// client never saw, and it could switch to a user of another pool.
    fn scan_up(&mut self, from: usize, n: usize, ctx: &mut Ctx) {
        let mut offset = from;
        let end = from + n;
        while offset < end {
            let (a, b) = self.up.as_slices();
            let chunk = slice_at(a, b, offset, end - offset);
            let (walked, command) = self.up_framer.feed(chunk);
            offset += walked;
            // During a LOAD DATA LOCAL transfer, file packets are numbered
            // on and wrap to sequence id 0: they are content, not commands.
            // (A client that sends stray empty packets only turns this off.)
            let pending = self
                .tracker
                .files_requested()
                .wrapping_sub(self.up_framer.empty_packets());
            let in_file = (pending as i32) > 0;
            let command = command.filter(|_| !in_file);
            if let Some(c) = command {
                self.tracker.command(c);
            }
            if command == Some(COM_QUIT) {
                self.quit_sent = true;
            }
            if command == Some(COM_CHANGE_USER) {
                // Its header began 5 bytes before here. Answer ERR only at a
                // clean point: no earlier command still unsent, and the
                // backend's last reply complete; else just close.
                let header_at = offset as isize - 1 - HEADER_LEN as isize;
                let clean = header_at <= 0 && self.down.is_empty() && self.tracker.at_boundary();
                info!("conn={} client sent COM_CHANGE_USER; refused", self.id);
                let next = if clean {
                    self.refuse(
                        Refusal::ChangeUserUnsupported,
                        1,
                        EndReason::ChangeUser,
                        ctx,
                    )
                } else {
                    State::Closing {
                        reason: EndReason::ChangeUser,
                        flush: Side::Client,
                    }
                };
                let from = self.state.name();
                self.set_state(from, next, ctx);
                return;
            }
        }
    }

    /// Feeds bytes that just entered `down` (at offset `from`) to the framer
    /// while relaying, so the proxy knows where backend packets end.
    pub fn backend_bytes_arrived(&mut self, from: usize, n: usize, now: Instant) {
        self.last_active = now;
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
    }

    /// Counts bytes written to the client.
    pub fn client_bytes_sent(&mut self, n: usize, now: Instant) {
        self.bytes_out += n as u64;
        if n > 0 {
            self.last_active = now;
        }
    }

    /// The one place where the pair reacts to what happened. Transitions go
    /// through `set_state`.
    pub fn handle(&mut self, ev: Event, ctx: &mut Ctx) {
        let was_relaying = self.is_relaying();
        let from = self.state.name();
        let state = std::mem::replace(&mut self.state, State::Relaying);
        let next = match (state, ev) {
            // The side being flushed went away: nothing left to flush.
            (
                State::Closing {
                    reason,
                    flush: Side::Client,
                },
                Event::ClientClosed(_),
            ) => {
                self.down.clear(ctx.bufs);
                State::Closing {
                    reason,
                    flush: Side::Client,
                }
            }
            (
                State::Closing {
                    reason,
                    flush: Side::Backend,
                },
                Event::BackendFailed(_),
            ) => {
                self.up.clear(ctx.bufs);
                State::Closing {
                    reason,
                    flush: Side::Backend,
                }
            }
            // Stopped while flushing (KILL, shutdown_timeout): give up on
            // what is still buffered.
            (State::Closing { reason, flush }, Event::Stop(_)) => {
                self.drop_buffers(ctx.bufs);
                State::Closing { reason, flush }
            }
            // Anything else while closing changes nothing: the end is decided.
            (s @ State::Closing { .. }, Event::Timeout) => self.on_timeout(s, ctx),
            (s @ State::Closing { .. }, _) => s,

            // Stopped while idle: the backend gets COM_QUIT, so the server
            // sees a clean goodbye rather than an aborted connection.
            (State::Relaying, Event::Stop(reason)) if self.is_idle() => {
                self.up.attach(ctx.bufs);
                // `up` is empty (idle), so the five bytes fit.
                let _ = self.up.push(&[1, 0, 0, 0, COM_QUIT]);
                State::Closing {
                    reason,
                    flush: Side::Backend,
                }
            }
            // Not logged in yet: told why, as a server would tell it.
            (State::AwaitingClientResponse { .. }, Event::Stop(reason)) => {
                self.refuse(stop_refusal(&reason), 2, reason, ctx)
            }
            (State::AwaitingAuthSwitch { .. }, Event::Stop(reason)) => {
                self.refuse(stop_refusal(&reason), 4, reason, ctx)
            }
            // Stopped mid-query or mid-backend-login: cut both sides now.
            (_, Event::Stop(reason)) => {
                self.down.clear(ctx.bufs);
                State::Closing {
                    reason,
                    flush: Side::Client,
                }
            }

            // The client left: nothing to finish on its behalf.
            (State::Relaying, Event::ClientClosed(None)) => State::Closing {
                reason: EndReason::ClientClosed,
                flush: Side::Backend,
            },
            (_, Event::ClientClosed(err)) => {
                self.down.clear(ctx.bufs);
                State::Closing {
                    reason: err.map_or(EndReason::ClientClosed, EndReason::IoError),
                    flush: Side::Client,
                }
            }

            // HandshakeResponse41 (or SSLRequest / pre-4.1 response).
            (State::AwaitingClientResponse { salt }, Event::ClientData) => {
                self.on_client_response(salt, ctx)
            }
            // AuthSwitchResponse: the token for the salt of our switch request.
            (State::AwaitingAuthSwitch { salt, hello }, Event::ClientData) => {
                self.on_auth_switch_response(salt, hello, ctx)
            }
            // Pipelined client bytes during backend login wait in `up`.
            (
                s @ (State::Connecting { .. }
                | State::AwaitingBackendHandshake { .. }
                | State::AwaitingBackendAuth { .. }),
                Event::ClientData,
            ) => s,
            // Relayed bytes were already scanned by `client_bytes_arrived`.
            (State::Relaying, Event::ClientData) => State::Relaying,

            // TCP connect done: the backend speaks first, after the PROXY
            // header when the pool sends one.
            (State::Connecting { login, deadline }, Event::BackendConnected) => {
                self.queue_proxy_header(ctx);
                State::AwaitingBackendHandshake { login, deadline }
            }
            (State::AwaitingBackendHandshake { login, deadline }, Event::BackendData) => {
                self.on_backend_greeting(login, deadline, ctx)
            }
            (
                State::AwaitingBackendAuth {
                    login,
                    deadline,
                    seq,
                    switched,
                },
                Event::BackendData,
            ) => self.on_backend_auth_reply(login, deadline, seq, switched, ctx),
            (State::Relaying, Event::BackendData) => State::Relaying,

            // A backend attempt failed before login completed: next server.
            (
                State::Connecting { login, .. }
                | State::AwaitingBackendHandshake { login, .. }
                | State::AwaitingBackendAuth { login, .. },
                Event::BackendFailed(why),
            ) => self.backend_attempt_failed(login, why, true, ctx),
            (
                State::Connecting { login, .. }
                | State::AwaitingBackendHandshake { login, .. }
                | State::AwaitingBackendAuth { login, .. },
                Event::NoBackendSocket(why),
            ) => self.backend_attempt_failed(login, why, false, ctx),
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

            // Anything else is a protocol error: a backend speaking when it
            // should not, or an event for a phase that is over.
            (s, ev) => {
                debug!("conn={} unexpected {ev:?} in {s}", self.id);
                State::Closing {
                    reason: EndReason::ProtocolError("unexpected event"),
                    flush: Side::Client,
                }
            }
        };
        self.set_state(from, next, ctx);
        if !was_relaying && self.is_relaying() && !self.up.is_empty() {
            // Commands a client pipelined behind its login are relayed now:
            // scan them like any other.
            let n = self.up.len();
            self.scan_up(0, n, ctx);
        }
    }

    /// The only assignment to `self.state`.
    fn set_state(&mut self, from: &'static str, next: State, ctx: &mut Ctx) {
        // Which backend socket the new state needs.
        self.backend = match &next {
            State::Connecting { login, .. }
            | State::AwaitingBackendHandshake { login, .. }
            | State::AwaitingBackendAuth { login, .. } => Some(login.server),
            State::Relaying => self.backend,
            State::Closing {
                flush: Side::Backend,
                ..
            } => self.backend,
            _ => None,
        };
        if let State::Closing { .. } = next {
            // Whatever the client sent after its end is dropped.
            if !self.may_flush_up(&next) {
                self.up.clear(ctx.bufs);
            }
            self.to_backend.clear();
        }
        if from != next.name() {
            log::trace!("conn={} state={from}=>{next}", self.id);
        }
        self.state = next;
    }

    fn may_flush_up(&self, next: &State) -> bool {
        matches!(
            next,
            State::Closing {
                flush: Side::Backend,
                ..
            }
        )
    }

    /// Drops every byte still buffered either way, so a closing pair ends.
    fn drop_buffers(&mut self, bufs: &mut BufPool) {
        self.down.clear(bufs);
        self.up.clear(bufs);
        self.to_backend.clear();
    }

    /// Queues bytes for the client (myroute's own packets).
    fn send_client(&mut self, bufs: &mut BufPool, pkt: &[u8]) {
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
        State::Closing {
            reason,
            flush: Side::Client,
        }
    }

    /// Starts a backend connection with a PROXY protocol header carrying
    /// the client's address, when its pool asks for one.
    fn queue_proxy_header(&mut self, ctx: &Ctx) {
        let version = self.pool.map(|p| ctx.pools.pools[p].proxy_protocol);
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
    /// `Err(next state)` to wait for more bytes or to refuse.
    fn take_proxy_header(&mut self, salt: [u8; scramble::LEN], ctx: &mut Ctx) -> Result<(), State> {
        let mut head = [0u8; proxy_proto::V2_MAX];
        let n = self.up.peek(0, &mut head);
        let wait = || State::AwaitingClientResponse { salt };
        match proxy_proto::looks_like_header(&head[..n]) {
            None => return Err(wait()),
            Some(false) => {
                self.header_possible = false;
                return Ok(());
            }
            Some(true) if !self.trusted => {
                warn!(
                    "conn={} client={} sent a PROXY protocol header but is not in proxy_protocol_from; refused",
                    self.id,
                    self.peer.ip()
                );
                let why = "PROXY protocol header from an address not in proxy_protocol_from";
                return Err(self.refuse(
                    Refusal::BadHandshake(why.into()),
                    2,
                    EndReason::ProtocolError("untrusted PROXY header"),
                    ctx,
                ));
            }
            Some(true) => {}
        }
        match proxy_proto::parse(&head[..n]) {
            Err(proxy_proto::Error::Incomplete) if n < head.len() => Err(wait()),
            Err(_) => Err(self.refuse(
                Refusal::BadHandshake("malformed PROXY protocol header".into()),
                2,
                EndReason::ProtocolError("bad PROXY header"),
                ctx,
            )),
            Ok((header, used)) => {
                self.up.consume(used);
                self.header_possible = false;
                if let proxy_proto::Header::Proxied { src, dst } = header {
                    debug!(
                        "conn={} PROXY header: client {src} via {}",
                        self.id, self.peer
                    );
                    self.peer = src;
                    self.local = dst;
                }
                Ok(())
            }
        }
    }

    fn on_client_response(&mut self, salt: [u8; scramble::LEN], ctx: &mut Ctx) -> State {
        if self.header_possible {
            if let Err(next) = self.take_proxy_header(salt, ctx) {
                return next;
            }
        }
        let (seq, payload) = match take_packet(&mut self.up, max_login_payload(ctx)) {
            Ok(Some(p)) => p,
            Ok(None) => return State::AwaitingClientResponse { salt },
            Err(e) => return self.bad_handshake(e, 2, ctx),
        };
        if seq != 1 {
            return self.refuse(
                Refusal::PacketsOutOfOrder,
                seq.wrapping_add(1),
                EndReason::ProtocolError("sequence id"),
                ctx,
            );
        }
        let parsed = handshake::parse_client_hello(&payload);
        // The packet holds the token: wipe it and the ring it came through.
        let mut payload = payload;
        payload.fill(0);
        self.up.scrub();
        let hello = match parsed {
            Ok(ClientHello::Response(r)) => r,
            Ok(ClientHello::SslRequest) => {
                return self.refuse(
                    Refusal::SslUnsupported,
                    2,
                    EndReason::ProtocolError("SSLRequest"),
                    ctx,
                )
            }
            Ok(ClientHello::Pre41) => {
                return self.refuse(
                    Refusal::Pre41Client,
                    2,
                    EndReason::ProtocolError("pre-4.1 client"),
                    ctx,
                )
            }
            Err(e) => return self.bad_handshake(e, 2, ctx),
        };
        let mut hello = hello;
        hello.capabilities &= self.offered;
        self.user = Some(hello.user.clone());
        if !hello.plugin.is_empty() && hello.plugin != NATIVE {
            // The token was made for another plugin (MySQL 8 clients start
            // with caching_sha2_password): ask for a native one, with a new
            // salt so a token is never checked twice against the same salt.
            let salt = (ctx.salt)();
            let mut pkt = Vec::new();
            put_packet(&mut pkt, 2, &handshake::build_auth_switch(&salt));
            self.send_client(ctx.bufs, &pkt);
            return State::AwaitingAuthSwitch {
                salt,
                hello: Box::new(hello),
            };
        }
        self.verify(hello, &salt, 2, ctx)
    }

    fn on_auth_switch_response(
        &mut self,
        salt: [u8; scramble::LEN],
        mut hello: Box<Response>,
        ctx: &mut Ctx,
    ) -> State {
        let (seq, payload) = match take_packet(&mut self.up, max_login_payload(ctx)) {
            Ok(Some(p)) => p,
            Ok(None) => return State::AwaitingAuthSwitch { salt, hello },
            Err(e) => return self.bad_handshake(e, 4, ctx),
        };
        if seq != 3 {
            return self.refuse(
                Refusal::PacketsOutOfOrder,
                seq.wrapping_add(1),
                EndReason::ProtocolError("sequence id"),
                ctx,
            );
        }
        self.up.scrub();
        hello.auth = payload; // wiped by verify
        self.verify(*hello, &salt, 4, ctx)
    }

    fn bad_handshake(&mut self, e: wire::Error, seq: u8, ctx: &mut Ctx) -> State {
        self.refuse(
            Refusal::BadHandshake(e.to_string()),
            seq,
            EndReason::ProtocolError("bad handshake"),
            ctx,
        )
    }

    /// Checks the client's token; on success starts the backend login.
    fn verify(
        &mut self,
        mut hello: Response,
        salt: &[u8; scramble::LEN],
        next_seq: u8,
        ctx: &mut Ctx,
    ) -> State {
        let user = ctx.cfg.user(&hello.user);
        let stage1 = recover_stage1(user, ctx.decoy, salt, &hello.auth);
        // stage1 now lives only on the heap; wipe the copies the checking
        // left in stack frames below this one.
        scramble::wipe_stack();
        let using_password = !hello.auth.is_empty();
        // The token has served its purpose; do not keep it around.
        hello.auth.fill(0);
        hello.auth.clear();
        let (Some(user), Some(stage1)) = (user, stage1) else {
            ctx.stats.logins_failed += 1;
            if ctx.login_warnings.allow(ctx.now) {
                warn!(
                    "login failed: conn={} client={} user={} (wrong password or unknown user)",
                    self.id,
                    self.peer.ip(),
                    printable(&hello.user)
                );
            }
            let refusal = Refusal::AccessDenied {
                user: String::from_utf8_lossy(&hello.user).into_owned(),
                host: self.peer.ip().to_string(),
                using_password,
            };
            return self.refuse(refusal, next_seq, EndReason::AuthFailed, ctx);
        };
        ctx.stats
            .handshake
            .observe(ctx.now.saturating_duration_since(self.started));
        let pool = ctx.pools.of_config(user.pool);
        self.pool = Some(pool);
        let login = Box::new(Login {
            hello,
            stage1,
            pool,
            tried: Vec::new(),
            server: 0,
            client_seq: next_seq,
            failures: Vec::new(),
            verified_at: ctx.now,
        });
        self.next_backend(login, ctx)
    }

    /// Picks the next untried server of the login's pool, or gives up.
    fn next_backend(&mut self, mut login: Box<Login>, ctx: &mut Ctx) -> State {
        self.down.clear(ctx.bufs);
        self.to_backend.clear();
        match ctx.pools.pick(login.pool, &login.tried) {
            Some((pool, server)) => {
                if pool != login.pool && self.pool != Some(pool) {
                    info!(
                        "conn={} pool '{}' has no usable server; using its fallback '{}'",
                        self.id, ctx.pools.pools[login.pool].name, ctx.pools.pools[pool].name
                    );
                }
                self.pool = Some(pool);
                login.tried.push(server);
                login.server = server;
                self.server = Some(server);
                self.attempt += 1;
                State::Connecting {
                    login,
                    deadline: ctx.now + ctx.cfg.connect_timeout,
                }
            }
            None => {
                let pool = ctx.pools.pools[login.pool].name.clone();
                let detail = if login.failures.is_empty() {
                    // Nothing was tried: every server is known to be down.
                    ctx.pools.down_summary(login.pool)
                } else {
                    login.failures.join("; ")
                };
                warn!(
                    "conn={} client={} pool '{pool}' unreachable: {detail}",
                    self.id, self.peer
                );
                self.refuse(
                    Refusal::PoolUnreachable { pool, detail },
                    login.client_seq,
                    EndReason::PoolUnreachable,
                    ctx,
                )
            }
        }
    }

    fn backend_attempt_failed(
        &mut self,
        mut login: Box<Login>,
        why: String,
        server_at_fault: bool,
        ctx: &mut Ctx,
    ) -> State {
        let addr = ctx.pools.servers[login.server].addr;
        info!("conn={} backend {addr} failed: {why}", self.id);
        // A failed real login counts like a failed health check.
        let fall = ctx.cfg.health.fall;
        if server_at_fault {
            ctx.stats.backend_failures += 1;
            if let Some(change) = ctx.pools.record_failure(login.server, &why, ctx.now, fall) {
                ctx.pools.log_change(login.server, change);
            }
        }
        login.failures.push(format!("{addr}: {why}"));
        self.next_backend(login, ctx)
    }

    fn on_backend_greeting(
        &mut self,
        login: Box<Login>,
        deadline: Instant,
        ctx: &mut Ctx,
    ) -> State {
        let (seq, payload) = match take_packet(&mut self.down, max_payload(ctx)) {
            Ok(Some(p)) => p,
            Ok(None) => return State::AwaitingBackendHandshake { login, deadline },
            Err(e) => {
                return self.backend_attempt_failed(login, format!("greeting: {e}"), true, ctx)
            }
        };
        if payload.first() == Some(&0xFF) {
            // Refused before greeting: too many connections, host blocked...
            let (code, msg) = parse_err(&payload).unwrap_or((0, String::new()));
            return self.backend_attempt_failed(login, format!("ERR {code} {msg}"), true, ctx);
        }
        let g = match handshake::parse_greeting(&payload) {
            Ok(g) if seq == 0 => g,
            Ok(_) => {
                return self.backend_attempt_failed(
                    login,
                    "greeting out of sequence".into(),
                    true,
                    ctx,
                )
            }
            Err(e) => {
                return self.backend_attempt_failed(login, format!("greeting: {e}"), true, ctx)
            }
        };
        ctx.pools.servers[login.server].info = Some(BackendInfo {
            version: g.version.clone(),
            capabilities: g.capabilities,
            charset: g.charset,
        });
        // After login the two legs talk directly: every stream-shaping flag
        // the client chose must be one the backend supports too, or result
        // sets would be framed differently on each leg.
        let stream = login.hello.capabilities & !caps::LOGIN_ONLY;
        let required = caps::PROTOCOL_41 | caps::SECURE_CONNECTION;
        let missing = (stream | required) & !g.capabilities;
        if missing != 0 {
            return self.backend_attempt_failed(
                login,
                format!("lacks capabilities {missing:#x} the client negotiated"),
                false,
                ctx,
            );
        }
        let token = match &login.stage1 {
            Some(stage1) => scramble::token_for(&g.salt, stage1).to_vec(),
            None => Vec::new(),
        };
        scramble::wipe_stack();
        let response = handshake::build_response(&login.hello, g.capabilities, &token);
        put_packet(&mut self.to_backend, 1, &response);
        State::AwaitingBackendAuth {
            login,
            deadline,
            seq: 2,
            switched: false,
        }
    }

    fn on_backend_auth_reply(
        &mut self,
        login: Box<Login>,
        deadline: Instant,
        seq: u8,
        switched: bool,
        ctx: &mut Ctx,
    ) -> State {
        let Some((len, got_seq)) = wire::peek_header(&self.down) else {
            return State::AwaitingBackendAuth {
                login,
                deadline,
                seq,
                switched,
            };
        };
        if len > max_payload(ctx) {
            return self.backend_attempt_failed(login, "login reply too large".into(), true, ctx);
        }
        if self.down.len() < HEADER_LEN + len {
            return State::AwaitingBackendAuth {
                login,
                deadline,
                seq,
                switched,
            };
        }
        if got_seq != seq {
            return self.backend_attempt_failed(
                login,
                "login reply out of sequence".into(),
                true,
                ctx,
            );
        }
        match self.down.byte_at(HEADER_LEN) {
            // OK: the client gets the backend's own OK, renumbered to the
            // client's sequence, and relaying begins right behind it.
            Some(0x00) => {
                self.down.set_byte(3, login.client_seq);
                // Login bytes are done with; an idle relaying pair keeps
                // no buffer of its own.
                self.to_backend = Vec::new();
                ctx.pools.record_success(login.server);
                self.tracker = Tracker::new(login.hello.capabilities);
                ctx.stats.logins_ok += 1;
                ctx.stats
                    .backend_login
                    .observe(ctx.now.saturating_duration_since(login.verified_at));
                if let Some(p) = self.pool {
                    ctx.pools.pools[p].clients_total += 1;
                }
                debug!(
                    "conn={} logged in to {}",
                    self.id, ctx.pools.servers[login.server].addr
                );
                State::Relaying
            }
            // ERR (unknown database, access denied, too many connections):
            // relayed as it is, then both sides close.
            Some(0xFF) => {
                self.down.set_byte(3, login.client_seq);
                let mut payload = vec![0u8; len.min(512)];
                let n = self.down.peek(HEADER_LEN, &mut payload);
                let (code, msg) = parse_err(&payload[..n]).unwrap_or((0, String::new()));
                info!(
                    "conn={} backend {} refused login of user {}: ERR {code} {msg}",
                    self.id,
                    ctx.pools.servers[login.server].addr,
                    printable(&login.hello.user)
                );
                State::Closing {
                    reason: EndReason::BackendRefused(code),
                    flush: Side::Client,
                }
            }
            // AuthSwitchRequest: answer once, for mysql_native_password only.
            Some(0xFE) => {
                let payload = match take_packet(&mut self.down, max_payload(ctx)) {
                    Ok(Some((_, p))) => p,
                    _ => {
                        return self.backend_attempt_failed(
                            login,
                            "bad auth switch".into(),
                            true,
                            ctx,
                        )
                    }
                };
                match handshake::parse_auth_switch(&payload) {
                    Ok((plugin, salt))
                        if plugin == NATIVE && salt.len() == scramble::LEN && !switched =>
                    {
                        let token = match &login.stage1 {
                            Some(stage1) => scramble::token_for(&salt, stage1).to_vec(),
                            None => Vec::new(),
                        };
                        scramble::wipe_stack();
                        put_packet(&mut self.to_backend, seq.wrapping_add(1), &token);
                        State::AwaitingBackendAuth {
                            login,
                            deadline,
                            seq: seq.wrapping_add(2),
                            switched: true,
                        }
                    }
                    Ok((plugin, _)) => self.backend_plugin_unsupported(login, &plugin, ctx),
                    Err(_) => {
                        self.backend_attempt_failed(login, "bad auth switch".into(), true, ctx)
                    }
                }
            }
            // AuthMoreData and anything else: a plugin exchange myroute
            // cannot take part in.
            _ => self.backend_plugin_unsupported(login, b"(more auth data)", ctx),
        }
    }

    fn backend_plugin_unsupported(
        &mut self,
        login: Box<Login>,
        plugin: &[u8],
        ctx: &mut Ctx,
    ) -> State {
        let addr = ctx.pools.servers[login.server].addr;
        let plugin = printable(plugin);
        warn!(
            "conn={} backend {addr} wants auth plugin {plugin} for user {}; backend accounts must use mysql_native_password",
            self.id,
            printable(&login.hello.user)
        );
        let detail = format!("{addr} asks for auth plugin '{plugin}'; myroute logs in with mysql_native_password only");
        let pool = ctx.pools.pools[login.pool].name.clone();
        self.refuse(
            Refusal::PoolUnreachable { pool, detail },
            login.client_seq,
            EndReason::PoolUnreachable,
            ctx,
        )
    }

    fn on_timeout(&mut self, state: State, ctx: &mut Ctx) -> State {
        if let State::Closing { reason, flush } = state {
            let idle = self.idle_timeout.map(|d| self.last_active + d);
            if idle.is_some_and(|t| ctx.now >= t) {
                // The side being flushed stopped taking bytes: give up on them.
                self.drop_buffers(ctx.bufs);
            }
            return State::Closing { reason, flush };
        }
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
            return match state {
                // The client is waiting for our answer: tell it why.
                State::Connecting { login, .. }
                | State::AwaitingBackendHandshake { login, .. }
                | State::AwaitingBackendAuth { login, .. } => {
                    let seq = login.client_seq;
                    self.refuse(
                        Refusal::HandshakeTimeout,
                        seq,
                        EndReason::Timeout("handshake_timeout"),
                        ctx,
                    )
                }
                State::Relaying => State::Relaying,
                s @ State::Closing { .. } => s,
                // The client owes us a packet: just close, as servers do.
                _ => State::Closing {
                    reason: EndReason::Timeout("handshake_timeout"),
                    flush: Side::Client,
                },
            };
        }
        match state {
            State::Connecting { login, deadline }
            | State::AwaitingBackendHandshake { login, deadline }
            | State::AwaitingBackendAuth {
                login, deadline, ..
            } if ctx.now >= deadline => {
                let ms = ctx.cfg.connect_timeout.as_millis();
                self.backend_attempt_failed(
                    login,
                    format!("no answer within connect_timeout ({ms}ms)"),
                    true,
                    ctx,
                )
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
/// backends support, always with CLIENT_MYSQL so clients send no MariaDB
/// extended capabilities.
pub fn advertised_caps(info: Option<&BackendInfo>) -> u32 {
    let backend = info.map_or(
        caps::RELAYABLE & !(caps::QUERY_ATTRIBUTES | caps::OPTIONAL_RESULTSET_METADATA),
        |i| i.capabilities,
    );
    (caps::RELAYABLE & backend)
        | caps::LONG_PASSWORD
        | caps::PROTOCOL_41
        | caps::SECURE_CONNECTION
        | caps::PLUGIN_AUTH
}

/// Checks a client's token for `user` (unknown users against the decoy hash,
/// so they cost the same and fail the same way as a wrong password) and
/// returns `Some(stage1)` if it is right (`Some(None)` for an account without
/// password, which accepts only an empty token, as MySQL does). Kept out of
/// line so every stack copy of stage1 lies below the caller, which wipes it.
#[inline(never)]
fn recover_stage1(
    user: Option<&crate::config::UserConf>,
    decoy: &Secret,
    salt: &[u8; scramble::LEN],
    token: &[u8],
) -> Option<Option<Box<Secret>>> {
    let stage2 = match user {
        Some(u) => u.stage2.as_ref(),
        None => Some(decoy),
    };
    match stage2 {
        None => token.is_empty().then_some(None),
        Some(s2) => scramble::check_token(salt, s2, token).map(|s| Some(Box::new(s))),
    }
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
    use crate::wire::{put_lenenc_bytes, Reader};

    const PW: &[u8] = b"password"; // *2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19
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
            let cfg = crate::config::parse(CONF).unwrap();
            let mut pools = Pools::from_config(&cfg);
            for s in &mut pools.servers {
                s.info = Some(BackendInfo {
                    version: "10.11.6-MariaDB".into(),
                    capabilities: caps::RELAYABLE & !caps::LONG_PASSWORD,
                    charset: 45,
                });
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
            p.backend_bytes_arrived(before, pkt.len(), ctx.now);
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
        from_client(
            w,
            &mut p,
            1,
            &response(user, &client_token(PW, &salt), None, NATIVE),
        );
        p
    }

    /// The client logs in with a caching_sha2_password token, as MySQL 8
    /// clients start.
    fn start_with_sha2(w: &mut World, p: &mut Pair) {
        from_client(
            w,
            p,
            1,
            &response(b"app_rw", &[1; 32], None, b"caching_sha2_password"),
        );
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
        assert!(
            client_packets(&mut p).is_empty(),
            "no OK before the backend accepts"
        );
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
        assert_eq!(
            msgs[0],
            "Access denied for user 'U'@'127.0.0.1' (using password: YES)"
        );
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
        assert_ne!(
            new_salt, salt,
            "a token is never checked twice against one salt"
        );
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
        assert_eq!(
            pkts,
            vec![(4, vec![0, 0, 0, 2, 0, 0, 0])],
            "backend OK renumbered to 4"
        );
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
        event(
            &mut w,
            &mut p,
            Event::BackendFailed("connection refused".into()),
        );
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
        let blocked = crate::errors::err_packet(0, 1129, "HY000", "Host is blocked");
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
        assert_eq!(
            backend_packets(&mut p),
            vec![(3, client_token(PW, &new_salt))]
        );
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
        assert_eq!(code, 1429);
        assert!(msg.contains("caching_sha2_password"));
    }

    #[test]
    fn backend_err_is_relayed_as_it_is_then_closes() {
        let mut w = World::new();
        let mut p = awaiting_backend_auth(&mut w, b"app_rw");
        let err = crate::errors::err_packet(2, 1049, "42000", "Unknown database 'x'");
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
        put_packet(
            &mut bytes,
            1,
            &response(b"app_rw", &client_token(PW, &salt), None, NATIVE),
        );
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

    #[test]
    fn change_user_is_refused_with_err_and_never_reaches_the_backend() {
        let mut w = World::new();
        let mut p = relaying(&mut w);
        from_client(&mut w, &mut p, 0, b"\x11app_ro\0\x14aaaaaaaaaaaaaaaaaaaa\0");
        assert!(p.up.is_empty());
        assert_eq!(p.backend(), None);
        let pkts = client_packets(&mut p);
        assert_eq!(pkts[0].0, 1);
        assert_eq!(err_code(&pkts[0].1).0, 1235);
        assert_eq!(p.finished(), Some(&EndReason::ChangeUser));
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
        assert_eq!(quit, [1, 0, 0, 0, COM_QUIT], "COM_QUIT for the backend");
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
        from_client(
            &mut w,
            &mut p,
            0,
            b"\x03LOAD DATA LOCAL INFILE 'f' INTO TABLE t",
        );
        w.with(|ctx| p.up.clear(ctx.bufs));
        from_backend(&mut w, &mut p, 1, b"\xFBf");
        // 256 packets on, a file packet has sequence id 0 and starts with
        // COM_CHANGE_USER's byte: content, relayed as it is.
        from_client(&mut w, &mut p, 0, b"\x11 not a command");
        assert!(p.is_relaying());
        from_client(&mut w, &mut p, 1, b"");
        w.with(|ctx| p.up.clear(ctx.bufs));
        from_backend(&mut w, &mut p, 3, &[0, 1, 0, 2, 0, 0, 0]);
        client_packets(&mut p);
        // After the file, commands are commands again.
        from_client(&mut w, &mut p, 0, b"\x11u\0");
        assert_eq!(p.state_name(), "CLOSING");
    }

    /// A greeted pair from `peer()`, trusted or not, that received `bytes`
    /// first.
    fn sent_first(w: &mut World, trusted: bool, bytes: &[u8]) -> (Pair, Vec<u8>) {
        let mut p = w.with(|ctx| Pair::new(7, peer(), local(), trusted, ctx));
        let salt = handshake::parse_greeting(&client_packets(&mut p)[0].1)
            .unwrap()
            .salt;
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
        w.pools.pools[0].proxy_protocol = ProxyProtocol::V1;
        event(&mut w, &mut p, Event::BackendConnected);
        assert!(p
            .to_backend
            .starts_with(b"PROXY TCP4 10.1.2.3 10.0.0.1 5555 3306\r\n"));
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
        w.pools.pools[0].proxy_protocol = ProxyProtocol::V1;
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
        assert_eq!(p.finished(), None, "COM_QUIT still to deliver");
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
}
