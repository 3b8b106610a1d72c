//! The configuration file: `key = value` lines, `#` comments, one table of
//! keys that drives parsing, defaults, `--check` and the man page test.
//!
//! Every mistake is an error carrying its line number; nothing falls back to a
//! silent default. Pure: `parse` takes the file's text, not its path.

use crate::proxy_proto::{parse_cidr_list, Cidr};
use crate::scramble::{parse_hash, stage1_of, Secret};
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// One configuration key. Names with `NAME` in them are patterns: the part
/// between the fixed prefix and suffix is a pool or user name.
pub struct Key {
    pub name: &'static str,
    /// The default as written in the file; `None` for keys that are
    /// required or have no default.
    pub default: Option<&'static str>,
}

const fn key(name: &'static str, default: Option<&'static str>) -> Key {
    Key { name, default }
}

/// Every key myroute knows. `man/myroute.conf.5` documents each (a unit test
/// checks that), and parsing takes its defaults from here.
pub const KEYS: &[Key] = &[
    key("listen", Some("127.0.0.1:3306")),
    key("server_version", None),
    key("buffer_size", Some("16384")),
    key("max_clients", Some("4096")),
    key("reuse_port", Some("no")),
    key("connect_timeout", Some("5s")),
    key("handshake_timeout", Some("10s")),
    key("idle_timeout", Some("0")),
    key("source_address", None),
    key("health.interval", Some("2s")),
    key("health.fall", Some("3")),
    key("health.rise", Some("2")),
    key("health.user", None),
    key("health.password", None),
    key("shutdown_timeout", Some("30s")),
    key("admin.listen", None),
    key("admin.user", None),
    key("admin.password", None),
    key("metrics.listen", None),
    key("proxy_protocol_from", None),
    key("user", None),
    key("pid_file", None),
    key("log_level", Some("info")),
    key("pool.NAME.servers", None),
    key("pool.NAME.role", Some("any")),
    key("pool.NAME.fallback", None),
    key("pool.NAME.proxy_protocol", Some("none")),
    key("user.NAME.password", None),
    key("user.NAME.pool", None),
];

/// Smallest and largest `buffer_size`: a ring must hold any connection-phase
/// packet, and 16 MiB is the largest single MySQL packet.
pub const MIN_BUFFER: usize = 4096;
pub const MAX_BUFFER: usize = 16 << 20;
/// Largest server weight.
pub const MAX_WEIGHT: u32 = 1000;

/// A configuration error at a line (1-based; 0 when it concerns the file as
/// a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub line: usize,
    pub msg: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.line, self.msg)
    }
}

fn err<T>(line: usize, msg: impl Into<String>) -> Result<T, Error> {
    Err(Error {
        line,
        msg: msg.into(),
    })
}

/// What `read_only` a pool's servers must report to count as up for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `read_only = 0`: the one that takes writes.
    Primary,
    /// `read_only = 1`.
    Replica,
    /// Either.
    Any,
}

impl Role {
    const ALL: [Role; 3] = [Role::Primary, Role::Replica, Role::Any];

    /// As the file and the console spell it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
            Role::Any => "any",
        }
    }
}

/// One server of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConf {
    pub addr: SocketAddr,
    /// Least-connections compares active connections divided by this.
    pub weight: u32,
}

/// Whether backend connections of a pool start with a PROXY protocol
/// header carrying the client's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocol {
    None,
    V1,
    V2,
}

impl ProxyProtocol {
    const ALL: [ProxyProtocol; 3] = [ProxyProtocol::None, ProxyProtocol::V1, ProxyProtocol::V2];

    /// As the file and the console spell it.
    pub fn name(self) -> &'static str {
        match self {
            ProxyProtocol::None => "none",
            ProxyProtocol::V1 => "v1",
            ProxyProtocol::V2 => "v2",
        }
    }
}

/// A pool of backend servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConf {
    pub name: String,
    pub servers: Vec<ServerConf>,
    pub role: Role,
    /// Index of the pool used when no server of this one is up.
    pub fallback: Option<usize>,
    pub proxy_protocol: ProxyProtocol,
}

