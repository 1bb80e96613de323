"""Health and metrics (SPEC section 7): --health ADDR:PORT starts a
sandboxed process of its own that answers GET /healthz and GET /metrics
(Prometheus text format 0.0.4) from counters in shared memory."""
import http.client
import os
import re
import signal
import socket
import subprocess
import time

import pytest

from conftest import (assert_no_sanitizer_report, LOOPBACK, RCPT, SMTPD,
                      SMTPD_TEST, assert_reply, children, free_port,
                      make_message, wait_for)
from fake_banlist import Answer, FakeBanlistAPI
from test_banlist import cache, wait_first_poll  # noqa: F401 (fixture)
from test_sandbox import split_children

HTTP_TIMEOUT = 5.0

# SPEC section 7: name -> (type, labels)
SPEC_METRICS = {
    "smtpd_sessions_total": ("counter", {"result"}),
    "smtpd_sessions_active": ("gauge", set()),
    "smtpd_messages_total": ("counter", {"status"}),
    "smtpd_replies_total": ("counter", {"code"}),
    "smtpd_firm_request_seconds": ("histogram", set()),
    "smtpd_firm_responses_total": ("counter", {"class"}),
    "smtpd_auth_verdicts_total": ("counter", {"verdict"}),
    "smtpd_banlist_entries": ("gauge", {"list"}),
    "smtpd_banlist_last_success_timestamp_seconds": ("gauge", set()),
    "smtpd_workers": ("gauge", {"state"}),
    "smtpd_worker_deaths_total": ("counter", set()),
    "smtpd_firm_config_errors_total": ("counter", set()),
    "smtpd_dnsbl_refused_total": ("counter", set()),
    "smtpd_tls_certificate_expiry_timestamp_seconds": ("gauge", set()),
    "smtpd_draining": ("gauge", set()),
}
SAMPLE = re.compile(r'^([a-z_]+)(?:\{([^}]*)\})? (\S+)$')


@pytest.fixture
def banapi():
    fake = FakeBanlistAPI().start()
    yield fake
    fake.stop()


def start_health(smtpd, *extra, **kw):
    hport = free_port()
    srv = smtpd("--health", "%s:%d" % (LOOPBACK, hport), *extra, **kw)
    srv.hport = hport
    assert wait_for(lambda: get(srv, "/healthz", check=False) is not None,
                    5), "the health process does not answer"
    return srv


def get(srv, path, method="GET", check=True):
    """(status, headers, body) of one request, or None if refused."""
    c = http.client.HTTPConnection(LOOPBACK, srv.hport, timeout=HTTP_TIMEOUT)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read().decode()
    except OSError:
        if check:
            raise
        return None
    finally:
        c.close()


def metrics(srv):
    """{(name, frozenset(labels)): value} and {name: type}."""
    status, headers, body = get(srv, "/metrics")
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    values, types = {}, {}
    for line in body.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split()
            types[name] = typ
            continue
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, line
        labels = frozenset()
        if m.group(2):
            labels = frozenset(tuple(kv.split("=", 1))
                               for kv in m.group(2).split(","))
        values[(m.group(1), labels)] = float(m.group(3))
    return values, types


def value(vals, name, **labels):
    key = (name, frozenset((k, '"%s"' % v) for k, v in labels.items()))
    return vals.get(key, 0.0)


def deliver(srv):
    with srv.session() as c:
        assert_reply(c.deliver(make_message()), "250 2.0.0")
        c.quit()


def test_every_spec_metric_is_there_with_its_type_and_labels(smtpd):
    srv = start_health(smtpd)
    vals, types = metrics(srv)
    for name, (typ, labels) in SPEC_METRICS.items():
        assert types.get(name) == typ, (name, types.get(name))
        seen = [k for k in vals if k[0].startswith(name)]
        assert seen, name
        for _, ls in seen:
            assert {k for k, _ in ls} <= labels | {"le"}, (name, ls)
    for result in ("served", "refused_max_sessions", "refused_max_per_ip",
                   "banned", "early_talker"):
        assert ("smtpd_sessions_total",
                frozenset({("result", '"%s"' % result)})) in vals
    for cls in ("2xx", "4xx", "5xx", "timeout", "unreachable"):
        assert ("smtpd_firm_responses_total",
                frozenset({("class", '"%s"' % cls)})) in vals
    for v in ("strong", "weak", "none", "fail", "temperror"):
        assert ("smtpd_auth_verdicts_total",
                frozenset({("verdict", '"%s"' % v)})) in vals


