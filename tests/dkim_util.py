"""DKIM keys and signatures for the sender authentication tests.

Keys are made once per test run (nothing secret is stored in the
repository): RSA with python3-cryptography, Ed25519 with python3-nacl
(which python3-dkim uses itself).  Signing is python3-dkim's
dkim.sign(); check() verifies with python3-dkim's own dkim.verify()
against the records a FakeDNS serves, asked over the wire, so a test
knows its message is right before smtpd sees it.
"""

import base64
import functools
import hashlib
import re

import dkim
import nacl.encoding
import nacl.signing
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from dnslib import QTYPE, RCODE, DNSRecord

SIGNED_HEADERS = ("from", "to", "subject", "date", "message-id")
NO_SUBJECT = ("from", "to", "date", "message-id")


class Key:
    """One key pair: kind "rsa" or "ed25519", its size in bits, the
    private key as dkim.sign() takes it, the public key as p= holds it."""

    def __init__(self, kind, bits, private, public_b64):
        self.kind = kind
        self.bits = bits
        self.private = private
        self.public_b64 = public_b64

    @property
    def algorithm(self):
        """The default a= for this key."""
        return b"ed25519-sha256" if self.kind == "ed25519" else b"rsa-sha256"

    @property
    def txt(self):
        """The DNS TXT record text of the key (RFC 6376 3.6.1)."""
        return "v=DKIM1; k=%s; p=%s" % (self.kind, self.public_b64)

    def __repr__(self):
        return "Key(%s, %d)" % (self.kind, self.bits)


def rsa_key(bits=2048, which=0):
    """An RSA key of bits bits (cached per run; `which` makes others).
    The private key is PKCS#1 PEM, the public p= a SubjectPublicKeyInfo."""
    return _rsa_key(int(bits), int(which))


@functools.lru_cache(maxsize=None)
def _rsa_key(bits, which):
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(
        serialization.Encoding.DER,
        serialization.PublicFormat.SubjectPublicKeyInfo)
    return Key("rsa", bits, private, base64.b64encode(public).decode())


def ed25519_key(which=0):
    """An Ed25519 key (RFC 8463): the private key is the base64 seed
    dkim.sign() takes, p= the base64 of the 32-octet public key."""
    return _ed25519_key(int(which))


@functools.lru_cache(maxsize=None)
def _ed25519_key(which):
    sk = nacl.signing.SigningKey.generate()
    private = sk.encode(encoder=nacl.encoding.Base64Encoder)
    public = sk.verify_key.encode(encoder=nacl.encoding.Base64Encoder)
    return Key("ed25519", 256, private, public.decode())


def signature(message, key, domain, selector, headers=SIGNED_HEADERS,
              algorithm=None, length=False,
              canonicalize=(b"relaxed", b"simple")):
    """The DKIM-Signature field (bytes, CRLF-terminated) for message."""
    if isinstance(domain, str):
        domain = domain.encode()
    if isinstance(selector, str):
        selector = selector.encode()
    return dkim.sign(message, selector, domain, key.private,
                     signature_algorithm=algorithm or key.algorithm,
                     include_headers=[h.encode() for h in headers],
                     length=length, canonicalize=canonicalize)


def sign(message, key, domain, selector, **kw):
    """message with a DKIM-Signature field prepended (see signature())."""
    return signature(message, key, domain, selector, **kw) + message


def publish(dns, key, domain, selector):
    """Serve key's record at selector._domainkey.domain on a FakeDNS."""
    dns.txt("%s._domainkey.%s" % (selector, domain), key.txt)


def dnsfunc(fake, timeout=2.0):
    """A dkim.verify() dnsfunc asking the FakeDNS over TCP: the TXT
    strings of the first record joined, or None."""
    def get_txt(name, timeout=timeout):
        if isinstance(name, bytes):
            name = name.decode("ascii")
        q = DNSRecord.question(name, "TXT")
        r = DNSRecord.parse(q.send(fake.host, fake.port, tcp=True,
                                   timeout=timeout))
        if r.header.rcode != RCODE.NOERROR:
            return None
        for rr in r.rr:
            if rr.rtype == QTYPE.TXT:
                return b"".join(rr.rdata.data)
        return None
    return get_txt


def check(message, fake, idx=0, minkey=1024):
    """Does python3-dkim verify signature idx of message against the
    records fake serves?"""
    d = dkim.DKIM(message, minkey=minkey)
    try:
        return bool(d.verify(idx=idx, dnsfunc=dnsfunc(fake)))
    except dkim.DKIMException:
        return False


# ------------------------------------------------- hand-made signatures

def header_fields(raw):
    """The header fields of a raw message, each with its folding."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    fields = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\r\n" + line
        else:
            fields.append(line)
    return fields


def _relaxed_header(field):
    """RFC 6376 3.4.2 for one field (bytes, without its CRLF)."""
    name, _, value = field.partition(b":")
    value = re.sub(rb"\r\n", b"", value)
    value = re.sub(rb"[ \t]+", b" ", value).strip(b" ")
    return name.strip().lower() + b":" + value


def _relaxed_body(body):
    """RFC 6376 3.4.4."""
    lines = body.split(b"\r\n")
    if lines and lines[-1] == b"":
        lines.pop()
    lines = [re.sub(rb"[ \t]+", b" ", ln).rstrip(b" ") for ln in lines]
    while lines and lines[-1] == b"":
        lines.pop()
    return b"".join(ln + b"\r\n" for ln in lines)


def sign_tags(message, key, tags, signed=SIGNED_HEADERS):
    """message with a DKIM-Signature field prepended whose tag list is
    `tags` (text, as written, without bh= and b=) followed by bh= and b=:
    relaxed/relaxed, rsa-sha256 with an RSA key, over the fields named
    in `signed` chosen from the bottom up (RFC 6376 5.4.2).  For tag
    lists python3-dkim will not write (a tag twice, one missing, odd
    q=), so that the only fault of the signature is the one made."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    body = message.partition(b"\r\n\r\n")[2]
    bh = base64.b64encode(hashlib.sha256(_relaxed_body(body)).digest())
    fields = header_fields(message)
    used = set()
    data = b""
    for name in signed:
        for i in range(len(fields) - 1, -1, -1):
            fname = fields[i].partition(b":")[0].strip().lower()
            if i not in used and fname == name.encode():
                used.add(i)
                data += _relaxed_header(fields[i]) + b"\r\n"
                break
    sig = b"DKIM-Signature: " + tags.encode() + b"; bh=" + bh + b"; b="
    data += _relaxed_header(sig)
    private = serialization.load_pem_private_key(key.private, None)
    b = base64.b64encode(private.sign(data, padding.PKCS1v15(),
                                      hashes.SHA256()))
    return sig + b + b"\r\n" + message
