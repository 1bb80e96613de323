/*
 * The SMTP dialogue: one session per worker process.
 *
 * The reader works on a bounded byte buffer and tells CR, LF and CRLF
 * apart.  Command lines end at CRLF only; data ends at CRLF.CRLF only.
 * Every reply comes from the table in reply.c, so a code and its
 * enhanced code never drift.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/statvfs.h>

#include <netinet/in.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <tls.h>

#include "smtpd.h"

enum phase {
	P_GREETED,	/* waiting for EHLO/HELO */
	P_READY,	/* after EHLO/HELO */
	P_MAIL,		/* after MAIL */
};

enum rd {
	RD_OK = 1,
	RD_EOF = 0,
	RD_ERROR = -1,
	RD_TIMEOUT = -2,
	RD_INTR = -3,
};

enum line_status {
	LINE_OK,
	LINE_TOOLONG,
	LINE_BAD,		/* NUL, bare CR, or ended by a bare LF */
	LINE_EOF,
	LINE_TIMEOUT,
	LINE_STOP,
	LINE_ERROR,
};

/*
 * A worker serves one session, so its buffers are static: pages of
 * BSS are only faulted in as far as they are used.
 */
static char	 session_ibuf[SMTP_IBUF_SIZE];
static char	 session_obuf[SMTP_OBUF_SIZE];

struct session {
	const struct smtpd_conf	*conf;
	int			 fd_in;
	int			 fd_out;
	int			 chan;		/* to the relay */
	int			 vchan;		/* to the verifier */
	int			 ctl;		/* to the master */
	int			 spool_said;	/* the master's word on the
						   spool, for the first MAIL;
						   -1: ask the relay */
	struct tls		*tls;		/* once TLS is active */
	char			 tls_info[128];	/* version and cipher */
	char			 id[SESSION_ID_LEN + 1];
	char			 client_ip[INET6_ADDRSTRLEN];
	sigset_t		 waitmask;

	enum phase		 phase;
	int			 esmtp;
	char			 helo[SMTP_HELO_MAX + 1];
	char			 from[SMTP_PATH_MAX + 1];
	char			**rcpts;
	size_t			 nrcpts;
	int			 smtputf8;
	int			 errors;
	int			 junk;		/* commands that move nothing */
	int			 hellos;
	int			 quit;
	int			 closing;	/* we close first: linger */
	const char		*reason;	/* why the session ended */
	size_t			 nmessages;
	char			 last_reply[SMTP_REPLY_MAX];

	char			*ibuf;
	size_t			 ioff;
	size_t			 ilen;
	char			*obuf;
	size_t			 olen;
	int			 ofail;

	struct message		 msg;
	long long		 timeout;	/* -t, or STRESS_TIMEOUT */
	long long		 session_timeout; /* or STRESS_SESSION_... */
	struct timespec		 deadline;	/* of session_timeout */
	int			 expired;	/* it passed */
	struct timespec		 data_start;	/* of DATA, for its rate */
	int			 bdat;		/* BDAT chunks taken: no DATA */
	size_t			 data_bytes;
	int			 data_slow;	/* under DATA_MIN_RATE */
	struct sockaddr_storage	 peer;
	struct chan_verdict	 verdict;	/* the relay's last answer */
};

static void	session_init(struct session *, struct session_ctx *);
static void	session_serve(struct session *);
static void	session_close(struct session *);
static void	session_reply(struct session *, enum reply, const char *);
static int	session_code(const struct session *, enum reply);
static void	session_output(struct session *, const char *, size_t);
static int	session_error(struct session *, enum reply);
static int	session_junk(struct session *);
static void	session_hangup(struct session *, int, const char *);
static void	session_end(struct session *, int, const char *);
static void	session_log_reject(struct session *, int, const char *);
static int	session_flush(struct session *);
static int	session_read(struct session *);
static int	session_greet(struct session *);
static int	session_wait(struct session *, struct timespec *);
static int	session_spool_full(struct session *);
static int	session_tls_start(struct session *, struct tls *);
static void	session_starttls(struct session *, const char *);
static void	session_shun(struct session *, enum reply, const char *,
		    enum reply, const char *);
#ifdef SMTPD_TEST_HOOKS
static void	session_test_hook(struct session *, const char *);
#endif
static enum line_status session_getline(struct session *, char *, size_t);
static void	session_command(struct session *, char *);
static int	session_is_http(const char *);
static void	session_hello(struct session *, const char *, int);
static void	session_ehlo(struct session *, const char *);
static void	session_helo(struct session *, const char *);
static void	session_mail(struct session *, const char *);
static void	session_rcpt(struct session *, const char *);
static void	session_data(struct session *, const char *);
static void	session_bdat(struct session *, const char *);
static void	session_rset(struct session *, const char *);
static void	session_noop(struct session *, const char *);
static void	session_quit(struct session *, const char *);
static void	session_vrfy(struct session *, const char *);
static void	session_expn(struct session *, const char *);
static void	session_help(struct session *, const char *);
static void	session_auth(struct session *, const char *);
static int	session_bdat_size(const char *, unsigned long long *, int *);
static int	session_bdat_read(struct session *, unsigned long long, int);
static int	session_read_more(struct session *);
static void	session_reset(struct session *);
static int	session_read_data(struct session *);
static void	session_deliver(struct session *);
static enum reply session_verdict(struct session *, char *, char *, size_t);
static void	session_envelope(struct session *, struct envelope *);
static void	session_count_message(struct session *, enum reply);
static void	session_log_message(struct session *, enum reply,
		    const char *, long long);
static int	session_received(struct session *);
static int	session_verb(const char *, const char *, const char **);
static void	session_line_head(char *, size_t, const char *, size_t);
static int	session_has_8bit(const char *);
static int	session_addr_8bit_check(int, const char *);
static void	session_trace(struct session *, const char *, const char *,
		    size_t);

/*
 * The commands: a verb, then the end of the line or a space and its
 * arguments.  One that needs_helo is answered 503 before EHLO or HELO
 * and not run; BDAT checks that itself, once its chunk is read.  A junk
 * one moves no message on: past SMTP_JUNK_MAX of them (EHLO and HELO
 * after the first, 503s to a command out of sequence included) the
 * session ends with a 421, not with its worker's CPU limit.
 */
static const struct command {
	const char	*verb;
	void		(*handler)(struct session *, const char *);
	int		 needs_helo;
	int		 junk;
} commands[] = {
	{ "EHLO",	session_ehlo,		0, 0 },
	{ "HELO",	session_helo,		0, 0 },
	{ "MAIL",	session_mail,		1, 0 },
	{ "RCPT",	session_rcpt,		1, 0 },
	{ "DATA",	session_data,		1, 0 },
	{ "BDAT",	session_bdat,		0, 0 },
	{ "RSET",	session_rset,		0, 1 },
	{ "NOOP",	session_noop,		0, 1 },
	{ "QUIT",	session_quit,		0, 0 },
	{ "VRFY",	session_vrfy,		0, 1 },
	{ "EXPN",	session_expn,		0, 1 },
	{ "HELP",	session_help,		0, 1 },
	{ "AUTH",	session_auth,		0, 1 },
	{ "STARTTLS",	session_starttls,	0, 0 },
#ifdef SMTPD_TEST_HOOKS
	{ "XTEST",	session_test_hook,	0, 0 },
#endif
};

