"""Connection ids and KILL: myroute greets each client with an id of its own
range (2^30 <= id < 2^31) that no server uses; a KILL or COM_PROCESS_KILL
naming such an id is applied by myroute to that client's backend session
(through the killer's session when both are on one server, else through a
short side connection logged in as the killer), with the backend's own
privilege rules; an id of that range naming no client gets ERR 1094; a
smaller id passes through to the killer's backend unchanged.

The tests that run "direct" do the same against MariaDB itself: what a
client sees through myroute must be what it sees there.  Direct sessions
held on every backend for the whole module must survive every test."""

import os
import signal
import struct
import subprocess
import time

import pymysql
import pytest

from harness import protocol as p
from harness import util
from harness.accounts import USERS
from harness.clients import close_all, node_client, scalar
from harness.drivers import (MYROUTE_ID_END, MYROUTE_ID_MIN, Running, connect_as,
                             driver_settings, in_myroute_range, session_ids,
                             session_info, wait_running, wait_session_gone)
from harness.ops import GONE, OpsProxy, cli_error, client_addr, conn_error_code

INTERRUPTED = (1317, "Query execution was interrupted")
LOST = (2013, "Lost connection to MySQL server during query")
# How soon after its KILL a killed SLEEP(30) must have ended.
PROMPTLY = 5.0


@pytest.fixture(scope="module")
def kpx(myroute_bin, driver_accounts, workdir):
    """A proxy with the console, the main pools and the extra accounts,
    carrying KILLs across servers (kill_across_servers = yes)."""
    settings = driver_settings(driver_accounts, kill_across_servers="yes")
    yield from util.running(OpsProxy(workdir, "kill", settings))


@pytest.fixture(scope="module")
def default_px(myroute_bin, driver_accounts, workdir):
    """The same proxy with kill_across_servers left at its default (no)."""
    yield from util.running(OpsProxy(workdir, "kill-default", driver_settings(driver_accounts)))


@pytest.fixture(scope="module")
def bystanders(driver_accounts):
    """Direct sessions on every backend, of every account the tests use,
    held for the whole module: [[server, user, conn, id]]."""
    held = []
    try:
        for server in driver_accounts.servers:
            for user in ("app_rw", "app_ro", "nopw", "app_rw2", "app_ro2", "app_ops"):
                for _ in range(2):
                    held.append(bystander(server, user))
        yield held
    finally:
        close_all([b[2] for b in held])


def bystander(server, user):
    c = connect_as(server, user, read_timeout=10)
    return [server, user, c, scalar(c, "SELECT CONNECTION_ID()")]


@pytest.fixture(autouse=True)
def bystanders_survive(bystanders):
    """After each test: every direct session still answers as itself.  The
    ones that do not are reported, and replaced for the next tests."""
    yield
    dead = []
    for i, (server, user, c, cid) in enumerate(bystanders):
        try:
            if scalar(c, "SELECT CONNECTION_ID()") == cid:
                continue
            dead.append((server.name, user, cid, "answers as another session"))
        except pymysql.err.MySQLError as e:
            dead.append((server.name, user, cid, e.args))
        close_all([c])
        bystanders[i] = bystander(server, user)
    assert not dead, "direct backend sessions were touched: %r" % dead


def not_owner(err, *ids):
    """True when `err` is the backend's ERR 1095 for one of `ids`."""
    return err is not None and err[0] == 1095 and err[1] in [
        "You are not owner of thread %d" % i for i in ids]


@pytest.fixture
def conns():
    held = []
    yield held
    close_all(held)


def target_of(name, kpx, cluster):
    return kpx if name == "myroute" else cluster.primary


def login(target, user, conns, **kw):
    c = connect_as(target, user, **kw)
    conns.append(c)
    return c


def own_id(conn, via_myroute):
    """The id a client was greeted with; through myroute it must lie in
    myroute's range."""
    cid = conn.thread_id()
    if via_myroute:
        assert in_myroute_range(cid), "greeting id %d is not in [2^30, 2^31)" % cid
    return cid


