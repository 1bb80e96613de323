/*
 * A worker: preforked by the master, sandboxed before it sees a byte,
 * it accepts a connection and serves one SMTP session, up to --max-use
 * sessions one after another, each from a clean state, then exits.  It
 * asks the master whether a session may start (the limits are counted
 * there) and hands messages to the relay over its channel; it holds no
 * API key, no TLS private key and no socket but its client's.
 */

#include <sys/types.h>
#include <sys/socket.h>

#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include <tls.h>

#include "smtpd.h"

static volatile sig_atomic_t worker_retire;

static int	worker_accept(const struct smtpd_conf *, int, int,
		    struct session_ctx *);
static int	worker_listener_smtps(const struct smtpd_conf *, int);
static int	worker_proxy(const struct smtpd_conf *, struct session_ctx *);
static int	worker_claim(int, int, const struct sockaddr_storage *,
		    int *, int *);
static void	worker_drain(const struct smtpd_conf *);
static int	worker_tls_sign(void *, const struct tls_sign_req *,
		    struct tls_sign_res *);
static void	worker_signals(void);
static void	worker_sig(int);

static void
worker_sig(int sig)
{
	if (sig == SIGUSR1)
		worker_retire = 1;
	else
		smtpd_stop = 1;
}

/* SIGTERM: finish or say 421; SIGUSR1 (an old generation): leave idle. */
static void
worker_signals(void)
{
	static const int	 caught[] = { SIGTERM, SIGINT, SIGUSR1, 0 };
	static const int	 ignored[] = { SIGHUP, 0 };

	signals_set(worker_sig, caught, ignored);
	smtpd_reload = 0;
}

__dead void
worker_main(struct smtpd_conf *conf, int ctl, int chan, int vchan, int inetd)
{
	struct session_ctx	 ctx;
	uint32_t		 release = CTL_RELEASE;
	long long		 n;
	size_t			 i;
	int			 fd, last;

	log_setproc("worker");
	worker_signals();
#ifdef SMTPD_TEST_HOOKS
	testhook_worker_start();
#endif
	sandbox_worker(conf);
	/* wipes what fork left of the master's key; it signs for us */
	server_tls_set_signer(worker_tls_sign, &ctl);
	(void)fcntl(chan, F_SETFL, O_NONBLOCK);
	(void)fcntl(vchan, F_SETFL, O_NONBLOCK);

	for (n = 0; n < conf->max_use; n++) {
		last = inetd || n + 1 == conf->max_use;
		memset(&ctx, 0, sizeof(ctx));
		ctx.conf = conf;
		ctx.reject = -1;
		ctx.spool_full = -1;
		ctx.chan = chan;
		ctx.vchan = vchan;
		ctx.ctl = ctl;
		if (inetd) {
			ctx.fd_in = STDIN_FILENO;
			ctx.fd_out = STDOUT_FILENO;
			ctx.peerlen = sizeof(ctx.peer);
			if (getpeername(STDIN_FILENO,
			    (struct sockaddr *)&ctx.peer, &ctx.peerlen) == -1)
				ctx.peer.ss_family = AF_UNSPEC;
			for (fd = STDIN_FILENO; fd <= STDOUT_FILENO; fd++)
				(void)fcntl(fd, F_SETFL,
				    fcntl(fd, F_GETFL) | O_NONBLOCK);
		} else if (worker_accept(conf, ctl, chan, &ctx) == -1)
			break;
		if (last) {
			/* the last session: the listeners are no use now */
			for (i = 0; i < conf->nlisteners; i++)
				if (conf->listeners[i].fd != -1) {
					close(conf->listeners[i].fd);
					conf->listeners[i].fd = -1;
				}
		}
		sandbox_worker_narrow(conf);
		if (worker_proxy(conf, &ctx) == -1) {
			/* no session: nothing claimed, nothing to release */
			if (last || smtpd_stop || worker_retire)
				break;
			continue;
		}
		if ((ctx.reject = worker_claim(ctl, ctx.fd_in,
		    &ctx.peer, &ctx.stress, &ctx.spool_full)) == -2)
			break;		/* the master is gone */
		ctx.banned = banlist_lookup_addr(conf->banlist, &ctx.peer);
		session_run(&ctx);	/* closes the connection */
		if (last || smtpd_stop || worker_retire)
			break;
		/* the next session sees nothing of this one */
		session_scrub();
		if (send(ctl, &release, sizeof(release), MSG_NOSIGNAL) == -1)
			break;
	}
	_exit(0);
}

