#!/usr/bin/env python3
"""test_upload.py -- black-box tests of scripts/upload.lua.

Runs the real moonsock binary ($MOONSOCK) with the upload handler on
127.0.0.1 port 0 and talks to it with a Python client written from
docs/upload.md alone (the Client class below), checking hashes end to end
for sizes 0, 1, 64 KiB and 100 MiB, every bad name, a planted symlink,
size lies both ways, a wrong hash, a disconnect mid-upload, resume of
uploads and downloads, overwrite, concurrent uploads to one name, the
limits, and the Lua client's exit codes. After every case: nothing
partial under a final name and nothing written outside the directory.
The other test_upload_*.py files import Server and Client from here.
"""
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
MOONSOCK = os.environ.get("MOONSOCK", os.path.join(ROOT, "build",
                                                    "moonsock"))
SERVER = os.path.join(ROOT, "scripts", "upload.lua")
CLIENT = os.path.join(ROOT, "scripts", "upload_client.lua")
PART_PREFIX = ".moonsock-part-"


class Server:
    """moonsock scripts/upload.lua on 127.0.0.1:0; stderr collected."""

    def __init__(self, store, *args, port=0):
        self.store = store
        self.args = args
        self.log = []
        self.proc = subprocess.Popen(
            [MOONSOCK, "--listen", "127.0.0.1:%d" % port, SERVER,
             "--dir", store] + list(args),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        self.port = None
        deadline = time.monotonic() + 20
        while self.port is None:
            line = self.proc.stderr.readline().decode(errors="replace")
            if line == "":
                raise RuntimeError("server exited: %s" % "".join(self.log))
            self.log.append(line)
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
        self.drain = threading.Thread(target=self._drain, daemon=True)
        self.drain.start()

    def _drain(self):
        for line in self.proc.stderr:
            self.log.append(line.decode(errors="replace"))

    def client(self, timeout=60):
        return Client(self.port, timeout)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.drain.join(5)

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self.drain.join(5)


class Reply(Exception):
    """An ERR line: .code and .msg."""

    def __init__(self, line):
        super().__init__(line)
        parts = line.split(" ", 2)
        self.code = parts[1] if len(parts) > 1 else ""
        self.msg = parts[2] if len(parts) > 2 else ""


class Client:
    """The protocol of docs/upload.md, nothing more."""

    def __init__(self, port, timeout=60):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout)
        self.buf = b""

    def close(self):
        self.sock.close()

    def line(self):
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("connection closed")
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()

    def ok(self):
        line = self.line()
        if line.startswith("ERR "):
            raise Reply(line)
        assert line.startswith("OK"), line
        return line[3:]

    def exact(self, n):
        out = [self.buf[:n]]
        got = len(out[0])
        self.buf = self.buf[n:]
        while got < n:
            data = self.sock.recv(min(1 << 20, n - got))
            if not data:
                raise EOFError("short body: %d of %d" % (got, n))
            out.append(data)
            got += len(data)
        return b"".join(out)

    def request(self, line):
        if isinstance(line, str):
            line = line.encode()
        self.sock.sendall(line + b"\n")

    def put_start(self, name, size, sha, flags="-"):
        if isinstance(name, str):
            name = name.encode()
        self.request(b"PUT %d %s %s " % (size, sha.encode(), flags.encode())
                     + name)
        rest = self.ok()
        m = re.fullmatch(r"SEND (\d+)", rest)
        assert m, rest
        return int(m.group(1))

    def put(self, name, data, flags="-", sha=None, size=None):
        sha = sha or hashlib.sha256(data).hexdigest()
        size = len(data) if size is None else size
        off = self.put_start(name, size, sha, flags)
        self.sock.sendall(data[off:])
        rest = self.ok()
        assert rest == "STORED %d %s" % (size, sha), rest
        return off

    def get(self, name, offset=0):
        if isinstance(name, str):
            name = name.encode()
        self.request(b"GET %d " % offset + name)
        size, sha = self.ok().split(" ")
        body = self.exact(int(size) - offset)
        return int(size), sha, body

    def stat(self, name):
        if isinstance(name, str):
            name = name.encode()
        self.request(b"STAT " + name)
        size, mtime, sha = self.ok().split(" ")
        return int(size), int(mtime), sha

    def list(self):
        self.request("LIST")
        n = int(self.ok())
        out = []
        for _ in range(n):
            size, mtime, name = self.line().split(" ", 2)
            out.append((name, int(size)))
        return out


