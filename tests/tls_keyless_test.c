/*
 * The TLS private key stays with its holder.  A worker forked from the
 * holder serves openssl s_client over TLS 1.3 and 1.2 (RSA-PSS, RSA
 * PKCS #1, ECDSA), its private-key operations answered by the holder
 * over a socketpair; then its memory, every readable mapping of
 * /proc/PID/mem, is searched for the key file's base64 lines and the
 * key's secret numbers (RSA p, q and d, the EC scalar), big- and
 * little-endian.  Workers forked after the holder has signed, and after
 * it loaded another key (as on SIGHUP), must not hold them either.  The same search finds the key in a worker made the
 * old way (tls_server_setup_priv) and in one that skips
 * server_tls_set_signer: the search does look.  The holder must also
 * refuse what a handshake never asks for.
 *
 * Usage: tls_keyless_test [key.pem cert.pem ...]
 * Without arguments it makes an RSA-2048 and a P-256 pair with
 * openssl(1); the pairs are loaded one after the other.  Needs root (it reads its children's memory) and prints
 * "N passed, N failed".
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <tls.h>

#include "../smtpd.h"
#include "check.h"

#define WAIT_MS		20000	/* for a client, a worker, a scan */
#define OUT_MAX		16384	/* of a client's output */
#define SECRETS_MAX	64
#define SCAN_CHUNK	(1024 * 1024)	/* read of another's memory */
#define FIND_PEM	1	/* the key file's base64 lines */
#define FIND_NUMBERS	2	/* p, q and d, or the EC scalar */
#define FIND_ALL	(FIND_PEM | FIND_NUMBERS)

struct pair {
	const char	*key;
	const char	*cert;
};

struct client_case {
	const char	*name;
	const char	*proto;		/* s_client flag */
	const char	*sigalgs;
	const char	*expect_proto;
	const char	*expect_sig;	/* s_client -brief line */
};

struct secret {
	char		 name[64];
	unsigned char	*bytes;
	size_t		 len;
};

static const struct client_case rsa_cases[] = {
	{ "TLS 1.3, RSA-PSS SHA-256", "-tls1_3", "rsa_pss_rsae_sha256",
	    "Protocol version: TLSv1.3\n", "Signature type: RSA-PSS\n" },
	{ "TLS 1.3, RSA-PSS SHA-512", "-tls1_3", "rsa_pss_rsae_sha512",
	    "Protocol version: TLSv1.3\n", "Signature type: RSA-PSS\n" },
	{ "TLS 1.2, RSA PKCS#1 SHA-256", "-tls1_2", "RSA+SHA256",
	    "Protocol version: TLSv1.2\n", "Signature type: RSA\n" },
	{ "TLS 1.2, RSA-PSS SHA-384", "-tls1_2", "rsa_pss_rsae_sha384",
	    "Protocol version: TLSv1.2\n", "Signature type: RSA-PSS\n" },
};

static const struct client_case ec_cases[] = {
	{ "TLS 1.3, ECDSA P-256", "-tls1_3", "ecdsa_secp256r1_sha256",
	    "Protocol version: TLSv1.3\n", "Signature type: ECDSA\n" },
	{ "TLS 1.2, ECDSA SHA-256", "-tls1_2", "ECDSA+SHA256",
	    "Protocol version: TLSv1.2\n", "Signature type: ECDSA\n" },
	{ "TLS 1.2, ECDSA SHA-384", "-tls1_2", "ECDSA+SHA384",
	    "Protocol version: TLSv1.2\n", "Signature type: ECDSA\n" },
};

static int	 test_signer(void *, const struct tls_sign_req *,
		    struct tls_sign_res *);
static __dead void worker_serve(struct tls *, int, int, int, size_t);
static __dead void worker_idle(int, int, int, const char *);
static int	 wait_ready(int);
static void	 serve_signs(int, int *);
static int	 run_client(const struct client_case *, int, int, char *,
		    size_t, int *);
