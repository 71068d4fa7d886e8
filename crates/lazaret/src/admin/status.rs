//! Status at a glance, the inbound SMTP switch and the audit log.

use super::{Actor, ApiError};
use crate::server::Server;
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use lazaret_core::Duration;
use lazaret_store::{AuditEntry, AuditRecord};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Serialize)]
pub struct Listener {
    name: &'static str,
    address: String,
    up: bool,
}

pub async fn status(
    State(server): State<Arc<Server>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (stats, outbound_disabled, unscanned, nodes) = server
        .store_call(|s| {
            Ok((
                s.stats()?,
                s.outbound_disabled()?,
                s.unscanned_inbound()?,
                s.nodes()?,
            ))
        })
        .await?;
    let s = server.clone();
    let signatures = tokio::task::spawn_blocking(move || {
        s.scanner.reload_if_changed();
        super::scan::view(&s.scanner, true)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let queues = super::outbound::queue_list(&server).await?;
    let last_backup = super::backup::last(&server).await;
    let lockdown = super::runbook::current(&server).await;
    let connectors = super::outbound::connectors(&server).await?;
    let smtp_up = server.smtp.is_up();
    let access = server.access.current();
    let mut listeners: Vec<Listener> = server
        .smtp
        .addresses()
        .iter()
        .map(|a| Listener {
            name: "smtp",
            address: a.to_string(),
            up: smtp_up,
        })
        .collect();
    for (name, addresses) in [
        ("submission", &server.submission_addresses),
        ("submissions", &server.submissions_addresses),
        ("imap", &server.imap_addresses),
        ("imaps", &server.imaps_addresses),
        ("pop3", &server.pop3_addresses),
    ] {
        listeners.extend(addresses.iter().map(|a| Listener {
            name,
            address: a.to_string(),
            up: true,
        }));
    }
    listeners.push(Listener {
        name: "admin",
        address: server.admin_address.to_string(),
        up: true,
    });
    Ok(Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "hostname": server.config.hostname,
        "uptime_secs": server.started.elapsed().as_secs(),
        "listeners": listeners,
        "user_access": if access.enabled { "enabled" } else { "disabled" },
        "user_access_message": access.message,
        "queues": queues,
        "outbound": if outbound_disabled { "disabled" } else { "enabled" },
        "outbound_connections": server.outbound.active_workers(),
        "connectors": connectors,
        "store": stats,
        // The servers sharing the store (empty: this one alone, the embedded store).
        "nodes": nodes,
        // Where message bodies go: "fs" (packs in data_dir) or the bucket.
        "blobs": blobs_status(&server.config.store),
        "disk": {
            "free_bytes": server.disk.free(),
            "min_free_bytes": server.disk.min_free(),
            "refusing_mail": server.disk.refusing(),
        },
        "scan": signatures,
        "dkim": server.dkim_signers().domains().into_iter()
            .map(|(domain, selector)| serde_json::json!({"domain": domain, "selector": selector}))
            .collect::<Vec<_>>(),
        // What the inbound checks do with a failure (null: the checks are off).
        "auth_checks": server.config.auth_checks.enabled.then(|| {
            let c = &server.config.auth_checks;
            serde_json::json!({
                "dmarc_reject": c.dmarc_reject,
                "dmarc_quarantine": c.dmarc_quarantine,
                "own_domain_quarantine": c.own_domain_quarantine,
            })
        }),
        "outbound_tls": server.outbound.tls_status(),
        "unscanned": unscanned,
        "smtp_sessions": server.config.smtp.max_sessions - server.sessions.available_permits(),
        "last_backup": last_backup,
        "lockdown": lockdown,
        "outbreak_hold": server.config.outbreak.hold_growth.map(|r| serde_json::json!({
            "growth": r.to_string(),
            "senders": server.config.outbreak.hold_senders,
            "notify": server.config.outbreak.notify,
        })),
        "rate_limits": {
            "submission": {
                "refused": server.rate_submission.refused(),
                "limited_now": server.rate_submission.limited_now(),
            },
            "inbound": {
                "refused": server.rate_inbound.refused(),
                "limited_now": server.rate_inbound.limited_now(),
            },
            "connections": {
                "refused": server.connection_gate.refused(),
                "limited_now": server.connection_gate.limited_now(),
                "busiest": server.connection_gate.busiest(5).into_iter()
                    .map(|(ip, open)| serde_json::json!({"address": ip.to_string(), "open": open}))
                    .collect::<Vec<_>>(),
            },
        },
    })))
}

