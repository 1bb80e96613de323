/*
 * Test build only (smtpd-test, never installed): "XTEST <HOOK>" after
 * the greeting makes this sandboxed worker try what it must not be able
 * to do.  The reply says what happened, if the worker still lives to
 * say it; a kill ends the session without one.
 */

#include <sys/types.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "smtpd.h"

#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP		262
#endif

#define TESTHOOK_MAPS		64

/* The shared writable mappings this worker had when it started. */
static struct {
	uintptr_t	 start;
	uintptr_t	 end;
} shared_maps[TESTHOOK_MAPS];
static size_t		 nshared_maps;
/* The metrics region, where the master mapped it, and its length. */
static uintptr_t	 metrics_region;
static size_t		 metrics_region_len;
static sigjmp_buf	 probe_env;

static void	testhook_socket(const char *, char *, size_t);
static void	testhook_scribble(char *, size_t);
static void	testhook_dns(int, const char *, char *, size_t);
static int	testhook_listeners(int);
static void	testhook_listener_opt(char *, size_t);
static void	testhook_fault(int);
static int	testhook_probe(uintptr_t);
static void	testhook_metrics(char *, size_t);
static void	testhook_forge(const struct smtpd_conf *, int, int, int,
		    char *, size_t);
static void	testhook_mail(const char *, char *, size_t);
static void	testhook_replay(const struct smtpd_conf *, int, char *,
		    size_t);
static void	testhook_escape(char *, size_t);
static void	testhook_message(struct envelope *, struct message *, char **,
		    const char *, const char *, const char *);
static void	testhook_post(int, const char *, const char *, const char *,
		    char *, size_t);
static void	testhook_flood(const struct smtpd_conf *, int, const char *,
		    char *, size_t);
static int	testhook_ctl(void);
static void	testhook_claim(int, const char *, char *, size_t);
static void	testhook_sign(const char *, char *, size_t);
static void	testhook_buffer(const struct smtpd_conf *, int, const char *,
		    char *, size_t);
static __dead void testhook_overstay(void);

/*
 * Before the sandbox (it can no longer read /proc then): note every
 * mapping that is shared and writable, which a worker taken over could
 * use to corrupt another process.
 */
void
testhook_worker_start(void)
{
	FILE		*f;
	char		 line[512], perms[8];
	unsigned long	 a, b;

	if ((f = fopen("/proc/self/maps", "r")) == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL &&
	    nshared_maps < TESTHOOK_MAPS) {
		if (sscanf(line, "%lx-%lx %7s", &a, &b, perms) != 3)
			continue;
		if (perms[1] == 'w' && perms[3] == 's') {
			shared_maps[nshared_maps].start = a;
			shared_maps[nshared_maps].end = b;
			nshared_maps++;
		}
	}
	fclose(f);
}

/* In the worker, before its metrics slot replaces the region. */
void
testhook_metrics_region(const void *p, size_t len)
{
	metrics_region = (uintptr_t)p;
	metrics_region_len = len;
}

static void
testhook_fault(int sig)
{
	(void)sig;
	siglongjmp(probe_env, 1);
}

/*
 * What is at address a for this process: 0 nothing (a read faults), 1
 * memory it may only read, 2 memory it may write (the byte read is
 * written back: whatever is there now stays as it was).
 */
static int
testhook_probe(uintptr_t a)
{
	struct sigaction	 sa, osegv, obus;
	volatile unsigned char	*p = (volatile unsigned char *)a;
	volatile int		 r = 0;
	unsigned char		 c;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = testhook_fault;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &osegv);
	sigaction(SIGBUS, &sa, &obus);
	if (sigsetjmp(probe_env, 1) == 0) {
		c = *p;
		r = 1;
		*p = c;
		r = 2;
	}
	sigaction(SIGSEGV, &osegv, NULL);
	sigaction(SIGBUS, &obus, NULL);
	return r;
}

/*
 * METRICS: what a worker taken over would do to /healthz.  First, is
 * the metrics region's header, or the master's slot, still there for
 * it, where the master mapped them; then 0xff over every shared
 * writable mapping it has, and random bytes over the second half of
 * each.
 */
