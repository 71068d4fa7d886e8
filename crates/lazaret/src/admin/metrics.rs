//! `/metrics` (Prometheus text format, behind the admin token: Prometheus sends it with
//! `authorization: {credentials_file: …}`), and `/health` and `/ready` for load
//! balancers and service managers (no token: they say only up or not, and why).

use crate::metrics::{LISTENERS, LOGIN_OUTCOMES, OUTCOMES};
use crate::server::Server;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::fmt::Write;
use std::sync::Arc;

/// The text exposition format, one family at a time.
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.0, "{k}=\"{v}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

pub async fn metrics(State(server): State<Arc<Server>>) -> Response {
    match render(&server).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn render(server: &Arc<Server>) -> Result<String, super::ApiError> {
    let (stats, unscanned) = server
        .store_call(|s| Ok((s.stats()?, s.unscanned_inbound()?)))
        .await?;
    let queues = super::outbound::queue_list(server).await?;
    // The ten fastest-growing clusters (0.7 s for a thousand on a million messages,
    // measured; ten cost a fraction of that).
    let clusters = server
        .store_call(|s| {
            s.clusters(&lazaret_store::ClusterQuery {
                since: None,
                places: Vec::new(),
                min: 2,
                limit: 10,
                by_growth: true,
            })
        })
        .await?;
    let m = &server.metrics;
    let mut out = Exposition(String::with_capacity(8192));

    out.single("lazaret_up", "gauge", "1 while the server runs.", 1);
    out.single(
        "lazaret_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
        server.started.elapsed().as_secs(),
    );
    out.family(
        "lazaret_connections_open",
        "gauge",
        "Sessions open now, by listener.",
    );
    for (l, name) in LISTENERS {
        out.sample("lazaret_connections_open", &[("listener", name)], m.open(l));
    }
    out.family(
        "lazaret_connections_total",
        "counter",
        "Sessions accepted since start, by listener.",
    );
    for (l, name) in LISTENERS {
        out.sample(
            "lazaret_connections_total",
            &[("listener", name)],
            m.opened(l),
        );
    }
    out.family(
        "lazaret_smtp_messages_total",
        "counter",
        "Messages at the end of DATA by listener and answer: accepted (2xx), deferred (4xx), rejected (5xx).",
    );
    for (submission, listener) in [(false, "smtp"), (true, "submission")] {
        for (i, outcome) in OUTCOMES.iter().enumerate() {
            out.sample(
                "lazaret_smtp_messages_total",
                &[("listener", listener), ("outcome", outcome)],
                m.messages(submission, i),
            );
        }
    }
    out.family(
        "lazaret_smtp_recipients_total",
        "counter",
        "RCPT TO by listener and answer: accepted (2xx), deferred (4xx), rejected (5xx).",
    );
    for (submission, listener) in [(false, "smtp"), (true, "submission")] {
        for (i, outcome) in OUTCOMES.iter().enumerate() {
            out.sample(
                "lazaret_smtp_recipients_total",
                &[("listener", listener), ("outcome", outcome)],
                m.recipients(submission, i),
            );
        }
    }
    out.family(
        "lazaret_logins_total",
        "counter",
        "User logins (IMAP, POP3, submission) by outcome; throttled: refused after too many failures.",
    );
    for (o, name) in LOGIN_OUTCOMES {
        out.sample("lazaret_logins_total", &[("outcome", name)], m.logins(o));
    }
    out.family(
        "lazaret_deliveries_total",
        "counter",
        "Recipient copies by destination (local, remote) and outcome (delivered, deferred, failed).",
    );
    for (d, destination) in crate::metrics::DESTINATIONS.iter().enumerate() {
        for (o, outcome) in crate::metrics::DELIVERY_OUTCOMES.iter().enumerate() {
            out.sample(
                "lazaret_deliveries_total",
                &[("destination", destination), ("outcome", outcome)],
                m.delivery_count(d, o),
            );
        }
    }
    out.single(
        "lazaret_dsns_total",
        "counter",
        "Delivery status notifications (bounces) queued for senders.",
        m.dsn_count(),
    );
    let (scanned, detections) = m.scan_counts();
    out.single(
        "lazaret_scanned_total",
        "counter",
        "Messages the after-queue scanner scanned.",
        scanned,
    );
    out.single(
        "lazaret_scan_detections_total",
        "counter",
        "Messages in which the scanner found something (quarantined or tagged).",
        detections,
    );
    out.family(
        "lazaret_refused_total",
        "counter",
        "Connections or recipients refused by the limits, by limit.",
    );
    out.sample(
        "lazaret_refused_total",
        &[("limit", "connections")],
        server.connection_gate.refused(),
    );
    out.sample(
        "lazaret_refused_total",
        &[("limit", "rate_submission")],
        server.rate_submission.refused(),
    );
    out.sample(
        "lazaret_refused_total",
        &[("limit", "rate_inbound")],
        server.rate_inbound.refused(),
    );

    out.family(
        "lazaret_queue_messages",
        "gauge",
        "Messages in each queue, by state (ready, retry, frozen).",
    );
    for q in &queues {
        for (state, n) in [("ready", q.ready), ("retry", q.retry), ("frozen", q.frozen)] {
            out.sample(
                "lazaret_queue_messages",
                &[("queue", &q.name), ("state", state)],
                n,
            );
        }
    }
    out.family(
        "lazaret_queue_frozen",
        "gauge",
        "1 when the queue itself is frozen (or held: outbound disabled, schedule closed).",
    );
    for q in &queues {
        let held = q.state == "frozen" || q.held.is_some();
        out.sample("lazaret_queue_frozen", &[("queue", &q.name)], held as u8);
    }
    out.family(
        "lazaret_queue_oldest_age_seconds",
        "gauge",
        "Age of the oldest message in each queue (0 when empty).",
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    for q in &queues {
        let age = q.oldest.map_or(0, |t| (now - t).max(0));
        out.sample(
            "lazaret_queue_oldest_age_seconds",
            &[("queue", &q.name)],
            age,
        );
    }

    out.single(
        "lazaret_store_messages",
        "gauge",
        "Messages stored (each content once).",
        stats.messages,
    );
    out.single(
        "lazaret_store_message_bytes",
        "gauge",
        "Bytes of the stored messages.",
        stats.message_bytes,
    );
    out.single(
        "lazaret_store_database_bytes",
        "gauge",
        "Size of the metadata database.",
        stats.database_bytes,
    );
    out.single(
        "lazaret_quarantine_messages",
        "gauge",
        "Messages in quarantine.",
        stats.quarantined,
    );
    out.single(
        "lazaret_quarantine_bytes",
        "gauge",
        "Bytes in quarantine.",
        stats.quarantine_bytes,
    );
    out.single(
        "lazaret_scan_backlog_messages",
        "gauge",
        "Messages in inbound waiting for the scanner.",
        unscanned,
    );
    out.single(
        "lazaret_text_index_behind_messages",
        "gauge",
        "Messages stored but not yet in the text index (find matches them directly meanwhile).",
        stats.text_index_behind,
    );
    out.single(
        "lazaret_clusters_behind_messages",
        "gauge",
        "Messages stored but not yet filed into outbreak clusters.",
        stats.clusters_behind,
    );
    out.single(
        "lazaret_reclaim_behind_messages",
        "gauge",
        "Messages deleted whose rows the background reclaim has not removed yet.",
        stats.reclaim_behind,
    );
    out.single(
        "lazaret_clusters_held",
        "gauge",
        "Outbreak clusters held by [outbreak] hold_growth.",
        stats.clusters_held,
    );
    out.single(
        "lazaret_held_copies",
        "gauge",
        "Copies frozen in inbound by a cluster hold.",
        stats.held_copies,
    );
    out.family(
        "lazaret_cluster_messages",
        "gauge",
        "Members still stored of the ten fastest-growing outbreak clusters (lazaret clusters show ID).",
    );
    for c in &clusters {
        out.sample(
            "lazaret_cluster_messages",
            &[("cluster", &c.id.to_string())],
            c.messages,
        );
    }
    out.family(
        "lazaret_cluster_growth_last_hour",
        "gauge",
        "Members the same clusters gained in the last hour.",
    );
    for c in &clusters {
        out.sample(
            "lazaret_cluster_growth_last_hour",
            &[("cluster", &c.id.to_string())],
            c.last_hour,
        );
    }
    out.single(
        "lazaret_smtp_inbound_up",
        "gauge",
        "1 while the inbound SMTP listener accepts (lazaret smtp start|stop).",
        server.smtp.is_up() as u8,
    );
    out.single(
        "lazaret_user_access_enabled",
        "gauge",
        "1 while users may log in (lazaret access enable|disable).",
        server.access.current().enabled as u8,
    );
    out.single(
        "lazaret_disk_free_bytes",
        "gauge",
        "Free space on the data directory's filesystem.",
        server.disk.free(),
    );
    out.single(
        "lazaret_disk_min_free_bytes",
        "gauge",
        "[store] min_free: the reserve below which new mail is refused.",
        server.disk.min_free(),
    );
    out.single(
        "lazaret_disk_refusing_mail",
        "gauge",
        "1 while new mail is refused for want of space.",
        server.disk.refusing() as u8,
    );
    let writer = server.store.writer_figures();
    histogram(
        &mut out,
        "lazaret_store_commit_seconds",
        "Group commits of the store's writer: time from taking the batch to its durable commit.",
        lazaret_store::COMMIT_BUCKETS_US
            .iter()
            .map(|us| *us as f64 / 1e6),
        &writer.commit_us,
        writer.commit_sum_us as f64 / 1e6,
    );
    histogram(
        &mut out,
        "lazaret_store_commit_requests",
        "Requests (messages, deliveries, admin changes) carried by each group commit.",
        lazaret_store::BATCH_BUCKETS.iter().map(|n| *n as f64),
        &writer.batch,
        writer.batch_sum as f64,
    );
    if let Some((rss, fds)) = process_figures() {
        out.single(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            rss,
        );
        out.single(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            fds,
        );
    }
    Ok(out.0)
}

/// A histogram from cumulative bucket counts (the last one `+Inf`, the total).
fn histogram(
    out: &mut Exposition,
    name: &str,
    help: &str,
    bounds: impl Iterator<Item = f64>,
    cumulative: &[u64],
    sum: f64,
) {
    if cumulative.is_empty() {
        return;
    }
    out.family(name, "histogram", help);
    let bucket = format!("{name}_bucket");
    for (bound, count) in bounds.zip(cumulative) {
        out.sample(&bucket, &[("le", &bound.to_string())], count);
    }
    let total = cumulative[cumulative.len() - 1];
    out.sample(&bucket, &[("le", "+Inf")], total);
    out.sample(&format!("{name}_sum"), &[], sum);
    out.sample(&format!("{name}_count"), &[], total);
}

/// Resident memory and open descriptors of this process, from /proc.
fn process_figures() -> Option<(u64, usize)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let fds = std::fs::read_dir("/proc/self/fd").ok()?.count();
    Some((kb * 1024, fds))
}

/// Alive: the process answers and its store reads.
pub async fn health(State(server): State<Arc<Server>>) -> Response {
    match server.store_call(|s| s.setting("smtp.inbound")).await {
        Ok(_) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unavailable: {e}\n"),
        )
            .into_response(),
    }
}

/// Ready for mail: alive, the inbound listener accepting, and room on the disk. A load
/// balancer sends mail elsewhere while an admin has SMTP stopped or the disk is full.
pub async fn ready(State(server): State<Arc<Server>>) -> Response {
    let mut why = Vec::new();
    if let Err(e) = server.store_call(|s| s.setting("smtp.inbound")).await {
        why.push(format!("store unavailable: {e}"));
    }
    if !server.smtp.is_up() {
        why.push("inbound SMTP is stopped (lazaret smtp start)".to_string());
    }
    if server.disk.refusing() {
        why.push("refusing new mail: less free space than [store] min_free".to_string());
    }
    if why.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", why.join("; ")),
        )
            .into_response()
    }
}
