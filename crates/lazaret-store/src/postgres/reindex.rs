//! `lazaret reindex` on PostgreSQL: every message's searchable fields (headers,
//! digests, parts and archive members, text) rebuilt from its object, in batches the
//! caller drives for progress, as on the embedded store; and the orphan sweep under
//! the name the server calls.

use super::clusters;
use super::ingest::{insert_parts, insert_text};
use super::{pg, PostgresStore};
use crate::embedded::clusters::Fingerprint;
use crate::{Digests, MessageMetadata, ReindexBatch, Result, ORPHAN_MIN_AGE};

impl PostgresStore {
    /// Reindexes up to `limit` messages with row ids after `after`. Objects are read
    /// outside the transaction; a message whose object cannot be read is reported in
    /// `missing` and left alone.
    pub fn reindex_batch(&self, after: i64, limit: usize) -> Result<ReindexBatch> {
        let rows: Vec<(i64, String)> = self.with_client(move |c| async move {
            let rows = c
                .query(
                    "SELECT id, uid FROM messages WHERE id>$1 ORDER BY id LIMIT $2",
                    &[&after, &(limit as i64)],
                )
                .await
                .map_err(pg)?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })?;
        let mut batch = ReindexBatch {
            last: rows.last().map_or(after, |r| r.0),
            ..ReindexBatch::default()
        };
        let objects = self.objects()?;
        let mut extracted = Vec::with_capacity(rows.len());
        let mut data = Vec::new();
        for (id, uid) in rows {
            data.clear();
            match objects.read_into(&uid, &mut data) {
                Ok(_) => extracted.push((id, MessageMetadata::extract(&data), Digests::of(&data))),
                Err(_) => batch.missing.push(uid),
            }
        }
        batch.indexed = extracted.len() as u64;
        self.with_client(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            for (id, meta, digests) in &extracted {
                tx.execute(
                    "UPDATE messages SET hdr_from=$2, hdr_to=$3, hdr_cc=$4, subject=$5, date=$6,
                       message_id=$7, sha256=$8, md5=$9 WHERE id=$1",
                    &[
                        id,
                        &meta.from,
                        &meta.to,
                        &meta.cc,
                        &meta.subject,
                        &meta.date,
                        &meta.message_id,
                        &digests.sha256,
                        &digests.md5,
                    ],
                )
                .await
                .map_err(pg)?;
            }
            let ids: Vec<i64> = extracted.iter().map(|(id, ..)| *id).collect();
            for table in ["parts", "message_text"] {
                let delete = format!("DELETE FROM {table} WHERE message=ANY($1)");
                tx.execute(&delete, &[&ids]).await.map_err(pg)?;
            }
            let metas: Vec<(i64, &MessageMetadata)> =
                extracted.iter().map(|(id, meta, _)| (*id, meta)).collect();
            insert_parts(&tx, &metas).await?;
            insert_text(&tx, &metas).await?;
            // Stores from before clusters: each message is filed into one (a message
            // that has a fingerprint keeps it and its cluster).
            let fingerprints: Vec<Fingerprint> = extracted
                .iter()
                .map(|(_, meta, _)| Fingerprint::of(meta))
                .collect();
            let keyed: Vec<(i64, &Fingerprint)> = ids.iter().copied().zip(&fingerprints).collect();
            clusters::record(&tx, &keyed).await?;
            super::commit(tx).await?;
            Ok(())
        })?;
        Ok(batch)
    }

    /// Deletes objects no row names, older than an hour (a crash between the PUT and
    /// the commit leaves them); returns how many.
    pub fn remove_orphan_blobs(&self) -> Result<u64> {
        self.remove_orphan_objects(ORPHAN_MIN_AGE)
    }
}
