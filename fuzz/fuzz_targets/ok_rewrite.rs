//! The OK that ends a login over TLS (`handshake::ok_with_info`): myroute
//! replaces the backend's human-readable info with MariaDB's TLS proof
//! (0x01 and 64 hex digits) and keeps everything else the backend said.
//!
//! OK packets are read here by a parser of this target's own (MySQL
//! "OK_Packet"): 0x00, affected rows and last insert id as length-encoded
//! integers (0xFB and 0xFF are not integers; wider encodings than needed
//! are accepted), status, warnings; then with CLIENT_SESSION_TRACK the info
//! as a length-encoded string when anything follows, and with
//! SERVER_SESSION_STATE_CHANGED (0x4000) in the status the length-encoded
//! session-state block, which must be there; without CLIENT_SESSION_TRACK
//! whatever follows the warnings is the old info, dropped unread. Bytes
//! after the last field are ignored. An EOF-style 0xFE header is not an OK.
//!
//! Checked: never a panic; `ok_with_info` succeeds exactly when that parser
//! accepts the packet, and a non-0x00 first byte is `Malformed`; its output
//! has the input's affected rows, insert id, status, warnings and session
//! state, `info` as a length-encoded info, nothing after the last field,
//! every integer in its shortest encoding, and rewriting it again with the
//! same info changes nothing; an OK built from fuzzer-chosen fields
//! (session state included, integers in any width) is always accepted.
//!
//! Input: `[4 caps] [mode] [2 info length] info... rest...`: the OK is
//! `rest` itself (mode 0x80) or built from the fields read from it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use myroute::protocol::constants::{caps, status};
use myroute::protocol::handshake;
use myroute::protocol::wire::Error;

#[path = "common/packets.rs"]
mod packets;
use packets::Cur;
#[path = "common/input.rs"]
mod input;
use input::Input;

/// An OK packet's fields, as this target reads them.
#[derive(Debug, PartialEq, Eq)]
struct OkFields<'a> {
    affected: u64,
    insert_id: u64,
    status: u16,
    warnings: u16,
    /// With CLIENT_SESSION_TRACK: the info, if anything follows the
    /// warnings. Without it: `None`, the old info being in `tail`.
    info: Option<&'a [u8]>,
    /// The session-state block (its length excluded).
    state: Option<&'a [u8]>,
    /// What follows the last field read.
    tail: &'a [u8],
}

fn parse_ok(p: &[u8], track: bool) -> Option<OkFields<'_>> {
    let mut c = Cur(p);
    if c.uint(1)? != 0x00 {
        return None;
    }
    let affected = c.lenenc()?;
    let insert_id = c.lenenc()?;
    let status = c.uint(2)? as u16;
    let warnings = c.uint(2)? as u16;
    let (mut info, mut state) = (None, None);
    if track {
        if !c.0.is_empty() {
            info = Some(c.lenenc_str()?);
        }
        if status & status::SESSION_STATE_CHANGED != 0 {
            state = Some(c.lenenc_str()?);
        }
    }
    Some(OkFields { affected, insert_id, status, warnings, info, state, tail: c.0 })
}

/// `int<lenenc>` in its shortest form, written out here.
fn put_int(out: &mut Vec<u8>, v: u64) {
    let (tag, n) = match v {
        0..=250 => return out.push(v as u8),
        251..=0xFFFF => (0xFC, 2),
        0x1_0000..=0xFF_FFFF => (0xFD, 3),
        _ => (0xFE, 8),
    };
    out.push(tag);
    out.extend_from_slice(&v.to_le_bytes()[..n]);
}

