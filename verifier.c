/*
 * The verifier (smtpd verifier FLAGS..., started by the master): it
 * decides who sent each message.  A worker hands it the message as
 * received and the envelope over the channel the master gave them
 * both; the client's address is the one the master took from the
 * worker's connection itself.  A child of this process (one session at
 * a time, nothing of another session in it) reads each message, finds
 * the token, applies the field rules, and computes SPF, DKIM, DMARC and
 * the verdict, asking its DNS questions of the relay on a channel of
 * its own; its result goes to the relay on that channel, never back
 * through the worker.  This process hands each message to a child with
 * a channel to the relay made for it; with --max-use 1 (a worker serves
 * one client) the child given a session's second message keeps the
 * worker's channel for the rest of the session, so this process is out
 * of the way of the messages that follow.  The relay joins it to the worker's
 * payload fields.  This process holds no key, has no network but its
 * channels, and no file system.
 *
 * A worker is assumed taken over: whatever it sends is the content of
 * a message, never a statement.  It can lie about the message only as
 * its client could, and about the client not at all.
 *
 * Nor can a session make us ask DNS without end: each message may ask
 * DNS_QUERIES_MAX questions and wait DNS_BUDGET_MS for them, and the
 * messages of one session (from one attestation to the next)
 * DNS_SESSION_QUERIES_MAX in all.  Each child says how many it asked
 * on a socket of its own; one that does not say spent its allowance.
 * Past it, a message's checks get no answer: temperror, never a pass.
 */

#include <sys/types.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <sodium.h>

#include "smtpd.h"

#define VERIFIER_CHAN_MAX	(2 * (MAX_MAX_SESSIONS + MAX_SPARE))
#define VERIFIER_LINK_MAX	16	/* relays: the current, draining */
#define VERIFIER_SESSION_MAX	10000	/* messages checked in one session */
#define VERIFIER_CHILD_CPU	60	/* seconds of CPU for one message */
#define VERIFIER_CHILD_USES	64	/* messages one child checks */

struct wchan {				/* a worker's channel */
	int			 fd;
	uint64_t		 wid;
	uint32_t		 relay;		/* where its results go */
	uint32_t		 seq;		/* its messages so far */
	pid_t			 child;		/* checking one now, or bound */
	int			 backoff;	/* no child to be had: wait */
	uint32_t		 checked;	/* messages of this session */
	int			 attested;
	struct sockaddr_storage	 peer;		/* the master's word */
	uint32_t		 session;	/* attestations so far */
	size_t			 dns_left;	/* the session's questions */
	size_t			 allowed;	/* of them, for the child */
	uint32_t		 child_session;
};

struct vchild {				/* a child that checks messages */
	pid_t			 pid;
	int			 ctl;		/* our end of its socket */
	int			 busy;		/* with worker wid's message */
	int			 bound;		/* with its session */
	uint32_t		 bind;		/* that binding's number */
	uint64_t		 wid;
	int			 uses;		/* messages (sessions) handed */
	struct timespec		 t0;		/* of the one it checks */
};

/*
 * Parent -> child: a message to check (with a descriptor), twice; bound,
 * every message of the session.  A record of VJOB_END alone: the
 * session is over, let the worker's channel go.
 */
struct vjob {
	uint64_t		 wid;
	uint32_t		 allowed;	/* the session's DNS questions */
	uint32_t		 bound;
	uint32_t		 checked;	/* the session's messages */
	uint32_t		 bind;		/* bound: this binding's, or
						   VJOB_END's */
	struct sockaddr_storage	 peer;		/* the master's word */
};
#define VJOB_END		0x656e64	/* "end" */

/* A check's outcome (verifier_check()), and a child's (vdone.status). */
#define VCHECK_OK		0	/* the relay has the result */
#define VCHECK_END		1	/* the worker's channel ends */
#define VCHECK_ALONE		2	/* OK, but the channel to the relay
					   serves no other message */

/* Child -> parent: how it went. */
struct vdone {
	int32_t			 status;	/* VCHECK_OK or VCHECK_END */
	uint32_t		 asked;		/* DNS questions it asked */
	uint32_t		 checked;	/* messages it checked */
	uint32_t		 pad;
};

struct vlink {				/* to a relay */
	int			 fd;
	uint32_t		 relay;
};

static struct smtpd_conf	 conf;
static struct wchan		*wchans;
static size_t			 nwchans;
static struct vlink		 links[VERIFIER_LINK_MAX];
static struct vchild		*vchildren;
static size_t			 nvchildren;
static size_t			 nlinks;
static uint32_t			 binds;		/* bindings so far */

static void	verifier_sig(int);
static long long verifier_ms_since(const struct timespec *);
static void	verifier_ctl(int);
static void	verifier_reap(void);
static void	verifier_start(struct wchan *);
static void	verifier_drop(size_t);
static struct vlink *verifier_link(uint32_t);
static int	verifier_check(struct wchan *, int, uint32_t *);
static void	verifier_asked(struct wchan *, size_t);
static void	verifier_done(struct vchild *);
static void	verifier_unbind(struct wchan *);
static struct wchan *verifier_wchan(uint64_t);
static struct vchild *verifier_child_get(void);
static __dead void verifier_child_main(int);
static int	verifier_child_next(int, int, uint32_t, int32_t *);
static int	verifier_envelope(const uint8_t *, size_t,
		    const struct chan_verify **, const char **,
		    const char **, const char **, size_t *, struct message *);
