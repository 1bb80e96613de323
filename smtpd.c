/*
 * smtpd: the master.  Parses and checks the flags, opens everything
 * that needs root, and keeps a pool of preforked workers, each of
 * which serves one SMTP session and exits.  The master never reads a
 * byte from a client.
 */

#include <sys/types.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>
#include <tls.h>

#include "smtpd.h"

volatile sig_atomic_t	 smtpd_stop;
volatile sig_atomic_t	 smtpd_reload;
static volatile sig_atomic_t smtpd_child;
static volatile sig_atomic_t worker_retire;

static struct smtpd_conf	 conf;
static struct shared_state	*shm;
/*
 * Which process has which slot, and of which generation: the master's
 * own memory.  The shared slots are writable by every worker, so the
 * master never takes a pid to signal from them.
 */
static pid_t			*worker_pid;
static uint32_t			*worker_gen;
static size_t			 shm_size;
static int			 notify_pipe[2] = { -1, -1 };
static int			 alive_pipe[2] = { -1, -1 };
static uint32_t			 generation;
static pid_t			 fetcher_pid = -1;
static time_t			 fetcher_started;	/* CLOCK_MONOTONIC */

enum {
	OPT_SMTPS = 256, OPT_SPOOL, OPT_API_SECRET, OPT_API_TIMEOUT,
	OPT_CA_FILE, OPT_MAX_RCPT, OPT_SPARE, OPT_MAX_ERRORS, OPT_POLL,
	OPT_BANLIST_CACHE, OPT_TLS_CERT, OPT_TLS_KEY, OPT_REQUIRE_TLS,
	OPT_PROXY_FROM, OPT_HEALTH, OPT_GRACE, OPT_REJECT_BARE_LF,
	OPT_GREET_DELAY, OPT_FETCH_ONLY
};

static const struct option longopts[] = {
	{ "debug",		no_argument,		NULL, 'd' },
	{ "verbose",		no_argument,		NULL, 'v' },
	{ "inetd",		no_argument,		NULL, 'i' },
	{ "config-test",	no_argument,		NULL, 'n' },
	{ "check-cert",		no_argument,		NULL, 'C' },
	{ "version",		no_argument,		NULL, 'V' },
	{ "help",		no_argument,		NULL, 'h' },
	{ "listen",		required_argument,	NULL, 'l' },
	{ "smtps",		required_argument,	NULL, OPT_SMTPS },
	{ "hostname",		required_argument,	NULL, 'H' },
	{ "recipient",		required_argument,	NULL, 'r' },
	{ "api",		required_argument,	NULL, 'a' },
	{ "spool",		required_argument,	NULL, OPT_SPOOL },
	{ "api-secret",		required_argument,	NULL, OPT_API_SECRET },
	{ "api-timeout",	required_argument,	NULL, OPT_API_TIMEOUT },
	{ "ca-file",		required_argument,	NULL, OPT_CA_FILE },
	{ "max-size",		required_argument,	NULL, 's' },
	{ "max-rcpt",		required_argument,	NULL, OPT_MAX_RCPT },
	{ "max-sessions",	required_argument,	NULL, 'c' },
	{ "max-per-ip",		required_argument,	NULL, 'p' },
	{ "spare",		required_argument,	NULL, OPT_SPARE },
	{ "timeout",		required_argument,	NULL, 't' },
	{ "max-errors",		required_argument,	NULL, OPT_MAX_ERRORS },
	{ "poll",		required_argument,	NULL, OPT_POLL },
	{ "banlist-cache",	required_argument,	NULL,
	    OPT_BANLIST_CACHE },
	{ "user",		required_argument,	NULL, 'u' },
	{ "tls-cert",		required_argument,	NULL, OPT_TLS_CERT },
	{ "tls-key",		required_argument,	NULL, OPT_TLS_KEY },
	{ "require-tls",	no_argument,		NULL, OPT_REQUIRE_TLS },
	{ "proxy-from",		required_argument,	NULL, OPT_PROXY_FROM },
	{ "health",		required_argument,	NULL, OPT_HEALTH },
	{ "grace",		required_argument,	NULL, OPT_GRACE },
	{ "reject-bare-lf",	no_argument,		NULL,
	    OPT_REJECT_BARE_LF },
	{ "greet-delay",	required_argument,	NULL, OPT_GREET_DELAY },
	{ "fetch-only",		no_argument,		NULL, OPT_FETCH_ONLY },
	{ NULL,			0,			NULL, 0 }
};

static __dead void usage(int);
static __dead void flag_error(const char *, const char *, ...)
		    __attribute__((__format__ (printf, 2, 3)));
static const char *flag_name(int);
static void	conf_defaults(struct smtpd_conf *);
static void	conf_parse(struct smtpd_conf *, int, char **);
static void	conf_check(struct smtpd_conf *);
static long long conf_number(const char *, const char *, long long,
		    long long);
static void	conf_listen(struct smtpd_conf *, const char *, const char *,
		    int);
static void	conf_recipient(struct smtpd_conf *, const char *);
static void	conf_proxy(struct smtpd_conf *, const char *);
static void	conf_user(struct smtpd_conf *);
static void	conf_spool(struct smtpd_conf *, int);
static void	conf_unsupported(const struct smtpd_conf *);
static void	conf_api_priv(struct smtpd_conf *);
static const char *conf_api_resolve(struct smtpd_conf *);
static void	banlist_setup_priv(struct smtpd_conf *);
static void	banlist_dir_priv(struct smtpd_conf *);
static int	banlist_attach_priv(struct smtpd_conf *);
static void	fetcher_start(void);
static time_t	monotime(void);
static void	master_tls_reload(void);
static void	listeners_bind_priv(struct smtpd_conf *);
static void	shared_create_priv(struct smtpd_conf *);
static void	master_signals(void);
static void	master_loop(void);
static void	master_reap(void);
static void	master_spawn(void);
static void	master_retire_old(void);
static __dead void master_shutdown(void);
static size_t	master_idle(void);
static void	master_kill_all(int);
static __dead void worker_main(int);
static int	worker_accept(struct session_ctx *);
static int	worker_listener_smtps(int);
static int	worker_claim(int, const struct sockaddr_storage *);
static __dead void inetd_main(void);
static void	sig_handler(int);

static const char *
flag_name(int ch)
{
	const struct option	*o;

	for (o = longopts; o->name != NULL; o++)
		if (o->val == ch)
			return o->name;
	return "?";
}

