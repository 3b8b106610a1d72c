"""Clients that get TLS wrong, on purpose, against the real binary: each
attack ends its own connection only, within handshake_timeout, with an
access-log line saying so, while a well-behaved client that logged in over
TLS before the attacks keeps getting answers and the process stays alive."""

import socket
import ssl
import subprocess
import time

import pytest

from harness import protocol as p
from harness import tls as t
from harness.accounts import USERS
from harness.clients import scalar
from harness.hostile_clients import StallWatch, SteadyClient
from harness.ops import OpsProxy, quiet_settings

HS = 2.0       # handshake_timeout of the proxy under attack
SLACK = 1.5    # scheduling slack on a busy 2-core machine
PW = USERS["app_rw"]

STALLS = StallWatch()
STALLS.start()


@pytest.fixture(scope="module")
def hostile_tls(myroute_bin, cluster, certs, workdir):
    px = OpsProxy(workdir, "tls-hostile",
                  quiet_settings(cluster, handshake_timeout="%ds" % HS)
                  + t.proxy_tls_settings(certs.proxy_ec), metrics=True)
    px.start()
    ctx = t.client_context(certs.ca)

    def tls_connect(host, port, user, password, **kw):
        return t.pymysql_tls(host, port, user, password, ctx, **kw)
    steady = SteadyClient(px.host, px.port, "app_rw", PW, cluster.primary.port,
                          connect=tls_connect, name="steady-tls")
    assert t.pymysql_view(steady.conn) is not None, "the steady client is not on TLS"
    steady.start()
    try:
        steady.check()
        yield px, steady
    finally:
        steady.stop()
        px.stop()


def assert_healthy(px, steady):
    assert px.alive(), "myroute exited; stderr:\n" + px.log_tail()
    bad = [l for l in px.log_lines() if "panicked" in l or "internal error" in l]
    assert not bad, "myroute hit an internal error:\n" + "\n".join(bad[:5])
    steady.check()


@pytest.fixture
def px(hostile_tls, certs, cluster):
    proxy, steady = hostile_tls
    assert_healthy(proxy, steady)
    yield proxy
    assert_healthy(proxy, steady)
    # A new TLS client still logs in.
    conn = t.pymysql_tls(proxy.host, proxy.port, "app_ro", USERS["app_ro"],
                         t.client_context(certs.ca))
    try:
        assert scalar(conn, "SELECT @@port") in {s.port for s in cluster.replicas}
    finally:
        conn.close()


def greeted(px):
    s = socket.create_connection((px.host, px.port), timeout=10)
    seq, payload = p.read_packet(s)
    assert seq == 0 and payload[:1] == b"\x0a", payload[:8]
    g = p.parse_greeting(payload)
    assert g["capabilities"] & p.CLIENT_SSL
    return s, "%s:%d" % s.getsockname()[:2]


def within(started, elapsed, limit):
    return elapsed < limit + STALLS.stalled(started, started + elapsed)


def access_line(px, addr):
    return px.wait_for_log_line(lambda l: ("client=%s " % addr) in l and "end=" in l, 5,
                                what="the access line of %s" % addr)


def assert_tls_error_end(px, addr):
    line = access_line(px, addr)
    assert "end=tls-error(" in line, line
    return line


def attack(px, data, after_ssl_request=True):
    """Greeting, then (by default) an SSLRequest, then `data`; waits for
    the close.  Returns (client address, bytes received after the
    greeting)."""
    s, addr = greeted(px)
    try:
        if after_ssl_request:
            s.sendall(p.frame(1, p.ssl_request()))
        started = time.monotonic()
        try:
            s.sendall(data)
        except (ConnectionResetError, BrokenPipeError):
            pass  # closed while we were still sending: seen below
        closed, elapsed, got = t.wait_closed(s, HS + SLACK + 3)
    finally:
        s.close()
    assert closed, "still open %.1fs after %r" % (elapsed, data[:16])
    assert within(started, elapsed, HS + SLACK), "closed after %.2fs" % elapsed
    return addr, got


