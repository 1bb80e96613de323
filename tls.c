/*
 * TLS with libtls: the server context, the timed handshake of a
 * session, and the certificate checks of -C and -n.  libtls cannot
 * describe a local certificate, so the checks read it with libcrypto.
 *
 * The private key stays with its holder, the master.  Workers, which
 * parse hostile bytes, get a context made from the certificate alone
 * (libretls's fake private key: the certificate's public key) whose
 * private-key operations go to the holder through a callback.  OpenSSL 3
 * decodes keys into provider keys that no RSA_METHOD can reach, so while
 * libtls parses the certificate an ENGINE of ours is the default for
 * RSA, EC and their EVP_PKEY methods: the certificate's key is then a
 * legacy key, carrying our RSA_METHOD or EC_KEY_METHOD, which forward
 * the one operation to the holder.  The holder signs only what a TLS
 * handshake needs: a PKCS #1 v1.5 block, an EMSA-PSS encoded block, or
 * an ECDSA digest.
 *
 * A worker is a fork of the master, so what the master's heap ever held
 * a worker holds too.  libcrypto's memory therefore comes from
 * allocation functions that wipe it when it is freed, and a worker
 * frees the holder's key (server_tls_key_forget) before it reads a byte.
 */

/* RSA_METHOD, EC_KEY_METHOD and ENGINE are deprecated, not gone. */
#define OPENSSL_SUPPRESS_DEPRECATED

#include <sys/types.h>

#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/engine.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <tls.h>

#include <jansson.h>

#include "smtpd.h"

/* In libretls 3.7, but not in its tls.h. */
void		tls_config_use_fake_private_key(struct tls_config *);
void		tls_config_skip_private_key_check(struct tls_config *);

static void	*server_tls_malloc(size_t, const char *, int);
static void	*server_tls_realloc(void *, size_t, const char *, int);
static void	 server_tls_free(void *, const char *, int);
static struct tls_config *server_tls_config(char *, size_t);
static EVP_PKEY	*server_tls_keypair_read(const struct smtpd_conf *,
		    const uint8_t *, size_t, const uint8_t *, size_t, char *,
		    size_t);
static int	 server_tls_cert_check(const struct smtpd_conf *,
		    const uint8_t *, size_t, char *, size_t);
static int	 server_tls_pss_wellformed(const uint8_t *, size_t, int);
static int	 server_tls_forward(struct tls_sign_req *,
		    struct tls_sign_res *);
static int	 server_tls_rsa_priv_enc(int, const unsigned char *,
		    unsigned char *, RSA *, int);
static int	 server_tls_ec_sign(int, const unsigned char *, int,
		    unsigned char *, unsigned int *, const BIGNUM *,
		    const BIGNUM *, EC_KEY *);
static ECDSA_SIG *server_tls_ec_sign_sig(const unsigned char *, int,
		    const BIGNUM *, const BIGNUM *, EC_KEY *);
static int	 server_tls_pkey_meths(ENGINE *, EVP_PKEY_METHOD **,
		    const int **, int);
static EVP_PKEY_METHOD *server_tls_pmeth_copy(int);
static int	tls_cert_names(X509 *, char *, size_t);
static int	server_tls_no_passphrase(char *, int, int, void *);
static int	tls_keypair_match(const struct smtpd_conf *, const uint8_t *,
		    size_t, const uint8_t *, size_t, char *, size_t);

/* made by server_tls_init */
static ENGINE		*server_tls_engine;
static RSA_METHOD	*server_tls_rsa_method;
static EC_KEY_METHOD	*server_tls_ec_method;
static EVP_PKEY_METHOD	*server_tls_rsa_pmeth;
static EVP_PKEY_METHOD	*server_tls_ec_pmeth;
/* the holder's key, or NULL; a worker's way to the holder */
static EVP_PKEY		*server_tls_key;
static EVP_PKEY		*server_tls_key_prev;	/* before the last SIGHUP */
static server_tls_signer server_tls_signer_fn;
static void		*server_tls_signer_arg;

