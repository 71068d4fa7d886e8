"""What mail carries inside: Debian's clamav-testfiles wrap the test program clam.exe in
archives, compressors, documents and text encodings. One SHA-256 signature of clam.exe
must find it in each of them with `lazaret scan` exactly when a real `clamscan` does
(ARJ in all five methods and 7z bombs made here with the real tools); the same files
sent over SMTP are indexed so `find --sha256` and a hash-signature `rescan` reach inside
them, and new mail carrying them is quarantined on ingest."""

import hashlib
import json
import os
import pathlib
import random
import shutil
import struct
import subprocess
import zlib

import pytest

from conftest import BIN
from test_scan import CLAMSCAN, TESTFILES, clamscan_detections, mail_with, wait_for

REQUIRED = "containers" in os.environ.get("LAZARET_TESTS_REQUIRE", "")
ARJ = shutil.which("arj")
SEVEN_ZIP = shutil.which("7zz") or shutil.which("7z")

# Every testfile that is a container or encoding Lazaret opens (executable packers,
# AutoIt scripts and InstallShield's own cabinets and encoded MSI streams are not).
CONTAINERS = [
    "clam.7z", "clam.arj", "clam.bin-be.cpio", "clam.bin-le.cpio", "clam.bz2.zip",
    "clam.cab", "clam.chm", "clam.d64.zip", "clam.exe.binhex", "clam.exe.bz2",
    "clam.exe.html", "clam.exe.mbox.base64", "clam.exe.mbox.uu", "clam.exe.rtf",
    "clam.exe.szdd", "clam.impl.zip", "clam.mail", "clam.newc.cpio", "clam.odc.cpio",
    "clam.ole.doc", "clam.pdf", "clam.ppt", "clam.sis", "clam.tar.gz", "clam.tnef",
    "clam.zip", "clam_IScab_ext.exe", "clam-nsis.exe",
]
# Mail files: sent as the message itself, not attached.
MAIL = {"clam.exe.mbox.base64", "clam.exe.mbox.uu", "clam.mail"}


def need(tool, what):
    if tool:
        return
    if REQUIRED:
        pytest.fail(f"{what} is required (LAZARET_TESTS_REQUIRE) but not installed")
    pytest.skip(f"{what} not installed")


@pytest.fixture
def clam():
    need((TESTFILES / "clam.exe").exists() and CLAMSCAN, "clamav-testfiles and clamscan")
    return (TESTFILES / "clam.exe").read_bytes()


def signatures(d: pathlib.Path, clam: bytes) -> pathlib.Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "clam.hsb").write_text(f"{hashlib.sha256(clam).hexdigest()}:{len(clam)}:Clam.Exe.Sha256\n")
    return d


def lazaret_json(*args):
    r = subprocess.run([BIN, "scan", "--json", *map(str, args)], capture_output=True, text=True, timeout=600)
    assert r.returncode in (0, 1), r.stderr
    return {f["path"]: f for f in json.loads(r.stdout)}


def test_every_container_found_as_clamscan_finds_it(tmp_path, clam):
    sigs = signatures(tmp_path / "sigs", clam)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in CONTAINERS:
        shutil.copy(TESTFILES / name, corpus / name)
    expected = clamscan_detections(sigs, corpus)
    ours = lazaret_json("-d", sigs, corpus)
    for name in CONTAINERS:
        path = str(corpus / name)
        assert expected.get(path) == {"Clam.Exe.Sha256"}, f"clamscan: {name}"
        assert set(ours[path]["signatures"]) == {"Clam.Exe.Sha256"}, f"{name}: {ours[path]}"
        # The member path says where inside the container clam.exe was.
        objects = [d["object"] for d in ours[path]["found_in"]]
        assert objects and all(o for o in objects), f"{name}: {objects}"

    # Over all 44 testfiles: at least 28 found by the signature (and the nested one
    # flagged as too deep), never one that clamscan leaves alone.
    everything = lazaret_json("-d", sigs, TESTFILES)
    named = [p for p, f in everything.items() if "Clam.Exe.Sha256" in f["signatures"]]
    assert len(named) >= 28, sorted(named)
    assert everything[str(TESTFILES / "clam_cache_emax.tgz")]["signatures"] == ["Heuristics.Limits.Exceeded"]
    assert len(everything) == len(list(TESTFILES.iterdir()))


