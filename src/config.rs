//! The configuration file: `key = value` lines, `#` comments, and one table
//! of keys, `KEYS`, whose rows say how each key is parsed, checked,
//! defaulted and shown (SHOW CONFIG); a unit test holds the man page to it.
//!
//! Every mistake is an error carrying its line number; nothing falls back to a
//! silent default. Pure: `parse_with` takes the file's text, not its path,
//! and host names are looked up by the resolver its caller hands it.

use crate::protocol::proxy_proto::{parse_cidr_list, Cidr};
use crate::protocol::scramble::{parse_hash, stage1_of, Secret};
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;
use Show::{Global, PerPool, PerUser};

/// One configuration key. Names with `NAME` in them are patterns: the part
/// between the fixed prefix and suffix is a pool or user name.
pub struct Key {
    pub name: &'static str,
    /// The default as written in the file; `None` for keys that are
    /// required or have no default.
    pub default: Option<&'static str>,
    /// Reads one value into the configuration being built. Keys are applied
    /// in table order, so a key may rely on those above it: health.user
    /// before a pool's role, a pool's servers before its other keys, pools
    /// before users.
    apply: fn(&mut Build<'_>, &Setting<'_>) -> Result<(), Error>,
    show: Show,
}

/// How SHOW CONFIG prints a key (`None` is NULL), and so what a pattern's
/// NAME ranges over.
enum Show {
    /// A global key: one row.
    Global(fn(&Config) -> Option<String>),
    /// `pool.NAME.…`: one row per pool.
    PerPool(fn(&Config, &PoolConf) -> Option<String>),
    /// `user.NAME.…`: one row per user.
    PerUser(fn(&Config, &UserConf) -> Option<String>),
}

/// What SHOW CONFIG prints for a password or hash that is set.
const HIDDEN: &str = "<hidden>";

/// Durations show in milliseconds, whatever unit the file used, so they
/// compare at a glance.
fn millis(d: Duration) -> Option<String> {
    Some(format!("{}ms", d.as_millis()))
}

