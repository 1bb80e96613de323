/*
 * The ban list: banned client networks and blocked senders, in a
 * table shared by the fetcher (the only writer) and every worker.
 *
 * The shared region holds a header and two halves.  The fetcher builds
 * the next table in the half that is not live, then publishes it with
 * one atomic store of the header's index.  Each half carries a
 * sequence number, odd while it is written: a reader that finds it
 * changed under it looks again, so readers never block and never use
 * a half-built table.
 *
 * Networks are kept as sorted, merged address ranges, with a summary
 * of every BANLIST_BLOCK-th range start: a lookup binary-searches the
 * small summary, then one block, touching a handful of pages.
 */

#include <sys/types.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/stat.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
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

#include "smtpd.h"

#define BANLIST_MAGIC		0x534d5442u	/* "SMTB" */
#define BANLIST_VERSION		1
#define BANLIST_BLOCK		256

struct banlist_header {
	uint32_t		 magic;
	uint32_t		 version;
	uint64_t		 half_size;
	uint32_t		 active;	/* atomic: 0 or 1 */
	uint32_t		 published;	/* atomic: count */
	int64_t			 updated;	/* time of the last publish */
	int32_t			 writer_pid;	/* the fetcher, or 0 */
	uint32_t		 pad;
};

struct banlist_half {
	uint32_t		 seq;		/* atomic: odd while written */
	uint32_t		 pad;
	uint64_t		 nv4;
	uint64_t		 nv6;
	uint64_t		 nsenders;
	uint64_t		 v4_off;	/* struct range4[nv4] */
	uint64_t		 v4sum_off;	/* uint32_t[] */
	uint64_t		 v6_off;	/* struct range6[nv6] */
	uint64_t		 v6sum_off;	/* struct u128[] */
	uint64_t		 sidx_off;	/* uint64_t[nsenders] */
	uint64_t		 sstr_off;	/* strings, NUL-terminated */
	uint64_t		 sstr_len;
	uint64_t		 used;
};

struct range4 {
	uint32_t		 lo;
	uint32_t		 hi;
};

struct u128 {
	uint64_t		 hi;
	uint64_t		 lo;
};

struct range6 {
	struct u128		 lo;
	struct u128		 hi;
};

struct banlist_map {
	uint8_t			*base;
	size_t			 size;
	int			 writable;
};

#define HALF_OFF(i)	(BANLIST_HDR_SIZE + (size_t)(i) * half_size)

static int	banlist_parse_net(const char *, struct banlist_set *, int *);
static int	banlist_set_grow(void **, size_t *, size_t, size_t);
static int	cmp_range4(const void *, const void *);
static int	cmp_range6(const void *, const void *);
static int	cmp_str(const void *, const void *);
static int	u128_cmp(const struct u128 *, const struct u128 *);
static void	u128_from(const uint8_t *, struct u128 *);
static size_t	banlist_merge4(struct range4 *, size_t);
static size_t	banlist_merge6(struct range6 *, size_t);
static int	banlist_sender_norm(const char *, char *, size_t, int);
static const struct banlist_half *banlist_half_get(const struct banlist_map *,
		    uint32_t *);
static int	banlist_half_ok(const struct banlist_map *,
		    const struct banlist_half *);
static int	banlist_find4(const uint8_t *, const struct banlist_half *,
		    uint32_t);
static int	banlist_find6(const uint8_t *, const struct banlist_half *,
		    const struct u128 *);
static int	banlist_find_sender(const uint8_t *,
		    const struct banlist_half *, const char *);

/* --- building a set ---------------------------------------------------- */

void
banlist_set_init(struct banlist_set *set)
{
	memset(set, 0, sizeof(*set));
}

void
banlist_set_free(struct banlist_set *set)
{
	size_t	 i;

	free(set->v4);
	free(set->v6);
	for (i = 0; i < set->nsenders; i++)
		free(set->senders[i]);
	free(set->senders);
	memset(set, 0, sizeof(*set));
}

