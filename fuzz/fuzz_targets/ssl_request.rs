//! The SSLRequest (MySQL "Protocol::SSLRequest"), the 32-byte short
//! HandshakeResponse41 with CLIENT_SSL: built by
//! `handshake::build_ssl_request` (what myroute sends a TLS backend),
//! recognised by `handshake::parse_client_hello`, and answered by the
//! server side of a login (`accept::Accept`).
//!
//! Checked:
//! - `parse_client_hello` never panics, and says `SslRequest` exactly when
//!   the packet is 32 bytes with PROTOCOL_41 and SSL set (`Pre41` exactly
//!   when it has two bytes or more and PROTOCOL_41 clear);
//! - `build_ssl_request` with fuzzer-chosen fields is 32 bytes laid out as
//!   the protocol says (flags with SSL, maximum packet size, character set,
//!   19 zero bytes, MariaDB's extended capabilities only without
//!   CLIENT_MYSQL) and parses as `SslRequest`; each shorter prefix is
//!   `Truncated`; with bytes behind it, it is a HandshakeResponse41 attempt
//!   (never an `SslRequest`) whose fixed fields are the request's; without
//!   PROTOCOL_41 it is `Pre41` from its second byte on;
//! - a login whose greeting offers CLIENT_SSL answers an SSLRequest at
//!   sequence 1 with `Step::StartTls` and writes nothing; it refuses one at
//!   another sequence id (ERR 1156), one without CLIENT_SSL offered or a
//!   second one inside TLS (ERR 1043), and plaintext before `tls_started`
//!   (ERR 1043); a `tls_started` without an SSLRequest changes nothing (so
//!   `tls = required` still refuses the plaintext login, ERR 3159);
//! - after `tls_started`, the HandshakeResponse41 (built from fuzzer-chosen
//!   fields, or the fuzzer's bytes) comes at sequence 2, and every later
//!   sequence id is one higher than without TLS: a right password is
//!   `Verified` with sequence 3 for the OK (5 after an AuthSwitchRequest,
//!   which inside TLS carries the greeting's salt), a wrong one or an
//!   unknown user `Refused` with ERR 1045 at that sequence; the verified
//!   login keeps the response's fields, with its capabilities narrowed to
//!   those offered; each payload is zeroed once handled.
//!
//! Input: `[4 caps] [4 ext] [4 max packet] [charset] [seq] [mode] [login]
//! [20 salt] rest...` (see `fuzz_target!`); the whole input and `rest` are
//! also parsed as a client's first packet.

#![no_main]

use libfuzzer_sys::fuzz_target;
use myroute::protocol::accept::{Accept, Accounts, Denial, Greeting, Step};
use myroute::protocol::constants::{caps, ext};
use myroute::protocol::handshake::{self, ClientHello, ResponseFields, NATIVE};
use myroute::protocol::scramble::{self, Secret, LEN};
use myroute::protocol::wire::{put_lenenc_bytes, Error};
use std::cell::Cell;

#[path = "common/accounts.rs"]
mod accounts;
use accounts::{sha1, Known, HOST, PW};
#[path = "common/packets.rs"]
mod packets;
use packets::{only_err, packets};

const USERS: [&[u8]; 4] = [b"app_rw", b"nopw", b"nobody", b"APP_RW"];
const PLUGINS: [&[u8]; 4] = [NATIVE, b"", b"caching_sha2_password", b"mysql_clear_password"];
/// Fixed part of the input, before `rest`.
const HEAD: usize = 4 + 4 + 4 + 1 + 1 + 1 + 1 + LEN;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn zeroed(payload: &[u8]) -> bool {
    payload.iter().all(|&b| b == 0)
}

/// What `parse_client_hello` must say of any packet.
fn check_hello(data: &[u8]) {
    let got = handshake::parse_client_hello(data);
    let both = caps::PROTOCOL_41 | caps::SSL;
    let ssl = data.len() == 32 && u32_at(data, 0) & both == both;
    assert_eq!(matches!(got, Ok(ClientHello::SslRequest)), ssl, "{got:?}");
    let pre41 = data.len() >= 2
        && u32::from(u16::from_le_bytes([data[0], data[1]])) & caps::PROTOCOL_41 == 0;
    assert_eq!(matches!(got, Ok(ClientHello::Pre41)), pre41, "{got:?}");
    if let Ok(ClientHello::Response(r)) = got {
        assert_eq!(r.capabilities, u32_at(data, 0));
        assert_eq!(r.max_packet, u32_at(data, 4));
        assert_eq!(r.charset, data[8]);
    }
}

