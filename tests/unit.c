/*
 * Unit tests for the parsers: SMTP paths, recipient rules, the data
 * reader (dot-stuffing, bare CR/LF, smuggling), the token finder and
 * UTF-8 cleaning.  Prints "N passed, N failed".
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../smtpd.h"
#include "check.h"




static void
test_paths(void)
{
	static const struct {
		const char	*in;
		int		 allow_null;
		int		 ok;
		const char	*out;
		const char	*rest;
	} t[] = {
		{ "<a@b.c>", 0, 1, "a@b.c", "" },
		{ "<a@b.c> SIZE=10", 0, 1, "a@b.c", " SIZE=10" },
		{ "<>", 1, 1, "", "" },
		{ "<>", 0, 0, NULL, NULL },
		{ "<first.last@example.org>", 0, 1,
		    "first.last@example.org", "" },
		{ "<\"john doe\"@example.org>", 0, 1,
		    "\"john doe\"@example.org", "" },
		{ "<\"a\\\"b\"@x.org>", 0, 1, "\"a\\\"b\"@x.org", "" },
		{ "<@relay.org,@b.org:user@x.org>", 0, 1, "user@x.org", "" },
		{ "<user@[192.0.2.1]>", 0, 1, "user@[192.0.2.1]", "" },
		{ "<user@[IPv6:2001:db8::1]>", 0, 1,
		    "user@[IPv6:2001:db8::1]", "" },
		{ "<jos\xc3\xa9@exampl\xc3\xa9.org>", 0, 1,
		    "jos\xc3\xa9@exampl\xc3\xa9.org", "" },
		{ "a@b.c", 0, 0, NULL, NULL },
		{ "<a@b.c", 0, 0, NULL, NULL },
		{ "<a.@b.c>", 0, 0, NULL, NULL },
		{ "<.a@b.c>", 0, 0, NULL, NULL },
		{ "<a..b@c.d>", 0, 0, NULL, NULL },
		{ "<a@b..c>", 0, 0, NULL, NULL },
		{ "<a@-b.c>", 0, 0, NULL, NULL },
		{ "<a@b-.c>", 0, 0, NULL, NULL },
		{ "<a@>", 0, 0, NULL, NULL },
		{ "<@b.c>", 0, 0, NULL, NULL },
		{ "<a b@c.d>", 0, 0, NULL, NULL },
		{ "<a@b c.d>", 0, 0, NULL, NULL },
		{ "<a@[1.2.3.4>", 0, 0, NULL, NULL },
		{ "<\"unterminated@b.c>", 0, 0, NULL, NULL },
		{ "<a(b)@c.d>", 0, 0, NULL, NULL },
		{ "", 0, 0, NULL, NULL },
	};
	char		 out[SMTP_PATH_MAX + 1], longaddr[400];
	const char	*rest;
	size_t		 i;
	int		 r;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		r = addr_parse_path(t[i].in, out, sizeof(out), &rest,
		    t[i].allow_null);
		CHECK((r == 0) == t[i].ok, "parse_path(%s) = %d", t[i].in, r);
		if (r == 0 && t[i].ok) {
			CHECK(strcmp(out, t[i].out) == 0,
			    "parse_path(%s) gave %s", t[i].in, out);
			CHECK(strcmp(rest, t[i].rest) == 0,
			    "parse_path(%s) rest %s", t[i].in, rest);
		}
	}
	/* local part over 64 octets */
	memset(longaddr, 0, sizeof(longaddr));
	longaddr[0] = '<';
	memset(longaddr + 1, 'a', 65);
	strlcat(longaddr, "@b.c>", sizeof(longaddr));
	CHECK(addr_parse_path(longaddr, out, sizeof(out), &rest, 0) == -1,
	    "65-octet local part accepted");
	longaddr[65] = '\0';
	strlcat(longaddr, "@b.c>", sizeof(longaddr));
	CHECK(addr_parse_path(longaddr, out, sizeof(out), &rest, 0) == 0,
	    "64-octet local part refused");
}

