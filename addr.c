/*
 * The SMTP path parser (RFC 5321 4.1.2): MAIL FROM and RCPT TO
 * arguments, and the -r flags checked with the same rules; the From
 * field's parser; a client's address as text and as its --max-per-ip
 * key.  Pure functions on bytes, shared by the dialogue, the worker
 * and the flag parser.
 */

#include <sys/types.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtpd.h"

static int	addr_parse_mailbox(const char *, const char **, char *,
		    size_t);

/*
 * Parse an RFC 5321 Mailbox (Local-part "@" Domain) starting at p.
 * The local part is a dot-string or a quoted string; octets >= 0x80
 * are taken as UTF-8 (the caller checks SMTPUTF8).  On success *end
 * points past it and out holds it; -1 on a syntax error.
 */
static int
addr_parse_mailbox(const char *p, const char **end, char *out,
    size_t outsz)
{
	static const char	 atext[] = "!#$%&'*+-/=?^_`{|}~";
	const char		*start = p, *at, *label;
	size_t			 len;

	if (*p == '"') {
		for (p++; *p != '"'; p++) {
			if (*p == '\\') {
				p++;
				if (*p < 32 || *p > 126)
					return -1;
			} else if (*p == '\0' || ((unsigned char)*p < 128 &&
			    (*p < 32 || *p > 126)))
				return -1;
		}
		p++;
	} else {
		for (;;) {
			const char *atom = p;

			while (isalnum((unsigned char)*p) ||
			    (unsigned char)*p >= 0x80 ||
			    (*p != '\0' && strchr(atext, *p) != NULL))
				p++;
			if (p == atom)
				return -1;
			if (*p != '.')
				break;
			p++;
		}
	}
	if ((size_t)(p - start) > SMTP_LOCAL_MAX || *p != '@')
		return -1;
	at = p++;
	if (*p == '[') {
		/* address literal: no nesting, printable only */
		for (p++; *p != ']'; p++)
			if (*p == '\0' || *p == '[' || *p == '\\' ||
			    *p <= ' ' || *p == 0x7f)
				return -1;
		p++;
	} else {
		for (;;) {
			label = p;
			while (isalnum((unsigned char)*p) || *p == '-' ||
			    (unsigned char)*p >= 0x80)
				p++;
			if (p == label || *label == '-' || p[-1] == '-' ||
			    p - label > 63)
				return -1;
			if (*p != '.')
				break;
			p++;
		}
	}
	if ((size_t)(p - at - 1) > SMTP_DOMAIN_MAX)
		return -1;
	len = (size_t)(p - start);
	if (len >= outsz || len > SMTP_PATH_MAX)
		return -1;
	memcpy(out, start, len);
	out[len] = '\0';
	*end = p;
	return 0;
}

/*
 * Parse a path "<mailbox>", "<>" (when allow_null) or a source route
 * "<@a,@b:mailbox>" (route ignored) into out.  *rest points past '>'.
 * Returns 0, or -1 on a syntax error.
 */
int
addr_parse_path(const char *p, char *out, size_t outsz,
    const char **rest, int allow_null)
{
	const char	*end;

	if (*p++ != '<')
		return -1;
	if (*p == '>') {
		if (!allow_null || outsz == 0)
			return -1;
		out[0] = '\0';
		*rest = p + 1;
		return 0;
	}
	if (*p == '@') {
		/* A-d-l: "@domain" *( "," "@domain" ) ":" */
		p = strchr(p, ':');
		if (p == NULL)
			return -1;
		p++;
	}
	if (addr_parse_mailbox(p, &end, out, outsz) == -1)
		return -1;
	if (*end != '>')
		return -1;
	*rest = end + 1;
	return 0;
}

/*
 * The ESMTP parameters after the path of MAIL FROM (RFC 5321 4.1.2):
 * SIZE=n (RFC 1870), BODY=7BIT or BODY=8BITMIME (RFC 6152), SMTPUTF8
 * (RFC 6531), each after one or more spaces; none without esmtp (the
 * client said HELO).  A SIZE of digits too large for a long long is
 * LLONG_MAX, over any limit.  Returns -1 with *size (-1 when not
 * given) and *smtputf8 set, else the reply that refuses them.
 */
