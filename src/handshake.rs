//! Connection-phase messages: HandshakeV10, HandshakeResponse41,
//! AuthSwitchRequest/Response, and the first byte of OK/ERR replies.
//!
//! Heads up (MySQL "Connection Phase Packets"; MariaDB "Connection"):
//! - the server greets first with HandshakeV10 (sequence 0); the client
//!   answers with HandshakeResponse41 (sequence 1) or, for TLS, a 32-byte
//!   SSLRequest; the server ends the phase with OK (0x00) or ERR (0xFF), or
//!   asks for another plugin with AuthSwitchRequest (0xFE);
//! - MariaDB puts its extended capabilities in the last 4 bytes of the
//!   greeting's reserved area when it clears CLIENT_MYSQL (bit 0). myroute
//!   always sets that bit, so clients send those 4 bytes as zero;
//! - after this phase myroute relays bytes untouched, so every capability
//!   that shapes the byte stream must be negotiated identically on both legs.
//!
//! Pure: builders return bytes, parsers take a payload and return `Result`.

use crate::scramble::LEN as SALT_LEN;
use crate::wire::{put_lenenc_bytes, Error, Reader};

/// Capability flags (MySQL `include/mysql_com.h`), the whole table: the
/// ones myroute never offers are listed too, so a reader sees what is left out.
#[allow(dead_code)]
pub mod caps {
    pub const LONG_PASSWORD: u32 = 1; // MariaDB: CLIENT_MYSQL
    pub const FOUND_ROWS: u32 = 1 << 1;
    pub const LONG_FLAG: u32 = 1 << 2;
    pub const CONNECT_WITH_DB: u32 = 1 << 3;
    pub const NO_SCHEMA: u32 = 1 << 4;
    pub const COMPRESS: u32 = 1 << 5;
    pub const ODBC: u32 = 1 << 6;
    pub const LOCAL_FILES: u32 = 1 << 7;
    pub const IGNORE_SPACE: u32 = 1 << 8;
    pub const PROTOCOL_41: u32 = 1 << 9;
    pub const INTERACTIVE: u32 = 1 << 10;
    pub const SSL: u32 = 1 << 11;
    pub const IGNORE_SIGPIPE: u32 = 1 << 12;
    pub const TRANSACTIONS: u32 = 1 << 13;
    pub const RESERVED: u32 = 1 << 14;
    pub const SECURE_CONNECTION: u32 = 1 << 15;
    pub const MULTI_STATEMENTS: u32 = 1 << 16;
    pub const MULTI_RESULTS: u32 = 1 << 17;
    pub const PS_MULTI_RESULTS: u32 = 1 << 18;
    pub const PLUGIN_AUTH: u32 = 1 << 19;
    pub const CONNECT_ATTRS: u32 = 1 << 20;
    pub const PLUGIN_AUTH_LENENC_DATA: u32 = 1 << 21;
    pub const CAN_HANDLE_EXPIRED_PASSWORDS: u32 = 1 << 22;
    pub const SESSION_TRACK: u32 = 1 << 23;
    pub const DEPRECATE_EOF: u32 = 1 << 24;
    pub const OPTIONAL_RESULTSET_METADATA: u32 = 1 << 25;
    pub const ZSTD_COMPRESSION: u32 = 1 << 26;
    pub const QUERY_ATTRIBUTES: u32 = 1 << 27;
    pub const MULTI_FACTOR_AUTH: u32 = 1 << 28;
    pub const CAPABILITY_EXTENSION: u32 = 1 << 29;
    pub const SSL_VERIFY_SERVER_CERT: u32 = 1 << 30;
    pub const REMEMBER_OPTIONS: u32 = 1 << 31;

