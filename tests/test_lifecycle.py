"""Command line, inetd mode and SIGTERM."""

import os
import re
import signal
import socket
import subprocess
import time

import pytest

from conftest import (assert_no_sanitizer_report, resolver_args, after_auth_results, HOSTNAME, LOOPBACK, RCPT, REPO, SMTPD, SMTPClient,
                      assert_reply, free_port, make_message, raw_message,
                      read_spool, run_smtpd, wait_for)


# ------------------------------------------------------------ flags

def base_flags(spool_dir, port=None):
    return ["-l", "%s:%d" % (LOOPBACK, port or free_port()),
            "-H", HOSTNAME, "-r", RCPT, "--spool", str(spool_dir)]


def test_config_test_with_good_flags_exits_0(spool_dir):
    status, out, err = run_smtpd(["-n"] + base_flags(spool_dir))
    assert status == 0, err
    assert "configuration OK" in out


def assert_bad_flag(args, pattern, one_line=True):
    # -d keeps a server that wrongly starts in the foreground, where
    # run_smtpd's bounded wait kills it.
    status, out, err = run_smtpd(["-d"] + args)
    if "--spool" in args:
        spool = args[args.index("--spool") + 1]
        assert not os.path.exists(spool), "refused flags created the spool"
    assert status == 1, (status, err)
    assert re.search(pattern, err), err
    if one_line:
        lines = [x for x in err.splitlines() if x.strip()]
        assert len(lines) == 1, err


def test_missing_recipient_exits_1_naming_the_flag(spool_dir):
    assert_bad_flag(["-l", "%s:%d" % (LOOPBACK, free_port()),
                     "--spool", str(spool_dir)],
                    r"--recipient|(?<![\w-])-r\b")


def test_missing_spool_and_api_exits_1_naming_the_flags():
    assert_bad_flag(["-l", "%s:%d" % (LOOPBACK, free_port()), "-r", RCPT],
                    r"--spool|--api")


def test_max_size_not_a_number_exits_1_naming_the_flag(spool_dir):
    assert_bad_flag(base_flags(spool_dir) + ["--max-size", "abc"],
                    r"--max-size")


def test_drain_not_a_number_exits_1_naming_the_flag(spool_dir):
    assert_bad_flag(base_flags(spool_dir) + ["--drain", "soon"],
                    r"--drain")


def test_listen_bogus_exits_1_naming_the_flag(spool_dir):
    args = ["-H", HOSTNAME, "-r", RCPT, "--spool", str(spool_dir),
            "--listen", "bogus"]
    assert_bad_flag(args, r"--listen")


def test_unknown_option_exits_1_naming_it(spool_dir):
    assert_bad_flag(base_flags(spool_dir) + ["--no-such-flag"],
                    r"no-such-flag", one_line=False)


def test_version_exits_0():
    status, out, err = run_smtpd(["-V"])
    assert status == 0, err
    assert re.match(r"smtpd \d", out), out


def test_help_exits_0_and_prints_usage():
    status, out, err = run_smtpd(["-h"])
    assert status == 0, err
    assert "usage" in (out + err).lower(), out + err


# ------------------------------------------------------------ inetd mode

def run_inetd(tmp_path, spool, server_sock):
    err = open(tmp_path / "inetd.err", "wb")
    proc = subprocess.Popen(
        [str(SMTPD), "-i", "-H", HOSTNAME, "-r", RCPT, "--spool", str(spool)]
        + resolver_args(()),
        cwd=str(REPO), stdin=server_sock.fileno(), stdout=server_sock.fileno(),
        stderr=err, start_new_session=True)
    err.close()
    server_sock.close()
    return proc, spool


def finish_inetd(proc, tmp_path):
    try:
        status = proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
        pytest.fail("smtpd -i did not exit after QUIT")
    errtext = (tmp_path / "inetd.err").read_text(errors="replace")
    assert_no_sanitizer_report(errtext, "smtpd -i")
    return status, errtext


def inetd_delivery(c):
    r = c.reply(timeout=5)
    assert re.match(r"^220 test\.example ESMTP", r.lines[0]), r
    assert_reply(c.deliver(make_message()), "250 2.0.0")
    assert_reply(c.cmd("QUIT"), "221 2.0.0")
    c.expect_closed()


def test_inetd_mode_on_a_socketpair_delivers_and_exits_0(tmp_path, spool_dir):
    if not SMTPD.exists():
        pytest.fail("smtpd binary not found")
    ours, theirs = socket.socketpair()
    proc, spool = run_inetd(tmp_path, spool_dir, theirs)
    with SMTPClient(sock=ours, timeout=5) as c:
        inetd_delivery(c)
    status, errtext = finish_inetd(proc, tmp_path)
    assert status == 0, errtext
    [e] = read_spool(spool)
    assert e["recipients"] == [RCPT]


