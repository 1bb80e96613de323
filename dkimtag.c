/*
 * DKIM tag lists (RFC 6376 3.2) and the rules a signature's tags must
 * keep (RFC 6376 3.5), checked before libopendkim sees a signature.
 * libopendkim lets the last copy of a repeated tag win and drops a
 * signature that lacks a required tag without a word; RFC 6376 makes
 * both invalid, so a signature that breaks a rule here is reported as
 * permerror and never handed to libopendkim.  Pure functions over the
 * octets of one field value, with their own fuzz target.
 *
 * Choices the RFC leaves to us:
 * - a tag named twice in different case ("bh" and "bH") counts as named
 *   twice, since libopendkim would take one for the other;
 * - h= of more than DKIMTAG_H_MAX names, or longer than libopendkim
 *   reads (DKIMTAG_H_LEN), is refused: libopendkim walks the whole
 *   header for each name, and silently cuts a longer list;
 * - FWS is taken loosely: any run of SP, HTAB, CR and LF, since the
 *   field has already been framed by the header reader;
 * - an empty tag-spec (";;", or a list that is only ";") is a syntax
 *   error, as the ABNF has it; a single trailing ";" is allowed;
 * - tag names compare case-sensitively (RFC 6376 3.2: "Tags are case
 *   sensitive"); q= method names, h= field names and domains compare
 *   case-insensitively;
 * - the algorithm reported is the a= value as written when it is a
 *   short word of letters, digits and '-', else "unknown".
 */

#include <sys/types.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtpd.h"

static int	dkimtag_wsp(char);
static int	dkimtag_valchar(char);
static int	dkimtag_alpha(char);
static int	dkimtag_digit(char);
static int	dkimtag_number(const struct dkimtag *, size_t, long long *);
static int	dkimtag_list_has(const struct dkimtag *, const char *);
static size_t	dkimtag_list_count(const struct dkimtag *, const char *);
static void	dkimtag_copy(const struct dkimtag *, char *, size_t);

