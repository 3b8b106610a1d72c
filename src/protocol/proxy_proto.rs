//! The PROXY protocol (HAProxy's "The PROXY protocol", versions 1 and 2):
//! the header a load balancer puts before a client's bytes to tell the
//! client's real address, and the one myroute puts before its own bytes to a
//! backend so that the backend sees the client's address too.
//!
//! Heads up (section numbers are the PROXY protocol specification's):
//! - v1 (2.1) is one US-ASCII line, `PROXY TCP4|TCP6|UNKNOWN ...` ending in
//!   CRLF, at most 107 bytes; v2 (2.2) is a 12-byte signature, a version and
//!   command byte, a family byte, a big-endian length, then the addresses and
//!   optional TLVs, all covered by that length;
//! - the two are told apart by their first bytes, and neither looks like a
//!   MySQL client's first packet (a 3-byte length, then sequence id 1);
//! - a header is only to be believed from a configured network
//!   ([`Cidr::contains`] on the TCP peer): anyone else could claim any
//!   address (section 2: "only trusted proxies are allowed to use this
//!   protocol").
//!
//! Pure: parsers take the bytes a peer sent and return `Result`, never panic,
//! and never read past what is there; builders return bytes.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// What a v1 header starts with (2.1): "PROXY" and exactly one space.
pub const V1_PREFIX: &[u8] = b"PROXY ";
/// Longest v1 line, CRLF included (2.1: the "worst case" UNKNOWN line).
pub const V1_MAX: usize = 107;
/// The v2 signature (2.2).
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Signature, version/command, family and length (2.2).
const V2_FIXED: usize = 16;
/// Longest v2 header accepted, fixed part included. Section 2 designs both
/// formats to fit the smallest TCP segment every host must take (536 bytes);
/// a claimed length beyond that is refused at once, so a peer cannot make
/// myroute wait for, or buffer, more than this.
pub const V2_MAX: usize = 536;

/// What a header said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// Keep the TCP peer: v1 `UNKNOWN`, v2 `LOCAL`, or a v2 family myroute
    /// does not use (UNSPEC, UDP, UNIX).
    Local,
    /// The client's address (`src`) and the address it connected to
    /// (`dst`). IPv4-mapped IPv6 addresses come back as IPv4, as MariaDB
    /// reads them.
    Proxied { src: SocketAddr, dst: SocketAddr },
}

/// Why bytes are not (yet) a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Every byte so far fits a header; more are needed.
    Incomplete,
    /// No bytes appended can make this a valid header; the text says why.
    Malformed(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Incomplete => f.write_str("incomplete PROXY protocol header"),
            Error::Malformed(what) => write!(f, "malformed PROXY protocol header: {what}"),
        }
    }
}

fn malformed<T>(what: &'static str) -> Result<T, Error> {
    Err(Error::Malformed(what))
}

/// Does `data` start like a PROXY header, v1 (`PROXY `) or v2 (the 12-byte
/// signature)? `None` while `data` is a proper prefix of either, so the
/// answer can only be given once more bytes arrive.
pub fn looks_like_header(data: &[u8]) -> Option<bool> {
    if data.starts_with(V1_PREFIX) || data.starts_with(&V2_SIGNATURE) {
        Some(true)
    } else if V1_PREFIX.starts_with(data) || V2_SIGNATURE.starts_with(data) {
        None
    } else {
        Some(false)
    }
}

