/*
 * DMARC (RFC 9989) and the From field parser, against a table of DNS
 * answers (no network): the record grammar, the tree walk and its
 * organisational domains, policy discovery (p, sp, np), relaxed and
 * strict alignment, DNS failures, and addr_parse_from() on the field
 * forms RFC 5322 allows and the ones it does not.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../smtpd.h"
#include "check.h"

static int	zone_lookup(void *, const char *, int, struct dns_answer *);
static void	dns_reset(void);
static int	rec(const char *, struct dmarc_record *);
static void	check(const char *, int, const char *, const char *, int,
		    const char *, int, const char *, int,
		    struct dmarc_output *);
static int	from(const char *, char *, size_t);
static void	test_record(void);
static void	test_org(void);
static void	test_policy(void);
static void	test_align(void);
static void	test_temp(void);
static void	test_from(void);
static const char *from_domain(const char *);
static void	test_from_obsolete(void);
static void	test_from_literal(void);
static void	test_literal_dmarc(void);

/* One name of the fake DNS: its status and up to 3 records. */
struct zone {
	const char	*name;
	int		 type;
	int		 status;
	const char	*rr[3];
};

static const struct zone zone[] = {
	/* p, sp, np; mail.org.example exists, ghost.org.example does not */
	{ "_dmarc.org.example", DNS_T_TXT, DNS_NOERROR,
	    { "v=DMARC1; p=reject; sp=quarantine; np=none" } },
	{ "mail.org.example", DNS_T_A, DNS_NOERROR, { "\xc0\x00\x02\x01" } },
	{ "org.example", DNS_T_A, DNS_NOERROR, { "\xc0\x00\x02\x01" } },
	/* two DMARC records under an org record: as if none there */
	{ "_dmarc.two.org.example", DNS_T_TXT, DNS_NOERROR,
	    { "v=DMARC1; p=none", "v=DMARC1; p=reject" } },
	{ "two.org.example", DNS_T_A, DNS_NOERROR, { "\xc0\x00\x02\x01" } },
	{ "_dmarc.two.example", DNS_T_TXT, DNS_NOERROR,
	    { "v=DMARC1; p=none", "v=DMARC1; p=reject" } },
	/* other TXT records do not count */
	{ "_dmarc.spf.example", DNS_T_TXT, DNS_NOERROR,
	    { "v=spf1 -all", "v=DMARC1; p=quarantine", "hello" } },
	/* strict */
	{ "_dmarc.strict.example", DNS_T_TXT, DNS_NOERROR,
	    { "v=DMARC1; p=reject; adkim=s; aspf=s" } },
	/* a public suffix domain (RFC 9989 B.4.3) */
	{ "_dmarc.bank.example", DNS_T_TXT, DNS_NOERROR,
	    { "v=DMARC1; p=reject; psd=y" } },
	{ "_dmarc.giant.bank.example", DNS_T_TXT, DNS_NOERROR,
	    { "v=DMARC1; p=quarantine" } },
	{ "mega.bank.example", DNS_T_A, DNS_NOERROR, { "\xc0\x00\x02\x01" } },
	/* psd=n below an org record */
	{ "_dmarc.corp.example", DNS_T_TXT, DNS_NOERROR,
	    { "v=DMARC1; p=reject" } },
	{ "_dmarc.dept.corp.example", DNS_T_TXT, DNS_NOERROR,
	    { "v=DMARC1; p=none; psd=n" } },
	{ "a.dept.corp.example", DNS_T_A, DNS_NOERROR, { "\xc0\x00\x02\x01" } },
	/* deep names: a psd=n record the walk never reaches (5.1.8) */
	{ "_dmarc.example.com", DNS_T_TXT, DNS_NOERROR,
	    { "v=DMARC1; p=reject" } },
	{ "_dmarc.b.c.d.e.f.g.example.com", DNS_T_TXT, DNS_NOERROR,
	    { "v=DMARC1; p=none; psd=n" } },
	/* DNS failures */
	{ "_dmarc.tempfail.example", DNS_T_TXT, DNS_TEMPFAIL, { NULL } },
	{ "_dmarc.tf2.example", DNS_T_TXT, DNS_TEMPFAIL, { NULL } },
	{ "_dmarc.rec.tf3.example", DNS_T_TXT, DNS_NOERROR,
	    { "v=DMARC1; p=reject" } },
	{ "_dmarc.tf3.example", DNS_T_TXT, DNS_TEMPFAIL, { NULL } },
	{ "_dmarc.npt.example", DNS_T_TXT, DNS_NOERROR,
	    { "v=DMARC1; p=reject; np=quarantine" } },
	{ "gone.npt.example", DNS_T_A, DNS_TEMPFAIL, { NULL } },
	/* bad policies: with and without rua; p missing */
	{ "_dmarc.bad.example", DNS_T_TXT, DNS_NOERROR,
	    { "v=DMARC1; p=bogus" } },
	{ "_dmarc.badrua.example", DNS_T_TXT, DNS_NOERROR,
	    { "v=DMARC1; p=bogus; rua=mailto:d@badrua.example" } },
	{ "_dmarc.nop.example", DNS_T_TXT, DNS_NOERROR,
	    { "v=DMARC1; rua=mailto:d@nop.example" } },
	{ NULL, 0, 0, { NULL } }
};

