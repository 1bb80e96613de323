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

#define RELAY_CHAN_MAX		(2 * (MAX_MAX_SESSIONS + MAX_SPARE))
#define RELAY_BUFFERED_MAX	(1024UL * 1024 * 1024)	/* all channels */
#define RELAY_DNS_PER_CHAN	16	/* questions in flight, one worker */

struct chan;
struct dnsq {				/* a question libunbound works on */
	struct chan		*c;
	uint32_t		 reqid;
	int			 type;
	int			 async_id;
	int			 slot;		/* in c->dns[] */
};

struct chan {
	int			 fd;
	uint8_t			*in;		/* what the worker sent */
	size_t			 inlen;
	size_t			 incap;
	uint8_t			*out;		/* answers not yet written */
	size_t			 outlen;
	size_t			 outoff;
	size_t			 outcap;
	struct dnsq		*dns[RELAY_DNS_PER_CHAN];
	int			 busy;		/* a transfer in flight */
	uint32_t		 reqid;
	CURL			*h;
	struct curl_slist	*hdrs;
	struct firm_response	 resp;
	char			*body;		/* the payload being POSTed */
	struct chan_inbound	 inb;
	struct timespec		 t0;
};

static struct smtpd_conf	 conf;
static CURLM			*relay_multi;
static struct ub_ctx		*relay_ub;
static struct chan		**chans;
static size_t			 nchans;
static size_t			 maxbody;
static size_t			 buffered;	/* incap of every channel */
static volatile sig_atomic_t	 relay_drain;

