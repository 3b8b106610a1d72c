"""TLS for the end-to-end tests: certificates made with the `openssl`
command-line tool once per test session, client-side TLS contexts, what a
client sees of its own TLS session, and a few raw-socket tools (a TLS
ClientHello without a MySQL preamble, a TLS-terminating relay).

`Certs(directory).make()` writes:

  ca            a root CA ("myroute test CA") that signs everything below
                except the wrong CA's own certificate
  intermediate  an intermediate CA signed by `ca`
  wrong_ca      an unrelated root CA: verifying any certificate here
                against it fails
  server        MariaDB's certificate (RSA 2048): SAN IP 127.0.0.1 and DNS
                localhost, signed by `ca`
  proxy_ec      a certificate for myroute, ECDSA P-256, SANs 127.0.0.1,
                127.0.0.2 and localhost, signed by `ca`; its key as PKCS#8
                (`key`) and SEC1 (`key_sec1`)
  proxy_rsa     the same names with an RSA 2048 key: PKCS#8 (`key`) and
                PKCS#1 (`key_pkcs1`)
  proxy_chain   the same names, signed by `intermediate`; `cert` holds the
                leaf followed by the intermediate (a client that trusts only
                `ca` needs both)
  client        a client certificate ("myroute test client"), signed by `ca`
  relay         a self-signed certificate (a man in the middle's)
  not_pem       a file that is not PEM at all

Each certificate is a `Cert` with `cert`, `key` (paths), `der` (bytes) and
`sha256` (lower-case hex); `fingerprint` gives the form openssl prints
(`AB:CD:...`).  Key files are readable by the `mysql` user (mariadbd runs
as it when the tests run as root).
"""

import hashlib
import os
import pwd
import re
import select
import socket
import ssl
import subprocess
import threading
import time

from . import protocol as p
from .accounts import X509_SUBJECT

PROXY_NAMES = "IP:127.0.0.1, IP:127.0.0.2, DNS:localhost"
SERVER_NAMES = "IP:127.0.0.1, DNS:localhost"

# The zero-configuration check of MariaDB Connector/Python 2.x: a greeting
# version of MariaDB 11.4.1 or later.
ZERO_CONFIG_VERSION = "11.4.5-MariaDB"
# The connector skips the check for these hosts; 127.0.0.2 is loopback too.
NON_LOCAL_LOOPBACK = "127.0.0.2"


def openssl(*args, stdin=None):
    res = subprocess.run(["openssl"] + list(args), input=stdin, capture_output=True,
                         timeout=60)
    if res.returncode != 0:
        raise RuntimeError("openssl %s failed (%d):\n%s" % (
            " ".join(args), res.returncode, res.stderr.decode(errors="replace")))
    return res.stdout


def fingerprint_of(der):
    """SHA-256 of a DER certificate as openssl prints it: AB:CD:..."""
    return ":".join("%02X" % b for b in hashlib.sha256(der).digest())


def parse_fingerprint(text):
    """The 32 bytes of a fingerprint written with or without colons."""
    return bytes.fromhex(text.replace(":", ""))


class Cert:
    def __init__(self, directory, name):
        self.name = name
        self.cert = os.path.join(directory, name + ".pem")
        self.key = os.path.join(directory, name + ".key")
        self.der = None

    @property
    def sha256(self):
        return hashlib.sha256(self.der).hexdigest()

    @property
    def fingerprint(self):
        return fingerprint_of(self.der)

    def load_der(self):
        # The first certificate of the file (the leaf, for a chain file).
        self.der = openssl("x509", "-in", self.cert, "-outform", "DER")
        return self

    def openssl_fingerprint(self):
        """`openssl x509 -fingerprint -sha256` of the file, AB:CD:... ."""
        out = openssl("x509", "-in", self.cert, "-noout", "-fingerprint", "-sha256").decode()
        return out.strip().split("=", 1)[1]

    def __repr__(self):
        return "Cert(%s)" % self.cert


