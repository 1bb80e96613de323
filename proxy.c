/*
 * The PROXY protocol (SPEC section 8), HAProxy's text version 1 and
 * binary version 2: a peer inside a --proxy-from network opens with a
 * header that names the real client, and that address then counts as
 * the client everywhere.
 *
 * proxy_parse() is a pure function on bytes (the fuzz target and the
 * unit tests call it); proxy_read() runs in a worker, before the master
 * is asked whether the session may start, and reads the header and not
 * one byte more.  The choices the specification leaves open:
 *
 * - Version 1.  "PROXY TCP4 src dst sport dport", "PROXY TCP6 ..." or
 *   "PROXY UNKNOWN" (then anything) up to the first CRLF, at most
 *   PROXY_V1_MAX octets with the CRLF.  One space between fields, none
 *   before the CRLF; addresses as inet_pton() reads them, of the
 *   family named; ports are 1 to 5 digits, no sign, no leading zero
 *   (but "0"), at most 65535.  A bare CR or LF, a control character or
 *   any octet over 0x7e is malformed as soon as it arrives.  UNKNOWN
 *   keeps the peer's own address.
 * - Version 2.  Version nibble 2; command LOCAL (keeps the peer's own
 *   address, whatever the family byte says) or PROXY; anything else is
 *   malformed.  With PROXY: TCP over IPv4 or IPv6 gives the source
 *   address; UNSPEC and UNIX stream keep the peer's address (there is
 *   no IP address to take); a datagram transport (UDP, UNIX dgram) on
 *   a stream connection and any family or transport the specification
 *   does not define are malformed.  The address block must be long
 *   enough for the family's addresses; what follows them (TLVs) is
 *   skipped unread.  The length field may not exceed PROXY_V2_BLOCK_MAX:
 *   a longer header is malformed before its block is read.
 * - An IPv4-mapped IPv6 source is taken as the IPv4 address it maps,
 *   as SPF (RFC 7208 5) and the per-client limits read it.
 * - Whatever comes first decides: bytes that cannot begin either
 *   header are malformed at once, and so is a header as soon as an
 *   octet contradicts it; the parser never waits for bytes it could
 *   not accept.
 */

#include <sys/types.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "smtpd.h"

static const uint8_t	 proxy_v2_sig[PROXY_V2_SIGLEN] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};
static const char	 proxy_v1_sig[] = "PROXY ";

#define PROXY_V1_SIGLEN		(sizeof(proxy_v1_sig) - 1)

/* v2: the 13th and 14th octets */
#define V2_VERSION(b)		((b) >> 4)
#define V2_COMMAND(b)		((b) & 0x0f)
#define V2_CMD_LOCAL		0x0
#define V2_CMD_PROXY		0x1
#define V2_TCP4			0x11
#define V2_UDP4			0x12
#define V2_TCP6			0x21
#define V2_UDP6			0x22
#define V2_UNIX_STREAM		0x31
#define V2_UNIX_DGRAM		0x32
#define V2_UNSPEC		0x00
#define V2_INET_LEN		12	/* 2 x 4 address, 2 x 2 port */
#define V2_INET6_LEN		36	/* 2 x 16 address, 2 x 2 port */
#define V2_UNIX_LEN		216	/* 2 x 108 path */

static int	proxy_prefix(const uint8_t *, size_t, const uint8_t *, size_t);
static int	proxy_v1(const uint8_t *, size_t, struct sockaddr_storage *,
		    size_t *);
static int	proxy_v1_fields(const char *, struct sockaddr_storage *);
static int	proxy_v1_port(const char *, uint16_t *);
static int	proxy_v2(const uint8_t *, size_t, struct sockaddr_storage *,
		    size_t *);
static void	proxy_set4(struct sockaddr_storage *, const uint8_t *,
		    uint16_t);
static void	proxy_set6(struct sockaddr_storage *, const uint8_t *,
		    uint16_t);
static const char *proxy_why(const uint8_t *, size_t);
static long long proxy_now_ms(void);

