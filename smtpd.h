/*
 * smtpd: receive-only SMTP server for FIRM.
 * Shared types, limits and prototypes.
 */

#ifndef SMTPD_H
#define SMTPD_H

#include <sys/types.h>
#include <sys/socket.h>

#include <netinet/in.h>

#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#ifndef __dead
#define __dead		__attribute__((__noreturn__))
#endif

#define SMTPD_VERSION		"0.1"
#define SMTPD_USER		"_smtpd"
#define SMTPD_USER_FALLBACK	"nobody"
#define SMTPD_BANLIST_CACHE	"/var/db/smtpd/banlist.json"

/* Defaults of SPEC section 2. */
#define DEF_MAX_SIZE		1048576
#define DEF_MAX_RCPT		1
#define DEF_MAX_SESSIONS	100
#define DEF_MAX_PER_IP		5
#define DEF_SPARE		10
#define DEF_TIMEOUT		60
#define DEF_MAX_ERRORS		3
#define SMTP_JUNK_MAX		100	/* NOOP, RSET, VRFY... a session; as
					   Postfix's smtpd_junk_command_limit */
#define DEF_POLL		60
#define DEF_API_TIMEOUT		10
#define DEF_GRACE		30
#define DEF_DRAIN		0
#define DEF_MAX_USE		1
#define DEF_SESSION_TIMEOUT	600
/*
 * Stress: fewer than a tenth of -c free.  A session that starts then
 * gets these limits instead of -t and --session-timeout (when those
 * are longer), as Postfix's stress mode.
 */
#define STRESS_TIMEOUT		10
#define STRESS_SESSION_TIMEOUT	60

/* Upper bounds accepted for flag values. */
#define MAX_MAX_SIZE		(256 * 1024 * 1024)
#define MAX_MAX_RCPT		1000
#define MAX_RATE		100000	/* --max-conn-rate, --max-msg-rate */
#define MAX_MAX_SESSIONS	10000
#define MAX_SPARE		1000
#define MAX_TIMEOUT		3600
#define MAX_MAX_ERRORS		100
#define MAX_POLL		86400
#define MAX_GRACE		3600
#define MAX_DRAIN		3600
#define MAX_GREET_DELAY		60000
#define MAX_MAX_USE		100000
#define MAX_SESSION_TIMEOUT	86400
#define SPOOL_RESERVE_PER_BYTE	8	/* x --max-size: --spool-reserve */

#define MAX_LISTENERS		16
#define MAX_RECIPIENT_RULES	64
#define MAX_PROXY_FROM		64
#define MAX_RESOLVERS		8
#define MAX_DNSBL		16	/* --dnsbl and --dnswl in all: the
					   relay's questions in flight on
					   one channel (RELAY_DNS_PER_CHAN) */
#define MAX_DNSBL_WEIGHT	1000	/* of a site, and the threshold */
#define API_ADDRS_MAX		32	/* addresses of the API host */

#define LISTEN_BACKLOG		1024	/* well above any sane concurrency */
#define SLOT_SLACK		16	/* worker slots beyond sessions+spare */
#define WORKER_DRAIN_MAX	1024	/* queued connections told 421 at stop */

/* SMTP limits (RFC 5321 4.5.3.1). */
#define SMTP_LINE_MAX		512	/* command line, CRLF included */
#define SMTP_TEXT_LINE_MAX	1000	/* text line, CRLF included */
#define SMTP_LOCAL_MAX		64
#define SMTP_DOMAIN_MAX		255
#define SMTP_PATH_MAX		256
#define SMTP_HELO_MAX		255
#define SMTP_IBUF_SIZE		16384
#define SMTP_OBUF_SIZE		4096
#define SMTP_REPLY_MAX		512
#define RECEIVED_MAX		1024	/* room for our Received: header */
/*
 * DATA must average this many octets a second once DATA_RATE_GRACE
 * seconds (or half of --session-timeout, if less) have passed, as
 * Postfix's smtpd_min_data_rate: a slow sender of a 1 MB message at
 * 10 kB/s is far above it, a trickle of a byte every few seconds not.
 */
#define DATA_MIN_RATE		500
#define DATA_RATE_GRACE		60

#define SESSION_ID_LEN		16	/* hex characters */
#define MSG_ID_LEN		16

#define LOG_LINE_MAX		4000	/* below PIPE_BUF: one atomic write */
#define LOG_WRITE_WAIT_MS	100	/* for the rest of a line begun */
#define LOG_FIELD_MAX		256	/* untrusted text in a log field */

/*
 * A worker's resource limits (sandbox.c): far above what a session
 * needs, low enough that a worker taken over cannot exhaust the host.
 */
#define WORKER_AS_BASE		(1024UL * 1024 * 1024)	/* address space */
#define WORKER_AS_PER_BYTE	48	/* x --max-size: payload copies */
#define WORKER_FSIZE_BASE	(64UL * 1024 * 1024)	/* file size */
#define WORKER_FSIZE_PER_BYTE	16	/* x --max-size: a spool file */
#define WORKER_CPU_PER_SESSION	120	/* CPU seconds x --max-use */
#define WORKER_CPU_MAX		3600

/* MIME limits (mime.c). */
#define MIME_MAX_DEPTH		10	/* nested multiparts */
#define MIME_MAX_PARTS		100	/* body parts, all levels together */
#define MIME_MAX_HEADERS	1000	/* header fields of one entity */
#define MIME_MAX_DECODED	(16 * 1024 * 1024)	/* bytes decoded */
#define MIME_MAX_FIELD_WORDS	256	/* RFC 2047 words decoded, a field */
#define MIME_MAX_WORDS		4096	/* RFC 2047 words decoded, a message */
#define MIME_MAX_CHARSETS	8	/* iconv converters open, a message */
#define MIME_BOUNDARY_MAX	200	/* RFC 2046 says 70 */
#define MIME_TOKEN_MAX		64	/* type, subtype, charset name */