static int	verifier_result(int, const struct chan_auth *, const char *,
		    size_t);
static int	verifier_received(const char *, size_t);
static char	*verifier_fields(const struct auth *, const struct mime_msg *,
		    const struct chan_verify *, const char *, const char *,
		    const char *, const char **, size_t,
		    const struct sockaddr_storage *);
static void	verifier_idem(const char *, const char **, size_t,
		    const struct message *, char *, size_t);

static void
verifier_sig(int sig)
{
	/* SIGCHLD only ends the wait: children are reaped every turn */
	if (sig != SIGCHLD)
		smtpd_stop = 1;
}

static long long
verifier_ms_since(const struct timespec *t0)
{
	struct timespec	 now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - t0->tv_sec) * 1000LL +
	    (now.tv_nsec - t0->tv_nsec) / 1000000;
}

__dead void
verifier_main(int argc, char *argv[])
{
	static const int	 caught[] = { SIGTERM, SIGINT, SIGCHLD, 0 };
	static const int	 ignored[] = { SIGHUP, SIGUSR1, 0 };
	struct pollfd		*pfd;
	struct wchan		**who;
	struct timespec		 stop_at = { 0, 0 }, tick = { 1, 0 };
	sigset_t		 none;
	size_t			 i, n;

	conf_init(&conf, argc, argv);
	if (sodium_init() == -1)
		fatalx("verifier: libsodium initialisation failed");
	conf_user(&conf);
	log_init(conf.debug ? (conf.inetd ? STDERR_FILENO : STDOUT_FILENO) :
	    -1, conf.verbose);
	log_setproc("verifier");
	signals_set(verifier_sig, caught, ignored);
	sigemptyset(&none);
	json_object_seed(0);	/* reads /dev/urandom now, not sandboxed */
	auth_init();
	if ((wchans = calloc(VERIFIER_CHAN_MAX, sizeof(*wchans))) == NULL ||
	    (vchildren = calloc(VERIFIER_CHAN_MAX, sizeof(*vchildren))) ==
	    NULL ||
	    (pfd = calloc(2 * VERIFIER_CHAN_MAX + 1, sizeof(*pfd))) == NULL ||
	    (who = calloc(VERIFIER_CHAN_MAX + 1, sizeof(*who))) == NULL)
		fatal("verifier: channel table");
	(void)fcntl(VERIFIER_CTL_FD, F_SETFL, O_NONBLOCK);
	sandbox_verifier(&conf);

	for (;;) {
		/*
		 * Reaped every turn: SIGCHLD stays blocked while ppoll()
		 * returns with descriptors ready, so the flag may wait.
		 */
		verifier_reap();
		/* a check (a session) past every deadline it has ends */
		for (i = 0; i < nvchildren; i++)
			if (vchildren[i].busy &&
			    verifier_ms_since(&vchildren[i].t0) >
			    ((vchildren[i].bound ? conf.session_timeout +
			    conf.grace : 0) + conf.timeout +
			    conf.api_timeout) * 1000LL + RELAY_AUTH_WAIT_MS)
				kill(vchildren[i].pid, SIGKILL);
		/*
		 * Stopping: the workers finish their sessions (those in
		 * DATA within --grace), so their messages are still
		 * checked; it leaves when the last channel is closed and
		 * the last check done, or after --grace and the time a
		 * FIRM call may take.
		 */
		if (smtpd_stop && stop_at.tv_sec == 0) {
			clock_gettime(CLOCK_MONOTONIC, &stop_at);
			/* the channels handed over before, every one */
			verifier_ctl(VERIFIER_CTL_FD);
		}
		if (smtpd_stop && (nwchans == 0 ||
		    verifier_ms_since(&stop_at) > (conf.grace +
		    conf.api_timeout + 5) * 1000LL))
			_exit(0);
		pfd[0].fd = VERIFIER_CTL_FD;
		pfd[0].events = POLLIN;
		for (i = 0, n = 1; i < nwchans; i++) {
			if (wchans[i].child != 0 || wchans[i].fd == -1 ||
			    wchans[i].backoff) {
				wchans[i].backoff = 0;
				continue;	/* its child reads it */
			}
			pfd[n].fd = wchans[i].fd;
			pfd[n].events = POLLIN;
			who[n++] = &wchans[i];
		}
		/* after the channels: the children, in their order */
		for (i = 0; i < nvchildren; i++) {
			pfd[n + i].fd = vchildren[i].ctl;	/* -1: none */
			pfd[n + i].events = POLLIN;
		}
		if (ppoll(pfd, n + nvchildren, &tick, &none) == -1) {
			if (errno == EINTR)
				continue;
			fatal("verifier: ppoll");
		}
		/*
		 * The master's records first: it attests a session before
		 * it lets the worker serve it, so the address is here
		 * before any message of that session.
		 */
		if (pfd[0].revents != 0)
			verifier_ctl(VERIFIER_CTL_FD);
		/* results first, so that a child is free for what comes */
		for (i = nvchildren; i > 0; i--)
			if (pfd[n + i - 1].revents != 0)
				verifier_done(&vchildren[i - 1]);
		for (i = 1; i < n; i++)
			if (pfd[i].revents != 0)
				verifier_start(who[i]);
		for (i = nwchans; i > 0; i--)
			if (wchans[i - 1].fd == -1 && wchans[i - 1].child == 0)
				verifier_drop(i - 1);
	}
}

