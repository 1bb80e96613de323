/*
 * DMARC (RFC 9989; RFC 7489 records read the same way): the policy
 * record's grammar, the organisational domain by DNS tree walk (no
 * public suffix list), policy discovery, and identifier alignment of
 * the SPF and DKIM domains with the From domain.
 *
 * Everything is bounded: one tree walk asks at most DMARC_WALK_MAX
 * questions (RFC 9989 4.10), and the _dmarc answers of one check are
 * kept in a small cache, so a walk that meets names already asked
 * (the From domain's parents, the same d= twice) asks nothing again.
 * dns_lookup() adds the message's own budget on top.
 *
 * Choices where the RFCs leave room:
 * - Records: "v=DMARC1" must come first (the tag name in either case,
 *   the value exactly DMARC1); leading and trailing spaces or tabs are
 *   allowed.  Tag names and the values of p, sp, np, adkim, aspf and
 *   psd are read without regard to case (ABNF strings).  After the
 *   version, a malformed tag and an unknown tag are ignored (RFC 9989
 *   4.8: syntax errors in the remainder are discarded in favour of the
 *   defaults); a known tag given twice makes the record none at all,
 *   as a DKIM tag list (RFC 6376 3.2, whose syntax DMARC records
 *   share): no reader may pick another copy than ours.  A malformed
 *   adkim, aspf or psd gives its default (r, r, u).
 * - p: a record without p is read as p=none (RFC 9989 4.7).  A p, sp
 *   or np that is present but not none/quarantine/reject follows RFC
 *   9989 4.10.1: with at least one well-formed rua URI the record acts
 *   as p=none (sp and np none too); without one the record is still a
 *   DMARC record (it stops policy discovery and counts in the tree
 *   walk) but no DMARC processing applies: dmarc_record_parse() returns
 *   0 with p, sp and np DMARC_P_UNSET, and dmarc_check() reports
 *   permerror ("a syntactically incorrect DMARC record", RFC 7489
 *   11.2, RFC 9989 9.2).  A rua URI is well formed when it has a
 *   scheme, a colon and URI characters after it, with an optional
 *   obsolete "!size" suffix.
 * - t, fo, ruf and the rest of the reporting tags are not used (no
 *   reports are sent, t is not carried in the output); pct, removed by
 *   RFC 9989, is an unknown tag.
 * - Defaults are filled in by the parser: sp from p, np from sp.
 * - Two or more DMARC records at one name are no record there (RFC
 *   9989 4.10 step 2); TXT records that do not start with v=DMARC1 are
 *   not counted.
 * - Tree walk (RFC 9989 4.10): the start name, then one label less, or
 *   straight to the 7 rightmost labels when the start has 8 or more,
 *   then one label less each time, stopping at a single record with
 *   psd=y or psd=n: at most 8 questions.  Policy discovery is the same
 *   walk from the From domain: its own record if it has one (p),
 *   otherwise the record of its organisational domain or, when that
 *   has none, of its public suffix domain (sp, or np when an A query
 *   for the From domain answers NXDOMAIN).  The A query is asked only
 *   when np and sp differ.
 * - DNS failures: a failed question before the walk has ended leaves
 *   the record or organisational domain open; that is temperror when
 *   it decides the result (no record known, or a passing identifier
 *   whose relaxed alignment depends on it; a pass found otherwise
 *   stands).  A failed A query is temperror when np and sp differ and
 *   the message does not pass.
 * - Alignment: names are compared without regard to case, with one
 *   trailing dot dropped.  An identifier can only share the From
 *   domain's organisational domain if that is a suffix of it, so only
 *   such identifiers are walked.  Without a record, alignment is
 *   reported as relaxed.  Names that no resolver would take (8-bit
 *   octets: the caller hands the From domain over in its A-label form
 *   (alabel.c), so such a name is one without that form; empty labels,
 *   over 253 octets) and domain literals ("[192.0.2.1]", anything with
 *   "[" or "]") are never asked about: such a From domain gives none
 *   without a question and aligns with nothing, such an identifier
 *   never aligns.
 * - The result is DMARC_NONE without a record, DMARC_PASS with an
 *   aligned SPF or DKIM pass, DMARC_FAIL otherwise; org_domain is the
 *   From domain when its walk could not finish.
 */

