"""Availability: health checks (fall/rise, frozen servers, passive failures),
host blocking never caused by the checks, fallback pools, weights, roles
that follow @@read_only, idle/handshake timeouts, max_clients and running
out of descriptors.

Tests that stop, freeze or reconfigure servers use servers of their own
(`own`), put back as they were after each test even when it fails; the
session's shared cluster is only read from.
"""

import socket
import time

import pymysql
import pytest

from harness import protocol as p
from harness import util
from harness.accounts import USERS
from harness.avail_servers import HEALTH_PASSWORD, HEALTH_USER, connect_from, own_servers_fixtures
from harness.avail_tools import (LimitedProxy, LogWatcher, access_records, cpu_seconds,
                                 down_line, dropped_handshake, nofile_limits,
                                 port_of, runnable_seconds, up_line, wait_access_record)
from harness.clients import close_all, login
from harness.ops import client_addr
from harness.proxy import main_settings, pool_settings, user_settings

SOURCE = "127.0.0.2"


# --- fixtures and helpers ---------------------------------------------------------------

# s1-s3 as the shared cluster's servers are; s4 with name resolution (so a
# host cache and host blocking) and max_connect_errors=2.
own_cluster, own = own_servers_fixtures(
    [{}, {}, {}, dict(name_resolve=True, max_connect_errors=2, performance_schema=True)],
    prefix="myroute-e2e-avail-")


def hold(px, user, n):
    """n connections held open at once; returns (connections, ports)."""
    conns = []
    try:
        for _ in range(n):
            conns.append(login(px, user))
        return conns, [port_of(c) for c in conns]
    except BaseException:
        close_all(conns)
        raise


def spread(px, user, n):
    """Backend ports of n connections held at once, then closed, waiting
    until the proxy has finished with each (so the next count starts from
    an idle pool)."""
    conns, ports = hold(px, user, n)
    release(px, conns)
    return ports


def release(px, conns):
    """Closes the connections and waits for their access-log lines."""
    addrs = {client_addr(c) for c in conns}
    close_all(conns)
    util.wait_until(lambda: addrs <= {r["client"] for r in access_records(px)}, 5,
                    what=lambda: "access lines for %s; tail:\n%s" % (sorted(addrs),
                                                                      px.log_tail()))


def counts(ports):
    out = {}
    for port in ports:
        out[port] = out.get(port, 0) + 1
    return out


def wait_checked(watcher, servers, timeout=10):
    """Waits until the first check of each server has been recorded (the
    proxy logs each server's version when its first check reads it)."""
    for s in servers:
        watcher.wait_for("server %s: version" % s.address, timeout)


def health(interval, fall, rise, connect_timeout="1s"):
    return [("connect_timeout", connect_timeout), ("health.interval", interval),
            ("health.fall", str(fall)), ("health.rise", str(rise))]


def app_rw_pool(servers):
    """Pool "p" of `servers`, app_rw's."""
    return (pool_settings("p", [s.address for s in servers])
            + user_settings("app_rw", USERS["app_rw"], "p"))


def restart_watching_listen(server):
    """Restarts a killed server; returns a time.monotonic() before which it
    surely did not listen (when a look at the listening sockets last found
    its port missing)."""
    server.start()
    missing = [time.monotonic()]

    def listening():
        t = time.monotonic()
        if util.is_listening(server.port):
            return True
        missing.append(t)
        return False
    util.wait_until(listening, 60, interval=0.005, what="%s to listen again" % server.name)
    server.wait_ready()
    return missing[-1]


# --- 1. host blocking ----------------------------------------------------------------------

class Stats:
    """Status counters and performance_schema tables of one server, read
    over one held connection (so that reading them adds no connection)."""

    def __init__(self, server):
        self.conn = server.admin()

    def query(self, sql, args=None):
        with self.conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()

    def status(self, name):
        return int(self.query("SHOW GLOBAL STATUS LIKE %s", (name,))[0][1])

    def counters(self):
        return {k: self.status(k) for k in ("Connections", "Aborted_connects",
                                            "Aborted_connects_preauth", "Aborted_clients")}

    def host_cache_errors(self, ip):
        """(SUM_CONNECT_ERRORS, COUNT_HOST_BLOCKED_ERRORS) of `ip`; (0, 0)
        when the host cache has no entry for it."""
        rows = self.query("SELECT SUM_CONNECT_ERRORS, COUNT_HOST_BLOCKED_ERRORS "
                          "FROM performance_schema.host_cache WHERE IP = %s", (ip,))
        return tuple(rows[0]) if rows else (0, 0)

    def logins_from(self, host):
        """Logged-in connections the server has had from `host`."""
        rows = self.query("SELECT TOTAL_CONNECTIONS FROM performance_schema.hosts "
                          "WHERE HOST = %s", (host,))
        return int(rows[0][0]) if rows else 0

    def close(self):
        self.conn.close()


