#!/usr/bin/python3
"""A DNS server for the authentication benchmark (bench/auth.sh): the
tests' fake DNS server (tests/fakes/fake_dns.py) on 127.0.0.1, its port
written to PORTFILE, serving until process OWNER is gone.

    auth-dns.py records|empty PORTFILE OWNER

records: example.org publishes SPF (ip4:127.0.0.1) and DMARC (p=none)
for the sender smtp-source uses; empty: every name is NXDOMAIN."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "tests", "fakes"))
from fake_dns import FakeDNS  # noqa: E402

MAX_SECONDS = 3600


def main():
    mode, portfile, owner = sys.argv[1], sys.argv[2], int(sys.argv[3])
    dns = FakeDNS().start()
    if mode == "records":
        dns.txt("example.org", "v=spf1 ip4:127.0.0.1 -all")
        dns.txt("_dmarc.example.org", "v=DMARC1; p=none")
        dns.a("example.org", "192.0.2.1")
    with open(portfile + ".tmp", "w") as f:
        f.write("%d\n" % dns.port)
    os.rename(portfile + ".tmp", portfile)
    for _ in range(MAX_SECONDS * 2):
        try:
            os.kill(owner, 0)
        except OSError:
            break
        time.sleep(0.5)
    dns.stop()


if __name__ == "__main__":
    main()
