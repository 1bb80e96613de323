"""The verifier (SPEC section 1): a worker taken over can neither forge
what FIRM believes nor hand the relay a payload without a verdict.

The test build's hooks act as such a worker: XTEST FORGE hands the
relay a payload naming another sender, token, client and verdict;
XTEST FORGE-CLEAN one with only its own fields but another token in
them; XTEST REPLAY a second payload for a message already sent; XTEST
ESCAPE lists the directory descriptors a worker holds (without
Landlock, each is a way out of its chroot).  What FIRM receives is
the verifier's word and the master's, or nothing.
"""

import os
import re
import time

import pytest

from conftest import (SMTPD_TEST, assert_reply, make_message, wait_for,
                      TOKEN)
from test_sandbox import LOCALERR


def processes(srv):
    """{pid: argv} of the server's process tree."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
            with open("/proc/%s/stat" % pid) as f:
                pgid = int(f.read().rsplit(")", 1)[1].split()[2])
        except OSError:
            continue
        if pgid == srv.proc.pid:
            out[int(pid)] = [a.decode(errors="replace") for a in argv if a]
    return out


def test_the_verifier_runs_sandboxed_as_its_own_process(smtpd):
    srv = smtpd()
    assert wait_for(lambda: any(
        e.get("event") == "sandbox" and e.get("role") == "verifier"
        for e in srv.logs()), 5)
    [e] = [e for e in srv.logs() if e.get("event") == "sandbox" and
           e.get("role") == "verifier"]
    assert e["user"] == "nobody" and e["chroot"], e
    assert "no socket" in e["network"], e
    assert any(argv[1:2] == ["verifier"] for argv in
               processes(srv).values()), processes(srv)


# A session's first message goes to a child with a channel to the relay
# made for it; from its second on (with --max-use 1), one child keeps the
# worker's channel and its own to the relay for the rest of the session.
# Each hook runs both ways.
LATER = pytest.mark.parametrize("earlier", [0, 2], ids=["first", "third"])


def deliver_earlier(c, n):
    """n ordinary messages of the session before the hook's."""
    for i in range(n):
        assert_reply(c.deliver(make_message(msgid="<early-%d@example.net>"
                                            % i)), "250 2.0.0")


@LATER
@pytest.mark.parametrize("hook,field", [("FORGE", "from"),
                                        ("FORGE-SUBJECT", "subject")])
def test_a_payload_naming_any_field_is_refused(smtpd, firm, earlier, hook,
                                              field):
    """Every field is the verifier's or the master's: a worker whose
    payload names one (FORGE: another sender, token, client and a strong
    verdict; FORGE-SUBJECT: another token as the subject) is refused,
    its channel closed, and everyone else served."""
    srv = smtpd(api=firm.url, binary=SMTPD_TEST)
    with srv.session() as c:
        c.ehlo()
        deliver_earlier(c, earlier)
        r = c.cmd("XTEST " + hook)
        # the relay closes the channel of a worker that lies
        assert r.lines[0].startswith(LOCALERR + "forge: relay:"), r.lines
        assert "verdict" not in r.lines[0], r.lines
    time.sleep(1)
    assert len(firm.inbound()) == earlier
    assert wait_for(lambda: [e for e in srv.logs()
                             if e.get("event") == "payload_refused"], 5)
    [e] = [e for e in srv.logs() if e.get("event") == "payload_refused"]
    assert e["field"] == field, e
    with srv.session() as c:
        assert_reply(c.deliver(make_message()), "250 2.0.0")
        c.quit()
    # the refused worker's result is dropped with its channel: a stop
    # does not wait for a payload that cannot come
    t0 = time.monotonic()
    assert srv.stop(timeout=10) == 0
    assert time.monotonic() - t0 < 3


@LATER
def test_firm_gets_the_verifiers_sender_token_and_the_masters_client(
        smtpd, firm, earlier):
    srv = smtpd(api=firm.url, binary=SMTPD_TEST)
    with srv.session() as c:
        c.ehlo()
        deliver_earlier(c, earlier)
        r = c.cmd("XTEST FORGE-CLEAN")
        assert r.lines == [LOCALERR + "forge: relay: verdict 1 status 200"], \
            r.lines
    qs = firm.wait_inbound(earlier + 1)
    assert len(qs) == earlier + 1
    for q in qs[:earlier]:
        assert q.json()["token"] == TOKEN, q.json()
    p = qs[-1].json()
    # the message's own From, token and subject: every field the
    # verifier's, none the worker's
    assert p["from"] == "victim@victim.example", p
    assert p["token"] == "FIRM-TOKEN:FORG-EDTO-KEN1", p
    assert p["subject"] == "FIRM-TOKEN:FORG-EDTO-KEN1", p
    assert p["body"] == "hello\r\n" or p["body"] == "hello\n", p["body"]
    assert p["headers"]["subject"] == "FIRM-TOKEN:FORG-EDTO-KEN1", p
    # the client is the one the master saw, the verdict the verifier's
    assert p["client_ip"] == "127.0.0.1", p
    assert p["auth"]["verdict"] != "strong", p["auth"]
    assert p["auth"]["dkim"] == [], p["auth"]


