/*
 * The FIRM API client, and delivery of an accepted message: find the
 * FIRM token, build the payload of SPEC section 4 and hand it over,
 * with a signed POST /inbound (--api) or, as the embedded default,
 * into a directory, one file per message (--spool).
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

#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>

#include "smtpd.h"

static json_t	*firm_payload(const struct envelope *,
		    const struct message *, const struct mime_msg *,
		    const char *, const char *, const char *);
static enum reply firm_spool_write(const struct smtpd_conf *,
		    const char *, const char *, size_t);
static enum reply firm_post_inbound(const struct smtpd_conf *,
		    const struct envelope *, const struct message *,
		    const char *, size_t, char *, size_t);
static void	firm_idempotency_key(const struct envelope *,
		    const struct message *, char *, size_t);
static void	firm_error_text(const char *, size_t, char *, size_t);
static size_t	firm_write_cb(char *, size_t, size_t, void *);
static int	firm_header(struct curl_slist **, const char *,
		    const char *);

static CURL		*firm_curl;	/* one per process: reused */
static unsigned char	*firm_key;	/* --api-secret, in guarded memory */
static size_t		 firm_keylen;

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
	char		*json;
	json_t		*payload;
	enum reply	 r;
	int		 e;

	if ((e = mime_parse(msg->buf, msg->len, &mm)) != MIME_OK) {
		if (e == MIME_ENOMEM)
			return REPLY_LOCALERR;
		if (strlcpy(text, mime_strerror(e), textlen) >= textlen)
			text[0] = '\0';
		return REPLY_MIME;
	}
	subject = mm.subject;
	if ((subject == NULL ||
	    !firm_token_find(subject, strlen(subject), token)) &&
	    !firm_token_find(mm.body, mm.bodylen, token)) {
		mime_free(&mm);
		return REPLY_NOTOKEN;
	}
	payload = firm_payload(env, msg, &mm, subject, mm.body, token);
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
		r = firm_post_inbound(conf, env, msg, json, strlen(json), text,
		    textlen);
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

	if (snprintf(tmp, sizeof(tmp), ".%s.tmp", id) >= (int)sizeof(tmp) ||
	    snprintf(final, sizeof(final), "%s.json", id) >=
	    (int)sizeof(final))
		return REPLY_LOCALERR;
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

/*
 * Read the --api-secret key once, into guarded memory; the file's
 * bytes are wiped.  A trailing newline is not part of the key.
 * Returns NULL on success, else the reason.
 */
const char *
firm_key_load_priv(const char *path)
{
	static char	 reason[256];
	unsigned char	 buf[FIRM_KEY_MAX + 1];
	ssize_t		 n;
	size_t		 len = 0;
	int		 fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		snprintf(reason, sizeof(reason), "%s: %s", path,
		    strerror(errno));
		return reason;
	}
	while (len < sizeof(buf) &&
	    (n = read(fd, buf + len, sizeof(buf) - len)) > 0)
		len += (size_t)n;
	close(fd);
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		len--;
	if (len == 0 || len > FIRM_KEY_MAX) {
		sodium_memzero(buf, sizeof(buf));
		snprintf(reason, sizeof(reason), "%s: the key must hold 1 to "
		    "%d bytes", path, FIRM_KEY_MAX);
		return reason;
	}
	if ((firm_key = sodium_malloc(len)) == NULL) {
		sodium_memzero(buf, sizeof(buf));
		return "out of memory for the key";
	}
	memcpy(firm_key, buf, len);
	firm_keylen = len;
	sodium_memzero(buf, sizeof(buf));
	sodium_mprotect_readonly(firm_key);
	return NULL;
}

/* Wipe the key: a process that will make no more requests. */
void
firm_key_wipe(void)
{
	if (firm_key == NULL)
		return;
	sodium_free(firm_key);	/* zeroes before it frees */
	firm_key = NULL;
	firm_keylen = 0;
}

/* hex(HMAC-SHA256(key, timestamp "." body)) into sig (65 bytes). */
void
firm_sign(const char *timestamp, const char *body, size_t len, char *sig)
{
	crypto_auth_hmacsha256_state	 st;
	unsigned char			 mac[crypto_auth_hmacsha256_BYTES];

	crypto_auth_hmacsha256_init(&st, firm_key, firm_keylen);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)timestamp,
	    strlen(timestamp));
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)".", 1);
	if (len > 0)
		crypto_auth_hmacsha256_update(&st,
		    (const unsigned char *)body, len);
	crypto_auth_hmacsha256_final(&st, mac);
	sodium_bin2hex(sig, FIRM_SIG_HEX + 1, mac, sizeof(mac));
	sodium_memzero(&st, sizeof(st));
}

/*
 * Append "name: value" (or "name:", which removes a header libcurl
 * would add) to *list.  Returns 0, or -1 when out of memory.
 */