def test_health_checks_never_get_the_source_address_blocked(make_proxy, own):
    s = own[3]
    stats = Stats(s)
    try:
        # Without skip-name-resolve the server looks 127.0.0.2 up on every
        # connection: that must answer at once, or checks would time out.
        t0 = time.monotonic()
        conn = connect_from(SOURCE, s.host, s.port, "app_rw", USERS["app_rw"])
        elapsed = time.monotonic() - t0
        conn.close()
        assert elapsed < 1.0, "a login from %s took %.2fs (slow reverse lookup)" % (
            SOURCE, elapsed)

        for with_user in (True, False):
            label = "with health.user" if with_user else "without health.user"
            settings = ([("connect_timeout", "2s"), ("health.interval", "100ms"),
                         ("source_address", SOURCE)]
                        + app_rw_pool([s]))
            if with_user:
                settings += [("health.user", HEALTH_USER), ("health.password", HEALTH_PASSWORD)]
            # Nothing but `stats` connected: earlier sessions are over.
            util.wait_until(lambda: stats.status("Threads_connected") == 1, 10,
                            what="earlier connections to end")
            before = stats.counters()
            logins_before = stats.logins_from(SOURCE)
            px = make_proxy("checks-user" if with_user else "checks-anonymous", settings)
            # At least 50 checks (nothing else connects meanwhile).
            util.wait_until(lambda: stats.status("Connections") >= before["Connections"] + 50,
                            20, what=lambda: "50 checks %s; %d so far" % (
                                label, stats.status("Connections") - before["Connections"]))
            after = stats.counters()
            checks = after["Connections"] - before["Connections"]
            errors = stats.host_cache_errors(SOURCE)
            summary = "%d checks %s: counters %r -> %r, host cache of %s " \
                "(SUM_CONNECT_ERRORS, COUNT_HOST_BLOCKED_ERRORS) = %r" % (
                    checks, label, before, after, SOURCE, errors)
            assert errors == (0, 0), summary
            assert after["Aborted_connects_preauth"] == before["Aborted_connects_preauth"], (
                "dropped handshakes; " + summary)
            assert after["Aborted_clients"] == before["Aborted_clients"], (
                "sessions ended without COM_QUIT; " + summary)
            if with_user:
                # Every check logged in, from 127.0.0.2; nothing aborted.
                assert after["Aborted_connects"] == before["Aborted_connects"], summary
                assert stats.logins_from(SOURCE) - logins_before >= checks - 1, summary
            else:
                # Each check's login as `myroute` is refused: an aborted
                # connect, but not one that counts toward blocking.
                assert after["Aborted_connects"] - before["Aborted_connects"] >= checks - 1, (
                    summary)
            # Logins through the proxy work, and arrive from 127.0.0.2.
            conn = login(px, "app_rw")
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT @@port, USER()")
                    assert cur.fetchone() == (s.port, "app_rw@%s" % SOURCE)
            finally:
                conn.close()
            # So does a direct login from 127.0.0.2.
            connect_from(SOURCE, s.host, s.port, "app_rw", USERS["app_rw"]).close()
            assert px.alive()
            px.stop()

        # The control: three handshakes dropped by a client from 127.0.0.2
        # (read the greeting, close) and the next login from there gets
        # ERR 1129.
        util.wait_until(lambda: stats.status("Threads_connected") == 1, 10,
                        what="earlier connections to end")
        stats.query("FLUSH HOSTS")
        base = stats.status("Aborted_connects_preauth")
        for _ in range(3):
            dropped_handshake(SOURCE, s.host, s.port)
        util.wait_until(lambda: stats.status("Aborted_connects_preauth") >= base + 3, 5,
                        what="the server to count the dropped handshakes")
        with pytest.raises(pymysql.err.OperationalError) as info:
            connect_from(SOURCE, s.host, s.port, "app_rw", USERS["app_rw"])
        assert info.value.args[0] == 1129, info.value.args
        assert SOURCE in info.value.args[1]
        stats.query("FLUSH HOSTS")
        connect_from(SOURCE, s.host, s.port, "app_rw", USERS["app_rw"]).close()
    finally:
        stats.close()