    /// What myroute can offer a client: everything a byte relay passes
    /// through unchanged. Not offered: SSL (no TLS yet), COMPRESS and ZSTD
    /// (the relay would have to understand compressed framing),
    /// MULTI_FACTOR_AUTH and CAPABILITY_EXTENSION (auth-phase extensions it
    /// does not speak), SSL_VERIFY_SERVER_CERT.
    pub const RELAYABLE: u32 = LONG_PASSWORD
        | FOUND_ROWS
        | LONG_FLAG
        | CONNECT_WITH_DB
        | NO_SCHEMA
        | ODBC
        | LOCAL_FILES
        | IGNORE_SPACE
        | PROTOCOL_41
        | INTERACTIVE
        | IGNORE_SIGPIPE
        | TRANSACTIONS
        | RESERVED
        | SECURE_CONNECTION
        | MULTI_STATEMENTS
        | MULTI_RESULTS
        | PS_MULTI_RESULTS
        | PLUGIN_AUTH
        | CONNECT_ATTRS
        | PLUGIN_AUTH_LENENC_DATA
        | CAN_HANDLE_EXPIRED_PASSWORDS
        | SESSION_TRACK
        | DEPRECATE_EOF
        | OPTIONAL_RESULTSET_METADATA
        | QUERY_ATTRIBUTES
        | REMEMBER_OPTIONS;

    /// Flags that only shape the connection phase; myroute sets these on the
    /// backend leg as its own login needs, whatever the client chose. Every
    /// other flag the client chose goes to the backend exactly as chosen.
    pub const LOGIN_ONLY: u32 = LONG_PASSWORD
        | CONNECT_WITH_DB
        | SECURE_CONNECTION
        | PLUGIN_AUTH
        | CONNECT_ATTRS
        | PLUGIN_AUTH_LENENC_DATA
        | REMEMBER_OPTIONS;
}

/// The only auth plugin myroute speaks on either leg.
pub const NATIVE: &[u8] = b"mysql_native_password";

/// SERVER_STATUS_AUTOCOMMIT, the status a fresh session starts with.
pub const STATUS_AUTOCOMMIT: u16 = 0x0002;

/// What a server's HandshakeV10 tells about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    pub version: String,
    pub connection_id: u32,
    /// Scramble (salt) bytes, normally 20; the trailing NUL removed.
    pub salt: Vec<u8>,
    pub capabilities: u32,
    pub charset: u8,
    pub auth_plugin: Vec<u8>,
}

/// Builds myroute's own HandshakeV10 (payload only).
pub fn build_greeting(
    version: &str,
    connection_id: u32,
    salt: &[u8; SALT_LEN],
    capabilities: u32,
    charset: u8,
) -> Vec<u8> {
    let mut p = Vec::with_capacity(96);
    p.push(10); // protocol version
    p.extend_from_slice(version.as_bytes());
    p.push(0);
    p.extend_from_slice(&connection_id.to_le_bytes());
    p.extend_from_slice(&salt[..8]); // auth-plugin-data-part-1
    p.push(0); // filler
    p.extend_from_slice(&(capabilities as u16).to_le_bytes());
    p.push(charset);
    p.extend_from_slice(&STATUS_AUTOCOMMIT.to_le_bytes());
    p.extend_from_slice(&((capabilities >> 16) as u16).to_le_bytes());
    p.push(21); // auth_plugin_data_len: 20 salt bytes + NUL
    p.extend_from_slice(&[0; 10]); // reserved (MariaDB ext caps stay 0: CLIENT_MYSQL is set)
    p.extend_from_slice(&salt[8..]); // auth-plugin-data-part-2: 12 bytes
    p.push(0); // ... and its NUL, which clients expect
    p.extend_from_slice(NATIVE);
    p.push(0);
    p
}

