//! Backend servers and pools: health state, least-connections selection with
//! weights, roles and fallback.
//!
//! A server that appears in several pools is one server: its active count and
//! health are shared, so least-connections sees every connection it carries.
//! Pure: no sockets, only counts, states and choices.

use crate::config::{Config, ProxyProtocol, Role, ServerConf, ServerTls};
use crate::protocol::dial::TlsWant;
use std::net::SocketAddr;
use std::time::Instant;

/// What a backend said about itself in its greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendInfo {
    pub version: String,
    pub capabilities: u32,
    /// MariaDB's extended capabilities (0 for a server that keeps
    /// CLIENT_MYSQL, as MySQL does).
    pub ext: u32,
    pub charset: u8,
}

impl BackendInfo {
    /// What a server's greeting says of it.
    pub fn of(g: &crate::protocol::handshake::Greeting) -> BackendInfo {
        BackendInfo {
            version: g.version.clone(),
            capabilities: g.capabilities,
            ext: g.ext,
            charset: g.charset,
        }
    }
}

/// Up or down, as health checks and failed logins decided (HAProxy's
/// rise/fall hysteresis).
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// False until the first check has answered; a server starts up.
    pub known: bool,
    pub down: bool,
    /// Consecutive failures (checks or real logins) and check successes.
    pub fails: u32,
    pub oks: u32,
    /// `@@read_only` as the last check read it, when checks log in.
    pub read_only: Option<bool>,
    /// What the last check or failure said, and when.
    pub last: String,
    /// The failure that took the server down (kept while it comes back).
    pub down_reason: String,
    pub last_at: Option<Instant>,
}

/// A state change to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Up,
    Down,
}

/// One backend server.
#[derive(Debug, Clone)]
pub struct Server {
    pub addr: SocketAddr,
    /// The host as the configuration writes it (what its certificate is
    /// checked against).
    pub host: String,
    /// Backend connections open to it now (connecting, logging in or relaying).
    pub active: u32,
    /// Backend connections opened to it since start.
    pub total: u64,
    /// Learned from its latest greeting.
    pub info: Option<BackendInfo>,
    pub health: Health,
    /// DRAIN SERVER: no new connections; those open go on.
    pub drained: bool,
    /// Listed in some pool of the current configuration. A server a reload
    /// removed stays (its index is held by open pairs) but takes no new
    /// connections and is not checked.
    pub in_pool: bool,
    /// Failed checks and failed backend logins since start.
    pub failures_total: u64,
    /// The TLS version the last check or login to it negotiated, if any.
    pub tls: Option<&'static str>,
}

impl Server {
    /// A check's verdict, or a real login's failure (`from_check` false:
    /// it neither counts as the first answer nor brings a server up), with
    /// HAProxy's rise/fall hysteresis.
    fn observe(
        &mut self,
        result: Result<Option<bool>, String>,
        now: Instant,
        fall: u32,
        rise: u32,
        from_check: bool,
    ) -> Option<Change> {
        let h = &mut self.health;
        h.last_at = Some(now);
        let first = from_check && !h.known;
        h.known |= from_check;
        match result {
            Ok(read_only) => {
                h.read_only = read_only;
                h.last = "ok".into();
                h.fails = 0;
                h.oks = h.oks.saturating_add(1);
                // The first answer decides at once; later ones need `rise`.
                if h.down && (first || h.oks >= rise) {
                    h.down = false;
                    return Some(Change::Up);
                }
            }
            Err(why) => {
                self.failures_total += 1;
                h.last = why;
                h.oks = 0;
                h.fails = h.fails.saturating_add(1);
                if !h.down && (first || h.fails >= fall) {
                    h.down = true;
                    h.down_reason = h.last.clone();
                    return Some(Change::Down);
                }
            }
        }
        None
    }

    /// Takes no new connections while its open ones finish: drained by the
    /// console, or in no pool since a reload.
    pub fn draining(&self) -> bool {
        self.drained || !self.in_pool
    }
}

/// A server's place in a pool.
#[derive(Debug, Clone, Copy)]
pub struct Member {
    pub server: usize,
    pub weight: u32,
}

