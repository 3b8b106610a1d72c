//! The probes' sockets: health checks (one in flight per server at most,
//! a round every `health.interval`) and side connections (a client's KILL
//! carried to the server of the session it names). Each is a [`Probe`]
//! session over a [`Stream`].
//!
//! Tokens: the check of server `i` uses `CHECK_BASE - i`; side connection
//! `k` uses `SIDE_BASE + k`.

use crate::config::Config;
use crate::operations::access::RateLimit;
use crate::protocol::dial::{Identity, TlsWant};
use crate::runtime::io::{Connect, IoStatus, Stream, TlsEnd, TlsSettings};
use crate::runtime::pairs::is_local_shortage;
use crate::servers::pool::Pools;
use crate::servers::probe::{self, Outcome, Probe};
use log::warn;
use mio::{Registry, Token};
use std::time::Instant;

/// The check of server `i` uses token `CHECK_BASE - i`.
pub const CHECK_BASE: usize = usize::MAX - 4;
/// Side connection `k` uses token `SIDE_BASE + k`: above every pair's
/// token, below the console's.
pub const SIDE_BASE: usize = 1 << (usize::BITS - 3);
/// A probe's replies are small.
const MAX_INPUT: usize = 64 * 1024;

/// How a failure of a probe's TLS starts its description.
const TLS_FAILED: &str = "TLS: ";

/// A probe in flight: its session and its socket.
struct Probing {
    probe: Probe,
    stream: Stream,
    /// The pool whose TLS settings the login uses, and the server's host.
    pool: Option<usize>,
    host: String,
    /// The TLS version its handshake negotiated.
    tls: Option<&'static str>,
    /// Its TLS handshake (or a record after it) failed.
    tls_failed: bool,
    connected: bool,
    deadline: Instant,
    /// Its outcome (a timeout) is settled already; it stays open only to
    /// let a slow server finish the handshake, since a dropped handshake
    /// counts toward the server's `max_connect_errors`.
    late: bool,
}

impl Probing {
    /// Connects to `server` for `probe` (with `pool`'s TLS settings),
    /// registered under `token`.
    fn open(
        probe: Probe,
        (server, pool): (usize, Option<usize>),
        token: Token,
        now: Instant,
        registry: &Registry,
        cfg: &Config,
        pools: &Pools,
    ) -> std::io::Result<Probing> {
        let s = pools.server(server);
        let mut stream = Stream::connect(cfg.source_address, s.addr)?;
        stream.register(registry, token)?;
        let deadline = now + cfg.connect_timeout;
        let host = s.host.clone();
        Ok(Probing {
            probe,
            stream,
            pool,
            host,
            tls: None,
            tls_failed: false,
            connected: false,
            deadline,
            late: false,
        })
    }

    /// Moves the probe along: connect completion, reads, TLS, writes.
    /// Returns its outcome once it has one.
    fn step(&mut self, tls: &TlsSettings) -> Option<Outcome> {
        let outcome = self.step_io(tls);
        if let Some(Outcome::Failed(why)) = &outcome {
            self.tls_failed = why.starts_with(TLS_FAILED);
        }
        outcome
    }

    fn step_io(&mut self, tls: &TlsSettings) -> Option<Outcome> {
        if !self.connected {
            match self.stream.connect_result() {
                Connect::Pending => return None,
                Connect::Done => self.connected = true,
                Connect::Failed(why) => return Some(Outcome::Failed(format!("connect: {why}"))),
            }
        }
        let mut input = Vec::new();
        loop {
            input.clear();
            let (n, st) = self.stream.read_vec(&mut input, MAX_INPUT);
            match self.stream.tls_end() {
                Some(TlsEnd::Ready { version, .. }) => {
                    self.tls = Some(version);
                    self.probe.tls_started();
                }
                Some(TlsEnd::Failed(why)) => {
                    return Some(Outcome::Failed(format!("{TLS_FAILED}{why}")))
                }
                None => {}
            }
            if n > 0 {
                if let Some(outcome) = self.probe.on_bytes(&input) {
                    return Some(outcome);
                }
            }
            if let (_, IoStatus::Failed(k)) = self.stream.write_vec(&mut self.probe.out) {
                return Some(Outcome::Failed(k.to_string()));
            }
            if self.probe.take_tls_request() {
                let started = match self.pool {
                    Some(pool) => self.stream.start_tls_client(tls, pool, &self.host),
                    None => Err("no pool"),
                };
                if let Err(why) = started {
                    return Some(Outcome::Failed(format!("{TLS_FAILED}{why}")));
                }
                continue;
            }
            match st {
                IoStatus::Open => {}
                IoStatus::Drained => return None,
                IoStatus::Closed if n == 0 => {
                    return Some(Outcome::Failed("closed the connection".into()))
                }
                IoStatus::Closed => {}
                IoStatus::Tls(why) => return Some(Outcome::Failed(format!("{TLS_FAILED}{why}"))),
                IoStatus::Failed(k) => return Some(Outcome::Failed(k.to_string())),
            }
        }
    }

