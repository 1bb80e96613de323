/*
 * smtpd-relay: the programs that talk to FIRM, kept out of the image
 * every worker forks from (no worker maps libcurl).  The master starts
 * it with its own flags and a role:
 *
 *	relay	the one process that talks to FIRM and to DNS for the
 *		workers: holds the API key, keeps connections to the API
 *		alive (HTTP/2 where offered), signs and POSTs each payload
 *		a worker hands it over its channel, and returns FIRM's
 *		verdict; answers the workers' DNS questions with
 *		libunbound, one cache for all of them (dns.c);
 *	fetcher	polls the ban lists (fetcher.c);
 *	check	checks the API flags and exits 0, or 1 naming the flag;
 *	online	smtpd -n --online: asks each resolver one question and
 *		makes one signed call to FIRM (probe.c), naming each
 *		failure.
 *
 * The relay's descriptor 3 is a control socket on which the master
 * hands it one end of each worker's channel.  Everything a worker sends
 * is hostile: chan_decode() bounds and checks it before anything else
 * looks at it, and a channel that breaks the rules is closed.  Many
 * transfers run at once on libcurl's multi interface; --api-timeout
 * bounds each one from the moment its payload has arrived.
 *
 * This program redefines connect(), sendto() and sendmsg(): see
 * relay_guard.c, which keeps libcurl and libunbound to the API and the
 * resolvers (a check on the libraries, not on an attacker).
 */

#include <sys/types.h>
#ifdef __linux__
#include <sys/epoll.h>
#endif
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>
#include <unbound.h>

#include "smtpd.h"
#include "relay.h"

#define RELAY_CHAN_MAX		(3 * (MAX_MAX_SESSIONS + MAX_SPARE))
#define RELAY_LINK_WAIT_MS	5000	/* for the verifier to begin */
#define RELAY_BUFFERED_MAX	(1024UL * 1024 * 1024)	/* all channels */
#define RELAY_CHAN_KEEP		(64 * 1024)	/* kept after a message */
#define RELAY_DNS_PER_CHAN	16	/* questions in flight, one worker */

struct chan;
struct dnsq {				/* a question libunbound works on */
	struct chan		*c;
	uint32_t		 reqid;
	int			 type;
	char			 name[DNS_NAME_MAX + 1];
	long			 ttl;		/* of libunbound's answer */
	int			 async_id;
	int			 slot;		/* in c->dns[] */
};

enum chan_kind {
	CK_WORKER = 1,		/* a worker's: payloads, DNS */
	CK_VERIFIER,		/* the verifier's, one message: DNS, result;
				   bound, a session's, result after result */
};

struct chan {
	int			 fd;
	enum chan_kind		 kind;
	uint64_t		 wid;		/* the worker's, as the master
						   and the verifier say */
	uint32_t		 seq;		/* worker: payloads so far;
						   verifier: the message's */
	int			 done;		/* verifier: result is in */
	int			 gone;		/* verifier: used or dropped */
	int			 bound;		/* verifier: results follow */
	int			 ended;		/* verifier: closed, since */
	int			 pending;	/* worker: a payload waits for
						   its result */
	int			 authed;	/* worker: auth is the result
						   of its payload's message */
	int			 spooling;	/* its payload is being written */
	struct timespec		 since;		/* of done, of pending */
	struct chan_auth	 auth;		/* verifier: the result */
	char			*fields;	/* verifier: its fields */
	size_t			 fieldslen;
	size_t			 fieldscap;	/* of the result's, counted
						   in buffered */
	uint8_t			*in;		/* what the worker sent */
	size_t			 inlen;
	size_t			 incap;
	uint8_t			*out;		/* answers not yet written */
	size_t			 outlen;
	size_t			 outoff;
	size_t			 outcap;
	struct dnsq		*dns[RELAY_DNS_PER_CHAN];
	int			 busy;		/* a transfer in flight */
	uint32_t		 watch;		/* what epoll waits for on fd */
	uint32_t		 reqid;
	CURL			*h;
	struct curl_slist	*hdrs;
	struct firm_response	 resp;
	char			*body;		/* the payload being POSTed */
	struct chan_inbound	 inb;
	struct timespec		 t0;
};

/* enum auth_verdict's names (auth.c is not part of this program) */
static const char *const verdict_names[] = { "temperror", "fail", "none",
    "weak", "strong" };

static struct smtpd_conf	 conf;
static CURLM			*relay_multi;
static struct ub_ctx		*relay_ub;
static struct chan		**chans;
static size_t			 nchans;
static size_t			 maxbody;
static size_t			 buffered;	/* incap of every channel */
static volatile sig_atomic_t	 relay_drain;	/* RELAY_STOPPING... */
static int			 relay_ctl_gone;
static int			 relay_link_fd = -1;	/* from the verifier */
static int			 relay_ep = -1;	/* epoll: the channels */
static int			 relay_spool_fd = -1;	/* spool.c's wake-up */
#define RELAY_STOPPING		1	/* SIGTERM: for --grace */
#define RELAY_REPLACED		2	/* SIGUSR1: a reload replaced it */

static __dead void relay_main(void);
static void	relay_metrics(size_t);
static void	relay_sig(int);
static void	fetcher_sig(int);
static void	fetcher_signals(void);
static void	relay_ctl(int);
static void	relay_link(int);
static struct chan *relay_chan_new(int, enum chan_kind, uint64_t, uint32_t);
static void	relay_spooled(void);
static void	relay_pending(void);
static void	relay_results_trim(uint64_t, uint32_t);
static void	relay_pair(struct chan *);
static void	relay_forward(struct chan *, struct chan *);
static int	relay_fields_check(struct chan *, const char *, size_t);
static void	relay_spool(struct chan *, const char *, size_t);
static int	relay_spool_full(void);
static void	relay_verdict(struct chan *, int, int, const struct chan *);
static void	relay_auth(struct chan *, const uint8_t *, size_t);
static void	relay_chan_read(struct chan *);
static void	relay_chan_write(struct chan *);
static void	relay_chan_close(size_t);
static void	relay_chan_shut(struct chan *);
static size_t	relay_watch(struct curl_waitfd *, struct chan **, size_t);
static void	relay_ready(struct curl_waitfd *, struct chan **, size_t);
static void	relay_dns_cancel(struct chan *);
static int	relay_worker_live(uint64_t);
static void	relay_inbound(struct chan *, const struct chan_hdr *,
		    const uint8_t *, size_t);
static void	relay_done(CURL *, CURLcode);
static void	relay_answer(struct chan *, const struct chan_verdict *);
static void	relay_queue(struct chan *, uint16_t, uint32_t, const void *,
		    size_t);
static size_t	relay_grow_to(size_t, size_t, size_t);
static int	relay_grow(struct chan *, uint8_t **, size_t *, size_t);
static void	relay_dns_setup(void);
static void	relay_dns_forward_all(void);
static void	relay_resolvconf(void);
static void	relay_dns_query(struct chan *, const struct chan_hdr *,
		    const uint8_t *, size_t);
