"""The ban list (SPEC sections 1, 3, 5): the fetcher polls the FIRM API
for banned subnets and blocked senders, publishes them in the shared
table, keeps the last good lists through failures, alarms once per
outage, caches them across restarts; workers and -i sessions obey them.

smtpd runs with -a http://127.0.0.1:PORT against the fake API of
tests/fakes/fake_banlist.py, --poll 1 (fast polls) and --banlist-cache in a
temporary directory writable by the worker user.  Clients connect from
127.0.0.1, or from 127.0.0.2 (all of 127/8 is loopback on Linux) when
a test needs one banned and one free client side by side.
"""

import datetime
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import (assert_no_sanitizer_report, resolver_args, HOSTNAME, IO_TIMEOUT, LOOPBACK, RCPT, REPO, SMTPD,
                      ConnectionClosed, SMTPClient, SmtpdServer,
                      assert_reply, build_args, free_port, make_message,
                      wait_for)
from fake_banlist import (ALARM, EMAILS, INBOUND, SUBNETS, Answer,
                          FakeBanlistAPI)

SMTPD_TEST = pathlib.Path(os.environ.get("SMTPD_TEST_BINARY",
                                         str(REPO / "smtpd-test")))

POLL = 1                    # --poll for these tests, in seconds
# One poll, with slack for process start and a slow machine.
POLL_WAIT = POLL + 2.0
# From the server's start to its first poll answered and published.
START_POLL_WAIT = 5.0
OTHER = "127.0.0.2"         # a second client address on loopback
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?"
                     r"(Z|[+-]\d\d:\d\d)$")


# ---------------------------------------------------------------- fixtures

@pytest.fixture
def banapi():
    """The fake API, answering empty lists until told otherwise."""
    fake = FakeBanlistAPI().start()
    yield fake
    fake.stop()


@pytest.fixture
def cache(spool_root):
    """A --banlist-cache path in a fresh directory the worker user
    (nobody) may write: the fetcher renames its temporary file there."""
    d = tempfile.mkdtemp(dir=str(spool_root))
    os.chmod(d, 0o777)
    return pathlib.Path(d) / "banlist.json"


def start(smtpd, banapi, cache, *extra, poll=POLL):
    return smtpd("--poll", poll, "--banlist-cache", str(cache), *extra,
                 api=banapi.url)


# ---------------------------------------------------------------- helpers

def connect(port, source=None, host=LOOPBACK, timeout=IO_TIMEOUT):
    src = (source, 0) if source is not None else None
    sock = socket.create_connection((host, port), timeout=timeout,
                                    source_address=src)
    return SMTPClient(sock=sock, timeout=timeout)


def probe(port, source=None, host=LOOPBACK):
    """Open a session, return its first reply, QUIT politely."""
    with connect(port, source, host) as c:
        first = c.reply()
        assert_reply(c.cmd("QUIT"), "221")
        return first


def is_banned(port, source=None, host=LOOPBACK):
    """True on a 554 5.7.1 greeting, False on 220; anything else fails."""
    first = probe(port, source, host)
    if first.code == 554:
        assert_reply(first, "554 5.7.1")
        return True
    assert_reply(first, "220")
    return False


def wait_banned(port, banned=True, timeout=POLL_WAIT, **kw):
    """Poll fresh connections until the ban state is as wanted."""
    return wait_for(lambda: is_banned(port, **kw) == banned, timeout,
                    interval=0.1)


def mail_reply(port, sender, source=None):
    """The reply to MAIL FROM:<sender> after EHLO."""
    with connect(port, source) as c:
        c.greeting()
        c.ehlo()
        r = c.cmd("MAIL FROM:<%s>" % sender)
        assert_reply(c.cmd("QUIT"), "221")
        return r


def events(srv, name):
    return [e for e in srv.logs(strict=False) if e.get("event") == name]


def wait_events(srv, name, n, timeout):
    wait_for(lambda: len(events(srv, name)) >= n, timeout, interval=0.1)
    return events(srv, name)


def wait_polls_after(banapi, mark, n, timeout=None):
    """Wait until n polls have asked for the subnets since mark."""
    timeout = timeout or n * POLL + 3.0
    got = banapi.wait_requests(SUBNETS, n, timeout, mark=mark)
    assert len(got) >= n, \
        "only %d polls in %.0fs after the change" % (len(got), timeout)
    return got


