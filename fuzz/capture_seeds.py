#!/usr/bin/env python3
"""Regenerates the seed corpus in fuzz/corpus/ from real traffic.

Starts one MariaDB server and one myroute in front of it (with the e2e
harness in tests/harness), puts a small TCP relay between real clients (the
mariadb CLI, PyMySQL, mysql-connector-python in pure mode) and each of them,
and writes the connection-phase packets the relay sees: greetings,
HandshakeResponse41 with and without database, attributes and plugin,
SSLRequest, AuthSwitchRequest/Response, OK and ERR.  Seeds for the
`pair_script` target are scripts in that target's input format (see
fuzz_targets/pair_script.rs) built around the captured packets.

The `ssl_request`, `ok_rewrite` and `change_user` seeds come from MariaDB
alone: SSLRequests of the three clients (with their HandshakeResponse41 as
it follows inside TLS), OK packets of a MariaDB 10.11 session with and
without CLIENT_SESSION_TRACK (session state, info, affected rows, insert
ids), and COM_CHANGE_USER from libmariadb (mysql_change_user, through
ctypes) and mysql-connector-python, each in its target's input format.

Usage (as root on a machine with MariaDB, PyMySQL and mysql-connector-python,
e.g. after tests/setup-deps.sh):

    MYROUTE_BIN=target/release/myroute python3 fuzz/capture_seeds.py
    python3 fuzz/capture_seeds.py ssl_request ok_rewrite change_user

Named targets: only their seeds are rewritten (those three need no
myroute binary). Salts and tokens differ on every run, so the files change
each time; the shapes do not.
"""

import ctypes
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import mysql.connector  # noqa: E402
import pymysql  # noqa: E402

from harness import protocol as p  # noqa: E402
from harness.accounts import USERS  # noqa: E402
from harness.hostile_clients import Relay  # noqa: E402
from harness.mariadb import Cluster  # noqa: E402
from harness.proxy import Proxy, main_settings  # noqa: E402

CORPUS = os.path.join(HERE, "corpus")
# Targets whose seeds `capture` writes (with myroute in front of MariaDB),
# and those `capture_sessions` writes (MariaDB alone).
PROXY_TARGETS = ("packet_framing", "client_hello", "auth_switch", "backend_greeting", "config",
                 "pair_script")
SESSION_TARGETS = ("ssl_request", "ok_rewrite", "change_user")
WANTED = set(PROXY_TARGETS + SESSION_TARGETS)


def set_ssl_flag(pkt):
    """A greeting with CLIENT_SSL added, so a client answers with SSLRequest."""
    payload = pkt[4:]
    at = payload.index(b"\0", 1) + 1 + 4 + 8 + 1
    caps = struct.unpack_from("<H", payload, at)[0] | p.CLIENT_SSL
    payload = payload[:at] + struct.pack("<H", caps) + payload[at + 2:]
    return pkt[:4] + payload


def settle(relay, timeout=3.0):
    """Waits until the relay has seen packets and no more arrive; takes them:
    (packets, {"c": client stream, "s": server stream})."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        with relay.lock:
            n = len(relay.packets)
        if n == last and n > 0:
            break
        last = n
        time.sleep(0.15)
    with relay.lock:
        pk, relay.packets = relay.packets, []
    raw = {side: b"".join(b for s, b in pk if s == side) for side in "cs"}
    return pk, raw


def write(target, name, data):
    if target not in WANTED:
        return
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def ignore(f, *a, **kw):
    try:
        r = f(*a, **kw)
        if hasattr(r, "close"):
            try:
                r.cursor().execute("SELECT 1")
            except Exception:
                pass
            r.close()
    except Exception:
        pass


# --- pair_script encoding (keep in step with fuzz_targets/pair_script.rs) ------

def op_raw(op, b):
    """`b` in chunks of at most 255 bytes, each behind `op` and its length."""
    out = b""
    for i in range(0, len(b), 255):
        chunk = b[i:i + 255]
        out += bytes([op, len(chunk)]) + chunk
    return out


def op_client_raw(b):
    return op_raw(0, b)


def op_backend_raw(b):
    return op_raw(1, b)


def op_login(a, b=0, c=1):
    return bytes([2, a, b, c])


def op_switch_answer(a, seq=3):
    return bytes([3, a, seq])


def op_greeting(a=0, salt=ord("z")):
    return bytes([4, a, salt])


def op_ok(seq):
    return bytes([5, seq])


def op_err(seq, code_div_37):
    return bytes([6, seq, code_div_37])


def op_backend_switch(a, seq):
    return bytes([7, a, seq])


CONNECTED = bytes([8])
FAILED = bytes([9])
NO_SOCKET = bytes([16])


def op_client_closed(how=0):
    return bytes([10, how])


def op_advance(ms4):
    return bytes([11]) + struct.pack("<H", ms4)


def op_client_reads(n=0):
    return bytes([12, n])


def op_backend_reads(n=0):
    return bytes([13, n])


def op_command(cmd, arg=b""):
    return bytes([14, cmd, len(arg)]) + arg


def op_login_fill(a, b=0, less=0):
    """A login padded with attributes to the ring's size less `less` bytes."""
    return bytes([17, a, b, less])


