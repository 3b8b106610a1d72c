//! The admin console's session (`admin::Session`), driven the way the event
//! loop drives it (`ops.rs`): client bytes are appended to the input in
//! fuzzer-chosen chunks, `feed` is called until it returns no command, each
//! command is answered with `reply` (a small table, OK or ERR chosen by the
//! fuzzer), and `out` is taken as if written to the socket.
//!
//! The driver can log in first with a right token, computed from the salt
//! of the greeting the session really sent (the fuzzer cannot compute
//! SHA1), directly or after an AuthSwitchRequest, so the command phase is
//! reached; the client stream that follows is raw bytes or records the
//! driver frames (statements from the command list, packets with chosen
//! sequence ids, raw bytes).
//!
//! Checked after every call: no panic; `out` is a sequence of whole,
//! well-formed packets (4-byte header whose length matches the payload,
//! under 16 MiB); the greeting parses and carries the salt; every ERR
//! parses; a reply is exactly one response whose sequence ids run 1, 2, ...
//! and whose result set carries the table's values; `feed` leaves no whole
//! packet unread unless a command is pending, consumes nothing while one
//! is, and returns commands only to a logged-in session; nobody is logged
//! in unless the right token for the user was sent; once `finished()`, the
//! session stays finished, keeps its end, and writes nothing more.
//!
//! Input: `setup cuts n reply[n] stream...` (see `fuzz_target!`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use myroute::config::ClientTls;
use myroute::operations::admin::{
    AdminAuth, Column, Command, End, Reply, Session, Table, CAPABILITIES,
};
use myroute::protocol::constants::caps;
use myroute::protocol::errors;
use myroute::protocol::handshake::{self, NATIVE};
use myroute::protocol::scramble::{self, Secret, LEN as SALT_LEN};
use myroute::protocol::wire::{put_lenenc_bytes, put_packet, Reader, HEADER_LEN, MAX_PAYLOAD};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const USER: &str = "admin";
const PW: &[u8] = b"pw";
/// Raw bytes for the greeting's salt; `salt_from_random` makes them a
/// valid salt. Constant, so a captured login (made against a recorder that
/// sent this salt) logs in when replayed as a raw stream.
const GREETING_RAW: [u8; SALT_LEN] = *b"myroute-admin-fuzz!!";

/// Statements a record can send (COM_QUERY), in the console's grammar and
/// around it.
const STATEMENTS: &[&str] = &[
    "SHOW SERVERS",
    "SHOW POOLS",
    "SHOW CLIENTS",
    "SHOW STATS",
    "SHOW CONFIG",
    "SHOW VERSION",
    "HELP",
    "SHOW HELP",
    "DRAIN SERVER '127.0.0.1:3306'",
    "DRAIN SERVER \"db1:3306\"",
    "ENABLE SERVER `[::1]:3307`",
    "enable server db2:3306",
    "KILL 7",
    "KILL CONNECTION 4294967295",
    "RELOAD",
    "SHUTDOWN",
    "SET NAMES utf8mb4",
    "select @@version_comment limit 1",
    "SELECT @@VERSION_COMMENT",
    "SELECT 1",
    "kill 4294967296",
    "drain server ''",
    "drain server 'a:1\"",
    "SHOW SERVERS; SHOW POOLS",
    "",
];

/// Column names a fuzzer table can use.
const NAMES: [&str; 4] = ["server", "active", "é", ""];
/// SQLSTATEs a fuzzer ERR reply can carry (some malformed on purpose).

/// With ADMIN_SESSION_TRACE set in the environment, commands, replies and
/// the session's end are printed (for reading what a seed or a crash input
/// does).
fn tracing() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("ADMIN_SESSION_TRACE").is_some())
}

fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(payload.len() + HEADER_LEN);
    put_packet(&mut v, seq, payload);
    v
}

/// The salt the session asks for on an AuthSwitchRequest: a counter, so
/// two switches never share one.
fn switch_salt(n: u32) -> [u8; SALT_LEN] {
    scramble::salt_from_random(std::array::from_fn(|i| {
        (n.wrapping_mul(0x9E37_79B9) >> (i % 4 * 8)) as u8 ^ (i as u8).wrapping_mul(7)
    }))
}

