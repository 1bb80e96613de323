/*
 * Sender authentication for one message (SPEC section 6): the worker's
 * side.  SPF runs as soon as MAIL FROM is known (spf.c), DKIM and DMARC
 * at the end of data; every DNS question goes to the relay (dns.c)
 * within the message's budget.  The result travels in the payload
 * (auth_json), in our Authentication-Results header (RFC 8601), and
 * may refuse the message under --require-auth.
 *
 * Choices the RFCs leave to us:
 * - the From field is parsed from its raw bytes, never from a decoded
 *   form; no From, two, or one naming several mailboxes is refused;
 * - a field RFC 5322 3.6 allows once (Subject, From, Date...) that
 *   appears twice refuses the message (auth_once), so that DKIM, which
 *   covers instances from the bottom up, and FIRM, which reads one,
 *   can never be shown different copies;
 * - DKIM: libopendkim verifies the signatures of the first
 *   DMARC_DKIM_MAX DKIM-Signature fields; later fields are neither
 *   evaluated nor listed.  Each tag list is checked first (dkimtag.c,
 *   RFC 6376 3.2, 3.5), and so is the key record (3.6.1): a signature
 *   that breaks a rule, or whose key cannot be found, is listed with
 *   its outcome and never handed to libopendkim, which would digest
 *   the body for it (once per distinct l= and c=) before asking for
 *   its key.  rsa-sha1 and RSA keys under 1024 bits (RFC 8301) are
 *   "policy", whatever the signature's own outcome would have been if
 *   it passed;
 * - a signature covers the token when the token is in a Subject field
 *   that h= covers (h= names instances from the bottom of the header
 *   up, RFC 6376 5.4.2; each is RFC 2047 decoded), or when the token's
 *   own octets lie in the first l= octets of the raw body (or there
 *   is no l=).  An encoded token (base64, quoted-printable) counts as
 *   covered only without l= or with l= spanning the whole body: the
 *   raw body is never longer than its canonical form would need, so
 *   this errs towards "not covered";
 * - from_equals_envelope compares both addresses case-insensitively;
 * - an incoming Authentication-Results whose authserv-id is ours is
 *   dropped from what we forward (RFC 8601 5), any other kept.
 */

#include <sys/types.h>
#include <sys/socket.h>

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <opendkim/dkim.h>

#include "smtpd.h"

static DKIM_LIB		*auth_dkim_lib;

struct auth_field {
	const char	*p;		/* name: value, without the CRLF */
	size_t		 len;		/* ... and with it */
	size_t		 full;
};

static size_t	auth_field_next(const char *, size_t, size_t,
		    struct auth_field *);
static size_t	auth_body(const char *, size_t);
static int	auth_field_is(const struct auth_field *, const char *);
static const char *auth_field_value(const struct auth_field *, size_t *);
static void	auth_dkim(struct auth *, const char *, size_t, size_t,
		    const struct mime_msg *, const char *, int);
static DKIM_CBSTAT auth_dkim_key(DKIM *, DKIM_SIGINFO *, u_char *, size_t);
static int	auth_dkim_lookup(struct auth *, struct dkimtag_sig *);
static void	auth_sigtags_free(struct auth *);
static int	auth_dkim_same(const struct dkimtag_sig *, DKIM_SIGINFO *);
static void	auth_dkim_sig(struct auth *, const struct dkimtag_sig *,
		    DKIM_SIGINFO *);
static int	auth_dkim_covers(const struct dkimtag_sig *,
		    const struct mime_msg *, size_t, const char *, int,
		    const char *, size_t);
static int	auth_name_ok(const char *);
static int	auth_verdict(const struct auth *, int);
static void	auth_results(struct auth *, const struct smtpd_conf *);
static int	auth_raw(struct auth *, const struct smtpd_conf *,
		    const struct message *);
static int	auth_our_ar(const struct smtpd_conf *, const char *, size_t);

static const char *const verdict_names[] = { "temperror", "fail", "none",
    "weak", "strong" };
static const char *const dkim_names[] = { "none", "pass", "fail", "policy",
    "neutral", "temperror", "permerror" };

/*
 * Once, before any worker is forked: libopendkim's handle, checked for
 * Ed25519 (RFC 8463).  Keys come from our own lookup, through the
 * relay, never from libopendkim's resolver.
 */