#define ASKED_MAX	64
static char	 asked[ASKED_MAX][DNS_NAME_MAX + 16];
static size_t	 nasked;

static int
zone_lookup(void *arg, const char *name, int type, struct dns_answer *ans)
{
	const struct zone	*z;
	size_t			 i, len, off = 0;

	(void)arg;
	if (nasked < ASKED_MAX)
		strlcpy(asked[nasked++], name, sizeof(asked[0]));
	ans->nrr = 0;
	ans->status = DNS_NXDOMAIN;
	for (z = zone; z->name != NULL; z++) {
		if (strcasecmp(z->name, name) != 0 || z->type != type)
			continue;
		ans->status = z->status;
		for (i = 0; i < 3 && z->rr[i] != NULL; i++) {
			len = strlen(z->rr[i]);
			memcpy(ans->buf + off, z->rr[i], len);
			ans->rr[ans->nrr].data = ans->buf + off;
			ans->rr[ans->nrr++].len = len;
			off += len;
		}
		break;
	}
	return 0;
}

static struct dns_ctx	 dns;

static void
dns_reset(void)
{
	memset(&dns, 0, sizeof(dns));
	dns.lookup = zone_lookup;
	nasked = 0;
}

/* Parse a record given as a C string. */
static int
rec(const char *txt, struct dmarc_record *r)
{
	return dmarc_record_parse(txt, strlen(txt), r);
}

static void
test_record(void)
{
	struct dmarc_record	 r;

	CHECK(rec("v=DMARC1; p=reject", &r) == 0 && r.p == DMARC_P_REJECT &&
	    r.sp == DMARC_P_REJECT && r.np == DMARC_P_REJECT &&
	    r.psd == -1 && !r.adkim_strict && !r.aspf_strict,
	    "record: plain p=reject, sp and np from p");
	CHECK(rec("v=DMARC1;p=quarantine;sp=none;np=reject;adkim=s;aspf=s;"
	    "psd=n", &r) == 0 && r.p == DMARC_P_QUARANTINE &&
	    r.sp == DMARC_P_NONE && r.np == DMARC_P_REJECT &&
	    r.adkim_strict && r.aspf_strict && r.psd == 0,
	    "record: every tag");
	CHECK(rec("v=DMARC1; p=reject; sp=none", &r) == 0 &&
	    r.np == DMARC_P_NONE, "record: np defaults to sp");
	CHECK(rec("v=DMARC1; psd=y", &r) == 0 && r.psd == 1 &&
	    r.p == DMARC_P_NONE, "record: psd=y, p missing is none");
	CHECK(rec("v=DMARC1", &r) == 0 && r.p == DMARC_P_NONE,
	    "record: version only");
	CHECK(rec("v=DMARC1;", &r) == 0, "record: trailing semicolon");
	CHECK(rec(" v = DMARC1 ;\tp = reject ; ", &r) == 0 &&
	    r.p == DMARC_P_REJECT, "record: whitespace around");
	CHECK(rec("V=DMARC1; P=REJECT; Sp=None; ADKIM=S", &r) == 0 &&
	    r.p == DMARC_P_REJECT && r.sp == DMARC_P_NONE && r.adkim_strict,
	    "record: tag names and values in any case");
	CHECK(rec("v=dmarc1; p=reject", &r) == -1,
	    "record: DMARC1 is case-sensitive");
	CHECK(rec("p=reject; v=DMARC1", &r) == -1, "record: v not first");
	CHECK(rec("v=DMARC1 p=reject", &r) == -1, "record: no separator");
	CHECK(rec("v=DMARC2; p=reject", &r) == -1, "record: other version");
	CHECK(rec("v=DMARC1x; p=reject", &r) == -1, "record: DMARC1x");
	CHECK(rec("", &r) == -1, "record: empty");
	CHECK(rec("v=spf1 -all", &r) == -1, "record: SPF");
	CHECK(rec("v=DMARC1; foo=bar; p=reject; t=y; 1x=2; =; junk",
	    &r) == 0 && r.p == DMARC_P_REJECT,
	    "record: unknown and malformed tags ignored");
	CHECK(rec("v=DMARC1; p=none; p=reject", &r) == -1,
	    "record: a known tag twice: no record (RFC 6376 3.2)");
	CHECK(rec("v=DMARC1; p=reject; foo=1; foo=2", &r) == 0 &&
	    r.p == DMARC_P_REJECT, "record: an unknown tag twice: ignored");
	CHECK(rec("v=DMARC1; p=reject; adkim=x; aspf=; psd=q", &r) == 0 &&
	    !r.adkim_strict && !r.aspf_strict && r.psd == -1,
	    "record: bad adkim, aspf, psd give the defaults");
	CHECK(rec("v=DMARC1; p=bogus", &r) == 0 && r.p == DMARC_P_UNSET &&
	    r.sp == DMARC_P_UNSET && r.np == DMARC_P_UNSET,
	    "record: bad p without rua: a record not to apply");
	CHECK(rec("v=DMARC1; p=bogus; rua=mailto:d@example.org", &r) == 0 &&
	    r.p == DMARC_P_NONE && r.sp == DMARC_P_NONE,
	    "record: bad p with a valid rua acts as p=none");
	CHECK(rec("v=DMARC1; p=reject; sp=rejekt; rua=mailto:a@b.example!10m,"
	    " x", &r) == 0 && r.p == DMARC_P_NONE && r.np == DMARC_P_NONE,
	    "record: bad sp with a valid rua (size suffix): all none");
	CHECK(rec("v=DMARC1; p=reject; np=x; rua=nonsense", &r) == 0 &&
	    r.p == DMARC_P_UNSET, "record: bad np, rua not a URI");
	CHECK(dmarc_record_parse("v=DMARC1; p=reject", 14, &r) == 0 &&
	    r.p == DMARC_P_UNSET, "record: length respected (p=re)");
	CHECK(dmarc_record_parse("v=DMARC1; p=reject\0; sp=none", 29,
	    &r) == 0 && r.p == DMARC_P_NONE && r.sp == DMARC_P_NONE,
	    "record: a NUL makes its tag malformed");
	CHECK(dmarc_record_parse("v=DMARC", 7, &r) == -1,
	    "record: cut version");
}