static void
testhook_metrics(char *what, size_t len)
{
	static const char *const state[] = { "not mapped", "read-only",
	    "writable" };
	uintptr_t	 a;
	size_t		 i, n, bytes = 0;
	int		 header = -1, master = -1;

	if (metrics_region != 0 && metrics_region_len >=
	    metrics_offset(METRICS_SLOT_MASTER + 1)) {
		header = testhook_probe(metrics_region);
		master = testhook_probe(metrics_region +
		    metrics_offset(METRICS_SLOT_MASTER));
	}
	for (i = 0; i < nshared_maps; i++) {
		a = shared_maps[i].start;
		n = shared_maps[i].end - a;
		memset((void *)a, 0xff, n);
		arc4random_buf((void *)(a + n / 2), n - n / 2);
		bytes += n;
	}
	snprintf(what, len, "metrics: header %s, master's slot %s; "
	    "scribbled over %zu shared writable mappings (%zu bytes)",
	    header == -1 ? "unknown" : state[header],
	    master == -1 ? "unknown" : state[master], nshared_maps, bytes);
}

/*
 * What an attacker in a worker would do to the master through shared
 * memory: store a huge count at the start of every shared writable
 * mapping and mark every 32-bit word after it BUSY (2).
 */
static void
testhook_scribble(char *what, size_t len)
{
	size_t		 i, words = 0;
	uint32_t	*p;

	for (i = 0; i < nshared_maps; i++) {
		p = (uint32_t *)shared_maps[i].start;
		*p++ = 0xffffffffU;
		for (; (uintptr_t)(p + 1) <= shared_maps[i].end; p++, words++)
			*p = 2;
	}
	snprintf(what, len, "scribbled over %zu shared writable mappings "
	    "(%zu words)", nshared_maps, words);
}

/* SOCKET TCP|MPTCP|UDP|RAW, UNIX-DGRAM path: make it and use it. */
static void
testhook_socket(const char *args, char *what, size_t len)
{
	struct sockaddr_in	 sin;
	struct sockaddr_un	 sun;
	int			 fd, type = SOCK_STREAM, proto = 0;
	const char		*kind = args + 7;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons(9);
	if (strncasecmp(args, "UNIX-DGRAM ", 11) == 0) {
		memset(&sun, 0, sizeof(sun));
		sun.sun_family = AF_UNIX;
		strlcpy(sun.sun_path, args + 11, sizeof(sun.sun_path));
		if ((fd = socket(AF_UNIX, SOCK_DGRAM, 0)) == -1)
			snprintf(what, len, "socket: %s", strerror(errno));
		else if (sendto(fd, "x", 1, 0, (struct sockaddr *)&sun,
		    sizeof(sun)) == -1)
			snprintf(what, len, "sendto: %s", strerror(errno));
		else
			snprintf(what, len, "sendto: sent");
		return;
	}
	if (strcasecmp(kind, "MPTCP") == 0)
		proto = IPPROTO_MPTCP;
	else if (strcasecmp(kind, "UDP") == 0)
		type = SOCK_DGRAM;
	else if (strcasecmp(kind, "RAW") == 0) {
		type = SOCK_RAW;
		proto = IPPROTO_ICMP;
	} else if (strcasecmp(kind, "TCP") != 0) {
		snprintf(what, len, "unknown socket kind");
		return;
	}
	if ((fd = socket(AF_INET, type, proto)) == -1)
		snprintf(what, len, "socket: %s", strerror(errno));
	else if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1)
		snprintf(what, len, "connect: %s", strerror(errno));
	else
		snprintf(what, len, "connect: connected");
}

/*
 * "DNS TYPE NAME": ask the relay as SPF or DKIM would, and say what
 * came back: status, then each record (A and AAAA as addresses, the
 * others as text), separated by '|'.
 */
