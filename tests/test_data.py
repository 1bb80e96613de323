"""The DATA phase: size and line limits, line ends, dot-unstuffing,
SMTP smuggling, pipelining, spool failure."""

import os
import re
import time

import pytest

from conftest import (HELO, RCPT, SENDER, TOKEN, assert_reply, make_message,
                      raw_message, wait_for)


# ------------------------------------------------------------ size limits

def test_message_over_max_size_gets_552_5_3_4_and_nothing_spooled(smtpd):
    srv = smtpd("-s", "2000")
    body = ("filler line " + "y" * 60 + "\r\n") * 60 + TOKEN + "\r\n"
    msg = make_message(body=body)
    assert len(msg) > 4000
    with srv.session() as c:
        r = c.deliver(msg)
        assert_reply(r, "552 5.3.4")
        assert_reply(c.cmd("NOOP"), "250 2.0.0")
    assert srv.spool_files() == []


def test_message_under_max_size_is_accepted(smtpd):
    srv = smtpd("-s", "2000")
    msg = make_message(body="short " + TOKEN + "\r\n" + "z" * 500 + "\r\n")
    assert len(msg) < 1000
    with srv.session() as c:
        assert_reply(c.deliver(msg), "250 2.0.0")
    assert len(srv.spool_files()) == 1


def test_text_line_of_1001_octets_gets_554_5_6_0_and_nothing_spooled(server):
    long_line = "x" * 999 + "\r\n"
    assert len(long_line) == 1001
    msg = make_message(body=TOKEN + "\r\n" + long_line + "end\r\n")
    with server.session() as c:
        assert_reply(c.deliver(msg), "554 5.6.0")
    assert server.spool_files() == []


def test_text_line_of_1000_octets_is_accepted(server):
    long_line = "x" * 998 + "\r\n"
    assert len(long_line) == 1000
    msg = make_message(body=TOKEN + "\r\n" + long_line + "end\r\n")
    with server.session() as c:
        assert_reply(c.deliver(msg), "250 2.0.0")
    [e] = server.read_spool()
    assert ("\r\n" + long_line).encode() in raw_message(e)


def test_raw_is_the_message_whatever_its_length_modulo_three(server):
    # raw is base64 written by the verifier itself, after the JSON: each
    # length's last group (no padding, "=", "==") must decode whole
    with server.session() as c:
        for n in range(6):
            msg = make_message(body=TOKEN + "\r\n" + "p" * n + "\r\n",
                               msgid="<len-%d@example.org>" % n)
            assert_reply(c.deliver(msg, helo=None if n else HELO),
                         "250 2.0.0")
    entries = server.read_spool()
    assert len(entries) == 6
    ends = {len(raw_message(e)) % 3 for e in entries}
    for e in entries:
        raw = raw_message(e)
        n = next(k for k in range(6) if ("<len-%d@" % k).encode() in raw)
        assert raw.endswith(("\r\n" + TOKEN + "\r\n" + "p" * n +
                             "\r\n").encode()), raw[-80:]
    assert ends == {0, 1, 2}, ends


def test_session_continues_after_rejected_long_line(server):
    msg = make_message(body=TOKEN + "\r\n" + "x" * 2000 + "\r\n")
    with server.session() as c:
        assert_reply(c.deliver(msg), "554 5.6.0")
        assert_reply(c.deliver(make_message(), helo=None), "250 2.0.0")
    assert len(server.spool_files()) == 1


def test_empty_message_gets_550_5_7_0(server):
    with server.session() as c:
        c.envelope()
        c.send(b".\r\n")
        assert_reply(c.reply(), "550 5.7.0")
    assert server.spool_files() == []


# ------------------------------------------------------------ line ends

def test_reject_bare_lf_refuses_bare_lf_with_550_5_5_2(smtpd):
    srv = smtpd("--reject-bare-lf")
    msg = make_message(body="line one\nline two\r\n" + TOKEN + "\r\n")
    with srv.session() as c:
        assert_reply(c.deliver(msg), "550 5.5.2")
    assert srv.spool_files() == []


def test_reject_bare_lf_refuses_bare_cr_with_550_5_5_2(smtpd):
    srv = smtpd("--reject-bare-lf")
    msg = make_message(body="line one\rline two\r\n" + TOKEN + "\r\n")
    with srv.session() as c:
        assert_reply(c.deliver(msg), "550 5.5.2")
    assert srv.spool_files() == []


def test_reject_bare_lf_accepts_clean_crlf_message(smtpd):
    srv = smtpd("--reject-bare-lf")
    with srv.session() as c:
        assert_reply(c.deliver(make_message()), "250 2.0.0")
    assert len(srv.spool_files()) == 1


def test_bare_lf_in_data_is_accepted_and_stored_as_crlf(server):
    msg = make_message(body="line one\nline two\r\n" + TOKEN + "\r\n")
    with server.session() as c:
        assert_reply(c.deliver(msg), "250 2.0.0")
    [e] = server.read_spool()
    raw = raw_message(e)
    assert b"\r\nline one\r\nline two\r\n" in raw
    assert not re.search(rb"(?<!\r)\n", raw), raw


