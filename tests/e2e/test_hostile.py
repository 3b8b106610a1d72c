"""Hostile clients against the real binary with real MariaDB behind it.

Every attack gets a clear ERR (code, SQLSTATE and sequence id checked) or a
close, within handshake_timeout, while a well-behaved client started before
the attacks keeps getting answers, the process stays alive, its RSS stays
bounded and nothing in its log says it panicked.  Then the authentication
checks (replays, salts, unknown user vs wrong password, plugin names, look-
alike user names), the log's own defences (rate-limited warnings, the
world-readable configuration warning, no secrets at trace level) and no
stage1 left in the process's memory after a login.
"""

import concurrent.futures
import hashlib
import os
import random
import re
import socket
import statistics
import struct
import threading
import time

import mysql.connector
import pymysql
import pytest

from harness import protocol as p
from harness.accounts import ALL_PASSWORDS, USERS
from harness.clients import connector_connect, landing_port, pymysql_connect
from harness.hostile_clients import (Relay, StallWatch, SteadyClient, attempt, connect,
                                     greeted, memory_holding, read_ending, response41,
                                     send_and_read, wait_all_closed)
from harness import util
from harness.proxy import Proxy, main_settings

HS = 2.0                 # handshake_timeout of the proxy under attack
SLACK = 1.5              # scheduling slack on a busy 2-core machine
RSS_LIMIT_KIB = 40 * 1024
PW = USERS["app_rw"]

CODES = {1043: "08S01", 1045: "28000", 1156: "08S01"}

# Time limits below allow for moments when the machine did not run this
# process at all (seen as late wake-ups of a ticking thread).
STALLS = StallWatch()
STALLS.start()


def within(e, limit):
    """True if the Ending `e` came within `limit` seconds, not counting
    stalls of the machine while it was awaited."""
    return e.elapsed < limit + STALLS.stalled(e.started, e.started + e.elapsed)


# --- the proxy under attack and its well-behaved client ---------------------------------

@pytest.fixture(scope="module")
def hostile(myroute_bin, cluster, workdir):
    # Without TLS (tls = off): an SSLRequest is refused with ERR 1043 here;
    # attacks on the TLS handshake are in test_tls_hostile.py.
    px = Proxy(workdir, "hostile", main_settings(cluster, handshake_timeout="2s", tls="off"))
    px.start()
    steady = SteadyClient(px.host, px.port, "app_rw", PW, cluster.primary.port)
    steady.start()
    try:
        steady.check()
        yield px, steady
    finally:
        steady.stop()
        px.stop()


def assert_healthy(px, steady=None, rss_limit_kib=RSS_LIMIT_KIB):
    assert px.alive(), "myroute exited; stderr:\n" + px.log_tail()
    log = px.log()
    bad = [l for l in log.splitlines() if "panicked" in l or "internal error" in l]
    assert not bad, "myroute hit an internal error:\n" + "\n".join(bad[:5])
    long_lines = [l[:120] for l in log.splitlines() if len(l) > 1000]
    assert not long_lines, "unbounded log lines: %s" % long_lines[:3]
    rss = px.rss_kib()
    assert rss < rss_limit_kib, "RSS %d KiB" % rss
    if steady is not None:
        steady.check()


@pytest.fixture
def px(hostile):
    """The proxy under attack; after each test it must still be healthy and
    the well-behaved client must still get answers."""
    proxy, steady = hostile
    assert_healthy(proxy, steady)
    yield proxy
    assert_healthy(proxy, steady)


@pytest.fixture(scope="module")
def real_response(hostile):
    """A HandshakeResponse41 as PyMySQL really sends it (with database,
    connection attributes and plugin name), captured on its way to the proxy
    (its token is for that connection's salt only)."""
    proxy, _ = hostile
    relay = Relay(proxy)
    try:
        conn = pymysql.connect(host=relay.host, port=relay.port, user="app_rw", password=PW,
                               database="app", ssl_disabled=True, connect_timeout=10,
                               program_name="hostile-test")
        conn.close()
        deadline = time.monotonic() + 5
        while not relay.client_packets and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        relay.close()
    seq, payload = relay.client_packets[0]
    assert seq == 1
    parsed = p.parse_handshake_response(payload)
    assert parsed["user"] == "app_rw" and parsed["database"] == "app"
    assert parsed["plugin"] == p.NATIVE
    return payload


