/*
 * smtpd: the master.  Parses and checks the flags, opens everything
 * that needs root, and starts its children: the relay and the ban-list
 * fetcher (the smtpd-relay program, which alone links an HTTP client)
 * and the health process (this program again), each by exec with only
 * the descriptors it keeps, and a pool of preforked workers, each of
 * which keeps what master_worker_keep() lists and nothing else.  It
 * never reads a byte from a client, holds no HTTP client and no API
 * key, and trusts nothing a child can write: its table of children is
 * its own memory, and a worker only ever asks it something over the
 * socketpair it was born with.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>
#include <tls.h>

#include "smtpd.h"

static volatile sig_atomic_t smtpd_child;

/*
 * The pool: every worker the master forked, in the master's own
 * memory.  A worker's state changes only on what arrives on its own
 * control socket; pids come from fork() alone.
 */
enum wstate {
	W_IDLE = 1,		/* waiting in accept */
	W_BUSY,			/* serving a session that counts */
	W_REFUSING,		/* saying 421 to a session over a limit */
	W_GONE,			/* its control socket closed: exiting */
};

struct worker {
	pid_t			 pid;		/* 0: a free entry */
	int			 fd;		/* our end of its control socket */
	uint32_t		 gen;
	enum wstate		 state;
	uint8_t			 key[16];	/* client of a W_BUSY session:
						   addr_key() of addr */
	struct sockaddr_storage	 addr;		/* the client, attested */
	char			 ip[INET6_ADDRSTRLEN];	/* addr, printed */
	time_t			 claimed;	/* monotime() of the claim; 0
						   outside a session */
	int			 signs;		/* TLS signatures asked in
						   this session */
	uint64_t		 wid;		/* its id, for the relay and
						   the verifier */
	int			 vch;		/* the verifier's end of its
						   channel, until its first
						   session: master_attest() */
	uint32_t		 relay;		/* the relay it is attached to */
	int			 stress;	/* its session was claimed
						   under stress */
};

struct pool {
	struct worker		*w;
	size_t			 cap;
	size_t			 busy;		/* W_BUSY entries */
	int			 stress;	/* fewer than a tenth of -c
						   free: pool_stress() */
};

/*
 * The master's children, one row a kind: its name, how one is started,
 * when the kind runs and how it is started again, and what the master
 * holds of it.  Reaping, restarting, the gauges and the shutdown are
 * each one loop over this table.  Workers are many: the pool keeps
 * each one's pid and control socket, their row the rest.  Pids come
 * from fork() alone; 0 is none, and is never signalled.
 */
enum child_kind {
	CHILD_RELAY,
	CHILD_VERIFIER,		/* after the relay: it links to it */
	CHILD_FETCHER,
	CHILD_HEALTH,
	CHILD_WORKER,		/* after both: they need their channels */
	CHILD_KINDS
};

enum child_when {		/* which configurations run a kind */
	WHEN_SERVING,		/* all but --fetch-only */
	WHEN_API,		/* with --api */
	WHEN_HEALTH,		/* with --health */
	WHEN_RELAY_UP,		/* serving, once a relay and a verifier run */
};

/* How a kind is (re)started; without CF_POOL, at most once a second. */
#define CF_POOL		0x01	/* many: --spare idle, made up every turn */
#define CF_RELOAD	0x02	/* replaced on SIGHUP */
#define CF_OVERLAP	0x04	/* the next starts while the old drains */
#define CF_CHANNELS	0x08	/* workers hold channels to it: its death
				   makes a new generation of workers */

#define CHILD_OLD_MAX	8	/* old ones of a kind, draining */
#define CHILD_FDS_MAX	4

struct child {
	const char	*name;		/* its role on the exec line */
	const char	*exited;	/* the event of its death */
	const char	*replaced;	/* of its leaving for a reload */
	enum child_when	 when;
	int		 flags;		/* CF_* */
	int		(*start)(struct child *);	/* 0, or -1 */
	enum metric	 gauge;		/* 1 while one runs; M_COUNT: none */
	pid_t		 pid;		/* the one running, or 0 */
	pid_t		 old[CHILD_OLD_MAX];	/* told to leave, not reaped */
	pid_t		 leaving;	/* pid, told to leave: no overlap */
	time_t		 started;	/* monotime() of the last start */
	int		 ctl;		/* our end of its control socket */
	int		 fds[CHILD_FDS_MAX];	/* kept for the kind, or -1 */
};

/* fds[] of the fetcher: a pipe whose read end is each one's 3 */
#define FETCHER_ALIVE_R	0	/* hangs up when the master is gone */
#define FETCHER_ALIVE_W	1	/* the master's */

static int	master_relay_start_priv(struct child *);
static int	master_verifier_start_priv(struct child *);
static int	master_exec_ctl_priv(struct child *, const char *, int, int);
static void	master_verifier_link(void);
static int	master_attest(struct worker *, int);
static int	master_fetcher_start_priv(struct child *);
static int	master_health_start_priv(struct child *);
static int	master_workers_start(struct child *);

static struct child		 children[CHILD_KINDS] = {
	[CHILD_RELAY] = { .name = "relay", .exited = "relay_exited",
	    .when = WHEN_SERVING, .flags = CF_RELOAD | CF_OVERLAP |
	    CF_CHANNELS, .start = master_relay_start_priv,
	    .gauge = M_RELAY_UP, .ctl = -1, .fds = { -1, -1, -1, -1 } },
	[CHILD_VERIFIER] = { .name = VERIFIER_ROLE,
	    .exited = "verifier_exited", .when = WHEN_SERVING,
	    .flags = CF_CHANNELS, .start = master_verifier_start_priv,
	    .gauge = M_COUNT, .ctl = -1, .fds = { -1, -1, -1, -1 } },
	[CHILD_FETCHER] = { .name = "fetcher", .exited = "fetcher_exited",
	    .replaced = "fetcher_replaced",
	    .when = WHEN_API, .flags = CF_RELOAD,
	    .start = master_fetcher_start_priv, .gauge = M_FETCHER_UP,
	    .ctl = -1, .fds = { -1, -1, -1, -1 } },
	[CHILD_HEALTH] = { .name = HEALTH_ROLE, .exited = "health_exited",
	    .when = WHEN_HEALTH, .flags = 0,
	    .start = master_health_start_priv, .gauge = M_COUNT,
	    .ctl = -1, .fds = { -1, -1, -1, -1 } },
	/* fds[]: what the workers' sandbox was prepared with */
	[CHILD_WORKER] = { .name = "worker", .exited = NULL,
	    .when = WHEN_RELAY_UP, .flags = CF_POOL,
	    .start = master_workers_start, .gauge = M_COUNT,
	    .ctl = -1, .fds = { -1, -1, -1, -1 } },
};

/*
 * sandbox_prepare_priv() opens few descriptors, each at the lowest free
 * number: far below this at start, where it is called.
 */
#define MASTER_FD_SCAN	1024

static struct smtpd_conf	 conf;
static struct pool		 pool;
static uint32_t			 generation;
static uint32_t			 relay_serial;	/* of the running relay */
static uint64_t			 worker_serial;	/* the last worker's id */
static char			**master_argv;
static uint32_t			 tls_key_gen;	/* of the key in use */
static struct metrics_map	*metrics;	/* with --health */
static int			 metrics_fd = -1;
static int			 risk_key_open, risk_secret_open;
static int			 metrics_rofd = -1;	/* for health */
static struct timespec		 drain_end;	/* --drain: its end, or 0 */

static void	master_spool_priv(struct smtpd_conf *, int);
static void	master_exec_paths(struct smtpd_conf *, const char *);
static int	master_relay_check_priv(const char *);
static int	master_online_priv(void);
static void	master_banlist_setup_priv(struct smtpd_conf *);
static int	master_banlist_attach_priv(struct smtpd_conf *);
static void	master_listeners_bind_priv(struct smtpd_conf *);
static void	master_health_bind_priv(struct smtpd_conf *);
static void	master_sandbox_prepare_priv(void);
static pid_t	master_exec_priv(const char *, const char *, int, int, int,
		    int);
