/*
 * libFuzzer target for the whole SMTP session (make tests/fuzz/fuzz_session):
 * session_run() in this process, as a worker runs it.  The input's
 * first two octets choose the set-up:
 *	0: bit 0 STARTTLS offered (a test certificate made at start),
 *	   bit 1 --reject-bare-lf, bit 2 --max-rcpt 2, bit 3 --require-tls,
 *	   bit 4 an IPv6 client, bits 5-7: 6 a banned client, 7 one over
 *	   --max-per-ip, else a client served;
 *	1: bits 0-2 FIRM's verdict: accepted, HTTP 200, HTTP 422 (text with
 *	   control characters), HTTP 503, timeout, unreachable, an answer
 *	   the worker cannot read, or a stale answer before a 429; bits 3-4
 *	   every DNS answer: NXDOMAIN, TEMPFAIL, no records, or records (an
 *	   SPF pass for 127.0.0.1 and 2001:db8::1, a DMARC p=reject, ...).
 * The rest is what the client sends: written whole into the client's
 * end of a socketpair, which is then shut for writing, so that the
 * session reads it as pipelined as it can be and ends at end of file,
 * never by a timeout.  The replies go to a memfd (the session's fd_out,
 * as stdout is with --inetd): no reader is needed, however many there
 * are.  A helper thread, made once, is the relay on a channel that
 * lives as long as the process, as a worker's does: it answers every
 * question the worker asks.  So a session without MAIL runs on one
 * thread, without a context switch.
 *
 * Whatever the input: every reply line is "ddd" (2xx to 5xx), a space
 * or a hyphen, printable ASCII, CRLF, at most 512 octets, and a reply's
 * lines share one code; the replies follow the input one for one as
 * RFC 5321 frames it, so that no octet after DATA's 354 up to
 * CRLF.CRLF, inside a BDAT chunk or after STARTTLS's 220 is ever
 * answered as a command (354 only to DATA, 220 only to STARTTLS, 221
 * to every QUIT, nothing after 221 or 421, after an unended DATA or
 * chunk, or in clear after 220); every payload the worker hands the
 * relay is well formed (chan_inbound_check(), a JSON object with a
 * token), and there are no more of them than messages the input ended.
 * Any breach aborts, so that libFuzzer keeps the input.  No descriptor
 * or allocation outlives an input.  With FUZZ_SESSION_SHOW set in the
 * environment, the replies to each input go to standard error.
 */

#include <sys/types.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <tls.h>

#include "../../smtpd.h"

#define FUZZ_MAX_SIZE	"8192"		/* -s: a message over it is cheap */
#define FUZZ_OUT_MAX	(8 * 1024 * 1024)	/* replies kept */
/* the harness's own reading is not what libFuzzer should explore */
#define FUZZ_NOCOV	__attribute__((no_sanitize("coverage")))

int		 LLVMFuzzerInitialize(int *, char ***);
int		 LLVMFuzzerTestOneInput(const uint8_t *, size_t);

enum verdict_mode {
	V_ACCEPTED, V_HTTP200, V_HTTP422, V_HTTP503, V_TIMEOUT,
	V_UNREACHABLE, V_UNREADABLE, V_STALE
};

/* The relay's side of the channel; modes and count atomic. */
struct fuzz_relay {
	int		 fd;
	size_t		 clen;		/* octets read, not yet answered */
	int		 verdict;	/* enum verdict_mode */
	int		 dns;		/* enum dns_status, 3: records */
	size_t		 inbound;	/* payloads handed over */
};

struct fuzz_model {
	const uint8_t	*in;
	size_t		 inlen;
	size_t		 off;
	const uint8_t	*out;
	size_t		 outlen;
	size_t		 ooff;
	size_t		 ends;		/* messages that could be delivered */
};

