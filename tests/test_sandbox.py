"""The sandbox of the workers and of the ban-list fetcher (SPEC section 1,
STYLE "Privileges"): seccomp-bpf, Landlock, no_new_privs, user nobody.

Most scenarios run the test build ./smtpd-test (make smtpd-test), whose
workers obey "XTEST <HOOK>" after the greeting: the sandboxed worker
tries one forbidden thing and replies with what happened, if it still
lives to reply.  A hook that seccomp forbids kills the worker (SIGSYS);
one that Landlock or an errno rule refuses gets a 451 with the error.
Every death must be the one worker's: the master logs worker_died with
that worker's pid and signal, keeps serving and forks a replacement.

The release build ./smtpd is used where no hook is needed: /proc status
of live workers and of the fetcher, signals from outside, iconv modules
and a host name API URL.

Worker pids are found through /proc (the socket inode of the accepted
connection in /proc/net/tcp, then the child holding it), which needs
root: the workers are not dumpable.  Only loopback is used.
"""

import base64
import os
import pwd
import signal
import socket
import time

import pytest

from conftest import (SANITIZER, assert_no_sanitizer_report, HOSTNAME, LOOPBACK, RCPT, SMTPD_TEST, TOKEN,
                      assert_reply, children, free_port, make_message,
                      run_smtpd, wait_for)

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: workers drop to nobody and "
    "their /proc entries are readable only by root")

LOCALERR = "451 4.3.0 Local error, try again later "
SIGSYS = int(signal.SIGSYS)
SIGSEGV = int(signal.SIGSEGV)
EVENT_WAIT = 5.0        # a death must be logged within this
REPLACE_WAIT = 5.0      # the pool must be refilled within this


# ---------------------------------------------------------------- /proc

def proc_status(pid):
    """The fields of /proc/PID/status as a dict of strings."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def tcp_inodes(local_port, state, remote_port=None):
    """Socket inodes from /proc/net/tcp{,6} with that local port, state
    ("0A" listening, "01" established) and, if given, remote port."""
    found = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) < 10 or fields[3] != state:
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) != local_port:
                continue
            if remote_port is not None and \
                    int(fields[2].rsplit(":", 1)[1], 16) != remote_port:
                continue
            found.add(fields[9])
    found.discard("0")
    return found


def socket_inodes(pid):
    """The inodes of the sockets process pid holds open."""
    inodes = set()
    try:
        names = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return inodes
    for name in names:
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, name))
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    return inodes


def worker_of(srv, client):
    """The pid of the worker serving this client connection."""
    cport = client.sock.getsockname()[1]

    def find():
        inodes = tcp_inodes(srv.port, "01", cport)
        if not inodes:
            return None
        for pid in children(srv.proc.pid):
            if socket_inodes(pid) & inodes:
                return pid
        return None
    pid = wait_for(find, 3.0)
    assert pid, "no child of %d serves port %d" % (srv.proc.pid, cport)
    return pid


def split_children(srv):
    """(workers, others): the master's children holding the listening
    socket, and the rest (the relay, the verifier, the fetcher)."""
    listening = tcp_inodes(srv.port, "0A")
    assert listening, "port %d is not listening" % srv.port
    workers, others = set(), set()
    for pid in children(srv.proc.pid):
        (workers if socket_inodes(pid) & listening else others).add(pid)
    return workers, others


def sandboxed(pid):
    """None when pid runs under the full sandbox, else what differs."""
    nobody = pwd.getpwnam("nobody").pw_uid
    want = {"Seccomp": "2", "NoNewPrivs": "1",
            "Uid": "\t".join([str(nobody)] * 4)}
    try:
        st = proc_status(pid)
    except OSError as e:
        return "pid %d: %s" % (pid, e)
    got = {k: st.get(k) for k in want}
    return None if got == want else "pid %d: %r, want %r" % (pid, got, want)


# ---------------------------------------------------------------- helpers

def deaths(srv, pid):
    """The signals of the worker_died events logged for pid."""
    return [e.get("signal") for e in srv.logs(strict=False)
            if e.get("event") == "worker_died" and e.get("pid") == pid]


def assert_died(srv, pid, sig):
    """The master logs exactly one worker_died for pid, with sig."""
    wait_for(lambda: deaths(srv, pid), EVENT_WAIT)
    assert deaths(srv, pid) == [sig], \
        "worker %d: want one worker_died signal %d; log: %s" % (
            pid, sig, srv.log_text()[-2000:])


def assert_lived(srv, pid):
    """pid ended without a worker_died or worker_failed event."""
    assert wait_for(lambda: pid not in children(srv.proc.pid), EVENT_WAIT), \
        "worker %d did not exit after QUIT" % pid
    bad = [e for e in srv.logs(strict=False) if e.get("pid") == pid and
           e.get("event") in ("worker_died", "worker_failed")]
    assert bad == [], bad


def assert_serving(srv):
    """The master lives and a new session gets 220 and a full dialogue."""
    assert srv.proc.poll() is None, "master exited: %s" % srv.stderr()
    with srv.session() as c:
        c.ehlo()
        assert_reply(c.cmd("NOOP"), "250 2.0.0")
        c.quit()


def hook_kills(srv, hook, sig):
    """XTEST hook closes the session without a reply; the master logs
    that worker's death by sig and goes on serving."""
    with srv.session() as c:
        pid = worker_of(srv, c)
        c.send("XTEST %s\r\n" % hook)
        c.expect_closed(timeout=3.0)
    assert_died(srv, pid, sig)
    assert_serving(srv)
    return pid