static int	master_exec_fds(const int *, size_t);
static int	master_attach(enum child_kind, int, uint64_t);
static int	master_child_wanted(const struct child *);
static void	master_children_start(void);
static void	master_child_stop(struct child *, int);
static void	master_child_signal(struct child *, int);
static size_t	master_child_live(const struct child *);
static int	master_child_reaped(struct child *, pid_t, int);
static void	master_worker_keep(struct pool *, struct worker *, int, int,
		    int);
static time_t	monotime(void);
static void	master_tls_reload(void);
static void	master_tls_expiry(void);
static void	master_tls_sign(struct worker *, const struct ctl_sign *);
static void	master_reload(void);
static json_t	*master_listener_names(const struct smtpd_conf *);
static void	master_risks_priv(void);
static void	master_risks_log(void);
static void	pool_create(struct pool *, size_t);
static struct worker *pool_find_pid(struct pool *, pid_t);
static size_t	pool_idle(const struct pool *);
static int	pool_fork(struct pool *, struct worker *, int);
static void	pool_spawn(struct pool *);
static void	pool_retire_old(struct pool *);
static void	pool_kill_all(struct pool *, int);
static size_t	pool_live(const struct pool *);
static void	pool_drop(struct pool *, struct worker *);
static void	pool_reaped(struct pool *, struct worker *, int);
static void	pool_ctl(struct pool *, struct worker *);
static const char *pool_attest(struct worker *, const struct ctl_claim *,
		    int);
static void	pool_claim(struct pool *, struct worker *);
static void	pool_overstay(struct pool *);
static int	pool_stress(struct pool *);
static void	pool_mail(struct worker *);
static void	master_signals(void);
static void	master_loop(void);
static int	master_drain(struct timespec *);
static void	master_reap(void);
static void	master_gauges(void);
static __dead void master_shutdown(void);
static __dead void inetd_main(void);
static void	sig_handler(int);

int
main(int argc, char *argv[])
{
	char	 why[1024];

	/* the health process: this program again, started by the master */
	if (argc > 1 && strcmp(argv[1], HEALTH_ROLE) == 0)
		health_main(argc - 1, argv + 1);
	/* the verifier: this program again, started by the master */
	if (argc > 1 && strcmp(argv[1], VERIFIER_ROLE) == 0)
		verifier_main(argc - 1, argv + 1);

	/* before anything touches libcrypto: see tls.c */
	if (server_tls_init(why, sizeof(why)) == -1)
		errx(1, "%s", why);
	master_argv = argv;
	conf_init(&conf, argc, argv);
	if (sodium_init() == -1)
		errx(1, "libsodium initialisation failed");
	rate_init();
	json_object_seed(0);	/* reads /dev/urandom now, not sandboxed */
	auth_init();		/* libopendkim, once for every worker */

	if (conf.check_cert)
		return tls_check_cert(&conf, 1);
	if (conf.tls_cert != NULL && conf.config_test &&
	    tls_check_cert(&conf, 0) != 0)
		return 1;
	conf_user(&conf);
	master_exec_paths(&conf, argv[0]);
	if (conf.api != NULL && master_relay_check_priv("check") != 0)
		return 1;	/* smtpd-relay named the flag */
	master_spool_priv(&conf, !conf.config_test);
	master_banlist_setup_priv(&conf);
	if (conf.config_test) {
		if (conf.online && master_online_priv() != 0)
			return 1;
		printf("configuration OK\n");
		return 0;
	}

	if (conf.tls_cert != NULL) {
		/*
		 * The key stays here; workers get a context with the
		 * certificate alone and ask us for each signature.
		 */
		if (server_tls_key_load_priv(&conf, why, sizeof(why)) == -1 ||
		    (conf.tls = server_tls_setup_keyless(&conf, why,
		    sizeof(why))) == NULL)
			errx(1, "%s", why);
	}
	if (conf.inetd) {
		master_sandbox_prepare_priv();
		inetd_main();
	}

	if (!conf.fetch_only)
		master_listeners_bind_priv(&conf);
	pool_create(&pool, (size_t)(conf.max_sessions + conf.spare +
	    SLOT_SLACK));
	if (conf.health != NULL) {
		master_health_bind_priv(&conf);
		metrics = metrics_create_priv(METRICS_SLOT_WORKERS + pool.cap,
		    &metrics_fd, &metrics_rofd);
		metrics_use(metrics, METRICS_SLOT_MASTER);
		metrics_set(M_START_TIME, (uint64_t)time(NULL));
	}
	master_sandbox_prepare_priv();	/* knows the listening sockets */
	master_risks_priv();		/* relative paths: before daemon() */
	if (!conf.debug && daemon(0, 0) == -1)
		err(1, "daemon");
	log_init(conf.debug ? STDOUT_FILENO : -1, conf.verbose);
	master_risks_log();
	if (geteuid() != 0)
		log_warnx("not started as root: workers keep uid %u, "
		    "--user is not applied", (unsigned)geteuid());
	master_signals();
	sandbox_master(&conf);
	/*
	 * With --pin-cpu, the master and every process it forks on one
	 * CPU: see cpu_pin() for when that pays.
	 */
	if (conf.pin_cpu)
		cpu_pin();
	if (!conf.fetch_only)
		sandbox_worker_report(&conf);
	log_event(LOG_INFO, "start", NULL, "{s:s, s:o, s:I, s:I, s:I}",
	    "version", SMTPD_VERSION, "listeners",
	    master_listener_names(&conf),
	    "spare", (json_int_t)conf.spare,
	    "max_sessions", (json_int_t)conf.max_sessions,
	    "max_use", (json_int_t)conf.max_use);
	master_tls_expiry();
	master_children_start();
	master_loop();
	/* NOTREACHED */
	return 1;
}

/*
 * Flags that work but expose something: a secret file every local user
 * may read (the key of the certificate, the key that signs for FIRM).
 */
static void
master_risks_priv(void)
{
	struct stat	 sb;

	risk_key_open = conf.tls_key != NULL &&
	    stat(conf.tls_key, &sb) == 0 && (sb.st_mode & S_IROTH);
	risk_secret_open = conf.api_secret != NULL &&
	    stat(conf.api_secret, &sb) == 0 && (sb.st_mode & S_IROTH);
}

/* A warning at start for each; and for a --proxy-from of /0. */
static void
master_risks_log(void)
{
	const char	*why = "readable by every user: chmod o-r";
	size_t		 i;

	if (risk_key_open)
		log_event(LOG_WARNING, "flag_risk", NULL, "{s:s, s:s, s:s}",
		    "flag", "--tls-key", "value", conf.tls_key, "risk", why);
	if (risk_secret_open)
		log_event(LOG_WARNING, "flag_risk", NULL, "{s:s, s:s, s:s}",
		    "flag", "--api-secret", "value", conf.api_secret,
		    "risk", why);
	for (i = 0; i < conf.nproxy_from; i++)
		if (conf.proxy_from[i].prefixlen == 0)
			log_event(LOG_WARNING, "flag_risk", NULL,
			    "{s:s, s:s, s:s}", "flag", "--proxy-from",
			    "value", conf.proxy_from[i].af == AF_INET ?
			    "0.0.0.0/0" : "::/0", "risk", "any peer may "
			    "claim any client address in a PROXY header");
}

/*
 * The start event's "listeners": each bound address as "ADDR:PORT"
 * ("[ADDR]:PORT" for IPv6; "*" is bound as 0.0.0.0 and [::]),
 * followed by " smtps" for an implicit-TLS one.
 */
static json_t *
master_listener_names(const struct smtpd_conf *c)
{
	const struct listener	*l;
	const struct sockaddr_in *sin;
	const struct sockaddr_in6 *sin6;
	json_t			*a;
	char			 host[INET6_ADDRSTRLEN], name[96];
	int			 port, r, v6;
	size_t			 i;

	if ((a = json_array()) == NULL)
		return NULL;
	for (i = 0; i < c->nlisteners; i++) {
		l = &c->listeners[i];
		if (l->ss.ss_family == AF_INET6) {
			sin6 = (const struct sockaddr_in6 *)&l->ss;
			port = ntohs(sin6->sin6_port);
		} else {
			sin = (const struct sockaddr_in *)&l->ss;
			port = ntohs(sin->sin_port);
		}
		addr_str(&l->ss, host, sizeof(host));
		v6 = strchr(host, ':') != NULL;
		r = snprintf(name, sizeof(name), "%s%s%s:%d%s", v6 ? "[" : "",
		    host, v6 ? "]" : "", port, l->smtps ? " smtps" : "");
		if (r < 0 || (size_t)r >= sizeof(name))
			strlcpy(name, l->name, sizeof(name));
		json_array_append_new(a, json_string(name));
	}
	return a;
}

