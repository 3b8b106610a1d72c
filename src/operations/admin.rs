//! The admin console: one MySQL-protocol session on `admin.listen`, spoken
//! by myroute itself (it never routes to a backend).
//!
//! ```text
//!  new ──greeting──▶ AWAITING-RESPONSE ──plugin not native──▶ AWAITING-SWITCH
//!                          │ token checked                         │ token checked
//!                          ├───────────────────────────────────────┘
//!                 wrong ──▶ ENDED (ERR 1045)
//!                 right ──▶ READY ──com::QUERY with a command──▶ EXECUTING
//!                             ▲  (SET, version_comment,            │ reply()
//!                             │   PING answered here)              │
//!                             └────────────────────────────────────┘
//!                           com::QUIT, oversize packet, bad sequence ──▶ ENDED
//! ```
//!
//! Heads up (MySQL "Connection Phase", "com::QUERY Response", "Text
//! Resultset"; MariaDB "Result Set Packets"):
//! - the login is the main port's: HandshakeV10, HandshakeResponse41, an
//!   AuthSwitchRequest to mysql_native_password if the client started with
//!   another plugin, then OK or ERR;
//! - a text result set is: column count, one ColumnDefinition41 per column,
//!   EOF, one row per packet, EOF. A client that negotiated DEPRECATE_EOF
//!   gets no EOF after the columns and an OK packet with header 0xFE at the
//!   end instead of the last EOF;
//! - sequence ids restart at 0 with each command and go up by one per packet
//!   of the reply (wrapping at 256).
//!
//! Sans-io: the event loop appends socket bytes to an input `Vec`, calls
//! [`Session::feed`], writes [`Session::out`], executes the [`Command`] it
//! gets back (it owns the proxy state) and hands the answer to
//! [`Session::reply`]. Nothing here touches a socket, a clock or a log.

use crate::config::ClientTls;
use crate::protocol::accept::{self, Accept, Accounts, Denial, Step};
use crate::protocol::constants::{caps, com, status};
use crate::protocol::errors::{ConsoleError, Refusal};
use crate::protocol::scramble::{self, Secret, LEN as SALT_LEN};
use crate::protocol::wire::{
    self, put_lenenc_bytes, put_lenenc_int, put_packet, take_packet, Queue,
};
use std::net::IpAddr;

/// The admin account, as the current configuration has it: `admin.user`
/// and the stage2 parsed from `admin.password`.
pub struct AdminAuth<'a> {
    pub user: &'a str,
    pub stage2: &'a Secret,
}

/// A console command that needs the proxy's state: the loop executes it and
/// answers with [`Session::reply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    ShowServers,
    ShowPools,
    ShowClients,
    ShowStats,
    ShowConfig,
    ShowVersion,
    /// HELP or SHOW HELP: answer with [`help_table`].
    ShowHelp,
    /// DRAIN SERVER 'host:port' (the address as typed, quotes removed).
    Drain(String),
    /// ENABLE SERVER 'host:port'.
    Enable(String),
    /// KILL [CONNECTION] id.
    Kill(u32),
    Reload,
    Shutdown,
}

/// What one statement turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Executed by the loop.
    Command(Command),
    /// Any SET statement: acknowledged with OK, changes nothing.
    Set,
    /// `select @@version_comment limit 1` (the mariadb and mysql CLIs send
    /// it when they start) and the few other variables client libraries
    /// read when they connect: one row, one column per variable.
    Variables(Vec<Variable>),
    /// `select DATABASE(), USER() limit 1`: what the CLI's `status` asks.
    Whoami,
}

/// A server variable the console answers `SELECT @@name` for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variable {
    VersionComment,
    /// Read by the Rust `mysql` crate to size its packets.
    MaxAllowedPacket,
    /// Read by client libraries that prefer a Unix socket: empty, so they
    /// stay on TCP.
    Socket,
}

impl Variable {
    fn parse(word: &str) -> Option<Variable> {
        match word.to_ascii_lowercase().as_str() {
            "@@version_comment" => Some(Variable::VersionComment),
            "@@max_allowed_packet" => Some(Variable::MaxAllowedPacket),
            "@@socket" => Some(Variable::Socket),
            _ => None,
        }
    }

    fn column(self) -> Column {
        match self {
            Variable::VersionComment => Column::text("@@version_comment"),
            Variable::MaxAllowedPacket => Column::num("@@max_allowed_packet"),
            Variable::Socket => Column::text("@@socket"),
        }
    }

    fn value(self) -> String {
        match self {
            Variable::VersionComment => VERSION_COMMENT.to_string(),
            Variable::MaxAllowedPacket => MAX_PACKET.to_string(),
            Variable::Socket => String::new(),
        }
    }
}

/// `SELECT @@a, @@b [LIMIT 1]` (as words after SELECT, LIMIT 1 removed):
/// the variables, if every one is known.
fn variables(words: &[&str]) -> Option<Vec<Variable>> {
    let words = match words {
        [rest @ .., limit, "1"] if limit.eq_ignore_ascii_case("limit") => rest,
        w => w,
    };
    let list = words.join(" ");
    let vars: Option<Vec<Variable>> = list.split(',').map(|w| Variable::parse(w.trim())).collect();
    vars.filter(|v| !v.is_empty())
}

/// One result-set column. Numeric columns are sent as LONGLONG, so drivers
/// return integers; their values must be decimal integers (or NULL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub numeric: bool,
}

impl Column {
    pub fn text(name: &'static str) -> Column {
        Column { name, numeric: false }
    }

    pub fn num(name: &'static str) -> Column {
        Column { name, numeric: true }
    }
}

/// A result set to send. `None` is SQL NULL. A row with fewer values than
/// columns is padded with NULLs; extra values are dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl Table {
    pub fn new(columns: Vec<Column>) -> Table {
        Table { columns, rows: Vec::new() }
    }
}

/// The loop's answer to a [`Command`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Table(Table),
    /// OK; a non-empty text is shown by the CLI after "Query OK".
    Ok(String),
    /// ERR, typed: code, SQLSTATE and text come from the errors table.
    Err(ConsoleError),
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// com::QUIT.
    Quit,
    /// Wrong user or password, or no console account configured (counts as
    /// a failed admin login).
    AccessDenied,
    /// ERR sent for a packet that breaks the protocol; the text says which.
    ProtocolError(&'static str),
}

/// Capabilities offered in the greeting. No SSL, no compression, no
/// session tracking: the session writes every packet itself.
pub const CAPABILITIES: u32 = caps::LONG_PASSWORD
    | caps::FOUND_ROWS
    | caps::LONG_FLAG
    | caps::CONNECT_WITH_DB
    | caps::PROTOCOL_41
    | caps::TRANSACTIONS
    | caps::SECURE_CONNECTION
    | caps::MULTI_STATEMENTS
    | caps::MULTI_RESULTS
    | caps::PLUGIN_AUTH
    | caps::CONNECT_ATTRS
    | caps::PLUGIN_AUTH_LENENC_DATA
    | caps::DEPRECATE_EOF;

