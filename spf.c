/*
 * SPF (RFC 7208): check_host() for the client address, the MAIL FROM
 * (or HELO) domain and its sender.
 *
 * One check is one struct spf on the heap: the client, the sender, the
 * counters of 4.6.4, two DNS answers (an outer one for the record, the
 * MX or PTR list, an inner one for the addresses of each name) and the
 * macro expansion window.  check_host() recurses once per include and
 * redirect, and every one of those counts against the 10 DNS-querying
 * terms, so the depth stays under SPF_DEPTH_MAX; it is checked anyway.
 * Each level holds its record and its parsed terms on the heap and
 * frees them on every path out.
 *
 * A record is parsed whole before any term is evaluated (4.6: a syntax
 * error anywhere is a permerror, whatever would have matched first),
 * then evaluated left to right.
 *
 * Choices where the RFC leaves room:
 * - Only TXT records are asked for (type SPF, 99, never is).  The
 *   selected record must be printable ASCII and spaces: any other byte
 *   (control, NUL, 8-bit) is a permerror (3.1, 4.6.1).
 * - exp= is parsed and its domain-spec checked like any other (a syntax
 *   error in it, or an empty one, is a permerror), but the explanation
 *   is never fetched: only the result is reported.  So exp= asks no
 *   question and costs no void lookup, and %{c}, %{r}, %{t} (exp-only
 *   letters, a syntax error in any domain-spec) are never expanded.
 * - The 10 DNS-querying terms (include, a, mx, ptr, exists, redirect)
 *   are counted as they are evaluated: terms after the one that
 *   matched cost nothing.  The 11th is a permerror.
 * - Void lookups are counted per term, on the term's own question: the
 *   address query of "a", the MX query of "mx" (not the address
 *   queries of its hosts), the PTR query of "ptr", the A query of
 *   "exists".  The third void lookup is a permerror.  include and
 *   redirect need no count: a target without a record is a permerror.
 *   %{p} never counts.
 * - "mx" with more than 10 hosts is a permerror (4.6.4); "ptr" and
 *   %{p} look at the first 10 names and ignore the rest.
 * - "ptr" and %{p} share one list per check: the PTR names of the
 *   client, each validated by one A or AAAA query the first time it is
 *   needed.  A DNS error there never gives temperror: the PTR query's
 *   makes "ptr" not match and %{p} "unknown", a name's makes it not
 *   validated (5.5).  %{p} is the current domain if validated, else a
 *   validated subdomain of it, else any validated name, else "unknown".
 * - A target name no resolver takes (an empty or over-long label, from
 *   the record or from a macro) is a name that does not exist (dns.c
 *   answers NXDOMAIN without asking): "a", "mx", "exists" do not match
 *   and count a void lookup; include and redirect are permerror.
 * - An expanded name over 253 octets loses labels from the left
 *   (7.3); one that no cut brings under is a name that does not exist.
 *   A trailing dot of an expanded name is dropped.
 * - A DIGIT transformer of 0 is a syntax error; more parts than there
 *   are means all of them.
 * - Initial processing (4.3): a domain that is not a name of two or
 *   more labels of letters, digits, '-' and '_', each of 1 to 63
 *   octets, at most 253 in all, with a top label not all digits, gives
 *   none (so do address literals).  A sender without a local part is
 *   postmaster@domain.
 * - An IPv4-mapped IPv6 client is IPv4 (5).  Any other family than
 *   IPv4 and IPv6 gives none.
 * - A failed allocation is a temperror, never a pass.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtpd.h"

#ifndef nitems
#define nitems(a)		(sizeof(a) / sizeof((a)[0]))
#endif


/* What a term's evaluation gives besides a result. */
#define SPF_GO			(-1)	/* no match: go on */
#define SPF_MATCH		(-2)

enum spf_kind {
	SPF_K_ALL,
	SPF_K_INCLUDE,
	SPF_K_A,
	SPF_K_MX,
	SPF_K_PTR,
	SPF_K_IP4,
	SPF_K_IP6,
	SPF_K_EXISTS,
	SPF_K_REDIRECT,		/* modifiers from here */
	SPF_K_EXP,
	SPF_K_UNKNOWN,
};

/* What may follow a mechanism's name. */
#define SPF_F_SPEC		0x01	/* ":" domain-spec, optional */
#define SPF_F_NEEDSPEC		0x02	/* ":" domain-spec, required */
#define SPF_F_CIDR		0x04	/* dual-cidr-length */
#define SPF_F_DNS		0x08	/* counts against the 10 */

static const struct {
	const char	*name;
	int		 kind;
	int		 flags;
} spf_mechs[] = {
	{ "all",	SPF_K_ALL,	0 },
	{ "include",	SPF_K_INCLUDE,	SPF_F_NEEDSPEC | SPF_F_DNS },
	{ "a",		SPF_K_A,	SPF_F_SPEC | SPF_F_CIDR | SPF_F_DNS },
	{ "mx",		SPF_K_MX,	SPF_F_SPEC | SPF_F_CIDR | SPF_F_DNS },
	{ "ptr",	SPF_K_PTR,	SPF_F_SPEC | SPF_F_DNS },
	{ "ip4",	SPF_K_IP4,	0 },
	{ "ip6",	SPF_K_IP6,	0 },
	{ "exists",	SPF_K_EXISTS,	SPF_F_NEEDSPEC | SPF_F_DNS },
};

