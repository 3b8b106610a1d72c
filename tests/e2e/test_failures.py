"""Backends that are down or misbehave: a pool with no reachable server, a
pool with one dead server, a backend that switches auth method with a new
salt, a backend that hangs up after its greeting."""

import time

import pymysql
import pytest

from harness import protocol as p
from harness import util
from harness.accounts import DEAD_PASSWORD, DEAD_USER, FAKE_PASSWORD, FAKE_USER, USERS
from harness.clients import landing_port, pymysql_connect, scalar
from harness.fake_backend import FakeBackend, assert_answers
from harness.proxy import pool_settings, user_settings


def dead_pool_settings(cluster):
    dead = ["127.0.0.1:%d" % util.closed_port(), "127.0.0.1:%d" % util.closed_port()]
    return ([("connect_timeout", "2s")]
            + pool_settings("primary", [cluster.primary.address])
            + pool_settings("dead", dead)
            + user_settings("app_rw", USERS["app_rw"], "primary")
            + user_settings(DEAD_USER, DEAD_PASSWORD, "dead"))


def test_pool_without_reachable_server(make_proxy, cluster):
    px = make_proxy("deadpool", dead_pool_settings(cluster))
    for _ in range(2):
        t0 = time.monotonic()
        with p.RawClient(px.host, px.port, timeout=20) as c:
            with pytest.raises(p.ServerError) as info:
                c.login(DEAD_USER, DEAD_PASSWORD)
            err = info.value
            assert (err.code, err.state) == (1429, "08S01")
            assert "'dead'" in err.message
            assert c.closed_by_peer()
        # Refused connections fail at once: no waiting for connect_timeout.
        assert time.monotonic() - t0 < 4
        # Other users keep working in the same process.
        assert landing_port(px, "app_rw") == cluster.primary.port
    assert px.alive()


def test_pool_without_reachable_server_via_pymysql(make_proxy, cluster):
    px = make_proxy("deadpool", dead_pool_settings(cluster))
    held = pymysql_connect(px.host, px.port, "app_rw", USERS["app_rw"])
    try:
        with pytest.raises(pymysql.err.OperationalError) as info:
            pymysql_connect(px.host, px.port, DEAD_USER, DEAD_PASSWORD)
        assert info.value.args[0] == 1429
        assert "'dead'" in info.value.args[1]
        # A session that was already open is not disturbed.
        assert scalar(held, "SELECT @@port") == cluster.primary.port
    finally:
        held.close()


def test_pool_with_one_dead_server_uses_the_live_one(make_proxy, cluster):
    settings = (pool_settings("mixed", ["127.0.0.1:%d" % util.closed_port(),
                                        cluster.primary.address])
                + user_settings("app_rw", USERS["app_rw"], "mixed"))
    px = make_proxy("mixed", settings)
    for _ in range(4):
        assert landing_port(px, "app_rw") == cluster.primary.port


# --- fake backends ---------------------------------------------------------------

def fake_settings(fake):
    return (pool_settings("fake", [fake.address])
            + user_settings(FAKE_USER, FAKE_PASSWORD, "fake"))


def test_backend_auth_switch_with_new_salt(make_proxy):
    with FakeBackend("auth_switch", users={FAKE_USER: FAKE_PASSWORD}) as fake:
        px = make_proxy("fake-switch", fake_settings(fake))
        # The greeting's version is learned from the (fake) backend.
        with p.RawClient(px.host, px.port) as c:
            assert c.read_greeting()["version"] == fake.version
        assert_answers(px, FAKE_USER, FAKE_PASSWORD)
        s = fake.finished_session(FAKE_USER)
        assert s.switched and s.switch_token_ok
        assert s.first_plugin == "mysql_native_password"
        assert (p.COM_QUERY, b"SELECT answer") in s.commands


def test_backend_auth_switch_with_wrong_backend_password(make_proxy):
    # The backend knows another password: the proxy's recomputed token fails
    # there, and the client must get an error rather than a session.
    with FakeBackend("auth_switch", users={FAKE_USER: "something-else"}) as fake:
        px = make_proxy("fake-wrong", fake_settings(fake))
        t0 = time.monotonic()
        with pytest.raises(pymysql.err.OperationalError) as info:
            pymysql_connect(px.host, px.port, FAKE_USER, FAKE_PASSWORD, read_timeout=20)
        assert time.monotonic() - t0 < 5
        assert info.value.args[0] == 1045
        assert not fake.logged_in_sessions()
        assert px.alive()


def test_backend_closing_after_greeting_gives_an_error_not_a_hang(make_proxy):
    with FakeBackend("close_after_greeting") as fake:
        px = make_proxy("fake-close", fake_settings(fake))
        for _ in range(2):
            t0 = time.monotonic()
            with pytest.raises(pymysql.err.OperationalError) as info:
                pymysql_connect(px.host, px.port, FAKE_USER, FAKE_PASSWORD, read_timeout=30)
            elapsed = time.monotonic() - t0
            assert elapsed < 5, "client waited %.1fs for %r" % (elapsed, info.value)
        assert px.alive()
        # And with a raw client: an ERR packet or a close, promptly.
        with p.RawClient(px.host, px.port, timeout=30) as c:
            c.read_greeting()
            c.write(p.handshake_response(FAKE_USER, p.native_token(FAKE_PASSWORD,
                                                                  c.greeting["salt"]),
                                         p.BASIC_CLIENT_CAPS))
            t0 = time.monotonic()
            try:
                payload = c.read()
            except (p.ConnectionClosed, ConnectionResetError):
                payload = None
            assert time.monotonic() - t0 < 5
            if payload is not None:
                assert payload[0] == 0xFF, payload
                assert c.closed_by_peer()