def test_arj_methods_and_seven_zip_match_clamscan(tmp_path, clam):
    need(ARJ, "arj")
    need(SEVEN_ZIP, "7-Zip")
    sigs = signatures(tmp_path / "sigs", clam)
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(TESTFILES / "clam.exe", src / "clam.exe")
    # Text compresses with long matches: every code path of the decoders is taken.
    (src / "readme.txt").write_bytes(pathlib.Path(__file__).read_bytes() * 4)
    readme = (src / "readme.txt").read_bytes()
    (sigs / "readme.hsb").write_text(f"{hashlib.sha256(readme).hexdigest()}:{len(readme)}:Readme.Sha256\n")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for method in range(5):
        subprocess.run([ARJ, "a", f"-m{method}", str(corpus / f"m{method}.arj"), "clam.exe", "readme.txt"],
                       cwd=src, check=True, capture_output=True)
    for level in ["0", "1", "9"]:
        subprocess.run([SEVEN_ZIP, "a", f"-mx={level}", str(corpus / f"mx{level}.7z"), "clam.exe", "readme.txt"],
                       cwd=src, check=True, capture_output=True)
    subprocess.run([SEVEN_ZIP, "a", "-mm=BZip2", str(corpus / "bzip2.7z"), "clam.exe"], cwd=src, check=True,
                   capture_output=True)
    expected = clamscan_detections(sigs, corpus)
    ours = lazaret_json("-d", sigs, corpus)
    # ClamAV's 7z reader decodes LZMA only; Lazaret also opens 7z's other methods.
    bzip2_7z = str(corpus / "bzip2.7z")
    assert bzip2_7z not in expected and ours[bzip2_7z]["signatures"] == ["Clam.Exe.Sha256"]
    assert len(expected) == 8
    for path, names in expected.items():
        assert names == {"Clam.Exe.Sha256", "Readme.Sha256"}, path
        assert set(ours[path]["signatures"]) == names, path


def mszip_cab(name: str, data: bytes) -> bytes:
    """A one-folder MSZIP cabinet whose blocks refer back into the blocks before them,
    as Microsoft's makecab writes them (gcab and the cab crate compress each block
    alone)."""
    blocks, history = [], b""
    for at in range(0, len(data), 0x8000):
        chunk = data[at:at + 0x8000]
        c = zlib.compressobj(9, zlib.DEFLATED, -15, zdict=history) if history else zlib.compressobj(9, zlib.DEFLATED, -15)
        blocks.append((b"CK" + c.compress(chunk) + c.flush(), len(chunk)))
        history = (history + chunk)[-0x8000:]
    entry = struct.pack("<IIHHHH", len(data), 0, 0, 0x5A21, 0, 0x20) + name.encode() + b"\0"
    first_block = 36 + 8 + len(entry)
    body = b"".join(struct.pack("<IHH", 0, len(b), size) + b for b, size in blocks)
    total = first_block + len(body)
    header = b"MSCF" + struct.pack("<IIIIIBBHHHHH", 0, total, 0, 36 + 8, 0, 3, 1, 1, 1, 0, 0, 0)
    folder = struct.pack("<IHH", first_block, len(blocks), 1)
    return header + folder + entry + body


def test_mszip_history_across_blocks_like_clamscan(tmp_path, clam):
    rng = random.Random(3)
    words = [bytes(rng.choice(b"abcdefgh") for _ in range(6)) for _ in range(300)]
    text = b" ".join(rng.choice(words) for _ in range(30000))
    # The second half repeats the first: its blocks are mostly copies from history.
    payload = text + clam + text
    sigs = signatures(tmp_path / "sigs", clam)
    (sigs / "payload.hsb").write_text(f"{hashlib.sha256(payload).hexdigest()}:{len(payload)}:Payload.Sha256\n")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "history.cab").write_bytes(mszip_cab("payload.bin", payload))
    expected = clamscan_detections(sigs, corpus)
    ours = lazaret_json("-d", sigs, corpus)
    assert expected == {str(corpus / "history.cab"): {"Payload.Sha256"}}
    assert set(ours[str(corpus / "history.cab")]["signatures"]) == {"Payload.Sha256"}


