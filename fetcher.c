/*
 * The ban-list fetcher, a process of its own (in smtpd-relay): polls
 * FIRM for the banned subnets and blocked senders, builds the table in
 * shared memory beside the live one and publishes it (banlist.c), keeps
 * the last good lists in --banlist-cache, and raises the alarm when
 * polls keep failing.  Unprivileged and sandboxed; the workers only
 * ever read what it publishes.
 */

#include <sys/types.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "smtpd.h"
#include "relay.h"

struct fetcher;
static json_t	*fetcher_fetch(struct fetcher *, const char *, const char *,
		    int);
static void	fetcher_rebuild(struct fetcher *);
static void	fetcher_alarm(struct fetcher *);
static void	fetcher_poll(struct fetcher *);

struct fetcher {
	struct smtpd_conf	*conf;
	struct banlist_map	*map;
	json_t			*nets;		/* last good answers */
	json_t			*senders;
	int			 failures;
	int			 alarmed;
	time_t			 last_success;
	char			 last_error[512];
};

/*
 * GET one list.  Returns a new reference to its array when the answer
 * is good (HTTP 2xx, JSON, the right shape, not every entry bad), else
 * NULL with f->last_error set.
 */
static json_t *
fetcher_fetch(struct fetcher *f, const char *path, const char *key,
    int senders)
{
	struct firm_response	 r;
	struct banlist_set	 probe;
	json_t			*root, *arr = NULL;
	int			 n;

	if (firm_request(f->conf, path, NULL, 0, NULL, BANLIST_RESPONSE_MAX,
	    &r) == -1) {
		snprintf(f->last_error, sizeof(f->last_error), "GET %s: %s",
		    path, r.error);
		firm_response_free(&r);
		return NULL;
	}
	if (r.status < 200 || r.status >= 300 || r.truncated ||
	    r.body == NULL) {
		snprintf(f->last_error, sizeof(f->last_error),
		    "GET %s: HTTP %ld%s", path, r.status,
		    r.truncated ? ", answer too large" : "");
		firm_response_free(&r);
		return NULL;
	}
	banlist_set_init(&probe);
	n = banlist_parse(r.body, r.len, key, senders, &probe);
	banlist_set_free(&probe);
	if (n >= 0 && (root = json_loadb(r.body, r.len, 0, NULL)) != NULL) {
		arr = json_is_object(root) ? json_object_get(root, key) : root;
		json_incref(arr);
		json_decref(root);
	}
	firm_response_free(&r);
	if (arr == NULL)
		snprintf(f->last_error, sizeof(f->last_error),
		    "GET %s: malformed answer", path);
	return arr;
}

/* Build the table from the last good lists and publish it. */
static void
fetcher_rebuild(struct fetcher *f)
{
	struct banlist_set	 set;
	size_t			 nv4, nv6, ns, used;

	banlist_set_init(&set);
	set.quiet = 1;		/* fetcher_fetch() logged them already */
	if (banlist_set_add_json(&set, f->nets, f->senders) == -1)
		goto oom;
	if (banlist_publish(f->map, &set) == -1) {
		log_warnx("banlist: the new table does not fit in %lu "
		    "bytes; the last one stays", BANLIST_HALF_SIZE);
		banlist_set_free(&set);
		return;
	}
	banlist_set_free(&set);
	banlist_counts(f->map, &nv4, &nv6, &ns, &used);
	log_event(LOG_INFO, "banlist_published", NULL,
	    "{s:I, s:I, s:I, s:I}", "ipv4_ranges", (json_int_t)nv4,
	    "ipv6_ranges", (json_int_t)nv6, "senders", (json_int_t)ns,
	    "bytes", (json_int_t)used);
	if (f->conf->banlist_dirfd != -1)
		banlist_cache_write(f->conf, f->nets, f->senders);
	return;
 oom:
	banlist_set_free(&set);
	log_warnx("banlist: out of memory; the last table stays");
}