#define TOKEN_PREFIX		"FIRM-TOKEN:"
#define TOKEN_LEN		(sizeof(TOKEN_PREFIX) - 1 + 14)

struct listener {
	int			 fd;
	int			 smtps;		/* implicit TLS */
	char			 name[64];	/* as given on the command line */
	struct sockaddr_storage	 ss;
	socklen_t		 sslen;
};

struct recipient_rule {
	char			*local;		/* NULL for "@domain" */
	char			*domain;
};

struct proxy_net {
	int			 af;
	uint8_t			 addr[16];
	int			 prefixlen;
};

/*
 * --dnsbl and --dnswl ZONE[=PATTERN][*WEIGHT], as Postfix's
 * postscreen_dnsbl_sites.  The zone leaves room for an IPv6 address's
 * 32 reversed nibbles (64 octets) before it.
 */
#define DNSBL_ZONE_MAX		189	/* DNS_NAME_MAX less 64 */
struct dnsbl_site {
	char			 zone[DNSBL_ZONE_MAX + 1];
	uint8_t			 match[4][32];	/* the octets PATTERN
						   takes, a bit each */
	int			 weight;	/* --dnswl: negative */
};

/* --require-auth, and the verdicts of SPEC section 6, worst first. */
enum auth_level {
	AUTH_NONE = 0,
	AUTH_WEAK,
	AUTH_STRONG,
};

struct banlist_map;
struct curl_slist;
struct json_t;
struct tls;

struct smtpd_conf {
	int			 debug;
	int			 verbose;
	int			 inetd;
	int			 config_test;
	int			 online;	/* -n --online */
	int			 check_cert;

	struct listener		 listeners[MAX_LISTENERS];
	size_t			 nlisteners;
	char			 hostname[256];
	int			 hostname_set;	/* -H given */

	struct recipient_rule	 rcpts[MAX_RECIPIENT_RULES];
	size_t			 nrcpts;

	const char		*api;
	const char		*spool;
	int			 spool_fd;
	const char		*api_secret;
	long long		 api_timeout;
	const char		*ca_file;
	int			 api_port;	/* for the sandbox */
	struct curl_slist	*api_resolve;	/* the host, resolved */
	struct api_addr {
		int		 af;
		uint8_t		 a[16];
	}			 api_addrs[API_ADDRS_MAX];	/* the relay's */
	size_t			 napi_addrs;	/* only connections */
	uint8_t			*ca_blob;	/* CA bundle, in memory */
	size_t			 ca_bloblen;

	long long		 max_size;
	long long		 max_rcpt;
	long long		 max_sessions;
	long long		 max_per_ip;
	long long		 spare;
	long long		 timeout;
	long long		 session_timeout;	/* the whole session */
	long long		 spool_reserve;	/* free octets --spool keeps */
	long long		 max_errors;
	long long		 max_conn_rate;	/* an address a minute; 0 off */
	long long		 max_msg_rate;
	long long		 poll;
	const char		*banlist_cache;
	const char		*user;
	uid_t			 uid;
	gid_t			 gid;

	const char		*tls_cert;
	const char		*tls_key;
	struct tls		*tls;		/* server context, or NULL */
	int			 require_tls;
	struct proxy_net	 proxy_from[MAX_PROXY_FROM];
	size_t			 nproxy_from;
	const char		*health;
	struct listener		 health_l;	/* --health, bound by master */
	long long		 grace;
	long long		 drain;		/* --drain: seconds */
	int			 reject_bare_lf;
	int			 pin_cpu;	/* --pin-cpu */
	int			 soft_bounce;	/* refusals sent as 4xx */
	long long		 greet_delay;	/* milliseconds */
	struct dnsbl_site	 dnsbl[MAX_DNSBL];	/* and --dnswl */
	size_t			 ndnsbl;
	long long		 dnsbl_threshold;
	int			 fetch_only;
	long long		 max_use;
	char			 relay_path[4096];	/* smtpd-relay */
	char			 self_path[4096];	/* smtpd: health */
	struct resolver {
		int		 af;
		uint8_t		 addr[16];
		int		 port;
		char		 name[INET6_ADDRSTRLEN + 16];	/* a@port */
	}			 resolvers[MAX_RESOLVERS];
	size_t			 nresolvers;	/* 0: /etc/resolv.conf */
	int			 require_auth;	/* enum auth_level */
	char			 auth_id[256];	/* authserv-id */

	struct banlist_map	*banlist;	/* read-only for workers */
	int			 banlist_rwfd;	/* master and fetcher only */
	int			 banlist_rofd;	/* master: for health */
	int			 banlist_dirfd;	/* of --banlist-cache */
	char			 banlist_file[64];	/* its base name */
	char			 banlist_dir[4096];	/* of the cache */
	char			 banlist_table[4096];	/* --fetch-only */
};

/* A message being received. */
struct message {
	char			 id[MSG_ID_LEN + 1];
	char			*buf;		/* Received: header + data */
	size_t			 len;
	size_t			 cap;
	size_t			 hdrlen;	/* length of our Received: */
	size_t			 datalen;	/* octets of data, unstuffed */
	size_t			 limit;		/* --max-size */
	size_t			 bare_cr;
	size_t			 bare_lf;
	int			 long_line;
	int			 too_big;
	int			 error;		/* out of memory */
	int			 raw;		/* BDAT: no dots, no end */
	/* the data reader, see message_feed() */
	int			 dstate;
	int			 crlf_start;
	size_t			 linelen;
};

