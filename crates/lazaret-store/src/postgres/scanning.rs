//! The scanner's side of the shared database (embedded/scanning.rs for the rules):
//! which messages still need a scan, recording what it found in one transaction per
//! batch (quarantining detected mail, or pointing a message at its rewritten copy),
//! and answering hash signatures from the digest indexes of messages and parts.
//!
//! A node's scanner claims the inbound items it scans with a lease (`SCAN_LEASE`), as
//! outbound workers do: nodes scan different messages. Should a lease lapse during a
//! slow scan, two nodes scan the same message: both record the same stamp, and the
//! second quarantine finds nothing left to take. Recording a
//! scan does not route the message in the same commit as the embedded store does;
//! it notifies `inbound`, whose next routing pass (on any node) moves it on.

use super::cached::Cached;
use super::local::notify_users;
use super::{pg, record_events, Event, PostgresStore, QUEUE_CHANNEL};
use crate::embedded::events::SCANNED;
use crate::embedded::scanning::scan_event_detail;
use crate::model::{ActionReport, PendingScan, RescanScope, RouteReport, ScanAction, ScanRecord};
use crate::{now, BlobLocation, Result, StoreError};
use deadpool_postgres::Transaction;
use lazaret_core::state::QUEUE_INBOUND;
use std::collections::{BTreeMap, HashMap};

/// Seconds a scanner's claim on an inbound item lasts: a batch is scanned in far less.
const SCAN_LEASE: i64 = 60;

/// "Message `m` is in the rescan's scope": queued (if parameter `q` is true) or in a
/// folder (if `f` is), and in cluster `k` unless that parameter is NULL.
fn in_scope(q: &str, f: &str, k: &str) -> String {
    format!(
        "(({q}::boolean AND EXISTS (SELECT 1 FROM queue_items qi WHERE qi.message=m.id))
          OR ({f}::boolean AND EXISTS (SELECT 1 FROM mailbox_entries e WHERE e.message=m.id)))
         AND ({k}::bigint IS NULL OR {})",
        super::clusters::member_of(k)
    )
}

fn pending_rows(rows: &[tokio_postgres::Row]) -> Vec<PendingScan> {
    rows.iter()
        .map(|r| PendingScan {
            message: r.get(0),
            uid: r.get(1),
            recipients: Vec::new(),
        })
        .collect()
}

