//! `lazaret reindex`: rebuilds every message's searchable fields (headers, parts and
//! archive members, text) from its blob, in batches the caller drives for progress,
//! and removes blob files no row points at (left by a crash between the blob's fsync
//! and its commit).

use super::{BlobRef, EmbeddedStore, MessageMetadata};
use crate::Digests;
use crate::Result;
use rusqlite::params;
use std::time::SystemTime;

/// What one batch of reindexing did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReindexBatch {
    /// The last message row id handled: the next batch starts after it.
    pub last: i64,
    pub indexed: u64,
    /// Rows whose blob file is missing (reported, left alone).
    pub missing: Vec<String>,
}

use crate::ORPHAN_MIN_AGE;

impl EmbeddedStore {
    /// How many messages there are to reindex.
    pub fn message_count(&self) -> Result<u64> {
        self.read(|c| {
            Ok(c.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get::<_, i64>(0))? as u64)
        })
    }

    /// Reindexes up to `limit` messages with row ids after `after`.
    pub fn reindex_batch(&self, after: i64, limit: usize) -> Result<ReindexBatch> {
        if after == 0 {
            // The text index is rebuilt by its own thread, from the blobs, meanwhile.
            self.text.reset();
        }
        let rows: Vec<(i64, BlobRef)> = self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, uid, blob_pack, blob_offset, size FROM messages
                 WHERE id>?1 ORDER BY id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after, limit as i64], |r| {
                Ok((r.get(0)?, super::blob_ref_of(r, 1)?))
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })?;
        let mut batch = ReindexBatch {
            last: rows.last().map_or(after, |r| r.0),
            ..ReindexBatch::default()
        };
        let mut extracted = Vec::with_capacity(rows.len());
        for (id, blob) in rows {
            match self.blobs.read(&blob) {
                Ok(data) => {
                    extracted.push((id, MessageMetadata::extract(&data), Digests::of(&data)))
                }
                Err(_) => batch.missing.push(blob.uid),
            }
        }
        batch.indexed = extracted.len() as u64;
        self.write(move |c| {
            for (id, meta, digests) in &extracted {
                c.prepare_cached(
                    "UPDATE messages SET hdr_from=?2, hdr_to=?3, hdr_cc=?4, subject=?5, date=?6,
                       message_id=?7, sha256=?8, md5=?9 WHERE id=?1",
                )?
                .execute(params![
                    id,
                    meta.from,
                    meta.to,
                    meta.cc,
                    meta.subject,
                    meta.date,
                    meta.message_id,
                    digests.sha256,
                    digests.md5
                ])?;
                c.prepare_cached("DELETE FROM parts WHERE message=?1")?
                    .execute([id])?;
                super::insert_parts(c, *id, meta)?;
                // Stores from before clusters: each message is filed into one (a
                // message that has a fingerprint keeps it and its cluster).
                let fingerprint = super::clusters::Fingerprint::of(meta);
                super::clusters::record(c, *id, &fingerprint)?;
            }
            Ok(())
        })?;
        Ok(batch)
    }

    /// Those of these store ids that no message row names.
    fn unknown_blobs(&self, candidates: Vec<String>) -> Result<Vec<String>> {
        self.read(move |c| {
            let mut known = c.prepare_cached("SELECT 1 FROM messages WHERE uid=?1")?;
            let mut out = Vec::new();
            for id in candidates {
                if !known.exists([&id])? {
                    out.push(id);
                }
            }
            Ok(out)
        })
    }

    /// Removes message files of stores from before packs that no message row names and
    /// that are older than an hour (left by a crash between a file's fsync and its
    /// commit), or with `blobs = "s3"` such objects;
    /// returns how many. Unreferenced bytes in packs are compaction's.
    pub fn remove_orphan_blobs(&self) -> Result<u64> {
        let mut removed = 0;
        if let Some(objects) = self.blobs.objects() {
            // An object is written before the rows that name it commit: one younger
            // than an hour may belong to a message still being accepted.
            for chunk in objects.older_than(ORPHAN_MIN_AGE)?.chunks(1000) {
                let candidates = chunk.to_vec();
                let orphans = self.unknown_blobs(candidates)?;
                removed += orphans.len() as u64;
                self.discard_blobs(orphans);
            }
            return Ok(removed);
        }
        for dir in self.blobs.legacy_shards() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut candidates = Vec::new();
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(id) = name.strip_suffix(".eml") else {
                    continue;
                };
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .is_some_and(|age| age >= ORPHAN_MIN_AGE);
                if old {
                    candidates.push(id.to_string());
                }
            }
            let orphans = self.unknown_blobs(candidates)?;
            removed += orphans.len() as u64;
            self.discard_blobs(orphans);
        }
        Ok(removed)
    }
}
