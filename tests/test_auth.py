"""Sender authentication (SPEC section 6): SPF, DKIM, DMARC, the verdict,
the Authentication-Results header, --require-auth, --auth-id, and the
From rules of section 3.

End to end: the real ./smtpd in --spool mode, asking a fake DNS server
of the test's own (tests/fakes/fake_dns.py, the `dns` fixture) through
--resolver; messages signed with python3-dkim (tests/dkim_util.py) and
sent by a real SMTP client from 127.0.0.1.  Every signed message is
first checked with python3-dkim's own verifier against the same DNS
data, so a failure here is smtpd's, not the test's.

SPEC ambiguities are marked "SPEC:" where a test had to read them.
"""

import re
import time

import pytest

import dkim_util
from conftest import (HELO, HOSTNAME, RCPT, TOKEN, assert_reply,
                      raw_message)

DOMAIN = "example.org"
ANN = "ann@" + DOMAIN
SEL = "sel1"
SPF_PASS = "v=spf1 ip4:127.0.0.1 -all"      # the client is 127.0.0.1
DMARC_REJECT = "v=DMARC1; p=reject"
SUBJECT = "Please verify " + TOKEN
BODY = "Hello,\r\nthis is my address.\r\nThanks\r\n"
TOKEN_BODY = "Hello,\r\nplease verify " + TOKEN + "\r\nThanks\r\n"
REPLY_TIMEOUT = 15.0    # a message may spend its 5 s DNS budget
DNS_BUDGET = 5.0


# ---------------------------------------------------------------- helpers

@pytest.fixture
def auth_smtpd(smtpd, dns):
    """Start smtpd (the conftest factory) asking this test's fake DNS."""
    def start(*extra, **kw):
        return smtpd(*extra, resolver=dns, **kw)
    return start


def message(subject=SUBJECT, body=BODY, author=ANN, extra=(),
            from_field=None, msgid="<auth-1@example.org>"):
    """A CRLF message.  from_field replaces the whole From line (None:
    'From: Ann <author>'; False: no From field at all)."""
    head = []
    if from_field is None:
        head.append("From: Ann <%s>" % author)
    elif from_field is not False:
        head.append(from_field)
    head += ["To: <%s>" % RCPT,
             "Subject: %s" % subject,
             "Date: Sat, 21 Nov 2026 22:00:00 +0000",
             "Message-ID: %s" % msgid]
    head += list(extra)
    return ("\r\n".join(head) + "\r\n\r\n" + body).encode("utf-8")


def publish(dns, domain=DOMAIN, spf=SPF_PASS, dmarc=DMARC_REJECT):
    """SPF at domain and DMARC at _dmarc.domain (None: not published)."""
    if spf is not None:
        dns.txt(domain, spf)
    if dmarc is not None:
        dns.txt("_dmarc." + domain, dmarc)


def signed(dns, msg, key=None, domain=DOMAIN, selector=SEL, minkey=1024,
           **kw):
    """msg signed by key (default RSA-2048) for domain/selector, the key
    published on dns; python3-dkim must verify the result there."""
    key = key or dkim_util.rsa_key(2048)
    dkim_util.publish(dns, key, domain, selector)
    out = dkim_util.sign(msg, key, domain, selector, **kw)
    assert dkim_util.check(out, dns, minkey=minkey), \
        "python3-dkim does not verify the test's own signature"
    return out


def strong_message(dns, **kw):
    """SPF pass, DMARC p=reject, an aligned RSA-2048 signature with the
    token in the signed Subject: everything a strong verdict needs."""
    publish(dns)
    return signed(dns, message(**kw))


def deliver(srv, msg, sender=ANN, helo=HELO, timeout=REPLY_TIMEOUT):
    """One session, one message, QUIT; the reply to the end of data."""
    with srv.session(timeout) as c:
        r = c.deliver(msg, sender=sender, helo=helo)
        c.quit()
    return r


def accepted(srv, msg, sender=ANN, helo=HELO):
    """Deliver; it must be accepted and spooled; the spool entry."""
    r = deliver(srv, msg, sender, helo)
    assert_reply(r, "250 2.0.0")
    [entry] = srv.read_spool()
    assert isinstance(entry.get("auth"), dict), entry
    return entry


def refused(srv, msg, expected, sender=ANN, helo=HELO):
    r = deliver(srv, msg, sender, helo)
    assert_reply(r, expected)
    assert srv.spool_files() == []
    return r


def has(obj, **want):
    """obj[k] == v for each k=v, with bool/int types exact."""
    for k, v in want.items():
        assert k in obj, "no %r in %r" % (k, obj)
        assert obj[k] == v and type(obj[k]) is type(v), \
            "%s: want %r, got %r in %r" % (k, v, obj[k], obj)


header_fields = dkim_util.header_fields


def unfold(value):
    return re.sub(r"\s+", " ", value).strip()


def auth_results(raw):
    """Values (unfolded text) of every Authentication-Results field."""
    out = []
    for f in header_fields(raw):
        name, _, value = f.partition(b":")
        if name.strip().lower() == b"authentication-results":
            out.append(unfold(value.decode("utf-8", "replace")))
    return out


# ------------------------------------------------------------ verdicts

def test_aligned_dkim_covering_the_token_with_spf_and_dmarc_is_strong(
        auth_smtpd, dns):
    srv = auth_smtpd()
    e = accepted(srv, strong_message(dns))
    assert e["from"] == ANN and e["email"] == ANN
    assert e["spf_result"] == "pass"
    assert e["dkim_result"] == "pass"
    a = e["auth"]
    has(a, authserv_id=HOSTNAME, verdict="strong",
        from_equals_envelope=True, auto_submitted=False)
    has(a["spf"], result="pass", domain=DOMAIN, scope="mfrom")
    [sig] = a["dkim"]
    has(sig, result="pass", d=DOMAIN, s=SEL, a="rsa-sha256",
        key_bits=2048, aligned=True, covers_token=True)
    has(a["dmarc"], result="pass", domain=DOMAIN, org_domain=DOMAIN,
        p="reject", spf_aligned=True, dkim_aligned=True)
    ar = a["authentication_results"]
    assert ar.startswith(HOSTNAME + ";"), ar
    for word in ("spf=pass", "dkim=pass", "dmarc=pass",
                 "header.d=" + DOMAIN, "header.from=" + DOMAIN):
        assert word in ar, (word, ar)