/*
 * Once, first thing in main(), before anything uses libcrypto (libtls,
 * libcurl): libcrypto's memory is wiped when freed, and the engine that
 * server_tls_setup_keyless needs is made.  Returns 0, or -1 with the
 * reason in err.
 */
int
server_tls_init(char *err, size_t errlen)
{
	ENGINE	*e;
	int	 (*setup)(EC_KEY *, BN_CTX *, BIGNUM **, BIGNUM **) = NULL;

	if (server_tls_engine != NULL)
		return 0;
	if (CRYPTO_set_mem_functions(server_tls_malloc, server_tls_realloc,
	    server_tls_free) != 1) {
		snprintf(err, errlen, "server_tls_init: libcrypto was used "
		    "before it");
		return -1;
	}
	if (tls_init() == -1) {
		snprintf(err, errlen, "tls_init failed");
		return -1;
	}
	if ((server_tls_rsa_method = RSA_meth_dup(RSA_PKCS1_OpenSSL())) ==
	    NULL ||
	    RSA_meth_set1_name(server_tls_rsa_method, "smtpd key holder") !=
	    1 ||
	    RSA_meth_set_priv_enc(server_tls_rsa_method,
	    server_tls_rsa_priv_enc) != 1)
		goto fail;
	if ((server_tls_ec_method = EC_KEY_METHOD_new(EC_KEY_OpenSSL())) ==
	    NULL)
		goto fail;
	EC_KEY_METHOD_get_sign(EC_KEY_OpenSSL(), NULL, &setup, NULL);
	EC_KEY_METHOD_set_sign(server_tls_ec_method, server_tls_ec_sign,
	    setup, server_tls_ec_sign_sig);
	if ((server_tls_rsa_pmeth = server_tls_pmeth_copy(EVP_PKEY_RSA)) ==
	    NULL ||
	    (server_tls_ec_pmeth = server_tls_pmeth_copy(EVP_PKEY_EC)) == NULL)
		goto fail;
	if ((e = ENGINE_new()) == NULL)
		goto fail;
	if (ENGINE_set_id(e, "smtpd-keyless") != 1 ||
	    ENGINE_set_name(e, "smtpd: private keys with the master") != 1 ||
	    ENGINE_set_RSA(e, server_tls_rsa_method) != 1 ||
	    ENGINE_set_EC(e, server_tls_ec_method) != 1 ||
	    ENGINE_set_pkey_meths(e, server_tls_pkey_meths) != 1) {
		ENGINE_free(e);
		goto fail;
	}
	server_tls_engine = e;
	return 0;
 fail:
	snprintf(err, errlen, "server_tls_init: cannot make the key "
	    "holder's methods");
	return -1;
}

/* A copy of libcrypto's own EVP_PKEY method for id: ours to hand out. */
static EVP_PKEY_METHOD *
server_tls_pmeth_copy(int id)
{
	const EVP_PKEY_METHOD	*std;
	EVP_PKEY_METHOD		*m;
	int			 flags;

	if ((std = EVP_PKEY_meth_find(id)) == NULL)
		return NULL;
	EVP_PKEY_meth_get0_info(NULL, &flags, std);
	if ((m = EVP_PKEY_meth_new(id, flags)) == NULL)
		return NULL;
	EVP_PKEY_meth_copy(m, std);
	return m;
}

/*
 * libcrypto's allocator: malloc's blocks, wiped to their usable size
 * when freed or moved, so plain free() of a libcrypto block (or
 * OPENSSL_free of a malloc one) stays correct.  As CRYPTO_malloc, 0
 * bytes is NULL.
 */
static void *
server_tls_malloc(size_t n, const char *file, int line)
{
	(void)file;
	(void)line;
	return n == 0 ? NULL : malloc(n);
}

static void
server_tls_free(void *p, const char *file, int line)
{
	(void)file;
	(void)line;
	if (p == NULL)
		return;
	explicit_bzero(p, malloc_usable_size(p));
	free(p);
}

