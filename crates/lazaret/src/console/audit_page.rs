//! `/audit`: who changed what, newest first, filtered by time span and by a word.

use super::find_page::Fields;
use super::layout::{self, time};
use super::{Admin, Console, PageResult};
use crate::admin;
use axum::extract::{Query, RawQuery, State};
use axum::response::IntoResponse;
use axum::Json;
use maud::html;
use std::sync::Arc;

pub async fn show(
    State(console): State<Arc<Console>>,
    admin: Admin,
    RawQuery(query): RawQuery,
) -> PageResult {
    let f = Fields::parse(query.unwrap_or_default().as_bytes());
    let since = f.get("since").unwrap_or_else(|| "7d".into());
    let word = f.get("q").unwrap_or_default().to_lowercase();
    let request: admin::status::AuditQuery =
        serde_json::from_value(serde_json::json!({ "since": since })).unwrap_or_default();
    let Json(mut records) =
        admin::status::audit(State(console.server.clone()), Query(request)).await?;
    records.reverse();
    let records: Vec<_> = records
        .into_iter()
        .filter(|r| {
            word.is_empty()
                || [
                    &r.entry.actor,
                    &r.entry.action,
                    r.entry.query.as_deref().unwrap_or(""),
                    r.entry.detail.as_deref().unwrap_or(""),
                ]
                .iter()
                .any(|t| t.to_lowercase().contains(&word))
        })
        .take(1000)
        .collect();
    let body = html! {
        form.inline method="get" action="/audit" {
            label for="since" { "Since" }
            input #since type="text" name="since" value=(since) size="6";
            label for="q" { "Containing" }
            input #q type="text" name="q" value=(f.get("q").unwrap_or_default());
            button type="submit" { "Show" }
        }
        table {
            thead { tr { th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "Action" }
                         th scope="col" class="num" { "Count" } th scope="col" { "What" } } }
            tbody { @for r in &records {
                tr { td { (time(Some(r.at))) } td { (r.entry.actor) } td { (r.entry.action) }
                     td.num { (r.entry.count.map(|c| c.to_string()).unwrap_or_default()) }
                     td { (r.entry.query.as_deref().unwrap_or("")) @if let Some(d) = &r.entry.detail { " " small { (d) } } } }
            } }
        }
    };
    Ok(layout::page("Audit log", "/audit", &admin, body).into_response())
}