impl PostgresStore {
    /// Messages with a due `inbound` item that were never scanned, oldest first, with
    /// their inbound recipients. Their items become this node's for `SCAN_LEASE`
    /// seconds, so the scanners of other nodes take other messages instead of scanning
    /// the same ones and queueing behind each other's commits; this node may take its
    /// own claims again (a message whose scan had to wait), and a dead node's lapse.
    pub fn scan_pending(&self, limit: usize) -> Result<Vec<PendingScan>> {
        let node = self.node.clone();
        self.with_client(move |c| async move {
            let t = now();
            let mut rows = c
                .query_cached(
                    "WITH due AS (
                         SELECT q.id FROM queue_items q JOIN messages m ON m.id=q.message
                         WHERE q.queue=$1 AND q.state IN ('ready','retry')
                           AND m.scan_version IS NULL
                           AND (q.lease_until IS NULL OR q.lease_until<$3 OR q.lease_owner=$4)
                           AND NOT EXISTS (SELECT 1 FROM queues WHERE name=$1 AND state='frozen')
                         ORDER BY q.id LIMIT $2
                         FOR UPDATE OF q SKIP LOCKED)
                     UPDATE queue_items q SET lease_owner=$4, lease_until=$5
                     FROM due, messages m
                     WHERE q.id=due.id AND m.id=q.message
                     RETURNING m.id, m.uid, q.id",
                    &[
                        &QUEUE_INBOUND,
                        &(limit as i64),
                        &t,
                        &node,
                        &(t + SCAN_LEASE),
                    ],
                )
                .await?;
            // RETURNING gives no order; a message with several items comes once.
            rows.sort_by_key(|r| r.get::<_, i64>(2));
            let mut seen = std::collections::HashSet::new();
            rows.retain(|r| seen.insert(r.get::<_, i64>(0)));
            let mut pending = pending_rows(&rows);
            let ids: Vec<i64> = pending.iter().map(|p| p.message).collect();
            let rcpts = c
                .query_cached(
                    "SELECT q.message, r.address FROM queue_items q
                     JOIN queue_rcpts r ON r.item=q.id
                     WHERE q.message=ANY($1) AND q.queue=$2",
                    &[&ids, &QUEUE_INBOUND],
                )
                .await?;
            for r in &rcpts {
                let message: i64 = r.get(0);
                if let Some(p) = pending.iter_mut().find(|p| p.message == message) {
                    p.recipients.push(r.get(1));
                }
            }
            Ok(pending)
        })
    }

    pub fn unscanned_inbound(&self) -> Result<u64> {
        self.with_client(move |c| async move {
            let row = c
                .query_one_cached(
                    "SELECT count(DISTINCT q.message) FROM queue_items q
                     JOIN messages m ON m.id=q.message
                     WHERE q.queue=$1 AND m.scan_version IS NULL",
                    &[&QUEUE_INBOUND],
                )
                .await?;
            Ok(row.get::<_, i64>(0) as u64)
        })
    }

    /// Messages in the scope not scanned with `content_version`, after row id `after`,
    /// in row id order (a rescan resumes from the last one it did).
    pub fn rescan_candidates(
        &self,
        after: i64,
        limit: usize,
        content_version: &str,
        scope: RescanScope,
    ) -> Result<Vec<PendingScan>> {
        let version = content_version.to_string();
        self.with_client(move |c| async move {
            let sql = format!(
                "SELECT m.id, m.uid FROM messages m
                 WHERE m.id>$1 AND m.scan_content IS DISTINCT FROM $2 AND {}
                 ORDER BY m.id LIMIT $5",
                in_scope("$3", "$4", "$6")
            );
            let rows = c
                .query(
                    &sql,
                    &[
                        &after,
                        &version,
                        &scope.queues,
                        &scope.mailboxes,
                        &(limit as i64),
                        &scope.cluster,
                    ],
                )
                .await
                .map_err(pg)?;
            Ok(pending_rows(&rows))
        })
    }

    /// Messages in the scope whose own digest or a part's (an archive member's) is one
    /// of these, with the size when given; each with the digest that matched.
    pub fn hash_matches(
        &self,
        md5: Vec<(String, Option<u64>)>,
        sha256: Vec<(String, Option<u64>)>,
        scope: RescanScope,
    ) -> Result<Vec<(i64, String)>> {
        self.with_client(move |c| async move {
            let mut out = Vec::new();
            for (column, list) in [("md5", md5), ("sha256", sha256)] {
                // From the digest indexes to the few messages, then the scope.
                let sql = format!(
                    "SELECT m.id FROM messages m WHERE m.id IN (
                         SELECT p.message FROM parts p
                         WHERE p.{column}=$1 AND ($2::bigint IS NULL OR p.size=$2)
                         UNION SELECT x.id FROM messages x
                         WHERE x.{column}=$1 AND ($2::bigint IS NULL OR x.size=$2))
                       AND {}",
                    in_scope("$3", "$4", "$5")
                );
                let statement = c.prepare(&sql).await.map_err(pg)?;
                for (digest, size) in list {
                    let size = size.map(|s| s as i64);
                    let rows = c
                        .query(
                            &statement,
                            &[
                                &digest,
                                &size,
                                &scope.queues,
                                &scope.mailboxes,
                                &scope.cluster,
                            ],
                        )
                        .await
                        .map_err(pg)?;
                    out.extend(rows.iter().map(|r| (r.get::<_, i64>(0), digest.clone())));
                }
            }
            out.sort();
            out.dedup();
            Ok(out)
        })
    }

    /// Messages in the scope that are, or hold a part of, one of these sizes.
    pub fn messages_of_size(
        &self,
        sizes: Vec<u64>,
        scope: RescanScope,
    ) -> Result<Vec<PendingScan>> {
        if sizes.is_empty() {
            return Ok(Vec::new());
        }
        let sizes: Vec<i64> = sizes.iter().map(|&s| s as i64).collect();
        self.with_client(move |c| async move {
            let sql = format!(
                "SELECT m.id, m.uid FROM messages m
                 WHERE (m.size=ANY($1) OR m.id IN (SELECT message FROM parts WHERE size=ANY($1)))
                   AND {}
                 ORDER BY m.id",
                in_scope("$2", "$3", "$4")
            );
            let rows = c
                .query(
                    &sql,
                    &[&sizes, &scope.queues, &scope.mailboxes, &scope.cluster],
                )
                .await
                .map_err(pg)?;
            Ok(pending_rows(&rows))
        })
    }

    /// Records scan results in one transaction; `done` counts copies quarantined.
    /// The objects of rewritten messages' old contents are deleted once it commits.
    pub fn record_scans(&self, records: Vec<ScanRecord>) -> Result<ActionReport> {
        let node = self.node.clone();
        let (report, old) = self.with_client(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            let (report, old) = record(&tx, &records).await?;
            // Scanned: the claims `scan_pending` took are done with.
            let messages: Vec<i64> = records.iter().map(|r| r.message).collect();
            tx.execute_cached(
                "UPDATE queue_items SET lease_owner=NULL, lease_until=NULL
                 WHERE message=ANY($1) AND queue=$2 AND lease_owner=$3",
                &[&messages, &QUEUE_INBOUND, &node],
            )
            .await?;
            notify_users(&tx, &report.users).await?;
            // What the scan let through can be routed now, by any node.
            tx.execute_cached(
                "SELECT pg_notify($1, $2)",
                &[&QUEUE_CHANNEL, &QUEUE_INBOUND],
            )
            .await?;
            super::commit(tx).await?;
            Ok((report, old))
        })?;
        if !report.users.is_empty() {
            self.folders_changed();
        }
        if !old.is_empty() {
            self.objects()?.delete(old);
        }
        Ok(report)
    }

    /// As `record_scans`; the routing is left to the next routing pass (see above).
    pub fn record_scans_and_route(
        &self,
        records: Vec<ScanRecord>,
    ) -> Result<(ActionReport, RouteReport)> {
        Ok((self.record_scans(records)?, RouteReport::default()))
    }

    /// A rewritten message's body, under its new store id: an object of its own.
    pub fn blob_write(&self, uid: &str, data: &[u8]) -> Result<Option<BlobLocation>> {
        self.objects()?.put(uid, data.to_vec())?;
        Ok(None)
    }

    /// A body by its store id, as the bucket has it (also one no row names yet: the
    /// scanner reads back what it wrote).
    pub fn blob_read(&self, uid: &str) -> Result<Vec<u8>> {
        if uid.len() < 2 || !uid.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::NotFound("no such message".into()));
        }
        self.objects()?.get(uid, None)
    }
}

