"""What a taken-over worker cannot do (SPEC section 1), each tried by
the test build ./smtpd-test ("XTEST <HOOK>", testhooks.c): claim a
session for another client's address (the master learns the client
from the connection itself)."""

import os

import pytest

from conftest import LOOPBACK, SMTPD_TEST, assert_reply
from test_sandbox import LOCALERR, assert_died, worker_of

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: worker pids are found through "
    "/proc, readable only by root")

SIGKILL = 9


def events(srv, name, pid=None):
    return [e for e in srv.logs(strict=False) if e.get("event") == name
            and (pid is None or e.get("pid") == pid)]


# ---------------------------------------------------------------- claim

@pytest.mark.worker_deaths
def test_a_claim_for_another_address_kills_the_worker_and_counts_nothing(
        smtpd):
    srv = smtpd("-p", "1", "--spare", "2", binary=SMTPD_TEST)
    with srv.session() as c:
        pid = worker_of(srv, c)
        c.send("XTEST CLAIM 192.0.2.7\r\n")
        c.expect_closed(timeout=3.0)
    assert_died(srv, pid, SIGKILL)
    errors = events(srv, "worker_protocol_error", pid)
    assert [e["error"] for e in errors] == \
        ["claim of another client's address"], errors
    # 127.0.0.1 still counts as itself: one session, the next refused
    with srv.session() as first:
        second = srv.connect()
        try:
            assert_reply(second.reply(), "421 4.7.0")
        finally:
            second.close()
        first.quit()

