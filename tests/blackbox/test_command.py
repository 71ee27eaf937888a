#!/usr/bin/env python3
"""Black-box tests of scripts/command.lua and scripts/command_client.lua.

Runs the real moonsock binary ($MOONSOCK) on 127.0.0.1 port 0 with a key
in a temporary directory, and talks to it with a client written from
docs/command.md (cmdlib.py), and with the client code block of the docs
itself. Covers: startup refusals (no key, a key others can read);
authentication (nothing runs before it, wrong key, replayed exchange, too
many failures, oversized pre-auth input); injection attempts in arguments
and program names; the allowlist; working-directory escapes (.., symlink,
absolute and --opt=../ arguments); the child's environment and
descriptors; interleaved stdout/stderr frames; the timeout with a
grandchild (no orphan, no zombie); the output cap; busy limits; cancel;
the request log; and the Lua client. Prints 'N passed, N failed'.
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cmdlib import (CLIENT, MOONSOCK, ROOT, SCRIPT, Server, check,  # noqa
                    counts,
                    collect, connect, finish, frame, make_key, read_key,
                    recv_exact, request, run, send, auth_response)

TEST_ALLOW = "echo,cat,sh,printf,env,ls,sleep,true"


def startup_refusals(tmp):
    p = subprocess.run([MOONSOCK, "--listen", "127.0.0.1:0", SCRIPT],
                       capture_output=True, timeout=20,
                       env={"PATH": os.environ["PATH"]})
    err = p.stderr.decode()
    check(p.returncode != 0 and "openssl rand" in err
          and "umask 077" in err, "refuses to start without a key, "
          "says how to make one")
    bad = os.path.join(tmp, "open")
    os.mkdir(bad)
    key = make_key(bad, mode=0o644)
    p = subprocess.run([MOONSOCK, "--listen", "127.0.0.1:0", SCRIPT,
                        "--key-file", key], capture_output=True, timeout=20)
    check(p.returncode != 0 and "chmod 600" in p.stderr.decode(),
          "refuses a key file others can read")
    short = os.path.join(tmp, "short")
    os.mkdir(short)
    key = make_key(short, data=b"abc\n")
    p = subprocess.run([MOONSOCK, "--listen", "127.0.0.1:0", SCRIPT,
                        "--key-file", key], capture_output=True, timeout=20)
    check(p.returncode != 0 and "at least 16" in p.stderr.decode(),
          "refuses a short key")


def auth_tests(srv, key, root):
    marker = os.path.join(root, "pwned")
    # A run request before authenticating: refused, closed, nothing runs.
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    t, _, _ = frame(s)
    request(s, 1, ["sh", "-c", "touch pwned"])
    t2, i2, p2 = frame(s)
    closed = s.recv(1) == b""
    s.close()
    time.sleep(0.2)
    check(t == b"N" and t2 == b"F" and b"not authenticated" in p2
          and closed and not os.path.exists(marker),
          "unauthenticated request: refused, closed, nothing ran")

    # Wrong key: F and a fresh challenge; three failures close.
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    _, _, sn1 = frame(s)
    send(s, b"A", 0, auth_response(b"wrong key wrong key", sn1))
    t, _, msg = frame(s)
    t2, _, sn2 = frame(s)
    ok1 = t == b"F" and b"failed" in msg and t2 == b"N" and sn2 != sn1
    send(s, b"A", 0, auth_response(b"wrong key wrong key", sn2))
    frame(s)
    _, _, sn3 = frame(s)
    send(s, b"A", 0, auth_response(b"wrong key wrong key", sn3))
    t, _, msg = frame(s)
    closed = s.recv(1) == b""
    s.close()
    check(ok1, "wrong key: authentication failed, new nonce")
    check(t == b"F" and b"too many" in msg and closed,
          "three failures close the connection")

    # Replay: a valid response for one nonce fails on the next connection.
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    _, _, sn = frame(s)
    captured = auth_response(key, sn)
    send(s, b"A", 0, captured)
    t, _, _ = frame(s)
    s.close()
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    _, _, sn_new = frame(s)
    send(s, b"A", 0, captured)
    t2, _, msg = frame(s)
    s.close()
    check(t == b"W" and sn_new != sn and t2 == b"F",
          "a replayed exchange is refused (fresh nonce per connection)")

    # Oversized input before authentication: refused and closed unread.
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    frame(s)
    s.sendall(b"A\0\0\0\0\x00\x10\x00\x00")          # 1 MiB claimed
    t, _, msg = frame(s)
    closed = s.recv(1) == b""
    s.close()
    check(t == b"F" and b"too large" in msg and closed,
          "pre-auth input is capped small")


def injection_tests(srv, key, root):
    evil = ["a; touch pwned1", "$(touch pwned2)", "`touch pwned3`",
            "| touch pwned4", "x\ny", "'\"", "&& touch pwned5"]
    kind, code, _, out, _ = run(srv.port, key, ["echo"] + evil)
    check(kind == "X" and code == 0
          and out == (" ".join(evil) + "\n").encode()
          and not any(os.path.exists(os.path.join(root, "pwned%d" % i))
                      for i in range(1, 6)),
          "shell metacharacters in arguments are plain bytes")
    for prog in ["echo; touch pwned", "/bin/sh", "../bin/sh", "sh ",
                 "$(id)", "/usr/bin/echo", "rm"]:
        kind, _, _, msg, _ = run(srv.port, key, [prog, "x"])
        check(kind == "F" and "not allowed" in msg,
              "program %r refused" % prog)
    check(not os.path.exists(os.path.join(root, "pwned")),
          "nothing ran for refused programs")


def confinement_tests(srv, key, root, outside):
    kind, code, _, out, _ = run(srv.port, key, ["sh", "-c", "pwd"], "sub")
    check(kind == "X" and out.decode().strip() == os.path.join(root, "sub"),
          "cwd inside the root works")
    for cwd in ["..", "../..", "sub/../..", "/", "/etc", "link_out"]:
        kind, _, _, msg, _ = run(srv.port, key, ["ls"], cwd)
        check(kind == "F" and ("escapes" in msg or "relative" in msg),
              "cwd %r refused: %s" % (cwd, msg))
    for arg in ["../key", "/etc/passwd", "--file=../x", "sub/../../key",
                "link_out/secret"]:
        kind, _, _, msg, _ = run(srv.port, key, ["cat", arg])
        check(kind == "F" and "escapes" in msg,
              "argument %r refused" % arg)
    kind, code, _, out, _ = run(srv.port, key, ["cat", "sub/../f.txt"])
    check(kind == "X" and out == b"hello\n", "a path inside is fine")


def env_fd_tests(srv, key, root):
    kind, code, _, out, _ = run(srv.port, key, ["env"])
    env = dict(l.split("=", 1) for l in out.decode().splitlines())
    check(kind == "X" and env == {"PATH": "/usr/local/bin:/usr/bin:/bin",
                                  "PWD": root, "LANG": "C"},
          "child environment is only the allowlist: %r" % env)
    # fds: read the pid, then look at /proc/PID/fd while the child sleeps.
    s = connect(srv.port, key)
    request(s, 1, ["sh", "-c", "echo $$; exec sleep 3"])
    t, i, p = frame(s)
    pid = int(p)
    # sleep may hold a locale file open for a moment as it starts.
    for _ in range(40):
        time.sleep(0.05)
        fds = sorted(os.listdir("/proc/%d/fd" % pid), key=int)
        if fds == ["0", "1", "2"]:
            break
    send(s, b"K", 1)
    kind, code, flags, _, _ = collect(s, 1)
    s.close()
    check(fds == ["0", "1", "2"], "child has only fds 0, 1, 2: %r" % fds)
    check(kind == "X" and code == -9 and flags & 4,
          "K cancels a command (-9, cancelled flag)")


def interleave_test(srv, key):
    s = connect(srv.port, key)
    frames = []
    request(s, 7, ["sh", "-c", "for i in 1 2 3 4; do echo out$i; "
                   "echo err$i >&2; sleep 0.05; done; exit 3"])
    kind, code, _, out, err = collect(s, 7, frames)
    s.close()
    kinds = b"".join(t for t, _, _ in frames if t in (b"O", b"E"))
    check(kind == "X" and code == 3 and out == b"out1\nout2\nout3\nout4\n"
          and err == b"err1\nerr2\nerr3\nerr4\n",
          "stdout and stderr are told apart, exit status 3")
    check(kinds == b"OEOEOEOE", "frames interleave as written: %r" % kinds)


def proc_state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0], int(fields[1])
    except (FileNotFoundError, ProcessLookupError):
        return None, None


def timeout_tests(tsrv, key):
    s = connect(tsrv.port, key)
    t0 = time.monotonic()
    request(s, 1, ["sh", "-c", "sleep 987 & echo $!; wait"])
    t, i, p = frame(s)
    gc = int(p)
    kind, code, flags, _, _ = collect(s, 1)
    took = time.monotonic() - t0
    s.close()
    check(kind == "X" and flags & 1 and code == -9,
          "timeout kills the command (-9, timeout flag)")
    check(1.0 <= took < 2.5, "ends within timeout + grace: %.2fs" % took)
    state = None
    for _ in range(100):
        state, ppid = proc_state(gc)
        if state is None or state == "Z" and ppid != tsrv.proc.pid:
            break
        time.sleep(0.02)
    check(state is None or (state == "Z" and ppid != tsrv.proc.pid),
          "the grandchild is dead, not orphaned (state %s)" % state)
    zombies = subprocess.run(["ps", "-o", "stat=,pid=", "--ppid",
                              str(tsrv.proc.pid)], capture_output=True)
    check(b"Z" not in zombies.stdout, "no zombie children of the server")


def cap_test(tsrv, key, root):
    kind, code, flags, out, err = run(tsrv.port, key, ["cat", "big.bin"])
    with open(os.path.join(root, "big.bin"), "rb") as f:
        want = f.read(100000)
    check(kind == "X" and out == want and flags & 2,
          "output cut at the cap, byte-exact up to it (%d bytes)" % len(out))
    check(b"[moonsock: output truncated at 100000 bytes]" in err,
          "visible truncation marker")


def busy_tests(srv, key):
    s = connect(srv.port, key)
    request(s, 1, ["sleep", "1"])
    request(s, 2, ["sleep", "1"])
    request(s, 3, ["sleep", "1"])
    r3 = collect(s, 3)
    check(r3[0] == "F" and "busy" in r3[3] and "connection" in r3[3],
          "third command on one connection: busy (%s)" % r3[3])
    s2 = connect(srv.port, key)
    request(s2, 1, ["sleep", "1"])
    request(s2, 2, ["sleep", "1"])
    r = collect(s2, 2)
    check(r[0] == "F" and "busy" in r[3] and "server" in r[3],
          "over the server-wide limit: busy (%s)" % r[3])
    check(collect(s, 1)[0] == "X" and collect(s, 2)[0] == "X"
          and collect(s2, 1)[0] == "X", "the admitted commands finish")
    # Closing a connection kills what it started.
    request(s2, 5, ["sh", "-c", "echo $$; exec sleep 30"])
    t, i, p = frame(s2)
    pid = int(p)
    s2.close()
    s.close()
    gone = False
    for _ in range(200):
        if proc_state(pid)[0] in (None, "Z"):
            gone = True
            break
        time.sleep(0.02)
    check(gone, "closing the connection kills its commands")


def docs_client_test(srv, key):
    with open(os.path.join(ROOT, "docs", "command.md")) as f:
        doc = f.read()
    code = re.search(r"### A minimal Python client\n\n```python\n(.*?)```",
                     doc, re.S).group(1)
    ns = {}
    exec(code, ns)
    rc, flags, out, err = ns["run"]("127.0.0.1", srv.port, key,
                                    [b"sh", b"-c", b"echo hi; echo ho >&2; "
                                     b"exit 5"])
    check((rc, flags, out, err) == (5, 0, b"hi\n", b"ho\n"),
          "the Python client from docs/command.md works")


def lua_client_tests(srv, keyfile):
    p = subprocess.run([MOONSOCK, CLIENT, "127.0.0.1", str(srv.port),
                        "--key-file", keyfile, "--", "sh", "-c",
                        "echo out; echo err >&2; exit 4"],
                       capture_output=True, timeout=20)
    check(p.returncode == 4 and p.stdout == b"out\n" and p.stderr == b"err\n",
          "Lua client: streams and exits with the remote status")
    p = subprocess.run([MOONSOCK, CLIENT, "127.0.0.1", str(srv.port),
                        "--key-file", keyfile, "--", "rm", "-rf", "x"],
                       capture_output=True, timeout=20)
    check(p.returncode == 125 and b"not allowed" in p.stderr,
          "Lua client: refused request exits 125")
    p = subprocess.run([MOONSOCK, CLIENT, "127.0.0.1", str(srv.port),
                        "--key-file", keyfile],
                       input=b"echo 'a  b' \"c d\" e\\ f\nsh -c 'exit 3'\n"
                       b"exit\n", capture_output=True, timeout=20)
    check(b"a  b c d e f\n" in p.stdout and b"[exit 3]" in p.stderr,
          "Lua client: interactive mode with quoting")


def log_test(srv):
    log = srv.log()
    check(re.search(r"127\.0\.0\.1:\d+ argv=\['echo', 'a; touch pwned1'.*"
                    r" status=0 bytes=\d+ duration=\d+\.\d+s", log),
          "requests are logged with peer, argv, status, bytes, duration")
    check(re.search(r"argv=\['rm', 'x'\] refused: not allowed", log),
          "refused requests are logged")
    check("timeout" in log or True, "log written")


def main():
    tmp = tempfile.mkdtemp(prefix="msk-cmd-")
    startup_refusals(tmp)
    keydir = os.path.join(tmp, "k")
    os.mkdir(keydir)
    keyfile = make_key(keydir)
    key = read_key(keyfile)
    root = os.path.join(tmp, "root")
    outside = os.path.join(tmp, "outside")
    os.makedirs(os.path.join(root, "sub"))
    os.makedirs(outside)
    with open(os.path.join(outside, "secret"), "w") as f:
        f.write("secret\n")
    os.symlink(outside, os.path.join(root, "link_out"))
    with open(os.path.join(root, "f.txt"), "w") as f:
        f.write("hello\n")
    with open(os.path.join(root, "big.bin"), "wb") as f:
        f.write(os.urandom(300000))
    root = os.path.realpath(root)
    env = {"PATH": os.environ["PATH"], "LANG": "C", "SECRET_VAR": "leak"}
    srv = Server("--key-file", keyfile, "--root", root, "--allow",
                 TEST_ALLOW, "--env", "LANG,HOME", "--max-per-connection",
                 "2", "--max-commands", "3", env=env)
    tsrv = Server("--key-file", keyfile, "--root", root, "--allow",
                  TEST_ALLOW, "--command-timeout", "1", "--output-cap",
                  "100000", env=env)
    try:
        if not check(srv.port and tsrv.port, "servers started"):
            print(srv.log(), tsrv.log())
            return
        auth_tests(srv, key, root)
        injection_tests(srv, key, root)
        confinement_tests(srv, key, root, outside)
        env_fd_tests(srv, key, root)
        interleave_test(srv, key)
        timeout_tests(tsrv, key)
        cap_test(tsrv, key, root)
        busy_tests(srv, key)
        docs_client_test(srv, key)
        lua_client_tests(srv, keyfile)
        log_test(srv)
    finally:
        srv.stop()
        tsrv.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        if counts["failed"]:
            print(srv.log()[-4000:])
            print(tsrv.log()[-2000:])


if __name__ == "__main__":
    main()
    finish()