/* One parsed term; spec points into the record. */
struct spf_term {
	int		 kind;		/* enum spf_kind */
	int		 result;	/* on a match: the qualifier's */
	const char	*spec;		/* domain-spec, or NULL */
	int		 cidr4;		/* a, mx, ip4 */
	int		 cidr6;		/* a, mx, ip6 */
	uint8_t		 net[16];	/* ip4, ip6 */
};

/* The client's names (5.5), for "ptr" and %{p}: asked once. */
struct spf_ptr {
	int		 asked;
	int		 status;	/* of the PTR query */
	size_t		 n;
	char		 name[SPF_PTR_MAX][DNS_NAME_MAX + 1];
	int		 valid[SPF_PTR_MAX];	/* 0 not yet, 1 yes, -1 no */
};

struct spf {
	struct dns_ctx		*dns;
	int			 af;		/* AF_INET or AF_INET6 */
	uint8_t			 ip[16];	/* 4 or 16 octets */
	char			*sender;	/* local@domain (4.3) */
	size_t			 locallen;
	const char		*helo;
	int			 terms;		/* DNS-querying terms so far */
	int			 voids;		/* void lookups so far */
	int			 depth;		/* check_host() nesting */
	struct spf_ptr		 ptr;
	char			 win[SPF_WINDOW];	/* macro expansion */
	size_t			 winlen;
	struct dns_answer	 outer;
	struct dns_answer	 inner;
};

static int	 spf_client(struct spf *, const struct sockaddr_storage *);
static int	 spf_sender(struct spf *, const char *, const char *);
static int	 spf_domain_ok(const char *, char *);
static int	 spf_check(struct spf *, const char *);
static int	 spf_record(struct spf *, const char *, char **, int *);
static int	 spf_is_v1(const uint8_t *, size_t);
static int	 spf_parse(char *, struct spf_term **, size_t *);
static int	 spf_parse_term(char *, struct spf_term *);
static int	 spf_parse_mech(const char *, size_t, char *,
		    struct spf_term *);
static int	 spf_parse_modifier(const char *, size_t, const char *,
		    struct spf_term *);
static int	 spf_parse_cidr(const char *, const char *, int, int *);
static int	 spf_parse_dual(char *, int *, int *);
static int	 spf_parse_ip4(const char *, struct spf_term *);
static int	 spf_parse_ip6(const char *, struct spf_term *);
static int	 spf_check_macros(const char *, int, size_t *);
static int	 spf_check_spec(const char *);
static int	 spf_toplabel_ok(const char *, size_t);
static int	 spf_eval(struct spf *, const char *,
		    const struct spf_term *, size_t);
static int	 spf_mech(struct spf *, const char *,
		    const struct spf_term *);
static int	 spf_mech_flags(int);
static int	 spf_include(struct spf *, const char *);
static int	 spf_redirect(struct spf *, const char *,
		    const struct spf_term *);
static int	 spf_hosts(struct spf *, const char *,
		    const struct spf_term *, struct dns_answer *, int);
static int	 spf_mx(struct spf *, const char *, const struct spf_term *);
static int	 spf_ptr(struct spf *, const char *);
static int	 spf_exists(struct spf *, const char *);
static int	 spf_void(struct spf *);
static int	 spf_net_match(const uint8_t *, const uint8_t *, int);
static void	 spf_ptr_load(struct spf *);
static int	 spf_ptr_valid(struct spf *, size_t);
static const char *spf_ptr_name(struct spf *, const char *);
static int	 spf_name_under(const char *, const char *, int);
static void	 spf_rr_name(const struct dns_rr *, char *);
static size_t	 spf_ip_text(const struct spf *, int, char *, size_t);
static int	 spf_expand(struct spf *, const char *, const char *,
		    char *);
static const char *spf_macro(struct spf *, const char *, const char *);
static void	 spf_macro_emit(struct spf *, const char *, size_t,
		    const char *, size_t, int, int);
static int	 spf_is_delim(int, const char *);
static void	 spf_put(struct spf *, int, int);
static void	 spf_fit(struct spf *, char *);

const char *
spf_result_name(int r)
{
	static const char *const names[] = { "none", "neutral", "pass",
	    "fail", "softfail", "temperror", "permerror" };

	if (r < 0 || r > SPF_PERMERROR)
		return "permerror";
	return names[r];
}

int
spf_check_host(struct dns_ctx *dns, const struct sockaddr_storage *ip,
    const char *domain, const char *sender, const char *helo,
    const char *receiver)
{
	struct spf	*sp;
	char		 d[DNS_NAME_MAX + 1];
	int		 r;

	(void)receiver;		/* %{r} is exp-only: never expanded */
	if (domain == NULL || !spf_domain_ok(domain, d))
		return SPF_NONE;
	if ((sp = calloc(1, sizeof(*sp))) == NULL)
		return SPF_TEMPERROR;
	sp->dns = dns;
	sp->helo = helo != NULL ? helo : "";
	if (spf_client(sp, ip) == -1)
		r = SPF_NONE;
	else if (spf_sender(sp, sender, d) == -1)
		r = SPF_TEMPERROR;
	else
		r = spf_check(sp, d);
	free(sp->sender);
	free(sp);
	return r;
}

