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

ALL_PASSWORDS = dict(USERS, **{DEAD_USER: DEAD_PASSWORD, FAKE_USER: FAKE_PASSWORD})
