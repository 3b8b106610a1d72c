//! The configuration parser, `config::parse`, on arbitrary text (the input
//! decoded as UTF-8, invalid sequences replaced).
//!
//! Every rejection must name a line of the file (or 0 for the file as a
//! whole), and every accepted configuration must satisfy what the rest of
//! the proxy relies on.
//!
//! `config::parse` resolves host names (`host:port` that is not an IP
//! literal) through the system resolver. Inputs that would do so are
//! skipped, so the fuzzer sends no DNS queries and stays fast.

#![no_main]

use libfuzzer_sys::fuzz_target;
use myroute::config::{self, MAX_BUFFER, MIN_BUFFER};
use std::net::SocketAddr;

/// True if `parse_address` would hand `v` to the resolver.
fn would_resolve(v: &str) -> bool {
    if v.parse::<SocketAddr>().is_ok() {
        return false;
    }
    match v.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty() && port.parse::<u16>().is_ok() && host != "localhost"
        }
        None => false,
    }
}

fn needs_dns(text: &str) -> bool {
    text.lines().any(|raw| {
        let content = raw.split('#').next().unwrap_or("").trim();
        let Some((key, value)) = content.split_once('=') else {
            return false;
        };
        let (key, value) = (key.trim(), value.trim());
        if key == "listen" {
            return would_resolve(value);
        }
        // Each server: `host:port` and options, separated by blanks.
        key.starts_with("pool.")
            && key.ends_with(".servers")
            && value
                .split(',')
                .any(|part| would_resolve(part.split_whitespace().next().unwrap_or("")))
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if needs_dns(&text) {
        return;
    }
    match config::parse(&text) {
        Ok(cfg) => {
            assert!(!cfg.users.is_empty());
            assert!((MIN_BUFFER..=MAX_BUFFER).contains(&cfg.buffer_size));
            assert!(!cfg.connect_timeout.is_zero() && !cfg.handshake_timeout.is_zero());
            for p in &cfg.pools {
                assert!(!p.name.is_empty() && !p.servers.is_empty());
            }
            for u in &cfg.users {
                assert!(u.pool < cfg.pools.len(), "user's pool index is valid");
                assert!(!u.name.is_empty());
                assert_eq!(cfg.user(u.name.as_bytes()).map(|x| &x.name), Some(&u.name));
            }
            if let Some(v) = &cfg.server_version {
                assert!(!v.is_empty() && !v.contains('\0'));
            }
            // The pools built from it are what the event loop indexes.
            let pools = myroute::pool::Pools::from_config(&cfg);
            assert_eq!(pools.pools.len(), cfg.pools.len());
            for p in &pools.pools {
                assert!(!p.members.is_empty());
                assert!(p
                    .members
                    .iter()
                    .all(|m| m.server < pools.servers.len() && m.weight >= 1));
            }
            // Choosing a server terminates (fallback chains included) and
            // stays inside the pool's chain.
            let mut pools = pools;
            for (i, u) in cfg.users.iter().enumerate().take(8) {
                if let Some((p, s)) = pools.pick(u.pool, &[]) {
                    assert!(p < pools.pools.len() && s < pools.servers.len(), "user {i}");
                }
            }
        }
        Err(e) => {
            assert!(
                e.line <= text.lines().count(),
                "error line {} beyond the file",
                e.line
            );
            assert!(!e.msg.is_empty());
        }
    }
});