def assert_err(ending, code, seq, state=None):
    assert ending.kind == "err", ending
    assert ending.err.code == code, ending
    assert ending.err.state == (state or CODES[code]), ending
    assert ending.err_seq == seq, ending
    assert ending.closed, "no close after the ERR: %r" % ending
    assert within(ending, HS + SLACK), ending


def assert_refused(ending, codes=(1043, 1045), seq=2):
    """An ERR with one of `codes` (and its SQLSTATE) and the close, never an
    OK."""
    assert ending.kind == "err", ending
    assert ending.err.code in codes, ending
    assert ending.err.state == CODES[ending.err.code], ending
    assert ending.err_seq == seq, ending
    assert ending.closed, ending
    assert not any(pl[:1] == b"\x00" for _, pl in ending.packets), ending


def native_login(px, user="app_rw", password=PW, **kw):
    """Logs in with a raw socket; returns (sock, greeting, the packet sent)."""
    s, g = greeted(px)
    pkt = p.frame(1, response41(user, p.native_token(password, g["salt"]), **kw))
    s.sendall(pkt)
    seq, ok = p.read_packet(s)
    assert ok[:1] == b"\x00", ok
    assert seq == 2
    return s, g, pkt


def in_parallel(fn, items, workers=32):
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as ex:
        return list(ex.map(fn, items))


# --- bytes no client sends -------------------------------------------------------------

def test_random_bytes(px):
    rng = random.Random(20261125)
    junks = [bytes(rng.getrandbits(8) for _ in range(rng.choice([1, 3, 4, 5, 9, 40, 300, 3000])))
             for _ in range(40)]

    def one(junk):
        s, _ = greeted(px)
        try:
            t0 = time.monotonic()
            s.sendall(junk)
            return junk, read_ending(s, HS + 3, t0)
        finally:
            s.close()

    for junk, e in in_parallel(one, junks):
        assert within(e, HS + SLACK), (junk[:8], e)
        if e.kind == "err":
            expect_seq = (junk[3] + 1) & 0xFF if e.err.code == 1156 else 2
            assert_refused(e, codes=(1043, 1045, 1156), seq=expect_seq)
        else:
            # Bytes that happen to frame an incomplete packet: the proxy
            # waits for the rest until handshake_timeout, then closes; bytes
            # that name another plugin get an AuthSwitchRequest first.
            assert e.closed, (junk[:8], e)
            assert all(pl[:1] == b"\xfe" for _, pl in e.packets), (junk[:8], e)


@pytest.mark.parametrize("header", [b"\xff\xff\xff\x01", b"\xfe\xff\xff\x01", b"\x00\x00\x01\x01"],
                         ids=["16MiB-1", "16MiB-2", "64KiB"])
def test_header_claiming_more_than_a_ring_then_nothing(px, header):
    s, _ = greeted(px)
    e = send_and_read(s, header, HS + 3)
    assert_err(e, 1043, 2)
    assert "too large" in e.err.message, e
    assert within(e, 1.0), "refused on the header alone, without waiting: %r" % e


def test_header_claiming_a_ring_full_then_nothing(px):
    # 16368 bytes fit the 16 KiB ring: the proxy waits for them, then gives up.
    s, _ = greeted(px)
    e = send_and_read(s, struct.pack("<I", 16368)[:3] + b"\x01" + b"\x8d", HS + 3)
    assert e.kind in ("closed", "err"), e
    if e.kind == "err":
        assert_err(e, 1043, 2)
    assert HS - 0.5 <= e.elapsed and within(e, HS + SLACK), e


def trickle(sock, data, every, stop):
    for i in range(len(data)):
        if stop.is_set():
            return
        try:
            sock.send(data[i:i + 1])
        except OSError:
            return
        stop.wait(every)


