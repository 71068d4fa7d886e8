//! Queue operations of outbound delivery: which remote queues have due mail, handing a
//! batch to a worker, recording what each attempt came to (with its DSN, atomically),
//! moving mail that crashes workers to `poison`, and per-message freeze/thaw.

use super::{release, EmbeddedStore, Prepared};
use crate::model::{AttemptOutcome, QueuedMessage, RetryReport};
use crate::{now, Result};
use lazaret_core::state::QUEUE_POISON;
use rusqlite::{params, Connection, OptionalExtension};

/// Setting that holds every remote queue while set to "1" (`lazaret outbound disable`).
pub const OUTBOUND_DISABLED: &str = "outbound.disabled";

/// SQL condition: `queue` names a remote queue (anything but the system queues).
const IS_REMOTE: &str = "queue NOT IN ('inbound', 'local', 'poison')";

/// Worker failures after which a queue item is moved to `poison`.
pub(crate) const POISON_AFTER: i64 = 2;

pub(super) fn outbound_disabled(c: &Connection) -> Result<bool> {
    Ok(
        c.prepare_cached("SELECT 1 FROM settings WHERE key=?1 AND value='1'")?
            .exists([OUTBOUND_DISABLED])?,
    )
}

impl EmbeddedStore {
    /// Remote queues that are not frozen and hold mail that is ready or waiting for a
    /// retry, each with its earliest attempt time. Empty while outbound is disabled.
    pub(super) fn outbound_queues_impl(&self) -> Result<Vec<(String, i64)>> {
        self.read(|c| {
            if outbound_disabled(c)? {
                return Ok(Vec::new());
            }
            // Walks the distinct queue names through the (queue, state, next_attempt)
            // index one seek at a time instead of scanning a million items.
            let names: Vec<String> = c
                .prepare_cached(
                    "WITH RECURSIVE q(name) AS (
                       SELECT MIN(queue) FROM queue_items
                       UNION ALL
                       SELECT (SELECT MIN(queue) FROM queue_items WHERE queue > q.name)
                       FROM q WHERE q.name IS NOT NULL)
                     SELECT name FROM q WHERE name IS NOT NULL",
                )?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut frozen =
                c.prepare_cached("SELECT 1 FROM queues WHERE name=?1 AND state='frozen'")?;
            let mut earliest = c.prepare_cached(
                "SELECT MIN(next_attempt) FROM queue_items WHERE queue=?1 AND state=?2",
            )?;
            let mut due = Vec::new();
            for name in names {
                if matches!(name.as_str(), "inbound" | "local" | "poison")
                    || frozen.exists([&name])?
                {
                    continue;
                }
                let mut first: Option<i64> = None;
                for state in ["ready", "retry"] {
                    let t: Option<i64> = earliest.query_row(params![name, state], |r| r.get(0))?;
                    first = match (first, t) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                if let Some(t) = first {
                    due.push((name, t));
                }
            }
            Ok(due)
        })
    }

