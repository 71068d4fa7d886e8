//! The after-queue scanner: mail is durably accepted first (the SMTP reply never waits
//! for it), then scanned here before the router may move it on. A flood that outruns
//! the scanner makes `inbound` grow and delivery wait; intake goes on, and nothing
//! unscanned reaches a mailbox or another server.

use super::Verdict;
use crate::queue::router;
use crate::server::Server;
use lazaret_core::config::OnIngest;
use lazaret_store::{new_message_id, AuditEntry, PendingScan, ScanAction, ScanRecord};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Messages taken per round; each worker scans a share of them.
const BATCH: usize = 64;
/// How often the signature directory is checked for changes made by hand.
const RELOAD_CHECK: Duration = Duration::from_secs(2);

pub async fn run(server: Arc<Server>) {
    if server.scanner.on_ingest == OnIngest::Off {
        return;
    }
    let workers = server
        .config
        .scan
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let mut last_check = std::time::Instant::now();
    loop {
        // Files copied into the directory by hand: looked for every few seconds, off
        // the async threads (a reload parses and builds the matcher).
        if last_check.elapsed() >= RELOAD_CHECK {
            last_check = std::time::Instant::now();
            let s = server.clone();
            let _ = tokio::task::spawn_blocking(move || s.scanner.reload_if_changed()).await;
        }
        let pending = server.store_call(|s| s.scan_pending(BATCH)).await;
        let pending = match pending {
            Ok(p) if !p.is_empty() => p,
            Ok(_) => {
                tokio::select! {
                    _ = server.scan_wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
                continue;
            }
            Err(e) => {
                tracing::error!("scanner: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let recipients: HashMap<i64, Vec<String>> = pending
            .iter()
            .map(|p| (p.message, p.recipients.clone()))
            .collect();
        let chunk = pending.len().div_ceil(workers).max(1);
        let mut tasks = Vec::new();
        for part in pending.chunks(chunk) {
            let part = part.to_vec();
            let s = server.clone();
            tasks.push(tokio::task::spawn_blocking(move || {
                part.into_iter()
                    .map(|p| scan_one(&s, p))
                    .collect::<Vec<_>>()
            }));
        }
        let mut records = Vec::new();
        let mut unavailable = false;
        for t in tasks {
            match t.await {
                Ok(results) => {
                    for r in results {
                        match r {
                            Some(record) => records.push(record),
                            None => unavailable = true,
                        }
                    }
                }
                Err(e) => tracing::error!("scanner worker failed: {e}"),
            }
        }
        if !records.is_empty() {
            record(&server, records, recipients).await;
        }
        if unavailable {
            // Fail closed: those messages wait in `inbound` until clamd answers.
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }
}

/// Scans one message; None when it must wait (clamd down, blob unreadable now).
fn scan_one(server: &Server, pending: PendingScan) -> Option<ScanRecord> {
    let raw = match server.store.blob_read(&pending.uid) {
        Ok(raw) => raw,
        Err(e) => {
            tracing::error!(message = %pending.uid, "scanner cannot read the message: {e}");
            return None;
        }
    };
    // A panic in the walk is the message's doing: it is held as if infected rather
    // than retried for ever or let through.
    let verdict = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        server.scanner.scan_message(&raw)
    }));
    let verdict = match verdict {
        Ok(Ok(v)) => v,
        Ok(Err(_)) => return None,
        Err(_) => {
            let loaded = server.scanner.current();
            let name = "Heuristics.Scanner.Crashed".to_string();
            Verdict {
                stamp: lazaret_store::ScanStamp {
                    version: loaded.engine.version().to_string(),
                    content_version: loaded.engine.content_version().to_string(),
                    verdict: Some(name.clone()),
                },
                names: vec![name],
            }
        }
    };
    let action = if verdict.names.is_empty() {
        ScanAction::Keep
    } else if server.scanner.on_ingest == OnIngest::Tag {
        match tag(server, &raw, &verdict) {
            Ok(action) => action,
            Err(e) => {
                tracing::error!(message = %pending.uid, "cannot write the tagged copy: {e}");
                return None;
            }
        }
    } else {
        // quarantine mode, and reject mode for mail that was not scanned at intake
        // (bounces we made, mail accepted before scanning was on).
        ScanAction::Quarantine {
            reason: format!("scan: {}", verdict.names.join(", ")),
            queues: true,
            mailboxes: false,
        }
    };
    Some(ScanRecord {
        message: pending.message,
        stamp: verdict.stamp,
        action,
    })
}

/// The header `tag` mode adds to detected mail.
pub const TAG_HEADER: &str = "X-Lazaret-Scan";

fn tag(
    server: &Server,
    raw: &[u8],
    verdict: &Verdict,
) -> Result<ScanAction, lazaret_store::StoreError> {
    let header = format!(
        "{TAG_HEADER}: infected ({}); signatures {}\r\n",
        verdict.names.join(", "),
        verdict.stamp.version
    );
    let mut data = Vec::with_capacity(header.len() + raw.len());
    data.extend_from_slice(header.as_bytes());
    data.extend_from_slice(raw);
    let uid = new_message_id();
    let location = server.store.blob_write(&uid, &data)?;
    Ok(ScanAction::Replace {
        uid,
        size: data.len() as u64,
        digests: lazaret_store::Digests::of(&data),
        location,
    })
}

async fn record(
    server: &Arc<Server>,
    records: Vec<ScanRecord>,
    pending_recipients: HashMap<i64, Vec<String>>,
) {
    let passed = records
        .iter()
        .filter(|r| !matches!(r.action, ScanAction::Quarantine { .. }))
        .count();
    let mut found: Vec<String> = records
        .iter()
        .filter_map(|r| r.stamp.verdict.clone())
        .collect();
    found.sort();
    found.dedup();
    let detected = records
        .iter()
        .filter(|r| !matches!(r.action, ScanAction::Keep))
        .count() as u64;
    // The recipients' next hops are looked up here, off the writer, so that recording
    // the scan, routing and local delivery are one commit.
    let mut recipients: Vec<String> = records
        .iter()
        .filter(|r| !matches!(r.action, ScanAction::Quarantine { .. }))
        .flat_map(|r| {
            pending_recipients
                .get(&r.message)
                .into_iter()
                .flatten()
                .cloned()
        })
        .collect();
    recipients.sort();
    recipients.dedup();
    let retry = server.config.delivery.retry_delay.0 as i64;
    let s = server.clone();
    let scanned = records.len();
    let outcome = server
        .store_call(move |store| {
            let connectors = s.connectors.list();
            let next_hops = recipients
                .into_iter()
                .map(|r| {
                    let queue = router::next_hop(store, connectors, &r);
                    (r, queue)
                })
                .collect();
            store.record_scans_and_route(records, next_hops, retry)
        })
        .await;
    match outcome {
        Ok((report, mut routed)) => {
            server.metrics.scanned(scanned, detected);
            let local = &routed.local;
            server
                .metrics
                .deliveries(false, local.delivered, local.deferred, local.failed);
            crate::scan::hold::announce(server, std::mem::take(&mut routed.holds)).await;
            for user in &routed.local.users {
                let _ = server.mailbox_events.send(user.clone());
            }
            if routed.to_remote > 0 {
                server.outbound_wake.notify_one();
            }
            if detected > 0 {
                let (action, detail) = if server.scanner.on_ingest == OnIngest::Tag {
                    ("scan tag", format!("{TAG_HEADER} header added"))
                } else {
                    (
                        "scan quarantine",
                        format!("{} queued cop(ies) quarantined", report.done),
                    )
                };
                let _ = server
                    .audit(AuditEntry {
                        actor: "scanner".into(),
                        action: action.into(),
                        query: Some(found.join(", ")),
                        count: Some(detected),
                        detail: Some(detail),
                    })
                    .await;
            }
            if routed.routed + routed.held < passed {
                // Left for the runner: a copy that was not due, or a queue frozen meanwhile.
                server.queue_wake.notify_one();
            }
        }
        Err(e) => tracing::error!("scanner cannot record results: {e}"),
    }
}