static __dead void
usage(int status)
{
	fprintf(status ? stderr : stdout,
	    "usage: smtpd [-CdhinVv] [-a url | --spool dir] -r address "
	    "[-c max-sessions]\n"
	    "\t[-H hostname] [-l addr:port] [-p max-per-ip] [-s max-size]\n"
	    "\t[-t timeout] [-u user] [--api-secret file] "
	    "[--api-timeout sec]\n"
	    "\t[--banlist-cache file] [--ca-file file] [--fetch-only]\n"
	    "\t[--grace sec] [--greet-delay ms] [--health addr:port]\n"
	    "\t[--max-errors n] [--max-rcpt n] [--poll sec] "
	    "[--proxy-from cidr]\n"
	    "\t[--reject-bare-lf] [--require-tls] [--smtps addr:port] "
	    "[--spare n]\n"
	    "\t[--tls-cert file --tls-key file]\n");
	exit(status);
}

/* One line naming the flag, exit 1: nothing is bound yet. */
static __dead void
flag_error(const char *flag, const char *fmt, ...)
{
	va_list	 ap;

	fprintf(stderr, "smtpd: --%s: ", flag);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

int
main(int argc, char *argv[])
{
	conf_defaults(&conf);
	conf_parse(&conf, argc, argv);
	conf_check(&conf);
	if (sodium_init() == -1)
		errx(1, "libsodium initialisation failed");
	json_object_seed(0);	/* reads /dev/urandom now, not sandboxed */

	conf_unsupported(&conf);
	if (conf.check_cert)
		return tls_check_cert(&conf, 1);
	if (conf.tls_cert != NULL && conf.config_test &&
	    tls_check_cert(&conf, 0) != 0)
		return 1;
	conf_user(&conf);
	conf_api_priv(&conf);
	conf_spool(&conf, !conf.config_test);
	banlist_setup_priv(&conf);
	if (conf.config_test) {
		printf("configuration OK\n");
		return 0;
	}

	if (conf.tls_cert != NULL) {
		char why[1024];

		if ((conf.tls = tls_server_setup_priv(&conf, why,
		    sizeof(why))) == NULL)
			errx(1, "%s", why);
	}
	if (conf.inetd) {
		sandbox_prepare_priv(&conf);
		inetd_main();
	}

	if (!conf.fetch_only)
		listeners_bind_priv(&conf);
	shared_create_priv(&conf);
	sandbox_prepare_priv(&conf);	/* knows the listening sockets */
	if (!conf.debug && daemon(0, 0) == -1)
		err(1, "daemon");
	log_init(conf.debug ? STDOUT_FILENO : -1, conf.verbose);
	if (geteuid() != 0)
		log_warnx("not started as root: workers keep uid %u, "
		    "--user is not applied", (unsigned)geteuid());
	master_signals();
	sandbox_master(&conf);
	log_event(LOG_INFO, "start", NULL, "{s:s, s:i, s:I, s:I}",
	    "version", SMTPD_VERSION, "listeners", (int)conf.nlisteners,
	    "spare", (json_int_t)conf.spare,
	    "max_sessions", (json_int_t)conf.max_sessions);
	master_loop();
	/* NOTREACHED */
	return 1;
}

static void
conf_defaults(struct smtpd_conf *c)
{
	memset(c, 0, sizeof(*c));
	c->spool_fd = -1;
	c->banlist_rwfd = -1;
	c->banlist_dirfd = -1;
	c->api_timeout = DEF_API_TIMEOUT;
	c->max_size = DEF_MAX_SIZE;
	c->max_rcpt = DEF_MAX_RCPT;
	c->max_sessions = DEF_MAX_SESSIONS;
	c->max_per_ip = DEF_MAX_PER_IP;
	c->spare = DEF_SPARE;
	c->timeout = DEF_TIMEOUT;
	c->max_errors = DEF_MAX_ERRORS;
	c->poll = DEF_POLL;
	c->grace = DEF_GRACE;
	c->banlist_cache = SMTPD_BANLIST_CACHE;
	if (gethostname(c->hostname, sizeof(c->hostname)) == -1 ||
	    c->hostname[0] == '\0')
		strlcpy(c->hostname, "localhost", sizeof(c->hostname));
}

static long long
conf_number(const char *flag, const char *arg, long long min, long long max)
{
	const char	*errstr;
	long long	 n;

	n = strtonum(arg, min, max, &errstr);
	if (errstr != NULL)
		flag_error(flag, "invalid value '%s' (%s; allowed %lld to "
		    "%lld)", arg, errstr, min, max);
	return n;
}

static void
conf_parse(struct smtpd_conf *c, int argc, char **argv)
{
	int	 ch, have_listen = 0;

	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":CdhinVvl:H:r:a:s:c:p:t:u:",
	    longopts, NULL)) != -1) {
		const char *f = flag_name(ch);

		switch (ch) {
		case 'C':
			c->check_cert = 1;
			break;
		case 'd':
			c->debug = 1;
			break;
		case 'h':
			usage(0);
		case 'i':
			c->inetd = 1;
			break;
		case 'n':
			c->config_test = 1;
			break;
		case 'V':
			printf("smtpd %s\n", SMTPD_VERSION);
			exit(0);
		case 'v':
			c->verbose++;
			break;
		case 'l':
			conf_listen(c, f, optarg, 0);
			have_listen = 1;
			break;
		case OPT_SMTPS:
			conf_listen(c, f, optarg, 1);
			break;
		case 'H':
			if (optarg[0] == '\0' || strlen(optarg) > 253 ||
			    strspn(optarg, "abcdefghijklmnopqrstuvwxyz"
			    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") !=
			    strlen(optarg))
				flag_error(f, "invalid host name '%s'", optarg);
			strlcpy(c->hostname, optarg, sizeof(c->hostname));
			break;
		case 'r':
			conf_recipient(c, optarg);
			break;
		case 'a':
			if (strncmp(optarg, "http://", 7) != 0 &&
			    strncmp(optarg, "https://", 8) != 0)
				flag_error(f, "'%s' is not an http:// or "
				    "https:// URL", optarg);
			c->api = optarg;
			break;
		case OPT_SPOOL:
			if (optarg[0] == '\0')
				flag_error(f, "empty directory name");
			c->spool = optarg;
			break;
		case OPT_API_SECRET:
			c->api_secret = optarg;
			break;
		case OPT_API_TIMEOUT:
			c->api_timeout = conf_number(f, optarg, 1, MAX_TIMEOUT);
			break;
		case OPT_CA_FILE:
			c->ca_file = optarg;
			break;
		case 's':
			c->max_size = conf_number(f, optarg, 1, MAX_MAX_SIZE);
			break;
		case OPT_MAX_RCPT:
			c->max_rcpt = conf_number(f, optarg, 1, MAX_MAX_RCPT);
			break;
		case 'c':
			c->max_sessions = conf_number(f, optarg, 1,
			    MAX_MAX_SESSIONS);
			break;
		case 'p':
			c->max_per_ip = conf_number(f, optarg, 1,
			    MAX_MAX_SESSIONS);
			break;
		case OPT_SPARE:
			c->spare = conf_number(f, optarg, 1, MAX_SPARE);
			break;
		case 't':
			c->timeout = conf_number(f, optarg, 1, MAX_TIMEOUT);
			break;
		case OPT_MAX_ERRORS:
			c->max_errors = conf_number(f, optarg, 1,
			    MAX_MAX_ERRORS);
			break;
		case OPT_POLL:
			c->poll = conf_number(f, optarg, 1, MAX_POLL);
			break;
		case OPT_BANLIST_CACHE:
			if (optarg[0] == '\0')
				flag_error(f, "empty file name");
			c->banlist_cache = optarg;
			break;
		case 'u':
			c->user = optarg;
			break;
		case OPT_TLS_CERT:
			c->tls_cert = optarg;
			break;
		case OPT_TLS_KEY:
			c->tls_key = optarg;
			break;
		case OPT_REQUIRE_TLS:
			c->require_tls = 1;
			break;
		case OPT_PROXY_FROM:
			conf_proxy(c, optarg);
			break;
		case OPT_HEALTH:
			c->health = optarg;
			break;
		case OPT_GRACE:
			c->grace = conf_number(f, optarg, 0, MAX_GRACE);
			break;
		case OPT_REJECT_BARE_LF:
			c->reject_bare_lf = 1;
			break;
		case OPT_GREET_DELAY:
			c->greet_delay = conf_number(f, optarg, 0,
			    MAX_GREET_DELAY);
			break;
		case OPT_FETCH_ONLY:
			c->fetch_only = 1;
			break;
		case ':':
			if (optopt != 0)
				flag_error(flag_name(optopt),
				    "missing argument");
			fprintf(stderr, "smtpd: %s: missing argument\n",
			    argv[optind - 1]);
			exit(1);
		default:
			if (optopt != 0)
				fprintf(stderr, "smtpd: -%c: unknown option\n",
				    optopt);
			else
				fprintf(stderr, "smtpd: %s: unknown option\n",
				    argv[optind - 1]);
			exit(1);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "smtpd: %s: unexpected argument\n",
		    argv[optind]);
		exit(1);
	}
	if (!have_listen && !c->inetd && !c->fetch_only)
		conf_listen(c, "listen", "*:25", 0);
}

