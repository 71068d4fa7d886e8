//! Signatures and rescans: `GET/POST /api/signatures`, `DELETE /api/signatures/{name}`,
//! `POST /api/rescan` (a job).

use super::{Actor, ApiError};
use crate::scan::{rescan, signature_set, Scanner};
use crate::server::Server;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use lazaret_store::AuditEntry;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Serialize)]
pub struct SignatureFileView {
    name: String,
    kind: &'static str,
    signatures: usize,
}

#[derive(Serialize)]
pub struct SignaturesView {
    version: String,
    content_version: String,
    loaded_at: i64,
    /// Signatures loaded, built-in ones (EICAR) included.
    signatures: usize,
    directory: String,
    files: Vec<SignatureFileView>,
    /// Files in the directory that were refused, with file, line and reason.
    rejected: Vec<String>,
    on_ingest: String,
    clamd: Option<ClamdView>,
}

#[derive(Serialize)]
pub struct ClamdView {
    address: String,
    /// "up" or "down"
    state: &'static str,
    /// The daemon's version line when up, the error when down.
    detail: String,
}

/// What `status` and `signatures list` show. Asks clamd for its version (blocking).
pub fn view(scanner: &Scanner, ask_clamd: bool) -> SignaturesView {
    let loaded = scanner.current();
    let clamd = scanner.clamd.as_ref().map(|c| {
        let answer = if ask_clamd {
            c.version().map_err(|e| e.to_string())
        } else {
            match scanner
                .clamd_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
            {
                Some(e) => Err(e),
                None => Ok(String::new()),
            }
        };
        match answer {
            Ok(v) => ClamdView {
                address: c.address.to_string(),
                state: "up",
                detail: v,
            },
            Err(e) => ClamdView {
                address: c.address.to_string(),
                state: "down",
                detail: e,
            },
        }
    });
    SignaturesView {
        version: loaded.engine.version().to_string(),
        content_version: loaded.engine.content_version().to_string(),
        loaded_at: loaded.loaded_at,
        signatures: loaded.engine.signature_count(),
        directory: scanner.dir.display().to_string(),
        files: loaded
            .engine
            .files()
            .iter()
            .map(|f| SignatureFileView {
                name: f.name.clone(),
                kind: f.kind.label(),
                signatures: f.signatures,
            })
            .collect(),
        rejected: loaded.rejected.iter().map(|e| e.to_string()).collect(),
        on_ingest: format!("{:?}", scanner.on_ingest).to_lowercase(),
        clamd,
    }
}