#include <sys/types.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd.h"

#ifndef nitems
#define nitems(a)	(sizeof(a) / sizeof((a)[0]))
#endif

#define DMARC_PREFIX		"_dmarc."
#define DMARC_QNAME_MAX		(sizeof(DMARC_PREFIX) - 1 + DNS_NAME_MAX + 1)

enum dmarc_found {
	DMARC_F_NONE = 0,	/* no record, NXDOMAIN, or two records */
	DMARC_F_ONE,		/* one DMARC record */
	DMARC_F_TEMP,		/* the question failed */
};

/* One _dmarc name asked, and what it holds. */
struct dmarc_cached {
	char			 name[DNS_NAME_MAX + 1];
	int			 found;		/* enum dmarc_found */
	struct dmarc_record	 rec;
};

/* The state of one check: the DNS, one answer buffer, the cache. */
struct dmarc_ctx {
	struct dns_ctx		*dns;
	struct dns_answer	 ans;
	struct dmarc_cached	 cache[DMARC_CACHE_MAX];
	size_t			 ncache;
};

/*
 * One tree walk: the records found, from the longest name to the
 * shortest, each a suffix of the start name.
 */
struct dmarc_walk {
	const char		*start;
	int			 temp;		/* a question failed */
	size_t			 nfound;
	const char		*name[DMARC_WALK_MAX];
	struct dmarc_record	 rec[DMARC_WALK_MAX];
};

static int	dmarc_wsp(int);
static int	dmarc_alpha(int);
static int	dmarc_lower(int);
static int	dmarc_is(const char *, size_t, const char *);
static int	dmarc_tag_policy(const char *, size_t);
static int	dmarc_uri_list(const char *, size_t);
static int	dmarc_name(const char *, char *, size_t);
static size_t	dmarc_labels(const char *);
static const char *dmarc_parent(const char *, size_t);
static int	dmarc_suffix(const char *, const char *);
static int	dmarc_fetch(struct dmarc_ctx *, const char *,
		    struct dmarc_record *);
static void	dmarc_walk(struct dmarc_ctx *, const char *,
		    struct dmarc_walk *);
static const char *dmarc_walk_org(const struct dmarc_walk *, char *,
		    size_t);
static int	dmarc_org(struct dmarc_ctx *, const char *, char *, size_t);
static int	dmarc_qname(const char *, char *, size_t);
static struct dmarc_ctx *dmarc_ctx_new(struct dns_ctx *);
static int	dmarc_align(struct dmarc_ctx *, const char *, const char *,
		    const char *, int);

const char *
dmarc_result_name(int r)
{
	static const char *const names[] = { "none", "pass", "fail",
	    "temperror", "permerror" };

	if (r < 0 || r > DMARC_PERMERROR)
		return "permerror";
	return names[r];
}

const char *
dmarc_policy_name(int p)
{
	static const char *const names[] = { "", "none", "quarantine",
	    "reject" };

	if (p < 0 || p > DMARC_P_REJECT)
		return "";
	return names[p];
}

static int
dmarc_wsp(int c)
{
	return c == ' ' || c == '\t';
}