/// The admin console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub listen: SocketAddr,
    pub user: String,
    /// `SHA1(SHA1(password))`; a console always has a password.
    pub stage2: Secret,
}

/// A user myroute lets in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserConf {
    pub name: String,
    /// `SHA1(SHA1(password))`, or `None` for an account without password.
    pub stage2: Option<Secret>,
    /// Index into `Config::pools`.
    pub pool: usize,
}

/// The account health checks log in with.
#[derive(Clone, PartialEq, Eq)]
pub struct HealthUser {
    pub name: String,
    /// `SHA1(password)` (what a login needs), or `None` for no password.
    /// The clear password is not kept.
    pub stage1: Option<Secret>,
}

impl fmt::Debug for HealthUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HealthUser({})", self.name)
    }
}

/// Health checking settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub interval: Duration,
    pub fall: u32,
    pub rise: u32,
    pub user: Option<HealthUser>,
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub listen: SocketAddr,
    pub server_version: Option<String>,
    pub buffer_size: usize,
    pub max_clients: usize,
    /// Listen with SO_REUSEPORT, so several processes can share `listen`.
    pub reuse_port: bool,
    pub connect_timeout: Duration,
    pub handshake_timeout: Duration,
    /// `None`: never.
    pub idle_timeout: Option<Duration>,
    pub source_address: Option<IpAddr>,
    pub health: Health,
    pub pools: Vec<PoolConf>,
    pub users: Vec<UserConf>,
    /// How long a shutdown waits for busy clients.
    pub shutdown_timeout: Duration,
    pub admin: Option<Admin>,
    pub metrics_listen: Option<SocketAddr>,
    /// Peers allowed to send a PROXY protocol header.
    pub proxy_protocol_from: Vec<Cidr>,
    /// Account to switch to after binding.
    pub run_as: Option<String>,
    pub pid_file: Option<String>,
    pub log_level: log::LevelFilter,
}

impl Config {
    /// The user with exactly this name (user names are case-sensitive, as
    /// in MySQL).
    pub fn user(&self, name: &[u8]) -> Option<&UserConf> {
        self.users.iter().find(|u| u.name.as_bytes() == name)
    }
}

/// Parses a duration: a whole number followed by `ms`, `s`, `m` or `h`
/// (a bare `0` is zero).
pub fn parse_duration(v: &str) -> Option<Duration> {
    if v == "0" {
        return Some(Duration::ZERO);
    }
    let split = v.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    let ms = match unit {
        "ms" => n,
        "s" => n.checked_mul(1000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

/// Parses `host:port`; a host name is resolved once, now.
pub fn parse_address(v: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = v.parse::<SocketAddr>() {
        return Ok(a);
    }
    let (host, port) = v
        .rsplit_once(':')
        .ok_or_else(|| format!("bad address '{v}': expected host:port"))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!("bad address '{v}': expected host:port"));
    }
    v.to_socket_addrs()
        .ok()
        .and_then(|mut it| it.next())
        .ok_or_else(|| format!("bad address '{v}': cannot resolve host '{host}'"))
}

/// Parses one server of a list: `host:port` optionally followed by
/// `weight=N`.
fn parse_server(v: &str) -> Result<ServerConf, String> {
    let mut words = v.split_whitespace();
    let addr = parse_address(words.next().unwrap_or(""))?;
    let mut weight = 1;
    for w in words {
        let n = w
            .strip_prefix("weight=")
            .ok_or_else(|| format!("unknown server option '{w}' (expected weight=N)"))?;
        weight = n
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_WEIGHT).contains(n))
            .ok_or_else(|| format!("bad weight '{n}': expected 1 to {MAX_WEIGHT}"))?;
    }
    Ok(ServerConf { addr, weight })
}

/// Parses a pool or user name out of `prefix.NAME.suffix`.
fn pattern_name<'a>(key: &'a str, prefix: &str, suffix: &str) -> Option<&'a str> {
    let name = key.strip_prefix(prefix)?.strip_suffix(suffix)?;
    (!name.is_empty()).then_some(name)
}