/* 1: buf (len octets so far) begins sig, or is the beginning of it. */
static int
proxy_prefix(const uint8_t *buf, size_t len, const uint8_t *sig,
    size_t siglen)
{
	return memcmp(buf, sig, len < siglen ? len : siglen) == 0;
}

int
proxy_parse(const uint8_t *buf, size_t len, struct sockaddr_storage *src,
    size_t *used)
{
	memset(src, 0, sizeof(*src));
	*used = 0;
	if (len == 0)
		return PROXY_MORE;
	if (proxy_prefix(buf, len, (const uint8_t *)proxy_v1_sig,
	    PROXY_V1_SIGLEN))
		return proxy_v1(buf, len, src, used);
	if (proxy_prefix(buf, len, proxy_v2_sig, sizeof(proxy_v2_sig)))
		return proxy_v2(buf, len, src, used);
	return PROXY_ERROR;
}

/*
 * Version 1: a line.  Until its CRLF has arrived, every octet is
 * checked as it comes; then the fields.
 */
static int
proxy_v1(const uint8_t *buf, size_t len, struct sockaddr_storage *src,
    size_t *used)
{
	char	 line[PROXY_V1_MAX];
	size_t	 i;
	int	 r;

	for (i = PROXY_V1_SIGLEN; i < len && i < PROXY_V1_MAX; i++) {
		if (buf[i] == '\r')
			break;
		if (buf[i] < 0x20 || buf[i] > 0x7e)
			return PROXY_ERROR;	/* LF, NUL, 8-bit... */
	}
	if (i == PROXY_V1_MAX)
		return PROXY_ERROR;		/* no room for a CRLF */
	if (i + 1 >= len)		/* no CR yet, or no octet after it */
		return i + 2 > PROXY_V1_MAX ? PROXY_ERROR : PROXY_MORE;
	if (buf[i + 1] != '\n' || i + 2 > PROXY_V1_MAX)
		return PROXY_ERROR;
	/* the fields, without "PROXY " and the CRLF */
	memcpy(line, buf + PROXY_V1_SIGLEN, i - PROXY_V1_SIGLEN);
	line[i - PROXY_V1_SIGLEN] = '\0';
	if ((r = proxy_v1_fields(line, src)) == PROXY_ERROR)
		return PROXY_ERROR;
	*used = i + 2;
	return r;
}

/* "TCP4 a b p q", "TCP6 a b p q", "UNKNOWN[ anything]". */
static int
proxy_v1_fields(const char *line, struct sockaddr_storage *src)
{
	char		 f[5][INET6_ADDRSTRLEN];
	uint8_t		 a[16], b[16];
	uint16_t	 sport, dport;
	const char	*p, *sp;
	size_t		 n, nf;
	int		 af;

	if (strcmp(line, "UNKNOWN") == 0 ||
	    strncmp(line, "UNKNOWN ", 8) == 0)
		return PROXY_LOCAL;
	for (p = line, nf = 0; nf < 5; nf++) {
		if ((sp = strchr(p, ' ')) == NULL)
			sp = p + strlen(p);
		n = (size_t)(sp - p);
		if (n == 0 || n >= sizeof(f[nf]))
			return PROXY_ERROR;
		memcpy(f[nf], p, n);
		f[nf][n] = '\0';
		if (*sp == '\0')
			break;
		p = sp + 1;
	}
	if (nf != 4 || *sp != '\0')
		return PROXY_ERROR;	/* not five fields, or more */
	if (strcmp(f[0], "TCP4") == 0)
		af = AF_INET;
	else if (strcmp(f[0], "TCP6") == 0)
		af = AF_INET6;
	else
		return PROXY_ERROR;
	if (inet_pton(af, f[1], a) != 1 || inet_pton(af, f[2], b) != 1 ||
	    proxy_v1_port(f[3], &sport) == -1 ||
	    proxy_v1_port(f[4], &dport) == -1)
		return PROXY_ERROR;
	if (af == AF_INET)
		proxy_set4(src, a, sport);
	else
		proxy_set6(src, a, sport);
	return PROXY_SOURCE;
}

