/*
 * Privilege separation and sandboxing, one function per role.  The
 * platform split lives here and nowhere else: pledge and unveil on
 * OpenBSD; on Linux no_new_privs, Landlock, the unprivileged user,
 * resource limits and a seccomp-bpf allow-list, in that order (open
 * everything first, restrict the file system, drop the user, filter
 * system calls last).  Every step that fails is fatal: a process never
 * runs unconfined by accident.  The file system is confined twice where
 * it can be: a chroot (which works on every kernel, as OpenBSD's privsep
 * daemons do) and Landlock; a process that can have neither does not
 * start.  A worker's network confinement does not depend on Landlock at
 * all: its filter allows no socket, no connect and no send to an address.
 * Each role says in one start-up log line what confines it.
 */

#include <sys/types.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#ifdef __linux__
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <linux/filter.h>
#include <linux/landlock.h>
#include <linux/seccomp.h>
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stddef.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#ifdef __linux__
#include <seccomp.h>
#endif

#include "smtpd.h"

#ifndef GCONV_MULTIARCH
#define GCONV_MULTIARCH		""
#endif

enum role {
	ROLE_WORKER,
	ROLE_RELAY,
	ROLE_FETCHER,
	ROLE_HEALTH,
};

static const char *role_names[] = { "worker", "relay", "fetcher",
    "health" };

static void	sandbox_limits(const struct smtpd_conf *, enum role);

/*
 * Drop to --user: supplementary groups, then gid, then uid, each
 * checked.  Not running as root there is nothing to drop; the master
 * warned about that at start.
 */
void
sandbox_drop_user(const struct smtpd_conf *conf)
{
	uid_t	 ruid, euid, suid;
	gid_t	 rgid, egid, sgid;

	if (geteuid() != 0)
		return;
	if (setgroups(1, &conf->gid) == -1)
		fatal("sandbox: setgroups");
	if (setresgid(conf->gid, conf->gid, conf->gid) == -1)
		fatal("sandbox: setresgid %u", (unsigned)conf->gid);
	if (setresuid(conf->uid, conf->uid, conf->uid) == -1)
		fatal("sandbox: setresuid %u", (unsigned)conf->uid);
	if (getresgid(&rgid, &egid, &sgid) == -1 ||
	    getresuid(&ruid, &euid, &suid) == -1)
		fatal("sandbox: getresuid");
	if (rgid != conf->gid || egid != conf->gid || sgid != conf->gid ||
	    ruid != conf->uid || euid != conf->uid || suid != conf->uid)
		fatalx("sandbox: privileges were not dropped to %s",
		    conf->user);
}

/*
 * No new processes and no core files of session memory.  A worker also
 * gets a ceiling on its address space, on the files it writes and on
 * its CPU time, each far above what its sessions need (smtpd.8 gives
 * the figures), so a worker taken over cannot exhaust the host.
 */
static void
sandbox_limits(const struct smtpd_conf *conf, enum role role)
{
	struct rlimit	 rl = { 0, 0 };

	/*
	 * No new process.  The relay needs one thread (libunbound's),
	 * which counts as a process here: its filter refuses every clone
	 * but a thread's instead.
	 */
	if (role != ROLE_RELAY && setrlimit(RLIMIT_NPROC, &rl) == -1)
		fatal("sandbox: RLIMIT_NPROC");
	if (setrlimit(RLIMIT_CORE, &rl) == -1)
		fatal("sandbox: RLIMIT_CORE");
	if (role != ROLE_WORKER)
		return;
#ifndef SANDBOX_NO_RLIMIT_AS
	rl.rlim_cur = rl.rlim_max = (rlim_t)WORKER_AS_BASE +
	    (rlim_t)conf->max_size * WORKER_AS_PER_BYTE;
	if (setrlimit(RLIMIT_AS, &rl) == -1)
		fatal("sandbox: RLIMIT_AS");
#endif
	rl.rlim_cur = rl.rlim_max = (rlim_t)WORKER_FSIZE_BASE +
	    (rlim_t)conf->max_size * WORKER_FSIZE_PER_BYTE;
	if (setrlimit(RLIMIT_FSIZE, &rl) == -1)
		fatal("sandbox: RLIMIT_FSIZE");
	rl.rlim_cur = rl.rlim_max = (rlim_t)WORKER_CPU_PER_SESSION *
	    (rlim_t)conf->max_use;
	if (rl.rlim_cur > WORKER_CPU_MAX)
		rl.rlim_cur = rl.rlim_max = WORKER_CPU_MAX;
	if (setrlimit(RLIMIT_CPU, &rl) == -1)
		fatal("sandbox: RLIMIT_CPU");
}

#ifdef __OpenBSD__

