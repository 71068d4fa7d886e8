"""IMAP over loopback with Python's imaplib: login, LIST with special-use folders,
SELECT, FETCH of a multipart message (whole, partial, sections, BODYSTRUCTURE,
ENVELOPE), STORE, COPY, MOVE, EXPUNGE, APPEND, UIDs across sessions, IDLE, SEARCH,
STARTTLS, access disable, and bad input."""

import email
import email.policy
import imaplib
import re
import socket
import ssl
import threading
import time

import pytest

MIXED = (
    "From: Alice <alice@far.test>\r\n"
    "To: bob@localhost\r\n"
    "Subject: report with attachment\r\n"
    "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
    "Message-ID: <m1@far.test>\r\n"
    "MIME-Version: 1.0\r\n"
    'Content-Type: multipart/mixed; boundary="b1"\r\n'
    "\r\n"
    "--b1\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "\r\n"
    "Hello Bob,\r\nthe numbers are attached.\r\n"
    "--b1\r\n"
    'Content-Type: application/zip; name="numbers.zip"\r\n'
    'Content-Disposition: attachment; filename="numbers.zip"\r\n'
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==\r\n"
    "--b1--\r\n"
)


def deliver(server, to, message):
    with server.smtp() as s:
        assert s.sendmail("alice@far.test", [to], message) == {}


def test_login_list_select_fetch_multipart(server):
    deliver(server, "bob@localhost", MIXED)
    server.wait_delivered("bob@localhost", 1)
    m = server.imap()
    typ, caps = m.capability()
    caps = caps[0].decode().split()
    for c in ["IMAP4rev1", "IDLE", "UIDPLUS", "MOVE", "LITERAL+", "SPECIAL-USE", "STARTTLS"]:
        assert c in caps, caps
    m.login("bob@localhost", "secret")
    typ, folders = m.list()
    listing = b"\n".join(folders).decode()
    assert '"/" INBOX' in listing or '"/" "INBOX"' in listing
    assert "\\Sent" in listing and "\\Trash" in listing and "\\Junk" in listing and "\\Drafts" in listing

    typ, data = m.select("INBOX")
    assert typ == "OK" and data == [b"1"]
    assert m.untagged_responses.get("UIDVALIDITY")

    typ, data = m.fetch("1", "(BODY.PEEK[])")
    raw = data[0][1]
    assert raw.replace(b"\r\n", b"\n").endswith(MIXED.replace("\r\n", "\n").encode())
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == "report with attachment"

    typ, data = m.fetch("1", "(BODY.PEEK[1])")
    assert data[0][1] == b"Hello Bob,\r\nthe numbers are attached."
    typ, data = m.fetch("1", "(BODY.PEEK[2.MIME])")
    assert b'filename="numbers.zip"' in data[0][1]
    typ, data = m.fetch("1", "(BODY.PEEK[]<0.10>)")
    assert len(data[0][1]) == 10 and b"<0>" in data[0][0]
    typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert data[0][1] == b"Subject: report with attachment\r\n\r\n"

    typ, data = m.fetch("1", "(BODYSTRUCTURE ENVELOPE FLAGS RFC822.SIZE INTERNALDATE UID)")
    text = data[0].decode() if isinstance(data[0], bytes) else data[0][0].decode()
    assert '("TEXT" "PLAIN" ("CHARSET" "utf-8")' in text
    assert '"APPLICATION" "ZIP"' in text and '("ATTACHMENT" ("FILENAME" "numbers.zip"))' in text
    assert '"MIXED"' in text
    assert '"report with attachment"' in text and '(("Alice" NIL "alice" "far.test"))' in text
    # The first session to see a message gets it as \Recent; PEEK leaves \Seen unset.
    assert "FLAGS (\\Recent)" in text, text

    typ, data = m.fetch("1", "(BODY[TEXT])")
    typ, data = m.fetch("1", "(FLAGS)")
    assert b"\\Seen" in data[0], "a non-PEEK body fetch sets \\Seen"
    m.logout()