def test_bombs_end_in_limits_and_cut_files_never_crash(tmp_path, clam):
    need(SEVEN_ZIP, "7-Zip")
    sigs = signatures(tmp_path / "sigs", clam)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    zeros = tmp_path / "zeros.bin"
    with open(zeros, "wb") as f:
        f.truncate(300 << 20)
    for fmt, name in [("7z", "bomb.7z"), ("xz", "bomb.xz"), ("bzip2", "bomb.bz2")]:
        subprocess.run([SEVEN_ZIP, "a", f"-t{fmt}", "-mx=9", str(corpus / name), str(zeros)], check=True,
                       capture_output=True)
    # Every testfile cut in half: a broken-archive verdict or a clean pass, no crash.
    for name in CONTAINERS:
        data = (TESTFILES / name).read_bytes()
        (corpus / f"cut-{name}").write_bytes(data[: len(data) // 2])
    ours = lazaret_json("-d", sigs, corpus)
    for name in ["bomb.7z", "bomb.xz", "bomb.bz2"]:
        assert ours[str(corpus / name)]["signatures"] == ["Heuristics.Limits.Exceeded"], name
    for name in CONTAINERS:
        f = ours[str(corpus / f"cut-{name}")]
        assert f["error"] is None and set(f["signatures"]) <= {"Heuristics.Broken.Archive", "Clam.Exe.Sha256"}, f


def as_mail(name: str, subject: str) -> bytes:
    """A testfile as mail: attached in base64, or, for the saved messages, the message
    itself (without its mbox "From " line) under our subject."""
    data = (TESTFILES / name).read_bytes()
    if name not in MAIL:
        return mail_with(name, data, subject=subject)
    message = data.split(b"\n", 1)[1] if data.startswith(b"From ") else data
    lines = message.replace(b"\r\n", b"\n").split(b"\n")
    lines = [b"Subject: " + subject.encode()] + [l for l in lines if not l.lower().startswith(b"subject:")]
    return b"\r\n".join(lines)


def test_indexed_inside_found_by_sha256_rescanned_and_quarantined(make_server, tmp_path, clam):
    s = make_server()
    s.add_user("alice@localhost")
    with s.smtp() as c:
        for name in CONTAINERS:
            assert c.sendmail("friend@infected.test", ["alice@localhost"], as_mail(name, subject=name)) == {}
    s.wait_delivered("alice@localhost", len(CONTAINERS))

    sha = hashlib.sha256(clam).hexdigest()
    found = s.cli_json("find", "--sha256", sha, "--in", "all")
    missing = set(CONTAINERS) - {m["subject"] for m in found}
    assert not missing, f"find --sha256 does not reach inside: {sorted(missing)}"

    # A hash signature added later is answered from the index, no message read.
    sigs = signatures(tmp_path / "sigs", clam)
    s.cli("signatures", "add", str(sigs / "clam.hsb"))
    report = json.loads(s.cli("rescan", "--json").stdout)
    assert report["quarantined"] == len(CONTAINERS) and report["messages_scanned"] == 0, report
    assert s.inbox("alice@localhost") == []

    # New mail carrying any of them is quarantined on ingest, naming the signature.
    with s.smtp() as c:
        for name in CONTAINERS:
            c.sendmail("friend@infected.test", ["alice@localhost"], as_mail(name, subject=f"again {name}"))
    wait_for(lambda: len(s.cli_json("find", "--in", "quarantine")) == 2 * len(CONTAINERS),
             what="quarantine on ingest")
    again = s.cli_json("find", "--in", "quarantine", "--signature", "Clam.Exe.Sha256", "--subject", "again")
    assert len(again) == len(CONTAINERS)
    assert s.inbox("alice@localhost") == []