/// Every key myroute knows. `man/myroute.conf.5` documents each (a unit test
/// checks that), and parsing takes its defaults from here.
pub const KEYS: &[Key] = &[
    Key {
        name: "listen",
        default: Some("127.0.0.1:3306"),
        apply: |b, s| b.address(s).map(|a| b.cfg.listen = a),
        show: Global(|c| Some(c.listen.to_string())),
    },
    Key {
        name: "server_version",
        default: None,
        apply: |b, s| {
            let v = s.text()?;
            if v.contains('\0') {
                return Err(s.fail("server_version must not contain a NUL byte"));
            }
            b.cfg.server_version = Some(v);
            Ok(())
        },
        show: Global(|c| c.server_version.clone()),
    },
    Key {
        name: "buffer_size",
        default: Some("16384"),
        apply: |b, s| s.number(MIN_BUFFER, MAX_BUFFER).map(|n| b.cfg.buffer_size = n),
        show: Global(|c| Some(c.buffer_size.to_string())),
    },
    Key {
        name: "max_clients",
        default: Some("4096"),
        apply: |b, s| s.number(1, 1 << 20).map(|n| b.cfg.max_clients = n),
        show: Global(|c| Some(c.max_clients.to_string())),
    },
    Key {
        name: "reuse_port",
        default: Some("no"),
        apply: |b, s| match s.value {
            "yes" | "no" => {
                b.cfg.reuse_port = s.value == "yes";
                Ok(())
            }
            v => Err(s.fail(format!("reuse_port: '{v}': expected yes or no"))),
        },
        show: Global(|c| Some(if c.reuse_port { "yes" } else { "no" }.into())),
    },
    Key {
        name: "connect_timeout",
        default: Some("5s"),
        apply: |b, s| s.duration(false).map(|d| b.cfg.connect_timeout = d),
        show: Global(|c| millis(c.connect_timeout)),
    },
    Key {
        name: "handshake_timeout",
        default: Some("10s"),
        apply: |b, s| s.duration(false).map(|d| b.cfg.handshake_timeout = d),
        show: Global(|c| millis(c.handshake_timeout)),
    },
    Key {
        name: "idle_timeout",
        default: Some("0"),
        apply: |b, s| {
            let d = s.duration(true)?;
            b.cfg.idle_timeout = (!d.is_zero()).then_some(d);
            Ok(())
        },
        show: Global(|c| c.idle_timeout.map_or(Some("0".into()), millis)),
    },
    Key {
        name: "source_address",
        default: None,
        apply: |b, s| match s.value.parse::<IpAddr>() {
            Ok(addr) => {
                b.cfg.source_address = Some(addr);
                Ok(())
            }
            Err(_) => Err(s.fail(format!("source_address: '{}' is not an IP address", s.value))),
        },
        show: Global(|c| c.source_address.map(|a| a.to_string())),
    },
    Key {
        name: "health.interval",
        default: Some("2s"),
        apply: |b, s| s.duration(false).map(|d| b.cfg.health.interval = d),
        show: Global(|c| millis(c.health.interval)),
    },
    Key {
        name: "health.fall",
        default: Some("3"),
        apply: |b, s| s.number(1, 100).map(|n| b.cfg.health.fall = n),
        show: Global(|c| Some(c.health.fall.to_string())),
    },
    Key {
        name: "health.rise",
        default: Some("2"),
        apply: |b, s| s.number(1, 100).map(|n| b.cfg.health.rise = n),
        show: Global(|c| Some(c.health.rise.to_string())),
    },
    Key {
        name: "health.user",
        default: None,
        apply: |b, s| {
            let name = s.text()?;
            b.cfg.health.user = Some(HealthUser { name, stage1: None });
            Ok(())
        },
        show: Global(|c| c.health.user.as_ref().map(|u| u.name.clone())),
    },
    Key {
        name: "health.password",
        default: None,
        apply: |b, s| {
            let Some(user) = &mut b.cfg.health.user else {
                return Err(s.fail("health.password is set but health.user is not"));
            };
            // Empty: the account has no password.
            user.stage1 = (!s.value.is_empty()).then(|| stage1_of(s.value.as_bytes()));
            Ok(())
        },
        show: Global(|c| {
            let stage1 = c.health.user.as_ref().and_then(|u| u.stage1.as_ref());
            stage1.map(|_| HIDDEN.into())
        }),
    },
    Key {
        name: "shutdown_timeout",
        default: Some("30s"),
        apply: |b, s| s.duration(true).map(|d| b.cfg.shutdown_timeout = d),
        show: Global(|c| millis(c.shutdown_timeout)),
    },
    Key {
        name: "kill_across_servers",
        default: Some("no"),
        apply: |b, s| match s.value {
            "yes" | "no" => {
                b.cfg.kill_across_servers = s.value == "yes";
                Ok(())
            }
            v => Err(s.fail(format!("kill_across_servers: '{v}': expected yes or no"))),
        },
        show: Global(|c| Some(if c.kill_across_servers { "yes" } else { "no" }.into())),
    },
    Key {
        name: "admin.listen",
        default: None,
        apply: admin_console,
        show: Global(|c| c.admin.as_ref().map(|a| a.listen.to_string())),
    },
    Key {
        name: "admin.user",
        default: None,
        apply: read_with_admin_listen,
        show: Global(|c| c.admin.as_ref().map(|a| a.user.clone())),
    },
    Key {
        name: "admin.password",
        default: None,
        apply: read_with_admin_listen,
        show: Global(|c| c.admin.as_ref().map(|_| HIDDEN.into())),
    },
    Key {
        name: "metrics.listen",
        default: None,
        apply: |b, s| b.address(s).map(|a| b.cfg.metrics_listen = Some(a)),
        show: Global(|c| c.metrics_listen.map(|a| a.to_string())),
    },
    Key {
        name: "proxy_protocol_from",
        default: None,
        apply: |b, s| match parse_cidr_list(s.value) {
            Ok(nets) => {
                b.cfg.proxy_protocol_from = nets;
                Ok(())
            }
            Err(m) => Err(s.fail(format!("proxy_protocol_from: {m}"))),
        },
        show: Global(|c| {
            let nets: Vec<String> = c.proxy_protocol_from.iter().map(|n| n.to_string()).collect();
            (!nets.is_empty()).then(|| nets.join(", "))
        }),
    },
    Key {
        name: "user",
        default: None,
        apply: |b, s| s.text().map(|v| b.cfg.run_as = Some(v)),
        show: Global(|c| c.run_as.clone()),
    },
    Key {
        name: "pid_file",
        default: None,
        apply: |b, s| s.text().map(|v| b.cfg.pid_file = Some(v)),
        show: Global(|c| c.pid_file.clone()),
    },
    Key {
        name: "log_level",
        default: Some("info"),
        apply: |b, s| {
            let Some(&(_, level)) = LOG_LEVELS.iter().find(|(name, _)| *name == s.value) else {
                let v = s.value;
                let expected = "expected error, warn, info, debug, trace or off";
                return Err(s.fail(format!("log_level: '{v}': {expected}")));
            };
            b.cfg.log_level = level;
            Ok(())
        },
        show: Global(|c| Some(c.log_level.to_string().to_lowercase())),
    },
    Key {
        name: "tls",
        default: if cfg!(feature = "tls") { Some("optional") } else { None },
        apply: |b, s| choice(s, &ClientTls::ALL, ClientTls::name).map(|m| b.cfg.tls.mode = m),
        show: Global(|c| Some(c.tls.mode.name().into())),
    },
    Key {
        name: "tls.cert",
        default: None,
        apply: |b, s| {
            b.needs(s, "tls.key")?;
            file(s).map(|f| b.cfg.tls.cert = Some(f))
        },
        show: Global(|c| c.tls.cert.as_ref().map(|f| f.path.clone())),
    },
    Key {
        name: "tls.key",
        default: None,
        apply: |b, s| {
            b.needs(s, "tls.cert")?;
            file(s).map(|f| b.cfg.tls.key = Some(f))
        },
        show: Global(|c| c.tls.key.as_ref().map(|f| f.path.clone())),
    },
    Key {
        name: "pool.NAME.servers",
        default: None,
        apply: pool_servers,
        show: PerPool(|_, p| {
            let servers: Vec<String> = p
                .servers
                .iter()
                .map(|s| match s.weight {
                    1 => s.addr.to_string(),
                    w => format!("{} weight={w}", s.addr),
                })
                .collect();
            Some(servers.join(", "))
        }),
    },
    Key {
        name: "pool.NAME.role",
        default: Some("any"),
        apply: pool_role,
        show: PerPool(|_, p| Some(p.role.name().into())),
    },
    Key {
        name: "pool.NAME.fallback",
        default: None,
        apply: pool_fallback,
        show: PerPool(|c, p| p.fallback.map(|f| c.pools[f].name.clone())),
    },
    Key {
        name: "pool.NAME.proxy_protocol",
        default: Some("none"),
        apply: pool_proxy_protocol,
        show: PerPool(|_, p| Some(p.proxy_protocol.name().into())),
    },
    Key {
        name: "pool.NAME.tls",
        default: if cfg!(feature = "tls") { Some("off") } else { None },
        apply: pool_tls,
        show: PerPool(|_, p| Some(p.tls.mode.name().into())),
    },
    Key {
        name: "pool.NAME.tls_ca",
        default: None,
        apply: |b, s| b.pool_tls(s).and_then(|t| file(s).map(|f| t.ca = Some(f))),
        show: PerPool(|_, p| p.tls.ca.as_ref().map(|f| f.path.clone())),
    },
    Key {
        name: "pool.NAME.tls_name",
        default: None,
        apply: |b, s| {
            let name = s.text()?;
            b.pool_tls(s).map(|t| t.name = Some(name))
        },
        show: PerPool(|_, p| p.tls.name.clone()),
    },
    Key {
        name: "pool.NAME.tls_fingerprint",
        default: None,
        apply: |b, s| {
            let pin = parse_fingerprint(s.value).ok_or_else(|| {
                s.fail("tls_fingerprint must be sha256: followed by 64 hex digits (colons allowed)")
            })?;
            b.pool_tls(s).map(|t| t.fingerprint = Some(pin))
        },
        show: PerPool(|_, p| p.tls.fingerprint.map(|f| format_fingerprint(&f))),
    },
    Key {
        name: "pool.NAME.tls_cert",
        default: None,
        apply: |b, s| {
            b.needs(s, "pool.NAME.tls_key")?;
            let f = file(s)?;
            b.pool_tls(s).map(|t| t.cert = Some(f))
        },
        show: PerPool(|_, p| p.tls.cert.as_ref().map(|f| f.path.clone())),
    },
    Key {
        name: "pool.NAME.tls_key",
        default: None,
        apply: |b, s| {
            b.needs(s, "pool.NAME.tls_cert")?;
            let f = file(s)?;
            b.pool_tls(s).map(|t| t.key = Some(f))
        },
        show: PerPool(|_, p| p.tls.key.as_ref().map(|f| f.path.clone())),
    },
    Key {
        name: "user.NAME.password",
        default: None,
        apply: user_password,
        // An account without password shows as empty, as it is written.
        show: PerUser(|_, u| Some(u.stage2.as_ref().map_or("", |_| HIDDEN).into())),
    },
    Key {
        name: "user.NAME.pool",
        default: None,
        apply: |b, s| match b.setting("user.NAME.password", s.name) {
            // Read with the password: a user needs both.
            Some(_) => Ok(()),
            None => Err(s.fail(format!("user '{0}' has a pool but no user.{0}.password", s.name))),
        },
        show: PerUser(|c, u| Some(c.pools[u.pool].name.clone())),
    },
];

