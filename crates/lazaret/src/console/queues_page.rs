//! `/queues`: every queue with its counts per state; freeze, thaw, retry now — one
//! queue or all; a queue's messages.

use super::layout::{self, age, bytes, text, time};
use super::{see_other, Admin, Console, PageResult};
use crate::admin;
use crate::cli::client::segment;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::{Extension, Form, Json};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

/// The queue table; `actions` adds freeze/thaw/retry buttons per row.
pub fn table(admin: &Admin, queues: &[Value], actions: bool) -> Markup {
    html! {
        @if queues.is_empty() {
            p { "No queue holds mail." }
        } @else {
            table {
                thead { tr {
                    th scope="col" { "Queue" } th scope="col" { "State" }
                    th scope="col" class="num" { "Messages" } th scope="col" class="num" { "Ready" }
                    th scope="col" class="num" { "Retry" } th scope="col" class="num" { "Frozen" }
                    th scope="col" { "Oldest" } th scope="col" { "Next attempt" }
                    @if actions { th scope="col" { "Actions" } }
                } }
                tbody {
                    @for q in queues {
                        @let name = text(&q["name"]);
                        tr {
                            th scope="row" { a href={ "/queues/" (segment(&name)) "/messages" } { (name) } }
                            td {
                                @if q["state"] == "frozen" { span.off { "frozen" } } @else { (text(&q["state"])) }
                                @if let Some(held) = q["held"].as_str() { br; small { "held: " (held) } }
                            }
                            td.num { (q["messages"]) } td.num { (q["ready"]) }
                            td.num { (q["retry"]) } td.num { (q["frozen"]) }
                            td { (age(q["oldest"].as_i64())) }
                            td { (time(q["next_attempt"].as_i64())) }
                            @if actions {
                                td.actions {
                                    @if q["state"] == "frozen" {
                                        (layout::button(admin, "/queues/thaw", "Thaw", &[("queue", &name)]))
                                    } @else {
                                        (layout::button(admin, "/queues/freeze", "Freeze", &[("queue", &name)]))
                                    }
                                    (layout::button(admin, "/queues/retry", "Retry now", &[("queue", &name)]))
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub async fn list(State(console): State<Arc<Console>>, admin: Admin) -> PageResult {
    let Json(queues) = admin::queues::list(State(console.server.clone())).await?;
    let queues: Vec<Value> = queues
        .iter()
        .filter_map(|q| serde_json::to_value(q).ok())
        .collect();
    let body = html! {
        p.bulk {
            (layout::button(&admin, "/queues/freeze", "Freeze all queues", &[("all", "true")]))
            (layout::button(&admin, "/queues/thaw", "Thaw all queues", &[("all", "true")]))
            (layout::button(&admin, "/queues/retry", "Retry all now", &[("all", "true")]))
        }
        (table(&admin, &queues, true))
    };
    Ok(layout::page("Queues", "/queues", &admin, body).into_response())
}

#[derive(Deserialize)]
pub struct QueueForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    queue: Option<String>,
    #[serde(default)]
    all: Option<String>,
}

pub async fn act(
    State(console): State<Arc<Console>>,
    admin: Admin,
    headers: HeaderMap,
    Path(action): Path<String>,
    Form(form): Form<QueueForm>,
) -> PageResult {
    admin.check_post(&headers, &form.csrf)?;
    let all = form.all.as_deref() == Some("true");
    let selection = admin::queues::Selection {
        queues: form.queue.into_iter().collect(),
        all,
    };
    let Json(r) = admin::queues::set_state(
        State(console.server.clone()),
        Extension(admin.actor()),
        Path(action.clone()),
        Json(selection),
    )
    .await?;
    let what = match action.as_str() {
        "freeze" => "Frozen",
        "thaw" => "Thawed",
        _ => "Made due now",
    };
    console
        .sessions
        .notice(&admin, format!("{what}: {}", summary(&r)));
    see_other("/queues")
}

/// What a freeze/thaw/retry reply says, in a line.
fn summary(r: &Value) -> String {
    let names: Vec<String> = r["queues"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    let mut line = if names.is_empty() {
        "no queue".to_string()
    } else {
        names.join(", ")
    };
    if let Some(due) = r["due"].as_u64() {
        line.push_str(&format!(
            " ({due} message(s) due now, {} frozen left alone)",
            r["frozen"]
        ));
    }
    line
}

pub async fn messages(
    State(console): State<Arc<Console>>,
    admin: Admin,
    Path(name): Path<String>,
) -> PageResult {
    let Json(list) =
        admin::messages::in_queue(State(console.server.clone()), Path(name.clone())).await?;
    let body = html! {
        p { a href="/queues" { "All queues" } " · " (list.len()) " message(s)" }
        table {
            thead { tr {
                th scope="col" { "Id" } th scope="col" { "From" } th scope="col" { "To" }
                th scope="col" { "Subject" } th scope="col" class="num" { "Size" }
                th scope="col" { "State" } th scope="col" class="num" { "Attempts" }
                th scope="col" { "Next attempt" } th scope="col" { "Last error" }
            } }
            tbody {
                @for m in &list {
                    tr {
                        td { a href={ "/messages/" (m.id) } { (m.id) } }
                        td { (m.from) } td { (m.to.join(", ")) } td { (m.subject) }
                        td.num { (bytes(m.size)) } td { (m.state) }
                        td.num { (m.attempts.unwrap_or(0)) }
                        td { (time(m.next_attempt)) }
                        td { (m.last_error.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
    };
    Ok(layout::page(&format!("Queue {name}"), "/queues", &admin, body).into_response())
}
