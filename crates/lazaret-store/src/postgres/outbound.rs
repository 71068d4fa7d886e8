//! Outbound queue items claimed with a lease, so that several nodes deliver from one
//! queue and never the same item at once.
//!
//! A node takes due items with `FOR UPDATE SKIP LOCKED` (another node's claim in
//! flight is skipped, not waited for) and writes itself and an expiry into them in
//! the same statement, before any delivery starts. An item whose lease is current is
//! skipped by every node; a node that dies simply stops renewing, and its items are
//! due again for the others once their leases lapse. Recording an attempt clears the
//! lease. Delivery is thus at-least-once: an item whose node died after the next hop
//! accepted it, but before the outcome was recorded, is delivered again.
//!
//! The server's workers take items through `outbound_due`, which claims for
//! `OUTBOUND_LEASE` and notes the claim in the node's book: a task renews the leases
//! of every item in the book, so a slow next hop never loses its item to another
//! node while this one lives. Recording an outcome (or a worker failure) takes the
//! item out of the book. An item no worker of this node has in hand any more (not
//! `busy` at the next `outbound_due` of its queue, a minute after its claim), or held
//! longer than `HELD_AT_MOST`, leaves the book unrecorded: its lease lapses and any
//! node may take it again.

use super::cached::Cached;
use super::ingest::insert;
use super::{pg, record_events, Event, PostgresStore, QUEUE_CHANNEL};
use crate::embedded::ingest::Prepared;
use crate::embedded::outbound::{attempt_event_rows, POISON_AFTER};
use crate::{now, AttemptOutcome, QueuedMessage, Result, OUTBOUND_DISABLED};
use lazaret_core::state::{QUEUE_INBOUND, QUEUE_POISON};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a claim through `outbound_due` lasts without renewal: how long the
/// items of a node that died wait before another node delivers them.
pub const OUTBOUND_LEASE: Duration = Duration::from_secs(60);

/// How often the node renews the leases in its book (well within `OUTBOUND_LEASE`,
/// so that a renewal or two may fail without losing a claim).
const RENEW_EVERY: Duration = Duration::from_secs(10);

/// How long the node renews one claim at most: a worker that lost track of an item
/// without recording it (a bug) holds it no longer than this.
const HELD_AT_MOST: Duration = Duration::from_secs(3600);

/// The outbound items this node has claimed and not yet recorded: item → (queue,
/// when claimed).
#[derive(Default, Clone)]
pub(super) struct Claims(Arc<Mutex<HashMap<i64, (String, Instant)>>>);

impl Claims {
    fn book(&self) -> std::sync::MutexGuard<'_, HashMap<i64, (String, Instant)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn forget(&self, items: impl IntoIterator<Item = i64>) {
        let mut book = self.book();
        for item in items {
            book.remove(&item);
        }
    }

    /// The items whose leases are still to be renewed.
    fn renewable(&self) -> Vec<i64> {
        let mut book = self.book();
        book.retain(|_, (_, at)| at.elapsed() < HELD_AT_MOST);
        book.keys().copied().collect()
    }

    fn all(&self) -> Vec<i64> {
        self.book().keys().copied().collect()
    }
}

impl PostgresStore {
    /// Claims up to `limit` due items of `queue` for this node for `lease`; none while
    /// outbound delivery is disabled or the queue is frozen.
    pub fn claim_due(
        &self,
        queue: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<QueuedMessage>> {
        let (queue, node) = (queue.to_string(), self.node.clone());
        self.with_client(move |c| async move {
            let t = now();
            let until = t + lease.as_secs() as i64;
            let rows = c
                .query_cached(
                    "WITH due AS (
                         SELECT q.id FROM queue_items q
                         WHERE q.queue=$1 AND q.state IN ('ready', 'retry') AND q.next_attempt<=$2
                           AND (q.lease_until IS NULL OR q.lease_until<$2)
                           AND NOT EXISTS (SELECT 1 FROM queues WHERE name=$1 AND state='frozen')
                           AND NOT EXISTS (SELECT 1 FROM settings WHERE key=$6 AND value='1')
                         ORDER BY q.next_attempt, q.id
                         LIMIT $3
                         FOR UPDATE SKIP LOCKED)
                     UPDATE queue_items q SET lease_owner=$4, lease_until=$5
                     FROM due, messages m
                     WHERE q.id=due.id AND m.id=q.message
                     RETURNING q.id, m.uid, m.env_from, q.attempts, q.created, m.size,
                               m.verdict IS NOT NULL,
                               ARRAY(SELECT address FROM queue_rcpts r WHERE r.item=q.id
                                     ORDER BY address)",
                    &[
                        &queue,
                        &t,
                        &(limit as i64),
                        &node,
                        &until,
                        &OUTBOUND_DISABLED,
                    ],
                )
                .await?;
            let mut claimed: Vec<QueuedMessage> = rows
                .iter()
                .map(|r| QueuedMessage {
                    item: r.get(0),
                    queue: queue.clone(),
                    message: r.get(1),
                    mail_from: r.get(2),
                    attempts: r.get::<_, i32>(3) as i64,
                    created: r.get(4),
                    size: r.get::<_, i64>(5) as u64,
                    flagged: r.get(6),
                    rcpts: r.get(7),
                })
                .collect();
            // RETURNING gives no order.
            claimed.sort_by_key(|m| m.item);
            Ok(claimed)
        })
    }

