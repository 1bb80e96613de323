/*
 * LD_PRELOAD shim for tests/test_limits.py: fsync(2) fails with EIO in
 * the unprivileged processes (the workers) on a directory when
 * SMTPD_TEST_FSYNC_FAIL is "dir", on a regular file when it is "file".
 * The master, root, is left alone.  A file system that loses a write
 * says so this way, at fsync; nothing else on the machine does so on
 * demand.
 */

#include <sys/stat.h>

#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int		 fsync(int);

static int	(*real_fsync)(int);
static const char *fail_what;

__attribute__((constructor)) static void
fsync_fail_init(void)
{
	real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
	fail_what = getenv("SMTPD_TEST_FSYNC_FAIL");
}

int
fsync(int fd)
{
	struct stat	 st;

	if (fail_what != NULL && geteuid() != 0 && fstat(fd, &st) == 0 &&
	    ((strcmp(fail_what, "dir") == 0 && S_ISDIR(st.st_mode)) ||
	    (strcmp(fail_what, "file") == 0 && S_ISREG(st.st_mode)))) {
		errno = EIO;
		return -1;
	}
	if (real_fsync == NULL) {
		errno = ENOSYS;
		return -1;
	}
	return real_fsync(fd);
}