static void
test_org(void)
{
	char	 org[DNS_NAME_MAX + 1];

	dns_reset();
	CHECK(dmarc_org_domain(&dns, "mail.org.example", org,
	    sizeof(org)) == 0 && strcmp(org, "org.example") == 0 &&
	    dns.queries == 3, "org: fewest labels (%s, %zu)", org,
	    dns.queries);
	dns_reset();
	CHECK(dmarc_org_domain(&dns, "MAIL.Org.Example.", org,
	    sizeof(org)) == 0 && strcmp(org, "org.example") == 0,
	    "org: case and trailing dot");
	dns_reset();
	CHECK(dmarc_org_domain(&dns, "nothing.example", org,
	    sizeof(org)) == 0 && strcmp(org, "nothing.example") == 0,
	    "org: no record: the domain itself");
	dns_reset();
	CHECK(dmarc_org_domain(&dns, "mail.giant.bank.example", org,
	    sizeof(org)) == 0 && strcmp(org, "giant.bank.example") == 0 &&
	    dns.queries == 3, "org: psd=y: one label below (%s)", org);
	dns_reset();
	CHECK(dmarc_org_domain(&dns, "mail.mega.bank.example", org,
	    sizeof(org)) == 0 && strcmp(org, "mega.bank.example") == 0,
	    "org: psd=y without a record below (%s)", org);
	dns_reset();
	CHECK(dmarc_org_domain(&dns, "bank.example", org, sizeof(org)) == 0 &&
	    strcmp(org, "bank.example") == 0 && dns.queries == 1,
	    "org: psd=y at the start: itself, walk stopped");
	dns_reset();
	CHECK(dmarc_org_domain(&dns, "x.a.dept.corp.example", org,
	    sizeof(org)) == 0 && strcmp(org, "dept.corp.example") == 0 &&
	    dns.queries == 3, "org: psd=n stops the walk (%s, %zu)", org,
	    dns.queries);
	dns_reset();
	CHECK(dmarc_org_domain(&dns, "a.b.c.d.e.f.g.h.i.j.mail.example.com",
	    org, sizeof(org)) == 0 && strcmp(org, "example.com") == 0 &&
	    dns.queries == 8 &&
	    strcmp(asked[0], "_dmarc.a.b.c.d.e.f.g.h.i.j.mail.example.com")
	    == 0 && strcmp(asked[1], "_dmarc.g.h.i.j.mail.example.com") == 0 &&
	    strcmp(asked[7], "_dmarc.com") == 0,
	    "org: deep name, 8 queries, RFC 9989 4.10 order (%zu)",
	    dns.queries);
	dns_reset();
	CHECK(dmarc_org_domain(&dns, "mail.a.b.c.d.e.f.g.example.com", org,
	    sizeof(org)) == 0 && strcmp(org, "example.com") == 0 &&
	    dns.queries == 8 && strcmp(asked[1],
	    "_dmarc.c.d.e.f.g.example.com") == 0,
	    "org: deep name skips the psd=n record (RFC 9989 5.1.8)");
	dns_reset();
	CHECK(dmarc_org_domain(&dns, "h.a.b.c.d.e.f.example", org,
	    sizeof(org)) == 0 && dns.queries == 8 &&
	    strcmp(asked[1], "_dmarc.a.b.c.d.e.f.example") == 0,
	    "org: 8 labels: parent, 8 queries");
	dns_reset();
	CHECK(dmarc_org_domain(&dns, "sub.tf2.example", org,
	    sizeof(org)) == -1, "org: temp failure decides it");
	dns_reset();
	CHECK(dmarc_org_domain(&dns, "b\xc3\xbc" "cher.example", org,
	    sizeof(org)) == 0 && dns.queries == 0,
	    "org: a name no resolver takes is its own, no query");
}

