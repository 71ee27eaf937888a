#!/usr/bin/env python3
"""test_upload_crash.py -- kill -9 of the upload server mid-upload.

The server is killed (SIGKILL, no chance to clean up) while a 20 MiB body
is half sent. Then: no file under the final name, no file outside the
directory; a restarted server keeps the temporary, a `resume` PUT
continues from the bytes already on disk and the stored file hashes right.
A restart with --partial-ttl 0 removes an interrupted upload instead.
Server and client are test_upload.py's (the client written from the docs).
"""
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_upload import (Sandbox, Server, sha, final_names, parts,  # noqa
                         check_store)


def t_kill9_then_resume(sb):
    data = os.urandom(1 << 20) * 20
    srv = Server(sb.store)
    c = srv.client()
    c.put_start("big.bin", len(data), sha(data))
    c.sock.sendall(data[:len(data) // 2])
    # Wait until the server has written some of it, then kill it.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        p = parts(sb.store)
        if p and os.path.getsize(os.path.join(sb.store, p[0])) > (1 << 20):
            break
        time.sleep(0.02)
    srv.kill9()
    c.close()
    assert final_names(sb.store) == []
    assert len(parts(sb.store)) == 1
    have = os.path.getsize(os.path.join(sb.store, parts(sb.store)[0]))
    assert 0 < have <= len(data) // 2
    sb.check_outside()
    # Restart: the temporary is kept and the upload resumes.
    srv = Server(sb.store)
    try:
        c = srv.client()
        off = c.put("big.bin", data, "resume")
        assert off == have, (off, have)
        size, h, body = c.get("big.bin")
        assert h == sha(data) and body == data
        c.close()
        check_store(sb.store, {"big.bin": data})
        assert parts(sb.store) == []
    finally:
        srv.stop()


def t_restart_cleans(sb):
    data = os.urandom(3 << 20)
    srv = Server(sb.store)
    c = srv.client()
    c.put_start("gone.bin", len(data), sha(data))
    c.sock.sendall(data[:1 << 20])
    time.sleep(0.3)
    srv.kill9()
    c.close()
    assert final_names(sb.store) == [] and len(parts(sb.store)) == 1
    srv = Server(sb.store, "--partial-ttl", "0")
    try:
        assert parts(sb.store) == []
        c = srv.client()
        assert c.put("gone.bin", data, "resume") == 0
        c.close()
        check_store(sb.store, {"gone.bin": data})
    finally:
        srv.stop()


def main():
    passed = failed = 0
    for case in (t_kill9_then_resume, t_restart_cleans):
        sb = Sandbox()
        try:
            case(sb)
            sb.check_outside()
            print("ok   %s" % case.__name__)
            passed += 1
        except Exception:
            traceback.print_exc()
            print("FAIL %s" % case.__name__)
            failed += 1
        finally:
            sb.cleanup()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
