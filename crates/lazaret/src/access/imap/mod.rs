//! The IMAP4rev1 server (RFC 3501 with LITERAL+, IDLE, UIDPLUS, MOVE, UNSELECT,
//! NAMESPACE, ENABLE, SPECIAL-USE). This file drives one connection: framing with
//! imap-codec (lazaret-proto), STARTTLS, AUTHENTICATE's continuation, IDLE, and the
//! access gate that closes the session with `* BYE` when the admin disables access.

mod fetch;
mod folders;
pub mod index;
pub mod names;
mod search;
mod session;
mod uids;
mod update;

use crate::net::Conn;
use crate::server::Server;
use lazaret_proto::imap::framing::{Framer, Input};
use session::{Next, Session};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::broadcast::error::RecvError;

/// RFC 3501 §5.4: the autologout timer is at least 30 minutes.
const AUTOLOGOUT: Duration = Duration::from_secs(30 * 60);
/// How often an idling client hears from the server unless `[imap] idle_keepalive`
/// says otherwise: under the 5 minutes after which many NAT gateways forget a quiet
/// TCP connection (Dovecot's default is 2 minutes too).
const IDLE_KEEPALIVE: Duration = Duration::from_secs(120);
/// A command line (not counting literals) longer than this is refused.
const MAX_LINE: usize = 64 * 1024;

enum Wake {
    Data,
    Closed,
    Timeout,
    Refused(String),
    Changed,
}

/// Waits for client bytes, the access gate, or a change to this user's mail.
async fn wait(
    session: &mut Session,
    framer: &mut Framer,
    gate: &mut tokio::sync::watch::Receiver<crate::access::gate::AccessState>,
    events: &mut tokio::sync::broadcast::Receiver<String>,
) -> Wake {
    let mut buf = [0u8; 16384];
    let Some(conn) = session.conn.as_mut() else {
        return Wake::Closed;
    };
    tokio::select! {
        read = tokio::time::timeout(AUTOLOGOUT, conn.read(&mut buf)) => match read {
            Ok(Ok(0)) | Ok(Err(_)) => Wake::Closed,
            Ok(Ok(n)) => {
                framer.push(&buf[..n]);
                Wake::Data
            }
            Err(_) => Wake::Timeout,
        },
        changed = gate.changed() => match (changed, session.server.access.refusal()) {
            (Err(_), _) => Wake::Closed,
            (Ok(()), Some(message)) => Wake::Refused(message),
            (Ok(()), None) => Wake::Changed,
        },
        event = events.recv() => {
            match event {
                Ok(user) if session.user.as_deref() == Some(user.as_str()) => session.dirty = true,
                Err(RecvError::Lagged(_)) => session.dirty = true,
                Err(RecvError::Closed) => return Wake::Closed,
                Ok(_) => {}
            }
            Wake::Changed
        }
    }
}

/// Marks the session dirty if this user's mail changed since it last looked, without
/// waiting.
fn take_events(session: &mut Session, events: &mut tokio::sync::broadcast::Receiver<String>) {
    loop {
        match events.try_recv() {
            Ok(user) if session.user.as_deref() == Some(user.as_str()) => session.dirty = true,
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => session.dirty = true,
            Err(_) => return,
        }
    }
}

pub async fn handle(server: Arc<Server>, stream: TcpStream, peer: SocketAddr) {
    serve(server, Conn::Plain(stream), peer, false).await
}

/// An implicit-TLS connection (IMAPS): the handshake comes before the greeting.
pub async fn handle_tls(server: Arc<Server>, stream: TcpStream, peer: SocketAddr) {
    let Some(acceptor) = server.tls.clone() else {
        return;
    };
    match tokio::time::timeout(Duration::from_secs(30), acceptor.accept(stream)).await {
        Ok(Ok(tls)) => serve(server, Conn::Tls(Box::new(tls)), peer, true).await,
        _ => tracing::debug!(%peer, "IMAPS handshake failed"),
    }
}

async fn serve(server: Arc<Server>, conn: Conn, peer: SocketAddr, tls: bool) {
    let metrics = server.clone();
    let _open = metrics.metrics.session(crate::metrics::Listener::Imap);
    let max_literal = server.config.smtp.max_message_size.0.min(u32::MAX as u64) as u32;
    let mut framer = Framer::new(max_literal, MAX_LINE);
    let mut gate = server.access.subscribe();
    gate.borrow_and_update();
    let mut events = server.mailbox_events.subscribe();
    let mut session = Session::new(server.clone(), peer, conn);
    session.tls = tls;
    let caps = session.capabilities();
    session.line(&format!(
        "* OK [CAPABILITY {caps}] {} Lazaret IMAP ready",
        server.config.hostname
    ));
    let mut errors = 0u32;
    loop {
        loop {
            match framer.next_input() {
                Input::Command(command) => {
                    // A change announced while this command was on its way must show
                    // in its answer (another session's STORE, then our CHECK).
                    take_events(&mut session, &mut events);
                    let next = session.execute(*command).await;
                    if !run_next(&mut session, &mut framer, &mut gate, &mut events, next).await {
                        return;
                    }
                }
                Input::ListExtended(list) => {
                    take_events(&mut session, &mut events);
                    if session.user.is_none() {
                        session.tagged(&list.tag, "BAD", "LIST: log in first");
                    } else {
                        folders::list_extended(&mut session, &list).await;
                    }
                }
                Input::CreateSpecialUse { tag, mailbox, uses } => {
                    take_events(&mut session, &mut events);
                    match (&session.user, lazaret_proto::imap::mutf7::decode(&mailbox)) {
                        (None, _) => session.tagged(&tag, "BAD", "CREATE: log in first"),
                        (_, Err(e)) => session.tagged(&tag, "NO", &format!("[CANNOT] {e}")),
                        // One special use per folder here (RFC 6154 allows refusing more).
                        (_, Ok(_)) if uses.len() > 1 => {
                            session.tagged(&tag, "NO", "[USEATTR] one special use per folder")
                        }
                        (_, Ok(name)) => {
                            folders::create(&mut session, &tag, &name, uses.first().cloned()).await
                        }
                    }
                }
                Input::Continue => session.line("+ Ready for literal data"),
                Input::Reject { tag, text, close } => {
                    errors += 1;
                    session.line(&format!("{} BAD {text}", tag.as_deref().unwrap_or("*")));
                    if close || errors > server.config.smtp.max_errors {
                        session.line("* BYE too many errors");
                        let _ = session.flush().await;
                        return;
                    }
                }
                Input::Incomplete => break,
            }
        }
        if session.flush().await.is_err() {
            return;
        }
        match wait(&mut session, &mut framer, &mut gate, &mut events).await {
            Wake::Data | Wake::Changed => {}
            Wake::Closed => return,
            Wake::Timeout => return bye(&mut session, "autologout timer expired").await,
            Wake::Refused(message) => return bye(&mut session, &message).await,
        }
    }
}