# ClientLogin `a` bits: user (0 app_rw, 1 app_ro, 2 nopw, 3 nobody), wrong
# password (8), plugin (0x10 empty, 0x20 caching_sha2, 0x30 clear), db (0x40),
# attributes (0x80).


def main():
    global WANTED
    if sys.argv[1:]:
        unknown = set(sys.argv[1:]) - WANTED
        if unknown:
            sys.exit("capture_seeds.py: no seeds are captured for %s (targets: %s)"
                     % (" ".join(sorted(unknown)), " ".join(PROXY_TARGETS + SESSION_TARGETS)))
        WANTED = set(sys.argv[1:])
    for t in WANTED:
        shutil.rmtree(os.path.join(CORPUS, t), ignore_errors=True)
    work = tempfile.mkdtemp(prefix="myroute-seeds-")
    cluster = Cluster(1)
    cluster.start()
    db = cluster.primary
    proxy = None
    try:
        if WANTED & set(PROXY_TARGETS):
            proxy = Proxy(work, "seeds", main_settings(cluster).copy())
            # main_settings names replicas; with one server, route everyone to it.
            proxy.settings = [(k, v) for k, v in proxy.settings if k != "pool.replicas.servers"
                              ] + [("pool.replicas.servers", db.address)]
            proxy.start()
            capture(db, proxy)
        if WANTED & set(SESSION_TARGETS):
            capture_sessions(db)
    finally:
        if proxy is not None:
            proxy.stop()
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    for t in sorted(WANTED):
        files = os.listdir(os.path.join(CORPUS, t))
        print("%-18s %2d seeds" % (t, len(files)))


