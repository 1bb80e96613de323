"""The fault-injection soak (bench/soak.py), 500 messages: smtpd against
a fake FIRM API that fails a fifth of the /inbound calls (500, 503, 429,
a stall past --api-timeout, a connection dropped before or after the
answer) while 20 clients send and retry.  The script checks the
invariants (250 only after a FIRM 2xx, the same Idempotency-Key on every
try, SPEC section 3's 451 for every fault, no worker death, no hang) and
exits 1 naming what broke; here it must exit 0."""

import subprocess
import sys

import pytest

from conftest import REPO, SMTPD

SCRIPT = REPO / "bench" / "soak.py"
MESSAGES = 500
SEED = 12           # fixed: the same faults for the same messages
RUN_LIMIT = 120     # --time-limit of the sending; ~15 s here
WAIT = RUN_LIMIT + 60


def test_soak_500_messages_with_a_failing_firm_api_keeps_every_invariant():
    if not SMTPD.exists():
        pytest.fail("smtpd binary not found at %s (run make)" % SMTPD)
    argv = [sys.executable, str(SCRIPT), "--binary", str(SMTPD),
            "--messages", str(MESSAGES), "--seed", str(SEED),
            "--concurrency", "20", "--api-timeout", "2",
            "--time-limit", str(RUN_LIMIT), "--quiet"]
    proc = subprocess.Popen(argv, cwd=str(REPO), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        out, err = proc.communicate(timeout=WAIT)
    except subprocess.TimeoutExpired:
        # SIGTERM first: the script then stops its smtpd and fakes
        proc.terminate()
        try:
            out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate(timeout=20)
        pytest.fail("soak.py did not finish within %ds:\n%s\n%s"
                    % (WAIT, out, err[-3000:]))
    assert proc.returncode == 0, "soak.py exited %d:\n%s\n%s" % (
        proc.returncode, out, err[-3000:])
    assert "soak: OK" in out, out