def expect_err(code, fn, *args):
    try:
        fn(*args)
    except Reply as r:
        assert r.code == code, "want %s, got %s" % (code, r)
        return r
    raise AssertionError("want ERR %s, got success" % code)


def sha(data):
    return hashlib.sha256(data).hexdigest()


def final_names(store):
    return sorted(n for n in os.listdir(store)
                  if not n.startswith(PART_PREFIX))


def parts(store):
    return sorted(n for n in os.listdir(store) if n.startswith(PART_PREFIX))


class Sandbox:
    """A temp tree: top/store (the server's), top/outside (a target for
    symlinks); snapshot() of everything but store, to prove nothing was
    written outside the directory."""

    def __init__(self):
        self.top = tempfile.mkdtemp(prefix="msk-upload-")
        self.store = os.path.join(self.top, "store")
        self.outside = os.path.join(self.top, "outside")
        os.mkdir(self.store)
        os.mkdir(self.outside)
        with open(os.path.join(self.outside, "secret"), "wb") as f:
            f.write(b"secret\n")
        self.before = self.snapshot()

    def snapshot(self):
        snap = {}
        for dirpath, dirs, files in os.walk(self.top):
            if dirpath == self.store:
                continue
            for n in files + dirs:
                p = os.path.join(dirpath, n)
                if p == self.store:
                    continue
                st = os.lstat(p)
                snap[p] = (st.st_size, st.st_mtime_ns)
        return snap

    def check_outside(self):
        assert self.snapshot() == self.before, "something changed outside"
        for n in os.listdir("/tmp"):
            assert not n.startswith("evil"), n

    def cleanup(self):
        shutil.rmtree(self.top, ignore_errors=True)


def check_store(store, expected):
    """Final names are exactly expected {name: bytes}, whole."""
    assert final_names(store) == sorted(expected), \
        (final_names(store), sorted(expected))
    for name, data in expected.items():
        with open(os.path.join(store, name), "rb") as f:
            assert f.read() == data, "content of %s" % name


# ---------------------------------------------------------------------------

def t_sizes(sb, srv):
    stored = {}
    for size in (0, 1, 64 * 1024, 100 * 1024 * 1024):
        data = os.urandom(size) if size <= 1 << 20 else \
            (os.urandom(1 << 20) * (size >> 20))
        name = "file-%d.bin" % size
        c = srv.client()
        t0 = time.monotonic()
        c.put(name, data)
        t1 = time.monotonic()
        got_size, got_sha, body = c.get(name)
        t2 = time.monotonic()
        assert got_size == size and got_sha == sha(data) and body == data
        assert sha(body) == got_sha
        assert c.stat(name)[2] == sha(data)
        c.close()
        stored[name] = data
        if size >= 1 << 20:
            mib = size / (1 << 20)
            print("  %d MiB: upload %.0f MB/s, download %.0f MB/s"
                  % (mib, size / (t1 - t0) / 1e6, size / (t2 - t1) / 1e6))
    check_store(sb.store, stored)
    assert parts(sb.store) == []
    c = srv.client()
    assert sorted(c.list()) == sorted((n, len(d)) for n, d in stored.items())
    # A download resumed from an offset, and an offset past the end.
    name = "file-65536.bin"
    size, h, tail = c.get(name, 1000)
    assert size == 65536 and sha(stored[name][:1000] + tail) == h
    size, h, tail = c.get(name, 65536)
    assert tail == b""
    expect_err("BAD_OFFSET", c.get, name, 65537)
    expect_err("NOT_FOUND", c.get, "no-such-file")
    expect_err("NOT_FOUND", c.stat, "no-such-file")
    c.close()


