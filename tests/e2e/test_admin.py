"""The admin console: SHOW SERVERS / POOLS / CLIENTS / STATS / CONFIG /
VERSION / HELP, KILL, its login rules and the connect-time commands real
clients send, through the mariadb CLI, PyMySQL, mysql-connector-python and a
raw protocol client.

Tests that stop servers use a module cluster of their own (`own`); the
session's shared cluster is only read from.
"""

import subprocess

import pymysql
import pytest

from harness import protocol as p
from harness import util
from harness.accounts import USERS
from harness.avail_servers import HEALTH_PASSWORD, HEALTH_USER, own_servers_fixtures
from harness.avail_tools import port_of
from harness.clients import (close_all, connector_connect, login, pymysql_connect, rust_client,
                             scalar)
from harness.ops import (ADMIN_COMMANDS, ADMIN_PASSWORD, ADMIN_USER, CLIENT_COLUMNS, GONE,
                         POOL_COLUMNS, SERVER_COLUMNS, STAT_NAMES, cli_error, client_addr,
                         columns_of, conn_error_code, interactive_cli, parse_batch,
                         quiet_settings)
from harness.protocol import password_hash
from harness.proxy import pool_settings, user_settings

LONGLONG, VAR_STRING = 8, 253


def column_types(conn, sql, numeric):
    """Checks the column types: `numeric` columns LONGLONG, the rest
    VAR_STRING."""
    names, types = columns_of(conn, sql)
    for n, t in zip(names, types):
        want = LONGLONG if n in numeric else VAR_STRING
        assert t == want, "%s: column %s has type %d, not %d" % (sql, n, t, want)
    return names


def ints(row, names):
    for n in names:
        assert isinstance(row[n], int), "column %s is %r, not an integer: %r" % (n, row[n], row)


# --- SHOW SERVERS -----------------------------------------------------------------------

def test_show_servers_lists_every_pool_and_server_up(make_ops_proxy, cluster):
    r1, r2 = cluster.replicas
    body = (pool_settings("primary", [cluster.primary.address])
            + pool_settings("replicas", [r1.address, r2.address + " weight=3"])
            + user_settings("app_rw", USERS["app_rw"], "primary")
            + user_settings("app_ro", USERS["app_ro"], "replicas")
            + [("health.interval", "200ms"), ("shutdown_timeout", "2s")])
    px = make_ops_proxy("servers", body)
    conn = px.admin()
    try:
        names = column_types(conn, "SHOW SERVERS", {"weight", "active", "total", "failures",
                                                     "check_age", "read_only"})
        assert names == SERVER_COLUMNS
        rows = util.wait_until(
            lambda: (lambda rs: rs if all(r["state"] == "up" and r["last_check"] == "ok"
                                          for r in rs) else None)(px.servers(conn)),
            10, what=lambda: "every server up and checked: %r" % px.servers(conn))
    finally:
        conn.close()
    assert sorted((r["pool"], r["address"]) for r in rows) == sorted(
        [("primary", cluster.primary.address), ("replicas", r1.address),
         ("replicas", r2.address)])
    weights = {r["address"]: r["weight"] for r in rows}
    assert weights == {cluster.primary.address: 1, r1.address: 1, r2.address: 3}
    for r in rows:
        ints(r, ["weight", "active", "total", "failures", "check_age"])
        assert r["failures"] == 0, r
        assert r["active"] == 0, r
        assert 0 <= r["check_age"] <= 5, r
        # Without health.user, checks cannot read @@read_only.
        assert r["read_only"] is None, r
        server = cluster.by_port(int(r["address"].rsplit(":", 1)[1]))
        assert r["version"] and server.version in r["version"], (r, server.version)


def test_show_servers_counts_held_connections(make_ops_proxy, cluster, held):
    px = make_ops_proxy("counts", quiet_settings(cluster))
    admin = px.admin()
    try:
        before = {r["address"]: r for r in px.servers(admin)}
        for _ in range(3):
            held.append(login(px, "app_ro"))
        ports = [port_of(c) for c in held]
        after = {r["address"]: r for r in px.servers(admin)}
        for s in cluster.replicas:
            n = ports.count(s.port)
            assert after[s.address]["active"] == n, (ports, after[s.address])
            assert after[s.address]["total"] - before[s.address]["total"] == n, (
                ports, before[s.address], after[s.address])
        assert sum(after[s.address]["active"] for s in cluster.replicas) == 3
        assert after[cluster.primary.address]["active"] == 0
        assert sorted(ports) != [ports[0]] * 3, "all three on one replica: %r" % ports

        close_all(held)
        util.wait_until(lambda: all(r["active"] == 0 for r in px.servers(admin)), 5,
                        what=lambda: "active back to 0: %r" % px.servers(admin))
        final = {r["address"]: r for r in px.servers(admin)}
        for s in cluster.replicas:
            assert final[s.address]["total"] == after[s.address]["total"]
    finally:
        admin.close()