void
auth_init(void)
{
	unsigned int	 flags = DKIM_LIBFLAGS_DELAYSIGPROC, bits = 0;

	if ((auth_dkim_lib = dkim_init(NULL, NULL)) == NULL)
		fatalx("libopendkim: dkim_init failed");
	if (!dkim_libfeature(auth_dkim_lib, DKIM_FEATURE_ED25519) ||
	    !dkim_libfeature(auth_dkim_lib, DKIM_FEATURE_SHA256))
		fatalx("libopendkim was built without Ed25519 or SHA-256 "
		    "(RFC 8463); smtpd needs both");
	/*
	 * Small keys are verified, then graded "policy" (RFC 8301).
	 * Signatures are processed at the end of the message, not of the
	 * header: a key lookup that fails there still leaves every
	 * signature listed, so each is reported.
	 */
	if (dkim_options(auth_dkim_lib, DKIM_OP_SETOPT, DKIM_OPTS_MINKEYBITS,
	    &bits, sizeof(bits)) != DKIM_STAT_OK ||
	    dkim_options(auth_dkim_lib, DKIM_OP_SETOPT, DKIM_OPTS_FLAGS, &flags,
	    sizeof(flags)) != DKIM_STAT_OK ||
	    dkim_set_key_lookup(auth_dkim_lib, auth_dkim_key) != DKIM_STAT_OK)
		fatalx("libopendkim: dkim_options failed");
}

void
auth_reset(struct auth *au)
{
	free(au->raw);
	free(au->ans);
	dns_chan_free(&au->dc);
	auth_sigtags_free(au);
	free(au->sigtags);
	memset(au, 0, sizeof(*au));
}

/*
 * First of a message's checks that ask DNS (the verifier's): the
 * message's DNS budget starts, at most queries questions (what its
 * session has left, verifier.c), and SPF is decided for the envelope
 * sender's domain, or for the HELO name when the sender is <> (RFC 7208
 * 2.3, 2.4).
 */
void
auth_spf(struct auth *au, const struct smtpd_conf *conf, int chan,
    size_t queries, const struct sockaddr_storage *peer, const char *from,
    const char *helo)
{
	char		 sender[SMTP_LOCAL_MAX + SMTP_DOMAIN_MAX + 16];
	char		 q[DNS_NAME_MAX + 16];
	const char	*at;

	dns_chan_init(&au->dns, &au->dc, chan);
	if (au->dc.left_q > queries)
		au->dc.left_q = queries;
	/* DMARC's first question goes with SPF's: one wait for both */
	if (dmarc_first_question(au->from_domain, q, sizeof(q)) == 0)
		dns_ahead(&au->dns, q, DNS_T_TXT);
	if (from[0] != '\0' && (at = strrchr(from, '@')) != NULL) {
		/*
		 * A domain in UTF-8 is asked about in its A-label form (RFC
		 * 8616 3); one without that form stays as written, which
		 * SPF takes for no domain: "none" (RFC 7208 4.3).
		 */
		if (alabel_domain(at + 1, au->spf_domain,
		    sizeof(au->spf_domain)) == -1)
			strlcpy(au->spf_domain, at + 1,
			    sizeof(au->spf_domain));
		if ((size_t)snprintf(sender, sizeof(sender), "%.*s@%s",
		    (int)(at - from), from, au->spf_domain) >= sizeof(sender))
			sender[0] = '\0';	/* postmaster@ (4.3) */
		au->spf_scope = "mfrom";
	} else {
		/* the HELO name: in its A-label form already (session.c) */
		strlcpy(au->spf_domain, helo, sizeof(au->spf_domain));
		snprintf(sender, sizeof(sender), "postmaster@%s", helo);
		au->spf_scope = "helo";
	}
	au->spf = spf_check_host(&au->dns, peer, au->spf_domain, sender, helo,
	    conf->hostname);
	au->spf_done = 1;
}

/*
 * The fields RFC 5322 3.6 allows at most once (SPEC section 3), and the
 * two of RFC 2045 that say how the body is read: a second copy of any
 * is refused, whatever else the message holds, so that no reader
 * (DKIM, which covers instances from the bottom up, mime.c and FIRM,
 * which read the top one) can be shown another copy than the one that
 * was checked.  Returns -1 when none repeats, else the reply, with
 * *name the field's name.
 */
int
auth_once(const struct message *msg, const char **name)
{
	static const char *const once[] = { "Date", "From", "Sender",
	    "Reply-To", "To", "Cc", "Bcc", "Message-ID", "In-Reply-To",
	    "References", "Subject", "Content-Type",
	    "Content-Transfer-Encoding" };
	struct auth_field	 f;
	const char		*data = msg->buf + msg->hdrlen;
	size_t			 len = msg->len - msg->hdrlen, off = 0, i;
	unsigned int		 seen = 0;

	while ((off = auth_field_next(data, len, off, &f)) != 0)
		for (i = 0; i < sizeof(once) / sizeof(once[0]); i++) {
			if (!auth_field_is(&f, once[i]))
				continue;
			if ((seen & (1U << i)) != 0) {
				*name = once[i];
				return REPLY_REPEATED;
			}
			seen |= 1U << i;
			break;
		}
	return -1;
}

