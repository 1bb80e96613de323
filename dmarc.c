/*
 * DMARC (RFC 9989; RFC 7489 records read the same way).  Stub: filled
 * in by the DMARC work.
 */

#include <sys/types.h>

#include <string.h>

#include "smtpd.h"

const char *
dmarc_result_name(int r)
{
	static const char *const names[] = { "none", "pass", "fail",
	    "temperror", "permerror" };

	if (r < 0 || r > DMARC_PERMERROR)
		return "permerror";
	return names[r];
}

const char *
dmarc_policy_name(int p)
{
	static const char *const names[] = { "", "none", "quarantine",
	    "reject" };

	if (p < 0 || p > DMARC_P_REJECT)
		return "";
	return names[p];
}

int
dmarc_record_parse(const char *txt, size_t len, struct dmarc_record *r)
{
	(void)txt; (void)len;
	memset(r, 0, sizeof(*r));
	return -1;
}

int
dmarc_org_domain(struct dns_ctx *dns, const char *domain, char *org,
    size_t orglen)
{
	(void)dns;
	if (strlcpy(org, domain, orglen) >= orglen)
		return -1;
	return 0;
}

int
dmarc_check(struct dns_ctx *dns, const struct dmarc_input *in,
    struct dmarc_output *out)
{
	(void)dns;
	memset(out, 0, sizeof(*out));
	strlcpy(out->domain, in->from_domain, sizeof(out->domain));
	strlcpy(out->org_domain, in->from_domain, sizeof(out->org_domain));
	out->result = DMARC_NONE;
	return 0;
}
