/*
 * smtpd-relay's look at what the server depends on outside: one
 * question to each resolver, and the one signed call to FIRM of
 * smtpd -n --online.
 *
 * The question is ". NS", sent from a connected UDP socket of its own
 * to each resolver at once, so that a port nobody serves fails at once
 * (ICMP port unreachable) and a silent one after PROBE_TIMEOUT_MS.  Any
 * answer with our id counts, NOERROR or NXDOMAIN (a resolver that
 * serves only its own zones answers the root so); REFUSED or SERVFAIL
 * says it will not resolve for us.
 *
 * At the relay's start the questions go from a thread of their own,
 * started once the relay is sandboxed (the thread shares its filter):
 * the relay serves from the first moment, and a resolver that does not
 * answer only costs a resolver_unreachable warning in the log.
 */

#include <sys/types.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "smtpd.h"
#include "relay.h"

#define PROBE_TIMEOUT_MS	2000
#define PROBE_QUERY_LEN		17	/* header, root name, type, class */

static int	probe_send(const struct resolver *, uint16_t);
static const char *probe_answer(int, uint16_t);
static void	*probe_thread(void *);

/*
 * One question to each of conf's resolvers, all at once, and at most
 * timeout_ms for the answers.  why[i] is NULL when resolver i answered,
 * else what went wrong.  Returns how many did not answer.
 */
size_t
probe_resolvers(const struct smtpd_conf *conf, int timeout_ms,
    const char *why[MAX_RESOLVERS])
{
	struct pollfd	 pfd[MAX_RESOLVERS];
	struct timespec	 deadline, now, ts;
	uint16_t	 id[MAX_RESOLVERS];
	size_t		 i, n = conf->nresolvers, left = 0, failed = 0;
	long		 ms;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	for (i = 0; i < n; i++) {
		why[i] = NULL;
		id[i] = (uint16_t)arc4random();
		pfd[i].events = POLLIN;
		if ((pfd[i].fd = probe_send(&conf->resolvers[i], id[i])) ==
		    -1)
			why[i] = strerror(errno);
		else
			left++;
	}
	while (left > 0) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		ms = (deadline.tv_sec - now.tv_sec) * 1000 +
		    (deadline.tv_nsec - now.tv_nsec) / 1000000;
		if (ms <= 0)
			break;
		ts.tv_sec = ms / 1000;
		ts.tv_nsec = (ms % 1000) * 1000000L;
		if (ppoll(pfd, n, &ts, NULL) == -1 && errno != EINTR)
			break;
		for (i = 0; i < n; i++) {
			if (pfd[i].fd == -1 || pfd[i].revents == 0)
				continue;
			pfd[i].revents = 0;
			why[i] = probe_answer(pfd[i].fd, id[i]);
			if (why[i] == NULL || why[i][0] != '\0') {
				close(pfd[i].fd);
				pfd[i].fd = -1;
				left--;
			}
		}
	}
	for (i = 0; i < n; i++) {
		if (pfd[i].fd != -1) {
			close(pfd[i].fd);
			why[i] = "no answer within 2 seconds";
		}
		if (why[i] != NULL)
			failed++;
	}
	return failed;
}

