/*
 * Unit tests for the ban-list table (banlist.c): network and sender
 * entries, banlist_parse(), merging, publishing, lookups checked
 * against a brute-force scan of random sets, and lock-free lookups
 * while another thread switches tables under them.
 *
 * Prints "N passed, N failed"; exits 1 on a failure.  The random sets
 * come from a fixed seed, printed with any failure; "banlist_test SEED"
 * runs them from another one.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "../smtpd.h"
#include "check.h"

#define SEED_DEFAULT	0x5eedba11ULL
#define NPROBES		5000	/* per random set */
#define NSHOW		5	/* disagreements printed per set */
#define CONC_SECONDS	1
#define NELEM(a)	(sizeof(a) / sizeof((a)[0]))


struct w128 {
	uint64_t	 hi;
	uint64_t	 lo;
};

/* A network entry as the test expects it stored: [lo, hi]. */
struct tnet {
	int		 v4;
	uint32_t	 lo4;
	uint32_t	 hi4;
	struct w128	 lo6;
	struct w128	 hi6;
};

/* A client address; IPv4 with mapped set is given as ::ffff:a.b.c.d. */
struct taddr {
	int		 v4;
	int		 mapped;
	uint32_t	 a4;
	struct w128	 a6;
};

/* The concurrency test: one writer, one reader. */
struct conc {
	struct banlist_map	*map;
	struct banlist_set	*sets;
	size_t			 nsets;
	size_t			 nv4[3];
	int			 stop;		/* atomic */
	unsigned long		 publishes;
	unsigned long		 publish_errors;
	unsigned long		 lookups;
	unsigned long		 missed;	/* banned, found not banned */
	unsigned long		 spurious;	/* never banned, found banned */
	unsigned int		 seen;		/* bit k: table k was live */
};

static uint64_t	 rng_state;


static void	xsnprintf(char *, size_t, const char *, ...)
		    __attribute__((__format__ (printf, 3, 4)));
static uint64_t	rng(void);
static int	w128_cmp(const struct w128 *, const struct w128 *);
static void	w128_inc(struct w128 *);
static void	w128_dec(struct w128 *);
static void	w128_bytes(const struct w128 *, uint8_t *);
static void	w128_mask(int, struct w128 *);
static int	w128_mapped(const struct w128 *);
static struct banlist_map *map_new(size_t);
static void	addr_sockaddr(const struct taddr *, struct sockaddr_storage *);
static const char *addr_text(const struct taddr *, char *, size_t);
static int	lookup_text(const struct banlist_map *, const char *);
static void	expect_addr(const struct banlist_map *, const char *, int,
		    const char *);
static void	expect_sender(const struct banlist_map *, const char *, int,
		    const char *);
static int	publish_nets(struct banlist_map *, const char *const *,
		    size_t, size_t *, size_t *);
static uint32_t	gen_addr4(int *);
static struct w128 gen_addr6(int *);
static void	gen_net(struct tnet *, char *, size_t, int);
static void	gen_probe(const struct tnet *, size_t, struct taddr *);
static int	brute_addr(const struct tnet *, size_t, const struct taddr *);
static int	cmp_tnet(const void *, const void *);
static int	merged_counts(const struct tnet *, size_t, size_t *,
		    size_t *);
static void	random_nets_round(size_t, uint64_t);
static void	*conc_writer(void *);
static void	*conc_reader(void *);
static void	conc_fill(struct banlist_set *, int);

static void	test_prefix_everything(void);
static void	test_prefix_exact(void);
static void	test_prefix_mapped(void);
static void	test_prefix_hostbits(void);
static void	test_prefix_garbage(void);
static void	test_duplicates(void);
static void	test_merge(void);
static void	test_edges(void);
static void	test_block_boundaries(void);
static void	test_senders(void);
static void	test_parse(void);
static void	test_quiet(void);
static void	test_publish_twice(void);
static void	test_publish_too_big(void);
static void	test_lookup_misc(void);
static void	test_random_nets(uint64_t);
static void	test_random_senders(uint64_t);
static void	test_concurrent_publish(void);

/* --- helpers ------------------------------------------------------------ */

static void
xsnprintf(char *buf, size_t len, const char *fmt, ...)
{
	va_list	 ap;
	int	 r;

	va_start(ap, fmt);
	r = vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	if (r < 0 || (size_t)r >= len) {
		printf("FAIL: test buffer too small for %s\n", fmt);
		exit(2);
	}
}

/* splitmix64: the same sequence on every platform. */
static uint64_t
rng(void)
{
	uint64_t	 z;

	z = (rng_state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static int
w128_cmp(const struct w128 *a, const struct w128 *b)
{
	if (a->hi != b->hi)
		return a->hi < b->hi ? -1 : 1;
	if (a->lo != b->lo)
		return a->lo < b->lo ? -1 : 1;
	return 0;
}

static void
w128_inc(struct w128 *a)
{
	if (++a->lo == 0)
		a->hi++;
}

static void
w128_dec(struct w128 *a)
{
	if (a->lo-- == 0)
		a->hi--;
}

static void
w128_bytes(const struct w128 *a, uint8_t *b)
{
	int	 i;

	for (i = 0; i < 8; i++) {
		b[i] = (uint8_t)(a->hi >> (56 - 8 * i));
		b[i + 8] = (uint8_t)(a->lo >> (56 - 8 * i));
	}
}

/* The netmask of a /len. */
static void
w128_mask(int len, struct w128 *m)
{
	if (len == 0) {
		m->hi = m->lo = 0;
	} else if (len <= 64) {
		m->hi = ~0ULL << (64 - len);
		m->lo = 0;
	} else {
		m->hi = ~0ULL;
		m->lo = ~0ULL << (128 - len);
	}
}

/* ::ffff:0:0/96 */
static int
w128_mapped(const struct w128 *a)
{
	return a->hi == 0 && (a->lo >> 32) == 0xffff;
}

/* A fresh writable anonymous table with halves of half bytes. */
static struct banlist_map *
map_new(size_t half)
{
	struct banlist_map	*m;

	if ((m = banlist_map(-1, banlist_region_size(half), 1)) == NULL) {
		printf("FAIL: banlist_map of %zu bytes\n",
		    banlist_region_size(half));
		exit(2);
	}
	banlist_init(m);
	return m;
}

static void
addr_sockaddr(const struct taddr *a, struct sockaddr_storage *ss)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;
	uint32_t		 n;

	memset(ss, 0, sizeof(*ss));
	if (a->v4 && !a->mapped) {
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(a->a4);
		return;
	}
	sin6->sin6_family = AF_INET6;
	if (a->v4) {
		sin6->sin6_addr.s6_addr[10] = 0xff;
		sin6->sin6_addr.s6_addr[11] = 0xff;
		n = htonl(a->a4);
		memcpy(&sin6->sin6_addr.s6_addr[12], &n, 4);
	} else
		w128_bytes(&a->a6, sin6->sin6_addr.s6_addr);
}

static const char *
addr_text(const struct taddr *a, char *buf, size_t len)
{
	struct sockaddr_storage	 ss;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&ss;

	addr_sockaddr(a, &ss);
	if (ss.ss_family == AF_INET)
		return inet_ntop(AF_INET, &sin->sin_addr, buf, len);
	return inet_ntop(AF_INET6, &sin6->sin6_addr, buf, len);
}

/*
 * Look up a client address given as text: dotted quad as AF_INET, any
 * other as AF_INET6 (so "::ffff:a.b.c.d" is an IPv4-mapped client).
 */
static int
lookup_text(const struct banlist_map *m, const char *text)
{
	struct sockaddr_storage	 ss;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, text, &sin->sin_addr) == 1)
		sin->sin_family = AF_INET;
	else if (inet_pton(AF_INET6, text, &sin6->sin6_addr) == 1)
		sin6->sin6_family = AF_INET6;
	else {
		printf("FAIL: test address %s does not parse\n", text);
		exit(2);
	}
	return banlist_lookup_addr(m, &ss);
}

static void
expect_addr(const struct banlist_map *m, const char *addr, int banned,
    const char *what)
{
	int	 r;

	r = lookup_text(m, addr);
	CHECK(r == banned, "%s: client %s %s", what, addr,
	    r ? "banned" : "not banned");
}

static void
expect_sender(const struct banlist_map *m, const char *sender, int banned,
    const char *what)
{
	int	 r;

	r = banlist_lookup_sender(m, sender);
	CHECK(r == banned, "%s: sender \"%s\" %s", what, sender,
	    r ? "blocked" : "not blocked");
}

/*
 * Publish the network entries in list; *nv4 and *nv6 get the live
 * table's range counts.  Returns what banlist_publish() returned.
 */