static int
banlist_set_grow(void **p, size_t *cap, size_t n, size_t size)
{
	void	*np;
	size_t	 ncap;

	if (n < *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 256;
	if ((np = reallocarray(*p, ncap, size)) == NULL)
		return -1;
	*p = np;
	*cap = ncap;
	return 0;
}

static void
u128_from(const uint8_t *b, struct u128 *u)
{
	int	 i;

	u->hi = u->lo = 0;
	for (i = 0; i < 8; i++) {
		u->hi = (u->hi << 8) | b[i];
		u->lo = (u->lo << 8) | b[i + 8];
	}
}

static int
u128_cmp(const struct u128 *a, const struct u128 *b)
{
	if (a->hi != b->hi)
		return a->hi < b->hi ? -1 : 1;
	if (a->lo != b->lo)
		return a->lo < b->lo ? -1 : 1;
	return 0;
}

/*
 * One entry: an IPv4 or IPv6 address, or either with "/len".  Host bits
 * set below the prefix are cleared (*hostbits tells).  An IPv4-mapped
 * IPv6 entry is taken as IPv4.  Returns 0, or -1 for garbage.
 */
static int
banlist_parse_net(const char *s, struct banlist_set *set, int *hostbits)
{
	char		 buf[INET6_ADDRSTRLEN + 8], *slash;
	uint8_t		 a[16];
	const char	*errstr;
	long long	 len;
	int		 v4, max, i;

	*hostbits = 0;
	if (strlcpy(buf, s, sizeof(buf)) >= sizeof(buf) || buf[0] == '\0')
		return -1;
	if ((slash = strchr(buf, '/')) != NULL)
		*slash++ = '\0';
	if (inet_pton(AF_INET, buf, a + 12) == 1) {
		v4 = 1;
		max = 32;
	} else if (inet_pton(AF_INET6, buf, a) == 1) {
		v4 = 0;
		max = 128;
	} else
		return -1;
	len = max;
	if (slash != NULL) {
		if (*slash == '\0' || strspn(slash, "0123456789") !=
		    strlen(slash))
			return -1;
		len = strtonum(slash, 0, max, &errstr);
		if (errstr != NULL)
			return -1;
	}
	if (!v4 && IN6_IS_ADDR_V4MAPPED((struct in6_addr *)a) && len >= 96) {
		v4 = 1;
		len -= 96;
		max = 32;
	}
	if (v4) {
		struct range4	 r;
		uint32_t	 addr, mask;

		memcpy(&addr, a + 12, 4);
		addr = ntohl(addr);
		mask = len == 0 ? 0 : 0xffffffffu << (32 - len);
		if ((addr & ~mask) != 0)
			*hostbits = 1;
		r.lo = addr & mask;
		r.hi = r.lo | ~mask;
		if (banlist_set_grow((void **)&set->v4, &set->cap4, set->nv4,
		    sizeof(r)) == -1)
			return -2;
		set->v4[set->nv4++] = r;
	} else {
		struct range6	 r;
		uint8_t		 lo[16], hi[16];

		for (i = 0; i < 16; i++) {
			int	 bits = (int)len - i * 8;
			uint8_t	 m;

			m = bits >= 8 ? 0xff : bits <= 0 ? 0 :
			    (uint8_t)(0xff << (8 - bits));
			if ((a[i] & ~m) != 0)
				*hostbits = 1;
			lo[i] = a[i] & m;
			hi[i] = lo[i] | (uint8_t)~m;
		}
		u128_from(lo, &r.lo);
		u128_from(hi, &r.hi);
		if (banlist_set_grow((void **)&set->v6, &set->cap6, set->nv6,
		    sizeof(r)) == -1)
			return -2;
		set->v6[set->nv6++] = r;
	}
	return 0;
}

/*
 * Add a network entry to set; a bad entry is skipped with a log line.
 * Returns 0 (added or skipped), -1 when out of memory.
 */
int
banlist_add_net(struct banlist_set *set, const char *entry)
{
	char	 clean[LOG_FIELD_MAX];
	int	 hostbits, r;

	r = banlist_parse_net(entry, set, &hostbits);
	if (r == -2)
		return -1;
	log_sanitize(clean, sizeof(clean), entry, strlen(entry));
	if (r == -1) {
		set->skipped++;
		if (!set->quiet)
			log_event(LOG_WARNING, "banlist_skip", NULL, "{s:s, s:s}",
			    "entry", clean, "reason",
			    "not an address or CIDR");
	} else if (hostbits && !set->quiet)
		log_event(LOG_WARNING, "banlist_hostbits", NULL, "{s:s}",
		    "entry", clean);
	return 0;
}

/*
 * A sender entry as stored and looked up: "local@domain" with the
 * domain in lower case, or "@domain".  Returns 0, or -1 if it is not
 * one (entry: whether to accept "@domain").
 */
static int
banlist_sender_norm(const char *s, char *out, size_t outlen, int entry)
{
	const char	*at;
	size_t		 i, n;

	if ((at = strrchr(s, '@')) == NULL || at[1] == '\0' ||
	    (at == s && !entry))
		return -1;
	if (strlen(s) >= outlen || strlen(s) > SMTP_PATH_MAX)
		return -1;
	/*
	 * An entry is one token; a sender may hold anything a quoted
	 * local part allows ("x y"@domain), and its @domain must match
	 * whatever the local part is.
	 */
	for (i = 0; entry && s[i] != '\0'; i++)
		if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
			return -1;
	n = (size_t)(at - s);
	memcpy(out, s, n);
	for (i = n; s[i] != '\0'; i++)
		out[i] = (char)tolower((unsigned char)s[i]);
	out[i] = '\0';
	return 0;
}

int
banlist_add_sender(struct banlist_set *set, const char *entry)
{
	char	 norm[SMTP_PATH_MAX + 1], clean[LOG_FIELD_MAX];

	if (banlist_sender_norm(entry, norm, sizeof(norm), 1) == -1) {
		set->skipped++;
		log_sanitize(clean, sizeof(clean), entry, strlen(entry));
		if (!set->quiet)
			log_event(LOG_WARNING, "banlist_skip", NULL,
			    "{s:s, s:s}", "entry", clean, "reason",
			    "not an address or @domain");
		return 0;
	}
	if (banlist_set_grow((void **)&set->senders, &set->capsenders,
	    set->nsenders, sizeof(char *)) == -1)
		return -1;
	if ((set->senders[set->nsenders] = strdup(norm)) == NULL)
		return -1;
	set->nsenders++;
	return 0;
}

/*
 * Read a FIRM answer: a JSON array of strings, or an object whose
 * member key holds one.  Returns the number of entries read, or -1
 * when the answer is malformed (the caller keeps its last good list),
 * -2 when out of memory.  A non-empty list whose every entry is bad
 * is malformed too: bad entries never empty a list.
 */
int
banlist_parse(const char *text, size_t len, const char *key, int senders,
    struct banlist_set *set)
{
	json_t		*root, *arr, *v;
	size_t		 i, before;
	int		 r = 0;

	if ((root = json_loadb(text, len, 0, NULL)) == NULL)
		return -1;
	arr = json_is_object(root) ? json_object_get(root, key) : root;
	if (!json_is_array(arr)) {
		json_decref(root);
		return -1;
	}
	before = set->skipped;
	json_array_foreach(arr, i, v) {
		if (!json_is_string(v)) {
			set->skipped++;
			if (!set->quiet)
				log_event(LOG_WARNING, "banlist_skip", NULL,
				    "{s:s, s:s}", "list", key, "reason",
				    "not a string");
			continue;
		}
		r = senders ? banlist_add_sender(set, json_string_value(v)) :
		    banlist_add_net(set, json_string_value(v));
		if (r == -1)
			break;
	}
	if (r == 0 && json_array_size(arr) > 0 &&
	    set->skipped - before == json_array_size(arr))
		r = -1;
	else if (r == -1)
		r = -2;
	else
		r = (int)json_array_size(arr);
	json_decref(root);
	return r;
}

static int
cmp_range4(const void *a, const void *b)
{
	const struct range4 *x = a, *y = b;

	if (x->lo != y->lo)
		return x->lo < y->lo ? -1 : 1;
	return 0;
}

static int
cmp_range6(const void *a, const void *b)
{
	const struct range6 *x = a, *y = b;

	return u128_cmp(&x->lo, &y->lo);
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char * const *)a, *(char * const *)b);
}