void
session_run(struct session_ctx *ctx)
{
	struct session	*s;
	char		 via[INET6_ADDRSTRLEN], text[300];
	const char	*limit;

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		log_warn("session allocation");
		return;
	}
	session_init(s, ctx);
	if (ctx->via.ss_family != AF_UNSPEC) {
		addr_str(&ctx->via, via, sizeof(via));
		log_event(LOG_INFO, "connect", s->id, "{s:s, s:s, s:i}",
		    "client_ip", s->client_ip, "proxy_ip", via,
		    "pid", (int)getpid());
	} else
		log_event(LOG_INFO, "connect", s->id, "{s:s, s:i}",
		    "client_ip", s->client_ip, "pid", (int)getpid());
	/* an early talker is counted as such, not as served */
	metrics_add(ctx->reject == REPLY_MAXSESSIONS ? M_SESS_MAXSESSIONS :
	    ctx->reject == REPLY_MAXPERIP ? M_SESS_MAXPERIP :
	    ctx->reject == REPLY_CONNRATE ? M_SESS_CONNRATE :
	    ctx->banned ? M_SESS_BANNED : M_SESS_SERVED, 1);

	limit = ctx->reject == REPLY_MAXSESSIONS ? "max-sessions" :
	    ctx->reject == REPLY_CONNRATE ? "max-conn-rate" : "max-per-ip";
	if (ctx->smtps && ctx->reject >= 0) {
		/*
		 * Over a limit on an implicit-TLS port: a handshake would
		 * hold this worker for up to --timeout, and nothing may be
		 * said in clear (RFC 8314).  Close at once.
		 */
		session_end(s, -1, limit);
	} else if (ctx->smtps && session_tls_start(s, NULL) == -1) {
		;	/* RFC 8314: nothing in clear on this port */
	} else if (ctx->reject >= 0) {
		session_end(s, ctx->reject, limit);
	} else if (ctx->banned) {
		snprintf(text, sizeof(text), "%s Your address is banned",
		    s->conf->hostname);
		session_shun(s, REPLY_BANNED, text, REPLY_BANNED_CMD,
		    "banned");
	} else if (session_greet(s) == 0)
		session_serve(s);
	session_close(s);
}

/* Command after command, until the session ends. */
static void
session_serve(struct session *s)
{
	char	 line[SMTP_LINE_MAX + 1];

	while (!s->quit) {
		switch (session_getline(s, line, sizeof(line))) {
		case LINE_OK:
			session_command(s, line);
			break;
		case LINE_TOOLONG:
			if (session_is_http(line))
				session_end(s, REPLY_HTTP, "http");
			else
				session_error(s, REPLY_LINETOOLONG);
			break;
		case LINE_BAD:
			if (session_is_http(line))
				session_end(s, REPLY_HTTP, "http");
			else
				session_error(s, REPLY_SYNTAX);
			break;
		case LINE_TIMEOUT:
			session_hangup(s, REPLY_TIMEOUT, s->expired ?
			    "session-timeout" : "timeout");
			break;
		case LINE_STOP:
			session_hangup(s, REPLY_SHUTDOWN, "shutdown");
			break;
		case LINE_EOF:
			session_hangup(s, -1, "eof");
			break;
		case LINE_ERROR:
			session_hangup(s, -1, "io-error");
			break;
		}
		/* stopping: answer once the pipelined input is done */
		if (!s->quit && smtpd_stop && s->ioff == s->ilen)
			session_hangup(s, REPLY_SHUTDOWN, "shutdown");
	}
}

static void
session_init(struct session *s, struct session_ctx *ctx)
{
	s->conf = ctx->conf;
	s->ibuf = session_ibuf;
	s->obuf = session_obuf;
	s->fd_in = ctx->fd_in;
	s->fd_out = ctx->fd_out;
	s->chan = ctx->chan;
	s->vchan = ctx->vchan;
	s->ctl = ctx->ctl;
	s->spool_said = ctx->spool_full;
	random_hex(s->id, sizeof(s->id));
	addr_str(&ctx->peer, s->client_ip, sizeof(s->client_ip));
	memcpy(&s->peer, &ctx->peer, sizeof(s->peer));
	s->phase = P_GREETED;
	s->timeout = s->conf->timeout;
	s->session_timeout = s->conf->session_timeout;
	if (ctx->stress && s->timeout > STRESS_TIMEOUT)
		s->timeout = STRESS_TIMEOUT;
	if (ctx->stress && s->session_timeout > STRESS_SESSION_TIMEOUT)
		s->session_timeout = STRESS_SESSION_TIMEOUT;
	clock_gettime(CLOCK_MONOTONIC, &s->deadline);
	s->deadline.tv_sec += s->session_timeout;
	s->rcpts = calloc((size_t)s->conf->max_rcpt, sizeof(char *));
	if (s->rcpts == NULL)
		fatal("recipient array");

	/* signals that interrupt a wait: SIGTERM tells us to stop */
	sigprocmask(SIG_BLOCK, NULL, &s->waitmask);
	sigdelset(&s->waitmask, SIGTERM);
	sigdelset(&s->waitmask, SIGINT);
}

/*
 * Closing first, we half-close and read what the client still sends
 * for a moment, so that our last reply is not lost to a TCP reset.
 */
static void
session_close(struct session *s)
{
	char		 buf[4096];
	struct pollfd	 pfd;
	size_t		 drained = 0;
	int		 i;

	session_flush(s);
	if (s->tls != NULL) {
		/* close_notify, without waiting long for the peer's */
		for (i = 0; i < 4; i++) {
			int r = tls_close(s->tls);

			if (r != TLS_WANT_POLLIN && r != TLS_WANT_POLLOUT)
				break;
			pfd.fd = s->fd_in;
			pfd.events = r == TLS_WANT_POLLIN ? POLLIN : POLLOUT;
			if (poll(&pfd, 1, 100) <= 0)
				break;
		}
		tls_free(s->tls);
		s->tls = NULL;
	}
	if (s->closing) {
		shutdown(s->fd_out, SHUT_WR);
		pfd.fd = s->fd_in;
		pfd.events = POLLIN;
		for (i = 0; i < 10 && drained < 65536; i++) {
			ssize_t n;

			if (poll(&pfd, 1, 100) <= 0)
				break;
			n = read(s->fd_in, buf, sizeof(buf));
			if (n <= 0)
				break;
			drained += (size_t)n;
		}
	}
	log_event(LOG_INFO, "disconnect", s->id, "{s:s, s:s, s:i, s:i}",
	    "client_ip", s->client_ip, "reason", s->reason ? s->reason : "quit",
	    "messages", (int)s->nmessages, "errors", s->errors);
	session_reset(s);
	free(s->rcpts);
	free(s->msg.buf);
	close(s->fd_in);
	if (s->fd_out != s->fd_in)
		close(s->fd_out);
	explicit_bzero(s, sizeof(*s));
	free(s);
}

/*
 * Between two sessions of one worker (--max-use): nothing of the last
 * one stays readable in our buffers.
 */