static int
publish_nets(struct banlist_map *m, const char *const *list, size_t n,
    size_t *nv4, size_t *nv6)
{
	struct banlist_set	 set;
	size_t			 i, ns, used;
	int			 r;

	banlist_set_init(&set);
	set.quiet = 1;
	for (i = 0; i < n; i++)
		if (banlist_add_net(&set, list[i]) == -1) {
			printf("FAIL: out of memory\n");
			exit(2);
		}
	r = banlist_publish(m, &set);
	banlist_set_free(&set);
	banlist_counts(m, nv4, nv6, &ns, &used);
	return r;
}

/* --- prefixes ------------------------------------------------------------ */

static void
test_prefix_everything(void)
{
	static const char *const v4all[] = { "0.0.0.0/0" };
	static const char *const v6all[] = { "::/0" };
	struct banlist_map	*m;
	size_t			 nv4, nv6;

	m = map_new(BANLIST_HALF_SIZE);
	CHECK(publish_nets(m, v4all, 1, &nv4, &nv6) == 0 && nv4 == 1 &&
	    nv6 == 0, "0.0.0.0/0: %zu IPv4, %zu IPv6 ranges", nv4, nv6);
	expect_addr(m, "0.0.0.0", 1, "0.0.0.0/0");
	expect_addr(m, "10.1.2.3", 1, "0.0.0.0/0");
	expect_addr(m, "255.255.255.255", 1, "0.0.0.0/0");
	expect_addr(m, "::ffff:198.51.100.1", 1, "0.0.0.0/0");
	expect_addr(m, "::", 0, "0.0.0.0/0 is IPv4 only");
	expect_addr(m, "2001:db8::1", 0, "0.0.0.0/0 is IPv4 only");

	CHECK(publish_nets(m, v6all, 1, &nv4, &nv6) == 0 && nv4 == 0 &&
	    nv6 == 1, "::/0: %zu IPv4, %zu IPv6 ranges", nv4, nv6);
	expect_addr(m, "::", 1, "::/0");
	expect_addr(m, "::1", 1, "::/0");
	expect_addr(m, "2001:db8::1", 1, "::/0");
	expect_addr(m, "fe80::1", 1, "::/0");
	expect_addr(m, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1, "::/0");
	expect_addr(m, "10.1.2.3", 0, "::/0 is IPv6 only");
	/* a mapped client is an IPv4 client, looked up as such */
	expect_addr(m, "::ffff:10.1.2.3", 0, "::/0 and a mapped client");
	banlist_unmap(m);
}

static void
test_prefix_exact(void)
{
	static const char *const l32[] = { "192.0.2.77/32" };
	static const char *const l128[] = { "2001:db8::77/128" };
	static const char *const bare[] = { "198.51.100.9", "2001:db8::9" };
	struct banlist_map	*m;
	size_t			 nv4, nv6;

	m = map_new(BANLIST_HALF_SIZE);
	CHECK(publish_nets(m, l32, 1, &nv4, &nv6) == 0 && nv4 == 1,
	    "/32 publish");
	expect_addr(m, "192.0.2.77", 1, "/32");
	expect_addr(m, "::ffff:192.0.2.77", 1, "/32, mapped client");
	expect_addr(m, "192.0.2.76", 0, "/32");
	expect_addr(m, "192.0.2.78", 0, "/32");

	CHECK(publish_nets(m, l128, 1, &nv4, &nv6) == 0 && nv6 == 1,
	    "/128 publish");
	expect_addr(m, "2001:db8::77", 1, "/128");
	expect_addr(m, "2001:db8::76", 0, "/128");
	expect_addr(m, "2001:db8::78", 0, "/128");
	expect_addr(m, "2001:db8:0:0:1::77", 0, "/128");

	CHECK(publish_nets(m, bare, 2, &nv4, &nv6) == 0 && nv4 == 1 &&
	    nv6 == 1, "no length: %zu IPv4, %zu IPv6 ranges", nv4, nv6);
	expect_addr(m, "198.51.100.9", 1, "no length is /32");
	expect_addr(m, "198.51.100.10", 0, "no length is /32");
	expect_addr(m, "2001:db8::9", 1, "no length is /128");
	expect_addr(m, "2001:db8::8", 0, "no length is /128");
	banlist_unmap(m);
}

static void
test_prefix_mapped(void)
{
	static const char *const host[] = { "::ffff:192.0.2.1" };
	static const char *const net[] = { "::ffff:192.0.2.0/120" };
	static const char *const v4[] = { "198.51.100.0/24" };
	struct banlist_map	*m;
	size_t			 nv4, nv6;

	m = map_new(BANLIST_HALF_SIZE);
	CHECK(publish_nets(m, host, 1, &nv4, &nv6) == 0 && nv4 == 1 &&
	    nv6 == 0, "::ffff:192.0.2.1 is stored as IPv4: %zu IPv4, "
	    "%zu IPv6", nv4, nv6);
	expect_addr(m, "192.0.2.1", 1, "mapped entry, IPv4 client");
	expect_addr(m, "::ffff:192.0.2.1", 1, "mapped entry, mapped client");
	expect_addr(m, "192.0.2.2", 0, "mapped entry");
	expect_addr(m, "::ffff:192.0.2.0", 0, "mapped entry");

	CHECK(publish_nets(m, net, 1, &nv4, &nv6) == 0 && nv4 == 1 &&
	    nv6 == 0, "::ffff:192.0.2.0/120 is stored as IPv4: %zu IPv4, "
	    "%zu IPv6", nv4, nv6);
	expect_addr(m, "192.0.2.0", 1, "mapped /120");
	expect_addr(m, "192.0.2.1", 1, "mapped /120");
	expect_addr(m, "192.0.2.255", 1, "mapped /120");
	expect_addr(m, "::ffff:192.0.2.77", 1, "mapped /120, mapped client");
	expect_addr(m, "192.0.1.255", 0, "mapped /120");
	expect_addr(m, "192.0.3.0", 0, "mapped /120");
	expect_addr(m, "::ffff:192.0.3.0", 0, "mapped /120");

	CHECK(publish_nets(m, v4, 1, &nv4, &nv6) == 0, "IPv4 /24 publish");
	expect_addr(m, "::ffff:198.51.100.9", 1, "IPv4 entry, mapped client");
	expect_addr(m, "::ffff:198.51.100.255", 1,
	    "IPv4 entry, mapped client");
	expect_addr(m, "::ffff:198.51.101.9", 0, "IPv4 entry, mapped client");
	/* IPv4-compatible (not mapped) and NAT64 addresses are IPv6 */
	expect_addr(m, "::198.51.100.9", 0, "IPv4 entry, ::a.b.c.d client");
	expect_addr(m, "64:ff9b::198.51.100.9", 0,
	    "IPv4 entry, NAT64 client");
	banlist_unmap(m);
}

static void
test_prefix_hostbits(void)
{
	static const char *const v4[] = { "10.1.2.3/8" };
	static const char *const v6[] = { "2001:db8:1:2:3:4:5:6/32" };
	struct banlist_set	 set;
	struct banlist_map	*m;
	size_t			 nv4, nv6;

	banlist_set_init(&set);
	set.quiet = 1;
	CHECK(banlist_add_net(&set, v4[0]) == 0 && set.skipped == 0 &&
	    set.nv4 == 1, "10.1.2.3/8 is taken, not skipped");
	banlist_set_free(&set);

	m = map_new(BANLIST_HALF_SIZE);
	CHECK(publish_nets(m, v4, 1, &nv4, &nv6) == 0 && nv4 == 1,
	    "10.1.2.3/8 publish");
	expect_addr(m, "10.0.0.0", 1, "10.1.2.3/8 is 10.0.0.0/8");
	expect_addr(m, "10.255.255.255", 1, "10.1.2.3/8 is 10.0.0.0/8");
	expect_addr(m, "10.1.2.3", 1, "10.1.2.3/8 is 10.0.0.0/8");
	expect_addr(m, "9.255.255.255", 0, "10.1.2.3/8 is 10.0.0.0/8");
	expect_addr(m, "11.0.0.0", 0, "10.1.2.3/8 is 10.0.0.0/8");

	CHECK(publish_nets(m, v6, 1, &nv4, &nv6) == 0 && nv6 == 1,
	    "IPv6 host bits publish");
	expect_addr(m, "2001:db8::", 1, "2001:db8:1:2:3:4:5:6/32");
	expect_addr(m, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 1,
	    "2001:db8:1:2:3:4:5:6/32");
	expect_addr(m, "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", 0,
	    "2001:db8:1:2:3:4:5:6/32");
	expect_addr(m, "2001:db9::", 0, "2001:db8:1:2:3:4:5:6/32");
	banlist_unmap(m);
}