static void *
server_tls_realloc(void *p, size_t n, const char *file, int line)
{
	void	*q;
	size_t	 old;

	if (p == NULL)
		return server_tls_malloc(n, file, line);
	if (n == 0) {
		server_tls_free(p, file, line);
		return NULL;
	}
	if (n <= (old = malloc_usable_size(p)))
		return p;
	if ((q = malloc(n)) == NULL)
		return NULL;
	memcpy(q, p, old);
	server_tls_free(p, file, line);
	return q;
}

/* TLS 1.2 and 1.3, libtls's secure ciphers; NULL with err set. */
static struct tls_config *
server_tls_config(char *err, size_t errlen)
{
	struct tls_config	*cfg;

	if ((cfg = tls_config_new()) == NULL) {
		snprintf(err, errlen, "tls_config_new failed");
		return NULL;
	}
	if (tls_config_set_protocols(cfg, TLS_PROTOCOL_TLSv1_2 |
	    TLS_PROTOCOL_TLSv1_3) == -1 ||
	    tls_config_set_ciphers(cfg, "secure") == -1) {
		snprintf(err, errlen, "TLS configuration: %s",
		    tls_config_error(cfg));
		tls_config_free(cfg);
		return NULL;
	}
	return cfg;
}

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
	if ((cfg = server_tls_config(err, errlen)) == NULL)
		goto done;
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
	EVP_PKEY	*pk;

	pk = server_tls_keypair_read(conf, cert, certlen, key, keylen, err,
	    errlen);
	if (pk == NULL)
		return -1;
	EVP_PKEY_free(pk);	/* frees, and clears, the key */
	return 0;
}

/* The key of a matching pair, or NULL with err set. */
static EVP_PKEY *
server_tls_keypair_read(const struct smtpd_conf *conf, const uint8_t *cert,
    size_t certlen, const uint8_t *key, size_t keylen, char *err,
    size_t errlen)
{
	BIO		*bio;
	X509		*x = NULL;
	EVP_PKEY	*pk = NULL;
	int		 asked = 0;

	if ((bio = BIO_new_mem_buf(cert, (int)certlen)) != NULL) {
		x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
		BIO_free(bio);
	}
	if ((bio = BIO_new_mem_buf(key, (int)keylen)) != NULL) {
		pk = PEM_read_bio_PrivateKey(bio, NULL,
		    server_tls_no_passphrase, &asked);
		BIO_free(bio);
	}
	if (x == NULL)
		snprintf(err, errlen, "--tls-cert %s: not a PEM certificate",
		    conf->tls_cert);
	else if (pk == NULL && asked)
		snprintf(err, errlen, "--tls-key %s is protected by a "
		    "passphrase: give it a key without one", conf->tls_key);
	else if (pk == NULL)
		snprintf(err, errlen, "--tls-key %s: not a PEM private key",
		    conf->tls_key);
	else if (X509_check_private_key(x, pk) != 1)
		snprintf(err, errlen, "--tls-key %s does not match the "
		    "--tls-cert %s certificate", conf->tls_key,
		    conf->tls_cert);
	else {
		X509_free(x);
		return pk;
	}
	X509_free(x);
	EVP_PKEY_free(pk);
	return NULL;
}

/*
 * libcrypto's passphrase callback: an encrypted key is refused, never
 * prompted for on a terminal.  *arg records that one was asked for.
 */
static int
server_tls_no_passphrase(char *buf, int size, int rwflag, void *arg)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	*(int *)arg = 1;
	return -1;
}

/*
 * The key holder (the master, root): read --tls-key, check that it
 * belongs to --tls-cert and keep it for server_tls_sign_priv.  Again on
 * SIGHUP: the new key replaces the old one, which stays for the workers
 * born before (their context has the old certificate) until the next
 * reload frees and clears it; a bad pair keeps the old key.  Returns 0,
 * or -1 with err set.
 */
