"""Reloading the configuration file with RELOAD (admin console) and SIGHUP:
new users, pools and servers apply to new connections, established ones
stay as they are, a broken file changes nothing."""

import os
import re
import threading

import pymysql
import pytest

from harness import util
from harness.accounts import USERS
from harness.avail_tools import port_of
from harness.clients import login, scalar
from harness.ops import ADMIN_PASSWORD, ADMIN_USER, client_addr, one_on_first_replica, reload
from harness.protocol import password_hash
from harness.proxy import pool_settings, user_settings

TOP = [("connect_timeout", "2s"), ("health.interval", "200ms"), ("shutdown_timeout", "2s")]


def body(cluster, users=("app_rw", "app_ro"), pools=None, top=()):
    """users: names, or (name, pool) pairs; default pools of the shared
    cluster: primary and replicas."""
    if pools is None:
        pools = {"primary": [cluster.primary.address],
                 "replicas": [s.address for s in cluster.replicas]}
    default_pool = {"app_rw": "primary", "nopw": "primary", "app_ro": "replicas"}
    merged = dict(TOP)
    merged.update(dict(top))
    out = list(merged.items())
    for name, servers in pools.items():
        out += pool_settings(name, servers)
    for u in users:
        name, pool = u if isinstance(u, tuple) else (u, default_pool[u])
        out += user_settings(name, USERS[name], pool)
    return out


def login_code(px, user):
    """None when `user` can log in (and run a query), else the error code."""
    try:
        c = login(px, user)
    except pymysql.err.OperationalError as e:
        return e.args[0]
    try:
        scalar(c, "SELECT 1")
    finally:
        c.close()
    return None


HOW = ["RELOAD", "SIGHUP"]


@pytest.mark.parametrize("how", HOW)
def test_a_new_user_logs_in_after_reload_only(make_ops_proxy, cluster, how):
    px = make_ops_proxy("adduser", body(cluster, users=["app_rw"]))
    assert login_code(px, "app_ro") == 1045
    px.rewrite(body(cluster, users=["app_rw", "app_ro"]))
    # The file alone changes nothing.
    assert login_code(px, "app_ro") == 1045
    msg = reload(px, how)
    if how == "RELOAD":
        assert msg.startswith("configuration reloaded"), msg
    c = login(px, "app_ro")
    try:
        assert port_of(c) in {s.port for s in cluster.replicas}
    finally:
        c.close()
    assert login_code(px, "app_rw") is None
    stats = px.stats()
    assert (stats["reloads"], stats["reload_failures"]) == (1, 0), stats


@pytest.mark.parametrize("how", HOW)
def test_a_removed_user_is_refused_after_reload(make_ops_proxy, cluster, held, how):
    px = make_ops_proxy("deluser", body(cluster))
    established = login(px, "app_ro")
    held.append(established)
    px.rewrite(body(cluster, users=["app_rw"]))
    reload(px, how)
    assert login_code(px, "app_ro") == 1045
    # The established session is not touched.
    assert port_of(established) in {s.port for s in cluster.replicas}


def test_a_user_moved_to_another_pool(make_ops_proxy, cluster, held):
    px = make_ops_proxy("move", body(cluster))
    old = login(px, "app_ro")
    held.append(old)
    old_port = port_of(old)
    assert old_port in {s.port for s in cluster.replicas}
    px.rewrite(body(cluster, users=["app_rw", ("app_ro", "primary")]))
    px.admin_ok("RELOAD")
    new = [login(px, "app_ro") for _ in range(3)]
    held += new
    assert [port_of(c) for c in new] == [cluster.primary.port] * 3
    # The established connection stays where it was, and says so.
    assert port_of(old) == old_port
    assert px.client_row(client_addr(old))["pool"] == "replicas"
    assert {px.client_row(client_addr(c))["pool"] for c in new} == {"primary"}


