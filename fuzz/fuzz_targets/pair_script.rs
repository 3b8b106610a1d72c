//! A whole connection pair (`pair::Pair`) driven by a fuzzer-chosen script:
//! client bytes, backend bytes, connects, failures, closes and the passing
//! of time, delivered the way the event loop delivers them.
//!
//! The driver plays the event loop's part and nothing more: it reads from a
//! side only when `may_read` says so and its ring has room, writes `up` to
//! the backend only when `may_relay_up` says so, opens and drops the backend
//! socket the pair asks for (`Pair::backend`), fires `Timeout` only once
//! `deadline` has passed, and stops when `finished` says the pair is over.
//! Bytes a side sent that the proxy has not read yet wait in a queue, as in
//! a socket buffer.
//!
//! Besides some raw-byte operations, the script can send well-formed
//! packets whose tokens the driver computes for the salt the pair really
//! sent (the fuzzer cannot compute SHA1), so the later states are reached.
//!
//! Checked after every step: no panic; rings never hold more than their
//! capacity and their storage is the configured size; myroute's own queue
//! toward the backend stays small; and no backend connection is asked for
//! unless a right password (or a password-less account) was presented.
//!
//! Input: `[setup] op...`, each op an opcode byte and its arguments (see
//! `Op::read`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use myroute::config::{self, Config};
use myroute::operations::access::RateLimit;
use myroute::operations::stats::Stats;
use myroute::protocol::constants::caps;
use myroute::protocol::handshake::{self, NATIVE};
use myroute::protocol::ring::BufPool;
use myroute::protocol::scramble::{self, Secret};
use myroute::protocol::wire::{put_lenenc_bytes, put_packet};
use myroute::servers::pool::{BackendInfo, Pools};
use myroute::sessions::pair::{Ctx, Event, Pair, Side};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

const PW: &[u8] = b"password";
const HASH: &str = "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"; // PASSWORD('password')
const USERS: [&[u8]; 6] = [b"app_rw", b"app_ro", b"nopw", b"nobody", b"APP_RW", b"app_rw\0x"];
const PLUGINS: [&[u8]; 4] = [NATIVE, b"", b"caching_sha2_password", b"mysql_clear_password"];
/// Operations per script, so one input cannot run for long.
const MAX_OPS: usize = 200;

/// With PAIR_SCRIPT_TRACE set in the environment, each step is printed
/// (for reading what a seed or a crash input does).
fn tracing() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("PAIR_SCRIPT_TRACE").is_some())
}

/// The configuration, from the setup byte: bit 0 16 KiB rings (else
/// 4 KiB), bit 3 server_version set, bit 4 idle_timeout, bit 5 replicas
/// fall back to the primary, bit 6 weighted replicas. (Bits 1-2 and 7 choose what
/// the backends are known to announce; see `fuzz_target!`.) The largest
/// rings (16 MiB) are left out: each run would then cost milliseconds, and
/// the fuzzer, finding them new, would keep choosing them; the e2e test
/// `test_login_packet_as_large_as_16MiB_rings_allow` covers that size.
fn config_text(setup: u8) -> String {
    let buffer = if setup & 1 == 0 { 4096 } else { 16384 };
    let mut extra = String::new();
    if setup & 8 != 0 {
        extra.push_str("server_version = 10.11.6-MariaDB\n");
    }
    if setup & 0x10 != 0 {
        extra.push_str("idle_timeout = 5s\n");
    }
    if setup & 0x20 != 0 {
        extra.push_str("pool.replicas.fallback = primary\n");
    }
    let weight = if setup & 0x40 != 0 { " weight=3" } else { "" };
    format!(
        "buffer_size = {buffer}\n{extra}handshake_timeout = 10s\nconnect_timeout = 1s\n\
         pool.primary.servers = 127.0.0.1:1001\n\
         pool.replicas.servers = 127.0.0.1:1002{weight}, 127.0.0.1:1003\n\
         user.app_rw.password = {HASH}\nuser.app_rw.pool = primary\n\
         user.app_ro.password = {HASH}\nuser.app_ro.pool = replicas\n\
         user.nopw.password =\nuser.nopw.pool = primary\n"
    )
}

