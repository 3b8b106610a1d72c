//! The configuration parser, `config::parse`, on arbitrary text (the input
//! decoded as UTF-8, invalid sequences replaced).
//!
//! Every rejection must name a line of the file (or 0 for the file as a
//! whole), and every accepted configuration must satisfy what the rest of
//! the proxy relies on.
//!
//! `config::parse` looks no host name up (a name is an error, as if it did
//! not resolve), so every input runs, with no DNS query.

#![no_main]

use libfuzzer_sys::fuzz_target;
use myroute::config::{self, MAX_BUFFER, MIN_BUFFER};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match config::parse(&text) {
        Ok(cfg) => {
            assert!(!cfg.users.is_empty());
            assert!((MIN_BUFFER..=MAX_BUFFER).contains(&cfg.buffer_size));
            assert!(!cfg.connect_timeout.is_zero() && !cfg.handshake_timeout.is_zero());
            for p in &cfg.pools {
                assert!(!p.name.is_empty() && !p.servers.is_empty());
                assert!(p.servers.iter().all(|s| !s.host.is_empty()));
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
            let pools = myroute::servers::pool::Pools::from_config(&cfg);
            assert_eq!(pools.pools().len(), cfg.pools.len());
            for p in pools.pools() {
                assert!(!p.members.is_empty());
                assert!(p
                    .members
                    .iter()
                    .all(|m| m.server < pools.servers().len() && m.weight >= 1));
            }
            // Choosing a server terminates (fallback chains included) and
            // stays inside the pool's chain.
            let mut pools = pools;
            for (i, u) in cfg.users.iter().enumerate().take(8) {
                if let Some((p, s)) = pools.pick(u.pool, &[]) {
                    assert!(p < pools.pools().len() && s < pools.servers().len(), "user {i}");
                }
            }
        }
        Err(e) => {
            assert!(e.line <= text.lines().count(), "error line {} beyond the file", e.line);
            assert!(!e.msg.is_empty());
        }
    }
});
