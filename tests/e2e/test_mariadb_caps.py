"""MariaDB's extended capabilities: when every server is MariaDB offering
them, myroute greets with CLIENT_MYSQL (bit 0) clear and PROGRESS,
STMT_BULK_OPERATIONS, EXTENDED_METADATA and CACHE_METADATA (0x1d on MariaDB
10.11), and sends the server exactly the client's choice.  Clients that
use them (mysql2's JSON values, MariaDB Connector/Python, COM_STMT_BULK_EXECUTE,
progress reports of the mariadb CLI) see what they see directly, and a
graceful shutdown waits for a command that sends progress reports.

The tests that run "direct" do the same against MariaDB itself."""

import signal
import struct
import subprocess
import time

import mariadb
import pytest
from mariadb_shared.constants import CAPABILITY

from harness import protocol as p
from harness import util
from harness.accounts import FAKE_PASSWORD, FAKE_USER, USERS
from harness.clients import login, node_client
from harness.fake_backend import FakeBackend
from harness.hostile_clients import Relay
from harness.ops import peer_closed
from harness.proxy import main_settings, pool_settings, user_settings

OFFERED = (p.MARIADB_CLIENT_PROGRESS | p.MARIADB_CLIENT_STMT_BULK_OPERATIONS
           | p.MARIADB_CLIENT_EXTENDED_METADATA | p.MARIADB_CLIENT_CACHE_METADATA)
assert OFFERED == 0x1D

JSON_DOCS = [(1, '{"a": 1, "b": [true, null]}'), (2, '{"name": "plum", "qty": 7}')]
PROGRESS_ROWS = 200000
ALTER = "ALTER TABLE app.progress_t FORCE, ALGORITHM=COPY"


@pytest.fixture(scope="module")
def tables(cluster):
    """app.jdocs (a JSON column), app.bulk_rows and app.cached on the primary."""
    for sql in [
        "CREATE OR REPLACE TABLE app.jdocs (id INT PRIMARY KEY, doc JSON NOT NULL)",
        "CREATE OR REPLACE TABLE app.bulk_rows (id INT PRIMARY KEY, name VARCHAR(32) NULL)",
        "CREATE OR REPLACE TABLE app.cached (id INT PRIMARY KEY, name VARCHAR(32) NOT NULL)",
        "INSERT INTO app.cached VALUES (1, 'one'), (2, 'two'), (3, 'three')",
    ]:
        cluster.primary.admin_query(sql)
    for i, doc in JSON_DOCS:
        cluster.primary.admin_query("INSERT INTO app.jdocs VALUES (%s, %s)", (i, doc))
    yield cluster
    cluster.primary.admin_query("DROP TABLE IF EXISTS app.jdocs, app.bulk_rows, app.cached")


@pytest.fixture(scope="module")
def progress_table(cluster):
    """app.progress_t, large enough that an ALTER TABLE ... ALGORITHM=COPY
    takes a second or two and reports progress."""
    cluster.primary.admin_query(
        "CREATE OR REPLACE TABLE app.progress_t (id INT PRIMARY KEY, pad CHAR(100) NOT NULL) "
        "ENGINE=InnoDB SELECT seq AS id, 'x' AS pad FROM app.seq_1_to_%d" % PROGRESS_ROWS)
    yield
    cluster.primary.admin_query("DROP TABLE IF EXISTS app.progress_t")


def target_of(name, proxy, cluster):
    return proxy if name == "myroute" else cluster.primary


def raw_login(target, ext, user="app_rw", caps=p.BASIC_CLIENT_CAPS, timeout=30):
    """A raw app_rw login asking for the MariaDB capabilities `ext` (None:
    a MySQL client's login, CLIENT_MYSQL set)."""
    c = p.RawClient(target.host, target.port, timeout=timeout)
    c.login(user, USERS[user], caps=caps, mariadb_caps=ext)
    return c


# --- the greeting -----------------------------------------------------------------------------

