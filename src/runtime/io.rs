//! The only code that reads from or writes to sockets, behind one type,
//! [`Stream`]: it moves bytes between a socket and a ring or a vector and
//! reports how far it got. Whatever carries the bytes (a plain TCP socket
//! today) stays behind it, so the state machines above never know. Also the
//! one name lookup, for the configuration's host names.
//!
//! Results are `(bytes moved, IoStatus)` so bytes already moved are never
//! lost behind an error.

use crate::protocol::ring::Ring;
use crate::runtime::sys;
#[cfg(feature = "tls")]
use crate::runtime::tls;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use std::io::{ErrorKind, IoSlice, Read, Write};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// One connection's byte stream: a TCP socket, with TLS on it once a
/// handshake was started.
pub struct Stream {
    tcp: TcpStream,
    #[cfg(feature = "tls")]
    tls: Option<Box<tls::Tls>>,
}

/// How a non-blocking connect stands.
pub enum Connect {
    /// Still in progress.
    Pending,
    Done,
    Failed(String),
}

/// How a stream's TLS handshake ended, told once.
pub enum TlsEnd {
    Ready { version: &'static str, cipher: String, cert_sha256: Option<[u8; 32]> },
    Failed(&'static str),
}

/// The TLS settings the runtime starts handshakes with: the client leg's,
/// and each pool's (by pool index) toward its servers.
#[derive(Default, Clone)]
pub struct TlsSettings {
    #[cfg(feature = "tls")]
    pub clients: Option<tls::ServerSide>,
    #[cfg(feature = "tls")]
    pub pools: Vec<Option<tls::PoolSide>>,
}

/// What TLS settings are made from, kept for the life of the process: the
/// self-signed certificate made at start (used when `tls.cert` is not set),
/// so reloads do not change it.
pub struct TlsSource {
    #[cfg(feature = "tls")]
    self_signed: tls::SelfSigned,
}

impl TlsSource {
    pub fn new() -> Result<TlsSource, String> {
        Ok(TlsSource {
            #[cfg(feature = "tls")]
            self_signed: tls::SelfSigned::new()?,
        })
    }

    /// The settings for `cfg`, each pool's at its index in `pools`. Errors
    /// point at the line naming the file at fault.
    pub fn settings(
        &self,
        cfg: &crate::config::Config,
        pools: &crate::servers::pool::Pools,
    ) -> Result<TlsSettings, crate::config::Error> {
        #[cfg(feature = "tls")]
        {
            let clients = tls::server_side(cfg, &self.self_signed)?;
            let mut by_pool = vec![None; pools.pools().len()];
            for (ci, side) in tls::pool_sides(cfg)?.into_iter().enumerate() {
                if let Some(slot) = by_pool.get_mut(pools.of_config(ci)) {
                    *slot = side;
                }
            }
            Ok(TlsSettings { clients, pools: by_pool })
        }
        #[cfg(not(feature = "tls"))]
        {
            let _ = (cfg, pools);
            Ok(TlsSettings::default())
        }
    }

    /// What to log about the client leg's certificate at start: the
    /// self-signed one's fingerprint, for clients that pin it.
    pub fn describe(&self, settings: &TlsSettings, cfg: &crate::config::Config) -> Option<String> {
        #[cfg(feature = "tls")]
        {
            let side = settings.clients.as_ref()?;
            let fp = tls::colon_hex(&side.cert_sha256);
            Some(match &cfg.tls.cert {
                Some(f) => format!("TLS for clients with {} (SHA-256 fingerprint {fp})", f.path),
                None => format!(
                    "TLS for clients with a self-signed certificate, SHA-256 fingerprint {fp}"
                ),
            })
        }
        #[cfg(not(feature = "tls"))]
        {
            let _ = (settings, cfg);
            None
        }
    }
}

impl Stream {
    fn new(tcp: TcpStream) -> Stream {
        Stream {
            tcp,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// An accepted connection. (Nagle is off: every write is a whole
    /// answer or a relayed chunk the peer waits for.)
    pub fn accepted(tcp: TcpStream) -> Stream {
        let _ = tcp.set_nodelay(true);
        Stream::new(tcp)
    }

    /// Starts a non-blocking connect to `addr`, from `source` when one is
    /// configured.
    pub fn connect(source: Option<IpAddr>, addr: SocketAddr) -> std::io::Result<Stream> {
        let tcp = match source {
            Some(ip) => sys::connect_from(ip, addr)?,
            None => TcpStream::connect(addr)?,
        };
        Ok(Stream::new(tcp))
    }

    /// Registers for both directions, once: readiness is edge-triggered.
    pub fn register(&mut self, registry: &Registry, token: Token) -> std::io::Result<()> {
        registry.register(&mut self.tcp, token, Interest::READABLE | Interest::WRITABLE)
    }

    pub fn deregister(&mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.tcp);
    }

    /// The address the peer connected to.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.tcp.local_addr().ok()
    }

    /// Where a connect started with [`Stream::connect`] stands: the socket
    /// turns writable when it is done; `take_error` tells failure,
    /// `peer_addr` success.
    pub fn connect_result(&mut self) -> Connect {
        match self.tcp.take_error() {
            Ok(Some(e)) | Err(e) => return Connect::Failed(e.to_string()),
            Ok(None) => {}
        }
        match self.tcp.peer_addr() {
            Ok(_) => {
                let _ = self.tcp.set_nodelay(true);
                Connect::Done
            }
            Err(e) if e.kind() == ErrorKind::NotConnected => Connect::Pending,
            Err(e) => Connect::Failed(e.to_string()),
        }
    }

    /// Reads into `ring` until it is full or the socket has nothing more
    /// (see [`read_into`]). Through TLS a short read of plaintext says
    /// nothing about the socket: what ends the pass is a short `recv` of
    /// records, or "would block" (or, once the peer hung up, the end).
    pub fn read_into(&mut self, ring: &mut Ring, to_end: bool) -> (usize, IoStatus) {
        #[cfg(feature = "tls")]
        if let Some(t) = self.tls.as_mut() {
            // A short recv of records ends the pass, as a short read of
            // plaintext does; the loop below then stops at "would block".
            t.trust_short = !to_end;
            t.socket_empty = false;
            let (n, st) = read_into(ring, self, true);
            if let Some(t) = self.tls.as_mut() {
                t.trust_short = false;
            }
            return (n, self.tls_failure(st));
        }
        read_into(ring, self, to_end)
    }

    /// Writes the first `limit` bytes of `ring` out, until they are gone or
    /// the socket takes no more.
    pub fn write_from(&mut self, ring: &mut Ring, limit: usize) -> (usize, IoStatus) {
        let (n, st) = write_from(ring, limit, self);
        (n, self.tls_failure(st))
    }

    /// Writes the front of `buf` out, removing what was written.
    pub fn write_vec(&mut self, buf: &mut Vec<u8>) -> (usize, IoStatus) {
        let (n, st) = write_vec(buf, self);
        (n, self.tls_failure(st))
    }

    /// Appends what the socket has to `into`, until it has nothing more or
    /// `into` holds `max` bytes.
    pub fn read_vec(&mut self, into: &mut Vec<u8>, max: usize) -> (usize, IoStatus) {
        let mut buf = [0u8; 4096];
        let mut total = 0;
        while into.len() < max {
            match self.read(&mut buf) {
                Ok(0) => return (total, IoStatus::Closed),
                Ok(n) => {
                    into.extend_from_slice(&buf[..n]);
                    total += n;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return (total, self.tls_failure(classify(&e))),
            }
        }
        (total, IoStatus::Open)
    }

    /// A failure is a TLS failure when the stream's TLS failed.
    fn tls_failure(&self, st: IoStatus) -> IoStatus {
        #[cfg(feature = "tls")]
        if let (IoStatus::Failed(_), Some(why)) = (st, self.tls.as_ref().and_then(|t| t.failed)) {
            return IoStatus::Tls(why);
        }
        st
    }

    /// TLS records are waiting to be written (a handshake message, an
    /// alert, what the last write could not push out): write when writable
    /// even with nothing new to send.
    pub fn wants_write(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.as_ref().is_some_and(|t| t.conn.wants_write());
        #[cfg(not(feature = "tls"))]
        false
    }

    /// Writes waiting TLS records out, as far as the socket takes them.
    pub fn flush(&mut self) -> IoStatus {
        // Nothing new is written: only what rustls holds goes out.
        match self.write(&[]).map(|_| ()) {
            Ok(()) => IoStatus::Open,
            Err(e) => self.tls_failure(classify(&e)),
        }
    }

    /// How the TLS handshake ended, once it has (told once).
    pub fn tls_end(&mut self) -> Option<TlsEnd> {
        #[cfg(feature = "tls")]
        {
            let t = self.tls.as_mut()?;
            if t.reported || (t.conn.is_handshaking() && t.failed.is_none()) {
                return None;
            }
            t.reported = true;
            if let Some(why) = t.failed {
                return Some(TlsEnd::Failed(why));
            }
            let (version, cipher) = t.describe();
            Some(TlsEnd::Ready { version, cipher, cert_sha256: t.cert_sha256 })
        }
        #[cfg(not(feature = "tls"))]
        None
    }

    /// Starts the server side of TLS with the client leg's settings, after a
    /// client's SSLRequest. `early` are bytes already read behind the
    /// request: its first TLS records.
    #[cfg(feature = "tls")]
    pub fn start_tls_server(
        &mut self,
        tls: &TlsSettings,
        early: &[u8],
    ) -> Result<(), &'static str> {
        let side = tls.clients.as_ref().ok_or("not offered")?;
        let mut t = tls::Tls::server(side)?;
        let mut early = early;
        while !early.is_empty() {
            if t.conn.read_tls(&mut early).is_err() {
                return Err("bad record");
            }
            if let Err(e) = t.conn.process_new_packets() {
                t.failed = Some(tls::reason(&e));
                break;
            }
        }
        self.tls = Some(Box::new(t));
        let _ = self.flush();
        Ok(())
    }

    /// Starts the client side of TLS toward server `host` with `pool`'s
    /// settings, after myroute's SSLRequest went out.
    #[cfg(feature = "tls")]
    pub fn start_tls_client(
        &mut self,
        tls: &TlsSettings,
        pool: usize,
        host: &str,
    ) -> Result<(), &'static str> {
        let side = tls.pools.get(pool).and_then(Option::as_ref).ok_or("not configured")?;
        let name = tls::server_name(side, host).ok_or("bad server name")?;
        self.tls = Some(Box::new(tls::Tls::client(side, name)?));
        let _ = self.flush();
        Ok(())
    }

    #[cfg(not(feature = "tls"))]
    pub fn start_tls_server(&mut self, _: &TlsSettings, _: &[u8]) -> Result<(), &'static str> {
        Err("built without TLS")
    }