own_cluster, own = own_servers_fixtures(3, prefix="myroute-e2e-admin-")


def own_settings(own, **top):
    s1, s2, s3 = own.servers
    out = {"connect_timeout": "1s", "health.interval": "200ms", "health.fall": "2",
           "health.rise": "1", "health.user": HEALTH_USER, "health.password": HEALTH_PASSWORD,
           "shutdown_timeout": "2s"}
    out.update(top)
    return (list(out.items())
            + pool_settings("primary", [s1.address])
            + pool_settings("replicas", [s2.address, s3.address])
            + user_settings("app_rw", USERS["app_rw"], "primary")
            + user_settings("app_ro", USERS["app_ro"], "replicas"))


def test_show_servers_shows_a_stopped_replica_down_and_back(make_ops_proxy, own):
    s1, s2, s3 = own.servers
    px = make_ops_proxy("down", own_settings(own))
    conn = px.admin()
    try:
        util.wait_until(lambda: all(r["state"] == "up" for r in px.servers(conn)), 10,
                        what=lambda: "all up: %r" % px.servers(conn))
        rows = {r["address"]: r for r in px.servers(conn)}
        assert [rows[s.address]["read_only"] for s in own.servers] == [0, 0, 0], rows
        assert px.pools(conn)["replicas"]["servers_up"] == 2

        s3.kill()
        row = util.wait_until(
            lambda: (lambda r: r if r["state"] == "down" else None)(
                px.server_rows(s3.address, conn)[0]),
            10, what=lambda: "%s down: %r" % (s3.address, px.server_rows(s3.address, conn)))
        assert row["pool"] == "replicas"
        assert isinstance(row["failures"], int) and row["failures"] >= 2, row
        assert row["last_check"] and row["last_check"] != "ok", row
        assert isinstance(row["check_age"], int) and row["check_age"] <= 5, row
        others = {r["address"]: r["state"] for r in px.servers(conn) if r["address"] != s3.address}
        assert others == {s1.address: "up", s2.address: "up"}
        pools = px.pools(conn)
        assert (pools["replicas"]["servers"], pools["replicas"]["servers_up"]) == (2, 1)
        # New app_ro clients go to the replica that is up.
        c = login(px, "app_ro")
        try:
            assert port_of(c) == s2.port
        finally:
            c.close()

        # read_only is what the check read.
        s2.set_read_only(True)
        util.wait_until(lambda: px.server_rows(s2.address, conn)[0]["read_only"] == 1, 5,
                        what=lambda: "read_only 1: %r" % px.server_rows(s2.address, conn))

        s3.restart()
        row = util.wait_until(
            lambda: (lambda r: r if r["state"] == "up" else None)(
                px.server_rows(s3.address, conn)[0]),
            15, what=lambda: "%s up again: %r" % (s3.address, px.server_rows(s3.address, conn)))
        assert row["failures"] == 0 and row["last_check"] == "ok", row
    finally:
        conn.close()


# --- SHOW POOLS ------------------------------------------------------------------------