static int
worker_listener_smtps(const struct smtpd_conf *conf, int fd)
{
	size_t	 i;

	for (i = 0; i < conf->nlisteners; i++)
		if (conf->listeners[i].fd == fd)
			return conf->listeners[i].smtps;
	return 0;
}

/*
 * Wait on every listener; -1 when told to leave instead, when the
 * master is gone, or (with --api) when the relay is: a worker whose
 * channel is dead could only answer 451, so it makes room for one born
 * with a channel to the new relay.
 */
static int
worker_accept(const struct smtpd_conf *conf, int ctl, int chan,
    struct session_ctx *ctx)
{
	struct pollfd	 pfd[MAX_LISTENERS + 2];
	sigset_t	 waitmask;
	size_t		 i, n = 0;
	int		 fd;

	sigprocmask(SIG_BLOCK, NULL, &waitmask);
	sigdelset(&waitmask, SIGTERM);
	sigdelset(&waitmask, SIGINT);
	sigdelset(&waitmask, SIGUSR1);
	for (i = 0; i < conf->nlisteners; i++) {
		if (conf->listeners[i].fd == -1)
			continue;
		pfd[n].fd = conf->listeners[i].fd;
		pfd[n].events = POLLIN;
		n++;
	}
	pfd[n].fd = ctl;	/* hangs up when the master dies */
	pfd[n].events = POLLIN;
	pfd[n + 1].fd = conf->api != NULL ? chan : -1;
	pfd[n + 1].events = 0;	/* POLLHUP only */
	for (;;) {
		if (smtpd_stop)
			worker_drain(conf);
		if (smtpd_stop || worker_retire)
			return -1;
		if (ppoll(pfd, n + 2, NULL, &waitmask) == -1) {
			if (errno == EINTR)
				continue;
			fatal("ppoll");
		}
		if (pfd[n].revents != 0 || pfd[n + 1].revents != 0)
			return -1;
		for (i = 0; i < n; i++) {
			if ((pfd[i].revents & POLLIN) == 0)
				continue;
			ctx->peerlen = sizeof(ctx->peer);
			fd = accept4(pfd[i].fd, (struct sockaddr *)&ctx->peer,
			    &ctx->peerlen, SOCK_NONBLOCK | SOCK_CLOEXEC);
			if (fd == -1) {
				if (errno != EAGAIN && errno != EINTR &&
				    errno != ECONNABORTED)
					log_warn("accept");
				continue;
			}
			ctx->fd_in = ctx->fd_out = fd;
			ctx->smtps = worker_listener_smtps(conf, pfd[i].fd);
			return 0;
		}
	}
}

/*
 * A peer inside --proxy-from opens with a PROXY header (SPEC section
 * 8), read before the claim and the ban-list lookup so that the client
 * it names is the one counted and looked up.  Until then the master
 * counts this worker idle: the wait is bounded by --timeout.  A peer
 * that sends no valid header is closed without a word; -1.
 */
static int
worker_proxy(const struct smtpd_conf *conf, struct session_ctx *ctx)
{
	struct sockaddr_storage	 peer;
	char			 addr[INET6_ADDRSTRLEN];
	const char		*why;

	ctx->via.ss_family = AF_UNSPEC;
	if (!proxy_trusted(conf, &ctx->peer))
		return 0;
	memcpy(&peer, &ctx->peer, sizeof(peer));
	switch (proxy_read(ctx->fd_in, conf->timeout * 1000, &ctx->peer,
	    &why)) {
	case 1:		/* the client the header names */
		memcpy(&ctx->via, &peer, sizeof(ctx->via));
		return 0;
	case 0:		/* LOCAL or UNKNOWN: the peer itself */
		return 0;
	}
	addr_str(&peer, addr, sizeof(addr));
	log_event(LOG_WARNING, "proxy_error", NULL, "{s:s, s:s}",
	    "proxy_ip", addr, "reason", why);
	close(ctx->fd_in);
	if (ctx->fd_out != ctx->fd_in)
		close(ctx->fd_out);
	return -1;
}

