//! Drives one POP3 connection around the sans-IO session of `lazaret-proto`: logins
//! through the login guard, the maildrop (the user's INBOX) locked for the session,
//! deletions applied only at QUIT, and the session closed when access is disabled.

use super::login::{login, LoginError};
use crate::net::Conn;
use crate::server::Server;
use lazaret_proto::pop3::{format_for_retr, Event, MaildropEntry, Session, SessionConfig};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;

/// RFC 1939 section 3: the autologout timer is at least 10 minutes.
const IDLE: Duration = Duration::from_secs(600);
const MAILDROP: &str = "INBOX";

/// Users with an open POP3 session: RFC 1939 gives a session exclusive access.
#[derive(Default)]
pub struct MaildropLocks(Mutex<HashSet<String>>);

struct Held<'a>(&'a MaildropLocks, String);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0
             .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.1);
    }
}

impl MaildropLocks {
    fn take(&self, user: &str) -> Option<Held<'_>> {
        let fresh = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(user.to_string());
        fresh.then(|| Held(self, user.to_string()))
    }
}

async fn maildrop(server: &Arc<Server>, user: &str) -> Result<Vec<MaildropEntry>, String> {
    let u = user.to_string();
    let (folders, messages) = server
        .store_call(move |s| Ok((s.mailbox_list(&u)?, s.mailbox_messages(&u, MAILDROP)?)))
        .await
        .map_err(|e| format!("[SYS/TEMP] cannot open the maildrop: {e}"))?;
    let uidvalidity = folders
        .iter()
        .find(|f| f.name == MAILDROP)
        .map_or(0, |f| f.uidvalidity);
    Ok(messages
        .into_iter()
        .map(|m| MaildropEntry {
            uidl: format!("{uidvalidity}.{}", m.uid.unwrap_or(0)),
            id: m.id,
            size: m.size,
        })
        .collect())
}

pub async fn handle(server: Arc<Server>, stream: TcpStream, peer: SocketAddr) {
    let metrics = server.clone();
    let _open = metrics.metrics.session(crate::metrics::Listener::Pop3);
    let mut conn = Conn::Plain(stream);
    let mut gate = server.access.subscribe();
    gate.borrow_and_update();
    let mut session = Session::new(SessionConfig {
        hostname: server.config.hostname.clone(),
        tls_available: server.tls.is_some(),
        plaintext_allowed: peer.ip().is_loopback(),
        max_errors: server.config.smtp.max_errors,
    });
    // Holds the maildrop lock until the session ends (released on drop).
    let mut _held = None;
    let mut user = String::new();
    let mut buf = vec![0u8; 8192];
    loop {
        match session.poll() {
            Event::NeedInput => {
                if conn.write_all(&session.take_output()).await.is_err() {
                    return;
                }
                tokio::select! {
                    read = tokio::time::timeout(IDLE, conn.read(&mut buf)) => match read {
                        Ok(Ok(0)) | Ok(Err(_)) => return,
                        Ok(Ok(n)) => session.feed(&buf[..n]),
                        Err(_) => session.close_with("autologout timer expired"),
                    },
                    changed = gate.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        if let Some(message) = server.access.refusal() {
                            session.close_with(&format!("[SYS/TEMP] {message}"));
                        }
                    }
                }
            }
            Event::Authenticate {
                user: name,
                password,
            } => {
                let result = match login(&server, peer.ip(), &name, &password).await {
                    Ok(address) => match server.maildrops.take(&address) {
                        None => {
                            Err("[IN-USE] the maildrop is locked by another session".to_string())
                        }
                        Some(lock) => {
                            let listing = maildrop(&server, &address).await;
                            if listing.is_ok() {
                                _held = Some(lock);
                                user = address;
                            }
                            listing
                        }
                    },
                    Err(LoginError::Disabled(message)) => Err(format!("[SYS/TEMP] {message}")),
                    Err(LoginError::Invalid) => Err("[AUTH] invalid user name or password".into()),
                    Err(LoginError::Throttled) => Err(
                        "[AUTH] too many failed logins from your address; try again later".into(),
                    ),
                    Err(LoginError::Unavailable) => Err("[SYS/TEMP] try again later".into()),
                };
                session.auth_result(result);
            }
            Event::Retrieve { id, top } => {
                // POP3 lists mailbox entries (`m<entry>`).
                if let (None, Some(entry)) =
                    (top, id.strip_prefix('m').and_then(|n| n.parse().ok()))
                {
                    server
                        .store
                        .record_downloads(&user, "pop3 RETR", vec![entry]);
                }
                let result = server
                    .store_call(move |s| s.message_raw(&id))
                    .await
                    .map(|raw| format_for_retr(&raw, top))
                    .map_err(|e| format!("[SYS/TEMP] cannot read the message: {e}"));
                session.retrieved(result);
            }
            Event::Update { delete } => {
                let u = user.clone();
                let result = server
                    .store_call(move |s| s.mailbox_delete(&u, MAILDROP, &delete))
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("some messages were not deleted: {e}"));
                session.update_result(result);
            }
            Event::StartTls => {
                let go_ahead = session.take_output();
                match conn.start_tls(&go_ahead, server.tls.as_ref(), IDLE).await {
                    Some(tls) => {
                        conn = tls;
                        session.tls_established();
                    }
                    None => return,
                }
            }
            Event::Close => {
                let _ = conn.write_all(&session.take_output()).await;
                return;
            }
        }
    }
}
