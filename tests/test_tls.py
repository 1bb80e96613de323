"""TLS: STARTTLS (RFC 3207), implicit TLS on --smtps (RFC 8314),
TLS 1.2/1.3 only, the handshake timeout, the Received header and spool
"tls" field, SIGHUP certificate reload, and the -C / -n checks.

Certificates are made per test with the openssl command; servers run
on 127.0.0.1 only.
"""
import datetime
import hashlib
import os
import pathlib
import re
import select
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import time
import warnings

import pytest

from conftest import (after_auth_results, HELO, HOSTNAME, IO_TIMEOUT, LOOPBACK, RCPT, SENDER,
                      TOKEN, SMTPClient, assert_reply, children, free_port,
                      make_message, port_accepts, raw_message, reply_id,
                      reloaded_children, run_smtpd, wait_for)

OPENSSL_TIMEOUT = 30
TLS_VERSIONS = ("TLSv1.2", "TLSv1.3")


# ---------------------------------------------------------------- certificates

def openssl(*args, cwd=None):
    """Run the openssl command (bounded); its stdout, or a test failure."""
    p = subprocess.run(["openssl"] + [str(a) for a in args], cwd=cwd,
                       stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=OPENSSL_TIMEOUT)
    if p.returncode != 0:
        pytest.fail("openssl %s failed: %s" % (
            " ".join(map(str, args)), p.stderr.decode("utf-8", "replace")))
    return p.stdout.decode("utf-8", "replace")


def make_pair(directory, name="server", days=365, cn=HOSTNAME, rsa=False):
    """A self-signed certificate for cn (also its DNS subjectAltName)
    and its key: (cert path, key path)."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cert = directory / (name + ".crt")
    key = directory / (name + ".key")
    newkey = ["-newkey", "rsa:2048"] if rsa else \
        ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    openssl("req", "-x509", *newkey, "-nodes", "-keyout", key,
            "-out", cert, "-days", days, "-subj", "/CN=" + cn,
            "-addext", "subjectAltName=DNS:" + cn)
    os.chmod(key, 0o600)
    return cert, key


CA_CONF = """\
[ ca ]
default_ca = ca_default
[ ca_default ]
database = ./index.txt
new_certs_dir = .
serial = ./serial
default_md = sha256
policy = policy_any
unique_subject = no
[ policy_any ]
commonName = supplied
"""


def make_expired_pair(directory, cn=HOSTNAME):
    """A self-signed certificate valid from 2020-01-01 to 2020-01-02
    (OpenSSL 3.0 has no -not_after; `openssl ca` takes explicit dates)."""
    directory = pathlib.Path(directory)
    work = directory / "ca"
    work.mkdir(parents=True, exist_ok=True)
    key = directory / "expired.key"
    cert = directory / "expired.crt"
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-out", key)
    openssl("req", "-new", "-key", key, "-subj", "/CN=" + cn,
            "-out", work / "req.csr")
    (work / "ca.cnf").write_text(CA_CONF)
    (work / "index.txt").write_text("")
    (work / "serial").write_text("01\n")
    openssl("ca", "-batch", "-config", "ca.cnf", "-selfsign",
            "-keyfile", key, "-in", "req.csr", "-out", cert,
            "-startdate", "20200101000000Z", "-enddate", "20200102000000Z",
            "-notext", cwd=str(work))
    os.chmod(key, 0o600)
    return cert, key


def cert_not_after(cert):
    """The certificate's notAfter as 'YYYY-MM-DDTHH:MM:SSZ'."""
    out = openssl("x509", "-in", cert, "-noout", "-enddate").strip()
    when = datetime.datetime.strptime(out.split("=", 1)[1],
                                      "%b %d %H:%M:%S %Y GMT")
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def cert_fingerprint(cert):
    """sha256 of the DER form of a PEM certificate file."""
    der = ssl.PEM_cert_to_DER_cert(pathlib.Path(cert).read_text())
    return hashlib.sha256(der).hexdigest()


@pytest.fixture
def pair(tmp_path):
    """A good certificate and key for test.example, valid for a year."""
    return make_pair(tmp_path / "tls")


# ---------------------------------------------------------------- servers

