/*
 * Between sandbox.c, which keeps the order every platform follows, and
 * the one platform file the Makefile builds with it: sandbox_linux.c
 * (no_new_privs, chroot, Landlock, seccomp-bpf) or sandbox_openbsd.c
 * (unveil, pledge).  Only those files include this; the rest of smtpd
 * calls what smtpd.h lists under sandbox.c.
 */

#ifndef SANDBOX_H
#define SANDBOX_H

enum sandbox_role {
	ROLE_WORKER,
	ROLE_RELAY,
	ROLE_FETCHER,
	ROLE_HEALTH,
	ROLE_VERIFIER,
};

extern const char *const sandbox_role_names[];

/*
 * What the relay's and the fetcher's start-up line says of
 * relay_guard.c, which smtpd-relay carries: a check on its libraries,
 * which an attacker in the process goes around.
 */
#define SANDBOX_RELAY_GUARD						\
	"libcurl and libunbound connect and send only to the API and "	\
	"the resolvers (relay_guard.c): this restrains the libraries, "	\
	"not an attacker, who can make the system calls directly"

/* What confines one role, as its platform builds it. */
struct sandbox_plan;

/*
 * The platform's steps, which sandbox_apply() takes in this order: the
 * plan (made in the master for the workers, else at once), then no new
 * privileges, the file system, and, after the user and the limits, the
 * system calls.
 */
const struct sandbox_plan *sandbox_os_plan(const struct smtpd_conf *,
		    enum sandbox_role);
void		 sandbox_os_report(const struct smtpd_conf *,
		    const struct sandbox_plan *);
void		 sandbox_os_begin(const struct sandbox_plan *);
void		 sandbox_os_files(const struct sandbox_plan *);
void		 sandbox_os_syscalls(const struct sandbox_plan *);

#endif /* SANDBOX_H */