/// `log_level` values, as the file spells them.
const LOG_LEVELS: [(&str, log::LevelFilter); 6] = [
    ("off", log::LevelFilter::Off),
    ("error", log::LevelFilter::Error),
    ("warn", log::LevelFilter::Warn),
    ("info", log::LevelFilter::Info),
    ("debug", log::LevelFilter::Debug),
    ("trace", log::LevelFilter::Trace),
];

/// `admin.listen`, which reads `admin.user` and `admin.password` too: a
/// console needs all three, and they are checked in that order.
fn admin_console(b: &mut Build, s: &Setting) -> Result<(), Error> {
    let listen = b.address(s)?;
    let Some(user) = b.setting("admin.user", "") else {
        return Err(s.fail("admin.listen is set but admin.user is not"));
    };
    let user = user.text()?;
    let Some(password) = b.setting("admin.password", "") else {
        return Err(s.fail("admin.listen is set but admin.password is not"));
    };
    let stage2 = parse_hash(&password.text()?).ok_or_else(|| {
        password.fail(
            "admin.password must be '*' followed by 40 hex digits (see myroute --hash-password)",
        )
    })?;
    b.cfg.admin = Some(Admin { listen, user, stage2 });
    Ok(())
}

/// `admin.user` and `admin.password`: read by `admin.listen`, and an error
/// without it.
fn read_with_admin_listen(b: &mut Build, s: &Setting) -> Result<(), Error> {
    match b.cfg.admin {
        Some(_) => Ok(()),
        None => Err(s.fail(format!("{} is set but admin.listen is not", s.key))),
    }
}

/// `pool.NAME.servers`, which defines the pool; its other keys come next.
fn pool_servers(b: &mut Build, s: &Setting) -> Result<(), Error> {
    let mut servers: Vec<ServerConf> = Vec::new();
    for part in s.value.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(s.fail("empty server address in list"));
        }
        let server = parse_server(part, b.resolve).map_err(|m| s.fail(m))?;
        if servers.iter().any(|x| x.addr == server.addr) {
            return Err(s.fail(format!("server {} listed twice", server.addr)));
        }
        servers.push(server);
    }
    if servers.len() > MAX_MEMBERS {
        return Err(s.fail(format!("more than {MAX_MEMBERS} servers in one pool")));
    }
    b.cfg.pools.push(PoolConf {
        name: s.name.to_string(),
        servers,
        // Until the pool's own keys, or their defaults, are applied.
        role: Role::Any,
        fallback: None,
        proxy_protocol: ProxyProtocol::None,
        tls: PoolTls::default(),
    });
    Ok(())
}

/// `pool.NAME.tls`: the modes that verify need something to verify with.
fn pool_tls(b: &mut Build, s: &Setting) -> Result<(), Error> {
    let mode = choice(s, &ServerTls::ALL, ServerTls::name)?;
    let pool = b.pool(s, s.name)?;
    let verifies = matches!(mode, ServerTls::VerifyCa | ServerTls::VerifyIdentity);
    let with = |k| b.setting(k, s.name).is_some();
    if verifies && !with("pool.NAME.tls_ca") && !with("pool.NAME.tls_fingerprint") {
        let name = s.name;
        return Err(s.fail(format!(
            "pool.{name}.tls = {}: set pool.{name}.tls_ca (or pin pool.{name}.tls_fingerprint)",
            mode.name()
        )));
    }
    b.cfg.pools[pool].tls.mode = mode;
    Ok(())
}

/// One of a key's named values.
fn choice<T: Copy>(s: &Setting, all: &[T], name: fn(T) -> &'static str) -> Result<T, Error> {
    tls_built(s)?;
    match all.iter().find(|&&v| name(v) == s.value) {
        Some(&v) => Ok(v),
        None => {
            let names: Vec<&str> = all.iter().map(|&v| name(v)).collect();
            Err(s.fail(format!("{}: '{}': expected {}", s.key, s.value, names.join(", "))))
        }
    }
}

/// Every TLS key is refused by a build without TLS.
fn tls_built(s: &Setting) -> Result<(), Error> {
    if cfg!(feature = "tls") {
        Ok(())
    } else {
        Err(s.fail(format!("{}: myroute was built without TLS (the tls feature)", s.key)))
    }
}

