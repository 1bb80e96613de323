"""The FIRM API client: POST /inbound (SPEC sections 3, 4, 5).

smtpd runs with -a http://127.0.0.1:PORT against the fake FIRM API of
tests/fakes/fake_firm.py (the `firm` fixture), a real HTTP/1.1 server in the
test process that records every request and answers as each test says.
mime.c is being rewritten: decoded subject/body are checked loosely.
"""

import base64
import datetime
import hashlib
import hmac
import json
import os
import re
import time

import pytest

from conftest import (after_auth_results, HELO, HOSTNAME, LOOPBACK, RCPT, SENDER, TOKEN,
                      assert_reply, free_port, make_message, reply_id,
                      run_smtpd, wait_for)

SECTION_4_KEYS = ("email", "recipients", "token", "subject", "body",
                  "headers", "spf_result", "dkim_result", "client_ip",
                  "helo", "tls", "message_id", "received_at", "size", "raw")
SECRET = b"s3cret"
LOG_WAIT = 3.0


# ---------------------------------------------------------------- helpers

def deliver(srv, message=None, sender=SENDER, helo=HELO, timeout=5.0):
    """One session, one message, QUIT; returns the end-of-data reply."""
    if message is None:
        message = make_message()
    with srv.session(timeout) as c:
        r = c.deliver(message, sender=sender, helo=helo)
        c.quit()
    return r


def only_request(firm):
    """The one request the fake received (fails on none or several)."""
    reqs = firm.wait_inbound(1)
    assert len(reqs) == 1, "expected exactly one request, got %r" % reqs
    return reqs[0]


def one_header(req, name):
    values = req.header(name)
    assert len(values) == 1, "%s: %r in %r" % (name, values, req.headers)
    return values[0]


def events(srv, name):
    return [x for x in srv.logs() if x.get("event") == name]


def wait_event(srv, name, n=1):
    """The log events called name once there are n of them (bounded)."""
    found = wait_for(lambda: len(events(srv, name)) >= n, LOG_WAIT)
    got = events(srv, name)
    assert found, "no %d %r event(s) in the log: %r" % (n, name,
                                                        srv.log_text()[-2000:])
    return got


def error_reply(srv, firm, status, body, content_type="application/json"):
    """Deliver against an API answering status/body; the 554 line."""
    firm.answer(status, body, content_type=content_type)
    r = deliver(srv)
    assert_reply(r, "554 5.7.0")
    assert len(r.lines) == 1, r
    only_request(firm)
    return r.lines[0]


def printable_ascii(text):
    return all(0x20 <= ord(ch) < 0x7f for ch in text)


@pytest.fixture
def api(smtpd, firm):
    """A server posting to the fake FIRM API with the default flags."""
    return smtpd(api=firm.url)


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "api-secret"
    path.write_bytes(SECRET + b"\n")
    os.chmod(path, 0o600)
    return path


# ---------------------------------------------------------------- request

def test_inbound_is_a_json_post_to_inbound(api, firm):
    assert_reply(deliver(api), "250 2.0.0")
    req = only_request(firm)
    assert req.method == "POST"
    assert req.path == "/inbound"
    ctype = one_header(req, "Content-Type")
    assert ctype.split(";")[0].strip().lower() == "application/json", ctype
    assert int(one_header(req, "Content-Length")) == len(req.body)


