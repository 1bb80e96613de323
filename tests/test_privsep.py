"""Privilege separation (SPEC section 1): the relay alone talks to FIRM
and holds the API key; a worker holds no secret, maps no HTTP client and
cannot corrupt the master; every child, first started or restarted,
holds only the master's descriptors its role keeps and no TLS key;
--max-use reuses a worker, each session from a clean state."""

import collections
import os
import secrets
import signal

import pytest

from conftest import (SANITIZER, LOOPBACK, TOKEN, SMTPD_TEST, assert_reply,
                      children, free_port, make_message, wait_for)
from test_sandbox import (LOCALERR, assert_serving, proc_status,
                          socket_inodes, split_children, tcp_inodes,
                          worker_of)

MEM_CHUNK = 1 << 20


SANITIZER_MAP_MAX = 128 << 20


def read_memory(pid, tables=True):
    """Every readable mapping of pid, as one bytes (root reads
    /proc/PID/mem of any process); without tables, but the shared
    memory the master makes (the ban table, 192 MB, and the metrics),
    the same pages in every process that maps them."""
    out = []
    with open("/proc/%d/maps" % pid) as maps, \
            open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            name = fields[5] if len(fields) > 5 else ""
            if "r" not in fields[1] or name in ("[vvar]", "[vsyscall]"):
                continue
            if not tables and fields[1][3] == "s" and \
                    name.startswith("/memfd:smtpd-"):
                continue
            # the sanitizer build's shadow memory: terabytes reserved,
            # which a read through /proc would make the process touch
            if SANITIZER and hi - lo > SANITIZER_MAP_MAX:
                continue
            for at in range(lo, hi, MEM_CHUNK):
                try:
                    mem.seek(at)
                    out.append(mem.read(min(MEM_CHUNK, hi - at)))
                except OSError:
                    break
    return b"".join(out)


def mapped_files(pid):
    """The files pid maps, or None if it is gone."""
    try:
        with open("/proc/%d/maps" % pid) as f:
            return {l.split()[5] for l in f if len(l.split()) > 5}
    except OSError:
        return None


def relay_of(srv):
    """The master's child that maps libcurl: the relay or the fetcher;
    the relay is the one holding no listening socket and no cache."""
    _, others = split_children(srv)
    for pid in others:
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue            # gone meanwhile
        if len(argv) > 1 and argv[1] == b"relay":
            return pid
    return None


def established_to(port):
    """Inodes of established TCP connections whose remote port is
    port (from /proc/net/tcp{,6})."""
    found = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(path) as f:
            for row in f.read().splitlines()[1:]:
                fields = row.split()
                if len(fields) >= 10 and fields[3] == "01" and \
                        int(fields[2].rsplit(":", 1)[1], 16) == port:
                    found.add(fields[9])
    return found


# ---------------------------------------------------------------- image

def test_worker_maps_no_http_client_and_the_relay_does(smtpd, firm):
    srv = smtpd("--spare", "1", api=firm.url)
    assert wait_for(lambda: relay_of(srv) is not None and
                    split_children(srv)[0], 5), split_children(srv)
    seen = 0
    for pid in split_children(srv)[0]:
        libs = mapped_files(pid)
        if libs is None:
            continue
        seen += 1
        assert not [l for l in libs if "libcurl" in l], sorted(libs)
        assert [l for l in libs if "libtls" in l], sorted(libs)
    assert seen >= 1
    relay = mapped_files(relay_of(srv))
    assert relay and [l for l in relay if "libcurl" in l], relay


# ---------------------------------------------------------------- secrets

def test_api_secret_is_in_the_relay_and_in_no_worker(smtpd, firm,
                                                      tmp_path):
    secret = secrets.token_hex(24).encode()
    path = tmp_path / "secret"
    path.write_bytes(secret + b"\n")
    srv = smtpd("--spare", "1", "--api-secret", str(path), api=firm.url)
    assert wait_for(lambda: relay_of(srv) is not None, 5)
    idle = next(iter(split_children(srv)[0]))
    assert secret not in read_memory(idle)
    with srv.session() as c:
        busy = worker_of(srv, c)
        assert_reply(c.deliver(make_message()), "250 2.0.0")
        assert secret not in read_memory(busy)
        c.quit()
    # the search finds it where it is: it works
    assert secret in read_memory(relay_of(srv))
    assert firm.wait_inbound(1)[0].header("X-Firm-Signature")


