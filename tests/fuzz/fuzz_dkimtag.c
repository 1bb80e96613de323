/*
 * libFuzzer target for the DKIM tag lists (make tests/fuzz/fuzz_dkimtag):
 * dkimtag_parse(), dkimtag_sig_parse(), dkimtag_h_count(),
 * dkimtag_same_value() and dkimtag_key_parse() on any bytes, each in a heap
 * copy of the input's exact size so that ASan sees any overrun.
 *
 * Whatever the input: dkimtag_parse() gives -1 or a count of at most
 * DKIMTAG_MAX; each tag's name lies within the input, starts with a
 * letter and holds only letters, digits and '_'; each value lies
 * within the input, neither starts nor ends with white space, and
 * holds no ';' and only VALCHAR or FWS octets; no name repeats (a
 * repeat is reported, not kept); the list parsed again from a copy
 * with its tags rewritten as "name=value;" gives the same tags.  A key
 * record valid for an algorithm is valid without one.
 * dkimtag_sig_parse() accepts only a list dkimtag_parse() accepts
 * without a repeat, with v=1 and every required tag;
 * d= and s= are printable or empty; a= is "unknown" or letters, digits
 * and '-'; t= and x= are -1 or at most 12 digits, and x >= t when
 * accepted.  Any breach aborts, so that libFuzzer keeps the input.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../smtpd.h"

int		 LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static int
fuzz_valchar(char c)
{
	return c >= 0x21 && c <= 0x7e && c != ';';
}

static int
fuzz_wsp(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static void
fuzz_check_tags(const char *in, size_t len, const struct dkimtag *t, int n)
{
	char	*copy, *p;
	size_t	 i, j, total = 0;
	int	 dup;
	struct dkimtag	again[DKIMTAG_MAX];

	if (n == -1)
		return;
	if (n < 1 || n > DKIMTAG_MAX)
		abort();
	for (i = 0; i < (size_t)n; i++) {
		if (t[i].name < in || t[i].name + t[i].nlen > in + len ||
		    t[i].nlen == 0)
			abort();
		if (t[i].val < in || t[i].val + t[i].vlen > in + len)
			abort();
		if (!((t[i].name[0] >= 'a' && t[i].name[0] <= 'z') ||
		    (t[i].name[0] >= 'A' && t[i].name[0] <= 'Z')))
			abort();
		for (j = 0; j < t[i].vlen; j++)
			if (!fuzz_valchar(t[i].val[j]) &&
			    !fuzz_wsp(t[i].val[j]))
				abort();
		if (t[i].vlen > 0 && (fuzz_wsp(t[i].val[0]) ||
		    fuzz_wsp(t[i].val[t[i].vlen - 1])))
			abort();
		for (j = 0; j < i; j++)
			if (t[j].nlen == t[i].nlen &&
			    memcmp(t[j].name, t[i].name, t[i].nlen) == 0)
				abort();
		total += t[i].nlen + t[i].vlen + 2;
	}
	if ((copy = malloc(total)) == NULL)
		return;
	for (p = copy, i = 0; i < (size_t)n; i++) {
		memcpy(p, t[i].name, t[i].nlen);
		p += t[i].nlen;
		*p++ = '=';
		memcpy(p, t[i].val, t[i].vlen);
		p += t[i].vlen;
		*p++ = ';';
	}
	if (dkimtag_parse(copy, total, again, DKIMTAG_MAX, &dup) != n || dup)
		abort();
	for (i = 0; i < (size_t)n; i++)
		if (again[i].nlen != t[i].nlen || again[i].vlen != t[i].vlen ||
		    memcmp(again[i].name, t[i].name, t[i].nlen) != 0 ||
		    memcmp(again[i].val, t[i].val, t[i].vlen) != 0)
			abort();
	free(copy);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct dkimtag_sig	 sig;
	struct dkimtag			 tags[DKIMTAG_MAX];
	char				*in;
	size_t				 i;
	int				 n, r, strict, dup;

	if ((in = malloc(size ? size : 1)) == NULL)
		return 0;
	memcpy(in, data, size);
	n = dkimtag_parse(in, size, tags, DKIMTAG_MAX, &dup);
	fuzz_check_tags(in, size, tags, n);

	r = dkimtag_sig_parse(in, size, &sig);
	if (r == 0 && (n == -1 || dup || sig.error != NULL))
		abort();
	if (r == -1 && sig.error == NULL)
		abort();
	if (r == 0 && (dkimtag_get(sig.tags, sig.ntags, "v") == NULL ||
	    sig.d[0] == '\0' || sig.s[0] == '\0'))
		abort();
	if (sig.t < -1 || sig.t > 999999999999LL || sig.x < -1 ||
	    sig.x > 999999999999LL)
		abort();
	if (r == 0 && sig.t != -1 && sig.x != -1 && sig.x < sig.t)
		abort();
	for (i = 0; sig.a[i] != '\0'; i++)
		if (!((sig.a[i] >= 'a' && sig.a[i] <= 'z') ||
		    (sig.a[i] >= 'A' && sig.a[i] <= 'Z') ||
		    (sig.a[i] >= '0' && sig.a[i] <= '9') || sig.a[i] == '-'))
			abort();
	for (i = 0; sig.d[i] != '\0'; i++)
		if (!fuzz_valchar(sig.d[i]))
			abort();
	for (i = 0; sig.s[i] != '\0'; i++)
		if (!fuzz_valchar(sig.s[i]))
			abort();
	if (r == 0) {
		(void)dkimtag_h_count(&sig, "subject");
		for (i = 0; i < sig.ntags; i++) {
			(void)dkimtag_same_value(&sig.tags[i], "");
			(void)dkimtag_same_value(&sig.tags[i], "AAAA");
		}
	}
	if (dkimtag_key_parse(in, size, NULL, &strict) == 0 &&
	    (n == -1 || dup || (strict != 0 && strict != 1)))
		abort();
	if (dkimtag_key_parse(in, size, "rsa-sha256", &strict) == 0 &&
	    dkimtag_key_parse(in, size, NULL, &strict) != 0)
		abort();
	free(in);
	return 0;
}
