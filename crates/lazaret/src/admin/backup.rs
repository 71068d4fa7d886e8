//! `POST /api/backups` (an online backup, run as a job with progress in bytes) and
//! `GET /api/backups` (what the backups directory holds). Verify, restore and prune
//! work on the directory alone and are done by the CLI, also with the server down.

use super::jobs::Job;
use super::{Actor, ApiError};
use crate::backup::{create, manifest};
use crate::server::Server;
use axum::extract::State;
use axum::{Extension, Json};
use lazaret_store::AuditEntry;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Where `status` finds the last backup's outcome.
pub const LAST_BACKUP: &str = "backup.last";

/// One backup at a time: two would only compete for the same disk.
static RUNNING: AtomicBool = AtomicBool::new(false);

/// Whether a backup is running on this node (background work that can wait, such as
/// filing outbreak clusters, leaves the writer and the disk to it meanwhile).
pub fn running() -> bool {
    RUNNING.load(Ordering::SeqCst)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    /// Backups directory; default `[backup] dir`.
    #[serde(default)]
    pub to: Option<String>,
    /// Copy everything, not only what the latest backup there lacks.
    #[serde(default)]
    pub full: bool,
}

pub async fn create(
    State(server): State<Arc<Server>>,
    Extension(actor): Extension<Actor>,
    Json(request): Json<BackupRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let job = start(&server, actor, request).await?;
    Ok(Json(serde_json::json!({ "job": job.id, "total": 0 })))
}

/// Starts a backup job (also the first step of `lockdown`).
pub async fn start(
    server: &Arc<Server>,
    actor: Actor,
    request: BackupRequest,
) -> Result<Arc<Job>, ApiError> {
    refuse_shared_store(server)?;
    let dest = destination(server, &request);
    let claim = Claim::take()?;
    let query = dest.display().to_string();
    let runner = server.clone();
    Ok(server
        .jobs
        .start("backup", query, "bytes", 0, move |job| async move {
            let _claim = claim;
            run(runner, job, actor, dest, request.full).await
        }))
}

/// A backup as a step of a longer job (`lockdown`), its progress in `job`.
pub async fn run_in(
    server: &Arc<Server>,
    job: Arc<Job>,
    actor: Actor,
    request: BackupRequest,
) -> Result<serde_json::Value, ApiError> {
    refuse_shared_store(server)?;
    let dest = destination(server, &request);
    let _claim = Claim::take()?;
    run(server.clone(), job, actor, dest, request.full).await
}

/// Why `lazaret backup` does not copy a shared store: the database and the bucket are
/// backed up by their own tools, which see the whole cluster at one moment.
pub const SHARED_STORE_BACKUP: &str = "the PostgreSQL store is backed up with PostgreSQL's \
     tools (pg_dump, or continuous archiving) and the bucket's versioning; see \
     docs/SCALE-OUT.md, \"Backups\"";

/// `lazaret backup create` copies the embedded store's files only.
fn refuse_shared_store(server: &Server) -> Result<(), ApiError> {
    if server.config.store.is_shared() {
        return Err(ApiError::BadRequest(format!(
            "`lazaret backup create` copies the embedded store's files: {SHARED_STORE_BACKUP}"
        )));
    }
    Ok(())
}

fn destination(server: &Server, request: &BackupRequest) -> PathBuf {
    match request.to.as_deref() {
        Some(to) if !to.trim().is_empty() => PathBuf::from(to),
        _ => server.config.backup_dir(),
    }
}

/// The right to run the one backup at a time, given back when dropped.
struct Claim;

impl Claim {
    fn take() -> Result<Claim, ApiError> {
        if RUNNING.swap(true, Ordering::SeqCst) {
            return Err(ApiError::BadRequest(
                "a backup is already running (see `lazaret status`); wait for it to finish".into(),
            ));
        }
        Ok(Claim)
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        RUNNING.store(false, Ordering::SeqCst);
    }
}

async fn audit_start(
    server: &Arc<Server>,
    actor: &Actor,
    dest: &std::path::Path,
    full: bool,
) -> Result<(), ApiError> {
    server
        .audit(AuditEntry {
            actor: actor.0.clone(),
            action: "backup started".into(),
            query: Some(dest.display().to_string()),
            count: None,
            detail: Some(if full { "full" } else { "incremental" }.into()),
        })
        .await?;
    Ok(())
}

struct JobProgress(Arc<Job>);

impl create::Progress for JobProgress {
    fn total(&self, bytes: u64) {
        self.0.total.store(bytes, Ordering::Relaxed);
    }
    fn advance(&self, bytes: u64) {
        self.0.advance(bytes);
    }
}