# ---------------------------------------------------------------- relay

def test_the_connection_to_firm_is_the_relays(smtpd, firm):
    srv = smtpd("--spare", "1", api=firm.url)
    with srv.session() as c:
        pid = worker_of(srv, c)
        assert_reply(c.deliver(make_message()), "250 2.0.0")
        conns = established_to(firm.port)
        assert conns, "no connection to the fake FIRM"
        assert not conns & socket_inodes(pid)
        relay = relay_of(srv)
        assert conns & socket_inodes(relay), (conns, relay)
        c.quit()


def test_sessions_reuse_one_connection_to_firm(smtpd, firm):
    srv = smtpd("--spare", "2", api=firm.url)
    for _ in range(4):
        with srv.session() as c:
            assert_reply(c.deliver(make_message()), "250 2.0.0")
            c.quit()
    reqs = firm.wait_inbound(4)
    assert len(reqs) == 4, reqs
    peers = {r.peer for r in reqs}
    assert len(peers) == 1, peers


@pytest.mark.worker_deaths
def test_relay_killed_mid_post_gives_451_and_the_next_delivers(smtpd, firm):
    srv = smtpd("--spare", "2", api=firm.url)
    assert wait_for(lambda: relay_of(srv) is not None, 5)
    relay = relay_of(srv)
    firm.answer_once(hang=True)
    with srv.session() as c:
        c.envelope()            # up to DATA's 354
        c.send(make_message() + b".\r\n")
        assert wait_for(lambda: len(firm.inbound()) == 1, 5)
        os.kill(relay, signal.SIGKILL)
        assert_reply(c.reply(timeout=5), "451 4.4.1")
        c.quit()
    assert wait_for(lambda: relay_of(srv) not in (None, relay), 5)
    with srv.session() as c:
        assert_reply(c.deliver(make_message()), "250 2.0.0")
        c.quit()
    assert len(firm.wait_inbound(2)) == 2
    assert [e for e in srv.logs() if e.get("event") == "relay_exited"]


# ---------------------------------------------------------------- master

@pytest.mark.worker_deaths
def test_a_worker_scribbling_on_shared_memory_harms_nobody(smtpd):
    srv = smtpd("--spare", "2", binary=SMTPD_TEST)
    with srv.session() as c:
        r = c.cmd("XTEST SHM-SCRIBBLE")
        # a worker shares no writable memory with anyone: nothing to
        # scribble on (the ban table is mapped read-only)
        assert r.lines == [LOCALERR + "scribbled over 0 shared writable "
                           "mappings (0 words)"], r.lines
        c.quit()
    assert wait_for(lambda: len(split_children(srv)[0]) >= 2, 5)
    for _ in range(3):
        assert_serving(srv)
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.proc.wait(timeout=10) == 0
    assert not [e for e in srv.logs() if e.get("event") ==
                "worker_protocol_error"]


# ---------------------------------------------------------------- max-use

def sessions_per_worker(srv):
    return collections.Counter(e["pid"] for e in srv.logs()
                               if e.get("event") == "connect")


def test_max_use_3_reuses_workers_for_at_most_3_sessions(smtpd):
    srv = smtpd("--spare", "1", "--max-use", "3")
    for _ in range(9):
        with srv.session() as c:
            assert_reply(c.deliver(make_message()), "250 2.0.0")
            c.quit()
    assert len(srv.read_spool()) == 9
    per = sessions_per_worker(srv)
    assert sum(per.values()) == 9, per
    assert max(per.values()) <= 3, per
    assert max(per.values()) >= 2, per


