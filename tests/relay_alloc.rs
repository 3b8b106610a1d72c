//! Once a pair is relaying, moving bytes allocates nothing: a counting
//! global allocator watches the proxy's thread while a client and a backend
//! exchange thousands of packets through it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

struct Counting;

static PROXY_ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static ON_PROXY_THREAD: Cell<bool> = const { Cell::new(false) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ON_PROXY_THREAD.with(Cell::get) {
            PROXY_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
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

#[test]
fn relaying_allocates_nothing() {
    let backend = fake_backend();
    let cfg = myroute::config::parse(&format!(
        "listen = 127.0.0.1:0\nhealth.interval = 1h\n\
         pool.p.servers = {backend}\nuser.u.password =\nuser.u.pool = p\n"
    ))
    .unwrap();
    let mut proxy = myroute::runtime::event_loop::Proxy::bind(cfg).unwrap();
    let addr = proxy.local_addr().unwrap();
    std::thread::spawn(move || {
        ON_PROXY_THREAD.with(|c| c.set(true));
        let _ = proxy.run();
    });

    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (seq, greeting) = read_packet(&mut c);
    assert_eq!((seq, greeting[0]), (0, 10));
    // HandshakeResponse41: user u, no password, mysql_native_password.
    let flags: u32 = (1 << 9) | (1 << 15) | (1 << 19);
    let mut resp = flags.to_le_bytes().to_vec();
    resp.extend_from_slice(&(1u32 << 24).to_le_bytes());
    resp.push(45);
    resp.extend_from_slice(&[0; 23]);
    resp.extend_from_slice(b"u\0\0mysql_native_password\0");
    c.write_all(&packet(1, &resp)).unwrap();
    let (seq, ok) = read_packet(&mut c);
    assert_eq!((seq, ok[0]), (2, 0), "logged in");

    let query = packet(0, &[0x03; 1000]);
    let mut echo = vec![0u8; query.len()];
    let mut round_trip = |c: &mut TcpStream| {
        c.write_all(&query).unwrap();
        c.read_exact(&mut echo).unwrap();
        assert_eq!(echo, query);
    };
    // Warm up: rings attach, the spare lists fill.
    for _ in 0..200 {
        round_trip(&mut c);
    }
    let before = PROXY_ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..5000 {
        round_trip(&mut c);
    }
    let after = PROXY_ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(after - before, 0, "allocations on the proxy thread while relaying");
}
