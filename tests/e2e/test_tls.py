"""TLS between clients and myroute: the `tls`, `tls.cert` and `tls.key`
keys, each real client checking its own side of the session (protocol,
cipher, the certificate it was shown), `tls = required`, the certificate
myroute makes when none is configured, the proof in the OK packet that
MariaDB Connector/Python 2.x checks instead of a CA, reloads, the admin
console, SHOW CLIENTS / SHOW STATS / metrics / the access log, and
`--check`.

Certificates come from the session's `certs` fixture (harness.tls)."""

import hashlib
import re
import socket
import subprocess
import warnings

import mysql.connector
import pymysql
import pytest

from harness import protocol as p
from harness import tls as t
from harness import util
from harness.accounts import USERS
from harness.clients import mariadb_cli, node_client, pymysql_connect, rust_client, scalar
from harness.ops import (ADMIN_PASSWORD, ADMIN_USER, CLIENT_COLUMNS, OpsProxy, admin_cli,
                         cli_error, client_addr, quiet_settings, reload)
from harness.proxy import main_settings

PW = USERS["app_rw"]
INSECURE = ("Connections using insecure transport are prohibited while "
            "--require_secure_transport=ON.")
CIPHER_RE = re.compile(r"^SSL:\s+Cipher in use is (\S+)\s*$", re.M)


# --- proxies -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tp(myroute_bin, cluster, certs, workdir):
    """`tls = optional` (the default, not written) with the CA-signed ECDSA
    certificate; console and metrics on."""
    settings = quiet_settings(cluster) + t.proxy_tls_settings(certs.proxy_ec)
    yield from util.running(OpsProxy(workdir, "tls-optional", settings, metrics=True))


@pytest.fixture(scope="module")
def rp(myroute_bin, cluster, certs, workdir):
    """`tls = required` with the CA-signed ECDSA certificate; health checks
    once an hour (so a test can count the backends' connections)."""
    px = OpsProxy(workdir, "tls-required",
                  main_settings(cluster, **{"health.interval": "1h", "shutdown_timeout": "2s"})
                  + t.proxy_tls_settings(certs.proxy_ec, mode="required"))
    px.admin_tls = t.client_context(certs.ca)
    yield from util.running(px)


def tls_login(px, certs, user="app_rw", ca="ca", host=None, **kw):
    """PyMySQL over TLS to `px`, verifying the certificate (and the name)
    against certs.<ca>."""
    ctx = t.client_context(getattr(certs, ca) if ca else None, **kw)
    return t.pymysql_tls(host or px.host, px.port, user, USERS[user], ctx)


def peer_sha256(conn):
    return t.pymysql_view(conn)[2]


# --- the greeting -------------------------------------------------------------------------

@pytest.mark.parametrize("mode,offered", [("off", False), ("optional", True), ("required", True)])
def test_greeting_offers_tls_unless_off(make_ops_proxy, cluster, certs, mode, offered):
    px = make_ops_proxy("greet-" + mode, quiet_settings(cluster)
                        + t.proxy_tls_settings(certs.proxy_ec, mode=mode))
    # The console follows the same setting.
    for port in (px.port, px.admin_port):
        with p.RawClient(px.host, port) as c:
            g = c.read_greeting()
        assert bool(g["capabilities"] & p.CLIENT_SSL) == offered, (port, hex(g["capabilities"]))
        assert g["capabilities"] & p.CLIENT_PROTOCOL_41


def test_default_is_optional(make_proxy, cluster):
    px = make_proxy("default", main_settings(cluster))
    with p.RawClient(px.host, px.port) as c:
        assert c.read_greeting()["capabilities"] & p.CLIENT_SSL
    # Plaintext still logs in.
    conn = pymysql_connect(px.host, px.port, "app_rw", PW)
    try:
        assert t.pymysql_view(conn) is None
        assert scalar(conn, "SELECT @@port") == cluster.primary.port
    finally:
        conn.close()


# --- real clients, each looking at its own socket --------------------------------------------

def test_mariadb_cli_with_ssl(tp, cluster):
    res = mariadb_cli(tp.host, tp.port, "app_rw", PW, "status; SELECT @@port", tls=True,
                      extra=["--ssl"])
    assert res.returncode == 0, res.stderr
    m = CIPHER_RE.search(res.stdout)
    assert m, "the CLI does not say it uses TLS:\n" + res.stdout
    assert m.group(1) != "Not", res.stdout
    assert res.stdout.rstrip().endswith(str(cluster.primary.port)), res.stdout