/* Run dmarc_check: from, SPF result and domain, up to 3 signatures. */
static void
check(const char *from, int spf, const char *spfd, const char *d0, int p0,
    const char *d1, int p1, const char *d2, int p2, struct dmarc_output *out)
{
	struct dmarc_input	 in;

	memset(&in, 0, sizeof(in));
	in.from_domain = from;
	in.spf = spf;
	in.spf_domain = spfd;
	in.dkim_domain[0] = d0;
	in.dkim_pass[0] = p0;
	in.dkim_domain[1] = d1;
	in.dkim_pass[1] = p1;
	in.dkim_domain[2] = d2;
	in.dkim_pass[2] = p2;
	in.ndkim = d2 != NULL ? 3 : d1 != NULL ? 2 : d0 != NULL ? 1 : 0;
	dns_reset();
	if (dmarc_check(&dns, &in, out) != 0)
		memset(out, 0, sizeof(*out));
}

static void
test_policy(void)
{
	struct dmarc_output	 o;

	check("org.example", SPF_FAIL, "org.example", NULL, 0, NULL, 0, NULL,
	    0, &o);
	CHECK(o.result == DMARC_FAIL && o.policy == DMARC_P_REJECT &&
	    strcmp(o.org_domain, "org.example") == 0,
	    "policy: the From domain's own record: p");
	check("mail.org.example", SPF_NONE, NULL, NULL, 0, NULL, 0, NULL, 0,
	    &o);
	CHECK(o.result == DMARC_FAIL && o.policy == DMARC_P_QUARANTINE &&
	    strcmp(o.org_domain, "org.example") == 0,
	    "policy: an existing subdomain: sp (%d)", o.policy);
	check("ghost.org.example", SPF_NONE, NULL, NULL, 0, NULL, 0, NULL, 0,
	    &o);
	CHECK(o.result == DMARC_FAIL && o.policy == DMARC_P_NONE,
	    "policy: a non-existent subdomain: np (%d)", o.policy);
	check("two.org.example", SPF_NONE, NULL, NULL, 0, NULL, 0, NULL, 0,
	    &o);
	CHECK(o.result == DMARC_FAIL && o.policy == DMARC_P_QUARANTINE,
	    "policy: two records at the From domain: the org record's sp");
	check("two.example", SPF_PASS, "two.example", NULL, 0, NULL, 0, NULL,
	    0, &o);
	CHECK(o.result == DMARC_NONE && o.policy == DMARC_P_UNSET &&
	    o.spf_aligned, "policy: two records and nothing above: none");
	check("spf.example", SPF_NONE, NULL, NULL, 0, NULL, 0, NULL, 0, &o);
	CHECK(o.result == DMARC_FAIL && o.policy == DMARC_P_QUARANTINE,
	    "policy: other TXT records at _dmarc are not counted");
	check("mega.bank.example", SPF_NONE, NULL, NULL, 0, NULL, 0, NULL, 0,
	    &o);
	CHECK(o.result == DMARC_FAIL && o.policy == DMARC_P_REJECT &&
	    strcmp(o.org_domain, "mega.bank.example") == 0,
	    "policy: the public suffix domain's record when the org has none");
	check("a.dept.corp.example", SPF_NONE, NULL, "corp.example", 1, NULL,
	    0, NULL, 0, &o);
	CHECK(o.result == DMARC_FAIL && o.policy == DMARC_P_NONE &&
	    strcmp(o.org_domain, "dept.corp.example") == 0 &&
	    !o.dkim_aligned_each[0],
	    "policy: psd=n makes its own org domain");
	check("x.y.mail.example.com", SPF_NONE, NULL, NULL, 0, NULL, 0, NULL,
	    0, &o);
	CHECK(o.result == DMARC_FAIL && o.policy == DMARC_P_REJECT &&
	    strcmp(o.org_domain, "example.com") == 0,
	    "policy: the org domain's record, not a nearer one");
	check("nop.example", SPF_NONE, NULL, NULL, 0, NULL, 0, NULL, 0, &o);
	CHECK(o.result == DMARC_FAIL && o.policy == DMARC_P_NONE,
	    "policy: p missing is none");
	check("bad.example", SPF_PASS, "bad.example", NULL, 0, NULL, 0, NULL,
	    0, &o);
	CHECK(o.result == DMARC_PERMERROR && o.policy == DMARC_P_UNSET,
	    "policy: bad p without rua: permerror");
	check("badrua.example", SPF_NONE, NULL, NULL, 0, NULL, 0, NULL, 0, &o);
	CHECK(o.result == DMARC_FAIL && o.policy == DMARC_P_NONE,
	    "policy: bad p with rua: none");
	check("norec.example", SPF_PASS, "norec.example", "mail.norec.example",
	    1, "NoRec.Example.", 0, NULL, 0, &o);
	CHECK(o.result == DMARC_NONE && o.policy == DMARC_P_UNSET &&
	    strcmp(o.org_domain, "norec.example") == 0 && o.spf_aligned &&
	    !o.dkim_aligned && !o.dkim_aligned_each[0] &&
	    o.dkim_aligned_each[1],
	    "policy: no record: none, alignment still reported");
	check("b\xc3\xbc" "cher.example", SPF_PASS, "x.example", NULL, 0,
	    NULL, 0, NULL, 0, &o);
	CHECK(o.result == DMARC_NONE && dns.queries == 0,
	    "policy: an 8-bit From domain is not asked about");
}

