//! Queue administration: list, freeze and thaw (whole queues or single items), retry
//! now, and the outbound switch. All of it is rows in the shared database, so a queue
//! frozen from one node is frozen for every node's claims at once.

use super::cached::Cached;
use super::{pg, PostgresStore, QUEUE_CHANNEL};
use crate::{now, QueueSummary, Result, RetryReport, StoreError, OUTBOUND_DISABLED};
use lazaret_core::state::SYSTEM_QUEUES;
use lazaret_core::QueueState;
use std::collections::BTreeMap;

/// Admin ids of queue items (`q12`) as row ids; others are not queue items.
fn item_ids(ids: &[String]) -> Vec<i64> {
    ids.iter()
        .filter_map(|id| id.trim().strip_prefix('q')?.parse().ok())
        .collect()
}

impl PostgresStore {
    pub fn queue_list(&self) -> Result<Vec<QueueSummary>> {
        self.with_client(|c| async move {
            let empty = QueueSummary::empty;
            let mut queues: BTreeMap<String, QueueSummary> = SYSTEM_QUEUES
                .iter()
                .map(|name| (name.to_string(), empty(name)))
                .collect();
            let rows = c
                .query_cached(
                    "SELECT queue, COUNT(*), COUNT(*) FILTER (WHERE state='ready'),
                            COUNT(*) FILTER (WHERE state='retry'),
                            COUNT(*) FILTER (WHERE state='frozen'),
                            MIN(created), MIN(next_attempt) FILTER (WHERE state<>'frozen')
                     FROM queue_items GROUP BY queue",
                    &[],
                )
                .await?;
            for r in rows {
                let name: String = r.get(0);
                let q = queues.entry(name.clone()).or_insert_with(|| empty(&name));
                q.messages = r.get::<_, i64>(1) as u64;
                q.ready = r.get::<_, i64>(2) as u64;
                q.retry = r.get::<_, i64>(3) as u64;
                q.frozen = r.get::<_, i64>(4) as u64;
                q.oldest = r.get(5);
                q.next_attempt = r.get(6);
            }
            for r in c
                .query_cached("SELECT name, state FROM queues", &[])
                .await?
            {
                let name: String = r.get(0);
                queues
                    .entry(name.clone())
                    .or_insert_with(|| empty(&name))
                    .state = r.get(1);
            }
            if outbound_disabled(&c).await? {
                for q in queues.values_mut() {
                    if !SYSTEM_QUEUES.contains(&q.name.as_str()) {
                        q.held = Some("outbound disabled".into());
                    }
                }
            }
            Ok(queues.into_values().collect())
        })
    }

    pub fn queue_set_state(&self, name: &str, state: QueueState) -> Result<()> {
        let name = name.to_string();
        self.with_client(move |c| async move {
            let known = SYSTEM_QUEUES.contains(&name.as_str())
                || name.starts_with("remote:")
                || name.starts_with("smarthost:")
                || c.query_one_cached(
                    "SELECT EXISTS(SELECT 1 FROM queue_items WHERE queue=$1)
                         OR EXISTS(SELECT 1 FROM queues WHERE name=$1)",
                    &[&name],
                )
                .await?
                .get::<_, bool>(0);
            if !known {
                return Err(StoreError::NotFound(format!(
                    "no queue {name} (see `lazaret queue list`; remote queues are named remote:DOMAIN or smarthost:CONNECTOR)"
                )));
            }
            match state {
                QueueState::Active => {
                    c.execute_cached("DELETE FROM queues WHERE name=$1", &[&name])
                        .await?;
                    // Thawed: its due items are work for every node now.
                    c.execute_cached("SELECT pg_notify($1, $2)", &[&QUEUE_CHANNEL, &name])
                        .await?;
                }
                QueueState::Frozen => {
                    c.execute_cached(
                        "INSERT INTO queues(name, state) VALUES($1, 'frozen')
                         ON CONFLICT(name) DO UPDATE SET state='frozen'",
                        &[&name],
                    )
                    .await?;
                }
            }
            Ok(())
        })
    }

    pub fn set_outbound_disabled(&self, disabled: bool) -> Result<()> {
        self.set_setting(OUTBOUND_DISABLED, if disabled { "1" } else { "0" })
    }

    pub fn outbound_disabled(&self) -> Result<bool> {
        self.with_client(|c| async move { outbound_disabled(&c).await })
    }