def test_mariadb_cli_verifies_the_configured_certificate(tp, certs, cluster):
    res = mariadb_cli(tp.host, tp.port, "app_rw", PW, "status; SELECT @@port", tls=True,
                      extra=["--ssl-verify-server-cert", "--ssl-ca=" + certs.ca.cert])
    assert res.returncode == 0, res.stderr
    assert CIPHER_RE.search(res.stdout), res.stdout
    assert res.stdout.rstrip().endswith(str(cluster.primary.port)), res.stdout
    # Against a CA that did not sign it, the CLI refuses.
    res = mariadb_cli(tp.host, tp.port, "app_rw", PW, "SELECT @@port", tls=True,
                      extra=["--ssl-verify-server-cert", "--ssl-ca=" + certs.wrong_ca.cert])
    assert res.returncode == 1
    assert res.stdout == ""
    assert res.stderr.startswith("ERROR 2026 (HY000): TLS/SSL error: "), res.stderr


def test_pymysql_verifies_the_certificate_and_the_name(tp, certs, cluster):
    conn = tls_login(tp, certs)
    try:
        version, cipher, sha = t.pymysql_view(conn)
        assert version in ("TLSv1.2", "TLSv1.3"), version
        assert sha == certs.proxy_ec.sha256
        assert scalar(conn, "SELECT @@port") == cluster.primary.port
        assert scalar(conn, "SELECT CURRENT_USER()") == "app_rw@%"
    finally:
        conn.close()
    with pytest.raises(pymysql.err.OperationalError) as info:
        tls_login(tp, certs, ca="wrong_ca")
    assert info.value.args[0] == 2003, info.value.args
    assert "CERTIFICATE_VERIFY_FAILED" in info.value.args[1], info.value.args
    # The certificate names 127.0.0.1, 127.0.0.2 and localhost, nothing else.
    with pytest.raises(pymysql.err.OperationalError) as info:
        _connect_with_name(tp, t.client_context(certs.ca), "db.invalid")
    assert info.value.args[0] == 2003, info.value.args
    assert "CERTIFICATE_VERIFY_FAILED" in info.value.args[1], info.value.args


def _connect_with_name(px, ctx, name):
    """PyMySQL over TLS to px, checking the certificate against `name`
    (a host name the certificate does not carry)."""
    sock = socket.create_connection((px.host, px.port), timeout=10)
    conn = pymysql.connect(host=name, port=px.port, user="app_rw", password=PW, ssl=ctx,
                           defer_connect=True, connect_timeout=10)
    try:
        conn.connect(sock)
    except BaseException:
        sock.close()
        raise
    return conn


def test_connector_python_verifies_identity(tp, certs, cluster):
    conn = t.connector_tls(tp.host, tp.port, "app_ro", USERS["app_ro"], certs.ca)
    try:
        version, cipher, sha = t.connector_view(conn)
        assert version in ("TLSv1.2", "TLSv1.3"), version
        assert sha == certs.proxy_ec.sha256
        cur = conn.cursor()
        cur.execute("SELECT @@port")
        assert cur.fetchall()[0][0] in {s.port for s in cluster.replicas}
        cur.close()
    finally:
        conn.close()
    with pytest.raises(mysql.connector.Error) as info:
        t.connector_tls(tp.host, tp.port, "app_ro", USERS["app_ro"], certs.wrong_ca)
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value), info.value


def test_node_mysql2_with_ca(tp, certs, cluster):
    out = node_client(tp.host, tp.port, "app_rw", PW, [{"query": "SELECT @@port"}],
                      ssl={"ca": certs.ca.cert})
    assert out["ok"], out
    assert out["tls"]["protocol"] in ("TLSv1.2", "TLSv1.3"), out
    assert out["tls"]["fingerprint256"] == certs.proxy_ec.fingerprint, out
    assert out["results"][0]["rows"] == [[str(cluster.primary.port)]]
    out = node_client(tp.host, tp.port, "app_rw", PW, [{"query": "SELECT 1"}],
                      ssl={"ca": certs.wrong_ca.cert})
    assert not out["ok"] and out["error"]["code"] == "HANDSHAKE_SSL_ERROR", out