async fn bye(session: &mut Session, text: &str) {
    session.line(&format!("* BYE {text}"));
    let _ = session.flush().await;
}

/// Carries out what a command asked of the connection. False: the session is over.
async fn run_next(
    session: &mut Session,
    framer: &mut Framer,
    gate: &mut tokio::sync::watch::Receiver<crate::access::gate::AccessState>,
    events: &mut tokio::sync::broadcast::Receiver<String>,
    next: Next,
) -> bool {
    match next {
        Next::Continue => true,
        Next::Logout => {
            let _ = session.flush().await;
            false
        }
        Next::Compress => {
            // The OK goes out as it is; everything after it is compressed.
            if session.flush().await.is_err() {
                return false;
            }
            let Some(conn) = session.conn.take() else {
                return false;
            };
            session.conn = Some(Conn::Deflate(Box::new(crate::net::Deflated::new(conn))));
            true
        }
        Next::StartTls => {
            let go_ahead = std::mem::take(&mut session.out);
            let Some(conn) = session.conn.take() else {
                return false;
            };
            let acceptor = session.server.tls.clone();
            match conn
                .start_tls(&go_ahead, acceptor.as_ref(), Duration::from_secs(30))
                .await
            {
                Some(tls) => {
                    session.conn = Some(tls);
                    session.tls = true;
                    // Anything the client sent before the handshake is discarded.
                    *framer = Framer::new(framer_limit(session), MAX_LINE);
                    true
                }
                None => false,
            }
        }
        Next::AuthPlain(tag) => {
            session.line("+ ");
            if session.flush().await.is_err() {
                return false;
            }
            let Some(line) = read_line(session, framer, gate, events).await else {
                return false;
            };
            if line == b"*" {
                session.tagged(&tag, "BAD", "authentication cancelled");
                return true;
            }
            match lazaret_proto::sasl::decode_plain(&String::from_utf8_lossy(&line)) {
                Some((user, password)) => session.login(&tag, &user, &password).await,
                None => session.tagged(&tag, "BAD", "malformed PLAIN response"),
            }
            true
        }
        Next::Idle(tag) => {
            session.line("+ idling");
            let keepalive = session
                .server
                .config
                .imap
                .idle_keepalive
                .map_or(IDLE_KEEPALIVE, |d| Duration::from_secs(d.0.max(1)));
            loop {
                session.refresh(true).await;
                if session.flush().await.is_err() {
                    return false;
                }
                if let Some(line) = framer.take_line() {
                    if line.eq_ignore_ascii_case(b"DONE") {
                        session.tagged(&tag, "OK", "IDLE terminated");
                    } else {
                        session.tagged(&tag, "BAD", "expected DONE");
                    }
                    return true;
                }
                // Anything but a short DONE line is a client flooding the session.
                if framer.buffered() > MAX_LINE {
                    session.tagged(&tag, "BAD", "expected DONE");
                    bye(session, "line too long").await;
                    return false;
                }
                let woken = tokio::time::timeout(keepalive, wait(session, framer, gate, events));
                match woken.await {
                    // Keeps NAT and firewall state alive, and finds a peer that went away
                    // silently (the write fails) instead of holding its session for ever.
                    Err(_) => session.line("* OK still here"),
                    Ok(Wake::Data | Wake::Changed) => {}
                    Ok(Wake::Closed) => return false,
                    Ok(Wake::Timeout) => {
                        bye(session, "autologout timer expired").await;
                        return false;
                    }
                    Ok(Wake::Refused(message)) => {
                        bye(session, &message).await;
                        return false;
                    }
                }
            }
        }
    }
}

fn framer_limit(session: &Session) -> u32 {
    session
        .server
        .config
        .smtp
        .max_message_size
        .0
        .min(u32::MAX as u64) as u32
}

async fn read_line(
    session: &mut Session,
    framer: &mut Framer,
    gate: &mut tokio::sync::watch::Receiver<crate::access::gate::AccessState>,
    events: &mut tokio::sync::broadcast::Receiver<String>,
) -> Option<Vec<u8>> {
    loop {
        if let Some(line) = framer.take_line() {
            return Some(line);
        }
        if framer.buffered() > MAX_LINE {
            return None;
        }
        match wait(session, framer, gate, events).await {
            Wake::Data | Wake::Changed => {}
            Wake::Refused(message) => {
                bye(session, &message).await;
                return None;
            }
            Wake::Closed | Wake::Timeout => return None,
        }
    }
}
