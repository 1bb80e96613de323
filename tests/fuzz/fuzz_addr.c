/*
 * libFuzzer target for the arguments of MAIL FROM and RCPT TO (make
 * tests/fuzz/fuzz_addr): addr_parse_path() and addr_parse_mail_params() on
 * any bytes, as session_mail() and session_rcpt() call them.  The
 * first octet chooses: bit 0 a null path "<>" allowed (MAIL), bit 1
 * after EHLO (parameters allowed), bits 2-7 the size of a second, small
 * output buffer.  The rest, up to a NUL (a command line holds none), is
 * the argument, in a heap copy of its exact size, and every output
 * buffer is one of its exact size, so that ASan sees any overrun.
 *
 * Whatever the input: a path parses to 0 or -1; on 0 the end pointer
 * lies within the argument, just past a '>', the output is
 * NUL-terminated within its buffer and is the octets before that '>'
 * (or empty for "<>", only when allowed), with no control character,
 * no DEL, a space only inside a quoted local part, one '@' after the
 * local part, a local part of at most 64 octets and a domain of 1 to
 * 255, 256 octets in all at most; the same argument with a null path
 * allowed or not parses the same but for "<>"; a smaller buffer gives
 * the same answer when the address fits it, else -1.  The parameters
 * after the path (or the whole argument, when it is not one) give -1
 * or REPLY_SYNTAX or REPLY_PARAM; none at all without EHLO; on -1 each
 * is SIZE=, BODY=7BIT, BODY=8BITMIME or SMTPUTF8, *smtputf8 says
 * whether the last one was there, and *size is -1 without SIZE, else
 * the last SIZE's digits (LLONG_MAX when they overflow).  Any breach
 * aborts, so that libFuzzer keeps the input.
 */

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../../smtpd.h"

/* the harness's own reading is not what libFuzzer should explore */
#define FUZZ_NOCOV	__attribute__((no_sanitize("coverage")))

int		 LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void	 fuzz_path_check(const char *, const char *, const char *,
		    int);
static void	 fuzz_params_check(const char *, int);

/* One path parsed to out, ending at rest, checked against arg. */
static void FUZZ_NOCOV
fuzz_path_check(const char *arg, const char *out, const char *rest,
    int allow_null)
{
	size_t		 len = strlen(out), i, q = 0, at, alen = strlen(arg);
	const char	*p;

	if (rest <= arg || rest > arg + alen || rest[-1] != '>' ||
	    arg[0] != '<')
		abort();
	if (len == 0) {
		if (!allow_null || rest != arg + 2 || arg[1] != '>')
			abort();
		return;
	}
	if (len > SMTP_PATH_MAX || (size_t)(rest - 1 - arg) < len + 1 ||
	    memcmp(rest - 1 - len, out, len) != 0)
		abort();
	/* the quoted local part, if any: spaces may be inside */
	if (out[0] == '"') {
		for (q = 1; q < len && out[q] != '"'; q++)
			if (out[q] == '\\')
				q++;
		if (q >= len)
			abort();
		q++;
	}
	for (i = 0; i < len; i++)
		if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f ||
		    (out[i] == ' ' && i >= q))
			abort();
	if (out[0] == '"')
		at = q;
	else if ((p = strchr(out, '@')) != NULL)
		at = (size_t)(p - out);
	else
		abort();
	if (out[at] != '@' || at == 0 || at > SMTP_LOCAL_MAX ||
	    len - at - 1 == 0 || len - at - 1 > SMTP_DOMAIN_MAX)
		abort();
}

/* The parameters, checked against their own reading of p. */
static void FUZZ_NOCOV
fuzz_params_check(const char *p, int esmtp)
{
	const char	*t, *e;
	long long	 size, want_size = -1;
	size_t		 n, i;
	int		 r, utf8, want_utf8 = 0, digits;

	r = addr_parse_mail_params(p, esmtp, &size, &utf8);
	if (r != -1 && r != REPLY_SYNTAX && r != REPLY_PARAM)
		abort();
	if (!esmtp && (r == -1) != (*p == '\0'))
		abort();
	if (r != -1)
		return;
	if (*p != '\0' && *p != ' ')
		abort();
	for (t = p; *t != '\0'; t = e) {
		while (*t == ' ')
			t++;
		if (*t == '\0')
			break;
		e = t + strcspn(t, " ");
		n = (size_t)(e - t);
		if (n >= 5 && strncasecmp(t, "SIZE=", 5) == 0) {
			digits = n > 5;
			want_size = 0;
			for (i = 5; i < n; i++) {
				if (t[i] < '0' || t[i] > '9') {
					digits = 0;
					break;
				}
				if (want_size > (LLONG_MAX - (t[i] - '0')) / 10)
					want_size = LLONG_MAX;
				else if (want_size != LLONG_MAX)
					want_size = want_size * 10 +
					    (t[i] - '0');
			}
			if (!digits)
				abort();	/* a sign or no digits taken */
		} else if (n == 8 && strncasecmp(t, "SMTPUTF8", 8) == 0)
			want_utf8 = 1;
		else if (!(n == 9 && strncasecmp(t, "BODY=7BIT", 9) == 0) &&
		    !(n == 13 && strncasecmp(t, "BODY=8BITMIME", 13) == 0))
			abort();	/* an unknown one taken */
	}
	if (utf8 != want_utf8 || size != want_size)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char		*arg, *out, *small;
	const char	*rest, *rest2, *params;
	size_t		 len, smallsz;
	int		 allow_null, esmtp, r, r2;

	if (size < 1)
		return 0;
	allow_null = data[0] & 1;
	esmtp = (data[0] >> 1) & 1;
	smallsz = data[0] >> 2;		/* 0 to 63 */
	len = strnlen((const char *)data + 1, size - 1);
	if ((arg = malloc(len + 1)) == NULL ||
	    (out = malloc(SMTP_PATH_MAX + 1)) == NULL ||
	    (small = malloc(smallsz ? smallsz : 1)) == NULL)
		abort();
	memcpy(arg, data + 1, len);
	arg[len] = '\0';

	/* as session_mail() and session_rcpt() do */
	r = addr_parse_path(arg, out, SMTP_PATH_MAX + 1, &rest, allow_null);
	if (r != 0 && r != -1)
		abort();
	if (r == 0)
		fuzz_path_check(arg, out, rest, allow_null);

	/* a null path allowed or not: the same but for "<>" */
	r2 = addr_parse_path(arg, small, smallsz, &rest2, !allow_null);
	if (strncmp(arg, "<>", 2) != 0 && (r2 == 0) != (r == 0 &&
	    strlen(out) < smallsz))
		abort();
	if (r2 == 0) {
		fuzz_path_check(arg, small, rest2, !allow_null);
		if (r == 0 && (rest2 != rest || strcmp(small, out) != 0))
			abort();
	}

	params = r == 0 ? rest : arg;
	fuzz_params_check(params, esmtp);
	free(small);
	free(out);
	free(arg);
	return 0;
}
