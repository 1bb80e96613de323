/*
 * DNS block and allow lists (--dnsbl, --dnswl), after Postfix's
 * postscreen: as a session starts, before the greeting, the worker asks
 * every zone at once, through the relay (one libunbound cache for all
 * workers, which keeps each answer for its TTL), for the client's
 * address: IPv4 as its octets reversed, IPv6 as its 32 nibbles
 * reversed, type A.  A zone lists the client when an A record matches
 * its pattern; the weights of the zones that list it are summed (an
 * allow list's subtracted) and a sum that reaches --dnsbl-threshold
 * refuses the session at the greeting.
 *
 * Choices: all the questions together wait DNSBL_WAIT_MS at most; a
 * zone that has not answered by then, SERVFAIL, NXDOMAIN or a
 * malformed answer lists nobody.  A zone answering 127.255.255.x
 * (Spamhaus's codes for a query it will not answer: from an open or
 * public resolver, over its limit) is misconfigured here: it is logged
 * and lists nobody, whatever its other records.
 */

#include <sys/types.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include "smtpd.h"

struct dnsbl_score {
	const struct smtpd_conf	*conf;
	const char		*sid;
	int			 score;
	int			 top;		/* the block list that weighs
						   most of those listing */
	char			 answer[INET_ADDRSTRLEN];	/* its */
};

static int	dnsbl_name(const struct sockaddr_storage *, const char *,
		    char *, size_t);
static void	dnsbl_answer(void *, size_t, const struct dns_answer *);

/*
 * 1 when the client's score reaches --dnsbl-threshold: it is logged
 * (dnsbl_listed) and counted.  chan is the worker's channel to the
 * relay.
 */
int
dnsbl_listed(const struct smtpd_conf *conf, int chan,
    const struct sockaddr_storage *peer, const char *sid,
    const char *client_ip)
{
	struct dnsbl_score	 st;
	char			 name[MAX_DNSBL][DNS_NAME_MAX + 1];
	const char		*names[MAX_DNSBL];
	size_t			 i;

	if (conf->ndnsbl == 0)
		return 0;
	memset(&st, 0, sizeof(st));
	st.conf = conf;
	st.sid = sid;
	st.top = -1;
	for (i = 0; i < conf->ndnsbl; i++) {
		if (dnsbl_name(peer, conf->dnsbl[i].zone, name[i],
		    sizeof(name[i])) == -1)
			name[i][0] = '\0';	/* not asked */
		names[i] = name[i];
	}
	dns_chan_parallel(chan, names, conf->ndnsbl, DNS_T_A, dnsbl_answer,
	    &st, DNSBL_WAIT_MS);
	if (st.score < conf->dnsbl_threshold || st.top == -1)
		return 0;
	log_event(LOG_INFO, "dnsbl_listed", sid, "{s:s, s:s, s:s, s:i}",
	    "client_ip", client_ip, "zone", conf->dnsbl[st.top].zone,
	    "answer", st.answer, "score", st.score);
	metrics_add(M_DNSBL_REFUSED, 1);
	return 1;
}

/* The name to ask of zone for peer; 0, or -1. */
static int
dnsbl_name(const struct sockaddr_storage *peer, const char *zone,
    char *out, size_t outsz)
{
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)peer;
	const struct sockaddr_in *sin = (const struct sockaddr_in *)peer;
	const uint8_t		*a;
	size_t			 o = 0;
	int			 i, n;

	if (peer->ss_family == AF_INET)
		a = (const uint8_t *)&sin->sin_addr;
	else if (peer->ss_family == AF_INET6 &&
	    IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
		a = sin6->sin6_addr.s6_addr + 12;
	else if (peer->ss_family == AF_INET6) {
		a = sin6->sin6_addr.s6_addr;
		for (i = 15; i >= 0; i--) {
			n = snprintf(out + o, outsz - o, "%x.%x.",
			    a[i] & 0xf, a[i] >> 4);
			if (n < 0 || (size_t)n >= outsz - o)
				return -1;
			o += (size_t)n;
		}
		n = snprintf(out + o, outsz - o, "%s", zone);
		return n < 0 || (size_t)n >= outsz - o ? -1 : 0;
	} else
		return -1;
	n = snprintf(out, outsz, "%u.%u.%u.%u.%s", a[3], a[2], a[1], a[0],
	    zone);
	return n < 0 || (size_t)n >= outsz ? -1 : 0;
}

/* Zone i answered: its weight counts when a record matches. */
static void
dnsbl_answer(void *arg, size_t i, const struct dns_answer *ans)
{
	struct dnsbl_score	*st = arg;
	const struct dnsbl_site	*d = &st->conf->dnsbl[i];
	const uint8_t		*a, *hit = NULL;
	char			 text[INET_ADDRSTRLEN];
	size_t			 k, o;

	if (ans->status != DNS_NOERROR)
		return;
	for (k = 0; k < ans->nrr; k++) {
		if (ans->rr[k].len != 4)
			continue;
		a = ans->rr[k].data;
		if (a[0] == 127 && a[1] == 255 && a[2] == 255) {
			if (inet_ntop(AF_INET, a, text, sizeof(text)) == NULL)
				text[0] = '\0';
			log_event(LOG_WARNING, "dnsbl_misconfigured", st->sid,
			    "{s:s, s:s}", "zone", d->zone, "answer", text);
			return;
		}
		for (o = 0; o < 4; o++)
			if ((d->match[o][a[o] / 8] & (1 << (a[o] % 8))) == 0)
				break;
		if (o == 4 && hit == NULL)
			hit = a;
	}
	if (hit == NULL)
		return;
	st->score += d->weight;
	if (d->weight > 0 && (st->top == -1 ||
	    d->weight > st->conf->dnsbl[st->top].weight)) {
		st->top = (int)i;
		if (inet_ntop(AF_INET, hit, st->answer,
		    sizeof(st->answer)) == NULL)
			st->answer[0] = '\0';
	}
}