static void
test_align(void)
{
	struct dmarc_output	 o;

	check("org.example", SPF_PASS, "bounce.org.example", "other.example",
	    1, NULL, 0, NULL, 0, &o);
	CHECK(o.result == DMARC_PASS && o.spf_aligned && !o.dkim_aligned,
	    "align: relaxed SPF through the org domain");
	check("mail.org.example", SPF_FAIL, "mail.org.example",
	    "org.example", 1, NULL, 0, NULL, 0, &o);
	CHECK(o.result == DMARC_PASS && !o.spf_aligned && o.dkim_aligned,
	    "align: relaxed DKIM, parent d=");
	check("org.example", SPF_PASS, "evilorg.example", "xorg.example", 1,
	    NULL, 0, NULL, 0, &o);
	CHECK(o.result == DMARC_FAIL && !o.spf_aligned && !o.dkim_aligned,
	    "align: a string suffix is not a domain suffix");
	check("strict.example", SPF_PASS, "mail.strict.example",
	    "mail.strict.example", 1, NULL, 0, NULL, 0, &o);
	CHECK(o.result == DMARC_FAIL && !o.spf_aligned &&
	    !o.dkim_aligned_each[0], "align: strict refuses a subdomain");
	check("strict.example", SPF_PASS, "STRICT.Example.",
	    "Strict.EXAMPLE", 1, NULL, 0, NULL, 0, &o);
	CHECK(o.result == DMARC_PASS && o.spf_aligned && o.dkim_aligned,
	    "align: strict is equality without case or trailing dot");
	check("org.example", SPF_SOFTFAIL, "org.example", "org.example", 0,
	    "mail.org.example", 1, "other.example", 1, &o);
	CHECK(o.result == DMARC_PASS && !o.spf_aligned && o.dkim_aligned &&
	    o.dkim_aligned_each[0] && o.dkim_aligned_each[1] &&
	    !o.dkim_aligned_each[2],
	    "align: per signature, passed or not");
	check("giant.bank.example", SPF_PASS, "mail.giant.bank.example",
	    "mail.mega.bank.example", 1, NULL, 0, NULL, 0, &o);
	CHECK(o.result == DMARC_PASS && o.spf_aligned &&
	    !o.dkim_aligned_each[0] && o.policy == DMARC_P_QUARANTINE,
	    "align: RFC 9989 B.4.3");
	check("org.example", SPF_NEUTRAL, "org.example", NULL, 0, NULL, 0,
	    NULL, 0, &o);
	CHECK(o.result == DMARC_FAIL && !o.spf_aligned,
	    "align: only an SPF pass counts");
}

