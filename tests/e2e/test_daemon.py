"""Running as a service: dropping privileges (`user`), the pid file,
log_level, --check of the new keys, the systemd unit and `make install`."""

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile

import pymysql
import pytest

from harness import util
from harness.accounts import USERS
from harness.avail_tools import access_records
from harness.clients import pymysql_connect, scalar
from harness.ops import proc_status
from harness.protocol import password_hash
from harness.proxy import REPO, main_settings


def settings(cluster, **top):
    top.setdefault("shutdown_timeout", "2s")
    top.setdefault("health.interval", "500ms")
    return main_settings(cluster, **top)


def login_works(px, user="app_rw"):
    c = pymysql_connect(px.host, px.port, user, USERS[user])
    try:
        return scalar(c, "SELECT 1") == 1
    finally:
        c.close()


LEVEL_RE = re.compile(r"^\S+\s+(ERROR|WARN|INFO|DEBUG|TRACE)\s")


def levels(lines):
    """The level of each log line that has one."""
    return [m.group(1) for m in map(LEVEL_RE.match, lines) if m]


def read_pid(path):
    with open(path) as f:
        return int(f.read().strip())


# --- user / pid_file -------------------------------------------------------------------------

@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_user_drops_privileges_after_binding(make_ops_proxy, cluster, request):
    nobody = pwd.getpwnam("nobody")
    # A pid file directory the service account owns (as /run/myroute would
    # be), where it can reach it (pytest's tmp_path is under a 0700 root dir).
    piddir = tempfile.mkdtemp(prefix="myroute-e2e-run-")
    request.addfinalizer(lambda: shutil.rmtree(piddir, ignore_errors=True))
    os.chown(piddir, nobody.pw_uid, nobody.pw_gid)
    pidfile = os.path.join(piddir, "myroute.pid")
    px = make_ops_proxy("nobody", settings(cluster, user="nobody", pid_file=pidfile))

    def dropped():
        st = proc_status(px.pid)
        return st if st["Uid"] == [str(nobody.pw_uid)] * 4 else None
    st = util.wait_until(dropped, 5, what=lambda: "uid %d; status Uid %r" % (
        nobody.pw_uid, proc_status(px.pid)["Uid"]))
    assert st["Gid"] == [str(nobody.pw_gid)] * 4, st["Gid"]
    assert "0" not in st.get("Groups", []), "root's group kept: %r" % st.get("Groups")
    # Still listening, serving clients and the console.
    assert util.is_listening(px.port) and util.is_listening(px.admin_port)
    assert login_works(px) and login_works(px, "app_ro")
    assert px.admin_rows("SHOW VERSION")
    assert read_pid(pidfile) == px.pid
    px.signal(signal.SIGTERM)
    status, _ = px.wait_exit(10)
    assert status == 0, px.log_tail()
    assert not os.path.exists(pidfile)


def test_pid_file_is_written_and_removed(make_ops_proxy, cluster, tmp_path):
    pidfile = str(tmp_path / "myroute.pid")
    px = make_ops_proxy("pidfile", settings(cluster, pid_file=pidfile), admin=False)
    util.wait_until(lambda: os.path.exists(pidfile), 5, what="the pid file")
    assert read_pid(pidfile) == px.pid
    px.signal(signal.SIGTERM)
    status, _ = px.wait_exit(10)
    assert status == 0, px.log_tail()
    assert not os.path.exists(pidfile)


# --- log_level ----------------------------------------------------------------------------

def run_and_log(make_ops_proxy, cluster, name, env, unset_env):
    """A proxy with log_level = warn that serves one login and refuses one,
    then stops; returns its log lines."""
    px = make_ops_proxy(name, settings(cluster, log_level="warn"), admin=False, env=env,
                        unset_env=unset_env)
    assert login_works(px)
    with pytest.raises(pymysql.err.OperationalError):
        pymysql_connect(px.host, px.port, "app_ro", "not-the-password")
    px.wait_for_log_line(lambda l: "WARN" in l and "app_ro" in l, 5,
                         what="the failed login's warning")
    px.signal(signal.SIGTERM)
    assert px.wait_exit(10)[0] == 0
    return px


