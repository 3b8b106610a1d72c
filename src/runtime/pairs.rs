//! The slab of connection pairs and the moving of their bytes: each pair's
//! client and backend [`Stream`]s, their readiness, and the pumps between
//! sockets and rings.
//!
//! Readiness is edge-triggered: each socket is registered once for
//! READABLE | WRITABLE, events only set per-side flags, and a flag is cleared
//! only when the socket says it has nothing more (WouldBlock or a short
//! read/write). Backpressure is one rule: a side is not read while its ring
//! is full; its flag stays set, so it is read again as soon as the other side
//! drains the ring.
//!
//! Tokens: `key * 2` is a pair's client socket, `key * 2 + 1` its backend
//! socket.

use crate::runtime::io::{Connect, IoStatus, Stream, TlsEnd, TlsSettings};
use crate::sessions::pair::{Ctx, Event, Pair, Side, TlsInfo};
use mio::{Registry, Token};
use std::time::Instant;

/// Rounds of read/write one pair gets per pass before others are served.
const MAX_ROUNDS: usize = 8;

/// Per-socket readiness as last reported and not yet used up.
#[derive(Default, Clone, Copy)]
pub struct Ready {
    pub readable: bool,
    pub writable: bool,
    /// The peer hung up: read until 0 rather than trusting short reads.
    pub hup: bool,
}

impl Ready {
    /// Adds what a poll event reported.
    pub fn mark(&mut self, ev: &mio::event::Event) {
        self.readable |= ev.is_readable() || ev.is_read_closed() || ev.is_error();
        self.writable |= ev.is_writable() || ev.is_write_closed() || ev.is_error();
        self.hup |= ev.is_read_closed() || ev.is_error();
    }
}

/// The backend socket of a pair.
struct Backend {
    stream: Stream,
    attempt: u32,
    server: usize,
    connected: bool,
    ready: Ready,
}

/// A slab entry: one pair and its sockets.
pub struct Conn {
    pub pair: Pair,
    client: Stream,
    client_ready: Ready,
    backend: Option<Backend>,
    /// Deadline currently in the timer heap for this pair, and its stamp.
    pub armed: Option<(Instant, u64)>,
    /// On the pending list already.
    pub queued: bool,
}

/// The pairs: a slab with a free list. Keys closed during a pass go back on
/// the free list only after it, so a key is never reused within one batch
/// of events.
#[derive(Default)]
pub struct Pairs {
    slab: Vec<Option<Conn>>,
    free: Vec<usize>,
    closed: Vec<usize>,
    /// Pairs with work left, served before the next poll.
    pending: Vec<usize>,
    spare_pending: Vec<usize>,
    /// Pairs alive now (for `max_clients`).
    pub live: usize,
}

impl Pairs {
    pub fn get_mut(&mut self, key: usize) -> Option<&mut Conn> {
        self.slab.get_mut(key).and_then(Option::as_mut)
    }

    /// Every open pair.
    pub fn iter(&self) -> impl Iterator<Item = &Pair> {
        self.slab.iter().flatten().map(|c| &c.pair)
    }

    /// The key of the pair with connection id `id`.
    pub fn find(&self, id: u32) -> Option<usize> {
        self.slab.iter().position(|c| c.as_ref().is_some_and(|c| c.pair.id == id))
    }

    /// Keys of every slot, open or not.
    pub fn keys(&self) -> std::ops::Range<usize> {
        0..self.slab.len()
    }

    /// Adds a pair for a client socket, registered under the key's token.
    /// The greeting is queued, so the pair is pending at once.
    pub fn add(
        &mut self,
        registry: &Registry,
        mut client: Stream,
        new_pair: impl FnOnce() -> Pair,
    ) -> std::io::Result<()> {
        let key = self.free.pop().unwrap_or_else(|| {
            self.slab.push(None);
            self.slab.len() - 1
        });
        if let Err(e) = client.register(registry, Token(key * 2)) {
            self.free.push(key);
            return Err(e);
        }
        self.live += 1;
        self.slab[key] = Some(Conn {
            pair: new_pair(),
            client,
            // A just-accepted socket can take the greeting at once.
            client_ready: Ready { writable: true, ..Ready::default() },
            backend: None,
            armed: None,
            queued: true,
        });
        self.pending.push(key);
        Ok(())
    }