def test_one_delivery_adds_exactly_one_session_message_and_verdict(smtpd):
    srv = start_health(smtpd)
    before, _ = metrics(srv)
    deliver(srv)
    after, _ = metrics(srv)

    def diff(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)
    assert diff("smtpd_sessions_total", result="served") == 1
    assert diff("smtpd_messages_total", status="accepted") == 1
    assert diff("smtpd_messages_total", status="rejected") == 0
    # greeting, EHLO, MAIL, RCPT, DATA, end of data, QUIT
    assert diff("smtpd_replies_total", code="220") == 1
    assert diff("smtpd_replies_total", code="250") == 4
    assert diff("smtpd_replies_total", code="354") == 1
    assert diff("smtpd_replies_total", code="221") == 1
    # the default fake DNS answers NXDOMAIN for all: nothing published
    assert diff("smtpd_auth_verdicts_total", verdict="none") == 1
    # the master hears the worker's release a moment after the QUIT
    assert wait_for(lambda: value(metrics(srv)[0],
                                  "smtpd_sessions_active") == 0, 5)


def test_each_refusal_counts_under_its_own_result(smtpd):
    srv = start_health(smtpd, "-c", "1", "-p", "1", "--greet-delay", "300")
    held = srv.connect()
    held.greeting(timeout=5)
    with srv.connect() as c:
        assert c.reply().code == 421          # over --max-sessions 1
    held.quit()
    held.close()
    assert wait_for(lambda: value(metrics(srv)[0],
                                  "smtpd_sessions_active") == 0, 5)
    # an early talker: speaks before the delayed greeting
    s = socket.create_connection((LOOPBACK, srv.port), timeout=5)
    s.sendall(b"EHLO early\r\n")
    assert s.recv(512).startswith(b"554 5.5.1")
    s.close()
    assert wait_for(lambda: value(metrics(srv)[0], "smtpd_sessions_total",
                                  result="early_talker") == 1, 5)
    vals, _ = metrics(srv)
    assert value(vals, "smtpd_sessions_total",
                 result="refused_max_sessions") == 1
    assert value(vals, "smtpd_sessions_total", result="served") == 1
    assert value(vals, "smtpd_replies_total", code="421") == 1
    assert value(vals, "smtpd_replies_total", code="554") == 1


def test_max_per_ip_refusal_counts(smtpd):
    srv = start_health(smtpd, "-p", "1")
    held = srv.connect()
    held.greeting(timeout=5)
    with srv.connect() as c:
        r = c.reply()
        assert (r.code, r.enhanced) == (421, "4.7.0"), r
    held.quit()
    held.close()
    assert wait_for(lambda: value(metrics(srv)[0], "smtpd_sessions_total",
                                  result="refused_max_per_ip") == 1, 5)


def test_a_banned_client_counts_and_the_ban_list_size_shows(
        smtpd, banapi, cache):  # noqa: F811
    banapi.set_lists(["127.0.0.1/32", "192.0.2.0/24"], ["@spam.example"])
    srv = start_health(smtpd, "--poll", "1", "--banlist-cache", str(cache),
                       api=banapi.url)
    assert wait_for(lambda: value(metrics(srv)[0], "smtpd_banlist_entries",
                                  list="subnets") == 2, 10)
    vals, _ = metrics(srv)
    assert value(vals, "smtpd_banlist_entries", list="senders") == 1
    assert abs(value(vals, "smtpd_banlist_last_success_timestamp_seconds")
               - time.time()) < 30
    with srv.connect() as c:
        assert c.reply().code == 554
        c.quit()
    assert wait_for(lambda: value(metrics(srv)[0], "smtpd_sessions_total",
                                  result="banned") == 1, 5)


