"""Graceful shutdown on SIGTERM, SIGINT and the console's SHUTDOWN: the
listener closes at once, idle clients are closed at once, a command in
flight gets its reply, a transaction gets until shutdown_timeout, and the
process exits 0."""

import signal
import socket
import threading
import time

import pytest

from harness import util
from harness.avail_tools import access_records
from harness.clients import login, scalar
from harness.ops import GONE, client_addr, conn_error_code, peer_closed
from harness.proxy import main_settings


def settings(cluster, shutdown_timeout):
    return main_settings(cluster, **{"shutdown_timeout": shutdown_timeout,
                                     "health.interval": "500ms"})


def refused(px):
    """True when a new TCP connection to the client port is refused."""
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect((px.host, px.port))
    except ConnectionRefusedError:
        return True
    finally:
        s.close()
    return False


def wait_listener_closed(px, sent_at, within=1.0):
    util.wait_until(lambda: not util.is_listening(px.port), within,
                    what="the client listener to close after the signal")
    assert refused(px)
    return time.monotonic() - sent_at


def in_transaction(px):
    """An app_rw client inside a transaction (BEGIN, then a SELECT)."""
    txn = login(px, "app_rw")
    with txn.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SELECT 1")
    return txn


def sleeping(cluster, marker):
    rows = cluster.primary.admin_query(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE %s",
        ("SELECT SLEEP(3) AS %s%%" % marker,))
    return rows[0][0] == 1


def test_sigterm_lets_a_query_in_flight_finish(make_ops_proxy, cluster):
    px = make_ops_proxy("inflight", settings(cluster, "20s"), metrics=True)
    busy = login(px, "app_rw")
    idle = login(px, "app_ro")
    result = {}

    def run():
        try:
            with busy.cursor() as cur:
                cur.execute("SELECT SLEEP(3) AS inflight_marker, 'done'")
                result["rows"] = cur.fetchall()
        except Exception as e:
            result["error"] = repr(e)
        result["at"] = time.monotonic()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        util.wait_until(lambda: sleeping(cluster, "inflight_marker"), 5,
                        what="the SLEEP to run on the primary")
        assert util.wait_until(lambda: px.http("GET", "/ready")[0], 2) == 200
        t0 = time.monotonic()
        px.signal(signal.SIGTERM)
        wait_listener_closed(px, t0)
        # The idle client is closed at once, well before the query ends.
        assert peer_closed(idle._sock, 1.5), "idle client still open 1.5s after SIGTERM"
        # The console and /ready answer during the drain.
        status, _, body = px.http("GET", "/ready")
        assert status == 503 and body.startswith(b"not ready"), (status, body)
        assert px.metrics().get("myroute_clients_active") == 1
        rows = [r for r in px.clients() if r["client"] == client_addr(busy)]
        assert len(rows) == 1 and rows[0]["state"] == "RELAYING", px.clients()
        assert px.alive()

        status, elapsed = px.wait_exit(15)
        t.join(5)
    finally:
        t.join(5)
    assert result.get("rows") == ((0, "done"),), result
    assert status == 0, px.log_tail()
    # It exited once the reply was out, not at shutdown_timeout.
    assert result["at"] - t0 >= 2.0
    assert time.monotonic() - t0 < 8, "exit %.1fs after SIGTERM" % (time.monotonic() - t0)
    assert conn_error_code(lambda: scalar(busy, "SELECT 1")) in GONE


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_idle_clients_are_closed_at_once(make_ops_proxy, cluster, sig):
    px = make_ops_proxy("idle", settings(cluster, "10s"))
    conns = [login(px, "app_rw"), login(px, "app_ro"), login(px, "app_ro")]
    for c in conns:
        assert scalar(c, "SELECT 1") == 1
    addrs = {client_addr(c) for c in conns}
    t0 = time.monotonic()
    px.signal(sig)
    status, _ = px.wait_exit(9)
    elapsed = time.monotonic() - t0
    assert status == 0, px.log_tail()
    assert elapsed < 3, "exit took %.1fs with only idle clients (shutdown_timeout 10s)" % elapsed
    for c in conns:
        assert conn_error_code(lambda: scalar(c, "SELECT 1")) in GONE
    # Each got its access line, saying why it ended.
    recs = {r["client"]: r for r in access_records(px) if r["client"] in addrs}
    assert set(recs) == addrs, px.log_tail()
    assert all("shutdown" in r["end"] for r in recs.values()), recs