def capture(db, proxy):
    rw, ro = USERS["app_rw"], USERS["app_ro"]

    # --- straight to MariaDB -------------------------------------------------------
    relay = Relay(db)
    cli = ["mariadb", "--no-defaults", "-h127.0.0.1", "-P%d" % relay.port, "--protocol=TCP",
           "--skip-ssl", "--batch"]

    def client_first(pk):
        return next(b for s, b in pk if s == "c")

    def server_packets(pk):
        return [b for s, b in pk if s == "s"]

    subprocess.run(cli + ["-uapp_rw", "-p" + rw, "-e", "SELECT 1"], capture_output=True, timeout=30)
    pk, raw = settle(relay)
    greeting = server_packets(pk)[0]
    write("backend_greeting", "mariadb_10_11_greeting", greeting[4:])
    write("client_hello", "mariadb_cli_response", client_first(pk)[4:])
    ok = server_packets(pk)[1]
    write("backend_greeting", "mariadb_ok_after_login", ok[4:])
    write("packet_framing", "cli_session_client_stream", b"\x80\xff\x01" + raw["c"])
    write("packet_framing", "cli_session_server_stream_small_ring", b"\x20\x40\x07" + raw["s"])
    mariadb_greeting_packet = greeting
    mariadb_ok_packet = ok
    # A verified triple for check_token: salt, stage2, the client's token.
    salt = p.parse_greeting(greeting[4:])["salt"]
    token = p.parse_handshake_response(client_first(pk)[4:])["token"]
    stage2 = p.sha1(p.sha1(rw.encode()))
    write("auth_switch", "accepted_token_salt_stage2_token", salt + stage2 + token)

    subprocess.run(cli + ["-uapp_ro", "-p" + ro, "app", "-e", "SELECT 1"], capture_output=True,
                   timeout=30)
    pk, _ = settle(relay)
    write("client_hello", "mariadb_cli_response_with_db", client_first(pk)[4:])

    ignore(pymysql.connect, host="127.0.0.1", port=relay.port, user="app_rw", password=rw,
           ssl_disabled=True)
    pk, _ = settle(relay)
    write("client_hello", "pymysql_response", client_first(pk)[4:])

    ignore(pymysql.connect, host="127.0.0.1", port=relay.port, user="app_ro", password=ro,
           database="app", ssl_disabled=True, program_name="seedcap")
    pk, _ = settle(relay)
    pymysql_db_response = client_first(pk)
    write("client_hello", "pymysql_response_with_db_and_attrs", pymysql_db_response[4:])

    ignore(pymysql.connect, host="127.0.0.1", port=relay.port, user="app_rw", password="wrong",
           ssl_disabled=True)
    pk, _ = settle(relay)
    err = server_packets(pk)[-1]
    write("backend_greeting", "mariadb_err_1045", err[4:])
    mariadb_err_packet = err

    ignore(pymysql.connect, host="127.0.0.1", port=relay.port, user="nopw", password="",
           ssl_disabled=True)
    pk, _ = settle(relay)
    write("client_hello", "pymysql_response_empty_password", client_first(pk)[4:])

    ignore(mysql.connector.connect, host="127.0.0.1", port=relay.port, user="app_rw",
           password=rw, use_pure=True, ssl_disabled=True)
    pk, _ = settle(relay)
    write("client_hello", "connector_response", client_first(pk)[4:])

    ignore(mysql.connector.connect, host="127.0.0.1", port=relay.port, user="app_rw",
           password=rw, use_pure=True, ssl_disabled=True, auth_plugin="caching_sha2_password")
    pk, raw = settle(relay)
    write("client_hello", "connector_response_caching_sha2", client_first(pk)[4:])
    switch = next(b for s, b in pk if s == "s" and b[4] == 0xFE)
    write("auth_switch", "mariadb_auth_switch_request", switch[4:])
    answer = [b for s, b in pk if s == "c"][1]
    write("auth_switch", "connector_auth_switch_response_as_token",
          p.parse_greeting(greeting[4:])["salt"] + stage2 + answer[4:])
    write("packet_framing", "connector_switch_client_stream", b"\x85\x30\x03" + raw["c"])
    relay.close()

    # SSLRequest: a greeting that offers TLS, as a TLS-capable server's would.
    bait = Relay(db, greeting=set_ssl_flag)
    ignore(pymysql.connect, host="127.0.0.1", port=bait.port, user="app_rw", password=rw,
           ssl={"fake_flag_to_enable_tls": True}, connect_timeout=3)
    pk, _ = settle(bait)
    ssl_request = client_first(pk)
    write("client_hello", "pymysql_ssl_request", ssl_request[4:])
    subprocess.run(["mariadb", "--no-defaults", "-h127.0.0.1", "-P%d" % bait.port,
                    "--protocol=TCP", "--ssl", "-uapp_rw", "-p" + rw, "-e", "SELECT 1",
                    "--connect-timeout=3"], capture_output=True, timeout=30)
    pk, _ = settle(bait)
    write("client_hello", "mariadb_cli_ssl_request", client_first(pk)[4:])
    bait.close()

    # A pre-4.1 HandshakeResponse320 (no client here sends one any more).
    write("client_hello", "pre41_response", b"\x85\x24\x00\x00\x00app_rw\x00abcdefgh\x00")

    # --- through myroute -----------------------------------------------------------
    relay = Relay(proxy)
    ignore(mysql.connector.connect, host="127.0.0.1", port=relay.port, user="app_rw",
           password=rw, use_pure=True, ssl_disabled=True, auth_plugin="caching_sha2_password")
    pk, raw = settle(relay)
    write("backend_greeting", "myroute_greeting", server_packets(pk)[0][4:])
    myroute_switch = next(b for s, b in pk if s == "s" and b[4] == 0xFE)
    write("auth_switch", "myroute_auth_switch_request", myroute_switch[4:])
    write("packet_framing", "myroute_session_server_stream", b"\x80\xff\x05" + raw["s"])
    ignore(pymysql.connect, host="127.0.0.1", port=relay.port, user="app_rw", password="wrong",
           ssl_disabled=True)
    pk, _ = settle(relay)
    write("backend_greeting", "myroute_err_1045", server_packets(pk)[-1][4:])
    relay.close()

    write("auth_switch", "old_auth_switch_request", b"\xfe")
    write("packet_framing", "header_claiming_16MiB", b"\x80\xff\x00\xff\xff\xff\x00")
    write("packet_framing", "change_user_command",
          b"\x80\xff\x09" + p.frame(0, b"\x03SELECT 1") + p.frame(0, b"\x11app_ro\x00\x14" + b"a" * 20))

    # --- configuration ---------------------------------------------------------------
    write("config", "readme_example", b"""listen = 127.0.0.1:3306
# server_version = 10.11.6-MariaDB   # default: what the backends announce
buffer_size = 16384                  # per direction, per connection
connect_timeout = 5s                 # one backend attempt: connect + login
handshake_timeout = 10s              # accept to logged in
pool.primary.servers  = 10.0.0.1:3306
pool.replicas.servers = 10.0.0.2:3306, 10.0.0.3:3306
user.app_rw.password = *B17453F89631AE57EFC1B401AD1C7A59EFD547E5
user.app_rw.pool     = primary
user.app_ro.password = *14521EA7B4C66AE94E6CFF753453F89631AE57EF
user.app_ro.pool     = replicas
""")
    write("config", "every_key", b"""listen = [::1]:6033
server_version = 10.11.6-MariaDB
buffer_size = 4096
max_clients = 100
reuse_port = yes
connect_timeout = 250ms
handshake_timeout = 2m
idle_timeout = 1h
source_address = 127.0.0.2
health.interval = 1s
health.fall = 2
health.rise = 1
health.user = checker
health.password = *2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19
pool.w.servers = 127.0.0.1:1 weight=5, [::1]:2
pool.w.role = primary
pool.r.servers = 127.0.0.1:3, 127.0.0.1:4 weight=1000
pool.r.role = replica
pool.r.fallback = w
user.u.password = *2470c0c06dee42fd1618bb99005adca2ec9d1e19
user.u.pool = r
user.nopw.password =
user.nopw.pool = w
""")
    write("config", "errors", b"listen = 127.0.0.1\nbuffer_size = 16k\nuser.x.pool = p\n")

    # --- pair_script ---------------------------------------------------------------
    # setup byte: bit0 16 KiB rings, bit1 backend info known, bit2 without
    # DEPRECATE_EOF, bit3 server_version set, bit4 idle_timeout 5s, bit5
    # replicas fall back to primary, bit6 weighted replicas.
    g = mariadb_greeting_packet
    scripts = {
        "login_query_quit": b"\x02" + op_login(0x00) + CONNECTED + op_backend_raw(g)
        + op_backend_reads() + op_backend_raw(mariadb_ok_packet) + op_client_reads()
        + op_command(0x03, b"SELECT 1") + op_backend_reads() + op_command(0x01)
        + op_client_closed(),
        "login_db_attrs_lenenc": b"\x03" + op_login(0xC0, 0x03) + CONNECTED + op_greeting(0)
        + op_ok(2) + op_command(0x03, b"SELECT @@port") + op_backend_raw(b"\x01\x00\x00\x01\x01"),
        "caching_sha2_switch": b"\x02" + op_login(0x21) + op_client_reads()
        + op_switch_answer(0) + CONNECTED + op_greeting(0) + op_backend_switch(0, 2)
        + op_backend_reads() + op_ok(4),
        "wrong_password": b"\x02" + op_login(0x08) + op_client_reads(),
        "unknown_user": b"\x02" + op_login(0x03) + op_client_reads(),
        "nopw_login": b"\x02" + op_login(0x02) + CONNECTED + op_greeting(0) + op_ok(2),
        "real_pymysql_response_refused": b"\x02" + op_client_raw(pymysql_db_response),
        "ssl_request": b"\x02" + op_client_raw(ssl_request),
        "bad_sequence": b"\x02" + op_login(0x00, 0xC0, 5),
        "replica_failover_then_unreachable": b"\x02" + op_login(0x01) + FAILED
        + op_advance(300) + op_client_reads(),
        "backend_err_at_login": b"\x02" + op_login(0x00) + CONNECTED + op_greeting(0)
        + op_backend_raw(mariadb_err_packet[:3] + b"\x02" + mariadb_err_packet[4:]),
        "backend_refuses_before_greeting": b"\x02" + op_login(0x01) + CONNECTED
        + op_backend_raw(mariadb_err_packet[:3] + b"\x00" + mariadb_err_packet[4:]),
        "change_user_while_relaying": b"\x02" + op_login(0x00) + CONNECTED + op_greeting(0)
        + op_ok(2) + op_client_reads() + op_command(0x11, b"app_ro\x00\x14" + b"a" * 20),
        "handshake_timeout": b"\x02" + op_advance(2600),
        "slow_response_then_timeout": b"\x02" + op_client_raw(b"\x40\x00\x00\x01\x05")
        + op_advance(1000) + op_advance(1600),
        "backend_plugin_unsupported": b"\x02" + op_login(0x00) + CONNECTED + op_greeting(0x20)
        + op_backend_switch(2, 2),
        "pipelined_command_during_login": b"\x02" + op_login(0x00)
        + op_command(0x03, b"SELECT 2") + CONNECTED + op_greeting(0) + op_ok(2)
        + op_backend_reads(),
        "backend_lacks_deprecate_eof": b"\x02" + op_login(0x00, 0x02) + CONNECTED
        + op_greeting(0x01),
        "fallback_greeting": b"\x08" + op_login(0x00) + CONNECTED + op_greeting(0) + op_ok(2),
        "no_backend_socket_then_next_server": b"\x02" + op_login(0x01) + NO_SOCKET + CONNECTED
        + op_greeting(0) + op_ok(2),
        "replicas_fail_over_to_fallback_pool": b"\x62" + op_login(0x01) + FAILED + FAILED
        + CONNECTED + op_greeting(0) + op_ok(2) + op_client_reads(),
        "login_filling_a_16KiB_ring_no_plugin": b"\x03" + op_login_fill(0x12) + CONNECTED
        + op_greeting(0) + op_backend_reads() + op_ok(2),
        "login_filling_a_4KiB_ring_without_plugin_auth": b"\x02" + op_login_fill(0x00, 0x20)
        + CONNECTED + op_greeting(0) + op_ok(2),
        "idle_timeout_while_relaying": b"\x12" + op_login(0x00) + CONNECTED + op_greeting(0)
        + op_ok(2) + op_client_reads() + op_advance(1000) + op_advance(400),
    }
    for name, data in scripts.items():
        write("pair_script", name, data)