    /// Ends the probe's connection (after its COM_QUIT, if one is due);
    /// keeps what its greeting said.
    fn close(mut self, server: usize, registry: &Registry, pools: &mut Pools) {
        let _ = self.stream.write_vec(&mut self.probe.out);
        self.stream.deregister(registry);
        if let Some(info) = self.probe.info.take() {
            pools.learned(server, info);
            pools.tls_seen(server, self.tls);
        }
    }

    /// The failure a probe that did not answer within `connect_timeout` ends
    /// with.
    fn timed_out(cfg: &Config) -> Outcome {
        let ms = cfg.connect_timeout.as_millis();
        Outcome::Failed(format!("no answer within connect_timeout ({ms}ms)"))
    }
}

/// The health checks of every server.
pub struct Checks {
    /// One slot per server: its check in flight, if any.
    slots: Vec<Option<Probing>>,
    /// When the next round starts.
    pub next_round: Instant,
    /// Checks whose TLS handshake failed, since the loop last took them
    /// into its counters.
    pub tls_failures: u64,
}

impl Checks {
    pub fn new(servers: usize, now: Instant) -> Checks {
        let mut slots = Vec::new();
        slots.resize_with(servers, || None);
        Checks { slots, next_round: now, tls_failures: 0 }
    }

    /// The server whose check owns `token`, if it is a check's.
    pub fn server_of(&self, token: Token) -> Option<usize> {
        let t = token.0;
        (t <= CHECK_BASE && t > CHECK_BASE - self.slots.len()).then(|| CHECK_BASE - t)
    }

    /// Makes room for servers a reload added.
    pub fn resize(&mut self, servers: usize) {
        self.slots.resize_with(servers, || None);
    }

    /// True while some check is in flight.
    pub fn any(&self) -> bool {
        self.slots.iter().any(Option::is_some)
    }

    /// The deadlines of the checks in flight.
    pub fn deadlines(&self) -> impl Iterator<Item = Instant> + '_ {
        self.slots.iter().flatten().map(|c| c.deadline)
    }

    /// Starts a check of every server that has none in flight.
    pub fn start_round(
        &mut self,
        now: Instant,
        registry: &Registry,
        cfg: &Config,
        pools: &mut Pools,
        warnings: &mut RateLimit,
    ) {
        self.next_round = now + cfg.health.interval;
        let user = cfg.health.user.as_ref();
        for server in 0..self.slots.len() {
            // A server no pool lists any more is not watched.
            if self.slots[server].is_some() || !pools.server(server).in_pool {
                continue;
            }
            // The first pool listing the server says how it uses TLS.
            let pool = pools.first_pool_of(server);
            let tls = pool.map_or(TlsWant::No, |p| pools.tls_want(p));
            let check = probe::health_check(user, true, tls);
            let token = Token(CHECK_BASE - server);
            match Probing::open(check, (server, pool), token, now, registry, cfg, pools) {
                Ok(p) => self.slots[server] = Some(p),
                // Out of descriptors or ports here says nothing about the
                // server: try again next round.
                Err(e) if is_local_shortage(&e) => {
                    if warnings.allow(now) {
                        warn!("cannot check server {}: {e}", pools.server(server).addr);
                    }
                }
                Err(e) => record(pools, cfg, server, Outcome::Failed(format!("connect: {e}")), now),
            }
        }
    }

    /// A poll event for server `server`'s check.
    pub fn on_event(
        &mut self,
        server: usize,
        now: Instant,
        registry: &Registry,
        (cfg, tls): (&Config, &TlsSettings),
        pools: &mut Pools,
    ) {
        let Some(Some(c)) = self.slots.get_mut(server) else {
            return;
        };
        if let Some(outcome) = c.step(tls) {
            let late = c.late;
            self.tls_failures += u64::from(c.tls_failed);
            if let Some(c) = self.slots[server].take() {
                c.close(server, registry, pools);
            }
            if !late {
                record(pools, cfg, server, outcome, now);
            }
        }
    }

    /// Fails checks that did not answer within `connect_timeout`, and
    /// closes those that lingered long enough.
    pub fn expire(&mut self, now: Instant, registry: &Registry, cfg: &Config, pools: &mut Pools) {
        for server in 0..self.slots.len() {
            let Some(c) = self.slots[server].as_mut().filter(|c| now >= c.deadline) else {
                continue;
            };
            if c.late {
                // Lingered long enough.
                if let Some(c) = self.slots[server].take() {
                    c.close(server, registry, pools);
                }
                continue;
            }
            if c.probe.info.is_some() {
                // Greeted, but slow to answer the login: the check fails
                // now, and the connection stays open a while for the server
                // to finish the handshake, so it does not count against the
                // proxy's host. No new check of this server starts meanwhile.
                c.late = true;
                c.deadline = now + cfg.connect_timeout * 2;
            } else if let Some(c) = self.slots[server].take() {
                c.close(server, registry, pools);
            }
            record(pools, cfg, server, Probing::timed_out(cfg), now);
        }
    }
}

