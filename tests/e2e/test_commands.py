"""Commands the proxy must handle itself or pass through after login:
COM_CHANGE_USER is refused, COM_RESET_CONNECTION reaches the backend."""

import mysql.connector
import pytest

from harness import protocol as p
from harness.accounts import USERS
from harness.clients import connector_connect


def test_change_user_is_refused_with_1235_then_closed(proxy):
    with p.RawClient(proxy.host, proxy.port) as c:
        c.login("app_rw", USERS["app_rw"])
        assert c.query("SELECT 1") == ("rows", [[b"1"]])
        arg = (b"app_ro\0" + bytes([0]) + b"\0" + b"\x21\x00"
               + b"mysql_native_password\0")
        c.command(p.COM_CHANGE_USER, arg)
        err = c.read_err()
        assert (err.code, err.state) == (1235, "42000")
        assert c.closed_by_peer()


def test_connector_change_user_is_refused(proxy):
    conn = connector_connect(proxy.host, proxy.port, "app_rw", USERS["app_rw"])
    try:
        with pytest.raises(mysql.connector.Error) as info:
            conn.cmd_change_user(username="app_ro", password=USERS["app_ro"])
        assert info.value.errno == 1235
        assert info.value.sqlstate == "42000"
        with pytest.raises(mysql.connector.Error):
            cur = conn.cursor()
            cur.execute("SELECT 1")
            cur.fetchall()
    finally:
        try:
            conn.close()
        except mysql.connector.Error:
            pass


def test_reset_connection_passes_through(proxy, cluster):
    conn = connector_connect(proxy.host, proxy.port, "app_rw", USERS["app_rw"], database="app")
    try:
        cur = conn.cursor()
        cur.execute("SET @kept = 5")
        cur.execute("CREATE TEMPORARY TABLE reset_probe (a INT)")
        cur.execute("SELECT @kept, CONNECTION_ID()")
        (kept, conn_id), = cur.fetchall()
        assert kept == 5
        cur.close()
        conn.cmd_reset_connection()
        cur = conn.cursor()
        cur.execute("SELECT @kept, CONNECTION_ID(), @@port, DATABASE()")
        assert cur.fetchall() == [(None, conn_id, cluster.primary.port, "app")]
        with pytest.raises(mysql.connector.Error) as info:
            cur.execute("SELECT * FROM reset_probe")
        assert info.value.errno == 1146
        cur.execute("SELECT COUNT(*) FROM items")
        assert cur.fetchall() == [(3,)]
    finally:
        conn.close()


def test_raw_reset_connection(proxy, cluster):
    with p.RawClient(proxy.host, proxy.port) as c:
        c.login("app_ro", USERS["app_ro"])
        c.query("SET @v = 'before'")
        c.command(p.COM_RESET_CONNECTION)
        kind, _ = c.read_result()
        assert kind == "ok"
        assert c.query("SELECT @v") == ("rows", [[None]])
        kind, rows = c.query("SELECT @@port")
        assert int(rows[0][0]) in {s.port for s in cluster.replicas}
