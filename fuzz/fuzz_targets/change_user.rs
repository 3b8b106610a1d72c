//! COM_CHANGE_USER: `handshake::parse_change_user` (what a client sends
//! myroute), `handshake::encode_change_user` (what myroute sends a backend)
//! and the change of user on the client's leg (`Accept::change_user`),
//! with fuzzer-chosen session capabilities (PLUGIN_AUTH_LENENC_DATA,
//! PLUGIN_AUTH and CONNECT_ATTRS on or off).
//!
//! Checked:
//! - `parse_change_user` never panics and agrees with a reader written here
//!   (0x11, user, auth data length-encoded or with a one-byte length,
//!   database; then a two-byte character set if two bytes are left, one
//!   above 255 keeping the session's; the plugin name with PLUGIN_AUTH and
//!   the attributes with CONNECT_ATTRS when bytes are left, the attributes
//!   checked as key/value pairs); capabilities, extended capabilities and
//!   maximum packet size are the session's;
//! - `encode_change_user` then `parse_change_user` gives back the user, the
//!   token, the database (an empty one as none), the character set, the
//!   plugin (mysql_native_password with PLUGIN_AUTH, else none) and the
//!   attributes with CONNECT_ATTRS (else none); a prefix of it never parses
//!   to another user, token or database; a parsed packet encoded again
//!   parses to the same fields;
//! - `Accept::change_user` zeroes the payload; for a packet that does not
//!   parse it writes ERR 1043 at sequence 1; else exactly one
//!   AuthSwitchRequest at sequence 1 (0xFE, "mysql_native_password", NUL,
//!   the 20-byte scramble, NUL); the client's answer at sequence 2 is
//!   `Verified` with sequence 3 for the OK when it is the right token for
//!   the scramble (the new user's fields kept, the token wiped), else
//!   `Refused` with ERR 1045 at sequence 3; an answer at another sequence
//!   id gets ERR 1156.
//!
//! Input: `[4 session caps] [session charset] [mode] [who] [20 scramble]
//! rest...`: the payload is `rest` itself (mode 0x01) or encoded from
//! fields read from it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use myroute::protocol::accept::{Accept, Accounts, Denial, Step};
use myroute::protocol::constants::caps;
use myroute::protocol::handshake::{self, Response, NATIVE};
use myroute::protocol::scramble::{self, Secret, LEN};
use myroute::protocol::wire::put_lenenc_bytes;

#[path = "common/accounts.rs"]
mod accounts;
use accounts::{sha1, Known, HOST, PW};
#[path = "common/packets.rs"]
mod packets;
use packets::{only_err, packets, Cur};
#[path = "common/input.rs"]
mod input;
use input::Input;

const USERS: [&[u8]; 3] = [b"app_rw", b"nopw", b"nobody"];

/// COM_CHANGE_USER as this target reads it.
fn model(p: &[u8], session: &Response) -> Option<Response> {
    let flags = session.capabilities;
    let mut c = Cur(p);
    if c.uint(1)? != 0x11 {
        return None;
    }
    let user = c.nul_str()?.to_vec();
    let auth = if flags & caps::PLUGIN_AUTH_LENENC_DATA != 0 {
        c.lenenc_str()?
    } else {
        let n = c.uint(1)? as usize;
        c.take(n)?
    };
    let database = c.nul_str()?;
    let mut charset = session.charset;
    if c.0.len() >= 2 {
        charset = u8::try_from(c.uint(2)?).unwrap_or(session.charset);
    }
    let mut plugin = &b""[..];
    if flags & caps::PLUGIN_AUTH != 0 && !c.0.is_empty() {
        plugin = c.nul_str()?;
    }
    let mut attrs = None;
    if flags & caps::CONNECT_ATTRS != 0 && !c.0.is_empty() {
        let block = c.lenenc_str()?;
        let mut kv = Cur(block);
        while !kv.0.is_empty() {
            kv.lenenc_str()?;
            kv.lenenc_str()?;
        }
        attrs = Some(block.to_vec());
    }
    Some(Response {
        capabilities: flags,
        ext: session.ext,
        max_packet: session.max_packet,
        charset,
        user,
        auth: auth.to_vec(),
        database: (!database.is_empty()).then(|| database.to_vec()),
        plugin: plugin.to_vec(),
        attrs,
    })
}