fn token(salt: &[u8]) -> [u8; SALT_LEN] {
    scramble::token_for(salt, &scramble::stage1_of(PW))
}

#[path = "common/input.rs"]
mod input;
use input::Input;

impl Input<'_> {
    /// A short string, or (length byte 0xFF) a long one of two-byte
    /// characters, so the session's truncations meet a char boundary.
    fn text(&mut self) -> String {
        match self.u8() {
            None => String::new(),
            Some(0xFF) => "é".repeat(700),
            Some(n) => String::from_utf8_lossy(self.bytes(usize::from(n % 64))).into_owned(),
        }
    }
}

/// A reply to a command, from the reply bytes (OK when they run out).
fn make_reply(r: &mut Input) -> Reply {
    let Some(kind) = r.u8() else {
        return Reply::Ok(String::new());
    };
    match kind % 4 {
        0 => Reply::Ok(r.text()),
        1 => Reply::Err(match kind >> 2 & 3 {
            0 => errors::ConsoleError::UnknownThread(u32::from(kind)),
            1 => errors::ConsoleError::NoSuchServer(r.text()),
            _ => errors::ConsoleError::ReloadFailed(r.text()),
        }),
        _ => {
            let ncols = usize::from(kind >> 2 & 3);
            let columns = (0..ncols)
                .map(|i| {
                    let name = NAMES[usize::from(kind >> 4 & 3).wrapping_add(i) % NAMES.len()];
                    if kind >> (6 + i % 2) & 1 != 0 {
                        Column::num(name)
                    } else {
                        Column::text(name)
                    }
                })
                .collect();
            let mut t = Table::new(columns);
            let nrows = match r.u8().unwrap_or(1) {
                // Enough rows for the sequence ids to wrap.
                0xFF => 300,
                n => usize::from(n % 8),
            };
            for i in 0..nrows {
                let width = if nrows > 8 {
                    ncols
                } else {
                    // Short and long rows too.
                    usize::from(r.u8().unwrap_or(0)) % (ncols + 2)
                };
                let row = (0..width)
                    .map(|j| {
                        if nrows > 8 {
                            Some((i * 10 + j).to_string())
                        } else {
                            match r.u8() {
                                Some(b) if b & 1 == 0 => None,
                                _ => Some(r.text()),
                            }
                        }
                    })
                    .collect();
                t.rows.push(row);
            }
            Reply::Table(t)
        }
    }
}

/// The client's bytes after the login: raw, or records the driver frames.
fn client_stream(inp: &mut Input, framed: bool) -> Vec<u8> {
    if !framed {
        return inp.0.to_vec();
    }
    let mut out = Vec::new();
    while let Some(tag) = inp.u8() {
        match tag % 4 {
            // A statement from the list, as typed in several ways.
            0 => {
                let Some(i) = inp.u8() else { break };
                let mut sql = STATEMENTS[usize::from(i) % STATEMENTS.len()].to_string();
                if tag & 0x04 != 0 {
                    sql = sql.to_ascii_lowercase();
                }
                if tag & 0x08 != 0 {
                    sql = sql.replace(' ', " \t ");
                }
                if tag & 0x10 != 0 {
                    sql.push_str(" ;\n;");
                }
                let mut p = vec![0x03];
                p.extend_from_slice(sql.as_bytes());
                out.extend(packet(if tag & 0x20 != 0 { 1 } else { 0 }, &p));
            }
            // A command packet (its first byte the command).
            1 => {
                let n = usize::from(inp.u8().unwrap_or(0));
                out.extend(packet(0, inp.bytes(n)));
            }
            // A packet with a chosen sequence id.
            2 => {
                let seq = inp.u8().unwrap_or(0);
                let n = usize::from(inp.u8().unwrap_or(0));
                out.extend(packet(seq, inp.bytes(n)));
            }
            // Raw bytes; a length byte of 0xFF is a header claiming more
            // than the console accepts.
            _ => match inp.u8().unwrap_or(0) {
                0xFF => out.extend_from_slice(&[0x01, 0x00, 0x01, 0x00]),
                n => out.extend_from_slice(inp.bytes(usize::from(n))),
            },
        }
    }
    out
}

