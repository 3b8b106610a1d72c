"""TLS between myroute and the servers: `pool.NAME.tls` in each mode
against MariaDB servers that serve TLS (harness.mariadb.TlsCluster), with
the right and a wrong CA, the right and a wrong pinned fingerprint, the
right and a wrong name, a client certificate, a server with
require_secure_transport=ON, health checks over TLS, the SHOW SERVERS tls
column, a fake server that shows the packet order, and a 200 MB result
read slowly through TLS on both legs.

What MariaDB says about a session (`Ssl_version`, `Ssl_cipher`) describes
the leg between myroute and the server, so a query through myroute shows
whether that leg uses TLS."""

import ssl
import time

import pymysql
import pytest

from harness import protocol as p
from harness import tls as t
from harness import util
from harness.accounts import (FAKE_PASSWORD, FAKE_USER, TLS_MONITOR_PASSWORD, TLS_MONITOR_USER,
                              USERS, X509_PASSWORD, X509_USER)
from harness.clients import login, pymysql_connect, scalar
from harness.fake_backend import FakeBackend, assert_answers
from harness.ops import SERVER_COLUMNS
from harness.proxy import pool_settings, user_settings

PW = USERS["app_rw"]
POOL = "tlspool"


def leg_settings(server, mode=None, user="app_rw", password=None, monitor=False, top=(),
                 **tls_keys):
    """One pool POOL with `server`, `user` routed to it, and the pool's TLS
    keys (mode None: none written)."""
    out = [("connect_timeout", "2s"), ("health.interval", "500ms"), ("shutdown_timeout", "2s")]
    out += list(top)
    if monitor:
        out += [("health.user", TLS_MONITOR_USER), ("health.password", TLS_MONITOR_PASSWORD)]
    out += pool_settings(POOL, [server.address])
    if mode is not None:
        out += t.pool_tls_settings(POOL, mode, **tls_keys)
    out += user_settings(user, password or USERS.get(user, X509_PASSWORD), POOL)
    return out


def server_leg(conn):
    """The TLS protocol of the leg myroute -> server ('' for plaintext),
    as the server reports it."""
    with conn.cursor() as cur:
        cur.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
        rows = cur.fetchall()
    return rows[0][1]


def leg_of_new_login(px, user="app_rw", password=None):
    conn = login(px, user, password) if password is None else pymysql_connect(
        px.host, px.port, user, password)
    try:
        return server_leg(conn), scalar(conn, "SELECT @@port")
    finally:
        conn.close()


def refused(px, pool=POOL, user="app_rw", password=PW):
    """The error a client gets when no server of the pool can be used:
    ERR 1429 naming the pool; returns its message."""
    with pytest.raises(pymysql.err.OperationalError) as info:
        pymysql_connect(px.host, px.port, user, password)
    code, msg = info.value.args
    assert code == 1429, info.value.args
    assert msg.startswith("Unable to connect to pool '%s': " % pool), msg
    return msg


def assert_unusable(px, server, words):
    """A client of POOL gets ERR 1429 naming the server and what went
    wrong (one of `words`, case-insensitive), and myroute keeps running."""
    msg = refused(px)
    assert server.address in msg, msg
    assert any(w.lower() in msg.lower() for w in words), msg
    assert px.alive()


CERT_WORDS = ("certificate", "UnknownIssuer", "issuer")
NAME_WORDS = ("name", "NotValidForName", "certificate")
PIN_WORDS = ("fingerprint", "pin", "sha256", "sha-256")
NO_TLS_WORDS = ("TLS", "SSL")


# --- each mode ------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", [None, "off"], ids=["default", "off"])
def test_off_is_plaintext(make_proxy, tls_cluster, mode):
    s = tls_cluster.tls
    px = make_proxy("off", leg_settings(s, mode))
    assert leg_of_new_login(px) == ("", s.port)