/* What a session hands to delivery. */
struct envelope {
	const char		*session;
	const char		*client_ip;
	const char		*helo;
	const struct sockaddr_storage *peer;	/* the client */
	const char		*tls;		/* NULL for plain sessions */
	const char		*from;
	char * const		*rcpts;
	size_t			 nrcpts;
	time_t			 received;
};

/* Replies, from one table in reply.c. */
enum reply {
	REPLY_GREETING,
	REPLY_HELO,
	REPLY_BANNED,
	REPLY_STARTTLS,
	REPLY_NOTLS,
	REPLY_TLSFAIL,
	REPLY_INTLS,
	REPLY_NEEDTLS,
	REPLY_BANNED_CMD,
	REPLY_DNSBL,
	REPLY_DNSBL_CMD,
	REPLY_SENDER_BLOCKED,
	REPLY_MAXSESSIONS,
	REPLY_MAXPERIP,
	REPLY_CONNRATE,
	REPLY_MSGRATE,
	REPLY_EARLYTALK,
	REPLY_BADSEQ,
	REPLY_NOHELO,
	REPLY_NESTEDMAIL,
	REPLY_NOMAIL,
	REPLY_SIZE,
	REPLY_PARAM,
	REPLY_UTF8ADDR,
	REPLY_RCPTUNKNOWN,
	REPLY_TOOMANYRCPT,
	REPLY_NORCPT,
	REPLY_LINETOOLONG,
	REPLY_UNKNOWN,
	REPLY_SYNTAX,
	REPLY_MAXERRORS,
	REPLY_JUNK,
	REPLY_HTTP,
	REPLY_AUTH,
	REPLY_VRFY,
	REPLY_EXPN,
	REPLY_HELP,
	REPLY_TIMEOUT,
	REPLY_NOTOKEN,
	REPLY_OK,
	REPLY_MAILOK,
	REPLY_RCPTOK,
	REPLY_DATA,
	REPLY_QUIT,
	REPLY_SHUTDOWN,
	REPLY_BARELF,
	REPLY_TEXTLINE,
	REPLY_MSGSIZE,
	REPLY_API_DOWN,
	REPLY_API_TIMEOUT,
	REPLY_API_TEMP,
	REPLY_FIRMREJECT,
	REPLY_ACCEPTED,
	REPLY_LOCALERR,
	REPLY_FROM,
	REPLY_REPEATED,
	REPLY_NOSPACE,
	REPLY_AUTHFAIL,
	REPLY_AUTHTEMP,
	REPLY_FIRM_CONFIG,
	REPLY_FIRM_TOOBIG,
	REPLY_COUNT
};

/* in privsep.h, included at the end */
struct chan_hdr;
struct chan_inbound;
struct metrics_map;
struct metrics_slot;
struct tls_sign_req;
struct tls_sign_res;

/*
 * Metrics (SPEC section 7), in shared memory made by the master:
 * one slot a process (the master, the relay, the fetcher, each worker
 * by its place in the pool), each written by its one owner only, with
 * relaxed atomic adds.  The health process sums them.  The master
 * never reads them, so a worker that scribbles over the region spoils
 * numbers, never another process's state.  Nothing in them is a client
 * byte: every label is an index into a fixed table.
 */
/*
 * FIRM answered POST /inbound with a status that blames our key or
 * URL, not the message: 451 4.3.5, logged as an error, counted, and
 * /healthz answers 503 until a later call gets a 2xx or for
 * FIRM_CONFIG_HOLD seconds after the last one, whichever comes first.
 */
#define FIRM_CONFIG_ERROR(st)	((st) == 401 || (st) == 403 ||	\
				 (st) == 404 || (st) == 405)
#define FIRM_CONFIG_HOLD	300
#define METRICS_FIRM_BUCKETS	12	/* le= of the histogram, +Inf last */
enum metric {
	/* counters: smtpd_sessions_total{result} */
	M_SESS_SERVED = 0,
	M_SESS_MAXSESSIONS,
	M_SESS_MAXPERIP,
	M_SESS_BANNED,
	M_SESS_EARLYTALK,
	M_SESS_CONNRATE,
	/* smtpd_messages_total{status} */
	M_MSG_ACCEPTED,
	M_MSG_REJECTED,
	M_MSG_TEMPFAIL,
	/* smtpd_firm_responses_total{class} */
	M_FIRM_2XX,
	M_FIRM_4XX,
	M_FIRM_5XX,
	M_FIRM_TIMEOUT,
	M_FIRM_UNREACHABLE,
	/* smtpd_firm_request_seconds: buckets, sum (microseconds), count */
	M_FIRM_BUCKET,
	M_FIRM_SUM_US = M_FIRM_BUCKET + METRICS_FIRM_BUCKETS,
	M_FIRM_COUNT,
	/* smtpd_auth_verdicts_total{verdict}, enum auth_verdict order */
	M_VERDICT,
	M_WORKER_DEATHS = M_VERDICT + 5,
	M_DNSBL_REFUSED,	/* worker: smtpd_dnsbl_refused_total */
	M_DNS_QUERIES,		/* smtpd_dns_queries_total */
	M_DNS_CACHED,		/* relay: smtpd_dns_cache_answers_total */
	M_FIRM_CONFIG_ERRORS,	/* relay: smtpd_firm_config_errors_total */
	/* master: smtpd_tls_signatures_total{result} */
	M_TLS_SIGNED,
	M_TLS_SIGN_REFUSED,
	/* gauges, each written by its one owner */
	M_SESSIONS_ACTIVE,	/* master */
	M_WORKERS_IDLE,		/* master */
	M_WORKERS_BUSY,		/* master */
	M_RELAY_UP,		/* master: 1 while a relay runs */
	M_FETCHER_UP,		/* master: 1 while a fetcher runs */
	M_DRAINING,		/* master: 1 during --drain */
	M_STRESS,		/* master: 1 under stress */
	M_BANLIST_LAST_OK,	/* fetcher: wall clock of the last good poll */
	M_BANLIST_FAILURES,	/* fetcher: polls failed in a row */
	M_START_TIME,		/* master: wall clock at start */
	M_TLS_CERT_EXPIRY,	/* master: the certificate's notAfter */
	M_LOG_DROPPED,		/* log lines a slow reader cost us */
	M_FIRM_CONFIG_STATUS,	/* relay: FIRM's status of the last config
				   error, 0 once a later call got a 2xx */
	M_FIRM_CONFIG_AT,	/* relay: wall clock of that error */
	/* smtpd_replies_total{code}: one per enum reply */
	M_REPLY,
	/* the same, sent as their 4xx by --soft-bounce */
	M_REPLY_SOFT = M_REPLY + REPLY_COUNT,
	M_COUNT = M_REPLY_SOFT + REPLY_COUNT,
};
extern struct metrics_slot	*metrics_self;	/* this process's slot */
extern void	*metrics_worker_at;	/* where a worker maps it */
size_t		 metrics_stride(void);
size_t		 metrics_offset(size_t);
size_t		 metrics_size(size_t);
struct metrics_map *metrics_create_priv(size_t, int *, int *);
void		 metrics_use(struct metrics_map *, size_t);
int		 metrics_own(int, size_t, void *);
void		 metrics_unmap(struct metrics_map *);
void		 metrics_add(enum metric, uint64_t);
void		 metrics_set(enum metric, uint64_t);
void		 metrics_firm(long long, int);
extern const long long metrics_firm_le_us[METRICS_FIRM_BUCKETS - 1];

