#!/usr/bin/env python3
"""Black-box tests of scripts/chat.lua and scripts/chat_client.lua.

Runs the real moonsock binary ($MOONSOCK) on 127.0.0.1 port 0 and talks to
it over loopback: the protocol and its commands, the tutorial's own Python
client, a slow reader, a 10 MiB line, a flood, an abrupt disconnect, the
operator console and the Lua client driven through pipes. Prints one line
per check and a final 'N passed, N failed'; exits non-zero on failure.
"""

import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from util import MOONSOCK, ROOT, capture, wait_port  # noqa: E402
CHAT = os.path.join(ROOT, "scripts", "chat.lua")
CLIENT = os.path.join(ROOT, "scripts", "chat_client.lua")

passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
        print("ok   " + what)
    else:
        failed += 1
        print("FAIL " + what)
    sys.stdout.flush()
    return cond


# ---- a server and clients ------------------------------------------------

class Server:
    """moonsock scripts/chat.lua on 127.0.0.1:0; stderr goes to a file."""

    def __init__(self, *chat_args, stdin=subprocess.DEVNULL,
                 stdout=subprocess.DEVNULL, shell_prefix=None):
        err, self.log = capture()   # self.log(): stderr so far
        cmd = [MOONSOCK, "--listen", "127.0.0.1:0", CHAT, *chat_args]
        if shell_prefix:
            # exec: moonsock must replace the shell, or terminate() would
            # stop the shell and leave the server running.
            cmd = ["sh", "-c", shell_prefix + ' exec "$@"', "sh", *cmd]
        self.proc = subprocess.Popen(cmd, stdin=stdin, stdout=stdout,
                                     stderr=err, cwd=ROOT)
        err.close()
        self.port = wait_port(self.proc, self.log)
        if self.port is None:
            self.stop()
            raise RuntimeError("server did not start:\n" + self.log())

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class Client:
    """A line-oriented test client. With a name it sends /nick first,
    which also releases the greeting at once."""

    def __init__(self, port, name=None, rcvbuf=None):
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""
        self.eof = False
        self.name = name
        if name:
            self.send("/nick %s\n" % name)
            self.expect("is now known as %s" % name)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def line(self, timeout=5.0):
        """One line without its newline, or None at timeout / EOF."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or self.eof:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return None
            except OSError:
                data = b""
            if not data:
                self.eof = True
                return None
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode("utf-8", "replace")

    def expect(self, pattern, timeout=5.0):
        """Read lines until one contains pattern (a str or regex)."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            line = self.line(max(deadline - time.monotonic(), 0))
            if line is None:
                raise AssertionError("expected %r, got %r" % (
                    pattern, [x[:100] for x in seen[-5:]]))
            seen.append(line)
            if (pattern in line if isinstance(pattern, str)
                    else pattern.search(line)):
                return line

    def lines(self, secs):
        """Every line that arrives within secs."""
        out = []
        deadline = time.monotonic() + secs
        while True:
            line = self.line(max(deadline - time.monotonic(), 0))
            if line is None:
                return out
            out.append(line)

    def closed(self, timeout=5.0):
        """True once the server has closed: read up to EOF."""
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            self.line(deadline - time.monotonic())
        return self.eof

    def close(self):
        self.sock.close()


def run(name, fn, *args):
    try:
        fn(*args)
    except Exception as e:  # a broken check must not stop the others
        check(False, "%s: %s: %s" % (name, type(e).__name__, e))


# ---- the checks ------------------------------------------------------------

