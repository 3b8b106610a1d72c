"""Helpers for the operations features: the admin console (through PyMySQL
and the mariadb CLI), the HTTP metrics responder, configuration rewrites
and reloads, PROXY protocol headers."""

import http.client
import os
import pty
import re
import select
import signal
import socket
import struct
import subprocess
import time

import pymysql

from . import util
from .clients import login, pymysql_connect, scalar
from .protocol import Reader, password_hash
from .proxy import Proxy, config_text, main_settings

# The admin console's account, known only to the proxies' configuration.
ADMIN_USER = "myroute_admin"
ADMIN_PASSWORD = "adm-Secret-8133-persimmon"

ADMIN_COMMANDS = ["SHOW SERVERS", "SHOW POOLS", "SHOW CLIENTS", "SHOW STATS", "SHOW CONFIG",
                  "SHOW VERSION", "DRAIN SERVER 'host:port'", "ENABLE SERVER 'host:port'",
                  "KILL id", "RELOAD", "SHUTDOWN"]

SERVER_COLUMNS = ["pool", "address", "state", "weight", "active", "total", "failures",
                  "last_check", "check_age", "read_only", "version", "tls"]
POOL_COLUMNS = ["pool", "role", "fallback", "servers", "servers_up", "active", "clients",
                "total"]
CLIENT_COLUMNS = ["id", "backend_id", "user", "client", "pool", "server", "state", "tls", "age",
                  "bytes_in", "bytes_out"]
END_REASONS = ["client_closed", "backend_closed", "auth_failed", "backend_refused",
               "pool_unreachable", "timeout", "protocol_error", "change_user_refused",
               "io_error", "killed", "shutdown", "tls_error"]
STAT_NAMES = (["uptime_seconds", "clients_active", "connections_accepted",
               "connections_refused", "logins_ok", "logins_failed", "logins_tls", "logins_plain",
               "logins_refused_insecure", "backend_connects", "backend_failures",
               "tls_handshake_failures_client", "tls_handshake_failures_server", "bytes_in",
               "bytes_out"]
              + ["ends_" + r for r in END_REASONS]
              + ["reloads", "reload_failures", "admin_logins_failed"])

# Pymysql errors a client sees when the proxy has closed its connection.
GONE = (2006, 2013)


def admin_settings(admin_port, user=ADMIN_USER, password=ADMIN_PASSWORD):
    return [("admin.listen", "127.0.0.1:%d" % admin_port),
            ("admin.user", user),
            ("admin.password", password_hash(password))]


def quiet_settings(cluster, **top):
    """main_settings with health checks rare unless asked (so that they do
    not move connection counts while a test reads them) and a short
    shutdown_timeout."""
    top.setdefault("health.interval", "30s")
    top.setdefault("shutdown_timeout", "2s")
    return main_settings(cluster, **top)


