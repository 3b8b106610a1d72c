"""Big packets and big results: rows over 16 MiB in both directions, a
~100 MB result set, and a client that stops reading."""

import hashlib
import os
import time

import pymysql.cursors

from harness import protocol as p
from harness import util
from harness.accounts import USERS
from harness.clients import pymysql_connect, scalar

MIB = 1024 * 1024
BIG = 17 * MIB


def big_connect(host, port, user="app_rw"):
    return pymysql_connect(host, port, user, USERS[user], database="app",
                           max_allowed_packet=64 * MIB, read_timeout=120, write_timeout=120)


def test_row_larger_than_16_mib_is_relayed_intact(proxy):
    conn = big_connect(proxy.host, proxy.port)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT REPEAT('x', %d) AS big, MD5(REPEAT('x', %d)), 'tail'"
                        % (BIG, BIG))
            (big, md5, tail), = cur.fetchall()
            assert len(big) == BIG
            assert hashlib.md5(big.encode()).hexdigest() == md5
            assert tail == "tail"
            # The session is still in step after the split packets.
            cur.execute("SELECT 1")
            assert cur.fetchall() == ((1,),)
    finally:
        conn.close()


def test_blob_larger_than_16_mib_round_trip(proxy, cluster):
    data = os.urandom(BIG)
    digest = hashlib.sha256(data).hexdigest()
    tag = "big-%d" % time.monotonic_ns()
    conn = big_connect(proxy.host, proxy.port)
    try:
        with conn.cursor() as cur:
            # Client -> server packets over 16 MiB (the INSERT statement).
            cur.execute("INSERT INTO blobs (tag, data) VALUES (%s, %s)", (tag, data))
            conn.commit()
            cur.execute("SELECT LENGTH(data), SHA2(data, 256) FROM blobs WHERE tag = %s", (tag,))
            assert cur.fetchall() == ((BIG, digest),)
            # Server -> client.
            cur.execute("SELECT data FROM blobs WHERE tag = %s", (tag,))
            (back,), = cur.fetchall()
            assert len(back) == BIG
            assert hashlib.sha256(back).hexdigest() == digest
    finally:
        conn.close()
    # Stored on the primary, as seen without the proxy.
    rows = cluster.primary.admin_query(
        "SELECT SHA2(data, 256) FROM app.blobs WHERE tag = %s", (tag,))
    assert rows == ((digest,),)


BIG_RESULT_SQL = ("SELECT seq, REPEAT(CHAR(65 + seq % 26), 1000) "
                  "FROM seq_1_to_100000 ORDER BY seq")


def result_digest(conn, sql):
    h = hashlib.sha256()
    rows = 0
    size = 0
    with conn.cursor(pymysql.cursors.SSCursor) as cur:
        cur.execute(sql)
        for seq, text in cur.fetchall_unbuffered():
            if isinstance(text, str):
                text = text.encode()
            line = b"%d\t%s\n" % (seq, text)
            h.update(line)
            rows += 1
            size += len(line)
    return h.hexdigest(), rows, size


def test_hundred_megabyte_result_matches_direct_read(proxy, cluster):
    direct = big_connect(cluster.primary.host, cluster.primary.port)
    try:
        expected = result_digest(direct, BIG_RESULT_SQL)
    finally:
        direct.close()
    assert expected[1] == 100000 and expected[2] > 100 * 1000 * 1000
    conn = big_connect(proxy.host, proxy.port)
    try:
        assert result_digest(conn, BIG_RESULT_SQL) == expected
        assert scalar(conn, "SELECT @@port") == cluster.primary.port
    finally:
        conn.close()


def test_client_that_stops_reading_does_not_bloat_the_proxy(proxy, cluster, connect):
    marker = "stalled-%d" % time.monotonic_ns()
    # ~200 MB of result, never read.
    sql = ("SELECT seq, REPEAT('y', 1000), '%s' FROM app.seq_1_to_200000" % marker)
    primary = cluster.primary

    def running():
        rows = primary.admin_query(
            "SELECT COMMAND FROM information_schema.PROCESSLIST "
            "WHERE USER = 'app_rw' AND INFO LIKE %s", ("%" + marker + "%",))
        return [r[0] for r in rows]

    stalled = p.RawClient(proxy.host, proxy.port, rcvbuf=64 * 1024)
    try:
        stalled.login("app_rw", USERS["app_rw"])
        stalled.command(p.COM_QUERY, sql)
        util.wait_until(lambda: running() == ["Query"], 10, what="the big query to start")
        # Let every buffer on the way fill up, watching the proxy's memory.
        peak = 0
        end = time.monotonic() + 4
        while time.monotonic() < end:
            peak = max(peak, proxy.rss_kib())
            time.sleep(0.1)
        assert peak < 64 * 1024, "proxy RSS reached %d KiB" % peak
        # Meanwhile another client is served.
        t0 = time.monotonic()
        other = connect("app_ro")
        assert scalar(other, "SELECT COUNT(*) FROM app.items") == 3
        other2 = connect("app_rw")
        assert scalar(other2, "SELECT @@port") == primary.port
        assert time.monotonic() - t0 < 5
        # The backend is still stuck sending: the data is held back, not
        # swallowed by the proxy.
        assert running() == ["Query"]
        assert proxy.rss_kib() < 64 * 1024
    finally:
        stalled.close()
    # Closing the client releases the backend session.
    util.wait_until(lambda: running() == [], 15, what="the stalled backend query to end")
    assert proxy.alive()