/*
 * The master keeps root (it forks children that drop to --user, and
 * rereads the certificate on SIGHUP) but needs no more than this.
 */
void
sandbox_master(const struct smtpd_conf *conf)
{
	struct rlimit	 rl = { 0, 0 };

	(void)conf;
	if (setrlimit(RLIMIT_CORE, &rl) == -1)
		fatal("sandbox: RLIMIT_CORE");
	/* it execs smtpd-relay and hands it the workers' channels */
	if (pledge("stdio rpath proc exec id sendfd", NULL) == -1)
		fatal("sandbox: pledge");
}

void
cpu_pin(void)
{
}

void
sandbox_prepare_priv(const struct smtpd_conf *conf)
{
	(void)conf;
}

void
sandbox_worker(const struct smtpd_conf *conf)
{
	if (conf->spool != NULL && unveil(conf->spool, "rwc") == -1)
		fatal("sandbox: unveil %s", conf->spool);
	if (unveil(NULL, NULL) == -1)
		fatal("sandbox: unveil");
	sandbox_drop_user(conf);
	sandbox_limits(conf, ROLE_WORKER);
	/* inet: accept(2) on the listening sockets */
	if (pledge("stdio rpath wpath cpath inet", NULL) == -1)
		fatal("sandbox: pledge");
}

void
sandbox_worker_narrow(const struct smtpd_conf *conf)
{
	const char	*p;

	if (conf->max_use > 1)		/* it accepts again */
		p = conf->spool == NULL ? "stdio inet" : "stdio cpath wpath inet";
	else
		p = conf->spool == NULL ? "stdio" : "stdio cpath wpath";
	if (pledge(p, NULL) == -1)
		fatal("sandbox: pledge");
}

void
sandbox_relay(const struct smtpd_conf *conf)
{
	if (unveil(NULL, NULL) == -1)
		fatal("sandbox: unveil");
	sandbox_drop_user(conf);
	sandbox_limits(conf, ROLE_RELAY);
	if (pledge("stdio inet recvfd", NULL) == -1)
		fatal("sandbox: pledge");
}

void
sandbox_health(const struct smtpd_conf *conf)
{
	if (unveil(NULL, NULL) == -1)
		fatal("sandbox: unveil");
	sandbox_drop_user(conf);
	sandbox_limits(conf, ROLE_HEALTH);
	if (pledge("stdio inet", NULL) == -1)
		fatal("sandbox: pledge");
}

void
sandbox_fetcher(const struct smtpd_conf *conf)
{
	/* the directory of --banlist-cache, where the cache is renamed */
	if (unveil(conf->banlist_dir, "rwc") == -1)
		fatal("sandbox: unveil %s", conf->banlist_dir);
	if (unveil(NULL, NULL) == -1)
		fatal("sandbox: unveil");
	sandbox_drop_user(conf);
	sandbox_limits(conf, ROLE_FETCHER);
	if (pledge("stdio rpath wpath cpath inet", NULL) == -1)
		fatal("sandbox: pledge");
}

/* The region is shared memory named for a moment, opened twice. */
int
sandbox_shm_create(size_t size, int *rwfd, int *rofd)
{
	char	 name[] = "/tmp/smtpd-banlist.XXXXXXXXXX";
	int	 fd, ro;

	if ((fd = shm_mkstemp(name)) == -1)
		return -1;
	ro = shm_open(name, O_RDONLY | O_CLOEXEC, 0);
	shm_unlink(name);
	if (ro == -1 || ftruncate(fd, (off_t)size) == -1) {
		close(fd);
		if (ro != -1)
			close(ro);
		return -1;
	}
	*rwfd = fd;
	*rofd = ro;
	return 0;
}

#else	/* Linux */

/*
 * Landlock's ABI is stable; headers lag behind kernels (Debian 12 has
 * ABI 3), so the parts of ABI 4 to 6 used here are spelled out.
 */
struct ll_ruleset_attr {
	uint64_t	 handled_access_fs;
	uint64_t	 handled_access_net;	/* ABI 4 */
	uint64_t	 scoped;		/* ABI 6 */
};
struct ll_net_port_attr {
	uint64_t	 allowed_access;
	uint64_t	 port;
};
#define LL_ACCESS_FS_TRUNCATE		(1ULL << 14)	/* ABI 3 */
#define LL_ACCESS_FS_IOCTL_DEV		(1ULL << 15)	/* ABI 5 */
#define LL_ACCESS_NET_BIND_TCP		(1ULL << 0)	/* ABI 4 */
#define LL_ACCESS_NET_CONNECT_TCP	(1ULL << 1)
#define LL_SCOPE_ABSTRACT_UNIX_SOCKET	(1ULL << 0)	/* ABI 6 */
#define LL_SCOPE_SIGNAL			(1ULL << 1)
#define LL_RULE_NET_PORT		2

