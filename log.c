/*
 * Logging: one JSON object per line, to stdout with -d, else to
 * syslog (facility mail).  Each line leaves in a single write(2) so
 * lines from concurrent workers never interleave.  No process waits on
 * a slow reader of stdout: the descriptor is non-blocking, and a line
 * that would block is dropped and counted (log_write).
 */

#include <sys/types.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "smtpd.h"

static int		 log_fd = STDERR_FILENO;	/* -1: syslog */
static int		 log_verbosity;
static int		 log_journal;	/* log_fd is the systemd journal */
static const char	*log_proc = "master";
static uint64_t		 log_dropped;	/* lines lost since the last note */
static int		 log_noting;	/* writing that note */

static void	log_emit(int, json_t *);
static void	log_write(const char *, size_t);
static void	log_msg(int, const char *, const char *, va_list)
		    __attribute__((__format__ (printf, 3, 0)));
static const char *log_level_name(int);
static int	log_priority(int);
static int	log_is_journal(int);

/* Log lines go to fd, or to syslog when fd is -1. */
void
log_init(int fd, int verbose)
{
	int	 fl;

	log_fd = fd;
	log_verbosity = verbose;
	log_journal = fd != -1 && log_is_journal(fd);
	if (fd == -1)
		openlog("smtpd", LOG_PID | LOG_NDELAY, LOG_MAIL);
	else if ((fl = fcntl(fd, F_GETFL)) != -1)
		(void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	tzset();
}

void
log_setproc(const char *proc)
{
	log_proc = proc;
}

int
log_verbose(void)
{
	return log_verbosity;
}

/*
 * sd-daemon's rule: the service manager sets JOURNAL_STREAM to the
 * "DEV:INO" of the stream it connected; fd is the journal only if its
 * own device and inode are those (a child whose output was redirected
 * inherits the variable, not the stream).
 */
static int
log_is_journal(int fd)
{
	struct stat		 sb;
	const char		*env;
	char			*end;
	unsigned long long	 dev, ino;

	if ((env = getenv("JOURNAL_STREAM")) == NULL || *env == '\0')
		return 0;
	errno = 0;
	dev = strtoull(env, &end, 10);
	if (errno != 0 || end == env || *end != ':')
		return 0;
	env = end + 1;
	ino = strtoull(env, &end, 10);
	if (errno != 0 || end == env || *end != '\0')
		return 0;
	if (fstat(fd, &sb) == -1)
		return 0;
	return (unsigned long long)sb.st_dev == dev &&
	    (unsigned long long)sb.st_ino == ino;
}

/* The syslog priority of a line's level, as its journal prefix <N>. */
static int
log_priority(int level)
{
	switch (level) {
	case LOG_DEBUG:
		return LOG_DEBUG;
	case LOG_INFO:
	case LOG_NOTICE:
		return LOG_INFO;
	case LOG_WARNING:
		return LOG_WARNING;
	default:
		return LOG_ERR;
	}
}

static const char *
log_level_name(int level)
{
	switch (level) {
	case LOG_DEBUG:
		return "debug";
	case LOG_INFO:
	case LOG_NOTICE:
		return "info";
	case LOG_WARNING:
		return "warning";
	default:
		return "error";
	}
}

/* RFC 3339 UTC time; with ms != 0, to the millisecond. */
void
log_timestamp(char *buf, size_t len, int ms)
{
	struct timeval	 tv;
	struct tm	 tm;
	char		 base[32];

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	if (ms)
		snprintf(buf, len, "%s.%03ldZ", base,
		    (long)(tv.tv_usec / 1000));
	else
		snprintf(buf, len, "%sZ", base);
}

static void
log_emit(int level, json_t *obj)
{
	char	*s, *line, prefix[8];
	size_t	 n, plen = 0;
	int	 r;

	if ((s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER)) == NULL)
		return;
	if (log_fd == -1) {
		syslog(level, "%s", s);
		free(s);
		return;
	}
	if (strlen(s) >= LOG_LINE_MAX) {
		/* never split a line: drop the long fields instead */
		free(s);
		json_object_del(obj, "line");
		json_object_del(obj, "reply");
		json_object_set_new(obj, "truncated", json_true());
		s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
		if (s == NULL)
			return;
	}
	if (log_journal) {
		/* "<N>": the level journalctl -p filters on */
		r = snprintf(prefix, sizeof(prefix), "<%d>",
		    log_priority(level));
		if (r > 0 && (size_t)r < sizeof(prefix))
			plen = (size_t)r;
	}
	n = strlen(s);
	if ((line = realloc(s, plen + n + 1)) == NULL) {
		free(s);
		return;
	}
	if (plen > 0) {
		memmove(line + plen, line, n);
		memcpy(line, prefix, plen);
	}
	line[plen + n] = '\n';	/* replaces the NUL: one write, one line */
	log_write(line, plen + n + 1);
	free(line);
}

