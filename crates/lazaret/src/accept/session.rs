//! Drives one inbound SMTP connection: socket I/O, TLS upgrade and timeouts around the
//! sans-IO session of `lazaret-proto`, which decides every reply.

use super::rate::{Counted, RateLimiter};
use super::received;
use crate::access::login::{login, LoginError};
use crate::net::Conn;
use crate::server::Server;
use lazaret_core::config::OnIngest;
use lazaret_proto::smtp::{Envelope, Event, RcptVerdict, Reply, Session, SessionConfig};
use lazaret_store::{AuditEntry, Incoming, RecipientStatus, ScanStamp};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;

/// Which listener a connection came in on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// Mail for local users from anyone; never relays.
    Inbound,
    /// Mail from authenticated users to anywhere.
    Submission,
}

pub async fn handle(server: Arc<Server>, stream: TcpStream, peer: SocketAddr, port: Port) {
    serve(server, Conn::Plain(stream), peer, port, false).await
}

/// Submission with implicit TLS (port 465, RFC 8314): the handshake comes before the
/// greeting.
pub async fn handle_tls(server: Arc<Server>, stream: TcpStream, peer: SocketAddr) {
    let Some(acceptor) = server.tls.clone() else {
        return;
    };
    let timeout = server.config.smtp.idle_timeout.as_std();
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            serve(
                server,
                Conn::Tls(Box::new(tls)),
                peer,
                Port::Submission,
                true,
            )
            .await
        }
        _ => tracing::debug!(%peer, "submission TLS handshake failed"),
    }
}