def test_max_use_second_session_starts_fresh(smtpd):
    srv = smtpd("--spare", "1", "--max-use", "2")
    with srv.session() as c:
        first = worker_of(srv, c)
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<first@example.net>"), "250 2.1.0")
        c.close()       # no QUIT: the envelope is left half made
    wait_for(lambda: False, 0.3)
    pids = set()
    for _ in range(4):
        with srv.session() as c:
            pids.add(worker_of(srv, c))
            if pids and first in pids:
                # MAIL before EHLO: the last session's HELO is gone
                assert_reply(c.cmd("MAIL FROM:<x@example.net>"),
                             "503 5.5.1")
                c.ehlo()
                # and so is its envelope: a new MAIL is not nested
                assert_reply(c.cmd("MAIL FROM:<x@example.net>"),
                             "250 2.1.0")
                c.quit()
                break
            c.quit()
    assert first in pids, (first, pids)
    assert "first@example.net" not in "".join(
        str(s) for s in srv.read_spool())


def test_max_use_is_checked(smtpd, tmp_path):
    from conftest import run_smtpd, free_port, HOSTNAME, RCPT
    status, _, err = run_smtpd([
        "-d", "-l", "%s:%d" % (LOOPBACK, free_port()), "-H", HOSTNAME,
        "-r", RCPT, "--spool", str(tmp_path / "s"), "--max-use", "0"])
    assert status == 1 and "--max-use" in err, err


def key_secrets(key):
    """Byte strings that betray a private key in memory: its PEM lines,
    and (RSA) the primes and private exponent, (EC) the private scalar,
    each big- and little-endian."""
    from test_tls import openssl
    pem = [l.encode() for l in open(key).read().splitlines()
           if len(l) >= 40 and not l.startswith("-----")]
    text = openssl("pkey", "-in", key, "-noout", "-text")
    numbers, name, hexdigits = [], None, ""
    for line in text.splitlines() + ["end:"]:
        if not line.startswith(" ") and line.rstrip().endswith(":"):
            if name in ("prime1", "prime2", "privateExponent", "priv") \
                    and hexdigits:
                numbers.append(bytes.fromhex(hexdigits).lstrip(b"\0"))
            name, hexdigits = line.strip().rstrip(":"), ""
        elif line.startswith(" ") and name is not None:
            hexdigits += line.strip().replace(":", "")
    assert numbers, text
    out = pem[:]
    for n in numbers:
        out += [n[:32], n[::-1][:32]]       # a window of each suffices
    return out


@pytest.mark.parametrize("rsa", [True, False], ids=["rsa", "ec"])
def test_worker_memory_holds_no_tls_key_during_starttls(smtpd, tmp_path,
                                                        rsa):
    from test_tls import make_pair, starttls
    cert, key = make_pair(tmp_path / "tls", rsa=rsa)
    secrets_ = key_secrets(key)
    srv = smtpd("--spare", "1", "--tls-cert", cert, "--tls-key", key)
    with srv.session() as c:
        pid = worker_of(srv, c)
        c.ehlo()
        starttls(c)
        assert_reply(c.deliver(make_message()), "250 2.0.0")
        memory = read_memory(pid)
        found = [s[:8].hex() for s in secrets_ if s in memory]
        assert not found, found
        c.quit()
    assert len(srv.read_spool()) == 1
    # the master holds the key: the search finds it there
    master = read_memory(srv.proc.pid)
    assert [s for s in secrets_ if s in master]


@pytest.mark.parametrize("rsa", [True, False], ids=["rsa", "ec"])
def test_health_memory_holds_no_tls_key(smtpd, tmp_path, rsa):
    # the health process is exec'd: a fresh image, never a copy of the
    # master's, which holds the key
    import http.client
    from test_health import health_pid
    from test_tls import make_pair, starttls
    cert, key = make_pair(tmp_path / "tls", rsa=rsa)
    secrets_ = key_secrets(key)
    hport = free_port()
    srv = smtpd("--spare", "1", "--tls-cert", cert, "--tls-key", key,
                "--health", "%s:%d" % (LOOPBACK, hport))
    with srv.session() as c:        # the master signs for a handshake
        c.ehlo()
        starttls(c)
        assert_reply(c.deliver(make_message()), "250 2.0.0")
        c.quit()
    pid = wait_for(lambda: health_pid(srv), 5)
    assert pid
    for path in ("/healthz", "/metrics"):
        h = http.client.HTTPConnection(LOOPBACK, hport, timeout=5)
        h.request("GET", path)
        assert h.getresponse().status == 200, path
        h.close()
    memory = read_memory(pid)
    found = [s[:8].hex() for s in secrets_ if s in memory]
    assert not found, found
    # the master holds the key: the search finds it there
    assert [s for s in secrets_ if s in read_memory(srv.proc.pid)]


