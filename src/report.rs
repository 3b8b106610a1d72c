//! What the admin console's SHOW commands and `/metrics` show, built from a
//! read-only view of the proxy. Pure: tables and text out, no I/O.

use crate::access::EndReason;
use crate::admin::{Column, Table};
use crate::config::{Config, KEYS};
use crate::exposition::{Exposition, Kind};
use crate::pair::Pair;
use crate::pool::Pools;
use crate::stats::Stats;
use std::time::Instant;

/// Everything a report reads.
pub struct View<'a> {
    pub now: Instant,
    pub cfg: &'a Config,
    pub pools: &'a Pools,
    pub stats: &'a Stats,
    pub pairs: Vec<&'a Pair>,
}

/// A server's state as SHOW SERVERS and the docs name it.
fn server_state(v: &View, server: usize) -> &'static str {
    let s = &v.pools.servers[server];
    if s.draining() {
        "drain"
    } else if s.health.down {
        "down"
    } else {
        "up"
    }
}

/// SHOW SERVERS: one row per server of each pool, then servers a reload
/// took out of every pool while they still carry connections.
pub fn servers(v: &View) -> Table {
    let columns = vec![
        Column::text("pool"),
        Column::text("address"),
        Column::text("state"),
        Column::num("weight"),
        Column::num("active"),
        Column::num("total"),
        Column::num("failures"),
        Column::text("last_check"),
        Column::num("check_age"),
        Column::num("read_only"),
        Column::text("version"),
    ];
    let row = |pool: Option<&str>, server: usize, weight: Option<u32>| {
        let s = &v.pools.servers[server];
        let h = &s.health;
        vec![
            pool.map(str::to_string),
            Some(s.addr.to_string()),
            Some(server_state(v, server).to_string()),
            weight.map(|w| w.to_string()),
            Some(s.active.to_string()),
            Some(s.total.to_string()),
            Some(h.fails.to_string()),
            h.last_at.map(|_| h.last.clone()),
            h.last_at
                .map(|t| v.now.saturating_duration_since(t).as_secs().to_string()),
            h.read_only.map(|r| u8::from(r).to_string()),
            s.info.as_ref().map(|i| i.version.clone()),
        ]
    };
    let mut rows = Vec::new();
    for p in v.pools.pools.iter().filter(|p| !p.removed) {
        for m in &p.members {
            rows.push(row(Some(&p.name), m.server, Some(m.weight)));
        }
    }
    for (i, s) in v.pools.servers.iter().enumerate() {
        if !s.in_pool && s.active > 0 {
            rows.push(row(None, i, None));
        }
    }
    Table { columns, rows }
}

/// Client connections routed to each pool now.
fn clients_per_pool(v: &View) -> Vec<u64> {
    let mut n = vec![0u64; v.pools.pools.len()];
    for p in v.pairs.iter().filter_map(|p| p.pool) {
        if let Some(c) = n.get_mut(p) {
            *c += 1;
        }
    }
    n
}

/// Servers of pool `p` that can take a new connection for it.
fn usable_members(v: &View, p: usize) -> usize {
    let pl = &v.pools.pools[p];
    pl.members
        .iter()
        .filter(|m| v.pools.usable(m.server, pl.role))
        .count()
}

/// SHOW POOLS.
pub fn pools(v: &View) -> Table {
    let columns = vec![
        Column::text("pool"),
        Column::text("role"),
        Column::text("fallback"),
        Column::num("servers"),
        Column::num("servers_up"),
        Column::num("active"),
        Column::num("clients"),
        Column::num("total"),
    ];
    let clients = clients_per_pool(v);
    let mut rows = Vec::new();
    for (i, p) in v.pools.pools.iter().enumerate().filter(|(_, p)| !p.removed) {
        let active: u32 = p
            .members
            .iter()
            .map(|m| v.pools.servers[m.server].active)
            .sum();
        rows.push(vec![
            Some(p.name.clone()),
            Some(p.role.name().to_string()),
            p.fallback.map(|f| v.pools.pools[f].name.clone()),
            Some(p.members.len().to_string()),
            Some(usable_members(v, i).to_string()),
            Some(active.to_string()),
            Some(clients[i].to_string()),
            Some(p.clients_total.to_string()),
        ]);
    }
    Table { columns, rows }
}