static struct smtpd_conf fuzz_conf;
static struct fuzz_relay fuzz_relay;
static int		 fuzz_chan;	/* the worker's end of the channel */
static int		 fuzz_out;	/* memfd: the replies */
static struct tls	*fuzz_tls;
static uint8_t		*fuzz_cbuf;	/* channel input, the relay's */
static size_t		 fuzz_cbufsz;
static size_t		 fuzz_maxbody;
static uint8_t		*fuzz_outbuf;
static int		 fuzz_show;	/* FUZZ_SESSION_SHOW: replies */

static struct tls	*fuzz_tls_server(void);
static void		*fuzz_relay_main(void *);
static void		 fuzz_relay_read(struct fuzz_relay *);
static void		 fuzz_relay_send(struct fuzz_relay *, uint16_t,
			    uint32_t, const void *, size_t);
static void		 fuzz_relay_dns(struct fuzz_relay *, uint32_t,
			    const uint8_t *, size_t);
static void		 fuzz_relay_inbound(struct fuzz_relay *, uint32_t,
			    const uint8_t *, size_t);
static size_t		 fuzz_client(int, const uint8_t *, size_t);
static int		 fuzz_reply(struct fuzz_model *);
static int		 fuzz_verb(const uint8_t *, size_t, const char *,
			    size_t *);
static int		 fuzz_bdat_size(const uint8_t *, size_t, size_t,
			    unsigned long long *, int *);
static int		 fuzz_data_end(struct fuzz_model *);
static void		 fuzz_model(const uint8_t *, size_t, const uint8_t *,
			    size_t, int, int, size_t);

/*
 * A throw-away P-256 key and a self-signed certificate, made once, for
 * a libtls server context: STARTTLS gets its 220 and a handshake that
 * the input (no real client) fails.
 */
static struct tls *
fuzz_tls_server(void)
{
	struct tls_config	*cfg;
	struct tls		*ctx;
	EVP_PKEY		*k;
	X509			*x;
	BIO			*cb, *kb;
	char			*cp, *kp;
	long			 cl, kl;

	if ((k = EVP_EC_gen("P-256")) == NULL || (x = X509_new()) == NULL)
		abort();
	if (X509_set_version(x, 2) != 1 ||
	    ASN1_INTEGER_set(X509_get_serialNumber(x), 1) != 1 ||
	    X509_gmtime_adj(X509_getm_notBefore(x), -60) == NULL ||
	    X509_gmtime_adj(X509_getm_notAfter(x), 86400 * 30) == NULL ||
	    X509_set_pubkey(x, k) != 1 ||
	    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN",
	    MBSTRING_ASC, (const unsigned char *)"mx.example.org", -1, -1,
	    0) != 1 ||
	    X509_set_issuer_name(x, X509_get_subject_name(x)) != 1 ||
	    X509_sign(x, k, EVP_sha256()) == 0)
		abort();
	if ((cb = BIO_new(BIO_s_mem())) == NULL ||
	    (kb = BIO_new(BIO_s_mem())) == NULL ||
	    PEM_write_bio_X509(cb, x) != 1 ||
	    PEM_write_bio_PrivateKey(kb, k, NULL, NULL, 0, NULL, NULL) != 1)
		abort();
	cl = BIO_get_mem_data(cb, &cp);
	kl = BIO_get_mem_data(kb, &kp);
	if (tls_init() == -1 || (cfg = tls_config_new()) == NULL ||
	    tls_config_set_keypair_mem(cfg, (const uint8_t *)cp, (size_t)cl,
	    (const uint8_t *)kp, (size_t)kl) == -1 ||
	    (ctx = tls_server()) == NULL || tls_configure(ctx, cfg) == -1)
		abort();
	tls_config_free(cfg);
	BIO_free(cb);
	BIO_free(kb);
	X509_free(x);
	EVP_PKEY_free(k);
	return ctx;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static char *args[] = { "smtpd", "-i", "-H", "mx.example.org",
	    "-r", "verify@localhost", "-a", "http://127.0.0.1:9/",
	    "-s", FUZZ_MAX_SIZE, "-t", "1", "--api-timeout", "1",
	    "--session-timeout", "60", NULL };
	struct banlist_set	 set;
	struct banlist_map	*m;
	pthread_t		 t;
	int			 fd, sv[2];

	(void)argc;
	(void)argv;
	signal(SIGPIPE, SIG_IGN);	/* as in a worker */
	fuzz_show = getenv("FUZZ_SESSION_SHOW") != NULL;
	if ((fd = open("/dev/null", O_WRONLY | O_CLOEXEC)) == -1)
		abort();
	log_init(fd, 0);
	log_setproc("worker");
	conf_init(&fuzz_conf, (int)(sizeof(args) / sizeof(args[0])) - 1,
	    args);
	auth_init();
	fuzz_tls = fuzz_tls_server();

	/* a ban list with blocked senders, for MAIL FROM */
	if ((m = banlist_map(-1, banlist_region_size(65536), 1)) == NULL)
		abort();
	banlist_init(m);
	banlist_set_init(&set);
	set.quiet = 1;
	if (banlist_add_sender(&set, "spam@blocked.example") == -1 ||
	    banlist_add_sender(&set, "@evil.example") == -1 ||
	    banlist_add_net(&set, "192.0.2.0/24") == -1 ||
	    banlist_publish(m, &set) == -1)
		abort();
	banlist_set_free(&set);
	fuzz_conf.banlist = m;

	/* the relay takes what smtpd-relay would */
	fuzz_maxbody = (size_t)fuzz_conf.max_size * 32 + 1024 * 1024;
	fuzz_cbufsz = sizeof(struct chan_hdr) + fuzz_maxbody;
	if ((fuzz_cbuf = malloc(fuzz_cbufsz)) == NULL ||
	    (fuzz_outbuf = malloc(FUZZ_OUT_MAX)) == NULL)
		abort();
	if ((fuzz_out = memfd_create("fuzz_session", MFD_CLOEXEC)) == -1 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0, sv) == -1)
		abort();
	fuzz_chan = sv[0];
	fuzz_relay.fd = sv[1];
	if (pthread_create(&t, NULL, fuzz_relay_main, &fuzz_relay) != 0 ||
	    pthread_detach(t) != 0)
		abort();
	return 0;
}

