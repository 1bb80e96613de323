"""DNS through the relay (SPEC section 6): a worker has no network, so it
asks the relay over its channel, and the relay resolves with libunbound,
forwarding to --resolver, one cache for every worker.  These tests ask
through the test build's XTEST DNS hook, as SPF and DKIM do, and look at
what the fake DNS server on loopback saw."""
import ipaddress
import os
import time

from conftest import SMTPD_TEST, assert_reply, make_message, wait_for
from test_privsep import relay_of
from test_proxy import proxied, v1
from test_sandbox import LOCALERR

# the status numbers of smtpd.h's enum dns_status
NOERROR, NXDOMAIN, TEMPFAIL = 0, 1, 2


def ask(c, qtype, name, timeout=10.0):
    """One question through the worker's channel: (status, records)."""
    r = c.cmd("XTEST DNS %s %s" % (qtype, name), timeout=timeout)
    assert len(r.lines) == 1 and r.lines[0].startswith(LOCALERR + "dns: "), \
        r.lines
    fields = r.lines[0][len(LOCALERR + "dns: "):].split("|")
    assert fields[0].startswith("status "), fields
    return int(fields[0].split()[1]), fields[1:]


def test_txt_a_aaaa_mx_ptr_come_back_as_plain_data(smtpd, dns):
    dns.txt("example.org", ["v=spf1 ", "ip4:192.0.2.1 -all"])
    dns.a("example.org", "192.0.2.7")
    dns.aaaa("example.org", "2001:db8::7")
    dns.mx("example.org", "mx.example.org")
    dns.ptr("4.3.2.1.in-addr.arpa", "host.example.org")
    srv = smtpd(binary=SMTPD_TEST, resolver=dns)
    with srv.session() as c:
        c.ehlo()
        # character-strings are joined without a space (RFC 7208 3.3)
        assert ask(c, "TXT", "example.org") == \
            (NOERROR, ["v=spf1 ip4:192.0.2.1 -all"])
        assert ask(c, "A", "example.org") == (NOERROR, ["192.0.2.7"])
        assert ask(c, "AAAA", "example.org") == (NOERROR, ["2001:db8::7"])
        assert ask(c, "MX", "example.org") == (NOERROR, ["mx.example.org"])
        assert ask(c, "PTR", "4.3.2.1.in-addr.arpa") == \
            (NOERROR, ["host.example.org"])
        c.quit()


# Names in the zones libunbound serves itself unless told otherwise
# (unbound.conf(5), local-zone, the default zones; 1.23 added
# resolver.arpa and service.arpa): the reverse zones of loopback, of
# private, shared, link-local and documentation ranges (RFC 6303, the
# AS112 zones), and localhost, test, invalid, onion, home.arpa.  With
# --resolver every one must be asked of the resolver.
def rev(addr):
    return ipaddress.ip_address(addr).reverse_pointer


LOCALLY_SERVED = [
    ("PTR", rev("192.0.2.7")),          # TEST-NET-1 (RFC 5737)
    ("PTR", rev("198.51.100.7")),       # TEST-NET-2
    ("PTR", rev("203.0.113.7")),        # TEST-NET-3
    ("PTR", rev("10.0.0.7")),           # RFC 1918
    ("PTR", rev("172.16.0.7")),
    ("PTR", rev("192.168.0.7")),
    ("PTR", rev("100.64.0.7")),         # shared address space (RFC 6598)
    ("PTR", rev("169.254.0.7")),        # link-local
    ("PTR", rev("0.0.0.7")),            # "this network"
    ("PTR", rev("255.255.255.255")),    # broadcast
    ("PTR", rev("127.0.0.1")),          # loopback: libunbound says localhost
    ("PTR", rev("127.0.0.2")),
    ("PTR", rev("::1")),                # loopback: libunbound says localhost
    ("PTR", rev("::")),                 # unspecified
    ("PTR", rev("2001:db8::7")),        # documentation (RFC 3849)
    ("PTR", rev("fd00::7")),            # unique local (RFC 4193)
    ("PTR", rev("fe80::7")),            # link-local
    ("A", "localhost"),                 # libunbound says 127.0.0.1
    ("TXT", "localhost"),
    ("TXT", "mail.localhost"),
    ("TXT", "example.test"),            # RFC 6761
    ("TXT", "example.invalid"),
    ("TXT", "example.onion"),           # RFC 7686
    ("TXT", "router.home.arpa"),        # RFC 8375
    ("TXT", "dns.resolver.arpa"),       # RFC 9462
    ("TXT", "printer.service.arpa"),    # RFC 9665
]