static int	 secrets_load(const char *, int, struct secret *, size_t);
static size_t	 scan_mem(pid_t, const struct secret *, size_t);
static int	 scan(pid_t, const struct pair *, size_t, int);
static void	 test_holder_refuses(const char *, int);
static void	 test_round(const struct pair *, size_t);

/* A worker's transport: one request out, one answer back. */
static int
test_signer(void *arg, const struct tls_sign_req *req,
    struct tls_sign_res *res)
{
	int	 fd = *(int *)arg;

	if (send(fd, req, sizeof(*req), MSG_NOSIGNAL) != sizeof(*req))
		return -1;
	if (recv(fd, res, sizeof(*res), 0) != sizeof(*res))
		return -1;
	return 0;
}

/*
 * The keyless worker: forget the holder's key, serve n connections
 * (read "ping", answer "pong"), say so on ready, wait to be searched.
 */
static __dead void
worker_serve(struct tls *ctx, int lfd, int sfd, int ready, size_t n)
{
	struct tls	*cctx;
	char		 buf[256];
	size_t		 i, got;
	ssize_t		 r;
	int		 fd;

	server_tls_set_signer(test_signer, &sfd);
	for (i = 0; i < n; i++) {
		if ((fd = accept(lfd, NULL, NULL)) == -1)
			_exit(1);
		cctx = NULL;
		if (tls_accept_socket(ctx, &cctx, fd) == -1) {
			fprintf(stderr, "worker: tls_accept_socket: %s\n",
			    tls_error(ctx));
			close(fd);
			continue;
		}
		if (tls_handshake(cctx) == -1) {
			fprintf(stderr, "worker: handshake: %s\n",
			    tls_error(cctx));
			goto next;
		}
		for (got = 0; got < sizeof(buf) - 1; got += (size_t)r) {
			r = tls_read(cctx, buf + got, sizeof(buf) - 1 - got);
			if (r == TLS_WANT_POLLIN || r == TLS_WANT_POLLOUT) {
				r = 0;
				continue;
			}
			if (r <= 0 || memchr(buf + got, '\n', (size_t)r))
				break;
		}
		if (r > 0 && strncmp(buf, "ping\n", 5) == 0) {
			snprintf(buf, sizeof(buf), "pong %s %s\n",
			    tls_conn_version(cctx), tls_conn_cipher(cctx));
			(void)tls_write(cctx, buf, strlen(buf));
		}
 next:
		(void)tls_close(cctx);
		tls_free(cctx);
		close(fd);
	}
	if (write(ready, "r", 1) != 1)
		_exit(1);
	for (;;)
		pause();
}

/*
 * A worker that only waits to be searched: with or without the call,
 * and for a control, with a key file read into its memory.
 */
static __dead void
worker_idle(int sfd, int ready, int set_signer, const char *read_file)
{
	size_t	 len;

	if (set_signer)
		server_tls_set_signer(test_signer, &sfd);
	if (read_file != NULL && tls_load_file(read_file, &len, NULL) == NULL)
		_exit(1);
	if (write(ready, "r", 1) != 1)
		_exit(1);
	for (;;)
		pause();
}

static int
wait_ready(int fd)
{
	struct pollfd	 pfd = { fd, POLLIN, 0 };
	char		 c;

	if (poll(&pfd, 1, WAIT_MS) != 1 || read(fd, &c, 1) != 1)
		return -1;
	return 0;
}

/* The holder answers what a worker asks on sfd, counting. */
static void
serve_signs(int sfd, int *nsigned)
{
	struct tls_sign_req	 req;
	struct tls_sign_res	 res;

	if (recv(sfd, &req, sizeof(req), 0) != sizeof(req))
		return;
	server_tls_sign_priv(&req, &res, 0);
	if (res.status == 0)
		(*nsigned)++;
	(void)send(sfd, &res, sizeof(res), MSG_NOSIGNAL);
}

/*
 * openssl s_client against 127.0.0.1:port, "ping" on its stdin; the
 * holder serves sign requests on sfd meanwhile.  Its stdout and stderr
 * end in out.  Returns its exit status, or -1.
 */
