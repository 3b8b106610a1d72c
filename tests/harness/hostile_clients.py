"""Tools for the hostile-client tests: a well-behaved client that keeps
querying in the background, raw sockets that send what real clients never
would, a reader that says how a connection ended (ERR, close, or nothing),
a recording relay, and what a process's memory holds."""

import resource
import selectors
import socket
import statistics
import struct
import threading
import time

from . import protocol as p
from .clients import pymysql_connect, scalar


# --- the proxy process -----------------------------------------------------------

def memory_holding(pid, needles):
    """Which of `needles` ({name: bytes}) occur in the writable memory of a
    process (heap, stack, anonymous mappings), read through /proc/PID/mem:
    {name: [mapping, ...]}."""
    found = {}
    with open("/proc/%d/maps" % pid) as f:
        maps = f.read().splitlines()
    with open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            if "r" not in fields[1] or "w" not in fields[1]:
                continue
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            try:
                mem.seek(lo)
                data = mem.read(hi - lo)
            except OSError:
                continue  # e.g. [vvar]
            where = fields[5] if len(fields) > 5 else "anonymous %s" % fields[0]
            for name, needle in needles.items():
                if needle in data:
                    found.setdefault(name, []).append(where)
    return found


def raise_nofile(wanted):
    """Raises this process's soft RLIMIT_NOFILE to `wanted` (at most the hard
    limit); returns the limit now in force.  Processes started afterwards
    (the proxy) inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


# --- the machine itself -------------------------------------------------------------

class StallWatch(threading.Thread):
    """Notices when this process was not scheduled for a while (a busy or
    paused machine), so timing assertions can allow for it instead of
    failing on the machine's account."""

    TICK = 0.02
    GAP = 0.25

    def __init__(self):
        super().__init__(name="stall-watch", daemon=True)
        self.gaps = []  # (start, end) of each late wake-up
        self._halt = threading.Event()

    def run(self):
        last = time.monotonic()
        while not self._halt.wait(self.TICK):
            now = time.monotonic()
            if now - last > self.GAP:
                self.gaps.append((last, now))
            last = now

    def stalled(self, start, end=None):
        """Seconds of stall that overlap [start, end] (end: now)."""
        end = time.monotonic() if end is None else end
        return sum(max(0.0, min(b, end) - max(a, start)) for a, b in list(self.gaps))

    def stop(self):
        self._halt.set()


# --- a well-behaved client ---------------------------------------------------------

class SteadyClient(threading.Thread):
    """A PyMySQL connection that runs `SELECT @@port` every `interval`
    seconds until stopped, recording answers, latencies and errors.  Started
    before an attack and checked after it: the proxy must keep serving it."""

    def __init__(self, host, port, user, password, expected_port, interval=0.02, name="steady",
                 connect=None):
        """connect: how to open the connection, connect(host, port, user,
        password, **kw) (default: PyMySQL in plaintext)."""
        super().__init__(name=name, daemon=True)
        self.args = (host, port, user, password)
        self.expected_port = expected_port
        self.interval = interval
        self.answers = 0
        self.latencies = []
        self.errors = []
        self._halt = threading.Event()
        self._cond = threading.Condition()
        self.conn = (connect or pymysql_connect)(*self.args, read_timeout=10, write_timeout=10)

    def run(self):
        try:
            while not self._halt.is_set():
                t0 = time.monotonic()
                got = scalar(self.conn, "SELECT @@port")
                elapsed = time.monotonic() - t0
                if got != self.expected_port:
                    raise AssertionError("SELECT @@port answered %r, not %r"
                                         % (got, self.expected_port))
                with self._cond:
                    self.answers += 1
                    self.latencies.append(elapsed)
                    self._cond.notify_all()
                self._halt.wait(self.interval)
        except BaseException as e:  # recorded, reported by check()
            with self._cond:
                self.errors.append(e)
                self._cond.notify_all()
        finally:
            try:
                self.conn.close()
            except Exception:
                pass

    def check(self, more=3, timeout=5.0):
        """Waits until `more` further answers arrive; fails on any error."""
        with self._cond:
            goal = self.answers + more
            deadline = time.monotonic() + timeout
            while self.answers < goal and not self.errors:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            assert not self.errors, "the well-behaved client failed: %r" % self.errors[0]
            assert self.answers >= goal, (
                "the well-behaved client got no answer for %.1fs (%d answers so far)"
                % (timeout, self.answers))

    def stop(self):
        self._halt.set()
        self.join(timeout=15)