/// Parses a header at the start of `data`: the header and how many bytes it
/// took (what follows is the client's own protocol).
///
/// `Incomplete` while the bytes so far may still start a valid header.
/// Bytes that cannot are `Malformed` as soon as that shows (an unfinished
/// v1 field is only checked for its characters and length), so a bad peer
/// is refused without waiting for a timeout (2.1: "abort the connection as
/// soon as possible"); once `Malformed`, more bytes never make it valid.
pub fn parse(data: &[u8]) -> Result<(Header, usize), Error> {
    match looks_like_header(data) {
        None => Err(Error::Incomplete),
        Some(false) => malformed("not a PROXY protocol header"),
        Some(true) if data.starts_with(V1_PREFIX) => parse_v1(data),
        Some(true) => parse_v2(data),
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what a dual-stack socket
/// reports for an IPv4 peer) as IPv4; no flow label or scope id, which no
/// header carries. Headers are parsed to, and built from, this form.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(unmap(addr.ip()), addr.port())
}

fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

// ---- version 1 ----------------------------------------------------------

/// The address family a v1 line names.
#[derive(Clone, Copy)]
enum Family {
    V4,
    V6,
}

/// `data` starts with `PROXY `.
fn parse_v1(data: &[u8]) -> Result<(Header, usize), Error> {
    // 2.1: "If the CRLF sequence is not found in the first 107 characters,
    // the receiver should declare the line invalid."
    let window = data.get(..V1_MAX).unwrap_or(data);
    match window.iter().position(|&b| b == b'\n') {
        Some(lf) => {
            // 2.1: "must not tolerate a single CR or LF character to end the
            // line".
            let line = window
                .get(..lf)
                .and_then(|l| l.strip_suffix(b"\r"))
                .ok_or(Error::Malformed("v1 line ends in LF without CR"))?;
            Ok((v1_line(line)?, lf + 1))
        }
        None if data.len() >= V1_MAX => malformed("v1 line has no CRLF in 107 bytes"),
        None => {
            v1_partial(window)?;
            Err(Error::Incomplete)
        }
    }
}

/// A whole v1 line, CRLF removed (2.1):
/// `PROXY TCP4|TCP6 src dst sport dport` or `PROXY UNKNOWN[ anything]`.
fn v1_line(line: &[u8]) -> Result<Header, Error> {
    let rest = line.strip_prefix(V1_PREFIX).unwrap_or_default();
    // 2.1: for UNKNOWN "the receiver must ignore anything presented before
    // the CRLF".
    if rest == b"UNKNOWN" || rest.starts_with(b"UNKNOWN ") {
        return Ok(Header::Local);
    }
    let mut fields = rest.split(|&b| b == b' ');
    let family = match fields.next() {
        Some(b"TCP4") => Family::V4,
        Some(b"TCP6") => Family::V6,
        _ => return malformed("v1 protocol is not TCP4, TCP6 or UNKNOWN"),
    };
    let (Some(src), Some(dst), Some(sport), Some(dport), None) =
        (fields.next(), fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return malformed("v1 line is not PROXY, protocol, 2 addresses and 2 ports");
    };
    let src = SocketAddr::new(v1_address(src, family)?, v1_port(sport)?);
    let dst = SocketAddr::new(v1_address(dst, family)?, v1_port(dport)?);
    Ok(Header::Proxied { src: canonical(src), dst: canonical(dst) })
}

/// An address of the family the line names (2.1: "The advertised protocol
/// family dictates what format to use"). The standard parsers refuse
/// leading zeros in IPv4 parts, as 2.1 asks.
fn v1_address(field: &[u8], family: Family) -> Result<IpAddr, Error> {
    let text = std::str::from_utf8(field).unwrap_or_default();
    match family {
        Family::V4 => {
            text.parse::<Ipv4Addr>().map(IpAddr::V4).or(malformed("v1 TCP4 address is not IPv4"))
        }
        Family::V6 => {
            text.parse::<Ipv6Addr>().map(IpAddr::V6).or(malformed("v1 TCP6 address is not IPv6"))
        }
    }
}

/// A port: decimal 0 to 65535, no sign, no leading zero (2.1).
fn v1_port(field: &[u8]) -> Result<u16, Error> {
    let digits = !field.is_empty()
        && field.len() <= 5
        && field.iter().all(u8::is_ascii_digit)
        && !(field.len() > 1 && field.first() == Some(&b'0'));
    if !digits {
        return malformed("v1 port is not a number from 0 to 65535");
    }
    // At most 5 digits: no overflow.
    let value = field.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
    u16::try_from(value).or(malformed("v1 port is not a number from 0 to 65535"))
}

/// Fails early on a v1 line still without its LF when the bytes so far
/// cannot start a valid line. Checks only what every prefix of a valid line
/// passes, so a valid header is never refused.
fn v1_partial(window: &[u8]) -> Result<(), Error> {
    // A trailing CR can only be the start of the CRLF: the line before it
    // must then be whole and valid.
    if let Some(line) = window.strip_suffix(b"\r") {
        return v1_line(line).map(|_| ());
    }
    let rest = window.get(V1_PREFIX.len()..).unwrap_or_default();
    let count = rest.split(|&b| b == b' ').count();
    let mut family = Family::V4;
    for (i, field) in rest.split(|&b| b == b' ').enumerate() {
        let last = i + 1 == count;
        match (i, last) {
            (0, true) => {
                if ![&b"TCP4"[..], b"TCP6", b"UNKNOWN"].iter().any(|p| p.starts_with(field)) {
                    return malformed("v1 protocol is not TCP4, TCP6 or UNKNOWN");
                }
            }
            (0, false) => match field {
                b"TCP4" => family = Family::V4,
                b"TCP6" => family = Family::V6,
                // Anything may follow UNKNOWN.
                b"UNKNOWN" => return Ok(()),
                _ => return malformed("v1 protocol is not TCP4, TCP6 or UNKNOWN"),
            },
            (1 | 2, false) => {
                v1_address(field, family)?;
            }
            (1 | 2, true) => {
                let (max, ok): (usize, fn(&u8) -> bool) = match family {
                    Family::V4 => (15, |b| b.is_ascii_digit() || *b == b'.'),
                    Family::V6 => (45, |b| b.is_ascii_hexdigit() || *b == b':' || *b == b'.'),
                };
                if field.len() > max || !field.iter().all(ok) {
                    return malformed("v1 address is not of the named family");
                }
            }
            (3 | 4, false) => {
                v1_port(field)?;
            }
            (3 | 4, true) => {
                if !field.is_empty() {
                    v1_port(field)?;
                }
            }
            _ => return malformed("v1 line is not PROXY, protocol, 2 addresses and 2 ports"),
        }
    }
    Ok(())
}

// ---- version 2 ----------------------------------------------------------

/// `data` starts with the v2 signature. Each byte is checked as soon as it
/// is there.
fn parse_v2(data: &[u8]) -> Result<(Header, usize), Error> {
    let Some(&ver_cmd) = data.get(12) else {
        return Err(Error::Incomplete);
    };
    // 2.2: the high nibble is the version, which "must always be sent as \x2
    // and the receiver must only accept this value".
    if ver_cmd >> 4 != 2 {
        return malformed("v2 version is not 2");
    }
    // 2.2: command \x0 LOCAL, \x1 PROXY; "Receivers must drop connections
    // presenting unexpected values here."
    let local = match ver_cmd & 0x0F {
        0 => true,
        1 => false,
        _ => return malformed("v2 command is neither LOCAL nor PROXY"),
    };
    let Some(&family) = data.get(13) else {
        return Err(Error::Incomplete);
    };
    // Address bytes myroute reads: (2.2) TCP over IPv4 is 2*4 + 2*2 = 12,
    // over IPv6 2*16 + 2*2 = 36. LOCAL ignores the family; UNSPEC, UDP and
    // UNIX are valid combinations myroute does not use, and 2.2 has such a
    // receiver "fall back to the UNSPEC mode", which may accept the
    // connection with its real endpoints: Local. Any other byte "must be
    // rejected as invalid".
    let needed = match (local, family) {
        (true, _) | (false, 0x00 | 0x12 | 0x22 | 0x31 | 0x32) => 0,
        (false, 0x11) => 12,
        (false, 0x21) => 36,
        (false, _) => return malformed("v2 family/protocol byte is not valid"),
    };
    let (Some(&hi), Some(&lo)) = (data.get(14), data.get(15)) else {
        return Err(Error::Incomplete);
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    let total = V2_FIXED + len;
    if total > V2_MAX {
        return malformed("v2 header longer than 536 bytes");
    }
    if len < needed {
        return malformed("v2 length shorter than its addresses");
    }
    // 2.2: "The receiver must not start to parse an address before the whole
    // address block is received."
    let Some(mut block) = data.get(V2_FIXED..total) else {
        return Err(Error::Incomplete);
    };
    // What follows the addresses within `len` are TLVs (2.2), which 2.2 lets
    // a receiver "skip over and ignore"; `total` covers them.
    let header = match needed {
        12 => {
            let src = Ipv4Addr::from(take::<4>(&mut block)?);
            let dst = Ipv4Addr::from(take::<4>(&mut block)?);
            proxied(IpAddr::V4(src), IpAddr::V4(dst), &mut block)?
        }
        36 => {
            let src = Ipv6Addr::from(take::<16>(&mut block)?);
            let dst = Ipv6Addr::from(take::<16>(&mut block)?);
            proxied(IpAddr::V6(src), IpAddr::V6(dst), &mut block)?
        }
        _ => Header::Local,
    };
    Ok((header, total))
}

/// The two ports after the addresses (2.2, network byte order).
fn proxied(src: IpAddr, dst: IpAddr, block: &mut &[u8]) -> Result<Header, Error> {
    let sport = u16::from_be_bytes(take::<2>(block)?);
    let dport = u16::from_be_bytes(take::<2>(block)?);
    Ok(Header::Proxied {
        src: canonical(SocketAddr::new(src, sport)),
        dst: canonical(SocketAddr::new(dst, dport)),
    })
}

/// The next `N` bytes of `block`. The length was checked against the
/// family before, so this cannot fail; it returns an error all the same
/// rather than trust that.
fn take<const N: usize>(block: &mut &[u8]) -> Result<[u8; N], Error> {
    let (head, tail) =
        block.split_first_chunk::<N>().ok_or(Error::Malformed("v2 address block too short"))?;
    *block = tail;
    Ok(*head)
}

// ---- building -----------------------------------------------------------

/// Both addresses in one family: IPv4 when both are (after [`canonical`]),
/// otherwise IPv6 with any IPv4 one mapped (`::ffff:a.b.c.d`). MariaDB reads
/// a mapped address back as IPv4, so the client's IPv4 address survives;
/// `UNKNOWN` would lose it.
fn same_family(src: SocketAddr, dst: SocketAddr) -> (SocketAddr, SocketAddr) {
    let (src, dst) = (canonical(src), canonical(dst));
    if src.is_ipv4() && dst.is_ipv4() {
        return (src, dst);
    }
    let v6 = |a: SocketAddr| match a.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    };
    (v6(src), v6(dst))
}

/// A v1 header (2.1): `PROXY TCP4 src dst sport dport\r\n`, or `TCP6` when
/// either address is IPv6 (see [`same_family`]). At most 104 bytes.
pub fn build_v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (src, dst) = same_family(src, dst);
    let proto = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    format!("PROXY {proto} {} {} {} {}\r\n", src.ip(), dst.ip(), src.port(), dst.port())
        .into_bytes()
}