BAD_NAMES = [
    b"", b".", b"..", b"a/b", b"/etc/passwd", b"../outside/secret",
    b"..\\x", b"a\\b", b"a\x00b", b"\x01", b"tab\there", b"del\x7f",
    b"cr\rx", b"x" * 256, b"\xff\xfe", b"\xc2\x85next-line",
    b".moonsock-part-abc", b".moonsock-anything",
]


def t_bad_names(sb, srv):
    data = b"hello"
    for name in BAD_NAMES:
        c = srv.client()
        r = expect_err("BAD_NAME", c.put, name, data)
        c.close()
        c = srv.client()
        expect_err("BAD_NAME", c.get, name)
        c.close()
        assert final_names(sb.store) == [] and parts(sb.store) == [], name
    # 255 bytes is fine; a name with spaces and UTF-8 too.
    c = srv.client()
    ok = {"y" * 255: b"a", "with space and ü": b"b", "x\u00e9": b""}
    for n, d in ok.items():
        c.put(n, d)
    c.close()
    check_store(sb.store, ok)
    sb.check_outside()


def t_symlink(sb, srv):
    secret = os.path.join(sb.outside, "secret")
    os.symlink(secret, os.path.join(sb.store, "evil"))
    os.symlink(sb.outside, os.path.join(sb.store, "evildir"))
    c = srv.client()
    expect_err("NOT_A_FILE", c.get, "evil")
    expect_err("NOT_A_FILE", c.stat, "evil")
    expect_err("NOT_A_FILE", c.get, "evildir")
    c.close()
    for flags in ("-", "overwrite"):
        c = srv.client()
        expect_err("NOT_A_FILE", c.put, "evil", b"pwned", flags)
        c.close()
        c = srv.client()
        expect_err("NOT_A_FILE", c.put, "evildir", b"pwned", flags)
        c.close()
    assert open(secret, "rb").read() == b"secret\n"
    c = srv.client()
    names = [n for n, _ in c.list()]
    c.close()
    assert "evil" not in names and "evildir" not in names
    assert os.path.islink(os.path.join(sb.store, "evil"))
    os.unlink(os.path.join(sb.store, "evil"))
    os.unlink(os.path.join(sb.store, "evildir"))
    assert final_names(sb.store) == [] and parts(sb.store) == []
    sb.check_outside()


def t_size_lies(sb, srv):
    data = os.urandom(100000)
    # Fewer bytes than declared, then a half-close: SHORT_BODY.
    c = srv.client()
    off = c.put_start("short", len(data), sha(data))
    assert off == 0
    c.sock.sendall(data[:40000])
    c.sock.shutdown(socket.SHUT_WR)
    expect_err("SHORT_BODY", c.ok)
    c.close()
    assert final_names(sb.store) == []
    assert len(parts(sb.store)) == 1        # kept for a resume
    # ... which a resume completes.
    c = srv.client()
    off = c.put("short", data, "resume")
    assert off == 40000, off
    c.close()
    check_store(sb.store, {"short": data})
    assert parts(sb.store) == []
    # More bytes than declared, hashed whole: HASH_MISMATCH, temp gone.
    c = srv.client()
    c.put_start("long", 50000, sha(data))
    c.sock.sendall(data)
    expect_err("HASH_MISMATCH", c.ok)
    c.close()
    # More bytes than declared, the declared part hashed: stored as
    # declared, the extra bytes are a (bad) next request.
    c = srv.client()
    c.put_start("long2", 50000, sha(data[:50000]))
    c.sock.sendall(data[:60000])
    assert c.ok() == "STORED 50000 %s" % sha(data[:50000])
    expect_err("BAD_REQUEST", c.ok)
    c.close()
    check_store(sb.store, {"short": data, "long2": data[:50000]})
    assert parts(sb.store) == []
    sb.check_outside()


