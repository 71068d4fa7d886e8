"""Offline clients resynchronising with CONDSTORE and QRESYNC (RFC 7162), with real
clients: imapclient (PyPI) for CONDSTORE, imaplib for QRESYNC (which imapclient does not
speak). Two clients keep a cache of the same folder while mail arrives and another
session changes flags and expunges; each resyncs with only what changed and must end
with exactly the store's UIDs, flags and mod-sequences."""

import imaplib
import re

import pytest

imapclient = pytest.importorskip("imapclient")

from conftest import embedded_only  # noqa: E402
from test_imap import deliver  # noqa: E402


def login(server, user):
    c = imapclient.IMAPClient("127.0.0.1", port=server.imap_port, ssl=False, timeout=30)
    c.login(user, "secret")
    return c


def entry(row):
    """(flags without the session's \\Recent, modseq) of an imapclient FETCH row."""
    return frozenset(f for f in row[b"FLAGS"] if f != b"\\Recent"), row[b"MODSEQ"][0]


def truth(server, user):
    """The folder as the store has it: {uid: (flags, modseq)} from a fresh session."""
    c = login(server, user)
    c.enable("CONDSTORE")
    c.select_folder("INBOX", readonly=True)
    rows = c.fetch(c.search("ALL"), ["UID", "FLAGS", "MODSEQ"])
    c.logout()
    return {uid: entry(r) for uid, r in rows.items()}


def test_condstore_and_qresync_resync_to_the_stores_state(server):
    user = "sync@localhost"
    server.add_user(user)
    for n in range(20):
        deliver(server, user, f"Subject: m{n}\r\n\r\nbody {n}\r\n")

    # Client A (imapclient, CONDSTORE): caches UIDs, flags and mod-sequences.
    a = login(server, user)
    assert b"CONDSTORE" in a.capabilities() and b"QRESYNC" in a.capabilities()
    a.enable("CONDSTORE")
    info = a.select_folder("INBOX")
    uidvalidity, since = info[b"UIDVALIDITY"], info[b"HIGHESTMODSEQ"]
    # imapclient works by UID: results are keyed by it.
    cache_a = {uid: entry(r) for uid, r in a.fetch(a.search("ALL"), ["FLAGS", "MODSEQ"]).items()}
    assert cache_a == truth(server, user)
    a.unselect_folder()

    # Meanwhile another session flags, tags and expunges, and new mail arrives.
    b = login(server, user)
    b.select_folder("INBOX")
    uids = sorted(cache_a)
    b.add_flags(uids[0:5], [b"\\Seen"])
    b.add_flags(uids[3:4], [b"$Worm"])
    b.delete_messages(uids[10:14])
    b.expunge()
    for n in range(3):
        deliver(server, user, f"Subject: new{n}\r\n\r\nnew {n}\r\n")
    server.wait_delivered(user, 19)
    # A conditional STORE on a message changed since: refused, reported MODIFIED.
    b.select_folder("INBOX")
    typ, data = b._imap.uid("STORE", str(uids[0]), f"(UNCHANGEDSINCE {since})", "+FLAGS", "(\\Flagged)")
    # imaplib files a tagged response's code with the untagged responses.
    assert typ == "OK" and b._imap.untagged_responses.get("MODIFIED") == [str(uids[0]).encode()]
    b.logout()

    # A resyncs with CONDSTORE: only what changed since, plus the list of UIDs.
    info = a.select_folder("INBOX")
    assert info[b"HIGHESTMODSEQ"] > since
    changed = a.fetch(a.search("ALL"), ["UID", "FLAGS"], modifiers=[f"CHANGEDSINCE {since}"])
    assert 0 < len(changed) < 15, "only changed and new messages come back"
    for uid, r in changed.items():
        cache_a[uid] = entry(r)
    alive = set(a.search("ALL"))
    cache_a = {uid: v for uid, v in cache_a.items() if uid in alive}
    a.logout()
    assert cache_a == truth(server, user)

    # Client C (imaplib, QRESYNC): one SELECT brings VANISHED and the changed flags.
    c = imaplib.IMAP4("127.0.0.1", server.imap_port)
    c.login(user, "secret")
    imaplib.Commands.setdefault("ENABLE", ("AUTH",))
    typ, _ = c._simple_command("ENABLE", "QRESYNC")
    assert typ == "OK"
    known = f"1:{max(uids)}"
    tag = c._new_tag().decode()
    c.send(f"{tag} SELECT INBOX (QRESYNC ({uidvalidity} {since} {known}))\r\n".encode())
    lines = []
    while True:
        line = c.readline().rstrip(b"\r\n")
        if line.startswith(tag.encode()):
            break
        lines.append(line)
    assert line.startswith(f"{tag} OK".encode()), line
    c.state = "SELECTED"  # imaplib did not see the SELECT it cannot send itself
    cache_c = {uid: v for uid, v in truth_before_changes(uids).items()}
    vanished = [l for l in lines if l.startswith(b"* VANISHED (EARLIER) ")]
    assert len(vanished) == 1
    for uid in expand(vanished[0].split()[-1].decode()):
        cache_c.pop(uid, None)
    fetched = [l for l in lines if b" FETCH " in l]
    for l in fetched:
        m = re.search(rb"UID (\d+) FLAGS \(([^)]*)\) MODSEQ \((\d+)\)", l)
        assert m, l
        flags = frozenset(f for f in m.group(2).split() if f != b"\\Recent")
        cache_c[int(m.group(1))] = (flags, int(m.group(3)))
    # New messages are learnt the usual way (UID FETCH above the known UIDs).
    typ, data = c.uid("FETCH", f"{max(uids) + 1}:*", "(FLAGS MODSEQ)")
    for d in data:
        m = re.search(rb"UID (\d+) FLAGS \(([^)]*)\) MODSEQ \((\d+)\)", d if isinstance(d, bytes) else d[0])
        if m:
            cache_c[int(m.group(1))] = (frozenset(f for f in m.group(2).split() if f != b"\\Recent"), int(m.group(3)))
    # An EXPUNGE is reported as VANISHED to a QRESYNC client.
    c.uid("STORE", str(uids[19]), "+FLAGS", "(\\Deleted)")
    typ, data = c.expunge()
    assert c.untagged_responses.get("VANISHED") == [str(uids[19]).encode()], c.untagged_responses
    cache_c.pop(uids[19])
    c.logout()
    assert set(cache_c) == set(truth(server, user))
    assert {u: f for u, (f, _) in cache_c.items()} == {u: f for u, (f, _) in truth(server, user).items()}


