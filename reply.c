/*
 * The replies: one table of codes from which every reply line is
 * composed, so that a code and its enhanced code never drift (SPEC
 * section 3).  The session sends them; the worker's 421 to a queued
 * connection and the metrics' labels read the same table.
 */

#include <sys/types.h>

#include <stdio.h>

#include "smtpd.h"

struct reply_entry {
	int		 code;
	const char	*enh;		/* enhanced status code, or NULL */
	const char	*text;		/* "" when the caller gives it all */
	int		 error;		/* counts toward --max-errors */
	int		 refusal;	/* of the sender, a recipient or the
					   message: --soft-bounce sends its
					   4xx (not a dialogue error) */
};

static const struct reply_entry replies[REPLY_COUNT] = {
	[REPLY_GREETING] = { 220, NULL, "", 0, 0 },
	[REPLY_HELO] = { 250, NULL, "", 0, 0 },
	[REPLY_BANNED] = { 554, "5.7.1", "", 0, 0 },
	[REPLY_STARTTLS] = { 220, "2.0.0", "Ready to start TLS", 0, 0 },
	[REPLY_NOTLS] = { 502, "5.5.1", "STARTTLS not available", 0, 0 },
	[REPLY_TLSFAIL] = { 454, "4.7.0",
	    "TLS not available, try again later", 0, 0 },
	[REPLY_INTLS] = { 503, "5.5.1", "TLS already active", 0, 0 },
	[REPLY_NEEDTLS] = { 530, "5.7.0",
	    "Must issue a STARTTLS command first", 0, 0 },
	[REPLY_BANNED_CMD] = { 503, "5.7.1",
	    "Your address is banned; only QUIT is accepted", 1, 0 },
	[REPLY_DNSBL] = { 554, "5.7.1",
	    "Service unavailable; your address is on a DNS block list", 0, 0 },
	[REPLY_DNSBL_CMD] = { 503, "5.7.1",
	    "Your address is on a DNS block list; only QUIT is accepted",
	    1, 0 },
	[REPLY_SENDER_BLOCKED] = { 550, "5.7.1", "Sender blocked", 0, 1 },
	[REPLY_MAXSESSIONS] = { 421, "4.3.2",
	    "Too many sessions, try again later", 0, 0 },
	[REPLY_MAXPERIP] = { 421, "4.7.0",
	    "Too many sessions from your address", 0, 0 },
	[REPLY_CONNRATE] = { 421, "4.7.0",
	    "Too many connections from your address, try again later", 0, 0 },
	[REPLY_MSGRATE] = { 450, "4.7.1",
	    "Too many messages from your address, try again later", 0, 0 },
	[REPLY_EARLYTALK] = { 554, "5.5.1",
	    "Protocol error: you talked before the greeting", 0, 0 },
	[REPLY_BADSEQ] = { 503, "5.5.1", "Bad sequence of commands", 0, 0 },
	[REPLY_NOHELO] = { 503, "5.5.1", "Send EHLO or HELO first", 0, 0 },
	[REPLY_NESTEDMAIL] = { 503, "5.5.1", "Nested MAIL command", 0, 0 },
	[REPLY_NOMAIL] = { 503, "5.5.1", "Send MAIL first", 0, 0 },
	[REPLY_SIZE] = { 552, "5.3.4",
	    "Message size exceeds fixed limit", 0, 1 },
	[REPLY_PARAM] = { 555, "5.5.4", "Unsupported parameter", 1, 0 },
	[REPLY_UTF8ADDR] = { 553, "5.6.7",
	    "Non-ASCII address requires SMTPUTF8", 1, 0 },
	[REPLY_RCPTUNKNOWN] = { 550, "5.1.1", "Recipient unknown", 1, 1 },
	[REPLY_TOOMANYRCPT] = { 452, "4.5.3", "Too many recipients", 0, 0 },
	[REPLY_NORCPT] = { 554, "5.5.1", "No valid recipients", 0, 0 },
	[REPLY_LINETOOLONG] = { 500, "5.5.2", "Line too long", 1, 0 },
	[REPLY_UNKNOWN] = { 500, "5.5.1", "Command unrecognized", 1, 0 },
	[REPLY_SYNTAX] = { 501, "5.5.4", "Syntax error", 1, 0 },
	[REPLY_MAXERRORS] = { 421, "4.7.0", "Too many errors, closing", 0, 0 },
	[REPLY_JUNK] = { 421, "4.7.0", "Too many commands, closing", 0, 0 },
	[REPLY_HTTP] = { 421, "4.7.0",
	    "This is an SMTP server, closing", 0, 0 },
	[REPLY_AUTH] = { 502, "5.5.1", "AUTH not available", 0, 0 },
	[REPLY_VRFY] = { 252, "2.5.0",
	    "Cannot VRFY user, but will accept message", 0, 0 },
	[REPLY_EXPN] = { 502, "5.5.1", "EXPN not available", 0, 0 },
	[REPLY_HELP] = { 214, "2.0.0", "See RFC 5321", 0, 0 },
	[REPLY_TIMEOUT] = { 421, "4.4.2", "Timeout, closing", 0, 0 },
	[REPLY_NOTOKEN] = { 550, "5.7.0",
	    "No FIRM token found in message", 0, 1 },
	[REPLY_OK] = { 250, "2.0.0", "OK", 0, 0 },
	[REPLY_MAILOK] = { 250, "2.1.0", "Sender OK", 0, 0 },
	[REPLY_RCPTOK] = { 250, "2.1.5", "Recipient OK", 0, 0 },
	[REPLY_DATA] = { 354, NULL, "End data with <CR><LF>.<CR><LF>", 0, 0 },
	[REPLY_QUIT] = { 221, "2.0.0", "Bye", 0, 0 },
	[REPLY_SHUTDOWN] = { 421, "4.3.2", "Service shutting down", 0, 0 },
	[REPLY_BARELF] = { 550, "5.5.2",
	    "Bare CR or LF in message not allowed", 0, 1 },
	[REPLY_TEXTLINE] = { 554, "5.6.0",
	    "Message has a line over 1000 octets", 0, 1 },
	[REPLY_MSGSIZE] = { 552, "5.3.4",
	    "Message size exceeds fixed limit", 0, 1 },
	[REPLY_API_DOWN] = { 451, "4.4.1",
	    "FIRM API unreachable, try again later", 0, 0 },
	[REPLY_API_TIMEOUT] = { 451, "4.4.2",
	    "FIRM API timed out, try again later", 0, 0 },
	[REPLY_API_TEMP] = { 451, "4.4.0",
	    "FIRM API busy, try again later", 0, 0 },
	[REPLY_FIRMREJECT] = { 554, "5.7.0", "", 0, 1 },
	[REPLY_ACCEPTED] = { 250, "2.0.0", "OK", 0, 0 },
	[REPLY_LOCALERR] = { 451, "4.3.0",
	    "Local error, try again later", 0, 0 },
	[REPLY_NOSPACE] = { 452, "4.3.1",
	    "Insufficient system storage, try again later", 0, 0 },
	[REPLY_FROM] = { 550, "5.7.1",
	    "Message must have one From field with one mailbox", 0, 1 },
	[REPLY_REPEATED] = { 550, "5.7.1",
	    "Message must not repeat the header field", 0, 1 },
	[REPLY_AUTHFAIL] = { 550, "5.7.26",
	    "Sender authentication below the required level", 0, 1 },
	[REPLY_AUTHTEMP] = { 451, "4.4.3",
	    "Sender authentication failed temporarily (DNS), "
	    "try again later", 0, 0 },
	/* our key or URL is wrong, not the message: never FIRM's text */
	[REPLY_FIRM_CONFIG] = { 451, "4.3.5",
	    "FIRM API configuration error, try again later", 0, 0 },
	[REPLY_FIRM_TOOBIG] = { 552, "5.3.4",
	    "Message too large for FIRM", 0, 1 },
};

