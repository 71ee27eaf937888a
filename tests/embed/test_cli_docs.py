#!/usr/bin/env python3
"""test_cli_docs.py -- `moonsock --help`, docs/moonsock.1 and the version.

Every long option --help lists must be documented in the man page (and
the man page must not document options the program lacks); --version
and moonsock.pc must say the version CMake read from msk.h, the one
source of truth.

  test_cli_docs.py MOONSOCK MANPAGE VERSION PCFILE
"""
import re
import subprocess
import sys
import unittest

MOONSOCK, MANPAGE, VERSION, PCFILE = sys.argv[1:5]
OPT = re.compile(r"(?<![\w-])--([a-z][a-z0-9-]*)")


def man_text():
    with open(MANPAGE) as f:
        # roff writes a hyphen as \- ; undo that and font escapes.
        text = f.read().replace("\\-", "-")
    return re.sub(r"\\f[BIRP]", "", text)


class CliDocs(unittest.TestCase):

    def help_options(self):
        out = subprocess.run([MOONSOCK, "--help"], capture_output=True,
                             text=True, timeout=30, check=True).stdout
        opts = set(OPT.findall(out))
        self.assertIn("help", opts)
        return opts

    def test_every_help_option_is_in_the_man_page(self):
        documented = set(OPT.findall(man_text()))
        missing = self.help_options() - documented
        self.assertFalse(missing, "not in %s: %s" % (MANPAGE,
                                                     sorted(missing)))

    def test_man_page_documents_no_phantom_option(self):
        # Options described as .TP items must exist in --help.
        items = set(re.findall(r"^\.TP\n\.BI? --([a-z][a-z0-9-]*)",
                               man_text(), re.M))
        phantom = items - self.help_options()
        self.assertFalse(phantom, "in the man page only: %s" % phantom)

    def test_man_page_is_well_formed(self):
        text = man_text()
        self.assertRegex(text, r"(?m)^\.TH MOONSOCK 1 ")
        for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS",
                        "EXIT STATUS", "SEE ALSO"):
            self.assertRegex(text, r'(?m)^\.SH "?%s"?$' % section)

    def test_version_has_one_source(self):
        out = subprocess.run([MOONSOCK, "--version"], capture_output=True,
                             text=True, timeout=30, check=True).stdout
        self.assertTrue(out.startswith("moonsock %s " % VERSION), out)
        with open(PCFILE) as f:
            self.assertIn("\nVersion: %s\n" % VERSION, f.read())


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
