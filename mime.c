/*
 * Message parsing: RFC 5322 header fields (unfolded, names in lower
 * case, RFC 2047 encoded words decoded), and the text body of a MIME
 * message (RFC 2045, 2046): the multipart tree is walked, the first
 * text/plain part that is not an attachment is transfer-decoded
 * (quoted-printable, base64) and converted from its charset to UTF-8
 * with iconv; without one, the first text/html part is turned into
 * text.
 *
 * Everything is bounded: multipart nesting (MIME_MAX_DEPTH), body
 * parts (MIME_MAX_PARTS), header fields per entity (MIME_MAX_HEADERS),
 * the bytes produced by decoding (MIME_MAX_DECODED), RFC 2047 encoded
 * words decoded per field (MIME_MAX_FIELD_WORDS) and per message
 * (MIME_MAX_WORDS), and the charsets converted per message
 * (MIME_MAX_CHARSETS).  The walk recurses once per multipart level, so
 * never deeper than the cap.
 *
 * A limit never refuses the message: a message FIRM could read should
 * reach it.  The walk stops where the limit is, what was read so far
 * is kept, and mime_msg.truncated names the first limit hit:
 * - a multipart nested deeper than MIME_MAX_DEPTH is not walked, nor
 *   is any part after the MIME_MAX_PARTS-th; the first text part found
 *   before is the body;
 * - header fields of an entity after the MIME_MAX_HEADERS-th are
 *   skipped (neither kept nor read), and its body is still walked;
 * - the text part is decoded from a prefix of its raw bytes short
 *   enough that the decoded bytes stay under MIME_MAX_DECODED (its
 *   raw size / 4 of what is left: decoding to UTF-8 at most triples
 *   a byte); a field whose decoding would pass the cap is skipped;
 * - encoded words past MIME_MAX_FIELD_WORDS in a field, or past
 *   MIME_MAX_WORDS in the message, are kept as their raw text, as are
 *   words in a charset once MIME_MAX_CHARSETS converters are open.
 * Only running out of memory makes mime_parse() fail.
 *
 * iconv converters are opened once per charset per message, kept in
 * a table of MIME_MAX_CHARSETS (charsets iconv does not know too, so
 * they are looked up once), reset before each use and closed at the
 * end of mime_parse(): glibc may load a gconv module at each
 * iconv_open(), which made a header of short words in rotating
 * charsets cost seconds.  The body text may still open one converter
 * past a full table, and closes it at once.
 *
 * Choices where the RFCs leave room:
 * - message/rfc822 parts are opaque: an attached message is not
 *   walked, its text is never the body.  The parts of multipart/digest
 *   default to message/rfc822, and so are opaque too.
 * - A multipart entity without a usable boundary is taken as
 *   text/plain, so its text still reaches the token search.
 * - The whole tree is walked even after the body part is found, so
 *   that the limits hold the same wherever the body part sits; only
 *   the chosen part is decoded.
 * - A delimiter line is "--" boundary, then "--" for the last one,
 *   then only spaces or tabs up to the line end.  A boundary that is
 *   never closed ends at the end of its enclosing part.
 * - Charsets: iso-8859-1 and its aliases are read as windows-1252, a
 *   superset that mailers often mean; us-ascii, a missing charset and
 *   one iconv does not know are read as UTF-8, with every invalid
 *   byte replaced by U+FFFD.  Conversion never fails.
 * - format=flowed text (RFC 3676) is unflowed.
 */

#include <ctype.h>
#include <errno.h>
#include <iconv.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtpd.h"

#define MIME_REPL		"\xef\xbf\xbd"	/* U+FFFD */
#define MIME_REPL_LEN		3
#define MIME_SNIFF_MAX		1024	/* HTML bytes searched for a charset */
#define MIME_ENTITY_MAX		10	/* longest named HTML entity kept */

enum mime_cte {
	MIME_CTE_IDENTITY = 0,
	MIME_CTE_QP,
	MIME_CTE_BASE64,
};

/* A growable byte buffer; len never exceeds max, p is NUL-terminated. */
struct mime_buf {
	char		*p;
	size_t		 len;
	size_t		 cap;
	size_t		 max;
};

/* What the walk needs from the header of one entity. */
struct mime_part {
	char		 type[MIME_TOKEN_MAX];		/* lower case */
	char		 subtype[MIME_TOKEN_MAX];	/* lower case */
	char		 charset[MIME_TOKEN_MAX];	/* as given */
	char		 delim[MIME_BOUNDARY_MAX + 3];	/* "--" boundary */
	size_t		 delimlen;			/* 0: none */
	int		 flowed;
	int		 delsp;
	int		 cte;				/* enum mime_cte */
	int		 attachment;
	int		 have_type;
	int		 have_cte;
	int		 have_disp;
	const char	*body;
	const char	*end;
};

/* An RFC 2047 encoded word, and what is known of the text after it. */
struct mime_ew {
	const char	*cs;
	size_t		 cslen;
	int		 enc;		/* 'b' or 'q' */
	const char	*text;
	size_t		 textlen;
	const char	*bare_from;	/* no "?=" before white space or */
	const char	*bare_to;	/* the end in [bare_from, bare_to) */
};

/* An iconv converter to UTF-8, kept for the message. */
struct mime_cd {
	char		 cs[MIME_TOKEN_MAX];	/* iconv name */
	iconv_t		 cd;			/* (iconv_t)-1: unknown */
};

/* State of one mime_parse(). */
struct mime_ctx {
	struct mime_msg	*out;
	size_t		 nparts;
	size_t		 decoded;	/* bytes produced so far */
	size_t		 nwords;	/* encoded words decoded so far */
	struct mime_cd	 cds[MIME_MAX_CHARSETS];
	size_t		 ncds;
	int		 truncated;	/* first limit hit, or 0 */
	struct mime_part text;		/* first text/plain, if any */
	struct mime_part html;		/* first text/html, if any */
	int		 have_text;
	int		 have_html;
};

static int	mime_buf_reserve(struct mime_buf *, size_t);
static int	mime_buf_add(struct mime_buf *, const void *, size_t);
static int	mime_clean_append(struct mime_buf *, const char *, size_t);
static int	mime_count(struct mime_ctx *, size_t);
static void	mime_truncate(struct mime_ctx *, int);

static int	mime_entity(struct mime_ctx *, const char *, const char *,
		    int, int);
static int	mime_multipart(struct mime_ctx *, const struct mime_part *,
		    int);
static const char *mime_delim_find(const char *, const char *, const char *,
		    const char *, size_t, int *, const char **);
static void	mime_part_field(struct mime_part *, const char *, size_t,
		    const char *, size_t);
static const char *mime_cfws(const char *, const char *);
static const char *mime_token(const char *, const char *, char *, size_t,
		    int);
static void	mime_content_type(struct mime_part *, const char *,
		    const char *);
static int	mime_header_add(struct mime_ctx *, const char *, size_t,
		    const char *, size_t);
static int	mime_header_decode(struct mime_ctx *, const char *, size_t,
		    struct mime_buf *);
static const char *mime_ew_parse(const char *, const char *,
		    struct mime_ew *);
static int	mime_ew_flush(struct mime_ctx *, struct mime_buf *,
		    struct mime_buf *, const char *, const char *,
		    const char *);
static int	mime_charset(const char *, size_t, char *, size_t);
static int	mime_cd_get(struct mime_ctx *, const char *, int, iconv_t *,
		    int *);
static void	mime_cd_close(struct mime_ctx *);
static int	mime_iconv(struct mime_ctx *, const char *, const char *,
		    size_t, struct mime_buf *, int *, int);
static int	mime_to_utf8(struct mime_ctx *, const char *, const char *,
		    size_t, struct mime_buf *);
static size_t	mime_qp_decode(const char *, size_t, char *, int);
static size_t	mime_b64_decode(const char *, size_t, char *);
static int	mime_hexval(int);
static int	mime_text(struct mime_ctx *, const struct mime_part *, int,
		    struct mime_buf *);
