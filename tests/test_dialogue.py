"""Scripted SMTP dialogues: send these bytes, expect this reply
(design.md, section Replies)."""

import re
import time

import pytest

from conftest import (DEFAULT_MAX_SIZE, HOSTNAME, RCPT, SENDER, TOKEN,
                      assert_reply, make_message)


# ------------------------------------------------------------ greeting, EHLO

def test_greeting_is_220_hostname_esmtp(server):
    with server.connect() as c:
        r = c.reply()
        assert len(r.lines) == 1, r
        assert re.match(r"^220 test\.example ESMTP( |$)", r.lines[0]), r


def test_ehlo_reply_starts_with_hostname(server):
    with server.session() as c:
        r = c.cmd("EHLO client.test")
        assert_reply(r, "250")
        assert len(r.lines) > 1
        assert r.lines[0].startswith("250-" + HOSTNAME)
        assert r.lines[0][4:].split()[0] == HOSTNAME
        assert all(x.startswith("250-") for x in r.lines[:-1])
        assert r.lines[-1].startswith("250 ")


def ehlo_keywords(reply):
    return [line[4:].strip() for line in reply.lines[1:]]


def test_ehlo_advertises_required_extensions(server):
    with server.session() as c:
        kw = ehlo_keywords(c.cmd("EHLO client.test"))
    names = [k.split()[0].upper() for k in kw]
    for name in ("PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8",
                 "ENHANCEDSTATUSCODES"):
        assert name in names, kw


def test_ehlo_does_not_advertise_auth_or_starttls(server):
    with server.session() as c:
        kw = ehlo_keywords(c.cmd("EHLO client.test"))
    names = [k.split()[0].upper() for k in kw]
    assert "AUTH" not in names, kw
    assert "STARTTLS" not in names, kw


def test_ehlo_size_defaults_to_1048576(server):
    with server.session() as c:
        kw = ehlo_keywords(c.cmd("EHLO client.test"))
    assert "SIZE %d" % DEFAULT_MAX_SIZE in kw, kw


def test_ehlo_size_follows_max_size_flag(smtpd):
    srv = smtpd("-s", "5000")
    with srv.session() as c:
        kw = ehlo_keywords(c.cmd("EHLO client.test"))
    assert "SIZE 5000" in kw, kw


def test_helo_replies_250_hostname(server):
    with server.session() as c:
        r = c.cmd("HELO client.test")
        assert len(r.lines) == 1
        assert re.match(r"^250 test\.example( |$)", r.lines[0]), r


def test_helo_session_can_deliver(server):
    with server.session() as c:
        assert_reply(c.cmd("HELO client.test"), "250")
        r = c.deliver(make_message(), helo=None)
        assert_reply(r, "250 2.0.0")
    [e] = server.read_spool()
    assert e["helo"] == "client.test"


def test_commands_are_case_insensitive(server):
    with server.session() as c:
        assert_reply(c.cmd("ehlo client.test"), "250")
        assert_reply(c.cmd("mail from:<%s>" % SENDER), "250 2.1.0")
        assert_reply(c.cmd("rcpt to:<%s>" % RCPT), "250 2.1.5")
        assert_reply(c.cmd("data"), "354")
        assert_reply(c.send_data(make_message()), "250 2.0.0")


# ------------------------------------------------------------ sequence

def test_mail_before_ehlo_gets_503_5_5_1(server):
    with server.session() as c:
        assert_reply(c.cmd("MAIL FROM:<%s>" % SENDER), "503 5.5.1")


def test_rcpt_before_ehlo_gets_503_5_5_1(server):
    with server.session() as c:
        assert_reply(c.cmd("RCPT TO:<%s>" % RCPT), "503 5.5.1")


def test_data_before_ehlo_gets_503_5_5_1(server):
    with server.session() as c:
        assert_reply(c.cmd("DATA"), "503 5.5.1")


