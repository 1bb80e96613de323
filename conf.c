/*
 * The command line (SPEC section 2), shared by every program: the
 * master parses and checks it, and the relay and the fetcher, started
 * with the same flags, read the same configuration from it.  A bad flag
 * prints one line naming it and exits 1 before anything is bound.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "smtpd.h"

enum {
	OPT_SMTPS = 256, OPT_SPOOL, OPT_API_SECRET, OPT_API_TIMEOUT,
	OPT_CA_FILE, OPT_MAX_RCPT, OPT_SPARE, OPT_MAX_ERRORS, OPT_POLL,
	OPT_BANLIST_CACHE, OPT_TLS_CERT, OPT_TLS_KEY, OPT_REQUIRE_TLS,
	OPT_PROXY_FROM, OPT_HEALTH, OPT_GRACE, OPT_REJECT_BARE_LF,
	OPT_GREET_DELAY, OPT_FETCH_ONLY, OPT_MAX_USE, OPT_RESOLVER,
	OPT_REQUIRE_AUTH, OPT_AUTH_ID, OPT_SESSION_TIMEOUT, OPT_SPOOL_RESERVE,
	OPT_PIN_CPU, OPT_SOFT_BOUNCE, OPT_ONLINE, OPT_DRAIN,
	OPT_MAX_CONN_RATE, OPT_MAX_MSG_RATE, OPT_DNSBL, OPT_DNSWL,
	OPT_DNSBL_THRESHOLD
};

static const struct option longopts[] = {
	{ "debug",		no_argument,		NULL, 'd' },
	{ "verbose",		no_argument,		NULL, 'v' },
	{ "inetd",		no_argument,		NULL, 'i' },
	{ "config-test",	no_argument,		NULL, 'n' },
	{ "online",		no_argument,		NULL, OPT_ONLINE },
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
	{ "max-conn-rate",	required_argument,	NULL,
	    OPT_MAX_CONN_RATE },
	{ "max-msg-rate",	required_argument,	NULL, OPT_MAX_MSG_RATE },
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
	{ "drain",		required_argument,	NULL, OPT_DRAIN },
	{ "reject-bare-lf",	no_argument,		NULL,
	    OPT_REJECT_BARE_LF },
	{ "greet-delay",	required_argument,	NULL, OPT_GREET_DELAY },
	{ "dnsbl",		required_argument,	NULL, OPT_DNSBL },
	{ "dnswl",		required_argument,	NULL, OPT_DNSWL },
	{ "dnsbl-threshold",	required_argument,	NULL,
	    OPT_DNSBL_THRESHOLD },
	{ "soft-bounce",	no_argument,		NULL, OPT_SOFT_BOUNCE },
	{ "fetch-only",		no_argument,		NULL, OPT_FETCH_ONLY },
	{ "max-use",		required_argument,	NULL, OPT_MAX_USE },
	{ "resolver",		required_argument,	NULL, OPT_RESOLVER },
	{ "session-timeout",	required_argument,	NULL,
	    OPT_SESSION_TIMEOUT },
	{ "spool-reserve",	required_argument,	NULL,
	    OPT_SPOOL_RESERVE },
	{ "require-auth",	required_argument,	NULL, OPT_REQUIRE_AUTH },
	{ "auth-id",		required_argument,	NULL, OPT_AUTH_ID },
	{ "pin-cpu",		no_argument,		NULL, OPT_PIN_CPU },
	{ NULL,			0,			NULL, 0 }
};

static __dead void usage(int);
static const char *flag_name(int);
static void	conf_defaults(struct smtpd_conf *);
static void	conf_parse(struct smtpd_conf *, int, char **);
static void	conf_check(struct smtpd_conf *);
static long long conf_number(const char *, const char *, long long,
		    long long);
static size_t	conf_addr(const char *, const char *, struct listener *, size_t);
static int	conf_same_addr(const struct sockaddr_storage *,
		    const struct sockaddr_storage *);
static void	conf_listen(struct smtpd_conf *, const char *, const char *,
		    int);
static void	conf_recipient(struct smtpd_conf *, const char *);
static void	conf_proxy(struct smtpd_conf *, const char *);
static void	conf_resolver(struct smtpd_conf *, const char *, const char *);
static void	conf_dnsbl(struct smtpd_conf *, const char *, const char *,
		    int);
static int	conf_dnsbl_octet(const char *, uint8_t *);

/* Defaults, then the flags, then their consistency. */
void
conf_init(struct smtpd_conf *c, int argc, char **argv)
{
	conf_defaults(c);
	conf_parse(c, argc, argv);
	conf_check(c);
}

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
	    "usage: smtpd [-CdhinVv] [--online] [-a url | --spool dir] "
	    "-r address "
	    "[-c max-sessions]\n"
	    "\t[-H hostname] [-l addr:port] [-p max-per-ip] [-s max-size]\n"
	    "\t[-t timeout] [-u user] [--api-secret file] "
	    "[--api-timeout sec]\n"
	    "\t[--banlist-cache file] [--ca-file file] [--drain sec] "
	    "[--fetch-only]\n"
	    "\t[--dnsbl zone[=pattern][*weight]] [--dnsbl-threshold n]\n"
	    "\t[--dnswl zone[=pattern][*weight]]\n"
	    "\t[--grace sec] [--greet-delay ms] [--health addr:port]\n"
	    "\t[--max-conn-rate n] [--max-errors n] [--max-msg-rate n]\n"
	    "\t[--max-rcpt n] [--max-use n] [--pin-cpu]\n"
	    "\t[--poll sec] [--proxy-from cidr]\n"
	    "\t[--reject-bare-lf] [--require-auth none|weak|strong] "
	    "[--require-tls]\n"
	    "\t[--resolver addr[:port]] [--session-timeout sec] "
	    "[--smtps addr:port] [--spare n]\n"
	    "\t[--soft-bounce] [--spool-reserve bytes]\n"
	    "\t[--auth-id name] [--tls-cert file --tls-key file]\n"
	    "       smtpd -C [-H hostname] --tls-cert file --tls-key file\n");
	exit(status);
}