static void
testhook_dns(int chan, const char *args, char *what, size_t len)
{
	static struct dns_answer	 ans;
	struct dns_ctx			 ctx;
	struct dns_chan			 dc;
	char				 a[INET6_ADDRSTRLEN];
	size_t				 i, o;
	int				 type;

	if (strncasecmp(args, "TXT ", 4) == 0)
		type = DNS_T_TXT;
	else if (strncasecmp(args, "A ", 2) == 0)
		type = DNS_T_A;
	else if (strncasecmp(args, "AAAA ", 5) == 0)
		type = DNS_T_AAAA;
	else if (strncasecmp(args, "MX ", 3) == 0)
		type = DNS_T_MX;
	else if (strncasecmp(args, "PTR ", 4) == 0)
		type = DNS_T_PTR;
	else {
		snprintf(what, len, "dns: unknown type");
		return;
	}
	args = strchr(args, ' ') + 1;
	dns_chan_init(&ctx, &dc, chan);
	dns_lookup(&ctx, args, type, &ans);
	o = (size_t)snprintf(what, len, "dns: status %d", ans.status);
	for (i = 0; i < ans.nrr && o < len; i++) {
		if (type == DNS_T_A || type == DNS_T_AAAA)
			o += (size_t)snprintf(what + o, len - o, "|%s",
			    inet_ntop(type == DNS_T_A ? AF_INET : AF_INET6,
			    ans.rr[i].data, a, sizeof(a)) ? a : "?");
		else
			o += (size_t)snprintf(what + o, len - o, "|%.*s",
			    (int)ans.rr[i].len, (const char *)ans.rr[i].data);
	}
}

/*
 * The listening sockets this worker holds (the first 256 descriptors);
 * with shut, each is also shut down for reading and writing.
 */
static int
testhook_listeners(int shut)
{
	int		 fd, on, n = 0;
	socklen_t	 len;

	for (fd = 0; fd < 256; fd++) {
		len = sizeof(on);
		if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == -1 ||
		    !on)
			continue;
		n++;
		if (shut && shutdown(fd, SHUT_RDWR) == -1)
			return -errno;
	}
	return n;
}

/* The worker's control socket: its one SOCK_SEQPACKET; -1 if none. */
static int
testhook_ctl(void)
{
	socklen_t	 len;
	int		 fd, type;

	for (fd = 0; fd < 256; fd++) {
		len = sizeof(type);
		if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 &&
		    type == SOCK_SEQPACKET)
			return fd;
	}
	return -1;
}

/*
 * "CLAIM ADDR": in the middle of a session, say it is over and claim
 * the next one, with this very connection, for another client's
 * address (what would move this session's count onto someone else);
 * the answer says whether the master believed it.
 */
static void
testhook_claim(int client, const char *args, char *what, size_t len)
{
	struct sockaddr_storage	 ss;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&ss;
	struct ctl_claim	 c;
	struct ctl_answer	 a;
	uint32_t		 release = CTL_RELEASE;
	int			 ctl = testhook_ctl();

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, args, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(40000);
	} else if (inet_pton(AF_INET6, args, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(40000);
	} else {
		snprintf(what, len, "claim: bad address");
		return;
	}
	memset(&c, 0, sizeof(c));
	c.type = CTL_CLAIM;
	addr_pack(&ss, &c);
	if (send(ctl, &release, sizeof(release), MSG_NOSIGNAL) == -1 ||
	    fd_send_rec(ctl, client, &c, sizeof(c), 0) == -1 ||
	    recv(ctl, &a, sizeof(a), 0) != sizeof(a))
		snprintf(what, len, "claim: %s", strerror(errno));
	else
		snprintf(what, len, "claim: %s", a.reply == -1 ? "served" :
		    "refused");
}

/*
 * "MAIL N": ask the master N times whether a message may start, as
 * no session does, and say how many it refused; "MAIL-IDLE": say the
 * session is over, then ask (a worker that is not serving).
 */
static void
testhook_mail(const char *args, char *what, size_t len)
{
	struct ctl_answer	 a;
	uint32_t		 release = CTL_RELEASE, type = CTL_MAIL;
	int			 ctl = testhook_ctl(), i, n, refused = 0;

	if (strcasecmp(args, "-IDLE") == 0) {
		n = 1;
		(void)send(ctl, &release, sizeof(release), MSG_NOSIGNAL);
	} else
		n = (int)strtonum(args + 1, 1, 1000, NULL);
	for (i = 0; i < n; i++) {
		if (send(ctl, &type, sizeof(type), MSG_NOSIGNAL) == -1 ||
		    recv(ctl, &a, sizeof(a), 0) != sizeof(a)) {
			snprintf(what, len, "mail: %s", strerror(errno));
			return;
		}
		refused += a.reply != -1;
	}
	snprintf(what, len, "mail: %d of %d refused", refused, n);
}