    #[cfg(not(feature = "tls"))]
    pub fn start_tls_client(
        &mut self,
        _: &TlsSettings,
        _: usize,
        _: &str,
    ) -> Result<(), &'static str> {
        Err("built without TLS")
    }
}

/// Reads plaintext: through TLS when the stream has it, from the socket
/// otherwise. `Ok(0)` is the end of the stream.
impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(t) = self.tls.as_mut() {
            return tls_read(t, &mut self.tcp, buf);
        }
        self.tcp.read(buf)
    }
}

/// Writes plaintext: through TLS when the stream has it.
impl Write for Stream {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(t) = self.tls.as_mut() {
            return tls_write(t, &mut self.tcp, data);
        }
        self.tcp.write(data)
    }

    /// Both halves of a wrapped ring in one call. (The default would write
    /// only the first, and a short write reads as a full socket: the pair
    /// would then wait for a writable event that never comes.)
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(t) = self.tls.as_mut() {
            let mut total = 0;
            for b in bufs {
                match tls_write(t, &mut self.tcp, b) {
                    Ok(n) if n == b.len() => total += n,
                    Ok(n) => return Ok(total + n),
                    Err(e) if e.kind() == ErrorKind::WouldBlock && total > 0 => break,
                    Err(e) => return Err(e),
                }
            }
            return Ok(total);
        }
        self.tcp.write_vectored(bufs)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Plaintext from a TLS connection: what rustls has decrypted, else more
