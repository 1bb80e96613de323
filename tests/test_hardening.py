"""The build hardens both programs (Makefile, HARDEN_CFLAGS and
HARDEN_LDFLAGS), checked as checksec does, with readelf (binutils):
stack canaries, FORTIFY_SOURCE, a position-independent executable and
full RELRO.  In the sanitizer pass the binaries are ASan's, built
without FORTIFY (its interceptors check instead): the FORTIFY check
then looks at the normal build beside them."""
import re
import subprocess

import pytest

from conftest import REPO, SANITIZER, SMTPD

PROGRAMS = ["smtpd", "smtpd-relay"]


def readelf(*args):
    r = subprocess.run(["readelf", "-W"] + list(args), capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


def binary(name):
    """The program under test: beside SMTPD (./asan in the sanitizer
    pass), else in the tree."""
    return str(SMTPD.parent / name)


def dynamic_symbols(path):
    """Names of the dynamic symbols path imports or defines."""
    names = set()
    for line in readelf("--dyn-syms", path).splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[0].endswith(":"):
            names.add(fields[7].split("@")[0])
    return names


@pytest.mark.parametrize("name", PROGRAMS)
def test_stack_canaries(name):
    assert "__stack_chk_fail" in dynamic_symbols(binary(name))


@pytest.mark.parametrize("name", PROGRAMS)
def test_fortify_source(name):
    path = str(REPO / name) if SANITIZER else binary(name)
    chk = sorted(s for s in dynamic_symbols(path)
                 if re.fullmatch(r"__\w+_chk", s) and
                 s != "__stack_chk_fail")
    assert chk, "no fortified libc function in %s" % path


@pytest.mark.parametrize("name", PROGRAMS)
def test_position_independent_executable(name):
    header = readelf("-h", binary(name))
    assert re.search(r"^\s*Type:\s+DYN\b", header, re.M), header


@pytest.mark.parametrize("name", PROGRAMS)
def test_full_relro(name):
    path = binary(name)
    assert re.search(r"^\s*GNU_RELRO\b", readelf("-l", path), re.M)
    dynamic = readelf("-d", path)
    # DT_BIND_NOW, DT_FLAGS with BIND_NOW or DT_FLAGS_1 with NOW
    assert re.search(r"\(BIND_NOW\)|\(FLAGS\)\s.*\bBIND_NOW\b|"
                     r"\(FLAGS_1\)\s.*\bNOW\b", dynamic), dynamic
