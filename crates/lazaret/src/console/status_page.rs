//! `/`: the server at a glance, with the switches of the runbook's first steps (SMTP
//! inbound, outbound, user access), lockdown and recover, and a backup on demand.

use super::layout::{self, age, bytes, text, time};
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
    let Json(s) = admin::status::status(State(console.server.clone())).await?;
    let smtp_up = s["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|l| l["name"] == "smtp" && l["up"] == true);
    let outbound_on = s["outbound"] == "enabled";
    let access_on = s["user_access"] == "enabled";
    let store = &s["store"];
    let scan = &s["scan"];
    let body = html! {
        p.lede {
            (text(&s["hostname"])) " · Lazaret " (text(&s["version"]))
            " · up " (age(s["uptime_secs"].as_i64().map(|u| crate::deliver::now() - u)))
            " · " (s["smtp_sessions"]) " SMTP sessions"
        }
        @if let Some(l) = s["lockdown"].as_object() {
            p.alert role="alert" {
                "Lockdown since " (time(l.get("since").and_then(Value::as_i64)))
                " by " (text(l.get("by").unwrap_or(&Value::Null))) ": "
                "mail in and out stopped, users kept out. " code { "lazaret recover" } " ends it."
            }
        }
        section aria-labelledby="switches" {
            h2 #switches { "Switches" }
            table.switches {
                tbody {
                    (switch(&admin, "SMTP inbound", smtp_up, ("accepting", "/smtp/stop", "Stop SMTP inbound"),
                        ("stopped", "/smtp/start", "Start SMTP inbound")))
                    (switch(&admin, "Outbound delivery", outbound_on, ("enabled", "/outbound/disable", "Disable outbound"),
                        ("disabled", "/outbound/enable", "Enable outbound")))
                    tr {
                        th scope="row" { "User access (IMAP, POP3, submission)" }
                        td {
                            (state(access_on, "enabled", "disabled"))
                            @if !access_on { br; small { (text(&s["user_access_message"])) } }
                        }
                        td { @if access_on {
                            form.inline method="post" action="/access/disable" {
                                (layout::csrf(&admin))
                                label for="access-message" { "Message to users" }
                                input #access-message type="text" name="message" size="40"
                                    placeholder="Maintenance: mail is being cleaned, back soon";
                                button type="submit" { "Disable user access" }
                            }
                        } @else {
                            (layout::button(&admin, "/access/enable", "Enable user access", &[]))
                        } }
                    }
                }
            }
        }
        section aria-labelledby="connectors" {
            h2 #connectors { "Connectors" }
            (connectors(&admin, s["connectors"].as_array().map(Vec::as_slice).unwrap_or(&[])))
        }
        section aria-labelledby="runbook" {
            h2 #runbook { "Outbreak runbook" }
            @if s["lockdown"].is_object() {
                form.stack method="post" action="/runbook/recover" {
                    (layout::csrf(&admin))
                    p { "Recover thaws the queues, opens SMTP and user access again and rescans every message, "
                        "once the signatures are newer than at the lockdown." }
                    label for="recover-reason" { "Reason (for the audit log; needed to recover without new signatures)" }
                    input #recover-reason type="text" name="reason" size="60";
                    label { input type="checkbox" name="force"; " Recover even though the signatures have not changed" }
                    button type="submit" { "Recover" }
                }
            } @else {
                form.stack method="post" action="/runbook/lockdown" {
                    (layout::csrf(&admin))
                    p { "Lockdown backs up the store, stops SMTP inbound and outbound delivery, "
                        "keeps users out and freezes every queue, in that order, as one logged job." }
                    label for="lockdown-message" { "Message to users" }
                    input #lockdown-message type="text" name="message" size="60"
                        placeholder="Maintenance: mail is being cleaned, back soon";
                    label { input type="checkbox" name="no_backup"; " Skip the backup" }
                    label { input #lockdown-confirm type="checkbox" name="confirm" required; " Stop all mail now" }
                    button type="submit" { "Lock down" }
                }
            }
            form.stack method="post" action="/backups/create" {
                (layout::csrf(&admin))
                label { input type="checkbox" name="full"; " Full (copy everything, not only what the last backup lacks)" }
                button type="submit" { "Back up now" }
            }
        }
        section aria-labelledby="queues" {
            h2 #queues { "Queues" }
            (super::queues_page::table(&admin, s["queues"].as_array().map(Vec::as_slice).unwrap_or(&[]), false))
        }
        section aria-labelledby="store" {
            h2 #store { "Store" }
            dl.facts {
                dt { "Messages" } dd { (store["messages"]) " (" (bytes(store["message_bytes"].as_u64().unwrap_or(0))) ")" }
                dt { "Queued" } dd { (store["queued"]) }
                dt { "In mailboxes" } dd { (store["in_mailboxes"]) }
                dt { "Quarantined" } dd { a href="/quarantine" { (store["quarantined"]) } }
                dt { "Waiting for the scanner" } dd { (s["unscanned"]) }
                dt { "Free disk" } dd { (bytes(s["disk"]["free_bytes"].as_u64().unwrap_or(0))) }
                dt { "Last backup" } dd {
                    @match s["last_backup"].as_object() {
                        Some(b) if b["ok"] == true => { (text(&b["id"])) " at " (time(b["at"].as_i64())) },
                        Some(b) => { span.off { "FAILED" } " at " (time(b["at"].as_i64())) ": " (text(&b["error"])) },
                        None => { "none yet (" code { "lazaret backup create" } ")" },
                    }
                }
            }
        }
        section aria-labelledby="scanner" {
            h2 #scanner { "Scanner" }
            dl.facts {
                dt { "Signature set" } dd { (text(&scan["version"])) " · " (scan["signatures"]) " signatures" }
                dt { "Loaded" } dd { (time(scan["loaded_at"].as_i64())) }
                dt { "clamd" } dd {
                    @match scan["clamd"].as_object() {
                        Some(c) => { (text(&c["state"])) " at " (text(&c["address"])) " " (text(&c["detail"])) },
                        None => { "not configured" },
                    }
                }
            }
        }
    };
    Ok(layout::page("Status", "/", &admin, body).into_response())
}

/// Outbound routes with their schedules: `never` holds a route's mail (queued, not
/// frozen), `always` opens it, a window such as `mon-fri 18:00-06:00` opens it then.
fn connectors(admin: &Admin, list: &[Value]) -> maud::Markup {
    html! {
        @if list.is_empty() {
            p { "No connectors: mail for other domains is not sent anywhere." }
        } @else {
            table.results {
                thead { tr {
                    th scope="col" { "Connector" } th scope="col" { "Domains" } th scope="col" { "Route" }
                    th scope="col" { "Now" } th.num scope="col" { "Waiting" } th scope="col" { "Schedule" }
                } }
                tbody { @for (i, c) in list.iter().enumerate() {
                    @let id = format!("schedule-{i}");
                    tr {
                        th scope="row" { (text(&c["name"])) }
                        td { @for (j, d) in c["domains"].as_array().into_iter().flatten().enumerate() {
                            @if j > 0 { ", " } code { (text(d)) }
                        } }
                        td { @match c["smarthost"].as_str() {
                            Some(h) => { "smarthost " code { (h) } },
                            None => { "MX" },
                        } }
                        td { (state(c["open"] == true, "open", "held")) }
                        td.num { (c["messages"]) }
                        td {
                            form.inline method="post" action="/connectors/schedule" {
                                (layout::csrf(admin))
                                input type="hidden" name="name" value=(text(&c["name"]));
                                label.visually-hidden for=(id) { "Schedule of " (text(&c["name"])) }
                                input id=(id) type="text" name="schedule" size="22" value=(text(&c["schedule"]))
                                    list="schedule-examples" required;
                                button type="submit" { "Set" }
                            }
                        }
                    }
                } }
            }
            datalist #schedule-examples {
                option value="always" {} option value="never" {} option value="mon-fri 18:00-06:00" {}
            }
            p.hint { code { "never" } " holds a connector's mail in its queues (not frozen, nothing bounces); "
                code { "always" } " lets it go; a window such as " code { "mon-fri 18:00-06:00" } " sends only then." }
        }
    }
}

