/*
 * SPF (spf.c) against cases read from files: the RFC 7208 test suite,
 * turned into this format by tests/test_spf_suite.py, and our own
 * regression cases, the .txt files in tests/spf.  No network: each
 * case's DNS is a table of records that a dns_ctx lookup answers from.
 *
 *	./tests/spf_test file...
 *
 * A file is lines; '#' starts a comment line.  A case:
 *	case NAME
 *	host IP			the client, IPv4 or IPv6
 *	helo TEXT
 *	mailfrom TEXT		empty: the HELO check, postmaster@helo
 *	want RESULT[,RESULT...]	any of them passes
 *	rr NAME TYPE [DATA]	any number: A, AAAA (DATA an address),
 *				TXT (the strings joined), MX, PTR, CNAME
 *				(DATA a name), TIMEOUT (no DATA)
 *	end
 * TEXT, NAME and DATA are escaped: every octet outside '!'..'~', and
 * '%', is written %XX.  A missing DATA or TEXT is empty.
 *
 * The table answers like a resolver: names in any case, a trailing dot
 * ignored; a name absent is NXDOMAIN; a name with records of the type
 * asked gets them; else a name with TIMEOUT gets DNS_TEMPFAIL; else a
 * CNAME is followed (8 hops at most: a loop is DNS_TEMPFAIL); else
 * NOERROR without records.
 *
 * One line per case, "ok NAME" or "FAIL ...: NAME got X want Y", then
 * "N passed, N failed".
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../smtpd.h"
#include "check.h"

#define ZT_CNAME	5
#define ZT_TIMEOUT	(-1)
#define CNAME_HOPS	8

struct zrr {
	char		*name;
	int		 type;
	uint8_t		*data;
	size_t		 len;
};

struct spfcase {
	char		*name;
	char		*host;
	char		*helo;
	char		*mailfrom;
	char		*want;
	struct zrr	*rr;
	size_t		 nrr;
	size_t		 cap;
};

static const struct {
	const char	*name;
	int		 type;
} ztypes[] = {
	{ "A", DNS_T_A }, { "AAAA", DNS_T_AAAA }, { "TXT", DNS_T_TXT },
	{ "MX", DNS_T_MX }, { "PTR", DNS_T_PTR }, { "CNAME", ZT_CNAME },
	{ "TIMEOUT", ZT_TIMEOUT },
};

static size_t	 unescape(const char *, uint8_t *);
static char	*unescape_str(const char *);
static int	 name_eq(const char *, const char *);
static int	 zone_lookup(void *, const char *, int, struct dns_answer *);
static void	 case_rr(struct spfcase *, char *, const char *, int);
static void	 case_run(struct spfcase *);
static void	 case_free(struct spfcase *);
static void	 read_file(const char *);

/* %XX to octets; out has room for strlen(in) octets.  Returns length. */
static size_t
unescape(const char *in, uint8_t *out)
{
	size_t		 n = 0;
	unsigned int	 v;

	while (*in != '\0') {
		if (in[0] == '%' && isxdigit((unsigned char)in[1]) &&
		    isxdigit((unsigned char)in[2]) &&
		    sscanf(in + 1, "%2x", &v) == 1) {
			out[n++] = (uint8_t)v;
			in += 3;
		} else
			out[n++] = (uint8_t)*in++;
	}
	return n;
}

static char *
unescape_str(const char *in)
{
	char	*s;
	size_t	 n;

	if ((s = malloc(strlen(in) + 1)) == NULL)
		err(1, NULL);
	n = unescape(in, (uint8_t *)s);
	s[n] = '\0';
	return s;
}

/* Names in any case, a trailing dot on either ignored. */
static int
name_eq(const char *a, const char *b)
{
	size_t	 la = strlen(a), lb = strlen(b);

	if (la > 0 && a[la - 1] == '.')
		la--;
	if (lb > 0 && b[lb - 1] == '.')
		lb--;
	return la == lb && strncasecmp(a, b, la) == 0;
}