static void
conf_check(struct smtpd_conf *c)
{
	size_t	 i;

	if (c->fetch_only) {
		if (c->api == NULL)
			flag_error("fetch-only", "needs --api");
		if (c->inetd || c->nlisteners > 0)
			flag_error("fetch-only", "serves no SMTP: no --inetd, "
			    "--listen or --smtps");
		return;
	}
	if (c->nrcpts == 0)
		flag_error("recipient", "at least one -r address is required");
	if (c->api == NULL && c->spool == NULL)
		flag_error("spool", "either --api or --spool is required");
	if (c->api != NULL && c->spool != NULL)
		flag_error("spool", "--api and --spool exclude each other");
	if (c->api_secret != NULL && c->api == NULL)
		flag_error("api-secret", "needs --api");
	if (c->ca_file != NULL && c->api == NULL)
		flag_error("ca-file", "needs --api");
	if ((c->tls_cert == NULL) != (c->tls_key == NULL))
		flag_error(c->tls_cert ? "tls-key" : "tls-cert",
		    "--tls-cert and --tls-key go together");
	if (c->require_tls && c->tls_cert == NULL)
		flag_error("require-tls", "needs --tls-cert and --tls-key");
	if (c->check_cert && c->tls_cert == NULL)
		flag_error("check-cert", "needs --tls-cert and --tls-key");
	for (i = 0; i < c->nlisteners; i++)
		if (c->listeners[i].smtps && c->tls_cert == NULL)
			flag_error("smtps", "needs --tls-cert and --tls-key");
	if (c->max_per_ip > c->max_sessions)
		c->max_per_ip = c->max_sessions;
	if (c->inetd && c->nlisteners > 0 && c->listeners[0].smtps)
		flag_error("smtps", "not available with --inetd");
}

/*
 * Parse ADDR:PORT ("127.0.0.1:2525", "[::1]:25", "*:25") and resolve
 * it now, so that a bad listener fails before anything is bound.
 */
static void
conf_listen(struct smtpd_conf *c, const char *flag, const char *arg,
    int smtps)
{
	struct addrinfo	 hints, *res, *ai;
	char		 host[256], *port;
	const char	*errstr;
	int		 e;

	if (strlcpy(host, arg, sizeof(host)) >= sizeof(host))
		flag_error(flag, "'%s' is too long", arg);
	if (host[0] == '[') {
		if ((port = strchr(host, ']')) == NULL || port[1] != ':')
			flag_error(flag, "'%s' is not [ADDR]:PORT", arg);
		*port = '\0';
		port += 2;
		memmove(host, host + 1, strlen(host));
	} else {
		if ((port = strrchr(host, ':')) == NULL)
			flag_error(flag, "'%s' is not ADDR:PORT", arg);
		*port++ = '\0';
	}
	(void)strtonum(port, 1, 65535, &errstr);
	if (errstr != NULL)
		flag_error(flag, "port '%s' in '%s' is %s", port, arg, errstr);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if (strcmp(host, "*") != 0 && host[0] != '\0' &&
	    strchr(host, ':') != NULL)
		hints.ai_flags |= AI_NUMERICHOST;
	e = getaddrinfo(strcmp(host, "*") == 0 || host[0] == '\0' ? NULL :
	    host, port, &hints, &res);
	if (e != 0)
		flag_error(flag, "'%s': %s", arg, gai_strerror(e));
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		struct listener *l;

		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		if (c->nlisteners == MAX_LISTENERS)
			flag_error(flag, "more than %d listening sockets",
			    MAX_LISTENERS);
		l = &c->listeners[c->nlisteners++];
		l->fd = -1;
		l->smtps = smtps;
		strlcpy(l->name, arg, sizeof(l->name));
		memcpy(&l->ss, ai->ai_addr, ai->ai_addrlen);
		l->sslen = ai->ai_addrlen;
	}
	freeaddrinfo(res);
}