/*
 * The From rule (SPEC section 3): exactly one From field naming exactly
 * one mailbox.  Returns -1 when it holds, else the reply.
 */
int
auth_from(struct auth *au, const struct message *msg)
{
	struct auth_field	 f;
	const char		*data = msg->buf + msg->hdrlen, *v, *d;
	char			 unfolded[SMTP_TEXT_LINE_MAX * 8];
	size_t			 len = msg->len - msg->hdrlen, off = 0, vlen, i;
	size_t			 n, nfrom = 0, dom = 0;

	while ((off = auth_field_next(data, len, off, &f)) != 0) {
		if (!auth_field_is(&f, "from"))
			continue;
		if (++nfrom > 1)
			return REPLY_FROM;
		v = auth_field_value(&f, &vlen);
		for (i = 0, n = 0; i < vlen && n < sizeof(unfolded) - 1; i++)
			if (v[i] != '\r' && v[i] != '\n')
				unfolded[n++] = v[i];
		if (i < vlen ||
		    addr_parse_from(unfolded, n, au->from, sizeof(au->from),
		    &dom) != 1)
			return REPLY_FROM;
	}
	if (nfrom == 0)
		return REPLY_FROM;
	/*
	 * DMARC's From domain: a domain literal as it is (dmarc.c asks
	 * nothing about it: "none"), a name in its A-label form (RFC 8616
	 * 5), the form our header and the payload's dmarc.domain show.  A
	 * name in UTF-8 that has no A-label form stays as written, which
	 * dmarc.c never asks about either: "none", not "permerror".  The
	 * result codes (RFC 7489 11.2, kept by RFC 9989) give "none" when
	 * no aligned identifier could be extracted, and "permerror" to an
	 * evaluation that met an error, such as a broken policy record;
	 * no record can be published for a name that is not one, so there
	 * is no policy to apply, and nothing went wrong in evaluating it.
	 */
	d = au->from + dom;
	if (*d == '[' ||
	    alabel_domain(d, au->from_domain, sizeof(au->from_domain)) == -1)
		strlcpy(au->from_domain, d, sizeof(au->from_domain));
	for (i = 0; au->from_domain[i] != '\0'; i++)
		au->from_domain[i] = (char)tolower((unsigned char)
		    au->from_domain[i]);
	return -1;
}

/*
 * The next header field at off of the data's header section: its
 * extent in *f, and the offset after it; 0 at the end of the header.
 * mime.c's reading (mime_field_next), so that DKIM, the field rules
 * and the decoded payload all end the header at the same line.
 */
static size_t
auth_field_next(const char *p, size_t len, size_t off, struct auth_field *f)
{
	const char	*pp = p + off, *name, *value;
	size_t		 namelen, valuelen;

	if (off >= len ||
	    !mime_field_next(&pp, p + len, &name, &namelen, &value, &valuelen))
		return 0;
	f->p = p + off;
	f->full = (size_t)(pp - f->p);
	f->len = f->full;
	while (f->len > 0 && (f->p[f->len - 1] == '\n' ||
	    f->p[f->len - 1] == '\r'))
		f->len--;
	return (size_t)(pp - p);
}

/* Where the body starts: past the header section and its empty line. */
static size_t
auth_body(const char *p, size_t len)
{
	const char	*pp = p, *name, *value;
	size_t		 namelen, valuelen;

	while (mime_field_next(&pp, p + len, &name, &namelen, &value,
	    &valuelen))
		;
	return (size_t)(pp - p);
}

static int
auth_field_is(const struct auth_field *f, const char *name)
{
	size_t	 n = strlen(name), i = n;

	if (f->len <= n || strncasecmp(f->p, name, n) != 0)
		return 0;
	while (i < f->len && (f->p[i] == ' ' || f->p[i] == '\t'))
		i++;
	return i < f->len && f->p[i] == ':';
}

static const char *
auth_field_value(const struct auth_field *f, size_t *vlen)
{
	const char	*c = memchr(f->p, ':', f->len);

	*vlen = f->len - (size_t)(c + 1 - f->p);
	return c + 1;
}

/*
 * At the end of data, with the From rule passed and the token found:
 * DKIM, DMARC, the verdict, our header, the message as forwarded.
 * Returns -1 to forward it, else the reply that refuses it.
 */
