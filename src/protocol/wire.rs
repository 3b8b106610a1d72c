//! MySQL packet framing and the primitive field codecs.
//!
//! Heads up: every MySQL packet is `int<3> payload_length` + `int<1>
//! sequence_id` + payload. A payload of 0xFFFFFF bytes or more is split into
//! 0xFFFFFF-byte packets followed by a shorter one (possibly empty); the
//! sequence id goes up by one per packet and restarts at 0 with each command
//! (MySQL "Protocol Basics: Packets"; MariaDB "0 - Packet").
//!
//! Everything here is pure: parsers take byte slices that a peer controls and
//! return `Result`, never panic, and never trust a length before the bytes
//! behind it are present.

use crate::protocol::ring::Ring;
use std::fmt;

/// Length of a packet header.
pub const HEADER_LEN: usize = 4;
/// Payload length that means "more packets follow for this payload".
pub const MAX_PAYLOAD: usize = 0xFF_FFFF;

/// Why bytes from a peer could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The bytes end before the field does.
    Truncated,
    /// A packet is larger than the proxy accepts in this phase.
    TooLarge,
    /// The bytes are present but make no sense; the text says which field.
    Malformed(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => f.write_str("truncated packet"),
            Error::TooLarge => f.write_str("packet too large"),
            Error::Malformed(what) => write!(f, "malformed {what}"),
        }
    }
}

/// A byte queue packets are taken from: a ring while relaying or logging
/// in, a plain `Vec` for the console and the probes.
pub trait Queue {
    /// Bytes queued.
    fn queued(&self) -> usize;
    /// Copies up to `out.len()` bytes starting `offset` bytes in, without
    /// consuming; returns the count copied.
    fn peek_at(&self, offset: usize, out: &mut [u8]) -> usize;
    /// Removes the `n` oldest bytes.
    fn consume_front(&mut self, n: usize);
}

impl Queue for Ring {
    fn queued(&self) -> usize {
        self.len()
    }
    fn peek_at(&self, offset: usize, out: &mut [u8]) -> usize {
        self.peek(offset, out)
    }
    fn consume_front(&mut self, n: usize) {
        self.consume(n);
    }
}

impl Queue for Vec<u8> {
    fn queued(&self) -> usize {
        self.len()
    }
    fn peek_at(&self, offset: usize, out: &mut [u8]) -> usize {
        let src = self.get(offset..).unwrap_or_default();
        let n = src.len().min(out.len());
        out[..n].copy_from_slice(&src[..n]);
        n
    }
    fn consume_front(&mut self, n: usize) {
        // What was read may hold a token: zero it before it is released.
        let n = n.min(self.len());
        self[..n].fill(0);
        self.drain(..n);
    }
}

/// Reads the header of the first packet in `q` without consuming it:
/// `(payload_length, sequence_id)`, or `None` until 4 bytes are queued.
pub fn peek_header(q: &impl Queue) -> Option<(usize, u8)> {
    let mut h = [0u8; HEADER_LEN];
    let n = q.peek_at(0, &mut h);
    header_of(&h[..n])
}

/// `(payload length, sequence id)` of a packet header: a 3-byte
/// little-endian length, then the sequence id.
pub fn decode_header(h: [u8; HEADER_LEN]) -> (usize, u8) {
    let len = usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
    (len, h[3])
}

/// The header at the start of `bytes`, once its four bytes are there.
pub fn header_of(bytes: &[u8]) -> Option<(usize, u8)> {
    let h: [u8; HEADER_LEN] = bytes.get(..HEADER_LEN)?.try_into().ok()?;
    Some(decode_header(h))
}