    /// Records a poll event for `key`'s socket `side` (0 client, 1 backend)
    /// and queues the pair.
    pub fn mark(&mut self, key: usize, side: usize, ev: &mio::event::Event) {
        let Some(conn) = self.get_mut(key) else {
            return; // a closed pair: events can trail its end
        };
        let ready = match (side, conn.backend.as_mut()) {
            (0, _) => &mut conn.client_ready,
            (_, Some(b)) => &mut b.ready,
            (_, None) => return,
        };
        ready.mark(ev);
        if !conn.queued {
            conn.queued = true;
            self.pending.push(key);
        }
    }

    /// Queues `key` for the next pass.
    pub fn requeue(&mut self, key: usize) {
        if let Some(conn) = self.get_mut(key) {
            if !conn.queued {
                conn.queued = true;
                self.pending.push(key);
            }
        }
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Takes the pending list for a pass (its storage is reused).
    pub fn take_pending(&mut self) -> Vec<usize> {
        let mut batch = std::mem::take(&mut self.spare_pending);
        std::mem::swap(&mut batch, &mut self.pending);
        for &key in &batch {
            if let Some(conn) = self.slab.get_mut(key).and_then(Option::as_mut) {
                conn.queued = false;
            }
        }
        batch
    }

    /// Gives the storage of a served pending list back.
    pub fn return_pending(&mut self, mut batch: Vec<usize>) {
        batch.clear();
        self.spare_pending = batch;
    }

    /// Removes pair `key`, deregistering its sockets; returns it and the
    /// backend server it held, if any.
    pub fn remove(&mut self, key: usize, registry: &Registry) -> Option<(Pair, Option<usize>)> {
        let mut conn = self.slab.get_mut(key).and_then(Option::take)?;
        let server = conn.backend.take().map(|mut b| {
            b.stream.deregister(registry);
            b.server
        });
        conn.client.deregister(registry);
        self.live -= 1;
        self.closed.push(key);
        Some((conn.pair, server))
    }

    /// After a pass: closed keys may be reused.
    pub fn recycle(&mut self) {
        self.free.append(&mut self.closed);
    }
}

/// How serving a pair ended.
pub enum Served {
    /// Nothing more moves now.
    Idle,
    /// Its share of this pass is used up; serve it again before polling.
    Again,
}

impl Conn {
    /// Serves the pair: reads, lets it react, writes, starts TLS, opens or
    /// drops its backend socket, until nothing moves or its share of this
    /// pass is used up.
    pub fn serve(
        &mut self,
        key: usize,
        registry: &Registry,
        tls: &TlsSettings,
        ctx: &mut Ctx,
    ) -> Served {
        for _ in 0..MAX_ROUNDS {
            let mut moved = false;
            moved |= self.client_in(ctx);
            moved |= self.backend_in(ctx);
            moved |= self.backend_out(ctx);
            moved |= self.client_out(ctx);
            moved |= self.start_tls(tls, ctx);
            moved |= self.reconcile_backend(key, registry, ctx);
            if self.pair.finished().is_some() || !moved {
                return Served::Idle;
            }
        }
        // Fairness: come back to it after everyone else.
        Served::Again
    }

    /// Client socket → `up`.
    fn client_in(&mut self, ctx: &mut Ctx) -> bool {
        let pair = &mut self.pair;
        if !self.client_ready.readable || !pair.may_read(Side::Client) || pair.up.is_full() {
            return false;
        }
        pair.up.attach(ctx.bufs);
        let before = pair.up.len();
        let (n, st) = self.client.read_into(&mut pair.up, self.client_ready.hup);
        // A TLS handshake that ended is told before the bytes read with it.
        tls_end(&mut self.client, pair, Side::Client, ctx);
        if n > 0 {
            pair.client_bytes_arrived(before, n, ctx);
            // While relaying, the scan above is all the pair needs to see.
            if !pair.is_relaying() {
                pair.handle(Event::ClientData, ctx);
            }
        }
        pair.up.release_if_empty(ctx.bufs);
        side_status(st, &mut self.client_ready.readable, pair, Side::Client, ctx);
        n > 0 || st != IoStatus::Open
    }