def test_log_level_warn_hides_info_lines(make_ops_proxy, cluster):
    px = run_and_log(make_ops_proxy, cluster, "warn", env=None, unset_env=("RUST_LOG",))
    lines = px.log_lines()
    assert "WARN" in levels(lines), lines
    assert set(levels(lines)) <= {"WARN", "ERROR"}, lines
    assert not access_records(px), lines


def test_rust_log_overrides_log_level(make_ops_proxy, cluster):
    px = run_and_log(make_ops_proxy, cluster, "rustlog", env={"RUST_LOG": "info"}, unset_env=())
    recs = access_records(px)
    assert {r["user"] for r in recs} >= {"app_rw", "app_ro"}, px.log_tail()
    assert "INFO" in levels(px.log_lines())


# --- --check -------------------------------------------------------------------------------

HASH = password_hash("check-example")
GOOD = """\
listen = 127.0.0.1:23999
admin.listen = 127.0.0.1:24001
admin.user = opsadmin
admin.password = {h}
metrics.listen = 127.0.0.1:24002
shutdown_timeout = 5s
proxy_protocol_from = 10.0.0.0/8, 127.0.0.1, ::1/128
user = nobody
pid_file = /run/myroute/myroute.pid
log_level = warn
pool.primary.servers = 127.0.0.1:23306
pool.primary.proxy_protocol = v2
pool.replicas.servers = 127.0.0.1:23307, 127.0.0.1:23308
pool.replicas.proxy_protocol = v1
user.app_rw.password = {h}
user.app_rw.pool = primary
user.app_ro.password = {h}
user.app_ro.pool = replicas
""".format(h=HASH)


def variant(replace=None, delete=None):
    lines = GOOD.splitlines()
    for n, text in (replace or {}).items():
        lines[n - 1] = text
    if delete:
        del lines[delete - 1]
    return "\n".join(lines) + "\n"


def check(myroute_bin, tmp_path, text):
    path = tmp_path / "myroute.conf"
    path.write_text(text)
    res = subprocess.run([myroute_bin, "--check", "-c", str(path)], capture_output=True,
                         text=True, timeout=30)
    return str(path), res


def test_check_accepts_the_new_keys(myroute_bin, tmp_path):
    _, res = check(myroute_bin, tmp_path, GOOD)
    assert res.returncode == 0, res.stderr
    for level in ("error", "warn", "info", "debug", "trace"):
        _, res = check(myroute_bin, tmp_path, variant(replace={10: "log_level = " + level}))
        assert res.returncode == 0, (level, res.stderr)
    for pp in ("none", "v1", "v2"):
        _, res = check(myroute_bin, tmp_path,
                       variant(replace={12: "pool.primary.proxy_protocol = " + pp}))
        assert res.returncode == 0, (pp, res.stderr)


BAD = [
    ("bad CIDR", variant(replace={7: "proxy_protocol_from = 10.0.0.0/33"}), 7),
    ("not an address", variant(replace={7: "proxy_protocol_from = 10.0.0.0/8, nowhere"}), 7),
    ("proxy_protocol v3", variant(replace={12: "pool.primary.proxy_protocol = v3"}), 12),
    ("log_level", variant(replace={10: "log_level = loud"}), 10),
    ("shutdown_timeout", variant(replace={6: "shutdown_timeout = soon"}), 6),
    ("empty admin.password", variant(replace={4: "admin.password ="}), 4),
    ("admin.password not a hash", variant(replace={4: "admin.password = secret"}), 4),
    ("bad metrics.listen", variant(replace={5: "metrics.listen = 127.0.0.1:99999"}), 5),
    ("bad admin.listen", variant(replace={2: "admin.listen = 127.0.0.1"}), 2),
]


@pytest.mark.parametrize("text,line", [(t, n) for _, t, n in BAD], ids=[d for d, _, _ in BAD])
def test_check_rejects_bad_values_with_file_and_line(myroute_bin, tmp_path, text, line):
    path, res = check(myroute_bin, tmp_path, text)
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert re.search(r"^%s:%d: \S" % (re.escape(path), line), res.stderr, re.M), res.stderr


@pytest.mark.parametrize("delete", [4, 3], ids=["admin.listen without admin.password",
                                                "admin.listen without admin.user"])
def test_check_rejects_a_console_without_credentials(myroute_bin, tmp_path, delete):
    path, res = check(myroute_bin, tmp_path, variant(delete=delete))
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert re.search(r"^%s:\d+: \S" % re.escape(path), res.stderr, re.M), res.stderr
    assert "admin." in res.stderr, res.stderr