def test_raw_starts_with_our_authentication_results_then_received(
        auth_smtpd, dns):
    srv = auth_smtpd()
    e = accepted(srv, strong_message(dns))
    raw = raw_message(e)
    assert raw.startswith(b"Authentication-Results: " +
                          HOSTNAME.encode() + b";"), raw[:200]
    fields = header_fields(raw)
    assert fields[1].startswith(b"Received:"), fields[:3]
    # the header carries the same text as the payload's string
    value = fields[0].split(b":", 1)[1].decode()
    assert unfold(value) == unfold(e["auth"]["authentication_results"])
    assert auth_results(raw) == [unfold(value)]


def test_spf_pass_aligned_without_dkim_is_weak(auth_smtpd, dns):
    publish(dns)
    srv = auth_smtpd()
    e = accepted(srv, message())
    a = e["auth"]
    assert e["spf_result"] == "pass"
    assert e["dkim_result"] == "none"
    assert a["dkim"] == []
    has(a["dmarc"], result="pass", spf_aligned=True, dkim_aligned=False)
    has(a, verdict="weak")


def test_strong_message_whose_from_differs_from_envelope_is_weak(
        auth_smtpd, dns):
    srv = auth_smtpd()
    e = accepted(srv, strong_message(dns), sender="bounces@" + DOMAIN)
    a = e["auth"]
    has(a, from_equals_envelope=False, verdict="weak")
    has(a["dmarc"], result="pass", dkim_aligned=True)
    assert a["dkim"][0]["covers_token"] is True


def test_from_equal_to_envelope_compares_the_domain_case_insensitively(
        auth_smtpd, dns):
    # SPEC: "the From mailbox equals the envelope sender"; domains compare
    # case-insensitively everywhere in SPEC (section 2, -r), the local
    # part is kept as is.
    srv = auth_smtpd()
    e = accepted(srv, strong_message(dns), sender="ann@EXAMPLE.org")
    has(e["auth"], from_equals_envelope=True, verdict="strong")


def test_domain_publishing_nothing_is_none(auth_smtpd, dns):
    srv = auth_smtpd()
    e = accepted(srv, message())
    assert e["spf_result"] == "none"
    assert e["dkim_result"] == "none"
    has(e["auth"]["spf"], result="none", domain=DOMAIN)
    has(e["auth"]["dmarc"], result="none")
    has(e["auth"], verdict="none")


def test_spf_pass_without_a_dmarc_record_is_none(auth_smtpd, dns):
    publish(dns, dmarc=None)
    srv = auth_smtpd()
    e = accepted(srv, message())
    assert e["spf_result"] == "pass"
    has(e["auth"]["dmarc"], result="none")
    has(e["auth"], verdict="none")


def test_body_tampered_after_signing_under_dmarc_reject_is_fail(
        auth_smtpd, dns):
    publish(dns, spf="v=spf1 ?all")            # SPF neutral: no help
    msg = signed(dns, message(body=TOKEN_BODY))
    tampered = msg.replace(b"please verify", b"please check")
    assert tampered != msg
    srv = auth_smtpd()
    e = accepted(srv, tampered)              # --require-auth none
    assert e["spf_result"] == "neutral"
    assert e["dkim_result"] == "fail"
    has(e["auth"]["dkim"][0], result="fail", d=DOMAIN)
    has(e["auth"]["dmarc"], result="fail", p="reject",
        dkim_aligned=False, spf_aligned=False)
    has(e["auth"], verdict="fail")
    assert "dmarc=fail" in e["auth"]["authentication_results"]


def test_spf_fail_without_dkim_or_dmarc_is_fail(auth_smtpd, dns):
    publish(dns, spf="v=spf1 -all", dmarc=None)
    srv = auth_smtpd()
    e = accepted(srv, message())
    assert e["spf_result"] == "fail"
    has(e["auth"], verdict="fail")


def test_spf_fail_with_aligned_dkim_and_dmarc_pass_is_strong(
        auth_smtpd, dns):
    # "fail: ... SPF fail with no aligned DKIM pass": here there is one.
    publish(dns, spf="v=spf1 -all")
    msg = signed(dns, message())
    srv = auth_smtpd()
    e = accepted(srv, msg)
    assert e["spf_result"] == "fail"
    has(e["auth"]["dmarc"], result="pass", dkim_aligned=True,
        spf_aligned=False)
    has(e["auth"], verdict="strong")


def test_unaligned_dkim_pass_does_not_make_dmarc_pass(auth_smtpd, dns):
    publish(dns, spf=None)
    msg = signed(dns, message(), domain="example.net")
    srv = auth_smtpd()
    e = accepted(srv, msg)
    assert e["dkim_result"] == "pass"
    has(e["auth"]["dkim"][0], result="pass", d="example.net",
        aligned=False)
    has(e["auth"]["dmarc"], result="fail", dkim_aligned=False)
    has(e["auth"], verdict="fail")


# ------------------------------------------------------------ temperror

def test_sender_domain_timing_out_gives_temperror_and_is_forwarded(
        auth_smtpd, dns):
    publish(dns)
    dns.set_mode(DOMAIN, "timeout", subtree=True)
    srv = auth_smtpd()
    t0 = time.monotonic()
    e = accepted(srv, message())
    assert time.monotonic() - t0 < DNS_BUDGET + 7
    assert e["spf_result"] == "temperror"
    has(e["auth"], verdict="temperror")
    assert dns.count(DOMAIN, "TXT") >= 1