int
server_tls_key_load_priv(const struct smtpd_conf *conf, char *err,
    size_t errlen)
{
	EVP_PKEY	*pk;
	uint8_t		*cert, *key;
	size_t		 certlen, keylen;
	int		 type;

	if ((cert = tls_load_file(conf->tls_cert, &certlen, NULL)) == NULL) {
		snprintf(err, errlen, "--tls-cert %s: %s", conf->tls_cert,
		    strerror(errno));
		return -1;
	}
	if ((key = tls_load_file(conf->tls_key, &keylen, NULL)) == NULL) {
		snprintf(err, errlen, "--tls-key %s: %s", conf->tls_key,
		    strerror(errno));
		tls_unload_file(cert, certlen);
		return -1;
	}
	pk = server_tls_keypair_read(conf, cert, certlen, key, keylen, err,
	    errlen);
	tls_unload_file(key, keylen);	/* wipes */
	tls_unload_file(cert, certlen);
	if (pk == NULL)
		return -1;
	type = EVP_PKEY_get_base_id(pk);
	if ((type != EVP_PKEY_RSA && type != EVP_PKEY_EC) ||
	    EVP_PKEY_get_size(pk) <= 0 ||
	    EVP_PKEY_get_size(pk) > TLS_SIGN_MAX) {
		snprintf(err, errlen, "--tls-key %s: not an RSA or EC key "
		    "of at most %d bytes", conf->tls_key, TLS_SIGN_MAX);
		EVP_PKEY_free(pk);
		return -1;
	}
	EVP_PKEY_free(server_tls_key_prev);
	server_tls_key_prev = server_tls_key;
	server_tls_key = pk;
	return 0;
}

/*
 * The key holder answers one request of a worker, which may lie about
 * everything.  It signs what a handshake signs and nothing else: a
 * digest with ECDSA; with RSA, a PKCS #1 v1.5 type 1 block or, without
 * padding, a block that is an EMSA-PSS encoding (so the raw operation
 * decrypts nothing).  previous: with the key before the last reload (a
 * worker born before it).  res->status is 0 with the result in
 * res->out, or -1.
 */
void
server_tls_sign_priv(const struct tls_sign_req *req, struct tls_sign_res *res,
    int previous)
{
	EVP_PKEY	*key = previous && server_tls_key_prev != NULL ?
		    server_tls_key_prev : server_tls_key;
	EVP_PKEY_CTX	*pctx = NULL;
	size_t		 outlen = sizeof(res->out);
	int		 type, size, ok = 0;

	memset(res, 0, sizeof(*res));
	res->status = -1;
	if (key == NULL || req->len == 0 ||
	    req->len > sizeof(req->in))
		return;
	type = EVP_PKEY_get_base_id(key);
	size = EVP_PKEY_get_size(key);
	switch (req->op) {
	case TLS_OP_RSA_PRIV_ENC:
		if (type != EVP_PKEY_RSA)
			return;
		if (size <= RSA_PKCS1_PADDING_SIZE)
			return;
		if (req->padding == RSA_PKCS1_PADDING) {
			if (req->len > (uint32_t)size - RSA_PKCS1_PADDING_SIZE)
				return;
		} else if (req->padding == RSA_NO_PADDING) {
			if (req->len != (uint32_t)size ||
			    server_tls_pss_wellformed(req->in, req->len,
			    EVP_PKEY_get_bits(key)) == -1)
				return;
		} else
			return;
		break;
	case TLS_OP_ECDSA_SIGN:
		if (type != EVP_PKEY_EC || req->padding != 0 ||
		    req->len > EVP_MAX_MD_SIZE)
			return;
		break;
	default:
		return;
	}
	if ((pctx = EVP_PKEY_CTX_new_from_pkey(NULL, key,
	    NULL)) == NULL || EVP_PKEY_sign_init(pctx) != 1)
		goto done;
	if (req->op == TLS_OP_RSA_PRIV_ENC &&
	    EVP_PKEY_CTX_set_rsa_padding(pctx, (int)req->padding) != 1)
		goto done;
	if (EVP_PKEY_sign(pctx, res->out, &outlen, req->in, req->len) == 1 &&
	    outlen <= sizeof(res->out))
		ok = 1;
 done:
	EVP_PKEY_CTX_free(pctx);
	if (ok) {
		res->status = 0;
		res->len = (uint32_t)outlen;
	} else
		explicit_bzero(res->out, sizeof(res->out));
}

