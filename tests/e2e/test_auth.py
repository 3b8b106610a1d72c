"""Client authentication by the proxy: passwords, unknown users, the
greeting, the switch from caching_sha2_password, TLS refusal (with
`tls = off`), unknown databases."""

import mysql.connector
import pymysql
import pytest

from harness import protocol as p
from harness import util
from harness.accounts import USERS
from harness.clients import (connector_connect, landing_port, mariadb_cli, pymysql_connect,
                             scalar)
from harness.proxy import Proxy, main_settings, user_settings


@pytest.fixture(scope="module")
def plain_proxy(myroute_bin, cluster, workdir):
    """The shared proxy's configuration with `tls = off`: it never offers
    TLS (test_tls.py covers the other modes)."""
    yield from util.running(Proxy(workdir, "auth-tls-off", main_settings(cluster, tls="off")))


def denied(user, using):
    return "Access denied for user '%s'@'127.0.0.1' (using password: %s)" % (user, using)


def pymysql_error(proxy, user, password, **kw):
    with pytest.raises(pymysql.err.OperationalError) as info:
        pymysql_connect(proxy.host, proxy.port, user, password, **kw)
    return info.value


def raw_login_error(proxy, user, password, **kw):
    with p.RawClient(proxy.host, proxy.port) as c:
        with pytest.raises(p.ServerError) as info:
            c.login(user, password, **kw)
        closed = c.closed_by_peer()
    return info.value, closed


def backend_connection_counts(cluster):
    conns = [s.admin() for s in cluster.servers]
    try:
        counts = []
        for c in conns:
            with c.cursor() as cur:
                cur.execute("SHOW GLOBAL STATUS LIKE 'Connections'")
                counts.append(int(cur.fetchone()[1]))
        return conns, counts
    except BaseException:
        for c in conns:
            c.close()
        raise


def read_counts(conns):
    out = []
    for c in conns:
        with c.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS LIKE 'Connections'")
            out.append(int(cur.fetchone()[1]))
    return out


# --- passwords ------------------------------------------------------------------

def test_wrong_password_is_refused_with_1045(proxy):
    e = pymysql_error(proxy, "app_rw", "not-the-password")
    assert e.args == (1045, denied("app_rw", "YES"))


def test_wrong_password_error_packet_and_close(proxy):
    err, closed = raw_login_error(proxy, "app_ro", "not-the-password")
    assert (err.code, err.state, err.message) == (1045, "28000", denied("app_ro", "YES"))
    assert closed, "the proxy must close the connection after refusing the login"


def test_unknown_user_gets_the_same_error_as_a_wrong_password(proxy):
    err, closed = raw_login_error(proxy, "nobody_here", "some-password")
    assert (err.code, err.state, err.message) == (1045, "28000", denied("nobody_here", "YES"))
    assert closed
    wrong, _ = raw_login_error(proxy, "app_rw", "some-password")
    assert (wrong.code, wrong.state) == (err.code, err.state)
    assert wrong.message.replace("app_rw", "U") == err.message.replace("nobody_here", "U")


def test_unknown_user_via_pymysql(proxy):
    e = pymysql_error(proxy, "nobody_here", "x")
    assert e.args == (1045, denied("nobody_here", "YES"))


def test_missing_password_says_using_password_no(proxy):
    e = pymysql_error(proxy, "app_rw", "")
    assert e.args == (1045, denied("app_rw", "NO"))
    err, closed = raw_login_error(proxy, "nobody_here", "")
    assert (err.code, err.state, err.message) == (1045, "28000", denied("nobody_here", "NO"))


def test_user_with_empty_password_logs_in_without_one(proxy, cluster, connect):
    conn = connect("nopw", password="")
    assert scalar(conn, "SELECT CURRENT_USER()") == "nopw@%"
    assert scalar(conn, "SELECT COUNT(*) FROM app.items") == 3


def test_user_with_empty_password_refuses_a_password(proxy):
    e = pymysql_error(proxy, "nopw", "anything")
    assert e.args == (1045, denied("nopw", "YES"))


def test_failed_logins_open_no_backend_connection(proxy, cluster):
    conns, before = backend_connection_counts(cluster)
    try:
        for user, pw in [("app_rw", "wrong"), ("app_ro", ""), ("nobody_here", "x"),
                         ("nopw", "x")]:
            pymysql_error(proxy, user, pw)
        after = read_counts(conns)
    finally:
        for c in conns:
            c.close()
    assert after == before