/* The client's address; an IPv4-mapped IPv6 one is IPv4. */
static int
spf_client(struct spf *sp, const struct sockaddr_storage *ss)
{
	const struct sockaddr_in	*sin;
	const struct sockaddr_in6	*sin6;

	if (ss == NULL)
		return -1;
	if (ss->ss_family == AF_INET) {
		sin = (const struct sockaddr_in *)ss;
		sp->af = AF_INET;
		memcpy(sp->ip, &sin->sin_addr, 4);
		return 0;
	}
	if (ss->ss_family != AF_INET6)
		return -1;
	sin6 = (const struct sockaddr_in6 *)ss;
	if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
		sp->af = AF_INET;
		memcpy(sp->ip, sin6->sin6_addr.s6_addr + 12, 4);
	} else {
		sp->af = AF_INET6;
		memcpy(sp->ip, sin6->sin6_addr.s6_addr, 16);
	}
	return 0;
}

/*
 * <sender> (4.3): local@domain, postmaster when the local part is
 * empty; without any '@', postmaster@ the checked domain.
 */
static int
spf_sender(struct spf *sp, const char *sender, const char *domain)
{
	const char	*at = NULL, *local = "postmaster";
	size_t		 llen, dlen;

	llen = strlen(local);
	if (sender != NULL)
		at = strrchr(sender, '@');
	if (at != NULL) {
		domain = at + 1;
		if (at != sender) {
			local = sender;
			llen = (size_t)(at - sender);
		}
	}
	dlen = strlen(domain);
	if ((sp->sender = malloc(llen + dlen + 2)) == NULL)
		return -1;
	memcpy(sp->sender, local, llen);
	sp->sender[llen] = '@';
	memcpy(sp->sender + llen + 1, domain, dlen + 1);
	sp->locallen = llen;
	return 0;
}

/*
 * Initial processing (4.3): a multi-label name of letters, digits, '-'
 * and '_', labels of 1 to 63 octets, a top label not all digits.  The
 * name, without a trailing dot, is copied to out.
 */
static int
spf_domain_ok(const char *name, char *out)
{
	size_t	 len, i, label = 0, labels = 1, digits = 0;

	len = strlen(name);
	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len == 0 || len > DNS_NAME_MAX)
		return 0;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c == '.') {
			if (label == 0)
				return 0;
			label = digits = 0;
			labels++;
			continue;
		}
		if (!isalnum(c) && c != '-' && c != '_')
			return 0;
		if (++label > 63)
			return 0;
		if (isdigit(c))
			digits++;
	}
	if (label == 0 || labels < 2 || digits == label)
		return 0;
	memcpy(out, name, len);
	out[len] = '\0';
	return 1;
}

/*
 * check_host() for one domain: its record, parsed whole, then
 * evaluated.  The domain is the caller's and lives until we return.
 */
static int
spf_check(struct spf *sp, const char *domain)
{
	struct spf_term	*t = NULL;
	char		*rec;
	size_t		 n;
	int		 r;

	if (sp->depth >= SPF_DEPTH_MAX)
		return SPF_PERMERROR;
	if (spf_record(sp, domain, &rec, &r) == -1)
		return r;
	sp->depth++;
	if ((r = spf_parse(rec, &t, &n)) == SPF_GO)
		r = spf_eval(sp, domain, t, n);
	sp->depth--;
	free(t);
	free(rec);
	return r;
}

/*
 * The one "v=spf1" TXT record of domain (4.4, 4.5), copied to *rec
 * (NUL-terminated, printable ASCII).  0, or -1 with the result in *r.
 */
static int
spf_record(struct spf *sp, const char *domain, char **rec, int *r)
{
	struct dns_answer	*a = &sp->outer;
	const struct dns_rr	*found = NULL;
	size_t			 i;

	dns_lookup(sp->dns, domain, DNS_T_TXT, a);
	if (a->status == DNS_TEMPFAIL) {
		*r = SPF_TEMPERROR;
		return -1;
	}
	for (i = 0; a->status == DNS_NOERROR && i < a->nrr; i++) {
		if (!spf_is_v1(a->rr[i].data, a->rr[i].len))
			continue;
		if (found != NULL) {
			*r = SPF_PERMERROR;
			return -1;
		}
		found = &a->rr[i];
	}
	if (found == NULL) {
		*r = SPF_NONE;
		return -1;
	}
	for (i = 0; i < found->len; i++) {
		if (found->data[i] < 0x20 || found->data[i] > 0x7e) {
			*r = SPF_PERMERROR;
			return -1;
		}
	}
	if ((*rec = malloc(found->len + 1)) == NULL) {
		*r = SPF_TEMPERROR;
		return -1;
	}
	memcpy(*rec, found->data, found->len);
	(*rec)[found->len] = '\0';
	return 0;
}

/* "v=spf1", in any case, then a space or the end (4.5). */
static int
spf_is_v1(const uint8_t *p, size_t len)
{
	if (len < 6 || strncasecmp((const char *)p, "v=spf1", 6) != 0)
		return 0;
	return len == 6 || p[6] == ' ';
}

/*
 * The terms of rec (cut in place) into *tp, *np.  SPF_GO, or
 * SPF_PERMERROR for a syntax error anywhere, SPF_TEMPERROR when out
 * of memory.
 */
