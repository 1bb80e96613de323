"""The PROXY protocol (SPEC section 8): a peer inside --proxy-from opens
with a HAProxy v1 or v2 header, and the client it names counts
everywhere (ban list, --max-per-ip, logs, the payload's client_ip, the
Received header); a missing, malformed or truncated header from such a
peer closes the connection without a reply; from any other peer a
PROXY line is an unknown command and a v2 signature is garbage.

Tests connect from 127.0.0.1, so `--proxy-from 127.0.0.1/32` makes the
test client the trusted proxy.  Addresses in the headers come from the
documentation ranges (192.0.2.0/24, 2001:db8::/32).
"""

import os
import signal
import socket
import struct
import subprocess
import tempfile
import time

import pytest

from conftest import (HELO, assert_no_sanitizer_report, HOSTNAME, IO_TIMEOUT, LOOPBACK, RCPT, REPO,
                      SMTPD, SMTPClient, assert_reply,
                      free_port, make_message, port_accepts, raw_message,
                      read_spool, resolver_args, wait_for,
                      greeted_with_retry)
from fake_banlist import FakeBanlistAPI
from test_banlist import tcp_pair
from test_tls import client_context, make_pair

TRUSTED = ("--proxy-from", "127.0.0.1/32")
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


# ---------------------------------------------------------------- headers

def v1(src, dst=None, sport=40000, dport=25):
    fam = "TCP6" if ":" in src else "TCP4"
    dst = dst or ("2001:db8::25" if fam == "TCP6" else "198.51.100.25")
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src, dst, sport,
                                          dport)).encode()


def v2(src=None, sport=40000, local=False, tlvs=b""):
    """A v2 header: PROXY TCP over IPv4/IPv6 for src, or LOCAL."""
    if local:
        return V2_SIG + bytes([0x20, 0x00]) + struct.pack("!H", len(tlvs)) \
            + tlvs
    if ":" in src:
        fam = 0x21
        block = socket.inet_pton(socket.AF_INET6, src) + \
            socket.inet_pton(socket.AF_INET6, "2001:db8::25")
    else:
        fam = 0x11
        block = socket.inet_pton(socket.AF_INET, src) + \
            socket.inet_pton(socket.AF_INET, "198.51.100.25")
    block += struct.pack("!HH", sport, 25) + tlvs
    return V2_SIG + bytes([0x21, fam]) + struct.pack("!H", len(block)) + \
        block


def tlv(kind, value):
    return bytes([kind]) + struct.pack("!H", len(value)) + value


# ---------------------------------------------------------------- helpers

def proxied(srv, header, port=None, timeout=IO_TIMEOUT):
    """A connection that has sent header (nothing read yet)."""
    sock = socket.create_connection((LOOPBACK, port or srv.port),
                                    timeout=timeout)
    c = SMTPClient(sock=sock, timeout=timeout)
    c.send(header)
    return c


def greeted_via(srv, header, within=3.0):
    """A proxied session greeted 220, retrying while a just-closed
    session's slot frees (-c 1)."""
    return greeted_with_retry(lambda: proxied(srv, header), within, tries=60)


def deliver_via(srv, header, subject="proxied"):
    """One message through a proxied session (the server's first); its
    spool entry."""
    with proxied(srv, header) as c:
        c.greeting()
        r = c.deliver(make_message(subject=subject))
        assert_reply(r, "250 2.0.0")
        c.quit()
    [entry] = srv.read_spool()
    return entry


def events(srv, name):
    return [e for e in srv.logs(strict=False) if e.get("event") == name]


def wait_events(srv, name, n=1, timeout=5.0):
    wait_for(lambda: len(events(srv, name)) >= n, timeout, interval=0.05)
    return events(srv, name)


def session_events(srv, name, client_ip):
    return [e for e in events(srv, name) if e.get("client_ip") == client_ip]


def assert_client_everywhere(srv, entry, ip):
    """The payload, the Received header and the log name ip."""
    assert entry["client_ip"] == ip, entry["client_ip"]
    raw = raw_message(entry)
    bracket = ("IPv6:" if ":" in ip else "") + ip
    assert ("Received: from %s ([%s])" % (HELO, bracket)).encode() in raw, \
        raw[:400]
    assert b"127.0.0.1" not in raw.split(b"\r\n\r\n")[0], raw[:400]
    wait_events(srv, "disconnect")
    [connect] = session_events(srv, "connect", ip)
    assert connect.get("proxy_ip") == LOOPBACK, connect
    [message] = session_events(srv, "message", ip)
    assert message["status"], message
    assert not session_events(srv, "connect", LOOPBACK)