static __dead void relay_main(void);
static void	relay_metrics(size_t);
static void	relay_sig(int);
static void	fetcher_sig(int);
static void	fetcher_signals(void);
static void	relay_ctl(int);
static void	relay_chan_read(struct chan *);
static void	relay_chan_write(struct chan *);
static void	relay_chan_close(size_t);
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
static void	relay_dns_answer(struct chan *, uint32_t, int,
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

/* The master's metrics region, at METRICS_FD: this process's slot. */
static void
relay_metrics(size_t slot)
{
	struct metrics_map	*m;
	struct stat		 st;
	size_t			 n;

	if (fstat(METRICS_FD, &st) == -1 || (size_t)st.st_size <
	    metrics_size(METRICS_SLOT_WORKERS))
		return;
	n = ((size_t)st.st_size - sizeof(struct metrics_map)) /
	    sizeof(struct metrics_slot);
	if ((m = metrics_attach(METRICS_FD, n)) == NULL ||
	    m->magic != METRICS_MAGIC)
		return;
	metrics_use(m, slot);
	close(METRICS_FD);
}

static void
relay_sig(int sig)
{
	if (sig == SIGTERM || sig == SIGINT)
		relay_drain = 1;
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
	static const int	 caught[] = { SIGTERM, SIGINT, 0 };
	static const int	 ignored[] = { SIGHUP, SIGUSR1, 0 };
	struct curl_waitfd	*wfd;
	struct timespec		 drain_start = { 0, 0 };
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
	    (wfd = calloc(RELAY_CHAN_MAX + 2, sizeof(*wfd))) == NULL)
		fatal("relay: channel table");
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
	relay_dns_setup();	/* reads /etc/resolv.conf */
	sandbox_relay(&conf);
	probe_resolvers_start(&conf);	/* warns of a silent resolver */

	for (;;) {
		if (relay_drain && drain_start.tv_sec == 0)
			clock_gettime(CLOCK_MONOTONIC, &drain_start);
		/* draining: serve the channels we have, then leave */
		if (relay_drain && (nchans == 0 || relay_ms_since(&drain_start) >
		    (conf.grace + conf.api_timeout + 5) * 1000))
			_exit(0);
		wfd[0].fd = RELAY_CTL_FD;
		wfd[0].events = CURL_WAIT_POLLIN;
		wfd[0].revents = 0;
		for (i = 0, n = 1; i < nchans; i++, n++) {
			wfd[n].fd = chans[i]->fd;
			wfd[n].events = 0;
			wfd[n].revents = 0;
			if (chans[i]->outoff < chans[i]->outlen)
				wfd[n].events |= CURL_WAIT_POLLOUT;
			else if (!chans[i]->busy)
				wfd[n].events |= CURL_WAIT_POLLIN;
		}
		/* libunbound's thread says: answers are ready */
		wfd[n].fd = ub_fd(relay_ub);
		wfd[n].events = CURL_WAIT_POLLIN;
		wfd[n].revents = 0;
		if (curl_multi_poll(relay_multi, wfd, (unsigned)n + 1, 1000,
		    NULL) != CURLM_OK)
			fatalx("relay: curl_multi_poll");
		curl_multi_perform(relay_multi, &running);
		while ((m = curl_multi_info_read(relay_multi, &left)) != NULL)
			if (m->msg == CURLMSG_DONE)
				relay_done(m->easy_handle, m->data.result);
		if (wfd[n].revents != 0 && ub_process(relay_ub) != 0)
			log_warnx("relay: ub_process failed");
		/* channels first: the indexes of wfd follow chans[] */
		for (i = n - 1; i >= 1; i--) {
			struct chan *c = chans[i - 1];

			if (wfd[i].revents & CURL_WAIT_POLLOUT)
				relay_chan_write(c);
			if (wfd[i].revents & CURL_WAIT_POLLIN)
				relay_chan_read(c);
			if (c->fd == -1)
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

/* The master hands over a worker's channel; its end means ours. */
static void
relay_ctl(int fd)
{
	struct chan	*c;
	int		 n, cfd;

	for (;;) {
		n = fd_recv(fd, &cfd);
		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0)
			_exit(0);	/* the master is gone */
		if (cfd == -1)
			continue;
		if (nchans == RELAY_CHAN_MAX ||
		    (c = calloc(1, sizeof(*c))) == NULL) {
			log_warnx("relay: no room for another channel");
			close(cfd);
			continue;
		}
		(void)fcntl(cfd, F_SETFL, O_NONBLOCK);
		c->fd = cfd;
		chans[nchans++] = c;
	}
}

static void
relay_chan_close(size_t i)
{
	struct chan	*c = chans[i];
	size_t		 j;

	for (j = 0; j < RELAY_DNS_PER_CHAN; j++) {
		if (c->dns[j] == NULL)
			continue;
		/* libunbound will not call back for it */
		(void)ub_cancel(relay_ub, c->dns[j]->async_id);
		free(c->dns[j]);
	}
	free(c->out);
	if (c->h != NULL) {
		if (c->busy)
			curl_multi_remove_handle(relay_multi, c->h);
		curl_easy_cleanup(c->h);
	}
	curl_slist_free_all(c->hdrs);
	firm_response_free(&c->resp);
	free(c->body);
	free(c->in);
	buffered -= c->incap;
	if (c->fd != -1)
		close(c->fd);
	free(c);
	chans[i] = chans[--nchans];
}

/*
 * Read what the worker sends; act on each complete message.  One
 * request at a time: a worker waits for its answer.
 */
static void
relay_chan_read(struct chan *c)
{
	struct chan_hdr	 h;
	ssize_t		 n, len;
	size_t		 want;

	for (;;) {
		len = chan_decode(c->in, c->inlen, maxbody, &h);
		if (len == -1) {
			log_warnx("relay: a worker broke the channel's rules; "
			    "closing it");
			close(c->fd);
			c->fd = -1;
			return;
		}
		if (len > 0) {
			if (h.type == CHAN_DNS_QUERY && !c->busy)
				relay_dns_query(c, &h, c->in + sizeof(h),
				    (size_t)len - sizeof(h));
			else if (h.type == CHAN_INBOUND && !c->busy)
				relay_inbound(c, &h, c->in + sizeof(h),
				    (size_t)len - sizeof(h));
			else {
				log_warnx("relay: unexpected message type %u",
				    (unsigned)h.type);
				close(c->fd);
				c->fd = -1;
			}
			if (c->fd == -1)
				return;
			memmove(c->in, c->in + len, c->inlen - (size_t)len);
			c->inlen -= (size_t)len;
			if (c->busy)
				return;	/* the worker waits for FIRM */
			continue;
		}
		want = c->inlen < sizeof(h) ? sizeof(h) :
		    sizeof(h) + h.len;
		if (want <= c->inlen)
			want = c->inlen + 1;
		if (want > c->incap) {
			size_t ocap = c->incap, ncap;

			ncap = relay_grow_to(ocap, want, maxbody + sizeof(h));
			/* workers together cannot make us hold more */
			if (buffered - ocap + ncap > RELAY_BUFFERED_MAX) {
				log_warnx("relay: %zu bytes buffered for the "
				    "workers; closing a channel", buffered);
				close(c->fd);
				c->fd = -1;
				return;
			}
			if (relay_grow(c, &c->in, &c->incap, ncap) == -1)
				return;
			buffered += ncap - ocap;
		}
		n = read(c->fd, c->in + c->inlen, c->incap - c->inlen);
		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			close(c->fd);	/* the worker is gone */
			c->fd = -1;
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
		close(c->fd);
		c->fd = -1;
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
		if (n <= 0) {
			close(c->fd);
			c->fd = -1;
			return;
		}
		c->outoff += (size_t)n;
	}
	c->outoff = c->outlen = 0;
}

static void
relay_answer(struct chan *c, const struct chan_verdict *v)
{
	relay_queue(c, CHAN_VERDICT, c->reqid, v, sizeof(*v));
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
	int		 type, slot;

	if (dns_query_check(body, len, &type, name, sizeof(name)) == -1) {
		log_warnx("relay: a worker sent a malformed DNS question; "
		    "closing its channel");
		close(c->fd);
		c->fd = -1;
		return;
	}
	for (slot = 0; slot < RELAY_DNS_PER_CHAN; slot++)
		if (c->dns[slot] == NULL)
			break;
	if (slot == RELAY_DNS_PER_CHAN || (q = calloc(1, sizeof(*q))) ==
	    NULL) {
		relay_dns_answer(c, h->id, DNS_TEMPFAIL, NULL);
		return;
	}
	q->c = c;
	q->reqid = h->id;
	q->type = type;
	q->slot = slot;
	if (ub_resolve_async(relay_ub, name, type, 1 /* IN */, q,
	    relay_dns_done, &q->async_id) != 0) {
		free(q);
		relay_dns_answer(c, h->id, DNS_TEMPFAIL, NULL);
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
	relay_dns_answer(q->c, q->reqid, status, status == DNS_NOERROR ?
	    res : NULL);
	free(q);
	if (res != NULL)
		ub_resolve_free(res);
}

/* Records as dns.c hands them to a worker: plain data, no wire names. */
static void
relay_dns_answer(struct chan *c, uint32_t id, int status,
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
	relay_queue(c, CHAN_DNS_ANSWER, id, out, olen);
}


/* A payload to POST: checked, signed, handed to libcurl. */
static void
relay_inbound(struct chan *c, const struct chan_hdr *h, const uint8_t *body,
    size_t len)
{
	struct chan_verdict	 v;
	const char		*json;
	size_t			 jsonlen;
	long			 left;

	c->reqid = h->id;
	memset(&v, 0, sizeof(v));
	v.kind = VERDICT_LOCAL;
	if (chan_inbound_check(body, len, &c->inb, &json, &jsonlen) == -1) {
		log_warnx("relay: a worker sent a malformed payload; closing "
		    "its channel");
		close(c->fd);
		c->fd = -1;
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &c->t0);
	if (conf.api == NULL) {
		relay_answer(c, &v);	/* --spool: nothing to POST to */
		return;
	}
	free(c->body);
	if ((c->body = malloc(jsonlen)) == NULL) {
		relay_answer(c, &v);
		return;
	}
	memcpy(c->body, json, jsonlen);
	if (c->h == NULL && (c->h = curl_easy_init()) == NULL) {
		relay_answer(c, &v);
		return;
	}
	curl_slist_free_all(c->hdrs);
	c->hdrs = NULL;
	firm_response_free(&c->resp);
	left = (long)conf.api_timeout * 1000;
	if (firm_prepare(&conf, c->h, "/inbound", c->body, jsonlen,
	    c->inb.idem, FIRM_RESPONSE_MAX, left, &c->resp, &c->hdrs) == -1) {
		relay_answer(c, &v);
		return;
	}
	curl_easy_setopt(c->h, CURLOPT_PRIVATE, c);
	if (curl_multi_add_handle(relay_multi, c->h) != CURLM_OK) {
		relay_answer(c, &v);
		return;
	}
	c->busy = 1;
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
