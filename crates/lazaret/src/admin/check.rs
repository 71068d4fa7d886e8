//! `lazaret check [--deep] [--repair]`: the store's invariants verified while the
//! server runs, as a job (a deep check reads every message).

use super::{Actor, ApiError};
use crate::server::Server;
use axum::extract::State;
use axum::{Extension, Json};
use lazaret_store::AuditEntry;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// Read and hash every message (default: check record headers only).
    #[serde(default)]
    deep: bool,
    /// Repair what can be repaired, then check again.
    #[serde(default)]
    repair: bool,
}

pub async fn check(
    State(server): State<Arc<Server>>,
    Extension(actor): Extension<Actor>,
    Json(request): Json<CheckRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if server.jobs.running("check") {
        return Err(ApiError::Conflict("a check is running already".into()));
    }
    let total = server.store_call(|s| s.message_count()).await?;
    let runner = server.clone();
    let job = server.jobs.start(
        "check",
        String::new(),
        "messages",
        total,
        move |job| async move {
            let store = runner.store.clone();
            let deep = request.deep;
            let repair = request.repair;
            let (found, repaired, after) = tokio::task::spawn_blocking(move || {
                let progress = |n| job.advance(n);
                let found = store.check(deep, &progress)?;
                if !repair || found.faults.iter().all(|f| !f.repairable) {
                    return Ok::<_, lazaret_store::StoreError>((found, None, None));
                }
                let repaired = store.repair()?;
                let after = store.check(deep, &|_| {})?;
                Ok((found, Some(repaired), Some(after)))
            })
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
            if let Some(repaired) = &repaired {
                let changed: u64 = repaired.repaired.iter().map(|(_, n)| n).sum();
                runner
                    .audit(AuditEntry {
                        actor: actor.0,
                        action: "repair".into(),
                        query: None,
                        count: Some(changed),
                        detail: Some(
                            repaired
                                .repaired
                                .iter()
                                .map(|(kind, n)| format!("{kind}: {n}"))
                                .collect::<Vec<_>>()
                                .join(", "),
                        ),
                    })
                    .await?;
            }
            Ok(serde_json::json!({ "found": found, "repaired": repaired, "after": after }))
        },
    );
    Ok(Json(serde_json::json!({ "job": job.id, "total": total })))
}
