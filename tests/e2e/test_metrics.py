"""The HTTP responder: GET /metrics in the Prometheus text format (parsed
with prometheus_client's parser), GET /ready, and its answers to other
requests."""

import re
import socket
import subprocess

import pymysql
import pytest

from harness import util
from harness.accounts import USERS
from harness.avail_servers import own_servers_fixtures
from harness.avail_tools import port_of
from harness.clients import login, scalar
from harness.ops import END_REASONS, Metrics, quiet_settings, raw_http
from harness.proxy import pool_settings, user_settings

FAMILIES = {
    "myroute_info": "gauge",
    "myroute_uptime_seconds": "gauge",
    "myroute_clients_active": "gauge",
    "myroute_connections_accepted_total": "counter",
    "myroute_connections_refused_total": "counter",
    "myroute_logins_total": "counter",
    "myroute_client_logins_total": "counter",
    "myroute_tls_handshake_failures_total": "counter",
    "myroute_bytes_total": "counter",
    "myroute_connection_ends_total": "counter",
    "myroute_server_up": "gauge",
    "myroute_server_drained": "gauge",
    "myroute_server_active_connections": "gauge",
    "myroute_server_connections_total": "counter",
    "myroute_server_failures_total": "counter",
    "myroute_pool_servers": "gauge",
    "myroute_pool_servers_up": "gauge",
    "myroute_pool_clients": "gauge",
    "myroute_pool_connections_total": "counter",
    "myroute_handshake_seconds": "histogram",
    "myroute_backend_login_seconds": "histogram",
    "myroute_reloads_total": "counter",
}
BUCKETS = ["0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
           "1", "2.5", "5", "10", "+Inf"]
PER_SERVER = ["myroute_server_up", "myroute_server_drained", "myroute_server_active_connections",
              "myroute_server_connections_total", "myroute_server_failures_total"]
PER_POOL = ["myroute_pool_servers", "myroute_pool_servers_up", "myroute_pool_clients",
            "myroute_pool_connections_total"]


def failed_login(px):
    with pytest.raises(pymysql.err.OperationalError) as info:
        login(px, "app_ro", password="not-the-password")
    assert info.value.args[0] == 1045


def metrics_proxy(make_ops_proxy, cluster, name, **top):
    return make_ops_proxy(name, quiet_settings(cluster, **top), metrics=True)


def ends(m, reason):
    return m.value("myroute_connection_ends_total", reason=reason) or 0


# --- format ------------------------------------------------------------------------------

def test_metrics_families_types_and_labels(make_ops_proxy, cluster, myroute_bin):
    px = metrics_proxy(make_ops_proxy, cluster, "families")
    c = login(px, "app_ro")
    scalar(c, "SELECT 1")
    c.close()
    failed_login(px)
    util.wait_until(lambda: ends(px.metrics(), "auth_failed") == 1, 5,
                    what="the failed login's end to be counted")

    status, headers, body = px.http("GET", "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4"), headers
    assert headers.get("connection", "").lower() == "close", headers
    text = body.decode()
    m = Metrics(text)

    for name, kind in FAMILIES.items():
        assert m.type_of(name) == kind, (name, m.type_of(name))
        assert re.search(r"^# HELP %s \S" % re.escape(name), text, re.M), "no HELP for " + name
        assert re.search(r"^# TYPE %s %s$" % (re.escape(name), kind), text, re.M), \
            "no TYPE for " + name
    for fam in m.families.values():
        assert fam.name.startswith("myroute_"), fam.name
        assert fam.type != "unknown", "%s has no TYPE" % fam.name

    version = subprocess.run([myroute_bin, "--version"], capture_output=True, text=True,
                             timeout=10).stdout.split()[-1]
    assert m.series("myroute_info") == {frozenset({("version", version)}): 1.0}
    addresses = {s.address for s in cluster.servers}
    for name in PER_SERVER:
        labels = {dict(k)["server"] for k in m.series(name)}
        assert labels == addresses, (name, labels)
        assert all(len(k) == 1 for k in m.series(name)), m.series(name)
    for name in PER_POOL:
        assert {dict(k)["pool"] for k in m.series(name)} == {"primary", "replicas"}, name
    assert m.get("myroute_pool_servers", pool="primary") == 1
    assert m.get("myroute_pool_servers", pool="replicas") == 2
    assert {dict(k)["result"] for k in m.series("myroute_logins_total")} >= {"ok", "failed"}
    assert {dict(k)["result"] for k in m.series("myroute_logins_total")} <= {"ok", "failed"}
    assert {dict(k)["direction"] for k in m.series("myroute_bytes_total")} == {"in", "out"}
    assert {dict(k)["transport"] for k in m.series("myroute_client_logins_total")} == {
        "tls", "plain"}
    assert {dict(k)["side"] for k in m.series("myroute_tls_handshake_failures_total")} == {
        "client", "server"}
    reasons = {dict(k)["reason"] for k in m.series("myroute_connection_ends_total")}
    assert {"client_closed", "auth_failed"} <= reasons <= set(END_REASONS), reasons
    for name in ("myroute_server_up", "myroute_server_drained"):
        assert set(m.series(name).values()) <= {0.0, 1.0}, m.series(name)

    for name in ("myroute_handshake_seconds", "myroute_backend_login_seconds"):
        buckets = {s.labels["le"]: s.value for s in m.family(name).samples
                   if s.name == name + "_bucket"}
        assert [float(le) for le in buckets] == [float(b) for b in BUCKETS], list(buckets)
        values = list(buckets.values())
        assert values == sorted(values), "%s buckets not cumulative: %r" % (name, buckets)
        assert buckets["+Inf"] == m.get(name + "_count")
        assert m.get(name + "_sum") >= 0