static void
test_prefix_garbage(void)
{
	static const char *const bad[] = {
		"", "1.2.3", "1.2.3.4/33", "::1/129", "10.0.0.0/",
		"10.0.0.0/-1", "abc", " 1.2.3.4", "1.2.3.4/8x",
		"1.2.3.4 ", "1.2.3.4\n", "1.2.3.4/+8", "1.2.3.4/ 8",
		"1.2.3.4/8/8", "/8", "256.1.2.3", "1.2.3.4.5", "0x7f.0.0.1",
		"fe80::1%lo", "::ffff:1.2.3.4/129", "2001:db8::/1x",
		"2001:db8:::1", "1.2.3.4/99999999999999999999",
		"1111:2222:3333:4444:5555:6666:7777:8888:9999/64",
		"1234567890123456789012345678901234567890123456789012345678",
	};
	struct banlist_set	 set;
	size_t			 i, before;

	banlist_set_init(&set);
	set.quiet = 1;
	for (i = 0; i < NELEM(bad); i++) {
		before = set.skipped;
		CHECK(banlist_add_net(&set, bad[i]) == 0 &&
		    set.skipped == before + 1 && set.nv4 == 0 &&
		    set.nv6 == 0, "garbage entry \"%s\" taken (skipped %zu, "
		    "%zu IPv4, %zu IPv6)", bad[i], set.skipped, set.nv4,
		    set.nv6);
	}
	CHECK(banlist_add_net(&set, "192.0.2.0/24") == 0 &&
	    set.skipped == NELEM(bad) && set.nv4 == 1,
	    "a good entry after garbage: skipped %zu, %zu IPv4", set.skipped,
	    set.nv4);
	banlist_set_free(&set);
}

static void
test_duplicates(void)
{
	struct banlist_set	 set;
	struct banlist_map	*m;
	size_t			 i, nv4, nv6, ns, used;
	int			 r = 0;

	banlist_set_init(&set);
	set.quiet = 1;
	for (i = 0; i < 10000; i++)
		r |= banlist_add_net(&set, "203.0.113.0/24");
	for (i = 0; i < 10000; i++)
		r |= banlist_add_net(&set, "2001:db8:77::/48");
	/* the same networks, spelt otherwise */
	r |= banlist_add_net(&set, "203.0.113.200/24");
	r |= banlist_add_net(&set, "::ffff:203.0.113.0/120");
	r |= banlist_add_net(&set, "2001:db8:77:1::1/48");
	CHECK(r == 0 && set.nv4 == 10002 && set.nv6 == 10001,
	    "duplicates are all added: %zu IPv4, %zu IPv6", set.nv4, set.nv6);
	m = map_new(BANLIST_HALF_SIZE);
	CHECK(banlist_publish(m, &set) == 0, "publish duplicates");
	banlist_counts(m, &nv4, &nv6, &ns, &used);
	CHECK(nv4 == 1 && nv6 == 1 && set.nv4 == 1 && set.nv6 == 1,
	    "10,000 duplicates publish as one range: %zu IPv4, %zu IPv6",
	    nv4, nv6);
	expect_addr(m, "203.0.113.0", 1, "duplicates");
	expect_addr(m, "203.0.113.255", 1, "duplicates");
	expect_addr(m, "203.0.114.0", 0, "duplicates");
	expect_addr(m, "2001:db8:77:ffff::1", 1, "duplicates");
	expect_addr(m, "2001:db8:78::", 0, "duplicates");
	banlist_set_free(&set);
	banlist_unmap(m);
}

static void
test_merge(void)
{
	static const char *const adj4[] = { "10.0.1.0/24", "10.0.0.0/24" };
	static const char *const gap4[] = { "10.0.2.0/24", "10.0.0.0/24" };
	static const char *const over4[] = {
		"10.0.255.0/24", "10.0.5.0/24", "10.0.0.0/16", "10.0.7.7",
	};
	static const char *const halves4[] = { "10.128.0.0/9", "10.0.0.0/9" };
	static const char *const chain4[] = {
		"10.0.0.3/32", "10.0.0.0/31", "10.0.0.2/32", "10.0.0.4/30",
		"10.0.0.8/29", "10.0.0.16/28",
	};
	static const char *const adj6[] = {
		"2001:db8:0:1::/64", "2001:db8::/64",
	};
	static const char *const gap6[] = {
		"2001:db8:0:2::/64", "2001:db8::/64",
	};
	static const char *const halves6[] = { "8000::/1", "::/1" };
	struct banlist_map	*m;
	size_t			 nv4, nv6;

	m = map_new(BANLIST_HALF_SIZE);
	CHECK(publish_nets(m, adj4, 2, &nv4, &nv6) == 0 && nv4 == 1,
	    "adjacent /24s merge: %zu ranges", nv4);
	expect_addr(m, "10.0.0.255", 1, "adjacent /24s");
	expect_addr(m, "10.0.1.0", 1, "adjacent /24s");
	expect_addr(m, "10.0.1.255", 1, "adjacent /24s");
	expect_addr(m, "10.0.2.0", 0, "adjacent /24s");

	CHECK(publish_nets(m, gap4, 2, &nv4, &nv6) == 0 && nv4 == 2,
	    "/24s with a gap stay apart: %zu ranges", nv4);
	expect_addr(m, "10.0.1.0", 0, "/24s with a gap");
	expect_addr(m, "10.0.2.0", 1, "/24s with a gap");

	CHECK(publish_nets(m, over4, NELEM(over4), &nv4, &nv6) == 0 &&
	    nv4 == 1, "overlapping ranges merge: %zu ranges", nv4);
	expect_addr(m, "10.0.128.1", 1, "overlapping ranges");
	expect_addr(m, "10.1.0.0", 0, "overlapping ranges");

	CHECK(publish_nets(m, halves4, 2, &nv4, &nv6) == 0 && nv4 == 1,
	    "two /9s merge: %zu ranges", nv4);
	expect_addr(m, "10.127.255.255", 1, "two /9s");
	expect_addr(m, "10.128.0.0", 1, "two /9s");
	expect_addr(m, "11.0.0.0", 0, "two /9s");

	CHECK(publish_nets(m, chain4, NELEM(chain4), &nv4, &nv6) == 0 &&
	    nv4 == 1, "a chain of small ranges merges: %zu ranges", nv4);
	expect_addr(m, "10.0.0.31", 1, "chain");
	expect_addr(m, "10.0.0.32", 0, "chain");

	CHECK(publish_nets(m, adj6, 2, &nv4, &nv6) == 0 && nv6 == 1,
	    "adjacent IPv6 /64s merge (carry into the high word): %zu "
	    "ranges", nv6);
	expect_addr(m, "2001:db8::ffff:ffff:ffff:ffff", 1, "adjacent /64s");
	expect_addr(m, "2001:db8:0:1::", 1, "adjacent /64s");
	expect_addr(m, "2001:db8:0:2::", 0, "adjacent /64s");

	CHECK(publish_nets(m, gap6, 2, &nv4, &nv6) == 0 && nv6 == 2,
	    "IPv6 /64s with a gap stay apart: %zu ranges", nv6);
	expect_addr(m, "2001:db8:0:1::", 0, "IPv6 /64s with a gap");

	CHECK(publish_nets(m, halves6, 2, &nv4, &nv6) == 0 && nv6 == 1,
	    "::/1 and 8000::/1 merge: %zu ranges", nv6);
	expect_addr(m, "::", 1, "::/1 + 8000::/1");
	expect_addr(m, "7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1,
	    "::/1 + 8000::/1");
	expect_addr(m, "8000::", 1, "::/1 + 8000::/1");
	expect_addr(m, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1,
	    "::/1 + 8000::/1");
	banlist_unmap(m);
}

