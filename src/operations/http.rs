//! The metrics responder's HTTP/1.1, pure half: reading a request head,
//! choosing the answer, building the response.
//!
//! Heads up:
//! - one request per connection: every response says `Connection: close`
//!   and the caller closes after writing it, so there is no keep-alive,
//!   pipelining or request body to follow (RFC 9112, 9.6);
//! - only the request line matters; header lines are checked for shape and
//!   skipped, and the whole head must fit in [`MAX_HEAD`] bytes.
//!
//! Pure: parsers take the bytes a peer sent and never panic; builders return
//! bytes.

use std::fmt;
use std::fmt::Write as _;

/// Largest request head (request line, header lines, blank line) accepted.
pub const MAX_HEAD: usize = 8192;
/// `Content-Type` of `GET /metrics`.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";
/// `Content-Type` of every other answer.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// A request line (RFC 9112, 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLine {
    /// As sent: methods are case-sensitive (RFC 9110, 9.1).
    pub method: String,
    /// The path of the target, without query or fragment: `/metrics` for
    /// `/metrics?x=1` and for `http://host:9104/metrics`; `*` for `*`.
    pub path: String,
}

/// Why a request head is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// No end of the head within [`MAX_HEAD`] bytes.
    TooLarge,
    /// The text says what is wrong.
    Malformed(&'static str),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::TooLarge => write!(f, "request head larger than {MAX_HEAD} bytes"),
            HttpError::Malformed(what) => write!(f, "malformed request: {what}"),
        }
    }
}

fn malformed<T>(what: &'static str) -> Result<T, HttpError> {
    Err(HttpError::Malformed(what))
}

/// Reads a request head from the bytes received so far: `Ok(None)` until
/// the blank line that ends it has arrived, the request line once it has.
///
/// Lines end in CRLF or a bare LF (RFC 9112, 2.2 lets a recipient take LF
/// alone). Each line is checked as soon as it is whole, so a bad request is
/// refused without waiting for the rest.
pub fn parse_request(buf: &[u8]) -> Result<Option<RequestLine>, HttpError> {
    let window = buf.get(..MAX_HEAD).unwrap_or(buf);
    let mut rest = window;
    let mut request: Option<RequestLine> = None;
    while let Some(lf) = rest.iter().position(|&b| b == b'\n') {
        let (raw, tail) = rest.split_at(lf);
        rest = tail.get(1..).unwrap_or_default();
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        match &request {
            // RFC 9112, 2.2: "a server SHOULD ignore at least one empty line
            // (CRLF) received prior to the request-line".
            None if line.is_empty() => {}
            None => request = Some(request_line(line)?),
            Some(_) if line.is_empty() => return Ok(request),
            Some(_) => header_line(line)?,
        }
    }
    if buf.len() >= MAX_HEAD {
        return Err(HttpError::TooLarge);
    }
    Ok(None)
}

/// `method SP request-target SP HTTP-version` (RFC 9112, 3).
fn request_line(line: &[u8]) -> Result<RequestLine, HttpError> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return malformed("request line is not METHOD TARGET VERSION");
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return malformed("method is not a token");
    }
    // RFC 9112, 2.3: HTTP/1.x. A higher minor version is answered as 1.1
    // (RFC 9110, 2.5).
    match version {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor] if minor.is_ascii_digit() => {}
        _ => return malformed("version is not HTTP/1.x"),
    }
    // Visible US-ASCII only (RFC 3986 characters; no spaces or controls).
    if target.is_empty() || !target.iter().all(|b| (0x21..=0x7E).contains(b)) {
        return malformed("request target");
    }
    Ok(RequestLine {
        method: String::from_utf8_lossy(method).into_owned(),
        path: String::from_utf8_lossy(path_of(target)).into_owned(),
    })
}

