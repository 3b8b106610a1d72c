"""COM_CHANGE_USER: myroute checks the new user's token against its
configured hash on the scramble in force (the greeting's, or the last
AuthSwitchRequest's) and asks a client that names another plugin to
switch, on that scramble.  A wrong password or an unknown user gets ERR
1045 and the connection closes.  In the same pool, on a server still in
use, the backend session is changed (COM_CHANGE_USER on the client's
behalf, its OK or ERR relayed); for another pool, or when the server is
drained, the backend session ends and myroute logs in to a server of the
new pool.  Afterwards everything follows the new user: SHOW CLIENTS,
SHOW POOLS, CURRENT_USER(), the access log.

The tests that run "direct" do the same against MariaDB itself."""

from unittest import mock

import mysql.connector
import mysql.connector.pooling
import pytest

from harness import protocol as p
from harness import util
from harness.accounts import DRIVER_USERS, USERS
from harness.clients import close_all, connector_connect, node_client, rust_client
from harness.drivers import (driver_settings, finish_change_user, password_of,
                             send_change_user, session_info, wait_session_gone)
from harness.hostile_clients import SteadyClient
from harness.ops import OpsProxy

HOST = "127.0.0.1"


def denied(user):
    return "Access denied for user '%s'@'%s' (using password: YES)" % (user, HOST)


@pytest.fixture(scope="module")
def cpx(myroute_bin, driver_accounts, workdir):
    """A proxy with the console, the main pools and the extra accounts."""
    yield from util.running(OpsProxy(workdir, "change-user", driver_settings(driver_accounts)))


@pytest.fixture
def conns():
    held = []
    yield held
    close_all(held)


def target_of(name, cpx, cluster):
    return cpx if name == "myroute" else cluster.primary


def raw_login(target, user, database=None):
    c = p.RawClient(target.host, target.port, timeout=15)
    c.login(user, password_of(user), database=database)
    return c


def row_of(c, sql):
    kind, rows = c.query(sql)
    assert kind == "rows" and len(rows) == 1, (kind, rows)
    return [None if v is None else v.decode() for v in rows[0]]


def whoami(c):
    """[CURRENT_USER(), DATABASE(), CONNECTION_ID(), @@port] on a RawClient."""
    user, db, cid, port = row_of(c, "SELECT CURRENT_USER(), DATABASE(), CONNECTION_ID(), @@port")
    return [user, db, int(cid), int(port)]


def pool_clients(px):
    pools = px.pools()
    return {name: pools[name]["clients"] for name in ("primary", "replicas")}


# --- raw COM_CHANGE_USER --------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["direct", "myroute"])
def test_same_pool_changes_the_backend_session(cpx, cluster, target):
    t = target_of(target, cpx, cluster)
    with raw_login(t, "app_rw", database="app") as c:
        _, _, backend_id, port = whoami(c)
        send_change_user(c, "app_rw2", DRIVER_USERS["app_rw2"], database="app")
        reply = finish_change_user(c, DRIVER_USERS["app_rw2"], c.greeting["salt"])
        assert reply.kind == "ok", reply
        # The same backend session, now app_rw2's.
        assert whoami(c) == ["app_rw2@%", "app", backend_id, cluster.primary.port]
        assert session_info(cluster.primary, backend_id)[0] == "app_rw2"
        assert row_of(c, "SELECT COUNT(*) FROM items") == ["3"]
        if target == "myroute":
            row = cpx.client_row(c.local_address)
            assert row is not None
            assert (row["user"], row["pool"], row["server"]) == (
                "app_rw2", "primary", cluster.primary.address), row


@pytest.mark.parametrize("target", ["direct", "myroute"])
def test_a_client_naming_another_plugin_is_asked_to_switch_on_the_same_scramble(cpx, cluster,
                                                                                target):
    t = target_of(target, cpx, cluster)
    with raw_login(t, "app_rw") as c:
        send_change_user(c, "app_rw2", None, plugin="caching_sha2_password",
                         token=b"\x01" * 32)
        reply = finish_change_user(c, DRIVER_USERS["app_rw2"], c.greeting["salt"])
        assert reply.switch == (p.NATIVE, c.greeting["salt"]), reply
        assert reply.kind == "ok", reply
        assert whoami(c)[0] == "app_rw2@%"