# --- 2. fall and rise --------------------------------------------------------------------------

def test_a_killed_server_goes_down_after_fall_checks_and_up_after_rise(make_proxy, own):
    s1, s2 = own[0], own[1]
    # fall and rise of 4: long enough to tell from fewer checks.  A check
    # in flight when the state changes can be followed at once by the next
    # round's, so fall (rise) results span at least fall-2 (rise-2) intervals.
    interval, fall, rise = 0.25, 4, 4
    px = make_proxy("fallrise", health("250ms", fall, rise)
                    + app_rw_pool([s1, s2]))
    with LogWatcher(px) as log:
        wait_checked(log, [s1, s2])
        assert counts(spread(px, "app_rw", 4)) == {s1.port: 2, s2.port: 2}

        killed = time.monotonic()
        s2.kill()
        seen, line = log.wait_for(down_line(s2.address), 5)
        assert seen - killed >= (fall - 2) * interval - 0.02, (
            "DOWN %.2fs after the kill, before %d checks could fail" % (seen - killed, fall))
        assert "refused" in line.lower(), line
        # Clients keep succeeding, all on the live server, and none is
        # sent to the dead one any more.
        conns, ports = hold(px, "app_rw", 6)
        try:
            assert ports == [s1.port] * 6
        finally:
            release(px, conns)
        assert log.matching("backend %s failed" % s2.address, since=seen) == []

        not_yet = restart_watching_listen(s2)
        seen_up, _ = log.wait_for(up_line(s2.address), 5)
        assert seen_up - not_yet >= (rise - 2) * interval - 0.02, (
            "UP %.2fs after the server listened again, before %d checks could pass"
            % (seen_up - not_yet, rise))
        assert counts(spread(px, "app_rw", 4)) == {s1.port: 2, s2.port: 2}
        assert len(log.matching(down_line(s2.address))) == 1
        assert len(log.matching(up_line(s2.address))) == 1
        assert log.matching(down_line(s1.address)) == []
    assert px.alive()


# --- 3. a frozen server ------------------------------------------------------------------------

def test_a_frozen_server_is_marked_down_and_avoided(make_proxy, own):
    s1, s2 = own[0], own[1]
    interval, fall, connect_timeout = 0.2, 2, 2.0
    px = make_proxy("frozen", health("200ms", fall, 2, connect_timeout="2s")
                    + app_rw_pool([s1, s2]))
    with LogWatcher(px) as log:
        wait_checked(log, [s1, s2])
        frozen = time.monotonic()
        s2.freeze()
        seen, line = log.wait_for(down_line(s2.address),
                                  fall * (connect_timeout + interval) + 10)
        # A check of the frozen server waits connect_timeout for a greeting
        # and then fails; the second one starts after the freeze.
        assert seen - frozen >= connect_timeout - 0.02, (seen - frozen, line)
        assert "no answer within connect_timeout (2000ms)" in line, line
        # New clients go to s1 at once, without waiting on s2.
        for _ in range(5):
            t0 = time.monotonic()
            conn = login(px, "app_rw")
            try:
                assert port_of(conn) == s1.port
            finally:
                conn.close()
            assert time.monotonic() - t0 < connect_timeout * 0.75
        assert log.matching("backend %s failed" % s2.address, since=seen) == []

        s2.thaw()
        log.wait_for(up_line(s2.address), 2 * interval + connect_timeout + 10)
        assert counts(spread(px, "app_rw", 2)) == {s1.port: 1, s2.port: 1}
    assert px.alive()


# --- 4. fallback pools -------------------------------------------------------------------------