def percentile(values, q):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def describe_latencies(values):
    if not values:
        return "no samples"
    return "n=%d p50=%.1fms p95=%.1fms max=%.1fms" % (
        len(values), 1000 * statistics.median(values), 1000 * percentile(values, 0.95),
        1000 * max(values))


# --- raw connections ---------------------------------------------------------------

class Ending:
    """How a raw connection ended, as seen by the client.

    kind: "err" (an ERR packet, then usually a close), "closed" (EOF or reset
    with no ERR), "packet" (a non-ERR packet arrived, e.g. an OK or an
    AuthSwitchRequest), or "silent" (nothing within the time allowed).
    """

    def __init__(self, kind, elapsed, packets=(), err=None, err_seq=None, closed=False,
                 started=None):
        self.kind = kind
        self.elapsed = elapsed
        self.started = started  # time.monotonic() the elapsed time counts from
        self.packets = list(packets)  # [(seq, payload)] after the greeting
        self.err = err  # harness.protocol.ServerError
        self.err_seq = err_seq
        self.closed = closed

    def __repr__(self):
        if self.err is not None:
            return "<Ending err %d %s seq=%s %r after %.2fs, closed=%s>" % (
                self.err.code, self.err.state, self.err_seq, self.err.message[:80],
                self.elapsed, self.closed)
        return "<Ending %s after %.2fs, packets=%r>" % (
            self.kind, self.elapsed, [(s, b[:16]) for s, b in self.packets])


def split_frames(buf):
    """Whole packets at the front of `buf`, headers included: ([bytes], rest)."""
    out = []
    while len(buf) >= 4:
        n = buf[0] | buf[1] << 8 | buf[2] << 16
        if len(buf) < 4 + n:
            break
        out.append(bytes(buf[:4 + n]))
        buf = buf[4 + n:]
    return out, buf


def split_packets(buf):
    """Whole packets at the front of `buf`: ([(seq, payload)], rest)."""
    frames, rest = split_frames(buf)
    return [(f[3], f[4:]) for f in frames], rest


def read_ending(sock, timeout, t0=None, stop_at_packet=False):
    """Reads until the peer closes or `timeout` seconds pass, and says how
    the connection ended.  With stop_at_packet, returns as soon as a whole
    non-ERR packet has arrived (kind "packet")."""
    t0 = time.monotonic() if t0 is None else t0
    deadline = time.monotonic() + timeout
    buf = b""
    packets = []
    closed = False
    while True:
        # After the deadline, one short last look: on a machine that paused
        # us, what the peer did in time may only be readable now.
        left = max(deadline - time.monotonic(), 0.0)
        last_look = left == 0
        sock.settimeout(left or 0.2)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            break
        except (ConnectionResetError, BrokenPipeError):
            closed = True
            break
        if not data:
            closed = True
            break
        buf += data
        got, buf = split_packets(buf)
        packets += got
        if stop_at_packet and any(pl[:1] != b"\xff" for _, pl in got):
            break
        if last_look and not any(pl[:1] == b"\xff" for _, pl in got):
            break
        if any(pl[:1] == b"\xff" for _, pl in got):
            # An ERR: the close should follow at once.
            try:
                sock.settimeout(2.0)
                while True:
                    more = sock.recv(65536)
                    if not more:
                        closed = True
                        break
                    buf += more
            except socket.timeout:
                pass
            except (ConnectionResetError, BrokenPipeError):
                closed = True
            break
    elapsed = time.monotonic() - t0
    for seq, pl in packets:
        if pl[:1] == b"\xff":
            return Ending("err", elapsed, packets, p.parse_err(pl), seq, closed, started=t0)
    if packets:
        return Ending("packet", elapsed, packets, closed=closed, started=t0)
    return Ending("closed" if closed else "silent", elapsed, closed=closed, started=t0)


