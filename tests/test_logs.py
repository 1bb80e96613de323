"""JSON log lines on stdout with -d (SPEC 6, design.md Logs)."""

import os

import pytest

from conftest import TOKEN, assert_reply, make_message, reply_id, wait_for

BODY_MARKER = "SECRET-BODY-TEXT-7f3a9c"


def deliver_and_stop(srv):
    body = "Hello " + BODY_MARKER + "\r\nverify " + TOKEN + "\r\n"
    with srv.session() as c:
        r = c.deliver(make_message(body=body))
        assert_reply(r, "250 2.0.0")
        c.quit()
    srv.stop()          # flushes and closes stdout
    return reply_id(r)


def events(logs, name):
    return [x for x in logs if x.get("event") == name]


def test_every_log_line_is_a_json_object_with_ts_level_event(smtpd):
    srv = smtpd()
    deliver_and_stop(srv)
    logs = srv.logs(strict=True)
    assert logs, "no log lines on stdout"
    for line in logs:
        for key in ("ts", "level", "event"):
            assert key in line, line
        assert isinstance(line["event"], str) and line["event"], line
        assert isinstance(line["level"], str) and line["level"], line


def test_session_events_carry_the_same_session_id(smtpd):
    srv = smtpd()
    deliver_and_stop(srv)
    logs = srv.logs()
    [connect] = events(logs, "connect")
    [message] = events(logs, "message")
    assert connect.get("session"), connect
    assert message.get("session") == connect["session"], (connect, message)


def test_connect_event_has_client_ip(smtpd):
    srv = smtpd()
    deliver_and_stop(srv)
    [connect] = events(srv.logs(), "connect")
    assert connect["client_ip"] == "127.0.0.1", connect


def test_message_event_has_token_status_size_and_id(smtpd):
    srv = smtpd()
    msgid = deliver_and_stop(srv)
    [message] = events(srv.logs(), "message")
    assert message["token"] == TOKEN, message
    assert "status" in message, message
    assert isinstance(message["size"], int) and message["size"] > 0, message
    [entry] = srv.read_spool()
    assert message["size"] == entry["size"], (message, entry["size"])
    if "id" in message:
        assert message["id"] == msgid, message
    if "reply" in message:
        assert str(message["reply"]).startswith("250"), message


def test_rejected_message_is_logged_with_its_status(smtpd):
    srv = smtpd()
    with srv.session() as c:
        assert_reply(c.deliver(make_message(body="no token\r\n")),
                     "550 5.7.0")
        c.quit()
    srv.stop()
    logs = srv.logs()
    rejected = [x for x in logs
                if x.get("event") in ("message", "reject") and
                "550" in str(x.get("reply", "")) + str(x.get("status", ""))]
    assert rejected, logs


@pytest.mark.parametrize("verbose", [[], ["-v"], ["-v", "-v"]],
                         ids=["quiet", "verbose", "trace"])
def test_message_body_never_appears_in_the_log(smtpd, verbose):
    srv = smtpd(*verbose)
    deliver_and_stop(srv)
    text = srv.log_text()
    assert text, "no log output"
    assert BODY_MARKER not in text


def test_protocol_trace_logs_commands_with_two_v(smtpd):
    srv = smtpd("-v", "-v")
    deliver_and_stop(srv)
    logs = srv.logs()
    lines_in = [x.get("line", "") for x in events(logs, "smtp_in")]
    lines_out = [x.get("line", "") for x in events(logs, "smtp_out")]
    assert any(x.startswith("EHLO") for x in lines_in), lines_in
    assert any(x.startswith("250") for x in lines_out), lines_out


def test_log_lines_are_written_while_the_server_runs(smtpd):
    srv = smtpd()
    with srv.session() as c:
        c.ehlo()
        found = wait_for(lambda: events(srv.logs(strict=False), "connect"),
                         3.0)
        assert found, "no connect event on stdout while the session is open"