def test_leading_dots_are_unstuffed(server):
    body = TOKEN + "\r\n..x\r\n...y\r\nmid..dle\r\n"
    with server.session() as c:
        assert_reply(c.deliver(make_message(body=body)), "250 2.0.0")
    [e] = server.read_spool()
    raw = raw_message(e)
    assert b"\r\n.x\r\n..y\r\nmid..dle\r\n" in raw, raw
    assert b"\r\n..x" not in raw
    assert ".x\r\n..y" in e["body"]


# ------------------------------------------------------------ smuggling

SMUGGLE_SEQUENCES = [
    b"\n.\n",
    b"\n.\r\n",
    b"\r\n.\n",
    b"\r.\r",
    b"\r.\r\n",
    b"\r\n.\r",
    b"\r\r\n.\r\r\n",
]

LEGIT_TOKEN = "FIRM-TOKEN:LEGI-TMSG-0001"
SMUGGLED = (b"MAIL FROM:<smuggled@evil.test>\r\n"
            b"RCPT TO:<verify@localhost>\r\n"
            b"DATA\r\n"
            b"smuggled FIRM-TOKEN:SMUG-GLED-0000\r\n"
            b".\r\n")


@pytest.mark.parametrize("seq", SMUGGLE_SEQUENCES,
                         ids=[s.decode().replace("\r", "CR")
                              .replace("\n", "LF") for s in SMUGGLE_SEQUENCES])
def test_smuggling_sequence_never_ends_data(smtpd, seq):
    # junk after the real end of data must not trip --max-errors
    srv = smtpd("--max-errors", "10")
    head = make_message(sender="legit@example.net", body="")
    payload = (head + b"token body " + LEGIT_TOKEN.encode() + seq + SMUGGLED +
               b"\r\n.\r\n")
    with srv.session() as c:
        c.envelope(sender="legit@example.net")
        c.send(payload)
        c.send(b"QUIT\r\n")
        codes = []
        for _ in range(10):
            try:
                r = c.reply(timeout=5)
            except Exception:
                break
            codes.append((r.code, r.lines[0]))
            if r.code in (221, 421):
                break
    assert codes, "no reply after the data"
    assert codes[0][0] == 250, codes
    assert [x for x in codes if x[0] == 250] == [codes[0]], codes
    assert all(x[0] != 354 for x in codes), codes
    assert codes[-1][0] == 221, codes
    entries = srv.read_spool()
    assert len(entries) == 1, [e["email"] for e in entries]
    [e] = entries
    assert e["email"] == "legit@example.net"
    assert e["token"] == LEGIT_TOKEN
    raw = raw_message(e)
    assert b"MAIL FROM:<smuggled@evil.test>" in raw
    assert b"SMUG-GLED-0000" in raw


def test_dot_after_bare_lf_does_not_end_data(server):
    with server.session() as c:
        c.envelope()
        c.send(make_message(body=TOKEN + "\n.\n"))
        # the server must still be in DATA: NOOP is message text
        c.send(b"NOOP\r\n")
        c.send(b"\r\n.\r\n")
        r = c.reply()
        assert_reply(r, "250 2.0.0")
        assert_reply(c.cmd("QUIT"), "221 2.0.0")
    [e] = server.read_spool()
    assert b"NOOP" in raw_message(e)


# ------------------------------------------------------------ pipelining

def test_pipelined_envelope_gets_replies_in_order(server):
    with server.session() as c:
        c.send("EHLO client.test\r\nMAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n"
               % (SENDER, RCPT))
        ehlo, mail, rcpt, data = c.replies(4)
        assert_reply(ehlo, "250")
        assert len(ehlo.lines) > 1
        assert_reply(mail, "250 2.1.0")
        assert_reply(rcpt, "250 2.1.5")
        assert_reply(data, "354")
        assert_reply(c.send_data(make_message()), "250 2.0.0")
    assert len(server.spool_files()) == 1


def test_whole_pipelined_transaction_in_one_write(server):
    second = "FIRM-TOKEN:PIPE-LINE-0002"
    with server.session() as c:
        c.ehlo()
        c.send(b"MAIL FROM:<" + SENDER.encode() + b">\r\n"
               b"RCPT TO:<" + RCPT.encode() + b">\r\n"
               b"DATA\r\n" +
               make_message(body="piped " + second + "\r\n") +
               b".\r\nQUIT\r\n")
        mail, rcpt, data, end, quit_ = c.replies(5)
        assert_reply(mail, "250 2.1.0")
        assert_reply(rcpt, "250 2.1.5")
        assert_reply(data, "354")
        assert_reply(end, "250 2.0.0")
        assert_reply(quit_, "221 2.0.0")
        c.expect_closed()
    [e] = server.read_spool()
    assert e["token"] == second