    /// Up to `limit` due items of `queue` for one of this node's workers, claimed for
    /// `OUTBOUND_LEASE` and renewed until their outcome is recorded. `busy` names the
    /// items this node's workers are delivering: an older claim of the queue that is
    /// not among them was dropped by its worker and leaves the book. (A claim younger
    /// than a lease may be a batch on its way to its worker, not yet `busy`.)
    pub fn outbound_due(
        &self,
        queue: &str,
        limit: usize,
        busy: &[i64],
    ) -> Result<Vec<QueuedMessage>> {
        self.claims.book().retain(|item, (q, at)| {
            q.as_str() != queue || busy.contains(item) || at.elapsed() < OUTBOUND_LEASE
        });
        let mut claimed = self.claim_due(queue, limit, OUTBOUND_LEASE)?;
        // A lease of ours that lapsed (renewals failing for a minute) lets a busy
        // item be claimed again: it stays with the worker that has it.
        claimed.retain(|m| !busy.contains(&m.item));
        let mut book = self.claims.book();
        let at = Instant::now();
        for m in &claimed {
            book.insert(m.item, (queue.to_string(), at));
        }
        Ok(claimed)
    }

    /// Starts the task that renews the leases in the node's book.
    pub(super) fn renew_claims(&self) -> Result<()> {
        let (pool, node, claims) = (self.pool.clone(), self.node.clone(), self.claims.clone());
        self.bridge.spawn(async move {
            let mut tick = tokio::time::interval(RENEW_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let items = claims.renewable();
                if items.is_empty() {
                    continue;
                }
                // A failed renewal is retried at the next tick; the lease outlasts
                // several.
                if let Ok(c) = pool.get().await {
                    let until = now() + OUTBOUND_LEASE.as_secs() as i64;
                    if let Err(e) = c
                        .execute(
                            "UPDATE queue_items SET lease_until=$1
                             WHERE id=ANY($2) AND lease_owner=$3",
                            &[&until, &items, &node],
                        )
                        .await
                    {
                        tracing::warn!("cannot renew the leases of outbound items: {e}");
                    }
                }
            }
        })
    }

    /// Gives back every claim in the node's book (the server is stopping): other
    /// nodes may deliver the items at once.
    pub fn release_all_claims(&self) -> Result<u64> {
        let items = self.claims.all();
        if items.is_empty() {
            return Ok(0);
        }
        self.release_leases(&items)
    }

    /// Lengthens this node's leases on items it is still delivering (a slow next hop);
    /// returns how many it still held.
    pub fn renew_leases(&self, items: &[i64], lease: Duration) -> Result<u64> {
        let (items, node) = (items.to_vec(), self.node.clone());
        self.with_client(move |c| async move {
            c.execute_cached(
                "UPDATE queue_items SET lease_until=$1 WHERE id=ANY($2) AND lease_owner=$3",
                &[&(now() + lease.as_secs() as i64), &items, &node],
            )
            .await
        })
    }

    /// Gives up this node's claims on these items without an attempt (shutting down):
    /// they are due again for every node at once.
    pub fn release_leases(&self, items: &[i64]) -> Result<u64> {
        self.claims.forget(items.iter().copied());
        let (items, node) = (items.to_vec(), self.node.clone());
        self.with_client(move |c| async move {
            c.execute_cached(
                "UPDATE queue_items SET lease_owner=NULL, lease_until=NULL
                 WHERE id=ANY($1) AND lease_owner=$2",
                &[&items, &node],
            )
            .await
        })
    }