def test_timeout_with_require_auth_weak_gives_451_4_4_3(auth_smtpd, dns):
    publish(dns)
    dns.set_mode(DOMAIN, "timeout", subtree=True)
    srv = auth_smtpd("--require-auth", "weak")
    t0 = time.monotonic()
    refused(srv, message(), "451 4.4.3")
    assert time.monotonic() - t0 < DNS_BUDGET + 7


def test_servfail_gives_temperror_never_pass(auth_smtpd, dns):
    publish(dns)
    dns.set_mode(DOMAIN, "servfail", subtree=True)
    srv = auth_smtpd()
    e = accepted(srv, message())
    assert e["spf_result"] == "temperror"
    has(e["auth"], verdict="temperror")


def test_dkim_key_lookup_timing_out_is_temperror_not_pass(auth_smtpd, dns):
    # SPEC: what the verdict is when SPF alone would make it weak but a
    # DKIM temperror might have made it strong is not said; only that
    # a failed lookup is never a pass.
    msg = strong_message(dns)
    dns.set_mode("%s._domainkey.%s" % (SEL, DOMAIN), "timeout")
    srv = auth_smtpd()
    e = accepted(srv, msg)
    assert e["dkim_result"] == "temperror", e["auth"]
    has(e["auth"]["dkim"][0], result="temperror")
    assert e["auth"]["verdict"] != "strong"


def test_each_message_gets_its_own_dns_budget(auth_smtpd, dns):
    # a second message in the same session after a budget-eating one
    publish(dns)
    publish(dns, domain="example.net")
    dns.set_mode(DOMAIN, "timeout", subtree=True)
    srv = auth_smtpd()
    with srv.session(REPLY_TIMEOUT) as c:
        assert_reply(c.deliver(message(), sender=ANN), "250 2.0.0")
        r = c.deliver(message(author="bob@example.net",
                              msgid="<auth-2@example.net>"),
                      sender="bob@example.net", helo=None)
        assert_reply(r, "250 2.0.0")
        c.quit()
    by_sender = {e["email"]: e for e in srv.read_spool()}
    assert by_sender[ANN]["auth"]["verdict"] == "temperror"
    assert by_sender["bob@example.net"]["spf_result"] == "pass"
    assert by_sender["bob@example.net"]["auth"]["verdict"] == "weak"


def test_dmarc_question_goes_with_spf_and_waits_for_its_use(auth_smtpd,
                                                          dns):
    # The verifier asks DMARC's first question (_dmarc.<From domain>)
    # together with SPF's, so a check waits once for both.  SPF's answer
    # is held back here: DMARC's comes first and must be kept, unused,
    # until DMARC wants it; nothing else may read it, nor may it be
    # asked twice.
    msg = strong_message(dns)
    dns.set_delay(DOMAIN, 1.0)
    srv = auth_smtpd()
    e = accepted(srv, msg)
    a = e["auth"]
    has(a["spf"], result="pass", domain=DOMAIN)
    has(a["dmarc"], result="pass", domain=DOMAIN, p="reject")
    has(a, verdict="strong")
    # the resolver may ask a slow name again; the first counts
    spf = min((q for q in dns.queries if q.name == DOMAIN and
               q.type == "TXT"), key=lambda q: q.when)
    dms = [q for q in dns.queries if q.name == "_dmarc." + DOMAIN]
    assert len(dms) == 1, dns.queries
    dm = dms[0]
    assert dm.type == "TXT"
    # asked before SPF's answer came (it took 1 s), not after it
    assert dm.when - spf.when < 0.5, (spf, dm)


def test_dmarc_answer_asked_ahead_is_not_taken_for_spf(auth_smtpd, dns):
    # SPF's answer comes after DMARC's, and says -all for the client:
    # the DMARC record (v=DMARC1, no SPF record in it) must not be read
    # as the SPF answer, nor SPF's as DMARC's.
    publish(dns, spf="v=spf1 -all", dmarc="v=DMARC1; p=none")
    dns.set_delay(DOMAIN, 0.5)
    srv = auth_smtpd()
    e = accepted(srv, message())
    a = e["auth"]
    has(a["spf"], result="fail", domain=DOMAIN)
    has(a["dmarc"], result="fail", domain=DOMAIN, p="none")
    has(a, verdict="fail")


def test_dmarc_answer_asked_ahead_is_not_used_once_the_budget_is_spent(
        auth_smtpd, dns):
    # SPF's question is never answered: the message's 5 s go on it, and
    # every answer after that is a temporary failure, DMARC's too, even
    # though it came early and was kept.  Used, p=reject with no DKIM
    # pass (its key unasked) would be a permanent "fail": 550 for slow
    # DNS.
    msg = strong_message(dns)
    dns.set_mode(DOMAIN, "timeout")
    srv = auth_smtpd("--require-auth", "weak")
    t0 = time.monotonic()
    refused(srv, msg, "451 4.4.3")
    assert time.monotonic() - t0 < DNS_BUDGET + 7
    assert dns.count("_dmarc." + DOMAIN, "TXT") == 1, dns.queries


# ------------------------------------------------------------ --require-auth

def test_require_auth_strong_refuses_weak_with_550_5_7_26(auth_smtpd, dns):
    publish(dns)
    srv = auth_smtpd("--require-auth", "strong")
    refused(srv, message(), "550 5.7.26")


def test_require_auth_strong_accepts_strong(auth_smtpd, dns):
    srv = auth_smtpd("--require-auth", "strong")
    e = accepted(srv, strong_message(dns))
    has(e["auth"], verdict="strong")


