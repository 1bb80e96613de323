"""Session limits across processes, and the preforked pool."""

import concurrent.futures
import os
import pathlib
import signal
import socket
import subprocess
import time

import pytest

from conftest import (HELO, SMTPClient, assert_reply, free_port,
                      make_message, port_accepts, read_spool, wait_for, REPO,
                      greeted_with_retry)


def connect_expect_421(srv, enhanced):
    """A connection over a limit: 421 <enhanced> within 1 s, then close."""
    with srv.connect(timeout=2) as c:
        t0 = time.monotonic()
        r = c.reply(timeout=1.0)
        elapsed = time.monotonic() - t0
        assert_reply(r, "421 " + enhanced)
        assert elapsed < 1.0, elapsed
        c.expect_closed(timeout=2)


def greeted(srv, within=2.0):
    """A new session greeted 220 (conftest.greeted_with_retry)."""
    return greeted_with_retry(lambda: srv.connect(timeout=2), within)


def close_session(c):
    assert_reply(c.cmd("QUIT"), "221 2.0.0")
    c.expect_closed()
    c.close()


def test_connection_over_max_sessions_gets_421_4_3_2(smtpd):
    srv = smtpd("-c", "2")
    a = srv.session()
    b = srv.session()
    try:
        connect_expect_421(srv, "4.3.2")
    finally:
        a.close()
        b.close()


def test_max_sessions_slot_frees_after_session_closes(smtpd):
    srv = smtpd("-c", "2")
    a = srv.session()
    b = srv.session()
    try:
        connect_expect_421(srv, "4.3.2")
        close_session(a)
        c = greeted(srv)
        close_session(c)
    finally:
        a.close()
        b.close()


def test_connection_over_max_per_ip_gets_421_4_7_0(smtpd):
    srv = smtpd("-p", "2")
    a = srv.session()
    b = srv.session()
    try:
        connect_expect_421(srv, "4.7.0")
    finally:
        a.close()
        b.close()


def test_max_per_ip_slot_frees_after_session_closes(smtpd):
    srv = smtpd("-p", "2")
    a = srv.session()
    b = srv.session()
    try:
        connect_expect_421(srv, "4.7.0")
        close_session(a)
        c = greeted(srv)
        close_session(c)
    finally:
        a.close()
        b.close()


def test_sessions_under_the_limit_all_get_220(smtpd):
    srv = smtpd("-c", "4", "-p", "4")
    sessions = []
    try:
        for _ in range(4):
            sessions.append(srv.session())
        for s in sessions:
            assert_reply(s.cmd("NOOP"), "250 2.0.0")
    finally:
        for s in sessions:
            s.close()


def test_pool_serves_20_sequential_sessions(smtpd):
    srv = smtpd("--spare", "3")
    for i in range(20):
        with srv.connect() as c:
            r = c.reply(timeout=5)
            assert r.code == 220, "session %d: %r" % (i, r)
            close_session(c)


def deliver_one(srv, i):
    token = "FIRM-TOKEN:CONC-%04d-TEST" % i
    with srv.session(timeout=10) as c:
        r = c.deliver(make_message(body="concurrent " + token + "\r\n",
                                   msgid="<c%d@example.net>" % i))
        assert_reply(c.cmd("QUIT"), "221 2.0.0")
    return r, token


def test_pool_serves_8_concurrent_deliveries(smtpd):
    srv = smtpd("--spare", "3", "-p", "20")
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as ex:
        futures = [ex.submit(deliver_one, srv, i) for i in range(8)]
        results = [f.result(timeout=30) for f in futures]
    for r, token in results:
        assert_reply(r, "250 2.0.0")
    tokens = sorted(e["token"] for e in read_spool(srv.spool))
    assert tokens == sorted(t for _, t in results)


def test_concurrent_sessions_are_open_at_the_same_time(smtpd):
    # 8 sessions held open together, more than --spare: all greeted
    srv = smtpd("--spare", "3", "-p", "20")
    sessions = []
    try:
        for _ in range(8):
            sessions.append(srv.session(timeout=5))
        for s in sessions:
            s.ehlo()
    finally:
        for s in sessions:
            s.close()


