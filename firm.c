/*
 * The FIRM API client, in smtpd-relay only (no worker maps libcurl):
 * the API's set-up while root (URL, CA bundle, signing key, the host's
 * addresses), signed requests, and what FIRM's answers say.  The relay
 * drives many requests at once with libcurl's multi interface; the
 * fetcher makes one at a time (firm_request).
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>
#include <tls.h>

#include "smtpd.h"
#include "relay.h"

static size_t	firm_write_cb(char *, size_t, size_t, void *);
static int	firm_header(struct curl_slist **, const char *,
		    const char *);
static const char *firm_resolve(struct smtpd_conf *);
static void	firm_addr_add(struct smtpd_conf *, int, const void *);
static void	firm_addr_literal(struct smtpd_conf *, const char *);
static curl_socket_t firm_opensocket_cb(void *, curlsocktype,
		    struct curl_sockaddr *);
static CURL		*firm_curl;	/* one per process: reused */
static unsigned char	*firm_key;	/* --api-secret, in guarded memory */
static size_t		 firm_keylen;

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
 * Set up one request to the FIRM API on the easy handle h: GET (body
 * NULL) or POST of JSON, signed when --api-secret is set, bounded by
 * timeout_ms.  Nothing from a message ever goes into a header: only our
 * own values do.  The answer's body is kept up to max octets in r (free
 * it with firm_response_free); *hdrs must be freed once the transfer is
 * done.  Returns 0, or -1 with r->curl_error and r->error.
 */
int
firm_prepare(const struct smtpd_conf *conf, CURL *h, const char *path,
    const char *body, size_t len, const char *idem_key, size_t max,
    long timeout_ms, struct firm_response *r, struct curl_slist **hdrs)
{
	char			 url[FIRM_URL_MAX], ts[32];
	char			 sig[FIRM_SIG_HEX + 1];
	size_t			 blen;
	int			 n;

	memset(r, 0, sizeof(*r));
	*hdrs = NULL;
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
	curl_easy_reset(h);
	(void)snprintf(ts, sizeof(ts), "%lld", (long long)time(NULL));
	if (firm_key != NULL)
		firm_sign(ts, body, body ? len : 0, sig);
	if (firm_header(hdrs, "Expect", NULL) == -1 ||
	    (body != NULL &&
	    firm_header(hdrs, "Content-Type", "application/json") == -1) ||
	    (idem_key != NULL &&
	    firm_header(hdrs, "Idempotency-Key", idem_key) == -1) ||
	    (firm_key != NULL &&
	    (firm_header(hdrs, "X-Firm-Timestamp", ts) == -1 ||
	    firm_header(hdrs, "X-Firm-Signature", sig) == -1))) {
		curl_slist_free_all(*hdrs);
		*hdrs = NULL;
		r->curl_error = CURLE_OUT_OF_MEMORY;
		strlcpy(r->error, "out of memory", sizeof(r->error));
		return -1;
	}
	sodium_memzero(sig, sizeof(sig));

	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "smtpd/" SMTPD_VERSION);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, *hdrs);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, firm_write_cb);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, r->error);
	/* HTTP/2 where the API offers it (ALPN), else HTTP/1.1 kept alive */
	curl_easy_setopt(h, CURLOPT_HTTP_VERSION,
	    (long)CURL_HTTP_VERSION_2TLS);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	/* connect only to the addresses resolved at start */
	curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, firm_opensocket_cb);
	curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, (void *)(uintptr_t)conf);
	/* nothing from files once sandboxed: see firm_setup_priv() */
	if (conf->api_resolve != NULL)
		curl_easy_setopt(h, CURLOPT_RESOLVE, conf->api_resolve);
	if (conf->ca_blob != NULL) {
		struct curl_blob blob;

		blob.data = conf->ca_blob;
		blob.len = conf->ca_bloblen;
		blob.flags = CURL_BLOB_NOCOPY;
		curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &blob);
		curl_easy_setopt(h, CURLOPT_CAPATH, NULL);
	}
	if (body != NULL) {
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
		    (curl_off_t)len);
	} else
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	return 0;
}

/*
 * A finished transfer: 0 with r->status set, or -1 with r->curl_error
 * and r->error.
 */
