//! Packet framing on bytes a peer controls: `wire::take_packet` and
//! `wire::peek_header` over a ring filled in pieces (so the data wraps),
//! `wire::Framer::feed` over arbitrary splits of a stream, and the
//! `wire::Reader` field codecs.
//!
//! Beyond "no panic", each part is checked against a plain model written
//! here: a byte queue for the ring, a whole-buffer walk for the framer, byte
//! counting for the reader.
//!
//! Input: `[ring size] [max payload] [split seed] stream...`

#![no_main]

use libfuzzer_sys::fuzz_target;
use myroute::protocol::ring::{BufPool, Ring};
use myroute::protocol::wire::{self, Framer, Reader, HEADER_LEN, MAX_PAYLOAD};
use std::collections::VecDeque;

/// A tiny deterministic generator for split points and read choices.
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        // xorshift32; the state must not be 0.
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() as usize) % n.max(1)
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let (ring_sel, max_sel, seed) = (data[0], data[1], data[2]);
    let stream = &data[3..];
    let cap = if ring_sel & 0x80 != 0 {
        stream.len() + HEADER_LEN
    } else {
        HEADER_LEN + 2 * usize::from(ring_sel & 0x7F)
    };
    let max_payload = if max_sel == 0xFF { MAX_PAYLOAD } else { 4 * usize::from(max_sel) };
    ring_against_model(stream, cap, max_payload, &mut Rng(u32::from(seed) | 0x100));
    framer_against_model(stream, &mut Rng(u32::from(seed) << 8 | 0x10001));
    reader_consumes_what_it_returns(stream, &mut Rng(u32::from(seed) << 16 | 0x1_0001));
});

fn ring_contents(r: &Ring) -> Vec<u8> {
    let (a, b) = r.as_slices();
    let mut v = a.to_vec();
    v.extend_from_slice(b);
    v
}

/// Pushes the stream into a ring in random pieces and takes packets out as
/// they complete, as the proxy does during login; a `VecDeque` says what
/// each call must return.
fn ring_against_model(stream: &[u8], cap: usize, max_payload: usize, rng: &mut Rng) {
    let mut pool = BufPool::new(cap, 1);
    let mut ring = Ring::default();
    ring.attach(&mut pool);
    let mut model: VecDeque<u8> = VecDeque::new();
    let mut rest = stream;
    loop {
        // Push a piece (possibly empty, possibly more than fits).
        let want = rng.below(rest.len() + 1);
        let pushed = ring.push(&rest[..want]);
        assert_eq!(pushed, want.min(cap - model.len()), "push took the free room");
        model.extend(&rest[..pushed]);
        rest = &rest[pushed..];
        assert!(ring.len() <= ring.capacity());
        assert_eq!(ring.capacity(), cap);
        assert_eq!(ring.is_full(), model.len() == cap);
        assert_eq!(ring_contents(&ring), model.iter().copied().collect::<Vec<_>>());
        if let Some(i) = (!model.is_empty()).then(|| rng.below(model.len())) {
            assert_eq!(ring.byte_at(i), Some(model[i]));
        }
        assert_eq!(ring.byte_at(model.len()), None);

        // Take whole packets, checking each answer against the model.
        let mut progressed = pushed > 0;
        loop {
            let header = (model.len() >= HEADER_LEN).then(|| {
                let len = usize::from(model[0])
                    | usize::from(model[1]) << 8
                    | usize::from(model[2]) << 16;
                (len, model[3])
            });
            assert_eq!(wire::peek_header(&ring), header);
            let got = wire::take_packet(&mut ring, max_payload);
            let Some((len, seq)) = header else {
                assert_eq!(got, Ok(None));
                break;
            };
            if len > max_payload || len >= MAX_PAYLOAD {
                assert_eq!(got, Err(wire::Error::TooLarge));
                return; // the proxy closes the connection here
            }
            if model.len() < HEADER_LEN + len {
                assert_eq!(got, Ok(None));
                assert_eq!(ring.len(), model.len(), "nothing consumed while incomplete");
                break;
            }
            let payload: Vec<u8> = model.drain(..HEADER_LEN + len).skip(HEADER_LEN).collect();
            assert_eq!(got, Ok(Some((seq, payload))));
            progressed = true;
        }
        if rest.is_empty() || !progressed && ring.is_full() {
            // Done, or a packet larger than the ring that can never complete
            // (the proxy's limit is the ring size, so it refuses it above).
            break;
        }
        // Sometimes give the storage back while empty and attach again, as
        // the event loop does between reads.
        if ring.is_empty() && rng.below(2) == 0 {
            ring.release_if_empty(&mut pool);
            assert_eq!(ring.capacity(), 0);
            ring.attach(&mut pool);
        }
    }
}