/// A file name; the file itself is read when the proxy starts, `--check`
/// runs, or a reload comes.
fn file(s: &Setting) -> Result<FileRef, Error> {
    tls_built(s)?;
    Ok(FileRef { path: s.text()?, line: s.line })
}

/// `sha256:` followed by 64 hex digits, colons allowed between pairs.
pub fn parse_fingerprint(v: &str) -> Option<[u8; 32]> {
    let hex: Vec<u8> = v.strip_prefix("sha256:")?.bytes().filter(|&b| b != b':').collect();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(out)
}

/// A SHA-256 fingerprint as `sha256:` and 64 upper-case hex digits.
pub fn format_fingerprint(f: &[u8; 32]) -> String {
    let hex: String = f.iter().map(|b| format!("{b:02X}")).collect();
    format!("sha256:{hex}")
}

/// `pool.NAME.role`: any role but `any` is read from `@@read_only`, which
/// only a check that logs in (health.user) can see.
fn pool_role(b: &mut Build, s: &Setting) -> Result<(), Error> {
    let pool = b.pool(s, s.name)?;
    let Some(role) = Role::ALL.into_iter().find(|r| r.name() == s.value) else {
        let v = s.value;
        return Err(s.fail(format!("role '{v}': expected primary, replica or any")));
    };
    if role != Role::Any && b.cfg.health.user.is_none() {
        return Err(s.fail(
            "a pool role needs health.user: only a check that logs in can read @@read_only",
        ));
    }
    b.cfg.pools[pool].role = role;
    Ok(())
}

/// `pool.NAME.fallback`: another pool, defined anywhere in the file (all
/// pools exist by now).
fn pool_fallback(b: &mut Build, s: &Setting) -> Result<(), Error> {
    let pool = b.pool(s, s.name)?;
    let to = b.pool(s, s.value)?;
    if to == pool {
        let name = s.name;
        return Err(s.fail(format!("pool '{name}' cannot fall back to itself")));
    }
    b.cfg.pools[pool].fallback = Some(to);
    Ok(())
}

/// `pool.NAME.proxy_protocol`: the header its backend connections start
/// with.
fn pool_proxy_protocol(b: &mut Build, s: &Setting) -> Result<(), Error> {
    let pool = b.pool(s, s.name)?;
    let Some(pp) = ProxyProtocol::ALL.into_iter().find(|p| p.name() == s.value) else {
        let v = s.value;
        return Err(s.fail(format!("proxy_protocol '{v}': expected none, v1 or v2")));
    };
    b.cfg.pools[pool].proxy_protocol = pp;
    Ok(())
}

/// `user.NAME.password`, which reads the user's pool too: a user needs both.
fn user_password(b: &mut Build, s: &Setting) -> Result<(), Error> {
    let stage2 = match s.value {
        "" => None,
        v => Some(parse_hash(v).ok_or_else(|| s.fail("password must be '*' followed by 40 hex digits, as mysql.user.authentication_string shows it (or empty for no password)"))?),
    };
    let name = s.name;
    let Some(pool) = b.setting("user.NAME.pool", name) else {
        return Err(s.fail(format!("user '{name}' has no user.{name}.pool")));
    };
    let Some(index) = b.cfg.pools.iter().position(|p| p.name == pool.value) else {
        let p = pool.value;
        return Err(
            pool.fail(format!("user '{name}': pool '{p}' is not defined (no pool.{p}.servers)"))
        );
    };
    b.cfg.users.push(UserConf { name: name.to_string(), stage2, pool: index });
    Ok(())
}

/// Smallest and largest `buffer_size`: a ring must hold any connection-phase
/// packet, and 16 MiB is the largest single MySQL packet.
pub const MIN_BUFFER: usize = 4096;
pub const MAX_BUFFER: usize = 16 << 20;
/// Largest server weight.
pub const MAX_WEIGHT: u32 = 1000;
/// Most servers in one pool: bounds how many backends one client may try.
pub const MAX_MEMBERS: usize = 64;

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
    Err(Error { line, msg: msg.into() })
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
    /// The host as the file writes it (`db1.example.com`, `10.0.0.1`; an
    /// IPv6 address without its brackets): what a server certificate is
    /// checked against, whatever it resolved to.
    pub host: String,
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
    pub tls: PoolTls,
}

/// Whether clients may or must use TLS (`tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientTls {
    Off,
    Optional,
    Required,
}

impl ClientTls {
    const ALL: [ClientTls; 3] = [ClientTls::Off, ClientTls::Optional, ClientTls::Required];

    /// The greeting offers TLS (CLIENT_SSL).
    pub fn offered(self) -> bool {
        self != ClientTls::Off
    }

    pub fn name(self) -> &'static str {
        match self {
            ClientTls::Off => "off",
            ClientTls::Optional => "optional",
            ClientTls::Required => "required",
        }
    }
}

/// How a pool's backend connections use TLS (`pool.NAME.tls`), named after
/// MySQL's `ssl-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServerTls {
    #[default]
    Off,
    /// TLS when the server offers it, no certificate check.
    Preferred,
    /// TLS or the server fails, no certificate check.
    Required,
    /// The chain is checked against `tls_ca`.
    VerifyCa,
    /// The chain, and the name: `tls_name`, or the host as written.
    VerifyIdentity,
}

impl ServerTls {
    const ALL: [ServerTls; 5] = [
        ServerTls::Off,
        ServerTls::Preferred,
        ServerTls::Required,
        ServerTls::VerifyCa,
        ServerTls::VerifyIdentity,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ServerTls::Off => "off",
            ServerTls::Preferred => "preferred",
            ServerTls::Required => "required",
            ServerTls::VerifyCa => "verify_ca",
            ServerTls::VerifyIdentity => "verify_identity",
        }
    }
}

/// A file the configuration names, with the line naming it: it is read
/// later (at start, `--check` or reload), and its errors point there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    pub path: String,
    pub line: usize,
}

/// TLS toward clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConf {
    pub mode: ClientTls,
    /// PEM certificate chain and key; without them myroute makes a
    /// self-signed certificate at start.
    pub cert: Option<FileRef>,
    pub key: Option<FileRef>,
}

