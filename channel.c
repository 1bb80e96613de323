/*
 * The worker-relay channel, after OpenBSD's imsg: each message is a
 * fixed header (version, type, request id, body length) and a body of
 * exactly that length, on a stream socket.  chan_decode() is the one
 * place where the relay looks at a worker's bytes before it trusts
 * their shape: a wrong version, an unknown type, a body over the limit
 * for its type, or a body that does not fit its type ends the channel.
 * The worker side (chan_request) bounds every wait by a deadline.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "smtpd.h"

static int	chan_hex_field(const char *, size_t);
static void	chan_deadline(struct timespec *, long long);
static int	chan_io(int, struct iovec *, int, int, const struct timespec *);
static void	chan_request_hdr(struct chan_hdr *, uint16_t, size_t);
static int	chan_answer_hdr(int, struct chan_hdr *, size_t,
		    const struct timespec *);

static uint32_t	chan_nextid;	/* of the worker's requests */

/*
 * Look at buf: -1 when it cannot start a valid message (the channel
 * must close), 0 when more bytes are needed, else the length of the
 * complete message at its start, whose header is copied to *h.
 * maxbody bounds the body of every type.
 */
ssize_t
chan_decode(const uint8_t *buf, size_t len, size_t maxbody,
    struct chan_hdr *h)
{
	size_t	 min = 0, max;

	if (len < sizeof(*h))
		return 0;
	memcpy(h, buf, sizeof(*h));
	if (h->version != CHAN_VERSION || h->type == 0 ||
	    h->type >= CHAN_TYPE_MAX)
		return -1;
	switch (h->type) {
	case CHAN_INBOUND:
		min = sizeof(struct chan_inbound) + 2;	/* "{}" at least */
		max = maxbody;
		break;
	case CHAN_VERDICT:
		min = max = sizeof(struct chan_verdict);
		break;
	case CHAN_DNS_QUERY:
		min = 4 + 1;
		max = CHAN_DNS_QUERY_MAX;
		break;
	case CHAN_VERIFY:
		min = sizeof(struct chan_verify) + 2;	/* two strings */
		max = maxbody;
		break;
	case CHAN_AUTH:
		min = sizeof(struct chan_auth);
		max = maxbody;
		break;
	case CHAN_SPOOL_ROOM:
		min = max = 0;
		break;
	default:
		min = 4;
		max = CHAN_DNS_MAX;
		break;
	}
	if (h->len < min || h->len > max)
		return -1;
	if (len - sizeof(*h) < h->len)
		return 0;
	return (ssize_t)(sizeof(*h) + h->len);
}

/* A NUL-terminated field of exactly n lower-case hex digits. */
static int
chan_hex_field(const char *s, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		    (s[i] >= 'a' && s[i] <= 'f')))
			return -1;
	return s[n] == '\0' ? 0 : -1;
}

/*
 * The body of a CHAN_INBOUND, checked: its identifiers are hex of the
 * right length, the payload follows.  Returns 0, or -1.
 */
int
chan_inbound_check(const uint8_t *body, size_t len, struct chan_inbound *in,
    const char **json, size_t *jsonlen)
{
	if (len <= sizeof(*in))
		return -1;
	memcpy(in, body, sizeof(*in));
	if (chan_hex_field(in->session, SESSION_ID_LEN) == -1 ||
	    chan_hex_field(in->msgid, MSG_ID_LEN) == -1)
		return -1;
	*json = (const char *)body + sizeof(*in);
	*jsonlen = len - sizeof(*in);
	return 0;
}

/* Now (CLOCK_MONOTONIC) and timeout_ms: the deadline of a wait. */
static void
chan_deadline(struct timespec *deadline, long long timeout_ms)
{
	clock_gettime(CLOCK_MONOTONIC, deadline);
	deadline->tv_sec += timeout_ms / 1000;
	deadline->tv_nsec += (timeout_ms % 1000) * 1000000;
	if (deadline->tv_nsec >= 1000000000) {
		deadline->tv_sec++;
		deadline->tv_nsec -= 1000000000;
	}
}

/*
 * Move all of iov on a non-blocking descriptor, writing or reading,
 * before the deadline (CLOCK_MONOTONIC).  0, or -1 with errno set
 * (ETIMEDOUT; EPIPE at end of file).
 */
