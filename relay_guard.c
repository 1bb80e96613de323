/*
 * The relay's destination guard: where smtpd-relay's libraries may
 * connect and send.
 *
 * This file defines connect(2), sendto(2) and sendmsg(2) for the whole
 * smtpd-relay program, the relay and the fetcher alike: a program's own
 * definition of a function precedes libc's, so every call libcurl and
 * libunbound make comes here first.  It goes on to the kernel only to
 * the FIRM API (one of its addresses, on its port, as firm.c checks
 * them), to a resolver (its address and port; with no resolver at all,
 * any address on port 53) or to a local socket; anything else fails
 * with EACCES.
 *
 * It restrains the libraries, NOT an attacker.  It keeps libcurl and
 * libunbound, whatever a redirect, an answer or a bug of theirs would
 * make them do, to the API and the resolvers.  Code that has taken the
 * relay over makes the system calls itself and never comes here; what
 * holds it is the kernel's: the seccomp filter and Landlock
 * (sandbox_linux.c; TCP to the API's and the resolvers' ports only,
 * where the kernel has Landlock ABI 4), or pledge on OpenBSD.  Neither
 * kernel limits where UDP datagrams go.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include <netinet/in.h>

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "smtpd.h"
#include "relay.h"

static const struct smtpd_conf	*guard_conf;	/* NULL: local only */
static int			 guard_dns_any;	/* no resolver: port 53 */

static int	relay_guard_ok(const struct sockaddr *, socklen_t);

/*
 * Where the program may go: the API and the resolvers of conf, read
 * at each call (the relay adds the name servers of /etc/resolv.conf to
 * it later).  Until this is called, only local sockets.
 */
void
relay_guard_init(const struct smtpd_conf *conf)
{
	guard_conf = conf;
}

/* No resolver: libunbound asks the root servers, on port 53. */
void
relay_guard_dns_any(void)
{
	guard_dns_any = 1;
}

/*
 * The API (its addresses and port, checked by firm.c), the resolvers
 * (their addresses and ports), or, with no resolver at all, any address
 * on port 53; and local sockets.
 */
static int
relay_guard_ok(const struct sockaddr *sa, socklen_t len)
{
	const struct sockaddr_in	*sin = (const struct sockaddr_in *)sa;
	const struct sockaddr_in6	*sin6 = (const struct sockaddr_in6 *)sa;
	const struct smtpd_conf		*conf = guard_conf;
	const void			*a;
	size_t				 i, alen;
	int				 port;

	if (sa == NULL || len < sizeof(sa_family_t))
		return 0;
	if (sa->sa_family == AF_UNIX || sa->sa_family == AF_UNSPEC)
		return 1;
	if (sa->sa_family == AF_INET && len >= sizeof(*sin)) {
		port = ntohs(sin->sin_port);
		a = &sin->sin_addr;
		alen = 4;
	} else if (sa->sa_family == AF_INET6 && len >= sizeof(*sin6)) {
		port = ntohs(sin6->sin6_port);
		a = &sin6->sin6_addr;
		alen = 16;
	} else
		return 0;
	if (conf == NULL)
		return 0;
	if (conf->api != NULL && firm_opensocket_ok(conf, sa))
		return 1;
	if (guard_dns_any)
		return port == 53;
	for (i = 0; i < conf->nresolvers; i++)
		if (conf->resolvers[i].af == sa->sa_family &&
		    conf->resolvers[i].port == port &&
		    memcmp(conf->resolvers[i].addr, a, alen) == 0)
			return 1;
	return 0;
}

/*
 * libc's three, each checked, then made as the system call itself
 * (libc's own would be this definition again).
 */
int
connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	if (!relay_guard_ok(sa, len)) {
		errno = EACCES;
		return -1;
	}
	return (int)syscall(SYS_connect, fd, sa, len);
}

ssize_t
sendto(int fd, const void *buf, size_t n, int flags,
    const struct sockaddr *sa, socklen_t len)
{
	if (sa != NULL && !relay_guard_ok(sa, len)) {
		errno = EACCES;
		return -1;
	}
	return syscall(SYS_sendto, fd, buf, n, flags, sa, len);
}

ssize_t
sendmsg(int fd, const struct msghdr *m, int flags)
{
	if (m->msg_name != NULL && !relay_guard_ok(m->msg_name,
	    m->msg_namelen)) {
		errno = EACCES;
		return -1;
	}
	return syscall(SYS_sendmsg, fd, m, flags);
}