int
auth_message(struct auth *au, const struct smtpd_conf *conf,
    const struct message *msg, const struct mime_msg *mm,
    const char *envelope, const char *token, int token_in_subject)
{
	struct dmarc_input	 in;
	struct auth_field	 f;
	const char		*data = msg->buf + msg->hdrlen, *v;
	size_t			 len = msg->len - msg->hdrlen, off = 0, body;
	size_t			 i, vlen;
	int			 null_sender = envelope[0] == '\0';

	while ((off = auth_field_next(data, len, off, &f)) != 0) {
		if (!auth_field_is(&f, "auto-submitted"))
			continue;
		v = auth_field_value(&f, &vlen);
		while (vlen > 0 && (*v == ' ' || *v == '\t')) {
			v++;
			vlen--;
		}
		if (vlen < 2 || strncasecmp(v, "no", 2) != 0 ||
		    (vlen > 2 && v[2] != ' ' && v[2] != '\t' && v[2] != ';' &&
		    v[2] != '(' && v[2] != '\r'))
			au->auto_submitted = 1;
	}
	body = auth_body(data, len);
	auth_dkim(au, data, len, body, mm, token, token_in_subject);

	memset(&in, 0, sizeof(in));
	in.from_domain = au->from_domain;
	/*
	 * RFC 9989: DMARC counts SPF of the MAIL FROM identity only, never
	 * of HELO; for a null sender that identity is postmaster@ the HELO
	 * name (RFC 7208 2.4), which auth_spf() checked as "helo".
	 */
	in.spf = strcmp(au->spf_scope, "mfrom") == 0 || (null_sender &&
	    strcmp(au->spf_scope, "helo") == 0) ? au->spf : SPF_NONE;
	in.spf_domain = au->spf_domain;
	for (i = 0; i < au->ndkim; i++) {
		in.dkim_domain[i] = au->dkim[i].d;
		in.dkim_pass[i] = au->dkim[i].result == DKIM_R_PASS;
	}
	in.ndkim = au->ndkim;
	if (dmarc_check(&au->dns, &in, &au->dmarc) == -1)
		au->dmarc.result = DMARC_TEMPERROR;
	for (i = 0; i < au->ndkim; i++)
		au->dkim[i].aligned = au->dmarc.dkim_aligned_each[i];
	au->from_equals_envelope = strcasecmp(au->from, envelope) == 0;
	au->verdict = auth_verdict(au, null_sender);
	auth_results(au, conf);
	if (auth_raw(au, conf, msg) == -1)
		return REPLY_LOCALERR;
	if (conf->require_auth == AUTH_NONE)
		return -1;
	if (au->verdict == AUTHV_TEMPERROR)
		return REPLY_AUTHTEMP;
	if ((conf->require_auth == AUTH_WEAK && au->verdict < AUTHV_WEAK) ||
	    (conf->require_auth == AUTH_STRONG && au->verdict < AUTHV_STRONG))
		return REPLY_AUTHFAIL;
	return -1;
}

/* SPEC section 6, best first. */
static int
auth_verdict(const struct auth *au, int null_sender)
{
	size_t	 i;
	int	 dkim_aligned_pass = 0, strong = 0, temp = 0;

	for (i = 0; i < au->ndkim; i++) {
		if (au->dkim[i].result == DKIM_R_TEMPERROR)
			temp = 1;
		if (au->dkim[i].result != DKIM_R_PASS || !au->dkim[i].aligned)
			continue;
		dkim_aligned_pass = 1;
		if (au->dkim[i].covers_token)
			strong = 1;
	}
	if (au->dmarc.result == DMARC_PASS) {
		if (strong && au->dmarc.dkim_aligned &&
		    au->from_equals_envelope && !au->auto_submitted &&
		    !null_sender)
			return AUTHV_STRONG;
		return AUTHV_WEAK;
	}
	if (au->dmarc.result == DMARC_TEMPERROR)
		return AUTHV_TEMPERROR;
	if (au->dmarc.result == DMARC_FAIL ||
	    (au->spf == SPF_FAIL && !dkim_aligned_pass))
		return AUTHV_FAIL;
	if (temp || au->spf == SPF_TEMPERROR)
		return AUTHV_TEMPERROR;
	return AUTHV_NONE;
}

/*
 * libopendkim over the raw header fields and body; one entry per
 * signature in au->dkim, in header order, for the first
 * DMARC_DKIM_MAX DKIM-Signature fields.  Each field's tag list is
 * checked first (dkimtag.c): one that breaks RFC 6376 3.2 or 3.5 is
 * listed as permerror and is not handed to libopendkim, and neither is
 * any signature field past the first DMARC_DKIM_MAX, so a message with
 * thousands of them costs what one with DMARC_DKIM_MAX does.  Leaving
 * a field out of what libopendkim hashes can only make a signature
 * that covers it fail, never pass.
 */
