"""A flood of connections that never answer the greeting, while normal
clients keep working: the idle ones are closed at handshake_timeout, the
normal ones keep getting answers (latency printed against a run without the
flood), and afterwards the proxy's descriptors return to their baseline and
its memory stays bounded."""

import socket
import threading
import time

from harness.accounts import USERS
from harness.clients import landing_port, pymysql_connect, scalar
from harness.hostile_clients import (StallWatch, describe_latencies, percentile, raise_nofile,
                                     wait_all_closed)
from harness.proxy import main_settings
from harness import util

IDLE = 2000
NORMAL = 8
HS = 3.0
SLACK = 2.0
RSS_LIMIT_KIB = 40 * 1024
P95_LIMIT = 1.0


class NormalClient(threading.Thread):
    """Runs small queries in a loop, logging in again every `per_login`
    queries, so logins too happen during the flood.  Each latency is
    recorded with the time it was measured."""

    def __init__(self, px, user, expected_ports, per_login=25, pause=0.01):
        super().__init__(daemon=True)
        self.px = px
        self.user = user
        self.expected_ports = expected_ports
        self.per_login = per_login
        self.pause = pause
        self.samples = []  # (time, seconds, kind) kind: "query" or "login"
        self.errors = []
        self.halt = threading.Event()

    def run(self):
        try:
            while not self.halt.is_set():
                t0 = time.monotonic()
                conn = pymysql_connect(self.px.host, self.px.port, self.user, USERS[self.user],
                                       connect_timeout=10, read_timeout=10)
                self.samples.append((t0, time.monotonic() - t0, "login"))
                try:
                    for _ in range(self.per_login):
                        if self.halt.is_set():
                            break
                        t0 = time.monotonic()
                        port = scalar(conn, "SELECT @@port")
                        self.samples.append((t0, time.monotonic() - t0, "query"))
                        assert port in self.expected_ports, port
                        self.halt.wait(self.pause)
                finally:
                    conn.close()
        except BaseException as e:
            self.errors.append(e)

    def between(self, start, end, kind):
        return [d for t, d, k in self.samples if start <= t < end and k == kind]


def settle_fds(pid, quiet=0.5, timeout=10):
    """The descriptor count once it has not changed for `quiet` seconds."""
    last, since = util.open_fds(pid), time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = util.open_fds(pid)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last


def test_idle_flood_while_normal_clients_work(make_proxy, cluster):
    # This process holds the idle sockets; the proxy, started after this,
    # inherits the limit and needs one descriptor per client and backend.
    limit = raise_nofile(2 * IDLE + 1024)
    assert limit >= IDLE + 256, "RLIMIT_NOFILE %d is too low for %d sockets" % (limit, IDLE)
    stalls = StallWatch()
    stalls.start()
    px = make_proxy("slow", main_settings(cluster, handshake_timeout="3s"))
    baseline_fds = settle_fds(px.pid)
    rw_port = {cluster.primary.port}
    ro_ports = {s.port for s in cluster.replicas}
    normal = [NormalClient(px, "app_rw" if i % 2 else "app_ro", rw_port if i % 2 else ro_ports)
              for i in range(NORMAL)]
    socks = []
    peak_rss = 0
    try:
        for c in normal:
            c.start()
        # Without the flood first.
        t_base = time.monotonic()
        time.sleep(2.0)
        t_flood = time.monotonic()
        opened = {}
        for _ in range(IDLE):
            s = socket.socket()
            s.settimeout(10)
            s.connect((px.host, px.port))
            opened[s] = time.monotonic()
            socks.append(s)
        t_opened = time.monotonic()
        # Sample the proxy's memory while the flood is held open.
        rss_samples = []
        sampler_halt = threading.Event()

        def sample():
            while not sampler_halt.wait(0.1):
                try:
                    rss_samples.append(px.rss_kib())
                except Exception:
                    return
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t_wait = time.monotonic()
        closed, still_open = wait_all_closed(socks, HS + 10)
        t_closed = time.monotonic()
        sampler_halt.set()
        sampler.join(5)
        peak_rss = max(rss_samples or [px.rss_kib()])
        # Keep the normal clients going a little past the flood.
        time.sleep(0.5)
    finally:
        for c in normal:
            c.halt.set()
        for c in normal:
            c.join(timeout=30)
        for s in socks:
            s.close()

    base_q = [d for c in normal for d in c.between(t_base, t_flood, "query")]
    flood_q = [d for c in normal for d in c.between(t_flood, t_closed, "query")]
    base_l = [d for c in normal for d in c.between(t_base, t_flood, "login")]
    flood_l = [d for c in normal for d in c.between(t_flood, t_closed, "login")]
    ages = [t_wait + closed[s] - opened[s] for s in closed]
    print("\n%d idle connections opened in %.2fs, all closed %.2fs after the first"
          % (IDLE, t_opened - t_flood, t_closed - t_flood))
    if ages:
        print("idle connection lifetime: min %.2fs median %.2fs max %.2fs"
              % (min(ages), sorted(ages)[len(ages) // 2], max(ages)))
    print("queries without flood: %s" % describe_latencies(base_q))
    print("queries during flood:  %s" % describe_latencies(flood_q))
    print("logins without flood:  %s" % describe_latencies(base_l))
    print("logins during flood:   %s" % describe_latencies(flood_l))
    print("proxy RSS peak during flood: %d KiB; machine stalls: %.2fs"
          % (peak_rss, stalls.stalled(t_base)))

    for c in normal:
        assert not c.errors, "a normal client failed: %r" % c.errors[0]
    assert len(flood_q) >= NORMAL, "the normal clients got almost no answers during the flood"
    assert percentile(flood_q, 0.95) < P95_LIMIT + stalls.stalled(t_flood, t_closed), (
        describe_latencies(flood_q))
    assert not still_open, "%d idle connections still open %.1fs after the flood" % (
        len(still_open), t_closed - t_wait)
    allowance = stalls.stalled(t_flood, t_closed)
    assert min(ages) >= HS - 0.5, "an idle connection was closed after %.2fs" % min(ages)
    assert max(ages) < HS + SLACK + allowance, "an idle connection lived %.2fs" % max(ages)
    assert peak_rss < RSS_LIMIT_KIB, "RSS %d KiB during the flood" % peak_rss

    # Everything the flood opened is closed again.
    util.wait_until(lambda: util.open_fds(px.pid) <= baseline_fds, 10,
                    what=lambda: "the proxy's descriptors back to %d (now %d)"
                    % (baseline_fds, util.open_fds(px.pid)))
    assert px.alive()
    assert px.rss_kib() < RSS_LIMIT_KIB
    assert landing_port(px, "app_rw") == cluster.primary.port
    stalls.stop()
