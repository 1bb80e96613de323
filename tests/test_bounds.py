"""What a taken-over worker cannot do (SPEC section 1), each tried by
the test build ./smtpd-test ("XTEST <HOOK>", testhooks.c): claim a
session for another client's address (the master learns the client
from the connection itself), outlive --session-timeout (the master
kills it), use the TLS key beyond its own handshake (the master refuses
and counts it), or make the relay reserve memory for a message it only
announces (the relay grows a channel's buffer as octets arrive)."""

import base64
import os
import time

import pytest

from conftest import (LOOPBACK, SMTPD_TEST, TOKEN, assert_reply,
                      make_message)
from test_health import metrics, start_health, value
from test_sandbox import LOCALERR, assert_died, worker_of
from test_tls import make_pair, starttls

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


# ---------------------------------------------------------------- signing

@pytest.fixture
def tls_pair(tmp_path):
    return make_pair(tmp_path / "tls")


def test_signatures_beyond_a_handshake_are_refused_logged_and_counted(
        smtpd, tls_pair):
    cert, key = tls_pair
    srv = start_health(smtpd, "--tls-cert", cert, "--tls-key", key,
                       binary=SMTPD_TEST)
    with srv.session() as c:
        pid = worker_of(srv, c)
        c.ehlo()
        r = c.cmd("XTEST SIGN 10")
        # two for the session's handshake, then nothing
        assert r.lines == [LOCALERR + "sign: 8 of 10 refused"], r.lines
        assert_reply(c.cmd("NOOP"), "250 2.0.0")
        c.quit()
    refused = events(srv, "tls_sign_refused", pid)
    assert len(refused) == 1 and refused[0]["level"] == "warning", refused
    assert refused[0]["reason"] == "more signatures than a handshake needs"
    vals, types = metrics(srv)
    assert types["smtpd_tls_signatures_total"] == "counter"
    assert value(vals, "smtpd_tls_signatures_total", result="refused") == 8
    assert value(vals, "smtpd_tls_signatures_total", result="signed") == 2


def test_starttls_after_its_handshake_cannot_sign_again(smtpd, tls_pair):
    cert, key = tls_pair
    srv = smtpd("--tls-cert", cert, "--tls-key", key, binary=SMTPD_TEST)
    with srv.session() as c:
        c.ehlo()
        starttls(c)
        c.ehlo()
        r = c.cmd("XTEST SIGN 10")
        assert r.lines[0].startswith(LOCALERR + "sign: "), r.lines
        refused = int(r.lines[0].split()[-4])
        assert refused >= 9, r.lines
        c.quit()


def test_a_reused_worker_signs_each_sessions_handshake(smtpd, tls_pair):
    cert, key = tls_pair
    srv = smtpd("--tls-cert", cert, "--tls-key", key, "--max-use", "10",
                "--spare", "1", binary=SMTPD_TEST)
    with srv.session() as c:
        spent = worker_of(srv, c)
        c.ehlo()
        assert c.cmd("XTEST SIGN 10").lines == \
            [LOCALERR + "sign: 8 of 10 refused"]
        c.quit()
    seen = []
    for _ in range(5):
        # two at once: the idle workers are the spent one and its spare
        pair = [srv.session(), srv.session()]
        try:
            for c in pair:
                seen.append(worker_of(srv, c))
                c.ehlo()
                starttls(c)
                c.ehlo()
                assert_reply(c.cmd("NOOP"), "250 2.0.0")
                c.quit()
        finally:
            for c in pair:
                c.close()
        if spent in seen:
            break
    assert spent in seen, (spent, seen)
    assert events(srv, "tls_sign_refused", spent)


# ---------------------------------------------------------------- relay

BUFFER_SESSIONS = 40


def test_announced_lengths_reserve_nothing_in_the_relay(smtpd, firm):
    """Each hooked worker announces the longest message the relay takes
    (32 times -s and 1 MB: 33 MB) and sends 64 octets of it; 40 of them
    announce more than the relay's whole budget (1 GB).  A message whose
    payload needs about 1 MB still gets 250."""
    srv = smtpd("-p", "100", "--spare", "4", api=firm.url,
                binary=SMTPD_TEST)
    held = []
    try:
        for _ in range(BUFFER_SESSIONS):
            c = srv.session(timeout=10)
            held.append(c)
            r = c.cmd("XTEST BUFFER")
            assert r.lines[0].startswith(LOCALERR + "channel: announced"), \
                r.lines
            assert r.lines[0].endswith("wrote 76"), r.lines
        time.sleep(0.5)         # the relay has read every header
        text = base64.b64encode(os.urandom(300000)).decode()
        body = "\r\n".join(text[i:i + 76] for i in range(0, len(text), 76))
        with srv.session(timeout=10) as c:
            r = c.deliver(make_message(body="please verify %s\r\n%s\r\n"
                                       % (TOKEN, body)))
            assert_reply(r, "250 2.0.0")
            c.quit()
    finally:
        for c in held:
            c.close()
    assert len(firm.wait_inbound(1)) == 1