def test_require_auth_weak_refuses_none_with_550_5_7_26(auth_smtpd, dns):
    srv = auth_smtpd("--require-auth", "weak")
    refused(srv, message(), "550 5.7.26")


def test_require_auth_weak_refuses_fail_with_550_5_7_26(auth_smtpd, dns):
    publish(dns, spf="v=spf1 -all")
    srv = auth_smtpd("--require-auth", "weak")
    refused(srv, message(), "550 5.7.26")


def test_require_auth_weak_accepts_weak(auth_smtpd, dns):
    publish(dns)
    srv = auth_smtpd("--require-auth", "weak")
    e = accepted(srv, message())
    has(e["auth"], verdict="weak")


def test_session_goes_on_after_a_550_5_7_26(auth_smtpd, dns):
    srv = auth_smtpd("--require-auth", "strong")
    strong = strong_message(dns, msgid="<auth-2@example.org>")
    with srv.session(REPLY_TIMEOUT) as c:
        assert_reply(c.deliver(message()), "550 5.7.26")
        assert_reply(c.deliver(strong, sender=ANN, helo=None), "250 2.0.0")
        c.quit()
    [e] = srv.read_spool()
    assert e["message_id"] == "<auth-2@example.org>"


# ------------------------------------------------------------ DKIM

def test_ed25519_signature_passes_and_is_strong(auth_smtpd, dns):
    publish(dns)
    msg = signed(dns, message(), key=dkim_util.ed25519_key())
    srv = auth_smtpd()
    e = accepted(srv, msg)
    assert e["dkim_result"] == "pass"
    has(e["auth"]["dkim"][0], result="pass", a="ed25519-sha256",
        d=DOMAIN, s=SEL, aligned=True, covers_token=True)
    has(e["auth"], verdict="strong")


def test_rsa_sha1_signature_is_policy(auth_smtpd, dns):
    publish(dns)
    msg = signed(dns, message(), algorithm=b"rsa-sha1")
    srv = auth_smtpd()
    e = accepted(srv, msg)
    assert e["dkim_result"] == "policy"
    has(e["auth"]["dkim"][0], result="policy", a="rsa-sha1")
    has(e["auth"]["dmarc"], result="pass", dkim_aligned=False,
        spf_aligned=True)
    has(e["auth"], verdict="weak")


def test_512_bit_rsa_key_is_policy(auth_smtpd, dns):
    publish(dns)
    msg = signed(dns, message(), key=dkim_util.rsa_key(512), minkey=512)
    srv = auth_smtpd()
    e = accepted(srv, msg)
    assert e["dkim_result"] == "policy"
    has(e["auth"]["dkim"][0], result="policy", a="rsa-sha256",
        key_bits=512)
    has(e["auth"]["dmarc"], dkim_aligned=False)
    assert e["auth"]["verdict"] != "strong"


def test_1024_bit_rsa_key_passes(auth_smtpd, dns):
    publish(dns)
    msg = signed(dns, message(), key=dkim_util.rsa_key(1024))
    srv = auth_smtpd()
    e = accepted(srv, msg)
    has(e["auth"]["dkim"][0], result="pass", key_bits=1024)
    has(e["auth"], verdict="strong")


def test_token_in_body_outside_l_is_not_covered(auth_smtpd, dns):
    # SPEC: a DMARC pass through SPF while the aligned DKIM pass does not
    # cover the token is read as "weak" (DMARC passes; the strong rule
    # does not hold).  Subject without the token: it is in the body only.
    publish(dns)
    msg = signed(dns, message(subject="Hello", body=BODY), length=True)
    msg += b"please verify " + TOKEN.encode() + b"\r\n"
    assert dkim_util.check(msg, dns), "l= must keep the signature valid"
    srv = auth_smtpd()
    e = accepted(srv, msg)
    assert e["token"] == TOKEN
    assert e["dkim_result"] == "pass"
    has(e["auth"]["dkim"][0], result="pass", aligned=True,
        covers_token=False)
    has(e["auth"], verdict="weak")


def test_token_in_body_inside_l_is_covered(auth_smtpd, dns):
    publish(dns)
    msg = signed(dns, message(subject="Hello", body=TOKEN_BODY),
                 length=True)
    assert re.search(rb"(^|[;\s])l=\d+", msg.split(b"\r\n\r\n")[0])
    srv = auth_smtpd()
    e = accepted(srv, msg)
    has(e["auth"]["dkim"][0], result="pass", covers_token=True)
    has(e["auth"], verdict="strong")


def test_token_in_body_without_l_is_covered(auth_smtpd, dns):
    publish(dns)
    msg = signed(dns, message(subject="Hello", body=TOKEN_BODY))
    srv = auth_smtpd()
    e = accepted(srv, msg)
    has(e["auth"]["dkim"][0], result="pass", covers_token=True)
    has(e["auth"], verdict="strong")


def test_token_in_a_subject_not_in_h_is_not_covered(auth_smtpd, dns):
    publish(dns)
    msg = signed(dns, message(), headers=dkim_util.NO_SUBJECT)
    srv = auth_smtpd()
    e = accepted(srv, msg)
    assert e["token"] == TOKEN
    has(e["auth"]["dkim"][0], result="pass", aligned=True,
        covers_token=False)
    assert e["auth"]["verdict"] != "strong"


def test_two_signatures_are_both_reported(auth_smtpd, dns):
    publish(dns)
    msg = signed(dns, message(), selector="rsa")
    msg = signed(dns, msg, key=dkim_util.ed25519_key(), selector="ed")
    assert dkim_util.check(msg, dns, idx=1)
    srv = auth_smtpd()
    e = accepted(srv, msg)
    sigs = e["auth"]["dkim"]
    assert len(sigs) == 2, sigs
    assert sorted((s["s"], s["a"], s["result"]) for s in sigs) == \
        [("ed", "ed25519-sha256", "pass"), ("rsa", "rsa-sha256", "pass")]
    has(e["auth"], verdict="strong")
    ar = e["auth"]["authentication_results"]
    assert ar.count("dkim=pass") == 2, ar


