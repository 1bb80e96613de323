/*
 * What a worker makes of an accepted message: find the FIRM token,
 * build the payload of SPEC section 4, and hand it over, into a
 * directory, one file per message (--spool), or to the relay, which
 * POSTs it to FIRM (--api).  No HTTP client here: that is the relay's.
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

static json_t	*payload_json(const struct smtpd_conf *,
		    const struct envelope *, const struct auth *,
		    const struct mime_msg *, const char *, const char *,
		    const char *);
static enum reply payload_spool(const struct smtpd_conf *, const char *,
		    const char *, size_t);
static enum reply payload_post(const struct smtpd_conf *,
		    const struct envelope *, const struct message *, int,
		    const char *, size_t, char *, size_t);
static void	payload_idempotency_key(const struct envelope *,
		    const struct message *, char *, size_t);

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
 * The checks of a message's content: the token (a message without one
 * is not for FIRM, whatever else is wrong with it), the From rule,
 * sender authentication; then the payload, spooled or handed to the
 * relay.
 */
enum reply
payload_deliver(const struct smtpd_conf *conf, const struct envelope *env,
    const struct message *msg, int chan, struct auth *au, char *token,
    char *text, size_t textlen)
{
	struct mime_msg	 mm;
	const char	*subject;
	char		*json;
	json_t		*payload;
	const char	*field;
	enum reply	 r;
	int		 e, in_subject;

	/*
	 * A MIME limit only cuts the walk short: what was read is kept.
	 * The data as the client sent it is parsed, without our Received
	 * field, which must not count toward the field limit.
	 */
	if (mime_parse(msg->buf + msg->hdrlen, msg->len - msg->hdrlen, &mm) !=
	    MIME_OK)
		return REPLY_LOCALERR;
	if (mm.truncated)
		log_event(LOG_INFO, "mime_truncated", env->session,
		    "{s:s, s:s}", "id", msg->id, "limit",
		    mime_strerror(mm.truncated));
	subject = mm.subject;
	in_subject = subject != NULL &&
	    payload_token_find(subject, strlen(subject), token);
	if (!in_subject && !payload_token_find(mm.body, mm.bodylen, token)) {
		mime_free(&mm);
		return REPLY_NOTOKEN;
	}
	if ((e = auth_once(msg, &field)) != -1) {
		mime_free(&mm);
		strlcpy(text, field, textlen);
		return e;
	}
	if ((e = auth_from(au, msg)) != -1) {
		mime_free(&mm);
		return e;
	}
	if (!au->spf_done)	/* MAIL FROM could not wait for it */
		auth_spf(au, conf, chan, env->peer, env->from, env->helo);
	if ((e = auth_message(au, conf, msg, &mm, env->from, token,
	    in_subject)) != -1) {
		mime_free(&mm);
		return e;
	}
	payload = payload_json(conf, env, au, &mm, subject, mm.body, token);
	mime_free(&mm);
	if (payload == NULL)
		return REPLY_LOCALERR;
	json = json_dumps(payload, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(payload);
	if (json == NULL)
		return REPLY_LOCALERR;
	if (conf->spool != NULL)
		r = payload_spool(conf, msg->id, json, strlen(json));
	else
		r = payload_post(conf, env, msg, chan, json, strlen(json), text,
		    textlen);
	free(json);
	return r;
}

static json_t *
payload_json(const struct smtpd_conf *conf, const struct envelope *env,
    const struct auth *au, const struct mime_msg *mm, const char *subject,
    const char *body, const char *token)
{
	json_t		*o, *rcpts, *hdrs, *auth;
	char		*raw, when[32];
	const char	*msgid;
	struct tm	 tm;
	size_t		 i, rawlen;

	rawlen = sodium_base64_ENCODED_LEN(au->rawlen,
	    sodium_base64_VARIANT_ORIGINAL);
	if ((raw = malloc(rawlen)) == NULL)
		return NULL;
	sodium_bin2base64(raw, rawlen, (const unsigned char *)au->raw,
	    au->rawlen, sodium_base64_VARIANT_ORIGINAL);
	auth = auth_json(au, conf);

	gmtime_r(&env->received, &tm);
	if (strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		when[0] = '\0';

	rcpts = json_array();
	hdrs = json_object();
	for (i = 0; rcpts != NULL && i < env->nrcpts; i++)
		if (json_array_append_new(rcpts,
		    json_string(env->rcpts[i])) == -1) {
			json_decref(rcpts);	/* never drop a recipient */
			rcpts = NULL;
		}
	for (i = 0; hdrs != NULL && i < mm->nhdrs; i++)
		if (json_object_get(hdrs, mm->hdrs[i].name) == NULL)
			json_object_set_new(hdrs, mm->hdrs[i].name,
			    json_string(mm->hdrs[i].value));
	msgid = mime_header_get(mm, "message-id");

	o = json_pack("{s:s, s:s, s:o, s:s, s:s, s:s, s:o, s:s, s:s, s:o,"
	    " s:s, s:s, s:s?, s:s?, s:s, s:I, s:s}",
	    "email", env->from,
	    "from", au->from,
	    "recipients", rcpts,
	    "token", token,
	    "subject", subject != NULL ? subject : "",
	    "body", body,
	    "headers", hdrs,
	    "spf_result", spf_result_name(au->spf),
	    "dkim_result", auth_dkim_result(au),
	    "auth", auth,
	    "client_ip", env->client_ip,
	    "helo", env->helo,
	    "tls", env->tls,
	    "message_id", msgid,
	    "received_at", when,
	    "size", (json_int_t)au->rawlen,
	    "raw", raw);
	free(raw);
	return o;
}

/*
 * Write one payload into the spool directory: a temporary file, fsync,
 * rename to <id>.json, fsync of the directory.  Nothing is lost: the
 * sender hears 250 only after that.
 */
static enum reply
payload_spool(const struct smtpd_conf *conf, const char *id,
    const char *json, size_t len)
{
	struct iovec	 iov[2];
	char		 name[MSG_ID_LEN + 16];

	if (snprintf(name, sizeof(name), "%s.json", id) >= (int)sizeof(name))
		return REPLY_LOCALERR;
	iov[0].iov_base = (void *)(uintptr_t)json;
	iov[0].iov_len = len;
	iov[1].iov_base = "\n";
	iov[1].iov_len = 1;
	if (file_write_atomic(conf->spool_fd, name, iov, 2, 0640) == -1) {
		log_warn("spool %s/%s", conf->spool, name);
		return REPLY_LOCALERR;
	}
	return REPLY_ACCEPTED;
}

/*
 * A key unique to the message, the same when the sender retries it:
 * BLAKE2b of the envelope and the data as received (our Received:
 * header, which differs on each try, left out).
 */
static void
payload_idempotency_key(const struct envelope *env, const struct message *msg,
    char *out, size_t outlen)
{
	crypto_generichash_state	 st;
	unsigned char			 h[16];
	size_t				 i;

	crypto_generichash_init(&st, NULL, 0, sizeof(h));
	crypto_generichash_update(&st, (const unsigned char *)env->from,
	    strlen(env->from) + 1);
	for (i = 0; i < env->nrcpts; i++)
		crypto_generichash_update(&st,
		    (const unsigned char *)env->rcpts[i],
		    strlen(env->rcpts[i]) + 1);
	crypto_generichash_update(&st,
	    (const unsigned char *)msg->buf + msg->hdrlen,
	    msg->len - msg->hdrlen);
	crypto_generichash_final(&st, h, sizeof(h));
	sodium_bin2hex(out, outlen, h, sizeof(h));
}

/*
 * Hand the payload to the relay and wait for FIRM's verdict, within
 * --api-timeout (the relay bounds the call by it; we allow a second
 * more for the answer to travel).  The relay logs what FIRM said.
 */
static enum reply
payload_post(const struct smtpd_conf *conf, const struct envelope *env,
    const struct message *msg, int chan, const char *json, size_t len,
    char *text, size_t textlen)
{
	struct chan_inbound	 in;
	struct chan_verdict	 v;

	memset(&in, 0, sizeof(in));
	strlcpy(in.session, env->session, sizeof(in.session));
	strlcpy(in.msgid, msg->id, sizeof(in.msgid));
	payload_idempotency_key(env, msg, in.idem, sizeof(in.idem));
	if (chan_request(chan, CHAN_INBOUND, &in, sizeof(in), json, len,
	    CHAN_VERDICT, &v, sizeof(v), conf->api_timeout * 1000 + 1000) ==
	    -1) {
		log_event(LOG_WARNING, "relay_error", env->session,
		    "{s:s, s:s}", "id", msg->id, "error", strerror(errno));
		return errno == ETIMEDOUT ? REPLY_API_TIMEOUT : REPLY_API_DOWN;
	}
	v.text[sizeof(v.text) - 1] = '\0';
	switch (v.kind) {
	case VERDICT_ACCEPTED:
		return REPLY_ACCEPTED;
	case VERDICT_TIMEOUT:
		return REPLY_API_TIMEOUT;
	case VERDICT_HTTP:
		break;
	default:
		return REPLY_API_DOWN;
	}
	if (v.status == 408 || v.status == 429 || v.status >= 500 ||
	    v.status < 200 || (v.status >= 300 && v.status < 400)) {
		snprintf(text, textlen, "(HTTP %d)", (int)v.status);
		return REPLY_API_TEMP;
	}
	if (v.status >= 200 && v.status < 300)
		return REPLY_ACCEPTED;
	if (FIRM_CONFIG_ERROR(v.status))
		return REPLY_FIRM_CONFIG;	/* the relay logged it */
	if (v.status == 413)
		return REPLY_FIRM_TOOBIG;
	/* printable already; checked again: the relay is not the reply */
	log_sanitize(text, textlen, v.text, strlen(v.text));
	if (text[0] == '\0')
		snprintf(text, textlen, "Rejected by FIRM (HTTP %d)",
		    (int)v.status);
	return REPLY_FIRMREJECT;
}
