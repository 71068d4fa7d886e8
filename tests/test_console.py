"""The web console in a real browser: Debian's Chromium, headless, driven by Playwright
for Python against the real server on loopback.

Set LAZARET_CONSOLE_SHOTS=DIR to save a screenshot of each page there (docs/console/
holds the ones the README shows)."""

import email.message
import os
import pathlib
import shutil
import smtplib
import socket
import subprocess

import pytest

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - CI installs it
    sync_playwright = None

from test_outbound import wait_for

REQUIRED = "console" in os.environ.get("LAZARET_TESTS_REQUIRE", "")
CHROMIUM = shutil.which("chromium")
SHOTS = os.environ.get("LAZARET_CONSOLE_SHOTS")

if sync_playwright is None or CHROMIUM is None:
    if REQUIRED:
        pytest.fail("playwright (PyPI) and chromium (apt) are required for the console tests", pytrace=False)
    pytest.skip("playwright or chromium not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield p, b
        b.close()


def shot(page, name):
    if SHOTS:
        pathlib.Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(pathlib.Path(SHOTS) / f"{name}.png"), full_page=True)


def nav(page, name):
    page.get_by_role("navigation").get_by_role("link", name=name, exact=True).click()


def sign_in(page, server, token=None):
    base = f"http://{server.admin}"
    page.goto(base + "/")
    assert page.url == base + "/signin"
    page.fill("#token", token or server.token)
    page.get_by_role("button", name="Sign in").click()
    return base


WORM_HTML = ('<p>Open the invoice</p><script>document.title = "pwned"</script>'
             '<img src="http://203.0.113.9/track.png">')


def worm(to, subject):
    m = email.message.EmailMessage()
    m["From"] = "billing@far.test"
    m["To"] = to
    m["Subject"] = subject
    m.set_content(WORM_HTML, subtype="html")
    m.add_attachment(b"MZ\x90\x00 not really a program", maintype="application",
                     subtype="octet-stream", filename="invoice.scr")
    return m


def smtp_accepts(server):
    try:
        with socket.create_connection((server.smtp_host, server.smtp_port), timeout=2) as s:
            return s.recv(64).startswith(b"220")
    except OSError:
        return False


@pytest.fixture
def outbreak(make_server):
    """A server with alice's mailbox holding three worm copies and one clean message,
    and one message for the outside world waiting in a queue (its smarthost is down)."""
    server = make_server('[[connector]]\nname = "internet"\ndomains = ["*"]\nsmarthost = "127.0.0.1:9"\n'
                         '\n[delivery]\npoll_interval = "1s"\nretry_schedule = ["1h"]\n')
    server.add_user("alice@localhost")
    with server.smtp() as s:
        for subject in ["Invoice C", "Invoice A", "Invoice B"]:
            s.send_message(worm("alice@localhost", subject))
        s.sendmail("bob@far.test", ["alice@localhost"], "Subject: lunch\r\n\r\nat noon?\r\n")
    server.wait_delivered("alice@localhost", 4)
    with server.submission() as s:
        s.login("alice@localhost", "secret")
        s.sendmail("alice@localhost", ["carol@far.test"], "Subject: out\r\n\r\nhello\r\n")
    wait_for(lambda: server.queues().get("smarthost:internet", {}).get("messages") == 1, what="the outbound queue")
    return server


def inbox_count(server):
    imap = server.imap("alice@localhost")
    try:
        return int(imap.select("INBOX")[1][0])
    finally:
        imap.logout()


