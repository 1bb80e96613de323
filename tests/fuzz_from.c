/*
 * libFuzzer target for the From field parser (make tests/fuzz_from):
 * addr_parse_from() on any bytes.  On 1 the result is NUL-terminated
 * inside out, has exactly one '@' outside quoted strings with a local
 * part before it and a domain after it; on 0 and -1 out is empty.  A
 * smaller out gives the same answer when the result fits it, else 0.
 * Any breach aborts, so that libFuzzer keeps the input.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../smtpd.h"

#define FUZZ_OUT	512
#define FUZZ_SMALL	24

int		 LLVMFuzzerTestOneInput(const uint8_t *, size_t);
static void	 fuzz_from_check(const char *, size_t);

/* Exactly one '@' outside quotes, with something on each side. */
static void
fuzz_from_check(const char *out, size_t outsz)
{
	size_t	 i, len, at = 0, ats = 0;
	int	 quoted = 0;

	len = strnlen(out, outsz);
	if (len >= outsz || len < 3)
		abort();
	for (i = 0; i < len; i++) {
		if (quoted && out[i] == '\\') {
			if (++i >= len)
				abort();
		} else if (out[i] == '"')
			quoted = !quoted;
		else if (!quoted && out[i] == '@') {
			ats++;
			at = i;
		}
	}
	if (quoted || ats != 1 || at == 0 || at == len - 1)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	 out[FUZZ_OUT], small[FUZZ_SMALL];
	int	 r, rs;

	memset(out, 'x', sizeof(out));
	r = addr_parse_from((const char *)data, size, out, sizeof(out));
	if (r < -1 || r > 1)
		abort();
	if (r == 1)
		fuzz_from_check(out, sizeof(out));
	else if (out[0] != '\0')
		abort();

	memset(small, 'x', sizeof(small));
	rs = addr_parse_from((const char *)data, size, small, sizeof(small));
	if (r == 1 && strlen(out) < sizeof(small)) {
		if (rs != 1 || strcmp(out, small) != 0)
			abort();
	} else if (r == 1) {
		if (rs != 0 || small[0] != '\0')
			abort();
	} else if (rs != r || small[0] != '\0')
		abort();
	return 0;
}
