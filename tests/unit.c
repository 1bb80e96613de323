/*
 * Unit tests for the parsers: SMTP paths, the parameters of MAIL FROM,
 * recipient rules, the data reader (dot-stuffing, bare CR/LF,
 * smuggling), the token finder, UTF-8 cleaning, the A-label form of a
 * domain (IDNA) and the PROXY protocol header.  Prints "N passed, N
 * failed".
 */

#include <sys/types.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <limits.h>
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
test_mail_params(void)
{
	static const struct {
		const char	*in;
		int		 esmtp;
		int		 r;		/* -1: accepted */
		long long	 size;
		int		 smtputf8;
	} t[] = {
		{ "", 0, -1, -1, 0 },
		{ "", 1, -1, -1, 0 },
		{ " ", 1, -1, -1, 0 },
		{ " SIZE=1000", 1, -1, 1000, 0 },
		{ " size=0 body=8bitmime smtputf8", 1, -1, 0, 1 },
		{ "  BODY=7BIT   SMTPUTF8  ", 1, -1, -1, 1 },
		{ " SIZE=10 SIZE=20", 1, -1, 20, 0 },
		{ " SIZE=99999999999999999999999", 1, -1, LLONG_MAX, 0 },
		{ " SIZE=10", 0, REPLY_SYNTAX, 0, 0 },	/* after HELO */
		{ " ", 0, REPLY_SYNTAX, 0, 0 },
		{ "SIZE=10", 1, REPLY_SYNTAX, 0, 0 },	/* no space */
		{ " SIZE=", 1, REPLY_SYNTAX, 0, 0 },
		{ " SIZE=12x", 1, REPLY_SYNTAX, 0, 0 },
		{ " SIZE=+5", 1, REPLY_SYNTAX, 0, 0 },	/* digits only */
		{ " SIZE=-0", 1, REPLY_SYNTAX, 0, 0 },
		{ " SIZE= 5", 1, REPLY_SYNTAX, 0, 0 },
		{ " BODY=BINARYMIME", 1, REPLY_PARAM, 0, 0 },
		{ " SMTPUTF8=yes", 1, REPLY_PARAM, 0, 0 },
		{ " RET=FULL", 1, REPLY_PARAM, 0, 0 },
	};
	char		 longp[SMTP_LINE_MAX + 16];
	long long	 size;
	size_t		 i;
	int		 r, utf8;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		r = addr_parse_mail_params(t[i].in, t[i].esmtp, &size, &utf8);
		CHECK(r == t[i].r, "mail_params(\"%s\", %d) = %d", t[i].in,
		    t[i].esmtp, r);
		if (r == -1 && t[i].r == -1)
			CHECK(size == t[i].size && utf8 == t[i].smtputf8,
			    "mail_params(\"%s\") gave SIZE %lld, SMTPUTF8 %d",
			    t[i].in, size, utf8);
	}
	/* longer than any command line: refused, never copied */
	longp[0] = ' ';
	memset(longp + 1, 'A', sizeof(longp) - 2);
	longp[sizeof(longp) - 1] = '\0';
	CHECK(addr_parse_mail_params(longp, 1, &size, &utf8) == REPLY_PARAM,
	    "a parameter over SMTP_LINE_MAX octets accepted");
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

	CHECK(addr_rcpt_match(&conf, "verify@localhost"), "exact");
	CHECK(addr_rcpt_match(&conf, "verify@LOCALHOST"),
	    "domain case-insensitive");
	CHECK(!addr_rcpt_match(&conf, "Verify@localhost"),
	    "local part is compared as given");
	CHECK(!addr_rcpt_match(&conf, "verify2@localhost"), "prefix");
	CHECK(!addr_rcpt_match(&conf, "verif@localhost"), "shorter");
	CHECK(!addr_rcpt_match(&conf, "verify@localhost.evil"), "suffix");
	CHECK(addr_rcpt_match(&conf, "anyone@example.org"), "@domain");
	CHECK(addr_rcpt_match(&conf, "x@EXAMPLE.ORG"), "@domain case");
	CHECK(!addr_rcpt_match(&conf, "x@sub.example.org"),
	    "subdomain is not the domain");
	CHECK(!addr_rcpt_match(&conf, "nobody"), "no @");
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
		message_start(&m, 1 << 20);
		n = message_feed(&m, t[i].in, t[i].inlen, &done);
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
		message_start(&m, 1 << 20);
		done = 0;
		for (j = 0, total = 0; j < t[i].inlen && !done; j++)
			total += message_feed(&m, t[i].in + j, 1, &done);
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
	message_start(&m, 1 << 20);
	memset(line, 'x', 998);
	memcpy(line + 998, "\r\n.\r\n", 5);
	message_feed(&m, line, 1003, &done);
	CHECK(done && !m.long_line, "1000-octet line refused");
	free(m.buf);

	/* 999 characters and CRLF: too long */
	memset(&m, 0, sizeof(m));
	message_start(&m, 1 << 20);
	memset(line, 'x', 999);
	memcpy(line + 999, "\r\n.\r\n", 5);
	message_feed(&m, line, 1004, &done);
	CHECK(done && m.long_line, "1001-octet line accepted");
	free(m.buf);

	/* size limit: stops storing, still finds the end */
	memset(&m, 0, sizeof(m));
	message_start(&m, 10);
	message_feed(&m, S("0123456789\r\n.\r\n"), &done);
	CHECK(done && m.too_big, "over the size limit not flagged");
	free(m.buf);

	memset(&m, 0, sizeof(m));
	message_start(&m, 12);
	message_feed(&m, S("0123456789\r\n.\r\n"), &done);
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

