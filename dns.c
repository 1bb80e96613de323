/*
 * DNS for sender authentication.  A worker has no network: it asks the
 * relay, which resolves with libunbound and caches for every worker,
 * over the channel.  A question is (type, name); an answer is a status
 * and the records' data, decoded by the relay into plain octets (see
 * smtpd.h).  Each message has one budget, DNS_BUDGET_MS of waiting in
 * all; once it is spent every answer is DNS_TEMPFAIL, never a pass.
 *
 * Wire forms, in host order (both ends are one machine):
 *	question	u16 type, u16 name length, the name (no NUL)
 *	answer		u16 status, u16 count, then count times
 *			u16 length and that many octets
 * Both ends check what they receive: dns_query_check() in the relay
 * (a worker is hostile), dns_answer_decode() in the worker.
 */

#include <sys/types.h>
#include <sys/socket.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "smtpd.h"

static int	dns_chan_lookup(void *, const char *, int,
		    struct dns_answer *);
static int	dns_chan_ahead_is(const struct dns_chan *, const char *,
		    size_t, int);
static ssize_t	dns_chan_wait(struct dns_chan *, uint32_t,
		    struct dns_answer *, const struct timespec *);
static void	dns_chan_spend(struct dns_chan *, struct timespec *);
static int	dns_name_ok(const char *, size_t);
static size_t	dns_query_encode(uint8_t *, int, const char *, size_t);

/*
 * Ask ctx one question.  The name is checked here, once, for every
 * caller: a name no resolver would take gets DNS_NXDOMAIN without a
 * question (RFC 7208 4.3 and 4.8 treat a malformed name as no record).
 */
int
dns_lookup(struct dns_ctx *ctx, const char *name, int type,
    struct dns_answer *ans)
{
	size_t	 len;

	ans->nrr = 0;
	len = strlen(name);
	if (len > 0 && name[len - 1] == '.')
		len--;
	if (!dns_name_ok(name, len)) {
		ans->status = DNS_NXDOMAIN;
		return 0;
	}
	/* asked ahead, it was counted then */
	if (ctx->lookup != dns_chan_lookup ||
	    !dns_chan_ahead_is(ctx->arg, name, len, type)) {
		if (ctx->queries >= DNS_QUERIES_MAX) {
			ans->status = DNS_TEMPFAIL;
			return 0;
		}
		ctx->queries++;
	}
	if (ctx->lookup(ctx->arg, name, type, ans) == -1)
		ans->status = DNS_TEMPFAIL;
	if (ans->status != DNS_NOERROR)
		ans->nrr = 0;
	return 0;
}

/*
 * A name a resolver takes: 1 to DNS_NAME_MAX octets of printable
 * ASCII or space (an SPF macro may expand to one) without backslash
 * (libunbound reads escapes), labels of 1 to 63 octets.  A trailing
 * dot is not counted (len excludes it).
 */
static int
dns_name_ok(const char *name, size_t len)
{
	size_t	 i, label = 0;

	if (len == 0 || len > DNS_NAME_MAX)
		return 0;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c < 0x20 || c >= 0x7f || c == '\\')
			return 0;
		if (c == '.') {
			if (label == 0)
				return 0;
			label = 0;
		} else if (++label > 63)
			return 0;
	}
	return 1;
}

/*
 * A worker: questions go to the relay on fd.  The budget is time spent
 * waiting for answers, so a slow DATA phase does not spend it.
 */
void
dns_chan_init(struct dns_ctx *ctx, struct dns_chan *dc, int fd)
{
	memset(ctx, 0, sizeof(*ctx));
	dc->fd = fd;
	dc->left_ms = DNS_BUDGET_MS;
	dc->left_q = DNS_QUERIES_MAX;
	dc->broken = 0;
	dc->ahead_id = 0;
	dc->ahead_have = 0;
	dc->ahead_buf = NULL;	/* dns_chan_free() frees what dns_ahead()
				   takes */
	ctx->lookup = dns_chan_lookup;
	ctx->arg = dc;
}

void
dns_chan_free(struct dns_chan *dc)
{
	free(dc->ahead_buf);
	dc->ahead_buf = NULL;
	dc->ahead_id = 0;
}

