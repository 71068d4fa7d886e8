//! `/signatures`: the signature set the scanner uses, adding or replacing a file of it
//! (pasted: the formats are text), removing one, and a rescan of all stored mail.

use super::layout::{self, text, time};
use super::{see_other, Admin, Console, PageResult};
use crate::admin;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::{Extension, Form, Json};
use maud::html;
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

pub async fn show(State(console): State<Arc<Console>>, admin: Admin) -> PageResult {
    let Json(view) = admin::scan::list(State(console.server.clone())).await?;
    let v = serde_json::to_value(&view).unwrap_or_default();
    let files = v["files"].as_array().cloned().unwrap_or_default();
    let rejected = v["rejected"].as_array().cloned().unwrap_or_default();
    let body = html! {
        dl.facts {
            dt { "Signature set" } dd { code { (text(&v["version"])) } " · " (v["signatures"]) " signatures (built-in ones included)" }
            dt { "Loaded" } dd { (time(v["loaded_at"].as_i64())) }
            dt { "Directory" } dd { code { (text(&v["directory"])) } }
            dt { "On ingest" } dd { (text(&v["on_ingest"])) }
            dt { "clamd" } dd {
                @match v["clamd"].as_object() {
                    Some(c) => { (text(&c["state"])) " at " (text(&c["address"])) ": " (text(&c["detail"])) },
                    None => { "not configured" },
                }
            }
        }
        @if !rejected.is_empty() {
            div.alert role="alert" {
                p { "Files in the directory that were refused (the rest is in use):" }
                ul { @for r in &rejected { li { code { (text(r)) } } } }
            }
        }
        h2 { "Files" }
        @if files.is_empty() {
            p { "No signature files yet: only the built-in ones are in use." }
        } @else {
            table.results {
                thead { tr { th { "File" } th { "Kind" } th.num { "Signatures" } th { "" } } }
                tbody { @for f in &files { tr {
                    td { code { (text(&f["name"])) } }
                    td { (text(&f["kind"])) }
                    td.num { (f["signatures"]) }
                    td { (layout::button(&admin, "/signatures/remove", "Remove", &[("name", &text(&f["name"]))])) }
                } } }
            }
        }
        h2 { "Add or replace files" }
        form.stack method="post" action="/signatures/upload" enctype="multipart/form-data" {
            (layout::csrf(&admin))
            p { "Hash (" code { ".hdb" } ", " code { ".hsb" } "), body (" code { ".ndb" } ") or rule (" code { ".rules" } ") signature files. "
                "Every line of every file is checked first: one bad line refuses them all and nothing changes. "
                "A file of the same name is replaced; the new set is in use for the next message." }
            label for="sig-files" { "Signature files" }
            input #sig-files type="file" name="files" multiple required accept=".hdb,.hsb,.ndb,.rules";
            button type="submit" { "Upload signatures" }
        }
        h3 { "Or paste one" }
        form.stack method="post" action="/signatures/install" {
            (layout::csrf(&admin))
            label for="sig-name" { "File name" }
            input #sig-name type="text" name="name" size="40" placeholder="outbreak-2026-12.ndb" required;
            label for="sig-content" { "Contents" }
            textarea #sig-content name="content" rows="8" cols="90" required spellcheck="false" {}
            button type="submit" { "Install signatures" }
        }
        h2 { "Rescan stored mail" }
        form.stack method="post" action="/signatures/rescan" {
            (layout::csrf(&admin))
            p { "Quarantines what the set above catches in mail already queued or delivered. "
                "Only what is new to the set is looked at (new hashes from the index, no message read); "
                "full reads every message again." }
            label { input type="checkbox" name="full"; " Full (e.g. after clamd's own database changed)" }
            button type="submit" { "Rescan all mail" }
        }
    };
    Ok(layout::page("Signatures", "/signatures", &admin, body).into_response())
}

#[derive(Deserialize)]
pub struct InstallForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    content: String,
}

pub async fn install(
    State(console): State<Arc<Console>>,
    admin: Admin,
    headers: HeaderMap,
    Form(form): Form<InstallForm>,
) -> PageResult {
    admin.check_post(&headers, &form.csrf)?;
    // Browsers send a textarea's lines with CRLF; signature files are read by line.
    let file = admin::scan::Upload {
        name: form.name.trim().to_string(),
        content: form.content.replace("\r\n", "\n"),
    };
    put_files(&console, &admin, vec![file]).await
}

