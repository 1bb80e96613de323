"""The C unit tests (tests/unit.c): parsers, data reader, token, UTF-8."""
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_c_unit_tests_pass():
    r = subprocess.run([os.path.join(ROOT, "tests", "unit")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith("0 failed"), r.stdout
