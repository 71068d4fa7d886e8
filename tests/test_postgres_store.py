"""The server on `[store] backend = "postgres"` (docs/SCALE-OUT.md), beyond what the
whole suite checks when it runs on that store (`LAZARET_TEST_STORE=postgres`): two
nodes sharing one database and one bucket, each seeing what the other stored and
telling its IMAP sessions at once, following the switches thrown on the other;
`status` listing the nodes; the database going
away, which turns into `451` and `NO [UNAVAILABLE]` with nothing acknowledged lost;
three nodes taking 10,000 messages while one of them is killed every 10 seconds; and
a bulk action whose node dies, finished by another.

Each test starts a PostgreSQL cluster of its own (scripts/postgres-throwaway), so that
stopping it disturbs no other test."""

import glob
import os
import shutil
import smtplib
import subprocess
import tempfile
import time

import pytest

from conftest import BIN, ROOT, Server
from test_outbound import wait_for

REQUIRED = os.environ.get("LAZARET_TESTS_REQUIRE", "").split(",")
THROWAWAY = str(ROOT / "scripts" / "postgres-throwaway")

if not shutil.which("moto_server") or not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
    if "postgres" in REQUIRED:
        raise RuntimeError("PostgreSQL (Debian's postgresql) and moto_server are required (LAZARET_TESTS_REQUIRE)")
    pytest.skip("needs Debian's postgresql and PyPI moto[server]", allow_module_level=True)

import s3_peer  # noqa: E402 (needs boto3, which moto brings)


