//! The relaying session tracker (`track::Tracker`): client command bytes
//! interleaved with the backend's byte stream, as the event loop passes
//! them.
//!
//! The script is a sequence of segments: backend bytes (raw, or packets
//! the driver frames: OK, EOF, ERR, column counts and definitions, rows,
//! LOCAL INFILE requests, COM_STMT_PREPARE_OK, 16 MiB packets and their
//! continuations), each followed by the commands the client sends before
//! the next segment. The same script is run three times: each run of
//! bytes in one call, byte by byte (16 MiB payloads in large steps), and in
//! fuzzer-chosen chunk sizes. At every segment end the three trackers must
//! agree: same `idle()`, `at_boundary()`, `files_requested()` and the same
//! state as `Debug` shows it. Also checked: no panic; `idle()` implies
//! `at_boundary()`; once the tracker has lost track, it is never idle again.
//!
//! Input: `caps cuts op...` (see `Op::read`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use myroute::protocol::constants::caps;
use myroute::protocol::wire::{put_lenenc_bytes, put_lenenc_int, MAX_PAYLOAD};
use myroute::sessions::track::Tracker;

/// Operations per script, so one input cannot run for long.
const MAX_OPS: usize = 256;
/// 16 MiB packets per script.
const MAX_JUMBO: usize = 2;
/// The bulk of 16 MiB payloads: skipped without being read when the
/// framing is followed, so fed in large steps. 0xFF rather than zeros: a
/// stream the fuzzer has knocked off its packet boundaries then reads
/// these bytes as headers of 16 MiB packets, not as millions of empty
/// ones, which would make a run take seconds.
static FILL: [u8; 1 << 16] = [0xFF; 1 << 16];

/// A piece of the backend stream: bytes, or that many `FILL` bytes.
#[derive(Debug, Clone)]
enum Piece {
    Bytes(Vec<u8>),
    Fill(usize),
}

/// Backend bytes, then the commands sent after them.
#[derive(Debug, Default)]
struct Segment {
    pieces: Vec<Piece>,
    commands: Vec<u8>,
}

#[path = "common/input.rs"]
mod input;
use input::Input;

/// Builds the backend stream, numbering packets.
struct Builder {
    segments: Vec<Segment>,
    seq: u8,
    jumbos: usize,
    /// DEPRECATE_EOF negotiated: how whole result sets are framed.
    modern: bool,
}

impl Builder {
    fn cur(&mut self) -> &mut Segment {
        self.segments.last_mut().expect("one segment at least")
    }

    /// Appends bytes to the segment (to its last run of bytes, if any).
    fn raw(&mut self, b: Vec<u8>) {
        match self.cur().pieces.last_mut() {
            Some(Piece::Bytes(v)) => v.extend_from_slice(&b),
            _ => self.cur().pieces.push(Piece::Bytes(b)),
        }
    }

    fn packet(&mut self, payload: &[u8]) {
        let n = payload.len();
        let mut v = vec![n as u8, (n >> 8) as u8, (n >> 16) as u8, self.seq];
        self.seq = self.seq.wrapping_add(1);
        v.extend_from_slice(payload);
        self.raw(v);
    }

    /// A packet of `len` bytes (up to 0xFFFFFF) whose first bytes are
    /// `head` and the rest `FILL`.
    fn long_packet(&mut self, len: usize, head: &[u8]) {
        let head = &head[..head.len().min(len)];
        let mut v = vec![len as u8, (len >> 8) as u8, (len >> 16) as u8, self.seq];
        self.seq = self.seq.wrapping_add(1);
        v.extend_from_slice(head);
        self.raw(v);
        if len > head.len() {
            self.cur().pieces.push(Piece::Fill(len - head.len()));
        }
    }

    fn command(&mut self, cmd: u8) {
        // A command ends the backend bytes before it: later bytes go in a
        // new segment. Responses start at sequence id 1.
        if !self.cur().pieces.is_empty() || self.segments.len() == 1 {
            self.segments.push(Segment::default());
        }
        let prev = self.segments.len() - 2;
        self.segments[prev].commands.push(cmd);
        self.seq = 1;
    }
}