/* "local@domain" or "@domain"; the domain compares case-insensitively. */
static void
conf_recipient(struct smtpd_conf *c, const char *arg)
{
	struct recipient_rule	*r;
	const char		*at;
	char			 path[SMTP_PATH_MAX + 3];
	const char		*rest;

	if (c->nrcpts == MAX_RECIPIENT_RULES)
		flag_error("recipient", "more than %d recipients",
		    MAX_RECIPIENT_RULES);
	if ((at = strrchr(arg, '@')) == NULL || at[1] == '\0')
		flag_error("recipient", "'%s' is not an address or @domain",
		    arg);
	/* check the syntax with the SMTP parser itself */
	if (at != arg) {
		char buf[SMTP_PATH_MAX + 1];

		if (snprintf(path, sizeof(path), "<%s>", arg) >=
		    (int)sizeof(path) || session_parse_path(path, buf,
		    sizeof(buf), &rest, 0) == -1 || *rest != '\0')
			flag_error("recipient", "'%s' is not a valid address",
			    arg);
	} else {
		char buf[SMTP_PATH_MAX + 1];

		if (snprintf(path, sizeof(path), "<x%s>", arg) >=
		    (int)sizeof(path) || session_parse_path(path, buf,
		    sizeof(buf), &rest, 0) == -1 || *rest != '\0')
			flag_error("recipient", "'%s' is not a valid domain",
			    arg);
	}
	r = &c->rcpts[c->nrcpts++];
	r->local = at == arg ? NULL : strndup(arg, (size_t)(at - arg));
	r->domain = strdup(at + 1);
	if ((at != arg && r->local == NULL) || r->domain == NULL)
		err(1, "strdup");
}

static void
conf_proxy(struct smtpd_conf *c, const char *arg)
{
	struct proxy_net	*p;
	char			 buf[INET6_ADDRSTRLEN + 8], *slash;
	const char		*errstr;
	int			 max;

	if (c->nproxy_from == MAX_PROXY_FROM)
		flag_error("proxy-from", "more than %d networks",
		    MAX_PROXY_FROM);
	if (strlcpy(buf, arg, sizeof(buf)) >= sizeof(buf))
		flag_error("proxy-from", "'%s' is not an address or CIDR", arg);
	p = &c->proxy_from[c->nproxy_from];
	if ((slash = strchr(buf, '/')) != NULL)
		*slash++ = '\0';
	if (inet_pton(AF_INET, buf, p->addr) == 1) {
		p->af = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, buf, p->addr) == 1) {
		p->af = AF_INET6;
		max = 128;
	} else
		flag_error("proxy-from", "'%s' is not an address or CIDR", arg);
	p->prefixlen = max;
	if (slash != NULL) {
		p->prefixlen = (int)strtonum(slash, 0, max, &errstr);
		if (errstr != NULL)
			flag_error("proxy-from", "prefix length in '%s' is %s",
			    arg, errstr);
	}
	c->nproxy_from++;
}

/* --user, else _smtpd, else nobody. */
static void
conf_user(struct smtpd_conf *c)
{
	struct passwd	*pw;

	if (c->user != NULL) {
		if ((pw = getpwnam(c->user)) == NULL)
			flag_error("user", "no such user '%s'", c->user);
	} else {
		c->user = SMTPD_USER;
		if ((pw = getpwnam(c->user)) == NULL) {
			c->user = SMTPD_USER_FALLBACK;
			if ((pw = getpwnam(c->user)) == NULL)
				flag_error("user", "neither %s nor %s exists",
				    SMTPD_USER, SMTPD_USER_FALLBACK);
		}
	}
	if (pw->pw_uid == 0)
		flag_error("user", "'%s' is root; workers must not run as root",
		    c->user);
	c->uid = pw->pw_uid;
	c->gid = pw->pw_gid;
	if (geteuid() != 0) {
		/* children keep our own identity */
		c->uid = geteuid();
		c->gid = getegid();
	}
}

/*
 * The spool directory must exist (it is created when missing and we
 * may) and be writable by the worker user.  It is opened once here:
 * workers write through the descriptor.
 */
static void
conf_spool(struct smtpd_conf *c, int create)
{
	struct stat	 st;
	int		 w;

	if (c->spool == NULL)
		return;
	if (stat(c->spool, &st) == -1) {
		if (errno != ENOENT)
			flag_error("spool", "%s: %s", c->spool,
			    strerror(errno));
		if (!create) {
			char parent[PATH_MAX], *slash;

			strlcpy(parent, c->spool, sizeof(parent));
			if ((slash = strrchr(parent, '/')) == NULL)
				strlcpy(parent, ".", sizeof(parent));
			else if (slash == parent)
				slash[1] = '\0';
			else
				*slash = '\0';
			if (stat(parent, &st) == -1 || !S_ISDIR(st.st_mode))
				flag_error("spool", "%s: parent directory "
				    "%s does not exist", c->spool, parent);
			return;
		}
		if (mkdir(c->spool, 0700) == -1)
			flag_error("spool", "mkdir %s: %s", c->spool,
			    strerror(errno));
		if (geteuid() == 0 && chown(c->spool, c->uid, c->gid) == -1)
			flag_error("spool", "chown %s: %s", c->spool,
			    strerror(errno));
		if (stat(c->spool, &st) == -1)
			flag_error("spool", "%s: %s", c->spool,
			    strerror(errno));
	}
	if (!S_ISDIR(st.st_mode))
		flag_error("spool", "%s is not a directory", c->spool);
	if (st.st_uid == c->uid)
		w = (st.st_mode & (S_IWUSR | S_IXUSR)) == (S_IWUSR | S_IXUSR);
	else if (st.st_gid == c->gid)
		w = (st.st_mode & (S_IWGRP | S_IXGRP)) == (S_IWGRP | S_IXGRP);
	else
		w = (st.st_mode & (S_IWOTH | S_IXOTH)) == (S_IWOTH | S_IXOTH);
	if (!w && c->uid == 0)
		w = 1;
	if (!w)
		flag_error("spool", "%s is not writable by user %s", c->spool,
		    c->user);
	if (!create)
		return;
	c->spool_fd = open(c->spool, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (c->spool_fd == -1)
		flag_error("spool", "open %s: %s", c->spool, strerror(errno));
}

/*
 * The FIRM API: the URL must parse, and what libcurl would read from
 * files later is read now, while we may, so that no sandboxed process
 * needs the file system for it: the signing key, the CA bundle (for
 * https) and the host's addresses.
 */
static void
conf_api_priv(struct smtpd_conf *c)
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
	if (!c->config_test && (why = conf_api_resolve(c)) != NULL)
		flag_error("api", "%s", why);
}