def test_password_of_another_user_is_refused(proxy):
    e = pymysql_error(proxy, "app_rw", USERS["app_ro"])
    assert e.args == (1045, denied("app_rw", "YES"))


# --- greeting -------------------------------------------------------------------

def test_greeting_offers_native_password_without_tls(plain_proxy):
    with p.RawClient(plain_proxy.host, plain_proxy.port) as c:
        g = c.read_greeting()
    assert g["protocol"] == 10
    assert g["plugin"] == "mysql_native_password"
    caps = g["capabilities"]
    assert caps & p.CLIENT_PROTOCOL_41
    assert caps & p.CLIENT_SECURE_CONNECTION
    assert caps & p.CLIENT_PLUGIN_AUTH
    assert not caps & p.CLIENT_SSL
    assert len(g["salt"]) == 20 and b"\0" not in g["salt"]


def test_every_greeting_has_a_fresh_salt(proxy):
    salts = set()
    for _ in range(5):
        with p.RawClient(proxy.host, proxy.port) as c:
            salts.add(c.read_greeting()["salt"])
    assert len(salts) == 5


def test_greeting_version_is_learned_from_the_backends(proxy, cluster):
    with p.RawClient(cluster.primary.host, cluster.primary.port) as c:
        backend_version = c.read_greeting()["version"]
    with p.RawClient(proxy.host, proxy.port) as c:
        assert c.read_greeting()["version"] == backend_version
    assert cluster.primary.version in backend_version


def test_configured_server_version_is_announced(make_proxy, cluster):
    px = make_proxy("version", main_settings(cluster, server_version="10.11.6-MariaDB"))
    with p.RawClient(px.host, px.port) as c:
        version = c.read_greeting()["version"]
    assert version in ("10.11.6-MariaDB", "5.5.5-10.11.6-MariaDB")
    assert landing_port(px, "app_rw") == cluster.primary.port


# --- TLS ------------------------------------------------------------------------

def test_ssl_request_is_refused_with_1043(plain_proxy):
    with p.RawClient(plain_proxy.host, plain_proxy.port) as c:
        c.read_greeting()
        c.write(p.ssl_request())
        err = c.read_err()
        assert (err.code, err.state) == (1043, "08S01")
        assert c.closed_by_peer()


def test_client_requiring_tls_gets_an_error(plain_proxy):
    with pytest.raises(pymysql.err.OperationalError) as info:
        pymysql.connect(host=plain_proxy.host, port=plain_proxy.port, user="app_rw",
                        password=USERS["app_rw"], connect_timeout=10, ssl_verify_cert=True)
    assert info.value.args == (2026, "SSL is required but the server doesn't support it")


def test_cli_requiring_tls_gets_an_error(plain_proxy):
    res = mariadb_cli(plain_proxy.host, plain_proxy.port, "app_rw", USERS["app_rw"], "SELECT 1",
                      extra=["--ssl-verify-server-cert"], tls=True)
    assert res.returncode == 1
    assert res.stdout == ""
    assert res.stderr.startswith("ERROR 2026 (HY000)"), res.stderr


# --- caching_sha2_password clients ------------------------------------------------

def test_connector_starting_with_caching_sha2_is_switched(proxy, cluster):
    conn = connector_connect(proxy.host, proxy.port, "app_rw", USERS["app_rw"],
                             auth_plugin="caching_sha2_password")
    try:
        cur = conn.cursor()
        cur.execute("SELECT @@port, CURRENT_USER()")
        assert cur.fetchall() == [(cluster.primary.port, "app_rw@%")]
    finally:
        conn.close()


def test_connector_with_default_plugin(proxy, cluster):
    conn = connector_connect(proxy.host, proxy.port, "app_ro", USERS["app_ro"])
    try:
        cur = conn.cursor()
        cur.execute("SELECT @@port")
        assert cur.fetchall()[0][0] in {s.port for s in cluster.replicas}
    finally:
        conn.close()


def test_connector_caching_sha2_with_wrong_password(proxy):
    with pytest.raises(mysql.connector.Error) as info:
        connector_connect(proxy.host, proxy.port, "app_rw", "wrong-password",
                          auth_plugin="caching_sha2_password")
    assert info.value.errno == 1045
    assert info.value.sqlstate == "28000"
    assert info.value.msg == denied("app_rw", "YES")


