"""Differential test of sender authentication (SPEC section 6): smtpd
against independent verifiers, case by case (tests/diffcases.py).

Each case (a DNS zone, a message, an envelope) is delivered to one real
./smtpd (--spool, --resolver pointed at one fake DNS server that serves
every case's zone, tests/fakes/fake_dns.py), from the case's own loopback
address; its payload's auth object is then compared field by field
with what the RFCs say (the case's `expect`) and with:

- python3-dkim (dkimpy), each signature with DKIM(...).verify(idx=i),
  its dnsfunc asking the same fake DNS server over TCP;
- python3-spf (pyspf), spf.check2(), its dnspython resolver pointed at
  the same fake DNS server;
- npm's mailauth (tests/mailauth_verify.mjs, one node process for all
  cases), authenticate() with a resolver answering from the same zone
  data, strict mode.

Result words are RFC 8601 2.7's; the verifiers' own are mapped once:
- dkimpy: verify() True is pass; False is fail when the key loaded
  (the signature or body hash did not verify), temperror when its DNS
  question failed, permerror when the key record was missing or
  unusable; ValidationError "body hash mismatch" is fail (RFC 6376
  6.1.3), other ValidationError, MessageFormatError and KeyFormatError
  are permerror (RFC 6376 6.1.1, 6.1.2: PERMFAIL); KeyFormatError
  "public key too small" and a passing rsa-sha1 signature are policy
  (RFC 8301 3.2, 3.1; dkimpy still calls rsa-sha1 valid);
- mailauth: "neutral" is permerror (mailauth reports RFC 6376 PERMFAIL
  for a signature it could not process as neutral, which RFC 8601 2.7.1
  allows; SPEC 6 says permerror); its DMARC policy is the applied one
  (p, sp or np), as smtpd's auth.dmarc.p is.

Two tests per case: smtpd must give the RFC's answer
(test_smtpd_follows_the_rfc), and every verifier must either agree or
have a note in the case naming the RFC section it departs from
(test_verifiers_agree_or_are_documented).  A summary with the counts of
agreement is printed at the end of the module.

The replay tests at the end check SPEC 3: a second Subject added to a
signed message (above or below the signed one) is refused 550 5.7.1.
"""

import base64
import collections
import json
import logging
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import warnings

import pytest

import diffcases
import dkim_util
from conftest import (HOSTNAME, LOOPBACK, RCPT, SmtpdServer, assert_reply,
                      build_args, free_port)

TESTS = pathlib.Path(__file__).resolve().parent
NODE_SCRIPT = TESTS / "mailauth_verify.mjs"
NODE_MODULES = TESTS / "node_modules" / "mailauth"
REPLY_TIMEOUT = 15.0        # one message may spend its 5 s DNS budget
NODE_TIMEOUT = 120.0
DNS_TIMEOUT = 3.0
VERIFIERS = ("dkimpy", "pyspf", "mailauth")


class _Absent:
    """A field the payload should have and does not."""

    def __repr__(self):
        return "<absent>"


ABSENT = _Absent()


# ---------------------------------------------------------------- compare

def _norm(field, value):
    if field.endswith((".d", ".s")) or field == "dmarc.org_domain":
        if value in ("", None):
            return None
        if isinstance(value, str):
            return value.lower().rstrip(".")
    return value


def agrees(field, want, got):
    """Does got satisfy want (a value, or a tuple of allowed values)?"""
    got = _norm(field, got)
    if isinstance(want, tuple):
        return any(got == _norm(field, w) for w in want)
    return got == _norm(field, want)


def compare(expect, got):
    """[(field, want, got)] for every expected field that got reports
    and does not satisfy."""
    out = []
    for field, want in expect.items():
        if field not in got:
            continue
        if not agrees(field, want, got[field]):
            out.append((field, want, got[field]))
    return out


# ---------------------------------------------------------------- smtpd