static void	relay_dns_done(void *, int, struct ub_result *);
static void	relay_dns_answer(struct chan *, struct dnsq *, uint32_t, int,
		    const struct ub_result *);
static long	relay_ms_since(const struct timespec *);

int
main(int argc, char *argv[])
{
	const char	*role;

	/* libcurl and libunbound: to conf's API and resolvers only */
	relay_guard_init(&conf);
	if (argc < 2)
		errx(1, "usage: smtpd-relay relay|fetcher|check|online "
		    "FLAGS...");
	role = argv[1];
	argv[1] = argv[0];
	conf_init(&conf, argc - 1, argv + 1);
	if (sodium_init() == -1)
		errx(1, "libsodium initialisation failed");
	conf_user(&conf);
	if (strcmp(role, "check") == 0) {
		/* the master asks: do the API flags hold? */
		if (conf.api != NULL)
			firm_setup_priv(&conf);
		return 0;
	}
	if (strcmp(role, "online") == 0) {
		if (conf.nresolvers == 0)
			relay_resolvconf();
		return probe_online(&conf);
	}
	if (conf.health != NULL)
		relay_metrics(strcmp(role, "relay") == 0 ? METRICS_SLOT_RELAY :
		    METRICS_SLOT_FETCHER);
	log_init(conf.debug ? (conf.inetd ? STDERR_FILENO : STDOUT_FILENO) :
	    -1, conf.verbose);
	if (strcmp(role, "relay") == 0)
		relay_main();
	if (strcmp(role, "fetcher") == 0) {
		log_setproc("fetcher");
		fetcher_signals();
		json_object_seed(0);
		conf_banlist_dir(&conf);
		firm_setup_priv(&conf);
		conf.banlist_rwfd = RELAY_FETCHER_TABLE_FD;
		sandbox_fetcher(&conf);
		fetcher_main(&conf, RELAY_FETCHER_ALIVE_FD);
	}
	errx(1, "%s: unknown role", role);
}

/*
 * The master's metrics region, at METRICS_FD: this process's slot,
 * and nothing else of it.
 */
static void
relay_metrics(size_t slot)
{
	if (metrics_own(METRICS_FD, slot, NULL) == 0)
		close(METRICS_FD);
}

static void
relay_sig(int sig)
{
	if (sig == SIGUSR1)
		relay_drain = RELAY_REPLACED;
	else if (sig == SIGTERM || sig == SIGINT)
		relay_drain = RELAY_STOPPING;
}

/* The fetcher: SIGTERM ends it, SIGHUP polls now (fetcher_main). */
static void
fetcher_sig(int sig)
{
	if (sig == SIGHUP)
		smtpd_reload = 1;
	else
		smtpd_stop = 1;
}

static void
fetcher_signals(void)
{
	static const int	 caught[] = { SIGTERM, SIGINT, SIGHUP, 0 };

	signals_set(fetcher_sig, caught, NULL);
}

static __dead void
relay_main(void)
{
	static const int	 caught[] = { SIGTERM, SIGINT, SIGUSR1, 0 };
	static const int	 ignored[] = { SIGHUP, 0 };
	struct curl_waitfd	*wfd;
	struct chan		**who;
	struct rlimit		 rl;
	struct timespec		 drain_start = { 0, 0 };
	long			 drain_ms;
	sigset_t		 none;
	CURLMsg			*m;
	size_t			 i, n;
	int			 running, left;

	log_setproc("relay");
	if (conf.api != NULL)
		firm_setup_priv(&conf);	/* reads the key, as root */
	/* JSON escapes can make the payload many times the message */
	maxbody = (size_t)conf.max_size * 32 + 1024 * 1024;
	if (maxbody > UINT32_MAX - sizeof(struct chan_hdr))
		maxbody = UINT32_MAX - sizeof(struct chan_hdr);
	if ((chans = calloc(RELAY_CHAN_MAX, sizeof(*chans))) == NULL ||
	    (wfd = calloc(RELAY_CHAN_MAX + 4, sizeof(*wfd))) == NULL ||
	    (who = calloc(RELAY_CHAN_MAX + 3, sizeof(*who))) == NULL)
		fatal("relay: channel table");
	/* a descriptor for each channel the table holds, where allowed */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	/* without --api it polls only its channels, the same way */
	if (conf.api == NULL && curl_global_init(CURL_GLOBAL_DEFAULT) !=
	    CURLE_OK)
		fatalx("relay: curl_global_init");
	if ((relay_multi = curl_multi_init()) == NULL)
		fatalx("relay: curl_multi_init");
	curl_multi_setopt(relay_multi, CURLMOPT_PIPELINING,
	    (long)CURLPIPE_MULTIPLEX);
	curl_multi_setopt(relay_multi, CURLMOPT_MAXCONNECTS, 64L);
	/* curl_multi_poll() is no ppoll(): the relay's signals stay open */
	signals_set(relay_sig, caught, ignored);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	(void)fcntl(RELAY_CTL_FD, F_SETFL, O_NONBLOCK);
	/* with --spool, the payloads are written here (the master's 6) */
	conf.spool_fd = -1;
	if (conf.spool != NULL) {
		if (fcntl(RELAY_SPOOL_FD, F_GETFD) == -1)
			fatalx("relay: no spool directory (smtpd starts this "
			    "process itself)");
		conf.spool_fd = RELAY_SPOOL_FD;
	}
	relay_dns_setup();	/* reads /etc/resolv.conf */
	if (dnscache_init() == -1)
		fatal("relay: DNS answer cache");
	sandbox_relay(&conf);
	/* threads of its own: under the sandbox as they start */
	if (conf.spool_fd != -1 && (relay_spool_fd = spool_start(conf.spool_fd,
	    (unsigned long long)conf.spool_reserve, conf.max_sessions)) == -1)
		fatalx("relay: no thread to write the spool");
	probe_resolvers_start(&conf);	/* warns of a silent resolver */
#ifdef __linux__
	/* without it, each turn polls every channel (as elsewhere) */
	if ((relay_ep = epoll_create1(EPOLL_CLOEXEC)) == -1)
		log_warn("relay: epoll_create1");
#endif

	for (;;) {
		if (relay_drain && drain_start.tv_sec == 0)
			clock_gettime(CLOCK_MONOTONIC, &drain_start);
		/*
		 * Draining: serve the channels we have, each call in flight
		 * to its answer, then leave.  Stopping, the sessions have
		 * --grace; replaced (SIGHUP), the sessions of the workers
		 * attached here run on, as long as a session may.
		 */
		drain_ms = (relay_drain == RELAY_REPLACED ?
		    conf.session_timeout : 0) + conf.grace + conf.api_timeout +
		    5;
		drain_ms *= 1000;
		/* every channel the master handed over is in nchans once
		 * its end of the control socket is read to the end */
		if (relay_drain && ((nchans == 0 && relay_ctl_gone) ||
		    relay_ms_since(&drain_start) > drain_ms))
			_exit(0);
		wfd[0].fd = relay_ctl_gone ? -1 : RELAY_CTL_FD;
		wfd[0].events = CURL_WAIT_POLLIN;
		wfd[0].revents = 0;
		wfd[1].fd = relay_link_fd;
		wfd[1].events = CURL_WAIT_POLLIN;
		wfd[1].revents = 0;
		n = relay_watch(wfd, who, 2);
		/* libunbound's thread says: answers are ready */
		wfd[n].fd = ub_fd(relay_ub);
		wfd[n].events = CURL_WAIT_POLLIN;
		wfd[n].revents = 0;
		/* and spool.c's: files are written */
		wfd[n + 1].fd = relay_spool_fd;
		wfd[n + 1].events = CURL_WAIT_POLLIN;
		wfd[n + 1].revents = 0;
		if (curl_multi_poll(relay_multi, wfd, (unsigned)n + 2, 1000,
		    NULL) != CURLM_OK) {
			log_warnx("relay: curl_multi_poll failed");
			continue;
		}
		curl_multi_perform(relay_multi, &running);
		while ((m = curl_multi_info_read(relay_multi, &left)) != NULL)
			if (m->msg == CURLMSG_DONE)
				relay_done(m->easy_handle, m->data.result);
		if (wfd[n].revents != 0 && ub_process(relay_ub) != 0)
			log_warnx("relay: ub_process failed");
		if (wfd[n + 1].revents != 0)
			relay_spooled();
		/* channels first: the link and the master add to them */
		relay_ready(wfd, who, n);
		if (wfd[1].revents != 0)
			relay_link(relay_link_fd);
		relay_pending();
		/* a result waits for its payload a while, closed or not */
		for (i = nchans; i > 0; i--) {
			struct chan *c = chans[i - 1];

			/*
			 * A bound channel that ends: counted from then, if
			 * its worker may still send the payload it checked
			 * nothing for; if the worker is gone, no payload will
			 * come.
			 */
			if (c->fd == -1 && c->bound && !c->ended) {
				c->ended = 1;
				clock_gettime(CLOCK_MONOTONIC, &c->since);
				c->gone = !relay_worker_live(c->wid);
			}

			if (c->fd == -1 && !c->spooling &&
			    (c->kind != CK_VERIFIER || c->gone ||
			    relay_ms_since(&c->since) > RELAY_AUTH_WAIT_MS))
				relay_chan_close(i - 1);
		}
		if (wfd[0].revents != 0)
			relay_ctl(RELAY_CTL_FD);
	}
}

