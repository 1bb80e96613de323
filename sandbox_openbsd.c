/*
 * The sandbox on OpenBSD: unveil(2) for the file system, pledge(2) for
 * the system calls.  sandbox.c takes these steps in their order (unveil,
 * then the user and the limits, then pledge); the Makefile builds this
 * file on OpenBSD only.  No OpenBSD machine builds smtpd today, so
 * `make lint-openbsd' compiles this file against tests/openbsd/, the
 * declarations OpenBSD's headers have, to keep it from rotting unseen.
 */

#include <sys/types.h>
#include <sys/resource.h>

#include <syslog.h>
#include <unistd.h>

#include "smtpd.h"
#include "sandbox.h"

/* What confines a role: a directory it may write, and its promises. */
struct sandbox_plan {
	enum sandbox_role	 role;
	const char		*dir;		/* unveiled "rwc", or NULL */
	const char		*promises;	/* pledge(2) */
};

static struct sandbox_plan	 plan;

/*
 * The master keeps root (it forks children that drop to --user, and
 * rereads the certificate on SIGHUP) but needs no more than this.
 */
void
sandbox_master(const struct smtpd_conf *conf)
{
	struct rlimit	 rl = { 0, 0 };

	(void)conf;
	if (setrlimit(RLIMIT_CORE, &rl) == -1)
		fatal("sandbox: RLIMIT_CORE");
	/*
	 * it execs smtpd-relay and hands it the workers' channels; each
	 * worker's claim hands it the client's connection
	 */
	if (pledge("stdio rpath proc exec id sendfd recvfd", NULL) == -1)
		fatal("sandbox: pledge");
}

/* Nothing to make in advance: a plan is two strings. */
void
sandbox_prepare_priv(const struct smtpd_conf *conf)
{
	(void)conf;
}

const struct sandbox_plan *
sandbox_os_plan(const struct smtpd_conf *conf, enum sandbox_role role)
{
	plan.role = role;
	plan.dir = NULL;
	switch (role) {
	case ROLE_WORKER:
		/*
		 * inet: accept(2) on the listening sockets; sendfd: each
		 * claim hands the master the client's connection
		 */
		plan.promises = "stdio inet sendfd";
		break;
	case ROLE_RELAY:
		/* where the payloads are written, with --spool */
		plan.dir = conf->spool;
		plan.promises = conf->spool != NULL ?
		    "stdio rpath wpath cpath inet recvfd" :
		    "stdio inet recvfd";
		break;
	case ROLE_VERIFIER:
		/* a child for each message; channels to the relay */
		plan.promises = "stdio proc recvfd sendfd";
		break;
	case ROLE_FETCHER:
		/* where the --banlist-cache file is renamed */
		plan.dir = conf->banlist_dir;
		plan.promises = "stdio rpath wpath cpath inet";
		break;
	case ROLE_HEALTH:
		plan.promises = "stdio inet";
		break;
	}
	return &plan;
}

/* One start-up line per role: what confines it. */
void
sandbox_os_report(const struct smtpd_conf *conf,
    const struct sandbox_plan *p)
{
	log_event(LOG_INFO, "sandbox", NULL, "{s:s, s:s, s:s?, s:s, s:s?}",
	    "role", sandbox_role_names[p->role],
	    "pledge", p->promises,
	    "unveil", p->dir,
	    "user", geteuid() == 0 ? conf->user : "(not root: unchanged)",
	    "guard", p->role == ROLE_RELAY || p->role == ROLE_FETCHER ?
	    SANDBOX_RELAY_GUARD : NULL);
}

void
sandbox_os_begin(const struct sandbox_plan *p)
{
	(void)p;
}

/* The file system: the role's directory, if any, and nothing else. */
void
sandbox_os_files(const struct sandbox_plan *p)
{
	if (p->dir != NULL && unveil(p->dir, "rwc") == -1)
		fatal("sandbox: unveil %s", p->dir);
	if (unveil(NULL, NULL) == -1)
		fatal("sandbox: unveil");
}

void
sandbox_os_syscalls(const struct sandbox_plan *p)
{
	if (pledge(p->promises, NULL) == -1)
		fatal("sandbox: pledge");
}

/*
 * After accept(): a worker gives up what only its start needed.  With
 * "inet" (--max-use over 1) pledge still lets it set options of the
 * listening sockets, which Linux's second filter forbids; with "stdio"
 * alone, only the few pledge always allows (SO_RCVBUF among them).
 */
void
sandbox_worker_narrow(const struct smtpd_conf *conf)
{
	const char	*p;

	if (conf->max_use > 1)		/* it accepts again */
		p = "stdio inet sendfd";
	else		/* its one claim is still to come */
		p = "stdio sendfd";
	if (pledge(p, NULL) == -1)
		fatal("sandbox: pledge");
}

/* In a child of the verifier, before it reads its message. */
void
sandbox_verifier_child(void)
{
	if (pledge("stdio", NULL) == -1)
		_exit(1);
}