/* The master's records: channels, attestations, links. */
static void
verifier_ctl(int fd)
{
	union {
		uint32_t		 type;
		struct ctl_attest	 at;
		struct ctl_link		 ln;
	}		 m;
	struct wchan	*w;
	ssize_t		 n;
	size_t		 i;
	int		 cfd;

	for (;;) {
		if ((n = fd_recv_next(fd, &cfd, &m, sizeof(m))) == -1)
			return;
		if (n == 0)
			_exit(0);	/* the master is gone */
		if ((size_t)n < sizeof(m.type))
			fatalx("verifier: a short record from the master");
		if (m.type == CTL_ATTEST && n == sizeof(m.at)) {
			/*
			 * A worker's first session brings its channel; the
			 * worker has not been told to serve it yet.
			 */
			if (cfd != -1 && m.at.open &&
			    verifier_wchan(m.at.wid) == NULL) {
				if (nwchans == VERIFIER_CHAN_MAX) {
					log_warnx("verifier: no room for "
					    "another channel");
					close(cfd);
					continue;
				}
				w = &wchans[nwchans++];
				memset(w, 0, sizeof(*w));
				w->fd = cfd;
				w->wid = m.at.wid;
				w->relay = m.at.relay;
				(void)fcntl(cfd, F_SETFL, O_NONBLOCK);
				cfd = -1;
			}
			/* a session begins, or it is over */
			for (i = 0; i < nwchans; i++)
				if (wchans[i].wid == m.at.wid) {
					memcpy(&wchans[i].peer, &m.at.peer,
					    sizeof(wchans[i].peer));
					wchans[i].attested = m.at.open != 0;
					wchans[i].checked = 0;
					wchans[i].session++;
					wchans[i].dns_left =
					    DNS_SESSION_QUERIES_MAX;
					verifier_unbind(&wchans[i]);
				}
		} else if (m.type == CTL_LINK && n == sizeof(m.ln) &&
		    cfd != -1) {
			struct vlink *l = verifier_link(m.ln.relay);

			for (i = 0; l == NULL && i < nlinks; i++)
				if (links[i].fd == -1)
					l = &links[i];
			if (l == NULL && nlinks < VERIFIER_LINK_MAX) {
				l = &links[nlinks++];
				l->fd = -1;
			}
			/* full: the oldest relay's goes, long gone by now */
			if (l == NULL) {
				l = &links[0];
				for (i = 1; i < nlinks; i++)
					if (links[i].relay < l->relay)
						l = &links[i];
			}
			if (l->fd != -1)
				close(l->fd);
			l->fd = cfd;
			l->relay = m.ln.relay;
			cfd = -1;
		} else
			fatalx("verifier: a record from the master of type "
			    "%u and size %zd", (unsigned)m.type, n);
		if (cfd != -1)
			close(cfd);	/* a second one for a worker: not
					   the one its messages come on */
	}
}

static struct vlink *
verifier_link(uint32_t relay)
{
	size_t	 i;

	for (i = 0; i < nlinks; i++)
		if (links[i].relay == relay && links[i].fd != -1)
			return &links[i];
	return NULL;
}

/*
 * Children that left: one that was checking a message leaves that
 * message without a result (the relay says 451), its channel unread to
 * where it stopped: the channel ends, and the session's DNS allowance
 * of that message is spent.
 */
static void
verifier_reap(void)
{
	struct vchild	*c;
	struct wchan	*w;
	pid_t		 pid;
	int		 status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (c = vchildren; c < vchildren + nvchildren; c++)
			if (c->pid == pid)
				break;
		if (c == vchildren + nvchildren)
			continue;
		if (WIFSIGNALED(status))
			log_event(LOG_WARNING, "verifier_child_died", NULL,
			    "{s:i}", "signal", WTERMSIG(status));
		/* its last word, written before it left, first */
		if (c->busy && c->ctl != -1)
			verifier_done(c);
		if (c->busy && (w = verifier_wchan(c->wid)) != NULL) {
			verifier_asked(w, w->allowed);
			w->child = 0;
			close(w->fd);
			w->fd = -1;
		}
		if (c->ctl != -1)
			close(c->ctl);
		*c = vchildren[--nvchildren];
	}
}

/* What a check asked of DNS comes off its session's allowance. */
static void
verifier_asked(struct wchan *w, size_t asked)
{
	size_t	 spent = asked < w->allowed ? asked : w->allowed;

	if (w->child_session == w->session)
		w->dns_left -= spent < w->dns_left ? spent : w->dns_left;
}

