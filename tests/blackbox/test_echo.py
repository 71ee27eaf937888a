#!/usr/bin/env python3
"""Black-box tests of the moonsock program serving scripts/echo.lua.

Python 3 clients against the real binary ($MOONSOCK) on 127.0.0.1, port 0:
1,000 concurrent connections all echoed exactly; clients that disconnect
mid-message (cleanly and with a reset); a handler that raises (traceback
in the log, other clients unaffected, the server keeps serving); SIGTERM
with clients connected (listener closed at once, exit 0 within the grace
period); the --max-connections busy line; bad command lines (a clear
message and exit 1); --help listing every option main.c accepts.
"""

import os
import random
import re
import selectors
import signal
import socket
import struct
import subprocess
import time

from util import (MOONSOCK, ROOT, Checks, echo, raise_nofile, start_server,
                  stop, wait_for)

ECHO = "scripts/echo.lua"
RAISING = "tests/scripts/raising_echo.lua"
check = Checks()


def show_log_if_failed(proc, failed_before):
    """After a failed check, print the server's log to help the reader."""
    if check.failed > failed_before:
        print("---- server log (last 40 lines) ----")
        print("\n".join(proc.log().splitlines()[-40:]))


def connect(port, timeout=10):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def echo_once(port, payload=b"ping\n"):
    with connect(port) as c:
        return echo(c, payload) == payload


def recv_exact(sock, n):
    got = b""
    while len(got) < n:
        d = sock.recv(n - len(got))
        if not d:
            break
        got += d
    return got


# ---- 1,000 concurrent connections ------------------------------------------

def test_thousand_concurrent():
    n = 1000
    raise_nofile(n + 200)
    proc, port = start_server(ECHO)
    failed = check.failed
    try:
        rng = random.Random(1)
        conns = []
        for i in range(n):
            s = connect(port)
            conns.append(s)
        check(len(conns) == n, "%d clients connected at once" % n)
        sel = selectors.DefaultSelector()
        state = {}
        for i, s in enumerate(conns):
            size = rng.randint(1, 16384)
            payload = (b"%06d:" % i) + bytes(rng.getrandbits(8)
                                             for _ in range(size))
            s.setblocking(False)
            state[s] = {"out": memoryview(payload), "want": payload,
                        "got": bytearray()}
            sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
        pending = n
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            for key, ev in sel.select(timeout=1):
                s, st = key.fileobj, state[key.fileobj]
                if ev & selectors.EVENT_WRITE and st["out"]:
                    k = s.send(st["out"])
                    st["out"] = st["out"][k:]
                    if not st["out"]:
                        sel.modify(s, selectors.EVENT_READ)
                if ev & selectors.EVENT_READ:
                    d = s.recv(65536)
                    if not d:
                        sel.unregister(s)
                        pending -= 1
                        continue
                    st["got"] += d
                    if len(st["got"]) >= len(st["want"]):
                        sel.unregister(s)
                        pending -= 1
        exact = sum(1 for st in state.values() if st["got"] == st["want"])
        check(exact == n, "all %d echoed exactly (%d did)" % (n, exact))
        # Everyone is still connected: one more round trip each is fine.
        for s in conns[:50]:
            s.setblocking(True)
            s.settimeout(10)
            s.sendall(b"again")
        ok = all(recv_exact(s, 5) == b"again" for s in conns[:50])
        check(ok, "connections stay open and keep echoing")
        for s in conns:
            s.close()
        check(echo_once(port), "server serves after 1,000 clients left")
        check("ERROR" not in proc.log(), "no error logged")
    finally:
        check(stop(proc) == 0, "exit 0 after SIGTERM")
        show_log_if_failed(proc, failed)


# ---- disconnects mid-message -----------------------------------------------

def test_disconnect_mid_message():
    proc, port = start_server(ECHO)
    failed = check.failed
    try:
        other = connect(port)
        other.sendall(b"before\n")
        check(recv_exact(other, 7) == b"before\n", "bystander connected")
        # Half a message, then a clean close.
        c = connect(port)
        c.sendall(b"x" * 100000)
        c.close()
        # Half a message, then a reset (SO_LINGER 0).
        r = connect(port)
        r.sendall(b"y" * 300000)
        r.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                     struct.pack("ii", 1, 0))
        r.close()
        # Stop reading while the server is still sending, then vanish.
        big = connect(port)
        big.sendall(b"z" * (4 << 20))
        big.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                       struct.pack("ii", 1, 0))
        big.close()
        time.sleep(0.3)
        other.sendall(b"after\n")
        check(recv_exact(other, 6) == b"after\n",
              "bystander unaffected by the disconnects")
        check(echo_once(port), "new clients are served")
        check(proc.poll() is None, "server still running")
        check("handler failed" not in proc.log(),
              "a vanished client is not a handler failure")
        other.close()
    finally:
        check(stop(proc) == 0, "exit 0")
        show_log_if_failed(proc, failed)


# ---- a handler that raises -------------------------------------------------

def test_handler_raises():
    proc, port = start_server(RAISING)
    failed = check.failed
    try:
        bystander = connect(port)
        bystander.sendall(b"hello\n")
        check(recv_exact(bystander, 6) == b"hello\n", "bystander echoed")
        bad = connect(port)
        bad.sendall(b"please raise\n")
        check(bad.recv(100) == b"", "the raising client's connection ends")
        bad.close()
        check(wait_for(lambda: "handler failed" in proc.log()),
              "the error is logged")
        log = proc.log()
        check("asked to raise by the client" in log, "with its message")
        check(re.search(r"raising_echo\.lua:\d+:", log) is not None,
              "with file:line")
        check("stack traceback" in log, "with a traceback")
        bystander.sendall(b"still here\n")
        check(recv_exact(bystander, 11) == b"still here\n",
              "other clients are unaffected")
        check(echo_once(port), "the server keeps serving new clients")
        for i in range(5):
            b = connect(port)
            b.sendall(b"raise %d\n" % i)
            b.recv(10)
            b.close()
        check(echo_once(port), "and after five more failures")
        bystander.close()
    finally:
        check(stop(proc) == 0, "exit 0")
        show_log_if_failed(proc, failed)


