"""Shared fixtures and helpers for the smtpd integration tests.

Everything here talks to a real ./smtpd on loopback (127.0.0.1 / ::1 only).
Every loop is bounded in iterations and in time, every socket has a timeout.

Test modules import the helpers with ``from conftest import ...``.
"""

import base64
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

# the fakes (DNS, FIRM, the ban-list API) live in tests/fakes
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "fakes"))

REPO = pathlib.Path(__file__).resolve().parent.parent
# SMTPD_BINARY lets a developer point the suite at another build.
SMTPD = pathlib.Path(os.environ.get("SMTPD_BINARY", str(REPO / "smtpd")))
# The test build (make smtpd-test): the same server with the XTEST hooks.
SMTPD_TEST = pathlib.Path(os.environ.get("SMTPD_TEST_BINARY",
                                         str(REPO / "smtpd-test")))

LOOPBACK = "127.0.0.1"
HOSTNAME = "test.example"
RCPT = "verify@localhost"
SENDER = "sender@example.net"
HELO = "client.test"
TOKEN = "FIRM-TOKEN:ABCD-EFGH-IJKL"
DEFAULT_MAX_SIZE = 1048576

START_TIMEOUT = 5.0     # server must listen within this
STOP_TIMEOUT = 5.0      # server must exit on SIGTERM within this
IO_TIMEOUT = 5.0        # default for one reply
MAX_REPLY_LINES = 100
MAX_LINE = 65536


# ---------------------------------------------------------------- basics

