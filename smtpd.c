/*
 * smtpd: the master.  Parses and checks the flags, opens everything
 * that needs root, starts the relay and the ban-list fetcher (the
 * smtpd-relay program, which alone links an HTTP client), and keeps a
 * pool of preforked workers.  It never reads a byte from a client, holds
 * no HTTP client and no API key, and trusts nothing a worker can write:
 * its table of workers is its own memory, and a worker only ever asks
 * it something over the socketpair it was born with.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
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
	uint8_t			 key[16];	/* client of a W_BUSY session */
};

struct pool {
	struct worker		*w;
	size_t			 cap;
	size_t			 busy;		/* W_BUSY entries */
};

#define RELAY_DRAINING_MAX	8

static struct smtpd_conf	 conf;
static struct pool		 pool;
static uint32_t			 generation;
static char			**master_argv;
static pid_t			 fetcher_pid = -1;
static time_t			 fetcher_started;	/* CLOCK_MONOTONIC */
static int			 fetcher_alive[2] = { -1, -1 };
static pid_t			 relay_pid = -1;
static int			 relay_fd = -1;	/* control socket */
static time_t			 relay_started;
static pid_t			 relay_draining[RELAY_DRAINING_MAX];
static uint32_t			 tls_key_gen;	/* of the key in use */
static struct metrics_map	*metrics;	/* with --health */
static int			 metrics_fd = -1;
static pid_t			 health_pid = -1;
static time_t			 health_started;

static void	conf_spool(struct smtpd_conf *, int);
static void	conf_relay_path(struct smtpd_conf *, const char *);
static int	relay_check_priv(void);
static void	banlist_setup_priv(struct smtpd_conf *);
static int	banlist_attach_priv(struct smtpd_conf *);
static pid_t	helper_exec_priv(const char *, int, int);
static void	fetcher_start(void);
static int	relay_start(void);
static void	relay_drain_old(void);
static int	relay_attach(int);
static time_t	monotime(void);
static void	master_tls_reload(void);
static void	master_tls_sign(int, const struct ctl_sign *, int);
static void	master_reload(void);
static void	listeners_bind_priv(struct smtpd_conf *);
static void	pool_create(struct pool *, size_t);
static struct worker *pool_find_pid(struct pool *, pid_t);
static size_t	pool_idle(const struct pool *);
static void	pool_spawn(struct pool *);
static void	pool_retire_old(struct pool *);
static void	pool_kill_all(struct pool *, int);
static size_t	pool_live(const struct pool *);
static void	pool_drop(struct pool *, struct worker *);
static void	pool_ctl(struct pool *, struct worker *);
static void	pool_claim(struct pool *, struct worker *,
		    const struct ctl_claim *);
static void	master_signals(void);
static void	master_loop(void);
static void	master_reap(void);
static void	master_gauges(void);
static void	health_bind_priv(struct smtpd_conf *);
static void	health_start(void);
static __dead void master_shutdown(void);
static __dead void inetd_main(void);
static void	sig_handler(int);