def expand(uid_set):
    out = []
    for part in uid_set.split(","):
        lo, _, hi = part.partition(":")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def truth_before_changes(uids):
    # C's cache as of `since`: every message unflagged (as delivered).
    return {uid: (frozenset(), 0) for uid in uids}


def test_mailbox_names_in_modified_utf7(server):
    """imapclient encodes names itself; imaplib shows the wire form; the admin CLI
    shows UTF-8; names that are not modified UTF-7 are refused with NO."""
    user = "names@localhost"
    server.add_user(user)
    a = login(server, user)
    a.create_folder("Entwürfe")
    a.create_folder("Q&A")
    a.create_folder("日本語/台北")
    a.append("Entwürfe", b"Subject: draft\r\n\r\nhallo\r\n")
    b = imaplib.IMAP4("127.0.0.1", server.imap_port)
    b.login(user, "secret")
    _, listing = b.list('""', "*")
    listed = b"\n".join(listing)
    for wire in (b'"Entw&APw-rfe"', b'"Q&-A"', b'"&ZeVnLIqe-"', b'"&ZeVnLIqe-/&U,BTFw-"'):
        assert wire in listed, listed
    assert b.select('"Entw&APw-rfe"')[1] == [b"1"]
    assert b.status('"Q&-A"', "(MESSAGES)")[0] == "OK"
    # Not modified UTF-7: raw 8-bit, an unterminated shift, encoded plain ASCII.
    for bad in ('"Entw&APw"', '"&AGE-"'):
        typ, data = b.create(bad)
        assert typ == "NO" and b"modified UTF-7" in data[0], (bad, data)
    # Raw 8-bit (imaplib will not send it): refused, and the session goes on.
    b.send('X1 CREATE "Entwürfe"\r\n'.encode())
    reply = b.readline()
    assert reply.startswith((b"X1 NO", b"X1 BAD")), reply
    assert b.noop()[0] == "OK"
    b.logout()
    # The admin sees the names as they are.
    shown = server.cli("mailbox", "list", user).stdout
    assert "Entwürfe" in shown and "日本語/台北" in shown, shown
    assert sorted(a.list_folders(), key=lambda f: f[2])  # imapclient decodes them back
    assert "Entwürfe" in [f[2] for f in a.list_folders()]
    a.logout()