/// SHOW CLIENTS.
pub fn clients(v: &View) -> Table {
    let columns = vec![
        Column::num("id"),
        Column::text("user"),
        Column::text("client"),
        Column::text("pool"),
        Column::text("server"),
        Column::text("state"),
        Column::num("age"),
        Column::num("bytes_in"),
        Column::num("bytes_out"),
    ];
    let mut pairs = v.pairs.clone();
    pairs.sort_by_key(|p| p.id);
    let rows = pairs
        .iter()
        .map(|p| {
            vec![
                Some(p.id.to_string()),
                p.user
                    .as_ref()
                    .map(|u| crate::access::printable(u).to_string()),
                Some(p.peer.to_string()),
                p.pool.map(|i| v.pools.pools[i].name.clone()),
                p.server.map(|i| v.pools.servers[i].addr.to_string()),
                Some(p.state_name().to_string()),
                Some(
                    v.now
                        .saturating_duration_since(p.started)
                        .as_secs()
                        .to_string(),
                ),
                Some(p.bytes_in.to_string()),
                Some(p.bytes_out.to_string()),
            ]
        })
        .collect();
    Table { columns, rows }
}

/// Totals including the bytes of pairs still open.
fn totals(v: &View) -> (u64, u64) {
    let open_in: u64 = v.pairs.iter().map(|p| p.bytes_in).sum();
    let open_out: u64 = v.pairs.iter().map(|p| p.bytes_out).sum();
    (v.stats.bytes_in + open_in, v.stats.bytes_out + open_out)
}

/// SHOW STATS: `name`, `value` rows.
pub fn stats(v: &View) -> Table {
    let s = v.stats;
    let (bytes_in, bytes_out) = totals(v);
    let mut rows: Vec<(String, u64)> = vec![
        (
            "uptime_seconds".into(),
            v.now.saturating_duration_since(s.started).as_secs(),
        ),
        ("clients_active".into(), v.pairs.len() as u64),
        ("connections_accepted".into(), s.accepted),
        ("connections_refused".into(), s.refused),
        ("logins_ok".into(), s.logins_ok),
        ("logins_failed".into(), s.logins_failed),
        ("backend_connects".into(), s.backend_connects),
        ("backend_failures".into(), s.backend_failures),
        ("bytes_in".into(), bytes_in),
        ("bytes_out".into(), bytes_out),
    ];
    for (kind, n) in EndReason::KINDS.iter().zip(s.ends) {
        rows.push((format!("ends_{kind}"), n));
    }
    rows.push(("reloads".into(), s.reloads));
    rows.push(("reload_failures".into(), s.reload_failures));
    rows.push(("admin_logins_failed".into(), s.admin_logins_failed));
    Table {
        columns: vec![Column::text("name"), Column::num("value")],
        rows: rows
            .into_iter()
            .map(|(k, n)| vec![Some(k), Some(n.to_string())])
            .collect(),
    }
}