def test_rcpt_before_mail_gets_503_5_5_1(server):
    with server.session() as c:
        c.ehlo()
        assert_reply(c.cmd("RCPT TO:<%s>" % RCPT), "503 5.5.1")


def test_data_before_mail_gets_503_5_5_1(server):
    with server.session() as c:
        c.ehlo()
        assert_reply(c.cmd("DATA"), "503 5.5.1")


def test_nested_mail_gets_503_5_5_1(server):
    with server.session() as c:
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<%s>" % SENDER), "250 2.1.0")
        assert_reply(c.cmd("MAIL FROM:<%s>" % SENDER), "503 5.5.1")


def test_data_without_accepted_rcpt_gets_554_5_5_1(server):
    with server.session() as c:
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<%s>" % SENDER), "250 2.1.0")
        assert_reply(c.cmd("RCPT TO:<nobody@localhost>"), "550 5.1.1")
        assert_reply(c.cmd("DATA"), "554 5.5.1")


def test_rset_clears_the_transaction(server):
    with server.session() as c:
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<%s>" % SENDER), "250 2.1.0")
        assert_reply(c.cmd("RCPT TO:<%s>" % RCPT), "250 2.1.5")
        assert_reply(c.cmd("RSET"), "250 2.0.0")
        assert_reply(c.cmd("DATA"), "503 5.5.1")


def test_second_transaction_in_one_session_is_spooled(server):
    with server.session() as c:
        assert_reply(c.deliver(make_message()), "250 2.0.0")
        r = c.deliver(make_message(body="again FIRM-TOKEN:SECO-ND00-MSG2\r\n"),
                      helo=None)
        assert_reply(r, "250 2.0.0")
    tokens = sorted(e["token"] for e in server.read_spool())
    assert tokens == sorted([TOKEN, "FIRM-TOKEN:SECO-ND00-MSG2"])


# ------------------------------------------------------------ MAIL

def test_mail_size_over_limit_gets_552_5_3_4(smtpd):
    srv = smtpd("-s", "1000")
    with srv.session() as c:
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<%s> SIZE=1001" % SENDER), "552 5.3.4")


def test_mail_size_at_limit_is_accepted(smtpd):
    srv = smtpd("-s", "1000")
    with srv.session() as c:
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<%s> SIZE=1000" % SENDER), "250 2.1.0")


def test_mail_unknown_parameter_gets_555_5_5_4(server):
    with server.session() as c:
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<%s> FOO=bar" % SENDER), "555 5.5.4")


def test_rcpt_unknown_parameter_gets_555_5_5_4(server):
    with server.session() as c:
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<%s>" % SENDER), "250 2.1.0")
        assert_reply(c.cmd("RCPT TO:<%s> FOO=bar" % RCPT), "555 5.5.4")


def test_mail_body_8bitmime_parameter_is_accepted(server):
    with server.session() as c:
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<%s> BODY=8BITMIME" % SENDER),
                     "250 2.1.0")


def test_mail_non_ascii_address_without_smtputf8_gets_553_5_6_7(server):
    with server.session() as c:
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<j\u00f6rg@example.org>"), "553 5.6.7")


def test_mail_non_ascii_address_with_smtputf8_is_accepted(server):
    with server.session() as c:
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<j\u00f6rg@example.org> SMTPUTF8"),
                     "250 2.1.0")


def test_mail_without_angle_brackets_gets_501_5_5_4(server):
    with server.session() as c:
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:bad"), "501 5.5.4")


# ------------------------------------------------------------ RCPT

def test_unknown_recipient_gets_550_5_1_1(server):
    with server.session() as c:
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<%s>" % SENDER), "250 2.1.0")
        assert_reply(c.cmd("RCPT TO:<other@localhost>"), "550 5.1.1")


def test_domain_recipient_accepts_any_local_part_case_insensitive_domain(
        smtpd):
    srv = smtpd(recipients=("@example.org",))
    with srv.session() as c:
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<%s>" % SENDER), "250 2.1.0")
        assert_reply(c.cmd("RCPT TO:<x@EXAMPLE.org>"), "250 2.1.5")