/// Takes one whole packet out of `q` if it is entirely queued: the one
/// packet reader, used by every exchange that reads whole packets.
///
/// Every packet read this way must fit in `max_payload` (and so can never
/// be split): a larger one is `TooLarge`, refused on its header before its
/// bytes are buffered, and the caller closes the connection. Returns
/// `(sequence_id, payload)`.
pub fn take_packet(q: &mut impl Queue, max_payload: usize) -> Result<Option<(u8, Vec<u8>)>, Error> {
    let Some((len, seq)) = peek_header(q) else {
        return Ok(None);
    };
    if len > max_payload || len >= MAX_PAYLOAD {
        return Err(Error::TooLarge);
    }
    // `len + 4` cannot overflow: `len` < 2^24.
    if q.queued() < HEADER_LEN + len {
        return Ok(None);
    }
    let mut payload = vec![0u8; len];
    let copied = q.peek_at(HEADER_LEN, &mut payload);
    debug_assert_eq!(copied, len);
    q.consume_front(HEADER_LEN + len);
    Ok(Some((seq, payload)))
}

/// Appends a packet (header + payload) to `out`. The payload must be smaller
/// than 16 MiB: the proxy only ever builds small packets itself.
pub fn put_packet(out: &mut Vec<u8>, seq: u8, payload: &[u8]) {
    assert!(payload.len() < MAX_PAYLOAD, "proxy-built packet too large");
    let n = payload.len();
    out.extend_from_slice(&[n as u8, (n >> 8) as u8, (n >> 16) as u8, seq]);
    out.extend_from_slice(payload);
}

/// A cursor over a payload a peer sent. Every read checks the remaining
/// length first.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// The rest of the payload (`string<EOF>`).
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// `string<fix>` of `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if n > self.buf.len() {
            return Err(Error::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.bytes(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16, Error> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Result<u32, Error> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// `string<NUL>`: bytes up to a NUL, which is consumed and not returned.
    pub fn nul_str(&mut self) -> Result<&'a [u8], Error> {
        let end = self.buf.iter().position(|&b| b == 0).ok_or(Error::Truncated)?;
        let s = self.bytes(end)?;
        self.bytes(1)?;
        Ok(s)
    }

    /// `int<lenenc>`. 0xFB (NULL) and 0xFF (ERR marker) are not integers.
    pub fn lenenc_int(&mut self) -> Result<u64, Error> {
        let first = self.u8()?;
        Ok(match first {
            0..=0xFA => u64::from(first),
            0xFC => u64::from(self.u16()?),
            0xFD => {
                let b = self.bytes(3)?;
                u64::from(b[0]) | u64::from(b[1]) << 8 | u64::from(b[2]) << 16
            }
            0xFE => {
                let b = self.bytes(8)?;
                u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
            }
            _ => return Err(Error::Malformed("length-encoded integer")),
        })
    }

    /// `string<lenenc>`. The length is checked against the bytes present
    /// before anything is sliced, so a claimed length costs nothing.
    pub fn lenenc_bytes(&mut self) -> Result<&'a [u8], Error> {
        let n = self.lenenc_int()?;
        let n = usize::try_from(n).map_err(|_| Error::Truncated)?;
        self.bytes(n)
    }
}