static size_t	mime_unflow(char *, size_t, int);
static void	mime_html_sniff(const char *, size_t, char *, size_t);
static size_t	mime_html_text(const char *, size_t, char *);
static size_t	mime_html_entity(const char *, size_t, char *);
static size_t	mime_utf8_put(uint32_t, char *);
static const char *mime_memcasemem(const char *, size_t, const char *);

/* base64 alphabet: value + 1; 65 for '=', 0 for anything else */
static const unsigned char mime_b64[256] = {
	['A'] = 1, ['B'] = 2, ['C'] = 3, ['D'] = 4, ['E'] = 5, ['F'] = 6,
	['G'] = 7, ['H'] = 8, ['I'] = 9, ['J'] = 10, ['K'] = 11, ['L'] = 12,
	['M'] = 13, ['N'] = 14, ['O'] = 15, ['P'] = 16, ['Q'] = 17,
	['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22,
	['W'] = 23, ['X'] = 24, ['Y'] = 25, ['Z'] = 26, ['a'] = 27,
	['b'] = 28, ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32,
	['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36, ['k'] = 37,
	['l'] = 38, ['m'] = 39, ['n'] = 40, ['o'] = 41, ['p'] = 42,
	['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47,
	['v'] = 48, ['w'] = 49, ['x'] = 50, ['y'] = 51, ['z'] = 52,
	['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56, ['4'] = 57,
	['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62,
	['+'] = 63, ['/'] = 64, ['='] = 65,
};
#define MIME_B64_VALUE(c)	((unsigned int)mime_b64[(c)] - 1)

/* Charset names iconv should not see as given. */
static const struct {
	const char	*name;
	const char	*iconv;		/* NULL: read as UTF-8 */
} mime_charsets[] = {
	{ "us-ascii",		NULL },
	{ "ascii",		NULL },
	{ "ansi_x3.4-1968",	NULL },
	{ "utf-8",		NULL },
	{ "utf8",		NULL },
	{ "unknown-8bit",	NULL },
	{ "unknown",		NULL },
	{ "x-unknown",		NULL },
	{ "default",		NULL },
	{ "iso-8859-1",		"WINDOWS-1252" },
	{ "iso8859-1",		"WINDOWS-1252" },
	{ "iso_8859-1",		"WINDOWS-1252" },
	{ "latin1",		"WINDOWS-1252" },
	{ "l1",			"WINDOWS-1252" },
	{ "cp819",		"WINDOWS-1252" },
	{ "ks_c_5601-1987",	"CP949" },
	{ "euc-kr",		"CP949" },
	{ "gb2312",		"GB18030" },
	{ "gbk",		"GB18030" },
	{ "x-gbk",		"GB18030" },
};

/* Named HTML entities decoded; others are kept as they are. */
static const struct {
	const char	*name;
	uint32_t	 cp;
} mime_entities[] = {
	{ "amp", '&' }, { "lt", '<' }, { "gt", '>' }, { "quot", '"' },
	{ "apos", '\'' }, { "nbsp", 0xa0 }, { "copy", 0xa9 },
	{ "reg", 0xae }, { "trade", 0x2122 }, { "hellip", 0x2026 },
	{ "ndash", 0x2013 }, { "mdash", 0x2014 }, { "lsquo", 0x2018 },
	{ "rsquo", 0x2019 }, { "ldquo", 0x201c }, { "rdquo", 0x201d },
	{ "bull", 0x2022 }, { "middot", 0xb7 }, { "euro", 0x20ac },
	{ "laquo", 0xab }, { "raquo", 0xbb }, { "zwnj", 0x200c },
	{ "zwj", 0x200d }, { "shy", 0xad },
};

/* Numeric references 0x80-0x9f mean windows-1252 (HTML5 13.2.5.80). */
static const uint16_t mime_c1[32] = {
	0x20ac, 0x81, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021,
	0x02c6, 0x2030, 0x0160, 0x2039, 0x0152, 0x8d, 0x017d, 0x8f,
	0x90, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014,
	0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0x9d, 0x017e, 0x0178,
};

/* Tags whose start and end break the line; two: a paragraph. */
static const struct {
	const char	*name;
	int		 lines;
} mime_blocks[] = {
	{ "p", 2 }, { "h1", 2 }, { "h2", 2 }, { "h3", 2 }, { "h4", 2 },
	{ "h5", 2 }, { "h6", 2 }, { "div", 1 }, { "tr", 1 }, { "li", 1 },
	{ "ul", 1 }, { "ol", 1 }, { "dl", 1 }, { "dt", 1 }, { "dd", 1 },
	{ "table", 1 }, { "blockquote", 1 }, { "pre", 1 }, { "hr", 1 },
	{ "section", 1 }, { "article", 1 }, { "header", 1 },
	{ "footer", 1 }, { "address", 1 }, { "center", 1 },
};

/*
 * Parse msg into out: the top-level header fields and the decoded
 * text body; out->truncated names the first limit that cut the walk
 * short.  Returns MIME_OK, or MIME_ENOMEM with out zeroed.
 */
int
mime_parse(const char *msg, size_t len, struct mime_msg *out)
{
	struct mime_ctx	 ctx;
	struct mime_buf	 body;
	int		 r;

	memset(out, 0, sizeof(*out));
	memset(&ctx, 0, sizeof(ctx));
	memset(&body, 0, sizeof(body));
	body.max = MIME_MAX_DECODED;
	ctx.out = out;
	if (msg == NULL || len == 0) {
		msg = "";
		len = 0;
	}
	if ((r = mime_entity(&ctx, msg, msg + len, 0, 0)) != MIME_OK)
		goto fail;
	if (ctx.have_text)
		r = mime_text(&ctx, &ctx.text, 0, &body);
	else if (ctx.have_html)
		r = mime_text(&ctx, &ctx.html, 1, &body);
	else
		r = MIME_OK;
	if (r == MIME_ESIZE) {
		/* mime_text keeps under the cap; should it not, no body */
		mime_truncate(&ctx, MIME_ESIZE);
		free(body.p);
		memset(&body, 0, sizeof(body));
		body.max = MIME_MAX_DECODED;
		r = MIME_OK;
	}
	if (r != MIME_OK || (r = mime_buf_reserve(&body, 0)) != MIME_OK)
		goto fail;
	mime_cd_close(&ctx);
	out->body = body.p;
	out->bodylen = body.len;
	out->truncated = ctx.truncated;
	return MIME_OK;

 fail:
	mime_cd_close(&ctx);
	free(body.p);
	mime_free(out);
	return r;
}

void
mime_free(struct mime_msg *mm)
{
	size_t	 i;

	for (i = 0; i < mm->nhdrs; i++) {
		free(mm->hdrs[i].name);
		free(mm->hdrs[i].value);
	}
	free(mm->hdrs);
	free(mm->subject);
	free(mm->body);
	memset(mm, 0, sizeof(*mm));
}

/* The first (topmost) value of a field, or NULL. */
const char *
mime_header_get(const struct mime_msg *mm, const char *name)
{
	size_t	 i;

	for (i = 0; i < mm->nhdrs; i++)
		if (strcmp(mm->hdrs[i].name, name) == 0)
			return mm->hdrs[i].value;
	return NULL;
}

const char *
mime_strerror(int e)
{
	switch (e) {
	case MIME_OK:
		return "OK";
	case MIME_ENOMEM:
		return "out of memory";
	case MIME_EDEPTH:
		return "MIME nesting too deep";
	case MIME_EPARTS:
		return "too many MIME parts";
	case MIME_EHEADERS:
		return "too many header fields";
	case MIME_ESIZE:
		return "decoded message too large";
	case MIME_EWORDS:
		return "too many encoded words";
	case MIME_ECHARSETS:
		return "too many charsets";
	}
	return "MIME error";
}

/*
 * A NUL-terminated copy of p that is valid UTF-8: every invalid,
 * overlong or surrogate sequence and every NUL becomes U+FFFD.
 */
char *
mime_utf8_clean(const char *p, size_t len, size_t *outlen)
{
	struct mime_buf	 b;

	memset(&b, 0, sizeof(b));
	b.max = (SIZE_MAX - 1) / 3;
	if (mime_clean_append(&b, p, len) != MIME_OK ||
	    mime_buf_reserve(&b, 0) != MIME_OK) {
		free(b.p);
		return NULL;
	}
	*outlen = b.len;
	return b.p;
}

/* Room for n more bytes and a NUL. */
static int
mime_buf_reserve(struct mime_buf *b, size_t n)
{
	size_t	 cap;
	char	*p;

	if (n > b->max || b->len > b->max - n)
		return MIME_ESIZE;
	if (b->p != NULL && b->len + n < b->cap)
		return MIME_OK;
	cap = b->cap > 64 ? b->cap : 64;
	while (cap <= b->len + n)
		cap *= 2;		/* max is far below SIZE_MAX / 2 */
	if ((p = realloc(b->p, cap)) == NULL)
		return MIME_ENOMEM;
	b->p = p;
	b->cap = cap;
	b->p[b->len] = '\0';
	return MIME_OK;
}

static int
mime_buf_add(struct mime_buf *b, const void *p, size_t n)
{
	int	 r;

	if ((r = mime_buf_reserve(b, n)) != MIME_OK)
		return r;
	if (n > 0)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
	return MIME_OK;
}

/*
 * Append p to b as valid UTF-8: every invalid, overlong or surrogate
 * sequence and every NUL becomes U+FFFD.  Eight ASCII bytes at a time
 * where it can.
 */
static int
mime_clean_append(struct mime_buf *b, const char *p, size_t len)
{
	const unsigned char	*s = (const unsigned char *)p;
	const uint64_t		 ones = 0x0101010101010101ULL;
	const uint64_t		 highs = 0x8080808080808080ULL;
	uint64_t		 w;
	uint32_t		 cp;
	size_t			 i = 0, n, k;
	char			*out;
	int			 r;

	if ((r = mime_buf_reserve(b, len)) != MIME_OK)
		return r;
	/* invariant: room for what is left of s, one for one */
	out = b->p;
	while (i < len) {
		unsigned char c;

		if (len - i >= 8) {
			memcpy(&w, s + i, 8);
			if ((w & highs) == 0 &&
			    ((w - ones) & ~w & highs) == 0) {
				memcpy(out + b->len, s + i, 8);
				b->len += 8;
				i += 8;
				continue;
			}
		}
		c = s[i];
		if (c != 0 && c < 0x80) {
			out[b->len++] = (char)c;
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			cp = c & 0x07;
		} else {
			n = 0;
			cp = 0;
		}
		for (k = 1; n > 0 && k <= n; k++) {
			if (i + k >= len || (s[i + k] & 0xc0) != 0x80) {
				n = 0;
				break;
			}
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (n == 0 || (n == 2 && cp < 0x800) ||
		    (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff)) {
			if ((r = mime_buf_reserve(b, len - i +
			    MIME_REPL_LEN)) != MIME_OK)
				return r;
			out = b->p;
			memcpy(out + b->len, MIME_REPL, MIME_REPL_LEN);
			b->len += MIME_REPL_LEN;
			i++;
			continue;
		}
		memcpy(out + b->len, s + i, n + 1);
		b->len += n + 1;
		i += n + 1;
	}
	b->p[b->len] = '\0';
	return MIME_OK;
}

/* Account for n decoded bytes against MIME_MAX_DECODED. */
static int
mime_count(struct mime_ctx *ctx, size_t n)
{
	if (n > MIME_MAX_DECODED - ctx->decoded)
		return MIME_ESIZE;
	ctx->decoded += n;
	return MIME_OK;
}

/* Note that limit why cut the walk short; the first one is kept. */
static void
mime_truncate(struct mime_ctx *ctx, int why)
{
	if (ctx->truncated == 0)
		ctx->truncated = why;
}

/*
 * The header field at *pp: its name and its raw, folded value.
 * Returns 1 for a field; 0 at the end of the header section, with *pp
 * at the body.  A line that does not look like a field ends the header
 * section, as does the empty line (which is skipped).  A field is a
 * name of printable ASCII but ':', any spaces or tabs, ':', and a value
 * that goes on over lines starting with a space or a tab; a NUL or a
 * CR not followed by LF anywhere in it makes it no field.  This is the
 * one reading of a header section: mime.c's, and auth.c's for DKIM and
 * the field rules, so that no field is a field to one and body to the
 * other (libopendkim stops reading a value at a NUL).
 */
int
mime_field_next(const char **pp, const char *end, const char **name,
    size_t *namelen, const char **value, size_t *valuelen)
{
	const char	*p = *pp, *eol, *n, *c, *vend, *next, *q;

	if (p >= end)
		return 0;
	if ((eol = memchr(p, '\n', (size_t)(end - p))) == NULL)
		eol = end;
	if (eol == p || (eol == p + 1 && *p == '\r')) {
		*pp = eol < end ? eol + 1 : end;
		return 0;
	}
	for (n = p; n < eol && *n > ' ' && *n < 0x7f && *n != ':'; n++)
		;
	for (c = n; c < eol && (*c == ' ' || *c == '\t'); c++)
		;
	if (n == p || c == eol || *c != ':')
		return 0;
	/* the field goes on while the next line starts with WSP */
	vend = eol;
	while (vend + 1 < end && (vend[1] == ' ' || vend[1] == '\t')) {
		next = memchr(vend + 1, '\n', (size_t)(end - vend - 1));
		vend = next != NULL ? next : end;
	}
	for (q = c; q < vend; q++)
		if (*q == '\0' || (*q == '\r' && q + 1 < end && q[1] != '\n'))
			return 0;
	*name = p;
	*namelen = (size_t)(n - p);
	*value = c + 1;
	*valuelen = (size_t)(vend - c - 1);
	*pp = vend < end ? vend + 1 : end;
	return 1;
}

/*
 * One entity (the message, or a body part) in [p, end): its header,
 * then its body.  depth is the number of enclosing multiparts; digest
 * is set inside multipart/digest.  Keeps the header fields of the
 * message (depth 0) and notes the first text candidates.
 */
static int
mime_entity(struct mime_ctx *ctx, const char *p, const char *end, int depth,
    int digest)
{
	struct mime_part	 mp;
	const char		*name, *value;
	size_t			 namelen, valuelen, nfields = 0;
	int			 r;

	memset(&mp, 0, sizeof(mp));
	while (mime_field_next(&p, end, &name, &namelen, &value,
	    &valuelen)) {
		/* past the cap, fields are only skipped to find the body */
		if (++nfields > MIME_MAX_HEADERS) {
			mime_truncate(ctx, MIME_EHEADERS);
			continue;
		}
		mime_part_field(&mp, name, namelen, value, valuelen);
		if (depth > 0)
			continue;
		r = mime_header_add(ctx, name, namelen, value, valuelen);
		if (r == MIME_ESIZE)
			mime_truncate(ctx, MIME_ESIZE);	/* field not kept */
		else if (r != MIME_OK)
			return r;
	}
	mp.body = p;
	mp.end = end;
	if (!mp.have_type) {
		if (digest) {
			memcpy(mp.type, "message", sizeof("message"));
			memcpy(mp.subtype, "rfc822", sizeof("rfc822"));
		} else {
			memcpy(mp.type, "text", sizeof("text"));
			memcpy(mp.subtype, "plain", sizeof("plain"));
		}
	}
	if (strcmp(mp.type, "multipart") == 0) {
		if (mp.delimlen > 0)
			return mime_multipart(ctx, &mp, depth + 1);
		/* no boundary: read it as text */
		memcpy(mp.type, "text", sizeof("text"));
		memcpy(mp.subtype, "plain", sizeof("plain"));
	}
	if (mp.attachment || strcmp(mp.type, "text") != 0)
		return MIME_OK;
	if (!ctx->have_text && strcmp(mp.subtype, "plain") == 0) {
		ctx->text = mp;
		ctx->have_text = 1;
	} else if (!ctx->have_html && strcmp(mp.subtype, "html") == 0) {
		ctx->html = mp;
		ctx->have_html = 1;
	}
	return MIME_OK;
}

/* The body parts of a multipart entity, at nesting level depth. */
static int
mime_multipart(struct mime_ctx *ctx, const struct mime_part *mp, int depth)
{
	const char	*p, *q, *next, *partend;
	int		 close, nclose, digest, r;

	if (depth > MIME_MAX_DEPTH) {
		mime_truncate(ctx, MIME_EDEPTH);	/* not walked */
		return MIME_OK;
	}
	digest = strcmp(mp->subtype, "digest") == 0;
	/* the preamble, up to the first delimiter, is ignored */
	if (mime_delim_find(mp->body, mp->body, mp->end, mp->delim,
	    mp->delimlen, &close, &next) == NULL)
		return MIME_OK;
	while (!close) {
		p = next;
		q = mime_delim_find(mp->body, p, mp->end, mp->delim,
		    mp->delimlen, &nclose, &next);
		partend = q != NULL ? q : mp->end;
		/* the line end before a delimiter belongs to it */
		if (q != NULL && q > p && q[-1] == '\n') {
			partend--;
			if (partend > p && partend[-1] == '\r')
				partend--;
		}
		if (++ctx->nparts > MIME_MAX_PARTS) {
			mime_truncate(ctx, MIME_EPARTS);	/* walk ends */
			return MIME_OK;
		}
		if ((r = mime_entity(ctx, p, partend, depth, digest)) !=
		    MIME_OK)
			return r;
		if (q == NULL)
			break;		/* never closed: ran to the end */
		close = nclose;
	}
	/* the epilogue is ignored */
	return MIME_OK;
}

/*
 * The next delimiter line in [p, end), where start is the beginning of
 * the multipart body: delim at the start of a line, "--" for the close
 * delimiter, then only spaces or tabs up to the line end.  Returns its
 * start, with *close set and *next after its line, or NULL.
 */
static const char *
mime_delim_find(const char *start, const char *p, const char *end,
    const char *delim, size_t delimlen, int *close, const char **next)
{
	const char	*q, *r;

	while (p < end && (q = memmem(p, (size_t)(end - p), delim,
	    delimlen)) != NULL) {
		p = q + 1;
		if (q != start && q[-1] != '\n')
			continue;
		r = q + delimlen;
		*close = 0;
		if (end - r >= 2 && r[0] == '-' && r[1] == '-') {
			*close = 1;
			r += 2;
		}
		while (r < end && (*r == ' ' || *r == '\t'))
			r++;
		if (r == end) {
			*next = end;
			return q;
		}
		if (*r == '\n') {
			*next = r + 1;
			return q;
		}
		if (*r == '\r' && (r + 1 == end || r[1] == '\n')) {
			*next = r + 1 == end ? end : r + 2;
			return q;
		}
	}
	return NULL;
}

/* Note what the walk needs from one field of an entity's header. */
static void
mime_part_field(struct mime_part *mp, const char *name, size_t namelen,
    const char *value, size_t valuelen)
{
	const char	*end = value + valuelen;
	char		 tok[MIME_TOKEN_MAX];

	if (namelen == 12 && strncasecmp(name, "content-type", 12) == 0) {
		if (!mp->have_type)
			mime_content_type(mp, value, end);
	} else if (namelen == 25 &&
	    strncasecmp(name, "content-transfer-encoding", 25) == 0) {
		if (mp->have_cte)
			return;
		mp->have_cte = 1;
		mime_token(mime_cfws(value, end), end, tok, sizeof(tok), 1);
		if (strcmp(tok, "quoted-printable") == 0)
			mp->cte = MIME_CTE_QP;
		else if (strcmp(tok, "base64") == 0)
			mp->cte = MIME_CTE_BASE64;
	} else if (namelen == 19 &&
	    strncasecmp(name, "content-disposition", 19) == 0) {
		if (mp->have_disp)
			return;
		mp->have_disp = 1;
		mime_token(mime_cfws(value, end), end, tok, sizeof(tok), 1);
		mp->attachment = strcmp(tok, "attachment") == 0;
	}
}

/* Skip white space, line ends and (nested) comments. */
static const char *
mime_cfws(const char *p, const char *end)
{
	int	 level = 0;

	while (p < end) {
		if (level > 0 && *p == '\\' && end - p >= 2)
			p++;
		else if (*p == '(')
			level++;
		else if (*p == ')' && level > 0)
			level--;
		else if (level == 0 && *p != ' ' && *p != '\t' &&
		    *p != '\r' && *p != '\n')
			break;
		p++;
	}
	return p;
}

/*
 * Copy the token at p (up to white space, ';', '/', '=', '(' or the
 * end) to buf, lower-cased when lower is set; an over-long token is
 * copied as "".  Returns the end of the token.
 */
static const char *
mime_token(const char *p, const char *end, char *buf, size_t size,
    int lower)
{
	size_t	 n = 0;

	for (; p < end && *p > ' ' && *p != ';' && *p != '/' && *p != '=' &&
	    *p != '(' && *p != 0x7f; p++) {
		if (n + 1 < size)
			buf[n] = lower ? (char)tolower((unsigned char)*p) : *p;
		n++;
	}
	if (n >= size)
		n = 0;
	buf[n] = '\0';
	return p;
}

/*
 * Content-Type: type "/" subtype *(";" parameter).  Parameter values
 * are tokens or quoted strings; the charset, boundary, format and
 * delsp parameters are kept.  An unreadable type leaves text/plain.
 */
static void
mime_content_type(struct mime_part *mp, const char *p, const char *end)
{
	char	 name[MIME_TOKEN_MAX], val[MIME_BOUNDARY_MAX + 1];
	size_t	 n;
	int	 quoted;

	p = mime_token(mime_cfws(p, end), end, mp->type, sizeof(mp->type),
	    1);
	p = mime_cfws(p, end);
	if (mp->type[0] == '\0' || p >= end || *p != '/')
		return;
	p = mime_token(mime_cfws(p + 1, end), end, mp->subtype,
	    sizeof(mp->subtype), 1);
	if (mp->subtype[0] == '\0')
		return;
	mp->have_type = 1;
	while (p < end) {
		/* to the next ';', whatever is in the way */
		while (p < end && *p != ';') {
			if (*p == '"') {
				for (p++; p < end && *p != '"'; p++)
					if (*p == '\\' && end - p >= 2)
						p++;
			}
			if (p < end)
				p++;
		}
		if (p >= end)
			break;
		p = mime_token(mime_cfws(p + 1, end), end, name, sizeof(name),
		    1);
		p = mime_cfws(p, end);
		if (p >= end || *p != '=')
			continue;
		p = mime_cfws(p + 1, end);
		n = 0;
		quoted = p < end && *p == '"';
		if (quoted) {
			for (p++; p < end && *p != '"'; p++) {
				if (*p == '\\' && end - p >= 2)
					p++;
				else if (*p == '\r' || *p == '\n')
					continue;
				if (n < sizeof(val))
					val[n] = *p;
				n++;
			}
			if (p < end)
				p++;
		} else {
			for (; p < end && *p != ';' && *p != ' ' &&
			    *p != '\t' && *p != '\r' && *p != '\n'; p++) {
				if (n < sizeof(val))
					val[n] = *p;
				n++;
			}
		}
		if (n >= sizeof(val))
			continue;	/* too long to be of use */
		while (n > 0 && (val[n - 1] == ' ' || val[n - 1] == '\t'))
			n--;
		val[n] = '\0';
		if (strcmp(name, "charset") == 0) {
			if (n < sizeof(mp->charset))
				memcpy(mp->charset, val, n + 1);
		} else if (strcmp(name, "boundary") == 0) {
			if (n > 0 && n <= MIME_BOUNDARY_MAX &&
			    memchr(val, '\0', n) == NULL) {
				memcpy(mp->delim, "--", 2);
				memcpy(mp->delim + 2, val, n);
				mp->delimlen = n + 2;
				mp->delim[mp->delimlen] = '\0';
			}
		} else if (strcmp(name, "format") == 0)
			mp->flowed = strcasecmp(val, "flowed") == 0;
		else if (strcmp(name, "delsp") == 0)
			mp->delsp = strcasecmp(val, "yes") == 0;
	}
}

/*
 * Keep one field of the message header: the name lower-cased, the
 * value unfolded, trimmed, RFC 2047 decoded, valid UTF-8, with every
 * control but TAB made a space.
 */
static int
mime_header_add(struct mime_ctx *ctx, const char *name, size_t namelen,
    const char *value, size_t valuelen)
{
	struct mime_msg		*mm = ctx->out;
	struct mime_header	*h;
	struct mime_buf		 b;
	char			*lname;
	size_t			 i;
	int			 r;

	memset(&b, 0, sizeof(b));
	b.max = MIME_MAX_DECODED;
	if ((r = mime_header_decode(ctx, value, valuelen, &b)) != MIME_OK) {
		free(b.p);
		return r;
	}
	if ((r = mime_count(ctx, b.len)) != MIME_OK) {
		free(b.p);
		return r;
	}
	if ((lname = malloc(namelen + 1)) == NULL) {
		free(b.p);
		return MIME_ENOMEM;
	}
	for (i = 0; i < namelen; i++)
		lname[i] = (char)tolower((unsigned char)name[i]);
	lname[namelen] = '\0';
	if (mm->subject == NULL && strcmp(lname, "subject") == 0 &&
	    (mm->subject = strdup(b.p)) == NULL) {
		free(lname);
		free(b.p);
		return MIME_ENOMEM;
	}
	h = reallocarray(mm->hdrs, mm->nhdrs + 1, sizeof(*h));
	if (h == NULL) {
		free(lname);
		free(b.p);
		return MIME_ENOMEM;
	}
	mm->hdrs = h;
	mm->hdrs[mm->nhdrs].name = lname;
	mm->hdrs[mm->nhdrs].value = b.p;
	mm->nhdrs++;
	return MIME_OK;
}

/*
 * Decode one raw header value into out (see mime_header_add).
 * Adjacent encoded words, separated by white space only, are joined
 * without it; the bytes of adjacent words in one charset are converted
 * together, so a character split between two words survives.  Past
 * MIME_MAX_FIELD_WORDS words in the field, or MIME_MAX_WORDS in the
 * message, the rest of the value is kept as it is.
 */
static int
mime_header_decode(struct mime_ctx *ctx, const char *value, size_t valuelen,
    struct mime_buf *out)
{
	struct mime_buf	 raw, pend, tmp;
	struct mime_ew	 ew;
	const char	*v, *end, *w, *ws;
	const char	*pstart = NULL, *pend_end = NULL;
	char		 pcs[MIME_TOKEN_MAX], ncs[MIME_TOKEN_MAX];
	size_t		 i, n, nwords = 0;
	int		 r = MIME_OK, lastew = 0, pending = 0;

	memset(&ew, 0, sizeof(ew));
	memset(&raw, 0, sizeof(raw));
	memset(&pend, 0, sizeof(pend));
	memset(&tmp, 0, sizeof(tmp));
	raw.max = pend.max = tmp.max = MIME_MAX_DECODED;
	pcs[0] = '\0';

	/* unfold: drop CR and LF, keep the WSP that follows; trim */
	if ((r = mime_buf_reserve(&raw, valuelen)) != MIME_OK)
		goto done;
	for (i = 0; i < valuelen; i++)
		if (value[i] != '\r' && value[i] != '\n')
			raw.p[raw.len++] = value[i];
	v = raw.p;
	end = raw.p + raw.len;
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;

	while (v < end) {
		if (nwords >= MIME_MAX_FIELD_WORDS ||
		    ctx->nwords >= MIME_MAX_WORDS) {
			/* the rest as it is, white space before it too */
			if (pending && (r = mime_ew_flush(ctx, &tmp, &pend,
			    pcs, pstart, pend_end)) != MIME_OK)
				goto done;
			pending = 0;
			if (memmem(v, (size_t)(end - v), "=?", 2) != NULL)
				mime_truncate(ctx, MIME_EWORDS);
			if ((r = mime_buf_add(&tmp, v, (size_t)(end - v))) !=
			    MIME_OK)
				goto done;
			break;
		}
		if (end - v >= 2 && v[0] == '=' && v[1] == '?' &&
		    (w = mime_ew_parse(v, end, &ew)) != NULL) {
			nwords++;
			ctx->nwords++;
			mime_charset(ew.cs, ew.cslen, ncs, sizeof(ncs));
			if (pending && strcmp(ncs, pcs) != 0) {
				if ((r = mime_ew_flush(ctx, &tmp, &pend, pcs,
				    pstart, pend_end)) != MIME_OK)
					goto done;
				pending = 0;
			}
			if (!pending) {
				pstart = v;
				memcpy(pcs, ncs, sizeof(pcs));
				pending = 1;
			}
			/* decoded, B or Q, never longer than encoded */
			if ((r = mime_buf_reserve(&pend, ew.textlen)) !=
			    MIME_OK)
				goto done;
			if (ew.enc == 'b')
				n = mime_b64_decode(ew.text, ew.textlen,
				    pend.p + pend.len);
			else
				n = mime_qp_decode(ew.text, ew.textlen,
				    pend.p + pend.len, 1);
			pend.len += n;
			pend.p[pend.len] = '\0';
			v = pend_end = w;
			lastew = 1;
			continue;
		}
		if (lastew && (*v == ' ' || *v == '\t')) {
			/* white space between two encoded words goes */
			for (ws = v; ws < end && (*ws == ' ' || *ws == '\t');
			    ws++)
				;
			if (end - ws >= 2 && ws[0] == '=' && ws[1] == '?' &&
			    mime_ew_parse(ws, end, &ew) != NULL) {
				v = ws;
				continue;
			}
		}
		if (pending) {
			if ((r = mime_ew_flush(ctx, &tmp, &pend, pcs, pstart,
			    pend_end)) != MIME_OK)
				goto done;
			pending = 0;
		}
		lastew = 0;
		/* plain text up to the next "=?" */
		for (w = v + 1; w < end && !(w[0] == '=' && end - w >= 2 &&
		    w[1] == '?'); w++)
			;
		if ((r = mime_buf_add(&tmp, v, (size_t)(w - v))) != MIME_OK)
			goto done;
		v = w;
	}
	if (pending && (r = mime_ew_flush(ctx, &tmp, &pend, pcs, pstart,
	    pend_end)) != MIME_OK)
		goto done;

	/* valid UTF-8; controls but TAB, C1 controls included, a space */
	if ((r = mime_clean_append(out, tmp.p != NULL ? tmp.p : "",
	    tmp.len)) != MIME_OK)
		goto done;
	for (i = 0, n = 0; i < out->len; i++) {
		unsigned char c = (unsigned char)out->p[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			c = ' ';
		else if (c == 0xc2 && i + 1 < out->len &&
		    (unsigned char)out->p[i + 1] < 0xa0) {
			c = ' ';
			i++;
		}
		out->p[n++] = (char)c;
	}
	while (n > 0 && (out->p[n - 1] == ' ' || out->p[n - 1] == '\t'))
		n--;
	for (i = 0; i < n && (out->p[i] == ' ' || out->p[i] == '\t'); i++)
		;
	memmove(out->p, out->p + i, n - i);
	out->len = n - i;
	out->p[out->len] = '\0';
 done:
	free(raw.p);
	free(pend.p);
	free(tmp.p);
	return r;
}

/*
 * An encoded word "=?charset?B|Q?text?=" at p (RFC 2047 2) into ew; a
 * language suffix ("charset*lang", RFC 2231 5) is dropped.  Returns
 * the end of the word, or NULL when there is none at p.  A text that
 * runs into white space or the end without "?=" is noted in ew, so
 * that words starting inside it fail at once: no quadratic rescans.
 */
static const char *
mime_ew_parse(const char *p, const char *end, struct mime_ew *ew)
{
	const char	*q, *star;

	ew->cs = q = p + 2;
	while (q < end && q - ew->cs < MIME_TOKEN_MAX && *q != '?' &&
	    *q > ' ' && *q < 0x7f)
		q++;
	if (q == ew->cs || end - q < 4 || *q != '?' || q[2] != '?')
		return NULL;
	ew->cslen = (size_t)(q - ew->cs);
	if ((star = memchr(ew->cs, '*', ew->cslen)) != NULL)
		ew->cslen = (size_t)(star - ew->cs);
	if (ew->cslen == 0 || ew->cslen >= MIME_TOKEN_MAX)
		return NULL;
	ew->enc = tolower((unsigned char)q[1]);
	if (ew->enc != 'b' && ew->enc != 'q')
		return NULL;
	ew->text = q += 3;
	if (ew->bare_from != NULL && q >= ew->bare_from && q < ew->bare_to)
		return NULL;
	for (; end - q >= 2 && !(q[0] == '?' && q[1] == '='); q++)
		if (*q == ' ' || *q == '\t')
			break;
	if (end - q < 2 || *q == ' ' || *q == '\t') {
		ew->bare_from = ew->text;
		ew->bare_to = end - q < 2 ? end : q;
		return NULL;
	}
	ew->textlen = (size_t)(q - ew->text);
	return q + 2;
}

/*
 * Convert the bytes decoded from a run of encoded words in charset cs
 * and append them to out.  A charset iconv does not know keeps the
 * raw text of the words, [rawstart, rawend).
 */
static int
mime_ew_flush(struct mime_ctx *ctx, struct mime_buf *out,
    struct mime_buf *pend, const char *cs, const char *rawstart,
    const char *rawend)
{
	int	 r, known = 0;

	if (cs[0] == '\0')
		r = mime_buf_add(out, pend->p, pend->len);
	else if ((r = mime_iconv(ctx, cs, pend->p, pend->len, out, &known,
	    0)) == MIME_OK && !known) {
		r = mime_buf_add(out, rawstart, (size_t)(rawend - rawstart));
	}
	pend->len = 0;
	return r;
}

/*
 * The iconv name of charset name[0..len) into buf: "" when the text
 * is to be read as UTF-8 (also for names that are not plain tokens).
 * Returns 0 for "", else 1.
 */
static int
mime_charset(const char *name, size_t len, char *buf, size_t size)
{
	char	 lc[MIME_TOKEN_MAX];
	size_t	 i;

	buf[0] = '\0';
	if (len == 0 || len >= sizeof(lc) || len >= size)
		return 0;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (!isalnum(c) && c != '-' && c != '_' && c != '.' &&
		    c != ':' && c != '+')
			return 0;	/* no '/': iconv reads suffixes */
		lc[i] = (char)tolower(c);
	}
	lc[len] = '\0';
	for (i = 0; i < sizeof(mime_charsets) / sizeof(mime_charsets[0]);
	    i++) {
		if (strcmp(lc, mime_charsets[i].name) != 0)
			continue;
		if (mime_charsets[i].iconv == NULL)
			return 0;
		if (strlcpy(buf, mime_charsets[i].iconv, size) >= size) {
			buf[0] = '\0';
			return 0;
		}
		return 1;
	}
	for (i = 0; i <= len; i++)
		buf[i] = (char)toupper((unsigned char)lc[i]);
	return 1;
}

/*
 * The converter from cs (an iconv name) to UTF-8 into *cd, from the
 * message's table, opened there at first use: (iconv_t)-1 when iconv
 * does not know cs, or when the table is full.  With spare set, a full
 * table opens one anyway and sets *owned: the caller closes it.
 */
static int
mime_cd_get(struct mime_ctx *ctx, const char *cs, int spare, iconv_t *cd,
    int *owned)
{
	struct mime_cd	*c;
	size_t		 i;

	*owned = 0;
	for (i = 0; i < ctx->ncds; i++)
		if (strcmp(ctx->cds[i].cs, cs) == 0) {
			*cd = ctx->cds[i].cd;
			return MIME_OK;
		}
	if (ctx->ncds == MIME_MAX_CHARSETS && !spare) {
		mime_truncate(ctx, MIME_ECHARSETS);
		*cd = (iconv_t)-1;
		return MIME_OK;
	}
	if ((*cd = iconv_open("UTF-8", cs)) == (iconv_t)-1 && errno == ENOMEM)
		return MIME_ENOMEM;
	if (ctx->ncds == MIME_MAX_CHARSETS) {
		*owned = *cd != (iconv_t)-1;
		return MIME_OK;
	}
	c = &ctx->cds[ctx->ncds];
	if (strlcpy(c->cs, cs, sizeof(c->cs)) >= sizeof(c->cs)) {
		*owned = *cd != (iconv_t)-1;	/* cannot be: not kept */
		return MIME_OK;
	}
	c->cd = *cd;
	ctx->ncds++;
	return MIME_OK;
}

/* Close the converters of the message. */
static void
mime_cd_close(struct mime_ctx *ctx)
{
	size_t	 i;

	for (i = 0; i < ctx->ncds; i++)
		if (ctx->cds[i].cd != (iconv_t)-1)
			iconv_close(ctx->cds[i].cd);
	ctx->ncds = 0;
}

/*
 * Append in[0..inlen) converted from cs to UTF-8 to out.  An invalid
 * or truncated sequence becomes U+FFFD.  *known is 0, and nothing is
 * appended, when iconv cannot convert from cs (or, without spare, the
 * table of converters is full: see mime_cd_get).
 */
static int
mime_iconv(struct mime_ctx *ctx, const char *cs, const char *in,
    size_t inlen, struct mime_buf *out, int *known, int spare)
{
	iconv_t		 cd;
	char		*ip, *op;
	size_t		 il, ol, rc;
	int		 r, e, owned;

	*known = 0;
	if ((r = mime_cd_get(ctx, cs, spare, &cd, &owned)) != MIME_OK ||
	    cd == (iconv_t)-1)
		return r;
	*known = 1;
	/* from the initial state, whatever the last use left */
	iconv(cd, NULL, NULL, NULL, NULL);
	ip = (char *)(uintptr_t)in;
	il = inlen;
	if ((r = mime_buf_reserve(out, il + il / 2 + 16)) != MIME_OK)
		goto done;
	while (il > 0) {
		op = out->p + out->len;
		ol = out->cap - out->len - 1;
		rc = iconv(cd, &ip, &il, &op, &ol);
		e = errno;
		out->len = (size_t)(op - out->p);
		if (rc != (size_t)-1)
			break;
		if (e == E2BIG) {
			if ((r = mime_buf_reserve(out, il * 2 + 16)) !=
			    MIME_OK)
				goto done;
			continue;
		}
		/* EILSEQ and the rest: one replacement, then go on */
		if ((r = mime_buf_add(out, MIME_REPL, MIME_REPL_LEN)) !=
		    MIME_OK)
			goto done;
		if (e == EINVAL)
			break;		/* truncated at the end */
		ip++;
		il--;
		if ((r = mime_buf_reserve(out, il + 16)) != MIME_OK)
			goto done;
	}
	/* back to the initial state (stateful charsets) */
	for (;;) {
		op = out->p + out->len;
		ol = out->cap - out->len - 1;
		rc = iconv(cd, NULL, NULL, &op, &ol);
		e = errno;
		out->len = (size_t)(op - out->p);
		if (rc != (size_t)-1 || e != E2BIG)
			break;
		if ((r = mime_buf_reserve(out, 64)) != MIME_OK)
			goto done;
	}
	out->p[out->len] = '\0';
 done:
	if (owned)
		iconv_close(cd);
	return r;
}

/*
 * Append in[0..inlen), text in charset cs (a parameter value as
 * given), to out as valid UTF-8.
 */
static int
mime_to_utf8(struct mime_ctx *ctx, const char *cs, const char *in,
    size_t inlen, struct mime_buf *out)
{
	struct mime_buf	 tmp;
	char		 ics[MIME_TOKEN_MAX];
	int		 r, known;

	if (!mime_charset(cs, strlen(cs), ics, sizeof(ics)))
		return mime_clean_append(out, in, inlen);
	memset(&tmp, 0, sizeof(tmp));
	tmp.max = out->max;
	if ((r = mime_iconv(ctx, ics, in, inlen, &tmp, &known, 1)) ==
	    MIME_OK) {
		/* iconv may pass NUL, and is not trusted to be valid */
		r = known ? mime_clean_append(out, tmp.p, tmp.len) :
		    mime_clean_append(out, in, inlen);
	}
	free(tmp.p);
	return r;
}

static int
mime_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/*
 * Quoted-printable (RFC 2045 6.7) into out, which has room for len
 * bytes; returns the length.  "=" and white space before a line end is
 * a soft line break; an invalid escape is kept as it is.  With
 * header set, the Q encoding of RFC 2047: '_' is a space.
 */
static size_t
mime_qp_decode(const char *s, size_t len, char *out, int header)
{
	const char	*p = s, *end = s + len, *q, *r;
	size_t		 o = 0;
	int		 hi, lo;

	while (p < end) {
		if ((q = memchr(p, '=', (size_t)(end - p))) == NULL)
			q = end;
		if (header) {
			for (; p < q; p++)
				out[o++] = *p == '_' ? ' ' : *p;
		} else {
			memcpy(out + o, p, (size_t)(q - p));
			o += (size_t)(q - p);
		}
		if ((p = q) == end)
			break;
		if (end - p >= 3 && (hi = mime_hexval((unsigned char)p[1])) !=
		    -1 && (lo = mime_hexval((unsigned char)p[2])) != -1) {
			out[o++] = (char)(hi << 4 | lo);
			p += 3;
			continue;
		}
		for (r = p + 1; r < end && (*r == ' ' || *r == '\t'); r++)
			;
		if (r == end) {
			p = end;	/* "=" at the very end */
			continue;
		}
		if (*r == '\n') {
			p = r + 1;
			continue;
		}
		if (*r == '\r' && (r + 1 == end || r[1] == '\n')) {
			p = r + 1 == end ? end : r + 2;
			continue;
		}
		out[o++] = '=';
		p++;
	}
	return o;
}

/*
 * Base64 into out, which has room for len * 3 / 4 + 3 bytes; returns
 * the length.  Characters outside the alphabet are skipped; padding
 * ends the data.
 */
static size_t
mime_b64_decode(const char *s, size_t len, char *out)
{
	const unsigned char	*u = (const unsigned char *)s;
	uint32_t		 acc = 0;
	size_t			 i = 0, o = 0;
	unsigned int		 a, b, c, d, v, n = 0;

	while (i < len) {
		if (n == 0 && len - i >= 4) {
			a = MIME_B64_VALUE(u[i]);
			b = MIME_B64_VALUE(u[i + 1]);
			c = MIME_B64_VALUE(u[i + 2]);
			d = MIME_B64_VALUE(u[i + 3]);
			if ((a | b | c | d) < 64) {
				acc = a << 18 | b << 12 | c << 6 | d;
				out[o++] = (char)(acc >> 16);
				out[o++] = (char)(acc >> 8);
				out[o++] = (char)acc;
				i += 4;
				continue;
			}
		}
		v = MIME_B64_VALUE(u[i]);
		i++;
		if (v == 64)
			break;
		if (v > 64)
			continue;
		acc = acc << 6 | v;
		if (++n == 4) {
			out[o++] = (char)(acc >> 16);
			out[o++] = (char)(acc >> 8);
			out[o++] = (char)acc;
			n = 0;
			acc = 0;
		}
	}
	if (n == 2)
		out[o++] = (char)(acc >> 4);
	else if (n == 3) {
		out[o++] = (char)(acc >> 10);
		out[o++] = (char)(acc >> 2);
	}
	return o;
}

/*
 * The text of one part into out: transfer-decoded, converted to UTF-8,
 * unflowed (format=flowed) or, for html, turned into text.
 */
static int
mime_text(struct mime_ctx *ctx, const struct mime_part *mp, int html,
    struct mime_buf *out)
{
	struct mime_buf	 dec, utf;
	const char	*src = mp->body;
	char		 cs[MIME_TOKEN_MAX];
	size_t		 len = (size_t)(mp->end - mp->body);
	int		 r;

	memset(&dec, 0, sizeof(dec));
	memset(&utf, 0, sizeof(utf));
	dec.max = utf.max = MIME_MAX_DECODED;
	/* decoded once, to UTF-8 at most three times longer: under the cap */
	if (len > (MIME_MAX_DECODED - ctx->decoded) / 4) {
		len = (MIME_MAX_DECODED - ctx->decoded) / 4;
		mime_truncate(ctx, MIME_ESIZE);
	}
	if (mp->cte != MIME_CTE_IDENTITY) {
		if ((r = mime_buf_reserve(&dec, mp->cte == MIME_CTE_QP ? len :
		    len / 4 * 3 + 3)) != MIME_OK)
			goto done;
		if (mp->cte == MIME_CTE_QP)
			dec.len = mime_qp_decode(src, len, dec.p, 0);
		else
			dec.len = mime_b64_decode(src, len, dec.p);
		dec.p[dec.len] = '\0';
		if ((r = mime_count(ctx, dec.len)) != MIME_OK)
			goto done;
		src = dec.p;
		len = dec.len;
	}
	memcpy(cs, mp->charset, sizeof(cs));
	if (html && cs[0] == '\0')
		mime_html_sniff(src, len, cs, sizeof(cs));
	if ((r = mime_to_utf8(ctx, cs, src, len, &utf)) != MIME_OK)
		goto done;
	if ((r = mime_count(ctx, utf.len)) != MIME_OK)
		goto done;
	free(dec.p);
	dec.p = NULL;
	if (html) {
		if ((r = mime_buf_reserve(out, utf.len)) != MIME_OK)
			goto done;
		out->len = mime_html_text(utf.p, utf.len, out->p);
		out->p[out->len] = '\0';
	} else {
		if (mp->flowed)
			utf.len = mime_unflow(utf.p, utf.len, mp->delsp);
		utf.p[utf.len] = '\0';
		*out = utf;
		utf.p = NULL;
	}
 done:
	free(dec.p);
	free(utf.p);
	return r;
}

/*
 * Undo format=flowed (RFC 3676 4) in place: a line that ends in a
 * space goes on in the next line of the same quote depth; stuffed
 * spaces go.  Returns the new length.
 */
static size_t
mime_unflow(char *s, size_t len, int delsp)
{
	size_t	 i = 0, o = 0, ls, le, next, c, depth, pdepth = 0;
	size_t	 eol, peollen = 0;
	char	 peol[2];
	char	*nlp;
	int	 joining = 0, flowed;

	while (i < len) {
		ls = i;
		nlp = memchr(s + ls, '\n', len - ls);
		le = nlp != NULL ? (size_t)(nlp - s) : len;
		next = le < len ? le + 1 : len;
		if (le > ls && s[le - 1] == '\r')
			le--;
		eol = le;
		for (c = ls; c < le && s[c] == '>'; c++)
			;
		depth = c - ls;
		if (c < le && s[c] == ' ')
			c++;		/* stuffed, or after the quote marks */
		flowed = le > c && s[le - 1] == ' ' &&
		    !(le - c == 3 && memcmp(s + c, "-- ", 3) == 0);
		if (joining && depth != pdepth) {
			/* a quote depth change ends the paragraph */
			memcpy(s + o, peol, peollen);
			o += peollen;
			joining = 0;
		}
		if (!joining && depth > 0) {
			/* the quote marks stay, and the space after them */
			memmove(s + o, s + ls, c - ls);
			o += c - ls;
		}
		if (flowed && delsp)
			le--;
		memmove(s + o, s + c, le - c);
		o += le - c;
		if (flowed) {
			/* its line end is kept for a depth change */
			peollen = next - eol;	/* 0, 1 or 2 */
			memcpy(peol, s + eol, peollen);
			joining = 1;
			pdepth = depth;
		} else {
			memmove(s + o, s + le, next - le);	/* line end */
			o += next - le;
			joining = 0;
		}
		i = next;
	}
	return o;
}

/* A charset named in the first bytes of an HTML document, if any. */
static void
mime_html_sniff(const char *s, size_t len, char *cs, size_t size)
{
	const char	*p, *end;
	size_t		 n = 0;

	if (len > MIME_SNIFF_MAX)
		len = MIME_SNIFF_MAX;
	if ((p = mime_memcasemem(s, len, "charset=")) == NULL)
		return;
	end = s + len;
	p += 8;
	if (p < end && (*p == '"' || *p == '\''))
		p++;
	while (p < end && n + 1 < size &&
	    (isalnum((unsigned char)*p) || *p == '-' || *p == '_' ||
	    *p == '.' || *p == ':'))
		cs[n++] = *p++;
	cs[n] = '\0';
}

/*
 * The text of an HTML document into out (room for len + 1 bytes):
 * tags and comments go, as do the contents of script, style and
 * title; block tags break lines; white space runs become one space;
 * entities are decoded.  Returns the length.
 */
static size_t
mime_html_text(const char *s, size_t len, char *out)
{
	const char	*p = s, *end = s + len, *q, *t;
	char		 name[16], skip[16], ent[8];
	size_t		 o = 0, n, i, k;
	int		 nl = 2, sp = 0, closing, lines, pre = 0;

	while (p < end) {
		unsigned char c = (unsigned char)*p;

		if (c == '<' && end - p >= 2 && (p[1] == '!' || p[1] == '?')) {
			if (end - p >= 4 && memcmp(p, "<!--", 4) == 0) {
				q = memmem(p + 4, (size_t)(end - p - 4), "-->",
				    3);
				p = q != NULL ? q + 3 : end;
			} else {
				q = memchr(p, '>', (size_t)(end - p));
				p = q != NULL ? q + 1 : end;
			}
			continue;
		}
		if (c == '<' && end - p >= 2 &&
		    (isalpha((unsigned char)p[1]) || (p[1] == '/' &&
		    end - p >= 3 && isalpha((unsigned char)p[2])))) {
			closing = p[1] == '/';
			q = p + 1 + closing;
			for (n = 0; q < end && isalnum((unsigned char)*q);
			    q++, n++)
				if (n + 1 < sizeof(name))
					name[n] = (char)tolower(
					    (unsigned char)*q);
			name[n < sizeof(name) ? n : 0] = '\0';
			/* to the end of the tag, past quoted values */
			while (q < end && *q != '>') {
				if (*q == '"' || *q == '\'') {
					t = memchr(q + 1, *q,
					    (size_t)(end - q - 1));
					q = t != NULL ? t : end;
				}
				if (q < end)
					q++;
			}
			p = q < end ? q + 1 : end;
			if (!closing && (strcmp(name, "script") == 0 ||
			    strcmp(name, "style") == 0 ||
			    strcmp(name, "title") == 0)) {
				/* skip to the end tag */
				k = (size_t)snprintf(skip, sizeof(skip), "</%s",
				    name);
				if (k >= sizeof(skip))
					continue;
				q = mime_memcasemem(p, (size_t)(end - p), skip);
				if (q == NULL) {
					p = end;
					continue;
				}
				t = memchr(q, '>', (size_t)(end - q));
				p = t != NULL ? t + 1 : end;
				continue;
			}
			if (strcmp(name, "br") == 0) {
				if (nl < 2 && o > 0) {
					out[o++] = '\n';
					nl++;
				}
				sp = 0;
				continue;
			}
			if (strcmp(name, "td") == 0 ||
			    strcmp(name, "th") == 0) {
				if (closing && nl == 0)
					sp = 1;
				continue;
			}
			if (strcmp(name, "pre") == 0)
				pre = !closing;
			lines = 0;
			for (i = 0; i < sizeof(mime_blocks) /
			    sizeof(mime_blocks[0]); i++)
				if (strcmp(name, mime_blocks[i].name) == 0) {
					lines = mime_blocks[i].lines;
					break;
				}
			while (o > 0 && nl < lines) {
				out[o++] = '\n';
				nl++;
			}
			if (lines > 0)
				sp = 0;
			continue;
		}
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n' ||
		    c == '\f') {
			p++;
			if (pre && c == '\n') {
				out[o++] = '\n';
				nl = nl < 2 ? nl + 1 : 2;
				sp = 0;
			} else if (pre && c != '\r') {
				out[o++] = (char)c;
				nl = 0;
			} else if (!pre && nl == 0)
				sp = 1;
			continue;
		}
		if (sp) {
			out[o++] = ' ';
			sp = 0;
		}
		nl = 0;
		if (c == '&' && (n = mime_html_entity(p, (size_t)(end - p),
		    ent)) > 0) {
			for (i = 0; ent[i] != '\0'; i++)
				out[o++] = ent[i];
			p += n;
			continue;
		}
		/* a run of ordinary text */
		for (q = p + 1; q < end && *q != '<' && *q != '&' &&
		    *q != ' ' && *q != '\n' && *q != '\r' && *q != '\t' &&
		    *q != '\f'; q++)
			;
		memcpy(out + o, p, (size_t)(q - p));
		o += (size_t)(q - p);
		p = q;
	}
	while (o > 0 && (out[o - 1] == '\n' || out[o - 1] == ' '))
		o--;
	out[o] = '\0';
	return o;
}

/*
 * The character reference at s ("&name;", "&#NNN;", "&#xHH;") as
 * UTF-8 into out (8 bytes, NUL-terminated).  Returns the length of the
 * reference, or 0 to keep it as it is.
 */
static size_t
mime_html_entity(const char *s, size_t len, char *out)
{
	char		 name[MIME_ENTITY_MAX + 1];
	size_t		 i, n;
	uint32_t	 cp = 0;
	int		 hex, d;

	if (len < 3)
		return 0;
	if (s[1] == '#') {
		hex = s[2] == 'x' || s[2] == 'X';
		i = hex ? 3 : 2;
		for (n = 0; i < len && n < 8; i++, n++) {
			d = mime_hexval((unsigned char)s[i]);
			if (d == -1 || (!hex && d > 9))
				break;
			cp = cp * (hex ? 16 : 10) + (uint32_t)d;
		}
		if (n == 0 || i >= len || s[i] != ';' || cp == 0 ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		if (cp >= 0x80 && cp <= 0x9f)
			cp = mime_c1[cp - 0x80];
		out[mime_utf8_put(cp, out)] = '\0';
		return i + 1;
	}
	for (i = 1, n = 0; i < len && n < MIME_ENTITY_MAX &&
	    isalnum((unsigned char)s[i]); i++, n++)
		name[n] = s[i];
	name[n] = '\0';
	if (n == 0 || i >= len || s[i] != ';')
		return 0;
	for (n = 0; n < sizeof(mime_entities) / sizeof(mime_entities[0]);
	    n++)
		if (strcmp(name, mime_entities[n].name) == 0) {
			out[mime_utf8_put(mime_entities[n].cp, out)] = '\0';
			return i + 1;
		}
	return 0;
}

/* cp (valid, not a surrogate) as UTF-8; returns the length. */
static size_t
mime_utf8_put(uint32_t cp, char *out)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | cp >> 6);
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | cp >> 12);
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | cp >> 18);
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* The first place of the ASCII string needle in s, ignoring case. */
static const char *
mime_memcasemem(const char *s, size_t len, const char *needle)
{
	const char	*p = s, *end = s + len, *q;
	size_t		 n = strlen(needle);
	char		 f[2];

	f[0] = (char)tolower((unsigned char)needle[0]);
	f[1] = (char)toupper((unsigned char)needle[0]);
	while ((size_t)(end - p) >= n) {
		q = memchr(p, f[0], (size_t)(end - p - n + 1));
		if (f[1] != f[0]) {
			const char *q2 = memchr(p, f[1],
			    q != NULL ? (size_t)(q - p) :
			    (size_t)(end - p - n + 1));

			if (q2 != NULL)
				q = q2;
		}
		if (q == NULL)
			return NULL;
		if (strncasecmp(q, needle, n) == 0)
			return q;
		p = q + 1;
	}
	return NULL;
}