static int
dmarc_alpha(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int
dmarc_lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/* Whether [s, s + len) is word, without regard to case. */
static int
dmarc_is(const char *s, size_t len, const char *word)
{
	size_t	 i;

	if (strlen(word) != len)
		return 0;
	for (i = 0; i < len; i++)
		if (dmarc_lower((unsigned char)s[i]) != word[i])
			return 0;
	return 1;
}

/* dmarc-request: a policy, or -1. */
static int
dmarc_tag_policy(const char *v, size_t len)
{
	if (dmarc_is(v, len, "none"))
		return DMARC_P_NONE;
	if (dmarc_is(v, len, "quarantine"))
		return DMARC_P_QUARANTINE;
	if (dmarc_is(v, len, "reject"))
		return DMARC_P_REJECT;
	return -1;
}

/*
 * Whether a rua value holds at least one well-formed URI: scheme ":"
 * then URI characters (RFC 3986, without "," and "!"), an optional
 * obsolete "!" 1*DIGIT [k/m/g/t], elements separated by *WSP "," *WSP.
 */
static int
dmarc_uri_list(const char *v, size_t len)
{
	static const char	 uric[] = "-._~:/?#[]@$&'()*+=%";
	size_t			 i = 0, s;
	int			 ok, good = 0;

	while (i <= len) {
		ok = 1;
		while (i < len && dmarc_wsp(v[i]))
			i++;
		s = i;
		if (i < len && dmarc_alpha((unsigned char)v[i]))
			i++;
		else
			ok = 0;
		while (ok && i < len && (dmarc_alpha((unsigned char)v[i]) ||
		    (v[i] >= '0' && v[i] <= '9') || v[i] == '+' ||
		    v[i] == '-' || v[i] == '.'))
			i++;
		if (ok && (i >= len || v[i] != ':'))
			ok = 0;
		if (ok) {
			i++;
			s = i;
			while (i < len && (dmarc_alpha((unsigned char)v[i]) ||
			    (v[i] >= '0' && v[i] <= '9') ||
			    (v[i] != '\0' && strchr(uric, v[i]) != NULL)))
				i++;
			if (i == s)
				ok = 0;
		}
		if (ok && i < len && v[i] == '!') {
			s = ++i;
			while (i < len && v[i] >= '0' && v[i] <= '9')
				i++;
			if (i == s)
				ok = 0;
			else if (i < len && strchr("kmgt", v[i]) != NULL &&
			    v[i] != '\0')
				i++;
		}
		while (i < len && dmarc_wsp(v[i]))
			i++;
		if (ok && (i == len || v[i] == ','))
			good = 1;
		/* on to the next element */
		while (i < len && v[i] != ',')
			i++;
		i++;
	}
	return good;
}

/*
 * Parse a DMARC record (TXT strings concatenated, len octets, no NUL
 * needed).  0 when it is one, -1 when it is not.  See the file header
 * for the choices; p == DMARC_P_UNSET after 0 means a record with an
 * invalid policy and no rua: a DMARC record, but not one to apply.
 */
int
dmarc_record_parse(const char *txt, size_t len, struct dmarc_record *r)
{
	enum { T_P = 1, T_SP = 2, T_NP = 4, T_ADKIM = 8, T_ASPF = 16,
	    T_PSD = 32, T_RUA = 64 };
	static const struct {
		const char	*name;
		unsigned int	 bit;
	} tags[] = { { "p", T_P }, { "sp", T_SP }, { "np", T_NP },
	    { "adkim", T_ADKIM }, { "aspf", T_ASPF }, { "psd", T_PSD },
	    { "rua", T_RUA } };
	size_t		 i = 0, s, e, ns, ne, vs, t;
	unsigned int	 seen = 0, bit;
	int		 bad = 0, rua = 0, pol;

	memset(r, 0, sizeof(*r));
	r->psd = -1;

	/* dmarc-version = "v" equals %s"DMARC1", then dmarc-sep or end */
	while (i < len && dmarc_wsp(txt[i]))
		i++;
	if (i >= len || (txt[i] != 'v' && txt[i] != 'V'))
		return -1;
	for (i++; i < len && dmarc_wsp(txt[i]); i++)
		;
	if (i >= len || txt[i] != '=')
		return -1;
	for (i++; i < len && dmarc_wsp(txt[i]); i++)
		;
	if (len - i < 6 || memcmp(txt + i, "DMARC1", 6) != 0)
		return -1;
	for (i += 6; i < len && dmarc_wsp(txt[i]); i++)
		;
	if (i < len && txt[i] != ';')
		return -1;

	/* dmarc-tag, each between semicolons */
	while (i < len) {
		s = ++i;			/* past ';' */
		while (i < len && txt[i] != ';')
			i++;
		e = i;
		while (s < e && dmarc_wsp(txt[s]))
			s++;
		while (e > s && dmarc_wsp(txt[e - 1]))
			e--;
		ns = s;
		while (s < e && dmarc_alpha((unsigned char)txt[s]))
			s++;
		ne = s;
		while (s < e && dmarc_wsp(txt[s]))
			s++;
		if (ne == ns || s >= e || txt[s] != '=')
			continue;		/* not a tag: ignored */
		for (s++; s < e && dmarc_wsp(txt[s]); s++)
			;
		if (s == e)
			continue;		/* no value */
		for (vs = s; s < e; s++)
			if ((unsigned char)txt[s] < 0x20 ||
			    (unsigned char)txt[s] > 0x7e)
				break;
		if (s < e)
			continue;		/* not dmarc-value */
		s = vs;

		for (bit = 0, t = 0; t < nitems(tags); t++)
			if (dmarc_is(txt + ns, ne - ns, tags[t].name))
				bit = tags[t].bit;
		if (bit == 0)
			continue;		/* unknown: ignored */
		if (seen & bit)
			return -1;		/* repeated: not a record */
		seen |= bit;

		switch (bit) {
		case T_P:
		case T_SP:
		case T_NP:
			if ((pol = dmarc_tag_policy(txt + s, e - s)) == -1) {
				bad = 1;
				break;
			}
			if (bit == T_P)
				r->p = pol;
			else if (bit == T_SP)
				r->sp = pol;
			else
				r->np = pol;
			break;
		case T_ADKIM:
		case T_ASPF:
			if (dmarc_is(txt + s, e - s, "s")) {
				if (bit == T_ADKIM)
					r->adkim_strict = 1;
				else
					r->aspf_strict = 1;
			}
			break;
		case T_PSD:
			if (dmarc_is(txt + s, e - s, "y"))
				r->psd = 1;
			else if (dmarc_is(txt + s, e - s, "n"))
				r->psd = 0;
			break;
		case T_RUA:
			rua = dmarc_uri_list(txt + s, e - s);
			break;
		}
	}

	if (bad) {
		/* RFC 9989 4.10.1 */
		pol = rua ? DMARC_P_NONE : DMARC_P_UNSET;
		r->p = r->sp = r->np = pol;
		return 0;
	}
	if (r->p == DMARC_P_UNSET)
		r->p = DMARC_P_NONE;
	if (r->sp == DMARC_P_UNSET)
		r->sp = r->p;
	if (r->np == DMARC_P_UNSET)
		r->np = r->sp;
	return 0;
}

/*
 * A domain as DMARC compares it: lower case, one trailing dot dropped.
 * The copy is made whatever the name (truncated to fit, never inside a
 * UTF-8 sequence); 0 when it is a name a resolver would take (printable
 * ASCII but backslash and the brackets of a domain literal, labels of
 * 1 to 63 octets, at most DNS_NAME_MAX), -1 otherwise.
 */
static int
dmarc_name(const char *in, char *out, size_t outsz)
{
	size_t	 len, i, label = 0;
	int	 ok = 1;

	len = strlen(in);
	if (len > 0 && in[len - 1] == '.')
		len--;
	if (len == 0 || len > DNS_NAME_MAX)
		ok = 0;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c <= 0x20 || c >= 0x7f || c == '\\' || c == '[' ||
		    c == ']')
			ok = 0;
		if (c == '.') {
			if (label == 0)
				ok = 0;
			label = 0;
		} else if (++label > 63)
			ok = 0;
	}
	if (outsz > 0) {
		if (len >= outsz) {
			len = outsz - 1;
			while (len > 0 && ((unsigned char)in[len] & 0xc0) ==
			    0x80)
				len--;		/* not inside a sequence */
			ok = 0;
		}
		for (i = 0; i < len; i++)
			out[i] = (char)dmarc_lower((unsigned char)in[i]);
		out[len] = '\0';
	} else
		ok = 0;
	return ok ? 0 : -1;
}

