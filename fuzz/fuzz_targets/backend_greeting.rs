//! What a backend says first: `handshake::parse_greeting` (HandshakeV10)
//! and `errors::parse_err` (an ERR instead of a greeting, or at login; the
//! proxy tells OK, ERR and AuthSwitchRequest apart by the first byte).
//!
//! A greeting that parses is rebuilt with `handshake::build_greeting` (what
//! myroute sends its clients) and parsed again: version, connection id,
//! capabilities, character set and a 20-byte salt must survive.
//!
//! Input: one payload, header excluded.

#![no_main]

use libfuzzer_sys::fuzz_target;
use myroute::protocol::constants::caps;
use myroute::protocol::errors;
use myroute::protocol::handshake::{self, NATIVE};

fuzz_target!(|data: &[u8]| {
    match errors::parse_err(data) {
        Some((code, _msg)) => {
            assert!(data.len() >= 3 && data[0] == 0xFF);
            assert_eq!(code, u16::from_le_bytes([data[1], data[2]]));
        }
        None => assert!(data.len() < 3 || data[0] != 0xFF),
    }

    let Ok(g) = handshake::parse_greeting(data) else {
        return;
    };
    assert_eq!(data[0], 10);
    assert!(!g.version.contains('\0'));
    assert!(!g.auth_plugin.contains(&0));
    if g.capabilities & caps::SECURE_CONNECTION == 0 {
        assert_eq!(g.salt.len(), 8);
    }
    if g.capabilities & caps::PLUGIN_AUTH == 0 {
        assert_eq!(g.auth_plugin, NATIVE);
    }

    // Rebuild it as myroute's own greeting (20-byte salt) and parse again.
    // myroute always offers SECURE_CONNECTION (its builder writes part 2 of
    // the salt unconditionally), so only such flags round-trip.
    let mut salt = [b'x'; 20];
    for (s, b) in salt.iter_mut().zip(&g.salt) {
        *s = *b;
    }
    let secure = g.capabilities | caps::SECURE_CONNECTION;
    for c in [secure, secure | caps::PLUGIN_AUTH, secure & !caps::PLUGIN_AUTH] {
        let built =
            handshake::build_greeting(&g.version, g.connection_id, &salt, c, g.ext, g.charset);
        let again = handshake::parse_greeting(&built).expect("myroute's greeting parses");
        assert_eq!(again.version, g.version);
        assert_eq!(again.connection_id, g.connection_id);
        assert_eq!(again.capabilities, c);
        // Extended capabilities travel only with CLIENT_MYSQL clear.
        let ext = if c & caps::LONG_PASSWORD == 0 { g.ext } else { 0 };
        assert_eq!(again.ext, ext);
        assert_eq!(again.charset, g.charset);
        assert_eq!(again.auth_plugin, NATIVE);
        assert_eq!(again.salt, salt.to_vec());
    }
});