def hook_refused(srv, hook, text):
    """XTEST hook is answered LOCALERR + text; the worker lives on,
    serves the session to its end and exits cleanly."""
    with srv.session() as c:
        pid = worker_of(srv, c)
        r = c.cmd("XTEST %s" % hook)
        assert r.lines == [LOCALERR + text], r.lines
        assert_reply(c.cmd("NOOP"), "250 2.0.0")
        assert pid in children(srv.proc.pid)
        c.quit()
    assert_lived(srv, pid)
    assert_serving(srv)


class Listener:
    """A loopback port of the test's own that nobody should reach."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen(5)
        self.sock.settimeout(0.3)
        self.port = self.sock.getsockname()[1]

    def reached(self):
        try:
            conn, _ = self.sock.accept()
        except (socket.timeout, BlockingIOError):
            return False
        conn.close()
        return True

    def close(self):
        self.sock.close()


@pytest.fixture
def listener():
    lst = Listener()
    yield lst
    lst.close()


@pytest.fixture
def hooked(smtpd):
    """./smtpd-test with --spool."""
    return smtpd("--spare", "2", binary=SMTPD_TEST)


@pytest.fixture
def hooked_api(smtpd, firm):
    """./smtpd-test with -a (the fake FIRM API)."""
    return smtpd("--spare", "2", api=firm.url, binary=SMTPD_TEST)


def charset_message(text, charset):
    body = base64.b64encode(text.encode(charset)).decode("ascii")
    body = "\r\n".join(body[i:i + 76] for i in range(0, len(body), 76))
    return make_message(body=body + "\r\n", extra=(
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=%s" % charset,
        "Content-Transfer-Encoding: base64"))


# ---------------------------------------------------------------- refused

def test_chroot_hides_etc_passwd(hooked):
    # /etc/passwd is world-readable: a worker is shut in the chroot of
    # glibc's iconv modules, where there is no /etc (and Landlock would
    # deny it too)
    hook_refused(hooked, "OPEN-PASSWD",
                 "open /etc/passwd: No such file or directory")


def test_fork_is_refused_and_the_worker_lives(hooked):
    hook_refused(hooked, "FORK", "fork: Operation not permitted")


# ---------------------------------------------------------------- killed

@pytest.mark.worker_deaths
def test_exec_of_a_shell_kills_the_worker(hooked):
    hook_kills(hooked, "EXEC-SH", SIGSYS)


@pytest.mark.worker_deaths
def test_ptrace_of_the_master_kills_the_worker(hooked):
    hook_kills(hooked, "PTRACE", SIGSYS)
    assert proc_status(hooked.proc.pid)["TracerPid"] == "0"


def test_a_worker_cannot_make_a_listening_socket(hooked):
    hook_refused(hooked, "LISTEN", "socket: Operation not permitted")


def test_an_api_worker_cannot_make_a_listening_socket(hooked_api):
    # the relay talks to FIRM: a worker has no inet socket at all
    hook_refused(hooked_api, "LISTEN", "socket: Operation not permitted")


@pytest.mark.worker_deaths
def test_signal_to_the_master_kills_the_worker(hooked):
    hook_kills(hooked, "KILL-MASTER", SIGSYS)
    assert not [e for e in hooked.logs(strict=False)
                if e.get("proc") == "master" and
                e.get("event") in ("stopping", "stop")]


@pytest.mark.parametrize("kind", ["TCP", "MPTCP", "UDP", "RAW"])
def test_a_worker_cannot_make_an_inet_socket(hooked, kind):
    hook_refused(hooked, "SOCKET %s" % kind,
                 "socket: Operation not permitted")


@pytest.mark.parametrize("kind", ["TCP", "MPTCP", "UDP", "RAW"])
def test_an_api_worker_cannot_make_an_inet_socket(hooked_api, kind):
    hook_refused(hooked_api, "SOCKET %s" % kind,
                 "socket: Operation not permitted")


def test_a_worker_cannot_send_a_unix_datagram_to_a_path(hooked, tmp_path):
    path = str(tmp_path / "dgram.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    os.chmod(path, 0o777)
    server.settimeout(0.3)
    try:
        hook_refused(hooked, "UNIX-DGRAM %s" % path,
                     "socket: Operation not permitted")
        with pytest.raises(socket.timeout):
            server.recv(16)
    finally:
        server.close()


@pytest.mark.parametrize("hook", ["MMAP-RWX", "MMAP-ANON-EXEC"])
@pytest.mark.worker_deaths
def test_anonymous_executable_memory_kills_the_worker(hooked, hook):
    hook_kills(hooked, hook, SIGSYS)


@pytest.mark.parametrize("hook", ["FCNTL-SETOWN", "FCNTL-SETSIG"])
@pytest.mark.worker_deaths
def test_fcntl_signal_ownership_kills_the_worker(hooked, hook):
    hook_kills(hooked, hook, SIGSYS)


@pytest.mark.worker_deaths
def test_writing_the_banlist_table_kills_the_worker(hooked):
    # the worker maps the shared table read-only: a store faults
    hook_kills(hooked, "BANLIST-WRITE", SIGSEGV)


# A worker that serves more than one session (--max-use) keeps the SMTP
# listeners through its sessions; in its last, it holds none.
def test_a_worker_holds_the_smtp_listener_and_not_the_health_one(smtpd):
    srv = smtpd("--spare", "2", "--max-use", "2", "--health",
                "127.0.0.1:%d" % free_port(), binary=SMTPD_TEST)
    with srv.session() as c:
        r = c.cmd("XTEST LISTENERS")
        assert r.lines == [LOCALERR + "listening sockets: 1"], r.lines
        c.quit()


@pytest.mark.worker_deaths
def test_shutting_down_the_shared_listener_kills_the_worker(smtpd):
    # shutdown(SHUT_RD) of a listening socket stops it for every
    # process that shares it: the whole MX, from one taken-over worker
    srv = smtpd("--spare", "2", "--max-use", "2", binary=SMTPD_TEST)
    hook_kills(srv, "SHUTDOWN-LISTENERS", SIGSYS)
    for _ in range(3):
        assert_serving(srv)


@pytest.mark.worker_deaths
def test_setting_an_option_of_the_shared_listener_kills_the_worker(smtpd):
    # TCP_DEFER_ACCEPT on the listening socket would hold every later
    # client, who waits for the greeting, until it talks first (and
    # SO_RCVBUF of 1 would starve it): the whole MX, from one worker
    srv = smtpd("--spare", "2", "--max-use", "5", binary=SMTPD_TEST)
    hook_kills(srv, "LISTENER-OPT", SIGSYS)
    for _ in range(3):
        with srv.connect(timeout=10) as c:
            t0 = time.monotonic()
            c.greeting(timeout=10)
            assert time.monotonic() - t0 < 2.0, "the greeting was held"
            c.ehlo()
            assert_reply(c.cmd("NOOP"), "250 2.0.0")
            c.quit()


@pytest.mark.worker_deaths
def test_segfault_kills_only_the_worker(hooked):
    hook_kills(hooked, "SEGV", SIGSEGV)


@pytest.mark.parametrize("hook,report", [
    ("HEAP-OVERFLOW", "heap-buffer-overflow"),
    ("INT-OVERFLOW", "signed integer overflow")])
@pytest.mark.worker_deaths
def test_a_sanitizer_report_gets_out_of_a_sandboxed_worker(hooked, hook,
                                                          report):
    """In the sanitizer pass (make test-asan), a worker's read past a
    heap block or signed overflow is reported on the server's output,
    sandbox or not, and such a report fails the test; in the normal
    build the same hook is a quiet bug the worker survives."""
    srv = hooked
    if not SANITIZER:
        with srv.session() as c:
            r = c.cmd("XTEST %s" % hook)
            assert r.lines[0].startswith(LOCALERR), r.lines
            c.quit()
        return
    srv.expect_sanitizer_report = True
    with srv.session() as c:
        c.send("XTEST %s\r\n" % hook)
        c.expect_closed(timeout=10.0)
    srv.stop()
    text = srv.stderr()
    assert report in text, text[-3000:]
    with pytest.raises(AssertionError, match="sanitizer report"):
        assert_no_sanitizer_report(text)
    assert_no_sanitizer_report(srv.log_text())


# ---------------------------------------------------------------- network

def test_api_worker_has_no_network_yet_delivers(hooked_api, firm):
    srv = hooked_api
    with srv.session() as c:
        pid = worker_of(srv, c)
        r = c.cmd("XTEST SOCKET TCP")
        assert r.lines == [LOCALERR + "socket: Operation not permitted"], \
            r.lines
        # the same worker still delivers, through the relay
        r = c.deliver(make_message())
        assert_reply(r, "250 2.0.0")
        c.quit()
    reqs = firm.wait_inbound(1)
    assert len(reqs) == 1 and TOKEN in reqs[0].json()["body"], reqs
    assert_lived(srv, pid)


def hosts_file_name():
    """A name /etc/hosts maps to 127.0.0.1 that libcurl does not treat
    as localhost itself (curl answers "localhost" and "*.localhost"
    without a resolver), or None."""
    try:
        with open("/etc/hosts") as f:
            rows = [r.split("#", 1)[0].split() for r in f]
    except OSError:
        return None
    for row in rows:
        if len(row) < 2 or row[0] != LOOPBACK:
            continue
        for name in row[1:]:
            low = name.lower().rstrip(".")
            if low == "localhost" or low.endswith(".localhost"):
                continue
            try:
                if socket.gethostbyname(name) == LOOPBACK:
                    return name
            except OSError:
                continue
    return None


@pytest.mark.parametrize("kind", ["localhost", "hosts-file"])
def test_api_host_name_is_resolved_before_the_sandbox(smtpd, firm, kind):
    # the relay resolves the name at start, before its sandbox: then it
    # reads neither /etc/hosts nor resolv.conf (its chroot is empty)
    name = "localhost" if kind == "localhost" else hosts_file_name()
    if name is None:
        pytest.skip("no name for 127.0.0.1 in /etc/hosts")
    srv = smtpd("--spare", "1", api="http://%s:%d" % (name, firm.port))
    with srv.session() as c:
        r = c.deliver(make_message())
        assert_reply(r, "250 2.0.0")
        c.quit()
    reqs = firm.wait_inbound(1)
    assert len(reqs) == 1 and TOKEN in reqs[0].json()["body"], reqs
    assert reqs[0].header("Host") == ["%s:%d" % (name, firm.port)], \
        reqs[0].headers


def test_https_api_with_a_missing_ca_file_is_refused(tmp_path):
    missing = tmp_path / "no-such-ca.pem"
    status, _, err = run_smtpd([
        "-d", "-l", "%s:%d" % (LOOPBACK, free_port()), "-H", HOSTNAME,
        "-r", RCPT, "-a", "https://127.0.0.1:%d" % free_port(),
        "--ca-file", missing])
    assert status == 1, err
    assert "--ca-file" in err and str(missing) in err, err


# ---------------------------------------------------------------- crashes

@pytest.mark.worker_deaths
def test_concurrent_session_delivers_while_a_worker_is_killed(hooked):
    srv = hooked
    with srv.session() as a:
        a.envelope()
        with srv.session() as b:
            pid = worker_of(srv, b)
            b.send("XTEST EXEC-SH\r\n")
            b.expect_closed(timeout=3.0)
        assert_died(srv, pid, SIGSYS)
        assert_reply(a.send_data(make_message()), "250 2.0.0")
        a.quit()
    spooled = srv.read_spool()
    assert len(spooled) == 1 and TOKEN in spooled[0]["body"], spooled


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV],
                         ids=["SIGKILL", "SIGSEGV"])
@pytest.mark.worker_deaths
def test_worker_killed_mid_session_ends_only_that_session(smtpd, sig):
    srv = smtpd("--spare", "2")
    master = srv.proc.pid
    with srv.session() as victim, srv.session() as other:
        victim.ehlo()
        assert_reply(victim.cmd("MAIL FROM:<a@example.net>"), "250 2.1.0")
        pid = worker_of(srv, victim)
        other.envelope()
        os.kill(pid, sig)
        victim.expect_closed(timeout=3.0)
        assert_reply(other.send_data(make_message()), "250 2.0.0")
        other.quit()
    assert_died(srv, pid, int(sig))
    assert wait_for(lambda: pid not in children(master) and
                    len(children(master)) >= 2, REPLACE_WAIT), \
        children(master)
    spooled = srv.read_spool()
    assert len(spooled) == 1 and TOKEN in spooled[0]["body"], spooled
    assert_serving(srv)


# ---------------------------------------------------------------- /proc

def test_idle_worker_runs_under_seccomp_nnp_and_nobody(smtpd):
    srv = smtpd("--spare", "1")
    assert wait_for(lambda: len(split_children(srv)[0]) >= 1, 5)
    workers = split_children(srv)[0]
    for pid in workers:
        assert wait_for(lambda: sandboxed(pid) is None, 3), sandboxed(pid)


def test_relay_and_fetcher_run_under_seccomp_nnp_and_nobody(smtpd, firm):
    # the others: the relay, the verifier, the fetcher
    srv = smtpd("--spare", "1", api=firm.url)
    assert wait_for(lambda: [len(s) for s in split_children(srv)] == [1, 3],
                    5), split_children(srv)
    workers, others = split_children(srv)
    for pid in workers | others:
        assert wait_for(lambda: sandboxed(pid) is None, 3), sandboxed(pid)


# ---------------------------------------------------------------- iconv

@pytest.mark.parametrize("charset", ["KOI8-R", "SHIFT_JIS"])
def test_charset_from_a_gconv_module_decodes_in_the_worker(smtpd, charset):
    # neither is built into glibc: iconv loads KOI8-R.so / SJIS.so from
    # the gconv directory, the only files Landlock lets a worker read
    text = {"KOI8-R": "Привет, мир", "SHIFT_JIS": "こんにちは世界"}[charset]
    srv = smtpd("--spare", "1")
    with srv.session() as c:
        r = c.deliver(charset_message(text + "\r\nplease verify " + TOKEN +
                                   "\r\n", charset))
        assert_reply(r, "250 2.0.0")
        c.quit()
    spooled = srv.read_spool()
    assert len(spooled) == 1, spooled
    assert text in spooled[0]["body"] and TOKEN in spooled[0]["body"], \
        spooled[0]["body"]


def test_master_has_no_new_privs_and_leaves_no_core(smtpd):
    srv = smtpd("--spare", "1")
    fields = {}
    with open("/proc/%d/status" % srv.proc.pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    assert fields["NoNewPrivs"] == "1", fields
    assert fields["Seccomp"] == "0", fields      # the master is unfiltered
    assert fields["Uid"].split()[1] == "0", fields
    with open("/proc/%d/limits" % srv.proc.pid) as f:
        core = [l for l in f if l.startswith("Max core file size")]
    assert core and core[0].split()[4:6] == ["0", "0"], core
