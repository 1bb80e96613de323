/*
 * The ban-list table under a million prefixes: how long a publish
 * takes, how fast and how evenly lookups go, whether a reader waits
 * while a new table is published, and how much memory a table takes.
 *
 * A benchmark, not a test: it prints each figure next to its target
 * and exits 0 unless something fails outright (no memory, a publish
 * refused, a banned address found not banned).
 *
 *	bench/banlist-bench [prefixes [seed]]
 */

#include <sys/types.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../smtpd.h"

#define NPREFIX_DEFAULT	1000000
#define SEED_DEFAULT	0xbe4c4ba1ULL
#define NPROBES		(1 << 20)	/* random client addresses */
#define NLOOKUPS	10000000	/* for lookups per second */
#define NTIMED		1000000		/* lookups timed one by one */
#define HIST_NS		65536		/* histogram: 1 ns buckets */

#define TARGET_P99_NS		1000
#define TARGET_PUBLISH_S	2.0
#define TARGET_MEM_MB		64.0
/*
 * A reader that waits for the writer spins (there are no locks to
 * sleep on): its lookup takes CPU time for as long as the writer
 * writes, milliseconds.  A reader descheduled by a busy machine takes
 * wall time, not CPU time; a page fault on the new half, microseconds.
 * So: no lookup may take 1 ms of CPU.
 */
#define TARGET_STALL_CPU_NS	1000000


struct probe {
	uint8_t		 v6;
	uint8_t		 addr[16];
};

/* Lookup times, to the nanosecond up to HIST_NS. */
struct hist {
	uint32_t	*count;
	uint64_t	 n;
	uint64_t	 over;
	uint64_t	 max;
};

/*
 * The reader that runs while a new table is published.  Phases: 0 warm
 * up, 1 timed with no writer, 2 timed during the publish, 3 stop.
 */
struct reader {
	struct banlist_map	*map;
	const struct probe	*probes;
	struct hist		 h[2];		/* phases 1 and 2 */
	uint64_t		 max_cpu[2];	/* ns of CPU, one lookup */
	int			 phase;		/* atomic */
	uint64_t		 canary_missed;
};

static uint64_t	 rng_state;
static int	 missed_targets;

static uint64_t	rng(void);
static double	now(void);
static uint64_t	now_ns(void);
static uint64_t	cpu_ns(void);
static void	xsnprintf(char *, size_t, const char *, ...)
		    __attribute__((__format__ (printf, 3, 4)));
static void	fill_set(struct banlist_set *, size_t, uint64_t);
static struct probe *make_probes(size_t, uint64_t);
static int	lookup(const struct banlist_map *, struct sockaddr_storage *,
		    struct sockaddr_storage *, const struct probe *);
static int	hist_init(struct hist *);
static void	hist_add(struct hist *, uint64_t);
static uint64_t	hist_pct(const struct hist *, double);
static long	region_rss_kb(void);
static void	verdict(const char *, int);
static void	*reader_main(void *);