int
addr_parse_mail_params(const char *p, int esmtp, long long *size,
    int *smtputf8)
{
	char		 param[SMTP_LINE_MAX];
	const char	*errstr;
	size_t		 n;

	*size = -1;
	*smtputf8 = 0;
	while (*p != '\0') {
		if (*p != ' ' || !esmtp)
			return REPLY_SYNTAX;
		while (*p == ' ')
			p++;
		if (*p == '\0')
			break;
		n = strcspn(p, " ");
		if (n >= sizeof(param))		/* longer than a command */
			return REPLY_PARAM;
		memcpy(param, p, n);
		param[n] = '\0';
		p += n;
		if (strncasecmp(param, "SIZE=", 5) == 0) {
			/* digits only (RFC 1870): strtonum takes a sign */
			if (param[5] == '\0' ||
			    strspn(param + 5, "0123456789") != n - 5)
				return REPLY_SYNTAX;
			*size = strtonum(param + 5, 0, LLONG_MAX, &errstr);
			if (errstr != NULL)
				*size = LLONG_MAX;	/* over the limit */
		} else if (strcasecmp(param, "BODY=7BIT") == 0 ||
		    strcasecmp(param, "BODY=8BITMIME") == 0)
			;
		else if (strcasecmp(param, "SMTPUTF8") == 0)
			*smtputf8 = 1;
		else
			return REPLY_PARAM;
	}
	return -1;
}

/* 1 when addr is accepted by a -r rule. */
int
addr_rcpt_match(const struct smtpd_conf *conf, const char *addr)
{
	const char	*at;
	size_t		 i, llen;

	if ((at = strrchr(addr, '@')) == NULL)
		return 0;
	llen = (size_t)(at - addr);
	for (i = 0; i < conf->nrcpts; i++) {
		const struct recipient_rule *r = &conf->rcpts[i];

		if (strcasecmp(at + 1, r->domain) != 0)
			continue;
		if (r->local == NULL || (strlen(r->local) == llen &&
		    strncmp(addr, r->local, llen) == 0))
			return 1;
	}
	return 0;
}

/*
 * The From field (RFC 5322 3.4, with RFC 6854 groups and RFC 6532
 * UTF-8), parsed strictly for DMARC and the FIRM identity.  Choices:
 * - The value is taken unfolded: CR and LF anywhere make it unparsed,
 *   as does NUL or any byte the grammar does not allow.  Bytes >= 0x80
 *   must form valid UTF-8 (RFC 6532 extends atext, qtext, ctext, dtext
 *   and quoted pairs with it).
 * - Comments nest at most FROM_COMMENT_DEPTH deep.
 * - The obsolete syntax of RFC 5322 4.4 is read, not refused (SPEC
 *   section 6): a route in angle brackets (obs-angle-addr, "<@a.example,
 *   @b.example:ann@example.org>", the route dropped), a local part or a
 *   domain of words or atoms with CFWS between them and the dots
 *   (obs-local-part, obs-domain: "ann . lee (x) @ example . org"),
 *   empty list elements (obs-addr-list, obs-mbox-list, obs-group-list:
 *   ", ann@example.org,"), "." in a display name (obs-phrase) and a
 *   quoted pair in a domain literal (obs-dtext).  What it still
 *   refuses are its control characters (obs-NO-WS-CTL in obs-ctext,
 *   obs-qtext, obs-dtext and obs-utext, and obs-qp): they are not
 *   needed to find the mailbox, and a control octet is not to reach
 *   the payload's address.
 * - An encoded word in a display name is an atom; nothing is decoded.
 * - The field is an address-list: mailboxes and groups.  Mailboxes
 *   are counted across the whole list, groups included: none is 0
 *   ("undisclosed-recipients:;"), one is 1 even inside a group (so that
 *   a group cannot hide a forged author from DMARC), two or more is -1.
 * - The result is the addr-spec only: the local part's words as written
 *   (a quoted string keeps its quotes and quoted pairs) joined by ".",
 *   "@", the domain's atoms joined by "." with ASCII letters in lower
 *   case; the CFWS around and between them is dropped.  A local part
 *   over SMTP_LOCAL_MAX octets, a domain over SMTP_DOMAIN_MAX, or a
 *   result that does not fit out is 0.
 * - A domain literal ("ann@[192.0.2.1]") is the mailbox like any
 *   other: the caller sees it by its "[" and gives DMARC nothing to
 *   look up.
 */

