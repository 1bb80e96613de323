"""CHUNKING (RFC 3030, SPEC section 3): BDAT chunks of exactly the
announced size are data whatever they hold; BDAT n LAST ends the
message, which then goes through the checks DATA's would."""
import smtplib

from conftest import (LOOPBACK, RCPT, SENDER, assert_reply, make_message,
                      raw_message)


def bdat(c, chunk, last=False):
    c.send(b"BDAT %d%s\r\n" % (len(chunk), b" LAST" if last else b"") +
           chunk)
    return c.reply()


def envelope(c):
    c.ehlo()
    assert_reply(c.cmd("MAIL FROM:<%s>" % SENDER), "250 2.1.0")
    assert_reply(c.cmd("RCPT TO:<%s>" % RCPT), "250 2.1.5")


def test_ehlo_advertises_chunking(server):
    with server.session() as c:
        r = c.cmd("EHLO client.test")
        assert "CHUNKING" in [l[4:] for l in r.lines], r.lines


def test_a_message_in_three_chunks_is_delivered_whole(server):
    msg = make_message()
    parts = [msg[:40], msg[40:100], msg[100:]]
    with server.session() as c:
        envelope(c)
        assert_reply(bdat(c, parts[0]), "250 2.0.0")
        assert_reply(bdat(c, parts[1]), "250 2.0.0")
        assert_reply(bdat(c, parts[2], last=True), "250 2.0.0")
        c.quit()
    [e] = server.read_spool()
    assert raw_message(e).endswith(msg)


def test_chunk_octets_are_data_even_a_dot_line_and_commands(server):
    # what would end DATA and start a command is data inside a chunk
    smuggled = (b"\r\n.\r\nMAIL FROM:<evil@example.net>\r\n"
                b"RCPT TO:<%s>\r\nDATA\r\n" % RCPT.encode())
    msg = make_message(body="hello FIRM-TOKEN:ABCD-EFGH-IJKL\r\n")
    with server.session() as c:
        envelope(c)
        assert_reply(bdat(c, msg + smuggled, last=True), "250 2.0.0")
        assert_reply(c.cmd("NOOP"), "250 2.0.0")
        c.quit()
    [e] = server.read_spool()
    assert e["email"] == SENDER
    assert smuggled in raw_message(e)


def test_pipelined_chunks_and_commands(server):
    msg = make_message()
    with server.session() as c:
        c.ehlo()
        c.send(b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nBDAT %d\r\n%sBDAT %d "
               b"LAST\r\n%sQUIT\r\n" % (SENDER.encode(), RCPT.encode(),
                                        len(msg[:50]), msg[:50],
                                        len(msg[50:]), msg[50:]))
        for want in ("250 2.1.0", "250 2.1.5", "250 2.0.0", "250 2.0.0",
                     "221 2.0.0"):
            assert_reply(c.reply(), want)
    assert len(server.read_spool()) == 1


def test_bdat_zero_last_ends_the_message(server):
    msg = make_message()
    with server.session() as c:
        envelope(c)
        assert_reply(bdat(c, msg), "250 2.0.0")
        assert_reply(bdat(c, b"", last=True), "250 2.0.0")
        c.quit()
    assert len(server.read_spool()) == 1


def test_bdat_before_a_recipient_is_503_and_its_chunk_is_dropped(server):
    with server.session() as c:
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<%s>" % SENDER), "250 2.1.0")
        assert_reply(bdat(c, b"RSET\r\nQUIT\r\n"), "503 5.5.1")
        # the chunk's "QUIT" did not run: the session is still here
        assert_reply(c.cmd("NOOP"), "250 2.0.0")
    assert server.read_spool() == []


def test_data_after_bdat_in_one_transaction_is_503(server):
    msg = make_message()
    with server.session() as c:
        envelope(c)
        assert_reply(bdat(c, msg[:30]), "250 2.0.0")
        assert_reply(c.cmd("DATA"), "503 5.5.1")
        assert_reply(c.cmd("RSET"), "250 2.0.0")
        c.quit()
    assert server.read_spool() == []


def test_bdat_size_not_a_number_is_501_and_close(server):
    with server.session() as c:
        envelope(c)
        assert_reply(c.cmd("BDAT ten"), "501 5.5.4")
        c.expect_closed()


def test_chunks_over_max_size_are_552_read_and_dropped(smtpd):
    srv = smtpd("-s", "2000")
    msg = make_message()
    with srv.session() as c:
        envelope(c)
        big = b"X" * 990 + b"\r\n" + b"Y" * 990 + b"\r\nQUIT\r\n"
        assert_reply(bdat(c, msg), "250 2.0.0")
        assert_reply(bdat(c, big), "552 5.3.4")
        assert_reply(bdat(c, b"MAIL FROM:<x@example.net>\r\n", last=True),
                     "552 5.3.4")
        assert_reply(c.cmd("NOOP"), "250 2.0.0")
        c.quit()
    assert srv.read_spool() == []


def test_bdat_message_without_token_gets_550_5_7_0(server):
    msg = make_message(subject="hi", body="no token here\r\n")
    with server.session() as c:
        envelope(c)
        assert_reply(bdat(c, msg, last=True), "550 5.7.0")
        c.quit()


def test_bare_lf_in_a_chunk_is_refused_with_reject_bare_lf(smtpd):
    srv = smtpd("--reject-bare-lf")
    msg = make_message().replace(b"\r\nThanks", b"\nThanks")
    with srv.session() as c:
        envelope(c)
        assert_reply(bdat(c, msg, last=True), "550 5.5.2")
        c.quit()


def test_smtplib_sends_with_bdat_when_asked(server):
    # a real client's view: EHLO lists CHUNKING, BDAT LAST delivers
    with smtplib.SMTP(LOOPBACK, server.port, timeout=10) as s:
        s.ehlo("client.test")
        assert s.has_extn("chunking")
        s.mail(SENDER)
        s.rcpt(RCPT)
        msg = make_message()
        s.send(b"BDAT %d LAST\r\n" % len(msg) + msg)
        code, _ = s.getreply()
        assert code == 250
    assert len(server.read_spool()) == 1
