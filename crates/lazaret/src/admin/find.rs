//! `POST /api/find`: the filters of PRODUCT.md as the CLI and the web console send them
//! (durations and sizes as text), checked and turned into the store's query.

use super::ApiError;
use crate::server::Server;
use axum::extract::State;
use axum::Json;
use lazaret_core::units::{Duration, Size};
use lazaret_store::{Filters, Place, SortKey};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Filters as typed: `older_than: "2h"`, `larger_than: "1MB"`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilterArgs {
    pub subject: Option<String>,
    pub subject_re: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub body: Option<String>,
    pub attachment: Option<String>,
    pub sha256: Option<String>,
    pub signature: Option<String>,
    /// `dmarc=fail`, `spf=softfail,dkim=none`: what `[auth_checks]` found.
    pub auth: Option<String>,
    pub queue: Option<String>,
    pub mailbox: Option<String>,
    pub state: Option<String>,
    pub older_than: Option<String>,
    pub newer_than: Option<String>,
    pub larger_than: Option<String>,
    /// Members of this outbreak cluster (`lazaret clusters`).
    pub cluster: Option<i64>,
    /// Only these ids (`q12`, `m7`, `x3`).
    pub ids: Option<Vec<String>>,
}

impl FilterArgs {
    /// The filters as the admin typed them, for the audit log.
    pub fn describe(&self) -> String {
        let mut out = Vec::new();
        let mut add = |flag: &str, v: &Option<String>| {
            if let Some(v) = v {
                out.push(format!("--{flag} {v:?}"));
            }
        };
        add("subject", &self.subject);
        add("subject-re", &self.subject_re);
        add("from", &self.from);
        add("to", &self.to);
        add("body", &self.body);
        add("attachment", &self.attachment);
        add("sha256", &self.sha256);
        add("signature", &self.signature);
        add("auth", &self.auth);
        add("queue", &self.queue);
        add("mailbox", &self.mailbox);
        add("state", &self.state);
        add("older-than", &self.older_than);
        add("newer-than", &self.newer_than);
        add("larger-than", &self.larger_than);
        if let Some(cluster) = self.cluster {
            out.push(format!("--cluster {cluster}"));
        }
        if let Some(ids) = &self.ids {
            out.push(format!("--ids ({} given)", ids.len()));
        }
        out.join(" ")
    }

    pub fn is_empty(&self) -> bool {
        self.describe().is_empty()
    }

    pub fn to_filters(&self) -> Result<Filters, ApiError> {
        let bad =
            |flag: &str, e: &dyn std::fmt::Display| ApiError::BadRequest(format!("--{flag}: {e}"));
        let ago = |flag: &str, v: &Option<String>| ago(flag, v.as_deref());
        if let Some(state) = self.state.as_deref() {
            if !matches!(state, "ready" | "retry" | "frozen" | "all") {
                return Err(bad(
                    "state",
                    &format!("{state:?} is not one of ready, retry, frozen, all"),
                ));
            }
        }
        if self.queue.is_some() && self.mailbox.is_some() {
            return Err(ApiError::BadRequest(
                "give --queue or --mailbox, not both: a message is in one place".into(),
            ));
        }
        for (flag, v) in [
            ("subject", &self.subject),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if v.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return Err(bad(flag, &"is empty"));
            }
        }
        Ok(Filters {
            subject: self.subject.clone(),
            subject_re: self.subject_re.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
            body: self.body.clone(),
            attachment: self.attachment.clone(),
            sha256: self.sha256.clone(),
            signature: self.signature.clone(),
            auth: self.auth.clone(),
            queue: self.queue.clone(),
            mailbox: self.mailbox.clone(),
            state: self.state.clone(),
            received_before: ago("older-than", &self.older_than)?,
            received_after: ago("newer-than", &self.newer_than)?,
            quarantined_before: None,
            larger_than: self
                .larger_than
                .as_deref()
                .map(|s| {
                    Size::parse(s)
                        .map(|s| s.0)
                        .map_err(|e| bad("larger-than", &e))
                })
                .transpose()?,
            cluster: self.cluster,
            ids: self.ids.clone(),
        })
    }
}

/// The time `text` (a duration like `2h`) ago, as unix seconds; a bad duration is a
/// usage error naming `--flag`.
pub fn ago(flag: &str, text: Option<&str>) -> Result<Option<i64>, ApiError> {
    text.map(|d| {
        Duration::parse(d)
            .map(|d| crate::deliver::now() - d.as_std().as_secs() as i64)
            .map_err(|e| ApiError::BadRequest(format!("--{flag}: {e}")))
    })
    .transpose()
}

/// `--in queues|mailboxes|quarantine|all` (comma-separated also); by default live mail:
/// queues and mailboxes.
pub fn places(spec: Option<&str>) -> Result<Vec<Place>, ApiError> {
    let Some(spec) = spec else {
        return Ok(vec![Place::Queues, Place::Mailboxes]);
    };
    let mut out = Vec::new();
    for word in spec.split(',').map(str::trim) {
        match word {
            "queues" | "queue" => out.push(Place::Queues),
            "mailboxes" | "mailbox" => out.push(Place::Mailboxes),
            "quarantine" => out.push(Place::Quarantine),
            "all" => out.extend([Place::Queues, Place::Mailboxes, Place::Quarantine]),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "--in {other:?}: use queues, mailboxes, quarantine or all"
                )))
            }
        }
    }
    out.dedup();
    Ok(out)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FindRequest {
    #[serde(default)]
    pub filters: FilterArgs,
    #[serde(default, rename = "in")]
    pub places: Option<String>,
    #[serde(default)]
    pub sort: Option<SortKey>,
    #[serde(default)]
    pub limit: Option<usize>,
    /// Leave out the first `offset` matches (the next page).
    #[serde(default)]
    pub offset: usize,
    /// Only the ids, all of them (for piping into an action).
    #[serde(default)]
    pub ids_only: bool,
}

pub async fn find(
    State(server): State<Arc<Server>>,
    Json(request): Json<FindRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let filters = request.filters.to_filters()?;
    let places = places(request.places.as_deref())?;
    if request.ids_only {
        let ids = server
            .store_call(move |s| s.find_ids(&places, &filters))
            .await?;
        return Ok(Json(serde_json::json!({ "ids": ids })));
    }
    let (sort, offset, limit) = (request.sort, request.offset, request.limit);
    let found = server
        .store_call(move |s| s.find(&places, &filters, sort, offset, limit))
        .await?;
    Ok(Json(
        serde_json::to_value(found).map_err(|e| ApiError::Internal(e.to_string()))?,
    ))
}
