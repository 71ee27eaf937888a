#!/usr/bin/env python3
"""test_embed_chat.py -- examples/embed_chat.c, a C host embedding moonsock.

Runs the example host (argv[1]) with examples/stamp_chat.lua in both loop
modes: its own poll(2) loop around msk_loop_fd/msk_loop_timeout/
msk_host_step (under MSK_BACKEND=poll there is no loop fd and the host
falls back to stepping with a timeout), and msk_host_run. Python clients
check that the C function host.stamp() reached the Lua handler (every
line comes back "[NAME #N] line", N counting across clients), that the
preloaded module host.stats answers, that the log callback got the
library's lines, and that the host stops cleanly from its own input
("quit" on stdin) and from SIGTERM. Also: any handler script path works
(scripts/echo.lua), and load errors come back through msk_host_error.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HOST = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("EMBED_CHAT")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
CHAT = os.path.join(ROOT, "examples", "stamp_chat.lua")
TIMEOUT = 10


class Host:
    """embed_chat as a child process with its log on a pipe."""

    def __init__(self, script, mode, name="emb", extra=()):
        self.proc = subprocess.Popen(
            [HOST, "--mode", mode, "--name", name,
             "--listen", "127.0.0.1:0", script, *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, cwd=ROOT)
        self.log = []
        self.port = None
        deadline = time.monotonic() + TIMEOUT
        while self.port is None and time.monotonic() < deadline:
            line = self.proc.stderr.readline().decode()
            if not line:
                break
            self.log.append(line)
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
        if self.port is None:
            self.proc.kill()
            raise AssertionError("host did not listen: %r" % self.log)

    def connect(self):
        c = socket.create_connection(("127.0.0.1", self.port),
                                     timeout=TIMEOUT)
        return c

    def finish(self, how):
        if how == "quit":
            self.proc.stdin.write(b"quit\n")
            self.proc.stdin.flush()
        else:
            self.proc.send_signal(how)
        out, err = self.proc.communicate(timeout=TIMEOUT)
        self.log.append(err.decode())
        return self.proc.returncode, out.decode(), "".join(self.log)


def readline(conn):
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf.decode()


class EmbedChat(unittest.TestCase):

    def chat_round(self, host, name):
        a, b = host.connect(), host.connect()
        # Both are in the room once each has had an answer.
        for c in (a, b):
            c.sendall(b"/stats\n")
            self.assertTrue(readline(c).startswith("* stamped 0"))
        a.sendall(b"hello from a\n")
        self.assertEqual(readline(a), "[%s #1] hello from a\n" % name)
        self.assertEqual(readline(b), "[%s #1] hello from a\n" % name)
        b.sendall(b"and b\r\n")
        self.assertEqual(readline(a), "[%s #2] and b\n" % name)
        self.assertEqual(readline(b), "[%s #2] and b\n" % name)
        b.sendall(b"/stats\n")
        return a, b, readline(b)

    def run_chat(self, mode, how):
        host = Host(CHAT, mode, name="h-" + mode)
        a, b, stats = self.chat_round(host, "h-" + mode)
        self.assertEqual(stats, "* stamped 2, mode %s\n" % mode)
        if how == "quit":
            # The host's own descriptor is served by its own loop.
            host.proc.stdin.write(b"stats\n")
            host.proc.stdin.flush()
            self.assertEqual(host.proc.stdout.readline().decode(),
                             "embed_chat: stamped 2 messages so far\n")
        a.close()
        b.close()
        status, out, log = host.finish(how)
        self.assertEqual(status, 0, log)
        self.assertIn("embed_chat: stamped 2 messages\n", out)
        # Library logs went through the host's callback, in its format.
        self.assertIn("h-%s [info] listening on 127.0.0.1:" % mode, log)

    def test_own_poll_loop_quit_from_own_input(self):
        self.run_chat("poll", "quit")

    def test_own_poll_loop_sigterm(self):
        self.run_chat("poll", signal.SIGTERM)

    def test_run_mode_sigterm(self):
        self.run_chat("run", signal.SIGTERM)

    def test_any_script_path(self):
        for mode in ("poll", "run"):
            host = Host(os.path.join(ROOT, "scripts", "echo.lua"), mode)
            c = host.connect()
            c.sendall(b"ping\n")
            self.assertEqual(readline(c), "ping\n")
            c.close()
            status, out, log = host.finish(signal.SIGTERM)
            self.assertEqual(status, 0, log)
            self.assertIn("stamped 0 messages", out)

    @unittest.skipUnless(os.path.exists(os.path.join(ROOT, "scripts",
                                                     "chat.lua")),
                         "scripts/chat.lua not there yet")
    def test_shipped_chat_server(self):
        # The real chat server, embedded: it answers a command, and the
        # host's own loop stops it. (Its console would read the host's
        # stdin, which the host reads itself here.)
        host = Host(os.path.join(ROOT, "scripts", "chat.lua"), "poll",
                    extra=("--no-console",))
        c = host.connect()
        c.sendall(b"/help\n")
        self.assertNotEqual(readline(c), "")
        c.close()
        status, out, log = host.finish("quit")
        self.assertEqual(status, 0, log)

    def run_program(self, source, mode="poll"):
        with tempfile.NamedTemporaryFile("w", suffix=".lua") as f:
            f.write(source)
            f.flush()
            p = subprocess.run([HOST, "--mode", mode, f.name, "x", "y"],
                               capture_output=True, timeout=TIMEOUT,
                               stdin=subprocess.DEVNULL)
            return p.returncode, p.stdout.decode(), p.stderr.decode(), f.name

    def test_program_script_calls_host(self):
        # A script that returns nothing is a program; its args reach it.
        for mode in ("poll", "run"):
            status, out, err, _ = self.run_program(
                'local host = require "host"\n'
                'local a, b = ...\n'
                'print(host.stamp(), a, b, require("host.stats").count())\n',
                mode)
            self.assertEqual(status, 0, err)
            self.assertIn("[embed_chat #1]\tx\ty\t1\n", out)
            self.assertIn("embed_chat: stamped 1 messages\n", out)

    def test_load_errors_come_back(self):
        p = subprocess.run([HOST, "/nonexistent/script.lua"],
                           capture_output=True, timeout=TIMEOUT)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"embed_chat: cannot open /nonexistent/script.lua",
                      p.stderr)
        status, out, err, path = self.run_program("local x = = 1\n")
        self.assertEqual(status, 1)
        self.assertRegex(err, re.escape(path) + r":1:")
        self.assertEqual(out, "")          # never got to run

    def test_script_error_sets_status(self):
        status, out, err, _ = self.run_program('error("boom")\n')
        self.assertEqual(status, 1)
        self.assertIn("boom", err)
        self.assertIn("stamped 0 messages", out)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