static void
test_rcpt_match(void)
{
	struct smtpd_conf	 conf;

	memset(&conf, 0, sizeof(conf));
	conf.rcpts[0].local = "verify";
	conf.rcpts[0].domain = "localhost";
	conf.rcpts[1].local = NULL;
	conf.rcpts[1].domain = "example.org";
	conf.nrcpts = 2;

	CHECK(session_rcpt_match(&conf, "verify@localhost"), "exact");
	CHECK(session_rcpt_match(&conf, "verify@LOCALHOST"),
	    "domain case-insensitive");
	CHECK(!session_rcpt_match(&conf, "Verify@localhost"),
	    "local part is compared as given");
	CHECK(!session_rcpt_match(&conf, "verify2@localhost"), "prefix");
	CHECK(!session_rcpt_match(&conf, "verif@localhost"), "shorter");
	CHECK(!session_rcpt_match(&conf, "verify@localhost.evil"), "suffix");
	CHECK(session_rcpt_match(&conf, "anyone@example.org"), "@domain");
	CHECK(session_rcpt_match(&conf, "x@EXAMPLE.ORG"), "@domain case");
	CHECK(!session_rcpt_match(&conf, "x@sub.example.org"),
	    "subdomain is not the domain");
	CHECK(!session_rcpt_match(&conf, "nobody"), "no @");
}

struct feed_case {
	const char	*name;
	const char	*in;		/* after the DATA line */
	size_t		 inlen;
	int		 done;		/* end of data found */
	const char	*stored;	/* data as stored */
	size_t		 rest;		/* octets left after the end */
	size_t		 bare_cr;
	size_t		 bare_lf;
};

#define S(x)	x, sizeof(x) - 1

static void
test_data_feed(void)
{
	static const struct feed_case t[] = {
		{ "empty", S(".\r\n"), 1, "", 0, 0, 0 },
		{ "simple", S("a\r\nb\r\n.\r\n"), 1, "a\r\nb\r\n", 0, 0, 0 },
		{ "unstuff", S("..x\r\n.\r\n"), 1, ".x\r\n", 0, 0, 0 },
		{ "dotdot line", S("..\r\n.\r\n"), 1, ".\r\n", 0, 0, 0 },
		{ "pipelined rest", S("a\r\n.\r\nQUIT\r\n"), 1, "a\r\n", 6,
		    0, 0 },
		{ "bare LF is a line end", S("a\nb\r\n.\r\n"), 1,
		    "a\r\nb\r\n", 0, 0, 1 },
		{ "bare CR is kept", S("a\rb\r\n.\r\n"), 1, "a\rb\r\n", 0, 1,
		    0 },
		{ "no end: \\n.\\n", S("a\n.\nb\r\n"), 0, NULL, 0, 0, 2 },
		{ "no end: \\n.\\r\\n", S("a\n.\r\nb"), 0, NULL, 0, 0, 1 },
		{ "no end: \\r\\n.\\n", S("a\r\n.\nb"), 0, NULL, 0, 0, 1 },
		{ "no end: \\r.\\r", S("a\r.\rb"), 0, NULL, 0, 2, 0 },
		{ "no end: \\r.\\r\\n", S("a\r.\r\nb"), 0, NULL, 0, 1, 0 },
		{ "no end: \\r\\n.\\r", S("a\r\n.\rb"), 0, NULL, 0, 1, 0 },
		{ "no end: \\r\\r\\n.\\r\\r\\n", S("a\r\r\n.\r\r\nb"), 0,
		    NULL, 0, 2, 0 },
		{ "smuggle then real end",
		    S("a\n.\nMAIL FROM:<x@y>\r\n.\r\n"), 1,
		    "a\r\n\r\nMAIL FROM:<x@y>\r\n", 0, 0, 2 },
		{ "bare LF line then CRLF dot",
		    S("a\n.\r\nX\r\n.\r\n"), 1, "a\r\n\r\nX\r\n", 0, 0, 1 },
	};
	struct message	 m;
	size_t		 i, j, n, total;
	int		 done;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		/* whole buffer at once */
		memset(&m, 0, sizeof(m));
		session_data_start(&m, 1 << 20);
		n = session_data_feed(&m, t[i].in, t[i].inlen, &done);
		CHECK(done == t[i].done, "%s: done %d", t[i].name, done);
		if (t[i].done) {
			CHECK(t[i].inlen - n == t[i].rest, "%s: rest %zu",
			    t[i].name, t[i].inlen - n);
			CHECK(m.len == strlen(t[i].stored) &&
			    memcmp(m.buf, t[i].stored, m.len) == 0,
			    "%s: stored %.*s", t[i].name, (int)m.len,
			    m.buf ? m.buf : "");
		} else
			CHECK(n == t[i].inlen, "%s: consumed %zu", t[i].name,
			    n);
		CHECK(m.bare_cr == t[i].bare_cr, "%s: bare_cr %zu",
		    t[i].name, m.bare_cr);
		CHECK(m.bare_lf == t[i].bare_lf, "%s: bare_lf %zu",
		    t[i].name, m.bare_lf);
		free(m.buf);

		/* one octet at a time gives the same result */
		memset(&m, 0, sizeof(m));
		session_data_start(&m, 1 << 20);
		done = 0;
		for (j = 0, total = 0; j < t[i].inlen && !done; j++)
			total += session_data_feed(&m, t[i].in + j, 1, &done);
		CHECK(done == t[i].done, "%s bytewise: done", t[i].name);
		if (t[i].done)
			CHECK(m.len == strlen(t[i].stored) &&
			    memcmp(m.buf, t[i].stored, m.len) == 0 &&
			    t[i].inlen - total == t[i].rest,
			    "%s bytewise: stored", t[i].name);
		free(m.buf);
	}
}