@embedded_only
def test_folder_names_from_older_stores_become_utf8(server):
    """Stores from before names were decoded kept what clients sent (modified UTF-7);
    the first start of this version renames them, once."""
    import sqlite3

    user = "legacy@localhost"
    server.add_user(user)
    server.stop()
    db = sqlite3.connect(server.data_dir / "lazaret.db")
    db.execute(
        "INSERT INTO mailboxes(user, name, uidvalidity) VALUES(?, 'Entw&APw-rfe', 7)", (user,)
    )
    db.execute("DELETE FROM settings WHERE key='imap.names_utf8'")
    db.commit()
    db.close()
    server.start()
    assert "Entwürfe" in server.cli("mailbox", "list", user).stdout
    m = server.imap(user)
    _, listing = m.list('""', "Entw*")
    assert listing == [b'(\\HasNoChildren) "/" "Entw&APw-rfe"'], listing
    m.logout()


def test_list_extended_and_list_status(server):
    """RFC 5258 and 5819 as Thunderbird and K-9 use them: one LIST brings the folders,
    their special use, subscription and counts."""
    user = "lister@localhost"
    server.add_user(user)
    for n in range(3):
        deliver(server, user, f"Subject: s{n}\r\n\r\nx\r\n")
    server.wait_delivered(user, 3)
    m = imaplib.IMAP4("127.0.0.1", server.imap_port)
    m.login(user, "secret")
    caps = m.capability()[1][0].split()
    assert b"LIST-EXTENDED" in caps and b"LIST-STATUS" in caps
    m.create("Work/Worm")
    m.subscribe("Work/Worm")
    m.unsubscribe("Trash")
    typ, data = m._simple_command(
        "LIST", '""', "%", "RETURN", "(SUBSCRIBED SPECIAL-USE STATUS (MESSAGES UNSEEN))"
    )
    assert typ == "OK"
    listed = b"\n".join(m.untagged_responses.pop("LIST"))
    status = b"\n".join(m.untagged_responses.pop("STATUS"))
    assert b'\\Subscribed \\HasNoChildren) "/" "INBOX"' in listed, listed
    assert b'(\\HasNoChildren \\Trash) "/" "Trash"' in listed, listed
    assert b'\\Sent) "/" "Sent"' in listed
    assert b'"INBOX" (MESSAGES 3 UNSEEN 3)' in status, status
    # Subscribed only, with the parent of a subscribed child that does not match.
    typ, _ = m._simple_command("LIST", "(SUBSCRIBED RECURSIVEMATCH)", '""', "%")
    listed = b"\n".join(m.untagged_responses.pop("LIST"))
    assert b'"Work" ("CHILDINFO" ("SUBSCRIBED"))' in listed, listed
    assert b'"Trash"' not in listed
    # Several patterns at once; an unknown option is refused.
    typ, _ = m._simple_command("LIST", '""', '("Sent" "Work/*")')
    listed = b"\n".join(m.untagged_responses.pop("LIST"))
    assert b'"Sent"' in listed and b'"Work/Worm"' in listed and b'"INBOX"' not in listed
    with pytest.raises(imaplib.IMAP4.error):
        m._simple_command("LIST", "(BOGUS)", '""', "%")
    # CREATE-SPECIAL-USE (RFC 6154), as clients create an archive folder.
    assert b"CREATE-SPECIAL-USE" in caps
    typ, _ = m._simple_command("CREATE", '"Archive 2026"', "(USE (\\Archive))")
    assert typ == "OK"
    m._simple_command("LIST", '""', '"Archive 2026"', "RETURN", "(SPECIAL-USE)")
    assert b'\\Archive) "/" "Archive 2026"' in m.untagged_responses.pop("LIST")[0]
    typ, data = m._simple_command("CREATE", "Odd", "(USE (\\Bogus))")
    assert typ == "NO" and b"[USEATTR]" in data[0], data
    m.logout()