void
session_scrub(void)
{
	explicit_bzero(session_ibuf, sizeof(session_ibuf));
	explicit_bzero(session_obuf, sizeof(session_obuf));
}

/* "code[ enh][ text][ arg]", from the table; arg is ours or cleaned. */
static void
session_reply(struct session *s, enum reply r, const char *arg)
{
	char		 line[SMTP_REPLY_MAX];
	int		 n, soft;

	/* --soft-bounce: here, the one place a reply is sent */
	soft = reply_softened(r, s->conf->soft_bounce);
	metrics_add((soft ? M_REPLY_SOFT : M_REPLY) + r, 1);
	if ((n = reply_line(r, soft, arg, line, sizeof(line))) == -1)
		return;
	session_trace(s, "smtp_out", line, (size_t)n - 2);
	log_sanitize(s->last_reply, sizeof(s->last_reply), line,
	    (size_t)n - 2);
	session_output(s, line, (size_t)n);
	if (reply_code(r) == 421)
		s->quit = 1;
}

/* The code reply r is sent with (its 4xx under --soft-bounce). */
static int
session_code(const struct session *s, enum reply r)
{
	return reply_code(r) - (reply_softened(r, s->conf->soft_bounce) ?
	    100 : 0);
}

static void
session_output(struct session *s, const char *p, size_t n)
{
	if (s->olen + n > SMTP_OBUF_SIZE)
		session_flush(s);
	memcpy(s->obuf + s->olen, p, n);
	s->olen += n;
}

/* A malformed or unknown command: reply, or 421 once the limit is hit. */
static int
session_error(struct session *s, enum reply r)
{
	if (reply_is_error(r) && ++s->errors >= s->conf->max_errors) {
		session_end(s, REPLY_MAXERRORS, "max-errors");
		return -1;
	}
	session_reply(s, r, NULL);
	return 0;
}

/* One more junk command: -1 when it was one too many, and 421 sent. */
static int
session_junk(struct session *s)
{
	if (++s->junk > SMTP_JUNK_MAX) {
		session_end(s, REPLY_JUNK, "junk-commands");
		return -1;
	}
	return 0;
}

/*
 * The session ends for reason: after reply r, if not -1, closing
 * first (see session_close).
 */
static void
session_hangup(struct session *s, int r, const char *reason)
{
	if (r != -1) {
		session_reply(s, r, NULL);
		s->closing = 1;
	}
	s->quit = 1;
	if (!s->ofail)		/* else the failed write is why */
		s->reason = reason;
}

/* The session refuses the client: it ends, logged as a "reject". */
static void
session_end(struct session *s, int r, const char *reason)
{
	session_hangup(s, r, reason);
	session_log_reject(s, LOG_INFO, reason);
}

/* The "reject" log event. */
static void
session_log_reject(struct session *s, int level, const char *reason)
{
	log_event(level, "reject", s->id, "{s:s, s:s}", "client_ip",
	    s->client_ip, "reason", reason);
}

/*
 * With -vv, one event for each line of p (a multi-line reply is split
 * at its CRLFs, not logged with them as "??").
 */
static void
session_trace(struct session *s, const char *event, const char *p,
    size_t len)
{
	char		 clean[LOG_FIELD_MAX];
	const char	*eol;
	size_t		 n;

	if (log_verbose() < 2)
		return;
	for (;;) {
		eol = NULL;
		for (n = 0; n + 1 < len; n++)
			if (p[n] == '\r' && p[n + 1] == '\n') {
				eol = p + n;
				break;
			}
		if (eol == NULL)
			n = len;
		log_sanitize(clean, sizeof(clean), p, n);
		log_event(LOG_DEBUG, event, s->id, "{s:s}", "line", clean);
		if (eol == NULL)
			break;
		p += n + 2;
		len -= n + 2;
	}
}

static int
session_flush(struct session *s)
{
	struct pollfd	 pfd;
	size_t		 off = 0;
	ssize_t		 n;
	int		 r;

	if (s->ofail) {
		s->olen = 0;
		return -1;
	}
	while (off < s->olen) {
		pfd.fd = s->fd_out;
		pfd.events = POLLOUT;
		if (s->tls != NULL) {
			n = tls_write(s->tls, s->obuf + off, s->olen - off);
			if (n == TLS_WANT_POLLIN || n == TLS_WANT_POLLOUT) {
				pfd.fd = s->fd_in;
				pfd.events = n == TLS_WANT_POLLIN ? POLLIN :
				    POLLOUT;
				errno = EAGAIN;
				n = -1;
			} else if (n < 0)
				errno = EIO;
		} else
			n = write(s->fd_out, s->obuf + off, s->olen - off);
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		r = -1;
		if (n == -1 && errno == EAGAIN) {
			r = poll(&pfd, 1, (int)s->timeout * 1000);
			if (r > 0 || (r == -1 && errno == EINTR))
				continue;
		}
		/* a client that does not read what we say */
		s->reason = r == 0 ? "write-timeout" : "write-error";
		s->ofail = 1;
		s->quit = 1;
		break;
	}
	s->olen = 0;
	return s->ofail ? -1 : 0;
}

/*
 * Read more input into the buffer.  Waits at most --timeout; a
 * SIGTERM interrupts the wait with RD_INTR.
 */
static int
session_read(struct session *s)
{
	struct pollfd	 pfd;
	struct timespec	 ts;
	ssize_t		 n;
	int		 r;

	if (session_flush(s) == -1)
		return RD_ERROR;
	if (s->ioff > 0) {
		memmove(s->ibuf, s->ibuf + s->ioff, s->ilen - s->ioff);
		s->ilen -= s->ioff;
		s->ioff = 0;
	}
	if (s->ilen == SMTP_IBUF_SIZE)
		return RD_OK;	/* caller consumes first */
	/* however fast it trickles: the session's and DATA's limits */
	if (session_wait(s, &ts) == -1)
		return RD_TIMEOUT;
	pfd.fd = s->fd_in;
	for (;;) {
		/* read first: TLS may hold decrypted bytes already */
		pfd.events = POLLIN;
		if (s->tls != NULL) {
			n = tls_read(s->tls, s->ibuf + s->ilen,
			    SMTP_IBUF_SIZE - s->ilen);
			if (n == TLS_WANT_POLLOUT)
				pfd.events = POLLOUT;
			else if (n == TLS_WANT_POLLIN)
				;
			else if (n < 0)
				return RD_ERROR;
			else
				break;
		} else {
			n = read(s->fd_in, s->ibuf + s->ilen,
			    SMTP_IBUF_SIZE - s->ilen);
			if (n >= 0)
				break;
			if (errno != EAGAIN && errno != EINTR)
				return RD_ERROR;
		}
		if (session_wait(s, &ts) == -1)
			return RD_TIMEOUT;
		r = ppoll(&pfd, 1, &ts, &s->waitmask);
		if (r == -1)
			return errno == EINTR ? RD_INTR : RD_ERROR;
		if (r == 0) {
			(void)session_wait(s, &ts);	/* which limit it was */
			return RD_TIMEOUT;
		}
	}
	if (n == 0)
		return RD_EOF;
	s->ilen += (size_t)n;
	return RD_OK;
}