def protocol(srv):
    a = Client(srv.port, "alice")
    b = Client(srv.port, "bob")
    a.expect("is now known as bob")
    a.send("hello there\r\n")
    check(a.expect("alice:") == "alice: hello there",
          "a message comes back to its sender, prefixed, CR stripped")
    check(b.expect("alice:") == "alice: hello there",
          "a message reaches the others in the room")
    b.send("/nick Alice\n")
    check("is taken" in b.expect("error"), "names are unique, any case")
    for bad in ("bob: x", "server", "1abc", "x" * 17, "é"):
        b.send("/nick %s\n" % bad)
        check("error" in b.expect("***"), "/nick refuses %r" % bad)
    b.send("/who\n")
    check(b.expect("in lobby") == "*** in lobby (2): alice, bob", "/who")
    b.send("/me waves\n")
    check(a.expect("waves") == "* bob waves", "/me")
    b.send("/msg alice psst\n")
    check(a.expect("psst") == "[pm from bob] psst", "/msg reaches its target")
    check(b.expect("psst") == "[pm to alice] psst", "/msg is confirmed")
    b.send("/msg nobody x\n")
    check("no one is called" in b.expect("error"), "/msg to an unknown")
    b.send("/frobnicate\n")
    check("unknown command" in b.expect("error"), "unknown command")
    b.send("//etc/passwd is a path\n")
    check(a.expect("passwd") == "bob: /etc/passwd is a path",
          "// sends a line that starts with /")
    b.send("/join Dev\n")
    check(a.expect("left lobby") == "*** bob left lobby (joined dev)",
          "/join tells the old room")
    check(b.expect("joined dev") == "*** bob joined dev",
          "/join tells the new room")
    b.send("in dev\n")
    b.expect("bob: in dev")
    a.send("/rooms\n")
    check(a.expect("rooms:") == "*** rooms: dev (1), lobby (1)", "/rooms")
    a.send("in lobby\n")
    a.expect("alice: in lobby")
    check(not any("in lobby" in x for x in b.lines(0.4)),
          "rooms are separate")
    b.send("/help\n")
    check(len([x for x in b.lines(0.4) if x.startswith("*** /")]) >= 8,
          "/help lists the commands")
    # Forgery: control characters, line breaks and bad UTF-8 are cleaned.
    b.send("/join lobby\n")
    a.expect("bob joined lobby")
    b.send(b"hi\ralice: fake\x1b[2K \xe2\x80\xaeevil \xff\xfe\x00x\n")
    got = a.expect("bob:")
    check(got == "bob: hialice: fake[2K evil \ufffd\ufffdx",
          "control chars, bidi and NUL removed, bad UTF-8 replaced: %r"
          % got)
    b.send("ok \u4f60\u597d \U0001F600\n")
    check(a.expect("bob: ok") == "bob: ok \u4f60\u597d \U0001F600",
          "valid UTF-8 passes unchanged")
    b.send("/quit see you\n")
    check(b.expect("bye") == "*** bye" and b.closed(), "/quit says bye")
    check(a.expect("bob left") == "*** bob left lobby (quit: see you)",
          "/quit tells the room once")
    # A line sent in pieces within the quiet period is one message.
    a.send("split ")
    time.sleep(0.05)
    a.send("line")
    check(a.expect("alice:") == "alice: split line",
          "pieces within the quiet period make one line")
    a.close()
    b.close()


TUTORIAL_CLIENT = '''
import socket  # the tutorial's client, verbatim but for input()
sk=socket.socket()
address=("127.0.0.1",8000)
sk.connect(address)
while True:
    data=input(">>>").strip()
    if data=="exit":
        sk.close()
        break
    sk.send(bytes(data,"utf-8"))
    data=str(sk.recv(1024),"utf-8")
    print("-->",data)
'''


def tutorial(srv):
    messages = ["hello", "how are you", "   spaced  ", "\u4f60\u597d",
                "last one"]
    feed = iter(messages + ["exit"])
    printed = []
    env = {"input": lambda prompt="": next(feed),
           "print": lambda *a: printed.append(" ".join(map(str, a)))}
    code = TUTORIAL_CLIENT.replace("8000", str(srv.port))
    t0 = time.monotonic()
    exec(compile(code, "tutorial_client.py", "exec"), env)
    took = time.monotonic() - t0
    check(len(printed) == len(messages),
          "tutorial client: one answer per message (%d)" % len(printed))
    ok = True
    for msg, out in zip(messages, printed):
        want = ": " + msg.strip() + "\n"
        if not (out.startswith("--> ") and out.endswith(want)):
            ok = False
            print("     sent %r, printed %r" % (msg, out))
    check(ok, "tutorial client: each answer is its own message, in step")
    check("Welcome" in printed[0], "tutorial client: greeting comes with "
          "the first answer")
    check(took < 5 * 1.0, "tutorial client: %d answers in %.2fs"
          % (len(messages), took))


def slow_reader(srv):
    """A client that stops reading is dropped; nobody else notices."""
    slow = Client(srv.port, "slow", rcvbuf=4096)
    watch = Client(srv.port, "watcher")
    senders = [Client(srv.port, "s%d" % i) for i in range(4)]
    line = ("x" * 3000 + "\n").encode()
    stop = threading.Event()

    def blast(c):
        # Paced, so that the clients that do read keep up: about 2.4 MB/s
        # reaches each of them.
        try:
            while not stop.is_set():
                c.send(line * 4)
                time.sleep(0.02)
        except OSError:
            pass

    def drain(c):
        while not stop.is_set() and not c.eof:
            c.line(0.2)
            c.buf = b""

    threads = [threading.Thread(target=blast, args=(c,)) for c in senders]
    threads += [threading.Thread(target=drain, args=(c,)) for c in senders]
    for t in threads:
        t.start()
    try:
        t0 = time.monotonic()
        got = watch.expect("slow left", timeout=30)
        print("     (dropped after %.1fs)" % (time.monotonic() - t0))
        check("output queue full" in got,
              "slow reader dropped: %r" % got[:80])
    finally:
        stop.set()
        for t in threads:
            t.join()
    watch.buf = b""
    watch.lines(0.3)
    watch.send("still here\n")
    check(watch.expect("watcher:", 5) == "watcher: still here",
          "others keep chatting after the drop")
    # The dropped client's socket is closed (after whatever it had).
    slow.sock.settimeout(10)
    total = 0
    try:
        while True:
            d = slow.sock.recv(1 << 20)
            if not d:
                break
            total += len(d)
    except OSError:
        pass
    check(True, "slow reader's connection ended after %d bytes" % total)
    for c in senders + [slow, watch]:
        c.close()


