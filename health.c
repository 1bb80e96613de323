/*
 * The health process (SPEC section 7): with --health ADDR:PORT the
 * master starts it by exec, as smtpd health FLAGS..., with the listening
 * socket it bound as descriptor 3, the ban table (read-only) as 4 and
 * the metrics region as METRICS_FD, and nothing else of the master's: a
 * fresh image, which never held the TLS key.  It answers HTTP:
 *
 *	GET /healthz	200 "ok", or 503 and the reason in one line
 *	GET /metrics	the Prometheus text format, version 0.0.4
 *
 * HEAD as GET without the body; any other method 405, any other path
 * 404, a request that is not HTTP 400.  It reads at most
 * HEALTH_REQUEST_MAX octets of a request and waits HEALTH_TIMEOUT_MS
 * for them; HEALTH_CONN_MAX are served at once and one more is turned
 * away, so a slow or huge request holds nothing.  Every answer closes
 * its connection.  It is sandboxed as a worker is, with its one
 * listening socket instead of the SMTP ones, and reads nothing but the
 * metrics region and the ban table.
 */

#include <sys/types.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "smtpd.h"


struct hconn {
	int		 fd;		/* -1: free */
	char		 in[HEALTH_REQUEST_MAX];
	size_t		 inlen;
	char		*out;
	size_t		 outlen;
	size_t		 outoff;
	struct timespec	 deadline;
};

static struct hconn	 conns[HEALTH_CONN_MAX];
static struct smtpd_conf health_conf;
static size_t		 health_nslots;	/* of the region, by its size */

static const struct metrics_map *health_metrics(void);
static void	health_sig(int);
static __dead void health_serve(const struct smtpd_conf *,
		    const struct metrics_map *);
static void	health_accept(int);
static void	health_read(struct hconn *, const struct smtpd_conf *,
		    const struct metrics_map *);
static void	health_answer(struct hconn *, const struct smtpd_conf *,
		    const struct metrics_map *);
static void	health_reply(struct hconn *, int, const char *, const char *,
		    const char *, size_t, int);
static void	health_write(struct hconn *);
static void	health_close(struct hconn *);
static long long health_ms_left(const struct timespec *);

static const char *const session_results[] = { "served",
    "refused_max_sessions", "refused_max_per_ip", "banned", "early_talker",
    "refused_conn_rate" };
static const char *const message_statuses[] = { "accepted", "rejected",
    "tempfail" };
static const char *const firm_classes[] = { "2xx", "4xx", "5xx", "timeout",
    "unreachable" };
static const char *const verdicts[] = { "temperror", "fail", "none", "weak",
    "strong" };