@pytest.fixture
def own_postgres():
    """A PostgreSQL cluster of the test's own: (its directory, the URL of a new database)."""
    d = tempfile.mkdtemp(prefix="lazaret-pg-own-")
    url = subprocess.run([THROWAWAY, "start", d], capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run(["psql", "-q", url, "-c", "CREATE DATABASE mail"], check=True, capture_output=True)
    try:
        yield d, url.rsplit("/", 1)[0] + "/mail"
    finally:
        subprocess.run([THROWAWAY, "stop", d], capture_output=True)


def node(tmp_path, name, url, bucket, extra=""):
    """A Lazaret node on the shared database and bucket."""
    workdir = tmp_path / name
    workdir.mkdir()
    keys = s3_peer.peer().store_config(workdir, bucket)
    return Server(workdir, f'{extra}\n[store]\nbackend = "postgres"\nurl = "{url}"\nnode = "{name}"\n{keys}')


def test_two_nodes_share_accounts_mail_and_news(own_postgres, tmp_path):
    _, url = own_postgres
    bucket = s3_peer.peer().new_bucket()
    one = node(tmp_path, "mx1", url, bucket)
    two = node(tmp_path, "mx2", url, bucket)
    try:
        # An account made on one node logs in on the other.
        one.add_user("alice@localhost")
        with two.imap("alice@localhost") as m:
            m.select("INBOX")
            # Mail taken by one node reaches the other node's IDLE session at once.
            tag = m._new_tag().decode()
            m.send(f"{tag} IDLE\r\n".encode())
            assert m.readline().startswith(b"+")
            one.send("alice@localhost", "from mx1")
            m.sock.settimeout(15)
            line = m.readline()
            while b"EXISTS" not in line:
                line = m.readline()
            assert line.startswith(b"* 1 EXISTS"), line
            m.send(b"DONE\r\n")
            while not m.readline().startswith(tag.encode()):
                pass
            two.send("alice@localhost", "from mx2")
            wait_for(lambda: len(one.inbox("alice@localhost")) == 2, what="both messages on mx1")
            m.noop()  # the session learns of the second message
            typ, data = m.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            subjects = sorted(part[1].decode().strip() for part in data if isinstance(part, tuple))
            assert subjects == ["Subject: from mx1", "Subject: from mx2"], subjects
        # Either node's status lists both, with their heartbeats.
        nodes = {n["name"]: n for n in two.cli_json("status")["nodes"]}
        assert set(nodes) == {"mx1", "mx2"} and all(n["up"] for n in nodes.values()), nodes
        text = one.cli("status").stdout
        assert "Nodes sharing the store" in text and "mx2" in text, text
        # The runbook's switches thrown on one node hold on the other within seconds.
        one.cli("smtp", "stop")
        wait_for(lambda: not accepts_smtp(two), timeout=10, what="mx2's SMTP port closed")
        two.cli("access", "disable", "--message", "Worm cleanup, back at noon")
        wait_for(lambda: "back at noon" in imap_refusal(one), timeout=10, what="mx1 refusing logins")
        two.cli("connector", "schedule", "direct", "never")
        wait_for(lambda: connector_schedule(one) == "never", timeout=10, what="mx1's schedule")
        two.cli("smtp", "start")
        one.cli("access", "enable")
        wait_for(lambda: accepts_smtp(one) and accepts_smtp(two), timeout=10, what="SMTP back on both")
        wait_for(lambda: imap_refusal(two) == "", timeout=10, what="logins back on mx2")
        assert one.cli_json("status")["user_access"] == "enabled"
        # A backup is PostgreSQL's job: the command says so, and how.
        r = one.cli("backup", "create", check=False)
        assert r.returncode != 0 and "pg_dump" in r.stderr, r.stderr
        # A node that stops is shown down once its heartbeats stop.
        two.stop()
        wait_for(lambda: not {n["name"]: n for n in one.cli_json("status")["nodes"]}["mx2"]["up"],
                 timeout=30, what="mx2 shown down")
    finally:
        one.stop()
        two.stop()


def accepts_smtp(server):
    try:
        with smtplib.SMTP(server.smtp_host, server.smtp_port, timeout=5) as s:
            return s.noop()[0] == 250
    except (OSError, smtplib.SMTPException):
        return False


def imap_refusal(server):
    """Why alice's IMAP login is refused ("" when it is not)."""
    try:
        server.imap("alice@localhost").logout()
        return ""
    except Exception as e:  # noqa: BLE001 - imaplib raises its own error class
        return str(e)


def connector_schedule(server):
    [c] = [c for c in server.cli_json("connector", "list") if c["name"] == "direct"]
    return c["schedule"]


def smtp_answer(server):
    """What the server answers to one message for alice: 250, or the error's code."""
    try:
        with server.smtp() as s:
            s.sendmail("sender@far.test", ["alice@localhost"], "Subject: during\r\n\r\nx\r\n")
        return 250
    except smtplib.SMTPRecipientsRefused as e:
        return e.recipients["alice@localhost"][0]
    except smtplib.SMTPResponseException as e:
        return e.smtp_code


def test_a_database_outage_answers_451_and_loses_nothing(own_postgres, tmp_path):
    d, url = own_postgres
    s = node(tmp_path, "mx1", url, s3_peer.peer().new_bucket())
    try:
        s.add_user("alice@localhost")
        for i in range(3):
            s.send("alice@localhost", f"before {i}")
        s.wait_delivered("alice@localhost", 3)

        subprocess.run([THROWAWAY, "halt", d], check=True, capture_output=True)
        started = time.time()
        code = smtp_answer(s)
        assert 400 <= code < 500, code
        assert time.time() - started < 30, "a temporary failure soon, not a hang"
        with pytest.raises(Exception, match="UNAVAILABLE"):
            s.imap("alice@localhost")
        assert s.proc.poll() is None, "the server lives on"

        subprocess.run([THROWAWAY, "resume", d], check=True, capture_output=True)
        wait_for(lambda: smtp_answer(s) == 250, timeout=60, what="mail taken again")
        s.wait_delivered("alice@localhost", 4)
        subjects = sorted(m["subject"] for m in s.inbox("alice@localhost"))
        assert subjects == ["before 0", "before 1", "before 2", "during"], subjects
        with s.imap("alice@localhost") as m:
            typ, data = m.select("INBOX")
            assert int(data[0]) == 4
    finally:
        s.stop()


def make_tls_pair(d):
    """A CA of the test's own and the database's certificate it signed (for 127.0.0.1)."""
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Lazaret test CA")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    with open(os.path.join(d, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.ext")