/* health.c: the health process */
#define HEALTH_CONN_MAX		16	/* requests served at once */
#define HEALTH_REQUEST_MAX	2048	/* octets of one request */
#define HEALTH_TIMEOUT_MS	5000	/* to send a request */
#define HEALTH_OUT_MAX		65536	/* one answer */
#define HEALTH_ROLE		"health"	/* smtpd health FLAGS... */
int		 health_render(const struct metrics_map *,
		    const struct smtpd_conf *, char *, size_t);
int		 health_check(const struct metrics_map *,
		    const struct smtpd_conf *, char *, size_t);
__dead void	 health_main(int, char **);

/* smtpd.c */
extern volatile sig_atomic_t	 smtpd_stop;
extern volatile sig_atomic_t	 smtpd_reload;

/* addr.c */
int		 addr_parse_path(const char *, char *, size_t, const char **,
		    int);
int		 addr_parse_mail_params(const char *, int, long long *, int *);
int		 addr_rcpt_match(const struct smtpd_conf *, const char *);
#define FROM_COMMENT_DEPTH	8	/* nested comments in From: */
int		 addr_parse_from(const char *, size_t, char *, size_t,
		    size_t *);
void		 addr_str(const struct sockaddr_storage *, char *, size_t);
void		 addr_key(const struct sockaddr_storage *, uint8_t *);
struct ctl_claim;
void		 addr_pack(const struct sockaddr_storage *, struct ctl_claim *);
int		 addr_unpack(const struct ctl_claim *,
		    struct sockaddr_storage *);

/* message.c: a message's data, from DATA or BDAT */
void		 message_start(struct message *, size_t);
size_t		 message_feed(struct message *, const char *, size_t, int *);
void		 message_last_chunk(struct message *);
int		 message_alloc(struct message *, size_t);
void		 message_reset(struct message *);

/* reply.c: every reply line, from one table */
int		 reply_line(enum reply, int, const char *, char *, size_t);
int		 reply_softened(enum reply, int);
int		 reply_code(int);
int		 reply_is_error(enum reply);

/* alabel.c: a domain name's A-label form (IDNA), for SPF and DMARC */
int		 alabel_domain(const char *, char *, size_t);

/* session.c */
struct session_ctx {
	const struct smtpd_conf	*conf;
	int			 fd_in;
	int			 fd_out;
	struct sockaddr_storage	 peer;
	socklen_t		 peerlen;
	int			 reject;	/* enum reply, or -1 */
	int			 stress;	/* claimed under stress */
	int			 spool_full;	/* the master's word at the
						   claim: 1 full, 0 room,
						   -1 unsaid */
	int			 banned;	/* client in the ban list */
	int			 smtps;		/* implicit TLS listener */
	int			 chan;		/* to the relay */
	int			 vchan;		/* to the verifier */
	int			 ctl;		/* to the master */
	struct sockaddr_storage	 via;		/* the PROXY peer, or
						   AF_UNSPEC */
};
void		 session_run(struct session_ctx *);
void		 session_scrub(void);

/* payload.c */
int		 payload_token_find(const char *, size_t, char *);
struct chan_verdict;
enum reply	 payload_deliver(const struct smtpd_conf *,
		    const struct envelope *, const struct message *, int,
		    int, struct chan_verdict *, char *, char *, size_t);
int		 payload_verify(const struct smtpd_conf *,
		    const struct envelope *, const struct message *, int);

/*
 * verifier.c: the verifier (smtpd verifier FLAGS...), which checks each
 * message a worker hands it and tells the relay what it found.  The
 * relay waits this long for the result of a payload's message.
 */
#define VERIFIER_ROLE		"verifier"
#define RELAY_AUTH_WAIT_MS	(DNS_BUDGET_MS + 10000)
__dead void	 verifier_main(int, char *[]);

/* rate.c: the master's per-address rates (--max-conn-rate, ...) */
enum rate_kind {
	RATE_CONN,
	RATE_MSG,
	RATE_KINDS
};
void		 rate_init(void);
int		 rate_take(const uint8_t *, enum rate_kind, long long);