@LATER
def test_nothing_but_one_received_field_rides_above_the_data(smtpd, firm,
                                                             earlier):
    """The worker puts our Received field above the data, outside what
    the field rules read: an Authentication-Results of ours slipped in
    there would reach FIRM in "raw".  The verifier takes one Received
    field and nothing else, or nothing."""
    srv = smtpd(api=firm.url, binary=SMTPD_TEST)
    with srv.session() as c:
        c.ehlo()
        deliver_earlier(c, earlier)
        t0 = time.monotonic()
        r = c.cmd("XTEST FORGE-RECEIVED")
        assert r.lines == [LOCALERR + "forge: relay: verdict 5 status 0"], \
            r.lines
        # the verifier's channel ended without a result: no 5 s wait
        assert time.monotonic() - t0 < 4
    time.sleep(0.5)
    assert len(firm.inbound()) == earlier
    assert [e for e in srv.logs() if e.get("event") == "verifier_refused"]


@LATER
def test_a_second_payload_for_one_message_is_refused(smtpd, firm, earlier):
    srv = smtpd(api=firm.url, binary=SMTPD_TEST)
    with srv.session() as c:
        deliver_earlier(c, earlier)
        assert_reply(c.deliver(make_message()), "250 2.0.0")
        t0 = time.monotonic()
        r = c.cmd("XTEST REPLAY", timeout=20)
        # VERDICT_LOCAL (5): no result of the verifier's for it; within
        # 5 s where no check began, 15 where a child keeps the session
        # (a check may be under way there)
        assert r.lines == [LOCALERR + "replay: relay: verdict 5 status 0"], \
            r.lines
        assert time.monotonic() - t0 < (15 if earlier == 0 else 20)
        c.quit()
    time.sleep(0.5)
    assert len(firm.inbound()) == earlier + 1
    assert [e for e in srv.logs() if e.get("event") == "verdict_missing"]


@LATER
def test_messages_without_payloads_harm_nobody_else(smtpd, firm, earlier):
    """A worker that hands the verifier message after message and the
    relay no payload: the relay keeps at most two of its results (it
    would otherwise hold a thousand, and their descriptors), and
    everyone else is served by the same relay."""
    srv = smtpd(api=firm.url, binary=SMTPD_TEST)
    assert wait_for(lambda: relay_pid(srv), 5)
    relay = relay_pid(srv)
    with srv.session() as c:
        c.ehlo()
        deliver_earlier(c, earlier)
        r = c.cmd("XTEST FLOOD 1000", timeout=60)
        # from the session's second message on, one child keeps the
        # session: the relay ends its channel at the third result nobody
        # sent a payload for, and the worker's channel ends with it
        sent = re.match(re.escape(LOCALERR) + r"flood: (\d+) of 1000 "
                        r"sent$", r.lines[0])
        assert sent and int(sent.group(1)) < 1000, r.lines
    # the relay holds few descriptors: its results were trimmed
    assert wait_for(lambda: len(os.listdir("/proc/%d/fd" % relay)) < 100,
                    20), len(os.listdir("/proc/%d/fd" % relay))
    with srv.session() as c:
        assert_reply(c.deliver(make_message()), "250 2.0.0")
        c.quit()
    assert relay_pid(srv) == relay
    assert not [e for e in srv.logs() if e.get("event") == "relay_exited"]
    assert len(firm.inbound()) == earlier + 1


