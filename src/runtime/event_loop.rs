//! The single-threaded mio poll loop: accepting clients, serving the pairs
//! ([`pairs`](super::pairs)), timers, the health checks
//! ([`checks`](super::checks)), the console ([`console`](super::console)),
//! and the controls only the loop applies: drain, kill, reload and the
//! graceful shutdown (also on SIGHUP, SIGTERM, SIGINT).
//!
//! Tokens: pairs use `key * 2` and `key * 2 + 1`; console connections count
//! up from `console::AUX_BASE`; the listeners, the signalfd and the health
//! checks use tokens from the top of the range.

use crate::config::Config;
use crate::operations::access::{printable, EndReason, RateLimit, Record};
use crate::operations::admin::{AdminAuth, Reply};
use crate::operations::report::{self, Answer, Client, Control, View};
use crate::operations::stats::Stats;
use crate::protocol::errors::{ConsoleError, KillError, Refusal};
use crate::protocol::ring::BufPool;
use crate::protocol::scramble::Secret;
use crate::runtime::console::{self, Console, Work};
use crate::runtime::io::{Stream, TlsSettings, TlsSource};
use crate::runtime::pairs::{Pairs, Served};
use crate::runtime::probes::{Checks, SideDone, Sides};
use crate::runtime::sys::{self, fresh_salt, random20};
use crate::servers::probe::{Outcome, Reply as ProbeReply};
use crate::sessions::kill::{self, Kill};
use crate::sessions::pair::{Ctx, Event, KillVerdict, Pair};
use log::{error, info, warn};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const LISTENER: Token = Token(usize::MAX);
const SIGNALS: Token = Token(usize::MAX - 3);
/// How often a shutdown looks for pairs that have become idle.
const SHUTDOWN_SCAN: Duration = Duration::from_millis(100);
/// Failed-login warnings logged per second at most; the rest are counted.
const LOGIN_WARNINGS_PER_SECOND: u32 = 10;
/// Spare ring buffers kept for reuse.
const SPARE_BUFFERS: usize = 64;

/// What every pair's handling borrows from the proxy.
struct Shared {
    cfg: Config,
    pools: crate::servers::pool::Pools,
    bufs: BufPool,
    stats: Stats,
    /// Hash checked for unknown users.
    decoy: Secret,
    login_warnings: RateLimit,
    /// Bounds the warnings about running short (max_clients, descriptors).
    resource_warnings: RateLimit,
}

impl Shared {
    /// The pair's view of the proxy.
    fn ctx<'a>(&'a mut self, now: Instant, salt: &'a mut dyn FnMut() -> [u8; 20]) -> Ctx<'a> {
        Ctx {
            now,
            cfg: &self.cfg,
            pools: &mut self.pools,
            bufs: &mut self.bufs,
            salt,
            decoy: &self.decoy,
            login_warnings: &mut self.login_warnings,
            stats: &mut self.stats,
        }
    }

    /// What the console borrows.
    fn console<'a>(&'a mut self, now: Instant, tls: &'a TlsSettings) -> console::Shared<'a> {
        console::Shared {
            now,
            tls_mode: self.cfg.tls.mode,
            tls,
            admin: self.cfg.admin.as_ref().map(|a| AdminAuth { user: &a.user, stage2: &a.stage2 }),
            handshake_timeout: self.cfg.handshake_timeout,
            login_warnings: &mut self.login_warnings,
            resource_warnings: &mut self.resource_warnings,
            failed_logins: &mut self.stats.admin_logins_failed,
        }
    }
}

/// The main listener and when it may be accepted from.
struct Entrance {
    /// `None` once a shutdown has begun: new clients are refused.
    listener: Option<TcpListener>,
    /// The listener has connections we have not accepted yet.
    ready: bool,
    /// Accepting pauses until then after running out of descriptors.
    paused_until: Option<Instant>,
    /// Accepting waits for the first round of checks until this instant.
    starting_until: Option<Instant>,
    next_id: u32,
}

/// Pair deadlines in a heap, armed lazily.
#[derive(Default)]
struct Timers {
    heap: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    stamp: u64,
}

/// Signals, reload and shutdown.
#[derive(Default)]
struct Life {
    signals: Option<sys::Signals>,
    /// The file reload rereads.
    config_path: Option<String>,
    /// Reload applies `log_level` (false when RUST_LOG decides).
    apply_log_level: bool,
    shutdown: Option<Shutdown>,
    /// Leave the loop now (a second stop signal).
    exit_now: bool,
}

