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


# ---------------------------------------------------------------- --online

def dead_udp_port():
    """A loopback UDP port nobody answers on."""
    import socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def online_args(tmp_path, api, resolver, cert, key, secret=True):
    cache = tmp_path / "cache"
    cache.mkdir()
    os.chmod(cache, 0o777)
    os.chmod(tmp_path, 0o755)
    args = ["-n", "--online", "-u", "nobody", "-H", "test.example",
            "-r", RCPT, "-a", api, "--resolver", resolver,
            "--banlist-cache", str(cache / "banlist.json"),
            "--tls-cert", cert, "--tls-key", key]
    if secret:
        path = tmp_path / "api-secret"
        path.write_bytes(b"0123456789abcdef0123456789abcdef\n")
        os.chmod(path, 0o600)
        args += ["--api-secret", path]
    return args


@pytest.fixture
def banapi():
    from fake_banlist import FakeBanlistAPI
    fake = FakeBanlistAPI().start()
    yield fake
    fake.stop()


def test_online_names_each_failure_on_its_own_line(tmp_path, banapi):
    from fake_banlist import SUBNETS, Answer
    banapi.set_answer(SUBNETS, Answer(status=401, body=b'{"error":"key"}'))
    dead = "127.0.0.1:%d" % dead_udp_port()
    cert, key = make_pair(tmp_path / "tls", cn="mx.elsewhere.example")
    status, out, err = run_smtpd(online_args(tmp_path, banapi.url, dead,
                                             cert, key), timeout=10)
    assert status == 1, (out, err)
    assert "configuration OK" not in out
    lines = err.strip().splitlines()
    assert any("401" in x and SUBNETS in x for x in lines), err
    assert any(dead.replace(":", "@") in x for x in lines), err
    assert any("test.example" in x and str(cert) in x and "name" in x
               for x in lines), err
    assert len(lines) == 3, err
    [req] = banapi.requests(SUBNETS)
    assert req.method == "GET"
    assert any(k.lower() == "x-firm-signature" for k, _ in req.headers), req


def test_online_passes_when_firm_resolvers_and_names_are_good(tmp_path,
                                                              banapi):
    from conftest import default_dns
    from fake_banlist import SUBNETS
    cert, key = make_pair(tmp_path / "tls")
    status, out, err = run_smtpd(online_args(tmp_path, banapi.url,
                                             default_dns().address,
                                             cert, key), timeout=10)
    assert status == 0, err
    assert "configuration OK" in out
    assert len(banapi.requests(SUBNETS)) == 1


def test_online_needs_config_test(spool_dir):
    status, out, err = run_smtpd(["--online", "-r", RCPT, "--spool",
                                  spool_dir])
    assert status == 1
    assert "online" in err and "-n" in err, err
    assert len(err.strip().splitlines()) == 1, err


def test_online_verifies_firms_certificate_with_ca_file(tmp_path, banapi):
    """https: the call is verified against --ca-file; a bundle without
    the API's issuer fails, naming FIRM."""
    import ssl
    from conftest import default_dns
    api_cert, api_key = make_pair(tmp_path / "api", cn="localhost")
    other_ca, _ = make_pair(tmp_path / "other", cn="localhost")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(api_cert), str(api_key))
    banapi._server.socket = ctx.wrap_socket(banapi._server.socket,
                                            server_side=True)
    url = "https://localhost:%d" % banapi.port
    cert, key = make_pair(tmp_path / "tls")
    args = online_args(tmp_path, url, default_dns().address, cert, key)
    status, out, err = run_smtpd(args + ["--ca-file", other_ca],
                                 timeout=15)
    assert status == 1, (out, err)
    [line] = err.strip().splitlines()
    assert "FIRM" in line and url in line, err
    assert "certificate" in line.lower(), err
    status, out, err = run_smtpd(args + ["--ca-file", api_cert],
                                 timeout=15)
    assert status == 0, err
    assert "configuration OK" in out
