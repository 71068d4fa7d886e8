//! `lazaret check [--repair]` on the shared database and bucket, while every node runs.
//!
//! Foreign keys make rows that name nothing impossible here, and PostgreSQL checks its
//! own pages (data checksums, `amcheck`): what is left to verify is what the schema
//! cannot say. Per folder, UIDs positive and below `uidnext`, mod-sequences not above
//! the folder's highest; queue items with recipients and a known state; every message
//! held by a queue item, a folder or quarantine (or waiting for the reclaim);
//! fingerprints of messages that exist; and, with `deep`, every message's object in
//! the bucket, of its size and SHA-256. (Without `deep` the bucket is not read, as
//! with `blobs = "s3"` on one node: a listing of a million objects is minutes.)
//!
//! The rows are read in one snapshot. The bucket is listed after it: a message the
//! reclaim removes meanwhile loses its row before its object, and one stored meanwhile
//! gets its object before its row, so an object found missing is a fault only if its
//! row is still there when looked for again afterwards.

use super::{pg, read_only, PostgresStore};
use crate::embedded::check::{fault, RowCheck, EXAMPLES};
use crate::{CheckReport, RepairReport, Result};
use sha2::{Digest, Sha256};

const ROW_CHECKS: &[RowCheck] = &[
    RowCheck {
        kind: "uid_not_below_uidnext",
        sql: "SELECT 'folder ' || b.\"user\" || '/' || b.name || ': UID ' || MAX(e.uid)
                || ', uidnext ' || b.uidnext
              FROM mailbox_entries e JOIN mailboxes b ON b.id=e.mailbox
              GROUP BY b.id HAVING MAX(e.uid) >= b.uidnext
             UNION ALL SELECT 'folder ' || b.\"user\" || '/' || b.name || ': UID ' || e.uid
              FROM mailbox_entries e JOIN mailboxes b ON b.id=e.mailbox WHERE e.uid < 1",
        repair: "raises the folder's uidnext past its highest UID (clients see new UIDs only)",
        repair_sql: &["UPDATE mailboxes b SET uidnext=m.top+1
                       FROM (SELECT mailbox, MAX(uid) AS top FROM mailbox_entries GROUP BY mailbox) m
                       WHERE m.mailbox=b.id AND b.uidnext <= m.top"],
    },
    RowCheck {
        kind: "modseq_above_highest",
        sql: "SELECT 'folder ' || b.\"user\" || '/' || b.name || ': mod-sequence ' || MAX(e.modseq)
                || ', highest ' || b.highestmodseq
              FROM mailbox_entries e JOIN mailboxes b ON b.id=e.mailbox
              GROUP BY b.id HAVING MAX(e.modseq) > b.highestmodseq",
        repair: "raises the folder's highest mod-sequence to its entries' highest",
        repair_sql: &["UPDATE mailboxes b SET highestmodseq=m.top
                       FROM (SELECT mailbox, MAX(modseq) AS top FROM mailbox_entries GROUP BY mailbox) m
                       WHERE m.mailbox=b.id AND b.highestmodseq < m.top"],
    },
    RowCheck {
        kind: "queue_item_without_recipients",
        sql: "SELECT 'queue item ' || q.id || ' in ' || q.queue FROM queue_items q
              WHERE NOT EXISTS (SELECT 1 FROM queue_rcpts r WHERE r.item=q.id)",
        repair: "removes the item (it has nobody to deliver to)",
        repair_sql: &["DELETE FROM queue_items q
                       WHERE NOT EXISTS (SELECT 1 FROM queue_rcpts r WHERE r.item=q.id)"],
    },
    RowCheck {
        kind: "queue_item_state",
        sql: "SELECT 'queue item ' || id || ': state ' || quote_literal(state) FROM queue_items
              WHERE state NOT IN ('ready', 'retry', 'frozen')",
        repair: "freezes the item, for the admin to look at and thaw",
        repair_sql: &["UPDATE queue_items SET state='frozen'
                       WHERE state NOT IN ('ready', 'retry', 'frozen')"],
    },
];

/// Messages nothing holds that the reclaim was not told of.
const UNREFERENCED: &str = "SELECT id FROM messages m
    WHERE NOT EXISTS (SELECT 1 FROM queue_items q WHERE q.message=m.id)
      AND NOT EXISTS (SELECT 1 FROM mailbox_entries e WHERE e.message=m.id)
      AND NOT EXISTS (SELECT 1 FROM quarantine z WHERE z.message=m.id)
      AND NOT EXISTS (SELECT 1 FROM reclaim r WHERE r.message=m.id)
    ORDER BY id";

/// Fingerprints of messages that are gone (one not yet filed keeps its fingerprint
/// until it is: not an orphan).
const ORPHAN_FINGERPRINTS: &str = "SELECT message FROM fingerprints f
    WHERE f.pending IS NULL AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.id=f.message)
    ORDER BY message";

/// A message's row as the object check needs it.
struct Stored {
    id: i64,
    uid: String,
    size: u64,
    sha256: String,
}

impl PostgresStore {
    /// Verifies the database and the bucket; `progress` is told of each message whose
    /// object was checked.
    pub fn check(&self, deep: bool, progress: &(dyn Fn(u64) + Sync)) -> Result<CheckReport> {
        let (mut report, stored) = self.with_client(move |mut c| async move {
            let tx = read_only(&mut c).await?;
            let count = |sql: &'static str| {
                let tx = &tx;
                async move {
                    let n: i64 = tx.query_one(sql, &[]).await.map_err(pg)?.get(0);
                    Ok::<u64, crate::StoreError>(n as u64)
                }
            };
            let mut report = CheckReport {
                messages: count("SELECT COUNT(*) FROM messages").await?,
                mailbox_entries: count("SELECT COUNT(*) FROM mailbox_entries").await?,
                queue_items: count("SELECT COUNT(*) FROM queue_items").await?,
                quarantined: count("SELECT COUNT(*) FROM quarantine").await?,
                deep,
                ..CheckReport::default()
            };
            for check in ROW_CHECKS {
                let rows: Vec<String> = tx
                    .query(check.sql, &[])
                    .await
                    .map_err(pg)?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                if !rows.is_empty() {
                    let n = rows.len() as u64;
                    report
                        .faults
                        .push(fault(check.kind, n, rows, check.repair, true));
                }
            }
            for (kind, sql, repair) in [
                (
                    "unreferenced_message",
                    UNREFERENCED,
                    "hands them to the reclaim (no queue, folder or quarantine holds them)",
                ),
                (
                    "orphan_fingerprints",
                    ORPHAN_FINGERPRINTS,
                    "removes them (and their count from their cluster)",
                ),
            ] {
                let ids: Vec<i64> = tx
                    .query(sql, &[])
                    .await
                    .map_err(pg)?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                message_fault(&mut report, kind, &ids, repair);
            }
            let stored: Vec<Stored> = tx
                .query(
                    "SELECT id, uid, size, sha256 FROM messages ORDER BY id",
                    &[],
                )
                .await
                .map_err(pg)?
                .iter()
                .map(|r| Stored {
                    id: r.get(0),
                    uid: r.get(1),
                    size: r.get::<_, i64>(2) as u64,
                    sha256: r.get(3),
                })
                .collect();
            super::commit(tx).await?;
            Ok((report, stored))
        })?;
        self.check_objects(stored, deep, progress, &mut report)?;
        Ok(report)
    }

    /// With `deep`, every message's object: there, of its size, and of its SHA-256.
    fn check_objects(
        &self,
        stored: Vec<Stored>,
        deep: bool,
        progress: &(dyn Fn(u64) + Sync),
        report: &mut CheckReport,
    ) -> Result<()> {
        if stored.is_empty() || !deep {
            return Ok(());
        }
        let objects = self.objects()?;
        let listed = objects.sizes()?;
        let mut suspects = Vec::new();
        for m in stored {
            let why = match listed.get(&m.uid) {
                None => Some("no object".to_string()),
                Some(&size) if size != m.size => Some(format!("{size} bytes, not {}", m.size)),
                Some(_) => match objects.fetch(&m.uid, None) {
                    Ok(data) if hex::encode(Sha256::digest(&data)) != m.sha256 => {
                        Some("bytes differ from their SHA-256".to_string())
                    }
                    Ok(_) => None,
                    Err(e) => Some(e.to_string()),
                },
            };
            report.blobs_checked += 1;
            progress(1);
            if let Some(why) = why {
                suspects.push((m, why));
            }
        }
        // Still stored after the object was found wanting: a fault, not a race with
        // the reclaim (see the module's comment).
        let ids: Vec<i64> = suspects.iter().map(|(m, _)| m.id).collect();
        let still: std::collections::HashSet<i64> = self.with_client(move |c| async move {
            Ok(c.query("SELECT id FROM messages WHERE id=ANY($1)", &[&ids])
                .await
                .map_err(pg)?
                .iter()
                .map(|r| r.get(0))
                .collect())
        })?;
        let bad: Vec<String> = suspects
            .into_iter()
            .filter(|(m, _)| still.contains(&m.id))
            .map(|(m, why)| format!("message {}: {} ({why})", m.uid, objects.describe(&m.uid)))
            .collect();
        if !bad.is_empty() {
            let n = bad.len() as u64;
            report.faults.push(fault(
                "missing_blob",
                n,
                bad,
                "none: restore the object from the bucket's versions or a backup, or remove \
                 the message (`lazaret delete --ids`)",
                false,
            ));
        }
        Ok(())
    }

    /// Repairs what can be repaired, in one transaction that finds each fault again;
    /// returns what it changed.
    pub fn repair(&self) -> Result<RepairReport> {
        self.with_client(|mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            let mut report = RepairReport::default();
            for check in ROW_CHECKS {
                let mut changed = 0u64;
                for sql in check.repair_sql {
                    changed += tx.execute(*sql, &[]).await.map_err(pg)?;
                }
                if changed > 0 {
                    report.repaired.push((check.kind.to_string(), changed));
                }
            }
            // After the row repairs: an item removed above may have held the last
            // copy of its message.
            let unreferenced = tx
                .execute(
                    &format!("INSERT INTO reclaim(message) {UNREFERENCED} ON CONFLICT DO NOTHING"),
                    &[],
                )
                .await
                .map_err(pg)?;
            if unreferenced > 0 {
                report
                    .repaired
                    .push(("unreferenced_message".into(), unreferenced));
            }
            super::clusters::lock_filing(&tx).await?;
            let orphans: Vec<i64> = tx
                .query(ORPHAN_FINGERPRINTS, &[])
                .await
                .map_err(pg)?
                .iter()
                .map(|r| r.get(0))
                .collect();
            if !orphans.is_empty() {
                super::clusters::forget(&tx, &orphans).await?;
                report
                    .repaired
                    .push(("orphan_fingerprints".into(), orphans.len() as u64));
            }
            super::commit(tx).await?;
            Ok(report)
        })
    }
}

/// A fault over messages (row ids), if any have it.
fn message_fault(report: &mut CheckReport, kind: &'static str, ids: &[i64], repair: &'static str) {
    if !ids.is_empty() {
        let examples = ids
            .iter()
            .take(EXAMPLES)
            .map(|id| format!("message {id}"))
            .collect();
        report
            .faults
            .push(fault(kind, ids.len() as u64, examples, repair, true));
    }
}