def test_plaintext_clients_still_work_with_optional(tp, cluster, rust_client_bin):
    conn = pymysql_connect(tp.host, tp.port, "app_rw", PW)
    try:
        assert t.pymysql_view(conn) is None
        assert scalar(conn, "SELECT @@port") == cluster.primary.port
    finally:
        conn.close()
    out = node_client(tp.host, tp.port, "app_rw", PW, [{"query": "SELECT @@port"}])
    assert out["ok"] and out["tls"] is None, out
    res = rust_client(tp.host, tp.port, "app_rw", PW, ["query=SELECT @@port"])
    assert res.returncode == 0, res.stderr
    assert res.rows() == [(str(cluster.primary.port),)]


# --- certificate and key files -----------------------------------------------------------------

KEY_FORMS = [("proxy_ec", "key"), ("proxy_ec", "key_sec1"), ("proxy_rsa", "key"),
             ("proxy_rsa", "key_pkcs1"), ("proxy_chain", "key")]


@pytest.mark.parametrize("cert,key", KEY_FORMS,
                         ids=["ecdsa-pkcs8", "ecdsa-sec1", "rsa-pkcs8", "rsa-pkcs1", "chain"])
def test_certificate_and_key_forms(make_proxy, cluster, certs, cert, key):
    c = getattr(certs, cert)
    px = make_proxy("forms", main_settings(cluster)
                    + t.proxy_tls_settings(c, key=getattr(c, key)))
    # The client trusts only the root CA: for the chain, myroute must send
    # the intermediate too.
    conn = tls_login(px, certs)
    try:
        assert peer_sha256(conn) == c.sha256
        assert scalar(conn, "SELECT @@port") == cluster.primary.port
    finally:
        conn.close()


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_tls_versions_1_2_and_1_3(tp, certs, cluster, version):
    conn = tls_login(tp, certs, version=version)
    try:
        assert t.pymysql_view(conn)[0] == version
        assert scalar(conn, "SELECT @@port") == cluster.primary.port
    finally:
        conn.close()


def test_tls_1_1_is_refused(tp, certs, cluster):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = t.client_context(max_version="TLSv1.1")
    with pytest.raises(pymysql.err.OperationalError) as info:
        t.pymysql_tls(tp.host, tp.port, "app_rw", PW, ctx)
    assert info.value.args[0] == 2003 and "SSL" in info.value.args[1], info.value.args
    conn = tls_login(tp, certs)
    try:
        assert scalar(conn, "SELECT @@port") == cluster.primary.port
    finally:
        conn.close()


# --- the certificate myroute makes ---------------------------------------------------------------

def generated_fingerprint(px):
    line = px.wait_for_log_line(lambda l: t.logged_fingerprint(l) is not None, 5,
                                what="the generated certificate's SHA-256 fingerprint")
    return t.logged_fingerprint(line)


def test_generated_certificate(make_ops_proxy, cluster, tmp_path):
    px = make_ops_proxy("generated", quiet_settings(cluster))
    logged = generated_fingerprint(px)
    conn = tls_login(px, None, ca=None)
    try:
        der = conn._sock.getpeercert(binary_form=True)
        assert t.fingerprint_of(der) == logged
        assert scalar(conn, "SELECT @@port") == cluster.primary.port
    finally:
        conn.close()
    # What the certificate says, as openssl reads it.
    path = tmp_path / "generated.der"
    path.write_bytes(der)
    text = t.openssl("x509", "-inform", "DER", "-in", str(path), "-noout", "-text").decode()
    subject = t.openssl("x509", "-inform", "DER", "-in", str(path), "-noout", "-subject",
                        "-nameopt", "RFC2253").decode().strip()
    issuer = t.openssl("x509", "-inform", "DER", "-in", str(path), "-noout", "-issuer",
                       "-nameopt", "RFC2253").decode().strip()
    assert "id-ecPublicKey" in text and "prime256v1" in text, text
    assert subject.split("=", 1)[1] == issuer.split("=", 1)[1], (subject, issuer)
    cn = re.search(r"CN=([^,]+)", subject)
    assert cn, subject
    assert "myroute" in cn.group(1) and socket.gethostname() in cn.group(1), subject
    # Node sees the same certificate.
    out = node_client(px.host, px.port, "app_rw", PW, [{"query": "SELECT 1"}],
                      ssl={"rejectUnauthorized": False})
    assert out["ok"] and out["tls"]["fingerprint256"] == logged, out
    # Kept across reloads.
    px.admin_ok("RELOAD")
    conn = tls_login(px, None, ca=None)
    try:
        assert t.fingerprint_of(conn._sock.getpeercert(binary_form=True)) == logged
    finally:
        conn.close()


