#!/usr/bin/env python3
"""soak.py -- mixed chat, command and upload traffic with reloads.

    tools/soak.sh [MINUTES]     (default 30; builds build/ if needed)
    MOONSOCK=path/to/moonsock python3 tools/soak.py MINUTES

Starts the three shipped servers on 127.0.0.1 (scripts/chat.lua,
scripts/command.lua with a fresh key, scripts/upload.lua over a
temporary store), then for MINUTES keeps them busy at once: chat clients
that join, talk and leave; command clients that authenticate and run
echo; upload clients that PUT files of up to 1 MiB (with overwrite, over
20 names each, so the store stays small) and GET them
back byte for byte. Every RELOAD seconds each server gets SIGHUP (a hot
reload with clients connected). Every SAMPLE seconds it records each
server's RSS and descriptor count (/proc/PID/status, /proc/PID/fd).

At the end it prints the samples and a verdict: the servers are alive,
no client operation failed beyond a small rate, no ERROR was logged but
the expected, descriptors are flat (the last sample within 8 of the one
after warm-up) and RSS is flat (the last sample within 25% + 8 MiB of
the one after warm-up). Exit status 0 when all hold. Not part of ctest;
docs/hardening.md records the runs. Loopback only; it stops only the
processes it started, by PID.
"""

import hashlib
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "blackbox"))
sys.path.insert(0, os.path.join(ROOT, "tests", "hostile"))

import cmdlib                                            # noqa: E402
from util import start_server, stop, raise_nofile        # noqa: E402
from hostile import fd_count, rss_kib                    # noqa: E402

MINUTES = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
RELOAD = 3.0
SAMPLE = 10.0
WARMUP = min(60.0, MINUTES * 60 / 6)

stop_at = time.monotonic() + MINUTES * 60
counts = {}
lock = threading.Lock()


def count(what, ok):
    with lock:
        c = counts.setdefault(what, [0, 0])
        c[0 if ok else 1] += 1


def running():
    return time.monotonic() < stop_at


def recv_until(s, marker, limit=1 << 20):
    buf = b""
    while marker not in buf and len(buf) < limit:
        d = s.recv(65536)
        if not d:
            break
        buf += d
    return buf


def chat_client(port, i):
    while running():
        try:
            with socket.create_connection(("127.0.0.1", port), 10) as s:
                s.settimeout(10)
                nick = b"soak%d_%d" % (i, random.randrange(10**6))
                s.sendall(b"/nick " + nick + b"\n")
                for _ in range(random.randrange(1, 20)):
                    tag = b"m%d" % random.randrange(10**9)
                    s.sendall(b"hello " + tag + b"\n")
                    ok = tag in recv_until(s, tag)
                    count("chat message", ok)
                    time.sleep(random.random() * 0.2)
        except OSError:
            count("chat session", False)
            time.sleep(0.2)
        else:
            count("chat session", True)


def command_client(port, key):
    while running():
        try:
            word = "w%d" % random.randrange(10**9)
            r = cmdlib.run(port, key, [b"echo", word.encode()])
            count("command", r[0] == "X" and r[1] == 0 and
                  r[3].strip() == word.encode())
        except Exception:                        # noqa: counted
            count("command", False)
        time.sleep(random.random() * 0.3)


def upload_client(port, i):
    sys.path.insert(0, os.path.join(ROOT, "tests", "blackbox"))
    from test_upload import Client
    while running():
        data = os.urandom(random.randrange(1, 1 << 20))
        name = "soak-%d-%d" % (i, random.randrange(20))
        try:
            c = Client(port, 30)
            try:
                c.put(name, data, flags="overwrite")
                c.request("GET 0 " + name)
                size = int(c.ok().split()[0])
                count("upload", c.exact(size) == data)
            finally:
                c.close()
        except Exception:                        # noqa: counted
            count("upload", False)
        time.sleep(random.random() * 0.3)


def main():
    raise_nofile(4096)
    tmp = tempfile.mkdtemp(prefix="msk-soak-")
    keyfile = cmdlib.make_key(tmp)
    key = cmdlib.read_key(keyfile)
    root = os.path.join(tmp, "root")
    store = os.path.join(tmp, "store")
    os.mkdir(root)
    os.mkdir(store)
    servers = {
        "chat": start_server("scripts/chat.lua"),
        "command": start_server("scripts/command.lua", script_args=(
            "--key-file", keyfile, "--root", root, "--allow", "echo,cat")),
        "upload": start_server("scripts/upload.lua",
                               script_args=("--dir", store)),
    }
    threads = []
    ports = {k: v[1] for k, v in servers.items()}
    for i in range(12):
        threads.append(threading.Thread(target=chat_client,
                                        args=(ports["chat"], i)))
    for i in range(4):
        threads.append(threading.Thread(target=command_client,
                                        args=(ports["command"], key)))
    for i in range(4):
        threads.append(threading.Thread(target=upload_client,
                                        args=(ports["upload"], i)))
    for t in threads:
        t.daemon = True
        t.start()

    samples = []
    t0 = time.monotonic()
    next_reload, next_sample = t0 + RELOAD, t0
    reloads = 0
    while running():
        now = time.monotonic()
        if now >= next_reload:
            for proc, _ in servers.values():
                proc.send_signal(signal.SIGHUP)      # our child, by PID
            reloads += 1
            next_reload += RELOAD
        if now >= next_sample:
            row = {"t": now - t0}
            for name, (proc, _) in servers.items():
                row[name] = (rss_kib(proc.pid), fd_count(proc.pid))
            samples.append(row)
            print("t=%5.0fs " % row["t"] + "  ".join(
                "%s rss=%dKiB fds=%d" % (n, *row[n]) for n in servers),
                flush=True)
            next_sample += SAMPLE
        time.sleep(0.05)
    for t in threads:
        t.join(60)

    verdict = True
    alive = {n: p.poll() is None for n, (p, _) in servers.items()}
    print("reloads sent to each server:", reloads)
    print("operations (ok, failed):", counts)
    base = next((s for s in samples if s["t"] >= WARMUP), samples[0])
    last = samples[-1]
    for name, (proc, _) in servers.items():
        (r0, f0), (r1, f1) = base[name], last[name]
        log = proc.log()
        errors = [l for l in log.splitlines() if " ERROR " in l]
        print("%s: alive=%s rss %d -> %d KiB, fds %d -> %d, ERROR lines %d"
              % (name, alive[name], r0, r1, f0, f1, len(errors)))
        for line in errors[:5]:
            print("   ", line[:200])
        verdict &= alive[name]
        verdict &= abs(f1 - f0) <= 8
        verdict &= r1 <= r0 * 1.25 + 8192
    for what, (ok, bad) in counts.items():
        if bad > max(3, (ok + bad) // 100):
            print("too many failures:", what, ok, bad)
            verdict = False
    for proc, _ in servers.values():
        stop(proc)
    shutil.rmtree(tmp, ignore_errors=True)
    print("soak %.1f min: %s" % (MINUTES, "PASS" if verdict else "FAIL"))
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