/*
 * How long the next read may wait: --timeout, but never past the
 * session's deadline (--session-timeout), nor, in DATA, past the moment
 * the data would fall under DATA_MIN_RATE.  -1 when that time is up.
 */
static int
session_wait(struct session *s, struct timespec *ts)
{
	struct timespec	 now;
	long long	 ms, left, grace, need;

	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = s->timeout * 1000;
	left = (s->deadline.tv_sec - now.tv_sec) * 1000LL +
	    (s->deadline.tv_nsec - now.tv_nsec) / 1000000;
	if (left <= 0) {
		s->expired = 1;
		return -1;
	}
	if (left < ms)
		ms = left;
	if (s->data_start.tv_sec != 0) {
		grace = DATA_RATE_GRACE;
		if (s->session_timeout / 2 < grace)
			grace = s->session_timeout / 2;
		/* when the bytes so far fall under the rate */
		need = (long long)(s->data_bytes / DATA_MIN_RATE);
		if (need < grace)
			need = grace;
		left = (s->data_start.tv_sec + need - now.tv_sec) * 1000LL +
		    (s->data_start.tv_nsec - now.tv_nsec) / 1000000;
		if (left <= 0) {
			s->data_slow = 1;
			return -1;
		}
		if (left < ms)
			ms = left;
	}
	ts->tv_sec = ms / 1000;
	ts->tv_nsec = (ms % 1000) * 1000000;
	return 0;
}

/*
 * With --spool: is its file system under --spool-reserve?  Asked at
 * MAIL, before any data is taken, so a full disk is a 452 the sender
 * retries, not a message lost at write time: the first time from what
 * the master said as it let the session begin (a moment ago; in the
 * MX's usual session, the only MAIL), later of the relay.
 */
static int
session_spool_full(struct session *s)
{
	struct chan_verdict	 v;
	int			 said = s->spool_said;

	s->spool_said = -1;
	if (s->conf->spool != NULL && said != -1)
		return said;
	/* the relay writes the spool; it checks again when it writes */
	if (s->conf->spool == NULL || chan_request(s->chan, CHAN_SPOOL_ROOM,
	    NULL, 0, NULL, 0, CHAN_VERDICT, &v, sizeof(v), 5000) == -1)
		return 0;
	return v.kind == VERDICT_NOSPACE;
}

/*
 * Greeting, after the DNS lists' answers and --greet-delay, which
 * overlap; -1 for an early talker or a client the lists refuse.
 */
static int
session_greet(struct session *s)
{
	struct pollfd	 pfd;
	struct timespec	 ts, start, now;
	long long	 left;
	char		 text[300];
	int		 r, listed;

	clock_gettime(CLOCK_MONOTONIC, &start);
	listed = dnsbl_listed(s->conf, s->chan, &s->peer, s->id,
	    s->client_ip);
	if (s->conf->greet_delay > 0) {
		pfd.fd = s->fd_in;
		pfd.events = POLLIN;
		for (;;) {
			/* spent on the lists: one look for early talk */
			clock_gettime(CLOCK_MONOTONIC, &now);
			left = s->conf->greet_delay -
			    ((now.tv_sec - start.tv_sec) * 1000 +
			    (now.tv_nsec - start.tv_nsec) / 1000000);
			if (left < 0)
				left = 0;
			ts.tv_sec = left / 1000;
			ts.tv_nsec = (left % 1000) * 1000000;
			r = ppoll(&pfd, 1, &ts, &s->waitmask);
			if (r == -1 && errno == EINTR) {
				if (smtpd_stop) {
					session_hangup(s, REPLY_SHUTDOWN,
					    "shutdown");
					return -1;
				}
				continue;
			}
			if (r == 0)
				break;
			metrics_add(M_SESS_SERVED, (uint64_t)-1);
			metrics_add(M_SESS_EARLYTALK, 1);
			session_end(s, REPLY_EARLYTALK, "early-talker");
			return -1;
		}
	}
	if (listed) {
		session_shun(s, REPLY_DNSBL, NULL, REPLY_DNSBL_CMD, "dnsbl");
		return -1;
	}
	snprintf(text, sizeof(text), "%s ESMTP", s->conf->hostname);
	session_reply(s, REPLY_GREETING, text);
	return 0;
}

/*
 * Complete the TLS handshake within --timeout: at once on an --smtps
 * listener (cctx NULL: accepted here), after 220 for STARTTLS.
 * Returns 0, or -1 with the session set to end.
 */
static int
session_tls_start(struct session *s, struct tls *cctx)
{
	char		 err[256], clean[LOG_FIELD_MAX];

	if (cctx == NULL &&
	    tls_accept_socket(s->conf->tls, &cctx, s->fd_in) == -1) {
		log_sanitize(clean, sizeof(clean), tls_error(s->conf->tls),
		    strlen(tls_error(s->conf->tls)));
		log_event(LOG_WARNING, "tls_failed", s->id, "{s:s, s:s}",
		    "client_ip", s->client_ip, "error", clean);
		session_hangup(s, -1, "tls-failed");
		return -1;
	}
	if (tls_handshake_timed(cctx, s->fd_in, s->timeout,
	    &s->waitmask, err, sizeof(err)) == -1) {
		log_sanitize(clean, sizeof(clean), err, strlen(err));
		log_event(LOG_INFO, "tls_failed", s->id, "{s:s, s:s}",
		    "client_ip", s->client_ip, "error", clean);
		tls_free(cctx);
		session_hangup(s, -1, "tls-failed");
		return -1;
	}
	s->tls = cctx;
	snprintf(s->tls_info, sizeof(s->tls_info), "%s with cipher %s",
	    tls_conn_version(cctx), tls_conn_cipher(cctx));
	log_event(LOG_INFO, "tls", s->id, "{s:s, s:s, s:s}", "client_ip",
	    s->client_ip, "version", tls_conn_version(cctx), "cipher",
	    tls_conn_cipher(cctx));
	return 0;
}

/*
 * STARTTLS (RFC 3207): what the client pipelined after it is dropped
 * unread, and the session starts over: EHLO again, no transaction.
 */
static void
session_starttls(struct session *s, const char *args)
{
	struct tls	*cctx;

	if (s->conf->tls == NULL) {
		session_reply(s, REPLY_NOTLS, NULL);
		return;
	}
	if (s->tls != NULL) {
		session_reply(s, REPLY_INTLS, NULL);
		return;
	}
	if (*args != '\0') {
		session_error(s, REPLY_SYNTAX);
		return;
	}
	if (tls_accept_socket(s->conf->tls, &cctx, s->fd_in) == -1) {
		session_reply(s, REPLY_TLSFAIL, NULL);
		return;
	}
	session_reply(s, REPLY_STARTTLS, NULL);
	if (session_flush(s) == -1) {
		tls_free(cctx);
		return;
	}
	s->ioff = s->ilen = 0;		/* no command injection */
	if (session_tls_start(s, cctx) == -1)
		return;
	session_reset(s);
	s->phase = P_GREETED;
	s->esmtp = 0;
	s->helo[0] = '\0';
}