def free_port(host=LOOPBACK):
    """A free TCP port on loopback: bind port 0, read it, close."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def greeted_with_retry(connect, within, tries=40):
    """A session from connect() greeted 220, retrying for up to `within`
    seconds (and `tries` connections) while the slot of a just-closed
    session frees."""
    deadline = time.monotonic() + within
    last = None
    for _ in range(tries):
        c = connect()
        try:
            r = c.reply(timeout=2)
        except ConnectionClosed as e:
            r = e
        if getattr(r, "code", None) == 220:
            return c
        c.close()
        last = r
        if time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    raise AssertionError("no 220 within %.1fs; last answer %r"
                         % (within, last))


def wait_for(predicate, timeout, interval=0.05):
    """Poll predicate() until true or timeout; returns its last value."""
    deadline = time.monotonic() + timeout
    limit = int(timeout / interval) + 2
    value = predicate()
    for _ in range(limit):
        if value or time.monotonic() >= deadline:
            break
        time.sleep(interval)
        value = predicate()
    return value


def _proc_net_listening(port):
    """True/False from /proc/net/tcp{,6}; None when /proc is unavailable."""
    seen = False
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        seen = True
        for row in rows:
            fields = row.split()
            if len(fields) < 4:
                continue
            local, state = fields[1], fields[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                return True
    return False if seen else None


def port_accepts(port, host=LOOPBACK):
    """Is the port listening?  Uses /proc (no session is consumed, so
    session limits are not disturbed); falls back to a connect probe."""
    listening = _proc_net_listening(port)
    if listening is not None:
        return listening
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(0.5)
    try:
        s.connect((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


# ---------------------------------------------------------------- client

class ConnectionClosed(Exception):
    """The server closed the connection while a reply was expected."""


class Reply:
    """One SMTP reply: all its lines (without CRLF)."""

    def __init__(self, lines):
        self.lines = lines
        self.code = int(lines[-1][:3])

    @property
    def enhanced(self):
        """The enhanced status code of the first line, or None."""
        words = self.lines[0][4:].split()
        if words and re.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}", words[0]):
            return words[0]
        return None

    @property
    def text(self):
        return "\n".join(self.lines)

    def __repr__(self):
        return "Reply(%r)" % (self.lines,)


def assert_reply(reply, expected):
    """assert_reply(r, "550 5.1.1") checks code and enhanced code;
    assert_reply(r, "354") checks the code only."""
    parts = expected.split()
    assert reply.code == int(parts[0]), \
        "expected %s, got %r" % (expected, reply.lines)
    if len(parts) > 1:
        assert reply.enhanced == parts[1], \
            "expected %s, got %r" % (expected, reply.lines)
        assert reply.lines[0].startswith(parts[0] + " " + parts[1]) or \
            reply.lines[0].startswith(parts[0] + "-" + parts[1]), reply.lines


class SMTPClient:
    """Raw-socket SMTP client: bytes out, parsed replies in."""

    def __init__(self, port=None, host=LOOPBACK, timeout=IO_TIMEOUT,
                 sock=None):
        if sock is None:
            sock = socket.create_connection((host, port), timeout=timeout)
        sock.settimeout(timeout)
        self.sock = sock
        self.timeout = timeout
        self.buf = b""
        self.eof = False

    # context manager
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)

    def _fill(self, deadline):
        """Read one chunk into buf; ConnectionClosed on EOF/reset."""
        if self.eof:
            raise ConnectionClosed("connection already closed")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no data from server in time; buffered %r"
                               % self.buf[:200])
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no data from server in time; buffered %r"
                               % self.buf[:200]) from None
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            self.eof = True
            raise ConnectionClosed("server closed the connection; "
                                   "buffered %r" % self.buf[:200])
        self.buf += chunk

    def readline(self, timeout=None):
        """One line including its LF (bounded in length and time)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        for _ in range(10000):
            i = self.buf.find(b"\n")
            if i >= 0:
                line, self.buf = self.buf[:i + 1], self.buf[i + 1:]
                return line
            if len(self.buf) > MAX_LINE:
                raise AssertionError("reply line too long: %r"
                                     % self.buf[:200])
            self._fill(deadline)
        raise TimeoutError("readline: too many reads")

    def reply(self, timeout=None):
        """A full reply: 250-... lines up to the final 250 ... line."""
        deadline = time.monotonic() + (timeout or self.timeout)
        lines = []
        for _ in range(MAX_REPLY_LINES):
            raw = self.readline(max(deadline - time.monotonic(), 0.001))
            assert raw.endswith(b"\r\n"), \
                "reply line not CRLF-terminated: %r" % raw
            line = raw[:-2].decode("utf-8", "replace")
            assert re.match(r"^[2-5][0-9][0-9]([ -]|$)", line), \
                "malformed reply line %r" % line
            if lines:
                assert line[:3] == lines[0][:3], \
                    "code changed inside a multi-line reply: %r" % \
                    (lines + [line])
            lines.append(line)
            if len(line) == 3 or line[3] == " ":
                return Reply(lines)
        raise AssertionError("reply has too many lines: %r" % lines[:5])

    def cmd(self, line, timeout=None):
        """Send one command line (CRLF appended) and read its reply."""
        if isinstance(line, str):
            line = line.encode("utf-8")
        self.send(line + b"\r\n")
        return self.reply(timeout)

    def replies(self, n, timeout=None):
        return [self.reply(timeout) for _ in range(n)]

    def read_until_close(self, timeout=3.0):
        """Everything the server still sends, up to its close.
        AssertionError if it does not close within timeout."""
        deadline = time.monotonic() + timeout
        data = b""
        for _ in range(10000):
            data += self.buf
            self.buf = b""
            if self.eof:
                return data
            try:
                self._fill(deadline)
            except ConnectionClosed:
                data += self.buf
                self.buf = b""
                return data
            except TimeoutError:
                raise AssertionError(
                    "server did not close within %.1fs; got %r"
                    % (timeout, (data + self.buf)[:300])) from None
            if len(data) > 1 << 20:
                break
        raise AssertionError("server kept sending data without closing")

    def expect_closed(self, timeout=3.0):
        """The server closes without sending anything more."""
        rest = self.read_until_close(timeout)
        assert rest == b"", "unexpected data before close: %r" % rest[:300]

    # high-level helpers
    def greeting(self, timeout=None):
        r = self.reply(timeout)
        assert_reply(r, "220")
        return r

    def ehlo(self, name=HELO):
        r = self.cmd("EHLO " + name)
        assert_reply(r, "250")
        return r

    def envelope(self, sender=SENDER, rcpts=(RCPT,), helo=HELO):
        """EHLO, MAIL, RCPT..., DATA; asserts each reply."""
        if helo:
            self.ehlo(helo)
        assert_reply(self.cmd("MAIL FROM:<%s>" % sender), "250 2.1.0")
        for rcpt in rcpts:
            assert_reply(self.cmd("RCPT TO:<%s>" % rcpt), "250 2.1.5")
        assert_reply(self.cmd("DATA"), "354")

    def send_data(self, message, timeout=None):
        """Send the message bytes (already dot-stuffed) and the final
        dot; return the reply to the end of data."""
        if isinstance(message, str):
            message = message.encode("utf-8")
        if not message.endswith(b"\r\n"):
            message += b"\r\n"
        self.send(message + b".\r\n")
        return self.reply(timeout)

    def deliver(self, message, sender=SENDER, rcpts=(RCPT,), helo=HELO):
        """A whole transaction; returns the reply to the end of data."""
        self.envelope(sender, rcpts, helo)
        return self.send_data(message)

    def quit(self):
        assert_reply(self.cmd("QUIT"), "221 2.0.0")
        self.expect_closed()