def test_best_dkim_result_wins_over_a_failing_signature(auth_smtpd, dns):
    publish(dns)
    good = signed(dns, message(), selector="good")
    # a second signature by a key other than the one published for "bad"
    dkim_util.publish(dns, dkim_util.rsa_key(2048, which=1), DOMAIN, "bad")
    bad = dkim_util.signature(good, dkim_util.rsa_key(2048), DOMAIN, "bad")
    msg = bad + good
    assert not dkim_util.check(msg, dns, idx=0)
    srv = auth_smtpd()
    e = accepted(srv, msg)
    assert e["dkim_result"] == "pass"
    assert sorted(s["result"] for s in e["auth"]["dkim"]) == ["fail", "pass"]
    has(e["auth"], verdict="strong")


# ------------------------------------------------------------ From rules

def test_message_without_from_gets_550_5_7_1(auth_smtpd, dns):
    publish(dns)
    srv = auth_smtpd()
    refused(srv, message(from_field=False), "550 5.7.1")


def test_message_with_two_from_fields_gets_550_5_7_1(auth_smtpd, dns):
    publish(dns)
    msg = message(extra=("From: Eve <eve@example.net>",))
    assert msg.count(b"\r\nFrom:") + msg.startswith(b"From:") == 2
    srv = auth_smtpd()
    refused(srv, msg, "550 5.7.1")


def test_from_with_two_mailboxes_gets_550_5_7_1(auth_smtpd, dns):
    publish(dns)
    msg = message(from_field="From: Ann <%s>, Eve <eve@example.net>" % ANN)
    srv = auth_smtpd()
    refused(srv, msg, "550 5.7.1")


def test_second_from_field_after_a_signed_one_gets_550_5_7_1(
        auth_smtpd, dns):
    # a classic DKIM replay: a valid signature, then a second From added
    msg = strong_message(dns)
    msg = msg.replace(b"\r\n\r\n", b"\r\nFrom: <eve@example.net>\r\n\r\n", 1)
    srv = auth_smtpd()
    refused(srv, msg, "550 5.7.1")


# ------------------------------------------------------------ automatic mail

def test_auto_submitted_auto_replied_is_not_strong(auth_smtpd, dns):
    # SPEC: strong requires "not automatic"; a DMARC pass that is not
    # strong is read as weak (SPF is aligned and passes here).
    publish(dns)
    msg = signed(dns, message(extra=("Auto-Submitted: auto-replied",)))
    srv = auth_smtpd()
    e = accepted(srv, msg)
    has(e["auth"], auto_submitted=True, verdict="weak")


def test_auto_submitted_no_is_still_strong(auth_smtpd, dns):
    publish(dns)
    msg = signed(dns, message(extra=("Auto-Submitted: no",)))
    srv = auth_smtpd()
    e = accepted(srv, msg)
    has(e["auth"], auto_submitted=False, verdict="strong")


def test_null_sender_is_not_strong_and_spf_checks_the_helo(auth_smtpd, dns):
    # SPEC: the scope word for HELO is not given ("mfrom" is); RFC 7208
    # calls the identity "helo".
    publish(dns)
    dns.txt("mail." + DOMAIN, SPF_PASS)
    msg = signed(dns, message())
    srv = auth_smtpd()
    e = accepted(srv, msg, sender="", helo="mail." + DOMAIN)
    a = e["auth"]
    assert e["spf_result"] == "pass"
    has(a["spf"], result="pass", domain="mail." + DOMAIN)
    assert a["spf"]["scope"] != "mfrom"
    has(a, from_equals_envelope=False)
    assert a["verdict"] != "strong"


# ------------------------------------------------------------ identity
# SPEC section 6, "Identity" and the null sender: a From domain in UTF-8
# is looked up and compared in its A-label form (RFC 8616), the obsolete
# From syntax of RFC 5322 4.4 is read, a domain literal gets DMARC none,
# and with MAIL FROM:<> the HELO name's SPF counts as the MAIL FROM's;
# for any other sender it never does.

IDN = "b\u00fccher.example"           # U-labels, as written
IDN_A = "xn--bcher-kva.example"         # its A-label form


def utf8_deliver(srv, msg, sender, helo=HELO):
    """One session with MAIL FROM:<sender> SMTPUTF8; the reply to the
    end of data."""
    with srv.session(REPLY_TIMEOUT) as c:
        c.ehlo(helo)
        assert_reply(c.cmd("MAIL FROM:<%s> SMTPUTF8" % sender), "250 2.1.0")
        assert_reply(c.cmd("RCPT TO:<%s>" % RCPT), "250 2.1.5")
        assert_reply(c.cmd("DATA"), "354")
        r = c.send_data(msg)
        c.quit()
    return r


def dmarc_questions(dns):
    return [q for q in dns.queries if q.name.startswith("_dmarc")]


def test_u_label_from_domain_is_checked_in_its_a_label_form(auth_smtpd,
                                                           dns):
    publish(dns, domain=IDN_A)
    srv = auth_smtpd()
    r = utf8_deliver(srv, message(author="ann@" + IDN), "ann@" + IDN_A)
    assert_reply(r, "250 2.0.0")
    [e] = srv.read_spool()
    a = e["auth"]
    assert e["from"] == "ann@" + IDN, e["from"]     # as written
    has(a["spf"], result="pass", domain=IDN_A, scope="mfrom")
    has(a["dmarc"], result="pass", domain=IDN_A, org_domain=IDN_A,
        p="reject", spf_aligned=True)
    has(a, verdict="weak")
    assert "dmarc=pass header.from=" + IDN_A in a["authentication_results"]
    assert dns.count("_dmarc." + IDN_A, "TXT") >= 1


