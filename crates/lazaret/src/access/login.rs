//! Checks a user's password for any protocol, slowly when it is wrong, and refuses an
//! address that keeps failing for a while (a guessing client is throttled, not fed
//! answers).

use crate::server::Server;
use lazaret_core::config::AuthConfig;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Debug, PartialEq, Eq)]
pub enum LoginError {
    /// User access is disabled; carries the admin's message.
    Disabled(String),
    Invalid,
    /// Too many failures from this address; try again later.
    Throttled,
    Unavailable,
}

/// Password checks running at once. Each argon2id check holds ~19 MiB for its
/// memory-hard pass, so a burst of logins (or a login flood) would otherwise cost
/// 19 MiB per concurrent session; beyond this many they wait their turn.
const CONCURRENT_CHECKS: usize = 4;

/// Failed logins per client address within the lockout window.
pub struct LoginGuard {
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    checks: tokio::sync::Semaphore,
}

impl Default for LoginGuard {
    fn default() -> Self {
        LoginGuard {
            failures: Mutex::default(),
            checks: tokio::sync::Semaphore::new(CONCURRENT_CHECKS),
        }
    }
}

impl LoginGuard {
    fn throttled(&self, ip: IpAddr, cfg: &AuthConfig) -> bool {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&ip) {
            Some((_, since)) if since.elapsed() > cfg.lockout.as_std() => {
                map.remove(&ip);
                false
            }
            Some((count, _)) => *count >= cfg.max_failures,
            None => false,
        }
    }

    fn failed(&self, ip: IpAddr) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        // Bound the table: a flood of distinct addresses must not grow it forever.
        if map.len() > 100_000 {
            map.clear();
        }
        let entry = map.entry(ip).or_insert((0, Instant::now()));
        entry.0 += 1;
    }

    fn succeeded(&self, ip: IpAddr) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ip);
    }
}

/// Returns the normalized address on success.
pub async fn login(
    server: &Arc<Server>,
    peer: IpAddr,
    user: &str,
    password: &str,
) -> Result<String, LoginError> {
    use crate::metrics::LoginOutcome;
    if let Some(message) = server.access.refusal() {
        server.metrics.login(LoginOutcome::Disabled);
        return Err(LoginError::Disabled(message));
    }
    let cfg = &server.config.auth;
    if server.logins.throttled(peer, cfg) {
        server.metrics.login(LoginOutcome::Throttled);
        tokio::time::sleep(cfg.failure_delay.as_std()).await;
        return Err(LoginError::Throttled);
    }
    let address = user.trim().to_ascii_lowercase();
    let (a, p) = (address.clone(), password.to_string());
    let Ok(_turn) = server.logins.checks.acquire().await else {
        return Err(LoginError::Unavailable);
    };
    let verdict = server
        .store_call(move |s| s.user_verify_password(&a, &p))
        .await;
    drop(_turn);
    match verdict {
        Ok(true) => {
            server.metrics.login(LoginOutcome::Succeeded);
            server.logins.succeeded(peer);
            Ok(address)
        }
        Ok(false) => {
            server.metrics.login(LoginOutcome::Failed);
            server.logins.failed(peer);
            tracing::info!(%peer, user = %address, "failed login");
            tokio::time::sleep(cfg.failure_delay.as_std()).await;
            Err(LoginError::Invalid)
        }
        Err(e) => {
            tracing::error!("login check failed: {e}");
            Err(LoginError::Unavailable)
        }
    }
}