def make_message(body=None, subject="Test message", sender=SENDER,
                 rcpt=RCPT, msgid="<test-1@example.net>", extra=()):
    """A CRLF message: headers, blank line, body.  body may use '\\n'
    only if the caller wants bare LFs: pass CRLF text for normal lines."""
    if body is None:
        body = "Hello,\r\nplease verify " + TOKEN + "\r\nThanks\r\n"
    head = ["From: Sender <%s>" % sender,
            "To: <%s>" % rcpt,
            "Subject: %s" % subject,
            "Date: Sat, 21 Nov 2026 22:00:00 +0000"]
    if msgid:
        head.append("Message-ID: %s" % msgid)
    head.extend(extra)
    text = "\r\n".join(head) + "\r\n\r\n" + body
    data = text.encode("utf-8")
    if not data.endswith(b"\n"):
        data += b"\r\n"
    return data


def reply_id(reply):
    """The <id> of '250 2.0.0 OK <id>'."""
    m = re.match(r"^250 2\.0\.0 OK ([0-9a-f]{16})\b", reply.lines[-1])
    assert m, "not a '250 2.0.0 OK <id>' reply: %r" % reply.lines
    return m.group(1)


# ---------------------------------------------------------------- spool / log

def spool_files(spool_dir):
    """Final spool files (not the .<id>.tmp temporaries), sorted."""
    d = pathlib.Path(spool_dir)
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir()
                  if p.name.endswith(".json") and not p.name.startswith("."))


def read_spool(spool_dir):
    """All spooled messages, parsed as JSON (fails on invalid JSON)."""
    out = []
    for p in spool_files(spool_dir):
        text = p.read_text(encoding="utf-8")
        try:
            obj = json.loads(text)
        except ValueError as e:
            raise AssertionError("spool file %s is not JSON: %s: %r"
                                 % (p.name, e, text[:300]))
        assert isinstance(obj, dict), "spool %s is not an object" % p.name
        out.append(obj)
    return out


def raw_message(entry):
    """The base64 'raw' field of a spool entry, decoded."""
    return base64.b64decode(entry["raw"], validate=True)


def read_log(path, strict=True):
    """Parsed JSON log lines (complete lines only).  strict: an
    unparsable line is an AssertionError."""
    try:
        data = pathlib.Path(path).read_bytes()
    except FileNotFoundError:
        return []
    out = []
    for raw in data.split(b"\n")[:-1]:      # last piece may be partial
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except ValueError:
            if strict:
                raise AssertionError("log line is not JSON: %r" % raw[:300])
            continue
        if strict:
            assert isinstance(obj, dict), "log line not an object: %r" % raw
        out.append(obj)
    return out