/* A child says it is done with its message: status and questions. */
static void
verifier_done(struct vchild *c)
{
	struct vdone	 d;
	struct wchan	*w;
	ssize_t		 n;

	n = recv(c->ctl, &d, sizeof(d), MSG_DONTWAIT);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n != sizeof(d) || !c->busy) {
		/*
		 * It left (its uses are spent) or broke the rules: no
		 * more of it; reaped (as one that died, if it was busy).
		 */
		if (n != 0 || c->busy)
			kill(c->pid, SIGKILL);
		close(c->ctl);
		c->ctl = -1;
		c->uses = VERIFIER_CHILD_USES;
		return;
	}
	c->busy = 0;
	c->bound = 0;
	if ((w = verifier_wchan(c->wid)) == NULL)
		return;
	verifier_asked(w, d.asked);
	w->child = 0;
	/* the first was counted when it was handed over */
	if (d.checked > 1) {
		w->seq += d.checked - 1;
		w->checked += d.checked - 1;
	}
	/* the worker broke the channel's rules, or it is gone */
	if (d.status != VCHECK_OK) {
		close(w->fd);
		w->fd = -1;
	}
}

/*
 * Its session is over (or another begins): the child bound to it lets
 * the worker's channel go once it has checked what it is checking, and
 * says so; what comes after is handed over afresh.
 */
static void
verifier_unbind(struct wchan *w)
{
	struct vchild	*c;
	struct vjob	 end;

	for (c = vchildren; c < vchildren + nvchildren; c++)
		if (c->busy && c->bound && c->pid == w->child &&
		    c->ctl != -1)
			break;
	if (c == vchildren + nvchildren)
		return;
	memset(&end, 0, sizeof(end));
	end.wid = VJOB_END;
	end.bind = c->bind;	/* the child may be past it: then ignored */
	/* it reads its socket between messages: never full */
	if (send(c->ctl, &end, sizeof(end), MSG_DONTWAIT) != sizeof(end))
		kill(c->pid, SIGKILL);
}

static struct wchan *
verifier_wchan(uint64_t wid)
{
	size_t	 i;

	for (i = 0; i < nwchans; i++)
		if (wchans[i].wid == wid)
			return &wchans[i];
	return NULL;
}

/*
 * An idle child, or a new one.  A child serves VERIFIER_CHILD_USES
 * messages, one at a time, then leaves: no fork for each message, and
 * what a hostile message could do to its child reaches few others.
 */
static struct vchild *
verifier_child_get(void)
{
	struct vchild	*c;
	size_t		 i;
	int		 sp[2];
	pid_t		 pid;

	for (c = vchildren; c < vchildren + nvchildren; c++)
		if (!c->busy && c->uses < VERIFIER_CHILD_USES && c->ctl != -1)
			return c;
	if (nvchildren == VERIFIER_CHAN_MAX ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) == -1)
		return NULL;
	switch (pid = fork()) {
	case -1:
		log_warn("verifier: fork");
		close(sp[0]);
		close(sp[1]);
		return NULL;
	case 0:
		/* nothing of the others: their workers, the relays */
		for (i = 0; i < nwchans; i++)
			if (wchans[i].fd != -1)
				close(wchans[i].fd);
		for (i = 0; i < nlinks; i++)
			if (links[i].fd != -1)
				close(links[i].fd);
		for (i = 0; i < nvchildren; i++)
			close(vchildren[i].ctl);
		close(VERIFIER_CTL_FD);
		close(sp[0]);
		verifier_child_main(sp[1]);
	}
	close(sp[1]);
	c = &vchildren[nvchildren++];
	memset(c, 0, sizeof(*c));
	c->pid = pid;
	c->ctl = sp[0];
	(void)fcntl(c->ctl, F_SETFL, O_NONBLOCK);
	return c;
}

static void
verifier_drop(size_t i)
{
	wchans[i] = wchans[--nwchans];
}

/*
 * A worker's channel is readable: a message, or its end.  A child
 * takes the message, with a channel to the worker's relay made for it,
 * which the relay learns with the worker's id and the message's number;
 * bound (--max-use 1), the child keeps both for the session's next
 * messages, numbered on from there.
 */