static void
test_edges(void)
{
	static const char *const top4[] = { "255.255.255.255/32" };
	static const char *const bottom4[] = { "0.0.0.0/32" };
	static const char *const topmerge4[] = {
		"255.255.255.255/32", "255.255.255.254/32", "255.255.255.0/24",
		"255.255.0.0/16", "0.0.0.0/32",
	};
	static const char *const top6[] = {
		"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128",
	};
	static const char *const bottom6[] = { "::/128" };
	static const char *const topmerge6[] = {
		"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128",
		"ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/128",
		"ffff:ffff:ffff:ffff::/64", "ffff::/16", "::/128",
	};
	struct banlist_map	*m;
	size_t			 nv4, nv6;

	m = map_new(BANLIST_HALF_SIZE);
	CHECK(publish_nets(m, top4, 1, &nv4, &nv6) == 0 && nv4 == 1,
	    "255.255.255.255/32 publish");
	expect_addr(m, "255.255.255.255", 1, "255.255.255.255/32");
	expect_addr(m, "255.255.255.254", 0, "255.255.255.255/32");
	expect_addr(m, "0.0.0.0", 0, "255.255.255.255/32");

	CHECK(publish_nets(m, bottom4, 1, &nv4, &nv6) == 0 && nv4 == 1,
	    "0.0.0.0/32 publish");
	expect_addr(m, "0.0.0.0", 1, "0.0.0.0/32");
	expect_addr(m, "0.0.0.1", 0, "0.0.0.0/32");
	expect_addr(m, "255.255.255.255", 0, "0.0.0.0/32");

	CHECK(publish_nets(m, topmerge4, NELEM(topmerge4), &nv4, &nv6) == 0 &&
	    nv4 == 2, "ranges up to 255.255.255.255 merge: %zu ranges", nv4);
	expect_addr(m, "255.255.0.0", 1, "up to 255.255.255.255");
	expect_addr(m, "255.255.255.255", 1, "up to 255.255.255.255");
	expect_addr(m, "255.254.255.255", 0, "up to 255.255.255.255");

	CHECK(publish_nets(m, top6, 1, &nv4, &nv6) == 0 && nv6 == 1,
	    "ffff:...:ffff/128 publish");
	expect_addr(m, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1,
	    "ffff:...:ffff/128");
	expect_addr(m, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 0,
	    "ffff:...:ffff/128");
	expect_addr(m, "::", 0, "ffff:...:ffff/128");

	CHECK(publish_nets(m, bottom6, 1, &nv4, &nv6) == 0 && nv6 == 1,
	    "::/128 publish");
	expect_addr(m, "::", 1, "::/128");
	expect_addr(m, "::1", 0, "::/128");

	CHECK(publish_nets(m, topmerge6, NELEM(topmerge6), &nv4, &nv6) == 0 &&
	    nv6 == 2, "ranges up to ffff:...:ffff merge: %zu ranges", nv6);
	expect_addr(m, "ffff::", 1, "up to ffff:...:ffff");
	expect_addr(m, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1,
	    "up to ffff:...:ffff");
	expect_addr(m, "fffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 0,
	    "up to ffff:...:ffff");
	banlist_unmap(m);
}

/*
 * A lookup searches a summary of every few-hundredth range, then one
 * block of ranges: 1000 ranges make several blocks, and the first and
 * last address of every range must be banned, the ones just outside
 * not, the first and last range of each block included.
 */
static void
test_block_boundaries(void)
{
	struct banlist_set	 set;
	struct banlist_map	*m;
	struct sockaddr_storage	 ss;
	struct taddr		 a;
	char			 buf[64], txt[INET6_ADDRSTRLEN];
	size_t			 i, nv4, nv6, ns, used, bad4 = 0, bad6 = 0;
	int			 j, want, r = 0;

	banlist_set_init(&set);
	for (i = 0; i < 1000; i++) {
		/* 10.x.y.0/25: half of each /24, so none merge */
		xsnprintf(buf, sizeof(buf), "10.%zu.%zu.0/25", i / 256,
		    i % 256);
		r |= banlist_add_net(&set, buf);
		/* 2001:db8:i::/49: half of each /48 */
		xsnprintf(buf, sizeof(buf), "2001:db8:%zx::/49", i);
		r |= banlist_add_net(&set, buf);
	}
	m = map_new(BANLIST_HALF_SIZE);
	CHECK(r == 0 && set.skipped == 0 && banlist_publish(m, &set) == 0,
	    "1000 + 1000 ranges publish");
	banlist_set_free(&set);
	banlist_counts(m, &nv4, &nv6, &ns, &used);
	CHECK(nv4 == 1000 && nv6 == 1000, "1000 + 1000 ranges: %zu, %zu",
	    nv4, nv6);
	memset(&a, 0, sizeof(a));
	for (i = 0; i < 1000; i++) {
		for (j = 0; j < 4; j++) {
			/* first, last, just before, just after */
			a.v4 = 1;
			a.mapped = 0;
			a.a4 = 0x0a000000u | (uint32_t)i << 8;
			a.a4 += j == 0 ? 0 : j == 1 ? 127 : j == 2 ?
			    (uint32_t)-1 : 128;
			want = j < 2;
			addr_sockaddr(&a, &ss);
			if (banlist_lookup_addr(m, &ss) != want &&
			    bad4++ < NSHOW)
				printf("range %zu: %s %s\n", i,
				    addr_text(&a, txt, sizeof(txt)),
				    want ? "not banned" : "banned");
			a.v4 = 0;
			a.a6.hi = 0x20010db800000000ULL | (uint64_t)i << 16;
			a.a6.lo = 0;
			if (j == 1) {
				a.a6.hi |= 0x7fff;
				a.a6.lo = ~0ULL;
			} else if (j == 2)
				w128_dec(&a.a6);
			else if (j == 3)
				a.a6.hi |= 0x8000;
			addr_sockaddr(&a, &ss);
			if (banlist_lookup_addr(m, &ss) != want &&
			    bad6++ < NSHOW)
				printf("range %zu: %s %s\n", i,
				    addr_text(&a, txt, sizeof(txt)),
				    want ? "not banned" : "banned");
		}
	}
	CHECK(bad4 == 0, "IPv4 range ends across blocks: %zu wrong", bad4);
	CHECK(bad6 == 0, "IPv6 range ends across blocks: %zu wrong", bad6);
	banlist_unmap(m);
}

/* --- senders ------------------------------------------------------------- */

static void
test_senders(void)
{
	static const char *const good[] = {
		"Spam@EVIL.test", "@blocked.test", "x@y.test",
		"Spam@evil.test", "\"q@q\"@quoted.test",
	};
	static const char *const bad[] = {
		"", "noat", "a@", "@", "a b@c.test", "a@c.test\r", "a\t@b.test",
		"a@b.test\x7f",
	};
	struct banlist_set	 set;
	struct banlist_map	*m;
	char			 longaddr[400];
	size_t			 i, before, nv4, nv6, ns, used;
	int			 r = 0;

	banlist_set_init(&set);
	set.quiet = 1;
	for (i = 0; i < NELEM(good); i++)
		r |= banlist_add_sender(&set, good[i]);
	CHECK(r == 0 && set.nsenders == NELEM(good) && set.skipped == 0,
	    "good senders: %zu added, %zu skipped", set.nsenders,
	    set.skipped);
	for (i = 0; i < NELEM(bad); i++) {
		before = set.skipped;
		CHECK(banlist_add_sender(&set, bad[i]) == 0 &&
		    set.skipped == before + 1 && set.nsenders == NELEM(good),
		    "garbage sender entry \"%s\" taken", bad[i]);
	}
	memset(longaddr, 'a', 300);
	memcpy(longaddr + 300, "@b.test", 8);
	before = set.skipped;
	CHECK(banlist_add_sender(&set, longaddr) == 0 &&
	    set.skipped == before + 1, "a 307-byte sender entry taken");

	m = map_new(BANLIST_HALF_SIZE);
	CHECK(banlist_publish(m, &set) == 0, "publish senders");
	banlist_counts(m, &nv4, &nv6, &ns, &used);
	CHECK(ns == NELEM(good) - 1,
	    "\"Spam@EVIL.test\" and \"Spam@evil.test\" are one entry: %zu",
	    ns);
	banlist_set_free(&set);

	expect_sender(m, "Spam@EVIL.test", 1, "exact");
	expect_sender(m, "Spam@evil.TEST", 1, "domain case-insensitive");
	expect_sender(m, "Spam@evil.test", 1, "domain case-insensitive");
	expect_sender(m, "spam@evil.test", 0, "local part as given");
	expect_sender(m, "SPAM@EVIL.TEST", 0, "local part as given");
	expect_sender(m, "Spam@evil.test.example", 0, "no suffix match");
	expect_sender(m, "Spam@sub.evil.test", 0, "no subdomain match");
	expect_sender(m, "pam@evil.test", 0, "no partial local part");
	expect_sender(m, "x@y.test", 1, "exact");
	expect_sender(m, "x@Y.Test", 1, "exact, domain case-insensitive");
	expect_sender(m, "xx@y.test", 0, "exact only");
	expect_sender(m, "x@y.test2", 0, "exact only");
	expect_sender(m, "x@y.tes", 0, "exact only");
	expect_sender(m, "anyone@blocked.test", 1, "@domain");
	expect_sender(m, "ANYONE@BLOCKED.TEST", 1, "@domain");
	expect_sender(m, "a.b+c@Blocked.Test", 1, "@domain");
	expect_sender(m, "a@sub.blocked.test", 0, "@domain, not subdomains");
	expect_sender(m, "a@notblocked.test", 0, "@domain, not suffixes");
	expect_sender(m, "a@blocked.test.evil", 0, "@domain, not prefixes");
	expect_sender(m, "\"q@q\"@quoted.test", 1, "quoted local part");
	expect_sender(m, "q@quoted.test", 0, "quoted local part");
	expect_sender(m, "", 0, "the null sender");
	expect_sender(m, "@blocked.test", 0, "no local part");
	banlist_unmap(m);

	/* the null sender never matches, whatever the list */
	banlist_set_init(&set);
	set.quiet = 1;
	r = banlist_add_sender(&set, "@") | banlist_add_sender(&set, "") |
	    banlist_add_sender(&set, "@blocked.test");
	m = map_new(BANLIST_HALF_SIZE);
	CHECK(r == 0 && banlist_publish(m, &set) == 0, "publish");
	expect_sender(m, "", 0, "the null sender, with junk entries");
	banlist_set_free(&set);
	banlist_unmap(m);
}