/* Sort and merge overlapping or adjacent ranges, in place. */
static size_t
banlist_merge4(struct range4 *r, size_t n)
{
	size_t	 i, o = 0;

	if (n == 0)
		return 0;
	qsort(r, n, sizeof(*r), cmp_range4);
	for (i = 1; i < n; i++) {
		if (r[o].hi == UINT32_MAX || r[i].lo <= r[o].hi + 1) {
			if (r[i].hi > r[o].hi)
				r[o].hi = r[i].hi;
		} else
			r[++o] = r[i];
	}
	return o + 1;
}

static size_t
banlist_merge6(struct range6 *r, size_t n)
{
	struct u128	 next;
	size_t		 i, o = 0;

	if (n == 0)
		return 0;
	qsort(r, n, sizeof(*r), cmp_range6);
	for (i = 1; i < n; i++) {
		next = r[o].hi;
		next.lo++;
		if (next.lo == 0)
			next.hi++;
		if ((r[o].hi.hi == UINT64_MAX && r[o].hi.lo == UINT64_MAX) ||
		    u128_cmp(&r[i].lo, &next) <= 0) {
			if (u128_cmp(&r[i].hi, &r[o].hi) > 0)
				r[o].hi = r[i].hi;
		} else
			r[++o] = r[i];
	}
	return o + 1;
}