static size_t
dmarc_labels(const char *name)
{
	size_t	 n = 1;

	for (; *name != '\0'; name++)
		if (*name == '.')
			n++;
	return n;
}

/* The suffix of name with n labels fewer (n < its labels). */
static const char *
dmarc_parent(const char *name, size_t n)
{
	while (n-- > 0) {
		name = strchr(name, '.');
		if (name == NULL)
			return NULL;
		name++;
	}
	return name;
}

/* Whether name is suffix or ends in "." suffix. */
static int
dmarc_suffix(const char *name, const char *suffix)
{
	size_t	 n = strlen(name), s = strlen(suffix);

	if (n == s)
		return strcmp(name, suffix) == 0;
	return n > s && name[n - s - 1] == '.' &&
	    strcmp(name + n - s, suffix) == 0;
}

/* The name of domain's DMARC record (q: DMARC_QNAME_MAX).  0, or -1. */
static int
dmarc_qname(const char *domain, char *q, size_t qsz)
{
	return (size_t)snprintf(q, qsz, "%s%s", DMARC_PREFIX, domain) >= qsz ?
	    -1 : 0;
}

/*
 * The first question dmarc_check() asks about a From domain, so that
 * it may be asked ahead (dns_ahead()): the TXT record of the domain as
 * DMARC compares it.  0, or -1 when it would ask none.
 */