    /// Freezes or thaws single queue items; a thawed item is due at once. Returns how
    /// many changed state.
    pub fn items_set_frozen(&self, ids: &[String], frozen: bool) -> Result<u64> {
        let items = item_ids(ids);
        self.with_client(move |c| async move {
            let changed = if frozen {
                c.execute(
                    "UPDATE queue_items SET state='frozen' WHERE id=ANY($1) AND state<>'frozen'",
                    &[&items],
                )
                .await
            } else {
                c.execute(
                    "UPDATE queue_items SET state='ready', next_attempt=$2
                     WHERE id=ANY($1) AND state='frozen'",
                    &[&items, &now()],
                )
                .await
            }
            .map_err(pg)?;
            Ok(changed)
        })
    }

    /// Makes every ready or waiting item of these queues due now; frozen ones stay.
    pub fn queue_retry_now(&self, queues: &[String]) -> Result<RetryReport> {
        let queues = queues.to_vec();
        self.with_client(move |c| async move {
            let row = c
                .query_one_cached(
                    "WITH due AS (
                         UPDATE queue_items SET next_attempt=$2
                         WHERE queue=ANY($1) AND state IN ('ready', 'retry') RETURNING 1)
                     SELECT (SELECT COUNT(*) FROM due),
                            (SELECT COUNT(*) FROM queue_items
                             WHERE queue=ANY($1) AND state='frozen')",
                    &[&queues, &now()],
                )
                .await?;
            for queue in &queues {
                c.execute_cached("SELECT pg_notify($1, $2)", &[&QUEUE_CHANNEL, queue])
                    .await?;
            }
            Ok(RetryReport {
                due: row.get::<_, i64>(0) as u64,
                frozen: row.get::<_, i64>(1) as u64,
            })
        })
    }

    /// Makes these items due now (`q12` ids); frozen ones stay frozen.
    pub fn items_retry_now(&self, ids: &[String]) -> Result<RetryReport> {
        let items = item_ids(ids);
        self.with_client(move |c| async move {
            let rows = c
                .query_cached(
                    "UPDATE queue_items SET next_attempt=$2
                     WHERE id=ANY($1) AND state IN ('ready', 'retry') RETURNING queue",
                    &[&items, &now()],
                )
                .await?;
            let frozen: i64 = c
                .query_one_cached(
                    "SELECT COUNT(*) FROM queue_items WHERE id=ANY($1) AND state='frozen'",
                    &[&items],
                )
                .await?
                .get(0);
            let mut queues: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            queues.sort();
            queues.dedup();
            for queue in &queues {
                c.execute_cached("SELECT pg_notify($1, $2)", &[&QUEUE_CHANNEL, queue])
                    .await?;
            }
            Ok(RetryReport {
                due: rows.len() as u64,
                frozen: frozen as u64,
            })
        })
    }

    /// When the earliest waiting item of these queues is due (none frozen).
    pub fn next_due(&self, queues: &[&str]) -> Result<Option<i64>> {
        let queues: Vec<String> = queues.iter().map(|q| q.to_string()).collect();
        self.with_client(move |c| async move {
            Ok(c.query_one_cached(
                "SELECT MIN(next_attempt) FROM queue_items q
                 WHERE q.queue=ANY($1) AND q.state IN ('ready', 'retry')
                   AND NOT EXISTS (SELECT 1 FROM queues f WHERE f.name=q.queue AND f.state='frozen')",
                &[&queues],
            )
            .await?
            .get(0))
        })
    }

    /// The remote queues with waiting items, and when each is next due (none while
    /// outbound is disabled; frozen queues left out).
    pub fn outbound_queues(&self) -> Result<Vec<(String, i64)>> {
        self.with_client(|c| async move {
            if outbound_disabled(&c).await? {
                return Ok(Vec::new());
            }
            let rows = c
                .query_cached(
                    "SELECT q.queue, MIN(q.next_attempt) FROM queue_items q
                     WHERE q.queue NOT IN ('inbound', 'local', 'poison')
                       AND q.state IN ('ready', 'retry')
                       AND NOT EXISTS (SELECT 1 FROM queues f
                                       WHERE f.name=q.queue AND f.state='frozen')
                     GROUP BY q.queue ORDER BY q.queue",
                    &[],
                )
                .await?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }
}

async fn outbound_disabled(c: &deadpool_postgres::Object) -> Result<bool> {
    Ok(c.query_opt_cached(
        "SELECT 1 FROM settings WHERE key=$1 AND value='1'",
        &[&OUTBOUND_DISABLED],
    )
    .await?
    .is_some())
}