/// The path of a request target (RFC 9112, 3.2): origin-form `/p?q`,
/// absolute-form `http://host/p?q` (which a server "MUST accept", 3.2.2)
/// or anything else as it is (`*`, authority-form), which only a method
/// other than GET may carry.
fn path_of(target: &[u8]) -> &[u8] {
    let lower = |n: usize| target.get(..n).map(<[u8]>::to_ascii_lowercase);
    let after_scheme = if lower(7).as_deref() == Some(b"http://") {
        target.get(7..)
    } else if lower(8).as_deref() == Some(b"https://") {
        target.get(8..)
    } else {
        None
    };
    let path = match after_scheme {
        Some(rest) => match rest.iter().position(|&b| matches!(b, b'/' | b'?' | b'#')) {
            Some(i) if rest.get(i) == Some(&b'/') => rest.get(i..).unwrap_or_default(),
            // No path: the root (RFC 9112, 3.2.1's "/" for an empty path).
            _ => b"/",
        },
        None => target,
    };
    let end = path.iter().position(|&b| b == b'?' || b == b'#').unwrap_or(path.len());
    path.get(..end).unwrap_or(path)
}

/// `field-name ":" OWS field-value OWS` (RFC 9112, 5). Only the shape is
/// checked: a token before the colon, no whitespace before it (5.1 says to
/// reject that), no obsolete line folding (5.2 allows rejecting it), no NUL
/// or lone CR in the value (RFC 9110, 5.5).
fn header_line(line: &[u8]) -> Result<(), HttpError> {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return malformed("header line without a colon");
    };
    let (name, value) = line.split_at(colon);
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return malformed("header name is not a token");
    }
    if value.iter().any(|&b| b == 0 || b == b'\r') {
        return malformed("header value has a NUL or CR");
    }
    Ok(())
}

/// `tchar` (RFC 9110, 5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The reason phrase myroute writes for a status.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        // RFC 9112, 4: the reason phrase may be empty.
        _ => "",
    }
}

/// A whole response: status line, `Content-Type` (left out when empty),
/// `Content-Length`, `Connection: close`, `Allow: GET` for a 405 (unless
/// `extra_headers` has an `Allow`), then `extra_headers`, a blank line and
/// `body`.
///
/// Header names and values come from myroute itself; a CR or LF in one is
/// written as a space all the same, so no text can start a header line.
pub fn response(
    status: u16,
    content_type: &str,
    body: &[u8],
    extra_headers: &[(&str, &str)],
) -> Vec<u8> {
    let mut head = String::with_capacity(128);
    let _ = write!(head, "HTTP/1.1 {status:03} {}\r\n", reason(status));
    if !content_type.is_empty() {
        put_header(&mut head, "Content-Type", content_type);
    }
    put_header(&mut head, "Content-Length", &body.len().to_string());
    put_header(&mut head, "Connection", "close");
    if status == 405 && !extra_headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("allow")) {
        put_header(&mut head, "Allow", "GET");
    }
    for (name, value) in extra_headers {
        put_header(&mut head, name, value);
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

fn put_header(out: &mut String, name: &str, value: &str) {
    let clean = |s: &str| s.replace(['\r', '\n'], " ");
    let _ = write!(out, "{}: {}\r\n", clean(name), clean(value));
}

/// What to answer (the spec's "Metrics" section).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /metrics`: 200 with the exposition.
    Metrics,
    /// `GET /ready`: 200 or 503, as the caller judges.
    Ready,
    /// `GET` of any other path: 404.
    NotFound,
    /// Any other method: 405 with `Allow: GET`.
    MethodNotAllowed,
    /// A malformed or oversized request: 400.
    BadRequest,
}

/// Chooses the answer once the request head is whole; `None` while it is
/// not (read more). The query string does not matter (`/metrics?x=1` is
/// `/metrics`).
pub fn route(buf: &[u8]) -> Option<Route> {
    let req = match parse_request(buf) {
        Ok(None) => return None,
        Ok(Some(req)) => req,
        Err(_) => return Some(Route::BadRequest),
    };
    Some(if req.method != "GET" {
        Route::MethodNotAllowed
    } else {
        match req.path.as_str() {
            "/metrics" => Route::Metrics,
            "/ready" => Route::Ready,
            p if p.starts_with('/') => Route::NotFound,
            // `GET *` or `GET host:port`: not a form GET may use.
            _ => Route::BadRequest,
        }
    })
}

