"""The PROXY protocol, both ways: the test plays the L4 balancer in front of
myroute (sending a v1 or v2 header), myroute passes the client's address on
to a MariaDB that accepts headers from 127.0.0.1
(proxy_protocol_networks), and MariaDB sees the original client."""

import socket
import struct

import pymysql
import pytest

from harness import protocol as p
from harness import util
from harness.accounts import USERS
from harness.avail_servers import OwnCluster
from harness.avail_tools import access_records, wait_access_record
from harness.clients import scalar
from harness.ops import (V2_SIGNATURE, client_addr, connect_with_header, proxy_v1, proxy_v2,
                         proxy_v2_local)
from harness.proxy import pool_settings, user_settings

PP_USER = "pp"
PP_PASSWORD = "pp-Secret-3389-jujube"
CLIENT_IP = "10.1.2.3"


@pytest.fixture(scope="module")
def pp_server():
    """One MariaDB that takes PROXY headers from 127.0.0.1, with an account
    that may log in from 10.1.% only."""
    c = OwnCluster([{"extra_args": ["--proxy-protocol-networks=127.0.0.1"]}],
                   prefix="myroute-e2e-pp-").start()
    try:
        s = c[0]
        s.admin_query("CREATE USER %s@'10.1.%%' IDENTIFIED VIA mysql_native_password "
                      "USING PASSWORD(%s)", (PP_USER, PP_PASSWORD))
        s.admin_query("GRANT SELECT ON app.* TO %s@'10.1.%%'", (PP_USER,))
        yield s
    finally:
        c.stop()


def settings(server, outgoing, trusted="127.0.0.1"):
    out = [("connect_timeout", "2s"), ("health.interval", "500ms"), ("shutdown_timeout", "2s")]
    if trusted:
        out.append(("proxy_protocol_from", trusted))
    out += pool_settings("pp", [server.address])
    if outgoing:
        out.append(("pool.pp.proxy_protocol", outgoing))
    return (out + user_settings(PP_USER, PP_PASSWORD, "pp")
            + user_settings("app_rw", USERS["app_rw"], "pp"))


HEADERS = {"v1": proxy_v1, "v2": proxy_v2}


def backend_host(server, conn):
    """The Host column of the server's processlist for this session."""
    cid = scalar(conn, "SELECT CONNECTION_ID()")
    rows = server.admin_query("SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = %s",
                              (cid,))
    return rows[0][0]


@pytest.mark.parametrize("incoming,outgoing",
                         [("v1", "v1"), ("v2", "v2"), ("v1", "v2"), ("v2", "v1")])
def test_client_address_reaches_the_server(make_ops_proxy, pp_server, incoming, outgoing):
    px = make_ops_proxy("pp-%s-%s" % (incoming, outgoing), settings(pp_server, outgoing))
    sport = {"v1v1": 40001, "v2v2": 40002, "v1v2": 40003, "v2v1": 40004}[incoming + outgoing]
    header = HEADERS[incoming](CLIENT_IP, "127.0.0.1", sport, px.port)
    conn = connect_with_header(px.host, px.port, header, PP_USER, PP_PASSWORD)
    try:
        # MariaDB saw the balancer's client: the account for 10.1.% let it in.
        assert scalar(conn, "SELECT USER()") == "%s@%s" % (PP_USER, CLIENT_IP)
        assert scalar(conn, "SELECT CURRENT_USER()") == "%s@10.1.%%" % PP_USER
        assert backend_host(pp_server, conn) == "%s:%d" % (CLIENT_IP, sport)
        row = px.client_row("%s:%d" % (CLIENT_IP, sport))
        assert row is not None, px.clients()
        assert (row["user"], row["state"]) == (PP_USER, "RELAYING"), row
    finally:
        conn.close()
    rec = wait_access_record(px, lambda r: r["user"] == PP_USER,
                             what="the access line of the proxied client")
    assert rec["client"] == "%s:%d" % (CLIENT_IP, sport), rec


