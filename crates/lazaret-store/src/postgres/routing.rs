//! Routing: `inbound` items (scanned, when the scanner is on) move to the queues of
//! their next hops. The copy for local users goes straight into their INBOX folders
//! while queue `local` is not frozen, as in the embedded store: one commit, not two.
//!
//! Items are taken with `FOR UPDATE SKIP LOCKED`, so nodes routing at the same time
//! take different items. Copies of a fast-growing outbreak cluster (`[outbreak]
//! hold_growth`) stay frozen in `inbound`, decided under the clusters' filing lock.

use super::cached::Cached;
use super::clusters::{holds, lock_filing};
use super::local::{notify_users, Inboxes};
use super::{add_recipients, pg, record_events, Event, PostgresStore, QUEUE_CHANNEL};
use crate::embedded::clusters::held_error;
use crate::embedded::events::{DEFERRED, HELD, QUEUED};
use crate::embedded::queues::no_such_user;
use crate::{now, Result, RouteReport};
use lazaret_core::state::{QUEUE_INBOUND, QUEUE_LOCAL};
use std::collections::BTreeMap;

impl PostgresStore {
    /// Routes up to `limit` due `inbound` items; `next_hop` names the queue for a
    /// recipient. `require_scan`: leave messages the scanner has not stamped yet.
    pub fn route_inbound(
        &self,
        limit: usize,
        require_scan: bool,
        next_hop: &dyn Fn(&str) -> String,
        retry_delay_secs: i64,
    ) -> Result<RouteReport> {
        // The next hops are worked out here: `next_hop` is the caller's and cannot go
        // to the client's runtime. Items another node is routing now (locked) are left
        // out, so nodes read different batches rather than all the oldest one; items
        // another node takes meanwhile are skipped below.
        let due: Vec<(i64, Vec<String>)> = self.with_client(move |c| async move {
            let rows = c
                .query_cached(
                    "SELECT q.id, ARRAY(SELECT address FROM queue_rcpts r WHERE r.item=q.id
                                        ORDER BY address)
                     FROM queue_items q JOIN messages m ON m.id=q.message
                     WHERE q.queue=$1 AND q.state IN ('ready', 'retry') AND q.next_attempt<=$2
                       AND (NOT $4 OR m.scan_version IS NOT NULL)
                       AND NOT EXISTS (SELECT 1 FROM queues WHERE name=$1 AND state='frozen')
                     ORDER BY q.next_attempt, q.id LIMIT $3
                     FOR UPDATE OF q SKIP LOCKED",
                    &[&QUEUE_INBOUND, &now(), &(limit as i64), &require_scan],
                )
                .await?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })?;
        if due.is_empty() {
            return Ok(RouteReport::default());
        }
        let plans: Vec<(i64, BTreeMap<String, Vec<String>>)> = due
            .into_iter()
            .map(|(item, rcpts)| {
                let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for r in rcpts {
                    groups.entry(next_hop(&r)).or_default().push(r);
                }
                (item, groups)
            })
            .collect();
        let hold = self.hold_rule();
        let report = self.with_client(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            let mut report = RouteReport::default();
            let frozen: Vec<String> = tx
                .query_cached(
                    "SELECT name FROM queues WHERE name=ANY($1) AND state='frozen'",
                    &[&vec![QUEUE_INBOUND, QUEUE_LOCAL]],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            if frozen.iter().any(|q| q == QUEUE_INBOUND) {
                return Ok(report);
            }
            let local_open = !frozen.iter().any(|q| q == QUEUE_LOCAL);
            if hold.is_some() {
                // Holds read and start on clusters: not while another node files.
                lock_filing(&tx).await?;
            }
            let items: Vec<i64> = plans.iter().map(|(item, _)| *item).collect();
            // Still in `inbound` and not frozen since they were read, and not taken by
            // another node now.
            let taken: BTreeMap<i64, (i64, i64)> = tx
                .query_cached(
                    "SELECT id, message, created FROM queue_items
                     WHERE id=ANY($1) AND queue=$2 AND state<>'frozen'
                     ORDER BY id FOR UPDATE SKIP LOCKED",
                    &[&items, &QUEUE_INBOUND],
                )
                .await?
                .iter()
                .map(|r| (r.get(0), (r.get(1), r.get(2))))
                .collect();
            let local = plans
                .iter()
                .filter(|(item, _)| local_open && taken.contains_key(item))
                .filter_map(|(_, groups)| groups.get(QUEUE_LOCAL))
                .flatten()
                .cloned();
            let mut inboxes = Inboxes::lock(&tx, local.collect()).await?;
            let t = now();
            let mut queues_with_work = Vec::new();
            // Written set-wise after the loop, in the order they happened.
            let mut events = Vec::new();
            let mut routed = Vec::new();
            for (item, groups) in plans {
                let Some(&(message, created)) = taken.get(&item) else {
                    continue;
                };
                if let Some(rule) = &hold {
                    if let Some(cluster) =
                        holds(&tx, item, message, rule, t, &mut report.holds).await?
                    {
                        // Never delivered, never bounced: frozen where it is until the
                        // admin thaws, quarantines or allows the cluster.
                        let why = held_error(cluster);
                        tx.execute_cached(
                            "UPDATE queue_items SET state='frozen', last_error=$2 WHERE id=$1",
                            &[&item, &why],
                        )
                        .await?;
                        events.push(Event::new(message, HELD, "", why));
                        report.held += 1;
                        continue;
                    }
                }
                for (queue, rcpts) in groups {
                    let (state, next_attempt, attempts, error, rcpts) = if queue == QUEUE_LOCAL
                        && local_open
                    {
                        let missing =
                            inboxes.file(message, &rcpts, &mut events, &mut report.local.users);
                        if missing.is_empty() {
                            report.local.delivered += 1;
                            continue;
                        }
                        report.local.deferred += 1;
                        let error = no_such_user(&missing);
                        events.push(Event::new(
                            message,
                            DEFERRED,
                            missing.join(", "),
                            error.clone(),
                        ));
                        ("retry", t + retry_delay_secs, 1, Some(error), missing)
                    } else {
                        if queue != QUEUE_LOCAL {
                            report.to_remote += 1;
                        }
                        events.push(Event::new(message, QUEUED, rcpts.join(", "), queue.clone()));
                        if !queues_with_work.contains(&queue) {
                            queues_with_work.push(queue.clone());
                        }
                        ("ready", t, 0, None, rcpts)
                    };
                    let new_item: i64 = tx
                        .query_one_cached(
                            "INSERT INTO queue_items(message, queue, state, next_attempt, created,
                                 attempts, last_error)
                             VALUES($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                            &[
                                &message,
                                &queue,
                                &state,
                                &next_attempt,
                                &created,
                                &attempts,
                                &error,
                            ],
                        )
                        .await?
                        .get(0);
                    add_recipients(&tx, new_item, &rcpts).await?;
                }
                routed.push(item);
                report.routed += 1;
            }
            inboxes.write(&tx, t).await?;
            record_events(&tx, t, &events).await?;
            tx.execute_cached("DELETE FROM queue_items WHERE id=ANY($1)", &[&routed])
                .await?;
            notify_users(&tx, &report.local.users).await?;
            for queue in &queues_with_work {
                tx.execute_cached("SELECT pg_notify($1, $2)", &[&QUEUE_CHANNEL, queue])
                    .await?;
            }
            super::commit(tx).await?;
            Ok(report)
        })?;
        if !report.local.users.is_empty() {
            self.folders_changed();
        }
        Ok(report)
    }
}
