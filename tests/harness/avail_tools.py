"""Tools for the availability tests: when the proxy logged what (its log
lines carry no timestamps, so a watcher notes when each line appears), the
access-log lines as records, a proxy started under a low descriptor limit,
a process's CPU time, and raw handshakes from a chosen source address."""

import os
import re
import socket
import threading
import time

from . import protocol as p
from . import util
from .proxy import Proxy

# --- the proxy's log ----------------------------------------------------------------

ACCESS_RE = re.compile(
    r"conn=(?P<conn>\d+) client=(?P<client>\S+) user=(?P<user>\S+) pool=(?P<pool>\S+) "
    r"server=(?P<server>\S+) duration=(?P<duration>[\d.]+)s bytes_in=(?P<bytes_in>\d+) "
    r"bytes_out=(?P<bytes_out>\d+) end=(?P<end>\S+)")


def access_record(line):
    """An access-log line as a dict (duration a float in seconds); None for
    any other line."""
    m = ACCESS_RE.search(line)
    if not m:
        return None
    rec = m.groupdict()
    rec["conn"] = int(rec["conn"])
    rec["duration"] = float(rec["duration"])
    return rec


def access_records(proxy):
    """Every access-log line so far, as dicts."""
    return [rec for rec in map(access_record, proxy.log_lines()) if rec is not None]


def wait_access_record(proxy, predicate, timeout=5, what="an access-log line"):
    """Waits for an access record satisfying predicate(record); returns it."""
    def matches(line):
        rec = access_record(line)
        return rec is not None and predicate(rec)
    return access_record(proxy.wait_for_log_line(matches, timeout, what))


def down_line(addr):
    return "server %s is DOWN: " % addr


def up_line(addr):
    return "server %s is UP" % addr


class LogWatcher(threading.Thread):
    """Reads a proxy's log as it grows and notes the time.monotonic() at
    which each line was first seen (at most `TICK` late)."""

    TICK = 0.01

    def __init__(self, proxy):
        super().__init__(name="log-watcher", daemon=True)
        self.path = proxy.log_path
        self.lines = []  # [(seen_at, text)]
        self._lock = threading.RLock()
        self._halt = threading.Event()
        self._offset = 0
        self._partial = b""

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def _read(self):
        with self._lock:
            try:
                with open(self.path, "rb") as f:
                    f.seek(self._offset)
                    data = f.read()
            except FileNotFoundError:
                return
            if not data:
                return
            self._offset += len(data)
            now = time.monotonic()
            data = self._partial + data
            *whole, self._partial = data.split(b"\n")
            for raw in whole:
                self.lines.append((now, raw.decode("utf-8", "replace")))

    def run(self):
        while not self._halt.wait(self.TICK):
            self._read()

    def stop(self):
        self._halt.set()
        self.join(timeout=5)

    def matching(self, substring, since=None):
        """[(seen_at, line)] of lines containing `substring` (seen at or
        after `since`)."""
        self._read()
        with self._lock:
            return [(t, l) for t, l in self.lines
                    if substring in l and (since is None or t >= since)]

    def wait_for(self, substring, timeout, since=None):
        """Waits until a line containing `substring` has been seen; returns
        (seen_at, line) of the first."""
        def find():
            got = self.matching(substring, since)
            return got[0] if got else None
        return util.wait_until(find, timeout, interval=self.TICK,
                               what=lambda: "%r in the proxy's log; last lines:\n%s" % (
                                   substring, "\n".join(l for _, l in self.lines[-25:])))


# --- a proxy under a low descriptor limit ------------------------------------------------

class LimitedProxy(Proxy):
    """A Proxy whose process starts with RLIMIT_NOFILE set to `nofile` (soft
    and hard), through prlimit(1), which then becomes the proxy (same pid)."""

    def __init__(self, workdir, name, settings, nofile, env=None):
        super().__init__(workdir, name, settings, env=env)
        self.nofile = nofile

    def command(self):
        limit = "--nofile=%d:%d" % (self.nofile, self.nofile)
        return ["prlimit", limit, "--"] + super().command()


def nofile_limits(pid):
    """(soft, hard) RLIMIT_NOFILE of a process, from /proc/PID/limits."""
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                fields = line.split()
                return int(fields[3]), int(fields[4])
    raise RuntimeError("no 'Max open files' for pid %d" % pid)


def cpu_seconds(pid):
    """User plus system CPU time a process has used, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        stat = f.read()
    # The command name (field 2) may hold spaces: split after its ')'.
    fields = stat[stat.rindex(")") + 2:].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def runnable_seconds(pid):
    """Seconds a process has spent running or waiting to run (from
    /proc/PID/schedstat): a process that sleeps in poll() adds almost
    nothing, one that spins adds the whole wall time, however busy the
    machine is."""
    with open("/proc/%d/schedstat" % pid) as f:
        on_cpu, waiting = f.read().split()[:2]
    return (int(on_cpu) + int(waiting)) / 1e9


# --- raw handshakes ------------------------------------------------------------------------

def bound_socket(source, host, port, timeout=5.0):
    """A TCP connection to host:port from local address `source`."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect((host, port))
    return s


def dropped_handshake(source, host, port):
    """Connects from `source`, reads the server's first packet (a greeting,
    or an ERR if the host is already blocked) and closes without answering:
    what a TCP-only health check does.  Returns the first packet."""
    s = bound_socket(source, host, port)
    try:
        _, payload = p.read_packet(s)
        return payload
    finally:
        s.close()


def port_of(conn):
    """The backend port behind a PyMySQL connection (SELECT @@port)."""
    with conn.cursor() as cur:
        cur.execute("SELECT @@port")
        return cur.fetchone()[0]