static void
auth_dkim(struct auth *au, const char *data, size_t len, size_t body,
    const struct mime_msg *mm, const char *token, int token_in_subject)
{
	struct auth_field	 f;
	struct dkimtag_sig	*st;
	DKIM_SIGINFO		**sigs, *match;
	DKIM_STAT		 stat;
	DKIM			*d;
	const char		*v;
	size_t			 off = 0, nsig = 0, nfields = 0, nsubj = 0, k;
	size_t			 vlen;
	unsigned int		 used = 0;
	int			 i, nsigs = 0;

	if (auth_dkim_lib == NULL || (au->sigtags == NULL &&
	    (au->sigtags = calloc(DMARC_DKIM_MAX, sizeof(*au->sigtags))) ==
	    NULL))
		return;
	auth_sigtags_free(au);
	au->nsigtags = au->nsigfed = 0;
	d = dkim_verify(auth_dkim_lib, (const u_char *)"smtpd", NULL, &stat);
	if (d == NULL)
		return;
	dkim_set_user_context(d, au);
	while ((off = auth_field_next(data, len, off, &f)) != 0) {
		/*
		 * The fields mime.c reads, no more: libopendkim walks them
		 * all for each name of each h=.
		 */
		if (++nfields > MIME_MAX_HEADERS)
			continue;
		if (auth_field_is(&f, "subject"))
			nsubj++;
		if (auth_field_is(&f, "dkim-signature")) {
			if (nsig++ >= DMARC_DKIM_MAX)
				continue;
			st = &au->sigtags[au->nsigtags++];
			v = auth_field_value(&f, &vlen);
			if (dkimtag_sig_parse(v, vlen, st) == -1)
				continue;
			/*
			 * No key, no hashing: libopendkim would digest the
			 * body once for each distinct l= and c= before it
			 * asks for a key.  The key found is kept for it.
			 */
			if ((st->key = auth_dkim_lookup(au, st)) !=
			    DKIM_KEY_FOUND)
				continue;
			au->sigfed[au->nsigfed++] = au->nsigtags - 1;
		}
		(void)dkim_header(d, (u_char *)(uintptr_t)f.p, f.len);
	}
	/* every signature handed over has its key already: no DNS here */
	if (dkim_eoh(d) == DKIM_STAT_OK) {
		(void)dkim_body(d, (u_char *)(uintptr_t)data + body,
		    len - body);
		(void)dkim_eom(d, NULL);
	}
	/* at most DMARC_DKIM_MAX fields were handed over: bits enough */
	if (dkim_getsiglist(d, &sigs, &nsigs) != DKIM_STAT_OK ||
	    nsigs > DMARC_DKIM_MAX)
		nsigs = 0;
	for (k = 0; k < au->nsigtags; k++) {
		st = &au->sigtags[k];
		match = NULL;
		for (i = 0; st->error == NULL && st->key == DKIM_KEY_FOUND &&
		    i < nsigs; i++)
			if ((used & (1U << i)) == 0 &&
			    auth_dkim_same(st, sigs[i])) {
				used |= 1U << i;
				match = sigs[i];
				break;
			}
		auth_dkim_sig(au, st, match);
		au->dkim[au->ndkim - 1].covers_token = match != NULL &&
		    au->dkim[au->ndkim - 1].result == DKIM_R_PASS &&
		    auth_dkim_covers(st, mm, nsubj, token, token_in_subject,
		    data + body, len - body);
	}
	dkim_free(d);
}

/*
 * Is libopendkim's signature the one our tags st were read from?
 * Every tag we read must have the same value there: never the b= alone,
 * which anyone may copy into a field of their own.
 */
static int
auth_dkim_same(const struct dkimtag_sig *st, DKIM_SIGINFO *sig)
{
	char	 name[16];
	size_t	 j;

	for (j = 0; j < st->ntags; j++) {
		if (st->tags[j].nlen >= sizeof(name))
			return 0;
		memcpy(name, st->tags[j].name, st->tags[j].nlen);
		name[st->tags[j].nlen] = '\0';
		if (!dkimtag_same_value(&st->tags[j],
		    (const char *)dkim_sig_gettagvalue(sig, false,
		    (u_char *)name)))
			return 0;
	}
	return 1;
}

/*
 * One entry: permerror when our tag check refused it or libopendkim
 * has no signature for it, else libopendkim's outcome, graded.
 */