def test_inetd_mode_on_a_tcp_socket_records_the_client_ip(tmp_path,
                                                          spool_dir):
    if not SMTPD.exists():
        pytest.fail("smtpd binary not found")
    with socket.socket() as lsock:
        lsock.bind((LOOPBACK, 0))
        lsock.listen(1)
        lsock.settimeout(5)
        ours = socket.create_connection(lsock.getsockname(), timeout=5)
        theirs, _ = lsock.accept()
    proc, spool = run_inetd(tmp_path, spool_dir, theirs)
    with SMTPClient(sock=ours, timeout=5) as c:
        inetd_delivery(c)
    status, errtext = finish_inetd(proc, tmp_path)
    assert status == 0, errtext
    [e] = read_spool(spool)
    assert e["client_ip"] == "127.0.0.1"
    assert after_auth_results(raw_message(e)).startswith(b"Received:")


# ------------------------------------------------------------ SIGTERM

def test_sigterm_answers_idle_session_421_4_3_2_and_exits_0(smtpd):
    srv = smtpd("--grace", "5")
    with srv.session() as c:
        c.ehlo()
        srv.signal(signal.SIGTERM)
        r = c.reply(timeout=5)
        assert_reply(r, "421 4.3.2")
        c.expect_closed()
    assert srv.wait(5) == 0, srv.stderr()


def test_sigterm_answers_session_before_ehlo_421_4_3_2(smtpd):
    srv = smtpd("--grace", "5")
    with srv.session() as c:
        srv.signal(signal.SIGTERM)
        assert_reply(c.reply(timeout=5), "421 4.3.2")
        c.expect_closed()
    assert srv.wait(5) == 0, srv.stderr()


def test_sigterm_lets_session_in_data_finish_and_spool(smtpd):
    grace = 5
    srv = smtpd("--grace", str(grace))
    msg = make_message(body="first part\r\n" + "line\r\n" * 20 +
                       "second part FIRM-TOKEN:TERM-INAT-EDOK\r\n")
    cut = msg.index(b"second part")
    with srv.session() as c:
        c.envelope()
        c.send(msg[:cut])
        time.sleep(0.3)
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        time.sleep(0.5)
        r = c.send_data(msg[cut:], timeout=5)
        assert_reply(r, "250 2.0.0")
        # afterwards the session ends: either 421 4.3.2 at once, or our
        # QUIT is still answered 221
        try:
            c.send(b"QUIT\r\n")
        except OSError:
            pass
        rest = c.read_until_close(timeout=5)
        assert re.match(rb"^(421 4\.3\.2|221 2\.0\.0)[ \r]", rest), rest
    [e] = srv.read_spool()
    assert e["token"] == "FIRM-TOKEN:TERM-INAT-EDOK"
    assert b"first part\r\n" in raw_message(e)
    status = srv.wait(max(grace + 2 - (time.monotonic() - t0), 0.1))
    assert status == 0, (status, srv.stderr())


def test_sigterm_during_a_firm_call_passes_its_250_on(smtpd, firm):
    srv = smtpd("--grace", "10", api=firm.url)
    firm.answer(200, delay=2.0)
    with srv.session(timeout=10) as c:
        c.envelope()
        c.send(make_message() + b".\r\n")
        assert len(firm.wait_inbound(1, timeout=5)) == 1
        srv.signal(signal.SIGTERM)
        assert_reply(c.reply(timeout=10), "250 2.0.0")
    assert srv.wait(15) == 0, srv.stderr()
    assert len(firm.inbound()) == 1


def test_sigterm_with_no_sessions_exits_0_promptly(smtpd):
    srv = smtpd()
    srv.signal(signal.SIGTERM)
    assert srv.wait(3) == 0, srv.stderr()



def test_sigint_stops_like_sigterm(smtpd):
    srv = smtpd("--grace", "5")
    with srv.session() as c:
        srv.signal(signal.SIGINT)
        assert_reply(c.reply(timeout=5), "421 4.3.2")
        c.expect_closed()
    assert srv.wait(5) == 0, srv.stderr()


def test_sigterm_during_greet_delay_gets_421_4_3_2(smtpd):
    srv = smtpd("--greet-delay", "5000")
    with srv.connect() as c:
        assert wait_for(lambda: any(e.get("event") == "connect"
                                    for e in srv.logs(strict=False)), 3)
        srv.signal(signal.SIGTERM)
        assert_reply(c.reply(timeout=3), "421 4.3.2")
    assert srv.wait(10) == 0