/*
 * Ask a question now whose answer a later dns_lookup() of the same type
 * and name (as written, trailing dot aside) will want: both travel
 * together, so the check waits once where it would have waited twice.
 * It counts as a question when it is asked, not again when used; only
 * a message that may still ask all DNS_QUERIES_MAX questions asks one
 * ahead, so that it never takes one another check would have needed.
 * One at a time; an answer never used is dropped with the message.
 */
void
dns_ahead(struct dns_ctx *ctx, const char *name, int type)
{
	struct dns_chan	*dc = ctx->arg;
	struct timespec	 t0;
	uint8_t		 q[CHAN_DNS_QUERY_MAX];
	size_t		 len = strlen(name);

	if (len > 0 && name[len - 1] == '.')
		len--;
	if (ctx->lookup != dns_chan_lookup || dc->ahead_id != 0 ||
	    dc->fd == -1 || dc->left_q < DNS_QUERIES_MAX ||
	    ctx->queries != 0 || !dns_name_ok(name, len))
		return;
	if (dc->ahead_buf == NULL &&
	    (dc->ahead_buf = malloc(CHAN_DNS_MAX)) == NULL)
		return;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	dc->ahead_id = chan_ask(dc->fd, CHAN_DNS_QUERY, q,
	    dns_query_encode(q, type, name, len), dc->left_ms);
	/* a write that waited spends the budget as a wait does */
	dns_chan_spend(dc, &t0);
	if (dc->ahead_id == 0) {
		dc->broken = 1;
		dc->fd = -1;	/* perhaps half a question went */
		return;
	}
	memcpy(dc->ahead_name, name, len);
	dc->ahead_name[len] = '\0';
	dc->ahead_type = type;
	dc->ahead_have = 0;
	dc->left_q--;
	ctx->queries++;
}

/* Whether a lookup of name (len octets) is the one asked ahead. */
static int
dns_chan_ahead_is(const struct dns_chan *dc, const char *name, size_t len,
    int type)
{
	return dc->ahead_id != 0 &&
	    dc->ahead_type == type && strlen(dc->ahead_name) == len &&
	    memcmp(dc->ahead_name, name, len) == 0;
}

/*
 * A question as the relay reads it (dns_query_check()): type and length,
 * two octets each, then the name's len octets (DNS_NAME_MAX at most);
 * q holds CHAN_DNS_QUERY_MAX.  Its length.
 */
static size_t
dns_query_encode(uint8_t *q, int type, const char *name, size_t len)
{
	uint16_t	 t = (uint16_t)type, n = (uint16_t)len;

	memcpy(q, &t, 2);
	memcpy(q + 2, &n, 2);
	memcpy(q + 4, name, len);
	return 4 + len;
}

static int
dns_chan_lookup(void *arg, const char *name, int type,
    struct dns_answer *ans)
{
	struct dns_chan	*dc = arg;
	uint8_t		 q[CHAN_DNS_QUERY_MAX];
	size_t		 len = strlen(name);
	struct timespec	 t0;
	uint32_t	 id;
	ssize_t		 got;

	if (len > 0 && name[len - 1] == '.')
		len--;
	/* the budget spent, every answer fails: one asked ahead too */
	if (dc->fd == -1 || dc->left_ms <= 0)
		return -1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (dns_chan_ahead_is(dc, name, len, type)) {
		/* asked ahead: its answer, here or on its way */
		id = dc->ahead_id;
		dc->ahead_id = 0;
		if (dc->ahead_have) {
			dc->ahead_have = 0;
			memcpy(ans->buf, dc->ahead_buf, dc->ahead_len);
			return dns_answer_decode(ans->buf, dc->ahead_len, ans);
		}
	} else {
		if (dc->left_q == 0 || len > DNS_NAME_MAX)
			return -1;
		dc->left_q--;
		if ((id = chan_ask(dc->fd, CHAN_DNS_QUERY, q,
		    dns_query_encode(q, type, name, len), dc->left_ms)) == 0) {
			dc->broken = 1;
			dc->fd = -1;	/* perhaps half a question went */
			return -1;
		}
	}
	if ((got = dns_chan_wait(dc, id, ans, &t0)) == -1)
		return -1;
	return dns_answer_decode(ans->buf, (size_t)got, ans);
}

/*
 * The answer to question id, into ans->buf, within what is left of the
 * message's budget, spent from *since (before the question was
 * written); the one asked ahead is kept if it comes first, an earlier
 * question's (given up on) is dropped.  Its length, or -1: then the
 * stream may be inside a record, and no other question goes on it.
 */