static void
test_data_limits(void)
{
	struct message	 m;
	char		 line[1100];
	int		 done;

	/* 998 characters and CRLF: 1000 octets, allowed */
	memset(&m, 0, sizeof(m));
	session_data_start(&m, 1 << 20);
	memset(line, 'x', 998);
	memcpy(line + 998, "\r\n.\r\n", 5);
	session_data_feed(&m, line, 1003, &done);
	CHECK(done && !m.long_line, "1000-octet line refused");
	free(m.buf);

	/* 999 characters and CRLF: too long */
	memset(&m, 0, sizeof(m));
	session_data_start(&m, 1 << 20);
	memset(line, 'x', 999);
	memcpy(line + 999, "\r\n.\r\n", 5);
	session_data_feed(&m, line, 1004, &done);
	CHECK(done && m.long_line, "1001-octet line accepted");
	free(m.buf);

	/* size limit: stops storing, still finds the end */
	memset(&m, 0, sizeof(m));
	session_data_start(&m, 10);
	session_data_feed(&m, S("0123456789\r\n.\r\n"), &done);
	CHECK(done && m.too_big, "over the size limit not flagged");
	free(m.buf);

	memset(&m, 0, sizeof(m));
	session_data_start(&m, 12);
	session_data_feed(&m, S("0123456789\r\n.\r\n"), &done);
	CHECK(done && !m.too_big, "exactly the size limit flagged");
	free(m.buf);
}