/* alabel_domain(): the A-label form SPF and DMARC use (RFC 8616). */
static void
test_alabel(void)
{
	static const struct {
		const char	*in;
		const char	*out;		/* NULL: -1 */
	} t[] = {
		{ "example.org", "example.org" },
		{ "Example.ORG", "Example.ORG" },	/* ASCII: as it is */
		{ "a_b.example", "a_b.example" },
		{ "xn--bcher-kva.example", "xn--bcher-kva.example" },
		{ "b\xc3\xbc" "cher.example", "xn--bcher-kva.example" },
		{ "B\xc3\x9c" "CHER.Example", "xn--bcher-kva.example" },
		/* decomposed u + U+0308: normalised to NFC first */
		{ "bu\xcc\x88" "cher.example", "xn--bcher-kva.example" },
		/* non-transitional: sharp s stays, never "fass" */
		{ "fa\xc3\x9f.example", "xn--fa-hia.example" },
		/* an ASCII label beside a U-label is not cut down */
		{ "a_b.b\xc3\xbc" "cher.example", "a_b.xn--bcher-kva.example" },
		/* the ideographic full stop is a dot */
		{ "b\xc3\xbc" "cher\xe3\x80\x82" "example",
		    "xn--bcher-kva.example" },
		{ "\xe2\x98\x83.example", NULL },	/* snowman: disallowed */
		{ "\xcc\x81" "a.example", NULL },	/* leading combining */
		{ "-a.b\xc3\xbc" "cher.example", NULL },	/* hyphen rule */
		{ "\xff.example", NULL },		/* not UTF-8 */
		{ "b\xc3\xbc" "cher.xn--zz", NULL },	/* a bad A-label */
	};
	char	 out[SMTP_DOMAIN_MAX + 1], longname[200], small[8];
	size_t	 i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		memset(out, 'x', sizeof(out));
		if (t[i].out == NULL)
			CHECK(alabel_domain(t[i].in, out, sizeof(out)) == -1 &&
			    out[0] == '\0', "alabel case %zu refused", i);
		else
			CHECK(alabel_domain(t[i].in, out, sizeof(out)) == 0 &&
			    strcmp(out, t[i].out) == 0, "alabel case %zu: %s",
			    i, out);
	}
	/* a label of 66 two-octet characters: too long as an A-label */
	for (i = 0; i < 132; i += 2)
		memcpy(longname + i, "\xc3\xbc", 2);
	memcpy(longname + i, ".de", 4);
	CHECK(alabel_domain(longname, out, sizeof(out)) == -1,
	    "alabel: a label over 63 octets in its A-label form");
	CHECK(alabel_domain("b\xc3\xbc" "cher.example", small,
	    sizeof(small)) == -1 && small[0] == '\0',
	    "alabel: a result that does not fit");
	CHECK(alabel_domain("example.org", small, sizeof(small)) == -1 &&
	    small[0] == '\0', "alabel: an ASCII name that does not fit");
	CHECK(alabel_domain("x", out, 0) == -1, "alabel: no room at all");
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