def journal_server(tmp_path, spool_root, monkeypatch, stream):
    """smtpd -d whose stdout is a file; stream(stat of that file) gives
    JOURNAL_STREAM (None: unset).  Started, one session, stopped."""
    import os
    import tempfile
    from conftest import SmtpdServer, build_args, free_port
    workdir = tmp_path / "journal"
    workdir.mkdir()
    parent = tempfile.mkdtemp(dir=str(spool_root))
    os.chmod(parent, 0o711)
    spool = os.path.join(parent, "spool")
    port = free_port()
    srv = SmtpdServer(workdir, build_args(port, spool), port, spool)
    srv.log_path.touch()        # opened "wb" at start: the same inode
    value = stream(os.stat(srv.log_path))
    if value is None:
        monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    else:
        monkeypatch.setenv("JOURNAL_STREAM", value)
    try:
        srv.start()
        with srv.session() as c:
            c.ehlo()
            assert_reply(c.cmd("MAIL FROM:<a@b.c> BOGUS=1"), "555")
            c.quit()
    finally:
        srv.stop()
    return srv.log_path.read_bytes().decode("utf-8").splitlines()


def test_journal_stream_prefixes_each_line_with_its_priority(
        tmp_path, spool_root, monkeypatch):
    import json
    import re
    lines = journal_server(tmp_path, spool_root, monkeypatch,
                           lambda st: "%d:%d" % (st.st_dev, st.st_ino))
    assert lines
    want = {"error": 3, "warning": 4, "info": 6, "debug": 7}
    seen = set()
    for line in lines:
        m = re.match(r"<(\d)>(\{.*)$", line)
        assert m, "no <N> prefix: %r" % line
        obj = json.loads(m.group(2))
        assert int(m.group(1)) == want[obj["level"]], line
        seen.add(obj["event"])
    assert "start" in seen and "connect" in seen, seen


@pytest.mark.parametrize("stream", [
    None,
    lambda st: "%d:%d" % (st.st_dev, st.st_ino + 1),
    lambda st: "%d:%d" % (st.st_dev + 1, st.st_ino),
    lambda st: "garbage",
], ids=["unset", "other-inode", "other-device", "garbage"])
def test_no_priority_prefix_unless_stdout_is_the_journal(
        tmp_path, spool_root, monkeypatch, stream):
    lines = journal_server(tmp_path, spool_root, monkeypatch,
                           stream or (lambda st: None))
    assert lines
    for line in lines:
        assert line.startswith("{"), line


def test_start_event_names_every_listener_and_marks_smtps(smtpd, tmp_path):
    from conftest import LOOPBACK, free_port
    from test_tls import make_pair
    cert, key = make_pair(tmp_path / "tls")
    second, tls = free_port(), free_port()
    srv = smtpd("-l", "%s:%d" % (LOOPBACK, second), "--tls-cert", cert,
                "--tls-key", key, "--smtps", "%s:%d" % (LOOPBACK, tls))
    srv.stop()
    [start] = events(srv.logs(), "start")
    assert sorted(start["listeners"]) == sorted([
        "%s:%d" % (LOOPBACK, srv.port), "%s:%d" % (LOOPBACK, second),
        "%s:%d smtps" % (LOOPBACK, tls)]), start


def test_protocol_trace_logs_each_line_of_a_multi_line_reply(smtpd):
    srv = smtpd("-vv")
    with srv.session() as c:
        c.ehlo()
        c.quit()
    srv.stop()
    out = [x.get("line", "") for x in events(srv.logs(), "smtp_out")]
    assert not [x for x in out if "??" in x], out
    assert "250-PIPELINING" in out and "250 ENHANCEDSTATUSCODES" in out, out
    assert any(x.startswith("250-test.example Hello") for x in out), out


