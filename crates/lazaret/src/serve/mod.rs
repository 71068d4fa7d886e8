//! `lazaret serve`: opens the store, binds the listeners, starts the queue runner and
//! the admin API, and runs until SIGINT/SIGTERM.

mod admin_tls;
pub mod data_dir;
mod shared_switches;
mod store_open;
pub mod tls;

use crate::accept::switch::SmtpSwitch;
use crate::access::gate::AccessGate;
use crate::access::login::LoginGuard;
use crate::access::pop3::MaildropLocks;
use crate::connection_limits::ConnectionGate;
use crate::deliver::connectors::Connectors;
use crate::deliver::outbound::Outbound;
use crate::net::Refusal;
use crate::server::Server;
use crate::{admin, deliver};
use anyhow::{Context, Result};
use lazaret_core::Config;
use lazaret_store::Store;
use std::sync::Arc;
use tokio::sync::{Notify, Semaphore};

pub async fn run(config: Config) -> Result<()> {
    let data_dir = config.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data_dir {}", data_dir.display()))?;
    let _lock = data_dir::lock(&data_dir)?;
    lazaret_store::embedded::set_clustering(config.outbreak.clusters);
    let store: Arc<dyn Store> = store_open::open(&config)?;
    store.set_cluster_hold(
        config
            .outbreak
            .hold_growth
            .map(|r| lazaret_store::HoldRule {
                messages: r.count,
                window_secs: r.per.as_secs() as i64,
                senders: config.outbreak.hold_senders,
            }),
    );
    crate::access::imap::names::convert_once(store.as_ref())
        .context("cannot convert folder names to UTF-8")?;
    let token = data_dir::load_or_create_token(&data_dir)?;
    let tls = tls::acceptor(&config)?;

    let smtp = SmtpSwitch::bind(&config.smtp.listen).await?;
    let admin_listener = tokio::net::TcpListener::bind(config.admin.listen)
        .await
        .with_context(|| format!("admin.listen: cannot listen on {}", config.admin.listen))?;
    let admin_addr = admin_listener.local_addr()?;
    if !admin_addr.ip().is_loopback() {
        tracing::warn!(
            "admin API on {admin_addr} is plain HTTP: its token and user passwords cross the network unencrypted; keep [admin] listen on loopback or put a TLS proxy in front"
        );
    }
    let (admin_tls_listeners, admin_tls_addresses) =
        bind_all("admin.tls_listen", &config.admin.tls_listen).await?;
    let (pop3_listeners, pop3_addresses) = bind_all("pop3.listen", &config.pop3.listen).await?;
    let (imap_listeners, imap_addresses) = bind_all("imap.listen", &config.imap.listen).await?;
    let (imaps_listeners, imaps_addresses) =
        bind_all("imap.tls_listen", &config.imap.tls_listen).await?;
    let (submission_listeners, submission_addresses) =
        bind_all("submission.listen", &config.submission.listen).await?;
    let (submissions_listeners, submissions_addresses) =
        bind_all("submission.tls_listen", &config.submission.tls_listen).await?;
    let access_setting = store.setting(crate::access::gate::SETTING)?;

    let connectors = Connectors::load(&config, store.as_ref())?;
    let scanner = crate::scan::Scanner::new(&config)?;
    for e in &scanner.current().rejected {
        tracing::error!("signature file refused: {e}");
    }
    let outbound = Outbound::new(&config);

    let limits = &config.limits;
    let rate_submission = crate::accept::rate::RateLimiter::new(
        limits.submission.messages.clone(),
        limits.submission.recipients.clone(),
    );
    let rate_inbound = crate::accept::rate::RateLimiter::new(
        limits.inbound.messages.clone(),
        limits.inbound.recipients.clone(),
    );
    let connection_gate = Arc::new(ConnectionGate::new(&limits.connections));
    let min_free = config.store.min_free.0;
    let dkim_signers = match crate::dkim::Signers::load(&crate::dkim::KeyStore::new(&data_dir)) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("DKIM keys not loaded, mail goes out unsigned: {e:#}");
            crate::dkim::Signers::default()
        }
    };
    let auth_checks = match crate::accept::auth_checks::AuthChecks::new(&config) {
        Ok(checks) => checks,
        Err(e) => {
            tracing::warn!("[auth_checks] off: no DNS resolver ({e})");
            None
        }
    };
    let server = Arc::new(Server {
        sessions: Arc::new(Semaphore::new(config.smtp.max_sessions)),
        config,
        store,
        tls: Some(tls),
        smtp,
        admin_address: admin_addr,
        queue_wake: Notify::new(),
        started: std::time::Instant::now(),
        access: AccessGate::new(access_setting),
        logins: LoginGuard::default(),
        maildrops: MaildropLocks::default(),
        pop3_addresses,
        imap_addresses,
        imaps_addresses,
        submission_addresses,
        submissions_addresses,
        mailbox_events: tokio::sync::broadcast::channel(1024).0,
        jobs: admin::jobs::Jobs::default(),
        folder_index: Default::default(),
        connectors,
        outbound,
        outbound_wake: Notify::new(),
        scanner,
        scan_wake: Notify::new(),
        rate_submission,
        rate_inbound,
        connection_gate,
        disk: crate::disk_space::DiskSpace::new(data_dir.clone(), min_free),
        metrics: crate::metrics::Metrics::default(),
        dkim: std::sync::RwLock::new(Arc::new(dkim_signers)),
        auth_checks,
        switching: tokio::sync::Mutex::new(()),
    });
    listen_to_other_nodes(&server);
    use crate::accept::session::{self as smtp, Port};
    use crate::access::{imap, pop3};
    spawn_all(
        &server,
        submission_listeners,
        Refusal::Smtp,
        |s, stream, peer| smtp::handle(s, stream, peer, Port::Submission),
    );
    spawn_all(
        &server,
        submissions_listeners,
        Refusal::Silent,
        smtp::handle_tls,
    );
    spawn_all(&server, imap_listeners, Refusal::Imap, imap::handle);
    spawn_all(&server, imaps_listeners, Refusal::Silent, imap::handle_tls);
    spawn_all(&server, pop3_listeners, Refusal::Pop3, pop3::handle);

    // An admin who stopped SMTP during an outbreak expects a restart to keep it stopped.
    let stopped = server
        .store_call(|s| s.setting("smtp.inbound"))
        .await?
        .is_some_and(|v| v == "stopped");
    if stopped {
        server.smtp.stop();
    } else {
        server.smtp.start_accepting(server.clone()).await?;
    }

    // Looked at once the listeners are in the state this node's start found.
    shared_switches::follow(&server);
    crate::admin::jobs::take_over_orphans(&server);

    data_dir::write_listeners(
        &data_dir,
        &data_dir::Listeners {
            pid: std::process::id(),
            smtp: server.smtp.addresses().to_vec(),
            pop3: server.pop3_addresses.clone(),
            imap: server.imap_addresses.clone(),
            imaps: server.imaps_addresses.clone(),
            submission: server.submission_addresses.clone(),
            submissions: server.submissions_addresses.clone(),
            admin: admin_addr,
            admin_tls: admin_tls_addresses.clone(),
        },
    )?;
    print_banner(&server, admin_addr, &admin_tls_addresses, stopped);

    tokio::spawn(crate::scan::after_queue::run(server.clone()));
    tokio::spawn(crate::scan::clusterer::run(server.clone()));
    tokio::spawn(deliver::runner::run(server.clone()));
    tokio::spawn(deliver::outbound::run(server.clone()));
    tokio::spawn(crate::event_retention::run(server.clone()));
    tokio::spawn(crate::reclaim::run(server.clone()));
    for listener in admin_tls_listeners {
        let acceptor = server
            .tls
            .clone()
            .context("no TLS certificate for admin.tls_listen")?;
        let listener = admin_tls::TlsListener::new(listener, acceptor)?;
        let api = admin::router(server.clone(), token.clone(), admin::Scheme::Https);
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, api).await {
                tracing::error!("admin tls_listen stopped: {e}");
            }
        });
    }
    let api = admin::router(server.clone(), token, admin::Scheme::Http);
    let admin_task = tokio::spawn(async move { axum::serve(admin_listener, api).await });

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        r = admin_task => { r??; }
    }
    tracing::info!("shutting down");
    server.smtp.stop();
    let _ = server
        .store_call(|s| {
            s.close();
            Ok(())
        })
        .await;
    data_dir::remove_listeners(&data_dir);
    Ok(())
}

