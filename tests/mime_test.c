/*
 * The MIME decoder against a corpus: every NAME.eml in a directory
 * (tests/mime unless one is given) is parsed and checked against
 * NAME.expect, one "key: value" a line:
 *
 *	error: N		mime_parse() result (number or MIME_ name);
 *				0 when absent
 *	truncated: N		mime_msg.truncated, the limit that cut the
 *				walk short (number or MIME_ name); 0 when
 *				absent
 *	subject: TEXT		the decoded subject, exactly
 *	no-subject:		no Subject field
 *	body: TEXT		the decoded body, exactly
 *	body-contains: TEXT	(any number of them)
 *	body-not-contains: TEXT
 *	header: NAME: TEXT	mime_header_get(NAME), exactly
 *	no-header: NAME		mime_header_get(NAME) is NULL
 *	token: TOKEN | none	payload_token_find() on the subject, then the
 *				body
 *
 * Values take C escapes: \r \n \t \\ \xHH.  Lines starting with '#'
 * are comments.  Whatever the case, the body and every header value
 * must be valid UTF-8 without NUL, and header values without controls
 * other than TAB.  Then come generated cases for the limits.
 * Prints "N passed, N failed"; exits 1 on a failure.
 */

#include <sys/types.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../smtpd.h"


struct gen {
	char	*p;
	size_t	 len;
	size_t	 cap;
};

static int	 passed, failed, case_bad;

static void	 test_fail(const char *, const char *, ...)
		    __attribute__((__format__ (printf, 2, 3)));
static char	*test_read(const char *, size_t *);
static size_t	 test_unescape(char *);
static void	 test_show(const char *, size_t);
static int	 test_utf8_valid(const char *, size_t);
static void	 test_invariants(const char *, const struct mime_msg *);
static int	 test_error_value(const char *);
static void	 test_case(const char *, const char *);
static int	 test_names(const char *, char ***, size_t *);
static int	 test_cmp(const void *, const void *);
static void	 gen_add(struct gen *, const char *, ...)
		    __attribute__((__format__ (printf, 2, 3)));
static void	 gen_check(const char *, struct gen *, int, const char *,
		    const char *);
static void	 test_generated(void);
static void	 test_words(void);

static void
test_fail(const char *name, const char *fmt, ...)
{
	va_list	 ap;

	case_bad = 1;
	printf("FAIL %s: ", name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

static char *
test_read(const char *path, size_t *len)
{
	FILE	*f;
	char	*buf;
	long	 n;

	if ((f = fopen(path, "rb")) == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) == -1 || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) == -1 ||
	    (buf = malloc((size_t)n + 1)) == NULL) {
		fclose(f);
		return NULL;
	}
	if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		fclose(f);
		return NULL;
	}
	fclose(f);
	buf[n] = '\0';
	*len = (size_t)n;
	return buf;
}

/* C escapes in place; returns the new length (may hold NUL). */
static size_t
test_unescape(char *s)
{
	size_t		 i, o = 0;
	unsigned int	 v;

	for (i = 0; s[i] != '\0'; i++) {
		if (s[i] != '\\' || s[i + 1] == '\0') {
			s[o++] = s[i];
			continue;
		}
		switch (s[++i]) {
		case 'r':
			s[o++] = '\r';
			break;
		case 'n':
			s[o++] = '\n';
			break;
		case 't':
			s[o++] = '\t';
			break;
		case 'x':
			if (sscanf(s + i + 1, "%2x", &v) == 1) {
				s[o++] = (char)v;
				i += 2;
			} else
				s[o++] = 'x';
			break;
		default:
			s[o++] = s[i];
		}
	}
	s[o] = '\0';
	return o;
}

/* Up to 300 bytes of s, printable, for a failure report. */
static void
test_show(const char *s, size_t len)
{
	size_t	 i;

	printf("    [");
	for (i = 0; i < len && i < 300; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\n')
			printf("\\n");
		else if (c == '\r')
			printf("\\r");
		else if (c < 0x20 || c == 0x7f)
			printf("\\x%02x", c);
		else
			putchar(c);
	}
	printf("%s]\n", len > 300 ? "..." : "");
}