/*
 * The programs the master starts by exec, found now, so that a missing
 * one is a start-up error, not a dead child: this one (the health
 * process), and smtpd-relay beside it (or at RELAY_PATH when built so).
 */
static void
master_exec_paths(struct smtpd_conf *c, const char *argv0)
{
	char	 dir[PATH_MAX], *slash;
	ssize_t	 n;

	/*
	 * Without /proc (OpenBSD): argv[0], made absolute now, before
	 * daemon() moves to /; one found through PATH cannot be.
	 */
	if ((n = readlink("/proc/self/exe", c->self_path,
	    sizeof(c->self_path) - 1)) > 0)
		c->self_path[n] = '\0';
	else if (strchr(argv0, '/') == NULL)
		errx(1, "%s: start smtpd by its path (as rc.d and systemd "
		    "do), so that it finds smtpd-relay beside it", argv0);
	else if (realpath(argv0, c->self_path) == NULL)	/* PATH_MAX fits */
		errx(1, "%s: %s", argv0, strerror(errno));
	if (c->health != NULL && access(c->self_path, X_OK) == -1)
		errx(1, "%s: %s (the health process is smtpd itself)",
		    c->self_path, strerror(errno));
#ifdef RELAY_PATH
	(void)dir;
	(void)slash;
	if (strlcpy(c->relay_path, RELAY_PATH, sizeof(c->relay_path)) >=
	    sizeof(c->relay_path))
		errx(1, "RELAY_PATH too long");
#else
	strlcpy(dir, c->self_path, sizeof(dir));
	if ((slash = strrchr(dir, '/')) == NULL)
		strlcpy(dir, ".", sizeof(dir));
	else
		*slash = '\0';
	if (snprintf(c->relay_path, sizeof(c->relay_path), "%s/smtpd-relay",
	    dir) >= (int)sizeof(c->relay_path))
		errx(1, "%s: path too long", dir);
#endif
	if (access(c->relay_path, X_OK) == -1)
		errx(1, "%s: %s (smtpd-relay is installed beside smtpd)",
		    c->relay_path, strerror(errno));
}

/*
 * Start a program of ours by exec, with our own flags: PATH ROLE
 * FLAGS...  Its descriptor 3 is fd, 4 is fd2, METRICS_FD is mfd, the
 * metrics region (writable for the relay and fetcher, which count in
 * it; read-only for good for health, which only sums it), and 6 is fd3,
 * each one only if there is one; 0 to 2 are ours, and nothing else we
 * hold reaches it.
 */
#if METRICS_FD != 5 || RELAY_SPOOL_FD != 6
#error "master_exec_priv() hands the metrics region over as descriptor 5"
#endif
static pid_t
master_exec_priv(const char *path, const char *role, int fd, int fd2,
    int mfd, int fd3)
{
	const int	  from[] = { fd, fd2, mfd, fd3 };	/* 3 to 6 */
	const char	 *name;
	char		**av;
	int		  ac, i;
	pid_t		  pid;

	for (ac = 0; master_argv[ac] != NULL; ac++)
		;
	if ((av = calloc((size_t)ac + 2, sizeof(*av))) == NULL)
		return -1;
	name = strrchr(path, '/');
	av[0] = (char *)(uintptr_t)(name != NULL ? name + 1 : path);
	av[1] = (char *)(uintptr_t)role;
	for (i = 1; i < ac; i++)
		av[i + 1] = master_argv[i];
	av[ac + 1] = NULL;
	switch (pid = fork()) {
	case -1:
		free(av);
		return -1;
	case 0:
		if (master_exec_fds(from, sizeof(from) / sizeof(from[0])) ==
		    -1)
			_exit(1);
		execv(path, av);
		fprintf(stderr, "smtpd: %s: %s\n", path, strerror(errno));
		_exit(1);
	}
	free(av);
	return pid;
}

/*
 * In a child about to exec: its descriptors 3, 4... become from[0],
 * from[1]... (closed where that is -1), and every other one above 2 is
 * closed.  Each is first copied above them all, so that no dup2()
 * overwrites one yet to be copied.  0, or -1.
 */
static int
master_exec_fds(const int *from, size_t n)
{
	int	 tmp[CHILD_FDS_MAX], top = STDERR_FILENO + (int)n;
	size_t	 i;

	if (n > CHILD_FDS_MAX)
		return -1;
	for (i = 0; i < n; i++)
		if ((tmp[i] = from[i]) != -1 &&
		    (tmp[i] = fcntl(from[i], F_DUPFD, top + 1)) == -1)
			return -1;
	for (i = 0; i < n; i++) {
		if (tmp[i] == -1)
			(void)close(STDERR_FILENO + 1 + (int)i);
		else if (dup2(tmp[i], STDERR_FILENO + 1 + (int)i) == -1)
			return -1;
	}
	closefrom(top + 1);
	return 0;
}

/*
 * -n and every start with --api: smtpd-relay checks the API flags
 * (role "check"); with -n --online it also calls FIRM and the
 * resolvers (role "online").  Its exit status.
 */
static int
master_relay_check_priv(const char *role)
{
	pid_t	 pid;
	int	 status;

	if ((pid = master_exec_priv(conf.relay_path, role, -1, -1,
	    metrics_fd, -1)) == -1)
		err(1, "fork");
	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR)
			err(1, "waitpid");
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

/*
 * -n --online: smtpd-relay makes the calls (the master links no HTTP
 * client), and the certificate must name -H.  Each failure is one line
 * on stderr; 0 when all passed, else 1.
 */
static int
master_online_priv(void)
{
	struct server_tls_cert_info	 ci;
	char				 why[1024];
	int				 failed = 0;

	if (conf.tls_cert != NULL) {
		if (server_tls_cert_read(conf.tls_cert, conf.hostname, &ci,
		    why, sizeof(why)) == -1) {
			fprintf(stderr, "smtpd: online: %s\n", why);
			failed = 1;
		} else if (!ci.names_host) {
			fprintf(stderr, "smtpd: online: --tls-cert %s does "
			    "not name -H %s (it names %s)\n", conf.tls_cert,
			    conf.hostname, ci.names[0] ? ci.names : ci.subject);
			failed = 1;
		}
	}
	fflush(stderr);
	if (master_relay_check_priv("online") != 0)
		failed = 1;
	return failed;
}

/*
 * The spool directory must exist (it is created when missing and we
 * may) and be writable by the worker user.  It is opened once here:
 * workers write through the descriptor.
 */
static void
master_spool_priv(struct smtpd_conf *c, int create)
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
 * The shared ban table: created here, filled from the cache so bans
 * hold from the first session, and mapped read-only for the workers.
 * With --fetch-only it is a file beside the cache, for -i sessions.
 * The fetcher gets its writable descriptor, the health process a
 * read-only one.
 */
static void
master_banlist_setup_priv(struct smtpd_conf *c)
{
	struct banlist_map	*rw;
	struct banlist_set	 set;
	json_t			*nets, *senders;
	size_t			 size = banlist_region_size(BANLIST_HALF_SIZE);
	int			 rwfd, rofd;

	conf_banlist_dir(c);
	if (c->config_test)
		return;
	if (c->inetd && master_banlist_attach_priv(c))
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
	} else if (shm_create(size, &rwfd, &rofd) == -1)
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
	if (c->health != NULL)
		c->banlist_rofd = rofd;
	else
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
master_banlist_attach_priv(struct smtpd_conf *c)
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

static void
master_listeners_bind_priv(struct smtpd_conf *c)
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

/*
 * SIGHUP: read certificate and key again.  Workers forked from now on
 * use the new context; sessions in progress keep theirs (and older
 * idle workers, whose certificate no longer matches the key, retire).
 * A bad pair keeps the old context and key.
 */
