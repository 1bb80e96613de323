/*
 * The records that cross a process boundary, on one page (after
 * OpenSSH's monitor.h).  Every one of them is sent by a process that
 * may be hostile: a worker parses a stranger's bytes and is assumed
 * taken over, so whatever it sends is checked by its receiver before
 * anything is believed.  Each record says who sends it, who receives
 * it, and the gate that checks it; both ends are built from this
 * header, and the sizes below are pinned so that no padding or field
 * moves unseen.  Included by smtpd.h, at its end.
 */

#ifndef SMTPD_PRIVSEP_H
#define SMTPD_PRIVSEP_H

#define PRIVSEP_SIZE(rec, n)						\
	_Static_assert(sizeof(struct rec) == (n), #rec " has moved")

/*
 * Descriptors a program of ours finds at exec (master_exec_priv() in
 * smtpd.c hands descriptor 3, 4 and METRICS_FD over, and closes every
 * other one above 2).
 */
#define EXEC_FD_FIRST		3	/* the first handed over */
#define RELAY_CTL_FD		3	/* relay: the master's control */
#define RELAY_FETCHER_ALIVE_FD	3	/* fetcher: closes when the master
					   is gone */
#define RELAY_FETCHER_TABLE_FD	4	/* fetcher: the ban table, writable */
#define HEALTH_LISTEN_FD	3	/* health: the listening socket */
#define HEALTH_TABLE_FD		4	/* health: the ban table, read-only */
#define METRICS_FD		5	/* every exec'd child: the metrics */
#define RELAY_SPOOL_FD		6	/* relay: the --spool directory */
#define VERIFIER_CTL_FD		3	/* verifier: the master's control */

/*
 * Worker -> master: the control socket (smtpd.c, pool_ctl()).
 */
/*
 * The master and a worker talk over a socketpair the master made at
 * fork (SOCK_SEQPACKET: one message a record).  The master knows the
 * worker by that descriptor, never by anything the worker says, and
 * checks every record's type and exact size (pool_ctl()) and the
 * worker's state (a claim only when idle, a signature only when busy);
 * anything else kills the worker.  The master's answer is trusted.
 */
enum ctl_type {
	CTL_CLAIM = 1,		/* a session starts: its client */
	CTL_RELEASE,		/* that session is over; idle again */
	CTL_TLS_SIGN,		/* a private-key operation of a handshake */
	CTL_MAIL,		/* a message starts (MAIL): may it? */
};

/*
 * A claim travels with the accepted connection itself (SCM_RIGHTS, the
 * one record that carries a descriptor).  The master takes the peer's
 * address with getpeername() on it, reads no byte, and closes its copy
 * (pool_attest()): the address claimed must be that peer's, unless the
 * peer is inside --proxy-from, where it is the one the worker read from
 * the PROXY header.  The master derives the accounting key itself.
 */
struct ctl_claim {
	uint32_t		 type;		/* CTL_CLAIM */
	uint16_t		 family;	/* AF_INET, AF_INET6; AF_UNSPEC
						   for -i off a socket */
	uint16_t		 port;		/* network order */
	uint8_t			 addr[16];	/* IPv4 in the first 4 */
};

struct ctl_answer {
	uint32_t		 type;		/* CTL_CLAIM */
	int32_t			 reply;		/* -1 to serve, else enum reply */
	uint32_t		 stress;	/* 1: serve with STRESS_TIMEOUT
						   and STRESS_SESSION_TIMEOUT */
	uint32_t		 spool_full;	/* CTL_CLAIM, with --spool: 1
						   when the spool is under
						   --spool-reserve now */
};

/*
 * CTL_RELEASE and CTL_MAIL are the type alone.  CTL_MAIL, only from a
 * worker serving a session the master counts, is answered with a
 * ctl_answer of its type: -1, or REPLY_MSGRATE when the session's
 * client (the address the master attested at the claim, never one the
 * worker names) is over --max-msg-rate.
 */

PRIVSEP_SIZE(ctl_claim, 4 + 2 + 2 + 16);
PRIVSEP_SIZE(ctl_answer, 4 + 4 + 4 + 4);

/*
 * Worker -> master: a private-key operation of the worker's own TLS
 * handshake (tls.c).  Gate: pool_ctl() (size, not idle), then
 * master_tls_sign() (a served session, at most TLS_SIGN_PER_SESSION of
 * them), then server_tls_sign_priv() (op known, len <= TLS_SIGN_MAX).
 */
#define TLS_SIGN_MAX	1024	/* largest input or output */
#define TLS_SIGN_PER_SESSION	2	/* a handshake signs once */
enum server_tls_op {
	TLS_OP_RSA_PRIV_ENC = 1,	/* RSA_private_encrypt() with padding */
	TLS_OP_ECDSA_SIGN = 2,		/* ECDSA of a digest, DER out */
};
struct tls_sign_req {			/* a worker asks the holder */
	uint32_t		 op;		/* enum server_tls_op */
	uint32_t		 padding;	/* RSA_PKCS1_PADDING or
						   RSA_NO_PADDING; 0 for EC */
	uint32_t		 len;		/* of in */
	uint8_t			 in[TLS_SIGN_MAX];
};
#define TLS_SIGN_REFUSED	(-2)	/* not this worker's handshake */
struct tls_sign_res {			/* the holder answers */
	int32_t			 status;	/* 0 ok, -1 failed, or
						   TLS_SIGN_REFUSED */
	uint32_t		 len;		/* of out */
	uint8_t			 out[TLS_SIGN_MAX];
};
struct ctl_sign {
	uint32_t		 type;		/* CTL_TLS_SIGN */
	struct tls_sign_req	 req;
};
PRIVSEP_SIZE(tls_sign_req, 12 + TLS_SIGN_MAX);
PRIVSEP_SIZE(tls_sign_res, 8 + TLS_SIGN_MAX);
PRIVSEP_SIZE(ctl_sign, 4 + sizeof(struct tls_sign_req));

/*
 * Master -> relay and master -> verifier: the control sockets
 * (SOCK_SEQPACKET, one record a message, a descriptor with some).  The
 * master is trusted; each record is still checked for its size.
 *
 *	CTL_CHANNEL	a worker's channel (descriptor) and the worker's
 *			id, which the master alone gives; to the relay
 *	CTL_ATTEST	the client address the master took from a worker's
 *			connection itself (getpeername), for that worker's
 *			session now; to the verifier, with the worker's
 *			channel (descriptor) on its first session
 *	CTL_LINK	the two ends of a link from the verifier to a
 *			relay (descriptor), on which the verifier hands
 *			that relay its workers' results; one to each, for
 *			every relay or verifier that starts
 */
enum ctl_helper_type {
	CTL_CHANNEL = 16,
	CTL_ATTEST,
	CTL_LINK,
};
struct ctl_channel {
	uint32_t		 type;		/* CTL_CHANNEL */
	uint32_t		 relay;		/* the relay it is attached to */
	uint64_t		 wid;		/* the worker's id */
};
struct ctl_attest {
	uint32_t		 type;		/* CTL_ATTEST */
	uint32_t		 open;		/* 1: a session begins, 0: it
						   is over */
	uint64_t		 wid;
	uint32_t		 relay;		/* the relay the worker is
						   attached to */
	uint32_t		 pad;
	struct sockaddr_storage	 peer;		/* the client */
};
struct ctl_link {
	uint32_t		 type;		/* CTL_LINK */
	uint32_t		 relay;		/* which relay is behind it */
};
PRIVSEP_SIZE(ctl_channel, 16);
PRIVSEP_SIZE(ctl_attest, 24 + sizeof(struct sockaddr_storage));
PRIVSEP_SIZE(ctl_link, 8);

/*
 * Verifier -> relay: the link (SOCK_SEQPACKET).  For each message the
 * verifier checks, one record and one descriptor: its end of a channel
 * of its own, for that one message, on which it asks its DNS questions
 * and hands over its result (CHAN_AUTH).  The relay pairs the result
 * with the n-th payload of worker wid, and with nothing else.
 */
struct link_msg {
	uint64_t		 wid;
	uint32_t		 seq;		/* 1, 2...: the worker's n-th */
	uint32_t		 bound;		/* 1: seq, seq + 1... follow */
};
PRIVSEP_SIZE(link_msg, 16);

/*
 * The worker-relay channel (channel.c): a stream socket carrying
 * length-checked, versioned messages, after OpenBSD's imsg.  The relay
 * treats everything a worker sends as hostile.  Gate: chan_decode()
 * (version, a type the receiver takes, the id, a body within its
 * bound), with its own fuzz target (tests/fuzz/fuzz_chan.c); the
 * relay then checks each field of chan_inbound, and dns.c each answer.
 */
#define CHAN_VERSION		1
#define IDEM_KEY_LEN		32	/* hex characters */
enum chan_type {
	CHAN_INBOUND = 1,	/* worker: POST this payload to FIRM */
	CHAN_VERDICT,		/* relay: what FIRM said */
	CHAN_DNS_QUERY,		/* worker: a DNS question (dns.c) */
	CHAN_DNS_ANSWER,	/* relay: its answer */
	CHAN_VERIFY,		/* worker -> verifier: a message to check */
	CHAN_AUTH,		/* verifier -> relay: what it found */
	CHAN_SPOOL_ROOM,	/* worker -> relay, at MAIL: room to spool? */
	CHAN_TYPE_MAX
};

struct chan_hdr {
	uint16_t		 version;	/* CHAN_VERSION */
	uint16_t		 type;		/* enum chan_type */
	uint32_t		 id;		/* request id, echoed */
	uint32_t		 len;		/* octets of body that follow */
};

struct chan_inbound {		/* followed by the worker's fields */
	char			 session[SESSION_ID_LEN + 1];
	char			 msgid[MSG_ID_LEN + 1];
	char			 pad[2];
};

enum verdict_kind {
	VERDICT_ACCEPTED = 1,	/* FIRM answered 2xx, or it is spooled */
	VERDICT_HTTP,		/* any other HTTP status */
	VERDICT_TIMEOUT,	/* --api-timeout ran out */
	VERDICT_UNREACHABLE,	/* no answer: connection failed */
	VERDICT_LOCAL,		/* the relay could not make the request */
	VERDICT_REFUSED,	/* the verifier refused it: reply says how */
	VERDICT_NOSPACE,	/* the spool is under its reserve */
};

/*
 * The relay's answer.  Besides FIRM's word, what the verifier found, for
 * the worker's log line alone: nothing here goes to FIRM again.
 */
struct chan_verdict {
	int32_t			 kind;		/* enum verdict_kind */
	int32_t			 status;	/* HTTP status, or 0 */
	char			 text[200 + 1];	/* FIRM's error, printable;
						   the field a REFUSED names */
	char			 pad[3];
	int32_t			 reply;		/* REFUSED: enum reply */
	int32_t			 authed;	/* 1: the fields below hold */
	char			 token[32];	/* the verifier's token */
	char			 spf[16];	/* result names */
	char			 dkim[16];
	char			 dmarc[16];
	char			 verdict[16];
	char			 pad2[4];
	uint64_t		 size;		/* of the message as forwarded */
};

/*
 * Worker -> verifier: a message, followed by the envelope's strings,
 * each NUL-terminated (MAIL FROM, HELO, then nrcpts recipients), and the
 * message as the worker holds it: our Received field (hdrlen octets),
 * then the data.  Nothing in it is believed but as the message's own
 * content: the client's address is the master's, the token and the
 * results the verifier's.
 */
#define CHAN_TLS_MAX		16	/* the protocol's name */

struct chan_verify {
	char			 session[SESSION_ID_LEN + 1];
	char			 msgid[MSG_ID_LEN + 1];
	char			 pad[2];
	uint32_t		 nrcpts;
	uint32_t		 hdrlen;
	uint32_t		 smtputf8;
	uint32_t		 pad2;
	char			 tls[CHAN_TLS_MAX];	/* "TLSv1.3", or "" */
};

/*
 * Verifier -> relay, on the message's own channel: the result, then the
 * payload's fields the verifier answers for, as the members of a JSON
 * object without its braces.  reply is -1 to forward the message.
 */
struct chan_auth {
	int32_t			 reply;		/* -1, or enum reply */
	int32_t			 verdict;	/* enum auth_verdict */
	uint32_t		 dns_queries;
	uint32_t		 pad;
	uint64_t		 size;
	char			 text[64];	/* a refusal's argument */
	char			 idem[IDEM_KEY_LEN + 1];
	char			 token[32];
	char			 spf[16];
	char			 dkim[16];
	char			 dmarc[16];
	char			 pad2[7];
};
PRIVSEP_SIZE(chan_hdr, 12);
PRIVSEP_SIZE(chan_inbound, SESSION_ID_LEN + 1 + MSG_ID_LEN + 1 + 2);
PRIVSEP_SIZE(chan_verdict, 4 + 4 + 201 + 3 + 4 + 4 + 32 + 16 * 4 + 4 + 8);
PRIVSEP_SIZE(chan_verify, SESSION_ID_LEN + 1 + MSG_ID_LEN + 1 + 2 + 16 +
    CHAN_TLS_MAX);
PRIVSEP_SIZE(chan_auth, 24 + 64 + IDEM_KEY_LEN + 1 + 32 + 16 * 3 + 7);

/*
 * Every process -> health: the metrics region (metrics.c), shared
 * memory made by the master: a header page, then one slot a page
 * (metrics_offset()), each mapped writable by its owner alone (a
 * worker, the relay and the fetcher map nothing else of the region).
 * Gate: health_metrics() in health.c checks the magic and takes the
 * number of slots from the region's size, never from the header; every
 * value read is untrusted (sums wrap, nothing indexes, divides or
 * allocates by one); every label is an index into a fixed table, never
 * a client byte.
 */
#define METRICS_MAGIC		0x736d7470u	/* "smtp" */
#define METRICS_SLOT_MASTER	0
#define METRICS_SLOT_RELAY	1
#define METRICS_SLOT_FETCHER	2
#define METRICS_SLOT_WORKERS	3	/* first worker slot */
struct metrics_slot {
	uint64_t		 v[M_COUNT];
};
struct metrics_map {			/* the header page */
	uint32_t		 magic;
	uint32_t		 nslots;
};

#endif /* SMTPD_PRIVSEP_H */