/* Valid UTF-8 without NUL: cleaning must leave it as it is. */
static int
test_utf8_valid(const char *s, size_t len)
{
	char	*c;
	size_t	 clen;
	int	 ok;

	if ((c = mime_utf8_clean(s, len, &clen)) == NULL)
		return 0;
	ok = clen == len && memcmp(c, s, len) == 0;
	free(c);
	return ok;
}

static void
test_invariants(const char *name, const struct mime_msg *mm)
{
	size_t	 i, j;

	if (mm->body == NULL) {
		test_fail(name, "body is NULL");
		return;
	}
	if (strlen(mm->body) != mm->bodylen)
		test_fail(name, "body holds NUL or bodylen is wrong");
	if (!test_utf8_valid(mm->body, mm->bodylen))
		test_fail(name, "body is not valid UTF-8");
	for (i = 0; i < mm->nhdrs; i++) {
		const char *v = mm->hdrs[i].value;

		for (j = 0; mm->hdrs[i].name[j] != '\0'; j++)
			if (mm->hdrs[i].name[j] >= 'A' &&
			    mm->hdrs[i].name[j] <= 'Z')
				test_fail(name, "header name %s not lower case",
				    mm->hdrs[i].name);
		if (!test_utf8_valid(v, strlen(v)))
			test_fail(name, "header %s not valid UTF-8",
			    mm->hdrs[i].name);
		for (j = 0; v[j] != '\0'; j++)
			if (((unsigned char)v[j] < 0x20 && v[j] != '\t') ||
			    v[j] == 0x7f) {
				test_fail(name, "control in header %s",
				    mm->hdrs[i].name);
				break;
			}
	}
	if (mm->subject != NULL && (mime_header_get(mm, "subject") == NULL ||
	    strcmp(mm->subject, mime_header_get(mm, "subject")) != 0))
		test_fail(name, "subject differs from the first Subject field");
}

static int
test_error_value(const char *v)
{
	static const char	*names[] = { "MIME_OK", "MIME_ENOMEM",
	    "MIME_EDEPTH", "MIME_EPARTS", "MIME_EHEADERS", "MIME_ESIZE",
	    "MIME_EWORDS", "MIME_ECHARSETS" };
	size_t			 i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(v, names[i]) == 0)
			return (int)i;
	return atoi(v);
}