def test_domain_recipient_delivers_to_spool(smtpd):
    srv = smtpd(recipients=("@example.org",))
    with srv.session() as c:
        r = c.deliver(make_message(rcpt="anyone@example.org"),
                      rcpts=("anyone@example.org",))
        assert_reply(r, "250 2.0.0")
    [e] = srv.read_spool()
    assert e["recipients"] == ["anyone@example.org"]


def test_domain_recipient_rejects_other_domains(smtpd):
    srv = smtpd(recipients=("@example.org",))
    with srv.session() as c:
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<%s>" % SENDER), "250 2.1.0")
        assert_reply(c.cmd("RCPT TO:<x@evil-example.org>"), "550 5.1.1")
        assert_reply(c.cmd("RCPT TO:<x@example.org.evil.test>"), "550 5.1.1")


def test_recipient_domain_compares_case_insensitively(server):
    with server.session() as c:
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<%s>" % SENDER), "250 2.1.0")
        assert_reply(c.cmd("RCPT TO:<verify@LOCALHOST>"), "250 2.1.5")


def test_recipient_local_part_compares_exactly(server):
    with server.session() as c:
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<%s>" % SENDER), "250 2.1.0")
        assert_reply(c.cmd("RCPT TO:<Verify@localhost>"), "550 5.1.1")
        assert_reply(c.cmd("RCPT TO:<verifyx@localhost>"), "550 5.1.1")


def test_second_recipient_over_default_max_rcpt_gets_452_4_5_3(smtpd):
    srv = smtpd(recipients=("@example.org",))
    with srv.session() as c:
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<%s>" % SENDER), "250 2.1.0")
        assert_reply(c.cmd("RCPT TO:<a@example.org>"), "250 2.1.5")
        assert_reply(c.cmd("RCPT TO:<b@example.org>"), "452 4.5.3")


def test_max_rcpt_flag_allows_that_many_recipients(smtpd):
    srv = smtpd("--max-rcpt", "2", recipients=("@example.org",))
    with srv.session() as c:
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<%s>" % SENDER), "250 2.1.0")
        assert_reply(c.cmd("RCPT TO:<a@example.org>"), "250 2.1.5")
        assert_reply(c.cmd("RCPT TO:<b@example.org>"), "250 2.1.5")
        assert_reply(c.cmd("RCPT TO:<c@example.org>"), "452 4.5.3")
        assert_reply(c.cmd("DATA"), "354")
        assert_reply(c.send_data(make_message()), "250 2.0.0")
    [e] = srv.read_spool()
    assert e["recipients"] == ["a@example.org", "b@example.org"]


# ------------------------------------------------------------ command syntax

def test_command_of_512_octets_with_crlf_is_accepted(server):
    line = "NOOP " + "x" * 505
    assert len(line) == 510
    with server.session() as c:
        assert_reply(c.cmd(line), "250 2.0.0")


def test_command_of_513_octets_with_crlf_gets_500_5_5_2(server):
    line = "NOOP " + "x" * 506
    assert len(line) == 511
    with server.session() as c:
        assert_reply(c.cmd(line), "500 5.5.2")
        # the rest of the long line must not be taken as a new command
        assert_reply(c.cmd("NOOP"), "250 2.0.0")


def test_very_long_command_line_gets_one_500_5_5_2(server):
    with server.session() as c:
        c.send("NOOP " + "MAIL FROM:<a@b.test>" * 300 + "\r\n")
        assert_reply(c.reply(), "500 5.5.2")
        assert_reply(c.cmd("NOOP"), "250 2.0.0")


def test_unknown_command_gets_500_5_5_1(server):
    with server.session() as c:
        assert_reply(c.cmd("FOO bar"), "500 5.5.1")


def test_helo_without_argument_gets_501_5_5_4(server):
    with server.session() as c:
        assert_reply(c.cmd("HELO"), "501 5.5.4")