def test_preferred_uses_tls_when_the_server_offers_it(make_proxy, tls_cluster):
    s = tls_cluster.tls
    px = make_proxy("preferred", leg_settings(s, "preferred"))
    version, port = leg_of_new_login(px)
    assert version in ("TLSv1.2", "TLSv1.3") and port == s.port


def test_preferred_falls_back_to_plaintext(make_proxy, cluster):
    s = cluster.primary
    px = make_proxy("preferred-plain", leg_settings(s, "preferred"))
    assert leg_of_new_login(px) == ("", s.port)


def test_required_does_not_verify(make_proxy, tls_cluster):
    # No CA given: the server's certificate is not checked, only TLS is.
    s = tls_cluster.tls
    px = make_proxy("required", leg_settings(s, "required"))
    version, port = leg_of_new_login(px)
    assert version in ("TLSv1.2", "TLSv1.3") and port == s.port


def test_required_fails_against_a_plaintext_server(make_proxy, cluster):
    s = cluster.primary
    px = make_proxy("required-plain", leg_settings(s, "required"))
    assert_unusable(px, s, NO_TLS_WORDS)


def test_verify_ca_with_the_right_ca(make_proxy, tls_cluster, certs):
    s = tls_cluster.tls
    px = make_proxy("verify-ca", leg_settings(s, "verify_ca", ca=certs.ca))
    version, port = leg_of_new_login(px)
    assert version in ("TLSv1.2", "TLSv1.3") and port == s.port


def test_verify_ca_does_not_check_the_name(make_proxy, tls_cluster, certs):
    s = tls_cluster.tls
    px = make_proxy("verify-ca-name", leg_settings(s, "verify_ca", ca=certs.ca,
                                                   name="db.invalid"))
    assert leg_of_new_login(px)[0] in ("TLSv1.2", "TLSv1.3")


@pytest.mark.parametrize("mode", ["verify_ca", "verify_identity"])
def test_wrong_ca_fails(make_proxy, tls_cluster, certs, mode):
    s = tls_cluster.tls
    px = make_proxy("wrong-ca", leg_settings(s, mode, ca=certs.wrong_ca))
    assert_unusable(px, s, CERT_WORDS)


@pytest.mark.parametrize("name", [None, "localhost", "127.0.0.1"],
                         ids=["default", "localhost", "ip"])
def test_verify_identity_with_a_right_name(make_proxy, tls_cluster, certs, name):
    # The default is the host as written in `servers`: 127.0.0.1, which
    # the server's certificate carries as an IP address.
    s = tls_cluster.tls
    px = make_proxy("identity", leg_settings(s, "verify_identity", ca=certs.ca, name=name))
    version, port = leg_of_new_login(px)
    assert version in ("TLSv1.2", "TLSv1.3") and port == s.port


def test_verify_identity_with_a_wrong_name(make_proxy, tls_cluster, certs):
    s = tls_cluster.tls
    px = make_proxy("identity-wrong", leg_settings(s, "verify_identity", ca=certs.ca,
                                                   name="db.invalid"))
    assert_unusable(px, s, NAME_WORDS)


@pytest.mark.parametrize("form", ["openssl", "lower-hex"])
def test_pinned_fingerprint_matches(make_proxy, tls_cluster, certs, form):
    s = tls_cluster.tls
    fp = certs.server.openssl_fingerprint()  # as `openssl x509 -fingerprint -sha256` prints it
    assert t.parse_fingerprint(fp).hex() == certs.server.sha256
    pin = "sha256:" + (fp if form == "openssl" else fp.replace(":", "").lower())
    px = make_proxy("pin", leg_settings(s, "required", fingerprint=pin))
    version, port = leg_of_new_login(px)
    assert version in ("TLSv1.2", "TLSv1.3") and port == s.port