/*
 * Reply r from the table, with arg after its text, as the line sent:
 * CRLF-terminated in line (cut to fit, CRLF kept; len >= 3).  With
 * soft (reply_softened()), a 5xx is sent as its 4xx: 5.x.y as 4.x.y.
 * Its length, or -1.
 */
int
reply_line(enum reply r, int soft, const char *arg, char *line, size_t len)
{
	const struct reply_entry *e = &replies[r];
	int		 n;

	soft = soft && reply_softened(r, 1);
	n = snprintf(line, len, "%d%s%s%s%s%s%s%s\r\n",
	    soft ? e->code - 100 : e->code,
	    e->enh ? " " : "", e->enh && soft ? "4" : "",
	    e->enh ? e->enh + (soft ? 1 : 0) : "",
	    e->text[0] ? " " : "", e->text,
	    arg ? " " : "", arg ? arg : "");
	if (n < 0)
		return -1;
	if ((size_t)n >= len) {
		n = (int)len - 1;
		line[n - 2] = '\r';
		line[n - 1] = '\n';
	}
	return n;
}

/*
 * 1 when --soft-bounce (soft_bounce) sends reply r as its 4xx: a 5xx
 * refusal of the sender (MAIL), a recipient (RCPT) or the message (end
 * of data, BDAT); never a reply about the dialogue itself (syntax,
 * sequence, parameters, AUTH, STARTTLS required).
 */
int
reply_softened(enum reply r, int soft_bounce)
{
	return soft_bounce && replies[r].refusal && replies[r].code >= 500 &&
	    replies[r].code < 600 && replies[r].enh != NULL &&
	    replies[r].enh[0] == '5';
}

/* The SMTP code of reply r (also the metrics' labels); -1 if none. */
int
reply_code(int r)
{
	if (r < 0 || r >= REPLY_COUNT)
		return -1;
	return replies[r].code;
}

/* 1 when reply r counts toward --max-errors. */
int
reply_is_error(enum reply r)
{
	return replies[r].error;
}