/// SHOW CONFIG: every key with its effective value; password hashes are
/// not shown.
pub fn config(cfg: &Config) -> Table {
    let hidden = || Some("<hidden>".to_string());
    let dur = |d: std::time::Duration| Some(format!("{}ms", d.as_millis()));
    let mut rows: Vec<(String, Option<String>)> = Vec::new();
    for k in KEYS.iter().filter(|k| !k.name.contains("NAME")) {
        let value = match k.name {
            "listen" => Some(cfg.listen.to_string()),
            "server_version" => cfg.server_version.clone(),
            "buffer_size" => Some(cfg.buffer_size.to_string()),
            "max_clients" => Some(cfg.max_clients.to_string()),
            "reuse_port" => Some(if cfg.reuse_port { "yes" } else { "no" }.into()),
            "connect_timeout" => dur(cfg.connect_timeout),
            "handshake_timeout" => dur(cfg.handshake_timeout),
            "idle_timeout" => cfg.idle_timeout.map_or(Some("0".into()), dur),
            "source_address" => cfg.source_address.map(|a| a.to_string()),
            "health.interval" => dur(cfg.health.interval),
            "health.fall" => Some(cfg.health.fall.to_string()),
            "health.rise" => Some(cfg.health.rise.to_string()),
            "health.user" => cfg.health.user.as_ref().map(|u| u.name.clone()),
            "health.password" => cfg
                .health
                .user
                .as_ref()
                .and_then(|u| u.stage1.as_ref())
                .and_then(|_| hidden()),
            "shutdown_timeout" => dur(cfg.shutdown_timeout),
            "admin.listen" => cfg.admin.as_ref().map(|a| a.listen.to_string()),
            "admin.user" => cfg.admin.as_ref().map(|a| a.user.clone()),
            "admin.password" => cfg.admin.as_ref().and_then(|_| hidden()),
            "metrics.listen" => cfg.metrics_listen.map(|a| a.to_string()),
            "proxy_protocol_from" => (!cfg.proxy_protocol_from.is_empty()).then(|| {
                let nets: Vec<String> = cfg
                    .proxy_protocol_from
                    .iter()
                    .map(|c| c.to_string())
                    .collect();
                nets.join(", ")
            }),
            "user" => cfg.run_as.clone(),
            "pid_file" => cfg.pid_file.clone(),
            "log_level" => Some(cfg.log_level.to_string().to_lowercase()),
            _ => None,
        };
        rows.push((k.name.to_string(), value));
    }
    for p in &cfg.pools {
        let servers: Vec<String> = p
            .servers
            .iter()
            .map(|s| match s.weight {
                1 => s.addr.to_string(),
                w => format!("{} weight={w}", s.addr),
            })
            .collect();
        let key = |k: &str| format!("pool.{}.{k}", p.name);
        rows.push((key("servers"), Some(servers.join(", "))));
        rows.push((key("role"), Some(p.role.name().into())));
        rows.push((
            key("fallback"),
            p.fallback.map(|f| cfg.pools[f].name.clone()),
        ));
        rows.push((key("proxy_protocol"), Some(p.proxy_protocol.name().into())));
    }
    for u in &cfg.users {
        let key = |k: &str| format!("user.{}.{k}", u.name);
        let pw = if u.stage2.is_some() {
            hidden()
        } else {
            Some(String::new())
        };
        rows.push((key("password"), pw));
        rows.push((key("pool"), Some(cfg.pools[u.pool].name.clone())));
    }
    Table {
        columns: vec![Column::text("key"), Column::text("value")],
        rows: rows.into_iter().map(|(k, v)| vec![Some(k), v]).collect(),
    }
}

/// SHOW VERSION.
pub fn version() -> Table {
    Table {
        columns: vec![Column::text("version")],
        rows: vec![vec![Some(format!("myroute {}", env!("CARGO_PKG_VERSION")))]],
    }
}

/// One family with one unlabelled sample.
fn single(e: &mut Exposition, name: &str, kind: Kind, help: &str, value: u64) {
    e.family(name, help, kind);
    e.sample(name, &[], value);
}

/// A family with one sample per value of `label`.
fn labelled(
    e: &mut Exposition,
    name: &str,
    kind: Kind,
    help: &str,
    label: &str,
    values: &[(&str, u64)],
) {
    e.family(name, help, kind);
    for (v, n) in values {
        e.sample(name, &[(label, v)], *n);
    }
}

