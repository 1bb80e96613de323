/*
 * Privilege separation and sandboxing, one function per role.
 * The platform split (pledge/unveil, seccomp/Landlock) lives here.
 */

#include <sys/types.h>
#include <sys/mman.h>

#include <err.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
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

/*
 * A shared region the workers can only read: *rwfd may be mapped
 * writable (the master and the fetcher keep it), *rofd only read-only,
 * so a mapping made from it can never be made writable (no
 * VM_MAYWRITE): a worker holds only that mapping, never *rwfd.
 * Linux: a memfd whose size is sealed, reopened read-only through
 * /proc.  Returns 0, or -1 with errno set.
 */
int
sandbox_shm_create(size_t size, int *rwfd, int *rofd)
{
	char	 path[64];
	int	 fd, ro;

	if ((fd = memfd_create("smtpd-banlist", MFD_CLOEXEC |
	    MFD_ALLOW_SEALING)) == -1)
		return -1;
	if (ftruncate(fd, (off_t)size) == -1 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW |
	    F_SEAL_SEAL) == -1) {
		close(fd);
		return -1;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if ((ro = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		close(fd);
		return -1;
	}
	*rwfd = fd;
	*rofd = ro;
	return 0;
}