/// utf8mb4_general_ci: the greeting's character set and the text columns'.
const CHARSET_UTF8MB4: u8 = 45;
/// The "binary" character set, which numeric columns carry.
const CHARSET_BINARY: u16 = 63;

/// The largest packet the console accepts (a login or a statement).
pub const MAX_PACKET: usize = 64 * 1024;

/// Column types and flags (MySQL `include/mysql_com.h`, `field_types.h`).
const TYPE_LONGLONG: u8 = 0x08;
const TYPE_VAR_STRING: u8 = 0xFD;
const UNSIGNED_FLAG: u16 = 0x0020;
const BINARY_FLAG: u16 = 0x0080;
const NUM_FLAG: u16 = 0x8000;

/// What the mariadb CLI prints as the server's description at start.
pub const VERSION_COMMENT: &str = "myroute admin console";

/// ERR 1064 text for a statement that is not a console command.
pub const UNKNOWN_COMMAND: &str = "unknown admin command; commands: SHOW SERVERS, SHOW POOLS, \
SHOW CLIENTS, SHOW STATS, SHOW CONFIG, SHOW VERSION, DRAIN SERVER 'host:port', \
ENABLE SERVER 'host:port', KILL id, RELOAD, SHUTDOWN";

/// The version the greeting announces. Drivers parse it as `X.Y.Z...`
/// (PyMySQL and MySQL Connector/Python refuse to connect otherwise), so it
/// starts with a MySQL version number, as the main port's fallback does.
pub fn server_version() -> String {
    format!("8.0.0-myroute-{}-admin", env!("CARGO_PKG_VERSION"))
}

/// The rows of HELP: `(command, description)`.
pub const HELP: &[(&str, &str)] = &[
    ("SHOW SERVERS", "servers of every pool: state, health check, connections"),
    ("SHOW POOLS", "pools: role, fallback, servers up, connections, clients"),
    ("SHOW CLIENTS", "client connections: user, address, pool, server, state, bytes"),
    ("SHOW STATS", "counters since start"),
    ("SHOW CONFIG", "the effective configuration (password hashes hidden)"),
    ("SHOW VERSION", "myroute's version"),
    ("DRAIN SERVER 'host:port'", "send no new connection to a server; existing ones go on"),
    ("ENABLE SERVER 'host:port'", "undo DRAIN SERVER"),
    ("KILL id", "close a client connection and its backend connection"),
    ("RELOAD", "reread the configuration file"),
    ("SHUTDOWN", "stop gracefully, as on SIGTERM"),
    ("HELP", "this list"),
];

/// Parses one com::QUERY statement. Keywords are case-insensitive,
/// whitespace runs count as one space, trailing `;` and whitespace are
/// ignored. `Err` is the ERR 1064 naming the commands.
pub fn parse_command(sql: &[u8]) -> Result<Parsed, ConsoleError> {
    let unknown = || ConsoleError::UnknownStatement(UNKNOWN_COMMAND);
    let sql = std::str::from_utf8(sql).map_err(|_| unknown())?;
    let sql = sql.trim_end_matches(|c: char| c == ';' || c.is_ascii_whitespace());
    let words: Vec<&str> = sql.split_ascii_whitespace().collect();
    let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    let upper: Vec<&str> = upper.iter().map(String::as_str).collect();
    if upper.first() == Some(&"SELECT") {
        if let Some(vars) = variables(&words[1..]) {
            return Ok(Parsed::Variables(vars));
        }
    }
    let command = match upper.as_slice() {
        ["SET", ..] => return Ok(Parsed::Set),
        ["SELECT", "DATABASE(),", "USER()"] | ["SELECT", "DATABASE(),", "USER()", "LIMIT", "1"] => {
            return Ok(Parsed::Whoami)
        }
        ["HELP"] | ["SHOW", "HELP"] => Command::ShowHelp,
        ["SHOW", "SERVERS"] => Command::ShowServers,
        ["SHOW", "POOLS"] => Command::ShowPools,
        ["SHOW", "CLIENTS"] => Command::ShowClients,
        ["SHOW", "STATS"] => Command::ShowStats,
        ["SHOW", "CONFIG"] => Command::ShowConfig,
        ["SHOW", "VERSION"] => Command::ShowVersion,
        ["RELOAD"] => Command::Reload,
        ["SHUTDOWN"] => Command::Shutdown,
        // The address (the last word) keeps the case it was typed in.
        ["DRAIN", "SERVER", _] => Command::Drain(address(&words).ok_or_else(unknown)?),
        ["ENABLE", "SERVER", _] => Command::Enable(address(&words).ok_or_else(unknown)?),
        ["KILL", id] | ["KILL", "CONNECTION", id] => {
            Command::Kill(parse_id(id).ok_or_else(unknown)?)
        }
        _ => return Err(unknown()),
    };
    Ok(Parsed::Command(command))
}

/// The last word, `'x'`, `"x"`, `` `x` `` or bare `x`; the inside must be
/// non-empty and hold no quote character.
fn address(words: &[&str]) -> Option<String> {
    let word = words.last()?;
    const QUOTES: [char; 3] = ['\'', '"', '`'];
    let inner = QUOTES
        .iter()
        .find_map(|&q| word.strip_prefix(q).and_then(|w| w.strip_suffix(q)))
        .unwrap_or(word);
    (!inner.is_empty() && !inner.contains(QUOTES)).then(|| inner.to_string())
}

/// A connection id: decimal digits only, within `u32`.
fn parse_id(word: &str) -> Option<u32> {
    if word.is_empty() || !word.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    word.parse().ok()
}

/// The HELP result set (the answer to [`Command::ShowHelp`]).
pub fn help_table() -> Table {
    Table {
        columns: vec![Column::text("command"), Column::text("description")],
        rows: HELP.iter().map(|(c, d)| vec![Some(c.to_string()), Some(d.to_string())]).collect(),
    }
}

/// Where the session is.
enum State {
    /// Greeting sent; the login exchange is under way.
    LoggingIn(Box<Accept>),
    /// Logged in; waiting for a command.
    Ready,
    /// A command was handed to the loop; waiting for `reply`.
    Executing,
    /// Nothing more is read; close once `out` is flushed.
    Ended(End),
}

/// The console account as the login checks it: one user; any other name
/// is checked against the same hash, so it costs the same as a wrong
/// password.
impl Accounts for AdminAuth<'_> {
    fn stage2(&self, user: &[u8]) -> Option<Option<&Secret>> {
        scramble::ct_eq(user, self.user.as_bytes()).then_some(Some(self.stage2))
    }
}

/// No console account: every login is refused (after the same work).
struct NoAccount;

/// What a login is checked against when there is no console account.
const DECOY: Secret = Secret([0x5A; SALT_LEN]);

impl Accounts for NoAccount {
    fn stage2(&self, _: &[u8]) -> Option<Option<&Secret>> {
        None
    }
}

