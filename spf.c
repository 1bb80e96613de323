/*
 * SPF (RFC 7208): check_host() for the client address, the MAIL FROM
 * (or HELO) domain and its sender.  Stub: filled in by the SPF work.
 */

#include <sys/types.h>
#include <sys/socket.h>

#include "smtpd.h"

const char *
spf_result_name(int r)
{
	static const char *const names[] = { "none", "neutral", "pass",
	    "fail", "softfail", "temperror", "permerror" };

	if (r < 0 || r > SPF_PERMERROR)
		return "permerror";
	return names[r];
}

int
spf_check_host(struct dns_ctx *dns, const struct sockaddr_storage *ip,
    const char *domain, const char *sender, const char *helo,
    const char *receiver)
{
	(void)dns; (void)ip; (void)domain; (void)sender; (void)helo;
	(void)receiver;
	return SPF_NONE;
}
