"""A fake DNS server for the tests: a real authoritative-style server on
127.0.0.1 (UDP and TCP on one ephemeral port) in the test process,
built on Debian's python3-dnslib.

Records are set per test by name (case-insensitive, trailing dot
optional, other octets as they are, a space included): TXT, A, AAAA,
MX, PTR, CNAME.  A TXT value longer than 255 octets is split into
255-octet character-strings; a list of strings gives those
character-strings as they are.  Per name (optionally for
the whole subtree below it) a mode overrides the records:

    "timeout"   never answered (UDP and TCP)
    "servfail"  SERVFAIL
    "nxdomain"  NXDOMAIN with an SOA
    "refused"   REFUSED

A name not in the zone gets NXDOMAIN with an SOA in the authority
section (so resolvers cache the negative answer); a name in the zone
without the asked type, or an empty non-terminal (a name only above
other names), gets NOERROR/NODATA with an SOA.  CNAMEs are followed
inside the zone.  A query with an EDNS OPT record gets one back; a UDP
answer larger than the client's payload size (512 without EDNS) is sent
truncated (TC) so the client retries over TCP.  Answers carry the
question's id and its question as asked (case preserved).  Garbage is
ignored.

Every question is logged (lower-case name without the final dot, type
name such as "TXT", transport "udp"/"tcp"); count() counts them.
Every loop is bounded and every socket has a timeout; stop() closes
everything and joins the threads.
"""

import collections
import select
import socket
import struct
import threading
import time

from dnslib import (AAAA, CNAME, EDNS0, MX, PTR, QTYPE, RCODE, RR, SOA, TXT,
                    A, DNSHeader, DNSLabel, DNSRecord)

LOOPBACK = "127.0.0.1"
DEFAULT_TTL = 300
POLL = 0.2                  # stop flag polling interval of the threads
TCP_IDLE = 10.0             # an idle TCP connection is closed after this
TCP_MAX_CONNS = 64          # concurrent TCP connections (more: closed)
TCP_MAX_MSGS = 1000         # queries on one TCP connection
MAX_CNAME_HOPS = 8
MAX_DELAY = 30.0            # longest "delay" a name may be given
MAX_LOG = 100000            # query log entries kept (oldest dropped)
MODES = ("timeout", "servfail", "nxdomain", "refused")
TYPES = {"TXT": QTYPE.TXT, "A": QTYPE.A, "AAAA": QTYPE.AAAA, "MX": QTYPE.MX,
         "PTR": QTYPE.PTR, "CNAME": QTYPE.CNAME}

Query = collections.namedtuple("Query", "name type proto when")


def norm(name):
    """The zone key of a name: lower-case, no final dot.  A name off
    the wire (a DNSLabel) is taken by its octets, not by dnslib's text,
    which escapes a space as \\032: a zone name with a space in a label
    (an SPF macro can expand to one) matches the question for it."""
    if isinstance(name, DNSLabel):
        name = ".".join(x.decode("latin-1") for x in name.label) or "."
    if isinstance(name, bytes):
        name = name.decode("ascii")
    name = str(name).strip().lower()
    if name.endswith(".") and name != ".":
        name = name[:-1]
    return name


def split_txt(value):
    """TXT rdata as a list of byte strings of at most 255 octets."""
    if isinstance(value, (list, tuple)):
        out = [v.encode("utf-8") if isinstance(v, str) else bytes(v)
               for v in value]
        for v in out:
            if len(v) > 255:
                raise ValueError("TXT character-string over 255 octets")
        return out
    if isinstance(value, str):
        value = value.encode("utf-8")
    value = bytes(value)
    if not value:
        return [b""]
    return [value[i:i + 255] for i in range(0, len(value), 255)]


def _rdata(rtype, value):
    if rtype == "TXT":
        return TXT(split_txt(value))
    if rtype == "A":
        return A(value)
    if rtype == "AAAA":
        return AAAA(value)
    if rtype == "MX":
        if isinstance(value, str):
            pref, host = value.split(None, 1)
        else:
            pref, host = value
        return MX(norm(host) + ".", int(pref))
    if rtype == "PTR":
        return PTR(norm(value) + ".")
    if rtype == "CNAME":
        return CNAME(norm(value) + ".")
    raise ValueError("unsupported record type %r" % rtype)