/// A graceful shutdown in progress.
struct Shutdown {
    /// When busy pairs are cut.
    deadline: Instant,
    /// When idle pairs are looked for next.
    next_scan: Instant,
}

/// TLS: what settings are made from, and those in force.
struct Tls {
    source: TlsSource,
    settings: TlsSettings,
}

/// The proxy.
pub struct Proxy {
    poll: Poll,
    shared: Shared,
    tls: Tls,
    pairs: Pairs,
    timers: Timers,
    entrance: Entrance,
    checks: Checks,
    /// Side connections carrying clients' KILLs to other servers.
    sides: Sides,
    console: Console,
    life: Life,
}

impl Proxy {
    /// Binds the listeners and starts the first round of health checks.
    pub fn bind(cfg: Config) -> std::io::Result<Proxy> {
        let poll = Poll::new()?;
        let mut listener = sys::listen(cfg.listen, cfg.reuse_port)?;
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        let console = Console::bind(
            poll.registry(),
            cfg.admin.as_ref().map(|a| a.listen),
            cfg.metrics_listen,
        )?;
        let pools = crate::servers::pool::Pools::from_config(&cfg);
        let source = TlsSource::new().map_err(std::io::Error::other)?;
        let settings = source.settings(&cfg, &pools).map_err(|e| std::io::Error::other(e.msg))?;
        if let Some(line) = source.describe(&settings, &cfg) {
            info!("{line}");
        }
        for p in cfg.pools.iter().filter(|p| p.tls.mode == crate::config::ServerTls::Required) {
            if p.tls.fingerprint.is_none() {
                warn!("pool {}: tls = required encrypts without checking the servers' certificates; verify_ca or a tls_fingerprint checks them", p.name);
            }
        }
        let now = Instant::now();
        let mut proxy = Proxy {
            poll,
            tls: Tls { source, settings },
            checks: Checks::new(pools.servers().len(), now),
            shared: Shared {
                bufs: BufPool::new(cfg.buffer_size, SPARE_BUFFERS),
                stats: Stats::new(now),
                decoy: Secret(random20()),
                login_warnings: RateLimit::new(Duration::from_secs(1), LOGIN_WARNINGS_PER_SECOND),
                resource_warnings: RateLimit::new(Duration::from_secs(1), 1),
                pools,
                cfg,
            },
            pairs: Pairs::default(),
            timers: Timers::default(),
            entrance: Entrance {
                listener: Some(listener),
                ready: false,
                paused_until: None,
                starting_until: None,
                next_id: kill::FIRST_ID,
            },
            sides: Sides::default(),
            console,
            life: Life::default(),
        };
        proxy.entrance.starting_until = Some(now + proxy.shared.cfg.connect_timeout);
        proxy.start_checks(now);
        Ok(proxy)
    }

