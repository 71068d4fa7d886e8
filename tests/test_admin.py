"""Admin API and CLI: token, OpenAPI, status, accounts, audit, exit codes, config
errors, and the built-in defaults."""

import json
import os
import signal
import subprocess
import time

from conftest import BIN, Server


def test_admin_api_needs_its_token(server):
    status, body = server.curl("/api/status")
    assert status == 401
    assert "token" in json.loads(body)["error"]
    status, _ = server.curl("/api/status", "-H", "Authorization: Bearer wrong")
    assert status == 401
    status, body = server.curl("/api/status", "-H", f"Authorization: Bearer {server.token}")
    assert status == 200 and json.loads(body)["hostname"] == "mx.lazaret.test"
    mode = os.stat(server.data_dir / "admin.token").st_mode & 0o777
    assert mode == 0o600
    # A web page elsewhere is refused even with the token; the console's own origin is not.
    auth = f"Authorization: Bearer {server.token}"
    status, body = server.curl("/api/status", "-H", auth, "-H", "Origin: http://evil.example")
    assert status == 403 and "evil.example" in json.loads(body)["error"]
    status, _ = server.curl("/api/status", "-H", auth, "-H", f"Origin: http://{server.admin}")
    assert status == 200
    # Every error answers in JSON, axum's own rejections too.
    status, body = server.curl("/api/find", "-X", "POST", "-H", auth, "-d", "not json")
    assert status in (400, 415) and "error" in json.loads(body)
    status, body = server.curl("/api/nowhere", "-H", auth)
    assert status == 404 and json.loads(body) == {"error": "Not Found"}


def test_openapi_document_describes_the_api(server):
    status, body = server.curl("/api/openapi.json")
    assert status == 200
    doc = json.loads(body)
    assert doc["openapi"].startswith("3.")
    for path in ["/api/status", "/api/users", "/api/queues", "/api/audit", "/api/smtp/{action}",
                 "/api/backups", "/api/lockdown", "/api/recover", "/api/clusters", "/api/clusters/{id}"]:
        assert path in doc["paths"], path


def test_status_shows_listeners_queues_and_store(server):
    s = server.cli_json("status")
    names = {l["name"]: l for l in s["listeners"]}
    assert names["smtp"]["up"] and names["smtp"]["address"].endswith(str(server.smtp_port))
    assert names["admin"]["address"] == server.admin
    assert s["user_access"] == "enabled"
    assert {q["name"] for q in s["queues"]} >= {"inbound", "local", "poison"}
    assert all(q["state"] == "active" for q in s["queues"])
    assert s["store"]["messages"] == 0
    text = server.cli("status").stdout
    assert "inbound" in text and "Listeners" in text


def test_accounts_and_audit(server):
    r = server.cli("user", "add", "x@nowhere.test", "--password-stdin", input="pw\n", check=False)
    assert r.returncode == 2 and "domain add nowhere.test" in r.stderr
    server.cli("domain", "add", "example.test")
    r = server.cli("domain", "add", "example.test", check=False)
    assert r.returncode == 2 and "already exists" in r.stderr
    server.add_user("Dave@Example.test", "pw1")
    users = {u["address"]: u for u in server.cli_json("user", "list")}
    assert "dave@example.test" in users
    r = server.cli("user", "add", "eve@example.test", check=False)  # no terminal, no --password-stdin
    assert r.returncode == 2 and "--password-stdin" in r.stderr
    server.cli("user", "passwd", "dave@example.test", "--password-stdin", input="pw2\n")
    r = server.cli("domain", "remove", "example.test", check=False)
    assert r.returncode == 2 and "user" in r.stderr
    # Passwords are stored as argon2 hashes, never in the clear.
    [(stored,)] = server.sql("SELECT password FROM users WHERE address='dave@example.test'")
    assert stored.startswith("$argon2id$") and "pw2" not in stored
    folders = [f["name"] for f in server.cli_json("mailbox", "list", "dave@example.test")]
    assert folders == ["INBOX", "Sent", "Drafts", "Trash", "Junk"]

    with server.smtp() as s:
        s.sendmail("x@far.test", ["dave@example.test"], "Subject: keep me\r\n\r\nx\r\n")
    server.wait_delivered("dave@example.test", 1)
    r = server.cli("user", "remove", "dave@example.test", check=False)
    assert r.returncode == 2 and "--delete-mail" in r.stderr
    assert "has 1 message(s)" in r.stderr, "it says how many it would destroy"
    assert len(server.inbox("dave@example.test")) == 1, "and touches nothing when refused"
    r = server.cli("user", "remove", "dave@example.test", "--delete-mail")
    assert "1 messages deleted" in r.stdout
    server.cli("domain", "remove", "example.test")
    assert "example.test" not in [d["name"] for d in server.cli_json("domain", "list")]


    audit = server.cli_json("audit", "--since", "1h")
    actions = [(a["action"], a["query"]) for a in audit]
    for want in [
        ("domain add", "example.test"),
        ("user add", "dave@example.test"),
        ("user passwd", "dave@example.test"),
        ("user remove", "dave@example.test"),
        ("domain remove", "example.test"),
    ]:
        assert want in actions, want
    removal = next(a for a in audit if a["action"] == "user remove")
    assert removal["count"] == 1 and removal["actor"].startswith("cli:")
    assert all(a["at"] > time.time() - 3600 for a in audit)
    r = server.cli("audit", "--since", "soon", check=False)
    assert r.returncode == 2 and "duration" in r.stderr