/// records from the socket, until there is some or the socket would block.
#[cfg(feature = "tls")]
fn tls_read(t: &mut tls::Tls, tcp: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match t.conn.reader().read(buf) {
            Ok(n) => return Ok(n), // 0: the peer's close_notify
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            // The TCP stream ended without close_notify: the end all the same.
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(0),
            Err(e) => return Err(e),
        }
        if t.failed.is_some() {
            return Err(ErrorKind::InvalidData.into());
        }
        if t.socket_empty {
            return Err(ErrorKind::WouldBlock.into());
        }
        let mut recv = Recv { tcp, short: false };
        let got = t.conn.read_tls(&mut recv);
        t.socket_empty = recv.short && t.trust_short;
        match got {
            Ok(0) => return Ok(0),
            Ok(_) => {
                if let Err(e) = t.conn.process_new_packets() {
                    t.failed = Some(tls::reason(&e));
                    let _ = tls_flush(t, tcp); // the alert, if it fits
                    return Err(ErrorKind::InvalidData.into());
                }
                // Handshake messages to answer with, if any.
                match tls_flush(t, tcp) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// The socket as rustls reads records from it, noting a short `recv`:
/// the kernel had no more then, and the next arrival is a new event.
#[cfg(feature = "tls")]
struct Recv<'a> {
    tcp: &'a mut TcpStream,
    short: bool,
}

#[cfg(feature = "tls")]
impl Read for Recv<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.tcp.read(buf)?;
        self.short = n < buf.len();
        Ok(n)
    }
}