@pytest.mark.parametrize("target", ["direct", "myroute"])
def test_after_a_login_switch_the_switch_scramble_is_in_force(cpx, cluster, target):
    t = target_of(target, cpx, cluster)
    with p.RawClient(t.host, t.port, timeout=15) as c:
        c.read_greeting()
        # Starting with caching_sha2_password earns an AuthSwitchRequest
        # with a scramble of its own.
        c.write(p.handshake_response("app_rw", b"", p.BASIC_CLIENT_CAPS,
                                     plugin="caching_sha2_password"))
        plugin, scramble = p.parse_auth_switch(c.read())
        assert plugin == p.NATIVE
        if target == "myroute":
            assert scramble != c.greeting["salt"]
        c.write(p.native_token(USERS["app_rw"], scramble))
        assert c.read()[:1] == b"\x00"
        send_change_user(c, "app_rw2", None, token=p.native_token(DRIVER_USERS["app_rw2"],
                                                                  scramble))
        reply = finish_change_user(c, DRIVER_USERS["app_rw2"], scramble)
        assert reply.kind == "ok", reply
        assert whoami(c)[0] == "app_rw2@%"


@pytest.mark.parametrize("target", ["direct", "myroute"])
@pytest.mark.parametrize("who", ["wrong-password", "unknown-user"])
def test_wrong_password_or_unknown_user_gets_1045(cpx, cluster, target, who):
    t = target_of(target, cpx, cluster)
    user, password = ("app_rw2", "not-the-password") if who == "wrong-password" else (
        "nobody_here", "whatever")
    with raw_login(t, "app_rw") as c:
        send_change_user(c, user, password)
        reply = finish_change_user(c, password, c.greeting["salt"])
        assert reply.kind == "err", reply
        assert (reply.err.code, reply.err.state, reply.err.message) == (
            1045, "28000", denied(user))
        if target == "myroute":
            # myroute closes the connection (MariaDB goes on as the old user).
            assert c.closed_by_peer(5)
            util.wait_until(lambda: cpx.client_row(c.local_address) is None, 5,
                            what="the client to leave SHOW CLIENTS")
    # Nothing else is disturbed.
    with raw_login(t, "app_rw") as other:
        assert whoami(other)[0] == "app_rw@%"


@pytest.mark.parametrize("target", ["direct", "myroute"])
def test_same_pool_relays_the_backends_err(cpx, cluster, target):
    # nopw (pool primary, no password) may not use the database `mysql`: the
    # backend says so, and its ERR reaches the client as it is.
    t = target_of(target, cpx, cluster)
    with raw_login(t, "app_rw") as c:
        send_change_user(c, "nopw", "", database="mysql")
        reply = finish_change_user(c, "", c.greeting["salt"])
        assert reply.kind == "err", reply
        assert (reply.err.code, reply.err.state, reply.err.message) == (
            1044, "42000", "Access denied for user 'nopw'@'%' to database 'mysql'")


def test_another_pool_logs_in_on_a_server_of_that_pool(make_ops_proxy, driver_accounts):
    cluster = driver_accounts
    # A proxy of its own: the pool counts are this client's alone.
    cpx = make_ops_proxy("other-pool", driver_settings(cluster))
    replica_ports = {s.port for s in cluster.replicas}
    with raw_login(cpx, "app_rw", database="app") as c:
        addr = c.local_address
        _, _, old_backend, port = whoami(c)
        assert port == cluster.primary.port
        before = pool_clients(cpx)
        send_change_user(c, "app_ro", USERS["app_ro"], database="app")
        reply = finish_change_user(c, USERS["app_ro"], c.greeting["salt"])
        assert reply.kind == "ok", reply
        user, db, backend_id, port = whoami(c)
        assert (user, db) == ("app_ro@%", "app") and port in replica_ports
        replica = cluster.by_port(port)
        assert session_info(replica, backend_id)[0] == "app_ro"
        # The primary's session has ended.
        wait_session_gone(cluster.primary, old_backend)
        row = cpx.client_row(addr)
        assert row is not None
        assert (row["user"], row["pool"], row["server"]) == (
            "app_ro", "replicas", replica.address), row
        assert before == {"primary": 1, "replicas": 0}, before
        assert pool_clients(cpx) == {"primary": 0, "replicas": 1}
        assert row_of(c, "SELECT COUNT(*) FROM items") == ["3"]
    # The access log follows the change: a line of this client names the
    # new user and pool.
    cpx.wait_for_log_line(lambda line: ("client=%s " % addr) in line and "user=app_ro " in line
                          and "pool=replicas " in line,
                          what="an access-log line of %s as app_ro in pool replicas" % addr)


