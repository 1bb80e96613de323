"""Scale-out behind a real load balancer (SPEC section 8): Debian's
haproxy in TCP mode, sending PROXY v2 headers and checking each smtpd's
/healthz, in front of two smtpd instances on loopback that share one
fake FIRM.  The client connects from 127.0.0.2 and HAProxy from
127.0.0.1, so the payload's client_ip tells whose address smtpd
believed."""
import collections
import concurrent.futures
import itertools
import os
import pathlib
import shutil
import signal
import smtplib
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import (LOOPBACK, RCPT, REPO, TOKEN, free_port, wait_for)
from fake_banlist import FakeBanlistAPI, INBOUND

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
CLIENT = "127.0.0.2"
BANNED = "127.0.0.3"
CONFIG = REPO / "contrib" / "haproxy" / "haproxy.cfg"
SEND_TIMEOUT = 20.0


@pytest.fixture
def firm():
    fake = FakeBanlistAPI().start()
    yield fake
    fake.stop()


def haproxy_config(front, servers, inter=None):
    """contrib/haproxy/haproxy.cfg with this test's ports (and check
    interval)."""
    text = CONFIG.read_text()
    if inter is not None:
        assert " check inter 1s " in text
        text = text.replace(" check inter 1s ", " check inter %s " % inter)
    text = text.replace("bind :25", "bind %s:%d" % (LOOPBACK, front))
    for i, (smtp, health) in enumerate(servers, 1):
        default = {1: (2525, 9091), 2: (2526, 9092)}[i]
        text = text.replace("127.0.0.1:%d check port %d" % default,
                            "127.0.0.1:%d check port %d" % (smtp, health))
    return text


class Balanced:
    """Two smtpd behind one haproxy."""

    def __init__(self, smtpd, firm, cache_dir, extra=(), inter=None):
        self.servers = []
        ports = []
        for _ in range(2):
            hport = free_port()
            srv = smtpd("--proxy-from", "127.0.0.1/32",
                        "--health", "%s:%d" % (LOOPBACK, hport),
                        "--poll", "1", "--grace", "10",
                        "--banlist-cache",
                        os.path.join(cache_dir, "c%d.json" % len(ports)),
                        *extra, api=firm.url)
            srv.hport = hport
            self.servers.append(srv)
            ports.append((srv.port, hport))
        self.dir = tempfile.mkdtemp()
        cfg = pathlib.Path(self.dir) / "haproxy.cfg"
        # free_port() only says the port was free: a test running
        # beside this one (the sanitizer pass) may take it first, and
        # haproxy then exits at once; another port, 3 tries at most
        for _ in range(3):
            self.front = free_port()
            cfg.write_text(haproxy_config(self.front, ports, inter))
            self.proc = subprocess.Popen(
                [HAPROXY, "-db", "-f", str(cfg)], stdin=subprocess.DEVNULL,
                stdout=open(os.path.join(self.dir, "out"), "wb"),
                stderr=subprocess.STDOUT, start_new_session=True)
            try:
                self.proc.wait(0.5)
            except subprocess.TimeoutExpired:
                break
            if "cannot bind socket" not in self.log():
                break
        assert wait_for(self.both_up, 15), self.log()

    def log(self):
        with open(os.path.join(self.dir, "out"), "rb") as f:
            return f.read().decode("utf-8", "replace")[-3000:]

    def both_up(self):
        # haproxy logs "is UP" only on transitions; give the checks
        # (inter 1s, rise 2) their time, then probe the front end
        try:
            with smtplib.SMTP(LOOPBACK, self.front, timeout=5,
                              source_address=(CLIENT, 0)) as s:
                return s.noop()[0] == 250
        except (OSError, smtplib.SMTPException):
            return False

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def balanced(smtpd, firm, tmp_path):
    made = []

    def make(*extra, inter=None):
        d = tempfile.mkdtemp(dir="/tmp")
        os.chmod(d, 0o777)
        b = Balanced(smtpd, firm, d, extra, inter)
        made.append((b, d))
        return b
    yield make
    for b, d in made:
        b.stop()
        shutil.rmtree(d, ignore_errors=True)


def message(n):
    return ("From: Ann <ann@example.org>\r\nTo: <%s>\r\n"
            "Subject: %s\r\nMessage-ID: <lb-%d@example.org>\r\n\r\n"
            "message %d\r\n" % (RCPT, TOKEN, n, n)).encode()


def send(front, n, source=CLIENT):
    """(n, reply code of the end of data, or of whatever refused it)."""
    try:
        with smtplib.SMTP(LOOPBACK, front, timeout=SEND_TIMEOUT,
                          source_address=(source, 0)) as s:
            s.ehlo("client.test")
            s.sendmail("ann@example.org", [RCPT], message(n))
            return n, 250
    except smtplib.SMTPResponseException as e:
        return n, e.smtp_code
    except smtplib.SMTPRecipientsRefused as e:
        return n, list(e.recipients.values())[0][0]
    except (smtplib.SMTPServerDisconnected, OSError):
        return n, None          # no reply: the sender retries later