/// The file picker's form: the CSRF token and any number of files, in one
/// `multipart/form-data` body.
pub async fn upload(
    State(console): State<Arc<Console>>,
    admin: Admin,
    headers: HeaderMap,
    mut form: axum::extract::Multipart,
) -> PageResult {
    let bad = |e: axum::extract::multipart::MultipartError| {
        super::PageError::Status(e.status(), format!("the upload did not arrive whole: {e}"))
    };
    // A page elsewhere gets refused before its upload is read (up to 512 MB).
    admin.check_origin(&headers)?;
    let (mut csrf, mut files) = (String::new(), Vec::new());
    while let Some(field) = form.next_field().await.map_err(bad)? {
        match field.name() {
            Some("csrf") => csrf = field.text().await.map_err(bad)?,
            Some("files") => {
                let name = field.file_name().unwrap_or_default().to_string();
                let bytes = field.bytes().await.map_err(bad)?;
                if name.is_empty() && bytes.is_empty() {
                    continue; // the picker was left empty
                }
                let content = String::from_utf8(bytes.to_vec()).map_err(|_| {
                    super::PageError::Status(
                        axum::http::StatusCode::BAD_REQUEST,
                        format!("{name} is not a text file: signature files are text (UTF-8)"),
                    )
                })?;
                // Edited on Windows, a file has CRLF lines; signature files are read by line.
                let content = content.replace("\r\n", "\n");
                files.push(admin::scan::Upload { name, content });
            }
            _ => {}
        }
    }
    admin.check_post(&headers, &csrf)?;
    if files.is_empty() {
        return Err(super::PageError::Status(
            axum::http::StatusCode::BAD_REQUEST,
            "no file chosen: pick one or more signature files".into(),
        ));
    }
    put_files(&console, &admin, files).await
}

async fn put_files(
    console: &Arc<Console>,
    admin: &Admin,
    files: Vec<admin::scan::Upload>,
) -> PageResult {
    let names: Vec<String> = files.iter().map(|f| f.name.clone()).collect();
    let name = names.join(", ");
    let request = admin::scan::InstallRequest {
        files,
        action: None,
    };
    let Json(r) = admin::scan::install(
        State(console.server.clone()),
        Extension(admin.actor()),
        Json(request),
    )
    .await?;
    let how = if list(&r["replaced"]).is_empty() {
        if list(&r["added"]).is_empty() {
            "unchanged"
        } else {
            "added"
        }
    } else {
        "replaced"
    };
    console.sessions.notice(
        admin,
        format!(
            "{name} {how}: signature set {} with {} signatures",
            text(&r["version"]),
            r["signatures"]
        ),
    );
    see_other("/signatures")
}

fn list(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

/// The remove and rescan buttons. The file's name travels in a field, not the path:
/// a name may hold `#`, `?` or spaces.
#[derive(Deserialize)]
pub struct ButtonForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    full: Option<String>,
}

pub async fn remove(
    State(console): State<Arc<Console>>,
    admin: Admin,
    headers: HeaderMap,
    Form(form): Form<ButtonForm>,
) -> PageResult {
    admin.check_post(&headers, &form.csrf)?;
    let name = form.name;
    let Json(r) = admin::scan::remove(
        State(console.server.clone()),
        Extension(admin.actor()),
        Path(name.clone()),
    )
    .await?;
    console.sessions.notice(
        &admin,
        format!("{name} removed: signature set {}", text(&r["version"])),
    );
    see_other("/signatures")
}

pub async fn rescan(
    State(console): State<Arc<Console>>,
    admin: Admin,
    headers: HeaderMap,
    Form(form): Form<ButtonForm>,
) -> PageResult {
    admin.check_post(&headers, &form.csrf)?;
    let request = admin::scan::RescanRequest {
        queues: false,
        mailboxes: false,
        full: form.full.is_some(),
        cluster: None,
    };
    let Json(job) = admin::scan::rescan(
        State(console.server.clone()),
        Extension(admin.actor()),
        Json(request),
    )
    .await?;
    super::jobs_page::follow(&job)
}