class Certs:
    def __init__(self, directory):
        self.dir = directory
        self._serial = 1000

    # --- making them -------------------------------------------------------------

    def _path(self, name):
        return os.path.join(self.dir, name)

    def _key(self, path, kind):
        if kind == "ec":
            openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-out", path)
        else:
            openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                    "-out", path)

    def _config(self, name, cn, ext_lines):
        """An openssl configuration: the subject and the extensions."""
        path = self._path(name + ".cnf")
        with open(path, "w") as f:
            f.write("[req]\ndistinguished_name = dn\nprompt = no\n"
                    "[dn]\nCN = %s\n[ext]\n%s" % (cn, "".join(l + "\n" for l in ext_lines)))
        return path

    def _root(self, name, cn, kind="ec"):
        c = Cert(self.dir, name)
        self._key(c.key, kind)
        cnf = self._config(name, cn, ["basicConstraints = critical, CA:TRUE",
                                      "keyUsage = critical, keyCertSign, cRLSign",
                                      "subjectKeyIdentifier = hash"])
        openssl("req", "-x509", "-new", "-key", c.key, "-config", cnf, "-extensions", "ext",
                "-days", "30", "-sha256", "-out", c.cert)
        return c.load_der()

    def _signed(self, name, cn, issuer, kind="ec", names=None, usage="serverAuth", ca=False):
        c = Cert(self.dir, name)
        self._key(c.key, kind)
        if ca:
            lines = ["basicConstraints = critical, CA:TRUE, pathlen:0",
                     "keyUsage = critical, keyCertSign, cRLSign"]
        else:
            lines = ["basicConstraints = critical, CA:FALSE",
                     "keyUsage = critical, digitalSignature"
                     + (", keyEncipherment" if kind == "rsa" else ""),
                     "extendedKeyUsage = " + usage]
        lines += ["subjectKeyIdentifier = hash", "authorityKeyIdentifier = keyid:always"]
        if names:
            lines.append("subjectAltName = " + names)
        cnf = self._config(name, cn, lines)
        csr = self._path(name + ".csr")
        openssl("req", "-new", "-key", c.key, "-config", cnf, "-out", csr)
        self._serial += 1
        openssl("x509", "-req", "-in", csr, "-CA", issuer.cert, "-CAkey", issuer.key,
                "-set_serial", str(self._serial), "-days", "30", "-sha256",
                "-extfile", cnf, "-extensions", "ext", "-out", c.cert)
        return c.load_der()

    def _signed_v1(self, name, cn, issuer):
        """An X.509 v1 certificate (no extensions), as old MySQL tools made."""
        c = Cert(self.dir, name)
        self._key(c.key, "rsa")
        csr = self._path(name + ".csr")
        openssl("req", "-new", "-key", c.key, "-subj", "/CN=" + cn, "-out", csr)
        self._serial += 1
        openssl("x509", "-req", "-in", csr, "-CA", issuer.cert, "-CAkey", issuer.key,
                "-set_serial", str(self._serial), "-days", "30", "-sha256", "-out", c.cert)
        return c.load_der()

    def make(self):
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.ca = self._root("ca", "myroute test CA")
        self.wrong_ca = self._root("wrong-ca", "myroute unrelated CA")
        self.intermediate = self._signed("intermediate", "myroute test intermediate CA",
                                         self.ca, ca=True)
        self.server = self._signed("server", "127.0.0.1", self.ca, kind="rsa",
                                   names=SERVER_NAMES)
        self.server_v1 = self._signed_v1("server-v1", "127.0.0.1", self.ca)
        self.proxy_ec = self._signed("proxy-ec", "myroute test proxy", self.ca,
                                     names=PROXY_NAMES)
        self.proxy_ec.key_sec1 = self._path("proxy-ec.sec1.key")
        with open(self.proxy_ec.key_sec1, "wb") as f:
            f.write(openssl("ec", "-in", self.proxy_ec.key))
        self.proxy_rsa = self._signed("proxy-rsa", "myroute test proxy (RSA)", self.ca,
                                      kind="rsa", names=PROXY_NAMES)
        self.proxy_rsa.key_pkcs1 = self._path("proxy-rsa.pkcs1.key")
        with open(self.proxy_rsa.key_pkcs1, "wb") as f:
            f.write(openssl("pkey", "-in", self.proxy_rsa.key, "-traditional"))
        leaf = self._signed("proxy-leaf", "myroute test proxy (chain)", self.intermediate,
                            names=PROXY_NAMES)
        self.proxy_chain = Cert(self.dir, "proxy-chain")
        with open(self.proxy_chain.cert, "w") as f:
            for part in (leaf.cert, self.intermediate.cert):
                with open(part) as src:
                    f.write(src.read())
        self.proxy_chain.key = leaf.key
        self.proxy_chain.load_der()
        self.client = self._signed("client", X509_SUBJECT[len("/CN="):], self.ca,
                                   usage="clientAuth")
        self.relay = self._root("relay", "not myroute")
        self.not_pem = self._path("not-pem.pem")
        with open(self.not_pem, "w") as f:
            f.write("this is not a PEM file\n" * 4)
        self._check_formats()
        self._share_with_mysql()
        return self

    def _check_formats(self):
        """The key files are in the forms their names say."""
        def first(path):
            with open(path) as f:
                return f.readline().strip()
        want = {self.proxy_ec.key: "-----BEGIN PRIVATE KEY-----",
                self.proxy_ec.key_sec1: "-----BEGIN EC PRIVATE KEY-----",
                self.proxy_rsa.key: "-----BEGIN PRIVATE KEY-----",
                self.proxy_rsa.key_pkcs1: "-----BEGIN RSA PRIVATE KEY-----"}
        for path, header in want.items():
            assert first(path) == header, (path, first(path))
        with open(self.proxy_chain.cert) as f:
            assert f.read().count("-----BEGIN CERTIFICATE-----") == 2

    def _share_with_mysql(self):
        ids = None
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("mysql")
                ids = (0, pw.pw_gid)
            except KeyError:
                ids = None
        for name in os.listdir(self.dir):
            path = self._path(name)
            if name.endswith(".key"):
                os.chmod(path, 0o640)
                if ids:
                    os.chown(path, *ids)
            else:
                os.chmod(path, 0o644)

    def write(self, name, text):
        """A file of this directory with `text` (for broken variants)."""
        path = self._path(name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def copy(self, src, name):
        with open(src) as f:
            return self.write(name, f.read())


# --- settings ------------------------------------------------------------------------

def proxy_tls_settings(cert, key=None, mode=None):
    """tls.cert / tls.key (and tls when `mode` is given) for `cert` (a Cert)."""
    out = [] if mode is None else [("tls", mode)]
    return out + [("tls.cert", cert.cert), ("tls.key", key or cert.key)]


def pool_tls_settings(pool, mode, ca=None, name=None, fingerprint=None, client=None):
    out = [("pool.%s.tls" % pool, mode)]
    if ca is not None:
        out.append(("pool.%s.tls_ca" % pool, ca.cert))
    if name is not None:
        out.append(("pool.%s.tls_name" % pool, name))
    if fingerprint is not None:
        out.append(("pool.%s.tls_fingerprint" % pool, fingerprint))
    if client is not None:
        out += [("pool.%s.tls_cert" % pool, client.cert), ("pool.%s.tls_key" % pool, client.key)]
    return out


# --- the client's side ---------------------------------------------------------------

def client_context(ca=None, check_hostname=True, version=None, max_version=None):
    """An SSLContext that verifies against `ca` (a Cert; None: no
    verification at all).  version pins the protocol ("TLSv1.2" or
    "TLSv1.3"); max_version caps it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(cafile=ca.cert)
        ctx.check_hostname = check_hostname
        ctx.verify_mode = ssl.CERT_REQUIRED
    versions = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3,
                "TLSv1.1": ssl.TLSVersion.TLSv1_1}
    if version:
        ctx.minimum_version = ctx.maximum_version = versions[version]
    if max_version:
        if versions[max_version] < ssl.TLSVersion.TLSv1_2:
            # OpenSSL 3 allows the old protocols only at security level 0.
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
            ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = versions[max_version]
    return ctx


def sock_view(sock):
    """(protocol, cipher name, SHA-256 of the peer's certificate, hex) of
    an ssl.SSLSocket; None for a plain socket."""
    if not isinstance(sock, ssl.SSLSocket):
        return None
    der = sock.getpeercert(binary_form=True)
    return sock.version(), sock.cipher()[0], hashlib.sha256(der).hexdigest() if der else None


def pymysql_view(conn):
    return sock_view(conn._sock)


def connector_view(conn):
    """mysql-connector-python (pure): its socket wrapper's socket."""
    return sock_view(conn._socket.sock)


def mariadb_view(conn):
    """MariaDB Connector/Python 2.x (pure Python): the client's socket."""
    return sock_view(conn._client.socket)


def rustls_cipher_name(openssl_name):
    """The name rustls gives a TLS 1.3 suite OpenSSL calls TLS_AES_...:
    TLS13_AES_..."""
    assert openssl_name.startswith("TLS_"), openssl_name
    return "TLS13_" + openssl_name[len("TLS_"):]


# --- the MySQL side of a TLS login, by hand -----------------------------------------

def start_tls(client, ctx, server_hostname=None, caps=p.BASIC_CLIENT_CAPS):
    """After the greeting: SSLRequest at sequence 1, then the TLS handshake
    on the RawClient's socket (which is replaced by the SSLSocket).  `caps`
    should be those the HandshakeResponse41 will carry (with
    CLIENT_CONNECT_WITH_DB when it names a database): a server may take
    them from the SSLRequest."""
    if client.greeting is None:
        client.read_greeting()
    client.write(p.ssl_request(caps | p.CLIENT_SSL))
    client.sock = ctx.wrap_socket(client.sock, server_hostname=server_hostname)
    return client.sock


def zero_config_proof(password, salt, cert_der):
    """The info MariaDB 11.4 puts in the OK after a mysql_native_password
    login over TLS: 0x01 followed by the uppercase hex of
    SHA256(SHA1(SHA1(password)) || salt || SHA256(certificate)).  Uppercase,
    as the server writes it (octet2hex) and Connector/C compares it (strcmp)."""
    stage2 = p.sha1(p.sha1(password.encode()))
    h = hashlib.sha256(stage2 + salt + hashlib.sha256(cert_der).digest()).hexdigest().upper()
    return b"\x01" + h.encode()


def client_hello(server_hostname=None):
    """The bytes of a real TLS ClientHello (what a client that starts TLS
    at once sends first)."""
    ctx = client_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    data = outgoing.read()
    assert data[:1] == b"\x16", data[:8]
    return data


# A fatal handshake_failure alert record (TLS 1.2 record version).
FATAL_ALERT = bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28])