/*
 * Is em, the k bytes of an n of modbits bits, an EMSA-PSS encoding
 * (RFC 8017 9.1.1) with SHA-256, -384 or -512 and a salt as long as the
 * hash, as TLS 1.3 and 1.2 make them?  Checks the structure only; the
 * message's hash is not known here.  Returns 0 or -1.
 */
static int
server_tls_pss_wellformed(const uint8_t *em, size_t k, int modbits)
{
	const EVP_MD	*md[3];
	uint8_t		 db[TLS_SIGN_MAX];
	size_t		 emlen = k, dblen, hlen, i, zeros;
	int		 msbits = (modbits - 1) & 7, m, r = -1;

	if (modbits <= 0 || k == 0 || k > sizeof(db))
		return -1;
	if (msbits == 0) {
		if (em[0] != 0)
			return -1;
		em++;
		emlen--;
	}
	if (emlen == 0 || em[emlen - 1] != 0xbc ||
	    (msbits != 0 && (em[0] & (0xff << msbits)) != 0))
		return -1;
	md[0] = EVP_sha256();
	md[1] = EVP_sha384();
	md[2] = EVP_sha512();
	for (m = 0; m < 3 && r == -1; m++) {
		hlen = (size_t)EVP_MD_get_size(md[m]);
		if (emlen < 2 * hlen + 2)
			continue;
		dblen = emlen - hlen - 1;
		if (PKCS1_MGF1(db, (long)dblen, em + dblen, (long)hlen,
		    md[m]) != 0)
			continue;
		for (i = 0; i < dblen; i++)
			db[i] ^= em[i];
		if (msbits != 0)
			db[0] &= 0xff >> (8 - msbits);
		zeros = dblen - hlen - 1;
		for (i = 0; i < zeros && db[i] == 0; i++)
			;
		if (i == zeros && db[zeros] == 0x01)
			r = 0;
	}
	explicit_bzero(db, sizeof(db));
	return r;
}

/*
 * The master: a server context from --tls-cert alone.  Its "private
 * key" is the certificate's public key, made while our engine is the
 * default so that it carries our methods; a worker's handshake then
 * asks the holder through server_tls_set_signer's callback.  Needs
 * server_tls_init.  Returns NULL with the reason in err.
 */
struct tls *
server_tls_setup_keyless(const struct smtpd_conf *conf, char *err,
    size_t errlen)
{
	struct tls_config	*cfg = NULL;
	struct tls		*ctx = NULL;
	uint8_t			*cert;
	size_t			 certlen;

	if (server_tls_engine == NULL) {
		snprintf(err, errlen, "server_tls_init was not called");
		return NULL;
	}
	if ((cert = tls_load_file(conf->tls_cert, &certlen, NULL)) == NULL) {
		snprintf(err, errlen, "--tls-cert %s: %s", conf->tls_cert,
		    strerror(errno));
		return NULL;
	}
	if (ENGINE_set_default(server_tls_engine, ENGINE_METHOD_RSA |
	    ENGINE_METHOD_EC | ENGINE_METHOD_PKEY_METHS) != 1) {
		snprintf(err, errlen, "cannot make the key holder's engine "
		    "the default");
		goto done;
	}
	if (server_tls_cert_check(conf, cert, certlen, err, errlen) == -1)
		goto done;
	if ((cfg = server_tls_config(err, errlen)) == NULL)
		goto done;
	if (tls_config_set_cert_mem(cfg, cert, certlen) == -1) {
		snprintf(err, errlen, "--tls-cert %s: %s", conf->tls_cert,
		    tls_config_error(cfg));
		goto done;
	}
	tls_config_use_fake_private_key(cfg);
	tls_config_skip_private_key_check(cfg);
	if ((ctx = tls_server()) == NULL) {
		snprintf(err, errlen, "tls_server failed");
		goto done;
	}
	if (tls_configure(ctx, cfg) == -1) {
		snprintf(err, errlen, "--tls-cert %s: %s", conf->tls_cert,
		    tls_error(ctx));
		tls_free(ctx);
		ctx = NULL;
	}
 done:
	/* keys made from now on are libcrypto's own again */
	ENGINE_unregister_RSA(server_tls_engine);
	ENGINE_unregister_EC(server_tls_engine);
	ENGINE_unregister_pkey_meths(server_tls_engine);
	tls_config_free(cfg);
	tls_unload_file(cert, certlen);
	return ctx;
}

