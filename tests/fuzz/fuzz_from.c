/*
 * libFuzzer target for the From field parser (make tests/fuzz/fuzz_from):
 * addr_parse_from() on any bytes.  On 1 the result is NUL-terminated
 * inside out and the domain offset points just past an '@': before it a
 * local part with no '@' outside its quoted strings, none of them left
 * open, after it a domain that is a literal in brackets or has no '@',
 * '[' or ']' at all; on 0 and -1 out is empty.  A smaller out gives the
 * same answer (and offset) when the result fits it, else 0.  Any breach
 * aborts, so that libFuzzer keeps the input.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../smtpd.h"

#define FUZZ_OUT	512
#define FUZZ_SMALL	24

int		 LLVMFuzzerTestOneInput(const uint8_t *, size_t);
static void	 fuzz_from_check(const char *, size_t, size_t);

/* local "@" domain at dom, as the header says. */
static void
fuzz_from_check(const char *out, size_t outsz, size_t dom)
{
	size_t	 i, len;
	int	 quoted = 0;

	len = strnlen(out, outsz);
	if (len >= outsz || len < 3 || dom < 2 || dom >= len ||
	    out[dom - 1] != '@')
		abort();
	for (i = 0; i < dom - 1; i++) {
		if (quoted && out[i] == '\\') {
			if (++i >= dom - 1)
				abort();
		} else if (out[i] == '"')
			quoted = !quoted;
		else if (!quoted && out[i] == '@')
			abort();
	}
	if (quoted)
		abort();
	if (out[dom] == '[') {
		if (out[len - 1] != ']' || len - dom < 2)
			abort();
	} else if (strpbrk(out + dom, "@[]") != NULL)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	 out[FUZZ_OUT], small[FUZZ_SMALL];
	size_t	 dom = 0, sdom = 0;
	int	 r, rs;

	memset(out, 'x', sizeof(out));
	r = addr_parse_from((const char *)data, size, out, sizeof(out), &dom);
	if (r < -1 || r > 1)
		abort();
	if (r == 1)
		fuzz_from_check(out, sizeof(out), dom);
	else if (out[0] != '\0')
		abort();

	memset(small, 'x', sizeof(small));
	rs = addr_parse_from((const char *)data, size, small, sizeof(small),
	    &sdom);
	if (r == 1 && strlen(out) < sizeof(small)) {
		if (rs != 1 || strcmp(out, small) != 0 || sdom != dom)
			abort();
	} else if (r == 1) {
		if (rs != 0 || small[0] != '\0')
			abort();
	} else if (rs != r || small[0] != '\0')
		abort();
	return 0;
}