static void
auth_dkim_sig(struct auth *au, const struct dkimtag_sig *st,
    DKIM_SIGINFO *sig)
{
	struct auth_dkim	*k = &au->dkim[au->ndkim++];
	unsigned int		 flags, bits = 0;
	dkim_alg_t		 alg = DKIM_SIGN_UNKNOWN;
	int			 err;

	memset(k, 0, sizeof(*k));
	if (auth_name_ok(st->d))
		strlcpy(k->d, st->d, sizeof(k->d));
	if (auth_name_ok(st->s))
		strlcpy(k->s, st->s, sizeof(k->s));
	strlcpy(k->a, st->a, sizeof(k->a));
	k->t = st->t;
	k->x = st->x;
	k->result = st->key == DKIM_KEY_TEMP ? DKIM_R_TEMPERROR :
	    DKIM_R_PERMERROR;
	if (sig == NULL)
		return;
	flags = dkim_sig_getflags(sig);
	err = dkim_sig_geterror(sig);
	(void)dkim_sig_getsignalg(sig, &alg);
	if (dkim_sig_getkeysize(sig, &bits) == DKIM_STAT_OK)
		k->bits = (int)bits;
	if (alg == DKIM_SIGN_ED25519SHA256 && k->bits == 0)
		k->bits = 256;	/* libopendkim counts RSA keys only */

	if (st->key_strict && st->i_subdomain)
		k->result = DKIM_R_PERMERROR;	/* RFC 6376 3.6.1 t=s */
	else if ((flags & DKIM_SIGFLAG_PASSED) != 0 &&
	    dkim_sig_getbh(sig) == DKIM_SIGBH_MATCH)
		k->result = DKIM_R_PASS;
	else if (err == DKIM_SIGERROR_KEYFAIL)
		k->result = DKIM_R_TEMPERROR;	/* DNS failed */
	else if (err == DKIM_SIGERROR_OK || err == DKIM_SIGERROR_BADSIG ||
	    err == DKIM_SIGERROR_CORRUPT_B || err == DKIM_SIGERROR_CORRUPT_BH ||
	    err == DKIM_SIGERROR_TOOLARGE_L || err == DKIM_SIGERROR_EXPIRED ||
	    err == DKIM_SIGERROR_FUTURE || err == DKIM_SIGERROR_TIMESTAMPS)
		k->result = DKIM_R_FAIL;	/* verified, and wrong */
	else
		k->result = DKIM_R_PERMERROR;	/* no key, bad syntax */
	/* RFC 8301: acceptable cryptography only */
	if (k->result == DKIM_R_PASS && (alg == DKIM_SIGN_RSASHA1 ||
	    (alg == DKIM_SIGN_RSASHA256 && k->bits < 1024)))
		k->result = DKIM_R_POLICY;
}

/*
 * Does the signature cover the token?  In the Subject: the Subject
 * field instances h= names, counted from the bottom of the header up
 * (RFC 6376 5.4.2), must hold the token, RFC 2047 decoded; never the
 * topmost field merely because "subject" is in h=.  In the body: the
 * token's octets lie in the first l= octets of the raw body, or there
 * is no l=, or l= spans it all (an encoded token then counts).
 */
static int
auth_dkim_covers(const struct dkimtag_sig *st, const struct mime_msg *mm,
    size_t nsubj, const char *token, int token_in_subject, const char *body,
    size_t bodylen)
{
	char		 found[TOKEN_LEN + 1];
	const char	*t;
	size_t		 covered, first, i, j;

	if (token_in_subject) {
		covered = dkimtag_h_count(st, "subject");
		if (covered > nsubj)
			covered = nsubj;
		first = nsubj - covered;	/* raw instances first.. */
		for (i = 0, j = 0; mm != NULL && i < mm->nhdrs; i++) {
			if (strcmp(mm->hdrs[i].name, "subject") != 0)
				continue;
			if (j++ < first)
				continue;
			if (payload_token_find(mm->hdrs[i].value,
			    strlen(mm->hdrs[i].value), found) &&
			    strcmp(found, token) == 0)
				return 1;
		}
		return 0;
	}
	if (st->l == -1 || (long long)bodylen <= st->l)
		return 1;
	t = memmem(body, bodylen, token, TOKEN_LEN);
	return t != NULL && (long long)(t - body + TOKEN_LEN) <= st->l;
}

/*
 * libopendkim asks for the key of a signature: the record
 * auth_dkim_lookup() kept for the field it was handed, paired by every
 * tag (auth_dkim_same), so no DNS question is asked twice.
 */
static DKIM_CBSTAT
auth_dkim_key(DKIM *d, DKIM_SIGINFO *sig, u_char *buf, size_t buflen)
{
	struct auth		*au = dkim_get_user_context(d);
	const struct dkimtag_sig *st;
	size_t			 k;

	for (k = 0; au != NULL && k < au->nsigfed; k++) {
		st = &au->sigtags[au->sigfed[k]];
		if (!auth_dkim_same(st, sig))
			continue;
		if (st->keyrec == NULL || st->keylen >= buflen)
			return DKIM_CBSTAT_NOTFOUND;
		memcpy(buf, st->keyrec, st->keylen);
		buf[st->keylen] = '\0';
		return DKIM_CBSTAT_CONTINUE;
	}
	return DKIM_CBSTAT_NOTFOUND;
}

