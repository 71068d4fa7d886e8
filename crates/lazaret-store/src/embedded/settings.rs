//! Settings (`smtp.inbound`, `outbound.disabled`, …), the audit log and the store's
//! figures for `status`.

use super::*;

impl EmbeddedStore {
    pub(super) fn setting_impl(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_string();
        self.read(move |c| {
            Ok(c.prepare_cached("SELECT value FROM settings WHERE key=?1")?
                .query_row([key], |r| r.get(0))
                .optional()?)
        })
    }

    pub(super) fn set_setting_impl(&self, key: &str, value: &str) -> Result<()> {
        let (key, value) = (key.to_string(), value.to_string());
        self.write(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO settings(key, value) VALUES(?1, ?2)",
                params![key, value],
            )?;
            Ok(())
        })
    }

    pub(super) fn audit_impl(&self, entry: AuditEntry) -> Result<()> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO audit(at, actor, action, query, count, detail) VALUES(?1,?2,?3,?4,?5,?6)",
                params![
                    now(),
                    entry.actor,
                    entry.action,
                    entry.query,
                    entry.count.map(|n| n as i64),
                    entry.detail
                ],
            )?;
            Ok(())
        })
    }

    pub(super) fn audit_since_impl(&self, since: i64) -> Result<Vec<AuditRecord>> {
        self.read(move |c| {
            let mut stmt = c.prepare(
                "SELECT id, at, actor, action, query, count, detail FROM audit WHERE at>=?1 ORDER BY id",
            )?;
            let rows = stmt.query_map([since], |r| {
                Ok(AuditRecord {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    entry: AuditEntry {
                        actor: r.get(2)?,
                        action: r.get(3)?,
                        query: r.get(4)?,
                        count: r.get::<_, Option<i64>>(5)?.map(|n| n as u64),
                        detail: r.get(6)?,
                    },
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    pub(super) fn stats_impl(&self) -> Result<StoreStats> {
        let database_bytes = [&self.db_path, self.text.path()]
            .iter()
            .flat_map(|db| {
                ["", "-wal"].iter().filter_map(move |suffix| {
                    let mut p = db.as_os_str().to_owned();
                    p.push(suffix);
                    std::fs::metadata(p).ok().map(|m| m.len())
                })
            })
            .sum();
        self.read(move |c| {
            let text_index_behind = self.text.behind(c)?;
            let clusters_behind = super::clusters::behind(c)?;
            let (held_copies, clusters_held) = super::clusters::held(c)?;
            // From the packs' live-byte counts, not a SUM over every message row (that
            // read the whole table: 170 ms of each status page at 1M messages). A
            // packed message counts its size plus its record header there; `check`
            // keeps those counts honest.
            // Messages waiting for the background reclaim are no longer stored as far
            // as anyone can see: they leave the totals here at once.
            let (messages, message_bytes, reclaim_behind): (i64, i64, i64) = c.query_row(
                "WITH n AS (SELECT COUNT(*) AS rows,
                             (SELECT COUNT(*) FROM messages WHERE blob_pack IS NULL) AS loose,
                             (SELECT COALESCE(SUM(size), 0) FROM messages
                              WHERE blob_pack IS NULL) AS loose_bytes
                           FROM messages),
                      r AS (SELECT COUNT(*) AS rows, COALESCE(SUM(m.size), 0) AS bytes
                            FROM reclaim x JOIN messages m ON m.id=x.message)
                 SELECT n.rows - r.rows, (SELECT COALESCE(SUM(live), 0) FROM packs)
                              - ?1 * (n.rows - n.loose) + n.loose_bytes - r.bytes, r.rows
                 FROM n, r",
                [super::blobs::HEADER as i64],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            let queued: i64 = c.query_row("SELECT COUNT(*) FROM queue_items", [], |r| r.get(0))?;
            let in_mailboxes: i64 =
                c.query_row("SELECT COUNT(*) FROM mailbox_entries", [], |r| r.get(0))?;
            let (quarantined, quarantine_bytes): (i64, i64) = c.query_row(
                "SELECT COUNT(*), COALESCE(SUM(m.size), 0) FROM quarantine z
                 JOIN messages m ON m.id=z.message",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            Ok(StoreStats {
                quarantined: quarantined as u64,
                quarantine_bytes: quarantine_bytes as u64,
                messages: messages as u64,
                message_bytes: message_bytes as u64,
                queued: queued as u64,
                in_mailboxes: in_mailboxes as u64,
                database_bytes,
                text_index_behind,
                clusters_behind,
                reclaim_behind: reclaim_behind as u64,
                clusters_held,
                held_copies,
            })
        })
    }
}