/* --- the shared region --------------------------------------------------- */

size_t
banlist_region_size(size_t half_size)
{
	return BANLIST_HDR_SIZE + 2 * half_size;
}

/*
 * Map a region of size bytes from fd (a memfd, a file, or -1 for an
 * anonymous private table); writable maps PROT_WRITE too.
 */
struct banlist_map *
banlist_map(int fd, size_t size, int writable)
{
	struct banlist_map	*m;
	void			*p;

	if ((m = calloc(1, sizeof(*m))) == NULL)
		return NULL;
	p = mmap(NULL, size, PROT_READ | (writable ? PROT_WRITE : 0),
	    fd == -1 ? MAP_PRIVATE | MAP_ANONYMOUS : MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		free(m);
		return NULL;
	}
	m->base = p;
	m->size = size;
	m->writable = writable;
	return m;
}

void
banlist_unmap(struct banlist_map *m)
{
	if (m == NULL)
		return;
	munmap(m->base, m->size);
	free(m);
}

/* A fresh header with two empty halves; the caller maps it writable. */
void
banlist_init(struct banlist_map *m)
{
	struct banlist_header	*h = (struct banlist_header *)m->base;

	memset(m->base, 0, BANLIST_HDR_SIZE);
	h->magic = BANLIST_MAGIC;
	h->version = BANLIST_VERSION;
	h->half_size = (m->size - BANLIST_HDR_SIZE) / 2;
	__atomic_store_n(&h->active, 0, __ATOMIC_RELEASE);
}

/* The region a reader mapped is one of ours, of the size it claims. */
int
banlist_valid(const struct banlist_map *m)
{
	const struct banlist_header *h = (const void *)m->base;

	return m->size >= BANLIST_HDR_SIZE && h->magic == BANLIST_MAGIC &&
	    h->version == BANLIST_VERSION &&
	    banlist_region_size(h->half_size) <= m->size;
}

void
banlist_set_writer(struct banlist_map *m, pid_t pid)
{
	struct banlist_header	*h = (struct banlist_header *)m->base;

	h->writer_pid = (int32_t)pid;
}

pid_t
banlist_writer(const struct banlist_map *m)
{
	const struct banlist_header *h = (const void *)m->base;

	return (pid_t)h->writer_pid;
}

/*
 * Publish set: build it in the half that is not live, then switch.
 * The set is sorted and merged in place.  Returns 0, or -1 when it does
 * not fit (the live table stays).
 */
