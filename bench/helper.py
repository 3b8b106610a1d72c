#!/usr/bin/env python3
"""Helpers for bench/run.sh (standard library only).

  helper.py idle     --port P --user U --password PW --db DB --count N --pid PID
                     [--tls [--ca CA.pem]]
      Opens N logged-in connections (plain MySQL protocol; with --tls each one
      sends an SSLRequest and completes a TLS handshake first, verifying the
      server's chain against --ca), pings each once, and prints the VmRSS of
      process PID before and after, in KiB: "rss_before_kib rss_after_kib".
  helper.py metrics  --port P
      Reads myroute's GET /metrics and prints its client logins by transport:
      "tls plain".
  helper.py tlsspy   --listen P --to Q --log FILE
      A TCP relay from port P to port Q for MySQL connections that switch to
      TLS: it reads the TLS ClientHello and ServerHello as they pass and
      appends one line per connection to FILE: "offered accepted", where
      offered is 1 if the ClientHello offers a session to resume (TLS 1.3
      pre_shared_key, or a TLS 1.2 session id or ticket) and accepted is 1 if
      the ServerHello resumes it. Runs until killed.
  helper.py startup  --port P --runs N -- CMD...
      Starts CMD N times and prints the milliseconds from spawn until the port
      accepts a TCP connection, one sample per line.
  helper.py sysbench FILE
      Parses a sysbench report: "qps p95_ms events total_time_s queries".
  helper.py report   --samples TSV --meta FILE --md OUT.md --svg OUT.svg
      Medians, ratios and targets: prints the table, writes Markdown and SVG
      (--method FILE: Markdown describing the method, copied into the report).
"""

import argparse
import hashlib
import os
import re
import socket
import ssl
import statistics
import struct
import sys
import time

# --------------------------------------------------------------------------
# A minimal MySQL client: login with mysql_native_password, COM_PING.

CLIENT_LONG_PASSWORD = 0x1
CLIENT_LONG_FLAG = 0x4
CLIENT_CONNECT_WITH_DB = 0x8
CLIENT_PROTOCOL_41 = 0x200
CLIENT_SSL = 0x800
CLIENT_TRANSACTIONS = 0x2000
CLIENT_SECURE_CONNECTION = 0x8000
CLIENT_PLUGIN_AUTH = 0x80000


def read_packet(sock):
    header = recv_exact(sock, 4)
    length = header[0] | header[1] << 8 | header[2] << 16
    return header[3], recv_exact(sock, length)


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by peer")
        buf += chunk
    return bytes(buf)


def write_packet(sock, seq, payload):
    sock.sendall(struct.pack("<I", len(payload))[:3] + bytes([seq & 0xFF]) + payload)


def native_token(password, salt):
    if not password:
        return b""
    stage1 = hashlib.sha1(password.encode()).digest()
    stage2 = hashlib.sha1(stage1).digest()
    mix = hashlib.sha1(salt + stage2).digest()
    return bytes(a ^ b for a, b in zip(stage1, mix))


def err_text(payload):
    code = struct.unpack_from("<H", payload, 1)[0]
    msg = payload[3:]
    if msg[:1] == b"#":
        msg = msg[6:]
    return "ERROR %d: %s" % (code, msg.decode(errors="replace"))