def smtpd_flat(payload):
    """The payload's results as flat fields (SPEC 4 and 6)."""
    a = payload.get("auth") or {}
    out = {"from": payload.get("from", ABSENT)}
    spf = a.get("spf") or {}
    out["spf.result"] = spf.get("result", ABSENT)
    sigs = a.get("dkim")
    if isinstance(sigs, list):
        out["dkim.count"] = len(sigs)
        for i, s in enumerate(sigs):
            for k in ("result", "d", "s", "a", "t", "x"):
                out["dkim[%d].%s" % (i, k)] = s.get(k, ABSENT)
    else:
        out["dkim.count"] = ABSENT
    dm = a.get("dmarc") or {}
    for k in ("result", "p", "org_domain", "spf_aligned", "dkim_aligned"):
        out["dmarc." + k] = dm.get(k, ABSENT)
    return out


def _dot_stuff(msg):
    lines = msg.split(b"\r\n")
    return b"\r\n".join(b"." + x if x.startswith(b".") else x
                        for x in lines)


def deliver(srv, port6, case):
    """One session from the case's address: the reply to the end of
    data, or the first refusal on the way."""
    from conftest import SMTPClient
    if ":" in case.ip:
        sock = socket.create_connection(("::1", port6),
                                        timeout=REPLY_TIMEOUT)
    else:
        sock = socket.create_connection((LOOPBACK, srv.port),
                                        timeout=REPLY_TIMEOUT,
                                        source_address=(case.ip, 0))
    head = case.message.split(b"\r\n\r\n", 1)[0]
    params = ""
    if any(ch >= 0x80 for ch in case.message):
        params += " BODY=8BITMIME"
    if any(ch >= 0x80 for ch in head):
        params += " SMTPUTF8"
    with SMTPClient(sock=sock, timeout=REPLY_TIMEOUT) as c:
        c.greeting()
        for line in ("EHLO " + case.helo,
                     "MAIL FROM:<%s>%s" % (case.sender, params),
                     "RCPT TO:<%s>" % RCPT, "DATA"):
            r = c.cmd(line)
            if r.code >= 400:
                return r
        msg = case.message
        if not msg.endswith(b"\r\n"):
            msg += b"\r\n"
        c.send(_dot_stuff(msg) + b".\r\n")
        r = c.reply(REPLY_TIMEOUT)
        try:
            c.cmd("QUIT")
        except Exception:       # the reply is what counts
            pass
        return r


# ---------------------------------------------------------------- dkimpy

