#!/usr/bin/python3
"""soak.py - fault-injection soak of smtpd against a failing FIRM API.

Starts the real ./smtpd on 127.0.0.1 with -a pointing at a fake FIRM API
on loopback (tests/fakes/fake_firm.py) and a fake DNS server (tests/fakes/fake_dns.py,
NXDOMAIN for every name, so no lookup leaves the machine), then sends
--messages distinct messages from --concurrency client threads, one
session per try, each with its own FIRM-TOKEN.  The fake answers 200 to
most /inbound calls and fails --fault-rate of them (default 20 %), spread
evenly over six faults:

    500, 503, 429   that HTTP status, at once
    stall           200, but only after --api-timeout + --stall-extra
                    seconds (bounded; released when the fake stops)
    drop-before     the request read, the connection closed (FIN), no
                    answer
    drop-after      the whole 200 answer sent, then a reset (RST): FIRM
                    has the message; whether smtpd saw the answer
                    depends on timing

The fault of a call is a hash of (--seed, Idempotency-Key, how many calls
that key had before), so a run is reproducible whatever the thread
schedule.  A message answered 4xx is sent again, the same bytes, on a new
connection, up to --tries times, as a sending MTA would.

Printed: per FIRM outcome of a try, the SMTP replies seen (code and
enhanced code) and totals.  A try's outcome is the answers to its calls
in order: libcurl sends a request again, once, when a kept-alive
connection closes before any answer ("drop-before > 200"); smtpd's reply
follows the last.  Then the calls, the "late answers" (messages FIRM
accepted whose answer reached smtpd too late or never), smtpd's own
metrics, and messages per second.

Exit 1, with a line naming each problem, when:
  - a message got 250 without FIRM having answered 2xx to a call with
    its key in that try;
  - a try whose call FIRM answered 200 promptly did not get 250, or a
    message FIRM 2xx'd ended without 250 and none of its 2xx answers was
    late (stall, drop-after, or a call after the reply);
  - a FIRM 500/503/429/stall/drop ever gave 250 or a 5xx, or not the
    451 of SPEC section 3 (4.4.0 for 5xx/429, 4.4.2 for a timeout,
    4.4.1 for an unreachable API);
  - a retried message's Idempotency-Key changed, two messages shared one,
    or a call came without exactly one key;
  - a worker died (log events worker_died/worker_failed, or
    smtpd_worker_deaths_total on --health), the relay, fetcher or health
    process exited, or smtpd's message counters disagree with the
    replies the clients saw;
  - the server refused, closed or did not answer a session, an SMTP
    exchange took longer than its bound, or the run its --time-limit;
  - smtpd was not alive at the end, or did not exit 0 on SIGTERM.

smtpd's log and ban-list cache go to a new directory in /dev/shm when
that is a tmpfs (smtpd -d writes its log synchronously: a disk stalling
for seconds on a busy machine would stall it too), removed at the end
unless --keep.

Usage (as root, from anywhere; make build first):
    /usr/bin/python3 bench/soak.py                    # 10000 messages
    /usr/bin/python3 bench/soak.py --messages 500 --seed 7
Knobs: --binary (or SMTPD_BINARY), --messages, --concurrency, --seed,
--fault-rate, --api-timeout, --stall-extra, --tries, --time-limit,
--keep (keep the work directory and smtpd's log).
"""

import argparse
import collections
import hashlib
import http.client
import json
import os
import pathlib
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "fakes"))
from fake_dns import FakeDNS  # noqa: E402
from fake_firm import Answer, FakeFirm  # noqa: E402

LOOPBACK = "127.0.0.1"
HOSTNAME = "soak.test"
RCPT = "verify@localhost"
SENDER = "soak@example.net"
HELO = "client.soak.test"
TOKEN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"     # SPEC 4