/// Commands a framer reports for `chunks` fed in order.
fn framer_commands<'a>(f: &mut Framer, chunks: impl Iterator<Item = &'a [u8]>) -> Vec<(usize, u8)> {
    let mut out = Vec::new();
    let mut at = 0;
    for chunk in chunks {
        let mut data = chunk;
        while !data.is_empty() {
            let (used, head) = f.feed(data);
            assert!(used >= 1 && used <= data.len(), "feed walks forward");
            // A command: the first byte of a non-empty packet with sequence
            // id 0 that does not continue a 16 MiB one.
            let command = head.filter(|h| h.seq == 0 && h.len > 0).map(|h| h.bytes[0]);
            if let Some(c) = command {
                assert_eq!(c, data[used - 1], "the command byte is the last walked");
                out.push((at + used - 1, c));
            }
            at += used;
            data = &data[used..];
        }
    }
    out
}

/// The framer, fed the stream in random pieces, finds exactly the commands
/// (and boundary) that a walk over the whole buffer finds.
fn framer_against_model(stream: &[u8], rng: &mut Rng) {
    // Model: walk headers over the whole buffer.
    let mut expected = Vec::new();
    let mut pos = 0;
    let mut continued = false;
    while pos + HEADER_LEN <= stream.len() {
        let len = usize::from(stream[pos])
            | usize::from(stream[pos + 1]) << 8
            | usize::from(stream[pos + 2]) << 16;
        let is_command = stream[pos + 3] == 0 && !continued && len > 0;
        if is_command && pos + HEADER_LEN < stream.len() {
            expected.push((pos + HEADER_LEN, stream[pos + HEADER_LEN]));
        }
        continued = len == MAX_PAYLOAD;
        pos += HEADER_LEN + len;
    }
    let boundary = pos == stream.len() && !continued;

    let mut whole = Framer::new(1);
    assert_eq!(framer_commands(&mut whole, std::iter::once(stream)), expected);
    assert_eq!(whole.at_boundary(), boundary);

    let mut pieces = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let n = 1 + rng.below(rest.len().min(9));
        pieces.push(&rest[..n]);
        rest = &rest[n..];
    }
    let mut split = Framer::new(1);
    assert_eq!(framer_commands(&mut split, pieces.into_iter()), expected);
    assert_eq!(split.at_boundary(), boundary);
}

/// Every read either fails or consumes exactly the bytes its result stands
/// for; `int<lenenc>` values survive a round trip through the writer.
fn reader_consumes_what_it_returns(stream: &[u8], rng: &mut Rng) {
    let mut r = Reader::new(stream);
    while r.remaining() > 0 {
        let before = r.remaining();
        let consumed = match rng.below(7) {
            0 => match r.lenenc_int() {
                Ok(v) => {
                    let mut enc = Vec::new();
                    wire::put_lenenc_int(&mut enc, v);
                    let mut again = Reader::new(&enc);
                    assert_eq!(again.lenenc_int(), Ok(v));
                    assert_eq!(again.remaining(), 0);
                    // Non-minimal encodings are accepted, so compare widths
                    // by the first byte only.
                    let width = match stream[stream.len() - before] {
                        0..=0xFA => 1,
                        0xFC => 3,
                        0xFD => 4,
                        _ => 9,
                    };
                    Some(width)
                }
                Err(_) => None,
            },
            1 => match r.lenenc_bytes() {
                Ok(b) => {
                    let prefix = match stream[stream.len() - before] {
                        0..=0xFA => 1,
                        0xFC => 3,
                        0xFD => 4,
                        _ => 9,
                    };
                    Some(prefix + b.len())
                }
                Err(_) => None,
            },
            2 => match r.nul_str() {
                Ok(s) => {
                    assert!(!s.contains(&0));
                    Some(s.len() + 1)
                }
                Err(e) => {
                    assert_eq!(e, wire::Error::Truncated);
                    assert_eq!(r.remaining(), before, "a failed nul_str consumes nothing");
                    None
                }
            },
            3 => r.u8().ok().map(|_| 1),
            4 => r.u16().ok().map(|_| 2),
            5 => r.u32().ok().map(|_| 4),
            _ => {
                let n = rng.below(before + 2);
                match r.bytes(n) {
                    Ok(b) => {
                        assert_eq!(b.len(), n);
                        Some(n)
                    }
                    Err(_) => {
                        assert!(n > before);
                        None
                    }
                }
            }
        };
        match consumed {
            Some(n) => assert_eq!(before - r.remaining(), n),
            None => {
                assert!(r.remaining() <= before);
                break;
            }
        }
    }
    let left = r.remaining();
    assert_eq!(r.rest().len(), left);
    assert_eq!(r.remaining(), 0);
}