def test_show_pools_counts_clients(make_ops_proxy, cluster, held):
    px = make_ops_proxy("pools", quiet_settings(cluster) + [("pool.replicas.fallback", "primary")])
    admin = px.admin()
    try:
        names = column_types(admin, "SHOW POOLS", {"servers", "servers_up", "active", "clients",
                                                   "total"})
        assert names == POOL_COLUMNS
        before = px.pools(admin)
        assert set(before) == {"primary", "replicas"}
        for _ in range(2):
            held.append(login(px, "app_rw"))
        ro = [login(px, "app_ro") for _ in range(3)]
        held.extend(ro)
        pools = px.pools(admin)
        for row in pools.values():
            ints(row, ["servers", "servers_up", "active", "clients", "total"])
        pr, rp = pools["primary"], pools["replicas"]
        assert (pr["role"], pr["fallback"]) == ("any", None), pr
        assert (rp["role"], rp["fallback"]) == ("any", "primary"), rp
        assert (pr["servers"], pr["servers_up"], pr["active"], pr["clients"]) == (1, 1, 2, 2), pr
        assert (rp["servers"], rp["servers_up"], rp["active"], rp["clients"]) == (2, 2, 3, 3), rp
        assert pr["total"] - before["primary"]["total"] == 2
        assert rp["total"] - before["replicas"]["total"] == 3

        ro[0].close()
        util.wait_until(lambda: px.pools(admin)["replicas"]["clients"] == 2, 5,
                        what=lambda: "2 replicas clients: %r" % px.pools(admin))
        rp = px.pools(admin)["replicas"]
        assert rp["active"] == 2 and rp["total"] - before["replicas"]["total"] == 3, rp
    finally:
        admin.close()


# --- SHOW CLIENTS -----------------------------------------------------------------------

def test_show_clients_describes_each_client(make_ops_proxy, cluster, held):
    px = make_ops_proxy("clients", quiet_settings(cluster))
    quiet = login(px, "app_rw")
    big = login(px, "app_ro")
    held += [quiet, big]
    quiet_server = cluster.by_port(port_of(quiet)).address
    big_server = cluster.by_port(port_of(big)).address
    # `quiet` sends a large query and gets a small answer; `big` the opposite.
    assert scalar(quiet, "SELECT LENGTH('%s')" % ("q" * 100000)) == 100000
    assert len(scalar(big, "SELECT REPEAT('b', 300000)")) == 300000

    admin = px.admin()
    try:
        names = column_types(admin, "SHOW CLIENTS", {"id", "backend_id", "age", "bytes_in",
                                                      "bytes_out"})
        assert names == CLIENT_COLUMNS
        rq = px.client_row(client_addr(quiet), admin)
        rb = px.client_row(client_addr(big), admin)
    finally:
        admin.close()
    assert rq is not None and rb is not None, px.clients()
    for row in (rq, rb):
        ints(row, ["id", "backend_id", "age", "bytes_in", "bytes_out"])
        assert row["state"] == "RELAYING", row
        assert 0 <= row["age"] <= 10, row
        assert row["bytes_in"] > 0 and row["bytes_out"] > 0, row
    assert (rq["user"], rq["pool"], rq["server"]) == ("app_rw", "primary", quiet_server)
    assert (rb["user"], rb["pool"], rb["server"]) == ("app_ro", "replicas", big_server)
    assert rq["id"] != rb["id"]
    assert rq["backend_id"] == scalar(quiet, "SELECT CONNECTION_ID()")
    assert rb["backend_id"] == scalar(big, "SELECT CONNECTION_ID()")
    assert rb["bytes_out"] >= 300000 and rb["bytes_out"] > rq["bytes_out"] + 290000, (rq, rb)
    assert rq["bytes_in"] >= 100000 and rq["bytes_in"] > rb["bytes_in"] + 90000, (rq, rb)


def test_show_clients_shows_a_client_before_login(make_ops_proxy, cluster):
    px = make_ops_proxy("prelogin", quiet_settings(cluster))
    with p.RawClient(px.host, px.port) as c:
        addr = c.local_address
        c.read_greeting()
        row = px.client_row(addr)
        assert row is not None, px.clients()
        assert (row["user"], row["pool"], row["server"]) == (None, None, None), row
        assert row["state"] == "AWAITING-CLIENT-RESPONSE", row
        c.login("app_ro", USERS["app_ro"])
        row = px.client_row(addr)
        assert (row["user"], row["pool"], row["state"]) == ("app_ro", "replicas", "RELAYING")
    util.wait_until(lambda: px.client_row(addr) is None, 5,
                    what=lambda: "the closed client to leave SHOW CLIENTS: %r" % px.clients())


# --- SHOW STATS --------------------------------------------------------------------------