FAULTS = ("500", "503", "429", "stall", "drop-before", "drop-after")
OUTCOMES = ("200",) + FAULTS
FIRM_2XX = ("200", "stall", "drop-after")   # FIRM has the message
LATE_2XX = ("stall", "drop-after")          # ... the answer may be lost
# SPEC section 3 and the reply table in reply.c
EXPECTED = {
    "200": {"250 2.0.0"},
    "500": {"451 4.4.0"},
    "503": {"451 4.4.0"},
    "429": {"451 4.4.0"},
    "stall": {"451 4.4.2"},
    "drop-before": {"451 4.4.1"},
    "drop-after": {"250 2.0.0", "451 4.4.1"},
}

START_TIMEOUT = 10.0    # smtpd listening, /healthz 200
IO_TIMEOUT = 10.0       # connect, greeting, each command's reply
DATA_MARGIN = 10.0      # end-of-data reply: --api-timeout + this
STOP_GRACE = 5          # --grace of the server under test
STOP_TIMEOUT = STOP_GRACE + 10.0
MAX_ERRORS = 20         # client errors before the run is called off
MAX_LISTED = 10         # examples printed per problem
MAX_REPLY_LINES = 50
PROGRESS_EVERY = 15.0   # seconds between progress lines (stderr)
BAD_EVENTS = ("worker_died", "worker_failed", "worker_protocol_error",
              "relay_exited", "fetcher_exited", "health_exited")


# ---------------------------------------------------------------- setup

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def listening(port):
    """Is something listening on port (from /proc/net/tcp: probing
    with a connection would cost a session)?"""
    try:
        with open("/proc/net/tcp") as f:
            rows = f.read().splitlines()[1:]
    except OSError:
        return False
    for row in rows:
        fields = row.split()
        if len(fields) > 3 and fields[3] == "0A" and \
                int(fields[1].rsplit(":", 1)[1], 16) == port:
            return True
    return False


def tmpfs_dir():
    """/dev/shm when it is a tmpfs, else None (the default temporary
    directory).  smtpd -d writes every log line synchronously, from the
    relay's event loop too: on a disk that stalls for seconds (a busy
    shared machine), FIRM calls would time out for the disk's sake."""
    try:
        with open("/proc/mounts") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 2 and fields[1] == "/dev/shm" and \
                        fields[2] == "tmpfs":
                    return "/dev/shm"
    except OSError:
        pass
    return None


def http_get(port, path, timeout=5.0):
    """(status, body) of GET path on loopback, or None."""
    c = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    except OSError:
        return None
    finally:
        c.close()


def wait_for(predicate, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 2):
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)
    return predicate()


def metrics(port):
    """{(name, labels string): float} from /metrics, or None."""
    got = http_get(port, "/metrics")
    if got is None or got[0] != 200:
        return None
    out = {}
    for line in got[1].splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        labels = ""
        if "{" in name:
            name, labels = name.split("{", 1)
            labels = labels.rstrip("}")
        try:
            out[(name, labels)] = float(value)
        except ValueError:
            pass
    return out


# ---------------------------------------------------------------- messages

def make_messages(n, seed):
    """n distinct messages: (token, CRLF bytes), tokens all different."""
    rng = random.Random(seed)
    seen = set()
    out = []
    for i in range(n):
        for _ in range(1000):
            raw = "".join(rng.choice(TOKEN_ALPHABET) for _ in range(12))
            token = "FIRM-TOKEN:%s-%s-%s" % (raw[:4], raw[4:8], raw[8:])
            if token not in seen:
                break
        seen.add(token)
        text = ("From: Soak Sender <%s>\r\n"
                "To: <%s>\r\n"
                "Subject: soak message %d\r\n"
                "Date: Sat, 21 Nov 2026 22:00:00 +0000\r\n"
                "Message-ID: <soak-%d-%d@example.net>\r\n"
                "\r\n"
                "Hello,\r\n"
                "please verify %s\r\n"
                "(message %d of the soak, seed %d)\r\n"
                % (SENDER, RCPT, i, seed, i, token, i, seed))
        out.append((token, text.encode("ascii")))
    return out


# ---------------------------------------------------------------- FIRM