/* --- banlist_parse() ----------------------------------------------------- */

static void
test_parse(void)
{
	static const struct {
		const char	*text;
		int		 senders;
		int		 want;	/* -9: any count >= 0 */
		size_t		 nv4, nv6, nsenders, skipped;
	} t[] = {
		{ "[\"10.0.0.0/8\", \"2001:db8::/32\"]", 0, 2, 1, 1, 0, 0 },
		{ "{\"banned_subnets\": [\"10.0.0.0/8\"]}", 0, 1, 1, 0, 0, 0 },
		{ "{\"other\": 1, \"banned_subnets\": [\"10.0.0.0/8\", "
		    "\"192.0.2.1\"]}", 0, 2, 2, 0, 0, 0 },
		{ "{\"subnets\": [\"10.0.0.0/8\"]}", 0, -1, 0, 0, 0, 0 },
		{ "{\"banned_subnets\": \"10.0.0.0/8\"}", 0, -1, 0, 0, 0, 0 },
		{ "{\"banned_subnets\": null}", 0, -1, 0, 0, 0, 0 },
		{ "{}", 0, -1, 0, 0, 0, 0 },
		{ "\"10.0.0.0/8\"", 0, -1, 0, 0, 0, 0 },
		{ "10.0.0.0/8", 0, -1, 0, 0, 0, 0 },
		{ "", 0, -1, 0, 0, 0, 0 },
		{ "[", 0, -1, 0, 0, 0, 0 },
		{ "[\"10.0.0.0/8\",]", 0, -1, 0, 0, 0, 0 },
		{ "[\"10.0.0.0/8\"] [\"192.0.2.1\"]", 0, -1, 0, 0, 0, 0 },
		{ "<html>503</html>", 0, -1, 0, 0, 0, 0 },
		{ "[\"10.0.0.0/8\", 5, null, true, {\"a\": 1}, [\"x\"]]", 0,
		    -9, 1, 0, 0, 5 },
		{ "[\"abc\", \"1.2.3.4/33\"]", 0, -1, 0, 0, 0, 2 },
		{ "[1, 2]", 0, -1, 0, 0, 0, 2 },
		{ "[]", 0, 0, 0, 0, 0, 0 },
		{ "{\"banned_subnets\": []}", 0, 0, 0, 0, 0, 0 },
		{ "[\"a@b.test\", \"@c.test\"]", 1, 2, 0, 0, 2, 0 },
		{ "{\"blocked_emails\": [\"a@b.test\", \"bad\", 7]}", 1, -9,
		    0, 0, 1, 2 },
		{ "{\"blocked_emails\": [\"bad\"]}", 1, -1, 0, 0, 0, 1 },
		{ "{\"blocked_emails\": []}", 1, 0, 0, 0, 0, 0 },
	};
	struct banlist_set	 set;
	struct banlist_map	*m;
	const char		*key, *text;
	size_t			 i;
	int			 r, devnull;

	/* test_quiet() checks the logging; keep the output readable */
	if ((devnull = open("/dev/null", O_WRONLY)) != -1)
		log_init(devnull, 0);
	for (i = 0; i < NELEM(t); i++) {
		key = t[i].senders ? "blocked_emails" : "banned_subnets";
		banlist_set_init(&set);
		set.quiet = 1;
		r = banlist_parse(t[i].text, strlen(t[i].text), key,
		    t[i].senders, &set);
		CHECK(t[i].want == -9 ? r >= 0 : r == t[i].want,
		    "banlist_parse(%s) = %d", t[i].text, r);
		if (r >= 0 || t[i].skipped > 0)
			CHECK(set.nv4 == t[i].nv4 && set.nv6 == t[i].nv6 &&
			    set.nsenders == t[i].nsenders &&
			    set.skipped == t[i].skipped,
			    "banlist_parse(%s): %zu IPv4, %zu IPv6, "
			    "%zu senders, %zu skipped", t[i].text, set.nv4,
			    set.nv6, set.nsenders, set.skipped);
		banlist_set_free(&set);
	}
	log_init(STDERR_FILENO, 0);
	if (devnull != -1)
		close(devnull);

	/* only len bytes are read */
	text = "[\"10.0.0.0/8\"]trailing garbage";
	banlist_set_init(&set);
	r = banlist_parse(text, 14, "banned_subnets", 0, &set);
	CHECK(r == 1 && set.nv4 == 1, "banlist_parse reads len bytes: %d",
	    r);
	banlist_set_free(&set);

	/* a parsed list publishes and bans */
	banlist_set_init(&set);
	text = "{\"banned_subnets\": [\"10.0.0.0/8\", \"2001:db8::/32\"]}";
	r = banlist_parse(text, strlen(text), "banned_subnets", 0, &set);
	text = "{\"blocked_emails\": [\"a@b.test\", \"@c.test\"]}";
	r += banlist_parse(text, strlen(text), "blocked_emails", 1, &set);
	m = map_new(BANLIST_HALF_SIZE);
	CHECK(r == 4 && banlist_publish(m, &set) == 0, "parse and publish");
	expect_addr(m, "10.9.9.9", 1, "parsed list");
	expect_addr(m, "2001:db8:1::1", 1, "parsed list");
	expect_addr(m, "11.0.0.1", 0, "parsed list");
	expect_sender(m, "a@b.test", 1, "parsed list");
	expect_sender(m, "z@c.test", 1, "parsed list");
	expect_sender(m, "z@b.test", 0, "parsed list");
	banlist_set_free(&set);
	banlist_unmap(m);
}

/*
 * Bad entries are logged unless set->quiet: a bad string entry, and a
 * member that is not a string at all.
 */
static void
test_quiet(void)
{
	struct banlist_set	 set;
	struct stat		 st;
	const char		*text;
	FILE			*f;
	char			 buf[4096];
	size_t			 n;
	off_t			 at;
	int			 fd, r;

	if ((f = tmpfile()) == NULL) {
		CHECK(0, "tmpfile");
		return;
	}
	fd = fileno(f);
	log_init(fd, 0);

	banlist_set_init(&set);
	r = banlist_add_net(&set, "abc");
	fstat(fd, &st);
	at = st.st_size;
	CHECK(r == 0 && at > 0, "not quiet: a bad entry is logged");

	set.quiet = 1;
	r = banlist_add_net(&set, "abc");
	r |= banlist_add_sender(&set, "nodomain");
	fstat(fd, &st);
	CHECK(r == 0 && st.st_size == at, "quiet: banlist_add_net and "
	    "banlist_add_sender log nothing (%lld bytes logged)",
	    (long long)(st.st_size - at));
	at = st.st_size;

	text = "[\"abc\", 5, \"10.0.0.0/8\"]";
	banlist_parse(text, strlen(text), "banned_subnets", 0, &set);
	fstat(fd, &st);
	n = 0;
	if (st.st_size > at && lseek(fd, at, SEEK_SET) == at) {
		n = (size_t)read(fd, buf, sizeof(buf) - 1);
		if (n == (size_t)-1)
			n = 0;
	}
	buf[n] = '\0';
	CHECK(st.st_size == at, "quiet: banlist_parse logs nothing for a "
	    "member that is not a string; logged: %s", buf);
	banlist_set_free(&set);

	log_init(STDERR_FILENO, 0);
	fclose(f);
}

/* --- publishing ---------------------------------------------------------- */

static void
test_publish_twice(void)
{
	struct banlist_set	 set;
	struct banlist_map	*m;
	size_t			 nv4, nv6, ns, used;
	int			 r;

	m = map_new(BANLIST_HALF_SIZE);
	CHECK(banlist_valid(m), "a new table is valid");
	expect_addr(m, "10.1.2.3", 0, "before any publish");
	expect_sender(m, "x@a.test", 0, "before any publish");

	banlist_set_init(&set);
	r = banlist_add_net(&set, "10.0.0.0/8");
	r |= banlist_add_net(&set, "2001:db8:a::/48");
	r |= banlist_add_sender(&set, "x@a.test");
	CHECK(r == 0 && banlist_publish(m, &set) == 0, "first publish");
	banlist_set_free(&set);
	expect_addr(m, "10.1.2.3", 1, "first table");
	expect_addr(m, "2001:db8:a::1", 1, "first table");
	expect_sender(m, "x@a.test", 1, "first table");

	banlist_set_init(&set);
	r = banlist_add_net(&set, "192.0.2.0/24");
	r |= banlist_add_net(&set, "2001:db8:b::/48");
	r |= banlist_add_sender(&set, "y@a.test");
	CHECK(r == 0 && banlist_publish(m, &set) == 0, "second publish");
	banlist_set_free(&set);
	banlist_counts(m, &nv4, &nv6, &ns, &used);
	CHECK(nv4 == 1 && nv6 == 1 && ns == 1 && used > 0,
	    "second table counts: %zu %zu %zu %zu", nv4, nv6, ns, used);
	expect_addr(m, "10.1.2.3", 0, "second table replaced the first");
	expect_addr(m, "2001:db8:a::1", 0, "second table replaced the first");
	expect_sender(m, "x@a.test", 0, "second table replaced the first");
	expect_addr(m, "192.0.2.1", 1, "second table");
	expect_addr(m, "2001:db8:b::1", 1, "second table");
	expect_sender(m, "y@a.test", 1, "second table");

	/* the third goes where the first was: nothing of it may remain */
	banlist_set_init(&set);
	CHECK(banlist_publish(m, &set) == 0, "publish an empty table");
	banlist_set_free(&set);
	banlist_counts(m, &nv4, &nv6, &ns, &used);
	CHECK(nv4 == 0 && nv6 == 0 && ns == 0,
	    "empty table counts: %zu %zu %zu", nv4, nv6, ns);
	expect_addr(m, "10.1.2.3", 0, "empty table");
	expect_addr(m, "192.0.2.1", 0, "empty table");
	expect_addr(m, "2001:db8:a::1", 0, "empty table");
	expect_sender(m, "x@a.test", 0, "empty table");
	expect_sender(m, "y@a.test", 0, "empty table");
	banlist_unmap(m);
}

