"""What a taken-over worker cannot do (SPEC section 1), each tried by
the test build ./smtpd-test ("XTEST <HOOK>", testhooks.c): claim a
session for another client's address (the master learns the client
from the connection itself), or outlive --session-timeout (the master
kills it)."""

import os
import time

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


# ---------------------------------------------------------------- overstay

@pytest.mark.worker_deaths
def test_a_worker_that_overstays_its_session_is_killed(smtpd):
    srv = smtpd("--session-timeout", "2", "--grace", "1", "-t", "30",
                binary=SMTPD_TEST)
    with srv.session() as c:
        pid = worker_of(srv, c)
        start = time.monotonic()
        c.send("XTEST OVERSTAY\r\n")
        c.expect_closed(timeout=10.0)
        took = time.monotonic() - start
    # 2 s of session and 1 of grace from the claim, and the master's
    # one-second turn (its clock counts whole seconds)
    assert took <= 2 + 1 + 2.5, took
    assert_died(srv, pid, SIGKILL)
    over = events(srv, "worker_overstay", pid)
    assert len(over) == 1 and over[0]["level"] == "warning", over
    assert over[0]["client_ip"] == LOOPBACK