class Firm:
    """The fake FIRM API with the soak's faults; every /inbound call is
    kept: (token, keys, outcome, arrival) and what was sent back."""

    def __init__(self, seed, rate, stall):
        self.seed = seed
        self.rate = rate
        self.answers = {
            "200": Answer(200, label="200"),
            "500": Answer(500, b'{"error":"soak: internal error"}',
                          label="500"),
            "503": Answer(503, b'{"error":"soak: unavailable"}',
                          label="503"),
            "429": Answer(429, b'{"error":"soak: slow down"}', label="429"),
            "stall": Answer(200, delay=stall, label="stall"),
            "drop-before": Answer(200, drop="before", label="drop-before"),
            "drop-after": Answer(200, drop="after", label="drop-after"),
        }
        self.ncalls = collections.Counter()     # key -> calls so far
        self.fake = FakeFirm()

    def start(self):
        self.fake.start()
        self.fake.answer_by(self.choose)
        return self

    @property
    def url(self):
        return self.fake.url

    def outcome(self, key, n):
        """The fault (or "200") of the n-th call (from 0) with key."""
        h = hashlib.sha256(("%d/%s/%d" % (self.seed, key, n)).encode())
        u = int.from_bytes(h.digest()[:8], "big") / 2.0 ** 64
        if u >= self.rate:
            return "200"
        return FAULTS[min(int(u / self.rate * len(FAULTS)),
                          len(FAULTS) - 1)]

    def choose(self, req):
        # runs under the fake's lock, in the handler's thread
        try:
            req.token = req.json().get("token")
        except (ValueError, AttributeError):
            req.token = None
        req.keys = req.header("Idempotency-Key")
        key = req.keys[0] if len(req.keys) == 1 else "?%s" % req.token
        n = self.ncalls[key]
        self.ncalls[key] += 1
        return self.answers[self.outcome(key, n)]

    def calls(self):
        return [r for r in self.fake.inbound() if hasattr(r, "keys")]

    def stop(self):
        self.fake.stop()


# ---------------------------------------------------------------- client

class ClientError(Exception):
    """kind: refused, closed, hung, unexpected."""

    def __init__(self, kind, stage, detail):
        super().__init__("%s at %s: %s" % (kind, stage, detail))
        self.kind = kind
        self.stage = stage


class Try:
    """One try of one message: one SMTP session."""

    def __init__(self, index, number):
        self.index = index
        self.number = number
        self.start = time.monotonic()
        self.data = None        # when the message bytes were sent
        self.end = None         # when the end-of-data reply came
        self.code = None
        self.enhanced = None
        self.line = None
        self.error = None       # ClientError
        self.calls = []         # FIRM calls made for it

    @property
    def reply(self):
        if self.code is None:
            return "no reply"
        return "%d %s" % (self.code, self.enhanced or "-")


class Session:
    """A raw SMTP client session, every read bounded in time."""

    def __init__(self, port):
        self.stage = "connect"
        try:
            self.sock = socket.create_connection((LOOPBACK, port),
                                                 timeout=IO_TIMEOUT)
        except socket.timeout:
            raise ClientError("hung", "connect", "no connection in %.0fs"
                              % IO_TIMEOUT) from None
        except OSError as e:
            raise ClientError("refused", "connect", str(e)) from None
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        try:
            self.sock.settimeout(IO_TIMEOUT)
            self.sock.sendall(data)
        except socket.timeout:
            raise ClientError("hung", self.stage, "send blocked") from None
        except OSError as e:
            raise ClientError("closed", self.stage, str(e)) from None

    def reply(self, timeout):
        """(code, enhanced, first line) of one reply."""
        deadline = time.monotonic() + timeout
        lines = []
        while len(lines) < MAX_REPLY_LINES:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = self.buf[:i].decode("utf-8", "replace")
                self.buf = self.buf[i + 2:]
                if len(line) < 3 or not line[:3].isdigit():
                    raise ClientError("unexpected", self.stage,
                                      "malformed reply %r" % line[:100])
                lines.append(line)
                if len(line) == 3 or line[3] == " ":
                    words = lines[0][4:].split()
                    enh = words[0] if words and \
                        words[0][:2] in ("2.", "4.", "5.") else None
                    return int(line[:3]), enh, lines[0]
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise ClientError("hung", self.stage, "no reply in %.0fs"
                                  % timeout)
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(4096)
            except socket.timeout:
                raise ClientError("hung", self.stage, "no reply in %.0fs"
                                  % timeout) from None
            except OSError as e:
                raise ClientError("closed", self.stage, str(e)) from None
            if not chunk:
                raise ClientError("closed", self.stage,
                                  "connection closed; had %r" % self.buf[:80])
            self.buf += chunk
        raise ClientError("unexpected", self.stage, "reply too long")

    def expect(self, stage, line, code):
        self.stage = stage
        if line is not None:
            self.send(line + b"\r\n")
        got = self.reply(IO_TIMEOUT)
        if got[0] != code:
            raise ClientError("unexpected", stage, got[2][:120])
        return got