/* splitmix64: the same tables on every platform. */
static uint64_t
rng(void)
{
	uint64_t	 z;

	z = (rng_state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void
xsnprintf(char *buf, size_t len, const char *fmt, ...)
{
	va_list	 ap;
	int	 r;

	va_start(ap, fmt);
	r = vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	if (r < 0 || (size_t)r >= len) {
		fprintf(stderr, "buffer too small for %s\n", fmt);
		exit(1);
	}
}

static uint64_t
now_ns(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* This thread's CPU time. */
static uint64_t
cpu_ns(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static double
now(void)
{
	return (double)now_ns() / 1e9;
}

/*
 * n prefixes, half IPv4 and half IPv6, as text through
 * banlist_add_net(), as the fetcher loads them.  IPv4: /8 to /32, each
 * length half again as likely as the one shorter (P(/n) ~ 2^(n/2)),
 * so most are long and the short ones still cover about a third of
 * the space.  IPv6: /16 to /128, uniform, anywhere.  Every table also
 * bans 192.0.2.0/24, the reader's canary.
 */
static void
fill_set(struct banlist_set *set, size_t n, uint64_t seed)
{
	struct in6_addr	 a6;
	char		 buf[INET6_ADDRSTRLEN + 8], txt[INET6_ADDRSTRLEN];
	uint64_t	 hi, lo;
	uint32_t	 a4;
	size_t		 i;
	int		 len, j;

	rng_state = seed;
	banlist_set_init(set);
	set->quiet = 1;		/* host bits are set on purpose */
	for (i = 0; i < n; i++) {
		if (i % 2 == 0) {
			a4 = (uint32_t)rng();
			for (len = 32; len > 8 && rng() % 1000 < 707; len--)
				;
			xsnprintf(buf, sizeof(buf), "%u.%u.%u.%u/%d",
			    a4 >> 24, (a4 >> 16) & 0xff, (a4 >> 8) & 0xff,
			    a4 & 0xff, len);
		} else {
			hi = rng();
			lo = rng();
			for (j = 0; j < 8; j++) {
				a6.s6_addr[j] = (uint8_t)(hi >> (56 - 8 * j));
				a6.s6_addr[j + 8] =
				    (uint8_t)(lo >> (56 - 8 * j));
			}
			if (inet_ntop(AF_INET6, &a6, txt, sizeof(txt)) ==
			    NULL) {
				fprintf(stderr, "inet_ntop failed\n");
				exit(1);
			}
			xsnprintf(buf, sizeof(buf), "%s/%d", txt,
			    16 + (int)(rng() % 113));
		}
		if (banlist_add_net(set, buf) == -1) {
			fprintf(stderr, "out of memory at %zu prefixes\n", i);
			exit(1);
		}
	}
	if (banlist_add_net(set, "192.0.2.0/24") == -1) {
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
}

/* n random client addresses, half IPv4 and half IPv6. */
static struct probe *
make_probes(size_t n, uint64_t seed)
{
	struct probe	*p;
	uint64_t	 r;
	size_t		 i;
	int		 j;

	if ((p = calloc(n, sizeof(*p))) == NULL) {
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	rng_state = seed;
	for (i = 0; i < n; i++) {
		p[i].v6 = i % 2;
		for (j = 0; j < 16; j += 8) {
			r = rng();
			memcpy(p[i].addr + j, &r, 8);
		}
	}
	return p;
}

/* Look up one probe; s4 and s6 are ready-made AF_INET, AF_INET6. */
static int
lookup(const struct banlist_map *m, struct sockaddr_storage *s4,
    struct sockaddr_storage *s6, const struct probe *p)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)s4;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)s6;

	if (!p->v6) {
		memcpy(&sin->sin_addr, p->addr, 4);
		return banlist_lookup_addr(m, s4);
	}
	memcpy(&sin6->sin6_addr, p->addr, 16);
	return banlist_lookup_addr(m, s6);
}

static int
hist_init(struct hist *h)
{
	memset(h, 0, sizeof(*h));
	if ((h->count = calloc(HIST_NS, sizeof(*h->count))) == NULL)
		return -1;
	return 0;
}

static void
hist_add(struct hist *h, uint64_t ns)
{
	h->n++;
	if (ns < HIST_NS)
		h->count[ns]++;
	else
		h->over++;
	if (ns > h->max)
		h->max = ns;
}

/* The pct-th percentile in ns, or UINT64_MAX beyond the histogram. */
static uint64_t
hist_pct(const struct hist *h, double pct)
{
	uint64_t	 want, seen = 0;
	size_t		 i;

	want = (uint64_t)((double)h->n * pct / 100.0);
	if (want == 0)
		want = 1;
	for (i = 0; i < HIST_NS; i++) {
		seen += h->count[i];
		if (seen >= want)
			return i;
	}
	return UINT64_MAX;
}

/*
 * Resident kB of the table region: the largest Rss of our mappings of
 * the memfd "smtpd-banlist" (the writer's maps every page written),
 * from /proc/self/smaps; -1 where there is none.
 */
static long
region_rss_kb(void)
{
	FILE		*f;
	char		 line[512];
	unsigned long	 start, end;
	long		 kb, found = -1;
	int		 in = 0;

	if ((f = fopen("/proc/self/smaps", "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "%lx-%lx ", &start, &end) == 2) {
			in = strstr(line, "smtpd-banlist") != NULL;
			continue;
		}
		if (in && sscanf(line, "Rss: %ld kB", &kb) == 1 &&
		    kb > found)
			found = kb;
	}
	fclose(f);
	return found;
}

static void
verdict(const char *what, int ok)
{
	if (!ok)
		missed_targets++;
	printf("  %-44s %s\n", what, ok ? "ok" : "MISSED");
}

static void *
reader_main(void *arg)
{
	struct reader		*r = arg;
	struct sockaddr_storage	 s4, s6, canary;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&canary;
	uint64_t		 t0, t1, c0, c1;
	size_t			 i = 0;
	int			 phase;

	memset(&s4, 0, sizeof(s4));
	memset(&s6, 0, sizeof(s6));
	memset(&canary, 0, sizeof(canary));
	s4.ss_family = AF_INET;
	s6.ss_family = AF_INET6;
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(0xc0000201);	/* 192.0.2.1 */
	while ((phase = __atomic_load_n(&r->phase, __ATOMIC_ACQUIRE)) != 3) {
		t0 = now_ns();
		c0 = cpu_ns();
		if (i % 16 == 0) {
			if (!banlist_lookup_addr(r->map, &canary))
				r->canary_missed++;
		} else
			lookup(r->map, &s4, &s6,
			    &r->probes[i % NPROBES]);
		c1 = cpu_ns();
		t1 = now_ns();
		if (phase == 1 || phase == 2) {
			hist_add(&r->h[phase - 1], t1 - t0);
			if (c1 - c0 > r->max_cpu[phase - 1])
				r->max_cpu[phase - 1] = c1 - c0;
		}
		i++;
	}
	return NULL;
}

int
main(int argc, char *argv[])
{
	struct banlist_set	 set, next;
	struct banlist_map	*m, *rm;
	struct sockaddr_storage	 s4, s6;
	struct probe		*probes;
	struct reader		 rd;
	struct hist		 h, hf[2];
	struct timespec		 warm = { 0, 100000000 };
	struct timespec		 idle = { 0, 300000000 };
	pthread_t		 tid;
	const char		*errstr;
	uint64_t		 seed = SEED_DEFAULT, t0, t1, clk, p50, p99;
	size_t			 n = NPREFIX_DEFAULT, i, nv4, nv6, ns, used;
	size_t			 region, hits[2] = { 0, 0 };
	double			 t, tload, tpub, tpub2, mb;
	long			 rss;
	char			*end;
	int			 rwfd, rofd;

	if (argc > 1) {
		n = (size_t)strtonum(argv[1], 1, 10000000, &errstr);
		if (errstr != NULL) {
			fprintf(stderr, "prefixes: %s\n", errstr);
			return 1;
		}
	}
	if (argc > 2) {
		errno = 0;
		seed = strtoull(argv[2], &end, 0);
		if (argv[2][0] == '\0' || *end != '\0' || errno != 0) {
			fprintf(stderr, "usage: banlist-bench "
			    "[prefixes [seed]]\n");
			return 1;
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("banlist-bench: %zu prefixes (%zu IPv4 /8-/32 weighted to "
	    "long, %zu IPv6 /16-/128), seed %#llx\n", n, (n + 1) / 2, n / 2,
	    (unsigned long long)seed);

	/*
	 * As smtpd does: a shared region, written through one mapping,
	 * read through another, read-only one like a worker's.
	 */
	region = banlist_region_size(BANLIST_HALF_SIZE);
	if (shm_create(region, &rwfd, &rofd) == -1) {
		printf("(no shared memory: an anonymous table instead)\n");
		rwfd = rofd = -1;
	}
	if ((m = banlist_map(rwfd, region, 1)) == NULL) {
		fprintf(stderr, "banlist_map of %zu bytes failed\n", region);
		return 1;
	}
	banlist_init(m);
	rm = m;
	if (rofd != -1 && (rm = banlist_map(rofd, region, 0)) == NULL) {
		fprintf(stderr, "read-only banlist_map failed\n");
		return 1;
	}

	t = now();
	fill_set(&set, n, seed);
	tload = now() - t;
	printf("load (banlist_add_net, %zu entries)      %8.3f s\n",
	    set.nv4 + set.nv6, tload);

	t = now();
	if (banlist_publish(m, &set) == -1) {
		fprintf(stderr, "publish: the table does not fit\n");
		return 1;
	}
	tpub = now() - t;
	banlist_set_free(&set);
	banlist_counts(m, &nv4, &nv6, &ns, &used);
	printf("publish (sort, merge, build, switch)    %8.3f s   "
	    "target < %.0f s\n", tpub, TARGET_PUBLISH_S);
	verdict("publish time", tpub < TARGET_PUBLISH_S);
	printf("table: %zu IPv4 + %zu IPv6 ranges after merging\n", nv4,
	    nv6);
	mb = (double)used / (1024 * 1024);
	printf("memory: table bytes (banlist_counts)    %8.1f MiB "
	    "target < %.0f MiB\n", mb, TARGET_MEM_MB);
	verdict("table memory", mb < TARGET_MEM_MB);
	rss = region_rss_kb();
	if (rss >= 0) {
		printf("memory: region RSS, one table live      %8.1f MiB "
		    "(of %zu MiB mapped)\n", (double)rss / 1024,
		    region / (1024 * 1024));
		verdict("region RSS", (double)rss / 1024 < TARGET_MEM_MB);
	} else
		printf("memory: region RSS                      n/a "
		    "(no /proc/self/smaps)\n");

	/* lookups per second, one thread */
	probes = make_probes(NPROBES, seed ^ 0x5a5a5a5aULL);
	memset(&s4, 0, sizeof(s4));
	memset(&s6, 0, sizeof(s6));
	s4.ss_family = AF_INET;
	s6.ss_family = AF_INET6;
	for (i = 0; i < NPROBES; i++)		/* warm up, count hits */
		hits[probes[i].v6] += lookup(rm, &s4, &s6, &probes[i]);
	t = now();
	for (i = 0; i < NLOOKUPS; i++)
		lookup(rm, &s4, &s6, &probes[i % NPROBES]);
	t = now() - t;
	printf("lookups, 1 thread, random addresses     %8.2f M/s "
	    "(%.0f ns each; %.1f%% banned: %.1f%% of IPv4, %.1f%% of "
	    "IPv6)\n", NLOOKUPS / t / 1e6, t * 1e9 / NLOOKUPS,
	    100.0 * (double)(hits[0] + hits[1]) / NPROBES,
	    200.0 * (double)hits[0] / NPROBES,
	    200.0 * (double)hits[1] / NPROBES);

	/* latency, one lookup at a time; also by family */
	if (hist_init(&h) == -1 || hist_init(&hf[0]) == -1 ||
	    hist_init(&hf[1]) == -1) {
		fprintf(stderr, "out of memory\n");
		return 1;
	}
	clk = UINT64_MAX;
	for (i = 0; i < 1000; i++) {
		t0 = now_ns();
		t1 = now_ns();
		if (t1 - t0 < clk)
			clk = t1 - t0;
	}
	for (i = 0; i < NTIMED; i++) {
		t0 = now_ns();
		lookup(rm, &s4, &s6, &probes[i % NPROBES]);
		t1 = now_ns();
		hist_add(&h, t1 - t0);
		hist_add(&hf[probes[i % NPROBES].v6], t1 - t0);
	}
	p50 = hist_pct(&h, 50);
	p99 = hist_pct(&h, 99);
	printf("lookup latency p50                      %8llu ns\n",
	    (unsigned long long)p50);
	printf("lookup latency p99                      %8llu ns  "
	    "target < %d ns\n", (unsigned long long)p99, TARGET_P99_NS);
	printf("lookup latency p99.9, max               %8llu ns, "
	    "%llu ns (clock_gettime pair: %llu ns, included)\n",
	    (unsigned long long)hist_pct(&h, 99.9),
	    (unsigned long long)h.max, (unsigned long long)clk);
	for (i = 0; i < 2; i++)
		printf("  %s lookups: p50 %llu ns, p99 %llu ns\n",
		    i ? "IPv6" : "IPv4",
		    (unsigned long long)hist_pct(&hf[i], 50),
		    (unsigned long long)hist_pct(&hf[i], 99));
	verdict("p99 lookup latency", p99 < TARGET_P99_NS);
	free(h.count);
	free(hf[0].count);
	free(hf[1].count);

	/* a new table published while a reader looks up */
	fill_set(&next, n, seed + 1);
	memset(&rd, 0, sizeof(rd));
	rd.map = rm;
	rd.probes = probes;
	if (hist_init(&rd.h[0]) == -1 || hist_init(&rd.h[1]) == -1) {
		fprintf(stderr, "out of memory\n");
		return 1;
	}
	if (pthread_create(&tid, NULL, reader_main, &rd) != 0) {
		fprintf(stderr, "pthread_create failed\n");
		return 1;
	}
	nanosleep(&warm, NULL);
	__atomic_store_n(&rd.phase, 1, __ATOMIC_RELEASE);
	nanosleep(&idle, NULL);
	__atomic_store_n(&rd.phase, 2, __ATOMIC_RELEASE);
	t = now();
	if (banlist_publish(m, &next) == -1) {
		fprintf(stderr, "publish: the new table does not fit\n");
		return 1;
	}
	tpub2 = now() - t;
	__atomic_store_n(&rd.phase, 3, __ATOMIC_RELEASE);
	pthread_join(tid, NULL);
	banlist_set_free(&next);
	printf("publish of a new table under lookups    %8.3f s   "
	    "target < %.0f s\n", tpub2, TARGET_PUBLISH_S);
	verdict("publish time under lookups", tpub2 < TARGET_PUBLISH_S);
	printf("  the other thread's lookups (wall times include four "
	    "clock reads):\n");
	for (i = 0; i < 2; i++)
		printf("  %-22s %7llu lookups, p50 %llu ns, p99 %llu ns, "
		    "max %llu ns; most CPU in one: %llu ns\n",
		    i ? "during the publish:" : "before, no writer:",
		    (unsigned long long)rd.h[i].n,
		    (unsigned long long)hist_pct(&rd.h[i], 50),
		    (unsigned long long)hist_pct(&rd.h[i], 99),
		    (unsigned long long)rd.h[i].max,
		    (unsigned long long)rd.max_cpu[i]);
	printf("  canary 192.0.2.1 found not banned: %llu times\n",
	    (unsigned long long)rd.canary_missed);
	printf("  most CPU one lookup took, publishing  %8llu ns  "
	    "target < %d ns (a waiting reader spins for ms)\n",
	    (unsigned long long)rd.max_cpu[1], TARGET_STALL_CPU_NS);
	verdict("no reader blocked", rd.h[1].n > 0 &&
	    rd.max_cpu[1] < TARGET_STALL_CPU_NS);
	free(rd.h[0].count);
	free(rd.h[1].count);
	banlist_counts(m, &nv4, &nv6, &ns, &used);
	rss = region_rss_kb();
	if (rss >= 0)
		printf("memory: region RSS, both halves built   %8.1f MiB "
		    "(new table %.1f MiB)\n", (double)rss / 1024,
		    (double)used / (1024 * 1024));
	free(probes);
	if (rm != m)
		banlist_unmap(rm);
	banlist_unmap(m);
	printf("%s\n", missed_targets == 0 ? "all targets met" :
	    "some targets MISSED");
	return rd.canary_missed != 0;
}
