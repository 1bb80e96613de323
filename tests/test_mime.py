"""The MIME decoder against its corpus (tests/mime_test.c, tests/mime/):
transfer and charset decoding, RFC 2047 words, multipart walking and
the limits of mime_parse()."""
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_mime_corpus_decodes_as_expected():
    r = subprocess.run([os.path.join(ROOT, "tests", "mime_test"),
                        os.path.join(ROOT, "tests", "mime")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith(" 0 failed"), r.stdout
