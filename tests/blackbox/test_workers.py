#!/usr/bin/env python3
"""Black-box tests of `moonsock --workers N` (bindings/workers.c).

The real binary serving scripts/echo.lua with 2 and 3 workers on one
fixed loopback port: every worker listens (one log line each, tagged with
its number), connections are echoed and spread over the workers, SIGHUP
reloads every worker, a worker killed with SIGKILL is restarted while the
connections held by the others keep working, SIGTERM stops them all with
status 0, and a killed supervisor takes its workers with it. Bad command
lines are refused with a clear message: --workers 0, an ephemeral port, a
unix socket path, a script that fails at start-up (reported once per
worker at most, then status 1 without a restart loop).
"""

import os
import re
import signal
import socket
import subprocess
import time

from util import MOONSOCK, ROOT, Checks, capture, echo, stop, wait_for

check = Checks()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid):
    """PIDs whose parent is pid (from /proc)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(d))
    return sorted(out)


def sockets_of(pid):
    """How many socket descriptors pid holds."""
    n = 0
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith(
                        "socket:"):
                    n += 1
            except OSError:
                pass
    except OSError:
        pass
    return n


def run(args, timeout=20):
    err, log = capture()
    proc = subprocess.Popen([MOONSOCK, *args], cwd=ROOT,
                            stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=err)
    err.close()
    proc.log = log
    return proc


# ---- two workers: serve, spread, reload, restart, stop --------------------
port = free_port()
proc = run(["--workers", "2", "--listen", "127.0.0.1:%d" % port,
            "scripts/echo.lua"])
check(wait_for(lambda: len(re.findall(r"worker \d: listening on 127\.0\.0\.1:%d"
                                      % port, proc.log())) == 2, 10),
      "both workers log 'listening on' the same port, tagged with a number")
workers = children(proc.pid)
check(len(workers) == 2, "the supervisor has 2 worker processes: %s"
      % workers)

conns = [socket.create_connection(("127.0.0.1", port), timeout=10)
         for _ in range(64)]
ok = all(echo(c, b"ping %d\n" % i) == b"ping %d\n" % i
         for i, c in enumerate(conns))
check(ok, "64 connections are each echoed exactly")
held = {w: sockets_of(w) for w in workers}
# Each worker has its listener; the kernel spreads the 64 connections by
# hash, so both get some (all 64 on one: probability 2^-63).
check(all(n >= 2 for n in held.values()),
      "connections are spread over both workers (sockets held: %s)" % held)

proc.send_signal(signal.SIGHUP)
check(wait_for(lambda: len(re.findall(r"worker \d: reloaded", proc.log()))
               == 2, 5), "SIGHUP to the supervisor reloads every worker")

victim, other = workers[0], workers[1]
os.kill(victim, signal.SIGKILL)
check(wait_for(lambda: "was killed by signal 9" in proc.log()
               and "restarting it" in proc.log(), 5),
      "the supervisor logs the killed worker and restarts it")
check(wait_for(lambda: len(children(proc.pid)) == 2
               and victim not in children(proc.pid), 5),
      "a new worker replaces the killed one: %s" % children(proc.pid))
# The killed worker's connections are gone with it; the other's live on.
alive = 0
for i, c in enumerate(conns):
    try:
        if echo(c, b"again %d\n" % i) == b"again %d\n" % i:
            alive += 1
    except OSError:
        pass
check(alive >= 2 and alive < 64,
      "connections held by the surviving worker still echo (%d of 64; "
      "the killed worker's are closed)" % alive)
for c in conns:
    c.close()
check(wait_for(lambda: len(re.findall(r"worker \d: listening on",
                                      proc.log())) == 3, 5),
      "the new worker listens on the same port")
fresh = [socket.create_connection(("127.0.0.1", port), timeout=10)
         for _ in range(32)]
check(all(echo(c, b"new\n") == b"new\n" for c in fresh),
      "after the restart 32 new connections are all echoed")
for c in fresh:
    c.close()
known = set(workers) | set(children(proc.pid))
t0 = time.monotonic()
status = stop(proc)
check(status == 0, "SIGTERM stops the supervisor and workers: status %s"
      % status)
check(time.monotonic() - t0 < 5, "and promptly")
check(not any(os.path.exists("/proc/%d" % w) for w in known),
      "no worker is left (all %d reaped)" % len(known))

# ---- a killed supervisor takes its workers with it ------------------------
port = free_port()
proc = run(["--workers", "3", "--listen", "127.0.0.1:%d" % port,
            "scripts/echo.lua"])
wait_for(lambda: len(re.findall(r"listening on", proc.log())) == 3, 10)
workers = children(proc.pid)
check(len(workers) == 3, "3 workers start")
proc.kill()
proc.wait()
check(wait_for(lambda: not any(os.path.exists("/proc/%d" % w)
                               for w in workers), 5),
      "after SIGKILL of the supervisor every worker exits (PDEATHSIG)")

# ---- refused command lines --------------------------------------------------
def refused(args, pattern, what):
    p = run(args)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    log = p.log()
    check(p.returncode == 1 and re.search(pattern, log) is not None,
          "%s: status %s, %r" % (what, p.returncode, log.strip()[:200]))
    return log


refused(["--workers", "0", "scripts/echo.lua"],
        r"--workers: expected an integer >= 1, got '0'", "--workers 0")
refused(["--workers", "x", "scripts/echo.lua"],
        r"--workers: expected an integer", "--workers x")
refused(["--workers", "2", "--listen", "127.0.0.1:0", "scripts/echo.lua"],
        r"cannot listen on 127\.0\.0\.1:0 with --workers: .*fixed port",
        "an ephemeral port")
refused(["--workers", "2", "--listen", "unix:/tmp/moonsock-workers.sock",
         "scripts/echo.lua"],
        r"with --workers: workers cannot share a unix socket path",
        "a unix socket path")
log = refused(["--workers", "4", "--listen", "127.0.0.1:%d" % free_port(),
               "/nonexistent/script.lua"],
              r"worker \d \(pid \d+\) exited with status 1 at start-up; "
              r"stopping", "a script that cannot start")
check(log.count("cannot open /nonexistent/script.lua") <= 4
      and "restarting" not in log,
      "a start-up error is not retried in a loop")

check.finish()
