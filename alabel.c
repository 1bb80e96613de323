/*
 * Domain names in their A-label form (IDNA2008, RFC 5890 and 5891) for
 * sender authentication: the From domain, the MAIL FROM domain and the
 * HELO name may be written in UTF-8 (U-labels: RFC 6531, RFC 6532), but
 * SPF and DMARC ask the DNS about, compare and report the A-label form
 * (RFC 8616).  libidn2 does the conversion.
 *
 * Choices:
 * - A name of ASCII octets only is returned as it is: no label is
 *   checked or mapped, so nothing changes for the names that worked
 *   before (an "xn--" label is not decoded to be checked either).
 * - Flags: IDN2_NONTRANSITIONAL alone.  UTS #46 non-transitional
 *   processing maps the name as a lookup does (case folding, NFC, the
 *   full-width and ideographic full stops), then checks the IDNA2008
 *   rules; the deviation characters stay themselves, so "fa" U+00DF
 *   (sharp s) is xn--fa-hia and never "fass", which may be another
 *   registrant's name.  Not IDN2_TRANSITIONAL, for that reason.  Not
 *   IDN2_USE_STD3_ASCII_RULES: libidn2 (2.3) then drops the ASCII
 *   characters outside letters, digits and hyphen instead of refusing
 *   them, so "a_b" would become "ab", another name; without it such a
 *   label stays as written, as it does in an ASCII name.  Not
 *   IDN2_NFC_INPUT: the UTS #46 mapping normalises to NFC itself.
 * - A name libidn2 refuses (invalid UTF-8, a code point IDNA2008
 *   disallows, a bad Bidi or hyphen rule, a label too long), or whose
 *   result does not fit out, gives -1: the callers then use the name as
 *   written, which no DNS question is asked about (see auth.c).
 * - Nothing is loaded at run time: idn2_lookup_u8() takes UTF-8 as it
 *   is (the locale functions are not used), its tables are built into
 *   the library, and it needs malloc only, so the sandboxed worker
 *   needs no new system call and no file.
 */

#include <string.h>

#define IDN2_SKIP_LIBIDN_COMPAT	/* no idna_* macros from libidn */
#include <idn2.h>

#include "smtpd.h"

/*
 * The A-label form of the domain name in into out: 0, or -1 when it has
 * none (see above) or it does not fit; out is then empty.
 */
int
alabel_domain(const char *in, char *out, size_t outsz)
{
	const unsigned char	*p;
	uint8_t			*a = NULL;
	int			 rc;

	if (outsz == 0)
		return -1;
	out[0] = '\0';
	for (p = (const unsigned char *)in; *p != '\0' && *p < 0x80; p++)
		;
	if (*p == '\0') {
		if (strlcpy(out, in, outsz) < outsz)
			return 0;
		out[0] = '\0';
		return -1;
	}
	rc = idn2_lookup_u8((const uint8_t *)in, &a, IDN2_NONTRANSITIONAL);
	if (rc != IDN2_OK || a == NULL ||
	    strlcpy(out, (const char *)a, outsz) >= outsz) {
		out[0] = '\0';
		idn2_free(a);
		return -1;
	}
	idn2_free(a);
	return 0;
}