int
dmarc_first_question(const char *from_domain, char *q, size_t qsz)
{
	char	 d[DNS_NAME_MAX + 1];

	if (dmarc_name(from_domain, d, sizeof(d)) == -1)
		return -1;
	return dmarc_qname(d, q, qsz);
}

/*
 * The DMARC record at _dmarc.<domain>: DMARC_F_ONE and *rec, or
 * DMARC_F_NONE, or DMARC_F_TEMP.  Answers are kept for the check.
 */
static int
dmarc_fetch(struct dmarc_ctx *c, const char *domain, struct dmarc_record *rec)
{
	struct dmarc_record	 r;
	char			 q[DMARC_QNAME_MAX];
	size_t			 i, n = 0;
	int			 found;

	for (i = 0; i < c->ncache; i++)
		if (strcmp(c->cache[i].name, domain) == 0) {
			*rec = c->cache[i].rec;
			return c->cache[i].found;
		}

	memset(rec, 0, sizeof(*rec));
	found = DMARC_F_NONE;
	if (dmarc_qname(domain, q, sizeof(q)) == -1)
		found = DMARC_F_NONE;	/* too long to exist */
	else {
		dns_lookup(c->dns, q, DNS_T_TXT, &c->ans);
		if (c->ans.status == DNS_TEMPFAIL)
			found = DMARC_F_TEMP;
		else if (c->ans.status == DNS_NOERROR) {
			for (i = 0; i < c->ans.nrr && i < DNS_RR_MAX; i++) {
				if (dmarc_record_parse((const char *)
				    c->ans.rr[i].data, c->ans.rr[i].len,
				    &r) == 0) {
					if (n++ == 0)
						*rec = r;
				}
			}
			if (n == 1)
				found = DMARC_F_ONE;
			else
				memset(rec, 0, sizeof(*rec));
		}
	}

	if (c->ncache < DMARC_CACHE_MAX &&
	    strlcpy(c->cache[c->ncache].name, domain,
	    sizeof(c->cache[0].name)) < sizeof(c->cache[0].name)) {
		c->cache[c->ncache].found = found;
		c->cache[c->ncache].rec = *rec;
		c->ncache++;
	}
	return found;
}

/*
 * The DNS tree walk of RFC 9989 4.10 from start (a valid, normalised
 * name): start, then its parent or, when start has 8 labels or more,
 * its 7 rightmost labels, then one label less each time; a single
 * record with psd=y or psd=n stops it.  At most DMARC_WALK_MAX
 * questions; a failed one ends the walk with w->temp set.
 */