static int
dkimtag_wsp(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* VALCHAR: %x21-3A / %x3C-7E */
static int
dkimtag_valchar(char c)
{
	return c >= 0x21 && c <= 0x7e && c != ';';
}

static int
dkimtag_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int
dkimtag_digit(char c)
{
	return c >= '0' && c <= '9';
}

/*
 * Split a tag-list into its tags.  Returns the number of tags, or -1
 * when the list breaks the ABNF or has more than max tags.  A tag
 * named twice makes the list invalid (RFC 6376 3.2): *dup is set, and
 * only its first copy is kept, so that what the list says can still be
 * reported.  Each value is trimmed of the FWS around it; inner FWS is
 * left in place (b= and bh= carry it).
 */
int
dkimtag_parse(const char *p, size_t len, struct dkimtag *tags, size_t max,
    int *dup)
{
	size_t	 i = 0, n = 0, j, vend;
	int	 twice;

	*dup = 0;
	for (;;) {
		while (i < len && dkimtag_wsp(p[i]))
			i++;
		if (i == len)
			return n == 0 ? -1 : (int)n;	/* nothing, or "a=1;" */
		if (n == max || !dkimtag_alpha(p[i]))
			return -1;
		tags[n].name = p + i;
		while (i < len && (dkimtag_alpha(p[i]) ||
		    dkimtag_digit(p[i]) || p[i] == '_'))
			i++;
		tags[n].nlen = (size_t)(p + i - tags[n].name);
		while (i < len && dkimtag_wsp(p[i]))
			i++;
		if (i == len || p[i] != '=')
			return -1;
		i++;
		while (i < len && dkimtag_wsp(p[i]))
			i++;
		tags[n].val = p + i;
		for (vend = i; i < len && p[i] != ';'; i++) {
			if (dkimtag_valchar(p[i]))
				vend = i + 1;
			else if (!dkimtag_wsp(p[i]))
				return -1;
		}
		tags[n].vlen = vend - (size_t)(tags[n].val - p);
		/*
		 * RFC 6376 3.2; compared without regard to case, as
		 * libopendkim does (it would let "bH=" replace "bh=")
		 */
		for (j = 0, twice = 0; j < n; j++)
			if (tags[j].nlen == tags[n].nlen &&
			    strncasecmp(tags[j].name, tags[n].name,
			    tags[n].nlen) == 0)
				twice = 1;
		if (twice)
			*dup = 1;
		else
			n++;
		if (i == len)
			return (int)n;
		i++;				/* the ';' */
		while (i < len && dkimtag_wsp(p[i]))
			i++;
		if (i == len)
			return (int)n;		/* one trailing ';' */
	}
}

const struct dkimtag *
dkimtag_get(const struct dkimtag *tags, size_t n, const char *name)
{
	size_t	 i, len = strlen(name);

	for (i = 0; i < n; i++)
		if (tags[i].nlen == len && memcmp(tags[i].name, name, len) == 0)
			return &tags[i];
	return NULL;
}

/*
 * A value of 1 to maxdigits digits, nothing else; past LLONG_MAX (l=
 * may have 76 digits) it is LLONG_MAX, which no body reaches.
 */
static int
dkimtag_number(const struct dkimtag *t, size_t maxdigits, long long *out)
{
	size_t		 i;
	long long	 v = 0;

	if (t->vlen == 0 || t->vlen > maxdigits)
		return -1;
	for (i = 0; i < t->vlen; i++) {
		if (!dkimtag_digit(t->val[i]))
			return -1;
		if (v > (LLONG_MAX - 9) / 10)
			v = LLONG_MAX;
		else
			v = v * 10 + (t->val[i] - '0');
	}
	*out = v;
	return 0;
}

/*
 * Is word one of the colon-separated items of the value (FWS around
 * each allowed), compared case-insensitively?
 */
static int
dkimtag_list_has(const struct dkimtag *t, const char *word)
{
	return t != NULL && dkimtag_list_count(t, word) > 0;
}

/*
 * How many of the colon-separated items of the value are word (any
 * item, when word is NULL).
 */
static size_t
dkimtag_list_count(const struct dkimtag *t, const char *word)
{
	size_t	 wl = word != NULL ? strlen(word) : 0, s = 0, e, b, count = 0;

	for (;;) {
		for (e = s; e < t->vlen && t->val[e] != ':'; e++)
			;
		b = s;
		s = e;
		while (b < e && dkimtag_wsp(t->val[b]))
			b++;
		while (e > b && dkimtag_wsp(t->val[e - 1]))
			e--;
		if (word == NULL || (e - b == wl &&
		    strncasecmp(t->val + b, word, wl) == 0))
			count++;
		if (s == t->vlen)
			return count;
		s++;
	}
}

/* A value we may report: printable, no space, bounded; else "". */
static void
dkimtag_copy(const struct dkimtag *t, char *out, size_t outsz)
{
	size_t	 i;

	out[0] = '\0';
	if (t == NULL || t->vlen == 0 || t->vlen >= outsz)
		return;
	for (i = 0; i < t->vlen; i++)
		if (!dkimtag_valchar(t->val[i]))
			return;
	memcpy(out, t->val, t->vlen);
	out[t->vlen] = '\0';
}

/*
 * The value of one DKIM-Signature field (after its colon): its tags
 * into *sig, and whether they keep RFC 6376 3.2 and 3.5.  Returns 0
 * when they do, else -1 with sig->error saying which rule broke;
 * whatever could be read (d=, s=, a=, t=, x=) is filled in either way,
 * for the report.
 */
int
dkimtag_sig_parse(const char *p, size_t len, struct dkimtag_sig *sig)
{
	static const char *const required[] = { "v", "a", "b", "bh", "d", "h",
	    "s" };
	const struct dkimtag	*t, *i;
	const char		*at;
	size_t			 k, n, dlen, ilen;
	int			 r, dup;

	memset(sig, 0, sizeof(*sig));
	sig->t = sig->x = sig->l = -1;
	if ((r = dkimtag_parse(p, len, sig->tags, DKIMTAG_MAX, &dup)) == -1) {
		sig->error = "tag list syntax (RFC 6376 3.2)";
		return -1;
	}
	sig->ntags = n = (size_t)r;
	dkimtag_copy(dkimtag_get(sig->tags, n, "d"), sig->d, sizeof(sig->d));
	dkimtag_copy(dkimtag_get(sig->tags, n, "s"), sig->s, sizeof(sig->s));
	if ((t = dkimtag_get(sig->tags, n, "a")) != NULL) {
		strlcpy(sig->a, "unknown", sizeof(sig->a));
		for (k = 0; k < t->vlen; k++)
			if (!dkimtag_alpha(t->val[k]) &&
			    !dkimtag_digit(t->val[k]) && t->val[k] != '-')
				break;
		if (k == t->vlen && k > 0 && k < sizeof(sig->a)) {
			memcpy(sig->a, t->val, k);
			sig->a[k] = '\0';
		}
	}
	if ((t = dkimtag_get(sig->tags, n, "t")) != NULL &&
	    dkimtag_number(t, 12, &sig->t) == -1) {
		sig->t = -1;
		sig->error = "t= is not a number (RFC 6376 3.5)";
	}
	if ((t = dkimtag_get(sig->tags, n, "x")) != NULL &&
	    dkimtag_number(t, 12, &sig->x) == -1) {
		sig->x = -1;
		sig->error = "x= is not a number (RFC 6376 3.5)";
	}
	if (dup)
		sig->error = "a tag twice (RFC 6376 3.2)";
	if (sig->error != NULL)
		return -1;
	for (k = 0; k < sizeof(required) / sizeof(required[0]); k++)
		if (dkimtag_get(sig->tags, n, required[k]) == NULL) {
			sig->error = "a required tag is missing (RFC 6376 3.5)";
			return -1;
		}
	t = dkimtag_get(sig->tags, n, "v");
	if (t->vlen != 1 || t->val[0] != '1') {
		sig->error = "v= is not 1 (RFC 6376 3.5)";
		return -1;
	}
	if (sig->d[0] == '\0' || sig->s[0] == '\0') {
		sig->error = "d= or s= is empty (RFC 6376 3.5)";
		return -1;
	}
	t = dkimtag_get(sig->tags, n, "h");
	if (!dkimtag_list_has(t, "from")) {
		sig->error = "h= does not name From (RFC 6376 5.4)";
		return -1;
	}
	if (t->vlen >= DKIMTAG_H_LEN ||
	    dkimtag_list_count(t, NULL) > DKIMTAG_H_MAX) {
		sig->error = "h= names too many fields";
		return -1;
	}
	if ((t = dkimtag_get(sig->tags, n, "q")) != NULL &&
	    !dkimtag_list_has(t, "dns/txt")) {
		sig->error = "q= names no known method (RFC 6376 3.5)";
		return -1;
	}
	if ((t = dkimtag_get(sig->tags, n, "l")) != NULL &&
	    dkimtag_number(t, 76, &sig->l) == -1) {
		sig->error = "l= is not a number (RFC 6376 3.5)";
		return -1;
	}
	if (sig->t != -1 && sig->x != -1 && sig->x < sig->t) {
		sig->error = "x= is before t= (RFC 6376 3.5)";
		return -1;
	}
	/* i=: its domain is d= or a subdomain of it */
	if ((i = dkimtag_get(sig->tags, n, "i")) != NULL) {
		at = memchr(i->val, '@', i->vlen);
		dlen = strlen(sig->d);
		if (at == NULL) {
			sig->error = "i= has no @ (RFC 6376 3.5)";
			return -1;
		}
		ilen = i->vlen - (size_t)(at + 1 - i->val);
		if (ilen < dlen || strncasecmp(at + 1 + ilen - dlen, sig->d,
		    dlen) != 0 || (ilen > dlen && at[ilen - dlen] != '.')) {
			sig->error = "i= is outside d= (RFC 6376 3.5)";
			return -1;
		}
		sig->i_subdomain = ilen > dlen;
	}
	return 0;
}

/*
 * How many times h= names a field (RFC 6376 5.4.2: each names one
 * instance, from the bottom of the header up).
 */
size_t
dkimtag_h_count(const struct dkimtag_sig *sig, const char *field)
{
	const struct dkimtag	*h;

	if ((h = dkimtag_get(sig->tags, sig->ntags, "h")) == NULL)
		return 0;
	return dkimtag_list_count(h, field);
}

/*
 * Is the tag's value the string v, as libopendkim keeps a value (FWS
 * removed)?  How a libopendkim signature is paired with our tags.
 */
int
dkimtag_same_value(const struct dkimtag *t, const char *v)
{
	size_t	 k;

	if (v == NULL)
		return 0;
	for (k = 0; k < t->vlen; k++) {
		if (dkimtag_wsp(t->val[k]))
			continue;
		if (*v++ != t->val[k])
			return 0;
	}
	return *v == '\0';
}

/*
 * A key record (RFC 6376 3.6.1) for a signature of algorithm alg: a
 * valid tag list with no tag twice; v=, when present, first and
 * "DKIM1"; k= (default rsa) the key type alg names; h=, when present,
 * naming alg's hash.  Returns -1 when any of that fails (no key:
 * permerror, 6.1.2), else 0 with *strict set when its t= flags hold
 * "s" (no i= in a subdomain of d=).  alg NULL: the list alone.
 */
int
dkimtag_key_parse(const char *p, size_t len, const char *alg, int *strict)
{
	struct dkimtag		 tags[DKIMTAG_MAX];
	const struct dkimtag	*t;
	const char		*dash;
	char			 k[16];
	int			 n, dup;

	*strict = 0;
	if ((n = dkimtag_parse(p, len, tags, DKIMTAG_MAX, &dup)) == -1 || dup)
		return -1;
	if ((t = dkimtag_get(tags, (size_t)n, "v")) != NULL &&
	    (t != &tags[0] || t->vlen != 5 || memcmp(t->val, "DKIM1", 5) != 0))
		return -1;
	if ((t = dkimtag_get(tags, (size_t)n, "t")) != NULL)
		*strict = dkimtag_list_has(t, "s");
	if (alg == NULL || (dash = strchr(alg, '-')) == NULL)
		return 0;
	if ((t = dkimtag_get(tags, (size_t)n, "k")) == NULL)
		strlcpy(k, "rsa", sizeof(k));
	else if (t->vlen >= sizeof(k))
		return -1;
	else {
		memcpy(k, t->val, t->vlen);
		k[t->vlen] = '\0';
	}
	if (strlen(k) != (size_t)(dash - alg) ||
	    strncasecmp(k, alg, strlen(k)) != 0)
		return -1;
	if ((t = dkimtag_get(tags, (size_t)n, "h")) != NULL &&
	    !dkimtag_list_has(t, dash + 1))
		return -1;
	return 0;
}