static long
relay_ms_since(const struct timespec *t0)
{
	struct timespec	 now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long)((now.tv_sec - t0->tv_sec) * 1000 +
	    (now.tv_nsec - t0->tv_nsec) / 1000000);
}

/*
 * The master hands over a worker's channel, or the link from the
 * verifier (a new one replaces the last); its end means ours.
 */
static void
relay_ctl(int fd)
{
	union {
		uint32_t		 type;
		struct ctl_channel	 ch;
		struct ctl_link		 ln;
	}			 m;
	ssize_t			 n;
	int			 cfd;

	for (;;) {
		if ((n = fd_recv_next(fd, &cfd, &m, sizeof(m))) == -1)
			return;
		if (n == 0) {
			/*
			 * The master closed it: it replaced us or it stops
			 * (the signal says which), or it is gone; each way,
			 * what is in flight is finished first.
			 */
			relay_ctl_gone = 1;
			if (relay_drain == 0)
				relay_drain = RELAY_STOPPING;
			return;
		}
		if (n == sizeof(m.ln) && m.type == CTL_LINK && cfd != -1) {
			if (relay_link_fd != -1)
				close(relay_link_fd);
			relay_link_fd = cfd;
			(void)fcntl(cfd, F_SETFL, O_NONBLOCK);
			continue;
		}
		if (n != sizeof(m.ch) || m.type != CTL_CHANNEL || cfd == -1) {
			log_warnx("relay: a bad record from the master");
			if (cfd != -1)
				close(cfd);
			continue;
		}
		(void)relay_chan_new(cfd, CK_WORKER, m.ch.wid, 0);
	}
}

/*
 * The verifier hands over its end of a channel for one message: the
 * seq-th of worker wid, whose payload it goes with; bound, for that
 * message and those that follow it in the session, seq + 1 and on.
 */
static void
relay_link(int fd)
{
	struct link_msg	 m;
	struct chan	*c;
	size_t		 i;
	ssize_t		 n;
	int		 cfd;

	for (;;) {
		if ((n = fd_recv_next(fd, &cfd, &m, sizeof(m))) == -1)
			return;
		if (n == 0) {
			/* no verifier now; the master starts the next */
			close(fd);
			relay_link_fd = -1;
			return;
		}
		if (n != sizeof(m) || cfd == -1) {
			log_warnx("relay: a bad record from the verifier");
			if (cfd != -1)
				close(cfd);
			continue;
		}
		relay_results_trim(m.wid, m.seq);
		/* a bound channel that ended: this one checks its next */
		for (i = 0; i < nchans; i++)
			if (chans[i]->kind == CK_VERIFIER &&
			    chans[i]->wid == m.wid && chans[i]->fd == -1 &&
			    !chans[i]->done && chans[i]->seq >= m.seq)
				chans[i]->gone = 1;
		if ((c = relay_chan_new(cfd, CK_VERIFIER, m.wid, m.seq)) !=
		    NULL)
			c->bound = m.bound != 0;
	}
}

/*
 * A worker waits for the answer to each payload, so its results come
 * one at a time: one older than the last but one was never asked for
 * (a worker that sends messages and no payloads).  Dropped, so that no
 * worker makes the relay hold more than two of its results (the
 * verifier checks one message of a worker at a time: one more may be
 * under way, and is kept).
 */
static void
relay_results_trim(uint64_t wid, uint32_t seq)
{
	size_t	 i;

	for (i = 0; i < nchans; i++)
		if (chans[i]->kind == CK_VERIFIER && chans[i]->wid == wid &&
		    chans[i]->fd == -1 && chans[i]->seq + 1 < seq)
			chans[i]->gone = 1;	/* closed in the loop */
}

/* Is worker wid's channel open? */
static int
relay_worker_live(uint64_t wid)
{
	size_t	 i;

	for (i = 0; i < nchans; i++)
		if (chans[i]->kind == CK_WORKER && chans[i]->wid == wid &&
		    chans[i]->fd != -1)
			return 1;
	return 0;
}

/* The questions of c libunbound still works on: none of its concern. */
static void
relay_dns_cancel(struct chan *c)
{
	size_t	 j;

	for (j = 0; j < RELAY_DNS_PER_CHAN; j++) {
		if (c->dns[j] == NULL)
			continue;
		/* libunbound will not call back for it */
		(void)ub_cancel(relay_ub, c->dns[j]->async_id);
		free(c->dns[j]);
		c->dns[j] = NULL;
	}
}