/*
 * Stopping: connections the kernel has queued but no worker took
 * would be closed without a word when the last listener closes.  An
 * idle worker answers each 421 4.3.2 instead, so the sender knows to
 * try again (behind a load balancer: the other instance).
 */
static void
worker_drain(const struct smtpd_conf *conf)
{
	char			 bye[SMTP_REPLY_MAX];
	size_t			 i, n;
	int			 fd, len;

	if ((len = reply_line(REPLY_SHUTDOWN, 0, NULL, bye, sizeof(bye))) == -1)
		return;

	for (i = 0; i < conf->nlisteners; i++) {
		if (conf->listeners[i].fd == -1 || conf->listeners[i].smtps)
			continue;
		for (n = 0; n < WORKER_DRAIN_MAX; n++) {
			fd = accept4(conf->listeners[i].fd, NULL, NULL,
			    SOCK_NONBLOCK | SOCK_CLOEXEC);
			if (fd == -1)
				break;
			/* one try: a client gone meanwhile needs nothing */
			if (write(fd, bye, (size_t)len) == -1)
				log_debug("drain: %s", strerror(errno));
			close(fd);
		}
	}
}

/*
 * Ask the master whether this session may start: -1 yes, else the
 * reply that refuses it (421), or -2 when the master is gone; stress
 * is 1 when the session is to get the stress timeouts, spool_full 1
 * when the spool was under its reserve as the master answered.  The claim
 * carries the connection itself, from which the master learns the
 * client; behind --proxy-from, peer is the PROXY header's client.
 */
static int
worker_claim(int ctl, int fd, const struct sockaddr_storage *peer,
    int *stress, int *spool_full)
{
	struct ctl_claim	 c;
	struct ctl_answer	 a;
	ssize_t			 n;

	memset(&c, 0, sizeof(c));
	c.type = CTL_CLAIM;
	addr_pack(peer, &c);
	if (fd_send_rec(ctl, fd, &c, sizeof(c), 0) == -1)
		return -2;
	do {
		n = recv(ctl, &a, sizeof(a), 0);
	} while (n == -1 && errno == EINTR);
	if (n != sizeof(a) || a.type != CTL_CLAIM)
		return -2;
	if (a.reply != -1 && a.reply != REPLY_MAXSESSIONS &&
	    a.reply != REPLY_MAXPERIP && a.reply != REPLY_CONNRATE)
		return -2;
	*stress = a.stress != 0;
	*spool_full = a.spool_full != 0;
	return a.reply;
}

/*
 * libtls asks for a private-key operation during a handshake: the
 * master holds the key and answers on the control socket.
 */
static int
worker_tls_sign(void *arg, const struct tls_sign_req *req,
    struct tls_sign_res *res)
{
	struct ctl_sign	 m;
	int		 ctl = *(int *)arg;
	ssize_t		 n;

	memset(&m, 0, sizeof(m));
	m.type = CTL_TLS_SIGN;
	m.req = *req;
	if (send(ctl, &m, sizeof(m), MSG_NOSIGNAL) != sizeof(m))
		return -1;
	do {
		n = recv(ctl, res, sizeof(*res), 0);
	} while (n == -1 && errno == EINTR);
	if (n != sizeof(*res) || res->status != 0 ||
	    res->len > sizeof(res->out))
		return -1;
	return 0;
}

/*
 * At MAIL: may this session start a message (--max-msg-rate)?  -1 yes,
 * else the reply that refuses it; REPLY_LOCALERR when the master does
 * not answer as it must.
 */
int
worker_mail(int ctl)
{
	struct ctl_answer	 a;
	uint32_t		 type = CTL_MAIL;
	ssize_t			 n;

	if (send(ctl, &type, sizeof(type), MSG_NOSIGNAL) != sizeof(type))
		return REPLY_LOCALERR;
	do {
		n = recv(ctl, &a, sizeof(a), 0);
	} while (n == -1 && errno == EINTR);
	if (n != sizeof(a) || a.type != CTL_MAIL ||
	    (a.reply != -1 && a.reply != REPLY_MSGRATE))
		return REPLY_LOCALERR;
	return a.reply;
}