static void
test_case(const char *dir, const char *eml)
{
	struct mime_msg	 mm;
	char		 path[1024], name[256], name2[64];
	char		 token[TOKEN_LEN + 1];
	char		*msg, *exp, *line, *next, *val, *colon;
	const char	*h;
	size_t		 msglen, explen, vlen, n;
	int		 want = 0, want_trunc = 0, got, found;

	case_bad = 0;
	n = strlen(eml) - 4;			/* ".eml" */
	if (n >= sizeof(name)) {
		printf("FAIL %s: name too long\n", eml);
		failed++;
		return;
	}
	memcpy(name, eml, n);
	name[n] = '\0';
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, eml) >=
	    sizeof(path) || (msg = test_read(path, &msglen)) == NULL) {
		printf("FAIL %s: cannot read %s\n", name, path);
		failed++;
		return;
	}
	if ((size_t)snprintf(path, sizeof(path), "%s/%s.expect", dir,
	    name) >= sizeof(path) || (exp = test_read(path, &explen)) ==
	    NULL) {
		printf("FAIL %s: cannot read %s\n", name, path);
		free(msg);
		failed++;
		return;
	}
	/* the error and truncated lines first, wherever they are */
	for (line = exp; line != NULL && *line != '\0'; line = next) {
		if ((next = strchr(line, '\n')) != NULL)
			next++;
		if (strncmp(line, "error:", 6) == 0 ||
		    strncmp(line, "truncated:", 10) == 0) {
			n = strcspn(line, "\r\n");
			if (n >= sizeof(name2))
				n = sizeof(name2) - 1;
			memcpy(name2, line, n);
			name2[n] = '\0';
			val = strchr(name2, ':') + 1;
			if (line[0] == 'e')
				want = test_error_value(val + strspn(val, " "));
			else
				want_trunc = test_error_value(val +
				    strspn(val, " "));
		}
	}
	got = mime_parse(msg, msglen, &mm);
	if (got != want) {
		test_fail(name, "mime_parse returned %d (%s), want %d", got,
		    mime_strerror(got), want);
		if (got == MIME_OK)
			mime_free(&mm);
		goto done;
	}
	if (got != MIME_OK) {
		if (mm.hdrs != NULL || mm.body != NULL || mm.subject != NULL ||
		    mm.nhdrs != 0)
			test_fail(name, "output not zeroed on error");
		goto done;
	}
	test_invariants(name, &mm);
	if (mm.truncated != want_trunc)
		test_fail(name, "truncated %d (%s), want %d", mm.truncated,
		    mime_strerror(mm.truncated), want_trunc);
	for (line = exp; line != NULL && *line != '\0'; line = next) {
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		n = strlen(line);
		if (n > 0 && line[n - 1] == '\r')
			line[--n] = '\0';
		if (line[0] == '#' || line[0] == '\0')
			continue;
		if ((colon = strchr(line, ':')) == NULL) {
			test_fail(name, "bad expect line: %s", line);
			continue;
		}
		*colon = '\0';
		val = colon + 1;
		if (*val == ' ')
			val++;
		vlen = test_unescape(val);
		if (strcmp(line, "error") == 0 ||
		    strcmp(line, "truncated") == 0)
			continue;
		if (strcmp(line, "subject") == 0) {
			if (mm.subject == NULL ||
			    strcmp(mm.subject, val) != 0) {
				test_fail(name, "subject is not \"%s\"", val);
				if (mm.subject != NULL)
					test_show(mm.subject,
					    strlen(mm.subject));
			}
		} else if (strcmp(line, "no-subject") == 0) {
			if (mm.subject != NULL)
				test_fail(name, "a subject: %s", mm.subject);
		} else if (strcmp(line, "body") == 0) {
			if (mm.bodylen != vlen ||
			    memcmp(mm.body, val, vlen) != 0) {
				test_fail(name, "body differs");
				test_show(mm.body, mm.bodylen);
			}
		} else if (strcmp(line, "body-contains") == 0) {
			if (memmem(mm.body, mm.bodylen, val, vlen) == NULL) {
				test_fail(name, "body lacks \"%s\"", val);
				test_show(mm.body, mm.bodylen);
			}
		} else if (strcmp(line, "body-not-contains") == 0) {
			if (memmem(mm.body, mm.bodylen, val, vlen) != NULL) {
				test_fail(name, "body holds \"%s\"", val);
				test_show(mm.body, mm.bodylen);
			}
		} else if (strcmp(line, "header") == 0) {
			if ((colon = strchr(val, ':')) == NULL) {
				test_fail(name, "bad header line");
				continue;
			}
			*colon++ = '\0';
			if (*colon == ' ')
				colon++;
			h = mime_header_get(&mm, val);
			if (h == NULL || strcmp(h, colon) != 0) {
				test_fail(name, "header %s is not \"%s\"", val,
				    colon);
				if (h != NULL)
					test_show(h, strlen(h));
			}
		} else if (strcmp(line, "no-header") == 0) {
			if (mime_header_get(&mm, val) != NULL)
				test_fail(name, "header %s present", val);
		} else if (strcmp(line, "token") == 0) {
			found = (mm.subject != NULL &&
			    payload_token_find(mm.subject, strlen(mm.subject),
			    token)) || payload_token_find(mm.body, mm.bodylen,
			    token);
			if (strcmp(val, "none") == 0) {
				if (found)
					test_fail(name, "token %s found",
					    token);
			} else if (!found)
				test_fail(name, "no token, want %s", val);
			else if (strcmp(token, val) != 0)
				test_fail(name, "token %s, want %s", token,
				    val);
		} else
			test_fail(name, "unknown key %s", line);
	}
	mime_free(&mm);
 done:
	free(msg);
	free(exp);
	if (case_bad)
		failed++;
	else
		passed++;
}

static int
test_cmp(const void *a, const void *b)
{
	return strcmp(*(char * const *)a, *(char * const *)b);
}

