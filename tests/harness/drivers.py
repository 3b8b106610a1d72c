"""Helpers for the driver-compatibility tests (KILL and connection ids,
COM_CHANGE_USER, MariaDB's extended capabilities, backend accounts with
another plugin): the extra accounts, a statement running in a thread, what
a backend's processlist says, and raw COM_CHANGE_USER exchanges."""

import threading
import time

import pymysql

from . import protocol as p
from . import util
from .accounts import DRIVER_POOLS, DRIVER_USERS, USERS
from .clients import pymysql_connect
from .ops import quiet_settings
from .proxy import user_settings

# The connection ids myroute gives its clients: a range no server uses.
MYROUTE_ID_MIN = 1 << 30
MYROUTE_ID_END = 1 << 31

# Grants of the extra accounts (each created on every server).
_GRANTS = {
    "app_rw2": ["GRANT ALL PRIVILEGES ON `app%`.* TO 'app_rw2'@'%'"],
    "app_ro2": ["GRANT SELECT ON app.* TO 'app_ro2'@'%'"],
    "app_ops": ["GRANT SELECT ON app.* TO 'app_ops'@'%'",
                "GRANT CONNECTION ADMIN ON *.* TO 'app_ops'@'%'"],
}


def create_driver_accounts(servers):
    """Creates accounts.DRIVER_USERS on every server (idempotent)."""
    for s in servers:
        for user, password in DRIVER_USERS.items():
            s.admin_query("CREATE USER IF NOT EXISTS '%s'@'%%%%' IDENTIFIED VIA "
                          "mysql_native_password USING PASSWORD(%%s)" % user, (password,))
            for grant in _GRANTS[user]:
                s.admin_query(grant)


def driver_settings(cluster, **top):
    """quiet_settings (app_rw and nopw -> primary, app_ro -> replicas) plus
    the extra accounts in their pools."""
    out = quiet_settings(cluster, **top)
    for user, password in DRIVER_USERS.items():
        out += user_settings(user, password, DRIVER_POOLS[user])
    return out


def password_of(user):
    return DRIVER_USERS[user] if user in DRIVER_USERS else USERS[user]


def connect_as(target, user, password=None, **kw):
    """PyMySQL to `target` (a proxy or a server) as `user`."""
    return pymysql_connect(target.host, target.port, user,
                           password_of(user) if password is None else password, **kw)


def in_myroute_range(conn_id):
    return MYROUTE_ID_MIN <= conn_id < MYROUTE_ID_END


# --- a backend's sessions ---------------------------------------------------------------

def session_info(server, backend_id):
    """(USER, INFO) of session `backend_id` on `server`, or None when it is gone."""
    rows = server.admin_query(
        "SELECT USER, INFO FROM information_schema.PROCESSLIST WHERE ID = %s", (backend_id,))
    return rows[0] if rows else None


def wait_running(server, backend_id, marker, timeout=10):
    """Waits until session `backend_id` on `server` runs a statement that
    contains `marker`."""
    def running():
        info = session_info(server, backend_id)
        return info is not None and info[1] is not None and marker in info[1]
    util.wait_until(running, timeout, what=lambda: "session %d on %s to run %r; it shows %r"
                    % (backend_id, server.name, marker, session_info(server, backend_id)))


def wait_session_gone(server, backend_id, timeout=10):
    util.wait_until(lambda: session_info(server, backend_id) is None, timeout,
                    what=lambda: "session %d on %s to end; it shows %r"
                    % (backend_id, server.name, session_info(server, backend_id)))


def session_ids(server, user):
    """Ids of the sessions of `user` on `server`."""
    rows = server.admin_query(
        "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s", (user,))
    return {r[0] for r in rows}


# --- a statement running in the background --------------------------------------------------

class Running:
    """Runs one statement on a PyMySQL connection in a thread.  wait()
    returns ("rows", rows) or ("error", (code, message)), and `elapsed` is
    the time from start to the end of the statement."""

    def __init__(self, conn, sql):
        self.conn = conn
        self.sql = sql
        self.outcome = None
        self.elapsed = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = None

    def start(self):
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def _run(self):
        try:
            with self.conn.cursor() as cur:
                cur.execute(self.sql)
                self.outcome = ("rows", cur.fetchall())
        except pymysql.err.MySQLError as e:
            self.outcome = ("error", tuple(e.args[:2]))
        except Exception as e:  # reported by wait()
            self.outcome = ("exception", repr(e))
        self.elapsed = time.monotonic() - self._t0

    def wait(self, timeout):
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "%r still running after %.1fs" % (self.sql, timeout)
        return self.outcome

    def ended_within(self, since, seconds):
        """True when the statement ended no later than `seconds` after the
        time.monotonic() `since`."""
        return self._t0 + self.elapsed - since <= seconds


# --- COM_CHANGE_USER on a raw connection --------------------------------------------------

class ChangeUserReply:
    """How a server or myroute answered a COM_CHANGE_USER: `kind` "ok" or
    "err" (then `err`), `seq` the sequence id of that last packet, `switch`
    the (plugin, scramble) of an AuthSwitchRequest answered on the way."""

    def __init__(self, kind, seq, payload, switch):
        self.kind = kind
        self.seq = seq
        self.payload = payload
        self.switch = switch
        self.err = p.parse_err(payload) if kind == "err" else None

    def __repr__(self):
        return "<ChangeUserReply %s seq=%d switch=%r %r>" % (self.kind, self.seq, self.switch,
                                                             self.payload[:80])


def send_change_user(c, user, password, database=None, plugin=p.NATIVE, token=None):
    """Sends COM_CHANGE_USER on RawClient `c`, with the token for `password`
    on the greeting's scramble unless `token` is given."""
    if token is None:
        token = p.native_token(password, c.greeting["salt"]) if plugin == p.NATIVE else b""
    c.command(p.COM_CHANGE_USER, p.change_user_payload(user, token, database, plugin))


def finish_change_user(c, password, scramble):
    """Reads the answer to a COM_CHANGE_USER.  An AuthSwitchRequest must ask
    for mysql_native_password on `scramble` (the scramble in force); it is
    answered with `password`'s token.  Returns a ChangeUserReply."""
    seq, payload = p.read_packet(c.sock)
    switch = None
    if payload[:1] == b"\xfe":
        switch = p.parse_auth_switch(payload)
        assert switch == (p.NATIVE, scramble), (
            "AuthSwitchRequest %r, expected mysql_native_password on the scramble in force"
            % (switch,))
        assert seq == 1, seq
        p.write_packet(c.sock, seq + 1, p.native_token(password, switch[1]))
        seq, payload = p.read_packet(c.sock)
    c.seq = seq + 1
    assert payload[:1] in (b"\x00", b"\xff"), payload[:80]
    reply = ChangeUserReply("ok" if payload[0] == 0 else "err", seq, payload, switch)
    assert seq == (3 if switch else 1), reply
    return reply