def test_slowloris_is_closed_at_handshake_timeout(px, real_response):
    t0 = time.monotonic()
    s = connect(px)
    stop = threading.Event()
    sender = threading.Thread(target=trickle, args=(s, p.frame(1, real_response), 0.1, stop))
    try:
        p.read_packet(s)  # the greeting
        sender.start()
        e = read_ending(s, HS + 3, t0)
    finally:
        stop.set()
        if sender.is_alive():
            sender.join(5)
        s.close()
    assert e.kind in ("closed", "err"), e
    if e.kind == "err":
        assert_err(e, 1043, 2)
    assert HS - 0.3 <= e.elapsed and within(e, HS + SLACK), e


def test_slowloris_in_the_auth_switch_is_closed_at_handshake_timeout(px):
    t0 = time.monotonic()
    s, g = greeted(px)
    stop = threading.Event()
    try:
        s.sendall(p.frame(1, response41("app_rw", b"\x01" * 32, plugin="caching_sha2_password")))
        seq, switch = p.read_packet(s)
        assert (seq, switch[:1]) == (2, b"\xfe")
        salt = switch[len(b"\xfemysql_native_password\0"):].rstrip(b"\0")
        sender = threading.Thread(target=trickle,
                                  args=(s, p.frame(3, p.native_token(PW, salt)), 0.1, stop))
        sender.start()
        e = read_ending(s, HS + 3, t0)
    finally:
        stop.set()
        s.close()
    assert e.kind in ("closed", "err"), e
    if e.kind == "err":
        assert_err(e, 1043, 4)
    assert HS - 0.3 <= e.elapsed and within(e, HS + SLACK), e


def test_every_truncation_of_a_real_response_is_refused(px, real_response):
    # Each prefix sent as a complete packet: a malformed response (1043) or,
    # cut after a field, a shorter valid one whose token is stale (1045).
    def one(k):
        return k, attempt(px, real_response[:k], timeout=HS + 3)

    for k, e in in_parallel(one, range(len(real_response) + 1)):
        assert_refused(e, codes=(1043, 1045), seq=2)
        if k < 32 + len(b"app_rw\0") + 21:
            assert e.err.code == 1043, (k, e)


def test_every_cut_of_the_stream_then_half_close_is_closed_at_once(px, real_response):
    stream = p.frame(1, real_response)

    def one(k):
        s, _ = greeted(px)
        try:
            t0 = time.monotonic()
            s.sendall(stream[:k])
            s.shutdown(socket.SHUT_WR)
            return k, read_ending(s, HS + 3, t0)
        finally:
            s.close()

    for k, e in in_parallel(one, range(len(stream))):
        assert e.kind == "closed", (k, e)
        assert within(e, 1.0), (k, e)


def test_every_cut_of_the_stream_then_silence_is_closed_at_handshake_timeout(px, real_response):
    stream = p.frame(1, real_response)
    socks = []
    try:
        for k in range(len(stream)):
            s, _ = greeted(px)
            s.sendall(stream[:k])
            socks.append(s)
        t0 = time.monotonic()
        closed, still_open = wait_all_closed(socks, HS + 3)
        assert not still_open, "%d connections left open after %.1fs" % (
            len(still_open), time.monotonic() - t0)
        assert max(closed.values()) < HS + SLACK + STALLS.stalled(t0)
    finally:
        for s in socks:
            s.close()


@pytest.mark.parametrize("seq", [0, 2, 3, 200, 255])
def test_wrong_sequence_id(px, seq):
    e = attempt(px, response41("app_rw", b"\x00" * 20), seq=seq)
    assert_err(e, 1156, (seq + 1) & 0xFF)
    assert e.err.message == "Got packets out of order", e


def test_wrong_sequence_id_in_the_auth_switch_answer(px):
    s, g = greeted(px)
    try:
        s.sendall(p.frame(1, response41("app_rw", b"\x01" * 32, plugin="caching_sha2_password")))
        seq, switch = p.read_packet(s)
        assert (seq, switch[:1]) == (2, b"\xfe")
        s.sendall(p.frame(1, b"\x00" * 20))
        e = read_ending(s, HS + 3)
    finally:
        s.close()
    assert_err(e, 1156, 2)


def test_64KiB_user_name(px):
    e = attempt(px, response41("u" * 65536, b"\x00" * 20))
    assert_refused(e, codes=(1043, 1045))


