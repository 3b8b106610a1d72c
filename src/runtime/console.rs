//! The admin console's and the metrics responder's sockets: their
//! listeners, their connections, and the bytes in and out of each
//! [`Session`] or HTTP exchange.
//!
//! What a connection asks for goes back to the loop as [`Work`]: the loop
//! answers from its read-only view, applies controls itself, and hands the
//! answer back with [`Console::answer`].
//!
//! Tokens: connection `k` uses `AUX_BASE + k`.

use crate::config::ClientTls;
use crate::operations::access::printable;
use crate::operations::admin::{self, AdminAuth, Command, Reply, Session};
use crate::operations::http::{self, Route};
use crate::runtime::io::{IoStatus, Stream, TlsEnd, TlsSettings};
use crate::runtime::sys;
use log::{info, warn};
use mio::net::TcpListener;
use mio::{Interest, Registry, Token};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub const ADMIN_LISTENER: Token = Token(usize::MAX - 1);
pub const METRICS_LISTENER: Token = Token(usize::MAX - 2);
/// Admin or metrics connection `k` uses token `AUX_BASE + k`; pair tokens
/// stay below it.
pub const AUX_BASE: usize = 1 << (usize::BITS - 2);
/// Admin and metrics connections open at once, at most.
const MAX_AUX: usize = 64;
/// Bytes an admin or metrics connection may send that are not yet answered.
const MAX_AUX_INPUT: usize = 128 * 1024;
/// How long accepting pauses after the process ran out of descriptors.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(500);

/// What a connection is.
enum Kind {
    Admin(Box<Session>),
    /// An HTTP exchange: the request is read into `input`, the answer
    /// written from `out`; one request per connection.
    Http {
        out: Vec<u8>,
        answered: bool,
    },
}

/// An admin console or metrics connection.
struct Aux {
    stream: Stream,
    peer: SocketAddr,
    kind: Kind,
    input: Vec<u8>,
    /// Until when it may take to log in or send its request.
    deadline: Option<Instant>,
}

/// What a connection needs from the loop.
pub enum Work {
    /// An admin command to answer (`user` ran it from `peer`).
    Command { cmd: Command, user: String, peer: SocketAddr },
    /// An HTTP request to answer.
    Http(Route),
}

/// The loop's answer to [`Work`].
pub enum Answer {
    Reply(Reply),
    Http(Vec<u8>),
}

/// Counters and limits the console shares with the proxy.
pub struct Shared<'a> {
    pub now: Instant,
    /// The main port's TLS setting and settings, which the console follows.
    pub tls_mode: ClientTls,
    pub tls: &'a TlsSettings,
    pub admin: Option<AdminAuth<'a>>,
    pub handshake_timeout: Duration,
    pub login_warnings: &'a mut crate::operations::access::RateLimit,
    pub resource_warnings: &'a mut crate::operations::access::RateLimit,
    pub failed_logins: &'a mut u64,
}

/// The console's and the metrics responder's listeners and connections.
#[derive(Default)]
pub struct Console {
    admin: Option<TcpListener>,
    metrics: Option<TcpListener>,
    conns: Vec<Option<Aux>>,
    /// Accepting failed (out of descriptors): try again at this instant.
    pub retry_at: Option<Instant>,
    next_id: u32,
}

impl Console {
    /// Listens on the admin and metrics addresses that are configured.
    pub fn bind(
        registry: &Registry,
        admin: Option<SocketAddr>,
        metrics: Option<SocketAddr>,
    ) -> std::io::Result<Console> {
        let open = |addr: Option<SocketAddr>, token| -> std::io::Result<_> {
            let Some(addr) = addr else {
                return Ok(None);
            };
            let mut l = sys::listen(addr, false)?;
            registry.register(&mut l, token, Interest::READABLE)?;
            Ok(Some(l))
        };
        Ok(Console {
            admin: open(admin, ADMIN_LISTENER)?,
            metrics: open(metrics, METRICS_LISTENER)?,
            ..Console::default()
        })
    }

    /// The console's and the metrics responder's addresses, if any.
    pub fn addrs(&self) -> (Option<SocketAddr>, Option<SocketAddr>) {
        let addr = |l: &Option<TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
        (addr(&self.admin), addr(&self.metrics))
    }

    /// The connection a token names, if it is one of the console's.
    pub fn conn_of(token: Token) -> Option<usize> {
        (token.0 >= AUX_BASE).then(|| token.0 - AUX_BASE)
    }

