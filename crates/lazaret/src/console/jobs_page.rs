//! `/jobs/{id}`: a bulk action's progress. The page reloads itself every second while
//! the job runs (a `<meta>` refresh: no script needed) and shows the report at the end.

use super::layout::{self, text};
use super::{Admin, Console, PageResult};
use crate::admin;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse};
use axum::Json;
use maud::html;
use std::sync::Arc;

/// After a POST that started a job (the API answers `{"job": id}`): to its page.
pub fn follow(started: &serde_json::Value) -> PageResult {
    super::see_other(&format!("/jobs/{}", started["job"].as_u64().unwrap_or(0)))
}

pub async fn show(
    State(console): State<Arc<Console>>,
    admin: Admin,
    Path(id): Path<u64>,
) -> PageResult {
    let Json(job) = admin::jobs::show(State(console.server.clone()), Path(id)).await?;
    let job = serde_json::to_value(&job).unwrap_or_default();
    let running = job["state"] == "running";
    let (done, total) = (
        job["done"].as_u64().unwrap_or(0),
        job["total"].as_u64().unwrap_or(0),
    );
    let body = html! {
        p { strong { (text(&job["action"])) } " " (text(&job["query"])) }
        p role="status" {
            label for="progress" { (text(&job["state"])) ": " (done) " of " (total) " " (text(&job["unit"])) }
            " " progress #progress max=(total.max(1)) value=(done) {}
        }
        @if let Some(e) = job["error"].as_str() { p.error role="alert" { "Failed: " (e) } }
        @if let Some(steps) = job["report"]["steps"].as_array() {
            // `lockdown` and `recover`: each step as the CLI prints it.
            table {
                thead { tr { th { "Step" } th { "Outcome" } th.num { "Seconds" } th { "Result" } } }
                tbody {
                    @for step in steps {
                        tr {
                            td { (text(&step["step"])) }
                            td { (if step["ok"] == true { "ok" } else { "FAILED" }) }
                            td.num { (format!("{:.2}", step["seconds"].as_f64().unwrap_or(0.0))) }
                            td { (text(&step["result"])) }
                        }
                    }
                }
            }
        }
        @if let Some(r) = job["report"].as_object() {
            dl.facts {
                @for (k, v) in r {
                    @if k != "steps" && !(v.is_array() && v.as_array().is_some_and(Vec::is_empty)) {
                        dt { (k) } dd { (if v.is_array() { v.as_array().map(|a| a.iter().map(text).collect::<Vec<_>>().join(", ")).unwrap_or_default() } else { text(v) }) }
                    }
                }
            }
            p { a href="/find" { "Find" } " · " a href="/quarantine" { "Quarantine" } " · " a href="/audit" { "Audit log" } }
        }
    };
    let Html(mut page) = layout::page(&format!("Job {id}"), "/find", &admin, body);
    if running {
        page = page.replacen(
            "<head>",
            "<head><meta http-equiv=\"refresh\" content=\"1\">",
            1,
        );
    }
    Ok(Html(page).into_response())
}