def test_u_label_envelope_domain_gets_spf_in_its_a_label_form(auth_smtpd,
                                                             dns):
    publish(dns, domain=IDN_A)
    srv = auth_smtpd()
    r = utf8_deliver(srv, message(author="ann@" + IDN), "ann@" + IDN)
    assert_reply(r, "250 2.0.0")
    [e] = srv.read_spool()
    a = e["auth"]
    has(a["spf"], result="pass", domain=IDN_A, scope="mfrom")
    has(a["dmarc"], result="pass", domain=IDN_A, spf_aligned=True)
    has(a, from_equals_envelope=True, verdict="weak")
    assert "smtp.mailfrom=" + IDN_A in a["authentication_results"]
    assert dns.count(IDN_A, "TXT") >= 1


def test_from_domain_without_an_a_label_form_is_none_unasked(auth_smtpd,
                                                            dns):
    # U+2603 is DISALLOWED in IDNA2008: no A-label form, no DNS name
    publish(dns)
    srv = auth_smtpd()
    e = accepted(srv, message(author="ann@\u2603.example"))
    has(e["auth"]["dmarc"], result="none", spf_aligned=False)
    has(e["auth"], verdict="none")
    assert dmarc_questions(dns) == []


@pytest.mark.parametrize("field", [
    "From: <@relay.example:ann@example.org>",
    "From: Ann <@a.example,@b.example:ann@example.org>",
    "From: Ann (x) < @a.example , @ b . example : ann @ example . org >",
    "From: ann . (the) \"ann\"@example.org",
    "From: , Ann <ann@example.org>,",
], ids=["route", "route-of-two", "route-with-cfws", "obs-local-part",
        "empty-list-elements"])
def test_obsolete_from_syntax_is_read_not_refused(auth_smtpd, dns, field):
    publish(dns)
    srv = auth_smtpd()
    e = accepted(srv, message(from_field=field))
    want = "ann.\"ann\"@example.org" if "(the)" in field else ANN
    assert e["from"] == want, (field, e["from"])
    has(e["auth"]["dmarc"], result="pass", domain=DOMAIN, spf_aligned=True)


def test_domain_literal_from_is_accepted_with_dmarc_none_unasked(
        auth_smtpd, dns):
    publish(dns)
    srv = auth_smtpd()
    e = accepted(srv, message(from_field="From: Ann <ann@[192.0.2.1]>"))
    assert e["from"] == "ann@[192.0.2.1]"
    has(e["auth"]["dmarc"], result="none", spf_aligned=False,
        dkim_aligned=False)
    has(e["auth"], verdict="none")
    assert "header.from" not in e["auth"]["authentication_results"]
    assert dmarc_questions(dns) == []
    assert dns.count("192.0.2.1") == 0 and dns.count("[192.0.2.1]") == 0


def test_null_sender_helo_spf_pass_aligned_is_dmarc_pass_and_weak(
        auth_smtpd, dns):
    publish(dns, spf=None)
    dns.txt("mail." + DOMAIN, SPF_PASS)
    srv = auth_smtpd()
    e = accepted(srv, message(), sender="", helo="mail." + DOMAIN)
    a = e["auth"]
    has(a["spf"], result="pass", domain="mail." + DOMAIN, scope="helo")
    has(a["dmarc"], result="pass", spf_aligned=True, dkim_aligned=False)
    has(a, verdict="weak")


def test_null_sender_with_a_u_label_helo_checks_its_a_label_form(
        auth_smtpd, dns):
    dns.txt("mail." + IDN_A, SPF_PASS)
    dns.txt("_dmarc." + IDN_A, DMARC_REJECT)
    srv = auth_smtpd()
    e = accepted(srv, message(author="ann@" + IDN), sender="",
                 helo="mail." + IDN)
    a = e["auth"]
    has(a["spf"], result="pass", domain="mail." + IDN_A, scope="helo")
    has(a["dmarc"], result="pass", domain=IDN_A, spf_aligned=True)
    has(a, verdict="weak")


def test_helo_spf_pass_never_counts_for_a_non_null_sender(auth_smtpd, dns):
    # the envelope sender's domain publishes no SPF; the HELO name's
    # passes and would align
    dns.txt("_dmarc." + DOMAIN, DMARC_REJECT)
    dns.txt("mail." + DOMAIN, SPF_PASS)
    srv = auth_smtpd()
    e = accepted(srv, message(), sender=ANN, helo="mail." + DOMAIN)
    a = e["auth"]
    has(a["spf"], result="none", domain=DOMAIN, scope="mfrom")
    has(a["dmarc"], result="fail", spf_aligned=False)
    has(a, verdict="fail")


# ------------------------------------------------------------ the header

def test_spoofed_authentication_results_with_our_id_is_removed(
        auth_smtpd, dns):
    publish(dns)
    spoof = "Authentication-Results: %s; dkim=pass header.d=%s; " \
            "dmarc=pass header.from=%s" % (HOSTNAME, DOMAIN, DOMAIN)
    foreign = "Authentication-Results: mx.other.example; spf=pass " \
              "smtp.mailfrom=" + DOMAIN
    srv = auth_smtpd()
    e = accepted(srv, message(extra=(spoof, foreign)))
    raw = raw_message(e)
    ours = [v for v in auth_results(raw)
            if v.split(";")[0].strip() == HOSTNAME]
    assert len(ours) == 1, auth_results(raw)
    assert ours[0] == unfold(e["auth"]["authentication_results"])
    assert b"dkim=pass header.d=" not in raw
    assert foreign.encode() in raw
    assert header_fields(raw)[0].startswith(b"Authentication-Results: " +
                                            HOSTNAME.encode() + b";")