static struct chan *
relay_chan_new(int fd, enum chan_kind kind, uint64_t wid, uint32_t seq)
{
	struct chan	*c;

	if (nchans == RELAY_CHAN_MAX || (c = calloc(1, sizeof(*c))) == NULL) {
		log_warnx("relay: no room for another channel");
		close(fd);
		return NULL;
	}
	(void)fcntl(fd, F_SETFL, O_NONBLOCK);
	c->fd = fd;
	c->kind = kind;
	c->wid = wid;
	c->seq = seq;
	/* a verifier's channel, ended with a result or without, is kept
	 * RELAY_AUTH_WAIT_MS for its payload: either way it is paired */
	clock_gettime(CLOCK_MONOTONIC, &c->since);
	chans[nchans++] = c;
	return c;
}

static void
relay_chan_close(size_t i)
{
	struct chan	*c = chans[i];
	size_t		 j;

	/*
	 * A worker that left sends no payload: its results, and its
	 * channels' ends, go (a stop would wait for them).
	 */
	for (j = 0; c->kind == CK_WORKER && j < nchans; j++)
		if (chans[j]->kind == CK_VERIFIER && chans[j]->wid == c->wid &&
		    chans[j]->fd == -1)
			chans[j]->gone = 1;
	relay_dns_cancel(c);
	free(c->out);
	if (c->h != NULL) {
		if (c->busy)
			curl_multi_remove_handle(relay_multi, c->h);
		curl_easy_cleanup(c->h);
	}
	curl_slist_free_all(c->hdrs);
	firm_response_free(&c->resp);
	free(c->body);
	free(c->fields);
	buffered -= c->fieldscap;
	free(c->in);
	buffered -= c->incap;
	relay_chan_shut(c);
	free(c);
	chans[i] = chans[--nchans];
}

/* A channel ends here: out of epoll's set first, then closed. */
static void
relay_chan_shut(struct chan *c)
{
	if (c->fd == -1)
		return;
#ifdef __linux__
	if (c->watch != 0)
		(void)epoll_ctl(relay_ep, EPOLL_CTL_DEL, c->fd, NULL);
#endif
	c->watch = 0;
	close(c->fd);
	c->fd = -1;
}

/*
 * What each channel waits for, from wfd[n] on: its answers to go out,
 * or, when it is not waiting for FIRM or the spool, what its worker
 * sends; a result waiting for its payload has no descriptor.  Where
 * epoll is, the channels are in its set, changed only as they change,
 * and wfd holds its one descriptor: the turn does not walk a few
 * hundred idle workers' channels in the kernel.  The new n.
 */
static size_t
relay_watch(struct curl_waitfd *wfd, struct chan **who, size_t n)
{
	struct chan	*c;
	size_t		 i;
	short		 ev;

	for (i = 0; i < nchans; i++) {
		if ((c = chans[i])->fd == -1)
			continue;
		ev = c->outoff < c->outlen ? CURL_WAIT_POLLOUT :
		    !c->busy ? CURL_WAIT_POLLIN : 0;
#ifdef __linux__
		if (relay_ep != -1) {
			struct epoll_event e;
			uint32_t want = ev == CURL_WAIT_POLLOUT ? EPOLLOUT :
			    ev == CURL_WAIT_POLLIN ? EPOLLIN : 0;
			int op = c->watch == 0 ? EPOLL_CTL_ADD : want == 0 ?
			    EPOLL_CTL_DEL : EPOLL_CTL_MOD;

			if (want == c->watch)
				continue;
			memset(&e, 0, sizeof(e));
			e.events = want;
			e.data.ptr = c;
			if (epoll_ctl(relay_ep, op, c->fd, &e) == 0) {
				c->watch = want;
				continue;
			}
			/* no room in the set (ENOMEM, ENOSPC): polled */
			if (c->watch != 0)
				(void)epoll_ctl(relay_ep, EPOLL_CTL_DEL, c->fd,
				    NULL);
			c->watch = 0;
		}
#endif
		wfd[n].fd = c->fd;
		wfd[n].events = ev;
		wfd[n].revents = 0;
		who[n++] = c;
	}
	if (relay_ep != -1) {
		wfd[n].fd = relay_ep;
		wfd[n].events = CURL_WAIT_POLLIN;
		wfd[n].revents = 0;
		who[n++] = NULL;
	}
	return n;
}

/* The channels relay_watch() put in wfd[2..n) that are ready. */
static void
relay_ready(struct curl_waitfd *wfd, struct chan **who, size_t n)
{
	struct chan	*c;
	size_t		 i;

	for (i = n; i > 2; i--) {
		if (wfd[i - 1].revents == 0)
			continue;
		if ((c = who[i - 1]) != NULL) {
			if (wfd[i - 1].revents & CURL_WAIT_POLLOUT)
				relay_chan_write(c);
			if (wfd[i - 1].revents & CURL_WAIT_POLLIN)
				relay_chan_read(c);
			continue;
		}
#ifdef __linux__
		{
			static struct epoll_event	 ev[256];
			int				 k, got;

			got = epoll_wait(relay_ep, ev, 256, 0);
			for (k = 0; k < got; k++) {
				/*
				 * Freed only after this turn's channels
				 * (relay_chan_close()), but perhaps ended
				 * by another's.
				 */
				c = ev[k].data.ptr;
				if (c->fd == -1)
					continue;
				if ((ev[k].events & (EPOLLOUT | EPOLLERR |
				    EPOLLHUP)) && c->outoff < c->outlen)
					relay_chan_write(c);
				else if ((ev[k].events & (EPOLLIN | EPOLLERR |
				    EPOLLHUP)) && (c->watch & EPOLLIN))
					relay_chan_read(c);
			}
		}
#endif
	}
}

/*
 * Read what the worker sends; act on each complete message.  One
 * payload at a time: a worker waits for its answer; DNS questions up
 * to RELAY_DNS_PER_CHAN at once (dnsbl.c asks every zone together).
 */
