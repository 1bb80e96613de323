/*
 * A message being received: the data reader and the buffer it fills.
 * Bytes in, a count consumed out, no socket: the session reads, this
 * file takes the octets of DATA (dot-stuffed, ended by CRLF.CRLF) or
 * of BDAT's chunks (raw) into the message after our Received: header,
 * and counts what makes the message refused (a line over
 * SMTP_TEXT_LINE_MAX, the message over its limit, a bare CR or LF).
 */

#include <sys/types.h>

#include <stdlib.h>
#include <string.h>

#include "smtpd.h"

/* The data reader's states, see message_feed(). */
enum dstate {
	D_BOL = 0,	/* at a line start */
	D_DOT,		/* saw '.' at a line start */
	D_DOTCR,	/* saw ".\r" at a line start */
	D_TEXT,		/* inside a line */
	D_CR,		/* saw '\r' inside a line */
};

static void	message_put(struct message *, const char *, size_t);
static void	message_line_add(struct message *, size_t);
static void	message_line_end(struct message *, int);

/* Room for want octets in the message's buffer: 0, or -1. */
int
message_alloc(struct message *m, size_t want)
{
	size_t	 cap;
	char	*p;

	if (want <= m->cap)
		return 0;
	cap = m->cap ? m->cap : 16384;
	while (cap < want)
		cap *= 2;
	if ((p = realloc(m->buf, cap)) == NULL)
		return -1;
	m->buf = p;
	m->cap = cap;
	return 0;
}

/* A new message's data, at most limit octets of it kept. */
void
message_start(struct message *m, size_t limit)
{
	m->limit = limit;
	m->datalen = 0;
	m->bare_cr = m->bare_lf = 0;
	m->long_line = m->too_big = m->error = 0;
	m->dstate = D_BOL;
	m->raw = 0;
	m->crlf_start = 1;	/* data starts after DATA's CRLF */
	m->linelen = 0;
}

static void
message_put(struct message *m, const char *p, size_t n)
{
	m->datalen += n;
	if (m->too_big || m->error)
		return;
	if (m->datalen > m->limit) {
		m->too_big = 1;
		return;
	}
	if (message_alloc(m, m->len + n) == -1) {
		m->error = 1;
		return;
	}
	memcpy(m->buf + m->len, p, n);
	m->len += n;
}

static void
message_line_add(struct message *m, size_t n)
{
	m->linelen += n;
	if (m->linelen > SMTP_TEXT_LINE_MAX)
		m->long_line = 1;
}

static void
message_line_end(struct message *m, int crlf)
{
	message_put(m, "\r\n", 2);
	m->dstate = D_BOL;
	m->crlf_start = crlf;
	m->linelen = 0;
}

/*
 * Feed data octets to the message.  A small state machine that knows
 * CR, LF and CRLF apart: a bare LF ends a line (stored as CRLF) but
 * never ends data, a bare CR is kept as it is, a leading dot is
 * removed, and data ends only at a "." line that both started and
 * ended with CRLF.  Returns the octets consumed; *done is set once the
 * end of data has been consumed, and the rest of buf is left alone.
 */
size_t
message_feed(struct message *m, const char *buf, size_t len, int *done)
{
	size_t	 i = 0, j;

	*done = 0;
	while (i < len) {
		switch (m->dstate) {
		case D_BOL:
			if (buf[i] == '.' && !m->raw) {
				m->dstate = D_DOT;
				message_line_add(m, 1);
				i++;
			} else
				m->dstate = D_TEXT;
			break;
		case D_TEXT:
			for (j = i; j < len && buf[j] != '\r' &&
			    buf[j] != '\n'; j++)
				;
			if (j > i) {
				message_put(m, buf + i, j - i);
				message_line_add(m, j - i);
				i = j;
			} else if (buf[i] == '\r') {
				m->dstate = D_CR;
				message_line_add(m, 1);
				i++;
			} else {
				m->bare_lf++;
				message_line_add(m, 1);
				message_line_end(m, 0);
				i++;
			}
			break;
		case D_CR:
			if (buf[i] == '\n') {
				message_line_add(m, 1);
				message_line_end(m, 1);
				i++;
			} else {
				/* a bare CR stays; look at buf[i] again */
				m->bare_cr++;
				message_put(m, "\r", 1);
				m->dstate = D_TEXT;
			}
			break;
		case D_DOT:
			if (buf[i] == '\r') {
				m->dstate = D_DOTCR;
				message_line_add(m, 1);
				i++;
			} else
				m->dstate = D_TEXT;	/* dot dropped */
			break;
		case D_DOTCR:
			if (buf[i] == '\n') {
				i++;
				if (m->crlf_start) {
					*done = 1;
					return i;
				}
				/* "." line begun by a bare LF: not the end */
				message_line_add(m, 1);
				message_line_end(m, 1);
			} else {
				m->bare_cr++;
				message_put(m, "\r", 1);
				m->dstate = D_TEXT;
			}
			break;
		}
	}
	return i;
}

/*
 * The end of BDAT's last chunk: a CR that ended it was a bare CR, as
 * no LF follows it now.
 */
void
message_last_chunk(struct message *m)
{
	if (m->dstate == D_CR) {
		m->bare_cr++;
		message_put(m, "\r", 1);
	}
}

/* Between transactions: nothing of the last message stays readable. */
void
message_reset(struct message *m)
{
	if (m->buf != NULL)
		explicit_bzero(m->buf, m->len);
	m->len = 0;
	m->hdrlen = 0;
	m->datalen = 0;
	m->bare_cr = 0;
	m->bare_lf = 0;
	m->long_line = 0;
	m->too_big = 0;
}