def test_every_process_makes_its_own_certificate(make_proxy, cluster):
    a = make_proxy("gen-a", main_settings(cluster))
    b = make_proxy("gen-b", main_settings(cluster))
    assert generated_fingerprint(a) != generated_fingerprint(b)


# --- the proof in the OK packet ---------------------------------------------------------------

@pytest.mark.parametrize("configured", [True, False], ids=["configured", "generated"])
def test_ok_packet_proves_the_certificate(make_proxy, cluster, certs, configured):
    settings = main_settings(cluster)
    if configured:
        settings += t.proxy_tls_settings(certs.proxy_ec)
    px = make_proxy("proof", settings)
    with p.RawClient(px.host, px.port) as c:
        salt = c.read_greeting()["salt"]
        sock = t.start_tls(c, t.client_context())
        assert c.seq == 2
        ok = p.parse_ok(c.login("app_rw", PW, caps=p.BASIC_CLIENT_CAPS | p.CLIENT_SSL))
        der = sock.getpeercert(binary_form=True)
        if configured:
            assert hashlib.sha256(der).hexdigest() == certs.proxy_ec.sha256
        assert ok["info"] == t.zero_config_proof(PW, salt, der), ok
        # The session works inside TLS.
        kind, rows = c.query("SELECT @@port")
        assert rows == [[str(cluster.primary.port).encode()]]


@pytest.mark.parametrize("configured", [True, False], ids=["configured", "generated"])
def test_zero_configuration_connector_accepts_myroute(make_proxy, cluster, certs, configured):
    settings = main_settings(cluster, server_version=t.ZERO_CONFIG_VERSION)
    if configured:
        settings += t.proxy_tls_settings(certs.proxy_ec)
    px = make_proxy("zeroconf", settings, host=t.NON_LOCAL_LOOPBACK)
    # No CA: the connector checks the proof in the OK packet instead.
    conn = t.mariadb_connect(px.host, px.port, "app_rw", PW, ssl_verify_cert=True)
    try:
        version, cipher, sha = t.mariadb_view(conn)
        assert version in ("TLSv1.2", "TLSv1.3"), version
        if configured:
            assert sha == certs.proxy_ec.sha256
        cur = conn.cursor()
        cur.execute("SELECT @@port")
        assert cur.fetchall() == [(cluster.primary.port,)]
        cur.close()
    finally:
        conn.close()


def test_zero_configuration_refuses_a_server_without_the_proof(tls_cluster):
    # MariaDB 10.11 sends no proof: with no CA the connector cannot trust
    # its certificate.
    mariadb = t.mariadb_connector()
    s = tls_cluster.tls
    with pytest.raises(mariadb.OperationalError) as info:
        t.mariadb_connect(s.host, s.port, "app_rw", PW, ssl_verify_cert=True)
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value), info.value


def test_zero_configuration_detects_a_man_in_the_middle(make_proxy, cluster, certs):
    px = make_proxy("mitm", main_settings(cluster, server_version=t.ZERO_CONFIG_VERSION)
                    + t.proxy_tls_settings(certs.proxy_ec), host=t.NON_LOCAL_LOOPBACK)
    relay = t.TlsRelay(px.host, px.port, certs.relay, host=t.NON_LOCAL_LOOPBACK)
    mariadb = t.mariadb_connector()
    try:
        with pytest.raises(mariadb.OperationalError) as info:
            t.mariadb_connect(relay.host, relay.port, "app_rw", PW, ssl_verify_cert=True)
        assert str(info.value).startswith(
            "Self signed certificates fingerprint validation failed."), info.value
        # The relay did carry the login to myroute and back.
        assert relay.relayed == 1, relay.errors
        # Without the relay the same connect passes.
        conn = t.mariadb_connect(px.host, px.port, "app_rw", PW, ssl_verify_cert=True)
        conn.close()
    finally:
        relay.close()


# --- tls = required --------------------------------------------------------------------------

def connections(conns):
    out = []
    for c in conns:
        with c.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS LIKE 'Connections'")
            out.append(int(cur.fetchone()[1]))
    return out


