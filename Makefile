# smtpd: GNU make (gmake on OpenBSD).
#
#   make          install missing build dependencies, build ./smtpd
#   make run      build, then serve 127.0.0.1:2525 into ./spool
#   make test     install missing test dependencies, build, run every test
#   make lint     mandoc -Tlint smtpd.8, and a clang build with -Werror
#                 (and lint-openbsd off OpenBSD)
#   make lint-openbsd  the OpenBSD code compiled as OpenBSD would, here
#   make mime-test    the MIME decoder against tests/mime (in make test)
#   make bench-mime   MIME decoding speed, MB/s (a benchmark)
#   make bench-banlist  ban-list table: publish time, lookups/s,
#                 latency and memory for 1M prefixes (a benchmark)
#   make install  install smtpd, smtpd-relay, smtpd.8 and the rc.d script
#                 (OpenBSD) or the systemd units (Linux) under PREFIX
#                 (/usr/local) and DESTDIR; as root and without DESTDIR,
#                 also the _smtpd user and /var/db/smtpd
#   make uninstall  remove what make install put there (not the user,
#                 not /var/db/smtpd)
#   make test-asan  build smtpd under ASan+UBSan in ./asan and run the
#                 integration suite against it (in make test)
#   make fuzz     libFuzzer on mime_parse, the worker-relay channel's
#                 decoder (DNS questions and answers included), SPF,
#                 DMARC, the From field, the PROXY protocol header, the
#                 MAIL and RCPT paths and parameters, the ban lists and
#                 their table, and whole SMTP sessions (the dialogue,
#                 DATA, BDAT, STARTTLS, against a fake relay),
#                 FUZZ_SECONDS (60) each

# Two programs, as Postfix has several: smtpd (the master and the
# workers it forks: no HTTP client in their image) and smtpd-relay (the
# relay and the ban-list fetcher, which link libcurl).
PROG=		smtpd
RELAY=		smtpd-relay
COMMON_SRCS=	conf.c addr.c banlist.c channel.c cpu.c dns.c log.c metrics.c \
		sandbox.c $(SANDBOX_OS_SRCS) shm.c util.c
SMTPD_SRCS=	smtpd.c worker.c session.c message.c reply.c payload.c mime.c \
		tls.c auth.c alabel.c spf.c dmarc.c health.c proxy.c dkimtag.c \
		verifier.c rate.c dnsbl.c
RELAY_SRCS=	relay.c relay_guard.c fetcher.c firm.c probe.c spool.c \
		dnscache.c
SRCS=		$(SMTPD_SRCS) $(RELAY_SRCS) $(COMMON_SRCS)
OBJS=		$(SMTPD_SRCS:.c=.o) $(COMMON_SRCS:.c=.o)
RELAY_OBJS=	$(RELAY_SRCS:.c=.o) $(COMMON_SRCS:.c=.o)
HDRS=		smtpd.h privsep.h sandbox.h relay.h

CC?=		cc
PKG_CONFIG?=	pkg-config
PYTHON?=	/usr/bin/python3

UNAME_S:=	$(shell uname -s)
# The sandbox of this system, as OpenSSH has one sandbox-*.c per
# mechanism; sandbox.c keeps the order both follow.
ifeq ($(UNAME_S),OpenBSD)
SANDBOX_OS_SRCS= sandbox_openbsd.c
else
SANDBOX_OS_SRCS= sandbox_linux.c
endif
PKGS=		libtls libcrypto libsodium jansson opendkim
ifeq ($(UNAME_S),Linux)
PKGS+=		libseccomp libbsd-overlay
endif
RELAY_PKGS=	$(PKGS) libcurl libunbound
# IDNA (alabel.c): the smtpd program and what links its objects, never
# smtpd-relay.
IDN_PKGS=	libidn2

WARNINGS=	-Wall -Wextra -Wstrict-prototypes -Wmissing-prototypes \
		-Wshadow -Wpointer-arith -Wcast-qual -Wformat=2 -Werror
