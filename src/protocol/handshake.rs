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

use crate::protocol::constants::{caps, status};
use crate::protocol::scramble::LEN as SALT_LEN;
use crate::protocol::wire::{put_lenenc_bytes, put_lenenc_int, Error, Reader};

/// The only auth plugin myroute speaks on either leg.
pub const NATIVE: &[u8] = b"mysql_native_password";

/// What a server's HandshakeV10 tells about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    pub version: String,
    pub connection_id: u32,
    /// Scramble (salt) bytes, normally 20; the trailing NUL removed.
    pub salt: Vec<u8>,
    pub capabilities: u32,
    /// MariaDB's extended capabilities ([`crate::protocol::constants::ext`]);
    /// 0 unless the server cleared CLIENT_MYSQL.
    pub ext: u32,
    pub charset: u8,
    pub auth_plugin: Vec<u8>,
}

/// Builds myroute's own HandshakeV10 (payload only).
pub fn build_greeting(
    version: &str,
    connection_id: u32,
    salt: &[u8; SALT_LEN],
    capabilities: u32,
    ext: u32,
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
    p.extend_from_slice(&status::AUTOCOMMIT.to_le_bytes());
    p.extend_from_slice(&((capabilities >> 16) as u16).to_le_bytes());
    p.push(21); // auth_plugin_data_len: 20 salt bytes + NUL
                // Reserved, then MariaDB's extended capabilities (sent only by a
                // greeting that clears CLIENT_MYSQL).
    p.extend_from_slice(&[0; 6]);
    p.extend_from_slice(&mariadb_ext(capabilities, ext).to_le_bytes());
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
    let reserved = r.bytes(10)?;
    let ext = match capabilities & caps::LONG_PASSWORD {
        0 => u32::from_le_bytes([reserved[6], reserved[7], reserved[8], reserved[9]]),
        _ => 0,
    };
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
    Ok(Greeting { version, connection_id, salt, capabilities, ext, charset, auth_plugin })
}

/// The MariaDB extended capabilities a packet with `capabilities` carries:
/// `ext` when CLIENT_MYSQL (LONG_PASSWORD) is clear, else none.
fn mariadb_ext(capabilities: u32, ext: u32) -> u32 {
    if capabilities & caps::LONG_PASSWORD == 0 {
        ext
    } else {
        0
    }
}

/// A client's HandshakeResponse41, as myroute needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    pub capabilities: u32,
    /// MariaDB's extended capabilities (the filler's last 4 bytes); 0
    /// unless the client cleared CLIENT_MYSQL.
    pub ext: u32,
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
            .field("ext", &format_args!("{:#x}", self.ext))
            .field("user", &String::from_utf8_lossy(&self.user))
            .field("auth_len", &self.auth.len())
            .field("database", &self.database.as_deref().map(String::from_utf8_lossy))
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
    let filler = r.bytes(23)?;
    let ext = u32::from_le_bytes([filler[19], filler[20], filler[21], filler[22]]);
    let ext = mariadb_ext(capabilities, ext);
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
    let (plugin, attrs) = plugin_and_attrs(&mut r, capabilities)?;
    // Trailing bytes (the ZSTD level byte, or a newer field) are ignored.
    Ok(ClientHello::Response(Response {
        capabilities,
        ext,
        max_packet,
        charset,
        user,
        auth,
        database,
        plugin,
        attrs,
    }))
}

