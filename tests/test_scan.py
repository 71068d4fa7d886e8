"""Scanning: the same ClamAV signature files give the same detections in `lazaret scan`
as in a real `clamscan`; EICAR in every wrapping; bombs and broken archives get a
verdict; on_ingest reject, quarantine and tag over real SMTP; signatures added and
removed without a restart; rescan quarantines mail already delivered; clamd as a second
engine on a unix socket, down and up again."""

import base64
import gzip
import hashlib
import io
import json
import os
import pathlib
import random
import shutil
import subprocess
import tarfile
import time
import zipfile
from email.message import EmailMessage

import pytest

from conftest import BIN

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
TESTFILES = pathlib.Path("/usr/share/clamav-testfiles")
CLAMSCAN = shutil.which("clamscan")
CLAMD = shutil.which("clamd") or ("/usr/sbin/clamd" if os.path.exists("/usr/sbin/clamd") else None)

HASHED = b"MZ hashed worm body \x00\x01" * 40
SHA_ONLY = b"sha256 listed payload \xfe" * 33
PATTERN_HIT = b"prefix bytes WORMSTART\x01\x02middle-bytesWORMEND suffix"


def zip_of(files):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files:
            z.writestr(name, data)
    return buf.getvalue()


def tar_gz_of(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def mail_with(name, data, subject="Your documents"):
    m = EmailMessage()
    m["From"] = "friend@infected.test"
    m["To"] = "alice@localhost"
    m["Subject"] = subject
    m.set_content("Please open the attachment.\n")
    m.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return m.as_bytes()


def write_signatures(d: pathlib.Path):
    """ClamAV-format files both scanners load."""
    d.mkdir(parents=True, exist_ok=True)
    hdb = [
        f"{hashlib.md5(HASHED).hexdigest()}:{len(HASHED)}:Test.Worm.Md5",
        f"{hashlib.md5(EICAR).hexdigest()}:{len(EICAR)}:Eicar-Test-Signature",
    ]
    ndb = [
        # Wildcards: ?? single byte, {n-m} range, * anything, (a|b) alternatives.
        "Test.Worm.Pattern:0:*:574f524d5354415254??026d69{2-16}454e44(2073|4f46)",
        "Test.Worm.Offset:0:0:2550444621",  # "%PDF!" at offset 0
    ]
    if (TESTFILES / "clam.exe").exists():
        clam = (TESTFILES / "clam.exe").read_bytes()
        hdb.append(f"{hashlib.md5(clam).hexdigest()}:{len(clam)}:Test.ClamExe.Md5")
        ndb.append(f"Test.ClamExe.Body:1:*:{clam[16:32].hex()}*{clam[-16:].hex()}")
    (d / "test.hdb").write_text("\n".join(hdb) + "\n")
    (d / "test.hsb").write_text(f"{hashlib.sha256(SHA_ONLY).hexdigest()}:*:Test.Worm.Sha256:73\n")
    (d / "test.ndb").write_text("\n".join(ndb) + "\n")


def build_corpus(root: pathlib.Path):
    rng = random.Random(7)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(30):
        (root / f"clean{i}.bin").write_bytes(rng.randbytes(rng.randint(10, 20000)))
    (root / "text.txt").write_text("nothing to see here\n" * 50)
    (root / "hashed.exe").write_bytes(HASHED)
    (root / "hashed-plus-one.exe").write_bytes(HASHED + b"!")
    (root / "sha.bin").write_bytes(SHA_ONLY)
    (root / "pattern.bin").write_bytes(PATTERN_HIT)
    (root / "pattern-alt.bin").write_bytes(b"xxWORMSTART\x99\x02mi abcENDOF")
    (root / "pattern-miss.bin").write_bytes(b"xxWORMSTART\x99\x02mi" + b"z" * 40 + b"WORMEND")
    (root / "offset.pdf").write_bytes(b"%PDF! yes")
    (root / "offset-late.pdf").write_bytes(b" %PDF! no")
    (root / "eicar.com").write_bytes(EICAR)
    (root / "worms.zip").write_bytes(zip_of([("a/hashed.exe", HASHED), ("clean.txt", b"ok")]))
    (root / "nested.zip").write_bytes(zip_of([("inner.zip", zip_of([("deep/sha.bin", SHA_ONLY)]))]))
    (root / "bundle.tar.gz").write_bytes(tar_gz_of([("x/pattern.bin", PATTERN_HIT), ("y/eicar.com", EICAR)]))
    (root / "single.gz").write_bytes(gzip.compress(HASHED))
    (root / "hashed.eml").write_bytes(mail_with("invoice.exe", HASHED))
    (root / "zipped.eml").write_bytes(mail_with("docs.zip", zip_of([("sha.bin", SHA_ONLY)])))
    (root / "clean.eml").write_bytes(mail_with("photo.jpg", rng.randbytes(3000)))
    sub = root / "sub" / "dir"
    sub.mkdir(parents=True)
    (sub / "eicar.zip").write_bytes(zip_of([("eicar.com", EICAR)]))
    for name in ["clam.exe", "clam.zip", "clam.tar.gz", "clam.exe.mbox.base64"]:
        if (TESTFILES / name).exists():
            shutil.copy(TESTFILES / name, root / name)


def clamscan_detections(sigdir, corpus):
    r = subprocess.run(
        [CLAMSCAN, "--no-summary", "--allmatch", "-r", "-d", str(sigdir), str(corpus)],
        capture_output=True, text=True, timeout=600,
    )
    assert r.returncode in (0, 1), r.stderr
    found = {}
    for line in r.stdout.splitlines():
        if line.endswith(" FOUND"):
            path, name = line[: -len(" FOUND")].rsplit(": ", 1)
            found.setdefault(path, set()).add(name.removesuffix(".UNOFFICIAL"))
    return found


def lazaret_scan(*args, config=None):
    cmd = [BIN] + (["-c", str(config)] if config else []) + ["scan", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(not CLAMSCAN, reason="clamscan (Debian package clamav) not installed")
def test_same_detections_as_clamscan(tmp_path):
    sigdir, corpus = tmp_path / "sigs", tmp_path / "corpus"
    write_signatures(sigdir)
    build_corpus(corpus)
    expected = clamscan_detections(sigdir, corpus)
    r = lazaret_scan("-d", sigdir, corpus, "--json")
    assert r.returncode == 1, r.stderr
    ours = {f["path"]: set(f["signatures"]) for f in json.loads(r.stdout) if f["signatures"]}
    assert ours == expected
    # The corpus exercises every kind: hashes, patterns, offsets, archives, mail.
    flat = set().union(*expected.values())
    for name in ["Test.Worm.Md5", "Test.Worm.Sha256", "Test.Worm.Pattern", "Test.Worm.Offset", "Eicar-Test-Signature"]:
        assert name in flat, name
    if (TESTFILES / "clam.exe").exists():
        assert {"Test.ClamExe.Md5", "Test.ClamExe.Body"} <= expected[str(corpus / "clam.zip")]
    assert str(corpus / "nested.zip") in ours and str(corpus / "zipped.eml") in ours


def test_scan_exit_codes_eicar_and_limits(tmp_path):
    d = tmp_path / "files"
    d.mkdir()
    (d / "clean.txt").write_text("hello\n")
    r = lazaret_scan(d)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{d}/clean.txt: OK" in r.stdout and "Infected files: 0" in r.stdout

    wrappings = {
        "eicar.com": EICAR,
        "eicar.zip": zip_of([("eicar.com", EICAR)]),
        "nested.zip": zip_of([("n.zip", zip_of([("m.zip", zip_of([("eicar.com", EICAR)]))]))]),
        "eicar.tar.gz": tar_gz_of([("e/eicar.com", EICAR)]),
        "eicar.eml": mail_with("eicar.com", EICAR),
        "eicar-zip.eml": mail_with("e.zip", zip_of([("eicar.com", EICAR)])),
        "forwarded.eml": mail_with("fwd.eml", mail_with("eicar.com", EICAR)),
    }
    for name, data in wrappings.items():
        (d / name).write_bytes(data)
    (d / "bomb.zip").write_bytes(zip_of([("zeros.bin", b"\0" * (60 << 20))]))
    truncated = zip_of([("a.txt", os.urandom(5000)), ("b.txt", b"more")])
    (d / "truncated.zip").write_bytes(truncated[: len(truncated) - 40])
    r = lazaret_scan(d, "--json")
    assert r.returncode == 1, r.stderr
    by_name = {pathlib.Path(f["path"]).name: f["signatures"] for f in json.loads(r.stdout)}
    for name in wrappings:
        assert by_name[name] == ["Eicar-Test-Signature"], name
    assert by_name["bomb.zip"] == ["Heuristics.Limits.Exceeded"]
    assert by_name["truncated.zip"] == ["Heuristics.Broken.Archive"]
    assert by_name["clean.txt"] == []

    r = lazaret_scan(d / "missing")
    assert r.returncode == 2 and "ERROR" in r.stderr
    bad = tmp_path / "bad.ndb"
    bad.write_text("Good.One:0:*:41424344\nBad.One:0:*:41zz\n")
    r = lazaret_scan("-d", bad, d)
    assert r.returncode == 2 and "bad.ndb:2:" in r.stderr and "not a hex byte" in r.stderr


def eicar_mail(to, subject="Invoice"):
    return mail_with("eicar.com", EICAR, subject).replace(b"alice@localhost", to.encode())


def wait_for(predicate, timeout=20, what="condition"):
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_on_ingest_reject(make_server):
    s = make_server('[scan]\non_ingest = "reject"\n')
    s.add_user("alice@localhost")
    with s.smtp() as c:
        c.ehlo()
        c.mail("friend@infected.test")
        c.rcpt("alice@localhost")
        code, reply = c.data(eicar_mail("alice@localhost"))
        assert code == 550 and b"5.7.1" in reply and b"Eicar-Test-Signature" in reply
        c.rset()
        c.sendmail("friend@far.test", ["alice@localhost"], mail_with("notes.txt", b"fine"))
    s.wait_delivered("alice@localhost", 1)
    assert len(s.cli_json("find", "--in", "all")) == 1, "the rejected message was never stored"


def test_on_ingest_quarantine_and_tag(make_server):
    s = make_server()  # quarantine is the default
    s.add_user("alice@localhost")
    with s.smtp() as c:
        assert c.sendmail("friend@infected.test", ["alice@localhost"], eicar_mail("alice@localhost")) == {}
        c.sendmail("friend@far.test", ["alice@localhost"], mail_with("notes.txt", b"fine"))
    s.wait_delivered("alice@localhost", 1)
    q = wait_for(lambda: s.cli_json("find", "--in", "quarantine"), what="quarantine")
    assert len(q) == 1 and q[0]["subject"] == "Invoice"
    detail = s.cli_json("quarantine", "show", q[0]["id"])
    assert "Eicar-Test-Signature" in json.dumps(detail)
    assert [m["id"] for m in s.cli_json("find", "--signature", "Eicar-Test-Signature", "--in", "all")] == [q[0]["id"]]
    time.sleep(1)
    assert len(s.inbox("alice@localhost")) == 1, "the infected copy never reaches the mailbox"
    assert s.queues().get("local", {}).get("messages", 0) == 0
    audit = s.cli_json("audit")
    assert any(a["action"] == "scan quarantine" and a["actor"] == "scanner" for a in audit)
    status = s.cli_json("status")
    assert status["scan"]["on_ingest"] == "quarantine" and status["unscanned"] == 0

    t = make_server('[scan]\non_ingest = "tag"\n')
    t.add_user("alice@localhost")
    with t.smtp() as c:
        c.sendmail("friend@infected.test", ["alice@localhost"], eicar_mail("alice@localhost"))
    t.wait_delivered("alice@localhost", 1)
    p = t.pop3("alice@localhost")
    text = b"\n".join(p.retr(1)[1])
    p.quit()
    assert text.startswith(b"X-Lazaret-Scan: infected (Eicar-Test-Signature)"), text[:200]


def test_signatures_and_rescan(make_server, tmp_path):
    s = make_server()
    s.add_user("alice@localhost")
    s.add_user("bob@localhost")
    for to in ["alice@localhost", "bob@localhost"]:
        with s.smtp() as c:
            c.sendmail("w@infected.test", [to], mail_with("invoice.exe", HASHED, f"Hi {to}"))
            c.sendmail("w@infected.test", [to], mail_with("page.bin", PATTERN_HIT, "pattern"))
            c.sendmail("ok@far.test", [to], mail_with("notes.txt", b"fine"))
    s.wait_delivered("alice@localhost", 3)
    s.wait_delivered("bob@localhost", 3)
    before = s.cli_json("signatures", "list")["version"]

    bad = tmp_path / "broken.ndb"
    bad.write_text("Ok.Sig:0:*:41424344\nBroken:7:*:4142\n")
    r = s.cli("signatures", "add", str(bad), check=False)
    assert r.returncode == 2 and "broken.ndb:2:" in r.stderr and "target type 7" in r.stderr

    sigs = tmp_path / "sigs"
    write_signatures(sigs)
    r = s.cli("signatures", "add", str(sigs / "test.hdb"))
    assert "added: test.hdb" in r.stdout
    listing = s.cli_json("signatures", "list")
    assert listing["version"] != before
    assert [f["name"] for f in listing["files"]] == ["test.hdb"]
    assert s.cli_json("status")["scan"]["version"] == listing["version"]

    # Hash signatures are answered from the index: no message is read.
    report = json.loads(s.cli("rescan", "--json").stdout)
    assert report["quarantined"] == 2 and report["signatures"] == ["Test.Worm.Md5"]
    assert report["messages_scanned"] == 0 and report["hash_signatures_checked"] >= 1
    assert len(s.inbox("alice@localhost")) == 2 and len(s.inbox("bob@localhost")) == 2

    # A body pattern needs the contents: every message is read once.
    r = s.cli("signatures", "update", str(sigs))
    assert "added: test.hsb, test.ndb" in r.stdout and "unchanged: test.hdb" in r.stdout
    report = json.loads(s.cli("rescan", "--mailboxes", "--json").stdout)
    assert report["quarantined"] == 2 and report["signatures"] == ["Test.Worm.Pattern"]
    assert report["messages_scanned"] == 4
    again = json.loads(s.cli("rescan", "--json").stdout)
    assert again["messages_scanned"] == 0 and again["quarantined"] == 0
    assert [m["subject"] for m in s.inbox("alice@localhost")] == ["Your documents"]
    found = s.cli_json("find", "--in", "quarantine", "--signature", "Test.Worm.Pattern")
    assert len(found) == 2

    # New mail is scanned with the new set at once, no restart.
    with s.smtp() as c:
        c.sendmail("w@infected.test", ["alice@localhost"], mail_with("invoice.exe", HASHED, "again"))
    wait_for(lambda: len(s.cli_json("find", "--in", "quarantine")) == 5, what="ingest quarantine")

    # Removing a signature by name rewrites its file; by file name removes the file.
    r = s.cli("signatures", "remove", "Test.Worm.Offset")
    assert "removed 1 signature(s)" in r.stdout
    s.cli("signatures", "remove", "test.hsb")
    names = [f["name"] for f in s.cli_json("signatures", "list")["files"]]
    assert names == ["test.hdb", "test.ndb"]
    assert s.cli("signatures", "remove", "No.Such.Sig", check=False).returncode == 2
    actions = [a["action"] for a in s.cli_json("audit")]
    for a in ["signatures add", "signatures update", "rescan", "signatures remove"]:
        assert a in actions, a

    # A restored false positive goes back to its folder.
    x = s.cli_json("find", "--in", "quarantine", "--subject", "pattern")[0]["id"]
    s.cli("quarantine", "restore", x)
    assert "pattern" in [m["subject"] for m in s.inbox("alice@localhost") + s.inbox("bob@localhost")]


def test_sigkill_while_the_scanner_quarantines_loses_nothing(make_server):
    """Killed mid-way through a backlog, the after-queue scanner resumes on restart:
    every infected message ends in quarantine once, every clean one in the mailbox
    once, and nothing infected reaches the mailbox in between."""
    s = make_server()
    s.add_user("alice@localhost")
    total = 3000
    s.cli("queue", "freeze", "inbound")  # a backlog, as in a flood that outruns the scanner
    with s.smtp() as c:
        for n in range(total):
            if n % 2:
                c.sendmail("w@infected.test", ["alice@localhost"], eicar_mail("alice@localhost", f"worm {n}"))
            else:
                c.sendmail("ok@far.test", ["alice@localhost"], mail_with("notes.txt", b"fine", f"clean {n}"))
    assert s.cli_json("status")["unscanned"] == total
    s.cli("queue", "thaw", "inbound")
    seen = wait_for(lambda: len(s.cli_json("quarantine", "list")), timeout=60, what="the scanner to start")
    s.kill9()
    assert seen < total // 2, "killed mid-way"
    s.start()
    wait_for(lambda: s.cli_json("status")["unscanned"] == 0, timeout=120, what="the scanner to finish")
    inbox = s.wait_delivered("alice@localhost", total // 2, timeout=120)
    subjects = sorted(m["subject"] for m in inbox)
    assert subjects == sorted(f"clean {n}" for n in range(0, total, 2))
    held = sorted(q["subject"] for q in s.cli_json("quarantine", "list"))
    assert held == sorted(f"worm {n}" for n in range(1, total, 2))


def test_rescan_whole_message_md5_and_sha1(make_server, tmp_path):
    """Whole-message MD5 signatures are answered from the index; SHA-1 ones (not in the
    index) read only the messages with an object of the signature's size, or all of
    them for a signature of any size."""
    s = make_server()
    s.add_user("alice@localhost")
    sha1_payload = b"sha1 listed payload \x07" * 61  # 1,342 bytes, a size no other part has
    with s.smtp() as c:
        c.sendmail("w@infected.test", ["alice@localhost"], mail_with("a.bin", sha1_payload, "sha1"))
        c.sendmail("w@infected.test", ["alice@localhost"], mail_with("notes.txt", b"whole", "whole"))
        for i in range(3):
            c.sendmail("ok@far.test", ["alice@localhost"], mail_with("notes.txt", b"fine", f"clean {i}"))
    s.wait_delivered("alice@localhost", 5)
    whole_id = s.cli_json("find", "--subject", "whole")[0]["id"]
    s.cli("export", "--ids", whole_id, "--eml-dir", str(tmp_path / "eml"))
    (stored,) = (tmp_path / "eml").iterdir()
    whole = stored.read_bytes()
    sigs = tmp_path / "sigs"
    sigs.mkdir()
    (sigs / "whole.hdb").write_text(f"{hashlib.md5(whole).hexdigest()}:{len(whole)}:Test.Whole.Md5\n")
    if CLAMSCAN:  # the exported file is the message the signature names, for ClamAV too
        assert clamscan_detections(sigs, stored) == {str(stored): {"Test.Whole.Md5"}}
    s.cli("signatures", "add", str(sigs / "whole.hdb"))
    report = json.loads(s.cli("rescan", "--json").stdout)
    assert report["signatures"] == ["Test.Whole.Md5"] and report["messages_scanned"] == 0, report
    assert [m["subject"] for m in s.cli_json("find", "--in", "quarantine")] == ["whole"]

    (sigs / "sha1.hsb").write_text(f"{hashlib.sha1(sha1_payload).hexdigest()}:{len(sha1_payload)}:Test.Sha1\n")
    s.cli("signatures", "add", str(sigs / "sha1.hsb"))
    report = json.loads(s.cli("rescan", "--json").stdout)
    assert report["signatures"] == ["Test.Sha1"] and report["quarantined"] == 1
    assert report["messages_scanned"] == 1, report

    (sigs / "any.hsb").write_text(f"{hashlib.sha1(b'fine').hexdigest()}:*:Test.Sha1.Any:73\n")
    s.cli("signatures", "add", str(sigs / "any.hsb"))
    report = json.loads(s.cli("rescan", "--json").stdout)
    assert report["messages_scanned"] == 3 and report["quarantined"] == 3, report
    assert s.inbox("alice@localhost") == []
    assert json.loads(s.cli("rescan", "--json").stdout)["messages_scanned"] == 0


@pytest.mark.skipif(not CLAMD, reason="clamd (Debian package clamav-daemon) not installed")
def test_clamd_second_engine(make_server, tmp_path):
    db = tmp_path / "clamdb"
    db.mkdir()
    only_clamd = b"a payload only clamd knows \x07\x08" * 10
    (db / "clamd-only.ndb").write_text(f"Test.ClamdOnly:0:*:{only_clamd[:24].hex()}\n")
    sock = tmp_path / "clamd.ctl"
    conf = tmp_path / "clamd.conf"
    conf.write_text(
        f"LocalSocket {sock}\nDatabaseDirectory {db}\nForeground yes\n"
        f"LogFile {tmp_path}/clamd.log\nTemporaryDirectory {tmp_path}\n"
        f"PidFile {tmp_path}/clamd.pid\nLogVerbose no\n"
    )

    def start_clamd():
        p = subprocess.Popen([CLAMD, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: sock.exists(), timeout=60, what="clamd socket")
        return p

    clamd = start_clamd()
    try:
        s = make_server(f'[scan]\nclamd = "unix:{sock}"\n')
        s.add_user("alice@localhost")
        status = s.cli_json("status")["scan"]["clamd"]
        assert status["state"] == "up" and "ClamAV" in status["detail"]
        with s.smtp() as c:
            c.sendmail("w@infected.test", ["alice@localhost"], mail_with("x.bin", only_clamd, "clamd finds"))
            c.sendmail("w@infected.test", ["alice@localhost"], eicar_mail("alice@localhost"))
            c.sendmail("ok@far.test", ["alice@localhost"], mail_with("notes.txt", b"fine", "clean"))
        q = wait_for(lambda: len(s.cli_json("find", "--in", "quarantine")) == 2 and s.cli_json("find", "--in", "quarantine"), what="quarantine")
        verdicts = {m["subject"]: m.get("verdict") for m in q}
        assert "Test.ClamdOnly.UNOFFICIAL" in (verdicts["clamd finds"] or "")
        s.wait_delivered("alice@localhost", 1)

        clamd.terminate()
        clamd.wait(timeout=30)
        if sock.exists():
            sock.unlink()
        with s.smtp() as c:
            c.sendmail("ok@far.test", ["alice@localhost"], mail_with("notes.txt", b"fine", "waits"))
        status = s.cli_json("status")
        assert status["scan"]["clamd"]["state"] == "down"
        assert "cannot reach clamd" in status["scan"]["clamd"]["detail"]
        time.sleep(2)
        assert len(s.inbox("alice@localhost")) == 1, "fail closed: nothing unscanned is delivered"
        assert s.cli_json("status")["unscanned"] == 1
        out = s.cli("status").stdout
        assert "DOWN" in out and "waiting for the scanner" in out

        clamd = start_clamd()
        s.wait_delivered("alice@localhost", 2, timeout=40)
    finally:
        clamd.terminate()
        clamd.wait(timeout=30)
