"""--soft-bounce (SPEC section 2): every 5xx refusal of the sender
(MAIL), a recipient (RCPT) or the message (end of data) is sent as the
matching 4xx (5xy -> 4xy, 5.x.y -> 4.x.y), so nothing is refused for
good during a first roll-out; replies about the dialogue itself
(syntax errors, AUTH, bad sequence) keep their 5xx."""
import json
import subprocess

from conftest import HELO, SMTPD, assert_reply, make_message, wait_for

NO_TOKEN = make_message(body="Hello, no token here\r\n")


def soft(smtpd, **kw):
    return smtpd("--soft-bounce", **kw)


def test_unknown_recipient_gets_450_4_1_1(smtpd):
    srv = soft(smtpd)
    with srv.session() as c:
        c.ehlo(HELO)
        assert_reply(c.cmd("MAIL FROM:<a@example.net>"), "250 2.1.0")
        r = c.cmd("RCPT TO:<nobody@elsewhere.example>")
        assert_reply(r, "450 4.1.1")
        assert r.lines[0].startswith("450 4.1.1 Recipient unknown"), r
        c.quit()


def test_message_without_token_gets_450_4_7_0(smtpd):
    srv = soft(smtpd)
    with srv.session() as c:
        r = c.deliver(NO_TOKEN)
        assert_reply(r, "450 4.7.0")
        c.quit()
    assert srv.spool_files() == []
    assert wait_for(lambda: [x for x in srv.logs()
                             if x.get("event") == "message"], 3)
    [message] = [x for x in srv.logs() if x.get("event") == "message"]
    assert message["status"] == "tempfail", message
    assert message["reply"].startswith("450 4.7.0"), message


def test_syntax_errors_keep_their_5xx(smtpd):
    srv = soft(smtpd)
    with srv.session() as c:
        c.ehlo(HELO)
        assert_reply(c.cmd("MAIL FROM:no-brackets"), "501 5.5.4")
        assert_reply(c.cmd("MAIL FROM:<a@example.net>"), "250 2.1.0")
        assert_reply(c.cmd("RCPT TO:no-brackets"), "501 5.5.4")
        c.quit()


def test_other_commands_keep_their_5xx(smtpd):
    srv = soft(smtpd)
    with srv.session() as c:
        assert_reply(c.cmd("MAIL FROM:<a@example.net>"), "503 5.5.1")
        c.ehlo(HELO)
        assert_reply(c.cmd("AUTH PLAIN AGFhAGI="), "502 5.5.1")
        assert_reply(c.cmd("EXPN staff"), "502 5.5.1")
        assert_reply(c.cmd("DATA"), "503 5.5.1")
        c.quit()


def test_firm_refusal_gets_454_4_7_0_with_its_text(smtpd, firm):
    srv = soft(smtpd, api=firm.url)
    firm.answer(422, json.dumps({"error": "token unknown"}))
    with srv.session() as c:
        r = c.deliver(make_message())
        assert_reply(r, "454 4.7.0")
        assert r.lines[0].endswith("token unknown"), r
        c.quit()


def test_firm_413_gets_452_4_3_4(smtpd, firm):
    srv = soft(smtpd, api=firm.url)
    firm.answer(413)
    with srv.session() as c:
        assert_reply(c.deliver(make_message()), "452 4.3.4")
        c.quit()


def test_without_the_flag_the_unknown_recipient_is_550(smtpd):
    srv = smtpd()
    with srv.session() as c:
        c.ehlo(HELO)
        assert_reply(c.cmd("MAIL FROM:<a@example.net>"), "250 2.1.0")
        assert_reply(c.cmd("RCPT TO:<nobody@elsewhere.example>"),
                     "550 5.1.1")
        c.quit()


def test_soft_bounce_is_in_the_usage():
    out = subprocess.run([SMTPD, "-h"], capture_output=True, text=True,
                         timeout=10).stdout
    assert "--soft-bounce" in out, out