def oversized_record():
    """A handshake record header announcing 65535 bytes (the limit is
    2^14 + 2048 for any TLS record) and its body."""
    return bytes([0x16, 0x03, 0x01, 0xFF, 0xFF]) + b"\x01" * 0xFFFF


# --- a man in the middle --------------------------------------------------------------

class TlsRelay:
    """Listens on `host`, relays the plaintext start of a MySQL connection
    (greeting, SSLRequest) to `upstream`, then terminates the client's TLS
    with its own certificate (`cert`) and opens TLS to the upstream without
    verifying it, relaying the decrypted bytes both ways: what an attacker
    who can intercept the connection would do."""

    def __init__(self, upstream_host, upstream_port, cert, host="127.0.0.1"):
        from . import util
        self.upstream = (upstream_host, upstream_port)
        self.host = host
        self.port = util.free_port()
        self.server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server_ctx.load_cert_chain(cert.cert, cert.key)
        self.upstream_ctx = client_context()
        self.errors = []
        self.relayed = 0
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, self.port))
        self._listener.listen(8)
        self._threads = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)

    def _accept(self):
        while True:
            try:
                c, _ = self._listener.accept()
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, c):
        u = None
        try:
            c.settimeout(20)
            u = socket.create_connection(self.upstream, timeout=20)
            seq, greeting = p.read_packet(u)
            p.write_packet(c, seq, greeting)
            seq, req = p.read_packet(c)
            if not p.parse_handshake_response(req)["ssl_request"]:
                raise AssertionError("the client did not ask for TLS")
            p.write_packet(u, seq, req)
            u = self.upstream_ctx.wrap_socket(u)
            c = self.server_ctx.wrap_socket(c, server_side=True)
            self.relayed += 1
            self._relay(c, u)
        except Exception as e:  # reported through `errors`
            self.errors.append(e)
        finally:
            for s in (c, u):
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass

    @staticmethod
    def _relay(a, b, timeout=30):
        """Moves decrypted bytes both ways from this one thread (an OpenSSL
        connection must not be read in one thread while another writes to
        it) until either side ends."""
        peer = {a: b, b: a}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = [s for s in (a, b) if s.pending()]
            if not ready:
                ready, _, _ = select.select([a, b], [], [], 0.5)
            for s in ready:
                s.setblocking(False)
                try:
                    data = s.recv(65536)
                except ssl.SSLWantReadError:  # a record that held no data
                    continue
                except OSError:
                    return
                if not data:
                    return
                peer[s].settimeout(20)
                peer[s].sendall(data)

    def close(self):
        try:
            self._listener.close()
        except OSError:
            pass


