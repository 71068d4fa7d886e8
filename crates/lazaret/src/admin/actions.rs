//! Acting on what `find` selects: quarantine, restore, delete (with or without DSNs),
//! purge, freeze, thaw. The selection is resolved to ids first; the work is a job done
//! in batches, each one transaction, so an interrupted action leaves every message
//! either done or untouched. Audited when it starts and when it ends.

use super::find::{places, FilterArgs};
use super::jobs::Job;
use super::{Actor, ApiError};
use crate::deliver::dsn;
use crate::server::Server;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use lazaret_store::{ActionReport, AuditEntry, Filters, Incoming, Place, QuarantineDetail};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Ids per transaction: small enough that a batch commits in milliseconds and SMTP
/// never waits long behind it, large enough to amortise the commit.
const BATCH: usize = 500;
/// Failures listed in a job's report; the count is always whole.
const MAX_LISTED: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Quarantine,
    Restore,
    Delete,
    Purge,
    Freeze,
    Thaw,
    Retry,
}

impl Action {
    fn parse(name: &str) -> Result<Action, ApiError> {
        Ok(match name {
            "quarantine" => Action::Quarantine,
            "restore" => Action::Restore,
            "delete" => Action::Delete,
            "purge" => Action::Purge,
            "freeze" => Action::Freeze,
            "thaw" => Action::Thaw,
            "retry" => Action::Retry,
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown action {other:?}: quarantine, restore, delete, purge, freeze, thaw or retry"
                )))
            }
        })
    }

    /// Where the action looks unless `in` says otherwise.
    fn default_places(self, by_ids: bool) -> Vec<Place> {
        match self {
            Action::Restore | Action::Purge => vec![Place::Quarantine],
            Action::Freeze | Action::Thaw | Action::Retry => vec![Place::Queues],
            Action::Delete if by_ids => vec![Place::Queues, Place::Mailboxes, Place::Quarantine],
            Action::Quarantine | Action::Delete => vec![Place::Queues, Place::Mailboxes],
        }
    }

    fn past(self) -> &'static str {
        match self {
            Action::Quarantine => "quarantined",
            Action::Restore => "restored",
            Action::Delete | Action::Purge => "deleted",
            Action::Freeze => "frozen",
            Action::Thaw => "thawed",
            Action::Retry => "made due now",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    #[serde(default)]
    pub filters: FilterArgs,
    #[serde(default, rename = "in")]
    pub places: Option<String>,
    /// delete: send DSNs to the senders of queued mail (true) or not (false). Required.
    #[serde(default)]
    pub ndr: Option<bool>,
    /// Count and list, change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Why, kept with quarantined mail.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Resolves the selection; refuses an action with no filter at all (it would touch
/// everything).
async fn select(
    server: &Arc<Server>,
    action: Action,
    request: &ActionRequest,
) -> Result<(Vec<Place>, Filters, Vec<String>), ApiError> {
    if request.filters.is_empty() {
        return Err(ApiError::BadRequest(
            "give at least one filter (see `lazaret find --help`) or --ids".into(),
        ));
    }
    for id in request.filters.ids.iter().flatten() {
        let number = id
            .get(1..)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        let kinds = match action {
            Action::Freeze | Action::Thaw | Action::Retry => "q",
            Action::Restore | Action::Purge => "x",
            _ => "qmx",
        };
        if !number || !id.starts_with(|c| kinds.contains(c)) {
            return Err(ApiError::BadRequest(format!(
                "{id:?} is not an id this action takes: {}",
                match action {
                    Action::Freeze | Action::Thaw | Action::Retry => "a queued message, q<number> (`lazaret queue show`, `find --in queues --ids-only`)",
                    Action::Restore | Action::Purge => "a quarantined message, x<number> (`lazaret quarantine list`)",
                    _ => "q<number>, m<number> or x<number>, as `lazaret find --ids-only` prints them",
                }
            )));
        }
    }
    let mut filters = request.filters.to_filters()?;
    if action == Action::Purge {
        // Purge's --older-than is about time in quarantine.
        filters.quarantined_before = filters.received_before.take();
    }
    let places = match request.places.as_deref() {
        Some(spec) => places(Some(spec))?,
        None => action.default_places(request.filters.ids.is_some()),
    };
    let (p, f) = (places.clone(), filters.clone());
    let ids = server.store_call(move |s| s.find_ids(&p, &f)).await?;
    Ok((places, filters, ids))
}

pub async fn act(
    State(server): State<Arc<Server>>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    Json(request): Json<ActionRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let action = Action::parse(&name)?;
    let ndr = match (action, request.ndr) {
        (Action::Delete, None) => {
            return Err(ApiError::BadRequest(
                "say whether senders get a bounce: --no-ndr (none, the usual choice for worm copies) or --ndr".into(),
            ))
        }
        (Action::Delete, Some(ndr)) => ndr,
        _ => false,
    };
    let (places, filters, ids) = select(&server, action, &request).await?;
    let query = request.filters.describe();
    if request.dry_run {
        let found = server
            .store_call(move |s| s.find(&places, &filters, None, 0, Some(1000)))
            .await?;
        return Ok(Json(serde_json::json!({
            "action": name,
            "dry_run": true,
            "count": ids.len(),
            "messages": found.messages,
            "more": found.more,
        })));
    }
    let total = ids.len() as u64;
    let detail = match action {
        Action::Delete if ndr => Some("with DSNs to the senders".to_string()),
        Action::Delete => Some("no DSNs".to_string()),
        _ => request.reason.clone(),
    };
    server
        .audit(AuditEntry {
            actor: actor.0.clone(),
            action: format!("{name} started"),
            query: Some(query.clone()),
            count: Some(total),
            detail: detail.clone(),
        })
        .await?;
    let reason = request
        .reason
        .clone()
        .unwrap_or_else(|| format!("{} {query}", actor.0));
    let spec = BulkSpec {
        ids,
        ndr,
        actor: actor.0,
        reason,
        detail,
        query: query.clone(),
    };
    // On a shared store the job is recorded, for another node to finish if this one
    // goes away (docs/SCALE-OUT.md); one node has no one to hand it to.
    let shared = super::jobs::record_start(&server, &name, &spec).await?;
    let runner = server.clone();
    let job = server
        .jobs
        .start(&name, query, "messages", total, move |job| {
            run(runner, job, action, spec, 0, shared)
        });
    Ok(Json(serde_json::json!({ "job": job.id, "total": total })))
}

/// What a bulk action does, as recorded for another node to finish on a shared store.
#[derive(Serialize, Deserialize)]
struct BulkSpec {
    ids: Vec<String>,
    ndr: bool,
    actor: String,
    /// Kept with quarantined mail.
    reason: String,
    /// For the audit log.
    detail: Option<String>,
    query: String,
}

/// Finishes a bulk action another node started (`jobs::take_over_orphans`).
pub(super) async fn resume(
    server: &Arc<Server>,
    orphan: lazaret_store::SharedJob,
) -> Result<(), ApiError> {
    let id = orphan.id;
    let spec: BulkSpec = super::jobs::read_spec(server, &orphan).await?;
    let action = match Action::parse(&orphan.action) {
        Ok(action) => action,
        Err(e) => {
            // An action this version does not know: ended, like a spec it cannot read.
            super::jobs::record_end(server, Some(id), false).await;
            return Err(e);
        }
    };
    let total = spec.ids.len() as u64;
    let from = (orphan.done as usize).min(spec.ids.len());
    server
        .audit(AuditEntry {
            actor: spec.actor.clone(),
            action: format!("{} resumed", orphan.action),
            query: Some(spec.query.clone()),
            count: Some(total - from as u64),
            detail: Some(format!(
                "node {} went away after {from} of {total}; finished here",
                orphan.from_node
            )),
        })
        .await?;
    tracing::info!(
        "taking over {} job {id} from node {} at {from} of {total}",
        orphan.action,
        orphan.from_node
    );
    let runner = server.clone();
    let query = format!("{} (resumed from {})", spec.query, orphan.from_node);
    server
        .jobs
        .start(&orphan.action, query, "messages", total, move |job| {
            job.advance(from as u64);
            run(runner, job, action, spec, from, Some(id))
        });
    Ok(())
}

/// Runs the job from item `from` on, keeping its record (if shared) up to date.
async fn run(
    server: Arc<Server>,
    job: Arc<Job>,
    action: Action,
    spec: BulkSpec,
    from: usize,
    shared: Option<i64>,
) -> Result<serde_json::Value, ApiError> {
    let BulkSpec {
        ids,
        ndr,
        actor,
        reason,
        detail,
        ..
    } = spec;
    let outcome: Result<serde_json::Value, ApiError> = async {
        let mut total = ActionReport::default();
        let mut frozen_left = 0;
        let mut done = from as u64;
        for chunk in ids[from.min(ids.len())..].chunks(BATCH) {
            let chunk = chunk.to_vec();
            let n = chunk.len() as u64;
            let report = match action {
                Action::Quarantine => {
                    let (actor, reason) = (actor.clone(), reason.clone());
                    server
                        .store_call(move |s| s.quarantine(&chunk, &actor, &reason))
                        .await?
                }
                Action::Restore => {
                    server
                        .store_call(move |s| s.quarantine_restore(&chunk))
                        .await?
                }
                Action::Delete | Action::Purge => {
                    let dsns = if ndr {
                        bounces(&server, &chunk).await?
                    } else {
                        Vec::new()
                    };
                    server.store_call(move |s| s.remove(&chunk, dsns)).await?
                }
                Action::Freeze | Action::Thaw => {
                    let frozen = action == Action::Freeze;
                    let queued: Vec<String> = chunk
                        .iter()
                        .filter(|i| i.starts_with('q'))
                        .cloned()
                        .collect();
                    let changed = server
                        .store_call(move |s| s.items_set_frozen(&queued, frozen))
                        .await?;
                    ActionReport {
                        done: changed,
                        skipped: n - changed,
                        ..ActionReport::default()
                    }
                }
                Action::Retry => {
                    let queued: Vec<String> = chunk
                        .iter()
                        .filter(|i| i.starts_with('q'))
                        .cloned()
                        .collect();
                    let retried = server
                        .store_call(move |s| s.items_retry_now(&queued))
                        .await?;
                    frozen_left += retried.frozen;
                    ActionReport {
                        done: retried.due,
                        skipped: n - retried.due,
                        ..ActionReport::default()
                    }
                }
            };
            for user in &report.users {
                let _ = server.mailbox_events.send(user.clone());
            }
            merge(&mut total, report);
            job.advance(n);
            done += n;
            if let Some(id) = shared {
                server
                    .store_call(move |s| s.shared_job_progress(id, done))
                    .await?;
            }
        }
        if matches!(
            action,
            Action::Restore | Action::Thaw | Action::Delete | Action::Retry
        ) {
            server.queue_wake.notify_one();
            server.outbound_wake.notify_one();
        }
        server
            .audit(AuditEntry {
                actor,
                action: job.action.clone(),
                query: Some(job.query.clone()),
                count: Some(total.done),
                detail: Some(match detail {
                    Some(d) => format!(
                        "{d}; {} skipped, {} failed",
                        total.skipped,
                        total.failed.len()
                    ),
                    None => format!("{} skipped, {} failed", total.skipped, total.failed.len()),
                }),
            })
            .await?;
        Ok(serde_json::json!({
            "action": job.action,
            "verb": action.past(),
            "done": total.done,
            "skipped": total.skipped,
            "failed": total.failed.iter().map(|(id, why)| serde_json::json!({"id": id, "error": why})).collect::<Vec<_>>(),
            "created": total.created,
            "frozen": frozen_left,
        }))
    }
    .await;
    super::jobs::record_end(&server, shared, outcome.is_ok()).await;
    outcome
}

fn merge(total: &mut ActionReport, report: ActionReport) {
    total.done += report.done;
    total.skipped += report.skipped;
    for f in report.failed {
        if total.failed.len() < MAX_LISTED {
            total.failed.push(f);
        }
    }
    if total.created.len() < 10 * BATCH {
        total.created.extend(report.created);
    }
}

/// DSNs ("deleted by the administrator") for the queued messages among `ids` that may
/// be bounced: not from the null sender, not flagged by the scanner.
async fn bounces(server: &Arc<Server>, ids: &[String]) -> Result<Vec<Incoming>, ApiError> {
    let filters = Filters {
        ids: Some(ids.iter().filter(|i| i.starts_with('q')).cloned().collect()),
        ..Filters::default()
    };
    let queued = server
        .store_call(move |s| s.find(&[Place::Queues], &filters, None, 0, None))
        .await?
        .messages;
    let mut out = Vec::new();
    for msg in queued {
        if msg.from.is_empty() || msg.verdict.is_some() {
            continue;
        }
        let blob = msg.message.clone();
        let original = server
            .store_call(move |s| s.message_head(&blob))
            .await
            .unwrap_or_default();
        let failed: Vec<dsn::FailedRecipient> = msg
            .to
            .iter()
            .map(|rcpt| dsn::FailedRecipient {
                address: rcpt.clone(),
                status: "5.3.0".into(),
                diagnostic: "deleted from the queue by the administrator".into(),
                remote_mta: None,
            })
            .collect();
        let dsn_id = lazaret_store::new_message_id();
        let report = dsn::Report {
            hostname: &server.config.hostname,
            queue_id: &msg.message,
            arrival: msg.date,
            original: &original,
            failed: &failed,
        };
        out.push(Incoming {
            id: dsn_id.clone(),
            mail_from: String::new(),
            rcpt_to: vec![msg.from.clone()],
            helo: server.config.hostname.clone(),
            peer: "127.0.0.1".into(),
            data: dsn::build(&report, &msg.from, &dsn_id),
            scan: None,
            via: lazaret_store::Via::Server("dsn"),
            auth: None,
        });
    }
    Ok(out)
}

pub async fn quarantine_show(
    State(server): State<Arc<Server>>,
    Path(id): Path<String>,
) -> Result<Json<QuarantineDetail>, ApiError> {
    Ok(Json(
        server.store_call(move |s| s.quarantine_detail(&id)).await?,
    ))
}
