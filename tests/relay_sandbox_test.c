/*
 * The seccomp filters of smtpd-relay's two roles, the relay and the
 * ban-list fetcher, as sandbox.c installs them: each check forks a
 * child that sandboxes itself with sandbox_relay() or
 * sandbox_fetcher() and makes one socket() call.  What the role needs
 * (TCP; UDP for the relay's DNS) must work; any other family, type or
 * protocol must kill the child (SIGSYS), whatever the kernel would
 * have said: MPTCP, SCTP and ICMP sockets are of the inet families and
 * of the types a role may have.  relay_guard.c, which checks
 * destinations inside the process, is no part of this.  Prints "N
 * passed, N failed".
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <netinet/in.h>

#include <errno.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../smtpd.h"
#include "check.h"

#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP		262
#endif

enum outcome { MADE, REFUSED, KILLED };

static const char *const outcomes[] = { "made", "refused", "killed" };
static struct smtpd_conf	 conf;

/* In a child sandboxed as role: what socket(af, type, proto) did. */
static enum outcome
try_socket(const char *role, int af, int type, int proto)
{
	pid_t	 pid;
	int	 status;

	fflush(stdout);
	if ((pid = fork()) == -1) {
		perror("relay_sandbox_test: fork");
		exit(2);
	}
	if (pid == 0) {
		if (strcmp(role, "relay") == 0)
			sandbox_relay(&conf);
		else
			sandbox_fetcher(&conf);
		_exit(socket(af, type, proto) == -1 ? 3 : 0);
	}
	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR) {
			perror("relay_sandbox_test: waitpid");
			exit(2);
		}
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS)
		return KILLED;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return MADE;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 3)
		return REFUSED;
	fprintf(stderr, "relay_sandbox_test: %s child: status %#x (its "
	    "sandbox failed?)\n", role, status);
	exit(2);
}

#define EXPECT(role, want, af, type, proto) do {			\
	enum outcome got_ = try_socket(role, af, type, proto);		\
	CHECK(got_ == (want) || ((want) == MADE && got_ == REFUSED &&	\
	    (af) == AF_INET6), "%s: socket(%s, %s, %s): %s, want %s",	\
	    role, #af, #type, #proto, outcomes[got_], outcomes[want]);	\
} while (0)

int
main(void)
{
	static const char *const roles[] = { "relay", "fetcher" };
	struct passwd	*pw;
	size_t		 i;
	const char	*r;

	/* as smtpd-relay runs: the user nobody, the chroot when root */
	conf.user = "nobody";
	if ((pw = getpwnam(conf.user)) == NULL) {
		fprintf(stderr, "relay_sandbox_test: no user nobody\n");
		return 2;
	}
	conf.uid = pw->pw_uid;
	conf.gid = pw->pw_gid;
	conf.api = "http://127.0.0.1/";
	conf.api_port = 80;
	conf.spool_fd = conf.banlist_dirfd = -1;
	log_init(STDERR_FILENO, 0);	/* a failed sandbox says why */

	for (i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
		r = roles[i];
		/* what each role needs (IPv6 may be off here: refused) */
		EXPECT(r, MADE, AF_INET, SOCK_STREAM, 0);
		EXPECT(r, MADE, AF_INET, SOCK_STREAM | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, IPPROTO_TCP);
		EXPECT(r, MADE, AF_INET6, SOCK_STREAM, IPPROTO_TCP);
		/* what none needs */
		EXPECT(r, KILLED, AF_INET, SOCK_STREAM, IPPROTO_MPTCP);
		EXPECT(r, KILLED, AF_INET6, SOCK_STREAM | SOCK_CLOEXEC,
		    IPPROTO_MPTCP);
		EXPECT(r, KILLED, AF_INET, SOCK_STREAM, IPPROTO_SCTP);
		EXPECT(r, KILLED, AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
		EXPECT(r, KILLED, AF_INET, SOCK_RAW, IPPROTO_TCP);
		EXPECT(r, KILLED, AF_INET, SOCK_RAW, IPPROTO_RAW);
		EXPECT(r, KILLED, AF_NETLINK, SOCK_RAW, 0);
		EXPECT(r, KILLED, AF_NETLINK, SOCK_DGRAM, 0);
		/* syslog(3) making its socket again: refused, no kill */
		EXPECT(r, REFUSED, AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		EXPECT(r, REFUSED, AF_UNIX, SOCK_STREAM, 0);
		EXPECT(r, KILLED, AF_PACKET, SOCK_DGRAM, 0);
	}
	/* DNS: the relay's alone */
	EXPECT("relay", MADE, AF_INET, SOCK_DGRAM, 0);
	EXPECT("relay", MADE, AF_INET, SOCK_DGRAM | SOCK_NONBLOCK,
	    IPPROTO_UDP);
	EXPECT("relay", MADE, AF_INET6, SOCK_DGRAM, IPPROTO_UDP);
	EXPECT("relay", KILLED, AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE);
	EXPECT("fetcher", KILLED, AF_INET, SOCK_DGRAM, 0);
	EXPECT("fetcher", KILLED, AF_INET, SOCK_DGRAM, IPPROTO_UDP);

	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
