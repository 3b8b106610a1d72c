"""Just enough of the MySQL client/server protocol for the tests: packet
framing, mysql_native_password, greeting parsing, a raw client (for what the
ordinary client libraries will not do on purpose) and the server-side packets
the fake backend needs."""

import hashlib
import os
import socket
import struct

# Capability flags.
CLIENT_LONG_PASSWORD = 1 << 0
CLIENT_FOUND_ROWS = 1 << 1
CLIENT_LONG_FLAG = 1 << 2
CLIENT_CONNECT_WITH_DB = 1 << 3
CLIENT_PROTOCOL_41 = 1 << 9
CLIENT_SSL = 1 << 11
CLIENT_TRANSACTIONS = 1 << 13
CLIENT_SECURE_CONNECTION = 1 << 15
CLIENT_MULTI_STATEMENTS = 1 << 16
CLIENT_MULTI_RESULTS = 1 << 17
CLIENT_PS_MULTI_RESULTS = 1 << 18
CLIENT_PLUGIN_AUTH = 1 << 19
CLIENT_CONNECT_ATTRS = 1 << 20
CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA = 1 << 21
CLIENT_DEPRECATE_EOF = 1 << 24

BASIC_CLIENT_CAPS = (CLIENT_LONG_PASSWORD | CLIENT_LONG_FLAG | CLIENT_PROTOCOL_41
                     | CLIENT_TRANSACTIONS | CLIENT_SECURE_CONNECTION
                     | CLIENT_MULTI_RESULTS | CLIENT_PLUGIN_AUTH)

COM_QUIT = 0x01
COM_INIT_DB = 0x02
COM_QUERY = 0x03
COM_PROCESS_KILL = 0x0C
COM_PING = 0x0E
COM_CHANGE_USER = 0x11
COM_STMT_PREPARE = 0x16
COM_STMT_EXECUTE = 0x17
COM_STMT_CLOSE = 0x19
COM_RESET_CONNECTION = 0x1F
COM_STMT_BULK_EXECUTE = 0xFA

# MariaDB's extended capabilities: the last 4 bytes of the greeting's
# reserved area and of the client's filler, used when CLIENT_MYSQL (bit 0,
# CLIENT_LONG_PASSWORD) is clear.
MARIADB_CLIENT_PROGRESS = 1 << 0
MARIADB_CLIENT_COM_MULTI = 1 << 1
MARIADB_CLIENT_STMT_BULK_OPERATIONS = 1 << 2
MARIADB_CLIENT_EXTENDED_METADATA = 1 << 3
MARIADB_CLIENT_CACHE_METADATA = 1 << 4
MARIADB_CLIENT_BULK_UNIT_RESULTS = 1 << 5

MAX_PAYLOAD = 0xFFFFFF
NATIVE = "mysql_native_password"


def sha1(data):
    return hashlib.sha1(data).digest()


def password_hash(password):
    """The `*HEX` form MySQL's PASSWORD() and mysql.user show; '' for ''."""
    if password == "":
        return ""
    if isinstance(password, str):
        password = password.encode()
    return "*" + sha1(sha1(password)).hex().upper()


def native_token(password, salt):
    """mysql_native_password scramble: SHA1(pw) XOR SHA1(salt + SHA1(SHA1(pw)))."""
    if password in ("", b""):
        return b""
    if isinstance(password, str):
        password = password.encode()
    stage1 = sha1(password)
    mix = sha1(salt + sha1(stage1))
    return bytes(a ^ b for a, b in zip(stage1, mix))


def check_native_token(token, salt, stage2):
    """Verifies a client's token against the stored double SHA1 (20 bytes)."""
    if len(token) != 20:
        return False
    mix = sha1(salt + stage2)
    stage1 = bytes(a ^ b for a, b in zip(token, mix))
    return sha1(stage1) == stage2


# --- encoding ---------------------------------------------------------------

def lenenc_int(n):
    if n < 251:
        return bytes([n])
    if n < 1 << 16:
        return b"\xfc" + struct.pack("<H", n)
    if n < 1 << 24:
        return b"\xfd" + struct.pack("<I", n)[:3]
    return b"\xfe" + struct.pack("<Q", n)


