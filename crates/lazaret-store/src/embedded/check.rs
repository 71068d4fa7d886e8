//! `lazaret check [--repair]`: verifies the store's invariants while the server runs.
//!
//! What must hold after any crash: every row that names a message names one that
//! exists, with its bytes where the row says (record header as written, and with
//! `deep` the SHA-256 too); every message is held by a queue item, a mailbox entry or
//! quarantine (otherwise it is a leak); per folder, UIDs are positive, unique (a
//! UNIQUE index SQLite's own check verifies) and below `uidnext`, mod-sequences not
//! above the folder's highest; queue items have recipients and a known state; the
//! bytes counted live per pack agree with the rows; the text index holds every message
//! up to its watermark and nothing deleted that it was not told about.
//!
//! IMAP UIDs are not dense: an expunge leaves a gap for ever (RFC 3501 2.3.1.1), so
//! "dense" here means "no UID at or above `uidnext`", which is what a client relies on.
//!
//! The checks run in one read transaction (a consistent snapshot, the main database
//! first and then the text index, so that a deletion the indexer has finished is never
//! taken for a stale entry), with blob removal pinned so that compaction cannot take
//! a pack away under it. Repairs run in one write transaction that finds the faults
//! again there, so a repair never acts on a snapshot that moved on.

use super::{blob_ref_of, text_index::SCHEMA_NAME as T, unreferenced, BlobRef, EmbeddedStore};
use crate::Result;
use rusqlite::Connection;
use serde::Serialize;

/// One kind of fault and how many rows have it.
#[derive(Debug, Clone, Serialize)]
pub struct CheckFault {
    /// A stable name: `database`, `dangling_rows`, `unreferenced_message`,
    /// `missing_blob`, `uid_not_below_uidnext`, `modseq_above_highest`,
    /// `queue_item_without_recipients`, `queue_item_state`, `pack_live_bytes`,
    /// `text_index_missing`, `text_index_stale`, `orphan_fingerprints`,
    /// `lookups_missing`, `lookups_stale`.
    pub kind: &'static str,
    pub count: u64,
    /// Up to ten of the rows or files concerned.
    pub examples: Vec<String>,
    /// What `--repair` does about it (None: it cannot; say what the admin can).
    pub repair: &'static str,
    pub repairable: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    pub messages: u64,
    pub mailbox_entries: u64,
    pub queue_items: u64,
    pub quarantined: u64,
    /// Messages whose bytes were read and hashed (`deep`), else whose record header was.
    pub blobs_checked: u64,
    pub deep: bool,
    pub faults: Vec<CheckFault>,
}

/// What one repair changed, by fault kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairReport {
    pub repaired: Vec<(String, u64)>,
}

pub(crate) const EXAMPLES: usize = 10;

/// A fault found by a query: its count and examples come from `sql`, which selects
/// one text column describing each faulty row; `repair_sql` mends it (both stores).
pub(crate) struct RowCheck {
    pub(crate) kind: &'static str,
    pub(crate) sql: &'static str,
    pub(crate) repair: &'static str,
    pub(crate) repair_sql: &'static [&'static str],
}