def test_greeting_offers_the_extended_capabilities(proxy, cluster):
    with p.RawClient(cluster.primary.host, cluster.primary.port) as c:
        backend = c.read_greeting()
    assert not backend["capabilities"] & p.CLIENT_LONG_PASSWORD
    assert backend["mariadb_capabilities"] & OFFERED == OFFERED, backend
    with p.RawClient(proxy.host, proxy.port) as c:
        g = c.read_greeting()
    assert not g["capabilities"] & p.CLIENT_LONG_PASSWORD, "CLIENT_MYSQL is set"
    assert g["mariadb_capabilities"] == OFFERED, hex(g["mariadb_capabilities"])


def test_no_extended_capabilities_when_a_server_lacks_them(make_ops_proxy, cluster):
    # A server that greets as MySQL does (CLIENT_MYSQL set, no extended
    # capabilities) in another pool: myroute greets before it knows the user.
    with FakeBackend("auth_switch", users={FAKE_USER: FAKE_PASSWORD}) as fake:
        px = make_ops_proxy("mixed-caps", main_settings(cluster, **{"health.interval": "200ms"})
                            + pool_settings("fake", [fake.address])
                            + user_settings(FAKE_USER, FAKE_PASSWORD, "fake"))
        util.wait_until(lambda: all(r["version"] for r in px.servers()), 10,
                        what=lambda: "every server checked: %r" % px.servers())
        with p.RawClient(px.host, px.port) as c:
            g = c.read_greeting()
        assert g["capabilities"] & p.CLIENT_LONG_PASSWORD, "CLIENT_MYSQL is clear"
        assert g["mariadb_capabilities"] == 0, hex(g["mariadb_capabilities"])
        # Both kinds of server still serve their users.
        conn = login(px, "app_rw")
        conn.close()


# --- the client's choice reaches the server ---------------------------------------------------

def column_ext(c, sql):
    """Runs `sql` (one column); returns the column definition's extended
    metadata (bytes) or None when it has none."""
    c.command(p.COM_QUERY, sql)
    assert p.Reader(c.read()).lenenc_int() == 1
    r = p.Reader(c.read())
    for _ in range(6):  # catalog, schema, table, org_table, name, org_name
        r.lenenc_str()
    ext = None
    if r.data[r.pos] != 0x0C:
        ext = r.lenenc_str()
    assert r.u8() == 0x0C
    skip_rows(c, expect_eof=True)
    return ext


def skip_rows(c, expect_eof):
    """Reads the EOF that ends column definitions (when `expect_eof`), then
    rows up to the EOF that ends them."""
    if expect_eof:
        assert c.read()[:1] == b"\xfe"
    while True:
        pkt = c.read()
        if pkt[:1] == b"\xfe" and len(pkt) < 9:
            return
        assert pkt[:1] != b"\xff", p.parse_err(pkt)


def execute_header(c, sql, param):
    """Prepares `sql` (one INT parameter), executes it once and returns the
    first packet of the execute's answer (its column count, followed by
    MariaDB's "metadata follows" flag under CACHE_METADATA)."""
    c.command(p.COM_STMT_PREPARE, sql)
    ok = c.read()
    assert ok[0] == 0, ok
    stmt_id, ncols, nparams = struct.unpack("<IHH", ok[1:9])
    for _ in range(nparams + ncols + (1 if nparams else 0) + (1 if ncols else 0)):
        c.read()  # definitions and their EOFs (no DEPRECATE_EOF)
    c.command(p.COM_STMT_EXECUTE, struct.pack("<IBI", stmt_id, 0, 1) + b"\x00" + b"\x01"
              + struct.pack("<BB", 3, 0) + struct.pack("<i", param))
    first = c.read()
    r = p.Reader(first)
    count = r.lenenc_int()
    metadata_follows = r.at_end() or r.u8() == 1
    if metadata_follows:
        for _ in range(count):
            c.read()
    # Without DEPRECATE_EOF an EOF ends the definitions even when they
    # were left out.
    skip_rows(c, expect_eof=True)
    c.command(p.COM_STMT_CLOSE, struct.pack("<I", stmt_id))
    return first