/// One admin console connection.
///
/// Contract with the loop:
/// - after appending bytes to `input`, call [`feed`](Session::feed); it
///   consumes every whole packet it can and returns at most one command;
/// - when it returns a command, execute it and call
///   [`reply`](Session::reply) before feeding again; then call `feed` again
///   even if no new byte arrived: `input` may already hold the next
///   statement (a client may pipeline). While a command is pending, `feed`
///   consumes nothing;
/// - write `out` to the socket (and clear what was written); once
///   [`finished`](Session::finished) and `out` is flushed, close. A session
///   still logging in is bounded by the loop (e.g. `handshake_timeout`).
pub struct Session {
    pub id: u32,
    /// Bytes for the socket.
    pub out: Vec<u8>,
    /// The peer's address, as `USER()` names it.
    host: String,
    state: State,
    /// The client's capabilities, narrowed to ours.
    client_caps: u32,
    /// The admin user, once logged in.
    user: Option<String>,
    /// The user name the client sent, for the loop's log of a denied login.
    attempted: Option<Vec<u8>>,
    /// The client sent an SSLRequest: the loop starts TLS on the socket.
    tls_wanted: bool,
}

impl Session {
    /// A new session for a connection just accepted from `peer`; the
    /// HandshakeV10 greeting (version [`server_version`]) is queued in `out`.
    /// `tls` is the main port's setting, which the console follows.
    pub fn new(id: u32, salt: [u8; SALT_LEN], peer: IpAddr, tls: ClientTls) -> Session {
        let version = server_version();
        let ssl = if tls.offered() { caps::SSL } else { 0 };
        let greeting = accept::Greeting {
            version: &version,
            connection_id: id,
            capabilities: CAPABILITIES | ssl,
            ext: 0,
            charset: CHARSET_UTF8MB4,
            tls_required: tls == ClientTls::Required,
        };
        let mut out = Vec::with_capacity(128);
        let login = Accept::new(&greeting, salt, peer.to_string(), &mut out);
        Session {
            id,
            out,
            host: peer.to_string(),
            state: State::LoggingIn(Box::new(login)),
            client_caps: 0,
            user: None,
            attempted: None,
            tls_wanted: false,
        }
    }

    /// True once nothing more will be read: close after flushing `out`.
    pub fn finished(&self) -> bool {
        matches!(self.state, State::Ended(_))
    }

    /// How the session ended, once it has.
    pub fn end(&self) -> Option<&End> {
        match &self.state {
            State::Ended(e) => Some(e),
            _ => None,
        }
    }