static void
verifier_start(struct wchan *w)
{
	struct link_msg	 lm;
	struct vjob	 job;
	struct vchild	*c;
	struct vlink	*l;
	uint8_t		 b;
	ssize_t		 n;
	int		 sp[2];

	n = recv(w->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0 || (l = verifier_link(w->relay)) == NULL) {
		/* the worker is gone, or its relay: nobody to answer */
		close(w->fd);
		w->fd = -1;
		return;
	}
	/*
	 * A message outside a session the master knows of, or one too
	 * many in a session: the worker is not serving a client, it is
	 * serving itself.  Its channel ends.
	 */
	if (!w->attested || w->checked >= VERIFIER_SESSION_MAX) {
		log_event(LOG_WARNING, "verifier_refused", NULL, "{s:s}",
		    "error", !w->attested ? "a message outside a session" :
		    "too many messages in one session");
		close(w->fd);
		w->fd = -1;
		return;
	}
	if ((c = verifier_child_get()) == NULL) {
		/* none to be had now: tried again in a second */
		w->backoff = 1;
		return;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == -1) {
		log_warn("verifier: socketpair");
		w->backoff = 1;
		return;
	}
	memset(&lm, 0, sizeof(lm));
	lm.wid = w->wid;
	lm.seq = w->seq + 1;
	/*
	 * Bound from a session's second message on: a session that sends
	 * one (the MX's usual) costs no wake-up more than before.
	 */
	lm.bound = conf.max_use == 1 && w->checked > 0;
	/* a busy relay makes us wait here, never spin */
	if (fd_send_rec(l->fd, sp[1], &lm, sizeof(lm), 0) == -1) {
		log_warn("verifier: link to relay %u", (unsigned)w->relay);
		close(l->fd);
		l->fd = -1;
		close(sp[0]);
		close(sp[1]);
		return;
	}
	close(sp[1]);
	w->seq++;
	w->checked++;
	/* bound, the child may spend the session's questions */
	w->allowed = w->dns_left < DNS_QUERIES_MAX || lm.bound ? w->dns_left :
	    DNS_QUERIES_MAX;
	w->child_session = w->session;
	memset(&job, 0, sizeof(job));
	job.wid = w->wid;
	job.allowed = (uint32_t)w->allowed;
	job.bound = lm.bound;
	job.checked = w->checked - 1;
	if (lm.bound && ++binds == 0)
		binds = 1;
	job.bind = lm.bound ? binds : 0;
	memcpy(&job.peer, &w->peer, sizeof(job.peer));
	/* the worker's channel, then the message's own to the relay */
	if (fd_send_rec(c->ctl, w->fd, &job, sizeof(job), 0) == -1 ||
	    fd_send_rec(c->ctl, sp[0], &job, sizeof(job), 0) == -1) {
		/*
		 * The relay sees the message's channel close: no result,
		 * 451.  The message is unread and its number spent: the
		 * channel ends, so that no later message pairs with
		 * another's payload.
		 */
		log_warn("verifier: handing a child its message");
		kill(c->pid, SIGKILL);
		close(sp[0]);
		close(w->fd);
		w->fd = -1;
		return;
	}
	close(sp[0]);
	c->busy = 1;
	c->bound = (int)lm.bound;
	c->bind = job.bind;
	c->uses++;
	c->wid = w->wid;
	clock_gettime(CLOCK_MONOTONIC, &c->t0);
	w->child = c->pid;
}

/*
 * A child: confined further first (no process, no socket of its own,
 * no signal, bounded CPU), then one message after another as the
 * parent hands them over, each with the worker's channel and one of
 * its own to the relay; bound, every message of that session on them,
 * until the worker's channel ends or the parent says the session did.
 * A record back says how each went.
 */
static __dead void
verifier_child_main(int ctl)
{
	struct vjob	 job;
	struct vdone	 d;
	struct rlimit	 rl;
	struct wchan	 w;
	ssize_t		 n;
	uint32_t	 asked;
	int		 wfd, rfd, uses;

	rl.rlim_cur = rl.rlim_max = 0;
	if (setrlimit(RLIMIT_NPROC, &rl) == -1)
		_exit(1);
	rl.rlim_cur = rl.rlim_max = VERIFIER_CHILD_CPU * VERIFIER_CHILD_USES;
	if (setrlimit(RLIMIT_CPU, &rl) == -1)
		_exit(1);
	sandbox_verifier_child();
	for (uses = 0; uses < VERIFIER_CHILD_USES; uses++) {
		/* blocking: the parent is there, or it is gone; an end
		 * it sent as an earlier binding ended anyway is no job */
		do {
			n = fd_recv_rec(ctl, &wfd, &job, sizeof(job),
			    MSG_TRUNC);
			if (n <= 0)
				_exit(0);
		} while (n == sizeof(job) && wfd == -1 &&
		    job.wid == VJOB_END);
		if (n != sizeof(job) || wfd == -1 ||
		    fd_recv_rec(ctl, &rfd, &job, sizeof(job), MSG_TRUNC) !=
		    sizeof(job) || rfd == -1)
			_exit(1);
		memset(&w, 0, sizeof(w));
		w.fd = wfd;
		w.wid = job.wid;
		w.dns_left = job.allowed;
		w.checked = job.checked;
		w.attested = 1;
		memcpy(&w.peer, &job.peer, sizeof(w.peer));
		memset(&d, 0, sizeof(d));
		for (;;) {
			if (w.checked >= VERIFIER_SESSION_MAX) {
				log_event(LOG_WARNING, "verifier_refused",
				    NULL, "{s:s}", "error",
				    "too many messages in one session");
				d.status = VCHECK_END;
				break;
			}
			w.allowed = w.dns_left < DNS_QUERIES_MAX ?
			    w.dns_left : DNS_QUERIES_MAX;
			d.status = verifier_check(&w, rfd, &asked);
			asked = asked < w.allowed ? asked : (uint32_t)w.allowed;
			w.dns_left -= asked;
			d.asked += asked;
			d.checked++;
			w.checked++;
			if (d.status == VCHECK_ALONE) {
				/* done, but its channel to the relay is not
				 * fit for another: the next goes afresh */
				d.status = VCHECK_OK;
				break;
			}
			if (d.status != VCHECK_OK || !job.bound ||
			    verifier_child_next(ctl, wfd, job.bind,
			    &d.status) == -1)
				break;
		}
		close(wfd);
		close(rfd);
		if (write(ctl, &d, sizeof(d)) != sizeof(d))
			_exit(1);
	}
	_exit(0);
}

