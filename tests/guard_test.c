/*
 * relay_guard.c, smtpd-relay's destination guard.  Linked into this
 * program as into smtpd-relay, it stands in for libc's connect(),
 * sendto() and sendmsg() here too, so each check below calls them as
 * libcurl and libunbound do.  Everything goes to loopback: a UDP socket
 * plays the resolver, a TCP listener the FIRM API.  Prints "N passed,
 * N failed".
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../smtpd.h"
#include "../relay.h"
#include "check.h"

static struct smtpd_conf	 conf;

static struct sockaddr_in
sin_of(const char *addr, int port)
{
	struct sockaddr_in	 sin;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	if (inet_pton(AF_INET, addr, &sin.sin_addr) != 1)
		abort();
	return sin;
}

/* A socket of type on 127.0.0.1, any port; its port in *port. */
static int
bound(int type, int *port)
{
	struct sockaddr_in	 sin = sin_of("127.0.0.1", 0);
	socklen_t		 len = sizeof(sin);
	int			 fd;

	if ((fd = socket(AF_INET, type, 0)) == -1 ||
	    bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) == -1 ||
	    (type == SOCK_STREAM && listen(fd, 4) == -1)) {
		perror("guard_test: socket");
		exit(2);
	}
	*port = ntohs(sin.sin_port);
	return fd;
}

/* 0 if the datagram went, else errno. */
static int
udp_to(int fd, const char *addr, int port)
{
	struct sockaddr_in	 sin = sin_of(addr, port);

	return sendto(fd, "q", 1, 0, (struct sockaddr *)&sin,
	    sizeof(sin)) == 1 ? 0 : errno;
}

static int
udp_msg_to(int fd, const char *addr, int port)
{
	struct sockaddr_in	 sin = sin_of(addr, port);
	struct iovec		 iov = { (void *)(uintptr_t)"q", 1 };
	struct msghdr		 m;

	memset(&m, 0, sizeof(m));
	m.msg_name = &sin;
	m.msg_namelen = sizeof(sin);
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	return sendmsg(fd, &m, 0) == 1 ? 0 : errno;
}

/* 0 if a TCP connection was made, else errno. */
static int
tcp_to(const char *addr, int port)
{
	struct sockaddr_in	 sin = sin_of(addr, port);
	int			 fd, r;

	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) == -1)
		return errno;
	r = connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 ? 0 : errno;
	close(fd);
	return r;
}

int
main(void)
{
	struct sockaddr_in	 sin;
	int			 udp, api, sp[2], res_port, api_port, other;
	uint8_t			 lo[4] = { 127, 0, 0, 1 };

	udp = bound(SOCK_DGRAM, &res_port);
	api = bound(SOCK_STREAM, &api_port);
	other = res_port == 65535 ? res_port - 1 : res_port + 1;

	/* before relay_guard_init(): local sockets only */
	CHECK(udp_to(udp, "127.0.0.1", res_port) == EACCES,
	    "sendto before init: %s", strerror(udp_to(udp, "127.0.0.1",
	    res_port)));
	CHECK(tcp_to("127.0.0.1", api_port) == EACCES,
	    "connect before init");
	if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sp) == -1)
		return 2;
	CHECK(sendto(sp[0], "x", 1, 0, NULL, 0) == 1,
	    "sendto without an address: %s", strerror(errno));

	/* a resolver: its address and port, nothing else */
	relay_guard_init(&conf);
	conf.resolvers[0].af = AF_INET;
	memcpy(conf.resolvers[0].addr, lo, sizeof(lo));
	conf.resolvers[0].port = res_port;
	conf.nresolvers = 1;
	CHECK(udp_to(udp, "127.0.0.1", res_port) == 0,
	    "sendto the resolver: %s", strerror(udp_to(udp, "127.0.0.1",
	    res_port)));
	CHECK(udp_to(udp, "127.0.0.2", res_port) == EACCES,
	    "sendto another address on the resolver's port");
	CHECK(udp_to(udp, "127.0.0.1", other) == EACCES,
	    "sendto the resolver's address on another port");
	CHECK(udp_msg_to(udp, "127.0.0.1", res_port) == 0,
	    "sendmsg to the resolver");
	CHECK(udp_msg_to(udp, "127.0.0.2", res_port) == EACCES,
	    "sendmsg to another address");
	sin = sin_of("127.0.0.1", res_port);
	CHECK(sendto(udp, "q", 1, 0, (struct sockaddr *)&sin,
	    sizeof(sin) - 1) == -1 && errno == EACCES,
	    "sendto with a short address");
	CHECK(tcp_to("127.0.0.1", api_port) == EACCES,
	    "connect to a port that is no API's");

	/* the API: one of its addresses, on its port */
	conf.api = "http://127.0.0.1/";
	conf.api_port = api_port;
	conf.api_addrs[0].af = AF_INET;
	memcpy(conf.api_addrs[0].a, lo, sizeof(lo));
	conf.napi_addrs = 1;
	CHECK(tcp_to("127.0.0.1", api_port) == 0, "connect to the API: %s",
	    strerror(tcp_to("127.0.0.1", api_port)));
	CHECK(tcp_to("127.0.0.2", api_port) == EACCES,
	    "connect to another address on the API's port");

	/* no resolver: any address, on port 53 only */
	relay_guard_dns_any();
	CHECK(udp_to(udp, "127.0.0.2", 53) != EACCES,
	    "sendto port 53 with no resolver");
	CHECK(udp_to(udp, "127.0.0.2", 54) == EACCES,
	    "sendto port 54 with no resolver");

	close(udp);
	close(api);
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