@pytest.mark.parametrize("mode,ca", [("required", None), ("verify_ca", "ca")])
def test_pinned_fingerprint_mismatch_fails(make_proxy, tls_cluster, certs, mode, ca):
    s = tls_cluster.tls
    pin = "sha256:" + certs.proxy_ec.fingerprint  # some other certificate's
    px = make_proxy("pin-wrong", leg_settings(s, mode, fingerprint=pin,
                                              ca=getattr(certs, ca) if ca else None))
    assert_unusable(px, s, PIN_WORDS)


def test_client_certificate(make_proxy, tls_cluster, certs):
    s = tls_cluster.tls
    px = make_proxy("client-cert", leg_settings(s, "verify_ca", user=X509_USER,
                                                password=X509_PASSWORD, ca=certs.ca,
                                                client=certs.client))
    conn = pymysql_connect(px.host, px.port, X509_USER, X509_PASSWORD)
    try:
        assert scalar(conn, "SELECT CURRENT_USER()") == X509_USER + "@%"
        assert server_leg(conn) in ("TLSv1.2", "TLSv1.3")
    finally:
        conn.close()


def test_without_the_client_certificate_the_server_refuses(make_proxy, tls_cluster, certs):
    s = tls_cluster.tls
    px = make_proxy("no-client-cert", leg_settings(s, "verify_ca", user=X509_USER,
                                                   password=X509_PASSWORD, ca=certs.ca))
    with pytest.raises(pymysql.err.OperationalError) as info:
        pymysql_connect(px.host, px.port, X509_USER, X509_PASSWORD)
    assert info.value.args == (
        1045, "Access denied for user '%s'@'127.0.0.1' (using password: YES)" % X509_USER)


# --- health checks and SHOW SERVERS ------------------------------------------------------------

def server_row(px, server):
    rows = px.server_rows(server.address)
    assert len(rows) == 1, rows
    return rows[0]


def wait_state(px, server, state, timeout=10):
    return util.wait_until(
        lambda: (lambda r: r if r["state"] == state else None)(server_row(px, server)), timeout,
        what=lambda: "%s %s: %r" % (server.address, state, px.servers()))


def test_secure_transport_server_with_tls_off_fails_cleanly(make_ops_proxy, tls_cluster, held):
    s = tls_cluster.secure
    # app_rw goes to the other TLS server, which takes plaintext too (both
    # have the health-check account).
    body = (leg_settings(s, "off", user="app_ro", monitor=True)
            + pool_settings("other", [tls_cluster.tls.address])
            + user_settings("app_rw", PW, "other"))
    px = make_ops_proxy("secure-off", body, metrics=True)
    other = login(px, "app_rw")
    held.append(other)
    # The check logs in over plaintext and is refused.
    row = wait_state(px, s, "down")
    assert row["tls"] in (None, "off"), row
    msg = refused(px, user="app_ro", password=USERS["app_ro"])
    assert s.address in msg, msg
    # The rest of the proxy goes on.
    assert scalar(other, "SELECT @@port") == tls_cluster.tls.port
    assert leg_of_new_login(px) == ("", tls_cluster.tls.port)
    assert server_row(px, tls_cluster.tls)["state"] == "up"
    assert px.alive()


@pytest.mark.parametrize("mode", ["required", "verify_identity"])
def test_secure_transport_server_is_up_over_tls(make_ops_proxy, tls_cluster, certs, mode):
    s = tls_cluster.secure
    keys = {"ca": certs.ca} if mode == "verify_identity" else {}
    px = make_ops_proxy("secure-" + mode, leg_settings(s, mode, user="app_ro", monitor=True,
                                                        **keys))
    admin = px.admin()
    try:
        names = [d[0] for d in _describe(admin, "SHOW SERVERS")]
        assert names == SERVER_COLUMNS
        row = util.wait_until(
            lambda: (lambda r: r if r["state"] == "up" and r["tls"] not in (None, "off")
                     else None)(server_row(px, s)), 10,
            what=lambda: "the secure server up over TLS: %r" % px.servers())
    finally:
        admin.close()
    assert row["tls"] in ("TLSv1.2", "TLSv1.3"), row
    assert row["last_check"] == "ok", row
    version, port = leg_of_new_login(px, "app_ro")
    assert version == row["tls"] and port == s.port