def test_client_that_never_reads_is_logged_as_write_timeout(smtpd):
    """A client whose receive window is full: the worker's write waits
    --timeout, then ends the session, logged with its own reason."""
    import socket
    import time
    from conftest import LOOPBACK
    # transactions, not junk commands: those end the session after 100
    srv = smtpd("-t", "2", "--max-rcpt", "1000")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((LOOPBACK, srv.port))
    sock.setblocking(False)
    sock.send(b"EHLO client.example\r\n")
    chunk = (b"MAIL FROM:<a@example.net>\r\n" +
             b"RCPT TO:<verify@localhost>\r\n" * 1000 + b"DATA\r\n" +
             b"x" * 1001 + b"\r\n.\r\n")   # refused: no FIRM call
    stuck_since = None
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            try:
                sock.send(chunk)
                stuck_since = None
            except BlockingIOError:
                stuck_since = stuck_since or time.monotonic()
                if time.monotonic() - stuck_since > 1:
                    break       # both directions full: the worker waits
                time.sleep(0.05)
            except OSError:
                break           # already cut
        assert wait_for(lambda: events(srv.logs(strict=False),
                                       "disconnect"), 10)
    finally:
        sock.close()
    [d] = events(srv.logs(strict=False), "disconnect")
    assert d["reason"] == "write-timeout", d


def pipe_lines(fd, until, timeout):
    """Read JSON lines from fd until one satisfies until(event)."""
    import json
    import select
    import time
    buf, seen = b"", []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not select.select([fd], [], [], 0.1)[0]:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            seen.append(e)
            if until(e):
                return seen
    return seen


def test_a_full_log_pipe_delays_no_delivery_and_drops_are_counted(
        tmp_path, spool_root):
    """stdout is a pipe nobody reads (one page, full): a delivery still
    takes well under a second, the lost lines are counted in the
    metric, and a log_dropped line says how many once the pipe drains."""
    import fcntl
    import signal
    import subprocess
    import termios
    import tempfile
    import time
    import types
    from conftest import (LOOPBACK, SMTPD, REPO, SMTPClient, build_args,
                          free_port, port_accepts)
    from test_health import get
    port, hport = free_port(), free_port()
    parent = tempfile.mkdtemp(dir=str(spool_root))
    os.chmod(parent, 0o711)
    args = build_args(port, os.path.join(parent, "spool"),
                      ("-u", "nobody", "-vv", "--health",
                       "%s:%d" % (LOOPBACK, hport)))
    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 4096)
    proc = subprocess.Popen([str(SMTPD)] + args, cwd=str(REPO),
                            stdin=subprocess.DEVNULL, stdout=w,
                            stderr=subprocess.DEVNULL,
                            start_new_session=True)
    os.close(w)
    try:
        assert wait_for(lambda: port_accepts(port), 10)
        # fill the pipe: every NOOP is two trace lines
        with SMTPClient(port) as c:
            c.greeting()
            c.ehlo()
            for _ in range(50):
                assert_reply(c.cmd("NOOP"), "250")
            queued = fcntl.ioctl(r, termios.FIONREAD, b"\0\0\0\0")
            assert int.from_bytes(queued, "little") > 3000  # full
            started = time.monotonic()
            r250 = c.deliver(make_message())
            took = time.monotonic() - started
            assert_reply(r250, "250 2.0.0")
            c.quit()
        assert took < 2, took
        # the master drops its reload line too, then notes the loss
        proc.send_signal(signal.SIGHUP)
        time.sleep(1)
        _, _, body = get(types.SimpleNamespace(hport=hport), "/metrics")
        [dropped] = [float(x.split()[1]) for x in body.splitlines()
                     if x.startswith("smtpd_log_lines_dropped_total ")]
        assert dropped > 0, body

        def master_note(e):
            return e.get("event") == "log_dropped" and \
                e.get("proc") == "master"
        seen = pipe_lines(r, master_note, 1)            # drain
        if not any(master_note(e) for e in seen):
            proc.send_signal(signal.SIGHUP)
            seen += pipe_lines(r, master_note, 5)
        notes = [e for e in seen if master_note(e)]
        assert notes and notes[0]["lines"] > 0, seen[-5:]
        assert notes[0]["level"] == "warning"
    finally:
        proc.send_signal(signal.SIGTERM)
        pipe_lines(r, lambda e: False, 1)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        os.close(r)


