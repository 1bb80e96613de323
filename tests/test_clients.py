"""Real SMTP clients deliver, and the spool JSON holds what SPEC 4 says."""

import datetime
import re
import smtplib
import subprocess

from conftest import (after_auth_results, HELO, HOSTNAME, LOOPBACK, RCPT, SENDER, TOKEN,
                      assert_reply, make_message, raw_message, reply_id)


def smtplib_send(server, message, sender=SENDER, rcpts=(RCPT,)):
    with smtplib.SMTP(LOOPBACK, server.port, local_hostname=HELO,
                      timeout=10) as s:
        refused = s.sendmail(sender, list(rcpts), message)
    return refused


def test_smtplib_sendmail_is_accepted_and_spooled_once(server):
    refused = smtplib_send(server, make_message())
    assert refused == {}
    entries = server.read_spool()
    assert len(entries) == 1
    assert entries[0]["token"] == TOKEN


def test_spool_json_holds_envelope_and_session_fields(server):
    smtplib_send(server, make_message())
    [e] = server.read_spool()
    assert e["email"] == SENDER
    assert e["recipients"] == [RCPT]
    assert e["token"] == TOKEN
    assert e["client_ip"] == "127.0.0.1"
    assert e["helo"] == HELO
    assert e["tls"] is None
    assert e["spf_result"] == "none"
    assert e["dkim_result"] == "none"
    assert e["message_id"] == "<test-1@example.net>"


def test_spool_json_subject_and_body_fields(server):
    smtplib_send(server, make_message(subject="Hello test"))
    [e] = server.read_spool()
    assert e["subject"] == "Hello test"
    assert "please verify " + TOKEN in e["body"]
    assert "Subject:" not in e["body"]


def test_spool_json_received_at_is_rfc3339_utc_now(server):
    smtplib_send(server, make_message())
    [e] = server.read_spool()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", e["received_at"])
    t = datetime.datetime.strptime(e["received_at"], "%Y-%m-%dT%H:%M:%SZ")
    t = t.replace(tzinfo=datetime.timezone.utc)
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - t).total_seconds()) < 120


def test_spool_json_headers_have_lower_case_keys(server):
    msg = make_message(extra=["X-Custom-Header: Value One"])
    smtplib_send(server, msg)
    [e] = server.read_spool()
    h = e["headers"]
    assert isinstance(h, dict)
    assert all(k == k.lower() for k in h), sorted(h)
    assert h["subject"] == "Test message"
    assert SENDER in h["from"]
    assert h["message-id"] == "<test-1@example.net>"
    assert h["x-custom-header"] == "Value One"


def test_spool_json_headers_are_unfolded(server):
    msg = make_message(extra=["X-Folded: first part\r\n second part"])
    smtplib_send(server, msg)
    [e] = server.read_spool()
    assert e["headers"]["x-folded"] == "first part second part"


def test_spool_json_repeated_header_keeps_first_value(server):
    msg = make_message(extra=["X-Repeat: first", "X-Repeat: second"])
    smtplib_send(server, msg)
    [e] = server.read_spool()
    assert e["headers"]["x-repeat"] == "first"


def test_spool_raw_starts_with_received_and_holds_original(server):
    msg = make_message()
    smtplib_send(server, msg)
    [e] = server.read_spool()
    raw = raw_message(e)
    assert e["size"] == len(raw)
    raw = after_auth_results(raw)
    assert raw.startswith(b"Received:")
    assert msg in raw
    assert raw.endswith(msg)


def test_received_header_names_our_host_and_client_address(server):
    smtplib_send(server, make_message())
    [e] = server.read_spool()
    raw = after_auth_results(raw_message(e))
    head = raw.split(b"\r\n\r\n", 1)[0]
    m = re.match(rb"Received:((?:[^\r]|\r\n[ \t])*)\r\n", head)
    assert m, head[:300]
    received = m.group(1).decode()
    assert HOSTNAME in received
    assert "127.0.0.1" in received
    assert HELO in received


def test_spool_raw_lines_end_with_crlf(server):
    smtplib_send(server, make_message())
    [e] = server.read_spool()
    raw = raw_message(e)
    assert not re.search(rb"(?<!\r)\n", raw)
    assert not re.search(rb"\r(?!\n)", raw)


def test_spool_file_is_named_for_the_id_in_the_250_reply(server):
    with server.session() as c:
        r = c.deliver(make_message())
        assert_reply(r, "250 2.0.0")
        msgid = reply_id(r)
    [f] = server.spool_files()
    assert f.name == msgid + ".json"


