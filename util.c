/*
 * Small helpers shared by every process.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <sys/uio.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "smtpd.h"

/* Set by signal handlers, read by the loops of every process. */
volatile sig_atomic_t	 smtpd_stop;
volatile sig_atomic_t	 smtpd_reload;

/* Fill buf with len - 1 random lower-case hex digits and a NUL. */
void
random_hex(char *buf, size_t len)
{
	static const char	 hex[] = "0123456789abcdef";
	uint8_t			 rnd[32];
	size_t			 i, n;

	if (len == 0)
		return;
	n = len - 1;
	if (n > sizeof(rnd) * 2)
		n = sizeof(rnd) * 2;
	arc4random_buf(rnd, (n + 1) / 2);
	for (i = 0; i < n; i++)
		buf[i] = hex[(rnd[i / 2] >> ((i & 1) ? 0 : 4)) & 0xf];
	buf[n] = '\0';
}

/* Write all of buf to a blocking descriptor; 0 on success, -1 on error. */
int
fd_write_all(int fd, const void *buf, size_t len)
{
	const char	*p = buf;
	ssize_t		 n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Rename tmp to name in dirfd, never over a file there (EEXIST): one
 * step where the file system can; else a link and an unlink.  0, or -1.
 */
static int
file_rename_new(int dirfd, const char *tmp, const char *name)
{
#ifdef RENAME_NOREPLACE
	if (renameat2(dirfd, tmp, dirfd, name, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
#endif
	if (linkat(dirfd, tmp, dirfd, name, 0) == -1)
		return -1;
	(void)unlinkat(dirfd, tmp, 0);
	return 0;
}

/*
 * Write a file so that it is either whole or absent: a temporary file
 * beside it (".name.XXXXXXXX.tmp", random, so that two writers of one
 * name never share it; never following a link), fsync, rename over name
 * (with FILE_NOREPLACE: file_rename_new()), fsync of the directory.
 * Any step that fails, the directory's fsync included, fails the whole:
 * -1 with errno set, no file left.  Each step on the directory takes
 * its lock: two, where the file system renames without replacing.
 * With FILE_UNNAMED the file is made unnamed (O_TMPFILE) and linked as
 * the temporary file; FILE_NO_UNNAMED, with nothing made, where that
 * cannot be done (the file system, the kernel, a security module, or
 * whatever else): the caller asks again without it.
 */
int
file_write_atomic(int dirfd, const char *name, const struct iovec *iov,
    int iovcnt, mode_t mode, int flags)
{
	char	 tmp[NAME_MAX + 1];
	int	 fd, i, saved;

	if (snprintf(tmp, sizeof(tmp), ".%s.%08x.tmp", name,
	    (unsigned)arc4random()) >= (int)sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
#ifdef O_TMPFILE
	if ((flags & FILE_UNNAMED) != 0) {
		/*
		 * The file made without a name, then given the temporary
		 * one: the file system finds it an inode outside the
		 * directory's lock, which other writers would spin on.
		 */
		if ((fd = openat(dirfd, ".", O_WRONLY | O_TMPFILE | O_CLOEXEC,
		    mode)) == -1)
			return FILE_NO_UNNAMED;
		if (linkat(fd, "", dirfd, tmp, AT_EMPTY_PATH) == -1) {
			/* before Linux 6.10, root's own (CAP_DAC_READ_SEARCH) */
			close(fd);
			return FILE_NO_UNNAMED;
		}
	} else
#endif
	if ((fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
	    O_CLOEXEC, mode)) == -1)
		return -1;
	for (i = 0; i < iovcnt; i++)
		if (fd_write_all(fd, iov[i].iov_base, iov[i].iov_len) == -1)
			goto fail;
	if (fsync(fd) == -1)
		goto fail;
	if (close(fd) == -1) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (((flags & FILE_NOREPLACE) != 0 ? file_rename_new(dirfd, tmp,
	    name) : renameat(dirfd, tmp, dirfd, name)) == -1)
		goto fail;
	if (fsync(dirfd) == -1) {
		/* renamed, but maybe not on disk: not a success */
		saved = errno;
		(void)unlinkat(dirfd, name, 0);
		errno = saved;
		return -1;
	}
	return 0;
 fail:
	saved = errno;
	if (fd != -1)
		close(fd);
	(void)unlinkat(dirfd, tmp, 0);
	errno = saved;
	return -1;
}

/*
 * Is the spool's file system under its reserve?  Asked by the relay as
 * it writes each file, and by the master at each claim (the worker,
 * which holds no directory, says 452 at a session's first MAIL from
 * the master's answer).
 */
int
spool_full(int dirfd, unsigned long long reserve)
{
	struct statvfs		 sv;

	if (dirfd == -1 || fstatvfs(dirfd, &sv) == -1)
		return 0;
	return (unsigned long long)sv.f_bavail * sv.f_frsize < reserve;
}

/*
 * A process's signals, in one place: fn catches each of caught[] (a
 * 0-terminated list) and they stay blocked but inside the process's
 * ppoll(), so a signal never slips in between a check of its flag and
 * the wait; each of ignored[] is ignored; SIGPIPE always is, and
 * SIGCHLD gets its default unless caught.
 */
void
signals_set(void (*fn)(int), const int *caught, const int *ignored)
{
	struct sigaction	 sa;
	sigset_t		 set;
	int			 child = 0;

	sigemptyset(&set);
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = fn;
	for (; *caught != 0; caught++) {
		sigaction(*caught, &sa, NULL);
		sigaddset(&set, *caught);
		child |= *caught == SIGCHLD;
	}
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	for (; ignored != NULL && *ignored != 0; ignored++)
		sigaction(*ignored, &sa, NULL);
	if (!child) {
		sa.sa_handler = SIG_DFL;
		sigaction(SIGCHLD, &sa, NULL);
	}
	sigprocmask(SIG_BLOCK, &set, NULL);
}

/*
 * Pass a descriptor over a Unix socket with a record of len octets,
 * and take one.  fd_send() and fd_recv() carry one byte with it.
 * fd_recv_rec(): the record's length (with MSG_TRUNC in flags, its
 * whole length even when longer than len) with *fd set (-1 when it
 * carried none), 0 at end of file, -1 with errno set (EAGAIN when
 * there is nothing; EBADMSG when it carried more than one descriptor
 * or anything else, all of it closed).
 */
int
fd_send_rec(int sock, int fd, const void *rec, size_t len, int flags)
{
	struct msghdr	 msg;
	struct iovec	 iov;
	struct cmsghdr	*cm;
	union {
		struct cmsghdr	 hdr;
		char		 buf[CMSG_SPACE(sizeof(int))];
	}		 cmsgbuf;
	ssize_t		 n;

	memset(&msg, 0, sizeof(msg));
	memset(&cmsgbuf, 0, sizeof(cmsgbuf));
	iov.iov_base = (void *)(uintptr_t)rec;
	iov.iov_len = len;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cmsgbuf.buf;
	msg.msg_controllen = sizeof(cmsgbuf.buf);
	cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	do {
		n = sendmsg(sock, &msg, flags | MSG_NOSIGNAL);
	} while (n == -1 && errno == EINTR && !(flags & MSG_DONTWAIT));
	return n == (ssize_t)len ? 0 : -1;
}

ssize_t
fd_recv_rec(int sock, int *fd, void *rec, size_t len, int flags)
{
	struct msghdr	 msg;
	struct iovec	 iov;
	struct cmsghdr	*cm;
	union {
		struct cmsghdr	 hdr;
		char		 buf[CMSG_SPACE(sizeof(int))];
	}		 cmsgbuf;
	ssize_t		 n;

	*fd = -1;
	memset(&msg, 0, sizeof(msg));
	iov.iov_base = rec;
	iov.iov_len = len;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cmsgbuf.buf;
	msg.msg_controllen = sizeof(cmsgbuf.buf);
	if ((n = recvmsg(sock, &msg, flags | MSG_CMSG_CLOEXEC)) <= 0)
		return n;
	for (cm = CMSG_FIRSTHDR(&msg); cm != NULL;
	    cm = CMSG_NXTHDR(&msg, cm)) {
		if (cm->cmsg_level == SOL_SOCKET &&
		    cm->cmsg_type == SCM_RIGHTS &&
		    cm->cmsg_len == CMSG_LEN(sizeof(int)) && *fd == -1)
			memcpy(fd, CMSG_DATA(cm), sizeof(int));
		else
			msg.msg_flags |= MSG_CTRUNC;
	}
	if (msg.msg_flags & MSG_CTRUNC) {
		/* the kernel closed what did not fit */
		if (*fd != -1)
			close(*fd);
		*fd = -1;
		errno = EBADMSG;
		return -1;
	}
	return n;
}

/*
 * The next record waiting on a non-blocking socket of the master's or
 * a helper's: its whole length (a longer one than len is cut, and
 * known by its length), with *fd set (-1 when it carried none); 0 at
 * end of file; -1 when there is nothing now.  One that carried more
 * than a descriptor is skipped: what it held is closed.
 */
ssize_t
fd_recv_next(int sock, int *fd, void *rec, size_t len)
{
	ssize_t	 n;

	do {
		n = fd_recv_rec(sock, fd, rec, len, MSG_DONTWAIT | MSG_TRUNC);
	} while (n == -1 && errno == EBADMSG);
	if (n == -1 && errno != EAGAIN && errno != EINTR)
		return 0;	/* as good as gone */
	return n;
}

int
fd_send(int sock, int fd)
{
	const char	 c = 'w';

	return fd_send_rec(sock, fd, &c, 1, MSG_DONTWAIT);
}

int
fd_recv(int sock, int *fd)
{
	ssize_t	 n;
	char	 c;

	/* from the master, trusted: a message without one is skipped */
	if ((n = fd_recv_rec(sock, fd, &c, 1, MSG_DONTWAIT)) > 0 ||
	    (n == -1 && errno == EBADMSG))
		return 1;
	return (int)n;
}