/*
 * Resolve the API host now (at start and on SIGHUP) and hand libcurl
 * the addresses, so no sandboxed process reads resolv.conf or loads NSS
 * modules.  Returns NULL, or the reason it failed.
 */
static const char *
conf_api_resolve(struct smtpd_conf *c)
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
	if (strcasecmp(host, "localhost") == 0 || (n > 10 &&
	    strcasecmp(host + n - 10, ".localhost") == 0)) {
		/* libcurl maps these to loopback itself (RFC 6761) */
		curl_free(host);
		return NULL;
	}
	if (host[0] == '[' || getaddrinfo(host, NULL, &hints, &res) == 0) {
		if (host[0] != '[')
			freeaddrinfo(res);
		curl_free(host);
		return NULL;	/* an address: nothing to resolve */
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

/*
 * The directory of --banlist-cache, opened once: the fetcher writes the
 * cache there (temporary file and rename), so it must belong to, or be
 * writable by, the worker user.  The default directory is created.
 */
static void
banlist_dir_priv(struct smtpd_conf *c)
{
	char		 dir[PATH_MAX], *slash;
	struct stat	 st;
	int		 deflt = strcmp(c->banlist_cache, SMTPD_BANLIST_CACHE) == 0;

	if (strlcpy(dir, c->banlist_cache, sizeof(dir)) >= sizeof(dir))
		flag_error("banlist-cache", "path too long");
	if ((slash = strrchr(dir, '/')) == NULL) {
		strlcpy(c->banlist_file, dir, sizeof(c->banlist_file));
		strlcpy(dir, ".", sizeof(dir));
	} else {
		if (strlcpy(c->banlist_file, slash + 1,
		    sizeof(c->banlist_file)) >= sizeof(c->banlist_file))
			flag_error("banlist-cache", "file name too long");
		if (slash == dir)
			slash[1] = '\0';
		else
			*slash = '\0';
	}
	if (c->banlist_file[0] == '\0')
		flag_error("banlist-cache", "'%s' names no file",
		    c->banlist_cache);
	if (stat(dir, &st) == -1 && errno == ENOENT && deflt &&
	    c->api != NULL && !c->config_test && !c->inetd) {
		/* /var/db/smtpd: made on first start, for the fetcher */
		(void)mkdir("/var/db", 0755);
		if (mkdir(dir, 0700) == -1 && errno != EEXIST)
			flag_error("banlist-cache", "mkdir %s: %s", dir,
			    strerror(errno));
		if (geteuid() == 0 && chown(dir, c->uid, c->gid) == -1)
			flag_error("banlist-cache", "chown %s: %s", dir,
			    strerror(errno));
	}
	if (strlcpy(c->banlist_dir, dir, sizeof(c->banlist_dir)) >=
	    sizeof(c->banlist_dir))
		flag_error("banlist-cache", "path too long");
	c->banlist_dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (c->banlist_dirfd == -1) {
		if (c->api != NULL && !c->inetd &&
		    !(deflt && c->config_test))
			flag_error("banlist-cache", "%s: %s", dir,
			    strerror(errno));
		return;		/* no cache to load; none to write */
	}
	if (c->api != NULL && !c->inetd &&
	    fstat(c->banlist_dirfd, &st) == 0 &&
	    geteuid() == 0 && st.st_uid != c->uid &&
	    (st.st_mode & S_IWOTH) == 0 &&
	    !(st.st_gid == c->gid && (st.st_mode & S_IWGRP)))
		flag_error("banlist-cache", "directory %s is not writable by "
		    "user %s", dir, c->user);
	if (c->fetch_only && snprintf(c->banlist_table,
	    sizeof(c->banlist_table), "%s/%s", dir, BANLIST_TABLE_NAME) >=
	    (int)sizeof(c->banlist_table))
		flag_error("banlist-cache", "path too long");
}

/*
 * The shared ban table: created here, filled from the cache so bans
 * hold from the first session, and mapped read-only for the workers.
 * With --fetch-only it is a file beside the cache, for -i sessions.
 */
static void
banlist_setup_priv(struct smtpd_conf *c)
{
	struct banlist_map	*rw;
	struct banlist_set	 set;
	json_t			*nets, *senders;
	size_t			 size = banlist_region_size(BANLIST_HALF_SIZE);
	int			 rwfd, rofd;

	banlist_dir_priv(c);
	if (c->config_test)
		return;
	if (c->inetd && banlist_attach_priv(c))
		return;
	if (c->fetch_only) {
		/*
		 * A fresh file of ours, in a directory the unprivileged
		 * user may write: no link followed, none reused.
		 */
		struct stat a, b;

		if (unlinkat(c->banlist_dirfd, BANLIST_TABLE_NAME, 0) == -1 &&
		    errno != ENOENT)
			err(1, "--banlist-cache: unlink %s", c->banlist_table);
		rwfd = openat(c->banlist_dirfd, BANLIST_TABLE_NAME, O_RDWR |
		    O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
		if (rwfd == -1 || ftruncate(rwfd, (off_t)size) == -1)
			err(1, "--banlist-cache: %s", c->banlist_table);
		rofd = openat(c->banlist_dirfd, BANLIST_TABLE_NAME, O_RDONLY |
		    O_NOFOLLOW | O_CLOEXEC);
		if (rofd == -1 || fstat(rwfd, &a) == -1 ||
		    fstat(rofd, &b) == -1 || a.st_ino != b.st_ino ||
		    a.st_dev != b.st_dev)
			errx(1, "--banlist-cache: %s was replaced under us",
			    c->banlist_table);
	} else if (sandbox_shm_create(size, &rwfd, &rofd) == -1)
		err(1, "ban table: shared memory");
	if ((rw = banlist_map(rwfd, size, 1)) == NULL)
		err(1, "ban table: mmap");
	banlist_init(rw);
	banlist_set_init(&set);
	if (c->banlist_dirfd != -1 && banlist_cache_read(c->banlist_dirfd,
	    c->banlist_file, &nets, &senders) == 0) {
		if (banlist_set_add_json(&set, nets, senders) == -1)
			errx(1, "--banlist-cache: out of memory");
		json_decref(nets);
		json_decref(senders);
		if (banlist_publish(rw, &set) == -1)
			errx(1, "--banlist-cache: %s does not fit in the table",
			    c->banlist_cache);
	}
	banlist_set_free(&set);
	banlist_unmap(rw);
	if ((c->banlist = banlist_map(rofd, size, 0)) == NULL)
		err(1, "ban table: mmap");
	close(rofd);
	if (c->api != NULL)
		c->banlist_rwfd = rwfd;
	else
		close(rwfd);
}

/*
 * -i: use the table of a running smtpd --fetch-only, found beside the
 * cache, when its fetcher is alive.  Returns 1 when attached.
 */
static int
banlist_attach_priv(struct smtpd_conf *c)
{
	struct banlist_map	*m;
	struct stat		 st;
	size_t			 size = banlist_region_size(BANLIST_HALF_SIZE);
	pid_t			 pid;
	int			 fd;

	if (c->banlist_dirfd == -1 || (fd = openat(c->banlist_dirfd,
	    BANLIST_TABLE_NAME, O_RDONLY | O_CLOEXEC | O_NOFOLLOW |
	    O_NONBLOCK)) == -1)
		return 0;
	/* only a table the (root) --fetch-only master made, not a plant */
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) ||
	    (st.st_uid != 0 && st.st_uid != geteuid()) ||
	    (size_t)st.st_size < size ||
	    (m = banlist_map(fd, size, 0)) == NULL) {
		close(fd);
		return 0;
	}
	close(fd);
	pid = banlist_writer(m);
	if (!banlist_valid(m) || pid <= 0 ||
	    (kill(pid, 0) == -1 && errno != EPERM)) {
		banlist_unmap(m);
		return 0;
	}
	c->banlist = m;
	return 1;
}

