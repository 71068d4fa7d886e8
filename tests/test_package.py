"""The Debian package (issue #23): `cargo deb` (crates.io cargo-deb) builds it from the
release binary; dpkg-deb shows what it installs (binary, a conffile config, the
hardened systemd unit, docs) and its maintainer scripts (the `lazaret` account);
systemd-analyze verifies the unit and rates its exposure; the packaged config loads
and makes the CLI find the server without -c."""

import getpass
import os
import pathlib
import re
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
REQUIRED = "package" in os.environ.get("LAZARET_TESTS_REQUIRE", "")


def have_cargo_deb():
    return subprocess.run(["cargo", "deb", "--version"], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    if not have_cargo_deb():
        if REQUIRED:
            pytest.fail("cargo-deb is required (LAZARET_TESTS_REQUIRE) but not installed")
        pytest.skip("cargo-deb is not installed (cargo install cargo-deb)")
    out = tmp_path_factory.mktemp("deb") / "lazaret.deb"
    r = subprocess.run(
        ["cargo", "deb", "-p", "lazaret", "--no-build", "--output", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr
    return out


def dpkg_deb(*args):
    r = subprocess.run(["dpkg-deb", *args], capture_output=True, text=True, check=True)
    return r.stdout


def test_the_package_holds_the_server_its_config_unit_and_docs(deb):
    info = dpkg_deb("--info", str(deb))
    assert re.search(r"^ Package: lazaret$", info, re.M)
    assert re.search(r"^ Section: mail$", info, re.M)
    assert re.search(r"^ Depends: .*adduser", info, re.M)
    contents = dpkg_deb("--contents", str(deb))
    for path in ["./usr/bin/lazaret", "./etc/lazaret/lazaret.toml", "lazaret.service",
                 "./usr/share/doc/lazaret/README.md", "./usr/share/doc/lazaret/OUTBREAK.md"]:
        assert path in contents, path
    assert re.search(r"-rwxr-xr-x (root/root|0/0) .* \./usr/bin/lazaret", contents)


def test_maintainer_scripts_make_the_account_and_keep_the_mail(deb, tmp_path):
    control = tmp_path / "control"
    subprocess.run(["dpkg-deb", "-e", str(deb), str(control)], check=True)
    assert (control / "conffiles").read_text().split() == ["/etc/lazaret/lazaret.toml"]
    postinst = (control / "postinst").read_text()
    assert "adduser --system --group --home /var/lib/lazaret" in postinst
    assert "chmod 0700 /var/lib/lazaret" in postinst
    # cargo-deb's systemd snippet: enable (and start) the unit.
    assert "deb-systemd-helper" in postinst and "lazaret.service" in postinst
    postrm = (control / "postrm").read_text()
    assert "rm -rf /var/lib/lazaret" not in postrm, "purge never deletes mail"
    for script in ["postinst", "postrm"]:
        assert subprocess.run(["sh", "-n", str(control / script)]).returncode == 0


def test_unit_is_valid_and_hardened(deb, tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    [unit] = list(root.rglob("lazaret.service"))
    text = unit.read_text()
    for line in ["User=lazaret", "ProtectSystem=strict", "NoNewPrivileges=yes",
                 "CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "AmbientCapabilities=CAP_NET_BIND_SERVICE",
                 "ReadWritePaths=/var/lib/lazaret"]:
        assert line in text, line
    # Verified with the extracted binary in place of /usr/bin/lazaret.
    local = tmp_path / "lazaret.service"
    local.write_text(text.replace("/usr/bin/lazaret", str(root / "usr/bin/lazaret")))
    r = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(local)],
                       capture_output=True, text=True)
    level = float(re.search(r"Overall exposure level for lazaret.service: ([0-9.]+)", r.stdout).group(1))
    assert level <= 2.5, r.stdout[-2000:]


def test_packaged_config_loads_and_the_binary_runs(deb, tmp_path):
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    binary = root / "usr/bin/lazaret"
    assert subprocess.run([str(binary), "--version"], capture_output=True).returncode == 0
    # The config as shipped, with its data directory moved under the test's root and
    # its ports set free: the server starts on it.
    config = (root / "etc/lazaret/lazaret.toml").read_text()
    assert 'data_dir = "/var/lib/lazaret"' in config and 'user = "lazaret"' in config
    config = config.replace("/var/lib/lazaret", str(tmp_path / "data"))
    config = re.sub(r'127\.0\.0\.1:\d+', "127.0.0.1:0", config).replace('user = "lazaret"', f'user = "{getpass.getuser()}"')
    (tmp_path / "lazaret.toml").write_text(config)
    proc = subprocess.Popen([str(binary), "serve", "-c", str(tmp_path / "lazaret.toml")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        listeners = tmp_path / "data" / "listeners.json"
        import time
        deadline = time.time() + 20
        while not listeners.exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.time() < deadline
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