async fn bind_all(
    key: &str,
    addresses: &[std::net::SocketAddr],
) -> Result<(Vec<tokio::net::TcpListener>, Vec<std::net::SocketAddr>)> {
    let mut listeners = Vec::new();
    for addr in addresses {
        listeners.push(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("{key}: cannot listen on {addr}"))?,
        );
    }
    let bound = listeners
        .iter()
        .map(|l| l.local_addr())
        .collect::<std::io::Result<Vec<_>>>()?;
    Ok((listeners, bound))
}

fn print_banner(
    server: &Server,
    admin: std::net::SocketAddr,
    admin_tls: &[std::net::SocketAddr],
    smtp_stopped: bool,
) {
    let c = &server.config;
    let smtp: Vec<String> = server
        .smtp
        .addresses()
        .iter()
        .map(|a| a.to_string())
        .collect();
    let state = if smtp_stopped {
        " (stopped by the admin; `lazaret smtp start` opens it)"
    } else {
        " (STARTTLS)"
    };
    println!(
        "Lazaret {} is serving mail for {}",
        env!("CARGO_PKG_VERSION"),
        c.hostname
    );
    println!("  data:   {}", c.data_dir.display());
    println!("  smtp:   {}{state}", smtp.join(", "));
    if !server.submission_addresses.is_empty() {
        let sub: Vec<String> = server
            .submission_addresses
            .iter()
            .map(|a| a.to_string())
            .collect();
        println!("  submission: {} (AUTH required; STARTTLS)", sub.join(", "));
    }
    if !server.imap_addresses.is_empty() {
        let imap: Vec<String> = server
            .imap_addresses
            .iter()
            .map(|a| a.to_string())
            .collect();
        println!("  imap:   {} (STARTTLS)", imap.join(", "));
    }
    if !server.submissions_addresses.is_empty() {
        let list: Vec<String> = server
            .submissions_addresses
            .iter()
            .map(|a| a.to_string())
            .collect();
        println!(
            "  submissions: {} (implicit TLS, AUTH required)",
            list.join(", ")
        );
    }
    if !server.imaps_addresses.is_empty() {
        let imaps: Vec<String> = server
            .imaps_addresses
            .iter()
            .map(|a| a.to_string())
            .collect();
        println!("  imaps:  {} (implicit TLS)", imaps.join(", "));
    }
    if !server.pop3_addresses.is_empty() {
        let pop3: Vec<String> = server
            .pop3_addresses
            .iter()
            .map(|a| a.to_string())
            .collect();
        let access = if server.access.current().enabled {
            ""
        } else {
            " (user access disabled)"
        };
        println!("  pop3:   {} (STLS){access}", pop3.join(", "));
    }
    println!(
        "  admin:  http://{admin}  (token in {})",
        data_dir::token_path(&c.data_dir).display()
    );
    for a in admin_tls {
        println!("  admin:  https://{a}  (web console and API over TLS)");
    }
    println!(
        "Add a user:  lazaret user add alice@localhost   (then send mail to it on the smtp port)"
    );
}