static int
chan_io(int fd, struct iovec *iov, int iovcnt, int writing,
    const struct timespec *deadline)
{
	struct pollfd	 pfd;
	struct timespec	 now;
	ssize_t		 n;
	long long	 ms;

	while (iovcnt > 0) {
		if (iov->iov_len == 0) {
			iov++;
			iovcnt--;
			continue;
		}
		n = writing ? writev(fd, iov, iovcnt) : readv(fd, iov, iovcnt);
		if (n == 0 && !writing) {
			errno = EPIPE;
			return -1;
		}
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return -1;
			clock_gettime(CLOCK_MONOTONIC, &now);
			ms = (deadline->tv_sec - now.tv_sec) * 1000 +
			    (deadline->tv_nsec - now.tv_nsec) / 1000000;
			if (ms <= 0) {
				errno = ETIMEDOUT;
				return -1;
			}
			pfd.fd = fd;
			pfd.events = writing ? POLLOUT : POLLIN;
			if (poll(&pfd, 1, (int)(ms > 60000 ? 60000 : ms)) ==
			    -1 && errno != EINTR)
				return -1;
			continue;
		}
		while (n > 0) {
			size_t take = (size_t)n < iov->iov_len ? (size_t)n :
			    iov->iov_len;

			iov->iov_base = (char *)iov->iov_base + take;
			iov->iov_len -= take;
			n -= (ssize_t)take;
			if (iov->iov_len == 0) {
				iov++;
				iovcnt--;
			}
		}
	}
	return 0;
}

/*
 * Send one message whose body is iov[1..n) (iov[0] is for the header),
 * expecting no answer, before timeout_ms.  0, or -1 with errno.
 */
int
chan_send(int fd, uint16_t type, struct iovec *iov, int iovcnt,
    long long timeout_ms)
{
	struct chan_hdr	 h;
	struct timespec	 deadline;
	size_t		 len = 0;
	int		 i;

	chan_deadline(&deadline, timeout_ms);
	for (i = 1; i < iovcnt; i++)
		len += iov[i].iov_len;
	if (len > UINT32_MAX) {
		errno = EMSGSIZE;
		return -1;
	}
	memset(&h, 0, sizeof(h));
	h.version = CHAN_VERSION;
	h.type = type;
	h.len = (uint32_t)len;
	iov[0].iov_base = &h;
	iov[0].iov_len = sizeof(h);
	return chan_io(fd, iov, iovcnt, 1, &deadline);
}

/*
 * Read one message of type want, its body at most maxbody, before
 * timeout_ms, into *body (malloc'd, the caller frees it).  Returns the
 * body's length, or -1 with errno: ETIMEDOUT, EPIPE, EPROTO.
 */
ssize_t
chan_read(int fd, uint16_t want, size_t maxbody, uint8_t **body,
    long long timeout_ms)
{
	struct chan_hdr	 h;
	struct iovec	 iov;
	struct timespec	 deadline;

	*body = NULL;
	chan_deadline(&deadline, timeout_ms);
	iov.iov_base = &h;
	iov.iov_len = sizeof(h);
	if (chan_io(fd, &iov, 1, 0, &deadline) == -1)
		return -1;
	if (chan_decode((const uint8_t *)&h, sizeof(h), maxbody, &h) ==
	    -1 || h.type != want) {
		errno = EPROTO;
		return -1;
	}
	if ((*body = malloc(h.len + 1)) == NULL)
		return -1;
	iov.iov_base = *body;
	iov.iov_len = h.len;
	if (chan_io(fd, &iov, 1, 0, &deadline) == -1) {
		free(*body);
		*body = NULL;
		return -1;
	}
	(*body)[h.len] = '\0';
	return (ssize_t)h.len;
}

/*
 * Worker: send one request (the header's body is the concatenation of
 * body1 and body2) and wait for its answer of type want until
 * timeout_ms.  A CHAN_VERDICT is exactly anslen octets, a
 * CHAN_DNS_ANSWER at most anslen.  An answer to an earlier request
 * that timed out is read and dropped.  Returns the answer's length, or
 * -1 with errno: ETIMEDOUT, EPIPE (the relay is gone), EPROTO.
 */
