"""Starts and stops the myroute binary with a generated configuration."""

import os
import re
import subprocess

from . import util
from .accounts import USERS
from .protocol import password_hash

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def binary_path():
    return os.environ.get("MYROUTE_BIN") or os.path.join(REPO, "target", "release", "myroute")


def config_text(settings):
    """settings: list of (key, value) pairs, in file order."""
    return "".join("%s = %s\n" % (k, v) for k, v in settings)


def user_settings(name, password, pool):
    return [("user.%s.password" % name, password_hash(password)),
            ("user.%s.pool" % name, pool)]


def pool_settings(name, addresses):
    return [("pool.%s.servers" % name, ", ".join(addresses))]


def main_settings(cluster, **overrides):
    """The configuration (without `listen`) of the proxy most tests share:
    app_rw and nopw -> pool "primary", app_ro -> pool "replicas".  Keyword
    arguments replace or add top-level settings (server_version="...")."""
    top = {"buffer_size": "16384", "connect_timeout": "2s", "handshake_timeout": "10s"}
    top.update(overrides)
    return (list(top.items())
            + pool_settings("primary", [cluster.primary.address])
            + pool_settings("replicas", [s.address for s in cluster.replicas])
            + user_settings("app_rw", USERS["app_rw"], "primary")
            + user_settings("app_ro", USERS["app_ro"], "replicas")
            + user_settings("nopw", USERS["nopw"], "primary"))


class Proxy:
    """One myroute process.  `settings` excludes `listen`, which is added
    (first line) with a free port on `host` (a loopback address)."""

    # All proxies started in this process, for failure reports.
    running = []

    def __init__(self, workdir, name, settings, env=None, host="127.0.0.1"):
        self.workdir = workdir
        self.name = name
        self.settings = list(settings)
        self.port = util.free_port()
        self.host = host
        self.config_path = os.path.join(workdir, name + ".conf")
        self.log_path = os.path.join(workdir, name + ".stderr")
        self.env = env or {}
        # Variables removed from the proxy's environment (after the defaults
        # above are applied), e.g. ("RUST_LOG",) to let log_level decide.
        self.unset_env = ()
        self.proc = None
        self._log_file = None

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    @property
    def pid(self):
        return self.proc.pid

    def command(self):
        """The command line that start() runs (subclasses may wrap it)."""
        binary = binary_path()
        if not os.access(binary, os.X_OK):
            raise RuntimeError("myroute binary not found at %s (build it with "
                               "`cargo build --release` or set MYROUTE_BIN)" % binary)
        return [binary, "-c", self.config_path]

    def start(self, timeout=15):
        # The file holds password hashes: readable by its owner only.
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(config_text([("listen", self.address)] + self.settings))
        args = self.command()
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        env.update(self.env)
        for k in self.unset_env:
            env.pop(k, None)
        self._log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=self._log_file, stderr=self._log_file, env=env,
                                     start_new_session=True)
        Proxy.running.append(self)
        util.wait_until(lambda: self._listening(self.port, self.host), timeout,
                        what=lambda: "myroute to listen on %s; stderr:\n%s"
                        % (self.address, self.log_tail()))
        return self

    def _listening(self, port, host="127.0.0.1"):
        """True once the process listens on `port` (of `host`); fails if it
        has exited."""
        if self.proc.poll() is not None:
            raise RuntimeError("myroute exited with status %s during start-up; stderr:\n%s"
                               % (self.proc.returncode, self.log_tail()))
        return util.is_listening(port, host)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is not None:
            util.stop_process(self.proc, 5)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self in Proxy.running:
            Proxy.running.remove(self)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_lines(self):
        return self.log().splitlines()

    def log_tail(self, n=40):
        return "\n".join(self.log_lines()[-n:])

    def wait_for_log_line(self, predicate, timeout=5, what="a log line"):
        """Waits until a line satisfying predicate(line) appears; returns it."""
        def find():
            for line in self.log_lines():
                if predicate(line):
                    return line
            return None
        return util.wait_until(find, timeout, what=lambda: "%s in myroute's stderr; tail:\n%s"
                               % (what, self.log_tail()))

    def rss_kib(self):
        return util.process_rss_kib(self.proc.pid)


def has_word(line, word):
    """True when `word` occurs in `line` not as part of a longer name."""
    return re.search(r"(?<![\w.])%s(?![\w])" % re.escape(word), line) is not None
