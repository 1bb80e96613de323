/*
 * How fast mime_parse() decodes.  Builds messages in memory and parses
 * each one over and over for about a second, then prints MB/s (10^6
 * bytes of raw message per second):
 *
 *	alternative	1 MB multipart/alternative as Gmail sends it:
 *			quoted-printable UTF-8 text, base64 HTML (the text
 *			part is the body; the HTML is walked over)
 *	html-only	1 MB base64 UTF-8 HTML, the only part: decoded
 *			and turned into text
 *	cp1252-qp	1 MB quoted-printable windows-1252 text: iconv
 *
 * A benchmark, not a test: it never fails on a missed target.  The
 * target for "alternative" is 200 MB/s at -O2.
 *   usage: mime-bench [seconds]
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../smtpd.h"

#define BENCH_SIZE	(1024 * 1024)
#define BENCH_TARGET	200.0

struct bench_buf {
	char	*p;
	size_t	 len;
	size_t	 cap;
};

static void	 bench_add(struct bench_buf *, const char *, size_t);
static void	 bench_adds(struct bench_buf *, const char *);
static void	 bench_qp(struct bench_buf *, const char *, size_t);
static void	 bench_b64(struct bench_buf *, const char *, size_t);
static void	 bench_text(struct bench_buf *, size_t, int);
static void	 bench_html(struct bench_buf *, size_t);
static double	 bench_now(void);
static double	 bench_run(const char *, const struct bench_buf *, double);

static const char *bench_words[] = {
	"the", "verification", "message", "caf\xc3\xa9", "na\xc3\xafve",
	"it\xe2\x80\x99s", "a", "token", "\xe2\x80\x94", "mail", "server",
	"receive", "Gr\xc3\xbc\xc3\x9f\x65", "of", "and", "simple", "text",
	"sent", "by", "Gmail,", "with", "some", "longer", "words",
	"internationalisation", "and", "punctuation.",
};

static void
bench_add(struct bench_buf *b, const char *p, size_t n)
{
	char	*np;
	size_t	 cap;

	if (b->len + n + 1 > b->cap) {
		cap = (b->cap + n + 1) * 2;
		if ((np = realloc(b->p, cap)) == NULL) {
			perror("realloc");
			exit(1);
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
bench_adds(struct bench_buf *b, const char *s)
{
	bench_add(b, s, strlen(s));
}

/* Quoted-printable, lines of at most 76 with soft breaks. */
static void
bench_qp(struct bench_buf *b, const char *s, size_t len)
{
	static const char	 hex[] = "0123456789ABCDEF";
	char			 e[3];
	size_t			 i, col = 0, n;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\r' && i + 1 < len && s[i + 1] == '\n') {
			bench_add(b, "\r\n", 2);
			col = 0;
			i++;
			continue;
		}
		n = (c >= 33 && c <= 126 && c != '=') || c == ' ' ? 1 : 3;
		if (col + n > 75) {
			bench_add(b, "=\r\n", 3);
			col = 0;
		}
		if (n == 1)
			bench_add(b, s + i, 1);
		else {
			e[0] = '=';
			e[1] = hex[c >> 4];
			e[2] = hex[c & 15];
			bench_add(b, e, 3);
		}
		col += n;
	}
}

/* Base64, lines of 76. */
static void
bench_b64(struct bench_buf *b, const char *s, size_t len)
{
	static const char	 a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char	*u = (const unsigned char *)s;
	char			 q[4];
	size_t			 i, col = 0;
	uint32_t		 v;

	for (i = 0; i < len; i += 3) {
		v = (uint32_t)u[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)u[i + 1] << 8;
		if (i + 2 < len)
			v |= u[i + 2];
		q[0] = a[v >> 18];
		q[1] = a[(v >> 12) & 63];
		q[2] = i + 1 < len ? a[(v >> 6) & 63] : '=';
		q[3] = i + 2 < len ? a[v & 63] : '=';
		bench_add(b, q, 4);
		if ((col += 4) == 76) {
			bench_add(b, "\r\n", 2);
			col = 0;
		}
	}
	bench_add(b, "\r\n", 2);
}

/* About n bytes of words, in UTF-8 or windows-1252 (cp1252 set). */
static void
bench_text(struct bench_buf *b, size_t n, int cp1252)
{
	size_t	 i = 0, col = 0;
	const char *w;

	while (b->len < n) {
		w = bench_words[i++ % (sizeof(bench_words) /
		    sizeof(bench_words[0]))];
		if (cp1252 && (unsigned char)w[0] >= 0x80)
			w = "\x93quoted\x94";
		else if (cp1252 && strchr(w, 0xc3) != NULL)
			w = "caf\xe9";
		else if (cp1252 && strstr(w, "\xe2\x80\x99") != NULL)
			w = "it\x92s";
		bench_adds(b, w);
		col += strlen(w) + 1;
		if (col > 66) {
			bench_add(b, "\r\n", 2);
			col = 0;
		} else
			bench_add(b, " ", 1);
		if (i % 400 == 0)
			bench_adds(b, "\r\n");
	}
}