/* Seconds that only go forward, whatever happens to the clock. */
static time_t
monotime(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

/* The fetcher: polls FIRM for the lists, writes the table and cache. */
static void
fetcher_start(void)
{
	size_t	 i;
	pid_t	 pid;

	fetcher_started = monotime();
	switch (pid = fork()) {
	case -1:
		log_warn("fork fetcher");
		return;
	case 0:
		log_setproc("fetcher");
		close(notify_pipe[0]);
		close(notify_pipe[1]);
		close(alive_pipe[1]);
		for (i = 0; i < conf.nlisteners; i++)
			if (conf.listeners[i].fd != -1)
				close(conf.listeners[i].fd);
		if (conf.spool_fd != -1)
			close(conf.spool_fd);
		banlist_unmap(conf.banlist);
		conf.banlist = NULL;
		/* what only workers need: the TLS key, the session slots */
		if (conf.tls != NULL) {
			tls_free(conf.tls);
			conf.tls = NULL;
		}
		munmap(shm, shm_size);
		shm = NULL;
		sandbox_fetcher(&conf);
		banlist_fetcher_main(&conf, alive_pipe[0]);
	default:
		fetcher_pid = pid;
		if (conf.fetch_only) {
			struct banlist_map *m = banlist_map(conf.banlist_rwfd,
			    banlist_region_size(BANLIST_HALF_SIZE), 1);

			if (m != NULL) {
				banlist_set_writer(m, pid);
				banlist_unmap(m);
			}
		}
	}
}

/*
 * Flags whose features come with later releases are parsed and
 * checked, but refused here rather than silently ignored.
 */
static void
conf_unsupported(const struct smtpd_conf *c)
{
	const char	*flag = NULL;
	if (c->proxy_from[0].af != 0)
		flag = "proxy-from";
	else if (c->health != NULL)
		flag = "health";
	if (flag != NULL)
		flag_error(flag, "not supported by this build yet "
		    "(see CAVEATS in smtpd(8))");
}

static void
listeners_bind_priv(struct smtpd_conf *c)
{
	struct listener	*l;
	size_t		 i, n = 0;
	int		 on = 1;

	for (i = 0; i < c->nlisteners; i++) {
		l = &c->listeners[i];
		l->fd = socket(l->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, 0);
		if (l->fd == -1) {
			if (l->ss.ss_family == AF_INET6 &&
			    errno == EAFNOSUPPORT &&
			    strncmp(l->name, "*:", 2) == 0)
				continue;	/* no IPv6 on this host */
			err(1, "--listen %s: socket", l->name);
		}
		if (setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &on,
		    sizeof(on)) == -1)
			err(1, "--listen %s: SO_REUSEADDR", l->name);
		if (l->ss.ss_family == AF_INET6 && setsockopt(l->fd,
		    IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) == -1)
			err(1, "--listen %s: IPV6_V6ONLY", l->name);
		if (bind(l->fd, (struct sockaddr *)&l->ss, l->sslen) == -1)
			err(1, "--listen %s: bind", l->name);
		if (listen(l->fd, LISTEN_BACKLOG) == -1)
			err(1, "--listen %s: listen", l->name);
		n++;
	}
	if (n == 0)
		errx(1, "--listen: no listening socket could be opened");
}

static void
shared_create_priv(struct smtpd_conf *c)
{
	size_t	 nslots;

	nslots = (size_t)(c->max_sessions + c->spare + SLOT_SLACK);
	shm_size = sizeof(struct shared_state) +
	    nslots * sizeof(struct worker_slot);
	shm = mmap(NULL, shm_size, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shm == MAP_FAILED)
		err(1, "mmap shared state");
	shm->nslots = (uint32_t)nslots;
	worker_pid = calloc(nslots, sizeof(*worker_pid));
	worker_gen = calloc(nslots, sizeof(*worker_gen));
	if (worker_pid == NULL || worker_gen == NULL)
		err(1, "worker table");
	if (pipe2(notify_pipe, O_CLOEXEC | O_NONBLOCK) == -1 ||
	    pipe2(alive_pipe, O_CLOEXEC) == -1)
		err(1, "pipe");
}

static void
sig_handler(int sig)
{
	switch (sig) {
	case SIGTERM:
	case SIGINT:
		smtpd_stop = 1;
		break;
	case SIGHUP:
		smtpd_reload = 1;
		break;
	case SIGCHLD:
		smtpd_child = 1;
		break;
	case SIGUSR1:
		worker_retire = 1;
		break;
	}
}

/*
 * Signals stay blocked except inside ppoll(), so a signal can never
 * slip in between a check of its flag and the wait.
 */
static void
master_signals(void)
{
	struct sigaction	 sa;
	sigset_t		 set;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = sig_handler;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGCHLD, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, NULL);
}