static int
spf_parse(char *rec, struct spf_term **tp, size_t *np)
{
	struct spf_term	*t;
	char		*p = rec + 6, *tok;
	size_t		 n = 0, i;
	int		 redirects = 0, exps = 0;

	*tp = NULL;
	*np = 0;
	for (i = 0; p[i] != '\0'; i++)
		if (p[i] != ' ' && (i == 0 || p[i - 1] == ' '))
			n++;
	if ((t = calloc(n + 1, sizeof(*t))) == NULL)
		return SPF_TEMPERROR;
	n = 0;
	while ((tok = strsep(&p, " ")) != NULL) {
		if (*tok == '\0')
			continue;
		if (spf_parse_term(tok, &t[n]) == -1) {
			free(t);
			return SPF_PERMERROR;
		}
		n++;
	}
	for (i = 0; i < n; i++) {
		if (t[i].kind == SPF_K_REDIRECT)
			redirects++;
		else if (t[i].kind == SPF_K_EXP)
			exps++;
	}
	if (redirects > 1 || exps > 1) {
		free(t);
		return SPF_PERMERROR;
	}
	*tp = t;
	*np = n;
	return SPF_GO;
}

/* One directive or modifier (4.6.1); 0 or -1. */
static int
spf_parse_term(char *tok, struct spf_term *t)
{
	static const char	 quals[] = "+-?~";
	static const int	 results[] = { SPF_PASS, SPF_FAIL,
				    SPF_NEUTRAL, SPF_SOFTFAIL };
	const char		*q;
	char			*p = tok, *name;
	int			 qualified = 0;

	t->result = SPF_PASS;
	if (*p != '\0' && (q = strchr(quals, *p)) != NULL) {
		t->result = results[q - quals];
		qualified = 1;
		p++;
	}
	name = p;
	if (!isalpha((unsigned char)*p))
		return -1;
	while (isalnum((unsigned char)*p) || *p == '-' || *p == '_' ||
	    *p == '.')
		p++;
	if (*p == '=') {
		if (qualified)
			return -1;
		return spf_parse_modifier(name, p - name, p + 1, t);
	}
	return spf_parse_mech(name, p - name, p, t);
}

/* A mechanism: its name (len octets) and what follows, rest. */
static int
spf_parse_mech(const char *name, size_t len, char *rest,
    struct spf_term *t)
{
	size_t	 i;
	int	 flags;

	for (i = 0; i < nitems(spf_mechs); i++)
		if (strlen(spf_mechs[i].name) == len &&
		    strncasecmp(spf_mechs[i].name, name, len) == 0)
			break;
	if (i == nitems(spf_mechs))
		return -1;
	t->kind = spf_mechs[i].kind;
	flags = spf_mechs[i].flags;
	if (t->kind == SPF_K_IP4) {
		t->cidr4 = 32;
		if (*rest != ':')
			return -1;
		return spf_parse_ip4(rest + 1, t);
	}
	if (t->kind == SPF_K_IP6) {
		t->cidr6 = 128;
		if (*rest != ':')
			return -1;
		return spf_parse_ip6(rest + 1, t);
	}
	if ((flags & SPF_F_CIDR) && spf_parse_dual(rest, &t->cidr4,
	    &t->cidr6) == -1)
		return -1;
	if (*rest == '\0')
		return (flags & SPF_F_NEEDSPEC) ? -1 : 0;
	if (*rest != ':' || !(flags & (SPF_F_SPEC | SPF_F_NEEDSPEC)))
		return -1;
	t->spec = rest + 1;
	return spf_check_spec(t->spec);
}

/* A modifier (6): redirect= and exp= take a domain-spec. */
static int
spf_parse_modifier(const char *name, size_t len, const char *value,
    struct spf_term *t)
{
	size_t	 end;

	if (len == 8 && strncasecmp(name, "redirect", 8) == 0)
		t->kind = SPF_K_REDIRECT;
	else if (len == 3 && strncasecmp(name, "exp", 3) == 0)
		t->kind = SPF_K_EXP;
	else {
		t->kind = SPF_K_UNKNOWN;
		return spf_check_macros(value, 0, &end);
	}
	t->spec = value;
	return spf_check_spec(value);
}

/*
 * A CIDR length in [p, end): "0" or digits without a leading zero, at
 * most max.  0 with it in *bits, or -1.
 */
static int
spf_parse_cidr(const char *p, const char *end, int max, int *bits)
{
	int	 v = 0;

	if (p == end || end - p > 3 || (*p == '0' && end - p > 1))
		return -1;
	for (; p < end; p++) {
		if (!isdigit((unsigned char)*p))
			return -1;
		v = v * 10 + (*p - '0');
	}
	if (v > max)
		return -1;
	*bits = v;
	return 0;
}

/*
 * A dual-cidr-length at the end of s ("/n", "//n" or "/n//m"), cut
 * off; 32 and 128 when absent.  0 or -1.
 */
static int
spf_parse_dual(char *s, int *c4, int *c6)
{
	char	*end = s + strlen(s), *p;

	*c4 = 32;
	*c6 = 128;
	for (p = end; p > s && isdigit((unsigned char)p[-1]); p--)
		;
	if (p < end && p - s >= 2 && p[-1] == '/' && p[-2] == '/') {
		if (spf_parse_cidr(p, end, 128, c6) == -1)
			return -1;
		end = p - 2;
		for (p = end; p > s && isdigit((unsigned char)p[-1]); p--)
			;
	}
	if (p < end && p - s >= 1 && p[-1] == '/') {
		if (spf_parse_cidr(p, end, 32, c4) == -1)
			return -1;
		end = p - 1;
	}
	*end = '\0';
	return 0;
}

/*
 * ip4-network [ip4-cidr-length] (5.6): four decimal octets without
 * leading zeros, then maybe "/" and a length.
 */
