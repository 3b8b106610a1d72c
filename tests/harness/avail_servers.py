"""MariaDB servers that availability tests may stop, freeze, restart and
reconfigure, apart from the session's shared cluster.

`OwnCluster(specs)` starts one server per spec (a dict of options, see
`Instance`) from one template datadir, with the usual test accounts and a
USAGE-only account for health checks.  `restore()` puts every server back
the way it started (running, not frozen, read_only off, host cache empty),
so one OwnCluster can serve several destructive tests in turn.
"""

import os
import signal
import time

import pymysql

from . import util
from .mariadb import MariaDB, ServerGroup, _tail, make_datadirs

# The account health checks log in as: no privilege beyond USAGE.
HEALTH_USER = "avail_monitor"
HEALTH_PASSWORD = "mon-Secret-4471-medlar"


class Instance(MariaDB):
    """A mariadbd that can be killed, frozen and restarted on the same port
    and datadir.

    name_resolve: False adds --skip-name-resolve (as the shared cluster
    does); True leaves name resolution (and so the host cache and host
    blocking) on.  max_connect_errors: the server's limit before it blocks a
    host.  performance_schema: turn it on (for performance_schema.host_cache).
    extra_args: more mariadbd options, appended to the command line (e.g.
    "--proxy-protocol-networks=127.0.0.1").
    """

    def __init__(self, name, basedir, datadir, port, as_root, name_resolve=False,
                 max_connect_errors=100000, performance_schema=False, extra_args=()):
        super().__init__(name, basedir, datadir, port, as_root)
        self.name_resolve = name_resolve
        self.max_connect_errors = max_connect_errors
        self.performance_schema = performance_schema
        self.extra_args = list(extra_args)
        self.frozen = False

    def args(self):
        return super().args(name_resolve=self.name_resolve,
                            max_connect_errors=self.max_connect_errors,
                            performance_schema=self.performance_schema) + self.extra_args

    def start(self):
        self.frozen = False
        super().start()

    def stop(self):
        self.thaw()
        super().stop()

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL: the port is closed at once, connections are reset."""
        if self.proc is None:
            return
        self.thaw()
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=15)
        self.proc = None
        util.wait_until(lambda: not util.is_listening(self.port), 5,
                        what="port %d to close after killing %s" % (self.port, self.name))

    def restart(self, timeout=60):
        """Starts it again on the same port and datadir; returns the
        time.time() of the start."""
        if self.running:
            return None
        started = time.time()
        self.start()
        self.wait_ready(timeout)
        return started

    def freeze(self):
        """SIGSTOP: the kernel still completes TCP connects to its port, but
        the server never greets."""
        os.killpg(self.proc.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self):
        if self.frozen and self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGCONT)
        self.frozen = False

    def status(self, name):
        """A global status counter (SHOW GLOBAL STATUS), as an int; None if
        the server has no such counter."""
        rows = self.admin_query("SHOW GLOBAL STATUS LIKE %s", (name,))
        return int(rows[0][1]) if rows else None

    def set_read_only(self, on):
        self.admin_query("SET GLOBAL read_only = %d" % (1 if on else 0))

    def read_only(self):
        return bool(self.admin_query("SELECT @@global.read_only")[0][0])

    def setup(self):
        super().setup()
        conn = self.admin()
        try:
            with conn.cursor() as cur:
                cur.execute("CREATE USER %s@'%%' IDENTIFIED VIA mysql_native_password "
                            "USING PASSWORD(%s)", (HEALTH_USER, HEALTH_PASSWORD))
        finally:
            conn.close()

    def restore(self):
        """Running, not frozen, read_only off, empty host cache."""
        self.thaw()
        if not self.running:
            self.restart()
        self.set_read_only(False)
        self.admin_query("FLUSH HOSTS")


class OwnCluster(ServerGroup):
    """Servers for destructive tests; `specs` is a list of dicts of Instance
    options (name_resolve, max_connect_errors, performance_schema,
    extra_args), one per
    server, or an int (that many plain servers)."""

    def __init__(self, specs, prefix="myroute-e2e-avail-"):
        super().__init__(prefix)
        if isinstance(specs, int):
            specs = [{} for _ in range(specs)]
        self.specs = list(specs)

    def __getitem__(self, i):
        return self.servers[i]

    def __len__(self):
        return len(self.servers)

    def new_servers(self, as_root):
        names = ["s%d" % (i + 1) for i in range(len(self.specs))]
        return [Instance(name, base, datadir, util.free_port(), as_root, **spec)
                for spec, (name, base, datadir)
                in zip(self.specs, make_datadirs(self.tmp, names, as_root))]

    def restore(self):
        """Every server back to its starting state; raises the first error
        after trying them all."""
        errors = []
        for s in self.servers:
            try:
                s.restore()
            except Exception as e:
                errors.append("%s: %r; error log:\n%s" % (s.name, e, _tail(s.errlog)))
        if errors:
            raise RuntimeError("could not restore the servers: " + "\n".join(errors))


def connect_from(source, host, port, user, password, **kw):
    """A PyMySQL login from local address `source` (bound before
    connecting, so the server sees that address)."""
    kw.setdefault("connect_timeout", 10)
    return pymysql.connect(host=host, port=port, user=user, password=password,
                           bind_address=source, ssl_disabled=True, **kw)


def own_servers_fixtures(specs, prefix):
    """A test module's own servers, for tests that kill, freeze or
    reconfigure them: returns the fixtures `own_cluster` (started once per
    module) and `own` (the same servers, restored before and after each
    test, pass or fail). Assign both at module level."""
    import pytest

    @pytest.fixture(scope="module", name="own_cluster")
    def own_cluster_fixture():
        c = OwnCluster(specs, prefix=prefix).start()
        try:
            yield c
        finally:
            c.stop()

    @pytest.fixture(name="own")
    def own_fixture(own_cluster):
        own_cluster.restore()
        try:
            yield own_cluster
        finally:
            own_cluster.restore()

    return own_cluster_fixture, own_fixture