def start_tls(smtpd, cert_key, *extra, smtps=False):
    """smtpd with --tls-cert/--tls-key (and an --smtps listener on a
    second free port, as srv.smtps_port, when smtps is true)."""
    cert, key = cert_key
    args = ["--tls-cert", cert, "--tls-key", key]
    port = None
    if smtps:
        port = free_port()
        args += ["--smtps", "%s:%d" % (LOOPBACK, port)]
    srv = smtpd(*(args + list(extra)))
    srv.smtps_port = port
    if smtps:
        assert wait_for(lambda: port_accepts(port), 5), \
            "--smtps port %d not listening" % port
    return srv


def client_context(cafile=None, minimum=None, maximum=None):
    """A client context; with cafile, the chain is verified against it
    (the host name is not: clients connect to 127.0.0.1)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    if cafile is None:
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(cafile=str(cafile))
    if minimum is not None:
        ctx.minimum_version = minimum
    if maximum is not None:
        ctx.maximum_version = maximum
    return ctx


def smtps_connect(srv, ctx=None, timeout=IO_TIMEOUT):
    """An SMTPClient on the --smtps port, handshake done, greeting not
    read yet."""
    raw = socket.create_connection((LOOPBACK, srv.smtps_port),
                                   timeout=timeout)
    try:
        tls = (ctx or client_context()).wrap_socket(
            raw, server_hostname=HOSTNAME)
    except BaseException:
        raw.close()
        raise
    return SMTPClient(sock=tls, timeout=timeout)


def starttls(c, ctx=None):
    """STARTTLS on a plain SMTPClient: 220 2.0.0, then the handshake."""
    assert_reply(c.cmd("STARTTLS"), "220 2.0.0")
    assert c.buf == b"", "data after the 220 to STARTTLS: %r" % c.buf
    c.sock = (ctx or client_context()).wrap_socket(
        c.sock, server_hostname=HOSTNAME)


def served_fingerprint(srv):
    """sha256 of the certificate a new --smtps session is served, after
    a whole session (greeting, QUIT, close) so no worker lingers."""
    with smtps_connect(srv) as c:
        der = c.sock.getpeercert(binary_form=True)
        c.greeting()
        c.quit()
    return hashlib.sha256(der).hexdigest()


def ehlo_keywords(reply):
    return [line[4:].split(" ")[0].upper() for line in reply.lines[1:]]


def received_header(raw):
    """Our Received header (the first one, with its folded lines)."""
    raw = after_auth_results(raw)
    assert raw.startswith(b"Received: "), raw[:200]
    lines = raw.split(b"\r\n")
    out = [lines[0]]
    for line in lines[1:]:
        if not line[:1] in (b" ", b"\t"):
            break
        out.append(line)
    return b"\r\n".join(out)


def log_events(srv, name):
    return [e for e in srv.logs(strict=False) if e.get("event") == name]


def client_hello():
    """The bytes of a TLS ClientHello, made without a network."""
    outgoing = ssl.MemoryBIO()
    obj = client_context().wrap_bio(ssl.MemoryBIO(), outgoing,
                                    server_hostname=HOSTNAME)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def closed_within(sock, timeout):
    """Read until the peer closes; returns (seconds taken, bytes read).
    AssertionError if it stays open past timeout."""
    start = time.monotonic()
    deadline = start + timeout
    data = b""
    for _ in range(10000):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            return time.monotonic() - start, data
        data += chunk
    raise AssertionError("connection still open after %.1fs; got %r"
                         % (timeout, data[:200]))


# ---------------------------------------------------------------- STARTTLS

def test_smtplib_starttls_delivery_is_spooled_with_tls_version(smtpd,
                                                               tmp_path):
    cert, key = make_pair(tmp_path / "tls", rsa=True)
    srv = start_tls(smtpd, (cert, key))
    with smtplib.SMTP(LOOPBACK, srv.port, local_hostname=HELO,
                      timeout=10) as s:
        s.ehlo()
        assert s.has_extn("starttls")
        code, _ = s.starttls(context=client_context(cafile=cert))
        assert code == 220
        version = s.sock.version()
        assert version in TLS_VERSIONS
        s.ehlo()
        refused = s.sendmail(SENDER, [RCPT], make_message())
        assert refused == {}
    [e] = srv.read_spool()
    assert e["tls"] == version
    received = received_header(raw_message(e))
    assert re.search(rb"\bwith ESMTPS id [0-9a-f]{16}\b", received), received
    assert re.search(rb"\(using " + version.encode() +
                     rb" with cipher [A-Za-z0-9_-]+\)", received), received


def test_plain_session_on_tls_server_has_null_tls_and_esmtp(smtpd, pair):
    srv = start_tls(smtpd, pair)
    with srv.session() as c:
        assert_reply(c.deliver(make_message()), "250 2.0.0")
    [e] = srv.read_spool()
    assert e["tls"] is None
    received = received_header(raw_message(e))
    assert re.search(rb"\bwith ESMTP id ", received), received
    assert b"(using " not in received, received


def test_openssl_s_client_starttls_smtp_completes(smtpd, pair):
    cert, _ = pair
    srv = start_tls(smtpd, pair)
    p = subprocess.run(
        ["openssl", "s_client", "-starttls", "smtp",
         "-connect", "%s:%d" % (LOOPBACK, srv.port),
         "-servername", HOSTNAME, "-CAfile", str(cert),
         "-verify_hostname", HOSTNAME, "-verify_return_error",
         "-crlf", "-ign_eof"],
        input=b"QUIT\n", capture_output=True, timeout=20)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, out[-2000:] + p.stderr.decode()[-1000:]
    assert re.search(r"subject=\s*CN\s*=\s*test\.example", out), out
    assert re.search(r"\bTLSv1\.[23]\b", out), out
    assert "Verify return code: 0 (ok)" in out, out
    assert re.search(r"^221 2\.0\.0", out, re.M), out


def test_ehlo_advertises_starttls_only_before_tls(smtpd, pair):
    srv = start_tls(smtpd, pair)
    with srv.session() as c:
        assert "STARTTLS" in ehlo_keywords(c.ehlo())
        starttls(c)
        assert "STARTTLS" not in ehlo_keywords(c.ehlo())


def test_starttls_twice_gets_503_5_5_1(smtpd, pair):
    srv = start_tls(smtpd, pair)
    with srv.session() as c:
        c.ehlo()
        starttls(c)
        c.ehlo()
        assert_reply(c.cmd("STARTTLS"), "503 5.5.1")
        assert_reply(c.cmd("NOOP"), "250 2.0.0")     # still usable, in TLS


def test_starttls_with_argument_gets_501_5_5_4(smtpd, pair):
    srv = start_tls(smtpd, pair)
    with srv.session() as c:
        c.ehlo()
        assert_reply(c.cmd("STARTTLS now"), "501 5.5.4")
        assert_reply(c.cmd("NOOP"), "250 2.0.0")     # still in clear


def test_starttls_without_tls_configured_gets_502_5_5_1(server):
    with server.session() as c:
        assert "STARTTLS" not in ehlo_keywords(c.ehlo())
        assert_reply(c.cmd("STARTTLS"), "502 5.5.1")
        assert_reply(c.cmd("NOOP"), "250 2.0.0")


def test_starttls_requires_ehlo_again(smtpd, pair):
    srv = start_tls(smtpd, pair)
    with srv.session() as c:
        c.ehlo()
        starttls(c)
        assert_reply(c.cmd("MAIL FROM:<%s>" % SENDER), "503 5.5.1")


def test_commands_pipelined_after_starttls_are_discarded(smtpd, pair):
    srv = start_tls(smtpd, pair)
    with srv.session() as c:
        c.ehlo()
        c.send(b"STARTTLS\r\nNOOP\r\n")
        assert_reply(c.reply(), "220 2.0.0")
        assert c.buf == b"", "reply in clear after 220: %r" % c.buf
        c.sock = client_context().wrap_socket(c.sock,
                                              server_hostname=HOSTNAME)
        with pytest.raises(TimeoutError):
            r = c.reply(timeout=1.0)
            raise AssertionError("reply to the injected NOOP: %r" % r)
        assert_reply(c.cmd("MAIL FROM:<a@b.c>"), "503 5.5.1")


def test_mail_pipelined_after_starttls_sets_no_sender(smtpd, pair):
    srv = start_tls(smtpd, pair)
    with srv.session() as c:
        c.ehlo()
        c.send(b"STARTTLS\r\nMAIL FROM:<evil@example.com>\r\n")
        assert_reply(c.reply(), "220 2.0.0")
        c.sock = client_context().wrap_socket(c.sock,
                                              server_hostname=HOSTNAME)
        c.ehlo()
        assert_reply(c.cmd("RCPT TO:<%s>" % RCPT), "503 5.5.1")


def test_require_tls_refuses_mail_before_starttls_530(smtpd, pair):
    srv = start_tls(smtpd, pair, "--require-tls")
    with srv.session() as c:
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<%s>" % SENDER), "530 5.7.0")
        starttls(c)
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<%s>" % SENDER), "250 2.1.0")


def test_starttls_discards_a_transaction_in_progress(smtpd, pair):
    srv = start_tls(smtpd, pair)
    with srv.session() as c:
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<%s>" % SENDER), "250 2.1.0")
        starttls(c)
        c.ehlo()
        assert_reply(c.cmd("RCPT TO:<%s>" % RCPT), "503 5.5.1")


def test_pipelined_transaction_and_large_message_over_tls(smtpd, pair):
    """Many TLS records in one burst: replies to pipelined commands and
    a message of several hundred kilobytes come through whole."""
    srv = start_tls(smtpd, pair)
    line = "x" * 70 + "\r\n"
    body = "please verify " + TOKEN + "\r\n" + line * 8000   # ~580 KB
    message = make_message(body=body)
    with srv.session(timeout=15) as c:
        c.ehlo()
        starttls(c)
        c.send("EHLO %s\r\nMAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n"
               % (HELO, SENDER, RCPT))
        ehlo, mail, rcpt, data = c.replies(4)
        assert_reply(ehlo, "250")
        assert_reply(mail, "250 2.1.0")
        assert_reply(rcpt, "250 2.1.5")
        assert_reply(data, "354")
        assert_reply(c.send_data(message), "250 2.0.0")
        c.quit()
    [e] = srv.read_spool()
    assert e["tls"] in TLS_VERSIONS
    assert raw_message(e).endswith(message)


def test_idle_tls_session_gets_421_4_4_2_inside_tls(smtpd, pair):
    srv = start_tls(smtpd, pair, "-t", "2")
    with srv.session() as c:
        c.ehlo()
        starttls(c)
        c.ehlo()
        r = c.reply(timeout=10)
        assert_reply(r, "421 4.4.2")
        c.expect_closed(5)


def test_sigterm_tells_idle_tls_session_421_4_3_2(smtpd, pair):
    srv = start_tls(smtpd, pair, smtps=True)
    with smtps_connect(srv) as c:
        c.greeting()
        c.ehlo()
        srv.signal(signal.SIGTERM)
        assert_reply(c.reply(timeout=10), "421 4.3.2")
        c.expect_closed(5)
    assert srv.wait(10) == 0


# ---------------------------------------------------------------- --smtps

def test_smtps_greets_inside_tls_and_delivers(smtpd, pair):
    cert, _ = pair
    srv = start_tls(smtpd, pair, smtps=True)
    with smtps_connect(srv, client_context(cafile=cert)) as c:
        version = c.sock.version()
        assert version in TLS_VERSIONS
        r = c.greeting()
        assert r.lines[0].startswith("220 %s ESMTP" % HOSTNAME), r.lines
        ehlo = c.ehlo()
        assert "STARTTLS" not in ehlo_keywords(ehlo)
        r = c.deliver(make_message(), helo=None)
        assert_reply(r, "250 2.0.0")
        msg_id = reply_id(r)
        c.quit()
    [e] = srv.read_spool()
    assert e["tls"] == version
    assert (srv.spool / (msg_id + ".json")).exists()
    received = received_header(raw_message(e))
    assert re.search(rb"\bwith ESMTPS id [0-9a-f]{16}\b", received), received
    assert b"(using " + version.encode() + b" with cipher " in received


def test_require_tls_accepts_mail_at_once_on_smtps(smtpd, pair):
    srv = start_tls(smtpd, pair, "--require-tls", smtps=True)
    with smtps_connect(srv) as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<%s>" % SENDER), "250 2.1.0")


def test_starttls_on_smtps_gets_503_5_5_1(smtpd, pair):
    srv = start_tls(smtpd, pair, smtps=True)
    with smtps_connect(srv) as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd("STARTTLS"), "503 5.5.1")


def test_smtps_sends_nothing_in_clear_to_a_plain_client(smtpd, pair):
    srv = start_tls(smtpd, pair, smtps=True)
    with socket.create_connection((LOOPBACK, srv.smtps_port),
                                  timeout=IO_TIMEOUT) as s:
        s.sendall(b"EHLO client.test\r\n")
        _, data = closed_within(s, 5)
    assert b"220" not in data and b"ESMTP" not in data, data[:200]


def test_tls12_is_accepted(smtpd, pair):
    srv = start_tls(smtpd, pair, smtps=True)
    ctx = client_context(maximum=ssl.TLSVersion.TLSv1_2)
    with smtps_connect(srv, ctx) as c:
        assert c.sock.version() == "TLSv1.2"
        c.greeting()
        assert_reply(c.deliver(make_message()), "250 2.0.0")
    [e] = srv.read_spool()
    assert e["tls"] == "TLSv1.2"


def test_tls11_and_lower_are_refused(smtpd, pair):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx = client_context(minimum=ssl.TLSVersion.TLSv1,
                                 maximum=ssl.TLSVersion.TLSv1_1)
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except (ValueError, ssl.SSLError) as e:
        pytest.skip("local OpenSSL cannot offer TLS 1.1: %s" % e)
    # can this client emit a TLS <= 1.1 ClientHello at all?
    probe = ctx.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(),
                         server_hostname=HOSTNAME)
    try:
        probe.do_handshake()
    except ssl.SSLWantReadError:
        pass
    except ssl.SSLError as e:
        pytest.skip("local OpenSSL cannot offer TLS 1.1: %s" % e)
    srv = start_tls(smtpd, pair, smtps=True)
    raw = socket.create_connection((LOOPBACK, srv.smtps_port),
                                   timeout=IO_TIMEOUT)
    try:
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            tls = ctx.wrap_socket(raw, server_hostname=HOSTNAME)
            raise AssertionError("server accepted %s" % tls.version())
    finally:
        raw.close()
    assert wait_for(lambda: log_events(srv, "tls_failed"), 3), \
        srv.log_text()[-2000:]


def test_smtps_over_max_sessions_sends_nothing_in_clear(smtpd, pair):
    """RFC 8314: on an implicit-TLS port everything is inside TLS.  A
    session over the limit may be refused inside TLS or closed, but a
    cleartext "421" is garbage to the client's TLS stack."""
    srv = start_tls(smtpd, pair, "-c", "1", smtps=True)
    hello = client_hello()
    with srv.session() as c:            # takes the only session
        c.ehlo()
        with socket.create_connection((LOOPBACK, srv.smtps_port),
                                      timeout=IO_TIMEOUT) as s:
            s.sendall(hello)
            try:
                first = s.recv(4096)
            except ConnectionResetError:
                first = b""
        # nothing, or a TLS record (handshake 0x16 / alert 0x15)
        assert first == b"" or first[:1] in (b"\x15", b"\x16"), \
            "cleartext on the --smtps port: %r" % first[:100]