def test_replicas_fall_back_to_the_primary_then_fail_fast(make_proxy, own, cluster):
    s1, s2, s3 = own[0], own[1], own[2]
    connect_timeout = 4.0
    px = make_proxy("fallback", health("200ms", 1, 1, connect_timeout="4s")
                    + pool_settings("primary", [s1.address])
                    + pool_settings("replicas", [s2.address, s3.address])
                    + [("pool.replicas.fallback", "primary")]
                    + pool_settings("other", [cluster.primary.address])
                    + user_settings("app_rw", USERS["app_rw"], "primary")
                    + user_settings("app_ro", USERS["app_ro"], "replicas")
                    + user_settings("nopw", USERS["nopw"], "other"))
    with LogWatcher(px) as log:
        wait_checked(log, [s1, s2, s3])
        assert sorted(spread(px, "app_ro", 2)) == sorted([s2.port, s3.port])

        # One replica down: reads stay on the other replica.
        s2.kill()
        log.wait_for(down_line(s2.address), 5)
        assert spread(px, "app_ro", 3) == [s3.port] * 3

        # Both down: reads go to the primary.
        s3.kill()
        log.wait_for(down_line(s3.address), 5)
        conns, ports = hold(px, "app_ro", 3)
        addrs = [client_addr(c) for c in conns]
        assert ports == [s1.port] * 3
        release(px, conns)
        for rec in access_records(px):
            if rec["client"] in addrs:
                assert (rec["pool"], rec["server"]) == ("primary", s1.address), rec
        assert log.matching("pool 'replicas' has no usable server; using its fallback "
                            "'primary'")

        # Nothing up (the primary frozen, so that trying it would take
        # connect_timeout): ERR 1429 08S01 naming the pool, at once.
        s1.freeze()
        log.wait_for(down_line(s1.address), connect_timeout + 5)
        for user, pool in (("app_ro", "replicas"), ("app_rw", "primary")):
            t0 = time.monotonic()
            with p.RawClient(px.host, px.port, timeout=10) as c:
                with pytest.raises(p.ServerError) as info:
                    c.login(user, USERS[user])
                elapsed = time.monotonic() - t0
                assert (info.value.code, info.value.state) == (1429, "08S01"), info.value
                assert "'%s'" % pool in info.value.message, info.value.message
                assert c.closed_by_peer()
                addr = c.local_address
            assert elapsed < connect_timeout / 2, elapsed
            rec = wait_access_record(px, lambda r: r["client"] == addr)
            assert (rec["user"], rec["end"]) == (user, "pool-unreachable"), rec
        with pytest.raises(pymysql.err.OperationalError) as info:
            login(px, "app_ro")
        assert info.value.args[0] == 1429 and "'replicas'" in info.value.args[1]

        # The proxy keeps serving the other pool.
        conn = login(px, "nopw")
        try:
            assert port_of(conn) == cluster.primary.port
        finally:
            conn.close()
    assert px.alive()


# --- 5. weights --------------------------------------------------------------------------------

def test_weights_divide_connections(make_proxy, cluster):
    light, heavy = cluster.replicas[0], cluster.replicas[1]
    px = make_proxy("weights", [("pool.w.servers", "%s, %s weight=3" % (light.address,
                                                                          heavy.address))]
                    + user_settings("app_ro", USERS["app_ro"], "w"))
    conns, ports = hold(px, "app_ro", 40)
    try:
        assert counts(ports) == {light.port: 10, heavy.port: 30}
        # Least connections per weight, with ties rotating: after every
        # fourth connection both servers carry the same load per weight.
        for n in range(4, 41, 4):
            got = counts(ports[:n])
            assert (got.get(light.port, 0), got.get(heavy.port, 0)) == (n // 4, 3 * n // 4), (
                n, ports)
    finally:
        close_all(conns)


# --- 6. roles from @@read_only -----------------------------------------------------------------