def test_cli_exit_3_when_server_is_down(server):
    server.stop()
    r = server.cli("status", check=False)
    assert r.returncode == 3
    assert "lazaret serve" in r.stderr


def test_bad_config_names_key_and_line(tmp_path):
    cases = [
        ('[smtp]\nmax_message_size = "lots"\n', ["max_message_size", "line 2", "lots"]),
        ('[smtp]\nlisten = ["not-an-address"]\n', ["listen", "line 2"]),
        ("[smpt]\nlisten = []\n", ["smpt"]),
        ('data_dir = 5\n', ["data_dir", "line 1"]),
        ('[store]\nbackend = "postgres"\n', ["store.url"]),
        ("this is not toml\n", ["line 1"]),
    ]
    for text, needles in cases:
        cfg = tmp_path / "bad.toml"
        cfg.write_text(text)
        r = subprocess.run([BIN, "serve", "-c", str(cfg)], capture_output=True, text=True, timeout=20)
        assert r.returncode == 2, (text, r.stderr)
        assert "panicked" not in r.stderr
        for n in needles:
            assert n in r.stderr, (text, n, r.stderr)
    r = subprocess.run([BIN, "serve", "-c", str(tmp_path / "missing.toml")], capture_output=True, text=True)
    assert r.returncode == 2 and "missing.toml" in r.stderr
    r = subprocess.run([BIN, "frobnicate"], capture_output=True, text=True)
    assert r.returncode == 2


def test_second_server_on_same_data_dir_is_refused(server):
    r = subprocess.run([BIN, "serve", "-c", str(server.config)], capture_output=True, text=True, timeout=20)
    assert r.returncode != 0 and "already using" in r.stderr


def test_builtin_defaults(tmp_path):
    """No config at all: ./lazaret-data, loopback ports, local domain localhost, and a
    banner that says how to add a user."""
    proc = subprocess.Popen([BIN, "serve"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        listeners = tmp_path / "lazaret-data" / "listeners.json"
        deadline = time.time() + 20
        while not listeners.exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.time() < deadline
            time.sleep(0.05)
        info = json.loads(listeners.read_text())
        assert info["smtp"] == ["127.0.0.1:2525"] and info["admin"] == "127.0.0.1:8025"
        assert info["pop3"] == ["127.0.0.1:2110"]
        assert info["submission"] == ["127.0.0.1:2587"]
        r = subprocess.run([BIN, "domain", "list", "--json"], cwd=tmp_path, capture_output=True, text=True)
        assert [d["name"] for d in json.loads(r.stdout)] == ["localhost"]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    assert "127.0.0.1:2525" in out and "lazaret user add" in out
    assert not listeners.exists(), "a clean stop removes listeners.json"


def test_a_nul_character_in_a_name_is_the_request_s_fault(server):
    """SQLite keeps a NUL in text, PostgreSQL's text cannot hold one: on either store a
    name with one is answered as a bad request, never as a server error (schemathesis
    found the 500 on PostgreSQL)."""
    auth = ["-H", f"Authorization: Bearer {server.token}", "-H", "Content-Type: application/json"]
    for path, body in [
        ("/api/queues/freeze", {"queues": ["in\u0000bound"]}),
        ("/api/domains", {"name": "nul\u0000.test"}),
    ]:
        code, text = server.curl(path, "-X", "POST", *auth, "-d", json.dumps(body))
        assert 400 <= code < 500, (path, code, text)
    assert server.proc.poll() is None