int
main(int argc, char *argv[])
{
	char	 why[1024];

	/* before anything touches libcrypto: see tls.c */
	if (server_tls_init(why, sizeof(why)) == -1)
		errx(1, "%s", why);
	master_argv = argv;
	conf_init(&conf, argc, argv);
	if (sodium_init() == -1)
		errx(1, "libsodium initialisation failed");
	json_object_seed(0);	/* reads /dev/urandom now, not sandboxed */
	auth_init();		/* libopendkim, once for every worker */

	if (conf.check_cert)
		return tls_check_cert(&conf, 1);
	if (conf.tls_cert != NULL && conf.config_test &&
	    tls_check_cert(&conf, 0) != 0)
		return 1;
	conf_user(&conf);
	conf_relay_path(&conf, argv[0]);
	if (conf.api != NULL && relay_check_priv() != 0)
		return 1;	/* smtpd-relay named the flag */
	conf_spool(&conf, !conf.config_test);
	banlist_setup_priv(&conf);
	if (conf.config_test) {
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
		sandbox_prepare_priv(&conf);
		inetd_main();
	}

	if (!conf.fetch_only)
		listeners_bind_priv(&conf);
	pool_create(&pool, (size_t)(conf.max_sessions + conf.spare +
	    SLOT_SLACK));
	if (conf.health != NULL) {
		health_bind_priv(&conf);
		metrics = metrics_create_priv(METRICS_SLOT_WORKERS + pool.cap,
		    &metrics_fd);
		metrics_use(metrics, METRICS_SLOT_MASTER);
		metrics_set(M_START_TIME, (uint64_t)time(NULL));
	}
	sandbox_prepare_priv(&conf);	/* knows the listening sockets */
	if (!conf.debug && daemon(0, 0) == -1)
		err(1, "daemon");
	log_init(conf.debug ? STDOUT_FILENO : -1, conf.verbose);
	if (geteuid() != 0)
		log_warnx("not started as root: workers keep uid %u, "
		    "--user is not applied", (unsigned)geteuid());
	master_signals();
	sandbox_master(&conf);
	/*
	 * The master, and every process it forks, on one CPU: see
	 * cpu_pin() for why.
	 */
	cpu_pin();
	if (!conf.fetch_only)
		sandbox_worker_report(&conf);
	log_event(LOG_INFO, "start", NULL, "{s:s, s:i, s:I, s:I, s:I}",
	    "version", SMTPD_VERSION, "listeners", (int)conf.nlisteners,
	    "spare", (json_int_t)conf.spare,
	    "max_sessions", (json_int_t)conf.max_sessions,
	    "max_use", (json_int_t)conf.max_use);
	if (!conf.fetch_only)
		(void)relay_start();
	if (conf.health != NULL)
		health_start();
	master_loop();
	/* NOTREACHED */
	return 1;
}

/*
 * smtpd-relay lives beside smtpd (or at RELAY_PATH when built so):
 * found now, so a missing one is a start-up error, not a dead relay.
 */
static void
conf_relay_path(struct smtpd_conf *c, const char *argv0)
{
	char	 self[PATH_MAX], *slash;
	ssize_t	 n;

#ifdef RELAY_PATH
	(void)argv0;
	if (strlcpy(c->relay_path, RELAY_PATH, sizeof(c->relay_path)) >=
	    sizeof(c->relay_path))
		errx(1, "RELAY_PATH too long");
#else
	if ((n = readlink("/proc/self/exe", self, sizeof(self) - 1)) > 0)
		self[n] = '\0';
	else if (strlcpy(self, argv0, sizeof(self)) >= sizeof(self))
		errx(1, "%s: path too long", argv0);
	if ((slash = strrchr(self, '/')) == NULL)
		strlcpy(self, ".", sizeof(self));
	else
		*slash = '\0';
	if (snprintf(c->relay_path, sizeof(c->relay_path), "%s/smtpd-relay",
	    self) >= (int)sizeof(c->relay_path))
		errx(1, "%s: path too long", self);
#endif
	if (access(c->relay_path, X_OK) == -1)
		errx(1, "%s: %s (smtpd-relay is installed beside smtpd)",
		    c->relay_path, strerror(errno));
}

/*
 * Start a helper program with our own flags: smtpd-relay ROLE FLAGS...,
 * with fd as its descriptor 3 and fd2 (or -1) as 4; nothing else open.
 */