static void
master_tls_reload(void)
{
	struct tls	*ctx;
	char		 why[1024];

	if (conf.tls == NULL)
		return;
	if ((ctx = server_tls_setup_keyless(&conf, why, sizeof(why))) ==
	    NULL || server_tls_key_load_priv(&conf, why, sizeof(why)) == -1) {
		if (ctx != NULL)
			tls_free(ctx);
		log_event(LOG_WARNING, "tls_reload_failed", NULL, "{s:s}",
		    "error", why);
		return;
	}
	tls_free(conf.tls);
	conf.tls = ctx;
	tls_key_gen = generation;
	log_event(LOG_INFO, "tls_reloaded", NULL, "{s:s}", "cert",
	    conf.tls_cert);
	master_tls_expiry();
}

/* At start and after a reload: the expiry warning and its gauge. */
static void
master_tls_expiry(void)
{
	if (conf.tls != NULL)
		metrics_set(M_TLS_CERT_EXPIRY,
		    (uint64_t)server_tls_expiry_log(&conf));
}

/*
 * A private-key operation for a worker's TLS handshake: the key stays
 * here, the worker gets the result only.  Only for a worker serving a
 * session of its own, and no more than its one handshake needs
 * (STARTTLS is once a session): any other request is an attack on the
 * key, refused, logged once a session, and counted.
 */
static void
master_tls_sign(struct worker *w, const struct ctl_sign *m)
{
	struct tls_sign_res	 res;
	const char		*why = NULL;

	memset(&res, 0, sizeof(res));
	if (w->state != W_BUSY)
		why = "not serving a session";
	else if (w->signs >= TLS_SIGN_PER_SESSION)
		why = "more signatures than a handshake needs";
	if (why != NULL) {
		res.status = TLS_SIGN_REFUSED;
		metrics_add(M_TLS_SIGN_REFUSED, 1);
		if (w->signs != TLS_SIGN_PER_SESSION + 1)
			log_event(LOG_WARNING, "tls_sign_refused", NULL,
			    "{s:i, s:s, s:s}", "pid", (int)w->pid,
			    "client_ip", w->ip, "reason", why);
		w->signs = TLS_SIGN_PER_SESSION + 1;	/* logged */
	} else {
		w->signs++;
		server_tls_sign_priv(&m->req, &res, w->gen < tls_key_gen);
		metrics_add(res.status == 0 ? M_TLS_SIGNED :
		    M_TLS_SIGN_REFUSED, 1);
	}
	(void)send(w->fd, &res, sizeof(res), MSG_DONTWAIT | MSG_NOSIGNAL);
	explicit_bzero(&res, sizeof(res));
}

/*
 * Start a program of ours with a control socket as its 3 (and fd3 as
 * its 6): the relay and the verifier.  0, or -1.
 */
static int
master_exec_ctl_priv(struct child *c, const char *path, int mfd, int fd3)
{
	int	 sp[2];
	pid_t	 pid;

	c->started = monotime();
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) == -1) {
		log_warn("%s: socketpair", c->name);
		return -1;
	}
	if ((pid = master_exec_priv(path, c->name, sp[1], -1, mfd, fd3)) ==
	    -1) {
		log_warn("%s: fork", c->name);
		close(sp[0]);
		close(sp[1]);
		return -1;
	}
	close(sp[1]);
	c->pid = pid;
	c->ctl = sp[0];
	return 0;
}

/*
 * The relay: one per master, the only process that talks to FIRM.
 * Its descriptor 3 is a control socket on which the master hands it
 * one end of each worker's channel.  A relay that is replaced (SIGHUP)
 * drains: it serves the channels it has and leaves.
 */
static int
master_relay_start_priv(struct child *c)
{
	if (master_exec_ctl_priv(c, conf.relay_path, metrics_fd,
	    conf.spool_fd) == -1)
		return -1;
	relay_serial++;
	master_verifier_link();
	return 0;
}

/*
 * The verifier: this program again, by exec, with its control socket
 * as its 3.  It gets the link to the running relay now, and to each
 * relay started after it.
 */
static int
master_verifier_start_priv(struct child *c)
{
	if (master_exec_ctl_priv(c, conf.self_path, -1, -1) == -1)
		return -1;
	master_verifier_link();
	return 0;
}

/*
 * A new relay or a new verifier: a link from the verifier to the
 * running relay, one end to each; the master keeps neither.
 */
static void
master_verifier_link(void)
{
	struct ctl_link	 m;
	int		 vctl = children[CHILD_VERIFIER].ctl;
	int		 rctl = children[CHILD_RELAY].ctl;
	int		 lk[2];

	if (vctl == -1 || rctl == -1)
		return;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, lk) == -1) {
		log_warn("verifier: socketpair");
		return;
	}
	memset(&m, 0, sizeof(m));
	m.type = CTL_LINK;
	m.relay = relay_serial;
	if (fd_send_rec(rctl, lk[1], &m, sizeof(m), MSG_DONTWAIT) == -1 ||
	    fd_send_rec(vctl, lk[0], &m, sizeof(m), MSG_DONTWAIT) == -1)
		log_warn("verifier: handing over a link");
	close(lk[0]);
	close(lk[1]);
}

/*
 * A session starts: the verifier learns the client's address, as the
 * master took it from the connection (pool_attest()), before the worker
 * hears it may serve the session; and when it ends, that it has.  A
 * session the verifier cannot learn of is not served.  A worker's first
 * session brings the verifier its end of the worker's channel, so that
 * a channel is never lost on the way (a full control socket refuses
 * it): the claim that cannot hand it over is refused, and the next
 * tries again.  0, or -1.
 */
static int
master_attest(struct worker *w, int begins)
{
	struct ctl_attest	 m;
	int			 ctl = children[CHILD_VERIFIER].ctl, fd, r;

	if (ctl == -1)
		return -1;
	memset(&m, 0, sizeof(m));
	m.type = CTL_ATTEST;
	m.wid = w->wid;
	m.relay = w->relay;
	/* -i on a pipe: a session of no address (AF_UNSPEC), all the same */
	m.open = begins;
	if (begins)
		memcpy(&m.peer, &w->addr, sizeof(m.peer));
	if ((fd = begins ? w->vch : -1) != -1)
		r = fd_send_rec(ctl, fd, &m, sizeof(m), MSG_DONTWAIT);
	else
		r = send(ctl, &m, sizeof(m), MSG_DONTWAIT | MSG_NOSIGNAL) ==
		    -1 ? -1 : 0;
	if (r == -1) {
		log_warn("verifier: attesting a session");
		return -1;
	}
	if (fd != -1) {
		close(fd);		/* the verifier's now */
		w->vch = -1;
	}
	return 0;
}

/*
 * The fetcher: polls FIRM for the lists, writes the table (its 4) and
 * the cache.  Its 3 is a pipe that hangs up when the master is gone.
 */
static int
master_fetcher_start_priv(struct child *c)
{
	struct banlist_map	*m;
	pid_t			 pid;

	c->started = monotime();
	if (c->fds[FETCHER_ALIVE_W] == -1 &&
	    pipe2(&c->fds[FETCHER_ALIVE_R], O_CLOEXEC) == -1) {
		log_warn("%s: pipe", c->name);
		return -1;
	}
	if ((pid = master_exec_priv(conf.relay_path, c->name,
	    c->fds[FETCHER_ALIVE_R], conf.banlist_rwfd, metrics_fd, -1)) ==
	    -1) {
		log_warn("%s: fork", c->name);
		return -1;
	}
	c->pid = pid;
	if (conf.fetch_only && (m = banlist_map(conf.banlist_rwfd,
	    banlist_region_size(BANLIST_HALF_SIZE), 1)) != NULL) {
		banlist_set_writer(m, pid);
		banlist_unmap(m);
	}
	return 0;
}

/*
 * The health process: this program again, by exec, with the listening
 * socket as its 3 and the ban table, read-only, as its 4.  A fork would
 * hand it a copy of our memory, the TLS key in it.
 */
static int
master_health_start_priv(struct child *c)
{
	pid_t	 pid;

	c->started = monotime();
	if ((pid = master_exec_priv(conf.self_path, c->name,
	    conf.health_l.fd, conf.banlist_rofd, metrics_rofd, -1)) == -1) {
		log_warn("%s: fork", c->name);
		return -1;
	}
	c->pid = pid;
	return 0;
}