# Recursively expanded: pkg-config runs after `deps` has installed it.
PKG_CFLAGS=	$(shell $(PKG_CONFIG) --cflags $(RELAY_PKGS) $(IDN_PKGS))
PKG_LIBS=	$(shell $(PKG_CONFIG) --libs $(PKGS))
IDN_LIBS=	$(shell $(PKG_CONFIG) --libs $(IDN_PKGS))
RELAY_LIBS=	$(shell $(PKG_CONFIG) --libs $(RELAY_PKGS))
CFLAGS?=	-O2 -g
MULTIARCH:=	$(shell $(CC) -print-multiarch 2>/dev/null)
# Hardening, whatever CFLAGS and LDFLAGS say (tests/test_hardening.py
# checks the binaries): stack canaries, libc's checked string and
# memory functions, a position-independent executable, and a GOT bound
# at start and read-only (full RELRO; forked workers then never write
# it).  FORTIFY needs an optimising build (make FORTIFY= with -O0) and
# is left to CFLAGS that set it themselves (dpkg-buildflags).
HARDEN_CFLAGS=	-fstack-protector-strong -fPIE $(FORTIFY)
HARDEN_LDFLAGS=	-pie -Wl,-z,relro,-z,now
ifeq ($(findstring _FORTIFY_SOURCE,$(CFLAGS) $(CPPFLAGS)),)
FORTIFY?=	-D_FORTIFY_SOURCE=2
endif
ALL_CFLAGS=	$(HARDEN_CFLAGS) $(CFLAGS) $(WARNINGS) -D_GNU_SOURCE \
		$(PKG_CFLAGS) -DGCONV_MULTIARCH='"$(MULTIARCH)"' \
		$(SANDBOX_CFLAGS)
# make SANDBOX_DEBUG=1: a forbidden system call is named, not just fatal
ifdef SANDBOX_DEBUG
SANDBOX_CFLAGS=	-DSANDBOX_TRAP
endif
LDLIBS+=	$(PKG_LIBS) $(IDN_LIBS)

TEST_OBJS=	$(OBJS:.o=.test.o) testhooks.test.o

.PHONY: all deps build run test unit lint lint-openbsd clean mime-test \
	bench-mime fuzz bench-banlist asan test-asan install install-user \
	uninstall

# make install: smtpd-relay must sit beside smtpd (smtpd looks for it in
# the directory of its own executable), so both go to SBINDIR.
PREFIX?=	/usr/local
SBINDIR?=	$(PREFIX)/sbin
ifeq ($(UNAME_S),OpenBSD)
MANDIR?=	$(PREFIX)/man
else
MANDIR?=	$(PREFIX)/share/man
endif
SYSTEMDUNITDIR?= $(PREFIX)/lib/systemd/system
RCDIR?=		/etc/rc.d
UNITS=		smtpd.service smtpd.socket smtpd@.service
INSTALL?=	install
SMTPD_USER=	_smtpd
BANLIST_DIR=	/var/db/smtpd

all: deps
	@$(MAKE) --no-print-directory build

build: $(PROG) $(RELAY)

deps:
	@sh scripts/deps.sh build

$(PROG): $(OBJS)
	$(CC) $(HARDEN_LDFLAGS) $(LDFLAGS) -o $@ $(OBJS) $(LDLIBS)

$(RELAY): $(RELAY_OBJS)
	$(CC) $(HARDEN_LDFLAGS) $(LDFLAGS) -pthread -o $@ $(RELAY_OBJS) $(RELAY_LIBS)

%.o: %.c $(HDRS)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# The test build: the same sources with the XTEST hooks that make a
# sandboxed worker try forbidden things.  Never installed.
$(PROG)-test: $(TEST_OBJS)
	$(CC) $(HARDEN_LDFLAGS) $(LDFLAGS) -o $@ $(TEST_OBJS) $(LDLIBS)

%.test.o: %.c $(HDRS)
	$(CC) $(ALL_CFLAGS) -DSMTPD_TEST_HOOKS -c -o $@ $<

run: all
	@sh scripts/deps.sh run
	./$(PROG) -d -l 127.0.0.1:2525 -H localhost -r verify@localhost \
	    --spool ./spool