class OpsProxy(Proxy):
    """A Proxy with the admin console (admin=True) and/or the metrics
    responder (metrics=True) on free ports of their own.  `settings` are the
    rest of the file (without listen/admin.*/metrics.listen); rewrite() puts
    a new file in place (for RELOAD / SIGHUP) with the same listeners."""

    def __init__(self, workdir, name, settings, admin=True, metrics=False, env=None,
                 unset_env=()):
        super().__init__(workdir, name, [], env=env)
        self.admin_port = util.free_port() if admin else None
        self.metrics_port = util.free_port() if metrics else None
        self.unset_env = tuple(unset_env)
        self.admin_password = ADMIN_PASSWORD
        # An ssl.SSLContext: admin() connects over TLS with it (for a
        # console that requires TLS); None: plaintext.
        self.admin_tls = None
        self.body = list(settings)
        self.settings = self._full(self.body)

    def _full(self, body):
        out = []
        if self.admin_port:
            out += admin_settings(self.admin_port, password=self.admin_password)
        if self.metrics_port:
            out.append(("metrics.listen", "127.0.0.1:%d" % self.metrics_port))
        return out + list(body)

    def file_lines(self):
        """The file's lines as start() and rewrite() write them."""
        return config_text([("listen", self.address)] + self.settings).splitlines()

    def line_of(self, key):
        """1-based line number of `key` in the current file."""
        for n, line in enumerate(self.file_lines(), 1):
            if line.split("=", 1)[0].strip() == key:
                return n
        raise KeyError(key)

    def rewrite(self, body=None, raw_lines=None, admin_password=None):
        """Replaces the configuration file: the same listeners, then `body`
        (a list of (key, value)); `raw_lines` are appended verbatim.
        admin_password: a new console password (the default login of
        admin() follows it)."""
        if body is not None:
            self.body = list(body)
        if admin_password is not None:
            self.admin_password = admin_password
        self.settings = self._full(self.body)
        text = config_text([("listen", self.address)] + self.settings)
        if raw_lines:
            text += "".join(l + "\n" for l in raw_lines)
        tmp = self.config_path + ".new"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, self.config_path)

    def start(self, timeout=15):
        super().start(timeout)
        for port in (self.admin_port, self.metrics_port):
            if port:
                util.wait_until(lambda: self._listening(port), timeout,
                                what=lambda: "myroute to listen on %d; stderr:\n%s"
                                % (port, self.log_tail()))
        return self

    # --- admin console --------------------------------------------------------

    def admin(self, user=ADMIN_USER, password=None, **kw):
        """A PyMySQL connection to the admin console."""
        if password is None:
            password = self.admin_password
        kw.setdefault("connect_timeout", 5)
        kw.setdefault("read_timeout", 20)
        if self.admin_tls is not None:
            return pymysql.connect(host=self.host, port=self.admin_port, user=user,
                                   password=password, ssl=self.admin_tls, **kw)
        return pymysql_connect(self.host, self.admin_port, user, password, **kw)

    def admin_rows(self, sql, conn=None):
        """Runs an admin command; returns its rows as dicts (column -> value)."""
        own = conn is None
        if own:
            conn = self.admin()
        try:
            return query_dicts(conn, sql)
        finally:
            if own:
                conn.close()

    def admin_ok(self, sql, conn=None):
        """Runs an admin command that answers OK; returns the OK's message."""
        own = conn is None
        if own:
            conn = self.admin()
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                assert cur.description is None, "%s answered a result set" % sql
            return ok_info(conn._result.message or b"")
        finally:
            if own:
                conn.close()

    def stats(self, conn=None):
        return {r["name"]: r["value"] for r in self.admin_rows("SHOW STATS", conn)}

    def servers(self, conn=None):
        return self.admin_rows("SHOW SERVERS", conn)

    def server_rows(self, address, conn=None):
        return [r for r in self.servers(conn) if r["address"] == address]

    def pools(self, conn=None):
        return {r["pool"]: r for r in self.admin_rows("SHOW POOLS", conn)}

    def clients(self, conn=None):
        return self.admin_rows("SHOW CLIENTS", conn)

    def client_row(self, client_addr, conn=None):
        rows = [r for r in self.clients(conn) if r["client"] == client_addr]
        assert len(rows) <= 1, rows
        return rows[0] if rows else None

    def cli(self, sql, user=ADMIN_USER, password=None, extra=(), timeout=30):
        if password is None:
            password = self.admin_password
        return admin_cli(self.host, self.admin_port, user, password, sql, extra, timeout)

    # --- signals ----------------------------------------------------------------

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def sighup(self):
        self.signal(signal.SIGHUP)

    def wait_exit(self, timeout):
        """Waits for the process to exit; returns (status, seconds waited)."""
        t0 = time.monotonic()
        status = self.proc.wait(timeout=timeout)
        return status, time.monotonic() - t0

    # --- metrics ----------------------------------------------------------------

    def http(self, method, path, timeout=10):
        return http_request(self.host, self.metrics_port, method, path, timeout)

    def metrics(self):
        status, headers, body = self.http("GET", "/metrics")
        assert status == 200, (status, body[:500])
        return Metrics(body.decode())


def reload(px, how):
    """Reloads with RELOAD or SIGHUP; waits until the proxy has (tried to)
    reload.  Returns RELOAD's OK message, or None for SIGHUP."""
    if how == "RELOAD":
        return px.admin_ok("RELOAD")
    admin = px.admin()
    try:
        s = px.stats(admin)
        done = s["reloads"] + s["reload_failures"]
        px.sighup()
        util.wait_until(lambda: (lambda t: t["reloads"] + t["reload_failures"] > done)(
            px.stats(admin)), 5, what="SIGHUP to be handled; log:\n" + px.log_tail())
    finally:
        admin.close()
    return None


