//! What the admin console and `/metrics` show and decide, built from a
//! read-only [`View`] of the proxy: the SHOW tables, the counters (one
//! table of them drives both SHOW STATS and `/metrics`), `/ready`, and the
//! answer to each console command, which is either a reply or a
//! [`Control`] for the loop to apply. Pure: tables and text out, no I/O.

use crate::config::Config;
use crate::operations::access::EndReason;
use crate::operations::admin::{help_table, Column, Command, Reply, Table};
use crate::operations::exposition::{Exposition, Kind};
use crate::operations::http::{self, Route};
use crate::operations::stats::Stats;
use crate::protocol::errors::ConsoleError;
use crate::servers::pool::{Pools, Server};
use std::net::SocketAddr;
use std::time::Instant;

/// Everything a report reads.
pub struct View<'a> {
    pub now: Instant,
    pub cfg: &'a Config,
    pub pools: &'a Pools,
    pub stats: &'a Stats,
    /// The client connections open now.
    pub clients: Vec<Client>,
    /// A graceful shutdown has begun.
    pub shutting_down: bool,
}

/// One client connection as reports see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub id: u32,
    /// The backend session's own id (what `CONNECTION_ID()` returns), once
    /// logged in.
    pub backend_id: Option<u32>,
    /// The user name it logged in (or tried to log in) with, printable.
    pub user: Option<String>,
    pub peer: SocketAddr,
    pub pool: Option<usize>,
    pub server: Option<usize>,
    /// The state's stable name (`RELAYING`, ...).
    pub state: &'static str,
    /// The client leg's TLS version and cipher, if it uses TLS.
    pub tls: Option<String>,
    pub started: Instant,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// A change only the loop may make, asked for by the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// DRAIN SERVER (true) or ENABLE SERVER (false) of this server index.
    Drain(usize, bool),
    /// KILL: end the client connection with this id.
    Kill(u32),
    Reload,
    Shutdown,
}

/// The console's answer to a command.
pub enum Answer {
    Reply(Reply),
    Apply(Control),
}

/// What a console command shows, or the control it asks for.
pub fn answer(cmd: Command, v: &View) -> Answer {
    let table = |t| Answer::Reply(Reply::Table(t));
    match cmd {
        Command::ShowServers => table(servers(v)),
        Command::ShowPools => table(pools(v)),
        Command::ShowClients => table(clients(v)),
        Command::ShowStats => table(stats(v)),
        Command::ShowConfig => table(config(v.cfg)),
        Command::ShowVersion => table(version()),
        Command::ShowHelp => table(help_table()),
        Command::Drain(addr) => drain(v, &addr, true),
        Command::Enable(addr) => drain(v, &addr, false),
        Command::Kill(id) if !v.clients.iter().any(|c| c.id == id) => {
            Answer::Reply(Reply::Err(ConsoleError::UnknownThread(id)))
        }
        Command::Kill(id) => Answer::Apply(Control::Kill(id)),
        Command::Reload => Answer::Apply(Control::Reload),
        Command::Shutdown => Answer::Apply(Control::Shutdown),
    }
}

/// DRAIN SERVER / ENABLE SERVER. The server is named by the address SHOW
/// SERVERS shows: no name lookup, the loop must not wait on DNS.
fn drain(v: &View, addr: &str, on: bool) -> Answer {
    match addr.parse().ok().and_then(|a| v.pools.find(a)) {
        Some(server) => Answer::Apply(Control::Drain(server, on)),
        None => Answer::Reply(Reply::Err(ConsoleError::NoSuchServer(addr.to_string()))),
    }
}

/// The answer to an HTTP request on the metrics port.
pub fn http_answer(route: Route, v: &View) -> Vec<u8> {
    match route {
        Route::Metrics => {
            let body = metrics(v);
            http::response(200, http::METRICS_CONTENT_TYPE, body.as_bytes(), &[])
        }
        Route::Ready => {
            let (status, body) = match not_ready(v) {
                None => (200, "ready\n".to_string()),
                Some(why) => (503, format!("not ready: {why}\n")),
            };
            http::response(status, http::TEXT_CONTENT_TYPE, body.as_bytes(), &[])
        }
        // 404, 405, 400: fixed answers.
        other => http::canned_response(other).unwrap_or_default(),
    }
}

/// Why this instance should not get traffic now, if it should not.
fn not_ready(v: &View) -> Option<String> {
    if v.shutting_down {
        return Some("shutting down".into());
    }
    let pools = v.pools.pools();
    let down: Vec<&str> = (0..pools.len())
        .filter(|&p| !pools[p].removed && !v.pools.has_usable(p))
        .map(|p| pools[p].name.as_str())
        .collect();
    (!down.is_empty()).then(|| format!("no usable server in pool {}", down.join(", ")))
}