# Test programs link every object of smtpd but the one with main().
LIB_OBJS=	$(filter-out smtpd.o,$(OBJS))

tests/unit: tests/unit.c tests/check.h $(LIB_OBJS) $(HDRS)
	$(CC) $(ALL_CFLAGS) -o $@ tests/unit.c $(LIB_OBJS) $(LDLIBS)

unit: tests/unit
	./tests/unit

# The MIME decoder: a corpus test, a benchmark and a fuzz target.
tests/mime_test: tests/mime_test.c $(LIB_OBJS) $(HDRS)
	$(CC) $(ALL_CFLAGS) -o $@ tests/mime_test.c $(LIB_OBJS) $(LDLIBS)

mime-test: tests/mime_test
	./tests/mime_test tests/mime

bench/mime-bench: bench/mime-bench.c mime.o $(HDRS)
	$(CC) $(ALL_CFLAGS) -o $@ bench/mime-bench.c mime.o $(LDLIBS)

bench-mime: bench/mime-bench
	./bench/mime-bench

# The ban-list table: unit tests (in make test) and a benchmark.
tests/banlist_test: tests/banlist_test.c tests/check.h $(LIB_OBJS) $(HDRS)
	$(CC) $(ALL_CFLAGS) -pthread -o $@ tests/banlist_test.c $(LIB_OBJS) \
	    $(LDLIBS)

bench/banlist-bench: bench/banlist-bench.c $(LIB_OBJS) $(HDRS)
	$(CC) $(ALL_CFLAGS) -pthread -o $@ bench/banlist-bench.c \
	    $(LIB_OBJS) $(LDLIBS)

bench-banlist: bench/banlist-bench
	./bench/banlist-bench

FUZZ_SECONDS?=	60
FUZZ_CC?=	clang
FUZZ_CFLAGS=	-g -O1 -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=undefined $(WARNINGS) -D_GNU_SOURCE \
		$(PKG_CFLAGS)
