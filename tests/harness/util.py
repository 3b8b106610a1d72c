"""Small helpers shared by the harness: deadlines, free loopback ports and
processes."""

import errno
import os
import signal
import socket
import subprocess
import threading
import time

# Ports handed out by this process; never handed out twice.
_given_ports = set()
_port_lock = threading.Lock()
# Concurrent test runs start from different bases (by process id), so they
# rarely race for the same port.
_next_port = int(os.environ.get("MYROUTE_TEST_PORT_BASE") or 21000 + (os.getpid() % 50) * 200)
# Linux's ephemeral range starts at 32768: stay below it so that an outgoing
# connection cannot grab a port between our check and a server's bind.
_PORT_LIMIT = 32000


class Timeout(AssertionError):
    """Raised by wait_until when the deadline passes."""


def running(thing):
    """For fixtures, `yield from running(x)`: starts `x`, yields it, and
    stops it when the fixture ends."""
    thing.start()
    try:
        yield thing
    finally:
        thing.stop()


def wait_until(predicate, timeout, interval=0.02, what=None):
    """Calls predicate() until it returns a true value, which is returned.

    Fails with Timeout once `timeout` seconds have passed; `what` (a string or
    a callable returning one) describes the awaited condition in the error.
    Exceptions raised by predicate propagate.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            desc = what() if callable(what) else what
            raise Timeout("timed out after %.1fs waiting for %s" % (timeout, desc or predicate))
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


def port_is_free(port, host="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((host, port))
        return True
    except OSError as e:
        if e.errno in (errno.EADDRINUSE, errno.EACCES):
            return False
        raise
    finally:
        s.close()


def free_port():
    """A loopback TCP port below the ephemeral range that nothing listens on
    and that this process has not handed out before."""
    global _next_port
    with _port_lock:
        while _next_port < _PORT_LIMIT:
            port = _next_port
            _next_port += 1
            if port in _given_ports:
                continue
            if port_is_free(port):
                _given_ports.add(port)
                return port
        raise RuntimeError("no free loopback port below %d" % _PORT_LIMIT)


def closed_port():
    """A port on which nothing listens (connections to it are refused)."""
    return free_port()


def listening_ports():
    """Set of (ip, port) pairs in LISTEN state, read from /proc/net/tcp{,6}."""
    found = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                lines = f.readlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            local, state = fields[1], fields[3]
            if state != "0A":  # TCP_LISTEN
                continue
            addr, port = local.split(":")
            port = int(port, 16)
            if len(addr) == 8:
                ip = socket.inet_ntop(socket.AF_INET, bytes.fromhex(addr)[::-1])
            else:
                raw = bytes.fromhex(addr)
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                ip = socket.inet_ntop(socket.AF_INET6, raw)
            found.add((ip, port))
    return found


def is_listening(port, host="127.0.0.1"):
    ports = listening_ports()
    return any(p == port and ip in (host, "0.0.0.0", "::", "::ffff:" + host) for ip, p in ports)


def process_rss_kib(pid):
    """VmRSS of a process in KiB (from /proc/PID/status)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for pid %d" % pid)


def open_fds(pid):
    """Number of open descriptors of a process."""
    return len(os.listdir("/proc/%d/fd" % pid))


def stop_process(proc, timeout):
    """Stops a process started with start_new_session=True: SIGTERM to its
    process group, then SIGKILL if it has not exited within `timeout`
    seconds."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)
