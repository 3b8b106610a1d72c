//! The single-threaded mio poll loop: accepting, the slab of connection
//! pairs, moving bytes between sockets and rings, backend connects, timers,
//! and the health checks that watch the backends.
//!
//! Readiness is edge-triggered: each socket is registered once for
//! READABLE | WRITABLE, events only set per-side flags, and a flag is cleared
//! only when the socket says it has nothing more (WouldBlock or a short
//! read/write). Backpressure is one rule: a side is not read while its ring
//! is full; its flag stays set, so it is read again as soon as the other side
//! drains the ring.
//!
//! Tokens: `key * 2` is a pair's client socket, `key * 2 + 1` its backend
//! socket; admin and metrics connections count up from `AUX_BASE`; the
//! listeners, the signalfd and the health checks use tokens from the top of
//! the range.
//!
//! Operations live here too, since they need the whole proxy's state: the
//! admin console's commands, /metrics and /ready, reload (SIGHUP) and the
//! graceful shutdown (SIGTERM, SIGINT).

use crate::access::{EndReason, RateLimit, Record};
use crate::admin::{self, AdminAuth, Command, Reply};
use crate::check::{Check, Verdict};
use crate::config::Config;
use crate::config::HealthUser;
use crate::errors::Refusal;
use crate::http::{self, Route};
use crate::io::{read_into, write_from, write_vec, IoStatus};
use crate::pair::{Ctx, Event, Pair, Side};
use crate::pool::Pools;
use crate::report;
use crate::ring::BufPool;
use crate::scramble::{self, Secret};
use crate::stats::Stats;
use crate::sys;
use log::{error, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

const LISTENER: Token = Token(usize::MAX);
const ADMIN_LISTENER: Token = Token(usize::MAX - 1);
const METRICS_LISTENER: Token = Token(usize::MAX - 2);
const SIGNALS: Token = Token(usize::MAX - 3);
/// The check of server `i` uses token `CHECK_BASE - i`.
const CHECK_BASE: usize = usize::MAX - 4;
/// Admin or metrics connection `k` uses token `AUX_BASE + k`; pair tokens
/// stay below it.
const AUX_BASE: usize = 1 << (usize::BITS - 2);
/// Admin and metrics connections open at once, at most.
const MAX_AUX: usize = 64;
/// Bytes an admin or metrics connection may send that are not yet answered.
const MAX_AUX_INPUT: usize = 128 * 1024;
/// How often a shutdown looks for pairs that have become idle.
const SHUTDOWN_SCAN: Duration = Duration::from_millis(100);
/// Rounds of read/write one pair gets per pass before others are served.
const MAX_ROUNDS: usize = 8;
/// How long accepting pauses after the process ran out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(500);
/// Failed-login warnings logged per second at most; the rest are counted.
const LOGIN_WARNINGS_PER_SECOND: u32 = 10;
/// Spare ring buffers kept for reuse.
const SPARE_BUFFERS: usize = 64;

/// Per-socket readiness as last reported and not yet used up.
#[derive(Default, Clone, Copy)]
struct Ready {
    readable: bool,
    writable: bool,
    /// The peer hung up: read until 0 rather than trusting short reads.
    hup: bool,
}

/// The backend socket of a pair.
struct Backend {
    stream: TcpStream,
    attempt: u32,
    server: usize,
    connected: bool,
    ready: Ready,
}

/// A slab entry: one pair and its sockets.
struct Conn {
    pair: Pair,
    client: TcpStream,
    client_ready: Ready,
    backend: Option<Backend>,
    /// Deadline currently in the timer heap for this pair, and its stamp.
    armed: Option<(Instant, u64)>,
    /// On the pending list already.
    queued: bool,
}

/// A health check in flight: the check's state machine and its socket.
struct Checking {
    check: Check,
    stream: TcpStream,
    connected: bool,
    deadline: Instant,
    /// Its verdict (a timeout) is recorded already; it stays open only to
    /// let a slow server finish the handshake, since a dropped handshake
    /// counts toward the server's `max_connect_errors`.
    late: bool,
}

/// What an admin or metrics connection is.
enum AuxKind {
    Admin(Box<admin::Session>),
    /// An HTTP exchange: the request is read into `input`, the answer
    /// written from `out`; one request per connection.
    Http {
        out: Vec<u8>,
        answered: bool,
    },
}

/// An admin console or metrics connection.
struct Aux {
    stream: TcpStream,
    peer: SocketAddr,
    kind: AuxKind,
    input: Vec<u8>,
    /// Until when it may take to log in or send its request.
    deadline: Option<Instant>,
}

/// A graceful shutdown in progress.
struct Shutdown {
    /// When busy pairs are cut.
    deadline: Instant,
    /// When idle pairs are looked for next.
    next_scan: Instant,
}

/// The proxy.
pub struct Proxy {
    poll: Poll,
    /// `None` once a shutdown has begun: new clients are refused.
    listener: Option<TcpListener>,
    admin_listener: Option<TcpListener>,
    metrics_listener: Option<TcpListener>,
    aux: Vec<Option<Aux>>,
    /// Accepting on the admin and metrics ports failed (out of
    /// descriptors): try again at this instant.
    aux_accept_retry: Option<Instant>,
    signals: Option<sys::Signals>,
    /// The file reload rereads.
    config_path: Option<String>,
    /// Reload applies `log_level` (false when RUST_LOG decides).
    apply_log_level: bool,
    stats: Stats,
    shutdown: Option<Shutdown>,
    /// Leave the loop now (a second stop signal).
    exit_now: bool,
    cfg: Config,
    pools: Pools,
    bufs: BufPool,
    slab: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// Keys closed during this pass; they go back on `free` after it, so a
    /// key is never reused within one batch of events.
    closed: Vec<usize>,
    pending: Vec<usize>,
    spare_pending: Vec<usize>,
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    stamp: u64,
    next_id: u32,
    decoy: Secret,
    login_warnings: RateLimit,
    /// The listener has connections we have not accepted yet.
    listener_ready: bool,
    accept_paused_until: Option<Instant>,
    /// One slot per server: its check in flight, if any.
    checks: Vec<Option<Checking>>,
    /// When the next round of checks starts.
    next_checks: Instant,
    /// Accepting waits for the first round of checks until this instant.
    starting_until: Option<Instant>,
    /// Pairs alive now (for `max_clients`).
    live: usize,
    /// Bounds the warnings about running short (max_clients, descriptors).
    resource_warnings: RateLimit,
}

/// What a token names.
enum Tok {
    Listener,
    AdminListener,
    MetricsListener,
    Signals,
    Check(usize),
    Aux(usize),
    Pair(usize, usize),
}

/// The pair's view of the proxy, borrowed field by field from `$proxy`
/// (a macro rather than a method, so the slab stays borrowable beside it).
macro_rules! ctx {
    ($proxy:expr, $now:expr, $salt:ident) => {
        Ctx {
            now: $now,
            cfg: &$proxy.cfg,
            pools: &mut $proxy.pools,
            bufs: &mut $proxy.bufs,
            salt: &mut $salt,
            decoy: &$proxy.decoy,
            login_warnings: &mut $proxy.login_warnings,
            stats: &mut $proxy.stats,
        }
    };
}

// After the macro, which it uses.
#[path = "ops.rs"]
mod ops;

/// Twenty random bytes from the OS.
fn random20() -> [u8; 20] {
    let mut b = [0u8; 20];
    if let Err(e) = getrandom::fill(&mut b) {
        // Without randomness no salt can be trusted; refusing to run is the
        // only safe answer, and the OS does not fail this on Linux >= 3.17.
        error!("getrandom failed: {e}");
        std::process::exit(1);
    }
    b
}

fn fresh_salt() -> [u8; 20] {
    scramble::salt_from_random(random20())
}

impl Proxy {
    /// Binds the listener and starts the first round of health checks.
    pub fn bind(cfg: Config) -> std::io::Result<Proxy> {
        let poll = Poll::new()?;
        let mut listener = sys::listen(cfg.listen, cfg.reuse_port)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let open_aux = |addr: Option<SocketAddr>, token| -> std::io::Result<_> {
            let Some(addr) = addr else {
                return Ok(None);
            };
            let mut l = sys::listen(addr, false)?;
            poll.registry()
                .register(&mut l, token, Interest::READABLE)?;
            Ok(Some(l))
        };
        let admin_listener = open_aux(cfg.admin.as_ref().map(|a| a.listen), ADMIN_LISTENER)?;
        let metrics_listener = open_aux(cfg.metrics_listen, METRICS_LISTENER)?;
        let pools = Pools::from_config(&cfg);
        let bufs = BufPool::new(cfg.buffer_size, SPARE_BUFFERS);
        let mut proxy = Proxy {
            poll,
            listener: Some(listener),
            admin_listener,
            metrics_listener,
            aux: Vec::new(),
            aux_accept_retry: None,
            signals: None,
            config_path: None,
            apply_log_level: false,
            stats: Stats::new(Instant::now()),
            shutdown: None,
            exit_now: false,
            pools,
            bufs,
            slab: Vec::new(),
            free: Vec::new(),
            closed: Vec::new(),
            pending: Vec::new(),
            spare_pending: Vec::new(),
            timers: BinaryHeap::new(),
            stamp: 0,
            next_id: 1,
            decoy: Secret(random20()),
            login_warnings: RateLimit::new(Duration::from_secs(1), LOGIN_WARNINGS_PER_SECOND),
            listener_ready: false,
            accept_paused_until: None,
            checks: Vec::new(),
            next_checks: Instant::now(),
            starting_until: None,
            live: 0,
            resource_warnings: RateLimit::new(Duration::from_secs(1), 1),
            cfg,
        };
        proxy.checks.resize_with(proxy.pools.servers.len(), || None);
        let now = Instant::now();
        proxy.starting_until = Some(now + proxy.cfg.connect_timeout);
        proxy.start_checks(now);
        Ok(proxy)
    }

    /// The address actually listened on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match &self.listener {
            Some(l) => l.local_addr(),
            None => Err(std::io::Error::new(
                ErrorKind::NotConnected,
                "not listening",
            )),
        }
    }

    /// The admin console's and the metrics responder's addresses, if any.
    pub fn aux_addrs(&self) -> (Option<SocketAddr>, Option<SocketAddr>) {
        let addr = |l: &Option<TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
        (addr(&self.admin_listener), addr(&self.metrics_listener))
    }

    /// Handles SIGHUP (reload `config_path`), SIGTERM and SIGINT (graceful
    /// shutdown) from now on. `apply_log_level`: reload changes the log
    /// level (false when RUST_LOG set it).
    pub fn handle_signals(
        &mut self,
        config_path: String,
        apply_log_level: bool,
    ) -> std::io::Result<()> {
        let signals = sys::Signals::new(&[libc::SIGHUP, libc::SIGTERM, libc::SIGINT])?;
        self.poll.registry().register(
            &mut mio::unix::SourceFd(&std::os::fd::AsRawFd::as_raw_fd(&signals)),
            SIGNALS,
            Interest::READABLE,
        )?;
        self.signals = Some(signals);
        self.config_path = Some(config_path);
        self.apply_log_level = apply_log_level;
        Ok(())
    }

    fn classify(&self, token: Token) -> Tok {
        match token {
            LISTENER => Tok::Listener,
            ADMIN_LISTENER => Tok::AdminListener,
            METRICS_LISTENER => Tok::MetricsListener,
            SIGNALS => Tok::Signals,
            Token(t) if t <= CHECK_BASE && t > CHECK_BASE - self.checks.len() => {
                Tok::Check(CHECK_BASE - t)
            }
            Token(t) if t >= AUX_BASE => Tok::Aux(t - AUX_BASE),
            Token(t) => Tok::Pair(t / 2, t % 2),
        }
    }

    /// Runs until a shutdown completes.
    pub fn run(&mut self) -> std::io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            if self.exit_now {
                return Ok(());
            }
            if self.shutdown.is_some() && self.live == 0 {
                info!("shutdown complete: no client left");
                return Ok(());
            }
            let now = Instant::now();
            let timeout = self.poll_timeout(now);
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            let mut signalled = false;
            for ev in events.iter() {
                let (key, side) = match self.classify(ev.token()) {
                    Tok::Listener => {
                        self.listener_ready = true;
                        continue;
                    }
                    Tok::AdminListener => {
                        self.accept_aux(true, now);
                        continue;
                    }
                    Tok::MetricsListener => {
                        self.accept_aux(false, now);
                        continue;
                    }
                    Tok::Signals => {
                        signalled = true;
                        continue;
                    }
                    Tok::Check(server) => {
                        self.check_event(server, now);
                        continue;
                    }
                    Tok::Aux(k) => {
                        self.drive_aux(k, now);
                        continue;
                    }
                    Tok::Pair(key, side) => (key, side),
                };
                let Some(Some(conn)) = self.slab.get_mut(key) else {
                    continue; // a closed pair: events can trail its end
                };
                let ready = if side == 0 {
                    &mut conn.client_ready
                } else {
                    match conn.backend.as_mut() {
                        Some(b) => &mut b.ready,
                        None => continue,
                    }
                };
                ready.readable |= ev.is_readable() || ev.is_read_closed() || ev.is_error();
                ready.writable |= ev.is_writable() || ev.is_write_closed() || ev.is_error();
                ready.hup |= ev.is_read_closed() || ev.is_error();
                if !conn.queued {
                    conn.queued = true;
                    self.pending.push(key);
                }
            }
            if signalled {
                self.take_signals(now);
            }
            self.run_pending(now);
            self.expire_timers(now);
            self.expire_checks(now);
            self.expire_aux(now);
            self.shutdown_scan(now);
            if now >= self.next_checks {
                self.start_checks(now);
            }
            self.accept(now);
            self.run_pending(now);
            self.free.append(&mut self.closed);
            if let Some(n) = self.login_warnings.take_suppressed(now) {
                warn!("{n} more failed logins in the last second were not logged one by one");
            }
        }
    }

    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.pending.is_empty() {
            return Some(Duration::ZERO);
        }
        let mut next = self.timers.peek().map(|Reverse((t, _, _))| *t);
        let others = [
            self.accept_paused_until,
            self.starting_until,
            Some(self.next_checks),
            self.login_warnings.flush_at(),
            self.shutdown.as_ref().map(|s| s.next_scan),
            self.aux_accept_retry,
        ];
        let check_deadlines = self.checks.iter().flatten().map(|c| c.deadline);
        let aux_deadlines = self.aux.iter().flatten().filter_map(|a| a.deadline);
        for t in others
            .into_iter()
            .flatten()
            .chain(check_deadlines)
            .chain(aux_deadlines)
        {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        next.map(|t| t.saturating_duration_since(now))
    }

    fn run_pending(&mut self, now: Instant) {
        // Swap in the spare list rather than allocating one: pairs driven
        // now may queue themselves again for the next pass.
        let mut batch = std::mem::take(&mut self.spare_pending);
        std::mem::swap(&mut batch, &mut self.pending);
        for key in batch.drain(..) {
            if let Some(Some(conn)) = self.slab.get_mut(key) {
                conn.queued = false;
            }
            self.drive_guarded(key, now);
        }
        self.spare_pending = batch;
    }

    /// Runs `drive` so that a bug that panics while serving one pair ends
    /// that pair, not the process and everyone else's connections.
    fn drive_guarded(&mut self, key: usize, now: Instant) {
        let served =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.drive(key, now)));
        if served.is_err() {
            error!("conn key={key}: internal error while serving it; closing it");
            self.close(key, EndReason::ProtocolError("internal error"), now);
        }
    }

    // ----- accepting -----

    fn accept(&mut self, now: Instant) {
        if !self.listener_ready {
            return;
        }
        if let Some(until) = self.starting_until {
            // Greet once a backend has told its version (or none can).
            let waiting = now < until
                && self.pools.advertised().is_none()
                && self.checks.iter().any(Option::is_some);
            if waiting {
                return;
            }
            self.starting_until = None;
        }
        if let Some(until) = self.accept_paused_until {
            if now < until {
                return;
            }
            self.accept_paused_until = None;
        }
        // Bounded, so a connection storm cannot starve established pairs.
        for _ in 0..256 {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.add_pair(stream, peer, now),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.listener_ready = false;
                    return;
                }
                Err(e)
                    if e.kind() == ErrorKind::Interrupted
                        || e.kind() == ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    // EMFILE/ENFILE and the like: the connection stays queued
                    // and, edge-triggered, no new event will come for it, so
                    // retry on a timer instead of spinning.
                    warn!(
                        "accept failed: {e}; pausing accepts for {}ms",
                        ACCEPT_BACKOFF.as_millis()
                    );
                    self.accept_paused_until = Some(now + ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    fn add_pair(&mut self, mut client: TcpStream, peer: SocketAddr, now: Instant) {
        let _ = client.set_nodelay(true);
        self.stats.accepted += 1;
        if self.live >= self.cfg.max_clients {
            self.stats.refused += 1;
            // ERR 1040 as the first packet, as a server does when full; a
            // fresh socket takes these few bytes at once.
            let _ = std::io::Write::write(&mut client, &Refusal::TooManyConnections.packet(0));
            if self.resource_warnings.allow(now) {
                warn!(
                    "max_clients ({}) reached: refusing {peer}",
                    self.cfg.max_clients
                );
            }
            return;
        }
        self.live += 1;
        let key = self.free.pop().unwrap_or_else(|| {
            self.slab.push(None);
            self.slab.len() - 1
        });
        if let Err(e) = self.poll.registry().register(
            &mut client,
            Token(key * 2),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            warn!("cannot register client {peer}: {e}");
            self.closed.push(key);
            return;
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let local = client.local_addr().unwrap_or(self.cfg.listen);
        let trusted = self
            .cfg
            .proxy_protocol_from
            .iter()
            .any(|net| net.contains(peer.ip()));
        let mut salt = fresh_salt;
        let mut ctx = ctx!(self, now, salt);
        let pair = Pair::new(id, peer, local, trusted, &mut ctx);
        self.slab[key] = Some(Conn {
            pair,
            client,
            // A just-accepted socket can take the greeting at once.
            client_ready: Ready {
                writable: true,
                ..Ready::default()
            },
            backend: None,
            armed: None,
            queued: true,
        });
        self.pending.push(key);
    }

    // ----- moving bytes -----

    /// Serves one pair: reads, lets the pair react, writes, until nothing
    /// moves or its share of this pass is used up.
    fn drive(&mut self, key: usize, now: Instant) {
        let Proxy {
            slab,
            pools,
            bufs,
            cfg,
            decoy,
            login_warnings,
            poll,
            pending,
            stats,
            ..
        } = self;
        let Some(Some(conn)) = slab.get_mut(key) else {
            return;
        };
        let mut salt = fresh_salt;
        let mut ctx = Ctx {
            now,
            cfg,
            pools,
            bufs,
            salt: &mut salt,
            decoy,
            login_warnings,
            stats,
        };
        let mut rounds = 0;
        loop {
            let mut moved = false;
            moved |= pump_client_in(conn, &mut ctx);
            moved |= pump_backend_in(conn, &mut ctx);
            moved |= pump_backend_out(conn, &mut ctx);
            moved |= pump_client_out(conn, &mut ctx);
            moved |= reconcile_backend(conn, key, poll, &mut ctx);
            if conn.pair.finished().is_some() || !moved {
                break;
            }
            rounds += 1;
            if rounds == MAX_ROUNDS {
                // Fairness: come back to it after everyone else.
                if !conn.queued {
                    conn.queued = true;
                    pending.push(key);
                }
                break;
            }
        }
        if let Some(reason) = conn.pair.finished().cloned() {
            self.close(key, reason, now);
            return;
        }
        self.arm_timer(key);
    }

    // ----- timers -----

    fn arm_timer(&mut self, key: usize) {
        let Some(Some(conn)) = self.slab.get_mut(key) else {
            return;
        };
        // Lazily: an entry already in the heap that fires no later than the
        // pair's deadline stays (when it fires early the pair sees its real
        // deadline has not come and is armed again), so busy pairs whose
        // idle deadline moves with every byte cost nothing here.
        let Some(t) = conn.pair.deadline() else {
            conn.armed = None;
            return;
        };
        if conn.armed.is_some_and(|(armed, _)| armed <= t) {
            return;
        }
        self.stamp += 1;
        conn.armed = Some((t, self.stamp));
        self.timers.push(Reverse((t, key, self.stamp)));
    }

    fn expire_timers(&mut self, now: Instant) {
        while let Some(Reverse((t, key, stamp))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            let Some(Some(conn)) = self.slab.get_mut(key) else {
                continue;
            };
            // A stale entry (the deadline moved since) is skipped.
            if conn.armed.map(|(_, s)| s) != Some(stamp) {
                continue;
            }
            conn.armed = None;
            self.deliver(key, Event::Timeout, now);
        }
    }

    /// Tells pair `key` of something that did not come from its sockets (a
    /// deadline, KILL, a shutdown), then serves it; a panic ends only it.
    fn deliver(&mut self, key: usize, ev: Event, now: Instant) {
        let Some(Some(conn)) = self.slab.get_mut(key) else {
            return;
        };
        let mut salt = fresh_salt;
        let mut ctx = ctx!(self, now, salt);
        let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            conn.pair.handle(ev, &mut ctx);
        }));
        if handled.is_err() {
            error!("conn key={key}: internal error handling an event; closing it");
            self.close(key, EndReason::ProtocolError("internal error"), now);
            return;
        }
        self.drive_guarded(key, now);
    }

    // ----- closing -----

    fn close(&mut self, key: usize, reason: EndReason, now: Instant) {
        let Some(mut conn) = self.slab.get_mut(key).and_then(Option::take) else {
            return;
        };
        if let Some(mut b) = conn.backend.take() {
            let _ = self.poll.registry().deregister(&mut b.stream);
            release_server(&mut self.pools, b.server);
        }
        let _ = self.poll.registry().deregister(&mut conn.client);
        let p = &mut conn.pair;
        p.up.clear(&mut self.bufs);
        p.down.clear(&mut self.bufs);
        let record = Record {
            id: p.id,
            client: p.peer,
            user: p.user.as_deref(),
            pool: p.pool.map(|i| self.pools.pools[i].name.as_str()),
            server: p.server.map(|i| self.pools.servers[i].addr),
            duration: now.saturating_duration_since(p.started),
            bytes_in: p.bytes_in,
            bytes_out: p.bytes_out,
            reason: &reason,
        };
        info!("{record}");
        self.stats.ended(&reason, p.bytes_in, p.bytes_out);
        self.live -= 1;
        self.closed.push(key);
    }

    // ----- health checks -----

    /// Starts a check of every server that has none in flight.
    fn start_checks(&mut self, now: Instant) {
        self.next_checks = now + self.cfg.health.interval;
        let want_read_only = self.cfg.health.user.is_some();
        for server in 0..self.pools.servers.len() {
            // A server no pool lists any more is not watched.
            if self.checks[server].is_some() || !self.pools.servers[server].in_pool {
                continue;
            }
            let addr = self.pools.servers[server].addr;
            let opened = connect(self.cfg.source_address, addr).and_then(|mut stream| {
                self.poll.registry().register(
                    &mut stream,
                    Token(CHECK_BASE - server),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                Ok(stream)
            });
            match opened {
                Ok(stream) => {
                    self.checks[server] = Some(Checking {
                        check: Check::new(want_read_only),
                        stream,
                        connected: false,
                        deadline: now + self.cfg.connect_timeout,
                        late: false,
                    })
                }
                // Out of descriptors or ports here says nothing about the
                // server: try again next round.
                Err(e) if is_local_shortage(&e) => {
                    if self.resource_warnings.allow(now) {
                        warn!("cannot check server {addr}: {e}");
                    }
                }
                Err(e) => self.end_check(server, Err(format!("connect: {e}")), now),
            }
        }
    }

    fn check_event(&mut self, server: usize, now: Instant) {
        let Some(Some(c)) = self.checks.get_mut(server) else {
            return;
        };
        if let Some(verdict) = step_check(c, self.cfg.health.user.as_ref()) {
            if c.late {
                self.close_check(server);
            } else {
                self.end_check(server, verdict, now);
            }
        }
    }

    fn expire_checks(&mut self, now: Instant) {
        for server in 0..self.checks.len() {
            let Some(c) = self.checks[server].as_mut().filter(|c| now >= c.deadline) else {
                continue;
            };
            if c.late {
                self.close_check(server); // lingered long enough
                continue;
            }
            let ms = self.cfg.connect_timeout.as_millis();
            let verdict = Err(format!("no answer within connect_timeout ({ms}ms)"));
            if c.check.info.is_some() {
                // Greeted, but slow to answer the login: the check fails
                // now, and the connection stays open a while for the server
                // to finish the handshake, so it does not count against the
                // proxy's host. No new check of this server starts meanwhile.
                c.late = true;
                c.deadline = now + self.cfg.connect_timeout * 2;
                self.record_check(server, verdict, now);
            } else {
                self.end_check(server, verdict, now);
            }
        }
    }

    /// Records a check's verdict, logs a state change, closes its socket.
    fn end_check(&mut self, server: usize, verdict: Verdict, now: Instant) {
        self.close_check(server);
        self.record_check(server, verdict, now);
    }

    /// Closes a check's connection (after its COM_QUIT, if one is due) and
    /// keeps what its greeting said.
    fn close_check(&mut self, server: usize) {
        if let Some(mut c) = self.checks.get_mut(server).and_then(Option::take) {
            let _ = write_vec(&mut c.check.out, &mut c.stream); // COM_QUIT, if due
            let _ = self.poll.registry().deregister(&mut c.stream);
            if let Some(info) = c.check.info.take() {
                let s = &mut self.pools.servers[server];
                if s.info.as_ref().is_none_or(|i| i.version != info.version) {
                    info!("server {}: version {}", s.addr, info.version);
                }
                s.info = Some(info);
            }
        }
    }

    fn record_check(&mut self, server: usize, verdict: Verdict, now: Instant) {
        let (fall, rise) = (self.cfg.health.fall, self.cfg.health.rise);
        if let Some(change) = self.pools.record_check(server, verdict, now, fall, rise) {
            self.pools.log_change(server, change);
        }
    }
}