def test_show_stats_counts_logins_and_ends(make_ops_proxy, cluster):
    px = make_ops_proxy("stats", quiet_settings(cluster))
    admin = px.admin()
    try:
        names = column_types(admin, "SHOW STATS", {"value"})
        assert names == ["name", "value"]
        rows = px.admin_rows("SHOW STATS", admin)
        assert [r["name"] for r in rows] == STAT_NAMES
        for r in rows:
            assert isinstance(r["value"], int), r
        before = px.stats(admin)
        for _ in range(3):
            c = login(px, "app_ro")
            assert scalar(c, "SELECT 1") == 1
            c.close()
        with pytest.raises(pymysql.err.OperationalError) as info:
            login(px, "app_ro", password="not-the-password")
        assert info.value.args[0] == 1045

        def settled():
            s = px.stats(admin)
            return s if (s["ends_client_closed"] - before["ends_client_closed"] == 3
                         and s["ends_auth_failed"] - before["ends_auth_failed"] == 1) else None
        after = util.wait_until(settled, 5, what=lambda: "3 closed and 1 failed: %r -> %r"
                                % (before, px.stats(admin)))
    finally:
        admin.close()
    delta = {k: after[k] - before[k] for k in STAT_NAMES}
    assert delta["logins_ok"] == 3, delta
    assert delta["logins_failed"] == 1, delta
    assert delta["connections_accepted"] == 4, delta
    assert delta["backend_connects"] == 3, delta
    assert delta["connections_refused"] == 0, delta
    assert after["clients_active"] == 0, after
    assert delta["bytes_in"] > 0 and delta["bytes_out"] > 0, delta
    assert after["uptime_seconds"] >= 0
    for reason in ("backend_closed", "killed", "shutdown", "pool_unreachable"):
        assert delta["ends_" + reason] == 0, delta


# --- SHOW CONFIG / VERSION / HELP ----------------------------------------------------------

def test_show_config_hides_password_hashes(make_ops_proxy, cluster):
    px = make_ops_proxy("config", quiet_settings(cluster))
    res = px.cli("SHOW CONFIG")
    assert res.returncode == 0, res.stderr
    header = res.stdout.splitlines()[0].split("\t")
    assert header == ["key", "value"]
    rows = parse_batch(res.stdout)
    conf = {r["key"]: r["value"] for r in rows}
    assert len(conf) == len(rows), "a key shown twice"
    assert conf["listen"] == px.address
    assert conf["admin.listen"] == "127.0.0.1:%d" % px.admin_port
    assert conf["admin.user"] == ADMIN_USER
    assert conf["admin.password"] == "<hidden>"
    assert conf["user.app_rw.password"] == "<hidden>"
    assert conf["user.app_ro.password"] == "<hidden>"
    assert conf["user.app_rw.pool"] == "primary"
    assert conf["user.app_ro.pool"] == "replicas"
    assert conf["pool.primary.servers"] == cluster.primary.address
    for s in cluster.replicas:
        assert s.address in conf["pool.replicas.servers"]
    for key in ("shutdown_timeout", "health.interval", "connect_timeout", "buffer_size"):
        assert key in conf, sorted(conf)
    text = (res.stdout + res.stderr).upper()
    for secret in [ADMIN_PASSWORD, USERS["app_rw"], USERS["app_ro"]]:
        h = password_hash(secret)
        assert h[1:].upper() not in text
        assert secret.upper() not in text


def test_show_version_matches_the_binary(make_ops_proxy, cluster, myroute_bin):
    px = make_ops_proxy("version", quiet_settings(cluster))
    want = subprocess.run([myroute_bin, "--version"], capture_output=True, text=True,
                          timeout=10).stdout.strip()
    res = px.cli("SHOW VERSION")
    assert res.returncode == 0, res.stderr
    assert parse_batch(res.stdout) == [{"version": want}]
    conn = px.admin()
    try:
        assert columns_of(conn, "SHOW VERSION")[0] == ["version"]
        assert px.admin_rows("show version;  ", conn) == [{"version": want}]
    finally:
        conn.close()


def test_help_lists_the_commands(make_ops_proxy, cluster):
    px = make_ops_proxy("help", quiet_settings(cluster))
    # (The CLI answers a bare `help` itself, so that form goes by PyMySQL.)
    res = px.cli("SHOW HELP")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0].split("\t") == ["command", "description"]
    conn = px.admin()
    try:
        assert columns_of(conn, "HELP")[0] == ["command", "description"]
        results = [parse_batch(res.stdout), px.admin_rows("HELP", conn),
                   px.admin_rows("help;", conn)]
    finally:
        conn.close()
    assert results[0] == results[1] == results[2]
    for rows in results:
        listed = " ".join(r["command"] for r in rows).upper()
        for word in ("SHOW SERVERS", "SHOW CLIENTS", "DRAIN SERVER", "KILL", "RELOAD",
                     "SHUTDOWN"):
            assert word in listed, rows