@pytest.mark.parametrize("target", ["direct", "myroute"])
@pytest.mark.parametrize("ext", [None, 0, p.MARIADB_CLIENT_EXTENDED_METADATA,
                                 p.MARIADB_CLIENT_CACHE_METADATA, OFFERED],
                         ids=["mysql-client", "none", "extended-metadata", "cache-metadata",
                              "all"])
def test_the_server_gets_the_clients_choice(proxy, cluster, target, ext):
    t = target_of(target, proxy, cluster)
    with raw_login(t, ext) as c:
        got = column_ext(c, "SELECT JSON_OBJECT('a', 1) AS j")
        if ext and ext & p.MARIADB_CLIENT_EXTENDED_METADATA:
            assert got == b"\x01\x04json", got
        else:
            assert got is None, got
        header = execute_header(c, "SELECT name FROM app.items WHERE id = ?", 2)
        if ext and ext & p.MARIADB_CLIENT_CACHE_METADATA:
            assert header == b"\x01\x00", header  # 1 column, metadata does not follow
        else:
            assert header == b"\x01", header
        assert c.query("SELECT 'still in step'") == ("rows", [[b"still in step"]])


# --- mysql2: JSON values ----------------------------------------------------------------------

@pytest.mark.parametrize("target", ["direct", "myroute"])
def test_mysql2_returns_json_as_objects(proxy, tables, target):
    t = target_of(target, proxy, tables)
    res = node_client(t.host, t.port, "app_rw", USERS["app_rw"], [
        {"query": "SELECT JSON_OBJECT('a', 1) AS j"},
        {"execute": "SELECT JSON_OBJECT('a', 1) AS j"},
        {"query": "SELECT id, doc FROM jdocs ORDER BY id"},
        {"execute": "SELECT doc FROM jdocs WHERE id = ?", "params": [2]},
    ], database="app")
    assert res["ok"], res
    assert res["results"][0]["rows"] == [[{"a": 1}]], res["results"][0]
    assert res["results"][1]["rows"] == [[{"a": 1}]], res["results"][1]
    assert res["results"][2]["rows"] == [[1, {"a": 1, "b": [True, None]}],
                                         [2, {"name": "plum", "qty": 7}]]
    assert res["results"][3]["rows"] == [[{"name": "plum", "qty": 7}]]


# --- MariaDB Connector/Python -----------------------------------------------------------------

def connector(target, **kw):
    return mariadb.connect(host=target.host, port=target.port, user="app_rw",
                           password=USERS["app_rw"], database="app", connect_timeout=10, **kw)


@pytest.mark.parametrize("target", ["direct", "myroute"])
def test_mariadb_connector_negotiates_them_and_sees_json(proxy, tables, target):
    t = target_of(target, proxy, tables)
    conn = connector(t)
    try:
        ctx = conn._client.context
        for cap in ("BULK_OPERATIONS", "EXTENDED_METADATA", "CACHE_METDATA"):
            bit = getattr(CAPABILITY, cap)
            assert ctx.has_capability(bit) and ctx.has_client_capability(bit), cap
        cur = conn.cursor()
        cur.execute("SELECT doc FROM jdocs WHERE id = 1")
        assert cur.fetchall() == [(JSON_DOCS[0][1],)]
        assert cur.description[0][1] == mariadb.constants.FIELD_TYPE.JSON
        cur.close()
    finally:
        conn.close()


@pytest.mark.parametrize("target", ["direct", "myroute"])
def test_mariadb_connector_executemany_stores_the_rows(proxy, tables, target):
    # Connector/Python 2.0 sends COM_STMT_BULK_EXECUTE only to servers with
    # BULK_UNIT_RESULTS (MariaDB 11.5+); with STMT_BULK_OPERATIONS it
    # pipelines the prepare and every execute without waiting.
    t = target_of(target, proxy, tables)
    tables.primary.admin_query("DELETE FROM app.bulk_rows")
    conn = connector(t)
    try:
        rows = [(i, "row %d" % i if i % 3 else None) for i in range(1, 41)]
        cur = conn.cursor()
        cur.executemany("INSERT INTO bulk_rows VALUES (?, ?)", rows[:20])
        assert cur.rowcount == 20
        cur.close()
        cur = conn.cursor(binary=True)
        cur.executemany("INSERT INTO bulk_rows VALUES (?, ?)", rows[20:])
        cur.close()
        conn.commit()
        cur = conn.cursor()
        cur.execute("SELECT id, name FROM bulk_rows ORDER BY id")
        assert cur.fetchall() == rows
        cur.close()
    finally:
        conn.close()
    assert tables.primary.admin_query("SELECT COUNT(*), COUNT(name) FROM app.bulk_rows") == (
        (40, 27),)