def _describe(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        cur.fetchall()
        return cur.description


def test_show_servers_tls_column(make_ops_proxy, tls_cluster, cluster, certs):
    body = (pool_settings("plain", [cluster.primary.address])
            + pool_settings("secured", [tls_cluster.tls.address])
            + t.pool_tls_settings("secured", "verify_ca", ca=certs.ca)
            + user_settings("app_rw", PW, "plain") + user_settings("app_ro", USERS["app_ro"],
                                                                   "secured")
            + [("health.interval", "500ms"), ("shutdown_timeout", "2s")])
    px = make_ops_proxy("servers-tls", body)
    tls_row = util.wait_until(
        lambda: (lambda r: r if r["tls"] not in (None, "off") else None)(
            server_row(px, tls_cluster.tls)), 10,
        what=lambda: "a TLS state for the TLS server: %r" % px.servers())
    assert tls_row["tls"] in ("TLSv1.2", "TLSv1.3"), tls_row
    plain_row = server_row(px, cluster.primary)
    assert plain_row["tls"] in (None, "off"), plain_row


def test_failed_server_handshakes_are_counted(make_ops_proxy, tls_cluster, certs):
    s = tls_cluster.tls
    px = make_ops_proxy("server-failures", leg_settings(s, "verify_ca", ca=certs.wrong_ca),
                        metrics=True)
    m0 = px.metrics()
    before = m0.value("myroute_tls_handshake_failures_total", side="server") or 0
    refused(px)
    util.wait_until(lambda: px.metrics().get("myroute_tls_handshake_failures_total",
                                             side="server") > before, 5,
                    what="a server-side TLS failure in the metrics")
    stats = px.stats()
    assert stats["tls_handshake_failures_server"] >= 1, stats
    assert px.metrics().get("myroute_tls_handshake_failures_total", side="client") == 0


# --- the packets, as a server sees them ---------------------------------------------------------

def fake_settings(fake, mode):
    return (pool_settings("fake", [fake.address]) + t.pool_tls_settings("fake", mode)
            + user_settings(FAKE_USER, FAKE_PASSWORD, "fake")
            + [("connect_timeout", "2s")])


def fake_server_context(certs):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs.server.cert, certs.server.key)
    return ctx


def test_ssl_request_then_the_login_at_sequence_2(make_proxy, certs):
    with FakeBackend("auth_switch", users={FAKE_USER: FAKE_PASSWORD},
                     tls=fake_server_context(certs)) as fake:
        px = make_proxy("fake-tls", fake_settings(fake, "required"))
        assert_answers(px, FAKE_USER, FAKE_PASSWORD)
        s = fake.finished_session(FAKE_USER)
    seq, caps = s.ssl_request
    assert seq == 1 and caps & p.CLIENT_SSL, s
    assert s.response_seq == 2, s
    assert s.capabilities & p.CLIENT_SSL, s
    assert s.tls_version in ("TLSv1.2", "TLSv1.3"), s
    assert s.switched and s.switch_token_ok, s


@pytest.mark.parametrize("mode", ["preferred", "required"])
def test_unchecked_modes_take_an_x509_v1_certificate(make_proxy, certs, mode):
    """Modes that check no certificate take one the checking code cannot
    read (X.509 v1), as MySQL's ssl-mode=REQUIRED does."""
    assert b"\xa0\x03\x02\x01" not in certs.server_v1.der[:32], "a v1 certificate"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs.server_v1.cert, certs.server_v1.key)
    with FakeBackend("auth_switch", users={FAKE_USER: FAKE_PASSWORD}, tls=ctx) as fake:
        px = make_proxy("fake-v1-" + mode, fake_settings(fake, mode))
        assert_answers(px, FAKE_USER, FAKE_PASSWORD)
        s = fake.finished_session(FAKE_USER)
    assert s.tls_version in ("TLSv1.2", "TLSv1.3"), s


