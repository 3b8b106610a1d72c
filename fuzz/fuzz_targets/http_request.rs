//! The metrics responder's HTTP half (`http::parse_request`, `http::route`,
//! `http::response`), on the bytes a scraper (or anyone who reaches the
//! port) sends.
//!
//! The request is parsed at every prefix, as bytes arrive (for long inputs:
//! at the first bytes, around every line end, around `MAX_HEAD` and at
//! intervals): `Ok(None)` until a result, which comes exactly when a line
//! end arrives (or at `MAX_HEAD` bytes for `TooLarge`) and stays the same
//! for every longer prefix; `route` always agrees with `parse_request`; a
//! request line parsed is well-formed, and re-parsing a canonical request
//! built from it gives the same method and path.
//!
//! `response` is built with fuzzer-chosen status, content type, body and
//! extra headers (taken from the request's own lines): its head ends at the
//! first blank line, every header line is `name: value` with no CR or LF
//! inside, `Content-Length` appears once and equals the body's length, and
//! the body follows the head unchanged.
//!
//! Input: request bytes. If the first byte is 0xFF, the next two give a
//! count N (little-endian, at most 12000) and the first `~` of the rest is
//! replaced by N `a` bytes, so heads near `MAX_HEAD` are reached from small
//! inputs.

#![no_main]

use libfuzzer_sys::fuzz_target;
use myroute::operations::http::{
    canned_response, parse_request, reason, response, route, HttpError, RequestLine, Route,
    MAX_HEAD,
};

/// Prefixes up to this length are all parsed; longer inputs are sampled.
const ALL_PREFIXES: usize = 600;

fn expand(data: &[u8]) -> Vec<u8> {
    match data {
        [0xFF, lo, hi, rest @ ..] => {
            let n = usize::from(u16::from_le_bytes([*lo, *hi])) % 12_001;
            match rest.iter().position(|&b| b == b'~') {
                Some(i) => {
                    let mut v = Vec::with_capacity(rest.len() + n);
                    v.extend_from_slice(&rest[..i]);
                    v.resize(i + n, b'a');
                    v.extend_from_slice(&rest[i + 1..]);
                    v
                }
                None => rest.to_vec(),
            }
        }
        _ => data.to_vec(),
    }
}

/// Prefix lengths to parse, increasing.
fn points(buf: &[u8]) -> Vec<usize> {
    if buf.len() <= ALL_PREFIXES {
        return (0..=buf.len()).collect();
    }
    let mut v: Vec<usize> = (0..=64).collect();
    let mut lf = 0;
    for (i, &b) in buf.iter().enumerate() {
        if b == b'\n' {
            v.extend([i, i + 1]);
            lf += 1;
            if lf == 64 {
                break;
            }
        }
    }
    v.extend([MAX_HEAD - 1, MAX_HEAD, MAX_HEAD + 1, buf.len() - 1, buf.len()]);
    v.extend((0..buf.len()).step_by(509));
    v.retain(|&k| k <= buf.len());
    v.sort_unstable();
    v.dedup();
    v
}

