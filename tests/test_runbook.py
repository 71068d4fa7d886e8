"""The outbreak runbook end to end: online backups (create under SMTP load, list,
verify, restore into a server that serves the same store, prune, a corrupted byte, a
SIGKILL mid-backup), `lockdown` and `recover`, and the whole drill: a worm over SMTP
and submission, contained, found by its attachment, removed without bounces, the
mailboxes cleaned, new signatures in, mail and users back."""

import base64
import hashlib
import imaplib
import json
import os
import pathlib
import re
import smtplib
import sqlite3
import subprocess
import threading
import time

import pytest

from conftest import BIN, Server, embedded_only
from peer import Peer
from test_outbound import relay_config, submit, wait_for
from test_scan import HASHED, mail_with, zip_of

WORM_ZIP = zip_of([("invoice.exe", HASHED)])
WORM_SHA256 = hashlib.sha256(WORM_ZIP).hexdigest()


def worm(to, n, sender=None):
    """Each copy with its own subject and sender, as worms do; the attachment is the
    one thing that stays."""
    m = mail_with("documents.zip", WORM_ZIP, subject=f"Re: your order #{1000 + n}")
    text = m.replace(b"friend@infected.test", (sender or f"user{n}@infected{n}.test").encode())
    return text.replace(b"To: alice@localhost", f"To: {to}".encode())


def signature_file(d: pathlib.Path) -> pathlib.Path:
    d.mkdir(parents=True, exist_ok=True)
    p = d / "worm.hdb"
    p.write_text(f"{hashlib.md5(HASHED).hexdigest()}:{len(HASHED)}:Test.Drill.Worm\n")
    return p


def folder_snapshot(server, users):
    """Every message of every folder of these users: (user, folder) -> sorted SHA-256s,
    read back through the admin API (the stored bytes)."""
    out = {}
    for user in users:
        for box in server.cli_json("mailbox", "list", user):
            digests = []
            for m in server.inbox(user, box["name"]):
                _, raw = server.curl(f"/api/messages/{m['id']}/raw", "-H", f"Authorization: Bearer {server.token}")
                digests.append(hashlib.sha256(raw.encode()).hexdigest())
            out[(user, box["name"])] = (box["uidvalidity"], box["uidnext"], sorted(digests))
    return out


def restore_and_serve(server, backup_id, tmp_path, name):
    """Restores a backup of `server` into a new directory and starts a server on it."""
    workdir = tmp_path / name
    workdir.mkdir()
    r = server.cli("backup", "restore", backup_id, "--to", str(workdir / "data"))
    assert "restored backup" in r.stdout and "lazaret serve -c" in r.stdout
    restored_config = (workdir / "data" / "lazaret.toml").read_text()
    assert f'data_dir = "{workdir / "data"}"' in restored_config
    # The test harness writes its own config (same settings, ports 0) for the new dir.
    return Server(workdir, server.extra_config)