def test_server_answering_garbage_instead_of_tls(make_ops_proxy, certs):
    with FakeBackend("auth_switch", users={FAKE_USER: FAKE_PASSWORD}, tls="garbage") as fake:
        px = make_ops_proxy("fake-garbage", fake_settings(fake, "required")
                            + [("health.interval", "1h")], metrics=True)
        t0 = time.monotonic()
        with pytest.raises(pymysql.err.OperationalError) as info:
            pymysql_connect(px.host, px.port, FAKE_USER, FAKE_PASSWORD, read_timeout=20)
        assert time.monotonic() - t0 < 5
        code, msg = info.value.args
        assert code == 1429, info.value.args
        assert msg.startswith("Unable to connect to pool 'fake': %s: " % fake.address), msg
        assert not fake.logged_in_sessions()
        assert px.metrics().get("myroute_tls_handshake_failures_total", side="server") >= 1
        assert px.alive()


# --- a big result through TLS on both legs ---------------------------------------------------------

ROWS = 200000
ROW_BYTES = 1000
BIG_SQL = ("SELECT seq, REPEAT(CHAR(65 + seq %% 26), %d) FROM seq_1_to_%d ORDER BY seq"
           % (ROW_BYTES, ROWS))


def expected_row(seq):
    return p.lenenc_str(str(seq)) + p.lenenc_str(bytes([65 + seq % 26]) * ROW_BYTES)


def test_200_mb_read_slowly_through_tls_on_both_legs(make_proxy, tls_cluster, certs):
    s = tls_cluster.tls
    px = make_proxy("big-tls", leg_settings(s, "verify_identity", ca=certs.ca)
                    + t.proxy_tls_settings(certs.proxy_ec))
    with p.RawClient(px.host, px.port, timeout=15, rcvbuf=64 * 1024) as c:
        t.start_tls(c, t.client_context(certs.ca), server_hostname="127.0.0.1",
                    caps=p.BASIC_CLIENT_CAPS | p.CLIENT_CONNECT_WITH_DB)
        assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
        c.login("app_rw", PW, database="app", caps=p.BASIC_CLIENT_CAPS | p.CLIENT_SSL)
        kind, rows = c.query("SHOW SESSION STATUS LIKE 'Ssl_version'")
        assert rows[0][1] in (b"TLSv1.2", b"TLSv1.3"), rows
        c.command(p.COM_QUERY, BIG_SQL)
        ncols = p.Reader(c.read()).lenenc_int()
        assert ncols == 2
        for _ in range(ncols):
            c.read()
        assert c.read()[:1] == b"\xfe"
        t0 = time.monotonic()
        got = 0
        size = 0
        longest = 0.0
        while True:
            # A slow reader: a pause every 256 KiB, so the rings and the
            # socket buffers fill up and drain again all the way.
            t1 = time.monotonic()
            payload = c.read()
            longest = max(longest, time.monotonic() - t1)
            if payload[:1] == b"\xfe" and len(payload) < 9:
                break
            got += 1
            assert payload == expected_row(got), (got, payload[:40])
            size += len(payload)
            if got % 256 == 0:
                time.sleep(0.002)
        elapsed = time.monotonic() - t0
        assert elapsed < 120, "200 MB took %.0fs" % elapsed
        print("\n%d rows (%.0f MB) through TLS on both legs in %.1fs; longest wait %.2fs"
              % (got, size / 1e6, elapsed, longest))
        assert got == ROWS
        assert size > 200 * 1000 * 1000
        # The session is still in step.
        kind, rows = c.query("SELECT @@port")
        assert rows == [[str(s.port).encode()]]
