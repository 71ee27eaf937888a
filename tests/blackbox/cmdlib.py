"""Helpers shared by test_command*.py: a command server on 127.0.0.1:0
and a protocol client written from docs/command.md (not from the Lua
code), plus the check() counter. Not a test by itself."""

import hashlib
import hmac
import os
import socket
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from util import MOONSOCK, ROOT, capture, wait_port  # noqa: E402
SCRIPT = os.path.join(ROOT, "scripts", "command.lua")
CLIENT = os.path.join(ROOT, "scripts", "command_client.lua")

counts = {"passed": 0, "failed": 0}


def check(cond, what):
    counts["passed" if cond else "failed"] += 1
    print(("ok   " if cond else "FAIL ") + what)
    sys.stdout.flush()
    return cond


def finish():
    print("%d passed, %d failed" % (counts["passed"], counts["failed"]))
    sys.exit(1 if counts["failed"] else 0)


def make_key(dirname, mode=0o600, data=None):
    path = os.path.join(dirname, "key")
    with open(path, "wb") as f:
        f.write(data if data is not None else os.urandom(32).hex().encode()
                + b"\n")
    os.chmod(path, mode)
    return path


def read_key(path):
    with open(path, "rb") as f:
        return f.read().rstrip()


class Server:
    """moonsock scripts/command.lua on 127.0.0.1:0; stderr to a file."""

    def __init__(self, *args, env=None, cwd=None):
        err, self.log = capture()   # self.log(): stderr so far
        cmd = [MOONSOCK, "--listen", "127.0.0.1:0", SCRIPT, *args]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=err, cwd=cwd or ROOT,
                                     env=env)
        err.close()
        self.port = wait_port(self.proc, self.log)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---- the protocol, from docs/command.md ----------------------------------

def recv_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError
        b += c
    return b


def frame(s):
    t, i, n = struct.unpack(">cII", recv_exact(s, 9))
    return t, i, recv_exact(s, n)


def send(s, t, i, p=b""):
    s.sendall(struct.pack(">cII", t, i, len(p)) + p)


def auth_response(key, sn, cn=None):
    cn = cn or os.urandom(32)
    return cn + hmac.new(key, b"moonsock-command-1 client" + sn + cn,
                         hashlib.sha256).digest()


def connect(port, key, timeout=30):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    t, _, sn = frame(s)
    assert t == b"N", t
    cn = os.urandom(32)
    send(s, b"A", 0, auth_response(key, sn, cn))
    t, _, proof = frame(s)
    if t != b"W":
        raise RuntimeError("auth failed: %r %r" % (t, proof))
    want = hmac.new(key, b"moonsock-command-1 server" + sn + cn,
                    hashlib.sha256).digest()
    assert hmac.compare_digest(proof, want)
    return s


def request(s, cid, argv, cwd=b""):
    argv = [a if isinstance(a, bytes) else a.encode() for a in argv]
    cwd = cwd if isinstance(cwd, bytes) else cwd.encode()
    send(s, b"R", cid, b"".join(a + b"\0" for a in [cwd] + argv))


_stash = {}   # socket -> frames read for other ids, kept for later


def collect(s, cid, frames=None):
    """Read frames for cid until X or F -> (kind, code, flags, out, err).
    Frames for other ids are kept and replayed to their own collect()."""
    out, err = [], []
    pending = _stash.setdefault(s, [])
    while True:
        mine = [f for f in pending if f[1] == cid]
        if mine:
            pending.remove(mine[0])
            t, i, p = mine[0]
        else:
            t, i, p = frame(s)
        if frames is not None:
            frames.append((t, i, p))
        if i != cid:
            pending.append((t, i, p))
            continue
        if t == b"O":
            out.append(p)
        elif t == b"E":
            err.append(p)
        elif t == b"X":
            code, flags = struct.unpack(">iB", p)
            return "X", code, flags, b"".join(out), b"".join(err)
        elif t == b"F":
            return "F", None, None, p.decode(), b""


def run(port, key, argv, cwd=b""):
    s = connect(port, key)
    try:
        request(s, 1, argv, cwd)
        return collect(s, 1)
    finally:
        s.close()
