#!/usr/bin/env python3
"""test_runtime.py -- handler code that is wrong: stuck, greedy, strange.

Issue 8, the Lua runtime: a handler stuck in a loop (plain, catching every
error with pcall, inside a coroutine of its own) is stopped after the CPU
budget with a logged error while other clients keep being served; a
handler that allocates without bound gets a memory error under
--max-memory and the server survives, its memory back to baseline;
errors that are not strings, a __tostring that raises and an error in
__gc are logged without a crash.
"""

import time

from hostile import (Checks, start_admin, stop, connect, readline, ask,
                     stats, wait_for, SLOW)

checks = Checks()


def ping_latency(port, deadline_s):
    """Seconds until a PING on a fresh connection is answered."""
    t0 = time.monotonic()
    try:
        r = ask(port, "PING", timeout=deadline_s)
    except OSError:
        return None
    return time.monotonic() - t0 if r == "PONG" else None


def stuck(cmd, budget, label):
    args = ("--cpu-budget", str(budget)) if budget is not None else ()
    proc, port = start_admin(*args)
    try:
        base = stats(port)
        # A client connected before the handler gets stuck.
        other = connect(port)
        bad = connect(port)
        t0 = time.monotonic()
        bad.sendall(cmd.encode() + b"\n")
        time.sleep(0.05)
        other.sendall(b"PING\n")
        r = readline(other)
        waited = time.monotonic() - t0
        eff = budget if budget is not None else 1.0
        checks(r == "PONG", "%s: the other client is answered (%r)"
               % (label, r))
        # The budget is CPU time: on a loaded machine the wall clock runs
        # ahead of it, hence the generous bound.
        checks(waited < 8 * eff + 4.0 * SLOW,
               "%s: within the budget plus slack (%.2fs, budget %gs)"
               % (label, waited, eff))
        bad.settimeout(5)
        try:
            eof = bad.recv(100) == b""
        except OSError:
            eof = True
        checks(eof, "%s: the stuck connection is closed" % label)
        log = proc.log()
        checks("CPU budget exceeded" in log,
               "%s: the error is logged" % label)
        checks("without waiting" in log and "WARN" in log,
               "%s: a warning names the budget" % label)
        lat = ping_latency(port, 5)
        checks(lat is not None and lat < 0.5 * SLOW,
               "%s: service is back to normal (%s s)" % (label, lat))
        other.close()
        bad.close()
        ok = wait_for(lambda: stats(port)["tasks"] == base["tasks"], 5)
        checks(ok, "%s: task count back to baseline" % label)
    finally:
        status = stop(proc)
    checks(status == 0, "%s: clean exit (%s)" % (label, status))


stuck("SPIN", None, "while true do end, default budget")
stuck("SPINPCALL", 0.3, "a loop catching errors with pcall")
stuck("SPINCO", 0.3, "a loop inside the handler's own coroutine")

# ---- the memory cap ------------------------------------------------------
for cmd in ("HOG", "HOGPCALL"):
    proc, port = start_admin("--max-memory", "48", "--cpu-budget", "2")
    try:
        base = stats(port)
        other = connect(port)
        bad = connect(port)
        bad.sendall(cmd.encode() + b"\n")
        bad.settimeout(20)
        try:
            eof = bad.recv(100) == b""
        except OSError:
            eof = True
        checks(eof, "%s: the greedy connection ends" % cmd)
        other.sendall(b"PING\n")
        checks(readline(other) == "PONG", "%s: another client is served"
               % cmd)
        log = proc.log()
        checks("not enough memory" in log or "CPU budget" in log,
               "%s: the failure is logged" % cmd)
        other.close()
        bad.close()
        after = stats(port)
        checks(after["mem"] < base["mem"] + 2 * 1024 * 1024,
               "%s: Lua memory back to baseline (%d -> %d bytes)"
               % (cmd, base["mem"], after["mem"]))
        checks(proc.poll() is None, "%s: the server is alive" % cmd)
    finally:
        status = stop(proc)
    checks(status == 0, "%s: clean exit (%s)" % (cmd, status))

# ---- strange errors -------------------------------------------------------
proc, port = start_admin()
try:
    for cmd in ("ERRTABLE", "ERRNIL", "ERRTOSTRING"):
        with connect(port) as s:
            s.sendall(cmd.encode() + b"\n")
            s.settimeout(5)
            checks(s.recv(100) == b"", "%s: that connection ends" % cmd)
        checks(ask(port, "PING") == "PONG", "%s: the server goes on" % cmd)
    checks(ask(port, "GCERR") == "collected",
           "an error in __gc does not end the handler")
    log = proc.log()
    checks(log.count("handler failed") >= 3 or log.count("ERROR") >= 3,
           "each error is logged")
    checks("error in __gc" in log, "the __gc error is logged as a warning")
    # User text is never a format: %s and %n in a command come back as
    # an unknown command, not as a crash or a formatted string.
    checks(ask(port, "%s%s%n%%") == "ERR unknown command",
           "format directives in input are plain text")
    checks(proc.poll() is None, "the server is alive")
finally:
    status = stop(proc)
checks(status == 0, "clean exit after strange errors (%s)" % status)
checks("panic" not in proc.log().lower(), "no panic")

checks.finish()
