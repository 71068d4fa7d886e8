//! `[log] event_retention`: the message event log (trace, exposure) keeps each event
//! that long. Pruned once an hour in slices, so one large prune never holds the
//! writer for long.

use crate::server::Server;
use std::sync::Arc;

/// Events removed per write transaction.
const SLICE: usize = 5_000;

pub async fn run(server: Arc<Server>) {
    let keep = server.config.log.event_retention.0 as i64;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let before = crate::deliver::now() - keep;
        let mut removed = 0;
        loop {
            match server
                .store_call(move |s| s.prune_events(before, SLICE))
                .await
            {
                Ok(n) => {
                    removed += n;
                    if n < SLICE {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!("pruning the message event log: {e}");
                    break;
                }
            }
            // Leave room between slices for the mail the writer is committing.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        if removed > 0 {
            tracing::info!(
                "message event log: {removed} event(s) older than the retention removed"
            );
        }
    }
}
