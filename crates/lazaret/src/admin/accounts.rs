//! Domains and users.

use super::{Actor, ApiError};
use crate::server::Server;
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use lazaret_store::{AuditEntry, DomainInfo, UserInfo};
use serde::Deserialize;
use std::sync::Arc;

async fn audited(
    server: &Arc<Server>,
    actor: Actor,
    action: &str,
    target: &str,
    count: Option<u64>,
) -> Result<(), ApiError> {
    server
        .audit(AuditEntry {
            actor: actor.0,
            action: action.to_string(),
            query: Some(target.to_string()),
            count,
            detail: None,
        })
        .await?;
    Ok(())
}

#[derive(Deserialize)]
pub struct NewDomain {
    pub name: String,
}

pub async fn domain_list(
    State(server): State<Arc<Server>>,
) -> Result<Json<Vec<DomainInfo>>, ApiError> {
    Ok(Json(server.store_call(|s| s.domain_list()).await?))
}

pub async fn domain_add(
    State(server): State<Arc<Server>>,
    Extension(actor): Extension<Actor>,
    Json(d): Json<NewDomain>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let name = d.name.trim().to_ascii_lowercase();
    let n = name.clone();
    server.store_call(move |s| s.domain_add(&n)).await?;
    audited(&server, actor, "domain add", &name, None).await?;
    Ok(Json(serde_json::json!({ "domain": name })))
}

pub async fn domain_remove(
    State(server): State<Arc<Server>>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let n = name.clone();
    server.store_call(move |s| s.domain_remove(&n)).await?;
    audited(&server, actor, "domain remove", &name, None).await?;
    Ok(Json(serde_json::json!({ "removed": name })))
}

#[derive(Deserialize)]
pub struct NewUser {
    pub address: String,
    pub password: String,
}

pub async fn user_list(State(server): State<Arc<Server>>) -> Result<Json<Vec<UserInfo>>, ApiError> {
    Ok(Json(server.store_call(|s| s.user_list()).await?))
}

pub async fn user_add(
    State(server): State<Arc<Server>>,
    Extension(actor): Extension<Actor>,
    Json(u): Json<NewUser>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let address = u.address.trim().to_ascii_lowercase();
    let a = address.clone();
    server
        .store_call(move |s| s.user_add(&a, &u.password))
        .await?;
    audited(&server, actor, "user add", &address, None).await?;
    Ok(Json(serde_json::json!({ "user": address })))
}

#[derive(Deserialize)]
pub struct RemoveOptions {
    #[serde(default)]
    pub delete_mail: bool,
}

pub async fn user_remove(
    State(server): State<Arc<Server>>,
    Extension(actor): Extension<Actor>,
    Path(address): Path<String>,
    Query(opts): Query<RemoveOptions>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let a = address.clone();
    let deleted = server
        .store_call(move |s| s.user_remove(&a, opts.delete_mail))
        .await?;
    audited(&server, actor, "user remove", &address, Some(deleted)).await?;
    Ok(Json(
        serde_json::json!({ "removed": address, "messages_deleted": deleted }),
    ))
}

#[derive(Deserialize)]
pub struct NewPassword {
    pub password: String,
}

pub async fn user_passwd(
    State(server): State<Arc<Server>>,
    Extension(actor): Extension<Actor>,
    Path(address): Path<String>,
    Json(p): Json<NewPassword>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let a = address.clone();
    server
        .store_call(move |s| s.user_set_password(&a, &p.password))
        .await?;
    audited(&server, actor, "user passwd", &address, None).await?;
    Ok(Json(serde_json::json!({ "user": address })))
}
