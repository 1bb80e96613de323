/*
 * libFuzzer target for the worker-relay channel (make fuzz): the bytes
 * a worker taken over could send the relay.  The input is cut into
 * messages the way the relay reads them: chan_decode() on what has
 * arrived, then the body of a CHAN_INBOUND checked by
 * chan_inbound_check(), and of a CHAN_DNS_QUERY by dns_query_check().
 * Each body is also read as the relay's DNS answer would be, by the
 * worker's dns_answer_decode().  Whatever the input, a decoded length
 * stays within what arrived and the limit, a decoded header has a
 * known type and version, a checked payload lies inside its message, a
 * checked DNS name is a NUL-terminated name of the allowed length, and
 * decoded records lie inside the answer; and the body read as one
 * record's wire data (dns_rdata_decode(), the relay's) fits its buffer.  Any breach aborts, so that
 * libFuzzer keeps the input.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../smtpd.h"

#define FUZZ_MAXBODY	65536

int		 LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct chan_hdr		 h;
	struct chan_inbound	 in;
	const char		*json;
	size_t			 off = 0, jsonlen, avail;
	ssize_t			 n;
	uint8_t			*copy;
	static struct dns_answer ans;
	char			 name[DNS_NAME_MAX + 1];
	size_t			 i;
	int			 type;

	/* the relay's buffer is its own heap copy: so is ours, to the byte */
	if ((copy = malloc(size ? size : 1)) == NULL)
		return 0;
	memcpy(copy, data, size);
	while (off < size) {
		/* as if the bytes arrived one read at a time */
		for (avail = 1; avail <= size - off; avail++) {
			n = chan_decode(copy + off, avail, FUZZ_MAXBODY, &h);
			if (n != 0)
				break;
		}
		if (avail > size - off)
			break;			/* incomplete: wait for more */
		if (n == -1)
			break;			/* the relay closes the channel */
		if ((size_t)n > avail || (size_t)n < sizeof(h) ||
		    h.version != CHAN_VERSION || h.type == 0 ||
		    h.type >= CHAN_TYPE_MAX || h.len > FUZZ_MAXBODY ||
		    (size_t)n != sizeof(h) + h.len)
			abort();
		if (h.type == CHAN_INBOUND && chan_inbound_check(copy + off +
		    sizeof(h), h.len, &in, &json, &jsonlen) == 0) {
			if (json < (const char *)copy + off + sizeof(h) ||
			    json + jsonlen != (const char *)copy + off + n ||
			    in.session[SESSION_ID_LEN] != '\0' ||
			    in.msgid[MSG_ID_LEN] != '\0' ||
			    in.idem[IDEM_KEY_LEN] != '\0')
				abort();
		}
		if (h.type == CHAN_DNS_QUERY && dns_query_check(copy + off +
		    sizeof(h), h.len, &type, name, sizeof(name)) == 0) {
			if (strlen(name) == 0 || strlen(name) > DNS_NAME_MAX ||
			    strlen(name) != h.len - 4)
				abort();
		}
		if (h.len <= sizeof(ans.buf) && dns_answer_decode(copy + off +
		    sizeof(h), h.len, &ans) == 0) {
			if (ans.nrr > DNS_RR_MAX || ans.status > DNS_TEMPFAIL)
				abort();
			for (i = 0; i < ans.nrr; i++)
				if (ans.rr[i].data < ans.buf || ans.rr[i].data +
				    ans.rr[i].len > ans.buf + h.len)
					abort();
		}
		if (h.len >= 1) {
			/* the body as a record's data of type (first octet) */
			static uint8_t	 rec[1024 + 256];
			static const int types[] = { DNS_T_A, DNS_T_AAAA,
			    DNS_T_TXT, DNS_T_MX, DNS_T_PTR };
			const uint8_t	*d = copy + off + sizeof(h);
			size_t		 r;

			r = dns_rdata_decode(types[d[0] % 5], d + 1, h.len - 1,
			    rec, sizeof(rec));
			if (r != (size_t)-1 && r != (size_t)-2 &&
			    r > sizeof(rec))
				abort();
		}
		off += (size_t)n;
	}
	free(copy);
	return 0;
}