static int
zone_lookup(void *arg, const char *qname, int type, struct dns_answer *ans)
{
	struct spfcase	*c = arg;
	const char	*name = qname, *cname;
	size_t		 i, off;
	int		 hop, exists, timeout;

	for (hop = 0; hop < CNAME_HOPS; hop++) {
		exists = timeout = 0;
		cname = NULL;
		ans->nrr = off = 0;
		for (i = 0; i < c->nrr; i++) {
			if (!name_eq(c->rr[i].name, name))
				continue;
			exists = 1;
			if (c->rr[i].type == ZT_TIMEOUT)
				timeout = 1;
			else if (c->rr[i].type == ZT_CNAME)
				cname = (const char *)c->rr[i].data;
			if (c->rr[i].type != type)
				continue;
			if (ans->nrr == DNS_RR_MAX ||
			    c->rr[i].len > sizeof(ans->buf) - off) {
				ans->status = DNS_TEMPFAIL;
				return 0;
			}
			memcpy(ans->buf + off, c->rr[i].data, c->rr[i].len);
			ans->rr[ans->nrr].data = ans->buf + off;
			ans->rr[ans->nrr++].len = c->rr[i].len;
			off += c->rr[i].len;
		}
		ans->status = DNS_NOERROR;
		if (!exists)
			ans->status = DNS_NXDOMAIN;
		else if (ans->nrr == 0 && timeout)
			ans->status = DNS_TEMPFAIL;
		else if (ans->nrr == 0 && cname != NULL) {
			name = cname;
			continue;
		}
		return 0;
	}
	ans->nrr = 0;
	ans->status = DNS_TEMPFAIL;	/* a CNAME loop */
	return 0;
}

/* "rr NAME TYPE [DATA]": rest is "NAME TYPE [DATA]", cut in place. */
static void
case_rr(struct spfcase *c, char *rest, const char *file, int line)
{
	struct zrr	*z;
	char		*name, *type, *data, *raw;
	size_t		 i;

	name = strsep(&rest, " ");
	type = rest != NULL ? strsep(&rest, " ") : NULL;
	data = rest != NULL ? rest : "";
	if (name == NULL || type == NULL)
		errx(1, "%s:%d: rr NAME TYPE [DATA]", file, line);
	if (c->nrr == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 16;
		if ((c->rr = reallocarray(c->rr, c->cap, sizeof(*c->rr))) ==
		    NULL)
			err(1, NULL);
	}
	z = &c->rr[c->nrr];
	for (i = 0; i < sizeof(ztypes) / sizeof(ztypes[0]); i++)
		if (strcmp(ztypes[i].name, type) == 0)
			break;
	if (i == sizeof(ztypes) / sizeof(ztypes[0]))
		errx(1, "%s:%d: unknown type %s", file, line, type);
	z->type = ztypes[i].type;
	z->name = unescape_str(name);
	raw = unescape_str(data);
	if ((z->data = malloc(strlen(data) + 17)) == NULL)
		err(1, NULL);
	if (z->type == DNS_T_A || z->type == DNS_T_AAAA) {
		if (inet_pton(z->type == DNS_T_A ? AF_INET : AF_INET6, raw,
		    z->data) != 1)
			errx(1, "%s:%d: bad address %s", file, line, raw);
		z->len = z->type == DNS_T_A ? 4 : 16;
	} else {
		z->len = unescape(data, z->data);
		z->data[z->len] = '\0';	/* names are used as strings */
	}
	free(raw);
	c->nrr++;
}