    /// The admin user, once logged in (for logs).
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The user name the client sent at login, logged in or not (peer
    /// bytes: print with `access::printable`).
    pub fn attempted_user(&self) -> Option<&[u8]> {
        self.attempted.as_deref()
    }

    /// True once if the client asked for TLS: the loop runs the handshake
    /// (what `input` still holds are its first records), then calls
    /// [`Session::tls_started`].
    pub fn take_tls_request(&mut self) -> bool {
        std::mem::take(&mut self.tls_wanted)
    }

    /// The TLS handshake is done: the login goes on inside it.
    pub fn tls_started(&mut self) {
        if let State::LoggingIn(login) = &mut self.state {
            login.tls_started();
        }
    }

    /// True while a command returned by `feed` waits for `reply`.
    pub fn executing(&self) -> bool {
        matches!(self.state, State::Executing)
    }

    /// Consumes whole packets from the front of `input` (bytes consumed are
    /// zeroed, then removed). Answers what the session can answer itself in
    /// `out`; returns the first command the loop must execute. `auth` is the
    /// console account of the current configuration (`None`: every login is
    /// refused); `salt` gives a fresh salt for an AuthSwitchRequest.
    pub fn feed(
        &mut self,
        input: &mut Vec<u8>,
        auth: Option<&AdminAuth>,
        salt: &mut dyn FnMut() -> [u8; SALT_LEN],
    ) -> Option<Command> {
        loop {
            if !matches!(self.state, State::LoggingIn(_) | State::Ready) {
                break None;
            }
            let command = match take_packet(input, MAX_PACKET) {
                Ok(None) => break None,
                Ok(Some((seq, mut payload))) => self.on_packet(seq, &mut payload, auth, salt),
                Err(e) => {
                    let seq = wire::peek_header(input).map_or(0, |(_, seq)| seq);
                    self.too_large(e, seq);
                    None
                }
            };
            if self.finished() {
                // Nothing after the end is read; it may hold a token.
                input.consume_front(input.len());
                break None;
            }
            if self.tls_wanted {
                // What follows the SSLRequest is TLS, for the loop.
                break None;
            }
            if command.is_some() {
                break command;
            }
        }
    }

    /// Encodes the loop's answer to the command `feed` returned. Does
    /// nothing if no command is pending.
    pub fn reply(&mut self, r: Reply) {
        if !self.executing() {
            return;
        }
        self.state = State::Ready;
        match r {
            Reply::Table(t) => self.result_set(&t),
            Reply::Ok(info) => ok_packet(&mut self.out, 1, 0x00, &info),
            Reply::Err(e) => self.out.extend(e.packet(1)),
        }
    }

    /// One whole packet, by phase.
    fn on_packet(
        &mut self,
        seq: u8,
        payload: &mut [u8],
        auth: Option<&AdminAuth>,
        salt: &mut dyn FnMut() -> [u8; SALT_LEN],
    ) -> Option<Command> {
        match std::mem::replace(&mut self.state, State::Executing) {
            State::LoggingIn(mut login) => {
                let step = match auth {
                    Some(a) => login.on_packet(seq, payload, a, a.stage2, salt, &mut self.out),
                    None => login.on_packet(seq, payload, &NoAccount, &DECOY, salt, &mut self.out),
                };
                self.attempted = login.user().map(<[u8]>::to_vec);
                self.state = match step {
                    Step::Continue => State::LoggingIn(login),
                    Step::StartTls => {
                        self.tls_wanted = true;
                        State::LoggingIn(login)
                    }
                    Step::Verified(v) => {
                        self.client_caps = v.hello.capabilities;
                        self.user = Some(String::from_utf8_lossy(&v.hello.user).into_owned());
                        ok_packet(&mut self.out, v.seq, 0x00, "");
                        State::Ready
                    }
                    Step::Refused(Denial::AccessDenied) => State::Ended(End::AccessDenied),
                    Step::Refused(Denial::Protocol(what)) => State::Ended(End::ProtocolError(what)),
                    Step::Refused(Denial::Insecure) => State::Ended(End::ProtocolError("no TLS")),
                };
                None
            }
            State::Ready => self.on_command(seq, payload),
            other => {
                // Not reached: `feed` reads packets only in the states above.
                self.state = other;
                None
            }
        }
    }

    /// A packet of the command phase.
    fn on_command(&mut self, seq: u8, payload: &[u8]) -> Option<Command> {
        self.state = State::Ready;
        if seq != 0 {
            self.out_of_order(seq);
            return None;
        }
        let (&com, sql) = match payload.split_first() {
            Some(p) => p,
            None => (&0xFF, &[][..]), // an empty packet: no command at all
        };
        match com {
            com::QUIT => self.state = State::Ended(End::Quit),
            com::PING | com::INIT_DB => ok_packet(&mut self.out, 1, 0x00, ""),
            com::QUERY => match parse_command(sql) {
                Ok(Parsed::Command(c)) => {
                    self.state = State::Executing;
                    return Some(c);
                }
                Ok(Parsed::Set) => ok_packet(&mut self.out, 1, 0x00, ""),
                Ok(Parsed::Variables(vars)) => {
                    let mut t = Table::new(vars.iter().map(|v| v.column()).collect());
                    t.rows.push(vars.iter().map(|v| Some(v.value())).collect());
                    self.result_set(&t);
                }
                Ok(Parsed::Whoami) => {
                    let mut t =
                        Table::new(vec![Column::text("DATABASE()"), Column::text("USER()")]);
                    let user = format!("{}@{}", self.user().unwrap_or_default(), self.host);
                    t.rows.push(vec![None, Some(user)]);
                    self.result_set(&t);
                }
                Err(e) => self.out.extend(e.packet(1)),
            },
            _ => self.out.extend(ConsoleError::UnknownCommand.packet(1)),
        }
        None
    }

    fn out_of_order(&mut self, seq: u8) {
        self.out.extend(Refusal::PacketsOutOfOrder.packet(seq.wrapping_add(1)));
        self.state = State::Ended(End::ProtocolError("sequence id"));
    }

    /// A packet over [`MAX_PACKET`] (refused on its header, so its bytes
    /// are never buffered): ERR 1043 while logging in (as the main port
    /// answers), ER_NET_PACKET_TOO_LARGE after.
    fn too_large(&mut self, e: wire::Error, seq: u8) {
        self.state = match std::mem::replace(&mut self.state, State::Executing) {
            State::LoggingIn(mut login) => {
                login.bad_packet(e, &mut self.out);
                State::Ended(End::ProtocolError("packet too large"))
            }
            _ => {
                self.out.extend(ConsoleError::PacketTooLarge.packet(seq.wrapping_add(1)));
                State::Ended(End::ProtocolError("packet too large"))
            }
        };
    }

    /// A text result set (Text Resultset), sequence ids from 1.
    fn result_set(&mut self, t: &Table) {
        if t.columns.is_empty() {
            // A result set needs a column; an empty table is just OK.
            return ok_packet(&mut self.out, 1, 0x00, "");
        }
        let deprecate_eof = self.client_caps & caps::DEPRECATE_EOF != 0;
        let mut seq = 1u8;
        let mut next = || {
            let s = seq;
            seq = seq.wrapping_add(1);
            s
        };
        let mut p = Vec::with_capacity(64);
        put_lenenc_int(&mut p, t.columns.len() as u64);
        put_packet(&mut self.out, next(), &p);
        for (i, c) in t.columns.iter().enumerate() {
            let width = t
                .rows
                .iter()
                .filter_map(|r| r.get(i).and_then(Option::as_ref))
                .map(String::len)
                .max()
                .unwrap_or(0);
            p.clear();
            column_definition(&mut p, c, width);
            put_packet(&mut self.out, next(), &p);
        }
        if !deprecate_eof {
            put_packet(&mut self.out, next(), &eof_payload());
        }
        for row in &t.rows {
            p.clear();
            for i in 0..t.columns.len() {
                match row.get(i).and_then(Option::as_ref) {
                    Some(v) => put_lenenc_bytes(&mut p, v.as_bytes()),
                    None => p.push(0xFB), // NULL
                }
            }
            put_packet(&mut self.out, next(), &p);
        }
        if deprecate_eof {
            ok_packet(&mut self.out, next(), 0xFE, "");
        } else {
            put_packet(&mut self.out, next(), &eof_payload());
        }
    }
}

/// ColumnDefinition41 of a column whose longest value is `width` bytes.
fn column_definition(p: &mut Vec<u8>, c: &Column, width: usize) {
    put_lenenc_bytes(p, b"def"); // catalog
    put_lenenc_bytes(p, b""); // schema
    put_lenenc_bytes(p, b""); // table
    put_lenenc_bytes(p, b""); // org_table
    put_lenenc_bytes(p, c.name.as_bytes());
    put_lenenc_bytes(p, c.name.as_bytes()); // org_name
    put_lenenc_int(p, 0x0C); // length of the fixed fields below
    let (charset, kind, flags) = if c.numeric {
        // As MariaDB describes a BIGINT UNSIGNED expression.
        (CHARSET_BINARY, TYPE_LONGLONG, UNSIGNED_FLAG | BINARY_FLAG | NUM_FLAG)
    } else {
        (u16::from(CHARSET_UTF8MB4), TYPE_VAR_STRING, 0)
    };
    p.extend_from_slice(&charset.to_le_bytes());
    // column_length: an upper bound on the values' byte length, which
    // `mariadb --quick` uses as the display width.
    let length = u32::try_from(width.max(1)).unwrap_or(u32::MAX);
    p.extend_from_slice(&length.to_le_bytes());
    p.push(kind);
    p.extend_from_slice(&flags.to_le_bytes());
    p.push(0); // decimals
    p.extend_from_slice(&[0, 0]); // filler
}

/// EOF_Packet (PROTOCOL_41): warnings 0, status AUTOCOMMIT.
fn eof_payload() -> [u8; 5] {
    let s = status::AUTOCOMMIT.to_le_bytes();
    [0xFE, 0, 0, s[0], s[1]]
}

/// OK_Packet with `header` 0x00 (OK) or 0xFE (end of a result set under
/// DEPRECATE_EOF): no rows affected, status AUTOCOMMIT, no warnings, then
/// `info` when non-empty. The protocol documents info as `string<EOF>`
/// without SESSION_TRACK, but MySQL and MariaDB servers send it as
/// `string<lenenc>` and libmysqlclient / libmariadb read it that way.
fn ok_packet(out: &mut Vec<u8>, seq: u8, header: u8, info: &str) {
    let mut p = Vec::with_capacity(10 + info.len());
    p.push(header);
    put_lenenc_int(&mut p, 0); // affected rows
    put_lenenc_int(&mut p, 0); // last insert id
    p.extend_from_slice(&status::AUTOCOMMIT.to_le_bytes());
    p.extend_from_slice(&0u16.to_le_bytes()); // warnings
    if !info.is_empty() {
        // Keep the packet small whatever the info holds.
        let mut end = info.len().min(1024);
        while !info.is_char_boundary(end) {
            end -= 1;
        }
        put_lenenc_bytes(&mut p, info.as_bytes().get(..end).unwrap_or_default());
    }
    put_packet(out, seq, &p);
}

#[cfg(test)]
mod tests {
    //! Each test is a short script: bytes in, expected packets out.
    use super::*;
    use crate::protocol::handshake::{self, NATIVE};
    use crate::protocol::wire::Reader;

    const PW: &[u8] = b"secret";
    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const SALT: [u8; SALT_LEN] = *b"abcdefghijklmnopqrst";
    const SWITCH_SALT: [u8; SALT_LEN] = *b"ABCDEFGHIJKLMNOPQRST";