fn sha1(data: &[u8]) -> [u8; 20] {
    sha1_smol::Sha1::from(data).digest().bytes()
}

/// The mysql_native_password token a client computes.
fn token(password: &[u8], salt: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    scramble::token_for(salt, &Secret(sha1(password))).to_vec()
}

fn frame(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(payload.len() + 4);
    put_packet(&mut v, seq, payload);
    v
}

#[path = "common/input.rs"]
mod input;
use input::Input;

/// One step of a script.
#[derive(Debug)]
enum Op {
    /// The client sends raw bytes.
    ClientRaw(Vec<u8>),
    /// The backend sends raw bytes.
    BackendRaw(Vec<u8>),
    /// The client sends a HandshakeResponse41 (see `login_packet`).
    ClientLogin(u8, u8, u8),
    /// The client answers an AuthSwitchRequest.
    ClientSwitchAnswer(u8, u8),
    /// The backend greets (see `greeting_packet`).
    BackendGreeting(u8, u8),
    /// The backend sends OK with this sequence id.
    BackendOk(u8),
    /// The backend sends ERR with this sequence id and code.
    BackendErr(u8, u16),
    /// The backend asks for another auth plugin.
    BackendSwitch(u8, u8),
    /// The backend's TCP connect completes.
    BackendConnected,
    /// The backend socket fails or closes.
    BackendFailed,
    /// The client goes away (cleanly, or with an error).
    ClientClosed(u8),
    /// Time passes (milliseconds, scaled), then due timers fire.
    Advance(u16),
    /// The client reads this many bytes (0: everything).
    ClientReads(u8),
    /// The backend reads this many bytes (0: everything).
    BackendReads(u8),
    /// The client sends a command packet (sequence 0).
    ClientCommand(u8, Vec<u8>),
    /// The backend sends AuthMoreData or another unexpected first byte.
    BackendOther(u8, u8),
    /// Opening the backend socket failed for want of descriptors or ports
    /// (only right after the pair asked for it, as in the loop).
    NoBackendSocket,
    /// Like `ClientLogin`, with connection attributes padded so the packet
    /// is as large as the ring allows, less the last byte's count of bytes.
    ClientLoginFill(u8, u8, u8),
}

impl Op {
    fn read(inp: &mut Input) -> Option<Op> {
        Some(match inp.u8()? % 18 {
            0 => {
                let n = usize::from(inp.u8()?);
                Op::ClientRaw(inp.bytes(n).to_vec())
            }
            1 => {
                let n = usize::from(inp.u8()?);
                Op::BackendRaw(inp.bytes(n).to_vec())
            }
            2 => Op::ClientLogin(inp.u8()?, inp.u8()?, inp.u8().unwrap_or(0)),
            3 => Op::ClientSwitchAnswer(inp.u8()?, inp.u8().unwrap_or(3)),
            4 => Op::BackendGreeting(inp.u8()?, inp.u8().unwrap_or(b'z')),
            5 => Op::BackendOk(inp.u8()?),
            6 => Op::BackendErr(inp.u8()?, u16::from(inp.u8()?) * 37),
            7 => Op::BackendSwitch(inp.u8()?, inp.u8().unwrap_or(2)),
            8 => Op::BackendConnected,
            9 => Op::BackendFailed,
            10 => Op::ClientClosed(inp.u8().unwrap_or(0)),
            11 => Op::Advance(u16::from_le_bytes([inp.u8()?, inp.u8().unwrap_or(0)])),
            12 => Op::ClientReads(inp.u8().unwrap_or(0)),
            13 => Op::BackendReads(inp.u8().unwrap_or(0)),
            14 => {
                let cmd = inp.u8()?;
                let n = usize::from(inp.u8().unwrap_or(0));
                Op::ClientCommand(cmd, inp.bytes(n).to_vec())
            }
            15 => Op::BackendOther(inp.u8()?, inp.u8().unwrap_or(2)),
            16 => Op::NoBackendSocket,
            _ => Op::ClientLoginFill(inp.u8()?, inp.u8()?, inp.u8().unwrap_or(0)),
        })
    }
}