#define V2SIG	"\r\n\r\n\0\r\nQUIT\n"

/* A v2 header: command, family, then the block. */
static size_t
proxy_v2_make(uint8_t *out, int cmd, int fam, const uint8_t *blk,
    size_t blen)
{
	memcpy(out, V2SIG, PROXY_V2_SIGLEN);
	out[12] = (uint8_t)(0x20 | cmd);
	out[13] = (uint8_t)fam;
	out[14] = (uint8_t)(blen >> 8);
	out[15] = (uint8_t)blen;
	memcpy(out + PROXY_V2_FIXED, blk, blen);
	return PROXY_V2_FIXED + blen;
}

/* proxy_parse() on a string; the address as text in addr. */
static int
proxy_try(const void *buf, size_t len, size_t *used, char *addr,
    size_t addrsz, int *port)
{
	struct sockaddr_storage	 ss;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&ss;
	int			 r;

	r = proxy_parse(buf, len, &ss, used);
	addr[0] = '\0';
	*port = -1;
	if (ss.ss_family == AF_INET) {
		inet_ntop(AF_INET, &sin->sin_addr, addr, addrsz);
		*port = ntohs(sin->sin_port);
	} else if (ss.ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &sin6->sin6_addr, addr, addrsz);
		*port = ntohs(sin6->sin6_port);
	}
	return r;
}

/* Every proper prefix of a valid header asks for more. */
static int
proxy_prefixes_more(const void *buf, size_t len)
{
	struct sockaddr_storage	 ss;
	size_t			 k, used;

	for (k = 0; k < len; k++)
		if (proxy_parse(buf, k, &ss, &used) != PROXY_MORE ||
		    used != 0)
			return 0;
	return 1;
}