/* One line naming the flag, exit 1: nothing is bound yet. */
__dead void
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

static void
conf_defaults(struct smtpd_conf *c)
{
	memset(c, 0, sizeof(*c));
	c->spool_fd = -1;
	c->banlist_rwfd = -1;
	c->banlist_rofd = -1;
	c->banlist_dirfd = -1;
	c->health_l.fd = -1;
	c->api_timeout = DEF_API_TIMEOUT;
	c->max_size = DEF_MAX_SIZE;
	c->max_rcpt = DEF_MAX_RCPT;
	c->max_sessions = DEF_MAX_SESSIONS;
	c->max_per_ip = DEF_MAX_PER_IP;
	c->spare = DEF_SPARE;
	c->timeout = DEF_TIMEOUT;
	c->session_timeout = DEF_SESSION_TIMEOUT;
	c->spool_reserve = -1;		/* 8 x --max-size */
	c->max_errors = DEF_MAX_ERRORS;
	c->poll = DEF_POLL;
	c->grace = DEF_GRACE;
	c->drain = DEF_DRAIN;
	c->max_use = DEF_MAX_USE;
	c->dnsbl_threshold = 1;
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
	struct listener	 health[MAX_LISTENERS];
	int		 ch, have_listen = 0;

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
		case OPT_ONLINE:
			c->online = 1;
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
			c->hostname_set = 1;
			break;
		case 'r':
			conf_recipient(c, optarg);
			break;
		case 'a':
			if (strncmp(optarg, "http://", 7) != 0 &&
			    strncmp(optarg, "https://", 8) != 0)
				flag_error(f, "'%s' is not an http:// or "
				    "https:// URL", optarg);
			if (strpbrk(optarg, "?#") != NULL)
				flag_error(f, "'%s' has a query or fragment: "
				    "give the base URL, /inbound and the "
				    "others are appended to it", optarg);
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
		case OPT_MAX_CONN_RATE:
			c->max_conn_rate = conf_number(f, optarg, 0, MAX_RATE);
			break;
		case OPT_MAX_MSG_RATE:
			c->max_msg_rate = conf_number(f, optarg, 0, MAX_RATE);
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
			/* one socket: the first address it names */
			if (conf_addr(f, optarg, health, MAX_LISTENERS) == 0)
				flag_error(f, "'%s' names no address", optarg);
			c->health = optarg;
			c->health_l = health[0];
			break;
		case OPT_GRACE:
			c->grace = conf_number(f, optarg, 0, MAX_GRACE);
			break;
		case OPT_DRAIN:
			c->drain = conf_number(f, optarg, 0, MAX_DRAIN);
			break;
		case OPT_REJECT_BARE_LF:
			c->reject_bare_lf = 1;
			break;
		case OPT_PIN_CPU:
			c->pin_cpu = 1;
			break;
		case OPT_SOFT_BOUNCE:
			c->soft_bounce = 1;
			break;
		case OPT_GREET_DELAY:
			c->greet_delay = conf_number(f, optarg, 0,
			    MAX_GREET_DELAY);
			break;
		case OPT_DNSBL:
		case OPT_DNSWL:
			conf_dnsbl(c, f, optarg, ch == OPT_DNSWL);
			break;
		case OPT_DNSBL_THRESHOLD:
			c->dnsbl_threshold = conf_number(f, optarg, 1,
			    MAX_DNSBL_WEIGHT);
			break;
		case OPT_FETCH_ONLY:
			c->fetch_only = 1;
			break;
		case OPT_MAX_USE:
			c->max_use = conf_number(f, optarg, 1, MAX_MAX_USE);
			break;
		case OPT_SPOOL_RESERVE:
			c->spool_reserve = conf_number(f, optarg, 0,
			    LLONG_MAX / 2);
			break;
		case OPT_SESSION_TIMEOUT:
			c->session_timeout = conf_number(f, optarg, 1,
			    MAX_SESSION_TIMEOUT);
			break;
		case OPT_RESOLVER:
			conf_resolver(c, f, optarg);
			break;
		case OPT_REQUIRE_AUTH:
			if (strcmp(optarg, "none") == 0)
				c->require_auth = AUTH_NONE;
			else if (strcmp(optarg, "weak") == 0)
				c->require_auth = AUTH_WEAK;
			else if (strcmp(optarg, "strong") == 0)
				c->require_auth = AUTH_STRONG;
			else
				flag_error(f, "'%s' is not none, weak or "
				    "strong", optarg);
			break;
		case OPT_AUTH_ID:
			if (optarg[0] == '\0' || strlen(optarg) >= sizeof(
			    c->auth_id) || strspn(optarg,
			    "abcdefghijklmnopqrstuvwxyz"
			    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") !=
			    strlen(optarg))
				flag_error(f, "invalid authserv-id '%s' "
				    "(a host name)", optarg);
			strlcpy(c->auth_id, optarg, sizeof(c->auth_id));
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
	if (c->auth_id[0] == '\0')
		strlcpy(c->auth_id, c->hostname, sizeof(c->auth_id));
	/* room for a message and its payload, base64 and all, and more */
	if (c->spool_reserve == -1)
		c->spool_reserve = c->max_size * SPOOL_RESERVE_PER_BYTE;
}

/*
 * --resolver ADDR[:PORT]: "127.0.0.1", "127.0.0.1:5353", "::1",
 * "[::1]:5353".  Kept as libunbound spells a forwarder (addr@port) and
 * as an address for the relay's sandbox.
 */
static void
conf_resolver(struct smtpd_conf *c, const char *flag, const char *arg)
{
	struct resolver	*r;
	char		 buf[INET6_ADDRSTRLEN + 8], *port = NULL, *end;
	const char	*errstr;

	if (c->nresolvers == MAX_RESOLVERS)
		flag_error(flag, "more than %d resolvers", MAX_RESOLVERS);
	if (strlcpy(buf, arg, sizeof(buf)) >= sizeof(buf))
		flag_error(flag, "'%s' is not ADDR[:PORT]", arg);
	r = &c->resolvers[c->nresolvers];
	r->port = 53;
	if (buf[0] == '[') {
		if ((end = strchr(buf, ']')) == NULL ||
		    (end[1] != '\0' && end[1] != ':'))
			flag_error(flag, "'%s' is not ADDR[:PORT]", arg);
		*end = '\0';
		if (end[1] == ':')
			port = end + 2;
		memmove(buf, buf + 1, strlen(buf + 1) + 1);
	} else if ((end = strchr(buf, ':')) != NULL &&
	    strchr(end + 1, ':') == NULL) {
		*end = '\0';
		port = end + 1;
	}
	if (port != NULL) {
		r->port = (int)strtonum(port, 1, 65535, &errstr);
		if (errstr != NULL)
			flag_error(flag, "port in '%s' is %s", arg, errstr);
	}
	if (inet_pton(AF_INET, buf, r->addr) == 1)
		r->af = AF_INET;
	else if (inet_pton(AF_INET6, buf, r->addr) == 1)
		r->af = AF_INET6;
	else
		flag_error(flag, "'%s' is not an IP address", arg);
	if ((size_t)snprintf(r->name, sizeof(r->name), "%.*s@%d",
	    INET6_ADDRSTRLEN, buf, r->port) >= sizeof(r->name))
		flag_error(flag, "'%s' is not ADDR[:PORT]", arg);
	c->nresolvers++;
}

/*
 * --dnsbl and --dnswl ZONE[=PATTERN][*WEIGHT], as postscreen_dnsbl_sites:
 * PATTERN is four dotted octets, each a number or a bracketed list of
 * numbers and ranges ("127.0.0.[2..11]", "127.0.0.[2;4;6]"); without
 * it any A record matches.  WEIGHT (default 1) may be negative on a
 * block list; an allow list's counts against the score whatever its
 * sign, as postscreen's "*-2" and our "*2" alike.
 */
static void
conf_dnsbl(struct smtpd_conf *c, const char *flag, const char *arg,
    int allow)
{
	struct dnsbl_site	*d;
	char			 buf[DNSBL_ZONE_MAX + 128], *pat, *w, *o, *end;
	const char		*errstr;
	size_t			 i, label = 0;

	if (c->ndnsbl == MAX_DNSBL)
		flag_error(flag, "more than %d --dnsbl and --dnswl in all",
		    MAX_DNSBL);
	if (strlcpy(buf, arg, sizeof(buf)) >= sizeof(buf))
		flag_error(flag, "'%.64s...' is too long", arg);
	d = &c->dnsbl[c->ndnsbl];
	memset(d, 0, sizeof(*d));
	memset(d->match, 0xff, sizeof(d->match));
	d->weight = 1;
	if ((w = strchr(buf, '*')) != NULL) {
		*w++ = '\0';
		d->weight = (int)strtonum(w, -MAX_DNSBL_WEIGHT,
		    MAX_DNSBL_WEIGHT, &errstr);
		if (errstr != NULL || d->weight == 0)
			flag_error(flag, "weight in '%s' is not a number "
			    "from -%d to %d but 0", arg, MAX_DNSBL_WEIGHT,
			    MAX_DNSBL_WEIGHT);
	}
	if (allow)
		d->weight = -abs(d->weight);
	if ((pat = strchr(buf, '=')) != NULL) {
		*pat++ = '\0';
		for (i = 0; i < 4 && pat != NULL; i++) {
			/* a bracketed list has dots of its own */
			o = pat;
			if ((end = o[0] == '[' ? strchr(o, ']') : o) == NULL)
				break;
			if ((pat = strchr(end, '.')) != NULL)
				*pat++ = '\0';
			if (conf_dnsbl_octet(o, d->match[i]) == -1)
				break;
		}
		if (i < 4 || pat != NULL)
			flag_error(flag, "pattern in '%s' is not four "
			    "octets such as 127.0.0.[2..11]", arg);
	}
	if (buf[0] != '\0' && buf[strlen(buf) - 1] == '.')
		buf[strlen(buf) - 1] = '\0';
	for (i = 0; buf[i] != '\0'; i++) {
		if (buf[i] == '.' && label > 0)
			label = 0;
		else if (strchr("abcdefghijklmnopqrstuvwxyz"
		    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", buf[i]) ==
		    NULL || ++label > 63)
			break;
	}
	if (i == 0 || buf[i] != '\0' || label == 0 || i > DNSBL_ZONE_MAX)
		flag_error(flag, "'%s' is not a DNS zone of at most %d "
		    "octets", buf, DNSBL_ZONE_MAX);
	strlcpy(d->zone, buf, sizeof(d->zone));
	c->ndnsbl++;
}

/* One octet of a pattern into the set m: "7", "[2..11]", "[2;4..6]". */
static int
conf_dnsbl_octet(const char *o, uint8_t *m)
{
	char		 buf[128], *list, *item, *dots;
	const char	*e1, *e2;
	long long	 lo, hi, v;

	if (strlcpy(buf, o, sizeof(buf)) >= sizeof(buf) || buf[0] == '\0')
		return -1;
	memset(m, 0, 32);
	list = buf;
	if (buf[0] == '[') {
		if (buf[strlen(buf) - 1] != ']')
			return -1;
		buf[strlen(buf) - 1] = '\0';
		list = buf + 1;
	} else if (strpbrk(buf, ";]") != NULL)
		return -1;
	while ((item = strsep(&list, ";")) != NULL) {
		if ((dots = strstr(item, "..")) != NULL && buf[0] == '[') {
			*dots = '\0';
			lo = strtonum(item, 0, 255, &e1);
			hi = strtonum(dots + 2, 0, 255, &e2);
		} else {
			lo = hi = strtonum(item, 0, 255, &e1);
			e2 = NULL;
		}
		if (e1 != NULL || e2 != NULL || lo > hi)
			return -1;
		for (v = lo; v <= hi; v++)
			m[v / 8] |= 1 << (v % 8);
	}
	return 0;
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
	if ((c->tls_cert == NULL) != (c->tls_key == NULL))
		flag_error(c->tls_cert ? "tls-key" : "tls-cert",
		    "--tls-cert and --tls-key go together");
	if (c->check_cert) {
		/* -C reads the certificate and key, nothing else */
		if (c->tls_cert == NULL)
			flag_error("check-cert", "needs --tls-cert and "
			    "--tls-key");
		return;
	}
	if (c->online && !c->config_test)
		flag_error("online", "goes with -n");
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
	if (c->require_tls && c->tls_cert == NULL)
		flag_error("require-tls", "needs --tls-cert and --tls-key");
	for (i = 0; i < c->nlisteners; i++)
		if (c->listeners[i].smtps && c->tls_cert == NULL)
			flag_error("smtps", "needs --tls-cert and --tls-key");
	if (c->max_per_ip > c->max_sessions)
		c->max_per_ip = c->max_sessions;
	if (c->inetd && c->nlisteners > 0)
		flag_error(c->listeners[0].smtps ? "smtps" : "listen",
		    "not available with --inetd (the session is on standard "
		    "input and output)");
	if (c->inetd && c->health != NULL)
		flag_error("health", "not available with --inetd (one "
		    "session a process: nothing to watch)");
}

/*
 * Parse ADDR:PORT ("127.0.0.1:2525", "[::1]:25", "*:25") and resolve
 * it now, so that a bad address fails before anything is bound.  Up to
 * max addresses go to out; returns how many.
 */
static size_t
conf_addr(const char *flag, const char *arg, struct listener *out,
    size_t max)
{
	struct addrinfo	 hints, *res, *ai;
	char		 host[256], *port;
	const char	*errstr;
	size_t		 n = 0;
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
		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		if (n == max)
			flag_error(flag, "more than %d listening sockets",
			    MAX_LISTENERS);
		memset(&out[n], 0, sizeof(out[n]));
		out[n].fd = -1;
		strlcpy(out[n].name, arg, sizeof(out[n].name));
		memcpy(&out[n].ss, ai->ai_addr, ai->ai_addrlen);
		out[n].sslen = ai->ai_addrlen;
		n++;
	}
	freeaddrinfo(res);
	return n;
}

static void
conf_listen(struct smtpd_conf *c, const char *flag, const char *arg,
    int smtps)
{
	struct listener	*l, *prev;
	size_t		 i, n;

	n = conf_addr(flag, arg, c->listeners + c->nlisteners,
	    MAX_LISTENERS - c->nlisteners);
	for (i = 0; i < n; i++) {
		l = &c->listeners[c->nlisteners];
		for (prev = c->listeners; prev < l; prev++)
			if (conf_same_addr(&prev->ss, &l->ss))
				flag_error(flag, "'%s' is already a listener "
				    "(as '%s')", arg, prev->name);
		l->smtps = smtps;
		c->nlisteners++;
	}
}

/* Do a and b name the same address and port? */
static int
conf_same_addr(const struct sockaddr_storage *a,
    const struct sockaddr_storage *b)
{
	const struct sockaddr_in	*a4 = (const struct sockaddr_in *)a;
	const struct sockaddr_in	*b4 = (const struct sockaddr_in *)b;
	const struct sockaddr_in6	*a6 = (const struct sockaddr_in6 *)a;
	const struct sockaddr_in6	*b6 = (const struct sockaddr_in6 *)b;

	if (a->ss_family != b->ss_family)
		return 0;
	if (a->ss_family == AF_INET)
		return a4->sin_port == b4->sin_port &&
		    a4->sin_addr.s_addr == b4->sin_addr.s_addr;
	if (a->ss_family == AF_INET6)
		return a6->sin6_port == b6->sin6_port &&
		    a6->sin6_scope_id == b6->sin6_scope_id &&
		    memcmp(&a6->sin6_addr, &b6->sin6_addr,
		    sizeof(a6->sin6_addr)) == 0;
	return 0;
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
		    (int)sizeof(path) || addr_parse_path(path, buf,
		    sizeof(buf), &rest, 0) == -1 || *rest != '\0')
			flag_error("recipient", "'%s' is not a valid address",
			    arg);
	} else {
		char buf[SMTP_PATH_MAX + 1];

		if (snprintf(path, sizeof(path), "<x%s>", arg) >=
		    (int)sizeof(path) || addr_parse_path(path, buf,
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
void
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
 * The directory of --banlist-cache, opened once: the fetcher writes the
 * cache there (temporary file and rename), so it must belong to, or be
 * writable by, the worker user.  The default directory is created.
 */
void
conf_banlist_dir(struct smtpd_conf *c)
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