@pytest.mark.parametrize("how", HOW)
def test_a_broken_file_keeps_the_old_configuration(make_ops_proxy, cluster, how):
    px = make_ops_proxy("broken", body(cluster, users=["app_rw"]))
    # The new file adds app_ro, then breaks at its last line.
    px.rewrite(body(cluster, users=["app_rw", "app_ro"]), raw_lines=["frobnicate = yes"])
    bad_line = len(px.file_lines()) + 1
    if how == "RELOAD":
        with pytest.raises(pymysql.err.MySQLError) as info:
            px.admin_ok("RELOAD")
        code, msg = info.value.args
        assert code == 1105, info.value.args
        assert re.search(r"\b%d: " % bad_line, msg) and "frobnicate" in msg, msg
        res = px.cli("RELOAD")
        assert "ERROR 1105 (HY000)" in res.stderr, res.stderr
    else:
        reload(px, how)
    where = "%s:%d: " % (px.config_path, bad_line)
    px.wait_for_log_line(lambda l: "reload failed" in l and where in l, 5,
                         what="reload failed ... %s" % where)
    # Nothing of the new file applies; the old one goes on.
    assert login_code(px, "app_ro") == 1045
    assert login_code(px, "app_rw") is None
    stats = px.stats()
    assert stats["reloads"] == 0 and stats["reload_failures"] >= 1, stats
    assert px.alive()
    # Fixed, it loads.
    px.rewrite(body(cluster, users=["app_rw", "app_ro"]))
    reload(px, how)
    assert login_code(px, "app_ro") is None


def test_a_removed_server_drains(make_ops_proxy, cluster, held):
    r1, r2 = cluster.replicas
    px = make_ops_proxy("rmserver", body(cluster))
    admin = px.admin()
    try:
        on_r1 = one_on_first_replica(px, cluster, held)

        px.rewrite(body(cluster, pools={"primary": [cluster.primary.address],
                                        "replicas": [r2.address]}))
        px.admin_ok("RELOAD", admin)
        rows = px.server_rows(r1.address, admin)
        assert [(r["pool"], r["state"], r["active"]) for r in rows] == [(None, "drain", 1)], rows
        assert [(r["pool"], r["state"]) for r in px.server_rows(r2.address, admin)] == [
            ("replicas", "up")]
        # The client on the removed server keeps working; new ones avoid it.
        for i in range(3):
            assert scalar(on_r1, "SELECT @@port + %d" % i) == r1.port + i
        new = [login(px, "app_ro") for _ in range(4)]
        held += new
        assert [port_of(c) for c in new] == [r2.port] * 4
        # Once its last connection ends, the server is gone.
        on_r1.close()
        util.wait_until(lambda: not px.server_rows(r1.address, admin), 5,
                        what=lambda: "%s to leave SHOW SERVERS: %r" % (r1.address,
                                                                      px.servers(admin)))
    finally:
        admin.close()


def test_max_clients_applies_after_reload(make_ops_proxy, cluster, held):
    px = make_ops_proxy("maxclients", body(cluster))
    held += [login(px, "app_rw") for _ in range(3)]
    px.rewrite(body(cluster, top=[("max_clients", "3")]))
    px.admin_ok("RELOAD")
    with pytest.raises(pymysql.err.OperationalError) as info:
        login(px, "app_rw")
    assert info.value.args[0] == 1040
    # The three established sessions are untouched.
    assert [scalar(c, "SELECT 1") for c in held] == [1, 1, 1]


def test_admin_password_change_applies_to_new_console_logins(make_ops_proxy, cluster):
    px = make_ops_proxy("adminpw", body(cluster))
    old_session = px.admin()
    try:
        new_pw = "adm-Secret-2024-rotated"
        px.rewrite(admin_password=new_pw)
        px.admin_ok("RELOAD", old_session)
        with pytest.raises(pymysql.err.OperationalError) as info:
            px.admin(password=ADMIN_PASSWORD)
        assert info.value.args[0] == 1045
        c = px.admin(password=new_pw)
        c.close()
        # The session opened before goes on.
        assert px.admin_rows("SHOW VERSION", old_session)
    finally:
        old_session.close()
    text = px.cli("SHOW CONFIG").stdout
    assert password_hash(new_pw)[1:] not in text.upper()
    assert ADMIN_USER in text