def test_garbage_after_ssl_request(px):
    addr, got = attack(px, b"GET / HTTP/1.1\r\n\r\n" + bytes(range(256)))
    assert_tls_error_end(px, addr)


def test_tls_alert_after_ssl_request(px):
    addr, got = attack(px, t.FATAL_ALERT)
    assert_tls_error_end(px, addr)


def test_client_hello_without_ssl_request(px):
    # A client that speaks TLS at once, as to an HTTPS port.
    addr, got = attack(px, t.client_hello(), after_ssl_request=False)
    assert not got.startswith(b"\x16\x03"), "myroute answered a ClientHello it was not asked for"
    assert_tls_error_end(px, addr)


def test_oversized_record(px):
    addr, got = attack(px, t.oversized_record())
    assert_tls_error_end(px, addr)


def test_oversized_record_after_client_hello(px):
    addr, got = attack(px, t.client_hello() + t.oversized_record())
    assert_tls_error_end(px, addr)


@pytest.mark.parametrize("sent", ["nothing", "half a ClientHello"])
def test_stalled_handshake_is_closed_at_handshake_timeout(px, sent):
    s, addr = greeted(px)
    try:
        s.sendall(p.frame(1, p.ssl_request()))
        if sent != "nothing":
            hello = t.client_hello()
            s.sendall(hello[:len(hello) // 2])
        started = time.monotonic()
        closed, elapsed, got = t.wait_closed(s, HS + SLACK + 5)
    finally:
        s.close()
    assert closed, "a stalled TLS handshake was still open after %.1fs" % elapsed
    assert elapsed >= HS - 0.5, "closed after %.2fs, before handshake_timeout" % elapsed
    assert within(started, elapsed, HS + SLACK), "closed after %.2fs" % elapsed
    line = access_line(px, addr)
    assert "end=timeout(handshake_timeout)" in line or "end=tls-error(" in line, line


def test_tls_1_1_client(px):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = t.client_context(max_version="TLSv1.1")
    s, addr = greeted(px)
    try:
        s.sendall(p.frame(1, p.ssl_request()))
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            ctx.wrap_socket(s)
    finally:
        s.close()
    assert_tls_error_end(px, addr)


def test_renegotiation_is_refused(px, certs):
    # openssl s_client speaks the MySQL preamble itself (-starttls mysql);
    # a line "R" asks for a TLS 1.2 renegotiation.
    proc = subprocess.Popen(["openssl", "s_client", "-connect", "%s:%d" % (px.host, px.port),
                             "-starttls", "mysql", "-tls1_2", "-CAfile", certs.ca.cert],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        out, _ = proc.communicate(b"R\n", timeout=HS + 10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError("s_client did not finish:\n" + out.decode(errors="replace"))
    text = out.decode(errors="replace")
    assert "Verify return code: 0 (ok)" in text, text
    assert "RENEGOTIATING" in text, text
    after = text.split("RENEGOTIATING", 1)[1]
    assert "no renegotiation" in after, text
    assert proc.returncode != 0, text


def test_many_failed_handshakes_leave_the_proxy_serving(px):
    # A burst of the attacks above, interleaved; the fixture checks the
    # well-behaved client and a new TLS login afterwards.
    datas = [b"\x00" * 40, t.FATAL_ALERT, t.oversized_record()[:4096]]
    socks = []
    try:
        for i in range(30):
            s, _ = greeted(px)
            socks.append(s)
            try:
                s.sendall(p.frame(1, p.ssl_request()) + datas[i % len(datas)])
            except (ConnectionResetError, BrokenPipeError):
                pass
        for s in socks:
            closed, elapsed, _ = t.wait_closed(s, HS + SLACK + 3)
            assert closed, "an attacking connection stayed open"
    finally:
        for s in socks:
            s.close()
    m = px.metrics()
    assert m.get("myroute_tls_handshake_failures_total", side="client") >= 30
