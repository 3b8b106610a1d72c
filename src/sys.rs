//! The few operating-system calls std and mio do not offer, made directly
//! through libc. This is the only module allowed `unsafe`; each block says
//! why it is sound.

#![allow(unsafe_code)]

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Raises the soft limit on open descriptors to the hard limit (a proxy
/// needs two per connection). Returns `(before, after)`.
pub fn raise_nofile_limit() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the call's duration.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid rlimit read from the kernel above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // rlim_t is u64 on Linux.
    Ok((before, lim.rlim_cur))
}

/// A new non-blocking TCP socket of `addr`'s family; OwnedFd closes it on
/// every early return of the callers.
fn tcp_socket(addr: SocketAddr) -> io::Result<OwnedFd> {
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain system call; the result is checked below.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a socket just created, owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A non-blocking listening socket on `addr`, with SO_REUSEADDR and, if
/// `reuse_port`, SO_REUSEPORT (so several processes can share the port and
/// the kernel spreads connections over them).
pub fn listen(addr: SocketAddr, reuse_port: bool) -> io::Result<mio::net::TcpListener> {
    let owned = tcp_socket(addr)?;
    let fd = owned.as_raw_fd();
    let mut options = vec![libc::SO_REUSEADDR];
    if reuse_port {
        options.push(libc::SO_REUSEPORT);
    }
    for opt in options {
        let one: libc::c_int = 1;
        // SAFETY: `one` is a c_int that lives across the call.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                &one as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let (sa, len) = sockaddr(addr);
    // SAFETY: `sa` is a valid sockaddr of `len` bytes.
    if unsafe { libc::bind(fd, &sa as *const _ as *const libc::sockaddr, len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: plain system call on a socket we own.
    if unsafe { libc::listen(fd, 1024) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(mio::net::TcpListener::from_std(
        std::net::TcpListener::from(owned),
    ))
}

/// A `sockaddr_storage` holding `addr`, and its length.
fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for
            // sockaddr_in; we write one whole value at its start.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// Starts a non-blocking TCP connect to `dst` from the local address `src`
/// (port chosen by the kernel), as HAProxy's `source` does; std and mio
/// cannot bind before connecting.
pub fn connect_from(src: IpAddr, dst: SocketAddr) -> io::Result<mio::net::TcpStream> {
    let owned = tcp_socket(dst)?;
    let fd = owned.as_raw_fd();
    let (local, local_len) = sockaddr(SocketAddr::new(src, 0));
    // SAFETY: `local` is a valid sockaddr of `local_len` bytes.
    if unsafe { libc::bind(fd, &local as *const _ as *const libc::sockaddr, local_len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let (remote, remote_len) = sockaddr(dst);
    // SAFETY: `remote` is a valid sockaddr of `remote_len` bytes.
    let rc = unsafe { libc::connect(fd, &remote as *const _ as *const libc::sockaddr, remote_len) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
    }
    Ok(mio::net::TcpStream::from_std(std::net::TcpStream::from(
        owned,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connects_from_the_given_source_address() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dst = l.local_addr().unwrap();
        let _s = connect_from("127.0.0.2".parse().unwrap(), dst).unwrap();
        let (_conn, peer) = l.accept().unwrap();
        assert_eq!(peer.ip(), "127.0.0.2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn two_listeners_share_a_port_with_reuse_port() {
        let a = listen("127.0.0.1:0".parse().unwrap(), true).unwrap();
        let addr = a.local_addr().unwrap();
        let _b = listen(addr, true).unwrap();
        assert!(listen(addr, false).is_err(), "without it the port is taken");
    }

    #[test]
    fn nofile_limit_reaches_the_hard_limit() {
        let (before, after) = raise_nofile_limit().unwrap();
        assert!(after >= before);
    }
}