/// A server's state as SHOW SERVERS and the docs name it.
fn server_state(s: &Server) -> &'static str {
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
        Column::text("tls"),
    ];
    let row = |pool: Option<&str>, s: &Server, weight: Option<u32>| {
        let h = &s.health;
        vec![
            pool.map(str::to_string),
            Some(s.addr.to_string()),
            Some(server_state(s).to_string()),
            weight.map(|w| w.to_string()),
            Some(s.active.to_string()),
            Some(s.total.to_string()),
            Some(h.fails.to_string()),
            h.last_at.map(|_| h.last.clone()),
            h.last_at.map(|t| v.now.saturating_duration_since(t).as_secs().to_string()),
            h.read_only.map(|r| u8::from(r).to_string()),
            s.info.as_ref().map(|i| i.version.clone()),
            s.tls.map(str::to_string),
        ]
    };
    let mut rows = Vec::new();
    for p in v.pools.pools().iter().filter(|p| !p.removed) {
        for m in &p.members {
            rows.push(row(Some(&p.name), v.pools.server(m.server), Some(m.weight)));
        }
    }
    for s in v.pools.servers().iter().filter(|s| !s.in_pool && s.active > 0) {
        rows.push(row(None, s, None));
    }
    Table { columns, rows }
}

/// Client connections routed to each pool now.
fn clients_per_pool(v: &View) -> Vec<u64> {
    let mut n = vec![0u64; v.pools.pools().len()];
    for p in v.clients.iter().filter_map(|c| c.pool) {
        if let Some(c) = n.get_mut(p) {
            *c += 1;
        }
    }
    n
}