/* Workers: forked until --spare of them wait in accept. */
static int
master_workers_start(struct child *c)
{
	(void)c;
	pool_spawn(&pool);
	return 0;
}

/* Does this configuration run kind c now? */
static int
master_child_wanted(const struct child *c)
{
	switch (c->when) {
	case WHEN_SERVING:
		return !conf.fetch_only;
	case WHEN_API:
		return conf.api != NULL;
	case WHEN_HEALTH:
		return conf.health != NULL;
	case WHEN_RELAY_UP:
		/* a worker without them could only say 451 */
		return !conf.fetch_only && children[CHILD_RELAY].pid != 0 &&
		    children[CHILD_VERIFIER].pid != 0;
	}
	return 0;
}

/*
 * Start what should run and does not.  One that died is started again
 * at once, unless it started in this very second (then in the next).
 */
static void
master_children_start(void)
{
	struct child	*c;

	for (c = children; c < children + CHILD_KINDS; c++) {
		if (!master_child_wanted(c))
			continue;
		if ((c->flags & CF_POOL) ||
		    (c->pid == 0 && monotime() > c->started))
			(void)c->start(c);
	}
}

/*
 * Tell every child of kind c to leave (sig: SIGTERM, or SIGUSR1 to a
 * relay a reload replaces, which serves its workers to their end):
 * workers finish their sessions.  One that may overlap its successor
 * joins the old ones, which drain meanwhile, and the next may start
 * now; else the next starts once this one is reaped.
 */
static void
master_child_stop(struct child *c, int sig)
{
	size_t	 i;

	if (c->flags & CF_POOL) {
		pool_kill_all(&pool, SIGTERM);
		return;
	}
	if (c->pid == 0)
		return;
	kill(c->pid, sig);
	c->started = 0;
	if (!(c->flags & CF_OVERLAP)) {
		c->leaving = c->pid;	/* its exit is no failure */
		return;
	}
	for (i = 0; i < CHILD_OLD_MAX && c->old[i] != 0; i++)
		;
	if (i < CHILD_OLD_MAX)
		c->old[i] = c->pid;
	else
		kill(c->pid, SIGKILL);	/* reaped as a stranger */
	c->pid = 0;
	if (c->ctl != -1)
		close(c->ctl);
	c->ctl = -1;
}

/* Signal every child of kind c, old ones too. */
static void
master_child_signal(struct child *c, int sig)
{
	size_t	 i;

	if (c->flags & CF_POOL) {
		pool_kill_all(&pool, sig);
		return;
	}
	if (c->pid != 0)
		kill(c->pid, sig);
	for (i = 0; i < CHILD_OLD_MAX; i++)
		if (c->old[i] != 0)
			kill(c->old[i], sig);
}

/* How many children of kind c are not reaped yet. */
static size_t
master_child_live(const struct child *c)
{
	size_t	 i, n;

	if (c->flags & CF_POOL)
		return pool_live(&pool);
	n = c->pid != 0;
	for (i = 0; i < CHILD_OLD_MAX; i++)
		n += c->old[i] != 0;
	return n;
}

/*
 * The reaper found pid: if it is of kind c, its entry is free again,
 * its death logged (not while stopping, when every child leaves), and
 * 1 returned.  The loop starts the next one.
 */
static int
master_child_reaped(struct child *c, pid_t pid, int status)
{
	struct worker	*w;
	size_t		 i;
	int		 told;

	if (c->flags & CF_POOL) {
		if ((w = pool_find_pid(&pool, pid)) == NULL)
			return 0;
		pool_reaped(&pool, w, status);
		return 1;
	}
	for (i = 0; i < CHILD_OLD_MAX; i++)
		if (c->old[i] == pid) {
			c->old[i] = 0;
			return 1;
		}
	if (pid != c->pid)
		return 0;
	c->pid = 0;
	if (c->ctl != -1)
		close(c->ctl);
	c->ctl = -1;
	told = c->leaving == pid;
	c->leaving = 0;
	if (smtpd_stop)
		return 1;
	if (told && c->replaced != NULL && (WIFEXITED(status) ||
	    (WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM)))
		/* we stopped it for a reload: it did as told */
		log_event(LOG_INFO, c->replaced, NULL, "{s:i, s:i}",
		    "status", WIFEXITED(status) ? WEXITSTATUS(status) : -1,
		    "signal", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	else
		log_event(LOG_WARNING, c->exited, NULL, "{s:i, s:i}",
		    "status", WIFEXITED(status) ? WEXITSTATUS(status) : -1,
		    "signal", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	if (c->flags & CF_CHANNELS) {
		/*
		 * Idle workers hold dead channels: a new generation
		 * replaces them, attached to the next one.
		 */
		generation++;
		pool_retire_old(&pool);
	}
	return 1;
}

/*
 * Hand the relay or the verifier (kind) its end of a new worker's
 * channel, with the worker's id.  Without one the worker keeps a
 * channel nobody reads: its deliveries get 451.
 */
static int
master_attach(enum child_kind kind, int fd, uint64_t wid)
{
	struct ctl_channel	 m;
	int			 ctl = children[kind].ctl;

	if (ctl == -1)
		return -1;
	memset(&m, 0, sizeof(m));
	m.type = CTL_CHANNEL;
	m.relay = relay_serial;
	m.wid = wid;
	if (fd_send_rec(ctl, fd, &m, sizeof(m), MSG_DONTWAIT) == -1) {
		log_warn("%s: handing over a channel", children[kind].name);
		return -1;
	}
	return 0;
}

static void
pool_create(struct pool *p, size_t cap)
{
	size_t	 i;

	memset(p, 0, sizeof(*p));
	if ((p->w = calloc(cap, sizeof(*p->w))) == NULL)
		err(1, "worker table");
	for (i = 0; i < cap; i++)
		p->w[i].fd = p->w[i].vch = -1;
	p->cap = cap;
}

static struct worker *
pool_find_pid(struct pool *p, pid_t pid)
{
	size_t	 i;

	for (i = 0; i < p->cap; i++)
		if (p->w[i].pid == pid)
			return &p->w[i];
	return NULL;
}

/* Idle workers of the current generation. */
static size_t
pool_idle(const struct pool *p)
{
	size_t	 i, n = 0;

	for (i = 0; i < p->cap; i++)
		if (p->w[i].pid != 0 && p->w[i].gen == generation &&
		    p->w[i].state == W_IDLE && p->w[i].fd != -1)
			n++;
	return n;
}

static size_t
pool_live(const struct pool *p)
{
	size_t	 i, n = 0;

	for (i = 0; i < p->cap; i++)
		if (p->w[i].pid != 0)
			n++;
	return n;
}

/*
 * Fork one worker into w: its control socket, its relay channel, and
 * what master_worker_keep() lists.  inetd: the session is on stdin and
 * stdout.
 */
static int
pool_fork(struct pool *p, struct worker *w, int inetd)
{
	int	 ctl[2], ch[2], vch[2];
	pid_t	 pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctl) == -1)
		return -1;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ch) == -1) {
		close(ctl[0]);
		close(ctl[1]);
		return -1;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, vch) == -1) {
		close(ctl[0]);
		close(ctl[1]);
		close(ch[0]);
		close(ch[1]);
		return -1;
	}
	worker_serial++;
	(void)master_attach(CHILD_RELAY, ch[1], worker_serial);
	close(ch[1]);
	switch (pid = fork()) {
	case -1:
		close(ctl[0]);
		close(ctl[1]);
		close(ch[0]);
		close(vch[0]);
		close(vch[1]);
		return -1;
	case 0:
		master_worker_keep(p, w, ctl[1], ch[0], vch[0]);
		worker_main(&conf, ctl[1], ch[0], vch[0], inetd);
	}
	close(ctl[1]);
	close(ch[0]);
	close(vch[0]);
	memset(w, 0, sizeof(*w));
	w->pid = pid;
	w->fd = ctl[0];
	w->gen = generation;
	w->state = W_IDLE;
	w->wid = worker_serial;
	/* the verifier's end waits here for the worker's first session */
	w->vch = vch[1];
	w->relay = relay_serial;
	return 0;
}