static void
relay_chan_read(struct chan *c)
{
	struct chan_hdr	 h;
	ssize_t		 n, len;

	for (;;) {
		len = chan_decode(c->in, c->inlen, maxbody, &h);
		if (len == -1) {
			log_warnx("relay: a worker broke the channel's rules; "
			    "closing it");
			relay_chan_shut(c);
			return;
		}
		if (len > 0) {
			if (h.type == CHAN_DNS_QUERY && !c->busy)
				relay_dns_query(c, &h, c->in + sizeof(h),
				    (size_t)len - sizeof(h));
			else if (h.type == CHAN_INBOUND && !c->busy &&
			    c->kind == CK_WORKER)
				relay_inbound(c, &h, c->in + sizeof(h),
				    (size_t)len - sizeof(h));
			else if (h.type == CHAN_SPOOL_ROOM && !c->busy &&
			    c->kind == CK_WORKER) {
				c->reqid = h.id;
				relay_verdict(c, relay_spool_full() ?
				    VERDICT_NOSPACE : VERDICT_ACCEPTED, 0,
				    NULL);
			} else if (h.type == CHAN_AUTH && !c->done &&
			    c->kind == CK_VERIFIER) {
				relay_auth(c, c->in + sizeof(h),
				    (size_t)len - sizeof(h));
			} else {
				log_warnx("relay: unexpected message type %u",
				    (unsigned)h.type);
				relay_chan_shut(c);
			}
			if (c->fd == -1)
				return;
			memmove(c->in, c->in + len, c->inlen - (size_t)len);
			c->inlen -= (size_t)len;
			if (c->inlen == 0 && c->incap > RELAY_CHAN_KEEP) {
				/* a large message is handed on: its room too */
				buffered -= c->incap;
				free(c->in);
				c->in = NULL;
				c->incap = 0;
			}
			if (c->busy)
				return;	/* the worker waits for FIRM */
			continue;
		}
		/*
		 * Room for the octets that arrive, doubled as they come,
		 * never for a length a header only announces: a worker
		 * holds no more of our memory than about twice what it
		 * sent, and no message is longer than maxbody.
		 */
		if (c->inlen == c->incap) {
			size_t ocap = c->incap, ncap;

			ncap = relay_grow_to(ocap, ocap + 1,
			    maxbody + sizeof(h));
			if (ncap <= ocap) {
				log_warnx("relay: a worker sent more than a "
				    "message may hold; closing its channel");
				relay_chan_shut(c);
				return;
			}
			/* workers together cannot make us hold more */
			if (buffered - ocap + ncap > RELAY_BUFFERED_MAX) {
				log_warnx("relay: %zu bytes buffered for the "
				    "workers; closing a channel", buffered);
				relay_chan_shut(c);
				return;
			}
			if (relay_grow(c, &c->in, &c->incap, ncap) == -1)
				return;
			buffered += ncap - ocap;
		}
		n = read(c->fd, c->in + c->inlen, c->incap - c->inlen);
		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n == -1 && errno == EBADMSG)
			continue;	/* what it held is closed */
		if (n <= 0) {
			relay_chan_shut(c);	/* the worker is gone */
			return;
		}
		c->inlen += (size_t)n;
	}
}

/* A channel buffer's next size: doubled until it holds want, at most max. */
static size_t
relay_grow_to(size_t cap, size_t want, size_t max)
{
	size_t	 ncap = cap ? cap : 4096;

	while (ncap < want && ncap <= max / 2)
		ncap *= 2;
	if (ncap < want)
		ncap = want;
	return ncap > max ? max : ncap;
}

/* Resize one of a channel's buffers; a failure closes the channel. */
static int
relay_grow(struct chan *c, uint8_t **buf, size_t *cap, size_t ncap)
{
	uint8_t	*nb;

	if ((nb = realloc(*buf, ncap)) == NULL) {
		log_warn("relay: channel buffer");
		relay_chan_shut(c);
		return -1;
	}
	*buf = nb;
	*cap = ncap;
	return 0;
}

static void
relay_chan_write(struct chan *c)
{
	ssize_t	 n;

	while (c->outoff < c->outlen) {
		n = write(c->fd, c->out + c->outoff, c->outlen - c->outoff);
		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n == -1 && errno == EBADMSG)
			continue;	/* what it held is closed */
		if (n <= 0) {
			relay_chan_shut(c);
			return;
		}
		c->outoff += (size_t)n;
	}
	c->outoff = c->outlen = 0;
}

/*
 * The answer to a worker's request; to a payload, with what the
 * verifier found, for the worker's log line.
 */
static void
relay_answer(struct chan *c, const struct chan_verdict *v)
{
	struct chan_verdict	 a = *v;

	/* authentication ran (the field rules did not refuse first) */
	if (c->authed && c->auth.spf[0] != '\0') {
		a.authed = 1;
		memcpy(a.token, c->auth.token, sizeof(a.token));
		memcpy(a.spf, c->auth.spf, sizeof(a.spf));
		memcpy(a.dkim, c->auth.dkim, sizeof(a.dkim));
		memcpy(a.dmarc, c->auth.dmarc, sizeof(a.dmarc));
		strlcpy(a.verdict, verdict_names[c->auth.verdict],
		    sizeof(a.verdict));
		a.size = c->auth.size;
	}
	c->authed = 0;
	relay_queue(c, CHAN_VERDICT, c->reqid, &a, sizeof(a));
}

/* An answer made here, not by FIRM. */
static void
relay_verdict(struct chan *c, int kind, int reply, const struct chan *v)
{
	struct chan_verdict	 a;

	memset(&a, 0, sizeof(a));
	a.kind = kind;
	a.reply = reply;
	if (v != NULL)
		strlcpy(a.text, v->auth.text, sizeof(a.text));
	relay_answer(c, &a);
}

/* An answer goes out after those before it; the worker drops stale ones. */
static void
relay_queue(struct chan *c, uint16_t type, uint32_t id, const void *body,
    size_t len)
{
	struct chan_hdr	 h;
	size_t		 want = c->outlen + sizeof(h) + len;

	if (c->fd == -1)
		return;
	if (want > c->outcap && relay_grow(c, &c->out, &c->outcap,
	    relay_grow_to(c->outcap, want, SIZE_MAX)) == -1)
		return;
	memset(&h, 0, sizeof(h));
	h.version = CHAN_VERSION;
	h.type = type;
	h.id = id;
	h.len = (uint32_t)len;
	memcpy(c->out + c->outlen, &h, sizeof(h));
	memcpy(c->out + c->outlen + sizeof(h), body, len);
	c->outlen += sizeof(h) + len;
	relay_chan_write(c);
}

/*
 * libunbound, set up before the sandbox: forward every question to
 * --resolver, else to the name servers of /etc/resolv.conf.  Its own
 * thread resolves (ub_ctx_async); ub_fd() wakes our loop when answers
 * are ready.
 */
static void
relay_dns_setup(void)
{
	size_t	 i;
	int	 rc;

	if ((relay_ub = ub_ctx_create()) == NULL)
		fatalx("relay: ub_ctx_create");
	if ((rc = ub_ctx_async(relay_ub, 1)) != 0 ||
	    (rc = ub_ctx_set_option(relay_ub, "do-not-query-localhost:",
	    "no")) != 0 ||
	    /* a name that never answers must not mark the forwarder down */
	    (rc = ub_ctx_set_option(relay_ub, "infra-keep-probing:",
	    "yes")) != 0)
		fatalx("relay: libunbound: %s", ub_strerror(rc));
	if (conf.nresolvers == 0)
		relay_resolvconf();
	for (i = 0; i < conf.nresolvers; i++)
		if ((rc = ub_ctx_set_fwd(relay_ub,
		    conf.resolvers[i].name)) != 0)
			fatalx("relay: --resolver %s: %s",
			    conf.resolvers[i].name, ub_strerror(rc));
	if (conf.nresolvers == 0) {
		log_warnx("relay: no --resolver and no name server in "
		    "/etc/resolv.conf: resolving from the root servers");
		relay_guard_dns_any();
	} else
		relay_dns_forward_all();
}

/*
 * When forwarding, libunbound must answer nothing in the resolvers'
 * place.  By default it serves zones of its own (unbound.conf(5),
 * local-zone): the AS112 zones (RFC 6303: the reverse zones of private,
 * shared, link-local and documentation ranges) and those listed here.
 * unblock-lan-zones drops the AS112 zones, whatever this version's list
 * of them.  Each zone listed is declared transparent and empty instead,
 * which keeps its default out and forwards every question under it; a
 * zone this version does not serve costs an empty zone.  ("nodefault"
 * means that too, but through ub_ctx_set_option() libunbound 1.17.1,
 * and its source today, keeps the type word in the zone's name, so it
 * never matches.)  No trust anchor is set, so nothing is validated and
 * insecure-lan-zones does not matter.
 */