int
banlist_publish(struct banlist_map *m, struct banlist_set *set)
{
	struct banlist_header	*h = (struct banlist_header *)m->base;
	struct banlist_half	*half;
	uint8_t			*base;
	uint64_t		 half_size = h->half_size, off, *sidx;
	size_t			 i, nsum4, nsum6, need, o;
	uint32_t		 next, seq;

	set->nv4 = banlist_merge4(set->v4, set->nv4);
	set->nv6 = banlist_merge6(set->v6, set->nv6);
	if (set->nsenders > 0)
		qsort(set->senders, set->nsenders, sizeof(char *), cmp_str);
	for (i = 1, o = set->nsenders ? 1 : 0; i < set->nsenders; i++) {
		if (strcmp(set->senders[i], set->senders[o - 1]) == 0)
			free(set->senders[i]);
		else
			set->senders[o++] = set->senders[i];
	}
	set->nsenders = o;

	nsum4 = (set->nv4 + BANLIST_BLOCK - 1) / BANLIST_BLOCK;
	nsum6 = (set->nv6 + BANLIST_BLOCK - 1) / BANLIST_BLOCK;
	need = sizeof(*half) + 64;
	need += set->nv4 * sizeof(struct range4) + nsum4 * 4 + 16;
	need += set->nv6 * sizeof(struct range6) +
	    nsum6 * sizeof(struct u128) + 16;
	need += set->nsenders * 8 + 16;
	for (i = 0; i < set->nsenders; i++)
		need += strlen(set->senders[i]) + 1;
	if (need > half_size)
		return -1;

	next = __atomic_load_n(&h->active, __ATOMIC_ACQUIRE) ^ 1;
	base = m->base + HALF_OFF(next);
	half = (struct banlist_half *)base;
	seq = __atomic_load_n(&half->seq, __ATOMIC_RELAXED);
	__atomic_store_n(&half->seq, seq | 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);

	off = (sizeof(*half) + 15) & ~(uint64_t)15;
	half->v4_off = off;
	if (set->nv4 > 0)
		memcpy(base + off, set->v4, set->nv4 * sizeof(struct range4));
	off += set->nv4 * sizeof(struct range4);
	half->v4sum_off = off;
	for (i = 0; i < nsum4; i++)
		((uint32_t *)(base + off))[i] = set->v4[i * BANLIST_BLOCK].lo;
	off = (off + nsum4 * 4 + 15) & ~(uint64_t)15;
	half->v6_off = off;
	if (set->nv6 > 0)
		memcpy(base + off, set->v6, set->nv6 * sizeof(struct range6));
	off += set->nv6 * sizeof(struct range6);
	half->v6sum_off = off;
	for (i = 0; i < nsum6; i++)
		((struct u128 *)(base + off))[i] =
		    set->v6[i * BANLIST_BLOCK].lo;
	off = (off + nsum6 * sizeof(struct u128) + 15) & ~(uint64_t)15;
	half->sidx_off = off;
	sidx = (uint64_t *)(base + off);
	off += set->nsenders * 8;
	half->sstr_off = off;
	for (i = 0, o = 0; i < set->nsenders; i++) {
		size_t	 n = strlen(set->senders[i]) + 1;

		sidx[i] = o;
		memcpy(base + off + o, set->senders[i], n);
		o += n;
	}
	half->sstr_len = o;
	half->nv4 = set->nv4;
	half->nv6 = set->nv6;
	half->nsenders = set->nsenders;
	half->used = off + o;

	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	__atomic_store_n(&half->seq, (seq | 1) + 1, __ATOMIC_RELEASE);
	__atomic_store_n(&h->active, next, __ATOMIC_RELEASE);
	__atomic_add_fetch(&h->published, 1, __ATOMIC_RELEASE);
	h->updated = (int64_t)time(NULL);
	return 0;
}

/* --- lookups -------------------------------------------------------------- */

