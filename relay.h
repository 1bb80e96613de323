/*
 * The program smtpd-relay (relay.c, firm.c, fetcher.c, relay_guard.c):
 * the one that links libcurl and holds the API key.  Nothing of smtpd
 * itself includes this header, so that no worker's or master's source
 * can reach an HTTP client.  Include it after smtpd.h.
 */

#ifndef SMTPD_RELAY_H
#define SMTPD_RELAY_H

#include <curl/curl.h>

/* firm.c (smtpd-relay) */
#define FIRM_KEY_MAX		1024
#define FIRM_SIG_HEX		64
#define FIRM_URL_MAX		2048
#define FIRM_ERROR_MAX		200
#define FIRM_RESPONSE_MAX	4096
#define FIRM_BANNED_SUBNETS	"/admin/banned_subnets"
struct firm_response {
	long			 status;
	char			*body;		/* NUL-terminated, or NULL */
	size_t			 len;
	size_t			 cap;
	size_t			 max;
	int			 truncated;
	int			 curl_error;
	char			 error[256];	/* >= CURL_ERROR_SIZE */
};
int		 firm_prepare(const struct smtpd_conf *, CURL *, const char *,
		    const char *, size_t, const char *, size_t, long,
		    struct firm_response *, struct curl_slist **);
int		 firm_finish(CURL *, CURLcode, struct firm_response *);
void		 firm_setup_priv(struct smtpd_conf *);
int		 firm_opensocket_ok(const struct smtpd_conf *,
		    const struct sockaddr *);
const char	*firm_key_load_priv(const char *);
void		 firm_key_wipe(void);
void		 firm_sign(const char *, const char *, size_t, char *);
int		 firm_request(const struct smtpd_conf *, const char *,
		    const char *, size_t, const char *, size_t,
		    struct firm_response *);
void		 firm_response_free(struct firm_response *);
void		 firm_error_text(const char *, size_t, char *, size_t);

/* fetcher.c (smtpd-relay) */
__dead void	 fetcher_main(struct smtpd_conf *, int);

/* probe.c (smtpd-relay): the resolvers and FIRM, from outside */
size_t		 probe_resolvers(const struct smtpd_conf *, int,
		    const char *[MAX_RESOLVERS]);
void		 probe_resolvers_start(const struct smtpd_conf *);
int		 probe_online(struct smtpd_conf *);

/* dnscache.c (smtpd-relay): answers kept for their time to live */
int		 dnscache_init(void);
int		 dnscache_get(int, const char *, const uint8_t **, size_t *);
void		 dnscache_put(int, const char *, int, const uint8_t *, size_t,
		    long);

/* spool.c (smtpd-relay): --spool files, written by threads */
struct spool_job {
	struct spool_job	*next;
	void			*arg;		/* the caller's */
	char			 name[MSG_ID_LEN + 16];
	const char		*json;		/* the caller's, until done */
	size_t			 len;
	int			 kind;		/* enum verdict_kind */
	int			 error;		/* errno of a failed write */
};
int		 spool_start(int, unsigned long long, long long);
void		 spool_submit(struct spool_job *);
struct spool_job *spool_done(void);

/* relay_guard.c (smtpd-relay): where its libraries may connect and send */
void		 relay_guard_init(const struct smtpd_conf *);
void		 relay_guard_dns_any(void);

#endif /* SMTPD_RELAY_H */