/* The *.eml names in dir, sorted. */
static int
test_names(const char *dir, char ***names, size_t *n)
{
	DIR		 *d;
	struct dirent	 *de;
	char		**v = NULL, **nv;
	size_t		  len;

	*n = 0;
	if ((d = opendir(dir)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		len = strlen(de->d_name);
		if (len <= 4 || strcmp(de->d_name + len - 4, ".eml") != 0)
			continue;
		if ((nv = reallocarray(v, *n + 1, sizeof(*v))) == NULL ||
		    (nv[*n] = strdup(de->d_name)) == NULL) {
			closedir(d);
			return -1;
		}
		v = nv;
		(*n)++;
	}
	closedir(d);
	if (*n > 0)
		qsort(v, *n, sizeof(*v), test_cmp);
	*names = v;
	return 0;
}

static void
gen_add(struct gen *g, const char *fmt, ...)
{
	va_list	 ap;
	int	 n;
	char	*p;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(g->p != NULL ? g->p + g->len : NULL,
		    g->cap - g->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			printf("vsnprintf failed\n");
			exit(2);
		}
		if ((size_t)n < g->cap - g->len)
			break;
		if ((p = realloc(g->p, g->cap * 2 + (size_t)n + 64)) == NULL) {
			printf("out of memory\n");
			exit(2);
		}
		g->p = p;
		g->cap = g->cap * 2 + (size_t)n + 64;
	}
	g->len += (size_t)n;
}

/*
 * Parse a generated message, expect MIME_OK with mime_msg.truncated
 * set to want (0: not truncated) and, unless NULL, the body to hold
 * contains and the subject to be subject; free the message.
 */
static void
gen_check(const char *name, struct gen *g, int want, const char *contains,
    const char *subject)
{
	struct mime_msg	 mm;
	int		 got;

	case_bad = 0;
	got = mime_parse(g->p, g->len, &mm);
	if (got != MIME_OK)
		test_fail(name, "mime_parse returned %d (%s)", got,
		    mime_strerror(got));
	else {
		test_invariants(name, &mm);
		if (mm.truncated != want)
			test_fail(name, "truncated %d (%s), want %d",
			    mm.truncated, mime_strerror(mm.truncated), want);
		if (contains != NULL && strstr(mm.body, contains) == NULL) {
			test_fail(name, "body lacks \"%s\"", contains);
			test_show(mm.body, mm.bodylen);
		}
		if (subject != NULL && (mm.subject == NULL ||
		    strcmp(mm.subject, subject) != 0))
			test_fail(name, "subject is not \"%s\"", subject);
	}
	if (got == MIME_OK)
		mime_free(&mm);
	if (case_bad)
		failed++;
	else
		passed++;
	free(g->p);
	memset(g, 0, sizeof(*g));
}