/// Parses a server's HandshakeV10 (payload only). An ERR payload (a server
/// that refuses us before greeting, e.g. "too many connections" or "host
/// blocked") is reported by the caller, which checks the first byte.
pub fn parse_greeting(payload: &[u8]) -> Result<Greeting, Error> {
    let mut r = Reader::new(payload);
    if r.u8()? != 10 {
        return Err(Error::Malformed("greeting protocol version"));
    }
    let version = String::from_utf8_lossy(r.nul_str()?).into_owned();
    let connection_id = r.u32()?;
    let mut salt = r.bytes(8)?.to_vec();
    r.u8()?; // filler
    let mut capabilities = u32::from(r.u16()?);
    // A pre-4.1 server stops here; myroute needs 4.1.
    let charset = r.u8()?;
    r.u16()?; // status
    capabilities |= u32::from(r.u16()?) << 16;
    let data_len = usize::from(r.u8()?);
    r.bytes(10)?; // reserved / MariaDB extended capabilities
    if capabilities & caps::SECURE_CONNECTION != 0 {
        // Part 2 is max(13, len - 8) bytes, the last of which is a NUL.
        let n = data_len.saturating_sub(8).max(13);
        let part2 = r.bytes(n)?;
        let part2 = part2.strip_suffix(&[0]).unwrap_or(part2);
        salt.extend_from_slice(part2);
    }
    let auth_plugin = if capabilities & caps::PLUGIN_AUTH != 0 {
        // Some servers omit the NUL at the very end of the packet.
        match r.nul_str() {
            Ok(name) => name.to_vec(),
            Err(_) => r.rest().to_vec(),
        }
    } else {
        NATIVE.to_vec()
    };
    Ok(Greeting {
        version,
        connection_id,
        salt,
        capabilities,
        charset,
        auth_plugin,
    })
}

/// A client's HandshakeResponse41, as myroute needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    pub capabilities: u32,
    pub max_packet: u32,
    pub charset: u8,
    pub user: Vec<u8>,
    pub auth: Vec<u8>,
    pub database: Option<Vec<u8>>,
    /// Auth plugin the client's token was made for; empty if none was named.
    pub plugin: Vec<u8>,
    /// The raw connection attributes (`int<lenenc>` total length excluded),
    /// passed to the backend untouched.
    pub attrs: Option<Vec<u8>>,
}

/// What the first client packet turned out to be.
#[derive(PartialEq, Eq)]
pub enum ClientHello {
    /// A HandshakeResponse41.
    Response(Response),
    /// An SSLRequest: the client wants TLS before sending its response.
    SslRequest,
    /// A pre-4.1 HandshakeResponse320.
    Pre41,
}

impl std::fmt::Debug for Response {
    // Never shows the auth data.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("capabilities", &format_args!("{:#x}", self.capabilities))
            .field("user", &String::from_utf8_lossy(&self.user))
            .field("auth_len", &self.auth.len())
            .field(
                "database",
                &self.database.as_deref().map(String::from_utf8_lossy),
            )
            .field("plugin", &String::from_utf8_lossy(&self.plugin))
            .finish()
    }
}

impl std::fmt::Debug for ClientHello {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientHello::Response(r) => r.fmt(f),
            ClientHello::SslRequest => f.write_str("SslRequest"),
            ClientHello::Pre41 => f.write_str("Pre41"),
        }
    }
}