/* channel.c */
#define CHAN_DNS_QUERY_MAX	(4 + DNS_NAME_MAX + 1)
#define CHAN_DNS_MAX		16384	/* an answer's body */
#define CHAN_STALE_MAX		64	/* late answers dropped */
ssize_t		 chan_decode(const uint8_t *, size_t, size_t,
		    struct chan_hdr *);
int		 chan_inbound_check(const uint8_t *, size_t,
		    struct chan_inbound *, const char **, size_t *);
struct iovec;
int		 chan_send(int, uint16_t, struct iovec *, int, long long);
ssize_t		 chan_read(int, uint16_t, size_t, uint8_t **, long long);
ssize_t		 chan_request(int, uint16_t, const void *, size_t,
		    const void *, size_t, uint16_t, void *, size_t, long long);
uint32_t	 chan_ask(int, uint16_t, const void *, size_t, long long);
ssize_t		 chan_answer(int, uint16_t, uint32_t *, void *, size_t,
		    long long);

/*
 * Sender authentication (SPEC section 6).  A worker asks the relay its
 * DNS questions over the channel (dns.c) and gets each answer's records
 * decoded into plain data:
 *	A	4 octets		AAAA	16 octets
 *	TXT	the record's strings concatenated (RFC 7208 3.3)
 *	MX	the exchange, dotted, no trailing dot (preference dropped)
 *	PTR	the name, dotted, no trailing dot
 * A timeout, SERVFAIL or any other failure is DNS_TEMPFAIL.
 */
#define DNS_T_A			1
#define DNS_T_PTR		12
#define DNS_T_MX		15
#define DNS_T_TXT		16
#define DNS_T_AAAA		28
#define DNS_NAME_MAX		253	/* dotted, without the root dot */
#define DNS_RR_MAX		64	/* records kept of one answer */
#define DNS_BUDGET_MS		5000	/* one message, all questions */
#define DNS_QUERIES_MAX		160	/* one message: SPF may need 111 */
#define DNS_SESSION_QUERIES_MAX	480	/* one session, all its messages
					   (verifier.c) */
enum dns_status {
	DNS_NOERROR = 0,	/* records, or none (NODATA) */
	DNS_NXDOMAIN,		/* the name does not exist */
	DNS_TEMPFAIL,		/* no answer: timeout, SERVFAIL, budget */
};
struct dns_rr {
	const uint8_t		*data;
	size_t			 len;
};
struct dns_answer {
	int			 status;	/* enum dns_status */
	size_t			 nrr;
	struct dns_rr		 rr[DNS_RR_MAX];
	uint8_t			 buf[CHAN_DNS_MAX];	/* rr[].data point here */
};
/*
 * Who answers: the relay over a channel in a worker (dns_chan_lookup),
 * a table in the test programs and fuzz targets.  lookup fills *ans
 * and returns 0; it never fails otherwise (a failure is DNS_TEMPFAIL).
 */
struct dns_ctx {
	int			(*lookup)(void *, const char *, int,
				    struct dns_answer *);
	void			*arg;
	size_t			 queries;	/* asked so far */
};

/* dns.c */
int		 dns_lookup(struct dns_ctx *, const char *, int,
		    struct dns_answer *);
struct dns_chan {
	int			 fd;		/* the channel */
	long long		 left_ms;	/* the message's budget */
	size_t			 left_q;	/* questions it may still ask */
	int			 broken;	/* a request failed: the stream
						   may be mid-record */
	/* one question asked ahead (dns_ahead()), its answer kept */
	uint32_t		 ahead_id;	/* 0: none waits to be used */
	int			 ahead_type;
	int			 ahead_have;	/* its answer is in ahead_buf */
	size_t			 ahead_len;
	uint8_t			*ahead_buf;	/* CHAN_DNS_MAX octets */
	char			 ahead_name[DNS_NAME_MAX + 1];
};
void		 dns_chan_init(struct dns_ctx *, struct dns_chan *, int);
void		 dns_chan_free(struct dns_chan *);
void		 dns_ahead(struct dns_ctx *, const char *, int);
void		 dns_chan_parallel(int, const char *const *, size_t, int,
		    void (*)(void *, size_t, const struct dns_answer *),
		    void *, long long);
int		 dns_answer_decode(const uint8_t *, size_t,
		    struct dns_answer *);
int		 dns_query_check(const uint8_t *, size_t, int *, char *,
		    size_t);
size_t		 dns_answer_encode(int, const uint8_t *const *,
		    const size_t *, size_t, uint8_t *, size_t);
size_t		 dns_rdata_decode(int, const uint8_t *, size_t, uint8_t *,
		    size_t);

/* spf.c: RFC 7208 check_host() */
#define SPF_TERMS_MAX		10	/* DNS-querying terms (4.6.4) */
#define SPF_VOID_MAX		2	/* void lookups (4.6.4) */
#define SPF_MX_MAX		10	/* hosts of one "mx" */
#define SPF_PTR_MAX		10	/* names of the client looked at */
#define SPF_DEPTH_MAX		(SPF_TERMS_MAX + 1)	/* a guard */
#define SPF_WINDOW		1024	/* macro expansion buffer */
#define SPF_KEEP		512	/* its tail kept when it fills up */
enum spf_result {
	SPF_NONE = 0,
	SPF_NEUTRAL,
	SPF_PASS,
	SPF_FAIL,
	SPF_SOFTFAIL,
	SPF_TEMPERROR,
	SPF_PERMERROR,
};
const char	*spf_result_name(int);
int		 spf_check_host(struct dns_ctx *, const struct sockaddr_storage *,
		    const char *, const char *, const char *, const char *);

