//! The outbreak runbook in two commands. `lockdown`: backup → SMTP inbound stop →
//! outbound disable → user access disable → every queue frozen. `recover`: only once
//! scanning is on and the signatures changed since the lockdown (or forced, with a
//! reason) — rescan → thaw → retry now → outbound enable → SMTP start → access enable.
//! Each runs as a job, step by step through the same calls as the single commands (so
//! each step is audited on its own too), and stops at the first step that fails,
//! leaving the earlier ones in force.

use super::backup::BackupRequest;
use super::jobs::Job;
use super::queues::Selection;
use super::status::AccessChange;
use super::{Actor, ApiError};
use crate::scan::rescan;
use crate::server::Server;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use lazaret_store::AuditEntry;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Where the lockdown in force is recorded (empty: none).
pub const SETTING: &str = "lockdown";

/// What `status` shows and `recover` compares against.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lockdown {
    pub since: i64,
    pub by: String,
    /// The signature set in use when it began.
    pub signatures: String,
    pub content_version: String,
    /// clamd's database version then, if clamd is configured and answered.
    pub clamd: Option<String>,
}

#[derive(Debug, Serialize)]
struct Step {
    step: &'static str,
    ok: bool,
    result: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockdownRequest {
    /// Shown to users whose logins are refused.
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    no_backup: bool,
    /// Backups directory for the backup step (default `[backup] dir`).
    #[serde(default)]
    backup_to: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoverRequest {
    #[serde(default)]
    force: bool,
    #[serde(default)]
    reason: Option<String>,
}

pub async fn current(server: &Arc<Server>) -> Option<Lockdown> {
    let text = server
        .store_call(|s| s.setting(SETTING))
        .await
        .ok()
        .flatten()?;
    serde_json::from_str(&text).ok()
}

/// The signatures in use now: set version, content version, clamd's version.
async fn signatures_now(server: &Arc<Server>) -> (String, String, Option<String>) {
    let s = server.clone();
    tokio::task::spawn_blocking(move || {
        s.scanner.reload_if_changed();
        let loaded = s.scanner.current();
        let clamd = s.scanner.clamd.as_ref().and_then(|c| c.version().ok());
        (
            loaded.engine.version().to_string(),
            loaded.engine.content_version().to_string(),
            clamd,
        )
    })
    .await
    .unwrap_or_default()
}

pub async fn lockdown(
    State(server): State<Arc<Server>>,
    Extension(actor): Extension<Actor>,
    Json(request): Json<LockdownRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let runner = server.clone();
    let unit = if request.no_backup {
        "messages"
    } else {
        "bytes"
    };
    let job = server
        .jobs
        .start("lockdown", String::new(), unit, 0, move |job| {
            run_lockdown(runner, job, actor, request)
        });
    Ok(Json(serde_json::json!({ "job": job.id, "total": 0 })))
}

async fn run_lockdown(
    server: Arc<Server>,
    job: Arc<Job>,
    actor: Actor,
    request: LockdownRequest,
) -> Result<serde_json::Value, ApiError> {
    let mut steps = Vec::new();
    let s = &server;
    let a = || Extension(actor.clone());
    let mut failed = None;
    'steps: {
        if request.no_backup {
            steps.push(Step {
                step: "backup",
                ok: true,
                result: "skipped (--no-backup)".into(),
            });
        } else {
            let backup = BackupRequest {
                to: request.backup_to.clone(),
                full: false,
            };
            match super::backup::run_in(s, job.clone(), actor.clone(), backup).await {
                Ok(r) => steps.push(Step {
                    step: "backup",
                    ok: true,
                    result: format!(
                        "{} in {}",
                        r["id"].as_str().unwrap_or("?"),
                        r["dir"].as_str().unwrap_or("?")
                    ),
                }),
                Err(e) => {
                    failed = Some(step_failed(&mut steps, "backup", e));
                    break 'steps;
                }
            }
        }
        // In force from here: status says so even if a later step fails. A second
        // lockdown keeps the first one's time and signatures (what recover compares).
        if current(s).await.is_none() {
            let (signatures, content_version, clamd) = signatures_now(s).await;
            let record = Lockdown {
                since: crate::deliver::now(),
                by: actor.0.clone(),
                signatures,
                content_version,
                clamd,
            };
            let text = serde_json::to_string(&record).unwrap_or_default();
            if let Err(e) = s.store_call(move |st| st.set_setting(SETTING, &text)).await {
                failed = Some(step_failed(&mut steps, "record the lockdown", e.into()));
                break 'steps;
            }
        }
        match super::status::smtp_switch(State(s.clone()), a(), Path("stop".into())).await {
            Ok(Json(r)) => steps.push(Step {
                step: "smtp stop",
                ok: true,
                result: if r["was_up"] == true {
                    "inbound listener stopped".into()
                } else {
                    "already stopped".into()
                },
            }),
            Err(e) => {
                failed = Some(step_failed(&mut steps, "smtp stop", e));
                break 'steps;
            }
        }
        match super::outbound::switch(State(s.clone()), a(), Path("disable".into())).await {
            Ok(Json(r)) => steps.push(Step {
                step: "outbound disable",
                ok: true,
                result: format!("{} message(s) held in remote queues", r["remote_messages"]),
            }),
            Err(e) => {
                failed = Some(step_failed(&mut steps, "outbound disable", e));
                break 'steps;
            }
        }
        // Run again without --message, the message users already see stays.
        let was = s.access.current();
        let change = AccessChange {
            message: request
                .message
                .clone()
                .or(if was.enabled { None } else { was.message }),
        };
        match super::status::access_switch(
            State(s.clone()),
            a(),
            Path("disable".into()),
            Some(Json(change)),
        )
        .await
        {
            Ok(Json(r)) => steps.push(Step {
                step: "access disable",
                ok: true,
                result: format!(
                    "logins refused with: {}",
                    r["user_access"]["message"].as_str().unwrap_or("")
                ),
            }),
            Err(e) => {
                failed = Some(step_failed(&mut steps, "access disable", e));
                break 'steps;
            }
        }
        let all = Selection {
            queues: Vec::new(),
            all: true,
        };
        match super::queues::set_state(State(s.clone()), a(), Path("freeze".into()), Json(all))
            .await
        {
            Ok(Json(r)) => steps.push(Step {
                step: "freeze queues",
                ok: true,
                result: format!(
                    "frozen: {}",
                    r["queues"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|q| q.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            }),
            Err(e) => {
                failed = Some(step_failed(&mut steps, "freeze queues", e));
            }
        }
    }
    finish(&server, &actor, "lockdown", None, steps, failed).await
}

pub async fn recover(
    State(server): State<Arc<Server>>,
    Extension(actor): Extension<Actor>,
    Json(request): Json<RecoverRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let reason = request
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_string);
    if request.force && reason.is_none() {
        return Err(ApiError::BadRequest(
            "--force needs --reason TEXT: why mail may flow again without new signatures (it goes in the audit log)".into(),
        ));
    }
    if !request.force {
        refusal(&server).await?;
    }
    let total = server.store_call(|s| s.message_count()).await?;
    let runner = server.clone();
    let job = server
        .jobs
        .start("recover", String::new(), "messages", total, move |job| {
            run_recover(runner, job, actor, reason)
        });
    Ok(Json(serde_json::json!({ "job": job.id, "total": total })))
}

/// Why mail may not flow again yet: no lockdown, scanning off, or the same signatures.
async fn refusal(server: &Arc<Server>) -> Result<(), ApiError> {
    let refuse = |why: String| Err(ApiError::BadRequest(why));
    let Some(lockdown) = current(server).await else {
        return refuse("not in lockdown (see `lazaret status`): there is nothing to recover from; to undo single steps use `smtp start`, `outbound enable`, `access enable`, `queue thaw --all`, or pass --force --reason TEXT".into());
    };
    if server.scanner.on_ingest == lazaret_core::config::OnIngest::Off {
        return refuse("scanning is off ([scan] on_ingest = \"off\"): new mail would not be scanned; turn it on and restart, or pass --force --reason TEXT".into());
    }
    let (signatures, content_version, clamd) = signatures_now(server).await;
    let changed = signatures != lockdown.signatures
        || content_version != lockdown.content_version
        || (clamd.is_some() && clamd != lockdown.clamd);
    if !changed {
        return refuse(format!(
            "the signatures have not changed since the lockdown (set {signatures}{}): add what catches this worm first (`lazaret signatures add FILE`, or update clamd's database), or pass --force --reason TEXT",
            clamd.map(|c| format!(", clamd {c}")).unwrap_or_default()
        ));
    }
    Ok(())
}

async fn run_recover(
    server: Arc<Server>,
    job: Arc<Job>,
    actor: Actor,
    reason: Option<String>,
) -> Result<serde_json::Value, ApiError> {
    let mut steps = Vec::new();
    let s = &server;
    let a = || Extension(actor.clone());
    let mut failed = None;
    'steps: {
        let scope = rescan::Scope {
            queues: true,
            mailboxes: true,
            full: false,
        };
        match super::scan::run_rescan(
            s.clone(),
            job.clone(),
            actor.clone(),
            scope,
            "queues mailboxes".into(),
        )
        .await
        {
            Ok(r) => steps.push(Step {
                step: "rescan",
                ok: true,
                result: format!(
                    "{} message(s) read, {} quarantined (signature set {})",
                    r["messages_scanned"],
                    r["quarantined"],
                    r["version"].as_str().unwrap_or("?")
                ),
            }),
            Err(e) => {
                failed = Some(step_failed(&mut steps, "rescan", e));
                break 'steps;
            }
        }
        for (step, action) in [("thaw queues", "thaw"), ("retry now", "retry")] {
            let all = Selection {
                queues: Vec::new(),
                all: true,
            };
            let outcome = match action {
                "thaw" => {
                    super::queues::set_state(State(s.clone()), a(), Path(action.into()), Json(all))
                        .await
                }
                _ => super::queues::retry(s.clone(), actor.clone(), all).await,
            };
            match outcome {
                Ok(Json(r)) => steps.push(Step {
                    step,
                    ok: true,
                    result: if action == "thaw" {
                        format!(
                            "{} queue(s) active",
                            r["queues"].as_array().map_or(0, |q| q.len())
                        )
                    } else {
                        format!(
                            "{} message(s) due now, {} frozen left frozen",
                            r["due"], r["frozen"]
                        )
                    },
                }),
                Err(e) => {
                    failed = Some(step_failed(&mut steps, step, e));
                    break 'steps;
                }
            }
        }
        match super::outbound::switch(State(s.clone()), a(), Path("enable".into())).await {
            Ok(_) => steps.push(Step {
                step: "outbound enable",
                ok: true,
                result: "remote queues may send".into(),
            }),
            Err(e) => {
                failed = Some(step_failed(&mut steps, "outbound enable", e));
                break 'steps;
            }
        }
        match super::status::smtp_switch(State(s.clone()), a(), Path("start".into())).await {
            Ok(_) => steps.push(Step {
                step: "smtp start",
                ok: true,
                result: "inbound listener accepting".into(),
            }),
            Err(e) => {
                failed = Some(step_failed(&mut steps, "smtp start", e));
                break 'steps;
            }
        }
        match super::status::access_switch(State(s.clone()), a(), Path("enable".into()), None).await
        {
            Ok(_) => steps.push(Step {
                step: "access enable",
                ok: true,
                result: "users may log in".into(),
            }),
            Err(e) => {
                failed = Some(step_failed(&mut steps, "access enable", e));
                break 'steps;
            }
        }
        if let Err(e) = s.store_call(|st| st.set_setting(SETTING, "")).await {
            failed = Some(step_failed(&mut steps, "end the lockdown", e.into()));
        }
    }
    finish(&server, &actor, "recover", reason, steps, failed).await
}

fn step_failed(steps: &mut Vec<Step>, step: &'static str, e: ApiError) -> &'static str {
    steps.push(Step {
        step,
        ok: false,
        result: e.to_string(),
    });
    step
}

/// Audits the whole run and answers the steps; a failed step is in the report (the
/// job itself is done), so the CLI can print every step before it exits 1.
async fn finish(
    server: &Arc<Server>,
    actor: &Actor,
    action: &str,
    reason: Option<String>,
    steps: Vec<Step>,
    failed: Option<&'static str>,
) -> Result<serde_json::Value, ApiError> {
    let summary = steps
        .iter()
        .map(|s| format!("{}: {}", s.step, if s.ok { "ok" } else { "FAILED" }))
        .collect::<Vec<_>>()
        .join("; ");
    server
        .audit(AuditEntry {
            actor: actor.0.clone(),
            action: match failed {
                Some(_) => format!("{action} failed"),
                None => action.to_string(),
            },
            query: reason.map(|r| format!("forced: {r}")),
            count: None,
            detail: Some(summary),
        })
        .await?;
    Ok(serde_json::json!({ "action": action, "steps": steps, "failed_step": failed }))
}