struct from_cur {
	const unsigned char	*p;
	const unsigned char	*end;
};

/* Where an addr-spec is written: buf NULL discards (a route). */
struct from_out {
	char		*buf;
	size_t		 size;
	size_t		 len;
	int		 over;		/* something did not fit */
};

static size_t	from_utf8(const unsigned char *, const unsigned char *);
static size_t	from_atext(const unsigned char *, const unsigned char *);
static int	from_pair(struct from_cur *);
static int	from_cfws(struct from_cur *);
static int	from_quoted(struct from_cur *);
static int	from_atom(struct from_cur *);
static int	from_phrase(struct from_cur *);
static void	from_put(struct from_out *, const unsigned char *, size_t,
		    int);
static int	from_local(struct from_cur *, struct from_out *);
static int	from_domain(struct from_cur *, struct from_out *);
static int	from_route(struct from_cur *);
static int	from_addr_spec(struct from_cur *, char *, size_t, size_t *);
static int	from_mailbox(struct from_cur *, char *, size_t, size_t *);
static int	from_address(struct from_cur *, int *, char *, size_t,
		    size_t *);

/* The length of the valid UTF-8 sequence (2 to 4 octets) at p, or 0. */
static size_t
from_utf8(const unsigned char *p, const unsigned char *end)
{
	unsigned char	 lo = 0x80, hi = 0xbf;
	size_t		 n, i;

	if (*p >= 0xc2 && *p <= 0xdf)
		n = 2;
	else if (*p >= 0xe0 && *p <= 0xef) {
		n = 3;
		if (*p == 0xe0)
			lo = 0xa0;		/* overlong */
		else if (*p == 0xed)
			hi = 0x9f;		/* surrogates */
	} else if (*p >= 0xf0 && *p <= 0xf4) {
		n = 4;
		if (*p == 0xf0)
			lo = 0x90;		/* overlong */
		else if (*p == 0xf4)
			hi = 0x8f;		/* over U+10FFFF */
	} else
		return 0;
	if ((size_t)(end - p) < n)
		return 0;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

/* The length of the atext character at p (p < end), or 0. */
static size_t
from_atext(const unsigned char *p, const unsigned char *end)
{
	static const char	 atext[] = "!#$%&'*+-/=?^_`{|}~";

	if (*p >= 0x80)
		return from_utf8(p, end);
	if (isalnum(*p) || (*p != '\0' && strchr(atext, *p) != NULL))
		return 1;
	return 0;
}

/* A quoted pair at cur->p, which is a backslash: 0, or -1. */
static int
from_pair(struct from_cur *cur)
{
	size_t	 n;

	cur->p++;
	if (cur->p >= cur->end)
		return -1;
	if ((*cur->p >= 0x21 && *cur->p <= 0x7e) || *cur->p == ' ' ||
	    *cur->p == '\t') {
		cur->p++;
		return 0;
	}
	if (*cur->p >= 0x80 && (n = from_utf8(cur->p, cur->end)) > 0) {
		cur->p += n;
		return 0;
	}
	return -1;
}

/* Skip CFWS (spaces, tabs, nested comments): 0, or -1 on an error. */
static int
from_cfws(struct from_cur *cur)
{
	const unsigned char	*p;
	size_t			 n;
	int			 depth;

	for (;;) {
		while (cur->p < cur->end && (*cur->p == ' ' ||
		    *cur->p == '\t'))
			cur->p++;
		if (cur->p >= cur->end || *cur->p != '(')
			return 0;
		depth = 0;
		do {
			if (cur->p >= cur->end)
				return -1;	/* unclosed */
			p = cur->p;
			if (*p == '(') {
				if (++depth > FROM_COMMENT_DEPTH)
					return -1;
				cur->p++;
			} else if (*p == ')') {
				depth--;
				cur->p++;
			} else if (*p == '\\') {
				if (from_pair(cur) == -1)
					return -1;
			} else if (*p == ' ' || *p == '\t' ||
			    (*p >= 33 && *p <= 126))
				cur->p++;	/* ctext (no '(', ')', '\') */
			else if (*p >= 0x80 &&
			    (n = from_utf8(p, cur->end)) > 0)
				cur->p += n;
			else
				return -1;
		} while (depth > 0);
	}
}

/* A quoted string at cur->p, which is '"': 0, or -1. */
static int
from_quoted(struct from_cur *cur)
{
	const unsigned char	*p;
	size_t			 n;

	for (cur->p++; cur->p < cur->end; ) {
		p = cur->p;
		if (*p == '"') {
			cur->p++;
			return 0;
		}
		if (*p == '\\') {
			if (from_pair(cur) == -1)
				return -1;
		} else if (*p == ' ' || *p == '\t' || *p == 33 ||
		    (*p >= 35 && *p <= 126))
			cur->p++;		/* FWS, qtext */
		else if (*p >= 0x80 && (n = from_utf8(p, cur->end)) > 0)
			cur->p += n;
		else
			return -1;
	}
	return -1;				/* unclosed */
}

/* 1*atext (an atom without its CFWS); 0, or -1. */
static int
from_atom(struct from_cur *cur)
{
	size_t	 n, len = 0;

	while (cur->p < cur->end && (n = from_atext(cur->p, cur->end)) > 0) {
		cur->p += n;
		len += n;
	}
	return len > 0 ? 0 : -1;
}

/*
 * A display name: 1*word, "." allowed after the first (obs-phrase),
 * with the CFWS around it; 0, or -1.
 */
static int
from_phrase(struct from_cur *cur)
{
	size_t	 n, words = 0;

	for (;;) {
		if (from_cfws(cur) == -1)
			return -1;
		if (cur->p >= cur->end)
			break;
		if (*cur->p == '"') {
			if (from_quoted(cur) == -1)
				return -1;
			words++;
		} else if ((n = from_atext(cur->p, cur->end)) > 0) {
			do
				cur->p += n;
			while (cur->p < cur->end &&
			    (n = from_atext(cur->p, cur->end)) > 0);
			words++;
		} else if (*cur->p == '.' && words > 0)
			cur->p++;
		else
			break;
	}
	return words > 0 ? 0 : -1;
}

/* Append len octets of s to o (ASCII letters lowered if lower). */
static void
from_put(struct from_out *o, const unsigned char *s, size_t len, int lower)
{
	size_t	 i;

	if (o->buf == NULL)
		return;
	if (o->over || len >= o->size - o->len) {
		o->over = 1;
		return;
	}
	for (i = 0; i < len; i++)
		o->buf[o->len + i] = lower && s[i] >= 'A' && s[i] <= 'Z' ?
		    (char)(s[i] - 'A' + 'a') : (char)s[i];
	o->len += len;
	o->buf[o->len] = '\0';
}

/*
 * local-part = dot-atom / quoted-string / obs-local-part, which all are
 * word *("." word) with CFWS around each word (RFC 5322 3.4.1, 4.4):
 * the words as written, joined by "."; 0, or -1.
 */
static int
from_local(struct from_cur *cur, struct from_out *o)
{
	const unsigned char	*w;

	for (;;) {
		if (from_cfws(cur) == -1 || cur->p >= cur->end)
			return -1;
		w = cur->p;
		if (*cur->p == '"') {
			if (from_quoted(cur) == -1)
				return -1;
		} else if (from_atom(cur) == -1)
			return -1;
		from_put(o, w, (size_t)(cur->p - w), 0);
		if (from_cfws(cur) == -1)
			return -1;
		if (cur->p >= cur->end || *cur->p != '.')
			return 0;
		cur->p++;
		from_put(o, (const unsigned char *)".", 1, 0);
	}
}

/*
 * domain = dot-atom / domain-literal / obs-domain (atom *("." atom),
 * CFWS around each atom), with the CFWS around it: the atoms joined by
 * ".", or the literal as written, in lower case; 0, or -1.
 */
static int
from_domain(struct from_cur *cur, struct from_out *o)
{
	const unsigned char	*w;
	size_t			 n;

	if (from_cfws(cur) == -1 || cur->p >= cur->end)
		return -1;
	w = cur->p;
	if (*cur->p == '[') {
		/* "[" *([FWS] dtext) [FWS] "]", dtext with obs-dtext's pairs */
		for (cur->p++; ; ) {
			if (cur->p >= cur->end)
				return -1;
			if (*cur->p == ']')
				break;
			if (*cur->p == '\\') {
				if (from_pair(cur) == -1)
					return -1;
			} else if (*cur->p == ' ' || *cur->p == '\t' ||
			    (*cur->p >= 33 && *cur->p <= 90) ||
			    (*cur->p >= 94 && *cur->p <= 126))
				cur->p++;
			else if (*cur->p >= 0x80 &&
			    (n = from_utf8(cur->p, cur->end)) > 0)
				cur->p += n;
			else
				return -1;
		}
		cur->p++;
		from_put(o, w, (size_t)(cur->p - w), 1);
		return from_cfws(cur);
	}
	for (;;) {
		w = cur->p;
		if (from_atom(cur) == -1)
			return -1;
		from_put(o, w, (size_t)(cur->p - w), 1);
		if (from_cfws(cur) == -1)
			return -1;
		if (cur->p >= cur->end || *cur->p != '.')
			return 0;
		cur->p++;
		from_put(o, (const unsigned char *)".", 1, 0);
		if (from_cfws(cur) == -1 || cur->p >= cur->end)
			return -1;
	}
}

/*
 * obs-route = obs-domain-list ":", where obs-domain-list = *(CFWS /
 * ",") "@" domain *("," [CFWS] ["@" domain]), read and dropped; 0, or
 * -1.  Every turn of each loop takes at least one octet.
 */
static int
from_route(struct from_cur *cur)
{
	struct from_out	 none = { NULL, 0, 0, 0 };

	for (;;) {
		if (from_cfws(cur) == -1 || cur->p >= cur->end)
			return -1;
		if (*cur->p != ',')
			break;
		cur->p++;
	}
	if (*cur->p != '@')
		return -1;
	cur->p++;
	if (from_domain(cur, &none) == -1)
		return -1;
	while (cur->p < cur->end && *cur->p == ',') {
		cur->p++;
		if (from_cfws(cur) == -1 || cur->p >= cur->end)
			return -1;
		if (*cur->p == '@') {
			cur->p++;
			if (from_domain(cur, &none) == -1)
				return -1;
		}
	}
	if (cur->p >= cur->end || *cur->p != ':')
		return -1;
	cur->p++;
	return 0;
}

/*
 * addr-spec with the CFWS around it: "local@domain" into out (see the
 * choices above), the offset of the domain in *dom; 0, or -1.
 */
static int
from_addr_spec(struct from_cur *cur, char *out, size_t outsz, size_t *dom)
{
	struct from_out	 o = { out, outsz, 0, 0 };

	if (outsz == 0)
		return -1;
	out[0] = '\0';
	if (from_local(cur, &o) == -1 || o.len > SMTP_LOCAL_MAX ||
	    cur->p >= cur->end || *cur->p != '@')
		return -1;
	cur->p++;
	from_put(&o, (const unsigned char *)"@", 1, 0);
	*dom = o.len;
	if (from_domain(cur, &o) == -1 || o.over ||
	    o.len - *dom > SMTP_DOMAIN_MAX)
		return -1;
	return 0;
}

/*
 * mailbox = name-addr / addr-spec, with CFWS around; angle-addr or
 * obs-angle-addr (a route before the addr-spec); 0, or -1.
 */
static int
from_mailbox(struct from_cur *cur, char *out, size_t outsz, size_t *dom)
{
	const unsigned char	*save = cur->p;

	if (from_addr_spec(cur, out, outsz, dom) == 0 &&
	    (cur->p == cur->end || *cur->p == ',' || *cur->p == ';'))
		return 0;

	/* name-addr = [display-name] [CFWS] "<" [obs-route] addr-spec ">" */
	cur->p = save;
	if (from_cfws(cur) == -1 || cur->p >= cur->end)
		return -1;
	if (*cur->p != '<' && from_phrase(cur) == -1)
		return -1;
	if (cur->p >= cur->end || *cur->p != '<')
		return -1;
	cur->p++;
	if (from_cfws(cur) == -1 || cur->p >= cur->end)
		return -1;
	if ((*cur->p == '@' || *cur->p == ',') && from_route(cur) == -1)
		return -1;
	if (from_addr_spec(cur, out, outsz, dom) == -1)
		return -1;
	if (cur->p >= cur->end || *cur->p != '>')
		return -1;
	cur->p++;
	return from_cfws(cur);
}

/*
 * address = mailbox / group; group = display-name ":" [group-list] ";"
 * [CFWS], the group-list's elements possibly empty (obs-mbox-list,
 * obs-group-list).  Each mailbox counts in *count; the first goes into
 * one, its domain's offset into *one_dom.  0, or -1 on a syntax error.
 */
static int
from_address(struct from_cur *cur, int *count, char *one, size_t onesz,
    size_t *one_dom)
{
	const unsigned char	*save = cur->p;
	char			 box[SMTP_LOCAL_MAX + SMTP_DOMAIN_MAX + 2];
	size_t			 dom;

	if (from_phrase(cur) == 0 && cur->p < cur->end && *cur->p == ':') {
		cur->p++;
		for (;;) {
			if (from_cfws(cur) == -1 || cur->p >= cur->end)
				return -1;	/* no ';' */
			if (*cur->p == ';')
				break;
			if (*cur->p == ',') {
				cur->p++;	/* an empty element */
				continue;
			}
			if (from_mailbox(cur, box, sizeof(box), &dom) == -1)
				return -1;
			if ((*count)++ == 0) {
				if (strlcpy(one, box, onesz) >= onesz)
					return -1;
				*one_dom = dom;
			}
			if (cur->p >= cur->end)
				return -1;	/* no ';' */
			if (*cur->p == ';')
				break;
			if (*cur->p != ',')
				return -1;
			cur->p++;
		}
		cur->p++;
		return from_cfws(cur);
	}

	cur->p = save;
	if (from_mailbox(cur, box, sizeof(box), &dom) == -1)
		return -1;
	if ((*count)++ == 0) {
		if (strlcpy(one, box, onesz) >= onesz)
			return -1;
		*one_dom = dom;
	}
	return 0;
}

/*
 * The From field's value v of len octets (unfolded, not RFC
 * 2047-decoded, any bytes): 1 and its one mailbox's addr-spec in out,
 * with the offset of its domain (after the "@") in *domain when domain
 * is not NULL; 0 when it holds none or cannot be parsed, -1 when it
 * holds more than one.  See the choices above.
 */
int
addr_parse_from(const char *v, size_t len, char *out, size_t outsz,
    size_t *domain)
{
	struct from_cur	 cur;
	char		 one[SMTP_LOCAL_MAX + SMTP_DOMAIN_MAX + 2];
	size_t		 dom = 0;
	int		 count = 0;

	if (outsz > 0)
		out[0] = '\0';
	cur.p = (const unsigned char *)v;
	cur.end = cur.p + len;
	/* obs-addr-list: elements may be empty; every turn takes octets */
	for (;;) {
		if (from_cfws(&cur) == -1)
			return 0;
		if (cur.p >= cur.end)
			break;
		if (*cur.p == ',') {
			cur.p++;
			continue;
		}
		if (from_address(&cur, &count, one, sizeof(one), &dom) == -1)
			return 0;
		if (cur.p >= cur.end)
			break;
		if (*cur.p != ',')
			return 0;
		cur.p++;
	}
	if (count == 0)
		return 0;
	if (count > 1)
		return -1;
	if (strlcpy(out, one, outsz) >= outsz) {
		if (outsz > 0)
			out[0] = '\0';
		return 0;
	}
	if (domain != NULL)
		*domain = dom;
	return 1;
}

/* A client's address as text (IPv4-mapped IPv6 as IPv4), or "unknown". */
void
addr_str(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
	const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

	if (ss->ss_family == AF_INET) {
		if (inet_ntop(AF_INET, &sin->sin_addr, buf, len) != NULL)
			return;
	} else if (ss->ss_family == AF_INET6) {
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			if (inet_ntop(AF_INET, &sin6->sin6_addr.s6_addr[12],
			    buf, len) != NULL)
				return;
		} else if (inet_ntop(AF_INET6, &sin6->sin6_addr, buf,
		    len) != NULL)
			return;
	}
	strlcpy(buf, "unknown", len);
}