tests/fuzz/fuzz_mime: tests/fuzz/fuzz_mime.c mime.c $(HDRS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ tests/fuzz/fuzz_mime.c mime.c $(PKG_LIBS)

# What a worker taken over could send the relay.
tests/fuzz/fuzz_chan: tests/fuzz/fuzz_chan.c channel.c dns.c $(HDRS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ tests/fuzz/fuzz_chan.c channel.c dns.c \
	    $(PKG_LIBS)

# smtpd-relay's destination guard, linked as smtpd-relay links it.
GUARD_TEST_OBJS= relay_guard.o firm.o $(COMMON_SRCS:.c=.o)
tests/guard_test: tests/guard_test.c tests/check.h $(GUARD_TEST_OBJS) $(HDRS)
	$(CC) $(ALL_CFLAGS) -o $@ tests/guard_test.c $(GUARD_TEST_OBJS) \
	    $(RELAY_LIBS)

# smtpd-relay's seccomp filters, installed as its roles install them.
RELAY_SANDBOX_TEST_OBJS= $(COMMON_SRCS:.c=.o)
tests/relay_sandbox_test: tests/relay_sandbox_test.c tests/check.h \
    $(RELAY_SANDBOX_TEST_OBJS) $(HDRS)
	$(CC) $(ALL_CFLAGS) -o $@ tests/relay_sandbox_test.c \
	    $(RELAY_SANDBOX_TEST_OBJS) $(PKG_LIBS)

# Sender authentication: the RFC 7208 suite and the DMARC and From
# checks, each against a table of DNS answers (no network).
AUTH_TEST_OBJS=	spf.o dmarc.o dns.o addr.o channel.o
tests/spf_test: tests/spf_test.c tests/check.h $(AUTH_TEST_OBJS) $(HDRS)
	$(CC) $(ALL_CFLAGS) -o $@ tests/spf_test.c $(AUTH_TEST_OBJS) $(LDLIBS)

tests/dmarc_test: tests/dmarc_test.c tests/check.h $(AUTH_TEST_OBJS) $(HDRS)
	$(CC) $(ALL_CFLAGS) -o $@ tests/dmarc_test.c $(AUTH_TEST_OBJS) \
	    $(LDLIBS)

# The parsers of sender authentication, each fed hostile bytes.
tests/fuzz/fuzz_spf: tests/fuzz/fuzz_spf.c spf.c dns.c channel.c $(HDRS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ tests/fuzz/fuzz_spf.c spf.c dns.c \
	    channel.c $(PKG_LIBS)

tests/fuzz/fuzz_dmarc: tests/fuzz/fuzz_dmarc.c dmarc.c dns.c channel.c $(HDRS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ tests/fuzz/fuzz_dmarc.c dmarc.c dns.c \
	    channel.c $(PKG_LIBS)

tests/fuzz/fuzz_from: tests/fuzz/fuzz_from.c addr.c $(HDRS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ tests/fuzz/fuzz_from.c addr.c $(PKG_LIBS)

# What a trusted proxy could send before the SMTP dialogue.
tests/fuzz/fuzz_proxy: tests/fuzz/fuzz_proxy.c proxy.c $(HDRS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ tests/fuzz/fuzz_proxy.c proxy.c $(PKG_LIBS)

# A whole session from a client's bytes, in process: every source of
# smtpd but smtpd.c, instrumented, and a fake relay on the channel.
FUZZ_SESSION_SRCS= $(filter-out smtpd.c,$(SMTPD_SRCS)) $(COMMON_SRCS)
tests/fuzz/fuzz_session: tests/fuzz/fuzz_session.c $(FUZZ_SESSION_SRCS) $(HDRS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -pthread -o $@ tests/fuzz/fuzz_session.c \
	    $(FUZZ_SESSION_SRCS) $(PKG_LIBS) $(IDN_LIBS)

# The paths and parameters of MAIL FROM and RCPT TO.
tests/fuzz/fuzz_addr: tests/fuzz/fuzz_addr.c addr.c $(HDRS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ tests/fuzz/fuzz_addr.c addr.c $(PKG_LIBS)

# DKIM tag lists and the tag rules of a signature.
tests/fuzz/fuzz_dkimtag: tests/fuzz/fuzz_dkimtag.c dkimtag.c $(HDRS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ tests/fuzz/fuzz_dkimtag.c dkimtag.c \
	    $(PKG_LIBS)

# FIRM's ban lists: the JSON answers, their entries, the table.
tests/fuzz/fuzz_banlist: tests/fuzz/fuzz_banlist.c banlist.c log.c \
    metrics.c shm.c util.c $(HDRS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ tests/fuzz/fuzz_banlist.c banlist.c \
	    log.c metrics.c shm.c util.c $(PKG_LIBS)

# Seeded with the corpus; new inputs gather in tests/fuzz/mime-work, a
# crash is kept as tests/fuzz/crash-*.
fuzz: deps
	@$(MAKE) --no-print-directory tests/fuzz/fuzz_mime
	@mkdir -p tests/fuzz/mime-work
	cp tests/mime/*.eml tests/fuzz/mime-work/
	./tests/fuzz/fuzz_mime -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
	    -timeout=10 -rss_limit_mb=2048 -dict=tests/fuzz/fuzz_mime.dict \
	    -artifact_prefix=tests/fuzz/crash- tests/fuzz/mime-work
	@$(MAKE) --no-print-directory tests/fuzz/fuzz_chan
	@mkdir -p tests/fuzz/chan-work
	cp tests/fuzz/chan-corpus/* tests/fuzz/chan-work/
	./tests/fuzz/fuzz_chan -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	    -timeout=10 -rss_limit_mb=2048 \
	    -artifact_prefix=tests/fuzz/crash-chan- tests/fuzz/chan-work
	@for t in spf dmarc from proxy addr banlist session dkimtag; do \
		$(MAKE) --no-print-directory tests/fuzz/fuzz_$$t || exit 1; \
		mkdir -p tests/fuzz/$$t-work; \
		cp tests/fuzz/$$t-corpus/* tests/fuzz/$$t-work/; \
		dict=; [ -f tests/fuzz/fuzz_$$t.dict ] && \
		    dict=-dict=tests/fuzz/fuzz_$$t.dict; \
		len=4096; [ $$t = session ] && len=32768; \
		echo "fuzz: $$t"; \
		./tests/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) \
		    -max_len=$$len -timeout=10 -rss_limit_mb=2048 $$dict \
		    -artifact_prefix=tests/fuzz/crash-$$t- \
		    tests/fuzz/$$t-work || exit 1; \
	done

test:
	@sh scripts/deps.sh test
	@$(MAKE) --no-print-directory -j2 build $(PROG)-test tests/unit \
	    tests/mime_test tests/banlist_test tests/tls_keyless_test \
	    tests/spf_test tests/dmarc_test tests/guard_test \
	    tests/relay_sandbox_test tests/fakes/fsync_fail.so lint asan
	@$(ASAN_ENV) $(ASAN_PYTEST) > $(ASAN_DIR)/pytest.log 2>&1 & \
	asan=$$!; \
	$(PYTHON) -m pytest -q tests; status=$$?; \
	wait $$asan; asan_status=$$?; \
	echo "sanitizer pass (ASan+UBSan build in ./$(ASAN_DIR)):"; \
	cat $(ASAN_DIR)/pytest.log; \
	test $$status -eq 0 && test $$asan_status -eq 0

# The sanitizer pass: the same sources built under ASan and UBSan in
# ./asan (their own objects, never installed), and the integration
# suite run once against that smtpd, smtpd-relay and smtpd-test; make
# test runs it beside the normal pass (most of a test is waiting on
# loopback) and shows its output after the normal pass's.  The
# sandbox lets the sanitizer runtime do what it needs in that build
# only (-DSANDBOX_SANITIZER); RLIMIT_AS is left unset there, as ASan
# reserves terabytes of address space.  A report in any server's output
# fails the test that started it (tests/conftest.py, SMTPD_SANITIZER).
# ASAN_OPTIONS: no leak check (LeakSanitizer stops the process's threads
# with ptrace, which no sandbox allows, and a worker exits with its
# session's memory still held, on purpose); SIGSEGV left to kill, as in
# the normal build (the tests check the signal).
# No FORTIFY there: libc's checked functions would do the checking
# that ASan's interceptors should see.
# Left out: what never runs the server (the C test programs, the SPF
# suite, the fake DNS, the install and package tests).
ASAN_DIR=	asan
ASAN_CFLAGS=	-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
		-fno-sanitize-recover=undefined -DSANDBOX_NO_RLIMIT_AS \
		-DSANDBOX_SANITIZER
ASAN_LDFLAGS=	-fsanitize=address,undefined
ASAN_ENV=	ASAN_OPTIONS=detect_leaks=0:handle_segv=0:symbolize=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		SMTPD_SANITIZER=1 SMTPD_BINARY=$(CURDIR)/$(ASAN_DIR)/$(PROG) \
		SMTPD_TEST_BINARY=$(CURDIR)/$(ASAN_DIR)/$(PROG)-test
ASAN_SKIP=	--ignore=tests/test_c_programs.py \
		--ignore=tests/test_spf_suite.py \
		--ignore=tests/test_fake_dns.py --ignore=tests/test_install.py

asan:
	@mkdir -p $(ASAN_DIR)/scripts
	@cp -p $(SRCS) testhooks.c $(HDRS) Makefile $(ASAN_DIR)/
	@cp -p scripts/*.sh $(ASAN_DIR)/scripts/
	@$(MAKE) --no-print-directory -C $(ASAN_DIR) build $(PROG)-test \
	    CFLAGS="$(ASAN_CFLAGS)" LDFLAGS="$(ASAN_LDFLAGS)" FORTIFY=

ASAN_PYTEST=	$(PYTHON) -m pytest -q -p no:cacheprovider \
		--basetemp=$(CURDIR)/$(ASAN_DIR)/pytest-tmp $(ASAN_SKIP) tests

test-asan: asan
	$(ASAN_ENV) $(ASAN_PYTEST)

# The units and the rc.d script name /usr/local/sbin/smtpd: rewritten
# to SBINDIR as they are installed.
install: $(PROG) $(RELAY)
	$(INSTALL) -d -m 0755 $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man8
	$(INSTALL) -m 0755 $(PROG) $(RELAY) $(DESTDIR)$(SBINDIR)/
	$(INSTALL) -m 0644 smtpd.8 $(DESTDIR)$(MANDIR)/man8/smtpd.8
	$(INSTALL) -m 0644 smtpd-relay.8 $(DESTDIR)$(MANDIR)/man8/smtpd-relay.8
ifeq ($(UNAME_S),OpenBSD)
	$(INSTALL) -d -m 0755 $(DESTDIR)$(RCDIR)
	sed 's|/usr/local/sbin|$(SBINDIR)|g' rc.d/smtpd > $(DESTDIR)$(RCDIR)/smtpd
	chmod 0555 $(DESTDIR)$(RCDIR)/smtpd
else
	$(INSTALL) -d -m 0755 $(DESTDIR)$(SYSTEMDUNITDIR)
	@for u in $(UNITS); do \
		echo "sed contrib/systemd/$$u > $(DESTDIR)$(SYSTEMDUNITDIR)/$$u"; \
		sed 's|/usr/local/sbin|$(SBINDIR)|g' contrib/systemd/$$u \
		    > $(DESTDIR)$(SYSTEMDUNITDIR)/$$u || exit 1; \
		chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/$$u; \
	done
endif
	@if [ -n "$(DESTDIR)" ]; then \
		echo "install: DESTDIR is set: not creating user" \
		    "$(SMTPD_USER) or $(BANLIST_DIR)"; \
	elif [ "$$(id -u)" -ne 0 ]; then \
		echo "install: not root: not creating user" \
		    "$(SMTPD_USER) or $(BANLIST_DIR)"; \
	else \
		$(MAKE) --no-print-directory install-user; \
	fi

# The unprivileged user of every child (no shell, no home), and the
# ban-list cache directory, which only it may read.
install-user:
	@if ! id $(SMTPD_USER) >/dev/null 2>&1; then \
		echo "install: creating user $(SMTPD_USER)"; \
		if [ "$(UNAME_S)" = OpenBSD ]; then \
			useradd -L daemon -g =uid -d /var/empty \
			    -s /sbin/nologin -c "FIRM smtpd" $(SMTPD_USER); \
		else \
			useradd --system --user-group --no-create-home \
			    --home-dir /nonexistent --shell /usr/sbin/nologin \
			    --comment "FIRM smtpd" $(SMTPD_USER); \
		fi || exit 1; \
	fi
	@if [ ! -d $(BANLIST_DIR) ]; then \
		echo "install: creating $(BANLIST_DIR)"; \
		$(INSTALL) -d -m 0755 $$(dirname $(BANLIST_DIR)) && \
		$(INSTALL) -d -m 0700 -o $(SMTPD_USER) \
		    -g "$$(id -gn $(SMTPD_USER))" $(BANLIST_DIR); \
	fi

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/$(PROG) $(DESTDIR)$(SBINDIR)/$(RELAY)
	rm -f $(DESTDIR)$(MANDIR)/man8/smtpd.8 $(DESTDIR)$(MANDIR)/man8/smtpd-relay.8
ifeq ($(UNAME_S),OpenBSD)
	rm -f $(DESTDIR)$(RCDIR)/smtpd
else
	rm -f $(addprefix $(DESTDIR)$(SYSTEMDUNITDIR)/,$(UNITS))
endif
	@echo "uninstall: user $(SMTPD_USER) and $(BANLIST_DIR) are left" \
	    "in place"

ifneq ($(UNAME_S),OpenBSD)
LINT_OPENBSD=	lint-openbsd
endif

lint: $(LINT_OPENBSD)
	mandoc -Tlint -Wstyle smtpd.8
	@for f in $(SRCS); do \
		clang $(ALL_CFLAGS) -fsyntax-only $$f || exit 1; \
	done
	@echo "lint: mandoc and clang -Werror clean"

# The OpenBSD code, which no OpenBSD machine builds today, compiled here
# so that it cannot rot unseen: sandbox_openbsd.c, the common sandbox.c
# and every file with an __OpenBSD__ branch, as OpenBSD's compiler sees
# them (__OpenBSD__, no __linux__), with -Werror, against this system's
# headers and tests/openbsd/, which declares what only OpenBSD's have
# (pledge, unveil, shm_mkstemp).  Then a link check without OpenBSD's
# libc: the OpenBSD objects must define every symbol that the Linux
# objects of the same files (sandbox_linux.c for sandbox_openbsd.c)
# define.  Any file that fails either fails lint.
OPENBSD_SRCS=	$(sort sandbox.c sandbox_openbsd.c \
		    $(shell grep -l __OpenBSD__ *.c))
OPENBSD_PEERS=	$(sort sandbox_linux.c \
		    $(filter-out sandbox_openbsd.c,$(OPENBSD_SRCS)))
OPENBSD_CFLAGS=	$(CFLAGS) $(WARNINGS) -D_GNU_SOURCE $(PKG_CFLAGS) \
		-Itests/openbsd -U__linux__ -U__linux -Ulinux -U__gnu_linux__ \
		-D__OpenBSD__

lint-openbsd:
	@d=$$(mktemp -d) || exit 1; trap 'rm -rf "$$d"' EXIT; \
	mkdir "$$d/openbsd" "$$d/linux" || exit 1; \
	for f in $(OPENBSD_SRCS); do \
		echo "lint-openbsd: $$f"; \
		clang $(OPENBSD_CFLAGS) -c -o "$$d/openbsd/$${f%.c}.o" $$f || \
		    exit 1; \
	done; \
	for f in $(OPENBSD_PEERS); do \
		clang $(ALL_CFLAGS) -c -o "$$d/linux/$${f%.c}.o" $$f || exit 1; \
	done; \
	for os in openbsd linux; do \
		nm -g --defined-only "$$d/$$os"/*.o | \
		    awk 'NF == 3 { print $$3 }' | sort -u > "$$d/$$os.syms" || \
		    exit 1; \
	done; \
	test -s "$$d/openbsd.syms" && test -s "$$d/linux.syms" || exit 1; \
	missing=$$(comm -13 "$$d/openbsd.syms" "$$d/linux.syms"); \
	if [ -n "$$missing" ]; then \
		echo "lint-openbsd: not defined on OpenBSD:" $$missing; \
		exit 1; \
	fi; \
	echo "lint-openbsd: $(OPENBSD_SRCS) compile as on OpenBSD" \
	    "and define all that $(OPENBSD_PEERS) do"

clean:
	rm -f $(PROG) $(RELAY) $(PROG)-test $(OBJS) $(RELAY_OBJS) \
	    $(TEST_OBJS) tests/unit
	rm -f tests/mime_test tests/fuzz/fuzz_mime tests/fuzz/fuzz_chan bench/mime-bench
	rm -f tests/banlist_test bench/banlist-bench tests/tls_keyless_test
	rm -f tests/spf_test tests/dmarc_test tests/guard_test \
	    tests/relay_sandbox_test \
	    tests/fuzz/fuzz_spf tests/fuzz/fuzz_dmarc \
	    tests/fakes/fsync_fail.so tests/fuzz/fuzz_from tests/fuzz/fuzz_proxy \
	    tests/fuzz/fuzz_session tests/fuzz/fuzz_addr tests/fuzz/fuzz_banlist \
	    tests/fuzz/fuzz_dkimtag
	rm -rf $(ASAN_DIR)

# A file system whose fsync fails, for the workers (LD_PRELOAD).
tests/fakes/fsync_fail.so: tests/fakes/fsync_fail.c
	$(CC) $(CFLAGS) $(WARNINGS) -D_GNU_SOURCE -shared -fPIC -o $@ \
	    tests/fakes/fsync_fail.c -ldl

# tls keyless test
tests/tls_keyless_test: tests/tls_keyless_test.c tests/check.h $(LIB_OBJS) \
    $(HDRS)
	$(CC) $(ALL_CFLAGS) -o $@ tests/tls_keyless_test.c $(LIB_OBJS) $(LDLIBS)

tls-keyless-test: tests/tls_keyless_test
	./tests/tls_keyless_test

.PHONY: tls-keyless-test