def test_nul_in_command_gets_501_5_5_4(server):
    with server.session() as c:
        assert_reply(c.cmd(b"EHLO cli\x00ent.test"), "501 5.5.4")
        assert_reply(c.cmd("EHLO client.test"), "250")


def test_bare_cr_in_command_gets_501_5_5_4(server):
    with server.session() as c:
        assert_reply(c.cmd(b"EHLO cli\rent.test"), "501 5.5.4")
        assert_reply(c.cmd("EHLO client.test"), "250")


def test_bare_lf_inside_a_command_makes_the_whole_line_one_501(server):
    # SPEC section 3: a bare LF never starts a new command
    with server.session() as c:
        c.ehlo()
        c.send(b"NOOP\nMAIL FROM:<x@example.net>\r\n")
        assert_reply(c.reply(), "501 5.5.4")
        # the MAIL after the bare LF did not run: no second reply, and
        # MAIL is still allowed
        assert_reply(c.cmd("MAIL FROM:<x@example.net>"), "250 2.1.0")


def test_bare_cr_inside_a_command_makes_the_whole_line_one_501(server):
    with server.session() as c:
        c.ehlo()
        c.send(b"NOOP\rRSET\r\n")
        assert_reply(c.reply(), "501 5.5.4")
        assert_reply(c.cmd("NOOP"), "250 2.0.0")


def test_a_command_ends_only_at_crlf(server):
    with server.session() as c:
        c.send(b"EHLO client.test\n")
        with pytest.raises(TimeoutError):
            c.reply(timeout=1)      # nothing yet: no CRLF
        c.send(b"\r\n")
        assert_reply(c.reply(), "501 5.5.4")
        assert_reply(c.cmd("NOOP"), "250 2.0.0")


def test_nul_in_mail_parameter_gets_501_5_5_4(server):
    with server.session() as c:
        c.ehlo()
        assert_reply(c.cmd(b"MAIL FROM:<a@b.test> SIZE=1\x0023"), "501 5.5.4")


# ------------------------------------------------------------ max-errors

def test_third_bad_command_gets_421_4_7_0_and_close(server):
    with server.session() as c:
        assert_reply(c.cmd("FOO"), "500 5.5.1")
        assert_reply(c.cmd("BAR"), "500 5.5.1")
        assert_reply(c.cmd("BAZ"), "421 4.7.0")
        c.expect_closed()


def test_good_commands_do_not_count_toward_max_errors(server):
    with server.session() as c:
        assert_reply(c.cmd("FOO"), "500 5.5.1")
        assert_reply(c.cmd("NOOP"), "250 2.0.0")
        assert_reply(c.cmd("BAR"), "500 5.5.1")
        assert_reply(c.cmd("NOOP"), "250 2.0.0")
        assert_reply(c.cmd("BAZ"), "421 4.7.0")
        c.expect_closed()


def test_syntax_errors_count_toward_max_errors(server):
    with server.session() as c:
        assert_reply(c.cmd("HELO"), "501 5.5.4")
        assert_reply(c.cmd("FOO"), "500 5.5.1")
        assert_reply(c.cmd("HELO"), "421 4.7.0")
        c.expect_closed()


def test_555_and_553_count_toward_max_errors(server):
    with server.session() as c:
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<%s> FOO=bar" % SENDER), "555 5.5.4")
        assert_reply(c.cmd("MAIL FROM:<j\u00f6rg@example.org>"), "553 5.6.7")
        assert_reply(c.cmd("MAIL FROM:<%s> FOO=bar" % SENDER), "421 4.7.0")
        c.expect_closed()


def test_unknown_recipients_count_toward_max_errors(server):
    # a client may not try address after address in one session
    with server.session() as c:
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<%s>" % SENDER), "250 2.1.0")
        assert_reply(c.cmd("RCPT TO:<guess1@localhost>"), "550 5.1.1")
        assert_reply(c.cmd("RCPT TO:<guess2@localhost>"), "550 5.1.1")
        assert_reply(c.cmd("RCPT TO:<guess3@localhost>"), "421 4.7.0")
        c.expect_closed()