static void
test_temp(void)
{
	struct dmarc_output	 o;

	check("tempfail.example", SPF_PASS, "tempfail.example", NULL, 0,
	    NULL, 0, NULL, 0, &o);
	CHECK(o.result == DMARC_TEMPERROR, "temp: the From domain's record");
	check("sub.tf2.example", SPF_PASS, "sub.tf2.example", NULL, 0, NULL,
	    0, NULL, 0, &o);
	CHECK(o.result == DMARC_TEMPERROR, "temp: the walk above it");
	check("rec.tf3.example", SPF_PASS, "rec.tf3.example", NULL, 0, NULL,
	    0, NULL, 0, &o);
	CHECK(o.result == DMARC_PASS && o.policy == DMARC_P_REJECT &&
	    strcmp(o.org_domain, "rec.tf3.example") == 0,
	    "temp: an equal identifier passes without the org domain");
	check("rec.tf3.example", SPF_FAIL, "rec.tf3.example",
	    "x.rec.tf3.example", 1, NULL, 0, NULL, 0, &o);
	CHECK(o.result == DMARC_TEMPERROR && !o.dkim_aligned_each[0],
	    "temp: a passing identifier whose alignment is open");
	check("rec.tf3.example", SPF_FAIL, "rec.tf3.example",
	    "x.rec.tf3.example", 0, NULL, 0, NULL, 0, &o);
	CHECK(o.result == DMARC_FAIL,
	    "temp: an open alignment of a failed signature does not count");
	check("gone.npt.example", SPF_NONE, NULL, NULL, 0, NULL, 0, NULL, 0,
	    &o);
	CHECK(o.result == DMARC_TEMPERROR,
	    "temp: the A query deciding np or sp");
	check("gone.npt.example", SPF_PASS, "npt.example", NULL, 0, NULL, 0,
	    NULL, 0, &o);
	CHECK(o.result == DMARC_PASS && o.policy == DMARC_P_REJECT,
	    "temp: a failed A query does not undo a pass");
}

/*
 * addr_parse_from on a C string; on 1 the domain offset must point just
 * past an "@".
 */
static int
from(const char *v, char *out, size_t outsz)
{
	size_t	 dom = (size_t)-1;
	int	 r;

	r = addr_parse_from(v, strlen(v), out, outsz, &dom);
	if (r == 1 && (dom == 0 || dom >= strlen(out) || out[dom - 1] != '@'))
		return 2;
	return r;
}

/* The domain addr_parse_from finds in v, or "" when it gives no 1. */
static const char *
from_domain(const char *v)
{
	static char	 o[SMTP_PATH_MAX + 64];
	size_t		 dom;

	if (addr_parse_from(v, strlen(v), o, sizeof(o), &dom) != 1)
		return "";
	return o + dom;
}

#define FROM_IS(v, want, what) do {					\
	char	 o_[SMTP_PATH_MAX + 64];				\
	int	 r_ = from((v), o_, sizeof(o_));			\
	CHECK(r_ == 1 && strcmp(o_, (want)) == 0, "from: %s (%d, %s)",	\
	    (what), r_, o_);						\
} while (0)

#define FROM_RET(v, ret, what) do {					\
	char	 o_[SMTP_PATH_MAX + 64];				\
	int	 r_ = from((v), o_, sizeof(o_));			\
	CHECK(r_ == (ret) && (r_ == 1 || o_[0] == '\0'),		\
	    "from: %s (%d)", (what), r_);				\
} while (0)

