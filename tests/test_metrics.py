"""Metrics and health (issue #23): `/metrics` in Prometheus text format, parsed with
prometheus-client's own parser (PyPI), counts what the test did; `/health` and
`/ready` answer load balancers without the token, and `/ready` turns 503 while SMTP is
stopped."""

import smtplib
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families


def scrape(server, token=True):
    req = urllib.request.Request(f"http://{server.admin}/metrics")
    if token:
        req.add_header("Authorization", f"Bearer {server.token}")
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels):
    return samples[(name, tuple(sorted(labels.items())))]


def probe(server, path):
    try:
        with urllib.request.urlopen(f"http://{server.admin}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_metrics_count_what_happened(server):
    before = scrape(server)
    for i in range(5):
        server.send("alice@localhost", f"metrics {i}")
    with smtplib.SMTP(server.smtp_host, server.smtp_port, timeout=10) as s:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            s.sendmail("x@far.test", ["nobody@localhost"], "Subject: x\r\n\r\nx\r\n")
    with pytest.raises(Exception):
        server.imap("alice@localhost", "wrong")
    server.imap("alice@localhost").logout()
    server.wait_delivered("alice@localhost", 5)

    after = scrape(server)

    def grew(name, **labels):
        return value(after, name, **labels) - before.get((name, tuple(sorted(labels.items()))), 0)

    assert grew("lazaret_smtp_messages_total", listener="smtp", outcome="accepted") == 5
    assert grew("lazaret_smtp_recipients_total", listener="smtp", outcome="accepted") == 5
    assert grew("lazaret_smtp_recipients_total", listener="smtp", outcome="rejected") == 1
    assert grew("lazaret_connections_total", listener="smtp") == 6
    assert grew("lazaret_connections_total", listener="imap") == 2
    assert grew("lazaret_logins_total", outcome="failed") == 1
    assert grew("lazaret_logins_total", outcome="succeeded") == 1
    assert grew("lazaret_deliveries_total", destination="local", outcome="delivered") == 5
    assert grew("lazaret_scanned_total") == 5 and grew("lazaret_scan_detections_total") == 0
    # The writer's histograms: every commit counted, each bucket at most the total.
    commits = value(after, "lazaret_store_commit_seconds_count")
    assert commits >= 5 and value(after, "lazaret_store_commit_seconds_bucket", le="+Inf") == commits
    assert value(after, "lazaret_store_commit_seconds_sum") > 0
    assert value(after, "lazaret_store_commit_requests_bucket", le="1") <= commits
    assert value(after, "lazaret_up") == 1
    assert value(after, "lazaret_queue_messages", queue="inbound", state="ready") == 0
    assert value(after, "lazaret_store_messages") == 5
    assert value(after, "lazaret_quarantine_messages") == 0
    assert value(after, "lazaret_smtp_inbound_up") == 1
    assert value(after, "process_resident_memory_bytes") > 1_000_000
    assert value(after, "process_open_fds") > 5
    assert value(after, "lazaret_disk_free_bytes") > 0

    # Quarantine shows; a frozen queue says so and how old its oldest message is.
    server.cli("queue", "freeze", "inbound")
    server.send("alice@localhost", "held")
    server.cli("quarantine", "--subject", "metrics 0", "--yes")
    held = scrape(server)
    assert value(held, "lazaret_quarantine_messages") == 1
    assert value(held, "lazaret_queue_frozen", queue="inbound") == 1
    assert value(held, "lazaret_queue_messages", queue="inbound", state="ready") == 1
    assert value(held, "lazaret_queue_oldest_age_seconds", queue="inbound") >= 0
    server.cli("queue", "thaw", "inbound")

    # The token is needed for metrics.
    with pytest.raises(urllib.error.HTTPError) as e:
        scrape(server, token=False)
    assert e.value.code == 401


def test_health_and_ready_for_load_balancers(server):
    assert probe(server, "/health") == (200, "ok\n")
    assert probe(server, "/ready") == (200, "ready\n")
    server.cli("smtp", "stop")
    status, body = probe(server, "/ready")
    assert status == 503 and "SMTP is stopped" in body, body
    assert probe(server, "/health")[0] == 200, "stopped is not dead"
    server.cli("smtp", "start")
    assert probe(server, "/ready") == (200, "ready\n")


def test_the_grafana_dashboard_asks_only_for_metrics_that_exist(server):
    """docs/grafana-lazaret.json: every series its panels query is one /metrics has."""
    import json
    import pathlib
    import re

    dash = json.loads((pathlib.Path(__file__).resolve().parent.parent / "docs" / "grafana-lazaret.json").read_text())
    wanted = {name for p in dash["panels"] for t in p["targets"]
              for name in re.findall(r"\b((?:lazaret|process)_[a-z_]+)", t["expr"])}
    req = urllib.request.Request(f"http://{server.admin}/metrics",
                                 headers={"Authorization": f"Bearer {server.token}"})
    text = urllib.request.urlopen(req, timeout=10).read().decode()
    families = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    # Counters are exposed as NAME_total and typed as NAME by the parser's rules; the
    # text format names them in full.
    missing = sorted(w for w in wanted if w not in families)
    assert not missing, missing
    assert len(dash["panels"]) >= 10