/*
 * A worker, first thing after fork, keeps of what the master holds:
 *
 *	0, 1, 2		its standard descriptors (with -i, the client)
 *	listeners	the SMTP sockets it accepts on
 *	ctl, chan	its own control socket and relay channel
 *	vchan		its channel to the verifier
 *	fds[]		what its sandbox was prepared with
 *
 * and closes every other descriptor: the other workers' sockets, the
 * relay's, the fetcher's pipe, the ban table's and the metrics region's
 * descriptors (the table's mapping stays, read-only), the health
 * socket, whatever the master holds next.  Of the metrics region it
 * keeps its own slot, mapped from the region's descriptor before that
 * is closed, and unmaps the rest: the master's slot, the relay's, the
 * fetcher's and the header, which /healthz reads, are out of its reach.
 * It wipes its copy of the TLS key, which the master keeps for
 * signing, and frees its copy of the pool.  syslog's connection is
 * libc's, at a number of its own: closed first, made again.
 */
static void
master_worker_keep(struct pool *p, struct worker *w, int ctl, int chan,
    int vchan)
{
	const struct child	*c = &children[CHILD_WORKER];
	int			 keep[3 + MAX_LISTENERS + CHILD_FDS_MAX];
	int			 fd, top = STDERR_FILENO;
	size_t			 i, n = 0;

	keep[n++] = ctl;
	keep[n++] = chan;
	keep[n++] = vchan;
	for (i = 0; i < conf.nlisteners; i++)
		keep[n++] = conf.listeners[i].fd;
	for (i = 0; i < CHILD_FDS_MAX; i++)
		keep[n++] = c->fds[i];
	for (i = 0; i < n; i++)
		if (keep[i] > top)
			top = keep[i];
	if (metrics != NULL) {
#ifdef SMTPD_TEST_HOOKS
		testhook_metrics_region(metrics, metrics_size(metrics->nslots));
#endif
		(void)metrics_own(metrics_fd, METRICS_SLOT_WORKERS +
		    (size_t)(w - p->w), metrics_worker_at);
		metrics_unmap(metrics);
		metrics = NULL;
	}
	if (!conf.debug)
		closelog();
	for (fd = STDERR_FILENO + 1; fd <= top; fd++) {
		for (i = 0; i < n && keep[i] != fd; i++)
			;
		if (i == n)
			(void)close(fd);
	}
	closefrom(top + 1);
	if (!conf.debug)
		log_init(-1, conf.verbose);
	conf.banlist_rwfd = conf.banlist_rofd = conf.banlist_dirfd = -1;
	conf.spool_fd = -1;	/* the relay writes the spool */
	conf.health_l.fd = -1;
	server_tls_key_forget();
	free(p->w);
}

/* Fork workers until --spare of them wait in accept. */
static void
pool_spawn(struct pool *p)
{
	size_t	 idle, i;

	idle = pool_idle(p);
	for (i = 0; i < p->cap && idle < (size_t)conf.spare; i++) {
		if (p->w[i].pid != 0)
			continue;
		if (pool_fork(p, &p->w[i], 0) == -1) {
			log_warn("fork");
			return;
		}
		idle++;
	}
}

/* After SIGHUP or a new relay: idle workers of older generations leave. */
static void
pool_retire_old(struct pool *p)
{
	size_t	 i;

	for (i = 0; i < p->cap; i++)
		if (p->w[i].pid != 0 && p->w[i].gen != generation &&
		    p->w[i].state == W_IDLE)
			kill(p->w[i].pid, SIGUSR1);
}

static void
pool_kill_all(struct pool *p, int sig)
{
	size_t	 i;

	for (i = 0; i < p->cap; i++)
		if (p->w[i].pid != 0)
			kill(p->w[i].pid, sig);
}

/* A worker was reaped: its entry is free again. */
static void
pool_drop(struct pool *p, struct worker *w)
{
	if (w->fd != -1)
		close(w->fd);
	if (w->vch != -1)
		close(w->vch);
	if (w->state == W_BUSY)
		p->busy--;
	memset(w, 0, sizeof(*w));
	w->fd = -1;
	w->vch = -1;
}

/* A worker was reaped: its entry is free, its death counted. */
static void
pool_reaped(struct pool *p, struct worker *w, int status)
{
	pid_t	 pid = w->pid;

	pool_drop(p, w);
	if (WIFSIGNALED(status) || (WIFEXITED(status) &&
	    WEXITSTATUS(status) != 0))
		metrics_add(M_WORKER_DEATHS, 1);
	if (WIFSIGNALED(status))
		log_event(LOG_WARNING, "worker_died", NULL,
		    "{s:i, s:i}", "pid", (int)pid, "signal",
		    WTERMSIG(status));
	else if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
		log_event(LOG_WARNING, "worker_failed", NULL,
		    "{s:i, s:i}", "pid", (int)pid, "status",
		    WEXITSTATUS(status));
}

/*
 * The client of a claim, as the master knows it: the peer of the
 * connection the worker hands over with its claim (getpeername(), no
 * byte read), or, when that peer is inside --proxy-from, the address
 * the worker read from the PROXY header (v2 LOCAL: the peer's own).
 * With -i, a client on a pipe or a Unix socket has no address, and so
 * claims none.  NULL with w->addr and w->key set, else why the claim
 * is a lie.
 */
static const char *
pool_attest(struct worker *w, const struct ctl_claim *c, int fd)
{
	struct sockaddr_storage	 peer, claimed;
	struct ctl_claim	 real;
	socklen_t		 len = sizeof(peer);

	memset(&peer, 0, sizeof(peer));
	if (fd == -1)
		return "claim without its connection";
	if (getpeername(fd, (struct sockaddr *)&peer, &len) == -1 &&
	    (!conf.inetd || errno != ENOTSOCK))
		return "claim without a connected socket";
	if (peer.ss_family != AF_INET && peer.ss_family != AF_INET6) {
		if (!conf.inetd)
			return "claim without a TCP connection";
		peer.ss_family = AF_UNSPEC;	/* -i: a pipe, a Unix socket */
	}
	if (addr_unpack(c, &claimed) == -1)
		return "bad claim address";
	memset(&real, 0, sizeof(real));
	real.type = CTL_CLAIM;
	addr_pack(&peer, &real);
	if (memcmp(&real, c, sizeof(real)) != 0 &&
	    (claimed.ss_family == AF_UNSPEC || !proxy_trusted(&conf, &peer)))
		return "claim of another client's address";
	memcpy(&w->addr, &claimed, sizeof(w->addr));
	addr_str(&w->addr, w->ip, sizeof(w->ip));
	addr_key(&w->addr, w->key);
	return NULL;
}

/*
 * A session starts.  The limits are counted here, in the master's own
 * table, one claim at a time: two racing workers can never both slip
 * under a limit, and nothing a worker writes can change the count but
 * its own claim and release.  The client is the one pool_attest()
 * found.
 */
static void
pool_claim(struct pool *p, struct worker *w)
{
	struct ctl_answer	 a;
	size_t			 i, same = 1;

	for (i = 0; i < p->cap; i++)
		if (p->w[i].pid != 0 && p->w[i].state == W_BUSY &&
		    memcmp(p->w[i].key, w->key, sizeof(w->key)) == 0)
			same++;
	memset(&a, 0, sizeof(a));
	a.type = CTL_CLAIM;
	a.reply = -1;
	a.stress = pool_stress(p);
	if (p->busy + 1 > (size_t)conf.max_sessions)
		a.reply = REPLY_MAXSESSIONS;
	else if (same > (size_t)conf.max_per_ip)
		a.reply = REPLY_MAXPERIP;
	else if (w->addr.ss_family != AF_UNSPEC &&
	    rate_take(w->key, RATE_CONN, conf.max_conn_rate) == -1)
		a.reply = REPLY_CONNRATE;
	w->claimed = monotime();
	w->signs = 0;
	w->stress = a.stress;
	if (a.reply == -1 && master_attest(w, 1) == -1)
		a.reply = REPLY_MAXSESSIONS;	/* try again soon */
	if (a.reply == -1) {
		w->state = W_BUSY;
		p->busy++;
		/* the session's first MAIL needs no question of the relay */
		a.spool_full = conf.spool != NULL && spool_full(conf.spool_fd,
		    (unsigned long long)conf.spool_reserve);
	} else
		w->state = W_REFUSING;	/* not counted while it says 421 */
	(void)send(w->fd, &a, sizeof(a), MSG_DONTWAIT | MSG_NOSIGNAL);
}

