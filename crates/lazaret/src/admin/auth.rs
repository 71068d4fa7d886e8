//! Bearer-token check for every API call except the OpenAPI document, and no calls
//! from web pages of other origins.

use super::{Actor, ApiError};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;

/// Compares without an early exit, so response time does not reveal the prefix.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub struct Gate {
    pub token: String,
    /// `http://ADDRESS` of the admin listener: the only origin whose pages may call
    /// (none: no page may).
    pub origin: Option<String>,
}

pub async fn require_token(
    State(gate): State<Arc<Gate>>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    // A browser names the page's origin on every cross-origin call and on every POST:
    // a page elsewhere (or a rebound DNS name) that got hold of the token, or that a
    // later cookie-based console would otherwise authenticate, is refused. The CLI and
    // curl send no Origin.
    if let Some(origin) = request.headers().get("origin") {
        if gate.origin.as_deref().map(str::as_bytes) != Some(origin.as_bytes()) {
            return Err(ApiError::Forbidden(format!(
                "requests from pages of {} are refused; the admin API takes calls from {} and from programs",
                String::from_utf8_lossy(origin.as_bytes()),
                gate.origin.as_deref().unwrap_or("no web page")
            )));
        }
    }
    let token = &gate.token;
    let given = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !same(given.as_bytes(), token.as_bytes()) {
        return Err(ApiError::Unauthorized);
    }
    let actor = request
        .headers()
        .get("x-lazaret-actor")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map_or_else(|| "api".to_string(), str::to_string);
    request.extensions_mut().insert(Actor(actor));
    Ok(next.run(request).await)
}
