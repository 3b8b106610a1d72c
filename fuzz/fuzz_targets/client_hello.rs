//! The client's first packet: `handshake::parse_client_hello`
//! (HandshakeResponse41, SSLRequest, pre-4.1 HandshakeResponse320).
//!
//! Whatever parses as a HandshakeResponse41 is then rebuilt the way the
//! proxy rebuilds it for a backend (`handshake::build_response`) and parsed
//! again: user, database, attributes, character set and maximum packet size
//! must survive, and the stream-shaping flags must be the client's.
//!
//! Input: one payload, header excluded.

#![no_main]

use libfuzzer_sys::fuzz_target;
use myroute::protocol::constants::caps;
use myroute::protocol::handshake::{self, ClientHello, NATIVE};

fuzz_target!(|data: &[u8]| {
    let Ok(hello) = handshake::parse_client_hello(data) else {
        return;
    };
    let r = match hello {
        ClientHello::Response(r) => r,
        ClientHello::SslRequest => {
            // 32 bytes exactly, PROTOCOL_41 and SSL set.
            assert_eq!(data.len(), 32);
            let flags = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
            assert_ne!(flags & caps::SSL, 0);
            assert_ne!(flags & caps::PROTOCOL_41, 0);
            return;
        }
        ClientHello::Pre41 => {
            assert_eq!(u16::from_le_bytes([data[0], data[1]]) as u32 & caps::PROTOCOL_41, 0);
            return;
        }
    };
    assert_ne!(r.capabilities & caps::PROTOCOL_41, 0);
    assert!(!r.user.contains(&0));
    assert!(r.database.as_ref().is_none_or(|d| !d.is_empty() && !d.contains(&0)));
    // Debug never shows the auth data.
    let shown = format!("{r:?}");
    assert!(shown.contains("auth_len"));

    let token = [0x5Au8; 20];
    for backend_caps in
        [caps::RELAYABLE, caps::RELAYABLE & !(caps::CONNECT_ATTRS | caps::PLUGIN_AUTH_LENENC_DATA)]
    {
        let rebuilt = handshake::build_response(&r, backend_caps, &token);
        let again = match handshake::parse_client_hello(&rebuilt) {
            Ok(ClientHello::Response(a)) => a,
            other => panic!("rebuilt response does not parse: {other:?}"),
        };
        assert_eq!(again.user, r.user);
        assert_eq!(again.auth, token);
        assert_eq!(again.database, r.database);
        assert_eq!(again.plugin, NATIVE);
        assert_eq!((again.charset, again.max_packet), (r.charset, r.max_packet));
        if backend_caps & caps::CONNECT_ATTRS != 0 {
            assert_eq!(again.attrs, r.attrs);
        } else {
            assert_eq!(again.attrs, None);
        }
        assert_eq!(
            again.capabilities & !caps::LOGIN_ONLY,
            r.capabilities & !caps::LOGIN_ONLY,
            "stream-shaping flags go to the backend exactly as the client chose them"
        );
    }
});
