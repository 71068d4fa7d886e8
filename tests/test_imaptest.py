"""Dovecot's IMAP compliance suite, imaptest, against Lazaret: every scripted test
group (base protocol and the extensions Lazaret advertises) must pass with 0 failed
commands, and its stress mode (several clients at once, checking that every
session's view stays consistent) must report no error.

imaptest is built from tests/imaptest/ into target/imaptest once (about a minute);
building it needs Debian's dovecot-dev, dovecot-core (libdovecot.so) and autotools, which .ci/run installs. Without
them the tests are skipped, unless LAZARET_TESTS_REQUIRE names imaptest (.ci/run sets
it), so that CI cannot pass without running them.
"""

import os
import pathlib
import re
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
BUILD = ROOT / "target" / "imaptest"
BINARY = BUILD / "imaptest" / "src" / "imaptest"
SCRIPTS = BUILD / "imaptest" / "src" / "tests"
TARBALL = ROOT / "tests" / "imaptest" / "imaptest-924f619.tar.gz"
ENV = dict(os.environ, LD_LIBRARY_PATH="/usr/lib/dovecot")


def imaptest_binary():
    if BINARY.exists() and BINARY.stat().st_mtime >= TARBALL.stat().st_mtime:
        return BINARY
    buildable = os.path.exists("/usr/lib/dovecot/libdovecot.so") and shutil.which("autoreconf")
    if not buildable:
        if "imaptest" in os.environ.get("LAZARET_TESTS_REQUIRE", ""):
            pytest.fail("imaptest cannot be built: install dovecot-core dovecot-dev autoconf automake libtool pkg-config make gcc")
        pytest.skip("imaptest needs dovecot-dev and autotools to build (.ci/run installs them)")
    subprocess.run([str(ROOT / "tests" / "imaptest" / "build.sh"), str(BUILD)], check=True)
    return BINARY


def run_imaptest(server, user, *args, timeout=600):
    binary = imaptest_binary()
    cmd = [str(binary), "host=127.0.0.1", f"port={server.imap_port}", f"user={user}", "pass=secret", *args]
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)
    return done.stdout + done.stderr


def test_imaptest_scripted_suite_has_no_failures(server):
    user = "imaptest@localhost"
    server.add_user(user)
    out = run_imaptest(server, user, f"test={SCRIPTS}")
    summary = re.findall(r"(base protocol|extensions): (\d+)/(\d+) individual commands failed", out)
    assert len(summary) == 2, out[-3000:]
    for name, failed, total in summary:
        assert int(total) > 0, out[-3000:]
        assert failed == "0", f"{name}: {failed}/{total} failed\n" + out[-6000:]
    groups = re.search(r"(\d+) test groups: (\d+) failed", out)
    assert groups and int(groups.group(1)) >= 70 and groups.group(2) == "0", out[-3000:]
    assert "Error:" not in out, out[-6000:]


@pytest.mark.parametrize("mode", ["plain", "qresync"])
def test_imaptest_stress_mode_reports_no_error(server, mode):
    """Ten clients select, fetch, store, expunge, append and copy in one mailbox at
    once for 12 s; imaptest checks every answer against what each session was told.
    With `qresync` they ENABLE QRESYNC: expunges come as VANISHED, every FETCH carries
    UID and MODSEQ."""
    user = "stress@localhost"
    server.add_user(user)
    extra = ["qresync"] if mode == "qresync" else []
    out = run_imaptest(server, user, f"mbox={SCRIPTS / 'default.mbox'}", "clients=10", "secs=12", *extra)
    assert "Totals:" in out, out[-3000:]
    errors = [line for line in out.splitlines() if "Error" in line or "BAD" in line]
    assert not errors, "\n".join(errors[:30])
    # Every kind of command ran (the Totals line under the command names).
    totals = out.split("Totals:")[1].strip().splitlines()
    counts = [int(n) for n in totals[-1].split()]
    assert all(n > 0 for n in counts), totals
