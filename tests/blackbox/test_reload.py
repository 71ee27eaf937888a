#!/usr/bin/env python3
"""Black-box tests of hot reload: the real binary, Python 3 clients.

Reload under load: 100 clients exchange lines with the server while the
handler file is rewritten 20 times -- by atomic rename and by writing in
place, some versions broken by a syntax error, some by an error raised
while the file loads. Checked: no client is disconnected and no message
goes unanswered; every good version reaches every live connection, and a
request sent after the reload was logged is answered by the new code (the
handler's loop keeps running the first version; the answer() method it
calls through self is looked up anew); a broken version is refused with
file:line and the previous one keeps answering; server.state keeps
counting across every version; the Lua heap stays flat. Also: SIGHUP,
--no-reload, a module beside the script, --reload-poll, and the reload
latency (file written -> new code answering), printed for the report.
"""

import os
import re
import signal
import socket
import statistics
import tempfile
import threading
import time

from util import Checks, start_server, stop, wait_for

check = Checks()

# {tag} names the version; {extra} adds code. Line numbers matter: the
# broken variants below say where their error is.
TEMPLATE = """\
-- handler for test_reload.py, version {tag}
local H = {{}}
{extra}
function H:setup()
  local st = self.server.state
  st.connected = (st.connected or 0) + 1
end
function H:handle()
  local f = self.request:makefile("rb")
  while true do
    local line = f:readline()
    if line == "" then return end
    self:answer(line)
  end
end
function H:answer(line)
  local st = self.server.state
  st.total = (st.total or 0) + 1
  if line == "STATS\\n" then
    collectgarbage()
    collectgarbage()
    local s = self.server:status()
    self.request:sendall(("STATS %d %d %d %d %d %d\\n"):format(
      s.version, s.reloads, s.failed_reloads, st.total, st.connected,
      math.floor(collectgarbage("count"))))
    return
  end
  self.request:sendall("{tag} " .. st.total .. " " .. line)
end
return H
"""

SYNTAX_LINE = 3      # {extra} is line 3
RUNTIME_LINE = 3


def version(tag, kind="good"):
    if kind == "good":
        return TEMPLATE.format(tag=tag, extra="")
    if kind == "syntax":
        return TEMPLATE.format(tag=tag, extra="local broken = = 1")
    if kind == "runtime":
        return TEMPLATE.format(tag=tag, extra="error('refused at load "
                               + tag + "')")
    raise ValueError(kind)


def write(path, text, mode):
    if mode == "rename":
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    else:
        with open(path, "w") as f:       # truncate, write, close
            f.write(text)


class Client(threading.Thread):
    """One connection sending numbered lines and checking every answer."""

    def __init__(self, cid, port, order):
        super().__init__(daemon=True)
        self.cid, self.order = cid, order
        self.sock = socket.create_connection(("127.0.0.1", port), 30)
        self.file = self.sock.makefile("rb")
        self.sent = self.answered = 0
        self.last_tag = None
        self.last_total = 0
        self.need = (0, 0)         # (after seq, at least this tag index)
        self.error = None
        self.stop = threading.Event()

    def run(self):
        try:
            while not self.stop.is_set():
                seq = self.sent + 1
                self.sent = seq
                msg = "c%d %d\n" % (self.cid, seq)
                self.sock.sendall(msg.encode())
                line = self.file.readline().decode()
                if not line:
                    raise RuntimeError("disconnected after %d" % seq)
                tag, total, rest = line.split(" ", 2)
                if rest != msg:
                    raise RuntimeError("wrong answer %r to %r" % (line, msg))
                idx = self.order[tag]
                if self.last_tag is not None and idx < self.order[
                        self.last_tag]:
                    raise RuntimeError("version went back: %r" % line)
                after, least = self.need
                if seq > after and idx < least:
                    raise RuntimeError("request %d after the reload answered"
                                       " by old code: %r" % (seq, line))
                if int(total) <= self.last_total:
                    raise RuntimeError("state.total went back: %r" % line)
                self.last_total = int(total)
                self.last_tag = tag
                self.answered += 1
                time.sleep(0.002)
        except Exception as e:     # reported by the main thread
            self.error = e