/*
 * A message starts in a session this master counts: within
 * --max-msg-rate for the client it attested at the claim?  (-i: a
 * client without an address is never limited.)
 */
static void
pool_mail(struct worker *w)
{
	struct ctl_answer	 a;

	memset(&a, 0, sizeof(a));
	a.type = CTL_MAIL;
	a.reply = -1;
	if (w->addr.ss_family != AF_UNSPEC &&
	    rate_take(w->key, RATE_MSG, conf.max_msg_rate) == -1)
		a.reply = REPLY_MSGRATE;
	(void)send(w->fd, &a, sizeof(a), MSG_DONTWAIT | MSG_NOSIGNAL);
}

/*
 * Stress (SPEC section 2): fewer than a tenth of -c free now.  Sessions
 * claimed meanwhile get the stress timeouts; the log says when it
 * begins and ends.  Asked at every claim and every turn of the loop.
 */
static int
pool_stress(struct pool *p)
{
	size_t	 max = (size_t)conf.max_sessions;
	int	 on;

	on = p->busy >= max || (max - p->busy) * 10 < max;
	if (on != p->stress) {
		p->stress = on;
		log_event(LOG_INFO, "stress", NULL, "{s:b, s:I, s:I}",
		    "active", on, "sessions", (json_int_t)p->busy,
		    "max_sessions", (json_int_t)max);
	}
	return on;
}

/*
 * A session lasts --session-timeout at most (STRESS_SESSION_TIMEOUT
 * when claimed under stress): its worker says 421 and ends it.  One
 * still in a session --grace seconds later has stopped keeping time,
 * whatever it says, and is killed (SPEC section 1); its death is
 * counted with the others.  The master loop wakes at least once a
 * second for this.
 */
static void
pool_overstay(struct pool *p)
{
	struct worker	*w;
	time_t		 now = monotime(), limit;
	size_t		 i;

	for (i = 0; i < p->cap; i++) {
		w = &p->w[i];
		limit = (time_t)conf.session_timeout;
		if (w->stress && limit > STRESS_SESSION_TIMEOUT)
			limit = STRESS_SESSION_TIMEOUT;
		if (w->pid == 0 || w->claimed == 0 || now - w->claimed <=
		    limit + conf.grace)
			continue;
		log_event(LOG_WARNING, "worker_overstay", NULL,
		    "{s:i, s:s, s:I}", "pid", (int)w->pid, "client_ip", w->ip,
		    "seconds", (json_int_t)(now - w->claimed));
		kill(w->pid, SIGKILL);
		w->claimed = 0;		/* once */
	}
}

/*
 * One record from a worker.  Anything but a well-formed record that
 * fits the worker's state ends that worker: it is ours to kill, by the
 * pid fork() gave us.
 */
static void
pool_ctl(struct pool *p, struct worker *w)
{
	union {
		uint32_t		 type;
		struct ctl_claim	 claim;
		struct ctl_sign		 sign;
	}		 m;
	ssize_t		 n;
	const char	*why = NULL;
	int		 fd;

	n = fd_recv_rec(w->fd, &fd, &m, sizeof(m), MSG_DONTWAIT | MSG_TRUNC);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n == -1 && errno == EBADMSG)
		why = "bad descriptors";
	else if (n <= 0) {
		/* its session is over, whatever the reaper knows yet */
		close(w->fd);
		w->fd = -1;
		if (w->state == W_BUSY)
			p->busy--;
		w->state = W_GONE;
		return;
	} else if ((size_t)n < sizeof(m.type) || (size_t)n > sizeof(m))
		why = "bad record size";
	else if (m.type != CTL_CLAIM && fd != -1)
		why = "a descriptor with a record that takes none";
	else if (m.type == CTL_CLAIM) {
		if (n != sizeof(m.claim))
			why = "bad claim size";
		else if (w->state != W_IDLE)
			why = "claim while not idle";
		else if ((why = pool_attest(w, &m.claim, fd)) == NULL)
			pool_claim(p, w);
	} else if (m.type == CTL_RELEASE) {
		if (n != sizeof(m.type))
			why = "bad release size";
		else if (w->state == W_IDLE)
			why = "release while idle";
		else {
			if (w->state == W_BUSY) {
				p->busy--;
				(void)master_attest(w, 0);
			}
			w->state = W_IDLE;
			w->claimed = 0;
			/* born before a reload: its TLS context is old */
			if (w->gen != generation)
				kill(w->pid, SIGUSR1);
		}
	} else if (m.type == CTL_MAIL) {
		if (n != sizeof(m.type))
			why = "bad mail size";
		else if (w->state != W_BUSY)
			why = "mail while not serving";
		else
			pool_mail(w);
	} else if (m.type == CTL_TLS_SIGN) {
		if (n != sizeof(m.sign))
			why = "bad signing request size";
		else if (w->state == W_IDLE)
			why = "signing request while idle";
		else
			master_tls_sign(w, &m.sign);
	} else
		why = "unknown record type";
	if (fd != -1)
		close(fd);	/* the client is the worker's */
	if (why != NULL) {
		log_event(LOG_WARNING, "worker_protocol_error", NULL,
		    "{s:i, s:s}", "pid", (int)w->pid, "error", why);
		kill(w->pid, SIGKILL);
		close(w->fd);
		w->fd = -1;
		if (w->state == W_BUSY)
			p->busy--;
		w->state = W_GONE;
		w->claimed = 0;
	}
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
	}
}

/*
 * SIGUSR1 is the workers' (retire): blocked here, so that a worker
 * never dies of it before it has its own handler.
 */
static void
master_signals(void)
{
	static const int	 caught[] = { SIGTERM, SIGINT, SIGHUP, SIGCHLD,
				    SIGUSR1, 0 };

	signals_set(sig_handler, caught, NULL);
}

/*
 * SIGHUP: a new generation.  Certificate and key are read again, the
 * relay and the fetcher are replaced (the API host is resolved anew,
 * the lists polled now), and idle workers are replaced gradually.
 */
static void
master_reload(void)
{
	struct child	*c;

	generation++;
	log_event(LOG_INFO, "reload", NULL, "{s:i}", "generation",
	    (int)generation);
	master_tls_reload();
	for (c = children; c < children + CHILD_KINDS; c++)
		if (c->flags & CF_RELOAD)
			/* a relay replaced serves its sessions to their end */
			master_child_stop(c, (c->flags & CF_OVERLAP) ?
			    SIGUSR1 : SIGTERM);
	master_children_start();
	pool_retire_old(&pool);
}

static void
master_loop(void)
{
	struct pollfd	*pfd;
	struct worker	**who;
	/* retry a fork that failed; end a session that overstays */
	struct timespec	 ts = { 1, 0 };
	sigset_t	 empty, blocked;
	size_t		 i, n;

	if ((pfd = calloc(pool.cap + 1, sizeof(*pfd))) == NULL ||
	    (who = calloc(pool.cap + 1, sizeof(*who))) == NULL)
		fatal("poll set");
	sigemptyset(&empty);
	for (;;) {
		if (smtpd_child) {
			smtpd_child = 0;
			master_reap();
		}
		ts.tv_sec = 1;
		ts.tv_nsec = 0;
		if (master_drain(&ts))
			master_shutdown();
		if (smtpd_reload) {
			smtpd_reload = 0;
			master_reload();
		}
		master_children_start();
		pool_overstay(&pool);
		(void)pool_stress(&pool);	/* logs when it ends */
		master_gauges();
		for (i = n = 0; i < pool.cap; i++) {
			if (pool.w[i].pid == 0 || pool.w[i].fd == -1)
				continue;
			pfd[n].fd = pool.w[i].fd;
			pfd[n].events = POLLIN;
			who[n++] = &pool.w[i];
		}
		if (ppoll(pfd, n, &ts, &empty) == -1) {
			if (errno != EINTR)
				fatal("ppoll");
			continue;
		}
		for (i = 0; i < n; i++)
			if (pfd[i].revents != 0 && who[i]->fd == pfd[i].fd)
				pool_ctl(&pool, who[i]);
		/*
		 * A ppoll() that finds a descriptor ready returns without
		 * delivering the signals that came meanwhile: under load
		 * it always does.  Let them in now, or children would go
		 * unreaped and SIGTERM unheard for as long as the load lasts.
		 */
		sigprocmask(SIG_SETMASK, &empty, &blocked);
		sigprocmask(SIG_SETMASK, &blocked, NULL);
	}
}