/// The optional last fields of a HandshakeResponse41 or COM_CHANGE_USER:
/// the plugin name (PLUGIN_AUTH) and the connection attributes
/// (CONNECT_ATTRS), each only when its flag is set and bytes are left.
fn plugin_and_attrs(r: &mut Reader, flags: u32) -> Result<(Vec<u8>, Option<Vec<u8>>), Error> {
    let plugin = if flags & caps::PLUGIN_AUTH != 0 && r.remaining() > 0 {
        r.nul_str()?.to_vec()
    } else {
        Vec::new()
    };
    let attrs = if flags & caps::CONNECT_ATTRS != 0 && r.remaining() > 0 {
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
    Ok((plugin, attrs))
}

/// The fields of a HandshakeResponse41 to encode, borrowed.
pub struct ResponseFields<'a> {
    pub capabilities: u32,
    /// Sent only when `capabilities` clears CLIENT_MYSQL.
    pub ext: u32,
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
    p.extend_from_slice(&[0; 19]);
    p.extend_from_slice(&mariadb_ext(flags, f.ext).to_le_bytes());
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

/// The capabilities [`build_response`] sends: the client's, changed only
/// where myroute's own login needs it.
pub fn response_flags(client: &Response, backend_caps: u32) -> u32 {
    let mut flags = client.capabilities | caps::SECURE_CONNECTION | caps::PLUGIN_AUTH;
    flags &= !(caps::PLUGIN_AUTH_LENENC_DATA | caps::CONNECT_ATTRS) | backend_caps;
    if client.attrs.is_none() {
        flags &= !caps::CONNECT_ATTRS;
    }
    if client.database.is_some() {
        flags |= caps::CONNECT_WITH_DB;
    }
    flags
}

/// Builds the HandshakeResponse41 myroute sends a backend on the client's
/// behalf: the client's capabilities, max packet, character set, user,
/// database and attributes, with a mysql_native_password token. Of the
/// flags, only what this login itself needs is changed: plugin auth with a
/// 20-byte token; length-encoded auth data and attributes only where the
/// backend takes them.
pub fn build_response(client: &Response, backend_caps: u32, token: &[u8]) -> Vec<u8> {
    encode_response(&ResponseFields {
        capabilities: response_flags(client, backend_caps),
        ext: client.ext,
        max_packet: client.max_packet,
        charset: client.charset,
        user: &client.user,
        auth: token,
        database: client.database.as_deref(),
        plugin: NATIVE,
        attrs: client.attrs.as_deref(),
    })
}

/// Parses a COM_CHANGE_USER payload (MySQL "COM_CHANGE_USER"): 0x11, the
/// user, the auth data (length-encoded with PLUGIN_AUTH_LENENC_DATA, else a
/// one-byte length), the database, and when present the character set,
/// the plugin name (PLUGIN_AUTH) and the attributes (CONNECT_ATTRS).
/// `session` is the login's response: its capabilities say which fields
/// come, and its values stand in for those that do not.
pub fn parse_change_user(payload: &[u8], session: &Response) -> Result<Response, Error> {
    let mut r = Reader::new(payload);
    if r.u8()? != crate::protocol::constants::com::CHANGE_USER {
        return Err(Error::Malformed("COM_CHANGE_USER"));
    }
    let flags = session.capabilities;
    let user = r.nul_str()?.to_vec();
    let auth = if flags & caps::PLUGIN_AUTH_LENENC_DATA != 0 {
        r.lenenc_bytes()?.to_vec()
    } else {
        let n = usize::from(r.u8()?);
        r.bytes(n)?.to_vec()
    };
    let database = Some(r.nul_str()?.to_vec()).filter(|d| !d.is_empty());
    // Two bytes here; a collation beyond the login's one-byte field keeps
    // the login's.
    let charset = match r.remaining() >= 2 {
        true => u8::try_from(r.u16()?).unwrap_or(session.charset),
        false => session.charset,
    };
    let (plugin, attrs) = plugin_and_attrs(&mut r, flags)?;
    Ok(Response {
        capabilities: flags,
        ext: session.ext,
        max_packet: session.max_packet,
        charset,
        user,
        auth,
        database,
        plugin,
        attrs,
    })
}

/// Encodes a COM_CHANGE_USER for `who` with a native `token`, as a leg
/// that negotiated `capabilities` reads it.
pub fn encode_change_user(who: &Response, capabilities: u32, token: &[u8]) -> Vec<u8> {
    let mut p = vec![crate::protocol::constants::com::CHANGE_USER];
    p.extend_from_slice(&who.user);
    p.push(0);
    if capabilities & caps::PLUGIN_AUTH_LENENC_DATA != 0 {
        put_lenenc_bytes(&mut p, token);
    } else {
        p.push(token.len() as u8);
        p.extend_from_slice(token);
    }
    p.extend_from_slice(who.database.as_deref().unwrap_or_default());
    p.push(0);
    p.extend_from_slice(&u16::from(who.charset).to_le_bytes());
    if capabilities & caps::PLUGIN_AUTH != 0 {
        p.extend_from_slice(NATIVE);
        p.push(0);
    }
    if let Some(attrs) = who.attrs.as_deref().filter(|_| capabilities & caps::CONNECT_ATTRS != 0) {
        put_lenenc_bytes(&mut p, attrs);
    }
    p
}

/// Builds the 32-byte SSLRequest (MySQL "Protocol::SSLRequest"): a short
/// HandshakeResponse41 with CLIENT_SSL, sent instead of the response when
/// both sides offer TLS; the response follows inside TLS with the same
/// capabilities.
pub fn build_ssl_request(capabilities: u32, ext: u32, max_packet: u32, charset: u8) -> Vec<u8> {
    let mut p = Vec::with_capacity(32);
    p.extend_from_slice(&(capabilities | caps::SSL).to_le_bytes());
    p.extend_from_slice(&max_packet.to_le_bytes());
    p.push(charset);
    p.extend_from_slice(&[0; 19]);
    p.extend_from_slice(&mariadb_ext(capabilities, ext).to_le_bytes());
    p
}

/// The OK_Packet `ok` (payload) with its human-readable info replaced by
/// `info`, everything else kept: affected rows, last insert id, status,
/// warnings and, with CLIENT_SESSION_TRACK and SERVER_SESSION_STATE_CHANGED,
/// the session-state changes (MySQL "OK_Packet"). The info is written as a
/// length-encoded string, as servers send it, and, without session state,
/// is the last thing in the packet.
pub fn ok_with_info(ok: &[u8], capabilities: u32, info: &[u8]) -> Result<Vec<u8>, Error> {
    let mut r = Reader::new(ok);
    if r.u8()? != 0x00 {
        return Err(Error::Malformed("OK packet"));
    }
    let affected = r.lenenc_int()?;
    let insert_id = r.lenenc_int()?;
    let status = r.u16()?;
    let warnings = r.u16()?;
    let state = if capabilities & caps::SESSION_TRACK != 0 {
        // The old info, then the session state if the status says so.
        if r.remaining() > 0 {
            r.lenenc_bytes()?;
        }
        (status & status::SESSION_STATE_CHANGED != 0).then(|| r.lenenc_bytes()).transpose()?
    } else {
        None
    };
    let mut p = Vec::with_capacity(ok.len() + info.len() + 4);
    p.push(0x00);
    put_lenenc_int(&mut p, affected);
    put_lenenc_int(&mut p, insert_id);
    p.extend_from_slice(&status.to_le_bytes());
    p.extend_from_slice(&warnings.to_le_bytes());
    put_lenenc_bytes(&mut p, info);
    if let Some(state) = state {
        put_lenenc_bytes(&mut p, state);
    }
    Ok(p)
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
        let p = build_greeting("10.11.6-MariaDB", 7, &SALT, caps, 0, 45);
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
        assert_eq!(g.ext, 0x1d);
    }

    #[test]
    fn extended_capabilities_travel_only_without_client_mysql() {
        let mariadb = caps::RELAYABLE & !caps::LONG_PASSWORD;
        for (flags, want) in [(mariadb, 0x1d), (caps::RELAYABLE, 0)] {
            let g = parse_greeting(&build_greeting("11.4.2-MariaDB", 7, &SALT, flags, 0x1d, 45));
            assert_eq!(g.unwrap().ext, want);
            let client = Response {
                capabilities: flags & !caps::CONNECT_ATTRS,
                ext: 0x1d,
                max_packet: 1 << 24,
                charset: 45,
                user: b"u".to_vec(),
                auth: Vec::new(),
                database: None,
                plugin: NATIVE.to_vec(),
                attrs: None,
            };
            let p = build_response(&client, flags, &[1; 20]);
            assert_eq!(u32::from_le_bytes(p[28..32].try_into().unwrap()), want, "filler's last 4");
            let ClientHello::Response(r) = parse_client_hello(&p).unwrap() else {
                panic!("not a response")
            };
            assert_eq!(r.ext, want);
            let ssl = build_ssl_request(flags, 0x1d, 1 << 24, 45);
            assert_eq!(u32::from_le_bytes(ssl[28..32].try_into().unwrap()), want);
        }
    }

    #[test]
    fn parse_greeting_rejects_every_truncation() {
        let p = build_greeting("8.0.0", 1, &SALT, caps::RELAYABLE, 0, 8);
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
            (caps::PLUGIN_AUTH_LENENC_DATA | caps::SECURE_CONNECTION, &[1u8; 20][..]),
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
        let p = response(flags, &[3; 20], Some(b"app"), b"caching_sha2_password", Some(&a));
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
            ext: 0,
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
        assert_ne!(r.capabilities & caps::REMEMBER_OPTIONS, 0, "kept as the client chose");
        assert_eq!(r.capabilities & caps::LONG_PASSWORD, 0, "not set by the client, not set here");
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

    #[test]
    fn ssl_request_is_32_bytes_with_the_ssl_flag() {
        let p = build_ssl_request(caps::PROTOCOL_41, 0, 1 << 24, 45);
        assert_eq!(p.len(), 32);
        assert_eq!(parse_client_hello(&p), Ok(ClientHello::SslRequest));
    }

    #[test]
    fn ok_with_info_keeps_everything_else() {
        // affected 300 (lenenc 0xFC), insert id 7, status IN_TRANS|AUTOCOMMIT, 1 warning.
        let plain = [0x00, 0xFC, 0x2C, 0x01, 7, 3, 0, 1, 0];
        let got = ok_with_info(&plain, 0, b"\x01AB").unwrap();
        assert_eq!(got, [&plain[..], &[3, 1, b'A', b'B']].concat());
        // With session tracking: the old info is replaced, the state kept.
        let mut tracked = vec![0x00, 0, 0, 0x02, 0x40, 0, 0, 3, b'o', b'l', b'd', 4, 1, 2, 3, 4];
        let got = ok_with_info(&tracked, caps::SESSION_TRACK, b"new").unwrap();
        assert_eq!(got, [0x00, 0, 0, 0x02, 0x40, 0, 0, 3, b'n', b'e', b'w', 4, 1, 2, 3, 4]);
        tracked.truncate(11); // the state flag set, the state missing
        assert!(ok_with_info(&tracked, caps::SESSION_TRACK, b"x").is_err());
        assert!(ok_with_info(&[0xFF, 1, 2], 0, b"x").is_err());
        assert!(ok_with_info(&[0x00, 0xFC], 0, b"x").is_err());
    }

    #[test]
    fn change_user_round_trips_in_both_auth_layouts() {
        for lenenc in [false, true] {
            let flags = caps::PROTOCOL_41
                | caps::SECURE_CONNECTION
                | caps::PLUGIN_AUTH
                | caps::CONNECT_ATTRS
                | if lenenc { caps::PLUGIN_AUTH_LENENC_DATA } else { 0 };
            let session = Response {
                capabilities: flags,
                ext: 0,
                max_packet: 1 << 24,
                charset: 33,
                user: b"old".to_vec(),
                auth: Vec::new(),
                database: None,
                plugin: NATIVE.to_vec(),
                attrs: None,
            };
            let who = Response {
                user: b"new".to_vec(),
                database: Some(b"app".to_vec()),
                charset: 45,
                attrs: Some(vec![1, b'k', 1, b'v']),
                ..session.clone()
            };
            let p = encode_change_user(&who, flags, &[9; 20]);
            let got = parse_change_user(&p, &session).unwrap();
            assert_eq!(got.user, b"new");
            assert_eq!(got.auth, [9; 20]);
            assert_eq!(got.database.as_deref(), Some(&b"app"[..]));
            assert_eq!((got.charset, got.plugin.as_slice()), (45, NATIVE));
            assert_eq!(got.attrs, who.attrs);
            for cut in 0..p.len() {
                // Truncated anywhere: an error or a shorter valid packet,
                // never a panic.
                let _ = parse_change_user(&p[..cut], &session);
            }
        }
        let session = Response {
            capabilities: 0,
            ext: 0,
            max_packet: 0,
            charset: 8,
            user: vec![],
            auth: vec![],
            database: None,
            plugin: vec![],
            attrs: None,
        };
        // The oldest form: user, one-byte auth length, database.
        let got = parse_change_user(b"\x11u\0\x00\0", &session).unwrap();
        assert_eq!((got.user.as_slice(), got.charset, got.database), (&b"u"[..], 8, None));
        assert!(parse_change_user(b"\x03u\0", &session).is_err());
    }
}
