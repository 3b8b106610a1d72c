"""Routing by user, least-connections choice, rotation among idle servers."""

from collections import Counter

from harness import util
from harness.accounts import USERS
from harness.clients import pymysql_connect, scalar


def port_of(conn):
    return scalar(conn, "SELECT @@port")


def test_read_write_user_lands_on_primary(proxy, cluster, connect):
    conn = connect("app_rw", database="app")
    assert port_of(conn) == cluster.primary.port
    assert scalar(conn, "SELECT CURRENT_USER()") == "app_rw@%"
    assert scalar(conn, "SELECT DATABASE()") == "app"


def test_read_only_user_lands_on_a_replica(proxy, cluster, connect):
    conn = connect("app_ro")
    assert port_of(conn) in {s.port for s in cluster.replicas}
    assert scalar(conn, "SELECT CURRENT_USER()") == "app_ro@%"


def test_every_connection_of_a_user_stays_in_its_pool(proxy, cluster, connect):
    rw = {port_of(connect("app_rw")) for _ in range(3)}
    ro = {port_of(connect("app_ro")) for _ in range(3)}
    assert rw == {cluster.primary.port}
    assert ro <= {s.port for s in cluster.replicas}


def test_held_connections_spread_evenly_over_replicas(proxy, cluster, connect):
    cluster.wait_no_sessions("app_ro")
    conns = [connect("app_ro") for _ in range(4)]
    spread = Counter(port_of(c) for c in conns)
    assert spread == Counter({s.port: 2 for s in cluster.replicas})
    # The backends agree: two app_ro sessions each, none on the primary.
    assert [s.sessions("app_ro") for s in cluster.servers] == [0, 2, 2]


def test_new_connection_goes_to_the_replica_with_fewer_connections(proxy, cluster, connect):
    cluster.wait_no_sessions("app_ro")
    held = connect("app_ro")
    busy = port_of(held)
    other = ({s.port for s in cluster.replicas} - {busy}).pop()
    for _ in range(3):
        conn = pymysql_connect(proxy.host, proxy.port, "app_ro", USERS["app_ro"])
        try:
            assert port_of(conn) == other
        finally:
            conn.close()
        util.wait_until(lambda: cluster.by_port(other).sessions("app_ro") == 0, 10,
                        what="the app_ro session on port %d to end" % other)


def test_sequential_connections_alternate_between_idle_replicas(proxy, cluster):
    cluster.wait_no_sessions("app_ro")
    ports = []
    for _ in range(6):
        conn = pymysql_connect(proxy.host, proxy.port, "app_ro", USERS["app_ro"])
        try:
            ports.append(port_of(conn))
        finally:
            conn.close()
        cluster.wait_no_sessions("app_ro")
    assert set(ports) == {s.port for s in cluster.replicas}
    assert all(a != b for a, b in zip(ports, ports[1:])), ports


def test_user_without_password_routes_to_its_pool(proxy, cluster, connect):
    conn = connect("nopw")
    assert port_of(conn) == cluster.primary.port
    assert scalar(conn, "SELECT CURRENT_USER()") == "nopw@%"