def ok_info(raw):
    """The info text of an OK packet as PyMySQL keeps it (everything after
    the warning count).  MariaDB, like myroute, sends it length-encoded
    whatever the capabilities; PyMySQL leaves the length in."""
    if raw:
        try:
            r = Reader(raw)
            text = r.lenenc_str()
            if text is not None and r.at_end():
                raw = text
        except ValueError:
            pass
    return raw.decode("utf-8", "replace")


def _text(v):
    # A text column sent with the binary character set reaches PyMySQL as
    # bytes; the tests compare text.
    return v.decode("utf-8", "replace") if isinstance(v, (bytes, bytearray)) else v


def query_dicts(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, (_text(v) for v in row))) for row in cur.fetchall()]


def columns_of(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        cur.fetchall()
        return [d[0] for d in cur.description], [d[1] for d in cur.description]


# --- the mariadb command-line client ------------------------------------------

def admin_cli(host, port, user, password, sql, extra=(), timeout=30):
    """`mariadb --batch -e SQL` with column names; CompletedProcess (text)."""
    args = ["mariadb", "--no-defaults", "-h" + host, "-P%d" % port, "--protocol=TCP",
            "-u" + user, "--batch", "--skip-ssl", "--connect-timeout=10"]
    if password:
        args.append("-p" + password)
    args += list(extra) + ["-e", sql]
    return subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


def parse_batch(stdout):
    """Tab-separated output of `mariadb --batch` (with the header line):
    list of dicts; NULL -> None."""
    lines = stdout.splitlines()
    if not lines:
        return []
    header = lines[0].split("\t")
    out = []
    for line in lines[1:]:
        values = [None if v == "NULL" else v for v in line.split("\t")]
        assert len(values) == len(header), (header, line)
        out.append(dict(zip(header, values)))
    return out


def cli_error(stderr):
    """(code, sqlstate, message) of a mariadb CLI error line, or None."""
    m = re.search(r"ERROR (\d+) \((\w{5})\)(?: at line \d+)?: (.*)", stderr)
    return (int(m.group(1)), m.group(2), m.group(3)) if m else None


def interactive_cli(host, port, user, password, commands, timeout=20):
    """Runs the mariadb CLI on a pseudo-terminal, as a person would: it
    prints its welcome banner (for which it queries @@version_comment) and
    a prompt; each command is typed after a prompt.  Returns everything the
    terminal showed."""
    master, slave = pty.openpty()
    env = dict(os.environ, MYSQL_HISTFILE="/dev/null", HOME="/nonexistent", TERM="dumb")
    args = ["mariadb", "--no-defaults", "-h" + host, "-P%d" % port, "--protocol=TCP",
            "-u" + user, "-p" + password, "--skip-ssl", "--connect-timeout=10"]
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env,
                            start_new_session=True, close_fds=True)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + timeout

    def read_until(pattern):
        nonlocal seen
        start = len(seen)
        while not re.search(pattern, seen[start:]):
            left = deadline - time.monotonic()
            if left <= 0:
                raise util.Timeout("the mariadb CLI did not show %r; terminal:\n%s"
                                   % (pattern, seen.decode(errors="replace")))
            ready, _, _ = select.select([master], [], [], left)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the CLI exited
                chunk = b""
            if not chunk:
                raise AssertionError("the mariadb CLI exited (%s); terminal:\n%s"
                                     % (proc.poll(), seen.decode(errors="replace")))
            seen += chunk

    prompt = rb"(MariaDB|MySQL) \[[^\]]*\]> $"
    try:
        read_until(prompt)
        for cmd in commands:
            os.write(master, cmd.encode() + b"\n")
            read_until(prompt)
        os.write(master, b"quit\n")
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return seen.decode(errors="replace").replace("\r\n", "\n")


# --- HTTP -----------------------------------------------------------------------