def test_commands_are_case_insensitive(make_ops_proxy, cluster):
    px = make_ops_proxy("case", quiet_settings(cluster))
    conn = px.admin()
    try:
        upper = px.admin_rows("SHOW SERVERS", conn)
        assert [r["address"] for r in px.admin_rows("sHoW sErVeRs ;", conn)] == [
            r["address"] for r in upper]
        assert len(px.admin_rows("show pools;", conn)) == 2
    finally:
        conn.close()


# --- KILL -----------------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["KILL %d", "kill connection %d"])
def test_kill_closes_that_client_only(make_ops_proxy, cluster, held, form):
    px = make_ops_proxy("kill", quiet_settings(cluster))
    victim = login(px, "app_rw")
    bystander = login(px, "app_rw")
    held += [victim, bystander]
    backend_id = scalar(victim, "SELECT CONNECTION_ID()")
    assert scalar(bystander, "SELECT 1") == 1
    admin = px.admin()
    try:
        before = px.stats(admin)
        victim_addr = client_addr(victim)
        row = px.client_row(victim_addr, admin)
        assert row is not None
        px.admin_ok(form % row["id"], admin)
        code = conn_error_code(lambda: scalar(victim, "SELECT 1"))
        assert code in GONE, code
        assert scalar(bystander, "SELECT 2") == 2
        util.wait_until(lambda: px.client_row(victim_addr, admin) is None, 5,
                        what=lambda: "the killed client to leave SHOW CLIENTS")
        assert px.client_row(client_addr(bystander), admin) is not None
        util.wait_until(lambda: px.stats(admin)["ends_killed"] == before["ends_killed"] + 1, 5,
                        what=lambda: "ends_killed + 1: %r" % px.stats(admin))
    finally:
        admin.close()
    # Its backend session ends too.
    util.wait_until(lambda: not cluster.primary.admin_query(
        "SELECT ID FROM information_schema.PROCESSLIST WHERE ID = %s", (backend_id,)), 5,
        what="backend session %d to end" % backend_id)


def test_kill_of_an_unknown_id(make_ops_proxy, cluster):
    px = make_ops_proxy("kill-unknown", quiet_settings(cluster))
    res = px.cli("KILL 999999")
    assert res.returncode != 0
    assert cli_error(res.stderr) == (1094, "HY000", "Unknown thread id: 999999"), res.stderr
    conn = px.admin()
    try:
        with pytest.raises(pymysql.err.MySQLError) as info:
            px.admin_ok("KILL 999999", conn)
        assert info.value.args[0] == 1094
        # The console goes on after an error.
        assert px.admin_rows("SHOW VERSION", conn)
    finally:
        conn.close()


# --- who may log in ------------------------------------------------------------------------

def test_admin_login_rules(make_ops_proxy, cluster):
    px = make_ops_proxy("logins", quiet_settings(cluster))
    admin = px.admin()
    try:
        before = px.stats(admin)
        res = px.cli("SHOW VERSION", password="wrong-admin-password")
        assert cli_error(res.stderr) == (
            1045, "28000",
            "Access denied for user '%s'@'127.0.0.1' (using password: YES)" % ADMIN_USER), \
            res.stderr
        assert res.stdout == ""
        # An application account cannot use the console, even with its own
        # (correct) password.
        res = px.cli("SHOW VERSION", user="app_rw", password=USERS["app_rw"])
        assert cli_error(res.stderr)[:2] == (1045, "28000"), res.stderr
        with pytest.raises(pymysql.err.OperationalError) as info:
            px.admin(user="app_ro", password=USERS["app_ro"])
        assert info.value.args[0] == 1045
        with pytest.raises(pymysql.err.OperationalError) as info:
            px.admin(password="")
        assert info.value.args[0] == 1045
        assert "using password: NO" in info.value.args[1]
        # The console account does not exist on the main port.
        with pytest.raises(pymysql.err.OperationalError) as info:
            pymysql_connect(px.host, px.port, ADMIN_USER, ADMIN_PASSWORD)
        assert info.value.args[0] == 1045

        def counted():
            s = px.stats(admin)
            return s if s["logins_failed"] == before["logins_failed"] + 1 else None
        after = util.wait_until(counted, 5, what=lambda: "logins_failed + 1: %r" % px.stats(admin))
        assert after["admin_logins_failed"] - before["admin_logins_failed"] == 4, (before, after)
        assert after["logins_ok"] == before["logins_ok"]
    finally:
        admin.close()
    assert px.alive()


