"""A fake FIRM API for the tests: a real threaded HTTP/1.1 server on
127.0.0.1 in the test process.

It records every request (method, path, headers, body, arrival time).
POST .../inbound is answered as the test says: any status with any body,
after a delay, or not at all (the connection is accepted, the request
read, and no answer is ever sent); or the connection is dropped, before
the answer (the request read, the connection closed without a word) or
just after it (the whole answer sent, then a reset).  answer_by(fn)
lets a function choose the answer of each call (the soak, bench/soak.py,
injects faults that way); each request records the answer it got and
when it was sent.  Every other call (the banlist polls
GET /admin/banned_subnets and /admin/blocked_emails, POST /admin/alarm)
is answered 200 with an empty JSON list, so a ban never comes from here.
Every wait is bounded; stop() releases delayed and hanging handlers.
"""

import http.server
import socket
import struct
import threading
import time

LOOPBACK = "127.0.0.1"
MAX_BODY = 16 << 20         # larger requests are refused (413)
HANDLER_IDLE = 15.0         # an idle keep-alive connection is closed
HANG_LIMIT = 30.0           # a "never answer" handler gives up after this
SEND_DRAIN = 1.0            # "drop after": longest wait for the answer to go


class Answer:
    """What to answer to one request."""

    DROPS = (None, "before", "after")

    def __init__(self, status=200, body=b'{"status":"ok"}',
                 content_type="application/json", delay=0.0, hang=False,
                 drop=None, label=None):
        if isinstance(body, str):
            body = body.encode("utf-8")
        if drop not in self.DROPS:
            raise ValueError("drop must be one of %r" % (self.DROPS,))
        self.status = status
        self.body = body
        self.content_type = content_type
        self.delay = delay
        self.hang = hang
        # "before": read the request, close without answering;
        # "after": send the whole answer, then reset the connection
        self.drop = drop
        self.label = label          # the caller's name for it, if any


class Request:
    """One request as the fake received it."""

    def __init__(self, method, path, headers, body, when, peer=None):
        self.peer = peer            # (address, port) of the connection
        self.method = method
        self.path = path
        self.headers = headers      # list of (name, value), as sent
        self.body = body            # bytes
        self.when = when            # time.time() at arrival
        self.arrived = time.monotonic()
        self.answer = None          # the Answer it was given
        self.answered = None        # time.monotonic() once all was sent
        self.answer_error = None    # why the answer could not be sent

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


def _wait_sent(sock, release, limit=SEND_DRAIN):
    """Wait (bounded) until sock's send queue is empty: all it was given
    is acknowledged by the peer (Linux SIOCOUTQ; elsewhere a short
    pause)."""
    try:
        import fcntl
        import termios
        for _ in range(int(limit / 0.005) + 1):
            n = struct.unpack("i", fcntl.ioctl(sock.fileno(),
                                               termios.TIOCOUTQ,
                                               b"\0\0\0\0"))[0]
            if n == 0 or release.wait(0.005):
                return
    except (ImportError, AttributeError, OSError):
        release.wait(0.05)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = HANDLER_IDLE          # socket timeout of each connection

    def log_message(self, fmt, *args):      # quiet
        pass

    def setup(self):
        super().setup()
        # the status line and headers, then the body, go out at once:
        # no Nagle wait for the client's delayed ACK in between
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP,
                                       socket.TCP_NODELAY, 1)
        except OSError:
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
        req.answer = answer
        if answer.hang:
            # accept, read, never answer; end only when the test stops
            fake._release.wait(HANG_LIMIT)
            self.close_connection = True
            return
        if answer.delay > 0:
            fake._release.wait(answer.delay)
        if answer.drop == "before":
            self.close_connection = True    # FIN, no answer
            return
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)
            self.wfile.flush()
        except OSError as e:        # the client gave up (a delay)
            req.answer_error = str(e)
            self.close_connection = True
            return
        req.answered = time.monotonic()
        if answer.drop == "after":
            # a reset, no FIN (SO_LINGER 0, and no shutdown() first),
            # once the client's kernel has the whole answer: a reset
            # would throw away what is still in our send queue
            _wait_sent(self.connection, fake._release)
            self.close_connection = True
            self.server._reset_on_close(self.connection)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = do_PATCH = _handle


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False          # stop() never waits for a handler

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._resets = set()
        self._resets_lock = threading.Lock()

    def _reset_on_close(self, sock):
        """Close sock with a reset (RST) instead of a FIN."""
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                            struct.pack("ii", 1, 0))
        except OSError:
            return
        with self._resets_lock:
            self._resets.add(sock)

    def shutdown_request(self, request):
        with self._resets_lock:
            reset = request in self._resets
            self._resets.discard(request)
        if reset:
            self.close_request(request)     # no shutdown(): no FIN
        else:
            super().shutdown_request(request)

    def handle_error(self, request, client_address):
        # a client that went away (after a delay, a timeout) is no news
        import sys
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


OTHER_CALLS = Answer(200, b"[]")


class FakeFirm:
    """fake = FakeFirm().start(); fake.url; fake.answer(503) for every
    /inbound; fake.answer_once(503) for the next one only;
    fake.answer_by(fn): fn(request) chooses the Answer of each /inbound
    not served from the queue (None: the default answer);
    fake.inbound() / fake.wait_inbound(n); fake.requests (all calls);
    fake.stop()."""

    def __init__(self):
        self._lock = threading.Condition()
        self._release = threading.Event()
        self._default = Answer()
        self._chooser = None
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

    def answer_by(self, fn):
        """fn(request) -> Answer (or None for the default answer) for
        every /inbound from now on (after the queued); fn=None ends it.
        fn runs in the handler's thread, under the fake's lock: keep it
        short."""
        with self._lock:
            self._chooser = fn

    def _record(self, req):
        with self._lock:
            self.requests.append(req)
            self._lock.notify_all()
            if not req.is_inbound:
                return OTHER_CALLS
            if self._queue:
                return self._queue.pop(0)
            if self._chooser is not None:
                answer = self._chooser(req)
                if answer is not None:
                    return answer
            return self._default

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