def test_firm_calls_fill_the_histogram_and_the_response_classes(
        smtpd, banapi, cache):  # noqa: F811
    srv = start_health(smtpd, "--banlist-cache", str(cache), api=banapi.url)
    for _ in range(3):
        deliver(srv)
    vals, _ = metrics(srv)
    assert value(vals, "smtpd_firm_responses_total", **{"class": "2xx"}) == 3
    buckets = sorted(((float(dict(k[1])["le"].strip('"')), v)
                      for k, v in vals.items()
                      if k[0] == "smtpd_firm_request_seconds_bucket"))
    assert len(buckets) == 12 and buckets[-1][0] == float("inf")
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), buckets          # cumulative
    assert counts[-1] == value(vals, "smtpd_firm_request_seconds_count") == 3
    assert value(vals, "smtpd_firm_request_seconds_sum") >= 0


def test_healthz_is_503_while_the_lists_fail_then_200_again(
        smtpd, banapi, cache):  # noqa: F811
    srv = start_health(smtpd, "--poll", "1", "--banlist-cache", str(cache),
                       api=banapi.url)
    wait_first_poll(banapi, srv)
    assert get(srv, "/healthz")[0] == 200
    banapi.fail_lists(Answer(500, b"down"))
    # more than 3 polls of 1 s without a good one
    assert wait_for(lambda: get(srv, "/healthz")[0] == 503, 10)
    status, _, body = get(srv, "/healthz")
    assert status == 503 and "ban-list" in body and body.count("\n") == 1, \
        body
    banapi.set_lists([])
    assert wait_for(lambda: get(srv, "/healthz")[0] == 200, 10)
    assert get(srv, "/healthz")[2] == "ok\n"


def test_firm_config_error_counts_and_healthz_says_why_until_a_2xx(
        smtpd, firm, cache):  # noqa: F811
    srv = start_health(smtpd, "--banlist-cache", str(cache), api=firm.url)
    assert wait_for(lambda: get(srv, "/healthz")[0] == 200, 10)
    assert value(metrics(srv)[0], "smtpd_firm_config_errors_total") == 0
    firm.answer(401, b'{"error": "bad key"}')
    with srv.session() as c:
        assert_reply(c.deliver(make_message()), "451 4.3.5")
        c.quit()
    vals, types = metrics(srv)
    assert types["smtpd_firm_config_errors_total"] == "counter"
    assert value(vals, "smtpd_firm_config_errors_total") == 1
    status, _, body = get(srv, "/healthz")
    assert (status, body) == (503, "firm config error: HTTP 401\n"), body
    # FIRM's answer is right again: the next message clears it
    firm.answer(200)
    deliver(srv)
    assert get(srv, "/healthz")[:3:2] == (200, "ok\n")
    assert value(metrics(srv)[0], "smtpd_firm_config_errors_total") == 1


def test_soft_bounced_replies_count_under_the_code_sent(smtpd):
    srv = start_health(smtpd, "--soft-bounce")
    with srv.session() as c:
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<a@example.net>"), "250 2.1.0")
        assert_reply(c.cmd("RCPT TO:<nobody@elsewhere.example>"),
                     "450 4.1.1")
        c.quit()
    vals, _ = metrics(srv)
    assert value(vals, "smtpd_replies_total", code="450") == 1
    assert value(vals, "smtpd_replies_total", code="550") == 0


def test_other_paths_are_404_other_methods_405_head_has_no_body(smtpd):
    srv = start_health(smtpd)
    assert get(srv, "/")[0] == 404
    assert get(srv, "/metrics/x")[0] == 404
    status, headers, _ = get(srv, "/metrics", method="POST")
    assert status == 405 and headers.get("Allow") == "GET, HEAD"
    assert get(srv, "/healthz", method="DELETE")[0] == 405
    status, headers, body = get(srv, "/metrics", method="HEAD")
    assert status == 200 and body == "" and \
        int(headers["Content-Length"]) > 0