@pytest.mark.parametrize("how", ["BEGIN", "autocommit=0"])
def test_a_transaction_gets_until_shutdown_timeout(make_ops_proxy, cluster, how):
    px = make_ops_proxy("txn", settings(cluster, "3s"))
    # With autocommit off, a read of an InnoDB table opens a transaction
    # without any BEGIN: the server's status flags say so.
    txn = login(px, "app_rw", database="app", autocommit=(how == "BEGIN"))
    idle = login(px, "app_rw", autocommit=True)
    with txn.cursor() as cur:
        if how == "BEGIN":
            cur.execute("BEGIN")
        cur.execute("SELECT COUNT(*) FROM items FOR UPDATE")
    backend_id = scalar(txn, "SELECT CONNECTION_ID()")
    t0 = time.monotonic()
    px.signal(signal.SIGTERM)
    wait_listener_closed(px, t0)
    assert peer_closed(idle._sock, 1.5), "idle client still open 1.5s after SIGTERM"
    # Inside its transaction the client is left alone, and may go on.
    assert not peer_closed(txn._sock, 0.5)
    assert scalar(txn, "SELECT 2") == 2
    assert px.alive()
    status, _ = px.wait_exit(10)
    elapsed = time.monotonic() - t0
    assert status == 0, px.log_tail()
    assert 2.7 <= elapsed < 6, "exit %.1fs after SIGTERM, shutdown_timeout 3s" % elapsed
    assert conn_error_code(lambda: scalar(txn, "SELECT 1")) in GONE
    # Its backend session is gone (the transaction rolled back).
    util.wait_until(lambda: not cluster.primary.admin_query(
        "SELECT ID FROM information_schema.PROCESSLIST WHERE ID = %s", (backend_id,)), 5,
        what="backend session %d to end" % backend_id)


def test_a_transaction_that_commits_is_closed_then(make_ops_proxy, cluster):
    px = make_ops_proxy("commit", settings(cluster, "15s"))
    txn = in_transaction(px)
    px.signal(signal.SIGTERM)
    assert not peer_closed(txn._sock, 0.7)
    txn.commit()
    t0 = time.monotonic()
    status, _ = px.wait_exit(10)
    assert status == 0, px.log_tail()
    assert time.monotonic() - t0 < 3, "exit %.1fs after COMMIT" % (time.monotonic() - t0)


def test_a_second_sigterm_exits_at_once(make_ops_proxy, cluster):
    px = make_ops_proxy("twice", settings(cluster, "30s"))
    txn = in_transaction(px)
    px.signal(signal.SIGTERM)
    assert not peer_closed(txn._sock, 0.7)
    assert px.alive()
    t0 = time.monotonic()
    px.signal(signal.SIGTERM)
    status, _ = px.wait_exit(10)
    assert status == 0, px.log_tail()
    assert time.monotonic() - t0 < 2
    assert peer_closed(txn._sock, 1)


def test_shutdown_from_the_console(make_ops_proxy, cluster):
    px = make_ops_proxy("console", settings(cluster, "10s"))
    idle = login(px, "app_ro")
    res = px.cli("SHUTDOWN")
    t0 = time.monotonic()
    assert res.returncode == 0, res.stderr
    wait_listener_closed(px, t0)
    assert peer_closed(idle._sock, 1.5)
    status, _ = px.wait_exit(8)
    assert status == 0, px.log_tail()
    assert time.monotonic() - t0 < 3


def test_shutdown_from_a_console_session_that_stays(make_ops_proxy, cluster):
    px = make_ops_proxy("console-pymysql", settings(cluster, "10s"))
    txn = in_transaction(px)
    admin = px.admin()
    try:
        px.admin_ok("shutdown;", admin)
        t0 = time.monotonic()
        wait_listener_closed(px, t0)
        # The console stays reachable while the transaction holds the exit.
        assert px.alive()
        rows = px.clients(admin)
        assert [r["client"] for r in rows] == [client_addr(txn)], rows
        txn.rollback()
        status, _ = px.wait_exit(8)
    finally:
        admin.close()
    assert status == 0, px.log_tail()
    assert time.monotonic() - t0 < 5