def test_counters_follow_activity(make_ops_proxy, cluster, held):
    px = metrics_proxy(make_ops_proxy, cluster, "counters")
    m0 = px.metrics()
    for _ in range(3):
        c = login(px, "app_ro")
        assert len(scalar(c, "SELECT REPEAT('m', 100000)")) == 100000
        assert scalar(c, "SELECT LENGTH('%s')" % ("n" * 50000)) == 50000
        c.close()
    failed_login(px)

    def settled():
        m = px.metrics()
        return m if (ends(m, "client_closed") == ends(m0, "client_closed") + 3
                     and ends(m, "auth_failed") == ends(m0, "auth_failed") + 1) else None
    m1 = util.wait_until(settled, 5, what="3 client_closed and 1 auth_failed ends")

    def delta(name, **labels):
        return (m1.value(name, **labels) or 0) - (m0.value(name, **labels) or 0)
    assert delta("myroute_logins_total", result="ok") == 3
    assert delta("myroute_logins_total", result="failed") == 1
    assert delta("myroute_connections_accepted_total") == 4
    assert delta("myroute_connections_refused_total") == 0
    assert delta("myroute_bytes_total", direction="out") >= 300000
    assert delta("myroute_bytes_total", direction="in") >= 150000
    assert delta("myroute_bytes_total", direction="in") < 300000
    assert delta("myroute_pool_connections_total", pool="replicas") == 3
    assert delta("myroute_pool_connections_total", pool="primary") == 0
    assert sum(delta("myroute_server_connections_total", server=s.address)
               for s in cluster.replicas) == 3
    assert m1.get("myroute_clients_active") == 0
    # The console tells the same story.
    stats = px.stats()
    assert stats["logins_ok"] == m1.get("myroute_logins_total", result="ok")
    assert stats["logins_failed"] == m1.get("myroute_logins_total", result="failed")
    assert stats["connections_accepted"] == m1.get("myroute_connections_accepted_total")


def test_histograms_count_logins(make_ops_proxy, cluster):
    px = metrics_proxy(make_ops_proxy, cluster, "histograms")
    for i in range(4):
        c = login(px, "app_rw" if i % 2 else "app_ro")
        c.close()
    m = px.metrics()
    for name in ("myroute_handshake_seconds", "myroute_backend_login_seconds"):
        assert m.get(name + "_count") == 4, name
        assert 0 < m.get(name + "_sum") < 4 * 5, name
        assert m.get(name + "_bucket", le="+Inf") == 4
    # A failed login never reaches a backend.
    failed_login(px)
    assert px.metrics().get("myroute_backend_login_seconds_count") == 4


def test_gauges_follow_held_connections(make_ops_proxy, cluster, held):
    px = metrics_proxy(make_ops_proxy, cluster, "gauges")
    held += [login(px, "app_ro") for _ in range(3)] + [login(px, "app_rw")]
    ports = [port_of(c) for c in held]
    m = px.metrics()
    assert m.get("myroute_clients_active") == 4
    assert m.get("myroute_pool_clients", pool="replicas") == 3
    assert m.get("myroute_pool_clients", pool="primary") == 1
    for s in cluster.servers:
        assert m.get("myroute_server_active_connections", server=s.address) == ports.count(s.port)
    for c in held:
        c.close()
    util.wait_until(lambda: px.metrics().get("myroute_clients_active") == 0, 5,
                    what="clients_active back to 0")
    m = px.metrics()
    assert all(v == 0 for v in m.series("myroute_server_active_connections").values())
    assert all(v == 0 for v in m.series("myroute_pool_clients").values())


def test_drained_gauge(make_ops_proxy, cluster):
    px = metrics_proxy(make_ops_proxy, cluster, "drained")
    r1 = cluster.replicas[0]
    assert px.metrics().get("myroute_server_drained", server=r1.address) == 0
    px.admin_ok("DRAIN SERVER '%s'" % r1.address)
    m = px.metrics()
    assert m.get("myroute_server_drained", server=r1.address) == 1
    assert sum(m.series("myroute_server_drained").values()) == 1
    px.admin_ok("ENABLE SERVER '%s'" % r1.address)
    assert px.metrics().get("myroute_server_drained", server=r1.address) == 0


def test_refused_connections_are_counted(make_ops_proxy, cluster, held):
    px = metrics_proxy(make_ops_proxy, cluster, "refused", max_clients="2")
    held += [login(px, "app_ro") for _ in range(2)]
    with pytest.raises(pymysql.err.OperationalError) as info:
        login(px, "app_ro")
    assert info.value.args[0] == 1040
    util.wait_until(lambda: px.metrics().get("myroute_connections_refused_total") == 1, 5,
                    what="connections_refused_total 1")
    assert px.stats()["connections_refused"] == 1