/*
 * "SIGN N": ask the master for N signatures of the TLS key in a row,
 * as no handshake does; say how many it refused.
 */
static void
testhook_sign(const char *args, char *what, size_t len)
{
	struct ctl_sign		 m;
	struct tls_sign_res	 res;
	int			 ctl = testhook_ctl(), i, n, refused = 0;

	n = (int)strtonum(args, 1, 1000, NULL);
	memset(&m, 0, sizeof(m));
	m.type = CTL_TLS_SIGN;
	m.req.op = TLS_OP_ECDSA_SIGN;
	m.req.len = 32;		/* a SHA-256 digest */
	for (i = 0; i < n; i++) {
		m.req.in[0] = (uint8_t)i;
		if (send(ctl, &m, sizeof(m), MSG_NOSIGNAL) != sizeof(m) ||
		    recv(ctl, &res, sizeof(res), 0) != sizeof(res)) {
			snprintf(what, len, "sign: %s", strerror(errno));
			return;
		}
		refused += res.status == TLS_SIGN_REFUSED;
	}
	snprintf(what, len, "sign: %d of %d refused", refused, n);
}

/*
 * "BUFFER [LEN]": announce an inbound message of LEN octets on the
 * relay channel (by default the largest the relay takes, as relay_main()
 * computes it), send a few of them, and leave the rest to come never.
 */
static void
testhook_buffer(const struct smtpd_conf *conf, int chan, const char *args,
    char *what, size_t len)
{
	struct {
		struct chan_hdr	 h;
		uint8_t		 body[64];
	}			 m;
	long long		 want;
	ssize_t			 n;

	want = conf->max_size * 32 + 1024 * 1024;
	if (*args != '\0')
		want = strtonum(args, 1, UINT32_MAX, NULL);
	memset(&m, 0, sizeof(m));
	m.h.version = CHAN_VERSION;
	m.h.type = CHAN_INBOUND;
	m.h.id = 1;
	m.h.len = (uint32_t)want;
	n = write(chan, &m, sizeof(m));
	snprintf(what, len, "channel: announced %lld, wrote %zd", want, n);
}

/* "OVERSTAY": keep the session, and time, no more: no signal, no read. */
static __dead void
testhook_overstay(void)
{
	sigset_t	 all;

	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, NULL);
	for (;;)
		sleep(1);
}

/* The envelope and message of a hook's own, to RCPT's one recipient. */
static void
testhook_message(struct envelope *env, struct message *msg, char **rcpts,
    const char *from, const char *helo, const char *id)
{
	memset(env, 0, sizeof(*env));
	env->session = "0123456789abcdef";
	env->from = from;
	env->helo = helo;
	env->rcpts = rcpts;
	env->nrcpts = 1;
	memset(msg, 0, sizeof(*msg));
	strlcpy(msg->id, id, sizeof(msg->id));
}

/* A payload of the worker's to the relay, and what it answered. */
static void
testhook_post(int chan, const char *id, const char *json, const char *tag,
    char *what, size_t len)
{
	struct chan_inbound	 in;
	struct chan_verdict	 v;

	memset(&in, 0, sizeof(in));
	strlcpy(in.session, "0123456789abcdef", sizeof(in.session));
	strlcpy(in.msgid, id, sizeof(in.msgid));
	if (chan_request(chan, CHAN_INBOUND, &in, sizeof(in), json,
	    strlen(json), CHAN_VERDICT, &v, sizeof(v), 30000) == -1)
		snprintf(what, len, "%s: relay: %s", tag, strerror(errno));
	else
		snprintf(what, len, "%s: relay: verdict %d status %d", tag,
		    (int)v.kind, (int)v.status);
}

/*
 * FORGE: what a worker taken over would hand on.  The message it
 * gives the verifier is its own (unsigned, From the victim); the
 * payload it gives the relay names another sender, another token,
 * another client and a strong verdict (clean: nothing, the payload a
 * worker sends; subject: another token as the subject; received:
 * nothing, and a field of ours slipped into our Received).  What FIRM
 * receives, if anything, is the test's to see.
 */