def test_authentication_results_of_a_longer_id_stays(auth_smtpd, dns):
    other = "Authentication-Results: %s.evil; spf=pass" % HOSTNAME
    srv = auth_smtpd()
    e = accepted(srv, message(extra=(other,)))
    assert other.encode() in raw_message(e)


def test_auth_id_flag_sets_the_authserv_id(auth_smtpd, dns):
    srv = auth_smtpd("--auth-id", "mx.firm.example")
    e = accepted(srv, strong_message(dns))
    has(e["auth"], authserv_id="mx.firm.example", verdict="strong")
    assert e["auth"]["authentication_results"].startswith(
        "mx.firm.example;")
    assert raw_message(e).startswith(
        b"Authentication-Results: mx.firm.example;")


# ------------------------------------------------------------ DNS cache

def test_second_message_from_the_same_domain_uses_the_cache(auth_smtpd,
                                                            dns):
    publish(dns)
    srv = auth_smtpd()
    for i in range(2):
        r = deliver(srv, message(msgid="<auth-%d@example.org>" % i))
        assert_reply(r, "250 2.0.0")
    entries = srv.read_spool()
    assert len(entries) == 2
    assert all(e["spf_result"] == "pass" for e in entries)
    assert dns.count(DOMAIN, "TXT") == 1, dns.queries


# ------------------------------------------------------------ SPF cases

def spf_of(auth_smtpd, dns, record, extra=None, sender=ANN):
    """The SPF result of one message from sender under record."""
    dns.txt(DOMAIN, record)
    for name, value in (extra or {}).items():
        for rtype, data in value.items():
            dns.add(name, rtype, data)
    srv = auth_smtpd()
    e = accepted(srv, message(), sender=sender)
    assert e["auth"]["spf"]["result"] == e["spf_result"]
    return e["spf_result"]


def test_spf_include_pass(auth_smtpd, dns):
    assert spf_of(auth_smtpd, dns, "v=spf1 include:_spf.example.net -all",
                  {"_spf.example.net": {"TXT": "v=spf1 ip4:127.0.0.0/8 -all"}}
                  ) == "pass"


def test_spf_redirect_fail(auth_smtpd, dns):
    assert spf_of(auth_smtpd, dns, "v=spf1 redirect=_spf.example.org",
                  {"_spf.example.org": {"TXT": "v=spf1 ip4:192.0.2.1 -all"}}
                  ) == "fail"


def test_spf_mx_pass(auth_smtpd, dns):
    assert spf_of(auth_smtpd, dns, "v=spf1 mx -all",
                  {DOMAIN: {"MX": (10, "mx.example.org")},
                   "mx.example.org": {"A": "127.0.0.1"}}) == "pass"


def test_spf_a_with_host_pass(auth_smtpd, dns):
    assert spf_of(auth_smtpd, dns, "v=spf1 a:host.example.org -all",
                  {"host.example.org": {"A": "127.0.0.1"}}) == "pass"


def test_spf_softfail(auth_smtpd, dns):
    assert spf_of(auth_smtpd, dns, "v=spf1 ip4:192.0.2.0/24 ~all") == \
        "softfail"


def test_spf_neutral(auth_smtpd, dns):
    assert spf_of(auth_smtpd, dns, "v=spf1 ?all") == "neutral"


def test_spf_syntax_error_is_permerror(auth_smtpd, dns):
    assert spf_of(auth_smtpd, dns, "v=spf1 ip4:not-an-address -all") == \
        "permerror"


def test_two_spf_records_are_permerror(auth_smtpd, dns):
    dns.txt(DOMAIN, "v=spf1 -all")
    assert spf_of(auth_smtpd, dns, SPF_PASS) == "permerror"


def test_other_txt_records_beside_spf_are_ignored(auth_smtpd, dns):
    dns.txt(DOMAIN, "google-site-verification=abc")
    assert spf_of(auth_smtpd, dns, SPF_PASS) == "pass"


def include_chain(n):
    """example.org includes l1, l1 includes l2, ... ln passes 127.0.0.1:
    n DNS-querying terms in all."""
    zone = {}
    for i in range(1, n):
        zone["l%d.example.org" % i] = {
            "TXT": "v=spf1 include:l%d.example.org -all" % (i + 1)}
    zone["l%d.example.org" % n] = {"TXT": SPF_PASS}
    return zone


def test_spf_ten_dns_lookups_are_allowed(auth_smtpd, dns):
    assert spf_of(auth_smtpd, dns, "v=spf1 include:l1.example.org -all",
                  include_chain(10)) == "pass"


def test_spf_eleven_dns_lookups_are_permerror(auth_smtpd, dns):
    assert spf_of(auth_smtpd, dns, "v=spf1 include:l1.example.org -all",
                  include_chain(11)) == "permerror"


def test_spf_two_void_lookups_are_allowed(auth_smtpd, dns):
    assert spf_of(auth_smtpd, dns,
                  "v=spf1 a:v1.example.org a:v2.example.org "
                  "ip4:127.0.0.1 -all") == "pass"


def test_spf_three_void_lookups_are_permerror(auth_smtpd, dns):
    assert spf_of(auth_smtpd, dns,
                  "v=spf1 a:v1.example.org a:v2.example.org "
                  "a:v3.example.org ip4:127.0.0.1 -all") == "permerror"


def test_spf_exists_with_macros_pass(auth_smtpd, dns):
    # %{ir}: the client address reversed, %{l}: the local part (RFC 7208 7)
    assert spf_of(auth_smtpd, dns,
                  "v=spf1 exists:%{ir}.%{l}._spf.example.org -all",
                  {"1.0.0.127.ann._spf.example.org": {"A": "127.0.0.2"}}
                  ) == "pass"


def test_spf_include_of_a_domain_without_spf_is_permerror(auth_smtpd, dns):
    assert spf_of(auth_smtpd, dns, "v=spf1 include:nothing.example.net "
                  "ip4:127.0.0.1 -all") == "permerror"


