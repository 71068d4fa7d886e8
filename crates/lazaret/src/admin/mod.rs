//! The admin HTTP API. Every CLI admin command is a call here, with the bearer token
//! from `data_dir/admin.token`; the web console (`crate::console`) calls the same handlers.

pub mod accounts;
pub(crate) mod actions;
pub(crate) mod auth;
pub mod backup;
mod check;
pub mod clusters;
mod dkim;
mod error;
pub mod find;
mod import;
pub mod jobs;
pub(crate) mod messages;
mod metrics;
pub(crate) mod outbound;
pub(crate) mod queues;
pub mod runbook;
pub mod scan;
pub(crate) mod status;
mod tracking;

use crate::server::Server;
use axum::routing::{get, post, put};
use axum::Router;
use std::sync::Arc;

pub use error::ApiError;

/// Who did it, for the audit log: the CLI sends `X-Lazaret-Actor` (its OS user).
#[derive(Clone)]
pub struct Actor(pub String);

const OPENAPI: &str = include_str!("openapi.json");

/// How a listener serves the API and console: the console's cookie and origin checks
/// depend on it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

pub fn router(server: Arc<Server>, token: String, scheme: Scheme) -> Router {
    let token_copy = token.clone();
    let api = Router::new()
        .route("/api/status", get(status::status))
        .route("/api/smtp/{action}", post(status::smtp_switch))
        .route("/api/access/{action}", post(status::access_switch))
        .route("/api/queues", get(queues::list))
        .route("/api/queues/{action}", post(queues::set_state))
        .route("/api/queues/{name}/messages", get(messages::in_queue))
        .route(
            "/api/domains",
            get(accounts::domain_list).post(accounts::domain_add),
        )
        .route(
            "/api/domains/{name}",
            axum::routing::delete(accounts::domain_remove),
        )
        .route(
            "/api/users",
            get(accounts::user_list).post(accounts::user_add),
        )
        .route(
            "/api/users/{address}",
            axum::routing::delete(accounts::user_remove),
        )
        .route("/api/users/{address}/password", put(accounts::user_passwd))
        .route("/api/users/{address}/mailboxes", get(messages::mailboxes))
        .route(
            "/api/users/{address}/mailboxes/{mailbox}/messages",
            get(messages::in_mailbox),
        )
        .route("/api/messages/{id}/raw", get(messages::raw))
        .route("/api/find", post(find::find))
        .route("/api/actions/{action}", post(actions::act))
        .route("/api/quarantine/{id}", get(actions::quarantine_show))
        .route("/api/jobs", get(jobs::list))
        .route("/api/jobs/{id}", get(jobs::show))
        .route("/api/import", post(import::import))
        .route("/api/reindex", post(import::reindex))
        .route("/api/check", post(check::check))
        .route("/metrics", get(metrics::metrics))
        .route(
            "/api/signatures",
            get(scan::list)
                .post(scan::install)
                // Signature databases run to megabytes.
                .layer(axum::extract::DefaultBodyLimit::max(512 << 20)),
        )
        .route(
            "/api/signatures/{name}",
            axum::routing::delete(scan::remove),
        )
        .route("/api/rescan", post(scan::rescan))
        .route("/api/connectors", get(outbound::list))
        .route(
            "/api/connectors/{name}/schedule",
            put(outbound::set_schedule),
        )
        .route("/api/outbound/{action}", post(outbound::switch))
        .route("/api/audit", get(status::audit))
        .route("/api/trace", get(tracking::trace))
        .route("/api/dkim", get(dkim::list))
        .route(
            "/api/dkim/{domain}",
            post(dkim::generate).delete(dkim::remove),
        )
        .route("/api/dkim/{domain}/rotate", post(dkim::rotate))
        .route("/api/exposure", post(tracking::exposure))
        .route("/api/backups", get(backup::list).post(backup::create))
        .route("/api/clusters", get(clusters::list))
        .route("/api/clusters/{id}", get(clusters::show))
        .route("/api/clusters/{id}/{action}", post(clusters::allow))
        .route("/api/lockdown", post(runbook::lockdown))
        .route("/api/recover", post(runbook::recover))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(auth::Gate {
                token,
                // Over HTTPS the browser's name for the host is not known here, and no
                // console page calls the API from a script: pages may not call at all.
                origin: (scheme == Scheme::Http)
                    .then(|| format!("http://{}", server.admin_address)),
            }),
            auth::require_token,
        ))
        .with_state(server.clone());
    let probes = Router::new()
        .route("/health", get(metrics::health))
        .route("/ready", get(metrics::ready))
        .with_state(server.clone());
    Router::new()
        .route(
            "/api/openapi.json",
            get(|| async { ([("content-type", "application/json")], OPENAPI) }),
        )
        .merge(probes)
        .merge(api)
        .merge(crate::console::router(server.clone(), token_copy, scheme))
        .layer(axum::middleware::from_fn(error::json_errors))
}