static void
master_loop(void)
{
	struct pollfd	 pfd;
	struct timespec	 ts = { 1, 0 };	/* retry a fork that failed */
	sigset_t	 empty;
	char		 buf[256];

	sigemptyset(&empty);
	pfd.fd = notify_pipe[0];
	pfd.events = POLLIN;
	for (;;) {
		if (smtpd_child) {
			smtpd_child = 0;
			master_reap();
		}
		if (smtpd_stop)
			master_shutdown();
		if (smtpd_reload) {
			smtpd_reload = 0;
			generation++;
			log_event(LOG_INFO, "reload", NULL, "{s:i}",
			    "generation", (int)generation);
			master_tls_reload();
			if (conf.api != NULL) {
				const char *why = conf_api_resolve(&conf);

				if (why != NULL)
					log_warnx("--api: %s; keeping the "
					    "addresses resolved before", why);
			}
			if (fetcher_pid != -1) {
				/* a new fetcher: new addresses, polls now */
				kill(fetcher_pid, SIGTERM);
				fetcher_started = 0;
			}
			if (!conf.fetch_only) {
				master_spawn();
				master_retire_old();
			}
		}
		if (conf.api != NULL && fetcher_pid == -1 &&
		    monotime() > fetcher_started)
			fetcher_start();
		if (!conf.fetch_only)
			master_spawn();
		if (ppoll(&pfd, 1, &ts, &empty) == -1 && errno != EINTR)
			fatal("ppoll");
		while (read(notify_pipe[0], buf, sizeof(buf)) > 0)
			;
	}
}

static void
master_reap(void)
{
	pid_t		 pid;
	uint32_t	 i;
	int		 status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (pid == fetcher_pid) {
			fetcher_pid = -1;	/* restarted by the loop */
			if (!smtpd_stop)
				log_event(LOG_WARNING, "fetcher_exited", NULL,
				    "{s:i, s:i}", "status", WIFEXITED(status) ?
				    WEXITSTATUS(status) : -1, "signal",
				    WIFSIGNALED(status) ? WTERMSIG(status) : 0);
			continue;
		}
		for (i = 0; i < shm->nslots; i++) {
			struct worker_slot *w = &shm->slots[i];

			if (worker_pid[i] != pid)
				continue;
			worker_pid[i] = 0;
			__atomic_store_n(&w->state, SLOT_FREE,
			    __ATOMIC_SEQ_CST);
			break;
		}
		if (WIFSIGNALED(status))
			log_event(LOG_WARNING, "worker_died", NULL,
			    "{s:i, s:i}", "pid", (int)pid, "signal",
			    WTERMSIG(status));
		else if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
			log_event(LOG_WARNING, "worker_failed", NULL,
			    "{s:i, s:i}", "pid", (int)pid, "status",
			    WEXITSTATUS(status));
	}
}

/*
 * SIGHUP: read certificate and key again.  Workers forked from now on
 * use the new context; sessions in progress keep theirs.  A bad pair
 * keeps the old context.
 */
static void
master_tls_reload(void)
{
	struct tls	*ctx;
	char		 why[1024];

	if (conf.tls == NULL)
		return;
	if ((ctx = tls_server_setup_priv(&conf, why, sizeof(why))) == NULL) {
		log_event(LOG_WARNING, "tls_reload_failed", NULL, "{s:s}",
		    "error", why);
		return;
	}
	tls_free(conf.tls);
	conf.tls = ctx;
	log_event(LOG_INFO, "tls_reloaded", NULL, "{s:s}", "cert",
	    conf.tls_cert);
}

/* Idle workers of the current generation. */
static size_t
master_idle(void)
{
	uint32_t	 i;
	size_t		 n = 0;

	for (i = 0; i < shm->nslots; i++) {
		struct worker_slot *w = &shm->slots[i];

		if (worker_pid[i] != 0 && worker_gen[i] == generation &&
		    __atomic_load_n(&w->state, __ATOMIC_SEQ_CST) == SLOT_IDLE)
			n++;
	}
	return n;
}

/* Fork workers until --spare of them wait in accept. */
static void
master_spawn(void)
{
	size_t		 idle;
	uint32_t	 i;
	pid_t		 pid;

	idle = master_idle();
	for (i = 0; i < shm->nslots && idle < (size_t)conf.spare; i++) {
		struct worker_slot *w = &shm->slots[i];

		if (worker_pid[i] != 0 ||
		    __atomic_load_n(&w->state, __ATOMIC_SEQ_CST) != SLOT_FREE)
			continue;
		worker_gen[i] = generation;
		__atomic_store_n(&w->state, SLOT_IDLE, __ATOMIC_SEQ_CST);
		switch (pid = fork()) {
		case -1:
			log_warn("fork");
			__atomic_store_n(&w->state, SLOT_FREE,
			    __ATOMIC_SEQ_CST);
			return;
		case 0:
			worker_main((int)i);
		default:
			worker_pid[i] = pid;
			idle++;
		}
	}
}

/* After SIGHUP: idle workers of older generations leave. */
static void
master_retire_old(void)
{
	uint32_t	 i;

	for (i = 0; i < shm->nslots; i++) {
		struct worker_slot *w = &shm->slots[i];

		if (worker_pid[i] != 0 && worker_gen[i] != generation &&
		    __atomic_load_n(&w->state, __ATOMIC_SEQ_CST) == SLOT_IDLE)
			kill(worker_pid[i], SIGUSR1);
	}
}

static void
master_kill_all(int sig)
{
	uint32_t	 i;

	for (i = 0; i < shm->nslots; i++)
		if (worker_pid[i] != 0)
			kill(worker_pid[i], sig);
}

/*
 * SIGTERM/SIGINT: stop accepting, let idle sessions hear 421 and
 * sessions in DATA finish within --grace, then exit 0.
 */
static __dead void
master_shutdown(void)
{
	struct timespec	 deadline, now, ts;
	sigset_t	 empty;
	size_t		 i;
	uint32_t	 n;
	int		 live;

	log_event(LOG_INFO, "stopping", NULL, "{s:I}", "grace",
	    (json_int_t)conf.grace);
	for (i = 0; i < conf.nlisteners; i++)
		if (conf.listeners[i].fd != -1)
			close(conf.listeners[i].fd);
	master_kill_all(SIGTERM);
	if (fetcher_pid != -1)
		kill(fetcher_pid, SIGTERM);
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	/* even with --grace 0, idle sessions get a moment to say 421 */
	deadline.tv_sec += conf.grace > 0 ? conf.grace : 1;
	sigemptyset(&empty);
	for (;;) {
		master_reap();
		for (live = 0, n = 0; n < shm->nslots; n++)
			if (worker_pid[n] != 0)
				live++;
		if (fetcher_pid != -1)
			live++;
		if (live == 0)
			break;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > deadline.tv_sec ||
		    (now.tv_sec == deadline.tv_sec &&
		    now.tv_nsec >= deadline.tv_nsec)) {
			log_event(LOG_WARNING, "grace_expired", NULL,
			    "{s:i}", "sessions", live);
			master_kill_all(SIGKILL);
			if (fetcher_pid != -1)
				kill(fetcher_pid, SIGKILL);
			while (waitpid(-1, NULL, 0) > 0)
				;
			break;
		}
		ts.tv_sec = 0;
		ts.tv_nsec = 100000000;
		(void)ppoll(NULL, 0, &ts, &empty);
	}
	log_event(LOG_INFO, "stop", NULL, NULL);
	exit(0);
}

