"""The C unit tests of the ban-list table (tests/banlist_test.c)."""
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_banlist_c_unit_tests_pass():
    r = subprocess.run([os.path.join(ROOT, "tests", "banlist_test")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith(" 0 failed"), r.stdout
