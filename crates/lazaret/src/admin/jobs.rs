//! Long admin work (bulk actions, import, reindex) runs as a job: the call that starts
//! it returns at once with the job's id, and `GET /api/jobs/{id}` shows its progress,
//! so the CLI draws a progress bar and the web console a gauge.

use super::ApiError;
use crate::server::Server;
use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Finished jobs kept for `GET /api/jobs/{id}`.
const KEPT: usize = 100;

pub struct Job {
    pub id: u64,
    pub action: String,
    pub query: String,
    /// What `total` and `done` count: `messages` or `bytes`.
    pub unit: &'static str,
    pub total: AtomicU64,
    pub done: AtomicU64,
    started: i64,
    outcome: Mutex<Option<Result<serde_json::Value, String>>>,
}

impl Job {
    pub fn advance(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    fn finish(&self, outcome: Result<serde_json::Value, String>) {
        *self.outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
    }

    fn view(&self) -> JobView {
        let outcome = self
            .outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let (state, report, error) = match outcome {
            None => ("running", None, None),
            Some(Ok(r)) => ("done", Some(r), None),
            Some(Err(e)) => ("failed", None, Some(e)),
        };
        JobView {
            id: self.id,
            action: self.action.clone(),
            query: self.query.clone(),
            unit: self.unit,
            total: self.total.load(Ordering::Relaxed),
            done: self.done.load(Ordering::Relaxed),
            started: self.started,
            state,
            report,
            error,
        }
    }
}

#[derive(Serialize)]
pub struct JobView {
    id: u64,
    action: String,
    query: String,
    unit: &'static str,
    total: u64,
    done: u64,
    started: i64,
    /// running | done | failed
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    report: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Default)]
pub struct Jobs {
    next: AtomicU64,
    jobs: Mutex<BTreeMap<u64, Arc<Job>>>,
}

impl Jobs {
    /// Runs `work` in the background as a new job; returns the job at once.
    pub fn start<F, Fut>(
        &self,
        action: &str,
        query: String,
        unit: &'static str,
        total: u64,
        work: F,
    ) -> Arc<Job>
    where
        F: FnOnce(Arc<Job>) -> Fut,
        Fut: std::future::Future<Output = Result<serde_json::Value, ApiError>> + Send + 'static,
    {
        let job = Arc::new(Job {
            id: self.next.fetch_add(1, Ordering::Relaxed) + 1,
            action: action.to_string(),
            query,
            unit,
            total: AtomicU64::new(total),
            done: AtomicU64::new(0),
            started: crate::deliver::now(),
            outcome: Mutex::new(None),
        });
        {
            let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
            jobs.insert(job.id, job.clone());
            while jobs.len() > KEPT {
                let Some(oldest) = jobs.keys().next().copied() else {
                    break;
                };
                jobs.remove(&oldest);
            }
        }
        let future = work(job.clone());
        let handle = job.clone();
        tokio::spawn(async move {
            let outcome = future.await.map_err(|e| e.to_string());
            if let Err(e) = &outcome {
                tracing::warn!(job = handle.id, action = %handle.action, error = %e, "job failed");
            }
            handle.finish(outcome);
            let _ = tokio::task::spawn_blocking(crate::memory::give_back).await;
        });
        job
    }

    pub fn get(&self, id: u64) -> Option<Arc<Job>> {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    /// Whether a job of this kind (`import`, `reindex`, ...) is still running.
    pub fn running(&self, action: &str) -> bool {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .any(|j| {
                j.action == action
                    && j.outcome
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .is_none()
            })
    }

    /// Whether any job is still running.
    pub fn any_running(&self) -> bool {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .any(|j| {
                j.outcome
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_none()
            })
    }

    pub fn list(&self) -> Vec<Arc<Job>> {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

/// Takes over, every `LOOK_EVERY`, the jobs of nodes that went away (bulk actions and
/// rescans, on a shared store only) and finishes them here. The node that starts a
/// job records it with `Store::shared_job_start`.
pub fn take_over_orphans(server: &Arc<Server>) {
    const LOOK_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
    if !server.config.store.is_shared() {
        return;
    }
    let server = server.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(LOOK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let orphan = match server.store_call(|s| s.shared_job_take_orphan()).await {
                Ok(Some(orphan)) => orphan,
                Ok(None) => continue,
                Err(e) => {
                    tracing::debug!("cannot look for other nodes' jobs: {e}");
                    continue;
                }
            };
            tracing::info!(
                "taking over {} job {} from node {}",
                orphan.action,
                orphan.id,
                orphan.from_node
            );
            let resumed = match orphan.action.as_str() {
                "rescan" => super::scan::resume_rescan(&server, orphan).await,
                _ => super::actions::resume(&server, orphan).await,
            };
            if let Err(e) = resumed {
                tracing::warn!("cannot finish another node's job: {e}");
            }
        }
    });
}

/// A shared job's spec, as its node wrote it; one this version cannot read is ended
/// (not taken up again) and left to the admin.
pub(super) async fn read_spec<T: serde::de::DeserializeOwned>(
    server: &Arc<Server>,
    orphan: &lazaret_store::SharedJob,
) -> Result<T, ApiError> {
    match serde_json::from_str(&orphan.spec) {
        Ok(spec) => Ok(spec),
        Err(e) => {
            record_end(server, Some(orphan.id), false).await;
            Err(ApiError::BadRequest(format!(
                "{} job {} of node {} cannot be read here ({e}); run it again",
                orphan.action, orphan.id, orphan.from_node
            )))
        }
    }
}

/// Records that a shared job ended (nothing for a job of one node).
pub(super) async fn record_end(server: &Arc<Server>, shared: Option<i64>, ok: bool) {
    if let Some(id) = shared {
        if let Err(e) = server.store_call(move |s| s.shared_job_end(id, ok)).await {
            tracing::warn!("cannot record the end of job {id}: {e}");
        }
    }
}

/// Records a job about to start on a shared store (None on one node).
pub(super) async fn record_start<T: serde::Serialize>(
    server: &Arc<Server>,
    action: &str,
    spec: &T,
) -> Result<Option<i64>, ApiError> {
    if !server.config.store.is_shared() {
        return Ok(None);
    }
    let text = serde_json::to_string(spec).map_err(|e| ApiError::Internal(e.to_string()))?;
    let action = action.to_string();
    Ok(server
        .store_call(move |s| s.shared_job_start(&action, &text))
        .await?)
}

pub async fn show(
    State(server): State<Arc<Server>>,
    Path(id): Path<u64>,
) -> Result<Json<JobView>, ApiError> {
    server.jobs.get(id).map(|j| Json(j.view())).ok_or_else(|| {
        ApiError::Store(lazaret_store::StoreError::NotFound(format!(
            "no job {id} (jobs are kept until the server restarts)"
        )))
    })
}

pub async fn list(State(server): State<Arc<Server>>) -> Json<Vec<JobView>> {
    Json(server.jobs.list().iter().map(|j| j.view()).collect())
}