/// OK_Packet (or, with header 0xFE, the terminator under DEPRECATE_EOF).
fn ok(header: u8, affected: u64, status: u16) -> Vec<u8> {
    let mut p = vec![header];
    put_lenenc_int(&mut p, affected);
    put_lenenc_int(&mut p, 0);
    p.extend_from_slice(&status.to_le_bytes());
    p.extend_from_slice(&[0, 0]);
    p
}

/// Status flags from a byte: IN_TRANS, AUTOCOMMIT, MORE_RESULTS,
/// CURSOR_EXISTS, LAST_ROW_SENT where its bits say.
fn status(b: u8) -> u16 {
    let mut s = 0;
    for (bit, flag) in [(0, 0x01), (1, 0x02), (2, 0x08), (3, 0x40), (4, 0x80)] {
        if b >> bit & 1 != 0 {
            s |= flag;
        }
    }
    s | u16::from(b >> 5) << 8
}

fn column_definition(name: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    put_lenenc_bytes(&mut p, b"def");
    put_lenenc_bytes(&mut p, b"app");
    put_lenenc_bytes(&mut p, b"t");
    put_lenenc_bytes(&mut p, b"t");
    put_lenenc_bytes(&mut p, name);
    put_lenenc_bytes(&mut p, name);
    p.extend_from_slice(&[0x0C, 0x2D, 0, 0, 1, 0, 0, 0xFD, 0, 0, 0, 0, 0]);
    p
}