def test_roles_follow_read_only_without_a_config_change(make_proxy, own):
    s1, s2, s3 = own[0], own[1], own[2]
    grants = s1.admin_query("SHOW GRANTS FOR %s@'%%'", (HEALTH_USER,))
    assert len(grants) == 1 and grants[0][0].startswith("GRANT USAGE ON *.*"), grants
    s2.set_read_only(True)
    s3.set_read_only(True)
    interval = 0.5
    everyone = [s1.address, s2.address, s3.address]
    px = make_proxy("roles", health("500ms", 2, 2)
                    + [("health.user", HEALTH_USER), ("health.password", HEALTH_PASSWORD)]
                    + pool_settings("writes", everyone) + [("pool.writes.role", "primary")]
                    + pool_settings("reads", everyone) + [("pool.reads.role", "replica")]
                    + user_settings("app_rw", USERS["app_rw"], "writes")
                    + user_settings("app_ro", USERS["app_ro"], "reads"))
    with LogWatcher(px) as log:
        wait_checked(log, [s1, s2, s3])
        assert spread(px, "app_rw", 4) == [s1.port] * 4
        assert counts(spread(px, "app_ro", 4)) == {s2.port: 2, s3.port: 2}

        # Promote s2: first writable, then s1 read-only (as a failover tool
        # does), and nothing else changes.
        s2.set_read_only(False)
        s1.set_read_only(True)
        flipped = time.monotonic()
        seen = []

        def writes_follow():
            batch = spread(px, "app_rw", 4)
            seen.extend(batch)
            return batch == [s2.port] * 4
        util.wait_until(writes_follow, 5, interval=0.01,
                        what=lambda: "app_rw to land on s2 only; ports seen %r" % seen)
        elapsed = time.monotonic() - flipped
        assert elapsed < interval + 1.0, (
            "writes followed the promotion after %.2fs (interval %.1fs)" % (elapsed, interval))
        assert s3.port not in seen, seen
        assert counts(spread(px, "app_ro", 4)) == {s1.port: 2, s3.port: 2}
        assert log.matching("is DOWN") == []
        assert log.matching("pool-unreachable") == []
    assert px.alive()


# --- 7. timeouts -------------------------------------------------------------------------------

def test_idle_and_handshake_timeouts(make_proxy, cluster):
    px = make_proxy("timeouts", main_settings(cluster, idle_timeout="1s",
                                              handshake_timeout="1s"))
    idle = login(px, "app_rw")
    busy = login(px, "app_rw")
    try:
        assert port_of(idle) == cluster.primary.port
        idle_addr, busy_addr = client_addr(idle), client_addr(busy)
        # A raw client that never answers the greeting.
        raw = socket.create_connection((px.host, px.port), timeout=10)
        t_raw = time.monotonic()
        _, greeting = p.read_packet(raw)
        assert greeting[0] == 0x0A
        raw_addr = "%s:%d" % raw.getsockname()[:2]

        # The busy client queries every 200 ms for 3 s while the idle one
        # waits; the raw socket is closed meanwhile.
        raw.setblocking(False)
        raw_closed = None
        t_end = time.monotonic() + 3.0
        while time.monotonic() < t_end:
            assert port_of(busy) == cluster.primary.port
            if raw_closed is None:
                try:
                    if raw.recv(1) == b"":
                        raw_closed = time.monotonic() - t_raw
                except BlockingIOError:
                    pass
                except ConnectionResetError:
                    raw_closed = time.monotonic() - t_raw
            time.sleep(max(0.0, min(0.2, t_end - time.monotonic())))
        raw.close()
        assert raw_closed is not None, "the silent client was not closed within 3s"
        assert 0.9 <= raw_closed <= 2.5, raw_closed

        rec = wait_access_record(px, lambda r: r["client"] == idle_addr, 2)
        assert rec["end"] == "timeout(idle_timeout)", rec
        assert 1.0 <= rec["duration"] <= 2.5, rec
        with pytest.raises(pymysql.err.OperationalError) as info:
            port_of(idle)
        assert info.value.args[0] in (2006, 2013), info.value.args

        rec = wait_access_record(px, lambda r: r["client"] == raw_addr, 2)
        assert (rec["user"], rec["end"]) == ("-", "timeout(handshake_timeout)"), rec
        assert 1.0 <= rec["duration"] <= 2.5, rec

        # The busy client was never closed.
        assert not [r for r in access_records(px) if r["client"] == busy_addr]
        assert port_of(busy) == cluster.primary.port
    finally:
        close_all([idle, busy])
    rec = wait_access_record(px, lambda r: r["client"] == busy_addr)
    assert rec["end"] in ("client-closed", "backend-closed") and rec["duration"] >= 3.0, rec