@pytest.mark.parametrize("target", ["direct", "myroute"])
def test_mariadb_connector_prepared_statements_with_cached_metadata(proxy, tables, target):
    t = target_of(target, proxy, tables)
    tables.primary.admin_query("ALTER TABLE app.cached WAIT 10 DROP COLUMN IF EXISTS extra")
    conn = connector(t, autocommit=True)
    try:
        cur = conn.cursor(binary=True)
        other = conn.cursor(binary=True)
        for lo in (1, 2, 3, 1, 2):
            cur.execute("SELECT id, name FROM cached WHERE id >= ? ORDER BY id", (lo,))
            assert cur.fetchall() == [(1, "one"), (2, "two"), (3, "three")][lo - 1:]
            other.execute("SELECT name, id * 10 FROM cached WHERE id = ?", (lo,))
            assert other.fetchall() == [(["one", "two", "three"][lo - 1], lo * 10)]
        # The table changes under the cached statement: new metadata comes.
        tables.primary.admin_query("ALTER TABLE app.cached WAIT 10 ADD COLUMN extra INT "
                                   "NOT NULL DEFAULT 5")
        for _ in range(2):
            cur.execute("SELECT * FROM cached WHERE id >= ? ORDER BY id", (3,))
            assert cur.fetchall() == [(3, "three", 5)]
            assert [d[0] for d in cur.description] == ["id", "name", "extra"]
        cur.close()
        other.close()
    finally:
        conn.close()
        tables.primary.admin_query("ALTER TABLE app.cached WAIT 10 DROP COLUMN IF EXISTS extra")


# --- COM_STMT_BULK_EXECUTE --------------------------------------------------------------------

MYSQL_TYPE_LONG = 3
MYSQL_TYPE_VAR_STRING = 253


def bulk_execute(c, stmt_id, rows):
    """COM_STMT_BULK_EXECUTE with the types sent (INT, VARCHAR); None is NULL."""
    out = struct.pack("<BIH", p.COM_STMT_BULK_EXECUTE, stmt_id, 128)  # SEND_TYPES_TO_SERVER
    out += struct.pack("<BBBB", MYSQL_TYPE_LONG, 0, MYSQL_TYPE_VAR_STRING, 0)
    for i, name in rows:
        out += b"\x00" + struct.pack("<i", i)
        out += b"\x01" if name is None else b"\x00" + p.lenenc_str(name)
    c.seq = 0
    c.write(out)


@pytest.mark.parametrize("target", ["direct", "myroute"])
def test_com_stmt_bulk_execute(proxy, tables, target):
    t = target_of(target, proxy, tables)
    tables.primary.admin_query("DELETE FROM app.bulk_rows")
    with p.RawClient(t.host, t.port) as c:
        g = c.read_greeting()
        assert g["mariadb_capabilities"] & p.MARIADB_CLIENT_STMT_BULK_OPERATIONS
        c.login("app_rw", USERS["app_rw"], database="app",
                mariadb_caps=p.MARIADB_CLIENT_STMT_BULK_OPERATIONS)
        c.command(p.COM_STMT_PREPARE, "INSERT INTO bulk_rows (id, name) VALUES (?, ?)")
        ok = c.read()
        assert ok[0] == 0, ok
        stmt_id, ncols, nparams = struct.unpack("<IHH", ok[1:9])
        assert (ncols, nparams) == (0, 2)
        for _ in range(3):  # two parameter definitions and their EOF
            c.read()
        rows = [(1, "alpha"), (2, None), (3, "gamma"), (4, "delta")]
        bulk_execute(c, stmt_id, rows)
        kind, ok = c.read_result()
        assert kind == "ok"
        assert p.Reader(ok, 1).lenenc_int() == 4  # affected rows
        c.command(p.COM_STMT_CLOSE, struct.pack("<I", stmt_id))
        assert c.query("SELECT id, name FROM bulk_rows ORDER BY id") == (
            "rows", [[b"1", b"alpha"], [b"2", None], [b"3", b"gamma"], [b"4", b"delta"]])


