//! Settings (`smtp.inbound`, `outbound.disabled`, …) and the audit log: in the shared
//! database, so a switch thrown on one node holds on every node.

use super::{pg, PostgresStore};
use crate::{now, AuditEntry, AuditRecord, Result};

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