def long_line(srv):
    """10 MiB without a newline: refused, memory stays bounded."""
    other = Client(srv.port, "bystander")
    c = Client(srv.port, "longliner")
    rss0 = srv.rss_kib()
    peak = [rss0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            try:
                peak[0] = max(peak[0], srv.rss_kib())
            except OSError:
                return
            time.sleep(0.01)

    def sender():
        chunk = b"A" * 65536
        try:
            for _ in range(160):          # 10 MiB
                c.sock.sendall(chunk)
        except OSError:
            pass

    sampler = threading.Thread(target=sample)
    sampler.start()
    tx = threading.Thread(target=sender)
    tx.start()
    try:
        got = c.expect("error", timeout=10)
        check("line too long" in got, "long line refused: %r" % got)
        check(c.closed(10), "long line: connection closed")
    finally:
        tx.join()
        done.set()
        sampler.join()
    grew = peak[0] - rss0
    check(grew < 6 * 1024, "long line: server RSS grew %d KiB (< 6 MiB) "
          "for a 10 MiB line" % grew)
    check(other.expect("longliner left") ==
          "*** longliner left lobby (line too long)",
          "long line: the room is told")
    other.send("fine\n")
    check(other.expect("bystander:") == "bystander: fine",
          "long line: others unaffected")
    other.close()


def flood(srv):
    """A client sending as fast as it can is held to rate and burst."""
    watch = Client(srv.port, "floodwatch")
    f = Client(srv.port, "flooder")
    watch.lines(0.2)
    t0 = time.monotonic()
    f.send("".join("flood %d\n" % i for i in range(200)))
    got = [x for x in watch.lines(1.5) if x.startswith("flooder: ")]
    took = time.monotonic() - t0
    limit = 20 + 10 * took + 3
    check(0 < len(got) <= limit,
          "flood limited: %d messages in %.2fs (limit %d)"
          % (len(got), took, limit))
    check(got == ["flooder: flood %d" % i for i in range(len(got))],
          "flood: what passes is in order, nothing lost")
    watch.send("I can talk\n")
    check(watch.expect("floodwatch:", 3) == "floodwatch: I can talk",
          "flood: others are not slowed")
    f.close()
    watch.close()


def abrupt(srv):
    """A reset connection gives exactly one leave notice."""
    watch = Client(srv.port, "resetwatch")
    r = Client(srv.port, "resetter")
    watch.expect("is now known as resetter")
    r.send("half a line")
    r.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                      struct.pack("ii", 1, 0))
    r.sock.close()                        # RST, not FIN
    lines = watch.lines(1.5)
    leaves = [x for x in lines if "resetter left" in x]
    check(len(leaves) == 1, "abrupt disconnect: one leave notice %r"
          % leaves)
    watch.send("/who\n")
    check(watch.expect("in lobby") == "*** in lobby (1): resetwatch",
          "abrupt disconnect: gone from /who")
    watch.close()