static void FUZZ_NOCOV
fuzz_relay_send(struct fuzz_relay *r, uint16_t type, uint32_t id,
    const void *body, size_t len)
{
	struct chan_hdr	 h;
	struct iovec	 iov[2];
	struct pollfd	 pfd;
	size_t		 done = 0, total = sizeof(h) + len;
	ssize_t		 n;

	memset(&h, 0, sizeof(h));
	h.version = CHAN_VERSION;
	h.type = type;
	h.id = id;
	h.len = (uint32_t)len;
	while (done < total) {
		if (done < sizeof(h)) {
			iov[0].iov_base = (uint8_t *)&h + done;
			iov[0].iov_len = sizeof(h) - done;
			iov[1].iov_base = (void *)(uintptr_t)body;
			iov[1].iov_len = len;
		} else {
			iov[0].iov_base = (uint8_t *)(uintptr_t)body +
			    (done - sizeof(h));
			iov[0].iov_len = total - done;
			iov[1].iov_len = 0;
		}
		n = writev(r->fd, iov, iov[1].iov_len ? 2 : 1);
		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
			pfd.fd = r->fd;
			pfd.events = POLLOUT;
			(void)poll(&pfd, 1, 100);
			continue;
		}
		abort();	/* the worker's end never closes */
	}
}