static int
banlist_half_ok(const struct banlist_map *m, const struct banlist_half *hf)
{
	const struct banlist_header *h = (const void *)m->base;
	uint64_t	 hs = h->half_size;

	/* every array must lie inside the half, whatever we read */
	return hf->nv4 <= hs / sizeof(struct range4) &&
	    hf->nv6 <= hs / sizeof(struct range6) &&
	    hf->nsenders <= hs / 8 &&
	    hf->v4_off <= hs && hf->v4_off + hf->nv4 *
	    sizeof(struct range4) <= hs &&
	    hf->v4sum_off <= hs && hf->v4sum_off +
	    (hf->nv4 + BANLIST_BLOCK - 1) / BANLIST_BLOCK * 4 <= hs &&
	    hf->v6_off <= hs && hf->v6_off + hf->nv6 *
	    sizeof(struct range6) <= hs &&
	    hf->v6sum_off <= hs && hf->v6sum_off +
	    (hf->nv6 + BANLIST_BLOCK - 1) / BANLIST_BLOCK *
	    sizeof(struct u128) <= hs &&
	    hf->sidx_off <= hs && hf->sidx_off + hf->nsenders * 8 <= hs &&
	    hf->sstr_off <= hs && hf->sstr_len <= hs - hf->sstr_off;
}

/* The live half and its sequence number, or NULL while it is written. */
static const struct banlist_half *
banlist_half_get(const struct banlist_map *m, uint32_t *seq)
{
	const struct banlist_header *h = (const void *)m->base;
	const struct banlist_half *hf;
	uint32_t	 active;

	active = __atomic_load_n(&h->active, __ATOMIC_ACQUIRE) & 1;
	hf = (const void *)(m->base + BANLIST_HDR_SIZE +
	    (size_t)active * h->half_size);
	*seq = __atomic_load_n(&hf->seq, __ATOMIC_ACQUIRE);
	if (*seq & 1)
		return NULL;
	return hf;
}

static int
banlist_find4(const uint8_t *base, const struct banlist_half *hf, uint32_t a)
{
	const struct range4	*r;
	const uint32_t		*sum;
	size_t			 lo, hi, mid, nsum, blk, n;

	if (hf->nv4 == 0)
		return 0;
	sum = (const uint32_t *)(base + hf->v4sum_off);
	nsum = (hf->nv4 + BANLIST_BLOCK - 1) / BANLIST_BLOCK;
	/* last block whose first start <= a */
	for (lo = 0, hi = nsum; hi - lo > 1; ) {
		mid = lo + (hi - lo) / 2;
		if (sum[mid] <= a)
			lo = mid;
		else
			hi = mid;
	}
	blk = lo * BANLIST_BLOCK;
	n = hf->nv4 - blk < BANLIST_BLOCK ? hf->nv4 - blk : BANLIST_BLOCK;
	r = (const struct range4 *)(base + hf->v4_off) + blk;
	for (lo = 0, hi = n; hi - lo > 1; ) {
		mid = lo + (hi - lo) / 2;
		if (r[mid].lo <= a)
			lo = mid;
		else
			hi = mid;
	}
	return r[lo].lo <= a && a <= r[lo].hi;
}

static int
banlist_find6(const uint8_t *base, const struct banlist_half *hf,
    const struct u128 *a)
{
	const struct range6	*r;
	const struct u128	*sum;
	size_t			 lo, hi, mid, nsum, blk, n;

	if (hf->nv6 == 0)
		return 0;
	sum = (const struct u128 *)(base + hf->v6sum_off);
	nsum = (hf->nv6 + BANLIST_BLOCK - 1) / BANLIST_BLOCK;
	for (lo = 0, hi = nsum; hi - lo > 1; ) {
		mid = lo + (hi - lo) / 2;
		if (u128_cmp(&sum[mid], a) <= 0)
			lo = mid;
		else
			hi = mid;
	}
	blk = lo * BANLIST_BLOCK;
	n = hf->nv6 - blk < BANLIST_BLOCK ? hf->nv6 - blk : BANLIST_BLOCK;
	r = (const struct range6 *)(base + hf->v6_off) + blk;
	for (lo = 0, hi = n; hi - lo > 1; ) {
		mid = lo + (hi - lo) / 2;
		if (u128_cmp(&r[mid].lo, a) <= 0)
			lo = mid;
		else
			hi = mid;
	}
	return u128_cmp(&r[lo].lo, a) <= 0 && u128_cmp(a, &r[lo].hi) <= 0;
}