# ---- SIGTERM with clients connected -----------------------------------------

def test_sigterm_with_clients():
    proc, port = start_server(ECHO, "--grace", "1")
    failed = check.failed
    clients = [connect(port) for _ in range(5)]
    for c in clients:
        c.sendall(b"hi")
    check(all(recv_exact(c, 2) == b"hi" for c in clients),
          "five clients connected")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)

    def refused():
        try:
            connect(port, timeout=1).close()
            return False
        except OSError:
            return True
    check(wait_for(refused, 2), "listener closed promptly after SIGTERM")
    clients[0].sendall(b"during grace")
    check(recv_exact(clients[0], 12) == b"during grace",
          "live clients are still served during the grace period")
    try:
        status = proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        status = proc.wait()
    took = time.monotonic() - t0
    check(status == 0, "exit status 0 (got %s)" % status)
    check(0.9 <= took < 4, "exit after the 1 s grace period (%.2f s)" % took)
    check("grace period over" in proc.log(), "dropped clients are logged")
    show_log_if_failed(proc, failed)
    for c in clients:
        c.close()

    # Clients that leave during the grace period let it end early.
    proc, port = start_server(ECHO, "--grace", "20")
    clients = [connect(port) for _ in range(3)]
    for c in clients:
        c.sendall(b"x")
        recv_exact(c, 1)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    for c in clients:
        c.close()
    try:
        status = proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        status = proc.wait()
    took = time.monotonic() - t0
    check(status == 0 and took < 3,
          "exit 0 as soon as the clients leave (%.2f s)" % took)

    # SIGINT does the same.
    proc, port = start_server(ECHO)
    check(stop(proc, signal.SIGINT) == 0, "SIGINT: exit 0")


# ---- --max-connections ------------------------------------------------------

def test_max_connections():
    proc, port = start_server(ECHO, "--max-connections", "2")
    failed = check.failed
    try:
        a, b = connect(port), connect(port)
        for s in (a, b):
            s.sendall(b"in")
            recv_exact(s, 2)
        c = connect(port)
        line = c.makefile("rb").readline()
        check(line == b"ERROR server busy: too many connections\n",
              "third client gets the busy line (%r)" % line)
        check(c.recv(10) == b"", "and is closed")
        c.close()
        a.sendall(b"ok")
        check(recv_exact(a, 2) == b"ok", "the first two are still served")
        a.close()
        check(wait_for(lambda: echo_once(port), 5),
              "a slot freed is taken again")
        b.close()
    finally:
        check(stop(proc) == 0, "exit 0")
        show_log_if_failed(proc, failed)


# ---- the command line -------------------------------------------------------

def run(*args, timeout=20):
    return subprocess.run([MOONSOCK, *args], cwd=ROOT, capture_output=True,
                          timeout=timeout, text=True)


def test_bad_options():
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    taken = "127.0.0.1:%d" % busy.getsockname()[1]
    cases = [
        (["--max-connections", "abc", ECHO], "--max-connections"),
        (["--max-connections", "0", ECHO], "--max-connections"),
        (["--timeout", "-1", ECHO], "--timeout"),
        (["--grace", "soon", ECHO], "--grace"),
        (["--backlog", "1.5", ECHO], "--backlog"),
        (["--backend", "kqueue", ECHO], "--backend"),
        (["--log-level", "loud", ECHO], "--log-level"),
        (["--reload-poll", "0", ECHO], "--reload-poll"),
        (["--bogus", ECHO], "--bogus"),
        (["--listen"], "--listen"),
        ([], "Usage"),
        (["no/such/script.lua"], "no/such/script.lua"),
        (["--listen", "nonsense:addr", ECHO], "nonsense:addr"),
        (["--listen", taken, ECHO], "cannot listen on " + taken),
    ]
    for args, needle in cases:
        p = run(*args)
        first = p.stderr.strip().splitlines()[:1]
        ok = (p.returncode == 1 and needle in p.stderr and
              (needle == "Usage" or p.stderr.startswith("moonsock: ") or
               "moonsock: " in p.stderr))
        check(ok, "moonsock %s -> exit 1 naming %r (got %d: %s)"
              % (" ".join(args), needle, p.returncode,
                 first[0] if first else ""))
    busy.close()


def test_help_and_version():
    p = run("--help")
    check(p.returncode == 0, "--help exits 0")
    src = open(os.path.join(ROOT, "bindings", "main.c")).read()
    longopts = re.findall(r'\{"([a-z-]+)",\s*(?:no|required)_argument', src)
    check(len(longopts) >= 10, "found main.c's options (%d)" % len(longopts))
    missing = [o for o in longopts if "--" + o not in p.stdout]
    check(not missing, "--help lists every option (missing: %s)"
          % ", ".join(missing))
    p = run("--version")
    check(p.returncode == 0 and re.match(r"moonsock \d+\.\d+\.\d+",
                                         p.stdout) is not None,
          "--version prints the version (%r)" % p.stdout.strip())


test_thousand_concurrent()
test_disconnect_mid_message()
test_handler_raises()
test_sigterm_with_clients()
test_max_connections()
test_bad_options()
test_help_and_version()
check.finish()