def test_overlong_command_counts_toward_max_errors(server):
    with server.session() as c:
        assert_reply(c.cmd("NOOP " + "x" * 600), "500 5.5.2")
        assert_reply(c.cmd("FOO"), "500 5.5.1")
        assert_reply(c.cmd("NOOP " + "x" * 600), "421 4.7.0")
        c.expect_closed()


def test_sequence_errors_do_not_count_toward_max_errors(server):
    with server.session() as c:
        for _ in range(4):
            assert_reply(c.cmd("MAIL FROM:<%s>" % SENDER), "503 5.5.1")
        assert_reply(c.cmd("NOOP"), "250 2.0.0")


def test_max_errors_flag_sets_the_limit(smtpd):
    srv = smtpd("--max-errors", "5")
    with srv.session() as c:
        for i in range(4):
            assert_reply(c.cmd("FOO%d" % i), "500 5.5.1")
        assert_reply(c.cmd("FOO4"), "421 4.7.0")
        c.expect_closed()


# ------------------------------------------------------------ HTTP & headers

def assert_one_421_line_then_close(c, forbidden):
    rest = c.read_until_close(timeout=3.0)
    lines = rest.split(b"\r\n")
    assert lines[-1] == b"", "reply not CRLF-terminated: %r" % rest
    lines = lines[:-1]
    assert len(lines) == 1, "expected exactly one reply line: %r" % rest
    assert lines[0].startswith(b"421 4.7.0"), rest
    for word in forbidden:
        assert word not in rest, "input echoed: %r" % rest


def test_http_get_request_gets_one_421_line_and_close(server):
    with server.session() as c:
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert_one_421_line_then_close(c, [b"GET", b"Host", b"HTTP/1.1"])


HTTP_METHODS = ["POST", "HEAD", "PUT", "CONNECT", "OPTIONS", "DELETE",
                "PATCH", "TRACE"]


@pytest.mark.parametrize("method", HTTP_METHODS)
def test_http_request_line_gets_one_421_line_and_close(server, method):
    with server.session() as c:
        c.send(method.encode() + b" /inbound-path HTTP/1.1\r\n"
               b"Host: x\r\nContent-Length: 0\r\n\r\n")
        assert_one_421_line_then_close(c, [method.encode(), b"inbound-path",
                                           b"Host"])


def test_http_request_after_ehlo_gets_one_421_line_and_close(server):
    with server.session() as c:
        c.ehlo()
        c.send(b"GET /x HTTP/1.0\r\n\r\n")
        assert_one_421_line_then_close(c, [b"GET", b"/x"])


def test_header_like_first_line_gets_one_421_line_and_close(server):
    with server.session() as c:
        c.send(b"Host: foo\r\n")
        assert_one_421_line_then_close(c, [b"Host", b"foo"])


def test_header_like_line_after_ehlo_gets_one_421_line_and_close(server):
    with server.session() as c:
        c.ehlo()
        c.send(b"User-Agent: evil\r\n")
        assert_one_421_line_then_close(c, [b"User-Agent", b"evil"])


# ------------------------------------------------------------ other commands

def test_auth_gets_502_5_5_1(server):
    with server.session() as c:
        c.ehlo()
        assert_reply(c.cmd("AUTH PLAIN AHRlc3QAdGVzdA=="), "502 5.5.1")


def test_vrfy_gets_252_2_5_0(server):
    with server.session() as c:
        c.ehlo()
        assert_reply(c.cmd("VRFY verify"), "252 2.5.0")


def test_expn_gets_502_5_5_1(server):
    with server.session() as c:
        c.ehlo()
        assert_reply(c.cmd("EXPN list"), "502 5.5.1")


def test_help_gets_214(server):
    with server.session() as c:
        assert_reply(c.cmd("HELP"), "214 2.0.0")