/// A row of the switches: what it is, its state, the button that turns it over.
/// `on` and `off` are (state, action, button label) for each side.
fn switch(
    admin: &Admin,
    what: &str,
    is_on: bool,
    on: (&str, &str, &str),
    off: (&str, &str, &str),
) -> maud::Markup {
    let (_, action, label) = if is_on { on } else { off };
    html! {
        tr {
            th scope="row" { (what) }
            td { (state(is_on, on.0, off.0)) }
            td { (layout::button(admin, action, label, &[])) }
        }
    }
}

fn state(on: bool, yes: &str, no: &str) -> maud::Markup {
    html! {
        @if on { span.on { (yes) } } @else { span.off { (no) } }
    }
}

#[derive(Deserialize)]
pub struct Switch {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    message: Option<String>,
}

pub async fn smtp(
    State(console): State<Arc<Console>>,
    admin: Admin,
    headers: HeaderMap,
    Path(action): Path<String>,
    Form(form): Form<Switch>,
) -> PageResult {
    admin.check_post(&headers, &form.csrf)?;
    let Json(r) = admin::status::smtp_switch(
        State(console.server.clone()),
        Extension(admin.actor()),
        Path(action),
    )
    .await?;
    console
        .sessions
        .notice(&admin, format!("SMTP inbound {}", text(&r["smtp"])));
    see_other("/")
}

