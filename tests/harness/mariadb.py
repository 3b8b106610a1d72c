"""Throw-away MariaDB servers on loopback for the end-to-end tests.

One template datadir is initialised with mariadb-install-db and copied for
each instance.  Every instance gets its own port (below the ephemeral range),
socket, pid file and error log under one temporary directory, which is
removed when the cluster stops.  A server can serve TLS (ServerTls) and
require it (require_secure_transport); TlsCluster is a pair of such servers.
"""

import os
import pwd
import shutil
import subprocess
import tempfile

import pymysql

from . import util
from .accounts import (TLS_MONITOR_PASSWORD, TLS_MONITOR_USER, USERS, X509_PASSWORD,
                       X509_SUBJECT, X509_USER)
from .protocol import password_hash

SETUP_SQL = [
    "CREATE DATABASE app",
    "CREATE TABLE app.items (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL, qty INT NOT NULL)",
    "INSERT INTO app.items VALUES (1, 'apple', 3), (2, 'pear', 5), (3, 'plum', 7)",
    "CREATE TABLE app.blobs (id INT AUTO_INCREMENT PRIMARY KEY, tag VARCHAR(64) NOT NULL, data LONGBLOB NOT NULL)",
    """CREATE PROCEDURE app.two_results(IN n INT)
       BEGIN
         SELECT n AS first_value;
         SELECT name, qty FROM app.items WHERE id <= n ORDER BY id;
       END""",
    # app_rw: everything on `app` and on every name starting with "app", so
    # that it sees 1049 (unknown database) rather than 1044 for app_missing.
    "CREATE USER 'app_rw'@'%%' IDENTIFIED VIA mysql_native_password USING PASSWORD('%s')" % USERS["app_rw"],
    "GRANT ALL PRIVILEGES ON `app%`.* TO 'app_rw'@'%'",
    "CREATE USER 'app_ro'@'%%' IDENTIFIED VIA mysql_native_password USING PASSWORD('%s')" % USERS["app_ro"],
    "GRANT SELECT ON app.* TO 'app_ro'@'%'",
    "CREATE USER 'nopw'@'%' IDENTIFIED VIA mysql_native_password USING ''",
    "GRANT SELECT ON app.* TO 'nopw'@'%'",
]


def _which(name, extra=("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin")):
    found = shutil.which(name)
    if found:
        return found
    for d in extra:
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    raise RuntimeError("%s not found; run tests/setup-deps.sh" % name)


def _tail(path, n=40):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError as e:
        return "(cannot read %s: %s)" % (path, e)



def make_datadirs(tmp, names, as_root):
    """Initialises one template datadir under `tmp` and copies it for each
    name (about a second for several servers, against one install each).
    Yields (name, base directory, datadir); when root, everything belongs to
    "mysql", which mariadbd then runs as and must reach its files."""
    os.chmod(tmp, 0o755)
    template = os.path.join(tmp, "template")
    os.mkdir(template)
    ids = None
    if as_root:
        pw = pwd.getpwnam("mysql")
        ids = (pw.pw_uid, pw.pw_gid)
        os.chown(template, *ids)
    args = [_which("mariadb-install-db"), "--no-defaults", "--datadir=" + template,
            "--auth-root-authentication-method=normal", "--skip-test-db"]
    if as_root:
        args.append("--user=mysql")
    res = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, timeout=120)
    if res.returncode != 0:
        raise RuntimeError("mariadb-install-db failed (%d):\n%s"
                           % (res.returncode, res.stdout.decode(errors="replace")[-4000:]))
    for name in names:
        base = os.path.join(tmp, name)
        os.mkdir(base)
        datadir = os.path.join(base, "data")
        shutil.copytree(template, datadir, symlinks=True)
        if ids:
            for root, dirs, files in os.walk(base):
                os.chown(root, *ids)
                for f in files:
                    os.chown(os.path.join(root, f), *ids)
        yield name, base, datadir