async fn run(
    server: Arc<Server>,
    job: Arc<Job>,
    actor: Actor,
    dest: PathBuf,
    full: bool,
) -> Result<serde_json::Value, ApiError> {
    let t0 = std::time::Instant::now();
    let s = server.clone();
    let d = dest.clone();
    // Its own thread, niced (zstd's workers inherit it): mail keeps the CPU it needs
    // while a backup runs; a pooled blocking thread must not keep a lowered priority.
    let (done, outcome) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("backup".into())
        .spawn(move || {
            crate::backup::priority::lower_cpu();
            let mail_moving = || s.config.smtp.max_sessions > s.sessions.available_permits();
            let _ = done.send(create::create(
                s.store.as_ref(),
                &s.config,
                &d,
                full,
                &JobProgress(job),
                &mail_moving,
            ));
        });
    // The start is recorded while the snapshot is taken, not before it: the writer may
    // be busy for a while (the clusterer's batch after new mail took 0.3 s from a cold
    // cache), and that wait was a fifth of an incremental backup. Not recorded, the
    // job fails as any unrecorded admin action does, once its thread is done; a backup
    // it made is kept (on a day the store cannot write, a copy is worth having).
    let recorded = audit_start(&server, &actor, &dest, full).await;
    let outcome = match spawned {
        Ok(_) => outcome
            .await
            .map_err(|_| anyhow::anyhow!("the backup thread ended without an answer"))
            .and_then(|r| r),
        Err(e) => Err(anyhow::anyhow!("cannot start the backup thread: {e}")),
    };
    let seconds = t0.elapsed().as_secs_f64();
    if let Err(e) = recorded {
        return Err(match &outcome {
            Ok(m) => ApiError::Internal(format!(
                "backup {} was made in {}, but the audit log could not record it: {e}",
                m.id,
                dest.display()
            )),
            Err(_) => e,
        });
    }
    let (record, audit) = match &outcome {
        Ok(m) => (
            serde_json::json!({
                "ok": true, "id": m.id, "at": m.created, "dir": dest, "full": m.full,
                "total_bytes": m.total_bytes, "stored_bytes": m.stored_bytes, "seconds": seconds,
            }),
            AuditEntry {
                actor: actor.0,
                action: "backup".into(),
                query: Some(dest.display().to_string()),
                count: Some(m.files.len() as u64),
                detail: Some(format!(
                    "{} {}: {} bytes of store, {} bytes written",
                    if m.full { "full" } else { "incremental" },
                    m.id,
                    m.total_bytes,
                    m.stored_bytes
                )),
            },
        ),
        Err(e) => (
            serde_json::json!({
                "ok": false, "at": crate::deliver::now(), "dir": dest, "error": format!("{e:#}"),
            }),
            AuditEntry {
                actor: actor.0,
                action: "backup failed".into(),
                query: Some(dest.display().to_string()),
                count: None,
                detail: Some(format!("{e:#}")),
            },
        ),
    };
    let text = record.to_string();
    // Side by side, so that both go in one group commit.
    let (stored, audited) = tokio::join!(
        server.store_call(move |s| s.set_setting(LAST_BACKUP, &text)),
        server.audit(audit)
    );
    stored?;
    audited?;
    let manifest = outcome.map_err(|e| ApiError::Internal(format!("{e:#}")))?;
    Ok(serde_json::json!({
        "id": manifest.id,
        "dir": dest,
        "full": manifest.full,
        "parent": manifest.parent,
        "files": manifest.files.len(),
        "total_bytes": manifest.total_bytes,
        "stored_bytes": manifest.stored_bytes,
        "seconds": seconds,
    }))
}

pub async fn list(
    State(server): State<Arc<Server>>,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    let dir = server.config.backup_dir();
    let list = tokio::task::spawn_blocking(move || manifest::list(&dir))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(format!("{e:#}")))?;
    Ok(Json(list.iter().map(summary).collect()))
}

/// A backup as `backup list` shows it.
pub fn summary(m: &manifest::Manifest) -> serde_json::Value {
    serde_json::json!({
        "id": m.id,
        "created": m.created,
        "full": m.full,
        "parent": m.parent,
        "files": m.files.len(),
        "total_bytes": m.total_bytes,
        "stored_bytes": m.stored_bytes,
    })
}

/// The last backup's outcome for `status` (None before the first).
pub async fn last(server: &Arc<Server>) -> Option<serde_json::Value> {
    let text = server
        .store_call(|s| s.setting(LAST_BACKUP))
        .await
        .ok()
        .flatten()?;
    serde_json::from_str(&text).ok()
}
