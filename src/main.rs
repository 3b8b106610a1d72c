//! myroute: a small, auditable MySQL proxy that authenticates clients
//! itself and routes each connection to a backend pool chosen by user name.
//!
//! This file is the command line only: argument parsing, logger set-up, exit
//! codes. Everything else lives in the modules below.

#![forbid(unsafe_code)]

use myroute::config;
use myroute::protocol::scramble;
use myroute::runtime::{event_loop, io, sys};

use std::io::{BufRead, Write};
use std::process::ExitCode;

/// Where the configuration is read from when `-c` is not given.
const DEFAULT_CONFIG: &str = "/etc/myroute/myroute.conf";

const USAGE: &str = "\
usage: myroute [-c FILE]            run the proxy
       myroute --check [-c FILE]    validate the configuration and exit
       myroute --hash-password      read a password on stdin, print its *HEX hash
       myroute --version | --help

Default configuration file: /etc/myroute/myroute.conf
Log level: log_level in the file (default info); RUST_LOG overrides it.
Signals: SIGHUP reloads the file; SIGTERM or SIGINT stops gracefully.
See myroute(8) and myroute.conf(5).";

enum Command {
    Run,
    Check,
    HashPassword,
    Version,
    Help,
}

fn parse_args(args: &[String]) -> Result<(Command, Option<String>), String> {
    let mut cmd = Command::Run;
    let mut file = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-c" | "--config" => {
                file = Some(it.next().ok_or_else(|| format!("{a} needs a file name"))?.clone());
            }
            "--check" => cmd = Command::Check,
            "--hash-password" => cmd = Command::HashPassword,
            "-V" | "--version" => cmd = Command::Version,
            "-h" | "--help" => cmd = Command::Help,
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok((cmd, file))
}

fn load(path: &str) -> Result<config::Config, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!("{path}: configuration file not found (give one with -c FILE)")
        } else {
            format!("{path}: {e}")
        }
    })?;
    let at = |e: config::Error| {
        if e.line == 0 {
            format!("{path}: {}", e.msg)
        } else {
            format!("{path}:{}: {}", e.line, e.msg)
        }
    };
    let cfg = config::parse_with(&text, &mut io::resolve).map_err(at)?;
    // Certificates and keys are read now too, so --check finds what start-up
    // would.
    let pools = myroute::servers::pool::Pools::from_config(&cfg);
    io::TlsSource::new().map_err(|e| format!("{path}: {e}"))?.settings(&cfg, &pools).map_err(at)?;
    Ok(cfg)
}

/// The file holds password hashes: they can be cracked offline, and one
/// together with a sniffed login exchange lets an attacker log in. Warn when
/// anyone on the host may read it.
fn warn_if_world_readable(path: &str) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o004 != 0 {
            log::warn!(
                "{path} is readable by other users (mode {mode:03o}); it holds password hashes: chmod o-r {path}"
            );
        }
    }
}

/// Private keys must not be readable by anyone else on the host.
fn warn_if_key_readable(cfg: &config::Config) {
    use std::os::unix::fs::PermissionsExt;
    let keys = cfg.tls.key.iter().chain(cfg.pools.iter().filter_map(|p| p.tls.key.as_ref()));
    for key in keys {
        if let Ok(meta) = std::fs::metadata(&key.path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o004 != 0 {
                let path = &key.path;
                log::warn!("{path} is readable by other users (mode {mode:03o}); it holds a private key: chmod o-r {path}");
            }
        }
    }
}

