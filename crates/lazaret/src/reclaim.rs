//! Removes the messages deletions let go of (a purge, an expunge, a delivered queue
//! item): the store's `release` only notes them, and this takes their rows, parts,
//! lookup keys and fingerprints away behind the action, lowest ids first. At a million
//! messages that removal is ~7 random page writes per message; done inside the purge it
//! made `quarantine purge` slower than `postsuper -d` (0.76x on 50,000 worms).
//!
//! Like the clusterer it keeps out of the writer's way while mail moves (SMTP sessions,
//! delivery workers, admin jobs) unless the backlog has grown past `DEFER_MESSAGES`,
//! and then takes at most half the writer's time.

use crate::server::Server;
use std::sync::Arc;
use std::time::Duration;

/// Messages reclaimed per transaction: a few hundred milliseconds of writer time at
/// most (0.1-0.3 ms a message), so a session arriving meanwhile waits little for its
/// commit, and few enough commits that their syncs do not add up.
const BATCH: usize = 1_000;
/// How often the backlog is looked at when it is empty or must wait (a count of a
/// small table).
const ROUND: Duration = Duration::from_millis(100);
/// While mail moves, one batch per this long once the backlog is past the bound.
const UNDER_LOAD: Duration = Duration::from_secs(1);
/// While mail moves, reclaiming waits until this many messages wait: the space they
/// hold is all the waiting costs.
const DEFER_MESSAGES: u64 = 20_000;

pub async fn run(server: Arc<Server>) {
    loop {
        let backlog = match server.store_call(|s| s.reclaim_backlog()).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!("reclaim: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let sessions = server.config.smtp.max_sessions - server.sessions.available_permits();
        let busy =
            sessions > 0 || server.outbound.active_workers() > 0 || server.jobs.any_running();
        if backlog == 0 || (busy && backlog < DEFER_MESSAGES) {
            tokio::time::sleep(ROUND).await;
            continue;
        }
        let started = std::time::Instant::now();
        match server.store_call(|s| s.reclaim(BATCH)).await {
            Ok(n) => {
                tracing::debug!(reclaimed = n, backlog, "reclaimed deleted messages");
                if n < BATCH {
                    tokio::time::sleep(ROUND).await;
                } else if busy {
                    let took = started.elapsed();
                    tokio::time::sleep(UNDER_LOAD.saturating_sub(took).max(took)).await;
                }
            }
            Err(e) => {
                tracing::error!("reclaim: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