/* Where a process without a file system of its own is shut in. */
#define SANDBOX_EMPTY_DIR		"/var/empty"

static int	sandbox_landlock(const struct smtpd_conf *, enum role, int);
static void	sandbox_landlock_port(int, int);
static void	sandbox_seccomp(const struct smtpd_conf *, enum role,
		    struct sock_fprog *);
static void	sandbox_export(scmp_filter_ctx, struct sock_fprog *);
static void	sandbox_apply(const struct smtpd_conf *, enum role, int,
		    const struct sock_fprog *, const char *);
static void	sandbox_rule(scmp_filter_ctx, uint32_t, int, unsigned int,
		    const struct scmp_arg_cmp *);
static const char *sandbox_gconv_dir(void);
#ifdef SANDBOX_TRAP
static void	sandbox_sigsys(int, siginfo_t *, void *);
#endif

/*
 * Made once by the master, used by every worker it forks: building a
 * seccomp program and a Landlock ruleset costs more than a session.
 */
static struct sock_fprog	 prog_worker;
static int			 ruleset_worker = -1;
static int			 landlock_abi;
static const char		*worker_root;	/* chroot, or NULL */

/*
 * Landlock: no file system access at all, but for the directory the
 * role writes (the spool, the ban-list cache) and glibc's iconv
 * modules, which mime.c loads on demand.  TCP: no bind; connect only
 * to the FIRM API's port (the relay and the fetcher), or nowhere (a
 * worker).  No signal or abstract socket out of the domain.  Returns
 * the ruleset, or -1 when the kernel has no Landlock.
 */
static int
sandbox_landlock(const struct smtpd_conf *conf, enum role role, int dirfd)
{
	struct ll_ruleset_attr		 ra;
	struct landlock_path_beneath_attr pb;
	static const char		*gconv[] = {
		"/usr/lib/" GCONV_MULTIARCH "/gconv", "/usr/lib64/gconv",
		"/usr/lib/gconv" };
	uint64_t			 fs;
	size_t				 i;
	int				 abi, rfd, fd;

	abi = (int)syscall(SYS_landlock_create_ruleset, NULL, 0,
	    LANDLOCK_CREATE_RULESET_VERSION);
	if (abi < 0) {
		if (errno == ENOSYS || errno == EOPNOTSUPP)
			return -1;
		fatal("sandbox: landlock_create_ruleset");
	}
	landlock_abi = abi;
	fs = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |
	    LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR |
	    LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE |
	    LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR |
	    LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_MAKE_SOCK |
	    LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_BLOCK |
	    LANDLOCK_ACCESS_FS_MAKE_SYM;
	if (abi >= 2)
		fs |= LANDLOCK_ACCESS_FS_REFER;
	if (abi >= 3)
		fs |= LL_ACCESS_FS_TRUNCATE;
	if (abi >= 5)
		fs |= LL_ACCESS_FS_IOCTL_DEV;
	memset(&ra, 0, sizeof(ra));
	ra.handled_access_fs = fs;
	if (abi >= 4)
		ra.handled_access_net = LL_ACCESS_NET_BIND_TCP |
		    LL_ACCESS_NET_CONNECT_TCP;
	if (abi >= 6)
		ra.scoped = LL_SCOPE_ABSTRACT_UNIX_SOCKET |
		    LL_SCOPE_SIGNAL;
	/* the struct grew with each ABI: pass the size this ABI knows */
	rfd = (int)syscall(SYS_landlock_create_ruleset, &ra,
	    abi >= 6 ? sizeof(ra) : abi >= 4 ?
	    offsetof(struct ll_ruleset_attr, scoped) :
	    offsetof(struct ll_ruleset_attr, handled_access_net), 0);
	if (rfd == -1)
		fatal("sandbox: landlock_create_ruleset");

	if (dirfd != -1) {
		pb.allowed_access = LANDLOCK_ACCESS_FS_MAKE_REG |
		    LANDLOCK_ACCESS_FS_WRITE_FILE |
		    LANDLOCK_ACCESS_FS_REMOVE_FILE |
		    (role == ROLE_FETCHER ? LANDLOCK_ACCESS_FS_READ_FILE : 0) |
		    (abi >= 3 ? LL_ACCESS_FS_TRUNCATE : 0);
		pb.parent_fd = dirfd;
		if (syscall(SYS_landlock_add_rule, rfd,
		    LANDLOCK_RULE_PATH_BENEATH, &pb, 0) == -1)
			fatal("sandbox: landlock_add_rule (directory)");
	}
	for (i = 0; role == ROLE_WORKER && i < sizeof(gconv) /
	    sizeof(gconv[0]); i++) {
		if ((fd = open(gconv[i], O_PATH | O_DIRECTORY |
		    O_CLOEXEC)) == -1)
			continue;
		/* the directory too: in the chroot, glibc reads its
		 * configuration, not the cache (GCONV_PATH) */
		pb.allowed_access = LANDLOCK_ACCESS_FS_READ_FILE |
		    LANDLOCK_ACCESS_FS_READ_DIR | LANDLOCK_ACCESS_FS_EXECUTE;
		pb.parent_fd = fd;
		if (syscall(SYS_landlock_add_rule, rfd,
		    LANDLOCK_RULE_PATH_BENEATH, &pb, 0) == -1)
			fatal("sandbox: landlock_add_rule (%s)", gconv[i]);
		close(fd);
	}
	/* a worker has no inet socket: every TCP connect is refused */
	if (abi >= 4 && conf->api_port != 0 && (role == ROLE_RELAY ||
	    role == ROLE_FETCHER))
		sandbox_landlock_port(rfd, conf->api_port);
	/* the relay's DNS over TCP, for answers too long for UDP */
	for (i = 0; abi >= 4 && role == ROLE_RELAY && i < conf->nresolvers;
	    i++)
		sandbox_landlock_port(rfd, conf->resolvers[i].port);
	if (abi >= 4 && role == ROLE_RELAY && conf->nresolvers == 0)
		sandbox_landlock_port(rfd, 53);
	return rfd;
}