/* A table that does not fit is refused; the live one stays. */
static void
test_publish_too_big(void)
{
	struct banlist_set	 set;
	struct banlist_map	*m;
	char			 buf[32];
	size_t			 i, nv4, nv6, ns, used;
	int			 r;

	m = map_new(8192);
	banlist_set_init(&set);
	set.quiet = 1;
	r = banlist_add_net(&set, "10.0.0.0/8");
	r |= banlist_add_sender(&set, "x@a.test");
	CHECK(r == 0 && banlist_publish(m, &set) == 0, "a small table fits");
	banlist_set_free(&set);

	banlist_set_init(&set);
	set.quiet = 1;
	for (i = 0; i < 2000; i++) {
		/* every other address: 2000 ranges that do not merge */
		xsnprintf(buf, sizeof(buf), "192.0.%zu.%zu", i / 100,
		    (i % 100) * 2);
		r |= banlist_add_net(&set, buf);
	}
	CHECK(r == 0 && set.skipped == 0 && banlist_publish(m, &set) == -1,
	    "2000 ranges do not fit in 8 kB");
	banlist_set_free(&set);
	banlist_counts(m, &nv4, &nv6, &ns, &used);
	CHECK(nv4 == 1 && ns == 1, "the live table stays: %zu, %zu", nv4,
	    ns);
	expect_addr(m, "10.1.2.3", 1, "the live table stays");
	expect_addr(m, "192.0.0.0", 0, "the live table stays");
	expect_sender(m, "x@a.test", 1, "the live table stays");
	banlist_unmap(m);
}

static void
test_lookup_misc(void)
{
	static const char *const all[] = { "0.0.0.0/0", "::/0" };
	struct sockaddr_storage	 ss;
	struct taddr		 a;
	struct banlist_map	*m;
	size_t			 nv4, nv6;

	memset(&a, 0, sizeof(a));
	a.v4 = 1;
	a.a4 = 0x0a010203;
	addr_sockaddr(&a, &ss);
	CHECK(banlist_lookup_addr(NULL, &ss) == 0, "no table: not banned");
	CHECK(banlist_lookup_sender(NULL, "a@b.test") == 0,
	    "no table: not blocked");

	m = map_new(BANLIST_HALF_SIZE);
	CHECK(publish_nets(m, all, 2, &nv4, &nv6) == 0, "publish all");
	CHECK(banlist_lookup_addr(m, &ss) == 1, "10.1.2.3 banned by /0");
	memset(&ss, 0, sizeof(ss));
	ss.ss_family = AF_UNIX;
	CHECK(banlist_lookup_addr(m, &ss) == 0, "AF_UNIX is never banned");
	ss.ss_family = AF_UNSPEC;
	CHECK(banlist_lookup_addr(m, &ss) == 0, "AF_UNSPEC is never banned");
	banlist_unmap(m);
}

/* --- random sets against a brute-force scan ------------------------------ */

/* An IPv4 address; *mode tells the region it came from. */
static uint32_t
gen_addr4(int *mode)
{
	*mode = (int)(rng() % 4);
	switch (*mode) {
	case 0:
	case 1:
		return (uint32_t)rng();
	case 2:		/* 10.0.0.0/16, dense: ranges touch and overlap */
		return 0x0a000000u | (uint32_t)(rng() & 0xffff);
	default:	/* the ends of the space */
		return rng() % 2 ? (uint32_t)(rng() & 0xffff) :
		    0xffff0000u | (uint32_t)(rng() & 0xffff);
	}
}

/* An IPv6 address that is never IPv4-mapped. */
static struct w128
gen_addr6(int *mode)
{
	struct w128	 a;

	do {
		*mode = (int)(rng() % 4);
		switch (*mode) {
		case 0:
			a.hi = rng();
			a.lo = rng();
			break;
		case 1:		/* 2001:db8::/32 */
			a.hi = 0x20010db800000000ULL | (rng() & 0xffffffff);
			a.lo = rng();
			break;
		case 2:		/* 2001:db8::/96, dense */
			a.hi = 0x20010db800000000ULL;
			a.lo = rng() & 0xffffffff;
			break;
		default:	/* the ends of the space */
			if (rng() % 2) {
				a.hi = 0;
				a.lo = rng() & 0xffffffff;
			} else {
				a.hi = ~0ULL;
				a.lo = ~0ULL ^ (rng() & 0xffff);
			}
			break;
		}
	} while (w128_mapped(&a));
	return a;
}

/*
 * A random entry: e gets the range it must cover, buf its text, in
 * any of the spellings banlist_add_net() takes.  Big sets use longer
 * prefixes so that they do not cover everything.
 */
static void
gen_net(struct tnet *e, char *buf, size_t len, int big)
{
	struct w128	 a, m;
	uint8_t		 b[16];
	char		 txt[INET6_ADDRSTRLEN];
	uint32_t	 a4, m4;
	int		 plen, mode;

	memset(e, 0, sizeof(*e));
	if (rng() % 2) {
		e->v4 = 1;
		a4 = gen_addr4(&mode);
		if (mode >= 2)
			plen = 24 + (int)(rng() % 9);
		else if (big)
			plen = 16 + (int)(rng() % 17);
		else
			plen = rng() % 64 == 0 ? (int)(rng() % 33) :
			    8 + (int)(rng() % 25);
		m4 = plen == 0 ? 0 : 0xffffffffu << (32 - plen);
		e->lo4 = a4 & m4;
		e->hi4 = e->lo4 | ~m4;
		if (rng() % 2)
			a4 = e->lo4;	/* else the host bits stay */
		switch (rng() % 8) {
		case 0:
			xsnprintf(buf, len, "::ffff:%u.%u.%u.%u/%d",
			    a4 >> 24, (a4 >> 16) & 0xff, (a4 >> 8) & 0xff,
			    a4 & 0xff, plen + 96);
			break;
		case 1:
			if (plen == 32) {
				xsnprintf(buf, len, "%u.%u.%u.%u", a4 >> 24,
				    (a4 >> 16) & 0xff, (a4 >> 8) & 0xff,
				    a4 & 0xff);
				break;
			}
			/* FALLTHROUGH */
		default:
			xsnprintf(buf, len, "%u.%u.%u.%u/%d", a4 >> 24,
			    (a4 >> 16) & 0xff, (a4 >> 8) & 0xff, a4 & 0xff,
			    plen);
			break;
		}
		return;
	}
	a = gen_addr6(&mode);
	if (mode == 2)
		plen = 112 + (int)(rng() % 17);
	else if (mode == 3)
		plen = 96 + (int)(rng() % 33);
	else if (mode == 1)
		plen = 48 + (int)(rng() % 81);
	else if (big)
		plen = 16 + (int)(rng() % 113);
	else
		plen = rng() % 64 == 0 ? (int)(rng() % 129) :
		    16 + (int)(rng() % 113);
	w128_mask(plen, &m);
	e->lo6.hi = a.hi & m.hi;
	e->lo6.lo = a.lo & m.lo;
	e->hi6.hi = e->lo6.hi | ~m.hi;
	e->hi6.lo = e->lo6.lo | ~m.lo;
	if (rng() % 2)
		a = e->lo6;
	w128_bytes(&a, b);
	if (inet_ntop(AF_INET6, b, txt, sizeof(txt)) == NULL) {
		printf("FAIL: inet_ntop\n");
		exit(2);
	}
	if (plen == 128 && rng() % 4 == 0)
		xsnprintf(buf, len, "%s", txt);
	else
		xsnprintf(buf, len, "%s/%d", txt, plen);
}