    /// Counts a worker failure (a panic, an unclassified error) against items this
    /// node was delivering, as the embedded store does: the claim is given up so the
    /// item is due again, and one that failed a worker `POISON_AFTER` times moves to
    /// `poison`, where no worker takes it. Returns how many moved.
    pub fn record_worker_failure(&self, items: Vec<i64>, error: String) -> Result<u64> {
        self.claims.forget(items.iter().copied());
        let node = self.node.clone();
        self.with_client(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            let rows = tx
                .query_cached(
                    "UPDATE queue_items SET worker_failures=worker_failures+1, last_error=$2,
                            lease_owner=NULL, lease_until=NULL
                     WHERE id=ANY($1) AND (lease_owner IS NULL OR lease_owner=$3)
                     RETURNING id, worker_failures, queue",
                    &[&items, &error, &node],
                )
                .await?;
            let mut poisoned = 0;
            for r in rows {
                let (item, failures, queue): (i64, i32, String) = (r.get(0), r.get(1), r.get(2));
                if i64::from(failures) >= POISON_AFTER {
                    let why = format!("from {queue} after {failures} worker failures: {error}");
                    tx.execute_cached(
                        "UPDATE queue_items SET queue=$2, state='ready', last_error=$3
                         WHERE id=$1",
                        &[&item, &QUEUE_POISON, &why],
                    )
                    .await?;
                    poisoned += 1;
                }
            }
            super::commit(tx).await?;
            Ok(poisoned)
        })
    }

    /// Applies attempt outcomes in one transaction, as the embedded store does:
    /// delivered and failed recipients leave the queue, deferred ones wait for
    /// `next_attempt`, each DSN is queued in `inbound` with the change that caused it,
    /// and the lease is cleared. An item an admin removed meanwhile is left alone, and
    /// so is its DSN (its object is deleted again).
    pub fn record_attempts(&self, outcomes: Vec<AttemptOutcome>) -> Result<()> {
        self.claims.forget(outcomes.iter().map(|o| o.item));
        let objects = self.objects()?;
        let mut planned = Vec::with_capacity(outcomes.len());
        for mut outcome in outcomes {
            let dsn = match outcome.dsn.take() {
                Some(incoming) => {
                    let mut prepared = Prepared::new(incoming)?;
                    let data = std::mem::take(&mut prepared.incoming.data);
                    objects.put(&prepared.incoming.id, data)?;
                    Some(prepared)
                }
                None => None,
            };
            planned.push((outcome, dsn));
        }
        let dsn_ids: Vec<String> = planned
            .iter()
            .filter_map(|(_, d)| d.as_ref().map(|d| d.incoming.id.clone()))
            .collect();
        let unused = self.with_client(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            let mut unused = Vec::new();
            let mut dsns = false;
            for (o, dsn) in planned {
                // Locked for the rest of the transaction: an admin's remove waits.
                let message: Option<i64> = tx
                    .query_opt_cached(
                        "SELECT message FROM queue_items
                         WHERE id=$1 AND queue NOT IN ('inbound', 'local', 'poison') FOR UPDATE",
                        &[&o.item],
                    )
                    .await?
                    .map(|r| r.get(0));
                let Some(message) = message else {
                    unused.extend(dsn.map(|d| d.incoming.id.clone()));
                    continue;
                };
                let t = now();
                let dsn_id = dsn.as_ref().map(|d| d.incoming.id.as_str());
                let events: Vec<Event> = attempt_event_rows(&o, dsn_id)
                    .into_iter()
                    .map(|(kind, rcpt, detail)| Event::new(message, kind, rcpt, detail))
                    .collect();
                record_events(&tx, t, &events).await?;
                let done: Vec<&String> = o.delivered.iter().chain(&o.failed).collect();
                tx.execute_cached(
                    "DELETE FROM queue_rcpts WHERE item=$1 AND address=ANY($2)",
                    &[&o.item, &done],
                )
                .await?;
                let left: i64 = tx
                    .query_one_cached("SELECT COUNT(*) FROM queue_rcpts WHERE item=$1", &[&o.item])
                    .await?
                    .get(0);
                if left == 0 {
                    tx.execute_cached("DELETE FROM queue_items WHERE id=$1", &[&o.item])
                        .await?;
                    super::release(&tx, &[message]).await?;
                } else {
                    tx.execute_cached(
                        "UPDATE queue_items SET
                             state=CASE WHEN state='frozen' THEN 'frozen' ELSE 'retry' END,
                             attempts=attempts+1, next_attempt=$2, last_error=$3,
                             lease_owner=NULL, lease_until=NULL
                         WHERE id=$1",
                        &[&o.item, &o.next_attempt, &o.error],
                    )
                    .await?;
                }
                if let Some(d) = dsn {
                    insert(&tx, &d).await?;
                    dsns = true;
                }
            }
            if dsns {
                tx.execute_cached(
                    "SELECT pg_notify($1, $2)",
                    &[&QUEUE_CHANNEL, &QUEUE_INBOUND],
                )
                .await?;
            }
            super::commit(tx).await?;
            Ok(unused)
        });
        match unused {
            Ok(unused) => {
                objects.delete(unused);
                Ok(())
            }
            Err(e) => {
                objects.delete(dsn_ids);
                Err(e)
            }
        }
    }
}
