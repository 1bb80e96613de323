#!/bin/sh
# Install what smtpd needs to build ("build"), to build and try it with
# swaks ("run"), or to build and test ("test"), when it is missing.
# Debian: apt-get.  OpenBSD: prints the pkg_add line.
set -eu

what=${1:-build}

if [ "$(uname -s)" = "OpenBSD" ]; then
	# libtls comes with the base system.
	echo "pkg_add gmake libsodium jansson libidn2 curl swaks p5-Net-SMTP python3 py3-pytest"
	exit 0
fi

# libssl-dev: libcrypto, which tls.c uses to describe a certificate
# (libtls-dev does not depend on it)
# test: systemd for systemd-analyze and systemd-socket-activate (the
# unit tests; systemd need not be running), man-db for the units'
# Documentation= check, debhelper, dpkg-dev and
# fakeroot to build the .deb, adduser for its postinst; haproxy for
# contrib/haproxy; python3-spf, and node with npm for mailauth (tests/
# package.json), the independent verifiers of tests/test_differential.py;
# binutils for readelf (tests/test_hardening.py).
# build-essential is in the build list.
build="build-essential pkg-config clang libtls-dev libssl-dev \
libsodium-dev libjansson-dev libcurl4-openssl-dev libseccomp-dev \
libbsd-dev mandoc libclang-rt-14-dev libunbound-dev libevent-dev \
libopendkim-dev libidn2-dev"
test="python3 python3-pytest swaks libnet-ssleay-perl perl openssl \
python3-dnslib python3-dkim python3-nacl python3-yaml python3-cryptography \
systemd man-db debhelper dpkg-dev fakeroot adduser haproxy python3-spf \
binutils"

pkgs=$build
[ "$what" = "test" ] && pkgs="$build $test"
# run: make run, and the swaks that README's next line uses
[ "$what" = "run" ] && pkgs="$build swaks"

missing=
for p in $pkgs; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
	    grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
# node and npm: Debian's nodejs and npm unless a node with its own npm
# is already there (another nodejs package that ships npm conflicts
# with Debian's npm)
if [ "$what" = "test" ]; then
	command -v node >/dev/null 2>&1 || missing="$missing nodejs"
	command -v npm >/dev/null 2>&1 || missing="$missing npm"
fi

# mailauth from the npm registry, as pinned by tests/package-lock.json,
# into tests/node_modules (git-ignored); again only when the lock file
# changed since the last install
npm_tests() {
	[ "$what" = "test" ] || return 0
	top=$(cd "$(dirname "$0")/.." && pwd)
	stamp="$top/tests/node_modules/.smtpd-lock"
	if [ -f "$stamp" ] && cmp -s "$stamp" "$top/tests/package-lock.json"
	then
		return 0
	fi
	echo "deps: npm ci --prefix tests"
	npm ci --prefix "$top/tests" --no-audit --no-fund --loglevel=error
	cp "$top/tests/package-lock.json" "$stamp"
}

if [ -z "$missing" ]; then
	npm_tests
	exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
	echo "smtpd: missing packages:$missing (no apt-get here)" >&2
	exit 1
fi
SUDO=
[ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
npm_tests
