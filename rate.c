/*
 * Per-address rates, in the master (after Postfix's anvil): new
 * sessions (--max-conn-rate) and messages (--max-msg-rate) a client
 * address (addr_key(): IPv4, IPv6 /64) may start in a minute.  Only the
 * master counts, under the address it attested for the session; a
 * worker can ask to be counted, never name who.
 *
 * Each address has a token bucket of each kind: full at N, one token
 * taken an event, N given back in RATE_WINDOW seconds, so a burst of N
 * passes and then N a minute.  The table is fixed (RATE_SLOTS), however
 * many addresses come: a keyed hash (secret per start, so no client
 * can aim at another's entry) picks a set of RATE_WAYS entries, and a
 * new address takes the set's free or least recently used entry.  An
 * entry untouched for RATE_WINDOW seconds is full again, so evicting
 * it loses nothing; evicting a younger one forgets a count, which an
 * address could only force by keeping RATE_WAYS others of its set
 * busier than itself.
 */

#include <sys/types.h>

#include <stdint.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "smtpd.h"

#define RATE_SLOTS	4096
#define RATE_WAYS	4
#define RATE_WINDOW_MS	60000LL

struct rate {
	uint8_t		 key[16];	/* addr_key() */
	long long	 used;		/* ms of its last event; 0: free */
	long long	 at[RATE_KINDS];	/* ms of each kind's last; 0:
					   none yet */
	long long	 credit[RATE_KINDS];	/* events * RATE_WINDOW_MS */
};

static struct rate	 rates[RATE_SLOTS];
static unsigned char	 rate_secret[crypto_shorthash_KEYBYTES];

/* Once, in the master: the hash key. */
void
rate_init(void)
{
	randombytes_buf(rate_secret, sizeof(rate_secret));
}

/*
 * One event of kind for key, now, under limit a minute: 0 when it is
 * within, and counted; -1 when it is over (not counted).  limit 0 is
 * no limit.
 */
int
rate_take(const uint8_t *key, enum rate_kind kind, long long limit)
{
	unsigned char	 h[crypto_shorthash_BYTES];
	struct rate	*r, *set, *victim = NULL;
	struct timespec	 ts;
	long long	 elapsed, full, now;
	uint64_t	 n;
	size_t		 i;

	if (limit <= 0)
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = ts.tv_sec * 1000LL + ts.tv_nsec / 1000000 + 1;	/* > 0 */
	crypto_shorthash(h, key, 16, rate_secret);
	memcpy(&n, h, sizeof(n));
	set = &rates[(n % (RATE_SLOTS / RATE_WAYS)) * RATE_WAYS];
	for (i = 0, r = NULL; i < RATE_WAYS && r == NULL; i++) {
		if (set[i].used != 0 && memcmp(set[i].key, key, 16) == 0)
			r = &set[i];
		else if (victim == NULL || set[i].used < victim->used)
			victim = &set[i];
	}
	if (r == NULL) {
		r = victim;
		memset(r, 0, sizeof(*r));
		memcpy(r->key, key, 16);
	}
	full = limit * RATE_WINDOW_MS;
	elapsed = r->at[kind] == 0 ? RATE_WINDOW_MS : now - r->at[kind];
	if (elapsed < 0)
		elapsed = 0;
	if (elapsed > RATE_WINDOW_MS)
		elapsed = RATE_WINDOW_MS;
	r->credit[kind] += elapsed * limit;
	if (r->credit[kind] > full)
		r->credit[kind] = full;
	r->at[kind] = r->used = now;
	if (r->credit[kind] < RATE_WINDOW_MS)
		return -1;
	r->credit[kind] -= RATE_WINDOW_MS;
	return 0;
}
