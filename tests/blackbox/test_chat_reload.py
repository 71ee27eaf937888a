#!/usr/bin/env python3
"""Hot reload of scripts/chat.lua while 100 clients chat.

The server runs a copy of chat.lua in a temporary directory. While 100
clients send messages, the copy is rewritten twice: first with a syntax
error (the reload must be refused and the old version keep serving), then
with a visible change (greeting and /help text) and a SIGHUP. Nobody may
be disconnected and every client must receive every message, each
sender's in order. A live connection must run the new code at its next
step (/help shows the change) and a new one must get the new greeting.
Prints 'N passed, N failed'; exits non-zero on failure.

Depends on hot reload (bindings/reload.lua, SIGHUP in serve.lua): when
`moonsock --help` does not mention reload, the test says so and skips.
"""

import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from util import MOONSOCK, ROOT, Checks, start_server, stop as stop_server

CHAT = os.path.join(ROOT, "scripts", "chat.lua")
CLIENTS = int(os.environ.get("CHAT_RELOAD_CLIENTS", "100"))
MESSAGES = 40          # per client, sent 8 a second: about 5 s of chat

check = Checks()


class Peer:
    def __init__(self, index, port):
        self.index = index
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buf = b""
        self.got = 0
        self.next = [0] * CLIENTS
        self.bad = []
        self.notices = []
        self.closed = False

    def feed(self, chunk):
        lines = (self.buf + chunk).split(b"\n")
        self.buf = lines.pop()
        for line in lines:
            if line.startswith(b"*** "):
                self.notices.append(line.decode("utf-8", "replace"))
                continue
            try:
                _, m, i, k = line.split(b" ")
                i, k = int(i), int(k)
            except ValueError:
                self.bad.append(line[:80])
                continue
            if m != b"m" or self.next[i] != k:
                self.bad.append(line[:80])
                continue
            self.next[i] = k + 1
            self.got += 1


def wait_log(proc, pattern, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, proc.log())
        if m:
            return m
        time.sleep(0.05)
    return None


def main():
    help_text = subprocess.run([MOONSOCK, "--help"], capture_output=True,
                               text=True).stdout
    if "reload" not in help_text:
        print("skip: this moonsock has no hot reload")
        check.finish()
    tmp = tempfile.mkdtemp(prefix="chat_reload_")
    script = os.path.join(tmp, "chat.lua")
    shutil.copy(CHAT, script)
    with open(CHAT) as f:
        source = f.read()
    proc, port = start_server(script)
    try:
        peers = [Peer(i, port) for i in range(CLIENTS)]
        peers[-1].sock.sendall(b"/who\n")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
                ("in lobby (%d)" % CLIENTS) in n for n in peers[-1].notices):
            peers[-1].feed(peers[-1].sock.recv(65536))
        sel = selectors.DefaultSelector()
        for p in peers:
            p.sock.setblocking(False)
            sel.register(p.sock, selectors.EVENT_READ, p)

        stop = threading.Event()

        def talk():
            # Every client sends message k at the same moment, k = 0..N-1.
            for k in range(MESSAGES):
                if stop.is_set():
                    return
                for p in peers:
                    try:
                        p.sock.send(b"m %d %d\n" % (p.index, k))
                    except OSError:
                        pass
                time.sleep(0.125)

        talker = threading.Thread(target=talk)
        talker.start()

        def pump(secs):
            deadline = time.monotonic() + secs
            while time.monotonic() < deadline:
                for key, _ in sel.select(0.1):
                    p = key.data
                    try:
                        chunk = p.sock.recv(262144)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        p.closed = True
                        sel.unregister(p.sock)
                        continue
                    p.feed(chunk)

        pump(1.0)
        # 1. A broken edit is refused; the old version keeps serving.
        with open(script, "w") as f:
            f.write(source.replace("local COMMANDS = {}",
                                   "local COMMANDS = {", 1))
        proc.send_signal(signal.SIGHUP)
        m = wait_log(proc, r"reload of .* failed[^\n]*", 10)
        check(m is not None and "chat.lua" in m.group(0),
              "a broken edit is refused with file:line: %r"
              % (m.group(0)[:120] if m else None))
        pump(1.0)
        # 2. A good edit, while everyone keeps talking.
        new = (source.replace("Welcome to moonsock chat",
                              "Welcome to moonsock chat v2", 1)
                     .replace('"/help             this list"',
                              '"/help             this list (v2)"', 1))
        check(new != source, "the edit changes the script")
        with open(script + ".tmp", "w") as f:
            f.write(new)
        os.rename(script + ".tmp", script)
        proc.send_signal(signal.SIGHUP)
        m = wait_log(proc, r"reloaded [^\n]*version (\d+)", 10)
        check(m is not None, "the good edit is loaded: %r"
              % (m.group(0)[:100] if m else None))
        pump(0.5)
        # A live connection runs the new code at its next step.
        live = peers[0]
        live.sock.sendall(b"/help\n")
        pump(1.0)
        check(any("this list (v2)" in n for n in live.notices),
              "a live connection runs the new version")
        # A new connection gets the new greeting.
        fresh = socket.create_connection(("127.0.0.1", port))
        fresh.sendall(b"/quit\n")
        fresh.settimeout(10)
        data = b""
        while b"bye" not in data:
            d = fresh.recv(65536)
            if not d:
                break
            data += d
        fresh.close()
        check(b"Welcome to moonsock chat v2" in data,
              "a new connection gets the new greeting")
        talker.join()
        total = CLIENTS * MESSAGES
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(
                p.got >= total or p.closed for p in peers):
            pump(0.5)
        complete = sum(1 for p in peers
                       if p.got == total and not p.bad and not p.closed)
        check(complete == CLIENTS,
              "nobody disconnected, every client got all %d messages in "
              "order (%d of %d)" % (total, complete, CLIENTS))
        for p in peers:
            if p.got != total or p.bad or p.closed:
                print("     client %d: got %d closed %s bad %r"
                      % (p.index, p.got, p.closed, p.bad[:3]))
                break
        log = proc.log()
        lefts = [x for x in log.splitlines() if " left" in x]
        check(len(lefts) == 1, "only the client that quit left: %r"
              % [x[-60:] for x in lefts[:3]])
        for p in peers:
            p.sock.close()
    finally:
        rc = stop_server(proc)
        check(rc == 0, "server stops cleanly (rc %s)" % rc)
        shutil.rmtree(tmp, ignore_errors=True)
    check.finish()


if __name__ == "__main__":
    main()