/// Moves a check along: connect completion, reads, writes. Returns its
/// verdict once it has one.
fn step_check(c: &mut Checking, user: Option<&HealthUser>) -> Option<Verdict> {
    if !c.connected {
        match c.stream.take_error() {
            Ok(Some(e)) | Err(e) => return Some(Err(format!("connect: {e}"))),
            Ok(None) => {}
        }
        match c.stream.peer_addr() {
            Ok(_) => {
                c.connected = true;
                c.check.connected();
            }
            Err(e) if e.kind() == ErrorKind::NotConnected => return None,
            Err(e) => return Some(Err(format!("connect: {e}"))),
        }
    }
    let mut buf = [0u8; 4096];
    loop {
        match std::io::Read::read(&mut c.stream, &mut buf) {
            Ok(0) => return Some(Err("closed the connection".into())),
            Ok(n) => {
                if let Some(v) = c.check.on_bytes(&buf[..n], user) {
                    return Some(v);
                }
                if let (_, IoStatus::Failed(k)) = write_vec(&mut c.check.out, &mut c.stream) {
                    return Some(Err(k.to_string()));
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Some(Err(e.to_string())),
        }
    }
}

/// Errors that say this host ran short (descriptors, ports, memory), which
/// must not count against a backend's health.
fn is_local_shortage(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EADDRNOTAVAIL)
    )
}

