/*
 * smtpd-relay: the --spool files, written off the relay's loop.  Each
 * file is written whole and synced before its message is answered
 * (util.c, file_write_atomic()), and a sync takes as long as the disk
 * does: done in the loop, every delivery would wait for every other.
 * Threads write them instead, one for each session that may deliver at
 * once (-c, SPOOL_THREADS_MAX at most), as the workers once did each
 * its own: the file system syncs the files of many at once in one
 * journal commit, which a few threads would serialise.  The loop hands
 * a job over and learns of its end on a pipe.  Threads start after the
 * sandbox, so each runs under it.
 */

#include <sys/types.h>
#include <sys/uio.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "smtpd.h"
#include "relay.h"

#define SPOOL_THREADS_MAX	64

static pthread_mutex_t	 spool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t	 spool_cond = PTHREAD_COND_INITIALIZER;
static struct spool_job	*spool_todo, *spool_todo_tail, *spool_finished;
static int		 spool_dirfd = -1;
static unsigned long long spool_reserve;
static int		 spool_wake[2] = { -1, -1 };
static int		 spool_unnamed = 1;	/* FILE_UNNAMED works here */

static void	*spool_thread(void *);
static void	 spool_named(void);

/*
 * The threads (nthreads, SPOOL_THREADS_MAX at most), writing into dirfd;
 * the pipe's read end, which becomes readable when a job is done, or -1.
 */
int
spool_start(int dirfd, unsigned long long reserve, long long nthreads)
{
	pthread_t	 t;
	int		 i;

	spool_dirfd = dirfd;
	spool_reserve = reserve;
	if (pipe2(spool_wake, O_CLOEXEC | O_NONBLOCK) == -1)
		return -1;
	if (nthreads > SPOOL_THREADS_MAX)
		nthreads = SPOOL_THREADS_MAX;
	for (i = 0; i < nthreads || i == 0; i++) {
		if (pthread_create(&t, NULL, spool_thread, NULL) != 0)
			return i == 0 ? -1 : spool_wake[0];
		(void)pthread_detach(t);
	}
	return spool_wake[0];
}

/* Write json as name; the job's result comes back by spool_done(). */
void
spool_submit(struct spool_job *j)
{
	j->next = NULL;
	pthread_mutex_lock(&spool_lock);
	if (spool_todo_tail != NULL)
		spool_todo_tail->next = j;
	else
		spool_todo = j;
	spool_todo_tail = j;
	pthread_cond_signal(&spool_cond);
	pthread_mutex_unlock(&spool_lock);
}

/* A job that is done, or NULL; the pipe is drained first. */
struct spool_job *
spool_done(void)
{
	struct spool_job	*j;
	char			 buf[64];

	while (read(spool_wake[0], buf, sizeof(buf)) > 0)
		;
	pthread_mutex_lock(&spool_lock);
	if ((j = spool_finished) != NULL)
		spool_finished = j->next;
	pthread_mutex_unlock(&spool_lock);
	return j;
}

static void *
spool_thread(void *arg)
{
	struct spool_job	*j;
	struct iovec		 iov[2];
	int			 unnamed, r;

	(void)arg;
	for (;;) {
		pthread_mutex_lock(&spool_lock);
		while (spool_todo == NULL)
			pthread_cond_wait(&spool_cond, &spool_lock);
		j = spool_todo;
		if ((spool_todo = j->next) == NULL)
			spool_todo_tail = NULL;
		unnamed = spool_unnamed;
		pthread_mutex_unlock(&spool_lock);

		iov[0].iov_base = (void *)(uintptr_t)j->json;
		iov[0].iov_len = j->len;
		iov[1].iov_base = "\n";
		iov[1].iov_len = 1;
		j->error = 0;
		j->kind = VERDICT_NOSPACE;
		if (!spool_full(spool_dirfd, spool_reserve)) {
			r = file_write_atomic(spool_dirfd, j->name, iov, 2,
			    0640, FILE_NOREPLACE | (unnamed ? FILE_UNNAMED : 0));
			if (r == FILE_NO_UNNAMED) {
				spool_named();
				r = file_write_atomic(spool_dirfd, j->name,
				    iov, 2, 0640, FILE_NOREPLACE);
			}
			if (r == -1) {
				j->kind = VERDICT_LOCAL;
				j->error = errno;
			} else
				j->kind = VERDICT_ACCEPTED;
		}

		pthread_mutex_lock(&spool_lock);
		j->next = spool_finished;
		spool_finished = j;
		pthread_mutex_unlock(&spool_lock);
		/* the pipe full: the loop has a wake-up coming already */
		if (write(spool_wake[1], "", 1) == -1 && errno != EAGAIN)
			continue;
	}
	return NULL;
}

/*
 * The file system (or the kernel: before 6.10, only root may link an
 * unnamed file) makes no unnamed file: every thread names its files
 * from the start from now on.
 */
static void
spool_named(void)
{
	pthread_mutex_lock(&spool_lock);
	spool_unnamed = 0;
	pthread_mutex_unlock(&spool_lock);
}