/// `/metrics`.
pub fn metrics(v: View) -> String {
    use Kind::{Counter, Gauge};
    let s = v.stats;
    let mut e = Exposition::new();
    labelled(
        &mut e,
        "myroute_info",
        Gauge,
        "The running version.",
        "version",
        &[(env!("CARGO_PKG_VERSION"), 1)],
    );
    let up = v.now.saturating_duration_since(s.started).as_secs();
    single(
        &mut e,
        "myroute_uptime_seconds",
        Gauge,
        "Seconds since start.",
        up,
    );
    single(
        &mut e,
        "myroute_clients_active",
        Gauge,
        "Client connections open now.",
        v.pairs.len() as u64,
    );
    single(
        &mut e,
        "myroute_connections_accepted_total",
        Counter,
        "Client connections accepted.",
        s.accepted,
    );
    single(
        &mut e,
        "myroute_connections_refused_total",
        Counter,
        "Client connections refused because max_clients were open.",
        s.refused,
    );
    let logins = [("ok", s.logins_ok), ("failed", s.logins_failed)];
    labelled(
        &mut e,
        "myroute_logins_total",
        Counter,
        "Client logins checked by myroute.",
        "result",
        &logins,
    );
    let (bytes_in, bytes_out) = totals(&v);
    let bytes = [("in", bytes_in), ("out", bytes_out)];
    labelled(
        &mut e,
        "myroute_bytes_total",
        Counter,
        "Bytes from (in) and to (out) clients.",
        "direction",
        &bytes,
    );
    let ends: Vec<(&str, u64)> = EndReason::KINDS.iter().copied().zip(s.ends).collect();
    labelled(
        &mut e,
        "myroute_connection_ends_total",
        Counter,
        "Client connections ended, by reason.",
        "reason",
        &ends,
    );

    let servers: Vec<(String, usize)> = v
        .pools
        .servers
        .iter()
        .enumerate()
        .filter(|(_, s)| s.in_pool || s.active > 0)
        .map(|(i, s)| (s.addr.to_string(), i))
        .collect();
    type Get = fn(&crate::pool::Server) -> u64;
    let per_server: [(&str, Kind, &str, Get); 5] = [
        (
            "myroute_server_up",
            Gauge,
            "1 if the server passes its health checks.",
            |s| u64::from(!s.health.down),
        ),
        (
            "myroute_server_drained",
            Gauge,
            "1 if the server takes no new connections (DRAIN SERVER, or removed by a reload).",
            |s| u64::from(s.draining()),
        ),
        (
            "myroute_server_active_connections",
            Gauge,
            "Backend connections open to the server.",
            |s| u64::from(s.active),
        ),
        (
            "myroute_server_connections_total",
            Counter,
            "Backend connections opened to the server.",
            |s| s.total,
        ),
        (
            "myroute_server_failures_total",
            Counter,
            "Failed health checks and backend logins.",
            |s| s.failures_total,
        ),
    ];
    for (name, kind, help, get) in per_server {
        let values: Vec<(&str, u64)> = servers
            .iter()
            .map(|(addr, i)| (addr.as_str(), get(&v.pools.servers[*i])))
            .collect();
        labelled(&mut e, name, kind, help, "server", &values);
    }

    let clients = clients_per_pool(&v);
    let pools: Vec<usize> = (0..v.pools.pools.len())
        .filter(|&p| !v.pools.pools[p].removed)
        .collect();
    type PoolGet = fn(&View, usize, &[u64]) -> u64;
    let per_pool: [(&str, Kind, &str, PoolGet); 4] = [
        (
            "myroute_pool_servers",
            Gauge,
            "Servers in the pool.",
            |v, p, _| v.pools.pools[p].members.len() as u64,
        ),
        (
            "myroute_pool_servers_up",
            Gauge,
            "Servers of the pool that can take new connections.",
            |v, p, _| usable_members(v, p) as u64,
        ),
        (
            "myroute_pool_clients",
            Gauge,
            "Client connections routed to the pool now.",
            |_, p, c| c[p],
        ),
        (
            "myroute_pool_connections_total",
            Counter,
            "Client connections routed to the pool.",
            |v, p, _| v.pools.pools[p].clients_total,
        ),
    ];
    for (name, kind, help, get) in per_pool {
        let values: Vec<(&str, u64)> = pools
            .iter()
            .map(|&p| (v.pools.pools[p].name.as_str(), get(&v, p, &clients)))
            .collect();
        labelled(&mut e, name, kind, help, "pool", &values);
    }

    s.handshake.write(
        &mut e,
        "myroute_handshake_seconds",
        "From accept to the client's password checked.",
    );
    s.backend_login.write(
        &mut e,
        "myroute_backend_login_seconds",
        "From the client's password checked to the backend's OK.",
    );
    let reloads = [("ok", s.reloads), ("failed", s.reload_failures)];
    labelled(
        &mut e,
        "myroute_reloads_total",
        Counter,
        "Configuration reloads.",
        "result",
        &reloads,
    );
    e.into_string()
}