/*
 * The key record of a signature: TXT at selector._domainkey.domain,
 * through the relay.  RFC 6376 3.6.2.2: of several records, the first
 * that is valid for a signature of its algorithm (3.6.1: tag list, v=,
 * k=, h=), kept in st with its t=s flag.
 */
static int
auth_dkim_lookup(struct auth *au, struct dkimtag_sig *st)
{
	char		 name[DNS_NAME_MAX + 2];
	size_t		 i;
	int		 strict;

	if ((size_t)snprintf(name, sizeof(name), "%s._domainkey.%s", st->s,
	    st->d) >= sizeof(name))
		return DKIM_KEY_NONE;
	if (au->ans == NULL && (au->ans = malloc(sizeof(*au->ans))) == NULL)
		return DKIM_KEY_TEMP;
	dns_lookup(&au->dns, name, DNS_T_TXT, au->ans);
	if (au->ans->status == DNS_TEMPFAIL)
		return DKIM_KEY_TEMP;
	if (au->ans->status == DNS_NXDOMAIN)
		return DKIM_KEY_NONE;
	for (i = 0; i < au->ans->nrr; i++) {
		if (memchr(au->ans->rr[i].data, '\0', au->ans->rr[i].len) !=
		    NULL ||
		    dkimtag_key_parse((const char *)au->ans->rr[i].data,
		    au->ans->rr[i].len, st->a, &strict) == -1)
			continue;
		if ((st->keyrec = malloc(au->ans->rr[i].len)) == NULL)
			return DKIM_KEY_TEMP;
		memcpy(st->keyrec, au->ans->rr[i].data, au->ans->rr[i].len);
		st->keylen = au->ans->rr[i].len;
		st->key_strict = strict;
		return DKIM_KEY_FOUND;
	}
	return DKIM_KEY_NONE;
}

/* The key records kept for the signatures of the last message. */
static void
auth_sigtags_free(struct auth *au)
{
	size_t	 k;

	for (k = 0; au->sigtags != NULL && k < au->nsigtags; k++) {
		free(au->sigtags[k].keyrec);
		au->sigtags[k].keyrec = NULL;
	}
}

/* A name we put in a header or a payload: letters, digits, . - _ */
static int
auth_name_ok(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && *s != '.' && *s != '-' &&
		    *s != '_')
			return 0;
	return 1;
}

/* RFC 8601: "authserv-id; spf=...; dkim=...; dmarc=..." */
static void
auth_results(struct auth *au, const struct smtpd_conf *conf)
{
	char	*p = au->results;
	size_t	 left = sizeof(au->results), i, n;

#define AR_PUT(...) do {						\
	n = (size_t)snprintf(p, left, __VA_ARGS__);			\
	if (n >= left)							\
		return;							\
	p += n;								\
	left -= n;							\
} while (0)
	AR_PUT("%s; spf=%s", conf->auth_id, spf_result_name(au->spf));
	if (auth_name_ok(au->spf_domain))
		AR_PUT(" smtp.%s=%s", strcmp(au->spf_scope, "helo") == 0 ?
		    "helo" : "mailfrom", au->spf_domain);
	if (au->ndkim == 0)
		AR_PUT("; dkim=none");
	for (i = 0; i < au->ndkim; i++) {
		AR_PUT("; dkim=%s", dkim_names[au->dkim[i].result]);
		if (au->dkim[i].d[0] != '\0')
			AR_PUT(" header.d=%s", au->dkim[i].d);
		if (au->dkim[i].s[0] != '\0')
			AR_PUT(" header.s=%s", au->dkim[i].s);
		if (au->dkim[i].a[0] != '\0')
			AR_PUT(" header.a=%s", au->dkim[i].a);
	}
	AR_PUT("; dmarc=%s", dmarc_result_name(au->dmarc.result));
	if (auth_name_ok(au->from_domain))
		AR_PUT(" header.from=%s", au->from_domain);
#undef AR_PUT
}

/*
 * Is this Authentication-Results value ours?  Its authserv-id is the
 * first token, after any comment or space (RFC 8601 2.2).
 */
static int
auth_our_ar(const struct smtpd_conf *conf, const char *v, size_t len)
{
	size_t	 i = 0, n = strlen(conf->auth_id), depth = 0;

	while (i < len) {
		if (v[i] == '(')
			depth++;
		else if (v[i] == ')' && depth > 0)
			depth--;
		else if (depth == 0 && v[i] != ' ' && v[i] != '\t' &&
		    v[i] != '\r' && v[i] != '\n')
			break;
		i++;
	}
	if (len - i < n || strncasecmp(v + i, conf->auth_id, n) != 0)
		return 0;
	i += n;
	return i == len || v[i] == ';' || v[i] == ' ' || v[i] == '\t' ||
	    v[i] == '\r' || v[i] == '(';
}

