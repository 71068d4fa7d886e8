//! Files newly stored mail into outbreak clusters, behind the commit: ingest records each
//! message's fingerprint, this files them hundreds at a time, so the key lookups and
//! inserts are one transaction per batch rather than one per message (the store's
//! `clusters` module says why that matters).
//!
//! While mail is coming in (SMTP, `lazaret import`) or going out, filing waits until
//! `DEFER_MESSAGES` messages or `DEFER_AGE` of mail wait (5,000 left the ingest benchmark's paced phase filing the
//! 7,000 messages of the flood before it), then goes one batch a second; otherwise it
//! files at full speed. Filing is writer time: each batch holds the commits of the
//! sessions arriving meanwhile, so filing beside the sessions lifted the p99
//! end-of-DATA to `250` at 400 msgs/s, and flat out beside a flood it cost 18% of the
//! accept rate (0.82x of clusters off on 32,000 messages; one batch a second:
//! 0.95–0.99x). `lazaret clusters` therefore lags by up to a minute under sustained
//! load, by a round otherwise. When idle it also drops, a slice of the key space per
//! round and a pass an hour, the lookup keys of messages deleted since (and old growth
//! counts).

use crate::server::Server;
use std::sync::Arc;
use std::time::Duration;

/// Messages filed per transaction: enough to write each page of the key table once
/// for many messages, few enough that a session's commit never waits long behind it.
const BATCH: usize = 400;
/// How often pending messages are looked for.
const ROUND: Duration = Duration::from_millis(250);
/// One batch per this long while SMTP sessions are open.
const UNDER_LOAD: Duration = Duration::from_secs(1);
/// While SMTP sessions are open, filing waits until this many messages wait (as the
/// text index does: a flood of a few thousand is filed in the pause after it)...
const DEFER_MESSAGES: u64 = 20_000;
/// ... or the oldest has waited this long.
const DEFER_AGE: i64 = 60;

/// Between passes over the key table dropping the keys of deleted messages.
const PRUNE_PASS: Duration = Duration::from_secs(3_600);

pub async fn run(server: Arc<Server>) {
    if !server.config.outbreak.clusters {
        return;
    }
    let mut prune = Prune {
        slice: 0,
        next_pass: std::time::Instant::now() + PRUNE_PASS,
    };
    loop {
        let sessions = server.config.smtp.max_sessions - server.sessions.available_permits();
        let pending = match server.store_call(|s| s.clusters_pending()).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("clusters: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let oldest_age = pending
            .oldest
            .map_or(0, |t| crate::deliver::now().saturating_sub(t));
        // Mail moving in (SMTP sessions, an admin import) or out (delivery workers):
        // the writer is theirs. Filing beside a relay drain: 2.44-2.49x Postfix in
        // quick runs; deferred: 2.51-3.50x. Filing at full speed beside a 1M-message
        // import took it from 4,349 to 2,927 msgs/s.
        // A backup too: its few writes (the audit, its record) waited 0.3-0.45 s behind
        // batches filed from a cold cache after new mail.
        let busy = sessions > 0
            || server.outbound.active_workers() > 0
            || server.jobs.running("import")
            || crate::admin::backup::running();
        if pending.messages == 0 && !busy && prune.due() {
            let slice = prune.slice;
            match server
                .store_call(move |s| s.prune_cluster_keys(slice))
                .await
            {
                Ok(n) if n > 0 => tracing::debug!(slice, keys = n, "pruned cluster keys"),
                Ok(_) => {}
                Err(e) => tracing::error!("clusters: pruning keys: {e}"),
            }
            prune.advance();
        }
        if pending.messages == 0
            || (busy && pending.messages < DEFER_MESSAGES && oldest_age < DEFER_AGE)
        {
            tokio::time::sleep(ROUND).await;
            continue;
        }
        let started = std::time::Instant::now();
        match server.store_call(|s| s.file_clusters(BATCH)).await {
            Ok(_) if busy => {
                let took = started.elapsed();
                tokio::time::sleep(UNDER_LOAD.saturating_sub(took).max(took)).await;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!("clusters: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Where the pass over the key table is: one slice per idle round, then a rest.
struct Prune {
    slice: u32,
    next_pass: std::time::Instant,
}

impl Prune {
    fn due(&self) -> bool {
        std::time::Instant::now() >= self.next_pass
    }

    fn advance(&mut self) {
        self.slice += 1;
        if self.slice >= lazaret_store::CLUSTER_KEY_SLICES {
            self.slice = 0;
            self.next_pass = std::time::Instant::now() + PRUNE_PASS;
        }
    }
}