/*
 * Bound: wait for the session's next message.  0 when one is there;
 * -1 when the session is over: the parent said so of this binding
 * (what it says comes first), or the worker's channel ended (*status
 * 1).
 */
static int
verifier_child_next(int ctl, int wfd, uint32_t bind, int32_t *status)
{
	struct pollfd	 pfd[2];
	struct vjob	 end;
	uint8_t		 b;
	ssize_t		 n;

	pfd[0].fd = ctl;
	pfd[0].events = POLLIN;
	pfd[1].fd = wfd;
	pfd[1].events = POLLIN;
	for (;;) {
		/* the parent kills a session that overstays */
		if (poll(pfd, 2, -1) == -1) {
			if (errno == EINTR)
				continue;
			_exit(1);
		}
		if (pfd[0].revents != 0) {
			n = recv(ctl, &end, sizeof(end), 0);
			if (n != sizeof(end) || end.wid != VJOB_END)
				_exit(n == 0 ? 0 : 1);
			if (end.bind == bind)
				return -1;
			continue;	/* of a binding before this one */
		}
		n = recv(wfd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
		if (n == 1)
			return 0;
		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			continue;
		*status = VCHECK_END;	/* the worker is gone */
		return -1;
	}
}

/*
 * In a child: one message, read from the worker's channel, its result
 * written to the relay on rfd.  It asks at most w->allowed questions
 * and says in *asked how many it did.  VCHECK_OK once the relay has the
 * result; VCHECK_END when the worker broke the channel's rules or the
 * relay is gone; VCHECK_ALONE when the relay has the result but a DNS
 * question failed on the way, which may have left the channel to the
 * relay inside a record: no other message may use it.
 */
static int
verifier_check(struct wchan *w, int rfd, uint32_t *asked)
{
	const struct chan_verify *cv;
	struct chan_auth	 ca;
	struct message		 msg;
	struct mime_msg		 mm;
	struct auth		 au;
	const char		*from, *helo, *rcpts[MAX_MAX_RCPT], *field;
	char			*fields = NULL, token[TOKEN_LEN + 1];
	uint8_t			*body = NULL;
	size_t			 nrcpts, maxbody;
	ssize_t			 len;
	int			 e, in_subject, wfd = w->fd;
	int			 r = VCHECK_OK;

	*asked = 0;
	(void)fcntl(rfd, F_SETFL, O_NONBLOCK);
	(void)fcntl(wfd, F_SETFL, O_NONBLOCK);

	maxbody = sizeof(*cv) + (size_t)conf.max_size + RECEIVED_MAX +
	    (MAX_MAX_RCPT + 2) * (SMTP_PATH_MAX + 2);
	len = chan_read(wfd, CHAN_VERIFY, maxbody, &body,
	    conf.timeout * 1000LL);
	if (len == -1 || verifier_envelope(body, (size_t)len, &cv, &from,
	    &helo, rcpts, &nrcpts, &msg) == -1) {
		log_event(LOG_WARNING, "verifier_refused", NULL, "{s:s}",
		    "error", "a worker broke the channel's rules");
		free(body);
		return VCHECK_END;
	}
	memset(&ca, 0, sizeof(ca));
	memset(&au, 0, sizeof(au));
	ca.reply = -1;
	token[0] = '\0';
	if (!w->attested) {
		/* no session the master knows of: nothing to believe */
		ca.reply = REPLY_LOCALERR;
		goto done;
	}
	/*
	 * A MIME limit only cuts the walk short: what was read is kept.
	 * The data as the client sent it is parsed, without our Received
	 * field, which must not count toward the field limit.
	 */
	if (mime_parse(msg.buf + msg.hdrlen, msg.len - msg.hdrlen, &mm) !=
	    MIME_OK) {
		ca.reply = REPLY_LOCALERR;
		goto done;
	}
	if (mm.truncated)
		log_event(LOG_INFO, "mime_truncated", cv->session,
		    "{s:s, s:s}", "id", cv->msgid, "limit",
		    mime_strerror(mm.truncated));
	in_subject = mm.subject != NULL &&
	    payload_token_find(mm.subject, strlen(mm.subject), token);
	if (!in_subject && !payload_token_find(mm.body, mm.bodylen, token))
		ca.reply = REPLY_NOTOKEN;
	else if ((e = auth_once(&msg, &field)) != -1) {
		ca.reply = e;
		strlcpy(ca.text, field, sizeof(ca.text));
	} else if ((e = auth_from(&au, &msg)) != -1)
		ca.reply = e;
	else {
		auth_spf(&au, &conf, rfd, w->allowed, &w->peer, from, helo);
		if ((e = auth_message(&au, &conf, &msg, &mm, from, token,
		    in_subject)) != -1)
			ca.reply = e;
		*asked = (uint32_t)(w->allowed - au.dc.left_q);
		ca.verdict = au.verdict;
		ca.dns_queries = (uint32_t)au.dns.queries;
		ca.size = au.rawlen;
		strlcpy(ca.spf, spf_result_name(au.spf), sizeof(ca.spf));
		strlcpy(ca.dkim, auth_dkim_result(&au), sizeof(ca.dkim));
		strlcpy(ca.dmarc, dmarc_result_name(au.dmarc.result),
		    sizeof(ca.dmarc));
		if (ca.reply == -1 && (fields = verifier_fields(&au, &mm, cv,
		    token, from, helo, rcpts, nrcpts, &w->peer)) == NULL)
			ca.reply = REPLY_LOCALERR;
	}
	mime_free(&mm);
	strlcpy(ca.token, token, sizeof(ca.token));
	verifier_idem(from, rcpts, nrcpts, &msg, ca.idem, sizeof(ca.idem));
 done:
	if (verifier_result(rfd, &ca, fields, fields != NULL ?
	    strlen(fields) : 0) == -1)
		r = VCHECK_END;
	else if (au.dc.broken)
		r = VCHECK_ALONE;
	free(fields);
	free(body);
	auth_reset(&au);
	return r;
}

/*
 * The message's record, taken apart and checked: the envelope's strings
 * within their bounds, the Received field within its room.  0, or -1.
 */
static int
verifier_envelope(const uint8_t *body, size_t len,
    const struct chan_verify **cvp, const char **from, const char **helo,
    const char **rcpts, size_t *nrcpts, struct message *msg)
{
	const struct chan_verify *cv = (const void *)body;
	const char		*p, *end = (const char *)body + len, *nul;
	const char		**out[2] = { from, helo };
	size_t			 i, max;

	if (len < sizeof(*cv) || cv->nrcpts == 0 ||
	    cv->nrcpts > MAX_MAX_RCPT || cv->hdrlen > RECEIVED_MAX ||
	    memchr(cv->session, '\0', sizeof(cv->session)) == NULL ||
	    memchr(cv->msgid, '\0', sizeof(cv->msgid)) == NULL ||
	    memchr(cv->tls, '\0', sizeof(cv->tls)) == NULL)
		return -1;
	/* a protocol's name: "TLSv1.3" */
	for (p = cv->tls; *p != '\0'; p++)
		if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-' &&
		    *p != '_')
			return -1;
	p = (const char *)body + sizeof(*cv);
	for (i = 0; i < 2 + cv->nrcpts; i++) {
		max = i == 1 ? SMTP_HELO_MAX : SMTP_PATH_MAX;
		if ((nul = memchr(p, '\0', (size_t)(end - p))) == NULL ||
		    (size_t)(nul - p) > max)
			return -1;
		if (i < 2)
			*out[i] = p;
		else
			rcpts[i - 2] = p;
		p = nul + 1;
	}
	if ((*helo)[0] == '\0' || (size_t)(end - p) < cv->hdrlen ||
	    verifier_received(p, cv->hdrlen) == -1)
		return -1;
	memset(msg, 0, sizeof(*msg));
	strlcpy(msg->id, cv->msgid, sizeof(msg->id));
	msg->buf = (char *)(uintptr_t)p;
	msg->len = (size_t)(end - p);
	msg->hdrlen = cv->hdrlen;
	*nrcpts = cv->nrcpts;
	*cvp = cv;
	return 0;
}

