#!/usr/bin/env python3
"""Helpers for bench/run.sh (standard library only).

  helper.py idle     --port P --user U --password PW --db DB --count N --pid PID
      Opens N logged-in connections (plain MySQL protocol, no TLS), pings each
      once, and prints the VmRSS of process PID before and after, in KiB:
      "rss_before_kib rss_after_kib".
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


def login(host, port, user, password, db):
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
    time.sleep(0.5)
    before = vmrss_kib(a.pid)
    socks = []
    t0 = time.monotonic()
    try:
        for i in range(a.count):
            try:
                socks.append(login(a.host, a.port, a.user, a.password, a.db))
            except (OSError, ConnectionError) as e:
                sys.exit("idle: connection %d of %d failed: %s" % (i + 1, a.count, e))
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
    out.append(("stripped static binary (musl)",
                ("%s bytes (%.0f KiB)" % ("{:,}".format(int(size)), size / 1024)) if size else
                "not measured: " + meta.get("static_note", "build failed"),
                "≤ 1 MiB", None if size is None else size <= 1024 * 1024))
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
    return "–" if m is None else ("met" if m else "NOT met")


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
    for key, label, unit in INFO_METRICS:
        if (key, "myroute") in data:
            lines.append("%s: HAProxy %s %s, myroute %s %s" % (
                label, fmt(median(data.get((key, "haproxy"), [])), unit), unit,
                fmt(median(data[(key, "myroute")]), unit), unit))
    if "others_cpu" in meta:
        lines.append("other processes on the machine: " + meta["others_cpu"])
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
    return "\n".join(L)


def svg_escape(s):
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def render_svg(rows, meta):
    colors = {"direct": "#9aa5b1", "haproxy": "#4e79a7", "myroute": "#e15759"}
    cols = 5
    pw, ph = 250, 226
    top = 100
    n = len(rows)
    nrows = (n + cols - 1) // cols
    width = cols * pw + 20
    height = top + nrows * ph + 40
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
    out.append("</svg>")
    return "\n".join(out) + "\n"


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
            f.write(render_svg(rows, meta))


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
    {"idle": cmd_idle, "startup": cmd_startup, "sysbench": cmd_sysbench,
     "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    main()