def test_the_outbreak_runbook_in_the_browser(browser, outbreak):
    p, b = browser
    server = outbreak
    context = b.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    requests, problems = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(str(e)))

    # Sign-in: a wrong token is refused, the right one gives a strict, script-proof cookie.
    base = f"http://{server.admin}"
    page.goto(base + "/")
    shot(page, "signin")
    page.fill("#token", "not-the-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not the admin token")
    page.fill("#token", server.token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Status", exact=True)).to_be_visible()
    [cookie] = context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie
    response = page.reload()
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp, csp
    shot(page, "status")

    # SMTP inbound off and on again: the port closes and opens.
    assert smtp_accepts(server)
    page.get_by_role("button", name="Stop SMTP inbound").click()
    expect(page.get_by_role("status")).to_contain_text("SMTP inbound stopped")
    wait_for(lambda: not smtp_accepts(server), what="the SMTP port to close")
    page.get_by_role("button", name="Start SMTP inbound").click()
    expect(page.get_by_role("status")).to_contain_text("SMTP inbound running")
    wait_for(lambda: smtp_accepts(server), what="the SMTP port to open")

    # Freeze the outbound queue and thaw it.
    nav(page, "Queues")
    row = page.locator("tr", has_text="smarthost:internet")
    row.get_by_role("button", name="Freeze").click()
    expect(page.get_by_role("status")).to_contain_text("Frozen: smarthost:internet")
    assert server.queues()["smarthost:internet"]["state"] == "frozen"
    shot(page, "queues")
    page.locator("tr", has_text="smarthost:internet").get_by_role("button", name="Thaw").click()
    expect(page.get_by_role("status")).to_contain_text("Thawed: smarthost:internet")
    assert server.queues()["smarthost:internet"]["state"] == "active"

    # Find the worm by its attachment's name, sort by subject, quarantine all that match.
    nav(page, "Find")
    page.fill("#attachment", "*.scr")
    page.get_by_role("button", name="Find", exact=True).click()
    rows = page.locator("table.results tbody tr")
    expect(rows).to_have_count(3)
    page.get_by_role("link", name="Subject").click()
    expect(rows).to_have_count(3)
    subjects = page.locator("table.results tbody tr td:nth-child(2)").all_inner_texts()
    assert subjects == ["Invoice A", "Invoice B", "Invoice C"], subjects
    shot(page, "find")
    page.get_by_label("all that match this search").check()
    page.get_by_label("Action", exact=True).select_option("quarantine")
    page.fill("#reason", "worm: invoice.scr")
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("alert")).to_contain_text("Quarantine: 3 message(s).")
    assert inbox_count(server) == 4, "nothing changes before the confirmation"
    shot(page, "confirm")
    page.get_by_role("button", name="Quarantine 3 message(s)").click()
    expect(page.get_by_role("status")).to_contain_text("done: 3 of 3", timeout=15000)
    shot(page, "job")
    assert inbox_count(server) == 1

    # A quarantined message, viewed: its HTML is text, nothing runs, nothing is fetched.
    nav(page, "Quarantine")
    expect(page.locator("table.results tbody tr")).to_have_count(3)
    shot(page, "quarantine")
    page.get_by_role("link", name="Invoice A").click()
    expect(page.get_by_role("heading", name="Quarantined")).to_be_visible()
    expect(page.locator("dl.facts")).to_contain_text("worm: invoice.scr")
    expect(page.locator("pre.body")).to_contain_text('<script>document.title = "pwned"</script>')
    expect(page.locator("table")).to_contain_text("invoice.scr")
    assert "pwned" not in page.title()
    shot(page, "message")
    assert all(u.startswith(base + "/") for u in requests), [u for u in requests if not u.startswith(base)]
    assert not [m for m in problems if "Content Security Policy" in m or "Refused" in m], problems

    # Restore that one: back in the mailbox.
    page.get_by_role("button", name="Restore this message").click()
    expect(page.get_by_role("status")).to_contain_text("done: 1 of 1", timeout=15000)
    wait_for(lambda: inbox_count(server) == 2, what="the restored message in INBOX")

    # Every change is in the audit log with the console as actor.
    nav(page, "Audit log")
    log = page.locator("table").inner_text()
    for action in ["smtp stop", "smtp start", "quarantine started", "restore started", "console sign-in"]:
        assert action in log, (action, log)
    shot(page, "audit")
    context.close()


