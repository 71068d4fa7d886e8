"""Outbreak clusters end to end: clean mail (personal messages, templated newsletters)
and three worm families arrive over SMTP, each worm copy with a new subject and sender
and 5-20% of its words changed; one family re-zips its payload with the members in
another order, one carries no attachment at all (a link). `lazaret clusters` shows
each family as one cluster with no clean message in it, `--cluster` selects exactly
that family for find and quarantine, and `clusters allow` marks a newsletter."""

import email
import hashlib
import smtplib
import time

import pytest

from worm_corpus import Corpus

USERS = 12


@pytest.fixture
def outbreak(server):
    corpus = Corpus(seed=11, users=USERS)
    server.cli("domain", "add", "corp.test")
    for u in corpus.users:
        server.add_user(u)
    families = {}  # queued-as id -> family (None: clean)
    mail = list(corpus.clean(300)) + list(corpus.worms(3, 25))
    # The worms arrive among the clean mail, not after it.
    mail = mail[:150] + [m for m in mail[150:] if m[0] == "worm"] + [m for m in mail[150:] if m[0] != "worm"]
    with smtplib.SMTP(server.smtp_host, server.smtp_port, timeout=30) as s:
        s.ehlo()
        for kind, family, raw in mail:
            msg = __import__("email").message_from_bytes(raw)
            to = msg["To"]
            s.mail(msg["From"])
            code, _ = s.rcpt(to)
            assert code == 250, to
            code, reply = s.data(raw)
            assert code == 250
            families[reply.decode().rsplit(" ", 1)[-1]] = (kind, family)
    total = len(mail)
    for _ in range(300):
        store = server.cli_json("status")["store"]
        # Filed into clusters behind the commit, within a round or two.
        if store["in_mailboxes"] >= total and store["clusters_behind"] == 0:
            break
        time.sleep(0.1)
    return families


def members(server, cluster, where="all"):
    found = server.cli_json("find", "--cluster", str(cluster), "--in", where, "--limit", "0")
    return found


def test_each_worm_family_is_one_cluster_with_no_clean_mail(server, outbreak):
    clusters = server.cli_json("clusters", "--min", "2", "--limit", "200")
    by_family = {}
    for c in clusters:
        kinds = {outbreak[m["message"]] for m in members(server, c["id"])}
        assert len(kinds) >= 1
        worm_families = {f for k, f in kinds if k == "worm"}
        if worm_families:
            assert len(worm_families) == 1, f"cluster {c['id']} mixes worm families {worm_families}"
            assert all(k == "worm" for k, _ in kinds), f"cluster {c['id']} holds clean mail: {kinds}"
            by_family.setdefault(worm_families.pop(), []).append(c)
    assert sorted(by_family) == [0, 1, 2], by_family
    for family, found in by_family.items():
        # One cluster per family, holding (nearly) every copy.
        biggest = max(found, key=lambda c: c["messages"])
        assert biggest["messages"] >= 23, (family, [c["messages"] for c in found])
        assert biggest["senders"] >= 20, "a new sender on every copy"
        assert biggest["in_mailboxes"] == biggest["messages"]
        assert biggest["last_hour"] == biggest["messages"]
        assert len(biggest["subjects"]) >= 2
    # Families 0 and 1 ship a zip (0 re-zipped per copy): the shared member is named.
    for family in (0, 1):
        names = [a["name"] for c in by_family[family] for a in c["attachments"]]
        assert f"invoice{family}.exe" in names, names


def test_quarantine_by_cluster_takes_exactly_the_family(server, outbreak):
    clusters = server.cli_json("clusters", "--min", "2", "--limit", "200")
    target = None
    for c in clusters:
        kinds = {outbreak[m["message"]] for m in members(server, c["id"])}
        if kinds == {("worm", 2)}:
            target = c
    assert target, "the link-only family (no attachment) is a cluster"
    expected = {m["id"] for m in members(server, target["id"], "mailboxes")}
    r = server.cli("quarantine", "--cluster", str(target["id"]), "--yes")
    assert str(len(expected)) in r.stdout + r.stderr
    left = members(server, target["id"], "mailboxes")
    assert left == []
    quarantined = members(server, target["id"], "quarantine")
    assert {outbreak[m["message"]] for m in quarantined} == {("worm", 2)}
    assert len(quarantined) == len(expected)
    shown = server.cli_json("clusters", "show", str(target["id"]))
    assert shown["in_quarantine"] == len(expected) and shown["in_mailboxes"] == 0
    assert server.cli_json("clusters", "--in", "mailboxes", "--min", "2", "--limit", "200")
    assert target["id"] not in {c["id"] for c in server.cli_json("clusters", "--in", "mailboxes", "--min", "2", "--limit", "200")}
    # Audited like every bulk action, with the filter as typed.
    audit = server.cli("audit").stdout
    assert f"--cluster {target['id']}" in audit


def test_newsletters_cluster_among_themselves_and_can_be_allowed(server, outbreak):
    clusters = server.cli_json("clusters", "--min", "2", "--limit", "200")
    newsletter = None
    for c in clusters:
        kinds = {k for k, _ in (outbreak[m["message"]] for m in members(server, c["id"]))}
        if kinds == {"newsletter"}:
            newsletter = c
            break
    assert newsletter, "templated newsletters form clusters of their own"
    server.cli("clusters", "allow", str(newsletter["id"]))
    assert server.cli_json("clusters", "show", str(newsletter["id"]))["allowed"] is True
    assert "clusters allow" in server.cli("audit").stdout
    r = server.cli("clusters", "show", "999999", check=False)
    assert r.returncode != 0 and "no cluster 999999" in r.stderr
    text = server.cli("clusters").stdout
    assert "MSGS" in text and "SENDERS" in text


def test_rescan_by_cluster_looks_only_at_that_cluster(server, outbreak, tmp_path):
    biggest = {}
    for c in server.cli_json("clusters", "--min", "2", "--limit", "200"):
        kinds = {outbreak[m["message"]] for m in members(server, c["id"])}
        if len(kinds) == 1:
            ((kind, family),) = kinds
            if kind == "worm" and family not in biggest:
                biggest[family] = c  # biggest first
    payload = dict(Corpus(seed=11, users=USERS).family(0)["members"])["invoice0.exe"]
    sig = tmp_path / "invoice.hsb"
    sig.write_text(f"{hashlib.sha256(payload).hexdigest()}:{len(payload)}:Test.Invoice0\n")
    server.cli("signatures", "add", str(sig))
    # Family 1's cluster does not carry the payload: nothing found there.
    other = server.cli_json("rescan", "--cluster", str(biggest[1]["id"]))
    assert (other["detected"], other["quarantined"]) == (0, 0)
    target = biggest[0]["id"]
    held = len(members(server, target, "mailboxes"))
    mine = server.cli_json("rescan", "--cluster", str(target))
    assert mine["quarantined"] == held and mine["signatures"] == ["Test.Invoice0"]
    assert members(server, target, "mailboxes") == []
    assert "rescan" in server.cli("audit").stdout and f"cluster {target}" in server.cli("audit").stdout
    r = server.cli("rescan", "--cluster", "999999", check=False)
    assert r.returncode != 0 and "no cluster 999999" in r.stderr
