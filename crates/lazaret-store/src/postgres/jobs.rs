//! Bulk admin jobs that outlive their node. The node that starts one records what it
//! is to do and how far it got after each batch; a node that finds a running job
//! whose node is gone — silent for three heartbeats, or started again since it took
//! the job (its jobs died with the old process; the node itself may take it back) —
//! takes it over and goes on from there. The node's heartbeat is the lease: no second timer to renew.
//!
//! At least once, per batch: a batch committed just before its node died and not yet
//! counted is done again, which the actions take as "already done" (skipped).

use super::{nodes::HEARTBEAT_SECONDS, pg, PostgresStore};
use crate::{now, Result, SharedJob};

impl PostgresStore {
    pub(super) fn job_start(&self, action: &str, spec: &str) -> Result<Option<i64>> {
        let (action, spec, node) = (action.to_string(), spec.to_string(), self.node.clone());
        self.with_client(move |c| async move {
            let t = now();
            let row = c
                .query_one(
                    "INSERT INTO admin_jobs(action, spec, node, claimed, started)
                     VALUES($1, $2, $3, $4, $4) RETURNING id",
                    &[&action, &spec, &node, &t],
                )
                .await
                .map_err(pg)?;
            Ok(Some(row.get(0)))
        })
    }

    pub(super) fn job_progress(&self, id: i64, done: u64) -> Result<()> {
        let node = self.node.clone();
        self.with_client(move |c| async move {
            // Only while this node still holds it: a node that was taken for gone and
            // came back must not move the count of the one that took over.
            c.execute(
                "UPDATE admin_jobs SET done = GREATEST(done, $2) WHERE id = $1 AND node = $3",
                &[&id, &(done as i64), &node],
            )
            .await
            .map_err(pg)?;
            Ok(())
        })
    }

    pub(super) fn job_end(&self, id: i64, ok: bool) -> Result<()> {
        let node = self.node.clone();
        let state = if ok { "done" } else { "failed" };
        self.with_client(move |c| async move {
            c.execute(
                "UPDATE admin_jobs SET state = $2, finished = $3
                 WHERE id = $1 AND node = $4 AND state = 'running'",
                &[&id, &state, &now(), &node],
            )
            .await
            .map_err(pg)?;
            Ok(())
        })
    }

    pub(super) fn job_take_orphan(&self) -> Result<Option<SharedJob>> {
        let node = self.node.clone();
        self.with_client(move |c| async move {
            let t = now();
            let row = c
                .query_opt(
                    "WITH orphan AS (
                         SELECT j.id, j.node FROM admin_jobs j
                         LEFT JOIN nodes n ON n.name = j.node
                         WHERE j.state = 'running'
                           AND (n.name IS NULL OR n.heartbeat < $2 OR n.started > j.claimed)
                         ORDER BY j.id LIMIT 1
                         FOR UPDATE OF j SKIP LOCKED)
                     UPDATE admin_jobs j SET node = $1, claimed = $3,
                         handed_over = j.handed_over || orphan.node || ' '
                     FROM orphan WHERE j.id = orphan.id
                     RETURNING j.id, j.action, j.spec, j.done, orphan.node",
                    &[&node, &(t - 3 * HEARTBEAT_SECONDS), &t],
                )
                .await
                .map_err(pg)?;
            Ok(row.map(|r| SharedJob {
                id: r.get(0),
                action: r.get(1),
                spec: r.get(2),
                done: r.get::<_, i64>(3).max(0) as u64,
                from_node: r.get(4),
            }))
        })
    }
}