/// A v2 header (2.2): PROXY command, TCP over IPv4 (0x11) or IPv6 (0x21)
/// (see [`same_family`]), no TLVs. 28 or 52 bytes.
pub fn build_v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (src, dst) = same_family(src, dst);
    let mut out = Vec::with_capacity(V2_FIXED + 36);
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(0x21); // version 2, PROXY
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(0x11);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out.push(0x21);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&v6(d).octets());
        }
    }
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out
}

// ---- trusted networks ---------------------------------------------------

/// A network in CIDR notation (`10.0.0.0/8`, `fd00::/8`) or one address
/// (`127.0.0.1`, `::1`). Host bits after the prefix are ignored
/// (`10.1.2.3/8` is `10.0.0.0/8`), as MariaDB's `proxy_protocol_networks`
/// does.
///
/// Matching works on IPv6 with IPv4 as mapped addresses
/// (`::ffff:a.b.c.d`), so an IPv4 network matches an IPv4 peer whether the
/// socket reports it as IPv4 or mapped IPv6, and an IPv6 network that covers
/// `::ffff:0:0/96` (such as `::/0`) matches IPv4 peers too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The network address, host bits cleared; IPv4 for mapped networks.
    addr: IpAddr,
    /// Prefix length: up to 32 for IPv4, 128 for IPv6.
    prefix: u8,
}

