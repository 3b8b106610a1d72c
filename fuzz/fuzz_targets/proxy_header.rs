//! The PROXY protocol header parser, `proxy_proto::parse` and
//! `proxy_proto::looks_like_header`, on bytes a load balancer (or anyone who
//! reaches the port) sends first; `Cidr` and `parse_cidr_list` on the input
//! as text; and the builders, on addresses taken from the input.
//!
//! Beyond "no panic", parsing is checked over every prefix of the input, as
//! bytes arrive one at a time: `Incomplete` until the header's last byte,
//! then the same header and length for every longer prefix; once
//! `Malformed`, never anything else (no valid header starts with bytes
//! refused early). Every built header must parse back to the canonical
//! addresses, and take exactly its own length.
//!
//! Input: header bytes (also read as addresses for the builders, and as
//! text for the CIDR parsers).

#![no_main]

use libfuzzer_sys::fuzz_target;
use myroute::protocol::proxy_proto::{
    build_v1, build_v2, canonical, looks_like_header, parse, parse_cidr_list, Cidr, Error, Header,
    V1_MAX, V2_MAX,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Longest input walked prefix by prefix: longer than any header.
const WALK: usize = V2_MAX + 64;

fn prefixes(data: &[u8]) {
    let data = &data[..data.len().min(WALK)];
    let mut done: Option<(Header, usize)> = None;
    let mut refused = false;
    for k in 0..=data.len() {
        let prefix = &data[..k];
        let result = parse(prefix);
        match looks_like_header(prefix) {
            None => assert_eq!(result, Err(Error::Incomplete), "{prefix:?}"),
            Some(false) => assert!(matches!(result, Err(Error::Malformed(_)))),
            Some(true) => {}
        }
        match result {
            Err(Error::Incomplete) => {
                assert!(!refused, "incomplete after malformed at {k}");
                assert!(done.is_none(), "incomplete after a whole header at {k}");
            }
            Err(Error::Malformed(why)) => {
                assert!(!why.is_empty());
                assert!(done.is_none(), "malformed after a whole header at {k}");
                refused = true;
            }
            Ok((header, n)) => {
                assert!(!refused, "a header after malformed at {k}");
                assert!(n <= k && n > 0);
                assert_eq!(looks_like_header(prefix), Some(true));
                match done {
                    Some(first) => assert_eq!((header, n), first),
                    None => {
                        // Whole exactly when its last byte arrives.
                        assert_eq!(n, k, "header of {n} bytes only seen at {k}");
                        if prefix.starts_with(b"PROXY ") {
                            assert!(n <= V1_MAX && prefix.ends_with(b"\r\n"));
                        } else {
                            assert!((16..=V2_MAX).contains(&n));
                        }
                        done = Some((header, n));
                    }
                }
                if let Header::Proxied { src, dst } = header {
                    assert_eq!(canonical(src), src);
                    assert_eq!(canonical(dst), dst);
                }
            }
        }
    }
}

fn addresses(data: &[u8]) -> (SocketAddr, SocketAddr) {
    let mut b = [0u8; 37];
    for (d, s) in b.iter_mut().zip(data) {
        *d = *s;
    }
    let sel = b[0];
    let ip = |bytes: &[u8], v6: bool, mapped: bool| -> IpAddr {
        let v4 = Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]);
        if !v6 {
            IpAddr::V4(v4)
        } else if mapped {
            IpAddr::V6(v4.to_ipv6_mapped())
        } else {
            let mut o = [0u8; 16];
            o.copy_from_slice(&bytes[..16]);
            IpAddr::V6(Ipv6Addr::from(o))
        }
    };
    let src = ip(&b[1..17], sel & 1 != 0, sel & 4 != 0);
    let dst = ip(&b[17..33], sel & 2 != 0, sel & 8 != 0);
    let sport = u16::from_be_bytes([b[33], b[34]]);
    let dport = u16::from_be_bytes([b[35], b[36]]);
    (SocketAddr::new(src, sport), SocketAddr::new(dst, dport))
}

fn round_trip(data: &[u8]) {
    let (src, dst) = addresses(data);
    let want = Header::Proxied { src: canonical(src), dst: canonical(dst) };
    for built in [build_v1(src, dst), build_v2(src, dst)] {
        assert!(built.len() <= 104, "{built:?}");
        assert_eq!(parse(&built), Ok((want, built.len())), "{built:?}");
        // What follows the header is left alone.
        let mut more = built.clone();
        more.extend_from_slice(data);
        assert_eq!(parse(&more), Ok((want, built.len())));
        assert_eq!(parse(&built[..built.len() - 1]), Err(Error::Incomplete));
    }
}

fn cidrs(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (src, _) = addresses(data);
    if let Ok(c) = text.parse::<Cidr>() {
        let shown = c.to_string();
        assert_eq!(shown.parse::<Cidr>(), Ok(c), "{shown}");
        assert!(c.contains(c.addr()));
        assert!(c.prefix() <= if c.addr().is_ipv4() { 32 } else { 128 });
        // An IPv4 peer matches the same whether reported as IPv4 or mapped.
        if let IpAddr::V4(v4) = canonical(src).ip() {
            assert_eq!(c.contains(IpAddr::V4(v4)), c.contains(IpAddr::V6(v4.to_ipv6_mapped())));
        }
    }
    if let Ok(list) = parse_cidr_list(text) {
        assert_eq!(list.len(), text.split(',').count());
    }
}

fuzz_target!(|data: &[u8]| {
    prefixes(data);
    round_trip(data);
    cidrs(data);
});
