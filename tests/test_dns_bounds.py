"""Per-session DNS bounds (issue 21): SPF, DKIM and DMARC run in the
verifier once per message, never at MAIL, and the messages of one
session ask DNS_SESSION_QUERIES_MAX (480, smtpd.8 SENDER AUTHENTICATION)
questions in all.  Counted on the test's fake DNS server: every domain is
distinct, so the relay's cache answers none of them."""
import secrets

from conftest import assert_reply, make_message

SESSION_QUERIES_MAX = 480       # smtpd.h DNS_SESSION_QUERIES_MAX
INCLUDES = 9                    # each message's SPF: 10 TXT questions


def spf_chain(dns, domain):
    """SPF at domain through INCLUDES includes, ending in a pass for the
    client (127.0.0.1): 10 questions for SPF alone."""
    names = [domain] + ["i%d.%s" % (n, domain) for n in range(INCLUDES)]
    for name, nxt in zip(names, names[1:]):
        dns.txt(name, "v=spf1 include:%s -all" % nxt)
    dns.txt(names[-1], "v=spf1 ip4:127.0.0.1 -all")


def test_mail_commands_ask_no_dns(smtpd, dns):
    # 1,000 senders of distinct random domains, each MAIL then RSET, as
    # long as the session lasts: RSET is a junk command, and the 101st
    # ends it (421 4.7.0); no MAIL asks DNS meanwhile
    srv = smtpd(resolver=dns)
    mails, closed = 0, None
    with srv.session() as c:
        c.ehlo()
        for batch in range(20):
            cmds = b""
            for _ in range(50):
                cmds += b"MAIL FROM:<a@%s.example>\r\nRSET\r\n" % \
                    secrets.token_hex(8).encode()
            c.send(cmds)
            for _ in range(50):
                r = c.reply()
                if r.code == 421:
                    closed = r
                    break
                assert_reply(r, "250 2.1.0")
                mails += 1
                r = c.reply()
                if r.code == 421:
                    closed = r
                    break
                assert_reply(r, "250")
            if closed is not None:
                break
    assert_reply(closed, "421 4.7.0")
    assert mails == 101, mails      # the 101st RSET closes
    # the relay's own probe of the resolver at start (". NS") aside
    asked = [q for q in dns.queries if q.name.endswith(".example")]
    assert len(asked) <= SESSION_QUERIES_MAX
    assert asked == [], asked[:5]


def test_messages_of_one_session_ask_at_most_the_session_cap(smtpd, dns):
    # 60 messages of about 12 questions each would ask some 720
    n = 60
    domains = ["d%d-%s.example" % (i, secrets.token_hex(4))
               for i in range(n + 1)]
    for d in domains:
        spf_chain(dns, d)
    srv = smtpd(resolver=dns)
    with srv.session(30.0) as c:
        for i, d in enumerate(domains[:n]):
            sender = "ann@" + d
            r = c.deliver(make_message(sender=sender,
                                       msgid="<b%d@%s>" % (i, d)),
                          sender=sender, helo="client.example" if i == 0
                          else None)
            assert_reply(r, "250 2.0.0")
        c.quit()
    asked = len([q for q in dns.queries if q.name.endswith(".example")])
    assert 10 * 20 < asked <= SESSION_QUERIES_MAX, asked
    spf = {e["email"]: e["spf_result"] for e in srv.read_spool()}
    assert spf["ann@" + domains[0]] == "pass"
    assert spf["ann@" + domains[n - 1]] == "temperror"

    # the next session has its own allowance
    with srv.session(30.0) as c:
        sender = "ann@" + domains[n]
        r = c.deliver(make_message(sender=sender, msgid="<last@x>"),
                      sender=sender, helo="client.example")
        assert_reply(r, "250 2.0.0")
        c.quit()
    spf = {e["email"]: e["spf_result"] for e in srv.read_spool()}
    assert spf[sender] == "pass"