# ------------------------------------------------------------ IPv6, listeners

def test_ipv6_listener_serves_and_records_client_ip(smtpd):
    port6 = free_port("::1")
    srv = smtpd("-l", "[::1]:%d" % port6)
    assert wait_for(lambda: port_accepts(port6, "::1"), 5.0)
    with SMTPClient(port6, host="::1") as c:
        c.greeting()
        assert_reply(c.deliver(make_message()), "250 2.0.0")
    [e] = srv.read_spool()
    assert e["client_ip"] == "::1"


def test_max_sessions_counts_all_listeners_together(smtpd):
    port6 = free_port("::1")
    srv = smtpd("-c", "2", "-l", "[::1]:%d" % port6)
    assert wait_for(lambda: port_accepts(port6, "::1"), 5.0)
    a = srv.session()
    b = SMTPClient(port6, host="::1")
    try:
        b.greeting()
        connect_expect_421(srv, "4.3.2")
    finally:
        a.close()
        b.close()


def test_max_per_ip_counts_each_address_separately(smtpd):
    port6 = free_port("::1")
    srv = smtpd("-p", "1", "-l", "[::1]:%d" % port6)
    assert wait_for(lambda: port_accepts(port6, "::1"), 5.0)
    a = srv.session()
    b = SMTPClient(port6, host="::1")
    try:
        b.greeting()              # another address: its own allowance
        connect_expect_421(srv, "4.7.0")
    finally:
        a.close()
        b.close()


# ------------------------------------------------------------ crash isolation

def _proc_stat(pid):
    with open("/proc/%s/stat" % pid) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return {"ppid": int(rest[1]), "pgrp": int(rest[2])}


def worker_pid_of(srv, client):
    """Linux: the pid of the process in the server's process group that
    holds the server end of client's TCP connection."""
    cport = client.sock.getsockname()[1]
    inode = None
    with open("/proc/net/tcp") as f:
        for row in f.read().splitlines()[1:]:
            fields = row.split()
            lport = int(fields[1].rsplit(":", 1)[1], 16)
            rport = int(fields[2].rsplit(":", 1)[1], 16)
            if lport == srv.port and rport == cport and fields[9] != "0":
                inode = fields[9]
    assert inode, "server side of the connection not found"
    target = "socket:[%s]" % inode
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == srv.proc.pid:
            continue
        try:
            if _proc_stat(pid)["pgrp"] != srv.proc.pid:
                continue
            fds = os.listdir("/proc/%s/fd" % pid)
            for fd in fds[:4096]:
                if os.readlink("/proc/%s/fd/%s" % (pid, fd)) == target:
                    return int(pid)
        except OSError:
            continue
    raise AssertionError("no worker process holds %s" % target)


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="needs /proc")
@pytest.mark.worker_deaths
def test_killed_worker_ends_only_its_own_session(smtpd):
    srv = smtpd("-p", "2")
    a = srv.session()
    b = srv.session()
    try:
        a.ehlo()
        b.ehlo()
        pid = worker_pid_of(srv, a)
        os.kill(pid, signal.SIGKILL)
        a.read_until_close(timeout=3)
        assert srv.proc.poll() is None, "master died with its worker"
        assert_reply(b.deliver(make_message(), helo=None), "250 2.0.0")
        # the crashed session's per-IP slot is released
        c = greeted(srv)
        close_session(c)
        close_session(b)
    finally:
        a.close()
        b.close()
    assert len(srv.spool_files()) == 1


# ------------------------------------------------------------ session deadline

def trickle(c, data, every, until):
    """Send data every `every` s until the server closes or `until` s
    pass; returns all the server said."""
    got = b""
    deadline = time.monotonic() + until
    for _ in range(int(until / every) + 2):
        if time.monotonic() >= deadline:
            break
        try:
            c.send(data)
        except OSError:
            break
        time.sleep(every)
        c.sock.settimeout(0.05)
        try:
            chunk = c.sock.recv(65536)
            if not chunk:
                break
            got += chunk
        except socket.timeout:
            pass
        except OSError:
            break
    return got