/// Parses the client's first packet (HandshakeResponse41, SSLRequest or
/// HandshakeResponse320), reading each optional field only when the flag that
/// announces it is set.
pub fn parse_client_hello(payload: &[u8]) -> Result<ClientHello, Error> {
    let mut r = Reader::new(payload);
    // HandshakeResponse320 starts with 2 capability bytes; look at the
    // PROTOCOL_41 bit, which is in the low 16 bits, before anything else.
    let low = u32::from(r.u16()?);
    if low & caps::PROTOCOL_41 == 0 {
        return Ok(ClientHello::Pre41);
    }
    let capabilities = low | u32::from(r.u16()?) << 16;
    let max_packet = r.u32()?;
    let charset = r.u8()?;
    r.bytes(23)?; // filler (MariaDB extended capabilities in the last 4)
    if capabilities & caps::SSL != 0 && r.remaining() == 0 {
        return Ok(ClientHello::SslRequest);
    }
    let user = r.nul_str()?.to_vec();
    let auth = if capabilities & caps::PLUGIN_AUTH_LENENC_DATA != 0 {
        r.lenenc_bytes()?.to_vec()
    } else if capabilities & caps::SECURE_CONNECTION != 0 {
        let n = usize::from(r.u8()?);
        r.bytes(n)?.to_vec()
    } else {
        r.nul_str()?.to_vec()
    };
    let database = if capabilities & caps::CONNECT_WITH_DB != 0 && r.remaining() > 0 {
        // Some clients always set the flag and send an empty name.
        Some(r.nul_str()?.to_vec()).filter(|db| !db.is_empty())
    } else {
        None
    };
    let plugin = if capabilities & caps::PLUGIN_AUTH != 0 && r.remaining() > 0 {
        r.nul_str()?.to_vec()
    } else {
        Vec::new()
    };
    let attrs = if capabilities & caps::CONNECT_ATTRS != 0 && r.remaining() > 0 {
        let raw = r.lenenc_bytes()?;
        // Check the key/value structure now, so the backend never sees junk.
        let mut kv = Reader::new(raw);
        while kv.remaining() > 0 {
            kv.lenenc_bytes()?;
            kv.lenenc_bytes()?;
        }
        Some(raw.to_vec())
    } else {
        None
    };
    // Trailing bytes (the ZSTD level byte, or a newer field) are ignored.
    Ok(ClientHello::Response(Response {
        capabilities,
        max_packet,
        charset,
        user,
        auth,
        database,
        plugin,
        attrs,
    }))
}

/// The fields of a HandshakeResponse41 to encode, borrowed.
pub struct ResponseFields<'a> {
    pub capabilities: u32,
    pub max_packet: u32,
    pub charset: u8,
    pub user: &'a [u8],
    pub auth: &'a [u8],
    pub database: Option<&'a [u8]>,
    pub plugin: &'a [u8],
    /// The connection attributes block (without its length).
    pub attrs: Option<&'a [u8]>,
}

/// Encodes a HandshakeResponse41 (payload only) exactly as its
/// capabilities say: auth data length-encoded or with a one-byte length
/// (PLUGIN_AUTH_LENENC_DATA), the database with CONNECT_WITH_DB (empty when
/// there is none, as some clients send it), the plugin name with
/// PLUGIN_AUTH, the attributes with CONNECT_ATTRS.
pub fn encode_response(f: &ResponseFields) -> Vec<u8> {
    let flags = f.capabilities;
    let mut p = Vec::with_capacity(128);
    p.extend_from_slice(&flags.to_le_bytes());
    p.extend_from_slice(&f.max_packet.to_le_bytes());
    p.push(f.charset);
    p.extend_from_slice(&[0; 23]);
    p.extend_from_slice(f.user);
    p.push(0);
    if flags & caps::PLUGIN_AUTH_LENENC_DATA != 0 {
        put_lenenc_bytes(&mut p, f.auth);
    } else {
        p.push(f.auth.len() as u8);
        p.extend_from_slice(f.auth);
    }
    if flags & caps::CONNECT_WITH_DB != 0 {
        p.extend_from_slice(f.database.unwrap_or_default());
        p.push(0);
    }
    if flags & caps::PLUGIN_AUTH != 0 {
        p.extend_from_slice(f.plugin);
        p.push(0);
    }
    if let Some(a) = f.attrs.filter(|_| flags & caps::CONNECT_ATTRS != 0) {
        put_lenenc_bytes(&mut p, a);
    }
    p
}