def test_spool_leaves_no_temporary_files(server):
    smtplib_send(server, make_message())
    names = sorted(p.name for p in server.spool.iterdir())
    assert len(names) == 1 and re.fullmatch(r"[0-9a-f]{16}\.json", names[0]), \
        names


def test_token_in_subject_is_found(server):
    msg = make_message(subject="Verify FIRM-TOKEN:SUBJ-ECT0-TOK1",
                       body="no token in this body\r\n")
    smtplib_send(server, msg)
    [e] = server.read_spool()
    assert e["token"] == "FIRM-TOKEN:SUBJ-ECT0-TOK1"


def test_token_in_subject_wins_over_token_in_body(server):
    msg = make_message(subject="Verify FIRM-TOKEN:SUBJ-ECT0-TOK1",
                       body="body has " + TOKEN + "\r\n")
    smtplib_send(server, msg)
    [e] = server.read_spool()
    assert e["token"] == "FIRM-TOKEN:SUBJ-ECT0-TOK1"


def test_first_token_in_body_wins(server):
    msg = make_message(body="one FIRM-TOKEN:AAAA-BBBB-CCCC\r\n"
                            "two FIRM-TOKEN:DDDD-EEEE-FFFF\r\n")
    smtplib_send(server, msg)
    [e] = server.read_spool()
    assert e["token"] == "FIRM-TOKEN:AAAA-BBBB-CCCC"


def test_message_without_token_gets_550_5_7_0_and_nothing_spooled(server):
    with server.session() as c:
        r = c.deliver(make_message(body="Hello, no token here\r\n"))
        assert_reply(r, "550 5.7.0")
    assert server.spool_files() == []


def test_token_followed_by_alphanumeric_is_not_a_token(server):
    with server.session() as c:
        r = c.deliver(make_message(body="see FIRM-TOKEN:ABCD-EFGH-IJKLX\r\n"))
        assert_reply(r, "550 5.7.0")
    assert server.spool_files() == []


def test_smtplib_without_token_raises_data_error_550(server):
    try:
        smtplib_send(server, make_message(body="nothing\r\n"))
    except smtplib.SMTPDataError as e:
        assert e.smtp_code == 550
    else:
        raise AssertionError("message without token was accepted")
    assert server.spool_files() == []


def test_swaks_delivery_is_accepted_and_spooled(server):
    p = subprocess.run(
        ["swaks", "--server", "%s:%d" % (LOOPBACK, server.port),
         "--to", RCPT, "--from", SENDER, "--helo", HELO,
         "--timeout", "10", "--body", "Please verify " + TOKEN],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, out[-2000:]
    assert re.search(r"^<-  250 2\.0\.0 OK [0-9a-f]{16}", out, re.M), out
    [e] = server.read_spool()
    assert e["token"] == TOKEN
    assert e["email"] == SENDER
    assert e["recipients"] == [RCPT]


PERL_CLIENT = r'''
use strict; use warnings; use Net::SMTP;
my ($port, $token) = @ARGV;
my $s = Net::SMTP->new("127.0.0.1", Port => $port, Hello => "client.test",
                       Timeout => 10) or die "connect failed: $@\n";
$s->mail('sender@example.net') or die "MAIL: ", $s->code, " ", $s->message;
$s->to('verify@localhost') or die "RCPT: ", $s->code, " ", $s->message;
$s->data() or die "DATA: ", $s->code, " ", $s->message;
$s->datasend("From: sender\@example.net\n");
$s->datasend("To: verify\@localhost\n");
$s->datasend("Subject: perl test\n\n");
$s->datasend("Hello from Net::SMTP\n$token\n");
$s->dataend() or die "END: ", $s->code, " ", $s->message;
print $s->code, " ", $s->message;
$s->quit;
exit 0;
'''


def test_perl_net_smtp_delivery_is_accepted_and_spooled(server):
    p = subprocess.run(["perl", "-e", PERL_CLIENT, str(server.port), TOKEN],
                       stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=30)
    out = p.stdout.decode() + p.stderr.decode()
    assert p.returncode == 0, out
    assert re.match(r"250 2\.0\.0 OK [0-9a-f]{16}", p.stdout.decode()), out
    [e] = server.read_spool()
    assert e["token"] == TOKEN
    assert e["subject"] == "perl test"
    assert b"Hello from Net::SMTP\r\n" in raw_message(e)