def assert_closed_silently(c, timeout):
    """Nothing at all from the server, then its close."""
    c.expect_closed(timeout)


# ---------------------------------------------------------------- v1

def test_v1_tcp4_client_is_in_payload_received_and_logs(smtpd):
    srv = smtpd(*TRUSTED)
    entry = deliver_via(srv, v1("192.0.2.7"))
    assert_client_everywhere(srv, entry, "192.0.2.7")


def test_v1_tcp6_client_is_in_payload_received_and_logs(smtpd):
    srv = smtpd(*TRUSTED)
    entry = deliver_via(srv, v1("2001:db8::7"))
    assert_client_everywhere(srv, entry, "2001:db8::7")


def test_v1_unknown_keeps_the_peer_address(smtpd):
    srv = smtpd(*TRUSTED)
    entry = deliver_via(srv, b"PROXY UNKNOWN\r\n")
    assert entry["client_ip"] == LOOPBACK


def test_v1_header_arriving_octet_by_octet_is_read_whole(smtpd):
    srv = smtpd(*TRUSTED)
    header = v1("192.0.2.11")
    with proxied(srv, b"") as c:
        for i in range(len(header)):
            c.send(header[i:i + 1])
            time.sleep(0.005)
        c.greeting()
        c.ehlo()
        c.quit()
    wait_events(srv, "disconnect")
    assert session_events(srv, "connect", "192.0.2.11")


# ---------------------------------------------------------------- v2

def test_v2_ipv4_client_is_in_payload_received_and_logs(smtpd):
    srv = smtpd(*TRUSTED)
    entry = deliver_via(srv, v2("192.0.2.8"))
    assert_client_everywhere(srv, entry, "192.0.2.8")


def test_v2_ipv6_with_tlvs_client_is_in_payload_received_and_logs(smtpd):
    srv = smtpd(*TRUSTED)
    tlvs = tlv(0x01, b"smtp") + tlv(0xEA, b"\x01vpce-0123456789abcdef") + \
        tlv(0x04, b"")
    entry = deliver_via(srv, v2("2001:db8::8", tlvs=tlvs))
    assert_client_everywhere(srv, entry, "2001:db8::8")


def test_v2_local_keeps_the_peer_address(smtpd):
    srv = smtpd(*TRUSTED)
    entry = deliver_via(srv, v2(local=True, tlvs=tlv(0x04, b"\0\0\0\0")))
    assert entry["client_ip"] == LOOPBACK
    wait_events(srv, "disconnect")
    [connect] = events(srv, "connect")
    assert connect["client_ip"] == LOOPBACK and "proxy_ip" not in connect


# ---------------------------------------------------------------- failures