/*
 * With our engine the default: is the certificate's key RSA or EC, and
 * does libcrypto make it a legacy key with our method, as it will in
 * libtls?  Otherwise the context would hold a key nobody can sign for.
 * Returns 0, or -1 with err set.
 */
static int
server_tls_cert_check(const struct smtpd_conf *conf, const uint8_t *cert,
    size_t certlen, char *err, size_t errlen)
{
	BIO		*bio;
	X509		*x = NULL;
	EVP_PKEY	*pk = NULL;
	const RSA	*rsa;
	const EC_KEY	*ec;
	int		 ours = 0;

	if ((bio = BIO_new_mem_buf(cert, (int)certlen)) != NULL) {
		x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
		BIO_free(bio);
	}
	if (x != NULL)
		pk = X509_get0_pubkey(x);
	if (pk == NULL) {
		snprintf(err, errlen, "--tls-cert %s: not a PEM certificate",
		    conf->tls_cert);
		X509_free(x);
		return -1;
	}
	switch (EVP_PKEY_get_base_id(pk)) {
	case EVP_PKEY_RSA:
		rsa = EVP_PKEY_get0_RSA(pk);
		ours = rsa != NULL &&
		    RSA_get_method(rsa) == server_tls_rsa_method;
		break;
	case EVP_PKEY_EC:
		ec = EVP_PKEY_get0_EC_KEY(pk);
		ours = ec != NULL &&
		    EC_KEY_get_method(ec) == server_tls_ec_method;
		break;
	default:
		snprintf(err, errlen, "--tls-cert %s: not an RSA or EC key",
		    conf->tls_cert);
		X509_free(x);
		return -1;
	}
	/* a provider key's RSA or EC_KEY is a copy, signing ignores it */
	ours = ours && EVP_PKEY_get0_provider(pk) == NULL;
	X509_free(x);
	if (!ours) {
		snprintf(err, errlen, "--tls-cert %s: libcrypto does not let "
		    "the key holder sign for its key", conf->tls_cert);
		return -1;
	}
	return 0;
}

/*
 * A worker, once, after fork and before any handshake: private-key
 * operations go to fn from now on, and the key it inherited from the
 * holder is freed and cleared.
 */
void
server_tls_set_signer(server_tls_signer fn, void *arg)
{
	server_tls_signer_fn = fn;
	server_tls_signer_arg = arg;
	server_tls_key_forget();
}

/*
 * A fork of the holder that must hold no key (a worker, first thing):
 * the holder's keys, this and the one before the last reload, are
 * freed, which wipes them (server_tls_free).
 */
void
server_tls_key_forget(void)
{
	EVP_PKEY_free(server_tls_key);
	EVP_PKEY_free(server_tls_key_prev);
	server_tls_key = server_tls_key_prev = NULL;
}

/* One round trip to the holder: 0 with res set, or -1. */
static int
server_tls_forward(struct tls_sign_req *req, struct tls_sign_res *res)
{
	memset(res, 0, sizeof(*res));
	if (server_tls_signer_fn == NULL ||
	    server_tls_signer_fn(server_tls_signer_arg, req, res) != 0 ||
	    res->status != 0 || res->len == 0 || res->len > sizeof(res->out))
		return -1;
	return 0;
}