def test_reloads_are_counted(make_ops_proxy, cluster):
    px = metrics_proxy(make_ops_proxy, cluster, "reloads")
    px.admin_ok("RELOAD")
    px.rewrite(raw_lines=["frobnicate = yes"])
    with pytest.raises(pymysql.err.MySQLError):
        px.admin_ok("RELOAD")
    m = px.metrics()
    assert m.get("myroute_reloads_total", result="ok") == 1
    assert m.get("myroute_reloads_total", result="failed") == 1


# --- HTTP ----------------------------------------------------------------------------------

def test_ready_and_http_errors(make_ops_proxy, cluster):
    px = metrics_proxy(make_ops_proxy, cluster, "http")
    status, headers, body = px.http("GET", "/ready")
    assert (status, body) == (200, b"ready\n")
    status, _, _ = px.http("GET", "/nope")
    assert status == 404
    status, headers, _ = px.http("POST", "/metrics")
    assert status == 405
    assert headers.get("allow") == "GET", headers
    for garbage in (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\0" * 40 + b"\r\n\r\n",
                    b"this is not http\r\n\r\n", b"GET\r\n\r\n",
                    b"GET /metrics SPDY/9\r\n\r\n"):
        reply = raw_http(px.host, px.metrics_port, garbage)
        assert reply == b"" or reply.startswith(b"HTTP/1.1 400"), reply[:200]
    # Still answering, and the proxy too.
    assert px.http("GET", "/metrics")[0] == 200
    c = login(px, "app_rw")
    try:
        assert scalar(c, "SELECT 1") == 1
    finally:
        c.close()


def test_a_silent_http_client_blocks_nothing(make_ops_proxy, cluster):
    px = metrics_proxy(make_ops_proxy, cluster, "silent")
    silent = socket.create_connection((px.host, px.metrics_port), timeout=5)
    half = socket.create_connection((px.host, px.metrics_port), timeout=5)
    try:
        half.sendall(b"GET /metr")
        assert px.http("GET", "/metrics", timeout=3)[0] == 200
        c = login(px, "app_ro", connect_timeout=3, read_timeout=3)
        try:
            assert scalar(c, "SELECT 1") == 1
        finally:
            c.close()
        assert px.admin_rows("SHOW VERSION")
    finally:
        silent.close()
        half.close()


# --- health: servers and pools down ------------------------------------------------------

own_cluster, own = own_servers_fixtures(2, prefix="myroute-e2e-metrics-")


def own_settings(own, fallback=False):
    s1, s2 = own.servers
    out = ([("connect_timeout", "1s"), ("health.interval", "200ms"), ("health.fall", "1"),
            ("health.rise", "1"), ("shutdown_timeout", "2s")]
           + pool_settings("a", [s1.address]) + pool_settings("b", [s2.address])
           + user_settings("app_rw", USERS["app_rw"], "a")
           + user_settings("app_ro", USERS["app_ro"], "b"))
    if fallback:
        out.append(("pool.b.fallback", "a"))
    return out


def ready(px):
    status, _, body = px.http("GET", "/ready")
    return status, body


def test_server_down_and_ready(make_ops_proxy, own):
    s1, s2 = own.servers
    px = make_ops_proxy("down", own_settings(own), metrics=True)
    util.wait_until(lambda: ready(px) == (200, b"ready\n"), 5, what="ready")
    m = px.metrics()
    assert m.get("myroute_server_up", server=s2.address) == 1
    failures = m.get("myroute_server_failures_total", server=s2.address)

    s2.kill()
    util.wait_until(lambda: px.metrics().get("myroute_server_up", server=s2.address) == 0, 5,
                    what="server_up 0 for the killed server")
    m = px.metrics()
    assert m.get("myroute_server_up", server=s1.address) == 1
    assert m.get("myroute_pool_servers_up", pool="b") == 0
    assert m.get("myroute_pool_servers_up", pool="a") == 1
    assert m.get("myroute_server_failures_total", server=s2.address) > failures
    status, body = ready(px)
    assert status == 503 and body.startswith(b"not ready"), (status, body)

    s2.restart()
    util.wait_until(lambda: ready(px)[0] == 200, 10, what="ready again")
    assert px.metrics().get("myroute_server_up", server=s2.address) == 1


def test_ready_counts_a_fallback(make_ops_proxy, own):
    s1, s2 = own.servers
    px = make_ops_proxy("fallback", own_settings(own, fallback=True), metrics=True)
    util.wait_until(lambda: ready(px)[0] == 200, 5, what="ready")
    s2.kill()
    util.wait_until(lambda: px.metrics().get("myroute_server_up", server=s2.address) == 0, 5,
                    what="server_up 0 for the killed server")
    # Pool b has no server up but falls back to a: still ready.
    assert ready(px) == (200, b"ready\n")
    s1.kill()
    util.wait_until(lambda: ready(px)[0] == 503, 5, what="not ready with every server down")