# --- ssl_request, ok_rewrite, change_user (keep in step with their targets) ----

def ssl_request_seed(request, salt, rest=b"", seq=0, mode=0, login=0):
    """ssl_request input: the fields of a real SSLRequest (`request`, its
    payload), the sequence byte (0: sequence 1), mode and login bytes, the
    greeting's salt, then `rest` (the response with mode 0x08)."""
    caps, max_packet, charset = struct.unpack_from("<IIB", request)
    return (struct.pack("<I", caps) + request[28:32] + struct.pack("<IB", max_packet, charset)
            + bytes([seq, mode, login]) + salt[:20] + rest)


def ok_rewrite_seed(caps, ok, info=None, mode=0x80):
    """ok_rewrite input for a real OK payload `ok` (mode 0x80): with
    `info` None, myroute's own info (mode 0x40: 0x01 and the hex of 32
    bytes); else that info."""
    if info is None:
        return (struct.pack("<IBH", caps, mode | 0x40, 0)
                + hashlib.sha256(ok).digest() + ok)
    return struct.pack("<IBH", caps, mode, len(info)) + info + ok


def change_user_seed(caps, charset, scramble, payload, mode=0x01, who=0):
    """change_user input for a real COM_CHANGE_USER payload (mode 0x01) on
    a session with `caps` and `charset`, whose scramble it answers."""
    return struct.pack("<IBBB", caps, charset, mode, who) + scramble[:20] + payload