def test_console_never_routes(make_ops_proxy, cluster):
    px = make_ops_proxy("noroute", quiet_settings(cluster))
    conn = px.admin()
    try:
        for sql in ("SELECT @@port", "SELECT 1", "SHOW DATABASES", "SELECT * FROM app.items"):
            with pytest.raises(pymysql.err.MySQLError) as info:
                px.admin_rows(sql, conn)
            assert info.value.args[0] == 1064, (sql, info.value.args)
        assert px.stats(conn)["logins_ok"] == 0
    finally:
        conn.close()


def test_unknown_command_lists_the_commands(make_ops_proxy, cluster):
    px = make_ops_proxy("unknown", quiet_settings(cluster))
    res = px.cli("FROBNICATE NOW")
    err = cli_error(res.stderr)
    assert err is not None, res.stderr
    code, state, msg = err
    assert (code, state) == (1064, "42000"), err
    assert msg.startswith("unknown admin command"), msg
    for cmd in ADMIN_COMMANDS:
        assert cmd in msg, (cmd, msg)


# --- what clients send at connect ---------------------------------------------------------

def test_interactive_cli_session(make_ops_proxy, cluster, myroute_bin):
    px = make_ops_proxy("tty", quiet_settings(cluster))
    version = subprocess.run([myroute_bin, "--version"], capture_output=True, text=True,
                             timeout=10).stdout.strip()
    # On a terminal the CLI prints a banner (it asks for @@version_comment),
    # then takes commands at its prompt.
    screen = interactive_cli(px.host, px.admin_port, ADMIN_USER, ADMIN_PASSWORD,
                             ["SHOW VERSION;", "show pools;"])
    assert "Server version:" in screen, screen
    assert "ERROR" not in screen, screen
    assert version in screen, screen
    assert "replicas" in screen, screen


def test_connect_time_commands(make_ops_proxy, cluster):
    px = make_ops_proxy("connect-time", quiet_settings(cluster))
    res = px.cli("select @@version_comment limit 1")
    assert res.returncode == 0, res.stderr
    assert len(parse_batch(res.stdout)) == 1, res.stdout
    res = px.cli("SET NAMES utf8mb4; SHOW VERSION")
    assert res.returncode == 0, res.stderr
    conn = px.admin()
    try:
        conn.ping(reconnect=False)
        conn.select_db("app")
        conn.ping(reconnect=False)
        assert px.admin_rows("SHOW VERSION", conn)
    finally:
        conn.close()
    conn = connector_connect(px.host, px.admin_port, ADMIN_USER, ADMIN_PASSWORD)
    try:
        cur = conn.cursor()
        cur.execute("SHOW VERSION")
        rows = cur.fetchall()
        cur.close()
        assert len(rows) == 1 and "myroute" in str(rows[0][0]), rows
    finally:
        conn.close()


def test_the_rust_client_reads_the_console(make_ops_proxy, cluster):
    # The mysql crate reads @@max_allowed_packet and @@socket before the
    # first query; the console answers both.
    px = make_ops_proxy("rust", quiet_settings(cluster))
    res = rust_client(px.host, px.admin_port, ADMIN_USER, ADMIN_PASSWORD,
                      ["query=SHOW VERSION", "query=SHOW POOLS"])
    assert res.returncode == 0, res.stderr
    assert len(res.rows(0)) == 1 and res.rows(0)[0][0].startswith("myroute "), res.stdout
    pools = {r[0] for r in res.rows(1)}
    assert pools == {"primary", "replicas"}, res.stdout


def test_a_client_starting_with_another_plugin_is_switched(make_ops_proxy, cluster):
    px = make_ops_proxy("switch", quiet_settings(cluster))
    for plugin in ("client_ed25519", "caching_sha2_password"):
        with p.RawClient(px.host, px.admin_port) as c:
            c.login(ADMIN_USER, ADMIN_PASSWORD, plugin=plugin)
            kind, rows = c.query("SHOW VERSION")
            assert kind == "rows" and rows[0][0].startswith(b"myroute "), rows