/// The backend socket the driver has open for the pair.
struct Socket {
    attempt: u32,
    server: usize,
    connected: bool,
}

/// Everything the event loop would own for one pair.
struct World {
    cfg: Config,
    pools: Pools,
    bufs: BufPool,
    decoy: Secret,
    now: Instant,
    salt_n: u32,
    /// The last salt the pair was given (greeting or AuthSwitchRequest).
    last_salt: [u8; 20],
    warnings: RateLimit,
    stats: Stats,
}

impl World {
    fn with<R>(&mut self, f: impl FnOnce(&mut Ctx) -> R) -> R {
        let World { cfg, pools, bufs, decoy, now, salt_n, last_salt, warnings, stats } = self;
        let mut salt = || {
            *salt_n = salt_n.wrapping_add(1);
            let raw: [u8; 20] = std::array::from_fn(|i| {
                (salt_n.wrapping_mul(0x9E37_79B9) >> (i % 4 * 8)) as u8 ^ i as u8
            });
            *last_salt = scramble::salt_from_random(raw);
            *last_salt
        };
        let mut ctx = Ctx {
            now: *now,
            cfg,
            pools,
            bufs,
            salt: &mut salt,
            decoy,
            login_warnings: warnings,
            stats,
        };
        f(&mut ctx)
    }
}

/// Bytes `put_lenenc_int` takes for `n`.
fn lenenc_len(n: usize) -> usize {
    match n {
        0..=250 => 1,
        251..=0xFFFF => 3,
        0x1_0000..=0xFF_FFFF => 4,
        _ => 9,
    }
}

/// A HandshakeResponse41. `a`: user (low 3 bits), wrong password (bit 3),
/// plugin (bits 4-5), database (bit 6), attributes (bit 7). `b`: flags to
/// add or drop. `c`: sequence id when `b`'s top bits are both set, else 1.
/// With `fill`, attributes pad the payload to that many bytes (when it can).
fn login_packet(
    a: u8,
    b: u8,
    c: u8,
    salt: &[u8],
    fill: Option<usize>,
) -> (Vec<u8>, bool, &'static [u8]) {
    let user = USERS[usize::from(a & 7) % USERS.len()];
    let wrong = a & 8 != 0;
    let plugin = PLUGINS[usize::from(a >> 4 & 3)];
    let password: &[u8] = if user == b"nopw" { b"" } else { PW };
    let auth = match (wrong, plugin == NATIVE || plugin.is_empty()) {
        (false, true) => token(password, salt),
        (false, false) => vec![1; 32], // a token for another plugin
        (true, _) if plugin == b"mysql_clear_password" => PW.to_vec(),
        (true, _) => token(b"wrong", salt),
    };
    let mut flags = caps::PROTOCOL_41
        | caps::SECURE_CONNECTION
        | caps::PLUGIN_AUTH
        | caps::LONG_PASSWORD
        | caps::MULTI_RESULTS
        | caps::TRANSACTIONS;
    for (bit, flag) in [
        (0, caps::PLUGIN_AUTH_LENENC_DATA),
        (1, caps::DEPRECATE_EOF),
        (2, caps::SSL),
        (3, caps::COMPRESS),
        (4, caps::SESSION_TRACK),
    ] {
        if b >> bit & 1 != 0 {
            flags |= flag;
        }
    }
    if b & 0x20 != 0 {
        flags &= !caps::PLUGIN_AUTH;
    }
    let db = a & 0x40 != 0;
    let attrs = a & 0x80 != 0 || fill.is_some();
    if db {
        flags |= caps::CONNECT_WITH_DB;
    }
    if attrs {
        flags |= caps::CONNECT_ATTRS;
    }
    let mut fields = handshake::ResponseFields {
        capabilities: flags,
        // MariaDB's extended capabilities, sent when the flags clear
        // CLIENT_MYSQL.
        ext: 0x1d,
        max_packet: 16 << 20,
        charset: 45,
        user,
        auth: &auth,
        database: db.then_some(&b"app"[..]),
        plugin,
        attrs: None,
    };
    let mut kv = Vec::new();
    if attrs {
        // Everything but the attributes, to size the padding below.
        let p = handshake::encode_response(&fields);
        put_lenenc_bytes(&mut kv, b"_client_name");
        put_lenenc_bytes(&mut kv, b"fuzz");
        if let Some(total) = fill {
            // One more attribute, "_pad", whose value makes the payload
            // `total` bytes: find its length given the length prefixes.
            let fixed = p.len() + kv.len() + 1 + 4;
            let widths = [1, 3, 4, 9];
            let pad = widths
                .iter()
                .flat_map(|&outer| widths.iter().map(move |&inner| (outer, inner)))
                .find_map(|(outer, inner)| {
                    let v = total.checked_sub(fixed + outer + inner)?;
                    let kv_len = kv.len() + 5 + inner + v;
                    (lenenc_len(v) == inner && lenenc_len(kv_len) == outer).then_some(v)
                });
            if let Some(v) = pad {
                put_lenenc_bytes(&mut kv, b"_pad");
                put_lenenc_bytes(&mut kv, &vec![b'p'; v]);
            }
        }
        fields.attrs = Some(&kv);
    }
    let p = handshake::encode_response(&fields);
    let seq = if b & 0xC0 == 0xC0 { c } else { 1 };
    // A right token for a configured account (not a token for another
    // plugin, which the proxy answers with a switch).
    let proves = !wrong
        && (plugin == NATIVE || plugin.is_empty())
        && (user == b"app_rw" || user == b"app_ro");
    (frame(seq, &p), proves, user)
}