/// Records scan results in the caller's transaction; returns what was quarantined and
/// the store ids no message uses any more (rewritten messages' old contents).
async fn record(
    tx: &Transaction<'_>,
    records: &[ScanRecord],
) -> Result<(ActionReport, Vec<String>)> {
    let mut report = ActionReport::default();
    let mut old_uids = Vec::new();
    scan_events_and_stamps(tx, records).await?;
    for r in records {
        match &r.action {
            ScanAction::Keep => {}
            ScanAction::Quarantine {
                reason,
                queues,
                mailboxes,
            } => {
                let ids: Vec<String> = tx
                    .query_cached(
                        "SELECT 'q' || id FROM queue_items WHERE message=$1 AND $2
                         UNION ALL
                         SELECT 'm' || id FROM mailbox_entries WHERE message=$1 AND $3",
                        &[&r.message, queues, mailboxes],
                    )
                    .await?
                    .iter()
                    .map(|row| row.get(0))
                    .collect();
                let done = super::quarantine::quarantine(tx, &ids, "scanner", reason).await?;
                report.done += done.done;
                for u in done.users {
                    if !report.users.contains(&u) {
                        report.users.push(u);
                    }
                }
            }
            ScanAction::Replace {
                uid, size, digests, ..
            } => {
                let Some(old) = tx
                    .query_opt_cached(
                        "UPDATE messages n SET uid=$2, size=$3, sha256=$4, md5=$5
                         FROM messages o WHERE n.id=$1 AND o.id=n.id RETURNING o.uid",
                        &[
                            &r.message,
                            uid,
                            &(*size as i64),
                            &digests.sha256,
                            &digests.md5,
                        ],
                    )
                    .await?
                else {
                    continue;
                };
                let old: String = old.get(0);
                tx.execute_cached("DELETE FROM imap_cache WHERE uid=$1", &[&old])
                    .await?;
                old_uids.push(old);
            }
        }
    }
    Ok((report, old_uids))
}