def test_with_resolver_no_zone_is_answered_locally(smtpd, dns):
    want = {}
    for qtype, name in LOCALLY_SERVED:
        if qtype == "PTR":
            dns.ptr(name, "served.example.org")
            want[qtype, name] = "served.example.org"
        elif qtype == "A":
            dns.a(name, "192.0.2.99")
            want[qtype, name] = "192.0.2.99"
        else:
            dns.txt(name, "v=spf1 ptr -all served")
            want[qtype, name] = "v=spf1 ptr -all served"
    srv = smtpd(binary=SMTPD_TEST, resolver=dns)
    wrong = []
    with srv.session() as c:
        c.ehlo()
        for qtype, name in LOCALLY_SERVED:
            got = ask(c, qtype, name)
            asked = dns.count(name, qtype)
            if got != (NOERROR, [want[qtype, name]]) or asked != 1:
                wrong.append("%s %s: %r, asked %d times" % (qtype, name,
                                                            got, asked))
        c.quit()
    assert not wrong, "answered without the resolver:\n" + "\n".join(wrong)


def test_spf_ptr_in_locally_served_zones_is_asked_of_the_resolver(smtpd,
                                                                  dns):
    # a client in TEST-NET-1 whose name is under .test: every answer
    # SPF needs lies in a zone libunbound would otherwise answer itself
    dns.txt("example.test", "v=spf1 ptr -all")
    dns.ptr(rev("192.0.2.7"), "mail.example.test")
    dns.a("mail.example.test", "192.0.2.7")
    srv = smtpd("--proxy-from", "127.0.0.1/32", resolver=dns)
    with proxied(srv, v1("192.0.2.7")) as c:
        c.greeting()
        r = c.deliver(make_message(sender="alice@example.test"),
                      sender="alice@example.test")
        assert_reply(r, "250 2.0.0")
        c.quit()
    [e] = srv.read_spool()
    assert e["auth"]["spf"] == {"result": "pass", "domain": "example.test",
                                "scope": "mfrom"}, e["auth"]["spf"]


def test_nxdomain_nodata_and_servfail_are_told_apart(smtpd, dns):
    dns.a("example.org", "192.0.2.7")
    dns.set_mode("broken.example.org", "servfail")
    srv = smtpd(binary=SMTPD_TEST, resolver=dns)
    with srv.session() as c:
        c.ehlo()
        assert ask(c, "TXT", "nothing.example.org") == (NXDOMAIN, [])
        assert ask(c, "TXT", "example.org") == (NOERROR, [])
        assert ask(c, "TXT", "broken.example.org") == (TEMPFAIL, [])
        c.quit()


def test_a_name_that_never_answers_is_tempfail_within_the_budget(smtpd, dns):
    dns.set_mode("slow.example.org", "timeout")
    srv = smtpd(binary=SMTPD_TEST, resolver=dns)
    with srv.session() as c:
        c.ehlo()
        t0 = time.monotonic()
        assert ask(c, "TXT", "slow.example.org", timeout=15) == (TEMPFAIL, [])
        took = time.monotonic() - t0
        # the message's whole DNS budget is 5 s; never a pass
        assert 4.0 <= took < 8.0, took
        c.quit()


def test_answers_are_cached_across_sessions_and_workers(smtpd, dns):
    dns.txt("example.org", "v=spf1 -all")
    srv = smtpd(binary=SMTPD_TEST, resolver=dns)
    pids = set()
    for _ in range(3):
        with srv.session() as c:
            c.ehlo()
            assert ask(c, "TXT", "example.org") == (NOERROR, ["v=spf1 -all"])
            c.quit()
    assert dns.count("example.org", "TXT") == 1, dns.queries()


def test_negative_answers_are_cached_too(smtpd, dns):
    srv = smtpd(binary=SMTPD_TEST, resolver=dns)
    for _ in range(2):
        with srv.session() as c:
            c.ehlo()
            assert ask(c, "TXT", "missing.example.org") == (NXDOMAIN, [])
            c.quit()
    assert dns.count("missing.example.org", "TXT") == 1, dns.queries()


def test_the_relay_answers_again_from_what_it_keeps(smtpd, dns):
    """An answer asked again within its TTL is the relay's own, counted
    in smtpd_dns_cache_answers_total; names match without case."""
    from test_health import metrics, start_health, value
    dns.txt("example.org", "v=spf1 -all")
    srv = start_health(smtpd, binary=SMTPD_TEST, resolver=dns)
    before = value(metrics(srv)[0], "smtpd_dns_cache_answers_total")
    with srv.session() as c:
        c.ehlo()
        for name in ("example.org", "Example.ORG", "example.org"):
            assert ask(c, "TXT", name) == (NOERROR, ["v=spf1 -all"])
        assert ask(c, "TXT", "gone.example.org") == (NXDOMAIN, [])
        assert ask(c, "TXT", "gone.example.org") == (NXDOMAIN, [])
        c.quit()
    assert wait_for(lambda: value(metrics(srv)[0],
                                  "smtpd_dns_cache_answers_total") -
                    before == 3, 5)
    assert dns.count("example.org", "TXT") == 1, dns.queries()


def test_a_kept_answer_lives_no_longer_than_its_ttl(smtpd, dns):
    """The relay keeps an answer no longer than libunbound says it
    lives: a record of TTL 1 changed at the server is seen changed two
    seconds later."""
    dns.txt("short.example.org", "v=spf1 -all", ttl=1)
    srv = smtpd(binary=SMTPD_TEST, resolver=dns)
    with srv.session() as c:
        c.ehlo()
        assert ask(c, "TXT", "short.example.org") == \
            (NOERROR, ["v=spf1 -all"])
        dns.remove("short.example.org")
        dns.txt("short.example.org", "v=spf1 +all", ttl=1)
        time.sleep(2.5)
        assert ask(c, "TXT", "short.example.org") == \
            (NOERROR, ["v=spf1 +all"])
        c.quit()


