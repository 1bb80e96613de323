"""The C test programs, each printing "N passed, N failed":
tests/unit.c (parsers, the data reader, token, UTF-8, IDNA), tests/mime_test.c
(the MIME decoder against its corpus in tests/mime/) and
tests/banlist_test.c (the ban table against brute force, and under
concurrent publishing) and tests/tls_keyless_test.c (TLS handshakes of a
worker that holds no private key, whose memory is searched for it) and
tests/dmarc_test.c (DMARC records, the tree walk, alignment and the From
field parser, against a table of DNS answers) and tests/guard_test.c
(smtpd-relay's destination guard, relay_guard.c, on loopback) and
tests/relay_sandbox_test.c (the relay's and the fetcher's seccomp filters,
installed as they are: which sockets they may make, which kill).
tests/spf_test.c runs the RFC 7208 suite through
tests/test_spf_suite.py."""
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROGRAMS = {
    "unit": ["tests/unit"],
    "mime": ["tests/mime_test", "tests/mime"],
    "banlist": ["tests/banlist_test"],
    "tls-keyless": ["tests/tls_keyless_test"],
    "dmarc": ["tests/dmarc_test"],
    "guard": ["tests/guard_test"],
    "relay-sandbox": ["tests/relay_sandbox_test"],
}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_c_program_passes_every_check(name):
    argv = [os.path.join(ROOT, a) for a in PROGRAMS[name]]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith(" 0 failed"), r.stdout