ssize_t
chan_request(int fd, uint16_t type, const void *body1, size_t len1,
    const void *body2, size_t len2, uint16_t want, void *ans, size_t anslen,
    long long timeout_ms)
{
	struct chan_hdr	 h, r;
	struct iovec	 iov[3];
	struct timespec	 deadline;
	uint8_t		 drain[256];
	size_t		 left, chunk;
	int		 stale;

	chan_deadline(&deadline, timeout_ms);
	chan_request_hdr(&h, type, len1 + len2);
	iov[0].iov_base = &h;
	iov[0].iov_len = sizeof(h);
	iov[1].iov_base = (void *)(uintptr_t)body1;
	iov[1].iov_len = len1;
	iov[2].iov_base = (void *)(uintptr_t)body2;
	iov[2].iov_len = len2;
	if (chan_io(fd, iov, 3, 1, &deadline) == -1)
		return -1;
	for (stale = 0; stale < CHAN_STALE_MAX; stale++) {
		if (chan_answer_hdr(fd, &r, CHAN_DNS_MAX, &deadline) == -1)
			return -1;
		if (r.id == h.id)
			break;
		/* the answer to a question we gave up on */
		for (left = r.len; left > 0; left -= chunk) {
			chunk = left < sizeof(drain) ? left : sizeof(drain);
			iov[0].iov_base = drain;
			iov[0].iov_len = chunk;
			if (chan_io(fd, iov, 1, 0, &deadline) == -1)
				return -1;
		}
	}
	if (stale == CHAN_STALE_MAX || r.type != want ||
	    (want == CHAN_VERDICT && r.len != anslen) || r.len > anslen) {
		errno = EPROTO;
		return -1;
	}
	iov[0].iov_base = ans;
	iov[0].iov_len = r.len;
	if (chan_io(fd, iov, 1, 0, &deadline) == -1)
		return -1;
	return (ssize_t)r.len;
}

/*
 * Worker: send one request without waiting for its answer, so that
 * several are in flight (chan_answer() reads them as they come).  Its
 * id, or 0 with errno.
 */
uint32_t
chan_ask(int fd, uint16_t type, const void *body, size_t len,
    long long timeout_ms)
{
	struct chan_hdr	 h;
	struct iovec	 iov[2];
	struct timespec	 deadline;

	chan_deadline(&deadline, timeout_ms);
	chan_request_hdr(&h, type, len);
	iov[0].iov_base = &h;
	iov[0].iov_len = sizeof(h);
	iov[1].iov_base = (void *)(uintptr_t)body;
	iov[1].iov_len = len;
	if (chan_io(fd, iov, 2, 1, &deadline) == -1)
		return 0;
	return h.id;
}

/*
 * Worker: the next answer, whichever request it answers (*id), into
 * ans (at most anslen octets), before timeout_ms.  One of another type
 * than want (late, to an earlier request) is read with *id 0.  Its
 * length, or -1 with errno: ETIMEDOUT, EPIPE, EPROTO.
 */
ssize_t
chan_answer(int fd, uint16_t want, uint32_t *id, void *ans, size_t anslen,
    long long timeout_ms)
{
	struct chan_hdr	 r;
	struct iovec	 iov;
	struct timespec	 deadline;

	chan_deadline(&deadline, timeout_ms);
	if (chan_answer_hdr(fd, &r, anslen, &deadline) == -1)
		return -1;
	*id = r.type == want ? r.id : 0;
	iov.iov_base = ans;
	iov.iov_len = r.len;
	if (chan_io(fd, &iov, 1, 0, &deadline) == -1)
		return -1;
	return (ssize_t)r.len;
}

/* A worker's request header: a new id, never 0 (chan_answer()'s "late"). */
static void
chan_request_hdr(struct chan_hdr *h, uint16_t type, size_t len)
{
	memset(h, 0, sizeof(*h));
	h->version = CHAN_VERSION;
	h->type = type;
	if ((h->id = ++chan_nextid) == 0)
		h->id = ++chan_nextid;
	h->len = (uint32_t)len;
}

/*
 * The header of the relay's next answer to a worker: a verdict or a
 * DNS answer, its body at most maxlen.  0, or -1 with errno: ETIMEDOUT,
 * EPIPE, EPROTO.
 */
static int
chan_answer_hdr(int fd, struct chan_hdr *r, size_t maxlen,
    const struct timespec *deadline)
{
	struct iovec	 iov;

	iov.iov_base = r;
	iov.iov_len = sizeof(*r);
	if (chan_io(fd, &iov, 1, 0, deadline) == -1)
		return -1;
	if (r->version != CHAN_VERSION || (r->type != CHAN_VERDICT &&
	    r->type != CHAN_DNS_ANSWER) || r->len > maxlen) {
		errno = EPROTO;
		return -1;
	}
	return 0;
}