/// `2026-11-25T11:26:49.123Z` (UTC), for log lines.
fn utc_timestamp(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let [year, month, day, h, m, s] = sys::civil_utc(d.as_secs());
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:03}Z", d.subsec_millis())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, file) = match parse_args(&args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("myroute: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let path = file.unwrap_or_else(|| DEFAULT_CONFIG.to_string());
    match cmd {
        Command::Help => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("myroute {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::HashPassword => {
            let mut line = String::new();
            if let Err(e) = std::io::stdin().lock().read_line(&mut line) {
                eprintln!("myroute: cannot read password: {e}");
                return ExitCode::from(2);
            }
            let pw = line.strip_suffix('\n').unwrap_or(&line);
            let pw = pw.strip_suffix('\r').unwrap_or(pw);
            let hash = if pw.is_empty() {
                String::new() // MySQL's PASSWORD(''): no password
            } else {
                scramble::format_hash(&scramble::hash_password(pw.as_bytes()))
            };
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{hash}");
            ExitCode::SUCCESS
        }
        Command::Check => match load(&path) {
            Ok(cfg) => {
                println!(
                    "{path}: OK ({} pools, {} users, listening on {})",
                    cfg.pools.len(),
                    cfg.users.len(),
                    cfg.listen
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Run => {
            let cfg = match load(&path) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            let from_env = init_logging(cfg.log_level);
            run(cfg, path, !from_env)
        }
    }
}

/// Sets up logging to stderr: `log_level` unless RUST_LOG is set (returns
/// true then). Under systemd (JOURNAL_STREAM set) each line starts with its
/// syslog priority, `<3>` to `<7>`, and carries no timestamp of its own:
/// the journal adds one and files the line under that priority.
fn init_logging(level: log::LevelFilter) -> bool {
    let from_env = std::env::var_os("RUST_LOG").is_some();
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let mut b = env_logger::Builder::new();
    if from_env {
        b.parse_env("RUST_LOG");
    } else {
        // Everything passes the logger; the global maximum filters, so a
        // reload can change it.
        b.filter_level(log::LevelFilter::Trace);
    }
    b.format(move |buf, rec| {
        if journal {
            let prio = match rec.level() {
                log::Level::Error => 3,
                log::Level::Warn => 4,
                log::Level::Info => 6,
                log::Level::Debug | log::Level::Trace => 7,
            };
            writeln!(buf, "<{prio}>{}: {}", rec.target(), rec.args())
        } else {
            writeln!(
                buf,
                "{} {:<5} {}: {}",
                utc_timestamp(std::time::SystemTime::now()),
                rec.level(),
                rec.target(),
                rec.args()
            )
        }
    });
    b.init();
    if !from_env {
        log::set_max_level(level);
    }
    from_env
}

/// Binds, writes the pid file, drops privileges, and runs the loop until a
/// shutdown completes.
fn run(cfg: config::Config, path: String, apply_log_level: bool) -> ExitCode {
    warn_if_world_readable(&path);
    warn_if_key_readable(&cfg);
    match sys::raise_nofile_limit() {
        Ok((before, after)) if before != after => {
            log::info!("descriptor limit raised from {before} to {after}")
        }
        Ok((_, after)) => log::info!("descriptor limit {after}"),
        Err(e) => log::warn!("cannot raise the descriptor limit: {e}"),
    }
    if cfg.health.user.is_none() {
        log::info!(
            "health.user is not set: checks see that each server accepts connections \
             and answers a login, not that it serves queries or whether it is read-only"
        );
    }
    let pid_file = cfg.pid_file.clone();
    let run_as = cfg.run_as.clone();
    let mut proxy = match event_loop::Proxy::bind(cfg) {
        Ok(p) => p,
        Err(e) => {
            log::error!("cannot listen: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = proxy.handle_signals(path, apply_log_level) {
        log::error!("cannot set up signal handling: {e}");
        return ExitCode::from(1);
    }
    if let Some(file) = &pid_file {
        if let Err(e) = std::fs::write(file, format!("{}\n", std::process::id())) {
            log::error!("cannot write pid_file {file}: {e}");
            return ExitCode::from(1);
        }
    }
    if let Some(user) = &run_as {
        if let Err(e) = become_user(user, pid_file.as_deref()) {
            log::error!("cannot switch to user {user}: {e}");
            remove_pid_file(pid_file.as_deref());
            return ExitCode::from(1);
        }
    }
    match proxy.local_addr() {
        Ok(a) => log::info!("myroute {} listening on {a}", env!("CARGO_PKG_VERSION")),
        Err(e) => log::warn!("listening, address unknown: {e}"),
    }
    let (admin, metrics) = proxy.aux_addrs();
    if let Some(a) = admin {
        log::info!("admin console on {a}");
        if !a.ip().is_loopback() {
            log::warn!(
                "the admin console listens on {a}, not a loopback address: it can KILL \
                 clients and SHUTDOWN the proxy, so keep it behind a firewall"
            );
        }
    }
    if let Some(m) = metrics {
        log::info!("metrics on http://{m}/metrics and /ready");
    }
    let code = match proxy.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("event loop failed: {e}");
            ExitCode::from(1)
        }
    };
    remove_pid_file(pid_file.as_deref());
    code
}

/// Drops root for `user`; the pid file becomes theirs, so the process can
/// still remove it at exit (in a sticky directory such as /tmp).
fn become_user(user: &str, pid_file: Option<&str>) -> std::io::Result<()> {
    let (uid, gid) = sys::lookup_user(user)?;
    if let Some(f) = pid_file {
        std::os::unix::fs::chown(f, Some(uid), Some(gid))?;
    }
    sys::switch_user(user, uid, gid)?;
    log::info!("running as user {user} (uid {uid}, gid {gid})");
    Ok(())
}

fn remove_pid_file(file: Option<&str>) {
    if let Some(f) = file {
        if let Err(e) = std::fs::remove_file(f) {
            // After dropping privileges the directory may not be ours.
            log::warn!("cannot remove pid_file {f}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::utc_timestamp;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        let at = |s: u64, ms: u64| {
            utc_timestamp(UNIX_EPOCH + Duration::from_secs(s) + Duration::from_millis(ms))
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(at(1_795_605_009, 123), "2026-11-25T11:10:09.123Z");
    }
}
