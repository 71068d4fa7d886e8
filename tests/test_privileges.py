"""Privileges (issue #20): `serve` started as root binds its ports and runs as `[server]
user`, keeping only CAP_NET_BIND_SERVICE (so `smtp start` can bind port 25 again after
a stop); its files are that user's, 0600 and 0700; without `[server] user` a root start
with a config file is refused; the admin token never reaches the log."""

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import pathlib

import pytest

from conftest import BIN, Server

ACCOUNT = "lazaret-test"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)")


def account():
    try:
        return pwd.getpwnam(ACCOUNT)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", ACCOUNT], check=True)
        return pwd.getpwnam(ACCOUNT)


def free_low_port():
    for port in range(700, 1000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    pytest.skip("no free port below 1024")


@pytest.fixture
def workdir():
    # pytest's tmp_path sits under a root-only directory the account could not enter.
    d = pathlib.Path(tempfile.mkdtemp(prefix="lazaret-priv-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def status_field(pid, name):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].split()
    raise AssertionError(name)


def test_root_start_without_a_user_is_refused(workdir):
    config = workdir / "lazaret.toml"
    config.write_text(f'data_dir = "{workdir}/data"\n[smtp]\nlisten = ["127.0.0.1:0"]\n')
    r = subprocess.run([BIN, "serve", "-c", str(config)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, r.stderr
    assert "[server] user" in r.stderr and "useradd" in r.stderr, r.stderr
    assert not (workdir / "data").exists(), "nothing created before refusing"


def test_root_start_runs_as_the_configured_user_on_a_low_port(workdir):
    pw = account()
    port = free_low_port()
    s = Server(workdir, f'[server]\nuser = "{ACCOUNT}"\n\n[smtp]\nlisten = ["127.0.0.1:{port}"]\n')
    try:
        pid = s.proc.pid
        assert status_field(pid, "Uid") == [str(pw.pw_uid)] * 4, "real, effective, saved and fs uid"
        assert status_field(pid, "Gid") == [str(pw.pw_gid)] * 4
        assert status_field(pid, "Groups") == [str(pw.pw_gid)]
        # Only CAP_NET_BIND_SERVICE (bit 10), effective and permitted, nothing to inherit.
        assert int(status_field(pid, "CapEff")[0], 16) == 1 << 10
        assert int(status_field(pid, "CapPrm")[0], 16) == 1 << 10
        assert int(status_field(pid, "CapInh")[0], 16) == 0

        assert s.smtp_port == port
        s.add_user("alice@localhost")
        s.send("alice@localhost", "low port")
        s.wait_delivered("alice@localhost", 1)

        # Every file is the account's and private to it.
        data = s.data_dir
        assert data.stat().st_mode & 0o777 == 0o700
        for path in [data, *data.rglob("*")]:
            st = path.lstat()
            assert st.st_uid == pw.pw_uid, f"{path} belongs to uid {st.st_uid}"
            if path.is_file():
                assert st.st_mode & 0o077 == 0, f"{path} is mode {oct(st.st_mode & 0o777)}"
            elif path.is_dir():
                assert st.st_mode & 0o077 == 0, f"{path} is mode {oct(st.st_mode & 0o777)}"

        # Stopped, the low port is closed; started again, bound again by the account.
        s.cli("smtp", "stop")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)
        s.cli("smtp", "start")
        s.send("alice@localhost", "after a restart of the listener")
        s.wait_delivered("alice@localhost", 2)
        assert s.cli_json("status")["listeners"][0]["up"]

        # The token is nowhere in the log.
        s.stop()
        log = (workdir / "server.log").read_bytes()
        assert s.token.encode() not in log
        assert f"running as {ACCOUNT}".encode() in log

        # Files a root start left behind are handed over on the next start.
        stray = data / "left-by-root"
        stray.write_text("x")
        os.chown(stray, 0, 0)
        s.start()
        assert stray.stat().st_uid == pw.pw_uid
    finally:
        s.stop()


def test_a_missing_account_is_named(workdir):
    config = workdir / "lazaret.toml"
    config.write_text(f'data_dir = "{workdir}/data"\n[server]\nuser = "no-such-account-here"\n')
    r = subprocess.run([BIN, "serve", "-c", str(config)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "no-such-account-here" in r.stderr and "no such account" in r.stderr, r.stderr