def test_restart_only_keys_are_logged_and_ignored(make_ops_proxy, cluster):
    px = make_ops_proxy("restartkeys", body(cluster, top=[("buffer_size", "16384")]))
    px.rewrite(body(cluster, top=[("buffer_size", "32768")]))
    px.admin_ok("RELOAD")
    px.wait_for_log_line(lambda l: "buffer_size" in l and "restart" in l, 5,
                         what="a line saying buffer_size needs a restart")
    conf = {r["key"]: r["value"] for r in px.admin_rows("SHOW CONFIG")}
    assert conf["buffer_size"] == "16384", conf["buffer_size"]
    assert login_code(px, "app_rw") is None


def test_queries_go_on_across_reloads(make_ops_proxy, cluster):
    px = make_ops_proxy("loop", body(cluster))
    stop = threading.Event()
    errors = []
    counts = {"queries": 0, "logins": 0}

    def long_session():
        try:
            c = login(px, "app_ro")
            try:
                while not stop.is_set():
                    assert scalar(c, "SELECT COUNT(*) FROM app.items") == 3
                    counts["queries"] += 1
            finally:
                c.close()
        except Exception as e:  # reported below
            errors.append(("session", repr(e)))

    def new_logins():
        try:
            while not stop.is_set():
                c = login(px, "app_rw")
                try:
                    assert scalar(c, "SELECT 1") == 1
                finally:
                    c.close()
                counts["logins"] += 1
        except Exception as e:
            errors.append(("logins", repr(e)))

    threads = [threading.Thread(target=long_session, daemon=True),
               threading.Thread(target=new_logins, daemon=True)]
    for t in threads:
        t.start()
    try:
        for i in range(6):
            before = dict(counts)
            px.rewrite(body(cluster, top=[("connect_timeout", "%ds" % (2 + i % 2))]))
            reload(px, HOW[i % 2])
            # Both loops make progress after each reload.
            util.wait_until(lambda: errors or (counts["queries"] > before["queries"] + 5
                                               and counts["logins"] > before["logins"] + 1),
                            10, what=lambda: "progress after reload %d: %r" % (i, counts))
            assert not errors, errors
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert not errors, errors
    stats = px.stats()
    assert (stats["reloads"], stats["reload_failures"]) == (6, 0), stats


def test_a_server_added_by_reload_gets_clients(make_ops_proxy, cluster, held):
    r1, r2 = cluster.replicas
    px = make_ops_proxy("addserver", body(cluster, pools={"primary": [cluster.primary.address],
                                                          "replicas": [r1.address]}))
    held += [login(px, "app_ro") for _ in range(2)]
    assert {port_of(c) for c in held} == {r1.port}
    assert not px.server_rows(r2.address)
    px.rewrite(body(cluster))
    px.admin_ok("RELOAD")
    util.wait_until(lambda: [(r["pool"], r["state"]) for r in px.server_rows(r2.address)]
                    == [("replicas", "up")], 5,
                    what=lambda: "%s up in replicas: %r" % (r2.address, px.servers()))
    # r1 holds two connections: the next two go to the new server.
    new = [login(px, "app_ro") for _ in range(2)]
    held += new
    assert [port_of(c) for c in new] == [r2.port] * 2


def test_a_missing_file_keeps_the_old_configuration(make_ops_proxy, cluster):
    px = make_ops_proxy("missing", body(cluster))
    os.rename(px.config_path, px.config_path + ".away")
    try:
        with pytest.raises(pymysql.err.MySQLError) as info:
            px.admin_ok("RELOAD")
        assert info.value.args[0] == 1105 and px.config_path in info.value.args[1]
        reload(px, "SIGHUP")
        px.wait_for_log_line(lambda l: "reload failed" in l and px.config_path in l, 5,
                             what="reload failed for the missing file")
        assert login_code(px, "app_rw") is None and login_code(px, "app_ro") is None
        assert px.stats()["reload_failures"] == 2
    finally:
        os.rename(px.config_path + ".away", px.config_path)
