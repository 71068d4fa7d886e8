//! `/find`: every filter of `lazaret find` as a form (GET, so a search is a link), the
//! results in a table sorted by any column, and actions on the rows ticked or on all
//! that match: quarantine, delete with or without bounces, freeze, thaw, export. An
//! action shows its count and waits for a confirmation before it starts; then its job's
//! progress page.

use super::layout::{self, bytes, time};
use super::{Admin, Console, PageError, PageResult};
use crate::admin::{self, find::FilterArgs};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use lazaret_store::MessageSummary;
use maud::{html, Markup};
use std::sync::Arc;

/// Rows shown at once unless the form asks for more.
const PAGE: usize = 50;
const MAX_ROWS: usize = 1000;
/// An export in the browser is for a sample to look at; the CLI exports any number.
const MAX_EXPORT: usize = 1000;

/// A form's or a query's fields: `ids` repeats, everything else is one value. (axum's
/// `Form` cannot take a repeated key.)
pub struct Fields(Vec<(String, String)>);

impl Fields {
    pub fn parse(text: &[u8]) -> Fields {
        Fields(form_urlencoded::parse(text).into_owned().collect())
    }

    /// A field's value, trimmed; empty counts as absent.
    pub fn get(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_string())
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// (field, label, hint) of each text filter, in the order of `lazaret find --help`.
const FILTERS: [(&str, &str, &str); 14] = [
    ("subject", "Subject contains", "any case"),
    ("subject_re", "Subject matches", "regular expression"),
    ("from", "From", "address, @domain or glob"),
    ("to", "To", "address, @domain or glob"),
    ("body", "Text contains", "words of the body"),
    ("attachment", "Attachment name", "glob, e.g. *.scr"),
    ("sha256", "SHA-256", "of a message or a part"),
    ("signature", "Signature", "name the scanner gave"),
    ("auth", "Auth results", "dmarc=fail, spf=fail,dkim=none"),
    ("queue", "Queue", "remote:example.org"),
    ("mailbox", "Mailbox", "user@domain or user@domain/Folder"),
    ("older_than", "Older than", "2h, 3d"),
    ("newer_than", "Newer than", "30m"),
    ("larger_than", "Larger than", "1MB"),
];

pub fn filter_args(f: &Fields) -> Result<FilterArgs, PageError> {
    let cluster = match f.get("cluster") {
        None => None,
        Some(c) => Some(c.parse::<i64>().map_err(|_| {
            PageError::Status(
                StatusCode::BAD_REQUEST,
                format!("cluster {c:?} is not a number"),
            )
        })?),
    };
    let ids = f.all("ids");
    Ok(FilterArgs {
        subject: f.get("subject"),
        subject_re: f.get("subject_re"),
        from: f.get("from"),
        to: f.get("to"),
        body: f.get("body"),
        attachment: f.get("attachment"),
        sha256: f.get("sha256"),
        signature: f.get("signature"),
        auth: f.get("auth"),
        queue: f.get("queue"),
        mailbox: f.get("mailbox"),
        state: f.get("state"),
        older_than: f.get("older_than"),
        newer_than: f.get("newer_than"),
        larger_than: f.get("larger_than"),
        cluster,
        ids: (!ids.is_empty()).then_some(ids),
    })
}

fn without(f: &Fields, name: &str) -> Fields {
    Fields(f.0.iter().filter(|(k, _)| k != name).cloned().collect())
}

/// The query string of the current search with one field replaced (sort links).
fn with(f: &Fields, name: &str, value: &str) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in &f.0 {
        if k != name && !v.is_empty() {
            out.append_pair(k, v);
        }
    }
    out.append_pair(name, value);
    out.finish()
}