    /// Login and request deadlines, and the accept retry.
    pub fn deadlines(&self) -> impl Iterator<Item = Instant> + '_ {
        let conns = self.conns.iter().flatten().filter_map(|a| a.deadline);
        conns.chain(self.retry_at)
    }

    /// Accepts what waits on the admin (`admin`) or metrics listener. Each
    /// new connection is served at once (its greeting); returns the work
    /// the first of them asks for, if any.
    pub fn accept(
        &mut self,
        admin: bool,
        registry: &Registry,
        sh: &mut Shared,
    ) -> Vec<(usize, Work)> {
        let mut work = Vec::new();
        loop {
            let listener = if admin { &self.admin } else { &self.metrics };
            let Some(listener) = listener.as_ref() else {
                return work;
            };
            let (tcp, peer) = match listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return work,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                    ) =>
                {
                    continue
                }
                Err(e) => {
                    // Out of descriptors: no spinning, and no new event will
                    // come for what waits in the backlog, so retry on a timer.
                    if sh.resource_warnings.allow(sh.now) {
                        warn!("accept on the admin or metrics port failed: {e}");
                    }
                    self.retry_at = Some(sh.now + ACCEPT_BACKOFF);
                    return work;
                }
            };
            let k = match self.conns.iter().position(Option::is_none) {
                Some(k) => k,
                None if self.conns.len() < MAX_AUX => {
                    self.conns.push(None);
                    self.conns.len() - 1
                }
                None => {
                    if sh.resource_warnings.allow(sh.now) {
                        warn!("{MAX_AUX} admin/metrics connections open: refusing {peer}");
                    }
                    continue; // dropped: closed
                }
            };
            let mut stream = Stream::accepted(tcp);
            if let Err(e) = stream.register(registry, Token(AUX_BASE + k)) {
                warn!("cannot register {peer}: {e}");
                continue;
            }
            let kind = if admin {
                self.next_id = self.next_id.wrapping_add(1).max(1);
                let salt = sys::fresh_salt();
                Kind::Admin(Box::new(Session::new(self.next_id, salt, peer.ip(), sh.tls_mode)))
            } else {
                Kind::Http { out: Vec::new(), answered: false }
            };
            self.conns[k] = Some(Aux {
                stream,
                peer,
                kind,
                input: Vec::new(),
                deadline: Some(sh.now + sh.handshake_timeout),
            });
            if let Some(w) = self.serve(k, registry, sh) {
                work.push((k, w));
            }
        }
    }

    /// Reads what connection `k` sent, answers what its session answers
    /// itself, writes, and closes it when it is done. Returns the work it
    /// asks of the loop, if any; call [`Console::answer`] with the result.
    pub fn serve(&mut self, k: usize, registry: &Registry, sh: &mut Shared) -> Option<Work> {
        let a = self.conns.get_mut(k)?.as_mut()?;
        let (_, st) = a.stream.read_vec(&mut a.input, MAX_AUX_INPUT + 1);
        let mut open =
            matches!(st, IoStatus::Open | IoStatus::Drained) && a.input.len() <= MAX_AUX_INPUT;
        let (work, done) = match &mut a.kind {
            Kind::Admin(session) => {
                match a.stream.tls_end() {
                    Some(TlsEnd::Ready { .. }) => session.tls_started(),
                    Some(TlsEnd::Failed(_)) => open = false,
                    None => {}
                }
                let was_in = session.user().is_some();
                let mut salt = sys::fresh_salt;
                let cmd = session.feed(&mut a.input, sh.admin.as_ref(), &mut salt);
                if session.take_tls_request() {
                    // What the client sent behind its SSLRequest is TLS.
                    let early = std::mem::take(&mut a.input);
                    open &= a.stream.start_tls_server(sh.tls, &early).is_ok();
                }
                if !was_in {
                    logged_in(session, a.peer, &mut a.deadline, sh);
                }
                let work = cmd.map(|cmd| Work::Command {
                    cmd,
                    user: session.user().unwrap_or("?").to_string(),
                    peer: a.peer,
                });
                let failed = matches!(
                    a.stream.write_vec(&mut session.out).1,
                    IoStatus::Closed | IoStatus::Failed(_)
                );
                (work, !open || failed || (session.finished() && session.out.is_empty()))
            }
            Kind::Http { out, answered } => {
                let work = match http::route(&a.input) {
                    Some(route) if !*answered => {
                        a.deadline = None;
                        Some(Work::Http(route))
                    }
                    _ => None,
                };
                let failed =
                    matches!(a.stream.write_vec(out).1, IoStatus::Closed | IoStatus::Failed(_));
                let done = failed
                    || (*answered && out.is_empty())
                    || (!open && !*answered && work.is_none());
                (work, done)
            }
        };
        if done && work.is_none() {
            self.close(k, registry);
        }
        work
    }

    /// Hands the loop's answer to connection `k`, then serves it again (a
    /// client may have pipelined its next statement). Returns the next work
    /// it asks for, if any.
    pub fn answer(
        &mut self,
        k: usize,
        answer: Answer,
        registry: &Registry,
        sh: &mut Shared,
    ) -> Option<Work> {
        let a = self.conns.get_mut(k)?.as_mut()?;
        match (&mut a.kind, answer) {
            (Kind::Admin(session), Answer::Reply(r)) => session.reply(r),
            (Kind::Http { out, answered }, Answer::Http(bytes)) => {
                *out = bytes;
                *answered = true;
            }
            _ => {}
        }
        self.serve(k, registry, sh)
    }

    /// Closes logins and HTTP requests that did not arrive in time.
    pub fn expire(&mut self, now: Instant, registry: &Registry) {
        for k in 0..self.conns.len() {
            let late = self.conns[k].as_ref().and_then(|a| a.deadline).is_some_and(|t| now >= t);
            if late {
                self.close(k, registry);
            }
        }
    }

    fn close(&mut self, k: usize, registry: &Registry) {
        if let Some(mut a) = self.conns.get_mut(k).and_then(Option::take) {
            a.stream.deregister(registry);
        }
    }
}

/// Logs the end of an admin login, whichever way it went.
fn logged_in(session: &Session, peer: SocketAddr, deadline: &mut Option<Instant>, sh: &mut Shared) {
    if let Some(user) = session.user() {
        info!("admin console: {user} logged in from {peer}");
        *deadline = None;
    } else if session.end() == Some(&admin::End::AccessDenied) {
        *sh.failed_logins += 1;
        // Bounded like the proxy's own failed logins.
        if sh.login_warnings.allow(sh.now) {
            let user = session.attempted_user().unwrap_or_default();
            warn!("admin console: failed login from {} user={}", peer.ip(), printable(user));
        }
    }
}