/// A HandshakeResponse41 from the setup byte (see `fuzz_target!`).
fn login_packet(setup: u8, user: &str, plugin: &[u8], auth: &[u8]) -> Vec<u8> {
    let mut flags = caps::PROTOCOL_41
        | caps::SECURE_CONNECTION
        | caps::PLUGIN_AUTH
        | caps::LONG_PASSWORD
        | caps::MULTI_RESULTS
        | caps::TRANSACTIONS;
    if setup & 0x04 != 0 {
        flags |= caps::DEPRECATE_EOF;
    }
    if setup & 0x08 != 0 {
        flags |= caps::CONNECT_WITH_DB;
    }
    if setup & 0x10 != 0 {
        flags |= caps::CONNECT_ATTRS;
    }
    if setup & 0x80 == 0 {
        flags |= caps::PLUGIN_AUTH_LENENC_DATA;
    }
    let mut kv = Vec::new();
    put_lenenc_bytes(&mut kv, b"_client_name");
    put_lenenc_bytes(&mut kv, b"fuzz");
    handshake::encode_response(&handshake::ResponseFields {
        capabilities: flags,
        ext: 0,
        max_packet: 16 << 20,
        charset: 45,
        user: user.as_bytes(),
        auth,
        database: Some(b"admin"),
        plugin,
        attrs: Some(&kv),
    })
}

/// Splits `out` into `(seq, payload)`, checking the framing.
fn packets(out: &[u8]) -> Vec<(u8, &[u8])> {
    let mut rest = out;
    let mut v = Vec::new();
    while !rest.is_empty() {
        assert!(rest.len() >= HEADER_LEN, "partial header in out: {rest:?}");
        let len = usize::from(rest[0]) | usize::from(rest[1]) << 8 | usize::from(rest[2]) << 16;
        assert!(len < MAX_PAYLOAD);
        assert!(
            rest.len() >= HEADER_LEN + len,
            "header says {len} bytes, {} follow",
            rest.len() - HEADER_LEN
        );
        v.push((rest[3], &rest[HEADER_LEN..HEADER_LEN + len]));
        rest = &rest[HEADER_LEN + len..];
    }
    v
}

/// Checks what every packet of the session must be.
fn check_packet(payload: &[u8]) {
    if payload.first() == Some(&0xFF) {
        let (_, msg) = errors::parse_err(payload).expect("ERR parses");
        assert!(payload.len() >= 9 && payload[3] == b'#', "{payload:?}");
        assert!(payload[4..9].is_ascii());
        assert!(msg.len() <= 512 * 3, "{}", msg.len());
    }
}

/// Reads an OK_Packet with header `h`: its info, if any.
fn ok_info(payload: &[u8], h: u8) -> Vec<u8> {
    let mut r = Reader::new(payload);
    assert_eq!(r.u8().unwrap(), h);
    assert_eq!(r.lenenc_int().unwrap(), 0);
    assert_eq!(r.lenenc_int().unwrap(), 0);
    r.u16().unwrap();
    r.u16().unwrap();
    if r.remaining() == 0 {
        return Vec::new();
    }
    let info = r.lenenc_bytes().unwrap().to_vec();
    assert_eq!(r.remaining(), 0);
    info
}