static ssize_t
dns_chan_wait(struct dns_chan *dc, uint32_t id, struct dns_answer *ans,
    const struct timespec *since)
{
	struct timespec	 t0 = *since;
	uint32_t	 got_id;
	ssize_t		 got = -1;
	int		 stale;

	for (stale = 0; stale < CHAN_STALE_MAX; stale++) {
		if (dc->fd == -1 || dc->left_ms <= 0) {
			errno = ETIMEDOUT;
			got = -1;
			break;
		}
		got = chan_answer(dc->fd, CHAN_DNS_ANSWER, &got_id, ans->buf,
		    sizeof(ans->buf), dc->left_ms);
		dns_chan_spend(dc, &t0);
		if (got == -1 || got_id == id)
			break;
		if (got_id != 0 && got_id == dc->ahead_id && !dc->ahead_have) {
			memcpy(dc->ahead_buf, ans->buf, (size_t)got);
			dc->ahead_len = (size_t)got;
			dc->ahead_have = 1;
		}
		got = -1;
		errno = EPROTO;
	}
	if (got == -1) {
		dc->broken = 1;
		dc->fd = -1;
	}
	return got;
}

/* The time since *since comes off the message's budget; *since is now. */
static void
dns_chan_spend(struct dns_chan *dc, struct timespec *since)
{
	struct timespec	 now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	dc->left_ms -= (now.tv_sec - since->tv_sec) * 1000LL +
	    (now.tv_nsec - since->tv_nsec) / 1000000;
	*since = now;
}

/*
 * A worker, at connect (dnsbl.c): n questions (at most MAX_DNSBL, the
 * relay's limit in flight on a channel) asked at once, their answers
 * awaited until timeout_ms in all.  done(arg, i, answer) is called for
 * each name[i] answered in time, in the order they come; one not
 * answered by then is not called for (a timeout, as a SERVFAIL, is no
 * listing).  Answers that come later are dropped by the next request
 * (chan_request).
 */
void
dns_chan_parallel(int fd, const char *const *name, size_t n, int type,
    void (*done)(void *, size_t, const struct dns_answer *), void *arg,
    long long timeout_ms)
{
	static struct dns_answer ans;
	struct timespec	 t0, t1;
	uint32_t	 id[MAX_DNSBL], got_id;
	uint8_t		 q[CHAN_DNS_QUERY_MAX];
	size_t		 i, len, asked = 0, left;
	ssize_t		 got;
	long long	 ms;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < n && i < MAX_DNSBL; i++) {
		id[i] = 0;
		len = strlen(name[i]);
		if (!dns_name_ok(name[i], len))
			continue;
		if ((id[i] = chan_ask(fd, CHAN_DNS_QUERY, q,
		    dns_query_encode(q, type, name[i], len), timeout_ms)) == 0)
			return;
		asked++;
	}
	for (left = asked; left > 0; ) {
		clock_gettime(CLOCK_MONOTONIC, &t1);
		ms = timeout_ms - ((t1.tv_sec - t0.tv_sec) * 1000LL +
		    (t1.tv_nsec - t0.tv_nsec) / 1000000);
		if (ms <= 0 || (got = chan_answer(fd, CHAN_DNS_ANSWER,
		    &got_id, ans.buf, sizeof(ans.buf), ms)) == -1)
			return;
		for (i = 0; got_id != 0 && i < n && i < MAX_DNSBL; i++)
			if (id[i] == got_id)
				break;
		if (got_id == 0 || i == n || i == MAX_DNSBL)
			continue;	/* an earlier question's */
		id[i] = 0;
		left--;
		if (dns_answer_decode(ans.buf, (size_t)got, &ans) == 0)
			done(arg, i, &ans);
	}
}

/*
 * The worker reads the relay's answer, already in ans->buf (buf may be
 * ans->buf): records point into it.  0, or -1 when it is malformed.
 */