static void
test_from(void)
{
	char	 o[64], big[SMTP_PATH_MAX + 1];

	FROM_IS("alice@example.org", "alice@example.org", "plain addr-spec");
	FROM_IS(" alice@Example.ORG ", "alice@example.org",
	    "spaces around, domain lower-cased");
	FROM_IS("Alice Example <Alice@example.org>", "Alice@example.org",
	    "name-addr keeps the local part's case");
	FROM_IS("<alice@example.org>", "alice@example.org",
	    "angle-addr without display name");
	FROM_IS("\"Doe, John <x@y.example>\" <john@example.org>",
	    "john@example.org", "quoted display name with comma and <>");
	FROM_IS("\"a \\\"q\\\" b\" <a@example.org>", "a@example.org",
	    "quoted pairs in a display name");
	FROM_IS("(c (nested) \\) x) alice (c) @ (c) example.org (end)",
	    "alice@example.org", "comments and CFWS around the parts");
	FROM_IS("Alice (the boss) <alice@example.org> (work)",
	    "alice@example.org", "comments around name-addr");
	FROM_IS("=?UTF-8?B?SsO2cmc=?= <joerg@example.org>", "joerg@example.org",
	    "encoded-word display name is an atom");
	FROM_IS("John Q. Public <jqp@example.org>", "jqp@example.org",
	    "obs-phrase dot in a display name");
	FROM_IS("\"john doe\"@example.org", "\"john doe\"@example.org",
	    "quoted local part kept quoted");
	FROM_IS("\"a@b\"@example.org", "\"a@b\"@example.org",
	    "an @ inside a quoted local part");
	FROM_IS("J\xc3\xb6rg <j\xc3\xb6rg@example.org>",
	    "j\xc3\xb6rg@example.org", "UTF-8 display name and local part");
	FROM_IS("Team: alice@example.org;", "alice@example.org",
	    "group with one member: that member");
	FROM_IS("undisclosed:;, alice@example.org", "alice@example.org",
	    "empty group and one mailbox");
	FROM_RET("undisclosed-recipients:;", 0, "empty group");
	FROM_RET("Team: (nobody) ;", 0, "group of CFWS only");
	FROM_RET("Team: a@example.org, b@example.org;", -1,
	    "group with two members");
	FROM_RET("a@example.org, b@example.org", -1, "two mailboxes");
	FROM_RET("A <a@example.org>, \"B\" <b@example.org>", -1,
	    "two name-addrs");
	FROM_RET("", 0, "empty");
	FROM_RET("  (just a comment) ", 0, "CFWS only");
	FROM_RET("not an address", 0, "garbage");
	FROM_RET("@example.org", 0, "no local part");
	FROM_RET("alice@", 0, "no domain");
	FROM_RET("Doe, John <john@example.org>", 0, "unquoted comma");
	FROM_RET("alice@example.org x", 0, "trailing garbage");
	FROM_RET("alice@example.org <b@example.org>", 0,
	    "addr-spec before an angle-addr");
	FROM_RET("<alice@example.org> x", 0, "garbage after angle-addr");
	FROM_RET("\"unbalanced <a@example.org>", 0, "unbalanced quote");
	FROM_RET("(unbalanced a@example.org", 0, "unbalanced comment");
	FROM_RET("a@example.org)", 0, "stray closing parenthesis");
	FROM_RET("((((((((((deep))))))))) a@example.org", 0,
	    "comments nested too deep");
	FROM_RET("<a@example.org", 0, "unclosed angle");
	FROM_RET("x@[192.0.2.1], y@example.org", -1,
	    "domain literal among two");
	FROM_RET("a..b@example.org", 0, "empty atom in the local part");
	FROM_RET("a@example.org.", 0, "trailing dot in the domain");
	FROM_RET("a@example.org;", 0, "semicolon outside a group");
	FROM_RET("m: a@ea+,", 0, "group cut after a comma (fuzz)");
	FROM_RET("a@exa\rmple.org", 0, "CR inside");
	FROM_RET("J\xc3 <j@example.org>", 0, "invalid UTF-8");
	FROM_RET("a\xed\xa0\x80@example.org", 0, "UTF-8 surrogate");
	CHECK(addr_parse_from("a@example.org\0b", 15, o, sizeof(o), NULL) ==
	    0 && o[0] == '\0', "from: NUL inside");
	CHECK(addr_parse_from("a@example.org", 5, o, sizeof(o), NULL) == 1 &&
	    strcmp(o, "a@exa") == 0, "from: length respected");
	CHECK(addr_parse_from("alice@example.org", 17, o, 10, NULL) == 0 &&
	    o[0] == '\0', "from: result that does not fit");
	CHECK(addr_parse_from("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaa@example.org", 77, o, sizeof(o), NULL) == 0,
	    "from: local part over 64 octets");
	CHECK(addr_parse_from("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa . "
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.org", 78, big,
	    sizeof(big), NULL) == 1 && strlen(big) == 76,
	    "from: the local part's length counts without its CFWS");
}

/* RFC 5322 4.4: the obsolete forms are read, not refused (SPEC 6). */
static void
test_from_obsolete(void)
{
	FROM_IS("<@relay.example:ann@example.org>", "ann@example.org",
	    "obs-angle-addr: a route of one domain");
	FROM_IS("Ann <@a.example,@b.example:ann@example.org>",
	    "ann@example.org", "a route of two domains after a name");
	FROM_IS("Ann < @a.example , (c) @ b . example : ann@example.org >",
	    "ann@example.org", "CFWS all through a route");
	FROM_IS("<,, @a.example,,@b.example,:ann@example.org>",
	    "ann@example.org", "empty elements of obs-domain-list");
	FROM_IS("<@[192.0.2.9]:ann@example.org>", "ann@example.org",
	    "a domain literal in a route");
	FROM_IS("Team: <@r.example:ann@example.org>;", "ann@example.org",
	    "a route inside a group");
	FROM_IS("ann . lee@example.org", "ann.lee@example.org",
	    "obs-local-part: CFWS around the dot");
	FROM_IS("ann(x).(y)lee@example.org", "ann.lee@example.org",
	    "obs-local-part: comments around the dot");
	FROM_IS("\"ann\".lee@example.org", "\"ann\".lee@example.org",
	    "obs-local-part: a quoted word and an atom");
	FROM_IS("Ann <ann.\"l e\"@example.org>", "ann.\"l e\"@example.org",
	    "obs-local-part in angle brackets");
	FROM_IS("ann@example . org", "ann@example.org",
	    "obs-domain: CFWS around the dot");
	FROM_IS("ann @ (c) Example (d) . (e) ORG (f)", "ann@example.org",
	    "obs-domain: comments everywhere, lower-cased");
	FROM_IS(", ann@example.org", "ann@example.org",
	    "obs-addr-list: an empty element first");
	FROM_IS("ann@example.org, ,", "ann@example.org",
	    "obs-addr-list: empty elements last");
	FROM_IS("Team: , ann@example.org , ;", "ann@example.org",
	    "obs-mbox-list: empty elements in a group");
	FROM_RET("Team: , , ;", 0, "obs-group-list: no mailbox");
	FROM_RET(", ,", 0, "only empty elements");
	FROM_RET("Ann <@a.example ann@example.org>", 0,
	    "a route without its colon");
	FROM_RET("Ann <@:ann@example.org>", 0, "a route without a domain");
	FROM_RET("Ann <a.example:ann@example.org>", 0,
	    "a route without its @");
	FROM_RET("Ann <,ann@example.org>", 0, "a comma without a route");
	FROM_RET("<@a.example:ann@example.org>, b@example.org", -1,
	    "a route and another mailbox: two");
	FROM_RET("ann.@example.org", 0, "obs-local-part: an empty word");
	FROM_RET("ann@example..org", 0, "obs-domain: an empty atom");
	FROM_RET("\"a\x01\"@example.org", 0, "obs-qtext: a control octet");
	FROM_RET("(\x7f) a@example.org", 0, "obs-ctext: DEL");
	FROM_RET("\"a\\\x01\"@example.org", 0, "obs-qp: a control octet");
	FROM_RET("a@[1.2\x01]", 0, "obs-dtext: a control octet");
}