static void
dmarc_walk(struct dmarc_ctx *c, const char *start, struct dmarc_walk *w)
{
	struct dmarc_record	 rec;
	const char		*name = start;
	size_t			 q, x;
	int			 found;

	memset(w, 0, sizeof(*w));
	w->start = start;
	for (q = 0; q < DMARC_WALK_MAX; q++) {
		found = dmarc_fetch(c, name, &rec);
		if (found == DMARC_F_TEMP) {
			w->temp = 1;
			return;
		}
		if (found == DMARC_F_ONE) {
			w->name[w->nfound] = name;
			w->rec[w->nfound++] = rec;
			if (rec.psd != -1)
				return;
		}
		if ((x = dmarc_labels(name)) <= 1)
			return;
		if (q == 0 && x >= 8)
			name = dmarc_parent(name, x - 7);
		else
			name = dmarc_parent(name, 1);
		if (name == NULL)
			return;
	}
}

/*
 * The organisational domain a finished walk gives (RFC 9989 4.10.2),
 * into buf; the walk's records are longest first, and only the last
 * can hold psd=y or psd=n, since either stops the walk.
 */
static const char *
dmarc_walk_org(const struct dmarc_walk *w, char *buf, size_t bufsz)
{
	const char		*last;
	const struct dmarc_record *r;
	size_t			 n;

	if (w->nfound == 0)
		last = w->start;
	else {
		last = w->name[w->nfound - 1];
		r = &w->rec[w->nfound - 1];
		if (r->psd == 1 && last != w->start) {
			/* one label below the public suffix domain */
			n = dmarc_labels(w->start) - dmarc_labels(last) - 1;
			last = dmarc_parent(w->start, n);
		}
	}
	if (last == NULL || strlcpy(buf, last, bufsz) >= bufsz)
		return NULL;
	return buf;
}

/* The organisational domain of a valid, normalised name; -1 unknown. */
static int
dmarc_org(struct dmarc_ctx *c, const char *domain, char *org, size_t orglen)
{
	struct dmarc_walk	 w;

	dmarc_walk(c, domain, &w);
	if (w.temp || dmarc_walk_org(&w, org, orglen) == NULL)
		return -1;
	return 0;
}

static struct dmarc_ctx *
dmarc_ctx_new(struct dns_ctx *dns)
{
	struct dmarc_ctx	*c;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	c->dns = dns;
	return c;
}

int
dmarc_org_domain(struct dns_ctx *dns, const char *domain, char *org,
    size_t orglen)
{
	struct dmarc_ctx	*c;
	char			 d[DNS_NAME_MAX + 1], o[DNS_NAME_MAX + 1];
	int			 rv;

	if (orglen == 0)
		return -1;
	if (dmarc_name(domain, d, sizeof(d)) == -1) {
		/* not a name to ask about: its own */
		strlcpy(org, d, orglen);
		return 0;
	}
	if ((c = dmarc_ctx_new(dns)) == NULL) {
		strlcpy(org, d, orglen);
		return -1;
	}
	rv = dmarc_org(c, d, o, sizeof(o));
	free(c);
	if (strlcpy(org, rv == 0 ? o : d, orglen) >= orglen)
		return -1;
	return rv;
}

/*
 * Whether identifier id aligns with the From domain from (valid,
 * normalised), whose organisational domain is from_org (NULL when its
 * walk failed): 1 yes, 0 no, -1 unknown (a DNS failure).
 */
static int
dmarc_align(struct dmarc_ctx *c, const char *from, const char *from_org,
    const char *id, int strict)
{
	char	 d[DNS_NAME_MAX + 1], org[DNS_NAME_MAX + 1];
	int	 valid;

	if (id == NULL)
		return 0;
	valid = dmarc_name(id, d, sizeof(d)) == 0;
	if (strcmp(d, from) == 0)
		return valid;
	if (strict || !valid)
		return 0;
	if (from_org == NULL)
		return -1;
	if (!dmarc_suffix(d, from_org))
		return 0;
	if (dmarc_org(c, d, org, sizeof(org)) == -1)
		return -1;
	return strcmp(org, from_org) == 0;
}

int
dmarc_check(struct dns_ctx *dns, const struct dmarc_input *in,
    struct dmarc_output *out)
{
	struct dmarc_ctx	*c = NULL;
	struct dmarc_walk	 w;
	const struct dmarc_record *rec = NULL;
	const char		*from_org = NULL;
	char			 org[DNS_NAME_MAX + 1];
	size_t			 i, ndkim;
	int			 valid, a, spf_al = 0, any_unknown = 0;
	int			 adkim_strict = 0, aspf_strict = 0;

