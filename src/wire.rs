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

use crate::ring::Ring;
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

/// Reads the header of the first packet in `ring` without consuming it:
/// `(payload_length, sequence_id)`, or `None` until 4 bytes are buffered.
pub fn peek_header(ring: &Ring) -> Option<(usize, u8)> {
    let mut h = [0u8; HEADER_LEN];
    let n = ring.peek(0, &mut h);
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

/// Takes one whole packet out of `ring` if it is entirely buffered.
///
/// Before relaying, every packet the proxy parses must fit in `max_payload`
/// (and so can never be split): a larger one is `TooLarge` and the caller
/// closes the connection. Returns `(sequence_id, payload)`.
pub fn take_packet(ring: &mut Ring, max_payload: usize) -> Result<Option<(u8, Vec<u8>)>, Error> {
    let Some((len, seq)) = peek_header(ring) else {
        return Ok(None);
    };
    if len > max_payload || len >= MAX_PAYLOAD {
        return Err(Error::TooLarge);
    }
    // `len + 4` cannot overflow: `len` < 2^24.
    if ring.len() < HEADER_LEN + len {
        return Ok(None);
    }
    let mut payload = vec![0u8; len];
    let copied = ring.peek(HEADER_LEN, &mut payload);
    debug_assert_eq!(copied, len);
    ring.consume(HEADER_LEN + len);
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
        let end = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or(Error::Truncated)?;
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

/// Follows packet boundaries in a relayed byte stream by reading headers
/// only, so the proxy knows where each command starts without buffering
/// whole packets. Feed it every byte that enters a ring, in order.
#[derive(Debug, Default, Clone)]
pub struct Framer {
    /// Header bytes collected so far for the packet being started.
    header: [u8; HEADER_LEN],
    have: u8,
    /// Payload bytes of the current packet still to come.
    left: usize,
    /// The current packet is the first of a command: its first payload byte
    /// is the command byte, not yet seen.
    want_command: bool,
    /// The previous packet was 0xFFFFFF long, so the next one continues it.
    continued: bool,
    /// Empty packets that were not continuations, walked so far (wrapping):
    /// the client's end of a LOCAL INFILE file.
    empty: u32,
}

impl Framer {
    /// Walks `data` (bytes just appended to the stream) until the first byte
    /// of a command payload. Returns how many bytes it walked and, if it
    /// stopped at a command, that command's byte (the walked count then ends
    /// just after it, so the command's header began 5 bytes earlier in the
    /// stream). Call again with the rest to continue.
    pub fn feed(&mut self, data: &[u8]) -> (usize, Option<u8>) {
        let mut i = 0;
        while i < data.len() {
            if self.want_command {
                self.want_command = false;
                self.left -= 1;
                return (i + 1, Some(data[i]));
            } else if self.left > 0 {
                let n = self.left.min(data.len() - i);
                self.left -= n;
                i += n;
            } else {
                self.header[usize::from(self.have)] = data[i];
                self.have += 1;
                i += 1;
                if usize::from(self.have) == HEADER_LEN {
                    self.have = 0;
                    let (len, seq) = decode_header(self.header);
                    // A command is a packet with sequence id 0 that does not
                    // continue a 16 MiB one; other packets (LOAD DATA LOCAL
                    // file contents, auth data, continuations) are opaque.
                    self.want_command = seq == 0 && !self.continued && len > 0;
                    if len == 0 && !self.continued {
                        self.empty = self.empty.wrapping_add(1);
                    }
                    self.continued = len == MAX_PAYLOAD;
                    self.left = len;
                }
            }
        }
        (i, None)
    }

    /// Empty packets walked so far (wrapping), continuations excluded.
    pub fn empty_packets(&self) -> u32 {
        self.empty
    }

    /// True when the stream is at a packet boundary.
    pub fn at_boundary(&self) -> bool {
        self.left == 0 && self.have == 0 && !self.want_command && !self.continued
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::BufPool;

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
        for v in [
            0u64,
            250,
            251,
            0xFFFF,
            0x1_0000,
            0xFF_FFFF,
            0x100_0000,
            u64::MAX,
        ] {
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
        assert_eq!(
            Reader::new(&[0xFE, 1, 2, 3]).lenenc_int(),
            Err(Error::Truncated)
        );
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

    fn commands(f: &mut Framer, mut data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let (used, command) = f.feed(data);
            out.extend(command);
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
            let mut f = Framer::default();
            let mut got = commands(&mut f, &stream[..split]);
            got.extend(commands(&mut f, &stream[split..]));
            assert_eq!(got, vec![0x03, 0x11, 0x1f], "split at {split}");
            assert!(f.at_boundary());
        }
    }

    #[test]
    fn framer_ignores_non_zero_sequence_and_continuations() {
        let mut f = Framer::default();
        // LOAD DATA LOCAL content packet (seq 2) whose first byte is 0x11.
        let mut stream = packet(2, &[0x11, 1, 2]);
        // A 16 MiB command followed by its continuation with seq 0 after wrap.
        let mut big = vec![
            MAX_PAYLOAD as u8,
            (MAX_PAYLOAD >> 8) as u8,
            (MAX_PAYLOAD >> 16) as u8,
            0,
        ];
        big.push(0x03);
        big.resize(HEADER_LEN + MAX_PAYLOAD, b'x');
        stream.extend(&big);
        stream.extend(packet(0, &[0x11]));
        assert_eq!(commands(&mut f, &stream), vec![0x03]);
    }
}