def test_spf_ip6_does_not_match_an_ipv4_client(auth_smtpd, dns):
    assert spf_of(auth_smtpd, dns, "v=spf1 ip6:::1 -all") == "fail"


# ------------------------------------------------------------ DMARC

def test_dmarc_tree_walk_finds_the_org_record_and_aligns_relaxed(
        auth_smtpd, dns):
    # SPEC: auth.dmarc.domain for a subdomain is not pinned down (From
    # domain or the record's domain), so only org_domain is checked.
    sub = "sub." + DOMAIN
    publish(dns, domain=sub, dmarc=None)
    dns.txt("_dmarc." + DOMAIN, DMARC_REJECT)
    msg = signed(dns, message(author="ann@" + sub), domain=DOMAIN)
    srv = auth_smtpd()
    e = accepted(srv, msg, sender="ann@" + sub)
    d = e["auth"]["dmarc"]
    has(d, result="pass", org_domain=DOMAIN, dkim_aligned=True,
        spf_aligned=True)
    has(e["auth"], verdict="strong")
    assert dns.count("_dmarc." + sub, "TXT") >= 1
    assert dns.count("_dmarc." + DOMAIN, "TXT") >= 1


def test_dmarc_strict_dkim_alignment_refuses_the_parent_domain(
        auth_smtpd, dns):
    sub = "sub." + DOMAIN
    publish(dns, domain=sub, dmarc=None)
    dns.txt("_dmarc." + DOMAIN, "v=DMARC1; p=reject; adkim=s")
    msg = signed(dns, message(author="ann@" + sub), domain=DOMAIN)
    srv = auth_smtpd()
    e = accepted(srv, msg, sender="ann@" + sub)
    has(e["auth"]["dkim"][0], result="pass", aligned=False)
    has(e["auth"]["dmarc"], result="pass", dkim_aligned=False,
        spf_aligned=True)
    has(e["auth"], verdict="weak")


def test_dmarc_strict_spf_alignment_refuses_a_subdomain(auth_smtpd, dns):
    # envelope at sub.example.org, From at example.org, aspf=s
    sub = "sub." + DOMAIN
    dns.txt(sub, SPF_PASS)
    dns.txt("_dmarc." + DOMAIN, "v=DMARC1; p=reject; aspf=s")
    srv = auth_smtpd()
    e = accepted(srv, message(), sender="bounce@" + sub)
    assert e["spf_result"] == "pass"
    has(e["auth"]["dmarc"], result="fail", spf_aligned=False)
    has(e["auth"], verdict="fail")


def test_dmarc_relaxed_spf_alignment_accepts_a_subdomain(auth_smtpd, dns):
    sub = "sub." + DOMAIN
    dns.txt(sub, SPF_PASS)
    dns.txt("_dmarc." + DOMAIN, "v=DMARC1; p=reject")
    srv = auth_smtpd()
    e = accepted(srv, message(), sender="bounce@" + sub)
    has(e["auth"]["dmarc"], result="pass", spf_aligned=True)
    has(e["auth"], verdict="weak")


def test_dmarc_sp_applies_to_an_existing_subdomain(auth_smtpd, dns):
    # SPEC: auth.dmarc.p is read as the policy that applies to the From
    # domain (p, sp or np of the record found), not the raw p= tag.
    sub = "sub." + DOMAIN
    dns.a(sub, "192.0.2.1")
    dns.txt("_dmarc." + DOMAIN, "v=DMARC1; p=none; sp=reject; np=quarantine")
    dns.txt("example.net", SPF_PASS)
    srv = auth_smtpd()
    e = accepted(srv, message(author="ann@" + sub), sender="bob@example.net")
    has(e["auth"]["dmarc"], result="fail", p="reject", org_domain=DOMAIN)
    has(e["auth"], verdict="fail")


def test_dmarc_np_applies_to_a_nonexistent_subdomain(auth_smtpd, dns):
    # SPEC: as above; ghost.example.org has no record of any type.
    dns.txt("_dmarc." + DOMAIN, "v=DMARC1; p=none; sp=none; np=reject")
    dns.txt("example.net", SPF_PASS)
    srv = auth_smtpd()
    e = accepted(srv, message(author="ann@ghost." + DOMAIN),
                 sender="bob@example.net")
    has(e["auth"]["dmarc"], result="fail", p="reject")
    has(e["auth"], verdict="fail")


def test_dmarc_p_none_still_fails_an_unauthenticated_message(
        auth_smtpd, dns):
    publish(dns, spf="v=spf1 ?all", dmarc="v=DMARC1; p=none")
    srv = auth_smtpd()
    e = accepted(srv, message())
    has(e["auth"]["dmarc"], result="fail", p="none")
    has(e["auth"], verdict="fail")


def test_dmarc_record_without_v_first_is_ignored(auth_smtpd, dns):
    publish(dns, dmarc="p=reject; v=DMARC1")
    srv = auth_smtpd()
    e = accepted(srv, message())
    has(e["auth"]["dmarc"], result="none")
    has(e["auth"], verdict="none")


def test_message_log_line_carries_the_results_and_verdict(auth_smtpd, dns):
    msg = strong_message(dns)
    srv = auth_smtpd()
    e = accepted(srv, msg)
    [m] = [l for l in srv.logs() if l.get("event") == "message"]
    assert (m["spf"], m["dkim"], m["dmarc"], m["verdict"]) == \
        ("pass", "pass", "pass", "strong"), m
    assert m["size"] == e["size"]


def test_refused_before_authentication_logs_no_verdict(auth_smtpd, dns):
    publish(dns)
    srv = auth_smtpd()
    refused(srv, message(from_field=False), "550 5.7.1")
    [m] = [l for l in srv.logs() if l.get("event") == "message"]
    assert m["status"] == "rejected" and "verdict" not in m, m
