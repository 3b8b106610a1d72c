#!/usr/bin/env python3
"""make demo: three local MariaDB servers (a "primary" and two "replicas"),
myroute in front of them, and the mariadb client showing where each user
lands.  With --hold it keeps everything running until Ctrl-C."""

import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness.accounts import USERS  # noqa: E402
from harness.mariadb import Cluster  # noqa: E402
from harness.proxy import Proxy, main_settings  # noqa: E402


def mariadb(proxy, user, sql):
    cmd = ["mariadb", "-h", proxy.host, "-P", str(proxy.port), "-u", user,
           "--skip-ssl", "-N", "-B", "-e", sql]
    if USERS[user]:
        cmd.insert(1, "-p" + USERS[user])
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        raise SystemExit("mariadb failed: " + res.stderr.strip())
    return res.stdout.strip()


def main():
    hold = "--hold" in sys.argv
    work = tempfile.mkdtemp(prefix="myroute-demo-")
    cluster = Cluster(3).start()
    proxy = Proxy(work, "demo", main_settings(cluster))
    try:
        proxy.start()
        names = {cluster.primary.port: "primary"}
        for i, r in enumerate(cluster.replicas, 1):
            names[r.port] = "replica%d" % i
        print("MariaDB servers: " + ", ".join("%s on %d" % (n, p) for p, n in sorted(names.items())))
        print("myroute listening on %s (config %s)\n" % (proxy.address, proxy.config_path))
        for user in ["app_rw", "app_ro", "app_ro", "app_ro", "app_ro"]:
            port = int(mariadb(proxy, user, "SELECT @@port"))
            print("  mariadb -u %-6s -> SELECT @@port = %d  (%s)" % (user, port, names[port]))
        print("\nmyroute's access log:")
        for line in proxy.log_lines():
            if "conn=" in line and "end=" in line:
                print("  " + line.split(": ", 1)[-1])
        if hold:
            print("\nTry it:  mariadb -h %s -P %d -u app_ro -p'%s' --skip-ssl"
                  % (proxy.host, proxy.port, USERS["app_ro"]))
            print("Ctrl-C stops the proxy and the servers.")
            try:
                proxy.proc.wait()
            except KeyboardInterrupt:
                pass
    finally:
        proxy.stop()
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
