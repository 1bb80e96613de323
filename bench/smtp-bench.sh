#!/bin/bash
#
# smtp-bench.sh - throughput and CPU cost of smtpd under Postfix's
# smtp-source.  A benchmark, not a test: the test suite never runs it.
#
# Usage (as root, from anywhere):  bench/smtp-bench.sh
# Knobs (environment):
#	PORT=25250		loopback port for the server under test
#	COUNT1=2000		messages for the run at concurrency 1
#	COUNT=10000		messages for every other run
#	CONCS="1 10 50"		concurrencies to run
#	RUN_TIMEOUT=300		seconds one smtp-source run may take
#	SMTPD=./smtpd		binary to test (relative to the repository root)
#	SPARE=20		--spare of the server under test
#	MODE=spool		spool: --spool on tmpfs; api: end to end, --api
#				posting to nginx on loopback answering 200
#	NGINX_PORT=25251	loopback port of that nginx
#
# Every message travels on its own connection (no -d), with a body of
# 1000 bytes and the subject FIRM-TOKEN:BENC-HMAR-K000, so the server
# accepts and spools it.  Exit status: 0 when every run delivered and
# spooled all its messages (missed targets are reported, not fatal),
# 1 otherwise.

set -eu

PORT=${PORT:-25250}
COUNT1=${COUNT1:-2000}
COUNT=${COUNT:-10000}
CONCS=${CONCS:-"1 10 50"}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
SMTPD=${SMTPD:-./smtpd}
MODE=${MODE:-spool}
NGINX_PORT=${NGINX_PORT:-25251}
NGINX_PID=
TOKEN="FIRM-TOKEN:BENC-HMAR-K000"

# targets
TARGET_RATE=2500	# messages per second at concurrency 50
TARGET_CPU=400		# server CPU microseconds per message
TARGET_MEM=1024		# kB private memory of one idle worker

cd "$(dirname "$0")/.."

MASTER=
WORKDIR=
MOUNTED=
failed=0

