//! Message tracking from the store's message event log: `GET /api/trace` (one
//! message's whole path) and `POST /api/exposure` (who received, read, downloaded or
//! forwarded each copy of a set of messages — after an outbreak, whose machines to
//! check first).

use super::find::FilterArgs;
use super::ApiError;
use crate::server::Server;
use axum::extract::{Query, State};
use axum::Json;
use lazaret_store::{ExposureRow, ExposureScope, MessageTrace, Place, StoreError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceQuery {
    /// The store id (`queued as`, the `message` column of find).
    #[serde(default)]
    pub id: Option<String>,
    /// The Message-ID header, with or without angle brackets.
    #[serde(default)]
    pub message_id: Option<String>,
}

#[derive(Serialize)]
pub struct TraceAnswer {
    pub messages: Vec<MessageTrace>,
}

pub async fn trace(
    State(server): State<Arc<Server>>,
    Query(q): Query<TraceQuery>,
) -> Result<Json<TraceAnswer>, ApiError> {
    let id = q.id.filter(|s| !s.trim().is_empty());
    let mid = q.message_id.filter(|s| !s.trim().is_empty());
    if id.is_none() && mid.is_none() {
        return Err(ApiError::BadRequest(
            "give a message's store id (id) or its Message-ID (message_id)".into(),
        ));
    }
    let what = match (&id, &mid) {
        (Some(i), _) => format!("message {i}"),
        (None, Some(m)) => format!("Message-ID {m}"),
        (None, None) => unreachable!("checked above"),
    };
    let messages = server
        .store_call(move |s| s.trace(id.as_deref(), mid.as_deref()))
        .await?;
    if messages.is_empty() {
        return Err(ApiError::Store(StoreError::NotFound(format!(
            "no {what} in the store or its event log (kept for [log] event_retention)"
        ))));
    }
    Ok(Json(TraceAnswer { messages }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExposureRequest {
    #[serde(default)]
    pub filters: FilterArgs,
}

/// Totals an admin reads first.
#[derive(Serialize, Default)]
pub struct ExposureSummary {
    /// Messages covered.
    pub messages: usize,
    /// Copies (one per recipient).
    pub copies: usize,
    /// Local users who received a copy.
    pub users: usize,
    /// Copies read (\Seen, POP3 RETR), downloaded, forwarded on.
    pub read: usize,
    pub downloaded: usize,
    pub forwarded: usize,
}

#[derive(Serialize)]
pub struct ExposureAnswer {
    pub summary: ExposureSummary,
    pub copies: Vec<ExposureRow>,
}

pub async fn exposure(
    State(server): State<Arc<Server>>,
    Json(request): Json<ExposureRequest>,
) -> Result<Json<ExposureAnswer>, ApiError> {
    let args = request.filters;
    if args.is_empty() {
        return Err(ApiError::BadRequest(
            "say which messages: --cluster ID or find's filters (--subject, --attachment…)".into(),
        ));
    }
    let only_cluster = FilterArgs {
        cluster: None,
        ..args.clone()
    }
    .is_empty();
    let scope = match args.cluster {
        // The cluster's own record also covers copies every recipient deleted since.
        Some(cluster) if only_cluster => ExposureScope::Cluster(cluster),
        _ => {
            let filters = args.to_filters()?;
            let places = [Place::Queues, Place::Mailboxes, Place::Quarantine];
            ExposureScope::Places(
                server
                    .store_call(move |s| s.find_ids(&places, &filters))
                    .await?,
            )
        }
    };
    let copies = server.store_call(move |s| s.exposure(&scope)).await?;
    let mut summary = ExposureSummary {
        copies: copies.len(),
        ..Default::default()
    };
    let mut messages = std::collections::HashSet::new();
    let mut users = std::collections::HashSet::new();
    for c in &copies {
        messages.insert(c.message.as_str());
        if c.local {
            users.insert(c.recipient.as_str());
        }
        summary.read += usize::from(c.read.is_some() || c.seen);
        summary.downloaded += usize::from(c.downloaded.is_some());
        summary.forwarded += usize::from(c.forwarded.is_some());
    }
    summary.messages = messages.len();
    summary.users = users.len();
    Ok(Json(ExposureAnswer { summary, copies }))
}