static pid_t
helper_exec_priv(const char *role, int fd, int fd2)
{
	char	**av;
	int	  ac, i;
	pid_t	  pid;

	for (ac = 0; master_argv[ac] != NULL; ac++)
		;
	if ((av = calloc((size_t)ac + 2, sizeof(*av))) == NULL)
		return -1;
	av[0] = "smtpd-relay";
	av[1] = (char *)(uintptr_t)role;
	for (i = 1; i < ac; i++)
		av[i + 1] = master_argv[i];
	av[ac + 1] = NULL;
	switch (pid = fork()) {
	case -1:
		free(av);
		return -1;
	case 0:
		if (fd2 != -1 && fd2 != 4) {
			if (fd == 4 && (fd = dup(fd)) == -1)
				_exit(1);
			if (dup2(fd2, 4) == -1)
				_exit(1);
		}
		if (fd != -1 && fd != 3 && dup2(fd, 3) == -1)
			_exit(1);
		if (fd != -1)
			(void)fcntl(3, F_SETFD, 0);
		if (fd2 != -1)
			(void)fcntl(4, F_SETFD, 0);
		/* the metrics region, at 5 when there is one */
		if (metrics_fd != -1) {
			if (dup2(metrics_fd, METRICS_FD) == -1)
				_exit(1);
			(void)fcntl(METRICS_FD, F_SETFD, 0);
		}
		for (i = metrics_fd != -1 ? METRICS_FD + 1 : fd2 != -1 ? 5 :
		    fd != -1 ? 4 : 3; i < 1024; i++)
			(void)close(i);
		execv(conf.relay_path, av);
		fprintf(stderr, "smtpd: %s: %s\n", conf.relay_path,
		    strerror(errno));
		_exit(1);
	}
	free(av);
	return pid;
}

/* -n and every start with --api: smtpd-relay checks the API flags. */
static int
relay_check_priv(void)
{
	pid_t	 pid;
	int	 status;

	if ((pid = helper_exec_priv("check",
	    -1, -1)) == -1)
		err(1, "fork");
	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR)
			err(1, "waitpid");
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
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

	conf_banlist_dir(c);
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
}

/*
 * A private-key operation for a worker's TLS handshake: the key stays
 * here, the worker gets the result only.
 */
static void
master_tls_sign(int fd, const struct ctl_sign *m, int previous)
{
	struct tls_sign_res	 res;

	memset(&res, 0, sizeof(res));
	server_tls_sign_priv(&m->req, &res, previous);
	(void)send(fd, &res, sizeof(res), MSG_DONTWAIT | MSG_NOSIGNAL);
	explicit_bzero(&res, sizeof(res));
}

/* The fetcher: polls FIRM for the lists, writes the table and cache. */
static void
fetcher_start(void)
{
	pid_t	 pid;

	fetcher_started = monotime();
	if (fetcher_alive[1] == -1 &&
	    pipe2(fetcher_alive, O_CLOEXEC) == -1) {
		log_warn("pipe");
		return;
	}
	/* its descriptor 3 hangs up when the master is gone */
	if ((pid = helper_exec_priv("fetcher", fetcher_alive[0],
	    conf.banlist_rwfd)) == -1) {
		log_warn("fork fetcher");
		return;
	}
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

/*
 * The relay: one per master, the only process that talks to FIRM.
 * Its descriptor 3 is a control socket on which the master hands it
 * one end of each worker's channel.  A relay that is replaced (SIGHUP)
 * is told to drain: it serves the channels it has and leaves.
 */
static int
relay_start(void)
{
	int	 sp[2];
	pid_t	 pid;

	relay_drain_old();
	relay_started = monotime();
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) == -1) {
		log_warn("relay: socketpair");
		return -1;
	}
	if ((pid = helper_exec_priv("relay", sp[1], -1)) == -1) {
		log_warn("relay: fork");
		close(sp[0]);
		close(sp[1]);
		return -1;
	}
	close(sp[1]);
	relay_pid = pid;
	relay_fd = sp[0];
	return 0;
}

static void
relay_drain_old(void)
{
	size_t	 i;

	if (relay_pid == -1)
		return;
	kill(relay_pid, SIGTERM);
	for (i = 0; i < RELAY_DRAINING_MAX; i++)
		if (relay_draining[i] == 0) {
			relay_draining[i] = relay_pid;
			break;
		}
	if (i == RELAY_DRAINING_MAX)
		kill(relay_pid, SIGKILL);	/* reaped as a stranger */
	relay_pid = -1;
	if (relay_fd != -1)
		close(relay_fd);
	relay_fd = -1;
}

/*
 * Hand the relay its end of a new worker's channel.  Without a relay
 * the worker keeps a channel nobody reads: its deliveries get 451.
 */