def limits(pid):
    out = {}
    with open("/proc/%d/limits" % pid) as f:
        for line in f.readlines()[1:]:
            name = line[:26].strip()
            out[name] = line[26:].split()[0]
    return out


def test_worker_resource_limits(smtpd):
    srv = smtpd("--spare", "1", "-s", "1000000", "--max-use", "2")
    with srv.session() as c:
        lim = limits(worker_of(srv, c))
        c.quit()
    # the sanitizer build leaves it unlimited: ASan reserves terabytes
    assert lim["Max address space"] == ("unlimited" if SANITIZER else
                                        str((1 << 30) + 48 * 1000000)), lim
    assert lim["Max file size"] == str((64 << 20) + 16 * 1000000), lim
    assert lim["Max cpu time"] == str(120 * 2), lim
    assert lim["Max processes"] == "0", lim
    assert lim["Max core file size"] == "0", lim


def test_each_process_logs_what_confines_it(smtpd, firm):
    srv = smtpd("--spare", "1", api=firm.url)
    assert wait_for(lambda: len([e for e in srv.logs()
                                 if e.get("event") == "sandbox"]) >= 4, 5)
    roles = {e["role"]: e for e in srv.logs() if e.get("event") == "sandbox"}
    assert set(roles) == {"worker", "relay", "verifier", "fetcher"}, roles
    for role, e in roles.items():
        assert e["chroot"], e           # root: a chroot on every kernel
        assert e["user"] == "nobody", e
        assert e["seccomp"], e
    assert roles["worker"]["landlock_net"] is False   # no inet at all
    assert "no socket" in roles["worker"]["network"]
    # smtpd-relay's check of its libraries' destinations says what it
    # is not: a barrier to an attacker in the process
    for role in ("relay", "fetcher"):
        assert "relay_guard.c" in roles[role]["guard"], roles[role]
        assert "not an attacker" in roles[role]["guard"], roles[role]
    assert roles["worker"]["guard"] is None, roles["worker"]


def test_relay_closes_a_channel_that_breaks_the_rules(smtpd, firm):
    srv = smtpd("--spare", "2", api=firm.url, binary=SMTPD_TEST)
    assert wait_for(lambda: relay_of(srv) is not None, 5)
    relay = relay_of(srv)
    with srv.session() as c:
        r = c.cmd("XTEST CHAN-GARBAGE")
        assert r.lines == [LOCALERR + "channel: 16 bytes of garbage"], \
            r.lines
        # that worker's channel is closed: its message cannot go out
        assert_reply(c.deliver(make_message()), "451 4.4.1")
        c.quit()
    assert wait_for(lambda: [e for e in srv.logs() if "broke the channel"
                             in e.get("msg", "")], 5)
    # the relay lives on and serves everyone else
    assert relay_of(srv) == relay
    with srv.session() as c:
        assert_reply(c.deliver(make_message()), "250 2.0.0")
        c.quit()
    assert len(firm.wait_inbound(1)) == 1


# ------------------------------------------------------ what a child holds

def fd_identities(pid):
    """{fd: (identity, link)} of the descriptors pid holds, or {} if it
    is gone.  Two descriptors of one object share its identity: the
    link of a socket, pipe or anonymous inode, else the file's device
    and inode (a directory, a memfd)."""
    out = {}
    try:
        names = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return out
    for name in names:
        path = "/proc/%d/fd/%s" % (pid, name)
        try:
            link = os.readlink(path)
            if link.startswith(("socket:", "pipe:", "anon_inode:")):
                ident = link
            else:
                st = os.stat(path)
                ident = ("file", st.st_dev, st.st_ino)
        except OSError:
            continue            # closed meanwhile
        out[int(name)] = (ident, link)
    return out