pub async fn show(
    State(console): State<Arc<Console>>,
    admin: Admin,
    RawQuery(query): RawQuery,
) -> PageResult {
    let f = Fields::parse(query.unwrap_or_default().as_bytes());
    let args = filter_args(&f)?;
    let places = f.get("in");
    let sort = f.get("sort");
    let limit = f
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(PAGE)
        .clamp(1, MAX_ROWS);
    let page = f
        .get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let offset = (page - 1).saturating_mul(limit);
    let results = if args.is_empty() {
        None
    } else {
        let request = admin::find::FindRequest {
            filters: args.clone(),
            places: places.clone(),
            // Newest first unless a column was chosen: that order's first page comes
            // from the indexes without sorting every match.
            sort: Some(
                sort.as_deref()
                    .and_then(sort_key)
                    .unwrap_or(lazaret_store::SortKey::Arrival),
            ),
            offset,
            limit: Some(limit),
            ids_only: false,
        };
        match admin::find::find(State(console.server.clone()), Json(request)).await {
            Ok(Json(found)) => Some(Ok(found)),
            Err(e) => Some(Err(e.to_string())),
        }
    };
    let body = html! {
        (form(&f))
        @match &results {
            None => p.hint { "Give at least one filter. Filters are AND-ed, as in " code { "lazaret find" } "." },
            Some(Err(e)) => p.error role="alert" { (e) },
            Some(Ok(found)) => {
                @let rows: Vec<MessageSummary> = serde_json::from_value(found["messages"].clone()).unwrap_or_default();
                @let more = found["more"] == true;
                (results_form(&admin, &f, &rows, more, Paging { page, offset, limit }))
            }
        }
    };
    Ok(layout::page("Find", "/find", &admin, body).into_response())
}

fn sort_key(s: &str) -> Option<lazaret_store::SortKey> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
}

fn form(f: &Fields) -> Markup {
    let place = f.get("in").unwrap_or_default();
    let state = f.get("state").unwrap_or_default();
    html! {
        form.find method="get" action="/find" {
            fieldset {
                legend { "Filters" }
                div.grid {
                    @for (name, label, hint) in FILTERS {
                        div {
                            label for=(name) { (label) }
                            input id=(name) type="text" name=(name) value=(f.get(name).unwrap_or_default()) placeholder=(hint);
                        }
                    }
                    div {
                        label for="cluster" { "Outbreak cluster" }
                        input #cluster type="text" inputmode="numeric" name="cluster" value=(f.get("cluster").unwrap_or_default());
                    }
                    div {
                        label for="state" { "Queue state" }
                        select #state name="state" {
                            @for (v, l) in [("", "any"), ("ready", "ready"), ("retry", "retry"), ("frozen", "frozen")] {
                                option value=(v) selected[state == v] { (l) }
                            }
                        }
                    }
                    div {
                        label for="in" { "Look in" }
                        select #in name="in" {
                            @for (v, l) in [("", "queues and mailboxes"), ("queues", "queues"), ("mailboxes", "mailboxes"), ("quarantine", "quarantine"), ("all", "everywhere")] {
                                option value=(v) selected[place == v] { (l) }
                            }
                        }
                    }
                }
                @if let Some(sort) = f.get("sort") { input type="hidden" name="sort" value=(sort); }
                button type="submit" { "Find" }
            }
        }
    }
}

/// A sortable column header: a link to the same search sorted by it.
fn sort_header(f: &Fields, key: &str, label: &str) -> Markup {
    let current = f.get("sort").as_deref() == Some(key);
    html! {
        th scope="col" aria-sort=(match (current, key) { (false, _) => "none", (true, "size") => "descending", _ => "ascending" }) {
            a href={ "/find?" (with(&without(f, "page"), "sort", key)) } { (label) @if current { @if key == "size" { " ▼" } @else { " ▲" } } }
        }
    }
}

