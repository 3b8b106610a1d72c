"""Accounts used by the tests.  Passwords are distinctive so that a scan of
the proxy's log for them cannot match by accident."""

# Created on every MariaDB backend (mysql_native_password).
USERS = {
    "app_rw": "rw-Secret-7391-kumquat",
    "app_ro": "ro-Secret-2846-tamarind",
    "nopw": "",
}

# Known only to the proxy's configuration; routed to a pool whose servers
# refuse connections.
DEAD_USER = "app_dead"
DEAD_PASSWORD = "dead-Secret-5150-quince"

# Known only to the proxy and to the fake backend.
FAKE_USER = "fakeuser"
FAKE_PASSWORD = "fake-Secret-6620-loquat"

# Created on every MariaDB backend (mysql_native_password) by the fixture
# `driver_accounts`, for the tests of KILL and COM_CHANGE_USER, and known to
# the proxies those tests start (harness.drivers.driver_settings).
DRIVER_USERS = {
    "app_rw2": "rw2-Secret-4417-rambutan",    # pool primary, the grants of app_rw
    "app_ro2": "ro2-Secret-9034-mangosteen",  # pool replicas, the grants of app_ro
    "app_ops": "ops-Secret-6158-sapodilla",   # pool primary, may kill others' sessions
}
DRIVER_POOLS = {"app_rw2": "primary", "app_ro2": "replicas", "app_ops": "primary"}

ALL_PASSWORDS = dict(USERS, **DRIVER_USERS,
                     **{DEAD_USER: DEAD_PASSWORD, FAKE_USER: FAKE_PASSWORD})

# Created on the TLS servers only (harness.mariadb.TlsCluster): a USAGE
# account for health checks, and one that must present the client
# certificate (REQUIRE SUBJECT).
TLS_MONITOR_USER = "tls_monitor"
TLS_MONITOR_PASSWORD = "mon-Secret-9052-feijoa"
X509_USER = "app_x509"
X509_PASSWORD = "x509-Secret-3380-yuzu"
X509_SUBJECT = "/CN=myroute test client"
