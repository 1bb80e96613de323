/*
 * Message parsing: RFC 5322 header fields (unfolded, names in lower
 * case) and the body.  Transfer and charset decoding come with MIME.
 */

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd.h"

#define MIME_MAX_HEADERS	1000

static int	mime_header_add(struct mime_msg *, const char *, size_t,
		    const char *, size_t);

/*
 * Split msg into header fields and body.  A line that does not look
 * like a field ends the header section, as does the empty line.
 * Returns 0, or -1 when out of memory.
 */
int
mime_parse(const char *msg, size_t len, struct mime_msg *mm)
{
	const char	*p = msg, *end = msg + len, *eol, *name, *colon;
	const char	*vstart, *vend;

	memset(mm, 0, sizeof(*mm));
	while (p < end) {
		if ((eol = memchr(p, '\n', (size_t)(end - p))) == NULL)
			eol = end;
		if (eol == p || (eol == p + 1 && *p == '\r')) {
			p = eol < end ? eol + 1 : end;
			break;		/* the empty line */
		}
		name = p;
		for (colon = p; colon < eol && *colon != ':' &&
		    *colon > ' ' && *colon < 0x7f; colon++)
			;
		if (colon == eol || *colon != ':' || colon == name)
			break;		/* not a field: body starts here */
		vstart = colon + 1;
		/* the field goes on while the next line starts with WSP */
		vend = eol;
		while (vend + 1 < end && (vend[1] == ' ' || vend[1] == '\t')) {
			const char *next = memchr(vend + 1, '\n',
			    (size_t)(end - vend - 1));

			vend = next != NULL ? next : end;
		}
		if (mm->nhdrs < MIME_MAX_HEADERS &&
		    mime_header_add(mm, name, (size_t)(colon - name), vstart,
		    (size_t)(vend - vstart)) == -1) {
			mime_free(mm);
			return -1;
		}
		p = vend < end ? vend + 1 : end;
	}
	mm->body = p;
	mm->bodylen = (size_t)(end - p);
	return 0;
}

/* Add one field: the name lower-cased, the value unfolded and trimmed. */
static int
mime_header_add(struct mime_msg *mm, const char *name, size_t namelen,
    const char *value, size_t valuelen)
{
	struct mime_header	*h;
	char			*raw, *v;
	size_t			 i, n = 0, outlen;

	h = reallocarray(mm->hdrs, mm->nhdrs + 1, sizeof(*h));
	if (h == NULL)
		return -1;
	mm->hdrs = h;
	h = &mm->hdrs[mm->nhdrs];
	if ((h->name = strndup(name, namelen)) == NULL)
		return -1;
	for (i = 0; i < namelen; i++)
		h->name[i] = (char)tolower((unsigned char)h->name[i]);
	if ((raw = malloc(valuelen + 1)) == NULL) {
		free(h->name);
		return -1;
	}
	/* unfold: drop CR and LF, keep the WSP that follows */
	for (i = 0; i < valuelen; i++)
		if (value[i] != '\r' && value[i] != '\n')
			raw[n++] = value[i];
	while (n > 0 && (raw[n - 1] == ' ' || raw[n - 1] == '\t'))
		n--;
	for (i = 0; i < n && (raw[i] == ' ' || raw[i] == '\t'); i++)
		;
	v = mime_utf8_clean(raw + i, n - i, &outlen);
	free(raw);
	if (v == NULL) {
		free(h->name);
		return -1;
	}
	h->value = v;
	mm->nhdrs++;
	return 0;
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

/*
 * A NUL-terminated copy of p that is valid UTF-8: every invalid,
 * overlong or surrogate sequence and every NUL becomes U+FFFD.
 */
char *
mime_utf8_clean(const char *p, size_t len, size_t *outlen)
{
	static const char	 repl[] = "\xef\xbf\xbd";
	const unsigned char	*s = (const unsigned char *)p;
	char			*out;
	size_t			 i = 0, o = 0, n, k;
	uint32_t		 cp;

	if (len > (SIZE_MAX - 1) / 3)
		return NULL;
	if ((out = malloc(len * 3 + 1)) == NULL)
		return NULL;
	while (i < len) {
		unsigned char c = s[i];

		if (c != 0 && c < 0x80) {
			out[o++] = (char)c;
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
		} else
			n = 0;
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
			memcpy(out + o, repl, 3);
			o += 3;
			i++;
			continue;
		}
		memcpy(out + o, s + i, n + 1);
		o += n + 1;
		i += n + 1;
	}
	out[o] = '\0';
	*outlen = o;
	return out;
}