/* POST /admin/alarm, once per outage. */
static void
fetcher_alarm(struct fetcher *f)
{
	struct firm_response	 r;
	struct tm		 tm;
	char			 when[32], *body;
	json_t			*o;

	if (f->last_success != 0) {
		gmtime_r(&f->last_success, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	}
	o = json_pack("{s:s, s:s, s:s, s:i, s:s?}", "source", "smtpd",
	    "host", f->conf->hostname, "error", f->last_error,
	    "failures", f->failures,
	    "last_success", f->last_success != 0 ? when : NULL);
	if (o == NULL || (body = json_dumps(o, JSON_COMPACT)) == NULL) {
		json_decref(o);
		return;
	}
	json_decref(o);
	if (firm_request(f->conf, "/admin/alarm", body, strlen(body), NULL,
	    FIRM_RESPONSE_MAX, &r) == -1)
		log_event(LOG_WARNING, "banlist_alarm_failed", NULL, "{s:s}",
		    "error", r.error);
	else
		log_event(LOG_WARNING, "banlist_alarm", NULL, "{s:i, s:i}",
		    "failures", f->failures, "status", (int)r.status);
	firm_response_free(&r);
	free(body);
}

static void
fetcher_poll(struct fetcher *f)
{
	json_t	*nets, *senders;
	int	 changed = 0;

	nets = fetcher_fetch(f, "/admin/banned_subnets", "banned_subnets", 0);
	senders = fetcher_fetch(f, "/admin/blocked_emails", "blocked_emails",
	    1);
	if (nets != NULL) {
		if (!json_equal(nets, f->nets)) {
			json_decref(f->nets);
			f->nets = json_incref(nets);
			changed = 1;
		}
		json_decref(nets);
	}
	if (senders != NULL) {
		if (!json_equal(senders, f->senders)) {
			json_decref(f->senders);
			f->senders = json_incref(senders);
			changed = 1;
		}
		json_decref(senders);
	}
	if (nets != NULL && senders != NULL) {
		/* before the table: a scrape that sees it sees this poll */
		f->last_success = time(NULL);
		metrics_set(M_BANLIST_LAST_OK, (uint64_t)f->last_success);
	}
	if (changed)
		fetcher_rebuild(f);
	if (nets != NULL && senders != NULL) {
		if (f->failures >= BANLIST_ALARM_AFTER)
			log_event(LOG_INFO, "banlist_recovered", NULL, "{s:i}",
			    "failures", f->failures);
		f->failures = 0;
		f->alarmed = 0;
		metrics_set(M_BANLIST_FAILURES, 0);
		return;
	}
	f->failures++;
	metrics_set(M_BANLIST_FAILURES, (uint64_t)f->failures);
	log_event(LOG_WARNING, "banlist_poll_failed", NULL, "{s:s, s:i}",
	    "error", f->last_error, "failures", f->failures);
	if (f->failures >= BANLIST_ALARM_AFTER && !f->alarmed) {
		fetcher_alarm(f);
		f->alarmed = 1;
	}
}

/*
 * The fetcher's loop: poll at start and every --poll seconds (SIGHUP:
 * now), until SIGTERM or the master's end (alive_fd hangs up).
 */
__dead void
fetcher_main(struct smtpd_conf *conf, int alive_fd)
{
	struct fetcher	 f;
	struct pollfd	 pfd;
	struct timespec	 ts;
	sigset_t	 mask;

	memset(&f, 0, sizeof(f));
	f.conf = conf;
	f.map = banlist_map(conf->banlist_rwfd,
	    banlist_region_size(BANLIST_HALF_SIZE), 1);
	if (f.map == NULL)
		fatal("banlist fetcher: mmap");
	/* start from the cache, so a failing first poll keeps its bans */
	if (conf->banlist_dirfd == -1 || banlist_cache_read(
	    conf->banlist_dirfd, conf->banlist_file, &f.nets,
	    &f.senders) == -1) {
		f.nets = json_array();
		f.senders = json_array();
	}
	sigprocmask(SIG_BLOCK, NULL, &mask);
	sigdelset(&mask, SIGTERM);
	sigdelset(&mask, SIGINT);
	sigdelset(&mask, SIGHUP);
	pfd.fd = alive_fd;
	pfd.events = POLLIN;
	for (;;) {
		smtpd_reload = 0;
		fetcher_poll(&f);
		ts.tv_sec = conf->poll;
		ts.tv_nsec = 0;
		while (!smtpd_stop && !smtpd_reload) {
			int r = ppoll(&pfd, 1, &ts, &mask);

			if (r == 0)
				break;		/* time for the next poll */
			if (r > 0)
				_exit(0);	/* the master is gone */
			if (errno != EINTR)
				fatal("ppoll");
		}
		if (smtpd_stop)
			_exit(0);
	}
}