static void
test_proxy_v1(void)
{
	static const struct {
		const char	*in;
		int		 r;
		const char	*addr;
		int		 port;
	} t[] = {
		{ "PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\n",
		    PROXY_SOURCE, "192.0.2.7", 40000 },
		{ "PROXY TCP6 2001:db8::1 2001:db8::2 1 25\r\n",
		    PROXY_SOURCE, "2001:db8::1", 1 },
		{ "PROXY TCP6 ::ffff:192.0.2.9 ::1 0 25\r\n",
		    PROXY_SOURCE, "192.0.2.9", 0 },
		{ "PROXY TCP4 0.0.0.0 0.0.0.0 65535 65535\r\n",
		    PROXY_SOURCE, "0.0.0.0", 65535 },
		{ "PROXY UNKNOWN\r\n", PROXY_LOCAL, "", -1 },
		{ "PROXY UNKNOWN whatever 1 2 3\r\n", PROXY_LOCAL, "", -1 },
		/* ports */
		{ "PROXY TCP4 192.0.2.7 198.51.100.1 65536 25\r\n",
		    PROXY_ERROR, "", -1 },
		{ "PROXY TCP4 192.0.2.7 198.51.100.1 +1 25\r\n",
		    PROXY_ERROR, "", -1 },
		{ "PROXY TCP4 192.0.2.7 198.51.100.1 -1 25\r\n",
		    PROXY_ERROR, "", -1 },
		{ "PROXY TCP4 192.0.2.7 198.51.100.1 01 25\r\n",
		    PROXY_ERROR, "", -1 },
		{ "PROXY TCP4 192.0.2.7 198.51.100.1 100000 25\r\n",
		    PROXY_ERROR, "", -1 },
		{ "PROXY TCP4 192.0.2.7 198.51.100.1 1a 25\r\n",
		    PROXY_ERROR, "", -1 },
		{ "PROXY TCP4 192.0.2.7 198.51.100.1  25\r\n",
		    PROXY_ERROR, "", -1 },
		/* addresses */
		{ "PROXY TCP4 192.0.2.256 198.51.100.1 1 25\r\n",
		    PROXY_ERROR, "", -1 },
		{ "PROXY TCP4 2001:db8::1 198.51.100.1 1 25\r\n",
		    PROXY_ERROR, "", -1 },
		{ "PROXY TCP6 192.0.2.7 2001:db8::2 1 25\r\n",
		    PROXY_ERROR, "", -1 },
		{ "PROXY TCP4 192.0.2 198.51.100.1 1 25\r\n",
		    PROXY_ERROR, "", -1 },
		{ "PROXY TCP4 192.0.2.7 198.51.100.x 1 25\r\n",
		    PROXY_ERROR, "", -1 },
		/* shape */
		{ "PROXY TCP4 192.0.2.7 198.51.100.1 1\r\n",
		    PROXY_ERROR, "", -1 },
		{ "PROXY TCP4 192.0.2.7 198.51.100.1 1 25 6\r\n",
		    PROXY_ERROR, "", -1 },
		{ "PROXY TCP4 192.0.2.7 198.51.100.1 1 25 \r\n",
		    PROXY_ERROR, "", -1 },
		{ "PROXY  TCP4 192.0.2.7 198.51.100.1 1 25\r\n",
		    PROXY_ERROR, "", -1 },
		{ "PROXY UDP4 192.0.2.7 198.51.100.1 1 25\r\n",
		    PROXY_ERROR, "", -1 },
		{ "PROXY tcp4 192.0.2.7 198.51.100.1 1 25\r\n",
		    PROXY_ERROR, "", -1 },
		{ "PROXY UNKNOWNX\r\n", PROXY_ERROR, "", -1 },
		{ "PROXY \r\n", PROXY_ERROR, "", -1 },
		{ "PROXY TCP4 192.0.2.7 198.51.100.1 1 25\n", PROXY_ERROR, "",
		    -1 },
		{ "PROXY TCP4 192.0.2.7 198.51.100.1 1 25\rX", PROXY_ERROR, "",
		    -1 },
		{ "PROXY UNKNOWN \xc3\xa9\r\n", PROXY_ERROR, "", -1 },
		{ "proxy TCP4 192.0.2.7 198.51.100.1 1 25\r\n", PROXY_ERROR,
		    "", -1 },
		{ "EHLO client.test\r\n", PROXY_ERROR, "", -1 },
		{ "GET / HTTP/1.0\r\n", PROXY_ERROR, "", -1 },
		/* a beginning */
		{ "PROX", PROXY_MORE, "", -1 },
		{ "PROXY TCP4 192.0.2.7 198.51.100.1 1 25\r", PROXY_MORE, "",
		    -1 },
	};
	char		 addr[INET6_ADDRSTRLEN], line[256];
	size_t		 i, used, len;
	int		 r, port;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		len = strlen(t[i].in);
		r = proxy_try(t[i].in, len, &used, addr, sizeof(addr), &port);
		CHECK(r == t[i].r, "proxy v1 case %zu: %d, want %d", i, r,
		    t[i].r);
		CHECK(strcmp(addr, t[i].addr) == 0 && port == t[i].port,
		    "proxy v1 case %zu: %s port %d", i, addr, port);
		if (t[i].r == PROXY_SOURCE || t[i].r == PROXY_LOCAL) {
			CHECK(used == len, "proxy v1 case %zu: used %zu", i,
			    used);
			CHECK(proxy_prefixes_more(t[i].in, len),
			    "proxy v1 case %zu: a prefix is not MORE", i);
		} else
			CHECK(used == 0, "proxy v1 case %zu: used %zu", i,
			    used);
	}

	/* a NUL is refused as soon as it arrives */
	r = proxy_try("PROXY TCP4 192.0.2.7\0 198.51.100.1 1 25\r\n", 41,
	    &used, addr, sizeof(addr), &port);
	CHECK(r == PROXY_ERROR, "NUL in the line: %d", r);
	r = proxy_try("PROXY TCP4 192.0.2.7\0", 21, &used, addr, sizeof(addr),
	    &port);
	CHECK(r == PROXY_ERROR, "NUL, judged at once: %d", r);

	/* what follows the header is not the header's */
	len = strlen("PROXY TCP4 192.0.2.7 198.51.100.1 1 25\r\n");
	r = proxy_try("PROXY TCP4 192.0.2.7 198.51.100.1 1 25\r\nEHLO x\r\n",
	    len + 8, &used, addr, sizeof(addr), &port);
	CHECK(r == PROXY_SOURCE && used == len, "pipelined: %d %zu", r, used);

	/* 107 octets is the most; 108 is refused before the CRLF */
	memset(line, 0, sizeof(line));
	strlcpy(line, "PROXY UNKNOWN ", sizeof(line));
	memset(line + 14, 'x', PROXY_V1_MAX - 2 - 14);
	strlcat(line, "\r\n", sizeof(line));
	CHECK(strlen(line) == PROXY_V1_MAX, "line length %zu", strlen(line));
	r = proxy_try(line, PROXY_V1_MAX, &used, addr, sizeof(addr), &port);
	CHECK(r == PROXY_LOCAL && used == PROXY_V1_MAX, "107 octets: %d", r);
	memset(line + 14, 'x', PROXY_V1_MAX - 1 - 14);
	strlcpy(line + PROXY_V1_MAX - 1, "\r\n", 3);
	r = proxy_try(line, PROXY_V1_MAX + 1, &used, addr, sizeof(addr),
	    &port);
	CHECK(r == PROXY_ERROR, "108 octets: %d", r);
	r = proxy_try(line, PROXY_V1_MAX - 1, &used, addr, sizeof(addr),
	    &port);
	CHECK(r == PROXY_ERROR, "106 octets and no CR yet: %d", r);
	memset(line, 'x', sizeof(line));
	memcpy(line, "PROXY ", 6);
	r = proxy_try(line, sizeof(line), &used, addr, sizeof(addr), &port);
	CHECK(r == PROXY_ERROR, "endless line: %d", r);
}