@embedded_only
def test_backup_create_list_verify_restore_prune(make_server, tmp_path):
    s = make_server()
    s.add_user("alice@localhost")
    s.add_user("bob@localhost")
    for i in range(20):
        s.send("alice@localhost" if i % 2 else "bob@localhost", f"clean {i}")
    s.wait_delivered("alice@localhost", 10)
    s.wait_delivered("bob@localhost", 10)
    # State a restore must bring back: flags, a folder, quarantine with its origin,
    # frozen queue, SMTP stopped, access disabled.
    with s.imap("alice@localhost") as m:
        m.select("INBOX")
        m.store("1:3", "+FLAGS", "(\\Seen \\Flagged)")
        m.create("Projects")
        m.copy("4", "Projects")
    s.cli("quarantine", "--subject", "clean 7", "--yes", "--reason", "looked odd")
    s.cli("queue", "freeze", "local")

    # Backup while mail keeps coming: nothing acknowledged is lost or blocked.
    acked = []

    def load():
        with s.smtp() as c:
            for i in range(150):
                c.sendmail("load@far.test", ["bob@localhost"], f"Subject: during {i}\r\n\r\n{'x' * 2000}\r\n")
                acked.append(i)

    t = threading.Thread(target=load)
    t.start()
    r = s.cli("backup", "create")
    t.join()
    assert "(full)" in r.stdout, r.stdout
    full_id = r.stdout.split()[1]
    assert len(acked) == 150
    s.cli("queue", "thaw", "local")
    for i in range(5):
        s.send("bob@localhost", f"after the full backup {i}")
    s.wait_delivered("bob@localhost", 10 + 150 + 5)

    s.cli("smtp", "stop")
    s.cli("access", "disable", "--message", "Maintenance")
    r = s.cli("backup", "create")
    assert "incremental, on top of " + full_id in r.stdout, r.stdout
    incr_id = r.stdout.split()[1]
    # The pack the full backup held up to its snapshot grew since: the incremental
    # holds only the bytes appended to it, and restore puts them after the earlier copy.
    grown = [f for f in backup_files(s, incr_id) if f["name"].startswith("blobs/packs/") and f.get("layers")]
    assert grown, backup_files(s, incr_id)
    full_packs = {f["name"]: f["size"] for f in backup_files(s, full_id)}
    for f in grown:
        assert [l["stored_in"] for l in f["layers"]] == [full_id, incr_id], f
        assert f["layers"][-1]["size"] == f["size"] - full_packs[f["name"]], f
    listing = s.cli_json("backup", "list")
    assert [b["id"] for b in listing] == [full_id, incr_id]
    assert listing[1]["stored_bytes"] < listing[0]["stored_bytes"] + listing[1]["total_bytes"]
    status = s.cli_json("status")["last_backup"]
    assert status["ok"] is True and status["id"] == incr_id
    r = s.cli("backup", "verify", incr_id)
    assert "is intact" in r.stdout
    # Little changed since (settings, audit): the next backups hold the database's
    # changed pages, not the whole file (the first incremental may hold it whole: the
    # mail that came during the full backup changed most of so small a database), and
    # build on each other; restore rebuilds the file from the whole copy and them all.
    incr2_id = s.cli("backup", "create").stdout.split()[1]
    incr3_id = s.cli("backup", "create").stdout.split()[1]
    assert database_layers(s, full_id) == []
    layers = database_layers(s, incr3_id)
    assert layers[-2:] == [incr2_id, incr3_id] and len(layers) >= 3, layers
    assert "is intact" in s.cli("backup", "verify", incr3_id).stdout

    expected = folder_snapshot(s, ["alice@localhost", "bob@localhost"])
    quarantined = s.cli_json("quarantine", "list")
    audit_before = len(s.cli_json("audit"))

    restored = restore_and_serve(s, incr3_id, tmp_path, "restored")
    try:
        assert folder_snapshot(restored, ["alice@localhost", "bob@localhost"]) == expected
        assert restored.cli_json("quarantine", "list") == quarantined
        # The lookups (left out of backups) were rebuilt at the first start.
        by_sender = restored.cli_json("find", "--from", "load@far.test", "--in", "all", "--limit", "0")
        assert len(by_sender) == 150, len(by_sender)
        one = by_sender[0]
        assert [m["id"] for m in restored.cli_json("find", "--sha256", one["sha256"], "--in", "all")] == [one["id"]]
        st = restored.cli_json("status")
        assert st["user_access"] == "disabled" and st["user_access_message"] == "Maintenance"
        assert [l["up"] for l in st["listeners"] if l["name"] == "smtp"] == [False]
        assert len(restored.cli_json("audit")) >= audit_before - 2
        restored.cli("access", "enable")
        with restored.imap("alice@localhost") as m:
            m.select("INBOX", readonly=True)
            typ, data = m.fetch("1:3", "(FLAGS)")
            assert all(b"\\Flagged" in d and b"\\Seen" in d for d in data), data
        # The restored store is a store of its own: its first backup into the same
        # directory does not build on the original's.
        r = restored.cli("backup", "create", "--to", str(s.data_dir / "backups"))
        assert "(full)" in r.stdout, r.stdout
    finally:
        restored.stop()

    # A restore never goes into a directory with something in it.
    r = s.cli("backup", "restore", incr_id, "--to", str(s.data_dir), check=False)
    assert r.returncode != 0 and "not empty" in r.stderr

    # A flipped byte: verify fails and names the file.
    db = s.data_dir / "backups" / layers[-3] / "lazaret.db.zst"
    data = bytearray(db.read_bytes())
    data[len(data) // 2] ^= 0xFF
    db.write_bytes(bytes(data))
    r = s.cli("backup", "verify", layers[-3], check=False)
    assert r.returncode == 1 and "lazaret.db.zst" in r.stderr, r.stderr
    # A later backup that rebuilds its database from that copy says so too.
    r = s.cli("backup", "verify", incr3_id, check=False)
    assert r.returncode == 1 and f"{layers[-3]}/lazaret.db.zst" in r.stderr, r.stderr

    # A flipped byte in the appended bytes of a pack: verify names that copy.
    tail = s.data_dir / "backups" / incr_id / (grown[0]["name"] + ".zst")
    data = bytearray(tail.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tail.write_bytes(bytes(data))
    r = s.cli("backup", "verify", incr_id, check=False)
    assert r.returncode == 1 and f"{incr_id}/{grown[0]['name']}.zst" in r.stderr, r.stderr

    # Prune keeps what a kept backup still needs.
    r = s.cli("backup", "create", "--full")
    assert "(full)" in r.stdout
    r = s.cli("backup", "prune", "--keep", "1")
    assert "removed 5 backup(s)" in r.stdout, r.stdout
    assert len(s.cli_json("backup", "list")) == 1
    assert "is intact" in s.cli("backup", "verify", s.cli_json("backup", "list")[0]["id"]).stdout
    actions = [a["action"] for a in s.cli_json("audit")]
    assert "backup started" in actions and "backup" in actions


def backup_files(server, backup_id):
    """The files a backup's manifest lists."""
    return json.loads((server.data_dir / "backups" / backup_id / "manifest.json").read_text())["files"]


def database_layers(server, backup_id):
    """The backups a backup's database is rebuilt from (empty: it holds the whole file)."""
    [db] = [f for f in backup_files(server, backup_id) if f["name"] == "lazaret.db"]
    return [layer["stored_in"] for layer in db.get("layers", [])]


@embedded_only
def test_page_copies_across_a_restart_and_after_another_program_wrote(make_server, tmp_path):
    s = make_server()
    s.add_user("alice@localhost")
    with s.smtp() as c:
        for i in range(400):
            c.sendmail("sender@far.test", ["alice@localhost"], f"Subject: before {i}\r\n\r\n{'text ' * 200}\r\n")
    s.wait_delivered("alice@localhost", 400)
    first = s.cli("backup", "create").stdout.split()[1]
    # The record of changed pages outlives a restart: the next backup copies pages.
    s.stop()
    s.start()
    for i in range(3):
        s.send("alice@localhost", f"after restart {i}")
    s.wait_delivered("alice@localhost", 403)
    second = s.cli("backup", "create").stdout.split()[1]
    assert database_layers(s, second) == [first, second]
    # Another program writes the database while the server is down (its connection
    # checkpoints when it closes): the record cannot vouch for the file any more, so
    # the next backup holds the whole database again.
    s.stop()
    db = sqlite3.connect(s.data_dir / "lazaret.db")
    db.execute("INSERT INTO settings(key, value) VALUES('written.by', 'sqlite3')")
    db.commit()
    db.close()
    s.start()
    third = s.cli("backup", "create").stdout.split()[1]
    assert database_layers(s, third) == []
    assert "is intact" in s.cli("backup", "verify", third).stdout
    restored = restore_and_serve(s, second, tmp_path, "restored-pages")
    try:
        with restored.imap("alice@localhost") as m:
            typ, data = m.select("INBOX", readonly=True)
            assert int(data[0]) == 403
    finally:
        restored.stop()


@embedded_only
def test_sigkill_during_a_backup_leaves_the_server_and_earlier_backups_intact(make_server):
    s = make_server()
    s.add_user("alice@localhost")
    # Enough incompressible mail that a backup takes a moment to write.
    with s.smtp() as c:
        for i in range(100):
            body = base64.encodebytes(os.urandom(768 * 1024)).replace(b"\n", b"\r\n")
            c.sendmail("load@far.test", ["alice@localhost"], f"Subject: big {i}\r\n\r\n".encode() + body)
    s.wait_delivered("alice@localhost", 100)
    first = s.cli("backup", "create").stdout.split()[1]
    backups = s.data_dir / "backups"
    started = subprocess.Popen([BIN, "-c", str(s.config), "backup", "create", "--full"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 20
    while not any(p.name.startswith(".") for p in backups.iterdir()):
        assert time.time() < deadline, "no backup under way"
    s.kill9()
    started.wait(timeout=30)
    assert [p.name for p in backups.iterdir() if p.name.startswith(".")], "killed mid-backup"
    s.start()
    assert len(s.inbox("alice@localhost")) == 100
    assert [b["id"] for b in s.cli_json("backup", "list")] == [first]
    assert "is intact" in s.cli("backup", "verify", first).stdout
    # The half-written one is swept by prune; a new backup works.
    s.cli("backup", "prune", "--keep", "5")
    assert not any(p.name.startswith(".") for p in backups.iterdir())
    assert "incremental" in s.cli("backup", "create").stdout


def test_lockdown_and_recover(make_server, tmp_path):
    s = make_server()
    s.add_user("alice@localhost")
    r = s.cli("lockdown", "--message", "Outbreak: back at noon")
    # Each step on a line: its name, ok, how long it took, its result.
    lines = r.stdout.splitlines()
    shape = [re.match(r"(.+?)\s+ok\s+\d+\.\d\d s .+$", line) for line in lines[:-1]]
    assert all(shape) and [m.group(1) for m in shape] == [
        "backup", "smtp stop", "outbound disable", "access disable", "freeze queues"
    ], r.stdout
    # The backup's ID in its directory; on a shared (PostgreSQL) store, skipped and why.
    assert re.search(r"ok\s+\S+ s (\d{8}T\d{6}Z in /|skipped: the PostgreSQL store)", lines[0]), lines[0]
    assert lines[-1] == "lockdown: done", r.stdout
    st = s.cli_json("status")
    assert st["lockdown"]["by"] and st["lockdown"]["signatures"] == st["scan"]["version"]
    assert "LOCKDOWN since" in s.cli("status").stdout
    with pytest.raises(OSError):
        smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=5)
    with pytest.raises(imaplib.IMAP4.error, match="back at noon"):
        s.imap("alice@localhost")
    assert all(q["state"] == "frozen" for q in s.cli_json("queue", "list"))
    # Idempotent, and the message users see stays.
    r = s.cli("lockdown", "--no-backup")
    assert "already stopped" in r.stdout and "back at noon" in r.stdout

    r = s.cli("recover", check=False)
    assert r.returncode == 1 and "signatures have not changed" in r.stderr
    r = s.cli("recover", "--force", check=False)
    assert r.returncode == 2 and "--reason" in r.stderr
    s.cli("signatures", "add", str(signature_file(tmp_path / "sigs")))
    r = s.cli("recover")
    for step in ["rescan", "thaw queues", "retry now", "outbound enable", "smtp start", "access enable"]:
        assert step in r.stdout, r.stdout
    st = s.cli_json("status")
    assert st["lockdown"] is None and st["user_access"] == "enabled"
    s.send("alice@localhost", "after recover")
    s.wait_delivered("alice@localhost", 1)
    r = s.cli("recover", check=False)
    assert r.returncode == 1 and "not in lockdown" in r.stderr
    actions = [a["action"] for a in s.cli_json("audit")]
    assert actions.index("lockdown") < actions.index("recover")


def test_outbreak_drill(make_server, tmp_path):
    peer = Peer()  # the smarthost is down while the worm spreads
    config = relay_config(peer, delivery='retry_schedule = ["1h"]\n')
    s = make_server(config)
    users = ["alice@localhost", "bob@localhost", "carol@localhost"]
    for u in users:
        s.add_user(u)
    # Clean mail: two messages in each mailbox, one clean message queued outbound.
    for u in users:
        for i in range(2):
            s.send(u, f"clean {u} {i}")
    for u in users:
        s.wait_delivered(u, 2)
    submit(s, ["partner@far.test"], subject="quarterly report", sender="alice@localhost")
    # The worm: over SMTP into two mailboxes, and out through carol's account.
    with s.smtp() as c:
        c.sendmail("x@infected1.test", ["alice@localhost"], worm("alice@localhost", 1))
        c.sendmail("y@infected2.test", ["bob@localhost"], worm("bob@localhost", 2))
    with s.submission() as c:
        c.login("carol@localhost", "secret")
        c.sendmail("carol@localhost", ["victim1@far.test"], worm("victim1@far.test", 3, "carol@localhost"))
        c.sendmail("carol@localhost", ["victim2@far.test"], worm("victim2@far.test", 4, "carol@localhost"))
    s.wait_delivered("alice@localhost", 3)
    s.wait_delivered("bob@localhost", 3)
    wait_for(lambda: s.queues().get("smarthost:relay", {}).get("messages", 0) == 3, what="three queued outbound")

    r = s.cli("lockdown", "--message", "Virus outbreak: mail is off")
    assert "lockdown: done" in r.stdout, r.stdout
    if s.store_url:
        # A PostgreSQL store is backed up by PostgreSQL's tools, not by lockdown.
        assert "pg_dump" in r.stdout and s.cli_json("status")["last_backup"] is None
        lockdown_backup = None
    else:
        lockdown_backup = s.cli_json("status")["last_backup"]["id"]
    before = folder_snapshot(s, users)

    # Find it by what does not change: the attachment.
    found = s.cli_json("find", "--sha256", WORM_SHA256, "--in", "all")
    assert len(found) == 4 and len({m["subject"] for m in found}) == 4
    r = s.cli("quarantine", "--sha256", WORM_SHA256, "--in", "queues", "--yes")
    assert "quarantined 2 message(s)" in r.stdout
    r = s.cli("sweep", "--sha256", WORM_SHA256, "--yes")
    assert "quarantined 2 message(s)" in r.stdout
    # A false positive, quarantined by mistake and given back.
    s.cli("quarantine", "--subject", "clean bob@localhost 1", "--yes")
    [fp] = s.cli_json("find", "--in", "quarantine", "--subject", "clean bob@localhost 1")
    s.cli("quarantine", "restore", fp["id"])

    # Fresh signatures; the copy dropped on disk is caught by the file scan.
    sig = signature_file(tmp_path / "sigs")
    s.cli("signatures", "add", str(sig))
    dropped = tmp_path / "dropped" / "documents.zip"
    dropped.parent.mkdir()
    dropped.write_bytes(WORM_ZIP)
    scan = subprocess.run([BIN, "-c", str(s.config), "scan", str(dropped.parent)], capture_output=True, text=True)
    assert scan.returncode == 1 and "Test.Drill.Worm" in scan.stdout

    peer.start()
    try:
        r = s.cli("recover")
        assert "recover: done" in r.stdout, r.stdout
        wait_for(lambda: len(peer.messages) == 1, what="the clean outbound message")
        time.sleep(1.5)
        assert len(peer.messages) == 1, "exactly once, and no worm copy"
        assert peer.messages[0]["rcpt_tos"] == ["partner@far.test"]
        for u in users:
            subjects = sorted(m["subject"] for m in s.inbox(u))
            assert subjects == [f"clean {u} 0", f"clean {u} 1"], (u, subjects)
        with s.imap("alice@localhost") as m:
            typ, data = m.select("INBOX")
            assert int(data[0]) == 2
        # A new copy after recover is quarantined on ingest.
        with s.smtp() as c:
            c.sendmail("z@infected9.test", ["alice@localhost"], worm("alice@localhost", 9))
        wait_for(lambda: len(s.cli_json("find", "--in", "quarantine", "--sha256", WORM_SHA256)) == 5,
                 what="the new copy in quarantine")
        assert len(s.inbox("alice@localhost")) == 2
        actions = [a["action"] for a in s.cli_json("audit")]
        story = ["lockdown", "quarantine", "sweep" if "sweep" in actions else "quarantine", "signatures add", "recover"]
        positions = [actions.index(a) for a in story]
        assert positions == sorted(positions), actions
    finally:
        peer.stop()

    if lockdown_backup is None:
        return
    # The lockdown backup serves the store as it was before the cleanup.
    restored = restore_and_serve(s, lockdown_backup, tmp_path, "before-cleanup")
    try:
        assert folder_snapshot(restored, users) == before
        assert len(restored.cli_json("find", "--sha256", WORM_SHA256, "--in", "all")) == 4
    finally:
        restored.stop()