/// Opens a backend connection, from `source` when one is configured.
fn connect(source: Option<IpAddr>, addr: SocketAddr) -> std::io::Result<TcpStream> {
    match source {
        Some(ip) => sys::connect_from(ip, addr),
        None => TcpStream::connect(addr),
    }
}

fn release_server(pools: &mut Pools, server: usize) {
    if let Some(s) = pools.servers.get_mut(server) {
        s.active = s.active.saturating_sub(1);
    }
}

/// Client socket → `up`.
fn pump_client_in(conn: &mut Conn, ctx: &mut Ctx) -> bool {
    let pair = &mut conn.pair;
    if !conn.client_ready.readable || !pair.may_read(Side::Client) || pair.up.is_full() {
        return false;
    }
    pair.up.attach(ctx.bufs);
    let before = pair.up.len();
    let (n, st) = read_into(&mut pair.up, &mut conn.client, conn.client_ready.hup);
    if n > 0 {
        pair.client_bytes_arrived(before, n, ctx);
        // While relaying, the scan above is all the pair needs to see.
        if !pair.is_relaying() {
            pair.handle(Event::ClientData, ctx);
        }
    }
    pair.up.release_if_empty(ctx.bufs);
    match st {
        IoStatus::Open => {}
        IoStatus::Drained => conn.client_ready.readable = false,
        IoStatus::Closed => pair.handle(Event::ClientClosed(None), ctx),
        IoStatus::Failed(k) => pair.handle(Event::ClientClosed(Some(k)), ctx),
    }
    n > 0 || st != IoStatus::Open
}