def test_a_failure_is_kept_for_a_second(smtpd, dns):
    """RFC 9520 section 3.2: a resolution failure is kept at least one
    second (asked again at once: no new question), and not for long
    (the name answers again soon after the server mends: libunbound
    keeps a SERVFAIL some seconds of its own)."""
    dns.txt("flaky.example.org", "v=spf1 -all")
    dns.set_mode("flaky.example.org", "servfail")
    srv = smtpd(binary=SMTPD_TEST, resolver=dns)
    with srv.session() as c:
        c.ehlo()
        assert ask(c, "TXT", "flaky.example.org") == (TEMPFAIL, [])
        n = dns.count("flaky.example.org", "TXT")
        assert ask(c, "TXT", "flaky.example.org") == (TEMPFAIL, [])
        assert dns.count("flaky.example.org", "TXT") == n, dns.queries()
        dns.set_mode("flaky.example.org", None)
        t0 = time.monotonic()
        while ask(c, "TXT", "flaky.example.org") != \
                (NOERROR, ["v=spf1 -all"]):
            assert time.monotonic() - t0 < 15
            time.sleep(0.5)
        c.quit()


def test_a_malformed_question_closes_only_that_workers_channel(smtpd, dns):
    dns.txt("example.org", "v=spf1 -all")
    srv = smtpd("--spare", "2", binary=SMTPD_TEST, resolver=dns)
    assert wait_for(lambda: relay_of(srv) is not None, 5)
    relay = relay_of(srv)
    with srv.session() as c:
        c.ehlo()
        r = c.cmd("XTEST DNS-BAD")
        assert r.lines == [LOCALERR + "channel: 21 bytes of a bad question"], \
            r.lines
        # that worker's channel is gone: its questions fail, never pass
        assert ask(c, "TXT", "example.org")[0] == TEMPFAIL
        c.quit()
    assert wait_for(lambda: [e for e in srv.logs() if "malformed DNS"
                             in e.get("msg", "")], 5)
    assert relay_of(srv) == relay
    assert dns.count("a\\b.c") == 0 and dns.count("ab.c") == 0
    with srv.session() as c:
        c.ehlo()
        assert ask(c, "TXT", "example.org") == (NOERROR, ["v=spf1 -all"])
        c.quit()


def test_the_relay_resolves_in_one_thread_of_its_own(smtpd, dns):
    dns.txt("example.org", "v=spf1 -all")
    srv = smtpd("-c", "5", binary=SMTPD_TEST, resolver=dns)
    assert wait_for(lambda: relay_of(srv) is not None, 5)
    with srv.session() as c:
        c.ehlo()
        assert ask(c, "TXT", "example.org")[0] == NOERROR
        c.quit()
    relay = relay_of(srv)
    # libunbound's resolver thread and, with --spool, one that writes
    # the spool (spool.c) for each session -c allows, and nothing more;
    # each one filtered
    tasks = os.listdir("/proc/%d/task" % relay)
    assert len(tasks) == 2 + 5, tasks
    for t in tasks:
        with open("/proc/%d/task/%s/status" % (relay, t)) as f:
            status = f.read()
        assert "Seccomp:\t2" in status, status


def test_a_message_is_delivered_while_dns_fails(smtpd, dns):
    dns.set_mode("example.net", "servfail", subtree=True)
    srv = smtpd(resolver=dns)
    with srv.session() as c:
        assert_reply(c.deliver(make_message()), "250 2.0.0")
        c.quit()
    [e] = srv.read_spool()
    assert e["auth"]["verdict"] == "temperror", e["auth"]


def test_a_silent_resolver_is_warned_of_at_start_without_delay(smtpd, dns):
    """One --resolver answers, one never does (a bound socket that reads
    and says nothing): the server greets at once, and within a few
    seconds the relay warns of the silent one only."""
    import socket
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    name = "127.0.0.1@%d" % silent.getsockname()[1]
    try:
        started = time.monotonic()
        srv = smtpd("--resolver", "127.0.0.1:%d" % silent.getsockname()[1],
                    "--resolver", dns.address, resolver=None)
        with srv.session() as c:
            greeted = time.monotonic() - started
            assert_reply(c.deliver(make_message()), "250 2.0.0")
            c.quit()
        assert greeted < 2, greeted

        def warnings():
            return [e for e in srv.logs(strict=False)
                    if e.get("event") == "resolver_unreachable"]
        assert wait_for(warnings, 6), srv.log_text()[-2000:]
        time.sleep(0.5)
        [w] = warnings()
        assert w["level"] == "warning" and w["resolver"] == name, w
        assert "2 seconds" in w["error"], w
        assert w["proc"] == "relay", w
    finally:
        silent.close()
