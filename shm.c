/*
 * Shared memory: the ban table (smtpd.c), which the workers may only
 * read, and the metrics region (metrics.c).  A region comes as two
 * descriptors: one that may be mapped writable, kept by whoever writes
 * the region, and one that may only ever be mapped read-only, for the
 * processes that must not write it.  One definition per system, whole:
 * each makes the pair in its own way.
 */

#include <sys/types.h>
#include <sys/mman.h>

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "smtpd.h"

#ifdef __OpenBSD__

/*
 * A region of size bytes: *rwfd may be mapped writable, *rofd only
 * read-only.  OpenBSD: shared memory named for a moment, opened twice.
 * Returns 0, or -1 with errno set.
 */
int
shm_create(size_t size, int *rwfd, int *rofd)
{
	char	 name[] = "/tmp/smtpd-banlist.XXXXXXXXXX";
	int	 fd, ro;

	if ((fd = shm_mkstemp(name)) == -1)
		return -1;
	ro = shm_open(name, O_RDONLY | O_CLOEXEC, 0);
	shm_unlink(name);
	if (ro == -1 || ftruncate(fd, (off_t)size) == -1) {
		close(fd);
		if (ro != -1)
			close(ro);
		return -1;
	}
	*rwfd = fd;
	*rofd = ro;
	return 0;
}

#else	/* Linux */

/*
 * A region of size bytes: *rwfd may be mapped writable (the master and
 * the fetcher keep it), *rofd only read-only, so a mapping made from it
 * can never be made writable (no VM_MAYWRITE): a worker holds only that
 * mapping, never *rwfd.  Linux: a memfd whose size is sealed, reopened
 * read-only through /proc.  Returns 0, or -1 with errno set.
 */
int
shm_create(size_t size, int *rwfd, int *rofd)
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

#endif