def send_once(port, message, t, data_timeout):
    """One session: EHLO, MAIL, RCPT, DATA, the message, QUIT; the
    end-of-data reply goes into t."""
    s = Session(port)
    try:
        s.expect("greeting", None, 220)
        s.expect("EHLO", b"EHLO " + HELO.encode(), 250)
        s.expect("MAIL", b"MAIL FROM:<" + SENDER.encode() + b">", 250)
        s.expect("RCPT", b"RCPT TO:<" + RCPT.encode() + b">", 250)
        s.expect("DATA", b"DATA", 354)
        s.stage = "end of data"
        stuffed = b"\r\n".join(b"." + ln if ln.startswith(b".") else ln
                               for ln in message.split(b"\r\n"))
        t.data = time.monotonic()
        s.send(stuffed + b".\r\n")
        t.code, t.enhanced, t.line = s.reply(data_timeout)
        t.end = time.monotonic()
        s.expect("QUIT", b"QUIT", 221)
    finally:
        s.close()


class Clients:
    """--concurrency threads taking messages from one list."""

    def __init__(self, args, port, messages):
        self.args = args
        self.port = port
        self.messages = messages
        self.tries = [[] for _ in messages]     # per message: [Try]
        self.next = 0
        self.done = 0
        self.errors = []
        self.crashes = []
        self.abort = threading.Event()
        self.lock = threading.Lock()
        self.data_timeout = args.api_timeout + DATA_MARGIN

    def take(self):
        with self.lock:
            if self.abort.is_set() or self.next >= len(self.messages):
                return None
            i = self.next
            self.next += 1
            return i

    def worker(self):
        try:
            for _ in range(len(self.messages) + 1):
                i = self.take()
                if i is None:
                    return
                self.deliver(i)
        except Exception as e:      # a bug here must not pass silently
            with self.lock:
                self.crashes.append(repr(e))
            self.abort.set()

    def deliver(self, i):
        for n in range(1, self.args.tries + 1):
            t = Try(i, n)
            self.tries[i].append(t)
            try:
                send_once(self.port, self.messages[i][1], t,
                          self.data_timeout)
            except ClientError as e:
                t.error = e
                with self.lock:
                    self.errors.append((i, n, e))
                    if len(self.errors) >= MAX_ERRORS:
                        self.abort.set()
                break
            if t.code is None or t.code < 400 or t.code >= 500:
                break           # 250 or 5xx: done
            if self.abort.is_set():
                break
            time.sleep(0.05)    # a (very) impatient MTA's queue
        with self.lock:
            self.done += 1

    def run(self, limit):
        threads = [threading.Thread(target=self.worker, daemon=True)
                   for _ in range(self.args.concurrency)]
        t0 = time.monotonic()
        for th in threads:
            th.start()
        deadline = t0 + limit
        last = t0
        for th in threads:
            for _ in range(int(limit) * 4 + 8):
                th.join(0.25)
                now = time.monotonic()
                if not th.is_alive():
                    break
                if now >= deadline:
                    self.abort.set()
                if now - last >= PROGRESS_EVERY and not self.args.quiet:
                    last = now
                    print("soak: %d/%d messages, %.0f s" %
                          (self.done, len(self.messages), now - t0),
                          file=sys.stderr, flush=True)
                if now >= deadline + self.data_timeout + 2 * IO_TIMEOUT:
                    break
        stuck = sum(th.is_alive() for th in threads)
        return time.monotonic() - t0, stuck


