/*
 * TLS with libtls: the server context (certificate and key read by the
 * master while it is root, handed to libtls from memory, the key bytes
 * wiped), the timed handshake of a session, and the certificate checks
 * of -C and -n.  libtls cannot describe a local certificate, so the
 * checks read it with libcrypto.
 */

#include <sys/types.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <tls.h>

#include "smtpd.h"

static int	tls_cert_names(X509 *, char *, size_t);
static int	tls_keypair_match(const struct smtpd_conf *, const uint8_t *,
		    size_t, const uint8_t *, size_t, char *, size_t);

/*
 * A server context for --tls-cert and --tls-key: TLS 1.2 and 1.3,
 * libtls's secure ciphers.  The files are read here, once; the key's
 * bytes are wiped from our memory and from the configuration as soon
 * as libtls holds them.  Returns NULL with the reason in err.
 */
struct tls *
tls_server_setup_priv(const struct smtpd_conf *conf, char *err,
    size_t errlen)
{
	struct tls_config	*cfg;
	struct tls		*ctx = NULL;
	uint8_t			*cert = NULL, *key = NULL;
	size_t			 certlen = 0, keylen = 0;

	if (tls_init() == -1) {
		snprintf(err, errlen, "tls_init failed");
		return NULL;
	}
	if ((cert = tls_load_file(conf->tls_cert, &certlen, NULL)) == NULL) {
		snprintf(err, errlen, "--tls-cert %s: %s", conf->tls_cert,
		    strerror(errno));
		return NULL;
	}
	if ((key = tls_load_file(conf->tls_key, &keylen, NULL)) == NULL) {
		snprintf(err, errlen, "--tls-key %s: %s", conf->tls_key,
		    strerror(errno));
		tls_unload_file(cert, certlen);
		return NULL;
	}
	if (tls_keypair_match(conf, cert, certlen, key, keylen, err,
	    errlen) == -1) {
		cfg = NULL;
		goto done;
	}
	if ((cfg = tls_config_new()) == NULL) {
		snprintf(err, errlen, "tls_config_new failed");
		goto done;
	}
	if (tls_config_set_protocols(cfg, TLS_PROTOCOL_TLSv1_2 |
	    TLS_PROTOCOL_TLSv1_3) == -1 ||
	    tls_config_set_ciphers(cfg, "secure") == -1) {
		snprintf(err, errlen, "TLS configuration: %s",
		    tls_config_error(cfg));
		goto done;
	}
	if (tls_config_set_keypair_mem(cfg, cert, certlen, key, keylen) ==
	    -1) {
		snprintf(err, errlen, "--tls-cert %s, --tls-key %s: %s",
		    conf->tls_cert, conf->tls_key, tls_config_error(cfg));
		goto done;
	}
	if ((ctx = tls_server()) == NULL) {
		snprintf(err, errlen, "tls_server failed");
		goto done;
	}
	if (tls_configure(ctx, cfg) == -1) {
		snprintf(err, errlen, "--tls-cert %s, --tls-key %s: %s",
		    conf->tls_cert, conf->tls_key, tls_error(ctx));
		tls_free(ctx);
		ctx = NULL;
	}
 done:
	if (cfg != NULL) {
		tls_config_clear_keys(cfg);
		tls_config_free(cfg);
	}
	tls_unload_file(key, keylen);	/* wipes */
	tls_unload_file(cert, certlen);
	return ctx;
}

/*
 * Does the key belong to the certificate?  libtls only says it could
 * not load the pair, which hides the usual mistake: a renewed
 * certificate beside the old key.  Returns 0, or -1 with err set.
 */
static int
tls_keypair_match(const struct smtpd_conf *conf, const uint8_t *cert,
    size_t certlen, const uint8_t *key, size_t keylen, char *err,
    size_t errlen)
{
	BIO		*bio;
	X509		*x = NULL;
	EVP_PKEY	*pk = NULL;
	int		 r = -1;

	if ((bio = BIO_new_mem_buf(cert, (int)certlen)) != NULL) {
		x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
		BIO_free(bio);
	}
	if ((bio = BIO_new_mem_buf(key, (int)keylen)) != NULL) {
		pk = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
		BIO_free(bio);
	}
	if (x == NULL)
		snprintf(err, errlen, "--tls-cert %s: not a PEM certificate",
		    conf->tls_cert);
	else if (pk == NULL)
		snprintf(err, errlen, "--tls-key %s: not a PEM private key",
		    conf->tls_key);
	else if (X509_check_private_key(x, pk) != 1)
		snprintf(err, errlen, "--tls-key %s does not match the "
		    "--tls-cert %s certificate", conf->tls_key,
		    conf->tls_cert);
	else
		r = 0;
	X509_free(x);
	EVP_PKEY_free(pk);	/* frees, and clears, the key */
	return r;
}

/*
 * Complete the handshake of cctx on fd within timeout seconds.  A
 * SIGTERM only ends the wait when stop is set.  Returns 0, or -1 with
 * the reason in err.
 */