/*
 * One line to log_fd, which is non-blocking: a line that finds the
 * reader behind (a full pipe) is dropped and counted, in this process
 * and in smtpd_log_lines_dropped_total, never waited for.  The next
 * line that gets through is preceded by a log_dropped line saying how
 * many were lost.  A line shorter than PIPE_BUF goes to a pipe whole or
 * not at all; elsewhere (a socket, a terminal) the rest of a line that
 * went out in part gets LOG_WRITE_WAIT_MS.
 */
static void
log_write(const char *line, size_t len)
{
	struct pollfd	 pfd;
	uint64_t	 lost;
	ssize_t		 n;
	size_t		 off = 0;

	if (log_dropped > 0 && !log_noting) {
		lost = log_dropped;
		log_dropped = 0;
		log_noting = 1;
		log_event(LOG_WARNING, "log_dropped", NULL, "{s:I}",
		    "lines", (json_int_t)lost);
		log_noting = 0;
		if (log_dropped > 0)	/* the note too */
			log_dropped += lost;
	}
	while (off < len) {
		n = write(log_fd, line + off, len - off);
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN && off > 0) {
			pfd.fd = log_fd;
			pfd.events = POLLOUT;
			if (poll(&pfd, 1, LOG_WRITE_WAIT_MS) > 0)
				continue;
		}
		log_dropped++;
		metrics_add(M_LOG_DROPPED, 1);
		return;
	}
}

/*
 * log_event(level, event, session, fmt, ...): fmt is a jansson pack
 * format for an object whose members are added to the line, or NULL.
 */
void
log_event(int level, const char *event, const char *session,
    const char *fmt, ...)
{
	json_t		*obj, *extra;
	json_error_t	 err;
	va_list		 ap;
	char		 ts[40];

	if (level == LOG_DEBUG && log_verbosity == 0)
		return;
	log_timestamp(ts, sizeof(ts), 1);
	obj = json_pack("{s:s, s:s, s:s, s:s?, s:s}", "ts", ts,
	    "level", log_level_name(level), "event", event,
	    "session", session, "proc", log_proc);
	if (obj == NULL)
		return;
	if (fmt != NULL) {
		va_start(ap, fmt);
		extra = json_vpack_ex(&err, 0, fmt, ap);
		va_end(ap);
		if (extra != NULL) {
			json_object_update(obj, extra);
			json_decref(extra);
		} else
			json_object_set_new(obj, "log_error",
			    json_string(err.text));
	}
	log_emit(level, obj);
	json_decref(obj);
}

static void
log_msg(int level, const char *errstr, const char *fmt, va_list ap)
{
	char	 msg[1024], ts[40];
	json_t	*obj;

	if (level == LOG_DEBUG && log_verbosity == 0)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	log_timestamp(ts, sizeof(ts), 1);
	obj = json_pack("{s:s, s:s, s:s, s:n, s:s, s:s, s:s?}", "ts", ts,
	    "level", log_level_name(level), "event", "log", "session",
	    "proc", log_proc, "msg", msg, "error", errstr);
	if (obj == NULL)
		return;
	log_emit(level, obj);
	json_decref(obj);
}

void
log_warn(const char *fmt, ...)
{
	va_list	 ap;
	int	 saved = errno;

	va_start(ap, fmt);
	log_msg(LOG_WARNING, strerror(saved), fmt, ap);
	va_end(ap);
	errno = saved;
}

void
log_warnx(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_msg(LOG_WARNING, NULL, fmt, ap);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_msg(LOG_INFO, NULL, fmt, ap);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_msg(LOG_DEBUG, NULL, fmt, ap);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	va_list	 ap;
	int	 saved = errno;

	va_start(ap, fmt);
	log_msg(LOG_CRIT, strerror(saved), fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_msg(LOG_CRIT, NULL, fmt, ap);
	va_end(ap);
	exit(1);
}

/*
 * Copy untrusted text for a log line or a reply: at most len - 1
 * bytes of src, every byte outside printable ASCII replaced by '?'.
 */
void
log_sanitize(char *dst, size_t len, const char *src, size_t srclen)
{
	size_t	 i;

	if (len == 0)
		return;
	for (i = 0; i < srclen && i < len - 1; i++) {
		unsigned char c = (unsigned char)src[i];

		dst[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	dst[i] = '\0';
}