/* The limits, at and one past each. */
static void
test_generated(void)
{
	struct gen	 g;
	struct mime_msg	 mm;
	int		 d, i, depth;
	size_t		 k;

	memset(&g, 0, sizeof(g));
	for (depth = MIME_MAX_DEPTH; depth <= MIME_MAX_DEPTH + 1; depth++) {
		gen_add(&g, "Subject: nested %d\r\n", depth);
		for (d = 0; d < depth; d++)
			gen_add(&g, "Content-Type: multipart/mixed; "
			    "boundary=\"b%d\"\r\n\r\n--b%d\r\n", d, d);
		gen_add(&g, "Content-Type: text/plain\r\n\r\ndeep text\r\n");
		for (d = depth - 1; d >= 0; d--)
			gen_add(&g, "--b%d--\r\n", d);
		gen_check(depth > MIME_MAX_DEPTH ? "gen-depth-over" :
		    "gen-depth-max", &g, depth > MIME_MAX_DEPTH ?
		    MIME_EDEPTH : 0, depth > MIME_MAX_DEPTH ? NULL :
		    "deep text", depth > MIME_MAX_DEPTH ? "nested 11" : NULL);
	}
	/* past the depth cap, the walk goes on with the siblings */
	gen_add(&g, "Content-Type: multipart/mixed; boundary=\"s\"\r\n\r\n"
	    "--s\r\n");
	for (d = 0; d <= MIME_MAX_DEPTH; d++)
		gen_add(&g, "Content-Type: multipart/mixed; "
		    "boundary=\"b%d\"\r\n\r\n--b%d\r\n", d, d);
	gen_add(&g, "Content-Type: text/plain\r\n\r\ntoo deep\r\n");
	for (d = MIME_MAX_DEPTH; d >= 0; d--)
		gen_add(&g, "--b%d--\r\n", d);
	gen_add(&g, "--s\r\nContent-Type: text/plain\r\n\r\nsibling\r\n"
	    "--s--\r\n");
	gen_check("gen-depth-over-sibling", &g, MIME_EDEPTH, "sibling",
	    NULL);
	for (k = MIME_MAX_PARTS; k <= MIME_MAX_PARTS + 1; k++) {
		gen_add(&g, "Content-Type: multipart/mixed; boundary=x\r\n"
		    "\r\n");
		for (i = 0; i < (int)k; i++)
			gen_add(&g, "--x\r\nContent-Type: text/plain\r\n\r\n"
			    "part %d\r\n", i);
		gen_add(&g, "--x--\r\n");
		gen_check(k > MIME_MAX_PARTS ? "gen-parts-over" :
		    "gen-parts-max", &g, k > MIME_MAX_PARTS ? MIME_EPARTS :
		    0, "part 0", NULL);
	}
	for (k = MIME_MAX_HEADERS; k <= MIME_MAX_HEADERS + 1; k++) {
		gen_add(&g, "Subject: fields\r\n");
		for (i = 1; i < (int)k; i++)
			gen_add(&g, "X-Field-%d: %d\r\n", i, i);
		gen_add(&g, "\r\nfields\r\n");
		gen_check(k > MIME_MAX_HEADERS ? "gen-headers-over" :
		    "gen-headers-max", &g, k > MIME_MAX_HEADERS ?
		    MIME_EHEADERS : 0, "fields", "fields");
	}
	/* the header fields of a body part count too */
	gen_add(&g, "Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n");
	for (i = 0; i <= MIME_MAX_HEADERS; i++)
		gen_add(&g, "X-Part-Field: %d\r\n", i);
	gen_add(&g, "\r\ntext\r\n--x--\r\n");
	gen_check("gen-part-headers-over", &g, MIME_EHEADERS, "text", NULL);

	/* decoded output over MIME_MAX_DECODED */
	gen_add(&g, "Content-Type: text/plain\r\n\r\n");
	for (k = 0; k <= MIME_MAX_DECODED / 64; k++)
		gen_add(&g, "%s\r\n", "01234567890123456789012345678901"
		    "23456789012345678901234567890123");
	gen_check("gen-size-over", &g, MIME_ESIZE, "0123456789", NULL);
	/* a large attachment is never decoded, so never too large */
	gen_add(&g, "Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n"
	    "\r\nsmall text\r\n--x\r\nContent-Type: application/octet-stream"
	    "\r\nContent-Transfer-Encoding: base64\r\n\r\n");
	for (k = 0; k <= MIME_MAX_DECODED / 64; k++)
		gen_add(&g, "%s\r\n", "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"
		    "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB");
	gen_add(&g, "--x--\r\n");
	gen_check("gen-size-attachment", &g, 0, "small text", NULL);

	/* empty input, and no input */
	case_bad = 0;
	if (mime_parse("", 0, &mm) != MIME_OK || mm.body == NULL ||
	    mm.body[0] != '\0' || mm.nhdrs != 0)
		test_fail("gen-empty", "empty message");
	else
		mime_free(&mm);
	if (mime_parse(NULL, 0, &mm) != MIME_OK || mm.body == NULL)
		test_fail("gen-empty", "NULL message");
	else
		mime_free(&mm);
	for (i = MIME_OK; i <= MIME_ECHARSETS; i++)
		if (mime_strerror(i) == NULL || mime_strerror(i)[0] == '\0')
			test_fail("gen-strerror", "no text for %d", i);
	if (strcmp(mime_strerror(MIME_EDEPTH), "MIME nesting too deep") != 0)
		test_fail("gen-strerror", "EDEPTH text");
	if (case_bad)
		failed++;
	else
		passed++;
}