pub fn rows_table(f: Option<&Fields>, rows: &[MessageSummary], selectable: bool) -> Markup {
    let header = |key: &str, label: &str| match f {
        Some(f) => sort_header(f, key, label),
        None => html! { th scope="col" { (label) } },
    };
    html! {
        table.results {
            thead { tr {
                @if selectable { th scope="col" { span.visually-hidden { "Select" } } }
                (header("subject", "Subject")) (header("from", "From"))
                th scope="col" { "To" }
                (header("date", "Date")) (header("size", "Size"))
                th scope="col" { "Location" } th scope="col" { "State" } th scope="col" { "Verdict" }
            } }
            tbody {
                @for m in rows {
                    tr {
                        @if selectable {
                            td { input type="checkbox" name="ids" value=(m.id) aria-label={ "Select " (m.id) }; }
                        }
                        td { a href={ "/messages/" (m.id) } { @if m.subject.is_empty() { "(no subject)" } @else { (m.subject) } } }
                        td { (m.from) }
                        td { (m.to.join(", ")) }
                        td { (time(Some(m.date))) }
                        td.num { (bytes(m.size)) }
                        td { (m.location) }
                        td { (m.state) @if let Some(r) = &m.reason { br; small { (r) } } }
                        td { (m.verdict.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
    }
}

/// Hidden copies of the search's filters, so "all that match" acts on the same search.
fn hidden_search(f: &Fields) -> Markup {
    html! {
        @for (k, v) in &f.0 {
            @if !["ids", "sort", "limit", "page"].contains(&k.as_str()) && !v.trim().is_empty() {
                input type="hidden" name={ "q_" (k) } value=(v);
            }
        }
    }
}

/// Where a page of results stands: its number (from 1), first row, rows per page.
struct Paging {
    page: usize,
    offset: usize,
    limit: usize,
}

fn pager(f: &Fields, at: &Paging, more: bool) -> Markup {
    html! {
        @if at.page > 1 || more {
            nav.pager aria-label="Pages" {
                @if at.page > 1 { a href={ "/find?" (with(f, "page", &(at.page - 1).to_string())) } rel="prev" { "← Previous" } " " }
                span { "Page " (at.page) }
                @if more { " " a href={ "/find?" (with(f, "page", &(at.page + 1).to_string())) } rel="next" { "Next →" } }
            }
        }
    }
}

fn results_form(
    admin: &Admin,
    f: &Fields,
    rows: &[MessageSummary],
    more: bool,
    at: Paging,
) -> Markup {
    html! {
        p.count role="status" {
            @if rows.is_empty() { @if at.page > 1 { "No more matches." } @else { "Nothing matches." } }
            @else if more || at.page > 1 {
                "Matches " (at.offset + 1) "–" (at.offset + rows.len()) (if more { ", and more." } else { "." }) " "
                @if at.limit < MAX_ROWS && at.page == 1 { a href={ "/find?" (with(f, "limit", &MAX_ROWS.to_string())) } { "Show " (MAX_ROWS) " per page" } }
            }
            @else { (rows.len()) " match(es)." }
            @if rows.len() > 1 {
                " "
                @match f.get("sort").filter(|s| s != "arrival") {
                    None => "Newest first.",
                    Some(_) => a href={ "/find?" (with(&without(f, "page"), "sort", "arrival")) } { "Newest first" },
                }
            }
        }
        (pager(f, &at, more))
        @if !rows.is_empty() {
            form method="post" action="/find/act" {
                (layout::csrf(admin))
                (hidden_search(f))
                fieldset.act {
                    legend { "Act on" }
                    label { input type="radio" name="scope" value="selected" checked; " the rows ticked below" }
                    label { input type="radio" name="scope" value="all"; " all that match this search" }
                    label for="action" { "Action" }
                    select #action name="action" {
                        option value="quarantine" { "Quarantine (move, don't delete)" }
                        option value="delete-no-ndr" { "Delete, no bounces" }
                        option value="delete-ndr" { "Delete, bounce to senders" }
                        option value="freeze" { "Freeze (queued mail)" }
                        option value="thaw" { "Thaw (queued mail)" }
                        option value="restore" { "Restore (quarantined mail)" }
                        option value="export" { "Export as mbox" }
                    }
                    label for="reason" { "Reason (kept with quarantined mail)" }
                    input #reason type="text" name="reason" size="30";
                    button type="submit" { "Continue" }
                }
                (rows_table(Some(f), rows, true))
            }
        }
    }
}

/// `POST /find/act`: first the count and a confirmation, then (with `confirm`) the job.
pub async fn act(
    State(console): State<Arc<Console>>,
    admin: Admin,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let form = Fields::parse(&body);
    admin.check_post(&headers, &form.get("csrf").unwrap_or_default())?;
    let action = form.get("action").unwrap_or_default();
    let search = Fields(
        form.0
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("q_").map(|k| (k.to_string(), v.clone())))
            .collect(),
    );
    let mut args = filter_args(&search)?;
    let places = search.get("in");
    if form.get("scope").as_deref() != Some("all") {
        let ids = form.all("ids");
        if ids.is_empty() {
            return Err(PageError::Status(
                StatusCode::BAD_REQUEST,
                "no row is ticked: tick the messages to act on, or choose \"all that match this search\"".into(),
            ));
        }
        args = FilterArgs {
            ids: Some(ids),
            ..Default::default()
        };
    }
    if action == "export" {
        return export(&console, args, places).await;
    }
    let (name, ndr) = match action.as_str() {
        "delete-no-ndr" => ("delete", Some(false)),
        "delete-ndr" => ("delete", Some(true)),
        "quarantine" | "freeze" | "thaw" | "restore" => (action.as_str(), None),
        other => {
            return Err(PageError::Status(
                StatusCode::BAD_REQUEST,
                format!("unknown action {other:?}"),
            ))
        }
    };
    let places = if args.ids.is_some() { None } else { places };
    let reason = form.get("reason");
    let request = |dry_run: bool| admin::actions::ActionRequest {
        filters: args.clone(),
        places: places.clone(),
        ndr,
        dry_run,
        reason: reason.clone(),
    };
    if form.get("confirm").as_deref() != Some("yes") {
        let Json(preview) = admin::actions::act(
            State(console.server.clone()),
            Extension(admin.actor()),
            Path(name.into()),
            Json(request(true)),
        )
        .await?;
        let rows: Vec<MessageSummary> =
            serde_json::from_value(preview["messages"].clone()).unwrap_or_default();
        let count = preview["count"].as_u64().unwrap_or(0);
        let label = match action.as_str() {
            "delete-no-ndr" => "Delete, no bounces",
            "delete-ndr" => "Delete and bounce to the senders",
            "quarantine" => "Quarantine",
            "freeze" => "Freeze",
            "thaw" => "Thaw",
            _ => "Restore",
        };
        let body = html! {
            p.confirm role="alert" { strong { (label) ": " (count) " message(s)." } " Nothing has changed yet." }
            @if count > 0 {
                form method="post" action="/find/act" {
                    @for (k, v) in &form.0 {
                        @if k != "confirm" { input type="hidden" name=(k) value=(v); }
                    }
                    input type="hidden" name="confirm" value="yes";
                    button.danger type="submit" { (label) " " (count) " message(s)" }
                    " " a href="/find" { "Cancel" }
                }
            }
            (rows_table(None, &rows, false))
            @if preview["more"] == true { p { "… and more." } }
        };
        return Ok(layout::page("Confirm", "/find", &admin, body).into_response());
    }
    let Json(started) = admin::actions::act(
        State(console.server.clone()),
        Extension(admin.actor()),
        Path(name.into()),
        Json(request(false)),
    )
    .await?;
    super::jobs_page::follow(&started)
}

/// The selection as one mbox file, downloaded.
async fn export(console: &Console, args: FilterArgs, places: Option<String>) -> PageResult {
    let filters = args.to_filters()?;
    let places = admin::find::places(places.as_deref())?;
    let server = console.server.clone();
    let found = server
        .store_call(move |s| s.find(&places, &filters, None, 0, Some(MAX_EXPORT)))
        .await
        .map_err(admin::ApiError::from)?;
    let mut out = Vec::new();
    for m in found.messages {
        let id = m.id.clone();
        let data = server
            .store_call(move |s| s.message_raw(&id))
            .await
            .map_err(admin::ApiError::from)?;
        crate::mailfile::mbox::write_message(&mut out, &m.from, m.date, &data)
            .map_err(|e| PageError::Status(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    }
    Ok((
        [
            (header::CONTENT_TYPE, "application/mbox"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"lazaret-export.mbox\"",
            ),
        ],
        out,
    )
        .into_response())
}