def test_required_refuses_plaintext_before_any_backend(rp, cluster):
    util.wait_until(lambda: all(r["last_check"] == "ok" for r in rp.servers()), 10,
                    what=lambda: "the first health checks: %r" % rp.servers())
    admins = [s.admin() for s in cluster.servers]
    try:
        before = connections(admins)
        warns_before = sum("WARN" in l for l in rp.log_lines())
        with p.RawClient(rp.host, rp.port) as c:
            addr = c.local_address
            c.read_greeting()
            c.write(p.handshake_response("app_rw", p.native_token(PW, c.greeting["salt"]),
                                         p.BASIC_CLIENT_CAPS))
            seq, payload = p.read_packet(c.sock)
            assert payload[:1] == b"\xff", payload
            err = p.parse_err(payload)
            assert (seq, err.code, err.state, err.message) == (2, 3159, "HY000", INSECURE)
            assert c.closed_by_peer()
        for _ in range(2):
            with pytest.raises(pymysql.err.OperationalError) as info:
                pymysql_connect(rp.host, rp.port, "app_ro", USERS["app_ro"])
            assert info.value.args == (3159, INSECURE)
        assert connections(admins) == before
    finally:
        for a in admins:
            a.close()
    rp.wait_for_log_line(lambda l: addr in l and "end=" in l, 5,
                         what="the access line of the refused client")
    util.wait_until(lambda: sum("WARN" in l for l in rp.log_lines()) > warns_before, 5,
                    what="a warning about the plaintext login")


def test_required_refuses_every_plaintext_client(rp, rust_client_bin):
    res = mariadb_cli(rp.host, rp.port, "app_rw", PW, "SELECT 1")
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.strip() == "ERROR 3159 (HY000): " + INSECURE, res.stderr
    out = node_client(rp.host, rp.port, "app_rw", PW, [{"query": "SELECT 1"}])
    assert not out["ok"], out
    assert (out["error"]["errno"], out["error"]["sqlState"], out["error"]["message"]) == (
        3159, "HY000", INSECURE), out
    with pytest.raises(mysql.connector.Error) as info:
        mysql.connector.connect(host=rp.host, port=rp.port, user="app_rw", password=PW,
                                use_pure=True, ssl_disabled=True, connection_timeout=10)
    assert (info.value.errno, info.value.sqlstate, info.value.msg) == (3159, "HY000", INSECURE)
    res = rust_client(rp.host, rp.port, "app_rw", PW, ["query=SELECT 1"])
    assert res.returncode == 1 and res.error == (3159, "HY000", INSECURE), (res.stderr,)


def test_required_accepts_tls_clients(rp, certs, cluster):
    conn = tls_login(rp, certs)
    try:
        assert t.pymysql_view(conn)[2] == certs.proxy_ec.sha256
        assert scalar(conn, "SELECT @@port") == cluster.primary.port
    finally:
        conn.close()
    res = mariadb_cli(rp.host, rp.port, "app_rw", PW, "status; SELECT @@port", tls=True,
                      extra=["--ssl-verify-server-cert", "--ssl-ca=" + certs.ca.cert])
    assert res.returncode == 0, res.stderr
    assert CIPHER_RE.search(res.stdout), res.stdout
    out = node_client(rp.host, rp.port, "app_ro", USERS["app_ro"], [{"query": "SELECT 1"}],
                      ssl={"ca": certs.ca.cert})
    assert out["ok"] and out["tls"]["fingerprint256"] == certs.proxy_ec.fingerprint, out


def test_required_applies_to_the_console(rp, certs):
    with pytest.raises(pymysql.err.OperationalError) as info:
        pymysql_connect(rp.host, rp.admin_port, ADMIN_USER, ADMIN_PASSWORD)
    assert info.value.args == (3159, INSECURE)
    res = rp.cli("SHOW VERSION")
    assert res.returncode == 1 and cli_error(res.stderr) == (3159, "HY000", INSECURE), res.stderr
    ctx = t.client_context(certs.ca)
    conn = t.pymysql_tls(rp.host, rp.admin_port, ADMIN_USER, ADMIN_PASSWORD, ctx)
    try:
        assert peer_sha256(conn) == certs.proxy_ec.sha256
        with conn.cursor() as cur:
            cur.execute("SHOW VERSION")
            assert cur.fetchall()
    finally:
        conn.close()


# --- the admin console ------------------------------------------------------------------------