/// Backend socket → `down` (and connect completion).
fn pump_backend_in(conn: &mut Conn, ctx: &mut Ctx) -> bool {
    let pair = &mut conn.pair;
    let Some(b) = conn.backend.as_mut() else {
        return false;
    };
    if !b.connected {
        if !(b.ready.writable || b.ready.readable) {
            return false;
        }
        // Non-blocking connect: the socket turns writable when it is done;
        // take_error tells failure, peer_addr success.
        let failed = match b.stream.take_error() {
            Ok(Some(e)) | Err(e) => Some(e.to_string()),
            Ok(None) => match b.stream.peer_addr() {
                Ok(_) => None,
                Err(e) if e.kind() == ErrorKind::NotConnected => {
                    b.ready.writable = false;
                    b.ready.readable = false;
                    return false;
                }
                Err(e) => Some(e.to_string()),
            },
        };
        match failed {
            Some(why) => {
                b.connected = false;
                // Drop this attempt's socket now; reconcile opens the next.
                pair.handle(Event::BackendFailed(why), ctx);
            }
            None => {
                b.connected = true;
                let _ = b.stream.set_nodelay(true);
                pair.handle(Event::BackendConnected, ctx);
            }
        }
        return true;
    }
    if !b.ready.readable || !pair.may_read(Side::Backend) || pair.down.is_full() {
        return false;
    }
    pair.down.attach(ctx.bufs);
    let before = pair.down.len();
    let (n, st) = read_into(&mut pair.down, &mut b.stream, b.ready.hup);
    if n > 0 {
        pair.backend_bytes_arrived(before, n, ctx.now);
        if !pair.is_relaying() {
            pair.handle(Event::BackendData, ctx);
        }
    }
    pair.down.release_if_empty(ctx.bufs);
    match st {
        IoStatus::Open => {}
        IoStatus::Drained => b.ready.readable = false,
        IoStatus::Closed => pair.handle(Event::BackendFailed("closed the connection".into()), ctx),
        IoStatus::Failed(k) => pair.handle(Event::BackendFailed(k.to_string()), ctx),
    }
    n > 0 || st != IoStatus::Open
}

