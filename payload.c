/*
 * What a worker makes of an accepted message: it hands the message to
 * the verifier, which decodes it (SPEC section 4) and judges it, and
 * asks the relay to deliver it, which POSTs the verifier's payload to
 * FIRM (--api) or writes it into the spool (--spool).  No HTTP client
 * here, no file, and nothing FIRM believes: the verifier's and the
 * master's.  payload_token_find() serves the verifier.
 */

#include <sys/types.h>
#include <sys/uio.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "smtpd.h"

static enum reply payload_reply(struct chan_verdict *, char *, size_t);
static enum reply payload_post(const struct smtpd_conf *,
		    const struct envelope *, const struct message *, int,
		    const char *, size_t, struct chan_verdict *, char *,
		    size_t);

static int
payload_token_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/*
 * Find "FIRM-TOKEN:" followed by three groups of four [A-Z0-9] joined
 * by '-', not followed by another letter or digit.  The token goes to
 * out (TOKEN_LEN + 1 bytes); returns 1 when found.
 */
int
payload_token_find(const char *p, size_t len, char *out)
{
	const size_t	 plen = sizeof(TOKEN_PREFIX) - 1;
	const char	*end = p + len, *t;
	size_t		 i;

	while ((size_t)(end - p) >= TOKEN_LEN &&
	    (t = memmem(p, (size_t)(end - p), TOKEN_PREFIX, plen)) != NULL) {
		p = t + plen;
		if ((size_t)(end - t) < TOKEN_LEN)
			break;
		for (i = 0; i < 14; i++) {
			if (i == 4 || i == 9) {
				if (p[i] != '-')
					break;
			} else if (!payload_token_char(p[i]))
				break;
		}
		if (i < 14)
			continue;
		if (t + TOKEN_LEN < end && (payload_token_char(t[TOKEN_LEN]) ||
		    (t[TOKEN_LEN] >= 'a' && t[TOKEN_LEN] <= 'z')))
			continue;
		memcpy(out, t, TOKEN_LEN);
		out[TOKEN_LEN] = '\0';
		return 1;
	}
	return 0;
}

/*
 * The worker's part of a message: it goes to the verifier as received,
 * and the relay is asked to deliver it.  The verifier finds the token,
 * decodes the fields (SPEC section 4) and judges the sender; the relay
 * joins that with the client address the master attested, and POSTs or
 * spools the whole.  The worker's payload is an empty object: nothing
 * it says there reaches FIRM, and the relay refuses one that names a
 * field.
 */
enum reply
payload_deliver(const struct smtpd_conf *conf, const struct envelope *env,
    const struct message *msg, int chan, int vchan, struct chan_verdict *v,
    char *token, char *text, size_t textlen)
{
	static const char	 empty[] = "{}";
	enum reply		 r;

	memset(v, 0, sizeof(*v));
	if (payload_verify(conf, env, msg, vchan) == -1)
		return REPLY_API_DOWN;
	r = payload_post(conf, env, msg, chan, empty, sizeof(empty) - 1, v,
	    text, textlen);
	/* the verifier's token, for the log */
	strlcpy(token, v->token, TOKEN_LEN + 1);
	return r;
}

/*
 * Hand the verifier the message and its envelope; it answers the relay,
 * not us.
 */
