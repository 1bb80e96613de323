/*
 * libFuzzer target for the ban lists (make tests/fuzz/fuzz_banlist): what
 * FIRM's two lists could hold, parsed, published and looked up.  The
 * first octet chooses the mode: bits 0-1 the rest as a JSON answer for
 * networks (banlist_parse(), key "banned_subnets") or for senders (key
 * "blocked_emails"), or as lines, each a network entry
 * (banlist_add_net()), or each a sender entry when it has an '@'
 * (banlist_add_sender()); bit 2 a log line per bad entry (to
 * /dev/null); bit 3 a table too small for most sets.
 *
 * Every entry is also read here, on its own, as banlist.c promises to
 * read it: an address or address/prefix (digits only, at most 32 or
 * 128; host bits cleared; an IPv4-mapped IPv6 network of /96 or longer
 * is IPv4; at most 53 octets, banlist.c's buffer), a sender
 * "local@domain" or "@domain" of printable octets without space, at
 * most 256, kept with its domain in lower case.  Whatever the input:
 * banlist_parse() returns what its comment says (-1 for a document
 * that is not such a list, or a non-empty list of bad entries only,
 * else the list's length); the set holds exactly the entries read as
 * good, and counts the bad ones; published, the table holds as many
 * ranges as the entries make once sorted and merged, and the distinct
 * senders; a lookup of the first, last and a middle address of every
 * network says banned, and of every address tried (each network's
 * neighbours, addresses from the input, IPv4 also as IPv4-mapped IPv6)
 * says what a scan of the entries says; every sender entry blocks
 * itself (an "@domain" entry any sender at it) in any case of its
 * domain, and every line tried as a sender is blocked exactly when a
 * scan says so.  A table too small keeps the last one.
 * Any breach aborts, so that libFuzzer keeps the input.
 */

#include <sys/types.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <ctype.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "../../smtpd.h"

#define FUZZ_INPUT_MAX	(1024 * 1024)	/* longer inputs are let be */
#define FUZZ_HALF	(32 * FUZZ_INPUT_MAX)	/* the table: room for any */
#define FUZZ_HALF_SMALL	2048		/* another: room for a few */
#define FUZZ_ENTRY_MAX	(INET6_ADDRSTRLEN + 8 - 1)	/* banlist.c's */
#define FUZZ_PROBES	16		/* addresses from the input */
/* the harness's own reading is not what libFuzzer should explore */
#define FUZZ_NOCOV	__attribute__((no_sanitize("coverage")))

int		 LLVMFuzzerInitialize(int *, char ***);
int		 LLVMFuzzerTestOneInput(const uint8_t *, size_t);

struct w128 {
	uint64_t	 hi;
	uint64_t	 lo;
};

/* A network as read here: IPv4 in the low 32 bits of lo. */
struct fnet {
	int		 v4;
	struct w128	 lo;
	struct w128	 hi;
};

struct fuzz_want {
	struct fnet	*nets;
	size_t		 nnets;
	char		**senders;	/* normalised */
	size_t		 nsenders;
	size_t		 skipped;
	size_t		 cap;
	size_t		 scap;
};

static struct banlist_map *fuzz_map;
static struct banlist_map *fuzz_small;

static int	 w128_cmp(const struct w128 *, const struct w128 *);
static void	 w128_add(struct w128 *, int);
static int	 fuzz_net_read(const char *, struct fnet *);
static int	 fuzz_sender_norm(const char *, char *, size_t, int);
static void	 fuzz_want_entry(struct fuzz_want *, const char *, int);
static void	 fuzz_want_free(struct fuzz_want *);
static int	 fuzz_cmp_net(const void *, const void *);
static int	 fuzz_cmp_str(const void *, const void *);
static void	 fuzz_merged(const struct fuzz_want *, size_t *, size_t *,
		    size_t *);
static void	 fuzz_addr_probe(const struct fuzz_want *, int,
		    const struct w128 *, int);
static void	 fuzz_sender_probe(const struct fuzz_want *, const char *);
static void	 fuzz_check_table(const struct fuzz_want *, const uint8_t *,
		    size_t);

