//! Read-only views of messages in queues and mailboxes (the full `find` comes later).

use super::ApiError;
use crate::server::Server;
use axum::extract::{Path, State};
use axum::Json;
use lazaret_store::{MailboxInfo, MessageSummary};
use std::sync::Arc;

pub async fn in_queue(
    State(server): State<Arc<Server>>,
    Path(name): Path<String>,
) -> Result<Json<Vec<MessageSummary>>, ApiError> {
    Ok(Json(
        server.store_call(move |s| s.queue_messages(&name)).await?,
    ))
}

pub async fn mailboxes(
    State(server): State<Arc<Server>>,
    Path(address): Path<String>,
) -> Result<Json<Vec<MailboxInfo>>, ApiError> {
    Ok(Json(
        server.store_call(move |s| s.mailbox_list(&address)).await?,
    ))
}

pub async fn in_mailbox(
    State(server): State<Arc<Server>>,
    Path((address, mailbox)): Path<(String, String)>,
) -> Result<Json<Vec<MessageSummary>>, ApiError> {
    Ok(Json(
        server
            .store_call(move |s| s.mailbox_messages(&address, &mailbox))
            .await?,
    ))
}

pub async fn raw(
    State(server): State<Arc<Server>>,
    Path(id): Path<String>,
) -> Result<([(&'static str, &'static str); 1], Vec<u8>), ApiError> {
    let data = server.store_call(move |s| s.message_raw(&id)).await?;
    Ok(([("content-type", "message/rfc822")], data))
}