def test_two_pipelined_transactions_are_both_spooled(server):
    with server.session() as c:
        c.send("EHLO client.test\r\nMAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n"
               % (SENDER, RCPT))
        for r, want in zip(c.replies(4), ["250", "250 2.1.0", "250 2.1.5",
                                          "354"]):
            assert_reply(r, want)
        assert_reply(c.send_data(make_message()), "250 2.0.0")
        c.send(b"MAIL FROM:<" + SENDER.encode() + b">\r\n"
               b"RCPT TO:<" + RCPT.encode() + b">\r\nDATA\r\n" +
               make_message(body="two FIRM-TOKEN:PIPE-LINE-0002\r\n") +
               b".\r\nQUIT\r\n")
        got = c.replies(5)
        for r, want in zip(got, ["250 2.1.0", "250 2.1.5", "354",
                                 "250 2.0.0", "221 2.0.0"]):
            assert_reply(r, want)
        c.expect_closed()
    tokens = sorted(e["token"] for e in server.read_spool())
    assert tokens == sorted([TOKEN, "FIRM-TOKEN:PIPE-LINE-0002"])


# ------------------------------------------------------------ spool failure

def test_unwritable_spool_gets_451_4_3_0(server):
    assert wait_for(server.spool.is_dir, 2.0), "spool dir was not created"
    os.chmod(server.spool, 0o500)
    try:
        with server.session() as c:
            assert_reply(c.deliver(make_message()), "451 4.3.0")
    finally:
        os.chmod(server.spool, 0o700)
    assert server.spool_files() == []


# ------------------------------------------------------------ abuse

ROTATING_CHARSETS = ("ISO-8859-1", "ISO-8859-15", "WINDOWS-1252", "KOI8-R")


def rotating_subject(size):
    """A Subject value of about size octets: Q-encoded words that rotate
    through four charsets, folded so that no line reaches 1000 octets."""
    lines, line, total, i = [], [], 0, 0
    while total < size:
        word = "=?%s?Q?caf=E9_%d?=" % (ROTATING_CHARSETS[i % 4], i)
        line.append(word)
        total += len(word) + 1
        i += 1
        if len(line) == 30:
            lines.append(" ".join(line))
            line = []
            total += 2
    if line:
        lines.append(" ".join(line))
    return "\r\n ".join(lines)


def test_huge_subject_of_rotating_charsets_is_answered_within_a_second(
        server):
    subject = rotating_subject(900 * 1024)
    msg = make_message(subject=subject, body="please verify " + TOKEN +
                       "\r\n")
    assert 900 * 1024 < len(msg) < 1024 * 1024
    assert max(len(x) for x in msg.split(b"\r\n")) < 998
    with server.session() as c:
        c.envelope()
        c.send(msg)
        start = time.monotonic()
        c.send(b".\r\n")
        r = c.reply(timeout=30)
        elapsed = time.monotonic() - start
        assert_reply(r, "250 2.0.0")
    print("end of data answered after %.3f s" % elapsed)
    assert elapsed < 1.0, "end of data answered after %.2f s" % elapsed
    [e] = server.read_spool()
    assert e["token"] == TOKEN
    # the first words are decoded; the rest are kept as they came
    assert e["subject"].startswith("caf\u00e9 0caf\u00e9 1")


# A MIME limit cuts the decoder's walk short; it never refuses a message
# that FIRM could read.

def test_more_than_100_mime_parts_are_accepted_with_the_first_text(server):
    parts = "".join("--p\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i
                    for i in range(101))
    msg = make_message(subject="parts " + TOKEN, body=parts + "--p--\r\n",
                       extra=("MIME-Version: 1.0",
                              "Content-Type: multipart/mixed; boundary=p"))
    with server.session() as c:
        assert_reply(c.deliver(msg), "250 2.0.0")
    [e] = server.read_spool()
    assert e["token"] == TOKEN
    assert e["subject"] == "parts " + TOKEN
    assert e["body"].strip() == "part 0"
    assert any(x.get("event") == "mime_truncated" and
               x.get("limit") == "too many MIME parts"
               for x in server.logs(strict=False))


def test_eleven_nesting_levels_are_accepted_with_the_subject(server):
    body = "".join("--b%d\r\nContent-Type: multipart/mixed; boundary=b%d"
                   "\r\n\r\n" % (d, d + 1) for d in range(10))
    body += "--b10\r\nContent-Type: text/plain\r\n\r\ntoo deep\r\n"
    body += "".join("--b%d--\r\n" % d for d in range(10, -1, -1))
    msg = make_message(subject="deep " + TOKEN, body=body,
                       extra=("MIME-Version: 1.0",
                              "Content-Type: multipart/mixed; boundary=b0"))
    with server.session() as c:
        assert_reply(c.deliver(msg), "250 2.0.0")
    [e] = server.read_spool()
    assert e["token"] == TOKEN
    assert e["subject"] == "deep " + TOKEN
    assert "too deep" not in e["body"]


def test_over_1000_header_fields_are_accepted_with_the_body(server):
    extra = tuple("X-Field-%d: %d" % (i, i) for i in range(1000))
    msg = make_message(subject="many fields", extra=extra)
    with server.session() as c:
        assert_reply(c.deliver(msg), "250 2.0.0")
    [e] = server.read_spool()
    assert e["token"] == TOKEN
    assert e["subject"] == "many fields"
    assert TOKEN in e["body"]