def kill_sql(killer, sql):
    """Runs a KILL statement; returns None on OK or (code, message)."""
    try:
        with killer.cursor() as cur:
            cur.execute(sql)
        return None
    except pymysql.err.MySQLError as e:
        return tuple(e.args[:2])


def kill_ends(run, kill, outcome):
    """Runs `kill` (a callable) and asserts the sleeping statement `run`
    ends with `outcome` promptly after it."""
    t0 = time.monotonic()
    kill()
    assert run.wait(PROMPTLY + 5) == ("error", outcome)
    assert run.ended_within(t0, PROMPTLY), run.elapsed


def killed_by_sql(run, killer, sql, outcome):
    """`sql` from `killer` answers OK and ends `run` with `outcome`."""
    def kill():
        assert kill_sql(killer, sql) is None
    kill_ends(run, kill, outcome)


def unused_ids(px, *conns):
    """The lowest and the highest id of myroute's range that no client of
    `px` has (neither in SHOW CLIENTS nor as the greeting id of `conns`)."""
    live = {int(r["id"]) for r in px.clients()} | {c.thread_id() for c in conns}
    low = next(i for i in range(MYROUTE_ID_MIN, MYROUTE_ID_END) if i not in live)
    high = next(i for i in range(MYROUTE_ID_END - 1, MYROUTE_ID_MIN, -1) if i not in live)
    return low, high


def sleeping(victim, server, marker):
    """Starts `SELECT SLEEP(30) AS marker` on victim (whose backend is
    `server`) and waits until the backend runs it; returns (Running,
    backend id)."""
    backend_id = scalar(victim, "SELECT CONNECTION_ID()")
    run = Running(victim, "SELECT SLEEP(30) AS %s" % marker).start()
    wait_running(server, backend_id, marker)
    return run, backend_id


# --- ids ----------------------------------------------------------------------------------------

def test_greetings_carry_ids_of_myroute_range(kpx, conns):
    ids = []
    for _ in range(6):
        with p.RawClient(kpx.host, kpx.port) as c:
            ids.append(c.read_greeting()["connection_id"])
    c = login(kpx, "app_rw", conns)
    ids.append(c.thread_id())
    assert all(in_myroute_range(i) for i in ids), ids
    assert len(set(ids)) == len(ids), ids


def test_connection_id_is_the_backends_and_show_clients_has_it(kpx, cluster, conns):
    c = login(kpx, "app_rw", conns)
    own = own_id(c, True)
    backend_id = scalar(c, "SELECT CONNECTION_ID()")
    assert backend_id < MYROUTE_ID_MIN
    assert session_info(cluster.primary, backend_id)[0] == "app_rw"
    admin = kpx.admin()
    try:
        with admin.cursor() as cur:
            cur.execute("SHOW CLIENTS")
            names = [d[0] for d in cur.description]
        assert names[:3] == ["id", "backend_id", "user"], names
        row = kpx.client_row(client_addr(c), admin)
    finally:
        admin.close()
    assert row is not None
    assert int(row["backend_id"]) == backend_id, row
    assert int(row["id"]) != backend_id and own != backend_id


def test_show_clients_id_is_the_greeting_id(kpx, conns):
    c = login(kpx, "app_ro", conns)
    row = kpx.client_row(client_addr(c))
    assert row is not None and int(row["id"]) == own_id(c, True), row


# --- KILL QUERY and KILL on one server ---------------------------------------------------------

@pytest.mark.parametrize("target", ["direct", "myroute"])
def test_kill_query_interrupts_the_statement_and_keeps_the_connection(kpx, cluster, conns,
                                                                      target):
    t = target_of(target, kpx, cluster)
    victim = login(t, "app_rw", conns)
    killer = login(t, "app_rw", conns)
    vid = own_id(victim, target == "myroute")
    run, backend_id = sleeping(victim, cluster.primary, "kq_marker")
    killed_by_sql(run, killer, "KILL QUERY %d" % vid, INTERRUPTED)
    # The same session goes on, as do the killer's.
    assert scalar(victim, "SELECT CONNECTION_ID()") == backend_id
    assert scalar(victim, "SELECT 'after'") == "after"
    assert scalar(killer, "SELECT 1") == 1