static int
spf_parse_ip4(const char *p, struct spf_term *t)
{
	int	 i, v, digits;

	for (i = 0; i < 4; i++) {
		if (i > 0 && *p++ != '.')
			return -1;
		for (v = 0, digits = 0; isdigit((unsigned char)*p); p++) {
			if (digits > 0 && v == 0)
				return -1;	/* a leading zero */
			v = v * 10 + (*p - '0');
			if (++digits > 3 || v > 255)
				return -1;
		}
		if (digits == 0)
			return -1;
		t->net[i] = (uint8_t)v;
	}
	if (*p == '\0')
		return 0;
	if (*p != '/')
		return -1;
	return spf_parse_cidr(p + 1, p + strlen(p), 32, &t->cidr4);
}

/* ip6-network [ip6-cidr-length] (5.6). */
static int
spf_parse_ip6(const char *p, struct spf_term *t)
{
	char		 buf[INET6_ADDRSTRLEN];
	const char	*slash;
	size_t		 len;

	slash = strchr(p, '/');
	len = slash != NULL ? (size_t)(slash - p) : strlen(p);
	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, p, len);
	buf[len] = '\0';
	if (inet_pton(AF_INET6, buf, t->net) != 1)
		return -1;
	if (slash == NULL)
		return 0;
	return spf_parse_cidr(slash + 1, slash + strlen(slash), 128,
	    &t->cidr6);
}

/*
 * A macro-string (7.1): visible characters, '%' only in "%%", "%_",
 * "%-" or "%{" letter [digits] ["r"] *delimiter "}".  In a domain-spec
 * (domain set) the exp-only letters c, r, t are an error.  0 with the
 * offset just past the last macro-expand in *end (0 if none), or -1.
 */
static int
spf_check_macros(const char *s, int domain, size_t *end)
{
	const char	*letters = domain ? "slodiphv" : "slodiphvcrt";
	const char	*p = s;
	int		 v, digits;

	*end = 0;
	while (*p != '\0') {
		if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e)
			return -1;
		if (*p++ != '%')
			continue;
		if (*p == '%' || *p == '_' || *p == '-') {
			*end = (size_t)(++p - s);
			continue;
		}
		if (*p++ != '{' || *p == '\0' ||
		    strchr(letters, tolower((unsigned char)*p)) == NULL)
			return -1;
		for (p++, v = 0, digits = 0; isdigit((unsigned char)*p); p++) {
			digits++;
			if (v < 1000)
				v = v * 10 + (*p - '0');
		}
		if (digits > 0 && v == 0)
			return -1;
		if (*p == 'r' || *p == 'R')
			p++;
		while (*p != '\0' && strchr(".-+,/_=", *p) != NULL)
			p++;
		if (*p++ != '}')
			return -1;
		*end = (size_t)(p - s);
	}
	return 0;
}

/*
 * A domain-spec (7.1): a macro-string that ends in a macro-expand or
 * in "." toplabel, maybe with a trailing dot.  0 or -1.
 */
static int
spf_check_spec(const char *s)
{
	const char	*tail;
	size_t		 end, len, i;

	if (*s == '\0' || spf_check_macros(s, 1, &end) == -1)
		return -1;
	tail = s + end;
	if ((len = strlen(tail)) == 0)
		return 0;
	if (tail[len - 1] == '.')
		len--;
	for (i = len; i > 0 && tail[i - 1] != '.'; i--)
		;
	if (i == 0)
		return -1;
	return spf_toplabel_ok(tail + i, len - i) ? 0 : -1;
}

/*
 * toplabel: letters, digits and '-', starting and ending with a letter
 * or digit, not all digits unless it has a '-'.
 */
static int
spf_toplabel_ok(const char *p, size_t len)
{
	size_t	 i;
	int	 alpha = 0, dash = 0;

	if (len == 0 || !isalnum((unsigned char)p[0]) ||
	    !isalnum((unsigned char)p[len - 1]))
		return 0;
	for (i = 0; i < len; i++) {
		if (isalpha((unsigned char)p[i]))
			alpha = 1;
		else if (p[i] == '-')
			dash = 1;
		else if (!isdigit((unsigned char)p[i]))
			return 0;
	}
	return alpha || dash;
}

/* Evaluate the terms of domain's record (4.6.2, 6.1). */
static int
spf_eval(struct spf *sp, const char *domain, const struct spf_term *t,
    size_t n)
{
	const struct spf_term	*redirect = NULL;
	size_t			 i;
	int			 r;

	for (i = 0; i < n; i++) {
		if (t[i].kind == SPF_K_REDIRECT)
			redirect = &t[i];
		if (t[i].kind >= SPF_K_REDIRECT)
			continue;
		r = spf_mech(sp, domain, &t[i]);
		if (r == SPF_MATCH)
			return t[i].result;
		if (r != SPF_GO)
			return r;
	}
	if (redirect == NULL)
		return SPF_NEUTRAL;
	return spf_redirect(sp, domain, redirect);
}