static void
sandbox_landlock_port(int rfd, int port)
{
	struct ll_net_port_attr	 np;

	np.allowed_access = LL_ACCESS_NET_CONNECT_TCP;
	np.port = (uint64_t)port;
	if (syscall(SYS_landlock_add_rule, rfd, LL_RULE_NET_PORT, &np, 0) ==
	    -1)
		fatal("sandbox: landlock_add_rule (port %d)", port);
}

static void
sandbox_rule(scmp_filter_ctx ctx, uint32_t action, int nr, unsigned int n,
    const struct scmp_arg_cmp *cmp)
{
	if (nr < 0)
		return;		/* not a system call on this architecture */
	if (seccomp_rule_add_array(ctx, action, nr, n, cmp) < 0)
		fatalx("sandbox: seccomp rule for %s",
		    seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr));
}

#define ALLOW(name)	sandbox_rule(ctx, SCMP_ACT_ALLOW, SCMP_SYS(name), 0, NULL)
#define ERRNO(name, e)	sandbox_rule(ctx, SCMP_ACT_ERRNO(e), SCMP_SYS(name), \
			    0, NULL)
/* A comparison with every field given (clang wants them all). */
#define ARG(n, op, a, b)	{ (n), (op), (scmp_datum_t)(a), (scmp_datum_t)(b) }
#define ALLOW_IF(name, ...) do {					\
	struct scmp_arg_cmp c_[] = { __VA_ARGS__ };			\
	sandbox_rule(ctx, SCMP_ACT_ALLOW, SCMP_SYS(name),		\
	    sizeof(c_) / sizeof(c_[0]), c_);				\
} while (0)

/*
 * The allow-list: what a role does once set up, and nothing else.  The
 * architecture is checked first (libseccomp kills on another); anything
 * not listed kills the process.
 */
