"""SIGHUP replaces idle workers gradually; workers run unprivileged."""
import os
import pwd
import signal

from conftest import (assert_reply, children, make_message,
                      reloaded_children, wait_for)


def uid_of(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("Uid:"):
                    return [int(x) for x in line.split()[1:]]
    except OSError:
        pass            # gone meanwhile
    return None


def test_sighup_replaces_every_idle_worker(smtpd):
    # the workers: the verifier is not replaced, it links to each relay
    srv = smtpd("--spare", "3")
    master = srv.proc.pid
    assert wait_for(lambda: len(reloaded_children(master)) >= 3, 5)
    before = reloaded_children(master)
    srv.signal(signal.SIGHUP)
    assert wait_for(lambda: not (reloaded_children(master) & before)
                    and len(reloaded_children(master)) >= 3, 5), \
        (before, reloaded_children(master))
    with srv.session() as c:
        c.ehlo()
        assert_reply(c.cmd("NOOP"), "250 2.0.0")


def test_sighup_does_not_cut_a_session_in_progress(smtpd):
    srv = smtpd("--spare", "2")
    with srv.session() as c:
        c.ehlo()
        c.envelope()
        srv.signal(signal.SIGHUP)
        assert wait_for(lambda: len(srv.logs(strict=False)) > 0 and any(
            e.get("event") == "reload" for e in srv.logs(strict=False)), 5)
        r = c.send_data(make_message())
        assert_reply(r, "250 2.0.0")
    assert len(srv.spool_files()) == 1


def test_sighup_during_a_firm_call_passes_its_250_on(smtpd, firm):
    srv = smtpd("--grace", "10", api=firm.url)
    firm.answer(200, delay=2.0)
    with srv.session(timeout=10) as c:
        c.envelope()
        c.send(make_message() + b".\r\n")
        assert len(firm.wait_inbound(1, timeout=5)) == 1
        srv.signal(signal.SIGHUP)
        assert_reply(c.reply(timeout=10), "250 2.0.0")
        c.quit()
    assert len(firm.inbound()) == 1
    # the next message, on a new session, through the new relay
    firm.answer(200)
    with srv.session(timeout=10) as c:
        assert_reply(c.deliver(make_message()), "250 2.0.0")
        c.quit()
    assert len(firm.wait_inbound(2, timeout=5)) == 2
    assert srv.proc.poll() is None


def test_workers_run_as_the_unprivileged_user(smtpd):
    if os.geteuid() != 0:
        return
    srv = smtpd("--spare", "2")
    master = srv.proc.pid
    assert wait_for(lambda: len(children(master)) >= 2, 5)
    nobody = pwd.getpwnam("nobody").pw_uid

    def all_nobody():
        # a child just forked (or the relay, exec'd as root, setting up)
        # drops to nobody before it reads a byte from anyone
        uids = [uid_of(pid) for pid in children(master)]
        return all(u in (None, [nobody] * 4) for u in uids)
    assert wait_for(all_nobody, 5), [(p, uid_of(p)) for p in
                                     children(master)]
    assert uid_of(master)[1] == 0


def test_user_flag_names_an_unknown_user(tmp_path):
    import subprocess
    from conftest import SMTPD, assert_no_sanitizer_report
    r = subprocess.run([str(SMTPD), "-n", "-r", "a@b.c", "--spool",
                        str(tmp_path / "s"), "-u", "no-such-user-x"],
                       capture_output=True, text=True, timeout=10)
    assert_no_sanitizer_report(r.stderr)
    assert r.returncode == 1
    assert "--user" in r.stderr and "no-such-user-x" in r.stderr


def test_sighup_replaces_the_fetcher_at_info_not_as_a_warning(smtpd, firm):
    srv = smtpd(api=firm.url)

    def fetcher_sandboxes():
        return [e for e in srv.logs(strict=False)
                if e.get("event") == "sandbox" and
                e.get("role") == "fetcher"]
    assert wait_for(lambda: len(fetcher_sandboxes()) >= 1, 5), \
        srv.log_text()[-2000:]
    srv.signal(signal.SIGHUP)

    def fetcher_gone():
        return [e for e in srv.logs(strict=False)
                if e.get("event") in ("fetcher_exited", "fetcher_replaced")]
    assert wait_for(lambda: fetcher_gone() and
                    len(fetcher_sandboxes()) >= 2, 5), srv.log_text()[-2000:]
    srv.stop()
    [gone] = fetcher_gone()
    assert gone["event"] == "fetcher_replaced", gone
    assert gone["level"] == "info", gone
    assert not [e for e in srv.logs() if e.get("level") == "warning"
                and "fetcher" in e.get("event", "")], srv.log_text()