/// `int<lenenc>` in the form `width` chooses: 0 the shortest, else a
/// wider one (still valid, if not usual).
fn put_int_as(out: &mut Vec<u8>, v: u64, width: u8) {
    let (tag, n) = match width {
        1 if v <= 0xFFFF => (0xFC, 2),
        1 | 2 if v <= 0xFF_FFFF => (0xFD, 3),
        1..=3 => (0xFE, 8),
        _ => return put_int(out, v),
    };
    out.push(tag);
    out.extend_from_slice(&v.to_le_bytes()[..n]);
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    put_int(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// The rewritten OK as it must come out.
fn expected(ok: &OkFields, info: &[u8]) -> Vec<u8> {
    let mut p = vec![0x00];
    put_int(&mut p, ok.affected);
    put_int(&mut p, ok.insert_id);
    p.extend_from_slice(&ok.status.to_le_bytes());
    p.extend_from_slice(&ok.warnings.to_le_bytes());
    put_str(&mut p, info);
    if let Some(state) = ok.state {
        put_str(&mut p, state);
    }
    p
}

/// A u64 of one of the four lenenc sizes.
fn int_field(inp: &mut Input) -> u64 {
    let size = inp.u8().unwrap_or(0);
    let mut b = [0u8; 8];
    let got = inp.bytes(8);
    b[..got.len()].copy_from_slice(got);
    let v = u64::from_le_bytes(b);
    match size & 3 {
        0 => v % 251,
        1 => v & 0xFFFF,
        2 => v & 0xFF_FFFF,
        _ => v,
    }
}

fn u16_field(inp: &mut Input) -> u16 {
    let b = inp.bytes(2);
    u16::from_le_bytes([b.first().copied().unwrap_or(0), b.get(1).copied().unwrap_or(0)])
}

fn check(ok: &[u8], caps: u32, info: &[u8]) {
    let track = caps & caps::SESSION_TRACK != 0;
    let got = handshake::ok_with_info(ok, caps, info);
    let model = parse_ok(ok, track);
    let out = match (got, model) {
        (Ok(out), Some(m)) => {
            assert_eq!(out, expected(&m, info), "input fields {m:?}");
            out
        }
        (Err(e), None) => {
            match ok.first() {
                None => assert_eq!(e, Error::Truncated),
                Some(0) => {}
                Some(_) => assert_eq!(e, Error::Malformed("OK packet")),
            }
            return;
        }
        (Ok(_), None) => panic!("accepted an OK this target cannot read"),
        (Err(e), Some(m)) => panic!("refused ({e}) a readable OK: {m:?}"),
    };
    let m = parse_ok(ok, track).unwrap();
    // The output read back: the same fields, `info` as its info.
    let back = parse_ok(&out, track).expect("the rewritten OK parses");
    assert_eq!(
        (back.affected, back.insert_id, back.status, back.warnings),
        (m.affected, m.insert_id, m.status, m.warnings)
    );
    assert_eq!(back.state, m.state);
    if track {
        assert_eq!(back.info, Some(info));
        assert!(back.tail.is_empty());
    } else {
        let mut c = Cur(back.tail);
        assert_eq!(c.lenenc_str(), Some(info));
        assert!(c.0.is_empty());
    }
    assert_eq!(handshake::ok_with_info(&out, caps, info).as_deref(), Ok(&out[..]));
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let c = inp.bytes(4);
    if c.len() < 4 {
        return;
    }
    let mut caps = u32::from_le_bytes(c.try_into().unwrap());
    // 0x01 CLIENT_SESSION_TRACK, 0x02 SERVER_SESSION_STATE_CHANGED, 0x04
    // the old info is there, 0x08 integers wider than needed, 0x10 an
    // EOF-style 0xFE header, 0x20 bytes after the last field, 0x40 the
    // info is myroute's (0x01 and 64 hex digits), 0x80 the OK is the
    // rest of the input as it is.
    let mode = inp.u8().unwrap_or(0);
    let n = usize::from(u16_field(&mut inp));
    let info = if mode & 0x40 != 0 {
        let mut proof = vec![0x01];
        for b in inp.bytes(32) {
            proof.extend_from_slice(format!("{b:02X}").as_bytes());
        }
        proof.resize(65, b'0');
        proof
    } else {
        inp.bytes(n).to_vec()
    };
    if mode & 0x80 != 0 {
        // Whatever the flags say, with and without session tracking.
        check(inp.0, caps, &info);
        check(inp.0, caps ^ caps::SESSION_TRACK, &info);
        return;
    }

    if mode & 0x01 != 0 {
        caps |= caps::SESSION_TRACK;
    } else {
        caps &= !caps::SESSION_TRACK;
    }
    let track = caps & caps::SESSION_TRACK != 0;
    let affected = int_field(&mut inp);
    let insert_id = int_field(&mut inp);
    let widths = inp.u8().unwrap_or(0);
    let mut st = u16_field(&mut inp);
    if mode & 0x02 != 0 {
        st |= status::SESSION_STATE_CHANGED;
    } else {
        st &= !status::SESSION_STATE_CHANGED;
    }
    let warnings = u16_field(&mut inp);
    let old_len = usize::from(inp.u8().unwrap_or(0));
    let old_info = inp.bytes(old_len);
    let state_len = usize::from(u16_field(&mut inp));
    let state = inp.bytes(state_len);
    let trailing = inp.0;

    let mut ok = vec![if mode & 0x10 != 0 { 0xFE } else { 0x00 }];
    let wide = |w: u8| if mode & 0x08 != 0 { w & 3 } else { 0 };
    put_int_as(&mut ok, affected, wide(widths));
    put_int_as(&mut ok, insert_id, wide(widths >> 2));
    ok.extend_from_slice(&st.to_le_bytes());
    ok.extend_from_slice(&warnings.to_le_bytes());
    // With session state the info is always sent, if empty.
    let with_state = track && st & status::SESSION_STATE_CHANGED != 0;
    let has_info = mode & 0x04 != 0 || with_state;
    if has_info {
        put_int_as(&mut ok, old_info.len() as u64, wide(widths >> 4));
        ok.extend_from_slice(old_info);
    }
    if with_state {
        put_int_as(&mut ok, state.len() as u64, wide(widths >> 6));
        ok.extend_from_slice(state);
    }
    // Trailing bytes only where they cannot be read as a field.
    if mode & 0x20 != 0 && (has_info || !track) {
        ok.extend_from_slice(trailing);
    }

    let got = handshake::ok_with_info(&ok, caps, &info);
    if mode & 0x10 != 0 {
        assert_eq!(got, Err(Error::Malformed("OK packet")), "an EOF-style header is not an OK");
        return;
    }
    let out = got.expect("a well-formed OK is accepted");
    let back = parse_ok(&out, track).expect("the rewritten OK parses");
    assert_eq!((back.affected, back.insert_id), (affected, insert_id));
    assert_eq!((back.status, back.warnings), (st, warnings));
    assert_eq!(back.state, with_state.then_some(state));
    check(&ok, caps, &info);
});