def console():
    srv = Server(stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    out = []

    def reader():
        for line in srv.proc.stdout:
            out.append(line.decode("utf-8", "replace"))

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        a = Client(srv.port, "ann")
        b = Client(srv.port, "ben")
        a.expect("is now known as ben")
        srv.proc.stdin.write(b"hello from the operator\n")
        srv.proc.stdin.flush()
        check(a.expect("operator") == "server: hello from the operator",
              "console: a typed line goes to the room as 'server'")
        srv.proc.stdin.write(b"/who\n")
        srv.proc.stdin.flush()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(
                "ben" in x for x in out):
            time.sleep(0.05)
        check(any("2 connected" in x for x in out)
              and any(x.startswith("ann") for x in out), "console: /who")
        srv.proc.stdin.write(b"/kick ben spamming\n")
        srv.proc.stdin.flush()
        check("kicked by the operator: spamming" in b.expect("kicked"),
              "console: /kick tells the victim")
        check(b.closed(5), "console: /kick closes the connection")
        check(a.expect("ben left") ==
              "*** ben left lobby (kicked by the operator: spamming)",
              "console: /kick tells the room")
        srv.proc.stdin.close()             # end of the console only
        time.sleep(0.2)
        a.send("after eof\n")
        check(a.expect("ann:") == "ann: after eof",
              "console: end of stdin leaves the server running")
        a.close()
    finally:
        check(srv.stop() == 0, "console: SIGTERM stops cleanly")


def closed_stdin():
    srv = Server(shell_prefix="exec 0<&-;")
    try:
        a = Client(srv.port, "nostdin")
        a.send("works\n")
        check(a.expect("nostdin:") == "nostdin: works",
              "stdin closed: the server still serves")
        a.close()
    finally:
        srv.stop()


def lua_client(srv):
    """scripts/chat_client.lua driven through pipes."""
    peer = Client(srv.port, "peer")
    p = subprocess.Popen([MOONSOCK, CLIENT, "127.0.0.1", str(srv.port)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, cwd=ROOT)
    out = b""

    def read_until(pattern, timeout=5):
        nonlocal out
        deadline = time.monotonic() + timeout
        while pattern not in out and time.monotonic() < deadline:
            r, _, _ = select.select([p.stdout], [], [], 0.1)
            if r:
                d = os.read(p.stdout.fileno(), 65536)
                if not d:
                    break
                out += d
        return pattern in out

    p.stdin.write(b"/nick luaclient\n")
    p.stdin.flush()
    check(read_until(b"is now known as luaclient"), "lua client: /nick")
    peer.send("hi lua\n")
    check(read_until(b"peer: hi lua"),
          "lua client: prints messages as they arrive, unprompted")
    p.stdin.write("hello from lua \u00e9\n".encode())
    p.stdin.flush()
    check(peer.expect("luaclient:") == "luaclient: hello from lua \u00e9",
          "lua client: typed lines are sent")
    p.stdin.write(b"exit\n")
    p.stdin.flush()
    try:
        rc = p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = p.wait()
    read_until(b"\x00", 0.2)
    check(rc == 0 and b"*** bye" in out, "lua client: exit quits (rc %s)"
          % rc)
    check("luaclient left" in peer.expect("left"), "lua client: left")
    # End of input also quits; a server-side close ends the client too.
    p = subprocess.Popen([MOONSOCK, CLIENT, "127.0.0.1", str(srv.port)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        rc = p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = p.wait()
    check(rc == 0, "lua client: end of input quits (rc %s)" % rc)
    # On a terminal, Ctrl-C leaves cleanly.
    import pty
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(MOONSOCK, [MOONSOCK, CLIENT, "127.0.0.1", str(srv.port)])
    tty = b""

    def tty_read(secs, until):
        nonlocal tty
        deadline = time.monotonic() + secs
        while until not in tty and time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.05)
            if r:
                try:
                    tty += os.read(fd, 4096)
                except OSError:
                    break

    os.write(fd, b"/nick ttyuser\n")
    tty_read(5, b"known as ttyuser")
    os.write(fd, b"\x03")
    tty_read(5, b"disconnected")
    deadline = time.monotonic() + 5
    status = None
    while time.monotonic() < deadline:
        wpid, st = os.waitpid(pid, os.WNOHANG)
        if wpid:
            status = st
            break
        time.sleep(0.05)
    if status is None:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    os.close(fd)
    check(status == 0 and b"*** bye" in tty,
          "lua client on a terminal: Ctrl-C quits cleanly (status %s)"
          % status)
    p = subprocess.run([MOONSOCK, CLIENT, "127.0.0.1", "1"],
                       stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=10, cwd=ROOT)
    check(p.returncode == 1 and b"cannot connect" in p.stderr,
          "lua client: a refused connection is one clear line")
    peer.close()


def main():
    srv = Server()
    try:
        for name, fn in [("protocol", protocol), ("tutorial", tutorial),
                         ("lua_client", lua_client), ("abrupt", abrupt),
                         ("flood", flood), ("long_line", long_line)]:
            run(name, fn, srv)
        last = Client(srv.port, "lastone")
        t0 = time.monotonic()
        srv.proc.terminate()
        check(last.expect("shutting down") == "*** server shutting down"
              and last.closed(5), "SIGTERM: clients are told and closed")
        check(srv.proc.wait(10) == 0 and time.monotonic() - t0 < 5,
              "SIGTERM: the server stops at once (%.1fs), status 0"
              % (time.monotonic() - t0))
    finally:
        srv.stop()
    # A free rate, so that the slow reader's queue fills up quickly.
    srv = Server("--rate", "1000", "--burst", "100")
    try:
        run("slow_reader", slow_reader, srv)
    finally:
        srv.stop()
    run("console", console)
    run("closed_stdin", closed_stdin)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