def http_request(host, port, method, path, timeout=10):
    """(status, headers dict with lower-case names, body bytes)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


def raw_http(host, port, data, timeout=5):
    """Sends raw bytes; returns everything received until the peer closes
    (which it must within `timeout` seconds)."""
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            except socket.timeout:
                raise AssertionError("%r: the responder neither answered nor closed within "
                                     "%ss (got %r)" % (data[:40], timeout, out[:200]))
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


class Metrics:
    """One scrape, parsed with prometheus_client's text parser."""

    def __init__(self, text):
        from prometheus_client.parser import text_string_to_metric_families
        self.text = text
        self.families = {}
        for fam in text_string_to_metric_families(text):
            assert fam.name not in self.families, "family %s twice" % fam.name
            self.families[fam.name] = fam
        self.samples = [s for fam in self.families.values() for s in fam.samples]

    def family(self, name):
        """The family a metric name belongs to (counters are parsed without
        their _total suffix)."""
        if name in self.families:
            return self.families[name]
        if name.endswith("_total") and name[:-6] in self.families:
            return self.families[name[:-6]]
        raise KeyError("no metric family %s; families: %s" % (name, sorted(self.families)))

    def type_of(self, name):
        return self.family(name).type

    def series(self, name):
        """{frozenset(labels.items()): value} of the samples named `name`."""
        return {frozenset(s.labels.items()): s.value for s in self.samples if s.name == name}

    def value(self, name, **labels):
        """The sample `name` with exactly these labels; None if absent."""
        want = frozenset(labels.items())
        for s in self.samples:
            if s.name == name and frozenset(s.labels.items()) == want:
                return s.value
        return None

    def get(self, name, **labels):
        v = self.value(name, **labels)
        assert v is not None, "no sample %s%r in:\n%s" % (name, labels, self.text)
        return v


# --- PROXY protocol headers -------------------------------------------------------

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v1(src, dst, sport, dport):
    return ("PROXY TCP4 %s %s %d %d\r\n" % (src, dst, sport, dport)).encode()


def proxy_v2(src, dst, sport, dport):
    """A v2 PROXY command over TCP/IPv4."""
    addrs = (socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack(">HH", sport, dport))
    return V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack(">H", len(addrs)) + addrs


def proxy_v2_local():
    """A v2 LOCAL command (a health check of the balancer): no address."""
    return V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack(">H", 0)


def connect_with_header(host, port, header, user, password, **kw):
    """PyMySQL login over a socket that first sends `header` (as an L4
    balancer speaking the PROXY protocol does)."""
    sock = socket.create_connection((host, port), timeout=10)
    sock.sendall(header)
    kw.setdefault("connect_timeout", 10)
    kw.setdefault("read_timeout", 20)
    conn = pymysql.connect(host=host, port=port, user=user, password=password,
                           ssl_disabled=True, defer_connect=True, **kw)
    try:
        conn.connect(sock)
    except BaseException:
        sock.close()
        raise
    return conn


# --- /proc -------------------------------------------------------------------------

def proc_status(pid):
    """/proc/PID/status as a dict of field -> list of words."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.split()
    return out


# --- sockets -------------------------------------------------------------------------

def peer_closed(sock, timeout):
    """True once the peer of `sock` has closed it (EOF or reset) within
    `timeout` seconds, without consuming data; False if it stays open (or
    sends data instead)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([sock], [], [], max(0.0, left))
        if ready:
            try:
                data = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except (ConnectionResetError, BrokenPipeError):
                return True
            except BlockingIOError:
                data = None
            if data == b"":
                return True
            if data:
                return False
        if left <= 0:
            return False


def client_addr(conn):
    """ip:port of a PyMySQL connection's own end (what the proxy sees)."""
    return "%s:%d" % conn._sock.getsockname()[:2]


def conn_error_code(fn):
    """Runs fn(); returns the pymysql error code it raised (None if none)."""
    try:
        fn()
    except pymysql.err.Error as e:
        return e.args[0] if e.args else None
    return None


def one_on_first_replica(px, cluster, held):
    """An app_ro connection through `px` on the cluster's first replica,
    with none left on the second: two logins to an idle pool land one on
    each replica, and the one on the second is closed.  Both go to `held`."""
    r1, r2 = cluster.replicas
    pair = [login(px, "app_ro") for _ in range(2)]
    held += pair
    by_port = {scalar(c, "SELECT @@port"): c for c in pair}
    assert set(by_port) == {r1.port, r2.port}
    by_port[r2.port].close()
    return by_port[r1.port]