pub async fn smtp_switch(
    State(server): State<Arc<Server>>,
    Extension(actor): Extension<Actor>,
    Path(action): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let _switching = server.switching.lock().await;
    let was_up = server.smtp.is_up();
    match action.as_str() {
        "stop" => {
            server.smtp.stop();
        }
        "start" => server
            .smtp
            .start_accepting(server.clone())
            .await
            .map_err(|e| ApiError::Internal(format!("{e:#}")))?,
        other => {
            return Err(ApiError::BadRequest(format!(
                "unknown action {other:?}: use start or stop"
            )))
        }
    }
    let value = if action == "stop" {
        "stopped"
    } else {
        "running"
    };
    server
        .store_call(move |s| s.set_setting("smtp.inbound", value))
        .await?;
    server
        .audit(AuditEntry {
            actor: actor.0,
            action: format!("smtp {action}"),
            query: None,
            count: None,
            detail: Some(format!(
                "listener was {}",
                if was_up { "up" } else { "down" }
            )),
        })
        .await?;
    Ok(Json(serde_json::json!({ "smtp": value, "was_up": was_up })))
}

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    pub since: Option<String>,
}

pub async fn audit(
    State(server): State<Arc<Server>>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<AuditRecord>>, ApiError> {
    let since = match q.since.as_deref() {
        None | Some("") => 0,
        Some(text) => {
            let d = Duration::parse(text).map_err(|e| ApiError::BadRequest(e.to_string()))?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            now - d.0 as i64
        }
    };
    Ok(Json(
        server.store_call(move |s| s.audit_since(since)).await?,
    ))
}

#[derive(Deserialize, Default)]
pub struct AccessChange {
    pub message: Option<String>,
}

/// `POST /api/access/disable` (optional `{"message": "..."}`) or `/api/access/enable`.
pub async fn access_switch(
    State(server): State<Arc<Server>>,
    Extension(actor): Extension<Actor>,
    Path(action): Path<String>,
    body: Option<Json<AccessChange>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    use crate::access::gate::{AccessState, DEFAULT_MESSAGE, SETTING};
    let message = body
        .and_then(|Json(b)| b.message)
        .map(|m| m.trim().replace(['\r', '\n'], " "))
        .filter(|m| !m.is_empty());
    let was = server.access.current();
    let state = match action.as_str() {
        "disable" => AccessState {
            enabled: false,
            message: Some(message.unwrap_or_else(|| DEFAULT_MESSAGE.into())),
        },
        "enable" => AccessState {
            enabled: true,
            message: None,
        },
        other => {
            return Err(ApiError::BadRequest(format!(
                "unknown action {other:?}: use disable or enable"
            )))
        }
    };
    let _switching = server.switching.lock().await;
    // Persist first: once the reply says "disabled", a restart must keep it so.
    let stored = state.message.clone().unwrap_or_default();
    server
        .store_call(move |s| s.set_setting(SETTING, &stored))
        .await?;
    server.access.set(state.clone());
    server
        .audit(AuditEntry {
            actor: actor.0,
            action: format!("access {action}"),
            query: state.message.clone(),
            count: None,
            detail: Some(format!(
                "access was {}",
                if was.enabled { "enabled" } else { "disabled" }
            )),
        })
        .await?;
    Ok(Json(
        serde_json::json!({ "user_access": state, "was_enabled": was.enabled }),
    ))
}

fn blobs_status(store: &lazaret_core::config::StoreConfig) -> serde_json::Value {
    match store.blobs {
        lazaret_core::config::BlobBackend::Fs => serde_json::json!({"backend": "fs"}),
        lazaret_core::config::BlobBackend::S3 => serde_json::json!({
            "backend": "s3",
            "bucket": store.bucket,
            "prefix": store.prefix,
            "endpoint": store.endpoint,
        }),
    }
}
