"""SPF (spf.c) against the RFC 7208 test suite (the openspf.org suite,
release 2014.04, in /work/shared/testdata/spf/rfc7208-tests.yml or
$SPF_SUITE) and our regression cases (tests/spf/*.txt), one pytest test
per case.

The YAML is turned into the case format of tests/spf_test.c (see its
header), which answers DNS from each case's zone.  The suite's own
conventions, from its header and the pyspf driver it was written for:
- a name's type SPF records are copied to TXT only when the name has no
  TXT record; "TXT: NONE" stops the copy.  Type SPF itself is never
  served (spf.c asks for TXT only);
- a TXT record given as a list of strings is the strings joined;
- an empty mailfrom is the HELO check: the domain is the HELO name and
  the sender postmaster@helo;
- a result given as a list means any of them is right.

Build the driver first: make tests/spf_test.  The cases that use PTR
also run end to end, through smtpd, the relay and --resolver, in
tests/test_spf_suite_resolver.py.
"""
import os
import pathlib
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
DRIVER = ROOT / "tests" / "spf_test"
SUITE = pathlib.Path(os.environ.get(
    "SPF_SUITE", "/work/shared/testdata/spf/rfc7208-tests.yml"))
REGRESS = sorted((ROOT / "tests" / "spf").glob("*.txt"))
SUITE_CASES = 203       # the release's count; a changed file must be seen

# Cases that cannot pass for a reason outside spf.c; strict, so that
# the day they pass the marker has to go.
KNOWN = {}


def octets(data):
    """A zone's text as the octets served: Latin-1 when it fits (the
    suite's \\x escapes are octets), else UTF-8."""
    if isinstance(data, str):
        try:
            return data.encode("latin-1")
        except UnicodeEncodeError:
            return data.encode("utf-8")
    return data


def esc(data):
    """Octets outside '!'..'~', and '%', as %XX (tests/spf_test.c)."""
    return "".join(chr(b) if 0x21 <= b <= 0x7e and b != 0x25
                   else "%%%02X" % b for b in octets(data))


def name(v):
    return str(v).rstrip(".")


def zone_records(zonedata):
    """(owner, type, data) of one section's zone, by the suite's
    conventions; a name that never answers is (owner, "TIMEOUT", None)."""
    for owner, records in (zonedata or {}).items():
        has_txt = any(isinstance(r, dict) and "TXT" in r for r in records)
        for r in records:
            if r == "TIMEOUT":
                yield owner, "TIMEOUT", None
                continue
            for rtype, value in r.items():
                if rtype == "SPF":
                    if has_txt:
                        continue
                    rtype = "TXT"
                if rtype == "TXT":
                    if value == "NONE":
                        continue
                    if isinstance(value, list):
                        value = "".join(value)
                    data = value
                elif rtype == "MX":
                    data = name(value[1])
                elif rtype in ("PTR", "CNAME"):
                    data = name(value)
                elif rtype in ("A", "AAAA"):
                    data = str(value)
                else:
                    raise ValueError("unknown record type %s" % rtype)
                yield owner, rtype, data


def zone_lines(zonedata):
    """The rr lines of one section's zone (tests/spf_test.c)."""
    for owner, rtype, data in zone_records(zonedata):
        if rtype == "TIMEOUT":
            yield "rr %s TIMEOUT" % esc(owner)
        else:
            yield "rr %s %s %s" % (esc(owner), rtype, esc(data))


def load_suite():
    """[(case name, [lines])] in the suite's order."""
    cases = []
    with open(SUITE, encoding="utf-8") as f:
        for section in yaml.safe_load_all(f):
            zone = list(zone_lines(section.get("zonedata")))
            for cname, t in section["tests"].items():
                want = t["result"]
                if not isinstance(want, list):
                    want = [want]
                lines = ["case %s" % esc(cname),
                         "host %s" % t["host"],
                         "helo %s" % esc(t.get("helo") or ""),
                         "mailfrom %s" % esc(t.get("mailfrom") or ""),
                         "want %s" % ",".join(want)]
                cases.append((cname, lines + zone + ["end"]))
    return cases


def regress_names():
    names = []
    for path in REGRESS:
        for line in path.read_text().splitlines():
            if line.startswith("case "):
                names.append(line[5:])
    return names


SUITE_LIST = load_suite()
SUITE_NAMES = [n for n, _ in SUITE_LIST]
REGRESS_NAMES = regress_names()


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Run the driver once on everything: {case: output line}."""
    assert DRIVER.exists(), "build the driver first: make tests/spf_test"
    path = tmp_path_factory.mktemp("spf") / "rfc7208.txt"
    with open(path, "w") as f:
        f.write("# written by tests/test_spf_suite.py from %s\n" % SUITE)
        for _, lines in SUITE_LIST:
            f.write("\n".join(lines) + "\n")
    r = subprocess.run([str(DRIVER), str(path)] + [str(p) for p in REGRESS],
                       capture_output=True, text=True, timeout=120)
    assert r.stdout.rstrip().endswith(" failed"), r.stdout + r.stderr
    got = {}
    for line in r.stdout.splitlines():
        if line.startswith("ok "):
            got[line[3:]] = line
        elif line.startswith("FAIL "):
            # FAIL tests/spf_test.c:LINE: NAME got X want Y
            got[line.split(": ", 1)[1].split(" got ")[0]] = line
    return got


def test_suite_has_every_case():
    assert len(SUITE_NAMES) == SUITE_CASES
    assert len(set(SUITE_NAMES)) == SUITE_CASES


@pytest.mark.parametrize("case", [
    pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=KNOWN[n]))
    if n in KNOWN else n for n in SUITE_NAMES])
def test_rfc7208_suite_case(outcomes, case):
    assert case in outcomes, "the driver did not run %s" % case
    assert outcomes[case] == "ok " + case, outcomes[case]


@pytest.mark.parametrize("case", REGRESS_NAMES)
def test_spf_regression_case(outcomes, case):
    assert case in outcomes, "the driver did not run %s" % case
    assert outcomes[case] == "ok " + case, outcomes[case]