/// myroute's login packets, then `up` → backend socket.
fn pump_backend_out(conn: &mut Conn, ctx: &mut Ctx) -> bool {
    let pair = &mut conn.pair;
    let Some(b) = conn.backend.as_mut() else {
        return false;
    };
    if !b.connected || !b.ready.writable {
        return false;
    }
    let mut moved = 0;
    let mut st = IoStatus::Open;
    if !pair.to_backend.is_empty() {
        (moved, st) = write_vec(&mut pair.to_backend, &mut b.stream);
    }
    if st == IoStatus::Open && pair.may_relay_up() && !pair.up.is_empty() {
        let (n, s) = write_from(&mut pair.up, &mut b.stream);
        moved += n;
        st = s;
        pair.up.release_if_empty(ctx.bufs);
    }
    match st {
        IoStatus::Open => {}
        IoStatus::Drained => b.ready.writable = false,
        IoStatus::Closed => pair.handle(Event::BackendFailed("closed the connection".into()), ctx),
        IoStatus::Failed(k) => pair.handle(Event::BackendFailed(k.to_string()), ctx),
    }
    moved > 0
}

/// `down` → client socket.
fn pump_client_out(conn: &mut Conn, ctx: &mut Ctx) -> bool {
    let pair = &mut conn.pair;
    if !conn.client_ready.writable || pair.down.is_empty() {
        return false;
    }
    let (n, st) = write_from(&mut pair.down, &mut conn.client);
    pair.client_bytes_sent(n, ctx.now);
    pair.down.release_if_empty(ctx.bufs);
    match st {
        IoStatus::Open => {}
        IoStatus::Drained => conn.client_ready.writable = false,
        IoStatus::Closed => pair.handle(Event::ClientClosed(None), ctx),
        IoStatus::Failed(k) => pair.handle(Event::ClientClosed(Some(k)), ctx),
    }
    n > 0
}