/// Rows that name something that is not there. Foreign keys are on for every
/// connection, so these mean a bug or damage, not a race.
const ROW_CHECKS: &[RowCheck] = &[
    RowCheck {
        kind: "dangling_rows",
        sql: "SELECT 'queue item ' || q.id || ' names message ' || q.message FROM queue_items q
               WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.id=q.message)
             UNION ALL SELECT 'mailbox entry ' || e.id || ' names message ' || e.message
               FROM mailbox_entries e WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.id=e.message)
             UNION ALL SELECT 'mailbox entry ' || e.id || ' names folder ' || e.mailbox
               FROM mailbox_entries e WHERE NOT EXISTS (SELECT 1 FROM mailboxes b WHERE b.id=e.mailbox)
             UNION ALL SELECT 'quarantine ' || z.id || ' names message ' || z.message FROM quarantine z
               WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.id=z.message)
             UNION ALL SELECT 'part ' || p.part || ' names message ' || p.message FROM parts p
               WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.id=p.message)
             UNION ALL SELECT 'recipient ' || r.address || ' names queue item ' || r.item FROM queue_rcpts r
               WHERE NOT EXISTS (SELECT 1 FROM queue_items q WHERE q.id=r.item)
             UNION ALL SELECT 'folder ' || b.id || ' names user ' || b.user FROM mailboxes b
               WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.address=b.user)
             UNION ALL SELECT 'user ' || u.address || ' names domain ' || u.domain FROM users u
               WHERE NOT EXISTS (SELECT 1 FROM domains d WHERE d.name=u.domain)",
        repair: "removes the rows (their message is gone already); adds a user's missing domain",
        repair_sql: &[
            "DELETE FROM queue_items WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.id=queue_items.message)",
            "DELETE FROM mailbox_entries WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.id=mailbox_entries.message)
               OR NOT EXISTS (SELECT 1 FROM mailboxes b WHERE b.id=mailbox_entries.mailbox)",
            "DELETE FROM quarantine WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.id=quarantine.message)",
            "DELETE FROM parts WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.id=parts.message)",
            "DELETE FROM queue_rcpts WHERE NOT EXISTS (SELECT 1 FROM queue_items q WHERE q.id=queue_rcpts.item)",
            "DELETE FROM mailboxes WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.address=mailboxes.user)",
            "INSERT OR IGNORE INTO domains(name, created)
               SELECT DISTINCT domain, CAST(strftime('%s','now') AS INTEGER) FROM users
               WHERE NOT EXISTS (SELECT 1 FROM domains d WHERE d.name=users.domain)",
        ],
    },
    RowCheck {
        kind: "uid_not_below_uidnext",
        sql: "SELECT 'folder ' || b.user || '/' || b.name || ': UID ' || MAX(e.uid)
                || ', uidnext ' || b.uidnext
              FROM mailbox_entries e JOIN mailboxes b ON b.id=e.mailbox
              GROUP BY b.id HAVING MAX(e.uid) >= b.uidnext
             UNION ALL SELECT 'folder ' || b.user || '/' || b.name || ': UID ' || e.uid
              FROM mailbox_entries e JOIN mailboxes b ON b.id=e.mailbox WHERE e.uid < 1",
        repair: "raises the folder's uidnext past its highest UID (clients see new UIDs only)",
        repair_sql: &["UPDATE mailboxes SET uidnext=(SELECT MAX(uid)+1 FROM mailbox_entries e
                        WHERE e.mailbox=mailboxes.id)
                      WHERE uidnext <= (SELECT MAX(uid) FROM mailbox_entries e WHERE e.mailbox=mailboxes.id)"],
    },
    RowCheck {
        kind: "modseq_above_highest",
        sql: "SELECT 'folder ' || b.user || '/' || b.name || ': mod-sequence ' || MAX(e.modseq)
                || ', highest ' || b.highestmodseq
              FROM mailbox_entries e JOIN mailboxes b ON b.id=e.mailbox
              GROUP BY b.id HAVING MAX(e.modseq) > b.highestmodseq",
        repair: "raises the folder's highest mod-sequence to its entries' highest",
        repair_sql: &["UPDATE mailboxes SET highestmodseq=(SELECT MAX(modseq) FROM mailbox_entries e
                        WHERE e.mailbox=mailboxes.id)
                      WHERE highestmodseq < (SELECT MAX(modseq) FROM mailbox_entries e WHERE e.mailbox=mailboxes.id)"],
    },
    RowCheck {
        kind: "queue_item_without_recipients",
        sql: "SELECT 'queue item ' || q.id || ' in ' || q.queue FROM queue_items q
              WHERE NOT EXISTS (SELECT 1 FROM queue_rcpts r WHERE r.item=q.id)",
        repair: "removes the item (it has nobody to deliver to)",
        repair_sql: &["DELETE FROM queue_items WHERE NOT EXISTS
                        (SELECT 1 FROM queue_rcpts r WHERE r.item=queue_items.id)"],
    },
    RowCheck {
        kind: "queue_item_state",
        sql: "SELECT 'queue item ' || id || ': state ' || quote(state) FROM queue_items
              WHERE state NOT IN ('ready', 'retry', 'frozen')",
        repair: "freezes the item, for the admin to look at and thaw",
        repair_sql: &["UPDATE queue_items SET state='frozen' WHERE state NOT IN ('ready', 'retry', 'frozen')"],
    },
    // 32: the record header before each message in a pack (`blobs::HEADER`).
    RowCheck {
        kind: "pack_live_bytes",
        sql: "WITH counted(pack, bytes) AS (
                SELECT blob_pack, SUM(size + 32) FROM messages WHERE blob_pack IS NOT NULL
                GROUP BY blob_pack)
              SELECT 'pack ' || COALESCE(p.id, c.pack) || ': ' || COALESCE(p.live, 0)
                || ' bytes counted live, rows hold ' || COALESCE(c.bytes, 0)
              FROM packs p LEFT JOIN counted c ON c.pack=p.id
              WHERE COALESCE(c.bytes, 0) <> p.live
             UNION ALL SELECT 'pack ' || c.pack || ': not counted, rows hold ' || c.bytes
              FROM counted c WHERE NOT EXISTS (SELECT 1 FROM packs p WHERE p.id=c.pack)",
        repair: "counts the live bytes again (compaction decides from them)",
        repair_sql: &[
            "INSERT INTO packs(id, live) SELECT blob_pack, 0 FROM messages
               WHERE blob_pack IS NOT NULL GROUP BY blob_pack ON CONFLICT(id) DO NOTHING",
            "UPDATE packs SET live=COALESCE((SELECT SUM(size + 32) FROM messages m
               WHERE m.blob_pack=packs.id), 0)
             WHERE live <> COALESCE((SELECT SUM(size + 32) FROM messages m
               WHERE m.blob_pack=packs.id), 0)",
        ],
    },
    RowCheck {
        kind: "orphan_fingerprints",
        // A message gone before the clusterer filed it keeps its fingerprint until it
        // is filed (clusters::forget): not an orphan.
        sql: "SELECT 'fingerprint of message ' || f.message FROM fingerprints f
              WHERE f.pending IS NULL AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.id=f.message)",
        repair: "removes them (and their count from their cluster)",
        repair_sql: &[],
    },
];