/*
 * A banned client (BAN LIST in smtpd.8) or one --dnsbl refuses:
 * reply r in place of the greeting, then only QUIT (RFC 5321 3.1);
 * anything else is a bad command (cmd), so --max-errors ends it.
 */
static void
session_shun(struct session *s, enum reply r, const char *arg,
    enum reply cmd, const char *reason)
{
	char	 line[SMTP_LINE_MAX + 1];

	session_reply(s, r, arg);
	s->reason = reason;
	session_log_reject(s, LOG_INFO, s->reason);
	while (!s->quit) {
		switch (session_getline(s, line, sizeof(line))) {
		case LINE_OK:
			if (strcasecmp(line, "QUIT") == 0) {
				session_reply(s, REPLY_QUIT, NULL);
				s->quit = 1;
			} else
				session_error(s, cmd);
			break;
		case LINE_TOOLONG:
		case LINE_BAD:
			session_error(s, cmd);
			break;
		case LINE_TIMEOUT:
			session_hangup(s, REPLY_TIMEOUT, reason);
			break;
		case LINE_STOP:
			session_hangup(s, REPLY_SHUTDOWN, reason);
			break;
		default:
			session_hangup(s, -1, reason);
			break;
		}
	}
}

/*
 * Next command line into line (without CRLF).  A line ends at LF; it
 * must be CRLF and hold no NUL or CR, else LINE_BAD.  Longer than
 * SMTP_LINE_MAX octets with its CRLF: LINE_TOOLONG, once its LF came.
 */
static enum line_status
session_getline(struct session *s, char *line, size_t linesz)
{
	char	*p, *lf;
	size_t	 len, avail;
	int	 toolong = 0, r;

	for (;;) {
		p = s->ibuf + s->ioff;
		avail = s->ilen - s->ioff;
		/* a command ends at CRLF and only there (SPEC section 3) */
		lf = memmem(p, avail, "\r\n", 2);
		if (lf != NULL) {
			len = (size_t)(lf - p) + 2;
			s->ioff += len;
			if (!toolong)
				session_line_head(line, linesz, p, len - 2);
			if (toolong || len > SMTP_LINE_MAX) {
				session_trace(s, "smtp_in", p, len - 2);
				return LINE_TOOLONG;
			}
			session_trace(s, "smtp_in", p, len - 2);
			len -= 2;
			/* a bare CR or LF inside: the whole line, one error */
			if (memchr(p, '\0', len) != NULL ||
			    memchr(p, '\r', len) != NULL ||
			    memchr(p, '\n', len) != NULL)
				return LINE_BAD;
			if (len >= linesz)
				return LINE_TOOLONG;
			memcpy(line, p, len);
			line[len] = '\0';
			return LINE_OK;
		}
		/*
		 * An HTTP client with bare LF line ends would wait for an
		 * answer that a CRLF never ends: its request line is known
		 * at its first LF.
		 */
		if (!toolong && (lf = memchr(p, '\n', avail)) != NULL) {
			session_line_head(line, linesz, p, (size_t)(lf - p));
			if (session_is_http(line)) {
				session_trace(s, "smtp_in", p,
				    (size_t)(lf - p));
				s->ioff = s->ilen;
				return LINE_BAD;
			}
		}
		if (avail >= SMTP_LINE_MAX && !toolong) {
			/* too long already: keep its start, drop the rest */
			session_line_head(line, linesz, p, avail);
			toolong = 1;
		}
		/* dropping: keep a last CR, the CRLF may straddle reads */
		if (toolong)
			s->ioff = s->ilen - (avail > 0 && p[avail - 1] == '\r');
		if (smtpd_stop && !toolong && avail == 0)
			return LINE_STOP;
		r = session_read(s);
		switch (r) {
		case RD_OK:
			break;
		case RD_INTR:
			if (smtpd_stop && avail == 0)
				return LINE_STOP;
			break;
		case RD_TIMEOUT:
			return LINE_TIMEOUT;
		case RD_EOF:
			return LINE_EOF;
		default:
			return LINE_ERROR;
		}
	}
}

/*
 * The start of a line that is refused (too long, bare LF, NUL), so it
 * can still be recognised as HTTP: at most linesz - 1 octets, CR and
 * LF dropped.
 */
static void
session_line_head(char *line, size_t linesz, const char *p, size_t len)
{
	size_t	 n = len < linesz - 1 ? len : linesz - 1;

	memcpy(line, p, n);
	while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == '\n'))
		n--;
	line[n] = '\0';
}

/* Case-insensitive verb match; *args points past it and one space. */
static int
session_verb(const char *line, const char *verb, const char **args)
{
	size_t	 n = strlen(verb);

	if (strncasecmp(line, verb, n) != 0)
		return 0;
	if (line[n] == '\0') {
		*args = line + n;
		return 1;
	}
	if (line[n] != ' ')
		return 0;
	*args = line + n + 1;
	return 1;
}

/*
 * An HTTP request line or a header-like line ("Host: x") sent as an
 * SMTP command: a browser or a proxy abuse attempt.
 */
static int
session_is_http(const char *line)
{
	static const char *methods[] = { "GET ", "POST ", "HEAD ", "PUT ",
	    "CONNECT ", "OPTIONS ", "DELETE ", "PATCH ", "TRACE " };
	const char	*p;
	size_t		 i;

	for (i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (strncmp(line, methods[i], strlen(methods[i])) == 0)
			return 1;
	/* field-name = token, then ':' */
	for (p = line; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == ':')
			return p > line;
		if (c <= 0x20 || c >= 0x7f || strchr("()<>@,;\\\"/[]?={}",
		    c) != NULL)
			return 0;
	}
	return 0;
}

/* One command line: its verb's handler from commands[]. */
static void
session_command(struct session *s, char *line)
{
	const struct command	*c;
	const char		*args;
	size_t			 i;

	if (session_is_http(line)) {
		/* one 421 line, nothing echoed, and close */
		session_end(s, REPLY_HTTP, "http");
		return;
	}
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		c = &commands[i];
		if (!session_verb(line, c->verb, &args))
			continue;
		if ((c->junk || (c->needs_helo && s->phase == P_GREETED)) &&
		    session_junk(s) == -1)
			return;
		if (c->needs_helo && s->phase == P_GREETED)
			session_reply(s, REPLY_NOHELO, NULL);
		else
			c->handler(s, args);
		return;
	}
	session_error(s, REPLY_UNKNOWN);
}

static void
session_rset(struct session *s, const char *args)
{
	if (*args != '\0') {
		session_error(s, REPLY_SYNTAX);
		return;
	}
	session_reset(s);
	if (s->phase == P_MAIL)
		s->phase = P_READY;
	session_reply(s, REPLY_OK, NULL);
}

static void
session_noop(struct session *s, const char *args)
{
	(void)args;
	session_reply(s, REPLY_OK, NULL);
}

static void
session_quit(struct session *s, const char *args)
{
	(void)args;
	session_reply(s, REPLY_QUIT, NULL);
	s->quit = 1;
}

static void
session_vrfy(struct session *s, const char *args)
{
	if (*args == '\0')
		session_error(s, REPLY_SYNTAX);
	else
		session_reply(s, REPLY_VRFY, NULL);
}