def test_slow_and_huge_requests_do_not_hold_the_health_process(smtpd):
    srv = start_health(smtpd)
    slow = [socket.create_connection((LOOPBACK, srv.hport), timeout=10)
            for _ in range(20)]
    for s in slow:
        s.sendall(b"GET /metr")             # and never the rest
    try:
        # over the connection limit, or not: a scrape still gets through
        # once the slow ones time out (5 s), never hanging for good
        assert wait_for(lambda: (get(srv, "/healthz", check=False) or
                                 (0,))[0] == 200, 12)
        big = socket.create_connection((LOOPBACK, srv.hport), timeout=10)
        big.sendall(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 10000)
        reply = big.recv(100)
        assert reply.startswith(b"HTTP/1.1 431"), reply
        big.close()
    finally:
        for s in slow:
            s.close()


def test_garbage_gets_400(smtpd):
    srv = start_health(smtpd)
    s = socket.create_connection((LOOPBACK, srv.hport), timeout=5)
    s.sendall(b"\x16\x03\x01garbage\r\n\r\n")
    assert s.recv(100).startswith(b"HTTP/1.1 400")
    s.close()


def test_counters_survive_sighup(smtpd):
    srv = start_health(smtpd)
    deliver(srv)
    srv.signal(signal.SIGHUP)
    time.sleep(1)
    deliver(srv)
    vals, _ = metrics(srv)
    assert value(vals, "smtpd_messages_total", status="accepted") == 2


@pytest.mark.worker_deaths
def test_a_killed_worker_counts_as_a_death(smtpd):
    srv = start_health(smtpd, "--spare", "2")
    workers, _ = split_children(srv)
    assert workers
    victim = sorted(workers)[0]
    os.kill(victim, signal.SIGKILL)
    assert wait_for(lambda: value(metrics(srv)[0],
                                  "smtpd_worker_deaths_total") == 1, 5)
    deliver(srv)                # and the MX serves on


def test_the_health_process_is_sandboxed_and_reads_no_client_byte(smtpd):
    srv = start_health(smtpd)
    [line] = [e for e in srv.logs() if e.get("event") == "sandbox" and
              e.get("role") == "health"]
    assert line["seccomp"].startswith("allow-list")
    assert line["chroot"] or line["landlock_fs"]
    # a hostile sender and subject never become a label
    with srv.session() as c:
        c.deliver(make_message(subject='x"} 1 smtpd_evil 1'))
        c.quit()
    _, _, body = get(srv, "/metrics")
    assert "evil" not in body


def health_pid(srv):
    """The pid of the master's child that runs `smtpd health`."""
    for pid in children(srv.proc.pid):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if len(argv) > 1 and argv[1] == b"health":
            return pid
    return None


def masters_gauges(srv):
    vals, _ = metrics(srv)
    return {k: vals.get(k) for k in vals if k[0] in (
        "smtpd_workers", "smtpd_sessions_active", "smtpd_start_time_seconds")}


def test_a_worker_scribbling_on_its_metrics_cannot_change_healthz(smtpd):
    # SPEC 7: what /healthz decides from is written by the master alone;
    # a worker spoils its own counters, never the health answer, and no
    # bytes at all in its slot crash the health process
    srv = start_health(smtpd, "--spare", "2", binary=SMTPD_TEST)
    settled = {("smtpd_workers", frozenset({("state", '"idle"')})): 2.0,
               ("smtpd_workers", frozenset({("state", '"busy"')})): 0.0,
               ("smtpd_sessions_active", frozenset()): 0.0}

    def idle():
        g = masters_gauges(srv)
        return g if all(g.get(k) == v for k, v in settled.items()) else None
    before = wait_for(idle, 5)
    assert before, masters_gauges(srv)
    assert get(srv, "/healthz")[::2] == (200, "ok\n")
    pid = health_pid(srv)
    assert pid
    page = os.sysconf("SC_PAGESIZE")
    for _ in range(3):
        with srv.session() as c:
            r = c.cmd("XTEST METRICS")
            # its own slot, one page, is all of the region it has
            assert r.lines == [
                "451 4.3.0 Local error, try again later metrics: header "
                "not mapped, master's slot not mapped; scribbled over 1 "
                "shared writable mappings (%d bytes)" % page], r.lines
            assert get(srv, "/healthz")[::2] == (200, "ok\n")
            assert get(srv, "/metrics")[0] == 200
            c.quit()
    after = wait_for(idle, 5)
    assert after == before, (before, masters_gauges(srv))
    assert get(srv, "/healthz")[::2] == (200, "ok\n")
    assert health_pid(srv) == pid
    assert srv.proc.poll() is None
    deliver(srv)                # and the MX serves on


