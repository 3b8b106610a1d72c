"""The proxy's stderr: one access line per finished connection, a warning
per failed login, and never a secret."""

import hashlib

import pymysql
import pytest

from harness import protocol as p
from harness.accounts import ALL_PASSWORDS, USERS
from harness.clients import pymysql_connect, scalar
from harness.proxy import has_word, main_settings


def access_line_for(proxy, client_addr, timeout=5):
    return proxy.wait_for_log_line(lambda line: client_addr in line, timeout,
                                   what="a line about client %s" % client_addr)


def test_access_line_for_a_finished_connection(proxy, cluster):
    conn = pymysql_connect(proxy.host, proxy.port, "app_rw", USERS["app_rw"])
    client = "%s:%d" % conn._sock.getsockname()[:2]
    assert scalar(conn, "SELECT @@port") == cluster.primary.port
    conn.close()
    line = proxy.wait_for_log_line(
        lambda l: client in l and has_word(l, "app_rw") and cluster.primary.address in l, 5,
        what="an access line for %s" % client)
    assert "INFO" in line
    assert has_word(line, "primary")


def test_access_line_for_a_replica_connection(proxy, cluster):
    with p.RawClient(proxy.host, proxy.port) as c:
        c.login("app_ro", USERS["app_ro"])
        kind, rows = c.query("SELECT @@port")
        server = cluster.by_port(int(rows[0][0]))
        client = c.local_address
        c.command(p.COM_QUIT)
    line = proxy.wait_for_log_line(
        lambda l: client in l and has_word(l, "app_ro") and server.address in l, 5,
        what="an access line for %s" % client)
    assert has_word(line, "replicas")


def test_warning_for_a_failed_login(make_proxy, cluster):
    # A proxy of its own: no earlier failed login to be grouped with.
    px = make_proxy("warn", main_settings(cluster))
    with pytest.raises(pymysql.err.OperationalError):
        pymysql_connect(px.host, px.port, "app_ro", "wrong-password-for-log-test")
    px.wait_for_log_line(lambda l: "WARN" in l and has_word(l, "app_ro"), 5,
                         what="a warning about app_ro's failed login")
    assert "wrong-password-for-log-test" not in px.log()
    # The same proxy still lets the right password in.
    conn = pymysql_connect(px.host, px.port, "app_ro", USERS["app_ro"])
    try:
        assert scalar(conn, "SELECT CURRENT_USER()") == "app_ro@%"
    finally:
        conn.close()


def test_no_secret_in_the_log(proxy, cluster):
    # One more complete login whose salt and token we know.
    with p.RawClient(proxy.host, proxy.port) as c:
        salt = c.read_greeting()["salt"]
        token = p.native_token(USERS["app_rw"], salt)
        c.login("app_rw", USERS["app_rw"])
        c.query("SELECT 1")
        client = c.local_address
    proxy.wait_for_log_line(lambda l: client in l, 5, what="the access line for %s" % client)
    log = proxy.log().lower()
    assert log, "the proxy wrote nothing to stderr"
    secrets = {}
    for user, pw in ALL_PASSWORDS.items():
        if not pw:
            continue
        stage1 = hashlib.sha1(pw.encode()).digest()
        secrets["%s password" % user] = pw
        secrets["%s hash" % user] = p.password_hash(pw)[1:]
        secrets["%s sha1" % user] = stage1.hex()
    secrets["salt"] = salt.decode()
    secrets["salt hex"] = salt.hex()
    secrets["token hex"] = token.hex()
    secrets["wrong passwords"] = "not-the-password"
    found = [name for name, s in secrets.items() if s.lower() in log]
    assert not found, "secrets in the log: %s" % found