def firm_inbound(firm):
    """The POSTs FIRM received, and their message numbers (repeats
    included)."""
    reqs = firm.requests(INBOUND)
    nums = []
    for r in reqs:
        body = r.json()
        nums.append(int(body["headers"]["message-id"][4:].split("@")[0]))
    return reqs, nums


def test_sessions_are_spread_over_both_and_keep_the_client_address(
        balanced, firm):
    b = balanced()
    results = [send(b.front, n) for n in range(20)]
    assert all(code == 250 for _, code in results), results
    reqs, nums = firm_inbound(firm)
    assert sorted(nums) == list(range(20))
    assert {r.json()["client_ip"] for r in reqs} == {CLIENT}
    per = [sum(1 for e in srv.logs() if e.get("event") == "message")
           for srv in b.servers]
    assert per[0] > 0 and per[1] > 0, per
    for srv in b.servers:
        for e in srv.logs():
            if e.get("event") in ("connect", "message"):
                assert e["client_ip"] == CLIENT, e


def test_a_ban_of_the_client_applies_on_both(balanced, firm):
    firm.set_lists([BANNED + "/32"])
    b = balanced()
    for srv in b.servers:
        assert wait_for(lambda: any(e.get("event") == "banlist_published"
                                    for e in srv.logs()), 10)
    codes = collections.Counter(code for _, code in
                                (send(b.front, n, BANNED) for n in range(6)))
    assert codes == {554: 6}, codes
    banned = [sum(1 for e in srv.logs() if e.get("event") == "connect" and
                  e.get("client_ip") == BANNED) for srv in b.servers]
    assert banned[0] > 0 and banned[1] > 0, banned
    assert send(b.front, 99)[1] == 250      # others are served


def test_stopping_one_instance_loses_nothing(balanced, firm):
    b = balanced()
    total = 120
    results = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(send, b.front, n) for n in range(total)]
        # stop one instance while the load runs
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and \
                sum(f.done() for f in futures) < total // 3:
            time.sleep(0.05)
        b.servers[0].signal(signal.SIGTERM)
        for f in futures:
            results.append(f.result(timeout=120))
    assert b.servers[0].wait(30) == 0
    reqs, nums = firm_inbound(firm)
    ok = {n for n, code in results if code == 250}
    temp = {n for n, code in results if code is None or 400 <= code < 500}
    perm = {n for n, code in results if code is not None and code >= 500}
    noreply = {n for n, code in results if code is None}
    counts = collections.Counter(nums)
    # every 250 reached FIRM exactly once; nothing refused for good
    assert not perm, [r for r in results if r[0] in perm]
    assert all(counts[n] == 1 for n in ok), counts
    assert ok | temp == set(range(total))
    lost = [n for n in ok if counts[n] != 1]
    print("haproxy run: %d messages, %d got 250, %d got 4xx (%s), %d no "
          "reply, lost %d" % (total, len(ok), len(temp) - len(noreply),
                              dict(collections.Counter(
                                  c for _, c in results
                                  if c is not None and c != 250)),
                              len(noreply), len(lost)))
    assert lost == []
    # the others heard a 4xx, but for a connection that reached the
    # stopping instance in the instant its last listener closed: the
    # kernel resets it, and the sender retries (RFC 5321 4.5.4.1).  A
    # handful at most (seen: 0 to 3 of 120 under CI load, beside the
    # sanitizer pass); never a 250 that FIRM lacks, checked above
    assert len(noreply) <= 6, sorted(noreply)
    # and new sessions go to the other instance
    assert send(b.front, 1000)[1] == 250


def test_draining_one_instance_resets_nothing(balanced, firm):
    # --drain 2 outlasts the checks' inter 200ms x fall 2: HAProxy moves
    # away before the listeners close, so no connection meets a closed
    # one.  Clients send without a pause from before the SIGTERM until
    # the instance has exited; every message gets 250 or a 4xx, never
    # silence, and every 250 reached FIRM once
    b = balanced("--drain", "2", "-p", "20", inter="200ms")
    numbers = itertools.count()
    stopped = threading.Event()

    def client():
        got = []
        while not stopped.is_set():
            got.append(send(b.front, next(numbers)))
        return got
    # -p 20: a client that reconnects at once may find its last session
    # not yet counted out, and this is no test of -p
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(client) for _ in range(4)]
        time.sleep(1)
        b.servers[0].signal(signal.SIGTERM)
        status = b.servers[0].wait(30)
        time.sleep(0.5)
        stopped.set()
        results = [r for f in futures for r in f.result(timeout=60)]
    assert status == 0
    _, nums = firm_inbound(firm)
    counts = collections.Counter(nums)
    noreply = [n for n, code in results if code is None]
    assert noreply == [], (noreply, len(results), b.log())
    assert all(code == 250 or 400 <= code < 500 for _, code in results), \
        results
    ok = [n for n, code in results if code == 250]
    assert all(counts[n] == 1 for n in ok), counts
    # and drained: no session was left to hear 421 when it stopped
    # (without --drain, a few do, and now and then one hears nothing)
    assert len(ok) == len(results), results
    print("haproxy drain: %d messages: %s" % (
        len(results), dict(collections.Counter(c for _, c in results))))
    assert any(e.get("event") == "draining" for e in b.servers[0].logs())
    assert send(b.front, 10 ** 6)[1] == 250
