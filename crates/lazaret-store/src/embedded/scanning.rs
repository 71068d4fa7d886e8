//! The scanner's side of the store: which messages still need a scan (after-queue, or
//! a rescan under new signatures), recording what it found in one transaction per
//! batch (quarantining detected mail, or pointing a message at its tagged copy), and
//! answering hash signatures from the index of part hashes.

use super::quarantine;
use crate::model::*;
use crate::Result;
use lazaret_core::state::QUEUE_INBOUND;
use rusqlite::{params, Connection};

/// Messages with a due `inbound` item that were never scanned.
pub(super) fn pending(c: &Connection, limit: usize) -> Result<Vec<PendingScan>> {
    let mut stmt = c.prepare_cached(
        "SELECT DISTINCT m.id, m.uid FROM queue_items q JOIN messages m ON m.id=q.message
         WHERE q.queue=?1 AND q.state IN ('ready','retry') AND m.scan_version IS NULL
           AND NOT EXISTS (SELECT 1 FROM queues WHERE name=?1 AND state='frozen')
         ORDER BY q.id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![QUEUE_INBOUND, limit as i64], |r| {
        Ok(PendingScan {
            message: r.get(0)?,
            uid: r.get(1)?,
            recipients: Vec::new(),
        })
    })?;
    let mut pending: Vec<PendingScan> = rows.collect::<rusqlite::Result<_>>()?;
    let mut rcpts = c.prepare_cached(
        "SELECT r.address FROM queue_items q JOIN queue_rcpts r ON r.item=q.id
         WHERE q.message=?1 AND q.queue=?2",
    )?;
    for p in &mut pending {
        p.recipients = rcpts
            .query_map(params![p.message, QUEUE_INBOUND], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
    }
    Ok(pending)
}

/// Moves the inbound copies of the messages the scan let through on to their next
/// hops, in the transaction that records the scan: scanning, routing and local
/// delivery are then one commit. A copy with a recipient `next_hops` does not name is
/// left for the queue runner.
pub(super) fn route_passed(
    c: &Connection,
    records: &[ScanRecord],
    next_hops: &std::collections::HashMap<String, String>,
    retry_delay_secs: i64,
    hold: Option<HoldRule>,
) -> Result<RouteReport> {
    use super::queues::{route_item, Groups, Move, Router};
    let mut report = RouteReport::default();
    let Some(router) = Router::start(c, retry_delay_secs, hold)? else {
        return Ok(report);
    };
    let t = crate::now();
    let mut items = c.prepare_cached(
        "SELECT id, created FROM queue_items
         WHERE message=?1 AND queue=?2 AND state IN ('ready','retry') AND next_attempt<=?3",
    )?;
    let mut rcpts = c.prepare_cached("SELECT address FROM queue_rcpts WHERE item=?1")?;
    for r in records {
        if matches!(r.action, ScanAction::Quarantine { .. }) {
            continue;
        }
        let due: Vec<(i64, i64)> = items
            .query_map(params![r.message, QUEUE_INBOUND, t], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        for (item, created) in due {
            let mut groups = Groups::new();
            let mut complete = true;
            for rcpt in rcpts.query_map([item], |row| row.get::<_, String>(0))? {
                let rcpt = rcpt?;
                match next_hops.get(&rcpt) {
                    Some(queue) => groups.entry(queue.clone()).or_default().push(rcpt),
                    None => complete = false,
                }
            }
            if !complete || groups.is_empty() {
                continue;
            }
            let moving = Move {
                item,
                message: r.message,
                created,
            };
            route_item(c, &router, moving, groups, &mut report)?;
        }
    }
    Ok(report)
}

pub(super) fn unscanned_inbound(c: &Connection) -> Result<u64> {
    Ok(c.prepare_cached(
        "SELECT count(DISTINCT q.message) FROM queue_items q JOIN messages m ON m.id=q.message
         WHERE q.queue=?1 AND m.scan_version IS NULL",
    )?
    .query_row([QUEUE_INBOUND], |r| r.get::<_, i64>(0))? as u64)
}

/// The SQL condition "message `m` is in a rescan's scope": queued (if parameter
/// `queues` is true) or in a mailbox (if `mailboxes` is), and in cluster `cluster`
/// unless that parameter is NULL.
fn in_scope(queues: &str, mailboxes: &str, cluster: &str) -> String {
    format!(
        "(({queues} AND EXISTS (SELECT 1 FROM queue_items q WHERE q.message=m.id))
           OR ({mailboxes} AND EXISTS (SELECT 1 FROM mailbox_entries e WHERE e.message=m.id)))
         AND ({cluster} IS NULL OR {})",
        super::clusters::member_of(cluster)
    )
}

/// Messages held in the chosen places whose content was not scanned with
/// `content_version`, after row id `after`, in row id order (so a rescan resumes).
pub(super) fn rescan_candidates(
    c: &Connection,
    after: i64,
    limit: usize,
    content_version: &str,
    scope: RescanScope,
) -> Result<Vec<PendingScan>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT m.id, m.uid FROM messages m
         WHERE m.id>?1 AND m.scan_content IS NOT ?2 AND {}
         ORDER BY m.id LIMIT ?5",
        in_scope("?3", "?4", "?6")
    ))?;
    let rows = stmt.query_map(
        params![
            after,
            content_version,
            scope.queues,
            scope.mailboxes,
            limit as i64,
            scope.cluster
        ],
        |r| {
            Ok(PendingScan {
                message: r.get(0)?,
                uid: r.get(1)?,
                recipients: Vec::new(),
            })
        },
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Messages (row ids) in the chosen places with a part (or archive member) whose MD5 /
/// SHA-256 is one of these, or whose own SHA-256 is; each with the digest that matched.
/// A size, when given, must match too.
pub(super) fn hash_matches(
    c: &Connection,
    md5: &[(String, Option<u64>)],
    sha256: &[(String, Option<u64>)],
    scope: RescanScope,
) -> Result<Vec<(i64, String)>> {
    let mut out = Vec::new();
    let held = in_scope("?3", "?4", "?5");
    // The messages holding the digest anywhere come from `lookup_hashes`; which place
    // (a part or the whole message) has it, with the size, is checked on their rows.
    let by_digest = |column: &str| {
        format!(
            "SELECT m.id FROM lk.lookup_hashes l JOIN messages m ON m.id=l.message
             WHERE l.hash=?1 AND {held}
               AND (EXISTS (SELECT 1 FROM parts p WHERE p.message=m.id AND p.{column}=?1
                            AND (?2 IS NULL OR p.size=?2))
                    OR (m.{column}=?1 AND (?2 IS NULL OR m.size=?2)))"
        )
    };
    let (by_md5, by_sha) = (by_digest("md5"), by_digest("sha256"));
    for (sql, list) in [(&by_md5, md5), (&by_sha, sha256)] {
        let mut stmt = c.prepare_cached(sql)?;
        for (digest, size) in list {
            let rows = stmt.query_map(
                params![
                    digest,
                    size.map(|s| s as i64),
                    scope.queues,
                    scope.mailboxes,
                    scope.cluster
                ],
                |r| r.get::<_, i64>(0),
            )?;
            for id in rows {
                out.push((id?, digest.clone()));
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Messages held in the chosen places that have one of `sizes`, or a part (or archive
/// member) of one, in row id order. Reads the parts table through: only asked for
/// signatures the index has no digest for.
pub(super) fn messages_of_size(
    c: &Connection,
    sizes: &[u64],
    scope: RescanScope,
) -> Result<Vec<PendingScan>> {
    if sizes.is_empty() {
        return Ok(Vec::new());
    }
    let list = sizes
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut stmt = c.prepare(&format!(
        "SELECT m.id, m.uid FROM messages m
         WHERE (m.size IN ({list}) OR m.id IN (SELECT message FROM parts WHERE size IN ({list})))
           AND {}
         ORDER BY m.id",
        in_scope("?1", "?2", "?3")
    ))?;
    let rows = stmt.query_map(params![scope.queues, scope.mailboxes, scope.cluster], |r| {
        Ok(PendingScan {
            message: r.get(0)?,
            uid: r.get(1)?,
            recipients: Vec::new(),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Records scan results; returns what was quarantined, and the blobs no message uses
/// any more (tagged messages' old contents) for removal after the commit.
pub(super) fn record(
    c: &Connection,
    records: &[ScanRecord],
) -> Result<(ActionReport, Vec<String>)> {
    let mut report = ActionReport::default();
    let mut old_blobs = Vec::new();
    for r in records {
        scan_event(c, r)?;
        c.prepare_cached(
            "UPDATE messages SET scan_version=COALESCE(NULLIF(?2, ''), scan_version),
               scan_content=COALESCE(NULLIF(?3, ''), scan_content),
               verdict=COALESCE(?4, verdict) WHERE id=?1",
        )?
        .execute(params![
            r.message,
            r.stamp.version,
            r.stamp.content_version,
            r.stamp.verdict
        ])?;
        match &r.action {
            ScanAction::Keep => {}
            ScanAction::Quarantine {
                reason,
                queues,
                mailboxes,
            } => {
                let mut ids: Vec<String> = Vec::new();
                if *queues {
                    let mut stmt =
                        c.prepare_cached("SELECT 'q' || id FROM queue_items WHERE message=?1")?;
                    for id in stmt.query_map([r.message], |row| row.get(0))? {
                        ids.push(id?);
                    }
                }
                if *mailboxes {
                    let mut stmt =
                        c.prepare_cached("SELECT 'm' || id FROM mailbox_entries WHERE message=?1")?;
                    for id in stmt.query_map([r.message], |row| row.get(0))? {
                        ids.push(id?);
                    }
                }
                let done = quarantine::quarantine(c, &ids, "scanner", reason)?;
                report.done += done.done;
                for u in done.users {
                    if !report.users.contains(&u) {
                        report.users.push(u);
                    }
                }
            }
            ScanAction::Replace {
                uid,
                size,
                digests,
                location,
            } => {
                let (old, old_pack, old_offset, old_size): (String, Option<u32>, Option<i64>, i64) =
                    c.prepare_cached(
                        "SELECT uid, blob_pack, blob_offset, size FROM messages WHERE id=?1",
                    )?
                    .query_row([r.message], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                    })?;
                c.prepare_cached(
                    "UPDATE messages SET uid=?2, size=?3, sha256=?4, md5=?5, blob_pack=?6,
                       blob_offset=?7 WHERE id=?1",
                )?
                .execute(params![
                    r.message,
                    uid,
                    *size as i64,
                    digests.sha256,
                    digests.md5,
                    location.map(|l| l.pack),
                    location.map(|l| l.offset as i64)
                ])?;
                c.prepare_cached("DELETE FROM imap_cache WHERE uid=?1")?
                    .execute([&old])?;
                super::count_pack_bytes(c, *location, *size as i64)?;
                match old_pack.zip(old_offset) {
                    Some((pack, offset)) => super::count_pack_bytes(
                        c,
                        Some(super::BlobLocation {
                            pack,
                            offset: offset as u64,
                        }),
                        -old_size,
                    )?,
                    None => old_blobs.push(old),
                }
            }
        }
    }
    Ok((report, old_blobs))
}

/// The event log notes a message's first scan and every detection; a rescan that finds
/// nothing new is not a step of the message's path.
fn scan_event(c: &Connection, r: &ScanRecord) -> Result<()> {
    use rusqlite::OptionalExtension;
    let row: Option<(bool, String)> = c
        .prepare_cached("SELECT scan_version IS NULL, uid FROM messages WHERE id=?1")?
        .query_row([r.message], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    let Some((first, uid)) = row else {
        return Ok(());
    };
    let Some(detail) = scan_event_detail(r, first) else {
        return Ok(());
    };
    use super::events::{insert, StoreId, SCANNED};
    match r.action {
        // The message takes the tagged copy's id: the old one stays findable here.
        ScanAction::Replace { .. } => {
            insert(c, r.message, SCANNED, "", &detail, StoreId::Keep(&uid))
        }
        _ => insert(c, r.message, SCANNED, "", &detail, StoreId::Known(&uid)),
    }
}

/// What the event log says of a scan: its first (`first`) and every detection; None
/// for a rescan that found nothing new.
pub(crate) fn scan_event_detail(r: &ScanRecord, first: bool) -> Option<String> {
    if !first && r.stamp.verdict.is_none() {
        return None;
    }
    let mut detail = match &r.stamp.verdict {
        Some(found) => format!("found {found}"),
        None => "clean".to_string(),
    };
    if !r.stamp.version.is_empty() {
        detail.push_str(&format!(" (signatures {})", r.stamp.version));
    }
    if let ScanAction::Replace { uid: new, .. } = &r.action {
        detail.push_str(&format!("; attachments replaced by a notice, now {new}"));
    }
    Some(detail)
}