    fn stage2() -> Secret {
        scramble::hash_password(PW)
    }

    fn token(password: &[u8], salt: &[u8]) -> Vec<u8> {
        if password.is_empty() {
            return Vec::new();
        }
        scramble::token_for(salt, &scramble::stage1_of(password)).to_vec()
    }

    fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        put_packet(&mut v, seq, payload);
        v
    }

    /// A HandshakeResponse41 as the mariadb CLI sends it.
    fn response(flags: u32, user: &[u8], auth: &[u8], plugin: &[u8]) -> Vec<u8> {
        let flags = flags
            | caps::PROTOCOL_41
            | caps::SECURE_CONNECTION
            | caps::PLUGIN_AUTH
            | caps::PLUGIN_AUTH_LENENC_DATA;
        handshake::encode_response(&handshake::ResponseFields {
            capabilities: flags,
            ext: 0,
            max_packet: 1 << 24,
            charset: 33,
            user,
            auth,
            database: None,
            plugin,
            attrs: None,
        })
    }

    fn query(sql: &str) -> Vec<u8> {
        let mut p = vec![com::QUERY];
        p.extend_from_slice(sql.as_bytes());
        packet(0, &p)
    }

    /// Splits `out` into `(seq, payload)` packets and empties it.
    fn packets(out: &mut Vec<u8>) -> Vec<(u8, Vec<u8>)> {
        let mut r = Reader::new(out);
        let mut v = Vec::new();
        while r.remaining() > 0 {
            let (len, seq) = wire::header_of(r.bytes(4).unwrap()).unwrap();
            v.push((seq, r.bytes(len).unwrap().to_vec()));
        }
        out.clear();
        v
    }

    fn feed(s: &mut Session, input: &mut Vec<u8>) -> Option<Command> {
        let s2 = stage2();
        let auth = AdminAuth { user: "admin", stage2: &s2 };
        s.feed(input, Some(&auth), &mut || SWITCH_SALT)
    }

    /// ERR payload → (code, sqlstate, message).
    fn err(payload: &[u8]) -> (u16, String, String) {
        assert_eq!(payload[0], 0xFF, "not an ERR: {payload:?}");
        (
            u16::from_le_bytes([payload[1], payload[2]]),
            String::from_utf8_lossy(&payload[4..9]).into_owned(),
            String::from_utf8_lossy(&payload[9..]).into_owned(),
        )
    }

    const OK: [u8; 7] = [0x00, 0, 0, 0x02, 0, 0, 0];

    /// A session logged in with `flags`, greeting and OK consumed.
    fn logged_in(flags: u32) -> Session {
        let mut s = Session::new(7, SALT, LOCAL, ClientTls::Off);
        s.out.clear();
        let mut input = packet(1, &response(flags, b"admin", &token(PW, &SALT), NATIVE));
        assert_eq!(feed(&mut s, &mut input), None);
        assert_eq!(packets(&mut s.out), vec![(2, OK.to_vec())]);
        assert!(input.is_empty());
        s
    }