int
payload_verify(const struct smtpd_conf *conf, const struct envelope *env,
    const struct message *msg, int vchan)
{
	struct chan_verify	 cv;
	struct iovec		 iov[4 + MAX_MAX_RCPT];
	size_t			 i;
	int			 n = 1;

	memset(&cv, 0, sizeof(cv));
	strlcpy(cv.session, env->session, sizeof(cv.session));
	strlcpy(cv.msgid, msg->id, sizeof(cv.msgid));
	cv.nrcpts = (uint32_t)env->nrcpts;
	cv.hdrlen = (uint32_t)msg->hdrlen;
	if (env->tls != NULL)
		strlcpy(cv.tls, env->tls, sizeof(cv.tls));
	iov[n].iov_base = &cv;
	iov[n++].iov_len = sizeof(cv);
	iov[n].iov_base = (void *)(uintptr_t)env->from;
	iov[n++].iov_len = strlen(env->from) + 1;
	iov[n].iov_base = (void *)(uintptr_t)env->helo;
	iov[n++].iov_len = strlen(env->helo) + 1;
	for (i = 0; i < env->nrcpts && i < MAX_MAX_RCPT; i++) {
		iov[n].iov_base = env->rcpts[i];
		iov[n++].iov_len = strlen(env->rcpts[i]) + 1;
	}
	iov[n].iov_base = msg->buf;
	iov[n++].iov_len = msg->len;
	if (chan_send(vchan, CHAN_VERIFY, iov, n, conf->timeout * 1000LL) ==
	    -1) {
		log_event(LOG_WARNING, "verifier_error", env->session,
		    "{s:s, s:s}", "id", msg->id, "error", strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * Hand the payload to the relay and wait for FIRM's verdict, within
 * --api-timeout plus the verifier's DNS budget (the relay bounds the
 * call by them; we allow a second more for the answer to travel).  The
 * relay logs what FIRM said.
 */
static enum reply
payload_post(const struct smtpd_conf *conf, const struct envelope *env,
    const struct message *msg, int chan, const char *json, size_t len,
    struct chan_verdict *v, char *text, size_t textlen)
{
	struct chan_inbound	 in;

	memset(&in, 0, sizeof(in));
	strlcpy(in.session, env->session, sizeof(in.session));
	strlcpy(in.msgid, msg->id, sizeof(in.msgid));
	if (chan_request(chan, CHAN_INBOUND, &in, sizeof(in), json, len,
	    CHAN_VERDICT, v, sizeof(*v), conf->api_timeout * 1000 +
	    RELAY_AUTH_WAIT_MS + 1000) == -1) {
		log_event(LOG_WARNING, "relay_error", env->session,
		    "{s:s, s:s}", "id", msg->id, "error", strerror(errno));
		memset(v, 0, sizeof(*v));
		return errno == ETIMEDOUT ? REPLY_API_TIMEOUT : REPLY_API_DOWN;
	}
	return payload_reply(v, text, textlen);
}

/* The reply the relay's verdict makes. */
static enum reply
payload_reply(struct chan_verdict *v, char *text, size_t textlen)
{
	v->text[sizeof(v->text) - 1] = '\0';
	v->token[sizeof(v->token) - 1] = '\0';
	v->spf[sizeof(v->spf) - 1] = '\0';
	v->dkim[sizeof(v->dkim) - 1] = '\0';
	v->dmarc[sizeof(v->dmarc) - 1] = '\0';
	v->verdict[sizeof(v->verdict) - 1] = '\0';
	switch (v->kind) {
	case VERDICT_ACCEPTED:
		return REPLY_ACCEPTED;
	case VERDICT_TIMEOUT:
		return REPLY_API_TIMEOUT;
	case VERDICT_NOSPACE:
		return REPLY_NOSPACE;
	case VERDICT_REFUSED:
		/* the verifier's refusals, and no other reply */
		switch (v->reply) {
		case REPLY_REPEATED:
		case REPLY_FROM:
		case REPLY_AUTHFAIL:
		case REPLY_AUTHTEMP:
		case REPLY_NOTOKEN:
			log_sanitize(text, textlen, v->text, strlen(v->text));
			return (enum reply)v->reply;
		default:
			return REPLY_LOCALERR;
		}
	case VERDICT_HTTP:
		break;
	case VERDICT_LOCAL:
		return REPLY_LOCALERR;
	default:
		return REPLY_API_DOWN;
	}
	if (v->status == 408 || v->status == 429 || v->status >= 500 ||
	    v->status < 200 || (v->status >= 300 && v->status < 400)) {
		snprintf(text, textlen, "(HTTP %d)", (int)v->status);
		return REPLY_API_TEMP;
	}
	if (v->status >= 200 && v->status < 300)
		return REPLY_ACCEPTED;
	if (FIRM_CONFIG_ERROR(v->status))
		return REPLY_FIRM_CONFIG;	/* the relay logged it */
	if (v->status == 413)
		return REPLY_FIRM_TOOBIG;
	/* printable already; checked again: the relay is not the reply */
	log_sanitize(text, textlen, v->text, strlen(v->text));
	if (text[0] == '\0')
		snprintf(text, textlen, "Rejected by FIRM (HTTP %d)",
		    (int)v->status);
	return REPLY_FIRMREJECT;
}