def test_header_after_the_greeting(make_ops_proxy, pp_server):
    px = make_ops_proxy("pp-late", settings(pp_server, "v1"))
    with p.RawClient(px.host, px.port) as c:
        c.read_greeting()
        c.sock.sendall(proxy_v1(CLIENT_IP, "127.0.0.1", 40100, px.port))
        c.login(PP_USER, PP_PASSWORD)
        kind, rows = c.query("SELECT USER()")
        assert rows == [[("%s@%s" % (PP_USER, CLIENT_IP)).encode()]]


def test_without_a_header_a_trusted_peer_is_itself(make_ops_proxy, pp_server):
    px = make_ops_proxy("pp-none", settings(pp_server, "v1"))
    conn = pymysql.connect(host=px.host, port=px.port, user="app_rw", password=USERS["app_rw"],
                           ssl_disabled=True, connect_timeout=10)
    try:
        assert scalar(conn, "SELECT USER()") == "app_rw@127.0.0.1"
        assert px.client_row(client_addr(conn)) is not None
    finally:
        conn.close()
    # The 10.1.% account is out of reach without a header.
    with pytest.raises(pymysql.err.OperationalError) as info:
        pymysql.connect(host=px.host, port=px.port, user=PP_USER, password=PP_PASSWORD,
                        ssl_disabled=True, connect_timeout=10)
    assert info.value.args[0] == 1045


@pytest.mark.parametrize("kind", ["v1 UNKNOWN", "v2 LOCAL"])
def test_unknown_and_local_keep_the_tcp_peer(make_ops_proxy, pp_server, kind):
    px = make_ops_proxy("pp-unknown", settings(pp_server, "v2"))
    header = b"PROXY UNKNOWN\r\n" if kind == "v1 UNKNOWN" else proxy_v2_local()
    conn = connect_with_header(px.host, px.port, header, "app_rw", USERS["app_rw"])
    try:
        assert scalar(conn, "SELECT USER()") == "app_rw@127.0.0.1"
        peer = client_addr(conn)
        row = px.client_row(peer)
        assert row is not None and row["user"] == "app_rw", px.clients()
        assert backend_host(pp_server, conn) == peer
    finally:
        conn.close()
    rec = wait_access_record(px, lambda r: r["user"] == "app_rw", what="the access line")
    assert rec["client"] == peer


def err_after(px, header):
    """Sends `header` on a new connection, then reads packets until an ERR
    (returned as ServerError) or the close (None)."""
    sock = socket.create_connection((px.host, px.port), timeout=10)
    try:
        sock.sendall(header)
        for _ in range(3):
            try:
                _, payload = p.read_packet(sock)
            except (p.ConnectionClosed, ConnectionResetError):
                return None
            if payload[:1] == b"\xff":
                return p.parse_err(payload)
        return None
    finally:
        sock.close()


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_header_from_an_untrusted_peer_is_refused(make_ops_proxy, pp_server, version):
    px = make_ops_proxy("pp-untrusted", settings(pp_server, "v1", trusted="10.9.0.0/16, ::1/128"))
    warnings = len([l for l in px.log_lines() if "WARN" in l])
    err = err_after(px, HEADERS[version](CLIENT_IP, "127.0.0.1", 40200, px.port))
    assert err is not None, "no ERR packet"
    assert (err.code, err.state) == (1043, "08S01"), err
    assert err.message.startswith("Bad handshake"), err
    util.wait_until(lambda: len([l for l in px.log_lines() if "WARN" in l]) > warnings, 5,
                    what=lambda: "a warning about the untrusted header; log:\n" + px.log_tail())
    assert not [r for r in access_records(px) if r["client"].startswith(CLIENT_IP)]
    assert px.alive()


def test_a_header_without_proxy_protocol_from_is_refused(make_ops_proxy, pp_server):
    px = make_ops_proxy("pp-off", settings(pp_server, None, trusted=None))
    err = err_after(px, proxy_v1(CLIENT_IP, "127.0.0.1", 40300, px.port))
    assert err is not None and (err.code, err.state) == (1043, "08S01"), err


@pytest.mark.parametrize("header", [b"PROXY TCP4 10.1.2.3\r\n",
                                    b"PROXY TCP4 10.1.2.300 127.0.0.1 40000 3306\r\n",
                                    b"PROXY TCP9 10.1.2.3 127.0.0.1 40000 3306\r\n",
                                    b"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c"
                                    + bytes([10, 1, 2, 3, 127, 0, 0, 1, 0x9c, 0x40, 0x0c, 0xea])],
                         ids=["short", "bad-ip", "bad-proto", "v2-bad-version"])
