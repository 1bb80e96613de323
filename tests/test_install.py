"""Operations (issue 11): make install and uninstall, the systemd units
(contrib/systemd), inetd mode under systemd-socket-activate, the
hardening of the units, and the Debian package (debian/).

systemd is not PID 1 where these tests run (a container or a VM started
by something else), so no unit is started by systemd here.  What can be
checked without it is: systemd-analyze verify on the installed units;
the inetd unit's own command line behind systemd-socket-activate, which
hands a connection over as systemd does for Accept=yes; and the units'
NoNewPrivileges= and CapabilityBoundingSet= applied with setpriv(1)
around the daemon, which is what systemd does with them.
"""

import filecmp
import os
import pathlib
import pwd
import re
import shlex
import shutil
import signal
import smtplib
import socket
import stat
import subprocess
import time

import pytest

from conftest import (HOSTNAME, LOOPBACK, RCPT, REPO, SENDER, SMTPD, TOKEN,
                      SmtpdServer, assert_reply, build_args, free_port,
                      port_accepts, read_spool, resolver_args, spool_files,
                      wait_for)

UNITS = ("smtpd.service", "smtpd.socket", "smtpd@.service")
UNIT_SRC = REPO / "contrib" / "systemd"
MAKE_TIMEOUT = 120
VERIFY_TIMEOUT = 30
SESSION_TIMEOUT = 15.0      # smtpd waits 5 s at most for DNS answers
DEB_BUILD_TIMEOUT = 180
APT_TIMEOUT = 120
PACKAGE = "firm-smtpd"

# make install DESTDIR=... PREFIX=/usr on Linux: every file, its mode.
INSTALLED = {
    "usr/sbin/smtpd": 0o755,
    "usr/sbin/smtpd-relay": 0o755,
    "usr/share/man/man8/smtpd.8": 0o644,
    "usr/share/man/man8/smtpd-relay.8": 0o644,
    "usr/lib/systemd/system/smtpd.service": 0o644,
    "usr/lib/systemd/system/smtpd.socket": 0o644,
    "usr/lib/systemd/system/smtpd@.service": 0o644,
}


# ---------------------------------------------------------------- helpers

def make(target, destdir, prefix="/usr"):
    """make TARGET DESTDIR=destdir PREFIX=prefix in the tree; returns
    the completed process (fails the test on a non-zero status)."""
    p = subprocess.run(["make", "--no-print-directory", target,
                        "DESTDIR=%s" % destdir, "PREFIX=%s" % prefix],
                       cwd=str(REPO), stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=MAKE_TIMEOUT)
    assert p.returncode == 0, "make %s: %s%s" % (target, p.stdout, p.stderr)
    return p