/* RSA_METHOD priv_enc: the size of the result in to, or -1. */
static int
server_tls_rsa_priv_enc(int flen, const unsigned char *from,
    unsigned char *to, RSA *rsa, int padding)
{
	struct tls_sign_req	 req;
	struct tls_sign_res	 res;
	int			 size = RSA_size(rsa);

	if (flen <= 0 || (size_t)flen > sizeof(req.in) || size <= 0 ||
	    padding < 0)
		return -1;
	memset(&req, 0, sizeof(req));
	req.op = TLS_OP_RSA_PRIV_ENC;
	req.padding = (uint32_t)padding;
	req.len = (uint32_t)flen;
	memcpy(req.in, from, (size_t)flen);
	if (server_tls_forward(&req, &res) == -1 ||
	    res.len != (uint32_t)size)
		return -1;
	memcpy(to, res.out, res.len);
	return size;
}

/* EC_KEY_METHOD sign: a DER signature in sig; 1, or 0. */
static int
server_tls_ec_sign(int type, const unsigned char *dgst, int dlen,
    unsigned char *sig, unsigned int *siglen, const BIGNUM *kinv,
    const BIGNUM *r, EC_KEY *eckey)
{
	struct tls_sign_req	 req;
	struct tls_sign_res	 res;
	int			 max = ECDSA_size(eckey);

	(void)type;
	*siglen = 0;
	if (dlen <= 0 || dlen > EVP_MAX_MD_SIZE || kinv != NULL ||
	    r != NULL || max <= 0)
		return 0;
	memset(&req, 0, sizeof(req));
	req.op = TLS_OP_ECDSA_SIGN;
	req.len = (uint32_t)dlen;
	memcpy(req.in, dgst, (size_t)dlen);
	if (server_tls_forward(&req, &res) == -1 ||
	    res.len > (uint32_t)max)
		return 0;
	memcpy(sig, res.out, res.len);
	*siglen = res.len;
	return 1;
}

/* EC_KEY_METHOD sign_sig: the same, as an ECDSA_SIG, or NULL. */
static ECDSA_SIG *
server_tls_ec_sign_sig(const unsigned char *dgst, int dlen,
    const BIGNUM *kinv, const BIGNUM *r, EC_KEY *eckey)
{
	unsigned char		 der[TLS_SIGN_MAX];
	const unsigned char	*p = der;
	unsigned int		 len;

	if (ECDSA_size(eckey) > (int)sizeof(der) ||
	    server_tls_ec_sign(0, dgst, dlen, der, &len, kinv, r, eckey) != 1)
		return NULL;
	return d2i_ECDSA_SIG(NULL, &p, (long)len);
}

/*
 * ENGINE pkey_meths: with the engine the default, libcrypto decodes a
 * certificate's RSA or EC key the legacy way (an RSA or EC_KEY made
 * with the default engine's method), not into a provider key.
 */