/* About n bytes of HTML as a mailer writes it. */
static void
bench_html(struct bench_buf *b, size_t n)
{
	struct bench_buf	 t;

	memset(&t, 0, sizeof(t));
	bench_adds(b, "<html><head><style>p { margin: 0 }</style></head>"
	    "<body><div dir=\"ltr\">");
	while (b->len < n) {
		t.len = 0;
		bench_text(&t, 300, 0);
		bench_adds(b, "<div><p style=\"font-family:Arial\">");
		bench_add(b, t.p, t.len);
		bench_adds(b, "&nbsp;&amp; <b>bold</b><br></p></div>\r\n");
	}
	bench_adds(b, "</div></body></html>\r\n");
	free(t.p);
}

static double
bench_now(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Parse m over and over for secs; print and return MB/s. */
static double
bench_run(const char *name, const struct bench_buf *m, double secs)
{
	struct mime_msg	 mm;
	double		 t0, t;
	size_t		 n = 0, bodylen = 0;
	int		 r;

	t0 = bench_now();
	do {
		if ((r = mime_parse(m->p, m->len, &mm)) != MIME_OK) {
			printf("%s: mime_parse: %s\n", name, mime_strerror(r));
			exit(1);
		}
		bodylen = mm.bodylen;
		mime_free(&mm);
		n++;
	} while ((t = bench_now() - t0) < secs);
	printf("%-12s %8zu bytes  body %8zu  %6zu runs  %8.1f MB/s\n", name,
	    m->len, bodylen, n, (double)m->len * n / t / 1e6);
	return (double)m->len * n / t / 1e6;
}

int
main(int argc, char *argv[])
{
	struct bench_buf	 alt, html, cp, t, h;
	double			 secs = argc > 1 ? atof(argv[1]) : 1.0, r;

	memset(&alt, 0, sizeof(alt));
	memset(&html, 0, sizeof(html));
	memset(&cp, 0, sizeof(cp));
	memset(&t, 0, sizeof(t));
	memset(&h, 0, sizeof(h));
	if (secs <= 0)
		secs = 1.0;

	bench_text(&t, BENCH_SIZE * 4 / 10, 0);
	bench_html(&h, BENCH_SIZE * 4 / 10);
	bench_adds(&alt, "From: Bench <bench@example.com>\r\n"
	    "To: verify@example.org\r\n"
	    "Subject: =?UTF-8?Q?Caf=C3=A9_bench?= FIRM-TOKEN:BENC-HMAR-K000\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: multipart/alternative; "
	    "boundary=\"000000000000bench0123456789\"\r\n\r\n"
	    "--000000000000bench0123456789\r\n"
	    "Content-Type: text/plain; charset=\"UTF-8\"\r\n"
	    "Content-Transfer-Encoding: quoted-printable\r\n\r\n");
	bench_qp(&alt, t.p, t.len);
	bench_adds(&alt, "\r\n--000000000000bench0123456789\r\n"
	    "Content-Type: text/html; charset=\"UTF-8\"\r\n"
	    "Content-Transfer-Encoding: base64\r\n\r\n");
	bench_b64(&alt, h.p, h.len);
	bench_adds(&alt, "--000000000000bench0123456789--\r\n");

	h.len = 0;
	bench_html(&h, BENCH_SIZE * 3 / 4);
	bench_adds(&html, "From: Bench <bench@example.com>\r\n"
	    "Subject: html only\r\nMIME-Version: 1.0\r\n"
	    "Content-Type: text/html; charset=utf-8\r\n"
	    "Content-Transfer-Encoding: base64\r\n\r\n");
	bench_b64(&html, h.p, h.len);

	t.len = 0;
	bench_text(&t, BENCH_SIZE * 8 / 10, 1);
	bench_adds(&cp, "From: Bench <bench@example.com>\r\n"
	    "Subject: cp1252\r\nMIME-Version: 1.0\r\n"
	    "Content-Type: text/plain; charset=windows-1252\r\n"
	    "Content-Transfer-Encoding: quoted-printable\r\n\r\n");
	bench_qp(&cp, t.p, t.len);

	r = bench_run("alternative", &alt, secs);
	bench_run("html-only", &html, secs);
	bench_run("cp1252-qp", &cp, secs);
	printf("alternative: %.1f MB/s, target %.0f MB/s: %s\n", r,
	    BENCH_TARGET, r >= BENCH_TARGET ? "met" : "MISSED");
	free(alt.p);
	free(html.p);
	free(cp.p);
	free(t.p);
	free(h.p);
	return 0;
}