/// Reads one operation into the builder; `None` at the end of the input.
fn op(inp: &mut Input, b: &mut Builder) -> Option<()> {
    let code = inp.u8()?;
    let arg = inp.u8().unwrap_or(0);
    match code % 16 {
        // A command byte (mostly the common ones).
        0 | 1 => {
            let cmd = match code >> 4 {
                0 => arg,
                1..=3 => 0x03, // COM_QUERY
                4 => 0x16,     // COM_STMT_PREPARE
                5 | 6 => 0x17, // COM_STMT_EXECUTE
                7 => 0x1C,     // COM_STMT_FETCH
                8 => 0x04,     // COM_FIELD_LIST
                9 => 0x09,     // COM_STATISTICS
                10 => 0x0E,    // COM_PING
                11 => 0x19,    // COM_STMT_CLOSE
                12 => 0x18,    // COM_STMT_SEND_LONG_DATA
                13 => 0x01,    // COM_QUIT
                14 => 0x1B,    // COM_SET_OPTION
                _ => arg,
            };
            // `arg` bit 7: the same command several times in a row.
            let times =
                if arg & 0x80 != 0 && code >> 4 != 0 { 1 + usize::from(arg & 7) } else { 1 };
            for _ in 0..times {
                b.command(cmd);
            }
        }
        // Raw backend bytes.
        2 => {
            let bytes = inp.bytes(usize::from(arg));
            b.raw(bytes.to_vec());
        }
        // A packet with a fuzzer-chosen payload.
        3 => {
            let payload = inp.bytes(usize::from(arg));
            b.packet(&payload);
        }
        // OK_Packet; `arg` the status, affected rows from `code`.
        4 => b.packet(&ok(0x00, u64::from(code >> 4) * 100, status(arg))),
        // EOF_Packet.
        5 => {
            let s = status(arg).to_le_bytes();
            b.packet(&[0xFE, 0, 0, s[0], s[1]]);
        }
        // OK_Packet with the 0xFE header.
        6 => b.packet(&ok(0xFE, 0, status(arg))),
        // ERR_Packet, or (`code` bit 0) a MariaDB progress report.
        7 if code & 1 != 0 => b.packet(b"\xff\xff\xff\x01\x01\x02\x10\x27\x00\x04copy"),
        7 => b.packet(b"\xff\x7a\x04#42S02Table 'app.x' doesn't exist"),
        // Column count; with `arg` bit 7 the metadata-follows byte
        // (`code` bit 4: 1, else 0).
        8 => {
            let mut p = Vec::new();
            put_lenenc_int(
                &mut p,
                match arg & 0x7F {
                    0x7F => 300,
                    n => u64::from(n % 6),
                },
            );
            if arg & 0x80 != 0 {
                p.push(code >> 4 & 1);
            }
            b.packet(&p);
        }
        // Column definitions.
        9 => {
            for i in 0..=arg % 4 {
                b.packet(&column_definition(&[b'a' + i]));
            }
        }
        // A text row: 1 to 3 values, each a length byte (mod 8) and its bytes.
        10 => {
            let mut p = Vec::new();
            for _ in 0..=arg % 3 {
                let n = usize::from(inp.u8().unwrap_or(0) % 8);
                put_lenenc_bytes(&mut p, &inp.bytes(n));
            }
            b.packet(&p);
        }
        // A binary row.
        11 => b.packet(&[0x00, 0x00, arg, 0, 0, 0]),
        // LOCAL INFILE request.
        12 => b.packet(b"\xfb/tmp/data.csv"),
        // COM_STMT_PREPARE_OK: columns and parameters from `arg`, the
        // metadata byte from `code`.
        13 => {
            let mut p = vec![0x00, 1, 0, 0, 0];
            p.extend_from_slice(&u16::from(arg & 7).to_le_bytes());
            p.extend_from_slice(&u16::from(arg >> 3 & 7).to_le_bytes());
            p.extend_from_slice(&[0, 0, 0]);
            if code & 0x10 != 0 {
                p.push(code >> 5 & 1);
            }
            b.packet(&p);
        }
        // A 16 MiB packet (head from the input), then its continuation of
        // `arg` bytes (`arg` 0xFF: another 16 MiB one, then an empty one).
        14 => {
            if b.jumbos < MAX_JUMBO {
                b.jumbos += 1;
                let head = inp.bytes(24);
                b.long_packet(MAX_PAYLOAD, &head);
                if arg == 0xFF {
                    b.long_packet(MAX_PAYLOAD, &[]);
                    b.packet(&[]);
                } else {
                    b.long_packet(usize::from(arg), &[0xFE, 0, 0, 2, 0]);
                }
            }
        }
        // A whole text result set: `arg & 3` columns, `arg >> 2 & 7` rows,
        // the terminator's status from `code`.
        _ => {
            let ncols = 1 + arg % 3;
            b.packet(&[ncols]);
            for i in 0..ncols {
                b.packet(&column_definition(&[b'c' + i]));
            }
            let st = status(code >> 4 | 2);
            let eof = {
                let s = st.to_le_bytes();
                [0xFE, 0, 0, s[0], s[1]]
            };
            // Framing as the capabilities say: the driver knows them.
            let modern = b.modern;
            if !modern {
                b.packet(&eof);
            }
            for r in 0..arg >> 2 & 7 {
                let mut p = Vec::new();
                for c in 0..ncols {
                    put_lenenc_bytes(&mut p, &[b'0' + r, b'0' + c]);
                }
                b.packet(&p);
            }
            if modern {
                b.packet(&ok(0xFE, 0, st));
            } else {
                b.packet(&eof);
            }
        }
    }
    Some(())
}

/// With TRACKER_TRACE set in the environment, the state after each
/// segment is printed (for reading what a seed or a crash input does).
fn tracing() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("TRACKER_TRACE").is_some())
}

/// How a run splits each segment.
#[derive(Clone, Copy)]
enum Split {
    Whole,
    Bytes,
    Chunks(u8),
}

/// Feeds `bytes` to the tracker in pieces of `size()`.
fn feed(t: &mut Tracker, bytes: &[u8], size: &mut impl FnMut() -> usize) {
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = size().min(rest.len());
        t.backend(&rest[..n]);
        rest = &rest[n..];
    }
}

/// The observable state and the whole state.
type Snapshot = (bool, bool, u32, String);

