//! The web console: the admin API's actions as pages, served by the admin listener at
//! `/` (the API stays under `/api`).
//!
//! Server-rendered HTML (maud) and plain forms that POST and redirect: every page works
//! with JavaScript off, and there is no script at all, so the Content-Security-Policy
//! forbids scripts outright and a message's text shown here can never run. Sign-in
//! takes the admin token and gives a session cookie; every POST carries the session's
//! CSRF token and a matching `Origin`. Each page calls the same handler the API route
//! does, so the console can do nothing the API cannot, and the audit log names
//! `console` as the actor.

mod accounts_page;
mod audit_page;
mod clusters_page;
mod find_page;
mod jobs_page;
mod layout;
mod message_page;
mod quarantine_page;
mod queues_page;
mod session;
mod signatures_page;
mod status_page;

use crate::admin::ApiError;
use crate::server::Server;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

pub use session::Admin;

/// What every console handler reaches: the server and the signed-in sessions.
pub struct Console {
    pub server: Arc<Server>,
    pub sessions: session::Sessions,
    token: String,
    /// Served over HTTPS: the cookie is `Secure` and forms come from `https://`.
    secure: bool,
}

const STYLESHEET: &str = include_str!("console.css");

/// Scripts none, styles and forms from here only, never in a frame.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

pub fn router(server: Arc<Server>, token: String, scheme: crate::admin::Scheme) -> Router {
    let console = Arc::new(Console {
        server,
        sessions: session::Sessions::default(),
        token,
        secure: scheme == crate::admin::Scheme::Https,
    });
    Router::new()
        .route("/", get(status_page::show))
        .route("/signin", get(session::signin_form).post(session::signin))
        .route("/signout", post(session::signout))
        .route("/smtp/{action}", post(status_page::smtp))
        .route("/outbound/{action}", post(status_page::outbound))
        .route("/access/{action}", post(status_page::access))
        .route("/connectors/schedule", post(status_page::schedule))
        .route("/runbook/lockdown", post(status_page::lockdown))
        .route("/runbook/recover", post(status_page::recover))
        .route("/backups/create", post(status_page::backup))
        .route("/queues", get(queues_page::list))
        .route("/queues/{action}", post(queues_page::act))
        .route("/queues/{name}/messages", get(queues_page::messages))
        .route("/find", get(find_page::show))
        .route("/find/act", post(find_page::act))
        .route("/clusters", get(clusters_page::list))
        .route("/clusters/{id}", get(clusters_page::show))
        .route("/clusters/{id}/{action}", post(clusters_page::allow))
        .route("/quarantine", get(quarantine_page::list))
        .route("/quarantine/restore", post(quarantine_page::restore))
        .route("/accounts", get(accounts_page::show))
        .route("/accounts/domains/add", post(accounts_page::domain_add))
        .route(
            "/accounts/domains/remove",
            post(accounts_page::domain_remove),
        )
        .route("/accounts/users/add", post(accounts_page::user_add))
        .route(
            "/accounts/users/password",
            post(accounts_page::user_password),
        )
        .route("/accounts/users/remove", post(accounts_page::user_remove))
        .route("/signatures", get(signatures_page::show))
        .route("/signatures/install", post(signatures_page::install))
        .route(
            "/signatures/upload",
            // Signature databases run to megabytes, as on the API's route.
            post(signatures_page::upload).layer(axum::extract::DefaultBodyLimit::max(512 << 20)),
        )
        .route("/signatures/rescan", post(signatures_page::rescan))
        .route("/signatures/remove", post(signatures_page::remove))
        .route("/messages/{id}", get(message_page::show))
        .route("/messages/{id}/raw", get(message_page::raw))
        .route("/jobs/{id}", get(jobs_page::show))
        .route("/audit", get(audit_page::show))
        .route(
            "/console.css",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/css; charset=utf-8"),
                        (header::CACHE_CONTROL, "max-age=3600"),
                    ],
                    STYLESHEET,
                )
            }),
        )
        .layer(axum::middleware::from_fn(guard_headers))
        .with_state(console)
}

/// Headers on every console response: the CSP above, no sniffing, no referrer to other
/// sites (a message id in a URL stays here; `no-referrer` would also make the browser
/// send `Origin: null` on our own forms), and no caching of pages that show mail.
async fn guard_headers(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A failed console request: an HTML page with the status and what to do.
#[derive(Debug)]
pub enum PageError {
    /// Not signed in (or the session expired): to the sign-in page.
    SignIn,
    Status(StatusCode, String),
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> PageError {
        PageError::Status(e.status(), e.to_string())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::SignIn => Redirect::to("/signin").into_response(),
            PageError::Status(status, text) => (
                status,
                layout::bare(
                    status.canonical_reason().unwrap_or("Error"),
                    maud::html! {
                        h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
                        p.error { (text) }
                        p { a href="/" { "Back to the status page" } }
                    },
                ),
            )
                .into_response(),
        }
    }
}

pub type PageResult = Result<Response, PageError>;

/// After a POST: back to a page (303, so a reload does not post again).
pub fn see_other(to: &str) -> PageResult {
    Ok(Redirect::to(to).into_response())
}
