"""A fake FIRM API for the tests: a real threaded HTTP/1.1 server on
127.0.0.1 in the test process.

It records every request (method, path, headers, body, arrival time).
POST .../inbound is answered as the test says: any status with any body,
after a delay, or not at all (the connection is accepted, the request
read, and no answer is ever sent).  Every other call (the banlist polls
GET /admin/banned_subnets and /admin/blocked_emails, POST /admin/alarm)
is answered 200 with an empty JSON list, so a ban never comes from here.
Every wait is bounded; stop() releases delayed and hanging handlers.
"""

import http.server
import threading
import time

LOOPBACK = "127.0.0.1"
MAX_BODY = 16 << 20         # larger requests are refused (413)
HANDLER_IDLE = 15.0         # an idle keep-alive connection is closed
HANG_LIMIT = 30.0           # a "never answer" handler gives up after this


class Answer:
    """What to answer to one request."""

    def __init__(self, status=200, body=b'{"status":"ok"}',
                 content_type="application/json", delay=0.0, hang=False):
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.status = status
        self.body = body
        self.content_type = content_type
        self.delay = delay
        self.hang = hang


class Request:
    """One request as the fake received it."""

    def __init__(self, method, path, headers, body, when, peer=None):
        self.peer = peer            # (address, port) of the connection
        self.method = method
        self.path = path
        self.headers = headers      # list of (name, value), as sent
        self.body = body            # bytes
        self.when = when            # time.time() at arrival

    @property
    def is_inbound(self):
        return self.method == "POST" and \
            self.path.split("?")[0].endswith("/inbound")

    def header(self, name):
        """All values of the header called name (case-insensitive)."""
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        import json
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "Request(%s %s, %r, %r)" % (self.method, self.path,
                                          self.headers, self.body[:200])


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = HANDLER_IDLE          # socket timeout of each connection

    def log_message(self, fmt, *args):      # quiet
        pass

    def _handle(self):
        fake = self.server.fake
        length = self.headers.get("Content-Length")
        body = b""
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                n = -1
            if n < 0 or n > MAX_BODY:
                self.send_error(413)
                self.close_connection = True
                return
            body = self.rfile.read(n)
        req = Request(self.command, self.path, list(self.headers.items()),
                      body, time.time(), self.client_address)
        answer = fake._record(req)
        if answer.hang:
            # accept, read, never answer; end only when the test stops
            fake._release.wait(HANG_LIMIT)
            self.close_connection = True
            return
        if answer.delay > 0:
            fake._release.wait(answer.delay)
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = do_PATCH = _handle


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False          # stop() never waits for a handler


OTHER_CALLS = Answer(200, b"[]")


class FakeFirm:
    """fake = FakeFirm().start(); fake.url; fake.answer(503) for every
    /inbound; fake.answer_once(503) for the next one only;
    fake.inbound() / fake.wait_inbound(n); fake.requests (all calls);
    fake.stop()."""

    def __init__(self):
        self._lock = threading.Condition()
        self._release = threading.Event()
        self._default = Answer()
        self._queue = []
        self.requests = []
        self._server = None
        self._thread = None

    def start(self):
        self._server = _Server((LOOPBACK, 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever,
                                         kwargs={"poll_interval": 0.05},
                                         daemon=True)
        self._thread.start()
        return self

    @property
    def port(self):
        return self._server.server_address[1]

    @property
    def url(self):
        return "http://%s:%d" % (LOOPBACK, self.port)

    def answer(self, *args, **kwargs):
        """The answer to every /inbound from now on (after the queued)."""
        with self._lock:
            self._default = Answer(*args, **kwargs)

    def answer_once(self, *args, **kwargs):
        """Queue an answer for exactly one coming /inbound."""
        with self._lock:
            self._queue.append(Answer(*args, **kwargs))

    def _record(self, req):
        with self._lock:
            self.requests.append(req)
            self._lock.notify_all()
            if not req.is_inbound:
                return OTHER_CALLS
            return self._queue.pop(0) if self._queue else self._default

    def received(self):
        """Every request so far, of any path."""
        with self._lock:
            return list(self.requests)

    def inbound(self):
        """The POST /inbound requests so far."""
        with self._lock:
            return [q for q in self.requests if q.is_inbound]

    def wait_inbound(self, n, timeout=5.0):
        """Wait (bounded) until n /inbound requests have arrived;
        returns them, however many there are."""
        deadline = time.monotonic() + timeout
        with self._lock:
            for _ in range(1000):
                got = [q for q in self.requests if q.is_inbound]
                remaining = deadline - time.monotonic()
                if len(got) >= n or remaining <= 0:
                    return got
                self._lock.wait(remaining)
            return [q for q in self.requests if q.is_inbound]

    def stop(self):
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5.0)
