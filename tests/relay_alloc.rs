//! Once a pair is relaying, moving bytes allocates nothing: a counting
//! global allocator watches the proxy's thread while a client and a backend
//! exchange thousands of packets through it. Over TLS, rustls's buffered API
//! allocates per record; the second test states that figure per MB relayed
//! and keeps it bounded.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

struct Counting;

thread_local! {
    /// The counter of the proxy running on this thread, if any.
    static PROXY_ALLOCATIONS: Cell<Option<&'static AtomicUsize>> = const { Cell::new(None) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if let Some(count) = PROXY_ALLOCATIONS.with(Cell::get) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let n = payload.len();
    let mut v = vec![n as u8, (n >> 8) as u8, (n >> 16) as u8, seq];
    v.extend_from_slice(payload);
    v
}

fn read_packet(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 4];
    s.read_exact(&mut h).unwrap();
    let n = usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
    let mut p = vec![0u8; n];
    s.read_exact(&mut p).unwrap();
    (h[3], p)
}

/// A backend that greets, accepts any login, then echoes every byte.
fn fake_backend() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut s) = conn else { continue };
            std::thread::spawn(move || {
                let caps: u32 = myroute::protocol::constants::caps::RELAYABLE;
                let greeting = myroute::protocol::handshake::build_greeting(
                    "10.11.6-MariaDB",
                    1,
                    &[b'x'; 20],
                    caps,
                    0,
                    45,
                );
                if s.write_all(&packet(0, &greeting)).is_err() {
                    return;
                }
                let mut h = [0u8; 4];
                if s.read_exact(&mut h).is_err() {
                    return;
                }
                let n = usize::from(h[0]) | usize::from(h[1]) << 8;
                let mut resp = vec![0u8; n];
                if s.read_exact(&mut resp).is_err() {
                    return;
                }
                let _ = s.write_all(&packet(h[3] + 1, &[0, 0, 0, 2, 0, 0, 0]));
                let mut buf = [0u8; 65536];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Starts a proxy in front of the echoing backend, its allocations counted
/// in `count`; `extra` adds config lines.
fn start_proxy(extra: &str, count: &'static AtomicUsize) -> std::net::SocketAddr {
    let backend = fake_backend();
    let cfg = myroute::config::parse(&format!(
        "listen = 127.0.0.1:0\nhealth.interval = 1h\n{extra}\
         pool.p.servers = {backend}\nuser.u.password =\nuser.u.pool = p\n"
    ))
    .unwrap();
    let mut proxy = myroute::runtime::event_loop::Proxy::bind(cfg).unwrap();
    let addr = proxy.local_addr().unwrap();
    std::thread::spawn(move || {
        PROXY_ALLOCATIONS.with(|c| c.set(Some(count)));
        let _ = proxy.run();
    });
    addr
}

/// HandshakeResponse41 (or, with `short`, the SSLRequest that precedes it):
/// user u, no password, mysql_native_password.
fn login_response(extra_flags: u32, short: bool) -> Vec<u8> {
    let flags: u32 = (1 << 9) | (1 << 15) | (1 << 19) | extra_flags;
    let mut resp = flags.to_le_bytes().to_vec();
    resp.extend_from_slice(&(1u32 << 24).to_le_bytes());
    resp.push(45);
    resp.extend_from_slice(&[0; 23]);
    if !short {
        resp.extend_from_slice(b"u\0\0mysql_native_password\0");
    }
    resp
}

/// Sends `query` and reads its echo `rounds` times; returns the proxy's
/// allocations meanwhile.
fn count_round_trips<S: Read + Write>(
    c: &mut S,
    query: &[u8],
    rounds: usize,
    count: &AtomicUsize,
) -> usize {
    let mut echo = vec![0u8; query.len()];
    let before = count.load(Ordering::Relaxed);
    for _ in 0..rounds {
        c.write_all(query).unwrap();
        c.read_exact(&mut echo).unwrap();
        assert_eq!(echo, query);
    }
    count.load(Ordering::Relaxed) - before
}

#[test]
fn relaying_allocates_nothing() {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let addr = start_proxy("", &COUNT);
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (seq, greeting) = read_packet(&mut c);
    assert_eq!((seq, greeting[0]), (0, 10));
    c.write_all(&packet(1, &login_response(0, false))).unwrap();
    let (seq, ok) = read_packet(&mut c);
    assert_eq!((seq, ok[0]), (2, 0), "logged in");

    let query = packet(0, &[0x03; 1000]);
    // Warm up: rings attach, the spare lists fill.
    count_round_trips(&mut c, &query, 200, &COUNT);
    let allocations = count_round_trips(&mut c, &query, 5000, &COUNT);
    assert_eq!(allocations, 0, "allocations on the proxy thread while relaying");
}

/// The client leg over TLS (`tls = required`, myroute's own certificate):
/// the allocations per MB relayed (both directions counted), stated and
/// bounded.
#[cfg(feature = "tls")]
#[test]
fn tls_relay_allocations_per_mb() {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let addr = start_proxy("tls = required\n", &COUNT);
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (seq, greeting) = read_packet(&mut tcp);
    assert_eq!((seq, greeting[0]), (0, 10));
    const CLIENT_SSL: u32 = 1 << 11;
    tcp.write_all(&packet(1, &login_response(CLIENT_SSL, true))).unwrap();
    // A pool with `tls = required` trusts any certificate: borrow its
    // client settings.
    let cfg = myroute::config::parse(
        "listen = 127.0.0.1:0\npool.p.servers = 127.0.0.1:1\npool.p.tls = required\n\
         user.u.password =\nuser.u.pool = p\n",
    )
    .unwrap();
    let side = myroute::runtime::tls::pool_sides(&cfg).unwrap().remove(0).unwrap();
    let name = rustls::pki_types::ServerName::try_from("myroute").unwrap();
    let conn = rustls::ClientConnection::new(side.config, name).unwrap();
    let mut c = rustls::StreamOwned::new(conn, tcp);
    c.write_all(&packet(2, &login_response(CLIENT_SSL, false))).unwrap();
    let mut h = [0u8; 4];
    c.read_exact(&mut h).unwrap();
    let mut ok = vec![0u8; usize::from(h[0])];
    c.read_exact(&mut ok).unwrap();
    assert_eq!((h[3], ok[0]), (3, 0), "logged in over TLS");

    let query = packet(0, &[0x03; 16000]);
    count_round_trips(&mut c, &query, 200, &COUNT);
    let rounds = 2000;
    let allocations = count_round_trips(&mut c, &query, rounds, &COUNT);
    let mb = (2 * rounds * query.len()) as f64 / 1e6;
    let per_mb = allocations as f64 / mb;
    eprintln!(
        "TLS client leg: {allocations} allocations for {mb:.0} MB relayed, {per_mb:.1} per MB"
    );
    assert!(per_mb < 400.0, "{per_mb:.1} allocations per MB relayed over TLS");
}