# ---------------------------------------------------------------- timeouts

def test_stalled_smtps_handshake_is_cut_after_timeout(smtpd, pair):
    srv = start_tls(smtpd, pair, "-t", "2", smtps=True)
    with socket.create_connection((LOOPBACK, srv.smtps_port),
                                  timeout=IO_TIMEOUT) as s:
        took, data = closed_within(s, 10)
    assert data == b"", data[:200]
    assert 1.0 <= took < 10, took
    assert wait_for(lambda: any("timed out" in e.get("error", "")
                                for e in log_events(srv, "tls_failed")), 3)


def test_stalled_starttls_handshake_is_cut_after_timeout(smtpd, pair):
    srv = start_tls(smtpd, pair, "-t", "2")
    with srv.session() as c:
        c.ehlo()
        assert_reply(c.cmd("STARTTLS"), "220 2.0.0")
        took, data = closed_within(c.sock, 10)
    assert data == b"", data[:200]
    assert 1.0 <= took < 10, took


def test_slow_handshake_is_cut_at_timeout_in_total(smtpd, pair):
    """A ClientHello dripped a byte at a time must not extend the
    handshake past --timeout (the limit is for the whole handshake)."""
    srv = start_tls(smtpd, pair, "-t", "2", smtps=True)
    hello = client_hello()
    assert len(hello) > 100, hello
    with socket.create_connection((LOOPBACK, srv.smtps_port),
                                  timeout=IO_TIMEOUT) as s:
        start = time.monotonic()
        closed = False
        for i in range(len(hello)):
            if time.monotonic() - start > 10:
                break
            try:
                s.sendall(hello[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            readable, _, _ = select.select([s], [], [], 0.2)
            if readable:
                try:
                    chunk = s.recv(4096)
                except ConnectionResetError:
                    chunk = b""
                if not chunk:
                    closed = True
                    break
        took = time.monotonic() - start
    assert closed, "handshake still open after %.1fs of dripping" % took
    assert took < 6, took


# ---------------------------------------------------------------- SIGHUP

def test_sighup_serves_new_certificate_and_keeps_open_sessions(smtpd,
                                                               tmp_path):
    cert, key = make_pair(tmp_path / "live")
    new_cert, new_key = make_pair(tmp_path / "next")
    old_fp, new_fp = cert_fingerprint(cert), cert_fingerprint(new_cert)
    assert old_fp != new_fp
    srv = start_tls(smtpd, (cert, key), "--spare", "2", "-p", "20",
                    smtps=True)
    assert served_fingerprint(srv) == old_fp

    with smtps_connect(srv) as open_session:
        assert hashlib.sha256(open_session.sock.getpeercert(
            binary_form=True)).hexdigest() == old_fp
        open_session.greeting()
        open_session.envelope()

        shutil.copyfile(new_key, key)
        shutil.copyfile(new_cert, cert)
        srv.signal(signal.SIGHUP)
        assert wait_for(lambda: served_fingerprint(srv) == new_fp, 5,
                        interval=0.1), "new certificate not served in 5s"
        assert log_events(srv, "tls_reloaded")

        r = open_session.send_data(make_message())
        assert_reply(r, "250 2.0.0")
        open_session.quit()
    [e] = srv.read_spool()
    assert e["tls"] in TLS_VERSIONS


def test_sighup_with_mismatched_pair_keeps_old_certificate(smtpd, tmp_path):
    cert, key = make_pair(tmp_path / "live")
    other_cert, _ = make_pair(tmp_path / "other")
    old_fp = cert_fingerprint(cert)
    srv = start_tls(smtpd, (cert, key), "--spare", "2", "-p", "20",
                    smtps=True)
    assert served_fingerprint(srv) == old_fp
    master = srv.proc.pid
    before = reloaded_children(master)
    assert before

    shutil.copyfile(other_cert, cert)        # the key no longer matches
    srv.signal(signal.SIGHUP)
    assert wait_for(lambda: log_events(srv, "tls_reload_failed"), 5), \
        srv.log_text()[-2000:]
    # every idle worker from before the SIGHUP has been replaced
    assert wait_for(lambda: not (reloaded_children(master) & before)
                    and len(reloaded_children(master)) >= 2, 5), \
        (before, reloaded_children(master))
    for _ in range(3):
        assert served_fingerprint(srv) == old_fp
    assert srv.proc.poll() is None


# ---------------------------------------------------------------- expiry

EXPIRY_METRIC = "smtpd_tls_certificate_expiry_timestamp_seconds"


def test_expired_certificate_warns_at_start_and_shows_in_metrics(smtpd,
                                                                 tmp_path):
    from test_health import start_health, metrics
    cert, key = make_expired_pair(tmp_path / "tls")
    srv = start_health(smtpd, "--tls-cert", cert, "--tls-key", key)
    assert wait_for(lambda: log_events(srv, "tls_certificate_expiry"), 5)
    [e] = log_events(srv, "tls_certificate_expiry")
    assert e["level"] == "warning", e
    assert e["not_after"] == "2020-01-02T00:00:00Z", e
    assert e["expired"] is True and e["days"] < 0, e
    assert "test.example" in e["subject"] and e["cert"] == str(cert), e
    vals, types = metrics(srv)
    assert types[EXPIRY_METRIC] == "gauge"
    assert vals[(EXPIRY_METRIC, frozenset())] == 1577923200   # 2020-01-02


def test_sighup_warns_of_a_certificate_expiring_within_14_days(smtpd,
                                                               tmp_path):
    from test_health import start_health, metrics
    cert, key = make_pair(tmp_path / "live")
    soon_cert, soon_key = make_pair(tmp_path / "soon", days=7)
    srv = start_health(smtpd, "--tls-cert", cert, "--tls-key", key)
    assert not log_events(srv, "tls_certificate_expiry")
    shutil.copyfile(soon_key, key)
    shutil.copyfile(soon_cert, cert)
    srv.signal(signal.SIGHUP)
    assert wait_for(lambda: log_events(srv, "tls_certificate_expiry"), 5), \
        srv.log_text()[-2000:]
    [e] = log_events(srv, "tls_certificate_expiry")
    assert e["days"] in (6, 7) and e["expired"] is False, e
    assert e["not_after"] == cert_not_after(soon_cert), e
    when = datetime.datetime.strptime(e["not_after"], "%Y-%m-%dT%H:%M:%SZ")
    expect = when.replace(tzinfo=datetime.timezone.utc).timestamp()
    assert wait_for(lambda: metrics(srv)[0][(EXPIRY_METRIC, frozenset())] ==
                    expect, 5)


# ---------------------------------------------------------------- -C and -n

def check_args(flag, spool_dir, cert, key):
    return [flag, "-r", RCPT, "--spool", spool_dir,
            "--tls-cert", cert, "--tls-key", key]


def test_check_cert_describes_a_good_certificate(pair, spool_dir):
    cert, key = pair
    status, out, err = run_smtpd(check_args("-C", spool_dir, cert, key))
    assert status == 0, err
    lines = out.splitlines()
    assert re.fullmatch(r"subject: .*CN\s*=\s*test\.example.*", lines[0]), \
        out
    assert lines[1] == "names: test.example", out
    assert lines[2] == "expires: " + cert_not_after(cert), out
    assert err == ""


def test_check_cert_warns_within_14_days_of_expiry(tmp_path, spool_dir):
    cert, key = make_pair(tmp_path / "tls", days=7)
    status, out, err = run_smtpd(check_args("-C", spool_dir, cert, key))
    assert status == 0, err
    assert "expires: " + cert_not_after(cert) in out
    assert re.search(r"warning", err, re.I), err
    assert str(cert) in err and cert_not_after(cert) in err, err


def test_check_cert_refuses_an_expired_certificate(tmp_path, spool_dir):
    cert, key = make_expired_pair(tmp_path / "tls")
    status, out, err = run_smtpd(check_args("-C", spool_dir, cert, key))
    assert status == 1, (out, err)
    assert "expires: 2020-01-02T00:00:00Z" in out, out
    assert re.search(r"expired", err, re.I), err
    assert str(cert) in err, err


def test_check_cert_refuses_a_key_that_does_not_match(tmp_path, spool_dir):
    """The usual mistake: a renewed certificate with another key of the
    same type.  The reason must say that the key does not match."""
    cert, _ = make_pair(tmp_path / "a")
    _, other_key = make_pair(tmp_path / "b")
    status, out, err = run_smtpd(check_args("-C", spool_dir, cert,
                                            other_key))
    assert status == 1, (out, err)
    assert str(other_key) in err, err
    assert re.search(r"mismatch|does not match", err, re.I), err


def test_check_cert_refuses_an_unreadable_certificate(tmp_path, spool_dir,
                                                      pair):
    _, key = pair
    missing = tmp_path / "missing.crt"
    status, out, err = run_smtpd(check_args("-C", spool_dir, missing, key))
    assert status == 1, (out, err)
    assert str(missing) in err, err
    assert out == ""


def test_check_cert_needs_only_the_certificate_and_key(pair):
    cert, key = pair
    status, out, err = run_smtpd(["-C", "--tls-cert", cert,
                                  "--tls-key", key])
    assert status == 0, err
    assert "names: test.example" in out, out
    assert "expires: " + cert_not_after(cert) in out, out


def test_check_cert_alone_refuses_an_expired_certificate(tmp_path):
    cert, key = make_expired_pair(tmp_path / "tls")
    status, out, err = run_smtpd(["-C", "--tls-cert", cert,
                                  "--tls-key", key])
    assert status == 1, (out, err)
    assert "expires: 2020-01-02T00:00:00Z" in out, out
    assert re.search(r"expired", err, re.I), err


def test_check_cert_compares_the_names_with_hostname(pair):
    cert, key = pair
    args = ["-C", "--tls-cert", cert, "--tls-key", key]
    status, out, err = run_smtpd(args + ["-H", "test.example"])
    assert status == 0, err
    status, out, err = run_smtpd(args + ["-H", "mx.elsewhere.example"])
    assert status == 1, (out, err)
    assert "mx.elsewhere.example" in err and str(cert) in err, err


def make_encrypted_key(directory):
    """A certificate and its key, the key encrypted with a passphrase."""
    cert, key = make_pair(directory)
    locked = pathlib.Path(directory) / "locked.key"
    openssl("pkey", "-in", key, "-aes256", "-passout", "pass:secret",
            "-out", locked)
    assert b"ENCRYPTED" in locked.read_bytes()
    return cert, locked


def test_config_test_refuses_a_passphrase_key_without_prompting(tmp_path,
                                                                spool_dir):
    cert, locked = make_encrypted_key(tmp_path / "tls")
    started = time.monotonic()
    status, out, err = run_smtpd(check_args("-n", spool_dir, cert, locked))
    assert time.monotonic() - started < 3
    assert status == 1, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(locked) in lines[0] and "passphrase" in lines[0], err


def test_config_test_refuses_a_mismatched_pair(tmp_path, spool_dir):
    cert, _ = make_pair(tmp_path / "a")
    _, other_key = make_pair(tmp_path / "b")
    status, out, err = run_smtpd(check_args("-n", spool_dir, cert,
                                            other_key))
    assert status == 1, (out, err)
    assert "configuration OK" not in out
    assert str(other_key) in err, err


def test_config_test_refuses_an_expired_certificate(tmp_path, spool_dir):
    cert, key = make_expired_pair(tmp_path / "tls")
    status, out, err = run_smtpd(check_args("-n", spool_dir, cert, key))
    assert status == 1, (out, err)
    assert re.search(r"expired", err, re.I), err


def test_config_test_accepts_a_good_pair(pair, spool_dir):
    cert, key = pair
    status, out, err = run_smtpd(check_args("-n", spool_dir, cert, key))
    assert status == 0, err
    assert "configuration OK" in out


def test_server_refuses_to_start_with_a_mismatched_pair(tmp_path, spool_dir):
    cert, _ = make_pair(tmp_path / "a")
    _, other_key = make_pair(tmp_path / "b")
    port = free_port()
    status, out, err = run_smtpd(
        ["-d", "-l", "%s:%d" % (LOOPBACK, port), "-r", RCPT,
         "--spool", spool_dir, "--tls-cert", cert, "--tls-key", other_key])
    assert status == 1, (out, err)
    assert str(other_key) in err, err
    assert not port_accepts(port)


# ---------------------------------------------------------------- swaks

def swaks_has_tls():
    p = subprocess.run(["swaks", "--support"], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=30)
    return b"=== TLS supported" in p.stdout + p.stderr


def test_swaks_tls_delivery_is_spooled_with_tls(smtpd, pair):
    if shutil.which("swaks") is None or not swaks_has_tls():
        pytest.skip("swaks without TLS support (needs libnet-ssleay-perl)")
    srv = start_tls(smtpd, pair)
    p = subprocess.run(
        ["swaks", "--server", "%s:%d" % (LOOPBACK, srv.port), "--tls",
         "--to", RCPT, "--from", SENDER, "--helo", HELO,
         "--timeout", "10", "--body", TOKEN],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, out[-2000:]
    assert re.search(r"^=== TLS started with cipher TLSv1\.[23]", out,
                     re.M), out
    assert re.search(r"^ ?<~  250 2\.0\.0 OK [0-9a-f]{16}", out, re.M), out
    [e] = srv.read_spool()
    assert e["tls"] in TLS_VERSIONS
    assert e["token"] == TOKEN


def test_smtps_flood_from_one_address_does_not_starve_other_clients(
        smtpd, pair):
    """Over --max-per-ip on the implicit-TLS port, a connection is
    closed at once rather than holding a worker through a handshake for
    up to --timeout: another client still gets its greeting."""
    srv = start_tls(smtpd, pair, "-c", "6", "-p", "2", "--spare", "2",
                    "-t", "20", smtps=True)
    flood = []
    try:
        for _ in range(12):             # silent: no ClientHello
            flood.append(socket.create_connection(
                (LOOPBACK, srv.smtps_port), timeout=IO_TIMEOUT))
        time.sleep(0.5)
        s = socket.create_connection((LOOPBACK, srv.port), timeout=3,
                                     source_address=("127.0.0.2", 0))
        with SMTPClient(sock=s, timeout=3) as c:
            assert_reply(c.reply(timeout=3), "220")
    finally:
        for s in flood:
            s.close()