/// TLS toward a pool's servers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PoolTls {
    pub mode: ServerTls,
    /// CA certificates the chain is checked against.
    pub ca: Option<FileRef>,
    /// The name to verify (default: the host as written in `servers`).
    pub name: Option<String>,
    /// SHA-256 of the server certificate's DER: a pin instead of a CA.
    pub fingerprint: Option<[u8; 32]>,
    /// A client certificate to present, and its key.
    pub cert: Option<FileRef>,
    pub key: Option<FileRef>,
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
    /// Carry a KILL to a session on another server through a side
    /// connection logged in as the killer: each connection's SHA1 of its
    /// password is then kept while it lasts.
    pub kill_across_servers: bool,
    pub admin: Option<Admin>,
    pub metrics_listen: Option<SocketAddr>,
    /// Peers allowed to send a PROXY protocol header.
    pub proxy_protocol_from: Vec<Cidr>,
    /// Account to switch to after binding.
    pub run_as: Option<String>,
    pub pid_file: Option<String>,
    pub log_level: log::LevelFilter,
    pub tls: TlsConf,
}

impl Config {
    /// The user with exactly this name (user names are case-sensitive, as
    /// in MySQL).
    pub fn user(&self, name: &[u8]) -> Option<&UserConf> {
        self.users.iter().find(|u| u.name.as_bytes() == name)
    }

    /// What parsing starts from: every key with a default overwrites its
    /// field, so the values here are never kept; the rest start unset.
    fn unset() -> Config {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            server_version: None,
            buffer_size: 0,
            max_clients: 0,
            reuse_port: false,
            connect_timeout: Duration::ZERO,
            handshake_timeout: Duration::ZERO,
            idle_timeout: None,
            source_address: None,
            health: Health { interval: Duration::ZERO, fall: 0, rise: 0, user: None },
            pools: Vec::new(),
            users: Vec::new(),
            shutdown_timeout: Duration::ZERO,
            kill_across_servers: false,
            admin: None,
            metrics_listen: None,
            proxy_protocol_from: Vec::new(),
            run_as: None,
            pid_file: None,
            log_level: log::LevelFilter::Off,
            tls: TlsConf { mode: ClientTls::Off, cert: None, key: None },
        }
    }
}

/// Looks up a `host:port` whose host is a name, giving an address or why
/// not (shown after `bad address 'HOST:PORT': `).
pub type Resolve<'a> = dyn FnMut(&str) -> Result<SocketAddr, String> + 'a;

/// The resolver of `parse`: IP addresses only (`::1:3306`, which is not a
/// socket address literal, included), never a lookup.
fn literal_only(hostport: &str) -> Result<SocketAddr, String> {
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, ""));
    match (host.parse::<IpAddr>(), port.parse::<u16>()) {
        (Ok(ip), Ok(port)) => Ok(SocketAddr::new(ip, port)),
        _ => Err(format!("cannot resolve host '{host}'")),
    }
}

/// Parses and validates a whole file whose hosts, if any, are IP
/// addresses: `parse_with` a resolver that looks nothing up.
pub fn parse(text: &str) -> Result<Config, Error> {
    parse_with(text, &mut literal_only)
}

/// Parses and validates a whole file; `resolve` gets each `host:port`
/// that is not an IP literal.
pub fn parse_with(text: &str, resolve: &mut Resolve) -> Result<Config, Error> {
    let entries = entries(text)?;
    let mut b = Build { cfg: Config::unset(), entries: &entries, resolve };
    for key in KEYS {
        b.apply(key)?;
    }
    let mut cfg = b.cfg;
    // Users in the order the file first names them.
    let named = |u: &UserConf| {
        let user_key = |e: &&Entry| matches!(e.key.show, PerUser(_)) && e.name == u.name;
        entries.iter().find(user_key).map_or(0, |e| e.line)
    };
    cfg.users.sort_by_key(named);
    if cfg.users.is_empty() {
        return err(0, "no users configured (user.NAME.password and user.NAME.pool)");
    }
    Ok(cfg)
}

/// SHOW CONFIG: each key and its effective value, from the table: global
/// keys in table order, then each pool's keys, then each user's. Password
/// hashes and health.password show as `<hidden>`.
pub fn show(cfg: &Config) -> Vec<(String, Option<String>)> {
    let mut rows = Vec::new();
    for k in KEYS {
        if let Global(value) = k.show {
            rows.push((k.name.to_string(), value(cfg)));
        }
    }
    for p in &cfg.pools {
        for k in KEYS {
            if let PerPool(value) = k.show {
                rows.push((k.name.replacen("NAME", &p.name, 1), value(cfg, p)));
            }
        }
    }
    for u in &cfg.users {
        for k in KEYS {
            if let PerUser(value) = k.show {
                rows.push((k.name.replacen("NAME", &u.name, 1), value(cfg, u)));
            }
        }
    }
    rows
}

/// A configuration being built, key by key.
struct Build<'a> {
    cfg: Config,
    /// Every `key = value` line, for keys that read another key's line.
    entries: &'a [Entry],
    resolve: &'a mut Resolve<'a>,
}

impl<'a> Build<'a> {
    /// Applies one table key: each line that sets it, in file order, then
    /// its default wherever it is not set (once for a global key, for each
    /// pool or user for a pattern).
    fn apply(&mut self, key: &'static Key) -> Result<(), Error> {
        let entries = self.entries;
        for e in entries.iter().filter(|e| e.key.name == key.name) {
            (key.apply)(self, &e.setting())?;
        }
        let Some(default) = key.default else {
            return Ok(());
        };
        let names: Vec<String> = match key.show {
            Global(_) => vec![String::new()],
            PerPool(_) => self.cfg.pools.iter().map(|p| p.name.clone()).collect(),
            PerUser(_) => self.cfg.users.iter().map(|u| u.name.clone()).collect(),
        };
        for name in names {
            if self.setting(key.name, &name).is_none() {
                let s = Setting { line: 0, key: key.name, name: &name, value: default };
                (key.apply)(self, &s)?;
            }
        }
        Ok(())
    }

