//! Queue list and queue freeze/thaw.

use super::{Actor, ApiError};
use crate::server::Server;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use lazaret_core::QueueState;
use lazaret_store::{AuditEntry, QueueSummary};
use serde::Deserialize;
use std::sync::Arc;

pub async fn list(State(server): State<Arc<Server>>) -> Result<Json<Vec<QueueSummary>>, ApiError> {
    Ok(Json(super::outbound::queue_list(&server).await?))
}

#[derive(Deserialize)]
pub struct Selection {
    #[serde(default)]
    pub queues: Vec<String>,
    #[serde(default)]
    pub all: bool,
}

/// `POST /api/queues/freeze` or `/api/queues/thaw` with `{"queues": [...]}` or `{"all": true}`.
pub async fn set_state(
    State(server): State<Arc<Server>>,
    Extension(actor): Extension<Actor>,
    Path(action): Path<String>,
    Json(sel): Json<Selection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let state = match action.as_str() {
        "freeze" => QueueState::Frozen,
        "thaw" => QueueState::Active,
        "retry" => return retry(server, actor, sel).await,
        other => {
            return Err(ApiError::BadRequest(format!(
                "unknown action {other:?}: use freeze, thaw or retry"
            )))
        }
    };
    let names = selected(&server, sel).await?;
    // Applied one by one; if one name is wrong, the ones before it are still audited.
    let mut changed = Vec::new();
    let mut failure = None;
    for name in names {
        let n = name.clone();
        match server
            .store_call(move |s| s.queue_set_state(&n, state))
            .await
        {
            Ok(()) => changed.push(name),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    server.queue_wake.notify_one();
    server.outbound_wake.notify_one();
    if !changed.is_empty() {
        server
            .audit(AuditEntry {
                actor: actor.0,
                action: format!("queue {action}"),
                query: Some(changed.join(" ")),
                count: Some(changed.len() as u64),
                detail: None,
            })
            .await?;
    }
    if let Some(e) = failure {
        return Err(e.into());
    }
    Ok(Json(
        serde_json::json!({ "queues": changed, "state": state }),
    ))
}

async fn selected(server: &Arc<Server>, sel: Selection) -> Result<Vec<String>, ApiError> {
    if sel.all != sel.queues.is_empty() {
        return Err(ApiError::BadRequest(
            "name the queues, or say all (not both)".into(),
        ));
    }
    Ok(if sel.all {
        server
            .store_call(|s| s.queue_list())
            .await?
            .into_iter()
            .map(|q| q.name)
            .collect()
    } else {
        sel.queues
    })
}

/// `POST /api/queues/retry`: every ready/retry item of the queues is due at once, as
/// `postqueue -f`; frozen items (and frozen queues) stay as they are.
pub async fn retry(
    server: Arc<Server>,
    actor: Actor,
    sel: Selection,
) -> Result<Json<serde_json::Value>, ApiError> {
    let names = selected(&server, sel).await?;
    let known: Vec<String> = server
        .store_call(|s| s.queue_list())
        .await?
        .into_iter()
        .map(|q| q.name)
        .collect();
    if let Some(unknown) = names.iter().find(|n| !known.contains(n)) {
        return Err(ApiError::Store(lazaret_store::StoreError::NotFound(
            format!("no queue {unknown} (see `lazaret queue list`)"),
        )));
    }
    let list = names.clone();
    let report = server.store_call(move |s| s.queue_retry_now(&list)).await?;
    server.queue_wake.notify_one();
    server.outbound_wake.notify_one();
    server
        .audit(AuditEntry {
            actor: actor.0,
            action: "queue retry".into(),
            query: Some(names.join(" ")),
            count: Some(report.due),
            detail: Some(format!("{} frozen left frozen", report.frozen)),
        })
        .await?;
    Ok(Json(serde_json::json!({
        "queues": names,
        "due": report.due,
        "frozen": report.frozen,
    })))
}