static int
relay_attach(int fd)
{
	if (relay_fd == -1)
		return -1;
	if (fd_send(relay_fd, fd) == -1) {
		log_warn("relay: handing over a channel");
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
		p->w[i].fd = -1;
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
 * nothing of the other workers' (a worker that could speak for another
 * could free that one's slot).  inetd: the session is on stdin/stdout.
 */
static int
pool_fork(struct pool *p, struct worker *w, int inetd)
{
	int	 ctl[2], ch[2];
	size_t	 i;
	pid_t	 pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctl) == -1)
		return -1;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ch) == -1) {
		close(ctl[0]);
		close(ctl[1]);
		return -1;
	}
	(void)relay_attach(ch[1]);
	close(ch[1]);
	switch (pid = fork()) {
	case -1:
		close(ctl[0]);
		close(ctl[1]);
		close(ch[0]);
		return -1;
	case 0:
		close(ctl[0]);
		for (i = 0; i < p->cap; i++)
			if (p->w[i].fd != -1)
				close(p->w[i].fd);
		if (relay_fd != -1)
			close(relay_fd);
		if (fetcher_alive[1] != -1)
			close(fetcher_alive[1]);
		if (fetcher_alive[0] != -1)
			close(fetcher_alive[0]);
		/* the table's writable descriptor never reaches a worker */
		if (conf.banlist_rwfd != -1)
			close(conf.banlist_rwfd);
		if (conf.banlist_dirfd != -1)
			close(conf.banlist_dirfd);
		conf.banlist_rwfd = conf.banlist_dirfd = -1;
		/* nor the health socket, which only the health process uses */
		if (conf.health != NULL && conf.health_l.fd != -1)
			close(conf.health_l.fd);
		conf.health_l.fd = -1;
		metrics_use(metrics, METRICS_SLOT_WORKERS +
		    (size_t)(w - p->w));
		free(p->w);
		worker_main(&conf, ctl[1], ch[0], inetd);
	}
	close(ctl[1]);
	close(ch[0]);
	memset(w, 0, sizeof(*w));
	w->pid = pid;
	w->fd = ctl[0];
	w->gen = generation;
	w->state = W_IDLE;
	return 0;
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
	if (w->state == W_BUSY)
		p->busy--;
	memset(w, 0, sizeof(*w));
	w->fd = -1;
}

/*
 * A session starts.  The limits are counted here, in the master's own
 * table, one claim at a time: two racing workers can never both slip
 * under a limit, and nothing a worker writes can change the count but
 * its own claim and release.
 */
static void
pool_claim(struct pool *p, struct worker *w, const struct ctl_claim *c)
{
	struct ctl_answer	 a;
	size_t			 i, same = 1;

	for (i = 0; i < p->cap; i++)
		if (p->w[i].pid != 0 && p->w[i].state == W_BUSY &&
		    memcmp(p->w[i].key, c->key, sizeof(c->key)) == 0)
			same++;
	a.type = CTL_CLAIM;
	a.reply = -1;
	if (p->busy + 1 > (size_t)conf.max_sessions)
		a.reply = REPLY_MAXSESSIONS;
	else if (same > (size_t)conf.max_per_ip)
		a.reply = REPLY_MAXPERIP;
	if (a.reply == -1) {
		w->state = W_BUSY;
		memcpy(w->key, c->key, sizeof(w->key));
		p->busy++;
	} else
		w->state = W_REFUSING;	/* not counted while it says 421 */
	(void)send(w->fd, &a, sizeof(a), MSG_DONTWAIT | MSG_NOSIGNAL);
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

	n = recv(w->fd, &m, sizeof(m), MSG_DONTWAIT | MSG_TRUNC);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		/* its session is over, whatever the reaper knows yet */
		close(w->fd);
		w->fd = -1;
		if (w->state == W_BUSY)
			p->busy--;
		w->state = W_GONE;
		return;
	}
	if ((size_t)n < sizeof(m.type) || (size_t)n > sizeof(m))
		why = "bad record size";
	else if (m.type == CTL_CLAIM) {
		if (n != sizeof(m.claim))
			why = "bad claim size";
		else if (w->state != W_IDLE)
			why = "claim while not idle";
		else
			pool_claim(p, w, &m.claim);
	} else if (m.type == CTL_RELEASE) {
		if (n != sizeof(m.type))
			why = "bad release size";
		else if (w->state == W_IDLE)
			why = "release while idle";
		else {
			if (w->state == W_BUSY)
				p->busy--;
			w->state = W_IDLE;
			/* born before a reload: its TLS context is old */
			if (w->gen != generation)
				kill(w->pid, SIGUSR1);
		}
	} else if (m.type == CTL_TLS_SIGN) {
		if (n != sizeof(m.sign))
			why = "bad signing request size";
		else if (w->state == W_IDLE)
			why = "signing request while idle";
		else
			master_tls_sign(w->fd, &m.sign,
			    w->gen < tls_key_gen);
	} else
		why = "unknown record type";
	if (why != NULL) {
		log_event(LOG_WARNING, "worker_protocol_error", NULL,
		    "{s:i, s:s}", "pid", (int)w->pid, "error", why);
		kill(w->pid, SIGKILL);
		close(w->fd);
		w->fd = -1;
		if (w->state == W_BUSY)
			p->busy--;
		w->state = W_GONE;
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
	generation++;
	log_event(LOG_INFO, "reload", NULL, "{s:i}", "generation",
	    (int)generation);
	master_tls_reload();
	if (fetcher_pid != -1) {
		kill(fetcher_pid, SIGTERM);
		fetcher_started = 0;
	}
	if (!conf.fetch_only) {
		(void)relay_start();
		pool_spawn(&pool);
		pool_retire_old(&pool);
	}
}

