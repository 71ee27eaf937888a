#!/usr/bin/env python3
"""test_install.py -- cmake --install, then out-of-tree builds against it.

Installs the build tree into a temporary prefix and checks what a C or
Lua user expects there: the program, libmoonsock.so (with its SONAME
links) and .a, the two headers, moonsock.so for lua5.4, the scripts, the
man page, moonsock.pc and the CMake package config. Then builds
tests/embed/outoftree/hello_host.c twice -- with `pkg-config --cflags
--libs moonsock` and with find_package(moonsock) (shared and static
targets) -- and runs each against the installed library.
"""
import argparse
import glob
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import unittest

ARGS = None


def run(cmd, env=None, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env,
                       timeout=240, **kw)
    if p.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s\n%s" % (
            " ".join(cmd), p.returncode, p.stdout, p.stderr))
    return p.stdout


class Install(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="moonsock-install-")
        cls.prefix = os.path.join(cls.tmp, "prefix")
        run(["cmake", "--install", ARGS.build, "--prefix", cls.prefix])
        pcs = glob.glob(os.path.join(cls.prefix, "**", "moonsock.pc"),
                        recursive=True)
        assert len(pcs) == 1, pcs
        cls.pcdir = os.path.dirname(pcs[0])
        cls.libdir = os.path.dirname(cls.pcdir)
        cls.script = os.path.join(cls.tmp, "hello.lua")
        with open(cls.script, "w") as f:
            f.write('print(require("hello").greet("world"))\n')
        cls.env = dict(os.environ)
        cls.env["PKG_CONFIG_PATH"] = cls.pcdir
        cls.env["LD_LIBRARY_PATH"] = cls.libdir

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def path(self, *parts):
        return os.path.join(self.prefix, *parts)

    def test_files_are_in_place(self):
        rel = os.path.relpath(self.libdir, self.prefix)
        so = "libmoonsock.so." + ARGS.version
        for f in ["bin/moonsock", rel + "/libmoonsock.a",
                  rel + "/" + so, rel + "/libmoonsock.so",
                  rel + "/lua/5.4/moonsock.so",
                  "include/moonsock/msk.h", "include/moonsock/msk_host.h",
                  "share/moonsock/scripts/echo.lua",
                  "share/man/man1/moonsock.1",
                  "share/doc/moonsock/embedding.md",
                  "share/doc/moonsock/systemd.md",
                  "share/doc/moonsock/embed_chat.c",
                  rel + "/pkgconfig/moonsock.pc",
                  rel + "/cmake/moonsock/moonsockConfig.cmake",
                  rel + "/cmake/moonsock/moonsockConfigVersion.cmake"]:
            self.assertTrue(os.path.exists(self.path(f)), f)
        # The development link and the SONAME link lead to the library.
        self.assertEqual(os.path.realpath(self.path(rel, "libmoonsock.so")),
                         os.path.realpath(self.path(rel, so)))
        soname = run(["objdump", "-p", self.path(rel, so)])
        self.assertIn("libmoonsock.so.", soname)
        self.assertFalse(glob.glob(self.path("include", "moonsock",
                                             "msk_bind.h")))

    def test_installed_program(self):
        out = run([self.path("bin", "moonsock"), "--version"],
                  env=self.env)
        self.assertTrue(out.startswith("moonsock %s " % ARGS.version), out)

    def test_pkg_config_build(self):
        self.assertEqual(run(["pkg-config", "--modversion", "moonsock"],
                             env=self.env).strip(), ARGS.version)
        flags = run(["pkg-config", "--cflags", "--libs", "moonsock"],
                    env=self.env)
        exe = os.path.join(self.tmp, "hello_pc")
        run([ARGS.cc, "-std=c99", "-Wall", "-Wextra", "-Werror",
             *shlex.split(ARGS.cflags),
             os.path.join(ARGS.source, "hello_host.c"), "-o", exe,
             *shlex.split(flags)], env=self.env)
        out = run([exe, self.script], env=self.env)
        self.assertEqual(out, "hello, world, from hello_host %s\n"
                         "status 0\n" % ARGS.version)

    def test_find_package_build(self):
        bdir = os.path.join(self.tmp, "outoftree")
        env = dict(self.env)
        env.pop("LD_LIBRARY_PATH")     # the imported target's rpath does it
        run(["cmake", "-S", ARGS.source, "-B", bdir,
             "-DCMAKE_PREFIX_PATH=" + self.prefix,
             "-DMSK_WANT_VERSION=" + ARGS.version,
             "-DCMAKE_C_FLAGS=" + ARGS.cflags], env=env)
        run(["cmake", "--build", bdir], env=env)
        for exe in ("hello_host", "hello_host_static"):
            out = run([os.path.join(bdir, exe), self.script], env=env)
            self.assertEqual(out, "hello, world, from hello_host %s\n"
                             "status 0\n" % ARGS.version, exe)
        with open(os.path.join(bdir, "script_dir.txt")) as f:
            self.assertTrue(os.path.samefile(
                f.read(), self.path("share", "moonsock", "scripts")))
        # A version the package cannot satisfy is refused.
        major = int(ARGS.version.split(".")[0])
        p = subprocess.run(["cmake", "-S", ARGS.source,
                            "-B", bdir + "-bad",
                            "-DCMAKE_PREFIX_PATH=" + self.prefix,
                            "-DMSK_WANT_VERSION=%d.0" % (major + 1)],
                           capture_output=True, text=True, env=env,
                           timeout=120)
        self.assertNotEqual(p.returncode, 0)

    def test_plain_lua_finds_installed_module(self):
        env = dict(self.env)
        env["LUA_CPATH"] = os.path.join(self.libdir, "lua", "5.4", "?.so")
        if ARGS.lua_preload:
            env["LD_PRELOAD"] = ARGS.lua_preload
            env["ASAN_OPTIONS"] = "detect_leaks=0"
        out = run([ARGS.lua, "-e",
                   'local m = require "moonsock" '
                   'local a, b = m.socket.socketpair() a:sendall("x") '
                   'print(m.version, b:recv(1))'], env=env)
        self.assertEqual(out, "%s\tx\n" % ARGS.version)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--version", required=True)
    ap.add_argument("--cc", default="cc")
    ap.add_argument("--lua", default="lua5.4")
    ap.add_argument("--cflags", default="")
    ap.add_argument("--lua-preload", default="")
    ARGS, rest = ap.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
