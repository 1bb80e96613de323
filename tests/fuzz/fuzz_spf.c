/*
 * libFuzzer target for SPF (spf.c): hostile DNS answers.  The input is
 * a flags octet, then lines, each a record:
 *	flags	bits 0-1: the client, 192.0.2.1, 2001:db8::1,
 *		::ffff:192.0.2.1 or fe80::1; bit 2: a HELO name with
 *		odd octets; bit 3: a sender without a local part
 *	line	one octet for the owner name (a digit picks one of
 *		names[] below, anything else is every name not listed),
 *		one for the type (T TXT, A A, Q AAAA, M MX, P PTR, X a
 *		timeout), then the data, raw: a TXT record, an address of
 *		any length, an MX or PTR name.
 * The domain checked is names[0].  Whatever the input, spf_check_host()
 * must return a known result, within DNS_QUERIES_MAX questions, and
 * free what it took (LeakSanitizer).  A breach aborts.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../../smtpd.h"

#define FUZZ_LINES	256

int		 LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static const char *const names[] = {
	"example.com",
	"a.example.com",
	"b.example.com",
	"mx.example.com",
	"1.2.0.192.in-addr.arpa",
	("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"
	    ".ip6.arpa"),
	"postmaster.example.com",
	"x.example.com",
};

struct fuzz_line {
	int		 owner;		/* index in names, or -1: the rest */
	int		 type;
	const uint8_t	*data;
	size_t		 len;
};

struct fuzz_zone {
	struct fuzz_line line[FUZZ_LINES];
	size_t		 n;
	size_t		 asked;
};

static int	 fuzz_lookup(void *, const char *, int, struct dns_answer *);
static int	 fuzz_owner(const char *);
static int	 fuzz_type(uint8_t);
static void	 fuzz_answer(struct fuzz_zone *, int, int,
		    struct dns_answer *);

static int
fuzz_owner(const char *name)
{
	size_t	 i, len = strlen(name);

	if (len > 0 && name[len - 1] == '.')
		len--;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == len &&
		    strncasecmp(names[i], name, len) == 0)
			return (int)i;
	return -1;
}

static int
fuzz_type(uint8_t c)
{
	switch (c) {
	case 'T':
		return DNS_T_TXT;
	case 'A':
		return DNS_T_A;
	case 'Q':
		return DNS_T_AAAA;
	case 'M':
		return DNS_T_MX;
	case 'P':
		return DNS_T_PTR;
	case 'X':
		return 0;	/* a timeout */
	}
	return -1;
}

/* The records of owner (or of the rest, -1) of type into ans. */
static void
fuzz_answer(struct fuzz_zone *z, int owner, int type,
    struct dns_answer *ans)
{
	size_t	 i, off = 0;
	int	 exists = 0, timeout = 0;

	ans->nrr = 0;
	for (i = 0; i < z->n; i++) {
		if (z->line[i].owner != owner)
			continue;
		exists = 1;
		if (z->line[i].type == 0)
			timeout = 1;
		if (z->line[i].type != type)
			continue;
		if (ans->nrr == DNS_RR_MAX ||
		    z->line[i].len > sizeof(ans->buf) - off)
			break;
		memcpy(ans->buf + off, z->line[i].data, z->line[i].len);
		ans->rr[ans->nrr].data = ans->buf + off;
		ans->rr[ans->nrr++].len = z->line[i].len;
		off += z->line[i].len;
	}
	if (!exists)
		ans->status = DNS_NXDOMAIN;
	else if (ans->nrr == 0 && timeout)
		ans->status = DNS_TEMPFAIL;
	else
		ans->status = DNS_NOERROR;
}

static int
fuzz_lookup(void *arg, const char *name, int type, struct dns_answer *ans)
{
	struct fuzz_zone	*z = arg;
	int			 owner = fuzz_owner(name);

	z->asked++;
	fuzz_answer(z, owner, type, ans);
	if (owner != -1 && ans->status == DNS_NXDOMAIN)
		fuzz_answer(z, -1, type, ans);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fuzz_zone	 z;
	struct sockaddr_storage	 ss;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&ss;
	struct dns_ctx		 dns;
	const uint8_t		*p, *end, *nl;
	const char		*helo, *sender;
	int			 r, type;

	if (size < 1)
		return 0;
	memset(&z, 0, sizeof(z));
	memset(&ss, 0, sizeof(ss));
	switch (data[0] & 3) {
	case 0:
		ss.ss_family = AF_INET;
		memcpy(&sin->sin_addr, "\xc0\x00\x02\x01", 4);
		break;
	case 1:
		ss.ss_family = AF_INET6;
		memcpy(&sin6->sin6_addr, "\x20\x01\x0d\xb8\0\0\0\0"
		    "\0\0\0\0\0\0\0\x01", 16);
		break;
	case 2:
		ss.ss_family = AF_INET6;
		memcpy(&sin6->sin6_addr, "\0\0\0\0\0\0\0\0\0\0\xff\xff"
		    "\xc0\x00\x02\x01", 16);
		break;
	default:
		ss.ss_family = AF_INET6;
		memcpy(&sin6->sin6_addr, "\xfe\x80\0\0\0\0\0\0"
		    "\0\0\0\0\0\0\0\x01", 16);
		break;
	}
	helo = (data[0] & 4) ? "[192.0.2.1] %{d}.x\xff" : "mail.example.com";
	sender = (data[0] & 8) ? "@example.com" : "a.b-c+d@example.com";
	for (p = data + 1, end = data + size; p < end && z.n < FUZZ_LINES;
	    p = nl + 1) {
		if ((nl = memchr(p, '\n', end - p)) == NULL)
			nl = end;
		if (nl - p < 2 || (type = fuzz_type(p[1])) == -1)
			continue;
		z.line[z.n].owner = p[0] >= '0' && p[0] <= '7' ?
		    p[0] - '0' : -1;
		z.line[z.n].type = type;
		z.line[z.n].data = p + 2;
		z.line[z.n].len = (size_t)(nl - p - 2);
		z.n++;
	}
	memset(&dns, 0, sizeof(dns));
	dns.lookup = fuzz_lookup;
	dns.arg = &z;
	r = spf_check_host(&dns, &ss, names[0], sender, helo,
	    "mx.example.net");
	if (r < SPF_NONE || r > SPF_PERMERROR || z.asked > DNS_QUERIES_MAX ||
	    dns.queries != z.asked)
		abort();
	return 0;
}
