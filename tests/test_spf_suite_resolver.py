"""The RFC 7208 test suite's PTR cases end to end: a real smtpd and
smtpd-relay, with --resolver pointed at the fake DNS (tests/fakes/fake_dns.py)
serving the case's zone, and the client address the case names given
by a PROXY v2 header (--proxy-from 127.0.0.1/32).  The SPF result in
the spool payload (auth.spf) must be the suite's.

tests/test_spf_suite.py runs every case through a driver that answers
DNS itself; this one proves that the relay asks the resolver for every
name (SPEC section 6), including those in zones libunbound would answer
itself unless told not to: the reverse zones of 192.168.0.0/16 and
2001:db8::/32 are among them, and bytes-bug, ptr-case-change and
p-macro-multiple fail when libunbound answers them.

The cases run: every case of a section whose zone has a PTR record, and
every other case whose own policy names `ptr` or `%{p}`; less the cases
an SMTP session cannot carry (a HELO name with a space is a syntax
error), which the driver's run still covers.  Each section's cases run
against one server and one fake DNS (the relay's cache is per server,
the zone per section).
"""
import ipaddress
import json
import os
import pathlib
import re
import tempfile

import pytest
import yaml

from conftest import (SmtpdServer, assert_reply, build_args, free_port,
                      make_message, reply_id)
from fake_dns import FakeDNS
from test_proxy import TRUSTED, proxied, v2
from test_spf_suite import SUITE, octets, zone_records

E2E_CASES = 45          # by the rule above, in release 2014.04
USES_PTR = re.compile(r"\bptr\b|%\{p", re.IGNORECASE)


def policy(zonedata, domain):
    """The TXT (or SPF) text published at domain, joined."""
    return " ".join(str(data) for owner, rtype, data in zone_records(zonedata)
                    if rtype == "TXT" and owner.lower() == domain.lower())


def selected_sections():
    """[(zonedata, [(case, test)])] of the cases this module runs."""
    out = []
    with open(SUITE, encoding="utf-8") as f:
        for section in yaml.safe_load_all(f):
            zone = section.get("zonedata") or {}
            has_ptr = any(rtype == "PTR" for _, rtype, _ in
                          zone_records(zone))
            cases = []
            for cname, t in section["tests"].items():
                helo = str(t.get("helo") or "")
                sender = str(t.get("mailfrom") or "")
                domain = sender.rpartition("@")[2] if sender else helo
                if not has_ptr and not USES_PTR.search(policy(zone,
                                                              domain)):
                    continue
                if not sender or " " in helo:
                    continue        # the HELO check, or no EHLO for it
                cases.append((cname, t))
            if cases:
                out.append((zone, cases))
    return out


SECTIONS = selected_sections()
CASES = [c for _, cases in SECTIONS for c, _ in cases]


def serve(fake, zone):
    for owner, rtype, data in zone_records(zone):
        if rtype == "TIMEOUT":
            fake.set_mode(owner, "timeout")
        elif rtype == "MX":
            fake.mx(owner, data)
        elif rtype == "TXT":
            fake.txt(owner, octets(data))
        else:
            fake.add(owner, rtype, data)


def spf_of(srv, t):
    """One case's session through the proxy header: the payload's
    auth.spf."""
    host = str(ipaddress.ip_address(t["host"]))
    sender = str(t["mailfrom"])
    with proxied(srv, v2(host)) as c:
        c.greeting()
        r = c.deliver(make_message(sender=sender), sender=sender,
                      helo=str(t["helo"]))
        assert_reply(r, "250 2.0.0")
        c.quit()
    path = srv.spool / ("%s.json" % reply_id(r))
    return json.loads(path.read_text(encoding="utf-8"))["auth"]["spf"]


def run_section(workdir, spool_root, zone, cases):
    """{case: auth.spf, or the error that stopped it}."""
    got = {}
    with FakeDNS() as fake:
        serve(fake, zone)
        parent = tempfile.mkdtemp(dir=str(spool_root))
        os.chmod(parent, 0o711)
        spool = pathlib.Path(parent) / "spool"
        port = free_port()
        srv = SmtpdServer(workdir, build_args(port, spool, TRUSTED,
                                              resolver=fake),
                          port, spool)
        srv.start()
        try:
            for cname, t in cases:
                try:
                    got[cname] = spf_of(srv, t)
                except (AssertionError, OSError, ValueError) as e:
                    got[cname] = "no payload: %s" % e
        finally:
            srv.stop()
        died = [e for e in srv.logs(strict=False)
                if e.get("event") in ("worker_died", "worker_failed")]
        assert not died, "unexpected worker deaths: %r" % died[:3]
    return got


@pytest.fixture(scope="module")
def outcome(tmp_path_factory, spool_root):
    """outcome(case): auth.spf of that case; a section's cases all run
    on first use."""
    done = {}

    def get(case):
        for i, (zone, cases) in enumerate(SECTIONS):
            if case in dict(cases) and case not in done:
                # once only, even if the section's server fails
                done.update((c, "its section failed") for c, _ in cases)
                done.update(run_section(tmp_path_factory.mktemp(
                    "section%d" % i), spool_root, zone, cases))
        return done.get(case, "not run")
    return get


def test_the_rule_picks_every_ptr_case():
    assert len(CASES) == E2E_CASES and len(set(CASES)) == E2E_CASES
    assert "bytes-bug" in CASES


@pytest.mark.parametrize("case", CASES)
def test_rfc7208_ptr_case_through_the_resolver(outcome, case):
    t = dict(c for _, cases in SECTIONS for c in cases)[case]
    want = t["result"] if isinstance(t["result"], list) else [t["result"]]
    spf = outcome(case)
    assert isinstance(spf, dict), spf
    domain = str(t["mailfrom"]).rpartition("@")[2]
    assert spf["scope"] == "mfrom" and spf["domain"].lower() == \
        domain.lower(), spf
    assert spf["result"] in want, "%s: got %s, want %s" % (
        case, spf["result"], " or ".join(want))
