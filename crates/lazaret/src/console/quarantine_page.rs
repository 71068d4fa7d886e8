//! `/quarantine`: what is held, oldest first, with who put it there and why; restore
//! one, the ticked ones, or (through Find) all that match.

use super::find_page::{rows_table, Fields};
use super::layout;
use super::{Admin, Console, PageError, PageResult};
use crate::admin;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use lazaret_store::{Filters, Place};
use maud::html;
use std::sync::Arc;

const SHOWN: usize = 200;

pub async fn list(
    State(console): State<Arc<Console>>,
    admin: Admin,
    RawQuery(query): RawQuery,
) -> PageResult {
    let f = Fields::parse(query.unwrap_or_default().as_bytes());
    let sort = f
        .get("sort")
        .and_then(|s| serde_json::from_value(serde_json::Value::String(s)).ok());
    let found = console
        .server
        .store_call(move |s| {
            s.find(
                &[Place::Quarantine],
                &Filters::default(),
                sort,
                0,
                Some(SHOWN),
            )
        })
        .await
        .map_err(admin::ApiError::from)?;
    let body = html! {
        p {
            @if found.messages.is_empty() { "The quarantine is empty." }
            @else if found.more { "The first " (SHOWN) " of more (oldest first). " a href="/find?in=quarantine" { "Search the quarantine" } " to narrow them down." }
            @else { (found.messages.len()) " message(s). " a href="/find?in=quarantine" { "Search the quarantine" } }
        }
        @if !found.messages.is_empty() {
            form method="post" action="/quarantine/restore" {
                (layout::csrf(&admin))
                p { button type="submit" { "Restore the ticked messages" }
                    " — each goes back where it was taken from (a queue or a mailbox), and is scanned again on its way." }
                (rows_table(None, &found.messages, true))
            }
        }
    };
    Ok(layout::page("Quarantine", "/quarantine", &admin, body).into_response())
}

pub async fn restore(
    State(console): State<Arc<Console>>,
    admin: Admin,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let form = Fields::parse(&body);
    admin.check_post(&headers, &form.get("csrf").unwrap_or_default())?;
    let ids = form.all("ids");
    if ids.is_empty() {
        return Err(PageError::Status(
            StatusCode::BAD_REQUEST,
            "no message is ticked".into(),
        ));
    }
    let request = admin::actions::ActionRequest {
        filters: admin::find::FilterArgs {
            ids: Some(ids),
            ..Default::default()
        },
        places: None,
        ndr: None,
        dry_run: false,
        reason: None,
    };
    let Json(started) = admin::actions::act(
        State(console.server.clone()),
        Extension(admin.actor()),
        Path("restore".into()),
        Json(request),
    )
    .await?;
    super::jobs_page::follow(&started)
}