/// Checks the packets a `reply` wrote against the reply.
fn check_reply(reply: &Reply, p: &[(u8, &[u8])], deprecate_eof: bool) {
    for (i, (seq, _)) in p.iter().enumerate() {
        assert_eq!(usize::from(*seq), (i + 1) % 256, "sequence ids");
    }
    match reply {
        Reply::Ok(info) => {
            assert_eq!(p.len(), 1);
            let got = ok_info(p[0].1, 0x00);
            let got = std::str::from_utf8(&got).expect("info cut at a char boundary");
            assert!(info.starts_with(got) && got.len() <= 1024);
            if info.len() <= 1024 {
                assert_eq!(got, info);
            }
        }
        Reply::Err(e) => {
            assert_eq!(p.len(), 1);
            let (c, _) = errors::parse_err(p[0].1).unwrap();
            let (code, state) = e.code();
            assert_eq!(c, code);
            assert_eq!(&p[0].1[4..9], state.as_bytes());
            let m = &p[0].1[9..];
            assert!(e.message().as_bytes().starts_with(m) && m.len() <= 512);
        }
        Reply::Table(t) if t.columns.is_empty() => {
            assert_eq!(p.len(), 1);
            assert!(ok_info(p[0].1, 0x00).is_empty());
        }
        Reply::Table(t) => {
            let n = t.columns.len();
            let eofs = if deprecate_eof { 0 } else { 1 };
            assert_eq!(p.len(), 1 + n + eofs + t.rows.len() + 1);
            assert_eq!(Reader::new(p[0].1).lenenc_int().unwrap(), n as u64);
            for (c, (_, def)) in t.columns.iter().zip(&p[1..=n]) {
                let mut r = Reader::new(def);
                assert_eq!(r.lenenc_bytes().unwrap(), b"def");
                for _ in 0..3 {
                    r.lenenc_bytes().unwrap();
                }
                assert_eq!(r.lenenc_bytes().unwrap(), c.name.as_bytes());
                assert_eq!(r.lenenc_bytes().unwrap(), c.name.as_bytes());
                assert_eq!(r.lenenc_int().unwrap(), 0x0C);
                assert_eq!(r.remaining(), 0x0C);
            }
            if !deprecate_eof {
                assert_eq!(p[1 + n].1, [0xFE, 0, 0, 2, 0]);
            }
            let rows = &p[1 + n + eofs..p.len() - 1];
            for (want, (_, row)) in t.rows.iter().zip(rows) {
                let mut r = Reader::new(row);
                for i in 0..n {
                    match want.get(i).and_then(Option::as_ref) {
                        Some(v) => assert_eq!(r.lenenc_bytes().unwrap(), v.as_bytes()),
                        None => assert_eq!(r.u8().unwrap(), 0xFB),
                    }
                }
                assert_eq!(r.remaining(), 0, "a row has one value per column");
            }
            let last = p[p.len() - 1].1;
            if deprecate_eof {
                assert!(ok_info(last, 0xFE).is_empty());
                assert!(last.len() < 9);
            } else {
                assert_eq!(last, [0xFE, 0, 0, 2, 0]);
            }
        }
    }
}

/// Everything the loop would hold for one admin connection.
struct Driver {
    s: Session,
    stage2: Secret,
    /// `None`: no console account configured.
    account: bool,
    input: Vec<u8>,
    switches: u32,
    /// Salts the session was given (greeting, AuthSwitchRequests).
    salts: Vec<[u8; SALT_LEN]>,
    /// Every byte the client sent.
    sent: Vec<u8>,
    reply_bytes: Vec<u8>,
    reply_at: usize,
    deprecate_eof: Option<bool>,
    ended: Option<End>,
    user: Option<String>,
}

impl Driver {
    /// True if the client sent the right token for one of the salts.
    fn proved(&self) -> bool {
        self.salts.iter().any(|salt| {
            let t = token(salt);
            self.sent.windows(SALT_LEN).any(|w| w == t)
        })
    }

    fn next_reply(&mut self) -> Reply {
        let mut r = Input(&self.reply_bytes[self.reply_at.min(self.reply_bytes.len())..]);
        let before = r.0.len();
        let reply = make_reply(&mut r);
        self.reply_at += before - r.0.len();
        reply
    }

    /// Checks the session's state after a call; `out` was just taken.
    fn check_state(&mut self) {
        if let Some(end) = &self.ended {
            assert!(self.s.finished(), "finished, then not");
            assert_eq!(self.s.end(), Some(end));
        }
        if self.s.finished() {
            self.ended = self.s.end().cloned();
            assert!(self.ended.is_some());
            assert!(!self.s.executing());
        }
        if let Some(u) = &self.user {
            assert_eq!(self.s.user(), Some(u.as_str()));
        }
        if let Some(u) = self.s.user() {
            assert_eq!(u, USER);
            assert!(self.account, "logged in with no account configured");
            assert!(self.proved(), "logged in without the right token");
            self.user = Some(u.to_string());
        }
    }