    #[test]
    fn greeting_offers_native_auth_and_the_console_capabilities() {
        let mut s = Session::new(7, SALT, LOCAL, ClientTls::Off);
        let p = packets(&mut s.out);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, 0);
        let g = handshake::parse_greeting(&p[0].1).unwrap();
        assert_eq!(g.version, server_version());
        assert!(g.version.starts_with("8.0.0-myroute-"));
        assert_eq!(g.connection_id, 7);
        assert_eq!(g.salt, SALT);
        assert_eq!(g.capabilities, CAPABILITIES);
        assert_eq!(g.auth_plugin, NATIVE);
        assert_eq!(g.charset, 45);
        assert_eq!(CAPABILITIES & (caps::SSL | caps::COMPRESS | caps::SESSION_TRACK), 0);
        assert!(!s.finished());
        assert_eq!(s.user(), None);
    }

    #[test]
    fn native_login_succeeds_with_ok_at_sequence_2() {
        let s = logged_in(0);
        assert_eq!(s.user(), Some("admin"));
        assert_eq!(s.attempted_user(), Some(&b"admin"[..]));
        assert!(!s.finished());
    }

    #[test]
    fn wrong_password_user_or_no_account_is_access_denied_at_sequence_2() {
        let cases: [(&[u8], &[u8], bool, &str); 5] = [
            (b"admin", b"Secret", true, "'admin'@'10.0.0.9' (using password: YES)"),
            (b"Admin", PW, true, "'Admin'@'10.0.0.9' (using password: YES)"),
            (b"root", PW, true, "'root'@'10.0.0.9' (using password: YES)"),
            (b"admin", b"", true, "'admin'@'10.0.0.9' (using password: NO)"),
            (b"admin", PW, false, "'admin'@'10.0.0.9' (using password: YES)"),
        ];
        for (user, pw, configured, tail) in cases {
            let mut s = Session::new(1, SALT, "10.0.0.9".parse().unwrap(), ClientTls::Off);
            s.out.clear();
            let mut input = packet(1, &response(0, user, &token(pw, &SALT), NATIVE));
            input.extend(query("SHOW SERVERS")); // never read
            let s2 = stage2();
            let auth = AdminAuth { user: "admin", stage2: &s2 };
            let auth = configured.then_some(&auth);
            assert_eq!(s.feed(&mut input, auth, &mut || SWITCH_SALT), None);
            let p = packets(&mut s.out);
            assert_eq!(p.len(), 1);
            assert_eq!(p[0].0, 2);
            let (code, state, msg) = err(&p[0].1);
            assert_eq!((code, state.as_str()), (1045, "28000"));
            assert_eq!(msg, format!("Access denied for user {tail}"));
            assert!(s.finished());
            assert_eq!(s.end(), Some(&End::AccessDenied));
            assert_eq!(s.user(), None);
            assert!(input.is_empty(), "the rest is dropped");
            // A finished session reads nothing more.
            let mut more = query("SHOW SERVERS");
            assert_eq!(feed(&mut s, &mut more), None);
            assert!(s.out.is_empty());
        }
    }

    #[test]
    fn other_plugin_gets_an_auth_switch_with_a_fresh_salt() {
        for (pw, ok) in [(PW, true), (&b"nope"[..], false)] {
            let mut s = Session::new(1, SALT, LOCAL, ClientTls::Off);
            s.out.clear();
            let mut input = packet(1, &response(0, b"admin", &[9; 32], b"caching_sha2_password"));
            assert_eq!(feed(&mut s, &mut input), None);
            let p = packets(&mut s.out);
            assert_eq!(p.len(), 1);
            assert_eq!(p[0].0, 2);
            assert_eq!(
                handshake::parse_auth_switch(&p[0].1),
                Ok((NATIVE.to_vec(), SWITCH_SALT.to_vec()))
            );
            // The token answers the new salt, not the greeting's.
            let mut input = packet(3, &token(pw, &SWITCH_SALT));
            assert_eq!(feed(&mut s, &mut input), None);
            let p = packets(&mut s.out);
            assert_eq!(p[0].0, 4);
            if ok {
                assert_eq!(p, vec![(4, OK.to_vec())]);
                assert_eq!(s.user(), Some("admin"));
            } else {
                assert_eq!(err(&p[0].1).0, 1045);
                assert!(s.finished());
            }
        }
        // The greeting's salt does not do for the switch.
        let mut s = Session::new(1, SALT, LOCAL, ClientTls::Off);
        let mut input = packet(1, &response(0, b"admin", &[], b"client_ed25519"));
        input.extend(packet(3, &token(PW, &SALT)));
        feed(&mut s, &mut input);
        assert_eq!(s.end(), Some(&End::AccessDenied));
    }

    #[test]
    fn ssl_pre41_and_malformed_responses_are_bad_handshakes() {
        let mut ssl = (caps::PROTOCOL_41 | caps::SSL).to_le_bytes().to_vec();
        ssl.extend_from_slice(&[0; 28]);
        let pre41 = vec![0x85, 0x04, 0xff, 0xff, 0xff, b'u', 0];
        let truncated = response(0, b"admin", &[1; 20], NATIVE)[..40].to_vec();
        for payload in [ssl, pre41, truncated] {
            let mut s = Session::new(1, SALT, LOCAL, ClientTls::Off);
            s.out.clear();
            let mut input = packet(1, &payload);
            feed(&mut s, &mut input);
            let p = packets(&mut s.out);
            assert_eq!(p.len(), 1);
            assert_eq!(p[0].0, 2);
            let (code, state, _) = err(&p[0].1);
            assert_eq!((code, state.as_str()), (1043, "08S01"));
            assert!(matches!(s.end(), Some(End::ProtocolError(_))));
        }
    }

    #[test]
    fn wrong_sequence_id_is_packets_out_of_order() {
        // Login response with sequence 2 instead of 1.
        let mut s = Session::new(1, SALT, LOCAL, ClientTls::Off);
        s.out.clear();
        let mut input = packet(2, &response(0, b"admin", &token(PW, &SALT), NATIVE));
        feed(&mut s, &mut input);
        let p = packets(&mut s.out);
        assert_eq!(p[0].0, 3);
        assert_eq!(err(&p[0].1).0, 1156);
        assert_eq!(s.end(), Some(&End::ProtocolError("sequence id")));
        // Auth switch response with sequence 1 instead of 3.
        let mut s = Session::new(1, SALT, LOCAL, ClientTls::Off);
        let mut input = packet(1, &response(0, b"admin", &[], b"other"));
        input.extend(packet(1, &token(PW, &SWITCH_SALT)));
        feed(&mut s, &mut input);
        let p = packets(&mut s.out);
        assert_eq!(err(&p[2].1).0, 1156);
        assert!(s.finished());
        // A command with sequence 1.
        let mut s = logged_in(0);
        let mut input = packet(1, &[com::PING]);
        feed(&mut s, &mut input);
        let p = packets(&mut s.out);
        assert_eq!(p[0].0, 2);
        let (code, state, msg) = err(&p[0].1);
        assert_eq!((code, state.as_str()), (1156, "08S01"));
        assert_eq!(msg, "Got packets out of order");
        assert!(s.finished());
    }

    #[test]
    fn oversize_packets_are_refused_on_the_header() {
        let big = MAX_PACKET + 1;
        let head = [big as u8, (big >> 8) as u8, (big >> 16) as u8];
        // While logging in: 1043, nothing buffered beyond the header.
        let mut s = Session::new(1, SALT, LOCAL, ClientTls::Off);
        s.out.clear();
        let mut input = vec![head[0], head[1], head[2], 1];
        feed(&mut s, &mut input);
        let p = packets(&mut s.out);
        assert_eq!(p[0].0, 2);
        let (code, _, msg) = err(&p[0].1);
        assert_eq!((code, msg.as_str()), (1043, "Bad handshake: packet too large"));
        assert!(s.finished() && input.is_empty());
        // After login: 1153.
        let mut s = logged_in(0);
        let mut input = vec![head[0], head[1], head[2], 0, com::QUERY];
        feed(&mut s, &mut input);
        let p = packets(&mut s.out);
        assert_eq!(p[0].0, 1);
        let (code, state, _) = err(&p[0].1);
        assert_eq!((code, state.as_str()), (1153, "08S01"));
        assert_eq!(s.end(), Some(&End::ProtocolError("packet too large")));
        // Exactly the limit is fine.
        let mut s = logged_in(0);
        let mut sql = vec![b' '; MAX_PACKET - 1];
        sql[..12].copy_from_slice(b"SHOW SERVERS");
        let mut input = query(std::str::from_utf8(&sql).unwrap());
        assert_eq!(feed(&mut s, &mut input), Some(Command::ShowServers));
    }

    #[test]
    fn every_command_parses_whatever_the_case_spacing_and_semicolons() {
        use Command::*;
        let cases: &[(&str, Parsed)] = &[
            ("SHOW SERVERS", Parsed::Command(ShowServers)),
            ("show servers;", Parsed::Command(ShowServers)),
            ("  Show\t\n Servers ; ;  ", Parsed::Command(ShowServers)),
            ("SHOW POOLS", Parsed::Command(ShowPools)),
            ("show clients", Parsed::Command(ShowClients)),
            ("SHOW stats;", Parsed::Command(ShowStats)),
            ("show CONFIG", Parsed::Command(ShowConfig)),
            ("show version", Parsed::Command(ShowVersion)),
            ("show help", Parsed::Command(ShowHelp)),
            ("help;", Parsed::Command(ShowHelp)),
            ("RELOAD", Parsed::Command(Reload)),
            ("shutdown ;", Parsed::Command(Shutdown)),
            ("kill 42", Parsed::Command(Kill(42))),
            ("KILL CONNECTION 4294967295;", Parsed::Command(Kill(u32::MAX))),
            ("kill   connection\t7", Parsed::Command(Kill(7))),
            ("DRAIN SERVER '10.0.0.1:3306'", Parsed::Command(Drain("10.0.0.1:3306".into()))),
            ("drain server \"db1:3306\";", Parsed::Command(Drain("db1:3306".into()))),
            ("Drain  Server `DB1:3306`", Parsed::Command(Drain("DB1:3306".into()))),
            ("drain server db1:3306", Parsed::Command(Drain("db1:3306".into()))),
            ("drain server [::1]:3306", Parsed::Command(Drain("[::1]:3306".into()))),
            ("ENABLE SERVER '127.0.0.1:3307'", Parsed::Command(Enable("127.0.0.1:3307".into()))),
            ("enable server 127.0.0.1:3307 ;", Parsed::Command(Enable("127.0.0.1:3307".into()))),
            ("SET NAMES utf8mb4", Parsed::Set),
            ("set autocommit=0", Parsed::Set),
            ("SET", Parsed::Set),
            ("select @@version_comment limit 1", Parsed::Variables(vec![Variable::VersionComment])),
            ("select DATABASE(), USER() limit 1", Parsed::Whoami),
            ("SELECT @@VERSION_COMMENT", Parsed::Variables(vec![Variable::VersionComment])),
            (
                "Select  @@version_comment  Limit 1;",
                Parsed::Variables(vec![Variable::VersionComment]),
            ),
            (
                "SELECT @@max_allowed_packet,@@socket",
                Parsed::Variables(vec![Variable::MaxAllowedPacket, Variable::Socket]),
            ),
        ];
        for (sql, want) in cases {
            assert_eq!(parse_command(sql.as_bytes()).as_ref(), Ok(want), "{sql:?}");
        }
    }

    #[test]
    fn anything_else_is_unknown() {
        for sql in [
            "",
            ";",
            "SHOW",
            "SHOW DATABASES",
            "SHOW SERVERS POOLS",
            "SHOWSERVERS",
            "SHOW SERVERS; SHOW POOLS",
            "select 1",
            "select @@version_comment limit 2",
            "kill",
            "kill -1",
            "kill +1",
            "kill 4294967296",
            "kill query 1",
            "kill 1 2",
            "drain server",
            "drain server ''",
            "drain server 'a:1",
            "drain server 'a:1\"",
            "drain server a'b",
            "drain server 'a:1' x",
            "drain '1:2'",
            "enable servers a:1",
            "reload now",
        ] {
            assert_eq!(
                parse_command(sql.as_bytes()),
                Err(ConsoleError::UnknownStatement(UNKNOWN_COMMAND)),
                "{sql:?}"
            );
        }
        assert!(parse_command(b"SHOW \xff").is_err());
    }

    #[test]
    fn unknown_statement_is_err_1064_with_the_command_list() {
        let mut s = logged_in(0);
        let mut input = query("SELECT * FROM users");
        assert_eq!(feed(&mut s, &mut input), None);
        let p = packets(&mut s.out);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, 1);
        let (code, state, msg) = err(&p[0].1);
        assert_eq!((code, state.as_str()), (1064, "42000"));
        assert_eq!(
            msg,
            "unknown admin command; commands: SHOW SERVERS, SHOW POOLS, SHOW CLIENTS, \
             SHOW STATS, SHOW CONFIG, SHOW VERSION, DRAIN SERVER 'host:port', \
             ENABLE SERVER 'host:port', KILL id, RELOAD, SHUTDOWN"
        );
        assert!(!s.finished(), "the session goes on");
    }

    #[test]
    fn ping_init_db_set_quit_and_unknown_command_bytes() {
        let mut s = logged_in(0);
        let mut input = packet(0, &[com::PING]);
        input.extend(packet(0, b"\x02app"));
        input.extend(query("SET NAMES utf8"));
        input.extend(packet(0, &[0x11, b'x'])); // COM_CHANGE_USER
        input.extend(packet(0, &[])); // no command byte at all
        assert_eq!(feed(&mut s, &mut input), None);
        let p = packets(&mut s.out);
        assert_eq!(p[..3], [(1, OK.to_vec()), (1, OK.to_vec()), (1, OK.to_vec())]);
        for (seq, payload) in &p[3..] {
            assert_eq!(*seq, 1);
            let (code, state, msg) = err(payload);
            assert_eq!((code, state.as_str(), msg.as_str()), (1047, "08S01", "Unknown command"));
        }
        assert_eq!(p.len(), 5);
        let mut input = packet(0, &[com::QUIT]);
        input.extend(query("SHOW SERVERS"));
        assert_eq!(feed(&mut s, &mut input), None);
        assert!(s.out.is_empty(), "com::QUIT gets no reply");
        assert_eq!(s.end(), Some(&End::Quit));
        assert!(input.is_empty());
    }

    /// Reads a text result set: (column defs, rows, terminator), checking
    /// sequence ids run 1, 2, ... and the framing for `deprecate_eof`.
    #[allow(clippy::type_complexity)]
    fn read_result_set(
        p: &[(u8, Vec<u8>)],
        deprecate_eof: bool,
    ) -> (Vec<Vec<u8>>, Vec<Vec<Option<Vec<u8>>>>, Vec<u8>) {
        for (i, (seq, _)) in p.iter().enumerate() {
            assert_eq!(usize::from(*seq), (i + 1) % 256, "sequence ids");
        }
        let n = Reader::new(&p[0].1).lenenc_int().unwrap() as usize;
        let defs: Vec<Vec<u8>> = p[1..1 + n].iter().map(|x| x.1.clone()).collect();
        let mut at = 1 + n;
        if !deprecate_eof {
            assert_eq!(p[at].1, [0xFE, 0, 0, 2, 0], "EOF after columns");
            at += 1;
        }
        let last = p.len() - 1;
        let rows = p[at..last]
            .iter()
            .map(|(_, row)| {
                let mut rest = &row[..];
                let vals = (0..n)
                    .map(|_| match rest.split_first() {
                        Some((0xFB, tail)) => {
                            rest = tail; // NULL
                            None
                        }
                        _ => {
                            let mut r = Reader::new(rest);
                            let v = r.lenenc_bytes().unwrap().to_vec();
                            rest = r.rest();
                            Some(v)
                        }
                    })
                    .collect();
                assert!(rest.is_empty());
                vals
            })
            .collect();
        (defs, rows, p[last].1.clone())
    }

    fn sample() -> Table {
        let mut t = Table::new(vec![Column::text("pool"), Column::num("active")]);
        t.rows.push(vec![Some("primary".into()), Some("3".into())]);
        t.rows.push(vec![None, Some("12".into())]);
        t.rows.push(vec![Some("é".into())]); // short row: padded with NULL
        t
    }

    #[test]
    fn result_set_with_eof_packets() {
        let mut s = logged_in(0);
        let mut input = query("SHOW POOLS;");
        assert_eq!(feed(&mut s, &mut input), Some(Command::ShowPools));
        assert!(s.executing() && s.out.is_empty());
        s.reply(Reply::Table(sample()));
        let p = packets(&mut s.out);
        assert_eq!(p.len(), 1 + 2 + 1 + 3 + 1);
        assert_eq!(p[0].1, [2]);
        let (defs, rows, end) = read_result_set(&p, false);
        // ColumnDefinition41, byte by byte.
        let mut text = vec![3, b'd', b'e', b'f', 0, 0, 0, 4];
        text.extend_from_slice(b"pool");
        text.push(4);
        text.extend_from_slice(b"pool");
        text.extend_from_slice(&[0x0C, 45, 0, 7, 0, 0, 0, 0xFD, 0, 0, 0, 0, 0]);
        assert_eq!(defs[0], text);
        let mut num = vec![3, b'd', b'e', b'f', 0, 0, 0, 6];
        num.extend_from_slice(b"active");
        num.push(6);
        num.extend_from_slice(b"active");
        num.extend_from_slice(&[0x0C, 63, 0, 2, 0, 0, 0, 0x08, 0xA0, 0x80, 0, 0, 0]);
        assert_eq!(defs[1], num);
        assert_eq!(
            rows,
            vec![
                vec![Some(b"primary".to_vec()), Some(b"3".to_vec())],
                vec![None, Some(b"12".to_vec())],
                vec![Some("é".as_bytes().to_vec()), None],
            ]
        );
        assert_eq!(end, [0xFE, 0, 0, 2, 0]);
        assert!(!s.executing());
    }

    #[test]
    fn result_set_with_deprecate_eof_ends_with_an_ok_packet() {
        let mut s = logged_in(caps::DEPRECATE_EOF);
        let mut input = query("show pools");
        assert_eq!(feed(&mut s, &mut input), Some(Command::ShowPools));
        s.reply(Reply::Table(sample()));
        let p = packets(&mut s.out);
        assert_eq!(p.len(), 1 + 2 + 3 + 1);
        let (_, rows, end) = read_result_set(&p, true);
        assert_eq!(rows.len(), 3);
        assert_eq!(end, [0xFE, 0, 0, 2, 0, 0, 0]);
        assert!(end.len() < 9, "shorter than any row starting with 0xFE");
    }

    #[test]
    fn sequence_ids_wrap_in_long_result_sets() {
        let mut s = logged_in(0);
        let mut input = query("show clients");
        feed(&mut s, &mut input);
        let mut t = Table::new(vec![Column::num("id")]);
        t.rows = (0..600).map(|i| vec![Some(i.to_string())]).collect();
        s.reply(Reply::Table(t));
        let p = packets(&mut s.out);
        assert_eq!(p.len(), 1 + 1 + 1 + 600 + 1);
        let (_, rows, _) = read_result_set(&p, false);
        assert_eq!(rows[599], vec![Some(b"599".to_vec())]);
    }

    #[test]
    fn ok_and_err_replies() {
        let mut s = logged_in(0);
        let mut input = query("reload");
        assert_eq!(feed(&mut s, &mut input), Some(Command::Reload));
        s.reply(Reply::Ok("configuration reloaded".into()));
        let mut ok = OK.to_vec();
        ok.push(22);
        ok.extend_from_slice(b"configuration reloaded");
        assert_eq!(packets(&mut s.out), vec![(1, ok)]);
        let mut input = query("kill 99");
        assert_eq!(feed(&mut s, &mut input), Some(Command::Kill(99)));
        s.reply(Reply::Err(ConsoleError::UnknownThread(99)));
        let p = packets(&mut s.out);
        assert_eq!(p[0].0, 1);
        assert_eq!(err(&p[0].1), (1094, "HY000".into(), "Unknown thread id: 99".into()));
        // A reply with nothing pending is harmless.
        s.reply(Reply::Ok(String::new()));
        assert!(s.out.is_empty());
        // An empty table still makes a valid reply.
        feed(&mut s, &mut query("show stats"));
        s.reply(Reply::Table(Table::default()));
        assert_eq!(packets(&mut s.out), vec![(1, OK.to_vec())]);
    }

    #[test]
    fn version_comment_is_answered_locally_and_help_by_the_loop() {
        let mut s = logged_in(caps::DEPRECATE_EOF);
        let mut input = query("select @@version_comment limit 1");
        assert_eq!(feed(&mut s, &mut input), None);
        let p = packets(&mut s.out);
        let (defs, rows, _) = read_result_set(&p, true);
        assert!(defs[0].windows(17).any(|w| w == b"@@version_comment"));
        assert_eq!(rows, vec![vec![Some(b"myroute admin console".to_vec())]]);
        // HELP is the loop's to answer, with help_table().
        let mut input = query("HELP");
        assert_eq!(feed(&mut s, &mut input), Some(Command::ShowHelp));
        s.reply(Reply::Table(help_table()));
        let p = packets(&mut s.out);
        let (defs, rows, _) = read_result_set(&p, true);
        assert_eq!(defs.len(), 2);
        assert_eq!(rows.len(), HELP.len());
        assert_eq!(rows[0][0].as_deref(), Some(&b"SHOW SERVERS"[..]));
    }

    #[test]
    fn pipelined_statements_wait_while_a_command_executes() {
        let mut s = logged_in(0);
        let mut input = query("show servers");
        input.extend(query("set x=1"));
        input.extend(query("show stats"));
        assert_eq!(feed(&mut s, &mut input), Some(Command::ShowServers));
        // Pending: nothing more is consumed, whatever arrives.
        let before = input.clone();
        assert_eq!(feed(&mut s, &mut input), None);
        assert_eq!(input, before);
        s.reply(Reply::Ok(String::new()));
        assert_eq!(feed(&mut s, &mut input), Some(Command::ShowStats));
        assert!(input.is_empty());
        s.reply(Reply::Ok(String::new()));
        let p = packets(&mut s.out);
        assert_eq!(p, vec![(1, OK.to_vec()); 3]);
    }

    /// Drives a whole conversation delivering `stream` in pieces cut at
    /// `cuts`, answering every command with OK "c".
    fn run(stream: &[u8], cuts: &[usize]) -> (Vec<u8>, Vec<Command>) {
        let mut s = Session::new(3, SALT, LOCAL, ClientTls::Off);
        let mut input = Vec::new();
        let mut commands = Vec::new();
        let mut from = 0;
        for &to in cuts.iter().chain([stream.len()].iter()) {
            input.extend_from_slice(&stream[from..to]);
            from = to;
            while let Some(c) = feed(&mut s, &mut input) {
                commands.push(c);
                s.reply(Reply::Ok("c".into()));
            }
        }
        assert!(s.finished());
        (std::mem::take(&mut s.out), commands)
    }

    #[test]
    fn input_split_at_every_byte_gives_the_same_output() {
        let mut stream = packet(1, &response(0, b"admin", &[], b"caching_sha2_password"));
        stream.extend(packet(3, &token(PW, &SWITCH_SALT)));
        stream.extend(query("select @@version_comment limit 1"));
        stream.extend(query("show servers"));
        stream.extend(packet(0, &[com::PING]));
        stream.extend(query("DRAIN SERVER 'a:1';"));
        stream.extend(query("bogus"));
        stream.extend(packet(0, &[com::QUIT]));
        let (whole, commands) = run(&stream, &[]);
        assert_eq!(commands, vec![Command::ShowServers, Command::Drain("a:1".into())]);
        for cut in 0..=stream.len() {
            assert_eq!(run(&stream, &[cut]), (whole.clone(), commands.clone()), "cut {cut}");
        }
        let every: Vec<usize> = (1..stream.len()).collect();
        assert_eq!(run(&stream, &every), (whole, commands));
    }

    #[test]
    fn junk_never_panics() {
        // A small xorshift generator: deterministic, no dependency.
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..2000 {
            let mut s = if next() % 2 == 0 {
                logged_in(next() as u32 & caps::DEPRECATE_EOF)
            } else {
                Session::new(1, SALT, LOCAL, ClientTls::Off)
            };
            let len = (next() % 64) as usize;
            let mut body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if next() % 2 == 0 {
                // Mostly well-framed, so the payload parsers get exercised.
                body = packet((next() % 4) as u8, &body);
            }
            let mut input = body;
            while let Some(_c) = feed(&mut s, &mut input) {
                s.reply(Reply::Ok(String::new()));
            }
        }
    }
}