static void
testhook_forge(const struct smtpd_conf *conf, int chan, int vchan,
    int mode, char *what, size_t len)
{
	static char		 buf[1024];
	struct envelope		 env;
	struct message		 msg;
	char			*rcpts[1] = { "test@example.org" };
	const char		*json;
	int			 n;

	testhook_message(&env, &msg, rcpts, "victim@victim.example",
	    "mail.victim.example", "fedcba9876543210");
	/* mode 2: a field of ours smuggled in as part of our Received */
	n = snprintf(buf, sizeof(buf), "Received: from forged\r\n%s"
	    "From: <victim@victim.example>\r\n"
	    "Subject: FIRM-TOKEN:FORG-EDTO-KEN1\r\n\r\nhello\r\n",
	    mode == 2 ? "Authentication-Results: test.example; dkim=pass "
	    "header.d=victim.example\r\n" : "");
	msg.buf = buf;
	msg.len = (size_t)n;
	msg.hdrlen = strlen("Received: from forged\r\n") + (mode == 2 ?
	    strlen("Authentication-Results: test.example; dkim=pass "
	    "header.d=victim.example\r\n") : 0);
	if (payload_verify(conf, &env, &msg, vchan) == -1) {
		snprintf(what, len, "forge: verifier: %s", strerror(errno));
		return;
	}
	json = mode == 0 ? "{\"from\":\"ceo@bank.example\","
	    "\"token\":\"FIRM-TOKEN:STOL-ENTO-KEN0\","
	    "\"client_ip\":\"192.0.2.1\","
	    "\"auth\":{\"verdict\":\"strong\"}}" :
	    mode == 3 ? "{\"subject\":\"FIRM-TOKEN:STOL-ENTO-KEN0\"}" : "{}";
	testhook_post(chan, msg.id, json, "forge", what, len);
}

/*
 * FLOOD N: N messages to the verifier and no payload to the relay, as
 * fast as the channel takes them.
 */
static void
testhook_flood(const struct smtpd_conf *conf, int vchan, const char *args,
    char *what, size_t len)
{
	static char	 buf[] = "Received: from flood\r\n"
	    "From: <a@flood.example>\r\nSubject: no token\r\n\r\nx\r\n";
	struct envelope	 env;
	struct message	 msg;
	char		*rcpts[1] = { "test@example.org" };
	long		 i, n = strtol(args, NULL, 10);

	testhook_message(&env, &msg, rcpts, "a@flood.example",
	    "flood.example", "0123456789abcdef");
	msg.buf = buf;
	msg.len = sizeof(buf) - 1;
	msg.hdrlen = strlen("Received: from flood\r\n");
	for (i = 0; i < n; i++)
		if (payload_verify(conf, &env, &msg, vchan) == -1)
			break;
	snprintf(what, len, "flood: %ld of %ld sent", i, n);
}

/*
 * REPLAY: a second payload for the message this session just sent,
 * with no message for it to the verifier.
 */
static void
testhook_replay(const struct smtpd_conf *conf, int chan, char *what,
    size_t len)
{
	(void)conf;
	testhook_post(chan, "0123456789abcdef", "{}",
	    "replay", what, len);
}

/*
 * ESCAPE: without Landlock, a directory descriptor is a way out of the
 * chroot (openat(fd, "../../etc/passwd")).  Which ones does this worker
 * hold?
 */
static void
testhook_escape(char *what, size_t len)
{
	struct stat	 st;
	size_t		 o;
	int		 fd, n = 0;

	o = (size_t)snprintf(what, len, "directory descriptors:");
	for (fd = 0; fd < 1024; fd++) {
		if (fstat(fd, &st) == -1 || !S_ISDIR(st.st_mode))
			continue;
		n++;
		if (o < len)
			o += (size_t)snprintf(what + o, len - o, " %d", fd);
	}
	if (n == 0)
		snprintf(what, len, "directory descriptors: none");
}

/*
 * What would hold every session of the MX: on each listening socket
 * this worker holds, accept only once a client has talked (which an
 * SMTP client, waiting for the greeting, never does first) and a
 * receive buffer of nothing.
 */