/// Servers of pool `p` that can take a new connection for it.
fn usable_members(v: &View, p: usize) -> usize {
    let pl = &v.pools.pools()[p];
    pl.members.iter().filter(|m| v.pools.usable(m.server, pl.role)).count()
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
    let all = v.pools.pools();
    let mut rows = Vec::new();
    for (i, p) in all.iter().enumerate().filter(|(_, p)| !p.removed) {
        let active: u32 = p.members.iter().map(|m| v.pools.server(m.server).active).sum();
        rows.push(vec![
            Some(p.name.clone()),
            Some(p.role.name().to_string()),
            p.fallback.map(|f| all[f].name.clone()),
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
        Column::num("backend_id"),
        Column::text("user"),
        Column::text("client"),
        Column::text("pool"),
        Column::text("server"),
        Column::text("state"),
        Column::text("tls"),
        Column::num("age"),
        Column::num("bytes_in"),
        Column::num("bytes_out"),
    ];
    let mut clients: Vec<&Client> = v.clients.iter().collect();
    clients.sort_by_key(|c| c.id);
    let rows = clients
        .iter()
        .map(|c| {
            vec![
                Some(c.id.to_string()),
                c.backend_id.map(|b| b.to_string()),
                c.user.clone(),
                Some(c.peer.to_string()),
                c.pool.map(|i| v.pools.pools()[i].name.clone()),
                c.server.map(|i| v.pools.server(i).addr.to_string()),
                Some(c.state.to_string()),
                c.tls.clone(),
                Some(v.now.saturating_duration_since(c.started).as_secs().to_string()),
                Some(c.bytes_in.to_string()),
                Some(c.bytes_out.to_string()),
            ]
        })
        .collect();
    Table { columns, rows }
}

/// One counter, as SHOW STATS (`stat`) and `/metrics` (`metric`, with its
/// label) name it. Consecutive rows of one metric are one family there.
struct Counter {
    stat: &'static str,
    metric: &'static str,
    label: Option<(&'static str, &'static str)>,
    kind: Kind,
    help: &'static str,
    get: fn(&View) -> u64,
}

const fn counter(
    stat: &'static str,
    metric: &'static str,
    label: Option<(&'static str, &'static str)>,
    kind: Kind,
    help: &'static str,
    get: fn(&View) -> u64,
) -> Counter {
    Counter { stat, metric, label, kind, help, get }
}

const LOGINS: &str = "Client logins checked by myroute.";
const BYTES: &str = "Bytes from (in) and to (out) clients.";
const RELOADS: &str = "Configuration reloads.";
const TRANSPORT: &str = "Client logins that reached a backend, by the client leg's transport.";
const TLS_FAILURES: &str = "TLS handshakes that failed, toward clients and toward servers.";

/// The counters SHOW STATS and `/metrics` both show, in SHOW STATS order;
/// the connection ends by reason (`ends_*`) come after `bytes_out`.
#[rustfmt::skip]
const COUNTERS: &[Counter] = &[
    counter("uptime_seconds", "myroute_uptime_seconds", None, Kind::Gauge, "Seconds since start.", |v| v.now.saturating_duration_since(v.stats.started).as_secs()),
    counter("clients_active", "myroute_clients_active", None, Kind::Gauge, "Client connections open now.", |v| v.clients.len() as u64),
    counter("connections_accepted", "myroute_connections_accepted_total", None, Kind::Counter, "Client connections accepted.", |v| v.stats.accepted),
    counter("connections_refused", "myroute_connections_refused_total", None, Kind::Counter, "Client connections refused because max_clients were open.", |v| v.stats.refused),
    counter("logins_ok", "myroute_logins_total", Some(("result", "ok")), Kind::Counter, LOGINS, |v| v.stats.logins_ok),
    counter("logins_failed", "myroute_logins_total", Some(("result", "failed")), Kind::Counter, LOGINS, |v| v.stats.logins_failed),
    counter("logins_tls", "myroute_client_logins_total", Some(("transport", "tls")), Kind::Counter, TRANSPORT, |v| v.stats.logins_tls),
    counter("logins_plain", "myroute_client_logins_total", Some(("transport", "plain")), Kind::Counter, TRANSPORT, |v| v.stats.logins_plain),
    counter("logins_refused_insecure", "myroute_logins_refused_insecure_total", None, Kind::Counter, "Logins refused because tls = required and the client came without TLS.", |v| v.stats.logins_insecure),
    counter("backend_connects", "myroute_backend_connects_total", None, Kind::Counter, "Backend connections opened.", |v| v.stats.backend_connects),
    counter("backend_failures", "myroute_backend_failures_total", None, Kind::Counter, "Backend connects and logins that failed.", |v| v.stats.backend_failures),
    counter("tls_handshake_failures_client", "myroute_tls_handshake_failures_total", Some(("side", "client")), Kind::Counter, TLS_FAILURES, |v| v.stats.tls_failures_client),
    counter("tls_handshake_failures_server", "myroute_tls_handshake_failures_total", Some(("side", "server")), Kind::Counter, TLS_FAILURES, |v| v.stats.tls_failures_server),
    // Connections still open count too.
    counter("bytes_in", "myroute_bytes_total", Some(("direction", "in")), Kind::Counter, BYTES, |v| v.stats.bytes_in + v.clients.iter().map(|c| c.bytes_in).sum::<u64>()),
    counter("bytes_out", "myroute_bytes_total", Some(("direction", "out")), Kind::Counter, BYTES, |v| v.stats.bytes_out + v.clients.iter().map(|c| c.bytes_out).sum::<u64>()),
    counter("reloads", "myroute_reloads_total", Some(("result", "ok")), Kind::Counter, RELOADS, |v| v.stats.reloads),
    counter("reload_failures", "myroute_reloads_total", Some(("result", "failed")), Kind::Counter, RELOADS, |v| v.stats.reload_failures),
    counter("admin_logins_failed", "myroute_admin_logins_failed_total", None, Kind::Counter, "Failed admin console logins.", |v| v.stats.admin_logins_failed),
];

/// A counter's row: its SHOW STATS name, its metric and label, its value.
struct Row {
    stat: String,
    metric: &'static str,
    label: Option<(&'static str, &'static str)>,
    kind: Kind,
    help: &'static str,
    value: u64,
}

/// Every counter's row, in SHOW STATS order.
fn counters(v: &View) -> Vec<Row> {
    let row = |c: &Counter| Row {
        stat: c.stat.to_string(),
        metric: c.metric,
        label: c.label,
        kind: c.kind,
        help: c.help,
        value: (c.get)(v),
    };
    let ends = EndReason::KINDS.iter().zip(v.stats.ends).map(|(kind, value)| Row {
        stat: format!("ends_{kind}"),
        metric: "myroute_connection_ends_total",
        label: Some(("reason", kind)),
        kind: Kind::Counter,
        help: "Client connections ended, by reason.",
        value,
    });
    let split = COUNTERS.iter().position(|c| c.stat == "bytes_out").map_or(0, |i| i + 1);
    let (head, tail) = COUNTERS.split_at(split);
    head.iter().map(row).chain(ends).chain(tail.iter().map(row)).collect()
}

/// SHOW STATS: `name`, `value` rows.
pub fn stats(v: &View) -> Table {
    Table {
        columns: vec![Column::text("name"), Column::num("value")],
        rows: counters(v)
            .into_iter()
            .map(|r| vec![Some(r.stat), Some(r.value.to_string())])
            .collect(),
    }
}

/// SHOW CONFIG: every key with its effective value, from the key table;
/// password hashes are not shown.
pub fn config(cfg: &Config) -> Table {
    Table {
        columns: vec![Column::text("key"), Column::text("value")],
        rows: crate::config::show(cfg).into_iter().map(|(k, v)| vec![Some(k), v]).collect(),
    }
}

/// SHOW VERSION.
pub fn version() -> Table {
    Table {
        columns: vec![Column::text("version")],
        rows: vec![vec![Some(format!("myroute {}", env!("CARGO_PKG_VERSION")))]],
    }
}

/// A family with one sample per `(label value, value)`.
fn family(
    e: &mut Exposition,
    name: &str,
    kind: Kind,
    help: &str,
    label: &str,
    values: &[(&str, u64)],
) {
    e.family(name, help, kind);
    for (l, n) in values {
        e.sample(name, &[(label, l)], *n);
    }
}

/// A per-server or per-pool metric: name, type, help, value.
type Metric<F> = (&'static str, Kind, &'static str, F);
type ServerValue = fn(&Server) -> u64;
/// A pool's value, given the clients routed to each pool now.
type PoolValue = fn(&View, usize, &[u64]) -> u64;

/// What `/metrics` shows per server.
#[rustfmt::skip]
const PER_SERVER: [Metric<ServerValue>; 5] = [
    ("myroute_server_up", Kind::Gauge, "1 if the server passes its health checks.", |s| u64::from(!s.health.down)),
    ("myroute_server_drained", Kind::Gauge, "1 if the server takes no new connections (DRAIN SERVER, or removed by a reload).", |s| u64::from(s.draining())),
    ("myroute_server_active_connections", Kind::Gauge, "Backend connections open to the server.", |s| u64::from(s.active)),
    ("myroute_server_connections_total", Kind::Counter, "Backend connections opened to the server.", |s| s.total),
    ("myroute_server_failures_total", Kind::Counter, "Failed health checks and backend logins.", |s| s.failures_total),
];

/// What `/metrics` shows per pool.
#[rustfmt::skip]
const PER_POOL: [Metric<PoolValue>; 4] = [
    ("myroute_pool_servers", Kind::Gauge, "Servers in the pool.", |v, p, _| v.pools.pool(p).members.len() as u64),
    ("myroute_pool_servers_up", Kind::Gauge, "Servers of the pool that can take new connections.", |v, p, _| usable_members(v, p) as u64),
    ("myroute_pool_clients", Kind::Gauge, "Client connections routed to the pool now.", |_, p, c| c[p]),
    ("myroute_pool_connections_total", Kind::Counter, "Client connections routed to the pool.", |v, p, _| v.pools.pool(p).clients_total),
];

/// `/metrics`.
pub fn metrics(v: &View) -> String {
    let mut e = Exposition::new();
    let version = [(env!("CARGO_PKG_VERSION"), 1)];
    family(&mut e, "myroute_info", Kind::Gauge, "The running version.", "version", &version);
    let rows = counters(v);
    for (i, r) in rows.iter().enumerate() {
        if i == 0 || rows[i - 1].metric != r.metric {
            e.family(r.metric, r.help, r.kind);
        }
        let label: Vec<(&str, &str)> = r.label.into_iter().collect();
        e.sample(r.metric, &label, r.value);
    }
    let servers: Vec<&Server> =
        v.pools.servers().iter().filter(|s| s.in_pool || s.active > 0).collect();
    let addrs: Vec<String> = servers.iter().map(|s| s.addr.to_string()).collect();
    for (name, kind, help, get) in PER_SERVER {
        let values: Vec<(&str, u64)> =
            addrs.iter().map(String::as_str).zip(servers.iter().map(|s| get(s))).collect();
        family(&mut e, name, kind, help, "server", &values);
    }
    let clients = clients_per_pool(v);
    let pools = v.pools.pools();
    for (name, kind, help, get) in PER_POOL {
        let live = (0..pools.len()).filter(|&p| !pools[p].removed);
        let values: Vec<(&str, u64)> =
            live.map(|p| (pools[p].name.as_str(), get(v, p, &clients))).collect();
        family(&mut e, name, kind, help, "pool", &values);
    }
    let s = v.stats;
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
    e.into_string()
}
