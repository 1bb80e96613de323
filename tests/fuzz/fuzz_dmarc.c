/*
 * libFuzzer target for DMARC (make tests/fuzz/fuzz_dmarc).  The input is
 * fed to dmarc_record_parse() whole, then read as a scenario for
 * dmarc_check() and dmarc_org_domain():
 *	line 1		the From domain
 *	line 2		the SPF domain
 *	1 octet		SPF result (low 3 bits), DKIM count (next 4 bits)
 *	per signature	its d= up to '\n', then 1 octet: passed (low bit)
 *	the rest	answers, one per question in the order asked:
 *			1 octet status (mod 3), 1 octet count (mod 4),
 *			then per record 1 octet length and that many octets;
 *			once the bytes run out every answer is NXDOMAIN.
 * Whatever the answers, a parsed record holds values in range, one
 * tree walk asks at most 8 questions, and the output of dmarc_check()
 * agrees with itself.  Any breach aborts.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../smtpd.h"

#define FUZZ_NAME	300

struct fuzz_script {
	const uint8_t	*p;
	const uint8_t	*end;
};

int		 LLVMFuzzerTestOneInput(const uint8_t *, size_t);
static int	 fuzz_lookup(void *, const char *, int, struct dns_answer *);
static void	 fuzz_line(struct fuzz_script *, char *, size_t);
static void	 fuzz_record(const struct dmarc_record *);

static struct dns_answer	*ans;

static int
fuzz_lookup(void *arg, const char *name, int type, struct dns_answer *a)
{
	struct fuzz_script	*s = arg;
	size_t			 n, i, len, off = 0;

	(void)name; (void)type;
	a->nrr = 0;
	if (s->end - s->p < 2) {
		a->status = DNS_NXDOMAIN;
		return 0;
	}
	a->status = s->p[0] % 3;
	n = s->p[1] % 4;
	s->p += 2;
	for (i = 0; i < n && s->p < s->end; i++) {
		len = *s->p++;
		if (len > (size_t)(s->end - s->p))
			len = (size_t)(s->end - s->p);
		memcpy(a->buf + off, s->p, len);
		a->rr[a->nrr].data = a->buf + off;
		a->rr[a->nrr].len = len;
		a->nrr++;
		off += len;
		s->p += len;
	}
	return 0;
}

static void
fuzz_line(struct fuzz_script *s, char *out, size_t outsz)
{
	size_t	 i = 0;

	while (s->p < s->end && *s->p != '\n') {
		if (i < outsz - 1)
			out[i++] = (char)*s->p;
		s->p++;
	}
	if (s->p < s->end)
		s->p++;
	out[i] = '\0';
}

static void
fuzz_record(const struct dmarc_record *r)
{
	if (r->p < DMARC_P_UNSET || r->p > DMARC_P_REJECT ||
	    r->sp < DMARC_P_UNSET || r->sp > DMARC_P_REJECT ||
	    r->np < DMARC_P_UNSET || r->np > DMARC_P_REJECT ||
	    r->psd < -1 || r->psd > 1 ||
	    (r->adkim_strict != 0 && r->adkim_strict != 1) ||
	    (r->aspf_strict != 0 && r->aspf_strict != 1))
		abort();
	/* unset only all together (a record not to apply) */
	if ((r->p == DMARC_P_UNSET) != (r->sp == DMARC_P_UNSET) ||
	    (r->p == DMARC_P_UNSET) != (r->np == DMARC_P_UNSET))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dmarc_record	 rec;
	struct dmarc_input	 in;
	struct dmarc_output	 out;
	struct fuzz_script	 s;
	struct dns_ctx		 dns;
	static char		 from[FUZZ_NAME], spf[FUZZ_NAME];
	static char		 d[DMARC_DKIM_MAX][FUZZ_NAME];
	char			 org[DNS_NAME_MAX + 1];
	size_t			 i;
	int			 any;

	if (ans == NULL && (ans = malloc(sizeof(*ans))) == NULL)
		abort();
	if (dmarc_record_parse((const char *)data, size, &rec) == 0)
		fuzz_record(&rec);

	s.p = data;
	s.end = data + size;
	memset(&in, 0, sizeof(in));
	fuzz_line(&s, from, sizeof(from));
	fuzz_line(&s, spf, sizeof(spf));
	if (s.p < s.end) {
		in.spf = *s.p & 7;
		in.ndkim = (*s.p >> 3) & 15;
		s.p++;
	}
	for (i = 0; i < in.ndkim; i++) {
		fuzz_line(&s, d[i], sizeof(d[i]));
		in.dkim_domain[i] = d[i];
		if (s.p < s.end)
			in.dkim_pass[i] = *s.p++ & 1;
	}
	in.from_domain = from;
	in.spf_domain = spf;

	memset(&dns, 0, sizeof(dns));
	dns.lookup = fuzz_lookup;
	dns.arg = &s;
	{
		struct fuzz_script save = s;

		if (dmarc_check(&dns, &in, &out) != 0)
			abort();
		s = save;
	}
	if (dns.queries > DNS_QUERIES_MAX ||
	    out.result < DMARC_NONE || out.result > DMARC_PERMERROR ||
	    out.policy < DMARC_P_UNSET || out.policy > DMARC_P_REJECT ||
	    strnlen(out.domain, sizeof(out.domain)) >= sizeof(out.domain) ||
	    strnlen(out.org_domain, sizeof(out.org_domain)) >=
	    sizeof(out.org_domain))
		abort();
	if (out.result == DMARC_PASS && !out.spf_aligned && !out.dkim_aligned)
		abort();
	if ((out.result == DMARC_PASS || out.result == DMARC_FAIL) &&
	    out.policy == DMARC_P_UNSET)
		abort();
	if (out.spf_aligned && in.spf != SPF_PASS)
		abort();
	for (i = 0, any = 0; i < in.ndkim; i++)
		if (out.dkim_aligned_each[i] && in.dkim_pass[i])
			any = 1;
	if (any != out.dkim_aligned)
		abort();

	/* one walk: at most 8 questions */
	memset(&dns, 0, sizeof(dns));
	dns.lookup = fuzz_lookup;
	dns.arg = &s;
	if (dmarc_org_domain(&dns, from, org, sizeof(org)) < -1 ||
	    dns.queries > 8 || strnlen(org, sizeof(org)) >= sizeof(org))
		abort();
	return 0;
}