int
dns_answer_decode(const uint8_t *buf, size_t len, struct dns_answer *ans)
{
	uint16_t	 status, count, rlen;
	size_t		 off = 4, i;

	ans->nrr = 0;
	if (len < 4 || len > sizeof(ans->buf))
		return -1;
	if (buf != ans->buf)
		memcpy(ans->buf, buf, len);
	memcpy(&status, ans->buf, 2);
	memcpy(&count, ans->buf + 2, 2);
	if (status > DNS_TEMPFAIL || count > DNS_RR_MAX ||
	    (status != DNS_NOERROR && count != 0))
		return -1;
	for (i = 0; i < count; i++) {
		if (len - off < 2)
			return -1;
		memcpy(&rlen, ans->buf + off, 2);
		off += 2;
		if (len - off < rlen)
			return -1;
		ans->rr[i].data = ans->buf + off;
		ans->rr[i].len = rlen;
		off += rlen;
	}
	if (off != len)
		return -1;
	ans->status = status;
	ans->nrr = count;
	return 0;
}

/*
 * The relay checks a worker's question: 0 with its type and the name
 * (NUL-terminated) in name, or -1 when it breaks the rules.
 */
int
dns_query_check(const uint8_t *body, size_t len, int *type, char *name,
    size_t namesz)
{
	uint16_t	 t, n;

	if (len < 4)
		return -1;
	memcpy(&t, body, 2);
	memcpy(&n, body + 2, 2);
	if (t != DNS_T_A && t != DNS_T_AAAA && t != DNS_T_TXT &&
	    t != DNS_T_MX && t != DNS_T_PTR)
		return -1;
	if ((size_t)n != len - 4 || n >= namesz || !dns_name_ok(
	    (const char *)body + 4, n))
		return -1;
	memcpy(name, body + 4, n);
	name[n] = '\0';
	*type = t;
	return 0;
}

/*
 * The relay builds an answer in out: status and the n records of
 * data[i], len[i].  Records that do not fit make it DNS_TEMPFAIL (a
 * partial answer could turn a fail into a pass).  Returns its length.
 */
size_t
dns_answer_encode(int status, const uint8_t *const *data, const size_t *len,
    size_t n, uint8_t *out, size_t outsz)
{
	uint16_t	 v;
	size_t		 off = 4, i;

	if (outsz < 4)
		return 0;
	if (n > DNS_RR_MAX)
		status = DNS_TEMPFAIL;
	if (status != DNS_NOERROR)
		n = 0;
	for (i = 0; i < n; i++) {
		if (len[i] > UINT16_MAX || outsz - off < 2 + len[i]) {
			status = DNS_TEMPFAIL;
			n = 0;
			off = 4;
			break;
		}
		v = (uint16_t)len[i];
		memcpy(out + off, &v, 2);
		memcpy(out + off + 2, data[i], len[i]);
		off += 2 + len[i];
	}
	v = (uint16_t)status;
	memcpy(out, &v, 2);
	v = (uint16_t)n;
	memcpy(out + 2, &v, 2);
	return off;
}

/*
 * The relay decodes one record's data (wire form, as libunbound hands
 * it over) into out: its length, (size_t)-2 for a record to skip (a
 * name with octets no host name has), (size_t)-1 for one that does not
 * fit or is malformed.
 */
size_t
dns_rdata_decode(int type, const uint8_t *d, size_t len, uint8_t *out,
    size_t outsz)
{
	size_t	 i = 0, o = 0, l, k;

	switch (type) {
	case DNS_T_A:
	case DNS_T_AAAA:
		if (len != (type == DNS_T_A ? 4U : 16U) || len > outsz)
			return (size_t)-1;
		memcpy(out, d, len);
		return len;
	case DNS_T_TXT:
		/* character-strings, concatenated (RFC 7208 3.3) */
		while (i < len) {
			l = d[i++];
			if (l > len - i || o + l > outsz)
				return (size_t)-1;
			memcpy(out + o, d + i, l);
			o += l;
			i += l;
		}
		return o;
	case DNS_T_MX:
		if (len < 3)
			return (size_t)-1;
		i = 2;
		/* FALLTHROUGH */
	case DNS_T_PTR:
		/* an uncompressed wire name, dotted */
		while (i < len && (l = d[i++]) != 0) {
			if (l > 63 || l > len - i || o + l + 1 > outsz)
				return (size_t)-1;
			if (o > 0)
				out[o++] = '.';
			for (k = 0; k < l; k++, i++) {
				if (d[i] <= 0x20 || d[i] >= 0x7f ||
				    d[i] == '.' || d[i] == '\\')
					return (size_t)-2;
				out[o++] = d[i];
			}
		}
		return o;
	}
	return (size_t)-1;
}