def login(host, port, user, password, db, tls=None):
    """tls: an ssl.SSLContext to switch to TLS with (SSLRequest), or None."""
    sock = socket.create_connection((host, port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    seq, greet = read_packet(sock)
    if greet[0] == 0xFF:
        raise ConnectionError(err_text(greet))
    pos = greet.index(b"\0", 1) + 1          # protocol version, server version
    pos += 4                                 # connection id
    salt = greet[pos:pos + 8]
    pos += 9                                 # salt part 1 + filler
    caps = struct.unpack_from("<H", greet, pos)[0]
    pos += 2
    if len(greet) > pos:
        pos += 3                             # charset, status
        caps |= struct.unpack_from("<H", greet, pos)[0] << 16
        pos += 2
        salt_len = greet[pos]
        pos += 11                            # length + reserved
        part2 = max(13, salt_len - 8)
        salt += greet[pos:pos + part2].rstrip(b"\0")
    want = (CLIENT_LONG_PASSWORD | CLIENT_LONG_FLAG | CLIENT_CONNECT_WITH_DB |
            CLIENT_PROTOCOL_41 | CLIENT_TRANSACTIONS | CLIENT_SECURE_CONNECTION |
            CLIENT_PLUGIN_AUTH)
    flags = want & caps
    if tls is not None:
        if not caps & CLIENT_SSL:
            raise ConnectionError("server does not offer TLS")
        flags |= CLIENT_SSL
        seq += 1
        write_packet(sock, seq, struct.pack("<IIB23x", flags, 1 << 24, 45))
        sock = tls.wrap_socket(sock, server_hostname=host)
    token = native_token(password, salt[:20])
    resp = struct.pack("<IIB23x", flags, 1 << 24, 45)
    resp += user.encode() + b"\0" + bytes([len(token)]) + token
    resp += db.encode() + b"\0" + b"mysql_native_password\0"
    write_packet(sock, seq + 1, resp)
    while True:
        seq, pkt = read_packet(sock)
        if pkt[0] == 0x00:
            return sock
        if pkt[0] == 0xFF:
            raise ConnectionError(err_text(pkt))
        if pkt[0] == 0xFE:                   # AuthSwitchRequest
            end = pkt.index(b"\0", 1)
            plugin = pkt[1:end].decode()
            if plugin != "mysql_native_password":
                raise ConnectionError("server asks for auth plugin %s" % plugin)
            new_salt = pkt[end + 1:].rstrip(b"\0")
            write_packet(sock, seq + 1, native_token(password, new_salt[:20]))
            continue
        raise ConnectionError("unexpected packet 0x%02x during login" % pkt[0])


def ping(sock):
    write_packet(sock, 0, b"\x0e")
    _, pkt = read_packet(sock)
    if pkt[0] != 0x00:
        raise ConnectionError("COM_PING: " + (err_text(pkt) if pkt[0] == 0xFF else "bad reply"))


def vmrss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for pid %d" % pid)


def cmd_idle(a):
    ctx = None
    if a.tls:
        ctx = ssl.create_default_context(cafile=a.ca) if a.ca else ssl._create_unverified_context()
    time.sleep(0.5)
    before = vmrss_kib(a.pid)
    socks = []
    t0 = time.monotonic()
    try:
        for i in range(a.count):
            try:
                socks.append(login(a.host, a.port, a.user, a.password, a.db, ctx))
            except (OSError, ConnectionError) as e:
                sys.exit("idle: connection %d of %d failed: %s" % (i + 1, a.count, e))
        if a.tls:
            versions = {s.version() for s in socks}
            if None in versions:
                sys.exit("idle: a connection is not TLS")
            print("idle: TLS %s, %s" % (", ".join(sorted(versions)), socks[0].cipher()[0]),
                  file=sys.stderr)
        for s in socks:
            ping(s)
        time.sleep(1.0)
        after = vmrss_kib(a.pid)
        # All still alive after the measurement?
        for s in socks:
            ping(s)
        print("idle: %d connections in %.1f s" % (a.count, time.monotonic() - t0),
              file=sys.stderr)
        print(before, after)
    finally:
        for s in socks:
            try:
                write_packet(s, 0, b"\x01")   # COM_QUIT
                s.close()
            except OSError:
                pass


def tls_hello(buf):
    """(is_client_hello, session_id, extensions {type: data}) of the handshake
    record at the start of buf, or None if buf does not hold it yet."""
    if len(buf) < 5 or buf[0] != 0x16:
        raise ValueError("not a TLS handshake record")
    n = struct.unpack_from(">H", buf, 3)[0]
    if len(buf) < 5 + n:
        return None
    b = buf[5:5 + n]
    kind = b[0]
    pos = 4 + 2 + 32
    sid = b[pos + 1:pos + 1 + b[pos]]
    pos += 1 + b[pos]
    if kind == 1:                                  # ClientHello
        pos += 2 + struct.unpack_from(">H", b, pos)[0]
        pos += 1 + b[pos]
    else:                                          # ServerHello
        pos += 3
    ext = {}
    if pos + 2 <= len(b):
        end = pos + 2 + struct.unpack_from(">H", b, pos)[0]
        pos += 2
        while pos + 4 <= end:
            t, ln = struct.unpack_from(">HH", b, pos)
            ext[t] = b[pos + 4:pos + 4 + ln]
            pos += 4 + ln
    return kind == 1, sid, ext


PRE_SHARED_KEY = 41
SESSION_TICKET = 35


def cmd_tlsspy(a):
    import threading
    lock = threading.Lock()

    def pump(src, dst, watch):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if watch is not None:
                    watch(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve(client):
        try:
            server = socket.create_connection(("127.0.0.1", a.to), timeout=30)
        except OSError:
            client.close()
            return
        for s in (client, server):
            s.settimeout(None)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        st = {"c": bytearray(), "s": bytearray(), "ch": None, "sh": None, "done": False}

        def finish():
            if st["done"] or st["ch"] is None or st["sh"] is None:
                return
            st["done"] = True
            _, csid, cext = st["ch"]
            _, ssid, sext = st["sh"]
            offered = PRE_SHARED_KEY in cext or bool(cext.get(SESSION_TICKET)) or (
                bool(csid) and 43 not in cext)
            if 43 in sext:                         # TLS 1.3: supported_versions
                accepted = PRE_SHARED_KEY in sext
            else:
                accepted = bool(csid) and csid == ssid
            with lock, open(a.log, "a") as f:
                f.write("%d %d\n" % (offered, accepted))

        def watch_c(data):
            # Client: SSLRequest (4 + 32 bytes), then the ClientHello record.
            if st["ch"] is not None or st["done"]:
                return
            st["c"] += data
            if len(st["c"]) > 36:
                try:
                    st["ch"] = tls_hello(bytes(st["c"][36:]))
                except (ValueError, IndexError, struct.error):
                    st["done"] = True
                finish()

        def watch_s(data):
            # Server: the greeting packet, then the ServerHello record.
            if st["sh"] is not None or st["done"]:
                return
            st["s"] += data
            buf = st["s"]
            if len(buf) < 4:
                return
            skip = 4 + (buf[0] | buf[1] << 8 | buf[2] << 16)
            if len(buf) > skip:
                try:
                    st["sh"] = tls_hello(bytes(buf[skip:]))
                except (ValueError, IndexError, struct.error):
                    st["done"] = True
                finish()

        threading.Thread(target=pump, args=(client, server, watch_c), daemon=True).start()
        threading.Thread(target=pump, args=(server, client, watch_s), daemon=True).start()

    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", a.listen))
    ls.listen(128)
    open(a.log, "a").close()
    while True:
        c, _ = ls.accept()
        serve(c)


def cmd_metrics(a):
    import urllib.request
    with urllib.request.urlopen("http://%s:%d/metrics" % (a.host, a.port), timeout=10) as r:
        text = r.read().decode()
    got = {}
    for m in re.finditer(r'^myroute_client_logins_total\{transport="(\w+)"\}\s+(\d+)', text, re.M):
        got[m.group(1)] = int(m.group(2))
    if "tls" not in got or "plain" not in got:
        sys.exit("metrics: no myroute_client_logins_total by transport on port %d" % a.port)
    print(got["tls"], got["plain"])


# --------------------------------------------------------------------------

def cmd_startup(a):
    env = dict(os.environ)
    devnull = os.open(os.devnull, os.O_RDWR)
    samples = []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        pid = os.posix_spawn(a.command[0], a.command, env,
                             file_actions=[(os.POSIX_SPAWN_DUP2, devnull, 1),
                                           (os.POSIX_SPAWN_DUP2, devnull, 2)])
        deadline = t0 + a.timeout
        ok = False
        while time.perf_counter() < deadline:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.connect((a.host, a.port))
                ok = True
            except OSError:
                pass
            finally:
                s.close()
            if ok:
                break
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                sys.exit("startup: %s exited with status %d before listening"
                         % (a.command[0], status))
            # Yield the CPU between attempts: a busy loop would compete with
            # the starting process for a core and measure the scheduler.
            time.sleep(0.0002)
        t1 = time.perf_counter()
        os.kill(pid, 15)
        os.waitpid(pid, 0)
        if not ok:
            sys.exit("startup: port %d not accepting after %.1f s" % (a.port, a.timeout))
        samples.append((t1 - t0) * 1000.0)
        time.sleep(0.05)
    for s in samples:
        print("%.3f" % s)


# --------------------------------------------------------------------------

def parse_sysbench(text):
    def grab(pattern):
        m = re.search(pattern, text)
        return float(m.group(1)) if m else float("nan")
    qps = grab(r"queries:\s+\d+\s+\(([\d.]+) per sec")
    p95 = grab(r"95th percentile:\s+([\d.]+)")
    events = grab(r"total number of events:\s+(\d+)")
    total = grab(r"total time:\s+([\d.]+)s")
    queries = grab(r"queries:\s+(\d+)\s+\(")
    return qps, p95, events, total, queries


def cmd_sysbench(a):
    with open(a.file) as f:
        text = f.read()
    qps, p95, events, total, queries = parse_sysbench(text)
    if not events or events != events or not total or total != total:
        sys.exit("cannot parse sysbench report %s" % a.file)
    print("%.6f %.6f %d %.6f %d" % (qps, p95, events, total, queries))


# --------------------------------------------------------------------------
# Report

ENDPOINTS = ("direct", "haproxy", "myroute")

# key, label, chart title, unit, higher_is_better, target(kind, factor)
#   kind "ge": myroute >= factor * haproxy; "le": myroute <= factor * haproxy
METRICS = [
    ("ps4_qps", "point_select, 4 threads", "point_select 4 thr: QPS", "QPS", True, ("ge", 1.05)),
    ("ps4_p95", "point_select, 4 threads: p95 latency", "point_select 4 thr: p95", "ms", False,
     ("le", 1.0)),
    ("ps32_qps", "point_select, 32 threads", "point_select 32 thr: QPS", "QPS", True,
     ("ge", 1.05)),
    ("ps32_p95", "point_select, 32 threads: p95 latency", "point_select 32 thr: p95", "ms", False,
     ("le", 1.0)),
    ("ro8_qps", "read_only, 8 threads", "read_only 8 thr: QPS", "QPS", True, ("ge", 1.05)),
    ("churn_cps", "connection churn, 4 loops", "churn 4 loops: conn/s", "conn/s", True,
     ("ge", 0.90)),
    ("bulk_mbps", "bulk 200 MB result, 1 client", "bulk 200 MB: MB/s", "MB/s", True,
     ("ge", 1.05)),
    ("idle_kib", "idle connections: proxy RSS per connection", "idle: RSS per connection",
     "KiB", False, ("le", 1.0)),
    ("ps4_cpu", "proxy CPU per 100k point selects (4 threads)", "CPU per 100k queries, 4 thr",
     "CPU s", False, ("le", 1.0)),
    ("ps32_cpu", "proxy CPU per 100k point selects (32 threads)", "CPU per 100k queries, 32 thr",
     "CPU s", False, ("le", 1.0)),
]


# Not targets: shown under "Diagnostics" in results.md only.
INFO_METRICS = [
    ("ps4_rqwait", "point_select, 4 threads: proxy run-queue wait per query", "µs"),
    ("ps32_rqwait", "point_select, 32 threads: proxy run-queue wait per query", "µs"),
]


# TLS endpoints, run in the same rounds as the plaintext ones.
TLS_ENDPOINTS = ("direct-tls", "myroute-tls", "myroute-tls2")
TLS_COLUMNS = ("direct", "direct-tls", "myroute", "myroute-tls", "myroute-tls2")
TLS_NAMES = {"direct": "direct", "direct-tls": "direct TLS", "myroute": "myroute",
             "myroute-tls": "myroute TLS client leg", "myroute-tls2": "myroute TLS both legs"}
TLS_SHORT = {"direct": ("direct", ""), "direct-tls": ("direct", "TLS"),
             "myroute": ("myroute", ""), "myroute-tls": ("myroute", "TLS client"),
             "myroute-tls2": ("myroute", "TLS both")}
# key, label, chart title, unit, higher_is_better
TLS_METRICS = [
    ("ps4_qps", "point_select, 4 threads", "TLS: point_select 4 thr", "QPS", True),
    ("ps4_p95", "point_select, 4 threads: p95 latency", "TLS: point_select p95", "ms", False),
    ("ps4_cpu", "proxy CPU per 100k point selects (4 threads)", "TLS: CPU per 100k queries",
     "CPU s", False),
    ("churn_cps", "connection churn, 4 loops", "TLS: churn conn/s", "conn/s", True),
    ("bulk_mbps", "bulk 200 MB result, 1 client", "TLS: bulk 200 MB", "MB/s", True),
    ("idle_kib", "idle connections: proxy RSS per connection", "TLS: idle RSS per conn",
     "KiB", False),
]
# Targets: label, key, endpoint, baseline endpoint, kind ("ge"/"le"), factor.
TLS_TARGETS = [
    ("point_select 4 threads QPS, myroute TLS client leg / myroute plaintext", "ps4_qps",
     "myroute-tls", "myroute", "ge", 0.85),
    ("point_select 4 threads QPS, myroute TLS both legs / myroute plaintext", "ps4_qps",
     "myroute-tls2", "myroute", "ge", 0.85),
    ("bulk MB/s, myroute TLS both legs / myroute plaintext", "bulk_mbps", "myroute-tls2",
     "myroute", "ge", 0.5),
    ("proxy CPU per query (point_select 4 threads), TLS client leg / plaintext", "ps4_cpu",
     "myroute-tls", "myroute", "le", 2.0),
    ("proxy CPU per query (point_select 4 threads), TLS both legs / plaintext", "ps4_cpu",
     "myroute-tls2", "myroute", "le", 2.0),
]
# For information: label, key, endpoint, baseline endpoint.
TLS_INFO = [
    ("point_select 4 threads QPS, direct TLS / direct plaintext", "ps4_qps", "direct-tls",
     "direct"),
    ("churn conn/s, direct TLS / direct plaintext", "churn_cps", "direct-tls", "direct"),
    ("bulk MB/s, direct TLS / direct plaintext", "bulk_mbps", "direct-tls", "direct"),
    ("point_select 4 threads QPS, myroute TLS client leg / direct TLS", "ps4_qps",
     "myroute-tls", "direct-tls"),
    ("point_select 4 threads QPS, myroute TLS both legs / direct TLS", "ps4_qps",
     "myroute-tls2", "direct-tls"),
    ("churn conn/s, myroute TLS client leg / direct TLS", "churn_cps", "myroute-tls",
     "direct-tls"),
    ("churn conn/s, myroute TLS both legs / direct TLS", "churn_cps", "myroute-tls2",
     "direct-tls"),
    ("bulk MB/s, myroute TLS client leg / direct TLS", "bulk_mbps", "myroute-tls",
     "direct-tls"),
    ("bulk MB/s, myroute TLS both legs / direct TLS", "bulk_mbps", "myroute-tls2",
     "direct-tls"),
    ("churn conn/s, myroute TLS client leg / myroute plaintext", "churn_cps", "myroute-tls",
     "myroute"),
    ("churn conn/s, myroute TLS both legs / myroute plaintext", "churn_cps", "myroute-tls2",
     "myroute"),
    ("churn conn/s, myroute TLS both legs / TLS client leg", "churn_cps", "myroute-tls2",
     "myroute-tls"),
    ("bulk MB/s, myroute TLS client leg / myroute plaintext", "bulk_mbps", "myroute-tls",
     "myroute"),
    ("bulk MB/s, myroute TLS both legs / HAProxy plaintext", "bulk_mbps", "myroute-tls2",
     "haproxy"),
]
TLS_IDLE_TARGET_KIB = 48.0


def fmt(v, unit=None):
    if v is None or v != v:
        return "–"
    if unit in ("ms", "CPU s", "µs"):
        return "%.3f" % v if v < 10 else "%.1f" % v
    if unit == "KiB":
        return "%.1f" % v
    if abs(v) >= 100:
        return "{:,.0f}".format(v)
    return "%.2f" % v


def load_samples(path):
    data = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            rnd, metric, endpoint, value = line.split("\t")
            data.setdefault((metric, endpoint), []).append(float(value))
            data.setdefault(("by-round", metric, endpoint), {})[rnd] = float(value)
    return data


def paired_ratios(data, key):
    """myroute/HAProxy per round (the two runs of a round are neighbours in time)."""
    hap = data.get(("by-round", key, "haproxy"), {})
    my = data.get(("by-round", key, "myroute"), {})
    return [my[r] / hap[r] for r in sorted(hap, key=int) if r in my and hap[r]]


def paired(data, key, a, b):
    """a/b per round."""
    xa = data.get(("by-round", key, a), {})
    xb = data.get(("by-round", key, b), {})
    return [xa[r] / xb[r] for r in sorted(xb, key=int) if r in xa and xb[r]]


def tls_ratio(data, key, a, b):
    ma, mb = median(data.get((key, a), [])), median(data.get((key, b), []))
    return (ma / mb if ma is not None and mb else None), ma, mb


def tls_data(data, meta):
    """The samples of the rounds that include the TLS endpoints only, so that
    every TLS figure and ratio compares runs of the same rounds."""
    try:
        n = int(meta.get("tls_rounds") or meta.get("rounds"))
    except (TypeError, ValueError):
        return data
    out = {}
    for k, v in data.items():
        if k[0] == "by-round":
            kept = {r: x for r, x in v.items() if int(r) <= n}
            out[k] = kept
            if kept:
                out[(k[1], k[2])] = [kept[r] for r in sorted(kept, key=int)]
    return out


def tls_present(data):
    return any((k[0], e) in data for k in TLS_METRICS for e in TLS_ENDPOINTS)


def tls_target_rows(data, meta=None):
    out = []
    for label, key, a, b, kind, factor in TLS_TARGETS:
        r, ma, mb = tls_ratio(data, key, a, b)
        met = None if r is None else (r >= factor if kind == "ge" else r <= factor)
        want = ("≥ %.2f" if kind == "ge" else "≤ %.2f") % factor
        unit = next(m[3] for m in TLS_METRICS if m[0] == key)
        value = "%s / %s %s" % (fmt(ma, unit), fmt(mb, unit), unit)
        if r is None:
            stalled = [k for k, v in (meta or {}).items()
                       if k.startswith("stall_") and v.startswith("%s against %s," % (
                           key.split("_")[0], b))]
            value += (" (not measurable: every %s run against %s stalled, see Stalls)" % (
                key.split("_")[0], b) if stalled else " (not measurable: no sample)")
        out.append((label, value, ratio_text(r), pr_text(paired(data, key, a, b)), want, met))
    idle = median(data.get(("idle_kib", "myroute-tls"), []))
    plain = median(data.get(("idle_kib", "myroute"), []))
    out.append(("idle TLS client connections: myroute RSS per connection",
                "%s KiB (plaintext %s KiB)" % (fmt(idle, "KiB"), fmt(plain, "KiB")), "–", "–",
                "≤ %.0f KiB" % TLS_IDLE_TARGET_KIB,
                None if idle is None else idle <= TLS_IDLE_TARGET_KIB))
    return out


def tls_resumption(data):
    """Sums over the churn rounds of MariaDB's TLS counters, per TLS endpoint."""
    out = {}
    for e in TLS_ENDPOINTS:
        got = {}
        for k in ("ssl_accepts", "ssl_finished_accepts", "ssl_session_cache_hits",
                  "ssl_session_cache_misses"):
            xs = data.get(("churn_" + k, e))
            if xs is not None:
                got[k] = sum(xs)
        if got:
            out[e] = got
    return out


def tls_resumption_text(res, data=None):
    lines = []
    d = data or {}
    o = sum(d.get(("resume_offered", "myroute-tls2"), []))
    r = sum(d.get(("resume_reused", "myroute-tls2"), []))
    n = sum(d.get(("resume_total", "myroute-tls2"), []))
    if n:
        lines.append("myroute TLS both legs, seen on the wire (ClientHello / ServerHello): of %d "
                     "handshakes toward MariaDB, %d offered a session and **%d resumed one "
                     "(%.1f%%)**" % (n, o, r, 100.0 * r / n))
    for e, label in (("myroute-tls2", "myroute TLS both legs"), ("direct-tls", "direct TLS"),
                     ("myroute-tls", "myroute TLS client leg")):
        g = res.get(e)
        if not g:
            continue
        fin = g.get("ssl_finished_accepts", 0)
        hits = g.get("ssl_session_cache_hits", 0)
        share = ("%.1f%%" % (100.0 * hits / fin)) if fin else "–"
        lines.append("%s churn: MariaDB Ssl_accepts +%d, Ssl_finished_accepts +%d, "
                     "Ssl_session_cache_hits +%d, Ssl_session_cache_misses +%d; "
                     "hits / finished accepts %s" % (
                         label, g.get("ssl_accepts", 0), fin, hits,
                         g.get("ssl_session_cache_misses", 0), share))
    return lines


def load_meta(path):
    meta = {}
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if "=" in line:
                k, v = line.split("=", 1)
                meta[k] = v
    return meta


def median(xs):
    return statistics.median(xs) if xs else None


def build_rows(data):
    rows = []
    for key, label, short, unit, higher, target in METRICS:
        med = {e: median(data.get((key, e), [])) for e in ENDPOINTS}
        if med["myroute"] is None and med["haproxy"] is None:
            continue
        my, hap, dr = med["myroute"], med["haproxy"], med["direct"]
        r_h = my / hap if my is not None and hap else None
        r_d = my / dr if my is not None and dr else None
        kind, factor = target
        if r_h is None:
            met = None
        elif kind == "ge":
            met = my >= factor * hap
        else:
            met = my <= factor * hap
        want = ("≥ %.2f × HAProxy" % factor) if kind == "ge" else (
            "≤ HAProxy" if factor == 1.0 else "≤ %.2f × HAProxy" % factor)
        spread = {e: data.get((key, e), []) for e in ENDPOINTS}
        pr = paired_ratios(data, key)
        rows.append(dict(key=key, label=label, short=short, unit=unit, higher=higher, med=med,
                         r_h=r_h, r_d=r_d, want=want, met=met, spread=spread, pr=pr))
    return rows


def standalone_rows(meta):
    out = []

    def num(k):
        try:
            return float(meta[k])
        except (KeyError, ValueError):
            return None

    size = num("static_size_bytes")
    out.append(("stripped static binary (musl, with TLS: `make static`)",
                ("%s bytes (%.0f KiB)" % ("{:,}".format(int(size)), size / 1024)) if size else
                "not measured: " + meta.get("static_note", "build failed"),
                "≤ 2.5 MiB", None if size is None else size <= 2.5 * 1024 * 1024))
    msize = num("minimal_size_bytes")
    out.append(("stripped static binary without TLS (`make minimal`)",
                ("%s bytes (%.0f KiB)" % ("{:,}".format(int(msize)), msize / 1024)) if msize else
                "not measured: " + meta.get("minimal_note", "build failed"),
                "≤ 1 MiB", None if msize is None else msize <= 1024 * 1024))
    ct = num("crates_tls")
    out.append(("crates in the runtime tree, myroute included (default build, TLS)",
                "%d" % ct if ct is not None else "not measured", "≤ 30",
                None if ct is None else ct <= 30))
    cm = num("crates_minimal")
    if cm is not None:
        out.append(("crates in the runtime tree, `--no-default-features`", "%d" % cm,
                    "(info)", None))
    st = num("startup_ms")
    out.append(("start-up: exec to port accepting, release binary (median of %s)" % meta.get("startup_runs", "?"),
                ("%.2f ms" % st) if st is not None else "not measured",
                "< 10 ms", None if st is None else st < 10.0))
    st2 = num("startup_static_ms")
    if st2 is not None:
        out.append(("start-up, static musl binary (median of %s)" % meta.get("startup_runs", "?"),
                    "%.2f ms" % st2, "< 10 ms", st2 < 10.0))
    rss = num("rss_zero_kib")
    out.append(("RSS at zero connections, fresh process (release binary)",
                ("%d KiB (%.2f MiB)" % (rss, rss / 1024)) if rss is not None else "not measured",
                "< 4 MiB", None if rss is None else rss < 4096))
    rss3 = num("rss_zero_static_kib")
    if rss3 is not None:
        out.append(("RSS at zero connections, static musl binary",
                    "%d KiB (%.2f MiB)" % (rss3, rss3 / 1024), "< 4 MiB", rss3 < 4096))
    rss2 = num("rss_after_kib")
    if rss2 is not None:
        out.append(("RSS at zero connections, release binary, after all workloads",
                    "%d KiB (%.2f MiB)" % (rss2, rss2 / 1024), "(info)", None))
    return out


def pr_text(pr):
    if len(pr) < 2:
        return "–"
    return "%.2f–%.2f" % (min(pr), max(pr))


def met_text(m):
    return "not measured" if m is None else ("met" if m else "NOT met")


def ratio_text(r):
    return "–" if r is None else "%.3f" % r


def render_text(rows, sa, meta, data):
    lines = []
    hdr = ["workload", "unit", "direct", "haproxy", "myroute", "my/hap", "my/direct",
           "rounds my/hap", "target", "result"]
    table = [hdr]
    for r in rows:
        m = r["med"]
        table.append([r["label"], r["unit"], fmt(m["direct"], r["unit"]),
                      fmt(m["haproxy"], r["unit"]), fmt(m["myroute"], r["unit"]),
                      ratio_text(r["r_h"]), ratio_text(r["r_d"]), pr_text(r["pr"]), r["want"],
                      met_text(r["met"])])
    widths = [max(len(row[i]) for row in table) for i in range(len(hdr))]
    for i, row in enumerate(table):
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        cells += [c.rjust(w) for c, w in zip(row[2:8], widths[2:8])]
        cells += [row[8].ljust(widths[8]), row[9]]
        lines.append("  ".join(cells))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    w0 = max(len(x[0]) for x in sa)
    w1 = max(len(x[1]) for x in sa)
    for name, value, want, met in sa:
        lines.append("%s  %s  %-8s %s" % (name.ljust(w0), value.ljust(w1), want,
                                          "" if want == "(info)" else met_text(met)))
    lines.append("")
    lines.append("1 vs 2 myroute processes: " + meta.get("reuse_port", "not run"))
    if tls_present(data):
        data = tls_data(data, meta)
        lines.append("")
        lines.append("TLS (medians over the rounds with TLS):")
        for key, label, _, unit, _ in TLS_METRICS:
            lines.append("  %s (%s): %s" % (label, unit, ", ".join(
                "%s %s" % (TLS_NAMES[e], fmt(median(data.get((key, e), [])), unit))
                for e in TLS_COLUMNS if (key, e) in data)))
        for label, value, r, pr, want, met in tls_target_rows(data, meta):
            lines.append("  %s: %s = %s (rounds %s), target %s: %s" % (label, value, r, pr, want,
                                                                      met_text(met)))
        for label, key, a, b in TLS_INFO:
            r, _, _ = tls_ratio(data, key, a, b)
            lines.append("  %s: %s (rounds %s)" % (label, ratio_text(r),
                                                   pr_text(paired(data, key, a, b))))
        for t in tls_resumption_text(tls_resumption(data), data):
            lines.append("  " + t)
    for key, label, unit in INFO_METRICS:
        if (key, "myroute") in data:
            lines.append("%s: HAProxy %s %s, myroute %s %s" % (
                label, fmt(median(data.get((key, "haproxy"), [])), unit), unit,
                fmt(median(data[(key, "myroute")]), unit), unit))
    if "others_cpu" in meta:
        lines.append("other processes on the machine: " + meta["others_cpu"])
    for k in sorted((k for k in meta if k.startswith("stall_")), key=lambda k: int(k[6:])):
        lines.append("STALL: " + meta[k])
    return "\n".join(lines)


def render_md(rows, sa, meta, svg_name, method, data):
    L = []
    L.append("# myroute benchmark results")
    L.append("")
    L.append("Generated by `bench/run.sh` (`make bench`) on %s." % meta.get("date", "?"))
    L.append("")
    L.append("| | |")
    L.append("|---|---|")
    for k, label in [("machine", "machine"), ("kernel", "kernel"), ("mariadb", "MariaDB"),
                     ("sysbench", "sysbench"), ("haproxy", "HAProxy"),
                     ("haproxy_threads", "HAProxy threads"),
                     ("myroute", "myroute commit"), ("rounds", "rounds"),
                     ("time", "seconds per run"), ("load", "load average"),
                     ("others_cpu", "other processes' CPU")]:
        if k in meta:
            L.append("| %s | %s |" % (label, meta[k]))
    L.append("")
    L.append("Medians over %s rounds; every workload runs against the three endpoints "
             "in turn (direct, haproxy, myroute, direct, ...) in each round. Client, "
             "server and proxy share the machine's cores, so a proxy's CPU cost shows "
             "up as lost throughput." % meta.get("rounds", "?"))
    L.append("")
    stalls = sorted((k for k in meta if k.startswith("stall_")), key=lambda k: int(k[6:]))
    if stalls:
        L.append("**Stalls: %d sysbench run(s) made no progress and were stopped; their "
                 "samples are missing from the medians:**" % len(stalls))
        L.append("")
        for k in stalls:
            L.append("- " + meta[k])
        L.append("")
    L.append("![benchmark chart](%s)" % svg_name)
    L.append("")
    L.append("| workload | unit | direct | HAProxy | myroute | myroute / HAProxy | "
             "myroute / direct | myroute / HAProxy, range over rounds | target | |")
    L.append("|---|---|--:|--:|--:|--:|--:|--:|---|---|")
    for r in rows:
        m = r["med"]
        L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r["label"], r["unit"], fmt(m["direct"], r["unit"]), fmt(m["haproxy"], r["unit"]),
            fmt(m["myroute"], r["unit"]), ratio_text(r["r_h"]), ratio_text(r["r_d"]),
            pr_text(r["pr"]), r["want"], met_text(r["met"])))
    L.append("")
    L.append("Ratios are of the medians; targets are judged on them. The range is "
             "myroute / HAProxy within each round (the two runs are neighbours in time): "
             "where it straddles the target, this machine cannot tell the difference.")
    L.append("")
    L.append("| myroute alone | measured | target | |")
    L.append("|---|---|---|---|")
    for name, value, want, met in sa:
        L.append("| %s | %s | %s | %s |" % (name, value, want,
                                            "" if want == "(info)" else met_text(met)))
    L.append("")
    L.append("1 vs 2 myroute processes (`reuse_port`): %s" % meta.get("reuse_port", "not run"))
    L.append("")
    if tls_present(data):
        L.extend(render_tls_md(data, meta))
    info = [(label, unit, {e: data.get((key, e), []) for e in ENDPOINTS})
            for key, label, unit in INFO_METRICS if (key, "myroute") in data]
    if info:
        L.append("## Diagnostics")
        L.append("")
        L.append("Time the proxy's threads were runnable but waiting for a CPU "
                 "(`/proc/PID/task/*/schedstat`), per query, medians:")
        L.append("")
        L.append("| | HAProxy | myroute |")
        L.append("|---|--:|--:|")
        for label, unit, xs in info:
            L.append("| %s (%s) | %s | %s |" % (label, unit, fmt(median(xs["haproxy"]), unit),
                                              fmt(median(xs["myroute"]), unit)))
        L.append("")
    L.append("## How it is measured")
    L.append("")
    L.append(method.rstrip("\n"))
    L.append("")
    L.append("## All samples")
    L.append("")
    L.append("| workload | direct | HAProxy | myroute |")
    L.append("|---|---|---|---|")
    for r in rows:
        cells = []
        for e in ENDPOINTS:
            xs = r["spread"][e]
            cells.append(", ".join(fmt(x, r["unit"]) for x in xs) if xs else "–")
        L.append("| %s (%s) | %s |" % (r["label"], r["unit"], " | ".join(cells)))
    L.append("")
    if tls_present(data):
        L.append("| TLS workload (rounds with TLS) | %s |" % " | ".join(TLS_NAMES[e] for e in TLS_ENDPOINTS))
        L.append("|---|---|---|---|")
        for key, label, _, unit, _ in TLS_METRICS:
            cells = [", ".join(fmt(x, unit) for x in data.get((key, e), [])) or "–"
                     for e in TLS_ENDPOINTS]
            L.append("| %s (%s) | %s |" % (label, unit, " | ".join(cells)))
        L.append("")
    return "\n".join(L)


def render_tls_md(data, meta):
    data = tls_data(data, meta)
    L = ["## TLS", ""]
    L.append("The TLS endpoints run in the same rounds as the plaintext ones, right after "
             "them: direct TLS is MariaDB itself over TLS, *myroute TLS client leg* is myroute "
             "with `tls = required` and plaintext toward MariaDB, *myroute TLS both legs* "
             "adds `pool.main.tls = verify_ca`. Medians over %s rounds%s:" % (
                 meta.get("tls_rounds", meta.get("rounds", "?")),
                 "" if meta.get("tls_rounds", meta.get("rounds")) == meta.get("rounds") else
                 " (only the first %s of the %s rounds include the TLS endpoints, to keep the "
                 "run under 20 minutes; every figure in this section, plaintext ones included, "
                 "is from those %s rounds)" % (
                     meta.get("tls_rounds"), meta.get("rounds"), meta.get("tls_rounds"))))
    L.append("")
    L.append("| workload | unit | %s |" % " | ".join(TLS_NAMES[e] for e in TLS_COLUMNS))
    L.append("|---|---|%s" % ("--:|" * len(TLS_COLUMNS)))
    for key, label, _, unit, _ in TLS_METRICS:
        if not any((key, e) in data for e in TLS_ENDPOINTS):
            continue
        L.append("| %s | %s | %s |" % (label, unit, " | ".join(
            fmt(median(data.get((key, e), [])), unit) for e in TLS_COLUMNS)))
    L.append("")
    L.append("| target | medians | ratio | ratio, range over rounds | target | |")
    L.append("|---|--:|--:|--:|---|---|")
    for label, value, r, pr, want, met in tls_target_rows(data, meta):
        L.append("| %s | %s | %s | %s | %s | %s |" % (label, value, r, pr, want, met_text(met)))
    L.append("")
    L.append("For information (ratios of medians, range of the per-round ratios):")
    L.append("")
    L.append("| | ratio | range over rounds |")
    L.append("|---|--:|--:|")
    for label, key, a, b in TLS_INFO:
        r, _, _ = tls_ratio(data, key, a, b)
        L.append("| %s | %s | %s |" % (label, ratio_text(r), pr_text(paired(data, key, a, b))))
    L.append("")
    res = tls_resumption_text(tls_resumption(data), data)
    if res:
        L.append("Session resumption toward the server (sums over the rounds; the global "
                 "counters are MariaDB's `SHOW GLOBAL STATUS` read before and after every "
                 "timed churn run):")
        L.append("")
        for t in res:
            L.append("- " + t)
        L.append("")
        if meta.get("tls_resumption_note"):
            L.append(meta["tls_resumption_note"])
            L.append("")
    if meta.get("tls_note"):
        L.append(meta["tls_note"])
        L.append("")
    return L


def svg_escape(s):
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


TLS_SVG = ("ps4_qps", "ps4_cpu", "churn_cps", "bulk_mbps", "idle_kib")


def render_svg(rows, meta, data=None):
    colors = {"direct": "#9aa5b1", "haproxy": "#4e79a7", "myroute": "#e15759",
              "direct-tls": "#cfd6dd", "myroute-tls": "#f28e2b", "myroute-tls2": "#b07aa1"}
    cols = 5
    pw, ph = 250, 226
    top = 100
    n = len(rows)
    nrows = (n + cols - 1) // cols
    width = cols * pw + 20
    tls = data is not None and tls_present(data)
    tls_top = top + nrows * ph + 10
    height = top + nrows * ph + 40 + ((ph + 40) if tls else 0)
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif">' %
           (width, height, width, height),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="10" y="24" font-size="17" font-weight="bold">myroute vs HAProxy vs '
           'direct MariaDB (medians of %s rounds)</text>' % svg_escape(meta.get("rounds", "?")),
           '<text x="10" y="44" font-size="11" fill="#444">%s; %s; MariaDB %s, HAProxy %s, '
           'sysbench %s, myroute %s</text>' % tuple(svg_escape(meta.get(k, "?")) for k in
                                                    ("date", "machine", "mariadb", "haproxy",
                                                     "sysbench", "myroute"))]
    if "others_cpu" in meta:
        out.append('<text x="10" y="60" font-size="11" fill="#444">shared machine: other '
                   'processes used %s</text>' % svg_escape(meta["others_cpu"]))
    for i, e in enumerate(ENDPOINTS):
        out.append('<rect x="%d" y="70" width="12" height="12" fill="%s"/>' %
                   (14 + i * 95, colors[e]))
        out.append('<text x="%d" y="80" font-size="12">%s</text>' % (14 + i * 95 + 16, e))
    for idx, r in enumerate(rows):
        cx = 10 + (idx % cols) * pw
        cy = top + (idx // cols) * ph
        out.append('<text x="%d" y="%d" font-size="12" font-weight="bold">%s</text>' %
                   (cx + 4, cy + 14, svg_escape(r["short"])))
        sub = "%s, %s" % (r["unit"], "more is better" if r["higher"] else "less is better")
        if r["r_h"] is not None:
            sub += "; myroute/HAProxy %.2f" % r["r_h"]
        out.append('<text x="%d" y="%d" font-size="10" fill="#555">%s</text>' %
                   (cx + 4, cy + 28, svg_escape(sub)))
        vals = [(e, r["med"][e]) for e in ENDPOINTS if r["med"][e] is not None]
        vmax = max((v for _, v in vals), default=1.0) or 1.0
        base = cy + ph - 56
        area = ph - 101
        bw = 50
        gap = (pw - 20 - 3 * bw) / 4
        out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#888"/>' %
                   (cx + 4, base, cx + pw - 14, base))
        for j, e in enumerate(ENDPOINTS):
            x = cx + 4 + gap + j * (bw + gap)
            v = r["med"][e]
            if v is None:
                out.append('<text x="%.1f" y="%d" font-size="10" text-anchor="middle" '
                           'fill="#999">n/a</text>' % (x + bw / 2, base - 4))
            else:
                h = max(1.0, area * v / vmax)
                out.append('<rect x="%.1f" y="%.1f" width="%d" height="%.1f" fill="%s"/>' %
                           (x, base - h, bw, h, colors[e]))
                out.append('<text x="%.1f" y="%.1f" font-size="10" text-anchor="middle">%s</text>'
                           % (x + bw / 2, base - h - 3, svg_escape(fmt(v, r["unit"]))))
            out.append('<text x="%.1f" y="%d" font-size="10" text-anchor="middle" '
                       'fill="#333">%s</text>' % (x + bw / 2, base + 13, e))
        if r["met"] is not None:
            out.append('<text x="%d" y="%d" font-size="10" fill="%s">target %s: %s</text>' %
                       (cx + 4, base + 26, "#2a7a2a" if r["met"] else "#b00020",
                        svg_escape(r["want"]), "met" if r["met"] else "not met"))
        if len(r["pr"]) >= 2:
            out.append('<text x="%d" y="%d" font-size="10" fill="#555">myroute/HAProxy per round: '
                       '%s</text>' % (cx + 4, base + 39, svg_escape(pr_text(r["pr"]))))
    if tls:
        out.extend(render_tls_svg(data, colors, tls_top, pw, ph))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def render_tls_svg(data, colors, top, pw, ph):
    out = ['<text x="10" y="%d" font-size="15" font-weight="bold">TLS, same rounds: direct, '
           'direct over TLS, myroute plaintext, myroute with TLS on the client leg, on both '
           'legs</text>' % (top + 16)]
    top += 30
    targets = {}
    for label, key, a, b, kind, factor in TLS_TARGETS:
        r, _, _ = tls_ratio(data, key, a, b)
        if r is not None:
            targets.setdefault(key, []).append(
                ("%s %s/%s %.2f (%s %.2f)" % ("met" if (r >= factor if kind == "ge" else
                                                       r <= factor) else "NOT met",
                                             TLS_SHORT[a][1].split()[-1], "plain", r,
                                             "≥" if kind == "ge" else "≤", factor),
                 (r >= factor) if kind == "ge" else (r <= factor)))
    for idx, key in enumerate(TLS_SVG):
        m = next(x for x in TLS_METRICS if x[0] == key)
        _, label, short, unit, higher = m
        cx = 10 + idx * pw
        cy = top
        out.append('<text x="%d" y="%d" font-size="12" font-weight="bold">%s</text>' %
                   (cx + 4, cy + 14, svg_escape(short)))
        out.append('<text x="%d" y="%d" font-size="10" fill="#555">%s</text>' %
                   (cx + 4, cy + 28, svg_escape("%s, %s" % (unit, "more is better" if higher
                                                            else "less is better"))))
        eps = [e for e in TLS_COLUMNS if (key, e) in data]
        vals = {e: median(data[(key, e)]) for e in eps}
        vmax = max(vals.values(), default=1.0) or 1.0
        base = cy + ph - 56
        area = ph - 101
        bw = 36
        gap = (pw - 20 - len(TLS_COLUMNS) * bw) / (len(TLS_COLUMNS) + 1)
        out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#888"/>' %
                   (cx + 4, base, cx + pw - 14, base))
        for j, e in enumerate(TLS_COLUMNS):
            x = cx + 4 + gap + j * (bw + gap)
            if e in vals:
                v = vals[e]
                h = max(1.0, area * v / vmax)
                out.append('<rect x="%.1f" y="%.1f" width="%d" height="%.1f" fill="%s"/>' %
                           (x, base - h, bw, h, colors[e]))
                out.append('<text x="%.1f" y="%.1f" font-size="9" text-anchor="middle">%s</text>'
                           % (x + bw / 2, base - h - 3, svg_escape(fmt(v, unit))))
            else:
                out.append('<text x="%.1f" y="%d" font-size="9" text-anchor="middle" '
                           'fill="#999">n/a</text>' % (x + bw / 2, base - 4))
            l1, l2 = TLS_SHORT[e]
            out.append('<text x="%.1f" y="%d" font-size="9" text-anchor="middle" '
                       'fill="#333">%s</text>' % (x + bw / 2, base + 12, svg_escape(l1)))
            if l2:
                out.append('<text x="%.1f" y="%d" font-size="9" text-anchor="middle" '
                           'fill="#333">%s</text>' % (x + bw / 2, base + 22, svg_escape(l2)))
        lines = targets.get(key, [])
        if key == "idle_kib" and "myroute-tls" in vals:
            ok = vals["myroute-tls"] <= TLS_IDLE_TARGET_KIB
            lines = [("%s: TLS %.1f KiB (≤ %.0f)" % ("met" if ok else "NOT met",
                                                    vals["myroute-tls"], TLS_IDLE_TARGET_KIB), ok)]
        for k, (text, ok) in enumerate(lines):
            out.append('<text x="%d" y="%d" font-size="10" fill="%s">%s</text>' %
                       (cx + 4, base + 36 + 12 * k, "#2a7a2a" if ok else "#b00020",
                        svg_escape(text)))
    return out