/* A DNS question: the answer the input chose for every question. */
static void FUZZ_NOCOV
fuzz_relay_dns(struct fuzz_relay *r, uint32_t id, const uint8_t *body,
    size_t len)
{
	static const uint8_t	 a4[4] = { 127, 0, 0, 1 };
	static const uint8_t	 a6[16] = { 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0,
	    0, 0, 0, 0, 0, 0, 0, 0, 1 };
	const uint8_t		*rr[1];
	size_t			 rrlen[1], n = 0, alen;
	uint8_t			 ans[512];
	char			 name[DNS_NAME_MAX + 1];
	const char		*txt;
	int			 type, status, mode;

	if (dns_query_check(body, len, &type, name, sizeof(name)) == -1)
		abort();	/* our worker asked what the relay refuses */
	mode = __atomic_load_n(&r->dns, __ATOMIC_ACQUIRE);
	status = mode == 3 ? DNS_NOERROR : mode;
	if (mode == 3) {
		switch (type) {
		case DNS_T_A:
			rr[0] = a4;
			rrlen[0] = sizeof(a4);
			n = 1;
			break;
		case DNS_T_AAAA:
			rr[0] = a6;
			rrlen[0] = sizeof(a6);
			n = 1;
			break;
		case DNS_T_TXT:
			if (strncasecmp(name, "_dmarc.", 7) == 0)
				txt = "v=DMARC1; p=reject";
			else if (strstr(name, "._domainkey.") != NULL)
				txt = "v=DKIM1; k=rsa; p=";
			else
				txt = "v=spf1 ip4:127.0.0.1 ip6:2001:db8::1 "
				    "-all";
			rr[0] = (const uint8_t *)txt;
			rrlen[0] = strlen(txt);
			n = 1;
			break;
		case DNS_T_MX:
			rr[0] = (const uint8_t *)"mx.example.org";
			rrlen[0] = strlen("mx.example.org");
			n = 1;
			break;
		case DNS_T_PTR:
			rr[0] = (const uint8_t *)"client.example";
			rrlen[0] = strlen("client.example");
			n = 1;
			break;
		}
	}
	alen = dns_answer_encode(status, rr, rrlen, n, ans, sizeof(ans));
	fuzz_relay_send(r, CHAN_DNS_ANSWER, id, ans, alen);
}

/* A payload: checked as the relay would, then the verdict chosen. */
static void FUZZ_NOCOV
fuzz_relay_inbound(struct fuzz_relay *r, uint32_t id, const uint8_t *body,
    size_t len)
{
	struct chan_inbound	 in;
	struct chan_verdict	 v;
	struct chan_hdr		 h;
	const char		*json, *token;
	size_t			 jsonlen;
	json_t			*root;

	if (chan_inbound_check(body, len, &in, &json, &jsonlen) == -1 ||
	    (root = json_loadb(json, jsonlen, 0, NULL)) == NULL)
		abort();
	token = json_string_value(json_object_get(root, "token"));
	if (!json_is_object(root) || token == NULL ||
	    strlen(token) != TOKEN_LEN ||
	    strncmp(token, TOKEN_PREFIX, sizeof(TOKEN_PREFIX) - 1) != 0)
		abort();
	json_decref(root);
	__atomic_add_fetch(&r->inbound, 1, __ATOMIC_RELEASE);

	memset(&v, 0, sizeof(v));
	switch (__atomic_load_n(&r->verdict, __ATOMIC_ACQUIRE)) {
	case V_ACCEPTED:
		v.kind = VERDICT_ACCEPTED;
		v.status = 202;
		break;
	case V_HTTP200:
		v.kind = VERDICT_HTTP;
		v.status = 200;
		break;
	case V_HTTP422:
		v.kind = VERDICT_HTTP;
		v.status = 422;
		/* the relay makes it printable; the worker checks again */
		memset(v.text, 'x', sizeof(v.text) - 1);
		memcpy(v.text, "bad\r\n250 OK\x7f\x1b[0m", 16);
		break;
	case V_HTTP503:
		v.kind = VERDICT_HTTP;
		v.status = 503;
		break;
	case V_TIMEOUT:
		v.kind = VERDICT_TIMEOUT;
		break;
	case V_UNREACHABLE:
		v.kind = VERDICT_UNREACHABLE;
		break;
	case V_UNREADABLE:
		/* a header of another version: EPROTO, nothing left over */
		memset(&h, 0, sizeof(h));
		h.version = CHAN_VERSION + 1;
		h.type = CHAN_VERDICT;
		h.id = id;
		if (write(r->fd, &h, sizeof(h)) != (ssize_t)sizeof(h))
			abort();
		return;
	case V_STALE:
		v.kind = VERDICT_HTTP;
		v.status = 429;
		fuzz_relay_send(r, CHAN_VERDICT, id - 1, &v, sizeof(v));
		break;
	}
	fuzz_relay_send(r, CHAN_VERDICT, id, &v, sizeof(v));
}