/// Builds the HandshakeResponse41 myroute sends a backend on the client's
/// behalf: the client's capabilities, max packet, character set, user,
/// database and attributes, with a mysql_native_password token. Of the
/// flags, only what this login itself needs is changed: plugin auth with a
/// 20-byte token; length-encoded auth data and attributes only where the
/// backend takes them.
pub fn build_response(client: &Response, backend_caps: u32, token: &[u8]) -> Vec<u8> {
    let mut flags = client.capabilities | caps::SECURE_CONNECTION | caps::PLUGIN_AUTH;
    flags &= !(caps::PLUGIN_AUTH_LENENC_DATA | caps::CONNECT_ATTRS) | backend_caps;
    if client.attrs.is_none() {
        flags &= !caps::CONNECT_ATTRS;
    }
    if client.database.is_some() {
        flags |= caps::CONNECT_WITH_DB;
    }
    encode_response(&ResponseFields {
        capabilities: flags,
        max_packet: client.max_packet,
        charset: client.charset,
        user: &client.user,
        auth: token,
        database: client.database.as_deref(),
        plugin: NATIVE,
        attrs: client.attrs.as_deref(),
    })
}

/// Builds AuthSwitchRequest to mysql_native_password with a fresh salt.
pub fn build_auth_switch(salt: &[u8; SALT_LEN]) -> Vec<u8> {
    let mut p = Vec::with_capacity(2 + NATIVE.len() + SALT_LEN + 1);
    p.push(0xFE);
    p.extend_from_slice(NATIVE);
    p.push(0);
    p.extend_from_slice(salt);
    p.push(0);
    p
}