/*
 * What the worker put above the data is one Received field and nothing
 * else: no field of ours (an Authentication-Results with our authserv-id)
 * rides into "raw" there.  Its words are the worker's, as the rest of the
 * message is the client's.  0, or -1.
 */
static int
verifier_received(const char *p, size_t len)
{
	static const char	 name[] = "Received: ";
	size_t			 i;

	if (len < sizeof(name) + 1 || memcmp(p, name, sizeof(name) - 1) != 0 ||
	    p[len - 2] != '\r' || p[len - 1] != '\n')
		return -1;
	for (i = 0; i < len - 2; i++) {
		if (((unsigned char)p[i] < ' ' && p[i] != '\t' &&
		    p[i] != '\r' && p[i] != '\n') || p[i] == 0x7f ||
		    (p[i] == '\n' && (i == 0 ||
		    p[i - 1] != '\r')) || (p[i] == '\r' && p[i + 1] != '\n'))
			return -1;
		/* a line that follows is a continuation, never a field */
		if (p[i] == '\n' && p[i + 1] != ' ' && p[i + 1] != '\t')
			return -1;
	}
	return 0;
}

/*
 * The payload, as JSON members without the braces: every field is this
 * process's (decoded from the message, judged here) or the master's
 * (client_ip); tls is the worker's word, a protocol's name at most.
 */