def test_a_post_without_the_csrf_token_or_from_elsewhere_is_refused(browser, server):
    p, b = browser
    context = b.new_context()
    page = context.new_page()
    base = sign_in(page, server)
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    assert len(csrf) == 64

    r = page.request.post(base + "/smtp/stop", form={"csrf": ""}, headers={"Origin": base}, max_redirects=0)
    assert r.status == 403 and "CSRF" in r.text(), (r.status, r.text())
    r = page.request.post(base + "/smtp/stop", form={"csrf": csrf}, headers={"Origin": "http://evil.test"},
                          max_redirects=0)
    assert r.status == 403 and "not sent from the console" in r.text(), (r.status, r.text())
    assert smtp_accepts(server)
    # The same request from the console's page goes through.
    r = page.request.post(base + "/smtp/stop", form={"csrf": csrf}, headers={"Origin": base}, max_redirects=0)
    assert r.status == 303
    wait_for(lambda: not smtp_accepts(server), what="the SMTP port to close")

    # No session: to the sign-in page, nothing done.
    stranger = p.request.new_context()
    r = stranger.post(base + "/smtp/start", form={"csrf": csrf}, headers={"Origin": base}, max_redirects=0)
    assert r.status == 303 and r.headers["location"] == "/signin"
    assert not smtp_accepts(server)
    # The API still wants its bearer token: a console cookie is not one.
    r = page.request.get(base + "/api/status")
    assert r.status == 401
    stranger.dispose()

    # Signed out: the cookie no longer opens anything.
    page.get_by_role("button", name="Sign out").click()
    assert page.url == base + "/signin"
    page.goto(base + "/queues")
    assert page.url == base + "/signin"
    context.close()


def test_pages_work_with_javascript_off(browser, outbreak):
    p, b = browser
    server = outbreak
    context = b.new_context(java_script_enabled=False)
    page = context.new_page()
    base = sign_in(page, server)
    expect(page.get_by_role("heading", name="Switches")).to_be_visible()
    expect(page.locator("main")).to_contain_text("smarthost:internet")
    # Pages: two rows per page, the third on the next.
    page.goto(base + "/find?attachment=*.scr&sort=subject&limit=2")
    expect(page.locator("table.results tbody tr")).to_have_count(2)
    expect(page.get_by_role("status")).to_contain_text("Matches 1–2, and more.")
    page.get_by_role("link", name="Next →").click()
    assert page.locator("table.results tbody tr td:nth-child(2)").all_inner_texts() == ["Invoice C"]
    expect(page.get_by_role("status")).to_contain_text("Matches 3–3.")
    page.get_by_role("link", name="← Previous").click()
    expect(page.locator("table.results tbody tr")).to_have_count(2)
    # Without a chosen column: newest first (the order they came in: C, A, B), paged
    # the same way; a link goes back to it from a column's order.
    page.goto(base + "/find?attachment=*.scr&limit=2")
    expect(page.get_by_role("status")).to_contain_text("Newest first.")
    assert page.locator("table.results tbody tr td:nth-child(2)").all_inner_texts() == ["Invoice B", "Invoice A"]
    page.get_by_role("link", name="Next →").click()
    assert page.locator("table.results tbody tr td:nth-child(2)").all_inner_texts() == ["Invoice C"]
    page.goto(base + "/find?attachment=*.scr&sort=subject")
    expect(page.locator("table.results tbody tr")).to_have_count(3)
    page.get_by_role("link", name="Newest first").click()
    assert page.locator("table.results tbody tr td:nth-child(2)").all_inner_texts() == ["Invoice B", "Invoice A", "Invoice C"]
    # The confirmation is a plain form too.
    page.get_by_label("all that match this search").check()
    page.get_by_label("Action", exact=True).select_option("delete-no-ndr")
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("alert")).to_contain_text("Delete, no bounces: 3 message(s).")
    page.get_by_role("button", name="Delete, no bounces 3 message(s)").click()
    wait_for(lambda: inbox_count(server) == 1, what="the deletion")
    context.close()


