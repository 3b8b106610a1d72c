//! Backend servers and pools, and least-connections selection.
//!
//! A server that appears in several pools is one server: its active count is
//! shared, so least-connections sees every connection it carries. Pure: no
//! sockets, only counts and choices.

use crate::config::Config;
use std::net::SocketAddr;

/// What a backend said about itself in its greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendInfo {
    pub version: String,
    pub capabilities: u32,
    pub charset: u8,
}

/// One backend server.
#[derive(Debug, Clone)]
pub struct Server {
    pub addr: SocketAddr,
    /// Backend connections open to it now (connecting, logging in or relaying).
    pub active: u32,
    /// Backend connections opened to it since start.
    pub total: u64,
    /// Learned from its latest greeting.
    pub info: Option<BackendInfo>,
}

/// A pool: servers that can serve the same users.
#[derive(Debug, Clone)]
pub struct Pool {
    pub name: String,
    /// Indices into `Pools::servers`.
    pub members: Vec<usize>,
    /// Where the next tie-break starts, so equal loads rotate.
    rotor: usize,
}

/// All servers and pools.
#[derive(Debug, Clone)]
pub struct Pools {
    pub servers: Vec<Server>,
    pub pools: Vec<Pool>,
}

/// At most this many servers in one pool (the tried-set is a bitmask).
pub const MAX_MEMBERS: usize = 64;

impl Pools {
    pub fn from_config(cfg: &Config) -> Pools {
        let mut servers: Vec<Server> = Vec::new();
        let mut pools = Vec::new();
        for p in &cfg.pools {
            let mut members = Vec::new();
            for addr in &p.servers {
                let idx = match servers.iter().position(|s| s.addr == *addr) {
                    Some(i) => i,
                    None => {
                        servers.push(Server {
                            addr: *addr,
                            active: 0,
                            total: 0,
                            info: None,
                        });
                        servers.len() - 1
                    }
                };
                if !members.contains(&idx) {
                    members.push(idx);
                }
            }
            members.truncate(MAX_MEMBERS);
            pools.push(Pool {
                name: p.name.clone(),
                members,
                rotor: 0,
            });
        }
        Pools { servers, pools }
    }

    /// Chooses a server of `pool` not in `tried` (a bitmask of member
    /// positions) with the fewest active connections. Returns
    /// `(member position, server index)`.
    pub fn pick(&mut self, pool: usize, tried: u64) -> Option<(usize, usize)> {
        let p = self.pools.get_mut(pool)?;
        let load: Vec<Option<u32>> = p
            .members
            .iter()
            .enumerate()
            .map(|(pos, &s)| (tried & (1 << pos) == 0).then(|| self.servers[s].active))
            .collect();
        let pos = pick(&load, &mut p.rotor)?;
        Some((pos, p.members[pos]))
    }

    /// The version, capabilities and character set to greet clients with:
    /// taken from the first server that has answered, capabilities
    /// intersected over every server that has.
    pub fn advertised(&self) -> Option<BackendInfo> {
        let mut known = self.servers.iter().filter_map(|s| s.info.as_ref());
        let first = known.next()?.clone();
        let caps = known.fold(first.capabilities, |c, i| c & i.capabilities);
        Some(BackendInfo {
            capabilities: caps,
            ..first
        })
    }
}

/// Least-connections over `load` (`None` = not eligible). Among equal loads
/// the first at or after `rotor` wins and `rotor` moves past it, so an idle
/// pool still spreads its connections.
pub fn pick(load: &[Option<u32>], rotor: &mut usize) -> Option<usize> {
    let n = load.len();
    let min = load.iter().flatten().min()?;
    let start = *rotor % n.max(1);
    let chosen = (0..n)
        .map(|i| (start + i) % n)
        .find(|&i| load[i] == Some(*min))?;
    *rotor = chosen + 1;
    Some(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_least_loaded() {
        let mut r = 0;
        assert_eq!(pick(&[Some(3), Some(1), Some(2)], &mut r), Some(1));
        assert_eq!(pick(&[Some(0), Some(5)], &mut r), Some(0));
    }

    #[test]
    fn ties_rotate() {
        let mut r = 0;
        let load = [Some(0), Some(0), Some(0)];
        let got: Vec<_> = (0..6).map(|_| pick(&load, &mut r).unwrap()).collect();
        assert_eq!(got, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn skips_ineligible_and_handles_none_left() {
        let mut r = 0;
        assert_eq!(pick(&[None, Some(9), None], &mut r), Some(1));
        assert_eq!(pick(&[None, None], &mut r), None);
        assert_eq!(pick(&[], &mut r), None);
    }

    fn pools() -> Pools {
        let cfg = crate::config::parse(
            "pool.a.servers = 127.0.0.1:1, 127.0.0.1:2\npool.b.servers = 127.0.0.1:2\n\
             user.u.password =\nuser.u.pool = a\n",
        )
        .unwrap();
        Pools::from_config(&cfg)
    }

    #[test]
    fn a_server_in_two_pools_shares_its_count() {
        let mut p = pools();
        assert_eq!(p.servers.len(), 2);
        let (_, s) = p.pick(1, 0).unwrap();
        assert_eq!(s, 1);
        p.servers[s].active += 1;
        // Pool a now prefers server 0, whatever the rotor says.
        for _ in 0..3 {
            assert_eq!(p.pick(0, 0).unwrap().1, 0);
        }
    }

    #[test]
    fn tried_servers_are_skipped() {
        let mut p = pools();
        assert_eq!(p.pick(0, 0b01).unwrap(), (1, 1));
        assert_eq!(p.pick(0, 0b11), None);
    }

    #[test]
    fn advertised_intersects_capabilities() {
        let mut p = pools();
        assert_eq!(p.advertised(), None);
        p.servers[0].info = Some(BackendInfo {
            version: "10.11.6-MariaDB".into(),
            capabilities: 0b111,
            charset: 45,
        });
        p.servers[1].info = Some(BackendInfo {
            version: "8.0.36".into(),
            capabilities: 0b101,
            charset: 255,
        });
        let a = p.advertised().unwrap();
        assert_eq!(
            (a.version.as_str(), a.capabilities, a.charset),
            ("10.11.6-MariaDB", 0b101, 45)
        );
    }
}