class ServerTls:
    """What a server needs to serve TLS: its certificate and key, and the
    CA it checks client certificates against (PEM paths, readable by the
    user mariadbd runs as)."""

    def __init__(self, cert, key, ca=None):
        self.cert = cert
        self.key = key
        self.ca = ca

    def args(self):
        out = ["--ssl-cert=" + self.cert, "--ssl-key=" + self.key]
        if self.ca:
            out.append("--ssl-ca=" + self.ca)
        return out


class MariaDB:
    """One mariadbd process.  tls: a ServerTls to serve TLS with (default:
    none, plaintext only); require_secure_transport: refuse logins over
    plaintext TCP (the unix socket, which the harness administers it
    through, still counts as secure); extra_sql: statements run as root
    after the usual setup."""

    def __init__(self, name, basedir, datadir, port, as_root, tls=None,
                 require_secure_transport=False, extra_sql=()):
        self.name = name
        self.port = port
        self.host = "127.0.0.1"
        self.dir = basedir
        self.datadir = datadir
        self.socket = os.path.join(basedir, "mysqld.sock")
        self.pidfile = os.path.join(basedir, "mysqld.pid")
        self.errlog = os.path.join(basedir, "error.log")
        self.as_root = as_root
        self.proc = None
        self.version = None
        self.tls = tls
        self.require_secure_transport = require_secure_transport
        self.extra_sql = list(extra_sql)

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    def args(self, name_resolve=False, max_connect_errors=100000, performance_schema=False):
        """mariadbd's command line: small memory settings so several fit;
        name resolution off and blocking out of reach unless asked for."""
        args = [
            _which("mariadbd"),
            "--no-defaults",
            "--datadir=" + self.datadir,
            "--port=%d" % self.port,
            "--bind-address=127.0.0.1",
            "--socket=" + self.socket,
            "--pid-file=" + self.pidfile,
            "--log-error=" + self.errlog,
            "--max-allowed-packet=64M",
            "--query-cache-type=0",
            "--query-cache-size=0",
            "--innodb-buffer-pool-size=32M",
            "--innodb-log-file-size=16M",
            "--innodb-flush-log-at-trx-commit=0",
            "--innodb-doublewrite=0",
            "--performance-schema=%s" % ("ON" if performance_schema else "OFF"),
            "--max-connections=300",
            "--max-connect-errors=%d" % max_connect_errors,
            "--key-buffer-size=1M",
            "--aria-pagecache-buffer-size=8M",
            "--table-open-cache=200",
            "--thread-cache-size=16",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_general_ci",
        ]
        if not name_resolve:
            args.append("--skip-name-resolve")
        if self.as_root:
            args.append("--user=mysql")
        if self.tls is not None:
            args += self.tls.args()
        if self.require_secure_transport:
            args.append("--require-secure-transport=ON")
        return args

    def start(self):
        self.proc = subprocess.Popen(self.args(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)

    def _alive_or_fail(self):
        if self.proc.poll() is not None:
            raise RuntimeError("mariadbd %s exited with status %s; error log:\n%s"
                               % (self.name, self.proc.returncode, _tail(self.errlog)))

    def wait_ready(self, timeout=60):
        def ready():
            self._alive_or_fail()
            if not util.is_listening(self.port):
                return False
            try:
                conn = self.admin()
            except pymysql.err.OperationalError:
                return False
            conn.close()
            return True
        util.wait_until(ready, timeout, interval=0.05,
                        what=lambda: "mariadbd %s on port %d; error log:\n%s"
                        % (self.name, self.port, _tail(self.errlog)))

    def admin(self, **kw):
        """A root connection over the instance's unix socket."""
        return pymysql.connect(unix_socket=self.socket, user="root", password="",
                               autocommit=True, connect_timeout=5, **kw)

    def admin_query(self, sql, args=None):
        conn = self.admin()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return cur.fetchall()
        finally:
            conn.close()

    def connect(self, user, password=None, **kw):
        """A direct (not proxied) TCP connection as `user`."""
        if password is None:
            password = USERS[user]
        return pymysql.connect(host=self.host, port=self.port, user=user,
                               password=password, connect_timeout=5, **kw)

    def setup(self):
        conn = self.admin()
        try:
            with conn.cursor() as cur:
                for sql in SETUP_SQL + self.extra_sql:
                    cur.execute(sql)
                cur.execute("SELECT @@version")
                self.version = cur.fetchone()[0]
                for user, pw in USERS.items():
                    cur.execute("SELECT authentication_string, plugin FROM mysql.user "
                                "WHERE user = %s AND host = '%%'", (user,))
                    row = cur.fetchone()
                    assert row == (password_hash(pw), "mysql_native_password"), (user, row)
        finally:
            conn.close()

    def sessions(self, user):
        """Number of sessions of `user` on this server (from its processlist)."""
        rows = self.admin_query(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = %s", (user,))
        return rows[0][0]

    def stop(self):
        if self.proc is None:
            return
        util.stop_process(self.proc, 15)
        self.proc = None


class ServerGroup:
    """Servers made from one template datadir under one temporary directory
    (prefix `prefix`), which is removed when they stop.  Subclasses say
    which servers: new_servers(as_root) returns them, not yet started."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.tmp = None
        self.servers = []

    def by_port(self, port):
        for s in self.servers:
            if s.port == port:
                return s
        raise KeyError(port)

    def start(self):
        self.tmp = tempfile.mkdtemp(prefix=self.prefix)
        try:
            self.servers = self.new_servers(os.geteuid() == 0)
            for s in self.servers:
                s.start()
            for s in self.servers:
                s.wait_ready()
            for s in self.servers:
                s.setup()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        errors = []
        for s in self.servers:
            try:
                s.stop()
            except Exception as e:  # keep stopping the others
                errors.append(e)
        self.servers = []
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
        if errors:
            raise errors[0]


class Cluster(ServerGroup):
    """N independent MariaDB servers: instance 0 is "primary", the others
    "replica1", "replica2", ... (independent servers; no replication)."""

    def __init__(self, count=3):
        super().__init__("myroute-e2e-db-")
        self.count = count

    @property
    def primary(self):
        return self.servers[0]

    @property
    def replicas(self):
        return self.servers[1:]

    def new_servers(self, as_root):
        names = ["primary"] + ["replica%d" % i for i in range(1, self.count)]
        return [MariaDB(name, base, datadir, util.free_port(), as_root)
                for name, base, datadir in make_datadirs(self.tmp, names, as_root)]

    def wait_no_sessions(self, user, timeout=10):
        """Waits until no server has a session of `user`: the proxy has
        finished with every earlier connection of that user."""
        util.wait_until(lambda: all(s.sessions(user) == 0 for s in self.servers), timeout,
                        what=lambda: "no %s sessions; now %s" % (
                            user, {s.name: s.sessions(user) for s in self.servers}))


class TlsCluster(ServerGroup):
    """Two servers that serve TLS with `certs.server` (signed by
    `certs.ca`, which they also check client certificates against):
    "tls" takes plaintext logins too, "secure" has
    require_secure_transport=ON.  Besides the usual accounts each has the
    health-check account TLS_MONITOR_USER (USAGE only) and X509_USER, who
    must present the client certificate `certs.client`."""

    def __init__(self, certs):
        super().__init__("myroute-e2e-tlsdb-")
        self.certs = certs

    @property
    def tls(self):
        return self.servers[0]

    @property
    def secure(self):
        return self.servers[1]

    def new_servers(self, as_root):
        tls = ServerTls(self.certs.server.cert, self.certs.server.key, self.certs.ca.cert)
        extra = [
            "CREATE USER '%s'@'%%' IDENTIFIED VIA mysql_native_password USING PASSWORD('%s')"
            % (TLS_MONITOR_USER, TLS_MONITOR_PASSWORD),
            "CREATE USER '%s'@'%%' IDENTIFIED VIA mysql_native_password USING PASSWORD('%s') "
            "REQUIRE SUBJECT '%s'" % (X509_USER, X509_PASSWORD, X509_SUBJECT),
            "GRANT SELECT ON app.* TO '%s'@'%%'" % X509_USER,
        ]
        return [MariaDB(name, base, datadir, util.free_port(), as_root, tls=tls,
                        require_secure_transport=(name == "secure"), extra_sql=extra)
                for name, base, datadir in make_datadirs(self.tmp, ["tls", "secure"], as_root)]