/*
 * The key for --max-per-ip: an IPv4 address as IPv4-mapped IPv6, an
 * IPv6 address cut to its /64.
 */
void
addr_key(const struct sockaddr_storage *ss, uint8_t *key)
{
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
	const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

	memset(key, 0, 16);
	if (ss->ss_family == AF_INET) {
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &sin->sin_addr, 4);
	} else if (ss->ss_family == AF_INET6) {
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
			memcpy(key, &sin6->sin6_addr, 16);
		else
			memcpy(key, &sin6->sin6_addr, 8);
	}
}

/*
 * An address as a claim carries it (privsep.h): family, port in
 * network order, 16 octets (IPv4 in the first 4, the rest 0); all 0
 * for anything but IPv4 and IPv6.  addr_unpack(): 0, or -1 for what
 * addr_pack() would not have made.
 */
void
addr_pack(const struct sockaddr_storage *ss, struct ctl_claim *c)
{
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
	const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

	c->family = AF_UNSPEC;
	c->port = 0;
	memset(c->addr, 0, sizeof(c->addr));
	if (ss->ss_family == AF_INET) {
		c->family = AF_INET;
		c->port = sin->sin_port;
		memcpy(c->addr, &sin->sin_addr, 4);
	} else if (ss->ss_family == AF_INET6) {
		c->family = AF_INET6;
		c->port = sin6->sin6_port;
		memcpy(c->addr, &sin6->sin6_addr, 16);
	}
}

int
addr_unpack(const struct ctl_claim *c, struct sockaddr_storage *ss)
{
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;
	struct sockaddr_in	*sin = (struct sockaddr_in *)ss;
	static const uint8_t	 zero[16];

	memset(ss, 0, sizeof(*ss));
	switch (c->family) {
	case AF_INET:
		if (memcmp(c->addr + 4, zero, 12) != 0)
			return -1;
		sin->sin_family = AF_INET;
		sin->sin_port = c->port;
		memcpy(&sin->sin_addr, c->addr, 4);
		return 0;
	case AF_INET6:
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = c->port;
		memcpy(&sin6->sin6_addr, c->addr, 16);
		return 0;
	case AF_UNSPEC:
		if (c->port != 0 || memcmp(c->addr, zero, 16) != 0)
			return -1;
		ss->ss_family = AF_UNSPEC;
		return 0;
	}
	return -1;
}