static int
run_client(const struct client_case *c, int port, int sfd, char *out,
    size_t outlen, int *nsigned)
{
	struct pollfd	 pfd[2];
	char		 addr[64];
	size_t		 len = 0;
	ssize_t		 r;
	pid_t		 pid;
	int		 in[2], o[2], status, n;

	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	if (pipe(in) == -1 || pipe(o) == -1)
		return -1;
	if ((pid = fork()) == -1)
		return -1;
	if (pid == 0) {
		dup2(in[0], STDIN_FILENO);
		dup2(o[1], STDOUT_FILENO);
		dup2(o[1], STDERR_FILENO);
		close(in[0]);
		close(in[1]);
		close(o[0]);
		close(o[1]);
		execlp("openssl", "openssl", "s_client", "-connect", addr,
		    "-servername", "localhost", c->proto, "-sigalgs",
		    c->sigalgs, "-brief", "-ign_eof", (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(o[1]);
	if (write(in[1], "ping\n", 5) != 5)
		return 1;
	close(in[1]);
	pfd[0].fd = o[0];
	pfd[0].events = POLLIN;
	pfd[1].fd = sfd;
	pfd[1].events = POLLIN;
	for (;;) {
		if ((n = poll(pfd, 2, WAIT_MS)) <= 0) {
			kill(pid, SIGKILL);
			break;
		}
		if (pfd[1].revents & POLLIN)
			serve_signs(sfd, nsigned);
		if (pfd[0].revents & (POLLIN | POLLHUP)) {
			r = read(o[0], out + len, outlen - 1 - len);
			if (r <= 0)
				break;
			len += (size_t)r;
			if (len == outlen - 1)
				break;
		}
	}
	out[len] = '\0';
	close(o[0]);
	if (waitpid(pid, &status, 0) == -1)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/*
 * What must not be in a worker, from the key file: its base64 lines,
 * and the secret numbers in both byte orders.  Runs in the searching
 * process only, so no worker inherits these copies.
 */
static int
secrets_load(const char *path, int kinds, struct secret *s, size_t max)
{
	static const char	*rsa[] = { OSSL_PKEY_PARAM_RSA_FACTOR1,
				    OSSL_PKEY_PARAM_RSA_FACTOR2,
				    OSSL_PKEY_PARAM_RSA_D };
	static const char	*ec[] = { OSSL_PKEY_PARAM_PRIV_KEY };
	const char		**names;
	FILE			*f;
	EVP_PKEY		*pk;
	BIGNUM			*bn;
	char			 line[256];
	size_t			 n = 0, nnames, i, j, len;
	int			 in = 0;

	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL && n < max) {
		line[strcspn(line, "\r\n")] = '\0';
		if (strncmp(line, "-----", 5) == 0) {
			in = strncmp(line, "-----BEGIN", 10) == 0;
			continue;
		}
		if (!in || strlen(line) < 16 || !(kinds & FIND_PEM))
			continue;
		snprintf(s[n].name, sizeof(s[n].name), "PEM line %zu", n + 1);
		s[n].len = strlen(line);
		if ((s[n].bytes = malloc(s[n].len)) == NULL)
			return -1;
		memcpy(s[n].bytes, line, s[n].len);
		n++;
	}
	rewind(f);
	pk = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (pk == NULL)
		return -1;
	if (EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA) {
		names = rsa;
		nnames = kinds & FIND_NUMBERS ? 3 : 0;
	} else {
		names = ec;
		nnames = kinds & FIND_NUMBERS ? 1 : 0;
	}
	for (i = 0; i < nnames && n + 2 <= max; i++) {
		bn = NULL;
		if (EVP_PKEY_get_bn_param(pk, names[i], &bn) != 1)
			return -1;
		len = (size_t)BN_num_bytes(bn);
		if ((s[n].bytes = malloc(len)) == NULL ||
		    (s[n + 1].bytes = malloc(len)) == NULL)
			return -1;
		BN_bn2bin(bn, s[n].bytes);
		for (j = 0; j < len; j++)
			s[n + 1].bytes[j] = s[n].bytes[len - 1 - j];
		s[n].len = s[n + 1].len = len;
		snprintf(s[n].name, sizeof(s[n].name), "%s, big-endian",
		    names[i]);
		snprintf(s[n + 1].name, sizeof(s[n + 1].name),
		    "%s, little-endian", names[i]);
		n += 2;
		BN_clear_free(bn);
	}
	EVP_PKEY_free(pk);
	return (int)n;
}

/*
 * How many of the secrets pid's readable memory holds; the first few
 * are printed.  Read a chunk at a time, chunks overlapping by the
 * longest secret.
 */
static size_t
scan_mem(pid_t pid, const struct secret *s, size_t n)
{
	FILE		*maps;
	unsigned char	*buf, *hit;
	char		 path[64], line[512], perms[8];
	unsigned long	 start, end, off;
	size_t		 i, want, over = 0, found = 0, regions = 0;
	size_t		 bytes = 0;
	ssize_t		 r;
	int		 mem, *seen;

	for (i = 0; i < n; i++)
		if (s[i].len > over)
			over = s[i].len;
	if ((seen = calloc(n, sizeof(*seen))) == NULL ||
	    (buf = malloc(SCAN_CHUNK + over)) == NULL)
		return (size_t)-1;
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	if ((maps = fopen(path, "r")) == NULL)
		return (size_t)-1;
	snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
	if ((mem = open(path, O_RDONLY)) == -1)
		return (size_t)-1;
	while (fgets(line, sizeof(line), maps) != NULL) {
		if (sscanf(line, "%lx-%lx %7s", &start, &end, perms) != 3 ||
		    perms[0] != 'r' || strstr(line, "[vvar]") != NULL ||
		    strstr(line, "[vsyscall]") != NULL)
			continue;
		regions++;
		for (off = start; off < end; off += SCAN_CHUNK) {
			want = SCAN_CHUNK + over;
			if (want > end - off)
				want = end - off;
			if ((r = pread(mem, buf, want, (off_t)off)) <= 0)
				break;
			bytes += (size_t)r < SCAN_CHUNK ? (size_t)r :
			    SCAN_CHUNK;
			for (i = 0; i < n; i++) {
				if (seen[i] || (hit = memmem(buf, (size_t)r,
				    s[i].bytes, s[i].len)) == NULL)
					continue;
				seen[i] = 1;
				if (found++ < 3)
					printf("  found %s at %#lx in %.*s\n",
					    s[i].name, off +
					    (unsigned long)(hit - buf),
					    (int)strcspn(line, " "), line);
			}
		}
	}
	close(mem);
	fclose(maps);
	free(buf);
	free(seen);
	printf("  searched %zu mappings, %zu KiB of pid %d for %zu secrets: "
	    "%zu found\n", regions, bytes / 1024, (int)pid, n, found);
	return bytes == 0 ? (size_t)-1 : found;
}

/*
 * Search pid for the secrets of the keys in pairs, from a process of
 * its own.  Returns how many were found (0 to 255), or -1.
 */
static int
scan(pid_t pid, const struct pair *pairs, size_t npairs, int kinds)
{
	struct secret	 s[SECRETS_MAX];
	size_t		 i, found = 0, n;
	pid_t		 child;
	int		 k, status;

	fflush(stdout);
	if ((child = fork()) == -1)
		return -1;
	if (child == 0) {
		for (i = 0; i < npairs; i++) {
			if ((k = secrets_load(pairs[i].key, kinds, s,
			    SECRETS_MAX)) <= 0)
				_exit(255);
			if ((n = scan_mem(pid, s, (size_t)k)) == (size_t)-1)
				_exit(255);
			found += n;
		}
		fflush(stdout);
		_exit(found > 254 ? 254 : (int)found);
	}
	if (waitpid(child, &status, 0) == -1 || !WIFEXITED(status) ||
	    WEXITSTATUS(status) == 255)
		return -1;
	return WEXITSTATUS(status);
}

/* The holder signs what a handshake asks and refuses the rest. */
static void
test_holder_refuses(const char *what, int size)
{
	struct tls_sign_req	 req;
	struct tls_sign_res	 res;
	size_t			 i;
	int			 rsa = strcmp(what, "RSA") == 0, ok = 0;

	memset(&req, 0, sizeof(req));
	req.op = 99;
	req.len = 32;
	server_tls_sign_priv(&req, &res, 0);
	CHECK(res.status == -1 && res.len == 0, "%s: unknown op refused",
	    what);

	req.op = rsa ? TLS_OP_RSA_PRIV_ENC : TLS_OP_ECDSA_SIGN;
	req.padding = rsa ? RSA_PKCS1_PADDING : 0;
	req.len = TLS_SIGN_MAX + 1;
	server_tls_sign_priv(&req, &res, 0);
	CHECK(res.status == -1, "%s: len over TLS_SIGN_MAX refused", what);
	req.len = 0;
	server_tls_sign_priv(&req, &res, 0);
	CHECK(res.status == -1, "%s: empty input refused", what);

	req.len = 32;
	server_tls_sign_priv(&req, &res, 0);
	CHECK(res.status == 0 && res.len > 0, "%s: a 32-byte digest signed",
	    what);

	req.op = rsa ? TLS_OP_ECDSA_SIGN : TLS_OP_RSA_PRIV_ENC;
	req.padding = rsa ? 0 : RSA_PKCS1_PADDING;
	server_tls_sign_priv(&req, &res, 0);
	CHECK(res.status == -1, "%s: the other key type's op refused", what);

	if (rsa) {
		req.op = TLS_OP_RSA_PRIV_ENC;
		req.padding = RSA_PKCS1_OAEP_PADDING;
		server_tls_sign_priv(&req, &res, 0);
		CHECK(res.status == -1, "RSA: OAEP padding refused");
		req.padding = RSA_PKCS1_PADDING;
		req.len = (uint32_t)(size - RSA_PKCS1_PADDING_SIZE + 1);
		server_tls_sign_priv(&req, &res, 0);
		CHECK(res.status == -1, "RSA: PKCS#1 block too long refused");
		/* a ciphertext to decrypt is no PSS encoding */
		req.padding = RSA_NO_PADDING;
		req.len = (uint32_t)size;
		for (i = 0; i < 100; i++) {
			RAND_bytes(req.in, size);
			req.in[0] &= 0x7f;
			server_tls_sign_priv(&req, &res, 0);
			ok += res.status == 0;
		}
		CHECK(ok == 0, "RSA: raw block, not PSS-encoded, refused "
		    "(%d of 100 signed)", ok);
		req.len = (uint32_t)size - 1;
		server_tls_sign_priv(&req, &res, 0);
		CHECK(res.status == -1, "RSA: raw block of the wrong length "
		    "refused");
	} else {
		req.op = TLS_OP_ECDSA_SIGN;
		req.padding = 1;
		req.len = 32;
		server_tls_sign_priv(&req, &res, 0);
		CHECK(res.status == -1, "EC: padding set refused");
		req.padding = 0;
		req.len = EVP_MAX_MD_SIZE + 1;
		server_tls_sign_priv(&req, &res, 0);
		CHECK(res.status == -1, "EC: digest over 64 bytes refused");
	}

	/* hostile requests: any answer, but no crash and no overrun */
	for (i = 0; i < 20000; i++) {
		RAND_bytes((unsigned char *)&req, sizeof(req));
		req.op %= 4;
		req.padding %= 6;
		req.len %= 2 * TLS_SIGN_MAX;
		server_tls_sign_priv(&req, &res, 0);
		if (res.status != 0 && res.status != -1)
			break;
		if (res.status == 0 && res.len > TLS_SIGN_MAX)
			break;
	}
	CHECK(i == 20000, "%s: 20000 random requests answered sanely", what);
}

/*
 * One key pair: the holder loads it, a keyless worker serves the
 * clients and is searched; also a worker forked after the holder has
 * signed, one that skips server_tls_set_signer, and one made the old
 * way.  pairs[0 .. n - 1] were loaded before: a worker holds none of
 * them either.
 */
static void
test_round(const struct pair *pairs, size_t n)
{
	const struct pair		*p = &pairs[n];
	const struct client_case	*cases;
	struct smtpd_conf		 conf;
	struct sockaddr_in		 sin;
	struct tls			*ctx, *old;
	socklen_t			 sl = sizeof(sin);
	char				 err[1024], out[OUT_MAX];
	const char			*what;
	size_t				 ncases, i;
	pid_t				 pid;
	int				 lfd, sp[2], rp[2], port, st;
	int				 nsigned, total = 0, found, size;

	memset(&conf, 0, sizeof(conf));
	conf.tls_cert = p->cert;
	conf.tls_key = p->key;
	if (server_tls_key_load_priv(&conf, err, sizeof(err)) == -1) {
		CHECK(0, "server_tls_key_load_priv %s: %s", p->key, err);
		return;
	}
	ctx = server_tls_setup_keyless(&conf, err, sizeof(err));
	CHECK(ctx != NULL, "server_tls_setup_keyless %s: %s", p->cert, err);
	if (ctx == NULL)
		return;
	/* the type and size from the certificate: no key in this process */
	{
		FILE		*f = fopen(p->cert, "r");
		X509		*x = NULL;

		if (f != NULL) {
			x = PEM_read_X509(f, NULL, NULL, NULL);
			fclose(f);
		}
		what = x != NULL && EVP_PKEY_get_base_id(X509_get0_pubkey(x)) ==
		    EVP_PKEY_RSA ? "RSA" : "EC";
		size = x != NULL ? EVP_PKEY_get_size(X509_get0_pubkey(x)) : 0;
		X509_free(x);
	}
	if (strcmp(what, "RSA") == 0) {
		cases = rsa_cases;
		ncases = sizeof(rsa_cases) / sizeof(rsa_cases[0]);
	} else {
		cases = ec_cases;
		ncases = sizeof(ec_cases) / sizeof(ec_cases[0]);
	}
	printf("%s key %s\n", what, p->key);

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((lfd = socket(AF_INET, SOCK_STREAM, 0)) == -1 ||
	    bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
	    listen(lfd, 16) == -1 ||
	    getsockname(lfd, (struct sockaddr *)&sin, &sl) == -1 ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp) == -1 ||
	    pipe(rp) == -1) {
		CHECK(0, "sockets: %s", strerror(errno));
		return;
	}
	port = ntohs(sin.sin_port);

	/* the keyless worker and its clients */
	fflush(stdout);
	if ((pid = fork()) == 0) {
		close(sp[0]);
		close(rp[0]);
		worker_serve(ctx, lfd, sp[1], rp[1], ncases);
	}
	for (i = 0; i < ncases; i++) {
		nsigned = 0;
		st = run_client(&cases[i], port, sp[0], out, sizeof(out),
		    &nsigned);
		total += nsigned;
		CHECK(st == 0 && strstr(out, cases[i].expect_proto) != NULL &&
		    strstr(out, cases[i].expect_sig) != NULL &&
		    strstr(out, "pong ") != NULL && nsigned > 0,
		    "%s %s: handshake, data, %d signed by the holder; "
		    "s_client said:\n%s", what, cases[i].name, nsigned, out);
		printf("  %s: s_client exit %d, %d signature(s) by the "
		    "holder, %s", cases[i].name, st, nsigned,
		    strstr(out, "pong ") ? strstr(out, "pong ") : "no pong\n");
	}
	CHECK(wait_ready(rp[0]) == 0, "%s: the worker served its clients",
	    what);
	found = scan(pid, pairs, n + 1, FIND_ALL);
	CHECK(found == 0, "%s: the keyless worker holds no key, nor any key "
	    "loaded before (%d found)", what, found);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);

	/* forked after the holder has signed, as pool workers are */
	if ((pid = fork()) == 0)
		worker_idle(sp[1], rp[1], 1, NULL);
	CHECK(wait_ready(rp[0]) == 0, "%s: late worker ready", what);
	found = scan(pid, pairs, n + 1, FIND_ALL);
	CHECK(found == 0, "%s: a worker forked after %d signatures holds no "
	    "key (%d found)", what, total, found);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);

	/* controls: the search finds what is there */
	if ((pid = fork()) == 0)
		worker_idle(sp[1], rp[1], 0, NULL);
	CHECK(wait_ready(rp[0]) == 0, "%s: control worker ready", what);
	found = scan(pid, p, 1, FIND_NUMBERS);
	CHECK(found > 0, "%s: a worker without server_tls_set_signer holds "
	    "the holder's key, and the search finds it (%d found)", what,
	    found);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);

	if ((pid = fork()) == 0)
		worker_idle(sp[1], rp[1], 1, p->key);
	CHECK(wait_ready(rp[0]) == 0, "%s: control worker ready", what);
	found = scan(pid, p, 1, FIND_PEM);
	CHECK(found > 0, "%s: a worker that read the key file holds its "
	    "lines, and the search finds them (%d found)", what, found);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);

	old = tls_server_setup_priv(&conf, err, sizeof(err));
	CHECK(old != NULL, "tls_server_setup_priv: %s", err);
	if ((pid = fork()) == 0)
		worker_idle(sp[1], rp[1], 1, NULL);
	CHECK(wait_ready(rp[0]) == 0, "%s: old-way worker ready", what);
	found = scan(pid, p, 1, FIND_NUMBERS);
	CHECK(found > 0, "%s: a worker with a tls_server_setup_priv context "
	    "holds the key, and the search finds it (%d found)", what, found);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	tls_free(old);

	test_holder_refuses(what, size);

	tls_free(ctx);
	close(lfd);
	close(sp[0]);
	close(sp[1]);
	close(rp[0]);
	close(rp[1]);
}