class FakeDNS:
    """fake = FakeDNS().start(); fake.txt("example.org", "v=spf1 -all");
    smtpd gets --resolver fake.address; fake.stop()."""

    def __init__(self, host=LOOPBACK, ttl=DEFAULT_TTL):
        self.host = host
        self.ttl = ttl
        self.port = None
        self._lock = threading.Lock()
        self._records = {}          # name -> [(qtype int, rdata, ttl)]
        self._modes = {}            # name -> (mode, subtree)
        self._delays = {}           # name -> seconds
        self._log = []
        self._stop = threading.Event()
        self._threads = []
        self._conns = set()
        self._udp = None
        self._tcp = None

    # ------------------------------------------------------------ setup

    @property
    def address(self):
        """ADDR:PORT as --resolver takes it."""
        return "%s:%d" % (self.host, self.port)

    def start(self):
        # UDP and TCP on the same port: take an ephemeral UDP port, then
        # the same TCP port (retry a few times if that one is taken).
        for _ in range(20):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind((self.host, 0))
            port = udp.getsockname()[1]
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind((self.host, port))
            except OSError:
                udp.close()
                tcp.close()
                continue
            tcp.listen(16)
            self._udp, self._tcp, self.port = udp, tcp, port
            break
        else:
            raise RuntimeError("no port free for UDP and TCP together")
        self._udp.settimeout(POLL)
        self._tcp.settimeout(POLL)
        for target in (self._serve_udp, self._serve_tcp):
            t = threading.Thread(target=target, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, timeout=5.0):
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in list(self._threads):
            t.join(max(deadline - time.monotonic(), 0.01))
        for s in (self._udp, self._tcp):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.close()
            except OSError:
                pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ------------------------------------------------------------ zone

    def add(self, name, rtype, value, ttl=None):
        """Add one record: add("example.org", "TXT", "v=spf1 -all"),
        add(n, "MX", (10, "mx.example.org")) or "10 mx.example.org",
        add(n, "A", "127.0.0.1"), "AAAA", "PTR", "CNAME"."""
        rtype = rtype.upper()
        if rtype not in TYPES:
            raise ValueError("unsupported record type %r" % rtype)
        rec = (TYPES[rtype], _rdata(rtype, value),
               self.ttl if ttl is None else int(ttl))
        with self._lock:
            self._records.setdefault(norm(name), []).append(rec)
        return self

    def txt(self, name, value, ttl=None):
        return self.add(name, "TXT", value, ttl)

    def a(self, name, addr, ttl=None):
        return self.add(name, "A", addr, ttl)

    def aaaa(self, name, addr, ttl=None):
        return self.add(name, "AAAA", addr, ttl)

    def mx(self, name, host, pref=10, ttl=None):
        return self.add(name, "MX", (pref, host), ttl)

    def ptr(self, name, host, ttl=None):
        return self.add(name, "PTR", host, ttl)

    def cname(self, name, target, ttl=None):
        return self.add(name, "CNAME", target, ttl)

    def load(self, zone):
        """Many records at once: {"example.org": {"TXT": ["v=spf1 -all"],
        "MX": [(10, "mx.example.org")]}, ...}; a single value may stand
        for a list of one."""
        for name, types in zone.items():
            for rtype, values in types.items():
                if not isinstance(values, list):
                    values = [values]
                for v in values:
                    self.add(name, rtype, v)
        return self

    def remove(self, name):
        """Forget every record of name (it becomes NXDOMAIN)."""
        with self._lock:
            self._records.pop(norm(name), None)

    def set_mode(self, name, mode, subtree=False):
        """mode in MODES for name (and every name below it when
        subtree); mode None restores normal answers."""
        if mode is not None and mode not in MODES:
            raise ValueError("unknown mode %r" % mode)
        with self._lock:
            if mode is None:
                self._modes.pop(norm(name), None)
            else:
                self._modes[norm(name)] = (mode, subtree)

    def set_delay(self, name, seconds):
        """Answer questions about name only after seconds (UDP and TCP)."""
        if not 0 <= seconds <= MAX_DELAY:
            raise ValueError("delay out of range")
        with self._lock:
            if seconds:
                self._delays[norm(name)] = float(seconds)
            else:
                self._delays.pop(norm(name), None)

    def reset(self):
        """Empty zone, no modes, no delays, empty query log."""
        with self._lock:
            self._records.clear()
            self._modes.clear()
            self._delays.clear()
            self._log.clear()

    # ------------------------------------------------------------ log

    @property
    def queries(self):
        """A copy of the query log: Query(name, type, proto, when)."""
        with self._lock:
            return list(self._log)

    def count(self, name=None, qtype=None, proto=None):
        """How many questions matched name (case-insensitive), type name
        ("TXT") and transport ("udp"/"tcp"); None matches anything."""
        n = norm(name) if name is not None else None
        t = qtype.upper() if qtype is not None else None
        return sum(1 for q in self.queries
                   if (n is None or q.name == n) and
                   (t is None or q.type == t) and
                   (proto is None or q.proto == proto))

    def clear_log(self):
        with self._lock:
            self._log.clear()

    # ------------------------------------------------------------ answers

    def _mode_of(self, name):
        """The mode that applies to name, or None."""
        m = self._modes.get(name)
        if m is not None:
            return m[0]
        labels = name.split(".")
        for i in range(1, len(labels)):
            m = self._modes.get(".".join(labels[i:]))
            if m is not None and m[1]:
                return m[0]
        return None

    def _delay_of(self, name):
        return self._delays.get(name, 0.0)

    def _soa(self, qname):
        labels = [x for x in qname.split(".") if x]
        apex = ".".join(labels[-2:]) + "." if labels else "."
        ns = "ns." + apex if apex != "." else "ns.invalid."
        mbox = "hostmaster." + apex if apex != "." else "hostmaster.invalid."
        return RR(apex, QTYPE.SOA, ttl=self.ttl,
                  rdata=SOA(ns, mbox, (1, 3600, 600, 86400, self.ttl)))

    def _exists(self, name):
        """In the zone, or an empty non-terminal above a name in it."""
        if name in self._records:
            return True
        suffix = "." + name
        return any(k.endswith(suffix) for k in self._records)

    def answer(self, request):
        """The reply DNSRecord to a parsed request, or None (no answer).
        The second value is the delay before answering."""
        h = request.header
        reply = DNSRecord(DNSHeader(id=h.id, qr=1, aa=1, ra=1, rd=h.rd,
                                    opcode=h.opcode),
                          q=request.q if request.questions else None)
        opt = [r for r in request.ar if r.rtype == QTYPE.OPT]
        if opt:
            reply.add_ar(EDNS0(udp_len=1232))
        if h.opcode != 0:
            reply.header.rcode = RCODE.NOTIMP
            return reply, 0.0
        if len(request.questions) != 1:
            reply.header.rcode = RCODE.FORMERR
            return reply, 0.0
        q = request.q
        qname = norm(q.qname)
        with self._lock:
            mode = self._mode_of(qname)
            delay = self._delay_of(qname)
            if mode == "timeout":
                return None, 0.0
            if mode == "servfail":
                reply.header.rcode = RCODE.SERVFAIL
                return reply, delay
            if mode == "refused":
                reply.header.rcode = RCODE.REFUSED
                return reply, delay
            if mode == "nxdomain":
                reply.header.rcode = RCODE.NXDOMAIN
                reply.add_auth(self._soa(qname))
                return reply, delay
            self._resolve(reply, q.qname, q.qtype)
        return reply, delay

    def _resolve(self, reply, qlabel, qtype):
        """Fill reply with the answer for (qlabel, qtype), following
        CNAMEs inside the zone; the lock is held."""
        owner = qlabel                      # the name as asked
        name = norm(qlabel)
        for _ in range(MAX_CNAME_HOPS):
            recs = self._records.get(name)
            if recs is None:
                if not self._exists(name):
                    reply.header.rcode = RCODE.NXDOMAIN
                reply.add_auth(self._soa(name))
                return
            if qtype == QTYPE.ANY:
                match = recs
            else:
                match = [r for r in recs if r[0] == qtype]
            if match:
                for rtype, rdata, ttl in match:
                    reply.add_answer(RR(owner, rtype, ttl=ttl, rdata=rdata))
                return
            cnames = [r for r in recs if r[0] == QTYPE.CNAME]
            if not cnames:
                reply.add_auth(self._soa(name))      # NODATA
                return
            rtype, rdata, ttl = cnames[0]
            reply.add_answer(RR(owner, rtype, ttl=ttl, rdata=rdata))
            owner = rdata.label
            name = norm(rdata.label)
        reply.header.rcode = RCODE.SERVFAIL         # CNAME loop

    def _handle(self, data, proto):
        """(reply bytes or None, delay, udp payload limit) for a query."""
        try:
            request = DNSRecord.parse(data)
        except Exception:               # garbage: ignored
            return None, 0.0, 512
        if request.header.qr:           # a response, not a question
            return None, 0.0, 512
        limit = 512
        for r in request.ar:
            if r.rtype == QTYPE.OPT:
                limit = max(512, min(int(r.rclass), 4096))
        if request.questions:
            q = request.q
            with self._lock:
                if len(self._log) >= MAX_LOG:
                    del self._log[:MAX_LOG // 2]
                self._log.append(Query(norm(q.qname),
                                       QTYPE.get(q.qtype, str(q.qtype)),
                                       proto, time.time()))
        try:
            reply, delay = self.answer(request)
        except Exception:
            return None, 0.0, limit
        if reply is None:
            return None, 0.0, limit
        wire = reply.pack()
        if proto == "udp" and len(wire) > limit:
            short = DNSRecord(DNSHeader(id=reply.header.id, qr=1, aa=1,
                                        ra=1, rd=reply.header.rd, tc=1,
                                        rcode=reply.header.rcode),
                              q=reply.q)
            if any(r.rtype == QTYPE.OPT for r in request.ar):
                short.add_ar(EDNS0(udp_len=1232))
            wire = short.pack()
        return wire, delay, limit

    # ------------------------------------------------------------ servers

    def _later(self, delay, fn):
        """Run fn after delay unless stopped first (a bounded wait)."""
        def run():
            if not self._stop.wait(delay):
                try:
                    fn()
                except OSError:
                    pass
        t = threading.Thread(target=run, daemon=True)
        t.start()

    def _serve_udp(self):
        sock = self._udp
        while not self._stop.is_set():
            try:
                data, peer = sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            wire, delay, _ = self._handle(data, "udp")
            if wire is None:
                continue
            if delay:
                self._later(delay, lambda w=wire, p=peer: sock.sendto(w, p))
                continue
            try:
                sock.sendto(wire, peer)
            except OSError:
                pass

    def _serve_tcp(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._tcp.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                if len(self._conns) >= TCP_MAX_CONNS:
                    conn.close()
                    continue
                self._conns.add(conn)
            t = threading.Thread(target=self._serve_conn, args=(conn,),
                                 daemon=True)
            t.start()

    def _recv_exact(self, conn, n, deadline):
        buf = b""
        for _ in range(int(TCP_IDLE / POLL) + n + 2):
            if len(buf) >= n:
                return buf
            if self._stop.is_set() or time.monotonic() >= deadline:
                return None
            r, _, _ = select.select([conn], [], [], POLL)
            if not r:
                continue
            chunk = conn.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf if len(buf) >= n else None

    def _serve_conn(self, conn):
        lock = threading.Lock()         # delayed answers share the socket

        def send(wire):
            with lock:
                conn.sendall(struct.pack("!H", len(wire)) + wire)
        try:
            conn.settimeout(TCP_IDLE)
            for _ in range(TCP_MAX_MSGS):
                deadline = time.monotonic() + TCP_IDLE
                head = self._recv_exact(conn, 2, deadline)
                if head is None:
                    return
                (length,) = struct.unpack("!H", head)
                data = self._recv_exact(conn, length, deadline)
                if data is None:
                    return
                wire, delay, _ = self._handle(data, "tcp")
                if wire is None:
                    continue
                if delay:
                    self._later(delay, lambda w=wire: send(w))
                else:
                    send(wire)
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns.discard(conn)
            try:
                conn.close()
            except OSError:
                pass
