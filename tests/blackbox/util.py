"""Shared helpers for the black-box tests: start the real moonsock binary.

    from util import start_server, stop, Checks

    proc, port = start_server("scripts/echo.lua", "--max-connections", "2")
    ...
    proc.log()          # everything the server wrote to stderr so far
    stop(proc)          # SIGTERM, wait, return the exit status

start_server(script, *args) runs `$MOONSOCK --listen 127.0.0.1:0 *args
script *script_args` from the project root, with stderr in a temporary
file, and returns once the server has logged 'listening on
127.0.0.1:PORT'. args are moonsock options (they go before the script).
Kept small and stable: other tests import it.
"""

import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
MOONSOCK = os.environ.get("MOONSOCK", os.path.join(ROOT, "build",
                                                   "moonsock"))

_LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")


def capture():
    """(writer, log): a file to give a child as stderr, and a function
    returning what it has written so far. The child appends (O_APPEND)
    and the reader has its own offset: seeking a shared TemporaryFile to
    read it would move the child's write position too and garble the log.
    """
    fd, path = tempfile.mkstemp(prefix="moonsock-", suffix=".log")
    os.close(fd)
    writer = open(path, "ab")
    reader = open(path, "rb")
    os.unlink(path)

    def log():
        reader.seek(0)
        return reader.read().decode("utf-8", "replace")
    return writer, log


def wait_port(proc, log, timeout=15.0):
    """The PORT of the first 'listening on 127.0.0.1:PORT' in log(),
    polled until it shows, proc exits or timeout seconds pass (None)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = _LISTENING.search(log())
        if m:
            return int(m.group(1))
        if proc.poll() is not None:
            return None
        time.sleep(0.02)
    return None


def start_server(script, *args, listen="127.0.0.1:0", script_args=(),
                 env=None, stdin=subprocess.DEVNULL, timeout=20):
    """Start moonsock serving script; return (proc, port).

    proc.log() returns the server's stderr so far. Raises RuntimeError
    (after killing the process) if no port shows up within timeout s."""
    err, log = capture()
    cmd = [MOONSOCK]
    if listen is not None:
        cmd += ["--listen", listen]
    cmd += [*args, script, *script_args]
    proc = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.DEVNULL,
                            stderr=err, cwd=ROOT, env=env)

    err.close()                  # the child has its own descriptor
    proc.log = log
    port = wait_port(proc, log, timeout)
    if port is not None:
        return proc, port
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    raise RuntimeError("moonsock did not start (status %s):\n%s"
                       % (proc.returncode, log()))


def stop(proc, sig=signal.SIGTERM, timeout=20):
    """Signal proc (ours, by PID) and wait; returns its exit status.
    Kills it if it has not exited within timeout seconds."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def echo(sock, data):
    """Send data on sock and read until as many bytes came back (or the
    stream ended); return what came back."""
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def recv_line(sock):
    """Read from sock up to and including a newline (or the end of the
    stream); return the bytes read."""
    got = b""
    while not got.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        got += chunk
    return got


def wait_for(cond, timeout=5.0, step=0.01):
    """Poll cond() until it is true or timeout seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return bool(cond())


def raise_nofile(n):
    """Raise this process's descriptor limit towards n (for clients)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n if hard == resource.RLIM_INFINITY else min(n, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


class Checks:
    """One line per check, then 'N passed, N failed'; exit status."""

    def __init__(self):
        self.passed = self.failed = 0

    def __call__(self, cond, what):
        if cond:
            self.passed += 1
            print("ok   " + what)
        else:
            self.failed += 1
            print("FAIL " + what)
        sys.stdout.flush()
        return cond

    def finish(self):
        print("%d passed, %d failed" % (self.passed, self.failed))
        sys.exit(1 if self.failed else 0)