def test_a_client_that_quits_is_logged_as_client_closed(make_proxy, cluster):
    # A client ends its session with COM_QUIT; the server closes its side as
    # soon as it reads it, often before the client's own close arrives, but
    # it was the client that ended the session.
    px = make_proxy("quit", main_settings(cluster))
    addrs = []
    for _ in range(5):
        # PyMySQL: COM_QUIT, then close at once.
        conn = login(px, "app_rw")
        assert port_of(conn) == cluster.primary.port
        addrs.append(client_addr(conn))
        conn.close()
    for _ in range(3):
        # COM_QUIT, then close only once the proxy has closed.
        with p.RawClient(px.host, px.port) as c:
            c.login("app_rw", USERS["app_rw"])
            assert c.query("SELECT @@port") == ("rows", [[str(cluster.primary.port).encode()]])
            addrs.append(c.local_address)
            c.command(p.COM_QUIT)
            assert c.closed_by_peer()
    util.wait_until(lambda: set(addrs) <= {r["client"] for r in access_records(px)}, 5,
                    what="access lines for the 8 clients")
    ends = [r["end"] for r in access_records(px) if r["client"] in addrs]
    assert ends == ["client-closed"] * 8, ends


# --- 8. max_clients ----------------------------------------------------------------------------

def test_max_clients_refuses_the_next_client_with_1040(make_proxy, cluster):
    px = make_proxy("maxclients", main_settings(cluster, max_clients="3"))
    conns, _ = hold(px, "app_rw", 3)
    try:
        for _ in range(2):
            with socket.create_connection((px.host, px.port), timeout=5) as s:
                seq, payload = p.read_packet(s)
                err = p.parse_err(payload) if payload[:1] == b"\xff" else None
                assert err is not None, "first packet is not an ERR: %r" % payload[:20]
                assert (seq, err.code, err.state, err.message) == (
                    0, 1040, "08004", "Too many connections"), err
                s.settimeout(5)
                assert s.recv(1) == b""
        with pytest.raises(pymysql.err.OperationalError) as info:
            login(px, "app_rw")
        assert info.value.args[0] == 1040
        # The held ones still work.
        assert [port_of(c) for c in conns] == [cluster.primary.port] * 3
        px.wait_for_log_line(lambda l: "max_clients (3) reached" in l, 2)
        # One leaves: the next client gets in.
        release(px, conns[:1])
        conn = login(px, "app_rw")
        conns.append(conn)
        assert port_of(conn) == cluster.primary.port
    finally:
        close_all(conns)


# --- 9. running out of descriptors -------------------------------------------------------------

NOFILE = 40


def exhaust_descriptors(px, limit=NOFILE + 10):
    """Opens raw connections until the proxy logs a failed accept (at most
    `limit`; the ones it cannot accept wait in the listen backlog); returns
    them."""
    socks = []
    try:
        while len(socks) < limit and not any("accept failed" in l for l in px.log_lines()):
            socks.append(socket.create_connection((px.host, px.port), timeout=5))
        px.wait_for_log_line(lambda l: "accept failed" in l, 5, what="a failed accept")
        return socks
    except BaseException:
        close_all(socks)
        raise


def first_within(predicate, seconds):
    """predicate()'s first true value within `seconds`, or None."""
    try:
        return util.wait_until(predicate, seconds, interval=0.02)
    except util.Timeout:
        return None


@pytest.fixture
def limited_proxy(myroute_bin, workdir, request):
    started = []

    def make(name, settings):
        px = LimitedProxy(workdir, "%s-%s" % (request.node.name[:60], name), settings, NOFILE)
        started.append(px)
        return px.start()
    yield make
    for px in started:
        px.stop()