@pytest.mark.worker_deaths
def test_a_worker_growing_its_metrics_slot_is_killed(smtpd):
    # mremap() of its one shared page would map the next worker's slot
    srv = start_health(smtpd, "--spare", "2", binary=SMTPD_TEST)
    with srv.session() as c:
        c.send("XTEST METRICS-GROW\r\n")
        c.expect_closed(timeout=3.0)
    assert wait_for(lambda: [e for e in srv.logs(strict=False) if
                             e.get("event") == "worker_died" and
                             e.get("signal") == signal.SIGSYS], 5), \
        srv.log_text()[-2000:]
    assert get(srv, "/healthz")[::2] == (200, "ok\n")
    deliver(srv)


def test_drain_answers_503_draining_and_serves_until_a_second_sigterm(
        smtpd):
    srv = start_health(smtpd, "--drain", "30", "--grace", "5")
    assert get(srv, "/healthz")[0] == 200
    assert value(metrics(srv)[0], "smtpd_draining") == 0
    srv.signal(signal.SIGTERM)
    assert wait_for(lambda: get(srv, "/healthz")[0] == 503, 3)
    assert get(srv, "/healthz")[2] == "draining\n"
    assert value(metrics(srv)[0], "smtpd_draining") == 1
    [e] = [e for e in srv.logs() if e.get("event") == "draining"]
    assert e["seconds"] == 30 and e["level"] == "info", e
    # still serving: a new session delivers
    deliver(srv)
    assert not any(e.get("event") == "stopping" for e in srv.logs())
    t0 = time.monotonic()
    srv.signal(signal.SIGTERM)
    assert srv.wait(10) == 0, srv.stderr()
    assert time.monotonic() - t0 < 5
    assert any(e.get("event") == "stopping" for e in srv.logs())


def test_sighup_during_the_drain_reloads_and_the_drain_goes_on(smtpd):
    srv = start_health(smtpd, "--drain", "30", "--grace", "5")
    srv.signal(signal.SIGTERM)
    assert wait_for(lambda: get(srv, "/healthz")[0] == 503, 3)
    srv.signal(signal.SIGHUP)
    assert wait_for(lambda: any(e.get("event") == "reload"
                                for e in srv.logs(strict=False)), 5)
    deliver(srv)
    assert get(srv, "/healthz")[:3:2] == (503, "draining\n")
    assert srv.proc.poll() is None
    srv.signal(signal.SIGTERM)
    assert srv.wait(10) == 0, srv.stderr()


def test_drain_ends_by_itself_after_its_seconds(smtpd):
    srv = start_health(smtpd, "--drain", "2", "--grace", "5")
    t0 = time.monotonic()
    srv.signal(signal.SIGTERM)
    assert srv.wait(10) == 0, srv.stderr()
    assert 2 <= time.monotonic() - t0 < 4


def test_health_with_inetd_is_refused_naming_the_flag():
    r = subprocess.run([str(SMTPD), "-i", "-r", RCPT, "--spool", "/tmp",
                        "--health", "127.0.0.1:1"], capture_output=True,
                       text=True, timeout=10, stdin=subprocess.DEVNULL)
    assert_no_sanitizer_report(r.stderr)
    assert r.returncode == 1 and "--health" in r.stderr, r.stderr