/// Messages nothing holds and the background reclaim was not told of.
const UNREFERENCED: &str = "SELECT id FROM messages m
    WHERE NOT EXISTS (SELECT 1 FROM queue_items q WHERE q.message=m.id)
      AND NOT EXISTS (SELECT 1 FROM mailbox_entries e WHERE e.message=m.id)
      AND NOT EXISTS (SELECT 1 FROM quarantine z WHERE z.message=m.id)
      AND NOT EXISTS (SELECT 1 FROM reclaim r WHERE r.message=m.id)";

impl EmbeddedStore {
    /// Verifies the store; `progress` is told of each message whose blob was checked.
    pub fn check(&self, deep: bool, progress: &(dyn Fn(u64) + Sync)) -> Result<CheckReport> {
        let _pin = self.blobs.pin();
        self.read(|c| {
            super::lookups::begin_matching_read(c, &self.db_path, &self.data_dir)?;
            let report = self.check_in(c, deep, progress);
            let _ = c.execute_batch("COMMIT");
            report
        })
    }

    fn check_in(
        &self,
        c: &Connection,
        deep: bool,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<CheckReport> {
        let count =
            |sql: &str| -> Result<u64> { Ok(c.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64) };
        // The main database's snapshot (and lookups.db's) is fixed before the text
        // index's (see `begin_matching_read`).
        let messages = count("SELECT COUNT(*) FROM messages")?;
        let mut report = CheckReport {
            messages,
            mailbox_entries: count("SELECT COUNT(*) FROM mailbox_entries")?,
            queue_items: count("SELECT COUNT(*) FROM queue_items")?,
            quarantined: count("SELECT COUNT(*) FROM quarantine")?,
            deep,
            ..CheckReport::default()
        };
        let pragma = if deep {
            "integrity_check"
        } else {
            "quick_check"
        };
        let db: Vec<String> = c
            .prepare(&format!("PRAGMA main.{pragma}"))?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        if db != ["ok"] {
            report.faults.push(fault(
                "database",
                db.len() as u64,
                db,
                "none: restore the last good backup (`lazaret backup restore`)",
                false,
            ));
        }
        for check in ROW_CHECKS {
            let rows: Vec<String> = c
                .prepare(check.sql)?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            if !rows.is_empty() {
                report.faults.push(fault(
                    check.kind,
                    rows.len() as u64,
                    rows,
                    check.repair,
                    true,
                ));
            }
        }
        let unreferenced = ids(c, UNREFERENCED, [])?;
        message_fault(
            &mut report,
            "unreferenced_message",
            &unreferenced,
            "deletes the rows (no queue, folder or quarantine holds them)",
        );
        self.check_blobs(c, deep, progress, &mut report)?;
        self.check_text_index(c, &mut report)?;
        for (missing, kind, repair) in [
            (
                true,
                "lookups_missing",
                "rebuilds lookups.db from the database",
            ),
            (
                false,
                "lookups_stale",
                "rebuilds lookups.db from the database",
            ),
        ] {
            let differ = super::lookups::differences(c, missing)?;
            message_fault(&mut report, kind, &differ, repair);
        }
        Ok(report)
    }

    fn check_blobs(
        &self,
        c: &Connection,
        deep: bool,
        progress: &(dyn Fn(u64) + Sync),
        report: &mut CheckReport,
    ) -> Result<()> {
        let mut stmt =
            c.prepare("SELECT uid, blob_pack, blob_offset, size, sha256 FROM messages ORDER BY blob_pack, blob_offset")?;
        let mut rows = stmt.query([])?;
        let mut bad = Vec::new();
        while let Some(row) = rows.next()? {
            let blob: BlobRef = blob_ref_of(row, 0)?;
            let sha: String = row.get(4)?;
            if let Some(why) = self.blobs.fault(&blob, deep.then_some(sha.as_str())) {
                bad.push(format!("message {}: {why}", blob.uid));
            }
            report.blobs_checked += 1;
            progress(1);
        }
        if !bad.is_empty() {
            report.faults.push(fault(
                "missing_blob",
                bad.len() as u64,
                bad,
                "none: restore the message from a backup, or remove it (`lazaret delete --ids`)",
                false,
            ));
        }
        Ok(())
    }

    fn check_text_index(&self, c: &Connection, report: &mut CheckReport) -> Result<()> {
        let through: i64 = c.query_row(
            &format!("SELECT COALESCE((SELECT value FROM {T}.text_state WHERE key='through'), 0)"),
            [],
            |r| r.get(0),
        )?;
        let missing = ids(
            c,
            &format!(
                "SELECT id FROM messages WHERE id <= ?1 EXCEPT SELECT rowid FROM {T}.text_index"
            ),
            [through],
        )?;
        message_fault(
            report,
            "text_index_missing",
            &missing,
            "rebuilds the text index from the messages, in the background",
        );
        let stale = ids(c, &stale_sql(), [])?;
        message_fault(
            report,
            "text_index_stale",
            &stale,
            "has the indexer drop them",
        );
        Ok(())
    }

    /// Repairs what can be repaired, finding each fault again inside the write
    /// transaction; returns what it changed.
    pub fn repair(&self) -> Result<RepairReport> {
        let checked = self.check(false, &|_| {})?;
        let text_missing = checked
            .faults
            .iter()
            .any(|f| f.kind == "text_index_missing");
        let lookups_differ = checked
            .faults
            .iter()
            .any(|f| f.kind.starts_with("lookups_"));
        let (report, legacy) = self.write(move |c| {
            let mut report = RepairReport::default();
            for check in ROW_CHECKS {
                let mut changed = 0u64;
                for sql in check.repair_sql {
                    changed += c.execute(sql, [])? as u64;
                }
                if changed > 0 {
                    report.repaired.push((check.kind.to_string(), changed));
                }
            }
            let orphans = ids(
                c,
                "SELECT message FROM fingerprints f
                 WHERE f.pending IS NULL AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.id=f.message)",
                [],
            )?;
            if !orphans.is_empty() {
                super::clusters::forget(c, &orphans)?;
                report
                    .repaired
                    .push(("orphan_fingerprints".into(), orphans.len() as u64));
            }
            let gone = ids(c, UNREFERENCED, [])?;
            let legacy = unreferenced(c, &gone)?;
            if !gone.is_empty() {
                report
                    .repaired
                    .push(("unreferenced_message".into(), gone.len() as u64));
            }
            if lookups_differ {
                super::lookups::refill(c)?;
                report.repaired.push(("lookups".into(), 1));
            }
            Ok((report, legacy))
        })?;
        self.discard_blobs(legacy);
        let mut report = report;
        if text_missing {
            self.text.reset();
            report.repaired.push(("text_index_missing".into(), 1));
        }
        let stale = checked
            .faults
            .iter()
            .find(|f| f.kind == "text_index_stale")
            .map_or(0, |f| f.count);
        if stale > 0 {
            let stale = self.read(|c| ids(c, &stale_sql(), []))?;
            let n = stale.len() as u64;
            // Ids are never reused, so an id the messages table lacks now never
            // comes back: telling the indexer to drop it is safe at any time.
            self.write(move |c| {
                let mut forget =
                    c.prepare_cached("INSERT OR IGNORE INTO text_deleted(message) VALUES(?1)")?;
                for id in stale {
                    forget.execute([id])?;
                }
                Ok(())
            })?;
            self.text.wake();
            report.repaired.push(("text_index_stale".into(), n));
        }
        Ok(report)
    }
}

/// The message ids a query selects.
fn ids(c: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<Vec<i64>> {
    Ok(c.prepare(sql)?
        .query_map(params, |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?)
}

/// A fault over messages, if any have it.
fn message_fault(report: &mut CheckReport, kind: &'static str, ids: &[i64], repair: &'static str) {
    if !ids.is_empty() {
        let examples = ids.iter().map(|id| format!("message {id}")).collect();
        report
            .faults
            .push(fault(kind, ids.len() as u64, examples, repair, true));
    }
}

/// Index entries of messages that are gone, which the indexer was not told about.
fn stale_sql() -> String {
    format!(
        "SELECT rowid FROM {T}.text_index EXCEPT SELECT id FROM messages
         EXCEPT SELECT message FROM text_deleted"
    )
}

pub(crate) fn fault(
    kind: &'static str,
    count: u64,
    mut examples: Vec<String>,
    repair: &'static str,
    repairable: bool,
) -> CheckFault {
    examples.truncate(EXAMPLES);
    CheckFault {
        kind,
        count,
        examples,
        repair,
        repairable,
    }
}