/// A pool: servers that can serve the same users.
#[derive(Debug, Clone)]
pub struct Pool {
    pub name: String,
    pub members: Vec<Member>,
    pub role: Role,
    pub fallback: Option<usize>,
    pub proxy_protocol: ProxyProtocol,
    /// How its backend connections use TLS.
    pub tls: ServerTls,
    /// Clients routed to this pool since start.
    pub clients_total: u64,
    /// Gone from the configuration (kept so open pairs' indices stay valid).
    pub removed: bool,
    /// Where the next tie-break starts, so equal loads rotate.
    rotor: usize,
}

/// All servers and pools. Indices only grow: a reload appends what is new
/// and marks what is gone, so a pair's pool and server indices stay valid
/// for as long as it lives.
#[derive(Debug, Clone)]
pub struct Pools {
    servers: Vec<Server>,
    pools: Vec<Pool>,
    /// `Config::pools` index -> index in `pools`.
    by_config: Vec<usize>,
}

impl Pools {
    pub fn from_config(cfg: &Config) -> Pools {
        let mut p = Pools { servers: Vec::new(), pools: Vec::new(), by_config: Vec::new() };
        p.apply(cfg);
        p
    }

    /// Makes the pools match `cfg` (at start and on reload). Pools and
    /// servers are matched by name and address, keeping their counts and
    /// health; new ones are appended; those no longer configured take no
    /// new connections while their open ones finish.
    pub fn apply(&mut self, cfg: &Config) {
        self.by_config.clear();
        for pc in &cfg.pools {
            let idx = match self.pools.iter().position(|p| p.name == pc.name) {
                Some(i) => i,
                None => {
                    self.pools.push(Pool {
                        name: pc.name.clone(),
                        members: Vec::new(),
                        role: Role::Any,
                        fallback: None,
                        proxy_protocol: ProxyProtocol::None,
                        tls: ServerTls::Off,
                        clients_total: 0,
                        removed: false,
                        rotor: 0,
                    });
                    self.pools.len() - 1
                }
            };
            self.by_config.push(idx);
            let mut members = Vec::with_capacity(pc.servers.len());
            for sc in &pc.servers {
                members.push(Member { server: self.server_index(sc), weight: sc.weight });
            }
            let p = &mut self.pools[idx];
            p.members = members;
            p.role = pc.role;
            p.proxy_protocol = pc.proxy_protocol;
            p.tls = pc.tls.mode;
            p.removed = false;
        }
        for (i, p) in self.pools.iter_mut().enumerate() {
            if !self.by_config.contains(&i) {
                p.removed = true;
                p.members.clear();
                p.fallback = None;
            }
        }
        for (ci, pc) in cfg.pools.iter().enumerate() {
            self.pools[self.by_config[ci]].fallback = pc.fallback.map(|f| self.by_config[f]);
        }
        for s in &mut self.servers {
            s.in_pool = false;
        }
        for m in self.pools.iter().flat_map(|p| &p.members) {
            self.servers[m.server].in_pool = true;
        }
    }

    /// The index of the server at `addr`, added if new.
    fn server_index(&mut self, sc: &ServerConf) -> usize {
        if let Some(i) = self.servers.iter().position(|s| s.addr == sc.addr) {
            return i;
        }
        self.servers.push(Server {
            addr: sc.addr,
            host: sc.host.clone(),
            active: 0,
            total: 0,
            info: None,
            health: Health::default(),
            drained: false,
            in_pool: true,
            failures_total: 0,
            tls: None,
        });
        self.servers.len() - 1
    }

    /// Every server, read-only: routing counters and health change only
    /// through the methods here.
    pub fn servers(&self) -> &[Server] {
        &self.servers
    }

    pub fn server(&self, server: usize) -> &Server {
        &self.servers[server]
    }

    /// Every pool, read-only, those a reload removed included.
    pub fn pools(&self) -> &[Pool] {
        &self.pools
    }

    pub fn pool(&self, pool: usize) -> &Pool {
        &self.pools[pool]
    }

    /// Whether a login to `server` for `pool` uses TLS.
    pub fn tls_want(&self, pool: usize) -> TlsWant {
        match self.pools[pool].tls {
            ServerTls::Off => TlsWant::No,
            ServerTls::Preferred => TlsWant::IfOffered,
            ServerTls::Required | ServerTls::VerifyCa | ServerTls::VerifyIdentity => TlsWant::Must,
        }
    }

