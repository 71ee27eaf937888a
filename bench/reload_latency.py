#!/usr/bin/env python3
"""Reload latency: from a handler file written to the new code answering.

    MOONSOCK=build/moonsock python3 bench/reload_latency.py [N] [--poll MS]

Starts moonsock on a line handler in a temporary directory, keeps one
client asking "which version?" in a tight loop, rewrites the file N times
(default 30; alternately by rename and in place) and measures, for each
write, the time until the first answer from the new version. Prints the
median, 90th percentile and maximum. The aim (issue 3) is under 50 ms;
most of it is reload.lua's SETTLE_MS debounce (20 ms), which lets an
editor finish writing before the file is compiled. With --poll MS the
server watches by mtime polling instead of inotify (expect about MS/2
more).
"""

import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOONSOCK = os.environ.get("MOONSOCK", os.path.join(ROOT, "build",
                                                   "moonsock"))

HANDLER = """\
local H = {{}}
function H:handle()
  local f = self.request:makefile("rb")
  while f:readline() ~= "" do self:answer() end
end
function H:answer() self.request:sendall("{tag}\\n") end
return H
"""


def main():
    args = sys.argv[1:]
    poll = None
    if "--poll" in args:
        i = args.index("--poll")
        poll = args[i + 1]
        del args[i:i + 2]
    n = int(args[0]) if args else 30
    d = tempfile.mkdtemp(prefix="msk-bench-reload-")
    path = os.path.join(d, "handler.lua")
    with open(path, "w") as f:
        f.write(HANDLER.format(tag="v0"))
    cmd = [MOONSOCK, "--listen", "127.0.0.1:0"]
    if poll:
        cmd += ["--reload-poll", poll]
    errpath = os.path.join(d, "log")
    err = open(errpath, "ab")
    proc = subprocess.Popen(cmd + [path], stderr=err,
                            stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        port = None
        while port is None:
            with open(errpath) as g:
                m = re.search(r"listening on 127\.0\.0\.1:(\d+)", g.read())
            if m:
                port = int(m.group(1))
            elif time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("moonsock did not start")
            else:
                time.sleep(0.02)
        s = socket.create_connection(("127.0.0.1", port), 10)
        f = s.makefile("rb")

        def ask():
            s.sendall(b"?\n")
            return f.readline().strip().decode()
        assert ask() == "v0"
        lat = []
        for i in range(1, n + 1):
            tag = "v%d" % i
            text = HANDLER.format(tag=tag)
            time.sleep(0.1)                  # let the last reload settle
            t0 = time.perf_counter()
            if i % 2:
                with open(path + ".tmp", "w") as g:
                    g.write(text)
                os.replace(path + ".tmp", path)
            else:
                with open(path, "w") as g:
                    g.write(text)
            while ask() != tag:
                if time.perf_counter() - t0 > 5:
                    raise RuntimeError("version %s never answered" % tag)
            lat.append((time.perf_counter() - t0) * 1000)
        lat.sort()
        print("reload latency over %d writes (%s): median %.1f ms, "
              "p90 %.1f ms, max %.1f ms"
              % (n, "poll %s ms" % poll if poll else "inotify",
                 statistics.median(lat), lat[int(len(lat) * 0.9) - 1],
                 lat[-1]))
        f.close()
        s.close()
    finally:
        proc.terminate()
        proc.wait(15)
        err.close()
        with open(errpath) as g:
            errors = [l for l in g if re.search(r" (ERROR|WARN) ", l)]
        if errors:
            print("server log:", "".join(errors[:5]))
        for name in os.listdir(d):
            os.remove(os.path.join(d, name))
        os.rmdir(d)


if __name__ == "__main__":
    main()