pub async fn list(State(server): State<Arc<Server>>) -> Result<Json<SignaturesView>, ApiError> {
    let s = server.clone();
    tokio::task::spawn_blocking(move || {
        s.scanner.reload_if_changed();
        Json(view(&s.scanner, true))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upload {
    pub name: String,
    pub content: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallRequest {
    pub files: Vec<Upload>,
    /// `add` or `update`, for the audit log.
    #[serde(default)]
    pub action: Option<String>,
}

pub async fn install(
    State(server): State<Arc<Server>>,
    Extension(actor): Extension<Actor>,
    Json(request): Json<InstallRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if request.files.is_empty() {
        return Err(ApiError::BadRequest(
            "no signature files given (.hdb, .hsb, .ndb or .rules)".into(),
        ));
    }
    let action = match request.action.as_deref() {
        None | Some("add") => "signatures add",
        Some("update") => "signatures update",
        Some(other) => return Err(ApiError::BadRequest(format!("unknown action {other:?}"))),
    };
    let names: Vec<String> = request.files.iter().map(|f| f.name.clone()).collect();
    let files: Vec<(String, Vec<u8>)> = request
        .files
        .into_iter()
        .map(|f| (f.name, f.content.into_bytes()))
        .collect();
    let _one_at_a_time = server.scanner.changes.lock().await;
    let s = server.clone();
    let (change, version, count) = tokio::task::spawn_blocking(move || {
        let change = signature_set::install(&s.scanner.dir, &files)?;
        let loaded = s.scanner.reload();
        Ok::<_, Vec<lazaret_scan::signatures::SignatureError>>((
            change,
            loaded.engine.version().to_string(),
            loaded.engine.signature_count(),
        ))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|errors| {
        ApiError::BadRequest(format!(
            "signatures refused, nothing was changed:\n{}",
            errors
                .iter()
                .map(|e| format!("  {e}"))
                .collect::<Vec<_>>()
                .join("\n")
        ))
    })?;
    server
        .audit(AuditEntry {
            actor: actor.0,
            action: action.into(),
            query: Some(names.join(", ")),
            count: Some((change.added.len() + change.replaced.len()) as u64),
            detail: Some(format!("signature set version {version}")),
        })
        .await?;
    Ok(Json(serde_json::json!({
        "added": change.added,
        "replaced": change.replaced,
        "unchanged": change.unchanged,
        "version": version,
        "signatures": count,
    })))
}

pub async fn remove(
    State(server): State<Arc<Server>>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let _one_at_a_time = server.scanner.changes.lock().await;
    let s = server.clone();
    let target = name.clone();
    let (removed, version) = tokio::task::spawn_blocking(move || {
        let removed = signature_set::remove(&s.scanner.dir, &target)?;
        let loaded = s.scanner.reload();
        Ok::<_, String>((removed, loaded.engine.version().to_string()))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| ApiError::Store(lazaret_store::StoreError::NotFound(e)))?;
    server
        .audit(AuditEntry {
            actor: actor.0,
            action: "signatures remove".into(),
            query: Some(name),
            count: Some(removed.signatures.max(removed.files.len()) as u64),
            detail: Some(format!(
                "files removed: {}; signature set version {version}",
                if removed.files.is_empty() {
                    "none".to_string()
                } else {
                    removed.files.join(", ")
                }
            )),
        })
        .await?;
    Ok(Json(serde_json::json!({
        "files": removed.files,
        "signatures": removed.signatures,
        "version": version,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RescanRequest {
    #[serde(default)]
    pub queues: bool,
    #[serde(default)]
    pub mailboxes: bool,
    #[serde(default)]
    pub full: bool,
    /// Only this outbreak cluster's messages.
    #[serde(default)]
    pub cluster: Option<i64>,
}

pub async fn rescan(
    State(server): State<Arc<Server>>,
    Extension(actor): Extension<Actor>,
    Json(request): Json<RescanRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    // Neither flag: both, as `lazaret rescan` promises.
    let both = !request.queues && !request.mailboxes;
    let scope = rescan::Scope {
        queues: request.queues || both,
        mailboxes: request.mailboxes || both,
        cluster: request.cluster,
        full: request.full,
    };
    if let Some(id) = scope.cluster {
        if server.store_call(move |s| s.cluster(id)).await?.is_none() {
            return Err(ApiError::BadRequest(format!(
                "no cluster {id} (see `lazaret clusters`)"
            )));
        }
    }
    let cluster = scope.cluster.map(|id| format!("cluster {id}"));
    let query = [
        scope.queues.then_some("queues"),
        scope.mailboxes.then_some("mailboxes"),
        cluster.as_deref(),
        scope.full.then_some("full"),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ");
    let total = server.store_call(|s| s.message_count()).await?;
    let spec = RescanSpec {
        scope,
        actor: actor.0.clone(),
        query: query.clone(),
    };
    let shared = super::jobs::record_start(&server, "rescan", &spec).await?;
    let runner = server.clone();
    let job = server
        .jobs
        .start("rescan", query.clone(), "messages", total, move |job| {
            run_rescan_recorded(runner, job, actor, scope, query, shared)
        });
    Ok(Json(serde_json::json!({ "job": job.id })))
}

/// A rescan as recorded for another node to finish on a shared store. It starts over
/// there: what was scanned with the current signatures is not read again.
#[derive(serde::Serialize, serde::Deserialize)]
struct RescanSpec {
    scope: rescan::Scope,
    actor: String,
    query: String,
}

/// Finishes a rescan another node started (`jobs::take_over_orphans`).
pub(super) async fn resume_rescan(
    server: &Arc<Server>,
    orphan: lazaret_store::SharedJob,
) -> Result<(), ApiError> {
    let spec: RescanSpec = super::jobs::read_spec(server, &orphan).await?;
    server
        .audit(AuditEntry {
            actor: spec.actor.clone(),
            action: "rescan resumed".into(),
            query: Some(spec.query.clone()),
            count: None,
            detail: Some(format!(
                "node {} went away; finished here",
                orphan.from_node
            )),
        })
        .await?;
    let total = server.store_call(|s| s.message_count()).await?;
    let runner = server.clone();
    let query = format!("{} (resumed from {})", spec.query, orphan.from_node);
    let (id, scope, actor) = (orphan.id, spec.scope, Actor(spec.actor));
    server
        .jobs
        .start("rescan", query.clone(), "messages", total, move |job| {
            run_rescan_recorded(runner, job, actor, scope, query, Some(id))
        });
    Ok(())
}

async fn run_rescan_recorded(
    server: Arc<Server>,
    job: Arc<super::jobs::Job>,
    actor: Actor,
    scope: rescan::Scope,
    query: String,
    shared: Option<i64>,
) -> Result<serde_json::Value, ApiError> {
    let outcome = run_rescan(server.clone(), job, actor, scope, query).await;
    super::jobs::record_end(&server, shared, outcome.is_ok()).await;
    outcome
}

/// A rescan with its progress in `job` (also a step of `recover`).
pub async fn run_rescan(
    server: Arc<Server>,
    job: Arc<super::jobs::Job>,
    actor: Actor,
    scope: rescan::Scope,
    query: String,
) -> Result<serde_json::Value, ApiError> {
    let s = server.clone();
    let j = job.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        s.scanner.reload_if_changed();
        rescan::run(
            s.store.as_ref(),
            &s.scanner,
            &s.config.data_dir,
            scope,
            &|done, total| {
                j.total.store(total, std::sync::atomic::Ordering::Relaxed);
                j.done.store(done, std::sync::atomic::Ordering::Relaxed);
            },
        )
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    job.done.store(
        job.total.load(std::sync::atomic::Ordering::Relaxed),
        std::sync::atomic::Ordering::Relaxed,
    );
    for user in &outcome.users {
        let _ = server.mailbox_events.send(user.clone());
    }
    server
        .audit(AuditEntry {
            actor: actor.0,
            action: "rescan".into(),
            query: Some(query),
            count: Some(outcome.quarantined),
            detail: Some(format!(
                "signature set {}; {} hash signature(s) looked up, {} message(s) read; found: {}",
                outcome.version,
                outcome.hash_signatures_checked,
                outcome.messages_scanned,
                if outcome.signatures.is_empty() {
                    "nothing".to_string()
                } else {
                    outcome.signatures.join(", ")
                }
            )),
        })
        .await?;
    Ok(serde_json::to_value(&outcome).unwrap_or_default())
}