    /// Backend socket → `down` (and connect completion).
    fn backend_in(&mut self, ctx: &mut Ctx) -> bool {
        let pair = &mut self.pair;
        let Some(b) = self.backend.as_mut() else {
            return false;
        };
        if !b.connected {
            if !(b.ready.writable || b.ready.readable) {
                return false;
            }
            match b.stream.connect_result() {
                Connect::Pending => {
                    b.ready.readable = false;
                    b.ready.writable = false;
                    return false;
                }
                Connect::Done => {
                    b.connected = true;
                    pair.handle(Event::BackendConnected, ctx);
                }
                // The pair moves on; reconcile drops this attempt's socket.
                Connect::Failed(why) => pair.handle(Event::BackendFailed(why), ctx),
            }
            return true;
        }
        if !b.ready.readable || !pair.may_read(Side::Backend) || pair.down.is_full() {
            return false;
        }
        pair.down.attach(ctx.bufs);
        let before = pair.down.len();
        let (n, st) = b.stream.read_into(&mut pair.down, b.ready.hup);
        tls_end(&mut b.stream, pair, Side::Backend, ctx);
        if n > 0 {
            pair.backend_bytes_arrived(before, n, ctx);
            if !pair.is_relaying() {
                pair.handle(Event::BackendData, ctx);
            }
        }
        pair.down.release_if_empty(ctx.bufs);
        side_status(st, &mut b.ready.readable, pair, Side::Backend, ctx);
        n > 0 || st != IoStatus::Open
    }

    /// myroute's login packets, then `up` → backend socket (and TLS
    /// records waiting to go).
    fn backend_out(&mut self, ctx: &mut Ctx) -> bool {
        let pair = &mut self.pair;
        let Some(b) = self.backend.as_mut() else {
            return false;
        };
        if !b.connected || !b.ready.writable {
            return false;
        }
        let mut moved = 0;
        let mut st = IoStatus::Open;
        if !pair.to_backend.is_empty() {
            (moved, st) = b.stream.write_vec(&mut pair.to_backend);
        }
        let limit = if pair.is_relaying() { pair.up_limit() } else { usize::MAX };
        if st == IoStatus::Open && pair.may_relay_up() && !pair.up.is_empty() && limit > 0 {
            let (n, s) = b.stream.write_from(&mut pair.up, limit);
            moved += n;
            st = s;
            if pair.is_relaying() {
                pair.up_sent(ctx);
            }
            pair.up.release_if_empty(ctx.bufs);
        }
        if st == IoStatus::Open && b.stream.wants_write() {
            st = b.stream.flush();
        }
        side_status(st, &mut b.ready.writable, pair, Side::Backend, ctx);
        moved > 0
    }

    /// `down` → client socket (and TLS records waiting to go).
    fn client_out(&mut self, ctx: &mut Ctx) -> bool {
        let pair = &mut self.pair;
        let waiting = self.client.wants_write();
        if !self.client_ready.writable || (pair.down.is_empty() && !waiting) {
            return false;
        }
        let (n, mut st) = self.client.write_from(&mut pair.down, usize::MAX);
        pair.client_bytes_sent(n, ctx);
        pair.down.release_if_empty(ctx.bufs);
        if st == IoStatus::Open && self.client.wants_write() {
            st = self.client.flush();
        }
        side_status(st, &mut self.client_ready.writable, pair, Side::Client, ctx);
        n > 0
    }