/* The question ". NS" with id to r: a connected socket, or -1. */
static int
probe_send(const struct resolver *r, uint16_t id)
{
	struct sockaddr_storage	 ss;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&ss;
	socklen_t		 len;
	uint8_t			 q[PROBE_QUERY_LEN] = {
		0, 0,		/* id */
		0x01, 0x00,	/* a query, recursion desired */
		0, 1, 0, 0, 0, 0, 0, 0,	/* one question */
		0,		/* the root */
		0, 2,		/* NS */
		0, 1		/* IN */
	};
	int			 fd, saved;

	memset(&ss, 0, sizeof(ss));
	if (r->af == AF_INET) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)r->port);
		memcpy(&sin->sin_addr, r->addr, 4);
		len = sizeof(*sin);
	} else {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)r->port);
		memcpy(&sin6->sin6_addr, r->addr, 16);
		len = sizeof(*sin6);
	}
	q[0] = (uint8_t)(id >> 8);
	q[1] = (uint8_t)id;
	if ((fd = socket(r->af, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) == -1)
		return -1;
	if (connect(fd, (struct sockaddr *)&ss, len) == -1 ||
	    send(fd, q, sizeof(q), 0) != (ssize_t)sizeof(q)) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

/*
 * Read what came on fd: NULL for an answer to id, "" for nothing yet
 * (another datagram), else what went wrong.
 */
static const char *
probe_answer(int fd, uint16_t id)
{
	uint8_t	 a[512];
	ssize_t	 n;

	if ((n = recv(fd, a, sizeof(a), 0)) == -1)
		return errno == EAGAIN || errno == EINTR ? "" :
		    errno == ECONNREFUSED ? "nothing answers on that port" :
		    strerror(errno);
	if (n < 12 || (a[2] & 0x80) == 0 || a[0] != (uint8_t)(id >> 8) ||
	    a[1] != (uint8_t)id)
		return "";
	switch (a[3] & 0x0f) {
	case 0:		/* NOERROR */
	case 3:		/* NXDOMAIN */
		return NULL;
	case 2:
		return "answered SERVFAIL";
	case 5:
		return "answered REFUSED";
	default:
		return "answered with an error";
	}
}

static void *
probe_thread(void *arg)
{
	const struct smtpd_conf	*conf = arg;
	const char		*why[MAX_RESOLVERS];
	size_t			 i;

	(void)probe_resolvers(conf, PROBE_TIMEOUT_MS, why);
	for (i = 0; i < conf->nresolvers; i++)
		if (why[i] != NULL)
			log_event(LOG_WARNING, "resolver_unreachable", NULL,
			    "{s:s, s:s}", "resolver", conf->resolvers[i].name,
			    "error", why[i]);
	return NULL;
}

/*
 * The relay, once sandboxed: ask each resolver one question beside the
 * relay's work, and warn of each that does not answer.
 */
void
probe_resolvers_start(const struct smtpd_conf *conf)
{
	pthread_t	 t;

	if (conf->nresolvers == 0 || conf->inetd)
		return;
	if (pthread_create(&t, NULL, probe_thread,
	    (void *)(uintptr_t)conf) != 0) {
		log_warnx("relay: cannot start the resolver probe");
		return;
	}
	(void)pthread_detach(t);
}

/*
 * smtpd -n --online, smtpd-relay's part (the master links no HTTP
 * client): each resolver answers one question, and FIRM one signed GET
 * of the banned subnets, over TLS verified with --ca-file for https.
 * Each failure is one line on stderr.  Returns 0 when all passed, else
 * 1.
 */
int
probe_online(struct smtpd_conf *conf)
{
	struct firm_response	 r;
	const char		*why[MAX_RESOLVERS];
	size_t			 i;
	int			 failed = 0;

	if (conf->nresolvers == 0) {
		fprintf(stderr, "smtpd: online: no --resolver and no name "
		    "server in /etc/resolv.conf\n");
		failed = 1;
	}
	(void)probe_resolvers(conf, PROBE_TIMEOUT_MS, why);
	for (i = 0; i < conf->nresolvers; i++)
		if (why[i] != NULL) {
			fprintf(stderr, "smtpd: online: resolver %s: %s\n",
			    conf->resolvers[i].name, why[i]);
			failed = 1;
		}
	if (conf->api == NULL)
		return failed;
	/* the key and the CA bundle; the API host resolved now */
	conf->config_test = 0;
	firm_setup_priv(conf);
	sandbox_drop_user(conf);	/* nothing more to read as root */
	if (firm_request(conf, FIRM_BANNED_SUBNETS, NULL, 0, NULL,
	    FIRM_RESPONSE_MAX, &r) == -1) {
		fprintf(stderr, "smtpd: online: FIRM %s: GET %s: %s\n",
		    conf->api, FIRM_BANNED_SUBNETS, r.error);
		failed = 1;
	} else if (r.status < 200 || r.status > 299) {
		fprintf(stderr, "smtpd: online: FIRM %s: GET %s: HTTP "
		    "%ld%s\n", conf->api, FIRM_BANNED_SUBNETS, r.status,
		    FIRM_CONFIG_ERROR(r.status) ? " (the --api-secret key or "
		    "the --api URL is wrong)" : "");
		failed = 1;
	}
	firm_response_free(&r);
	return failed;
}
