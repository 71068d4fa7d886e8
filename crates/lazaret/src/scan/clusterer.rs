//! Files newly stored mail into outbreak clusters, behind the commit: ingest records each
//! message's fingerprint, this files them hundreds at a time, so the key lookups and
//! inserts are one transaction per batch rather than one per message (the store's
//! `clusters` module says why that matters). `lazaret clusters` lags by at most a round.

use crate::server::Server;
use std::sync::Arc;
use std::time::Duration;

/// Messages filed per transaction: enough to write each page of the key table once
/// for many messages, few enough that a session's commit never waits long behind it.
const BATCH: usize = 400;
/// How often pending messages are looked for when nothing says there are some.
const ROUND: Duration = Duration::from_millis(250);

pub async fn run(server: Arc<Server>) {
    if !server.config.outbreak.clusters {
        return;
    }
    loop {
        match server.store_call(|s| s.file_clusters(BATCH)).await {
            Ok(n) if n >= BATCH => continue,
            Ok(_) => tokio::time::sleep(ROUND).await,
            Err(e) => {
                tracing::error!("clusters: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
