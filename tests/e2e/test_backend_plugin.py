"""A backend account that uses another plugin (ed25519) while myroute has
a mysql_native_password hash for it: the client gets an error that names
the plugin and says myroute logs in with mysql_native_password, not
"Unable to connect to pool", and the server is not counted as failing."""

import pymysql
import pytest

from harness import util
from harness.clients import login, pymysql_connect, scalar
from harness.ops import OpsProxy, quiet_settings
from harness.proxy import user_settings

ED_USER = "app_ed"
ED_PASSWORD = "ed-Secret-3307-jabuticaba"


@pytest.fixture(scope="module")
def ed_account(cluster):
    primary = cluster.primary
    if not primary.admin_query("SELECT 1 FROM information_schema.PLUGINS "
                               "WHERE PLUGIN_NAME = 'ed25519' AND PLUGIN_STATUS = 'ACTIVE'"):
        primary.admin_query("INSTALL SONAME 'auth_ed25519'")
    primary.admin_query("CREATE OR REPLACE USER '%s'@'%%' IDENTIFIED VIA ed25519 "
                        "USING PASSWORD('%s')" % (ED_USER, ED_PASSWORD))
    primary.admin_query("GRANT SELECT ON app.* TO '%s'@'%%'" % ED_USER)
    assert primary.admin_query("SELECT plugin FROM mysql.user WHERE user = %s",
                               (ED_USER,)) == (("ed25519",),)
    yield cluster
    primary.admin_query("DROP USER IF EXISTS '%s'@'%%'" % ED_USER)


@pytest.fixture(scope="module")
def epx(myroute_bin, ed_account, workdir):
    # health.fall = 1: one failure counted against the server would take it down.
    settings = (quiet_settings(ed_account, **{"health.fall": "1"})
                + user_settings(ED_USER, ED_PASSWORD, "primary"))
    yield from util.running(OpsProxy(workdir, "ed25519", settings))


def test_ed25519_backend_account_is_reported_not_the_pool(epx, cluster):
    addr = cluster.primary.address
    before, = epx.server_rows(addr)
    assert before["state"] == "up", before
    for _ in range(2):
        with pytest.raises(pymysql.err.OperationalError) as info:
            pymysql_connect(epx.host, epx.port, ED_USER, ED_PASSWORD)
        code, message = info.value.args[:2]
        assert "ed25519" in message and "mysql_native_password" in message, message
        assert "Unable to connect to pool" not in message, message
        assert code != 1429, (code, message)
    after, = epx.server_rows(addr)
    assert after["state"] == "up" and after["failures"] == before["failures"], (before, after)
    # The server goes on serving the others.
    conn = login(epx, "app_rw")
    try:
        assert scalar(conn, "SELECT @@port") == cluster.primary.port
    finally:
        conn.close()