def lenenc_str(b):
    if isinstance(b, str):
        b = b.encode()
    return lenenc_int(len(b)) + b


class Reader:
    def __init__(self, data, pos=0):
        self.data = data
        self.pos = pos

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError("packet too short")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack("<H", self.take(2))[0]

    def u24(self):
        return struct.unpack("<I", self.take(3) + b"\0")[0]

    def u32(self):
        return struct.unpack("<I", self.take(4))[0]

    def nul_str(self):
        end = self.data.index(b"\0", self.pos)
        out = self.data[self.pos:end]
        self.pos = end + 1
        return out

    def lenenc_int(self):
        first = self.u8()
        if first < 0xFB:
            return first
        if first == 0xFB:
            return None
        if first == 0xFC:
            return self.u16()
        if first == 0xFD:
            return self.u24()
        return struct.unpack("<Q", self.take(8))[0]

    def lenenc_str(self):
        n = self.lenenc_int()
        return None if n is None else self.take(n)

    def rest(self):
        out = self.data[self.pos:]
        self.pos = len(self.data)
        return out

    def at_end(self):
        return self.pos >= len(self.data)


# --- framing ----------------------------------------------------------------

class ConnectionClosed(Exception):
    """The peer closed the connection."""


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionClosed("connection closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def read_packet(sock):
    """Reads one logical packet; returns (seq of its last frame, payload)."""
    payload = b""
    while True:
        header = recv_exact(sock, 4)
        length = header[0] | header[1] << 8 | header[2] << 16
        seq = header[3]
        payload += recv_exact(sock, length)
        if length < MAX_PAYLOAD:
            return seq, payload


def frame(seq, payload):
    """Frames a payload (split at 16 MiB - 1) starting with sequence `seq`."""
    out = []
    pos = 0
    while True:
        chunk = payload[pos:pos + MAX_PAYLOAD]
        out.append(struct.pack("<I", len(chunk))[:3] + bytes([seq & 0xFF]) + chunk)
        seq += 1
        pos += len(chunk)
        if len(chunk) < MAX_PAYLOAD:
            return b"".join(out)


def write_packet(sock, seq, payload):
    sock.sendall(frame(seq, payload))


# --- server packets -----------------------------------------------------------

class ServerError(Exception):
    """An ERR packet."""

    def __init__(self, code, state, message):
        super().__init__("(%d, %r, %r)" % (code, state, message))
        self.code = code
        self.state = state
        self.message = message


def parse_err(payload):
    r = Reader(payload)
    assert r.u8() == 0xFF
    code = r.u16()
    state = ""
    if payload[3:4] == b"#":
        r.take(1)
        state = r.take(5).decode()
    return ServerError(code, state, r.rest().decode("utf-8", "replace"))


def err_packet(code, state, message):
    return b"\xff" + struct.pack("<H", code) + b"#" + state.encode() + message.encode()


def ok_packet(affected=0, insert_id=0, status=0x0002, warnings=0, header=b"\x00"):
    return header + lenenc_int(affected) + lenenc_int(insert_id) + struct.pack("<HH", status, warnings)


def eof_packet(status=0x0002, warnings=0):
    return b"\xfe" + struct.pack("<HH", warnings, status)


def column_def(name, type_code=0xFD, length=255, charset=33):
    return (lenenc_str("def") + lenenc_str("") + lenenc_str("") + lenenc_str("")
            + lenenc_str(name) + lenenc_str(name) + b"\x0c"
            + struct.pack("<HIBHB", charset, length, type_code, 0, 0) + b"\0\0")


def parse_greeting(payload):
    r = Reader(payload)
    g = {"protocol": r.u8()}
    if g["protocol"] == 0xFF:
        raise parse_err(payload)
    g["version"] = r.nul_str().decode()
    g["connection_id"] = r.u32()
    salt = r.take(8)
    r.take(1)
    caps = r.u16()
    g["charset"] = r.u8()
    g["status"] = r.u16()
    caps |= r.u16() << 16
    salt_len = r.u8()
    r.take(6)
    ext_caps = r.u32()  # MariaDB extended capabilities (filler in MySQL)
    if caps & CLIENT_SECURE_CONNECTION:
        n = max(13, salt_len - 8)
        part2 = r.take(n)
        salt += part2.rstrip(b"\0") if n == 13 else part2
    g["salt"] = salt
    g["capabilities"] = caps
    g["mariadb_capabilities"] = ext_caps
    g["plugin"] = r.nul_str().decode() if caps & CLIENT_PLUGIN_AUTH and not r.at_end() else ""
    return g


def greeting_packet(version, connection_id, salt, caps, plugin=NATIVE, charset=33, status=0x0002):
    assert len(salt) == 20
    return (b"\x0a" + version.encode() + b"\0" + struct.pack("<I", connection_id)
            + salt[:8] + b"\0" + struct.pack("<H", caps & 0xFFFF)
            + bytes([charset]) + struct.pack("<H", status) + struct.pack("<H", caps >> 16)
            + bytes([21]) + b"\0" * 10 + salt[8:] + b"\0" + plugin.encode() + b"\0")


def parse_handshake_response(payload):
    r = Reader(payload)
    caps = r.u32()
    out = {"capabilities": caps, "max_packet": r.u32(), "charset": r.u8()}
    r.take(23)
    if r.at_end():  # SSLRequest
        out["ssl_request"] = True
        return out
    out["ssl_request"] = False
    out["user"] = r.nul_str().decode()
    if caps & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA:
        out["token"] = r.lenenc_str()
    elif caps & CLIENT_SECURE_CONNECTION:
        out["token"] = r.take(r.u8())
    else:
        out["token"] = r.nul_str()
    out["database"] = None
    if caps & CLIENT_CONNECT_WITH_DB and not r.at_end():
        out["database"] = r.nul_str().decode()
    out["plugin"] = ""
    if caps & CLIENT_PLUGIN_AUTH and not r.at_end():
        out["plugin"] = r.nul_str().decode()
    return out


def handshake_response(user, token, caps, database=None, plugin=NATIVE, charset=33,
                       mariadb_caps=None):
    """mariadb_caps: MariaDB extended capabilities to ask for (CLIENT_MYSQL
    is then cleared, as MariaDB's clients do); None sends a MySQL client's
    response."""
    if database is not None:
        caps |= CLIENT_CONNECT_WITH_DB
    if mariadb_caps is None:
        filler = b"\0" * 23
    else:
        caps &= ~CLIENT_LONG_PASSWORD
        filler = b"\0" * 19 + struct.pack("<I", mariadb_caps)
    out = struct.pack("<IIB", caps, MAX_PAYLOAD, charset) + filler
    out += user.encode() + b"\0"
    out += bytes([len(token)]) + token
    if database is not None:
        out += database.encode() + b"\0"
    if caps & CLIENT_PLUGIN_AUTH:
        out += plugin.encode() + b"\0"
    return out


def change_user_payload(user, token, database=None, plugin=NATIVE, charset=33):
    """The argument of COM_CHANGE_USER (after the command byte), as clients
    with CLIENT_SECURE_CONNECTION and CLIENT_PLUGIN_AUTH send it."""
    return (user.encode() + b"\0" + bytes([len(token)]) + token
            + (database or "").encode() + b"\0" + struct.pack("<H", charset)
            + plugin.encode() + b"\0")


def parse_auth_switch(payload):
    """(plugin name, scramble) of an AuthSwitchRequest (0xFE) payload."""
    r = Reader(payload, 1)
    assert payload[0] == 0xFE, payload[:40]
    name = r.nul_str().decode()
    return name, r.rest().rstrip(b"\0")


def is_progress(payload):
    """True for a MariaDB progress report: an ERR-looking packet with error
    code 0xFFFF, sent during a long command to a client that asked for
    MARIADB_CLIENT_PROGRESS."""
    return payload[:3] == b"\xff\xff\xff"


def ssl_request(caps=BASIC_CLIENT_CAPS | CLIENT_SSL, charset=33):
    return struct.pack("<IIB", caps | CLIENT_SSL, MAX_PAYLOAD, charset) + b"\0" * 23


# --- a raw client -------------------------------------------------------------

class RawClient:
    """A hand-driven client connection.  Nothing is read or sent implicitly."""

    def __init__(self, host, port, timeout=10.0, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.seq = 0
        self.greeting = None

    @property
    def local_address(self):
        host, port = self.sock.getsockname()[:2]
        return "%s:%d" % (host, port)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def read(self):
        seq, payload = read_packet(self.sock)
        self.seq = seq + 1
        return payload

    def write(self, payload):
        self.sock.sendall(frame(self.seq, payload))
        self.seq = (self.seq + 1 + len(payload) // MAX_PAYLOAD) & 0xFF

    def read_err(self):
        """Reads a packet that must be an ERR; returns it as a ServerError."""
        payload = self.read()
        assert payload[0] == 0xFF, payload
        return parse_err(payload)

    def read_greeting(self):
        self.greeting = parse_greeting(self.read())
        return self.greeting

    def login(self, user, password, database=None, caps=BASIC_CLIENT_CAPS, plugin=NATIVE,
              mariadb_caps=None):
        """Full login; returns the OK payload or raises ServerError.
        mariadb_caps: see handshake_response."""
        if self.greeting is None:
            self.read_greeting()
        token = native_token(password, self.greeting["salt"]) if plugin == NATIVE else b""
        self.write(handshake_response(user, token, caps, database, plugin,
                                      mariadb_caps=mariadb_caps))
        while True:
            payload = self.read()
            if payload[0] == 0x00:
                return payload
            if payload[0] == 0xFF:
                raise parse_err(payload)
            if payload[0] == 0xFE:  # AuthSwitchRequest
                r = Reader(payload, 1)
                name = r.nul_str().decode()
                salt = r.rest().rstrip(b"\0")
                if name != NATIVE:
                    raise AssertionError("unexpected auth switch to %r" % name)
                self.write(native_token(password, salt))
                continue
            raise AssertionError("unexpected packet during login: %r" % payload[:40])

    def command(self, cmd, arg=b""):
        """Sends a command packet (starting a new sequence)."""
        if isinstance(arg, str):
            arg = arg.encode()
        self.seq = 0
        self.write(bytes([cmd]) + arg)

    def read_result(self):
        """Reads one complete response to a command: returns ('ok', payload),
        ('rows', [[values]]) (text protocol, classic EOF framing) or raises
        ServerError."""
        payload = self.read()
        if payload[0] == 0x00:
            return "ok", payload
        if payload[0] == 0xFF:
            raise parse_err(payload)
        ncols = Reader(payload).lenenc_int()
        for _ in range(ncols):
            self.read()
        eof = self.read()
        assert eof[0] == 0xFE, eof
        rows = []
        while True:
            p = self.read()
            if p[0] == 0xFE and len(p) < 9:
                return "rows", rows
            if p[0] == 0xFF:
                raise parse_err(p)
            r = Reader(p)
            rows.append([r.lenenc_str() for _ in range(ncols)])

    def query(self, sql):
        self.command(COM_QUERY, sql)
        return self.read_result()

    def closed_by_peer(self, timeout=5.0):
        """True when the peer has closed the connection (EOF or reset) within
        `timeout` seconds; False when data arrives instead or nothing happens."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1)
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        return data == b""


def random_salt():
    """20 bytes of printable salt, as servers send it (no NUL, no '$')."""
    out = bytearray()
    while len(out) < 20:
        b = os.urandom(1)[0] & 0x7F
        if 0x21 <= b <= 0x7E and b != 0x24:
            out.append(b)
    return bytes(out)


def parse_ok(payload):
    """An OK packet: affected rows, insert id, status, warnings and the
    info field (length-encoded, as MariaDB sends it; b"" when absent)."""
    r = Reader(payload)
    header = r.u8()
    assert header in (0x00, 0xFE), payload[:16]
    out = {"affected": r.lenenc_int(), "insert_id": r.lenenc_int(), "status": r.u16(),
           "warnings": r.u16()}
    out["info"] = b"" if r.at_end() else r.lenenc_str()
    return out