def test_16000_byte_user_name_gets_a_bounded_error(px):
    e = attempt(px, response41("u" * 16000, b"\x00" * 20, attrs=()))
    assert_refused(e, codes=(1045,))
    assert len(e.err.message) < 600, len(e.err.message)


@pytest.mark.parametrize("user", [b"app_rw", b"u" * 300, b"\xff" * 20], ids=["short", "long", "ff"])
def test_user_name_without_nul(px, user):
    caps = p.BASIC_CLIENT_CAPS
    payload = struct.pack("<IIB", caps, p.MAX_PAYLOAD, 45) + b"\0" * 23 + user
    e = attempt(px, payload)
    assert_err(e, 1043, 2)


@pytest.mark.parametrize("user", [b"app_rw\0\0\0\0", b"\0app_rw", b"app\0rw", b"\0" * 64,
                                  b"app_rw\0" + b"\0" * 20 + b"app_rw"])
def test_nul_stuffed_user_names(px, user):
    e = attempt(px, response41(user, b"\x00" * 20))
    assert_refused(e)


def test_nul_stuffed_name_with_the_right_token_after_it(px):
    # "app_rw" NUL, then junk, then the right token: parsed as app_rw with
    # whatever the junk makes of the token field; never logged in.
    s, g = greeted(px)
    try:
        token = p.native_token(PW, g["salt"])
        s.sendall(p.frame(1, response41(b"app_rw\0\0\0", token)))
        e = read_ending(s, HS + 3)
    finally:
        s.close()
    assert_refused(e)


def test_ssl_request(px):
    e = attempt(px, p.ssl_request())
    assert_err(e, 1043, 2)
    assert "TLS" in e.err.message


def test_pre41_response(px):
    e = attempt(px, b"\x85\x24\x00\x00\x00app_rw\x00abcdefgh\x00")
    assert_err(e, 1043, 2)
    assert "4.1" in e.err.message


@pytest.mark.parametrize("answer", ["19", "21", "32", "empty", "16000"])
def test_auth_switch_answered_with_the_wrong_length(px, answer):
    s, g = greeted(px)
    try:
        s.sendall(p.frame(1, response41("app_rw", b"\x01" * 32, plugin="caching_sha2_password")))
        seq, switch = p.read_packet(s)
        assert (seq, switch[:1]) == (2, b"\xfe")
        r = p.Reader(switch, 1)
        assert r.nul_str() == p.NATIVE.encode()
        salt = r.rest().rstrip(b"\0")
        assert len(salt) == 20 and salt != g["salt"]
        assert all(1 <= b <= 127 and b != 0x24 for b in salt), salt
        token = p.native_token(PW, salt)
        data = {"19": token[:19], "21": token + b"\0", "32": token + b"\x01" * 12, "empty": b"",
                "16000": token * 800}[answer]
        s.sendall(p.frame(3, data))
        e = read_ending(s, HS + 3)
    finally:
        s.close()
    assert_err(e, 1045, 4)
    using = "NO" if answer == "empty" else "YES"
    assert e.err.message.endswith("(using password: %s)" % using), e


@pytest.mark.parametrize("seq", [1, 0])
def test_second_handshake_response_after_login(px, cluster, seq):
    s, g, _ = native_login(px)
    try:
        # Relayed to the backend, which is in its command phase by now.
        s.sendall(p.frame(seq, response41("app_ro", p.native_token(USERS["app_ro"], g["salt"]))))
        e = read_ending(s, 5.0)
        assert e.kind in ("err", "closed"), e
        assert not any(pl[:1] == b"\x00" for _, pl in e.packets), e
    finally:
        s.close()
    # The proxy keeps serving: a new login still reaches the primary.
    assert landing_port(px, "app_rw") == cluster.primary.port