def test_raw_caching_sha2_response_gets_auth_switch_request(proxy, cluster):
    with p.RawClient(proxy.host, proxy.port) as c:
        c.read_greeting()
        # A caching_sha2_password scramble is 32 bytes.
        c.write(p.handshake_response("app_rw", b"\x01" * 32, p.BASIC_CLIENT_CAPS,
                                     plugin="caching_sha2_password"))
        switch = c.read()
        assert switch[0] == 0xFE, switch
        r = p.Reader(switch, 1)
        assert r.nul_str() == b"mysql_native_password"
        salt = r.rest()
        if salt.endswith(b"\0"):
            salt = salt[:-1]
        assert len(salt) == 20
        c.write(p.native_token(USERS["app_rw"], salt))
        ok = c.read()
        assert ok[0] == 0x00, ok
        kind, rows = c.query("SELECT @@port")
        assert rows == [[str(cluster.primary.port).encode()]]


# --- unknown database ---------------------------------------------------------------

def test_unknown_database_error_is_relayed(proxy):
    e = pymysql_error(proxy, "app_rw", USERS["app_rw"], database="app_missing")
    assert e.args == (1049, "Unknown database 'app_missing'")


def test_unknown_database_error_packet_then_close(proxy, connect, cluster):
    err, closed = raw_login_error(proxy, "app_rw", USERS["app_rw"], database="app_missing")
    assert (err.code, err.state, err.message) == (1049, "42000", "Unknown database 'app_missing'")
    assert closed
    conn = connect("app_rw", database="app")
    assert scalar(conn, "SELECT COUNT(*) FROM items") == 3
    assert scalar(conn, "SELECT @@port") == cluster.primary.port


def test_database_without_grant_gets_the_backends_1044(proxy):
    err, closed = raw_login_error(proxy, "app_ro", USERS["app_ro"], database="nosuchdb")
    assert (err.code, err.state) == (1044, "42000")
    assert err.message == "Access denied for user 'app_ro'@'%' to database 'nosuchdb'"
    assert closed


# --- what the proxy passes on to the backend login ------------------------------------

@pytest.mark.parametrize("charset_id,charset,collation", [
    (8, "latin1", "latin1_swedish_ci"),
    (33, "utf8mb3", "utf8mb3_general_ci"),
    (45, "utf8mb4", "utf8mb4_general_ci"),
    (224, "utf8mb4", "utf8mb4_unicode_ci"),
])
def test_client_character_set_reaches_the_backend(proxy, charset_id, charset, collation):
    with p.RawClient(proxy.host, proxy.port) as c:
        g = c.read_greeting()
        c.write(p.handshake_response("app_rw", p.native_token(USERS["app_rw"], g["salt"]),
                                     p.BASIC_CLIENT_CAPS, charset=charset_id))
        ok = c.read()
        assert ok[0] == 0x00, ok
        kind, rows = c.query("SELECT @@character_set_client, @@collation_connection")
        assert rows == [[charset.encode(), collation.encode()]]


def test_password_with_unusual_characters(make_proxy, cluster):
    user, password = "app_odd", "pä$$ wörd 'quoted' \"double\" \\ back # hash = eq"
    for s in cluster.servers:
        s.admin_query("CREATE USER IF NOT EXISTS '" + user + "'@'%%' IDENTIFIED VIA "
                      "mysql_native_password USING PASSWORD(%s)", (password,))
        s.admin_query("GRANT SELECT ON app.* TO '%s'@'%%'" % user)
    px = make_proxy("odd", main_settings(cluster) + user_settings(user, password, "replicas"))
    # As bytes: PyMySQL encodes a str password as latin1, MariaDB hashed UTF-8.
    conn = pymysql_connect(px.host, px.port, user, password.encode())
    try:
        assert scalar(conn, "SELECT CURRENT_USER()") == user + "@%"
    finally:
        conn.close()
    e = pymysql_error(px, user, password[:-1].encode())
    assert e.args == (1045, denied(user, "YES"))


def test_user_missing_on_the_backend_gets_the_backends_refusal(make_proxy, cluster):
    # Known to the proxy, unknown to MariaDB: the backend's ERR is relayed.
    px = make_proxy("ghost", main_settings(cluster)
                    + user_settings("ghost", "ghost-Secret-8080", "primary"))
    err, closed = raw_login_error(px, "ghost", "ghost-Secret-8080")
    assert (err.code, err.state, err.message) == (1045, "28000", denied("ghost", "YES"))
    assert closed
    assert px.alive()
