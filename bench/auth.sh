#!/bin/sh
# What sender authentication costs: ../shared/bench/peers.sh with two
# rows of ours under the same load, one whose sender domain publishes
# SPF and DMARC records on a loopback DNS server (bench/auth-dns.py),
# one whose DNS answers NXDOMAIN to everything.  Compare their CPU per
# message in the report.  Run as root from the repository root after
# make; extra arguments go to peers.sh (e.g. --rounds 1).
set -eu

root=$(pwd)
[ -x "$root/smtpd" ] || { echo "run make first" >&2; exit 1; }
peers=${PEERS:-$root/../shared/bench/peers.sh}
flags=${FLAGS:---max-use 100}

row() {
	# $1: records|empty.  The DNS server is started detached (setsid
	# -f), so it is not part of the measured process tree.
	echo "rm -rf \$BENCH_WORKDIR/spool; mkdir -p \$BENCH_WORKDIR/spool \
\$BENCH_WORKDIR/c && chown nobody \$BENCH_WORKDIR/spool \$BENCH_WORKDIR/c && \
rm -f \$BENCH_WORKDIR/dns.port && setsid -f /usr/bin/python3 \
$root/bench/auth-dns.py $1 \$BENCH_WORKDIR/dns.port \$\$ && \
for i in \$(seq 100); do [ -s \$BENCH_WORKDIR/dns.port ] && break; \
sleep 0.1; done && exec $root/smtpd -d -l 127.0.0.1:{port} \
-r rcpt@example.net --spool \$BENCH_WORKDIR/spool -c 200 -p 200 \
--spare 20 --banlist-cache \$BENCH_WORKDIR/c/cache.json $flags \
--resolver 127.0.0.1:\$(cat \$BENCH_WORKDIR/dns.port) >/dev/null"
}

exec "$peers" --only sink,postfix,ours,ours2 \
    --subject 'FIRM-TOKEN:BENC-HMAR-K000' --modes reuse \
    --out "${OUT:-/tmp/auth-peers.md}" \
    --ours "$(row records)" --ours-label 'ours (SPF+DMARC records)' \
    --ours2 "$(row empty)" --ours2-label 'ours (no records)' "$@"