@pytest.mark.parametrize("early", ["ssl_request", "stale_response", "junk"])
def test_data_before_the_greeting(px, real_response, early):
    data = {"ssl_request": p.frame(1, p.ssl_request()),
            "stale_response": p.frame(1, real_response),
            "junk": bytes(range(256)) * 4}[early]
    e = send_and_read(connect(px), data, HS + 3)
    assert e.packets and e.packets[0][0] == 0 and e.packets[0][1][:1] == b"\x0a", (
        "the greeting comes first: %r" % e)
    e.packets = e.packets[1:]
    if early == "ssl_request":
        assert_err(e, 1043, 2)
    elif early == "stale_response":
        assert_err(e, 1045, 2)
    else:
        assert e.kind == "err" or e.closed, e
        assert within(e, HS + SLACK), e


# --- authentication ----------------------------------------------------------------------

def test_replayed_token_is_refused(px):
    s, g1, pkt = native_login(px)
    s.sendall(p.frame(0, b"\x01"))  # COM_QUIT
    s.close()
    s2, g2 = greeted(px)
    try:
        assert g2["salt"] != g1["salt"]
        s2.sendall(pkt)
        e = read_ending(s2, HS + 3)
    finally:
        s2.close()
    assert_err(e, 1045, 2)
    assert e.err.message == "Access denied for user 'app_rw'@'127.0.0.1' (using password: YES)"


def test_salts_of_200_greetings(px):
    def one(_):
        s, g = greeted(px)
        s.close()
        return g["salt"]

    salts = in_parallel(one, range(200), workers=8)
    assert len(set(salts)) == 200
    for salt in salts:
        assert len(salt) == 20, salt
        assert all(1 <= b <= 127 for b in salt), salt
        assert b"$" not in salt, salt


def refusal_packet(px, user, token):
    """The raw bytes of the refusal after a HandshakeResponse41."""
    s, g = greeted(px)
    try:
        s.sendall(p.frame(1, response41(user, token)))
        e = read_ending(s, HS + 3)
    finally:
        s.close()
    return e


def test_unknown_user_and_wrong_password_look_the_same(px):
    wrong = refusal_packet(px, "app_rw", p.native_token("wrong", p.random_salt()))
    unknown = refusal_packet(px, "app_xx", p.native_token(PW, p.random_salt()))
    for e in (wrong, unknown):
        assert_err(e, 1045, 2)
    assert (wrong.err.code, wrong.err.state, wrong.err_seq, wrong.closed) == \
        (unknown.err.code, unknown.err.state, unknown.err_seq, unknown.closed)
    assert wrong.err.message.replace("app_rw", "U") == unknown.err.message.replace("app_xx", "U")
    assert len(wrong.packets[0][1]) == len(unknown.packets[0][1])


def test_timing_of_unknown_user_and_wrong_password(px):
    def timed(user, password):
        s, g = greeted(px)
        try:
            pkt = p.frame(1, response41(user, p.native_token(password, g["salt"])))
            t0 = time.perf_counter()
            s.sendall(pkt)
            p.read_packet(s)
            return time.perf_counter() - t0
        finally:
            s.close()

    wrong, unknown = [], []
    for _ in range(200):  # interleaved, so drift hits both the same
        wrong.append(timed("app_rw", "not-the-password"))
        unknown.append(timed("no_such_user", PW))
    mw, mu = statistics.median(wrong), statistics.median(unknown)
    print("\nfailed-login latency: wrong password median %.3f ms, unknown user median %.3f ms"
          % (1000 * mw, 1000 * mu))
    assert abs(mw - mu) < max(0.5 * min(mw, mu), 0.002), (mw, mu)


@pytest.mark.parametrize("plugin", ["", p.NATIVE, "mysql_clear_password", "mysql_old_password",
                                    "dialog", "auth_gssapi_client", "mysql_native_passwordX",
                                    "x" * 3000])
def test_no_way_in_through_plugin_names(px, plugin):
    """The plain password as the token, whatever plugin the client names:
    an ERR 1045 at once, or an AuthSwitchRequest to mysql_native_password
    which the plain password then fails too.  Never an OK."""
    s, g = greeted(px)
    try:
        s.sendall(p.frame(1, response41("app_rw", PW.encode(), plugin=plugin)))
        e = read_ending(s, HS + 3, stop_at_packet=True)
        if e.kind == "packet":
            seq, switch = e.packets[0]
            assert (seq, switch[:1]) == (2, b"\xfe"), e
            assert plugin not in ("", p.NATIVE)
            r = p.Reader(switch, 1)
            assert r.nul_str() == p.NATIVE.encode()
            s.sendall(p.frame(3, PW.encode()))
            e = read_ending(s, HS + 3)
            assert_err(e, 1045, 4)
        else:
            assert_err(e, 1045, 2)
    finally:
        s.close()