	memset(out, 0, sizeof(*out));
	out->result = DMARC_NONE;
	out->policy = DMARC_P_UNSET;
	ndkim = in->ndkim > DMARC_DKIM_MAX ? DMARC_DKIM_MAX : in->ndkim;
	valid = in->from_domain != NULL && dmarc_name(in->from_domain,
	    out->domain, sizeof(out->domain)) == 0;
	strlcpy(out->org_domain, out->domain, sizeof(out->org_domain));
	if (!valid || (c = dmarc_ctx_new(dns)) == NULL) {
		/* nothing to ask about (or no memory): equality only */
		for (i = 0; i < ndkim; i++) {
			out->dkim_aligned_each[i] = valid &&
			    in->dkim_domain[i] != NULL &&
			    dmarc_name(in->dkim_domain[i], org,
			    sizeof(org)) == 0 && strcmp(org, out->domain) == 0;
			if (out->dkim_aligned_each[i] && in->dkim_pass[i])
				out->dkim_aligned = 1;
		}
		if (valid && in->spf == SPF_PASS && in->spf_domain != NULL &&
		    dmarc_name(in->spf_domain, org, sizeof(org)) == 0 &&
		    strcmp(org, out->domain) == 0)
			out->spf_aligned = 1;
		out->result = valid ? DMARC_TEMPERROR : DMARC_NONE;
		return 0;
	}

	/* the From domain's walk: its record, org domain, PSD record */
	dmarc_walk(c, out->domain, &w);
	if (!w.temp && dmarc_walk_org(&w, org, sizeof(org)) != NULL) {
		from_org = org;
		strlcpy(out->org_domain, org, sizeof(out->org_domain));
	}
	if (w.nfound > 0 && w.name[0] == w.start) {
		rec = &w.rec[0];			/* the From domain's */
		out->policy = rec->p;
	} else if (w.temp)
		out->result = DMARC_TEMPERROR;
	else if (w.nfound > 0) {
		/* the org domain's record, else the PSD's (the last) */
		rec = &w.rec[w.nfound - 1];
		for (i = 0; i < w.nfound; i++)
			if (strcmp(w.name[i], org) == 0)
				rec = &w.rec[i];
		out->policy = rec->sp;
		if (rec->np != rec->sp) {
			dns_lookup(c->dns, out->domain, DNS_T_A, &c->ans);
			if (c->ans.status == DNS_NXDOMAIN)
				out->policy = rec->np;
			else if (c->ans.status == DNS_TEMPFAIL)
				out->result = DMARC_TEMPERROR;
		}
	}
	if (rec != NULL) {
		adkim_strict = rec->adkim_strict;
		aspf_strict = rec->aspf_strict;
	}

	/* alignment, reported with or without a record */
	if (in->spf == SPF_PASS) {
		spf_al = dmarc_align(c, out->domain, from_org, in->spf_domain,
		    aspf_strict);
		out->spf_aligned = spf_al == 1;
		if (spf_al == -1)
			any_unknown = 1;
	}
	for (i = 0; i < ndkim; i++) {
		a = dmarc_align(c, out->domain, from_org, in->dkim_domain[i],
		    adkim_strict);
		out->dkim_aligned_each[i] = a == 1;
		if (in->dkim_pass[i]) {
			if (a == 1)
				out->dkim_aligned = 1;
			else if (a == -1)
				any_unknown = 1;
		}
	}
	free(c);

	if (rec == NULL)
		return 0;			/* none, or temperror */
	if (rec->p == DMARC_P_UNSET) {
		out->result = DMARC_PERMERROR;
		out->policy = DMARC_P_UNSET;
	} else if (out->spf_aligned || out->dkim_aligned) {
		out->result = DMARC_PASS;	/* a failed A query: sp */
	} else if (out->result != DMARC_TEMPERROR)
		out->result = any_unknown ? DMARC_TEMPERROR : DMARC_FAIL;
	return 0;
}
