# smtpd: GNU make (gmake on OpenBSD).
#
#   make          install missing build dependencies, build ./smtpd
#   make run      build, then serve 127.0.0.1:2525 into ./spool
#   make test     install missing test dependencies, build, run every test
#   make lint     mandoc -Tlint smtpd.8, and a clang build with -Werror

PROG=		smtpd
SRCS=		smtpd.c session.c firm.c mime.c log.c sandbox.c util.c
OBJS=		$(SRCS:.c=.o)
HDRS=		smtpd.h

CC?=		cc
PKG_CONFIG?=	pkg-config
PYTHON?=	/usr/bin/python3

UNAME_S:=	$(shell uname -s)
PKGS=		libtls libsodium jansson libcurl
ifeq ($(UNAME_S),Linux)
PKGS+=		libseccomp libbsd-overlay
endif

WARNINGS=	-Wall -Wextra -Wstrict-prototypes -Wmissing-prototypes \
		-Wshadow -Wpointer-arith -Wcast-qual -Wformat=2 -Werror
# Recursively expanded: pkg-config runs after `deps` has installed it.
PKG_CFLAGS=	$(shell $(PKG_CONFIG) --cflags $(PKGS))
PKG_LIBS=	$(shell $(PKG_CONFIG) --libs $(PKGS))
CFLAGS?=	-O2 -g
ALL_CFLAGS=	$(CFLAGS) $(WARNINGS) -D_GNU_SOURCE $(PKG_CFLAGS)
# Bind every symbol at start: forked workers then never write the GOT
# (no copy-on-write faults, no lazy lookups), and it can be read-only.
LDFLAGS+=	-Wl,-z,now -Wl,-z,relro
LDLIBS+=	$(PKG_LIBS)

.PHONY: all deps build run test unit lint clean

all: deps
	@$(MAKE) --no-print-directory build

build: $(PROG)

deps:
	@sh scripts/deps.sh build

$(PROG): $(OBJS)
	$(CC) $(LDFLAGS) -o $@ $(OBJS) $(LDLIBS)

%.o: %.c $(HDRS)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

run: all
	./$(PROG) -d -l 127.0.0.1:2525 -H localhost -r verify@localhost \
	    --spool ./spool

tests/unit: tests/unit.c session.o mime.o firm.o log.o util.o $(HDRS)
	$(CC) $(ALL_CFLAGS) -o $@ tests/unit.c session.o mime.o firm.o \
	    log.o util.o $(LDLIBS)

unit: tests/unit
	./tests/unit

test:
	@sh scripts/deps.sh test
	@$(MAKE) --no-print-directory build tests/unit lint
	$(PYTHON) -m pytest -q tests

lint:
	mandoc -Tlint -Wstyle smtpd.8
	@for f in $(SRCS); do \
		clang $(ALL_CFLAGS) -fsyntax-only $$f || exit 1; \
	done
	@echo "lint: mandoc and clang -Werror clean"

clean:
	rm -f $(PROG) $(OBJS) tests/unit
