/*
 * Metrics (SPEC section 7): counters in a shared region, one slot a
 * process, each written by its owner with relaxed atomic adds, summed
 * by the health process (health.c) when Prometheus asks.  The master
 * makes the region and never reads it; a worker that scribbles over it
 * spoils numbers and nothing else.  The region outlives SIGHUP: it is
 * the master's, made once.
 */

#include <sys/types.h>
#include <sys/mman.h>

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "smtpd.h"

struct metrics_slot	*metrics_self;

/* le= of smtpd_firm_request_seconds, in microseconds; +Inf follows */
const long long metrics_firm_le_us[METRICS_FIRM_BUCKETS - 1] = { 5000,
    10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000,
    5000000, 10000000 };

size_t
metrics_size(size_t nslots)
{
	return sizeof(struct metrics_map) + nslots *
	    sizeof(struct metrics_slot);
}

/*
 * The master: a shared region of nslots slots; its descriptor in *fd,
 * and in *rofd one that maps it read-only for good (for health).
 */
struct metrics_map *
metrics_create_priv(size_t nslots, int *fd, int *rofd)
{
	struct metrics_map	*m;

	if (shm_create(metrics_size(nslots), fd, rofd) == -1)
		fatal("metrics: shared memory");
	if ((m = metrics_attach(*fd, nslots)) == NULL)
		fatal("metrics: mmap");
	m->magic = METRICS_MAGIC;
	m->nslots = (uint32_t)nslots;
	return m;
}

struct metrics_map *
metrics_attach(int fd, size_t nslots)
{
	void	*p;

	p = mmap(NULL, metrics_size(nslots), PROT_READ | PROT_WRITE,
	    MAP_SHARED, fd, 0);
	return p == MAP_FAILED ? NULL : p;
}

/* From now on this process counts in slot i (nowhere if it is out). */
void
metrics_use(struct metrics_map *m, size_t i)
{
	metrics_self = m != NULL && i < m->nslots ? &m->slot[i] : NULL;
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