def test_console_over_tls(tp, certs):
    ctx = t.client_context(certs.ca)
    conn = t.pymysql_tls(tp.host, tp.admin_port, ADMIN_USER, ADMIN_PASSWORD, ctx)
    try:
        version, cipher, sha = t.pymysql_view(conn)
        assert sha == certs.proxy_ec.sha256
        assert tp.servers(conn)
    finally:
        conn.close()
    # The CLI verifying the certificate: it passes with the CA that signed
    # it and fails with another (admin_cli's --skip-ssl comes first; the
    # options after it turn TLS back on).
    res = admin_cli(tp.host, tp.admin_port, ADMIN_USER, ADMIN_PASSWORD, "SHOW VERSION",
                    extra=["--ssl-verify-server-cert", "--ssl-ca=" + certs.ca.cert])
    assert res.returncode == 0, res.stderr
    res = admin_cli(tp.host, tp.admin_port, ADMIN_USER, ADMIN_PASSWORD, "SHOW VERSION",
                    extra=["--ssl-verify-server-cert", "--ssl-ca=" + certs.wrong_ca.cert])
    assert res.returncode == 1
    assert res.stderr.startswith("ERROR 2026 (HY000): TLS/SSL error: "), res.stderr
    # Plaintext is still allowed with `optional`.
    conn = tp.admin()
    try:
        assert t.pymysql_view(conn) is None
    finally:
        conn.close()


# --- reload ------------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["RELOAD", "SIGHUP"])
def test_reload_swaps_the_certificate(make_ops_proxy, cluster, certs, held, how):
    px = make_ops_proxy("reload-cert",
                        quiet_settings(cluster) + t.proxy_tls_settings(certs.proxy_ec))
    old = tls_login(px, certs)
    held.append(old)
    assert peer_sha256(old) == certs.proxy_ec.sha256
    px.rewrite(quiet_settings(cluster) + t.proxy_tls_settings(certs.proxy_rsa))
    reload(px, how)
    new = tls_login(px, certs)
    held.append(new)
    assert peer_sha256(new) == certs.proxy_rsa.sha256
    # The open connection goes on, with the certificate it was shown.
    assert scalar(old, "SELECT @@port") == cluster.primary.port
    assert peer_sha256(old) == certs.proxy_ec.sha256
    # The console too shows the new certificate.
    ctx = t.client_context(certs.ca)
    admin = t.pymysql_tls(px.host, px.admin_port, ADMIN_USER, ADMIN_PASSWORD, ctx)
    try:
        assert peer_sha256(admin) == certs.proxy_rsa.sha256
    finally:
        admin.close()


BAD_FILES = ["not-pem-cert", "missing-key", "mismatched-key"]


@pytest.mark.parametrize("bad", BAD_FILES)
@pytest.mark.parametrize("how", ["RELOAD", "SIGHUP"])
def test_reload_with_a_bad_file_keeps_the_old_certificate(make_ops_proxy, cluster, certs, how,
                                                          bad):
    px = make_ops_proxy("reload-bad",
                        quiet_settings(cluster) + t.proxy_tls_settings(certs.proxy_ec))
    cert, key = {"not-pem-cert": (certs.not_pem, certs.proxy_rsa.key),
                 "missing-key": (certs.proxy_rsa.cert, certs.proxy_rsa.key + ".missing"),
                 "mismatched-key": (certs.proxy_rsa.cert, certs.proxy_ec.key)}[bad]
    px.rewrite(quiet_settings(cluster) + [("tls.cert", cert), ("tls.key", key)])
    lines = {px.line_of("tls.cert"), px.line_of("tls.key")}
    if how == "RELOAD":
        with pytest.raises(pymysql.err.MySQLError) as info:
            px.admin_ok("RELOAD")
        code, msg = info.value.args
        assert code == 1105, info.value.args
        assert msg.startswith("reload failed, configuration unchanged: "), msg
        assert any("%s:%d: " % (px.config_path, n) in msg for n in lines), msg
    else:
        reload(px, how)
    px.wait_for_log_line(lambda l: "reload failed" in l and any(
        "%s:%d: " % (px.config_path, n) in l for n in lines), 5, what="the reload's error")
    assert px.stats()["reload_failures"] == 1
    conn = tls_login(px, certs)
    try:
        assert peer_sha256(conn) == certs.proxy_ec.sha256
    finally:
        conn.close()


# --- what myroute shows about TLS ----------------------------------------------------------------