/// `build_ssl_request` and what parses it.
fn check_builder(flags: u32, ext: u32, max_packet: u32, charset: u8, rest: &[u8]) {
    let c = flags | caps::PROTOCOL_41;
    let req = handshake::build_ssl_request(c, ext, max_packet, charset);
    assert_eq!(req.len(), 32);
    assert_eq!(u32_at(&req, 0), c | caps::SSL);
    assert_eq!(u32_at(&req, 4), max_packet);
    assert_eq!(req[8], charset);
    assert_eq!(&req[9..28], &[0; 19]);
    let sent_ext = if c & caps::LONG_PASSWORD == 0 { ext } else { 0 };
    assert_eq!(u32_at(&req, 28), sent_ext);
    assert_eq!(handshake::parse_client_hello(&req), Ok(ClientHello::SslRequest));
    for n in 0..req.len() {
        assert_eq!(handshake::parse_client_hello(&req[..n]), Err(Error::Truncated), "prefix {n}");
    }
    if !rest.is_empty() {
        // The same flags with more behind: a HandshakeResponse41 (a client
        // that sends its response inside TLS keeps CLIENT_SSL set).
        let longer = [&req[..], rest].concat();
        match handshake::parse_client_hello(&longer) {
            Ok(ClientHello::Response(r)) => {
                assert_eq!(r.capabilities, c | caps::SSL);
                assert_eq!((r.max_packet, r.charset, r.ext), (max_packet, charset, sent_ext));
            }
            Ok(other) => panic!("32 bytes and more parsed as {other:?}"),
            Err(_) => {}
        }
    }
    let old = handshake::build_ssl_request(flags & !caps::PROTOCOL_41, ext, max_packet, charset);
    for n in 0..=old.len() {
        let want = if n < 2 { Err(Error::Truncated) } else { Ok(ClientHello::Pre41) };
        assert_eq!(handshake::parse_client_hello(&old[..n]), want, "prefix {n}");
    }
}

/// A tidy set of connection attributes.
fn attrs() -> Vec<u8> {
    let mut a = Vec::new();
    for (k, v) in [(&b"_client_name"[..], &b"libmariadb"[..]), (b"_pid", b"4242")] {
        put_lenenc_bytes(&mut a, k);
        put_lenenc_bytes(&mut a, v);
    }
    a
}

/// The token a client answers `salt` with: the right one for `user` (none
/// for nopw), or a wrong one.
fn answer(user: &[u8], salt: &[u8; LEN], wrong: bool) -> Vec<u8> {
    if wrong {
        return sha1(b"not the password").to_vec();
    }
    if user == b"nopw" {
        return Vec::new();
    }
    scramble::token_for(salt, &Secret(sha1(PW))).to_vec()
}