/// A backend HandshakeV10. `a`: capability variant (low 2 bits), salt
/// length variant (bits 2-3), sequence id 0 unless bit 4, plugin (bit 5).
fn greeting_packet(a: u8, salt_byte: u8) -> Vec<u8> {
    let mut c = caps::RELAYABLE & !caps::LONG_PASSWORD;
    match a & 3 {
        1 => c &= !caps::DEPRECATE_EOF,
        2 => c &= !(caps::CONNECT_ATTRS | caps::PLUGIN_AUTH_LENENC_DATA),
        3 => c &= !(caps::SECURE_CONNECTION | caps::PLUGIN_AUTH),
        _ => {}
    }
    let salt = [salt_byte; 20];
    let mut g = handshake::build_greeting("5.5.5-10.11.6-MariaDB", 42, &salt, c, 0x1d, 45);
    match a >> 2 & 3 {
        1 => g.truncate(g.len() / 2),
        2 => g.push(0),
        _ => {}
    }
    if a & 0x20 != 0 {
        let at = g.len() - NATIVE.len() - 1;
        g.truncate(at);
        g.extend_from_slice(b"caching_sha2_password\0");
    }
    frame(if a & 0x10 != 0 { a } else { 0 }, &g)
}

struct Driver {
    w: World,
    pair: Pair,
    socket: Option<Socket>,
    /// Sent by the client, not read by the proxy yet.
    client_sock: VecDeque<u8>,
    /// Sent by the backend, not read by the proxy yet.
    backend_sock: VecDeque<u8>,
    /// A right token for a configured account with a password was sent.
    proved: bool,
    buffer_size: usize,
}

impl Driver {
    fn client_sends(&mut self, bytes: &[u8]) {
        self.client_sock.extend(bytes);
    }

    fn backend_sends(&mut self, bytes: &[u8]) {
        // Nothing to send on without a connected socket.
        if self.socket.as_ref().is_some_and(|s| s.connected) {
            self.backend_sock.extend(bytes);
        }
    }