static const char *const sign_results[] = { "signed", "refused" };
/* Counters by one label, each value an index into its table. */
static const struct {
	const char		*name;
	const char		*label;
	const char *const	*values;
	size_t			 n;
	enum metric		 first;
	const char		*help;
} labelled[] = {
	{ "smtpd_sessions_total", "result", session_results, 6,
	    M_SESS_SERVED, "SMTP connections, by outcome." },
	{ "smtpd_messages_total", "status", message_statuses, 3,
	    M_MSG_ACCEPTED, "Messages at the end of data, by reply." },
	{ "smtpd_firm_responses_total", "class", firm_classes, 5,
	    M_FIRM_2XX, "Outcomes of POST /inbound." },
	{ "smtpd_auth_verdicts_total", "verdict", verdicts, 5, M_VERDICT,
	    "Sender authentication verdicts." },
	{ "smtpd_tls_signatures_total", "result", sign_results, 2,
	    M_TLS_SIGNED, "TLS key operations the master did or refused "
	    "for workers." },
};
/* Metrics of one sample: a sum over the slots (slot -1) or one gauge. */
static const struct {
	const char	*name;
	const char	*type;
	int		 slot;
	enum metric	 k;
	const char	*help;
} singles[] = {
	{ "smtpd_sessions_active", "gauge", METRICS_SLOT_MASTER,
	    M_SESSIONS_ACTIVE, "Sessions being served now." },
	{ "smtpd_stress", "gauge", METRICS_SLOT_MASTER, M_STRESS,
	    "1 while fewer than a tenth of the sessions are free." },
	{ "smtpd_dns_queries_total", "counter", -1, M_DNS_QUERIES,
	    "DNS questions the workers asked." },
	{ "smtpd_dns_cache_answers_total", "counter", -1, M_DNS_CACHED,
	    "DNS questions the relay answered from the answers it keeps." },
	{ "smtpd_banlist_last_success_timestamp_seconds", "gauge",
	    METRICS_SLOT_FETCHER, M_BANLIST_LAST_OK,
	    "Time of the last good ban-list poll (0: none yet)." },
	{ "smtpd_banlist_poll_failures", "gauge", METRICS_SLOT_FETCHER,
	    M_BANLIST_FAILURES, "Ban-list polls failed in a row." },
	{ "smtpd_worker_deaths_total", "counter", -1, M_WORKER_DEATHS,
	    "Workers that died of a signal or failed." },
	{ "smtpd_dnsbl_refused_total", "counter", -1, M_DNSBL_REFUSED,
	    "Sessions refused at the greeting by DNS block lists." },
	{ "smtpd_firm_config_errors_total", "counter", METRICS_SLOT_RELAY,
	    M_FIRM_CONFIG_ERRORS, "POST /inbound answered 401, 403, 404 or "
	    "405: our key or URL is wrong." },
	{ "smtpd_log_lines_dropped_total", "counter", -1, M_LOG_DROPPED,
	    "Log lines dropped because standard output was full." },
	{ "smtpd_start_time_seconds", "gauge", METRICS_SLOT_MASTER,
	    M_START_TIME, "When the master started." },
	{ "smtpd_draining", "gauge", METRICS_SLOT_MASTER, M_DRAINING,
	    "1 while --drain keeps serving before the stop." },
	{ "smtpd_tls_certificate_expiry_timestamp_seconds", "gauge",
	    METRICS_SLOT_MASTER, M_TLS_CERT_EXPIRY,
	    "notAfter of --tls-cert (0: no certificate)." },
};

/*
 * smtpd health FLAGS...: our flags, then what the master handed over,
 * checked, then the sandbox, then HTTP.
 */
__dead void
health_main(int argc, char *argv[])
{
	static const int	 caught[] = { SIGTERM, SIGINT, 0 };
	static const int	 ignored[] = { SIGHUP, SIGUSR1, 0 };
	struct smtpd_conf	*conf = &health_conf;
	const struct metrics_map *m;
	socklen_t		 len = sizeof(int);
	int			 on = 0;

	conf_init(conf, argc, argv);
	conf_user(conf);
	log_init(conf->debug ? STDOUT_FILENO : -1, conf->verbose);
	log_setproc("health");
	signals_set(health_sig, caught, ignored);
	json_object_seed(0);	/* reads /dev/urandom now, not sandboxed */
	if (getsockopt(HEALTH_LISTEN_FD, SOL_SOCKET, SO_ACCEPTCONN, &on,
	    &len) == -1 || !on)
		fatalx("health: no listening socket (smtpd starts this "
		    "process itself)");
	conf->health_l.fd = HEALTH_LISTEN_FD;
	if ((m = health_metrics()) == NULL)
		fatalx("health: no metrics region");
	conf->banlist = banlist_map(HEALTH_TABLE_FD,
	    banlist_region_size(BANLIST_HALF_SIZE), 0);
	(void)close(HEALTH_TABLE_FD);
	sandbox_health(conf);
	health_serve(conf, m);
}

/* SIGTERM, SIGINT: leave. */
static void
health_sig(int sig)
{
	(void)sig;
	smtpd_stop = 1;
}

/*
 * The master's metrics region, at METRICS_FD, mapped read-only: this
 * process only sums it.  How many slots it has comes from its size
 * (sealed: it cannot change), never from a byte inside it.  NULL if it
 * is not one.
 */