    /// Takes `out` as the socket would and checks its framing.
    fn take_out(&mut self) -> Vec<u8> {
        let out = std::mem::take(&mut self.s.out);
        for (_, payload) in packets(&out) {
            check_packet(payload);
        }
        // An AuthSwitchRequest carries the salt the session was given.
        for (seq, payload) in packets(&out) {
            if seq == 2 && payload.first() == Some(&0xFE) && self.s.user().is_none() {
                let (plugin, data) = handshake::parse_auth_switch(payload).unwrap();
                assert_eq!(plugin, NATIVE);
                assert_eq!(Some(&data[..]), self.salts.last().map(|s| &s[..]));
            }
        }
        out
    }

    /// Appends a chunk and serves the session as the loop does.
    fn deliver(&mut self, chunk: &[u8]) {
        let finished_before = self.s.finished();
        self.input.extend_from_slice(chunk);
        self.sent.extend_from_slice(chunk);
        loop {
            let auth_secret = self.stage2.clone();
            let auth = AdminAuth { user: USER, stage2: &auth_secret };
            let Driver { s, input, switches, salts, account, .. } = self;
            let mut salt = || {
                *switches += 1;
                let fresh = switch_salt(*switches);
                salts.push(fresh);
                fresh
            };
            let cmd = s.feed(input, (*account).then_some(&auth), &mut salt);
            let out = self.take_out();
            if self.deprecate_eof.is_none() && self.s.user().is_some() {
                // What the login negotiated: the OK after it tells nothing,
                // so find it in the response the client sent.
                self.deprecate_eof = Some(self.client_deprecate_eof());
            }
            self.check_state();
            if finished_before {
                assert!(out.is_empty(), "output after the end");
                assert!(cmd.is_none());
            }
            let Some(cmd) = cmd else {
                if self.s.finished() {
                    // What followed the packet that ended the session is
                    // wiped (it may hold a token); later bytes are not read.
                    if !finished_before {
                        assert!(self.input.is_empty(), "input kept after the end");
                    }
                } else {
                    assert!(!self.s.executing());
                    // No whole packet left unread.
                    if let [a, b, c, _, ..] = self.input[..] {
                        let len = usize::from(a) | usize::from(b) << 8 | usize::from(c) << 16;
                        assert!(
                            self.input.len() < HEADER_LEN + len,
                            "a whole packet left in the input"
                        );
                    }
                }
                break;
            };
            assert!(self.s.executing() && !self.s.finished());
            assert!(self.s.user().is_some(), "a command before the login");
            match &cmd {
                Command::Drain(a) | Command::Enable(a) => {
                    assert!(!a.is_empty() && !a.contains(['\'', '"', '`']));
                }
                _ => {}
            }
            // While a command is pending nothing is read.
            let before = self.input.clone();
            let mut no_salt = || -> [u8; SALT_LEN] { panic!("salt asked for while executing") };
            let auth_secret = self.stage2.clone();
            let auth = AdminAuth { user: USER, stage2: &auth_secret };
            assert_eq!(self.s.feed(&mut self.input, Some(&auth), &mut no_salt), None);
            assert_eq!(self.input, before);
            assert!(self.s.out.is_empty());
            let reply = self.next_reply();
            if tracing() {
                eprintln!("command {cmd:?} -> {reply:?}");
            }
            self.s.reply(reply.clone());
            let out = self.take_out();
            check_reply(&reply, &packets(&out), self.deprecate_eof.unwrap_or(false));
            self.check_state();
            // A second reply with nothing pending does nothing.
            self.s.reply(Reply::Ok("again".into()));
            assert!(self.s.out.is_empty());
        }
    }

    /// DEPRECATE_EOF as the client's HandshakeResponse41 asked for it.
    fn client_deprecate_eof(&self) -> bool {
        // The login is the first packet the client sent.
        let [a, b, c, _, ..] = self.sent[..] else {
            return false;
        };
        let len = usize::from(a) | usize::from(b) << 8 | usize::from(c) << 16;
        let Some(payload) = self.sent.get(HEADER_LEN..HEADER_LEN + len) else {
            return false;
        };
        match handshake::parse_client_hello(payload) {
            Ok(handshake::ClientHello::Response(r)) => {
                r.capabilities & CAPABILITIES & caps::DEPRECATE_EOF != 0
            }
            _ => false,
        }
    }
}