static void
session_expn(struct session *s, const char *args)
{
	(void)args;
	session_reply(s, REPLY_EXPN, NULL);
}

static void
session_help(struct session *s, const char *args)
{
	(void)args;
	session_reply(s, REPLY_HELP, NULL);
}

static void
session_auth(struct session *s, const char *args)
{
	(void)args;
	session_reply(s, REPLY_AUTH, NULL);
}

#ifdef SMTPD_TEST_HOOKS
/* Test build only (smtpd-test): see testhooks.c. */
static void
session_test_hook(struct session *s, const char *args)
{
	char	 what[256];

	session_flush(s);
	testhook_run(s->conf, s->fd_in, s->chan, s->vchan, args, what,
	    sizeof(what));
	session_reply(s, REPLY_LOCALERR, what);
}
#endif

static void
session_ehlo(struct session *s, const char *args)
{
	session_hello(s, args, 1);
}

static void
session_helo(struct session *s, const char *args)
{
	session_hello(s, args, 0);
}

/* EHLO or HELO: a new session state, and the greeting's answer. */
static void
session_hello(struct session *s, const char *args, int esmtp)
{
	char	 text[SMTP_REPLY_MAX];
	char	 line[SMTP_REPLY_MAX];
	char	 name[SMTP_HELO_MAX + 1], alabel[SMTP_HELO_MAX + 1];
	size_t	 len;
	int	 n;

	if (s->hellos++ > 0 && session_junk(s) == -1)
		return;
	len = strcspn(args, " ");
	if (len == 0 || len > SMTP_HELO_MAX ||
	    args[len + strspn(args + len, " ")] != '\0') {
		session_error(s, REPLY_SYNTAX);
		return;
	}
	/*
	 * A name in UTF-8 is kept in its A-label form, the one SPF asks
	 * about (RFC 8616 3); any other is kept printable.
	 */
	memcpy(name, args, len);
	name[len] = '\0';
	if (session_has_8bit(name) &&
	    alabel_domain(name, alabel, sizeof(alabel)) == 0)
		log_sanitize(s->helo, sizeof(s->helo), alabel, strlen(alabel));
	else
		log_sanitize(s->helo, sizeof(s->helo), args, len);
	session_reset(s);
	s->phase = P_READY;
	s->esmtp = esmtp;
	log_event(LOG_DEBUG, "helo", s->id, "{s:s, s:s, s:b}", "client_ip",
	    s->client_ip, "helo", s->helo, "esmtp", esmtp);
	if (!esmtp) {
		(void)snprintf(text, sizeof(text), "%s Hello [%s]",
		    s->conf->hostname, s->client_ip);
		session_reply(s, REPLY_HELO, text);
		return;
	}
	n = snprintf(line, sizeof(line),
	    "250-%s Hello [%s]\r\n"
	    "250-PIPELINING\r\n"
	    "250-SIZE %lld\r\n"
	    "250-8BITMIME\r\n"
	    "250-SMTPUTF8\r\n"
	    "250-CHUNKING\r\n"
	    "%s"
	    "250 ENHANCEDSTATUSCODES\r\n",
	    s->conf->hostname, s->client_ip, s->conf->max_size,
	    s->conf->tls != NULL && s->tls == NULL ? "250-STARTTLS\r\n" : "");
	if (n < 0 || (size_t)n >= sizeof(line)) {
		session_reply(s, REPLY_LOCALERR, NULL);
		return;
	}
	metrics_add(M_REPLY + REPLY_HELO, 1);
	session_trace(s, "smtp_out", line, (size_t)n - 2);
	session_output(s, line, (size_t)n);
}

static int
session_has_8bit(const char *p)
{
	for (; *p != '\0'; p++)
		if ((unsigned char)*p >= 0x80)
			return 1;
	return 0;
}

/*
 * An 8-bit address is acceptable only with SMTPUTF8 and as valid UTF-8
 * (RFC 6531): 0 when it is, else the reply to give.
 */
static int
session_addr_8bit_check(int smtputf8, const char *addr)
{
	char	*clean;
	size_t	 len = strlen(addr), n;
	int	 ok;

	if (!session_has_8bit(addr))
		return 0;
	if (!smtputf8)
		return REPLY_UTF8ADDR;
	if ((clean = mime_utf8_clean(addr, len, &n)) == NULL)
		return REPLY_LOCALERR;
	ok = n == len && memcmp(clean, addr, len) == 0;
	free(clean);
	return ok ? 0 : REPLY_SYNTAX;	/* not UTF-8: malformed */
}

static void
session_mail(struct session *s, const char *args)
{
	char		 path[SMTP_PATH_MAX + 1], clean[LOG_FIELD_MAX];
	const char	*p;
	long long	 size;
	int		 smtputf8, r;

	if (s->phase == P_MAIL) {
		if (session_junk(s) == -1)
			return;
		session_reply(s, REPLY_NESTEDMAIL, NULL);
		return;
	}
	if (s->conf->require_tls && s->tls == NULL) {
		session_reply(s, REPLY_NEEDTLS, NULL);
		return;
	}
	if (strncasecmp(args, "FROM:", 5) != 0) {
		session_error(s, REPLY_SYNTAX);
		return;
	}
	p = args + 5;
	while (*p == ' ')
		p++;
	if (addr_parse_path(p, path, sizeof(path), &p, 1) == -1) {
		session_error(s, REPLY_SYNTAX);
		return;
	}
	/* ESMTP parameters: SIZE=n, BODY=7BIT|8BITMIME, SMTPUTF8 */
	if ((r = addr_parse_mail_params(p, s->esmtp, &size, &smtputf8)) !=
	    -1) {
		session_error(s, r);
		return;
	}
	if ((r = session_addr_8bit_check(smtputf8, path)) != 0) {
		session_error(s, r);
		return;
	}
	if (size > s->conf->max_size) {
		session_reply(s, REPLY_SIZE, NULL);
		return;
	}
	if (session_spool_full(s)) {
		session_log_reject(s, LOG_WARNING, "spool-full");
		session_reply(s, REPLY_NOSPACE, NULL);
		return;
	}
	if (banlist_lookup_sender(s->conf->banlist, path)) {
		log_sanitize(clean, sizeof(clean), path, strlen(path));
		log_event(LOG_INFO, "reject", s->id, "{s:s, s:s, s:s}",
		    "client_ip", s->client_ip, "reason", "sender-blocked",
		    "from", clean);
		session_reply(s, REPLY_SENDER_BLOCKED, NULL);
		return;
	}
	if (strlcpy(s->from, path, sizeof(s->from)) >= sizeof(s->from)) {
		session_error(s, REPLY_SYNTAX);
		return;
	}
	/* last: only a message that could start counts */
	if (s->conf->max_msg_rate > 0 && (r = worker_mail(s->ctl)) != -1) {
		if (r == REPLY_MSGRATE)
			session_log_reject(s, LOG_INFO, "max-msg-rate");
		session_reply(s, r, NULL);
		return;
	}
	s->smtputf8 = smtputf8;
	s->phase = P_MAIL;
	log_sanitize(clean, sizeof(clean), path, strlen(path));
	log_event(LOG_DEBUG, "mail", s->id, "{s:s, s:s}", "client_ip",
	    s->client_ip, "from", clean);
	session_reply(s, REPLY_MAILOK, NULL);
}