fuzz_target!(|data: &[u8]| {
    check_hello(data);
    if data.len() < HEAD {
        return;
    }
    let flags = u32_at(data, 0);
    let client_ext = u32_at(data, 4);
    let max_packet = u32_at(data, 8);
    let charset = data[12];
    // 0 means sequence 1, the right one.
    let ssl_seq = data[13].wrapping_add(1);
    // 0x01 no CLIENT_SSL offered, 0x02 tls = required, 0x04 plaintext
    // before tls_started, 0x08 the response is `rest`, 0x10 no SSLRequest
    // (a plaintext login), 0x20 a tls_started before anything, 0x40
    // MariaDB's extended capabilities offered, 0x80 the switch answer
    // comes at a wrong sequence id.
    let mode = data[14];
    // Bits 0-1 user, 0x04 wrong password, bits 3-4 plugin, 0x20 database,
    // 0x40 attributes, 0x80 the response lacks CLIENT_SSL.
    let login = data[15];
    let salt = scramble::salt_from_random(data[16..HEAD].try_into().unwrap());
    let rest = &data[HEAD..];
    check_hello(rest);
    check_builder(flags, client_ext, max_packet, charset, rest);

    // --- the server side of the login ---------------------------------------
    let mut offered = caps::RELAYABLE;
    let mut offered_ext = 0;
    if mode & 0x40 != 0 {
        offered &= !caps::LONG_PASSWORD;
        offered_ext = ext::OFFERED;
    }
    if mode & 0x01 == 0 {
        offered |= caps::SSL;
    }
    let tls_required = mode & 0x02 != 0;
    let g = Greeting {
        version: "10.11.6-MariaDB",
        connection_id: 7,
        capabilities: offered,
        ext: offered_ext,
        charset: 45,
        tls_required,
    };
    let accounts = Known(scramble::hash_password(PW));
    let decoy = Secret([0x42; LEN]);
    let fresh = scramble::salt_from_random(salt.map(|b| b ^ 0x5A));
    let fresh_calls = Cell::new(0u32);
    let mut fresh_salt = || {
        fresh_calls.set(fresh_calls.get() + 1);
        fresh
    };
    let mut out = Vec::new();
    let mut a = Accept::new(&g, salt, HOST.into(), &mut out);
    {
        let p = packets(&out);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, 0);
        let greeting = handshake::parse_greeting(p[0].1).expect("myroute's greeting parses");
        assert_eq!(greeting.capabilities, offered);
        assert_eq!(greeting.salt, salt);
    }
    out.clear();
    assert_eq!(a.greeting_salt(), &salt);

    if mode & 0x20 != 0 {
        // Nothing asked for TLS: this must not make the login count as one.
        a.tls_started();
        assert_eq!(a.state_name(), "AWAITING-CLIENT-RESPONSE");
    }
    let client_caps = flags | caps::PROTOCOL_41;
    let mut seq = 1u8;
    let mut tls = false;
    if mode & 0x10 == 0 {
        let mut req = handshake::build_ssl_request(client_caps, client_ext, max_packet, charset);
        let step = a.on_packet(ssl_seq, &mut req, &accounts, &decoy, &mut fresh_salt, &mut out);
        assert!(zeroed(&req));
        if ssl_seq != 1 {
            assert!(matches!(step, Step::Refused(Denial::Protocol("sequence id"))));
            only_err(&out, ssl_seq.wrapping_add(1), 1156);
            return;
        }
        if offered & caps::SSL == 0 {
            assert!(matches!(step, Step::Refused(Denial::Protocol("SSLRequest"))));
            only_err(&out, 2, 1043);
            return;
        }
        assert!(matches!(step, Step::StartTls), "an SSLRequest at sequence 1 starts TLS");
        assert!(out.is_empty(), "nothing is written before the TLS handshake");
        assert_eq!(a.state_name(), "AWAITING-TLS-HANDSHAKE");
        assert_eq!(a.reply_seq(), 3);
        assert_eq!(a.user(), None);
        if mode & 0x04 != 0 {
            let mut plain = rest.to_vec();
            let step = a.on_packet(2, &mut plain, &accounts, &decoy, &mut fresh_salt, &mut out);
            assert!(zeroed(&plain));
            assert!(matches!(step, Step::Refused(Denial::Protocol("bad handshake"))));
            only_err(&out, 3, 1043);
            return;
        }
        a.tls_started();
        assert_eq!(a.state_name(), "AWAITING-CLIENT-RESPONSE");
        assert_eq!(a.reply_seq(), 3);
        seq = 2;
        tls = true;
    }

    // The HandshakeResponse41.
    let user = USERS[usize::from(login & 3)];
    let wrong = login & 0x04 != 0;
    let mut payload = if mode & 0x08 != 0 {
        rest.to_vec()
    } else {
        let plugin = PLUGINS[usize::from(login >> 3 & 3)];
        let mut c = client_caps | caps::SECURE_CONNECTION;
        if login & 0x80 == 0 {
            c |= caps::SSL;
        } else {
            c &= !caps::SSL;
        }
        let database = (login & 0x20 != 0).then_some(&b"app"[..]);
        if database.is_some() {
            c |= caps::CONNECT_WITH_DB;
        }
        let a = attrs();
        let attrs = (login & 0x40 != 0).then_some(&a[..]);
        if attrs.is_some() {
            c |= caps::CONNECT_ATTRS;
        }
        // A token made for another plugin is of no use: it is replaced.
        let native = plugin == NATIVE || plugin.is_empty() || c & caps::PLUGIN_AUTH == 0;
        let token = if native { answer(user, &salt, wrong) } else { vec![0x33; 32] };
        let p = handshake::encode_response(&ResponseFields {
            capabilities: c,
            ext: client_ext,
            max_packet,
            charset,
            user,
            auth: &token,
            database,
            plugin,
            attrs,
        });
        let Ok(ClientHello::Response(r)) = handshake::parse_client_hello(&p) else {
            panic!("a well-formed HandshakeResponse41 does not parse");
        };
        assert_eq!((&r.user[..], &r.auth[..], r.database.as_deref()), (user, &token[..], database));
        assert_eq!(r.attrs.as_deref(), attrs);
        p
    };
    let parsed = handshake::parse_client_hello(&payload);
    let step = a.on_packet(seq, &mut payload, &accounts, &decoy, &mut fresh_salt, &mut out);
    assert!(zeroed(&payload));
    let reply = seq + 1;
    let r = match parsed {
        Err(_) => {
            assert!(matches!(step, Step::Refused(Denial::Protocol("bad handshake"))));
            only_err(&out, reply, 1043);
            return;
        }
        Ok(ClientHello::Pre41) => {
            assert!(matches!(step, Step::Refused(Denial::Protocol("pre-4.1 client"))));
            only_err(&out, reply, 1043);
            return;
        }
        Ok(ClientHello::SslRequest) if tls || offered & caps::SSL == 0 => {
            assert!(matches!(step, Step::Refused(Denial::Protocol("SSLRequest"))));
            only_err(&out, reply, 1043);
            return;
        }
        Ok(ClientHello::SslRequest) => {
            // A plaintext login whose first packet is the fuzzer's SSLRequest.
            assert!(matches!(step, Step::StartTls));
            assert!(out.is_empty());
            return;
        }
        Ok(ClientHello::Response(r)) => r,
    };
    assert_eq!(a.user(), Some(&r.user[..]));
    if tls_required && !tls {
        assert!(matches!(step, Step::Refused(Denial::Insecure)));
        only_err(&out, reply, 3159);
        return;
    }
    let (step, salt_used, token, ok_seq) = if !r.plugin.is_empty() && r.plugin != NATIVE {
        // Another plugin: switched to native, inside TLS on the greeting's
        // salt, else on a fresh one.
        assert!(matches!(step, Step::Continue));
        let switch_salt = if tls { salt } else { fresh };
        assert_eq!(fresh_calls.get(), u32::from(!tls));
        let p = packets(&out);
        assert_eq!(p, [(reply, &handshake::build_auth_switch(&switch_salt)[..])]);
        assert_eq!(a.state_name(), "AWAITING-AUTH-SWITCH");
        assert_eq!(a.reply_seq(), reply + 2);
        out.clear();
        let token = answer(&r.user, &switch_salt, wrong);
        let mut t = token.clone();
        let answer_seq = if mode & 0x80 != 0 { reply.wrapping_add(2) } else { reply + 1 };
        let step = a.on_packet(answer_seq, &mut t, &accounts, &decoy, &mut fresh_salt, &mut out);
        assert!(zeroed(&t));
        if answer_seq != reply + 1 {
            assert!(matches!(step, Step::Refused(Denial::Protocol("sequence id"))));
            only_err(&out, answer_seq.wrapping_add(1), 1156);
            return;
        }
        (step, switch_salt, token, reply + 2)
    } else {
        assert_eq!(fresh_calls.get(), 0);
        (step, salt, r.auth.clone(), reply)
    };
    let right = match accounts.stage2(&r.user) {
        Some(None) => token.is_empty(),
        Some(Some(stage2)) => scramble::check_token(&salt_used, stage2, &token).is_some(),
        None => false,
    };
    match step {
        Step::Verified(v) => {
            assert!(right, "a wrong token was accepted");
            assert!(out.is_empty());
            assert_eq!(v.seq, ok_seq);
            assert_eq!((v.salt, v.greeting_salt), (salt_used, salt));
            let h = &v.hello;
            assert!(h.auth.is_empty(), "the token is wiped");
            assert_eq!(h.capabilities, r.capabilities & (offered | caps::LONG_PASSWORD));
            assert_eq!(h.ext, r.ext & offered_ext);
            assert_eq!((&h.user, &h.database, &h.attrs), (&r.user, &r.database, &r.attrs));
            assert_eq!((h.charset, h.max_packet, &h.plugin), (r.charset, r.max_packet, &r.plugin));
            match &r.user[..] {
                b"nopw" => assert!(v.stage1.is_none()),
                _ => assert_eq!(v.stage1.as_ref().map(|s| s.0), Some(sha1(PW))),
            }
        }
        Step::Refused(Denial::AccessDenied) => {
            assert!(!right, "a right token was refused");
            let msg = only_err(&out, ok_seq, 1045);
            let used = if token.is_empty() { "NO" } else { "YES" };
            assert!(msg.starts_with("Access denied for user '"), "{msg}");
            assert!(msg.ends_with(&format!("'@'{HOST}' (using password: {used})")), "{msg}");
        }
        _ => panic!("a checked token is verified or refused"),
    }
});