# --- progress reports -------------------------------------------------------------------------

def alter_with_progress(c):
    """Runs ALTER on RawClient `c`; returns (number of progress reports, the
    final OK payload)."""
    c.query("SET progress_report_time = 1")
    c.command(p.COM_QUERY, ALTER)
    reports = 0
    while True:
        pkt = c.read()
        if p.is_progress(pkt):
            reports += 1
            continue
        assert pkt[:1] == b"\x00", pkt[:80]
        return reports, pkt


@pytest.mark.parametrize("target", ["direct", "myroute"])
def test_progress_reports_reach_a_client_that_asked(proxy, cluster, progress_table, target):
    t = target_of(target, proxy, cluster)
    with raw_login(t, p.MARIADB_CLIENT_PROGRESS) as c:
        reports, ok = alter_with_progress(c)
        assert reports >= 1
        assert b"Records: %d" % PROGRESS_ROWS in ok, ok
        assert c.query("SELECT COUNT(*) FROM app.progress_t") == (
            "rows", [[str(PROGRESS_ROWS).encode()]])
    with raw_login(t, 0) as c:
        assert alter_with_progress(c)[0] == 0


@pytest.mark.parametrize("target", ["direct", "myroute"])
def test_mariadb_cli_progress_reports(proxy, cluster, progress_table, target):
    t = target_of(target, proxy, cluster)
    relay = Relay(t)
    try:
        res = subprocess.run(
            ["mariadb", "--no-defaults", "-h" + relay.host, "-P%d" % relay.port,
             "--protocol=TCP", "-uapp_rw", "-p" + USERS["app_rw"], "--batch", "--skip-ssl",
             "--skip-column-names", "--connect-timeout=10", "-e",
             "SET progress_report_time=1; %s; SELECT COUNT(*) FROM app.progress_t" % ALTER],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
        with relay.lock:
            packets = list(relay.packets)
    finally:
        relay.close()
    assert res.returncode == 0, res.stderr
    assert res.stdout == "%d\n" % PROGRESS_ROWS, res.stdout
    response = [pkt[4:] for side, pkt in packets if side == "c"][0]
    ext = struct.unpack("<I", response[28:32])[0]
    assert ext & p.MARIADB_CLIENT_PROGRESS, "the CLI asked for 0x%x" % ext
    assert any(p.is_progress(pkt[4:]) for side, pkt in packets if side == "s")


def test_shutdown_waits_for_a_command_sending_progress(make_ops_proxy, cluster, progress_table):
    px = make_ops_proxy("progress-shutdown", main_settings(cluster, shutdown_timeout="20s"))
    idle = login(px, "app_ro")
    with raw_login(px, p.MARIADB_CLIENT_PROGRESS) as c:
        c.query("SET progress_report_time = 1")
        c.command(p.COM_QUERY, ALTER)
        assert p.is_progress(c.read())
        t0 = time.monotonic()
        px.signal(signal.SIGTERM)
        util.wait_until(lambda: not util.is_listening(px.port), 2,
                        what="the client listener to close after SIGTERM")
        assert peer_closed(idle._sock, 1.5), "idle client still open 1.5s after SIGTERM"
        while True:
            pkt = c.read()
            if not p.is_progress(pkt):
                break
        assert pkt[:1] == b"\x00" and b"Records: %d" % PROGRESS_ROWS in pkt, pkt[:80]
        ok_at = time.monotonic()
        assert c.closed_by_peer(5)
        status, _ = px.wait_exit(10)
    assert status == 0, px.log_tail()
    assert time.monotonic() - ok_at < 5
    assert ok_at - t0 < 18, "the ALTER's OK came %.1fs after SIGTERM" % (ok_at - t0)
    idle.close()