def connect(proxy, timeout=10.0):
    s = socket.create_connection((proxy.host, proxy.port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def greeted(proxy):
    """A raw connection whose greeting has been read: (sock, greeting dict)."""
    s = connect(proxy)
    seq, payload = p.read_packet(s)
    assert seq == 0, seq
    return s, p.parse_greeting(payload)


FULL_CAPS = (p.BASIC_CLIENT_CAPS | p.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
             | p.CLIENT_CONNECT_ATTRS | p.CLIENT_DEPRECATE_EOF | p.CLIENT_MULTI_STATEMENTS)


def response41(user, token, caps=FULL_CAPS, database=None, plugin=p.NATIVE,
               attrs=((b"_client_name", b"hostile"), (b"_pid", b"1")), charset=45):
    """A HandshakeResponse41 payload as a modern client builds it; `user`,
    `database` and `plugin` may be bytes (sent as they are) or str."""
    enc = lambda v: v if isinstance(v, bytes) else v.encode()  # noqa: E731
    if database is not None:
        caps |= p.CLIENT_CONNECT_WITH_DB
    out = struct.pack("<IIB", caps, p.MAX_PAYLOAD, charset) + b"\0" * 23
    out += enc(user) + b"\0"
    if caps & p.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA:
        out += p.lenenc_str(token)
    elif caps & p.CLIENT_SECURE_CONNECTION:
        out += bytes([len(token)]) + token
    else:
        out += token + b"\0"
    if database is not None:
        out += enc(database) + b"\0"
    if caps & p.CLIENT_PLUGIN_AUTH:
        out += enc(plugin) + b"\0"
    if caps & p.CLIENT_CONNECT_ATTRS:
        kv = b"".join(p.lenenc_str(k) + p.lenenc_str(v) for k, v in attrs)
        out += p.lenenc_str(kv)
    return out


def send_and_read(sock, data, timeout):
    """Sends `data` as it is, says how the connection ended (the time
    counted from the send) and closes it."""
    try:
        t0 = time.monotonic()
        sock.sendall(data)
        return read_ending(sock, timeout, t0)
    finally:
        sock.close()


def attempt(proxy, payload, seq=1, timeout=5.0):
    """Reads the greeting, sends one packet, says how it ended."""
    s, _ = greeted(proxy)
    return send_and_read(s, p.frame(seq, payload), timeout)


# --- many sockets at once --------------------------------------------------------------

def wait_all_closed(socks, timeout):
    """Reads every socket until EOF/reset; returns {sock: seconds until it
    closed} and the list of those still open at the deadline.  Data that
    arrives (the greeting, an ERR) is read and dropped."""
    sel = selectors.DefaultSelector()
    t0 = time.monotonic()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    closed = {}
    deadline = t0 + timeout
    try:
        while len(closed) < len(socks):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for key, _ in sel.select(min(left, 0.5)):
                s = key.fileobj
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    closed[s] = time.monotonic() - t0
                    sel.unregister(s)
    finally:
        sel.close()
    still_open = [s for s in socks if s not in closed]
    return closed, still_open


class Relay:
    """A TCP relay in front of `upstream` (anything with host and port) that
    forwards whole packets and records each one, header included, in both
    directions: `packets`, [("c" | "s", bytes)] in the order seen ("c" from
    the client).  `greeting`, when given, rewrites the first packet the
    upstream sends on each connection."""

    def __init__(self, upstream, greeting=None):
        self.upstream = upstream
        self.greeting = greeting
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.host = "127.0.0.1"
        self.packets = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def client_packets(self):
        """What the clients sent: [(seq, payload)]."""
        with self.lock:
            return [(pkt[3], pkt[4:]) for side, pkt in self.packets if side == "c"]

    def _accept(self):
        while True:
            try:
                c, _ = self.listener.accept()
            except OSError:
                return
            u = socket.create_connection((self.upstream.host, self.upstream.port))
            for src, dst, side in ((c, u, "c"), (u, c, "s")):
                threading.Thread(target=self._pump, args=(src, dst, side), daemon=True).start()

    def _pump(self, src, dst, side):
        buf = b""
        first = True
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                return
            frames, buf = split_frames(buf + data)
            if frames and first:
                first = False
                if side == "s" and self.greeting is not None:
                    frames[0] = self.greeting(frames[0])
            with self.lock:
                self.packets += [(side, pkt) for pkt in frames]
            try:
                dst.sendall(b"".join(frames))
            except OSError:
                return

    def close(self):
        self.listener.close()