static const struct metrics_map *
health_metrics(void)
{
	const struct metrics_map	*m;
	struct stat			 st;
	void				*p;

	if (fstat(METRICS_FD, &st) == -1 || st.st_size < 0 ||
	    (size_t)st.st_size < metrics_size(METRICS_SLOT_WORKERS))
		return NULL;
	p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, METRICS_FD,
	    0);
	(void)close(METRICS_FD);
	if (p == MAP_FAILED)
		return NULL;
	m = p;
	if (m->magic != METRICS_MAGIC)
		return NULL;
	health_nslots = (size_t)st.st_size / metrics_stride() - 1;
	return m;
}

static __dead void
health_serve(const struct smtpd_conf *conf, const struct metrics_map *m)
{
	struct pollfd	 pfd[HEALTH_CONN_MAX + 1];
	sigset_t	 none;
	size_t		 i;
	long long	 ms, wait;
	int		 lfd = conf->health_l.fd;

	for (i = 0; i < HEALTH_CONN_MAX; i++)
		conns[i].fd = -1;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (;;) {
		if (smtpd_stop)
			_exit(0);
		wait = 1000;
		pfd[0].fd = lfd;
		pfd[0].events = POLLIN;
		for (i = 0; i < HEALTH_CONN_MAX; i++) {
			pfd[i + 1].fd = conns[i].fd;
			pfd[i + 1].events = conns[i].out != NULL ? POLLOUT :
			    POLLIN;
			if (conns[i].fd == -1)
				continue;
			if ((ms = health_ms_left(&conns[i].deadline)) <= 0) {
				health_close(&conns[i]);
				pfd[i + 1].fd = -1;
			} else if (ms < wait)
				wait = ms;
		}
		if (poll(pfd, HEALTH_CONN_MAX + 1, (int)wait) == -1) {
			if (errno == EINTR)
				continue;
			fatal("health: poll");
		}
		for (i = 0; i < HEALTH_CONN_MAX; i++) {
			if (pfd[i + 1].fd == -1 || pfd[i + 1].revents == 0)
				continue;
			if (conns[i].out != NULL)
				health_write(&conns[i]);
			else
				health_read(&conns[i], conf, m);
		}
		if (pfd[0].revents & POLLIN)
			health_accept(lfd);
		if (getppid() == 1)
			_exit(0);	/* the master is gone */
	}
}

static long long
health_ms_left(const struct timespec *deadline)
{
	struct timespec	 now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (deadline->tv_sec - now.tv_sec) * 1000LL +
	    (deadline->tv_nsec - now.tv_nsec) / 1000000;
}

static void
health_accept(int lfd)
{
	struct hconn	*c = NULL;
	size_t		 i;
	int		 fd;

	if ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) ==
	    -1)
		return;
	for (i = 0; i < HEALTH_CONN_MAX && c == NULL; i++)
		if (conns[i].fd == -1)
			c = &conns[i];
	if (c == NULL) {
		close(fd);	/* all busy: the next scrape is soon */
		return;
	}
	c->fd = fd;
	c->inlen = 0;
	clock_gettime(CLOCK_MONOTONIC, &c->deadline);
	c->deadline.tv_sec += HEALTH_TIMEOUT_MS / 1000;
}

static void
health_read(struct hconn *c, const struct smtpd_conf *conf,
    const struct metrics_map *m)
{
	ssize_t	 n;

	n = read(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		health_close(c);
		return;
	}
	c->inlen += (size_t)n;
	if (memmem(c->in, c->inlen, "\r\n\r\n", 4) != NULL ||
	    memmem(c->in, c->inlen, "\n\n", 2) != NULL)
		health_answer(c, conf, m);
	else if (c->inlen == sizeof(c->in))
		health_reply(c, 431, "Request Header Fields Too Large", NULL,
		    "request too large\n", 18, 0);
}