    /// The line setting `key` (a table name) for `name` (empty for a
    /// global key), if the file has one.
    fn setting(&self, key: &str, name: &str) -> Option<Setting<'a>> {
        let entries = self.entries;
        let e = entries.iter().find(|e| e.key.name == key && e.name == name)?;
        Some(e.setting())
    }

    /// An address key's value, a name looked up by the caller's resolver.
    fn address(&mut self, s: &Setting) -> Result<SocketAddr, Error> {
        let (_, addr) = parse_address(s.value, self.resolve).map_err(|m| s.fail(m))?;
        Ok(addr)
    }

    /// A key that is only whole with `other` (of the same pool, if a pool
    /// key): an error when the file lacks it.
    fn needs(&self, s: &Setting, other: &str) -> Result<(), Error> {
        match self.setting(other, s.name) {
            Some(_) => Ok(()),
            None => {
                let (key, other) = (s.key, other);
                let (key, other) =
                    (key.replacen("NAME", s.name, 1), other.replacen("NAME", s.name, 1));
                Err(s.fail(format!("{key} is set but {other} is not")))
            }
        }
    }

    /// The TLS settings of the pool a `pool.NAME.tls_*` key names, which
    /// must not be off.
    fn pool_tls(&mut self, s: &Setting) -> Result<&mut PoolTls, Error> {
        tls_built(s)?;
        let pool = self.pool(s, s.name)?;
        let tls = &mut self.cfg.pools[pool].tls;
        if tls.mode == ServerTls::Off {
            let name = s.name;
            return Err(s.fail(format!(
                "{} is set but pool.{name}.tls is off",
                s.key.replacen("NAME", name, 1)
            )));
        }
        Ok(tls)
    }

    /// The index of the pool called `name`, which a pool key or a fallback
    /// refers to.
    fn pool(&self, s: &Setting, name: &str) -> Result<usize, Error> {
        let found = self.cfg.pools.iter().position(|p| p.name == name);
        found
            .ok_or_else(|| s.fail(format!("pool '{name}' is not defined (no pool.{name}.servers)")))
    }
}

/// One value a key's `apply` gets: a line of the file, or the key's default
/// (line 0).
struct Setting<'a> {
    line: usize,
    /// The key as the table names it, for messages.
    key: &'static str,
    /// The NAME of a pattern (`app` in `user.app.pool`); empty otherwise.
    name: &'a str,
    value: &'a str,
}

impl Setting<'_> {
    /// An error at this setting's line.
    fn fail(&self, msg: impl Into<String>) -> Error {
        Error { line: self.line, msg: msg.into() }
    }

    /// Text that must not be empty.
    fn text(&self) -> Result<String, Error> {
        match self.value {
            "" => Err(self.fail(format!("{} must not be empty", self.key))),
            v => Ok(v.to_string()),
        }
    }

    /// A number from `min` to `max`, both included.
    fn number<T: FromStr + PartialOrd + fmt::Display>(&self, min: T, max: T) -> Result<T, Error> {
        let (key, v) = (self.key, self.value);
        match v.parse::<T>() {
            Ok(n) if n >= min && n <= max => Ok(n),
            _ => Err(self.fail(format!("{key}: '{v}' is not a number from {min} to {max}"))),
        }
    }

    /// A duration; zero only where it means "never" or "at once".
    fn duration(&self, zero_ok: bool) -> Result<Duration, Error> {
        let (key, v) = (self.key, self.value);
        match parse_duration(v) {
            Some(d) if zero_ok || !d.is_zero() => Ok(d),
            _ => Err(self.fail(format!("{key}: '{v}' is not a duration like 250ms, 5s, 2m"))),
        }
    }
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
    key: &'static Key,
    /// The NAME of a pattern; empty for a global key.
    name: String,
    value: String,
}

impl Entry {
    fn setting(&self) -> Setting<'_> {
        Setting { line: self.line, key: self.key.name, name: &self.name, value: &self.value }
    }
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
            return err(line, format!("duplicate key '{key}' (first set on line {first})"));
        }
        out.push(Entry {
            line,
            key: k,
            name: name.unwrap_or_default().to_string(),
            value: value.to_string(),
        });
    }
    Ok(out)
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

/// Parses `host:port` into the host as written and its address: an IP
/// literal as it stands, a name through `resolve`.
fn parse_address(v: &str, resolve: &mut Resolve) -> Result<(String, SocketAddr), String> {
    let bad = || format!("bad address '{v}': expected host:port");
    let (host, port) = v.rsplit_once(':').ok_or_else(bad)?;
    if let Ok(addr) = v.parse::<SocketAddr>() {
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
        return Ok((bare.unwrap_or(host).to_string(), addr));
    }
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    let addr = resolve(v).map_err(|why| format!("bad address '{v}': {why}"))?;
    Ok((host.to_string(), addr))
}

