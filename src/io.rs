//! The only code that reads from or writes to sockets: moves bytes between a
//! socket and a ring, and reports how far it got.
//!
//! Results are `(bytes moved, IoStatus)` so bytes already moved are never
//! lost behind an error.

use crate::ring::Ring;
use std::io::{ErrorKind, IoSlice, Read, Write};

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

/// Writes `ring` out until it is empty or the socket takes no more, both
/// halves of a wrapped ring in one vectored write.
pub fn write_from(ring: &mut Ring, dst: &mut impl Write) -> (usize, IoStatus) {
    let mut total = 0;
    loop {
        let (a, b) = ring.as_slices();
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
    use crate::ring::BufPool;
    use std::os::unix::net::UnixStream;

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
        assert_eq!(write_from(&mut ring, &mut c), (8, IoStatus::Open));
        assert_eq!(read_into(&mut ring, &mut b, false), (3, IoStatus::Drained));
        assert_eq!(write_from(&mut ring, &mut c), (3, IoStatus::Open));
        let mut out = [0u8; 11];
        d.read_exact(&mut out).unwrap();
        assert_eq!(&out, b"hello world");
        drop(a);
        assert_eq!(read_into(&mut ring, &mut b, true), (0, IoStatus::Closed));
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
            let (n, st) = write_from(&mut ring, &mut a);
            moved += n;
            if st == IoStatus::Drained {
                assert_eq!(ring.len(), (1 << 16) - n % (1 << 16));
                break;
            }
            assert!(moved < 1 << 30, "socket never filled");
        }
    }
}