/*
 * --drain SEC: the first SIGTERM or SIGINT starts SEC seconds of
 * normal service while /healthz answers 503, so that a load balancer
 * moves away before the listeners close.  The end of them, or another
 * SIGTERM or SIGINT, is the stop: 1 when it is due.  Meanwhile ts is
 * cut to the time left.
 */
static int
master_drain(struct timespec *ts)
{
	struct timespec	 now, left;

	if (drain_end.tv_sec == 0) {
		if (!smtpd_stop)
			return 0;
		if (conf.drain == 0)
			return 1;
		smtpd_stop = 0;
		clock_gettime(CLOCK_MONOTONIC, &drain_end);
		drain_end.tv_sec += conf.drain;
		log_event(LOG_INFO, "draining", NULL, "{s:I}", "seconds",
		    (json_int_t)conf.drain);
	}
	if (smtpd_stop)
		return 1;
	clock_gettime(CLOCK_MONOTONIC, &now);
	timespecsub(&drain_end, &now, &left);
	if (left.tv_sec < 0)
		return 1;
	if (timespeccmp(&left, ts, <))
		*ts = left;
	return 0;
}

/* Every child that exited, off the table of its kind. */
static void
master_reap(void)
{
	struct child	*c;
	pid_t		 pid;
	int		 status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		for (c = children; c < children + CHILD_KINDS; c++)
			if (master_child_reaped(c, pid, status))
				break;
}

/* The master's gauges, for the health process: written, never read. */
static void
master_gauges(void)
{
	const struct child	*c;

	if (metrics == NULL)
		return;
	for (c = children; c < children + CHILD_KINDS; c++) {
		if (c->flags & CF_POOL) {
			metrics_set(M_SESSIONS_ACTIVE, pool.busy);
			metrics_set(M_WORKERS_IDLE, pool_idle(&pool));
			metrics_set(M_WORKERS_BUSY, pool.busy);
			metrics_set(M_STRESS, pool.stress);
		} else if (c->gauge != M_COUNT)
			metrics_set(c->gauge, c->pid != 0);
	}
	metrics_set(M_DRAINING, drain_end.tv_sec != 0);
}

/*
 * --health ADDR:PORT: bound here, as root, like the SMTP listeners;
 * only the health process accepts on it.
 */
static void
master_health_bind_priv(struct smtpd_conf *c)
{
	struct listener	*l = &c->health_l;
	int		 on = 1;

	if ((l->fd = socket(l->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0)) == -1 ||
	    setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &on,
	    sizeof(on)) == -1 ||
	    (l->ss.ss_family == AF_INET6 && setsockopt(l->fd, IPPROTO_IPV6,
	    IPV6_V6ONLY, &on, sizeof(on)) == -1) ||
	    bind(l->fd, (struct sockaddr *)&l->ss, l->sslen) == -1 ||
	    listen(l->fd, 64) == -1)
		err(1, "--health %s", l->name);
}

/*
 * The workers' sandbox, made once here for every worker to apply
 * (sandbox_prepare_priv).  The descriptors it leaves open for them (on
 * Linux the Landlock ruleset, on OpenBSD none) are the ones it opened:
 * found by looking, they go on the worker's keep-list.
 */
static void
master_sandbox_prepare_priv(void)
{
	struct child	*c = &children[CHILD_WORKER];
	uint8_t		 before[MASTER_FD_SCAN / 8];
	size_t		 n = 0;
	int		 fd;

	memset(before, 0, sizeof(before));
	for (fd = 0; fd < MASTER_FD_SCAN; fd++)
		if (fcntl(fd, F_GETFD) != -1)
			before[fd / 8] |= 1 << (fd % 8);
	sandbox_prepare_priv(&conf);
	for (fd = 0; fd < MASTER_FD_SCAN; fd++) {
		if ((before[fd / 8] & (1 << (fd % 8))) ||
		    fcntl(fd, F_GETFD) == -1)
			continue;
		if (n == CHILD_FDS_MAX)
			fatalx("sandbox: more descriptors for the workers "
			    "than their keep-list has room for");
		c->fds[n++] = fd;
	}
}

/*
 * SIGTERM/SIGINT, after --drain (master_drain): stop accepting, let
 * idle sessions hear 421 and sessions in DATA finish within --grace,
 * then exit 0.  The relay serves the workers' last deliveries and
 * leaves once their channels are closed.
 */
static __dead void
master_shutdown(void)
{
	struct timespec	 deadline, now, ts;
	struct child	*c;
	sigset_t	 empty;
	size_t		 i, live;

	log_event(LOG_INFO, "stopping", NULL, "{s:I}", "grace",
	    (json_int_t)conf.grace);
	for (i = 0; i < conf.nlisteners; i++)
		if (conf.listeners[i].fd != -1)
			close(conf.listeners[i].fd);
	for (c = children; c < children + CHILD_KINDS; c++) {
		master_child_stop(c, SIGTERM);
		/* relays replaced before: --grace, as the rest */
		master_child_signal(c, SIGTERM);
	}
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	/* even with --grace 0, idle sessions get a moment to say 421 */
	deadline.tv_sec += conf.grace > 0 ? conf.grace : 1;
	sigemptyset(&empty);
	for (;;) {
		master_reap();
		for (i = 0; i < pool.cap; i++)
			if (pool.w[i].pid != 0 && pool.w[i].fd != -1)
				pool_ctl(&pool, &pool.w[i]);
		for (live = 0, c = children; c < children + CHILD_KINDS; c++)
			live += master_child_live(c);
		if (live == 0)
			break;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > deadline.tv_sec ||
		    (now.tv_sec == deadline.tv_sec &&
		    now.tv_nsec >= deadline.tv_nsec)) {
			log_event(LOG_WARNING, "grace_expired", NULL,
			    "{s:i}", "sessions", (int)live);
			for (c = children; c < children + CHILD_KINDS; c++)
				master_child_signal(c, SIGKILL);
			while (waitpid(-1, NULL, 0) > 0)
				;
			break;
		}
		ts.tv_sec = 0;
		ts.tv_nsec = 50000000;
		(void)ppoll(NULL, 0, &ts, &empty);
	}
	log_event(LOG_INFO, "stop", NULL, NULL);
	exit(0);
}

/*
 * -i: one session on stdin/stdout, for inetd, tcpserver or a systemd
 * socket unit.  The separation holds: this process keeps the TLS key
 * and answers its one worker, which serves the session sandboxed, and
 * a relay of its own talks to FIRM.
 */
static __dead void
inetd_main(void)
{
	struct pollfd	 pfd;
	struct worker	*w;
	sigset_t	 empty;
	int		 status = 0;
	pid_t		 pid;

	/* stdout is the client: log lines go to stderr with -d */
	log_init(conf.debug ? STDERR_FILENO : -1, conf.verbose);
	master_signals();
	sandbox_master(&conf);
	pool_create(&pool, 1);
	(void)master_relay_start_priv(&children[CHILD_RELAY]);
	(void)master_verifier_start_priv(&children[CHILD_VERIFIER]);
	w = &pool.w[0];
	if (pool_fork(&pool, w, 1) == -1)
		fatal("fork");
	/* the worker has the client now */
	(void)close(STDIN_FILENO);
	(void)open("/dev/null", O_RDONLY);
	(void)close(STDOUT_FILENO);
	(void)open("/dev/null", O_WRONLY);
	sigemptyset(&empty);
	for (;;) {
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
			if (pid == w->pid) {
				master_child_stop(&children[CHILD_RELAY], SIGTERM);
				master_child_stop(&children[CHILD_VERIFIER], SIGTERM);
				exit(WIFEXITED(status) ? WEXITSTATUS(status) :
				    1);
			}
		if (smtpd_stop)
			kill(w->pid, SIGTERM);
		smtpd_stop = 0;
		pfd.fd = w->fd;
		pfd.events = POLLIN;
		if (ppoll(&pfd, w->fd != -1, NULL, &empty) > 0)
			pool_ctl(&pool, w);
	}
}
