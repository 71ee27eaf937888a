"""Shared helpers for the hostile tests: the admin handler, /proc figures.

    from hostile import *          # start_server, stop, Checks, ...
    proc, port = start_admin("--max-memory", "64")
    stats(port)                    # {'tasks': 2, 'live': 2, 'mem': ...}
    cpu_seconds(proc.pid)          # user + system CPU time of the server

Built on tests/blackbox/util.py (start_server, stop, Checks). Every
process a test starts is stopped by PID; everything is on loopback.
"""

import os
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "blackbox"))

from util import (ROOT, MOONSOCK, Checks, start_server, stop,  # noqa
                  wait_for, raise_nofile)

ADMIN = "tests/hostile/admin.lua"
TICKS = os.sysconf("SC_CLK_TCK")


def start_admin(*args, **kw):
    return start_server(ADMIN, *args, **kw)


def connect(port, timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return s


def ask(port, line, timeout=10):
    """Send one command line on a new connection; return the reply line."""
    with connect(port, timeout) as s:
        s.sendall(line.encode() + b"\n")
        return readline(s)


def readline(s):
    buf = b""
    while not buf.endswith(b"\n"):
        d = s.recv(4096)
        if not d:
            break
        buf += d
    return buf.decode("utf-8", "replace").strip()


def stats(port):
    out = {}
    for kv in ask(port, "STATS").split():
        k, _, v = kv.partition("=")
        out[k] = int(v)
    return out


def cpu_seconds(pid):
    """utime + stime of pid, in seconds (/proc/PID/stat)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def sanitized():
    """True when the binary was built with ASan (everything is slower)."""
    try:
        with open(MOONSOCK, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


SLOW = 3.0 if sanitized() else 1.0