# ---------------------------------------------------------------- smtpd

class Smtpd:
    def __init__(self, args, workdir, firm_url, resolver):
        self.port = free_port()
        self.hport = free_port()
        cache = workdir / "cache"
        cache.mkdir()
        os.chmod(cache, 0o777)      # the fetcher runs as the unprivileged user
        conc = args.concurrency
        self.argv = [
            str(args.binary), "-d", "-l", "%s:%d" % (LOOPBACK, self.port),
            "-H", HOSTNAME, "-r", RCPT, "-a", firm_url,
            "--api-timeout", str(args.api_timeout),
            "--resolver", resolver,
            "--health", "%s:%d" % (LOOPBACK, self.hport),
            "--banlist-cache", str(cache / "banlist.json"),
            "-c", str(max(100, 4 * conc)), "-p", str(max(100, 4 * conc)),
            "--spare", str(conc), "--grace", str(STOP_GRACE)]
        self.log = workdir / "smtpd.log"
        self.err = workdir / "smtpd.stderr"
        self.proc = None

    def start(self):
        with open(self.log, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(
                self.argv, cwd=str(REPO), stdin=subprocess.DEVNULL,
                stdout=out, stderr=err, start_new_session=True)
        ok = wait_for(lambda: self.proc.poll() is not None or
                      (listening(self.port) and
                       (http_get(self.hport, "/healthz") or (0,))[0] == 200),
                      START_TIMEOUT, 0.1)
        if self.proc.poll() is not None:
            raise SystemExit("soak: smtpd exited with %s at start: %s"
                             % (self.proc.returncode, self.stderr()[-500:]))
        if not ok:
            self.kill()
            raise SystemExit("soak: smtpd not listening and healthy within "
                             "%.0fs: %r" % (START_TIMEOUT,
                                            http_get(self.hport, "/healthz")))

    def stderr(self):
        try:
            return self.err.read_text(errors="replace")
        except OSError:
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGTERM, bounded wait; (exit status or None, seconds)."""
        t0 = time.monotonic()
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
                return None, time.monotonic() - t0
        self.kill()     # leftovers of the group, if any
        return self.proc.returncode, time.monotonic() - t0

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def events(self):
        out = []
        try:
            data = self.log.read_bytes()
        except OSError:
            return out
        for raw in data.split(b"\n"):
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
        return out


# ---------------------------------------------------------------- checks

class Report:
    def __init__(self):
        self.problems = collections.OrderedDict()   # what -> [examples]

    def fail(self, what, example=None):
        lst = self.problems.setdefault(what, [])
        if example is not None and len(lst) < 10 * MAX_LISTED:
            lst.append(example)
        elif example is None:
            lst.append(None)

    def lines(self):
        out = []
        for what, examples in self.problems.items():
            shown = [e for e in examples if e is not None][:MAX_LISTED]
            out.append("FAIL: %s (%d)" % (what, len(examples)))
            out.extend("    %s" % e for e in shown)
        return out


def attach_calls(clients, calls, report):
    """Give each FIRM call to the try it belongs to: the last try of its
    message that started before it arrived."""
    index = {tok: i for i, (tok, _) in enumerate(clients.messages)}
    for c in sorted(calls, key=lambda c: c.arrived):
        i = index.get(c.token)
        if i is None:
            report.fail("a FIRM call carried no token of ours",
                        "token %r, keys %r" % (c.token, c.keys))
            continue
        mine = [t for t in clients.tries[i] if t.start <= c.arrived]
        if not mine:
            report.fail("a FIRM call came before its message was sent",
                        "message %d" % i)
            continue
        t = mine[-1]
        c.after_reply = t.end is not None and c.arrived > t.end
        t.calls.append(c)


def check(clients, calls, report):
    """Every rule of the header; returns the tables' numbers."""
    stats = {
        "table": collections.defaultdict(collections.Counter),
        "late": [], "gave_up": 0, "delivered": 0, "rejected": 0,
        "resent": 0, "after_reply": 0, "double_2xx": 0, "no_call": 0,
    }
    # keys: one per call, one per message, one message per key
    key_tokens = collections.defaultdict(set)
    for c in calls:
        if len(c.keys) != 1 or not c.keys[0]:
            report.fail("a FIRM call without exactly one Idempotency-Key",
                        "token %s: %r" % (c.token, c.keys))
            continue
        key_tokens[c.keys[0]].add(c.token)
    for key, toks in key_tokens.items():
        if len(toks) > 1:
            report.fail("distinct messages shared an Idempotency-Key",
                        "%s: %s" % (key, sorted(map(str, toks))))

    for i, tries in enumerate(clients.tries):
        mcalls = [c for t in tries for c in t.calls]
        keys = {c.keys[0] for c in mcalls if len(c.keys) == 1}
        if len(keys) > 1:
            report.fail("a retried message's Idempotency-Key changed",
                        "message %d: %s" % (i, " -> ".join(
                            c.keys[0] for c in mcalls if len(c.keys) == 1)))
        for t in tries:
            if t.error is not None or t.code is None:
                continue
            labels = [c.answer.label for c in t.calls]
            stats["after_reply"] += sum(c.after_reply for c in t.calls)
            if len(t.calls) > 1:
                stats["resent"] += 1
            # a try's row: its calls' answers in order (libcurl re-sends
            # on a kept-alive connection that died unanswered); what
            # smtpd replies is decided by the last one
            outcome = labels[-1] if labels else "no call"
            if not labels:
                stats["no_call"] += 1
            stats["table"][" > ".join(labels) or "no call"][t.reply] += 1
            what = "message %d try %d: FIRM %s -> %s" % (
                i, t.number, "+".join(labels) or "no call", t.line)
            inwin = [c for c in t.calls if not c.after_reply]
            if t.code == 250 and not any(
                    c.answer.label in ("200", "drop-after") for c in inwin):
                report.fail("250 without a FIRM 2xx to that try", what)
            if outcome != "no call" and t.reply not in EXPECTED[outcome]:
                if outcome in FAULTS and (t.code == 250 or t.code >= 500):
                    report.fail("a FIRM fault gave %s"
                                % ("250" if t.code == 250 else "5xx"), what)
                elif outcome == "200" and t.code != 250:
                    report.fail("a prompt FIRM 2xx did not give 250", what)
                else:
                    report.fail("a reply other than SPEC section 3's "
                                "for its FIRM outcome", what)
            if outcome == "no call" and t.code >= 500:
                report.fail("a 5xx without a FIRM answer", what)
        final = tries[-1] if tries else None
        if final is None or final.error is not None:
            continue
        twos = [c for c in mcalls if c.answer.label in FIRM_2XX]
        if len(twos) > 1:
            stats["double_2xx"] += 1
        if final.code == 250:
            stats["delivered"] += 1
            continue
        if final.code is not None and final.code >= 500:
            stats["rejected"] += 1
        else:
            stats["gave_up"] += 1
        if twos:
            if all(c.answer.label in LATE_2XX or c.after_reply
                   for c in twos):
                stats["late"].append(
                    "message %d (%s): FIRM %s; replies %s" % (
                        i, clients.messages[i][0],
                        "+".join(c.answer.label for c in mcalls),
                        ", ".join(t.reply for t in tries)))
            else:
                report.fail("FIRM answered 2xx promptly but the message "
                            "never got 250",
                            "message %d: FIRM %s; replies %s" % (
                                i, "+".join(c.answer.label for c in mcalls),
                                ", ".join(t.reply for t in tries)))
    return stats


# ---------------------------------------------------------------- output

def print_table(stats, elapsed, clients, calls, m, args):
    table = stats["table"]
    cols = sorted({r for row in table.values() for r in row},
                  key=lambda r: (r == "no reply", r))
    rows = [o for o in OUTCOMES if o in table] + \
        sorted(o for o in table if o not in OUTCOMES)
    w = max([12] + [len(c) + 1 for c in cols])
    ow = max([14] + [len(o) for o in rows])
    head = "%-*s %7s" % (ow, "FIRM outcome", "tries") + \
        "".join("%*s" % (w, c) for c in cols)
    print(head)
    print("-" * len(head))
    total = collections.Counter()
    for o in rows:
        n = sum(table[o].values())
        total.update(table[o])
        print("%-*s %7d" % (ow, o, n) +
              "".join("%*d" % (w, table[o][c]) for c in cols))
    print("-" * len(head))
    print("%-*s %7d" % (ow, "total", sum(total.values())) +
          "".join("%*d" % (w, total[c]) for c in cols))
    print()
    calls_by = collections.Counter(c.answer.label for c in calls)
    print("FIRM calls: %d (%s)" % (len(calls), ", ".join(
        "%s %d" % (o, calls_by[o]) for o in OUTCOMES)))
    print("  tries with more than one call (libcurl re-sent on a dead "
          "kept-alive connection): %d" % stats["resent"])
    print("  calls arriving after smtpd had replied: %d"
          % stats["after_reply"])
    print("  messages FIRM accepted more than once (same key; FIRM "
          "deduplicates): %d" % stats["double_2xx"])
    if stats["no_call"]:
        print("  tries that reached no FIRM call: %d" % stats["no_call"])
    ntries = sum(len(t) for t in clients.tries)
    print("messages: %d sent, %d delivered (250), %d gave up after %d "
          "tries, %d rejected (5xx), %d client errors; %d tries"
          % (len(clients.messages), stats["delivered"], stats["gave_up"],
             args.tries, stats["rejected"], len(clients.errors), ntries))
    print("late answers (FIRM 2xx'd, smtpd never got it in time): %d"
          % len(stats["late"]))
    for line in stats["late"][:50]:
        print("    " + line)
    if m is not None:
        def pick(name):
            return ", ".join("%s=%g" % (lab.split('"')[1], v)
                             for (n, lab), v in sorted(m.items())
                             if n == name and '"' in lab)
        print("smtpd metrics: messages {%s}; firm responses {%s}; "
              "worker deaths %g" % (
                  pick("smtpd_messages_total"),
                  pick("smtpd_firm_responses_total"),
                  m.get(("smtpd_worker_deaths_total", ""), -1)))
    print("wall %.1f s, %.1f messages/s, %.1f tries/s (concurrency %d, "
          "api-timeout %g s, stall %g s, seed %d)"
          % (elapsed, len(clients.messages) / elapsed, ntries / elapsed,
             args.concurrency, args.api_timeout,
             args.api_timeout + args.stall_extra, args.seed))


# ---------------------------------------------------------------- main

def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Fault-injection soak of smtpd against a failing "
                    "fake FIRM API (see the header of this file).")
    p.add_argument("--binary", default=os.environ.get(
        "SMTPD_BINARY", str(REPO / "smtpd")), help="smtpd to test "
        "(default: $SMTPD_BINARY, else ./smtpd)")
    p.add_argument("--messages", type=int, default=10000)
    p.add_argument("--concurrency", type=int, default=20)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--fault-rate", type=float, default=0.2,
                   help="fraction of /inbound calls that fail (0.2)")
    p.add_argument("--api-timeout", type=int, default=2,
                   help="smtpd's --api-timeout, seconds (2)")
    p.add_argument("--stall-extra", type=float, default=1.0,
                   help="a stall answers this long after --api-timeout")
    p.add_argument("--tries", type=int, default=5,
                   help="tries per message on 4xx (5)")
    p.add_argument("--time-limit", type=float, default=1800.0,
                   help="seconds the sending may take (1800)")
    p.add_argument("--keep", action="store_true",
                   help="keep the work directory (smtpd's log)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    a = p.parse_args(argv)
    if a.messages < 1 or a.concurrency < 1 or a.tries < 1 or \
            not 0 <= a.fault_rate <= 1 or a.api_timeout < 1 or \
            a.stall_extra <= 0 or a.time_limit <= 0:
        p.error("out-of-range value")
    return a


def interrupted(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


def main(argv=None):
    args = parse_args(argv)
    # SIGTERM (a test's timeout) unwinds like ^C: smtpd is stopped
    signal.signal(signal.SIGTERM, interrupted)
    if not os.access(args.binary, os.X_OK):
        print("soak: %s is not an executable (make build)" % args.binary,
              file=sys.stderr)
        return 1
    report = Report()
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="smtpd-soak-",
                                            dir=tmpfs_dir()))
    os.chmod(workdir, 0o711)
    dns = FakeDNS().start()
    firm = Firm(args.seed, args.fault_rate,
                args.api_timeout + args.stall_extra).start()
    srv = Smtpd(args, workdir, firm.url, dns.address)
    try:
        srv.start()
        print("soak: %s" % " ".join(srv.argv[1:]), file=sys.stderr)
        messages = make_messages(args.messages, args.seed)
        clients = Clients(args, srv.port, messages)
        elapsed, stuck = clients.run(args.time_limit)

        if stuck:
            report.fail("client threads still stuck after the time limit",
                        "%d threads" % stuck)
        if clients.done < len(messages):
            report.fail("not every message was sent (run called off)",
                        "%d of %d" % (clients.done, len(messages)))
        if elapsed > args.time_limit:
            report.fail("the run took longer than --time-limit",
                        "%.0f s" % elapsed)
        for what in clients.crashes:
            report.fail("a client thread crashed", what)
        for i, n, e in clients.errors:
            kind = {"hung": "an SMTP exchange hung past its bound",
                    "refused": "the server refused a connection",
                    "closed": "the server closed a session",
                    "unexpected": "an unexpected SMTP reply"}[e.kind]
            report.fail(kind, "message %d try %d: %s" % (i, n, e))

        m = metrics(srv.hport)
        if m is None:
            report.fail("/metrics did not answer at the end")
        elif m.get(("smtpd_worker_deaths_total", ""), 0) != 0:
            report.fail("workers died (smtpd_worker_deaths_total)",
                        "%g" % m[("smtpd_worker_deaths_total", "")])
        if not srv.alive():
            report.fail("smtpd was not alive at the end",
                        "status %s" % srv.proc.returncode)
        status, took = srv.stop()
        if status is None:
            report.fail("smtpd did not exit within %.0fs of SIGTERM"
                        % STOP_TIMEOUT)
        elif status != 0:
            report.fail("smtpd exited %d on SIGTERM" % status)
    finally:
        if srv.proc is not None and srv.proc.poll() is None:
            srv.kill()
        firm.stop()             # releases any stall still waiting
        dns.stop()

    for e in srv.events():
        if e.get("event") in BAD_EVENTS:
            report.fail("smtpd logged %s" % e["event"], json.dumps(e))
    calls = firm.calls()
    attach_calls(clients, calls, report)
    stats = check(clients, calls, report)

    if m is not None:
        seen = collections.Counter()
        for tries in clients.tries:
            for t in tries:
                if t.code is not None:
                    seen["accepted" if t.code < 300 else
                         "tempfail" if t.code < 500 else "rejected"] += 1
        for status_ in ("accepted", "tempfail", "rejected"):
            got = m.get(("smtpd_messages_total",
                         'status="%s"' % status_), 0)
            if got != seen[status_]:
                report.fail("smtpd_messages_total disagrees with the "
                            "clients' replies", "%s: metric %g, clients %d"
                            % (status_, got, seen[status_]))

    print_table(stats, elapsed, clients, calls, m, args)
    if args.keep:
        print("work directory kept: %s" % workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    lines = report.lines()
    for line in lines:
        print(line)
    if lines:
        print("soak: FAILED")
        return 1
    print("soak: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