/* The request line, checked; the answer made. */
static void
health_answer(struct hconn *c, const struct smtpd_conf *conf,
    const struct metrics_map *m)
{
	static char	 body[HEALTH_OUT_MAX];
	char		 why[256];
	const char	*sp, *path, *end, *line = c->in;
	size_t		 mlen, plen;
	int		 head, n;

	end = memchr(line, '\n', c->inlen);
	if ((sp = memchr(line, ' ', (size_t)(end - line))) == NULL) {
		health_reply(c, 400, "Bad Request", NULL, "bad request\n", 12,
		    0);
		return;
	}
	mlen = (size_t)(sp - line);
	path = sp + 1;
	plen = strcspn(path, " ?\r\n");
	if (path + plen > end || (path[plen] != ' ' && path[plen] != '?') ||
	    memmem(path, (size_t)(end - path), " HTTP/1.", 8) == NULL) {
		health_reply(c, 400, "Bad Request", NULL, "bad request\n", 12,
		    0);
		return;
	}
	head = mlen == 4 && memcmp(line, "HEAD", 4) == 0;
	if (!head && !(mlen == 3 && memcmp(line, "GET", 3) == 0)) {
		health_reply(c, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n",
		    "method not allowed\n", 19, 0);
		return;
	}
	if (plen == 8 && memcmp(path, "/healthz", 8) == 0) {
		if (health_check(m, conf, why, sizeof(why)))
			health_reply(c, 200, "OK", NULL, "ok\n", 3, head);
		else {
			n = snprintf(body, sizeof(body), "%s\n", why);
			health_reply(c, 503, "Service Unavailable", NULL, body,
			    (size_t)n, head);
		}
	} else if (plen == 8 && memcmp(path, "/metrics", 8) == 0) {
		if ((n = health_render(m, conf, body, sizeof(body))) < 0)
			health_reply(c, 500, "Internal Server Error", NULL,
			    "metrics too long\n", 17, head);
		else
			health_reply(c, 200, "OK", NULL, body, (size_t)n, head);
	} else
		health_reply(c, 404, "Not Found", NULL, "not found\n", 10, head);
}

static void
health_reply(struct hconn *c, int status, const char *reason,
    const char *extra, const char *body, size_t len, int head)
{
	char	 hdr[512];
	int	 n;

	n = snprintf(hdr, sizeof(hdr), "HTTP/1.1 %d %s\r\n"
	    "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
	    "Content-Length: %zu\r\n%sConnection: close\r\n\r\n", status,
	    reason, len, extra != NULL ? extra : "");
	if (n < 0 || (size_t)n >= sizeof(hdr) ||
	    (c->out = malloc((size_t)n + len)) == NULL) {
		health_close(c);
		return;
	}
	memcpy(c->out, hdr, (size_t)n);
	c->outlen = (size_t)n;
	if (!head) {
		memcpy(c->out + n, body, len);
		c->outlen += len;
	}
	c->outoff = 0;
	health_write(c);
}

static void
health_write(struct hconn *c)
{
	ssize_t	 n;

	while (c->outoff < c->outlen) {
		n = write(c->fd, c->out + c->outoff, c->outlen - c->outoff);
		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0)
			break;
		c->outoff += (size_t)n;
	}
	health_close(c);
}

static void
health_close(struct hconn *c)
{
	if (c->fd != -1)
		close(c->fd);
	c->fd = -1;
	free(c->out);
	c->out = NULL;
	c->outlen = c->outoff = c->inlen = 0;
}

/*
 * One value of one slot, as it is: any bytes at all may be there (a
 * worker writes its own slot), so a value is only ever printed, summed
 * (wrapping) or compared, never used as an index, a divisor or a size.
 */
static uint64_t
metrics_get(const struct metrics_map *m, size_t slot, enum metric k)
{
	const struct metrics_slot	*s;

	if (slot >= health_nslots || k >= M_COUNT)
		return 0;
	s = (const struct metrics_slot *)(const void *)((const char *)m +
	    metrics_offset(slot));
	return __atomic_load_n(&s->v[k], __ATOMIC_RELAXED);
}