/* dmarc.c: RFC 9989 (RFC 7489 records read the same way) */
#define DMARC_DKIM_MAX		16	/* signatures looked at */
#define DMARC_WALK_MAX		8	/* questions of one tree walk */
#define DMARC_CACHE_MAX		24	/* _dmarc answers kept per check */
enum dmarc_result {
	DMARC_NONE = 0,
	DMARC_PASS,
	DMARC_FAIL,
	DMARC_TEMPERROR,
	DMARC_PERMERROR,
};
enum dmarc_policy {
	DMARC_P_UNSET = 0,
	DMARC_P_NONE,
	DMARC_P_QUARANTINE,
	DMARC_P_REJECT,
};
struct dmarc_record {
	int			 p, sp, np;	/* enum dmarc_policy */
	int			 adkim_strict;
	int			 aspf_strict;
	int			 psd;		/* -1 unset, 0 n, 1 y */
};
struct dmarc_input {
	const char		*from_domain;	/* of the From mailbox */
	int			 spf;		/* enum spf_result */
	const char		*spf_domain;	/* that SPF checked */
	size_t			 ndkim;
	const char		*dkim_domain[DMARC_DKIM_MAX];	/* d= */
	int			 dkim_pass[DMARC_DKIM_MAX];
};
struct dmarc_output {
	int			 result;	/* enum dmarc_result */
	char			 domain[DNS_NAME_MAX + 1];	/* From's */
	char			 org_domain[DNS_NAME_MAX + 1];
	int			 policy;	/* p, sp or np as applied */
	int			 spf_aligned;	/* aligned SPF pass */
	int			 dkim_aligned;	/* an aligned DKIM pass */
	int			 dkim_aligned_each[DMARC_DKIM_MAX];	/* d= */
};
int		 dmarc_record_parse(const char *, size_t,
		    struct dmarc_record *);
int		 dmarc_org_domain(struct dns_ctx *, const char *, char *,
		    size_t);
int		 dmarc_check(struct dns_ctx *, const struct dmarc_input *,
		    struct dmarc_output *);
int		 dmarc_first_question(const char *, char *, size_t);
const char	*dmarc_result_name(int);
const char	*dmarc_policy_name(int);

/*
 * dkimtag.c: DKIM tag lists (RFC 6376 3.2) and a signature's tag rules
 * (3.5), checked before libopendkim sees a signature.
 */
#define DKIMTAG_MAX		32	/* tags in one list */
#define DKIMTAG_H_MAX		128	/* names in h= */
#define DKIMTAG_H_LEN		4096	/* h= octets libopendkim reads */
#define DKIM_KEY_FOUND		1	/* a record that parses */
#define DKIM_KEY_NONE		(-1)	/* none: permerror */
#define DKIM_KEY_TEMP		(-2)	/* DNS failed: temperror */
struct dkimtag {
	const char		*name;
	size_t			 nlen;
	const char		*val;		/* FWS around it trimmed */
	size_t			 vlen;
};
struct dkimtag_sig {
	struct dkimtag		 tags[DKIMTAG_MAX];
	size_t			 ntags;
	const char		*error;		/* the rule broken, or NULL */
	char			 d[DNS_NAME_MAX + 1];
	char			 s[64];
	char			 a[32];		/* as written, "unknown", or ""
						   when absent */
	long long		 t;		/* -1: absent */
	long long		 x;		/* -1: absent */
	long long		 l;		/* -1: absent */
	int			 i_subdomain;	/* i= below d= */
	int			 key_strict;	/* its key said t=s */
	char			*keyrec;	/* auth.c: that key record */
	size_t			 keylen;
	int			 key;		/* auth.c: DKIM_KEY_* */
};
int		 dkimtag_parse(const char *, size_t, struct dkimtag *,
		    size_t, int *);
const struct dkimtag *dkimtag_get(const struct dkimtag *, size_t,
		    const char *);
int		 dkimtag_sig_parse(const char *, size_t, struct dkimtag_sig *);
size_t		 dkimtag_h_count(const struct dkimtag_sig *, const char *);
int		 dkimtag_same_value(const struct dkimtag *, const char *);
int		 dkimtag_key_parse(const char *, size_t, const char *,
		    int *);

/* auth.c: one message's sender authentication, in the worker */
enum auth_verdict {		/* worst first */
	AUTHV_TEMPERROR = 0,
	AUTHV_FAIL,
	AUTHV_NONE,
	AUTHV_WEAK,
	AUTHV_STRONG,
};
enum auth_dkim_result {
	DKIM_R_NONE = 0,
	DKIM_R_PASS,
	DKIM_R_FAIL,
	DKIM_R_POLICY,
	DKIM_R_NEUTRAL,
	DKIM_R_TEMPERROR,
	DKIM_R_PERMERROR,
};
#define AUTH_RESULTS_MAX	4096
struct auth_dkim {
	int			 result;	/* enum auth_dkim_result */
	char			 d[DNS_NAME_MAX + 1];
	char			 s[64];
	char			 a[32];		/* the signature's a= */
	int			 bits;
	long long		 t;		/* t=, -1 when absent */
	long long		 x;		/* x=, -1 when absent */
	int			 aligned;	/* with the From domain */
	int			 covers_token;
};
struct auth {
	struct dns_ctx		 dns;
	struct dns_chan		 dc;
	struct dns_answer	*ans;		/* for DKIM keys */
	int			 spf_done;
	int			 spf;		/* enum spf_result */
	char			 spf_domain[SMTP_DOMAIN_MAX + 1];
	const char		*spf_scope;	/* "mfrom" or "helo" */
	char			 from[SMTP_PATH_MAX + 1];	/* From: */
	char			 from_domain[SMTP_DOMAIN_MAX + 1];
	size_t			 ndkim;
	struct auth_dkim	 dkim[DMARC_DKIM_MAX];
	struct dkimtag_sig	*sigtags;	/* the first DMARC_DKIM_MAX
						   signature fields' tags */
	size_t			 nsigtags;
	size_t			 sigfed[DMARC_DKIM_MAX];	/* those handed
						   to libopendkim, in order */
	size_t			 nsigfed;
	struct dmarc_output	 dmarc;
	int			 from_equals_envelope;
	int			 auto_submitted;
	int			 verdict;	/* enum auth_verdict */
	char			 results[AUTH_RESULTS_MAX];
	char			*raw;		/* the message as forwarded */
	size_t			 rawlen;
};
struct json_t;
void		 auth_init(void);
void		 auth_reset(struct auth *);
void		 auth_spf(struct auth *, const struct smtpd_conf *, int, size_t,
		    const struct sockaddr_storage *, const char *,
		    const char *);
