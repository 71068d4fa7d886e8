//! `lazaret import` (mbox files and Maildirs on the server into a user's folders) and
//! `lazaret reindex` (rebuild the search index from the blobs), both as jobs.

use super::jobs::Job;
use super::{Actor, ApiError};
use crate::mailfile::{maildir, mbox};
use crate::server::Server;
use axum::extract::State;
use axum::{Extension, Json};
use lazaret_store::{AuditEntry, ImportMessage};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Messages (or bytes of them) per store transaction.
const BATCH_MESSAGES: usize = 500;
const BATCH_BYTES: usize = 32 << 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    user: String,
    /// Target folder for an mbox file or a Maildir's top level (default INBOX);
    /// Maildir++ subfolders keep their names, under this folder unless it is INBOX.
    #[serde(default)]
    folder: Option<String>,
    /// Absolute paths on the server: mbox files or Maildir directories.
    paths: Vec<PathBuf>,
}

fn total_bytes(path: &Path) -> u64 {
    if path.is_file() {
        return path.metadata().map_or(0, |m| m.len());
    }
    maildir::folders(path)
        .map(|fs| fs.iter().flat_map(|f| &f.files).map(|f| f.size).sum())
        .unwrap_or(0)
}

pub async fn import(
    State(server): State<Arc<Server>>,
    Extension(actor): Extension<Actor>,
    Json(request): Json<ImportRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    for p in &request.paths {
        if !p.is_absolute() {
            return Err(ApiError::BadRequest(format!(
                "{}: give an absolute path",
                p.display()
            )));
        }
        if !(p.is_file() || (p.is_dir() && maildir::is_maildir(p))) {
            return Err(ApiError::BadRequest(format!(
                "{}: not an mbox file or a Maildir (a directory with cur/ and new/)",
                p.display()
            )));
        }
    }
    let user = request.user.trim().to_ascii_lowercase();
    // One lookup: the user list also counts every user's mail (a full pass over the
    // mailboxes per call, which at 1M messages held each import up for a second).
    let known = user.clone();
    if !server.store_call(move |s| s.user_exists(&known)).await? {
        return Err(ApiError::BadRequest(format!(
            "no user {user}; add it first with `lazaret user add {user}`"
        )));
    }
    let folder = request.folder.clone().unwrap_or_else(|| "INBOX".into());
    let paths = request.paths.clone();
    let total: u64 =
        tokio::task::spawn_blocking(move || paths.iter().map(|p| total_bytes(p)).sum())
            .await
            .unwrap_or(0);
    let query = format!(
        "--user {user} --folder {folder:?} {}",
        request
            .paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let runner = server.clone();
    let job = server
        .jobs
        .start("import", query, "bytes", total, move |job| async move {
            let (u, f, paths, j) = (user.clone(), folder.clone(), request.paths, job.clone());
            let store = runner.store.clone();
            let imported =
                tokio::task::spawn_blocking(move || import_all(store.as_ref(), &u, &f, &paths, &j))
                    .await
                    .map_err(|e| ApiError::Internal(e.to_string()))??;
            let _ = runner.mailbox_events.send(user.clone());
            runner
                .audit(AuditEntry {
                    actor: actor.0,
                    action: "import".into(),
                    query: Some(job.query.clone()),
                    count: Some(imported),
                    detail: None,
                })
                .await?;
            Ok(serde_json::json!({ "imported": imported, "user": user }))
        });
    Ok(Json(serde_json::json!({ "job": job.id, "total": total })))
}

/// Where a Maildir++ subfolder goes under the import's target folder.
fn subfolder(target: &str, name: &str) -> String {
    match (target, name) {
        (t, "") => t.to_string(),
        ("INBOX", n) => n.to_string(),
        (t, n) => format!("{t}/{n}"),
    }
}

fn import_all(
    store: &dyn lazaret_store::Store,
    user: &str,
    folder: &str,
    paths: &[PathBuf],
    job: &Job,
) -> Result<u64, ApiError> {
    let io = |p: &Path, e: std::io::Error| ApiError::BadRequest(format!("{}: {e}", p.display()));
    let mut imported = 0;
    let mut batch: Vec<ImportMessage> = Vec::new();
    let mut batch_bytes = 0usize;
    let flush = |target: &str,
                 batch: &mut Vec<ImportMessage>,
                 bytes: &mut usize|
     -> Result<u64, ApiError> {
        if batch.is_empty() {
            return Ok(0);
        }
        let n = store.import(user, target, std::mem::take(batch))?;
        job.advance(*bytes as u64);
        *bytes = 0;
        Ok(n)
    };
    for path in paths {
        if path.is_file() {
            let file = std::fs::File::open(path).map_err(|e| io(path, e))?;
            let mut reader =
                mbox::MboxReader::new(std::io::BufReader::with_capacity(1 << 20, file));
            while let Some(m) = reader.next_message().map_err(|e| io(path, e))? {
                batch_bytes += m.bytes as usize;
                batch.push(ImportMessage {
                    data: m.data,
                    flags: Vec::new(),
                    internal_date: m.date,
                });
                if batch.len() >= BATCH_MESSAGES || batch_bytes >= BATCH_BYTES {
                    imported += flush(folder, &mut batch, &mut batch_bytes)?;
                }
            }
            imported += flush(folder, &mut batch, &mut batch_bytes)?;
            continue;
        }
        for sub in maildir::folders(path).map_err(|e| io(path, e))? {
            let target = subfolder(folder, &sub.name);
            for f in sub.files {
                let data = std::fs::read(&f.path).map_err(|e| io(&f.path, e))?;
                batch_bytes += data.len();
                batch.push(ImportMessage {
                    data: crate::mailfile::to_crlf(&data),
                    flags: f.flags,
                    internal_date: f.date,
                });
                if batch.len() >= BATCH_MESSAGES || batch_bytes >= BATCH_BYTES {
                    imported += flush(&target, &mut batch, &mut batch_bytes)?;
                }
            }
            imported += flush(&target, &mut batch, &mut batch_bytes)?;
        }
    }
    Ok(imported)
}

pub async fn reindex(
    State(server): State<Arc<Server>>,
    Extension(actor): Extension<Actor>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let total = server.store_call(|s| s.message_count()).await?;
    let runner = server.clone();
    let job = server.jobs.start("reindex", String::new(), "messages", total, move |job| async move {
        let store = runner.store.clone();
        let j = job.clone();
        let (indexed, missing, orphans) = tokio::task::spawn_blocking(move || {
            let (mut after, mut indexed, mut missing) = (0i64, 0u64, Vec::new());
            loop {
                let batch = store.reindex_batch(after, BATCH_MESSAGES)?;
                let seen = batch.indexed + batch.missing.len() as u64;
                if seen == 0 {
                    break;
                }
                after = batch.last;
                indexed += batch.indexed;
                missing.extend(batch.missing);
                j.advance(seen);
            }
            let orphans = store.remove_orphan_blobs()?;
            Ok::<_, lazaret_store::StoreError>((indexed, missing, orphans))
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
        runner
            .audit(AuditEntry {
                actor: actor.0,
                action: "reindex".into(),
                query: None,
                count: Some(indexed),
                detail: Some(format!(
                    "{} message(s) without a blob file, {orphans} orphan blob file(s) removed",
                    missing.len()
                )),
            })
            .await?;
        Ok(serde_json::json!({ "indexed": indexed, "missing_blobs": missing, "orphans_removed": orphans }))
    });
    Ok(Json(serde_json::json!({ "job": job.id, "total": total })))
}