def t_wrong_hash(sb, srv):
    data = os.urandom(300000)
    c = srv.client()
    expect_err("HASH_MISMATCH", c.put, "h", data, "-", sha(b"other"))
    c.close()
    c = srv.client()
    expect_err("BAD_REQUEST", c.put, "h", data, "-", "abc")
    c.close()
    assert final_names(sb.store) == [] and parts(sb.store) == []


def t_disconnect(sb, srv):
    data = os.urandom(2 << 20)
    c = srv.client()
    c.put_start("cut", len(data), sha(data))
    c.sock.sendall(data[:1 << 20])
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                      b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
    c.close()
    time.sleep(0.3)
    assert final_names(sb.store) == []
    # The server is fine and the next client is served.
    c = srv.client()
    c.put("after", b"ok")
    # The same upload resumes from what arrived before the reset.
    off = c.put("cut", data, "resume")
    assert 0 < off <= 1 << 20, off
    c.close()
    check_store(sb.store, {"after": b"ok", "cut": data})
    assert parts(sb.store) == []


def t_overwrite_and_race(sb, srv):
    c = srv.client()
    c.put("x", b"one")
    expect_err("EXISTS", c.put, "x", b"two")
    c.close()
    c = srv.client()
    c.put("x", b"two", "overwrite")
    c.close()
    check_store(sb.store, {"x": b"two"})
    # Two uploads to one new name at once: exactly one stored, whole.
    a, b = os.urandom(3 << 20), os.urandom(3 << 20)
    ca, cb = srv.client(), srv.client()
    ca.put_start("race", len(a), sha(a))
    cb.put_start("race", len(b), sha(b))
    ta = threading.Thread(target=ca.sock.sendall, args=(a,))
    tb = threading.Thread(target=cb.sock.sendall, args=(b,))
    ta.start(); tb.start(); ta.join(); tb.join()
    results = []
    for cl in (ca, cb):
        try:
            results.append(cl.ok())
        except Reply as r:
            results.append(r.code)
        cl.close()
    assert sorted(r.split(" ")[0] for r in results) == ["EXISTS", "STORED"]
    winner = a if results[0].startswith("STORED") else b
    check_store(sb.store, {"x": b"two", "race": winner})
    # The same upload twice at once: the second is BUSY.
    ca, cb = srv.client(), srv.client()
    ca.put_start("same", len(a), sha(a))
    expect_err("BUSY", cb.put_start, "same", len(a), sha(a))
    ca.sock.sendall(a)
    ca.ok()
    ca.close(); cb.close()
    assert parts(sb.store) == []


def t_limits(sb):
    srv = Server(sb.store, "--max-size", "1M", "--max-transfers", "1",
                 "--idle-timeout", "1")
    try:
        c = srv.client()
        # Refused before any body byte: the reply comes without one.
        expect_err("TOO_LARGE", c.put_start, "big", 2 << 20, sha(b""))
        c.close()
        c = srv.client()
        c.put_start("held", 10, sha(b"0123456789"))
        c2 = srv.client()
        expect_err("BUSY", c2.put_start, "other", 1, sha(b"1"))
        c2.close()
        c.sock.sendall(b"0123456789")
        assert c.ok().startswith("STORED")
        # Idle: the server says so and closes.
        t0 = time.monotonic()
        expect_err("TIMEOUT", c.ok)
        assert 0.5 < time.monotonic() - t0 < 10
        c.close()
        # Idle mid-body: the temporary stays for a resume, no final name.
        c = srv.client()
        c.put_start("slow", 10, sha(b"abcdefghij"))
        c.sock.sendall(b"abc")
        expect_err("TIMEOUT", c.ok)
        c.close()
        assert "slow" not in final_names(sb.store)
        c = srv.client()
        assert c.put("slow", b"abcdefghij", "resume") == 3
        c.close()
    finally:
        srv.stop()