static void
sandbox_seccomp(const struct smtpd_conf *conf, enum role role,
    struct sock_fprog *prog)
{
	scmp_filter_ctx	 ctx;
	uint32_t	 deflt = SCMP_ACT_KILL_PROCESS;
	size_t		 i;

#ifdef SANDBOX_TRAP
	deflt = SCMP_ACT_TRAP;
#endif
	if ((ctx = seccomp_init(deflt)) == NULL)
		fatalx("sandbox: seccomp_init");
	/*
	 * A binary tree rather than a list: the kernel runs the program
	 * for every system call number when a worker loads it (its action
	 * cache), and for every system call after that.
	 */
	if (seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2) < 0)
		fatalx("sandbox: seccomp_attr_set");

	/* descriptors and I/O */
	ALLOW(read);
	ALLOW(write);
	ALLOW(readv);
	ALLOW(writev);
	ALLOW(close);
	ALLOW(lseek);
	ALLOW(pread64);
	ALLOW(fstat);
	ALLOW(fstatfs);		/* the spool's free space */
	ALLOW(newfstatat);
	ALLOW(ppoll);
	ALLOW(poll);
	ALLOW(pselect6);
	ERRNO(ioctl, ENOTTY);
	if (role == ROLE_WORKER || role == ROLE_HEALTH) {
		/* no F_SETOWN, F_SETSIG, leases: signals stay ours */
		ALLOW_IF(fcntl, ARG(1, SCMP_CMP_EQ, F_GETFL, 0));
		ALLOW_IF(fcntl, ARG(1, SCMP_CMP_EQ, F_SETFL, 0));
		ALLOW_IF(fcntl, ARG(1, SCMP_CMP_EQ, F_GETFD, 0));
		ALLOW_IF(fcntl, ARG(1, SCMP_CMP_EQ, F_SETFD, 0));
		ALLOW_IF(fcntl, ARG(1, SCMP_CMP_EQ, F_DUPFD_CLOEXEC, 0));
	} else
		ALLOW(fcntl);	/* libcurl, libcrypto: nothing to signal */

	/*
	 * memory: nothing both writable and executable, and executable
	 * only from a file (iconv modules), never anonymous
	 */
	ALLOW(brk);
	ALLOW(munmap);
	ALLOW(mremap);
	ALLOW(madvise);
	ALLOW(munlock);		/* sodium_free() of the signing key */
	ALLOW_IF(mmap, ARG(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	ALLOW_IF(mmap, ARG(2, SCMP_CMP_MASKED_EQ, PROT_EXEC | PROT_WRITE,
	    PROT_EXEC), ARG(3, SCMP_CMP_MASKED_EQ, MAP_ANONYMOUS, 0));
	ALLOW_IF(mprotect, ARG(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));

	/* files, beneath the directory Landlock and the chroot leave */
	ALLOW(openat);
	ALLOW(fsync);
	ALLOW(renameat);
	ALLOW(renameat2);
	ALLOW(unlinkat);

	if (role == ROLE_WORKER) {
		/*
		 * The network: accept only on the listening sockets; no
		 * socket of any kind (syslog's was opened by the master),
		 * no connect, no bind, no listen, nothing sent to an
		 * address.  This holds on every kernel, Landlock or not.
		 */
		for (i = 0; i < conf->nlisteners; i++) {
			if (conf->listeners[i].fd == -1)
				continue;
			ALLOW_IF(accept, ARG(0, SCMP_CMP_EQ,
			    conf->listeners[i].fd, 0));
			ALLOW_IF(accept4, ARG(0, SCMP_CMP_EQ,
			    conf->listeners[i].fd, 0));
		}
		ERRNO(socket, EPERM);
		ERRNO(socketpair, EPERM);
		ALLOW_IF(sendto, ARG(4, SCMP_CMP_EQ, 0, 0));
		ALLOW(recvfrom);
	} else if (role == ROLE_HEALTH) {
		/* accept on its one listening socket, nothing else */
		ALLOW_IF(accept4, ARG(0, SCMP_CMP_EQ, conf->health_l.fd, 0));
		ERRNO(socket, EPERM);
		ERRNO(socketpair, EPERM);
		ALLOW_IF(sendto, ARG(4, SCMP_CMP_EQ, 0, 0));
		ALLOW(recvfrom);
	} else {
		/* the relay and the fetcher: TCP to the API, nothing else */
		ALLOW_IF(socket, ARG(0, SCMP_CMP_EQ, AF_INET, 0),
		    ARG(1, SCMP_CMP_MASKED_EQ, 0xf, SOCK_STREAM));
		ALLOW_IF(socket, ARG(0, SCMP_CMP_EQ, AF_INET6, 0),
		    ARG(1, SCMP_CMP_MASKED_EQ, 0xf, SOCK_STREAM));
		if (role == ROLE_RELAY) {
			/* and DNS: UDP from a random port (libunbound) */
			ALLOW_IF(socket, ARG(0, SCMP_CMP_EQ, AF_INET, 0),
			    ARG(1, SCMP_CMP_MASKED_EQ, 0xf, SOCK_DGRAM));
			ALLOW_IF(socket, ARG(0, SCMP_CMP_EQ, AF_INET6, 0),
			    ARG(1, SCMP_CMP_MASKED_EQ, 0xf, SOCK_DGRAM));
			ALLOW(bind);
		}
		ALLOW_IF(socketpair, ARG(0, SCMP_CMP_EQ, AF_UNIX, 0));
		ALLOW(connect);
		ALLOW(sendto);
		ALLOW(recvfrom);
		ALLOW(sendmsg);
		ALLOW(recvmsg);
		ALLOW(pipe2);
	}
	ALLOW(getsockopt);
	ALLOW(setsockopt);
	ALLOW(getsockname);
	ALLOW(getpeername);
	/*
	 * A worker shares the listening sockets with the master and its
	 * siblings, and shutdown(SHUT_RD) of one stops it for them all:
	 * only SHUT_WR (the end of a session), which leaves a listener be.
	 */
	if (role == ROLE_WORKER)
		ALLOW_IF(shutdown, ARG(1, SCMP_CMP_EQ, SHUT_WR, 0));
	else
		ALLOW(shutdown);

	/* time, signals, the process itself */
	ALLOW(clock_gettime);
	ALLOW(gettimeofday);
	ALLOW(time);
	ALLOW(clock_nanosleep);
	ALLOW(nanosleep);
	ALLOW(rt_sigaction);
	ALLOW(rt_sigprocmask);
	ALLOW(rt_sigreturn);
	ALLOW(getpid);
	ALLOW(gettid);
	ALLOW(getppid);
	ALLOW(getuid);
	ALLOW(geteuid);
	ALLOW(getgid);
	ALLOW(getegid);
	ALLOW(uname);
	ALLOW(getcwd);		/* glibc's iconv, for GCONV_PATH */
	ALLOW(getdents64);	/* and its gconv-modules.d */
	ALLOW(getrandom);
	ALLOW(futex);
	ALLOW(sched_yield);
	ALLOW(exit);
	ALLOW(exit_group);
	/*
	 * raise() and abort(), only where Landlock (ABI 6) keeps signals
	 * inside the sandbox; elsewhere seccomp kills them, which ends
	 * the process just as well.
	 */
	if (landlock_abi >= 6)
		ALLOW(tgkill);

#ifdef SANDBOX_SANITIZER
	/*
	 * The ASan+UBSan build of the tests only: what the sanitizer
	 * runtime does on its own (its signal stack, its CPU count, its
	 * reports); never in a build that is installed.
	 */
	if (role != ROLE_RELAY)
		ALLOW(sigaltstack);
	ALLOW(sched_getaffinity);
	ALLOW(readlink);
	ALLOW(getrlimit);
	ALLOW(prlimit64);
	/*
	 * A report reads /proc/self/cmdline (nothing here) and tests
	 * memory through a pipe (it does without).
	 */
	ERRNO(open, EACCES);
	ERRNO(pipe2, EACCES);
#endif
	/* probed by glibc, which lives without them */
	ERRNO(clone3, ENOSYS);
	if (role == ROLE_RELAY)
		ALLOW(rseq);	/* a new thread registers, as main did */
	else
		ERRNO(rseq, ENOSYS);
	ERRNO(statx, ENOSYS);
	/*
	 * No new process; RLIMIT_NPROC says the same.  The relay may
	 * start threads (libunbound's resolver): a thread shares this
	 * filter and Landlock domain.
	 */
	if (role == ROLE_RELAY) {
		ALLOW_IF(clone, ARG(0, SCMP_CMP_MASKED_EQ, CLONE_THREAD,
		    CLONE_THREAD));
		sandbox_rule(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
		    (struct scmp_arg_cmp[]){ ARG(0, SCMP_CMP_MASKED_EQ,
		    CLONE_THREAD, 0) });
		ALLOW(set_robust_list);
		ALLOW(sigaltstack);
		ALLOW(epoll_create1);
		ALLOW(epoll_ctl);
		ALLOW(epoll_wait);
		ALLOW(epoll_pwait);
	} else
		ERRNO(clone, EPERM);
	ERRNO(fork, EPERM);
	ERRNO(vfork, EPERM);

	sandbox_export(ctx, prog);
}

/* The BPF program of a filter, in memory, to load in any child. */
static void
sandbox_export(scmp_filter_ctx ctx, struct sock_fprog *prog)
{
	off_t	 size;
	void	*p;
	int	 fd;

	if ((fd = memfd_create("smtpd-bpf", MFD_CLOEXEC)) == -1)
		fatal("sandbox: memfd_create");
	if (seccomp_export_bpf(ctx, fd) < 0)
		fatalx("sandbox: seccomp_export_bpf");
	if ((size = lseek(fd, 0, SEEK_CUR)) <= 0 ||
	    size % (off_t)sizeof(struct sock_filter) != 0 ||
	    size / (off_t)sizeof(struct sock_filter) > BPF_MAXINSNS)
		fatalx("sandbox: bad seccomp program size %lld",
		    (long long)size);
	if ((p = malloc((size_t)size)) == NULL)
		fatal("sandbox: malloc");
	if (pread(fd, p, (size_t)size, 0) != size)
		fatal("sandbox: reading the seccomp program");
	close(fd);
	seccomp_release(ctx);
	prog->filter = p;
	prog->len = (unsigned short)(size / (off_t)sizeof(struct sock_filter));
}

/*
 * After accept(): nothing left to take away on Linux.  The filter
 * already allows accept only on the listening sockets, and loading a
 * second filter would cost each session as much again.
 */
void
sandbox_worker_narrow(const struct smtpd_conf *conf)
{
	(void)conf;
}

/* glibc's iconv modules: a worker's chroot (no secrets in there). */
static const char *
sandbox_gconv_dir(void)
{
	static const char	*dirs[] = {
		"/usr/lib/" GCONV_MULTIARCH "/gconv", "/usr/lib64/gconv",
		"/usr/lib/gconv" };
	size_t			 i;
	char			 path[PATH_MAX];

	for (i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		if (snprintf(path, sizeof(path), "%s/gconv-modules",
		    dirs[i]) >= (int)sizeof(path))
			continue;
		if (access(path, R_OK) == 0)
			return dirs[i];
	}
	return SANDBOX_EMPTY_DIR;
}

/*
 * In the master, once: the Landlock ruleset and the seccomp program of
 * the workers, and their chroot, for sandbox_worker() to apply; and the
 * start-up line that says what confines a worker.
 */
void
sandbox_prepare_priv(const struct smtpd_conf *conf)
{
	ruleset_worker = sandbox_landlock(conf, ROLE_WORKER, conf->spool_fd);
	sandbox_seccomp(conf, ROLE_WORKER, &prog_worker);
	if (geteuid() == 0) {
		worker_root = sandbox_gconv_dir();
		if (strcmp(worker_root, SANDBOX_EMPTY_DIR) == 0)
			(void)mkdir(SANDBOX_EMPTY_DIR, 0755);
		/*
		 * iconv finds its modules inside the chroot; set once here,
		 * not in every worker (the master never uses iconv, and
		 * the relay it starts does not either)
		 */
		else if (setenv("GCONV_PATH", "/", 1) == -1)
			fatal("sandbox: setenv");
	}
	if (worker_root == NULL && ruleset_worker == -1)
		fatalx("sandbox: workers would have no file-system "
		    "confinement (no Landlock, not root for a chroot)");
}

#ifdef SANDBOX_TRAP
/* Debug builds: name the forbidden system call, then die. */
static void
sandbox_sigsys(int sig, siginfo_t *si, void *ctx)
{
	char	 msg[128];
	int	 n;

	(void)ctx;
	n = snprintf(msg, sizeof(msg), "smtpd: sandbox: forbidden system "
	    "call %d\n", si->si_syscall);
	if (n > 0)
		(void)write(STDERR_FILENO, msg, (size_t)n);
	signal(sig, SIG_DFL);
	raise(sig);
}
#endif

/*
 * The master keeps root and its file system (it rereads the
 * certificate and resolves the API host on SIGHUP) and is not filtered;
 * it never executes anything, never leaves a core file with the keys in
 * it, and no other process of the same user may read its memory.
 */
void
sandbox_master(const struct smtpd_conf *conf)
{
	struct rlimit	 rl = { 0, 0 };

	(void)conf;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
		fatal("sandbox: PR_SET_NO_NEW_PRIVS");
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == -1)
		fatal("sandbox: PR_SET_DUMPABLE");
	if (setrlimit(RLIMIT_CORE, &rl) == -1)
		fatal("sandbox: RLIMIT_CORE");
}