    /// One pass of the event loop's pumps: read what may be read, react,
    /// reconcile the backend socket. Returns true if anything moved.
    fn pump(&mut self) -> bool {
        let mut moved = false;
        let Driver { w, pair, client_sock, backend_sock, socket, .. } = self;
        if !client_sock.is_empty() && pair.may_read(Side::Client) && !pair.up.is_full() {
            let (n, before) = w.with(|ctx| {
                pair.up.attach(ctx.bufs);
                let before = pair.up.len();
                let (a, b) = client_sock.as_slices();
                let mut n = pair.up.push(a);
                if n == a.len() {
                    n += pair.up.push(b);
                }
                (n, before)
            });
            client_sock.drain(..n);
            if n > 0 {
                w.with(|ctx| {
                    pair.client_bytes_arrived(before, n, ctx);
                    // While relaying, the scan above is all the loop does.
                    if !pair.is_relaying() {
                        pair.handle(Event::ClientData, ctx);
                    }
                });
                moved = true;
            }
            w.with(|ctx| pair.up.release_if_empty(ctx.bufs));
        }
        let connected = socket.as_ref().is_some_and(|s| s.connected);
        if connected
            && !backend_sock.is_empty()
            && pair.may_read(Side::Backend)
            && !pair.down.is_full()
        {
            let (n, before) = w.with(|ctx| {
                pair.down.attach(ctx.bufs);
                let before = pair.down.len();
                let (a, b) = backend_sock.as_slices();
                let mut n = pair.down.push(a);
                if n == a.len() {
                    n += pair.down.push(b);
                }
                (n, before)
            });
            backend_sock.drain(..n);
            if n > 0 {
                w.with(|ctx| {
                    pair.backend_bytes_arrived(before, n, ctx);
                    if !pair.is_relaying() {
                        pair.handle(Event::BackendData, ctx);
                    }
                });
                moved = true;
            }
            w.with(|ctx| pair.down.release_if_empty(ctx.bufs));
        }
        moved | self.reconcile()
    }

    /// Opens or drops the backend socket to match `Pair::backend`.
    fn reconcile(&mut self) -> bool {
        let want = self.pair.backend();
        let have = self.socket.as_ref().map(|s| (s.attempt, s.server));
        if want == have {
            return false;
        }
        if let Some(old) = self.socket.take() {
            self.w.pools.released(old.server);
            self.backend_sock.clear();
        }
        if let Some((attempt, server)) = want {
            assert!(server < self.w.pools.servers().len());
            // Checked as a socket opens: during a change of user the kept
            // socket's pair already names the user being checked.
            let user = self.pair.user.as_deref().expect("a backend only for a named user");
            assert!(self.w.cfg.user(user).is_some(), "backend asked for an unknown user {user:?}");
            assert!(
                self.proved || user == b"nopw",
                "backend asked for {user:?} without a right password"
            );
            self.w.pools.opened(server);
            self.socket = Some(Socket { attempt, server, connected: false });
        }
        true
    }

    fn check(&self) {
        let bs = self.buffer_size;
        for ring in [&self.pair.up, &self.pair.down] {
            assert!(ring.len() <= ring.capacity(), "ring holds more than its capacity");
            assert!(ring.capacity() == 0 || ring.capacity() == bs, "ring of a foreign size");
        }
        assert!(
            self.pair.to_backend.len() <= bs + 64,
            "login queue toward the backend grew to {}",
            self.pair.to_backend.len()
        );
    }