/*
 * Is the client address banned?  An IPv4-mapped IPv6 address is looked
 * up as IPv4.  Lock-free: a table switched under us is read again.
 */
int
banlist_lookup_addr(const struct banlist_map *m,
    const struct sockaddr_storage *ss)
{
	const struct banlist_half *hf;
	const struct sockaddr_in6 *sin6 = (const void *)ss;
	const struct sockaddr_in *sin = (const void *)ss;
	struct banlist_half copy;
	struct u128	 a6 = { 0, 0 };
	uint32_t	 a4 = 0, seq;
	int		 v4, tries, found = 0;

	if (m == NULL)
		return 0;
	if (ss->ss_family == AF_INET) {
		v4 = 1;
		a4 = ntohl(sin->sin_addr.s_addr);
	} else if (ss->ss_family == AF_INET6) {
		v4 = IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr);
		if (v4) {
			memcpy(&a4, &sin6->sin6_addr.s6_addr[12], 4);
			a4 = ntohl(a4);
		} else
			u128_from(sin6->sin6_addr.s6_addr, &a6);
	} else
		return 0;
	for (tries = 0; tries < 100; tries++) {
		if ((hf = banlist_half_get(m, &seq)) == NULL)
			continue;
		/* check a copy, then use only it: fields may change */
		memcpy(&copy, hf, sizeof(copy));
		found = banlist_half_ok(m, &copy) && (v4 ?
		    banlist_find4((const uint8_t *)hf, &copy, a4) :
		    banlist_find6((const uint8_t *)hf, &copy, &a6));
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&hf->seq, __ATOMIC_ACQUIRE) == seq)
			return found;
	}
	return found;
}

static int
banlist_find_sender(const uint8_t *base, const struct banlist_half *hf,
    const char *key)
{
	const uint64_t	*idx;
	const char	*strs;
	size_t		 lo, hi, mid;
	int		 c;

	idx = (const uint64_t *)(base + hf->sidx_off);
	strs = (const char *)base + hf->sstr_off;
	for (lo = 0, hi = hf->nsenders; lo < hi; ) {
		mid = lo + (hi - lo) / 2;
		if (idx[mid] >= hf->sstr_len)
			return 0;
		c = strncmp(key, strs + idx[mid], hf->sstr_len - idx[mid]);
		if (c == 0)
			return 1;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return 0;
}

/* Is the envelope sender blocked, as an address or by its @domain? */
int
banlist_lookup_sender(const struct banlist_map *m, const char *sender)
{
	const struct banlist_half *hf;
	struct banlist_half copy;
	char		 norm[SMTP_PATH_MAX + 1];
	const char	*at;
	uint32_t	 seq;
	int		 tries, found = 0;

	if (m == NULL || banlist_sender_norm(sender, norm, sizeof(norm),
	    0) == -1)
		return 0;
	at = strrchr(norm, '@');
	for (tries = 0; tries < 100; tries++) {
		if ((hf = banlist_half_get(m, &seq)) == NULL)
			continue;
		memcpy(&copy, hf, sizeof(copy));
		found = banlist_half_ok(m, &copy) &&
		    (banlist_find_sender((const uint8_t *)hf, &copy, norm) ||
		    banlist_find_sender((const uint8_t *)hf, &copy, at));
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&hf->seq, __ATOMIC_ACQUIRE) == seq)
			return found;
	}
	return found;
}

/* Counts of the live table, for logs and the benchmark. */
void
banlist_counts(const struct banlist_map *m, size_t *nv4, size_t *nv6,
    size_t *nsenders, size_t *used)
{
	const struct banlist_half *hf;
	uint32_t	 seq;

	*nv4 = *nv6 = *nsenders = *used = 0;
	if (m == NULL || (hf = banlist_half_get(m, &seq)) == NULL)
		return;
	*nv4 = hf->nv4;
	*nv6 = hf->nv6;
	*nsenders = hf->nsenders;
	*used = hf->used;
}

