"""Ways to talk to a MySQL endpoint with the real client programs and
libraries: PyMySQL, mysql-connector-python (pure Python), the mariadb CLI,
Node's mysql2 (tests/clients/node_client.js) and the Rust `mysql` crate
(tests/clients/rust_client.rs, built as a cargo example)."""

import json
import os
import subprocess
import urllib.parse

import mysql.connector
import pymysql

from .accounts import USERS
from .proxy import REPO

CLIENTS_DIR = os.path.join(REPO, "tests", "clients")
RUST_CLIENT = os.path.join(REPO, "target", "release", "examples", "rust_client")


def pymysql_connect(host, port, user, password, database=None, **kw):
    kw.setdefault("connect_timeout", 10)
    kw.setdefault("read_timeout", 60)
    kw.setdefault("write_timeout", 60)
    return pymysql.connect(host=host, port=port, user=user, password=password,
                           database=database, ssl_disabled=True, **kw)


def login(px, user, password=None, **kw):
    """PyMySQL to `px` (a proxy or a server: anything with host and port) as
    `user`, with the password accounts.USERS gives it unless one is given."""
    return pymysql_connect(px.host, px.port, user, USERS[user] if password is None else password,
                           **kw)


def landing_port(px, user, password=None):
    """The backend port (SELECT @@port) a new login as `user` to `px` is
    served by; the connection is closed again."""
    conn = login(px, user, password)
    try:
        return scalar(conn, "SELECT @@port")
    finally:
        conn.close()


def close_all(conns):
    """Closes every connection, ignoring errors."""
    for c in conns:
        try:
            c.close()
        except Exception:
            pass


def connector_connect(host, port, user, password, database=None, **kw):
    kw.setdefault("connection_timeout", 10)
    return mysql.connector.connect(host=host, port=port, user=user, password=password,
                                   database=database, use_pure=True, ssl_disabled=True, **kw)


def scalar(conn, sql, args=None):
    cur = conn.cursor()
    try:
        cur.execute(sql, args)
        rows = cur.fetchall()
    finally:
        cur.close()
    assert len(rows) == 1 and len(rows[0]) == 1, rows
    return rows[0][0]


def mariadb_cli(host, port, user, password, sql, database=None, extra=(), timeout=60,
                tls=False):
    """Runs `mariadb ... -e SQL` in batch mode without column names (and with
    --skip-ssl unless tls=True).  Returns the CompletedProcess (text)."""
    args = ["mariadb", "--no-defaults", "-h" + host, "-P%d" % port, "--protocol=TCP",
            "-u" + user, "--batch", "--skip-column-names", "--connect-timeout=10"]
    if not tls:
        args.append("--skip-ssl")
    if password:
        args.append("-p" + password)
    args += list(extra)
    if database:
        args.append(database)
    args += ["-e", sql]
    return subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


def node_client(host, port, user, password, ops, database=None, multiple_statements=False,
                timeout=60, ssl=None, connections=None):
    """Runs tests/clients/node_client.js; returns its JSON result.  ssl: a
    dict of the client's TLS options (see node_client.js); None: plaintext.
    `connections`: {name: {field: value}} for ops that name other
    connections than "main" (see the program's header)."""
    spec = {"host": host, "port": port, "user": user, "password": password,
            "database": database, "multipleStatements": multiple_statements, "ops": ops}
    if ssl is not None:
        spec["ssl"] = ssl
    if connections:
        spec["connections"] = connections
    res = subprocess.run(["node", os.path.join(CLIENTS_DIR, "node_client.js"), json.dumps(spec)],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         timeout=timeout, cwd=CLIENTS_DIR)
    assert res.returncode == 0, "node client failed (%d): %s" % (res.returncode, res.stderr)
    return json.loads(res.stdout)


def build_rust_client():
    res = subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "rust_client"],
                         cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         timeout=900)
    if res.returncode != 0:
        raise RuntimeError("building the rust client failed:\n" + res.stderr[-6000:])
    return RUST_CLIENT


class RustResult:
    def __init__(self, proc):
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.ops = []  # per op: list of ("set", columns) / ("row", values) / ("ok", [a, id])
        for line in proc.stdout.splitlines():
            kind, _, rest = line.partition("\t")
            fields = [_unescape(f) for f in rest.split("\t")]
            if kind == "op":
                self.ops.append([])
            else:
                self.ops[-1].append((kind, fields))
        self.error = None
        for line in proc.stderr.splitlines():
            if line.startswith("error\t"):
                _, code, state, msg = line.split("\t", 3)
                self.error = (int(code), state, _unescape(msg))

    def rows(self, op=0):
        return [tuple(f) for kind, f in self.ops[op] if kind == "row"]

    def sets(self, op=0):
        """Result sets of an op, each a list of row tuples (OKs left out)."""
        out = []
        for kind, f in self.ops[op]:
            if kind == "set":
                out.append([])
            elif kind == "row":
                out[-1].append(tuple(f))
        return out


def _unescape(s):
    out = []
    it = iter(s)
    for c in it:
        if c == "\\":
            n = next(it, "")
            out.append({"t": "\t", "n": "\n", "r": "\r", "\\": "\\", "N": None}.get(n, n))
        else:
            out.append(c)
    if out == [None]:
        return None
    return "".join(o for o in out if o is not None)


def rust_client(host, port, user, password, ops, database=None, timeout=60):
    """ops: list of strings "query=SQL", "exec=SQL", "param=V", "int=N",
    "change_user=USER", "pass=P", "db=D" (see tests/clients/rust_client.rs)."""
    # prefer_socket=false: by default the crate asks a server on 127.0.0.1
    # for @@socket and reconnects through that Unix socket, which would
    # bypass the proxy under test.
    url = "mysql://%s:%s@%s:%d/%s?prefer_socket=false" % (
        urllib.parse.quote(user, safe=""), urllib.parse.quote(password, safe=""), host, port,
        database or "")
    proc = subprocess.run([RUST_CLIENT, url] + list(ops), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)
    return RustResult(proc)
