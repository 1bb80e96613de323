/*
 * The sandbox on Linux: no_new_privs, the file system confined twice
 * where it can be, by a chroot (which works on every kernel, as
 * OpenBSD's privsep daemons do) and by Landlock, then (after sandbox.c
 * has dropped the user and set the limits) a seccomp-bpf allow-list.  A
 * process that can have neither a chroot nor Landlock does not start.
 * A worker's network confinement does not depend on Landlock at all:
 * its filter allows no socket, no connect and no send to an address.
 * sandbox.c takes these steps in their order; the Makefile builds this
 * file on Linux only.
 */

#include <sys/types.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <linux/filter.h>
#include <linux/landlock.h>
#include <linux/seccomp.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include <seccomp.h>

#include "smtpd.h"
#include "sandbox.h"

#ifndef GCONV_MULTIARCH
#define GCONV_MULTIARCH		""
#endif

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

/* What confines a role: built before, applied by sandbox_apply(). */
struct sandbox_plan {
	enum sandbox_role	 role;
	int			 ruleset;	/* Landlock, or -1 */
	struct sock_fprog	 prog;		/* seccomp */
	struct sock_fprog	 listeners;	/* a worker's second filter */
	const char		*root;		/* chroot, or NULL */
};

static int	sandbox_landlock(const struct smtpd_conf *, enum sandbox_role,
		    int);
static void	sandbox_landlock_port(int, int);
static void	sandbox_seccomp(const struct smtpd_conf *, enum sandbox_role,
		    struct sock_fprog *);
static void	sandbox_seccomp_listeners(const struct smtpd_conf *,
		    struct sock_fprog *);
static void	sandbox_export(scmp_filter_ctx, struct sock_fprog *);
static void	sandbox_seccomp_verifier_child(struct sock_fprog *);
static scmp_filter_ctx sandbox_seccomp_but(uint32_t *);
static void	sandbox_socket(scmp_filter_ctx, int, int, int);
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
static struct sandbox_plan	 plan_worker = { ROLE_WORKER, -1, { 0, NULL },
				    { 0, NULL }, NULL };
/* The relay's, the fetcher's or the health process's, made at its start. */
static struct sock_fprog	 verifier_child;	/* its children's */
static struct sandbox_plan	 plan_helper = { ROLE_RELAY, -1, { 0, NULL },
				    { 0, NULL }, NULL };
static int			 landlock_abi;

/*
 * Landlock: no file system access at all, but for the directory the
 * role writes (the spool, the ban-list cache) and glibc's iconv
 * modules, which mime.c loads on demand.  TCP: no bind; connect only
 * to the FIRM API's port (the relay and the fetcher), or nowhere (a
 * worker).  No signal or abstract socket out of the domain.  Returns
 * the ruleset, or -1 when the kernel has no Landlock.
 */