static void
relay_dns_forward_all(void)
{
	static const char *const zones[] = {
		"localhost.",
		"127.in-addr.arpa.",
		("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0."
		    "0.0.ip6.arpa."),	/* ::1, one name */
		"home.arpa.",		/* RFC 8375 */
		"onion.",		/* RFC 7686 */
		"test.",		/* RFC 6761 */
		"invalid.",		/* RFC 6761 */
		"resolver.arpa.",	/* RFC 9462, unbound 1.23 */
		"service.arpa.",	/* RFC 9665, unbound 1.23 */
	};
	char	 zone[128];
	size_t	 i;
	int	 rc;

	if ((rc = ub_ctx_set_option(relay_ub, "unblock-lan-zones:",
	    "yes")) != 0)
		fatalx("relay: libunbound: unblock-lan-zones: %s",
		    ub_strerror(rc));
	for (i = 0; i < sizeof(zones) / sizeof(zones[0]); i++) {
		if (snprintf(zone, sizeof(zone), "%s transparent", zones[i]) >=
		    (int)sizeof(zone))
			fatalx("relay: local zone %s: too long", zones[i]);
		if ((rc = ub_ctx_set_option(relay_ub, "local-zone:",
		    zone)) != 0)
			fatalx("relay: libunbound: local-zone %s: %s", zone,
			    ub_strerror(rc));
	}
}

/*
 * Without --resolver: the name servers of /etc/resolv.conf, read once
 * here, become the resolvers, as if given with --resolver.
 */
static void
relay_resolvconf(void)
{
	struct resolver	*r;
	FILE		*fp;
	char		 line[512], addr[INET6_ADDRSTRLEN + 1], *p;

	if ((fp = fopen("/etc/resolv.conf", "re")) == NULL)
		return;
	while (fgets(line, sizeof(line), fp) != NULL &&
	    conf.nresolvers < MAX_RESOLVERS) {
		if (strncmp(line, "nameserver", 10) != 0 ||
		    (line[10] != ' ' && line[10] != '\t'))
			continue;
		for (p = line + 10; *p == ' ' || *p == '\t'; p++)
			;
		p[strcspn(p, " \t\r\n%")] = '\0';
		r = &conf.resolvers[conf.nresolvers];
		if (strlcpy(addr, p, sizeof(addr)) >= sizeof(addr))
			continue;
		if (inet_pton(AF_INET, addr, r->addr) == 1)
			r->af = AF_INET;
		else if (inet_pton(AF_INET6, addr, r->addr) == 1)
			r->af = AF_INET6;
		else
			continue;
		r->port = 53;
		(void)snprintf(r->name, sizeof(r->name), "%s@53", addr);
		conf.nresolvers++;
	}
	fclose(fp);
}

/* A worker's question: checked, handed to libunbound. */
static void
relay_dns_query(struct chan *c, const struct chan_hdr *h, const uint8_t *body,
    size_t len)
{
	struct dnsq	*q;
	char		 name[DNS_NAME_MAX + 1];
	const uint8_t	*ans;
	size_t		 anslen;
	int		 type, slot;

	if (dns_query_check(body, len, &type, name, sizeof(name)) == -1) {
		log_warnx("relay: a worker sent a malformed DNS question; "
		    "closing its channel");
		relay_chan_shut(c);
		return;
	}
	/* asked before, and still alive: answered here */
	if (dnscache_get(type, name, &ans, &anslen)) {
		metrics_add(M_DNS_CACHED, 1);
		relay_queue(c, CHAN_DNS_ANSWER, h->id, ans, anslen);
		return;
	}
	for (slot = 0; slot < RELAY_DNS_PER_CHAN; slot++)
		if (c->dns[slot] == NULL)
			break;
	if (slot == RELAY_DNS_PER_CHAN || (q = calloc(1, sizeof(*q))) ==
	    NULL) {
		relay_dns_answer(c, NULL, h->id, DNS_TEMPFAIL, NULL);
		return;
	}
	q->c = c;
	q->reqid = h->id;
	q->type = type;
	q->slot = slot;
	strlcpy(q->name, name, sizeof(q->name));
	if (ub_resolve_async(relay_ub, name, type, 1 /* IN */, q,
	    relay_dns_done, &q->async_id) != 0) {
		free(q);
		relay_dns_answer(c, NULL, h->id, DNS_TEMPFAIL, NULL);
		return;
	}
	c->dns[slot] = q;
}

static void
relay_dns_done(void *arg, int err, struct ub_result *res)
{
	struct dnsq	*q = arg;
	int		 status = DNS_TEMPFAIL;

	if (err == 0 && res != NULL) {
		if (res->rcode == 0)
			status = DNS_NOERROR;
		else if (res->rcode == 3)
			status = DNS_NXDOMAIN;
	}
	q->c->dns[q->slot] = NULL;
	q->ttl = res != NULL ? (long)res->ttl : 0;
	relay_dns_answer(q->c, q, q->reqid, status, status == DNS_NOERROR ?
	    res : NULL);
	free(q);
	if (res != NULL)
		ub_resolve_free(res);
}

/*
 * Records as dns.c hands them to a worker: plain data, no wire names.
 * libunbound's answer to q is kept for its time to live.
 */
static void
relay_dns_answer(struct chan *c, struct dnsq *q, uint32_t id, int status,
    const struct ub_result *res)
{
	static uint8_t	 out[CHAN_DNS_MAX], rec[DNS_RR_MAX][1024 + 256];
	const uint8_t	*data[DNS_RR_MAX];
	size_t		 len[DNS_RR_MAX], n = 0, i, olen;

	for (i = 0; res != NULL && res->havedata && res->data[i] != NULL;
	    i++) {
		if (n == DNS_RR_MAX) {
			status = DNS_TEMPFAIL;	/* too many to be whole */
			break;
		}
		len[n] = dns_rdata_decode(res->qtype, (const uint8_t *)
		    res->data[i], (size_t)res->len[i], rec[n],
		    sizeof(rec[n]));
		if (len[n] == (size_t)-1) {
			status = DNS_TEMPFAIL;
			break;
		}
		if (len[n] == (size_t)-2)
			continue;	/* a name no mail check can use */
		data[n] = rec[n];
		n++;
	}
	olen = dns_answer_encode(status, data, len, n, out, sizeof(out));
	if (q != NULL)
		dnscache_put(q->type, q->name, status, out, olen, q->ttl);
	relay_queue(c, CHAN_DNS_ANSWER, id, out, olen);
}


/*
 * A worker's payload: an empty object, checked; it waits for the
 * verifier's result for the same message, the worker's n-th.
 */
