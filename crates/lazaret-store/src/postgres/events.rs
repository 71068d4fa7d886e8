//! The message event log's upkeep on PostgreSQL: downloads noted off the reading
//! path, and old events pruned.

use super::{pg, PostgresStore};
use crate::embedded::events::DOWNLOADED;
use crate::{now, Result};

impl PostgresStore {
    /// Notes that `user`'s client downloaded these mailbox entries. Returns at once:
    /// reading mail must not wait on the log, so the insert runs on the store's
    /// runtime and a failure is only logged.
    pub fn record_downloads(&self, user: &str, detail: &str, entries: Vec<i64>) {
        if entries.is_empty() {
            return;
        }
        let (user, detail) = (user.to_string(), detail.to_string());
        let pool = self.pool.clone();
        let noted = self.bridge.spawn(async move {
            let inserted = async {
                let c = pool.get().await.map_err(|e| e.to_string())?;
                // One statement for the whole batch: a client syncing a folder
                // downloads thousands of messages in one command.
                c.execute(
                    "INSERT INTO message_events(message, at, kind, who, detail)
                     SELECT e.message, $2, $3, $4, $5 FROM mailbox_entries e
                     WHERE e.id = ANY($1)",
                    &[&entries, &now(), &DOWNLOADED, &user, &detail],
                )
                .await
                .map_err(|e| pg(e).to_string())
            };
            if let Err(e) = inserted.await {
                tracing::warn!("noting downloads by {user} in the event log: {e}");
            }
        });
        if let Err(e) = noted {
            tracing::warn!("noting downloads in the event log: {e}");
        }
    }

    /// Removes message events older than `before` (unix seconds), at most `limit`,
    /// oldest first; returns how many went.
    pub fn prune_events(&self, before: i64, limit: usize) -> Result<usize> {
        self.with_client(move |c| async move {
            let n = c
                .execute(
                    "DELETE FROM message_events WHERE id IN
                       (SELECT id FROM message_events WHERE at<$1 ORDER BY id LIMIT $2)",
                    &[&before, &(limit as i64)],
                )
                .await
                .map_err(pg)?;
            Ok(n as usize)
        })
    }
}