def reload_count(log):
    return len(re.findall(r"reloaded \S+: version \d+", log))


def fail_count(log):
    return len(re.findall(r"reload of \S+ failed", log))


def stats(port):
    with socket.create_connection(("127.0.0.1", port), 10) as s:
        s.sendall(b"STATS\n")
        line = s.makefile("rb").readline().decode().split()
    return [int(x) for x in line[1:]]


def test_under_load():
    d = tempfile.mkdtemp(prefix="msk-reload-")
    path = os.path.join(d, "handler.lua")
    write(path, version("T0"), "rename")
    proc, port = start_server(path)
    order = {"T0": 0}
    kinds = []
    for i in range(1, 21):
        kind = "syntax" if i % 5 == 2 else "runtime" if i % 5 == 4 \
            else "good"
        kinds.append((i, kind, "rename" if i % 2 else "inplace"))
        if kind == "good":
            order["T%d" % i] = len(order)
    clients = []
    latencies = []
    try:
        clients = [Client(i, port, order) for i in range(100)]
        for c in clients:
            c.start()
        check(wait_for(lambda: all(c.answered > 0 for c in clients), 20),
              "100 clients exchanging with version T0")
        base = stats(port)
        good_tag, goods, fails = "T0", 0, 0
        for i, kind, mode in kinds:
            tag = "T%d" % i
            log_before = proc.log()
            t0 = time.monotonic()
            write(path, version(tag, kind), mode)
            if kind == "good":
                goods += 1
                idx = order[tag]
                # The first answer by the new code, from any client.
                wait_for(lambda: any(c.last_tag == tag for c in clients),
                         10, 0.001)
                latencies.append(time.monotonic() - t0)
                logged = wait_for(lambda: reload_count(proc.log()) == goods,
                                  10)
                for c in clients:
                    c.need = (c.sent, idx)
                everyone = wait_for(lambda: all(c.last_tag == tag
                                                for c in clients), 10)
                check(logged and everyone,
                      "%s (%s, %s): every live connection answers with it"
                      % (tag, kind, mode))
                good_tag = tag
            else:
                fails += 1
                logged = wait_for(lambda: fail_count(proc.log()) == fails,
                                  10)
                new = proc.log()[len(log_before):]
                where = re.search(r"handler\.lua:%d:" % (
                    SYNTAX_LINE if kind == "syntax" else RUNTIME_LINE), new)
                check(logged and where is not None,
                      "%s (%s, %s): refused, logged with file:line"
                      % (tag, kind, mode))
                time.sleep(0.1)
                served = [c.answered for c in clients]
                wait_for(lambda: all(c.answered > served[k]
                                     for k, c in enumerate(clients)), 10)
                check(all(c.last_tag == good_tag for c in clients),
                      "%s: %s keeps answering" % (tag, good_tag))
            errors = [c.error for c in clients if c.error]
            if errors:
                check(False, "clients failed: %s" % errors[:3])
                break
        for c in clients:
            c.stop.set()
        for c in clients:
            c.join(10)
        errors = [(c.cid, c.error) for c in clients if c.error]
        check(not errors, "no client disconnected or misanswered (%s)"
              % errors[:3])
        answered = sum(c.answered for c in clients)
        check(all(c.sent == c.answered for c in clients),
              "every message answered (%d)" % answered)
        # One more round trip each: all 100 connections are still open.
        alive = 0
        for c in clients:
            c.sock.sendall(b"last\n")
            if c.file.readline().decode().endswith("last\n"):
                alive += 1
        check(alive == 100, "all 100 connections still open (%d)" % alive)
        end = stats(port)
        ver, reloads, failed, total, connected, heap_end = end
        check(ver == 1 + goods and reloads == goods and failed == fails,
              "server:status(): version %d, %d reloads, %d failed"
              % (ver, reloads, failed))
        # total counts every answer (+2 STATS); it never restarted.
        check(total == answered + 100 + 2,
              "server.state intact: total %d == %d" % (total,
                                                       answered + 102))
        check(connected == 102, "server.state.connected %d" % connected)
        heap_base = base[5]
        check(heap_end < heap_base * 1.5 + 512,
              "Lua heap flat: %d KiB before, %d KiB after 20 rewrites"
              % (heap_base, heap_end))
        log = proc.log()
        check(re.search(r"version %d \(reload %d" % (ver, reloads), log)
              is not None, "the log numbers each version and reload")
        lat = sorted(latencies)
        print("reload latency (write -> first new answer): median %.1f ms,"
              " max %.1f ms over %d reloads"
              % (statistics.median(lat) * 1000, lat[-1] * 1000, len(lat)))
        check(lat[-1] < 2.0, "each reload answered within 2 s")
    finally:
        if check.failed:
            print("---- server log (last 60 lines) ----")
            print("\n".join(proc.log().splitlines()[-60:]))
        for c in clients:
            c.stop.set()
        for c in clients:
            c.file.close()
            c.sock.close()
        status = stop(proc)
        check(status == 0, "exit 0 (%s)" % status)
        for f in os.listdir(d):
            os.remove(os.path.join(d, f))
        os.rmdir(d)