/* A counter over every slot: a sum modulo 2^64, as Prometheus resets. */
static uint64_t
metrics_sum(const struct metrics_map *m, enum metric k)
{
	uint64_t	 t = 0;
	size_t		 i;

	for (i = 0; i < health_nslots; i++)
		t += metrics_get(m, i, k);
	return t;
}

/*
 * Is the MX fit to serve (SPEC section 7)?  1, or 0 with the reason in
 * why: draining (--drain), no idle worker; with --api, no relay, no
 * fetcher, FIRM said our key or URL is wrong (FIRM_CONFIG_ERROR: until a later POST /inbound
 * gets a 2xx, or FIRM_CONFIG_HOLD seconds after the last such answer),
 * or no good ban-list poll for 3 --poll intervals.
 */
int
health_check(const struct metrics_map *m, const struct smtpd_conf *conf,
    char *why, size_t len)
{
	uint64_t	 last, status, now = (uint64_t)time(NULL);

	if (metrics_get(m, METRICS_SLOT_MASTER, M_DRAINING) != 0) {
		snprintf(why, len, "draining");
		return 0;
	}
	if (metrics_get(m, METRICS_SLOT_MASTER, M_WORKERS_IDLE) == 0) {
		snprintf(why, len, "no idle worker");
		return 0;
	}
	if (conf->api == NULL)
		return 1;
	if (metrics_get(m, METRICS_SLOT_MASTER, M_RELAY_UP) == 0) {
		snprintf(why, len, "the relay is down");
		return 0;
	}
	if (metrics_get(m, METRICS_SLOT_MASTER, M_FETCHER_UP) == 0) {
		snprintf(why, len, "the ban-list fetcher is down");
		return 0;
	}
	/* the relay's slot: only the relay sees FIRM's answers */
	status = metrics_get(m, METRICS_SLOT_RELAY, M_FIRM_CONFIG_STATUS);
	last = metrics_get(m, METRICS_SLOT_RELAY, M_FIRM_CONFIG_AT);
	if (status != 0 && now - last < FIRM_CONFIG_HOLD) {
		snprintf(why, len, "firm config error: HTTP %llu",
		    (unsigned long long)status);
		return 0;
	}
	last = metrics_get(m, METRICS_SLOT_FETCHER, M_BANLIST_LAST_OK);
	if (last == 0)
		last = metrics_get(m, METRICS_SLOT_MASTER, M_START_TIME);
	if (now > last && now - last > (uint64_t)(3 * conf->poll)) {
		snprintf(why, len, "no good ban-list poll for %llu s (%llu "
		    "failed in a row)", (unsigned long long)(now - last),
		    (unsigned long long)metrics_get(m, METRICS_SLOT_FETCHER,
		    M_BANLIST_FAILURES));
		return 0;
	}
	return 1;
}

#define PUT(...) do {							\
	int n_ = snprintf(buf + o, len - o, __VA_ARGS__);		\
	if (n_ < 0 || (size_t)n_ >= len - o)				\
		return -1;						\
	o += (size_t)n_;						\
} while (0)

/*
 * The Prometheus text format (0.0.4) of everything, into buf: its
 * length, or -1 when it does not fit.
 */