static int
sandbox_landlock(const struct smtpd_conf *conf, enum sandbox_role role,
    int dirfd)
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
	for (i = 0; (role == ROLE_WORKER || role == ROLE_VERIFIER) &&
	    i < sizeof(gconv) / sizeof(gconv[0]); i++) {
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
 * socket(af, type, proto) and socket(af, type, 0), with or without
 * SOCK_NONBLOCK and SOCK_CLOEXEC; libseccomp compares an argument once
 * a rule, hence two.
 */
static void
sandbox_socket(scmp_filter_ctx ctx, int af, int type, int proto)
{
	struct scmp_arg_cmp	 c[] = {
		ARG(0, SCMP_CMP_EQ, af, 0),
		ARG(1, SCMP_CMP_MASKED_EQ, 0xf, type),
		ARG(2, SCMP_CMP_EQ, 0, 0) };

	sandbox_rule(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 3, c);
	c[2].datum_a = (scmp_datum_t)proto;
	sandbox_rule(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 3, c);
}

/*
 * The allow-list: what a role does once set up, and nothing else.  The
 * architecture is checked first (libseccomp kills on another); anything
 * not listed kills the process.
 */
static void
sandbox_seccomp(const struct smtpd_conf *conf, enum sandbox_role role,
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
	if (role == ROLE_WORKER || role == ROLE_HEALTH ||
	    role == ROLE_VERIFIER) {
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
	/*
	 * A worker's metrics slot is a page of a shared region: grown,
	 * its mapping would reach the next slots (metrics.c)
	 */
	if (role == ROLE_WORKER && metrics_worker_at != NULL)
		ALLOW_IF(mremap, ARG(0, SCMP_CMP_NE,
		    (uintptr_t)metrics_worker_at, 0));
	else
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
	ALLOW(linkat);		/* a spool file, never over another */

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
		/*
		 * A claim hands the master the client's connection
		 * (SCM_RIGHTS on the control socket).  Every socket a
		 * worker holds is connected or listening: an address in
		 * the message reaches nobody.
		 */
		ALLOW(sendmsg);
	} else if (role == ROLE_VERIFIER) {
		/*
		 * No network: its channels, and a new one to the relay for
		 * each message, handed over on the relay's link.
		 */
		ERRNO(socket, EPERM);
		ALLOW_IF(socketpair, ARG(0, SCMP_CMP_EQ, AF_UNIX, 0));
		ALLOW_IF(sendto, ARG(4, SCMP_CMP_EQ, 0, 0));
		ALLOW(recvfrom);
		ALLOW(sendmsg);
		ALLOW(recvmsg);
		ALLOW(wait4);
		/* its children: ended past their deadline, and confined */
		ALLOW_IF(kill, ARG(1, SCMP_CMP_EQ, SIGKILL, 0));
		ALLOW_IF(prlimit64, ARG(0, SCMP_CMP_EQ, 0, 0));
		ALLOW_IF(seccomp, ARG(0, SCMP_CMP_EQ, SECCOMP_SET_MODE_FILTER,
		    0));
	} else if (role == ROLE_HEALTH) {
		/* accept on its one listening socket, nothing else */
		ALLOW_IF(accept4, ARG(0, SCMP_CMP_EQ, conf->health_l.fd, 0));
		ERRNO(socket, EPERM);
		ERRNO(socketpair, EPERM);
		ALLOW_IF(sendto, ARG(4, SCMP_CMP_EQ, 0, 0));
		ALLOW(recvfrom);
	} else {
		/*
		 * The relay and the fetcher: TCP to the API, nothing else
		 * (no MPTCP, SCTP, ICMP or raw socket, no other family:
		 * libcurl and libunbound need none)
		 */
		sandbox_socket(ctx, AF_INET, SOCK_STREAM, IPPROTO_TCP);
		sandbox_socket(ctx, AF_INET6, SOCK_STREAM, IPPROTO_TCP);
		if (role == ROLE_RELAY) {
			/* and DNS: UDP from a random port (libunbound) */
			sandbox_socket(ctx, AF_INET, SOCK_DGRAM, IPPROTO_UDP);
			sandbox_socket(ctx, AF_INET6, SOCK_DGRAM, IPPROTO_UDP);
			ALLOW(bind);
		}
		ALLOW_IF(socketpair, ARG(0, SCMP_CMP_EQ, AF_UNIX, 0));
		/*
		 * syslog(3) makes its socket again when syslogd went away
		 * (a restart of it, or none at all): that fails, and the
		 * line is lost, never the process.
		 */
		sandbox_rule(ctx, SCMP_ACT_ERRNO(EACCES), SCMP_SYS(socket), 1,
		    (struct scmp_arg_cmp[]){ ARG(0, SCMP_CMP_EQ, AF_UNIX, 0) });
		ALLOW(connect);
		ALLOW(sendto);
		ALLOW(recvfrom);
		ALLOW(sendmsg);
		ALLOW(recvmsg);
		ALLOW(pipe2);
	}
	ALLOW(getsockopt);
	if (role == ROLE_WORKER) {
		/*
		 * Nothing of ours sets a socket option in a worker; only
		 * libcrypto does, for kernel TLS on the client's
		 * connection when openssl.cnf turns it on (TCP_ULP "tls",
		 * then SOL_TLS).  Never on a listening socket: the second
		 * filter (sandbox_seccomp_listeners) kills that.
		 */
		ALLOW_IF(setsockopt, ARG(1, SCMP_CMP_EQ, IPPROTO_TCP, 0),
		    ARG(2, SCMP_CMP_EQ, TCP_ULP, 0));
		ALLOW_IF(setsockopt, ARG(1, SCMP_CMP_EQ, SOL_TLS, 0));
	} else
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
	} else if (role == ROLE_VERIFIER) {
		/* fork(), which glibc makes a clone without CLONE_VM */
		ALLOW_IF(clone, ARG(0, SCMP_CMP_MASKED_EQ, CLONE_VM |
		    CLONE_THREAD | CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID |
		    CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS |
		    CLONE_NEWCGROUP, 0));
		ALLOW(set_robust_list);
	} else
		ERRNO(clone, EPERM);
	ERRNO(fork, EPERM);
	ERRNO(vfork, EPERM);

	sandbox_export(ctx, prog);
}