def test_session_timeout_ends_a_session_that_trickles_commands(smtpd):
    # -t alone would never end it: a NOOP comes every second
    srv = smtpd("-t", "10", "--session-timeout", "4")
    t0 = time.monotonic()
    with srv.session() as c:
        got = trickle(c, b"NOOP\r\n", 1.0, 15)
    took = time.monotonic() - t0
    assert got.rstrip().endswith(b"421 4.4.2 Timeout, closing"), got[-200:]
    assert 3.5 <= took < 8, took
    assert any(e.get("reason") == "session-timeout" for e in srv.logs()
               if e.get("event") == "disconnect")


def test_data_that_trickles_under_the_minimum_rate_is_cut(smtpd):
    # --session-timeout 8: the rate counts after 4 s (half of it)
    srv = smtpd("-t", "10", "--session-timeout", "8")
    t0 = time.monotonic()
    with srv.session() as c:
        c.envelope()            # up to the 354 of DATA
        got = trickle(c, b"x", 1.0, 15)
    took = time.monotonic() - t0
    assert got.rstrip().endswith(b"421 4.4.2 Timeout, closing"), got[-200:]
    assert 3.5 <= took < 7.5, took
    assert any(e.get("reason") == "data-too-slow" for e in srv.logs()
               if e.get("event") == "disconnect")
    assert srv.spool_files() == []


def test_data_at_a_fair_rate_outlasts_the_grace(smtpd):
    # 4 s of grace, then 500 B/s average: 1 kB every 0.5 s keeps going
    srv = smtpd("-t", "10", "--session-timeout", "8")
    msg = make_message()
    with srv.session() as c:
        c.envelope()            # up to the 354 of DATA
        t0 = time.monotonic()
        for _ in range(12):
            c.send(b"X-Pad: " + b"p" * 900 + b"\r\n")
            time.sleep(0.5)
        c.send(msg + b"\r\n.\r\n")
        assert_reply(c.reply(timeout=5), "250 2.0.0")
        assert time.monotonic() - t0 > 5


# ------------------------------------------------------------ spool space

@pytest.fixture
def small_spool(tmp_path):
    """A 4 MiB tmpfs for the spool's parent (the tests run as root)."""
    d = tmp_path / "small"
    d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755",
                    "tmpfs", str(d)], check=True, timeout=10)
    yield d
    subprocess.run(["umount", "-l", str(d)], timeout=10)


def test_spool_below_its_reserve_gets_452_4_3_1_at_mail(smtpd, small_spool):
    spool = small_spool / "spool"
    srv = smtpd("--spool-reserve", "2000000")
    srv.stop()
    # the same server on the small file system
    args = [a if a != str(srv.spool) else str(spool) for a in srv.args]
    srv2 = smtpd_on(srv, args)
    try:
        with srv2.session() as c:
            assert_reply(c.deliver(make_message()), "250 2.0.0")
            # fill it past the reserve: 4 MiB less 2.5 MB leaves under
            # 2 MB.  A later MAIL of the same session is asked of the
            # relay, the first of a session answered from the master's
            # word at the claim: both must see it.
            with open(small_spool / "filler", "wb") as f:
                f.write(b"\0" * 2500000)
            assert_reply(c.cmd("RSET"), "250")
            assert_reply(c.cmd("MAIL FROM:<sender@example.net>"),
                         "452 4.3.1")
            c.quit()
        with srv2.session() as c:
            c.ehlo()
            assert_reply(c.cmd("MAIL FROM:<sender@example.net>"),
                         "452 4.3.1")
            c.quit()
        assert len(srv2.spool_files()) == 1
        assert any(e.get("reason") == "spool-full" for e in srv2.logs()
                   if e.get("event") == "reject")
        # room again: served again
        os.unlink(small_spool / "filler")
        with srv2.session() as c:
            assert_reply(c.deliver(make_message()), "250 2.0.0")
            c.quit()
    finally:
        srv2.stop()