/* 0 to 65535: digits only, no leading zero but in "0". */
static int
proxy_v1_port(const char *s, uint16_t *port)
{
	unsigned long	 v = 0;
	size_t		 i;

	for (i = 0; s[i] != '\0'; i++) {
		if (s[i] < '0' || s[i] > '9' || i == 5)
			return -1;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (i == 0 || (s[0] == '0' && i > 1) || v > 65535)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

/*
 * Version 2: 16 fixed octets, then the block whose length they give.
 * Each fixed octet is judged as soon as it has arrived.
 */
static int
proxy_v2(const uint8_t *buf, size_t len, struct sockaddr_storage *src,
    size_t *used)
{
	size_t		 blen, need = 0;
	uint16_t	 port;
	int		 cmd = -1, fam = -1;

	if (len <= PROXY_V2_SIGLEN)
		return PROXY_MORE;
	if (V2_VERSION(buf[12]) != 2)
		return PROXY_ERROR;
	cmd = V2_COMMAND(buf[12]);
	if (cmd != V2_CMD_LOCAL && cmd != V2_CMD_PROXY)
		return PROXY_ERROR;
	if (len > 13 && cmd == V2_CMD_PROXY) {
		switch ((fam = buf[13])) {
		case V2_UNSPEC:
			need = 0;
			break;
		case V2_TCP4:
			need = V2_INET_LEN;
			break;
		case V2_TCP6:
			need = V2_INET6_LEN;
			break;
		case V2_UNIX_STREAM:
			need = V2_UNIX_LEN;
			break;
		default:	/* datagrams, and what v2 does not define */
			return PROXY_ERROR;
		}
	}
	if (len < PROXY_V2_FIXED)
		return PROXY_MORE;
	blen = (size_t)buf[14] << 8 | buf[15];
	if (blen > PROXY_V2_BLOCK_MAX || blen < need)
		return PROXY_ERROR;
	if (len < PROXY_V2_FIXED + blen)
		return PROXY_MORE;
	*used = PROXY_V2_FIXED + blen;
	if (cmd == V2_CMD_LOCAL)
		return PROXY_LOCAL;
	switch (fam) {
	case V2_TCP4:
		port = (uint16_t)(buf[PROXY_V2_FIXED + 8] << 8 |
		    buf[PROXY_V2_FIXED + 9]);
		proxy_set4(src, buf + PROXY_V2_FIXED, port);
		return PROXY_SOURCE;
	case V2_TCP6:
		port = (uint16_t)(buf[PROXY_V2_FIXED + 32] << 8 |
		    buf[PROXY_V2_FIXED + 33]);
		proxy_set6(src, buf + PROXY_V2_FIXED, port);
		return PROXY_SOURCE;
	default:	/* UNSPEC, UNIX: no IP address to take */
		return PROXY_LOCAL;
	}
}

/* port in host order */
static void
proxy_set4(struct sockaddr_storage *ss, const uint8_t *a, uint16_t port)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)ss;

	memset(ss, 0, sizeof(*ss));
	sin->sin_family = AF_INET;
	memcpy(&sin->sin_addr, a, 4);
	sin->sin_port = htons(port);
}

/* An IPv4-mapped address becomes the IPv4 address. */
static void
proxy_set6(struct sockaddr_storage *ss, const uint8_t *a, uint16_t port)
{
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	sin6->sin6_family = AF_INET6;
	memcpy(&sin6->sin6_addr, a, 16);
	if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
		proxy_set4(ss, a + 12, port);
		return;
	}
	sin6->sin6_port = htons(port);
}

/*
 * Is the peer inside a --proxy-from network?  An IPv4-mapped IPv6 peer
 * (a dual-stack listener's) compares as the IPv4 address.
 */