def wait_first_poll(banapi, srv):
    """The first poll has been answered (both lists) and published."""
    got = banapi.wait_requests(EMAILS, 1, START_POLL_WAIT)
    assert got, "the fetcher never polled %s; log: %s" % (
        EMAILS, srv.log_text()[-2000:])
    time.sleep(0.3)         # its publish follows the answer at once


def alarms(banapi, mark=0):
    return [r for r in banapi.requests(ALARM, mark=mark)
            if r.method == "POST"]


def check_alarm_fields(req):
    body = req.json()
    assert set(body) >= {"source", "host", "error", "failures",
                         "last_success"}, body
    assert body["source"] == "smtpd", body
    assert body["host"] == HOSTNAME, body
    assert isinstance(body["error"], str) and body["error"].strip(), body
    assert body["failures"] == 3 and type(body["failures"]) is int, body
    return body


def parse_rfc3339(text):
    assert RFC3339.match(text), "not RFC 3339: %r" % text
    return datetime.datetime.fromisoformat(
        text.replace("Z", "+00:00")).timestamp()


def spawn_inetd(conn, banapi, cache, binary=SMTPD, errfile=None):
    """smtpd -i with the accepted TCP socket conn as stdin and stdout,
    so the client address (getpeername) is 127.0.0.1."""
    err = open(errfile, "wb") if errfile else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(
            [str(binary), "-i", "-d", "-H", HOSTNAME, "-r", RCPT,
             "-a", banapi.url, "--banlist-cache", str(cache)] +
            resolver_args(()),
            cwd=str(REPO), stdin=conn.fileno(), stdout=conn.fileno(),
            stderr=err, start_new_session=True)
    finally:
        if errfile:
            err.close()
    return proc


def tcp_pair():
    """(client socket, accepted server-side socket) on 127.0.0.1."""
    with socket.socket() as lsock:
        lsock.bind((LOOPBACK, 0))
        lsock.listen(1)
        lsock.settimeout(5)
        ours = socket.create_connection(lsock.getsockname(), timeout=5)
        theirs, peer = lsock.accept()
    assert peer[0] == LOOPBACK
    return ours, theirs


def inetd_session(banapi, cache, tmp_path, name="inetd", sender=None):
    """One -i session over real TCP: its first reply and, when it is a
    220 and sender is given, the reply to EHLO + MAIL FROM:<sender>;
    then QUIT.  The process must exit 0."""
    ours, theirs = tcp_pair()
    errfile = tmp_path / (name + ".err")
    proc = spawn_inetd(theirs, banapi, cache, errfile=errfile)
    theirs.close()
    mail = None
    try:
        with SMTPClient(sock=ours, timeout=5) as c:
            first = c.reply()
            if first.code == 220 and sender is not None:
                c.ehlo()
                mail = c.cmd("MAIL FROM:<%s>" % sender)
            assert_reply(c.cmd("QUIT"), "221")
            c.expect_closed()
        status = proc.wait(timeout=5)
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)
        raise
    errtext = errfile.read_text(errors="replace")
    assert status == 0, "smtpd -i exited %s: %s" % (status, errtext[-2000:])
    return first, mail


def inetd_first_reply(banapi, cache, tmp_path, name="inetd"):
    return inetd_session(banapi, cache, tmp_path, name)[0]


