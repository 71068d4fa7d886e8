//! Outbound controls: connectors and their schedules, `outbound disable|enable`.

use super::{Actor, ApiError};
use crate::deliver::connectors::setting_key;
use crate::deliver::next_hop;
use crate::server::Server;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use lazaret_core::state::SYSTEM_QUEUES;
use lazaret_store::{AuditEntry, QueueSummary};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Serialize)]
pub struct ConnectorView {
    name: String,
    domains: Vec<String>,
    /// `smarthost` or `mx`.
    route: &'static str,
    smarthost: Option<String>,
    /// `may`, `encrypt` or `verify`: the TLS its connections need.
    tls: lazaret_core::config::OutboundTls,
    schedule: String,
    /// Whether the schedule lets it make attempts right now.
    open: bool,
    /// Its queues and how many messages wait in them.
    queues: Vec<QueueCount>,
    messages: u64,
}

#[derive(Serialize)]
struct QueueCount {
    name: String,
    messages: u64,
}

/// The queue list with `held` filled in for queues whose connector's schedule is
/// closed right now (the store knows only about frozen queues and outbound disable).
pub async fn queue_list(server: &Arc<Server>) -> Result<Vec<QueueSummary>, ApiError> {
    let mut queues = server.store_call(|s| s.queue_list()).await?;
    for q in &mut queues {
        if q.held.is_some() || SYSTEM_QUEUES.contains(&q.name.as_str()) {
            continue;
        }
        if let Ok(route) = next_hop::route_of(&q.name, server.connectors.list()) {
            let (schedule, open) = server.connectors.schedule(&route.connector.name);
            if !open {
                q.held = Some(format!(
                    "connector {} schedule {schedule:?}",
                    route.connector.name
                ));
            }
        }
    }
    Ok(queues)
}

pub async fn connectors(server: &Arc<Server>) -> Result<Vec<ConnectorView>, ApiError> {
    let queues = server.store_call(|s| s.queue_list()).await?;
    Ok(server
        .connectors
        .list()
        .iter()
        .map(|c| {
            let (schedule, open) = server.connectors.schedule(&c.name);
            let mine: Vec<QueueCount> = queues
                .iter()
                .filter(|q| !SYSTEM_QUEUES.contains(&q.name.as_str()))
                .filter(|q| {
                    next_hop::route_of(&q.name, server.connectors.list())
                        .is_ok_and(|r| r.connector.name == c.name)
                })
                .map(|q| QueueCount {
                    name: q.name.clone(),
                    messages: q.messages,
                })
                .collect();
            ConnectorView {
                name: c.name.clone(),
                domains: c.domains.clone(),
                route: if c.smarthost.is_some() {
                    "smarthost"
                } else {
                    "mx"
                },
                smarthost: c.smarthost.clone(),
                tls: c.tls,
                schedule,
                open,
                messages: mine.iter().map(|q| q.messages).sum(),
                queues: mine,
            }
        })
        .collect())
}

pub async fn list(State(server): State<Arc<Server>>) -> Result<Json<Vec<ConnectorView>>, ApiError> {
    Ok(Json(connectors(&server).await?))
}

#[derive(Deserialize)]
pub struct ScheduleBody {
    pub schedule: String,
}

/// `PUT /api/connectors/{name}/schedule` with `{"schedule": "never"}`.
pub async fn set_schedule(
    State(server): State<Arc<Server>>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    Json(body): Json<ScheduleBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let text = body.schedule.trim().to_string();
    let _switching = server.switching.lock().await;
    let old = server.connectors.schedule(&name).0;
    server
        .connectors
        .set_schedule(&name, &text)
        .map_err(ApiError::BadRequest)?;
    let (key, value) = (setting_key(&name), text.clone());
    server
        .store_call(move |s| s.set_setting(&key, &value))
        .await?;
    server.outbound_wake.notify_one();
    server
        .audit(AuditEntry {
            actor: actor.0,
            action: "connector schedule".into(),
            query: Some(format!("{name} {text}")),
            count: None,
            detail: Some(format!("was {old}")),
        })
        .await?;
    let (schedule, open) = server.connectors.schedule(&name);
    Ok(Json(
        serde_json::json!({ "connector": name, "schedule": schedule, "open": open }),
    ))
}

/// `POST /api/outbound/disable|enable`.
pub async fn switch(
    State(server): State<Arc<Server>>,
    Extension(actor): Extension<Actor>,
    Path(action): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let disabled = match action.as_str() {
        "disable" => true,
        "enable" => false,
        other => {
            return Err(ApiError::BadRequest(format!(
                "unknown action {other:?}: use disable or enable"
            )))
        }
    };
    server
        .store_call(move |s| s.set_outbound_disabled(disabled))
        .await?;
    server.outbound_wake.notify_one();
    let held: u64 = server
        .store_call(|s| s.queue_list())
        .await?
        .iter()
        .filter(|q| !SYSTEM_QUEUES.contains(&q.name.as_str()))
        .map(|q| q.messages)
        .sum();
    server
        .audit(AuditEntry {
            actor: actor.0,
            action: format!("outbound {action}"),
            query: None,
            count: Some(held),
            detail: Some(format!("{held} message(s) in remote queues")),
        })
        .await?;
    Ok(Json(serde_json::json!({
        "outbound": if disabled { "disabled" } else { "enabled" },
        "remote_messages": held,
    })))
}