/// Which table key a file key is, with the NAME part for patterns.
fn lookup(key: &str) -> Option<(&'static Key, Option<&str>)> {
    for k in KEYS {
        if let Some((prefix, suffix)) = k.name.split_once("NAME") {
            if let Some(name) = pattern_name(key, prefix, suffix) {
                return Some((k, Some(name)));
            }
        } else if k.name == key {
            return Some((k, None));
        }
    }
    None
}

/// One `key = value` line.
struct Entry {
    line: usize,
    key: &'static str,
    name: String,
    value: String,
}

/// Splits the file into entries, rejecting unknown and duplicate keys.
fn entries(text: &str) -> Result<Vec<Entry>, Error> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let Some((key, value)) = content.split_once('=') else {
            return err(line, format!("expected 'key = value', got '{content}'"));
        };
        let (key, value) = (key.trim(), value.trim());
        let Some((k, name)) = lookup(key) else {
            return err(line, format!("unknown key '{key}'"));
        };
        if let Some(first) = seen.insert(key.to_string(), line) {
            return err(
                line,
                format!("duplicate key '{key}' (first set on line {first})"),
            );
        }
        out.push(Entry {
            line,
            key: k.name,
            name: name.unwrap_or_default().to_string(),
            value: value.to_string(),
        });
    }
    Ok(out)
}

/// The value of a global key: from the file (with its line) or the table's
/// default (line 0).
fn global<'a>(entries: &'a [Entry], name: &str) -> Option<(usize, &'a str)> {
    if let Some(e) = entries.iter().find(|e| e.key == name) {
        return Some((e.line, e.value.as_str()));
    }
    KEYS.iter()
        .find(|k| k.name == name)
        .and_then(|k| k.default)
        .map(|d| (0, d))
}

fn number<T: std::str::FromStr + PartialOrd + fmt::Display>(
    entries: &[Entry],
    name: &str,
    min: T,
    max: T,
) -> Result<T, Error> {
    let (line, v) = global(entries, name).unwrap_or((0, ""));
    match v.parse::<T>() {
        Ok(n) if n >= min && n <= max => Ok(n),
        _ => err(
            line,
            format!("{name}: '{v}' is not a number from {min} to {max}"),
        ),
    }
}

fn duration(entries: &[Entry], name: &str, zero_ok: bool) -> Result<Duration, Error> {
    let (line, v) = global(entries, name).unwrap_or((0, ""));
    match parse_duration(v) {
        Some(d) if zero_ok || !d.is_zero() => Ok(d),
        _ => err(
            line,
            format!("{name}: '{v}' is not a duration like 250ms, 5s, 2m"),
        ),
    }
}