static void
master_loop(void)
{
	struct pollfd	*pfd;
	struct worker	**who;
	struct timespec	 ts = { 1, 0 };	/* retry a fork that failed */
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
		if (smtpd_stop)
			master_shutdown();
		if (smtpd_reload) {
			smtpd_reload = 0;
			master_reload();
		}
		if (conf.api != NULL && fetcher_pid == -1 &&
		    monotime() > fetcher_started)
			fetcher_start();
		if (!conf.fetch_only && relay_pid == -1 &&
		    monotime() > relay_started)
			(void)relay_start();
		/* with --api, a worker without a relay could only say 451 */
		if (!conf.fetch_only &&
		    (relay_pid != -1 || conf.api == NULL))
			pool_spawn(&pool);
		if (conf.health != NULL && health_pid == -1 &&
		    monotime() > health_started)
			health_start();
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

static void
master_reap(void)
{
	struct worker	*w;
	pid_t		 pid;
	size_t		 i;
	int		 status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (pid == health_pid) {
			health_pid = -1;	/* restarted by the loop */
			if (!smtpd_stop)
				log_event(LOG_WARNING, "health_exited", NULL,
				    "{s:i, s:i}", "status", WIFEXITED(status) ?
				    WEXITSTATUS(status) : -1, "signal",
				    WIFSIGNALED(status) ? WTERMSIG(status) : 0);
			continue;
		}
		if (pid == fetcher_pid) {
			fetcher_pid = -1;	/* restarted by the loop */
			if (!smtpd_stop)
				log_event(LOG_WARNING, "fetcher_exited", NULL,
				    "{s:i, s:i}", "status", WIFEXITED(status) ?
				    WEXITSTATUS(status) : -1, "signal",
				    WIFSIGNALED(status) ? WTERMSIG(status) : 0);
			continue;
		}
		if (pid == relay_pid) {
			relay_pid = -1;
			close(relay_fd);
			relay_fd = -1;
			if (smtpd_stop)
				continue;
			log_event(LOG_WARNING, "relay_exited", NULL,
			    "{s:i, s:i}", "status", WIFEXITED(status) ?
			    WEXITSTATUS(status) : -1, "signal",
			    WIFSIGNALED(status) ? WTERMSIG(status) : 0);
			/*
			 * Idle workers hold dead channels: a new generation
			 * replaces them, attached to a new relay, started
			 * now unless this one died young (then in a second).
			 */
			generation++;
			pool_retire_old(&pool);
			if (monotime() > relay_started)
				(void)relay_start();
			continue;
		}
		for (i = 0; i < RELAY_DRAINING_MAX; i++)
			if (relay_draining[i] == pid)
				relay_draining[i] = 0;
		if ((w = pool_find_pid(&pool, pid)) == NULL)
			continue;
		pool_drop(&pool, w);
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
}

/* The master's gauges, for the health process: written, never read. */
static void
master_gauges(void)
{
	if (metrics == NULL)
		return;
	metrics_set(M_SESSIONS_ACTIVE, pool.busy);
	metrics_set(M_WORKERS_IDLE, pool_idle(&pool));
	metrics_set(M_WORKERS_BUSY, pool.busy);
	metrics_set(M_RELAY_UP, relay_pid != -1);
	metrics_set(M_FETCHER_UP, fetcher_pid != -1);
}

/*
 * --health ADDR:PORT: bound here, as root, like the SMTP listeners;
 * only the health process accepts on it.
 */
static void
health_bind_priv(struct smtpd_conf *c)
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

/* The health process: forked with the metrics and its socket only. */
static void
health_start(void)
{
	pid_t	 pid;
	size_t	 i;

	health_started = monotime();
	switch (pid = fork()) {
	case -1:
		log_warn("fork health");
		return;
	case 0:
		for (i = 0; i < pool.cap; i++)
			if (pool.w[i].fd != -1)
				close(pool.w[i].fd);
		for (i = 0; i < conf.nlisteners; i++)
			if (conf.listeners[i].fd != -1)
				close(conf.listeners[i].fd);
		if (relay_fd != -1)
			close(relay_fd);
		if (conf.banlist_rwfd != -1)
			close(conf.banlist_rwfd);
		if (conf.banlist_dirfd != -1)
			close(conf.banlist_dirfd);
		conf.banlist_rwfd = conf.banlist_dirfd = -1;
		close(metrics_fd);
		metrics_use(NULL, 0);
		health_main(&conf, metrics);
	}
	health_pid = pid;
}

/*
 * SIGTERM/SIGINT: stop accepting, let idle sessions hear 421 and
 * sessions in DATA finish within --grace, then exit 0.  The relay
 * serves the workers' last deliveries and leaves once their channels
 * are closed.
 */
static __dead void
master_shutdown(void)
{
	struct timespec	 deadline, now, ts;
	sigset_t	 empty;
	size_t		 i, live;

	log_event(LOG_INFO, "stopping", NULL, "{s:I}", "grace",
	    (json_int_t)conf.grace);
	for (i = 0; i < conf.nlisteners; i++)
		if (conf.listeners[i].fd != -1)
			close(conf.listeners[i].fd);
	pool_kill_all(&pool, SIGTERM);
	if (fetcher_pid != -1)
		kill(fetcher_pid, SIGTERM);
	if (health_pid != -1)
		kill(health_pid, SIGTERM);
	relay_drain_old();
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	/* even with --grace 0, idle sessions get a moment to say 421 */
	deadline.tv_sec += conf.grace > 0 ? conf.grace : 1;
	sigemptyset(&empty);
	for (;;) {
		master_reap();
		for (i = 0; i < pool.cap; i++)
			if (pool.w[i].pid != 0 && pool.w[i].fd != -1)
				pool_ctl(&pool, &pool.w[i]);
		live = pool_live(&pool) + (fetcher_pid != -1);
		for (i = 0; i < RELAY_DRAINING_MAX; i++)
			live += relay_draining[i] != 0;
		if (live == 0)
			break;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > deadline.tv_sec ||
		    (now.tv_sec == deadline.tv_sec &&
		    now.tv_nsec >= deadline.tv_nsec)) {
			log_event(LOG_WARNING, "grace_expired", NULL,
			    "{s:i}", "sessions", (int)live);
			pool_kill_all(&pool, SIGKILL);
			if (fetcher_pid != -1)
				kill(fetcher_pid, SIGKILL);
			if (health_pid != -1)
				kill(health_pid, SIGKILL);
			for (i = 0; i < RELAY_DRAINING_MAX; i++)
				if (relay_draining[i] != 0)
					kill(relay_draining[i], SIGKILL);
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
	(void)relay_start();
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
				relay_drain_old();
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