@pytest.mark.parametrize("target", ["direct", "myroute"])
def test_another_pool_with_a_database_that_does_not_exist(cpx, cluster, target):
    t = target_of(target, cpx, cluster)
    with raw_login(t, "app_ro") as c:
        send_change_user(c, "app_rw", USERS["app_rw"], database="app_missing")
        reply = finish_change_user(c, USERS["app_rw"], c.greeting["salt"])
        assert reply.kind == "err", reply
        assert (reply.err.code, reply.err.state, reply.err.message) == (
            1049, "42000", "Unknown database 'app_missing'")
    with raw_login(t, "app_rw") as other:
        assert whoami(other)[0] == "app_rw@%"


def test_a_drained_server_is_left_for_another_of_the_pool(cpx, cluster):
    with raw_login(cpx, "app_ro") as c:
        _, _, old_backend, port = whoami(c)
        drained = cluster.by_port(port)
        other = [s for s in cluster.replicas if s is not drained][0]
        cpx.admin_ok("DRAIN SERVER '%s'" % drained.address)
        try:
            send_change_user(c, "app_ro2", DRIVER_USERS["app_ro2"])
            reply = finish_change_user(c, DRIVER_USERS["app_ro2"], c.greeting["salt"])
            assert reply.kind == "ok", reply
            user, _, backend_id, port = whoami(c)
            assert (user, port) == ("app_ro2@%", other.port)
            wait_session_gone(drained, old_backend)
            row = cpx.client_row(c.local_address)
            assert (row["user"], row["pool"], row["server"]) == (
                "app_ro2", "replicas", other.address), row
        finally:
            cpx.admin_ok("ENABLE SERVER '%s'" % drained.address)


# --- pipelined and mid-result COM_CHANGE_USER -----------------------------------------------------

def steady(px, cluster):
    s = SteadyClient(px.host, px.port, "app_rw", USERS["app_rw"], cluster.primary.port)
    s.start()
    return s


def closed_cleanly(c):
    """After an ERR or in place of an answer: the peer closes (no hang, no
    garbage)."""
    return c.closed_by_peer(5)


@pytest.mark.parametrize("target", ["direct", "myroute"])
def test_change_user_pipelined_behind_a_query(cpx, cluster, target):
    t = target_of(target, cpx, cluster)
    bystander = steady(cpx, cluster)
    try:
        with raw_login(t, "app_rw") as c:
            token = p.native_token(DRIVER_USERS["app_rw2"], c.greeting["salt"])
            c.sock.sendall(p.frame(0, bytes([p.COM_QUERY]) + b"SELECT 'first'")
                           + p.frame(0, bytes([p.COM_CHANGE_USER])
                                     + p.change_user_payload("app_rw2", token, "app")))
            outcome = answered_or_closed(c, lambda: (
                c.read_result() == ("rows", [[b"first"]])
                and changed(c, DRIVER_USERS["app_rw2"])))
            if target == "direct":
                assert outcome == "answered"
            if outcome == "answered":
                assert whoami(c)[:2] == ["app_rw2@%", "app"]
        bystander.check()
    finally:
        bystander.stop()


@pytest.mark.parametrize("target", ["direct", "myroute"])
def test_change_user_in_the_middle_of_a_result_set(cpx, cluster, target):
    t = target_of(target, cpx, cluster)
    rows_wanted = 4000
    bystander = steady(cpx, cluster)
    try:
        with raw_login(t, "app_rw") as c:
            c.query("SELECT 1")
            c.command(p.COM_QUERY, "SELECT seq, REPEAT('x', 200) FROM app.seq_1_to_%d"
                      % rows_wanted)
            assert p.Reader(c.read()).lenenc_int() == 2
            c.read(), c.read()
            assert c.read()[:1] == b"\xfe"  # end of the column definitions
            first = [p.Reader(c.read()).lenenc_str() for _ in range(5)]
            assert first == [b"1", b"2", b"3", b"4", b"5"]
            # The change arrives while the backend is still sending rows.
            send_change_user(c, "app_rw2", DRIVER_USERS["app_rw2"])

            def rest_then_change():
                n = 5
                while True:
                    pkt = c.read()
                    if pkt[:1] == b"\xfe" and len(pkt) < 9:
                        break
                    if pkt[:1] == b"\xff":
                        raise p.parse_err(pkt)
                    n += 1
                    assert p.Reader(pkt).lenenc_str() == str(n).encode(), (n, pkt[:20])
                assert n == rows_wanted, n
                return changed(c, DRIVER_USERS["app_rw2"])

            outcome = answered_or_closed(c, rest_then_change)
            if target == "direct":
                assert outcome == "answered"
            if outcome == "answered":
                assert whoami(c)[0] == "app_rw2@%"
        bystander.check()
    finally:
        bystander.stop()