static char *
verifier_fields(const struct auth *au, const struct mime_msg *mm,
    const struct chan_verify *cv, const char *token, const char *from,
    const char *helo, const char **rcpts, size_t nrcpts,
    const struct sockaddr_storage *peer)
{
	static const char	 rawname[] = ",\"raw\":\"";
	json_t			*o, *r, *hdrs;
	char			*s, *out, when[32];
	size_t			 i, b64len, len;
	struct tm		 tm;
	time_t			 now = time(NULL);
	char			 ip[INET6_ADDRSTRLEN];

	addr_str(peer, ip, sizeof(ip));
	gmtime_r(&now, &tm);
	if (strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		when[0] = '\0';
	r = json_array();
	hdrs = json_object();
	if (r == NULL || hdrs == NULL)
		goto fail;
	for (i = 0; i < nrcpts; i++)
		if (json_array_append_new(r, json_string(rcpts[i])) == -1)
			goto fail;		/* never drop a recipient */
	/*
	 * The first of each name, as the message has it.  mime.c's text
	 * (values, body) is valid UTF-8 already, and json_dumps() checks
	 * each string again as it writes it: no check when it is made.
	 */
	for (i = 0; i < mm->nhdrs; i++)
		if (json_object_get(hdrs, mm->hdrs[i].name) == NULL &&
		    json_object_set_new(hdrs, mm->hdrs[i].name,
		    json_string_nocheck(mm->hdrs[i].value)) == -1)
			goto fail;
	o = json_pack("{s:s, s:s, s:o, s:s, s:s, s:s, s:o, s:s, s:s, s:I,"
	    " s:s, s:o, s:o, s:s?, s:s?, s:s}",
	    "email", from,
	    "from", au->from,
	    "recipients", r,
	    "token", token,
	    "spf_result", spf_result_name(au->spf),
	    "dkim_result", auth_dkim_result(au),
	    "auth", auth_json(au, &conf),
	    "client_ip", ip,
	    "helo", helo,
	    "size", (json_int_t)au->rawlen,
	    "subject", mm->subject != NULL ? mm->subject : "",
	    "body", json_string_nocheck(mm->body),
	    "headers", hdrs,
	    "tls", cv->tls[0] != '\0' ? cv->tls : NULL,
	    "message_id", mime_header_get(mm, "message-id"),
	    "received_at", when);
	/* json_pack() took r and hdrs, whatever it returned */
	if (o == NULL)
		return NULL;
	s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (s == NULL || (len = strlen(s)) < 2 || s[0] != '{' ||
	    s[len - 1] != '}') {
		free(s);
		return NULL;
	}
	/*
	 * raw last, written here: base64 needs no JSON escape, and
	 * jansson would look at each of its octets twice more.  libcrypto's
	 * encoder, a table: libsodium's is made to take the same time
	 * whatever the data (for secrets), several times slower, and
	 * nothing here is secret from the message's own sender.
	 */
	if (au->rawlen > (size_t)INT_MAX / 4 * 3 - 3) {
		free(s);
		return NULL;
	}
	b64len = (au->rawlen + 2) / 3 * 4 + 1;		/* with the NUL */
	if ((out = malloc(len - 2 + sizeof(rawname) - 1 + b64len + 1)) ==
	    NULL) {
		free(s);
		return NULL;
	}
	memcpy(out, s + 1, len - 2);
	free(s);
	len -= 2;
	memcpy(out + len, rawname, sizeof(rawname) - 1);
	len += sizeof(rawname) - 1;
	len += (size_t)EVP_EncodeBlock((unsigned char *)out + len,
	    (const unsigned char *)au->raw, (int)au->rawlen);
	out[len++] = '"';
	out[len] = '\0';
	return out;
 fail:
	json_decref(r);
	json_decref(hdrs);
	return NULL;
}

/*
 * A key unique to the message, the same when the sender retries it:
 * BLAKE2b of the envelope and the data as received (our Received:
 * header, which differs on each try, left out).
 */
static void
verifier_idem(const char *from, const char **rcpts, size_t nrcpts,
    const struct message *msg, char *out, size_t outlen)
{
	crypto_generichash_state	 st;
	unsigned char			 h[16];
	size_t				 i;

	crypto_generichash_init(&st, NULL, 0, sizeof(h));
	crypto_generichash_update(&st, (const unsigned char *)from,
	    strlen(from) + 1);
	for (i = 0; i < nrcpts; i++)
		crypto_generichash_update(&st,
		    (const unsigned char *)rcpts[i], strlen(rcpts[i]) + 1);
	crypto_generichash_update(&st,
	    (const unsigned char *)msg->buf + msg->hdrlen,
	    msg->len - msg->hdrlen);
	crypto_generichash_final(&st, h, sizeof(h));
	sodium_bin2hex(out, outlen, h, sizeof(h));
}

/* The result to the relay: 0 once written, or -1. */
static int
verifier_result(int fd, const struct chan_auth *ca, const char *fields,
    size_t len)
{
	struct iovec	 iov[3];

	iov[1].iov_base = (void *)(uintptr_t)ca;
	iov[1].iov_len = sizeof(*ca);
	iov[2].iov_base = (void *)(uintptr_t)(fields != NULL ? fields : "");
	iov[2].iov_len = len;
	return chan_send(fd, CHAN_AUTH, iov, 3, 10000);
}