def test_a_malformed_header_from_a_trusted_peer(make_ops_proxy, pp_server, header):
    px = make_ops_proxy("pp-bad", settings(pp_server, "v1"))
    err = err_after(px, header)
    assert err is not None and (err.code, err.state) == (1043, "08S01"), err
    assert px.alive()
    # The proxy goes on serving.
    conn = connect_with_header(px.host, px.port, proxy_v1(CLIENT_IP, "127.0.0.1", 40400, px.port),
                               PP_USER, PP_PASSWORD)
    try:
        assert scalar(conn, "SELECT USER()") == "%s@%s" % (PP_USER, CLIENT_IP)
    finally:
        conn.close()


def test_errors_name_the_proxied_address(make_ops_proxy, pp_server):
    px = make_ops_proxy("pp-err", settings(pp_server, "v1"))
    with pytest.raises(pymysql.err.OperationalError) as info:
        connect_with_header(px.host, px.port, proxy_v1(CLIENT_IP, "127.0.0.1", 40500, px.port),
                            PP_USER, "not-the-password")
    assert info.value.args == (
        1045, "Access denied for user '%s'@'%s' (using password: YES)" % (PP_USER, CLIENT_IP))
    rec = wait_access_record(px, lambda r: r["end"] == "auth-failed", what="the failed login")
    assert rec["client"] == "%s:40500" % CLIENT_IP


def test_reload_starts_trusting_a_balancer(make_ops_proxy, pp_server):
    px = make_ops_proxy("pp-reload", settings(pp_server, "v1", trusted="10.9.0.0/16"))
    header = proxy_v1(CLIENT_IP, "127.0.0.1", 40600, px.port)
    err = err_after(px, header)
    assert err is not None and err.code == 1043, err
    px.rewrite(settings(pp_server, "v1", trusted="10.9.0.0/16, 127.0.0.0/8"))
    px.admin_ok("RELOAD")
    conn = connect_with_header(px.host, px.port, header, PP_USER, PP_PASSWORD)
    try:
        assert scalar(conn, "SELECT USER()") == "%s@%s" % (PP_USER, CLIENT_IP)
    finally:
        conn.close()


def v2_tcp6(src, dst, sport, dport):
    addrs = (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
             + struct.pack(">HH", sport, dport))
    return V2_SIGNATURE + bytes([0x21, 0x21]) + struct.pack(">H", len(addrs)) + addrs


def v2_with_tlvs(src, dst, sport, dport):
    """A v2 header with TLVs after the addresses (as AWS NLB or HAProxy's
    send-proxy-v2 options add): a NOOP and an AUTHORITY."""
    tlvs = bytes([0x04, 0x00, 0x03]) + b"\0\0\0" + bytes([0x02, 0x00, 0x0b]) + b"db.internal"
    addrs = (socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack(">HH", sport, dport))
    return (V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack(">H", len(addrs) + len(tlvs))
            + addrs + tlvs)


@pytest.mark.parametrize("outgoing", ["v1", "v2"])
@pytest.mark.parametrize("kind", ["v1 TCP6", "v2 TCP6", "v2 with TLVs"])
def test_ipv6_clients_and_tlvs(make_ops_proxy, pp_server, kind, outgoing):
    px = make_ops_proxy("pp-more", settings(pp_server, outgoing))
    if kind == "v1 TCP6":
        header, ip = b"PROXY TCP6 2001:db8::7 ::1 40701 3306\r\n", "2001:db8::7"
    elif kind == "v2 TCP6":
        header, ip = v2_tcp6("2001:db8::8", "::1", 40702, 3306), "2001:db8::8"
    else:
        header, ip = v2_with_tlvs("10.1.2.9", "127.0.0.1", 40703, 3306), "10.1.2.9"
    conn = connect_with_header(px.host, px.port, header, "app_rw", USERS["app_rw"])
    try:
        assert scalar(conn, "SELECT USER()") == "app_rw@" + ip
        shown = [r["client"] for r in px.clients()]
        assert len(shown) == 1 and ip in shown[0], shown
    finally:
        conn.close()