/* One mechanism: SPF_MATCH, SPF_GO, or an error result. */
static int
spf_mech(struct spf *sp, const char *domain, const struct spf_term *t)
{
	char	 target[DNS_NAME_MAX + 1];

	if ((spf_mech_flags(t->kind) & SPF_F_DNS) &&
	    ++sp->terms > SPF_TERMS_MAX)
		return SPF_PERMERROR;
	if (t->spec == NULL)
		strlcpy(target, domain, sizeof(target));
	else if (spf_expand(sp, domain, t->spec, target) == -1)
		return SPF_PERMERROR;
	switch (t->kind) {
	case SPF_K_ALL:
		return SPF_MATCH;
	case SPF_K_INCLUDE:
		return spf_include(sp, target);
	case SPF_K_A:
		return spf_hosts(sp, target, t, &sp->outer, 1);
	case SPF_K_MX:
		return spf_mx(sp, target, t);
	case SPF_K_PTR:
		return spf_ptr(sp, target);
	case SPF_K_IP4:
		if (sp->af == AF_INET && spf_net_match(sp->ip, t->net,
		    t->cidr4))
			return SPF_MATCH;
		return SPF_GO;
	case SPF_K_IP6:
		if (sp->af == AF_INET6 && spf_net_match(sp->ip, t->net,
		    t->cidr6))
			return SPF_MATCH;
		return SPF_GO;
	case SPF_K_EXISTS:
		return spf_exists(sp, target);
	}
	return SPF_PERMERROR;
}

static int
spf_mech_flags(int kind)
{
	size_t	 i;

	for (i = 0; i < nitems(spf_mechs); i++)
		if (spf_mechs[i].kind == kind)
			return spf_mechs[i].flags;
	return 0;
}

/* include (5.2): the target's pass matches, its none is a permerror. */
static int
spf_include(struct spf *sp, const char *target)
{
	switch (spf_check(sp, target)) {
	case SPF_PASS:
		return SPF_MATCH;
	case SPF_FAIL:
	case SPF_SOFTFAIL:
	case SPF_NEUTRAL:
		return SPF_GO;
	case SPF_TEMPERROR:
		return SPF_TEMPERROR;
	}
	return SPF_PERMERROR;
}

/* redirect= (6.1): the target's result, but none is a permerror. */
static int
spf_redirect(struct spf *sp, const char *domain, const struct spf_term *t)
{
	char	 target[DNS_NAME_MAX + 1];
	int	 r;

	if (++sp->terms > SPF_TERMS_MAX)
		return SPF_PERMERROR;
	if (spf_expand(sp, domain, t->spec, target) == -1)
		return SPF_PERMERROR;
	r = spf_check(sp, target);
	return r == SPF_NONE ? SPF_PERMERROR : r;
}

/*
 * Whether one of name's addresses, in a, is in the client's network
 * (a, and each host of mx: 5.3, 5.4).  A void answer counts when
 * countvoid is set.
 */
static int
spf_hosts(struct spf *sp, const char *name, const struct spf_term *t,
    struct dns_answer *a, int countvoid)
{
	size_t	 i, alen = sp->af == AF_INET ? 4 : 16;
	int	 bits = sp->af == AF_INET ? t->cidr4 : t->cidr6;

	dns_lookup(sp->dns, name, sp->af == AF_INET ? DNS_T_A : DNS_T_AAAA,
	    a);
	if (a->status == DNS_TEMPFAIL)
		return SPF_TEMPERROR;
	if (a->nrr == 0)
		return countvoid ? spf_void(sp) : SPF_GO;
	for (i = 0; i < a->nrr; i++)
		if (a->rr[i].len == alen &&
		    spf_net_match(sp->ip, a->rr[i].data, bits))
			return SPF_MATCH;
	return SPF_GO;
}

/* mx (5.4): the addresses of at most SPF_MX_MAX hosts. */
static int
spf_mx(struct spf *sp, const char *target, const struct spf_term *t)
{
	struct dns_answer	*a = &sp->outer;
	char			 host[DNS_NAME_MAX + 1];
	size_t			 i;
	int			 r;

	dns_lookup(sp->dns, target, DNS_T_MX, a);
	if (a->status == DNS_TEMPFAIL)
		return SPF_TEMPERROR;
	if (a->nrr == 0)
		return spf_void(sp);
	if (a->nrr > SPF_MX_MAX)
		return SPF_PERMERROR;
	for (i = 0; i < a->nrr; i++) {
		spf_rr_name(&a->rr[i], host);
		r = spf_hosts(sp, host, t, &sp->inner, 0);
		if (r != SPF_GO)
			return r;
	}
	return SPF_GO;
}

/* ptr (5.5): a validated name of the client at or under target. */
static int
spf_ptr(struct spf *sp, const char *target)
{
	size_t	 i;

	spf_ptr_load(sp);
	if (sp->ptr.status == DNS_TEMPFAIL)
		return SPF_GO;
	if (sp->ptr.status == DNS_NXDOMAIN || sp->ptr.n == 0)
		return spf_void(sp);
	for (i = 0; i < sp->ptr.n; i++)
		if (spf_name_under(sp->ptr.name[i], target, 0) &&
		    spf_ptr_valid(sp, i))
			return SPF_MATCH;
	return SPF_GO;
}

/* exists (5.7): any A record, whatever the client's family. */
static int
spf_exists(struct spf *sp, const char *target)
{
	struct dns_answer	*a = &sp->outer;

	dns_lookup(sp->dns, target, DNS_T_A, a);
	if (a->status == DNS_TEMPFAIL)
		return SPF_TEMPERROR;
	if (a->nrr == 0)
		return spf_void(sp);
	return SPF_MATCH;
}

/* One more void lookup (4.6.4): the third is a permerror. */
static int
spf_void(struct spf *sp)
{
	if (++sp->voids > SPF_VOID_MAX)
		return SPF_PERMERROR;
	return SPF_GO;
}

/* Whether the first bits bits of a and b are the same. */
static int
spf_net_match(const uint8_t *a, const uint8_t *b, int bits)
{
	int	 full = bits / 8, rest = bits % 8;
	uint8_t	 mask;

	if (memcmp(a, b, full) != 0)
		return 0;
	if (rest == 0)
		return 1;
	mask = (uint8_t)(0xff << (8 - rest));
	return (a[full] & mask) == (b[full] & mask);
}