/*
 * A second filter that allows all but what its caller adds, each with
 * *kill, the action that ends the process (a trap in debug builds).
 */
static scmp_filter_ctx
sandbox_seccomp_but(uint32_t *kill)
{
	scmp_filter_ctx	 ctx;

	*kill = SCMP_ACT_KILL_PROCESS;
#ifdef SANDBOX_TRAP
	*kill = SCMP_ACT_TRAP;
#endif
	if ((ctx = seccomp_init(SCMP_ACT_ALLOW)) == NULL)
		fatalx("sandbox: seccomp_init");
	return ctx;
}

/*
 * A worker's second filter: no setsockopt() on a listening socket,
 * which it shares with the master and its siblings (TCP_DEFER_ACCEPT
 * or a tiny receive buffer there would hold every session).  The
 * allow-list cannot say "none of these descriptors": libseccomp takes
 * one comparison of an argument a rule, and leaves open which of two
 * matching rules wins.  The kernel runs every filter and takes the
 * strictest answer, so this one allows all but that.  It is loaded
 * first: the allow-list forbids loading another.  It costs next to
 * nothing: a few instructions a call at most, and none for the calls
 * that the kernel's action cache knows every filter allows.
 */
static void
sandbox_seccomp_listeners(const struct smtpd_conf *conf,
    struct sock_fprog *prog)
{
	scmp_filter_ctx	 ctx;
	uint32_t	 kill;
	size_t		 i;

	ctx = sandbox_seccomp_but(&kill);
	for (i = 0; i < conf->nlisteners; i++) {
		if (conf->listeners[i].fd == -1)
			continue;
		sandbox_rule(ctx, kill, SCMP_SYS(setsockopt), 1,
		    (struct scmp_arg_cmp[]){ ARG(0, SCMP_CMP_EQ,
		    conf->listeners[i].fd, 0) });
	}
	sandbox_export(ctx, prog);
}

/*
 * A child of the verifier parses one hostile message: on top of the
 * verifier's allow-list, it may make no process and no socket, hand on
 * no descriptor, signal nobody and change no limit.
 */
static void
sandbox_seccomp_verifier_child(struct sock_fprog *prog)
{
	static const int	 calls[] = { SCMP_SYS(kill), SCMP_SYS(tgkill),
	    SCMP_SYS(tkill), SCMP_SYS(clone), SCMP_SYS(clone3),
	    SCMP_SYS(fork), SCMP_SYS(vfork), SCMP_SYS(socketpair),
	    SCMP_SYS(sendmsg), SCMP_SYS(prlimit64), SCMP_SYS(seccomp) };
	scmp_filter_ctx		 ctx;
	uint32_t		 kill;
	size_t			 i;

	ctx = sandbox_seccomp_but(&kill);
	for (i = 0; i < sizeof(calls) / sizeof(calls[0]); i++)
		sandbox_rule(ctx, kill, calls[i], 0, NULL);
	sandbox_export(ctx, prog);
}