/// Plaintext into a TLS connection: as much as rustls takes while the
/// records it makes go out; short only when the socket would block.
#[cfg(feature = "tls")]
fn tls_write(t: &mut tls::Tls, tcp: &mut TcpStream, data: &[u8]) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        match tls_flush(t, tcp) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock && total > 0 => return Ok(total),
            Err(e) => return Err(e),
        }
        if total == data.len() {
            return Ok(total);
        }
        total += t.conn.writer().write(&data[total..])?;
    }
}

/// Writes the TLS records rustls has ready.
#[cfg(feature = "tls")]
fn tls_flush(t: &mut tls::Tls, tcp: &mut TcpStream) -> std::io::Result<()> {
    while t.conn.wants_write() {
        if t.conn.write_tls(tcp)? == 0 {
            return Err(ErrorKind::WriteZero.into());
        }
    }
    Ok(())
}

/// Looks a configuration's `host:port` up with the system resolver and
/// takes the first address. Blocks for as long as the lookup takes: at
/// start, and on reload inside the loop.
pub fn resolve(hostport: &str) -> Result<SocketAddr, String> {
    let host = hostport.rsplit_once(':').map_or(hostport, |(h, _)| h);
    hostport
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| format!("cannot resolve host '{host}'"))
}

/// What a socket said after the last call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoStatus {
    /// The ring filled up (read) or emptied (write); the socket may have more.
    Open,
    /// The socket has nothing more to give or take now (`WouldBlock`, or a
    /// short read/write, which means the same on a stream socket).
    Drained,
    /// The peer closed (read returned 0; reset; broken pipe).
    Closed,
    /// Any other error.
    Failed(ErrorKind),
    /// TLS failed (handshake, alert, bad record); the text says how.
    Tls(&'static str),
}

fn classify(e: &std::io::Error) -> IoStatus {
    match e.kind() {
        ErrorKind::WouldBlock => IoStatus::Drained,
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted => {
            IoStatus::Closed
        }
        k => IoStatus::Failed(k),
    }
}