    /// The address actually listened on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match &self.entrance.listener {
            Some(l) => l.local_addr(),
            None => Err(std::io::Error::new(ErrorKind::NotConnected, "not listening")),
        }
    }

    /// The admin console's and the metrics responder's addresses, if any.
    pub fn aux_addrs(&self) -> (Option<SocketAddr>, Option<SocketAddr>) {
        self.console.addrs()
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
        self.life.signals = Some(signals);
        self.life.config_path = Some(config_path);
        self.life.apply_log_level = apply_log_level;
        Ok(())
    }

    /// Runs until a shutdown completes.
    pub fn run(&mut self) -> std::io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            if self.life.exit_now {
                return Ok(());
            }
            if self.life.shutdown.is_some() && self.pairs.live == 0 {
                info!("shutdown complete: no client left");
                return Ok(());
            }
            let timeout = self.poll_timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            let mut signalled = false;
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.entrance.ready = true,
                    SIGNALS => signalled = true,
                    console::ADMIN_LISTENER => self.accept_console(true, now),
                    console::METRICS_LISTENER => self.accept_console(false, now),
                    t => {
                        if let Some(server) = self.checks.server_of(t) {
                            let sh = &mut self.shared;
                            self.checks.on_event(
                                server,
                                now,
                                self.poll.registry(),
                                (&sh.cfg, &self.tls.settings),
                                &mut sh.pools,
                            );
                            sh.stats.tls_failures_server +=
                                std::mem::take(&mut self.checks.tls_failures);
                        } else if let Some(k) = self.sides.of(t) {
                            let done = self.sides.on_event(
                                k,
                                self.poll.registry(),
                                &self.tls.settings,
                                &mut self.shared.pools,
                            );
                            self.side_done(done, now);
                        } else if let Some(k) = Console::conn_of(t) {
                            self.serve_console(k, None, now);
                        } else {
                            self.pairs.mark(t.0 / 2, t.0 % 2, ev);
                        }
                    }
                }
            }
            if signalled {
                self.take_signals(now);
            }
            self.run_pending(now);
            self.expire(now);
            self.accept(now);
            self.run_pending(now);
            self.pairs.recycle();
            if let Some(n) = self.shared.login_warnings.take_suppressed(now) {
                warn!("{n} more failed logins in the last second were not logged one by one");
            }
        }
    }

    /// Everything that happens at an instant rather than on an event.
    fn expire(&mut self, now: Instant) {
        self.expire_timers(now);
        let sh = &mut self.shared;
        self.checks.expire(now, self.poll.registry(), &sh.cfg, &mut sh.pools);
        if self.console.retry_at.is_some_and(|t| now >= t) {
            self.console.retry_at = None;
            self.accept_console(true, now);
            self.accept_console(false, now);
        }
        self.console.expire(now, self.poll.registry());
        let sh = &mut self.shared;
        for done in self.sides.expire(now, self.poll.registry(), &sh.cfg, &mut sh.pools) {
            self.side_done(Some(done), now);
        }
        self.shutdown_scan(now);
        if now >= self.checks.next_round {
            self.start_checks(now);
        }
    }

    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if self.pairs.has_pending() {
            return Some(Duration::ZERO);
        }
        let others = [
            self.timers.heap.peek().map(|Reverse((t, _, _))| *t),
            self.entrance.paused_until,
            self.entrance.starting_until,
            Some(self.checks.next_round),
            self.shared.login_warnings.flush_at(),
            self.life.shutdown.as_ref().map(|s| s.next_scan),
        ];
        let next = others
            .into_iter()
            .flatten()
            .chain(self.checks.deadlines())
            .chain(self.sides.deadlines())
            .chain(self.console.deadlines())
            .min();
        next.map(|t| t.saturating_duration_since(now))
    }

    fn run_pending(&mut self, now: Instant) {
        let batch = self.pairs.take_pending();
        for &key in &batch {
            self.drive(key, now, None);
        }
        self.pairs.return_pending(batch);
    }

    // ----- accepting -----

    fn accept(&mut self, now: Instant) {
        let e = &mut self.entrance;
        if !e.ready {
            return;
        }
        if let Some(until) = e.starting_until {
            // Greet once a backend has told its version (or none can).
            let waiting =
                now < until && self.shared.pools.advertised().is_none() && self.checks.any();
            if waiting {
                return;
            }
            e.starting_until = None;
        }
        if e.paused_until.is_some_and(|until| now < until) {
            return;
        }
        e.paused_until = None;
        // Bounded, so a connection storm cannot starve established pairs.
        for _ in 0..256 {
            let Some(listener) = self.entrance.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((tcp, peer)) => self.add_pair(Stream::accepted(tcp), peer, now),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.entrance.ready = false;
                    return;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    // EMFILE/ENFILE and the like: the connection stays queued
                    // and, edge-triggered, no new event will come for it, so
                    // retry on a timer instead of spinning.
                    let pause = console::ACCEPT_BACKOFF;
                    warn!("accept failed: {e}; pausing accepts for {}ms", pause.as_millis());
                    self.entrance.paused_until = Some(now + pause);
                    return;
                }
            }
        }
    }

    fn add_pair(&mut self, mut client: Stream, peer: SocketAddr, now: Instant) {
        let sh = &mut self.shared;
        sh.stats.accepted += 1;
        if self.pairs.live >= sh.cfg.max_clients {
            sh.stats.refused += 1;
            // ERR 1040 as the first packet, as a server does when full; a
            // fresh socket takes these few bytes at once.
            let _ = client.write_vec(&mut Refusal::TooManyConnections.packet(0));
            if sh.resource_warnings.allow(now) {
                warn!("max_clients ({}) reached: refusing {peer}", sh.cfg.max_clients);
            }
            return;
        }
        let id = self.entrance.next_id;
        self.entrance.next_id = kill::next_id(id);
        let local = client.local_addr().unwrap_or(sh.cfg.listen);
        let trusted = sh.cfg.proxy_protocol_from.iter().any(|net| net.contains(peer.ip()));
        let mut salt = fresh_salt;
        let mut ctx = sh.ctx(now, &mut salt);
        let added = self
            .pairs
            .add(self.poll.registry(), client, || Pair::new(id, peer, local, trusted, &mut ctx));
        if let Err(e) = added {
            warn!("cannot register client {peer}: {e}");
        }
    }

    // ----- serving pairs -----

    /// Tells pair `key` of `ev` (something that did not come from its
    /// sockets: a deadline, KILL, a shutdown), if any, then serves it. A
    /// bug that panics while doing so ends that pair, not the process and
    /// everyone else's connections.
    fn drive(&mut self, key: usize, now: Instant, ev: Option<Event>) {
        let Some(conn) = self.pairs.get_mut(key) else {
            return;
        };
        let mut salt = fresh_salt;
        let mut ctx = self.shared.ctx(now, &mut salt);
        let registry = self.poll.registry();
        let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if let Some(ev) = ev {
                conn.pair.handle(ev, &mut ctx);
            }
            let served = conn.serve(key, registry, &self.tls.settings, &mut ctx);
            (served, conn.pair.finished().cloned(), conn.pair.wants_kill())
        }));
        match served {
            Err(_) => {
                error!("conn key={key}: internal error while serving it; closing it");
                self.close(key, EndReason::ProtocolError("internal error"), now);
            }
            Ok((_, Some(reason), _)) => self.close(key, reason, now),
            Ok((served, None, kill)) => {
                if let Some(kill) = kill {
                    self.route_kill(key, kill, now);
                }
                if let Served::Again = served {
                    self.pairs.requeue(key);
                }
                self.arm_timer(key);
            }
        }
    }

    /// Decides what a client's KILL naming a myroute id does (MySQL's rules:
    /// a user may kill its own sessions, anything else is the backend's
    /// call, with the killer's privileges): through the killer's own backend
    /// session when the target's is on the same server, else through a side
    /// connection logged in as the killer.
    fn route_kill(&mut self, key: usize, kill: Kill, now: Instant) {
        let Some(killer) = self.pairs.get_mut(key).map(|c| &c.pair) else {
            return;
        };
        let (killer_id, killer_server, killer_user) =
            (killer.id, killer.backend_session(), killer.user.clone());
        let identity = killer.identity().cloned();
        let target = u32::try_from(kill.id).ok().and_then(|id| self.pairs.find(id));
        let target = target.and_then(|t| {
            let p = &self.pairs.get_mut(t)?.pair;
            Some((t, p.backend_session().zip(p.pool), p.user.clone()))
        });
        let verdict = match target {
            None => KillVerdict::Answer(KillError::UnknownThread(kill.id).payload()),
            // On the killer's server: the backend decides, by its own id.
            Some((_, Some(((server, backend_id), _)), _))
                if killer_server.map(|k| k.0) == Some(server) =>
            {
                KillVerdict::Through(backend_id)
            }
            // Statements after the KILL run on the killer's own session,
            // which is not where the KILL is carried out: one reply
            // cannot hold both.
            Some((_, session, user))
                if kill.rest > 0 && (session.is_some() || kill.query || user == killer_user) =>
            {
                KillVerdict::Answer(KillError::FollowedByStatements(kill.id).payload())
            }
            Some((_, Some(((server, backend_id), pool)), _)) => {
                let Some(id) = identity else {
                    let server = self.shared.pools.server(server).addr.to_string();
                    let err = KillError::OtherServer { id: kill.id, server };
                    self.drive(key, now, Some(Event::Kill(KillVerdict::Answer(err.payload()))));
                    return;
                };
                let sh = &mut self.shared;
                let opened = self.sides.open(
                    id,
                    kill.statement(backend_id, &[]),
                    (server, pool),
                    (key, killer_id),
                    now,
                    self.poll.registry(),
                    &sh.cfg,
                    &sh.pools,
                );
                match opened {
                    Ok(()) => KillVerdict::Side,
                    Err(outcome) => {
                        KillVerdict::Answer(side_answer(outcome, sh.pools.server(server).addr))
                    }
                }
            }
            // Not logged in to a backend yet: nothing runs there; only its
            // own user may end the connection.
            Some(_) if kill.query => KillVerdict::Answer(ok_payload()),
            Some((target, None, user)) if user == killer_user => {
                info!("conn={} killed by its own user from conn={killer_id}", kill.id);
                self.drive(target, now, Some(Event::Stop(EndReason::Killed)));
                KillVerdict::Answer(ok_payload())
            }
            Some(_) => KillVerdict::Answer(KillError::NotOwner(kill.id).payload()),
        };
        self.drive(key, now, Some(Event::Kill(verdict)));
    }

    /// A side connection ended: its answer goes to the pair that asked.
    fn side_done(&mut self, done: Option<SideDone>, now: Instant) {
        let Some(SideDone { key, id, outcome, server }) = done else {
            return;
        };
        if self.pairs.get_mut(key).is_some_and(|c| c.pair.id == id) {
            let answer = side_answer(outcome, self.shared.pools.server(server).addr);
            self.drive(key, now, Some(Event::Kill(KillVerdict::Answer(answer))));
        }
    }

    fn close(&mut self, key: usize, reason: EndReason, now: Instant) {
        let Some((mut p, server)) = self.pairs.remove(key, self.poll.registry()) else {
            return;
        };
        let sh = &mut self.shared;
        if let Some(server) = server {
            sh.pools.released(server);
        }
        p.up.clear(&mut sh.bufs);
        p.down.clear(&mut sh.bufs);
        let record = Record {
            id: p.id,
            client: p.peer,
            user: p.user.as_deref(),
            pool: p.pool.map(|i| sh.pools.pool(i).name.as_str()),
            server: p.server.map(|i| sh.pools.server(i).addr),
            duration: now.saturating_duration_since(p.started),
            bytes_in: p.bytes_in,
            bytes_out: p.bytes_out,
            reason: &reason,
            tls: p.client_tls.as_ref().map(|t| t.version),
        };
        info!("{record}");
        sh.stats.ended(&reason, p.bytes_in, p.bytes_out);
    }

    // ----- timers -----

    fn arm_timer(&mut self, key: usize) {
        let Some(conn) = self.pairs.get_mut(key) else {
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
        self.timers.stamp += 1;
        conn.armed = Some((t, self.timers.stamp));
        self.timers.heap.push(Reverse((t, key, self.timers.stamp)));
    }

    fn expire_timers(&mut self, now: Instant) {
        while let Some(Reverse((t, key, stamp))) = self.timers.heap.peek().copied() {
            if t > now {
                break;
            }
            self.timers.heap.pop();
            let Some(conn) = self.pairs.get_mut(key) else {
                continue;
            };
            // A stale entry (the deadline moved since) is skipped.
            if conn.armed.map(|(_, s)| s) != Some(stamp) {
                continue;
            }
            conn.armed = None;
            self.drive(key, now, Some(Event::Timeout));
        }
    }

    // ----- health checks -----

    fn start_checks(&mut self, now: Instant) {
        let sh = &mut self.shared;
        let registry = self.poll.registry();
        self.checks.start_round(now, registry, &sh.cfg, &mut sh.pools, &mut sh.resource_warnings);
    }

    // ----- the console and its controls -----

    fn accept_console(&mut self, admin: bool, now: Instant) {
        let mut sh = self.shared.console(now, &self.tls.settings);
        let work = self.console.accept(admin, self.poll.registry(), &mut sh);
        for (k, w) in work {
            self.serve_console(k, Some(w), now);
        }
    }

    /// Serves console connection `k` (starting with `work` it already
    /// asked for), answering what it asks until it asks nothing more.
    fn serve_console(&mut self, k: usize, mut work: Option<Work>, now: Instant) {
        if work.is_none() {
            let mut sh = self.shared.console(now, &self.tls.settings);
            work = self.console.serve(k, self.poll.registry(), &mut sh);
        }
        while let Some(w) = work {
            let answer = match w {
                Work::Http(route) => {
                    console::Answer::Http(report::http_answer(route, &self.view(now)))
                }
                Work::Command { cmd, user, peer } => {
                    let reply = match report::answer(cmd, &self.view(now)) {
                        Answer::Reply(r) => r,
                        Answer::Apply(c) => self.apply(c, &user, peer, now),
                    };
                    console::Answer::Reply(reply)
                }
            };
            let mut sh = self.shared.console(now, &self.tls.settings);
            work = self.console.answer(k, answer, self.poll.registry(), &mut sh);
        }
    }

    /// A read-only view of the proxy for reports.
    fn view(&self, now: Instant) -> View<'_> {
        let clients = self
            .pairs
            .iter()
            .map(|p| Client {
                id: p.id,
                backend_id: p.backend_id,
                user: p.user.as_deref().map(printable),
                peer: p.peer,
                pool: p.pool,
                server: p.server,
                state: p.state_name(),
                tls: p.client_tls.as_ref().map(|t| format!("{} {}", t.version, t.cipher)),
                started: p.started,
                bytes_in: p.bytes_in,
                bytes_out: p.bytes_out,
            })
            .collect();
        View {
            now,
            cfg: &self.shared.cfg,
            pools: &self.shared.pools,
            stats: &self.shared.stats,
            clients,
            shutting_down: self.life.shutdown.is_some(),
        }
    }

    /// Applies a control the console asked for: the only place they take
    /// effect.
    fn apply(&mut self, control: Control, user: &str, peer: SocketAddr, now: Instant) -> Reply {
        let who = peer.ip();
        match control {
            Control::Drain(server, drained) => {
                let pools = &mut self.shared.pools;
                pools.set_drained(server, drained);
                let (addr, active) = (pools.server(server).addr, pools.server(server).active);
                if drained {
                    warn!(
                        "server {addr} drained by {user} from {who}: {active} connections finish"
                    );
                    Reply::Ok(format!("server {addr} drained; its {active} connections go on"))
                } else {
                    warn!("server {addr} enabled by {user} from {who}");
                    Reply::Ok(format!("server {addr} enabled"))
                }
            }
            Control::Kill(id) => {
                let Some(key) = self.pairs.find(id) else {
                    return Reply::Err(ConsoleError::UnknownThread(id));
                };
                info!("conn={id} killed by {user} from {who}");
                self.drive(key, now, Some(Event::Stop(EndReason::Killed)));
                Reply::Ok(String::new())
            }
            Control::Reload => match self.reload() {
                Ok(summary) => Reply::Ok(summary),
                Err(e) => Reply::Err(ConsoleError::ReloadFailed(e)),
            },
            Control::Shutdown => {
                info!("shutdown requested by {user} from {who}");
                self.begin_shutdown(now);
                Reply::Ok("shutting down".into())
            }
        }
    }

    // ----- signals, reload, shutdown -----

    fn take_signals(&mut self, now: Instant) {
        loop {
            let next = match self.life.signals.as_ref().map(sys::Signals::next) {
                Some(Ok(Some(sig))) => sig,
                Some(Ok(None)) | None => return,
                Some(Err(e)) => {
                    error!("reading signals failed: {e}");
                    return;
                }
            };
            match next {
                libc::SIGHUP => {
                    info!("SIGHUP: reloading the configuration");
                    let _ = self.reload();
                }
                _ if self.life.shutdown.is_some() => {
                    warn!("second stop signal: exiting now, {} clients cut", self.pairs.live);
                    self.life.exit_now = true;
                    return;
                }
                sig => {
                    let name = if sig == libc::SIGINT { "SIGINT" } else { "SIGTERM" };
                    info!("{name}: shutting down");
                    self.begin_shutdown(now);
                }
            }
        }
    }

    /// Rereads the configuration file. Applies what can change while
    /// running to new connections; open pairs go on as they are. Host names
    /// are looked up here, inside the loop: a slow resolver pauses it.
    fn reload(&mut self) -> Result<String, String> {
        let Some(path) = self.life.config_path.clone() else {
            return Err("no configuration file to reread".into());
        };
        let parsed =
            std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}")).and_then(|text| {
                crate::config::parse_with(&text, &mut crate::runtime::io::resolve)
                    .map_err(|e| format!("{path}:{}: {}", e.line, e.msg))
            });
        let mut new = match parsed {
            Ok(c) => c,
            Err(e) => {
                self.shared.stats.reload_failures += 1;
                error!("reload failed, configuration unchanged: {e}");
                return Err(e);
            }
        };
        keep_fixed_settings(&self.shared.cfg, &mut new);
        // Certificates and keys are reread; one that fails keeps the old.
        let mut pools = self.shared.pools.clone();
        pools.apply(&new);
        let settings = match self.tls.source.settings(&new, &pools) {
            Ok(s) => s,
            Err(e) => {
                let e = format!("{path}:{}: {}", e.line, e.msg);
                self.shared.stats.reload_failures += 1;
                error!("reload failed, configuration unchanged: {e}");
                return Err(e);
            }
        };
        if self.life.apply_log_level {
            log::set_max_level(new.log_level);
        }
        self.tls.settings = settings;
        let sh = &mut self.shared;
        sh.pools = pools;
        self.checks.resize(sh.pools.servers().len());
        for s in sh.pools.servers().iter().filter(|s| !s.in_pool && s.active > 0) {
            info!(
                "server {} is no longer in any pool: draining its {} connections",
                s.addr, s.active
            );
        }
        let summary =
            format!("configuration reloaded: {} pools, {} users", new.pools.len(), new.users.len());
        sh.cfg = new;
        sh.stats.reloads += 1;
        info!("{summary}");
        Ok(summary)
    }

    /// Stops accepting clients and ends each pair once it is idle, or at
    /// `shutdown_timeout`.
    fn begin_shutdown(&mut self, now: Instant) {
        if self.life.shutdown.is_some() {
            return;
        }
        if let Some(mut l) = self.entrance.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        self.entrance.ready = false;
        let t = self.shared.cfg.shutdown_timeout;
        info!(
            "no longer accepting clients; {} open, waiting up to {}s for busy ones",
            self.pairs.live,
            t.as_secs()
        );
        self.life.shutdown = Some(Shutdown { deadline: now + t, next_scan: now });
    }

    /// During a shutdown: ends idle pairs and those not logged in yet, and
    /// every pair at the deadline.
    fn shutdown_scan(&mut self, now: Instant) {
        let Some(sd) = self.life.shutdown.as_mut() else {
            return;
        };
        if now < sd.next_scan {
            return;
        }
        sd.next_scan = now + SHUTDOWN_SCAN;
        let cut = now >= sd.deadline;
        for key in self.pairs.keys() {
            let Some(conn) = self.pairs.get_mut(key) else {
                continue;
            };
            // At the deadline every pair is stopped, those still flushing
            // to a peer that does not read included.
            if cut || conn.pair.is_idle() || conn.pair.awaits_client_login() {
                self.drive(key, now, Some(Event::Stop(EndReason::Shutdown)));
            }
        }
        if cut && self.pairs.live > 0 {
            warn!("shutdown_timeout reached: closing {} clients", self.pairs.live);
        }
    }
}

