//! The few operating-system calls std and mio do not offer, made directly
//! through libc. This is the only module allowed `unsafe`; each block says
//! why it is sound.

#![allow(unsafe_code)]

use crate::protocol::scramble;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Twenty random bytes from the OS.
pub fn random20() -> [u8; 20] {
    let mut b = [0u8; 20];
    if let Err(e) = getrandom::fill(&mut b) {
        // Without randomness no salt can be trusted; refusing to run is the
        // only safe answer, and the OS does not fail this on Linux >= 3.17.
        log::error!("getrandom failed: {e}");
        std::process::exit(1);
    }
    b
}

/// The UTC civil time of `secs` since 1970: `[year, month, day, hour,
/// minute, second]` (H. Hinnant's days-to-date algorithm), for log lines and
/// certificates.
pub fn civil_utc(secs: u64) -> [u64; 6] {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    [year as u64, month as u64, day as u64, rem / 3600, rem / 60 % 60, rem % 60]
}

/// A fresh salt for a greeting or an auth switch.
pub fn fresh_salt() -> [u8; 20] {
    scramble::salt_from_random(random20())
}

/// Raises the soft limit on open descriptors to the hard limit (a proxy
/// needs two per connection). Returns `(before, after)`.
pub fn raise_nofile_limit() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
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
    let family = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: plain system call; the result is checked below.
    let fd = unsafe {
        libc::socket(family, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0)
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
    Ok(mio::net::TcpListener::from_std(std::net::TcpListener::from(owned)))
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
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
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
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
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
    Ok(mio::net::TcpStream::from_std(std::net::TcpStream::from(owned)))
}

/// The signals the event loop handles (SIGHUP, SIGTERM, SIGINT), delivered
/// as readable data on a signalfd instead of through handlers, so they are
/// handled in the loop like any other event and no code runs in a signal
/// context.
pub struct Signals {
    fd: OwnedFd,
}

impl Signals {
    /// Blocks `signals` (the process has one thread, so the mask is the
    /// process's) and opens a non-blocking signalfd for them.
    pub fn new(signals: &[libc::c_int]) -> io::Result<Signals> {
        // SAFETY: `set` is a valid sigset_t, initialised by sigemptyset
        // before use; every pointer passed lives for the call.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for &s in signals {
                libc::sigaddset(&mut set, s);
            }
            if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
            let fd = libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(Signals { fd: OwnedFd::from_raw_fd(fd) })
        }
    }

    /// The next pending signal, or `None` when there is none.
    pub fn next(&self) -> io::Result<Option<libc::c_int>> {
        // SAFETY: signalfd_siginfo is plain data; zeroed is a valid value.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: `info` is writable for `size` bytes; `fd` is our signalfd.
        let n = unsafe {
            libc::read(self.fd.as_raw_fd(), (&mut info as *mut libc::signalfd_siginfo).cast(), size)
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock => Ok(None),
                _ => Err(e),
            };
        }
        if n as usize != size {
            return Ok(None);
        }
        Ok(Some(info.ssi_signo as libc::c_int))
    }
}

impl AsRawFd for Signals {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

/// The uid and gid of account `user`.
pub fn lookup_user(user: &str) -> io::Result<(u32, u32)> {
    let name = c_name(user)?;
    // SAFETY: passwd is plain data; getpwnam_r fills `pw` and points its
    // strings into `buf`, both of which outlive every use below.
    unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let rc = libc::getpwnam_r(name.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut found);
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        if found.is_null() {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("no such user '{user}'")));
        }
        Ok((pw.pw_uid, pw.pw_gid))
    }
}

fn c_name(user: &str) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(user)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "user name contains NUL"))
}

/// Switches the process to `user`'s uid, gid and supplementary groups
/// (after binding, so a proxy started as root can listen on port 3306 and
/// then run unprivileged).
pub fn switch_user(user: &str, uid: u32, gid: u32) -> io::Result<()> {
    let name = c_name(user)?;
    // SAFETY: plain system calls on values checked above; the order (groups,
    // gid, then uid) matters, since after setuid the others are not allowed.
    unsafe {
        if libc::initgroups(name.as_ptr(), gid) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::setgid(gid) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::setuid(uid) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
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