@pytest.mark.parametrize("max_use", [1, 3])
def test_each_message_of_a_session_gets_its_own_result(smtpd, firm,
                                                       max_use):
    """Many messages in one session, each with its own sender and token:
    each payload carries its own message's, in order, whether one child
    keeps the session (--max-use 1) or each message goes to a child of
    its own (--max-use 3, where a worker serves more than one client)."""
    srv = smtpd("--max-use", str(max_use), api=firm.url)
    tokens = ["FIRM-TOKEN:SESS-IONM-SG%02d" % i for i in range(8)]
    for rnd in range(2):
        with srv.session() as c:
            for i, t in enumerate(tokens):
                sender = "s%d-%d@example.org" % (rnd, i)
                m = make_message(body="Hello\r\n%s\r\n" % t, sender=sender,
                                 msgid="<m%d-%d@example.net>" % (rnd, i))
                assert_reply(c.deliver(m, sender=sender), "250 2.0.0")
            c.quit()
    qs = firm.wait_inbound(2 * len(tokens))
    got = [(q.json()["email"], q.json()["token"]) for q in qs]
    want = [("s%d-%d@example.org" % (rnd, i), t) for rnd in range(2)
            for i, t in enumerate(tokens)]
    assert got == want
    assert not [e for e in srv.logs() if e.get("event") in
                ("verdict_missing", "verifier_refused", "payload_refused")]


def relay_pid(srv):
    for pid, argv in processes(srv).items():
        if argv[1:2] == ["relay"]:
            return pid
    return None


def test_a_worker_holds_no_directory_descriptor(smtpd):
    """With --spool the relay writes the spool: no worker has a
    directory descriptor it could leave its chroot through
    (openat(fd, "../../etc/passwd") on a kernel without Landlock)."""
    srv = smtpd(binary=SMTPD_TEST)
    with srv.session() as c:
        r = c.cmd("XTEST ESCAPE")
        assert r.lines == [LOCALERR + "directory descriptors: none"], \
            r.lines
    with srv.session() as c:
        assert_reply(c.deliver(make_message()), "250 2.0.0")
        c.quit()
    [entry] = srv.read_spool()
    assert entry["token"] == TOKEN
    assert entry["client_ip"] == "127.0.0.1"


def test_the_same_message_name_is_never_written_over(smtpd):
    """The relay writes <id>.json with a link, never over a file that
    is there: a worker repeating another message's id gets 451, and
    the first file stays as it was."""
    srv = smtpd(binary=SMTPD_TEST)
    with srv.session() as c:
        r = c.cmd("XTEST FORGE-CLEAN")
        assert r.lines == [LOCALERR + "forge: relay: verdict 1 status 0"], \
            r.lines
    [first] = srv.read_spool()
    with srv.session() as c:
        r = c.cmd("XTEST FORGE-CLEAN")
        assert r.lines == [LOCALERR + "forge: relay: verdict 5 status 0"], \
            r.lines
    assert srv.read_spool() == [first]
    assert [e for e in srv.logs() if e.get("event") == "spool_error"]


def test_a_kept_session_holds_up_no_stop(smtpd):
    """A session of two messages (the second checked by a child that
    keeps the session) that the client drops: SIGTERM ends the server
    at once, not after the relay's wait for a payload that never
    comes."""
    srv = smtpd()
    with srv.session() as c:
        deliver_earlier(c, 2)
    time.sleep(0.3)
    t0 = time.monotonic()
    assert srv.stop(timeout=10) == 0
    assert time.monotonic() - t0 < 3


def test_sessions_begun_while_the_verifier_is_behind_lose_no_message(smtpd):
    # The master's control socket to the verifier holds what its send
    # buffer does.  While the verifier is stopped, sessions begin and
    # end, and workers are forked to replace them, until it is full: a
    # session whose worker's channel cannot be handed over is refused at
    # once (421), never accepted with a channel the verifier does not
    # hold, whose message would hear 451 after 5 s.
    import signal
    from conftest import children
    srv = smtpd()
    [v] = [p for p in children(srv.proc.pid)
           if processes(srv).get(p, [])[1:2] == ["verifier"]]
    greetings = []
    os.kill(v, signal.SIGSTOP)
    try:
        for _ in range(1500):           # until the socket is full
            if 421 in greetings[-20:]:
                break
            c = srv.connect()
            try:
                r = c.reply()
                greetings.append(r.code)
                if r.code == 220:
                    c.cmd("QUIT")
            finally:
                c.close()
    finally:
        os.kill(v, signal.SIGCONT)
    assert 421 in greetings, greetings
    # the verifier catches up; a 421 meanwhile is the sender's to retry
    t0 = time.monotonic()
    sent = 0
    for _ in range(200):
        if sent == 24:
            break
        c = srv.connect()
        try:
            if c.reply().code == 421:
                time.sleep(0.05)
                continue
            assert_reply(c.deliver(make_message(
                msgid="<behind-%d@example.net>" % sent)), "250 2.0.0")
            sent += 1
            c.cmd("QUIT")
        finally:
            c.close()
    assert sent == 24
    assert time.monotonic() - t0 < 20
    assert len(srv.spool_files()) == 24