def t_protocol(sb, srv):
    c = srv.client()
    c.request("HELLO")
    expect_err("BAD_REQUEST", c.ok)
    c.close()
    c = srv.client()
    c.request("x" * 5000)
    expect_err("BAD_REQUEST", c.ok)
    c.close()
    c = srv.client()
    c.request("PUT 1 %s bogus a" % sha(b"a"))
    expect_err("BAD_REQUEST", c.ok)
    c.close()
    c = srv.client()
    c.sock.sendall(b"STAT nope\r\n")   # CRLF is fine
    expect_err("NOT_FOUND", c.ok)
    c.put("crlf", b"z")
    assert c.stat("crlf")[0] == 1
    c.close()


def run_client(*args, ok=True):
    p = subprocess.run([MOONSOCK, CLIENT] + list(args),
                       stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=120)
    if ok:
        assert p.returncode == 0, (p.returncode, p.stderr)
    return p


def t_lua_client(sb, srv):
    work = tempfile.mkdtemp(prefix="msk-client-", dir=sb.top)
    src = os.path.join(work, "src.bin")
    data = os.urandom(3 << 20)
    with open(src, "wb") as f:
        f.write(data)
    port = str(srv.port)
    p = run_client("put", "127.0.0.1", port, src, "viaclient")
    assert p.stdout == b"" and p.stderr == b"", p   # quiet off a tty
    p = run_client("put", "127.0.0.1", port, src, "viaclient", ok=False)
    assert p.returncode == 1 and b"ERR EXISTS" in p.stderr, p
    dst = os.path.join(work, "dst.bin")
    run_client("get", "127.0.0.1", port, "viaclient", dst)
    assert open(dst, "rb").read() == data
    p = run_client("get", "127.0.0.1", port, "nope", dst + "2", ok=False)
    assert p.returncode == 1 and b"ERR NOT_FOUND" in p.stderr
    assert not os.path.exists(dst + "2")
    # A download resumed from a partial FILE.part.
    with open(dst + "3.part", "wb") as f:
        f.write(data[:12345])
    run_client("get", "127.0.0.1", port, "viaclient", dst + "3", "--resume")
    assert open(dst + "3", "rb").read() == data
    # A corrupt FILE.part: the hash check catches it, nothing at FILE.
    with open(dst + "4.part", "wb") as f:
        f.write(b"\0" * 100)
    p = run_client("get", "127.0.0.1", port, "viaclient", dst + "4",
                   "--resume", ok=False)
    assert p.returncode == 1 and b"hash mismatch" in p.stderr, p
    assert not os.path.exists(dst + "4")
    p = run_client("list", "127.0.0.1", port)
    assert b"viaclient" in p.stdout
    p = run_client("stat", "127.0.0.1", port, "viaclient")
    assert sha(data).encode() in p.stdout
    p = run_client("bogus", "127.0.0.1", port, ok=False)
    assert p.returncode == 2
    shutil.rmtree(work)


def main():
    passed = failed = 0
    cases = [t_sizes, t_bad_names, t_symlink, t_size_lies, t_wrong_hash,
             t_disconnect, t_overwrite_and_race, t_protocol, t_lua_client]
    for case in cases + [t_limits]:
        sb = Sandbox()
        srv = None
        try:
            if case is t_limits:
                case(sb)
            else:
                srv = Server(sb.store)
                case(sb, srv)
                assert srv.proc.poll() is None, "server died"
                srv.stop()
                assert srv.proc.returncode == 0, \
                    "server exit status %d" % srv.proc.returncode
            sb.check_outside()
            print("ok   %s" % case.__name__)
            passed += 1
        except Exception:
            traceback.print_exc()
            if srv:
                sys.stderr.write("".join(srv.log[-30:]))
            print("FAIL %s" % case.__name__)
            failed += 1
        finally:
            if srv:
                srv.stop()
            sb.cleanup()
        sys.stdout.flush()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