/* One start-up line per role: what confines it. */
static void
sandbox_report(const struct smtpd_conf *conf, enum role role, int ruleset,
    const char *root)
{
	log_event(LOG_INFO, "sandbox", NULL,
	    "{s:s, s:s, s:b, s:b, s:i, s:s?, s:s, s:b, s:s}",
	    "role", role_names[role],
	    "seccomp", "allow-list, kill on anything else",
	    "landlock_fs", ruleset != -1,
	    "landlock_net", ruleset != -1 && landlock_abi >= 4 &&
	    role != ROLE_WORKER,
	    "landlock_abi", ruleset != -1 ? landlock_abi : 0,
	    "chroot", root,
	    "user", geteuid() == 0 ? conf->user : "(not root: unchanged)",
	    "no_new_privs", 1,
	    "network", role == ROLE_WORKER ?
	    "its client and its channels only: no socket, no connect" :
	    role == ROLE_HEALTH ?
	    "its HTTP clients only: no socket, no connect" :
	    role == ROLE_RELAY ? (conf->api != NULL ?
	    "TCP to the FIRM API's port; DNS to the resolvers" :
	    "DNS to the resolvers") :
	    conf->api != NULL ? "TCP to the FIRM API's port" : "none");
}

/*
 * Apply a role's sandbox, in the fixed order: no new privileges, the
 * file system (chroot, then Landlock), the user, the limits, and the
 * system-call filter last.
 */