def test_empty_plugin_name_with_a_wrong_token(px):
    e = attempt(px, response41("app_rw", p.native_token("wrong", p.random_salt()), plugin=""))
    assert_err(e, 1045, 2)


def test_empty_token_for_a_user_with_a_password(px):
    e = attempt(px, response41("app_rw", b""))
    assert_err(e, 1045, 2)
    assert e.err.message == "Access denied for user 'app_rw'@'127.0.0.1' (using password: NO)"


@pytest.mark.parametrize("user", [b"APP_RW", b"App_rw", b"app_rw ", b" app_rw", b"app_rw\t",
                                  b"app_rw\xc2\xa0", "\u0430pp_rw".encode(), b"app_rw\x00x",
                                  b"app_rw\x00", b"app_r"])
def test_look_alike_user_names_are_refused(px, user):
    """With the right token for app_rw's password: still refused.  (A name
    with a NUL inside is app_rw cut short, and the fields after it are then
    misread; if that yields an AuthSwitchRequest, replaying the proof made
    for the greeting's salt must fail too.)"""
    s, g = greeted(px)
    try:
        token = p.native_token(PW, g["salt"])
        s.sendall(p.frame(1, response41(user, token)))
        e = read_ending(s, HS + 3, stop_at_packet=True)
        if e.kind == "packet":
            seq, switch = e.packets[0]
            assert (seq, switch[:1]) == (2, b"\xfe"), e
            s.sendall(p.frame(3, token))
            e = read_ending(s, HS + 3)
            assert_refused(e, codes=(1045,), seq=4)
        else:
            assert_refused(e)
    finally:
        s.close()


# --- bigger than any login packet should be ------------------------------------------------

def test_login_packet_as_large_as_16MiB_rings_allow(make_proxy, cluster):
    """With buffer_size at its maximum, a password-less account sends a
    HandshakeResponse41 that fills the ring (16 MiB - 4 bytes, nearly all of
    it connection attributes).  The login the proxy rebuilds for the backend
    from it must not exceed one packet: an ERR or a close, never a panic."""
    px = make_proxy("bigring", main_settings(cluster, buffer_size="16777216",
                                             handshake_timeout="5s"))
    steady = SteadyClient(px.host, px.port, "app_rw", PW, cluster.primary.port)
    steady.start()
    try:
        steady.check()
        s, g = greeted(px)
        try:
            head = struct.pack("<IIB", p.BASIC_CLIENT_CAPS & ~p.CLIENT_PLUGIN_AUTH
                               | p.CLIENT_CONNECT_ATTRS, p.MAX_PAYLOAD, 45) + b"\0" * 23
            head += b"nopw\0" + b"\0"  # empty token
            room = (16777216 - 4) - len(head) - 4  # outer lenenc: 0xFD + 3 bytes
            value = room - 2 - 4                   # key "k" (2 bytes), value prefix 0xFD + 3
            kv = p.lenenc_str(b"k") + b"\xfd" + struct.pack("<I", value)[:3] + b"v" * value
            payload = head + p.lenenc_str(kv)
            assert len(payload) == 16777212
            t0 = time.monotonic()
            try:
                s.sendall(p.frame(1, payload))
            except (ConnectionResetError, BrokenPipeError):
                pass  # refused at its header: answered and closed mid-send
            e = read_ending(s, 10, t0)
        finally:
            s.close()
        assert e.kind in ("err", "closed"), e
        if e.kind == "err":
            assert e.err_seq == 2, e
        steady.check()
        # Two 16 MiB rings and the copies a login makes of its packet.
        assert_healthy(px, rss_limit_kib=6 * 16 * 1024 + RSS_LIMIT_KIB)
    finally:
        steady.stop()


# --- the log's own defences ------------------------------------------------------------------