def installed_files(root):
    """{relative path: permission bits} of every non-directory below."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = pathlib.Path(dirpath) / name
            rel = str(path.relative_to(root))
            out[rel] = stat.S_IMODE(path.lstat().st_mode)
    return out


def unit_settings(unit, key):
    """Every value of KEY= in a unit file of contrib/systemd."""
    values = []
    for line in (UNIT_SRC / unit).read_text().splitlines():
        m = re.match(r"^%s=(.*)$" % re.escape(key), line)
        if m:
            values.append(m.group(1).strip())
    return values


def unit_command(unit, flags):
    """The unit's ExecStart=, with smtpd at this tree's binary and
    $SMTPD_FLAGS replaced by flags (as systemd splits an unbraced $VAR
    into words)."""
    (exec_start,) = unit_settings(unit, "ExecStart")
    argv = shlex.split(exec_start)
    assert argv[0] == "/usr/local/sbin/smtpd", exec_start
    out = [str(SMTPD)]
    for word in argv[1:]:
        out.extend(flags if word == "$SMTPD_FLAGS" else [word])
    return out


def setpriv_args(unit):
    """setpriv(1) arguments for the unit's NoNewPrivileges= and
    CapabilityBoundingSet=: what systemd applies before the exec."""
    assert unit_settings(unit, "NoNewPrivileges") == ["yes"]
    (caps,) = unit_settings(unit, "CapabilityBoundingSet")
    names = [c.lower().replace("cap_", "", 1) for c in caps.split()]
    assert names, "empty CapabilityBoundingSet in %s" % unit
    return ["setpriv", "--no-new-privs",
            "--bounding-set", "-all," + ",".join("+" + n for n in names)]


def free_privileged_port():
    """A free port below 1024 on loopback (port 25 stands for it):
    binding it takes CAP_NET_BIND_SERVICE.  Tries 100 ports at most."""
    for port in range(924, 1024):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((LOOPBACK, port))
            except OSError:
                continue
            return port
    pytest.fail("no free port in 924-1023 on loopback")


def worker_user():
    """The user smtpd's children run as: _smtpd, else nobody."""
    for name in ("_smtpd", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    pytest.fail("neither _smtpd nor nobody exists")


def verify_units(paths, mandir):
    """systemd-analyze verify; returns (status, output).  Its check of
    Documentation=man:smtpd(8) runs man(1), which is pointed at mandir
    alone (MANPATH), so the page found is the one make install put
    there, never another package's smtpd(8) (Postfix ships one)."""
    env = dict(os.environ, MANPATH=str(mandir))
    p = subprocess.run(["systemd-analyze", "verify"] + [str(x) for x in paths],
                       stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=VERIFY_TIMEOUT, env=env)
    return p.returncode, (p.stdout + p.stderr).strip()


def units_pointing_at(srcdir, destdir, sbindir):
    """Copies of the units in srcdir, in destdir, with /usr/sbin/ (their
    installed SBINDIR) replaced by sbindir; returns their paths."""
    destdir.mkdir()
    out = []
    for unit in UNITS:
        text = (srcdir / unit).read_text()
        if unit.endswith(".service"):
            assert "ExecStart=/usr/sbin/smtpd " in text, unit
        (destdir / unit).write_text(text.replace("/usr/sbin/",
                                                 str(sbindir) + "/"))
        out.append(destdir / unit)
    return out


def message():
    return ("From: Sender <%s>\r\nTo: <%s>\r\nSubject: %s\r\n"
            "Date: Sat, 21 Nov 2026 22:00:00 +0000\r\n"
            "Message-ID: <install-1@example.net>\r\n\r\n"
            "Hello, please verify.\r\n" % (SENDER, RCPT, TOKEN)).encode()


def smtplib_deliver(port):
    """EHLO, MAIL, RCPT, DATA, QUIT with smtplib; returns DATA's reply."""
    with smtplib.SMTP(LOOPBACK, port, timeout=SESSION_TIMEOUT) as s:
        code, _ = s.ehlo("client.test")
        assert code == 250
        code, text = s.mail(SENDER)
        assert code == 250, text
        code, text = s.rcpt(RCPT)
        assert code == 250, text
        reply = s.data(message())
    return reply


def kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


class HardenedServer(SmtpdServer):
    """./smtpd -d under the setpriv arguments of a unit."""

    def __init__(self, wrapper, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.wrapper = wrapper

    @property
    def cmdline(self):
        return self.wrapper + [str(self.binary)] + self.args


# ---------------------------------------------------------------- install

def test_make_install_puts_every_file_in_place_with_its_mode(tmp_path):
    dest = tmp_path / "root"
    make("install", dest)
    assert installed_files(dest) == INSTALLED
    for prog in ("smtpd", "smtpd-relay"):
        assert filecmp.cmp(dest / "usr/sbin" / prog, REPO / prog,
                           shallow=False), prog
    assert filecmp.cmp(dest / "usr/share/man/man8/smtpd.8",
                       REPO / "smtpd.8", shallow=False)


def test_make_install_points_the_units_at_the_prefix(tmp_path):
    dest = tmp_path / "root"
    make("install", dest, prefix="/opt/firm")
    units = dest / "opt/firm/lib/systemd/system"
    for unit in ("smtpd.service", "smtpd@.service"):
        text = (units / unit).read_text()
        execs = re.findall(r"^ExecStart=(\S+)", text, re.M)
        assert execs == ["/opt/firm/sbin/smtpd"], (unit, execs)
        assert "/usr/local" not in text, unit
    assert (dest / "opt/firm/sbin/smtpd-relay").is_file()


def test_make_install_with_destdir_creates_no_user_or_cache_dir(tmp_path):
    p = make("install", tmp_path / "root")
    assert ("DESTDIR is set: not creating user _smtpd or /var/db/smtpd"
            in p.stdout), p.stdout


def test_make_uninstall_removes_every_installed_file(tmp_path):
    dest = tmp_path / "root"
    make("install", dest)
    assert installed_files(dest)
    make("uninstall", dest)
    assert installed_files(dest) == {}


# ---------------------------------------------------------------- units

def test_installed_units_pass_systemd_analyze_verify(tmp_path):
    dest = tmp_path / "root"
    make("install", dest)
    units = units_pointing_at(dest / "usr/lib/systemd/system",
                              tmp_path / "units", dest / "usr/sbin")
    status, out = verify_units(units, dest / "usr/share/man")
    assert status == 0, out
    assert out == "", "systemd-analyze verify warned:\n" + out


def test_systemd_analyze_verify_fails_without_our_man_page(tmp_path):
    # the units' Documentation=man:smtpd(8) is checked against the page
    # we install, not whatever smtpd(8) the machine has
    dest = tmp_path / "root"
    make("install", dest)
    (dest / "usr/share/man/man8/smtpd.8").unlink()
    units = units_pointing_at(dest / "usr/lib/systemd/system",
                              tmp_path / "units", dest / "usr/sbin")
    status, out = verify_units(units[:1], dest / "usr/share/man")
    assert status != 0 and "man smtpd(8)" in out, out


def test_systemd_analyze_verify_fails_when_the_binary_is_missing(tmp_path):
    # the check above means something: a unit naming no binary fails
    dest = tmp_path / "root"
    make("install", dest)
    (dest / "usr/sbin/smtpd").unlink()
    units = units_pointing_at(dest / "usr/lib/systemd/system",
                              tmp_path / "units", dest / "usr/sbin")
    status, out = verify_units(units[:1], dest / "usr/share/man")
    assert status != 0 and "not executable" in out, out


def test_socket_and_service_units_exclude_each_other():
    # both serve port 25: starting one stops the other
    assert unit_settings("smtpd.service", "Conflicts") == ["smtpd.socket"]
    assert unit_settings("smtpd.socket", "Conflicts") == ["smtpd.service"]
    assert unit_settings("smtpd.socket", "Accept") == ["yes"]


def test_service_stop_timeout_outlasts_drain_grace_and_api_timeout():
    # systemd must not SIGKILL a stop that smtpd finishes in time: the
    # --drain contrib/haproxy recommends, then --grace and --api-timeout
    # at their defaults (smtpd.h)
    cfg = (REPO / "contrib" / "haproxy" / "haproxy.cfg").read_text()
    drain = int(re.search(r"--drain (\d+)", cfg).group(1))
    h = (REPO / "smtpd.h").read_text()
    grace = int(re.search(r"#define DEF_GRACE\s+(\d+)", h).group(1))
    api = int(re.search(r"#define DEF_API_TIMEOUT\s+(\d+)", h).group(1))
    [stop] = unit_settings("smtpd.service", "TimeoutStopSec")
    assert int(stop) > drain + grace + api, (stop, drain, grace, api)


def test_inetd_unit_keeps_the_log_off_the_connection():
    # stdin and stdout are the client; smtpd -i -d logs to stderr, which
    # must go to the journal, not inherit the socket
    assert unit_settings("smtpd@.service", "StandardInput") == ["socket"]
    assert unit_settings("smtpd@.service", "StandardError") == ["journal"]


def test_both_services_have_the_same_hardening():
    keys = ("NoNewPrivileges", "CapabilityBoundingSet", "ProtectSystem",
            "ProtectHome", "PrivateTmp", "PrivateDevices",
            "RestrictAddressFamilies", "MemoryDenyWriteExecute",
            "SystemCallArchitectures")
    for key in keys:
        assert unit_settings("smtpd.service", key) == \
            unit_settings("smtpd@.service", key), key


def test_socket_activated_inetd_session_delivers_to_the_spool(spool_dir,
                                                             tmp_path):
    port = free_port()
    flags = ["-H", HOSTNAME, "-r", RCPT, "--spool", str(spool_dir)] + \
        resolver_args(())
    cmd = ["systemd-socket-activate", "--inetd", "-a",
           "-l", "%s:%d" % (LOOPBACK, port)] + \
        unit_command("smtpd@.service", flags)
    err = tmp_path / "stderr.log"
    with open(err, "wb") as f:
        proc = subprocess.Popen(cmd, cwd=str(REPO), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=f,
                                start_new_session=True)
    try:
        assert wait_for(lambda: proc.poll() is not None or
                        port_accepts(port), 5.0) and proc.poll() is None, \
            err.read_text()
        code, text = smtplib_deliver(port)
        assert code == 250, (code, text, err.read_text())
        assert wait_for(lambda: spool_files(spool_dir), 5.0), \
            err.read_text()
        (entry,) = read_spool(spool_dir)
        assert entry["token"] == TOKEN
        assert entry["from"] == SENDER
    finally:
        kill_group(proc)
    # the session's JSON log went to stderr: the journal under systemd
    assert '"event":"message"' in err.read_text()


@pytest.mark.parametrize("unit", ["smtpd.service", "smtpd@.service"])
def test_unit_capabilities_are_enough_to_serve_and_stop_with_a_spool(
        unit, tmp_path, spool_dir):
    port = free_privileged_port()
    args = build_args(port, spool_dir)
    srv = HardenedServer(setpriv_args(unit), tmp_path, args, port,
                         spool_dir).start()
    try:
        with srv.session() as c:
            assert_reply(c.deliver(message()), "250 2.0.0")
            c.quit()
        assert wait_for(lambda: srv.spool_files(), 5.0)
        # no CAP_KILL: the master cannot stop its workers, stop hangs
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        assert srv.wait(10) == 0, srv.stderr()
        assert time.monotonic() - t0 < 10
    finally:
        srv.stop()
    assert not [e for e in srv.logs(strict=False)
                if e.get("level") in ("warning", "error", "fatal")]


def test_unit_capabilities_are_enough_to_serve_the_api_and_its_cache(
        tmp_path, spool_root):
    # like /var/db/smtpd: a cache directory only the worker user may
    # read, which the master (root) opens at start
    from fake_banlist import INBOUND, FakeBanlistAPI
    user = worker_user()
    cache = spool_root / ("cache-%d" % free_port())
    cache.mkdir(mode=0o700)
    os.chown(cache, user.pw_uid, user.pw_gid)
    api = FakeBanlistAPI(subnets=("192.0.2.0/24",)).start()
    port = free_port()
    args = build_args(port, None, ["-a", api.url, "--banlist-cache",
                                   str(cache / "banlist.json")])
    srv = HardenedServer(setpriv_args("smtpd.service"), tmp_path, args,
                         port, None)
    try:
        srv.start()
        with srv.session() as c:
            assert_reply(c.deliver(message()), "250 2.0.0")
            c.quit()
        assert len(api.wait_requests(INBOUND, 1, 5.0)) == 1
        # the fetcher, as the worker user, wrote the ban-list cache
        assert wait_for(lambda: (cache / "banlist.json").exists(), 5.0)
        srv.signal(signal.SIGTERM)
        assert srv.wait(10) == 0, srv.stderr()
    finally:
        srv.stop()
        api.stop()


# ---------------------------------------------------------------- package

def run(cmd, timeout, cwd=None):
    p = subprocess.run(cmd, cwd=cwd, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    return p.returncode, p.stdout + p.stderr


def package_installed():
    status, out = run(["dpkg-query", "-W", "-f=${Status}", PACKAGE], 10)
    return status == 0 and "install ok installed" in out


def copy_tree(dest):
    """The tree as git knows it, uncommitted changes and new files
    included, without build outputs (.gitignore)."""
    status, out = run(["git", "-C", str(REPO), "ls-files", "-z", "--cached",
                       "--others", "--exclude-standard"], 30)
    assert status == 0, out
    for rel in filter(None, out.split("\0")):
        src = REPO / rel
        if not src.is_file():       # deleted, not yet committed
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)


PACKAGE_FILES = ("/usr/sbin/smtpd", "/usr/sbin/smtpd-relay",
                 "/usr/share/man/man8/smtpd.8.gz",
                 "/usr/share/man/man8/smtpd-relay.8.gz", "/etc/default/smtpd",
                 "/lib/systemd/system/smtpd.service",
                 "/lib/systemd/system/smtpd.socket",
                 "/lib/systemd/system/smtpd@.service")


def enablement_links():
    """Symlinks to our units below /etc/systemd/system."""
    out = []
    root = pathlib.Path("/etc/systemd/system")
    for dirpath, dirs, names in os.walk(root):
        for name in names + dirs:
            if re.match(r"^smtpd(@.*)?\.(service|socket)$", name):
                out.append(os.path.join(dirpath, name))
    return out


LOCK = ["-o", "DPkg::Lock::Timeout=60"]


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    """The package, built once from the tree (dpkg-buildpackage)."""
    tmp = tmp_path_factory.mktemp("deb")
    src = tmp / "src"
    copy_tree(src)
    status, out = run(["dpkg-buildpackage", "-us", "-uc", "-b"],
                      DEB_BUILD_TIMEOUT, cwd=str(src))
    assert status == 0, out[-3000:]
    debs = [p for p in tmp.glob(PACKAGE + "_*.deb")]
    assert len(debs) == 1, (debs, out[-1000:])
    return debs[0]


def nothing_of_ours_installed():
    assert not package_installed(), \
        "%s is installed on this machine: not touching it" % PACKAGE
    assert not os.path.exists("/usr/sbin/smtpd"), \
        "/usr/sbin/smtpd exists: not overwriting it"
    assert not os.path.exists("/var/db"), \
        "/var/db exists: the tests would not see what the package makes"
    try:
        pwd.getpwnam("_smtpd")
        return True
    except KeyError:
        return False


def test_debian_package_installs_disabled_and_purges_cleanly(tmp_path, deb):
    user_existed = nothing_of_ours_installed()
    lock = LOCK
    try:
        status, out = run(["apt-get", "install", "-y", "-q"] + lock +
                          [str(deb)], APT_TIMEOUT)
        assert status == 0, out
        assert package_installed()

        user = pwd.getpwnam("_smtpd")
        assert user.pw_uid < 1000, "not a system user: %r" % (user,)
        assert user.pw_shell.endswith("/nologin"), user
        assert not os.path.exists(user.pw_dir), user
        st = os.stat("/var/db/smtpd")
        assert (st.st_uid, st.st_gid) == (user.pw_uid, user.pw_gid)
        assert stat.S_IMODE(st.st_mode) == 0o700
        for path in PACKAGE_FILES:
            assert os.path.isfile(path), path

        # shipped, not enabled: no symlink, and systemctl, which reads
        # the unit files when systemd is not running, agrees
        assert enablement_links() == []
        status, out = run(["systemctl", "is-enabled", "smtpd.service",
                           "smtpd.socket"], 30)
        assert out.split() == ["disabled", "disabled"], out

        status, out = run(["systemd-analyze", "verify",
                           "/lib/systemd/system/smtpd.service",
                           "/lib/systemd/system/smtpd.socket",
                           "/lib/systemd/system/smtpd@.service"],
                          VERIFY_TIMEOUT)
        assert status == 0 and out.strip() == "", out

        status, out = run(["/usr/sbin/smtpd", "-n", "-r", "a@b",
                           "--spool", str(tmp_path / "x")], 10)
        assert status == 0 and "configuration OK" in out, out
    finally:
        status, out = run(["apt-get", "purge", "-y", "-q"] + lock +
                          [PACKAGE], APT_TIMEOUT)
    try:
        assert status == 0, out
        assert not package_installed()
        for path in PACKAGE_FILES + ("/var/db/smtpd", "/var/db",
                                     "/var/lib/firm-smtpd"):
            assert not os.path.exists(path), path
        assert enablement_links() == []
        # Debian keeps system users on purge (see debian/firm-smtpd.postrm)
        pwd.getpwnam("_smtpd")
    finally:
        if not user_existed:
            run(["userdel", "_smtpd"], 30)


def test_debian_package_takes_over_a_cache_dir_and_purges_only_its_own(
        tmp_path, deb):
    # an operator's /var/db/smtpd, owned by root and readable by all:
    # installing makes it the worker user's alone; purging removes the
    # package's cache file, never the directories it did not make
    user_existed = nothing_of_ours_installed()
    os.makedirs("/var/db/smtpd", mode=0o755)
    os.chmod("/var/db/smtpd", 0o755)
    (pathlib.Path("/var/db/smtpd") / "notes").write_text("mine\n")
    (pathlib.Path("/var/db/smtpd") / "banlist.json").write_text("[]\n")
    try:
        status, out = run(["apt-get", "install", "-y", "-q"] + LOCK +
                          [str(deb)], APT_TIMEOUT)
        assert status == 0, out
        user = pwd.getpwnam("_smtpd")
        st = os.stat("/var/db/smtpd")
        assert (st.st_uid, st.st_gid) == (user.pw_uid, user.pw_gid)
        assert stat.S_IMODE(st.st_mode) == 0o700
        status, out = run(["apt-get", "purge", "-y", "-q"] + LOCK +
                          [PACKAGE], APT_TIMEOUT)
        assert status == 0, out
        assert (pathlib.Path("/var/db/smtpd") / "notes").read_text() == \
            "mine\n"
        assert not os.path.exists("/var/db/smtpd/banlist.json")
        assert not os.path.exists("/var/lib/firm-smtpd")
    finally:
        if package_installed():
            run(["apt-get", "purge", "-y", "-q"] + LOCK + [PACKAGE],
                APT_TIMEOUT)
        shutil.rmtree("/var/db", ignore_errors=True)
        if not user_existed:
            run(["userdel", "_smtpd"], 30)