/* The relay: every complete request read so far, answered. */
static void FUZZ_NOCOV
fuzz_relay_read(struct fuzz_relay *r)
{
	struct chan_hdr	 h;
	ssize_t		 n;
	size_t		 len;

	n = read(r->fd, fuzz_cbuf + r->clen, fuzz_cbufsz - r->clen);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0)
		abort();	/* the worker's end never closes */
	r->clen += (size_t)n;
	while ((n = chan_decode(fuzz_cbuf, r->clen, fuzz_maxbody, &h)) != 0) {
		if (n == -1)
			abort();	/* the relay would refuse our worker */
		len = (size_t)n;
		if (h.type == CHAN_DNS_QUERY)
			fuzz_relay_dns(r, h.id, fuzz_cbuf + sizeof(h), h.len);
		else if (h.type == CHAN_INBOUND)
			fuzz_relay_inbound(r, h.id, fuzz_cbuf + sizeof(h),
			    h.len);
		else
			abort();	/* a worker only asks */
		memmove(fuzz_cbuf, fuzz_cbuf + len, r->clen - len);
		r->clen -= len;
	}
}

/* The helper thread: the relay, for as long as the process lives. */
static void *
fuzz_relay_main(void *arg)
{
	struct fuzz_relay	*r = arg;
	struct pollfd		 pfd;

	for (;;) {
		pfd.fd = r->fd;
		pfd.events = POLLIN;
		if (poll(&pfd, 1, -1) == -1) {
			if (errno == EINTR)
				continue;
			abort();
		}
		fuzz_relay_read(r);
	}
	return NULL;
}

/*
 * The client: the input into its end of the connection, as much as
 * the socket takes (all of it, with -max_len under its buffer), then
 * end of file.  Returns the octets sent.
 */