/// Records a check's outcome with the server's health.
fn record(pools: &mut Pools, cfg: &Config, server: usize, outcome: Outcome, now: Instant) {
    let verdict = probe::verdict(outcome, cfg.health.user.is_none());
    pools.record_check(server, verdict, now, cfg.health.fall, cfg.health.rise);
}

/// A side connection: a client's KILL, run on another server as that
/// client's own user.
struct Side {
    probing: Probing,
    server: usize,
    /// The pair that asked: its slab key and connection id (the key may be
    /// reused once it ends).
    key: usize,
    id: u32,
}

/// The side connections in flight.
#[derive(Default)]
pub struct Sides {
    slots: Vec<Option<Side>>,
}

/// A side connection's outcome, for the pair that asked.
pub struct SideDone {
    pub key: usize,
    pub id: u32,
    pub outcome: Outcome,
    /// The server it went to.
    pub server: usize,
}

impl Sides {
    /// The side connection that owns `token`, if it is one's.
    pub fn of(&self, token: Token) -> Option<usize> {
        let k = token.0.checked_sub(SIDE_BASE)?;
        (k < self.slots.len()).then_some(k)
    }

    /// Opens a side connection to `server` (with `pool`'s TLS settings)
    /// logging in as `id` to run `statement`, on behalf of pair `key`
    /// (connection `pair_id`).
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        &mut self,
        id: Identity,
        statement: Vec<u8>,
        (server, pool): (usize, usize),
        (key, pair_id): (usize, u32),
        now: Instant,
        registry: &Registry,
        cfg: &Config,
        pools: &Pools,
    ) -> Result<(), Outcome> {
        let k = self.slots.iter().position(Option::is_none).unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let probe = Probe::new(id, Some(statement), pools.tls_want(pool));
        let token = Token(SIDE_BASE + k);
        let probing = Probing::open(probe, (server, Some(pool)), token, now, registry, cfg, pools)
            .map_err(|e| Outcome::Failed(format!("connect: {e}")))?;
        self.slots[k] = Some(Side { probing, server, key, id: pair_id });
        Ok(())
    }

    /// A poll event for side connection `k`: its outcome once it has one.
    pub fn on_event(
        &mut self,
        k: usize,
        registry: &Registry,
        tls: &TlsSettings,
        pools: &mut Pools,
    ) -> Option<SideDone> {
        let outcome = self.slots.get_mut(k)?.as_mut()?.probing.step(tls)?;
        self.finish(k, outcome, registry, pools)
    }

    /// Side connections that did not answer within `connect_timeout`.
    pub fn expire(
        &mut self,
        now: Instant,
        registry: &Registry,
        cfg: &Config,
        pools: &mut Pools,
    ) -> Vec<SideDone> {
        let late: Vec<usize> = (0..self.slots.len())
            .filter(|&k| self.slots[k].as_ref().is_some_and(|s| now >= s.probing.deadline))
            .collect();
        late.into_iter()
            .filter_map(|k| self.finish(k, Probing::timed_out(cfg), registry, pools))
            .collect()
    }

    /// The deadlines of the side connections in flight.
    pub fn deadlines(&self) -> impl Iterator<Item = Instant> + '_ {
        self.slots.iter().flatten().map(|s| s.probing.deadline)
    }

    fn finish(
        &mut self,
        k: usize,
        outcome: Outcome,
        registry: &Registry,
        pools: &mut Pools,
    ) -> Option<SideDone> {
        let s = self.slots.get_mut(k)?.take()?;
        s.probing.close(s.server, registry, pools);
        Some(SideDone { key: s.key, id: s.id, outcome, server: s.server })
    }
}