static void
test_proxy_v2(void)
{
	uint8_t		 blk4[12] = { 192, 0, 2, 7, 198, 51, 100, 1,
			    0x9c, 0x40, 0, 25 };
	uint8_t		 blk6[36 + 30], buf[PROXY_HDR_MAX + 64];
	char		 addr[INET6_ADDRSTRLEN];
	size_t		 n, used;
	int		 r, port;

	memset(blk6, 0, sizeof(blk6));
	blk6[0] = 0x20;
	blk6[1] = 0x01;
	blk6[2] = 0x0d;
	blk6[3] = 0xb8;
	blk6[15] = 1;
	blk6[32] = 0x12;
	blk6[33] = 0x34;
	blk6[36] = 0x04;	/* a TLV after the addresses */
	blk6[38] = 27;

	n = proxy_v2_make(buf, 1, 0x11, blk4, sizeof(blk4));
	r = proxy_try(buf, n, &used, addr, sizeof(addr), &port);
	CHECK(r == PROXY_SOURCE && used == 28 &&
	    strcmp(addr, "192.0.2.7") == 0 && port == 40000,
	    "v2 tcp4: %d %zu %s %d", r, used, addr, port);
	CHECK(proxy_prefixes_more(buf, n), "v2 tcp4 prefixes");

	n = proxy_v2_make(buf, 1, 0x21, blk6, sizeof(blk6));
	memcpy(buf + n, "EHLO x\r\n", 8);
	r = proxy_try(buf, n + 8, &used, addr, sizeof(addr), &port);
	CHECK(r == PROXY_SOURCE && used == n &&
	    strcmp(addr, "2001:db8::1") == 0 && port == 0x1234,
	    "v2 tcp6 with a TLV: %d %zu %s %d", r, used, addr, port);
	CHECK(proxy_prefixes_more(buf, n), "v2 tcp6 prefixes");

	/* LOCAL: the peer's own, whatever the family says */
	n = proxy_v2_make(buf, 0, 0x00, NULL, 0);
	r = proxy_try(buf, n, &used, addr, sizeof(addr), &port);
	CHECK(r == PROXY_LOCAL && used == 16 && addr[0] == '\0',
	    "v2 local: %d %zu", r, used);
	n = proxy_v2_make(buf, 0, 0x11, blk4, sizeof(blk4));
	r = proxy_try(buf, n, &used, addr, sizeof(addr), &port);
	CHECK(r == PROXY_LOCAL && used == 28 && addr[0] == '\0',
	    "v2 local with addresses: %d %zu", r, used);
	n = proxy_v2_make(buf, 1, 0x00, NULL, 0);
	r = proxy_try(buf, n, &used, addr, sizeof(addr), &port);
	CHECK(r == PROXY_LOCAL && used == 16, "v2 unspec: %d", r);

	/* IPv4-mapped IPv6 is the IPv4 address */
	memset(blk6, 0, 36);
	blk6[10] = blk6[11] = 0xff;
	blk6[12] = 192;
	blk6[13] = 0;
	blk6[14] = 2;
	blk6[15] = 9;
	n = proxy_v2_make(buf, 1, 0x21, blk6, 36);
	r = proxy_try(buf, n, &used, addr, sizeof(addr), &port);
	CHECK(r == PROXY_SOURCE && strcmp(addr, "192.0.2.9") == 0,
	    "v2 mapped: %d %s", r, addr);

	/* bad version, command, family, length */
	n = proxy_v2_make(buf, 1, 0x11, blk4, sizeof(blk4));
	buf[12] = 0x11;
	CHECK(proxy_try(buf, n, &used, addr, sizeof(addr), &port) ==
	    PROXY_ERROR, "v2 version 1");
	CHECK(proxy_try(buf, 13, &used, addr, sizeof(addr), &port) ==
	    PROXY_ERROR, "v2 version 1, judged at once");
	buf[12] = 0x22;
	CHECK(proxy_try(buf, n, &used, addr, sizeof(addr), &port) ==
	    PROXY_ERROR, "v2 command 2");
	buf[12] = 0x21;
	buf[13] = 0x12;
	CHECK(proxy_try(buf, n, &used, addr, sizeof(addr), &port) ==
	    PROXY_ERROR, "v2 udp4");
	buf[13] = 0x41;
	CHECK(proxy_try(buf, 14, &used, addr, sizeof(addr), &port) ==
	    PROXY_ERROR, "v2 family 4, judged at once");
	buf[13] = 0x13;
	CHECK(proxy_try(buf, n, &used, addr, sizeof(addr), &port) ==
	    PROXY_ERROR, "v2 transport 3");
	n = proxy_v2_make(buf, 1, 0x11, blk4, 11);
	CHECK(proxy_try(buf, n, &used, addr, sizeof(addr), &port) ==
	    PROXY_ERROR, "v2 tcp4 block too short");
	n = proxy_v2_make(buf, 1, 0x21, blk4, 12);
	CHECK(proxy_try(buf, 16, &used, addr, sizeof(addr), &port) ==
	    PROXY_ERROR, "v2 tcp6 with 12 octets, judged at once");
	n = proxy_v2_make(buf, 1, 0x31, blk4, 12);
	CHECK(proxy_try(buf, n, &used, addr, sizeof(addr), &port) ==
	    PROXY_ERROR, "v2 unix with 12 octets");

	/* the bound on the length field */
	memset(buf, 0, sizeof(buf));
	n = proxy_v2_make(buf, 1, 0x11, blk4, sizeof(blk4));
	buf[14] = PROXY_V2_BLOCK_MAX >> 8;
	buf[15] = PROXY_V2_BLOCK_MAX & 0xff;
	r = proxy_try(buf, PROXY_HDR_MAX, &used, addr, sizeof(addr), &port);
	CHECK(r == PROXY_SOURCE && used == PROXY_HDR_MAX,
	    "v2 longest: %d %zu", r, used);
	CHECK(proxy_try(buf, PROXY_HDR_MAX - 1, &used, addr, sizeof(addr),
	    &port) == PROXY_MORE, "v2 longest, one short");
	buf[14] = (PROXY_V2_BLOCK_MAX + 1) >> 8;
	buf[15] = (PROXY_V2_BLOCK_MAX + 1) & 0xff;
	CHECK(proxy_try(buf, 16, &used, addr, sizeof(addr), &port) ==
	    PROXY_ERROR, "v2 over the bound, judged at once");
	buf[14] = buf[15] = 0xff;
	CHECK(proxy_try(buf, 16, &used, addr, sizeof(addr), &port) ==
	    PROXY_ERROR, "v2 length 65535");

	/* a signature that goes wrong */
	memcpy(buf, V2SIG, PROXY_V2_SIGLEN);
	buf[11] = 'X';
	CHECK(proxy_try(buf, 12, &used, addr, sizeof(addr), &port) ==
	    PROXY_ERROR, "v2 bad signature");
	CHECK(proxy_try(buf, 11, &used, addr, sizeof(addr), &port) ==
	    PROXY_MORE, "v2 signature's beginning");
	CHECK(proxy_try(buf, 0, &used, addr, sizeof(addr), &port) ==
	    PROXY_MORE, "nothing yet");
}

