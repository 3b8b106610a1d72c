"""Timeouts, misbehaving clients, backends going away, concurrency."""

import os
import socket
import threading
import time

import pymysql
import pytest

from harness import protocol as p
from harness import util
from harness.accounts import DEAD_PASSWORD, DEAD_USER, USERS
from harness.clients import landing_port, mariadb_cli, pymysql_connect, scalar
from harness.proxy import main_settings, pool_settings, user_settings


def assert_serving(px, cluster):
    assert landing_port(px, "app_rw") == cluster.primary.port


class Blackhole:
    """A listener whose accept queue is full: further SYNs are dropped, so a
    connect() to it neither succeeds nor fails until the caller gives up."""

    def __init__(self):
        self.port = util.free_port()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(0)
        self.fill = []
        while True:
            s = socket.socket()
            s.settimeout(0.2)
            self.fill.append(s)
            try:
                s.connect(("127.0.0.1", self.port))
            except socket.timeout:
                break
            if len(self.fill) > 8:
                raise RuntimeError("could not fill the accept queue")

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def close(self):
        for s in self.fill:
            s.close()
        self.listener.close()


def test_backend_connect_timeout_does_not_block_others(make_proxy, cluster):
    hole = Blackhole()
    try:
        settings = ([("connect_timeout", "2s")]
                    + pool_settings("primary", [cluster.primary.address])
                    + pool_settings("slow", [hole.address])
                    + user_settings("app_rw", USERS["app_rw"], "primary")
                    + user_settings(DEAD_USER, DEAD_PASSWORD, "slow"))
        px = make_proxy("blackhole", settings)
        # Served once start-up is over (which may include probing the pools).
        assert_serving(px, cluster)
        outcome = {}

        def slow_login():
            t0 = time.monotonic()
            with p.RawClient(px.host, px.port, timeout=30) as c:
                try:
                    c.login(DEAD_USER, DEAD_PASSWORD)
                    outcome["result"] = "logged in"
                except p.ServerError as e:
                    outcome["result"] = (e.code, e.state, e.message)
                except (p.ConnectionClosed, OSError) as e:
                    outcome["result"] = repr(e)
            outcome["elapsed"] = time.monotonic() - t0

        t = threading.Thread(target=slow_login)
        t.start()
        try:
            # While that backend connect hangs, another client is served at once.
            time.sleep(0.3)
            t0 = time.monotonic()
            assert_serving(px, cluster)
            assert time.monotonic() - t0 < 1.5
        finally:
            t.join(timeout=30)
        code, state, message = outcome["result"]
        assert (code, state) == (1429, "08S01")
        assert "'slow'" in message
        assert 1.5 <= outcome["elapsed"] < 6, outcome
    finally:
        hole.close()


def test_handshake_timeout_closes_idle_clients(make_proxy, cluster):
    px = make_proxy("hs-timeout", main_settings(cluster, handshake_timeout="1s"))
    t0 = time.monotonic()
    with p.RawClient(px.host, px.port) as idle, p.RawClient(px.host, px.port) as partial:
        idle.read_greeting()
        partial.read_greeting()
        partial.sock.sendall(b"\x40\x00\x00\x01\x05\x00")  # a packet that never completes
        assert idle.closed_by_peer(timeout=5)
        assert partial.closed_by_peer(timeout=5)
    elapsed = time.monotonic() - t0
    assert 0.8 <= elapsed < 4, elapsed
    assert_serving(px, cluster)


def test_malformed_handshake_response_is_refused(proxy, cluster):
    for junk in (b"\x01\x02\x03", os.urandom(40), b"\x00" * 32 + b"app_rw"):
        with p.RawClient(proxy.host, proxy.port) as c:
            c.read_greeting()
            c.write(junk)
            try:
                payload = c.read()
            except (p.ConnectionClosed, ConnectionResetError):
                payload = None
            if payload is not None:
                assert payload[0] == 0xFF, payload
                assert c.closed_by_peer()
    assert proxy.alive()
    assert_serving(proxy, cluster)


def test_clients_leaving_mid_handshake(proxy, cluster):
    for i in range(20):
        with p.RawClient(proxy.host, proxy.port) as c:
            if i % 2:
                c.read_greeting()
                c.sock.sendall(b"\x20\x00\x00")  # part of a header, then gone
    assert proxy.alive()
    assert_serving(proxy, cluster)