/// An ERR payload.
/// An OK payload: nothing affected, autocommit.
fn ok_payload() -> Vec<u8> {
    vec![0, 0, 0, 2, 0, 0, 0]
}

/// What a KILL's client is told of its side connection: the server's own
/// OK or ERR, or why the server could not be asked.
fn side_answer(outcome: Outcome, server: SocketAddr) -> Vec<u8> {
    match outcome {
        Outcome::Done(ProbeReply::Packet(p)) | Outcome::Refused(p) => p,
        Outcome::Done(_) => ok_payload(),
        Outcome::Failed(why) => {
            KillError::ServerUnreachable { server: server.to_string(), why: why.to_string() }
                .payload()
        }
    }
}

/// Sockets and process settings are fixed at start: a reload keeps them,
/// and says so, rather than pretend they changed.
fn keep_fixed_settings(old: &Config, new: &mut Config) {
    let fixed = [
        ("listen", old.listen != new.listen),
        (
            "admin.listen",
            old.admin.as_ref().map(|a| a.listen) != new.admin.as_ref().map(|a| a.listen),
        ),
        ("metrics.listen", old.metrics_listen != new.metrics_listen),
        ("reuse_port", old.reuse_port != new.reuse_port),
        ("buffer_size", old.buffer_size != new.buffer_size),
        ("user", old.run_as != new.run_as),
        ("pid_file", old.pid_file != new.pid_file),
    ];
    for (key, changed) in fixed {
        if changed {
            warn!("reload: {key} changed; it takes effect only at restart");
        }
    }
    new.listen = old.listen;
    new.metrics_listen = old.metrics_listen;
    new.reuse_port = old.reuse_port;
    new.buffer_size = old.buffer_size;
    new.run_as = old.run_as.clone();
    new.pid_file = old.pid_file.clone();
    match (&old.admin, &mut new.admin) {
        (Some(o), Some(n)) => n.listen = o.listen,
        // A console cannot appear or vanish without its socket.
        (o, n) => *n = o.clone(),
    }
}