@pytest.mark.parametrize("form", ["kill query %d", "KILL  QUERY\t%d ;", "Kill Soft Query %d;",
                                  "KILL HARD QUERY %d", "  kill hard query %d  "])
def test_kill_query_forms(kpx, cluster, conns, form):
    victim = login(kpx, "app_rw", conns)
    killer = login(kpx, "app_rw2", conns)
    killer2 = login(kpx, "app_ops", conns)
    vid = own_id(victim, True)
    run, backend_id = sleeping(victim, cluster.primary, "kqf_marker")
    # app_rw2 may not kill app_rw's statement; app_ops may.
    err = kill_sql(killer, form % vid)
    assert not_owner(err, backend_id, vid), err
    assert session_info(cluster.primary, backend_id)[1].startswith("SELECT SLEEP(30)")
    killed_by_sql(run, killer2, form % vid, INTERRUPTED)
    assert scalar(victim, "SELECT CONNECTION_ID()") == backend_id


@pytest.mark.parametrize("target", ["direct", "myroute"])
def test_kill_closes_the_connection(kpx, cluster, conns, target):
    t = target_of(target, kpx, cluster)
    victim = login(t, "app_rw", conns)
    killer = login(t, "app_rw", conns)
    vid = own_id(victim, target == "myroute")
    run, backend_id = sleeping(victim, cluster.primary, "kc_marker")
    killed_by_sql(run, killer, "KILL %d" % vid, LOST)
    assert conn_error_code(lambda: scalar(victim, "SELECT 1")) in GONE + (0,)
    wait_session_gone(cluster.primary, backend_id)
    assert scalar(killer, "SELECT 1") == 1


@pytest.mark.parametrize("form", ["KILL %d", "kill connection %d;", "KILL HARD CONNECTION %d",
                                  "kill soft %d ;", "Kill  Connection  %d"])
def test_kill_connection_forms_end_an_idle_client(kpx, cluster, conns, form):
    victim = login(kpx, "app_ro", conns)
    killer = login(kpx, "app_ro", conns)
    vid = own_id(victim, True)
    addr = client_addr(victim)
    backend_id = scalar(victim, "SELECT CONNECTION_ID()")
    server = cluster.by_port(scalar(victim, "SELECT @@port"))
    assert kill_sql(killer, form % vid) is None
    wait_session_gone(server, backend_id)
    assert conn_error_code(lambda: scalar(victim, "SELECT 1")) in GONE
    util.wait_until(lambda: kpx.client_row(addr) is None, 5,
                    what="the killed client to leave SHOW CLIENTS")
    assert scalar(killer, "SELECT 2") == 2


@pytest.mark.parametrize("target", ["direct", "myroute"])
def test_pymysql_kill_method_ends_a_running_sleep(kpx, cluster, conns, target):
    # PyMySQL's Connection.kill() sends the text `KILL n` (PyMySQL >= 1.1.2).
    t = target_of(target, kpx, cluster)
    victim = login(t, "app_rw", conns)
    killer = login(t, "app_rw", conns)
    vid = own_id(victim, target == "myroute")
    run, backend_id = sleeping(victim, cluster.primary, "pk_marker")
    kill_ends(run, lambda: killer.kill(vid), LOST)
    wait_session_gone(cluster.primary, backend_id)
    assert scalar(killer, "SELECT 1") == 1