fn run((capabilities, ext): (u32, u32), segments: &[Segment], split: Split) -> Vec<Snapshot> {
    let mut t = Tracker::new(capabilities, ext);
    let mut x = match split {
        Split::Chunks(c) => u32::from(c) | 0x100,
        _ => 1,
    };
    let mut snaps = Vec::with_capacity(segments.len());
    let mut lost = false;
    for seg in segments {
        for piece in &seg.pieces {
            match (piece, split) {
                (Piece::Bytes(b), Split::Whole) => t.backend(b),
                (Piece::Fill(n), Split::Whole) => {
                    let mut left = *n;
                    while left > 0 {
                        let k = left.min(FILL.len());
                        t.backend(&FILL[..k]);
                        left -= k;
                    }
                }
                (Piece::Bytes(b), Split::Bytes) => feed(&mut t, b, &mut || 1),
                (Piece::Fill(n), Split::Bytes) => {
                    // Small steps at both ends, large ones in the middle.
                    let mut left = *n;
                    let mut i = 0usize;
                    while left > 0 {
                        let step = if i < 64 || left <= 64 { 1 } else { 65_521 };
                        let k = step.min(left).min(FILL.len());
                        t.backend(&FILL[..k]);
                        left -= k;
                        i += 1;
                    }
                }
                (piece, Split::Chunks(c)) => {
                    let max = 1 + usize::from(c & 63);
                    let mut size = || {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        1 + x as usize % max
                    };
                    match piece {
                        Piece::Bytes(b) => feed(&mut t, b, &mut size),
                        Piece::Fill(n) => {
                            let mut left = *n;
                            let mut first = true;
                            while left > 0 {
                                // The first step in chunk sizes, then large.
                                let k = if first { size() } else { 40_000 }.min(left);
                                t.backend(&FILL[..k]);
                                left -= k;
                                first = false;
                            }
                        }
                    }
                }
            }
        }
        let shown = format!("{t:?}");
        let snap = (t.idle(), t.at_boundary(), t.files_requested(), shown);
        if snap.0 {
            assert!(snap.1, "idle but not at a boundary: {t:?}");
        }
        if lost {
            assert!(!snap.0, "idle after losing track: {t:?}");
        }
        lost |= snap.3.contains("unknown: true");
        snaps.push(snap);
        for &c in &seg.commands {
            t.command(c);
            if lost {
                assert!(!t.idle());
            }
        }
    }
    snaps
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let (Some(c), Some(cuts)) = (inp.u8(), inp.u8()) else {
        return;
    };
    let mut capabilities = caps::PROTOCOL_41 | caps::MULTI_RESULTS | caps::MULTI_STATEMENTS;
    if c & 1 != 0 {
        capabilities |= caps::DEPRECATE_EOF;
    }
    if c & 2 != 0 {
        capabilities |= caps::OPTIONAL_RESULTSET_METADATA;
    }
    if c & 4 != 0 {
        capabilities |= caps::PS_MULTI_RESULTS;
    }
    let mut ext = 0;
    if c & 8 != 0 {
        ext |= myroute::protocol::constants::ext::PROGRESS;
    }
    if c & 16 != 0 {
        ext |= myroute::protocol::constants::ext::CACHE_METADATA;
    }
    let capabilities = (capabilities, ext);
    let mut b =
        Builder { segments: vec![Segment::default()], seq: 1, jumbos: 0, modern: c & 1 != 0 };
    for _ in 0..MAX_OPS {
        if op(&mut inp, &mut b).is_none() {
            break;
        }
    }
    let whole = run(capabilities, &b.segments, Split::Whole);
    if tracing() {
        for (seg, snap) in b.segments.iter().zip(&whole) {
            let bytes: usize = seg
                .pieces
                .iter()
                .map(|p| match p {
                    Piece::Bytes(v) => v.len(),
                    Piece::Fill(n) => *n,
                })
                .sum();
            eprintln!(
                "{bytes} backend bytes -> idle={} at_boundary={} files={}; then commands {:02x?}",
                snap.0, snap.1, snap.2, seg.commands
            );
        }
    }
    let bytes = run(capabilities, &b.segments, Split::Bytes);
    let chunks = run(capabilities, &b.segments, Split::Chunks(cuts));
    for (i, w) in whole.iter().enumerate() {
        assert_eq!(&bytes[i], w, "byte by byte differs after segment {i}");
        assert_eq!(&chunks[i], w, "chunks differ after segment {i}");
    }
});
