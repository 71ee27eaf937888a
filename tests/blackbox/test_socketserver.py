#!/usr/bin/env python3
"""Black-box tests of the socketserver module, with Python 3 clients.

tests/scripts/ss_servers.lua builds a socketserver server by hand (a
program, as a Python one would be) for each class: TCPServer,
ThreadingTCPServer, UDPServer, ThreadingUDPServer, UnixStreamServer,
UnixDatagramServer. Python clients check the answers, handle_error (the
server logs the traceback and carries on), the synchronous server's one
request at a time against the threading server's concurrency, and
shutdown() called from inside a handler (serve_forever returns, the
program exits 0). Also the `moonsock SCRIPT` side: a datagram handler
table (tests/scripts/udp_echo.lua) and --listen unix:PATH.
"""

import os
import re
import select
import socket
import subprocess
import tempfile
import threading
import time

from util import (MOONSOCK, ROOT, Checks, capture, start_server, stop,
                  wait_for)

SS = "tests/scripts/ss_servers.lua"
check = Checks()


def start_program(*args):
    """moonsock ss_servers.lua ARGS; returns (proc, log(), address)."""
    err, log = capture()
    proc = subprocess.Popen([MOONSOCK, SS, *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=err)
    err.close()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        m = re.search(r"listening on (\S+)", log())
        if m:
            where = m.group(1)
            hm = re.match(r"127\.0\.0\.1:(\d+)$", where)
            addr = ("127.0.0.1", int(hm.group(1))) if hm else where
            return proc, log, addr
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    raise RuntimeError("ss_servers.lua did not start:\n" + log())


def finish_program(proc, what):
    try:
        status = proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        status = proc.wait()
        status = "killed"
    check(status == 0, "%s: shutdown() from a handler; exit 0 (%s)"
          % (what, status))


def stream_client(addr, family=socket.AF_INET):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(addr)
    return s, s.makefile("rb")


def close(s, f):
    # A makefile() object keeps the connection open after s.close().
    f.close()
    s.close()


def ask(s, f, line):
    s.sendall(line.encode() + b"\n")
    return f.readline().decode()


def test_stream(kind, family=socket.AF_INET):
    args = [kind]
    path = None
    if family == socket.AF_UNIX:
        path = tempfile.mktemp(prefix="msk-ss-", suffix=".sock")
        args.append(path)
    proc, log, addr = start_program(*args)
    try:
        s, f = stream_client(addr, family)
        check(ask(s, f, "hello") == "HELLO\n", "%s: answers" % kind)
        check(ask(s, f, "again") == "AGAIN\n", "%s: same connection" % kind)
        close(s, f)
        # handle_error: the raising request ends, the server carries on.
        s, f = stream_client(addr, family)
        s.sendall(b"raise\n")
        check(f.readline() == b"", "%s: a raising handler's client is "
              "closed" % kind)
        close(s, f)
        check(wait_for(lambda: "raised on request" in log()),
              "%s: handle_error got the error" % kind)
        check(re.search(r"ss_servers\.lua:\d+", log()) is not None and
              "stack traceback" in log(),
              "%s: with file:line and a traceback" % kind)
        s, f = stream_client(addr, family)
        check(ask(s, f, "after") == "AFTER\n", "%s: serves on" % kind)
        close(s, f)

        # One at a time (TCPServer) or at once (ThreadingTCPServer).
        a, af = stream_client(addr, family)
        b, bf = stream_client(addr, family)
        a.sendall(b"sleep\n")
        time.sleep(0.05)
        t0 = time.monotonic()
        b.sendall(b"quick\n")
        if kind == "threading-tcp":
            answer = bf.readline()
            took = time.monotonic() - t0
            check(answer == b"QUICK\n" and took < 0.25,
                  "%s: a second client is served at once (%.2f s)"
                  % (kind, took))
            check(af.readline() == b"slept\n", "%s: first client" % kind)
        else:
            # The synchronous server reaches b only after a's connection
            # ends, as Python's does.
            check(af.readline() == b"slept\n", "%s: first client" % kind)
            waiting = not select.select([b], [], [], 0.3)[0]
            check(waiting, "%s: one connection at a time, like Python"
                  % kind)
            close(a, af)
            check(bf.readline() == b"QUICK\n",
                  "%s: the next once the first is done" % kind)
        close(a, af)
        close(b, bf)

        s, f = stream_client(addr, family)
        check(ask(s, f, "shutdown") == "bye\n", "%s: shutdown answered"
              % kind)
        close(s, f)
        finish_program(proc, kind)
        check("serve_forever returned" in log(),
              "%s: serve_forever returned" % kind)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if path and os.path.exists(path):
            os.remove(path)


def test_datagram(kind, family=socket.AF_INET):
    args = [kind]
    path = client_path = None
    if family == socket.AF_UNIX:
        path = tempfile.mktemp(prefix="msk-ss-", suffix=".sock")
        client_path = tempfile.mktemp(prefix="msk-ssc-", suffix=".sock")
        args.append(path)
    proc, log, addr = start_program(*args)
    try:
        c = socket.socket(family, socket.SOCK_DGRAM)
        if client_path:
            c.bind(client_path)
        c.settimeout(10)

        def dgram(msg):
            c.sendto(msg, addr)
            return c.recvfrom(65536)[0]
        check(dgram(b"hello") == b"HELLO\n", "%s: answers" % kind)
        c.sendto(b"raise", addr)
        # finish() runs although handle() raised, and sends what wfile
        # holds: an empty datagram, as Python's does.
        check(c.recvfrom(65536)[0] == b"",
              "%s: finish still sends (an empty datagram)" % kind)
        check(wait_for(lambda: "raised on request" in log()),
              "%s: handle_error got the error" % kind)
        check(dgram(b"after") == b"AFTER\n", "%s: serves on" % kind)
        check(dgram(b"shutdown") == b"bye\n", "%s: shutdown answered"
              % kind)
        c.close()
        finish_program(proc, kind)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in (path, client_path):
            if p and os.path.exists(p):
                os.remove(p)


def test_served_udp_table():
    proc, port = start_server("tests/scripts/udp_echo.lua")
    try:
        check("(udp)" in proc.log(), "served UDP: the log says udp")
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.settimeout(10)
        results = []

        def one(i):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(10)
            s.sendto(b"n%d" % i, ("127.0.0.1", port))
            results.append(s.recvfrom(100)[0] == b"udp:n%d" % i)
            s.close()
        ths = [threading.Thread(target=one, args=(i,)) for i in range(50)]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        check(len(results) == 50 and all(results),
              "served UDP: 50 clients each get their datagram back")
        c.close()
    finally:
        check(stop(proc) == 0, "served UDP: exit 0 on SIGTERM")


def test_served_unix():
    path = tempfile.mktemp(prefix="msk-echo-", suffix=".sock")
    err, _ = capture()
    proc = subprocess.Popen([MOONSOCK, "--listen", "unix:" + path,
                             "scripts/echo.lua"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=err)
    err.close()
    try:
        check(wait_for(lambda: os.path.exists(path), 10),
              "unix: socket file created")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(path)
        s.sendall(b"over unix")
        check(s.recv(100) == b"over unix", "unix: echoed")
        s.close()
    finally:
        check(stop(proc) == 0, "unix: exit 0")
        check(not os.path.exists(path), "unix: socket file removed")


test_stream("tcp")
test_stream("threading-tcp")
test_stream("unix-stream", socket.AF_UNIX)
test_datagram("udp")
test_datagram("threading-udp")
test_datagram("unix-dgram", socket.AF_UNIX)
test_served_udp_table()
test_served_unix()
check.finish()