/// Starts an accept loop on each listener, every connection handled by `handle`.
fn spawn_all<F, Fut>(
    server: &Arc<Server>,
    listeners: Vec<tokio::net::TcpListener>,
    refusal: Refusal,
    handle: F,
) where
    F: Fn(Arc<Server>, tokio::net::TcpStream, std::net::SocketAddr) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    for listener in listeners {
        let (server, handle) = (server.clone(), handle.clone());
        let gate = server.connection_gate.clone();
        tokio::spawn(crate::net::accept_loop(
            listener,
            gate,
            refusal,
            move |stream, peer| handle(server.clone(), stream, peer),
        ));
    }
}

/// On a store several servers share, what another node did wakes this one's work at
/// once: IMAP sessions of a user given mail, the router and scanner for new inbound
/// mail, delivery for new work in a queue. (Each also looks on its timer.)
fn listen_to_other_nodes(server: &Arc<Server>) {
    let weak = Arc::downgrade(server);
    server.store.watch_news(Box::new(move |news| {
        let Some(s) = weak.upgrade() else { return };
        match news {
            lazaret_store::News::Mailbox(user) => {
                let _ = s.mailbox_events.send(user);
            }
            lazaret_store::News::Queue(queue) => match queue.as_str() {
                lazaret_core::state::QUEUE_INBOUND => {
                    s.scan_wake.notify_one();
                    s.queue_wake.notify_one();
                }
                lazaret_core::state::QUEUE_LOCAL => s.queue_wake.notify_one(),
                _ => s.outbound_wake.notify_one(),
            },
        }
    }));
}