int		 auth_once(const struct message *, const char **);
int		 auth_from(struct auth *, const struct message *);
struct mime_msg;
int		 auth_message(struct auth *, const struct smtpd_conf *,
		    const struct message *, const struct mime_msg *,
		    const char *, const char *, int);
struct json_t	*auth_json(const struct auth *, const struct smtpd_conf *);
const char	*auth_dkim_result(const struct auth *);
const char	*auth_verdict_name(int);

/*
 * proxy.c: the PROXY protocol (SPEC section 8).  proxy_parse() on the
 * octets so far: PROXY_MORE (a header's beginning), PROXY_SOURCE (*src
 * is the client), PROXY_LOCAL (keep the peer's address) or
 * PROXY_ERROR; *used is then the header's length.  proxy_read(), in
 * a worker: 1 (*peer is the client named), 0 (the peer it is) or -1.
 */
#define PROXY_V1_MAX		107	/* a v1 line, CRLF included */
#define PROXY_V2_SIGLEN		12
#define PROXY_V2_FIXED		16	/* signature, version, family, len */
#define PROXY_V2_BLOCK_MAX	4080	/* addresses and TLVs we accept */
#define PROXY_HDR_MAX		(PROXY_V2_FIXED + PROXY_V2_BLOCK_MAX)
enum proxy_result {
	PROXY_ERROR = -1,
	PROXY_MORE = 0,
	PROXY_SOURCE = 1,
	PROXY_LOCAL = 2,
};
int		 proxy_parse(const uint8_t *, size_t,
		    struct sockaddr_storage *, size_t *);
int		 proxy_trusted(const struct smtpd_conf *,
		    const struct sockaddr_storage *);
int		 proxy_read(int, long long, struct sockaddr_storage *,
		    const char **);

/* dnsbl.c */
#define DNSBL_WAIT_MS		2000	/* every zone's answer, at connect */
int		 dnsbl_listed(const struct smtpd_conf *, int,
		    const struct sockaddr_storage *, const char *,
		    const char *);

/* conf.c */
void		 conf_init(struct smtpd_conf *, int, char **);
void		 conf_user(struct smtpd_conf *);
void		 conf_banlist_dir(struct smtpd_conf *);
__dead void	 flag_error(const char *, const char *, ...)
		    __attribute__((__format__ (printf, 2, 3)));

/* worker.c */
__dead void	 worker_main(struct smtpd_conf *, int, int, int, int);
int		 worker_mail(int);

/* banlist.c */
#define BANLIST_HDR_SIZE	4096
#define BANLIST_HALF_SIZE	(96UL * 1024 * 1024)
#define BANLIST_RESPONSE_MAX	(128UL * 1024 * 1024)
#define BANLIST_ALARM_AFTER	3
#define BANLIST_TABLE_NAME	"banlist.table"
struct banlist_set {
	struct range4		*v4;
	size_t			 nv4;
	size_t			 cap4;
	struct range6		*v6;
	size_t			 nv6;
	size_t			 cap6;
	char			**senders;
	size_t			 nsenders;
	size_t			 capsenders;
	size_t			 skipped;
	int			 quiet;		/* no log line per bad entry */
};
void		 banlist_set_init(struct banlist_set *);
void		 banlist_set_free(struct banlist_set *);
int		 banlist_add_net(struct banlist_set *, const char *);
int		 banlist_add_sender(struct banlist_set *, const char *);
int		 banlist_parse(const char *, size_t, const char *, int,
		    struct banlist_set *);
size_t		 banlist_region_size(size_t);
struct banlist_map *banlist_map(int, size_t, int);
void		 banlist_unmap(struct banlist_map *);
void		 banlist_init(struct banlist_map *);
int		 banlist_valid(const struct banlist_map *);
void		 banlist_set_writer(struct banlist_map *, pid_t);
pid_t		 banlist_writer(const struct banlist_map *);
int		 banlist_publish(struct banlist_map *, struct banlist_set *);
int		 banlist_lookup_addr(const struct banlist_map *,
		    const struct sockaddr_storage *);
int		 banlist_lookup_sender(const struct banlist_map *,
		    const char *);
void		 banlist_counts(const struct banlist_map *, size_t *, size_t *,
		    size_t *, size_t *);
#ifdef SMTPD_TEST_HOOKS
const char	*banlist_test_write(const struct banlist_map *);
#endif
int		 banlist_cache_open(int, const char *);
int		 banlist_cache_read(int, const char *, struct json_t **,
		    struct json_t **);
int		 banlist_set_add_json(struct banlist_set *, struct json_t *,
		    struct json_t *);
int		 banlist_cache_write(const struct smtpd_conf *, struct json_t *,
		    struct json_t *);

/*
 * mime.c.  mime_parse() fails with MIME_ENOMEM only; a limit cuts the
 * walk short and is named in mime_msg.truncated (the first one hit).
 */
