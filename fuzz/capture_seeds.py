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

Usage (as root on a machine with MariaDB, PyMySQL and mysql-connector-python,
e.g. after tests/setup-deps.sh):

    MYROUTE_BIN=target/release/myroute python3 fuzz/capture_seeds.py

Salts and tokens differ on every run, so the files change each time; the
shapes do not.
"""

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
    for t in ("packet_framing", "client_hello", "auth_switch", "backend_greeting", "config",
              "pair_script"):
        shutil.rmtree(os.path.join(CORPUS, t), ignore_errors=True)
    work = tempfile.mkdtemp(prefix="myroute-seeds-")
    cluster = Cluster(1)
    cluster.start()
    db = cluster.primary
    proxy = Proxy(work, "seeds", main_settings(cluster).copy())
    # main_settings names replicas; with one server, route everyone to it.
    proxy.settings = [(k, v) for k, v in proxy.settings
                      if k != "pool.replicas.servers"] + [("pool.replicas.servers", db.address)]
    proxy.start()
    try:
        capture(db, proxy)
    finally:
        proxy.stop()
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    for t in sorted(os.listdir(CORPUS)):
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


if __name__ == "__main__":
    main()