# ------------------------------------------------------------ sanitizers

# make test-asan runs the suite against an ASan+UBSan build
# (SMTPD_SANITIZER=1).  Any server's output is checked for a report in
# either build: one found fails the test that started that server.
SANITIZER = os.environ.get("SMTPD_SANITIZER") == "1"
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "SUMMARY: AddressSanitizer",
                   "SUMMARY: UndefinedBehaviorSanitizer", ": runtime error: ",
                   "AddressSanitizer:DEADLYSIGNAL")


def assert_no_sanitizer_report(text, what="smtpd"):
    """Fail with the report if text (a server's output) holds one."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    for mark in SANITIZER_MARKS:
        i = text.find(mark)
        if i != -1:
            start = max(0, text.rfind("\n", 0, max(0, i - 200)) + 1)
            raise AssertionError("sanitizer report in the output of %s:\n%s"
                                 % (what, text[start:start + 4000]))


# ---------------------------------------------------------------- server

class SmtpdServer:
    """One ./smtpd -d process on a free loopback port."""

    def __init__(self, workdir, args, port, spool, binary=None):
        self.workdir = pathlib.Path(workdir)
        self.binary = pathlib.Path(binary) if binary is not None else SMTPD
        self.args = args
        self.port = port
        self.spool = pathlib.Path(spool) if spool is not None else None
        self.log_path = self.workdir / "stdout.log"
        self.err_path = self.workdir / "stderr.log"
        self.proc = None
        self.expect_sanitizer_report = False    # a test provokes one

    @property
    def cmdline(self):
        return [str(self.binary)] + self.args

    def start(self):
        if not self.binary.exists():
            pytest.fail("smtpd binary not found at %s (run make)"
                        % self.binary)
        with open(self.log_path, "wb") as out, \
                open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                self.cmdline, cwd=str(REPO), stdin=subprocess.DEVNULL,
                stdout=out, stderr=err, start_new_session=True)
        ok = wait_for(lambda: self.proc.poll() is not None or
                      port_accepts(self.port), START_TIMEOUT)
        if self.proc.poll() is not None:
            pytest.fail("smtpd exited with %s at start: %s\nargs: %s"
                        % (self.proc.returncode, self.stderr().strip(),
                           " ".join(self.args)))
        if not ok:
            self.stop()
            pytest.fail("smtpd did not listen on port %d within %.0fs"
                        % (self.port, START_TIMEOUT))
        return self

    def connect(self, timeout=IO_TIMEOUT, host=LOOPBACK):
        return SMTPClient(self.port, host=host, timeout=timeout)

    def session(self, timeout=IO_TIMEOUT):
        """A connection whose 220 greeting has been read."""
        c = self.connect(timeout)
        try:
            c.greeting()
        except BaseException:
            c.close()
            raise
        return c

    def spool_files(self):
        return spool_files(self.spool) if self.spool is not None else []

    def read_spool(self):
        return read_spool(self.spool) if self.spool is not None else []

    def logs(self, strict=True):
        return read_log(self.log_path, strict)

    def log_text(self):
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stderr(self):
        try:
            return self.err_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        """Exit status, or None if still running after timeout."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def _kill_group(self):
        # The server runs in its own process group (start_new_session);
        # kill only that group: leftover workers of this one server.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM, bounded wait, SIGKILL if needed; returns the status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            if self.wait(timeout) is None:
                self._kill_group()
                self.wait(timeout)
        self._kill_group()
        if not self.expect_sanitizer_report:
            assert_no_sanitizer_report(self.stderr() + self.log_text(),
                                       " ".join(self.cmdline[:1] + self.args))
        return self.proc.returncode


# ---------------------------------------------------------------- DNS