enum mime_error {
	MIME_OK = 0,
	MIME_ENOMEM,		/* out of memory */
	MIME_EDEPTH,		/* multipart nesting over MIME_MAX_DEPTH */
	MIME_EPARTS,		/* body parts over MIME_MAX_PARTS */
	MIME_EHEADERS,		/* fields of one entity over MIME_MAX_HEADERS */
	MIME_ESIZE,		/* decoded bytes over MIME_MAX_DECODED */
	MIME_EWORDS,		/* encoded words over MIME_MAX_[FIELD_]WORDS */
	MIME_ECHARSETS,		/* charsets over MIME_MAX_CHARSETS */
};
struct mime_header {
	char			*name;		/* lower case */
	char			*value;		/* unfolded, RFC 2047 decoded,
						   valid UTF-8 */
};
struct mime_msg {
	struct mime_header	*hdrs;		/* top-level fields, in order */
	size_t			 nhdrs;
	char			*subject;	/* first Subject, or NULL */
	char			*body;		/* decoded text, valid UTF-8,
						   NUL-terminated */
	size_t			 bodylen;
	int			 truncated;	/* 0, or the enum mime_error
						   of the first limit hit */
};
int		 mime_parse(const char *, size_t, struct mime_msg *);
int		 mime_field_next(const char **, const char *, const char **,
		    size_t *, const char **, size_t *);
void		 mime_free(struct mime_msg *);
const char	*mime_header_get(const struct mime_msg *, const char *);
char		*mime_utf8_clean(const char *, size_t, size_t *);
const char	*mime_strerror(int);

/* log.c */
void		 log_init(int, int);
void		 log_setproc(const char *);
int		 log_verbose(void);
void		 log_event(int, const char *, const char *, const char *, ...);
void		 log_warn(const char *, ...)
		    __attribute__((__format__ (printf, 1, 2)));
void		 log_warnx(const char *, ...)
		    __attribute__((__format__ (printf, 1, 2)));
void		 log_info(const char *, ...)
		    __attribute__((__format__ (printf, 1, 2)));
void		 log_debug(const char *, ...)
		    __attribute__((__format__ (printf, 1, 2)));
__dead void	 fatal(const char *, ...)
		    __attribute__((__format__ (printf, 1, 2)));
__dead void	 fatalx(const char *, ...)
		    __attribute__((__format__ (printf, 1, 2)));
void		 log_sanitize(char *, size_t, const char *, size_t);
void		 log_timestamp(char *, size_t, int);

/* sandbox.c, with sandbox_linux.c or sandbox_openbsd.c */
void		 sandbox_drop_user(const struct smtpd_conf *);
void		 sandbox_master(const struct smtpd_conf *);
void		 sandbox_prepare_priv(const struct smtpd_conf *);
void		 sandbox_worker(const struct smtpd_conf *);
void		 sandbox_worker_narrow(const struct smtpd_conf *);
void		 sandbox_worker_report(const struct smtpd_conf *);
void		 sandbox_relay(const struct smtpd_conf *);
void		 sandbox_fetcher(const struct smtpd_conf *);
void		 sandbox_health(const struct smtpd_conf *);
void		 sandbox_verifier(const struct smtpd_conf *);
void		 sandbox_verifier_child(void);

/* cpu.c */
void		 cpu_pin(void);

/* shm.c */
int		 shm_create(size_t, int *, int *);

/* tls.c */
#define TLS_EXPIRY_WARN_DAYS	14
struct tls	*tls_server_setup_priv(const struct smtpd_conf *, char *,
		    size_t);
int		 tls_handshake_timed(struct tls *, int, long long,
		    const sigset_t *, char *, size_t);
int		 tls_check_cert(const struct smtpd_conf *, int);
struct server_tls_cert_info {
	char		 subject[512];
	char		 names[1024];	/* DNS subjectAltNames */
	char		 when[64];	/* notAfter, RFC 3339 */
	time_t		 notafter;
	int		 names_host;	/* it names the host asked about */
};
int		 server_tls_cert_read(const char *, const char *,
		    struct server_tls_cert_info *, char *, size_t);
time_t		 server_tls_expiry_log(const struct smtpd_conf *);
/* the TLS private key stays with its holder, the master */
typedef int (*server_tls_signer)(void *, const struct tls_sign_req *,
		    struct tls_sign_res *);
int		 server_tls_init(char *, size_t);
int		 server_tls_key_load_priv(const struct smtpd_conf *, char *,
		    size_t);
void		 server_tls_sign_priv(const struct tls_sign_req *,
		    struct tls_sign_res *, int);
struct tls	*server_tls_setup_keyless(const struct smtpd_conf *, char *,
		    size_t);
void		 server_tls_set_signer(server_tls_signer, void *);
void		 server_tls_key_forget(void);
#ifdef SMTPD_TEST_HOOKS
/* testhooks.c (smtpd-test only) */
void		 testhook_worker_start(void);
void		 testhook_metrics_region(const void *, size_t);
void		 testhook_run(const struct smtpd_conf *, int, int, int,
		    const char *, char *, size_t);
#endif

/* util.c */
struct iovec;
void		 random_hex(char *, size_t);
int		 fd_write_all(int, const void *, size_t);
#define FILE_NOREPLACE		0x01	/* never over another file */
#define FILE_UNNAMED		0x02	/* made unnamed, then linked */
#define FILE_NO_UNNAMED		(-2)	/* that cannot be done here */
int		 spool_full(int, unsigned long long);
int		 file_write_atomic(int, const char *, const struct iovec *, int,
		    mode_t, int);
void		 signals_set(void (*)(int), const int *, const int *);
int		 fd_send(int, int);
int		 fd_recv(int, int *);
int		 fd_send_rec(int, int, const void *, size_t, int);
ssize_t		 fd_recv_rec(int, int *, void *, size_t, int);
ssize_t		 fd_recv_next(int, int *, void *, size_t);

/* The records that cross a process boundary, each with its gate. */
#include "privsep.h"

#endif /* SMTPD_H */
