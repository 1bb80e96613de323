"""Admission under load (issue 21): junk commands, per-address rates
and stress mode, each ending a session with a reply and a log line,
never with its worker's death."""

import time

import pytest

from conftest import SMTPD_TEST, assert_reply, make_message, wait_for
from test_health import metrics, start_health, value


def test_the_101st_noop_gets_421_and_no_worker_dies(smtpd):
    srv = start_health(smtpd)
    deaths = value(metrics(srv)[0], "smtpd_worker_deaths_total")
    with srv.session() as c:
        c.ehlo()
        c.send(b"NOOP\r\n" * 101)
        replies = c.replies(101)
        for r in replies[:100]:
            assert_reply(r, "250 2.0.0")
        assert_reply(replies[100], "421 4.7.0")
        c.expect_closed()
    assert wait_for(lambda: any(
        e.get("event") == "disconnect" and
        e.get("reason") == "junk-commands" for e in srv.logs()), 5)
    assert value(metrics(srv)[0], "smtpd_worker_deaths_total") == deaths


def test_100_noops_then_a_message_is_still_accepted(smtpd):
    srv = smtpd()
    with srv.session() as c:
        c.ehlo()
        c.send(b"NOOP\r\n" * 100)
        for r in c.replies(100):
            assert_reply(r, "250 2.0.0")
        assert_reply(c.deliver(make_message(), helo=None), "250 2.0.0")
        c.quit()


def test_repeated_ehlo_counts_as_junk(smtpd):
    srv = smtpd()
    with srv.session() as c:
        c.send(b"EHLO a.example\r\n" * 102)
        last = None
        for _ in range(102):
            last = c.reply()
        assert_reply(last, "421 4.7.0")
        c.expect_closed()


def stress_events(srv):
    return [e for e in srv.logs() if e.get("event") == "stress"]


def test_under_stress_a_new_silent_session_is_cut_after_10_s(smtpd):
    srv = start_health(smtpd, "-c", "20", "-p", "20")
    silent = [srv.session() for _ in range(19)]
    try:
        assert wait_for(lambda: [e.get("active") for e in
                                 stress_events(srv)] == [True], 5)
        assert value(metrics(srv)[0], "smtpd_stress") == 1
        c = srv.session()
        t0 = time.monotonic()
        assert_reply(c.reply(timeout=20), "421 4.4.2")
        elapsed = time.monotonic() - t0
        assert 9 <= elapsed <= 15, elapsed
        c.expect_closed()
        c.close()
        # a session claimed before stress keeps its -t
        assert_reply(silent[0].cmd("NOOP"), "250 2.0.0")
    finally:
        for s in silent:
            s.close()
    assert wait_for(lambda: [e.get("active") for e in
                             stress_events(srv)] == [True, False], 5)
    assert value(metrics(srv)[0], "smtpd_stress") == 0


def assert_over_conn_rate(r):
    """421 4.7.0 for the rate, not for -p (the same code)."""
    assert_reply(r, "421 4.7.0")
    assert "connections" in r.lines[0], r


def test_the_6th_session_in_a_minute_over_max_conn_rate_gets_421(smtpd):
    srv = start_health(smtpd, "--max-conn-rate", "5", "-p", "50")
    for _ in range(5):
        with srv.session() as c:
            c.quit()
    with srv.connect() as c:
        assert_over_conn_rate(c.reply())
        c.expect_closed()
    vals = metrics(srv)[0]
    assert value(vals, "smtpd_sessions_total",
                 result="refused_conn_rate") == 1
    assert value(vals, "smtpd_sessions_total", result="served") == 5
    assert wait_for(lambda: any(
        e.get("event") == "reject" and e.get("reason") == "max-conn-rate"
        for e in srv.logs()), 5)


def proxied_reply(srv, src):
    """The first reply to a connection whose PROXY header names src."""
    from test_proxy import proxied, v2
    c = proxied(srv, v2(src))
    try:
        return c.reply()
    finally:
        c.close()


def test_max_conn_rate_counts_a_proxied_client_as_itself(smtpd):
    from test_proxy import TRUSTED
    srv = smtpd("--max-conn-rate", "5", "-p", "50", *TRUSTED)
    for _ in range(5):
        assert_reply(proxied_reply(srv, "192.0.2.1"), "220")
    assert_over_conn_rate(proxied_reply(srv, "192.0.2.1"))
    # the proxy's own address counts nothing: another client is served
    assert_reply(proxied_reply(srv, "192.0.2.2"), "220")
    # IPv6: one /64 is one client
    for i in range(5):
        assert_reply(proxied_reply(srv, "2001:db8::%d" % (i + 1)), "220")
    assert_over_conn_rate(proxied_reply(srv, "2001:db8::99"))
    assert_reply(proxied_reply(srv, "2001:db8:0:1::1"), "220")


def test_the_third_mail_in_a_minute_over_max_msg_rate_gets_450(smtpd):
    srv = smtpd("--max-msg-rate", "2")
    with srv.session() as c:
        assert_reply(c.deliver(make_message()), "250 2.0.0")
        assert_reply(c.deliver(make_message(), helo=None), "250 2.0.0")
        assert_reply(c.cmd("MAIL FROM:<sender@example.net>"), "450 4.7.1")
        c.quit()
    # counted by the address, not by the session
    with srv.session() as c:
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<sender@example.net>"), "450 4.7.1")
        c.quit()
    assert wait_for(lambda: any(
        e.get("event") == "reject" and e.get("reason") == "max-msg-rate"
        for e in srv.logs()), 5)


def test_stress_begins_and_ends_in_the_log_without_health(smtpd):
    srv = smtpd("-c", "10", "-p", "10")
    held = [srv.session() for _ in range(10)]   # none free
    try:
        assert wait_for(lambda: [e.get("active") for e in
                                 stress_events(srv)] == [True], 5)
    finally:
        for c in held:
            c.close()
    assert wait_for(lambda: [e.get("active") for e in
                             stress_events(srv)] == [True, False], 5)


def test_a_worker_asking_for_mails_spends_only_its_own_clients_rate(smtpd):
    from test_proxy import TRUSTED, proxied, v2
    srv = smtpd("--max-msg-rate", "2", "-p", "50", *TRUSTED,
                binary=SMTPD_TEST)
    with proxied(srv, v2("192.0.2.1")) as c:
        c.greeting()
        r = c.cmd("XTEST MAIL 10")
        assert "mail: 8 of 10 refused" in r.lines[0], r
    with proxied(srv, v2("192.0.2.2")) as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<sender@example.net>"), "250 2.1.0")
    with proxied(srv, v2("192.0.2.1")) as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<sender@example.net>"), "450 4.7.1")


@pytest.mark.worker_deaths
def test_a_mail_record_from_a_worker_not_serving_kills_it(smtpd):
    srv = smtpd("--max-msg-rate", "2", binary=SMTPD_TEST)
    with srv.session() as c:
        c.send(b"XTEST MAIL-IDLE\r\n")
        c.read_until_close()
    assert wait_for(lambda: [e.get("error") for e in srv.logs()
                             if e.get("event") == "worker_protocol_error"]
                    == ["mail while not serving"], 5)