def test_tls_to_the_database_is_encrypted_and_its_certificate_verified(own_postgres, tmp_path):
    d, url = own_postgres
    make_tls_pair(str(tmp_path))
    data = os.path.join(d, "data")
    for name in ("server.crt", "server.key"):
        shutil.copy(tmp_path / name, os.path.join(data, name))
        if os.geteuid() == 0:
            shutil.chown(os.path.join(data, name), "postgres")
    os.chmod(os.path.join(data, "server.key"), 0o600)
    subprocess.run(["psql", "-q", url, "-c", "ALTER SYSTEM SET ssl = on", "-c", "SELECT pg_reload_conf()"],
                   check=True, capture_output=True)
    tls_url = url + "?sslmode=require"
    bucket = s3_peer.peer().new_bucket()

    # The test CA is in no system store: the node must not start, and must say what to do.
    untrusted = tmp_path / "untrusted"
    untrusted.mkdir()
    keys = s3_peer.peer().store_config(untrusted, bucket)
    with pytest.raises(RuntimeError):
        Server(untrusted, f'[store]\nbackend = "postgres"\nurl = "{tls_url}"\n{keys}')
    log = (untrusted / "server.log").read_text()
    assert "ca_file" in log and "certificate" in log, log[-2000:]

    trusting = tmp_path / "trusting"
    trusting.mkdir()
    keys = s3_peer.peer().store_config(trusting, bucket)
    s = Server(trusting, f'[store]\nbackend = "postgres"\nurl = "{tls_url}"\n'
                         f'ca_file = "{tmp_path / "ca.pem"}"\n{keys}')
    try:
        s.add_user("alice@localhost")
        s.send("alice@localhost", "over TLS")
        s.wait_delivered("alice@localhost", 1)
        # Every connection of the node, the pool's and the notification listener's.
        rows = subprocess.run(
            ["psql", "-qAt", url, "-c",
             "SELECT s.ssl, count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
             "WHERE a.application_name LIKE 'lazaret%' GROUP BY s.ssl"],
            check=True, capture_output=True, text=True).stdout.split()
        assert rows and all(r.startswith("t|") for r in rows), rows
        assert sum(int(r.split("|")[1]) for r in rows) >= 2, rows
    finally:
        s.stop()

    # A database without TLS and a url that requires it: no plaintext fallback.
    subprocess.run(["psql", "-q", url, "-c", "ALTER SYSTEM SET ssl = off", "-c", "SELECT pg_reload_conf()"],
                   check=True, capture_output=True)
    with pytest.raises(RuntimeError):
        s.start()
    log = (trusting / "server.log").read_text()
    assert "does not offer TLS" in log, log[-2000:]


def api(server, method, path, body=None):
    """The admin API, without a process per call (the test polls fast)."""
    import http.client
    import json

    host, port = server.admin.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    headers = {"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"}
    c.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, json.loads(data) if data else None