    /// The first pool listing `server`: its TLS settings are the health
    /// check's.
    pub fn first_pool_of(&self, server: usize) -> Option<usize> {
        let mut live = self.pools.iter().enumerate().filter(|(_, p)| !p.removed);
        live.find(|(_, p)| p.members.iter().any(|m| m.server == server)).map(|(i, _)| i)
    }

    /// A backend connection to `server` was opened.
    pub fn opened(&mut self, server: usize) {
        let s = &mut self.servers[server];
        s.active += 1;
        s.total += 1;
    }

    /// A backend connection to `server` was closed.
    pub fn released(&mut self, server: usize) {
        if let Some(s) = self.servers.get_mut(server) {
            s.active = s.active.saturating_sub(1);
        }
    }

    /// DRAIN SERVER (`true`) or ENABLE SERVER.
    pub fn set_drained(&mut self, server: usize, drained: bool) {
        self.servers[server].drained = drained;
    }

    /// The pool a `Config::pools` index names now.
    pub fn of_config(&self, cfg_pool: usize) -> usize {
        self.by_config.get(cfg_pool).copied().unwrap_or(cfg_pool)
    }

    /// The server at `addr`, if any.
    pub fn find(&self, addr: SocketAddr) -> Option<usize> {
        self.servers.iter().position(|s| s.addr == addr)
    }

    /// Whether `server` may take a new connection for a pool of `role`:
    /// up, and reporting the `read_only` the role needs.
    pub fn usable(&self, server: usize, role: Role) -> bool {
        let h = &self.servers[server].health;
        let fits = match role {
            Role::Any => true,
            Role::Primary => h.read_only != Some(true),
            Role::Replica => h.read_only != Some(false),
        };
        !h.down && !self.servers[server].draining() && fits
    }

    /// True when some server of `pool` (or of its fallbacks) is usable.
    pub fn has_usable(&self, pool: usize) -> bool {
        self.chain(pool).any(|p| {
            let pl = &self.pools[p];
            pl.members.iter().any(|m| self.usable(m.server, pl.role))
        })
    }