int
firm_finish(CURL *h, CURLcode rc, struct firm_response *r)
{
	if (rc != CURLE_OK) {
		r->curl_error = (int)rc;
		if (r->error[0] == '\0')
			strlcpy(r->error, curl_easy_strerror(rc),
			    sizeof(r->error));
		return -1;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
	return 0;
}

/* One blocking request (the fetcher's): see firm_prepare(). */
int
firm_request(const struct smtpd_conf *conf, const char *path,
    const char *body, size_t len, const char *idem_key, size_t max,
    struct firm_response *r)
{
	struct curl_slist	*hdrs;
	CURLcode		 rc;

	if (firm_curl == NULL && (firm_curl = curl_easy_init()) == NULL) {
		memset(r, 0, sizeof(*r));
		r->curl_error = CURLE_OUT_OF_MEMORY;
		strlcpy(r->error, "curl_easy_init", sizeof(r->error));
		return -1;
	}
	if (firm_prepare(conf, firm_curl, path, body, len, idem_key, max,
	    (long)conf->api_timeout * 1000, r, &hdrs) == -1)
		return -1;
	rc = curl_easy_perform(firm_curl);
	curl_slist_free_all(hdrs);
	return firm_finish(firm_curl, rc, r);
}

/* Note one address of the API host (at most API_ADDRS_MAX). */
static void
firm_addr_add(struct smtpd_conf *c, int af, const void *a)
{
	struct api_addr	*p;

	if (c->napi_addrs == API_ADDRS_MAX)
		return;
	p = &c->api_addrs[c->napi_addrs++];
	memset(p, 0, sizeof(*p));
	p->af = af;
	memcpy(p->a, a, af == AF_INET6 ? 16 : 4);
}

static void
firm_addr_literal(struct smtpd_conf *c, const char *s)
{
	uint8_t	 a[16];

	if (inet_pton(AF_INET, s, a) == 1)
		firm_addr_add(c, AF_INET, a);
	else if (inet_pton(AF_INET6, s, a) == 1)
		firm_addr_add(c, AF_INET6, a);
}

/*
 * Is this the API: one of the addresses resolved at start, and its
 * port?  With CURLOPT_RESOLVE every connection goes there anyway; this
 * is the last check before any socket is made.
 */
int
firm_opensocket_ok(const struct smtpd_conf *conf, const struct sockaddr *sa)
{
	const struct sockaddr_in	*sin = (const struct sockaddr_in *)sa;
	const struct sockaddr_in6	*sin6 = (const struct sockaddr_in6 *)sa;
	const void			*a;
	size_t				 i, len;
	int				 port;

	if (sa->sa_family == AF_INET) {
		port = ntohs(sin->sin_port);
		a = &sin->sin_addr;
		len = 4;
	} else if (sa->sa_family == AF_INET6) {
		port = ntohs(sin6->sin6_port);
		a = &sin6->sin6_addr;
		len = 16;
	} else
		return 0;
	if (port != conf->api_port)
		return 0;
	for (i = 0; i < conf->napi_addrs; i++)
		if (conf->api_addrs[i].af == sa->sa_family &&
		    memcmp(conf->api_addrs[i].a, a, len) == 0)
			return 1;
	return 0;
}

static curl_socket_t
firm_opensocket_cb(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
	const struct smtpd_conf	*conf = arg;

	if (purpose != CURLSOCKTYPE_IPCXN || a->socktype != SOCK_STREAM ||
	    !firm_opensocket_ok(conf, &a->addr)) {
		log_warnx("relay: refusing a connection to an address that is "
		    "not the API's");
		return CURL_SOCKET_BAD;
	}
	return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/*
 * The API's error for a 554: the "error" (or "message", "detail")
 * string of a JSON answer, else the first line of the body; printable
 * ASCII only, at most FIRM_ERROR_MAX characters.
 */
void
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

/*
 * The FIRM API: the URL must parse, and what libcurl would read from
 * files later is read now, while we may, so that no sandboxed process
 * needs the file system for it: the signing key, the CA bundle (for
 * https) and the host's addresses.
 */
void
firm_setup_priv(struct smtpd_conf *c)
{
	const char		*why, *ca;
	const curl_version_info_data *ver;
	char			*scheme = NULL, *port = NULL;
	const char		*errstr;
	CURLU			*u;

	if (c->api == NULL)
		return;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		errx(1, "libcurl initialisation failed");
	if ((u = curl_url()) == NULL)
		errx(1, "curl_url: out of memory");
	if (curl_url_set(u, CURLUPART_URL, c->api, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) !=
	    CURLUE_OK)
		flag_error("api", "'%s' is not a valid URL", c->api);
	c->api_port = (int)strtonum(port, 1, 65535, &errstr);
	if (errstr != NULL)
		flag_error("api", "port '%s' is %s", port, errstr);
	if (strcmp(scheme, "https") == 0) {
		ver = curl_version_info(CURLVERSION_NOW);
		ca = c->ca_file != NULL ? c->ca_file : ver->cainfo != NULL ?
		    ver->cainfo : "/etc/ssl/certs/ca-certificates.crt";
		if ((c->ca_blob = tls_load_file(ca, &c->ca_bloblen, NULL)) ==
		    NULL)
			flag_error("ca-file", "%s: %s", ca, strerror(errno));
	} else if (c->ca_file != NULL && access(c->ca_file, R_OK) == -1)
		flag_error("ca-file", "%s: %s", c->ca_file, strerror(errno));
	curl_free(scheme);
	curl_free(port);
	curl_url_cleanup(u);
	if (c->api_secret != NULL &&
	    (why = firm_key_load_priv(c->api_secret)) != NULL)
		flag_error("api-secret", "%s", why);
	if (!c->config_test && (why = firm_resolve(c)) != NULL)
		flag_error("api", "%s", why);
}

/*
 * Resolve the API host now (at start and on SIGHUP) and hand libcurl
 * the addresses, so no sandboxed process reads resolv.conf or loads NSS
 * modules.  Returns NULL, or the reason it failed.
 */
static const char *
firm_resolve(struct smtpd_conf *c)
{
	static char		 why[512];
	struct addrinfo		 hints, *res, *ai;
	struct curl_slist	*list;
	char			*host = NULL, entry[1024], addr[INET6_ADDRSTRLEN];
	size_t			 n;
	CURLU			*u;
	int			 e;

	if ((u = curl_url()) == NULL)
		return "curl_url: out of memory";
	if (curl_url_set(u, CURLUPART_URL, c->api, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
		curl_url_cleanup(u);
		return "the URL names no host";
	}
	curl_url_cleanup(u);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST;
	n = strlen(host);
	c->napi_addrs = 0;
	if (strcasecmp(host, "localhost") == 0 || (n > 10 &&
	    strcasecmp(host + n - 10, ".localhost") == 0)) {
		/* libcurl maps these to loopback itself (RFC 6761) */
		firm_addr_literal(c, "127.0.0.1");
		firm_addr_literal(c, "::1");
		curl_free(host);
		return NULL;
	}
	if (host[0] == '[' && n > 2) {
		host[n - 1] = '\0';
		firm_addr_literal(c, host + 1);
		curl_free(host);
		return NULL;	/* an address: nothing to resolve */
	}
	if (getaddrinfo(host, NULL, &hints, &res) == 0) {
		freeaddrinfo(res);
		firm_addr_literal(c, host);
		curl_free(host);
		return NULL;
	}
	hints.ai_flags = 0;
	if ((e = getaddrinfo(host, NULL, &hints, &res)) != 0) {
		snprintf(why, sizeof(why), "cannot resolve %s: %s", host,
		    gai_strerror(e));
		curl_free(host);
		return why;
	}
	n = (size_t)snprintf(entry, sizeof(entry), "%s:%d:", host,
	    c->api_port);
	for (ai = res; ai != NULL && n < sizeof(entry); ai = ai->ai_next) {
		void *a = ai->ai_family == AF_INET6 ?
		    (void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr :
		    (void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr;

		if (inet_ntop(ai->ai_family, a, addr, sizeof(addr)) == NULL)
			continue;
		firm_addr_add(c, ai->ai_family, a);
		n += (size_t)snprintf(entry + n, sizeof(entry) - n,
		    ai->ai_family == AF_INET6 ? "%s[%s]" : "%s%s",
		    entry[n - 1] == ':' ? "" : ",", addr);
	}
	freeaddrinfo(res);
	curl_free(host);
	if (n >= sizeof(entry))
		return "too many addresses";
	if ((list = curl_slist_append(NULL, entry)) == NULL)
		return "out of memory";
	curl_slist_free_all(c->api_resolve);
	c->api_resolve = list;
	return NULL;
}