int
tls_handshake_timed(struct tls *cctx, int fd, long long timeout,
    const sigset_t *waitmask, char *err, size_t errlen)
{
	struct pollfd	 pfd;
	struct timespec	 deadline, now, ts;
	int		 r;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += timeout;
	pfd.fd = fd;
	for (;;) {
		r = tls_handshake(cctx);
		if (r == 0)
			return 0;
		if (r != TLS_WANT_POLLIN && r != TLS_WANT_POLLOUT) {
			snprintf(err, errlen, "%s", tls_error(cctx) ?
			    tls_error(cctx) : "handshake failed");
			return -1;
		}
		pfd.events = r == TLS_WANT_POLLIN ? POLLIN : POLLOUT;
		clock_gettime(CLOCK_MONOTONIC, &now);
		ts.tv_sec = deadline.tv_sec - now.tv_sec;
		ts.tv_nsec = deadline.tv_nsec - now.tv_nsec;
		if (ts.tv_nsec < 0) {
			ts.tv_sec--;
			ts.tv_nsec += 1000000000L;
		}
		if (ts.tv_sec < 0) {
			snprintf(err, errlen, "handshake timed out");
			return -1;
		}
		r = ppoll(&pfd, 1, &ts, waitmask);
		if (r == 0) {
			snprintf(err, errlen, "handshake timed out");
			return -1;
		}
		if (r == -1 && errno != EINTR) {
			snprintf(err, errlen, "poll: %s", strerror(errno));
			return -1;
		}
		if (r == -1 && smtpd_stop) {
			snprintf(err, errlen, "shutting down");
			return -1;
		}
	}
}

/* The DNS names and addresses of the subjectAltName, comma-separated. */
static int
tls_cert_names(X509 *x, char *buf, size_t len)
{
	GENERAL_NAMES	*names;
	int		 i, n;

	buf[0] = '\0';
	names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	if (names == NULL)
		return 0;
	n = sk_GENERAL_NAME_num(names);
	for (i = 0; i < n; i++) {
		const GENERAL_NAME	*g = sk_GENERAL_NAME_value(names, i);
		const unsigned char	*d;
		char			 one[256];
		int			 dl;

		if (g->type != GEN_DNS)
			continue;
		d = ASN1_STRING_get0_data(g->d.dNSName);
		dl = ASN1_STRING_length(g->d.dNSName);
		log_sanitize(one, sizeof(one), (const char *)d,
		    dl < 0 ? 0 : (size_t)dl);
		if (buf[0] != '\0')
			strlcat(buf, ", ", len);
		strlcat(buf, one, len);
	}
	GENERAL_NAMES_free(names);
	return 0;
}

/*
 * -C and -n: the certificate must be readable, match the key and not
 * have expired; within TLS_EXPIRY_WARN_DAYS of expiry it is a warning.
 * With print, describe it on stdout.  Returns 0 when usable, else 1
 * with the reason on stderr.
 */
int
tls_check_cert(const struct smtpd_conf *conf, int print)
{
	struct tls	*ctx;
	BIO		*bio;
	X509		*x;
	struct tm	 tm;
	time_t		 notafter, now = time(NULL);
	char		 err[1024], subject[512], names[1024], when[64];
	uint8_t		*cert;
	size_t		 certlen;

	if ((cert = tls_load_file(conf->tls_cert, &certlen, NULL)) == NULL) {
		fprintf(stderr, "smtpd: --tls-cert %s: %s\n", conf->tls_cert,
		    strerror(errno));
		return 1;
	}
	bio = BIO_new_mem_buf(cert, (int)certlen);
	x = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	tls_unload_file(cert, certlen);
	if (x == NULL) {
		fprintf(stderr, "smtpd: --tls-cert %s: not a PEM "
		    "certificate\n", conf->tls_cert);
		return 1;
	}
	X509_NAME_oneline(X509_get_subject_name(x), subject, sizeof(subject));
	tls_cert_names(x, names, sizeof(names));
	memset(&tm, 0, sizeof(tm));
	if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) != 1) {
		X509_free(x);
		fprintf(stderr, "smtpd: --tls-cert %s: unreadable expiry "
		    "date\n", conf->tls_cert);
		return 1;
	}
	X509_free(x);
	notafter = timegm(&tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (print) {
		printf("subject: %s\n", subject);
		printf("names: %s\n", names[0] ? names : "(none)");
		printf("expires: %s\n", when);
	}
	if ((ctx = tls_server_setup_priv(conf, err, sizeof(err))) == NULL) {
		fprintf(stderr, "smtpd: %s\n", err);
		return 1;
	}
	tls_free(ctx);
	if (notafter <= now) {
		fprintf(stderr, "smtpd: --tls-cert %s: expired on %s\n",
		    conf->tls_cert, when);
		return 1;
	}
	if (notafter - now < TLS_EXPIRY_WARN_DAYS * 86400)
		fprintf(stderr, "smtpd: warning: --tls-cert %s expires on %s, "
		    "in less than %d days\n", conf->tls_cert, when,
		    TLS_EXPIRY_WARN_DAYS);
	return 0;
}