/// Parses one server of a list: `host:port` optionally followed by
/// `weight=N`.
fn parse_server(v: &str, resolve: &mut Resolve) -> Result<ServerConf, String> {
    let mut words = v.split_whitespace();
    let (host, addr) = parse_address(words.next().unwrap_or(""), resolve)?;
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
    Ok(ServerConf { host, addr, weight })
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
            ("user.v.password =\nuser.v.pool = nope\n", 5, "pool 'nope' is not defined"),
            ("user.w.password =\n", 4, "has no user.w.pool"),
            ("user.x.pool = p\n", 4, "has a pool but no"),
            ("listen = 127.0.0.1\n", 4, "bad address"),
            ("listen = 127.0.0.1:99999\n", 4, "bad address"),
            ("pool.q.servers = 127.0.0.1:1,,127.0.0.1:2\n", 4, "empty server address"),
            ("user.y.password = *ABC\nuser.y.pool = p\n", 4, "40 hex digits"),
            ("user.y.password = secret\nuser.y.pool = p\n", 4, "40 hex digits"),
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
            ("health.user = m\npool.p.role = master\n", 5, "expected primary"),
            ("pool.p.fallback = nope\n", 4, "pool 'nope' is not defined"),
            ("pool.p.fallback = p\n", 4, "itself"),
            ("pool.x.role = any\n", 4, "pool 'x' is not defined"),
            ("pool.q.servers = 127.0.0.1:1 weight=0\n", 4, "bad weight"),
            ("pool.q.servers = 127.0.0.1:1 weight=2x\n", 4, "bad weight"),
            ("pool.q.servers = 127.0.0.1:1 heavy\n", 4, "unknown server option"),
            ("pool.q.servers = 127.0.0.1:1, 127.0.0.1:1\n", 4, "listed twice"),
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
        assert!(!format!("{c:?}").contains("pw"), "no password in Debug output");
        assert_eq!(c.pools[0].servers[1].weight, 3);
        assert_eq!(c.pools[0].servers[0].weight, 1);
        assert_eq!(c.pools[0].role, Role::Primary);
        assert_eq!((c.pools[1].role, c.pools[1].fallback), (Role::Replica, Some(0)));
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
    fn host_names_go_to_the_resolver_and_are_kept_as_written() {
        let text = "listen = 127.0.0.1:6033\n\
                    pool.p.servers = db1.example.com:3306 weight=2, [::1]:3307, 10.0.0.1:3308\n\
                    user.u.password =\nuser.u.pool = p\n";
        let mut asked = Vec::new();
        let mut resolve = |hp: &str| {
            asked.push(hp.to_string());
            Ok("10.9.9.9:3306".parse().unwrap())
        };
        let c = parse_with(text, &mut resolve).unwrap();
        assert_eq!(asked, ["db1.example.com:3306"], "IP literals are not looked up");
        let hosts: Vec<_> = c.pools[0].servers.iter().map(|s| s.host.as_str()).collect();
        assert_eq!(hosts, ["db1.example.com", "::1", "10.0.0.1"]);
        assert_eq!(c.pools[0].servers[0].addr, "10.9.9.9:3306".parse().unwrap());
        assert_eq!(c.pools[0].servers[0].weight, 2);

        let e = parse_with(text, &mut |_: &str| Err("no such host".to_string())).unwrap_err();
        assert_eq!(e.line, 2);
        assert_eq!(e.msg, "bad address 'db1.example.com:3306': no such host");
    }

    #[test]
    fn parse_looks_no_name_up() {
        let e = error_of(
            "listen = db1:3306\npool.p.servers = 127.0.0.1:1\nuser.u.password =\nuser.u.pool = p\n",
        );
        assert_eq!(e.line, 1);
        assert_eq!(e.msg, "bad address 'db1:3306': cannot resolve host 'db1'");
        // An IPv6 address without brackets is no socket address literal,
        // but it is an IP address, not a name.
        let c = parse(
            "listen = ::1:3306\npool.p.servers = 127.0.0.1:1\nuser.u.password =\nuser.u.pool = p\n",
        )
        .unwrap();
        assert_eq!(c.listen, "[::1]:3306".parse().unwrap());
    }

    /// Every key set, every secret with a value.
    const EVERY_KEY: &str = "\
listen = 127.0.0.1:6033
server_version = 10.11.6-MariaDB
buffer_size = 8192
max_clients = 100
reuse_port = yes
connect_timeout = 250ms
handshake_timeout = 2m
idle_timeout = 1h
source_address = 127.0.0.2
health.interval = 1s
health.fall = 2
health.rise = 1
health.user = checker
health.password = clear-health-secret
shutdown_timeout = 0
admin.listen = 127.0.0.1:6034
admin.user = admin
admin.password = *4ACFE3202A5FF5CF467898FC58AAB1D615029441
metrics.listen = 127.0.0.1:9104
proxy_protocol_from = 10.0.0.0/8, 127.0.0.1
user = nobody
pid_file = /run/x.pid
log_level = debug
pool.w.servers = 127.0.0.1:1 weight=5, [::1]:2
pool.w.role = primary
pool.w.proxy_protocol = v2
user.nopw.pool = w
pool.r.servers = 127.0.0.1:3, 127.0.0.1:4 weight=1000
pool.r.role = replica
pool.r.fallback = w
user.u.password = *2470c0c06dee42fd1618bb99005adca2ec9d1e19
user.u.pool = r
user.nopw.password =
";

    #[test]
    fn show_gives_each_key_its_effective_value() {
        let rows = show(&parse(EVERY_KEY).unwrap());
        let expected = [
            ("listen", Some("127.0.0.1:6033")),
            ("server_version", Some("10.11.6-MariaDB")),
            ("buffer_size", Some("8192")),
            ("max_clients", Some("100")),
            ("reuse_port", Some("yes")),
            ("connect_timeout", Some("250ms")),
            ("handshake_timeout", Some("120000ms")),
            ("idle_timeout", Some("3600000ms")),
            ("source_address", Some("127.0.0.2")),
            ("health.interval", Some("1000ms")),
            ("health.fall", Some("2")),
            ("health.rise", Some("1")),
            ("health.user", Some("checker")),
            ("health.password", Some("<hidden>")),
            ("shutdown_timeout", Some("0ms")),
            ("kill_across_servers", Some("no")),
            ("admin.listen", Some("127.0.0.1:6034")),
            ("admin.user", Some("admin")),
            ("admin.password", Some("<hidden>")),
            ("metrics.listen", Some("127.0.0.1:9104")),
            ("proxy_protocol_from", Some("10.0.0.0/8, 127.0.0.1/32")),
            ("user", Some("nobody")),
            ("pid_file", Some("/run/x.pid")),
            ("log_level", Some("debug")),
            ("tls", Some(if cfg!(feature = "tls") { "optional" } else { "off" })),
            ("tls.cert", None),
            ("tls.key", None),
            ("pool.w.servers", Some("127.0.0.1:1 weight=5, [::1]:2")),
            ("pool.w.role", Some("primary")),
            ("pool.w.fallback", None),
            ("pool.w.proxy_protocol", Some("v2")),
            ("pool.w.tls", Some("off")),
            ("pool.w.tls_ca", None),
            ("pool.w.tls_name", None),
            ("pool.w.tls_fingerprint", None),
            ("pool.w.tls_cert", None),
            ("pool.w.tls_key", None),
            ("pool.r.servers", Some("127.0.0.1:3, 127.0.0.1:4 weight=1000")),
            ("pool.r.role", Some("replica")),
            ("pool.r.fallback", Some("w")),
            ("pool.r.proxy_protocol", Some("none")),
            ("pool.r.tls", Some("off")),
            ("pool.r.tls_ca", None),
            ("pool.r.tls_name", None),
            ("pool.r.tls_fingerprint", None),
            ("pool.r.tls_cert", None),
            ("pool.r.tls_key", None),
            // Users in the order the file first names them.
            ("user.nopw.password", Some("")),
            ("user.nopw.pool", Some("w")),
            ("user.u.password", Some("<hidden>")),
            ("user.u.pool", Some("r")),
        ];
        let expected: Vec<(String, Option<String>)> =
            expected.iter().map(|(k, v)| (k.to_string(), v.map(str::to_string))).collect();
        assert_eq!(rows, expected);

        // Unset keys and defaults.
        let rows = show(
            &parse("pool.p.servers = 127.0.0.1:1\nuser.u.password =\nuser.u.pool = p\n").unwrap(),
        );
        let value = |key: &str| rows.iter().find(|(k, _)| k == key).unwrap().1.clone();
        assert_eq!(value("idle_timeout").as_deref(), Some("0"));
        assert_eq!(value("log_level").as_deref(), Some("info"));
        assert_eq!(value("reuse_port").as_deref(), Some("no"));
        for unset in [
            "server_version",
            "health.password",
            "admin.listen",
            "admin.password",
            "proxy_protocol_from",
            "user",
        ] {
            assert_eq!(value(unset), None, "{unset}");
        }
    }

    #[test]
    fn show_lists_every_key_and_no_secret() {
        let rows = show(&parse(EVERY_KEY).unwrap());
        for k in KEYS {
            let shown = match k.show {
                Global(_) => vec![k.name.to_string()],
                PerPool(_) => ["w", "r"].map(|n| k.name.replacen("NAME", n, 1)).to_vec(),
                PerUser(_) => ["u", "nopw"].map(|n| k.name.replacen("NAME", n, 1)).to_vec(),
            };
            for key in shown {
                assert!(rows.iter().any(|(k, _)| *k == key), "SHOW CONFIG lacks {key}");
            }
        }
        let all = format!("{rows:?}").to_uppercase();
        for secret in [
            "4ACFE3202A5FF5CF467898FC58AAB1D615029441",
            "2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19",
            "CLEAR-HEALTH-SECRET",
        ] {
            assert!(!all.contains(secret), "SHOW CONFIG shows a secret");
        }
    }

    #[test]
    fn a_pattern_key_is_shown_per_pool_or_per_user() {
        for k in KEYS {
            let per = match k.show {
                Global(_) => None,
                PerPool(_) => Some("pool.NAME."),
                PerUser(_) => Some("user.NAME."),
            };
            match per {
                Some(prefix) => assert!(k.name.starts_with(prefix), "{}", k.name),
                None => assert!(!k.name.contains("NAME"), "{}", k.name),
            }
        }
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
        for bad in ["", "s", "5", "5 s", "-1s", "1.5s", "5sec", "99999999999999999999s"] {
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

    #[test]
    fn tls_keys_need_their_partners_and_a_tls_build() {
        let base = "pool.p.servers = 127.0.0.1:1\nuser.u.password =\nuser.u.pool = p\n";
        let err = |extra: &str| parse(&format!("{base}{extra}")).err().map(|e| (e.line, e.msg));
        if !cfg!(feature = "tls") {
            let e = err("tls = off\n").expect("refused without TLS");
            assert_eq!(
                (e.0, e.1.as_str()),
                (4, "tls: myroute was built without TLS (the tls feature)")
            );
            return;
        }
        let c =
            parse(&format!("{base}tls = required\ntls.cert = /c.pem\ntls.key = /k.pem\n")).unwrap();
        assert_eq!(c.tls.mode, ClientTls::Required);
        assert_eq!(c.tls.key, Some(FileRef { path: "/k.pem".into(), line: 6 }));
        assert_eq!(c.pools[0].tls.mode, ServerTls::Off);
        let pin = "sha256:".to_string() + &"ab:".repeat(31) + "AB";
        let c = parse(&format!("{base}pool.p.tls = verify_identity\npool.p.tls_fingerprint = {pin}\npool.p.tls_name = db\n")).unwrap();
        assert_eq!(c.pools[0].tls.fingerprint, Some([0xAB; 32]));
        assert_eq!(format_fingerprint(&[0xAB; 32]), "sha256:".to_string() + &"AB".repeat(32));
        let cases = [
            ("tls.cert = /c.pem\n", "tls.cert is set but tls.key is not"),
            ("tls.key = /k.pem\n", "tls.key is set but tls.cert is not"),
            ("tls = maybe\n", "tls: 'maybe': expected off, optional, required"),
            (
                "pool.p.tls = verify_ca\n",
                "pool.p.tls = verify_ca: set pool.p.tls_ca (or pin pool.p.tls_fingerprint)",
            ),
            ("pool.p.tls_ca = /ca.pem\n", "pool.p.tls_ca is set but pool.p.tls is off"),
            (
                "pool.p.tls = required\npool.p.tls_fingerprint = sha256:00\n",
                "tls_fingerprint must be sha256: followed by 64 hex digits (colons allowed)",
            ),
            (
                "pool.p.tls = required\npool.p.tls_cert = /c.pem\n",
                "pool.p.tls_cert is set but pool.p.tls_key is not",
            ),
        ];
        for (extra, msg) in cases {
            let e = err(extra).expect(extra);
            assert_eq!(e.1, msg, "{extra}");
            assert!(e.0 >= 4, "{extra}: line {}", e.0);
        }
    }
}