def test_truncated_header_then_silence_is_closed_without_reply(smtpd):
    srv = smtpd(*TRUSTED, "-t", "2")
    header = v1("192.0.2.7")
    with proxied(srv, header[:len(header) // 2]) as c:
        t0 = time.monotonic()
        assert_closed_silently(c, 6.0)
        assert time.monotonic() - t0 >= 1.5, "closed before --timeout"
    [err] = wait_events(srv, "proxy_error")
    assert err["proxy_ip"] == LOOPBACK
    assert "timeout" in err["reason"], err
    assert not events(srv, "connect")


def test_truncated_v2_header_then_close_is_logged(smtpd):
    srv = smtpd(*TRUSTED)
    header = v2("192.0.2.7")
    with proxied(srv, header[:20]) as c:
        c.sock.shutdown(socket.SHUT_WR)
        assert_closed_silently(c, 3.0)
    [err] = wait_events(srv, "proxy_error")
    assert err["reason"] == "truncated header", err


def test_trusted_peer_that_says_nothing_gets_no_greeting(smtpd):
    srv = smtpd(*TRUSTED, "-t", "2")
    with proxied(srv, b"") as c:
        # no greeting before the header: a silent peer hears nothing
        assert_closed_silently(c, 6.0)
    [err] = wait_events(srv, "proxy_error")
    assert err["reason"] == "timeout", err


def test_garbage_from_trusted_peer_is_closed_without_any_reply(smtpd):
    srv = smtpd(*TRUSTED)
    with proxied(srv, b"EHLO client.test\r\n") as c:
        assert_closed_silently(c, 3.0)
    [err] = wait_events(srv, "proxy_error")
    assert err["reason"] == "no header", err
    assert not events(srv, "connect")


@pytest.mark.parametrize("header", [
    b"PROXY TCP4 192.0.2.7 198.51.100.1 65536 25\r\n",
    b"PROXY TCP4 2001:db8::1 198.51.100.1 1 25\r\n",
    b"PROXY TCP4 192.0.2.7 198.51.100.1 1 25\n",
    b"PROXY " + b"x" * 120 + b"\r\n",
    V2_SIG + b"\x31\x11\x00\x0c" + b"\0" * 12,          # version 3
    V2_SIG + b"\x21\x12\x00\x0c" + b"\0" * 12,          # UDP
    V2_SIG + b"\x21\x21\x00\x0c" + b"\0" * 12,          # short block
    V2_SIG + b"\x21\x11\xff\xff",                       # over the bound
], ids=["v1-port", "v1-family", "v1-bare-lf", "v1-long", "v2-version",
        "v2-udp", "v2-short", "v2-huge"])
def test_malformed_header_from_trusted_peer_is_closed_without_reply(
        smtpd, header):
    srv = smtpd(*TRUSTED)
    with proxied(srv, header) as c:
        assert_closed_silently(c, 3.0)
    [err] = wait_events(srv, "proxy_error")
    assert err["reason"] == "malformed header", err


def test_worker_serves_on_after_a_failed_header(smtpd):
    """--max-use 3: a header that fails ends no more than its connection;
    the same worker then serves whole sessions, and the master's
    accounting stays right (nothing claimed, nothing released)."""
    srv = smtpd(*TRUSTED, "--max-use", "3", "--spare", "1", "-c", "1")
    with proxied(srv, b"garbage\r\n") as c:
        assert_closed_silently(c, 3.0)
    for ip in ("192.0.2.21", "192.0.2.22", "192.0.2.23"):
        # -c 1: the last session's release may reach the master a moment
        # after its 221; a slot leaked by the failed header never would
        c = greeted_via(srv, v1(ip))
        c.ehlo()
        c.quit()
        c.close()
    wait_events(srv, "disconnect", 3)
    assert not events(srv, "worker_protocol_error")
    assert len(events(srv, "proxy_error")) == 1


# ---------------------------------------------------------------- untrusted

@pytest.mark.parametrize("extra", [(), ("--proxy-from", "10.0.0.0/8")],
                         ids=["no-proxy-from", "other-network"])
def test_v1_header_from_untrusted_peer_is_an_unknown_command(smtpd, extra):
    srv = smtpd(*extra)
    with srv.session() as c:
        assert_reply(c.cmd(v1("192.0.2.7")[:-2]), "500 5.5.1")
        r = c.deliver(make_message())
        assert_reply(r, "250 2.0.0")
        c.quit()
    [entry] = srv.read_spool()
    assert entry["client_ip"] == LOOPBACK
    wait_events(srv, "disconnect")
    assert not [e for e in srv.logs() if e.get("client_ip") == "192.0.2.7"]


def test_v2_signature_from_untrusted_peer_is_never_believed(smtpd):
    srv = smtpd("--proxy-from", "10.0.0.0/8")
    with srv.session() as c:
        c.send(v2("192.0.2.7"))
        try:
            c.read_until_close(8.0)
        except AssertionError:
            pass    # still open: whatever it answered, it is garbage
    wait_events(srv, "disconnect")
    ips = {e.get("client_ip") for e in srv.logs() if "client_ip" in e}
    assert ips == {LOOPBACK}, ips
    assert not events(srv, "proxy_error")


# ---------------------------------------------------------------- ban list

def test_ban_list_applies_to_the_proxied_address(smtpd, spool_root):
    api = FakeBanlistAPI().start()
    try:
        api.set_lists(["192.0.2.7/32"])
        cache = tempfile.mkdtemp(dir=str(spool_root))
        os.chmod(cache, 0o777)
        srv = smtpd(*TRUSTED, "--poll", "1", "--banlist-cache",
                    os.path.join(cache, "banlist.json"), api=api.url)

        def banned():
            with proxied(srv, v1("192.0.2.7")) as c:
                first = c.reply()
                assert_reply(c.cmd("QUIT"), "221")
            return first.code == 554 and first

        first = wait_for(banned, 6.0, interval=0.2)
        assert first, "the proxied address was never banned"
        assert_reply(first, "554 5.7.1")
        with proxied(srv, v1("192.0.2.8")) as c:
            c.greeting()
            c.ehlo()
            c.quit()
        # the proxy's own address is not what was looked up
        with proxied(srv, v2(local=True)) as c:
            c.greeting()
            c.quit()
    finally:
        api.stop()


# ---------------------------------------------------------------- limits

def test_max_per_ip_counts_the_proxied_ipv6_slash_64(smtpd):
    srv = smtpd(*TRUSTED, "-p", "1", "--spare", "3")
    with proxied(srv, v1("2001:db8::1")) as first:
        first.greeting()
        with proxied(srv, v1("2001:db8::2")) as second:
            assert_reply(second.reply(), "421 4.7.0")
        with proxied(srv, v1("2001:db8:0:1::1")) as other:
            other.greeting()
            other.quit()
        with proxied(srv, v1("192.0.2.7")) as v4:
            v4.greeting()
            with proxied(srv, v1("192.0.2.7")) as again:
                assert_reply(again.reply(), "421 4.7.0")
            v4.quit()
        first.quit()


# ---------------------------------------------------------------- TLS

def test_smtps_behind_proxy_header_before_handshake(smtpd, tmp_path):
    cert, key = make_pair(tmp_path / "tls")
    port = free_port()
    srv = smtpd(*TRUSTED, "--tls-cert", cert, "--tls-key", key,
                "--smtps", "%s:%d" % (LOOPBACK, port))
    assert wait_for(lambda: port_accepts(port), 5)
    raw = socket.create_connection((LOOPBACK, port), timeout=IO_TIMEOUT)
    raw.sendall(v1("192.0.2.9"))
    tls = client_context().wrap_socket(raw, server_hostname=HOSTNAME)
    with SMTPClient(sock=tls) as c:
        c.greeting()
        r = c.deliver(make_message())
        assert_reply(r, "250 2.0.0")
        c.quit()
    [entry] = srv.read_spool()
    assert entry["client_ip"] == "192.0.2.9"
    assert b"[192.0.2.9]" in raw_message(entry)


# ---------------------------------------------------------------- exactness

@pytest.mark.parametrize("header", [v1("192.0.2.10"), v2("192.0.2.10"),
                                    v2("192.0.2.10", tlvs=tlv(1, b"x"))],
                         ids=["v1", "v2", "v2-tlv"])
def test_pipelined_ehlo_after_header_is_not_swallowed(smtpd, header):
    srv = smtpd(*TRUSTED)
    with proxied(srv, header + b"EHLO " + HELO.encode() + b"\r\n") as c:
        c.greeting()
        r = c.reply()
        assert_reply(r, "250")
        assert "192.0.2.10" in r.lines[0], r.lines
        c.quit()


def test_proxy_from_no_longer_refused_at_start(smtpd):
    srv = smtpd(*TRUSTED)
    assert srv.proc.poll() is None



# ---------------------------------------------------------------- SPF

def test_spf_checks_the_proxied_address(smtpd, dns):
    dns.txt("example.org", "v=spf1 ip4:192.0.2.7 -all")
    srv = smtpd(*TRUSTED, resolver=dns)
    for ip in ("192.0.2.7", "192.0.2.99"):
        with proxied(srv, v1(ip)) as c:
            c.greeting()
            r = c.deliver(make_message(sender="ann@example.org",
                                       subject=ip),
                          sender="ann@example.org")
            assert_reply(r, "250 2.0.0")
            c.quit()
    got = {e["subject"]: e["spf_result"] for e in srv.read_spool()}
    assert got == {"192.0.2.7": "pass", "192.0.2.99": "fail"}, got


# ---------------------------------------------------------------- -i

def test_inetd_mode_reads_the_header_of_a_trusted_peer(spool_dir, tmp_path):
    """smtpd -i with an accepted TCP socket (peer 127.0.0.1) as stdin
    and stdout, as inetd would start it."""
    ours, theirs = tcp_pair()
    err = tmp_path / "inetd.err"
    with open(err, "wb") as errf:
        proc = subprocess.Popen(
            [str(SMTPD), "-i", "-H", HOSTNAME, "-r", RCPT, "--spool",
             str(spool_dir), *TRUSTED] + resolver_args(()),
            cwd=str(REPO), stdin=theirs.fileno(), stdout=theirs.fileno(),
            stderr=errf, start_new_session=True)
    theirs.close()
    try:
        with SMTPClient(sock=ours, timeout=5) as c:
            c.send(v2("2001:db8::42"))
            c.greeting()
            assert_reply(c.deliver(make_message()), "250 2.0.0")
            c.quit()
        status = proc.wait(timeout=5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    assert_no_sanitizer_report(err.read_text(errors="replace"), "smtpd -i")
    assert status == 0, err.read_text(errors="replace")[-2000:]
    [entry] = read_spool(spool_dir)
    assert entry["client_ip"] == "2001:db8::42"