@pytest.mark.parametrize("target", ["direct", "myroute"])
def test_com_process_kill(kpx, cluster, target):
    t = target_of(target, kpx, cluster)
    with p.RawClient(t.host, t.port) as victim, p.RawClient(t.host, t.port) as killer:
        victim.login("app_rw", USERS["app_rw"])
        killer.login("app_rw", USERS["app_rw"])
        vid = victim.greeting["connection_id"]
        if target == "myroute":
            assert in_myroute_range(vid), vid
        _, rows = victim.query("SELECT CONNECTION_ID()")
        backend_id = int(rows[0][0])
        killer.command(p.COM_PROCESS_KILL, struct.pack("<I", vid))
        assert killer.read_result()[0] == "ok"
        assert victim.closed_by_peer(PROMPTLY)
        wait_session_gone(cluster.primary, backend_id)
        # An id of myroute's range that names no client.
        unused = MYROUTE_ID_END - 1
        if target == "myroute":
            unused = unused_ids(kpx)[1]
            assert unused != killer.greeting["connection_id"]
        killer.command(p.COM_PROCESS_KILL, struct.pack("<I", unused))
        with pytest.raises(p.ServerError) as info:
            killer.read_result()
        assert (info.value.code, info.value.state, info.value.message) == (
            1094, "HY000", "Unknown thread id: %d" % unused)
        assert killer.query("SELECT 1") == ("rows", [[b"1"]])


# --- ids that name no client, ids below the range ---------------------------------------------

def test_an_id_of_the_range_naming_no_client_gets_1094(kpx, cluster, conns):
    killer = login(kpx, "app_rw", conns)
    gone = login(kpx, "app_rw", conns)
    gone_id = own_id(gone, True)
    gone_addr = client_addr(gone)
    gone.close()
    util.wait_until(lambda: kpx.client_row(gone_addr) is None, 5,
                    what="the closed client to leave SHOW CLIENTS")
    low, high = unused_ids(kpx, killer)
    for sql, cid in [("KILL %d", gone_id), ("KILL QUERY %d", gone_id),
                     ("KILL %d", low), ("kill connection %d;", high)]:
        assert kill_sql(killer, sql % cid) == (1094, "Unknown thread id: %d" % cid), sql
    assert scalar(killer, "SELECT 'still here'") == "still here"


def test_ids_below_the_range_pass_through_to_the_backend(kpx, cluster, conns):
    killer = login(kpx, "app_rw", conns)
    assert scalar(killer, "SELECT @@port") == cluster.primary.port
    # A direct session of the same user on the killer's backend: its own id
    # reaches the backend unchanged.
    direct = login(cluster.primary, "app_rw", conns)
    direct_id = scalar(direct, "SELECT CONNECTION_ID()")
    run, _ = sleeping(direct, cluster.primary, "pt_marker")
    assert kill_sql(killer, "KILL QUERY %d" % direct_id) is None
    assert run.wait(PROMPTLY + 5) == ("error", INTERRUPTED)
    assert kill_sql(killer, "KILL %d" % direct_id) is None
    wait_session_gone(cluster.primary, direct_id)
    assert conn_error_code(lambda: scalar(direct, "SELECT 1")) in GONE
    # Another myroute client's backend id works the same way.
    victim = login(kpx, "app_rw", conns)
    run, backend_id = sleeping(victim, cluster.primary, "pt2_marker")
    assert kill_sql(killer, "KILL QUERY %d" % backend_id) is None
    assert run.wait(PROMPTLY + 5) == ("error", INTERRUPTED)
    # An unused backend id: the backend's own answer.
    assert kill_sql(killer, "KILL %d" % (MYROUTE_ID_MIN - 1)) == (
        1094, "Unknown thread id: %d" % (MYROUTE_ID_MIN - 1))
    assert scalar(victim, "SELECT 1") == 1 and scalar(killer, "SELECT 1") == 1


# --- across servers and users ------------------------------------------------------------------

def one_on_each_replica(kpx, cluster, user, conns):
    """Two connections of `user` (pool replicas) through kpx, one on each
    replica: {port: conn}.  Least-connections spreads consecutive logins."""
    by_port = {}
    for _ in range(4):
        c = connect_as(kpx, user)
        port = scalar(c, "SELECT @@port")
        if port in by_port:
            c.close()
            continue
        conns.append(c)
        by_port[port] = c
        if len(by_port) == 2:
            break
    assert set(by_port) == {s.port for s in cluster.replicas}, by_port
    return by_port