static void
test_token(void)
{
	static const struct {
		const char	*in;
		const char	*token;
	} t[] = {
		{ "FIRM-TOKEN:ABCD-EFGH-IJKL", "FIRM-TOKEN:ABCD-EFGH-IJKL" },
		{ "code FIRM-TOKEN:A1B2-C3D4-E5F6.", "FIRM-TOKEN:A1B2-C3D4-E5F6" },
		{ "x FIRM-TOKEN:abcd-EFGH-IJKL FIRM-TOKEN:0000-1111-2222",
		    "FIRM-TOKEN:0000-1111-2222" },
		{ "FIRM-TOKEN:ABCD-EFGH-IJKLM", NULL },
		{ "FIRM-TOKEN:ABCD-EFGH-IJKLz", NULL },
		{ "FIRM-TOKEN:ABCD-EFGH-IJK", NULL },
		{ "FIRM-TOKEN:ABCDEFGHIJKL", NULL },
		{ "firm-token:ABCD-EFGH-IJKL", NULL },
		{ "FIRM-TOKEN: ABCD-EFGH-IJKL", NULL },
		{ "", NULL },
	};
	char	 out[TOKEN_LEN + 1];
	size_t	 i;
	int	 r;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		r = payload_token_find(t[i].in, strlen(t[i].in), out);
		CHECK(r == (t[i].token != NULL), "token in '%s': %d",
		    t[i].in, r);
		if (r && t[i].token != NULL)
			CHECK(strcmp(out, t[i].token) == 0,
			    "token in '%s': %s", t[i].in, out);
	}
}

static void
test_utf8(void)
{
	static const struct {
		const char	*in;
		size_t		 len;
		const char	*out;
	} t[] = {
		{ S("plain"), "plain" },
		{ S("caf\xc3\xa9"), "caf\xc3\xa9" },
		{ S("\xe2\x82\xac"), "\xe2\x82\xac" },
		{ S("\xf0\x9f\x98\x80"), "\xf0\x9f\x98\x80" },
		{ S("a\xffz"), "a\xef\xbf\xbdz" },
		{ S("\xc0\xaf"), "\xef\xbf\xbd\xef\xbf\xbd" },
		{ S("\xe0\x80\xaf"), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },
		{ S("\xed\xa0\x80"), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },
		{ S("\xc3"), "\xef\xbf\xbd" },
		{ "a\0b", 3, "a\xef\xbf\xbd" "b" },
	};
	char	*out;
	size_t	 i, len;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		out = mime_utf8_clean(t[i].in, t[i].len, &len);
		CHECK(out != NULL && strcmp(out, t[i].out) == 0 &&
		    len == strlen(t[i].out), "utf8 case %zu", i);
		free(out);
	}
}

static void
test_headers(void)
{
	struct mime_msg	 mm;
	const char	 msg[] =
	    "Subject: first\r\n"
	    " folded\r\n"
	    "X-Empty:\r\n"
	    "Subject: second\r\n"
	    "FROM: A <a@b.c>\r\n"
	    "\r\n"
	    "body\r\n";

	CHECK(mime_parse(msg, sizeof(msg) - 1, &mm) == MIME_OK, "mime_parse");
	CHECK(mime_header_get(&mm, "subject") != NULL &&
	    strcmp(mime_header_get(&mm, "subject"), "first folded") == 0,
	    "unfolded first subject: %s", mime_header_get(&mm, "subject"));
	CHECK(mime_header_get(&mm, "from") != NULL &&
	    strcmp(mime_header_get(&mm, "from"), "A <a@b.c>") == 0,
	    "lower-cased name");
	CHECK(mime_header_get(&mm, "x-empty") != NULL &&
	    mime_header_get(&mm, "x-empty")[0] == '\0', "empty value");
	CHECK(mm.subject != NULL && strcmp(mm.subject, "first folded") == 0,
	    "subject: %s", mm.subject);
	/* no Content-Type: text/plain, 7bit, so the text as it is */
	CHECK(mm.body != NULL && mm.bodylen == 6 &&
	    strcmp(mm.body, "body\r\n") == 0,
	    "body");
	mime_free(&mm);
}

int
main(void)
{
	test_paths();
	test_rcpt_match();
	test_data_feed();
	test_data_limits();
	test_token();
	test_utf8();
	test_headers();
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