class FetchOnly:
    """smtpd -d --fetch-only -a URL --banlist-cache FILE --poll 1."""

    def __init__(self, workdir, banapi, cache):
        self.log_path = pathlib.Path(workdir) / "fetch-only.log"
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [str(SMTPD), "-d", "--fetch-only", "-a", banapi.url,
                 "--banlist-cache", str(cache), "--poll", str(POLL)],
                cwd=str(REPO), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True)

    def log_text(self):
        return self.log_path.read_text(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(timeout=5)
        assert_no_sanitizer_report(self.log_text(), "smtpd --fetch-only")
        return self.proc.returncode


# ------------------------------------------------- bans follow the API

def test_new_ban_blocks_a_fresh_connection_within_two_polls(
        smtpd, banapi, cache):
    srv = start(smtpd, banapi, cache)
    wait_first_poll(banapi, srv)
    assert not is_banned(srv.port)
    mark = banapi.set_lists(["127.0.0.1/32"])
    # The first poll that asks after the change is published before the
    # second one asks: from then on a fresh connection must be banned.
    wait_polls_after(banapi, mark, 2)
    assert is_banned(srv.port), "ban not applied within two polls"


def test_unban_lifts_the_ban_within_two_polls(smtpd, banapi, cache):
    banapi.set_lists(["127.0.0.0/8"])
    srv = start(smtpd, banapi, cache)
    assert wait_banned(srv.port, timeout=START_POLL_WAIT), \
        "the first poll's ban never applied"
    mark = banapi.set_lists([])
    wait_polls_after(banapi, mark, 2)
    assert not is_banned(srv.port), "unban not applied within two polls"


def test_object_form_answers_are_accepted(smtpd, banapi, cache):
    banapi.set_answer(SUBNETS, Answer.of({"banned_subnets": [OTHER]}))
    banapi.set_answer(EMAILS, Answer.of({"blocked_emails": ["@evil.test"]}))
    srv = start(smtpd, banapi, cache)
    assert wait_banned(srv.port, source=OTHER, timeout=START_POLL_WAIT)
    assert not is_banned(srv.port)
    assert_reply(mail_reply(srv.port, "x@evil.test"), "550 5.7.1")


def test_bad_entries_are_skipped_with_a_log_line_and_good_ones_ban(
        smtpd, banapi, cache):
    banapi.set_lists(["not-an-address", OTHER + "/32", "10.0.0.0/33", 42],
                     ["no-at-sign", "bad@example.com"])
    srv = start(smtpd, banapi, cache)
    assert wait_banned(srv.port, source=OTHER, timeout=START_POLL_WAIT), \
        "a bad entry kept the good one from banning"
    assert not is_banned(srv.port)
    assert_reply(mail_reply(srv.port, "bad@example.com"), "550 5.7.1")
    assert_reply(mail_reply(srv.port, "good@example.com"), "250 2.1.0")
    skips = events(srv, "banlist_skip")
    entries = {e.get("entry") for e in skips}
    assert {"not-an-address", "10.0.0.0/33", "no-at-sign"} <= entries, skips
    assert OTHER + "/32" not in entries and \
        "bad@example.com" not in entries, skips
    assert any(e.get("list") == "banned_subnets" for e in skips), \
        "no log line for the non-string entry: %s" % skips
    assert all(e.get("level") == "warning" for e in skips), skips
    [published] = events(srv, "banlist_published")
    assert published["ipv4_ranges"] == 1 and \
        published["senders"] == 1, published


# ------------------------------------------- failures keep the last list

FAILURES = {
    "down": None,                                   # connection refused
    "http-500": Answer(500, b'{"error":"boom"}'),
    "malformed-json": Answer(200, b'["127.0.0.1/32", '),
    "not-a-list": Answer(200, b'{"something_else": ["10.0.0.0/8"]}'),
    "only-garbage": Answer(200, json.dumps(
        ["not-an-address", "300.1.2.3", "10.0.0.0/33", "", 42, None,
         "@", "no-at-sign"])),
}


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_failed_polls_keep_the_last_good_lists(smtpd, banapi, cache,
                                               failure):
    banapi.set_lists([OTHER + "/32"], ["@evil.test"])
    srv = start(smtpd, banapi, cache)
    assert wait_banned(srv.port, source=OTHER, timeout=START_POLL_WAIT)
    assert_reply(mail_reply(srv.port, "x@evil.test"), "550 5.7.1")
    before = len(events(srv, "banlist_poll_failed"))
    if failure == "down":
        banapi.down()
    else:
        banapi.fail_lists(FAILURES[failure])
    got = wait_events(srv, "banlist_poll_failed", before + 3,
                      3 * POLL + 4.0)
    assert len(got) >= before + 3, \
        "the fetcher did not record 3 failed polls: %s" % got
    last = got[-1]
    assert isinstance(last.get("error"), str) and last["error"], last
    if failure == "http-500":
        assert "500" in last["error"], last
    elif failure != "down":
        assert "malformed" in last["error"], last
    # after three failed polls both lists still hold
    assert is_banned(srv.port, source=OTHER), \
        "a failed poll (%s) lifted the ban" % failure
    assert not is_banned(srv.port)
    assert_reply(mail_reply(srv.port, "x@evil.test"), "550 5.7.1")
    assert not events(srv, "banlist_published")[1:], \
        "a failed poll published a new table: %s" % \
        events(srv, "banlist_published")


# -------------------------------------------------------------- alarms

def test_alarm_after_three_failed_polls_has_null_last_success_when_never_ok(
        smtpd, banapi, cache):
    banapi.fail_lists(Answer(500))
    srv = start(smtpd, banapi, cache)
    got = banapi.wait_requests(ALARM, 1, 3 * POLL + 5.0)
    assert got, "no alarm after 3 failed polls; log: %s" % \
        srv.log_text()[-2000:]
    alarm = got[0]
    assert alarm.method == "POST"
    # sent right after the third failed poll, not before
    polls = [r for r in banapi.requests(EMAILS) if r.when <= alarm.when]
    assert len(polls) == 3, "alarm after %d polls" % len(polls)
    body = check_alarm_fields(alarm)
    assert body["last_success"] is None, body
    # the outage goes on: no second alarm over three more failed polls
    mark = banapi.mark()
    wait_polls_after(banapi, mark, 4)
    assert len(alarms(banapi)) == 1, alarms(banapi)


def test_alarm_after_a_success_names_the_last_success(smtpd, banapi,
                                                      cache):
    t0 = time.time()
    srv = start(smtpd, banapi, cache)
    wait_first_poll(banapi, srv)
    t1 = time.time()
    mark = banapi.fail_lists(Answer(503))
    got = banapi.wait_requests(ALARM, 1, 3 * POLL + 5.0)
    assert got, "no alarm after 3 failed polls"
    alarm = got[0]
    failed = [r for r in banapi.requests(EMAILS, mark=mark)
              if r.when <= alarm.when]
    assert len(failed) == 3, "alarm after %d failed polls" % len(failed)
    body = check_alarm_fields(alarm)
    assert isinstance(body["last_success"], str), body
    when = parse_rfc3339(body["last_success"])
    assert int(t0) - 1 <= when <= t1 + 1, (body, t0, t1)
    mark = banapi.mark()
    wait_polls_after(banapi, mark, 4)
    assert len(alarms(banapi)) == 1, alarms(banapi)


def test_recovery_then_a_new_outage_sends_a_second_alarm(smtpd, banapi,
                                                         cache):
    banapi.fail_lists(Answer(500))
    srv = start(smtpd, banapi, cache)
    assert banapi.wait_requests(ALARM, 1, 3 * POLL + 5.0), "no first alarm"
    mark = banapi.set_lists(["127.0.0.1/32"])
    # the first poll after recovery has finished once the next one asks
    wait_polls_after(banapi, mark, 2)
    assert is_banned(srv.port)
    assert len(alarms(banapi)) == 1, alarms(banapi)
    t_ok = time.time()
    mark = banapi.fail_lists(Answer(500))
    got = banapi.wait_requests(ALARM, 1, 3 * POLL + 5.0, mark=mark)
    assert got, "no alarm for the second outage"
    failed = [r for r in banapi.requests(EMAILS, mark=mark)
              if r.when <= got[0].when]
    assert len(failed) == 3, "alarm after %d failed polls" % len(failed)
    body = check_alarm_fields(got[0])
    assert isinstance(body["last_success"], str), body
    assert parse_rfc3339(body["last_success"]) <= t_ok + 1, body
    mark = banapi.mark()
    wait_polls_after(banapi, mark, 3)
    assert len(alarms(banapi)) == 2, alarms(banapi)
    assert is_banned(srv.port), "the outage lifted the ban"


# --------------------------------------------------------------- cache

def test_restart_with_the_api_down_still_bans_from_the_cache(
        smtpd, banapi, cache):
    banapi.set_lists(["127.0.0.1/32"], ["@evil.test"])
    first = start(smtpd, banapi, cache)
    assert wait_banned(first.port, timeout=START_POLL_WAIT)
    assert wait_for(cache.exists, 3.0), "no cache file written"
    assert first.stop() == 0
    banapi.down()
    second = start(smtpd, banapi, cache)
    # banned from the very first session, before any poll could succeed
    assert is_banned(second.port), "the cache did not ban at start"
    got = wait_events(second, "banlist_poll_failed", 3, 3 * POLL + 4.0)
    assert len(got) >= 3, "the API was not down for the second server"
    assert is_banned(second.port), "failed polls lifted the cached ban"


# ----------------------------------------------------- dialogue, senders

@pytest.mark.parametrize("sender,expected", [
    ("bad@example.com", "550 5.7.1"),
    ("bad@EXAMPLE.com", "550 5.7.1"),       # domains compare caselessly
    ("x@EVIL.TEST", "550 5.7.1"),           # "@evil.test": whole domain
    ("someone@evil.test", "550 5.7.1"),
    ("good@example.com", "250 2.1.0"),
    ("bad@example.community", "250 2.1.0"),
    ("x@notevil.test", "250 2.1.0"),
])
def test_blocked_sender_gets_550_5_7_1_at_mail(smtpd, banapi, cache,
                                               sender, expected):
    banapi.set_lists([], ["bad@example.com", "@evil.test"])
    srv = start(smtpd, banapi, cache)
    assert wait_for(lambda: mail_reply(srv.port, "bad@example.com").code
                    == 550, START_POLL_WAIT, interval=0.1), \
        "the sender list never applied"
    assert_reply(mail_reply(srv.port, sender), expected)


def test_unrelated_sender_delivers_while_others_are_blocked(
        smtpd, banapi, cache):
    banapi.set_lists([OTHER + "/32"], ["@evil.test"])
    srv = start(smtpd, banapi, cache)
    assert wait_banned(srv.port, source=OTHER, timeout=START_POLL_WAIT)
    with connect(srv.port) as c:
        c.greeting()
        r = c.deliver(make_message(sender="friend@example.net"),
                      sender="friend@example.net")
        assert_reply(r, "250 2.0.0")
        c.quit()
    [req] = banapi.requests(INBOUND)
    assert req.json()["email"] == "friend@example.net"


def test_banned_client_gets_554_then_503_then_221_on_quit(smtpd, banapi,
                                                          cache):
    banapi.set_lists(["127.0.0.0/8"])
    srv = start(smtpd, banapi, cache)
    assert wait_banned(srv.port, timeout=START_POLL_WAIT)
    with connect(srv.port) as c:
        first = c.reply()
        assert_reply(first, "554 5.7.1")
        assert first.lines[0].startswith("554 5.7.1 " + HOSTNAME), first
        assert_reply(c.cmd("NOOP"), "503 5.7.1")
        assert_reply(c.cmd("EHLO " + "client.test"), "503 5.7.1")
        assert_reply(c.cmd("QUIT"), "221")
        c.expect_closed()
    rejects = [e for e in events(srv, "reject")
               if e.get("reason") == "banned"]
    assert rejects and rejects[-1].get("client_ip") == LOOPBACK, rejects


def test_ipv6_client_banned_by_ipv6_cidr_while_ipv4_is_not(
        smtpd, banapi, cache):
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError as e:
        pytest.skip("cannot bind ::1 here: %s" % e)
    port6 = free_port("::1")
    banapi.set_lists(["::1/128"])
    srv = start(smtpd, banapi, cache, "-l", "[::1]:%d" % port6)
    assert wait_banned(port6, host="::1", timeout=START_POLL_WAIT), \
        "::1 not banned by ::1/128"
    assert not is_banned(srv.port), "127.0.0.1 banned by ::1/128"


def test_sighup_makes_the_fetcher_poll_at_once(smtpd, banapi, cache):
    srv = start(smtpd, banapi, cache, poll=60)
    wait_first_poll(banapi, srv)
    assert not is_banned(srv.port)
    mark = banapi.set_lists(["127.0.0.1/32"])
    srv.signal(signal.SIGHUP)
    assert wait_banned(srv.port, timeout=3.0), \
        "SIGHUP did not make the fetcher poll within 3 s"
    assert len(banapi.requests(SUBNETS, mark=mark)) == 1
    assert srv.proc.poll() is None


# ----------------------------------------------------------- inetd mode

def leave_a_cache(smtpd, banapi, cache, subnets, emails):
    """Run the daemon until its fetcher has cached the lists, stop it:
    a cache is left and no fetcher runs any more."""
    banapi.set_lists(subnets, emails)
    srv = start(smtpd, banapi, cache)
    wait_first_poll(banapi, srv)
    assert wait_for(cache.exists, 3.0), "no cache file written"
    assert srv.stop() == 0
    assert not (cache.parent / "banlist.table").exists()
    banapi.set_lists([], [])    # the API would not ban: the cache does


def test_inetd_session_bans_the_client_from_the_cache_file(
        smtpd, banapi, cache, tmp_path):
    leave_a_cache(smtpd, banapi, cache, ["127.0.0.1/32"], [])
    assert_reply(inetd_first_reply(banapi, cache, tmp_path), "554 5.7.1")


def test_inetd_session_blocks_a_sender_from_the_cache_file(
        smtpd, banapi, cache, tmp_path):
    leave_a_cache(smtpd, banapi, cache, [OTHER + "/32"], ["@evil.test"])
    first, mail = inetd_session(banapi, cache, tmp_path,
                                sender="x@evil.test")
    assert_reply(first, "220")
    assert_reply(mail, "550 5.7.1")


def test_inetd_session_without_cache_or_table_is_not_banned(
        banapi, cache, tmp_path):
    banapi.set_lists(["127.0.0.1/32"], ["@evil.test"])     # never asked
    assert not cache.exists()
    first, mail = inetd_session(banapi, cache, tmp_path,
                                sender="x@evil.test")
    assert_reply(first, "220")
    assert_reply(mail, "250 2.1.0")


def start_fetch_only(banapi, cache, tmp_path):
    """smtpd --fetch-only, once it has published and cached the lists;
    the cache is then removed, so whatever -i applies comes from the
    live table."""
    fetcher = FetchOnly(tmp_path, banapi, cache)
    try:
        assert wait_for(lambda: cache.exists() or
                        fetcher.proc.poll() is not None,
                        START_POLL_WAIT), \
            "fetch-only wrote no cache: %s" % fetcher.log_text()[-2000:]
        assert fetcher.proc.poll() is None, fetcher.log_text()[-2000:]
        assert (cache.parent / "banlist.table").exists()
        cache.unlink()
    except BaseException:
        fetcher.stop()
        raise
    return fetcher


def test_inetd_session_bans_the_client_from_a_running_fetch_only(
        banapi, cache, tmp_path):
    banapi.set_lists(["127.0.0.1/32"])
    fetcher = start_fetch_only(banapi, cache, tmp_path)
    try:
        first = inetd_first_reply(banapi, cache, tmp_path, "inetd1")
        assert_reply(first, "554 5.7.1")
        # the table follows the API: unban, then a session is served
        mark = banapi.set_lists([])
        wait_polls_after(banapi, mark, 2)
        first = inetd_first_reply(banapi, cache, tmp_path, "inetd2")
        assert_reply(first, "220")
    finally:
        status = fetcher.stop()
    assert status == 0, fetcher.log_text()[-2000:]


def test_inetd_session_blocks_a_sender_from_a_running_fetch_only(
        banapi, cache, tmp_path):
    banapi.set_lists([OTHER + "/32"], ["@evil.test"])
    fetcher = start_fetch_only(banapi, cache, tmp_path)
    try:
        first, mail = inetd_session(banapi, cache, tmp_path, "inetd1",
                                    sender="x@evil.test")
        assert_reply(first, "220")
        assert_reply(mail, "550 5.7.1")
        # the table follows the API: unblock, then MAIL passes
        mark = banapi.set_lists([])
        wait_polls_after(banapi, mark, 2)
        first, mail = inetd_session(banapi, cache, tmp_path, "inetd2",
                                    sender="x@evil.test")
        assert_reply(mail, "250 2.1.0")
    finally:
        status = fetcher.stop()
    assert status == 0, fetcher.log_text()[-2000:]


# ----------------------------------------------------- table protection

class TestBuildServer(SmtpdServer):
    __test__ = False
    """The same server, run from ./smtpd-test (XTEST hooks)."""

    @property
    def cmdline(self):
        return [str(SMTPD_TEST)] + self.args


@pytest.fixture
def test_build(tmp_path):
    servers = []

    def start_test_build(*extra):
        if not SMTPD_TEST.exists():
            pytest.fail("%s not found (run make smtpd-test)" % SMTPD_TEST)
        workdir = tmp_path / ("testbuild%d" % len(servers))
        workdir.mkdir()
        port = free_port()
        srv = TestBuildServer(workdir, build_args(port, None, extra),
                              port, None)
        servers.append(srv)
        return srv.start()

    yield start_test_build
    for srv in servers:
        srv.stop()


def test_worker_writing_to_the_table_dies_and_the_table_is_unchanged(
        test_build, banapi, cache):
    banapi.set_lists(["127.0.0.3/32"])
    srv = test_build("-a", banapi.url, "--poll", POLL,
                     "--banlist-cache", str(cache))
    assert wait_banned(srv.port, source="127.0.0.3",
                       timeout=START_POLL_WAIT)
    # a second publish makes the first half of the table live: the one
    # the hook writes to, so a write that got through would show
    banapi.set_lists([OTHER + "/32"], ["@evil.test"])
    assert wait_banned(srv.port, source=OTHER, timeout=2 * POLL + 3)
    assert wait_banned(srv.port, banned=False, source="127.0.0.3")
    assert len(events(srv, "banlist_published")) == 2, \
        events(srv, "banlist_published")

    def state():
        return (is_banned(srv.port, source=OTHER),
                is_banned(srv.port, source="127.0.0.3"),
                is_banned(srv.port),
                mail_reply(srv.port, "x@evil.test").code,
                mail_reply(srv.port, "x@good.test").code)

    before = state()
    assert before == (True, False, False, 550, 250), before

    with connect(srv.port) as c:
        c.greeting()
        c.ehlo()
        c.send("XTEST BANLIST-WRITE\r\n")
        try:
            r = c.reply(timeout=5)
        except ConnectionClosed:
            r = None        # closed without a reply: the worker died
        assert r is None, \
            "the worker survived writing the table: %r" % r
    died = wait_events(srv, "worker_died", 1, 3.0)
    assert died, "no worker_died event; log: %s" % srv.log_text()[-2000:]
    assert died[-1].get("signal") == signal.SIGSEGV, died
    assert srv.proc.poll() is None, "the master died"
    assert state() == before, "the table changed"


# ------------------------------------------------- hostile cache directory

def test_quoted_local_part_does_not_escape_a_blocked_domain(smtpd, banapi,
                                                            cache):
    banapi.set_lists([], ["@spam.org"])
    srv = start(smtpd, banapi, cache)
    assert wait_for(lambda: mail_reply(srv.port, "x@spam.org").code == 550,
                    START_POLL_WAIT, interval=0.1)
    assert_reply(mail_reply(srv.port, '"x y"@spam.org'), "550 5.7.1")
    assert_reply(mail_reply(srv.port, '"x y"@SPAM.ORG'), "550 5.7.1")


@pytest.mark.skipif(os.geteuid() != 0, reason="the master must be root")
def test_fetch_only_master_does_not_follow_a_planted_table_link(
        banapi, cache, tmp_path):
    """The cache directory is the unprivileged user's: a link planted
    there must not make the root master write elsewhere."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"root's file\n")
    os.chmod(victim, 0o600)
    os.symlink(str(victim), str(cache.parent / "banlist.table"))
    banlist_set = ["192.0.2.0/24"]
    banapi.set_lists(banlist_set, [])     # something to cache
    fetcher = FetchOnly(tmp_path, banapi, cache)
    try:
        assert wait_for(lambda: cache.exists() or
                        fetcher.proc.poll() is not None, START_POLL_WAIT)
        assert fetcher.proc.poll() is None, fetcher.log_text()[-2000:]
        table = cache.parent / "banlist.table"
        assert not table.is_symlink() and table.is_file()
        assert victim.read_bytes() == b"root's file\n"
    finally:
        fetcher.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="the master must be root")
def test_cache_planted_as_a_fifo_neither_hangs_nor_loads(smtpd, banapi,
                                                         cache):
    os.mkfifo(str(cache))
    banapi.set_lists(["127.0.0.2/32"], [])
    srv = start(smtpd, banapi, cache)     # the factory waits at most 5 s
    assert not is_banned(srv.port)