/*
 * RFC 2047 encoded words: the caps on words per field, per message
 * and on charsets, and the time a huge subject of words in rotating
 * charsets takes (once seconds: an iconv_open() a word).
 */
static void
test_words(void)
{
	static const char	*cs[] = { "ISO-8859-1", "ISO-8859-15",
	    "WINDOWS-1252", "KOI8-R" };
	struct gen		 g;
	struct mime_msg		 mm;
	struct timespec		 t0, t1;
	const char		*v;
	double			 ms;
	int			 i;

	memset(&g, 0, sizeof(g));
	/* past the field cap, words stay as they are */
	gen_add(&g, "Subject:");
	for (i = 0; i < MIME_MAX_FIELD_WORDS + 1; i++)
		gen_add(&g, " =?%s?Q?w%d?=\r\n", cs[i % 4], i);
	gen_add(&g, "X-Next: =?utf-8?Q?decoded?=\r\n\r\nbody\r\n");
	case_bad = 0;
	if (mime_parse(g.p, g.len, &mm) != MIME_OK)
		test_fail("gen-words-field", "mime_parse failed");
	else {
		test_invariants("gen-words-field", &mm);
		if (mm.truncated != MIME_EWORDS)
			test_fail("gen-words-field", "truncated %d",
			    mm.truncated);
		if (strncmp(mm.subject, "w0w1w2", 6) != 0 ||
		    (v = strstr(mm.subject, "w255 =?ISO-8859-1?Q?w256?="))
		    == NULL || v[26] != '\0')
			test_fail("gen-words-field", "subject %.40s...",
			    mm.subject);
		if ((v = mime_header_get(&mm, "x-next")) == NULL ||
		    strcmp(v, "decoded") != 0)
			test_fail("gen-words-field", "next field not decoded");
		mime_free(&mm);
	}
	free(g.p);
	memset(&g, 0, sizeof(g));
	if (case_bad)
		failed++;
	else
		passed++;

	/* past the message cap, the words of later fields stay too */
	for (i = 0; i < MIME_MAX_WORDS / MIME_MAX_FIELD_WORDS + 1; i++) {
		int k;

		gen_add(&g, "X-Words-%d:", i);
		for (k = 0; k < MIME_MAX_FIELD_WORDS; k++)
			gen_add(&g, " =?utf-8?Q?w?=");
		gen_add(&g, "\r\n");
	}
	gen_add(&g, "Subject: =?utf-8?Q?late?=\r\n\r\nbody\r\n");
	gen_check("gen-words-message", &g, MIME_EWORDS, "body",
	    "=?utf-8?Q?late?=");

	/* past the charset cap, words in new charsets stay */
	gen_add(&g, "Subject:");
	for (i = 0; i < MIME_MAX_CHARSETS + 1; i++)
		gen_add(&g, " =?x-unknown-%d?Q?w?= =?ISO-8859-%d?Q?=E9?=\r\n",
		    i, i + 2);
	gen_add(&g, "\r\nbody\r\n");
	gen_check("gen-charsets", &g, MIME_ECHARSETS, "body", NULL);

	/* a subject of some 900 KB, words in four rotating charsets */
	for (i = 0; g.len < 900 * 1024; i++)
		gen_add(&g, "%s =?%s?Q?caf=E9_%d?=", i == 0 ? "Subject:" :
		    i % 30 == 0 ? "\r\n" : "", cs[i % 4], i);
	gen_add(&g, "\r\n\r\nbody\r\n");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	gen_check("gen-words-rotating", &g, MIME_EWORDS, "body", NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
	    (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	if (ms > 500) {
		failed++;
		passed--;
		printf("FAIL gen-words-rotating: %.0f ms\n", ms);
	}
}

int
main(int argc, char *argv[])
{
	const char	 *dir = argc > 1 ? argv[1] : "tests/mime";
	char		**names;
	size_t		  i, n;

	if (test_names(dir, &names, &n) == -1) {
		printf("cannot read %s: %s\n", dir, strerror(errno));
		return 2;
	}
	if (n == 0) {
		printf("no cases in %s\n", dir);
		return 2;
	}
	for (i = 0; i < n; i++) {
		test_case(dir, names[i]);
		free(names[i]);
	}
	free(names);
	test_generated();
	test_words();
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
