/*
 * The relay's answers, kept: a question asked again within its
 * answer's time to live is answered here, in the relay's own thread,
 * without a trip to libunbound's.  libunbound keeps its own cache; this
 * one keeps the answers as the workers and the verifier receive them,
 * for no longer than libunbound said they live (NXDOMAIN: the
 * negative TTL it gives), at most DNSCACHE_TTL_MAX, and a resolution
 * failure for DNSCACHE_FAIL_TTL, as RFC 9520 section 3.2 asks of every
 * resolver.
 *
 * Names come from hostile mail (SPF include:, DKIM d=): the slot is a
 * keyed hash of the question, so nobody can aim two names at one slot;
 * a slot holds one answer, the newest, of DNSCACHE_ANSWER_MAX octets at
 * most (larger ones are not kept): DNSCACHE_SLOTS of them in all.
 */

#include <sys/types.h>

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sodium.h>

#include "smtpd.h"
#include "relay.h"

#define DNSCACHE_SLOTS		4096
#define DNSCACHE_TTL_MAX	300	/* seconds */
#define DNSCACHE_FAIL_TTL	1	/* seconds */
#define DNSCACHE_ANSWER_MAX	4096	/* octets */

struct dnsent {
	int		 type;
	long long	 expires;	/* monotonic ms; 0: empty */
	char		 name[DNS_NAME_MAX + 1];
	uint8_t		*ans;
	size_t		 len;
};

static struct dnsent	*dnscache;
static unsigned char	 dnscache_key[crypto_shorthash_KEYBYTES];

static long long
dnscache_now(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000 + 1;
}

/* 0, or -1 with no cache (every question goes to libunbound). */
int
dnscache_init(void)
{
	if ((dnscache = calloc(DNSCACHE_SLOTS, sizeof(*dnscache))) == NULL)
		return -1;
	randombytes_buf(dnscache_key, sizeof(dnscache_key));
	return 0;
}

static struct dnsent *
dnscache_slot(int type, const char *name)
{
	unsigned char	 h[crypto_shorthash_BYTES];
	uint8_t		 q[4 + DNS_NAME_MAX + 1];
	size_t		 i, n = strlen(name);
	uint32_t	 t = (uint32_t)type;
	uint64_t	 v;

	/* names are matched as DNS matches them: without case */
	if (n > DNS_NAME_MAX)
		return NULL;
	memcpy(q, &t, sizeof(t));
	for (i = 0; i < n; i++)
		q[4 + i] = (uint8_t)(name[i] >= 'A' && name[i] <= 'Z' ?
		    name[i] - 'A' + 'a' : name[i]);
	crypto_shorthash(h, q, 4 + n, dnscache_key);
	memcpy(&v, h, sizeof(v));
	return &dnscache[v % DNSCACHE_SLOTS];
}

/* The kept answer to (type, name): 1 and *ans, *len; or 0. */
int
dnscache_get(int type, const char *name, const uint8_t **ans, size_t *len)
{
	struct dnsent	*e;

	if (dnscache == NULL || (e = dnscache_slot(type, name)) == NULL ||
	    e->expires == 0 || e->type != type ||
	    strcasecmp(e->name, name) != 0)
		return 0;
	if (e->expires <= dnscache_now()) {
		free(e->ans);
		e->ans = NULL;
		e->expires = 0;
		return 0;
	}
	*ans = e->ans;
	*len = e->len;
	return 1;
}

/*
 * Keep an answer as encoded for the channel, for ttl seconds from now
 * (a failure: DNSCACHE_FAIL_TTL).
 */
void
dnscache_put(int type, const char *name, int status, const uint8_t *ans,
    size_t len, long ttl)
{
	struct dnsent	*e;
	uint8_t		*copy;

	if (status == DNS_TEMPFAIL)
		ttl = DNSCACHE_FAIL_TTL;
	if (ttl > DNSCACHE_TTL_MAX)
		ttl = DNSCACHE_TTL_MAX;
	if (dnscache == NULL || ttl <= 0 || len > DNSCACHE_ANSWER_MAX ||
	    (e = dnscache_slot(type, name)) == NULL ||
	    (copy = malloc(len)) == NULL)
		return;
	memcpy(copy, ans, len);
	free(e->ans);
	e->ans = copy;
	e->len = len;
	e->type = type;
	strlcpy(e->name, name, sizeof(e->name));
	e->expires = dnscache_now() + ttl * 1000;
}