def shared_regions(pid):
    """{identity: name} of the shared memory the master maps: the ban
    table read-only, the metrics region writable (both memfds are
    called smtpd-banlist)."""
    out = {}
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            fields = line.split()
            if len(fields) > 5 and fields[1] in ("r--s", "rw-s") and \
                    fields[5].startswith("/memfd:smtpd-"):
                st = os.stat("/proc/%d/map_files/%s" % (pid, fields[0]))
                out[("file", st.st_dev, st.st_ino)] = \
                    "the ban table" if fields[1] == "r--s" else \
                    "the metrics region"
    return out


def child_roles(srv):
    """{pid: role} of the master's children: the relay and the fetcher
    are smtpd-relay's roles, the health process holds the listening
    health socket, every other child is a worker (one serving its last
    session has closed the listeners)."""
    health = {"socket:[%s]" % i for i in tcp_inodes(srv.hport, "0A")} \
        if getattr(srv, "hport", None) else set()
    roles = {}
    for pid in children(srv.proc.pid):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue            # gone meanwhile
        if len(argv) > 1 and argv[1] in (b"relay", b"fetcher",
                                         b"verifier"):
            roles[pid] = argv[1].decode()
        elif {l for _, l in fd_identities(pid).values()} & health:
            roles[pid] = "health"
        else:
            roles[pid] = "worker"
    return roles


def settled_roles(srv, want):
    """child_roles(srv) once it has every role in want and each child
    runs under its system-call filter, the last step of its start (one
    caught between fork and exec still holds all the master holds);
    else None."""
    roles = child_roles(srv)
    if not set(roles.values()) >= want:
        return None
    for pid in roles:
        try:
            if proc_status(pid).get("Seccomp") != "2":
                return None
        except OSError:
            pass                # gone meanwhile: not checked
    return roles


def what_each_child_may_share(srv, master, cache=None):
    """{role: identities of the master's descriptors it may hold}: every
    child its standard descriptors; a worker the SMTP listeners (no
    directory: the relay writes the spool); the health process its
    listening socket; the fetcher the pipe that tells it the master is
    gone, the ban table it writes and the directory of its cache; the
    relay the spool; the verifier nothing more."""
    std = {master[fd][0] for fd in (0, 1, 2) if fd in master}
    smtp = {"socket:[%s]" % i for i in tcp_inodes(srv.port, "0A")}
    spool = set()
    if srv.spool is not None:
        st = os.stat(srv.spool)
        spool.add(("file", st.st_dev, st.st_ino))
    health = {"socket:[%s]" % i for i in tcp_inodes(srv.hport, "0A")}
    pipes = {i for i, l in master.values() if l.startswith("pipe:")}
    table = {i for i, name in shared_regions(srv.proc.pid).items()
             if name == "the ban table"}
    fetcher = pipes | table
    if cache is not None:
        st = os.stat(os.path.dirname(cache))
        fetcher.add(("file", st.st_dev, st.st_ino))
    return {"worker": std | smtp, "health": std | health,
            "relay": std | spool, "fetcher": std | fetcher,
            "verifier": std}