/// Notes the scans in the event log and stamps the messages, a batch in a fixed
/// number of statements. The event log notes a message's first scan and every
/// detection; a rescan that finds nothing new is not a step of the message's path.
async fn scan_events_and_stamps(tx: &Transaction<'_>, records: &[ScanRecord]) -> Result<()> {
    let ids: Vec<i64> = records.iter().map(|r| r.message).collect();
    // Whether each message is unscanned so far, and its store id.
    let mut known: HashMap<i64, (bool, String)> = tx
        .query_cached(
            "SELECT id, scan_version IS NULL, uid FROM messages WHERE id=ANY($1)",
            &[&ids],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    let t = now();
    let mut events = Vec::new();
    // Each message's stamp as the records one after another would leave it.
    let mut stamps: BTreeMap<i64, Stamp> = BTreeMap::new();
    for r in records {
        let Some((first, uid)) = known.get_mut(&r.message) else {
            continue;
        };
        if let Some(detail) = scan_event_detail(r, *first) {
            let event = Event::new(r.message, SCANNED, "", detail);
            // A rewritten message takes the new copy's id: the old one stays findable.
            events.push(match r.action {
                ScanAction::Replace { .. } => event.keeping(uid.clone()),
                _ => event,
            });
        }
        *first = *first && r.stamp.version.is_empty();
        let stamp = stamps.entry(r.message).or_default();
        stamp.version = non_empty(&r.stamp.version).or(stamp.version);
        stamp.content = non_empty(&r.stamp.content_version).or(stamp.content);
        stamp.verdict = r.stamp.verdict.as_deref().or(stamp.verdict);
    }
    record_events(tx, t, &events).await?;
    let ids: Vec<i64> = stamps.keys().copied().collect();
    let versions: Vec<Option<&str>> = stamps.values().map(|s| s.version).collect();
    let contents: Vec<Option<&str>> = stamps.values().map(|s| s.content).collect();
    let verdicts: Vec<Option<&str>> = stamps.values().map(|s| s.verdict).collect();
    tx.execute_cached(
        "UPDATE messages m SET scan_version=COALESCE(u.version, m.scan_version),
             scan_content=COALESCE(u.content, m.scan_content),
             verdict=COALESCE(u.verdict, m.verdict)
         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[])
             AS u(id, version, content, verdict)
         WHERE m.id=u.id",
        &[&ids, &versions, &contents, &verdicts],
    )
    .await?;
    Ok(())
}

/// A message's scan stamp to write: each part None leaves the stored one.
#[derive(Default)]
struct Stamp<'a> {
    version: Option<&'a str>,
    content: Option<&'a str>,
    verdict: Option<&'a str>,
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}