# shellcheck disable=SC2317	# called from the EXIT trap
cleanup() {
	if [ -n "$MASTER" ] && kill -0 "$MASTER" 2>/dev/null; then
		kill -TERM "$MASTER" 2>/dev/null || true
		# --grace is 30 s; no session is open here, so this is quick
		for _ in $(seq 1 70); do
			kill -0 "$MASTER" 2>/dev/null || break
			sleep 0.5
		done
		if kill -0 "$MASTER" 2>/dev/null; then
			echo "smtp-bench: smtpd $MASTER ignored SIGTERM," \
			    "sending SIGKILL to it and its children" >&2
			kids=$(children)
			kill -KILL "$MASTER" 2>/dev/null || true
			# shellcheck disable=SC2086
			[ -z "$kids" ] || kill -KILL $kids 2>/dev/null || true
		fi
		wait "$MASTER" 2>/dev/null || true
	fi
	if [ -n "$NGINX_PID" ]; then
		kill -TERM "$NGINX_PID" 2>/dev/null || true
		wait "$NGINX_PID" 2>/dev/null || true
	fi
	if [ -n "$MOUNTED" ]; then
		umount "$MOUNTED" 2>/dev/null || true
	fi
	if [ -n "$WORKDIR" ]; then
		rm -rf "$WORKDIR"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() {
	echo "smtp-bench: $*" >&2
	exit 1
}

# --- smtp-source, from Debian's postfix package --------------------------
if [ ! -x /usr/sbin/smtp-source ]; then
	[ "$(id -u)" -eq 0 ] || die "/usr/sbin/smtp-source is missing;" \
	    "run as root to install postfix"
	echo "smtp-bench: installing postfix for smtp-source" >&2
	echo "postfix postfix/main_mailer_type select No configuration" |
	    debconf-set-selections
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix \
	    >/dev/null
	# "No configuration" starts nothing; stop a master if one runs anyway
	if postfix status >/dev/null 2>&1; then
		postfix stop >/dev/null 2>&1 || true
	fi
	[ -x /usr/sbin/smtp-source ] || die "postfix brought no smtp-source"
fi

# --- the server ----------------------------------------------------------
if [ ! -x "$SMTPD" ]; then
	echo "smtp-bench: building smtpd" >&2
	make >/dev/null
fi
[ -x "$SMTPD" ] || die "$SMTPD not found after make"

# --- spool on tmpfs ------------------------------------------------------
if [ -d /dev/shm ] && [ "$(stat -f -c %T /dev/shm)" = tmpfs ]; then
	WORKDIR=$(mktemp -d /dev/shm/smtpd-bench.XXXXXX)
else
	WORKDIR=$(mktemp -d /tmp/smtpd-bench.XXXXXX)
	if mount -t tmpfs -o size=1g tmpfs "$WORKDIR" 2>/dev/null; then
		MOUNTED=$WORKDIR
	else
		echo "smtp-bench: warning: spool is not on tmpfs" >&2
	fi
fi
# the workers run as --user: let them reach the spool, which smtpd
# creates itself (mode 0700, owned by that user)
chmod 711 "$WORKDIR"
SPOOL=$WORKDIR/spool
LOG=$WORKDIR/smtpd.stderr

# --- helpers -------------------------------------------------------------
listening() {
	# is anything listening on 127.0.0.1:$PORT?
	local hex
	hex=$(printf '%04X' "$PORT")
	grep -q "^ *[0-9]*: 0100007F:$hex 00000000:0000 0A" /proc/net/tcp
}

children() {
	# pids of the master's children
	local f
	set -- /proc/"$MASTER"/task/*/children
	if [ -r "$1" ]; then
		for f in "$@"; do
			cat "$f" 2>/dev/null || true
		done | tr ' ' '\n' | grep . || true
	else
		pgrep -P "$MASTER" || true
	fi
}

stat_fields() {
	# print fields $2.. of /proc/$1/stat (1-based as in proc(5));
	# the command name may hold spaces, so count after the last ')'
	local pid=$1 line rest
	shift
	line=$(cat /proc/"$pid"/stat 2>/dev/null) || return 1
	rest=${line##*) }
	# rest starts at field 3 (state)
	echo "$rest" | awk -v want="$*" '{
		n = split(want, w, " ")
		for (i = 1; i <= n; i++)
			printf "%s%s", $(w[i] - 2), (i < n ? " " : "\n")
	}'
}

tree_ticks() {
	# CPU clock ticks of the whole server: the master's own time, the
	# time of its reaped children (cutime, cstime: workers exit after
	# each session), and the time of the children still alive
	local total pid f
	f=$(stat_fields "$MASTER" 14 15 16 17) || die "smtpd master died"
	total=$(echo "$f" | awk '{ print $1 + $2 + $3 + $4 }')
	for pid in $(children); do
		f=$(stat_fields "$pid" 14 15) || continue
		total=$((total + $(echo "$f" | awk '{ print $1 + $2 }')))
	done
	echo "$total"
}

spooled() {
	# messages handed on: spool files, or POSTs nginx answered 200
	if [ "$MODE" = api ]; then
		grep -c '"POST /inbound HTTP/1.1" 200' "$WORKDIR/access.log" \
		    2>/dev/null || true
	else
		find "$SPOOL" -maxdepth 1 -type f -name '*.json' \
		    2>/dev/null | wc -l
	fi
}

clear_delivered() {
	if [ "$MODE" = api ]; then
		: >"$WORKDIR/access.log"
		kill -USR1 "$NGINX_PID"	# reopen the log
	else
		find "$SPOOL" -maxdepth 1 -type f -name '*.json' -delete
	fi
}

port_listening() {
	local hex
	hex=$(printf '%04X' "$1")
	grep -q "^ *[0-9]*: 0100007F:$hex 00000000:0000 0A" /proc/net/tcp
}

start_nginx() {
	# a FIRM API sink as fast as it gets: nginx answering 200 to POST
	if ! command -v nginx >/dev/null 2>&1; then
		[ "$(id -u)" -eq 0 ] || die "nginx is missing; run as root"
		echo "smtp-bench: installing nginx-light" >&2
		apt-get update -qq
		# policy-rc.d keeps the package from starting its own
		# daemon on port 80; leave one the machine had alone
		local policy=
		if [ ! -e /usr/sbin/policy-rc.d ]; then
			policy=/usr/sbin/policy-rc.d
			printf '#!/bin/sh\nexit 101\n' >"$policy"
			chmod 755 "$policy"
		fi
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		    nginx-light >/dev/null || true
		[ -z "$policy" ] || rm -f "$policy"
		command -v nginx >/dev/null 2>&1 || die "nginx install failed"
	fi
	cat >"$WORKDIR/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $WORKDIR/nginx.pid;
error_log $WORKDIR/nginx.err;
events { worker_connections 4096; }
http {
	access_log $WORKDIR/access.log combined buffer=64k flush=100ms;
	keepalive_requests 100000;
	client_body_buffer_size 64k;
	server {
		listen 127.0.0.1:$NGINX_PORT;
		location = /inbound { return 200 '{"ok":true}'; }
	}
}
NGINX
	nginx -c "$WORKDIR/nginx.conf" -p "$WORKDIR" \
	    2>"$WORKDIR/nginx.start" &
	NGINX_PID=$!
	for _ in $(seq 1 50); do
		port_listening "$NGINX_PORT" && return 0
		sleep 0.1
	done
	cat "$WORKDIR/nginx.start" >&2
	die "nginx does not listen on 127.0.0.1:$NGINX_PORT"
}

private_kb() {
	# Private_Clean + Private_Dirty of one process, in kB
	local f=/proc/$1/smaps_rollup
	[ -r "$f" ] || f=/proc/$1/smaps
	awk '/^Private_(Clean|Dirty):/ { kb += $2 } END { print kb + 0 }' \
	    "$f" 2>/dev/null
}

wait_idle_workers() {
	# bounded wait until the master has at least $1 children
	local want=$1
	for _ in $(seq 1 50); do
		[ "$(children | wc -l)" -ge "$want" ] && return 0
		sleep 0.1
	done
	return 1
}

# --- start ---------------------------------------------------------------
listening && die "127.0.0.1:$PORT is already in use (set PORT)"

if [ "$MODE" = api ]; then
	start_nginx
	DEST="--api http://127.0.0.1:$NGINX_PORT"
else
	DEST="--spool $SPOOL"
fi
# shellcheck disable=SC2086	# DEST is two words
"$SMTPD" -d -l "127.0.0.1:$PORT" -r verify@localhost $DEST \
    -c 200 -p 200 --spare "${SPARE:-20}" >/dev/null 2>"$LOG" &
MASTER=$!

for _ in $(seq 1 100); do
	listening && break
	kill -0 "$MASTER" 2>/dev/null || {
		cat "$LOG" >&2
		MASTER=
		die "smtpd exited at start"
	}
	sleep 0.1
done
listening || die "smtpd does not listen on 127.0.0.1:$PORT after 10 s"
wait_idle_workers 20 || echo "smtp-bench: warning: fewer than 20 workers" \
    "after 5 s" >&2

HZ=$(getconf CLK_TCK)

echo "smtpd benchmark ($MODE): $SMTPD on 127.0.0.1:$PORT, $DEST"
echo "one message per connection, 1000-byte body, subject $TOKEN"
echo "$(nproc) CPUs; smtp-source runs on the same machine"
echo
printf '%5s %7s %9s %9s %11s %8s   %s\n' conc msgs seconds msg/s \
    cpu_us/msg spooled target
best_rate=
worst_cpu=0
for conc in $CONCS; do
	if [ "$conc" -eq 1 ]; then n=$COUNT1; else n=$COUNT; fi
	clear_delivered
	sleep 0.5
	kill -0 "$MASTER" 2>/dev/null || die "smtpd is not running"
	t0=$(tree_ticks)
	s0=$(date +%s.%N)
	rc=0
	timeout "$RUN_TIMEOUT" /usr/sbin/smtp-source -s "$conc" -m "$n" \
	    -l 1000 -M localhost -f bench@localhost -t verify@localhost \
	    -S "$TOKEN" "127.0.0.1:$PORT" >"$WORKDIR/source.out" 2>&1 ||
	    rc=$?
	s1=$(date +%s.%N)
	# workers reply 250 before they exit: give the master a moment to
	# reap the last ones so their time lands in cutime/cstime
	sleep 0.5
	kill -0 "$MASTER" 2>/dev/null || die "smtpd died during the run"
	t1=$(tree_ticks)
	got=$(spooled)
	secs=$(awk -v a="$s0" -v b="$s1" 'BEGIN { printf "%.3f", b - a }')
	rate=$(awk -v n="$got" -v s="$secs" \
	    'BEGIN { printf "%.1f", (s > 0 ? n / s : 0) }')
	cpu=$(awk -v t="$((t1 - t0))" -v hz="$HZ" -v n="$got" \
	    'BEGIN { printf "%.1f", (n > 0 ? t * 1000000 / hz / n : 0) }')
	target="<= $TARGET_CPU us"
	if [ "$conc" -eq 50 ]; then
		target=">= $TARGET_RATE msg/s, $target"
		best_rate=$rate
	fi
	printf '%5s %7s %9s %9s %11s %8s   %s\n' "$conc" "$n" "$secs" \
	    "$rate" "$cpu" "$got" "$target"
	worst_cpu=$(awk -v a="$worst_cpu" -v b="$cpu" \
	    'BEGIN { print (b > a ? b : a) }')
	if [ "$rc" -ne 0 ]; then
		echo "  smtp-source exited $rc:" >&2
		tail -n 5 "$WORKDIR/source.out" >&2
		failed=1
	fi
	if [ "$got" -ne "$n" ]; then
		echo "  spooled $got of $n messages" >&2
		failed=1
	fi
	one=
	[ "$MODE" = api ] ||
	    one=$(find "$SPOOL" -maxdepth 1 -type f -name '*.json' | head -n 1)
	if [ -n "$one" ] && ! grep -q "\"$TOKEN\"" "$one"; then
		echo "  token $TOKEN not found in $one" >&2
		failed=1
	fi
done

# --- memory of idle workers ----------------------------------------------
sleep 1
wait_idle_workers 20 || true
mems=$(for pid in $(children); do
	[ "$(stat_fields "$pid" 3)" = S ] || continue
	private_kb "$pid"
done | sort -n)
nmem=$(echo "$mems" | grep -c . || true)
echo
if [ "$nmem" -gt 0 ]; then
	med=$(echo "$mems" | awk -v n="$nmem" 'NR == int((n + 1) / 2)')
	echo "idle worker private memory (Private_Clean + Private_Dirty):" \
	    "$med kB median, $(echo "$mems" | head -n 1)-$(echo "$mems" |
	    tail -n 1) kB over $nmem idle children; target <= $TARGET_MEM kB"
else
	echo "idle worker private memory: no idle worker found" >&2
	med=
fi

verdict() {
	# verdict OK-CONDITION
	if awk "BEGIN { exit !($1) }"; then echo met; else echo MISSED; fi
}
echo
echo "targets:"
if [ -n "$best_rate" ]; then
	echo "  throughput at c=50: $best_rate msg/s" \
	    "(target >= $TARGET_RATE): $(verdict "$best_rate >= $TARGET_RATE")"
fi
echo "  CPU per message, worst run: $worst_cpu us" \
    "(target <= $TARGET_CPU): $(verdict "$worst_cpu <= $TARGET_CPU")"
if [ -n "$med" ]; then
	echo "  idle worker: $med kB (target <= $TARGET_MEM):" \
	    "$(verdict "$med <= $TARGET_MEM")"
fi

exit "$failed"