# ---------------------------------------------------------------- smtpd.8

COMMON_FIELDS = {"ts", "level", "event", "session", "proc"}


def c_args(text, start):
    """The top-level arguments of the call whose '(' ends at start, as
    source text, and where the call ends."""
    args, depth, cur, i = [], 0, [], start
    while i < len(text):
        ch = text[i]
        if ch == '"':
            j = i + 1
            while text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            cur.append(text[i:j + 1])
            i = j + 1
            continue
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            if depth == 0:
                args.append("".join(cur).strip())
                return args, i
            depth -= 1
        elif ch == "," and depth == 0:
            args.append("".join(cur).strip())
            cur = []
            i += 1
            continue
        cur.append(ch)
        i += 1
    raise AssertionError("unterminated call")


def literal(arg):
    """The value of a C string literal argument, or None."""
    import re
    m = re.fullmatch(r'"([^"\\]*)"', arg)
    return m.group(1) if m else None


def source_events():
    """{event: set of fields} from every log_event() call in the
    sources, the children table's exit events, the protocol trace and
    the plain log lines of log_warnx() and its kin."""
    import pathlib
    import re
    from conftest import REPO
    events = {"log": {"msg", "error"}}
    for path in sorted(pathlib.Path(REPO).glob("*.c")):
        text = path.read_text()
        for m in re.finditer(r"\blog_event\(", text):
            if text[m.start() - 1:m.start()] not in ("\t", " ", "(", "\n"):
                continue
            args, _ = c_args(text, m.end())
            if len(args) < 4 or args[0].startswith("int "):
                continue            # the definition
            name = literal(args[1])
            fields = set()
            for key in args[4::2]:
                if literal(key) is not None:
                    fields.add(literal(key))
            if name is not None:
                events.setdefault(name, set()).update(fields)
        for m in re.finditer(r'\.(?:exited|replaced)\s*=\s*"([a-z_]+)"',
                             text):
            events.setdefault(m.group(1), set()).update({"status",
                                                          "signal"})
        for m in re.finditer(r'session_trace\([^,]+,\s*"([a-z_]+)"', text):
            events.setdefault(m.group(1), set()).add("line")
    return events


def manual_entries():
    """{event: its entry's text} from the tag lists of smtpd.8's
    LOGGING section (an entry may name several events)."""
    import re
    from conftest import REPO
    text = (REPO / "smtpd.8").read_text()
    section = text.split("\n.Sh LOGGING\n", 1)[1].split("\n.Sh ", 1)[0]
    entries, names, body = {}, [], []
    for line in section.splitlines() + [".El"]:
        if line.startswith(".It ") or line.startswith(".El"):
            for n in names:
                entries[n] = "\n".join(body)
            names, body = [], []
            if line.startswith(".It Li "):
                names = re.findall(r"[a-z_0-9]+", line[len(".It Li "):])
            continue
        body.append(line)
    return entries


def test_every_log_event_and_its_fields_are_in_the_manual():
    """An event added to the sources without its entry in smtpd.8's
    LOGGING section (or a field without its mention there) fails."""
    import re
    events, entries = source_events(), manual_entries()
    assert len(events) > 40, sorted(events)
    missing = sorted(e for e in events if e not in entries)
    assert not missing, "events not in smtpd.8 LOGGING: %s" % missing
    undocumented = {}
    for name, fields in events.items():
        named = set(re.findall(r"^\.Li ([a-z_0-9]+)", entries[name], re.M))
        lost = sorted(fields - named - COMMON_FIELDS)
        if lost:
            undocumented[name] = lost
    assert not undocumented, \
        "fields not in their smtpd.8 entries: %r" % undocumented