static int
server_tls_pkey_meths(ENGINE *e, EVP_PKEY_METHOD **pmeth, const int **nids,
    int nid)
{
	static const int	 ours[] = { EVP_PKEY_RSA, EVP_PKEY_EC };

	(void)e;
	if (pmeth == NULL) {
		*nids = ours;
		return 2;
	}
	if (nid == EVP_PKEY_RSA)
		*pmeth = server_tls_rsa_pmeth;
	else if (nid == EVP_PKEY_EC)
		*pmeth = server_tls_ec_pmeth;
	else
		*pmeth = NULL;
	return *pmeth != NULL;
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
 * What -C prints and the expiry warning says of the certificate in
 * path; with host, whether it names host.  Returns 0, or -1 with the
 * reason in err.
 */
int
server_tls_cert_read(const char *path, const char *host,
    struct server_tls_cert_info *ci, char *err, size_t errlen)
{
	BIO		*bio;
	X509		*x;
	struct tm	 tm;
	uint8_t		*cert;
	size_t		 certlen;

	memset(ci, 0, sizeof(*ci));
	if ((cert = tls_load_file(path, &certlen, NULL)) == NULL) {
		snprintf(err, errlen, "--tls-cert %s: %s", path,
		    strerror(errno));
		return -1;
	}
	bio = BIO_new_mem_buf(cert, (int)certlen);
	x = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	tls_unload_file(cert, certlen);
	if (x == NULL) {
		snprintf(err, errlen, "--tls-cert %s: not a PEM certificate",
		    path);
		return -1;
	}
	X509_NAME_oneline(X509_get_subject_name(x), ci->subject,
	    sizeof(ci->subject));
	tls_cert_names(x, ci->names, sizeof(ci->names));
	if (host != NULL)
		ci->names_host = X509_check_host(x, host, 0, 0, NULL) == 1;
	memset(&tm, 0, sizeof(tm));
	if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) != 1) {
		X509_free(x);
		snprintf(err, errlen, "--tls-cert %s: unreadable expiry date",
		    path);
		return -1;
	}
	X509_free(x);
	ci->notafter = timegm(&tm);
	strftime(ci->when, sizeof(ci->when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return 0;
}

/*
 * The key holder, at start and on SIGHUP: a warning when the
 * certificate has expired or expires within TLS_EXPIRY_WARN_DAYS.
 * Returns its notAfter (for the metric), or 0 if it cannot be read.
 */
time_t
server_tls_expiry_log(const struct smtpd_conf *conf)
{
	struct server_tls_cert_info	 ci;
	time_t				 now = time(NULL);
	char				 err[1024];

	if (server_tls_cert_read(conf->tls_cert, NULL, &ci, err,
	    sizeof(err)) == -1) {
		log_warnx("%s", err);
		return 0;
	}
	if (ci.notafter - now < TLS_EXPIRY_WARN_DAYS * 86400)
		log_event(LOG_WARNING, "tls_certificate_expiry", NULL,
		    "{s:s, s:s, s:s, s:I, s:b}", "cert", conf->tls_cert,
		    "subject", ci.subject, "not_after", ci.when,
		    "days", (json_int_t)((ci.notafter - now) / 86400),
		    "expired", ci.notafter <= now);
	return ci.notafter;
}

/*
 * -C and -n: the certificate must be readable, match the key and not
 * have expired; within TLS_EXPIRY_WARN_DAYS of expiry it is a warning.
 * With print (-C), describe it on stdout and, when -H was given, check
 * that it names that host.  Returns 0 when usable, else 1 with the
 * reason on stderr.
 */
int
tls_check_cert(const struct smtpd_conf *conf, int print)
{
	struct server_tls_cert_info	 ci;
	struct tls			*ctx;
	time_t				 now = time(NULL);
	char				 err[1024];
	const char			*host;

	host = print && conf->hostname_set ? conf->hostname : NULL;
	if (server_tls_cert_read(conf->tls_cert, host, &ci, err,
	    sizeof(err)) == -1) {
		fprintf(stderr, "smtpd: %s\n", err);
		return 1;
	}
	if (print) {
		printf("subject: %s\n", ci.subject);
		printf("names: %s\n", ci.names[0] ? ci.names : "(none)");
		printf("expires: %s\n", ci.when);
	}
	if ((ctx = tls_server_setup_priv(conf, err, sizeof(err))) == NULL) {
		fprintf(stderr, "smtpd: %s\n", err);
		return 1;
	}
	tls_free(ctx);
	if (ci.notafter <= now) {
		fprintf(stderr, "smtpd: --tls-cert %s: expired on %s\n",
		    conf->tls_cert, ci.when);
		return 1;
	}
	if (host != NULL && !ci.names_host) {
		fprintf(stderr, "smtpd: --tls-cert %s does not name -H %s\n",
		    conf->tls_cert, host);
		return 1;
	}
	if (ci.notafter - now < TLS_EXPIRY_WARN_DAYS * 86400)
		fprintf(stderr, "smtpd: warning: --tls-cert %s expires on %s, "
		    "in less than %d days\n", conf->tls_cert, ci.when,
		    TLS_EXPIRY_WARN_DAYS);
	return 0;
}