LOG_PREFIX = re.compile(r"^\[?(?:\d{4}-\d\d-\d\dT\S+\s+)?(?:TRACE|DEBUG|INFO|WARN|ERROR)\s+"
                        r"[\w:]+(?:\]|:)?\s")


def log_body(line):
    """The message of a log line, without its time, level and module
    ("[LEVEL target] msg", "TIME LEVEL target: msg", ...)."""
    return LOG_PREFIX.sub("", line, count=1)


def test_failed_login_warnings_are_rate_limited(make_proxy, cluster):
    px = make_proxy("ratelimit", main_settings(cluster))
    victim = "rl_victim"

    def one(_):
        s, g = greeted(px)
        try:
            s.sendall(p.frame(1, response41(victim, p.native_token("x", g["salt"]))))
            return read_ending(s, 5)
        finally:
            s.close()

    t0 = time.monotonic()
    endings = in_parallel(one, range(300), workers=16)
    burst = time.monotonic() - t0
    for e in endings:
        assert_err(e, 1045, 2)

    def summaries():
        found = []
        for line in px.log_lines():
            body = log_body(line)
            if "WARN" in line and re.search(r"suppress|not logged", body):
                m = re.search(r"\b(\d+)\b", body)
                assert m, "a suppression notice without a count: %r" % line
                found.append(int(m.group(1)))
        return found

    # Without any further traffic, the count of what was left out must show
    # up once the rate-limit window is over (not only when the next client
    # happens to connect).
    deadline = time.monotonic() + 3.0
    while not summaries() and time.monotonic() < deadline:
        time.sleep(0.05)
    idle_ok = bool(summaries())
    if not idle_ok:
        # Tell apart "never logged" from "logged only on the next event".
        pymysql_connect(px.host, px.port, "app_rw", PW).close()
        time.sleep(0.5)
    warned = [l for l in px.log_lines() if "WARN" in l and victim in l]
    suppressed = sum(summaries())
    print("\n300 failed logins in %.2fs: %d warning lines, %d counted as suppressed"
          % (burst, len(warned), suppressed))
    assert 1 <= len(warned) <= 50, "%d warning lines for 300 failed logins" % len(warned)
    for line in warned:
        assert "127.0.0.1" in line, "the warning names the client's address: %r" % line
    assert suppressed > 0, "no line says how many failed logins were not logged"
    assert len(warned) + suppressed == 300, (len(warned), suppressed)
    assert idle_ok, ("the suppressed count was logged only when the next connection came, "
                     "not when the window ended")


def start_with_config_mode(workdir, cluster, name, mode):
    px = Proxy(workdir, name, main_settings(cluster))
    with open(px.config_path, "w"):
        pass
    os.chmod(px.config_path, mode)
    px.start()
    assert os.stat(px.config_path).st_mode & 0o777 == mode
    return px


def test_world_readable_config_is_warned_about(myroute_bin, workdir, cluster):
    px = start_with_config_mode(workdir, cluster, "mode0644", 0o644)
    try:
        px.wait_for_log_line(lambda l: "listening" in l, 10, what="the listening line")
        lines = [l for l in px.log_lines() if "readable by other users" in l]
        assert lines, "no start-up warning for a 0644 config; log:\n" + px.log_tail()
        assert "WARN" in lines[0]
        assert px.config_path in lines[0]
    finally:
        px.stop()


def test_private_config_gets_no_warning(myroute_bin, workdir, cluster):
    px = start_with_config_mode(workdir, cluster, "mode0600", 0o600)
    try:
        px.wait_for_log_line(lambda l: "listening" in l, 10, what="the listening line")
        assert not [l for l in px.log_lines() if "readable by other users" in l]
    finally:
        px.stop()


def byte_forms(b):
    """The ways a byte string could show up in a log line."""
    forms = {b.hex(), ", ".join(str(x) for x in b), " ".join("%02x" % x for x in b)}
    try:
        forms.add(b.decode("ascii"))
    except UnicodeDecodeError:
        pass
    return forms