def test_noop_gets_250_2_0_0(server):
    with server.session() as c:
        assert_reply(c.cmd("NOOP"), "250 2.0.0")


def test_rset_gets_250_2_0_0(server):
    with server.session() as c:
        c.ehlo()
        assert_reply(c.cmd("RSET"), "250 2.0.0")


def test_quit_gets_221_2_0_0_and_close(server):
    with server.session() as c:
        assert_reply(c.cmd("QUIT"), "221 2.0.0")
        c.expect_closed()


# ------------------------------------------------------------ timeouts

def test_idle_client_gets_421_4_4_2_after_timeout(smtpd):
    srv = smtpd("-t", "1")
    with srv.session() as c:
        t0 = time.monotonic()
        r = c.reply(timeout=5)
        elapsed = time.monotonic() - t0
        assert_reply(r, "421 4.4.2")
        assert 0.5 <= elapsed <= 4.0, elapsed
        c.expect_closed()


def test_idle_client_in_data_gets_421_4_4_2_and_nothing_spooled(smtpd):
    srv = smtpd("-t", "1")
    with srv.session() as c:
        c.envelope()
        c.send(make_message()[:60])
        r = c.reply(timeout=5)
        assert_reply(r, "421 4.4.2")
        c.expect_closed()
    assert srv.spool_files() == []


def test_early_talker_gets_554_5_5_1_and_close(smtpd):
    srv = smtpd("--greet-delay", "1000")
    with srv.connect() as c:
        c.send("EHLO client.test\r\n")
        r = c.reply(timeout=4)
        assert_reply(r, "554 5.5.1")
        c.expect_closed()


def test_patient_client_is_greeted_after_greet_delay_and_delivers(smtpd):
    srv = smtpd("--greet-delay", "1000")
    with srv.connect() as c:
        t0 = time.monotonic()
        r = c.reply(timeout=4)
        elapsed = time.monotonic() - t0
        assert re.match(r"^220 test\.example ESMTP", r.lines[0]), r
        assert elapsed >= 0.9, elapsed
        assert_reply(c.deliver(make_message()), "250 2.0.0")
    assert len(srv.spool_files()) == 1


def test_http_request_with_bare_lf_line_ends_gets_one_421_line(server):
    with server.session() as c:
        c.send(b"GET / HTTP/1.0\nHost: x\nUser-Agent: probe\n\n")
        assert_one_421_line_then_close(c, [b"GET", b"Host", b"probe"])


def test_http_request_with_an_over_long_line_gets_one_421_line(server):
    with server.session() as c:
        c.send(b"GET /" + b"a" * 600 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert_one_421_line_then_close(c, [b"GET", b"aaaa", b"Host"])


def test_mail_size_beyond_any_integer_gets_552_5_3_4(server):
    with server.session() as c:
        c.ehlo()
        r = c.cmd("MAIL FROM:<a@example.net> SIZE=99999999999999999999999")
        assert_reply(r, "552 5.3.4")
        assert_reply(c.cmd("NOOP"), "250 2.0.0")


def test_smtputf8_sender_that_is_not_utf8_gets_501_5_5_4(server):
    """Malformed UTF-8 is a syntax error, not a missing SMTPUTF8."""
    with server.session() as c:
        c.ehlo()
        c.send(b"MAIL FROM:<\xff\xfe@example.net> SMTPUTF8\r\n")
        r = c.reply()
        assert_reply(r, "501 5.5.4")
        assert "SMTPUTF8" not in r.text


def test_smtputf8_recipient_that_is_not_utf8_gets_501_5_5_4(smtpd):
    srv = smtpd(recipients=("@example.org",))
    with srv.session() as c:
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<a@example.net> SMTPUTF8"),
                     "250 2.1.0")
        c.send(b"RCPT TO:<\xff\xfe@example.org>\r\n")
        assert_reply(c.reply(), "501 5.5.4")
        c.send("RCPT TO:<jos\u00e9@example.org>\r\n".encode())
        assert_reply(c.reply(), "250 2.1.5")