static void
sandbox_apply(const struct smtpd_conf *conf, enum role role, int ruleset,
    const struct sock_fprog *prog, const char *root)
{
#ifdef SANDBOX_TRAP
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = sandbox_sigsys;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGSYS, &sa, NULL);
#endif
	if (prog->filter == NULL)
		fatalx("sandbox: no seccomp program for the %s",
		    role_names[role]);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
		fatal("sandbox: PR_SET_NO_NEW_PRIVS");
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == -1)
		fatal("sandbox: PR_SET_DUMPABLE");
	if (root != NULL) {
		if (chroot(root) == -1 || chdir("/") == -1)
			fatal("sandbox: chroot %s", root);
	}
	if (ruleset != -1 &&
	    syscall(SYS_landlock_restrict_self, ruleset, 0) == -1)
		fatal("sandbox: landlock_restrict_self");
	if (ruleset_worker != -1)
		close(ruleset_worker);
	if (ruleset != -1 && ruleset != ruleset_worker)
		close(ruleset);
	sandbox_drop_user(conf);
	sandbox_limits(conf, role);
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, prog) == -1)
		fatal("sandbox: seccomp");
}

void
sandbox_worker(const struct smtpd_conf *conf)
{
	sandbox_apply(conf, ROLE_WORKER, ruleset_worker, &prog_worker,
	    worker_root);
}