def changed(c, password):
    """Reads the answer to a COM_CHANGE_USER: True for OK; an ERR is raised."""
    reply = finish_change_user(c, password, c.greeting["salt"])
    if reply.kind == "err":
        raise reply.err
    return True


def answered_or_closed(c, read_answers):
    """Runs read_answers() (which returns True when every answer was right);
    an ERR or a close on the way must end in a clean close.  Returns
    "answered" or "closed"."""
    try:
        assert read_answers() is True
        return "answered"
    except p.ServerError as e:
        assert closed_cleanly(c), "ERR %r, then the connection stayed open" % e
        return "closed"
    except (p.ConnectionClosed, ConnectionResetError):
        return "closed"


# --- client libraries --------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["direct", "myroute"])
def test_mysql2_change_user_same_pool_then_other_pool(cpx, cluster, target):
    t = target_of(target, cpx, cluster)
    res = node_client(t.host, t.port, "app_rw", USERS["app_rw"], [
        {"query": "SELECT CONNECTION_ID()"},
        {"changeUser": {"user": "app_rw2", "password": DRIVER_USERS["app_rw2"],
                        "database": "app"}},
        {"query": "SELECT CURRENT_USER(), DATABASE(), CONNECTION_ID(), @@port"},
        {"changeUser": {"user": "app_ro", "password": USERS["app_ro"], "database": "app"}},
        {"query": "SELECT CURRENT_USER(), DATABASE(), @@port"},
        {"execute": "SELECT name FROM items WHERE id = ?", "params": [2]},
    ], database="app")
    assert res["ok"], res
    backend_id = res["results"][0]["rows"][0][0]
    assert res["results"][1] == {"changed": True}
    # (@@port is a BIGINT, which the client gives as a string.)
    assert res["results"][2]["rows"] == [["app_rw2@%", "app", backend_id,
                                          str(cluster.primary.port)]]
    user, db, port = res["results"][4]["rows"][0]
    assert (user, db) == ("app_ro@%", "app")
    if target == "myroute":
        assert int(port) in {s.port for s in cluster.replicas}
    assert res["results"][5]["rows"] == [["pear"]]


@pytest.mark.parametrize("target", ["direct", "myroute"])
@pytest.mark.parametrize("case", ["wrong-password", "missing-database"])
def test_mysql2_change_user_errors(cpx, cluster, target, case):
    t = target_of(target, cpx, cluster)
    if case == "wrong-password":
        change = {"user": "app_ro", "password": "not-the-password"}
        want = (1045, "28000", denied("app_ro"))
    else:
        change = {"user": "app_rw2", "password": DRIVER_USERS["app_rw2"],
                  "database": "app_missing"}
        want = (1049, "42000", "Unknown database 'app_missing'")
    res = node_client(t.host, t.port, "app_rw", USERS["app_rw"], [
        {"query": "SELECT 1"},
        {"changeUser": change, "expectError": True},
    ])
    assert res["ok"], res
    err = res["results"][1].get("error")
    assert err is not None, res
    assert (err["errno"], err["sqlState"], err["message"]) == want, err


@pytest.mark.parametrize("target", ["direct", "myroute"])
def test_connector_cmd_change_user(cpx, cluster, target):
    t = target_of(target, cpx, cluster)
    conn = connector_connect(t.host, t.port, "app_rw", USERS["app_rw"], database="app")
    try:
        cur = conn.cursor()
        cur.execute("SELECT CONNECTION_ID()")
        (backend_id,), = cur.fetchall()
        cur.close()
        conn.cmd_change_user(username="app_rw2", password=DRIVER_USERS["app_rw2"],
                             database="app")
        cur = conn.cursor()
        cur.execute("SELECT CURRENT_USER(), DATABASE(), CONNECTION_ID()")
        assert cur.fetchall() == [("app_rw2@%", "app", backend_id)]
        cur.close()
        conn.cmd_change_user(username="app_ro", password=USERS["app_ro"], database="app")
        cur = conn.cursor()
        cur.execute("SELECT CURRENT_USER(), @@port")
        (user, port), = cur.fetchall()
        cur.close()
        assert user == "app_ro@%"
        if target == "myroute":
            assert port in {s.port for s in cluster.replicas}
        with pytest.raises(mysql.connector.Error) as info:
            conn.cmd_change_user(username="app_ro", password="not-the-password")
        assert (info.value.errno, info.value.sqlstate, info.value.msg) == (
            1045, "28000", denied("app_ro"))
    finally:
        try:
            conn.close()
        except mysql.connector.Error:
            pass