static void
session_rcpt(struct session *s, const char *args)
{
	char		 path[SMTP_PATH_MAX + 1], clean[LOG_FIELD_MAX];
	const char	*p;
	int		 ok, r;

	if (s->phase != P_MAIL) {
		if (session_junk(s) == 0)
			session_reply(s, REPLY_NOMAIL, NULL);
		return;
	}
	if (strncasecmp(args, "TO:", 3) != 0) {
		session_error(s, REPLY_SYNTAX);
		return;
	}
	p = args + 3;
	while (*p == ' ')
		p++;
	if (addr_parse_path(p, path, sizeof(path), &p, 0) == -1) {
		session_error(s, REPLY_SYNTAX);
		return;
	}
	while (*p == ' ')
		p++;
	if (*p != '\0') {
		/* no RCPT parameters are supported (no DSN) */
		session_error(s, REPLY_PARAM);
		return;
	}
	if ((r = session_addr_8bit_check(s->smtputf8, path)) != 0) {
		session_error(s, r);
		return;
	}
	log_sanitize(clean, sizeof(clean), path, strlen(path));
	ok = addr_rcpt_match(s->conf, path);
	if (ok && s->nrcpts >= (size_t)s->conf->max_rcpt) {
		log_event(LOG_INFO, "rcpt", s->id, "{s:s, s:s, s:s}",
		    "client_ip", s->client_ip, "rcpt", clean, "status",
		    "too-many");
		if (session_junk(s) == -1)
			return;
		session_reply(s, REPLY_TOOMANYRCPT, NULL);
		return;
	}
	log_event(ok ? LOG_DEBUG : LOG_INFO, "rcpt", s->id, "{s:s, s:s, s:s}",
	    "client_ip", s->client_ip, "rcpt", clean, "status",
	    ok ? "accepted" : "rejected");
	if (!ok) {
		/* a client guessing addresses runs into --max-errors */
		session_error(s, REPLY_RCPTUNKNOWN);
		return;
	}
	if ((s->rcpts[s->nrcpts] = strdup(path)) == NULL) {
		session_reply(s, REPLY_LOCALERR, NULL);
		return;
	}
	s->nrcpts++;
	session_reply(s, REPLY_RCPTOK, NULL);
}

static void
session_reset(struct session *s)
{
	size_t	 i;

	for (i = 0; i < s->nrcpts; i++)
		free(s->rcpts[i]);
	s->nrcpts = 0;
	s->from[0] = '\0';
	s->smtputf8 = 0;
	message_reset(&s->msg);	/* no message outlives its transaction */
	s->bdat = 0;
	memset(&s->verdict, 0, sizeof(s->verdict));
}

/*
 * BDAT n [LAST] (RFC 3030): exactly n octets follow the command, data
 * whatever they hold (no dots, no end of data).  Chunks add up to the
 * message, which the last one delivers as DATA would.  A chunk that
 * cannot be taken is still read and dropped, so its octets never run
 * as commands; one whose size cannot be read leaves nothing to trust
 * in what follows: 501, then the connection closes.
 */
static void
session_bdat(struct session *s, const char *args)
{
	unsigned long long	 size;
	int			 last, refuse = -1;

	if (session_bdat_size(args, &size, &last) == -1) {
		session_hangup(s, REPLY_SYNTAX, "bdat-syntax");
		return;
	}
	if (s->phase == P_GREETED)
		refuse = REPLY_NOHELO;
	else if (s->phase != P_MAIL || s->nrcpts == 0)
		refuse = REPLY_BADSEQ;
	else if (!s->bdat) {
		if (session_received(s) == -1)
			refuse = REPLY_LOCALERR;
		else {
			message_start(&s->msg, (size_t)s->conf->max_size);
			s->msg.raw = 1;
			s->bdat = 1;
		}
	}
	if (session_bdat_read(s, size, refuse == -1) == -1)
		return;
	if (refuse != -1) {
		session_reply(s, refuse, NULL);
		return;
	}
	if (!last) {
		char	 text[64];

		if (s->msg.too_big) {
			session_reply(s, REPLY_MSGSIZE, NULL);
			return;
		}
		snprintf(text, sizeof(text), "%llu octets received", size);
		session_reply(s, REPLY_OK, text);
		return;
	}
	message_last_chunk(&s->msg);
	session_deliver(s);
	session_reset(s);
	s->phase = P_READY;
}

/* BDAT's "n" or "n LAST", n of at most 18 digits: 0, or -1. */
static int
session_bdat_size(const char *p, unsigned long long *size, int *last)
{
	char	*end;

	if (*p < '0' || *p > '9' || strspn(p, "0123456789") > 18)
		return -1;
	*size = strtoull(p, &end, 10);
	*last = strcasecmp(end, " LAST") == 0;
	return *last || *end == '\0' ? 0 : -1;
}

/*
 * More of a message's data (DATA or a BDAT chunk): 0, or -1 when the
 * session is over, told why.  SIGTERM lets a message in progress end.
 */
static int
session_read_more(struct session *s)
{
	switch (session_read(s)) {
	case RD_OK:
	case RD_INTR:
		return 0;
	case RD_TIMEOUT:
		session_hangup(s, REPLY_TIMEOUT, s->expired ?
		    "session-timeout" : s->data_slow ? "data-too-slow" :
		    "timeout");
		break;
	case RD_EOF:
		session_hangup(s, -1, "eof-in-data");
		break;
	default:
		session_hangup(s, -1, "io-error");
		break;
	}
	s->data_start.tv_sec = 0;
	return -1;
}

/* Read exactly size octets of a chunk: into the message, or dropped. */
static int
session_bdat_read(struct session *s, unsigned long long size, int keep)
{
	size_t	 n;
	int	 done;

	clock_gettime(CLOCK_MONOTONIC, &s->data_start);
	s->data_bytes = 0;
	while (size > 0) {
		if (s->ioff < s->ilen) {
			n = s->ilen - s->ioff;
			if (n > size)
				n = (size_t)size;
			if (keep)
				(void)message_feed(&s->msg, s->ibuf + s->ioff,
				    n, &done);
			s->ioff += n;
			s->data_bytes += n;
			size -= n;
			continue;
		}
		if (session_read_more(s) == -1)
			return -1;
	}
	s->data_start.tv_sec = 0;
	return 0;
}

static void
session_data(struct session *s, const char *args)
{
	if (*args != '\0') {
		session_error(s, REPLY_SYNTAX);
		return;
	}
	if (s->phase != P_MAIL) {
		if (session_junk(s) == 0)
			session_reply(s, REPLY_NOMAIL, NULL);
		return;
	}
	if (s->nrcpts == 0) {
		if (session_junk(s) == 0)
			session_reply(s, REPLY_NORCPT, NULL);
		return;
	}
	if (s->bdat) {		/* BDAT and DATA never mix (RFC 3030) */
		session_reply(s, REPLY_BADSEQ, NULL);
		return;
	}
	if (session_received(s) == -1) {
		session_reply(s, REPLY_LOCALERR, NULL);
		return;
	}
	session_reply(s, REPLY_DATA, NULL);
	if (session_read_data(s) == -1)
		return;
	session_deliver(s);
	session_reset(s);
	s->phase = P_READY;
}

