#!/usr/bin/env python3
"""test_upload_disk.py -- the upload server on a full disk.

Mounts a 2 MiB tmpfs made for the test (needs root; elsewhere the test
says so and falls back to the documented equivalent: --reserve larger
than the free space, which exercises the same refusal path before the
body but not ENOSPC during it). Checks: a PUT bigger than the free space
is refused with NO_SPACE before any body byte; a disk that fills up
during the body (a file written beside the server after its OK SEND)
gives NO_SPACE with the temporary removed and nothing under the name;
and afterwards, with space freed, the same upload succeeds.
"""
import os
import subprocess
import sys
import tempfile
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_upload import (Server, Reply, sha, final_names, parts,  # noqa
                         expect_err, check_store)


def mount_tmpfs(path):
    if os.geteuid() != 0:
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs",
                        path], capture_output=True)
    return r.returncode == 0


def t_full_disk(store):
    srv = Server(store, "--reserve", "0")
    try:
        c = srv.client()
        big = os.urandom(3 << 20)
        expect_err("NO_SPACE", c.put_start, "big", len(big), sha(big))
        c.close()
        assert final_names(store) == [] and parts(store) == []
        # Fits when asked, then the disk fills behind the server's back.
        data = os.urandom(1536 * 1024)
        c = srv.client()
        assert c.put_start("fill", len(data), sha(data)) == 0
        filler = os.path.join(store, "filler")
        with open(filler, "wb") as f:
            try:
                f.write(b"\0" * (1 << 20))
                f.flush()
            except OSError:
                pass
        try:
            c.sock.sendall(data)
        except OSError:
            pass        # the server may close before taking it all
        expect_err("NO_SPACE", c.ok)
        c.close()
        assert "fill" not in final_names(store)
        assert parts(store) == [], parts(store)
        # Room again: the same upload now succeeds.
        os.unlink(filler)
        c = srv.client()
        c.put("fill", data)
        c.close()
        check_store(store, {"fill": data})
    finally:
        srv.stop()


def t_reserve_equivalent(store):
    srv = Server(store, "--reserve", "1000000G")
    try:
        c = srv.client()
        expect_err("NO_SPACE", c.put_start, "x", 10, sha(b"0123456789"))
        c.close()
        assert final_names(store) == [] and parts(store) == []
    finally:
        srv.stop()


def main():
    passed = failed = 0
    top = tempfile.mkdtemp(prefix="msk-disk-")
    store = os.path.join(top, "store")
    os.mkdir(store)
    mounted = mount_tmpfs(store)
    cases = [t_reserve_equivalent]
    if mounted:
        cases.append(t_full_disk)
    else:
        print("note: cannot mount a tmpfs here; ENOSPC mid-body not tested")
    try:
        for case in cases:
            try:
                case(store)
                print("ok   %s" % case.__name__)
                passed += 1
            except Exception:
                traceback.print_exc()
                print("FAIL %s" % case.__name__)
                failed += 1
            for n in os.listdir(store):
                os.unlink(os.path.join(store, n))
    finally:
        if mounted:
            subprocess.run(["umount", store])
        os.rmdir(store)
        os.rmdir(top)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