@pytest.mark.parametrize("fail,reply", [
    ("none", "250 2.0.0"), ("file", "451 4.3.0"), ("dir", "451 4.3.0")])
def test_a_failed_fsync_of_the_file_or_its_directory_is_never_250(
        smtpd, monkeypatch, fail, reply):
    """The spool file is written, fsynced, renamed into place and its
    directory fsynced; if either fsync fails, the message may not be on
    disk: the sender hears 451 and tries again, and nothing is left in
    the spool.  (tests/fakes/fsync_fail.so fails the workers' fsync.)"""
    shim = REPO / "tests" / "fakes" / "fsync_fail.so"
    assert shim.exists(), "make tests/fakes/fsync_fail.so"
    monkeypatch.setenv("LD_PRELOAD", str(shim))
    monkeypatch.setenv("SMTPD_TEST_FSYNC_FAIL", fail)
    # the sanitizer build wants its runtime first, the shim comes first
    monkeypatch.setenv("ASAN_OPTIONS", os.environ.get("ASAN_OPTIONS", "") +
                       ":verify_asan_link_order=0")
    srv = smtpd()
    with srv.session() as c:
        assert_reply(c.deliver(make_message()), reply)
        c.quit()
    assert len(srv.spool_files()) == (1 if fail == "none" else 0)
    if fail != "none":
        assert "Input/output error" in srv.log_text(), srv.log_text()[-2000:]


@pytest.mark.parametrize("how", ["kernel", "eopnotsupp", "enoent"])
def test_spool_files_are_written_where_no_unnamed_file_can_be(
        smtpd, monkeypatch, how):
    """The relay makes each spool file unnamed (O_TMPFILE) and links it
    in, so that finding an inode is done outside the directory's lock;
    where the file system cannot (eopnotsupp) or the kernel lets only
    root link a descriptor (enoent: before Linux 6.10), it names its
    files from the start, after one refusal, and loses nothing.
    (tests/fakes/fsync_fail.so refuses on demand.)"""
    shim = REPO / "tests" / "fakes" / "fsync_fail.so"
    assert shim.exists(), "make tests/fakes/fsync_fail.so"
    monkeypatch.setenv("LD_PRELOAD", str(shim))
    if how != "kernel":
        monkeypatch.setenv("SMTPD_TEST_TMPFILE", how)
    monkeypatch.setenv("ASAN_OPTIONS", os.environ.get("ASAN_OPTIONS", "") +
                       ":verify_asan_link_order=0")
    srv = smtpd()
    with srv.session() as c:
        for i in range(3):
            m = make_message(msgid="<unnamed-%d@example.net>" % i)
            assert_reply(c.deliver(m, helo=None if i else HELO),
                         "250 2.0.0")
        c.quit()
    names = sorted(p.name for p in srv.spool.iterdir())
    assert len(names) == 3 and all(n.endswith(".json") and
                                   not n.startswith(".") for n in names), names
    refusals = srv.log_text().count("tmpfile shim: refused")
    if how == "kernel":
        assert refusals == 0
    else:
        assert refusals == 1, srv.log_text()[-2000:]


def smtpd_on(srv, args):
    from conftest import SmtpdServer
    port = free_port()
    args = [a.replace(":%d" % srv.port, ":%d" % port) for a in args]
    spool = pathlib.Path(args[args.index("--spool") + 1])
    s = SmtpdServer(srv.workdir, args, port, spool, None)
    return s.start()


def test_default_reserve_is_eight_times_max_size(smtpd, small_spool):
    # -s 1000000: a reserve of 8 MB, more than the 4 MiB file system has
    srv = smtpd()
    srv.stop()
    args = [a if a != str(srv.spool) else str(small_spool / "spool")
            for a in srv.args] + ["-s", "1000000"]
    srv2 = smtpd_on(srv, args)
    try:
        with srv2.session() as c:
            c.ehlo()
            assert_reply(c.cmd("MAIL FROM:<sender@example.net>"),
                         "452 4.3.1")
            c.quit()
    finally:
        srv2.stop()
