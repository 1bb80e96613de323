/*
 * Privilege separation and sandboxing: the order every platform follows,
 * and what they do alike (the user, the resource limits).  The
 * platform's own steps live in one file the Makefile picks by uname -s,
 * as OpenSSH keeps one sandbox-*.c per mechanism: sandbox_linux.c
 * (no_new_privs, chroot, Landlock, seccomp-bpf) and sandbox_openbsd.c
 * (unveil, pledge).  Each role is confined by sandbox_apply(), in the
 * order STYLE.md gives: open everything first, restrict the file system,
 * drop the user, filter system calls last.  Every step that fails is
 * fatal: a process never runs unconfined by accident.  Each role says
 * in one start-up log line what confines it.
 */

#include <sys/types.h>
#include <sys/resource.h>

#include <grp.h>
#include <unistd.h>

#include "smtpd.h"
#include "sandbox.h"

const char *const sandbox_role_names[] = { "worker", "relay", "fetcher",
    "health", "verifier" };

static void	sandbox_limits(const struct smtpd_conf *, enum sandbox_role);
static void	sandbox_apply(const struct smtpd_conf *, enum sandbox_role,
		    const struct sandbox_plan *);
static void	sandbox_helper(const struct smtpd_conf *, enum sandbox_role);

/*
 * Drop to --user: supplementary groups, then gid, then uid, each
 * checked.  Not running as root there is nothing to drop; the master
 * warned about that at start.
 */
void
sandbox_drop_user(const struct smtpd_conf *conf)
{
	uid_t	 ruid, euid, suid;
	gid_t	 rgid, egid, sgid;

	if (geteuid() != 0)
		return;
	if (setgroups(1, &conf->gid) == -1)
		fatal("sandbox: setgroups");
	if (setresgid(conf->gid, conf->gid, conf->gid) == -1)
		fatal("sandbox: setresgid %u", (unsigned)conf->gid);
	if (setresuid(conf->uid, conf->uid, conf->uid) == -1)
		fatal("sandbox: setresuid %u", (unsigned)conf->uid);
	if (getresgid(&rgid, &egid, &sgid) == -1 ||
	    getresuid(&ruid, &euid, &suid) == -1)
		fatal("sandbox: getresuid");
	if (rgid != conf->gid || egid != conf->gid || sgid != conf->gid ||
	    ruid != conf->uid || euid != conf->uid || suid != conf->uid)
		fatalx("sandbox: privileges were not dropped to %s",
		    conf->user);
}

/*
 * No new processes and no core files of session memory.  A worker also
 * gets a ceiling on its address space, on the files it writes and on
 * its CPU time, each far above what its sessions need (smtpd.8 gives
 * the figures), so a worker taken over cannot exhaust the host.
 */
static void
sandbox_limits(const struct smtpd_conf *conf, enum sandbox_role role)
{
	struct rlimit	 rl = { 0, 0 };

	/*
	 * No new process.  The relay needs one thread (libunbound's),
	 * which counts as a process here: its filter refuses every clone
	 * but a thread's instead.  The verifier forks a child for each
	 * message: its filter allows a fork and nothing else of clone's.
	 */
	if (role != ROLE_RELAY && role != ROLE_VERIFIER &&
	    setrlimit(RLIMIT_NPROC, &rl) == -1)
		fatal("sandbox: RLIMIT_NPROC");
	if (setrlimit(RLIMIT_CORE, &rl) == -1)
		fatal("sandbox: RLIMIT_CORE");
	if (role != ROLE_WORKER)
		return;
#ifndef SANDBOX_NO_RLIMIT_AS
	rl.rlim_cur = rl.rlim_max = (rlim_t)WORKER_AS_BASE +
	    (rlim_t)conf->max_size * WORKER_AS_PER_BYTE;
	if (setrlimit(RLIMIT_AS, &rl) == -1)
		fatal("sandbox: RLIMIT_AS");
#endif
	rl.rlim_cur = rl.rlim_max = (rlim_t)WORKER_FSIZE_BASE +
	    (rlim_t)conf->max_size * WORKER_FSIZE_PER_BYTE;
	if (setrlimit(RLIMIT_FSIZE, &rl) == -1)
		fatal("sandbox: RLIMIT_FSIZE");
	rl.rlim_cur = rl.rlim_max = (rlim_t)WORKER_CPU_PER_SESSION *
	    (rlim_t)conf->max_use;
	if (rl.rlim_cur > WORKER_CPU_MAX)
		rl.rlim_cur = rl.rlim_max = WORKER_CPU_MAX;
	if (setrlimit(RLIMIT_CPU, &rl) == -1)
		fatal("sandbox: RLIMIT_CPU");
}

/*
 * Apply a role's sandbox, in the fixed order: no new privileges, the
 * file system (chroot and Landlock, or unveil), the user, the limits,
 * and the system calls (seccomp, or pledge) last.  Everything the role
 * needs was opened by its caller before.
 */
static void
sandbox_apply(const struct smtpd_conf *conf, enum sandbox_role role,
    const struct sandbox_plan *plan)
{
	sandbox_os_begin(plan);
	sandbox_os_files(plan);
	sandbox_drop_user(conf);
	sandbox_limits(conf, role);
	sandbox_os_syscalls(plan);
}

/* A worker, forked by the master, which made its plan once. */
void
sandbox_worker(const struct smtpd_conf *conf)
{
	sandbox_apply(conf, ROLE_WORKER, sandbox_os_plan(conf, ROLE_WORKER));
}

/* The master says what confines a worker, once, at start. */
void
sandbox_worker_report(const struct smtpd_conf *conf)
{
	sandbox_os_report(conf, sandbox_os_plan(conf, ROLE_WORKER));
}

/*
 * The relay and the fetcher are programs of their own, and the health
 * process lives as long as the master: each is sandboxed once, at its
 * start, by a plan made there and said before it is applied.
 */
static void
sandbox_helper(const struct smtpd_conf *conf, enum sandbox_role role)
{
	const struct sandbox_plan	*plan;

	plan = sandbox_os_plan(conf, role);
	sandbox_os_report(conf, plan);
	sandbox_apply(conf, role, plan);
}

void
sandbox_relay(const struct smtpd_conf *conf)
{
	sandbox_helper(conf, ROLE_RELAY);
}

void
sandbox_fetcher(const struct smtpd_conf *conf)
{
	sandbox_helper(conf, ROLE_FETCHER);
}

void
sandbox_health(const struct smtpd_conf *conf)
{
	sandbox_helper(conf, ROLE_HEALTH);
}

void
sandbox_verifier(const struct smtpd_conf *conf)
{
	sandbox_helper(conf, ROLE_VERIFIER);
}