/*
 * The message as forwarded: our Authentication-Results header, our
 * Received header, then the data without any Authentication-Results
 * that claims to be ours.  The header is folded at its "; " so that no
 * line passes 78 octets for long.
 */
static int
auth_raw(struct auth *au, const struct smtpd_conf *conf,
    const struct message *msg)
{
	struct auth_field	 f;
	const char		*data = msg->buf + msg->hdrlen, *v, *r;
	size_t			 len = msg->len - msg->hdrlen, off = 0, prev = 0;
	size_t			 vlen, o, col;
	char			*out;

	if ((out = malloc(sizeof(au->results) * 2 + 64 + msg->len)) == NULL)
		return -1;
	o = (size_t)snprintf(out, 64, "Authentication-Results: ");
	col = o;
	for (r = au->results; *r != '\0'; r++) {
		out[o++] = *r;
		col++;
		if (*r == ';' && r[1] == ' ' && col > 40) {
			memcpy(out + o, "\r\n\t", 3);
			o += 3;
			r++;
			col = 8;
		}
	}
	memcpy(out + o, "\r\n", 2);
	o += 2;
	memcpy(out + o, msg->buf, msg->hdrlen);
	o += msg->hdrlen;
	while ((off = auth_field_next(data, len, off, &f)) != 0) {
		if (auth_field_is(&f, "authentication-results")) {
			v = auth_field_value(&f, &vlen);
			if (auth_our_ar(conf, v, vlen)) {
				memcpy(out + o, data + prev,
				    (size_t)(f.p - data) - prev);
				o += (size_t)(f.p - data) - prev;
				prev = (size_t)(f.p - data) + f.full;
			}
		}
	}
	memcpy(out + o, data + prev, len - prev);
	o += len - prev;
	au->raw = out;
	au->rawlen = o;
	return 0;
}

/* The payload's "auth" object (SPEC section 6). */
json_t *
auth_json(const struct auth *au, const struct smtpd_conf *conf)
{
	json_t	*o, *dkim, *k;
	size_t	 i;

	if ((dkim = json_array()) == NULL)
		return NULL;
	for (i = 0; i < au->ndkim; i++) {
		k = json_pack("{s:s, s:s, s:s, s:o, s:i, s:b, s:b, s:o, s:o}",
		    "result", dkim_names[au->dkim[i].result],
		    "d", au->dkim[i].d, "s", au->dkim[i].s,
		    "a", au->dkim[i].a[0] == '\0' ? json_null() :
		    json_string(au->dkim[i].a), "key_bits", au->dkim[i].bits,
		    "aligned", au->dkim[i].aligned,
		    "covers_token", au->dkim[i].covers_token,
		    "t", au->dkim[i].t == -1 ? json_null() :
		    json_integer(au->dkim[i].t),
		    "x", au->dkim[i].x == -1 ? json_null() :
		    json_integer(au->dkim[i].x));
		if (k == NULL || json_array_append_new(dkim, k) == -1) {
			json_decref(dkim);
			return NULL;
		}
	}
	o = json_pack("{s:s, s:{s:s, s:s, s:s}, s:o, s:{s:s, s:s, s:s, s:s?,"
	    " s:b, s:b}, s:b, s:b, s:s, s:s}",
	    "authserv_id", conf->auth_id,
	    "spf", "result", spf_result_name(au->spf), "domain",
	    au->spf_domain, "scope", au->spf_scope ? au->spf_scope : "mfrom",
	    "dkim", dkim,
	    "dmarc", "result", dmarc_result_name(au->dmarc.result), "domain",
	    au->dmarc.domain, "org_domain", au->dmarc.org_domain, "p",
	    au->dmarc.policy == DMARC_P_UNSET ? NULL :
	    dmarc_policy_name(au->dmarc.policy), "spf_aligned",
	    au->dmarc.spf_aligned, "dkim_aligned", au->dmarc.dkim_aligned,
	    "from_equals_envelope", au->from_equals_envelope,
	    "auto_submitted", au->auto_submitted,
	    "verdict", verdict_names[au->verdict],
	    "authentication_results", au->results);
	return o;
}

/* The payload's "dkim_result": the best of the signatures. */
const char *
auth_dkim_result(const struct auth *au)
{
	static const int	 order[] = { DKIM_R_PASS, DKIM_R_POLICY,
	    DKIM_R_FAIL, DKIM_R_TEMPERROR, DKIM_R_PERMERROR, DKIM_R_NEUTRAL };
	size_t			 i, j;

	for (j = 0; j < sizeof(order) / sizeof(order[0]); j++)
		for (i = 0; i < au->ndkim; i++)
			if (au->dkim[i].result == order[j])
				return dkim_names[order[j]];
	return "none";
}

const char *
auth_verdict_name(int v)
{
	return verdict_names[v];
}