/* In a child of the verifier, before it reads its message. */
void
sandbox_verifier_child(void)
{
	if (verifier_child.filter == NULL || syscall(SYS_seccomp,
	    SECCOMP_SET_MODE_FILTER, 0, &verifier_child) == -1)
		_exit(1);
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
	plan_worker.ruleset = sandbox_landlock(conf, ROLE_WORKER,
	    conf->spool_fd);
	sandbox_seccomp(conf, ROLE_WORKER, &plan_worker.prog);
	sandbox_seccomp_listeners(conf, &plan_worker.listeners);
	if (geteuid() == 0) {
		plan_worker.root = sandbox_gconv_dir();
		if (strcmp(plan_worker.root, SANDBOX_EMPTY_DIR) == 0)
			(void)mkdir(SANDBOX_EMPTY_DIR, 0755);
		/*
		 * iconv finds its modules inside the chroot; set once here,
		 * not in every worker (the master never uses iconv, and
		 * the relay it starts does not either)
		 */
		else if (setenv("GCONV_PATH", "/", 1) == -1)
			fatal("sandbox: setenv");
	}
	if (plan_worker.root == NULL && plan_worker.ruleset == -1)
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

/*
 * A role's plan.  A worker's was made by the master, before it forked
 * (sandbox_prepare_priv); any other role's is made here, at its start.
 * Its chroot is an empty directory (the fetcher writes its cache
 * through a descriptor).
 */
const struct sandbox_plan *
sandbox_os_plan(const struct smtpd_conf *conf, enum sandbox_role role)
{
	struct sandbox_plan	*p = &plan_helper;

	if (role == ROLE_WORKER)
		return &plan_worker;
	p->role = role;
	p->ruleset = sandbox_landlock(conf, role, role == ROLE_FETCHER ?
	    conf->banlist_dirfd : role == ROLE_RELAY ? conf->spool_fd : -1);
	sandbox_seccomp(conf, role, &p->prog);
	if (role == ROLE_VERIFIER)
		sandbox_seccomp_verifier_child(&verifier_child);
	p->root = NULL;
	if (geteuid() == 0 && role == ROLE_VERIFIER) {
		/* iconv's modules, as a worker's (GCONV_PATH is "/") */
		p->root = sandbox_gconv_dir();
		if (strcmp(p->root, SANDBOX_EMPTY_DIR) == 0)
			(void)mkdir(SANDBOX_EMPTY_DIR, 0755);
	} else if (geteuid() == 0) {
		(void)mkdir(SANDBOX_EMPTY_DIR, 0755);
		p->root = SANDBOX_EMPTY_DIR;
	}
	if (p->root == NULL && p->ruleset == -1)
		fatalx("sandbox: the %s would have no file-system "
		    "confinement (no Landlock, not root for a chroot)",
		    sandbox_role_names[role]);
	return p;
}

/* One start-up line per role: what confines it. */
void
sandbox_os_report(const struct smtpd_conf *conf,
    const struct sandbox_plan *p)
{
	enum sandbox_role	 role = p->role;

	log_event(LOG_INFO, "sandbox", NULL,
	    "{s:s, s:s, s:b, s:b, s:i, s:s?, s:s, s:b, s:s, s:s?}",
	    "role", sandbox_role_names[role],
	    "seccomp", "allow-list, kill on anything else",
	    "landlock_fs", p->ruleset != -1,
	    "landlock_net", p->ruleset != -1 && landlock_abi >= 4 &&
	    role != ROLE_WORKER,
	    "landlock_abi", p->ruleset != -1 ? landlock_abi : 0,
	    "chroot", p->root,
	    "user", geteuid() == 0 ? conf->user : "(not root: unchanged)",
	    "no_new_privs", 1,
	    "network", role == ROLE_WORKER ?
	    "its client and its channels only: no socket, no connect" :
	    role == ROLE_HEALTH ?
	    "its HTTP clients only: no socket, no connect" :
	    role == ROLE_VERIFIER ?
	    "its channels only: no socket, no connect" :
	    role == ROLE_RELAY ? (conf->api != NULL ?
	    "TCP to the FIRM API's port; DNS to the resolvers" :
	    "DNS to the resolvers") :
	    conf->api != NULL ? "TCP to the FIRM API's port" : "none",
	    "guard", role == ROLE_RELAY || role == ROLE_FETCHER ?
	    SANDBOX_RELAY_GUARD : NULL);
}

/* No new privileges, no core file and no ptrace by the same user. */
void
sandbox_os_begin(const struct sandbox_plan *p)
{
#ifdef SANDBOX_TRAP
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = sandbox_sigsys;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGSYS, &sa, NULL);
#endif
	if (p->prog.filter == NULL)
		fatalx("sandbox: no seccomp program for the %s",
		    sandbox_role_names[p->role]);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
		fatal("sandbox: PR_SET_NO_NEW_PRIVS");
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == -1)
		fatal("sandbox: PR_SET_DUMPABLE");
}

/* The file system: the chroot, then Landlock. */
void
sandbox_os_files(const struct sandbox_plan *p)
{
	if (p->root != NULL) {
		if (chroot(p->root) == -1 || chdir("/") == -1)
			fatal("sandbox: chroot %s", p->root);
	}
	if (p->ruleset != -1 &&
	    syscall(SYS_landlock_restrict_self, p->ruleset, 0) == -1)
		fatal("sandbox: landlock_restrict_self");
	if (plan_worker.ruleset != -1)
		close(plan_worker.ruleset);
	if (p->ruleset != -1 && p->ruleset != plan_worker.ruleset)
		close(p->ruleset);
}

/* The system calls, last: a worker's listeners, then the allow-list. */
void
sandbox_os_syscalls(const struct sandbox_plan *p)
{
	if (p->listeners.filter != NULL && syscall(SYS_seccomp,
	    SECCOMP_SET_MODE_FILTER, 0, &p->listeners) == -1)
		fatal("sandbox: seccomp (listeners)");
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &p->prog) == -1)
		fatal("sandbox: seccomp");
}