def test_inbound_body_holds_every_section_4_field(api, firm):
    before = time.time()
    assert_reply(deliver(api), "250 2.0.0")
    payload = only_request(firm).json()
    assert isinstance(payload, dict)
    missing = [k for k in SECTION_4_KEYS if k not in payload]
    assert not missing, "missing keys %r in %r" % (missing, payload)
    assert payload["email"] == SENDER
    assert payload["recipients"] == [RCPT]
    assert payload["token"] == TOKEN
    assert isinstance(payload["subject"], str)
    assert isinstance(payload["body"], str) and TOKEN in payload["body"]
    headers = payload["headers"]
    assert isinstance(headers, dict)
    for name in ("from", "subject", "message-id"):
        assert name in headers, headers
    assert payload["spf_result"] == "none"
    assert payload["dkim_result"] == "none"
    assert payload["client_ip"] == LOOPBACK
    assert payload["helo"] == HELO
    assert payload["tls"] is None
    assert payload["message_id"] == "<test-1@example.net>"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ",
                        payload["received_at"]), payload["received_at"]
    when = datetime.datetime.strptime(
        payload["received_at"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()
    assert before - 60 < when < time.time() + 60, payload["received_at"]
    assert isinstance(payload["size"], int) and payload["size"] > 0


def test_inbound_raw_is_the_message_after_our_received_header(api, firm):
    message = make_message()
    assert_reply(deliver(api, message), "250 2.0.0")
    payload = only_request(firm).json()
    raw = base64.b64decode(payload["raw"], validate=True)
    assert payload["size"] == len(raw)
    raw = after_auth_results(raw)
    assert raw.startswith(b"Received:"), raw[:200]
    assert raw.endswith(message), raw[-300:]
    assert len(raw) > len(message)


def test_api_url_path_prefix_and_trailing_slash_are_kept(smtpd, firm):
    srv = smtpd(api=firm.url + "/v1/")
    assert_reply(deliver(srv), "250 2.0.0")
    assert only_request(firm).path == "/v1/inbound"


# ---------------------------------------------------------------- replies

@pytest.mark.parametrize("status", [200, 201])
def test_api_2xx_gives_250_with_the_message_id(api, firm, status):
    firm.answer(status)
    r = deliver(api)
    assert_reply(r, "250 2.0.0")
    reply_id(r)
    only_request(firm)


@pytest.mark.parametrize("status", [400, 422])
def test_api_4xx_gives_554_with_the_first_line_of_its_json_error(
        api, firm, status):
    line = error_reply(api, firm, status,
                       json.dumps({"error": "token unknown\nsecond"}))
    assert line.startswith("554 5.7.0 "), line
    assert line.endswith("token unknown"), line
    assert "second" not in line, line


def test_api_4xx_plain_text_body_gives_its_first_line(api, firm):
    line = error_reply(api, firm, 400, b"bad token\r\nmore",
                       content_type="text/plain")
    assert line.startswith("554 5.7.0 "), line
    assert line.endswith("bad token"), line
    assert "more" not in line, line


@pytest.mark.parametrize("body,content_type", [
    (json.dumps({"error": "bad\u0001\u001b[31m t\u00f6ken\u007f end"}),
     "application/json"),
    (b"bad\x01\x1b[31m t\xc3\xb6ken\x7f\xff end", "text/plain"),
], ids=["json", "raw-bytes"])
def test_api_error_with_control_and_non_ascii_is_made_printable(
        api, firm, body, content_type):
    line = error_reply(api, firm, 422, body, content_type)
    assert printable_ascii(line), repr(line)
    assert "\x1b" not in line
    assert line.startswith("554 5.7.0 bad"), line
    assert line.endswith(" end"), line


def test_api_error_over_200_chars_is_cut_to_200(api, firm):
    error = "".join("%03d-" % i for i in range(75))        # 300 chars
    line = error_reply(api, firm, 400, json.dumps({"error": error}))
    assert line.startswith("554 5.7.0 "), line
    text = line[len("554 5.7.0 "):]
    assert text, line
    assert error.startswith(text), line
    assert len(text) <= 200, (len(text), line)


@pytest.mark.parametrize("status", [408, 429, 500, 503])
def test_api_retryable_status_gives_451_4_4_0_and_no_retry(
        api, firm, status):
    firm.answer(status, json.dumps({"error": "busy"}))
    r = deliver(api)
    assert_reply(r, "451 4.4.0")
    only_request(firm)      # exactly one: smtpd does not retry or queue


@pytest.mark.parametrize("status", [401, 403, 404, 405])
def test_api_config_error_gives_451_4_3_5_without_firms_text(
        api, firm, status):
    firm.answer(status, json.dumps({"error": "bad api key k3y"}))
    r = deliver(api)
    assert_reply(r, "451 4.3.5")
    assert len(r.lines) == 1, r
    assert "k3y" not in r.lines[0] and "api key" not in r.lines[0], r
    only_request(firm)      # one call: nothing retried or queued


def test_api_config_error_is_logged_as_an_error_with_the_status(api, firm):
    firm.answer(401, json.dumps({"error": "bad api key"}))
    assert_reply(deliver(api), "451 4.3.5")
    [event] = wait_event(api, "firm_config_error")
    assert event["level"] == "error", event
    assert event["status"] == 401, event
    [message] = wait_event(api, "message")
    assert message["status"] == "tempfail", message
    assert event["session"] == message["session"], (event, message)


def test_api_413_gives_552_5_3_4(api, firm):
    firm.answer(413, json.dumps({"error": "payload too large"}))
    r = deliver(api)
    assert_reply(r, "552 5.3.4")
    assert "payload too large" not in r.lines[0], r
    only_request(firm)
    assert events(api, "firm_config_error") == []


def test_api_slower_than_api_timeout_gives_451_4_4_2_in_time(smtpd, firm):
    srv = smtpd("--api-timeout", 1, api=firm.url)
    firm.answer(200, delay=4.0)
    with srv.session(timeout=10) as c:
        c.envelope()
        t0 = time.monotonic()
        r = c.send_data(make_message(), timeout=10)
        elapsed = time.monotonic() - t0
        assert_reply(r, "451 4.4.2")
        c.quit()
    assert 0.5 <= elapsed < 10, elapsed
    only_request(firm)


def test_api_never_answering_gives_451_4_4_2_in_time(smtpd, firm):
    srv = smtpd("--api-timeout", 1, api=firm.url)
    firm.answer(hang=True)
    with srv.session(timeout=10) as c:
        c.envelope()
        t0 = time.monotonic()
        r = c.send_data(make_message(), timeout=10)
        elapsed = time.monotonic() - t0
        assert_reply(r, "451 4.4.2")
        c.quit()
    assert 0.5 <= elapsed < 10, elapsed
    only_request(firm)


def test_api_closed_port_gives_451_4_4_1(smtpd):
    srv = smtpd(api="http://%s:%d" % (LOOPBACK, free_port()))
    assert_reply(deliver(srv), "451 4.4.1")


def test_message_without_token_is_not_posted(api, firm):
    message = make_message(body="Hello, no token here\r\n")
    assert_reply(deliver(api, message), "550 5.7.0")
    assert firm.wait_inbound(1, timeout=0.5) == []


# ---------------------------------------------------------------- signature

def test_api_secret_signs_with_timestamp_and_hmac_sha256(
        smtpd, firm, secret_file):
    srv = smtpd("--api-secret", secret_file, api=firm.url)
    assert_reply(deliver(srv), "250 2.0.0")
    req = only_request(firm)
    ts = one_header(req, "X-Firm-Timestamp")
    assert re.fullmatch(r"\d+", ts), ts
    assert abs(int(ts) - time.time()) < 60, ts
    sig = one_header(req, "X-Firm-Signature")
    expected = hmac.new(SECRET, ts.encode() + b"." + req.body,
                        hashlib.sha256).hexdigest()
    assert sig.lower() == expected, (sig, expected)


def test_without_api_secret_requests_are_not_signed(api, firm):
    assert_reply(deliver(api), "250 2.0.0")
    only_request(firm)
    for req in firm.received():         # /inbound and any banlist poll
        assert req.header("X-Firm-Timestamp") == [], req
        assert req.header("X-Firm-Signature") == [], req


def test_api_secret_never_appears_in_logs(smtpd, firm, secret_file):
    srv = smtpd("--api-secret", secret_file, api=firm.url)
    firm.answer(422, json.dumps({"error": "no"}))
    assert_reply(deliver(srv), "554 5.7.0")
    wait_event(srv, "message")
    srv.stop()
    assert SECRET.decode() not in srv.log_text() + srv.stderr()


# ---------------------------------------------------------------- idempotency

def idempotency_key(req):
    key = one_header(req, "Idempotency-Key")
    assert key and printable_ascii(key) and len(key) <= 255, key
    return key


def test_inbound_carries_an_idempotency_key(api, firm):
    assert_reply(deliver(api), "250 2.0.0")
    idempotency_key(only_request(firm))


def test_different_messages_get_different_idempotency_keys(api, firm):
    assert_reply(deliver(api, make_message(msgid="<a@example.net>")),
                 "250 2.0.0")
    assert_reply(deliver(api, make_message(msgid="<b@example.net>")),
                 "250 2.0.0")
    reqs = firm.wait_inbound(2)
    assert len(reqs) == 2, reqs
    assert idempotency_key(reqs[0]) != idempotency_key(reqs[1])


def test_same_data_from_another_sender_gets_another_key(api, firm):
    message = make_message()
    assert_reply(deliver(api, message, sender="one@example.net"),
                 "250 2.0.0")
    assert_reply(deliver(api, message, sender="two@example.net"),
                 "250 2.0.0")
    reqs = firm.wait_inbound(2)
    assert len(reqs) == 2, reqs
    assert idempotency_key(reqs[0]) != idempotency_key(reqs[1])


def test_retried_message_gets_the_same_idempotency_key(api, firm):
    message = make_message()
    firm.answer_once(503)
    assert_reply(deliver(api, message), "451 4.4.0")
    assert_reply(deliver(api, message), "250 2.0.0")
    reqs = firm.wait_inbound(2)
    assert len(reqs) == 2, reqs
    # our Received header differs between the tries (session, date) ...
    assert reqs[0].json()["raw"] != reqs[1].json()["raw"]
    # ... and is left out of the key, so the sender's retry matches
    assert idempotency_key(reqs[0]) == idempotency_key(reqs[1])


# ---------------------------------------------------------------- headers

def test_nothing_from_the_message_reaches_an_http_header(api, firm):
    message = make_message(extra=("X-Inject: foo",
                                  "Idempotency-Key: evil",
                                  "X-Firm-Signature: evil",
                                  "Content-Type: text/plain; evil=1"))
    r = deliver(api, message, sender="evil@example.net", helo="evil.test")
    assert_reply(r, "250 2.0.0")
    req = only_request(firm)
    for other in firm.received():       # /inbound and any banlist poll
        for name, value in other.headers:
            assert "evil" not in (name + value).lower(), other
            assert name.lower() != "x-inject", other
    assert req.header("X-Firm-Signature") == []
    idempotency_key(req)
    # the message itself did arrive, in the body
    assert "evil" in req.body.decode("utf-8")


# ---------------------------------------------------------------- sessions

def test_each_message_of_a_session_is_posted_once(api, firm):
    tokens = ["FIRM-TOKEN:AAAA-BBBB-000%d" % i for i in range(3)]
    messages = [make_message(body="verify %s\r\n" % t,
                             msgid="<m%d@example.net>" % i)
                for i, t in enumerate(tokens)]
    with api.session() as c:
        assert_reply(c.deliver(messages[0]), "250 2.0.0")
        assert_reply(c.cmd("RSET"), "250")
        assert_reply(c.deliver(messages[1], helo=None), "250 2.0.0")
        # a new MAIL straight after the 250, without RSET
        assert_reply(c.deliver(messages[2], helo=None), "250 2.0.0")
        c.quit()
    firm.wait_inbound(3)
    time.sleep(0.2)                 # a duplicate would show up by now
    reqs = firm.inbound()
    assert [q.json()["token"] for q in reqs] == tokens, reqs
    assert all(q.path == "/inbound" for q in reqs)


# ---------------------------------------------------------------- logs

def test_log_message_accepted_when_api_says_200(api, firm):
    r = deliver(api)
    assert_reply(r, "250 2.0.0")
    [message] = wait_event(api, "message")
    assert message["status"] == "accepted", message
    assert message["token"] == TOKEN, message
    assert message["id"] == reply_id(r), message
    assert events(api, "firm_error") == []
    assert events(api, "firm_refused") == []


def test_log_rejected_and_firm_refused_when_api_says_422(api, firm):
    firm.answer(422, json.dumps({"error": "token unknown"}))
    assert_reply(deliver(api), "554 5.7.0")
    [message] = wait_event(api, "message")
    assert message["status"] == "rejected", message
    assert message["reply"].startswith("554 5.7.0"), message
    [refused] = wait_event(api, "firm_refused")
    assert refused["status"] == 422, refused
    assert refused["session"] == message["session"], (refused, message)


def test_log_tempfail_and_firm_refused_when_api_says_503(api, firm):
    firm.answer(503)
    assert_reply(deliver(api), "451 4.4.0")
    [message] = wait_event(api, "message")
    assert message["status"] == "tempfail", message
    [refused] = wait_event(api, "firm_refused")
    assert refused["status"] == 503, refused


def test_log_tempfail_and_firm_error_when_api_unreachable(smtpd):
    srv = smtpd(api="http://%s:%d" % (LOOPBACK, free_port()))
    assert_reply(deliver(srv), "451 4.4.1")
    [message] = wait_event(srv, "message")
    assert message["status"] == "tempfail", message
    [error] = wait_event(srv, "firm_error")
    assert error["session"] == message["session"], (error, message)
    assert error.get("error"), error


def test_log_tempfail_and_firm_error_when_api_times_out(smtpd, firm):
    srv = smtpd("--api-timeout", 1, api=firm.url)
    firm.answer(hang=True)
    assert_reply(deliver(srv, timeout=10), "451 4.4.2")
    [message] = wait_event(srv, "message")
    assert message["status"] == "tempfail", message
    [error] = wait_event(srv, "firm_error")
    assert error["session"] == message["session"], (error, message)


# ---------------------------------------------------------------- flags

def assert_bad_flag(args, pattern):
    # -d keeps a server that wrongly starts in the foreground, where
    # run_smtpd's bounded wait kills it.
    status, out, err = run_smtpd(["-d", "-l", "%s:%d" % (LOOPBACK,
                                                         free_port()),
                                  "-H", HOSTNAME, "-r", RCPT] + args)
    assert status == 1, (status, err)
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert re.search(pattern, lines[0]), err


def test_api_with_ftp_url_exits_1_naming_api():
    assert_bad_flag(["-a", "ftp://x"], r"--api(?![\w-])")


def test_api_secret_missing_file_exits_1_naming_it():
    assert_bad_flag(["-a", "http://127.0.0.1:1",
                     "--api-secret", "/nonexistent/api-secret"],
                    r"--api-secret")


def test_api_secret_empty_file_exits_1_naming_it(tmp_path):
    empty = tmp_path / "empty-secret"
    empty.write_bytes(b"\n")
    assert_bad_flag(["-a", "http://127.0.0.1:1", "--api-secret", empty],
                    r"--api-secret")


def test_api_secret_without_api_exits_1_naming_it(spool_dir, secret_file):
    assert_bad_flag(["--spool", spool_dir, "--api-secret", secret_file],
                    r"--api-secret")


def test_refused_api_secret_leaves_no_spool_dir(spool_dir, secret_file):
    # like every other refused flag (test_lifecycle.assert_bad_flag)
    assert_bad_flag(["--spool", spool_dir, "--api-secret", secret_file],
                    r"--api-secret")
    assert not os.path.exists(spool_dir), "refused flags created the spool"


def test_ca_file_missing_exits_1_naming_it():
    assert_bad_flag(["-a", "https://127.0.0.1:1",
                     "--ca-file", "/nonexistent/ca.pem"], r"--ca-file")


def test_api_timeout_zero_exits_1_naming_it():
    assert_bad_flag(["-a", "http://127.0.0.1:1", "--api-timeout", "0"],
                    r"--api-timeout")


def test_config_test_with_api_exits_0():
    status, out, err = run_smtpd(["-n", "-r", RCPT,
                                  "-a", "http://127.0.0.1:1"])
    assert status == 0, err
    assert "configuration OK" in out
