//! Objects in the bucket that no message row names: left by a node that died between
//! the PUT and the commit. Those older than [`crate::ORPHAN_MIN_AGE`] are deleted
//! (a younger one may belong to an ingest still committing, on any node).

use super::{pg, PostgresStore};
use crate::Result;
use std::time::Duration;

impl PostgresStore {
    /// Deletes the bucket's objects older than `age` that no row names; returns how
    /// many. The server sweeps hourly with `ORPHAN_MIN_AGE`.
    pub fn remove_orphan_objects(&self, age: Duration) -> Result<u64> {
        let objects = self.objects()?;
        let mut removed = 0;
        for chunk in objects.older_than(age)?.chunks(1000) {
            let candidates = chunk.to_vec();
            let orphans: Vec<String> = self.with_client(move |c| async move {
                let rows = c
                    .query(
                        "SELECT u FROM unnest($1::text[]) AS u
                         WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.uid=u)",
                        &[&candidates],
                    )
                    .await
                    .map_err(pg)?;
                Ok(rows.iter().map(|r| r.get(0)).collect())
            })?;
            removed += orphans.len() as u64;
            objects.delete(orphans);
        }
        Ok(removed)
    }
}
