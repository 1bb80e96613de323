/*
 * Small helpers shared by every process.
 */

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "smtpd.h"

/* Fill buf with len - 1 random lower-case hex digits and a NUL. */
void
random_hex(char *buf, size_t len)
{
	static const char	 hex[] = "0123456789abcdef";
	uint8_t			 rnd[32];
	size_t			 i, n;

	if (len == 0)
		return;
	n = len - 1;
	if (n > sizeof(rnd) * 2)
		n = sizeof(rnd) * 2;
	arc4random_buf(rnd, (n + 1) / 2);
	for (i = 0; i < n; i++)
		buf[i] = hex[(rnd[i / 2] >> ((i & 1) ? 0 : 4)) & 0xf];
	buf[n] = '\0';
}

/* Write all of buf to a blocking descriptor; 0 on success, -1 on error. */
int
fd_write_all(int fd, const void *buf, size_t len)
{
	const char	*p = buf;
	ssize_t		 n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}
