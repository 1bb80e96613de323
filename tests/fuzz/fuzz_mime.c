/*
 * libFuzzer target for the MIME decoder (make fuzz).  Whatever the
 * input, mime_parse() must return MIME_OK or MIME_ENOMEM (a limit
 * only truncates, named by a known code), leave the output zeroed on
 * error, and on success give a body and header values that
 * are valid UTF-8 without NUL, header values without controls but
 * TAB, lower-case names, and the first Subject as the subject.
 * Any breach aborts, so that libFuzzer keeps the input.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../smtpd.h"

int		 LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static int	 fuzz_utf8_valid(const char *, size_t);

/* Valid UTF-8 (RFC 3629) without NUL; independent of mime.c. */
static int
fuzz_utf8_valid(const char *p, size_t len)
{
	const unsigned char	*s = (const unsigned char *)p;
	size_t			 i = 0, n, k;
	uint32_t		 cp;

	while (i < len) {
		if (s[i] == 0)
			return 0;
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		if (s[i] >= 0xc2 && s[i] <= 0xdf)
			n = 1;
		else if (s[i] >= 0xe0 && s[i] <= 0xef)
			n = 2;
		else if (s[i] >= 0xf0 && s[i] <= 0xf4)
			n = 3;
		else
			return 0;
		if (len - i <= n)
			return 0;
		cp = s[i] & (0x7f >> (n + 1));
		for (k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += n + 1;
	}
	return 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mime_msg	 mm;
	const char	*v;
	size_t		 i, j;
	int		 r;

	/* only memory may fail; a limit truncates */
	r = mime_parse((const char *)data, size, &mm);
	if (r != MIME_OK && r != MIME_ENOMEM)
		abort();
	if (r != MIME_OK) {
		if (mm.hdrs != NULL || mm.nhdrs != 0 || mm.body != NULL ||
		    mm.subject != NULL || mm.bodylen != 0 || mm.truncated != 0)
			abort();
		return 0;
	}
	if (mm.truncated < 0 || mm.truncated == MIME_ENOMEM ||
	    mm.truncated > MIME_ECHARSETS)
		abort();
	if (mm.body == NULL || strlen(mm.body) != mm.bodylen ||
	    !fuzz_utf8_valid(mm.body, mm.bodylen))
		abort();
	for (i = 0; i < mm.nhdrs; i++) {
		for (j = 0; mm.hdrs[i].name[j] != '\0'; j++)
			if (mm.hdrs[i].name[j] >= 'A' &&
			    mm.hdrs[i].name[j] <= 'Z')
				abort();
		v = mm.hdrs[i].value;
		if (!fuzz_utf8_valid(v, strlen(v)))
			abort();
		for (j = 0; v[j] != '\0'; j++)
			if (((unsigned char)v[j] < 0x20 && v[j] != '\t') ||
			    v[j] == 0x7f)
				abort();
	}
	v = mime_header_get(&mm, "subject");
	if ((v == NULL) != (mm.subject == NULL) ||
	    (v != NULL && strcmp(v, mm.subject) != 0))
		abort();
	mime_free(&mm);
	return 0;
}