def test_out_of_descriptors_pauses_accepting_without_spinning(limited_proxy, cluster):
    px = limited_proxy("emfile", main_settings(cluster))
    assert nofile_limits(px.pid) == (NOFILE, NOFILE)
    px.wait_for_log_line(lambda l: "descriptor limit %d" % NOFILE in l, 5)
    held, _ = hold(px, "app_rw", 2)
    socks = []
    try:
        socks = exhaust_descriptors(px)
        line = px.wait_for_log_line(lambda l: "accept failed" in l, 1)
        assert "Too many open files" in line and "pausing accepts for 500ms" in line, line
        assert util.open_fds(px.pid) >= NOFILE - 1

        cpu0, run0, t0 = cpu_seconds(px.pid), runnable_seconds(px.pid), time.monotonic()
        warned0 = sum("accept failed" in l for l in px.log_lines())
        t_end = t0 + 3.0
        answers = 0
        while time.monotonic() < t_end:
            # Connections logged in before keep working.
            assert [port_of(c) for c in held] == [cluster.primary.port] * 2
            answers += 1
            time.sleep(max(0.0, min(0.25, t_end - time.monotonic())))
        wall = time.monotonic() - t0
        cpu = cpu_seconds(px.pid) - cpu0
        runnable = runnable_seconds(px.pid) - run0
        warned = sum("accept failed" in l for l in px.log_lines()) - warned0
        assert cpu < 0.5, "the proxy used %.2fs of CPU in %.1fs while out of descriptors" % (
            cpu, wall)
        # Running or waiting to run (a spinning loop: all the time, however
        # busy the machine) rather than asleep in poll().
        assert runnable < wall / 2, "the proxy was runnable %.2fs of %.1fs" % (runnable, wall)
        # One retry per 500 ms pause, not a loop.
        assert warned <= wall / 0.5 + 2, "%d failed-accept warnings in %.1fs" % (warned, wall)
        assert answers >= 8

        # Descriptors free again: a new client logs in promptly.
        close_all(socks)
        socks = []
        t0 = time.monotonic()
        conn = login(px, "app_rw")
        elapsed = time.monotonic() - t0
        try:
            assert port_of(conn) == cluster.primary.port
        finally:
            conn.close()
        assert elapsed < 2.0, "the first login after the shortage took %.2fs" % elapsed
        assert [port_of(c) for c in held] == [cluster.primary.port] * 2
        assert px.alive()
    finally:
        close_all(socks)
        close_all(held)


def test_out_of_descriptors_does_not_mark_servers_down(limited_proxy, cluster):
    # Checks every 100 ms with fall=2: a check that cannot even get a socket
    # is this host's shortage, not the server's failure.
    px = limited_proxy("emfile-checks", main_settings(cluster)
                       + [("health.interval", "100ms"), ("health.fall", "2"),
                          ("health.rise", "5")])
    held, _ = hold(px, "app_rw", 1)
    socks = []
    try:
        socks = exhaust_descriptors(px)
        # Ten check intervals while no descriptor is free.
        downs = first_within(lambda: [l for l in px.log_lines() if "is DOWN" in l], 1.0)
        close_all(socks)
        socks = []
        try:
            conn = login(px, "app_rw")
            try:
                answer, refused = port_of(conn), None
            finally:
                conn.close()
        except pymysql.err.OperationalError as e:
            answer, refused = None, e
        assert not downs and answer == cluster.primary.port, (
            "servers marked down for the proxy's own descriptor shortage: %s; the first "
            "login once descriptors were free again: %s" % (
                downs, "refused %r" % (refused.args,) if refused else "ok"))
    finally:
        close_all(socks)
        close_all(held)


# --- 10. passive checks --------------------------------------------------------------------------

def test_a_failed_real_login_marks_the_server_down_and_fails_over(make_proxy, own):
    s1, s2 = own[0], own[1]
    px = make_proxy("passive", health("60s", 1, 2, connect_timeout="2s")
                    + app_rw_pool([s1, s2]))
    with LogWatcher(px) as log:
        wait_checked(log, [s1, s2])
        started = time.monotonic()
        # The first client goes to s1 (an idle pool starts its rotation
        # there), which is dead by then, with no check due for a minute.
        s1.kill()
        t0 = time.monotonic()
        conn = login(px, "app_rw")
        elapsed = time.monotonic() - t0
        addr = client_addr(conn)
        try:
            assert port_of(conn) == s2.port
        finally:
            conn.close()
        assert elapsed < 2.0, elapsed
        assert time.monotonic() - started < 60
        rec = wait_access_record(px, lambda r: r["client"] == addr)
        assert rec["server"] == s2.address, rec
        lines = px.log_lines()
        failed = [i for i, l in enumerate(lines)
                  if "conn=%d backend %s failed" % (rec["conn"], s1.address) in l]
        down = [i for i, l in enumerate(lines) if down_line(s1.address) in l]
        assert len(failed) == 1 and len(down) == 1, "\n".join(lines[-20:])
        # Marked down by that failed login, in the same step.
        assert down[0] == failed[0] + 1, "\n".join(lines[failed[0]:down[0] + 1])
        assert "refused" in lines[down[0]].lower(), lines[down[0]]
        # Later clients are not sent to s1 again.
        assert spread(px, "app_rw", 3) == [s2.port] * 3
        assert len([l for l in px.log_lines() if "backend %s failed" % s1.address in l]) == 1
    assert px.alive()