static void
test_proxy_trusted(void)
{
	struct smtpd_conf	 c;
	struct sockaddr_storage	 ss;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&ss;

	memset(&c, 0, sizeof(c));
	c.proxy_from[0].af = AF_INET;
	inet_pton(AF_INET, "10.1.0.0", c.proxy_from[0].addr);
	c.proxy_from[0].prefixlen = 17;
	c.proxy_from[1].af = AF_INET6;
	inet_pton(AF_INET6, "2001:db8::", c.proxy_from[1].addr);
	c.proxy_from[1].prefixlen = 32;
	c.nproxy_from = 2;

	memset(&ss, 0, sizeof(ss));
	sin->sin_family = AF_INET;
	inet_pton(AF_INET, "10.1.127.255", &sin->sin_addr);
	CHECK(proxy_trusted(&c, &ss), "10.1.127.255 in 10.1.0.0/17");
	inet_pton(AF_INET, "10.1.128.0", &sin->sin_addr);
	CHECK(!proxy_trusted(&c, &ss), "10.1.128.0 not in 10.1.0.0/17");
	memset(&ss, 0, sizeof(ss));
	sin6->sin6_family = AF_INET6;
	inet_pton(AF_INET6, "::ffff:10.1.0.1", &sin6->sin6_addr);
	CHECK(proxy_trusted(&c, &ss), "mapped 10.1.0.1 compares as IPv4");
	inet_pton(AF_INET6, "2001:db8:ffff::1", &sin6->sin6_addr);
	CHECK(proxy_trusted(&c, &ss), "2001:db8:ffff::1 in 2001:db8::/32");
	inet_pton(AF_INET6, "2001:db9::1", &sin6->sin6_addr);
	CHECK(!proxy_trusted(&c, &ss), "2001:db9::1 not in 2001:db8::/32");
	c.nproxy_from = 0;
	inet_pton(AF_INET6, "2001:db8::1", &sin6->sin6_addr);
	CHECK(!proxy_trusted(&c, &ss), "no --proxy-from: nobody");
}

int
main(void)
{
	test_paths();
	test_mail_params();
	test_rcpt_match();
	test_data_feed();
	test_data_limits();
	test_token();
	test_utf8();
	test_alabel();
	test_headers();
	test_proxy_v1();
	test_proxy_v2();
	test_proxy_trusted();
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