/// The whole response for the routes that need no state (404, 405, 400);
/// `None` for `Metrics` and `Ready`, which the caller builds.
pub fn canned_response(route: Route) -> Option<Vec<u8>> {
    let (status, body): (u16, &[u8]) = match route {
        Route::Metrics | Route::Ready => return None,
        Route::NotFound => (404, b"not found\n"),
        Route::MethodNotAllowed => (405, b"method not allowed\n"),
        Route::BadRequest => (400, b"bad request\n"),
    };
    Some(response(status, TEXT_CONTENT_TYPE, body, &[]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, path: &str) -> Result<Option<RequestLine>, HttpError> {
        Ok(Some(RequestLine { method: method.into(), path: path.into() }))
    }

    #[test]
    fn parses_complete_heads_only() {
        let full = b"GET /metrics HTTP/1.1\r\nHost: x:9104\r\nUser-Agent: Prometheus/2.5\r\nAccept: text/plain;q=0.9, */*;q=0.1\r\n\r\n";
        for n in 0..full.len() {
            assert_eq!(parse_request(&full[..n]), Ok(None), "prefix {n}");
        }
        assert_eq!(parse_request(full), req("GET", "/metrics"));
        // Bytes after the head (a body, or a pipelined request) are ignored.
        let mut more = full.to_vec();
        more.extend_from_slice(b"junk\0\0");
        assert_eq!(parse_request(&more), req("GET", "/metrics"));
        // LF-only line ends, HTTP/1.0, no headers.
        assert_eq!(parse_request(b"GET /ready HTTP/1.0\n\n"), req("GET", "/ready"));
        assert_eq!(parse_request(b"GET /ready HTTP/1.0\r\n\n"), req("GET", "/ready"));
        assert_eq!(parse_request(b"GET /ready HTTP/1.0\n\r\n"), req("GET", "/ready"));
        // Empty lines before the request line are skipped.
        assert_eq!(parse_request(b"\r\n\nGET / HTTP/1.1\r\n\r\n"), req("GET", "/"));
        assert_eq!(parse_request(b"\r\n\r\n"), Ok(None));
        // Header values may be empty or have any visible bytes.
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nX-Empty:\r\nX-Bin: \xff\x01\t\r\n\r\n"),
            req("GET", "/")
        );
    }

    #[test]
    fn paths() {
        for (target, path) in [
            ("/metrics?x=1", "/metrics"),
            ("/metrics#frag", "/metrics"),
            ("/ready?", "/ready"),
            ("/", "/"),
            ("/a/b?c=/d", "/a/b"),
            ("http://127.0.0.1:9104/metrics?x", "/metrics"),
            ("HTTP://host/ready", "/ready"),
            ("https://host", "/"),
            ("http://host?x=/metrics", "/"),
            ("*", "*"),
            ("?metrics", ""),
            ("host:9104", "host:9104"),
        ] {
            let line = format!("GET {target} HTTP/1.1\r\n\r\n");
            assert_eq!(parse_request(line.as_bytes()), req("GET", path), "{target}");
        }
    }

    #[test]
    fn malformed_requests() {
        for bad in [
            &b"GET /metrics\r\n\r\n"[..], // HTTP/0.9
            b"GET /metrics HTTP/2.0\r\n\r\n",
            b"GET /metrics HTTP/1.10\r\n\r\n",
            b"GET /metrics http/1.1\r\n\r\n",
            b"GET  /metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/1.1 \r\n\r\n",
            b" GET /metrics HTTP/1.1\r\n\r\n",
            b"GET /me trics HTTP/1.1\r\n\r\n",
            b"GET /metrics\x00 HTTP/1.1\r\n\r\n",
            b"GET /m\xc3\xa9trics HTTP/1.1\r\n\r\n",
            b"G(T /metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nNoColon\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\n: x\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nX: a\rb\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nX: a\0b\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n", // TLS
        ] {
            assert!(
                matches!(parse_request(bad), Err(HttpError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
            assert_eq!(route(bad), Some(Route::BadRequest));
        }
        // Refused as soon as the bad line is whole.
        assert!(parse_request(b"GET /metrics\r\n").is_err());
        assert!(parse_request(b"GET / HTTP/1.1\r\nbad\r\n").is_err());
    }

    #[test]
    fn head_size_limit() {
        let mut head = b"GET / HTTP/1.1\r\nX: ".to_vec();
        head.resize(MAX_HEAD - 4, b'a');
        head.extend_from_slice(b"\r\n\r\n");
        assert_eq!(head.len(), MAX_HEAD);
        assert_eq!(parse_request(&head), req("GET", "/"));
        // One byte longer: the end is past the limit.
        let mut long = head[..MAX_HEAD - 4].to_vec();
        long.extend_from_slice(b"a\r\n\r\n");
        assert_eq!(parse_request(&long), Err(HttpError::TooLarge));
        assert_eq!(parse_request(&long[..MAX_HEAD - 1]), Ok(None));
        assert_eq!(parse_request(&long[..MAX_HEAD]), Err(HttpError::TooLarge));
        assert_eq!(route(&long), Some(Route::BadRequest));
        // Endless empty lines before a request line end at the limit too.
        assert_eq!(parse_request(&[b'\n'; MAX_HEAD]), Err(HttpError::TooLarge));
        assert_eq!(parse_request(&vec![b'x'; 1 << 20]), Err(HttpError::TooLarge));
    }

    #[test]
    fn routes() {
        let r = |s: &str| route(s.as_bytes());
        assert_eq!(r("GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n"), Some(Route::Metrics));
        assert_eq!(r("GET /metrics?name[]=x HTTP/1.1\r\n\r\n"), Some(Route::Metrics));
        assert_eq!(r("GET /ready HTTP/1.0\r\n\r\n"), Some(Route::Ready));
        assert_eq!(r("GET http://h:1/ready HTTP/1.1\r\n\r\n"), Some(Route::Ready));
        assert_eq!(r("GET / HTTP/1.1\r\n\r\n"), Some(Route::NotFound));
        assert_eq!(r("GET /metrics/ HTTP/1.1\r\n\r\n"), Some(Route::NotFound));
        assert_eq!(r("GET /METRICS HTTP/1.1\r\n\r\n"), Some(Route::NotFound));
        assert_eq!(r("GET /ready HTTP/1.9\r\n\r\n"), Some(Route::Ready));
        assert_eq!(
            r("POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"),
            Some(Route::MethodNotAllowed)
        );
        assert_eq!(r("HEAD /metrics HTTP/1.1\r\n\r\n"), Some(Route::MethodNotAllowed));
        assert_eq!(r("get /metrics HTTP/1.1\r\n\r\n"), Some(Route::MethodNotAllowed));
        assert_eq!(r("OPTIONS * HTTP/1.1\r\n\r\n"), Some(Route::MethodNotAllowed));
        assert_eq!(r("GET * HTTP/1.1\r\n\r\n"), Some(Route::BadRequest));
        assert_eq!(r("GET ?metrics HTTP/1.1\r\n\r\n"), Some(Route::BadRequest));
        assert_eq!(r("GET /metrics HTTP/1.1\r\n"), None);
        assert_eq!(r(""), None);
    }

    #[test]
    fn responses() {
        let ok = response(200, METRICS_CONTENT_TYPE, b"a 1\n", &[]);
        assert_eq!(
            ok,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: 4\r\nConnection: close\r\n\r\na 1\n"
        );
        let r405 = canned_response(Route::MethodNotAllowed).unwrap();
        assert_eq!(
            String::from_utf8(r405).unwrap(),
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 19\r\nConnection: close\r\nAllow: GET\r\n\r\nmethod not allowed\n"
        );
        // The caller's Allow replaces the default one.
        let own = String::from_utf8(response(405, "", b"", &[("Allow", "GET, HEAD")])).unwrap();
        assert_eq!(own.matches("Allow:").count(), 1);
        assert!(own.contains("Allow: GET, HEAD\r\n") && !own.contains("Content-Type"));
        assert!(String::from_utf8(canned_response(Route::NotFound).unwrap())
            .unwrap()
            .starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(String::from_utf8(canned_response(Route::BadRequest).unwrap())
            .unwrap()
            .starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert_eq!(canned_response(Route::Metrics), None);
        assert_eq!(canned_response(Route::Ready), None);
        let r503 = String::from_utf8(response(
            503,
            TEXT_CONTENT_TYPE,
            b"not ready: pool x\n",
            &[("Retry-After", "1")],
        ))
        .unwrap();
        assert!(r503.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(r503.contains("\r\nRetry-After: 1\r\n\r\nnot ready: pool x\n"));
        // No header line can be injected.
        let inj =
            String::from_utf8(response(299, "a\r\nX: y", b"", &[("N\n", "v\r\nSet-Cookie: z")]))
                .unwrap();
        assert!(inj.starts_with("HTTP/1.1 299 \r\n"));
        assert_eq!(inj.matches("\r\n").count(), 6, "{inj:?}");
    }
}
