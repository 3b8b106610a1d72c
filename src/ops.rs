//! The operations side of the loop: admin console and metrics connections,
//! signals, reload and graceful shutdown. A child of `event_loop`, since it
//! works on the same proxy state; what it shows is built by `report`.

use super::*;
use std::io::{Read, Write};

impl Proxy {
    // ----- admin console and metrics connections -----

    pub(super) fn accept_aux(&mut self, admin: bool, now: Instant) {
        loop {
            let listener = if admin {
                self.admin_listener.as_ref()
            } else {
                self.metrics_listener.as_ref()
            };
            let Some(listener) = listener else {
                return;
            };
            let (mut stream, peer) = match listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::ConnectionAborted => continue,
                Err(e) => {
                    // Out of descriptors: no spinning, and no new event will
                    // come for what waits in the backlog, so retry on a timer.
                    if self.resource_warnings.allow(now) {
                        warn!("accept on the admin or metrics port failed: {e}");
                    }
                    self.aux_accept_retry = Some(now + ACCEPT_BACKOFF);
                    return;
                }
            };
            let k = match self.aux.iter().position(Option::is_none) {
                Some(k) => k,
                None if self.aux.len() < MAX_AUX => {
                    self.aux.push(None);
                    self.aux.len() - 1
                }
                None => {
                    if self.resource_warnings.allow(now) {
                        warn!("{MAX_AUX} admin/metrics connections open: refusing {peer}");
                    }
                    continue; // dropped: closed
                }
            };
            if let Err(e) = self.poll.registry().register(
                &mut stream,
                Token(AUX_BASE + k),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                warn!("cannot register {peer}: {e}");
                continue;
            }
            let kind = if admin {
                let id = self.next_id;
                self.next_id = self.next_id.wrapping_add(1).max(1);
                AuxKind::Admin(Box::new(admin::Session::new(id, fresh_salt(), peer.ip())))
            } else {
                AuxKind::Http {
                    out: Vec::new(),
                    answered: false,
                }
            };
            self.aux[k] = Some(Aux {
                stream,
                peer,
                kind,
                input: Vec::new(),
                deadline: Some(now + self.cfg.handshake_timeout),
            });
            self.drive_aux(k, now);
        }
    }

    /// Reads what an admin or metrics connection sent, answers it, writes
    /// the answer, and closes it when it is done.
    pub(super) fn drive_aux(&mut self, k: usize, now: Instant) {
        // Taken out of its slot while served: commands need the proxy.
        let Some(mut a) = self.aux.get_mut(k).and_then(Option::take) else {
            return;
        };
        let mut open = read_available(&mut a.stream, &mut a.input);
        if a.input.len() > MAX_AUX_INPUT {
            open = false;
        }
        let done = match &mut a.kind {
            AuxKind::Admin(session) => {
                let was_in = session.user().is_some();
                loop {
                    // The account is borrowed only while feeding: running a
                    // command needs the whole proxy.
                    let auth = self.cfg.admin.as_ref().map(|c| AdminAuth {
                        user: &c.user,
                        stage2: &c.stage2,
                    });
                    let mut salt = fresh_salt;
                    let Some(cmd) = session.feed(&mut a.input, auth.as_ref(), &mut salt) else {
                        break;
                    };
                    let reply = self.execute(cmd, session.user().unwrap_or("?"), a.peer, now);
                    session.reply(reply);
                }
                if !was_in {
                    if let Some(user) = session.user() {
                        info!("admin console: {user} logged in from {}", a.peer);
                        a.deadline = None;
                    } else if session.end() == Some(&admin::End::AccessDenied) {
                        self.stats.admin_logins_failed += 1;
                        // Bounded like the proxy's own failed logins.
                        if self.login_warnings.allow(now) {
                            let user = session.attempted_user().unwrap_or_default();
                            warn!(
                                "admin console: failed login from {} user={}",
                                a.peer.ip(),
                                crate::access::printable(user)
                            );
                        }
                    }
                }
                let st = write_all_available(&mut a.stream, &mut session.out);
                !open || st || (session.finished() && session.out.is_empty())
            }
            AuxKind::Http { out, answered } => {
                if !*answered {
                    if let Some(route) = http::route(&a.input) {
                        *out = self.http_answer(route, now);
                        *answered = true;
                        a.deadline = None;
                    }
                }
                let failed = write_all_available(&mut a.stream, out);
                failed || (*answered && out.is_empty()) || (!open && !*answered)
            }
        };
        if done {
            let _ = self.poll.registry().deregister(&mut a.stream);
            return;
        }
        if let Some(slot) = self.aux.get_mut(k) {
            *slot = Some(a);
        }
    }

    /// Closes admin logins and HTTP requests that did not arrive in time,
    /// and retries accepting after running out of descriptors.
    pub(super) fn expire_aux(&mut self, now: Instant) {
        if self.aux_accept_retry.is_some_and(|t| now >= t) {
            self.aux_accept_retry = None;
            self.accept_aux(true, now);
            self.accept_aux(false, now);
        }
        for k in 0..self.aux.len() {
            let late = self.aux[k]
                .as_ref()
                .and_then(|a| a.deadline)
                .is_some_and(|t| now >= t);
            if late {
                if let Some(mut a) = self.aux[k].take() {
                    let _ = self.poll.registry().deregister(&mut a.stream);
                }
            }
        }
    }

    fn http_answer(&self, route: Route, now: Instant) -> Vec<u8> {
        match route {
            Route::Metrics => {
                let body = report::metrics(self.view(now));
                http::response(200, http::METRICS_CONTENT_TYPE, body.as_bytes(), &[])
            }
            Route::Ready => {
                let (status, body) = match self.not_ready() {
                    None => (200, "ready\n".to_string()),
                    Some(why) => (503, format!("not ready: {why}\n")),
                };
                http::response(status, http::TEXT_CONTENT_TYPE, body.as_bytes(), &[])
            }
            // 404, 405, 400: fixed answers.
            other => http::canned_response(other).unwrap_or_default(),
        }
    }

    /// Why this instance should not get traffic now, if it should not.
    fn not_ready(&self) -> Option<String> {
        if self.shutdown.is_some() {
            return Some("shutting down".into());
        }
        let down: Vec<&str> = (0..self.pools.pools.len())
            .filter(|&p| !self.pools.pools[p].removed && !self.pools.has_usable(p))
            .map(|p| self.pools.pools[p].name.as_str())
            .collect();
        (!down.is_empty()).then(|| format!("no usable server in pool {}", down.join(", ")))
    }

    /// A read-only view of the proxy for reports.
    fn view(&self, now: Instant) -> report::View<'_> {
        report::View {
            now,
            cfg: &self.cfg,
            pools: &self.pools,
            stats: &self.stats,
            pairs: self.slab.iter().flatten().map(|c| &c.pair).collect(),
        }
    }

    /// Runs one admin command.
    fn execute(&mut self, cmd: Command, user: &str, peer: SocketAddr, now: Instant) -> Reply {
        match cmd {
            Command::ShowServers => Reply::Table(report::servers(&self.view(now))),
            Command::ShowPools => Reply::Table(report::pools(&self.view(now))),
            Command::ShowClients => Reply::Table(report::clients(&self.view(now))),
            Command::ShowStats => Reply::Table(report::stats(&self.view(now))),
            Command::ShowConfig => Reply::Table(report::config(&self.cfg)),
            Command::ShowVersion => Reply::Table(report::version()),
            Command::ShowHelp => Reply::Table(admin::help_table()),
            Command::Drain(addr) => self.set_drained(&addr, true, user, peer),
            Command::Enable(addr) => self.set_drained(&addr, false, user, peer),
            Command::Kill(id) => {
                let key = self
                    .slab
                    .iter()
                    .position(|c| c.as_ref().is_some_and(|c| c.pair.id == id));
                let Some(key) = key else {
                    return error_reply(1094, "HY000", format!("Unknown thread id: {id}"));
                };
                info!("conn={id} killed by {user} from {}", peer.ip());
                self.deliver(key, Event::Stop(EndReason::Killed), now);
                Reply::Ok(String::new())
            }
            Command::Reload => match self.reload(now) {
                Ok(summary) => Reply::Ok(summary),
                Err(e) => error_reply(
                    1105,
                    "HY000",
                    format!("reload failed, configuration unchanged: {e}"),
                ),
            },
            Command::Shutdown => {
                info!("shutdown requested by {user} from {}", peer.ip());
                self.begin_shutdown(now);
                Reply::Ok("shutting down".into())
            }
        }
    }

    /// DRAIN SERVER / ENABLE SERVER. The server is named by the address
    /// SHOW SERVERS shows: no name lookup, the loop must not wait on DNS.
    fn set_drained(&mut self, addr: &str, drained: bool, user: &str, peer: SocketAddr) -> Reply {
        let Some(i) = addr.parse().ok().and_then(|a| self.pools.find(a)) else {
            let msg = format!("no server {addr} (name it by the address SHOW SERVERS shows)");
            return error_reply(1105, "HY000", msg);
        };
        let s = &mut self.pools.servers[i];
        s.drained = drained;
        let (addr, active, who) = (s.addr, s.active, peer.ip());
        if drained {
            warn!("server {addr} drained by {user} from {who}: {active} connections finish");
            Reply::Ok(format!(
                "server {addr} drained; its {active} connections go on"
            ))
        } else {
            warn!("server {addr} enabled by {user} from {who}");
            Reply::Ok(format!("server {addr} enabled"))
        }
    }

    // ----- signals, reload, shutdown -----

    pub(super) fn take_signals(&mut self, now: Instant) {
        loop {
            let next = match self.signals.as_ref().map(sys::Signals::next) {
                Some(Ok(Some(sig))) => sig,
                Some(Ok(None)) | None => return,
                Some(Err(e)) => {
                    error!("reading signals failed: {e}");
                    return;
                }
            };
            match next {
                libc::SIGHUP => {
                    info!("SIGHUP: reloading the configuration");
                    let _ = self.reload(now);
                }
                _ if self.shutdown.is_some() => {
                    warn!("second stop signal: exiting now, {} clients cut", self.live);
                    self.exit_now = true;
                    return;
                }
                sig => {
                    let name = if sig == libc::SIGINT {
                        "SIGINT"
                    } else {
                        "SIGTERM"
                    };
                    info!("{name}: shutting down");
                    self.begin_shutdown(now);
                }
            }
        }
    }

    /// Rereads the configuration file. Applies what can change while
    /// running to new connections; open pairs go on as they are.
    pub(super) fn reload(&mut self, _now: Instant) -> Result<String, String> {
        let Some(path) = self.config_path.clone() else {
            return Err("no configuration file to reread".into());
        };
        let parsed = std::fs::read_to_string(&path)
            .map_err(|e| format!("{path}: {e}"))
            .and_then(|text| {
                crate::config::parse(&text).map_err(|e| format!("{path}:{}: {}", e.line, e.msg))
            });
        let mut new = match parsed {
            Ok(c) => c,
            Err(e) => {
                self.stats.reload_failures += 1;
                error!("reload failed, configuration unchanged: {e}");
                return Err(e);
            }
        };
        // Sockets and process settings are fixed at start: keep them, and
        // say so, rather than pretend they changed.
        let old = &self.cfg;
        let fixed = [
            ("listen", old.listen != new.listen),
            (
                "admin.listen",
                old.admin.as_ref().map(|a| a.listen) != new.admin.as_ref().map(|a| a.listen),
            ),
            ("metrics.listen", old.metrics_listen != new.metrics_listen),
            ("reuse_port", old.reuse_port != new.reuse_port),
            ("buffer_size", old.buffer_size != new.buffer_size),
            ("user", old.run_as != new.run_as),
            ("pid_file", old.pid_file != new.pid_file),
        ];
        for (key, changed) in fixed {
            if changed {
                warn!("reload: {key} changed; it takes effect only at restart");
            }
        }
        new.listen = old.listen;
        new.metrics_listen = old.metrics_listen;
        new.reuse_port = old.reuse_port;
        new.buffer_size = old.buffer_size;
        new.run_as = old.run_as.clone();
        new.pid_file = old.pid_file.clone();
        match (&old.admin, &mut new.admin) {
            (Some(o), Some(n)) => n.listen = o.listen,
            // A console cannot appear or vanish without its socket.
            (o, n) => *n = o.clone(),
        }
        if self.apply_log_level {
            log::set_max_level(new.log_level);
        }
        self.pools.apply(&new);
        self.checks.resize_with(self.pools.servers.len(), || None);
        for s in &self.pools.servers {
            if !s.in_pool && s.active > 0 {
                info!(
                    "server {} is no longer in any pool: draining its {} connections",
                    s.addr, s.active
                );
            }
        }
        let summary = format!(
            "configuration reloaded: {} pools, {} users",
            new.pools.len(),
            new.users.len()
        );
        self.cfg = new;
        self.stats.reloads += 1;
        info!("{summary}");
        Ok(summary)
    }

    /// Stops accepting clients and ends each pair once it is idle, or at
    /// `shutdown_timeout`.
    pub(super) fn begin_shutdown(&mut self, now: Instant) {
        if self.shutdown.is_some() {
            return;
        }
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        self.listener_ready = false;
        let t = self.cfg.shutdown_timeout;
        info!(
            "no longer accepting clients; {} open, waiting up to {}s for busy ones",
            self.live,
            t.as_secs()
        );
        self.shutdown = Some(Shutdown {
            deadline: now + t,
            next_scan: now,
        });
    }

    /// During a shutdown: ends idle pairs and those not logged in yet, and
    /// every pair at the deadline.
    pub(super) fn shutdown_scan(&mut self, now: Instant) {
        let Some(sd) = self.shutdown.as_mut() else {
            return;
        };
        if now < sd.next_scan {
            return;
        }
        sd.next_scan = now + SHUTDOWN_SCAN;
        let cut = now >= sd.deadline;
        for key in 0..self.slab.len() {
            let Some(conn) = self.slab[key].as_ref() else {
                continue;
            };
            // At the deadline every pair is stopped, those still flushing
            // to a peer that does not read included.
            if cut || conn.pair.is_idle() || conn.pair.awaits_client_login() {
                self.deliver(key, Event::Stop(EndReason::Shutdown), now);
            }
        }
        if cut && self.live > 0 {
            warn!("shutdown_timeout reached: closing {} clients", self.live);
        }
    }
}

fn error_reply(code: u16, state: &'static str, msg: String) -> Reply {
    Reply::Err { code, state, msg }
}

/// Reads until the socket has nothing more; false once the peer closed or
/// the socket failed.
fn read_available(stream: &mut TcpStream, into: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => {
                into.extend_from_slice(&buf[..n]);
                if into.len() > MAX_AUX_INPUT {
                    return true;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// Writes as much of `out` as the socket takes; true if the socket failed.
fn write_all_available(stream: &mut TcpStream, out: &mut Vec<u8>) -> bool {
    while !out.is_empty() {
        match stream.write(out) {
            Ok(0) => return true,
            Ok(n) => {
                out.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
    false
}