/* A probe: anywhere, inside an entry, or just at or beyond its ends. */
static void
gen_probe(const struct tnet *nets, size_t n, struct taddr *p)
{
	const struct tnet	*e;
	int			 kind, mode;

	memset(p, 0, sizeof(*p));
	kind = n == 0 ? 0 : (int)(rng() % 10);
	if (kind < 4) {
		p->v4 = (int)(rng() % 2);
		if (p->v4)
			p->a4 = gen_addr4(&mode);
		else
			p->a6 = gen_addr6(&mode);
	} else {
		e = &nets[rng() % n];
		p->v4 = e->v4;
		if (kind < 7) {		/* inside */
			p->a4 = e->lo4 | ((uint32_t)rng() &
			    (e->lo4 ^ e->hi4));
			p->a6.hi = e->lo6.hi | (rng() &
			    (e->lo6.hi ^ e->hi6.hi));
			p->a6.lo = e->lo6.lo | (rng() &
			    (e->lo6.lo ^ e->hi6.lo));
		} else {
			switch (rng() % 4) {
			case 0:
				p->a4 = e->lo4;
				p->a6 = e->lo6;
				break;
			case 1:
				p->a4 = e->hi4;
				p->a6 = e->hi6;
				break;
			case 2:
				p->a4 = e->lo4 - 1;
				p->a6 = e->lo6;
				w128_dec(&p->a6);
				break;
			default:
				p->a4 = e->hi4 + 1;
				p->a6 = e->hi6;
				w128_inc(&p->a6);
				break;
			}
		}
	}
	if (!p->v4 && w128_mapped(&p->a6)) {
		/* a client in ::ffff:0:0/96 is an IPv4 client */
		p->v4 = 1;
		p->mapped = 1;
		p->a4 = (uint32_t)p->a6.lo;
	} else if (p->v4)
		p->mapped = rng() % 4 == 0;
}

static int
brute_addr(const struct tnet *nets, size_t n, const struct taddr *p)
{
	size_t	 i;

	for (i = 0; i < n; i++) {
		if (nets[i].v4 != p->v4)
			continue;
		if (p->v4 ? nets[i].lo4 <= p->a4 && p->a4 <= nets[i].hi4 :
		    w128_cmp(&nets[i].lo6, &p->a6) <= 0 &&
		    w128_cmp(&p->a6, &nets[i].hi6) <= 0)
			return 1;
	}
	return 0;
}

static int
cmp_tnet(const void *a, const void *b)
{
	const struct tnet	*x = a, *y = b;

	if (x->v4 != y->v4)
		return x->v4 ? -1 : 1;
	if (x->v4)
		return x->lo4 < y->lo4 ? -1 : x->lo4 > y->lo4;
	return w128_cmp(&x->lo6, &y->lo6);
}

/* How many ranges the entries make once merged, done the slow way. */
static int
merged_counts(const struct tnet *nets, size_t n, size_t *n4, size_t *n6)
{
	struct tnet	*s;
	struct w128	 end, next;
	uint64_t	 end4 = 0;
	size_t		 i, first;

	*n4 = *n6 = 0;
	if (n == 0)
		return 0;
	if ((s = reallocarray(NULL, n, sizeof(*s))) == NULL)
		return -1;
	memcpy(s, nets, n * sizeof(*s));
	qsort(s, n, sizeof(*s), cmp_tnet);	/* IPv4 first */
	for (i = 0; i < n && s[i].v4; i++) {
		if (i == 0 || (uint64_t)s[i].lo4 > end4 + 1) {
			(*n4)++;
			end4 = s[i].hi4;
		} else if (s[i].hi4 > end4)
			end4 = s[i].hi4;
	}
	end.hi = end.lo = 0;
	for (first = i; i < n; i++) {
		next = end;
		w128_inc(&next);	/* 0 when end is the last address */
		if (i == first || ((next.hi != 0 || next.lo != 0) &&
		    w128_cmp(&s[i].lo6, &next) > 0)) {
			(*n6)++;
			end = s[i].hi6;
		} else if (w128_cmp(&s[i].hi6, &end) > 0)
			end = s[i].hi6;
	}
	free(s);
	return 0;
}

static void
random_nets_round(size_t n, uint64_t seed)
{
	struct banlist_set	 set;
	struct banlist_map	*m;
	struct sockaddr_storage	 ss;
	struct tnet		*nets;
	struct taddr		 p;
	char			 buf[128], txt[INET6_ADDRSTRLEN];
	size_t			 i, nv4, nv6, ns, used, x4, x6;
	size_t			 bad = 0, hits = 0, v4 = 0, mapped = 0;
	int			 want, got;

	rng_state = seed;
	if ((nets = reallocarray(NULL, n ? n : 1, sizeof(*nets))) == NULL) {
		CHECK(0, "size %zu: out of memory", n);
		return;
	}
	banlist_set_init(&set);
	set.quiet = 1;
	for (i = 0; i < n; i++) {
		gen_net(&nets[i], buf, sizeof(buf), n >= 1000);
		if (banlist_add_net(&set, buf) == -1) {
			CHECK(0, "size %zu: out of memory", n);
			goto done;
		}
		if (set.skipped != 0) {
			CHECK(0, "size %zu (seed %#llx): entry \"%s\" "
			    "skipped", n, (unsigned long long)seed, buf);
			goto done;
		}
	}
	m = map_new(BANLIST_HALF_SIZE);
	CHECK(banlist_publish(m, &set) == 0, "size %zu: publish", n);
	banlist_counts(m, &nv4, &nv6, &ns, &used);
	if (merged_counts(nets, n, &x4, &x6) == -1) {
		CHECK(0, "size %zu: out of memory", n);
		banlist_unmap(m);
		goto done;
	}
	CHECK(nv4 == x4 && nv6 == x6, "size %zu (seed %#llx): %zu IPv4 "
	    "and %zu IPv6 ranges, expected %zu and %zu", n,
	    (unsigned long long)seed, nv4, nv6, x4, x6);

	for (i = 0; i < NPROBES; i++) {
		gen_probe(nets, n, &p);
		addr_sockaddr(&p, &ss);
		want = brute_addr(nets, n, &p);
		got = banlist_lookup_addr(m, &ss);
		hits += want;
		v4 += p.v4;
		mapped += p.mapped;
		if (got != want && bad++ < NSHOW)
			printf("size %zu (seed %#llx), probe %zu: %s: "
			    "banlist %d, scan %d\n", n,
			    (unsigned long long)seed, i,
			    addr_text(&p, txt, sizeof(txt)), got, want);
	}
	CHECK(bad == 0, "size %zu (seed %#llx): %zu of %d lookups disagree "
	    "with the scan", n, (unsigned long long)seed, bad, NPROBES);
	if (n >= 10)
		CHECK(hits > 0 && hits < NPROBES && v4 > 0 && v4 < NPROBES &&
		    mapped > 0, "size %zu: the probes must be mixed: "
		    "%zu banned, %zu IPv4 (%zu mapped) of %d", n, hits, v4,
		    mapped, NPROBES);
	printf("size %zu: %zu IPv4 + %zu IPv6 ranges, %d probes, %zu "
	    "banned\n", n, nv4, nv6, NPROBES, hits);
	banlist_unmap(m);
 done:
	banlist_set_free(&set);
	free(nets);
}

static void
test_random_nets(uint64_t seed)
{
	static const size_t	 sizes[] = {
		0, 1, 10, 100, 1000, 10000, 100000
	};
	size_t			 i;

	for (i = 0; i < NELEM(sizes); i++)
		random_nets_round(sizes[i], seed + i);
}

/*
 * Senders from small alphabets, so that entries and probes collide;
 * the scan applies the rule: the local part as given, the domain in
 * any case, "@domain" for any local part.
 */
