/*
 * Delivery of an accepted message: find the FIRM token, build the
 * payload of SPEC section 4, and hand it over.  The embedded default
 * (--spool) writes it to a directory, one file per message.
 */

#include <sys/types.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "smtpd.h"

static json_t	*firm_payload(const struct envelope *,
		    const struct message *, const struct mime_msg *,
		    const char *, const char *, const char *);
static enum reply firm_spool_write(const struct smtpd_conf *,
		    const char *, const char *, size_t);

static int
firm_token_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/*
 * Find "FIRM-TOKEN:" followed by three groups of four [A-Z0-9] joined
 * by '-', not followed by another letter or digit.  The token goes to
 * out (TOKEN_LEN + 1 bytes); returns 1 when found.
 */
int
firm_token_find(const char *p, size_t len, char *out)
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
			} else if (!firm_token_char(p[i]))
				break;
		}
		if (i < 14)
			continue;
		if (t + TOKEN_LEN < end && (firm_token_char(t[TOKEN_LEN]) ||
		    (t[TOKEN_LEN] >= 'a' && t[TOKEN_LEN] <= 'z')))
			continue;
		memcpy(out, t, TOKEN_LEN);
		out[TOKEN_LEN] = '\0';
		return 1;
	}
	return 0;
}

enum reply
firm_deliver(const struct smtpd_conf *conf, const struct envelope *env,
    const struct message *msg, char *token, char *text, size_t textlen)
{
	struct mime_msg	 mm;
	const char	*subject;
	char		*body, *json;
	size_t		 bodylen;
	json_t		*payload;
	enum reply	 r;

	(void)text;
	(void)textlen;
	if (mime_parse(msg->buf, msg->len, &mm) == -1)
		return REPLY_LOCALERR;
	subject = mime_header_get(&mm, "subject");
	if ((body = mime_utf8_clean(mm.body, mm.bodylen, &bodylen)) == NULL) {
		mime_free(&mm);
		return REPLY_LOCALERR;
	}
	if ((subject == NULL ||
	    !firm_token_find(subject, strlen(subject), token)) &&
	    !firm_token_find(body, bodylen, token)) {
		free(body);
		mime_free(&mm);
		return REPLY_NOTOKEN;
	}
	payload = firm_payload(env, msg, &mm, subject, body, token);
	free(body);
	mime_free(&mm);
	if (payload == NULL)
		return REPLY_LOCALERR;
	json = json_dumps(payload, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(payload);
	if (json == NULL)
		return REPLY_LOCALERR;
	if (conf->spool != NULL)
		r = firm_spool_write(conf, msg->id, json, strlen(json));
	else
		r = REPLY_TEMPFAIL;	/* the FIRM API client: see smtpd.8 */
	free(json);
	return r;
}

static json_t *
firm_payload(const struct envelope *env, const struct message *msg,
    const struct mime_msg *mm, const char *subject, const char *body,
    const char *token)
{
	json_t		*o, *rcpts, *hdrs;
	char		*raw, when[32];
	const char	*msgid;
	struct tm	 tm;
	size_t		 i, rawlen;

	rawlen = sodium_base64_ENCODED_LEN(msg->len,
	    sodium_base64_VARIANT_ORIGINAL);
	if ((raw = malloc(rawlen)) == NULL)
		return NULL;
	sodium_bin2base64(raw, rawlen, (const unsigned char *)msg->buf,
	    msg->len, sodium_base64_VARIANT_ORIGINAL);

	gmtime_r(&env->received, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);

	rcpts = json_array();
	hdrs = json_object();
	for (i = 0; rcpts != NULL && i < env->nrcpts; i++)
		json_array_append_new(rcpts, json_string(env->rcpts[i]));
	for (i = 0; hdrs != NULL && i < mm->nhdrs; i++)
		if (json_object_get(hdrs, mm->hdrs[i].name) == NULL)
			json_object_set_new(hdrs, mm->hdrs[i].name,
			    json_string(mm->hdrs[i].value));
	msgid = mime_header_get(mm, "message-id");

	o = json_pack("{s:s, s:o, s:s, s:s, s:s, s:o, s:s, s:s, s:s, s:s,"
	    " s:s?, s:s?, s:s, s:I, s:s}",
	    "email", env->from,
	    "recipients", rcpts,
	    "token", token,
	    "subject", subject != NULL ? subject : "",
	    "body", body,
	    "headers", hdrs,
	    "spf_result", "none",
	    "dkim_result", "none",
	    "client_ip", env->client_ip,
	    "helo", env->helo,
	    "tls", env->tls,
	    "message_id", msgid,
	    "received_at", when,
	    "size", (json_int_t)msg->len,
	    "raw", raw);
	free(raw);
	return o;
}

/*
 * Write one payload into the spool directory: a temporary file, fsync,
 * rename to <id>.json, fsync the directory.  Nothing is lost: the
 * sender hears 250 only after that.
 */
static enum reply
firm_spool_write(const struct smtpd_conf *conf, const char *id,
    const char *json, size_t len)
{
	char	 tmp[MSG_ID_LEN + 16], final[MSG_ID_LEN + 16];
	int	 fd;

	snprintf(tmp, sizeof(tmp), ".%s.tmp", id);
	snprintf(final, sizeof(final), "%s.json", id);
	fd = openat(conf->spool_fd, tmp, O_WRONLY | O_CREAT | O_EXCL |
	    O_CLOEXEC, 0640);
	if (fd == -1) {
		log_warn("spool %s/%s", conf->spool, tmp);
		return REPLY_LOCALERR;
	}
	if (fd_write_all(fd, json, len) == -1 ||
	    fd_write_all(fd, "\n", 1) == -1 || fsync(fd) == -1) {
		log_warn("spool write %s/%s", conf->spool, tmp);
		close(fd);
		unlinkat(conf->spool_fd, tmp, 0);
		return REPLY_LOCALERR;
	}
	if (close(fd) == -1 ||
	    renameat(conf->spool_fd, tmp, conf->spool_fd, final) == -1) {
		log_warn("spool rename %s/%s", conf->spool, final);
		unlinkat(conf->spool_fd, tmp, 0);
		return REPLY_LOCALERR;
	}
	if (fsync(conf->spool_fd) == -1)
		log_warn("spool fsync %s", conf->spool);
	return REPLY_ACCEPTED;
}
