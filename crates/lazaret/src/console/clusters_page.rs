//! `/clusters`: outbreak clusters of near-identical mail, biggest or fastest-growing
//! first, so a worm shows before any signature names it; `/clusters/{id}`: one of them,
//! with the way to its messages (Find, where the bulk actions are) and allow/unallow.

use super::find_page::Fields;
use super::layout::{self, age, time};
use super::{see_other, Admin, Console, PageError, PageResult};
use crate::admin;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::{Extension, Form, Json};
use lazaret_store::ClusterSummary;
use maud::{html, Markup};
use serde::Deserialize;
use std::sync::Arc;

const SHOWN: usize = 50;

pub async fn list(
    State(console): State<Arc<Console>>,
    admin: Admin,
    RawQuery(query): RawQuery,
) -> PageResult {
    let f = Fields::parse(query.unwrap_or_default().as_bytes());
    let min = match f.get("min") {
        None => None,
        Some(m) => Some(m.parse::<u64>().map_err(|_| {
            PageError::Status(
                StatusCode::BAD_REQUEST,
                format!("min={m:?}: give a number of members, e.g. 3"),
            )
        })?),
    };
    let sort = f.get("sort").unwrap_or_else(|| "size".into());
    let request = admin::clusters::ListQuery {
        since: f.get("since"),
        places: None,
        min,
        limit: Some(SHOWN),
        sort: Some(sort.clone()),
    };
    let Json(clusters) =
        admin::clusters::list(State(console.server.clone()), Query(request)).await?;
    let body = html! {
        form.inline method="get" action="/clusters" {
            label for="since" { "Seen within" }
            input #since type="text" name="since" size="6" placeholder="2h" value=(f.get("since").unwrap_or_default());
            label for="min" { "Members at least" }
            input #min type="text" inputmode="numeric" name="min" size="4" placeholder="3" value=(f.get("min").unwrap_or_default());
            label for="sort" { "Order" }
            select #sort name="sort" {
                option value="size" selected[sort == "size"] { "biggest first" }
                option value="growth" selected[sort == "growth"] { "fastest-growing first" }
            }
            button type="submit" { "Show" }
        }
        @if clusters.is_empty() {
            p role="status" { "No cluster matches: no group of near-identical mail that big." }
        } @else {
            p role="status" { (clusters.len()) " cluster(s)" @if clusters.len() == SHOWN { ", the first " (SHOWN) } "." }
            table.results {
                thead { tr {
                    th { "Cluster" } th.num { "Members" } th.num { "Last hour" } th.num { "Senders" }
                    th.num { "Recipients" } th.num { "Queued" } th.num { "In mailboxes" } th.num { "Quarantined" }
                    th { "Age" } th { "Latest subject" } th { "Shared attachments" } th { "Scanner" } th { "State" }
                } }
                tbody {
                    @for c in &clusters {
                        tr {
                            td { a href={ "/clusters/" (c.id) } { (c.id) } }
                            td.num { (c.messages) } td.num { (c.last_hour) } td.num { (c.senders) }
                            td.num { (c.recipients) } td.num { (c.in_queues) } td.num { (c.in_mailboxes) }
                            td.num { (c.in_quarantine) }
                            td { (age(Some(c.first_seen))) }
                            td { (c.subjects.first().map(String::as_str).unwrap_or("")) }
                            td { (attachment_names(c)) }
                            td { (verdicts(c)) }
                            td { (state(c)) }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page("Outbreak clusters", "/clusters", &admin, body).into_response())
}

pub async fn show(
    State(console): State<Arc<Console>>,
    admin: Admin,
    Path(id): Path<i64>,
) -> PageResult {
    let Json(c) = admin::clusters::show(State(console.server.clone()), Path(id)).await?;
    let body = html! {
        p.lede { (state(&c)) }
        p {
            a href={ "/find?in=all&cluster=" (c.id) } { "Its messages in Find" }
            " — quarantine, delete without bounces or freeze them there, after a confirmation."
        }
        dl.facts {
            dt { "Members" } dd { (c.messages) " (" (c.last_hour) " in the last hour)" }
            dt { "Where" } dd { (c.in_queues) " queued · " (c.in_mailboxes) " in mailboxes · " (c.in_quarantine) " quarantined" }
            dt { "Senders" } dd { (c.senders) }
            dt { "Recipients" } dd { (c.recipients) }
            dt { "First seen" } dd { (time(Some(c.first_seen))) }
            dt { "Last seen" } dd { (time(Some(c.last_seen))) }
            dt { "Scanner" } dd { (verdicts(&c)) }
            @if !c.queues.is_empty() { dt { "Queues" } dd { (c.queues.join(", ")) } }
            @if !c.mailboxes.is_empty() { dt { "Mailboxes" } dd { (c.mailboxes.join(", ")) } }
        }
        @if !c.subjects.is_empty() {
            h2 { "Subjects" }
            ul { @for s in &c.subjects { li { (s) } } }
        }
        @if !c.attachments.is_empty() {
            h2 { "Shared attachments" }
            table.results {
                thead { tr { th { "Name" } th.num { "Members" } th { "SHA-256 (finds every copy)" } } }
                tbody { @for a in &c.attachments { tr {
                    td { (a.name.as_deref().unwrap_or("(no name)")) }
                    td.num { (a.messages) }
                    td { a href={ "/find?in=all&sha256=" (a.sha256) } { code { (a.sha256) } } }
                } } }
            }
        }
        h2 { "Known mail?" }
        @if c.allowed {
            p { "Marked as known mail: never held." }
            (layout::button(&admin, &format!("/clusters/{}/unallow", c.id), "Unallow (treat as a possible outbreak again)", &[]))
        } @else {
            p { "A newsletter or other wanted bulk mail can be marked as known: it is never held, and copies a hold froze go on." }
            (layout::button(&admin, &format!("/clusters/{}/allow", c.id), "Allow as known mail", &[]))
        }
    };
    Ok(layout::page(&format!("Cluster {id}"), "/clusters", &admin, body).into_response())
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn allow(
    State(console): State<Arc<Console>>,
    admin: Admin,
    headers: HeaderMap,
    Path((id, action)): Path<(i64, String)>,
    Form(form): Form<CsrfForm>,
) -> PageResult {
    admin.check_post(&headers, &form.csrf)?;
    let Json(r) = admin::clusters::allow(
        State(console.server.clone()),
        Extension(admin.actor()),
        Path((id, action)),
    )
    .await?;
    let released = r["released"].as_u64().unwrap_or(0);
    let what = if r["allowed"] == true {
        "allowed as known mail"
    } else {
        "no longer allowed"
    };
    console.sessions.notice(
        &admin,
        format!("Cluster {id} {what}; {released} held cop(ies) let go"),
    );
    see_other(&format!("/clusters/{id}"))
}

fn attachment_names(c: &ClusterSummary) -> String {
    c.attachments
        .iter()
        .map(|a| {
            format!(
                "{} ({})",
                a.name.as_deref().unwrap_or("(no name)"),
                a.messages
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn verdicts(c: &ClusterSummary) -> String {
    if c.verdicts.is_empty() {
        return "-".into();
    }
    c.verdicts
        .iter()
        .map(|(v, n)| format!("{v} × {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn state(c: &ClusterSummary) -> Markup {
    html! {
        @if let Some(since) = c.held_since {
            span.off { "HELD" } " since " (time(Some(since))) ": " (c.held_copies) " cop(ies) frozen in inbound"
        } @else if c.allowed {
            span.on { "allowed" } " (known mail)"
        } @else {
            "watching"
        }
    }
}
