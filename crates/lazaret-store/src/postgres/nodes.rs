//! The nodes sharing the database: each registers when it starts and writes a
//! heartbeat every few seconds, so `status` can say which are up.

use super::{pg, PostgresStore};
use crate::{now, NodeInfo, Result};
use std::time::Duration;

/// How often a node writes its heartbeat; one silent for three of these is down.
pub const HEARTBEAT_SECONDS: i64 = 5;

impl PostgresStore {
    pub(super) fn register_node(&self) -> Result<()> {
        let node = self.node.clone();
        self.with_client(move |c| async move {
            let t = now();
            c.execute(
                "INSERT INTO nodes(name, started, heartbeat, version) VALUES($1, $2, $2, $3)
                 ON CONFLICT(name) DO UPDATE SET started=$2, heartbeat=$2, version=$3",
                &[&node, &t, &env!("CARGO_PKG_VERSION")],
            )
            .await
            .map_err(pg)?;
            // Claims still in this name are the previous run's, which died without
            // giving them back (killed, power cut): names are one per node, so they
            // are given back now, not a lease later.
            let freed = c
                .execute(
                    "UPDATE queue_items SET lease_owner=NULL, lease_until=NULL
                     WHERE lease_owner=$1",
                    &[&node],
                )
                .await
                .map_err(pg)?;
            if freed > 0 {
                tracing::info!("gave back {freed} outbound claim(s) of this node's previous run");
            }
            Ok(())
        })?;
        let (pool, node) = (self.pool.clone(), self.node.clone());
        // A missed beat (the database away for a moment) is no error: the next one
        // tells the others this node is still here.
        self.bridge.spawn(async move {
            let mut beat = tokio::time::interval(Duration::from_secs(HEARTBEAT_SECONDS as u64));
            beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                beat.tick().await;
                if let Ok(c) = pool.get().await {
                    let _ = c
                        .execute(
                            "UPDATE nodes SET heartbeat=$1 WHERE name=$2",
                            &[&now(), &node],
                        )
                        .await;
                    let _ = fold_totals(&c).await;
                }
            }
        })
    }

    /// Folds `status`'s totals now (every node's heartbeat does it every few seconds).
    pub fn fold_totals(&self) -> Result<()> {
        self.with_client(|c| async move { fold_totals(&c).await })
    }

    /// Every node that ever joined, by name.
    pub fn nodes(&self) -> Result<Vec<NodeInfo>> {
        self.with_client(|c| async move {
            let t = now();
            let rows = c
                .query(
                    "SELECT name, started, heartbeat, version FROM nodes ORDER BY name",
                    &[],
                )
                .await
                .map_err(pg)?;
            Ok(rows
                .iter()
                .map(|r| {
                    let heartbeat: i64 = r.get(2);
                    NodeInfo {
                        name: r.get(0),
                        started: r.get(1),
                        heartbeat,
                        version: r.get(3),
                        up: t - heartbeat <= 3 * HEARTBEAT_SECONDS,
                    }
                })
                .collect())
        })
    }
}

/// Key of the advisory lock `fold_totals` runs under ("totals" in ASCII).
const TOTALS_LOCK: i64 = 0x746f_7461_6c73;

/// Folds the rows of `totals` (one per statement that added or removed rows since
/// the last fold) into one, so `status` sums a handful of rows, not a day's. One
/// node at a time; one that finds another folding leaves it to that one. The rows
/// a writer adds meanwhile are not yet visible to the delete and stay for the next.
pub(super) async fn fold_totals(c: &tokio_postgres::Client) -> Result<()> {
    c.execute(
        "WITH mine AS (SELECT pg_try_advisory_xact_lock($1) AS locked),
              gone AS (DELETE FROM totals WHERE (SELECT locked FROM mine)
                       RETURNING messages, message_bytes, entries, queued)
         INSERT INTO totals(messages, message_bytes, entries, queued)
         SELECT SUM(messages), SUM(message_bytes), SUM(entries), SUM(queued) FROM gone
         HAVING COUNT(*) > 0",
        &[&TOTALS_LOCK],
    )
    .await
    .map_err(pg)?;
    Ok(())
}