pub async fn outbound(
    State(console): State<Arc<Console>>,
    admin: Admin,
    headers: HeaderMap,
    Path(action): Path<String>,
    Form(form): Form<Switch>,
) -> PageResult {
    admin.check_post(&headers, &form.csrf)?;
    let Json(_) = admin::outbound::switch(
        State(console.server.clone()),
        Extension(admin.actor()),
        Path(action.clone()),
    )
    .await?;
    console
        .sessions
        .notice(&admin, format!("Outbound delivery {action}d"));
    see_other("/")
}

pub async fn access(
    State(console): State<Arc<Console>>,
    admin: Admin,
    headers: HeaderMap,
    Path(action): Path<String>,
    Form(form): Form<Switch>,
) -> PageResult {
    admin.check_post(&headers, &form.csrf)?;
    let change = admin::status::AccessChange {
        message: form.message,
    };
    let Json(_) = admin::status::access_switch(
        State(console.server.clone()),
        Extension(admin.actor()),
        Path(action.clone()),
        Some(Json(change)),
    )
    .await?;
    console
        .sessions
        .notice(&admin, format!("User access {action}d"));
    see_other("/")
}

#[derive(Deserialize)]
pub struct ScheduleForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    schedule: String,
}

pub async fn schedule(
    State(console): State<Arc<Console>>,
    admin: Admin,
    headers: HeaderMap,
    Form(form): Form<ScheduleForm>,
) -> PageResult {
    admin.check_post(&headers, &form.csrf)?;
    let Json(r) = admin::outbound::set_schedule(
        State(console.server.clone()),
        Extension(admin.actor()),
        Path(form.name.clone()),
        Json(admin::outbound::ScheduleBody {
            schedule: form.schedule,
        }),
    )
    .await?;
    let now = if r["open"] == true { "open" } else { "held" };
    console.sessions.notice(
        &admin,
        format!(
            "Connector {} scheduled {:?}: {now} now",
            form.name,
            text(&r["schedule"])
        ),
    );
    see_other("/")
}

/// The runbook's forms; a checkbox is present (`on`) only when ticked.
#[derive(Deserialize)]
pub struct RunbookForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    no_backup: Option<String>,
    #[serde(default)]
    confirm: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    force: Option<String>,
    #[serde(default)]
    full: Option<String>,
}

pub async fn lockdown(
    State(console): State<Arc<Console>>,
    admin: Admin,
    headers: HeaderMap,
    Form(form): Form<RunbookForm>,
) -> PageResult {
    admin.check_post(&headers, &form.csrf)?;
    if form.confirm.is_none() {
        return Err(super::PageError::Status(
            axum::http::StatusCode::BAD_REQUEST,
            "Lockdown stops all mail: tick \"Stop all mail now\" to confirm it.".into(),
        ));
    }
    let request = admin::runbook::LockdownRequest {
        message: form.message.filter(|m| !m.trim().is_empty()),
        no_backup: form.no_backup.is_some(),
        backup_to: None,
    };
    let Json(job) = admin::runbook::lockdown(
        State(console.server.clone()),
        Extension(admin.actor()),
        Json(request),
    )
    .await?;
    super::jobs_page::follow(&job)
}

pub async fn recover(
    State(console): State<Arc<Console>>,
    admin: Admin,
    headers: HeaderMap,
    Form(form): Form<RunbookForm>,
) -> PageResult {
    admin.check_post(&headers, &form.csrf)?;
    let request = admin::runbook::RecoverRequest {
        force: form.force.is_some(),
        reason: form.reason,
    };
    let Json(job) = admin::runbook::recover(
        State(console.server.clone()),
        Extension(admin.actor()),
        Json(request),
    )
    .await?;
    super::jobs_page::follow(&job)
}

pub async fn backup(
    State(console): State<Arc<Console>>,
    admin: Admin,
    headers: HeaderMap,
    Form(form): Form<RunbookForm>,
) -> PageResult {
    admin.check_post(&headers, &form.csrf)?;
    let request = admin::backup::BackupRequest {
        to: None,
        full: form.full.is_some(),
    };
    let Json(job) = admin::backup::create(
        State(console.server.clone()),
        Extension(admin.actor()),
        Json(request),
    )
    .await?;
    super::jobs_page::follow(&job)
}