def test_login_and_query_sent_together(proxy, cluster):
    # Some drivers pipeline the first command behind the HandshakeResponse.
    with p.RawClient(proxy.host, proxy.port) as c:
        g = c.read_greeting()
        login = p.handshake_response("app_rw", p.native_token(USERS["app_rw"], g["salt"]),
                                     p.BASIC_CLIENT_CAPS)
        c.sock.sendall(p.frame(1, login) + p.frame(0, b"\x03SELECT @@port"))
        ok = c.read()
        assert ok[0] == 0x00, ok
        assert c.read_result() == ("rows", [[str(cluster.primary.port).encode()]])


def test_pipelined_queries(proxy, cluster):
    with p.RawClient(proxy.host, proxy.port) as c:
        c.login("app_ro", USERS["app_ro"])
        c.sock.sendall(b"".join(p.frame(0, b"\x03SELECT %d" % i) for i in range(50)))
        for i in range(50):
            assert c.read_result() == ("rows", [[b"%d" % i]])


def kill_and_query(server, conn):
    conn_id = scalar(conn, "SELECT CONNECTION_ID()")
    server.admin_query("KILL CONNECTION %d" % conn_id)
    with pytest.raises(pymysql.err.OperationalError) as info:
        scalar(conn, "SELECT 1")
    return info.value.args[0]


def test_backend_session_killed(proxy, cluster):
    primary = cluster.primary
    direct = primary.connect("app_rw", read_timeout=10)
    try:
        direct_code = kill_and_query(primary, direct)
    finally:
        direct.close()
    proxied = pymysql_connect(proxy.host, proxy.port, "app_rw", USERS["app_rw"], read_timeout=10)
    client = "%s:%d" % proxied._sock.getsockname()[:2]
    try:
        t0 = time.monotonic()
        assert kill_and_query(primary, proxied) == direct_code
        assert time.monotonic() - t0 < 5
    finally:
        proxied.close()
    proxy.wait_for_log_line(lambda l: client in l, 5, what="the access line for %s" % client)
    assert_serving(proxy, cluster)


def test_many_concurrent_clients(proxy, cluster):
    cluster.wait_no_sessions("app_ro")
    n = 40
    conns = [None] * n
    errors = []
    barrier = threading.Barrier(n + 1, timeout=60)
    release = threading.Event()

    def worker(i):
        try:
            conn = pymysql_connect(proxy.host, proxy.port, "app_ro", USERS["app_ro"],
                                   database="app")
            conns[i] = conn
            for j in range(20):
                assert scalar(conn, "SELECT %d + COUNT(*) FROM items" % j) == j + 3
            port = scalar(conn, "SELECT @@port")
            assert port in {s.port for s in cluster.replicas}
        except BaseException as e:
            errors.append(e)
        finally:
            try:
                barrier.wait()
                release.wait(60)
            finally:
                if conns[i] is not None:
                    conns[i].close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    try:
        barrier.wait()
        assert not errors, errors[:3]
        assert [s.sessions("app_ro") for s in cluster.replicas] == [n // 2, n // 2]
    finally:
        release.set()
        for t in threads:
            t.join(timeout=60)
    cluster.wait_no_sessions("app_ro")


def test_cli_asking_for_compression_still_works(proxy, cluster):
    res = mariadb_cli(proxy.host, proxy.port, "app_ro", USERS["app_ro"],
                      "SELECT COUNT(*), SUM(qty) FROM items", database="app",
                      extra=["--compress"])
    assert res.returncode == 0, res.stderr
    assert res.stdout == "3\t15\n"


def test_no_descriptor_leak_after_many_connections(proxy, cluster):
    # Let earlier tests' connections finish, then take a baseline.
    for user in ("app_rw", "app_ro", "nopw"):
        cluster.wait_no_sessions(user)
    baseline = util.open_fds(proxy.pid)
    for i in range(40):
        kind = i % 5
        with p.RawClient(proxy.host, proxy.port) as c:
            if kind == 0:  # full session, COM_QUIT
                c.login("app_ro", USERS["app_ro"])
                c.query("SELECT 1")
                c.command(p.COM_QUIT)
            elif kind == 1:  # full session, abrupt close
                c.login("app_rw", USERS["app_rw"])
                c.query("SELECT 1")
            elif kind == 2:  # refused login
                with pytest.raises(p.ServerError):
                    c.login("app_rw", "wrong")
            elif kind == 3:  # backend refuses
                with pytest.raises(p.ServerError):
                    c.login("app_rw", USERS["app_rw"], database="app_missing")
            else:  # gone after the greeting
                c.read_greeting()
    for user in ("app_rw", "app_ro"):
        cluster.wait_no_sessions(user)
    util.wait_until(lambda: util.open_fds(proxy.pid) <= baseline, 10,
                    what=lambda: "descriptors back to %d (now %d)"
                    % (baseline, util.open_fds(proxy.pid)))