/* A domain literal is the one mailbox; its domain starts with "[". */
static void
test_from_literal(void)
{
	FROM_IS("ann@[192.0.2.1]", "ann@[192.0.2.1]", "a domain literal");
	FROM_IS("Ann <ann@[IPv6:2001:DB8::1]>", "ann@[ipv6:2001:db8::1]",
	    "an IPv6 literal in angle brackets, lower-cased");
	FROM_IS("ann@[ 192.0.2.1 ] (c)", "ann@[ 192.0.2.1 ]",
	    "FWS inside a literal is kept, CFWS after it dropped");
	FROM_IS("ann@[a\\]b]", "ann@[a\\]b]", "obs-dtext: a quoted pair");
	CHECK(strcmp(from_domain("ann@[192.0.2.1]"), "[192.0.2.1]") == 0,
	    "from: the literal's offset");
	CHECK(strcmp(from_domain("\"a@[b]\"@[c@d]"), "[c@d]") == 0,
	    "from: the domain's offset past an @ in the local part");
	CHECK(strcmp(from_domain("<@r.example:a@example.org>"),
	    "example.org") == 0, "from: the offset after a route");
	FROM_RET("ann@[192.0.2.1", 0, "an unclosed literal");
	FROM_RET("ann@[1[2]", 0, "a bracket inside a literal");
}

/*
 * A domain literal From (SPEC 6): none, without a single question; a
 * name no resolver takes is kept in whole UTF-8 characters.
 */
static void
test_literal_dmarc(void)
{
	struct dmarc_output	 o;
	char			 longname[SMTP_DOMAIN_MAX + 1];
	size_t			 i;

	check("[192.0.2.1]", SPF_PASS, "[192.0.2.1]", "[192.0.2.1]", 1, NULL,
	    0, NULL, 0, &o);
	CHECK(o.result == DMARC_NONE && nasked == 0 && !o.spf_aligned &&
	    !o.dkim_aligned && strcmp(o.domain, "[192.0.2.1]") == 0,
	    "literal: none, nothing asked, nothing aligned (%d, %zu)",
	    o.result, nasked);
	check("[ipv6:2001:db8::1]", SPF_NONE, NULL, NULL, 0, NULL, 0, NULL, 0,
	    &o);
	CHECK(o.result == DMARC_NONE && nasked == 0,
	    "literal: an IPv6 literal, nothing asked");
	check("org.example", SPF_PASS, "[org.example]", "[org.example]", 1,
	    NULL, 0, NULL, 0, &o);
	CHECK(!o.spf_aligned && !o.dkim_aligned && o.result == DMARC_FAIL,
	    "literal: an identifier in brackets never aligns");

	/* 127 two-octet characters: cut before the 127th, not inside it */
	for (i = 0; i + 2 <= SMTP_DOMAIN_MAX; i += 2)
		memcpy(longname + i, "\xc3\xbc", 2);
	longname[i] = '\0';
	check(longname, SPF_NONE, NULL, NULL, 0, NULL, 0, NULL, 0, &o);
	CHECK(o.result == DMARC_NONE && nasked == 0 &&
	    strlen(o.domain) == DNS_NAME_MAX - 1 &&
	    (unsigned char)o.domain[strlen(o.domain) - 1] == 0xbc,
	    "literal: a long UTF-8 name is cut between characters (%zu)",
	    strlen(o.domain));
}

int
main(void)
{
	test_record();
	test_org();
	test_policy();
	test_align();
	test_temp();
	test_from();
	test_from_obsolete();
	test_from_literal();
	test_literal_dmarc();
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