def one_client(port):
    s = socket.create_connection(("127.0.0.1", port), 10)
    f = s.makefile("rb")

    def ask(msg):
        s.sendall(msg.encode() + b"\n")
        return f.readline().decode()

    def close():
        f.close()        # the makefile() object holds the connection too
        s.close()
    return close, ask


def test_triggers():
    d = tempfile.mkdtemp(prefix="msk-reload-")
    path = os.path.join(d, "handler.lua")
    mod = os.path.join(d, "reload_tag.lua")
    write(mod, "return { tag = 'm1' }\n", "rename")
    extra = "local mod = require 'reload_tag'\n"
    src = version("A", "good").replace('"A "', 'mod.tag .. " "')
    src = src.replace("local H = {}\n", "local H = {}\n" + extra, 1)
    write(path, src, "rename")

    # SIGHUP reloads even an unchanged file; a module edit reloads.
    proc, port = start_server(path)
    try:
        close, ask = one_client(port)
        check(ask("x").startswith("m1 "), "module: first version")
        proc.send_signal(signal.SIGHUP)
        check(wait_for(lambda: "version 2 (reload 1, SIGHUP)" in proc.log()),
              "SIGHUP reloads, and the log says so")
        write(mod, "return { tag = 'm2' }\n", "inplace")
        check(wait_for(lambda: ask("y").startswith("m2 "), 5),
              "editing a module beside the script reloads it")
        close()
    finally:
        check(stop(proc) == 0, "exit 0")

    # --no-reload: no watching, but SIGHUP still reloads.
    write(mod, "return { tag = 'n1' }\n", "rename")
    proc, port = start_server(path, "--no-reload")
    try:
        close, ask = one_client(port)
        write(mod, "return { tag = 'n2' }\n", "rename")
        time.sleep(0.5)
        check(ask("x").startswith("n1 "), "--no-reload: a change is ignored")
        proc.send_signal(signal.SIGHUP)
        check(wait_for(lambda: ask("y").startswith("n2 "), 5),
              "--no-reload: SIGHUP still reloads")
        close()
    finally:
        check(stop(proc) == 0, "exit 0")

    # --reload-poll: mtime polling instead of inotify.
    proc, port = start_server(path, "--reload-poll", "50")
    try:
        close, ask = one_client(port)
        time.sleep(0.1)
        write(mod, "return { tag = 'p2' } -- polled\n", "inplace")
        check(wait_for(lambda: ask("z").startswith("p2 "), 5),
              "--reload-poll: a change is seen by polling")
        close()
    finally:
        check(stop(proc) == 0, "exit 0")
    for f in os.listdir(d):
        os.remove(os.path.join(d, f))
    os.rmdir(d)


T0 = time.monotonic()
test_under_load()
print("under load: %.1f s" % (time.monotonic() - T0))
test_triggers()
print("total: %.1f s" % (time.monotonic() - T0))
check.finish()