/// Opens or drops the backend socket so it matches what the pair wants.
/// Returns true if anything changed.
fn reconcile_backend(conn: &mut Conn, key: usize, poll: &Poll, ctx: &mut Ctx) -> bool {
    let mut changed = false;
    // Bounded by the pool size: each failed immediate connect moves the
    // pair to its next server or to giving up.
    for _ in 0..=crate::pool::MAX_MEMBERS {
        let want = conn.pair.backend();
        let have = conn.backend.as_ref().map(|b| (b.attempt, b.server));
        if want == have {
            return changed;
        }
        changed = true;
        if let Some(mut old) = conn.backend.take() {
            let _ = poll.registry().deregister(&mut old.stream);
            release_server(ctx.pools, old.server);
        }
        let Some((attempt, server)) = want else {
            return changed;
        };
        let addr = ctx.pools.servers[server].addr;
        let opened = connect(ctx.cfg.source_address, addr).and_then(|mut stream| {
            poll.registry().register(
                &mut stream,
                Token(key * 2 + 1),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(stream)
        });
        match opened {
            Ok(stream) => {
                let s = &mut ctx.pools.servers[server];
                s.active += 1;
                s.total += 1;
                ctx.stats.backend_connects += 1;
                conn.backend = Some(Backend {
                    stream,
                    attempt,
                    server,
                    connected: false,
                    ready: Ready::default(),
                });
            }
            Err(e) if is_local_shortage(&e) => {
                conn.pair.handle(Event::NoBackendSocket(e.to_string()), ctx)
            }
            Err(e) => conn.pair.handle(Event::BackendFailed(e.to_string()), ctx),
        }
    }
    changed
}
