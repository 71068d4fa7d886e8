//! The queue runner. Works in batches while there is due work, then sleeps until new
//! mail is committed, the next retry is due, or the poll interval passes (which also
//! notices thawed queues).

use crate::queue::router;
use crate::server::Server;
use lazaret_core::state::{QUEUE_INBOUND, QUEUE_LOCAL};
use std::sync::Arc;
use std::time::Duration;

const BATCH: usize = 512;

pub async fn run(server: Arc<Server>) {
    let poll = server.config.delivery.poll_interval.as_std();
    let retry = server.config.delivery.retry_delay.0 as i64;
    // With scanning on, only mail the scanner has passed leaves `inbound`.
    let require_scan = server.scanner.on_ingest != lazaret_core::config::OnIngest::Off;
    loop {
        let s = server.clone();
        let mut step = server
            .store_call(move |store| {
                let connectors = s.connectors.list();
                let routed = store.route_inbound(
                    BATCH,
                    require_scan,
                    &|r| router::next_hop(store, connectors, r),
                    retry,
                )?;
                let report = store.deliver_local(BATCH, retry)?;
                for r in [&routed.local, &report] {
                    s.metrics
                        .deliveries(false, r.delivered, r.deferred, r.failed);
                }
                for user in routed.local.users.iter().chain(&report.users) {
                    let _ = s.mailbox_events.send(user.clone());
                }
                Ok((routed, report.delivered + report.deferred))
            })
            .await;
        if let Ok((routed, _)) = &mut step {
            crate::scan::hold::announce(&server, std::mem::take(&mut routed.holds)).await;
        }
        match step {
            Ok((routed, 0)) if routed.routed == 0 && routed.held == 0 => {}
            Ok((routed, _)) => {
                if routed.to_remote > 0 {
                    server.outbound_wake.notify_one();
                }
                continue;
            }
            Err(e) => {
                tracing::error!("queue runner: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        // Only the queues this runner works; remote queues wait for outbound delivery.
        let next_due = server
            .store_call(|s| s.next_due(&[QUEUE_INBOUND, QUEUE_LOCAL]))
            .await
            .ok()
            .flatten();
        let wait = next_due
            .map(|t| {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                Duration::from_secs((t - now).clamp(1, poll.as_secs() as i64) as u64)
            })
            .unwrap_or(poll);
        tokio::select! {
            _ = server.queue_wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
