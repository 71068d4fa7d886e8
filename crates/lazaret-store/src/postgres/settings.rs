//! Settings (`smtp.inbound`, `outbound.disabled`, …) and the audit log: in the shared
//! database, so a switch thrown on one node holds on every node.

use super::{pg, read_only, PostgresStore};
use crate::embedded::clusters::HELD;
use crate::{now, AuditEntry, AuditRecord, Result, StoreStats};
use lazaret_core::state::QUEUE_INBOUND;

impl PostgresStore {
    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_string();
        self.with_client(move |c| async move {
            let row = c
                .query_opt("SELECT value FROM settings WHERE key=$1", &[&key])
                .await
                .map_err(pg)?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    pub fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        let (key, value) = (key.to_string(), value.to_string());
        self.with_client(move |c| async move {
            c.execute(
                "INSERT INTO settings(key, value) VALUES($1, $2)
                 ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                &[&key, &value],
            )
            .await
            .map_err(pg)?;
            Ok(())
        })
    }

    pub fn audit(&self, entry: AuditEntry) -> Result<()> {
        self.with_client(move |c| async move {
            c.execute(
                "INSERT INTO audit(at, actor, action, query, count, detail)
                 VALUES($1, $2, $3, $4, $5, $6)",
                &[
                    &now(),
                    &entry.actor,
                    &entry.action,
                    &entry.query,
                    &entry.count.map(|n| n as i64),
                    &entry.detail,
                ],
            )
            .await
            .map_err(pg)?;
            Ok(())
        })
    }

    pub fn audit_since(&self, since: i64) -> Result<Vec<AuditRecord>> {
        self.with_client(move |c| async move {
            let rows = c
                .query(
                    "SELECT id, at, actor, action, query, count, detail FROM audit
                     WHERE at >= $1 ORDER BY id",
                    &[&since],
                )
                .await
                .map_err(pg)?;
            Ok(rows
                .iter()
                .map(|r| AuditRecord {
                    id: r.get(0),
                    at: r.get(1),
                    entry: AuditEntry {
                        actor: r.get(2),
                        action: r.get(3),
                        query: r.get(4),
                        count: r.get::<_, Option<i64>>(5).map(|n| n as u64),
                        detail: r.get(6),
                    },
                })
                .collect())
        })
    }
}

impl PostgresStore {
    /// The store's totals for `status`, from one snapshot so they add up. Messages
    /// waiting for the reclaim are out of the totals, as on the embedded store. No
    /// text index lags behind here (`find` reads trigram indexes kept in the commit).
    pub fn stats(&self) -> Result<StoreStats> {
        self.with_client(move |mut c| async move {
            let tx = read_only(&mut c).await?;
            // The big tables' totals are kept in `totals` as rows come and go
            // (migration 0006); what is counted here grows with the trouble (the
            // reclaim's backlog, the quarantine, held mail), not with the store.
            let row = tx
                .query_one(
                    "WITH t AS (SELECT SUM(messages) AS messages, SUM(message_bytes) AS bytes,
                                       SUM(entries) AS entries, SUM(queued) AS queued
                                FROM totals)
                     SELECT
                       ((SELECT messages FROM t) - (SELECT COUNT(*) FROM reclaim))::bigint,
                       ((SELECT bytes FROM t)
                         - (SELECT COALESCE(SUM(m.size), 0) FROM reclaim x
                            JOIN messages m ON m.id=x.message))::bigint,
                       (SELECT COUNT(*) FROM reclaim),
                       (SELECT queued FROM t)::bigint,
                       (SELECT entries FROM t)::bigint,
                       (SELECT COUNT(*) FROM quarantine),
                       (SELECT COALESCE(SUM(m.size), 0) FROM quarantine z
                          JOIN messages m ON m.id=z.message)::bigint,
                       pg_database_size(current_database()),
                       (SELECT COUNT(*) FROM fingerprints WHERE pending IS NOT NULL),
                       (SELECT COUNT(*) FROM clusters
                          WHERE held_since IS NOT NULL AND parent IS NULL AND NOT allowed),
                       (SELECT COUNT(*) FROM queue_items
                          WHERE queue=$1 AND state='frozen' AND last_error LIKE $2)",
                    &[&QUEUE_INBOUND, &format!("{HELD}%")],
                )
                .await
                .map_err(pg)?;
            let n = |i: usize| -> u64 {
                let v: Option<i64> = row.get(i);
                v.unwrap_or(0).max(0) as u64
            };
            Ok(StoreStats {
                messages: n(0),
                message_bytes: n(1),
                reclaim_behind: n(2),
                queued: n(3),
                in_mailboxes: n(4),
                quarantined: n(5),
                quarantine_bytes: n(6),
                database_bytes: n(7),
                text_index_behind: 0,
                clusters_behind: n(8),
                clusters_held: n(9),
                held_copies: n(10),
            })
        })
    }
}