fn route_of(r: &Result<Option<RequestLine>, HttpError>) -> Option<Route> {
    Some(match r {
        Ok(None) => return None,
        Err(_) => Route::BadRequest,
        Ok(Some(req)) if req.method != "GET" => Route::MethodNotAllowed,
        Ok(Some(req)) => match req.path.as_str() {
            "/metrics" => Route::Metrics,
            "/ready" => Route::Ready,
            p if p.starts_with('/') => Route::NotFound,
            _ => Route::BadRequest,
        },
    })
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn check_request_line(req: &RequestLine) {
    assert!(!req.method.is_empty() && req.method.bytes().all(is_tchar));
    assert!(req.path.bytes().all(|b| (0x21..=0x7E).contains(&b)));
    assert!(!req.path.contains(['?', '#']));
    if !req.path.is_empty() {
        let canonical = format!("{} {} HTTP/1.1\r\n\r\n", req.method, req.path);
        assert_eq!(parse_request(canonical.as_bytes()), Ok(Some(req.clone())), "{canonical:?}");
    }
}

fn prefixes(buf: &[u8]) {
    let mut last: Option<(usize, Result<Option<RequestLine>, HttpError>)> = None;
    let mut done: Option<Result<Option<RequestLine>, HttpError>> = None;
    for k in points(buf) {
        let prefix = &buf[..k];
        let result = parse_request(prefix);
        assert_eq!(route(prefix), route_of(&result), "route at {k}");
        if k < MAX_HEAD {
            assert_ne!(result, Err(HttpError::TooLarge), "too large at {k}");
        }
        match &done {
            Some(first) => assert_eq!(&result, first, "result changed at {k}"),
            None if result != Ok(None) => {
                // A result comes with a line end, or at the size limit.
                if let Some((j, Ok(None))) = &last {
                    if *j + 1 == k {
                        match &result {
                            Err(HttpError::TooLarge) => assert_eq!(k, MAX_HEAD),
                            _ => assert_eq!(buf[k - 1], b'\n', "result at {k} without a line end"),
                        }
                    }
                }
                if let Ok(Some(req)) = &result {
                    check_request_line(req);
                }
                done = Some(result.clone());
            }
            None => assert!(k < MAX_HEAD, "undecided at {k}"),
        }
        last = Some((k, result));
    }
}

/// Header lines of the request as (name, value) strings.
fn header_pairs(buf: &[u8]) -> Vec<(String, String)> {
    buf.split(|&b| b == b'\n')
        .skip(1)
        .take(6)
        .map(|line| {
            let line = String::from_utf8_lossy(line);
            match line.split_once(':') {
                Some((n, v)) => (n.to_string(), v.trim_start().to_string()),
                None => (line.to_string(), String::new()),
            }
        })
        .collect()
}

fn check_response(buf: &[u8]) {
    let status = match buf {
        [a, b, ..] => u16::from_le_bytes([*a, *b]),
        _ => 200,
    };
    let first_line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let content_type = String::from_utf8_lossy(first_line.get(..64).unwrap_or(first_line));
    let body = &buf[..buf.len().min(2048)];
    let pairs = header_pairs(buf);
    let extra: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    for status in [status, 405, 200] {
        let r = response(status, &content_type, body, &extra);
        let end =
            r.windows(4).position(|w| w == b"\r\n\r\n").expect("a head ends with a blank line");
        let (head, rest) = r.split_at(end + 4);
        assert_eq!(rest, body, "the body follows the head");
        let head = std::str::from_utf8(head).expect("the head is text");
        let lines: Vec<&str> = head[..head.len() - 4].split("\r\n").collect();
        assert!(!lines.iter().any(|l| l.contains(['\r', '\n'])), "{head:?}");
        assert_eq!(lines[0], format!("HTTP/1.1 {status:03} {}", reason(status)), "status line");
        let headers: Vec<(&str, &str)> =
            lines[1..].iter().map(|l| l.split_once(": ").expect("name: value")).collect();
        let allow_extra = extra.iter().any(|(n, _)| n.eq_ignore_ascii_case("allow"));
        let want = usize::from(!content_type.is_empty())
            + 2
            + usize::from(status == 405 && !allow_extra)
            + extra.len();
        assert_eq!(headers.len(), want, "{head:?}");
        // The product's own headers come first, in a fixed order.
        let mut at = 0;
        if !content_type.is_empty() {
            assert_eq!(headers[0].0, "Content-Type");
            at = 1;
        }
        assert_eq!(headers[at], ("Content-Length", &*body.len().to_string()));
        assert_eq!(headers[at + 1], ("Connection", "close"));
        if status == 405 {
            let allows = headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("allow")).count();
            assert!(allows >= 1);
        }
        // Content-Length is in the head exactly once.
        let lengths = headers.iter().skip(at + 2).filter(|(n, _)| *n == "Content-Length").count();
        let extra_lengths =
            extra.iter().filter(|(n, _)| n.replace(['\r', '\n'], " ") == "Content-Length").count();
        assert_eq!(lengths, extra_lengths);
    }
}

fuzz_target!(|data: &[u8]| {
    let buf = expand(data);
    prefixes(&buf);
    // Bytes after the head change nothing.
    if let Ok(Some(req)) = parse_request(&buf) {
        let mut more = buf.clone();
        more.extend_from_slice(b"GET /x HTTP/1.1\r\n\r\n\0\xff");
        assert_eq!(parse_request(&more), Ok(Some(req)));
    }
    if let Some(r) = route(&buf) {
        if let Some(canned) = canned_response(r) {
            assert!(canned.starts_with(b"HTTP/1.1 4"));
        }
    }
    check_response(&buf[..buf.len().min(4096)]);
});
