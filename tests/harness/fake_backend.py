"""A tiny MySQL server speaking just enough of the protocol to drive the
proxy through paths a real server will not take on demand.

Modes:
  "auth_switch"           greets with one salt, answers every login with an
                          AuthSwitchRequest to mysql_native_password carrying a
                          new salt, checks the token against the double SHA1 of
                          the user's password, answers OK or ERR 1045; then
                          serves COM_QUERY (a SELECT gets a fixed result set
                          `answer, backend` = `42, fake`; anything else gets OK),
                          COM_PING, COM_INIT_DB, COM_RESET_CONNECTION, COM_QUIT.
  "close_after_greeting"  sends the greeting and closes the connection.

tls: None (no CLIENT_SSL in the greeting; an SSLRequest gets ERR 1043), an
ssl.SSLContext (server side: the greeting offers CLIENT_SSL, an SSLRequest
is answered with the TLS handshake and the login goes on inside TLS), or
"garbage" (offers CLIENT_SSL, answers an SSLRequest with bytes that are no
TLS and closes).

Every connection is served in its own thread and recorded in `sessions`
(including ones that only read the greeting, or log in and quit, as a proxy
probing its backends at start-up does).
"""

import socket
import threading

from . import protocol as p
from . import util
from .clients import pymysql_connect

DEFAULT_VERSION = "5.5.5-10.11.99-MariaDB-fake-backend"

SERVER_CAPS = (p.CLIENT_LONG_PASSWORD | p.CLIENT_FOUND_ROWS | p.CLIENT_LONG_FLAG
               | p.CLIENT_CONNECT_WITH_DB | p.CLIENT_PROTOCOL_41 | p.CLIENT_TRANSACTIONS
               | p.CLIENT_SECURE_CONNECTION | p.CLIENT_MULTI_STATEMENTS
               | p.CLIENT_MULTI_RESULTS | p.CLIENT_PS_MULTI_RESULTS | p.CLIENT_PLUGIN_AUTH
               | p.CLIENT_CONNECT_ATTRS | p.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
               | p.CLIENT_DEPRECATE_EOF)


class Session:
    """What the fake saw on one connection."""

    def __init__(self, peer):
        self.peer = peer
        self.user = None
        self.database = None
        self.capabilities = None
        self.first_plugin = None
        self.first_token_ok = None   # token of the HandshakeResponse vs the greeting's salt
        self.switched = False
        self.switch_token_ok = None  # token after the AuthSwitchRequest vs the new salt
        self.logged_in = False
        self.commands = []           # (command byte, argument bytes)
        self.ended = None            # "quit", "closed", "error: ..."
        self.ssl_request = None      # (seq, capabilities) of an SSLRequest
        self.response_seq = None     # sequence id of the HandshakeResponse41
        self.tls_version = None      # protocol of the TLS session, if any

    def __repr__(self):
        return "Session(%r)" % self.__dict__


