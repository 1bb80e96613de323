/*
 * LD_PRELOAD shim for tests/test_limits.py: fsync(2) fails with EIO in
 * the unprivileged processes (the workers) on a directory when
 * SMTPD_TEST_FSYNC_FAIL is "dir", on a regular file when it is "file".
 * The master, root, is left alone.  A file system that loses a write
 * says so this way, at fsync; nothing else on the machine does so on
 * demand.
 *
 * SMTPD_TEST_TMPFILE, the same way: "eopnotsupp", openat(O_TMPFILE)
 * fails as on a file system without unnamed files; "enoent", linkat()
 * of a descriptor (AT_EMPTY_PATH) fails as before Linux 6.10.  Each
 * refusal is written to standard output (the log, with -d) as
 * "tmpfile shim: refused".
 */

#include <sys/stat.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int		 fsync(int);
int		 openat(int, const char *, int, ...);
int		 linkat(int, const char *, int, const char *, int);

static int	(*real_fsync)(int);
static int	(*real_openat)(int, const char *, int, ...);
static int	(*real_linkat)(int, const char *, int, const char *, int);
static const char *fail_what, *tmpfile_what;

__attribute__((constructor)) static void
fsync_fail_init(void)
{
	real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
	real_openat = (int (*)(int, const char *, int, ...))dlsym(RTLD_NEXT,
	    "openat");
	real_linkat = (int (*)(int, const char *, int, const char *, int))
	    dlsym(RTLD_NEXT, "linkat");
	fail_what = getenv("SMTPD_TEST_FSYNC_FAIL");
	tmpfile_what = getenv("SMTPD_TEST_TMPFILE");
}

static int
refused(int e)
{
	static const char msg[] = "tmpfile shim: refused\n";

	(void)write(STDOUT_FILENO, msg, sizeof(msg) - 1);
	errno = e;
	return -1;
}

int
openat(int dirfd, const char *path, int flags, ...)
{
	va_list	 ap;
	mode_t	 mode = 0;

	if ((flags & O_CREAT) != 0 || (flags & O_TMPFILE) == O_TMPFILE) {
		va_start(ap, flags);
		mode = (mode_t)va_arg(ap, int);
		va_end(ap);
	}
	if (tmpfile_what != NULL && strcmp(tmpfile_what, "eopnotsupp") == 0 &&
	    (flags & O_TMPFILE) == O_TMPFILE && geteuid() != 0)
		return refused(EOPNOTSUPP);
	if (real_openat == NULL) {
		errno = ENOSYS;
		return -1;
	}
	return real_openat(dirfd, path, flags, mode);
}

int
linkat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
    int flags)
{
	if (tmpfile_what != NULL && strcmp(tmpfile_what, "enoent") == 0 &&
	    (flags & AT_EMPTY_PATH) != 0 && geteuid() != 0)
		return refused(ENOENT);
	if (real_linkat == NULL) {
		errno = ENOSYS;
		return -1;
	}
	return real_linkat(olddirfd, oldpath, newdirfd, newpath, flags);
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