def with_ssl_flag(response):
    """A HandshakeResponse41 as it comes inside TLS: CLIENT_SSL set."""
    caps = struct.unpack_from("<I", response)[0] | p.CLIENT_SSL
    return struct.pack("<I", caps) + response[4:]


def libmariadb_change_user(port, user, password, new_user, new_password, db=None):
    """mysql_real_connect then mysql_change_user with libmariadb, the C
    client library the mariadb tools use."""
    lib = ctypes.CDLL("libmariadb.so.3")
    lib.mysql_init.restype = ctypes.c_void_p
    lib.mysql_init.argtypes = [ctypes.c_void_p]
    lib.mysql_real_connect.restype = ctypes.c_void_p
    lib.mysql_real_connect.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p,
                                       ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint,
                                       ctypes.c_char_p, ctypes.c_ulong]
    lib.mysql_change_user.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p,
                                      ctypes.c_char_p]
    lib.mysql_close.argtypes = [ctypes.c_void_p]
    m = lib.mysql_init(None)
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    if lib.mysql_real_connect(m, b"127.0.0.1", enc(user), enc(password), None, port, None, 0):
        lib.mysql_change_user(m, enc(new_user), enc(new_password), enc(db))
    lib.mysql_close(m)


def capture_sessions(db):
    rw, ro = USERS["app_rw"], USERS["app_ro"]

    def client_first(pk):
        return next(b for s, b in pk if s == "c")[4:]

    def negotiated(pk):
        """(capabilities both sides have, the client's charset, the salt)."""
        g = p.parse_greeting(next(b for s, b in pk if s == "s")[4:])
        hello = p.parse_handshake_response(client_first(pk))
        return (hello["capabilities"] & (g["capabilities"] | p.CLIENT_LONG_PASSWORD),
                hello["charset"], g["salt"])

    # --- ssl_request: each client's SSLRequest, and its response in plaintext -----
    cli = ["mariadb", "--no-defaults", "-h127.0.0.1", "--protocol=TCP", "-uapp_rw",
           "-p" + rw, "-e", "SELECT 1", "--connect-timeout=3"]
    bait = Relay(db, greeting=set_ssl_flag)
    subprocess.run(cli + ["-P%d" % bait.port, "--ssl"], capture_output=True, timeout=30)
    pk, _ = settle(bait)
    cli_ssl = client_first(pk)
    ignore(pymysql.connect, host="127.0.0.1", port=bait.port, user="app_rw", password=rw,
           ssl={"fake_flag_to_enable_tls": True}, connect_timeout=3)
    pk, _ = settle(bait)
    pymysql_ssl = client_first(pk)
    ignore(mysql.connector.connect, host="127.0.0.1", port=bait.port, user="app_rw",
           password=rw, use_pure=True, connection_timeout=3)
    pk, _ = settle(bait)
    connector_ssl = client_first(pk)
    bait.close()

    relay = Relay(db)
    subprocess.run(cli + ["-P%d" % relay.port, "--skip-ssl", "-Dapp"], capture_output=True,
                   timeout=30)
    pk, _ = settle(relay)
    cli_response = client_first(pk)
    salt = negotiated(pk)[2]
    ignore(pymysql.connect, host="127.0.0.1", port=relay.port, user="nopw", password="",
           ssl_disabled=True)
    pk, _ = settle(relay)
    pymysql_response = client_first(pk)
    ignore(mysql.connector.connect, host="127.0.0.1", port=relay.port, user="app_rw",
           password=rw, use_pure=True, ssl_disabled=True, auth_plugin="caching_sha2_password")
    pk, _ = settle(relay)
    connector_response = client_first(pk)

    for name, req in (("mariadb_cli", cli_ssl), ("pymysql", pymysql_ssl),
                      ("connector", connector_ssl)):
        write("ssl_request", name + "_ssl_request", req)
    write("ssl_request", "mariadb_cli_tls_login_with_db",
          ssl_request_seed(cli_ssl, salt, with_ssl_flag(cli_response), mode=0x08))
    write("ssl_request", "pymysql_tls_login_nopw",
          ssl_request_seed(pymysql_ssl, salt, with_ssl_flag(pymysql_response), mode=0x08))
    write("ssl_request", "connector_tls_login_caching_sha2",
          ssl_request_seed(connector_ssl, salt, with_ssl_flag(connector_response), mode=0x08))
    # Logins the target builds: right password, switched from another
    # plugin with attributes and database, and wrong password, each inside TLS.
    write("ssl_request", "mariadb_cli_tls_built_right_password",
          ssl_request_seed(cli_ssl, salt, login=0x00))
    write("ssl_request", "connector_tls_built_switch_db_attrs",
          ssl_request_seed(connector_ssl, salt, login=0x70))
    write("ssl_request", "pymysql_tls_built_wrong_password",
          ssl_request_seed(pymysql_ssl, salt, login=0x04))
    write("ssl_request", "connector_plaintext_required_tls",
          ssl_request_seed(connector_ssl, salt, connector_response, mode=0x1A))
    write("ssl_request", "mariadb_cli_ssl_request_at_sequence_2",
          ssl_request_seed(cli_ssl, salt, seq=1))
    write("ssl_request", "mariadb_cli_plaintext_before_tls",
          ssl_request_seed(cli_ssl, salt, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
                           mode=0x04))

    # --- ok_rewrite: the OKs of a session, with and without session tracking ------
    statements = [
        "USE app",
        "SET autocommit=0",
        "SET NAMES utf8mb4",
        "SET SESSION session_track_transaction_info=CHARACTERISTICS",
        "START TRANSACTION READ ONLY",
        "COMMIT",
        "SET SESSION session_track_state_change=ON",
        "SET @x=1",
        "UPDATE app.items SET qty=qty+1",
        "INSERT INTO app.blobs (tag, data) VALUES ('a', 'b'), ('c', 'd')",
        "ROLLBACK",
        "DO 1",
    ]
    subprocess.run(cli[:-3] + ["-P%d" % relay.port, "--skip-ssl", "--batch", "-e",
                               "; ".join(statements)], capture_output=True, timeout=30)
    pk, _ = settle(relay)
    caps = negotiated(pk)[0]
    oks = [b[4:] for s, b in pk if s == "s" and b[4] == 0x00][1:]  # after the login's
    login_ok = next(b[4:] for s, b in pk if s == "s" and b[4] == 0x00)
    write("ok_rewrite", "mariadb_cli_login_ok", ok_rewrite_seed(caps, login_ok))
    seen = set()
    for stmt, ok in zip(statements, oks):
        # One seed per distinct shape: with and without session state, info.
        st = struct.unpack_from("<H", ok, 3)[0] if len(ok) >= 5 else 0
        name = "mariadb_cli_" + "".join(c if c.isalnum() else "_" for c in stmt.lower())[:40]
        if ok in seen:
            continue
        seen.add(ok)
        write("ok_rewrite", name, ok_rewrite_seed(caps, ok))
        if st & 0x4000:
            # The same packet read by a client without session tracking.
            write("ok_rewrite", name + "_untracked",
                  ok_rewrite_seed(caps & ~(1 << 23), ok, info=b"\x01" + b"AB" * 32))
    conn = pymysql.connect(host="127.0.0.1", port=relay.port, user="app_rw", password=rw,
                           ssl_disabled=True, autocommit=True)
    cur = conn.cursor()
    cur.execute("UPDATE app.items SET qty=qty-1")
    cur.execute("INSERT INTO app.blobs (tag, data) VALUES ('e', 'f')")
    conn.close()
    pk, _ = settle(relay)
    pymysql_caps = negotiated(pk)[0]
    for i, ok in enumerate(b[4:] for s, b in pk if s == "s" and b[4] == 0x00):
        write("ok_rewrite", "pymysql_ok_%d" % i, ok_rewrite_seed(pymysql_caps, ok))
    # Built by the target from its fields: tracked with state, an info of
    # 300 bytes, integers wider than needed, an EOF-style header.
    fields = (struct.pack("<B", 1) + struct.pack("<Q", 300) + struct.pack("<B", 3)
              + struct.pack("<Q", 1 << 40) + b"\x00" + struct.pack("<HH", 0x4002, 1)
              + b"\x05hello" + struct.pack("<H", 17) + b"\x00\x0f\x0aautocommit\x03OFF")
    write("ok_rewrite", "built_tracked_with_state",
          struct.pack("<IBH", caps, 0x07, 3) + b"abc" + fields)
    write("ok_rewrite", "built_long_info_wide_ints",
          struct.pack("<IBH", caps, 0x0D, 300) + b"i" * 300 + fields)
    write("ok_rewrite", "built_eof_header", struct.pack("<IBH", caps, 0x13, 0) + fields)

    # --- change_user: libmariadb's and mysql-connector-python's -----------------
    libmariadb_change_user(relay.port, "app_rw", rw, "app_ro", ro, "app")
    pk, _ = settle(relay)
    caps, charset, salt = negotiated(pk)
    change = next(b[4:] for s, b in pk if s == "c" and b[3] == 0 and b[4] == p.COM_CHANGE_USER)
    write("change_user", "libmariadb_change_user_with_db", change_user_seed(caps, charset, salt,
                                                                          change))
    write("change_user", "libmariadb_change_user_wrong_answer",
          change_user_seed(caps, charset, salt, change, mode=0x05))
    libmariadb_change_user(relay.port, "app_ro", ro, "nopw", "")
    pk, _ = settle(relay)
    caps, charset, salt = negotiated(pk)
    change = next(b[4:] for s, b in pk if s == "c" and b[3] == 0 and b[4] == p.COM_CHANGE_USER)
    write("change_user", "libmariadb_change_user_nopw", change_user_seed(caps, charset, salt,
                                                                       change))

    def connector_change(**kw):
        conn = mysql.connector.connect(host="127.0.0.1", port=relay.port, user="app_rw",
                                       password=rw, use_pure=True, ssl_disabled=True, **kw)
        conn.cmd_change_user(username="app_ro", password=ro, database="app")
        conn.close()

    ignore(connector_change)
    pk, _ = settle(relay)
    caps, charset, salt = negotiated(pk)
    change = next(b[4:] for s, b in pk if s == "c" and b[3] == 0 and b[4] == p.COM_CHANGE_USER)
    write("change_user", "connector_change_user", change_user_seed(caps, charset, salt, change))
    # The same packet read by sessions with other flags.
    lenenc, plugin, attrs = 1 << 21, 1 << 19, 1 << 20
    write("change_user", "connector_change_user_no_plugin_auth_attrs",
          change_user_seed(caps & ~(plugin | attrs), charset, salt, change))
    write("change_user", "connector_change_user_lenenc_answer_wrong_seq",
          change_user_seed(caps | lenenc, charset, salt, change, mode=0x03))
    relay.close()
    # Built by the target from its fields: app_rw with database and
    # attributes; a user of its own with an empty token.
    write("change_user", "built_app_rw_db_attrs",
          change_user_seed(caps, charset, salt, b"\x21\x01\x03key\x05value", mode=0x00,
                           who=0x0C))
    write("change_user", "built_own_user_empty_token",
          change_user_seed(caps, charset, salt, b"\x05alice\x2d\x00", mode=0x00, who=0x23))


if __name__ == "__main__":
    main()