def test_lockdown_backup_and_recover_from_the_status_page(browser, server):
    p, b = browser
    context = b.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    base = sign_in(page, server)

    # A backup on demand: a job whose page follows it to the end. (A PostgreSQL store
    # is backed up by PostgreSQL's tools: the page says so, and how.)
    page.get_by_role("button", name="Back up now").click()
    if server.store_url:
        expect(page.get_by_role("paragraph").first).to_contain_text("pg_dump")
    else:
        expect(page.get_by_role("status")).to_contain_text("done", timeout=30000)
        backups = server.cli_json("backup", "list")
        assert len(backups) == 1, backups

    # Without the confirming tick (a form that skips the browser's check) nothing stops.
    page.goto(base + "/")
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    r = page.request.post(base + "/runbook/lockdown", form={"csrf": csrf, "no_backup": "on"},
                          headers={"Origin": base}, max_redirects=0)
    assert r.status == 400 and "Stop all mail now" in r.text(), (r.status, r.text())
    assert smtp_accepts(server)

    # Lockdown without a backup: mail in and out stops, users are kept out, queues freeze.
    page.goto(base + "/")
    page.fill("#lockdown-message", "Cleaning up a worm, back at noon")
    page.get_by_label("Skip the backup").check()
    page.get_by_label("Stop all mail now").check()
    shot(page, "runbook")
    page.get_by_role("button", name="Lock down").click()
    expect(page.get_by_role("status")).to_contain_text("done", timeout=30000)
    # The job's page lists each step as the CLI prints it: outcome, seconds, result.
    steps = page.locator("table tbody tr")
    expect(steps).to_have_count(5)
    expect(steps.nth(0)).to_contain_text("skipped")
    expect(steps.nth(1)).to_contain_text("smtp stop")
    expect(steps.nth(4)).to_contain_text("freeze queues")
    for i in range(5):
        cells = steps.nth(i).locator("td")
        assert cells.nth(1).inner_text() == "ok", steps.nth(i).inner_text()
        float(cells.nth(2).inner_text())
    wait_for(lambda: not smtp_accepts(server), what="the SMTP port to close")
    assert all(q["state"] == "frozen" for q in server.queues().values()), server.queues()
    try:
        server.imap("alice@localhost").logout()
        raise AssertionError("IMAP login went through during the lockdown")
    except Exception as e:  # noqa: BLE001 - imaplib raises its own error class
        assert "back at noon" in str(e), e
    page.goto(base + "/")
    expect(page.get_by_role("alert")).to_contain_text("Lockdown since")

    # Recover refuses while the signatures are the ones of the lockdown, and says why.
    page.get_by_role("button", name="Recover").click()
    expect(page.locator("p.error")).to_contain_text("signatures")
    page.goto(base + "/")
    page.fill("#recover-reason", "false alarm, drill")
    page.get_by_label("Recover even though the signatures have not changed").check()
    page.get_by_role("button", name="Recover").click()
    expect(page.get_by_role("status")).to_contain_text("done", timeout=30000)
    wait_for(lambda: smtp_accepts(server), what="the SMTP port to open")
    assert all(q["state"] == "active" for q in server.queues().values()), server.queues()
    server.imap("alice@localhost").logout()
    page.goto(base + "/")
    expect(page.get_by_role("alert")).to_have_count(0)

    page.goto(base + "/audit")
    log = page.locator("table").inner_text()
    for action in ["backup", "lockdown", "recover"]:
        assert action in log, (action, log)
    context.close()