/// Chunk sizes: the whole stream at once for 0, else sizes from 1 to
/// `1 + (cuts & 63)` from a small generator seeded with `cuts`.
fn chunks(data: &[u8], cuts: u8) -> Vec<&[u8]> {
    if cuts == 0 || data.is_empty() {
        return vec![data];
    }
    let max = 1 + usize::from(cuts & 63);
    let mut x = u32::from(cuts) | 0x100;
    let mut v = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let n = (1 + x as usize % max).min(rest.len());
        let (head, tail) = rest.split_at(n);
        v.push(head);
        rest = tail;
    }
    v
}

// setup: bits 0-1 the login the driver sends first (0: none, the stream
// starts at once; 1: mysql_native_password; 2: caching_sha2_password, then
// the AuthSwitchResponse; 3: native with the right token for user
// "ADMIN"), bit 2 DEPRECATE_EOF, bit 3 a database, bit 4 connection
// attributes, bit 5 the stream is records (`client_stream`), bit 6 no
// console account configured, bit 7 no PLUGIN_AUTH_LENENC_DATA. cuts: chunk
// sizes (`chunks`). n, reply[n]: the bytes replies are chosen from.
fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let (Some(setup), Some(cuts), Some(n)) = (inp.u8(), inp.u8(), inp.u8()) else {
        return;
    };
    let reply_bytes = inp.bytes(usize::from(n)).to_vec();
    let stream = client_stream(&mut inp, setup & 0x20 != 0);
    let greeting_salt = scramble::salt_from_random(GREETING_RAW);
    let peer = if n & 1 == 0 {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))
    } else {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    };
    let mut d = Driver {
        s: Session::new(u32::from(cuts) << 8 | u32::from(n), greeting_salt, peer, ClientTls::Off),
        stage2: scramble::hash_password(PW),
        account: setup & 0x40 == 0,
        input: Vec::new(),
        switches: 0,
        salts: vec![greeting_salt],
        sent: Vec::new(),
        reply_bytes,
        reply_at: 0,
        deprecate_eof: None,
        ended: None,
        user: None,
    };

    // The greeting.
    let out = d.take_out();
    let p = packets(&out);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].0, 0);
    let g = handshake::parse_greeting(p[0].1).expect("the greeting parses");
    assert_eq!(g.salt, greeting_salt);
    assert_eq!(g.capabilities, CAPABILITIES);
    assert_eq!(g.auth_plugin, NATIVE);
    assert!(!d.s.finished() && d.s.user().is_none());

    let login = setup & 3;
    if login != 0 {
        let user = if login == 3 { "ADMIN" } else { USER };
        let (plugin, auth): (&[u8], Vec<u8>) = if login == 2 {
            (b"caching_sha2_password", vec![7; 32])
        } else {
            (NATIVE, token(&g.salt).to_vec())
        };
        let hello = packet(1, &login_packet(setup, user, plugin, &auth));
        for c in chunks(&hello, cuts) {
            d.deliver(c);
        }
        if login == 2 {
            // The AuthSwitchRequest came with a fresh salt (whether or not
            // an account is configured: it is looked at after the switch).
            assert_eq!(d.switches, 1);
            assert!(!d.s.finished());
            let answer = packet(3, &token(&d.salts[1]));
            for c in chunks(&answer, cuts) {
                d.deliver(c);
            }
        }
        match (d.account, login) {
            (true, 1 | 2) => {
                assert_eq!(d.s.user(), Some(USER), "the right login is refused");
                assert_eq!(d.deprecate_eof, Some(setup & 4 != 0));
            }
            _ => {
                assert!(d.s.finished() && d.s.user().is_none());
                assert_eq!(d.s.end(), Some(&End::AccessDenied));
            }
        }
    }
    for c in chunks(&stream, cuts) {
        d.deliver(c);
    }
    if tracing() {
        eprintln!("user={:?} end={:?} unread={}", d.s.user(), d.s.end(), d.input.len());
    }
});