static int FUZZ_NOCOV
w128_cmp(const struct w128 *a, const struct w128 *b)
{
	if (a->hi != b->hi)
		return a->hi < b->hi ? -1 : 1;
	if (a->lo != b->lo)
		return a->lo < b->lo ? -1 : 1;
	return 0;
}

/* a + d, d = 1 or -1, wrapping */
static void FUZZ_NOCOV
w128_add(struct w128 *a, int d)
{
	if (d > 0) {
		if (++a->lo == 0)
			a->hi++;
	} else if (a->lo-- == 0)
		a->hi--;
}

/* An entry as banlist.c promises to read it: 0, or -1. */
static int FUZZ_NOCOV
fuzz_net_read(const char *s, struct fnet *n)
{
	char		 buf[FUZZ_ENTRY_MAX + 1], *slash;
	uint8_t		 a[16];
	unsigned long	 len = 0;
	size_t		 i;
	int		 max, bits;

	if (strlen(s) > FUZZ_ENTRY_MAX || s[0] == '\0')
		return -1;
	memcpy(buf, s, strlen(s) + 1);
	if ((slash = strchr(buf, '/')) != NULL)
		*slash++ = '\0';
	memset(a, 0, sizeof(a));
	if (inet_pton(AF_INET, buf, a + 12) == 1) {
		n->v4 = 1;
		max = 32;
	} else if (inet_pton(AF_INET6, buf, a) == 1) {
		n->v4 = 0;
		max = 128;
	} else
		return -1;
	if (slash == NULL)
		len = (unsigned long)max;
	else {
		if (*slash == '\0')
			return -1;
		for (i = 0; slash[i] != '\0'; i++) {
			if (slash[i] < '0' || slash[i] > '9')
				return -1;
			len = len * 10 + (unsigned long)(slash[i] - '0');
			if (len > (unsigned long)max)
				return -1;
		}
	}
	if (!n->v4 && IN6_IS_ADDR_V4MAPPED((struct in6_addr *)a) &&
	    len >= 96) {
		n->v4 = 1;
		len -= 96;
	}
	memset(&n->lo, 0, sizeof(n->lo));
	for (i = n->v4 ? 12 : 0; i < 16; i++) {
		if (i < 8)
			n->lo.hi = n->lo.hi << 8 | a[i];
		else
			n->lo.lo = n->lo.lo << 8 | a[i];
	}
	/* clear the host bits; hi sets them */
	n->hi = n->lo;
	bits = (n->v4 ? 32 : 128) - (int)len;
	for (i = 0; i < (size_t)bits; i++) {
		if (i < 64) {
			n->lo.lo &= ~(1ULL << i);
			n->hi.lo |= 1ULL << i;
		} else {
			n->lo.hi &= ~(1ULL << (i - 64));
			n->hi.hi |= 1ULL << (i - 64);
		}
	}
	return 0;
}

/*
 * A sender as banlist.c promises to keep it: "local@domain" (or, for
 * an entry, "@domain"), the domain in lower case.  0, or -1.
 */
static int FUZZ_NOCOV
fuzz_sender_norm(const char *s, char *out, size_t outlen, int entry)
{
	const char	*at = strrchr(s, '@');
	size_t		 i;

	if (at == NULL || at[1] == '\0' || (at == s && !entry) ||
	    strlen(s) > SMTP_PATH_MAX || strlen(s) >= outlen)
		return -1;
	for (i = 0; entry && s[i] != '\0'; i++)
		if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
			return -1;
	for (i = 0; s[i] != '\0'; i++)
		out[i] = s + i > at && s[i] >= 'A' && s[i] <= 'Z' ?
		    (char)(s[i] - 'A' + 'a') : s[i];
	out[i] = '\0';
	return 0;
}

