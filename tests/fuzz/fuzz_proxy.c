/*
 * libFuzzer target for the PROXY protocol parser (make tests/fuzz/fuzz_proxy):
 * proxy_parse() on any bytes, as a trusted peer could send them.  The
 * input is fed as it could arrive, one octet more each time, as
 * proxy_read() would see it.  Whatever the input: the result is one of
 * the four; a prefix gives PROXY_MORE until the first other answer, and
 * from there on every longer prefix gives that same answer (the same
 * length, the same address), so a header split across reads is read as
 * a whole one is; the header length lies within what arrived and the
 * bounds (a v1 line ends with its CRLF, a v2 header is 16 octets plus
 * its length field); only PROXY_SOURCE fills the address, with AF_INET
 * or a not IPv4-mapped AF_INET6 and nothing beyond it; and a source
 * written back as a v1 line and as a v2 header parses to itself.  Any
 * breach aborts, so that libFuzzer keeps the input.
 */

#include <sys/types.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../smtpd.h"

int		 LLVMFuzzerTestOneInput(const uint8_t *, size_t);
static void	 fuzz_check(const uint8_t *, size_t, int,
		    const struct sockaddr_storage *, size_t);
static void	 fuzz_roundtrip(const struct sockaddr_storage *);
static int	 fuzz_zero(const void *, size_t);

static int
fuzz_zero(const void *p, size_t n)
{
	const uint8_t	*b = p;
	size_t		 i;

	for (i = 0; i < n; i++)
		if (b[i] != 0)
			return 0;
	return 1;
}

/* One answer on its own. */
static void
fuzz_check(const uint8_t *buf, size_t len, int r,
    const struct sockaddr_storage *ss, size_t used)
{
	const struct sockaddr_in6	*sin6 = (const void *)ss;

	if (r != PROXY_ERROR && r != PROXY_MORE && r != PROXY_SOURCE &&
	    r != PROXY_LOCAL)
		abort();
	if (r == PROXY_ERROR || r == PROXY_MORE) {
		if (used != 0)
			abort();
	} else {
		if (used == 0 || used > len || used > PROXY_HDR_MAX)
			abort();
		if (buf[0] == 'P') {
			if (used > PROXY_V1_MAX || used < 8 ||
			    buf[used - 2] != '\r' || buf[used - 1] != '\n' ||
			    memchr(buf, '\n', used - 1) != NULL)
				abort();
		} else if (used < PROXY_V2_FIXED ||
		    used != PROXY_V2_FIXED + ((size_t)buf[14] << 8 | buf[15]))
			abort();
	}
	if (r != PROXY_SOURCE) {
		if (!fuzz_zero(ss, sizeof(*ss)))
			abort();
		return;
	}
	if (ss->ss_family == AF_INET) {
		if (!fuzz_zero((const uint8_t *)ss +
		    sizeof(struct sockaddr_in),
		    sizeof(*ss) - sizeof(struct sockaddr_in)))
			abort();
	} else if (ss->ss_family == AF_INET6) {
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr) ||
		    !fuzz_zero((const uint8_t *)ss +
		    sizeof(struct sockaddr_in6),
		    sizeof(*ss) - sizeof(struct sockaddr_in6)))
			abort();
	} else
		abort();
}

/* The source, written back both ways, reads as itself. */
static void
fuzz_roundtrip(const struct sockaddr_storage *ss)
{
	const struct sockaddr_in	*sin = (const void *)ss;
	const struct sockaddr_in6	*sin6 = (const void *)ss;
	struct sockaddr_storage		 back;
	uint8_t				 v2[PROXY_V2_FIXED + 36];
	char				 a[INET6_ADDRSTRLEN];
	char				 line[PROXY_V1_MAX + 1];
	size_t				 used, blen;
	uint16_t			 port;
	int				 n, v4 = ss->ss_family == AF_INET;

	port = ntohs(v4 ? sin->sin_port : sin6->sin6_port);
	if (inet_ntop(ss->ss_family, v4 ? (const void *)&sin->sin_addr :
	    (const void *)&sin6->sin6_addr, a, sizeof(a)) == NULL)
		abort();
	n = snprintf(line, sizeof(line), "PROXY TCP%c %s %s %u 25\r\n",
	    v4 ? '4' : '6', a, a, port);
	if (n < 0 || (size_t)n >= sizeof(line))
		abort();
	if (proxy_parse((const uint8_t *)line, (size_t)n, &back, &used) !=
	    PROXY_SOURCE || used != (size_t)n ||
	    memcmp(&back, ss, sizeof(back)) != 0)
		abort();

	blen = v4 ? 12 : 36;
	memcpy(v2, "\r\n\r\n\0\r\nQUIT\n", PROXY_V2_SIGLEN);
	v2[12] = 0x21;
	v2[13] = v4 ? 0x11 : 0x21;
	v2[14] = 0;
	v2[15] = (uint8_t)blen;
	memset(v2 + PROXY_V2_FIXED, 0, blen);
	if (v4) {
		memcpy(v2 + 16, &sin->sin_addr, 4);
		v2[24] = (uint8_t)(port >> 8);
		v2[25] = (uint8_t)port;
	} else {
		memcpy(v2 + 16, &sin6->sin6_addr, 16);
		v2[48] = (uint8_t)(port >> 8);
		v2[49] = (uint8_t)port;
	}
	if (proxy_parse(v2, PROXY_V2_FIXED + blen, &back, &used) !=
	    PROXY_SOURCE || used != PROXY_V2_FIXED + blen ||
	    memcmp(&back, ss, sizeof(back)) != 0)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_storage	 ss, first_ss;
	size_t			 k, used, first_used = 0;
	uint8_t			*copy;
	int			 r, first = PROXY_MORE;

	/* a heap copy of exactly size octets: ASan sees any overread */
	if ((copy = malloc(size ? size : 1)) == NULL)
		return 0;
	memcpy(copy, data, size);
	memset(&first_ss, 0, sizeof(first_ss));
	for (k = 0; k <= size; k++) {
		r = proxy_parse(copy, k, &ss, &used);
		fuzz_check(copy, k, r, &ss, used);
		if (first == PROXY_MORE) {
			first = r;
			first_used = used;
			memcpy(&first_ss, &ss, sizeof(ss));
		} else if (r != first || used != first_used ||
		    memcmp(&ss, &first_ss, sizeof(ss)) != 0)
			abort();
		if (first == PROXY_MORE && k > PROXY_HDR_MAX)
			abort();	/* it must decide within the bound */
	}
	if (first == PROXY_SOURCE)
		fuzz_roundtrip(&first_ss);
	free(copy);
	return 0;
}