static int
firm_header(struct curl_slist **list, const char *name, const char *value)
{
	struct curl_slist	*l;
	char			 line[256];
	int			 n;

	n = snprintf(line, sizeof(line), "%s:%s%s", name, value ? " " : "",
	    value ? value : "");
	if (n < 0 || (size_t)n >= sizeof(line))
		return -1;
	if ((l = curl_slist_append(*list, line)) == NULL)
		return -1;
	*list = l;
	return 0;
}

/* Keep the body up to r->max octets; the rest is read and dropped. */
static size_t
firm_write_cb(char *p, size_t size, size_t n, void *arg)
{
	struct firm_response	*r = arg;
	size_t			 len = size * n, take, ncap;
	char			*nb;

	take = r->max - r->len;
	if (len < take)
		take = len;
	else if (len > take)
		r->truncated = 1;
	if (take == 0)
		return len;
	if (r->len + take + 1 > r->cap) {
		ncap = r->cap ? r->cap : 4096;
		while (ncap < r->len + take + 1)
			ncap *= 2;
		if ((nb = realloc(r->body, ncap)) == NULL)
			return 0;	/* aborts: CURLE_WRITE_ERROR */
		r->body = nb;
		r->cap = ncap;
	}
	memcpy(r->body + r->len, p, take);
	r->len += take;
	r->body[r->len] = '\0';
	return len;
}

void
firm_response_free(struct firm_response *r)
{
	free(r->body);
	r->body = NULL;
	r->len = r->cap = 0;
}

/*
 * One request to the FIRM API: GET (body NULL) or POST of JSON, signed
 * when --api-secret is set, bounded by --api-timeout.  Nothing from a
 * message ever goes into a header: only our own values do.  The answer's
 * body is kept up to max octets (free it with firm_response_free).
 * Returns 0 with r->status set, or -1 with r->curl_error and r->error.
 */
int
firm_request(const struct smtpd_conf *conf, const char *path,
    const char *body, size_t len, const char *idem_key, size_t max,
    struct firm_response *r)
{
	struct curl_slist	*hdrs = NULL;
	char			 url[FIRM_URL_MAX], ts[32];
	char			 sig[FIRM_SIG_HEX + 1];
	CURLcode		 rc;
	size_t			 blen;
	int			 n;

	memset(r, 0, sizeof(*r));
	r->max = max;
	blen = strlen(conf->api);
	while (blen > 0 && conf->api[blen - 1] == '/')
		blen--;
	n = snprintf(url, sizeof(url), "%.*s%s", (int)blen, conf->api, path);
	if (n < 0 || (size_t)n >= sizeof(url)) {
		r->curl_error = CURLE_URL_MALFORMAT;
		strlcpy(r->error, "URL too long", sizeof(r->error));
		return -1;
	}
	if (firm_curl == NULL && (firm_curl = curl_easy_init()) == NULL) {
		r->curl_error = CURLE_OUT_OF_MEMORY;
		strlcpy(r->error, "curl_easy_init", sizeof(r->error));
		return -1;
	}
	curl_easy_reset(firm_curl);

	(void)snprintf(ts, sizeof(ts), "%lld", (long long)time(NULL));
	if (firm_key != NULL)
		firm_sign(ts, body, body ? len : 0, sig);
	if (firm_header(&hdrs, "Expect", NULL) == -1 ||
	    (body != NULL &&
	    firm_header(&hdrs, "Content-Type", "application/json") == -1) ||
	    (idem_key != NULL &&
	    firm_header(&hdrs, "Idempotency-Key", idem_key) == -1) ||
	    (firm_key != NULL &&
	    (firm_header(&hdrs, "X-Firm-Timestamp", ts) == -1 ||
	    firm_header(&hdrs, "X-Firm-Signature", sig) == -1))) {
		curl_slist_free_all(hdrs);
		r->curl_error = CURLE_OUT_OF_MEMORY;
		strlcpy(r->error, "out of memory", sizeof(r->error));
		return -1;
	}

