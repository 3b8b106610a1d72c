"""Session fixtures: three MariaDB servers ("primary" and two "replicas"),
the myroute binary and one proxy in front of them, shared by all tests;
for the TLS tests, certificates and two MariaDB servers that serve TLS
(made when a test first asks for them).

Environment:
  MYROUTE_BIN             proxy binary to test; when unset, target/release/myroute
                          is (re)built with `cargo build --release` first
  MYROUTE_TEST_KEEP=1     keep the proxies' configuration files and logs
  MYROUTE_TEST_PORT_BASE  first loopback port to try (default 21000-30800,
                          by process id)
  RUST_LOG                passed to the proxies (default info)
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from harness import clients, util  # noqa: E402
from harness.accounts import ALL_PASSWORDS  # noqa: E402
from harness.mariadb import Cluster, TlsCluster  # noqa: E402
from harness.proxy import REPO, Proxy, binary_path, main_settings  # noqa: E402


def pytest_configure(config):
    # Turn SIGTERM (a CI job being cancelled) into KeyboardInterrupt, so that
    # fixtures still stop the servers and remove their directories.
    def interrupted(signum, frame):
        raise KeyboardInterrupt("SIGTERM")
    signal.signal(signal.SIGTERM, interrupted)


@pytest.fixture(scope="session")
def workdir():
    d = tempfile.mkdtemp(prefix="myroute-e2e-")
    yield d
    if os.environ.get("MYROUTE_TEST_KEEP"):
        sys.stderr.write("\nkept test files in %s\n" % d)
    else:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def myroute_bin():
    """The proxy binary: $MYROUTE_BIN, or target/release/myroute freshly built."""
    if not os.environ.get("MYROUTE_BIN"):
        res = subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "myroute"],
                             cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=900)
        if res.returncode != 0:
            pytest.fail("cargo build --release failed:\n" + res.stderr[-6000:], pytrace=False)
    path = binary_path()
    if not os.access(path, os.X_OK):
        pytest.fail("myroute binary not found at %s" % path, pytrace=False)
    return path


@pytest.fixture(scope="session")
def cluster():
    yield from util.running(Cluster(3))


@pytest.fixture(scope="session")
def certs():
    """harness.tls.Certs: CAs and certificates made with openssl for this
    session, in a directory mariadbd can read."""
    from harness.tls import Certs
    d = tempfile.mkdtemp(prefix="myroute-e2e-certs-")
    try:
        yield Certs(d).make()
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def tls_cluster(certs):
    """Two MariaDB servers serving TLS with certs.server: "tls" (plaintext
    allowed) and "secure" (require_secure_transport=ON)."""
    yield from util.running(TlsCluster(certs))


@pytest.fixture(scope="session")
def driver_accounts(cluster):
    """accounts.DRIVER_USERS, created on every server of the cluster."""
    from harness.drivers import create_driver_accounts
    create_driver_accounts(cluster.servers)
    return cluster


@pytest.fixture(scope="session")
def rust_client_bin():
    try:
        return clients.build_rust_client()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def proxy(myroute_bin, cluster, workdir):
    """The proxy shared by most tests: app_rw and nopw -> primary,
    app_ro -> replicas."""
    p = Proxy(workdir, "main", main_settings(cluster))
    p.start()
    try:
        yield p
        assert p.alive(), "myroute exited during the session (status %s); stderr:\n%s" % (
            p.proc.returncode, p.log_tail())
    finally:
        p.stop()


@pytest.fixture
def make_proxy(myroute_bin, workdir, request):
    """Factory for extra proxies, stopped at the end of the test."""
    started = []

    def make(name, settings, env=None, host="127.0.0.1"):
        p = Proxy(workdir, "%s-%s" % (request.node.name.replace("/", "_")[:60], name),
                  settings, env=env, host=host)
        started.append(p)
        return p.start()
    yield make
    for p in started:
        p.stop()


@pytest.fixture
def make_ops_proxy(myroute_bin, workdir, request):
    """Factory for proxies with the admin console and/or metrics responder
    (harness.ops.OpsProxy), stopped at the end of the test."""
    from harness.ops import OpsProxy
    started = []

    def make(name, settings, start=True, **kw):
        p = OpsProxy(workdir, "%s-%s" % (request.node.name.replace("/", "_")[:60], name),
                     settings, **kw)
        started.append(p)
        return p.start() if start else p
    yield make
    for p in started:
        p.stop()


@pytest.fixture
def connect(proxy):
    """connect(user, password=<the user's>, **kw): PyMySQL through the main
    proxy; connections are closed at the end of the test."""
    conns = []

    def make(user, password=None, **kw):
        if password is None:
            password = ALL_PASSWORDS[user]
        c = clients.pymysql_connect(proxy.host, proxy.port, user, password, **kw)
        conns.append(c)
        return c
    yield make
    clients.close_all(conns)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for p in Proxy.running:
            report.sections.append(("myroute stderr (%s, last lines)" % p.name, p.log_tail(25)))


@pytest.fixture
def held():
    """Client connections a test keeps open; closed at its end."""
    conns = []
    yield conns
    clients.close_all(conns)