/*
 * Stay on the CPU the scheduler put us on, with every process we fork
 * from now on (they inherit it).  Each fresh worker takes copy-on-write
 * faults on the pages it shares with the master, and the master on its
 * own after each fork; each such fault flushes the TLB of every CPU the
 * process has run on, and each hand-over between the master, a worker
 * and the relay wakes a process on another CPU: on a virtual machine
 * every one of those is an interrupt through the hypervisor.  Measured
 * here (2 vCPUs, conn mode, c=10): 12.5 ms of CPU per message spread
 * over both CPUs, 4.3 ms on one.  A site that needs more than a CPU
 * runs several instances.
 */
void
cpu_pin(void)
{
	cpu_set_t	 set;
	int		 cpu;

	if ((cpu = sched_getcpu()) == -1)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	(void)sched_setaffinity(0, sizeof(set), &set);
}

/* The master says what confines a worker, once, at start. */
void
sandbox_worker_report(const struct smtpd_conf *conf)
{
	sandbox_report(conf, ROLE_WORKER, ruleset_worker, worker_root);
}

/*
 * The relay and the fetcher are programs of their own, sandboxed once
 * at their start: built here, applied at once.  Their chroot is an
 * empty directory (the fetcher writes its cache through a descriptor).
 */
static void
sandbox_helper(const struct smtpd_conf *conf, enum role role, int dirfd)
{
	struct sock_fprog	 prog;
	const char		*root = NULL;
	int			 ruleset;

	ruleset = sandbox_landlock(conf, role, dirfd);
	sandbox_seccomp(conf, role, &prog);
	if (geteuid() == 0) {
		(void)mkdir(SANDBOX_EMPTY_DIR, 0755);
		root = SANDBOX_EMPTY_DIR;
	}
	if (root == NULL && ruleset == -1)
		fatalx("sandbox: the %s would have no file-system "
		    "confinement (no Landlock, not root for a chroot)",
		    role_names[role]);
	sandbox_report(conf, role, ruleset, root);
	sandbox_apply(conf, role, ruleset, &prog, root);
}

void
sandbox_relay(const struct smtpd_conf *conf)
{
	sandbox_helper(conf, ROLE_RELAY, -1);
}

void
sandbox_fetcher(const struct smtpd_conf *conf)
{
	sandbox_helper(conf, ROLE_FETCHER, conf->banlist_dirfd);
}

void
sandbox_health(const struct smtpd_conf *conf)
{
	sandbox_helper(conf, ROLE_HEALTH, -1);
}

/*
 * A shared region the workers can only read: *rwfd may be mapped
 * writable (the master and the fetcher keep it), *rofd only read-only,
 * so a mapping made from it can never be made writable (no
 * VM_MAYWRITE): a worker holds only that mapping, never *rwfd.
 * Linux: a memfd whose size is sealed, reopened read-only through
 * /proc.  Returns 0, or -1 with errno set.
 */
int
sandbox_shm_create(size_t size, int *rwfd, int *rofd)
{
	char	 path[64];
	int	 fd, ro;

	if ((fd = memfd_create("smtpd-banlist", MFD_CLOEXEC |
	    MFD_ALLOW_SEALING)) == -1)
		return -1;
	if (ftruncate(fd, (off_t)size) == -1 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW |
	    F_SEAL_SEAL) == -1) {
		close(fd);
		return -1;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if ((ro = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		close(fd);
		return -1;
	}
	*rwfd = fd;
	*rofd = ro;
	return 0;
}

#endif	/* Linux */