class _Errors(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.errors = []

    def emit(self, record):
        if record.levelno >= logging.ERROR:
            self.errors.append(record.getMessage())


class _TempFail(Exception):
    pass


def _dkimpy_dnsfunc(fake, state):
    from dnslib import QTYPE, RCODE, DNSRecord

    def get_txt(name, timeout=DNS_TIMEOUT):
        if isinstance(name, bytes):
            name = name.decode("ascii")
        q = DNSRecord.question(name, "TXT")
        try:
            r = DNSRecord.parse(q.send(fake.host, fake.port, tcp=True,
                                       timeout=DNS_TIMEOUT))
        except OSError:
            state["temp"] = True
            raise _TempFail(name)
        if r.header.rcode not in (RCODE.NOERROR, RCODE.NXDOMAIN):
            state["temp"] = True
            raise _TempFail(name)
        for rr in r.rr:
            if rr.rtype == QTYPE.TXT:
                return b"".join(rr.rdata.data)
        return None
    return get_txt


def dkimpy_one(msg, idx, fake):
    """(result, fields) of dkimpy for signature idx (see the module
    doc for the mapping)."""
    import dkim
    handler = _Errors()
    logger = logging.Logger("diff-dkimpy")
    logger.addHandler(handler)
    state = {"temp": False}
    try:
        d = dkim.DKIM(msg, logger=logger, minkey=1024)
    except dkim.DKIMException:
        return "permerror", {}
    try:
        ok = d.verify(idx=idx, dnsfunc=_dkimpy_dnsfunc(fake, state))
        if ok:
            alg = d.signature_fields.get(b"a")
            result = "policy" if alg == b"rsa-sha1" else "pass"
        elif state["temp"]:
            result = "temperror"
        elif handler.errors:
            result = "permerror"
        else:
            result = "fail"
    except dkim.KeyFormatError as e:
        result = "policy" if "too small" in str(e) else "permerror"
    except dkim.ValidationError as e:
        result = "fail" if "body hash mismatch" in str(e) else "permerror"
    except dkim.DKIMException:
        result = "temperror" if state["temp"] else "permerror"
    except _TempFail:
        result = "temperror"
    fields = {}
    sig = d.signature_fields or {}
    for k in ("d", "s", "a"):
        v = sig.get(k.encode())
        if v is not None:
            fields[k] = v.decode("utf-8", "replace")
    return result, fields


def dkimpy_flat(case, fake):
    n = len(diffcases.sig_tags(case.message))
    out = {"dkim.count": n}
    for i in range(n):
        result, fields = dkimpy_one(case.message, i, fake)
        out["dkim[%d].result" % i] = result
        for k, v in fields.items():
            out["dkim[%d].%s" % (i, k)] = v
    return out


# ---------------------------------------------------------------- pyspf

def pyspf_flat(case, fake):
    import dns.resolver
    import spf
    res = dns.resolver.Resolver(configure=False)
    res.nameservers = [fake.host]
    res.port = fake.port
    res.timeout = DNS_TIMEOUT
    res.lifetime = DNS_TIMEOUT
    old = dns.resolver.default_resolver
    dns.resolver.default_resolver = res
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            result, _ = spf.check2(i=case.ip, s=case.sender, h=case.helo,
                                   querytime=20)
    finally:
        dns.resolver.default_resolver = old
    return {"spf.result": result}


# ---------------------------------------------------------------- mailauth

def mailauth_all(cases, zone, modes):
    node = shutil.which("node")
    if node is None or not NODE_MODULES.is_dir():
        pytest.fail("mailauth is not installed: run `sh scripts/deps.sh "
                    "test` (node, npm ci --prefix tests)")
    data = {"zone": zone, "modes": modes, "mta": HOSTNAME,
            "cases": [{"name": c.name, "ip": c.ip, "helo": c.helo,
                       "sender": c.sender,
                       "message": base64.b64encode(c.message).decode()}
                      for c in cases]}
    proc = subprocess.run([node, str(NODE_SCRIPT)], cwd=str(TESTS),
                          input=json.dumps(data).encode(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=NODE_TIMEOUT)
    assert proc.returncode == 0, "mailauth_verify.mjs failed: %s" % \
        proc.stderr.decode("utf-8", "replace")[-2000:]
    return json.loads(proc.stdout)


def mailauth_flat(r):
    if "error" in r:
        return {"error": r["error"]}
    out = {}
    if r.get("spf"):
        out["spf.result"] = r["spf"]["result"]
    sigs = r.get("dkim") or []
    out["dkim.count"] = len(sigs)
    for i, s in enumerate(sigs):
        res = s["result"]
        out["dkim[%d].result" % i] = "permerror" if res == "neutral" else res
        for k in ("d", "s", "a", "t", "x"):
            if k in s:
                out["dkim[%d].%s" % (i, k)] = s[k]
    dm = r.get("dmarc")
    if dm:
        out["dmarc.result"] = dm["result"]
        out["dmarc.p"] = dm["policy"]
        out["dmarc.org_domain"] = dm["org_domain"]
        out["dmarc.spf_aligned"] = dm["spf_aligned"]
        out["dmarc.dkim_aligned"] = dm["dkim_aligned"]
    else:
        out["dmarc.result"] = "none"
    if r.get("from") is not None:
        out["from"] = r["from"]
    return out


# ---------------------------------------------------------------- the run

class Run:
    def __init__(self, cases):
        self.server = None
        self.cases = {c.name: c for c in cases}
        self.smtpd = {}         # name -> flat fields, or {"error": ...}
        self.verifiers = {v: {} for v in VERIFIERS}


def _union(cases):
    zone, modes = {}, {}
    for c in cases:
        for name, types in c.zone.items():
            for rtype, values in types.items():
                zone.setdefault(name, {}).setdefault(rtype, []) \
                    .extend(values)
        modes.update(c.modes)
    return zone, modes


@pytest.fixture(scope="module")
def run(spool_root, tmp_path_factory, request):
    from fake_dns import FakeDNS
    cases = diffcases.build()
    zone, modes = _union(cases)
    fake = FakeDNS().start()
    request.addfinalizer(fake.stop)
    fake.load(zone)
    for name, (mode, subtree) in modes.items():
        fake.set_mode(name, mode, subtree)

    parent = tempfile.mkdtemp(dir=str(spool_root))
    os.chmod(parent, 0o711)
    spool = pathlib.Path(parent) / "spool"
    port, port6 = free_port(), free_port("::1")
    args = build_args(port, spool, ("-l", "[::1]:%d" % port6),
                      resolver=fake)
    srv = SmtpdServer(tmp_path_factory.mktemp("diff"), args, port, spool)
    srv.start()
    request.addfinalizer(srv.stop)

    out = Run(cases)
    out.server = srv
    replies = {}
    for c in cases:
        try:
            replies[c.name] = deliver(srv, port6, c)
        except (OSError, AssertionError, TimeoutError) as e:
            replies[c.name] = e
    by_id = {e.get("message_id"): e for e in srv.read_spool()}
    for c in cases:
        r = replies[c.name]
        entry = by_id.get(c.message_id)
        if entry is not None:
            out.smtpd[c.name] = smtpd_flat(entry)
        else:
            out.smtpd[c.name] = {"error": "not spooled; reply %r" %
                                 (getattr(r, "lines", r),)}

    for c in cases:
        out.verifiers["dkimpy"][c.name] = dkimpy_flat(c, fake)
        out.verifiers["pyspf"][c.name] = pyspf_flat(c, fake)
    ma = mailauth_all(cases, zone, modes)
    for c in cases:
        out.verifiers["mailauth"][c.name] = mailauth_flat(
            ma.get(c.name, {"error": "no result"}))

    yield out
    _summary(request, out)


def _summary(request, out):
    tr = request.config.pluginmanager.getplugin("terminalreporter")
    if tr is None:
        return
    lines = ["", "differential test: %d cases" % len(out.cases)]
    for who, table in [("smtpd", out.smtpd)] + \
            [(v, out.verifiers[v]) for v in VERIFIERS]:
        n = agree = fields = fields_ok = 0
        for name, c in out.cases.items():
            got = table.get(name, {})
            if "error" in got:
                n += 1
                continue
            mine = {f: w for f, w in c.expect.items() if f in got}
            if not mine:
                continue
            n += 1
            bad = compare(mine, got)
            fields += len(mine)
            fields_ok += len(mine) - len(bad)
            agree += not bad
        lines.append("  %-8s agrees with the RFC in %d of %d cases "
                     "(%d of %d fields)" % (who, agree, n, fields_ok, fields))
    lines.append("  smtpd's disagreements:")
    for name, c in out.cases.items():
        got = out.smtpd.get(name, {})
        if "error" in got:
            lines.append("    %s: %s" % (name, got["error"]))
            continue
        for field, want, have in compare(c.expect, got):
            lines.append("    %s: %s want %r, smtpd %r" % (name, field,
                                                           want, have))
    for line in lines:
        tr.write_line(line)


# ---------------------------------------------------------------- tests

CASE_NAMES = diffcases.names()


@pytest.mark.parametrize("name", CASE_NAMES)
def test_smtpd_follows_the_rfc(run, name):
    c = run.cases[name]
    got = run.smtpd[name]
    assert "error" not in got, "%s: %s" % (name, got["error"])
    missing = [f for f in c.expect if f not in got]
    bad = compare(c.expect, got)
    # every expected field must be in the payload
    bad += [(f, c.expect[f], ABSENT) for f in missing
            if f.startswith("dkim[")]
    if bad:
        others = {v: {f: run.verifiers[v][name][f] for f, _, _ in bad
                      if f in run.verifiers[v][name]}
                  for v in VERIFIERS}
        others = {v: o for v, o in others.items() if o}
        pytest.fail("%s (%s):\n%s\nverifiers: %s" % (
            name, c.rfc or "no RFC note",
            "\n".join("  %s: want %r, smtpd %r" % x for x in bad), others))


@pytest.mark.parametrize("name", CASE_NAMES)
def test_verifiers_agree_or_are_documented(run, name):
    c = run.cases[name]
    problems = []
    for v in VERIFIERS:
        got = run.verifiers[v][name]
        if "error" in got:
            problems.append("%s failed: %s" % (v, got["error"][:500]))
            continue
        notes = c.notes.get(v, {})
        for field, want, have in compare(c.expect, got):
            if field not in notes:
                problems.append("%s: %s want %r, %s says %r (no note "
                                "naming the RFC section)" % (v, field, want,
                                                             v, have))
        for field in notes:
            if field in got and agrees(field, c.expect.get(field),
                                       got[field]):
                problems.append("%s: the note on %s is stale: %s agrees"
                                % (v, field, v))
            assert "RFC" in notes[field], (v, field)
    assert not problems, "%s (%s):\n  %s" % (name, c.rfc,
                                             "\n  ".join(problems))


def test_no_worker_died_during_the_cases(run):
    died = [e for e in run.server.logs(strict=False)
            if e.get("event") in ("worker_died", "worker_failed")]
    assert not died, "worker deaths: %r" % died[:3]


def test_case_count_and_coverage():
    """At least 150 cases, and every group the brief names."""
    cases = diffcases.REGISTRY
    assert len(cases) >= 150, len(cases)
    groups = collections.Counter(g for _, g, _ in cases)
    assert set(groups) == {"dkim", "spf", "dmarc", "from"}, groups


# ---------------------------------------------------------------- replay

DOMAIN = "replay.example"
SEL = "sel1"
SIGNED_TOKEN = "FIRM-TOKEN:GOOD-TOKN-0001"
EVIL_TOKEN = "FIRM-TOKEN:EVIL-TOKN-0002"


def _signed_for_replay(dns):
    """A strong message (SPF pass, DMARC p=reject, an aligned RSA
    signature whose h= names subject once) and its key on dns."""
    dns.txt(DOMAIN, "v=spf1 ip4:127.0.0.1 -all")
    dns.txt("_dmarc." + DOMAIN, "v=DMARC1; p=reject")
    key = dkim_util.rsa_key(2048)
    dkim_util.publish(dns, key, DOMAIN, SEL)
    msg = ("From: Ann <ann@%s>\r\nTo: <%s>\r\nSubject: Please verify %s\r\n"
           "Date: Sat, 21 Nov 2026 22:00:00 +0000\r\n"
           "Message-ID: <replay@%s>\r\n\r\nHello\r\n"
           % (DOMAIN, RCPT, SIGNED_TOKEN, DOMAIN)).encode()
    signed = dkim_util.sign(msg, key, DOMAIN, SEL,
                            headers=dkim_util.SIGNED_HEADERS)
    h = diffcases.sig_tags(signed)[0]["h"].lower().split(":")
    assert h.count("subject") == 1, h
    assert dkim_util.check(signed, dns)
    return signed


def _replay(smtpd, dns, signed, replayed):
    srv = smtpd(resolver=dns)
    with srv.session(REPLY_TIMEOUT) as c:
        r = c.deliver(replayed, sender="ann@" + DOMAIN)
        c.quit()
    if r.code == 250:
        [entry] = srv.read_spool()
        assert entry["auth"]["verdict"] != "strong", \
            "the replayed message was accepted as strong with token %s" \
            % entry.get("token")
    # SPEC 3: a field RFC 5322 3.6 allows once, twice: 550 5.7.1 naming
    # it, nothing forwarded
    assert_reply(r, "550 5.7.1")
    assert "subject" in r.text.lower(), r.lines
    assert srv.spool_files() == []


def test_replay_with_a_second_subject_above_the_signed_one_is_refused(
        smtpd, dns):
    signed = _signed_for_replay(dns)
    sig, rest = signed.split(b"\r\nFrom:", 1)
    replayed = sig + b"\r\nSubject: Please verify " + \
        EVIL_TOKEN.encode() + b"\r\nFrom:" + rest
    # the signature still verifies: DKIM takes the bottom-most Subject
    # (RFC 6376 5.4.2), the attacker's sits above it
    assert dkim_util.check(replayed, dns), "not a replay: the signature broke"
    _replay(smtpd, dns, signed, replayed)


def test_replay_with_a_second_subject_below_the_signed_one_is_refused(
        smtpd, dns):
    signed = _signed_for_replay(dns)
    head, body = signed.split(b"\r\n\r\n", 1)
    replayed = head + b"\r\nSubject: Please verify " + \
        EVIL_TOKEN.encode() + b"\r\n\r\n" + body
    _replay(smtpd, dns, signed, replayed)