int
health_render(const struct metrics_map *m, const struct smtpd_conf *conf,
    char *buf, size_t len)
{
	size_t		 o = 0, i, j, r, nsub, nban, n6, ns;
	uint64_t	 cum, per[1000];
	char		 listed[1000];
	int		 code;

	for (i = 0; i < sizeof(labelled) / sizeof(labelled[0]); i++) {
		PUT("# HELP %s %s\n# TYPE %s counter\n", labelled[i].name,
		    labelled[i].help, labelled[i].name);
		for (j = 0; j < labelled[i].n; j++)
			PUT("%s{%s=\"%s\"} %llu\n", labelled[i].name,
			    labelled[i].label, labelled[i].values[j],
			    (unsigned long long)metrics_sum(m,
			    labelled[i].first + j));
	}

	/* replies: by code, the enum's entries of one code together */
	memset(per, 0, sizeof(per));
	memset(listed, 0, sizeof(listed));
	for (r = 0; r < REPLY_COUNT; r++) {
		if ((code = reply_code((int)r)) < 0 || code >= 1000)
			continue;
		per[code] += metrics_sum(m, M_REPLY + r);
		listed[code] = 1;
		/* --soft-bounce sent it as its 4xx: counted as sent */
		if (code >= 500 && code < 600 && (cum = metrics_sum(m,
		    M_REPLY_SOFT + r)) != 0) {
			per[code - 100] += cum;
			listed[code - 100] = 1;
		}
	}
	PUT("# HELP smtpd_replies_total SMTP replies sent, by code.\n"
	    "# TYPE smtpd_replies_total counter\n");
	for (code = 0; code < 1000; code++)
		if (listed[code])
			PUT("smtpd_replies_total{code=\"%d\"} %llu\n", code,
			    (unsigned long long)per[code]);

	PUT("# HELP smtpd_firm_request_seconds Time of POST /inbound calls "
	    "to FIRM.\n# TYPE smtpd_firm_request_seconds histogram\n");
	for (i = 0, cum = 0; i < METRICS_FIRM_BUCKETS; i++) {
		cum += metrics_sum(m, M_FIRM_BUCKET + i);
		if (i < METRICS_FIRM_BUCKETS - 1)
			PUT("smtpd_firm_request_seconds_bucket{le=\"%g\"} "
			    "%llu\n", (double)metrics_firm_le_us[i] / 1e6,
			    (unsigned long long)cum);
		else
			PUT("smtpd_firm_request_seconds_bucket{le=\"+Inf\"} "
			    "%llu\n", (unsigned long long)cum);
	}
	PUT("smtpd_firm_request_seconds_sum %.6f\n"
	    "smtpd_firm_request_seconds_count %llu\n",
	    (double)metrics_sum(m, M_FIRM_SUM_US) / 1e6,
	    (unsigned long long)metrics_sum(m, M_FIRM_COUNT));

	nsub = nban = n6 = ns = 0;
	if (conf->banlist != NULL)
		banlist_counts(conf->banlist, &nsub, &n6, &ns, &nban);
	PUT("# HELP smtpd_banlist_entries Entries of the ban lists in use.\n"
	    "# TYPE smtpd_banlist_entries gauge\n"
	    "smtpd_banlist_entries{list=\"subnets\"} %zu\n"
	    "smtpd_banlist_entries{list=\"senders\"} %zu\n", nsub + n6, ns);
	PUT("# HELP smtpd_workers Preforked workers, by state.\n"
	    "# TYPE smtpd_workers gauge\n"
	    "smtpd_workers{state=\"idle\"} %llu\n"
	    "smtpd_workers{state=\"busy\"} %llu\n",
	    (unsigned long long)metrics_get(m, METRICS_SLOT_MASTER,
	    M_WORKERS_IDLE), (unsigned long long)metrics_get(m,
	    METRICS_SLOT_MASTER, M_WORKERS_BUSY));
	PUT("# HELP smtpd_up Whether the relay and the fetcher run.\n"
	    "# TYPE smtpd_up gauge\n"
	    "smtpd_up{process=\"relay\"} %llu\n"
	    "smtpd_up{process=\"fetcher\"} %llu\n",
	    (unsigned long long)metrics_get(m, METRICS_SLOT_MASTER,
	    M_RELAY_UP), (unsigned long long)metrics_get(m,
	    METRICS_SLOT_MASTER, M_FETCHER_UP));
	for (i = 0; i < sizeof(singles) / sizeof(singles[0]); i++)
		PUT("# HELP %s %s\n# TYPE %s %s\n%s %llu\n", singles[i].name,
		    singles[i].help, singles[i].name, singles[i].type,
		    singles[i].name, (unsigned long long)(singles[i].slot < 0 ?
		    metrics_sum(m, singles[i].k) : metrics_get(m,
		    (size_t)singles[i].slot, singles[i].k)));
	return (int)o;
}