def test_store_copy_move_expunge_and_uids_across_sessions(server):
    for i in range(3):
        deliver(server, "bob@localhost", f"Subject: msg {i}\r\n\r\nbody {i}\r\n")
    server.wait_delivered("bob@localhost", 3)
    m = server.imap("bob@localhost")
    m.select("INBOX")
    typ, data = m.uid("SEARCH", None, "ALL")
    uids = [int(u) for u in data[0].split()]
    assert len(uids) == 3 and uids == sorted(uids)

    typ, data = m.store("1", "+FLAGS", "(\\Flagged $Work)")
    assert b"\\Flagged" in data[0] and b"$Work" in data[0]
    typ, data = m.copy("1", "Trash")
    assert typ == "OK"
    assert re.match(rb"\[COPYUID \d+ %d 1\]" % uids[0], data[0]), data

    typ, data = m.uid("MOVE", str(uids[1]), "Drafts")
    assert typ == "OK"
    assert m.untagged_responses.pop("EXPUNGE") == [b"2"], "MOVE reports the message gone"
    typ, data = m.search(None, "ALL")
    assert data[0].split() == [b"1", b"2"], "moved message left INBOX"

    m.store("1", "+FLAGS", "\\Deleted")
    typ, data = m.expunge()
    assert data == [b"1"]
    typ, data = m.uid("SEARCH", None, "ALL")
    assert [int(u) for u in data[0].split()] == [uids[2]]

    # Another session sees the same UIDs and the flags that persisted.
    m2 = server.imap("bob@localhost")
    typ, data = m2.select("Trash")
    assert data == [b"1"]
    typ, data = m2.fetch("1", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"\\Flagged" in data[0][0] and b"$Work" in data[0][0] and b"msg 0" in data[0][1]
    typ, data = m2.select("Drafts")
    assert data == [b"1"]
    m2.select("INBOX")
    typ, data = m2.uid("SEARCH", None, "ALL")
    assert [int(u) for u in data[0].split()] == [uids[2]]
    typ, data = m2.status("INBOX", "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN)")
    assert b"MESSAGES 1" in data[0] and b"UIDNEXT %d" % (uids[2] + 1) in data[0]
    m2.logout()
    m.logout()


def test_expunge_in_one_session_is_reported_to_another(server):
    deliver(server, "bob@localhost", "Subject: a\r\n\r\na\r\n")
    deliver(server, "bob@localhost", "Subject: b\r\n\r\nb\r\n")
    server.wait_delivered("bob@localhost", 2)
    one = server.imap("bob@localhost")
    two = server.imap("bob@localhost")
    one.select("INBOX")
    two.select("INBOX")
    one.store("1", "+FLAGS", "\\Deleted")
    one.expunge()
    typ, data = two.noop()
    assert two.untagged_responses.get("EXPUNGE") == [b"1"], two.untagged_responses
    typ, data = two.search(None, "ALL")
    assert data[0].split() == [b"1"]
    one.logout()
    two.logout()


def test_append_create_rename_delete(server):
    m = server.imap("bob@localhost")
    assert m.create("Projects/2026")[0] == "OK"
    assert m.create("Projects/2026")[0] == "NO"
    msg = b"From: bob@localhost\r\nSubject: draft note\r\n\r\nremember the milk\r\n"
    typ, data = m.append("Projects/2026", "(\\Draft \\Seen)", imaplib.Time2Internaldate(time.time()), msg)
    assert typ == "OK" and b"APPENDUID" in data[0]
    typ, data = m.append("Nope", None, None, msg)
    assert typ == "NO" and b"TRYCREATE" in data[0]
    assert m.rename("Projects/2026", "Archive/2026")[0] == "OK"
    typ, data = m.select("Archive/2026")
    assert data == [b"1"]
    typ, data = m.fetch("1", "(FLAGS BODY.PEEK[TEXT])")
    assert b"\\Draft" in data[0][0] and data[0][1] == b"remember the milk\r\n"
    m.close()
    typ, folders = m.list('""', "Archive/*")
    assert b"Archive/2026" in b"".join(folders)
    assert m.delete("Archive/2026")[0] == "OK"
    assert m.delete("INBOX")[0] == "NO"
    typ, data = m.lsub()
    assert typ == "OK"
    m.logout()


def test_search_criteria(server):
    deliver(server, "bob@localhost", "From: carol@far.test\r\nSubject: invoice 42\r\n\r\nplease pay\r\n")
    deliver(server, "bob@localhost", "From: dave@far.test\r\nSubject: lunch\r\n\r\nnoon?\r\n")
    server.wait_delivered("bob@localhost", 2)
    m = server.imap("bob@localhost")
    m.select("INBOX")
    assert m.search(None, "SUBJECT", "invoice")[1] == [b"1"]
    assert m.search(None, "FROM", "dave")[1] == [b"2"]
    assert m.search(None, "BODY", "pay")[1] == [b"1"]
    assert m.search(None, "UNSEEN")[1] == [b"1 2"]
    m.store("2", "+FLAGS", "\\Seen")
    assert m.search(None, "SEEN")[1] == [b"2"]
    assert m.search(None, "OR", "SUBJECT", "lunch", "SUBJECT", "invoice")[1] == [b"1 2"]
    assert m.search(None, "NOT", "SUBJECT", "lunch")[1] == [b"1"]
    assert m.search(None, "LARGER", "1")[1] == [b"1 2"]
    m.logout()


def test_idle_reports_new_mail(server):
    m = server.imap("bob@localhost")
    m.select("INBOX")
    tag = m._new_tag().decode()
    m.send(f"{tag} IDLE\r\n".encode())
    assert m.readline().startswith(b"+")
    deliver(server, "bob@localhost", "Subject: while idle\r\n\r\nhi\r\n")
    m.sock.settimeout(15)
    line = m.readline()
    assert line == b"* 1 EXISTS\r\n", line
    # Delivered while this session had the folder selected: recent for it.
    assert m.readline() == b"* 1 RECENT\r\n"
    m.send(b"DONE\r\n")
    assert m.readline().startswith(f"{tag} OK".encode())
    m.logout()


def test_an_empty_literal_gets_one_continuation(server):
    # Found by fuzzing (imap_framer, issue #20): before any login, `{0}` made the
    # session answer `+` for ever, its output and memory growing without bound.
    import socket

    with socket.create_connection((server.imap_host, server.imap_port), timeout=10) as s:
        f = s.makefile("rb")
        assert f.readline().startswith(b"* OK")
        s.sendall(b"a LOGIN ali {0}\r\n")
        assert f.readline().startswith(b"+ ")
        s.sendall(b"\r\n")
        line = f.readline()
        assert line.startswith(b"a NO") or line.startswith(b"a BAD"), line
        s.sendall(b"b LOGOUT\r\n")
        rest = f.read()
        assert b"+ " not in rest and b"b OK" in rest, rest[:300]
    rss_kb = int(next(l.split()[1] for l in open(f"/proc/{server.proc.pid}/status") if l.startswith("VmRSS:")))
    assert rss_kb < 200_000, f"{rss_kb} KB resident"


def test_a_flood_while_idling_closes_the_session(server):
    # During IDLE only a DONE line may come; endless bytes without a line end must not
    # grow the session's buffer (found by review for issue #20).
    m = server.imap("bob@localhost")
    m.select("INBOX")
    tag = m._new_tag().decode()
    m.send(f"{tag} IDLE\r\n".encode())
    assert m.readline().startswith(b"+")
    try:
        for _ in range(64):
            m.send(b"x" * 4096)
    except OSError:
        pass
    m.sock.settimeout(15)
    rest = b""
    try:
        while True:
            chunk = m.sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    except OSError:
        pass
    assert f"{tag} BAD".encode() in rest and b"* BYE" in rest, rest
    # The server goes on.
    m2 = server.imap("bob@localhost")
    assert m2.select("INBOX")[0] == "OK"
    m2.logout()


def test_starttls_then_login(server):
    m = server.imap()
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    m.starttls(ssl_context=ctx)
    typ, caps = m.capability()
    assert b"STARTTLS" not in caps[0]
    assert m.login("bob@localhost", "secret")[0] == "OK"
    m.logout()


def test_wrong_password_and_authenticate_plain(server):
    m = server.imap()
    t0 = time.time()
    with pytest.raises(imaplib.IMAP4.error) as e:
        m.login("bob@localhost", "wrong")
    assert b"AUTHENTICATIONFAILED" in str(e.value).encode() or "AUTHENTICATIONFAILED" in str(e.value)
    assert time.time() - t0 >= 0.9
    typ, _ = m.authenticate("PLAIN", lambda _: b"\0bob@localhost\0secret")
    assert typ == "OK"
    m.logout()


def test_access_disable_closes_sessions_and_refuses_logins(server):
    m = server.imap("bob@localhost")
    m.select("INBOX")
    server.cli("access", "disable", "--message", "Virus cleanup until 18:00")
    m.sock.settimeout(10)
    line = m.readline()
    assert line.startswith(b"* BYE") and b"Virus cleanup" in line
    fresh = server.imap()
    with pytest.raises(imaplib.IMAP4.error) as e:
        fresh.login("bob@localhost", "secret")
    assert "UNAVAILABLE" in str(e.value) and "Virus cleanup" in str(e.value)
    # Mail still comes in and admin commands work while users are out.
    deliver(server, "bob@localhost", "Subject: during lockout\r\n\r\nx\r\n")
    server.wait_delivered("bob@localhost", 1)
    server.cli("access", "enable")
    assert server.imap("bob@localhost").select("INBOX")[1] == [b"1"]


def test_malformed_commands_and_huge_literals_get_bad(server):
    s = socket.create_connection((server.imap_host, server.imap_port), timeout=10)
    f = s.makefile("rb")
    assert f.readline().startswith(b"* OK")
    s.sendall(b"a1 FROBNICATE\r\n")
    assert f.readline().startswith(b"a1 BAD")
    s.sendall(b"a2 SELECT INBOX\r\n")
    assert f.readline().startswith(b"a2 BAD"), "not logged in"
    s.sendall(b"a3 LOGIN bob@localhost secret\r\n")
    assert f.readline().startswith(b"a3 OK")
    s.sendall(b"a4 FETCH 1 (FLAGS)\r\n")
    assert f.readline().startswith(b"a4 BAD"), "no folder selected"
    s.sendall(b"a5 APPEND INBOX {999999999}\r\n")
    line = f.readline()
    assert line.startswith(b"a5 NO") or line.startswith(b"a5 BAD"), line
    assert b"TOOBIG" in line
    s.sendall(b")(*&^%\r\n")
    assert b"BAD" in f.readline()
    s.sendall(b"a6 NOOP\r\n")
    assert f.readline().startswith(b"a6 OK"), "the session survives bad input"
    s.sendall(b"a7 LOGOUT\r\n")
    assert f.readline().startswith(b"* BYE")
    s.close()


def test_implicit_tls_port(make_server):
    server = make_server('[imap]\nlisten = ["127.0.0.1:0"]\ntls_listen = ["127.0.0.1:0"]\n')
    server.add_user("bob@localhost")
    import json
    host, port = json.loads((server.data_dir / "listeners.json").read_text())["imaps"][0].rsplit(":", 1)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    m = imaplib.IMAP4_SSL(host, int(port), ssl_context=ctx, timeout=30)
    typ, caps = m.capability()
    assert b"STARTTLS" not in caps[0] and b"AUTH=PLAIN" in caps[0]
    assert m.login("bob@localhost", "secret")[0] == "OK"
    assert m.select("INBOX")[0] == "OK"
    m.logout()


def test_id_recent_keywords_and_subscriptions(server):
    server.add_user("carol@localhost")
    deliver(server, "carol@localhost", "Subject: one\r\n\r\n1\r\n")
    deliver(server, "carol@localhost", "Subject: two\r\n\r\n2\r\n")
    first = server.imap("carol@localhost")
    # ID (RFC 2971), as Thunderbird and Apple Mail send it at login.
    imaplib.Commands.setdefault("ID", ("NONAUTH", "AUTH", "SELECTED"))
    typ, data = first._simple_command("ID", '("name" "pytest" "version" "1")')
    assert typ == "OK"
    assert b'"name" "Lazaret"' in first.untagged_responses.pop("ID")[0]
    assert b"ID" in first.capability()[1][0].split()

    # \Recent: the first read-write session gets the new mail, the next does not;
    # EXAMINE shows it without taking it.
    second = server.imap("carol@localhost")
    second.select("INBOX", readonly=True)
    assert second.untagged_responses["RECENT"] == [b"2"]
    first.select("INBOX")
    assert first.untagged_responses["RECENT"] == [b"2"]
    assert first.search(None, "RECENT")[1] == [b"1 2"]
    _, data = first.fetch("1", "(FLAGS)")
    assert b"\\Recent" in data[0]
    second.select("INBOX")
    assert second.untagged_responses["RECENT"] == [b"0"]
    assert second.search(None, "NEW")[1] == [b""]
    typ, data = second.status("INBOX", "(RECENT MESSAGES)")
    assert b"RECENT 0" in data[0] and b"MESSAGES 2" in data[0]
    # A client cannot set \Recent.
    _, data = second.store("1", "+FLAGS", "(\\Recent \\Flagged)")
    assert b"\\Recent" not in data[0] and b"\\Flagged" in data[0]

    # A new keyword is announced in FLAGS before a FETCH shows it, to this session and
    # to the other one; PERMANENTFLAGS allows new ones (\*).
    second.untagged_responses.clear()
    _, data = second.store("2", "+FLAGS", "($Worm)")
    assert b"$Worm" in second.untagged_responses["FLAGS"][0]
    first.untagged_responses.clear()
    first.noop()
    assert b"$Worm" in first.untagged_responses["FLAGS"][0]
    again = server.imap("carol@localhost")
    again.select("INBOX")
    assert b"$Worm" in again.untagged_responses["FLAGS"][0]
    assert b"\\*" in again.untagged_responses["PERMANENTFLAGS"][0]

    # Subscriptions are names: kept when the folder goes, listed before it exists, and a
    # subscribed child under an unsubscribed parent shows the parent \Noselect.
    assert first.create("Projects/Worm")[0] == "OK"
    assert first.subscribe("Projects/Worm")[0] == "OK"
    _, data = first.lsub('""', "%")
    assert b'(\\Noselect) "/" "Projects"' in data, data
    assert b'() "/" "INBOX"' in data
    assert first.delete("Projects/Worm")[0] == "OK"
    _, data = first.lsub('""', "Projects/*")
    assert data == [b'() "/" "Projects/Worm"'], data
    # A folder deleted and created again gets a new UIDVALIDITY, even within a second.
    first.create("Again")
    v1 = first.status("Again", "(UIDVALIDITY)")[1][0]
    first.delete("Again")
    first.create("Again")
    assert first.status("Again", "(UIDVALIDITY)")[1][0] != v1
    for m in (first, second, again):
        m.logout()


def test_idle_keepalive_and_appendlimit(make_server):
    server = make_server('[imap]\nlisten = ["127.0.0.1:0"]\nidle_keepalive = "1s"\n')
    server.add_user("dora@localhost")
    m = server.imap("dora@localhost")
    caps = m.capability()[1][0].split()
    # RFC 7889: the message size limit, 25 MB by default.
    assert b"APPENDLIMIT=%d" % (25 * 1000 * 1000) in caps or any(c.startswith(b"APPENDLIMIT=") for c in caps), caps
    m.select("INBOX")
    tag = m._new_tag().decode()
    m.send(f"{tag} IDLE\r\n".encode())
    assert m.readline().startswith(b"+")
    m.sock.settimeout(10)
    # A quiet IDLE still hears from the server (NAT state, dead peers).
    assert m.readline() == b"* OK still here\r\n"
    m.send(b"DONE\r\n")
    assert m.readline().startswith(f"{tag} OK".encode())
    m.logout()


def test_compress_deflate(server):
    """RFC 4978: after COMPRESS DEFLATE both directions are raw deflate; a whole session
    (SELECT, FETCH of a message, LOGOUT) works through it."""
    import zlib

    server.add_user("eve@localhost")
    deliver(server, "eve@localhost", "Subject: squeezed\r\n\r\n" + "worm " * 2000 + "\r\n")
    server.wait_delivered("eve@localhost", 1)
    m = server.imap("eve@localhost")
    assert b"COMPRESS=DEFLATE" in m.capability()[1][0].split()
    m.send(b"c1 COMPRESS DEFLATE\r\n")
    assert m.readline() == b"c1 OK DEFLATE active\r\n"
    out, inflate = zlib.compressobj(wbits=-15), zlib.decompressobj(wbits=-15)
    sock = m.sock
    sock.settimeout(10)

    def send(line):
        sock.sendall(out.compress(line) + out.flush(zlib.Z_SYNC_FLUSH))

    def until(tag):
        text = b""
        while not re.search(rb"(^|\r\n)" + tag + rb" (OK|NO|BAD)[^\r]*\r\n", text):
            chunk = sock.recv(65536)
            assert chunk, text
            text += inflate.decompress(chunk)
        return text

    send(b"c2 SELECT INBOX\r\n")
    assert b"* 1 EXISTS" in until(b"c2")
    send(b"c3 FETCH 1 (BODY.PEEK[TEXT])\r\n")
    body = until(b"c3")
    assert body.count(b"worm ") == 2000, body[:200]
    send(b"c4 COMPRESS DEFLATE\r\n")
    assert b"c4 NO [COMPRESSIONACTIVE]" in until(b"c4")
    send(b"c5 LOGOUT\r\n")
    assert b"c5 OK" in until(b"c5")