	curl_easy_setopt(firm_curl, CURLOPT_URL, url);
	curl_easy_setopt(firm_curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(firm_curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(firm_curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(firm_curl, CURLOPT_TIMEOUT, (long)conf->api_timeout);
	curl_easy_setopt(firm_curl, CURLOPT_CONNECTTIMEOUT,
	    (long)conf->api_timeout);
	curl_easy_setopt(firm_curl, CURLOPT_USERAGENT,
	    "smtpd/" SMTPD_VERSION);
	curl_easy_setopt(firm_curl, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(firm_curl, CURLOPT_WRITEFUNCTION, firm_write_cb);
	curl_easy_setopt(firm_curl, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(firm_curl, CURLOPT_ERRORBUFFER, r->error);
	/* nothing from files once sandboxed: see conf_api_priv() */
	if (conf->api_resolve != NULL)
		curl_easy_setopt(firm_curl, CURLOPT_RESOLVE,
		    conf->api_resolve);
	if (conf->ca_blob != NULL) {
		struct curl_blob blob;

		blob.data = conf->ca_blob;
		blob.len = conf->ca_bloblen;
		blob.flags = CURL_BLOB_NOCOPY;
		curl_easy_setopt(firm_curl, CURLOPT_CAINFO_BLOB, &blob);
		curl_easy_setopt(firm_curl, CURLOPT_CAPATH, NULL);
	}
	if (body != NULL) {
		curl_easy_setopt(firm_curl, CURLOPT_POST, 1L);
		curl_easy_setopt(firm_curl, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(firm_curl, CURLOPT_POSTFIELDSIZE_LARGE,
		    (curl_off_t)len);
	} else
		curl_easy_setopt(firm_curl, CURLOPT_HTTPGET, 1L);

	rc = curl_easy_perform(firm_curl);
	curl_slist_free_all(hdrs);
	if (rc != CURLE_OK) {
		r->curl_error = (int)rc;
		if (r->error[0] == '\0')
			strlcpy(r->error, curl_easy_strerror(rc),
			    sizeof(r->error));
		return -1;
	}
	curl_easy_getinfo(firm_curl, CURLINFO_RESPONSE_CODE, &r->status);
	return 0;
}

/*
 * A key unique to the message, the same when the sender retries it:
 * BLAKE2b of the envelope and the data as received (our Received:
 * header, which differs on each try, left out).
 */
static void
firm_idempotency_key(const struct envelope *env, const struct message *msg,
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
 * The API's error for a 554: the "error" (or "message", "detail")
 * string of a JSON answer, else the first line of the body; printable
 * ASCII only, at most FIRM_ERROR_MAX characters.
 */
static void
firm_error_text(const char *body, size_t len, char *out, size_t outlen)
{
	static const char	*keys[] = { "error", "message", "detail" };
	json_t			*j, *v;
	const char		*p = body;
	size_t			 i, n;

	out[0] = '\0';
	if ((j = json_loadb(body, len, 0, NULL)) != NULL) {
		for (i = 0; json_is_object(j) && i < 3; i++) {
			v = json_object_get(j, keys[i]);
			if (json_is_string(v)) {
				p = json_string_value(v);
				len = json_string_length(v);
				break;
			}
		}
	}
	n = strcspn(p, "\r\n");
	if (n > len)
		n = len;
	if (n > FIRM_ERROR_MAX)
		n = FIRM_ERROR_MAX;
	if (n >= outlen)
		n = outlen - 1;
	log_sanitize(out, n + 1, p, n);
	if (j != NULL)
		json_decref(j);
}

static enum reply
firm_post_inbound(const struct smtpd_conf *conf, const struct envelope *env,
    const struct message *msg, const char *json, size_t len, char *text,
    size_t textlen)
{
	struct firm_response	 r;
	char			 key[33], why[FIRM_ERROR_MAX + 1];
	enum reply		 reply;

	firm_idempotency_key(env, msg, key, sizeof(key));
	if (firm_request(conf, "/inbound", json, len, key, FIRM_RESPONSE_MAX,
	    &r) == -1) {
		firm_response_free(&r);
		log_sanitize(why, sizeof(why), r.error, strlen(r.error));
		log_event(LOG_WARNING, "firm_error", env->session,
		    "{s:s, s:s, s:i, s:s}", "id", msg->id, "call",
		    "POST /inbound", "curl", r.curl_error, "error", why);
		return r.curl_error == CURLE_OPERATION_TIMEDOUT ?
		    REPLY_API_TIMEOUT : REPLY_API_DOWN;
	}
	if (r.status >= 200 && r.status < 300) {
		firm_response_free(&r);
		return REPLY_ACCEPTED;
	}
	if (r.status == 408 || r.status == 429 || r.status >= 500 ||
	    r.status < 200 || (r.status >= 300 && r.status < 400)) {
		snprintf(text, textlen, "(HTTP %ld)", r.status);
		reply = REPLY_API_TEMP;
	} else {
		firm_error_text(r.body ? r.body : "", r.len, why, sizeof(why));
		if (why[0] == '\0')
			snprintf(why, sizeof(why), "Rejected by FIRM "
			    "(HTTP %ld)", r.status);
		strlcpy(text, why, textlen);
		reply = REPLY_FIRMREJECT;
	}
	firm_response_free(&r);
	log_event(LOG_WARNING, "firm_refused", env->session,
	    "{s:s, s:s, s:i, s:s}", "id", msg->id, "call", "POST /inbound",
	    "status", (int)r.status, "error", text);
	return reply;
}