# --- the systemd unit and make install ------------------------------------------------------

UNIT = os.path.join(REPO, "dist", "myroute.service")
EXAMPLE = os.path.join(REPO, "myroute.conf.example")


def unit_sections(text):
    """{section: {key: [values]}} of a systemd unit file."""
    out, section = {}, None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        m = re.match(r"^\[(.+)\]$", line)
        if m:
            section = out.setdefault(m.group(1), {})
            continue
        assert section is not None and "=" in line, "bad unit line: %r" % raw
        k, v = line.split("=", 1)
        section.setdefault(k.strip(), []).append(v.strip())
    return out


def test_unit_file_has_what_a_service_needs():
    assert os.path.exists(UNIT), "dist/myroute.service is missing"
    with open(UNIT) as f:
        unit = unit_sections(f.read())
    svc = unit["Service"]
    assert re.search(r"/myroute\b", svc["ExecStart"][-1]), svc["ExecStart"]
    assert "HUP" in svc["ExecReload"][-1], svc["ExecReload"]
    assert svc["NoNewPrivileges"] == ["yes"], svc.get("NoNewPrivileges")
    assert svc.get("ProtectSystem"), "no ProtectSystem="
    assert "Install" in unit and unit["Install"].get("WantedBy"), unit.get("Install")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    dest = tmp_path_factory.mktemp("destdir")
    # -o release: install the binary under test as it is (the e2e target
    # has just built it), without rebuilding it from the tree.
    # Run from `make test`, the parent make's job-server flags are not ours.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    res = subprocess.run(["make", "-C", REPO, "-o", "release", "install", "DESTDIR=%s" % dest,
                          "PREFIX=/usr"],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900,
                         env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return str(dest)


def find(dest, suffix):
    found = []
    for root, _, files in os.walk(dest):
        for f in files:
            p = os.path.join(root, f)
            if p.endswith(suffix):
                found.append(p)
    return found


def test_make_install_puts_everything_in_place(installed):
    d = installed
    binary = os.path.join(d, "usr/bin/myroute")
    assert os.access(binary, os.X_OK)
    with open(binary, "rb") as a, open(os.path.join(REPO, "target/release/myroute"), "rb") as b:
        assert a.read() == b.read(), "installed binary differs from target/release/myroute"
    for rel in ("usr/share/man/man8/myroute.8", "usr/share/man/man5/myroute.conf.5",
                "usr/share/doc/myroute/myroute.conf.example"):
        assert os.path.isfile(os.path.join(d, rel)), rel
    units = find(d, "/systemd/system/myroute.service")
    assert len(units) == 1, find(d, "myroute.service")
    with open(units[0]) as f:
        unit = unit_sections(f.read())
    # The unit starts the binary this install put in place.
    exe = unit["Service"]["ExecStart"][-1].split()[0].lstrip("@-:+!")
    assert exe == "/usr/bin/myroute", exe


def test_example_config_passes_check(installed, myroute_bin, tmp_path):
    example = os.path.join(installed, "usr/share/doc/myroute/myroute.conf.example")
    with open(example) as f:
        text = f.read()
    with open(EXAMPLE) as f:
        assert f.read() == text
    res = subprocess.run([myroute_bin, "--check", "-c", example], capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 0, res.stderr


def test_unit_passes_systemd_analyze_verify(installed, tmp_path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (the unit's keys are checked by "
                    "test_unit_file_has_what_a_service_needs)")
    with open(find(installed, "/systemd/system/myroute.service")[0]) as f:
        text = f.read()
    # verify checks that the commands exist: point them at the installed
    # binary (--root= would also hide the system's own units and /bin/kill);
    # and that the Documentation= man pages exist: look in the installed tree.
    assert "/usr/bin/myroute" in text
    unit = tmp_path / "myroute.service"
    unit.write_text(text.replace("/usr/bin/myroute", os.path.join(installed, "usr/bin/myroute")))
    env = dict(os.environ, MANPATH=os.path.join(installed, "usr/share/man"))
    res = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True,
                         timeout=60, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    # Unknown keys and bad values are only warnings: there must be none.
    assert "myroute.service" not in res.stdout + res.stderr, res.stdout + res.stderr
