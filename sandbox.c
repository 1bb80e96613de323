/*
 * Privilege separation and sandboxing, one function per role.
 * The platform split (pledge/unveil, seccomp/Landlock) lives here.
 */

#include <sys/types.h>

#include <err.h>
#include <grp.h>
#include <unistd.h>

#include "smtpd.h"

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
		fatal("setgroups");
	if (setresgid(conf->gid, conf->gid, conf->gid) == -1)
		fatal("setresgid %u", (unsigned)conf->gid);
	if (setresuid(conf->uid, conf->uid, conf->uid) == -1)
		fatal("setresuid %u", (unsigned)conf->uid);
	if (getresgid(&rgid, &egid, &sgid) == -1 ||
	    getresuid(&ruid, &euid, &suid) == -1)
		fatal("getresuid");
	if (rgid != conf->gid || egid != conf->gid || sgid != conf->gid ||
	    ruid != conf->uid || euid != conf->uid || suid != conf->uid)
		fatalx("privileges were not dropped to %s", conf->user);
}