/* --- the cache file ------------------------------------------------------ */

/*
 * Open a file of the cache directory for reading.  The directory is
 * writable by the unprivileged user, and the master reads it as root:
 * no symbolic link is followed, and only a regular file of sane size
 * is accepted (never a FIFO that would hang us).  Returns the
 * descriptor, or -1 with errno set.
 */
int
banlist_cache_open(int dirfd, const char *name)
{
	struct stat	 st;
	int		 fd;

	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW |
	    O_NONBLOCK);
	if (fd == -1)
		return -1;
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size > 2 * (uint64_t)BANLIST_RESPONSE_MAX) {
		close(fd);
		errno = EINVAL;
		return -1;
	}
	return fd;
}

/*
 * The last good lists of the cache file (dirfd/name), as two new
 * array references (empty when the file has none).  Returns 0, or -1
 * when there is no file or it does not parse (logged).
 */
int
banlist_cache_read(int dirfd, const char *name, json_t **nets,
    json_t **senders)
{
	json_t		*root, *a;
	json_error_t	 err;
	int		 fd;

	if ((fd = banlist_cache_open(dirfd, name)) == -1) {
		if (errno != ENOENT)
			log_warn("banlist cache %s", name);
		return -1;
	}
	root = json_loadfd(fd, 0, &err);
	close(fd);
	if (!json_is_object(root)) {
		log_warnx("banlist cache %s: %s", name, root == NULL ?
		    err.text : "not a JSON object");
		json_decref(root);
		return -1;
	}
	a = json_object_get(root, "banned_subnets");
	*nets = json_is_array(a) ? json_incref(a) : json_array();
	a = json_object_get(root, "blocked_emails");
	*senders = json_is_array(a) ? json_incref(a) : json_array();
	json_decref(root);
	return 0;
}

/*
 * Add the strings of two arrays to set: networks, then senders.
 * Returns 0, or -1 when out of memory.
 */
int
banlist_set_add_json(struct banlist_set *set, json_t *nets, json_t *senders)
{
	json_t	*v;
	size_t	 i;

	json_array_foreach(nets, i, v)
		if (json_is_string(v) &&
		    banlist_add_net(set, json_string_value(v)) == -1)
			return -1;
	json_array_foreach(senders, i, v)
		if (json_is_string(v) &&
		    banlist_add_sender(set, json_string_value(v)) == -1)
			return -1;
	return 0;
}

/* Write the last good lists: temporary file, fsync, rename. */
int
banlist_cache_write(const struct smtpd_conf *conf, json_t *nets,
    json_t *senders)
{
	struct iovec	 iov;
	char		 when[32];
	char		*text;
	json_t		*root;
	int		 r;

	log_timestamp(when, sizeof(when), 0);
	root = json_pack("{s:O, s:O, s:s}", "banned_subnets", nets,
	    "blocked_emails", senders, "saved_at", when);
	if (root == NULL)
		return -1;
	text = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	if (text == NULL)
		return -1;
	iov.iov_base = text;
	iov.iov_len = strlen(text);
	if ((r = file_write_atomic(conf->banlist_dirfd, conf->banlist_file,
	    &iov, 1, 0644, 0)) == -1)
		log_warn("banlist cache %s", conf->banlist_file);
	free(text);
	return r;
}

#ifdef SMTPD_TEST_HOOKS
/*
 * Test build only: try to make the table writable, then write it.  A
 * worker must die here (SIGSEGV) without changing a byte.
 */
const char *
banlist_test_write(const struct banlist_map *m)
{
	if (m == NULL)
		return "no table";
	if (mprotect(m->base, m->size, PROT_READ | PROT_WRITE) == 0)
		return "mprotect made the table writable";
	*(volatile uint8_t *)(m->base + BANLIST_HDR_SIZE) ^= 0xff;
	return "the write did not fault";
}
#endif