@pytest.mark.parametrize("target", ["direct", "myroute"])
def test_connector_pool_resets_returned_connections(cpx, cluster, target):
    # The installed mysql-connector-python resets a returned connection with
    # COM_RESET_CONNECTION (cmd_reset_connection), and falls back to
    # COM_CHANGE_USER (cmd_change_user) when that fails.
    t = target_of(target, cpx, cluster)
    pool = mysql.connector.pooling.MySQLConnectionPool(
        pool_name="drv_%s" % target, pool_size=1, host=t.host, port=t.port, user="app_rw",
        password=USERS["app_rw"], database="app", use_pure=True, ssl_disabled=True,
        connection_timeout=10)
    cls = type(pool._cnx_queue.queue[0])
    reset = mock.patch.object(cls, "cmd_reset_connection", autospec=True,
                              side_effect=cls.cmd_reset_connection)
    change = mock.patch.object(cls, "cmd_change_user", autospec=True,
                               side_effect=cls.cmd_change_user)
    with reset as resets, change as changes:
        backend_id = pooled_round(pool)
        assert pooled_round(pool) == backend_id
    assert resets.call_count == 2 and changes.call_count == 0, (resets.call_args_list,
                                                                changes.call_args_list)
    # The fallback, as for a server without COM_RESET_CONNECTION.
    no_reset = mock.patch.object(cls, "cmd_reset_connection", autospec=True,
                                 return_value=False)
    change = mock.patch.object(cls, "cmd_change_user", autospec=True,
                               side_effect=cls.cmd_change_user)
    with no_reset, change as changes:
        assert pooled_round(pool) == backend_id
        assert pooled_round(pool) == backend_id
    assert changes.call_count == 2, changes.call_args_list
    cnx = pool.get_connection()
    cnx._cnx.close()
    cnx._cnx = None


def pooled_round(pool):
    """Takes the pool's connection, leaves a user variable and a temporary
    table behind, returns it; the next round must see neither.  Returns the
    backend's CONNECTION_ID()."""
    cnx = pool.get_connection()
    try:
        cur = cnx.cursor()
        cur.execute("SELECT @left_behind, CURRENT_USER(), DATABASE(), CONNECTION_ID()")
        (left, user, db, backend_id), = cur.fetchall()
        assert (left, user, db) == (None, "app_rw@%", "app")
        cur.execute("SET @left_behind = 'yes'")
        cur.execute("CREATE TEMPORARY TABLE IF NOT EXISTS pool_probe (a INT)")
        cur.close()
    finally:
        cnx.close()
    return backend_id


@pytest.mark.parametrize("target", ["direct", "myroute"])
def test_rust_change_user(cpx, cluster, rust_client_bin, target):
    t = target_of(target, cpx, cluster)
    res = rust_client(t.host, t.port, "app_rw", USERS["app_rw"], database="app", ops=[
        "query=SELECT USER(), CONNECTION_ID()",
        "change_user=app_rw2", "pass=" + DRIVER_USERS["app_rw2"], "db=app",
        "query=SELECT CURRENT_USER(), DATABASE(), CONNECTION_ID()",
        "change_user=app_ro", "pass=" + USERS["app_ro"], "db=app",
        "query=SELECT CURRENT_USER(), @@port",
        "exec=SELECT qty FROM items WHERE id = ?", "int=3",
    ])
    assert res.returncode == 0, (res.stdout, res.stderr)
    (user, backend_id), = res.rows(0)
    assert user == "app_rw@127.0.0.1"  # over TCP, through the target
    assert ("changed", [""]) in res.ops[1]
    assert res.rows(2) == [("app_rw2@%", "app", backend_id)]
    (user, port), = res.rows(4)
    assert user == "app_ro@%"
    if target == "myroute":
        assert int(port) in {s.port for s in cluster.replicas}
    assert res.rows(5) == [("7",)]