def test_a_bulk_quarantine_whose_node_dies_is_finished_by_another(own_postgres, tmp_path):
    _, url = own_postgres
    bucket = s3_peer.peer().new_bucket()
    one = node(tmp_path, "mx1", url, bucket)
    two = node(tmp_path, "mx2", url, bucket)
    try:
        one.add_user("alice@localhost")
        total = 3000
        mbox = tmp_path / "worms.mbox"
        with open(mbox, "w") as f:
            for i in range(total):
                f.write(f"From worm@far.test Thu Dec  3 10:00:00 2026\nFrom: w{i}@far.test\n"
                        f"To: alice@localhost\nSubject: Wormy {i}\nMessage-ID: <w{i}@far.test>\n\n"
                        f"copy {i}\n\n")
        one.cli("import", "--user", "alice@localhost", str(mbox))

        # Started by the CLI, which follows the job until its node dies.
        follower = subprocess.Popen(
            [BIN, "-c", str(one.config), "quarantine", "--subject", "Wormy", "--yes",
             "--reason", "worm drill"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        while True:
            status, jobs = api(one, "GET", "/api/jobs")
            mine = [j["id"] for j in jobs if j["action"] == "quarantine"]
            if mine:
                job = mine[0]
                break
            assert time.time() < deadline and follower.poll() is None, jobs
            time.sleep(0.005)
        # Killed once the first batches are in and before the last: midway.
        deadline = time.time() + 60
        while True:
            status, view = api(one, "GET", f"/api/jobs/{job}")
            assert view["state"] == "running", view
            if view["done"] > 0:
                one.kill9()
                break
            assert time.time() < deadline, view
            time.sleep(0.005)
        done_by_one = view["done"]
        assert 0 < done_by_one < total
        # The CLI says it lost the server, how far the job got, and where to follow it.
        _, said = follower.communicate(timeout=60)
        assert follower.returncode == 3, said
        assert "lost the server while following quarantine" in said, said
        assert "another node takes the job over" in said, said

        # mx2 takes it over once mx1 is silent for three heartbeats (15 s), and
        # finishes it: every copy in quarantine, none left in the mailbox.
        def finished():
            return int(two.sql("SELECT count(*) FROM quarantine")[0][0]) == total
        wait_for(finished, timeout=90)
        with two.imap("alice@localhost") as m:
            typ, data = m.select("INBOX")
            assert int(data[0]) == 0
        state = two.sql("SELECT state, node, handed_over, done FROM admin_jobs")
        assert [tuple(str(v) for v in r) for r in state] == [("done", "mx2", "mx1 ", str(total))], state
        audit = two.cli_json("audit", "--since", "1h")
        actions = [e["action"] for e in audit]
        assert "quarantine resumed" in actions, actions
        resumed = next(e for e in audit if e["action"] == "quarantine resumed")
        assert "node mx1 went away" in resumed["detail"], resumed
        # The job shows on mx2 as done, counted from where mx1 stopped.
        status, jobs = api(two, "GET", "/api/jobs")
        [mine] = [j for j in jobs if j["action"] == "quarantine"]
        assert mine["state"] == "done" and mine["done"] == total and "resumed from mx1" in mine["query"], mine
    finally:
        two.stop()
        one.stop()


def test_three_nodes_one_killed_every_10s_deliver_every_acknowledged_message(own_postgres, tmp_path):
    """Issue #21's cluster test: 10,000 messages sent across three nodes while one of
    them is SIGKILLed every 10 s and started again. Every message a node acknowledged
    is in its local mailbox exactly once; every one for a remote domain reaches the
    counting sink, again only for those in flight at a kill (at-least-once delivery)."""
    import collections
    import email
    import threading

    from peer import Peer
    from test_outbound import relay_config

    _, url = own_postgres
    bucket = s3_peer.peer().new_bucket()
    sink = Peer()
    sink.start()
    nodes = []
    try:
        for i in (1, 2, 3):
            # alice submits all the mail out: her per-user rate limit is lifted.
            unlimited = '\n[limits.submission]\nmessages = []\nrecipients = []\n'
            nodes.append(node(tmp_path, f"mx{i}", url, bucket, relay_config(sink) + unlimited))
        users = ["alice@localhost", "bob@localhost", "carol@localhost"]
        for user in users:
            nodes[0].add_user(user)

        # Sender k sends messages k, k+4, ...: two send local mail, two submit mail out.
        total, senders = 10_000, 4
        # n -> True (acknowledged with 250) or False (the connection died during the
        # transaction: maybe stored, maybe not; not sent again, so at most once).
        outcome = {}
        lock = threading.Lock()
        why = collections.Counter()

        def local(n):
            return n % 2 == 0

        def rcpt(n):
            return users[n % 3] if local(n) else f"r{n}@far.test"

        def send_share(first):
            which, conn = first, None
            n = first
            while n < total:
                # Mail for the local users comes in on port 25 from outside; mail out
                # is submitted by a local user who logs in (no open relay).
                sender = f"s{n}@far.test" if local(n) else "alice@localhost"
                if conn is None:
                    target = nodes[which % 3]
                    which += 1
                    try:
                        if local(n):
                            conn = smtplib.SMTP(target.smtp_host, target.smtp_port, timeout=30)
                        else:
                            conn = smtplib.SMTP(target.submission_host, target.submission_port, timeout=30)
                            conn.login("alice@localhost", "secret")
                    except (OSError, smtplib.SMTPException):
                        conn = None
                        time.sleep(0.05)
                        continue
                body = (f"From: {sender}\r\nTo: {rcpt(n)}\r\nSubject: chaos {n}\r\n"
                        f"Message-ID: <chaos-{n}@far.test>\r\n\r\nmessage {n}\r\n")
                try:
                    refused = conn.sendmail(sender, [rcpt(n)], body)
                    acked = refused == {}
                except (OSError, smtplib.SMTPException) as e:
                    acked = False
                    with lock:
                        why[f"{'local' if local(n) else 'out'} {type(e).__name__} {str(e)[:80]}"] += 1
                    try:
                        conn.close()
                    except OSError:
                        pass
                    conn = None
                with lock:
                    outcome[n] = acked
                n += senders
            if conn is not None:
                try:
                    conn.quit()
                except (OSError, smtplib.SMTPException):
                    pass

        # At each kill, the outbound items the dead node had claimed and not recorded:
        # its claims stay in its name until it starts again. Only those may go twice.
        in_flight_at_kills = []

        def kill_every_10s():
            k = 0
            while not stop_killing.wait(10):
                victim = nodes[k % 3]
                victim.kill9()
                claimed = victim.sql(
                    f"SELECT count(*) FROM queue_items WHERE lease_owner='{victim.workdir.name}'")
                in_flight_at_kills.append(int(claimed[0][0]))
                time.sleep(1)
                victim.start()
                k += 1

        stop_killing = threading.Event()
        started = time.time()
        workers = [threading.Thread(target=send_share, args=(i,)) for i in range(senders)]
        killer = threading.Thread(target=kill_every_10s)
        for t in workers:
            t.start()
        killer.start()
        for t in workers:
            t.join()
        stop_killing.set()
        killer.join()
        sent_in = time.time() - started
        kills = len(in_flight_at_kills)
        assert kills >= 2, f"sending took {sent_in:.0f} s: too short for the kills the test is about"

        acked = {n for n, ok in outcome.items() if ok}
        assert len(outcome) == total
        assert len(acked) >= total - 10 * kills * senders, f"{total - len(acked)} not acknowledged: {why.most_common(8)}"

        # Everything drains: no item left in any queue, on any node.
        def drained():
            return int(nodes[0].sql("SELECT count(*) FROM queue_items")[0][0]) == 0
        wait_for(drained, timeout=240, what="every queue empty")

        subjects = collections.Counter(
            int(row[0].split()[-1]) for row in nodes[0].sql(
                "SELECT m.subject FROM mailbox_entries e JOIN messages m ON m.id=e.message"))
        twice_local = {n: c for n, c in subjects.items() if c > 1}
        assert not twice_local, f"delivered locally more than once: {sorted(twice_local)[:20]}"
        missing_local = sorted(n for n in acked if local(n) and subjects[n] != 1)
        assert not missing_local, f"{len(missing_local)} acknowledged local messages missing: {missing_local[:20]}"
        assert all(local(n) for n in subjects)

        with sink.lock:
            contents = [m["content"] for m in sink.messages]
        remote = collections.Counter(
            int(email.message_from_bytes(c)["Subject"].split()[-1]) for c in contents)
        missing_remote = sorted(n for n in acked if not local(n) and remote[n] == 0)
        assert not missing_remote, f"{len(missing_remote)} acknowledged remote messages lost: {missing_remote[:20]}"
        duplicates = sum(c - 1 for c in remote.values())
        in_flight = sum(in_flight_at_kills)
        print(f"\n3 nodes, {kills} kills in {sent_in:.0f} s: {len(acked)} of {total} acknowledged, "
              f"{sum(subjects.values())} in mailboxes (none twice), {len(remote)} reached the sink, "
              f"{duplicates} of them twice (in flight at the kills: {in_flight})")
        assert duplicates <= in_flight, (duplicates, in_flight_at_kills)
    finally:
        for n in nodes:
            n.stop()
        sink.stop()
