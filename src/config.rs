//! The configuration file: `key = value` lines, `#` comments, one table of
//! keys that drives parsing, defaults, `--check` and the man page test.
//!
//! Every mistake is an error carrying its line number; nothing falls back to a
//! silent default. Pure: `parse` takes the file's text, not its path.

use crate::scramble::{parse_hash, Secret};
use std::collections::HashMap;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// What kind of value a key takes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Address,
    Text,
    Size,
    Duration,
    AddressList,
    Hash,
    PoolName,
}

/// One configuration key. Names with `NAME` in them are patterns: the part
/// between the fixed prefix and suffix is a pool or user name.
pub struct Key {
    pub name: &'static str,
    pub kind: Kind,
    /// The default as written in the file; `None` for keys that are
    /// required or have no default.
    pub default: Option<&'static str>,
}

/// Every key myroute knows. `man/myroute.conf.5` documents each (a unit test
/// checks that).
pub const KEYS: &[Key] = &[
    Key {
        name: "listen",
        kind: Kind::Address,
        default: Some("127.0.0.1:3306"),
    },
    Key {
        name: "server_version",
        kind: Kind::Text,
        default: None,
    },
    Key {
        name: "buffer_size",
        kind: Kind::Size,
        default: Some("16384"),
    },
    Key {
        name: "connect_timeout",
        kind: Kind::Duration,
        default: Some("5s"),
    },
    Key {
        name: "handshake_timeout",
        kind: Kind::Duration,
        default: Some("10s"),
    },
    Key {
        name: "pool.NAME.servers",
        kind: Kind::AddressList,
        default: None,
    },
    Key {
        name: "user.NAME.password",
        kind: Kind::Hash,
        default: None,
    },
    Key {
        name: "user.NAME.pool",
        kind: Kind::PoolName,
        default: None,
    },
];

/// Smallest and largest `buffer_size`: a ring must hold any connection-phase
/// packet, and 16 MiB is the largest single MySQL packet.
pub const MIN_BUFFER: usize = 4096;
pub const MAX_BUFFER: usize = 16 << 20;

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

/// A pool of backend servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConf {
    pub name: String,
    pub servers: Vec<SocketAddr>,
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

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub listen: SocketAddr,
    pub server_version: Option<String>,
    pub buffer_size: usize,
    pub connect_timeout: Duration,
    pub handshake_timeout: Duration,
    pub pools: Vec<PoolConf>,
    pub users: Vec<UserConf>,
}

impl Config {
    /// The user with exactly this name (user names are case-sensitive, as
    /// in MySQL).
    pub fn user(&self, name: &[u8]) -> Option<&UserConf> {
        self.users.iter().find(|u| u.name.as_bytes() == name)
    }
}

/// Parses a duration: a whole number followed by `ms`, `s`, `m` or `h`.
pub fn parse_duration(v: &str) -> Option<Duration> {
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

/// Parses and validates a whole file.
pub fn parse(text: &str) -> Result<Config, Error> {
    // First pass: split lines, reject unknown and duplicate keys.
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut entries: Vec<(usize, &'static Key, Option<String>, String)> = Vec::new();
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
        entries.push((line, k, name.map(str::to_string), value.to_string()));
    }

    // Defaults come from the table; they are known to parse (a unit test
    // checks every one).
    let default = |name: &str| {
        KEYS.iter()
            .find(|k| k.name == name)
            .and_then(|k| k.default)
            .unwrap_or("")
    };
    let mut cfg = Config {
        listen: parse_address(default("listen")).map_err(|m| Error { line: 0, msg: m })?,
        server_version: None,
        buffer_size: default("buffer_size").parse().unwrap_or(16384),
        connect_timeout: parse_duration(default("connect_timeout"))
            .unwrap_or(Duration::from_secs(5)),
        handshake_timeout: parse_duration(default("handshake_timeout"))
            .unwrap_or(Duration::from_secs(10)),
        pools: Vec::new(),
        users: Vec::new(),
    };
    // Users by name: (password line, hash, pool line, pool name).
    type PendingUser = (Option<(usize, Option<Secret>)>, Option<(usize, String)>);
    let mut users: Vec<(String, PendingUser)> = Vec::new();
    for (line, key, name, value) in entries {
        match key.kind {
            Kind::Address => cfg.listen = parse_address(&value).or_else(|m| err(line, m))?,
            Kind::Text => {
                if value.is_empty() || value.contains('\0') {
                    return err(line, format!("{} must not be empty", key.name));
                }
                cfg.server_version = Some(value);
            }
            Kind::Size => {
                let n: usize = value.parse().or_else(|_| {
                    err(
                        line,
                        format!("{}: '{value}' is not a number of bytes", key.name),
                    )
                })?;
                if !(MIN_BUFFER..=MAX_BUFFER).contains(&n) {
                    return err(
                        line,
                        format!("{} must be between {MIN_BUFFER} and {MAX_BUFFER}", key.name),
                    );
                }
                cfg.buffer_size = n;
            }
            Kind::Duration => {
                let d = parse_duration(&value)
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| Error {
                        line,
                        msg: format!(
                            "{}: '{value}' is not a duration like 250ms, 5s, 2m",
                            key.name
                        ),
                    })?;
                match key.name {
                    "connect_timeout" => cfg.connect_timeout = d,
                    _ => cfg.handshake_timeout = d,
                }
            }
            Kind::AddressList => {
                let mut servers = Vec::new();
                for part in value.split(',').map(str::trim) {
                    if part.is_empty() {
                        return err(line, "empty server address in list");
                    }
                    servers.push(parse_address(part).or_else(|m| err(line, m))?);
                }
                cfg.pools.push(PoolConf {
                    name: name.unwrap_or_default(),
                    servers,
                });
            }
            Kind::Hash | Kind::PoolName => {
                let name = name.unwrap_or_default();
                let idx = match users.iter().position(|(n, _)| *n == name) {
                    Some(i) => i,
                    None => {
                        users.push((name, (None, None)));
                        users.len() - 1
                    }
                };
                let slot = &mut users[idx].1;
                if key.kind == Kind::Hash {
                    let stage2 = if value.is_empty() {
                        None
                    } else {
                        Some(parse_hash(&value).ok_or_else(|| Error {
                            line,
                            msg: "password must be '*' followed by 40 hex digits, as mysql.user.authentication_string shows it (or empty for no password)".into(),
                        })?)
                    };
                    slot.0 = Some((line, stage2));
                } else {
                    slot.1 = Some((line, value));
                }
            }
        }
    }
    for (name, (password, pool)) in users {
        let (pw_line, stage2) = match (&password, &pool) {
            (Some(p), _) => p.clone(),
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
            return err(pool_line, format!("user '{name}': pool '{pool_name}' is not defined (no pool.{pool_name}.servers)"));
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
            ("buffer_size = 100\n", 4, "between"),
            ("buffer_size = 16k\n", 4, "not a number"),
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