static void
relay_inbound(struct chan *c, const struct chan_hdr *h, const uint8_t *body,
    size_t len)
{
	const char	*json;
	size_t		 jsonlen;

	c->reqid = h->id;
	if (chan_inbound_check(body, len, &c->inb, &json, &jsonlen) == -1) {
		log_warnx("relay: a worker sent a malformed payload; closing "
		    "its channel");
		relay_chan_shut(c);
		return;
	}
	if (relay_fields_check(c, json, jsonlen) == -1) {
		relay_chan_shut(c);	/* a worker that lies: no more of it */
		return;
	}
	c->seq++;
	c->pending = 1;
	c->busy = 1;
	clock_gettime(CLOCK_MONOTONIC, &c->since);
	relay_pair(c);
}

/*
 * The worker's fields: one JSON object with no member.  Every field of
 * the payload is the verifier's (what the message says, who sent it,
 * the token, the results) or the master's (the client): a payload
 * naming any is a worker taken over, refused and logged.  0, or -1.
 */
static int
relay_fields_check(struct chan *c, const char *json, size_t len)
{
	json_error_t	 err;
	json_t		*o, *v;
	const char	*k, *bad = NULL;

	o = json_loadb(json, len, JSON_REJECT_DUPLICATES, &err);
	if (o == NULL || !json_is_object(o))
		bad = "(not one JSON object)";
	else
		json_object_foreach(o, k, v) {
			bad = k;
			break;
		}
	if (bad != NULL) {
		char clean[64];

		log_sanitize(clean, sizeof(clean), bad, strlen(bad));
		log_event(LOG_WARNING, "payload_refused", c->inb.session,
		    "{s:s, s:s, s:s}", "id", c->inb.msgid, "field", clean,
		    "error", "a worker named a field that is not its own");
	}
	json_decref(o);
	return bad == NULL ? 0 : -1;
}

/*
 * The verifier's result for one message, kept until its payload comes.
 * On a bound channel each result is kept apart, as if it had come on a
 * channel of its own, and the channel waits for the next message's.
 */
static void
relay_auth(struct chan *c, const uint8_t *body, size_t len)
{
	struct chan	*r;
	size_t		 i, kept = 0;

	if (c->bound) {
		/*
		 * A worker waits for each answer: two results it has not
		 * sent the payload of are all it can have.  A third is a
		 * worker that serves itself, or a child taken over: its
		 * channel ends, and no more of them pile up.
		 */
		for (i = 0; i < nchans; i++)
			if (chans[i]->kind == CK_VERIFIER &&
			    chans[i]->wid == c->wid && chans[i]->fd == -1 &&
			    chans[i]->done && !chans[i]->gone)
				kept++;
		if (kept >= 2) {
			log_warnx("relay: results nobody asked for on a "
			    "verifier's channel; closing it");
			relay_chan_shut(c);
			return;
		}
		if (nchans == RELAY_CHAN_MAX ||
		    (r = calloc(1, sizeof(*r))) == NULL) {
			log_warnx("relay: no room for a verifier's result");
			relay_chan_shut(c);	/* its payload hears 451 */
			return;
		}
		r->fd = -1;
		r->kind = CK_VERIFIER;
		r->wid = c->wid;
		r->seq = c->seq++;
		chans[nchans++] = r;
		relay_dns_cancel(c);	/* late answers would go astray */
		relay_results_trim(r->wid, r->seq);
		c = r;
	}
	memcpy(&c->auth, body, sizeof(c->auth));
	c->auth.text[sizeof(c->auth.text) - 1] = '\0';
	c->auth.idem[sizeof(c->auth.idem) - 1] = '\0';
	c->auth.token[sizeof(c->auth.token) - 1] = '\0';
	c->auth.spf[sizeof(c->auth.spf) - 1] = '\0';
	c->auth.dkim[sizeof(c->auth.dkim) - 1] = '\0';
	c->auth.dmarc[sizeof(c->auth.dmarc) - 1] = '\0';
	if (c->auth.verdict < AUTHV_TEMPERROR ||
	    c->auth.verdict > AUTHV_STRONG)
		c->auth.verdict = AUTHV_TEMPERROR;
	c->fieldslen = len - sizeof(c->auth);
	if ((c->fields = malloc(c->fieldslen + 1)) == NULL)
		c->auth.reply = REPLY_LOCALERR;
	else {
		memcpy(c->fields, body + sizeof(c->auth), c->fieldslen);
		c->fields[c->fieldslen] = '\0';
	}
	c->done = 1;
	clock_gettime(CLOCK_MONOTONIC, &c->since);
	/* its worker is gone (the relay closed its channel): no payload */
	if (!relay_worker_live(c->wid))
		c->gone = 1;
	metrics_add(M_VERDICT + c->auth.verdict, 1);
	metrics_add(M_DNS_QUERIES, c->auth.dns_queries);
	/*
	 * Its work is done: the verifier's child leaves, and what it
	 * sent is held once, as the fields, counted with the rest.
	 */
	relay_chan_shut(c);
	free(c->in);
	buffered -= c->incap;
	c->in = NULL;
	c->incap = c->inlen = 0;
	if (c->fields != NULL) {
		c->fieldscap = c->fieldslen + 1;
		buffered += c->fieldscap;
	}
}

/* Payloads waiting for their results: paired, or given up. */
static void
relay_pending(void)
{
	size_t	 i;

	for (i = 0; i < nchans; i++)
		if (chans[i]->kind == CK_WORKER && chans[i]->pending &&
		    chans[i]->fd != -1)
			relay_pair(chans[i]);
}

/*
 * The result for worker c's seq-th message: with it, the payload goes;
 * without it (none began within RELAY_LINK_WAIT_MS, or it ended without
 * one, or took longer than RELAY_AUTH_WAIT_MS), the worker hears 451:
 * no payload leaves without a verdict for it.
 */
static void
relay_pair(struct chan *c)
{
	struct chan	*v = NULL;
	size_t		 i;
	long		 waited = relay_ms_since(&c->since);

	for (i = 0; i < nchans; i++)
		if (chans[i]->kind == CK_VERIFIER && !chans[i]->gone &&
		    chans[i]->wid == c->wid && chans[i]->seq == c->seq) {
			v = chans[i];
			break;
		}
	if (v != NULL && v->done) {
		relay_forward(c, v);
		v->gone = 1;	/* used: closed in the loop */
		return;
	}
	/* a bound channel is a check that has begun: it waits as one */
	if ((v == NULL && waited < RELAY_LINK_WAIT_MS) ||
	    (v != NULL && v->fd != -1 && waited < RELAY_AUTH_WAIT_MS))
		return;
	if (v != NULL)
		v->gone = 1;
	log_event(LOG_WARNING, "verdict_missing", c->inb.session,
	    "{s:s, s:s}", "id", c->inb.msgid, "error", v == NULL ?
	    "no message for this payload reached the verifier" :
	    "the verifier gave no result for it");
	c->pending = 0;
	c->busy = 0;
	relay_verdict(c, VERDICT_LOCAL, 0, NULL);
}

/*
 * The whole payload: the verifier's members (the worker's object is
 * empty), in one object; then POSTed (--api) or written (--spool).  A
 * message the verifier refused goes nowhere: the worker hears why.
 */