/* The client's PTR names, the first SPF_PTR_MAX, asked once. */
static void
spf_ptr_load(struct spf *sp)
{
	struct dns_answer	*a = &sp->outer;
	char			 q[DNS_NAME_MAX + 1];
	size_t			 i, len;

	if (sp->ptr.asked)
		return;
	sp->ptr.asked = 1;
	len = spf_ip_text(sp, 1, q, sizeof(q));
	strlcpy(q + len, sp->af == AF_INET ? ".in-addr.arpa" : ".ip6.arpa",
	    sizeof(q) - len);
	dns_lookup(sp->dns, q, DNS_T_PTR, a);
	sp->ptr.status = a->status;
	for (i = 0; i < a->nrr && sp->ptr.n < SPF_PTR_MAX; i++)
		spf_rr_name(&a->rr[i], sp->ptr.name[sp->ptr.n++]);
}

/* Whether name i has an address that is the client's (5.5). */
static int
spf_ptr_valid(struct spf *sp, size_t i)
{
	struct dns_answer	*a = &sp->inner;
	size_t			 j, alen = sp->af == AF_INET ? 4 : 16;

	if (sp->ptr.valid[i] != 0)
		return sp->ptr.valid[i] == 1;
	sp->ptr.valid[i] = -1;
	dns_lookup(sp->dns, sp->ptr.name[i],
	    sp->af == AF_INET ? DNS_T_A : DNS_T_AAAA, a);
	for (j = 0; j < a->nrr; j++)
		if (a->rr[j].len == alen &&
		    memcmp(a->rr[j].data, sp->ip, alen) == 0)
			sp->ptr.valid[i] = 1;
	return sp->ptr.valid[i] == 1;
}

/*
 * %{p} (7.3): domain if it is a validated name of the client, else a
 * validated subdomain, else any validated name, else "unknown".
 */
static const char *
spf_ptr_name(struct spf *sp, const char *domain)
{
	size_t	 i;
	int	 pass;

	spf_ptr_load(sp);
	for (pass = 0; pass < 3; pass++) {
		for (i = 0; i < sp->ptr.n; i++) {
			if (pass == 0 && strcasecmp(sp->ptr.name[i],
			    domain) != 0)
				continue;
			if (pass == 1 && !spf_name_under(sp->ptr.name[i],
			    domain, 1))
				continue;
			if (spf_ptr_valid(sp, i))
				return sp->ptr.name[i];
		}
	}
	return "unknown";
}

/*
 * Whether name is domain or ends in "." domain (only the latter if
 * strict), in any case.
 */
static int
spf_name_under(const char *name, const char *domain, int strict)
{
	size_t	 nlen = strlen(name), dlen = strlen(domain);

	if (dlen == 0)
		return 0;
	if (nlen == dlen)
		return !strict && strcasecmp(name, domain) == 0;
	return nlen > dlen && name[nlen - dlen - 1] == '.' &&
	    strcasecmp(name + nlen - dlen, domain) == 0;
}

/*
 * A name from an MX or PTR record, NUL-terminated in out (DNS_NAME_MAX
 * + 1), without a trailing dot.  One that cannot be a name is empty
 * (dns_lookup answers NXDOMAIN for it).
 */
static void
spf_rr_name(const struct dns_rr *rr, char *out)
{
	size_t	 len = rr->len;

	out[0] = '\0';
	if (len > 0 && rr->data[len - 1] == '.')
		len--;
	if (len > DNS_NAME_MAX || memchr(rr->data, '\0', len) != NULL)
		return;
	memcpy(out, rr->data, len);
	out[len] = '\0';
}

/*
 * The client's address for %{i} (7.3): dotted decimal, or 32 dotted
 * nibbles; reversed for the PTR query.  Returns its length.
 */
static size_t
spf_ip_text(const struct spf *sp, int reverse, char *out, size_t outsz)
{
	static const char	 hex[] = "0123456789abcdef";
	size_t			 i, len = 0;
	int			 k, n;

	if (sp->af == AF_INET) {
		for (i = 0; i < 4; i++) {
			k = reverse ? 3 - (int)i : (int)i;
			n = snprintf(out + len, outsz - len, "%s%u",
			    i ? "." : "", sp->ip[k]);
			if (n < 0 || (size_t)n >= outsz - len)
				return len;
			len += (size_t)n;
		}
		return len;
	}
	if (outsz < 64)
		return 0;
	for (i = 0; i < 32; i++) {
		k = reverse ? 31 - (int)i : (int)i;
		if (i > 0)
			out[len++] = '.';
		out[len++] = hex[(sp->ip[k / 2] >> (k % 2 ? 0 : 4)) & 0xf];
	}
	out[len] = '\0';
	return len;
}

/*
 * Expand the domain-spec spec for current domain into out (DNS_NAME_MAX
 * + 1), fitted to a name (7.3).  0, or -1 on a syntax error.
 */