static void
testhook_listener_opt(char *what, size_t len)
{
	int		 fd, on, defer = 30, rcvbuf = 1, n = 0;
	socklen_t	 olen;

	for (fd = 0; fd < 256; fd++) {
		olen = sizeof(on);
		if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &olen) ==
		    -1 || !on)
			continue;
		if (setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer,
		    sizeof(defer)) == -1 || setsockopt(fd, SOL_SOCKET,
		    SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) == -1) {
			snprintf(what, len, "setsockopt: %s", strerror(errno));
			return;
		}
		n++;
	}
	snprintf(what, len, "listening sockets set: %d", n);
}

void
testhook_run(const struct smtpd_conf *conf, int client, int chan, int vchan,
    const char *args, char *what, size_t len)
{
	struct sockaddr_in	 sin;
	void			*p;
	pid_t			 pid;
	int			 fd;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (strcasecmp(args, "FORGE") == 0)
		testhook_forge(conf, chan, vchan, 0, what, len);
	else if (strcasecmp(args, "FORGE-CLEAN") == 0)
		testhook_forge(conf, chan, vchan, 1, what, len);
	else if (strcasecmp(args, "FORGE-RECEIVED") == 0)
		testhook_forge(conf, chan, vchan, 2, what, len);
	else if (strcasecmp(args, "FORGE-SUBJECT") == 0)
		testhook_forge(conf, chan, vchan, 3, what, len);
	else if (strncasecmp(args, "FLOOD ", 6) == 0)
		testhook_flood(conf, vchan, args + 6, what, len);
	else if (strcasecmp(args, "REPLAY") == 0)
		testhook_replay(conf, chan, what, len);
	else if (strcasecmp(args, "ESCAPE") == 0)
		testhook_escape(what, len);
	else if (strncasecmp(args, "CLAIM ", 6) == 0)
		testhook_claim(client, args + 6, what, len);
	else if (strncasecmp(args, "MAIL", 4) == 0)
		testhook_mail(args + 4, what, len);
	else if (strncasecmp(args, "SIGN ", 5) == 0)
		testhook_sign(args + 5, what, len);
	else if (strcasecmp(args, "BUFFER") == 0 ||
	    strncasecmp(args, "BUFFER ", 7) == 0)
		testhook_buffer(conf, chan, args + 6 + (args[6] == ' '), what,
		    len);
	else if (strcasecmp(args, "OVERSTAY") == 0)
		testhook_overstay();
	else if (strcasecmp(args, "BANLIST-WRITE") == 0)
		strlcpy(what, banlist_test_write(conf->banlist), len);
	else if (strcasecmp(args, "SHM-SCRIBBLE") == 0)
		testhook_scribble(what, len);
	else if (strcasecmp(args, "METRICS") == 0)
		testhook_metrics(what, len);
	else if (strcasecmp(args, "METRICS-GROW") == 0) {
		/* a shared mapping grown reaches the next slots */
		p = mremap(metrics_self, metrics_stride(),
		    2 * metrics_stride(), MREMAP_MAYMOVE);
		snprintf(what, len, "mremap: %s",
		    p == MAP_FAILED ? strerror(errno) : "grown");
	}
	else if (strncasecmp(args, "DNS ", 4) == 0)
		testhook_dns(chan, args + 4, what, len);
	else if (strcasecmp(args, "DNS-BAD") == 0) {
		/* a question whose name no resolver takes */
		static const uint8_t bad[] = { 1, 0, CHAN_DNS_QUERY, 0,
		    9, 0, 0, 0, 9, 0, 0, 0, DNS_T_TXT, 0, 5, 0, 'a', '\\', 'b',
		    '.', 'c' };
		ssize_t n = write(chan, bad, sizeof(bad));

		snprintf(what, len, "channel: %zd bytes of a bad question", n);
	} else if (strcasecmp(args, "CHAN-GARBAGE") == 0) {
		/* a header of a version the relay does not speak */
		static const uint8_t junk[] = { 0x07, 0x00, 0x01, 0x00,
		    1, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 'x', 'y', 'z', '!' };
		ssize_t n = write(chan, junk, sizeof(junk));

		snprintf(what, len, "channel: %zd bytes of garbage", n);
	}
	else if (strcasecmp(args, "OPEN-PASSWD") == 0) {
		fd = open("/etc/passwd", O_RDONLY);
		snprintf(what, len, "open /etc/passwd: %s",
		    fd == -1 ? strerror(errno) : "opened");
	} else if (strcasecmp(args, "EXEC-SH") == 0) {
		execl("/bin/sh", "sh", "-c", "exit 0", (char *)NULL);
		snprintf(what, len, "execve: %s", strerror(errno));
	} else if (strcasecmp(args, "FORK") == 0) {
		if ((pid = fork()) == 0)
			_exit(0);
		snprintf(what, len, "fork: %s",
		    pid == -1 ? strerror(errno) : "forked");
	} else if (strcasecmp(args, "PTRACE") == 0) {
		long r = ptrace(PTRACE_ATTACH, getppid(), NULL, NULL);

		snprintf(what, len, "ptrace: %s",
		    r == -1 ? strerror(errno) : "attached");
	} else if (strcasecmp(args, "LISTEN") == 0) {
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd == -1)
			snprintf(what, len, "socket: %s", strerror(errno));
		else if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
		    listen(fd, 5) == -1)
			snprintf(what, len, "listen: %s", strerror(errno));
		else
			snprintf(what, len, "listen: listening");
	} else if (strncasecmp(args, "SOCKET ", 7) == 0 ||
	    strncasecmp(args, "UNIX-DGRAM ", 11) == 0)
		testhook_socket(args, what, len);
	else if (strcasecmp(args, "MMAP-RWX") == 0) {
		p = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		snprintf(what, len, "mmap: %s",
		    p == MAP_FAILED ? strerror(errno) : "mapped");
	} else if (strcasecmp(args, "MMAP-ANON-EXEC") == 0) {
		/* the descriptor is ignored for an anonymous mapping */
		p = mmap(NULL, 4096, PROT_READ | PROT_EXEC,
		    MAP_PRIVATE | MAP_ANONYMOUS, 0, 0);
		snprintf(what, len, "mmap: %s",
		    p == MAP_FAILED ? strerror(errno) : "mapped");
	} else if (strcasecmp(args, "FCNTL-SETOWN") == 0) {
		int r = fcntl(client, F_SETOWN, getppid());

		snprintf(what, len, "fcntl: %s",
		    r == -1 ? strerror(errno) : "owner set");
	} else if (strcasecmp(args, "FCNTL-SETSIG") == 0) {
		int r = fcntl(client, F_SETSIG, SIGKILL);

		snprintf(what, len, "fcntl: %s",
		    r == -1 ? strerror(errno) : "signal set");
	} else if (strcasecmp(args, "KILL-MASTER") == 0) {
		int r = kill(getppid(), SIGTERM);

		snprintf(what, len, "kill: %s",
		    r == -1 ? strerror(errno) : "sent");
	} else if (strcasecmp(args, "LISTENERS") == 0) {
		snprintf(what, len, "listening sockets: %d",
		    testhook_listeners(0));
	} else if (strcasecmp(args, "LISTENER-OPT") == 0) {
		testhook_listener_opt(what, len);
	} else if (strcasecmp(args, "SHUTDOWN-LISTENERS") == 0) {
		/* what would take the MX off the air for every worker */
		snprintf(what, len, "shut down: %d", testhook_listeners(1));
	} else if (strcasecmp(args, "HEAP-OVERFLOW") == 0) {
		/* for the sanitizer pass: a report must get out of here */
		volatile size_t n = 16;		/* a size UBSan cannot see */
		volatile char *v = malloc(n);

		if (v != NULL) {
			snprintf(what, len, "read past the end: %d", v[16]);
			free((void *)(uintptr_t)v);
		}
	} else if (strcasecmp(args, "INT-OVERFLOW") == 0) {
		volatile int i = INT_MAX;

		snprintf(what, len, "INT_MAX + 1: %d", i + 1);
	} else if (strcasecmp(args, "SEGV") == 0) {
		raise(SIGSEGV);
		strlcpy(what, "still alive", len);
	} else
		strlcpy(what, "unknown hook", len);
}
