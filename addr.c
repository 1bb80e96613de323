/*
 * The SMTP path parser (RFC 5321 4.1.2): MAIL FROM and RCPT TO
 * arguments, and the -r flags checked with the same rules.  Pure
 * functions on bytes, shared by the dialogue and the flag parser.
 */

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "smtpd.h"

static int	addr_parse_mailbox(const char *, const char **, char *,
		    size_t);

/*
 * Parse an RFC 5321 Mailbox (Local-part "@" Domain) starting at p.
 * The local part is a dot-string or a quoted string; octets >= 0x80
 * are taken as UTF-8 (the caller checks SMTPUTF8).  On success *end
 * points past it and out holds it; -1 on a syntax error.
 */
static int
addr_parse_mailbox(const char *p, const char **end, char *out,
    size_t outsz)
{
	static const char	 atext[] = "!#$%&'*+-/=?^_`{|}~";
	const char		*start = p, *at, *label;
	size_t			 len;

	if (*p == '"') {
		for (p++; *p != '"'; p++) {
			if (*p == '\\') {
				p++;
				if (*p < 32 || *p > 126)
					return -1;
			} else if (*p == '\0' || ((unsigned char)*p < 128 &&
			    (*p < 32 || *p > 126)))
				return -1;
		}
		p++;
	} else {
		for (;;) {
			const char *atom = p;

			while (isalnum((unsigned char)*p) ||
			    (unsigned char)*p >= 0x80 ||
			    (*p != '\0' && strchr(atext, *p) != NULL))
				p++;
			if (p == atom)
				return -1;
			if (*p != '.')
				break;
			p++;
		}
	}
	if ((size_t)(p - start) > SMTP_LOCAL_MAX || *p != '@')
		return -1;
	at = p++;
	if (*p == '[') {
		/* address literal: no nesting, printable only */
		for (p++; *p != ']'; p++)
			if (*p == '\0' || *p == '[' || *p == '\\' ||
			    *p <= ' ' || *p == 0x7f)
				return -1;
		p++;
	} else {
		for (;;) {
			label = p;
			while (isalnum((unsigned char)*p) || *p == '-' ||
			    (unsigned char)*p >= 0x80)
				p++;
			if (p == label || *label == '-' || p[-1] == '-' ||
			    p - label > 63)
				return -1;
			if (*p != '.')
				break;
			p++;
		}
	}
	if ((size_t)(p - at - 1) > SMTP_DOMAIN_MAX)
		return -1;
	len = (size_t)(p - start);
	if (len >= outsz || len > SMTP_PATH_MAX)
		return -1;
	memcpy(out, start, len);
	out[len] = '\0';
	*end = p;
	return 0;
}

/*
 * Parse a path "<mailbox>", "<>" (when allow_null) or a source route
 * "<@a,@b:mailbox>" (route ignored) into out.  *rest points past '>'.
 * Returns 0, or -1 on a syntax error.
 */
int
addr_parse_path(const char *p, char *out, size_t outsz,
    const char **rest, int allow_null)
{
	const char	*end;

	if (*p++ != '<')
		return -1;
	if (*p == '>') {
		if (!allow_null || outsz == 0)
			return -1;
		out[0] = '\0';
		*rest = p + 1;
		return 0;
	}
	if (*p == '@') {
		/* A-d-l: "@domain" *( "," "@domain" ) ":" */
		p = strchr(p, ':');
		if (p == NULL)
			return -1;
		p++;
	}
	if (addr_parse_mailbox(p, &end, out, outsz) == -1)
		return -1;
	if (*end != '>')
		return -1;
	*rest = end + 1;
	return 0;
}

/*
 * The From field's value (unfolded, not RFC 2047-decoded): 1 and its
 * one mailbox in out, 0 when it holds none or cannot be parsed, -1 when
 * it holds more than one.  Stub: filled in by the From work.
 */
int
addr_parse_from(const char *v, size_t len, char *out, size_t outsz)
{
	const char	*a, *b;

	/* interim: "<mailbox>" or a bare mailbox */
	if (memchr(v, '\0', len) != NULL)
		return 0;
	if ((a = strchr(v, '<')) != NULL) {
		if ((b = strchr(a, '>')) == NULL)
			return 0;
		a++;
	} else {
		for (a = v; *a == ' ' || *a == '\t'; a++)
			;
		for (b = a; *b != '\0' && *b != ' ' && *b != '\t'; b++)
			;
	}
	if (b == a || (size_t)snprintf(out, outsz, "%.*s", (int)(b - a), a) >=
	    outsz || strchr(out, '@') == NULL)
		return 0;
	return 1;
}