    /// `pool`, then its fallback, and so on, each pool once.
    fn chain(&self, pool: usize) -> impl Iterator<Item = usize> + '_ {
        let mut next = Some(pool);
        let mut seen = 0usize;
        std::iter::from_fn(move || {
            let p = next?;
            seen += 1;
            next = self.pools[p].fallback.filter(|_| seen < self.pools.len());
            Some(p)
        })
    }

    /// Chooses a usable server not in `tried` with the fewest active
    /// connections per weight, from `pool` or, when none of its servers is
    /// usable, from its fallback pool. Returns `(pool used, server index)`.
    pub fn pick(&mut self, pool: usize, tried: &[usize]) -> Option<(usize, usize)> {
        let order: Vec<usize> = self.chain(pool).collect();
        for p in order {
            let role = self.pools[p].role;
            let load: Vec<Option<(u32, u32)>> = self.pools[p]
                .members
                .iter()
                .map(|m| {
                    let ok = self.usable(m.server, role) && !tried.contains(&m.server);
                    ok.then(|| (self.servers[m.server].active, m.weight))
                })
                .collect();
            let pl = &mut self.pools[p];
            if let Some(i) = pick(&load, &mut pl.rotor) {
                return Some((p, pl.members[i].server));
            }
        }
        None
    }

    /// Records a health check's result: `Ok(read_only)` or `Err(why)`.
    /// Logs and returns the state change, if any.
    pub fn record_check(
        &mut self,
        server: usize,
        result: Result<Option<bool>, String>,
        now: Instant,
        fall: u32,
        rise: u32,
    ) -> Option<Change> {
        let change = self.servers[server].observe(result, now, fall, rise, true);
        self.log_change(server, change);
        change
    }

    /// Records a real client's failed connect or login to `server` (a
    /// passive check): it counts toward `fall` like a failed check. Logs
    /// and returns the state change, if any.
    pub fn record_failure(
        &mut self,
        server: usize,
        why: &str,
        now: Instant,
        fall: u32,
    ) -> Option<Change> {
        let change = self.servers[server].observe(Err(why.to_string()), now, fall, 0, false);
        self.log_change(server, change);
        change
    }

    /// What `server` said about itself in its latest greeting.
    pub fn learned(&mut self, server: usize, info: BackendInfo) {
        let s = &mut self.servers[server];
        if s.info.as_ref().is_none_or(|i| i.version != info.version) {
            log::info!("server {}: version {}", s.addr, info.version);
        }
        s.info = Some(info);
    }

    /// The TLS a check or login to `server` negotiated (`None`: none).
    pub fn tls_seen(&mut self, server: usize, version: Option<&'static str>) {
        self.servers[server].tls = version;
    }

    /// A client logged in through `pool`.
    pub fn routed(&mut self, pool: usize) {
        self.pools[pool].clients_total += 1;
    }

    /// A real login to `server` succeeded: its failure streak is over.
    pub fn record_success(&mut self, server: usize) {
        self.servers[server].health.fails = 0;
    }

    /// Logs a server going up or down, once, with the reason.
    fn log_change(&self, server: usize, change: Option<Change>) {
        let s = &self.servers[server];
        match change {
            Some(Change::Down) => log::warn!("server {} is DOWN: {}", s.addr, s.health.down_reason),
            Some(Change::Up) => log::warn!("server {} is UP", s.addr),
            None => {}
        }
    }

    /// Why nothing of `pool` (and its fallbacks) can be used, server by
    /// server, for the error a client gets.
    pub fn down_summary(&self, pool: usize) -> String {
        let mut parts = Vec::new();
        for p in self.chain(pool) {
            let pl = &self.pools[p];
            for m in &pl.members {
                let s = &self.servers[m.server];
                let why = if s.health.down {
                    format!("down ({})", s.health.down_reason)
                } else if s.drained {
                    "drained".to_string()
                } else {
                    format!("read_only does not fit role {:?}", pl.role).to_lowercase()
                };
                parts.push(format!("{}: {why}", s.addr));
            }
        }
        if parts.is_empty() {
            "no servers".into()
        } else {
            parts.join("; ")
        }
    }

    /// The version, capabilities and character set to greet clients with:
    /// taken from the first server that has answered, capabilities (and
    /// MariaDB's extended ones) intersected over every server that has.
    pub fn advertised(&self) -> Option<BackendInfo> {
        let mut known = self.servers.iter().filter_map(|s| s.info.as_ref());
        let first = known.next()?.clone();
        let (caps, ext) = known
            .fold((first.capabilities, first.ext), |(c, e), i| (c & i.capabilities, e & i.ext));
        Some(BackendInfo { capabilities: caps, ext, ..first })
    }
}