def test_no_secret_in_the_log_at_trace_level(make_proxy, cluster):
    px = make_proxy("trace", main_settings(cluster), env={"RUST_LOG": "trace"})
    seen = {}  # name -> bytes

    # A native login, a query, a quit.
    s, g, pkt = native_login(px)
    seen["greeting salt"] = g["salt"]
    seen["token"] = p.native_token(PW, g["salt"])
    s.sendall(p.frame(0, b"\x03SELECT 1"))
    p.read_packet(s)
    s.close()
    # A login through the auth switch.
    s, g = greeted(px)
    s.sendall(p.frame(1, response41("app_ro", b"\x01" * 32, plugin="caching_sha2_password")))
    _, switch = p.read_packet(s)
    switch_salt = switch[len(b"\xfemysql_native_password\0"):].rstrip(b"\0")
    seen["switch salt"] = switch_salt
    seen["switch token"] = p.native_token(USERS["app_ro"], switch_salt)
    s.sendall(p.frame(3, seen["switch token"]))
    seq, ok = p.read_packet(s)
    assert ok[:1] == b"\x00"
    s.close()
    # Failed logins: wrong password, unknown user, no password.
    for user, pw in [("app_rw", "wrong-Secret-4471-medlar"), ("no_such_user", PW), ("app_ro", "")]:
        s, g = greeted(px)
        seen["salt of %s" % user] = g["salt"]
        s.sendall(p.frame(1, response41(user, p.native_token(pw, g["salt"]))))
        read_ending(s, 5)
        s.close()
    # Real clients, too.
    pymysql_connect(px.host, px.port, "nopw", "").close()
    c = connector_connect(px.host, px.port, "app_rw", PW, auth_plugin="caching_sha2_password")
    c.close()
    with pytest.raises(mysql.connector.Error):
        connector_connect(px.host, px.port, "app_ro", "wrong-Secret-4471-medlar")
    time.sleep(0.3)

    log = px.log().lower()
    assert "trace" in log, "RUST_LOG=trace produced no trace lines"
    secrets = {"wrong password": "wrong-Secret-4471-medlar"}
    for user, pw in ALL_PASSWORDS.items():
        if not pw:
            continue
        stage1 = hashlib.sha1(pw.encode()).digest()
        stage2 = hashlib.sha1(stage1).digest()
        secrets["%s password" % user] = pw
        for form in byte_forms(stage2):
            secrets["%s hash %s" % (user, form[:8])] = form
        for form in byte_forms(stage1):
            secrets["%s stage1 %s" % (user, form[:8])] = form
    for name, b in seen.items():
        for form in byte_forms(b):
            secrets["%s %s" % (name, form[:8])] = form
    found = sorted(name for name, s in secrets.items() if s.lower() in log)
    assert not found, "secrets in the trace log: %s" % found


def test_stage1_is_not_left_in_memory_after_login(make_proxy, cluster):
    """SHA1(password) (stage1) logs in as the user anywhere; the proxy needs
    it only until the backend has said OK.  Once relaying, and once the
    connection is over, no copy may be left in its memory."""
    px = make_proxy("memory", main_settings(cluster))
    stage1 = {u: hashlib.sha1(USERS[u].encode()).digest() for u in ("app_rw", "app_ro")}
    assert not memory_holding(px.pid, {"app_rw": stage1["app_rw"]}), "stage1 before any login"

    s, g, _ = native_login(px)
    s.sendall(p.frame(0, b"\x03SELECT 1"))
    p.read_packet(s)
    conn = connector_connect(px.host, px.port, "app_ro", USERS["app_ro"],
                             auth_plugin="caching_sha2_password")
    cur = conn.cursor()
    cur.execute("SELECT 1")
    cur.fetchall()
    try:
        relaying = memory_holding(px.pid, {"stage1 of %s" % u: v for u, v in stage1.items()})
    finally:
        s.close()
        conn.close()
    util.wait_until(lambda: len([l for l in px.log_lines() if "end=" in l]) >= 2, 5,
                    what="the access lines of both connections")
    after = memory_holding(px.pid, {"stage1 of %s" % u: v for u, v in stage1.items()})
    assert not relaying, "while relaying, the proxy's memory holds %s" % relaying
    assert not after, "after the connections ended, the proxy's memory holds %s" % after
