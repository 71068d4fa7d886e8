//! Sign-in with the admin token, sessions held in memory (a restart signs everyone
//! out), and the checks every POST passes: the session's CSRF token in the form and an
//! `Origin` naming this very host.

use super::{layout, Console, PageError, PageResult};
use crate::admin::auth::same;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect};
use axum::Form;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const COOKIE: &str = "lazaret_console";
/// A session unused this long is gone; one is never kept longer than `MAX_AGE`.
const IDLE: Duration = Duration::from_secs(30 * 60);
const MAX_AGE: Duration = Duration::from_secs(12 * 3600);
/// At most this many sessions at once: the oldest goes first.
const MAX_SESSIONS: usize = 64;

struct Session {
    csrf: String,
    created: Instant,
    used: Instant,
    /// One line for the next page shown ("SMTP stopped").
    notice: Option<String>,
}

#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn open(&self) -> (String, String) {
        let id = hex::encode(rand::random::<[u8; 32]>());
        let csrf = hex::encode(rand::random::<[u8; 32]>());
        let now = Instant::now();
        let mut map = self.lock();
        map.retain(|_, s| live(s, now));
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.used)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            id.clone(),
            Session {
                csrf: csrf.clone(),
                created: now,
                used: now,
                notice: None,
            },
        );
        (id, csrf)
    }

    /// Says `text` on the next page this session sees.
    pub fn notice(&self, admin: &Admin, text: impl Into<String>) {
        if let Some(s) = self.lock().get_mut(&admin.id) {
            s.notice = Some(text.into());
        }
    }
}

fn live(s: &Session, now: Instant) -> bool {
    now.duration_since(s.used) < IDLE && now.duration_since(s.created) < MAX_AGE
}

/// A signed-in admin; a handler that takes one sends everyone else to `/signin`.
pub struct Admin {
    id: String,
    pub csrf: String,
    /// The notice left for this page, taken (shown once).
    pub notice: Option<String>,
    /// Signed in over HTTPS.
    secure: bool,
}

impl Admin {
    /// Who the audit log names.
    pub fn actor(&self) -> crate::admin::Actor {
        crate::admin::Actor("console".into())
    }

    /// A state-changing request must carry this session's CSRF token and come from a
    /// page of this host: a page elsewhere can make the browser POST with the cookie
    /// (SameSite aside), but it cannot read the token, and the browser names its origin.
    /// The header half of `check_post`, for a body worth refusing before it is read
    /// (an upload).
    pub fn check_origin(&self, headers: &HeaderMap) -> Result<(), PageError> {
        foreign_origin(headers, true, self.secure)
    }

    pub fn check_post(&self, headers: &HeaderMap, csrf: &str) -> Result<(), PageError> {
        self.check_origin(headers)?;
        if !same(csrf.as_bytes(), self.csrf.as_bytes()) {
            return Err(PageError::Status(
                StatusCode::FORBIDDEN,
                "refused: the form's CSRF token is missing or from another session; reload the page and try again".into(),
            ));
        }
        Ok(())
    }
}

/// Refuses a request whose `Origin` is not this host's own (or, when `required`, that
/// names none: browsers send it on every POST).
fn foreign_origin(headers: &HeaderMap, required: bool, secure: bool) -> Result<(), PageError> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ours = format!("{}://{host}", if secure { "https" } else { "http" });
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let ok = match origin {
        Some(o) => !host.is_empty() && o == ours,
        None => !required,
    };
    if ok {
        return Ok(());
    }
    Err(PageError::Status(
        StatusCode::FORBIDDEN,
        format!(
            "refused: this form was not sent from the console's own page (Origin {:?}, expected {ours:?})",
            origin.unwrap_or("")
        ),
    ))
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl FromRequestParts<Arc<Console>> for Admin {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Arc<Console>,
    ) -> Result<Admin, PageError> {
        let id = cookie_value(&parts.headers, COOKIE).ok_or(PageError::SignIn)?;
        let now = Instant::now();
        let mut map = console.sessions.lock();
        let session = map
            .get_mut(id)
            .filter(|s| live(s, now))
            .ok_or(PageError::SignIn)?;
        session.used = now;
        Ok(Admin {
            id: id.to_string(),
            csrf: session.csrf.clone(),
            notice: session.notice.take(),
            secure: console.secure,
        })
    }
}

pub async fn signin_form() -> impl IntoResponse {
    page(None)
}

fn page(error: Option<&str>) -> axum::response::Response {
    let body = maud::html! {
        main.signin {
            h1 { "Lazaret" }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action="/signin" {
                label for="token" { "Admin token" }
                p.hint { "In " code { "DATA_DIR/admin.token" } " on the server (" code { "cat" } " it as root)." }
                input #token type="password" name="token" autocomplete="current-password" required autofocus;
                button type="submit" { "Sign in" }
            }
        }
    };
    let status = if error.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    (status, layout::bare("Sign in", body)).into_response()
}

#[derive(Deserialize)]
pub struct SignIn {
    token: String,
}

pub async fn signin(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Form(form): Form<SignIn>,
) -> PageResult {
    // Signing in from a page elsewhere would plant a session of the attacker's choosing.
    // (Programs such as bench/console_time.py send no Origin.)
    foreign_origin(&headers, false, console.secure)?;
    if !same(form.token.trim().as_bytes(), console.token.as_bytes()) {
        // The token is 256 random bits; the pause only keeps a typo loop from flooding
        // the log.
        tracing::warn!("console: sign-in with a wrong admin token");
        tokio::time::sleep(Duration::from_millis(500)).await;
        return Ok(page(Some("That is not the admin token.")));
    }
    let (id, _) = console.sessions.open();
    let cookie = format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        MAX_AGE.as_secs(),
        if console.secure { "; Secure" } else { "" }
    );
    let _ = console
        .server
        .audit(lazaret_store::AuditEntry {
            actor: "console".into(),
            action: "console sign-in".into(),
            query: None,
            count: None,
            detail: None,
        })
        .await;
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response())
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    pub csrf: String,
}

pub async fn signout(
    State(console): State<Arc<Console>>,
    admin: Admin,
    headers: HeaderMap,
    Form(form): Form<CsrfOnly>,
) -> PageResult {
    admin.check_post(&headers, &form.csrf)?;
    console.sessions.lock().remove(&admin.id);
    let cookie = format!(
        "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
        if console.secure { "; Secure" } else { "" }
    );
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/signin")).into_response())
}