# Every server the tests start asks a fake DNS server on loopback
# (tests/fakes/fake_dns.py), never the machine's resolver: CI has no network,
# and sender authentication (SPEC section 6) looks up every message.
# The session-wide default answers NXDOMAIN for every name; a test that
# needs records uses the `dns` fixture and smtpd(..., resolver=dns).
_default_dns = None
DEFAULT_RESOLVER = "default"    # build_args/smtpd: the session default


def default_dns():
    """The session-wide fake DNS server (empty zone: NXDOMAIN for all),
    started on first use and stopped at the end of the session."""
    global _default_dns
    if _default_dns is None:
        from fake_dns import FakeDNS
        _default_dns = FakeDNS().start()
    return _default_dns


@pytest.fixture(scope="session", autouse=True)
def _stop_default_dns():
    yield
    global _default_dns
    if _default_dns is not None:
        _default_dns.stop()
        _default_dns = None


@pytest.fixture
def dns():
    """A fake DNS server of the test's own (tests/fakes/fake_dns.py), fresh
    zones; start smtpd on it with smtpd(..., resolver=dns)."""
    from fake_dns import FakeDNS
    fake = FakeDNS().start()
    yield fake
    fake.stop()


def resolver_args(extra, resolver=DEFAULT_RESOLVER):
    """The --resolver flag build_args adds: none when extra has its own
    --resolver or resolver is None; the session default fake DNS when
    resolver is DEFAULT_RESOLVER; else resolver (a FakeDNS, or an
    ADDR[:PORT] string)."""
    if resolver is None or any(str(a) == "--resolver" or
                               str(a).startswith("--resolver=")
                               for a in extra):
        return []
    if isinstance(resolver, str) and resolver == DEFAULT_RESOLVER:
        resolver = default_dns()
    return ["--resolver", getattr(resolver, "address", resolver)]


def build_args(port, spool, extra=(), hostname=HOSTNAME, recipients=(RCPT,),
               listen=None, resolver=DEFAULT_RESOLVER):
    args = ["-d", "-l", listen or "%s:%d" % (LOOPBACK, port)]
    if hostname is not None:
        args += ["-H", hostname]
    for r in recipients:
        args += ["-r", r]
    if spool is not None:
        args += ["--spool", str(spool)]
    args += resolver_args(extra, resolver)
    return args + [str(a) for a in extra]


@pytest.fixture(scope="session")
def spool_root():
    """A directory for spools that the unprivileged workers (user nobody)
    can traverse: pytest's own tmp_path lives under a 0700 directory."""
    root = tempfile.mkdtemp(prefix="smtpd-tests-")
    os.chmod(root, 0o711)
    yield pathlib.Path(root)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def spool_dir(spool_root):
    """A spool path that does not exist yet, in a traversable directory."""
    parent = tempfile.mkdtemp(dir=str(spool_root))
    os.chmod(parent, 0o711)
    return pathlib.Path(parent) / "spool"


