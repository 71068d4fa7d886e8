//! `GET /api/dkim` (keys and the DNS records to publish), `POST /api/dkim/{domain}`
//! (make a key: `{selector, algorithm}`), `POST /api/dkim/{domain}/rotate` (a new active
//! key, the old one kept), `DELETE /api/dkim/{domain}?selector=S`. Each change reloads
//! the signers at once and is audited.

use super::{Actor, ApiError};
use crate::dkim::{Algorithm, KeyInfo, KeyStore};
use crate::server::Server;
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use lazaret_store::{AuditEntry, StoreError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A key with the record that publishes it.
#[derive(Serialize)]
pub struct KeyView {
    #[serde(flatten)]
    key: KeyInfo,
    dns_name: String,
    dns_txt: String,
}

impl From<KeyInfo> for KeyView {
    fn from(key: KeyInfo) -> KeyView {
        KeyView {
            dns_name: key.dns_name(),
            dns_txt: key.dns_txt(),
            key,
        }
    }
}

fn store(server: &Server) -> KeyStore {
    KeyStore::new(&server.config.data_dir)
}

fn failed(e: anyhow::Error) -> ApiError {
    ApiError::BadRequest(format!("{e:#}"))
}

pub async fn list(State(server): State<Arc<Server>>) -> Result<Json<Vec<KeyView>>, ApiError> {
    let keys = store(&server)
        .list()
        .map_err(|e| ApiError::Internal(format!("{e:#}")))?;
    Ok(Json(keys.into_iter().map(KeyView::from).collect()))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerateRequest {
    selector: Option<String>,
    /// ed25519 | rsa2048 (the default: every receiver checks RSA).
    algorithm: Option<String>,
}

fn algorithm(text: Option<&str>) -> Result<Algorithm, ApiError> {
    match text {
        None => Ok(Algorithm::Rsa2048),
        Some(a) => Algorithm::parse(a).ok_or_else(|| {
            ApiError::BadRequest(format!("algorithm {a:?}: use ed25519 or rsa2048"))
        }),
    }
}

async fn generate_key(
    server: Arc<Server>,
    actor: Actor,
    domain: String,
    selector: Option<String>,
    algorithm: Algorithm,
    action: &str,
) -> Result<Json<KeyView>, ApiError> {
    let s = server.clone();
    // RSA key generation takes a while (a second or more): off the async threads.
    let activate = action == "rotate";
    let key = tokio::task::spawn_blocking(move || {
        let (store, now) = (store(&s), crate::deliver::now());
        if activate {
            store.generate_active(&domain, selector.as_deref(), algorithm, now)
        } else {
            store.generate(&domain, selector.as_deref(), algorithm, now)
        }
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(failed)?;
    let detail = format!("selector {} ({:?})", key.selector, key.algorithm);
    changed(&server, actor, action, &key.domain, 1, detail).await?;
    Ok(Json(key.into()))
}

/// After a change: the signers read the keys again at once, and the audit log says
/// who did what.
async fn changed(
    server: &Arc<Server>,
    actor: Actor,
    action: &str,
    domain: &str,
    count: u64,
    detail: String,
) -> Result<(), ApiError> {
    server
        .reload_dkim()
        .map_err(|e| ApiError::Internal(format!("{e:#}")))?;
    server
        .audit(AuditEntry {
            actor: actor.0,
            action: format!("dkim {action}"),
            query: Some(domain.to_string()),
            count: Some(count),
            detail: Some(detail),
        })
        .await?;
    Ok(())
}

pub async fn generate(
    State(server): State<Arc<Server>>,
    Extension(actor): Extension<Actor>,
    Path(domain): Path<String>,
    Json(request): Json<GenerateRequest>,
) -> Result<Json<KeyView>, ApiError> {
    let algorithm = algorithm(request.algorithm.as_deref())?;
    generate_key(
        server,
        actor,
        domain,
        request.selector,
        algorithm,
        "generate",
    )
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RotateRequest {
    /// Defaults to the algorithm of the domain's active key.
    algorithm: Option<String>,
    selector: Option<String>,
}

pub async fn rotate(
    State(server): State<Arc<Server>>,
    Extension(actor): Extension<Actor>,
    Path(domain): Path<String>,
    Json(request): Json<RotateRequest>,
) -> Result<Json<KeyView>, ApiError> {
    let keys = store(&server)
        .list()
        .map_err(|e| ApiError::Internal(format!("{e:#}")))?;
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    let Some(active) = keys.iter().find(|k| k.domain == domain && k.active) else {
        return Err(ApiError::Store(StoreError::NotFound(format!(
            "{domain} has no DKIM key to rotate: `lazaret dkim generate {domain}` makes one"
        ))));
    };
    let algorithm = match request.algorithm.as_deref() {
        None => active.algorithm,
        a => algorithm(a)?,
    };
    // A standby key (made, its record published) takes over; else a new key does.
    if request.selector.is_none() && request.algorithm.is_none() {
        let ks = store(&server);
        if let Some(key) = ks.activate_standby(&domain).map_err(failed)? {
            let detail = format!("selector {} now signs", key.selector);
            changed(&server, actor, "rotate", &key.domain, 1, detail).await?;
            return Ok(Json(key.into()));
        }
    }
    generate_key(server, actor, domain, request.selector, algorithm, "rotate").await
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoveQuery {
    selector: Option<String>,
}

pub async fn remove(
    State(server): State<Arc<Server>>,
    Extension(actor): Extension<Actor>,
    Path(domain): Path<String>,
    Query(q): Query<RemoveQuery>,
) -> Result<Json<Vec<KeyView>>, ApiError> {
    let gone = store(&server)
        .remove(&domain, q.selector.as_deref())
        .map_err(|e| ApiError::Store(StoreError::NotFound(format!("{e:#}"))))?;
    let selectors: Vec<&str> = gone.iter().map(|k| k.selector.as_str()).collect();
    let detail = selectors.join(", ");
    changed(&server, actor, "remove", &domain, gone.len() as u64, detail).await?;
    Ok(Json(gone.into_iter().map(KeyView::from).collect()))
}