impl Cidr {
    /// True if `ip` is in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (net, len) = self.as_v6();
        mask(as_u128(ip), len) == net
    }

    /// The network address (host bits cleared).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The network in IPv6 space: address bits and prefix length.
    fn as_v6(&self) -> (u128, u32) {
        let extra = if self.addr.is_ipv4() { 96 } else { 0 };
        (as_u128(self.addr), u32::from(self.prefix) + extra)
    }
}

/// `ip` as IPv6 bits, IPv4 mapped.
fn as_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// `bits` with all but the first `len` (at most 128) cleared.
fn mask(bits: u128, len: u32) -> u128 {
    match 128u32.checked_sub(len) {
        Some(128) | None => 0,
        Some(host) => bits & (u128::MAX << host),
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let bad = || format!("'{s}' is not an IP address or a network like 10.0.0.0/8 or fd00::/8");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| bad())?;
        let max: u8 = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            // Digits only: `u8::from_str` would take a '+' sign.
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                match p.parse::<u8>() {
                    Ok(n) if n <= max => n,
                    _ => return Err(format!("'{s}': prefix length must be 0 to {max}")),
                }
            }
            Some(_) => return Err(bad()),
        };
        // An IPv4-mapped network is the IPv4 one, as MariaDB reads it.
        let (ip, prefix) = match ip {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix - 96),
                None => (ip, prefix),
            },
            _ => (ip, prefix),
        };
        let extra = if ip.is_ipv4() { 96 } else { 0 };
        let bits = mask(as_u128(ip), u32::from(prefix) + extra);
        let addr = match ip {
            IpAddr::V4(_) => Ipv6Addr::from(bits).to_ipv4_mapped().map_or(ip, IpAddr::V4),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(bits)),
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A comma-separated list of networks (`10.0.0.0/8, 127.0.0.1, ::1`), the
/// value of `proxy_protocol_from`. An empty list or entry is an error: an
/// empty value more likely lost its text than means "nobody".
pub fn parse_cidr_list(v: &str) -> Result<Vec<Cidr>, String> {
    if v.trim().is_empty() {
        return Err(
            "expected a comma-separated list of addresses or networks, like 10.0.0.0/8, 127.0.0.1"
                .into(),
        );
    }
    v.split(',')
        .map(|item| match item.trim() {
            "" => Err(format!("empty entry in '{v}'")),
            t => t.parse(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn proxied(src: &str, dst: &str) -> Header {
        Header::Proxied { src: sa(src), dst: sa(dst) }
    }

    const V1_TCP4: &[u8] = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 3306\r\n";
    const V1_TCP6: &[u8] = b"PROXY TCP6 2001:db8::1 fd00::2 65535 0\r\n";

    fn v2(ver_cmd: u8, fam: u8, block: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(ver_cmd);
        h.push(fam);
        h.extend_from_slice(&(block.len() as u16).to_be_bytes());
        h.extend_from_slice(block);
        h
    }

    fn v2_tcp4_block() -> Vec<u8> {
        let mut b = vec![10, 1, 2, 3, 127, 0, 0, 1];
        b.extend_from_slice(&40000u16.to_be_bytes());
        b.extend_from_slice(&3306u16.to_be_bytes());
        b
    }

    fn v2_tcp6_block() -> Vec<u8> {
        let mut b = "2001:db8::7".parse::<Ipv6Addr>().unwrap().octets().to_vec();
        b.extend_from_slice(&"::1".parse::<Ipv6Addr>().unwrap().octets());
        b.extend_from_slice(&1u16.to_be_bytes());
        b.extend_from_slice(&65535u16.to_be_bytes());
        b
    }

    /// Every header the tests call valid, with what it parses to.
    fn valid_headers() -> Vec<(Vec<u8>, Header)> {
        let mut tlvs = v2_tcp4_block();
        tlvs.extend_from_slice(&[0x04, 0, 3, 0, 0, 0, 0x05, 0, 1, 7]); // NOOP, UNIQUE_ID
        vec![
            (
                V1_TCP4.to_vec(),
                proxied("192.168.0.1:56324", "192.168.0.11:3306"),
            ),
            (V1_TCP6.to_vec(), proxied("[2001:db8::1]:65535", "[fd00::2]:0")),
            (b"PROXY UNKNOWN\r\n".to_vec(), Header::Local),
            (
                b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n".to_vec(),
                Header::Local,
            ),
            (b"PROXY UNKNOWN x\ry\r\n".to_vec(), Header::Local),
            (
                b"PROXY TCP6 ::ffff:1.2.3.4 ::1 1 2\r\n".to_vec(),
                proxied("1.2.3.4:1", "[::1]:2"),
            ),
            (
                v2(0x21, 0x11, &v2_tcp4_block()),
                proxied("10.1.2.3:40000", "127.0.0.1:3306"),
            ),
            (
                v2(0x21, 0x21, &v2_tcp6_block()),
                proxied("[2001:db8::7]:1", "[::1]:65535"),
            ),
            (v2(0x21, 0x11, &tlvs), proxied("10.1.2.3:40000", "127.0.0.1:3306")),
            (v2(0x20, 0x00, &[]), Header::Local),
            (v2(0x20, 0x11, &v2_tcp4_block()), Header::Local),
            (v2(0x20, 0x99, &[1, 2, 3]), Header::Local),
            (v2(0x21, 0x00, &[]), Header::Local),
            (v2(0x21, 0x12, &v2_tcp4_block()), Header::Local),
            (v2(0x21, 0x22, &v2_tcp6_block()), Header::Local),
            (v2(0x21, 0x31, &[0; 216]), Header::Local),
            (v2(0x21, 0x32, &[]), Header::Local),
            (v2(0x21, 0x11, &vec![0; V2_MAX - 16]), proxied("0.0.0.0:0", "0.0.0.0:0")),
        ]
    }

    #[test]
    fn valid_headers_parse_and_leave_what_follows() {
        for (bytes, want) in valid_headers() {
            assert_eq!(looks_like_header(&bytes), Some(true));
            assert_eq!(parse(&bytes), Ok((want, bytes.len())), "{bytes:?}");
            let mut more = bytes.clone();
            more.extend_from_slice(b"\x0a\0\0\0rest\r\n");
            assert_eq!(parse(&more), Ok((want, bytes.len())), "{bytes:?}");
        }
    }

    #[test]
    fn every_prefix_of_a_valid_header_is_incomplete() {
        for (bytes, _) in valid_headers() {
            for n in 0..bytes.len() {
                assert_eq!(parse(&bytes[..n]), Err(Error::Incomplete), "prefix {n} of {bytes:?}");
            }
        }
    }

    #[test]
    fn looks_like_header_answers_from_a_prefix() {
        assert_eq!(looks_like_header(b""), None);
        assert_eq!(looks_like_header(b"PROX"), None);
        assert_eq!(looks_like_header(b"PROXY"), None);
        assert_eq!(looks_like_header(b"PROXY "), Some(true));
        assert_eq!(looks_like_header(b"PROXYZ"), Some(false));
        assert_eq!(looks_like_header(b"proxy "), Some(false));
        assert_eq!(looks_like_header(&V2_SIGNATURE[..11]), None);
        assert_eq!(looks_like_header(&V2_SIGNATURE), Some(true));
        assert_eq!(looks_like_header(b"\r\n\r\n\0\r\nQUIT\r"), Some(false));
        // A MySQL HandshakeResponse: length, sequence 1.
        assert_eq!(looks_like_header(&[0x55, 0, 0, 1]), Some(false));
        assert_eq!(looks_like_header(b"\r\n\r\n\x01"), Some(false));
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\n"),
            Err(Error::Malformed("not a PROXY protocol header"))
        );
    }

    fn is_malformed(bytes: &[u8]) -> bool {
        matches!(parse(bytes), Err(Error::Malformed(_)))
    }

    #[test]
    fn v1_rejects_bad_lines() {
        for bad in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"[..],   // LF alone
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n",    // CR inside
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",     // trailing space
            b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",     // two spaces
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",        // a port missing
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",    // a field too many
            b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",      // protocol
            b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",      // protocol case
            b"PROXY UNKNOWNX\r\n",                      // not UNKNOWN
            b"PROXY \r\n",                              // no protocol
            b"PROXY TCP4\r\n",                          // no addresses
            b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",          // IPv6 in TCP4
            b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n",          // IPv6 in TCP4, dst
            b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",          // IPv4 in TCP6
            b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",     // leading zero
            b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",        // short IPv4
            b"PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n",    // octet range
            b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",     // zone
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",  // port range
            b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",     // sign
            b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",     // sign
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",     // leading zero
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 0x2\r\n",    // hex
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n",       // empty port
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 222222\r\n", // 6 digits
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\xff",    // CR not followed by LF
        ] {
            assert!(is_malformed(bad), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn v1_fails_early_on_a_bad_prefix() {
        for bad in [
            &b"PROXY X"[..],
            b"PROXY TCP4x",
            b"PROXY TCP4 1.2.3.4x",
            b"PROXY TCP4 1.2.3.4.5.6.7.8.9.0",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 ",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 00",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 70000",
            b"PROXY TCP6 ::1 g",
            b"PROXY TCP4 1.2.3.4\r",
            b"PROXY UNK\r",
        ] {
            assert!(is_malformed(bad), "{:?}", String::from_utf8_lossy(bad));
        }
        for fine in [
            &b"PROXY TCP4 "[..],
            b"PROXY TCP4 1.2.3.4 ",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 ",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 ",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 0",
            // A whole line waiting for its LF.
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r",
            // UNKNOWN takes anything until the CRLF, even a lone CR.
            b"PROXY UNKNOWN \x01\xff\r",
            b"PROXY UNKNOWN \x01\r\xff",
        ] {
            assert_eq!(parse(fine), Err(Error::Incomplete), "{fine:?}");
        }
    }

    #[test]
    fn v1_length_limit() {
        // 107 bytes with the CRLF is the most a line may have.
        let mut line = b"PROXY UNKNOWN ".to_vec();
        line.resize(V1_MAX - 2, b'x');
        line.extend_from_slice(b"\r\n");
        assert_eq!(parse(&line), Ok((Header::Local, V1_MAX)));
        // One more byte before the CRLF.
        let mut long = line[..V1_MAX - 2].to_vec();
        long.extend_from_slice(b"x\r\n");
        assert!(is_malformed(&long));
        // Without the CRLF: incomplete below 107 bytes, malformed from 107.
        assert_eq!(parse(&long[..V1_MAX - 1]), Err(Error::Incomplete));
        assert!(is_malformed(&long[..V1_MAX]));
        // The CR in the window but the LF just beyond it.
        let mut split = line[..V1_MAX - 2].to_vec();
        split.extend_from_slice(b"y\r\n");
        assert!(is_malformed(&split[..V1_MAX]));
    }

    #[test]
    fn v2_rejects_bad_headers() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (v2(0x11, 0x11, &v2_tcp4_block()), "v2 version is not 2"),
            (v2(0x31, 0x11, &v2_tcp4_block()), "v2 version is not 2"),
            (v2(0x22, 0x11, &v2_tcp4_block()), "v2 command is neither LOCAL nor PROXY"),
            (v2(0x2F, 0x11, &v2_tcp4_block()), "v2 command is neither LOCAL nor PROXY"),
            (v2(0x21, 0x13, &v2_tcp4_block()), "v2 family/protocol byte is not valid"),
            (v2(0x21, 0x41, &v2_tcp4_block()), "v2 family/protocol byte is not valid"),
            (v2(0x21, 0x01, &v2_tcp4_block()), "v2 family/protocol byte is not valid"),
            (v2(0x21, 0x11, &v2_tcp4_block()[..11]), "v2 length shorter than its addresses"),
            (v2(0x21, 0x21, &v2_tcp4_block()), "v2 length shorter than its addresses"),
            (v2(0x21, 0x11, &vec![0; V2_MAX - 15]), "v2 header longer than 536 bytes"),
            (v2(0x20, 0x00, &vec![0; V2_MAX - 15]), "v2 header longer than 536 bytes"),
        ];
        for (bytes, why) in cases {
            assert_eq!(parse(&bytes), Err(Error::Malformed(why)), "{bytes:?}");
            // Refused as soon as the offending byte is there.
            let at = match why {
                "v2 version is not 2" | "v2 command is neither LOCAL nor PROXY" => 13,
                "v2 family/protocol byte is not valid" => 14,
                _ => 16,
            };
            assert_eq!(parse(&bytes[..at]), Err(Error::Malformed(why)));
            assert_eq!(parse(&bytes[..at - 1]), Err(Error::Incomplete));
        }
        // A claimed 64 KiB with nothing behind it is refused, not awaited.
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend_from_slice(&[0x21, 0x11, 0xFF, 0xFF]);
        assert!(is_malformed(&huge));
    }

    #[test]
    fn build_round_trips() {
        let addrs = [
            "1.2.3.4:5",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "[::1]:3306",
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
            "[::ffff:10.0.0.1]:40000",
            "[fe80::1%7]:1",
            "[2001:db8::1]:443",
        ];
        for s in addrs {
            for d in addrs {
                let (s, d) = (sa(s), sa(d));
                let want = Header::Proxied { src: canonical(s), dst: canonical(d) };
                let v1 = build_v1(s, d);
                assert!(v1.len() <= 104, "{}", String::from_utf8_lossy(&v1));
                assert_eq!(parse(&v1), Ok((want, v1.len())), "{}", String::from_utf8_lossy(&v1));
                let v2 = build_v2(s, d);
                assert_eq!(parse(&v2), Ok((want, v2.len())));
            }
        }
    }

    #[test]
    fn build_exact_bytes() {
        assert_eq!(
            build_v1(sa("192.168.0.1:56324"), sa("192.168.0.11:3306")),
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 3306\r\n"
        );
        // Mixed families: the IPv4 one mapped into IPv6.
        assert_eq!(
            build_v1(sa("10.0.0.1:1000"), sa("[::1]:3306")),
            b"PROXY TCP6 ::ffff:10.0.0.1 ::1 1000 3306\r\n"
        );
        // A mapped peer from a dual-stack socket is IPv4 again.
        assert_eq!(
            build_v1(sa("[::ffff:10.0.0.1]:1000"), sa("127.0.0.1:3306")),
            b"PROXY TCP4 10.0.0.1 127.0.0.1 1000 3306\r\n"
        );
        let mut want = V2_SIGNATURE.to_vec();
        want.extend_from_slice(&[
            0x21, 0x11, 0, 12, 10, 0, 0, 1, 127, 0, 0, 1, 0x03, 0xE8, 0x0C, 0xEA,
        ]);
        assert_eq!(build_v2(sa("10.0.0.1:1000"), sa("127.0.0.1:3306")), want);
        let mixed = build_v2(sa("10.0.0.1:1000"), sa("[::1]:3306"));
        assert_eq!(mixed.len(), 52);
        assert_eq!(mixed[13], 0x21);
        assert_eq!(&mixed[16..32], &"::ffff:10.0.0.1".parse::<Ipv6Addr>().unwrap().octets());
    }

    #[test]
    fn error_texts() {
        assert_eq!(Error::Incomplete.to_string(), "incomplete PROXY protocol header");
        assert_eq!(
            Error::Malformed("v2 version is not 2").to_string(),
            "malformed PROXY protocol header: v2 version is not 2"
        );
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_parses_and_matches() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains(ip("10.255.1.2")));
        assert!(c.contains(ip("::ffff:10.1.1.1")));
        assert!(!c.contains(ip("11.0.0.0")));
        assert!(!c.contains(ip("::a00:1")), "IPv4-compatible is not mapped");
        assert_eq!(c.to_string(), "10.0.0.0/8");

        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert_eq!(one.prefix(), 32);
        assert!(one.contains(ip("127.0.0.1")));
        assert!(!one.contains(ip("127.0.0.2")));
        assert!(one.contains(ip("::ffff:127.0.0.1")));

        let lo6: Cidr = "::1".parse().unwrap();
        assert_eq!(lo6.to_string(), "::1/128");
        assert!(lo6.contains(ip("::1")));
        assert!(!lo6.contains(ip("127.0.0.1")));

        let ula: Cidr = "fd00::/8".parse().unwrap();
        assert!(ula.contains(ip("fdff:1::2")));
        assert!(!ula.contains(ip("fe00::1")));
        assert!(!ula.contains(ip("10.0.0.1")));

        // Host bits are cleared.
        let h: Cidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(h, c);
        assert_eq!(h.addr(), ip("10.0.0.0"));
        let h6: Cidr = "2001:db8::ff/32".parse().unwrap();
        assert_eq!(h6.to_string(), "2001:db8::/32");

        // Edges: /0 and odd prefix lengths.
        let all4: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all4.contains(ip("1.2.3.4")) && all4.contains(ip("::ffff:1.2.3.4")));
        assert!(!all4.contains(ip("::1")));
        let all6: Cidr = "::/0".parse().unwrap();
        assert!(all6.contains(ip("::1")) && all6.contains(ip("1.2.3.4")));
        let odd: Cidr = "192.168.1.128/25".parse().unwrap();
        assert!(odd.contains(ip("192.168.1.200")) && !odd.contains(ip("192.168.1.127")));
        let odd6: Cidr = "2001:db8::/33".parse().unwrap();
        assert!(odd6.contains(ip("2001:db8:7fff::1")) && !odd6.contains(ip("2001:db8:8000::")));

        // A mapped network is the IPv4 one.
        let m: Cidr = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(m, c);
        assert_eq!(m.to_string(), "10.0.0.0/8");
        let m128: Cidr = "::ffff:1.2.3.4".parse().unwrap();
        assert_eq!(m128.to_string(), "1.2.3.4/32");
        let wide: Cidr = "::ffff:0:0/80".parse().unwrap();
        assert_eq!(wide.to_string(), "::/80");
        assert!(wide.contains(ip("9.9.9.9")));
    }

    #[test]
    fn cidr_rejects() {
        for bad in [
            "",
            "/8",
            "10.0.0.0/",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "10.0.0.0/0008",
            "10.0.0.0/8/8",
            "10.0.0",
            "10.0.0.0 /8",
            " 10.0.0.0/8",
            "localhost",
            "fe80::1%eth0",
            "*",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?}");
        }
        assert_eq!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err("'10.0.0.0/33': prefix length must be 0 to 32".to_string())
        );
        assert_eq!("10.0.0.0/008".parse::<Cidr>().unwrap().prefix(), 8);
    }

    #[test]
    fn cidr_lists() {
        let l = parse_cidr_list("10.0.0.0/8, 127.0.0.1,::1/128 ,fd00::/8").unwrap();
        let shown: Vec<String> = l.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.0.0.0/8", "127.0.0.1/32", "::1/128", "fd00::/8"]);
        assert!(parse_cidr_list("").is_err());
        assert!(parse_cidr_list("  ").is_err());
        assert!(parse_cidr_list("10.0.0.0/8,").is_err());
        assert!(parse_cidr_list("10.0.0.0/8,,127.0.0.1").is_err());
        assert!(parse_cidr_list("10.0.0.0/8 127.0.0.1").is_err());
        assert_eq!(
            parse_cidr_list("10.0.0.0/8, nonsense"),
            Err("'nonsense' is not an IP address or a network like 10.0.0.0/8 or fd00::/8"
                .to_string())
        );
    }
}