def test_outbreak_clusters_page(browser, outbreak):
    p, b = browser
    server = outbreak
    wait_for(lambda: server.cli_json("clusters"), what="the worm's cluster")
    context = b.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    base = sign_in(page, server)

    # The three worm copies are one cluster, by their shared attachment.
    nav(page, "Clusters")
    rows = page.locator("table.results tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("invoice.scr (3)")
    expect(rows.first).to_contain_text("watching")
    shot(page, "clusters")
    # Growth order, and a minimum no cluster reaches.
    page.get_by_label("Order").select_option("growth")
    page.get_by_role("button", name="Show").click()
    expect(rows).to_have_count(1)
    page.fill("#min", "4")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("status")).to_contain_text("No cluster matches")
    r = page.goto(base + "/clusters?min=many")
    assert r.status == 400 and "give a number" in page.content()

    # One cluster: its subjects and attachment, and the way to its messages.
    page.goto(base + "/clusters")
    rows.first.get_by_role("link").click()
    expect(page.get_by_role("heading", name="Cluster", exact=False)).to_be_visible()
    expect(page.locator("main")).to_contain_text("Invoice A")
    expect(page.locator("table.results")).to_contain_text("invoice.scr")
    shot(page, "cluster")
    page.get_by_role("link", name="Its messages in Find").click()
    expect(page.locator("table.results tbody tr")).to_have_count(3)
    page.go_back()

    # Known mail and back again, both in the audit log.
    page.get_by_role("button", name="Allow as known mail").click()
    expect(page.get_by_role("status")).to_contain_text("allowed as known mail")
    expect(page.locator("p.lede")).to_contain_text("allowed")
    assert server.cli_json("clusters")[0]["allowed"] is True
    page.get_by_role("button", name="Unallow (treat as a possible outbreak again)").click()
    expect(page.get_by_role("status")).to_contain_text("no longer allowed")
    assert server.cli_json("clusters")[0]["allowed"] is False
    nav(page, "Audit log")
    log = page.locator("table").inner_text()
    assert "clusters allow" in log and "clusters unallow" in log, log
    context.close()


def test_signatures_installed_and_mail_rescanned_from_the_console(browser, outbreak):
    p, b = browser
    server = outbreak
    context = b.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    sign_in(page, server)
    nav(page, "Signatures")
    expect(page.locator("main")).to_contain_text("No signature files yet")

    # A bad line refuses the file, and says which.
    page.fill("#sig-name", "worm.ndb")
    page.fill("#sig-content", "Worm.Invoice:0:*:not-hex\n")
    page.get_by_role("button", name="Install signatures").click()
    expect(page.locator("p.error")).to_contain_text("signatures refused, nothing was changed")
    page.go_back()

    # A body signature for the worm's text, then a rescan of what is stored.
    page.goto(page.url.split("/signatures")[0] + "/signatures")
    # A name that would need escaping in a path (the buttons carry it in a field).
    page.fill("#sig-name", "worm #1.ndb")
    page.fill("#sig-content", "Worm.Invoice:0:*:" + b"Open the invoice".hex() + "\n")
    page.get_by_role("button", name="Install signatures").click()
    expect(page.get_by_role("status")).to_contain_text("worm #1.ndb added")
    expect(page.locator("table.results")).to_contain_text("worm #1.ndb")
    shot(page, "signatures")
    page.get_by_role("button", name="Rescan all mail").click()
    expect(page.get_by_role("status")).to_contain_text("done", timeout=30000)
    wait_for(lambda: inbox_count(server) == 1, what="the three worms quarantined")
    assert len(server.cli_json("quarantine", "list")) == 3

    # The file picker: two files in one upload, or none of them when one has a bad line.
    nav(page, "Signatures")
    page.set_input_files("#sig-files", files=[
        {"name": "extra.hdb", "mimeType": "application/octet-stream",
         "buffer": b"44d88612fea8a8f36de82e1278abb02f:68:Eicar.Test.Extra\n"},
        {"name": "broken.ndb", "mimeType": "application/octet-stream", "buffer": b"Broken:0:*:zz\n"},
    ])
    page.get_by_role("button", name="Upload signatures").click()
    expect(page.locator("p.error")).to_contain_text("broken.ndb")
    page.go_back()
    nav(page, "Signatures")
    expect(page.locator("table.results")).not_to_contain_text("extra.hdb")
    page.set_input_files("#sig-files", files=[
        {"name": "extra.hdb", "mimeType": "application/octet-stream",
         "buffer": b"44d88612fea8a8f36de82e1278abb02f:68:Eicar.Test.Extra\r\n"},
        {"name": "more.ndb", "mimeType": "application/octet-stream",
         "buffer": ("More.Invoice:0:*:" + b"not in any mail here".hex() + "\n").encode()},
    ])
    page.get_by_role("button", name="Upload signatures").click()
    expect(page.get_by_role("status")).to_contain_text("extra.hdb, more.ndb added")
    expect(page.locator("table.results")).to_contain_text("extra.hdb")
    expect(page.locator("table.results")).to_contain_text("more.ndb")
    for name in ["extra.hdb", "more.ndb"]:
        page.locator("tr", has_text=name).get_by_role("button", name="Remove").click()
        expect(page.get_by_role("status")).to_contain_text(f"{name} removed")

    # Removed again: the set goes back to the built-in signatures.
    nav(page, "Signatures")
    page.locator("tr", has_text="worm #1.ndb").get_by_role("button", name="Remove").click()
    expect(page.get_by_role("status")).to_contain_text("worm #1.ndb removed")
    expect(page.locator("main")).to_contain_text("No signature files yet")
    nav(page, "Audit log")
    log = page.locator("table").inner_text()
    for action in ["signatures add", "rescan", "signatures remove"]:
        assert action in log, (action, log)
    context.close()