static void FUZZ_NOCOV
fuzz_want_entry(struct fuzz_want *w, const char *s, int sender)
{
	char	 norm[SMTP_PATH_MAX + 1];

	if (sender) {
		if (fuzz_sender_norm(s, norm, sizeof(norm), 1) == -1) {
			w->skipped++;
			return;
		}
		if (w->nsenders == w->scap) {
			w->scap = w->scap ? w->scap * 2 : 64;
			if ((w->senders = reallocarray(w->senders, w->scap,
			    sizeof(char *))) == NULL)
				abort();
		}
		if ((w->senders[w->nsenders++] = strdup(norm)) == NULL)
			abort();
		return;
	}
	if (w->nnets == w->cap) {
		w->cap = w->cap ? w->cap * 2 : 64;
		if ((w->nets = reallocarray(w->nets, w->cap,
		    sizeof(struct fnet))) == NULL)
			abort();
	}
	if (fuzz_net_read(s, &w->nets[w->nnets]) == -1)
		w->skipped++;
	else
		w->nnets++;
}

static void FUZZ_NOCOV
fuzz_want_free(struct fuzz_want *w)
{
	size_t	 i;

	for (i = 0; i < w->nsenders; i++)
		free(w->senders[i]);
	free(w->senders);
	free(w->nets);
}

static int FUZZ_NOCOV
fuzz_cmp_net(const void *a, const void *b)
{
	const struct fnet	*x = a, *y = b;

	if (x->v4 != y->v4)
		return x->v4 ? -1 : 1;
	return w128_cmp(&x->lo, &y->lo);
}

static int FUZZ_NOCOV
fuzz_cmp_str(const void *a, const void *b)
{
	return strcmp(*(char * const *)a, *(char * const *)b);
}

/* Ranges once merged (adjacent ones too), distinct senders: slowly. */
static void FUZZ_NOCOV
fuzz_merged(const struct fuzz_want *w, size_t *n4, size_t *n6, size_t *ns)
{
	struct fnet	*s;
	struct w128	 end = { 0, 0 }, next;
	char		**ss;
	size_t		 i;
	int		 v4 = -1;

	*n4 = *n6 = *ns = 0;
	if (w->nnets > 0) {
		if ((s = reallocarray(NULL, w->nnets, sizeof(*s))) == NULL)
			abort();
		memcpy(s, w->nets, w->nnets * sizeof(*s));
		qsort(s, w->nnets, sizeof(*s), fuzz_cmp_net);
		for (i = 0; i < w->nnets; i++) {
			next = end;
			w128_add(&next, 1);
			/* a new range: another family, or a gap after end */
			if (s[i].v4 != v4 || ((s[i].v4 ? end.lo != 0xffffffff :
			    (end.hi != UINT64_MAX || end.lo != UINT64_MAX)) &&
			    w128_cmp(&s[i].lo, &next) > 0)) {
				*(s[i].v4 ? n4 : n6) += 1;
				end = s[i].hi;
				v4 = s[i].v4;
			} else if (w128_cmp(&s[i].hi, &end) > 0)
				end = s[i].hi;
		}
		free(s);
	}
	if (w->nsenders > 0) {
		if ((ss = reallocarray(NULL, w->nsenders, sizeof(*ss))) ==
		    NULL)
			abort();
		memcpy(ss, w->senders, w->nsenders * sizeof(*ss));
		qsort(ss, w->nsenders, sizeof(*ss), fuzz_cmp_str);
		for (i = 0; i < w->nsenders; i++)
			if (i == 0 || strcmp(ss[i], ss[i - 1]) != 0)
				(*ns)++;
		free(ss);
	}
}

