"""The cases of tests/test_differential.py: sender authentication (SPEC
section 6) of one message each, to be judged by smtpd and by
independent verifiers (python3-dkim, python3-spf, npm's mailauth).

A case is a DNS zone, a message and an envelope (client address, HELO,
MAIL FROM), and what the RFCs say the results are (`expect`).  Each
case has its own names (below c<NNN>.example) and its own client
address (127.0.x.y, or ::1), so one smtpd and one fake DNS server serve
all of them without one case's cached answers reaching another.

`expect` holds flat fields: "spf.result", "dkim.count",
"dkim[i].result", "dkim[i].d", ".s", ".a", ".t", ".x", "dmarc.result",
"dmarc.p", "dmarc.org_domain", "dmarc.spf_aligned",
"dmarc.dkim_aligned", "from".  A value that is a tuple lists every
answer the RFCs allow.  d, s, a, t and x default to the signature's own
tags (SPEC 6: the algorithm reported is the signature's own, t and x
are null when absent).

Where the verifiers disagree with each other or with the RFC, `rfc`
names the section that decides, and `notes[verifier][field]` says why
that verifier's answer is not the RFC's.  The test fails on a
disagreement that has no note, and on a note that no longer matches a
disagreement, so the list stays true.

Result words are RFC 8601 2.7's.  The verifiers' own words are mapped
to them once, in test_differential.py: python3-dkim's True/False and
exceptions; rsa-sha1 and RSA keys under 1024 bits as "policy" (RFC 8301
3.1, 3.2); mailauth's "neutral" for a signature it could not process
(RFC 6376 6.1.1 PERMFAIL, which RFC 8601 2.7.1 lets a verifier call
"neutral") as "permerror", the word SPEC 6 uses.

Signatures are made with python3-dkim: dkim.sign() where its options
suffice, else its own DKIM.gen_header() over a tag list of ours (x=, q=
lists, a tag twice, a required tag missing), which is python3-dkim's
signing code over fields it would not choose itself.
"""

import base64
import dataclasses
import hashlib
import ipaddress
import time

import dkim
import nacl.encoding
import nacl.signing

import dkim_util

TOKEN = "FIRM-TOKEN:DIFF-TEST-CASE"
RCPT = "verify@localhost"
SUBJECT = "Please verify " + TOKEN
BODY = "Hello,\r\nthis is my address.\r\n\r\nThanks, Ann\r\n"
DATE = "Sat, 21 Nov 2026 22:00:00 +0000"
TLD = "example"
HEADERS = ("from", "to", "subject", "date", "message-id")
DMARC_DKIM = "v=DMARC1; p=reject"
DMARC_SPF = "v=DMARC1; p=quarantine"
DAY = 86400
IPV6 = "::1"

# RFC sections named by more than one case
R_SHA1 = "RFC 8301 3.1 (rsa-sha1 MUST NOT be valid: RFC 8601 2.7.1 policy)"
R_SMALL = "RFC 8301 3.2 (RSA keys under 1024 bits: RFC 8601 2.7.1 policy)"
R_EXPIRED = ("RFC 6376 3.5 x= and 6.1.1 (PERMFAIL, signature expired); "
             "RFC 8601 2.7.1 names no single word for it")
R_TAGLIST = "RFC 6376 3.2 (a tag twice: the whole tag-list is invalid)"
R_REQUIRED = "RFC 6376 3.5 and 6.1.1 (required tag missing: PERMFAIL)"
R_TS = ("RFC 6376 3.6.1 t=s (the i= domain MUST NOT be a subdomain "
        "of d=) and 6.1.2")
R_QLIST = ("RFC 6376 3.5 q= (unrecognized query mechanisms MUST be "
           "ignored)")
R_FROM_H = ("RFC 6376 6.1.1 (h= without From: ignore the signature, "
            "PERMFAIL)")
R_KEY_H = ("RFC 6376 3.6.1 h= of the key record and 6.1.2 (inappropriate "
           "hash algorithm: PERMFAIL)")
R_KEY_V = ("RFC 6376 3.6.1 v= of the key record (if present, the first "
           "tag, and DKIM1) and 6.1.2 (a record not in that format: "
           "PERMFAIL, key syntax error)")
R_NULL = ("RFC 7208 2.4 (null sender: postmaster@HELO is the MAIL FROM "
          "identity); SPEC 6 (it counts for DMARC as MAIL FROM does)")
R_IDNA = ("RFC 8616 3 and 4 (U-labels are looked up as A-labels); "
          "SPEC 6 (IDNA)")

MAILAUTH_NEUTRAL_H = ("mailauth reports a signature that does not sign "
                      "From as neutral; mapped to permerror")


@dataclasses.dataclass
class Case:
    name: str
    group: str
    n: int
    ip: str
    helo: str
    sender: str
    message: bytes
    zone: dict
    modes: dict
    expect: dict
    rfc: str = ""
    notes: dict = dataclasses.field(default_factory=dict)

    @property
    def message_id(self):
        return "<diff-%03d@diff.test>" % self.n


# ------------------------------------------------------------ zone

class Zone:
    """The records of one case, in the FakeDNS.load() form."""

    def __init__(self):
        self.records = {}
        self.modes = {}

    def add(self, name, rtype, value):
        self.records.setdefault(name.lower().rstrip("."), {}) \
            .setdefault(rtype, []).append(value)

    def txt(self, name, value):
        self.add(name, "TXT", value)

    def a(self, name, addr):
        self.add(name, "AAAA" if ":" in addr else "A", addr)

    def mx(self, name, host, pref=10):
        self.add(name, "MX", [pref, host])

    def cname(self, name, target):
        self.add(name, "CNAME", target)

    def ptr(self, addr, host):
        self.add(ipaddress.ip_address(addr).reverse_pointer, "PTR", host)

    def mode(self, name, mode, subtree=False):
        self.modes[name.lower().rstrip(".")] = [mode, subtree]


