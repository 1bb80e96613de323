"""Self-test of tests/fakes/fake_dns.py, the fake DNS server the sender
authentication tests point smtpd at: real UDP and TCP on loopback,
checked with dnslib's own client and raw sockets."""

import ctypes
import ctypes.util
import socket
import struct
import time

import pytest
from dnslib import EDNS0, QTYPE, RCODE, DNSRecord

from fake_dns import FakeDNS, split_txt

TIMEOUT = 2.0


@pytest.fixture
def fake():
    f = FakeDNS().start()
    yield f
    f.stop()


def ask(fake, name, qtype="A", tcp=False, edns=None, timeout=TIMEOUT):
    """One question; the parsed reply."""
    q = DNSRecord.question(name, qtype)
    if edns is not None:
        q.add_ar(EDNS0(udp_len=edns))
    wire = q.send(fake.host, fake.port, tcp=tcp, timeout=timeout)
    reply = DNSRecord.parse(wire)
    assert reply.header.id == q.header.id
    assert reply.header.qr == 1
    return reply


def udp_raw(fake, data, timeout=1.0):
    """Send raw bytes over UDP; the reply bytes, or None on timeout."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(data, (fake.host, fake.port))
        try:
            return s.recv(65535)
        except socket.timeout:
            return None


def txt_strings(reply):
    return [list(rr.rdata.data) for rr in reply.rr if rr.rtype == QTYPE.TXT]


def test_txt_record_is_answered_over_udp(fake):
    fake.txt("example.org", "v=spf1 ip4:127.0.0.1 -all")
    r = ask(fake, "example.org", "TXT")
    assert r.header.rcode == RCODE.NOERROR
    assert txt_strings(r) == [[b"v=spf1 ip4:127.0.0.1 -all"]]
    assert r.rr[0].ttl == 300


def test_names_compare_case_insensitively_and_keep_the_asked_case(fake):
    fake.txt("Example.ORG.", "hello")
    r = ask(fake, "eXample.org", "TXT")
    assert txt_strings(r) == [[b"hello"]]
    assert str(r.rr[0].rname) == "eXample.org."
    assert str(r.q.qname) == "eXample.org."


def test_long_txt_is_split_into_255_octet_strings(fake):
    text = "p=" + "A" * 600
    fake.txt("sel._domainkey.example.org", text)
    r = ask(fake, "sel._domainkey.example.org", "TXT", tcp=True)
    [strings] = txt_strings(r)
    assert [len(s) for s in strings] == [255, 255, 92]
    assert b"".join(strings) == text.encode()


def test_txt_given_as_a_list_keeps_its_strings(fake):
    fake.txt("example.org", ["v=spf1 ", "-all"])
    assert txt_strings(ask(fake, "example.org", "TXT")) == \
        [[b"v=spf1 ", b"-all"]]
    assert split_txt("") == [b""]


def test_a_aaaa_mx_ptr_records(fake):
    fake.a("mx.example.org", "127.0.0.1")
    fake.aaaa("mx.example.org", "::1")
    fake.mx("example.org", "mx.example.org", 5)
    fake.ptr("1.0.0.127.in-addr.arpa", "mx.example.org")
    assert str(ask(fake, "mx.example.org", "A").rr[0].rdata) == "127.0.0.1"
    assert str(ask(fake, "mx.example.org", "AAAA").rr[0].rdata) == "::1"
    mx = ask(fake, "example.org", "MX").rr[0].rdata
    assert (mx.preference, str(mx.label)) == (5, "mx.example.org.")
    ptr = ask(fake, "1.0.0.127.in-addr.arpa", "PTR").rr[0].rdata
    assert str(ptr) == "mx.example.org."


def test_cname_is_followed_inside_the_zone(fake):
    fake.cname("alias.example.org", "real.example.org")
    fake.txt("real.example.org", "v=spf1 -all")
    r = ask(fake, "alias.example.org", "TXT")
    assert [QTYPE[rr.rtype] for rr in r.rr] == ["CNAME", "TXT"]
    assert str(r.rr[1].rname) == "real.example.org."


def test_unknown_name_is_nxdomain_with_an_soa(fake):
    r = ask(fake, "nothing.example.org", "TXT")
    assert r.header.rcode == RCODE.NXDOMAIN
    assert r.rr == []
    assert [QTYPE[rr.rtype] for rr in r.auth] == ["SOA"]
    assert str(r.auth[0].rname) == "example.org."


def test_known_name_without_the_type_is_nodata_with_an_soa(fake):
    fake.a("example.org", "127.0.0.1")
    r = ask(fake, "example.org", "TXT")
    assert r.header.rcode == RCODE.NOERROR
    assert r.rr == []
    assert [QTYPE[rr.rtype] for rr in r.auth] == ["SOA"]


def test_empty_non_terminal_is_nodata_not_nxdomain(fake):
    fake.txt("sel._domainkey.example.org", "v=DKIM1; p=")
    r = ask(fake, "_domainkey.example.org", "TXT")
    assert r.header.rcode == RCODE.NOERROR and r.rr == []


def test_nxdomain_mode_overrides_records(fake):
    fake.txt("example.org", "v=spf1 -all")
    fake.set_mode("example.org", "nxdomain")
    assert ask(fake, "example.org", "TXT").header.rcode == RCODE.NXDOMAIN


def test_servfail_mode_answers_servfail(fake):
    fake.txt("example.org", "v=spf1 -all")
    fake.set_mode("example.org", "servfail")
    r = ask(fake, "example.org", "TXT")
    assert r.header.rcode == RCODE.SERVFAIL and r.rr == []


def test_timeout_mode_never_answers_over_udp(fake):
    fake.txt("example.org", "v=spf1 -all")
    fake.set_mode("example.org", "timeout")
    q = DNSRecord.question("example.org", "TXT")
    t0 = time.monotonic()
    assert udp_raw(fake, q.pack(), timeout=1.0) is None
    assert time.monotonic() - t0 >= 0.9
    assert fake.count("example.org", "TXT") == 1


def test_timeout_mode_never_answers_over_tcp(fake):
    fake.set_mode("example.org", "timeout")
    with pytest.raises(socket.timeout):
        ask(fake, "example.org", "TXT", tcp=True, timeout=1.0)


def test_subtree_mode_covers_names_below(fake):
    fake.set_mode("example.org", "servfail", subtree=True)
    assert ask(fake, "_dmarc.example.org", "TXT").header.rcode == \
        RCODE.SERVFAIL
    assert ask(fake, "example.net", "TXT").header.rcode == RCODE.NXDOMAIN


def test_mode_none_restores_answers(fake):
    fake.txt("example.org", "x")
    fake.set_mode("example.org", "timeout")
    fake.set_mode("example.org", None)
    assert txt_strings(ask(fake, "example.org", "TXT")) == [[b"x"]]


def test_tcp_answers_and_several_queries_share_a_connection(fake):
    fake.txt("a.example.org", "one")
    fake.txt("b.example.org", "two")
    with socket.create_connection((fake.host, fake.port), timeout=2) as s:
        for name, want in (("a.example.org", b"one"),
                           ("b.example.org", b"two")):
            q = DNSRecord.question(name, "TXT")
            wire = q.pack()
            s.sendall(struct.pack("!H", len(wire)) + wire)
            (n,) = struct.unpack("!H", s.recv(2, socket.MSG_WAITALL))
            r = DNSRecord.parse(s.recv(n, socket.MSG_WAITALL))
            assert r.header.id == q.header.id
            assert txt_strings(r) == [[want]]
    assert fake.count(proto="tcp") == 2


def test_edns_query_gets_an_opt_record_back(fake):
    fake.txt("example.org", "x")
    r = ask(fake, "example.org", "TXT", edns=1232)
    assert [rr.rtype for rr in r.ar] == [QTYPE.OPT]
    assert txt_strings(r) == [[b"x"]]


def test_large_udp_answer_is_truncated_and_complete_over_tcp(fake):
    for i in range(8):
        fake.txt("big.example.org", "%d" % i + "x" * 200)
    r = ask(fake, "big.example.org", "TXT")
    assert r.header.tc == 1 and r.rr == []
    r = ask(fake, "big.example.org", "TXT", edns=4096)
    assert r.header.tc == 0 and len(r.rr) == 8
    r = ask(fake, "big.example.org", "TXT", tcp=True)
    assert r.header.tc == 0 and len(r.rr) == 8


def test_garbage_is_ignored_and_the_server_keeps_answering(fake):
    assert udp_raw(fake, b"\x00\x01garbage", timeout=0.5) is None
    assert udp_raw(fake, b"", timeout=0.5) is None
    fake.a("example.org", "127.0.0.1")
    assert ask(fake, "example.org", "A").rr


def test_responses_sent_to_it_are_ignored(fake):
    q = DNSRecord.question("example.org", "A")
    q.header.qr = 1
    assert udp_raw(fake, q.pack(), timeout=0.5) is None


def test_query_log_counts_and_reset(fake):
    fake.txt("example.org", "x")
    ask(fake, "EXAMPLE.org", "TXT")
    ask(fake, "example.org", "TXT")
    ask(fake, "example.org", "A")
    assert fake.count("example.org", "TXT") == 2
    assert fake.count("example.org") == 3
    assert fake.queries[0].name == "example.org"
    assert fake.queries[0].type == "TXT"
    fake.reset()
    assert fake.queries == []
    assert ask(fake, "example.org", "TXT").header.rcode == RCODE.NXDOMAIN


def test_delay_answers_late(fake):
    fake.txt("slow.example.org", "x")
    fake.set_delay("slow.example.org", 0.5)
    t0 = time.monotonic()
    assert txt_strings(ask(fake, "slow.example.org", "TXT")) == [[b"x"]]
    assert time.monotonic() - t0 >= 0.45


def test_stop_closes_both_ports():
    f = FakeDNS().start()
    port = f.port
    f.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


# ------------------------------------------------- with smtpd's resolver

class _UbResult(ctypes.Structure):
    """struct ub_result of libunbound (unbound.h)."""
    _fields_ = [("qname", ctypes.c_char_p), ("qtype", ctypes.c_int),
                ("qclass", ctypes.c_int),
                ("data", ctypes.POINTER(ctypes.POINTER(ctypes.c_char))),
                ("len", ctypes.POINTER(ctypes.c_int)),
                ("canonname", ctypes.c_char_p), ("rcode", ctypes.c_int),
                ("answer_packet", ctypes.c_void_p),
                ("answer_len", ctypes.c_int), ("havedata", ctypes.c_int),
                ("nxdomain", ctypes.c_int), ("secure", ctypes.c_int),
                ("bogus", ctypes.c_int), ("why_bogus", ctypes.c_char_p),
                ("was_ratelimited", ctypes.c_int), ("ttl", ctypes.c_int)]


@pytest.fixture
def unbound(fake):
    """A libunbound context forwarding to the fake, set up as the relay
    sets up its own (relay.c); resolve(name, type) -> (rcode, [rdata])."""
    path = ctypes.util.find_library("unbound")
    if path is None:
        pytest.skip("libunbound not installed")
    lib = ctypes.CDLL(path)
    lib.ub_ctx_create.restype = ctypes.c_void_p
    lib.ub_ctx_delete.argtypes = [ctypes.c_void_p]
    ctx = ctypes.c_void_p(lib.ub_ctx_create())
    for opt, val in ((b"do-not-query-localhost:", b"no"),
                     (b"infra-keep-probing:", b"yes")):
        assert lib.ub_ctx_set_option(ctx, opt, val) == 0
    assert lib.ub_ctx_set_fwd(ctx, fake.address.replace(":", "@")
                              .encode()) == 0

    def resolve(name, qtype):
        res = ctypes.POINTER(_UbResult)()
        assert lib.ub_resolve(ctx, name.encode(), getattr(QTYPE, qtype),
                              1, ctypes.byref(res)) == 0
        r = res.contents
        data = []
        for i in range(64):
            if not r.havedata or not r.data[i]:
                break
            data.append(ctypes.string_at(r.data[i], r.len[i]))
        rcode = r.rcode
        lib.ub_resolve_free(res)
        return rcode, data

    yield resolve
    lib.ub_ctx_delete(ctx)


def test_libunbound_reads_a_split_txt_record(fake, unbound):
    text = "v=DKIM1; k=rsa; p=" + "A" * 392
    fake.txt("sel._domainkey.example.org", text)
    rcode, [rdata] = unbound("sel._domainkey.example.org", "TXT")
    assert rcode == RCODE.NOERROR
    assert rdata == b"\xff" + text[:255].encode() + \
        bytes([len(text) - 255]) + text[255:].encode()


def test_libunbound_caches_answers_and_negative_answers(fake, unbound):
    fake.txt("example.org", "v=spf1 -all")
    for _ in range(3):
        assert unbound("example.org", "TXT")[0] == RCODE.NOERROR
        assert unbound("none.example.org", "TXT")[0] == RCODE.NXDOMAIN
    assert fake.count("example.org", "TXT") == 1
    assert fake.count("none.example.org", "TXT") == 1


def test_libunbound_gets_servfail_for_servfail_and_timeout(fake, unbound):
    fake.set_mode("bad.example.org", "servfail")
    fake.set_mode("slow.example.org", "timeout")
    assert unbound("bad.example.org", "TXT") == (RCODE.SERVFAIL, [])
    t0 = time.monotonic()
    assert unbound("slow.example.org", "TXT") == (RCODE.SERVFAIL, [])
    assert time.monotonic() - t0 < 15