/* A worker: wait for one connection, serve it, exit. */
static __dead void
worker_main(int slot)
{
	struct session_ctx	 ctx;
	struct sigaction	 sa;
	char			 b = 'b';

	log_setproc("worker");
	close(notify_pipe[0]);
	close(alive_pipe[1]);
	/* the table's writable descriptor never reaches a worker */
	if (conf.banlist_rwfd != -1)
		close(conf.banlist_rwfd);
	if (conf.banlist_dirfd != -1)
		close(conf.banlist_dirfd);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigaction(SIGHUP, &sa, NULL);
	sa.sa_handler = SIG_DFL;
	sigaction(SIGCHLD, &sa, NULL);
	smtpd_reload = 0;

	sandbox_worker(&conf);

	memset(&ctx, 0, sizeof(ctx));
	ctx.conf = &conf;
	ctx.reject = -1;
	if (worker_accept(&ctx) == -1)
		_exit(0);
	sandbox_worker_narrow(&conf);
	ctx.reject = worker_claim(slot, &ctx.peer);
	ctx.banned = banlist_lookup_addr(conf.banlist, &ctx.peer);
	(void)write(notify_pipe[1], &b, 1);	/* master: fork a spare */
	session_run(&ctx);
	firm_key_wipe();
	__atomic_store_n(&shm->slots[slot].state, SLOT_DONE,
	    __ATOMIC_SEQ_CST);
	_exit(0);
}

static int
worker_listener_smtps(int fd)
{
	size_t	 i;

	for (i = 0; i < conf.nlisteners; i++)
		if (conf.listeners[i].fd == fd)
			return conf.listeners[i].smtps;
	return 0;
}

/* Wait on every listener; -1 when told to leave instead. */
static int
worker_accept(struct session_ctx *ctx)
{
	struct pollfd	 pfd[MAX_LISTENERS + 1];
	sigset_t	 waitmask;
	size_t		 i, n = 0;
	int		 fd;

	sigprocmask(SIG_BLOCK, NULL, &waitmask);
	sigdelset(&waitmask, SIGTERM);
	sigdelset(&waitmask, SIGINT);
	sigdelset(&waitmask, SIGUSR1);
	for (i = 0; i < conf.nlisteners; i++) {
		if (conf.listeners[i].fd == -1)
			continue;
		pfd[n].fd = conf.listeners[i].fd;
		pfd[n].events = POLLIN;
		n++;
	}
	pfd[n].fd = alive_pipe[0];	/* POLLHUP when the master dies */
	pfd[n].events = POLLIN;
	for (;;) {
		if (smtpd_stop || worker_retire)
			return -1;
		if (ppoll(pfd, n + 1, NULL, &waitmask) == -1) {
			if (errno == EINTR)
				continue;
			fatal("ppoll");
		}
		if (pfd[n].revents != 0)
			return -1;
		for (i = 0; i < n; i++) {
			if ((pfd[i].revents & POLLIN) == 0)
				continue;
			ctx->peerlen = sizeof(ctx->peer);
			fd = accept4(pfd[i].fd, (struct sockaddr *)&ctx->peer,
			    &ctx->peerlen, SOCK_NONBLOCK | SOCK_CLOEXEC);
			if (fd == -1) {
				if (errno != EAGAIN && errno != EINTR &&
				    errno != ECONNABORTED)
					log_warn("accept");
				continue;
			}
			ctx->fd_in = ctx->fd_out = fd;
			ctx->smtps = worker_listener_smtps(pfd[i].fd);
			for (i = 0; i < conf.nlisteners; i++)
				if (conf.listeners[i].fd != -1)
					close(conf.listeners[i].fd);
			close(alive_pipe[0]);
			return 0;
		}
	}
}

/*
 * Mark our slot busy with the client's key, then count: over
 * --max-sessions or --max-per-ip, the session is refused at once.
 * Writing before counting (both sequentially consistent) means two
 * racing workers can never both slip under a limit.
 */
static int
worker_claim(int slot, const struct sockaddr_storage *peer)
{
	struct worker_slot	*me = &shm->slots[slot];
	uint32_t		 i;
	long long		 total = 0, same = 0;

	session_addr_key(peer, me->key);
	__atomic_store_n(&me->state, SLOT_BUSY, __ATOMIC_SEQ_CST);
	for (i = 0; i < shm->nslots; i++) {
		struct worker_slot *w = &shm->slots[i];

		if (__atomic_load_n(&w->state, __ATOMIC_SEQ_CST) != SLOT_BUSY)
			continue;
		total++;
		if (memcmp(w->key, me->key, sizeof(me->key)) == 0)
			same++;
	}
	if (total <= conf.max_sessions && same <= conf.max_per_ip)
		return -1;
	/* refused: no longer counted while the refusal is said */
	__atomic_store_n(&me->state, SLOT_DONE, __ATOMIC_SEQ_CST);
	return total > conf.max_sessions ? REPLY_MAXSESSIONS : REPLY_MAXPERIP;
}

/* -i: one session on stdin/stdout, for inetd or tcpserver. */
static __dead void
inetd_main(void)
{
	struct session_ctx	 ctx;
	struct sigaction	 sa;
	sigset_t		 set;
	int			 fd;

	/* stdout is the client: log lines go to stderr with -d */
	log_init(conf.debug ? STDERR_FILENO : -1, conf.verbose);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = sig_handler;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);

	if (conf.banlist_dirfd != -1)
		close(conf.banlist_dirfd);
	conf.banlist_dirfd = -1;
	sandbox_worker(&conf);
	sandbox_worker_narrow(&conf);

	memset(&ctx, 0, sizeof(ctx));
	ctx.conf = &conf;
	ctx.reject = -1;
	ctx.fd_in = STDIN_FILENO;
	ctx.fd_out = STDOUT_FILENO;
	ctx.peerlen = sizeof(ctx.peer);
	if (getpeername(STDIN_FILENO, (struct sockaddr *)&ctx.peer,
	    &ctx.peerlen) == -1)
		ctx.peer.ss_family = AF_UNSPEC;
	ctx.banned = banlist_lookup_addr(conf.banlist, &ctx.peer);
	for (fd = STDIN_FILENO; fd <= STDOUT_FILENO; fd++)
		(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	session_run(&ctx);
	exit(0);
}
