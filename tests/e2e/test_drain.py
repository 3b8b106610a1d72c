"""DRAIN SERVER / ENABLE SERVER through the admin console: a drained server
gets no new connection in any pool, its established connections go on."""

from collections import Counter

import pymysql
import pytest

from harness import util
from harness.accounts import USERS
from harness.avail_tools import port_of
from harness.clients import login, scalar
from harness.ops import cli_error, one_on_first_replica
from harness.proxy import pool_settings, user_settings


def settings(cluster):
    p, (r1, r2) = cluster.primary, cluster.replicas
    return ([("health.interval", "200ms"), ("shutdown_timeout", "2s")]
            + pool_settings("primary", [p.address])
            + pool_settings("replicas", [r1.address, r2.address])
            + pool_settings("solo", [r1.address])
            + user_settings("app_rw", USERS["app_rw"], "primary")
            + user_settings("app_ro", USERS["app_ro"], "replicas")
            + user_settings("nopw", USERS["nopw"], "solo"))


def states(px, address, conn=None):
    return sorted((r["pool"], r["state"]) for r in px.server_rows(address, conn))


def test_drain_and_enable_a_replica(make_ops_proxy, cluster, held):
    r1, r2 = cluster.replicas
    px = make_ops_proxy("drain", settings(cluster))
    admin = px.admin()
    try:
        old = one_on_first_replica(px, cluster, held)
        util.wait_until(lambda: px.server_rows(r2.address, admin)[0]["active"] == 0, 5,
                        what=lambda: "no connection on %s" % r2.address)

        px.admin_ok("DRAIN SERVER '%s'" % r1.address, admin)
        # Drained in every pool it is in.
        assert states(px, r1.address, admin) == [("replicas", "drain"), ("solo", "drain")]
        assert states(px, r2.address, admin) == [("replicas", "up")]

        new = [login(px, "app_ro") for _ in range(6)]
        held += new
        assert [port_of(c) for c in new] == [r2.port] * 6
        # The connection opened before the drain goes on.
        for i in range(3):
            assert scalar(old, "SELECT @@port + %d" % i) == r1.port + i
        row = px.server_rows(r1.address, admin)[0]
        assert row["active"] == 1, row
        # A pool whose only server is drained has nowhere to send clients.
        with pytest.raises(pymysql.err.OperationalError) as info:
            login(px, "nopw")
        assert info.value.args[0] == 1429, info.value.args
        assert "'solo'" in info.value.args[1]

        px.admin_ok("ENABLE SERVER '%s'" % r1.address, admin)
        assert states(px, r1.address, admin) == [("replicas", "up"), ("solo", "up")]
        # r1 has 1 connection, r2 has 6: the next ones go to r1 again.
        again = [login(px, "app_ro") for _ in range(2)]
        held += again
        assert [port_of(c) for c in again] == [r1.port] * 2
        solo = login(px, "nopw")
        held.append(solo)
        assert port_of(solo) == r1.port
        assert scalar(old, "SELECT @@port") == r1.port
    finally:
        admin.close()


def test_drained_server_spreads_again_on_an_idle_pool(make_ops_proxy, cluster):
    r1, r2 = cluster.replicas
    px = make_ops_proxy("drain-idle", settings(cluster))
    res = px.cli("DRAIN SERVER '%s'" % r2.address)
    assert res.returncode == 0, res.stderr

    def spread(n):
        ports = []
        for _ in range(n):
            c = login(px, "app_ro")
            try:
                ports.append(port_of(c))
            finally:
                c.close()
            util.wait_until(lambda: all(r["active"] == 0 for r in px.servers()), 5,
                            what="the connection to end")
        return Counter(ports)

    assert spread(4) == Counter({r1.port: 4})
    res = px.cli("enable server '%s';" % r2.address)
    assert res.returncode == 0, res.stderr
    assert spread(4) == Counter({r1.port: 2, r2.port: 2})


def test_drain_of_an_unknown_server(make_ops_proxy, cluster):
    px = make_ops_proxy("drain-unknown", settings(cluster))
    port = util.closed_port()
    for cmd in ("DRAIN SERVER '127.0.0.1:%d'", "ENABLE SERVER '127.0.0.1:%d'"):
        res = px.cli(cmd % port)
        err = cli_error(res.stderr)
        assert err is not None and err[:2] == (1105, "HY000"), res.stderr
        assert err[2].startswith("no server 127.0.0.1:%d" % port), err
    # Nothing changed.
    assert {r["state"] for r in px.servers()} == {"up"}
