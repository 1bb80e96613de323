"""Flags that are refused, and flags that work but are warned of at
start (SPEC section 2; smtpd.8, OPTIONS)."""
import os

import pytest

from conftest import RCPT, children, run_smtpd
from test_tls import make_pair


def test_inetd_with_listen_is_refused_naming_both_flags(spool_dir):
    status, out, err = run_smtpd(["-n", "-i", "-l", "127.0.0.1:2525",
                                  "-r", RCPT, "--spool", spool_dir])
    assert status == 1, (out, err)
    assert "--listen" in err and "--inetd" in err, err


def test_duplicate_listen_is_refused_naming_the_flag_and_address(spool_dir):
    status, out, err = run_smtpd(["-n", "-l", "127.0.0.1:2525", "-l",
                                  "127.0.0.1:2525", "-r", RCPT,
                                  "--spool", spool_dir])
    assert status == 1, (out, err)
    assert "--listen" in err and "127.0.0.1:2525" in err, err
    assert "in use" not in err, err


def test_listen_and_smtps_on_one_address_is_refused(spool_dir, tmp_path):
    cert, key = make_pair(tmp_path / "tls")
    status, out, err = run_smtpd(["-n", "-l", "127.0.0.1:2525", "--smtps",
                                  "127.0.0.1:2525", "--tls-cert", cert,
                                  "--tls-key", key, "-r", RCPT,
                                  "--spool", spool_dir])
    assert status == 1, (out, err)
    assert "--smtps" in err and "127.0.0.1:2525" in err, err


@pytest.mark.parametrize("tail", ["?key=1", "#inbound", "/api?x"])
def test_api_url_with_a_query_or_fragment_is_refused(tail):
    url = "http://127.0.0.1:1" + tail
    status, out, err = run_smtpd(["-n", "-l", "127.0.0.1:2525", "-r", RCPT,
                                  "-a", url])
    assert status == 1, (out, err)
    assert "--api" in err and url in err, err


def risks(srv):
    srv.stop()
    return {(e["flag"], e["value"]) for e in srv.logs()
            if e.get("event") == "flag_risk" and e.get("level") == "warning"}


def test_start_warns_of_a_proxy_from_any_address(smtpd):
    srv = smtpd("--proxy-from", "0.0.0.0/0", "--proxy-from", "::/0",
                "--proxy-from", "10.0.0.0/8")
    assert risks(srv) == {("--proxy-from", "0.0.0.0/0"),
                          ("--proxy-from", "::/0")}


def test_start_warns_of_a_world_readable_tls_key_and_api_secret(
        smtpd, firm, tmp_path):
    cert, key = make_pair(tmp_path / "tls")
    secret = tmp_path / "api-secret"
    secret.write_bytes(b"0123456789abcdef0123456789abcdef\n")
    os.chmod(key, 0o644)
    os.chmod(secret, 0o644)
    srv = smtpd("--tls-cert", cert, "--tls-key", key, "--api-secret",
                secret, api=firm.url)
    assert risks(srv) == {("--tls-key", str(key)),
                          ("--api-secret", str(secret))}


def test_no_warning_for_private_files_and_a_narrow_proxy_from(
        smtpd, firm, tmp_path):
    cert, key = make_pair(tmp_path / "tls")
    secret = tmp_path / "api-secret"
    secret.write_bytes(b"0123456789abcdef0123456789abcdef\n")
    os.chmod(secret, 0o600)
    srv = smtpd("--tls-cert", cert, "--tls-key", key, "--api-secret",
                secret, "--proxy-from", "127.0.0.1/32", api=firm.url)
    assert risks(srv) == set()


def cpus_allowed(pid):
    """The CPUs a process may run on, as /proc says."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Cpus_allowed_list:"):
                return line.split(":", 1)[1].strip()
    raise AssertionError("no Cpus_allowed_list for %d" % pid)


def worker_cpus(srv):
    """The CPU lists of the master and of each of its children."""
    kids = children(srv.proc.pid)
    assert kids, "no children"
    return cpus_allowed(srv.proc.pid), {cpus_allowed(k) for k in kids}


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2,
                    reason="one CPU: pinned and not pinned look the same")
def test_nothing_is_pinned_to_one_cpu_by_default(smtpd):
    # SPEC 2: the server uses every CPU it is given, pins nothing
    # unless told to
    mine = os.sched_getaffinity(0)
    srv = smtpd()
    master, kids = worker_cpus(srv)
    want = cpu_list(mine)
    assert master == want and kids == {want}, (master, kids, want)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2,
                    reason="one CPU: pinned and not pinned look the same")
def test_pin_cpu_keeps_the_master_and_its_children_on_one_cpu(smtpd):
    srv = smtpd("--pin-cpu")
    master, kids = worker_cpus(srv)
    assert "," not in master and "-" not in master, master
    assert kids == {master}, (master, kids)


def cpu_list(cpus):
    """A set of CPUs as the kernel writes a list: 0-1,3."""
    out, run = [], []
    for c in sorted(cpus):
        if run and c == run[-1] + 1:
            run.append(c)
            continue
        if run:
            out.append(run)
        run = [c]
    out.append(run)
    return ",".join("%d" % r[0] if len(r) == 1 else "%d-%d" % (r[0], r[-1])
                    for r in out)
