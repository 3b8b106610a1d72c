"""Commands the proxy passes through after login: COM_RESET_CONNECTION
reaches the backend.  (COM_CHANGE_USER, which the proxy handles itself, is
in test_change_user.py.)"""

import mysql.connector
import pytest

from harness import protocol as p
from harness.accounts import USERS
from harness.clients import connector_connect


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