async fn serve(server: Arc<Server>, mut conn: Conn, peer: SocketAddr, port: Port, tls: bool) {
    let hostname = server.config.hostname.clone();
    let Ok(_permit) = server.sessions.clone().try_acquire_owned() else {
        let mut out = Vec::new();
        Session::busy_reply(&hostname).write_to(&mut out);
        let _ = conn.write_all(&out).await;
        return;
    };
    let _open = server.metrics.session(match port {
        Port::Inbound => crate::metrics::Listener::Smtp,
        Port::Submission => crate::metrics::Listener::Submission,
    });
    let submission = port == Port::Submission;
    let cfg = &server.config.smtp;
    let mut session = Session::new(SessionConfig {
        hostname: hostname.clone(),
        max_message_size: cfg.max_message_size.0,
        max_recipients: cfg.max_recipients,
        max_errors: cfg.max_errors,
        tls_available: server.tls.is_some(),
        submission: port == Port::Submission,
        plaintext_auth_allowed: peer.ip().is_loopback(),
    });
    if tls {
        session.tls_from_the_start();
    }
    let idle = cfg.idle_timeout.as_std();
    let mut buf = vec![0u8; 64 * 1024];
    // The transaction whose message was counted against the rate limits already.
    let mut counted_transaction = 0;
    loop {
        match session.poll() {
            Event::NeedInput => {
                if conn.write_all(&session.take_output()).await.is_err() {
                    return;
                }
                match tokio::time::timeout(idle, conn.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return,
                    Ok(Ok(n)) => session.feed(&buf[..n]),
                    Err(_) => session.close_with(Session::idle_timeout_reply(&hostname)),
                }
            }
            Event::CheckRecipient(address) => {
                let may_relay = session.authenticated().is_some();
                let mut verdict = check_recipient(&server, address, may_relay).await;
                if matches!(verdict, RcptVerdict::Accept | RcptVerdict::AcceptAs(_)) {
                    let (limiter, sender) = match port {
                        Port::Submission => (
                            &server.rate_submission,
                            session.authenticated().unwrap_or_default().to_string(),
                        ),
                        Port::Inbound => (&server.rate_inbound, peer.ip().to_string()),
                    };
                    let mut counted = session.transactions() == counted_transaction;
                    let checked = rate_check(&server, limiter, &sender, &mut counted, port).await;
                    if counted {
                        counted_transaction = session.transactions();
                    }
                    if let Err(reply) = checked {
                        verdict = RcptVerdict::Reject(reply);
                    }
                }
                server.metrics.recipient(
                    submission,
                    match &verdict {
                        RcptVerdict::Reject(reply) => reply.code,
                        _ => 250,
                    },
                );
                session.rcpt_verdict(verdict);
            }
            Event::Authenticate { user, password } => {
                let result = match login(&server, peer.ip(), &user, &password).await {
                    Ok(address) => Ok(address),
                    Err(LoginError::Disabled(message)) => Err(Reply::new(454, [4, 7, 0], message)),
                    Err(LoginError::Invalid) => Err(Reply::new(
                        535,
                        [5, 7, 8],
                        "Authentication credentials invalid",
                    )),
                    Err(LoginError::Throttled) => Err(Reply::new(
                        454,
                        [4, 7, 0],
                        "Too many failed logins from your address; try again later",
                    )),
                    Err(LoginError::Unavailable) => Err(Reply::new(
                        454,
                        [4, 7, 0],
                        "Temporary authentication failure",
                    )),
                };
                session.auth_result(result);
            }
            Event::Message { envelope, data } => {
                let result = accept_message(&server, &envelope, peer, data).await;
                server
                    .metrics
                    .message(submission, result.as_ref().map_or_else(|r| r.code, |_| 250));
                session.message_result(result);
            }
            Event::StartTls => {
                let go_ahead = session.take_output();
                match conn.start_tls(&go_ahead, server.tls.as_ref(), idle).await {
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

async fn check_recipient(server: &Arc<Server>, address: String, may_relay: bool) -> RcptVerdict {
    // Refused at the first recipient, before the client sends the message.
    if server.disk.refusing() {
        return RcptVerdict::Reject(crate::disk_space::smtp_reply());
    }
    if address == "postmaster" {
        return postmaster(server).await;
    }
    let lookup = address.clone();
    match server.store_call(move |s| s.recipient_status(&lookup)).await {
        Ok(RecipientStatus::LocalUser) => RcptVerdict::Accept,
        Ok(RecipientStatus::UnknownLocalUser) => RcptVerdict::Reject(Reply::new(
            550,
            [5, 1, 1],
            format!("<{address}>: no such user here"),
        )),
        // Only an authenticated submission session relays; never an open relay.
        Ok(RecipientStatus::NotLocal) if may_relay => RcptVerdict::Accept,
        Ok(RecipientStatus::NotLocal) => RcptVerdict::Reject(Reply::new(
            550,
            [5, 7, 1],
            format!("<{address}>: relaying denied; send mail for other domains through the submission port with AUTH"),
        )),
        Err(e) => {
            tracing::error!("recipient lookup failed: {e}");
            RcptVerdict::Reject(Reply::new(451, [4, 3, 0], "Temporary failure, try again later"))
        }
    }
}

/// The bare `postmaster`: the postmaster mailbox of the local domain the server is
/// named for, else of the first local domain that has one.
async fn postmaster(server: &Arc<Server>) -> RcptVerdict {
    let hostname = server.config.hostname.to_ascii_lowercase();
    let found = server
        .store_call(move |s| {
            let mut domains: Vec<String> = s.domain_list()?.into_iter().map(|d| d.name).collect();
            // The server's own domain first: mail.example.org is example.org's.
            domains.sort_by_key(|d| !(hostname == *d || hostname.ends_with(&format!(".{d}"))));
            for domain in domains {
                let address = format!("postmaster@{domain}");
                if s.recipient_status(&address)? == RecipientStatus::LocalUser {
                    return Ok(Some(address));
                }
            }
            Ok(None)
        })
        .await;
    match found {
        Ok(Some(address)) => RcptVerdict::AcceptAs(address),
        Ok(None) => RcptVerdict::Reject(Reply::new(
            550,
            [5, 1, 1],
            "<postmaster>: no postmaster mailbox here (the admin adds one with `lazaret user add postmaster@DOMAIN`)",
        )),
        Err(e) => {
            tracing::error!("recipient lookup failed: {e}");
            RcptVerdict::Reject(Reply::new(451, [4, 3, 0], "Temporary failure, try again later"))
        }
    }
}

/// Counts a recipient (and the transaction's message, unless `message_counted`; set once
/// it is) against the sender's rate limits; over one, the reply to give. The first
/// refusal of an episode is audited and logged.
async fn rate_check(
    server: &Arc<Server>,
    limiter: &RateLimiter,
    sender: &str,
    message_counted: &mut bool,
    port: Port,
) -> Result<(), Reply> {
    if limiter.is_off() {
        return Ok(());
    }
    let mut taken = Ok(());
    if !*message_counted {
        taken = limiter.take(sender, Counted::Messages, 1);
        *message_counted = taken.is_ok();
    }
    let taken = taken.and_then(|()| limiter.take(sender, Counted::Recipients, 1));
    let Err(over) = taken else {
        return Ok(());
    };
    let who = match port {
        Port::Submission => format!("user {sender}"),
        Port::Inbound => format!("client {sender}"),
    };
    if over.new_episode {
        tracing::warn!(
            "rate limit: {who} over {} {}",
            over.limit,
            over.counted.name()
        );
        let entry = AuditEntry {
            actor: "limits".into(),
            action: "rate limit".into(),
            query: Some(who.clone()),
            count: None,
            detail: Some(format!("over {} {}", over.limit, over.counted.name())),
        };
        if let Err(e) = server.audit(entry).await {
            tracing::error!("audit: {e}");
        }
    }
    Err(Reply::new(
        451,
        [4, 7, 1],
        format!(
            "Rate limit: {who} sent more than {} {}; try again later",
            over.limit,
            over.counted.name()
        ),
    ))
}

/// Makes the message durable; Ok carries the id for the `250` reply, which the session
/// sends only now, after the store has fsynced and committed it.
async fn accept_message(
    server: &Arc<Server>,
    envelope: &Envelope,
    peer: SocketAddr,
    data: Vec<u8>,
) -> Result<String, Reply> {
    // Reject mode scans before answering: the sending server keeps the message and
    // bounces it; we never do.
    let (data, scan) = if server.scanner.on_ingest == OnIngest::Reject {
        let (data, stamp) = scan_before_accepting(server, data).await?;
        (data, Some(stamp))
    } else {
        (data, None)
    };
    if server.disk.refuses(data.len() as u64) {
        return Err(crate::disk_space::smtp_reply());
    }
    // A user's mail is signed for its From domain as it is accepted: every copy, local
    // or sent on, carries the signature.
    // A header field to put above the message: its DKIM signature (submission) or the
    // results of the authentication checks (inbound).
    let mut auth = None;
    let (data, added) = if envelope.authenticated.is_some() {
        sign(server, data).await
    } else if let Some(checks) = &server.auth_checks {
        let outcome = checks
            .check(&data, peer.ip(), &envelope.helo, &envelope.mail_from)
            .await?;
        let quarantine = match outcome.policy_quarantine.clone() {
            Some(reason) => Some(reason),
            None if checks.needs_own_domain(&outcome) => {
                let own = is_own_domain(server, &outcome.from_domain).await;
                checks.own_domain_forgery(&outcome, own)
            }
            None => None,
        };
        if let Some(reason) = &quarantine {
            tracing::info!(from = %envelope.mail_from, %reason, "quarantined on arrival");
        }
        auth = Some(lazaret_store::AuthVerdict {
            results: outcome.summary,
            quarantine,
        });
        (data, Some(outcome.header))
    } else {
        (data, None)
    };
    let id = hex::encode(rand::random::<[u8; 8]>());
    let trace = received::header(envelope, peer.ip(), &server.config.hostname, &id);
    let added = added.unwrap_or_default();
    let mut message = Vec::with_capacity(trace.len() + added.len() + data.len());
    message.extend_from_slice(trace.as_bytes());
    message.extend_from_slice(added.as_bytes());
    message.extend_from_slice(&data);
    // Free the DATA buffer now rather than after the (slow, fsyncing) store call.
    drop(data);
    // Mail the after-queue scanner must see first is routed by it, in the commit that
    // records its scan; waking the queue runner for it would only have it look.
    let for_scanner = scan.is_none() && server.scanner.on_ingest != OnIngest::Off;
    let incoming = Incoming {
        id,
        mail_from: envelope.mail_from.clone(),
        rcpt_to: envelope.rcpt_to.clone(),
        helo: envelope.helo.clone(),
        peer: peer.ip().to_string(),
        data: message,
        scan,
        via: match &envelope.authenticated {
            Some(user) => lazaret_store::Via::Submission(user.clone()),
            None => lazaret_store::Via::Smtp,
        },
        auth,
    };
    match server.store_call(move |s| s.ingest(incoming)).await {
        Ok(accepted) => {
            tracing::debug!(id = %accepted.id, size = accepted.size, from = %envelope.mail_from, "accepted");
            if for_scanner {
                server.scan_wake.notify_one();
            } else {
                server.queue_wake.notify_one();
            }
            Ok(accepted.id)
        }
        Err(e) if e.is_disk_full() => {
            server.disk.note_full();
            tracing::error!("cannot store message from {}: {e}", envelope.mail_from);
            Err(crate::disk_space::smtp_reply())
        }
        Err(e) => {
            tracing::error!("cannot store message from {}: {e}", envelope.mail_from);
            Err(Reply::new(
                451,
                [4, 3, 0],
                "Could not store the message; try again later",
            ))
        }
    }
}

/// Whether `domain` is one of ours. A lookup that fails counts as not ours: the
/// message is then delivered, marked by its Authentication-Results, rather than held.
async fn is_own_domain(server: &Arc<Server>, domain: &str) -> bool {
    let postmaster = format!("postmaster@{domain}");
    matches!(
        server
            .store_call(move |s| s.recipient_status(&postmaster))
            .await,
        Ok(RecipientStatus::LocalUser | RecipientStatus::UnknownLocalUser)
    )
}

/// The DKIM-Signature header field for a submitted message, signed on a blocking
/// thread (an RSA signature takes about a millisecond). A failure leaves the message
/// unsigned and is logged: refusing the user's mail would not help them.
async fn sign(server: &Arc<Server>, data: Vec<u8>) -> (Vec<u8>, Option<String>) {
    let signers = server.dkim_signers();
    if signers.is_empty() {
        return (data, None);
    }
    let signed = tokio::task::spawn_blocking(move || {
        let header = signers.sign(&data);
        (data, header)
    })
    .await;
    match signed {
        Ok((data, Some(Ok(header)))) => (data, Some(header)),
        Ok((data, Some(Err(e)))) => {
            tracing::warn!("{e}; sent unsigned");
            (data, None)
        }
        Ok((data, None)) => (data, None),
        Err(e) => {
            // The task panicked: the buffer is gone with it.
            tracing::error!("DKIM signing failed: {e}");
            (Vec::new(), None)
        }
    }
}

/// Scans DATA on a blocking thread and hands the buffer back (no copy of the message).
async fn scan_before_accepting(
    server: &Arc<Server>,
    data: Vec<u8>,
) -> Result<(Vec<u8>, ScanStamp), Reply> {
    let s = server.clone();
    let (data, verdict) = tokio::task::spawn_blocking(move || {
        let verdict = s.scanner.scan_message(&data);
        (data, verdict)
    })
    .await
    .map_err(|e| {
        tracing::error!("scanner failed: {e}");
        Reply::new(
            451,
            [4, 3, 0],
            "Could not scan the message; try again later",
        )
    })?;
    match verdict {
        Ok(v) if v.names.is_empty() => Ok((data, v.stamp)),
        Ok(v) => {
            tracing::info!(found = %v.names.join(", "), "message rejected by the scanner");
            Err(Reply::new(
                550,
                [5, 7, 1],
                format!("Message rejected: malware found ({})", v.names.join(", ")),
            ))
        }
        Err(e) => {
            tracing::warn!("{e}: message deferred");
            Err(Reply::new(
                451,
                [4, 7, 1],
                "Virus scanner unavailable; try again later",
            ))
        }
    }
}