static int
spf_expand(struct spf *sp, const char *domain, const char *spec, char *out)
{
	const char	*p = spec;

	sp->winlen = 0;
	while (*p != '\0') {
		if (*p != '%') {
			spf_put(sp, *p++, 0);
			continue;
		}
		switch (*++p) {
		case '%':
			spf_put(sp, '%', 0);
			p++;
			break;
		case '_':
			spf_put(sp, ' ', 0);
			p++;
			break;
		case '-':
			spf_put(sp, '%', 0);
			spf_put(sp, '2', 0);
			spf_put(sp, '0', 0);
			p++;
			break;
		case '{':
			if ((p = spf_macro(sp, domain, p + 1)) == NULL)
				return -1;
			break;
		default:
			return -1;
		}
	}
	spf_fit(sp, out);
	return 0;
}

/*
 * One "%{...}" from just past the brace: its value transformed and
 * put in the window.  Returns where it ends, or NULL.
 */
static const char *
spf_macro(struct spf *sp, const char *domain, const char *p)
{
	char		 ipbuf[64], delims[8];
	const char	*v;
	size_t		 vlen, n = 0, nd = 0;
	int		 letter, reverse = 0, digits = 0;

	if (*p == '\0')
		return NULL;
	letter = (unsigned char)*p++;
	for (; isdigit((unsigned char)*p); p++, digits++)
		if (n < 1000)
			n = n * 10 + (size_t)(*p - '0');
	if (digits > 0 && n == 0)
		return NULL;
	if (*p == 'r' || *p == 'R') {
		reverse = 1;
		p++;
	}
	for (; *p != '\0' && strchr(".-+,/_=", *p) != NULL; p++)
		if (nd < sizeof(delims) - 1)
			delims[nd++] = *p;
	if (*p++ != '}')
		return NULL;
	if (nd == 0)
		delims[nd++] = '.';
	delims[nd] = '\0';
	switch (tolower(letter)) {
	case 's':
		v = sp->sender;
		break;
	case 'l':
		v = sp->sender;
		break;
	case 'o':
		v = sp->sender + sp->locallen + 1;
		break;
	case 'd':
		v = domain;
		break;
	case 'i':
		spf_ip_text(sp, 0, ipbuf, sizeof(ipbuf));
		v = ipbuf;
		break;
	case 'p':
		v = spf_ptr_name(sp, domain);
		break;
	case 'v':
		v = sp->af == AF_INET ? "in-addr" : "ip6";
		break;
	case 'h':
		v = sp->helo;
		break;
	default:
		return NULL;
	}
	vlen = tolower(letter) == 'l' ? sp->locallen : strlen(v);
	spf_macro_emit(sp, v, vlen, delims, n, reverse,
	    isupper(letter) != 0);
	return p;
}

/*
 * The transformers (7.3): v split on delims, maybe reversed, the
 * rightmost n parts (all if n is 0 or more than there are) joined with
 * dots; URL-escaped if esc.
 */
static void
spf_macro_emit(struct spf *sp, const char *v, size_t len,
    const char *delims, size_t n, int reverse, int esc)
{
	size_t	 i, parts = 1, start, end, k;

	for (i = 0; i < len; i++)
		if (spf_is_delim(v[i], delims))
			parts++;
	if (n == 0 || n > parts)
		n = parts;
	if (!reverse) {
		/* the last n parts, from the start of part parts - n */
		for (start = 0, k = 0; k < parts - n; start++)
			if (spf_is_delim(v[start], delims))
				k++;
		for (i = start; i < len; i++)
			spf_put(sp, spf_is_delim(v[i], delims) ? '.' :
			    v[i], esc);
		return;
	}
	/* the first n parts, last first */
	for (end = 0, k = 0; end < len; end++)
		if (spf_is_delim(v[end], delims) && ++k == n)
			break;
	for (;;) {
		for (start = end; start > 0 &&
		    !spf_is_delim(v[start - 1], delims); start--)
			;
		for (i = start; i < end; i++)
			spf_put(sp, v[i], esc);
		if (start == 0)
			break;
		spf_put(sp, '.', 0);
		end = start - 1;
	}
}

static int
spf_is_delim(int c, const char *delims)
{
	return c != '\0' && strchr(delims, c) != NULL;
}

/*
 * One character into the expansion window, URL-escaped (7.3) if esc.
 * A full window keeps its last SPF_KEEP octets: a name is cut to 253
 * from the left anyway.
 */
static void
spf_put(struct spf *sp, int c, int esc)
{
	static const char	 hex[] = "0123456789ABCDEF";
	unsigned char		 u = (unsigned char)c;

	if (esc && !isalnum(u) && u != '-' && u != '.' && u != '_' &&
	    u != '~') {
		spf_put(sp, '%', 0);
		spf_put(sp, hex[u >> 4], 0);
		spf_put(sp, hex[u & 0xf], 0);
		return;
	}
	if (sp->winlen == sizeof(sp->win)) {
		memmove(sp->win, sp->win + sizeof(sp->win) - SPF_KEEP,
		    SPF_KEEP);
		sp->winlen = SPF_KEEP;
	}
	sp->win[sp->winlen++] = (char)u;
}

/*
 * The expanded name into out: no trailing dot, labels cut from the
 * left until it has at most DNS_NAME_MAX octets (7.3); empty if none
 * fits.
 */
static void
spf_fit(struct spf *sp, char *out)
{
	const char	*p = sp->win, *dot;
	size_t		 len = sp->winlen;

	if (len > 0 && p[len - 1] == '.')
		len--;
	while (len > DNS_NAME_MAX) {
		if ((dot = memchr(p, '.', len)) == NULL) {
			len = 0;
			break;
		}
		len -= (size_t)(dot + 1 - p);
		p = dot + 1;
	}
	memcpy(out, p, len);
	out[len] = '\0';
}