    /// Starts the TLS handshake the pair asks for: toward the client right
    /// after its SSLRequest (bytes already read behind it are its first
    /// records), toward the backend once myroute's SSLRequest is sent.
    fn start_tls(&mut self, tls: &TlsSettings, ctx: &mut Ctx) -> bool {
        let Some(side) = self.pair.take_tls_request() else {
            return false;
        };
        let started = match side {
            Side::Client => {
                let up = &mut self.pair.up;
                let (a, b) = up.as_slices();
                let early = [a, b].concat();
                up.consume(early.len());
                up.release_if_empty(ctx.bufs);
                self.client.start_tls_server(tls, &early)
            }
            Side::Backend => match (self.backend.as_mut(), self.pair.pool) {
                (Some(b), Some(pool)) => {
                    let host = &ctx.pools.server(b.server).host;
                    b.stream.start_tls_client(tls, pool, host)
                }
                _ => Err("no backend"),
            },
        };
        match (started, side) {
            (Err(why), _) => self.pair.handle(Event::TlsFailed(side, why), ctx),
            // Records that came with the SSLRequest may have ended the
            // handshake already (an alert, garbage): no later read would
            // tell.
            (Ok(()), Side::Client) => tls_end(&mut self.client, &mut self.pair, side, ctx),
            (Ok(()), Side::Backend) => {}
        }
        true
    }

    /// Opens or drops the backend socket so it matches what the pair wants.
    /// Returns true if anything changed.
    fn reconcile_backend(&mut self, key: usize, registry: &Registry, ctx: &mut Ctx) -> bool {
        let mut changed = false;
        // Bounded by the pool size: each failed immediate connect moves the
        // pair to its next server or to giving up.
        for _ in 0..=crate::config::MAX_MEMBERS {
            let want = self.pair.backend();
            let have = self.backend.as_ref().map(|b| (b.attempt, b.server));
            if want == have {
                return changed;
            }
            changed = true;
            if let Some(mut old) = self.backend.take() {
                if self.pair.take_backend_quit() {
                    // A clean goodbye (COM_QUIT), so the server does not
                    // count an aborted connection.
                    let _ = old.stream.write_vec(&mut vec![1, 0, 0, 0, 1]);
                }
                old.stream.deregister(registry);
                ctx.pools.released(old.server);
            }
            let Some((attempt, server)) = want else {
                return changed;
            };
            let addr = ctx.pools.server(server).addr;
            let opened = Stream::connect(ctx.cfg.source_address, addr).and_then(|mut stream| {
                stream.register(registry, Token(key * 2 + 1))?;
                Ok(stream)
            });
            match opened {
                Ok(stream) => {
                    ctx.pools.opened(server);
                    ctx.stats.backend_connects += 1;
                    self.backend = Some(Backend {
                        stream,
                        attempt,
                        server,
                        connected: false,
                        ready: Ready::default(),
                    });
                }
                Err(e) if is_local_shortage(&e) => {
                    self.pair.handle(Event::NoBackendSocket(e.to_string()), ctx)
                }
                Err(e) => self.pair.handle(Event::BackendFailed(e.to_string()), ctx),
            }
        }
        changed
    }
}

/// Tells the pair how a TLS handshake on `side` ended, once it has.
fn tls_end(stream: &mut Stream, pair: &mut Pair, side: Side, ctx: &mut Ctx) {
    match stream.tls_end() {
        Some(TlsEnd::Ready { version, cipher, cert_sha256 }) => {
            pair.handle(Event::TlsReady(side, TlsInfo { version, cipher, cert_sha256 }), ctx)
        }
        Some(TlsEnd::Failed(why)) => pair.handle(Event::TlsFailed(side, why), ctx),
        None => {}
    }
}

/// What a socket's status means for its readiness flag and the pair.
fn side_status(st: IoStatus, ready: &mut bool, pair: &mut Pair, side: Side, ctx: &mut Ctx) {
    let ev = match (st, side) {
        (IoStatus::Open, _) => return,
        (IoStatus::Drained, _) => {
            *ready = false;
            return;
        }
        (IoStatus::Tls(why), side) => Event::TlsFailed(side, why),
        (IoStatus::Closed, Side::Client) => Event::ClientClosed(None),
        (IoStatus::Failed(k), Side::Client) => Event::ClientClosed(Some(k)),
        (IoStatus::Closed, Side::Backend) => Event::BackendFailed("closed the connection".into()),
        (IoStatus::Failed(k), Side::Backend) => Event::BackendFailed(k.to_string()),
    };
    pair.handle(ev, ctx);
}

/// Errors that say this host ran short (descriptors, ports, memory), which
/// must not count against a backend's health.
pub fn is_local_shortage(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EADDRNOTAVAIL)
    )
}