/* The client and envelope of the case, then spf_check_host(). */
static void
case_run(struct spfcase *c)
{
	struct sockaddr_storage	 ss;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&ss;
	struct dns_ctx		 dns;
	char			*sender, *domain, *at, *want, *w, *p;
	const char		*got;
	int			 ok = 0;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, c->host, &sin->sin_addr) == 1)
		ss.ss_family = AF_INET;
	else if (inet_pton(AF_INET6, c->host, &sin6->sin6_addr) == 1)
		ss.ss_family = AF_INET6;
	else
		errx(1, "case %s: bad host %s", c->name, c->host);
	if (*c->mailfrom == '\0' || (at = strrchr(c->mailfrom, '@')) ==
	    NULL) {
		domain = *c->mailfrom ? c->mailfrom : c->helo;
		if (asprintf(&sender, "postmaster@%s", domain) == -1)
			err(1, NULL);
	} else {
		domain = at + 1;
		if ((sender = strdup(c->mailfrom)) == NULL)
			err(1, NULL);
	}
	memset(&dns, 0, sizeof(dns));
	dns.lookup = zone_lookup;
	dns.arg = c;
	got = spf_result_name(spf_check_host(&dns, &ss, domain, sender,
	    c->helo, "receiver.example"));
	if ((want = strdup(c->want)) == NULL)
		err(1, NULL);
	for (p = want; (w = strsep(&p, ",")) != NULL; )
		if (strcmp(w, got) == 0)
			ok = 1;
	CHECK(ok, "%s got %s want %s", c->name, got, c->want);
	if (ok)
		printf("ok %s\n", c->name);
	free(want);
	free(sender);
}

static void
case_free(struct spfcase *c)
{
	size_t	 i;

	for (i = 0; i < c->nrr; i++) {
		free(c->rr[i].name);
		free(c->rr[i].data);
	}
	free(c->rr);
	free(c->name);
	free(c->host);
	free(c->helo);
	free(c->mailfrom);
	free(c->want);
	memset(c, 0, sizeof(*c));
}

static void
read_file(const char *file)
{
	struct spfcase	 c;
	FILE		*fp;
	char		*line = NULL, *key, *rest, **field;
	size_t		 sz = 0;
	ssize_t		 len;
	int		 lineno = 0, incase = 0;

	if ((fp = fopen(file, "r")) == NULL)
		err(1, "%s", file);
	memset(&c, 0, sizeof(c));
	while ((len = getline(&line, &sz, fp)) != -1) {
		lineno++;
		if (len > 0 && line[len - 1] == '\n')
			line[--len] = '\0';
		if (line[0] == '#' || line[0] == '\0')
			continue;
		rest = line;
		key = strsep(&rest, " ");
		if (rest == NULL)
			rest = "";
		if (strcmp(key, "case") == 0) {
			if (incase)
				errx(1, "%s:%d: case without end", file,
				    lineno);
			incase = 1;
			c.name = unescape_str(rest);
			continue;
		}
		if (!incase)
			errx(1, "%s:%d: outside a case", file, lineno);
		field = NULL;
		if (strcmp(key, "host") == 0)
			field = &c.host;
		else if (strcmp(key, "helo") == 0)
			field = &c.helo;
		else if (strcmp(key, "mailfrom") == 0)
			field = &c.mailfrom;
		else if (strcmp(key, "want") == 0)
			field = &c.want;
		if (field != NULL) {
			free(*field);
			*field = unescape_str(rest);
		} else if (strcmp(key, "rr") == 0)
			case_rr(&c, rest, file, lineno);
		else if (strcmp(key, "end") == 0) {
			if (c.host == NULL || c.helo == NULL ||
			    c.mailfrom == NULL || c.want == NULL)
				errx(1, "%s:%d: case %s incomplete", file,
				    lineno, c.name);
			case_run(&c);
			case_free(&c);
			incase = 0;
		} else
			errx(1, "%s:%d: unknown line %s", file, lineno, key);
	}
	if (incase)
		errx(1, "%s: case %s without end", file, c.name);
	free(line);
	fclose(fp);
}

int
main(int argc, char *argv[])
{
	int	 i;

	if (argc < 2) {
		fprintf(stderr, "usage: spf_test file...\n");
		return 2;
	}
	for (i = 1; i < argc; i++)
		read_file(argv[i]);
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