class Ctx:
    """What a case builder gets: its domain, address, names, zone."""

    def __init__(self, n):
        self.n = n
        self.d = "c%03d.%s" % (n, TLD)
        self.ip = "127.0.%d.%d" % (1 + n // 200, 10 + n % 200)
        self.zone = Zone()
        self.mid = "<diff-%03d@diff.test>" % n

    def sub(self, label):
        return "%s.%s" % (label, self.d)

    def net24(self):
        return self.ip.rsplit(".", 1)[0] + ".0/24"

    def neighbour(self):
        """Another address in the client's /24."""
        head, last = self.ip.rsplit(".", 1)
        return "%s.%d" % (head, 250 if int(last) != 250 else 251)


# ------------------------------------------------------------ messages

def message(c, frm=None, subject=SUBJECT, body=BODY, extra=(), top=()):
    """A CRLF message of case c.  frm: the From value (default
    'Ann <ann@D>'); extra: fields after the usual ones; top: before."""
    if frm is None:
        frm = "Ann <ann@%s>" % c.d
    head = list(top) + ["From: " + frm,
                        "To: <%s>" % RCPT,
                        "Subject: " + subject,
                        "Date: " + DATE,
                        "Message-ID: " + c.mid] + list(extra)
    return ("\r\n".join(head) + "\r\n\r\n" + body).encode("utf-8")


def b(s):
    return s.encode() if isinstance(s, str) else s


def sign(msg, key, d, s, alg=None, c=("relaxed", "relaxed"), h=HEADERS,
         length=False, identity=None):
    """msg with a python3-dkim dkim.sign() signature on top."""
    sig = dkim.sign(msg, b(s), b(d), key.private,
                    identity=b(identity) if identity else None,
                    canonicalize=(b(c[0]), b(c[1])),
                    include_headers=[b(x) for x in h],
                    signature_algorithm=b(alg) if alg else key.algorithm,
                    length=length)
    return sig + msg


def _private(key, alg):
    if alg.startswith(b"ed25519"):
        return nacl.signing.SigningKey(key.private,
                                       encoder=nacl.encoding.Base64Encoder)
    return dkim.parse_pem_private_key(key.private)


def sign_tags(msg, key, d, s, alg=None, c="relaxed/relaxed", h=HEADERS,
              extra=(), l=None, t="now", edit=None):
    """msg with a signature whose tag list we choose, made by
    python3-dkim's DKIM.gen_header() (its own canonicalization,
    hashing and signing).  extra: (tag, value) pairs after s=;
    edit(list) may change the (tag, value) list before signing."""
    alg = b(alg) if alg else key.algorithm
    signer = dkim.DKIM(msg)
    signer.signature_algorithm = alg
    signer.hasher = dkim.HASH_ALGORITHMS[alg]
    policy = dkim.CanonicalizationPolicy.from_c_value(b(c))
    body = policy.canonicalize_body(signer.body)
    if l is not None:
        body = body[:l]
    bh = base64.b64encode(signer.hasher(body).digest())
    if t == "now":
        t = int(time.time())
    fields = [(b"v", b"1"), (b"a", alg), (b"c", b(c)), (b"d", b(d)),
              (b"s", b(s))]
    if t is not None:
        fields.append((b"t", b"%d" % t))
    if l is not None:
        fields.append((b"l", b"%d" % l))
    fields += [(b(k), b(v)) for k, v in extra]
    fields += [(b"h", b":".join(b(x) for x in h)), (b"bh", bh),
               (b"b", b"0" * 60)]
    if edit is not None:
        fields = edit(fields)
    value = signer.gen_header(fields, [b(x) for x in h], policy,
                              b"DKIM-Signature", _private(key, alg))
    return b"DKIM-Signature: " + value + msg


def publish(c, key, d, s, txt=None):
    c.zone.txt("%s._domainkey.%s" % (s, d), txt if txt is not None
               else key.txt)


def sig_tags(msg):
    """The tag lists of msg's DKIM-Signature fields, top first: for each
    a dict of the first value of each tag (whitespace removed)."""
    head = msg.split(b"\r\n\r\n", 1)[0]
    fields = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
    out = []
    for f in fields:
        name, _, value = f.partition(b":")
        if name.strip().lower() != b"dkim-signature":
            continue
        tags = {}
        for spec in value.decode("utf-8", "replace").split(";"):
            k, eq, v = spec.partition("=")
            k = k.strip()
            if eq and k and k not in tags:
                tags[k] = "".join(v.split())
        out.append(tags)
    return out


def replace_tag(msg, tag, value, idx=0):
    """msg with tag's value in DKIM-Signature number idx replaced (no
    re-signing): a mutation."""
    head, sep, body = msg.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    seen = -1
    for i, line in enumerate(lines):
        if line.lower().startswith(b"dkim-signature:"):
            seen += 1
            if seen != idx:
                continue
            # the field with its continuation lines, unfolded once
            j = i + 1
            while j < len(lines) and lines[j][:1] in (b" ", b"\t"):
                j += 1
            field = b"\r\n".join(lines[i:j])
            parts = field.split(b";")
            for k, p in enumerate(parts):
                name = p.split(b"=", 1)[0]
                if k == 0:
                    name = name.split(b":", 1)[1]
                if name.strip() == b(tag):
                    pre = p.split(b"=", 1)[0]
                    if value is None:
                        parts[k] = None
                    else:
                        parts[k] = pre + b"=" + b(value)
                    break
            else:
                raise ValueError("no tag %s" % tag)
            if parts[0] is None:
                raise ValueError("cannot drop the first tag")
            field = b";".join(p for p in parts if p is not None)
            lines[i:j] = field.split(b"\r\n")
            return b"\r\n".join(lines) + sep + body
    raise ValueError("no DKIM-Signature %d" % idx)


# ------------------------------------------------------------ registry

REGISTRY = []


def case(name, group):
    def deco(fn):
        REGISTRY.append((name, group, fn))
        return fn
    return deco


def add(name, group, fn):
    REGISTRY.append((name, group, fn))


def names():
    return [n for n, _, _ in REGISTRY]


def build():
    """Every case, built (keys made, messages signed)."""
    out = []
    seen = set()
    for n, (name, group, fn) in enumerate(REGISTRY):
        assert name not in seen, "two cases named %s" % name
        seen.add(name)
        c = Ctx(n)
        spec = fn(c)
        out.append(_finish(name, group, c, spec))
    return out


def _finish(name, group, c, spec):
    msg = spec["message"]
    expect = {}
    if "spf" in spec:
        expect["spf.result"] = spec["spf"]
    if "dkim" in spec:
        tags = sig_tags(msg)
        sigs = spec["dkim"]
        assert len(sigs) == len(tags), (name, len(sigs), len(tags))
        expect["dkim.count"] = len(sigs)
        for i, (want, own) in enumerate(zip(sigs, tags)):
            if isinstance(want, (str, tuple)):
                want = {"result": want}
            entry = {"d": own.get("d"), "s": own.get("s"),
                     "a": own.get("a"),
                     "t": int(own["t"]) if own.get("t", "").isdigit()
                     else None,
                     "x": int(own["x"]) if own.get("x", "").isdigit()
                     else None}
            entry.update(want)
            for k, v in entry.items():
                expect["dkim[%d].%s" % (i, k)] = v
    for k, v in (spec.get("dmarc") or {}).items():
        expect["dmarc." + k] = v
    if "from" in spec:
        expect["from"] = spec["from"]
    rfc = spec.get("rfc", "")
    notes = spec.get("notes", {})
    if notes or any(isinstance(v, tuple) for v in expect.values()):
        assert rfc, "case %s: a disagreement or a choice needs rfc=" % name
    return Case(name=name, group=group, n=c.n, ip=spec.get("ip", c.ip),
                helo=spec.get("helo", "mx." + c.d),
                sender=spec.get("sender", "ann@" + c.d),
                message=msg, zone=c.zone.records, modes=c.zone.modes,
                expect=expect, rfc=rfc, notes=notes)


# ============================================================ DKIM

def dkim_base(c, spf=True, dmarc=DMARC_DKIM):
    """The DKIM group's domain: SPF passes for the client, DMARC
    p=reject, so DMARC passes through SPF whatever DKIM says and
    dkim_aligned tells DKIM's part."""
    if spf:
        c.zone.txt(c.d, "v=spf1 ip4:%s -all" % c.ip)
    if dmarc:
        c.zone.txt("_dmarc." + c.d, dmarc)


def dkim_spec(c, msg, results, rfc="", notes=None, aligned=None, **kw):
    """The spec of a DKIM group case: SPF pass, DMARC pass through SPF,
    dkim_aligned from the results (a pass whose d= is the From
    domain) unless given."""
    tags = sig_tags(msg)
    if aligned is None:
        aligned = any((r if isinstance(r, str) else
                       r.get("result") if isinstance(r, dict) else None)
                      == "pass" and t.get("d") == c.d
                      for r, t in zip(results, tags))
    spec = {"message": msg, "spf": "pass", "dkim": list(results),
            "dmarc": {"result": "pass", "p": "reject",
                      "spf_aligned": True, "dkim_aligned": aligned},
            "from": "ann@" + c.d, "rfc": rfc, "notes": notes or {}}
    spec.update(kw)
    return spec


def rsa():
    return dkim_util.rsa_key(2048)


def ed():
    return dkim_util.ed25519_key()


ALGS = (("rsa-sha256", rsa, "pass", ""),
        ("ed25519-sha256", ed, "pass", ""),
        ("rsa-sha1", rsa, "policy", R_SHA1))
CANONS = (("simple", "simple"), ("simple", "relaxed"),
          ("relaxed", "simple"), ("relaxed", "relaxed"))


def _alg_case(alg, keyf, result, rfc, canon):
    def fn(c):
        dkim_base(c)
        key = keyf()
        publish(c, key, c.d, "sel")
        msg = sign(message(c), key, c.d, "sel", alg=alg, c=canon)
        return dkim_spec(c, msg, [result], rfc=rfc)
    return fn


for _alg, _keyf, _res, _rfc in ALGS:
    for _canon in CANONS:
        add("dkim_%s_%s_%s" % (_alg, _canon[0], _canon[1]), "dkim",
            _alg_case(_alg, _keyf, _res, _rfc, _canon))


@case("dkim_rsa_1024_bit_key_passes", "dkim")
def _(c):
    dkim_base(c)
    key = dkim_util.rsa_key(1024)
    publish(c, key, c.d, "sel")
    return dkim_spec(c, sign(message(c), key, c.d, "sel"), ["pass"])


@case("dkim_rsa_512_bit_key_is_policy", "dkim")
def _(c):
    dkim_base(c)
    key = dkim_util.rsa_key(512)
    publish(c, key, c.d, "sel")
    return dkim_spec(c, sign(message(c), key, c.d, "sel"), ["policy"],
                     rfc=R_SMALL)


def _mutation(name, canon, mutate, result, rfc="", notes=None, h=HEADERS,
              body=BODY, key=rsa):
    def fn(c):
        dkim_base(c)
        k = key()
        publish(c, k, c.d, "sel")
        msg = sign(message(c, body=body), k, c.d, "sel", c=canon, h=h)
        msg = mutate(msg, c)
        return dkim_spec(c, msg, [result], rfc=rfc, notes=notes)
    add(name, "dkim", fn)


def _body(old, new):
    def mutate(msg, c):
        head, sep, body = msg.partition(b"\r\n\r\n")
        assert b(old) in body, (old, body)
        return head + sep + body.replace(b(old), b(new), 1)
    return mutate


def _head(old, new):
    def mutate(msg, c):
        head, sep, body = msg.partition(b"\r\n\r\n")
        assert b(old) in head, (old, head)
        return head.replace(b(old), b(new), 1) + sep + body
    return mutate


def _append_body(extra):
    def mutate(msg, c):
        return msg + b(extra)
    return mutate


SS = ("simple", "simple")
RR = ("relaxed", "relaxed")
R_RELAXED_BODY = "RFC 6376 3.4.4 (relaxed body canonicalization)"
R_SIMPLE_BODY = "RFC 6376 3.4.3 (simple body canonicalization)"
R_RELAXED_HEAD = "RFC 6376 3.4.2 (relaxed header canonicalization)"
R_SIMPLE_HEAD = "RFC 6376 3.4.1 (simple header canonicalization)"

_mutation("dkim_body_changed_relaxed_fails", RR,
          _body("my address", "his address"), "fail")
_mutation("dkim_body_changed_simple_fails", SS,
          _body("my address", "his address"), "fail")
_mutation("dkim_body_trailing_empty_lines_simple_pass", SS,
          _append_body("\r\n\r\n\r\n"), "pass", R_SIMPLE_BODY)
_mutation("dkim_body_trailing_empty_lines_relaxed_pass", RR,
          _append_body("\r\n\r\n"), "pass", R_RELAXED_BODY)
_mutation("dkim_body_trailing_spaces_relaxed_pass", RR,
          _body("my address.", "my address.   \t"), "pass", R_RELAXED_BODY)
_mutation("dkim_body_trailing_spaces_simple_fails", SS,
          _body("my address.", "my address.   "), "fail", R_SIMPLE_BODY)
_mutation("dkim_body_inner_whitespace_relaxed_pass", RR,
          _body("this is", "this  \t is"), "pass", R_RELAXED_BODY)
_mutation("dkim_body_inner_whitespace_simple_fails", SS,
          _body("this is", "this  is"), "fail", R_SIMPLE_BODY)
_mutation("dkim_body_line_appended_fails", RR,
          _append_body("P.S. one more line\r\n"), "fail")
_mutation("dkim_subject_changed_fails", RR,
          _head("Subject: Please", "Subject: Kindly"), "fail")
_mutation("dkim_header_space_after_colon_relaxed_pass", RR,
          _head("Subject: Please", "Subject:    Please"), "pass",
          R_RELAXED_HEAD)
_mutation("dkim_header_space_after_colon_simple_fails", SS,
          _head("Subject: Please", "Subject:  Please"), "fail",
          R_SIMPLE_HEAD)
_mutation("dkim_header_name_case_relaxed_pass", RR,
          _head("Subject: Please", "SUBJECT: Please"), "pass",
          R_RELAXED_HEAD)
_mutation("dkim_header_name_case_simple_fails", SS,
          _head("Subject: Please", "SUBJECT: Please"), "fail",
          R_SIMPLE_HEAD)
_mutation("dkim_header_refolded_relaxed_pass", RR,
          _head("Subject: Please verify", "Subject: Please\r\n verify"),
          "pass", R_RELAXED_HEAD)
_mutation("dkim_header_refolded_simple_fails", SS,
          _head("Subject: Please verify", "Subject: Please\r\n verify"),
          "fail", R_SIMPLE_HEAD)
R_OBS_COLON = ("RFC 5322 4.5 (obs-optional: WSP before the colon) and "
               "RFC 6376 3.4.2 (relaxed removes it)")
_mutation("dkim_header_space_before_colon_relaxed_pass", RR,
          _head("Subject: Please", "Subject : Please"), "pass",
          R_OBS_COLON, notes={"dkimpy": {
              "dkim[0].result": R_OBS_COLON + ": python3-dkim refuses the "
              "whole message (MessageFormatError)"}})
_mutation("dkim_unsigned_header_added_passes", RR,
          _head("\r\nDate:", "\r\nX-Mailer: diff\r\nDate:"), "pass",
          "RFC 6376 5.4 (fields not in h= are not signed)")


def _drop_date(msg, c):
    head, sep, body = msg.partition(b"\r\n\r\n")
    lines = [x for x in head.split(b"\r\n") if not x.startswith(b"Date:")]
    return b"\r\n".join(lines) + sep + body


_mutation("dkim_signed_header_removed_fails", RR, _drop_date, "fail",
          "RFC 6376 5.4.2 (a signed field that is gone is hashed as null)")


def _reorder(msg, c):
    head, sep, body = msg.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    to = [x for x in lines if x.startswith(b"To:")]
    rest = [x for x in lines if not x.startswith(b"To:")]
    return b"\r\n".join(rest + to) + sep + body


_mutation("dkim_fields_reordered_passes", RR, _reorder, "pass",
          "RFC 6376 5.4.2 (fields are hashed in h= order, not the "
          "message's)")
_mutation("dkim_h_names_absent_field_then_added_fails", RR,
          _head("\r\nDate:", "\r\nReply-To: <eve@evil.example>\r\nDate:"),
          "fail", "RFC 6376 5.4 (a field named in h= that was absent is "
          "signed as absent)", h=HEADERS + ("reply-to",))
_mutation("dkim_h_names_absent_field_passes", RR, lambda m, c: m, "pass",
          "RFC 6376 5.4 (a name in h= without a field is a null string)",
          h=HEADERS + ("reply-to", "cc"))
_mutation("dkim_oversigned_from_and_subject_pass", RR, lambda m, c: m,
          "pass", "RFC 6376 5.4.2 (h= may name a field more often than "
          "it occurs)", h=("from", "from", "to", "subject", "subject",
                           "date", "message-id"))
_mutation("dkim_oversigned_then_cc_added_fails", RR,
          _head("\r\nDate:", "\r\nCc: <eve@evil.example>\r\nDate:"), "fail",
          "RFC 6376 5.4.2 (oversigning refuses an added instance)",
          h=HEADERS + ("cc",))
_mutation("dkim_h_without_subject_passes", RR, lambda m, c: m, "pass",
          h=("from", "to", "date", "message-id"))
_mutation("dkim_empty_body_simple_pass", SS, lambda m, c: m, "pass",
          R_SIMPLE_BODY, body="")
_mutation("dkim_empty_body_relaxed_pass", RR, lambda m, c: m, "pass",
          R_RELAXED_BODY, body="")
_mutation("dkim_body_with_leading_dot_passes", RR, lambda m, c: m, "pass",
          "RFC 5321 4.5.2 (dot-stuffing is undone before the body is "
          "hashed)", body="Hello,\r\n.hidden line\r\n..two dots\r\n")
_mutation("dkim_utf8_body_passes", RR, lambda m, c: m, "pass",
          body="Gr\u00fc\u00dfe aus K\u00f6ln \u2013 Ann\r\n")
_mutation("dkim_ed25519_body_changed_fails", RR,
          _body("my address", "his address"), "fail", key=ed)
_mutation("dkim_b_tag_corrupted_fails", RR,
          lambda m, c: replace_tag(m, "b", sig_tags(m)[0]["b"][:-8] +
                                   "AAAAAAA="), "fail")
_mutation("dkim_bh_tag_corrupted_fails", RR,
          lambda m, c: replace_tag(
              m, "bh", base64.b64encode(hashlib.sha256(b"x").digest())
              .decode()), "fail",
          "RFC 6376 6.1.3 (body hash mismatch: PERMFAIL, RFC 8601 fail)")
_mutation("dkim_h_tag_shortened_fails", RR,
          lambda m, c: replace_tag(m, "h", "from : to : date : message-id"),
          "fail")
_mutation("dkim_signature_field_refolded_relaxed_pass", RR,
          _head("; d=", ";\r\n\td="), "pass", R_RELAXED_HEAD)
_mutation("dkim_signature_field_refolded_simple_fails", SS,
          _head("; d=", ";\r\n\td="), "fail", R_SIMPLE_HEAD)


@case("dkim_d_tag_changed_leaves_i_outside_is_permerror", "dkim")
def _(c):
    # python3-dkim writes i=@D: with d= changed, i= is outside d=
    dkim_base(c)
    key = rsa()
    publish(c, key, c.d, "sel")
    publish(c, key, c.sub("other"), "sel")
    msg = sign(message(c), key, c.d, "sel")
    msg = replace_tag(msg, "d", c.sub("other"))
    return dkim_spec(c, msg, ["permerror"],
                     rfc="RFC 6376 6.1.1 (i= not within d=: PERMFAIL, "
                     "domain mismatch)")


@case("dkim_d_tag_changed_without_i_fails", "dkim")
def _(c):
    dkim_base(c)
    key = rsa()
    publish(c, key, c.d, "sel")
    publish(c, key, c.sub("other"), "sel")
    msg = sign_tags(message(c), key, c.d, "sel")
    msg = replace_tag(msg, "d", c.sub("other"))
    return dkim_spec(c, msg, ["fail"],
                     rfc="RFC 6376 6.1.3 (the header hash no longer "
                     "verifies)")


@case("dkim_s_tag_changed_fails", "dkim")
def _(c):
    dkim_base(c)
    key = rsa()
    publish(c, key, c.d, "sel")
    publish(c, key, c.d, "sel2")
    msg = replace_tag(sign(message(c), key, c.d, "sel"), "s", "sel2")
    return dkim_spec(c, msg, ["fail"])


@case("dkim_a_tag_changed_to_rsa_sha1", "dkim")
def _(c):
    dkim_base(c)
    key = rsa()
    publish(c, key, c.d, "sel")
    msg = replace_tag(sign(message(c), key, c.d, "sel"), "a", "rsa-sha1")
    return dkim_spec(c, msg, [("fail", "policy")],
                     rfc=R_SHA1 + "; the hash does not verify either "
                     "(RFC 6376 6.1.3): fail or policy")


# --- l=

@case("dkim_l_tag_with_text_appended_passes", "dkim")
def _(c):
    dkim_base(c)
    key = rsa()
    publish(c, key, c.d, "sel")
    msg = sign(message(c), key, c.d, "sel", length=True)
    msg += b"-- \r\nappended by a list\r\n"
    return dkim_spec(c, msg, ["pass"],
                     rfc="RFC 6376 3.5 l= (only l= octets of the "
                     "canonical body are hashed)")


@case("dkim_l_tag_simple_with_text_appended_passes", "dkim")
def _(c):
    dkim_base(c)
    key = rsa()
    publish(c, key, c.d, "sel")
    msg = sign(message(c), key, c.d, "sel", c=SS, length=True)
    msg += b"appended\r\n"
    return dkim_spec(c, msg, ["pass"], rfc="RFC 6376 3.5 l=")


@case("dkim_l_tag_body_changed_inside_fails", "dkim")
def _(c):
    dkim_base(c)
    key = rsa()
    publish(c, key, c.d, "sel")
    msg = sign(message(c), key, c.d, "sel", length=True)
    msg = msg.replace(b"my address", b"his address")
    return dkim_spec(c, msg, ["fail"])


@case("dkim_l_zero_with_other_body_passes", "dkim")
def _(c):
    dkim_base(c)
    key = rsa()
    publish(c, key, c.d, "sel")
    msg = sign_tags(message(c, body="Original\r\n"), key, c.d, "sel", l=0)
    msg = msg.replace(b"Original", b"Something else entirely")
    return dkim_spec(c, msg, ["pass"],
                     rfc="RFC 6376 3.5 l= (l=0: no body octet is signed)")


# --- two signatures

@case("dkim_two_signatures_rsa_and_ed25519_pass", "dkim")
def _(c):
    dkim_base(c)
    publish(c, rsa(), c.d, "rsa")
    publish(c, ed(), c.d, "ed")
    msg = sign(message(c), rsa(), c.d, "rsa")
    msg = sign(msg, ed(), c.d, "ed")
    return dkim_spec(c, msg, ["pass", "pass"],
                     rfc="RFC 8463 (dual RSA and Ed25519 signing)")


@case("dkim_two_signatures_one_bad_key", "dkim")
def _(c):
    dkim_base(c)
    publish(c, rsa(), c.d, "good")
    publish(c, dkim_util.rsa_key(2048, which=1), c.d, "bad")
    msg = sign(message(c), rsa(), c.d, "good")
    msg = sign(msg, rsa(), c.d, "bad")
    return dkim_spec(c, msg, ["fail", "pass"])


@case("dkim_two_signatures_third_party_and_author", "dkim")
def _(c):
    dkim_base(c)
    third = "esp%03d.example" % c.n
    publish(c, rsa(), third, "esp")
    publish(c, ed(), c.d, "own")
    msg = sign(message(c), rsa(), third, "esp")
    msg = sign(msg, ed(), c.d, "own")
    return dkim_spec(c, msg, ["pass", "pass"])


@case("dkim_third_party_signature_only_is_unaligned", "dkim")
def _(c):
    dkim_base(c)
    third = "esp%03d.example" % c.n
    publish(c, rsa(), third, "esp")
    msg = sign(message(c), rsa(), third, "esp")
    return dkim_spec(c, msg, ["pass"], aligned=False)


@case("dkim_two_signatures_sha1_and_sha256", "dkim")
def _(c):
    dkim_base(c)
    publish(c, rsa(), c.d, "sel")
    msg = sign(message(c), rsa(), c.d, "sel", alg="rsa-sha1")
    msg = sign(msg, rsa(), c.d, "sel")
    return dkim_spec(c, msg, ["pass", "policy"], rfc=R_SHA1)


# --- i= and t=s

@case("dkim_i_tag_user_at_domain_passes", "dkim")
def _(c):
    dkim_base(c)
    publish(c, rsa(), c.d, "sel")
    msg = sign(message(c), rsa(), c.d, "sel", identity="ann@" + c.d)
    return dkim_spec(c, msg, ["pass"])


@case("dkim_i_tag_subdomain_passes", "dkim")
def _(c):
    dkim_base(c)
    publish(c, rsa(), c.d, "sel")
    msg = sign(message(c), rsa(), c.d, "sel", identity="@" + c.sub("mail"))
    return dkim_spec(c, msg, ["pass"],
                     rfc="RFC 6376 3.5 i= (a subdomain of d= is allowed)")


@case("dkim_key_t_s_with_i_in_subdomain_is_permerror", "dkim")
def _(c):
    dkim_base(c)
    publish(c, rsa(), c.d, "sel", rsa().txt + "; t=s")
    msg = sign(message(c), rsa(), c.d, "sel", identity="@" + c.sub("mail"))
    return dkim_spec(c, msg, ["permerror"], rfc=R_TS, notes={
        "dkimpy": {"dkim[0].result": R_TS + ": python3-dkim ignores the "
                   "key's t= flags and passes"}})


@case("dkim_key_t_s_with_i_at_d_passes", "dkim")
def _(c):
    dkim_base(c)
    publish(c, rsa(), c.d, "sel", rsa().txt + "; t=s")
    msg = sign(message(c), rsa(), c.d, "sel", identity="ann@" + c.d)
    return dkim_spec(c, msg, ["pass"], rfc=R_TS)


@case("dkim_key_t_s_y_with_i_in_subdomain_is_permerror", "dkim")
def _(c):
    dkim_base(c)
    publish(c, rsa(), c.d, "sel", rsa().txt + "; t=y:s")
    msg = sign(message(c), rsa(), c.d, "sel", identity="@" + c.sub("mail"))
    return dkim_spec(c, msg, ["permerror"], rfc=R_TS, notes={
        "dkimpy": {"dkim[0].result": R_TS + ": python3-dkim ignores the "
                   "key's t= flags and passes"}})


@case("dkim_i_tag_outside_d_is_permerror", "dkim")
def _(c):
    dkim_base(c)
    publish(c, rsa(), c.d, "sel")
    msg = sign_tags(message(c), rsa(), c.d, "sel",
                    extra=[("i", "ann@other%03d.example" % c.n)])
    return dkim_spec(c, msg, ["permerror"],
                     rfc="RFC 6376 3.5 i= and 6.1.1 (i= not d= or a "
                     "subdomain: PERMFAIL, domain mismatch)")


# --- t= and x=

@case("dkim_t_and_x_in_the_future_pass", "dkim")
def _(c):
    dkim_base(c)
    publish(c, rsa(), c.d, "sel")
    now = int(time.time())
    msg = sign_tags(message(c), rsa(), c.d, "sel", t=now - 60,
                    extra=[("x", str(now + 30 * DAY))])
    return dkim_spec(c, msg, ["pass"],
                     rfc="RFC 6376 3.5 t= and x=; SPEC 6 (t and x reported)")


@case("dkim_x_expired_is_not_pass", "dkim")
def _(c):
    dkim_base(c)
    publish(c, rsa(), c.d, "sel")
    now = int(time.time())
    msg = sign_tags(message(c), rsa(), c.d, "sel", t=now - 3 * DAY,
                    extra=[("x", str(now - 2 * DAY))])
    return dkim_spec(c, msg, [("fail", "permerror")], rfc=R_EXPIRED)


@case("dkim_x_before_t_is_not_pass", "dkim")
def _(c):
    dkim_base(c)
    publish(c, rsa(), c.d, "sel")
    now = int(time.time())
    msg = sign_tags(message(c), rsa(), c.d, "sel", t=now - DAY,
                    extra=[("x", str(now - 2 * DAY))])
    return dkim_spec(c, msg, [("fail", "permerror")],
                     rfc="RFC 6376 3.5 x= (MUST be greater than t=): "
                     "PERMFAIL; " + R_EXPIRED)


@case("dkim_no_t_tag_passes_with_null_t", "dkim")
def _(c):
    dkim_base(c)
    publish(c, rsa(), c.d, "sel")
    msg = sign_tags(message(c), rsa(), c.d, "sel", t=None)
    return dkim_spec(c, msg, ["pass"], rfc="SPEC 6 (t null when absent)")


# --- q=

@case("dkim_q_list_with_dns_txt_and_unknown_passes", "dkim")
def _(c):
    dkim_base(c)
    publish(c, rsa(), c.d, "sel")
    msg = sign_tags(message(c), rsa(), c.d, "sel",
                    extra=[("q", "dns/txt:x-foo/bar")])
    return dkim_spec(c, msg, ["pass"], rfc=R_QLIST, notes={
        "dkimpy": {"dkim[0].result": R_QLIST + ": python3-dkim accepts "
                   "only q=dns/txt exactly (permerror)"}})


@case("dkim_q_only_unknown_method_is_permerror", "dkim")
def _(c):
    dkim_base(c)
    publish(c, rsa(), c.d, "sel")
    msg = sign_tags(message(c), rsa(), c.d, "sel", extra=[("q", "x-foo/bar")])
    return dkim_spec(c, msg, ["permerror"],
                     rfc=R_QLIST + "; none left: no key can be fetched "
                     "(RFC 6376 6.1.2); SPEC 6")


@case("dkim_q_dns_txt_passes", "dkim")
def _(c):
    dkim_base(c)
    publish(c, rsa(), c.d, "sel")
    msg = sign_tags(message(c), rsa(), c.d, "sel", extra=[("q", "dns/txt")])
    return dkim_spec(c, msg, ["pass"])


# --- the tag list itself

def _dup(tag):
    def edit(fields):
        for i, (k, v) in enumerate(fields):
            if k == tag:
                return fields[:i + 1] + [(k, v)] + fields[i + 1:]
        raise ValueError(tag)
    return edit


def _drop(tag):
    def edit(fields):
        return [(k, v) for k, v in fields if k != tag]
    return edit


for _tag in ("d", "s", "a", "t", "h"):
    def _dup_case(c, tag=_tag):
        dkim_base(c)
        publish(c, rsa(), c.d, "sel")
        msg = sign_tags(message(c), rsa(), c.d, "sel", edit=_dup(b(tag)))
        return dkim_spec(c, msg, ["permerror"], rfc=R_TAGLIST + "; SPEC 6")
    add("dkim_tag_%s_twice_with_valid_crypto_is_permerror" % _tag, "dkim",
        _dup_case)

for _tag in ("v", "bh", "h"):
    def _drop_case(c, tag=_tag):
        dkim_base(c)
        publish(c, rsa(), c.d, "sel")
        msg = sign_tags(message(c), rsa(), c.d, "sel", edit=_drop(b(tag)))
        return dkim_spec(c, msg, ["permerror"], rfc=R_REQUIRED + "; SPEC 6")
    add("dkim_required_tag_%s_missing_is_permerror" % _tag, "dkim",
        _drop_case)


@case("dkim_required_tag_a_missing_is_permerror", "dkim")
def _(c):
    dkim_base(c)
    publish(c, rsa(), c.d, "sel")
    msg = replace_tag(sign(message(c), rsa(), c.d, "sel"), "a", None)
    return dkim_spec(c, msg, ["permerror"], rfc=R_REQUIRED + "; SPEC 6")


@case("dkim_required_tag_b_missing_is_permerror", "dkim")
def _(c):
    dkim_base(c)
    publish(c, rsa(), c.d, "sel")
    msg = replace_tag(sign(message(c), rsa(), c.d, "sel"), "b", None)
    return dkim_spec(c, msg, ["permerror"], rfc=R_REQUIRED + "; SPEC 6")


@case("dkim_required_tag_d_missing_is_permerror", "dkim")
def _(c):
    dkim_base(c)
    publish(c, rsa(), c.d, "sel")
    msg = replace_tag(sign(message(c), rsa(), c.d, "sel"), "d", None)
    return dkim_spec(c, msg, ["permerror"], rfc=R_REQUIRED + "; SPEC 6")


@case("dkim_required_tag_s_missing_is_permerror", "dkim")
def _(c):
    dkim_base(c)
    publish(c, rsa(), c.d, "sel")
    msg = replace_tag(sign(message(c), rsa(), c.d, "sel"), "s", None)
    return dkim_spec(c, msg, ["permerror"], rfc=R_REQUIRED + "; SPEC 6")


@case("dkim_upper_case_tag_name_is_another_tag", "dkim")
def _(c):
    # "D=" is not "d=" (tag names are case-sensitive): d= is missing
    dkim_base(c)
    publish(c, rsa(), c.d, "sel")

    def edit(fields):
        return [(b"D" if k == b"d" else k, v) for k, v in fields]
    msg = sign_tags(message(c), rsa(), c.d, "sel", edit=edit)
    return dkim_spec(c, msg, ["permerror"],
                     rfc="RFC 6376 3.2 (tag names are case-sensitive) and "
                     + R_REQUIRED)


@case("dkim_v_2_is_permerror", "dkim")
def _(c):
    dkim_base(c)
    publish(c, rsa(), c.d, "sel")

    def edit(fields):
        return [(k, b"2" if k == b"v" else v) for k, v in fields]
    msg = sign_tags(message(c), rsa(), c.d, "sel", edit=edit)
    return dkim_spec(c, msg, ["permerror"],
                     rfc="RFC 6376 6.1.1 (v= other than 1: PERMFAIL, "
                     "incompatible version)")


@case("dkim_unknown_tag_is_ignored", "dkim")
def _(c):
    dkim_base(c)
    publish(c, rsa(), c.d, "sel")
    msg = sign_tags(message(c), rsa(), c.d, "sel",
                    extra=[("zz", "something-new")])
    return dkim_spec(c, msg, ["pass"],
                     rfc="RFC 6376 3.2 (unrecognized tags MUST be ignored)")


@case("dkim_whitespace_around_tags_passes", "dkim")
def _(c):
    dkim_base(c)
    publish(c, rsa(), c.d, "sel")

    def edit(fields):
        out = []
        for k, v in fields:
            if k in (b"d", b"s"):
                k, v = k + b" ", b" " + v + b"  "
            out.append((k, v))
        return out
    msg = sign_tags(message(c), rsa(), c.d, "sel", edit=edit)
    return dkim_spec(c, msg, ["pass"],
                     rfc="RFC 6376 3.2 (FWS around = and values)")


@case("dkim_unknown_algorithm_is_permerror", "dkim")
def _(c):
    dkim_base(c)
    publish(c, rsa(), c.d, "sel")
    msg = replace_tag(sign(message(c), rsa(), c.d, "sel"), "a", "rsa-sha512")
    return dkim_spec(c, msg, ["permerror"],
                     rfc="RFC 6376 3.5 a= and 6.1.1 (unsupported algorithm: "
                     "PERMFAIL); SPEC 6 (the signature's own algorithm)")


@case("dkim_unknown_canonicalization_is_permerror", "dkim")
def _(c):
    dkim_base(c)
    publish(c, rsa(), c.d, "sel")
    msg = replace_tag(sign(message(c), rsa(), c.d, "sel"), "c",
                      "bogus/relaxed")
    return dkim_spec(c, msg, ["permerror"],
                     rfc="RFC 6376 3.5 c= and 6.1.1 (PERMFAIL)")


@case("dkim_h_without_from_is_permerror", "dkim")
def _(c):
    dkim_base(c)
    publish(c, rsa(), c.d, "sel")
    msg = sign_tags(message(c), rsa(), c.d, "sel",
                    h=("to", "subject", "date", "message-id"))
    return dkim_spec(c, msg, ["permerror"], rfc=R_FROM_H, notes={
        "dkimpy": {"dkim[0].result": R_FROM_H + ": python3-dkim verifies "
                   "the signature without From and passes it"}})


# --- key records

def _key_case(name, txt, result, rfc="", notes=None, key=rsa, alg=None,
              mode=None):
    def fn(c):
        dkim_base(c)
        k = key()
        record = txt(k) if callable(txt) else txt
        if record is not None:
            publish(c, k, c.d, "sel", record)
        if mode is not None:
            c.zone.mode("sel._domainkey." + c.d, mode)
        msg = sign(message(c), k, c.d, "sel", alg=alg)
        return dkim_spec(c, msg, [result], rfc=rfc, notes=notes)
    add(name, "dkim", fn)


_key_case("dkim_key_missing_is_permerror", None, "permerror",
          "RFC 6376 6.1.2 (no key record: PERMFAIL, no key for signature)")
_key_case("dkim_key_servfail_is_temperror", lambda k: k.txt, "temperror",
          "RFC 6376 6.1.2 (key query failed: TEMPFAIL)", mode="servfail")
_key_case("dkim_key_revoked_is_permerror", "v=DKIM1; k=rsa; p=",
          "permerror", "RFC 6376 3.6.1 p= and 6.1.2 (empty p=: PERMFAIL, "
          "key revoked)")
_key_case("dkim_key_unknown_k_is_permerror",
          lambda k: k.txt.replace("k=rsa", "k=dsa"), "permerror",
          "RFC 6376 3.6.1 k= and 6.1.2 (PERMFAIL, inappropriate key "
          "algorithm)")
_key_case("dkim_key_k_rsa_for_ed25519_signature_is_permerror",
          lambda k: k.txt.replace("k=ed25519", "k=rsa"), "permerror",
          "RFC 6376 6.1.2 (key unsuitable for a=: PERMFAIL)", key=ed)
_key_case("dkim_key_without_k_for_ed25519_is_permerror",
          lambda k: k.txt.replace("k=ed25519; ", ""), "permerror",
          "RFC 6376 3.6.1 k= (default rsa) and 6.1.2; RFC 8463 3", key=ed)
_key_case("dkim_key_h_sha1_refuses_rsa_sha256", lambda k: k.txt + "; h=sha1",
          "permerror", R_KEY_H, notes={
              "dkimpy": {"dkim[0].result": R_KEY_H + ": python3-dkim "
                         "ignores the key's h= and passes"}})
_key_case("dkim_key_h_sha256_passes", lambda k: k.txt + "; h=sha256", "pass")
_key_case("dkim_key_s_email_passes", lambda k: k.txt + "; s=email", "pass")
_key_case("dkim_key_s_other_service_is_permerror",
          lambda k: k.txt + "; s=x-other", "permerror",
          "RFC 6376 3.6.1 s= (a key for other services only is not for "
          "email): PERMFAIL (RFC 6376 6.1.2)")
_key_case("dkim_key_without_v_passes", lambda k: k.txt.replace("v=DKIM1; ",
                                                               ""),
          "pass", "RFC 6376 3.6.1 v= (RECOMMENDED, not required)")
_key_case("dkim_key_v_not_first_is_permerror",
          lambda k: k.txt.replace("v=DKIM1; ", "") + "; v=DKIM1",
          "permerror", R_KEY_V, notes={"dkimpy": {
              "dkim[0].result": R_KEY_V + ": python3-dkim reads v= "
              "anywhere in the record and passes"}})
_key_case("dkim_key_v_dkim2_is_permerror",
          lambda k: k.txt.replace("v=DKIM1", "v=DKIM2"), "permerror", R_KEY_V)
_key_case("dkim_key_unknown_tag_passes", lambda k: k.txt + "; zz=new",
          "pass", "RFC 6376 3.2 (unrecognized tags MUST be ignored)")
_key_case("dkim_key_testing_flag_passes", lambda k: k.txt + "; t=y", "pass",
          "RFC 6376 3.6.1 t=y (the result is still reported)")
_key_case("dkim_key_p_not_base64_is_permerror",
          "v=DKIM1; k=rsa; p=@@not-base64@@", "permerror",
          "RFC 6376 6.1.2 (unparsable key: PERMFAIL)")
_key_case("dkim_key_p_truncated_is_permerror",
          lambda k: k.txt[:-40], "permerror",
          "RFC 6376 6.1.2 (unparsable key: PERMFAIL)")
_key_case("dkim_key_record_not_dkim_is_permerror",
          "google-site-verification=abc", "permerror",
          "RFC 6376 6.1.2 (no usable key: PERMFAIL)")


_key_case("dkim_key_record_with_whitespace_passes",
          lambda k: "v = DKIM1 ;\tk = rsa ; p = " + " ".join(
              k.public_b64[i:i + 64] for i in range(0, len(k.public_b64),
                                                     64)),
          "pass", "RFC 6376 3.2 (FWS around tags) and 3.6.1 p= (FWS "
          "inside the base64 value)")


@case("dkim_upper_case_d_passes_and_aligns", "dkim")
def _(c):
    dkim_base(c)
    publish(c, rsa(), c.d, "sel")
    msg = sign(message(c), rsa(), c.d.upper(), "sel")
    return dkim_spec(c, msg, ["pass"], aligned=True,
                     rfc="RFC 4343 (DNS names compare without case) and "
                     "RFC 9989 4.4")


@case("dkim_i_tag_domain_in_other_case_passes", "dkim")
def _(c):
    dkim_base(c)
    publish(c, rsa(), c.d, "sel")
    msg = sign_tags(message(c), rsa(), c.d, "sel",
                    extra=[("i", "ann@" + c.d.upper())])
    return dkim_spec(c, msg, ["pass"],
                     rfc="RFC 6376 3.5 i= and RFC 4343 (the i= domain is d= "
                     "without regard to case)")


@case("dkim_key_behind_cname_passes", "dkim")
def _(c):
    dkim_base(c)
    publish(c, rsa(), c.sub("keys"), "k1")
    c.zone.cname("sel._domainkey." + c.d, "k1._domainkey." + c.sub("keys"))
    msg = sign(message(c), rsa(), c.d, "sel")
    return dkim_spec(c, msg, ["pass"], rfc="RFC 1034 3.6.2 (CNAME)")


@case("dkim_utf8_subject_signed_passes", "dkim")
def _(c):
    dkim_base(c)
    publish(c, rsa(), c.d, "sel")
    msg = sign(message(c, subject="Gr\u00fc\u00dfe " + TOKEN), rsa(), c.d,
               "sel")
    return dkim_spec(c, msg, ["pass"], rfc="RFC 6532 3.2 (UTF-8 header)")


# ============================================================ SPF

def spf_spec(c, spf, record=None, dmarc=None, rfc="", notes=None, **kw):
    """An SPF group case: From and MAIL FROM ann@D, DMARC p=quarantine
    at D, no DKIM; record (if given) is D's SPF record."""
    if record is not None:
        c.zone.txt(c.d, record)
    c.zone.txt("_dmarc." + c.d, DMARC_SPF)
    if dmarc is None:
        if spf == "pass":
            dmarc = {"result": "pass", "p": "quarantine",
                     "spf_aligned": True, "dkim_aligned": False}
        elif spf == "temperror":
            dmarc = {}
        else:
            dmarc = {"result": "fail", "p": "quarantine",
                     "spf_aligned": False, "dkim_aligned": False}
    spec = {"message": message(c), "spf": spf, "dkim": [], "dmarc": dmarc,
            "from": "ann@" + c.d, "rfc": rfc, "notes": notes or {}}
    spec.update(kw)
    return spec


def spf(name, record, result, zone=None, rfc="", notes=None, **kw):
    """An SPF case: record (a format string: {ip} {d} {net} {nb}) and
    zone(c) adding more records."""
    def fn(c):
        if zone is not None:
            zone(c)
        rec = record
        if isinstance(rec, str):
            rec = rec.format(ip=c.ip, d=c.d, net=c.net24(), nb=c.neighbour())
        elif isinstance(rec, list):
            rec = [r.format(ip=c.ip, d=c.d, net=c.net24(), nb=c.neighbour())
                   for r in rec]
        extra = dict(kw)
        local = extra.pop("sender_local", None)
        if local is not None:
            extra["sender"] = "%s@%s" % (local, c.d)
        return spf_spec(c, result, rec, rfc=rfc, notes=notes, **extra)
    add(name, "spf", fn)


R74 = "RFC 7208 "
spf("spf_ip4_exact_pass", "v=spf1 ip4:{ip} -all", "pass")
spf("spf_ip4_cidr_pass", "v=spf1 ip4:{net} -all", "pass",
    rfc=R74 + "5.6 (ip4-cidr-length)")
spf("spf_ip4_other_fail", "v=spf1 ip4:192.0.2.1 -all", "fail")
spf("spf_ip4_other_softfail", "v=spf1 ip4:192.0.2.1 ~all", "softfail")
spf("spf_neutral_all", "v=spf1 ?all", "neutral")
spf("spf_plus_all_pass", "v=spf1 +all", "pass")
spf("spf_empty_record_neutral", "v=spf1", "neutral",
    rfc=R74 + "4.7 (no match, no redirect: neutral)")
spf("spf_no_record_none", "google-site-verification=abc", "none",
    rfc=R74 + "4.5 (no SPF record: none)")
spf("spf_record_split_in_strings_pass",
    ["v=spf1 ip4:192.0.2.1", " ip4:{ip} -all"], "pass",
    rfc=R74 + "3.3 (strings concatenated without spaces)")
spf("spf_two_records_permerror", "v=spf1 ip4:{ip} -all", "permerror",
    zone=lambda c: c.zone.txt(c.d, "v=spf1 -all"),
    rfc=R74 + "4.5 (more than one record: permerror)")
spf("spf_spaces_between_terms_pass", "v=spf1   ip4:{ip}    -all  ", "pass",
    rfc=R74 + "4.6.1 (terms separated by 1*SP)")
spf("spf_first_match_wins_fail", "v=spf1 -all ip4:{ip}", "fail",
    rfc=R74 + "4.6.2 (the first matching mechanism decides)")
spf("spf_qualifier_softfail", "v=spf1 ~ip4:{ip} +all", "softfail")
spf("spf_qualifier_neutral", "v=spf1 ?ip4:{ip} -all", "neutral")
spf("spf_qualifier_fail", "v=spf1 -ip4:{ip} +all", "fail")
spf("spf_ip4_bad_cidr_permerror", "v=spf1 ip4:{ip}/33 -all", "permerror",
    rfc=R74 + "5.6 (cidr over 32) and 4.6 (syntax error: permerror)")
spf("spf_ip4_not_an_address_permerror", "v=spf1 ip4:300.1.2.3 -all",
    "permerror", rfc=R74 + "4.6 (syntax error: permerror)")
spf("spf_ip4_without_value_permerror", "v=spf1 ip4 -all", "permerror",
    rfc=R74 + "4.6")
spf("spf_unknown_mechanism_permerror", "v=spf1 foo:{d} ip4:{ip} -all",
    "permerror", rfc=R74 + "4.6 (unknown mechanism: permerror)")
spf("spf_unknown_modifier_ignored_pass",
    "v=spf1 ip4:{ip} x-future=something -all", "pass",
    rfc=R74 + "6 (unrecognized modifiers MUST be ignored)")
spf("spf_ip6_does_not_match_ipv4_fail", "v=spf1 ip6:::1 -all", "fail",
    rfc=R74 + "5.6 (ip6 matches IPv6 clients only)")
spf("spf_a_pass", "v=spf1 a -all", "pass",
    zone=lambda c: c.zone.a(c.d, c.ip))
spf("spf_a_host_pass", "v=spf1 a:host.{d} -all", "pass",
    zone=lambda c: c.zone.a(c.sub("host"), c.ip))
spf("spf_a_cidr_pass", "v=spf1 a:host.{d}/24 -all", "pass",
    zone=lambda c: c.zone.a(c.sub("host"), c.neighbour()),
    rfc=R74 + "5.3 (a with cidr)")
spf("spf_a_dual_cidr_pass", "v=spf1 a:host.{d}/24//64 -all", "pass",
    zone=lambda c: c.zone.a(c.sub("host"), c.neighbour()),
    rfc=R74 + "5.3 and 5.6 (dual-cidr-length)")
spf("spf_a_several_addresses_pass", "v=spf1 a:host.{d} -all", "pass",
    zone=lambda c: (c.zone.a(c.sub("host"), "192.0.2.7"),
                    c.zone.a(c.sub("host"), c.ip)))
spf("spf_a_no_address_fail", "v=spf1 a:none.{d} -all", "fail",
    rfc=R74 + "4.6.4 (one void lookup is allowed)")
spf("spf_a_through_cname_pass", "v=spf1 a:alias.{d} -all", "pass",
    zone=lambda c: (c.zone.cname(c.sub("alias"), c.sub("host")),
                    c.zone.a(c.sub("host"), c.ip)))
spf("spf_mx_pass", "v=spf1 mx -all", "pass",
    zone=lambda c: (c.zone.mx(c.d, c.sub("mx1")),
                    c.zone.a(c.sub("mx1"), c.ip)))
spf("spf_mx_domain_pass", "v=spf1 mx:mail.{d} -all", "pass",
    zone=lambda c: (c.zone.mx(c.sub("mail"), c.sub("mx1")),
                    c.zone.a(c.sub("mx1"), c.ip)))
spf("spf_mx_cidr_pass", "v=spf1 mx/24 -all", "pass",
    zone=lambda c: (c.zone.mx(c.d, c.sub("mx1")),
                    c.zone.a(c.sub("mx1"), c.neighbour())))
spf("spf_mx_second_host_pass", "v=spf1 mx -all", "pass",
    zone=lambda c: (c.zone.mx(c.d, c.sub("mx1"), 10),
                    c.zone.mx(c.d, c.sub("mx2"), 20),
                    c.zone.a(c.sub("mx1"), "192.0.2.1"),
                    c.zone.a(c.sub("mx2"), c.ip)))
spf("spf_mx_host_without_address_fail", "v=spf1 mx -all", "fail",
    zone=lambda c: c.zone.mx(c.d, c.sub("mx1")))


def _many_mx(c):
    for i in range(11):
        c.zone.mx(c.d, c.sub("mx%d" % i), 10 + i)
        c.zone.a(c.sub("mx%d" % i), "192.0.2.%d" % (i + 1))


spf("spf_mx_over_ten_names_permerror", "v=spf1 mx ip4:{ip} -all",
    "permerror", zone=_many_mx,
    rfc=R74 + "4.6.4 (an mx with more than 10 names: permerror)")
spf("spf_include_pass", "v=spf1 include:_spf.{d} -all", "pass",
    zone=lambda c: c.zone.txt(c.sub("_spf"), "v=spf1 ip4:%s -all" % c.ip))
spf("spf_include_fail_is_no_match_softfail",
    "v=spf1 include:_spf.{d} ~all", "softfail",
    zone=lambda c: c.zone.txt(c.sub("_spf"), "v=spf1 -all"),
    rfc=R74 + "5.2 (include of fail: no match)")
spf("spf_include_neutral_is_no_match_fail",
    "v=spf1 include:_spf.{d} -all", "fail",
    zone=lambda c: c.zone.txt(c.sub("_spf"), "v=spf1 ?all"),
    rfc=R74 + "5.2 (include of neutral: no match)")
spf("spf_include_without_record_permerror",
    "v=spf1 include:nothing.{d} ip4:{ip} -all", "permerror",
    rfc=R74 + "5.2 (include of none: permerror)")
spf("spf_include_servfail_temperror",
    "v=spf1 include:broken.{d} ip4:{ip} -all", "temperror",
    zone=lambda c: c.zone.mode(c.sub("broken"), "servfail"),
    rfc=R74 + "5.2 (include of temperror: temperror)")
spf("spf_include_syntax_error_permerror",
    "v=spf1 include:_spf.{d} ip4:{ip} -all", "permerror",
    zone=lambda c: c.zone.txt(c.sub("_spf"), "v=spf1 ip4:nonsense -all"),
    rfc=R74 + "5.2 (include of permerror: permerror)")
spf("spf_include_itself_permerror", "v=spf1 include:{d} -all", "permerror",
    rfc=R74 + "4.6.4 (a loop runs out of lookups: permerror)")
spf("spf_exists_pass", "v=spf1 exists:%{{i}}.e.{d} -all", "pass",
    zone=lambda c: c.zone.a("%s.e.%s" % (c.ip, c.d), "127.0.0.2"),
    rfc=R74 + "5.7 and 7.2 (%{i})")
spf("spf_exists_no_match_fail", "v=spf1 exists:%{{i}}.e.{d} -all", "fail")
spf("spf_exists_txt_only_fail", "v=spf1 exists:x.{d} -all", "fail",
    zone=lambda c: c.zone.txt(c.sub("x"), "not an address"),
    rfc=R74 + "5.7 (exists asks for A records only)")
spf("spf_ptr_pass", "v=spf1 ptr -all", "pass",
    zone=lambda c: (c.zone.ptr(c.ip, c.sub("host")),
                    c.zone.a(c.sub("host"), c.ip)),
    rfc=R74 + "5.5 (ptr: a validated name in the domain)")
spf("spf_ptr_not_validated_fail", "v=spf1 ptr -all", "fail",
    zone=lambda c: c.zone.ptr(c.ip, c.sub("host")),
    rfc=R74 + "5.5 (a PTR name without a matching A is not validated)")
spf("spf_ptr_other_domain_fail", "v=spf1 ptr -all", "fail",
    zone=lambda c: (c.zone.ptr(c.ip, "host.other%03d.example" % c.n),
                    c.zone.a("host.other%03d.example" % c.n, c.ip)),
    rfc=R74 + "5.5")
spf("spf_ptr_explicit_domain_pass", "v=spf1 ptr:isp.{d} -all", "pass",
    zone=lambda c: (c.zone.ptr(c.ip, "dyn.isp." + c.d),
                    c.zone.a("dyn.isp." + c.d, c.ip)),
    rfc=R74 + "5.5")
spf("spf_macro_ir_v_d_pass", "v=spf1 exists:%{{ir}}.%{{v}}._spf.%{{d}} -all",
    "pass",
    zone=lambda c: c.zone.a("%s.in-addr._spf.%s" % (
        ".".join(reversed(c.ip.split("."))), c.d), "127.0.0.2"),
    rfc=R74 + "7.2 and 7.3 (i, v, d macros; r reverses)")
spf("spf_macro_local_part_pass", "v=spf1 exists:%{{l}}._u.%{{o}} -all",
    "pass", zone=lambda c: c.zone.a("ann._u." + c.d, "127.0.0.2"),
    rfc=R74 + "7.2 (l and o macros)")
spf("spf_macro_d2_pass", "v=spf1 exists:%{{l}}._u.%{{d2}} -all", "pass",
    zone=lambda c: c.zone.a("ann._u." + c.d, "127.0.0.2"),
    rfc=R74 + "7.3 (a digit keeps that many rightmost labels)")
spf("spf_macro_helo_pass", "v=spf1 exists:%{{h}}._h.{d} -all", "pass",
    zone=lambda c: c.zone.a("mx.%s._h.%s" % (c.d, c.d), "127.0.0.2"),
    rfc=R74 + "7.2 (h macro)")
spf("spf_macro_delimiter_pass", "v=spf1 exists:%{{l-}}._l.{d} -all", "pass",
    zone=lambda c: c.zone.a("ann.smith._l." + c.d, "127.0.0.2"),
    sender_local="ann-smith",
    rfc=R74 + "7.3 (delimiters are replaced by dots)")
spf("spf_macro_reverse_delimiter_pass",
    "v=spf1 exists:%{{lr-}}._l.{d} -all", "pass",
    zone=lambda c: c.zone.a("smith.ann._l." + c.d, "127.0.0.2"),
    sender_local="ann-smith", rfc=R74 + "7.3 (r with a delimiter)")
spf("spf_macro_i1r_one_label_pass", "v=spf1 exists:%{{i1r}}.x.{d} -all",
    "pass", zone=lambda c: c.zone.a("%s.x.%s" % (c.ip.split(".")[0], c.d),
                                    "127.0.0.2"),
    rfc=R74 + "7.3 (reverse, then keep the rightmost 1: the first octet)")
R_MACRO_ORDER = (R74 + "7.1 (transformers = *DIGIT [\"r\"]: a digit after "
                 "r is a syntax error, permerror)")
spf("spf_macro_r_before_digit_permerror",
    "v=spf1 exists:%{{ir1}}.x.{d} -all", "permerror",
    zone=lambda c: c.zone.a("%s.x.%s" % (c.ip.split(".")[0], c.d),
                            "127.0.0.2"),
    rfc=R_MACRO_ORDER, notes={"pyspf": {
        "spf.result": R_MACRO_ORDER + ": pyspf reads %{ir1} without "
        "complaint (and matches nothing: fail)"}})
spf("spf_macro_unknown_letter_permerror", "v=spf1 exists:%{{z}}.{d} -all",
    "permerror", rfc=R74 + "7.1 (unknown macro letter: syntax error)")
spf("spf_macro_bad_percent_permerror", "v=spf1 exists:%q.{d} -all",
    "permerror", rfc=R74 + "7.1 (a % not followed by {, %, _ or -)")
spf("spf_redirect_pass", "v=spf1 redirect=_spf.{d}", "pass",
    zone=lambda c: c.zone.txt(c.sub("_spf"), "v=spf1 ip4:%s -all" % c.ip))
spf("spf_redirect_fail", "v=spf1 redirect=_spf.{d}", "fail",
    zone=lambda c: c.zone.txt(c.sub("_spf"), "v=spf1 ip4:192.0.2.1 -all"))
spf("spf_redirect_to_nothing_permerror", "v=spf1 redirect=nothing.{d}",
    "permerror", rfc=R74 + "6.1 (redirect to no record: permerror)")
spf("spf_redirect_ignored_after_all", "v=spf1 -all redirect=_spf.{d}",
    "fail",
    zone=lambda c: c.zone.txt(c.sub("_spf"), "v=spf1 +all"),
    rfc=R74 + "6.1 (redirect is ignored when all is present)")
spf("spf_redirect_with_macro_pass", "v=spf1 redirect=_r.%{{d}}", "pass",
    zone=lambda c: c.zone.txt(c.sub("_r"), "v=spf1 ip4:%s -all" % c.ip),
    rfc=R74 + "6.1 and 7")
spf("spf_two_redirects_permerror",
    "v=spf1 redirect=a.{d} redirect=b.{d}", "permerror",
    zone=lambda c: (c.zone.txt(c.sub("a"), "v=spf1 +all"),
                    c.zone.txt(c.sub("b"), "v=spf1 +all")),
    rfc=R74 + "6 (redirect at most once: permerror)")
spf("spf_exp_with_fail", "v=spf1 -all exp=explain.{d}", "fail",
    zone=lambda c: c.zone.txt(c.sub("explain"), "Not from %{i}"),
    rfc=R74 + "6.2 (exp does not change the result)")


def _voids(n):
    return "v=spf1 " + " ".join("a:v%d.{d}" % i for i in range(n)) + \
        " ip4:{ip} -all"


spf("spf_two_void_lookups_pass", _voids(2), "pass",
    rfc=R74 + "4.6.4 (at most two void lookups)")
spf("spf_three_void_lookups_permerror", _voids(3), "permerror",
    rfc=R74 + "4.6.4 (a third void lookup: permerror)")


def _chain(n):
    def zone(c):
        for i in range(1, n):
            c.zone.txt("l%d.%s" % (i, c.d),
                       "v=spf1 include:l%d.%s -all" % (i + 1, c.d))
        c.zone.txt("l%d.%s" % (n, c.d), "v=spf1 ip4:%s -all" % c.ip)
    return zone


spf("spf_ten_lookups_pass", "v=spf1 include:l1.{d} -all", "pass",
    zone=_chain(10), rfc=R74 + "4.6.4 (10 DNS-querying terms allowed)")
spf("spf_eleven_lookups_permerror", "v=spf1 include:l1.{d} -all",
    "permerror", zone=_chain(11),
    rfc=R74 + "4.6.4 (an 11th DNS-querying term: permerror)")


def _eleven_a(c):
    for i in range(11):
        c.zone.a("h%d.%s" % (i, c.d), "192.0.2.%d" % (i + 1))


spf("spf_eleven_a_terms_permerror",
    "v=spf1 " + " ".join("a:h%d.{d}" % i for i in range(11)) +
    " ip4:{ip} -all", "permerror", zone=_eleven_a,
    rfc=R74 + "4.6.4 (a counts as a DNS-querying term)")
spf("spf_ip4_terms_do_not_count", "v=spf1 " +
    " ".join("ip4:192.0.2.%d" % i for i in range(1, 13)) + " ip4:{ip} -all",
    "pass", rfc=R74 + "4.6.4 (ip4 asks no DNS)")
spf("spf_record_servfail_temperror", None, "temperror",
    zone=lambda c: c.zone.mode(c.d, "servfail"),
    rfc=R74 + "4.4 (DNS error: temperror)", dmarc={})
spf("spf_include_empty_domain_permerror", "v=spf1 include: -all",
    "permerror", rfc=R74 + "4.6 (empty domain-spec: syntax error)")
spf("spf_all_with_value_permerror", "v=spf1 all:{d}", "permerror",
    rfc=R74 + "5.1 (all takes no argument)")
spf("spf_version_only_prefix_is_not_spf", "v=spf10 -all", "none",
    rfc=R74 + "4.5 (the version is exactly v=spf1, then SP or end)")


@case("spf_null_sender_uses_helo_pass", "spf")
def _(c):
    helo = c.sub("mail")
    c.zone.txt(helo, "v=spf1 ip4:%s -all" % c.ip)
    c.zone.txt("_dmarc." + c.d, DMARC_SPF)
    return {"message": message(c), "spf": "pass", "dkim": [],
            "sender": "", "helo": helo,
            "dmarc": {"result": "pass", "p": "quarantine",
                      "spf_aligned": True, "dkim_aligned": False},
            "from": "ann@" + c.d, "rfc": R_NULL}


@case("spf_null_sender_helo_fail", "spf")
def _(c):
    helo = c.sub("mail")
    c.zone.txt(helo, "v=spf1 ip4:192.0.2.1 -all")
    c.zone.txt("_dmarc." + c.d, DMARC_SPF)
    return {"message": message(c), "spf": "fail", "dkim": [],
            "sender": "", "helo": helo,
            "dmarc": {"result": "fail", "p": "quarantine",
                      "spf_aligned": False, "dkim_aligned": False},
            "from": "ann@" + c.d, "rfc": R_NULL}


def _ipv6(name, record, result, zone=None, rfc=""):
    def fn(c):
        if zone is not None:
            zone(c)
        spec = spf_spec(c, result, record.format(d=c.d), rfc=rfc)
        spec["ip"] = IPV6
        return spec
    add(name, "spf", fn)


_ipv6("spf_ipv6_client_ip6_pass", "v=spf1 ip6:::1 -all", "pass")
_ipv6("spf_ipv6_client_ip6_cidr_pass", "v=spf1 ip6:::/64 -all", "pass",
      rfc=R74 + "5.6 (ip6-cidr-length)")
_ipv6("spf_ipv6_client_ip4_does_not_match_fail",
      "v=spf1 ip4:127.0.0.0/8 -all", "fail",
      rfc=R74 + "5.6 (ip4 matches IPv4 clients only)")
_ipv6("spf_ipv6_client_a_uses_aaaa_pass", "v=spf1 a:host.{d} -all", "pass",
      zone=lambda c: (c.zone.a(c.sub("host"), "::1"),
                      c.zone.a(c.sub("host"), "192.0.2.1")),
      rfc=R74 + "5.3 (AAAA for an IPv6 client)")
_ipv6("spf_ipv6_macro_i_pass", "v=spf1 exists:%{{ir}}._6.{d} -all", "pass",
      zone=lambda c: c.zone.a("1." + "0." * 31 + "_6." + c.d, "127.0.0.2"),
      rfc=R74 + "7.3 (IPv6 %{i}: dot-separated nibbles)")


# ============================================================ DMARC

def dmarc_case(name, build, rfc="", notes=None):
    def fn(c):
        spec = build(c)
        spec.setdefault("message", message(c, frm=spec.pop("frm", None)))
        spec.setdefault("rfc", rfc)
        spec.setdefault("notes", notes or {})
        return spec
    add(name, "dmarc", fn)


def _spf_ok(c, domain):
    c.zone.txt(domain, "v=spf1 ip4:%s -all" % c.ip)


def _dm(result, p=None, spf_al=None, dkim_al=None, org=None):
    out = {"result": result}
    if p is not None:
        out["p"] = p
    if spf_al is not None:
        out["spf_aligned"] = spf_al
    if dkim_al is not None:
        out["dkim_aligned"] = dkim_al
    if org is not None:
        out["org_domain"] = org
    return out


R_ALIGN = "RFC 9989 4.4 (identifier alignment, relaxed and strict)"
R_WALK = "RFC 9989 4.10 (DNS tree walk) and 4.10.2 (organizational domain)"


def _relaxed_spf(c):
    _spf_ok(c, c.sub("bounce"))
    c.zone.txt("_dmarc." + c.d, "v=DMARC1; p=reject")
    return {"sender": "x@" + c.sub("bounce"), "spf": "pass", "dkim": [],
            "dmarc": _dm("pass", "reject", True, False, c.d),
            "from": "ann@" + c.d}


dmarc_case("dmarc_relaxed_spf_subdomain_pass", _relaxed_spf, R_ALIGN)


def _strict_spf(c):
    _spf_ok(c, c.sub("bounce"))
    c.zone.txt("_dmarc." + c.d, "v=DMARC1; p=reject; aspf=s")
    return {"sender": "x@" + c.sub("bounce"), "spf": "pass", "dkim": [],
            "dmarc": _dm("fail", "reject", False, False, c.d)}


dmarc_case("dmarc_strict_spf_subdomain_fail", _strict_spf, R_ALIGN)


def _strict_spf_exact(c):
    _spf_ok(c, c.d)
    c.zone.txt("_dmarc." + c.d, "v=DMARC1; p=reject; aspf=s")
    return {"spf": "pass", "dkim": [],
            "dmarc": _dm("pass", "reject", True, False, c.d)}


dmarc_case("dmarc_strict_spf_exact_pass", _strict_spf_exact, R_ALIGN)


def _dkim_only(c, d, from_domain, record, result, aligned, p="reject",
               org=None):
    _spf_ok(c, "bounce%03d.example" % c.n)
    c.zone.txt("_dmarc." + c.d, record)
    c.zone.a(from_domain, "192.0.2.1")
    publish(c, rsa(), d, "sel")
    msg = sign(message(c, frm="Ann <ann@%s>" % from_domain), rsa(), d, "sel")
    return {"message": msg, "sender": "x@bounce%03d.example" % c.n,
            "spf": "pass", "dkim": ["pass"],
            "dmarc": _dm(result, p, False, aligned, org or c.d),
            "from": "ann@" + from_domain}


dmarc_case("dmarc_relaxed_dkim_parent_domain_pass",
           lambda c: _dkim_only(c, c.d, c.sub("news"), "v=DMARC1; p=reject",
                                "pass", True), R_ALIGN)
dmarc_case("dmarc_strict_dkim_parent_domain_fail",
           lambda c: _dkim_only(c, c.d, c.sub("news"),
                                "v=DMARC1; p=reject; adkim=s", "fail",
                                False), R_ALIGN)
dmarc_case("dmarc_strict_dkim_exact_pass",
           lambda c: _dkim_only(c, c.sub("news"), c.sub("news"),
                                "v=DMARC1; p=reject; adkim=s", "pass",
                                True), R_ALIGN)
dmarc_case("dmarc_relaxed_dkim_child_domain_pass",
           lambda c: _dkim_only(c, c.sub("mail"), c.d,
                                "v=DMARC1; p=reject", "pass", True), R_ALIGN)
dmarc_case("dmarc_relaxed_dkim_sibling_domain_pass",
           lambda c: _dkim_only(c, c.sub("a"), c.sub("b"),
                                "v=DMARC1; p=reject", "pass", True), R_ALIGN)
dmarc_case("dmarc_strict_dkim_sibling_domain_fail",
           lambda c: _dkim_only(c, c.sub("a"), c.sub("b"),
                                "v=DMARC1; p=reject; adkim=s", "fail",
                                False), R_ALIGN)


def _walk_deep(c):
    deep = "a.b.c." + c.d
    _spf_ok(c, c.d)
    c.zone.a(deep, "192.0.2.1")
    c.zone.txt("_dmarc." + c.d, "v=DMARC1; p=reject; sp=quarantine")
    return {"frm": "Ann <ann@%s>" % deep, "spf": "pass", "dkim": [],
            "dmarc": _dm("pass", "quarantine", True, False, c.d),
            "from": "ann@" + deep}


dmarc_case("dmarc_tree_walk_from_deep_subdomain", _walk_deep,
           R_WALK + "; 4.10.1 (sp for a subdomain)")


def _walk_two_records(c):
    mid = "y." + c.d
    frm = "x." + mid
    _spf_ok(c, c.d)
    c.zone.a(frm, "192.0.2.1")
    c.zone.txt("_dmarc." + mid, "v=DMARC1; p=none")
    c.zone.txt("_dmarc." + c.d, "v=DMARC1; p=reject; sp=quarantine")
    return {"frm": "Ann <ann@%s>" % frm, "spf": "pass", "dkim": [],
            "dmarc": _dm("pass", None, True, False, c.d),
            "from": "ann@" + frm}


dmarc_case("dmarc_tree_walk_org_domain_has_fewest_labels", _walk_two_records,
           R_WALK + " (without psd, the record with the fewest labels)")


def _psd_y(c):
    org = "org." + c.d
    _spf_ok(c, "bounce%03d.example" % c.n)
    c.zone.a(org, "192.0.2.1")
    c.zone.txt("_dmarc." + c.d, "v=DMARC1; p=reject; psd=y")
    return {"frm": "Ann <ann@%s>" % org,
            "sender": "x@bounce%03d.example" % c.n, "spf": "pass",
            "dkim": [], "dmarc": _dm("fail", "reject", False, False, org)}


dmarc_case("dmarc_psd_y_org_domain_is_one_label_below", _psd_y,
           R_WALK + " (psd=y: one label below)")


def _psd_n(c):
    sub = "sub." + c.d
    frm = "x." + sub
    _spf_ok(c, c.d)
    c.zone.a(frm, "192.0.2.1")
    c.zone.txt("_dmarc." + sub, "v=DMARC1; p=quarantine; psd=n")
    c.zone.txt("_dmarc." + c.d, "v=DMARC1; p=reject")
    return {"frm": "Ann <ann@%s>" % frm, "spf": "pass", "dkim": [],
            "dmarc": _dm("fail", "quarantine", False, False, sub)}


dmarc_case("dmarc_psd_n_stops_the_walk", _psd_n,
           R_WALK + " (psd=n: that domain is the organizational domain)")


def _sp_existing(c):
    sub = c.sub("shop")
    _spf_ok(c, "bounce%03d.example" % c.n)
    c.zone.a(sub, "192.0.2.1")
    c.zone.txt("_dmarc." + c.d, "v=DMARC1; p=none; sp=reject; np=quarantine")
    return {"frm": "Ann <ann@%s>" % sub,
            "sender": "x@bounce%03d.example" % c.n, "spf": "pass",
            "dkim": [], "dmarc": _dm("fail", "reject", False, False, c.d)}


dmarc_case("dmarc_sp_for_an_existing_subdomain", _sp_existing,
           "RFC 9989 4.10.1 (sp for an existing subdomain)")


def _np_missing(c):
    sub = c.sub("ghost")
    _spf_ok(c, "bounce%03d.example" % c.n)
    c.zone.txt("_dmarc." + c.d, "v=DMARC1; p=none; sp=none; np=reject")
    return {"frm": "Ann <ann@%s>" % sub,
            "sender": "x@bounce%03d.example" % c.n, "spf": "pass",
            "dkim": [], "dmarc": _dm("fail", "reject", False, False, c.d)}


dmarc_case("dmarc_np_for_a_nonexistent_subdomain", _np_missing,
           "RFC 9989 4.10.1 (np when the From domain does not exist)")


def _p_fail(p):
    def build(c):
        c.zone.txt(c.d, "v=spf1 ip4:192.0.2.1 -all")
        c.zone.txt("_dmarc." + c.d, "v=DMARC1; p=%s" % p)
        return {"spf": "fail", "dkim": [],
                "dmarc": _dm("fail", p, False, False, c.d)}
    return build


dmarc_case("dmarc_p_none_fail", _p_fail("none"))
dmarc_case("dmarc_p_quarantine_fail", _p_fail("quarantine"))
dmarc_case("dmarc_p_reject_fail", _p_fail("reject"))


def _record(record, result, p=None, spf="pass", extra=None):
    def build(c):
        _spf_ok(c, "bounce%03d.example" % c.n)
        c.zone.txt("_dmarc." + c.d, record)
        if extra:
            c.zone.txt("_dmarc." + c.d, extra)
        return {"sender": "x@bounce%03d.example" % c.n, "spf": spf,
                "dkim": [], "dmarc": _dm(result, p)}
    return build


dmarc_case("dmarc_record_without_v_first_is_none",
           _record("p=reject; v=DMARC1", "none"),
           "RFC 9989 4.7 (v=DMARC1 first, else not a DMARC record)")
dmarc_case("dmarc_two_records_are_none",
           _record("v=DMARC1; p=reject", "none", extra="v=DMARC1; p=none"),
           "RFC 9989 4.10 (several records at a name: none there)")
dmarc_case("dmarc_record_with_spaces_is_read",
           _record("v=DMARC1 ;  p = reject ; ", "fail", "reject"),
           "RFC 9989 4.7 and RFC 6376 3.2 (FWS around tags)")
dmarc_case("dmarc_record_behind_cname_is_read",
           lambda c: (c.zone.cname("_dmarc." + c.d, "dm.%s" % c.d),
                      c.zone.txt("dm." + c.d, "v=DMARC1; p=reject"),
                      _spf_ok(c, "bounce%03d.example" % c.n),
                      {"sender": "x@bounce%03d.example" % c.n, "spf": "pass",
                       "dkim": [], "dmarc": _dm("fail", "reject")})[-1],
           "RFC 1034 3.6.2 (CNAME)")
R_BADP = ("RFC 9989 4.10.1 (an invalid p without rua: no DMARC "
          "processing) and RFC 7489 11.2 (permerror: a syntactically "
          "incorrect DMARC record)")
dmarc_case("dmarc_invalid_p_without_rua_is_permerror",
           _record("v=DMARC1; p=bogus", ("permerror", "none")), R_BADP)
dmarc_case("dmarc_invalid_p_with_rua_is_p_none",
           _record("v=DMARC1; p=bogus; rua=mailto:d@example.net", "fail",
                   "none"),
           "RFC 9989 4.10.1 (an invalid p with a valid rua: p=none)")
R_NOP = ("RFC 9989 4.7 p= (a record without p is treated as if it had "
         "p=none)")
dmarc_case("dmarc_record_without_p_is_p_none",
           _record("v=DMARC1; adkim=r", "fail", "none"), R_NOP, notes={
               "mailauth": {"dmarc.result": R_NOP + ": mailauth applies "
                            "no DMARC to a record without p and without "
                            "rua (none)",
                            "dmarc.p": R_NOP + ": mailauth has no policy"}})
R_DMARC_DUP = ("RFC 9989 4.7 (the DKIM tag-list syntax) and RFC 6376 3.2 "
               "(a tag twice: the whole tag-list is invalid)")
dmarc_case("dmarc_record_with_a_tag_twice_is_invalid",
           _record("v=DMARC1; p=none; p=reject", ("none", "permerror")),
           R_DMARC_DUP)


def _dmarc_servfail(c):
    _spf_ok(c, c.d)
    c.zone.mode("_dmarc." + c.d, "servfail")
    return {"spf": "pass", "dkim": [], "dmarc": _dm("temperror")}


dmarc_case("dmarc_record_servfail_is_temperror", _dmarc_servfail,
           "RFC 9989 4.10 (DNS error: temperror)")


def _dkim_saves_spf_fail(c):
    c.zone.txt(c.d, "v=spf1 ip4:192.0.2.1 -all")
    c.zone.txt("_dmarc." + c.d, "v=DMARC1; p=reject")
    publish(c, ed(), c.d, "sel")
    msg = sign(message(c), ed(), c.d, "sel")
    return {"message": msg, "spf": "fail", "dkim": ["pass"],
            "dmarc": _dm("pass", "reject", False, True, c.d)}


dmarc_case("dmarc_aligned_dkim_passes_despite_spf_fail", _dkim_saves_spf_fail,
           "RFC 9989 4.4 (either identifier)")


def _nothing_aligned(c):
    other = "other%03d.example" % c.n
    _spf_ok(c, other)
    c.zone.txt("_dmarc." + c.d, "v=DMARC1; p=reject")
    publish(c, rsa(), other, "sel")
    msg = sign(message(c), rsa(), other, "sel")
    return {"message": msg, "sender": "x@" + other, "spf": "pass",
            "dkim": ["pass"], "dmarc": _dm("fail", "reject", False, False)}


dmarc_case("dmarc_unaligned_spf_and_dkim_pass_is_fail", _nothing_aligned,
           R_ALIGN)


def _null_sender_dmarc(c):
    helo = c.sub("mail")
    c.zone.txt(helo, "v=spf1 ip4:%s -all" % c.ip)
    c.zone.txt("_dmarc." + c.d, "v=DMARC1; p=reject")
    return {"sender": "", "helo": helo, "spf": "pass", "dkim": [],
            "dmarc": _dm("pass", "reject", True, False, c.d)}


dmarc_case("dmarc_null_sender_helo_spf_aligns", _null_sender_dmarc, R_NULL)


def _no_record(c):
    _spf_ok(c, c.d)
    return {"spf": "pass", "dkim": [], "dmarc": _dm("none")}


dmarc_case("dmarc_no_record_is_none", _no_record,
           "RFC 9989 4.10.1 (no record: none)")


# ============================================================ From

R_5322 = "RFC 5322 3.4 (mailbox: name-addr or addr-spec)"


def from_case(name, frm, addr=None, rfc=R_5322, notes=None, nospace=False):
    """The From field's value frm (with {d} for the case's domain);
    addr: the mailbox smtpd must find ({d} too).  The domain publishes
    SPF for the client and DMARC p=reject; MAIL FROM is ann@D."""
    def fn(c):
        c.zone.txt(c.d, "v=spf1 ip4:%s -all" % c.ip)
        c.zone.txt("_dmarc." + c.d, "v=DMARC1; p=reject")
        msg = message(c, frm=frm.format(d=c.d))
        if nospace:
            msg = msg.replace(b"From: ", b"From:", 1)
        spec = {"message": msg, "spf": "pass", "dkim": [],
                "dmarc": _dm("pass", "reject", True, False),
                "rfc": rfc, "notes": notes or {}}
        if addr is not None:
            spec["from"] = addr.format(d=c.d)
        return spec
    add(name, "from", fn)


from_case("from_addr_spec", "ann@{d}", "ann@{d}")
from_case("from_display_name", "Ann Example <ann@{d}>", "ann@{d}")
from_case("from_quoted_display_name", "\"Ann Example\" <ann@{d}>", "ann@{d}")
from_case("from_quoted_display_name_with_comma", "\"Doe, Ann\" <ann@{d}>",
          "ann@{d}", rfc="RFC 5322 3.2.4 (a comma inside a quoted-string)")
from_case("from_display_name_looks_like_an_address",
          "\"eve@evil.example\" <ann@{d}>", "ann@{d}",
          rfc="RFC 5322 3.4 (the display name is not the address)")
from_case("from_display_name_with_angle_brackets",
          "\"Eve <eve@evil.example>\" <ann@{d}>", "ann@{d}",
          rfc="RFC 5322 3.2.4 (specials inside a quoted-string)")
from_case("from_comment_in_display_name", "Ann (the boss) <ann@{d}>",
          "ann@{d}", rfc="RFC 5322 3.2.2 (comments are CFWS)")
from_case("from_comment_after_addr_spec", "ann@{d} (Ann Example)",
          "ann@{d}", rfc="RFC 5322 3.2.2 and 3.4.1")
from_case("from_comment_with_an_address_inside",
          "ann@{d} (eve@evil.example)", "ann@{d}",
          rfc="RFC 5322 3.2.2 (a comment is not an address)")
from_case("from_no_space_after_colon", "<ann@{d}>", "ann@{d}", nospace=True,
          rfc="RFC 5322 3.6.2 (From: then optional FWS)")
from_case("from_folded", "Ann Example\r\n <ann@{d}>", "ann@{d}",
          rfc="RFC 5322 2.2.3 (folding)")
from_case("from_encoded_word_display_name",
          "=?utf-8?q?Ann_=C3=89xample?= <ann@{d}>", "ann@{d}",
          rfc="RFC 2047 (an encoded word in a phrase)")
from_case("from_quoted_local_part", "\"ann smith\"@{d}", "\"ann smith\"@{d}",
          rfc="RFC 5322 3.4.1 (a quoted-string local part keeps its "
          "quotes)")
R_ROUTE = ("RFC 5322 4.4 (obs-angle-addr: the obs-route is not part of "
           "the addr-spec); SPEC 6 (obsolete forms are read, not refused)")
_ROUTE_NOTE = {"mailauth": {"from": R_ROUTE + ": mailauth (nodemailer's "
                            "addressparser) keeps the route in the address "
                            "(its DMARC still takes the domain after the "
                            "last @)"}}
from_case("from_obsolete_route", "<@route.example:ann@{d}>", "ann@{d}",
          rfc=R_ROUTE, notes=_ROUTE_NOTE)
from_case("from_obsolete_route_two_hops",
          "Ann <@r1.example,@r2.example:ann@{d}>", "ann@{d}",
          rfc=R_ROUTE + " (obs-domain-list)", notes=_ROUTE_NOTE)
R_CFWS = "RFC 5322 3.4.1 and 3.2.3 (CFWS around a dot-atom is not part of it)"
from_case("from_cfws_around_domain", "ann@ {d} ", "ann@{d}", rfc=R_CFWS,
          notes={"mailauth": {"from": R_CFWS + ": mailauth keeps the space "
                              "in the address"}})


@case("from_upper_case_domain_aligns", "from")
def _(c):
    c.zone.txt(c.d, "v=spf1 ip4:%s -all" % c.ip)
    c.zone.txt("_dmarc." + c.d, "v=DMARC1; p=reject")
    return {"message": message(c, frm="Ann <ann@%s>" % c.d.upper()),
            "spf": "pass", "dkim": [],
            "dmarc": _dm("pass", "reject", True, False),
            "rfc": "RFC 9989 4.4 and RFC 4343 (domain names compare "
            "without case)"}


@case("from_domain_literal_is_dmarc_none", "from")
def _(c):
    c.zone.txt(c.d, "v=spf1 ip4:%s -all" % c.ip)
    return {"message": message(c, frm="Ann <ann@[127.0.0.1]>"),
            "spf": "pass", "dkim": [], "dmarc": _dm("none"),
            "from": "ann@[127.0.0.1]",
            "rfc": "RFC 5322 3.4.1 (domain-literal); SPEC 6 (a domain "
            "literal gets DMARC none)"}


@case("from_utf8_domain_is_looked_up_as_a_label", "from")
def _(c):
    alabel = "xn--bcher-kva." + c.d
    c.zone.txt(alabel, "v=spf1 ip4:%s -all" % c.ip)
    c.zone.txt("_dmarc." + alabel, "v=DMARC1; p=reject")
    return {"message": message(c, frm="Ann <ann@b\u00fccher.%s>" % c.d),
            "sender": "ann@" + alabel, "spf": "pass", "dkim": [],
            "dmarc": _dm("pass", "reject", True, False, alabel),
            "rfc": R_IDNA}


@case("from_utf8_domain_signed_with_a_label_d", "from")
def _(c):
    alabel = "xn--bcher-kva." + c.d
    c.zone.txt(c.d, "v=spf1 ip4:%s -all" % c.ip)
    c.zone.txt("_dmarc." + alabel, "v=DMARC1; p=reject; adkim=s")
    publish(c, ed(), alabel, "sel")
    msg = sign(message(c, frm="Ann <ann@b\u00fccher.%s>" % c.d), ed(),
               alabel, "sel")
    return {"message": msg, "spf": "pass", "dkim": ["pass"],
            "dmarc": _dm("pass", "reject", False, True, alabel),
            "rfc": R_IDNA + "; RFC 9989 4.4 (strict: the same A-label)"}
