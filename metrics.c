/*
 * Metrics (SPEC section 7): counters in a shared region, one slot a
 * process, each written by its owner with relaxed atomic adds, summed
 * by the health process (health.c) when Prometheus asks.  The master
 * makes the region and never reads it.  The region is laid out in
 * pages: the header on the first, then one slot a page, so that each
 * writer maps its own slot and nothing else (metrics_own()): a worker
 * that scribbles spoils its own numbers, never the master's gauges,
 * the relay's or the fetcher's, which /healthz decides from.  The
 * region outlives SIGHUP: it is the master's, made once.
 */

#include <sys/types.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "smtpd.h"

/* Every page size there is holds a slot, so a slot is one page. */
_Static_assert(sizeof(struct metrics_slot) <= 4096,
    "a metrics slot outgrows a page");

struct metrics_slot	*metrics_self;
/*
 * Where every worker maps its slot: reserved by the master, so that
 * the worker's seccomp filter can name the mapping it may not move or
 * grow (mremap() of a shared mapping would reach the next slots).
 */
void			*metrics_worker_at;

/* le= of smtpd_firm_request_seconds, in microseconds; +Inf follows */
const long long metrics_firm_le_us[METRICS_FIRM_BUCKETS - 1] = { 5000,
    10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000,
    5000000, 10000000 };

/* From one slot to the next, and from the header to the first: a page. */
size_t
metrics_stride(void)
{
	static size_t	 page;
	long		 n;

	if (page == 0) {
		if ((n = sysconf(_SC_PAGESIZE)) <= 0)
			n = 4096;
		page = (size_t)n;
	}
	return page;
}

/* Where slot i starts. */
size_t
metrics_offset(size_t i)
{
	return (i + 1) * metrics_stride();
}

size_t
metrics_size(size_t nslots)
{
	return metrics_offset(nslots);
}

/*
 * The master: a shared region of nslots slots, mapped here whole; its
 * descriptor in *fd, and in *rofd one that maps it read-only for good
 * (for health).  Also reserves the page where workers map their slot.
 */
struct metrics_map *
metrics_create_priv(size_t nslots, int *fd, int *rofd)
{
	struct metrics_map	*m;
	void			*p;

	if (shm_create(metrics_size(nslots), fd, rofd) == -1)
		fatal("metrics: shared memory");
	p = mmap(NULL, metrics_size(nslots), PROT_READ | PROT_WRITE,
	    MAP_SHARED, *fd, 0);
	if (p == MAP_FAILED)
		fatal("metrics: mmap");
	m = p;
	m->magic = METRICS_MAGIC;
	m->nslots = (uint32_t)nslots;
	p = mmap(NULL, metrics_stride(), PROT_NONE, MAP_PRIVATE |
	    MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		fatal("metrics: mmap");
	metrics_worker_at = p;
	return m;
}

/* The master counts in slot i of the region it made. */
void
metrics_use(struct metrics_map *m, size_t i)
{
	metrics_self = m != NULL && i < m->nslots ?
	    (struct metrics_slot *)((char *)m + metrics_offset(i)) : NULL;
}

/*
 * A worker, the relay, the fetcher: from now on this process counts in
 * slot i, the one page of the region at fd that it maps (writable, at
 * at if that is not NULL); nothing else of the region, neither the
 * header nor another slot.  The caller closes fd and unmaps whatever
 * else of the region it had.  0, or -1: it counts nowhere.
 */
int
metrics_own(int fd, size_t i, void *at)
{
	struct stat	 st;
	void		*p;

	metrics_self = NULL;
	if (fstat(fd, &st) == -1 || st.st_size < 0 ||
	    (size_t)st.st_size < metrics_size(i + 1))
		return -1;
	p = mmap(at, metrics_stride(), PROT_READ | PROT_WRITE, MAP_SHARED |
	    (at != NULL ? MAP_FIXED : 0), fd, (off_t)metrics_offset(i));
	if (p == MAP_FAILED)
		return -1;
	metrics_self = p;
	return 0;
}

/* The whole region, as metrics_create_priv() mapped it, unmapped. */
void
metrics_unmap(struct metrics_map *m)
{
	if (m != NULL)
		(void)munmap(m, metrics_size(m->nslots));
}

void
metrics_add(enum metric k, uint64_t n)
{
	if (metrics_self != NULL && k < M_COUNT)
		__atomic_add_fetch(&metrics_self->v[k], n, __ATOMIC_RELAXED);
}

void
metrics_set(enum metric k, uint64_t n)
{
	if (metrics_self != NULL && k < M_COUNT)
		__atomic_store_n(&metrics_self->v[k], n, __ATOMIC_RELAXED);
}

/* The relay: one FIRM call took us microseconds and ended in class. */
void
metrics_firm(long long us, int class)
{
	size_t	 b;

	if (us < 0)
		us = 0;
	for (b = 0; b < METRICS_FIRM_BUCKETS - 1; b++)
		if (us <= metrics_firm_le_us[b])
			break;
	metrics_add(M_FIRM_BUCKET + b, 1);
	metrics_add(M_FIRM_SUM_US, (uint64_t)us);
	metrics_add(M_FIRM_COUNT, 1);
	metrics_add(class, 1);
}