/// Appends `int<lenenc>`.
pub fn put_lenenc_int(out: &mut Vec<u8>, v: u64) {
    match v {
        0..=0xFA => out.push(v as u8),
        0xFB..=0xFFFF => {
            out.push(0xFC);
            out.extend_from_slice(&(v as u16).to_le_bytes());
        }
        0x1_0000..=0xFF_FFFF => {
            out.push(0xFD);
            out.extend_from_slice(&(v as u32).to_le_bytes()[..3]);
        }
        _ => {
            out.push(0xFE);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

/// Appends `string<lenenc>`.
pub fn put_lenenc_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_lenenc_int(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Payload bytes a [`Framer`] can keep from the start of each packet:
/// enough for an OK_Packet's status (header, two 9-byte lenenc integers,
/// status) and for COM_STMT_PREPARE_OK (13 bytes).
pub const HEAD: usize = 24;

/// The head of a packet a [`Framer`] walked: its header and its first
/// payload bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head<'a> {
    pub len: usize,
    pub seq: u8,
    /// The first `min(len, head_len)` payload bytes.
    pub bytes: &'a [u8],
}

/// Follows packet boundaries in a relayed byte stream by reading headers
/// and the first few payload bytes of each packet, so the proxy knows where
/// each packet starts and what it is without buffering whole packets. Feed
/// it every byte of one direction, in order; it allocates nothing.
///
/// A packet that continues a 16 MiB one (its predecessor was exactly
/// 0xFFFFFF bytes long) is the middle of a payload and is not reported.
#[derive(Debug, Clone)]
pub struct Framer {
    /// Header bytes collected so far for the packet being started.
    header: [u8; HEADER_LEN],
    have: u8,
    /// Payload bytes of the current packet not walked yet.
    left: usize,
    len: usize,
    seq: u8,
    /// The current packet is 0xFFFFFF long: the next one continues it.
    continued: bool,
    /// Payload bytes kept per packet, and those of the current one.
    head_len: u8,
    head: [u8; HEAD],
    head_have: u8,
    head_want: u8,
    /// Empty packets that were not continuations, walked so far (wrapping):
    /// on the client's side, the end of a LOCAL INFILE file.
    empty: u32,
}

impl Framer {
    /// A framer that reports each packet once its first `head_len` payload
    /// bytes (at most [`HEAD`]; fewer if the packet is shorter) are walked.
    pub fn new(head_len: usize) -> Framer {
        Framer {
            header: [0; HEADER_LEN],
            have: 0,
            left: 0,
            len: 0,
            seq: 0,
            continued: false,
            head_len: head_len.min(HEAD) as u8,
            head: [0; HEAD],
            head_have: 0,
            head_want: 0,
            empty: 0,
        }
    }

    /// Walks `data` (bytes just appended to the stream) until the head of
    /// a packet is complete. Returns how many bytes it walked and, if it
    /// stopped at a packet, that packet's head (the walked count then ends
    /// just after the head). Call again with the rest to continue.
    pub fn feed(&mut self, data: &[u8]) -> (usize, Option<Head<'_>>) {
        let mut i = 0;
        while i < data.len() {
            let rest = &data[i..];
            if self.head_have < self.head_want {
                // `head_want` never exceeds the packet's length, so these
                // bytes are all payload.
                let at = usize::from(self.head_have);
                let n = (usize::from(self.head_want) - at).min(rest.len());
                self.head[at..at + n].copy_from_slice(&rest[..n]);
                self.head_have += n as u8;
                self.left -= n;
                i += n;
                if self.head_have == self.head_want {
                    return (i, Some(self.current()));
                }
            } else if self.left > 0 {
                let n = self.left.min(rest.len());
                self.left -= n;
                i += n;
            } else {
                let at = usize::from(self.have);
                let n = (HEADER_LEN - at).min(rest.len());
                self.header[at..at + n].copy_from_slice(&rest[..n]);
                self.have += n as u8;
                i += n;
                if usize::from(self.have) == HEADER_LEN {
                    self.have = 0;
                    let (len, seq) = decode_header(self.header);
                    let continuation = self.continued;
                    self.continued = len == MAX_PAYLOAD;
                    (self.len, self.seq, self.left) = (len, seq, len);
                    self.head_have = 0;
                    self.head_want =
                        if continuation { 0 } else { len.min(usize::from(self.head_len)) as u8 };
                    if !continuation && self.head_want == 0 {
                        if len == 0 {
                            self.empty = self.empty.wrapping_add(1);
                        }
                        return (i, Some(self.current()));
                    }
                }
            }
        }
        (i, None)
    }

    fn current(&self) -> Head<'_> {
        Head { len: self.len, seq: self.seq, bytes: &self.head[..usize::from(self.head_have)] }
    }

    /// Empty packets walked so far (wrapping), continuations excluded.
    pub fn empty_packets(&self) -> u32 {
        self.empty
    }

    /// True when the stream is at a packet boundary (and not inside a
    /// payload split over 16 MiB packets).
    pub fn at_boundary(&self) -> bool {
        self.left == 0 && self.have == 0 && !self.continued
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ring::BufPool;

    fn ring_with(pool: &mut BufPool, data: &[u8]) -> Ring {
        let mut r = Ring::default();
        r.attach(pool);
        assert_eq!(r.push(data), data.len());
        r
    }

    #[test]
    fn take_packet_waits_for_whole_packet() {
        let mut pool = BufPool::new(64, 1);
        let mut r = ring_with(&mut pool, &[3, 0, 0, 1, b'a', b'b']);
        assert_eq!(take_packet(&mut r, 32), Ok(None));
        assert_eq!(r.push(b"c"), 1);
        assert_eq!(take_packet(&mut r, 32), Ok(Some((1, b"abc".to_vec()))));
        assert!(r.is_empty());
    }

    #[test]
    fn take_packet_refuses_claimed_length_over_limit_before_bytes_arrive() {
        let mut pool = BufPool::new(64, 1);
        let mut r = ring_with(&mut pool, &[0xFF, 0xFF, 0xFF, 0]);
        assert_eq!(take_packet(&mut r, 1 << 20), Err(Error::TooLarge));
        let mut r = ring_with(&mut pool, &[33, 0, 0, 0]);
        assert_eq!(take_packet(&mut r, 32), Err(Error::TooLarge));
    }

    #[test]
    fn lenenc_round_trip_at_every_width() {
        for v in [0u64, 250, 251, 0xFFFF, 0x1_0000, 0xFF_FFFF, 0x100_0000, u64::MAX] {
            let mut out = Vec::new();
            put_lenenc_int(&mut out, v);
            let mut r = Reader::new(&out);
            assert_eq!(r.lenenc_int(), Ok(v));
            assert_eq!(r.remaining(), 0);
        }
    }

    #[test]
    fn lenenc_rejects_null_and_err_markers_and_truncation() {
        assert_eq!(
            Reader::new(&[0xFB]).lenenc_int(),
            Err(Error::Malformed("length-encoded integer"))
        );
        assert!(Reader::new(&[0xFF]).lenenc_int().is_err());
        assert_eq!(Reader::new(&[0xFC, 1]).lenenc_int(), Err(Error::Truncated));
        assert_eq!(Reader::new(&[0xFE, 1, 2, 3]).lenenc_int(), Err(Error::Truncated));
        // A huge claimed string length with nothing behind it.
        assert_eq!(
            Reader::new(&[0xFE, 0, 0, 0, 0, 0, 0, 0, 0x80]).lenenc_bytes(),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn nul_str_needs_its_terminator() {
        let mut r = Reader::new(b"ab\0cd");
        assert_eq!(r.nul_str(), Ok(&b"ab"[..]));
        assert_eq!(r.nul_str(), Err(Error::Truncated));
        assert_eq!(r.rest(), b"cd");
    }

    fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        put_packet(&mut v, seq, payload);
        v
    }

    /// The command bytes a client stream carries: the first payload byte
    /// of each non-empty packet with sequence id 0.
    fn commands(f: &mut Framer, mut data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let (used, head) = f.feed(data);
            if let Some(h) = head.filter(|h| h.seq == 0 && h.len > 0) {
                out.push(h.bytes[0]);
            }
            data = &data[used..];
            if data.is_empty() {
                return out;
            }
        }
    }

    #[test]
    fn framer_finds_commands_across_arbitrary_splits() {
        let mut stream = packet(0, &[0x03, b'S', b'E', b'L']);
        stream.extend(packet(0, &[0x11, b'u', 0]));
        stream.extend(packet(0, &[0x1f]));
        for split in 0..=stream.len() {
            let mut f = Framer::new(1);
            let mut got = commands(&mut f, &stream[..split]);
            got.extend(commands(&mut f, &stream[split..]));
            assert_eq!(got, vec![0x03, 0x11, 0x1f], "split at {split}");
            assert!(f.at_boundary());
        }
    }

    #[test]
    fn framer_ignores_non_zero_sequence_and_continuations() {
        let mut f = Framer::new(1);
        // LOAD DATA LOCAL content packet (seq 2) whose first byte is 0x11.
        let mut stream = packet(2, &[0x11, 1, 2]);
        // A 16 MiB command followed by its continuation with seq 0 after wrap.
        let mut big =
            vec![MAX_PAYLOAD as u8, (MAX_PAYLOAD >> 8) as u8, (MAX_PAYLOAD >> 16) as u8, 0];
        big.push(0x03);
        big.resize(HEADER_LEN + MAX_PAYLOAD, b'x');
        stream.extend(&big);
        stream.extend(packet(0, &[0x11]));
        assert_eq!(commands(&mut f, &stream), vec![0x03]);
    }
}