int
main(int argc, char *argv[])
{
	struct pair	 pairs[8];
	char		 dir[] = "/tmp/tls_keyless.XXXXXX", cmd[2048];
	char		 files[4][256], err[256];
	size_t		 n = 0, i;
	int		 made = 0;

	if (server_tls_init(err, sizeof(err)) == -1) {
		printf("server_tls_init: %s\n", err);
		return 1;
	}
	if (geteuid() != 0)
		printf("warning: not root, the memory search may fail\n");
	signal(SIGPIPE, SIG_IGN);
	if (argc > 1) {
		for (i = 1; i + 1 < (size_t)argc && n < 8; i += 2, n++) {
			pairs[n].key = argv[i];
			pairs[n].cert = argv[i + 1];
		}
	} else {
		if (mkdtemp(dir) == NULL) {
			perror("mkdtemp");
			return 1;
		}
		made = 1;
		snprintf(files[0], sizeof(files[0]), "%s/rsa.key", dir);
		snprintf(files[1], sizeof(files[1]), "%s/rsa.crt", dir);
		snprintf(files[2], sizeof(files[2]), "%s/ec.key", dir);
		snprintf(files[3], sizeof(files[3]), "%s/ec.crt", dir);
		snprintf(cmd, sizeof(cmd), "openssl req -x509 -newkey rsa:2048 "
		    "-nodes -keyout %s -out %s -subj /CN=localhost -days 2 "
		    "2>/dev/null && openssl req -x509 -newkey ec -pkeyopt "
		    "ec_paramgen_curve:P-256 -nodes -keyout %s -out %s "
		    "-subj /CN=localhost -days 2 2>/dev/null", files[0],
		    files[1], files[2], files[3]);
		if (system(cmd) != 0) {
			printf("openssl req failed\n");
			return 1;
		}
		pairs[0].key = files[0];
		pairs[0].cert = files[1];
		pairs[1].key = files[2];
		pairs[1].cert = files[3];
		n = 2;
	}
	for (i = 0; i < n; i++)
		test_round(pairs, i);
	if (made) {
		for (i = 0; i < 4; i++)
			unlink(files[i]);
		rmdir(dir);
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