@pytest.fixture
def smtpd(tmp_path, spool_root, request):
    """Factory: smtpd("-s", 5000, recipients=("@example.org",)) starts
    ./smtpd -d -l 127.0.0.1:PORT -H test.example -r ... --spool DIR ...
    and returns a started SmtpdServer; all are stopped at teardown.
    smtpd(api=URL) starts it with -a URL instead of --spool;
    smtpd(binary=SMTPD_TEST) starts another build (the XTEST one);
    smtpd(resolver=dns) asks the test's fake DNS server (the `dns`
    fixture) instead of the session default, which answers NXDOMAIN."""
    servers = []

    def start(*extra, recipients=(RCPT,), hostname=HOSTNAME, api=None,
              binary=None, resolver=DEFAULT_RESOLVER):
        n = len(servers)
        workdir = tmp_path / ("server%d" % n)
        workdir.mkdir()
        if api is None:
            # must not exist yet: smtpd creates it, owned by the worker
            parent = tempfile.mkdtemp(dir=str(spool_root))
            os.chmod(parent, 0o711)
            spool = pathlib.Path(parent) / "spool"
        else:
            spool = None
            extra = ("-a", api) + tuple(extra)
            if "--banlist-cache" not in extra:
                # the banlist fetcher polls the API too: keep its cache
                # per server, out of /var/db, writable by the worker user
                cache = tempfile.mkdtemp(dir=str(spool_root))
                os.chmod(cache, 0o777)
                extra += ("--banlist-cache",
                          os.path.join(cache, "banlist.json"))
        if "-u" not in extra and "--user" not in extra:
            # the default user is _smtpd where it exists: the package
            # test of the other pass creates it for a while, and the
            # tests here check for nobody
            extra = ("-u", "nobody") + tuple(extra)
        port = free_port()
        args = build_args(port, spool, extra, hostname, recipients,
                          resolver=resolver)
        srv = SmtpdServer(workdir, args, port, spool, binary)
        servers.append(srv)
        return srv.start()

    yield start
    for srv in servers:
        srv.stop()
    # a worker that dies, even after its reply went out, is a bug
    # unless the test kills workers on purpose
    if request.node.get_closest_marker("worker_deaths") is None:
        for srv in servers:
            died = [e for e in srv.logs(strict=False)
                    if e.get("event") in ("worker_died", "worker_failed")]
            assert not died, "unexpected worker deaths: %r" % died[:3]


@pytest.fixture
def server(smtpd):
    """A server with the default flags."""
    return smtpd()


def run_smtpd(args, timeout=5.0, cwd=None):
    """Run ./smtpd with args to completion (bounded); returns
    (status, stdout, stderr).  A run that does not finish is killed
    (its whole process group) and fails the test."""
    if not SMTPD.exists():
        pytest.fail("smtpd binary not found at %s (run make)" % SMTPD)
    proc = subprocess.Popen([str(SMTPD)] + [str(a) for a in args],
                            cwd=str(cwd or REPO), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate(timeout=timeout)
        pytest.fail("smtpd %s did not exit within %.0fs; stderr: %r"
                    % (" ".join(map(str, args)), timeout, err[:300]))
    assert_no_sanitizer_report(out + err, "smtpd %s" % " ".join(map(str, args)))
    return (proc.returncode, out.decode("utf-8", "replace"),
            err.decode("utf-8", "replace"))


# ---------------------------------------------------------------- FIRM API

@pytest.fixture
def firm():
    """A fake FIRM API (tests/fakes/fake_firm.py) on 127.0.0.1, answering
    200 until told otherwise; stopped at teardown."""
    from fake_firm import FakeFirm
    fake = FakeFirm().start()
    yield fake
    fake.stop()


def children(pid):
    """Pids of a process's children, from /proc."""
    kids = set()
    task_dir = "/proc/%d/task" % pid
    for tid in os.listdir(task_dir):
        try:
            with open(os.path.join(task_dir, tid, "children")) as f:
                kids.update(int(p) for p in f.read().split())
        except OSError:
            pass
    if kids:
        return kids
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.add(int(entry))
    return kids



def reloaded_children(pid):
    """children(pid) that SIGHUP replaces: all but the verifier, which
    a reload leaves be (nothing of it is reloaded)."""
    kids = set()
    for kid in children(pid):
        try:
            with open("/proc/%d/cmdline" % kid, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv[1:2] != [b"verifier"]:
            kids.add(kid)
    return kids

def after_auth_results(raw):
    """The message after our Authentication-Results header (SPEC 3: it
    goes first, above our Received header); fails when it is not first."""
    assert raw.startswith(b"Authentication-Results: "), raw[:200]
    lines = raw.split(b"\r\n")
    n = 1
    while n < len(lines) and lines[n][:1] in (b" ", b"\t"):
        n += 1
    return b"\r\n".join(lines[n:])