int
proxy_trusted(const struct smtpd_conf *conf,
    const struct sockaddr_storage *peer)
{
	const struct sockaddr_in	*sin = (const struct sockaddr_in *)peer;
	const struct sockaddr_in6	*sin6 =
	    (const struct sockaddr_in6 *)peer;
	const struct proxy_net		*net;
	const uint8_t			*a;
	size_t				 i, full;
	int				 af, bits;
	uint8_t				 mask;

	if (peer->ss_family == AF_INET) {
		af = AF_INET;
		a = (const uint8_t *)&sin->sin_addr;
	} else if (peer->ss_family == AF_INET6) {
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			af = AF_INET;
			a = &sin6->sin6_addr.s6_addr[12];
		} else {
			af = AF_INET6;
			a = sin6->sin6_addr.s6_addr;
		}
	} else
		return 0;
	for (i = 0; i < conf->nproxy_from; i++) {
		net = &conf->proxy_from[i];
		if (net->af != af)
			continue;
		full = (size_t)net->prefixlen / 8;
		bits = net->prefixlen % 8;
		if (memcmp(a, net->addr, full) != 0)
			continue;
		mask = (uint8_t)(0xff << (8 - bits));
		if (bits != 0 && ((a[full] ^ net->addr[full]) & mask) != 0)
			continue;
		return 1;
	}
	return 0;
}

/* Why a header was refused: not one at all, or a broken one. */
static const char *
proxy_why(const uint8_t *buf, size_t len)
{
	if (proxy_prefix(buf, len, (const uint8_t *)proxy_v1_sig,
	    PROXY_V1_SIGLEN) ||
	    proxy_prefix(buf, len, proxy_v2_sig, sizeof(proxy_v2_sig)))
		return "malformed header";
	return "no header";
}

static long long
proxy_now_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Read the header on fd (non-blocking) within timeout_ms, and no octet
 * of what follows it: each time, look at what has arrived (MSG_PEEK),
 * and take only octets the parser has found to be the header's.  1:
 * *peer is now the client the header names; 0: the header keeps the
 * peer (LOCAL, UNKNOWN); -1: no valid header, and *why says what went
 * wrong.  A SIGTERM ends the wait.
 */
int
proxy_read(int fd, long long timeout_ms, struct sockaddr_storage *peer,
    const char **why)
{
	uint8_t			 buf[PROXY_HDR_MAX];
	struct sockaddr_storage	 src;
	struct pollfd		 pfd;
	struct timespec		 ts;
	sigset_t		 waitmask;
	long long		 deadline, left;
	size_t			 have = 0, used, take;
	ssize_t			 n;
	int			 r = PROXY_ERROR;

	sigprocmask(SIG_BLOCK, NULL, &waitmask);
	sigdelset(&waitmask, SIGTERM);
	sigdelset(&waitmask, SIGINT);
	deadline = proxy_now_ms() + timeout_ms;
	*why = NULL;
	pfd.fd = fd;
	pfd.events = POLLIN;
	while (*why == NULL) {
		n = recv(fd, buf + have, sizeof(buf) - have, MSG_PEEK);
		if (n == 0) {
			*why = have == 0 ? "closed before the header" :
			    "truncated header";
			break;
		}
		if (n > 0) {
			r = proxy_parse(buf, have + (size_t)n, &src, &used);
			if (r == PROXY_ERROR) {
				*why = proxy_why(buf, have + (size_t)n);
				break;
			}
			/* the header's octets only: all of them, if MORE */
			take = r == PROXY_MORE ? (size_t)n : used - have;
			do {
				n = recv(fd, buf + have, take, 0);
			} while (n == -1 && errno == EINTR);
			if (n != (ssize_t)take) {
				*why = "read error";
				break;
			}
			have += take;
			if (r != PROXY_MORE)
				break;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			*why = "read error";
			break;
		}
		if ((left = deadline - proxy_now_ms()) <= 0) {
			*why = have == 0 ? "timeout" :
			    "timeout, truncated header";
			break;
		}
		ts.tv_sec = left / 1000;
		ts.tv_nsec = (left % 1000) * 1000000;
		if (ppoll(&pfd, 1, &ts, &waitmask) == -1) {
			if (errno == EINTR)
				*why = "shutdown";
			else
				*why = "read error";
		}
	}
	explicit_bzero(buf, sizeof(buf));
	if (*why != NULL)
		return -1;
	if (r != PROXY_SOURCE)
		return 0;
	memcpy(peer, &src, sizeof(*peer));
	return 1;
}