def test_kill_across_servers_of_a_pool(kpx, cluster, conns, bystanders):
    r1, r2 = cluster.replicas
    pair = one_on_each_replica(kpx, cluster, "app_ro", conns)
    killer, victim = pair[r1.port], pair[r2.port]
    rows = {r["client"]: r for r in kpx.clients()}
    assert rows[client_addr(killer)]["server"] == r1.address
    assert rows[client_addr(victim)]["server"] == r2.address
    vid = own_id(victim, True)
    run, backend_id = sleeping(victim, r2, "xs_marker")
    killed_by_sql(run, killer, "KILL QUERY %d" % vid, INTERRUPTED)
    assert scalar(victim, "SELECT CONNECTION_ID()") == backend_id
    assert scalar(killer, "SELECT @@port") == r1.port
    # The side connection is short: only the victim's session is left on r2.
    held = {cid for s, _, _, cid in bystanders if s is r2}
    util.wait_until(lambda: session_ids(r2, "app_ro") - held == {backend_id}, 5,
                    what=lambda: "only the victim's app_ro session on %s: %r"
                    % (r2.name, session_ids(r2, "app_ro") - held))
    # KILL ends it.
    assert kill_sql(killer, "KILL %d" % vid) is None
    wait_session_gone(r2, backend_id)
    assert conn_error_code(lambda: scalar(victim, "SELECT 1")) in GONE
    util.wait_until(lambda: session_ids(r2, "app_ro") - held == set(), 5,
                    what=lambda: "no app_ro session of myroute's on %s: %r"
                    % (r2.name, session_ids(r2, "app_ro") - held))
    assert scalar(killer, "SELECT 1") == 1


def test_by_default_a_kill_across_servers_is_refused_and_touches_nothing(default_px, cluster,
                                                                        conns):
    r1, r2 = cluster.replicas
    pair = one_on_each_replica(default_px, cluster, "app_ro", conns)
    killer, victim = pair[r1.port], pair[r2.port]
    vid = own_id(victim, True)
    run, backend_id = sleeping(victim, r2, "df_marker")
    for sql in ("KILL QUERY %d", "KILL %d"):
        err = kill_sql(killer, sql % vid)
        assert err is not None and err[0] == 1235, err
        assert r2.address in err[1] and "kill_across_servers" in err[1], err
    assert session_info(r2, backend_id)[1].startswith("SELECT SLEEP(30)")
    assert scalar(killer, "SELECT 1") == 1
    # On the killer's own server it still works.
    mates = [login(default_px, "app_ro", conns) for _ in range(3)]
    mate = next(m for m in mates if scalar(m, "SELECT @@port") == r2.port)
    killed_by_sql(run, mate, "KILL QUERY %d" % vid, INTERRUPTED)


@pytest.mark.parametrize("target", ["direct", "myroute"])
def test_another_users_session_needs_the_privilege(kpx, cluster, conns, target):
    t = target_of(target, kpx, cluster)
    victim = login(t, "app_rw", conns)
    killer = login(t, "nopw", conns)
    vid = own_id(victim, target == "myroute")
    backend_id = scalar(victim, "SELECT CONNECTION_ID()")
    for sql in ("KILL QUERY %d", "KILL %d", "KILL CONNECTION %d"):
        err = kill_sql(killer, sql % vid)
        assert not_owner(err, backend_id, vid), (sql, err)
    assert scalar(victim, "SELECT CONNECTION_ID()") == backend_id
    assert scalar(killer, "SELECT 1") == 1