def test_users_and_domains(browser, server):
    p, b = browser
    context = b.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    sign_in(page, server)
    nav(page, "Users")
    users = page.locator("section[aria-labelledby=users] table.results tbody tr")
    expect(users).to_have_count(2)

    page.fill("#domain-name", "Example.ORG")
    page.get_by_role("button", name="Add domain").click()
    expect(page.get_by_role("status")).to_contain_text("Domain example.org added")
    page.fill("#user-address", "carol@example.org")
    page.fill("#user-password", "first-secret")
    page.get_by_role("button", name="Add user").click()
    expect(page.get_by_role("status")).to_contain_text("User carol@example.org added")
    expect(users).to_have_count(3)
    server.imap("carol@example.org", password="first-secret").logout()
    shot(page, "accounts")

    # A new password: the old one no longer opens the mailbox.
    page.get_by_label("New password for carol@example.org").fill("second-secret")
    page.locator("tr", has_text="carol@example.org").get_by_role("button", name="Set").click()
    expect(page.get_by_role("status")).to_contain_text("Password of carol@example.org set")
    server.imap("carol@example.org", password="second-secret").logout()
    with pytest.raises(Exception):
        server.imap("carol@example.org", password="first-secret")

    # A domain with a user stays; the user goes after the tick, then the domain.
    page.locator("tr", has_text="example.org").filter(has_not_text="@").get_by_role("button", name="Remove").click()
    expect(page.locator("p.error")).to_contain_text("domain example.org still has 1 user(s); remove them first")
    page.go_back()
    page.reload()
    base = page.url.split("/accounts")[0]
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    r = page.request.post(base + "/accounts/users/remove", form={"csrf": csrf, "address": "carol@example.org"},
                          headers={"Origin": base}, max_redirects=0)
    assert r.status == 400 and "sure" in r.text(), (r.status, r.text())
    server.imap("carol@example.org", password="second-secret").logout()
    row = page.locator("tr", has_text="carol@example.org")
    row.get_by_label("sure").check()
    row.get_by_role("button", name="Remove").click()
    expect(page.get_by_role("status")).to_contain_text("User carol@example.org removed")
    expect(users).to_have_count(2)
    page.locator("tr", has_text="example.org").filter(has_not_text="@").get_by_role("button", name="Remove").click()
    expect(page.get_by_role("status")).to_contain_text("Domain example.org removed")
    nav(page, "Audit log")
    log = page.locator("table").inner_text()
    for action in ["domain add", "user add", "user passwd", "user remove", "domain remove"]:
        assert action in log, (action, log)
    context.close()


