"""The command line: --check, --hash-password, --version, --help."""

import os
import re
import subprocess

import pytest

from harness.protocol import password_hash
from harness.proxy import REPO

HASH_RW = password_hash("rw-example")
HASH_RO = password_hash("ro-example")

GOOD = """\
# myroute configuration used by the --check tests
listen = 127.0.0.1:23999
server_version = 10.11.6-MariaDB   # announced to clients
buffer_size = 16384
connect_timeout = 250ms
handshake_timeout = 2m

pool.primary.servers  = 127.0.0.1:23306
pool.replicas.servers = 127.0.0.1:23307, 127.0.0.1:23308
user.app_rw.password = {rw}
user.app_rw.pool     = primary
user.app_ro.password = {ro}
user.app_ro.pool     = replicas
user.nopw.password   =
user.nopw.pool       = primary
""".format(rw=HASH_RW, ro=HASH_RO)


def run(bin_, *args, stdin=None):
    return subprocess.run([bin_] + list(args), input=stdin, capture_output=True, text=True,
                          timeout=30)


def write(tmp_path, text, name="myroute.conf"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def lines_with(replacements=None, insert=None, delete=None):
    """GOOD with line N (1-based) replaced, a line inserted before N, or
    line N deleted."""
    lines = GOOD.splitlines()
    for n, text in (replacements or {}).items():
        lines[n - 1] = text
    if insert:
        n, text = insert
        lines.insert(n - 1, text)
    if delete:
        del lines[delete - 1]
    return "\n".join(lines) + "\n"


def test_check_accepts_a_good_file(myroute_bin, tmp_path):
    res = run(myroute_bin, "--check", "-c", write(tmp_path, GOOD))
    assert res.returncode == 0, res.stderr


def test_check_accepts_the_minimal_file(myroute_bin, tmp_path):
    text = ("listen = 127.0.0.1:23999\npool.p.servers = 127.0.0.1:23306\n"
            "user.u.password = %s\nuser.u.pool = p\n" % HASH_RW)
    res = run(myroute_bin, "--check", "-c", write(tmp_path, text))
    assert res.returncode == 0, res.stderr


BAD = [
    ("unknown key", lines_with(insert=(4, "frobnicate = yes")), 4),
    ("unknown key under a pool", lines_with(insert=(10, "pool.primary.weight = 3")), 10),
    ("unknown key under a user", lines_with(insert=(16, "user.app_ro.role = admin")), 16),
    ("duplicate key", GOOD + "listen = 127.0.0.1:24000\n", 16),
    ("duplicate user key", lines_with(insert=(12, "user.app_rw.pool = replicas")), 12),
    ("user with a missing pool", lines_with(replacements={13: "user.app_ro.pool = nosuch"}), 13),
    ("bad pool address", lines_with(replacements={8: "pool.primary.servers = 127.0.0.1:notaport"}), 8),
    ("bad address in a list",
     lines_with(replacements={9: "pool.replicas.servers = 127.0.0.1:23307, 127.0.0.1"}), 9),
    ("bad listen address", lines_with(replacements={2: "listen = 127.0.0.1:99999"}), 2),
    ("short hash", lines_with(replacements={10: "user.app_rw.password = *2470C0C06DEE42FD"}), 10),
    ("hash without star",
     lines_with(replacements={10: "user.app_rw.password = 2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"}),
     10),
    ("hash with non-hex digits", lines_with(replacements={12: "user.app_ro.password = *" + "G" * 40}),
     12),
    ("bad duration", lines_with(replacements={5: "connect_timeout = soon"}), 5),
    ("line without =", lines_with(insert=(7, "listen 127.0.0.1:3306")), 7),
]


@pytest.mark.parametrize("text,line", [(t, n) for _, t, n in BAD], ids=[d for d, _, _ in BAD])
def test_check_rejects_with_file_and_line(myroute_bin, tmp_path, text, line):
    path = write(tmp_path, text)
    res = run(myroute_bin, "--check", "-c", path)
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert re.search(r"^%s:%d: \S" % (re.escape(path), line), res.stderr, re.M), res.stderr


@pytest.mark.parametrize("delete", [11, 10], ids=["user without pool", "user without password"])
def test_check_rejects_a_missing_required_key(myroute_bin, tmp_path, delete):
    path = write(tmp_path, lines_with(delete=delete))
    res = run(myroute_bin, "--check", "-c", path)
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert re.search(r"^%s:\d+: \S" % re.escape(path), res.stderr, re.M), res.stderr


def test_proxy_refuses_to_start_with_a_bad_file(myroute_bin, tmp_path):
    path = write(tmp_path, lines_with(insert=(4, "frobnicate = yes")))
    res = subprocess.run([myroute_bin, "-c", path], capture_output=True, text=True, timeout=30)
    assert res.returncode != 0
    assert "%s:4:" % path in res.stderr


def test_hash_password(myroute_bin):
    res = run(myroute_bin, "--hash-password", stdin="password\n")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19\n"


def test_hash_password_matches_the_servers_hash(myroute_bin):
    for pw in ("rw-example", "with spaces and ünïcode", "trailing-space "):
        res = run(myroute_bin, "--hash-password", stdin=pw + "\n")
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == password_hash(pw)
    res = run(myroute_bin, "--hash-password", stdin="no-newline")
    assert res.stdout.strip() == password_hash("no-newline")


def test_version_and_help(myroute_bin):
    with open(os.path.join(REPO, "Cargo.toml")) as f:
        version = re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.M).group(1)
    res = run(myroute_bin, "--version")
    assert res.returncode == 0
    assert version in res.stdout
    res = run(myroute_bin, "--help")
    assert res.returncode == 0
    for flag in ("--check", "--hash-password", "-c"):
        assert flag in res.stdout + res.stderr
