#!/usr/bin/env python3
"""What the script server gives every TCP connection's handler.

An idle connection holds as little as it can (docs/performance.md): no
address table until the handler reads client_address, no frame of the
server's under handle. These checks pin down what a handler still sees:
client_address as Python gives it, the same value each time, and still
there after the client is gone; self.server; TCP_NODELAY on by default
and off with tcp_nodelay = false; a handle error with its traceback and
finish run; a setup error with neither handle nor finish. Driven by
tests/scripts/conn_facts.lua with Python clients.
"""

import os
import socket
import struct
import time

from util import Checks, recv_line, start_server, stop, wait_for

SCRIPT = "tests/scripts/conn_facts.lua"
check = Checks()


def ask(sock, line):
    sock.sendall(line.encode() + b"\n")
    return recv_line(sock).decode().strip()


def env_with(**kv):
    env = dict(os.environ)
    env.update(kv)
    return env


def test_defaults():
    proc, port = start_server(SCRIPT, "--log-level", "info")
    try:
        c = socket.create_connection(("127.0.0.1", port), 10)
        host, cport = c.getsockname()
        check(ask(c, "addr") == "%s %d" % (host, cport),
              "client_address is the client's (host, port)")
        check(ask(c, "same") == "true",
              "client_address is one value, built once")
        check(ask(c, "server") == "true", "self.server is the server")
        check(ask(c, "nodelay") != "0", "TCP_NODELAY is on by default")

        # client_address survives the client: read only after its RST.
        g = socket.create_connection(("127.0.0.1", port), 10)
        ghost, gport = g.getsockname()
        check(ask(g, "wait") == "waiting", "a handler waits for EOF")
        g.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                     struct.pack("ii", 1, 0))
        g.close()                                   # RST
        check(wait_for(lambda: "gone: %s %d" % (ghost, gport) in proc.log()),
              "client_address read after the client reset is its address")

        r = socket.create_connection(("127.0.0.1", port), 10)
        r.sendall(b"raise\n")
        check(r.recv(100) == b"", "a raising handle ends its connection")
        r.close()
        check(wait_for(lambda: "raised on request" in proc.log()),
              "the handle error is logged")
        log = proc.log()
        check("in upvalue 'explode'" in log or "in function 'explode'" in log
              or "explode" in log.split("raised on request", 1)[1],
              "with a traceback through the raising function")
        check("conn_facts.lua:" in log, "with file:line")
        check(wait_for(lambda: proc.log().count("finish ran") >= 2),
              "finish ran after handle returned and after it raised")
        check(ask(c, "addr") == "%s %d" % (host, cport),
              "the first client is served on")
        c.close()
    finally:
        check(stop(proc) == 0, "exit 0")


def test_nodelay_off():
    proc, port = start_server(SCRIPT, env=env_with(FACTS_NODELAY="no"))
    try:
        c = socket.create_connection(("127.0.0.1", port), 10)
        check(ask(c, "nodelay") == "0",
              "tcp_nodelay = false leaves Nagle's algorithm on")
        c.close()
    finally:
        check(stop(proc) == 0, "exit 0")


def test_setup_raises():
    proc, port = start_server(SCRIPT, env=env_with(FACTS_SETUP_RAISE="yes"))
    try:
        c = socket.create_connection(("127.0.0.1", port), 10)
        host, cport = c.getsockname()
        c.sendall(b"addr\n")
        check(c.recv(100) == b"", "a raising setup ends the connection")
        c.close()
        check(wait_for(lambda: "setup raised on request" in proc.log()),
              "the setup error is logged")
        check("127.0.0.1:%d" % cport in proc.log(),
              "with the client's address")
        time.sleep(0.1)
        check("finish ran" not in proc.log(),
              "finish does not run after a failed setup (as in Python)")
    finally:
        check(stop(proc) == 0, "exit 0")


if __name__ == "__main__":
    test_defaults()
    test_nodelay_off()
    test_setup_raises()
    check.finish()