    /// Up to `limit` due messages of a remote queue, leaving out `busy` items (already
    /// in a worker's hands).
    pub(super) fn outbound_due_impl(
        &self,
        queue: &str,
        limit: usize,
        busy: &[i64],
    ) -> Result<Vec<QueuedMessage>> {
        let queue = queue.to_string();
        let busy: std::collections::HashSet<i64> = busy.iter().copied().collect();
        self.read(move |c| {
            if outbound_disabled(c)? {
                return Ok(Vec::new());
            }
            let mut items = c.prepare_cached(
                "SELECT q.id, m.uid, m.env_from, q.attempts, q.created, m.size, m.verdict IS NOT NULL
                 FROM queue_items q JOIN messages m ON m.id=q.message
                 WHERE q.queue=?1 AND q.state IN ('ready','retry') AND q.next_attempt<=?2
                   AND NOT EXISTS (SELECT 1 FROM queues WHERE name=?1 AND state='frozen')
                 ORDER BY q.next_attempt LIMIT ?3",
            )?;
            let mut rcpts = c.prepare_cached("SELECT address FROM queue_rcpts WHERE item=?1")?;
            let rows = items.query_map(
                params![queue, now(), (limit + busy.len()) as i64],
                |r| {
                    Ok(QueuedMessage {
                        item: r.get(0)?,
                        queue: queue.clone(),
                        message: r.get(1)?,
                        mail_from: r.get(2)?,
                        rcpts: Vec::new(),
                        attempts: r.get(3)?,
                        created: r.get(4)?,
                        size: r.get::<_, i64>(5)? as u64,
                        flagged: r.get(6)?,
                    })
                },
            )?;
            let mut out = Vec::new();
            for row in rows {
                let mut m = row?;
                if busy.contains(&m.item) {
                    continue;
                }
                m.rcpts = rcpts
                    .query_map([m.item], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                out.push(m);
                if out.len() == limit {
                    break;
                }
            }
            Ok(out)
        })
    }

    /// Applies attempt outcomes in one transaction: delivered and failed recipients
    /// leave the queue, deferred ones wait for `next_attempt`, and each DSN is queued in
    /// `inbound` together with the change that caused it. An item an admin removed
    /// meanwhile is left alone, and so is its DSN.
    pub(super) fn record_attempts_impl(&self, outcomes: Vec<AttemptOutcome>) -> Result<()> {
        let mut planned = Vec::with_capacity(outcomes.len());
        for mut outcome in outcomes {
            // A DSN's bytes are appended first; if its item is gone by the commit, they
            // stay unreferenced and compaction takes them.
            let dsn = match outcome.dsn.take() {
                Some(incoming) => {
                    let mut prepared = Prepared::new(incoming)?;
                    self.write_blob(&mut prepared)?;
                    Some(prepared)
                }
                None => None,
            };
            planned.push((outcome, dsn));
        }
        self.write(move |c| {
            let mut finished = Vec::new();
            for (o, dsn) in planned {
                let Some(message) = still_queued(c, o.item)? else {
                    continue;
                };
                attempt_events(c, message, &o, dsn.as_ref().map(|d| d.incoming.id.as_str()))?;
                let mut remove = c.prepare_cached("DELETE FROM queue_rcpts WHERE item=?1 AND address=?2")?;
                for r in o.delivered.iter().chain(&o.failed) {
                    remove.execute(params![o.item, r])?;
                }
                let left: i64 = c
                    .prepare_cached("SELECT COUNT(*) FROM queue_rcpts WHERE item=?1")?
                    .query_row([o.item], |r| r.get(0))?;
                if left == 0 {
                    c.prepare_cached("DELETE FROM queue_items WHERE id=?1")?
                        .execute([o.item])?;
                    finished.push(message);
                } else {
                    c.prepare_cached(
                        "UPDATE queue_items SET state=CASE WHEN state='frozen' THEN 'frozen' ELSE 'retry' END,
                           attempts=attempts+1, next_attempt=?2, last_error=?3 WHERE id=?1",
                    )?
                    .execute(params![o.item, o.next_attempt, o.error])?;
                }
                if let Some(d) = dsn {
                    d.insert(c)?;
                }
            }
            release(c, &finished)
        })
    }

    /// Counts a worker failure against each item; an item that failed a worker
    /// [`POISON_AFTER`] times moves to `poison`. Returns how many moved.
    pub(super) fn record_worker_failure_impl(&self, items: Vec<i64>, error: String) -> Result<u64> {
        self.write(move |c| {
            let mut poisoned = 0;
            for item in items {
                let failures: Option<(i64, String)> = c
                    .prepare_cached(
                        "UPDATE queue_items SET worker_failures=worker_failures+1, last_error=?2
                         WHERE id=?1 RETURNING worker_failures, queue",
                    )?
                    .query_row(params![item, error], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                if let Some((n, queue)) = failures {
                    if n >= POISON_AFTER {
                        c.prepare_cached(
                            "UPDATE queue_items SET queue=?2, state='ready', last_error=?3 WHERE id=?1",
                        )?
                        .execute(params![
                            item,
                            QUEUE_POISON,
                            format!("from {queue} after {n} worker failures: {error}")
                        ])?;
                        poisoned += 1;
                    }
                }
            }
            Ok(poisoned)
        })
    }

    pub(super) fn items_retry_now_impl(&self, ids: &[String]) -> Result<RetryReport> {
        let items: Vec<i64> = ids
            .iter()
            .filter_map(|id| id.trim().strip_prefix('q')?.parse().ok())
            .collect();
        self.write(move |c| retry_now(c, &items, now()))
    }

    pub(super) fn queue_retry_now_impl(&self, queues: &[String]) -> Result<RetryReport> {
        let queues = queues.to_vec();
        self.write(move |c| {
            let mut stmt = c.prepare_cached("SELECT id FROM queue_items WHERE queue=?1")?;
            let mut report = RetryReport::default();
            for q in &queues {
                let items: Vec<i64> = stmt
                    .query_map([q], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                let r = retry_now(c, &items, now())?;
                report.due += r.due;
                report.frozen += r.frozen;
            }
            Ok(report)
        })
    }

    /// Freezes or thaws single queue items (`q<n>` ids). A thawed item is due at once.
    /// Returns how many changed state.
    pub(super) fn items_set_frozen_impl(&self, ids: &[String], frozen: bool) -> Result<u64> {
        let items: Vec<i64> = ids
            .iter()
            .filter_map(|id| id.trim().strip_prefix('q')?.parse().ok())
            .collect();
        self.write(move |c| {
            let mut stmt = if frozen {
                c.prepare_cached("UPDATE queue_items SET state='frozen' WHERE id=?1 AND state!='frozen'")?
            } else {
                c.prepare_cached(
                    "UPDATE queue_items SET state='ready', next_attempt=?2 WHERE id=?1 AND state='frozen'",
                )?
            };
            let mut changed = 0;
            for item in items {
                changed += if frozen {
                    stmt.execute([item])?
                } else {
                    stmt.execute(params![item, now()])?
                } as u64;
            }
            Ok(changed)
        })
    }
}

/// Makes the `ready`/`retry` items among `items` due at `now`; counts the frozen ones.
pub(super) fn retry_now(c: &Connection, items: &[i64], now: i64) -> Result<RetryReport> {
    let mut due = c.prepare_cached(
        "UPDATE queue_items SET next_attempt=?2 WHERE id=?1 AND state IN ('ready','retry')",
    )?;
    let mut frozen =
        c.prepare_cached("SELECT 1 FROM queue_items WHERE id=?1 AND state='frozen'")?;
    let mut report = RetryReport::default();
    for &item in items {
        if due.execute(params![item, now])? > 0 {
            report.due += 1;
        } else if frozen.exists([item])? {
            report.frozen += 1;
        }
    }
    Ok(report)
}

/// The message row of a queue item still in a remote queue (frozen or not: an attempt
/// that was under way when an admin froze the item is still recorded).
fn still_queued(c: &Connection, item: i64) -> Result<Option<i64>> {
    Ok(c.prepare_cached(&format!(
        "SELECT message FROM queue_items WHERE id=?1 AND {IS_REMOTE}"
    ))?
    .query_row([item], |r| r.get(0))
    .optional()?)
}

/// The message event log's record of one attempt: a row per recipient.
fn attempt_events(
    c: &Connection,
    message: i64,
    o: &AttemptOutcome,
    dsn: Option<&str>,
) -> Result<()> {
    for (kind, rcpt, detail) in attempt_event_rows(o, dsn) {
        super::events::record(c, message, kind, rcpt, &detail)?;
    }
    Ok(())
}

/// One attempt's events (any store's): kind, recipient and detail for each recipient.
pub(crate) fn attempt_event_rows<'a>(
    o: &'a AttemptOutcome,
    dsn: Option<&str>,
) -> Vec<(&'static str, &'a str, String)> {
    use super::events::{BOUNCED, DEFERRED, DELIVERED};
    let to = o
        .remote
        .as_deref()
        .map(|h| format!("to {h}"))
        .unwrap_or_else(|| "to next hop".into());
    let error = o.error.as_deref().unwrap_or("");
    let delivered = o
        .delivered
        .iter()
        .map(|r| (DELIVERED, r.as_str(), to.clone()));
    let deferred = o
        .deferred
        .iter()
        .map(|r| (DEFERRED, r.as_str(), error.to_string()));
    let failed = o.failed.iter().map(|r| {
        let detail = match dsn {
            Some(d) => format!("{error} (DSN {d} to the sender)"),
            None => format!("{error} (no DSN)"),
        };
        (BOUNCED, r.as_str(), detail)
    });
    delivered.chain(deferred).chain(failed).collect()
}