/// A backend's AuthSwitchRequest: `(plugin, plugin data)`; for native the
/// data is the new 20-byte salt (a trailing NUL removed).
pub fn parse_auth_switch(payload: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Error> {
    let mut r = Reader::new(payload);
    if r.u8()? != 0xFE {
        return Err(Error::Malformed("auth switch request"));
    }
    if r.remaining() == 0 {
        // OldAuthSwitchRequest: a switch to the pre-4.1 scheme.
        return Ok((b"mysql_old_password".to_vec(), Vec::new()));
    }
    let plugin = r.nul_str()?.to_vec();
    let data = r.rest();
    let data = data.strip_suffix(&[0]).unwrap_or(data);
    Ok((plugin, data.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALT: [u8; 20] = *b"abcdefghijklmnopqrst";

    #[test]
    fn greeting_round_trips_and_has_the_layout_clients_expect() {
        let caps = caps::RELAYABLE;
        let p = build_greeting("10.11.6-MariaDB", 7, &SALT, caps, 45);
        // Part 2 is 12 salt bytes plus a NUL, right before the plugin name.
        let name_at = p.len() - NATIVE.len() - 1;
        assert_eq!(p[name_at - 1], 0);
        assert_eq!(&p[name_at - 13..name_at - 1], &SALT[8..]);
        let g = parse_greeting(&p).unwrap();
        assert_eq!(g.version, "10.11.6-MariaDB");
        assert_eq!(g.connection_id, 7);
        assert_eq!(g.salt, SALT);
        assert_eq!(g.capabilities, caps);
        assert_eq!(g.charset, 45);
        assert_eq!(g.auth_plugin, NATIVE);
    }

    #[test]
    fn parse_greeting_of_a_real_mariadb_10_11() {
        // Captured from MariaDB 10.11 (salt bytes replaced).
        let mut p = vec![10];
        p.extend_from_slice(b"5.5.5-10.11.6-MariaDB-0+deb12u1\0");
        p.extend_from_slice(&[0x1f, 0, 0, 0]);
        p.extend_from_slice(&SALT[..8]);
        p.push(0);
        p.extend_from_slice(&[0xfe, 0xf7, 0x2d, 0x02, 0x00, 0xff, 0x81, 0x15]);
        p.extend_from_slice(&[0; 6]);
        p.extend_from_slice(&[0x1d, 0, 0, 0]); // MariaDB extended caps
        p.extend_from_slice(&SALT[8..]);
        p.push(0);
        p.extend_from_slice(b"mysql_native_password\0");
        let g = parse_greeting(&p).unwrap();
        assert_eq!(g.version, "5.5.5-10.11.6-MariaDB-0+deb12u1");
        assert_eq!(g.salt, SALT);
        assert_eq!(g.charset, 0x2d);
        assert_eq!(g.capabilities & caps::LONG_PASSWORD, 0);
        assert_ne!(g.capabilities & caps::DEPRECATE_EOF, 0);
    }

    #[test]
    fn parse_greeting_rejects_every_truncation() {
        let p = build_greeting("8.0.0", 1, &SALT, caps::RELAYABLE, 8);
        for n in 0..p.len() - NATIVE.len() - 1 {
            assert!(parse_greeting(&p[..n]).is_err(), "prefix {n}");
        }
    }

    fn response(
        flags: u32,
        auth: &[u8],
        db: Option<&[u8]>,
        plugin: &[u8],
        attrs: Option<&[u8]>,
    ) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&flags.to_le_bytes());
        p.extend_from_slice(&(1u32 << 24).to_le_bytes());
        p.push(33);
        p.extend_from_slice(&[0; 23]);
        p.extend_from_slice(b"app_rw\0");
        if flags & caps::PLUGIN_AUTH_LENENC_DATA != 0 {
            put_lenenc_bytes(&mut p, auth);
        } else if flags & caps::SECURE_CONNECTION != 0 {
            p.push(auth.len() as u8);
            p.extend_from_slice(auth);
        } else {
            p.extend_from_slice(auth);
            p.push(0);
        }
        if let Some(db) = db {
            p.extend_from_slice(db);
            p.push(0);
        }
        if flags & caps::PLUGIN_AUTH != 0 {
            p.extend_from_slice(plugin);
            p.push(0);
        }
        if let Some(a) = attrs {
            put_lenenc_bytes(&mut p, a);
        }
        p
    }

    fn attrs() -> Vec<u8> {
        let mut a = Vec::new();
        put_lenenc_bytes(&mut a, b"_client_name");
        put_lenenc_bytes(&mut a, b"libmariadb");
        a
    }

    #[test]
    fn parses_each_auth_data_encoding() {
        let base = caps::PROTOCOL_41 | caps::PLUGIN_AUTH;
        for (extra, auth) in [
            (
                caps::PLUGIN_AUTH_LENENC_DATA | caps::SECURE_CONNECTION,
                &[1u8; 20][..],
            ),
            (caps::SECURE_CONNECTION, &[2u8; 20][..]),
            (0, &b"token-without-nul"[..]),
        ] {
            let p = response(base | extra, auth, None, NATIVE, None);
            let ClientHello::Response(r) = parse_client_hello(&p).unwrap() else {
                panic!("not a response")
            };
            assert_eq!(r.user, b"app_rw");
            assert_eq!(r.auth, auth);
            assert_eq!(r.plugin, NATIVE);
            assert_eq!(r.database, None);
        }
    }

    #[test]
    fn parses_database_plugin_and_attributes() {
        let flags = caps::PROTOCOL_41
            | caps::SECURE_CONNECTION
            | caps::PLUGIN_AUTH
            | caps::CONNECT_WITH_DB
            | caps::CONNECT_ATTRS;
        let a = attrs();
        let p = response(
            flags,
            &[3; 20],
            Some(b"app"),
            b"caching_sha2_password",
            Some(&a),
        );
        let ClientHello::Response(r) = parse_client_hello(&p).unwrap() else {
            panic!("not a response")
        };
        assert_eq!(r.database.as_deref(), Some(&b"app"[..]));
        assert_eq!(r.plugin, b"caching_sha2_password");
        assert_eq!(r.attrs.as_deref(), Some(&a[..]));
        assert_eq!(r.charset, 33);
    }

    #[test]
    fn recognises_ssl_request_and_pre41() {
        let mut ssl = (caps::PROTOCOL_41 | caps::SSL).to_le_bytes().to_vec();
        ssl.extend_from_slice(&[0; 28]);
        assert_eq!(parse_client_hello(&ssl), Ok(ClientHello::SslRequest));
        // HandshakeResponse320: 2 capability bytes without PROTOCOL_41.
        let old = [0x85, 0x04, 0xff, 0xff, 0xff, b'u', 0];
        assert_eq!(parse_client_hello(&old), Ok(ClientHello::Pre41));
    }

    #[test]
    fn rejects_every_truncation_of_a_full_response() {
        let flags = caps::PROTOCOL_41
            | caps::SECURE_CONNECTION
            | caps::PLUGIN_AUTH_LENENC_DATA
            | caps::CONNECT_WITH_DB
            | caps::CONNECT_ATTRS
            | caps::PLUGIN_AUTH;
        let a = attrs();
        let p = response(flags, &[4; 20], Some(b"app"), NATIVE, Some(&a));
        // Cut inside user, token or database: an error. (Cut at a field end
        // of an optional trailing field is a shorter valid response.)
        let user_end = 32 + 7;
        let token_end = user_end + 21;
        for n in (0..token_end).chain(token_end + 1..token_end + 4) {
            assert!(parse_client_hello(&p[..n]).is_err(), "prefix {n}");
        }
        assert!(parse_client_hello(&p).is_ok());
        // Broken attributes are refused, not passed on.
        let mut broken = p.clone();
        let last = broken.len() - 1;
        broken.truncate(last);
        assert!(parse_client_hello(&broken).is_err());
    }

    #[test]
    fn backend_response_keeps_stream_flags_and_sets_login_flags() {
        let client = Response {
            capabilities: caps::PROTOCOL_41
                | caps::DEPRECATE_EOF
                | caps::MULTI_RESULTS
                | caps::SESSION_TRACK
                | caps::SECURE_CONNECTION
                | caps::CONNECT_ATTRS
                | caps::REMEMBER_OPTIONS,
            max_packet: 1 << 24,
            charset: 45,
            user: b"app_rw".to_vec(),
            auth: vec![],
            database: Some(b"app".to_vec()),
            plugin: b"caching_sha2_password".to_vec(),
            attrs: Some(attrs()),
        };
        let token = [9u8; 20];
        let p = build_response(&client, caps::RELAYABLE, &token);
        let ClientHello::Response(r) = parse_client_hello(&p).unwrap() else {
            panic!("not a response")
        };
        let stream =
            caps::PROTOCOL_41 | caps::DEPRECATE_EOF | caps::MULTI_RESULTS | caps::SESSION_TRACK;
        assert_eq!(r.capabilities & !caps::LOGIN_ONLY, stream);
        assert_ne!(
            r.capabilities & caps::REMEMBER_OPTIONS,
            0,
            "kept as the client chose"
        );
        assert_eq!(
            r.capabilities & caps::LONG_PASSWORD,
            0,
            "not set by the client, not set here"
        );
        assert_ne!(r.capabilities & caps::CONNECT_WITH_DB, 0);
        assert_ne!(r.capabilities & caps::CONNECT_ATTRS, 0);
        assert_eq!(r.auth, token);
        assert_eq!(r.plugin, NATIVE);
        assert_eq!(r.database, client.database);
        assert_eq!(r.attrs, client.attrs);
        assert_eq!((r.charset, r.max_packet), (45, 1 << 24));
        // A backend without CONNECT_ATTRS gets none.
        let p = build_response(&client, caps::RELAYABLE & !caps::CONNECT_ATTRS, &token);
        let ClientHello::Response(r) = parse_client_hello(&p).unwrap() else {
            panic!("not a response")
        };
        assert_eq!(r.attrs, None);
    }

    #[test]
    fn auth_switch_round_trip() {
        let p = build_auth_switch(&SALT);
        assert_eq!(parse_auth_switch(&p), Ok((NATIVE.to_vec(), SALT.to_vec())));
        assert_eq!(parse_auth_switch(&[0xFE]).unwrap().0, b"mysql_old_password");
        assert!(parse_auth_switch(&[0xFE, b'x']).is_err());
    }
}