def test_connector_schedule_from_the_status_page(browser, outbreak):
    """`never` holds the connector's queue (nothing bounces), `always` lets it go; a
    schedule the server cannot read is refused and changes nothing."""
    p, b = browser
    server = outbreak
    context = b.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    sign_in(page, server)
    row = page.locator("section[aria-labelledby=connectors] tr", has_text="internet")
    expect(row).to_contain_text("open")
    expect(row).to_contain_text("smarthost 127.0.0.1:9")
    page.get_by_label("Schedule of internet").fill("never")
    row.get_by_role("button", name="Set").click()
    expect(page.get_by_role("status")).to_contain_text('Connector internet scheduled "never": held now')
    expect(row).to_contain_text("held")
    [c] = server.cli_json("connector", "list")
    assert c["schedule"] == "never" and c["open"] is False
    queue = next(q for q in server.cli_json("queue", "list") if q["name"] == "smarthost:internet")
    assert "schedule" in (queue.get("held") or ""), queue

    page.get_by_label("Schedule of internet").fill("sometimes")
    row.get_by_role("button", name="Set").click()
    expect(page.locator("p.error")).to_be_visible()
    assert server.cli_json("connector", "list")[0]["schedule"] == "never"
    page.go_back()
    page.reload()
    page.get_by_label("Schedule of internet").fill("always")
    row.get_by_role("button", name="Set").click()
    expect(page.get_by_role("status")).to_contain_text('Connector internet scheduled "always": open now')
    assert server.cli_json("connector", "list")[0]["open"] is True
    nav(page, "Audit log")
    assert "connector schedule" in page.locator("table").inner_text()
    context.close()


def test_console_over_https(browser, make_server):
    """`[admin] tls_listen`: the console over HTTPS with a `Secure` cookie; forms must come
    from the https origin; the plain listener keeps serving the CLI."""
    p, b = browser
    server = make_server('[admin]\nlisten = "127.0.0.1:0"\ntls_listen = ["127.0.0.1:0"]\n')
    [address] = server.admin_tls
    base = f"https://{address}"
    context = b.new_context(ignore_https_errors=True)
    page = context.new_page()
    page.goto(base + "/")
    assert page.url == base + "/signin"
    page.fill("#token", server.token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Switches")).to_be_visible()
    [cookie] = context.cookies()
    assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie

    page.get_by_role("button", name="Stop SMTP inbound").click()
    expect(page.get_by_role("status")).to_contain_text("SMTP inbound stopped")
    wait_for(lambda: not smtp_accepts(server), what="the SMTP port to close")
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    r = page.request.post(base + "/smtp/start", form={"csrf": csrf},
                          headers={"Origin": f"http://{address}"}, max_redirects=0)
    assert r.status == 403 and "expected" in r.text(), (r.status, r.text())
    assert not smtp_accepts(server)
    page.get_by_role("button", name="Start SMTP inbound").click()
    expect(page.get_by_role("status")).to_contain_text("SMTP inbound running")
    wait_for(lambda: smtp_accepts(server), what="the SMTP port to open")

    # The API over TLS too (curl checks nothing here: the pair is self-signed), and the
    # CLI on the plain loopback listener.
    out = subprocess.run(["curl", "-sk", "-H", f"Authorization: Bearer {server.token}", base + "/api/status"],
                         capture_output=True, text=True, check=True).stdout
    assert '"hostname"' in out, out
    assert server.cli_json("status")["listeners"]
    context.close()