static size_t FUZZ_NOCOV
fuzz_client(int fd, const uint8_t *in, size_t len)
{
	size_t	 off = 0;
	ssize_t	 n;
	int	 sz = 4 * 1024 * 1024;

	(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	while (off < len) {
		n = send(fd, in + off, len - off, MSG_NOSIGNAL);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	if (shutdown(fd, SHUT_WR) == -1)
		abort();
	return off;
}

/*
 * The next reply, every line checked: its code, or 0 when there are no
 * more.
 */
static int FUZZ_NOCOV
fuzz_reply(struct fuzz_model *m)
{
	const uint8_t	*l;
	size_t		 n, i, avail;
	int		 code = 0, c;

	for (;;) {
		if (m->ooff == m->outlen) {
			if (code != 0)
				abort();	/* a reply left unfinished */
			return 0;
		}
		l = m->out + m->ooff;
		avail = m->outlen - m->ooff;
		for (n = 0; n + 1 < avail && !(l[n] == '\r' &&
		    l[n + 1] == '\n'); n++)
			;
		if (n + 1 >= avail)
			abort();	/* not ended by CRLF */
		n += 2;
		if (n > SMTP_REPLY_MAX || n < 6 || l[0] < '2' || l[0] > '5' ||
		    l[1] < '0' || l[1] > '9' || l[2] < '0' || l[2] > '9' ||
		    (l[3] != ' ' && l[3] != '-'))
			abort();
		for (i = 4; i < n - 2; i++)
			if (l[i] < 0x20 || l[i] > 0x7e)
				abort();	/* untrusted text, uncleaned */
		c = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
		if (code != 0 && c != code)
			abort();
		code = c;
		m->ooff += n;
		if (l[3] == ' ')
			return code;
	}
}

/* session_verb(): the verb, then the end or a space; *args past it. */
static int FUZZ_NOCOV
fuzz_verb(const uint8_t *l, size_t n, const char *verb, size_t *args)
{
	size_t	 v = strlen(verb);

	if (n < v || strncasecmp((const char *)l, verb, v) != 0)
		return 0;
	if (n == v) {
		*args = n;
		return 1;
	}
	if (l[v] != ' ')
		return 0;
	*args = v + 1;
	return 1;
}

/* "BDAT n" or "BDAT n LAST" as RFC 3030 has it (18 digits at most). */
static int FUZZ_NOCOV
fuzz_bdat_size(const uint8_t *l, size_t n, size_t args,
    unsigned long long *size, int *last)
{
	size_t	 i;

	*size = 0;
	for (i = args; i < n && l[i] >= '0' && l[i] <= '9'; i++)
		*size = *size * 10 + (unsigned long long)(l[i] - '0');
	if (i == args || i - args > 18)
		return -1;
	*last = n - i == 5 && strncasecmp((const char *)l + i, " LAST",
	    5) == 0;
	return *last || i == n ? 0 : -1;
}

/*
 * Past the data of DATA: its end is a "." line begun and ended by
 * CRLF, the first line begun by DATA's own CRLF.  0 when the input
 * ends first.
 */
static int FUZZ_NOCOV
fuzz_data_end(struct fuzz_model *m)
{
	const uint8_t	*p = m->in;
	size_t		 i;

	for (i = m->off; i + 3 <= m->inlen; i++)
		if (p[i] == '.' && p[i + 1] == '\r' && p[i + 2] == '\n' &&
		    (i == m->off || (p[i - 2] == '\r' && p[i - 1] == '\n'))) {
			m->off = i + 3;
			return 1;
		}
	m->off = m->inlen;
	return 0;
}

/*
 * The input as RFC 5321 frames it against the replies: one reply to
 * each command line, data and chunks never answered.
 */
static void FUZZ_NOCOV
fuzz_model(const uint8_t *in, size_t inlen, const uint8_t *out,
    size_t outlen, int banned, int over, size_t inbound)
{
	struct fuzz_model	 m;
	const uint8_t		*l, *crlf;
	unsigned long long	 size;
	size_t			 n, args;
	int			 code, ok, last, end = 0;

	memset(&m, 0, sizeof(m));
	m.in = in;
	m.inlen = inlen;
	m.out = out;
	m.outlen = outlen;
	code = fuzz_reply(&m);
	if (code != (over ? 421 : banned ? 554 : 220))
		abort();
	if (over)
		end = 1;
	while (!end) {
		crlf = memmem(in + m.off, inlen - m.off, "\r\n", 2);
		if (crlf == NULL)
			break;
		l = in + m.off;
		n = (size_t)(crlf - l);
		m.off += n + 2;
		/* what session_getline() gives as LINE_OK */
		ok = n <= SMTP_LINE_MAX - 2 && memchr(l, '\0', n) == NULL &&
		    memchr(l, '\r', n) == NULL && memchr(l, '\n', n) == NULL;
		if (ok && !banned && fuzz_verb(l, n, "BDAT", &args)) {
			if (fuzz_bdat_size(l, n, args, &size, &last) == -1) {
				/* 501, and nothing after it is trusted */
				if (fuzz_reply(&m) != 501)
					abort();
				end = 1;
				break;
			}
			if (size > inlen - m.off) {
				end = 1;	/* the input ends in it */
				break;
			}
			m.off += (size_t)size;
			m.ends += last;
		}
		if ((code = fuzz_reply(&m)) == 0)
			abort();	/* a command left unanswered */
		if (code == 421) {
			end = 1;
			break;
		}
		if (ok && fuzz_verb(l, n, "QUIT", &args) &&
		    (!banned || n == 4)) {
			if (code != 221)
				abort();
			end = 1;
			break;
		}
		if (code == 221)
			abort();
		if (banned) {
			if (code != 503)
				abort();
			continue;
		}
		if (code == 354) {
			if (!ok || !fuzz_verb(l, n, "DATA", &args) ||
			    args != n)
				abort();
			if (!fuzz_data_end(&m)) {
				end = 1;	/* the input ends in data */
				break;
			}
			m.ends++;
			if ((code = fuzz_reply(&m)) == 0 || code == 354 ||
			    code == 221)
				abort();	/* the message's own reply */
			if (code == 421) {
				end = 1;
				break;
			}
		} else if (code == 220) {
			if (fuzz_conf.tls == NULL || !ok ||
			    !fuzz_verb(l, n, "STARTTLS", &args) || args != n)
				abort();
			/* what follows is TLS, on the socket: none here */
			end = 1;
		}
	}
	/*
	 * At the end of input: at most the answer to a line that is HTTP
	 * at its first bare LF (421; a banned client's 503).
	 */
	if (!end && (code = fuzz_reply(&m)) != 0 && code != 421 &&
	    !(banned && code == 503))
		abort();
	if (m.ooff != outlen)
		abort();
	if (inbound > m.ends)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct session_ctx	 ctx;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&ctx.peer;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&ctx.peer;
	struct stat		 st;
	size_t			 inlen, outlen;
	int			 cs[2], who, banned, over;

	if (size < 2)
		return 0;
	fuzz_conf.tls = (data[0] & 1) ? fuzz_tls : NULL;
	fuzz_conf.reject_bare_lf = (data[0] >> 1) & 1;
	fuzz_conf.max_rcpt = (data[0] & 4) ? 2 : 1;
	fuzz_conf.require_tls = fuzz_conf.tls != NULL && (data[0] & 8);
	who = data[0] >> 5;
	banned = who == 6;
	over = who == 7;
	__atomic_store_n(&fuzz_relay.verdict, data[1] & 7, __ATOMIC_RELEASE);
	__atomic_store_n(&fuzz_relay.dns, (data[1] >> 3) & 3,
	    __ATOMIC_RELEASE);
	__atomic_store_n(&fuzz_relay.inbound, 0, __ATOMIC_RELEASE);

	memset(&ctx, 0, sizeof(ctx));
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0, cs) == -1 || ftruncate(fuzz_out, 0) == -1 ||
	    lseek(fuzz_out, 0, SEEK_SET) == -1 ||
	    (ctx.fd_out = dup(fuzz_out)) == -1)
		abort();
	inlen = fuzz_client(cs[1], data + 2, size - 2);
	ctx.conf = &fuzz_conf;
	ctx.fd_in = cs[0];
	ctx.chan = fuzz_chan;
	ctx.reject = over ? REPLY_MAXPERIP : -1;
	ctx.banned = banned;
	if (data[0] & 0x10) {
		sin6->sin6_family = AF_INET6;
		inet_pton(AF_INET6, "2001:db8::1", &sin6->sin6_addr);
		sin6->sin6_port = htons(40000);
		ctx.peerlen = sizeof(*sin6);
	} else {
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sin->sin_port = htons(40000);
		ctx.peerlen = sizeof(*sin);
	}

	session_run(&ctx);		/* closes cs[0] and its fd_out */
	session_scrub();
	close(cs[1]);

	if (fstat(fuzz_out, &st) == -1)
		abort();
	outlen = (size_t)st.st_size;
	if (outlen > FUZZ_OUT_MAX)
		return 0;		/* too much to look at */
	if (pread(fuzz_out, fuzz_outbuf, outlen, 0) != (ssize_t)outlen)
		abort();
	if (fuzz_show) {
		(void)fd_write_all(STDERR_FILENO, fuzz_outbuf, outlen);
		(void)fd_write_all(STDERR_FILENO, "--\n", 3);
	}
	fuzz_model(data + 2, inlen, fuzz_outbuf, outlen, banned, over,
	    __atomic_load_n(&fuzz_relay.inbound, __ATOMIC_ACQUIRE));
	return 0;
}