/* One address: the table against a scan (or, banned, "banned"). */
static void FUZZ_NOCOV
fuzz_addr_probe(const struct fuzz_want *w, int v4, const struct w128 *a,
    int banned)
{
	struct sockaddr_storage	 ss;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&ss;
	size_t			 i;
	uint32_t		 a4;
	int			 want = 0, k;

	if (v4 && (a->hi != 0 || a->lo > 0xffffffff))
		return;		/* wrapped past the family's last address */
	for (i = 0; i < w->nnets && !want; i++)
		if (w->nets[i].v4 == v4 && w128_cmp(&w->nets[i].lo, a) <= 0 &&
		    w128_cmp(a, &w->nets[i].hi) <= 0)
			want = 1;
	if (banned && !want)
		abort();	/* the scan itself is wrong */
	memset(&ss, 0, sizeof(ss));
	if (v4) {
		a4 = htonl((uint32_t)a->lo);
		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, &a4, 4);
		if (banlist_lookup_addr(fuzz_map, &ss) != want)
			abort();
		memset(&ss, 0, sizeof(ss));
		sin6->sin6_family = AF_INET6;
		sin6->sin6_addr.s6_addr[10] = 0xff;
		sin6->sin6_addr.s6_addr[11] = 0xff;
		memcpy(&sin6->sin6_addr.s6_addr[12], &a4, 4);
	} else {
		sin6->sin6_family = AF_INET6;
		for (k = 0; k < 8; k++) {
			sin6->sin6_addr.s6_addr[k] =
			    (uint8_t)(a->hi >> (56 - 8 * k));
			sin6->sin6_addr.s6_addr[k + 8] =
			    (uint8_t)(a->lo >> (56 - 8 * k));
		}
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
			return;		/* looked up as the IPv4 it is */
	}
	if (banlist_lookup_addr(fuzz_map, &ss) != want)
		abort();
}

/* One sender: the table against a scan. */
static void FUZZ_NOCOV
fuzz_sender_probe(const struct fuzz_want *w, const char *s)
{
	char		 norm[SMTP_PATH_MAX + 1];
	const char	*at;
	size_t		 i;
	int		 want = 0;

	if (fuzz_sender_norm(s, norm, sizeof(norm), 0) == 0) {
		at = strrchr(norm, '@');
		for (i = 0; i < w->nsenders && !want; i++)
			want = strcmp(w->senders[i], norm) == 0 ||
			    strcmp(w->senders[i], at) == 0;
	}
	if (banlist_lookup_sender(fuzz_map, s) != want)
		abort();
}

