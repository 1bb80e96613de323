/*
 * The MIME decoder against a corpus: every NAME.eml in a directory
 * (tests/mime unless one is given) is parsed and checked against
 * NAME.expect, one "key: value" a line:
 *
 *	error: N		mime_parse() result (number or MIME_ name);
 *				0 when absent
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
static void	 gen_check(const char *, struct gen *, int, const char *);
static void	 test_generated(void);

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
	    "MIME_EDEPTH", "MIME_EPARTS", "MIME_EHEADERS", "MIME_ESIZE" };
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
	int		 want = 0, got, found;

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
	/* the error line first, wherever it is */
	for (line = exp; line != NULL && *line != '\0'; line = next) {
		if ((next = strchr(line, '\n')) != NULL)
			next++;
		if (strncmp(line, "error:", 6) == 0) {
			n = strcspn(line, "\r\n");
			if (n >= sizeof(name2))
				n = sizeof(name2) - 1;
			memcpy(name2, line, n);
			name2[n] = '\0';
			want = test_error_value(name2 + 6 + strspn(name2 + 6,
			    " "));
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
		if (strcmp(line, "error") == 0)
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

/* Parse a generated message, expect an error, free the message. */
static void
gen_check(const char *name, struct gen *g, int want, const char *contains)
{
	struct mime_msg	 mm;
	int		 got;

	case_bad = 0;
	got = mime_parse(g->p, g->len, &mm);
	if (got != want)
		test_fail(name, "mime_parse returned %d (%s), want %d", got,
		    mime_strerror(got), want);
	else if (got == MIME_OK) {
		test_invariants(name, &mm);
		if (contains != NULL && strstr(mm.body, contains) == NULL) {
			test_fail(name, "body lacks \"%s\"", contains);
			test_show(mm.body, mm.bodylen);
		}
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
		    MIME_EDEPTH : MIME_OK, depth > MIME_MAX_DEPTH ? NULL :
		    "deep text");
	}
	for (k = MIME_MAX_PARTS; k <= MIME_MAX_PARTS + 1; k++) {
		gen_add(&g, "Content-Type: multipart/mixed; boundary=x\r\n"
		    "\r\n");
		for (i = 0; i < (int)k; i++)
			gen_add(&g, "--x\r\nContent-Type: text/plain\r\n\r\n"
			    "part %d\r\n", i);
		gen_add(&g, "--x--\r\n");
		gen_check(k > MIME_MAX_PARTS ? "gen-parts-over" :
		    "gen-parts-max", &g, k > MIME_MAX_PARTS ? MIME_EPARTS :
		    MIME_OK, "part 0");
	}
	for (k = MIME_MAX_HEADERS; k <= MIME_MAX_HEADERS + 1; k++) {
		for (i = 0; i < (int)k; i++)
			gen_add(&g, "X-Field-%d: %d\r\n", i, i);
		gen_add(&g, "\r\nfields\r\n");
		gen_check(k > MIME_MAX_HEADERS ? "gen-headers-over" :
		    "gen-headers-max", &g, k > MIME_MAX_HEADERS ?
		    MIME_EHEADERS : MIME_OK, "fields");
	}
	/* the header fields of a body part count too */
	gen_add(&g, "Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n");
	for (i = 0; i <= MIME_MAX_HEADERS; i++)
		gen_add(&g, "X-Part-Field: %d\r\n", i);
	gen_add(&g, "\r\ntext\r\n--x--\r\n");
	gen_check("gen-part-headers-over", &g, MIME_EHEADERS, NULL);

	/* decoded output over MIME_MAX_DECODED */
	gen_add(&g, "Content-Type: text/plain\r\n\r\n");
	for (k = 0; k <= MIME_MAX_DECODED / 64; k++)
		gen_add(&g, "%s\r\n", "01234567890123456789012345678901"
		    "23456789012345678901234567890123");
	gen_check("gen-size-over", &g, MIME_ESIZE, NULL);
	/* a large attachment is never decoded, so never too large */
	gen_add(&g, "Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n"
	    "\r\nsmall text\r\n--x\r\nContent-Type: application/octet-stream"
	    "\r\nContent-Transfer-Encoding: base64\r\n\r\n");
	for (k = 0; k <= MIME_MAX_DECODED / 64; k++)
		gen_add(&g, "%s\r\n", "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"
		    "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB");
	gen_add(&g, "--x--\r\n");
	gen_check("gen-size-attachment", &g, MIME_OK, "small text");

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
	for (i = MIME_OK; i <= MIME_ESIZE; i++)
		if (mime_strerror(i) == NULL || mime_strerror(i)[0] == '\0')
			test_fail("gen-strerror", "no text for %d", i);
	if (strcmp(mime_strerror(MIME_EDEPTH), "MIME nesting too deep") != 0)
		test_fail("gen-strerror", "EDEPTH text");
	if (case_bad)
		failed++;
	else
		passed++;
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
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