static void
test_random_senders(uint64_t seed)
{
	static const char *const locals[] = {
		"a", "b", "A", "B", "a.b", "A.b", "\"a@b\"",
	};
	static const char *const domains[] = {
		"x.test", "X.test", "x.TEST", "y.test", "sub.x.test",
		"xx.test", "x.tes",
	};
	struct {
		const char	*local;		/* NULL for "@domain" */
		const char	*domain;
	} ent[12];
	struct banlist_set	 set;
	struct banlist_map	*m;
	char			 buf[128];
	const char		*pl, *pd;
	size_t			 i, k, bad = 0, hits = 0;
	int			 want, got, r = 0;

	rng_state = seed;
	banlist_set_init(&set);
	for (i = 0; i < NELEM(ent); i++) {
		ent[i].local = rng() % 4 == 0 ? NULL :
		    locals[rng() % NELEM(locals)];
		ent[i].domain = domains[rng() % NELEM(domains)];
		xsnprintf(buf, sizeof(buf), "%s@%s",
		    ent[i].local ? ent[i].local : "", ent[i].domain);
		r |= banlist_add_sender(&set, buf);
	}
	m = map_new(BANLIST_HALF_SIZE);
	CHECK(r == 0 && set.skipped == 0 && banlist_publish(m, &set) == 0,
	    "random senders: publish");
	for (i = 0; i < 2000; i++) {
		pl = locals[rng() % NELEM(locals)];
		pd = domains[rng() % NELEM(domains)];
		xsnprintf(buf, sizeof(buf), "%s@%s", pl, pd);
		want = 0;
		for (k = 0; k < NELEM(ent) && !want; k++)
			want = strcasecmp(ent[k].domain, pd) == 0 &&
			    (ent[k].local == NULL ||
			    strcmp(ent[k].local, pl) == 0);
		got = banlist_lookup_sender(m, buf);
		hits += want;
		if (got != want && bad++ < NSHOW)
			printf("random senders (seed %#llx): %s: banlist %d, "
			    "scan %d\n", (unsigned long long)seed, buf, got,
			    want);
	}
	CHECK(bad == 0, "random senders (seed %#llx): %zu of 2000 lookups "
	    "disagree with the scan", (unsigned long long)seed, bad);
	CHECK(hits > 0 && hits < 2000, "random senders: the probes must "
	    "be mixed: %zu of 2000 blocked", hits);
	banlist_set_free(&set);
	banlist_unmap(m);
}

/* --- lookups while the table is switched --------------------------------- */

/*
 * Table k of three: every one bans 10.0.0.0/8 and "spam@evil.test";
 * none bans 192.0.2.55, 2001:db8:dead::1 or "ok@fine.test".  They
 * differ in size and in where 10.0.0.0/8 sits, so a reader mixing
 * two of them would look in the wrong place.
 */
static void
conc_fill(struct banlist_set *set, int k)
{
	char	 buf[64];
	int	 i, r = 0;

	banlist_set_init(set);
	set->quiet = 1;
	r |= banlist_add_net(set, "10.0.0.0/8");
	r |= banlist_add_sender(set, "spam@evil.test");
	if (k >= 1) {
		for (i = 0; i < 5000; i++) {
			xsnprintf(buf, sizeof(buf), "100.%d.%d.0/24",
			    64 + i / 256, i % 256);
			r |= banlist_add_net(set, buf);
			xsnprintf(buf, sizeof(buf), "2001:db8:1:%x::/64",
			    i * 2);
			r |= banlist_add_net(set, buf);
			xsnprintf(buf, sizeof(buf), "s%d@b.test", i);
			r |= banlist_add_sender(set, buf);
		}
	}
	if (k == 2) {
		for (i = 0; i < 20000; i++) {
			/* before 10.0.0.0/8, so that it moves */
			xsnprintf(buf, sizeof(buf), "1.%d.%d.1", i / 256,
			    i % 256);
			r |= banlist_add_net(set, buf);
			xsnprintf(buf, sizeof(buf), "2001:db8:2:%x::1", i);
			r |= banlist_add_net(set, buf);
		}
	}
	if (r != 0) {
		printf("FAIL: out of memory\n");
		exit(2);
	}
}

static void *
conc_writer(void *arg)
{
	struct conc	*c = arg;
	struct timespec	 pause = { 0, 1000000 };
	size_t		 k = 0;

	while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
		if (banlist_publish(c->map, &c->sets[k]) != 0)
			c->publish_errors++;
		/*
		 * Back to back, a table is live only while the next one
		 * is built, which is short after a small one.  Now and
		 * then leave one live for a while, so that the reader
		 * sees each (8 and 3 have no common factor).
		 */
		if (++c->publishes % 8 == 0)
			nanosleep(&pause, NULL);
		k = (k + 1) % c->nsets;
	}
	return NULL;
}

static void *
conc_reader(void *arg)
{
	struct conc		*c = arg;
	struct sockaddr_storage	 ban4, ban4m, free4, free6;
	struct taddr		 a;
	size_t			 k, nv4, nv6, ns, used;
	unsigned long		 it = 0;

	memset(&a, 0, sizeof(a));
	a.v4 = 1;
	a.a4 = 0x0a010203;		/* 10.1.2.3 */
	addr_sockaddr(&a, &ban4);
	a.mapped = 1;
	addr_sockaddr(&a, &ban4m);
	a.mapped = 0;
	a.a4 = 0xc0000237;		/* 192.0.2.55 */
	addr_sockaddr(&a, &free4);
	a.v4 = 0;
	a.a6.hi = 0x20010db8deadULL << 16;
	a.a6.lo = 1;			/* 2001:db8:dead::1 */
	addr_sockaddr(&a, &free6);

	while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
		c->missed += !banlist_lookup_addr(c->map, &ban4);
		c->missed += !banlist_lookup_addr(c->map, &ban4m);
		c->missed += !banlist_lookup_sender(c->map, "spam@evil.test");
		c->spurious += banlist_lookup_addr(c->map, &free4);
		c->spurious += banlist_lookup_addr(c->map, &free6);
		c->spurious += banlist_lookup_sender(c->map, "ok@fine.test");
		c->lookups += 6;
		if (it++ % 64 == 0) {
			banlist_counts(c->map, &nv4, &nv6, &ns, &used);
			for (k = 0; k < c->nsets; k++)
				if (nv4 == c->nv4[k])
					c->seen |= 1u << k;
		}
	}
	return NULL;
}

static void
test_concurrent_publish(void)
{
	struct banlist_set	 sets[3];
	struct conc		 c;
	struct timespec		 ts;
	pthread_t		 w, r;
	size_t			 k, nv6, ns, used;
	int			 ok;

	memset(&c, 0, sizeof(c));
	c.map = map_new(BANLIST_HALF_SIZE);
	c.sets = sets;
	c.nsets = NELEM(sets);
	for (k = 0; k < c.nsets; k++) {
		conc_fill(&sets[k], (int)k);
		/* publish once: sorted and merged, its size is known */
		CHECK(banlist_publish(c.map, &sets[k]) == 0, "publish %zu",
		    k);
		banlist_counts(c.map, &c.nv4[k], &nv6, &ns, &used);
	}
	CHECK(c.nv4[0] != c.nv4[1] && c.nv4[1] != c.nv4[2] &&
	    c.nv4[0] != c.nv4[2], "three tables of different sizes: %zu, "
	    "%zu, %zu", c.nv4[0], c.nv4[1], c.nv4[2]);

	ok = pthread_create(&w, NULL, conc_writer, &c) == 0;
	if (ok && pthread_create(&r, NULL, conc_reader, &c) != 0) {
		__atomic_store_n(&c.stop, 1, __ATOMIC_RELEASE);
		pthread_join(w, NULL);
		ok = 0;
	}
	CHECK(ok, "pthread_create");
	if (ok) {
		ts.tv_sec = CONC_SECONDS;
		ts.tv_nsec = 0;
		while (nanosleep(&ts, &ts) == -1)
			;
		__atomic_store_n(&c.stop, 1, __ATOMIC_RELEASE);
		pthread_join(w, NULL);
		pthread_join(r, NULL);
		printf("concurrent publish: %lu publishes, %lu lookups, "
		    "%lu missed bans, %lu spurious bans\n", c.publishes,
		    c.lookups, c.missed, c.spurious);
		CHECK(c.missed == 0, "a banned address or sender was found "
		    "not banned %lu times in %lu lookups while publishing",
		    c.missed, c.lookups);
		CHECK(c.spurious == 0, "an address or sender in no table was "
		    "found banned %lu times in %lu lookups", c.spurious,
		    c.lookups);
		CHECK(c.publish_errors == 0, "%lu publishes failed",
		    c.publish_errors);
		CHECK(c.publishes >= 30 && c.lookups >= 30000,
		    "the threads ran: %lu publishes, %lu lookups",
		    c.publishes, c.lookups);
		CHECK(c.seen == 7, "the reader saw every table live "
		    "(mask %#x)", c.seen);
	}
	for (k = 0; k < c.nsets; k++)
		banlist_set_free(&sets[k]);
	banlist_unmap(c.map);
}

int
main(int argc, char *argv[])
{
	unsigned long long	 seed = SEED_DEFAULT;
	char			*end;

	if (argc > 1) {
		errno = 0;
		seed = strtoull(argv[1], &end, 0);
		if (argv[1][0] == '\0' || *end != '\0' || errno != 0) {
			fprintf(stderr, "usage: banlist_test [seed]\n");
			return 2;
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	test_prefix_everything();
	test_prefix_exact();
	test_prefix_mapped();
	test_prefix_hostbits();
	test_prefix_garbage();
	test_duplicates();
	test_merge();
	test_edges();
	test_block_boundaries();
	test_senders();
	test_parse();
	test_quiet();
	test_publish_twice();
	test_publish_too_big();
	test_lookup_misc();
	test_random_nets(seed);
	test_random_senders(seed);
	test_concurrent_publish();
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