def cmd_report(a):
    data = load_samples(a.samples)
    meta = load_meta(a.meta)
    rows = build_rows(data)
    sa = standalone_rows(meta)
    print(render_text(rows, sa, meta, data))
    if a.md:
        with open(a.md, "w") as f:
            method = open(a.method).read() if a.method else ""
            f.write(render_md(rows, sa, meta, os.path.basename(a.svg) if a.svg else "", method,
                              data))
    if a.svg:
        with open(a.svg, "w") as f:
            f.write(render_svg(rows, meta, tls_data(data, meta)))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("idle")
    i.add_argument("--host", default="127.0.0.1")
    i.add_argument("--port", type=int, required=True)
    i.add_argument("--user", required=True)
    i.add_argument("--password", default="")
    i.add_argument("--db", default="")
    i.add_argument("--count", type=int, required=True)
    i.add_argument("--pid", type=int, required=True)
    i.add_argument("--tls", action="store_true")
    i.add_argument("--ca")
    t = sub.add_parser("tlsspy")
    t.add_argument("--listen", type=int, required=True)
    t.add_argument("--to", type=int, required=True)
    t.add_argument("--log", required=True)
    m = sub.add_parser("metrics")
    m.add_argument("--host", default="127.0.0.1")
    m.add_argument("--port", type=int, required=True)
    s = sub.add_parser("startup")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--runs", type=int, default=20)
    s.add_argument("--timeout", type=float, default=5.0)
    s.add_argument("command", nargs="+")
    b = sub.add_parser("sysbench")
    b.add_argument("file")
    r = sub.add_parser("report")
    r.add_argument("--samples", required=True)
    r.add_argument("--meta", required=True)
    r.add_argument("--method")
    r.add_argument("--md")
    r.add_argument("--svg")
    a = p.parse_args()
    {"idle": cmd_idle, "metrics": cmd_metrics, "tlsspy": cmd_tlsspy, "startup": cmd_startup,
     "sysbench": cmd_sysbench, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    main()
