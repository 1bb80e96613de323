"""A fake FIRM API for the ban list tests: a real threaded HTTP/1.1
server on 127.0.0.1 in the test process.

GET /admin/banned_subnets and GET /admin/blocked_emails answer what the
test set (a list, an object, a status, any bytes); POST /admin/alarm
and POST /inbound answer 200.  Every request is recorded (method, path,
body, arrival time).  down() closes the listening socket, so the port
refuses connections; up() listens again on the same port.
Every wait is bounded.
"""

import http.server
import json
import socket
import threading
import time

LOOPBACK = "127.0.0.1"
MAX_BODY = 1 << 20
HANDLER_IDLE = 10.0

SUBNETS = "/admin/banned_subnets"
EMAILS = "/admin/blocked_emails"
ALARM = "/admin/alarm"
INBOUND = "/inbound"


class Answer:
    """What one list endpoint answers: status and raw body bytes."""

    def __init__(self, status=200, body=b"[]",
                 content_type="application/json"):
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.status = status
        self.body = body
        self.content_type = content_type

    @classmethod
    def of(cls, value):
        """A JSON answer (a list, or an object such as
        {"banned_subnets": [...]})."""
        return cls(200, json.dumps(value))


class Request:
    def __init__(self, method, path, headers, body, when):
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.when = when            # time.monotonic() at arrival

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "Request(%s %s, %r)" % (self.method, self.path,
                                        self.body[:200])


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = HANDLER_IDLE

    def log_message(self, fmt, *args):
        pass

    # Keep-alive connections are tracked, so down() can cut them too:
    # otherwise a client would go on using one after the port closed.
    def setup(self):
        super().setup()
        self.server.fake._opened(self.connection)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.fake._closed(self.connection)

    def _handle(self):
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
                      body, time.monotonic())
        answer = self.server.fake._record(req)
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _handle


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


class FakeBanlistAPI:
    """fake = FakeBanlistAPI().start(); fake.set_lists(subnets, emails);
    fake.set_answer(SUBNETS, Answer(500)); fake.fail_lists(Answer(500));
    fake.down() / fake.up(); fake.requests(path, mark=m);
    fake.wait_requests(path, n, timeout, mark=m); fake.stop().
    The setters return a mark (see below)."""

    def __init__(self, subnets=(), emails=()):
        self._lock = threading.Condition()
        self._answers = {}
        self._log = []
        self._server = None
        self._thread = None
        self._port = None
        self._conns = set()
        self.set_lists(subnets, emails)

    # -- life cycle
    def _serve(self, port):
        self._server = _Server((LOOPBACK, port), _Handler)
        self._server.fake = self
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def start(self):
        self._serve(0)
        return self

    def _opened(self, conn):
        with self._lock:
            self._conns.add(conn)

    def _closed(self, conn):
        with self._lock:
            self._conns.discard(conn)

    def down(self):
        """Stop listening and cut every open connection: new ones are
        refused, kept-alive ones are gone."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5.0)
            self._server = None
            self._thread = None
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def up(self):
        """Listen again on the same port."""
        if self._server is None:
            self._serve(self._port)

    def stop(self):
        self.down()

    @property
    def port(self):
        return self._port

    @property
    def url(self):
        return "http://%s:%d" % (LOOPBACK, self._port)

    # -- what to answer
    # Each setter returns a mark: the number of requests recorded before
    # the change, so after(mark, ...) lists exactly the requests that got
    # the new answer.
    def set_answer(self, path, answer):
        with self._lock:
            self._answers[path] = answer
            return len(self._log)

    def set_lists(self, subnets=(), emails=()):
        """Both lists as plain JSON arrays."""
        with self._lock:
            self._answers[SUBNETS] = Answer.of(list(subnets))
            self._answers[EMAILS] = Answer.of(list(emails))
            return len(self._log)

    def fail_lists(self, answer):
        """Both list endpoints answer this (e.g. Answer(500))."""
        with self._lock:
            self._answers[SUBNETS] = answer
            self._answers[EMAILS] = answer
            return len(self._log)

    def mark(self):
        with self._lock:
            return len(self._log)

    def _record(self, req):
        path = req.path.split("?")[0]
        with self._lock:
            self._log.append(req)
            self._lock.notify_all()
            if req.method == "GET" and path in (SUBNETS, EMAILS):
                return self._answers[path]
            return Answer(200, b'{"status":"ok"}')

    # -- what was asked
    def _select(self, path, mark):
        return [r for r in self._log[mark:]
                if path is None or r.path.split("?")[0] == path]

    def requests(self, path=None, mark=0):
        """Requests to path (any path: None) recorded after mark."""
        with self._lock:
            return self._select(path, mark)

    def wait_requests(self, path, n, timeout, mark=0):
        """Wait (bounded) until n requests to path have arrived after
        mark; returns them, however many there are."""
        deadline = time.monotonic() + timeout
        with self._lock:
            for _ in range(10000):
                got = self._select(path, mark)
                remaining = deadline - time.monotonic()
                if len(got) >= n or remaining <= 0:
                    return got
                self._lock.wait(min(remaining, 0.2))
            return self._select(path, mark)