# --- logs -------------------------------------------------------------------------------

FINGERPRINT_RE = re.compile(r"SHA-256 fingerprint\D*?((?:[0-9A-F]{2}:){31}[0-9A-F]{2})(?![0-9A-Fa-f:])")


def logged_fingerprint(line):
    m = FINGERPRINT_RE.search(line)
    return m.group(1) if m else None


# --- client connections ------------------------------------------------------------------

def pymysql_tls(host, port, user, password, ctx, database=None, **kw):
    """PyMySQL that must use TLS, with `ctx` (an SSLContext) deciding what
    it verifies."""
    import pymysql
    kw.setdefault("connect_timeout", 10)
    kw.setdefault("read_timeout", 60)
    kw.setdefault("write_timeout", 60)
    return pymysql.connect(host=host, port=port, user=user, password=password,
                           database=database, ssl=ctx, **kw)


def connector_tls(host, port, user, password, ca, verify_identity=True, **kw):
    """mysql-connector-python in pure Python, verifying against `ca`."""
    import mysql.connector
    kw.setdefault("connection_timeout", 10)
    return mysql.connector.connect(host=host, port=port, user=user, password=password,
                                   use_pure=True, ssl_ca=ca.cert,
                                   ssl_verify_identity=verify_identity, **kw)


def mariadb_connector():
    """The MariaDB Connector/Python module (2.x), its pure Python
    implementation."""
    os.environ.setdefault("MARIADB_PYTHON_CONNECTOR", "python")
    import mariadb
    assert mariadb.__impl__ == "python", mariadb.__impl__
    assert int(mariadb.__version__.split(".")[0]) >= 2, mariadb.__version__
    return mariadb


def mariadb_connect(host, port, user, password, **kw):
    """MariaDB Connector/Python with TLS (ssl=True) and `kw` (ssl_ca,
    ssl_verify_cert, ...)."""
    mariadb = mariadb_connector()
    kw.setdefault("connect_timeout", 10)
    return mariadb.connect(host=host, port=port, user=user, password=password, ssl=True, **kw)


def wait_closed(sock, timeout):
    """Reads until the peer closes (EOF or reset) or `timeout` passes;
    returns (closed, seconds, bytes received)."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    got = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False, time.monotonic() - t0, got
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return False, time.monotonic() - t0, got
        except (ConnectionResetError, BrokenPipeError):
            return True, time.monotonic() - t0, got
        if not data:
            return True, time.monotonic() - t0, got
        got += data