class FakeBackend:
    def __init__(self, mode="auth_switch", users=None, version=DEFAULT_VERSION, tls=None):
        assert mode in ("auth_switch", "close_after_greeting")
        self.mode = mode
        self.tls = tls
        self.users = {u: p.sha1(p.sha1(pw.encode())) if pw else b""
                      for u, pw in (users or {}).items()}
        self.version = version
        self.port = None
        self.sessions = []
        self._lock = threading.Lock()
        self._listener = None
        self._threads = []
        self._stopping = False
        self._conn_id = 100

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def start(self):
        self.port = util.free_port()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", self.port))
        self._listener.listen(64)
        t = threading.Thread(target=self._accept_loop, name="fake-backend-accept", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self):
        self._stopping = True
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
        for t in self._threads:
            t.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def logged_in_sessions(self, user=None):
        with self._lock:
            return [s for s in self.sessions if s.logged_in and (user is None or s.user == user)]

    def finished_session(self, user, timeout=5):
        """The last session of `user` that logged in and ended with COM_QUIT."""
        return util.wait_until(lambda: [s for s in self.logged_in_sessions(user)
                                        if s.ended == "quit"], timeout,
                               what=lambda: "a finished fake session: %r" % self.sessions)[-1]

    def _accept_loop(self):
        while not self._stopping:
            try:
                conn, peer = self._listener.accept()
            except OSError:
                return
            session = Session("%s:%d" % peer)
            with self._lock:
                self.sessions.append(session)
                self._conn_id += 1
                conn_id = self._conn_id
            t = threading.Thread(target=self._serve, args=(conn, session, conn_id),
                                 name="fake-backend-conn", daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn, session, conn_id):
        conn.settimeout(30)
        try:
            self._serve_inner(conn, session, conn_id)
            if session.ended is None:
                session.ended = "closed"
        except p.ConnectionClosed:
            session.ended = "closed"
        except Exception as e:  # a fake server never brings the test down
            session.ended = "error: %r" % (e,)
        finally:
            conn.close()

    def _serve_inner(self, conn, session, conn_id):
        salt1 = p.random_salt()
        caps = SERVER_CAPS | (p.CLIENT_SSL if self.tls is not None else 0)
        p.write_packet(conn, 0, p.greeting_packet(self.version, conn_id, salt1, caps))
        if self.mode == "close_after_greeting":
            session.ended = "closed after greeting"
            return
        seq, payload = p.read_packet(conn)
        resp = p.parse_handshake_response(payload)
        if resp["ssl_request"]:
            session.ssl_request = (seq, resp["capabilities"])
            if self.tls is None:
                p.write_packet(conn, seq + 1, p.err_packet(1043, "08S01", "Bad handshake"))
                session.ended = "ssl request"
                return
            if self.tls == "garbage":
                conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n" + b"\x00" * 64)
                session.ended = "garbage instead of TLS"
                return
            conn = self.tls.wrap_socket(conn, server_side=True)
            session.tls_version = conn.version()
            seq, payload = p.read_packet(conn)
            resp = p.parse_handshake_response(payload)
        session.response_seq = seq
        session.user = resp["user"]
        session.database = resp["database"]
        session.capabilities = resp["capabilities"]
        session.first_plugin = resp["plugin"]
        stage2 = self.users.get(resp["user"])
        if stage2 is not None:
            session.first_token_ok = (p.check_native_token(resp["token"], salt1, stage2)
                                      if stage2 else resp["token"] == b"")
        # Always switch, to a new salt.
        salt2 = p.random_salt()
        seq += 1
        p.write_packet(conn, seq, b"\xfe" + p.NATIVE.encode() + b"\0" + salt2 + b"\0")
        session.switched = True
        seq, token = p.read_packet(conn)
        if stage2 is None:
            ok = False
        elif stage2 == b"":
            ok = token == b""
        else:
            ok = p.check_native_token(token, salt2, stage2)
        session.switch_token_ok = ok
        if not ok:
            p.write_packet(conn, seq + 1, p.err_packet(
                1045, "28000", "Access denied for user '%s'@'%s' (using password: %s)"
                % (resp["user"], session.peer.split(":")[0], "YES" if token else "NO")))
            session.ended = "access denied"
            return
        p.write_packet(conn, seq + 1, p.ok_packet())
        session.logged_in = True
        deprecate_eof = bool(session.capabilities & p.CLIENT_DEPRECATE_EOF)
        while True:
            seq, payload = p.read_packet(conn)
            cmd, arg = payload[0], payload[1:]
            session.commands.append((cmd, arg))
            if cmd == p.COM_QUIT:
                session.ended = "quit"
                return
            if cmd == p.COM_QUERY and arg.lstrip()[:6].upper() == b"SELECT":
                self._send_result(conn, deprecate_eof)
            elif cmd in (p.COM_QUERY, p.COM_PING, p.COM_INIT_DB, p.COM_RESET_CONNECTION):
                p.write_packet(conn, 1, p.ok_packet())
            else:
                p.write_packet(conn, 1, p.err_packet(1047, "08S01", "Unknown command"))

    def _send_result(self, conn, deprecate_eof):
        packets = [p.lenenc_int(2), p.column_def("answer"), p.column_def("backend")]
        if not deprecate_eof:
            packets.append(p.eof_packet())
        packets.append(p.lenenc_str("42") + p.lenenc_str("fake"))
        packets.append(p.ok_packet(header=b"\xfe") if deprecate_eof else p.eof_packet())
        conn.sendall(b"".join(p.frame(i + 1, pkt) for i, pkt in enumerate(packets)))


def assert_answers(px, user, password):
    """A login through `px` to an "auth_switch" fake backend, and the one
    query it answers."""
    conn = pymysql_connect(px.host, px.port, user, password, read_timeout=10)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT answer")
            assert cur.fetchall() == (("42", "fake"),)
    finally:
        conn.close()