/// Parses and validates a whole file.
pub fn parse(text: &str) -> Result<Config, Error> {
    let entries = entries(text)?;
    let (line, v) = global(&entries, "listen").unwrap_or((0, ""));
    let listen = parse_address(v).or_else(|m| err(line, m))?;
    let server_version = match global(&entries, "server_version") {
        Some((line, "")) => return err(line, "server_version must not be empty"),
        Some((line, v)) if v.contains('\0') => {
            return err(line, "server_version must not contain a NUL byte")
        }
        other => other.map(|(_, v)| v.to_string()),
    };
    let source_address = match global(&entries, "source_address") {
        Some((line, v)) => Some(
            v.parse::<IpAddr>()
                .or_else(|_| err(line, format!("source_address: '{v}' is not an IP address")))?,
        ),
        None => None,
    };
    let idle = duration(&entries, "idle_timeout", true)?;

    let health_user = match global(&entries, "health.user") {
        Some((line, name)) => {
            if name.is_empty() {
                return err(line, "health.user must not be empty");
            }
            let password = global(&entries, "health.password").map_or("", |(_, p)| p);
            Some(HealthUser {
                name: name.to_string(),
                stage1: (!password.is_empty()).then(|| stage1_of(password.as_bytes())),
            })
        }
        None => {
            if let Some((line, _)) = global(&entries, "health.password") {
                return err(line, "health.password is set but health.user is not");
            }
            None
        }
    };

    let admin = match global(&entries, "admin.listen") {
        Some((line, v)) => {
            let listen = parse_address(v).or_else(|m| err(line, m))?;
            let user = match global(&entries, "admin.user") {
                Some((_, u)) if !u.is_empty() => u.to_string(),
                Some((line, _)) => return err(line, "admin.user must not be empty"),
                None => return err(line, "admin.listen is set but admin.user is not"),
            };
            let stage2 = match global(&entries, "admin.password") {
                Some((line, "")) => return err(line, "admin.password must not be empty"),
                Some((line, v)) => parse_hash(v).ok_or_else(|| Error {
                    line,
                    msg: "admin.password must be '*' followed by 40 hex digits (see myroute --hash-password)".into(),
                })?,
                None => return err(line, "admin.listen is set but admin.password is not"),
            };
            Some(Admin {
                listen,
                user,
                stage2,
            })
        }
        None => {
            for k in ["admin.user", "admin.password"] {
                if let Some((line, _)) = global(&entries, k) {
                    return err(line, format!("{k} is set but admin.listen is not"));
                }
            }
            None
        }
    };
    let metrics_listen = match global(&entries, "metrics.listen") {
        Some((line, v)) => Some(parse_address(v).or_else(|m| err(line, m))?),
        None => None,
    };
    let proxy_protocol_from = match global(&entries, "proxy_protocol_from") {
        Some((line, v)) => {
            parse_cidr_list(v).or_else(|m| err(line, format!("proxy_protocol_from: {m}")))?
        }
        None => Vec::new(),
    };
    let optional_text = |name: &str| -> Result<Option<String>, Error> {
        match global(&entries, name) {
            Some((line, "")) => err(line, format!("{name} must not be empty")),
            other => Ok(other.map(|(_, v)| v.to_string())),
        }
    };
    let log_level = match global(&entries, "log_level") {
        Some((_, v @ ("off" | "error" | "warn" | "info" | "debug" | "trace"))) => {
            v.parse().unwrap_or(log::LevelFilter::Info)
        }
        Some((line, v)) => {
            return err(
                line,
                format!("log_level: '{v}': expected error, warn, info, debug, trace or off"),
            )
        }
        None => log::LevelFilter::Info,
    };

    let mut cfg = Config {
        listen,
        server_version,
        buffer_size: number(&entries, "buffer_size", MIN_BUFFER, MAX_BUFFER)?,
        max_clients: number(&entries, "max_clients", 1, 1 << 20)?,
        reuse_port: match global(&entries, "reuse_port") {
            Some((_, "yes")) => true,
            Some((_, "no")) | None => false,
            Some((line, v)) => return err(line, format!("reuse_port: '{v}': expected yes or no")),
        },
        connect_timeout: duration(&entries, "connect_timeout", false)?,
        handshake_timeout: duration(&entries, "handshake_timeout", false)?,
        idle_timeout: (!idle.is_zero()).then_some(idle),
        source_address,
        health: Health {
            interval: duration(&entries, "health.interval", false)?,
            fall: number(&entries, "health.fall", 1, 100)?,
            rise: number(&entries, "health.rise", 1, 100)?,
            user: health_user,
        },
        pools: Vec::new(),
        users: Vec::new(),
        shutdown_timeout: duration(&entries, "shutdown_timeout", true)?,
        admin,
        metrics_listen,
        proxy_protocol_from,
        run_as: optional_text("user")?,
        pid_file: optional_text("pid_file")?,
        log_level,
    };

    // Pools: servers first, then the keys that refer to pools.
    for e in entries.iter().filter(|e| e.key == "pool.NAME.servers") {
        let mut servers: Vec<ServerConf> = Vec::new();
        for part in e.value.split(',').map(str::trim) {
            if part.is_empty() {
                return err(e.line, "empty server address in list");
            }
            let s = parse_server(part).or_else(|m| err(e.line, m))?;
            if servers.iter().any(|x| x.addr == s.addr) {
                return err(e.line, format!("server {} listed twice", s.addr));
            }
            servers.push(s);
        }
        if servers.len() > crate::pool::MAX_MEMBERS {
            let max = crate::pool::MAX_MEMBERS;
            return err(e.line, format!("more than {max} servers in one pool"));
        }
        cfg.pools.push(PoolConf {
            name: e.name.clone(),
            servers,
            role: Role::Any,
            fallback: None,
            proxy_protocol: ProxyProtocol::None,
        });
    }
    let pool_index = |e: &Entry, name: &str| -> Result<usize, Error> {
        cfg.pools
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| Error {
                line: e.line,
                msg: format!("pool '{name}' is not defined (no pool.{name}.servers)"),
            })
    };
    let mut roles = Vec::new();
    let mut fallbacks = Vec::new();
    let mut protocols = Vec::new();
    for e in &entries {
        match e.key {
            "pool.NAME.role" => {
                let idx = pool_index(e, &e.name)?;
                let Some(role) = Role::ALL.into_iter().find(|r| r.name() == e.value) else {
                    let v = &e.value;
                    return err(
                        e.line,
                        format!("role '{v}': expected primary, replica or any"),
                    );
                };
                if role != Role::Any && cfg.health.user.is_none() {
                    return err(e.line, "a pool role needs health.user: only a check that logs in can read @@read_only");
                }
                roles.push((idx, role));
            }
            "pool.NAME.fallback" => {
                let idx = pool_index(e, &e.name)?;
                let to = pool_index(e, &e.value)?;
                if to == idx {
                    return err(
                        e.line,
                        format!("pool '{}' cannot fall back to itself", e.name),
                    );
                }
                fallbacks.push((idx, to));
            }
            "pool.NAME.proxy_protocol" => {
                let idx = pool_index(e, &e.name)?;
                let Some(pp) = ProxyProtocol::ALL.into_iter().find(|p| p.name() == e.value) else {
                    let v = &e.value;
                    return err(
                        e.line,
                        format!("proxy_protocol '{v}': expected none, v1 or v2"),
                    );
                };
                protocols.push((idx, pp));
            }
            _ => {}
        }
    }
    for (idx, role) in roles {
        cfg.pools[idx].role = role;
    }
    for (idx, to) in fallbacks {
        cfg.pools[idx].fallback = Some(to);
    }
    for (idx, pp) in protocols {
        cfg.pools[idx].proxy_protocol = pp;
    }

    // Users by name: (password line, hash), (pool line, pool name).
    type PendingUser = (Option<(usize, Option<Secret>)>, Option<(usize, String)>);
    let mut users: Vec<(String, PendingUser)> = Vec::new();
    for e in entries.iter().filter(|e| e.key.starts_with("user.")) {
        let idx = match users.iter().position(|(n, _)| *n == e.name) {
            Some(i) => i,
            None => {
                users.push((e.name.clone(), (None, None)));
                users.len() - 1
            }
        };
        let slot = &mut users[idx].1;
        if e.key == "user.NAME.password" {
            let stage2 = if e.value.is_empty() {
                None
            } else {
                Some(parse_hash(&e.value).ok_or_else(|| Error {
                    line: e.line,
                    msg: "password must be '*' followed by 40 hex digits, as mysql.user.authentication_string shows it (or empty for no password)".into(),
                })?)
            };
            slot.0 = Some((e.line, stage2));
        } else {
            slot.1 = Some((e.line, e.value.clone()));
        }
    }
    for (name, (password, pool)) in users {
        let (pw_line, stage2) = match (password, &pool) {
            (Some(p), _) => p,
            (None, Some((line, _))) => {
                return err(
                    *line,
                    format!("user '{name}' has a pool but no user.{name}.password"),
                )
            }
            // Not reachable: an entry exists once one of its keys was seen.
            (None, None) => continue,
        };
        let Some((pool_line, pool_name)) = pool else {
            return err(pw_line, format!("user '{name}' has no user.{name}.pool"));
        };
        let Some(pool) = cfg.pools.iter().position(|p| p.name == pool_name) else {
            return err(
                pool_line,
                format!(
                    "user '{name}': pool '{pool_name}' is not defined (no pool.{pool_name}.servers)"
                ),
            );
        };
        cfg.users.push(UserConf { name, stage2, pool });
    }
    if cfg.users.is_empty() {
        return err(
            0,
            "no users configured (user.NAME.password and user.NAME.pool)",
        );
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
# a comment
listen = 127.0.0.1:6033
server_version = 10.11.6-MariaDB   # trailing comment
buffer_size = 8192
connect_timeout = 250ms
handshake_timeout = 2m
pool.primary.servers  = 127.0.0.1:23306
pool.replicas.servers = 127.0.0.1:23307, 127.0.0.1:23308
user.app_rw.password = *2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19
user.app_rw.pool     = primary
user.app.ro.password = *2470c0c06dee42fd1618bb99005adca2ec9d1e19
user.app.ro.pool     = replicas
user.nopw.password =
user.nopw.pool = replicas
";

    #[test]
    fn parses_a_full_file() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.listen, "127.0.0.1:6033".parse().unwrap());
        assert_eq!(c.server_version.as_deref(), Some("10.11.6-MariaDB"));
        assert_eq!(c.buffer_size, 8192);
        assert_eq!(c.connect_timeout, Duration::from_millis(250));
        assert_eq!(c.handshake_timeout, Duration::from_secs(120));
        assert_eq!(c.pools.len(), 2);
        assert_eq!(c.pools[1].servers.len(), 2);
        let ro = c.user(b"app.ro").unwrap();
        assert_eq!(c.pools[ro.pool].name, "replicas");
        assert!(c.user(b"nopw").unwrap().stage2.is_none());
        assert!(c.user(b"APP_RW").is_none());
    }

    #[test]
    fn defaults_apply_when_keys_are_absent() {
        let c =
            parse("pool.p.servers = 127.0.0.1:1\nuser.u.password =\nuser.u.pool = p\n").unwrap();
        assert_eq!(c.listen, "127.0.0.1:3306".parse().unwrap());
        assert_eq!(c.buffer_size, 16384);
        assert_eq!(c.connect_timeout, Duration::from_secs(5));
        assert_eq!(c.handshake_timeout, Duration::from_secs(10));
        assert_eq!(c.server_version, None);
    }

    fn error_of(text: &str) -> Error {
        parse(text).expect_err("should be rejected")
    }

    #[test]
    fn each_mistake_names_its_line() {
        let base = "pool.p.servers = 127.0.0.1:1\nuser.u.password =\nuser.u.pool = p\n";
        let cases: &[(&str, usize, &str)] = &[
            ("bogus = 1\n", 4, "unknown key 'bogus'"),
            ("pool.p.servers = 127.0.0.1:2\n", 4, "duplicate key"),
            (
                "user.v.password =\nuser.v.pool = nope\n",
                5,
                "pool 'nope' is not defined",
            ),
            ("user.w.password =\n", 4, "has no user.w.pool"),
            ("user.x.pool = p\n", 4, "has a pool but no"),
            ("listen = 127.0.0.1\n", 4, "bad address"),
            ("listen = 127.0.0.1:99999\n", 4, "bad address"),
            (
                "pool.q.servers = 127.0.0.1:1,,127.0.0.1:2\n",
                4,
                "empty server address",
            ),
            (
                "user.y.password = *ABC\nuser.y.pool = p\n",
                4,
                "40 hex digits",
            ),
            (
                "user.y.password = secret\nuser.y.pool = p\n",
                4,
                "40 hex digits",
            ),
            ("buffer_size = 100\n", 4, "from 4096 to"),
            ("buffer_size = 16k\n", 4, "not a number"),
            ("max_clients = 0\n", 4, "not a number"),
            ("reuse_port = on\n", 4, "expected yes or no"),
            ("server_version = 8.0\0x\n", 4, "NUL"),
            ("health.fall = x\n", 4, "not a number"),
            ("idle_timeout = 5\n", 4, "not a duration"),
            ("health.interval = 0\n", 4, "not a duration"),
            ("source_address = 127.0.0.1:5\n", 4, "not an IP address"),
            ("health.password = x\n", 4, "health.user is not"),
            ("pool.p.role = primary\n", 4, "needs health.user"),
            (
                "health.user = m\npool.p.role = master\n",
                5,
                "expected primary",
            ),
            ("pool.p.fallback = nope\n", 4, "pool 'nope' is not defined"),
            ("pool.p.fallback = p\n", 4, "itself"),
            ("pool.x.role = any\n", 4, "pool 'x' is not defined"),
            ("pool.q.servers = 127.0.0.1:1 weight=0\n", 4, "bad weight"),
            ("pool.q.servers = 127.0.0.1:1 weight=2x\n", 4, "bad weight"),
            (
                "pool.q.servers = 127.0.0.1:1 heavy\n",
                4,
                "unknown server option",
            ),
            (
                "pool.q.servers = 127.0.0.1:1, 127.0.0.1:1\n",
                4,
                "listed twice",
            ),
            ("connect_timeout = 5\n", 4, "not a duration"),
            ("connect_timeout = 0s\n", 4, "not a duration"),
            ("just words\n", 4, "expected 'key = value'"),
            ("pool..servers = 127.0.0.1:1\n", 4, "unknown key"),
        ];
        for (extra, line, msg) in cases {
            let e = error_of(&format!("{base}{extra}"));
            assert_eq!(e.line, *line, "{extra:?}: {e}");
            assert!(e.msg.contains(msg), "{extra:?}: {e}");
        }
    }

    #[test]
    fn availability_keys() {
        let c = parse(
            "idle_timeout = 10m\nmax_clients = 10\nsource_address = 127.0.0.2\n\
             health.interval = 500ms\nhealth.fall = 1\nhealth.rise = 4\n\
             health.user = monitor\nhealth.password = pw\n\
             pool.w.servers = 127.0.0.1:1, 127.0.0.1:2 weight=3\npool.w.role = primary\n\
             pool.r.servers = 127.0.0.1:2\npool.r.role = replica\npool.r.fallback = w\n\
             user.u.password =\nuser.u.pool = r\n",
        )
        .unwrap();
        assert_eq!(c.idle_timeout, Some(Duration::from_secs(600)));
        assert_eq!(c.max_clients, 10);
        assert!(!c.reuse_port);
        assert_eq!(c.source_address, Some("127.0.0.2".parse().unwrap()));
        assert_eq!(c.health.interval, Duration::from_millis(500));
        assert_eq!((c.health.fall, c.health.rise), (1, 4));
        let u = c.health.user.as_ref().unwrap();
        assert_eq!(u.name, "monitor");
        assert_eq!(u.stage1, Some(stage1_of(b"pw")));
        assert!(
            !format!("{c:?}").contains("pw"),
            "no password in Debug output"
        );
        assert_eq!(c.pools[0].servers[1].weight, 3);
        assert_eq!(c.pools[0].servers[0].weight, 1);
        assert_eq!(c.pools[0].role, Role::Primary);
        assert_eq!(
            (c.pools[1].role, c.pools[1].fallback),
            (Role::Replica, Some(0))
        );
        let d =
            parse("pool.p.servers = 127.0.0.1:1\nuser.u.password =\nuser.u.pool = p\n").unwrap();
        assert_eq!(
            (d.idle_timeout, d.max_clients, d.health.fall, d.health.rise),
            (None, 4096, 3, 2)
        );
        assert_eq!(d.health.interval, Duration::from_secs(2));
        assert_eq!(d.pools[0].role, Role::Any);
    }

    #[test]
    fn a_file_without_users_is_refused() {
        assert_eq!(error_of("pool.p.servers = 127.0.0.1:1\n").line, 0);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        for bad in [
            "",
            "s",
            "5",
            "5 s",
            "-1s",
            "1.5s",
            "5sec",
            "99999999999999999999s",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn every_key_is_documented_in_the_man_page() {
        let man = include_str!("../man/myroute.conf.5");
        for k in KEYS {
            assert!(
                man.contains(&format!(".B {}\n", k.name)),
                "man/myroute.conf.5 does not document {}",
                k.name
            );
            if let Some(d) = k.default {
                assert!(
                    man.contains(&format!("Default: {d}\n")),
                    "man/myroute.conf.5: no 'Default: {d}' for {}",
                    k.name
                );
            }
        }
    }
}