/// Up to `max` bytes with no NUL, their length read first.
fn name(inp: &mut Input, max: u8) -> Vec<u8> {
    let n = inp.u8().unwrap_or(0) % max.saturating_add(1).max(1);
    inp.bytes(usize::from(n)).iter().map(|&b| b.max(1)).collect()
}

/// A well-formed attribute block: pairs of length-encoded strings.
fn attr_block(inp: &mut Input) -> Vec<u8> {
    let mut block = Vec::new();
    for _ in 0..inp.u8().unwrap_or(0) % 4 {
        for _ in 0..2 {
            let n = usize::from(inp.u8().unwrap_or(0));
            put_lenenc_bytes(&mut block, inp.bytes(n));
        }
    }
    block
}

/// Encode then parse, and every prefix.
fn round_trip(who: &Response, token: &[u8], session: &Response) {
    let flags = session.capabilities;
    let p = handshake::encode_change_user(who, flags, token);
    let got = handshake::parse_change_user(&p, session).expect("an encoded change of user parses");
    assert_eq!(got.user, who.user);
    assert_eq!(got.auth, token);
    assert_eq!(got.database, who.database.clone().filter(|d| !d.is_empty()));
    assert_eq!(got.charset, who.charset);
    let plugin = if flags & caps::PLUGIN_AUTH != 0 { NATIVE } else { b"" };
    assert_eq!(got.plugin, plugin);
    let attrs = who.attrs.clone().filter(|_| flags & caps::CONNECT_ATTRS != 0);
    assert_eq!(got.attrs, attrs);
    assert_eq!(
        (got.capabilities, got.ext, got.max_packet),
        (flags, session.ext, session.max_packet)
    );
    for n in 0..p.len() {
        if let Ok(r) = handshake::parse_change_user(&p[..n], session) {
            assert_eq!((&r.user, &r.auth, &r.database), (&got.user, &got.auth, &got.database));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let head = inp.bytes(4 + 1 + 1 + 1 + LEN);
    if head.len() < 7 + LEN {
        return;
    }
    let session = Response {
        capabilities: u32::from_le_bytes(head[..4].try_into().unwrap()),
        ext: 0x1d,
        max_packet: 1 << 24,
        charset: head[4],
        user: b"app_ro".to_vec(),
        auth: Vec::new(),
        database: Some(b"app".to_vec()),
        plugin: NATIVE.to_vec(),
        attrs: None,
    };
    let flags = session.capabilities;
    // 0x01 the payload is `rest` as it is, 0x02 the answer comes at a
    // wrong sequence id, 0x04 a wrong answer, 0x08 an empty answer, 0x10
    // the new user's character set is the session's.
    let mode = head[5];
    // Bits 0-1 user (3: from the input), 0x04 database, 0x08 attributes,
    // 0x10 a database from the input, 0x20 a token from the input (else
    // 20 bytes).
    let who_bits = head[6];
    let scramble: [u8; LEN] = head[7..].try_into().unwrap();

    let payload = if mode & 0x01 != 0 {
        inp.0.to_vec()
    } else {
        let user = match who_bits & 3 {
            3 => name(&mut inp, 64),
            u => USERS[usize::from(u)].to_vec(),
        };
        let database = match who_bits & 0x14 {
            0 | 0x10 => None,
            0x04 => Some(b"app".to_vec()),
            _ => Some(name(&mut inp, 64)),
        };
        let charset = if mode & 0x10 != 0 { session.charset } else { inp.u8().unwrap_or(0) };
        let attrs = (who_bits & 0x08 != 0).then(|| attr_block(&mut inp));
        let token = if who_bits & 0x20 != 0 {
            let n = usize::from(inp.u8().unwrap_or(0));
            inp.bytes(n).to_vec()
        } else {
            sha1(inp.0).to_vec()
        };
        let who = Response { user, database, charset, attrs, ..session.clone() };
        round_trip(&who, &token, &session);
        handshake::encode_change_user(&who, flags, &token)
    };

    let parsed = handshake::parse_change_user(&payload, &session);
    assert_eq!(parsed.as_ref().ok(), model(&payload, &session).as_ref());
    if let Ok(r) = &parsed {
        // Whatever parses goes to a backend encoded again, as it was read.
        let again = handshake::encode_change_user(r, flags, &r.auth);
        let back = handshake::parse_change_user(&again, &session).expect("re-encoded parses");
        let plugin = if flags & caps::PLUGIN_AUTH != 0 { NATIVE.to_vec() } else { Vec::new() };
        assert_eq!(back, Response { plugin, ..r.clone() });
    }

    // --- the change of user on the client's leg -------------------------------------
    let accounts = Known(scramble::hash_password(PW));
    let decoy = Secret([0x42; LEN]);
    let mut buf = payload.clone();
    let mut out = Vec::new();
    let (mut a, step) = Accept::change_user(&session, scramble, HOST.into(), &mut buf, &mut out);
    assert!(buf.iter().all(|&b| b == 0), "the payload is zeroed");
    let hello = match parsed {
        Err(_) => {
            assert!(matches!(step, Step::Refused(Denial::Protocol("bad handshake"))));
            only_err(&out, 1, 1043);
            return;
        }
        Ok(h) => h,
    };
    assert!(matches!(step, Step::Continue));
    let mut switch = vec![0xFE];
    switch.extend_from_slice(b"mysql_native_password\0");
    switch.extend_from_slice(&scramble);
    switch.push(0);
    assert_eq!(packets(&out), [(1, &switch[..])], "one AuthSwitchRequest on the scramble");
    assert_eq!(a.user(), Some(&hello.user[..]));
    assert_eq!(a.state_name(), "AWAITING-AUTH-SWITCH");
    assert_eq!(a.reply_seq(), 3);
    out.clear();

    let token = if mode & 0x08 != 0 {
        Vec::new()
    } else if mode & 0x04 != 0 {
        sha1(&scramble).to_vec()
    } else if hello.user == b"nopw" {
        Vec::new()
    } else {
        scramble::token_for(&scramble, &Secret(sha1(PW))).to_vec()
    };
    let seq = if mode & 0x02 != 0 { data.len() as u8 | 1 } else { 2 };
    let mut answer = token.clone();
    let mut no_salt = || -> [u8; LEN] { panic!("a change of user asks for no fresh salt") };
    let step = a.on_packet(seq, &mut answer, &accounts, &decoy, &mut no_salt, &mut out);
    assert!(answer.iter().all(|&b| b == 0), "the answer is zeroed");
    if seq != 2 {
        assert!(matches!(step, Step::Refused(Denial::Protocol("sequence id"))));
        only_err(&out, seq.wrapping_add(1), 1156);
        return;
    }
    let right = match accounts.stage2(&hello.user) {
        Some(None) => token.is_empty(),
        Some(Some(stage2)) => scramble::check_token(&scramble, stage2, &token).is_some(),
        None => false,
    };
    match step {
        Step::Verified(v) => {
            assert!(right, "a wrong token was accepted");
            assert!(out.is_empty());
            assert_eq!(v.seq, 3);
            assert_eq!((v.salt, v.greeting_salt), (scramble, scramble));
            assert_eq!(v.hello, Response { auth: Vec::new(), ..hello.clone() });
            match &hello.user[..] {
                b"nopw" => assert!(v.stage1.is_none()),
                _ => assert_eq!(v.stage1.as_ref().map(|s| s.0), Some(sha1(PW))),
            }
        }
        Step::Refused(Denial::AccessDenied) => {
            assert!(!right, "a right token was refused");
            let msg = only_err(&out, 3, 1045);
            let used = if token.is_empty() { "NO" } else { "YES" };
            assert!(msg.starts_with("Access denied for user '"), "{msg}");
            assert!(msg.ends_with(&format!("'@'{HOST}' (using password: {used})")), "{msg}");
        }
        _ => panic!("a checked token is verified or refused"),
    }
});