def test_another_users_session_on_another_server(kpx, cluster, conns):
    # app_ro (on a replica) may not kill app_rw's session on the primary:
    # the side connection logs in as app_ro and the primary says no.
    victim = login(kpx, "app_rw", conns)
    killer = login(kpx, "app_ro", conns)
    assert scalar(killer, "SELECT @@port") != cluster.primary.port
    vid = own_id(victim, True)
    run, backend_id = sleeping(victim, cluster.primary, "ou_marker")
    for sql in ("KILL QUERY %d", "KILL %d"):
        err = kill_sql(killer, sql % vid)
        assert not_owner(err, backend_id, vid), (sql, err)
    assert session_info(cluster.primary, backend_id)[1].startswith("SELECT SLEEP(30)")
    # app_ops (on the primary) may kill app_ro's session on a replica.
    ops = login(kpx, "app_ops", conns)
    assert scalar(ops, "SELECT @@port") == cluster.primary.port
    ro_backend = scalar(killer, "SELECT CONNECTION_ID()")
    ro_server = cluster.by_port(scalar(killer, "SELECT @@port"))
    assert kill_sql(ops, "KILL %d" % own_id(killer, True)) is None
    wait_session_gone(ro_server, ro_backend)
    assert conn_error_code(lambda: scalar(killer, "SELECT 1")) in GONE
    # ... and the statement of app_rw's session on its own server.
    killed_by_sql(run, ops, "KILL QUERY %d" % vid, INTERRUPTED)
    assert scalar(victim, "SELECT CONNECTION_ID()") == backend_id


# --- other clients' kill paths -----------------------------------------------------------------

@pytest.mark.parametrize("target", ["direct", "myroute"])
def test_mysql2_kill_query_from_a_second_connection(kpx, cluster, target):
    t = target_of(target, kpx, cluster)
    marker = "node_kq_%s" % target
    res = node_client(t.host, t.port, "app_rw", USERS["app_rw"], [
        {"conn": "a", "threadId": True},
        {"conn": "a", "query": "SELECT CONNECTION_ID()"},
        {"conn": "a", "query": "SELECT SLEEP(30) AS %s" % marker, "start": "sleep",
         "expectError": True},
        {"conn": "b", "pollUntil": "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                                   "WHERE INFO LIKE 'SELECT SLEEP(30) AS %s'" % marker},
        {"conn": "b", "query": "KILL QUERY {threadId:a}"},
        {"wait": "sleep"},
        {"conn": "a", "query": "SELECT CONNECTION_ID(), 'usable'"},
    ], connections={"b": {}}, timeout=45)
    thread_id = res["results"][0]["threadId"]
    if target == "myroute":
        assert in_myroute_range(thread_id), "threadId %d is not in [2^30, 2^31)" % thread_id
    assert res["ok"], res
    backend_id = res["results"][1]["rows"][0][0]
    waited = res["results"][5]
    assert waited["error"]["errno"] == 1317, waited
    assert (waited["error"]["sqlState"], waited["error"]["message"]) == (
        "70100", "Query execution was interrupted")
    assert waited["elapsedMs"] < 15000, waited
    assert res["results"][6]["rows"] == [[backend_id, "usable"]]


@pytest.mark.parametrize("target", ["direct", "myroute"])
def test_mariadb_cli_ctrl_c_kills_the_query(kpx, cluster, target):
    # On SIGINT the mariadb client opens a second connection and sends
    # `KILL QUERY <its connection id>`.
    t = target_of(target, kpx, cluster)
    marker = "cli_kq_%s" % target
    args = ["mariadb", "--no-defaults", "-h" + t.host, "-P%d" % t.port, "--protocol=TCP",
            "-uapp_rw", "-p" + USERS["app_rw"], "--batch", "--skip-ssl",
            "--connect-timeout=10", "-e", "SELECT SLEEP(30) AS %s; SELECT 'next'" % marker]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        util.wait_until(lambda: cluster.primary.admin_query(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE %s",
            ("SELECT SLEEP(30) AS %s" % marker,))[0][0] == 1, 10,
            what="the CLI's SLEEP to run on the primary")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=PROMPTLY + 5)
        except subprocess.TimeoutExpired:
            raise AssertionError("the CLI's query was not interrupted %.0fs after Ctrl-C"
                                 % (time.monotonic() - t0))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert "Ctrl-C -- query killed." in out, out
    assert cli_error(err) == (1317, "70100", "Query execution was interrupted"), err
    assert proc.returncode == 1
    assert "next" not in out