/// Least connections per weight over `load` (`None` = not eligible;
/// `Some((active, weight))`). Among equal loads the first at or after
/// `rotor` wins and `rotor` moves past it, so an idle pool still spreads.
pub fn pick(load: &[Option<(u32, u32)>], rotor: &mut usize) -> Option<usize> {
    let n = load.len();
    // a/wa < b/wb  <=>  a*wb < b*wa (no division, no rounding).
    let less = |(a, wa): (u32, u32), (b, wb): (u32, u32)| {
        u64::from(a) * u64::from(wb) < u64::from(b) * u64::from(wa)
    };
    let best = load.iter().flatten().copied().reduce(|m, x| if less(x, m) { x } else { m })?;
    let start = *rotor % n.max(1);
    let chosen =
        (0..n).map(|i| (start + i) % n).find(|&i| load[i].is_some_and(|x| !less(best, x)))?;
    *rotor = chosen + 1;
    Some(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn one(a: u32) -> Option<(u32, u32)> {
        Some((a, 1))
    }

    #[test]
    fn picks_the_least_loaded() {
        let mut r = 0;
        assert_eq!(pick(&[one(3), one(1), one(2)], &mut r), Some(1));
        assert_eq!(pick(&[one(0), one(5)], &mut r), Some(0));
    }

    #[test]
    fn ties_rotate() {
        let mut r = 0;
        let load = [one(0), one(0), one(0)];
        let got: Vec<_> = (0..6).map(|_| pick(&load, &mut r).unwrap()).collect();
        assert_eq!(got, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn weights_divide_the_load() {
        // Weight 3 against weight 1: 3 active on the heavy one equals 1 on
        // the light one.
        let mut r = 0;
        assert_eq!(pick(&[Some((1, 1)), Some((2, 3))], &mut r), Some(1));
        assert_eq!(pick(&[Some((1, 1)), Some((4, 3))], &mut r), Some(0));
        // Filling an idle pair of weights 1 and 3 puts 3 of 4 on the heavy one.
        let mut active = [0u32, 0];
        for _ in 0..400 {
            let load = [Some((active[0], 1)), Some((active[1], 3))];
            active[pick(&load, &mut r).unwrap()] += 1;
        }
        assert_eq!(active, [100, 300]);
    }

    #[test]
    fn skips_ineligible_and_handles_none_left() {
        let mut r = 0;
        assert_eq!(pick(&[None, one(9), None], &mut r), Some(1));
        assert_eq!(pick(&[None, None], &mut r), None);
        assert_eq!(pick(&[], &mut r), None);
    }

    fn pools(extra: &str) -> Pools {
        let cfg = crate::config::parse(&format!(
            "pool.a.servers = 127.0.0.1:1, 127.0.0.1:2\npool.b.servers = 127.0.0.1:2\n\
             user.u.password =\nuser.u.pool = a\n{extra}"
        ))
        .unwrap();
        Pools::from_config(&cfg)
    }

    #[test]
    fn a_server_in_two_pools_shares_its_count() {
        let mut p = pools("");
        assert_eq!(p.servers.len(), 2);
        let (_, s) = p.pick(1, &[]).unwrap();
        assert_eq!(s, 1);
        p.servers[s].active += 1;
        // Pool a now prefers server 0, whatever the rotor says.
        for _ in 0..3 {
            assert_eq!(p.pick(0, &[]).unwrap().1, 0);
        }
    }

    #[test]
    fn tried_and_down_servers_are_skipped() {
        let mut p = pools("");
        assert_eq!(p.pick(0, &[0]), Some((0, 1)));
        assert_eq!(p.pick(0, &[0, 1]), None);
        p.servers[1].health.down = true;
        assert_eq!(p.pick(0, &[0]), None);
        assert!(p.has_usable(0));
        p.servers[0].health.down = true;
        assert!(!p.has_usable(0));
    }

    #[test]
    fn fallback_is_used_only_when_no_server_is_usable() {
        let mut p = pools("pool.b.fallback = a\npool.a.fallback = b\n");
        assert_eq!(p.pick(1, &[]), Some((1, 1)));
        p.servers[1].health.down = true;
        assert_eq!(p.pick(1, &[]), Some((0, 0)), "b falls back to a");
        p.servers[0].health.down = true;
        assert_eq!(p.pick(1, &[]), None, "a cycle ends");
    }

    #[test]
    fn roles_follow_read_only() {
        let cfg = crate::config::parse(
            "health.user = check\npool.w.servers = 127.0.0.1:1, 127.0.0.1:2\npool.w.role = primary\n\
             pool.r.servers = 127.0.0.1:1, 127.0.0.1:2\npool.r.role = replica\n\
             user.u.password =\nuser.u.pool = w\n",
        )
        .unwrap();
        let mut p = Pools::from_config(&cfg);
        p.servers[0].health.read_only = Some(false);
        p.servers[1].health.read_only = Some(true);
        assert_eq!(p.pick(0, &[]).unwrap().1, 0);
        assert_eq!(p.pick(1, &[]).unwrap().1, 1);
        // A promotion: the roles swap without a config change.
        p.servers[0].health.read_only = Some(true);
        p.servers[1].health.read_only = Some(false);
        assert_eq!(p.pick(0, &[]).unwrap().1, 1);
        assert_eq!(p.pick(1, &[]).unwrap().1, 0);
    }

    #[test]
    fn rise_and_fall_hysteresis() {
        let mut p = pools("");
        let t = Instant::now();
        let fail = || Err("refused".to_string());
        // The first answer decides at once.
        assert_eq!(p.record_check(0, Ok(None), t, 3, 2), None);
        assert_eq!(p.record_check(0, fail(), t, 3, 2), None);
        assert_eq!(p.record_check(0, fail(), t, 3, 2), None);
        assert_eq!(p.record_check(0, fail(), t, 3, 2), Some(Change::Down));
        assert_eq!(p.record_check(0, fail(), t, 3, 2), None);
        assert_eq!(p.record_check(0, Ok(None), t, 3, 2), None);
        assert_eq!(p.record_check(0, Ok(None), t + Duration::from_secs(2), 3, 2), Some(Change::Up));
        assert_eq!(p.servers[0].health.last_at, Some(t + Duration::from_secs(2)));
        // A first failing check marks a server down at once.
        assert_eq!(p.record_check(1, fail(), t, 3, 2), Some(Change::Down));
        // Real logins count as failures too.
        let mut p = pools("");
        assert_eq!(p.record_failure(0, "refused", t, 2), None);
        assert_eq!(p.record_failure(0, "refused", t, 2), Some(Change::Down));
    }

    #[test]
    fn advertised_intersects_capabilities() {
        let mut p = pools("");
        assert_eq!(p.advertised(), None);
        p.servers[0].info = Some(BackendInfo {
            version: "10.11.6-MariaDB".into(),
            capabilities: 0b110,
            ext: 0x1d,
            charset: 45,
        });
        let a = p.advertised().unwrap();
        assert_eq!((a.capabilities, a.ext), (0b110, 0x1d));
        p.servers[1].info = Some(BackendInfo {
            version: "8.0.36".into(),
            capabilities: 0b101,
            ext: 0,
            charset: 255,
        });
        let a = p.advertised().unwrap();
        assert_eq!((a.version.as_str(), a.capabilities, a.charset), ("10.11.6-MariaDB", 0b100, 45));
        assert_eq!(a.ext, 0, "one MySQL server: no extended capabilities");
    }

    #[test]
    fn drained_servers_take_no_new_connections() {
        let mut p = pools("");
        p.servers[0].drained = true;
        assert_eq!(p.pick(0, &[]), Some((0, 1)));
        assert_eq!(p.pick(0, &[]), Some((0, 1)));
        p.servers[1].drained = true;
        assert_eq!(p.pick(0, &[]), None);
        assert!(p.down_summary(0).contains("drained"));
        p.servers[0].drained = false;
        assert_eq!(p.pick(0, &[]), Some((0, 0)));
    }

    #[test]
    fn a_reload_keeps_indices_and_drains_what_it_removes() {
        let mut p = pools("");
        p.servers[0].active = 2;
        p.servers[0].total = 5;
        p.pools[0].clients_total = 7;
        // Pool a loses 127.0.0.1:1 and gains :3; pool b goes; pool c is new.
        let cfg = crate::config::parse(
            "pool.c.servers = 127.0.0.1:4
pool.a.servers = 127.0.0.1:2, 127.0.0.1:3
             pool.a.fallback = c
user.u.password =
user.u.pool = c
",
        )
        .unwrap();
        p.apply(&cfg);
        // Old indices mean what they meant; new ones are appended.
        assert_eq!(p.servers[0].addr, "127.0.0.1:1".parse().unwrap());
        assert_eq!((p.servers[0].active, p.servers[0].total), (2, 5));
        assert!(!p.servers[0].in_pool, "removed from every pool");
        assert_eq!(p.servers.len(), 4);
        assert_eq!(p.pools[0].name, "a");
        assert_eq!(p.pools[0].clients_total, 7);
        assert!(p.pools[1].removed && p.pools[1].members.is_empty());
        assert_eq!(p.pools[2].name, "c");
        // Config indices map onto them: the file lists c first.
        assert_eq!(p.of_config(0), 2);
        assert_eq!(p.of_config(1), 0);
        assert_eq!(p.pools[0].fallback, Some(2));
        // The removed server is never picked again; the others are.
        for _ in 0..4 {
            let (_, s) = p.pick(0, &[]).unwrap();
            assert_ne!(s, 0);
        }
        assert_eq!(p.pick(1, &[]), None, "a removed pool serves no one");
        // Putting it back makes it usable again, with its counts.
        p.apply(
            &crate::config::parse(
                "pool.a.servers = 127.0.0.1:1
user.u.password =
user.u.pool = a
",
            )
            .unwrap(),
        );
        assert!(p.servers[0].in_pool);
        assert_eq!(p.pick(0, &[]), Some((0, 0)));
    }
}