def assert_children_hold_only_what_they_keep(srv, roles, key, secret,
                                             cache=None):
    """Every child in roles (pid: role) holds no descriptor of the
    master's but those its role keeps, no byte of the TLS key, and (but
    the relay and the fetcher, which sign for FIRM) no byte of the API
    secret (None: there is none)."""
    master = fd_identities(srv.proc.pid)
    owner = {ident: (fd, link) for fd, (ident, link) in master.items()}
    owner.update({ident: (owner[ident][0], name) for ident, name in
                  shared_regions(srv.proc.pid).items() if ident in owner})
    may = what_each_child_may_share(srv, master, cache)
    tls_key = key_secrets(key)
    wrong, seen = [], set()
    for pid, role in sorted(roles.items()):
        fds = fd_identities(pid)
        try:
            memory = read_memory(pid, tables=False)
        except OSError:
            continue            # a worker that has left meanwhile
        seen.add(role)
        for fd, (ident, _) in sorted(fds.items()):
            if ident in owner and ident not in may[role]:
                wrong.append("%s %d: fd %d is the master's fd %d, %s" % (
                    role, pid, fd, owner[ident][0], owner[ident][1]))
        if [s for s in tls_key if s in memory]:
            wrong.append("%s %d: holds the TLS private key" % (role, pid))
        if role not in ("relay", "fetcher") and secret is not None and \
                secret in memory:
            wrong.append("%s %d: holds the API secret" % (role, pid))
    assert not wrong, "\n".join(wrong)
    assert seen == set(roles.values()), (seen, roles)
    # the searches find what is there: they work
    assert [s for s in tls_key if s in read_memory(srv.proc.pid, False)]
    relays = [p for p, r in roles.items() if r == "relay"]
    assert secret is None or secret in read_memory(relays[0], False)


def start_every_child(smtpd, tmp_path, api):
    """A server with every kind of child, TLS and --health; with api,
    also an API secret and the fetcher.  (srv, key, secret, cache)."""
    from test_tls import make_pair, starttls
    cert, key = make_pair(tmp_path / "tls")
    secret = secrets.token_hex(24).encode() if api is not None else None
    hport = free_port()
    extra = ["--spare", "2", "--tls-cert", cert, "--tls-key", key,
             "--health", "%s:%d" % (LOOPBACK, hport)]
    cache = None
    if api is not None:
        cache = str(tmp_path / "cache" / "banlist.json")
        os.makedirs(os.path.dirname(cache))
        os.chmod(os.path.dirname(cache), 0o777)
        (tmp_path / "secret").write_bytes(secret + b"\n")
        extra += ["--api-secret", str(tmp_path / "secret"),
                  "--banlist-cache", cache]
    srv = smtpd(*extra, api=api)
    srv.hport = hport
    want = {"worker", "relay", "verifier", "health"} | \
        ({"fetcher"} if api else set())
    assert wait_for(lambda: settled_roles(srv, want), 5), child_roles(srv)
    # a worker that has served a STARTTLS session, signatures and all
    with srv.session() as c:
        c.ehlo()
        starttls(c)
        assert_reply(c.deliver(make_message()), "250 2.0.0")
        c.quit()
    return srv, key, secret, cache


@pytest.mark.parametrize("api", [True, False], ids=["api", "spool"])
def test_each_child_holds_only_what_it_keeps(smtpd, firm, tmp_path, api):
    srv, key, secret, cache = start_every_child(
        smtpd, tmp_path, firm.url if api else None)
    want = {"worker", "relay", "verifier", "health"} | \
        ({"fetcher"} if api else set())
    with srv.session() as c:
        busy = worker_of(srv, c)
        roles = wait_for(lambda: settled_roles(srv, want), 5)
        assert roles and roles.get(busy) == "worker", child_roles(srv)
        assert_children_hold_only_what_they_keep(srv, roles, key, secret,
                                                 cache)
        c.quit()


def test_each_restarted_child_holds_only_what_it_keeps(smtpd, firm,
                                                       tmp_path):
    srv, key, secret, cache = start_every_child(smtpd, tmp_path, firm.url)
    first = child_roles(srv)
    helpers = {p: r for p, r in first.items() if r != "worker"}
    assert sorted(helpers.values()) == ["fetcher", "health", "relay",
                                        "verifier"]
    for pid in helpers:
        os.kill(pid, signal.SIGKILL)

    def restarted():
        now = settled_roles(srv, {"worker", "relay", "fetcher", "health",
                                  "verifier"})
        return now if now and not set(now) & set(helpers) else None
    roles = wait_for(restarted, 10)
    assert roles, child_roles(srv)
    assert_children_hold_only_what_they_keep(srv, roles, key, secret, cache)