    fn step(&mut self, op: Op) {
        if tracing() {
            eprintln!("op {op:?}");
        }
        match op {
            Op::ClientRaw(b) => self.client_sends(&b),
            Op::BackendRaw(b) => self.backend_sends(&b),
            Op::ClientLogin(a, b, c) => {
                let (pkt, proves, _) = login_packet(a, b, c, &self.w.last_salt, None);
                self.proved |= proves;
                self.client_sends(&pkt);
            }
            Op::ClientLoginFill(a, b, less) => {
                let total = (self.buffer_size - 4).saturating_sub(usize::from(less));
                let (pkt, proves, _) = login_packet(a, b, 1, &self.w.last_salt, Some(total));
                self.proved |= proves;
                self.client_sends(&pkt);
            }
            Op::ClientSwitchAnswer(a, seq) => {
                let salt = self.w.last_salt;
                let answer = match a % 4 {
                    0 => {
                        self.proved = true;
                        token(PW, &salt)
                    }
                    1 => token(b"wrong", &salt),
                    2 => token(PW, &salt)[..19].to_vec(),
                    _ => Vec::new(),
                };
                self.client_sends(&frame(if a & 4 != 0 { seq } else { 3 }, &answer));
            }
            Op::BackendGreeting(a, salt_byte) => self.backend_sends(&greeting_packet(a, salt_byte)),
            Op::BackendOk(seq) => self.backend_sends(&frame(seq, &[0, 0, 0, 2, 0, 0, 0])),
            Op::BackendErr(seq, code) => {
                let err =
                    myroute::protocol::errors::err_packet(seq, code, "28000", "Access denied");
                self.backend_sends(&err);
            }
            Op::BackendSwitch(a, seq) => {
                let mut p = vec![0xFE];
                match a % 4 {
                    0 => {
                        p.extend_from_slice(NATIVE);
                        p.push(0);
                        p.extend_from_slice(&[b'n'; 20]);
                        p.push(0);
                    }
                    1 => {
                        p.extend_from_slice(NATIVE);
                        p.push(0);
                        p.extend_from_slice(&[b'n'; 8]);
                    }
                    2 => {
                        p.extend_from_slice(b"caching_sha2_password\0");
                        p.extend_from_slice(&[b'n'; 20]);
                    }
                    _ => {} // OldAuthSwitchRequest
                }
                self.backend_sends(&frame(seq, &p));
            }
            Op::BackendOther(first, seq) => self.backend_sends(&frame(seq, &[first, 4])),
            Op::BackendConnected => {
                if let Some(s) = self.socket.as_mut().filter(|s| !s.connected) {
                    s.connected = true;
                    let Driver { w, pair, .. } = self;
                    w.with(|ctx| pair.handle(Event::BackendConnected, ctx));
                }
            }
            Op::BackendFailed => {
                if self.socket.is_some() {
                    let Driver { w, pair, .. } = self;
                    w.with(|ctx| {
                        pair.handle(Event::BackendFailed("closed the connection".into()), ctx)
                    });
                    // The loop drops this socket whatever the pair wants next.
                    if let Some(old) = self.socket.take() {
                        self.w.pools.released(old.server);
                        self.backend_sock.clear();
                    }
                }
            }
            Op::NoBackendSocket => {
                let just_opened = self.socket.as_ref().is_some_and(|s| !s.connected);
                if just_opened {
                    if let Some(old) = self.socket.take() {
                        self.w.pools.released(old.server);
                    }
                    let Driver { w, pair, .. } = self;
                    w.with(|ctx| {
                        pair.handle(Event::NoBackendSocket("Too many open files".into()), ctx)
                    });
                }
            }
            Op::ClientClosed(how) => {
                let err = match how % 3 {
                    0 => None,
                    1 => Some(std::io::ErrorKind::ConnectionReset),
                    _ => Some(std::io::ErrorKind::TimedOut),
                };
                let Driver { w, pair, .. } = self;
                w.with(|ctx| pair.handle(Event::ClientClosed(err), ctx));
            }
            Op::Advance(ms) => {
                self.w.now += Duration::from_millis(u64::from(ms) * 4);
                if self.pair.deadline().is_some_and(|d| d <= self.w.now) {
                    let Driver { w, pair, .. } = self;
                    w.with(|ctx| pair.handle(Event::Timeout, ctx));
                }
            }
            Op::ClientReads(n) => {
                let n = if n == 0 { usize::MAX } else { usize::from(n) * 8 };
                let n = n.min(self.pair.down.len());
                self.pair.down.consume(n);
                let Driver { w, pair, .. } = self;
                w.with(|ctx| {
                    pair.client_bytes_sent(n, ctx);
                    pair.down.release_if_empty(ctx.bufs);
                });
            }
            Op::BackendReads(n) => {
                if self.socket.as_ref().is_some_and(|s| s.connected) {
                    let mut n = if n == 0 { usize::MAX } else { usize::from(n) * 8 };
                    let k = n.min(self.pair.to_backend.len());
                    self.pair.to_backend.drain(..k);
                    n -= k;
                    if self.pair.may_relay_up() && n > 0 {
                        // As the loop does: up to a held command, then the
                        // pair hears of it.
                        let limit =
                            if self.pair.is_relaying() { self.pair.up_limit() } else { usize::MAX };
                        let k = n.min(self.pair.up.len()).min(limit);
                        self.pair.up.consume(k);
                        let Driver { w, pair, .. } = self;
                        w.with(|ctx| {
                            if pair.is_relaying() {
                                pair.up_sent(ctx);
                            }
                            pair.up.release_if_empty(ctx.bufs);
                        });
                    }
                }
            }
            Op::ClientCommand(cmd, rest) => {
                let mut p = vec![cmd];
                p.extend_from_slice(&rest);
                self.client_sends(&frame(0, &p));
            }
        }
        self.reconcile();
        self.check();
        // The loop serves a pair until nothing moves (bounded per pass).
        for _ in 0..8 {
            if self.pair.finished().is_some() || !self.pump() {
                break;
            }
            self.check();
        }
        if tracing() {
            eprintln!(
                "   relaying={} finished={:?} backend={:?} socket={:?} up={} down={} to_backend={}",
                self.pair.is_relaying(),
                self.pair.finished().map(|r| r.to_string()),
                self.pair.backend(),
                self.socket.as_ref().map(|s| (s.attempt, s.server, s.connected)),
                self.pair.up.len(),
                self.pair.down.len(),
                self.pair.to_backend.len()
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let Some(setup) = inp.u8() else {
        return;
    };
    let cfg = config::parse(&config_text(setup)).expect("the fuzz configuration parses");
    let mut pools = Pools::from_config(&cfg);
    if setup & 2 != 0 {
        for s in 0..pools.servers().len() {
            let mut c = caps::RELAYABLE & !caps::LONG_PASSWORD;
            if setup & 4 != 0 {
                c &= !caps::DEPRECATE_EOF;
            }
            // With setup bit 7, MariaDB's extended capabilities too.
            let ext = if setup & 0x80 != 0 { 0x1d } else { 0 };
            let info = BackendInfo {
                version: "10.11.6-MariaDB".into(),
                capabilities: c,
                ext,
                charset: 45,
            };
            pools.learned(s, info);
        }
    }
    let buffer_size = cfg.buffer_size;
    let mut w = World {
        bufs: BufPool::new(buffer_size, 4),
        cfg,
        pools,
        decoy: Secret([0x42; 20]),
        now: Instant::now(),
        salt_n: u32::from(setup),
        last_salt: [0; 20],
        warnings: RateLimit::new(Duration::from_secs(1), 10),
        stats: Stats::new(Instant::now()),
    };
    let pair = w.with(|ctx| {
        Pair::new(
            1,
            "127.0.0.1:40000".parse().unwrap(),
            "127.0.0.1:3306".parse().unwrap(),
            false,
            ctx,
        )
    });
    let mut d = Driver {
        w,
        pair,
        socket: None,
        client_sock: VecDeque::new(),
        backend_sock: VecDeque::new(),
        proved: false,
        buffer_size,
    };
    d.check();
    for _ in 0..MAX_OPS {
        let Some(op) = Op::read(&mut inp) else {
            break;
        };
        d.step(op);
        if d.pair.finished().is_some() {
            break;
        }
    }
    // The loop's close: give the storage back.
    let Driver { mut w, mut pair, .. } = d;
    w.with(|ctx| {
        pair.up.clear(ctx.bufs);
        pair.down.clear(ctx.bufs);
    });
});