/* The published table against what the entries make. */
static void FUZZ_NOCOV
fuzz_check_table(const struct fuzz_want *w, const uint8_t *data,
    size_t size)
{
	struct w128	 a, mid;
	unsigned __int128 x;
	size_t		 i, k, n4, n6, ns, t4, t6, ts, used;
	char		 sender[SMTP_PATH_MAX + 16], *up;

	fuzz_merged(w, &n4, &n6, &ns);
	banlist_counts(fuzz_map, &t4, &t6, &ts, &used);
	if (t4 != n4 || t6 != n6 || ts != ns)
		abort();
	for (i = 0; i < w->nnets; i++) {
		const struct fnet *n = &w->nets[i];

		fuzz_addr_probe(w, n->v4, &n->lo, 1);
		fuzz_addr_probe(w, n->v4, &n->hi, 1);
		/* the middle one */
		x = ((unsigned __int128)n->lo.hi << 64 | n->lo.lo) / 2 +
		    ((unsigned __int128)n->hi.hi << 64 | n->hi.lo) / 2 +
		    (n->lo.lo & n->hi.lo & 1);
		mid.hi = (uint64_t)(x >> 64);
		mid.lo = (uint64_t)x;
		fuzz_addr_probe(w, n->v4, &mid, 1);
		a = n->lo;
		w128_add(&a, -1);
		fuzz_addr_probe(w, n->v4, &a, 0);
		a = n->hi;
		w128_add(&a, 1);
		fuzz_addr_probe(w, n->v4, &a, 0);
	}
	/* addresses from the input's own octets */
	for (k = 0; k < FUZZ_PROBES && size >= 16; k++) {
		const uint8_t *p = data + (k * 7919) % (size - 15);

		memcpy(&a.hi, p, 8);
		memcpy(&a.lo, p + 8, 8);
		fuzz_addr_probe(w, 0, &a, 0);
		a.hi = 0;
		a.lo &= 0xffffffff;
		fuzz_addr_probe(w, 1, &a, 0);
	}
	for (i = 0; i < w->nsenders; i++) {
		/* the entry blocks itself, whatever case its domain is in */
		if (snprintf(sender, sizeof(sender), "%s%s",
		    strrchr(w->senders[i], '@') == w->senders[i] ? "x" : "",
		    w->senders[i]) >= (int)sizeof(sender))
			abort();
		if (strlen(sender) <= SMTP_PATH_MAX) {
			if (!banlist_lookup_sender(fuzz_map, sender))
				abort();
			for (up = strrchr(sender, '@'); *up != '\0'; up++)
				*up = (char)toupper((unsigned char)*up);
			if (!banlist_lookup_sender(fuzz_map, sender))
				abort();
		}
		fuzz_sender_probe(w, w->senders[i]);
	}
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	int	 fd;

	(void)argc;
	(void)argv;
	if ((fd = open("/dev/null", O_WRONLY | O_CLOEXEC)) == -1)
		abort();
	log_init(fd, 0);
	if ((fuzz_map = banlist_map(-1, banlist_region_size(FUZZ_HALF),
	    1)) == NULL || (fuzz_small = banlist_map(-1,
	    banlist_region_size(FUZZ_HALF_SMALL), 1)) == NULL)
		abort();
	banlist_init(fuzz_map);
	banlist_init(fuzz_small);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct banlist_set	 set;
	struct fuzz_want	 w;
	json_t			*root, *arr, *v;
	const char		*key, *s;
	char			*text, *line, *next;
	size_t			 i, t4, t6, ts, used, n4, n6, ns;
	int			 mode, r, want, senders;

	if (size < 1 || size > FUZZ_INPUT_MAX)
		return 0;
	mode = data[0] & 3;
	senders = mode == 1;
	key = senders ? "blocked_emails" : "banned_subnets";
	/* a heap copy of the rest, NUL-terminated for the lines */
	if ((text = malloc(size)) == NULL)
		abort();
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';
	banlist_set_init(&set);
	set.quiet = !(data[0] & 4);
	memset(&w, 0, sizeof(w));

	if (mode < 2) {
		r = banlist_parse(text, size - 1, key, senders, &set);
		want = -1;
		root = json_loadb(text, size - 1, 0, NULL);
		arr = json_is_object(root) ? json_object_get(root, key) : root;
		if (json_is_array(arr)) {
			json_array_foreach(arr, i, v) {
				if ((s = json_string_value(v)) == NULL)
					w.skipped++;
				else
					fuzz_want_entry(&w, s, senders);
			}
			want = json_array_size(arr) > 0 &&
			    w.skipped == json_array_size(arr) ? -1 :
			    (int)json_array_size(arr);
		}
		json_decref(root);
		if (r != want)
			abort();
	} else {
		for (line = text; line != NULL; line = next) {
			if ((next = strchr(line, '\n')) != NULL)
				*next++ = '\0';
			senders = mode == 3 && strchr(line, '@') != NULL;
			r = senders ? banlist_add_sender(&set, line) :
			    banlist_add_net(&set, line);
			if (r != 0)
				abort();
			fuzz_want_entry(&w, line, senders);
		}
	}
	if (set.nv4 + set.nv6 != w.nnets || set.nsenders != w.nsenders ||
	    set.skipped != w.skipped)
		abort();

	/* a table too small keeps the last one */
	if (data[0] & 8) {
		fuzz_merged(&w, &n4, &n6, &ns);
		banlist_counts(fuzz_small, &t4, &t6, &ts, &used);
		if (banlist_publish(fuzz_small, &set) == -1) {
			n4 = t4;
			n6 = t6;
			ns = ts;
		}
		banlist_counts(fuzz_small, &t4, &t6, &ts, &used);
		if (t4 != n4 || t6 != n6 || ts != ns)
			abort();
	}

	/* the table, the last input's replaced */
	if (banlist_publish(fuzz_map, &set) == -1)
		abort();	/* FUZZ_HALF holds any input */
	fuzz_merged(&w, &n4, &n6, &ns);
	banlist_counts(fuzz_map, &t4, &t6, &ts, &used);
	if (t4 != n4 || t6 != n6 || ts != ns)
		abort();
	/* again, into the other half, from the set sorted and merged */
	if (banlist_publish(fuzz_map, &set) == -1)
		abort();
	fuzz_check_table(&w, data, size);

	/* every line, as a client's sender */
	if (mode >= 2)
		for (line = text; line < text + size - 1;
		    line += strlen(line) + 1)
			fuzz_sender_probe(&w, line);

	banlist_set_free(&set);
	fuzz_want_free(&w);
	free(text);
	return 0;
}