/// Reads into `ring` until it is full or the socket has nothing more. With
/// `to_end` set (the peer has hung up), a short read is not taken as
/// "drained": reading goes on until 0, so the close is seen.
pub fn read_into(ring: &mut Ring, src: &mut impl Read, to_end: bool) -> (usize, IoStatus) {
    let mut total = 0;
    loop {
        if ring.is_full() {
            return (total, IoStatus::Open);
        }
        let (n, res) = ring.fill_with(|buf| match src.read(buf) {
            Ok(n) => (n, Ok(buf.len())),
            Err(e) => (0, Err(e)),
        });
        match res {
            Ok(_) if n == 0 => return (total, IoStatus::Closed),
            Ok(wanted) => {
                total += n;
                if n < wanted && !to_end {
                    return (total, IoStatus::Drained);
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return (total, classify(&e)),
        }
    }
}

/// Writes the first `limit` bytes of `ring` out until they are gone or the
/// socket takes no more, both halves of a wrapped ring in one vectored
/// write.
pub fn write_from(ring: &mut Ring, limit: usize, dst: &mut impl Write) -> (usize, IoStatus) {
    let mut total = 0;
    loop {
        let (a, b) = ring.as_slices();
        let left = limit - total;
        let a = &a[..a.len().min(left)];
        let b = &b[..b.len().min(left - a.len())];
        let want = a.len() + b.len();
        if want == 0 {
            return (total, IoStatus::Open);
        }
        let res = if b.is_empty() {
            dst.write(a)
        } else {
            dst.write_vectored(&[IoSlice::new(a), IoSlice::new(b)])
        };
        match res {
            Ok(0) => return (total, IoStatus::Failed(ErrorKind::WriteZero)),
            Ok(n) => {
                ring.consume(n);
                total += n;
                if n < want {
                    return (total, IoStatus::Drained);
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return (total, classify(&e)),
        }
    }
}

/// Writes the front of `buf` out, removing what was written.
pub fn write_vec(buf: &mut Vec<u8>, dst: &mut impl Write) -> (usize, IoStatus) {
    let mut total = 0;
    while !buf.is_empty() {
        match dst.write(buf) {
            Ok(0) => return (total, IoStatus::Failed(ErrorKind::WriteZero)),
            Ok(n) => {
                buf.drain(..n);
                total += n;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return (total, classify(&e)),
        }
    }
    (total, IoStatus::Open)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ring::BufPool;
    use std::os::unix::net::UnixStream;

    #[test]
    fn resolve_takes_ip_addresses_and_names() {
        assert_eq!(resolve("127.0.0.1:5"), Ok("127.0.0.1:5".parse().unwrap()));
        // /etc/hosts answers for localhost, with no DNS server involved.
        assert!(resolve("localhost:5").is_ok_and(|a| a.ip().is_loopback() && a.port() == 5));
    }

    #[test]
    fn moves_bytes_through_a_ring_written_in_pieces() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let mut pool = BufPool::new(8, 1);
        let mut ring = Ring::default();
        ring.attach(&mut pool);
        a.write_all(b"hello world").unwrap();
        // Fills the ring (8 bytes), leaving the rest in the socket.
        assert_eq!(read_into(&mut ring, &mut b, false), (8, IoStatus::Open));
        let (mut c, mut d) = UnixStream::pair().unwrap();
        c.set_nonblocking(true).unwrap();
        assert_eq!(write_from(&mut ring, usize::MAX, &mut c), (8, IoStatus::Open));
        assert_eq!(read_into(&mut ring, &mut b, false), (3, IoStatus::Drained));
        assert_eq!(write_from(&mut ring, usize::MAX, &mut c), (3, IoStatus::Open));
        let mut out = [0u8; 11];
        d.read_exact(&mut out).unwrap();
        assert_eq!(&out, b"hello world");
        drop(a);
        assert_eq!(read_into(&mut ring, &mut b, true), (0, IoStatus::Closed));
    }

    /// A wrapped ring goes out whole through a stream: the second half is
    /// not mistaken for a full socket.
    #[test]
    fn a_stream_writes_both_halves_of_a_wrapped_ring() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        tcp.set_nonblocking(true).unwrap();
        let mut stream = Stream::accepted(TcpStream::from_std(tcp));
        let mut pool = BufPool::new(8, 1);
        let mut ring = Ring::default();
        ring.attach(&mut pool);
        assert_eq!(ring.push(b"abcdef"), 6);
        ring.consume(5);
        assert_eq!(ring.push(b"ghijkl"), 6);
        assert!(!ring.as_slices().1.is_empty(), "the ring wraps");
        assert_eq!(stream.write_from(&mut ring, usize::MAX), (7, IoStatus::Open));
        let mut out = [0u8; 7];
        peer.read_exact(&mut out).unwrap();
        assert_eq!(&out, b"fghijkl");
    }

    /// Moves `client`'s records to `peer` and back what the server side
    /// wrote, around one read pass of `stream`.
    #[cfg(feature = "tls")]
    fn tls_round(
        client: &mut tls::Tls,
        peer: &mut std::net::TcpStream,
        stream: &mut Stream,
        ring: &mut Ring,
    ) -> (usize, IoStatus) {
        while client.conn.wants_write() {
            client.conn.write_tls(peer).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(30));
        let got = stream.read_into(ring, false);
        std::thread::sleep(std::time::Duration::from_millis(30));
        loop {
            match client.conn.read_tls(peer) {
                Ok(0) => break,
                Ok(_) => {
                    client.conn.process_new_packets().unwrap();
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        got
    }

    /// A short recv of records ends a read pass, as a short plaintext read
    /// does (the next arrival is a new event); after a hang-up the pass
    /// reads on to the end.
    #[cfg(feature = "tls")]
    #[test]
    fn a_tls_read_pass_ends_on_a_short_recv_unless_the_peer_hung_up() {
        use rustls::pki_types::ServerName;
        let made = tls::SelfSigned::new().unwrap();
        let cfg = crate::config::parse(
            "pool.p.servers = 127.0.0.1:1\npool.p.tls = required\nuser.u.password =\nuser.u.pool = p\n",
        )
        .unwrap();
        let side = tls::server_side(&cfg, &made).unwrap().unwrap();
        let pools = tls::pool_sides(&cfg).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut client = tls::Tls::client(pools[0].as_ref().unwrap(), name).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (tcp, _) = listener.accept().unwrap();
        tcp.set_nonblocking(true).unwrap();
        peer.set_nonblocking(true).unwrap();
        let mut stream = Stream::accepted(TcpStream::from_std(tcp));
        stream.tls = Some(Box::new(tls::Tls::server(&side).unwrap()));
        let mut pool = BufPool::new(1 << 16, 1);
        let mut ring = Ring::default();
        ring.attach(&mut pool);
        for _ in 0..10 {
            if !client.conn.is_handshaking() {
                break;
            }
            tls_round(&mut client, &mut peer, &mut stream, &mut ring);
        }
        assert!(!client.conn.is_handshaking());
        client.conn.writer().write_all(b"hello").unwrap();
        assert_eq!(
            tls_round(&mut client, &mut peer, &mut stream, &mut ring),
            (5, IoStatus::Drained)
        );
        // A record and the end of the stream, both in the socket: the short
        // recv of the record ends the pass...
        client.conn.writer().write_all(b" world").unwrap();
        while client.conn.wants_write() {
            client.conn.write_tls(&mut peer).unwrap();
        }
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert_eq!(stream.read_into(&mut ring, false), (6, IoStatus::Drained));
        // ...and the hang-up's event has the next one read to the end.
        assert_eq!(stream.read_into(&mut ring, true), (0, IoStatus::Closed));
        let mut out = [0u8; 11];
        ring.peek(0, &mut out);
        assert_eq!(&out, b"hello world");
    }

    #[test]
    fn a_full_socket_reports_drained_and_keeps_the_rest() {
        let (mut a, _b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let mut pool = BufPool::new(1 << 16, 1);
        let mut ring = Ring::default();
        ring.attach(&mut pool);
        let mut moved = 0;
        loop {
            let chunk = vec![7u8; 1 << 16];
            assert_eq!(ring.push(&chunk), 1 << 16);
            let (n, st) = write_from(&mut ring, usize::MAX, &mut a);
            moved += n;
            if st == IoStatus::Drained {
                assert_eq!(ring.len(), (1 << 16) - n % (1 << 16));
                break;
            }
            assert!(moved < 1 << 30, "socket never filled");
        }
    }
}