/* Our Received: header (RFC 5321 4.4), first in the message buffer. */
static int
session_received(struct session *s)
{
	char		 date[64], rcpt[SMTP_PATH_MAX + 16];
	const char	*ipv6;
	struct tm	 tm;
	time_t		 now;
	int		 n;

	if (message_alloc(&s->msg, RECEIVED_MAX) == -1)
		return -1;
	now = time(NULL);
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	ipv6 = strchr(s->client_ip, ':') != NULL ? "IPv6:" : "";
	rcpt[0] = '\0';
	if (s->nrcpts == 1) {
		char clean[SMTP_PATH_MAX + 1];

		log_sanitize(clean, sizeof(clean), s->rcpts[0],
		    strlen(s->rcpts[0]));
		snprintf(rcpt, sizeof(rcpt), "\r\n\tfor <%s>", clean);
	}
	n = snprintf(s->msg.buf, s->msg.cap,
	    "Received: from %s ([%s%s])\r\n"
	    "%s%s%s"
	    "\tby %s (smtpd) with %s%s id %s%s;\r\n"
	    "\t%s\r\n",
	    s->helo, ipv6, s->client_ip,
	    s->tls ? "\t(using " : "", s->tls ? s->tls_info : "",
	    s->tls ? ")\r\n" : "", s->conf->hostname,
	    s->smtputf8 ? "UTF8SMTP" : s->esmtp ? "ESMTP" : "SMTP",
	    s->tls ? "S" : "", s->id, rcpt, date);
	if (n < 0 || (size_t)n >= RECEIVED_MAX)
		return -1;
	s->msg.hdrlen = s->msg.len = (size_t)n;
	s->msg.datalen = 0;
	return 0;
}

/* Read data up to its end; -1 when the session ends meanwhile. */
static int
session_read_data(struct session *s)
{
	size_t	 n;
	int	 done;

	message_start(&s->msg, (size_t)s->conf->max_size);
	clock_gettime(CLOCK_MONOTONIC, &s->data_start);
	s->data_bytes = 0;
	for (;;) {
		if (s->ioff < s->ilen) {
			n = message_feed(&s->msg, s->ibuf + s->ioff,
			    s->ilen - s->ioff, &done);
			s->ioff += n;
			s->data_bytes += n;
			if (done) {
				s->data_start.tv_sec = 0;
				return 0;
			}
		}
		if (session_read_more(s) == -1)
			return -1;
	}
}

/*
 * A message's data has ended: its verdict is the reply, then it is
 * counted and logged.
 */
static void
session_deliver(struct session *s)
{
	struct timespec	 t0, t1;
	enum reply	 r;
	char		 token[TOKEN_LEN + 1], text[256];
	const char	*arg = NULL;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	random_hex(s->msg.id, sizeof(s->msg.id));
	s->nmessages++;
	token[0] = '\0';
	text[0] = '\0';
	r = session_verdict(s, token, text, sizeof(text));
	if (r == REPLY_ACCEPTED)
		arg = s->msg.id;
	else if (text[0] != '\0')
		arg = text;
	session_reply(s, r, arg);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	session_count_message(s, r);
	session_log_message(s, r, token, (t1.tv_sec - t0.tv_sec) * 1000 +
	    (t1.tv_nsec - t0.tv_nsec) / 1000000);
}

/*
 * The reply to a message: refused here for what the data reader
 * found, else what delivery answers (token and text as
 * payload_deliver() sets them).
 */
static enum reply
session_verdict(struct session *s, char *token, char *text, size_t textsz)
{
	struct envelope	 env;

	if (s->msg.too_big)
		return REPLY_MSGSIZE;
	if (s->msg.long_line)
		return REPLY_TEXTLINE;
	if (s->conf->reject_bare_lf &&
	    (s->msg.bare_cr > 0 || s->msg.bare_lf > 0))
		return REPLY_BARELF;
	if (s->msg.error)
		return REPLY_LOCALERR;
	session_envelope(s, &env);
	return payload_deliver(s->conf, &env, &s->msg, s->chan, s->vchan,
	    &s->verdict, token, text, textsz);
}

/* What the session hands to delivery: the client and the addresses. */
static void
session_envelope(struct session *s, struct envelope *env)
{
	memset(env, 0, sizeof(*env));
	env->session = s->id;
	env->client_ip = s->client_ip;
	env->helo = s->helo;
	env->peer = &s->peer;
	env->tls = s->tls != NULL ? tls_conn_version(s->tls) : NULL;
	env->from = s->from;
	env->rcpts = s->rcpts;
	env->nrcpts = s->nrcpts;
	env->received = time(NULL);
}

/* A message's outcome, and its authentication when that ran. */
static void
session_count_message(struct session *s, enum reply r)
{
	int	 code = session_code(s, r);

	metrics_add(code < 300 ? M_MSG_ACCEPTED :
	    code < 500 ? M_MSG_TEMPFAIL : M_MSG_REJECTED, 1);
}

/*
 * The "message" event: one line a message, whatever became of it,
 * with the reply it got and, when the verifier ran, what the relay
 * says it found (the verifier's word, relayed, for this log alone).
 */
static void
session_log_message(struct session *s, enum reply r, const char *token,
    long long latency_ms)
{
	const struct chan_verdict *v = &s->verdict;
	json_t			*rcpts;
	char			 from[LOG_FIELD_MAX], clean[LOG_FIELD_MAX];
	const char		*status;
	size_t			 i;
	int			 authed = v->authed;

	status = session_code(s, r) < 300 ? "accepted" :
	    session_code(s, r) < 500 ? "tempfail" : "rejected";
	if ((rcpts = json_array()) != NULL)
		for (i = 0; i < s->nrcpts; i++) {
			log_sanitize(clean, sizeof(clean), s->rcpts[i],
			    strlen(s->rcpts[i]));
			json_array_append_new(rcpts, json_string(clean));
		}
	log_sanitize(from, sizeof(from), s->from, strlen(s->from));
	if (authed && v->token[0] != '\0')
		token = v->token;
	log_event(LOG_INFO, "message", s->id,
	    "{s:s, s:s, s:s, s:s, s:o*, s:I, s:s?, s:s, s:s, s:I,"
	    " s:s*, s:s*, s:s*, s:s*}",
	    "id", s->msg.id, "client_ip", s->client_ip,
	    "helo", s->helo, "from", from,
	    "rcpt", rcpts,
	    "size", (json_int_t)(authed ? v->size :
	    s->msg.hdrlen + s->msg.datalen),
	    "token", token[0] ? token : NULL, "status", status,
	    "reply", s->last_reply, "latency_ms", (json_int_t)latency_ms,
	    "spf", authed ? v->spf : NULL,
	    "dkim", authed ? v->dkim : NULL,
	    "dmarc", authed ? v->dmarc : NULL,
	    "verdict", authed ? v->verdict : NULL);
}
