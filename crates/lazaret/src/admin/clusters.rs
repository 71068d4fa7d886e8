//! `GET /api/clusters`, `GET /api/clusters/{id}`, `POST /api/clusters/{id}/allow|unallow`:
//! outbreak clusters of near-identical mail, for `lazaret clusters` and the console.

use super::find::{ago, places};
use super::{Actor, ApiError};
use crate::server::Server;
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use lazaret_store::{AuditEntry, ClusterQuery, ClusterSummary, StoreError};
use serde::Deserialize;
use std::sync::Arc;

/// Clusters listed when the request does not say.
const DEFAULT_LIMIT: usize = 20;
/// Members a cluster needs to be listed when the request does not say: two copies
/// are a coincidence more often than an outbreak.
const DEFAULT_MIN: u64 = 3;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListQuery {
    /// Seen within this long (`2h`, `7d`).
    pub since: Option<String>,
    /// queues | mailboxes | quarantine | all (comma-separated also).
    #[serde(rename = "in")]
    pub places: Option<String>,
    pub min: Option<u64>,
    pub limit: Option<usize>,
    /// size (biggest first, the default) | growth (most new members in the last hour).
    pub sort: Option<String>,
}

pub async fn list(
    State(server): State<Arc<Server>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<ClusterSummary>>, ApiError> {
    let query = ClusterQuery {
        since: ago("since", q.since.as_deref())?,
        places: match q.places.as_deref() {
            None => Vec::new(),
            spec => places(spec)?,
        },
        min: q.min.unwrap_or(DEFAULT_MIN),
        limit: q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, 1000),
        by_growth: match q.sort.as_deref() {
            None | Some("size") => false,
            Some("growth") => true,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "sort={other:?}: use size or growth"
                )))
            }
        },
    };
    Ok(Json(server.store_call(move |s| s.clusters(&query)).await?))
}

pub async fn show(
    State(server): State<Arc<Server>>,
    Path(id): Path<i64>,
) -> Result<Json<ClusterSummary>, ApiError> {
    match server.store_call(move |s| s.cluster(id)).await? {
        Some(c) => Ok(Json(c)),
        None => Err(no_such(id)),
    }
}

/// `allow` marks a cluster as known mail (a newsletter): it is never held, and copies
/// a hold froze go on; `unallow` takes that back.
pub async fn allow(
    State(server): State<Arc<Server>>,
    Extension(actor): Extension<Actor>,
    Path((id, action)): Path<(i64, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let allowed = match action.as_str() {
        "allow" => true,
        "unallow" => false,
        other => {
            return Err(ApiError::BadRequest(format!(
                "{other:?}: use allow or unallow"
            )))
        }
    };
    let Some(released) = server
        .store_call(move |s| s.cluster_allow(id, allowed))
        .await?
    else {
        return Err(no_such(id));
    };
    if released > 0 {
        server.queue_wake.notify_one();
    }
    server
        .audit(AuditEntry {
            actor: actor.0,
            action: format!("clusters {action}"),
            query: Some(format!("cluster {id}")),
            count: Some(released),
            detail: (released > 0).then(|| format!("{released} held cop(ies) let go")),
        })
        .await?;
    Ok(Json(
        serde_json::json!({ "id": id, "allowed": allowed, "released": released }),
    ))
}

fn no_such(id: i64) -> ApiError {
    ApiError::Store(StoreError::NotFound(format!(
        "no cluster {id} (see `lazaret clusters`)"
    )))
}