def test_show_clients_tls_column(tp, certs, held):
    v13 = tls_login(tp, certs, version="TLSv1.3")
    v12 = tls_login(tp, certs, version="TLSv1.2")
    plain = pymysql_connect(tp.host, tp.port, "app_rw", PW)
    held += [v13, v12, plain]
    admin = tp.admin()
    try:
        names, _ = _columns(admin, "SHOW CLIENTS")
        assert names == CLIENT_COLUMNS
        r13 = tp.client_row(client_addr(v13), admin)
        r12 = tp.client_row(client_addr(v12), admin)
        rp_ = tp.client_row(client_addr(plain), admin)
    finally:
        admin.close()
    version, cipher, _ = t.pymysql_view(v13)
    assert r13["tls"] == "%s %s" % (version, t.rustls_cipher_name(cipher)), r13
    assert r12["tls"].startswith("TLSv1.2 ") and "ECDHE" in r12["tls"], r12
    assert rp_["tls"] is None, rp_


def _columns(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        cur.fetchall()
        return [d[0] for d in cur.description], [d[1] for d in cur.description]


def test_access_log_tls_field(tp, certs):
    tls_conn = tls_login(tp, certs, version="TLSv1.3")
    plain = pymysql_connect(tp.host, tp.port, "app_rw", PW)
    addrs = {"TLSv1.3": client_addr(tls_conn), "-": client_addr(plain)}
    tls_conn.close()
    plain.close()
    for want, addr in addrs.items():
        line = tp.wait_for_log_line(lambda l: ("client=%s " % addr) in l and "end=" in l, 5,
                                    what="the access line of %s" % addr)
        assert re.search(r"(^|\s)tls=%s(\s|$)" % re.escape(want), line), line


def test_stats_and_metrics_count_tls_and_plain_logins(make_ops_proxy, cluster, certs):
    px = make_ops_proxy("counts", quiet_settings(cluster) + t.proxy_tls_settings(certs.proxy_ec),
                        metrics=True)
    s0, m0 = px.stats(), px.metrics()
    for _ in range(2):
        tls_login(px, certs).close()
    pymysql_connect(px.host, px.port, "app_rw", PW).close()
    # A client that fails its TLS handshake.
    with p.RawClient(px.host, px.port) as c:
        c.read_greeting()
        c.write(p.ssl_request())
        c.sock.sendall(b"\x00" * 64)
        closed, _, got = t.wait_closed(c.sock, 5)
        assert closed and len(got) <= 7, got  # at most a TLS alert record
    util.wait_until(lambda: px.stats()["ends_client_closed"] - s0["ends_client_closed"] >= 3,
                    5, what="the three clients to be counted")
    s1 = util.wait_until(
        lambda: (lambda s: s if s["tls_handshake_failures_client"] > s0["tls_handshake_failures_client"]
                 else None)(px.stats()), 5, what="the failed handshake to be counted")
    m1 = px.metrics()
    assert s1["logins_tls"] - s0["logins_tls"] == 2, (s0, s1)
    assert s1["logins_plain"] - s0["logins_plain"] == 1, (s0, s1)
    assert s1["logins_ok"] - s0["logins_ok"] == 3, (s0, s1)
    assert s1["tls_handshake_failures_client"] - s0["tls_handshake_failures_client"] == 1, (s0, s1)

    def delta(name, **labels):
        return m1.get(name, **labels) - (m0.value(name, **labels) or 0)
    assert delta("myroute_client_logins_total", transport="tls") == 2
    assert delta("myroute_client_logins_total", transport="plain") == 1
    assert delta("myroute_tls_handshake_failures_total", side="client") == 1
    assert m1.value("myroute_tls_handshake_failures_total", side="server") == 0
    assert m1.type_of("myroute_client_logins_total") == "counter"
    assert m1.type_of("myroute_tls_handshake_failures_total") == "counter"


# --- --check ---------------------------------------------------------------------------------

CHECK_BASE = """\
listen = 127.0.0.1:23999
pool.primary.servers = 127.0.0.1:23306
user.app_rw.password = {hash}
user.app_rw.pool = primary
""".format(hash=p.password_hash("rw-example"))


def check(myroute_bin, tmp_path, lines, start=False):
    """Writes CHECK_BASE plus `lines`; runs --check (or starts the proxy
    with it); returns (path, CompletedProcess)."""
    path = tmp_path / "tls.conf"
    path.write_text(CHECK_BASE + "".join(l + "\n" for l in lines))
    args = [myroute_bin, "-c", str(path)] if start else [myroute_bin, "--check", "-c", str(path)]
    res = subprocess.run(args, capture_output=True, text=True, timeout=10,
                         stdin=subprocess.DEVNULL)
    return str(path), res


FIRST = CHECK_BASE.count("\n") + 1  # the line number of the first extra line


@pytest.mark.parametrize("cert,key", KEY_FORMS,
                         ids=["ecdsa-pkcs8", "ecdsa-sec1", "rsa-pkcs8", "rsa-pkcs1", "chain"])
def test_check_accepts_each_key_form(myroute_bin, tmp_path, certs, cert, key):
    c = getattr(certs, cert)
    _, res = check(myroute_bin, tmp_path, ["tls = required", "tls.cert = " + c.cert,
                                           "tls.key = " + getattr(c, key)])
    assert res.returncode == 0, res.stderr


def test_check_accepts_the_server_leg_keys(myroute_bin, tmp_path, certs):
    _, res = check(myroute_bin, tmp_path, [
        "pool.primary.tls = verify_identity",
        "pool.primary.tls_ca = " + certs.ca.cert,
        "pool.primary.tls_name = localhost",
        "pool.primary.tls_cert = " + certs.client.cert,
        "pool.primary.tls_key = " + certs.client.key,
        "pool.other.servers = 127.0.0.1:23307",
        "pool.other.tls = required",
        "pool.other.tls_fingerprint = sha256:" + certs.server.fingerprint,
    ])
    assert res.returncode == 0, res.stderr


def bad_cases(certs, tmp):
    """(id, extra lines, 0-based index of the line(s) the error may name,
    path the message names or None)."""
    missing = str(tmp / "no-such.pem")
    ec = certs.proxy_ec
    return [
        ("missing cert", ["tls.cert = " + missing, "tls.key = " + ec.key], [0], missing),
        ("missing key", ["tls.cert = " + ec.cert, "tls.key = " + missing], [1], missing),
        ("cert not PEM", ["tls.cert = " + certs.not_pem, "tls.key = " + ec.key], [0],
         certs.not_pem),
        ("key not PEM", ["tls.cert = " + ec.cert, "tls.key = " + certs.not_pem], [1],
         certs.not_pem),
        ("cert is a directory", ["tls.cert = " + str(tmp), "tls.key = " + ec.key], [0],
         str(tmp)),
        ("key not matching", ["tls.cert = " + ec.cert, "tls.key = " + certs.proxy_rsa.key],
         [0, 1], None),
        ("bad tls mode", ["tls = maybe"], [0], None),
        ("bad pool tls mode", ["pool.primary.tls = verify_everything"], [0], None),
        ("pool CA missing", ["pool.primary.tls = verify_ca", "pool.primary.tls_ca = " + missing],
         [1], missing),
        ("pool CA not PEM", ["pool.primary.tls = verify_ca",
                             "pool.primary.tls_ca = " + certs.not_pem], [1], certs.not_pem),
        ("pin too short", ["pool.primary.tls = required",
                           "pool.primary.tls_fingerprint = sha256:" + "ab" * 31], [1], None),
        ("pin not hex", ["pool.primary.tls = required",
                         "pool.primary.tls_fingerprint = sha256:" + "zz" * 32], [1], None),
        ("client key not matching", ["pool.primary.tls = verify_ca",
                                     "pool.primary.tls_ca = " + certs.ca.cert,
                                     "pool.primary.tls_cert = " + certs.client.cert,
                                     "pool.primary.tls_key = " + certs.proxy_ec.key], [2, 3], None),
    ]


BAD_IDS = ["missing cert", "missing key", "cert not PEM", "key not PEM", "cert is a directory",
           "key not matching", "bad tls mode", "bad pool tls mode", "pool CA missing",
           "pool CA not PEM", "pin too short", "pin not hex", "client key not matching"]


@pytest.mark.parametrize("case", BAD_IDS)
@pytest.mark.parametrize("start", [False, True], ids=["check", "start"])
def test_bad_tls_files_and_values_fail_with_file_and_line(myroute_bin, tmp_path, certs, case,
                                                          start):
    cases = {c[0]: c[1:] for c in bad_cases(certs, tmp_path)}
    lines, where, named = cases[case]
    path, res = check(myroute_bin, tmp_path, lines, start=start)
    assert res.returncode == 2, (res.returncode, res.stderr)
    found = [m for m in re.finditer(r"^%s:(\d+): (.*)$" % re.escape(path), res.stderr, re.M)]
    assert found, res.stderr
    assert int(found[0].group(1)) in [FIRST + i for i in where], res.stderr
    # The key is known: it is the value that is wrong.
    assert not found[0].group(2).startswith("unknown key"), res.stderr
    if named:
        assert named in found[0].group(2), res.stderr
