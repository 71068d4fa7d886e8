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
    /// How long the step took: on a big store the admin sees which one is slow (the
    /// rescan, a backup, a thaw of many messages) and what the rest cost.
    seconds: f64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockdownRequest {
    /// Shown to users whose logins are refused.
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub no_backup: bool,
    /// Backups directory for the backup step (default `[backup] dir`).
    #[serde(default)]
    pub backup_to: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoverRequest {
    #[serde(default)]
    pub force: bool,
    #[serde(default)]
    pub reason: Option<String>,
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

/// The steps done so far, each timed from the end of the one before; `run` records
/// one and says whether to go on.
struct Steps {
    done: Vec<Step>,
    since: std::time::Instant,
}

impl Steps {
    fn new() -> Self {
        Steps {
            done: Vec::new(),
            since: std::time::Instant::now(),
        }
    }

    fn run(&mut self, step: &'static str, outcome: Result<String, ApiError>) -> bool {
        let (ok, result) = match outcome {
            Ok(r) => (true, r),
            Err(e) => (false, e.to_string()),
        };
        let now = std::time::Instant::now();
        let seconds = now.duration_since(self.since).as_secs_f64();
        self.since = now;
        self.done.push(Step {
            step,
            ok,
            result,
            seconds,
        });
        ok
    }
}

fn all_queues() -> Json<Selection> {
    Json(Selection {
        queues: Vec::new(),
        all: true,
    })
}

fn queue_names(r: &serde_json::Value) -> String {
    r["queues"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|q| q.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

async fn run_lockdown(
    server: Arc<Server>,
    job: Arc<Job>,
    actor: Actor,
    request: LockdownRequest,
) -> Result<serde_json::Value, ApiError> {
    let (s, a) = (&server, || Extension(actor.clone()));
    let mut steps = Steps::new();
    'steps: {
        let backup = match request.no_backup {
            true => Ok("skipped (--no-backup)".to_string()),
            false if s.config.store.is_shared() => {
                Ok(format!("skipped: {}", super::backup::SHARED_STORE_BACKUP))
            }
            false => {
                let to = BackupRequest {
                    to: request.backup_to.clone(),
                    full: false,
                };
                super::backup::run_in(s, job.clone(), actor.clone(), to)
                    .await
                    .map(|r| {
                        format!(
                            "{} in {}",
                            r["id"].as_str().unwrap_or("?"),
                            r["dir"].as_str().unwrap_or("?")
                        )
                    })
            }
        };
        if !steps.run("backup", backup) {
            break 'steps;
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
            let stored = s.store_call(move |st| st.set_setting(SETTING, &text)).await;
            if let Err(e) = stored {
                steps.run("record the lockdown", Err(e.into()));
                break 'steps;
            }
        }
        let stop = super::status::smtp_switch(State(s.clone()), a(), Path("stop".into())).await;
        let stop = stop.map(|Json(r)| match r["was_up"] == true {
            true => "inbound listener stopped".to_string(),
            false => "already stopped".to_string(),
        });
        if !steps.run("smtp stop", stop) {
            break 'steps;
        }
        let held = super::outbound::switch(State(s.clone()), a(), Path("disable".into())).await;
        let held = held
            .map(|Json(r)| format!("{} message(s) held in remote queues", r["remote_messages"]));
        if !steps.run("outbound disable", held) {
            break 'steps;
        }
        // Run again without --message, the message users already see stays.
        let was = s.access.current();
        let change = AccessChange {
            message: request
                .message
                .clone()
                .or(if was.enabled { None } else { was.message }),
        };
        let refused = super::status::access_switch(
            State(s.clone()),
            a(),
            Path("disable".into()),
            Some(Json(change)),
        )
        .await
        .map(|Json(r)| {
            format!(
                "logins refused with: {}",
                r["user_access"]["message"].as_str().unwrap_or("")
            )
        });
        if !steps.run("access disable", refused) {
            break 'steps;
        }
        let frozen =
            super::queues::set_state(State(s.clone()), a(), Path("freeze".into()), all_queues())
                .await
                .map(|Json(r)| format!("frozen: {}", queue_names(&r)));
        steps.run("freeze queues", frozen);
    }
    finish(&server, &actor, "lockdown", None, steps).await
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
    let (s, a) = (&server, || Extension(actor.clone()));
    let mut steps = Steps::new();
    'steps: {
        let scope = rescan::Scope {
            queues: true,
            mailboxes: true,
            cluster: None,
            full: false,
        };
        let query = "queues mailboxes".to_string();
        let rescanned =
            super::scan::run_rescan(s.clone(), job.clone(), actor.clone(), scope, query)
                .await
                .map(|r| {
                    format!(
                        "{} message(s) read, {} quarantined (signature set {})",
                        r["messages_scanned"],
                        r["quarantined"],
                        r["version"].as_str().unwrap_or("?")
                    )
                });
        if !steps.run("rescan", rescanned) {
            break 'steps;
        }
        let thawed =
            super::queues::set_state(State(s.clone()), a(), Path("thaw".into()), all_queues())
                .await
                .map(|Json(r)| format!("active: {}", queue_names(&r)));
        if !steps.run("thaw queues", thawed) {
            break 'steps;
        }
        let retried = super::queues::retry(s.clone(), actor.clone(), all_queues().0)
            .await
            .map(|Json(r)| {
                format!(
                    "{} message(s) due now, {} frozen left frozen",
                    r["due"], r["frozen"]
                )
            });
        if !steps.run("retry now", retried) {
            break 'steps;
        }
        let enabled = super::outbound::switch(State(s.clone()), a(), Path("enable".into())).await;
        if !steps.run(
            "outbound enable",
            enabled.map(|_| "remote queues may send".into()),
        ) {
            break 'steps;
        }
        let started = super::status::smtp_switch(State(s.clone()), a(), Path("start".into())).await;
        if !steps.run(
            "smtp start",
            started.map(|_| "inbound listener accepting".into()),
        ) {
            break 'steps;
        }
        let access =
            super::status::access_switch(State(s.clone()), a(), Path("enable".into()), None).await;
        if !steps.run("access enable", access.map(|_| "users may log in".into())) {
            break 'steps;
        }
        let ended = s.store_call(|st| st.set_setting(SETTING, "")).await;
        if let Err(e) = ended {
            steps.run("end the lockdown", Err(e.into()));
        }
    }
    finish(&server, &actor, "recover", reason, steps).await
}

/// Audits the whole run and answers the steps; a failed step is in the report (the
/// job itself is done), so the CLI can print every step before it exits 1.
async fn finish(
    server: &Arc<Server>,
    actor: &Actor,
    action: &str,
    reason: Option<String>,
    steps: Steps,
) -> Result<serde_json::Value, ApiError> {
    let steps = steps.done;
    let failed = steps.iter().find(|s| !s.ok).map(|s| s.step);
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