static void
relay_forward(struct chan *c, struct chan *v)
{
	struct chan_verdict	 a;
	size_t			 len;
	long			 left;

	c->pending = 0;
	c->busy = 0;
	c->auth = v->auth;
	c->authed = 1;
	if (v->auth.reply != -1) {
		relay_verdict(c, VERDICT_REFUSED, v->auth.reply, v);
		return;
	}
	/* the worker's object is empty (relay_fields_check()): ours */
	len = 1 + v->fieldslen + 1;
	free(c->body);
	if ((c->body = malloc(len + 1)) == NULL) {
		relay_verdict(c, VERDICT_LOCAL, 0, NULL);
		return;
	}
	c->body[0] = '{';
	memcpy(c->body + 1, v->fields, v->fieldslen);
	c->body[len - 1] = '}';
	c->body[len] = '\0';
	clock_gettime(CLOCK_MONOTONIC, &c->t0);
	if (conf.spool != NULL) {
		relay_spool(c, c->body, len);
		return;
	}
	memset(&a, 0, sizeof(a));
	a.kind = VERDICT_LOCAL;
	if (conf.api == NULL) {
		relay_answer(c, &a);
		return;
	}
	if (c->h == NULL && (c->h = curl_easy_init()) == NULL) {
		relay_answer(c, &a);
		return;
	}
	curl_slist_free_all(c->hdrs);
	c->hdrs = NULL;
	firm_response_free(&c->resp);
	left = (long)conf.api_timeout * 1000;
	if (firm_prepare(&conf, c->h, "/inbound", c->body, len,
	    c->auth.idem, FIRM_RESPONSE_MAX, left, &c->resp, &c->hdrs) == -1) {
		relay_answer(c, &a);
		return;
	}
	curl_easy_setopt(c->h, CURLOPT_PRIVATE, c);
	if (curl_multi_add_handle(relay_multi, c->h) != CURLM_OK) {
		relay_answer(c, &a);
		return;
	}
	c->busy = 1;
}

/* Is the spool's file system under --spool-reserve? */
static int
relay_spool_full(void)
{
	return spool_full(conf.spool_fd, (unsigned long long)conf.spool_reserve);
}

/*
 * Write one payload into the spool directory: a temporary file, fsync,
 * a rename to <id>.json (never over another), fsync of the directory, by
 * one of spool.c's threads.  Nothing is lost: the sender hears 250 only
 * after that (relay_spooled()).
 */
static void
relay_spool(struct chan *c, const char *json, size_t len)
{
	struct spool_job	*j;

	if (relay_spool_fd == -1 || (j = calloc(1, sizeof(*j))) == NULL) {
		relay_verdict(c, VERDICT_LOCAL, 0, NULL);
		return;
	}
	(void)snprintf(j->name, sizeof(j->name), "%s.json", c->inb.msgid);
	j->arg = c;
	j->json = json;		/* c->body, kept until the job is done */
	j->len = len;
	c->spooling = 1;
	c->busy = 1;
	spool_submit(j);
}

/* Jobs of spool.c that are done: each message's answer goes back. */
static void
relay_spooled(void)
{
	struct spool_job	*j;
	struct chan		*c;

	while ((j = spool_done()) != NULL) {
		c = j->arg;
		c->spooling = 0;
		c->busy = 0;
		if (j->kind == VERDICT_LOCAL)
			log_event(LOG_ERR, "spool_error", c->inb.session,
			    "{s:s, s:s, s:s}", "id", c->inb.msgid, "file",
			    j->name, "error", strerror(j->error));
		if (c->fd != -1)
			relay_verdict(c, j->kind, 0, NULL);
		free(j);
	}
}

/* A transfer is over: the verdict goes back, the log says what FIRM said. */
static void
relay_done(CURL *h, CURLcode rc)
{
	struct chan_verdict	 v;
	struct chan		*c = NULL;
	char			 why[FIRM_ERROR_MAX + 1];
	long			 status;

	curl_easy_getinfo(h, CURLINFO_PRIVATE, (char **)&c);
	curl_multi_remove_handle(relay_multi, h);
	if (c == NULL)
		return;
	c->busy = 0;
	memset(&v, 0, sizeof(v));
	if (firm_finish(h, rc, &c->resp) == -1) {
		log_sanitize(why, sizeof(why), c->resp.error,
		    strlen(c->resp.error));
		log_event(LOG_WARNING, "firm_error", c->inb.session,
		    "{s:s, s:s, s:i, s:s, s:I}", "id", c->inb.msgid, "call",
		    "POST /inbound", "curl", c->resp.curl_error, "error", why,
		    "ms", (json_int_t)relay_ms_since(&c->t0));
		v.kind = c->resp.curl_error == CURLE_OPERATION_TIMEDOUT ?
		    VERDICT_TIMEOUT : VERDICT_UNREACHABLE;
	} else if ((status = c->resp.status) >= 200 && status < 300) {
		v.kind = VERDICT_ACCEPTED;
		v.status = (int32_t)status;
		metrics_set(M_FIRM_CONFIG_STATUS, 0);	/* key and URL work */
	} else if (FIRM_CONFIG_ERROR(status)) {
		/* our key or URL is wrong: FIRM's text is not the sender's */
		v.kind = VERDICT_HTTP;
		v.status = (int32_t)status;
		log_event(LOG_ERR, "firm_config_error", c->inb.session,
		    "{s:s, s:s, s:i}", "id", c->inb.msgid, "call",
		    "POST /inbound", "status", (int)status);
		metrics_add(M_FIRM_CONFIG_ERRORS, 1);
		metrics_set(M_FIRM_CONFIG_AT, (uint64_t)time(NULL));
		metrics_set(M_FIRM_CONFIG_STATUS, (uint64_t)status);
	} else {
		v.kind = VERDICT_HTTP;
		v.status = (int32_t)status;
		if (status >= 400 && status < 500 && status != 408 &&
		    status != 429)
			firm_error_text(c->resp.body ? c->resp.body : "",
			    c->resp.len, v.text, sizeof(v.text));
		log_event(LOG_WARNING, "firm_refused", c->inb.session,
		    "{s:s, s:s, s:i, s:s}", "id", c->inb.msgid, "call",
		    "POST /inbound", "status", (int)status, "error",
		    v.text[0] != '\0' ? v.text : "(no error text)");
	}
	metrics_firm(relay_ms_since(&c->t0) * 1000,
	    v.kind == VERDICT_ACCEPTED ? M_FIRM_2XX :
	    v.kind == VERDICT_TIMEOUT ? M_FIRM_TIMEOUT :
	    v.kind == VERDICT_HTTP && v.status >= 500 ? M_FIRM_5XX :
	    v.kind == VERDICT_HTTP && v.status >= 400 ? M_FIRM_4XX :
	    v.kind == VERDICT_HTTP && v.status >= 200 && v.status < 300 ?
	    M_FIRM_2XX : M_FIRM_UNREACHABLE);
	firm_response_free(&c->resp);
	curl_slist_free_all(c->hdrs);
	c->hdrs = NULL;
	free(c->body);
	c->body = NULL;
	if (c->fd != -1)
		relay_answer(c, &v);
}
