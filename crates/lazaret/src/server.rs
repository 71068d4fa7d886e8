//! The handle every stage of the running server shares: config, store, switches,
//! wake-ups, jobs. Stages (accept, scan, deliver, access, admin) use it; `serve`
//! builds it and starts them.

use crate::accept::switch::SmtpSwitch;
use crate::access::gate::AccessGate;
use crate::access::login::LoginGuard;
use crate::access::pop3::MaildropLocks;
use crate::deliver::connectors::Connectors;
use crate::deliver::outbound::Outbound;
use lazaret_core::Config;
use lazaret_store::{AuditEntry, Store};
use std::sync::Arc;
use tokio::sync::{Notify, Semaphore};
use tokio_rustls::TlsAcceptor;

/// What every part of the running server shares.
pub struct Server {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub tls: Option<TlsAcceptor>,
    pub smtp: SmtpSwitch,
    /// The admin API's bound address (port 0 resolved).
    pub admin_address: std::net::SocketAddr,
    /// Concurrent inbound SMTP sessions.
    pub sessions: Arc<Semaphore>,
    /// Wakes the queue runner when new mail is committed.
    pub queue_wake: Notify,
    pub started: std::time::Instant,
    /// User access on/off (`lazaret access disable|enable`).
    pub access: AccessGate,
    pub logins: LoginGuard,
    pub maildrops: MaildropLocks,
    /// Bound addresses of the listeners that are always on.
    pub pop3_addresses: Vec<std::net::SocketAddr>,
    pub imap_addresses: Vec<std::net::SocketAddr>,
    pub imaps_addresses: Vec<std::net::SocketAddr>,
    pub submission_addresses: Vec<std::net::SocketAddr>,
    pub submissions_addresses: Vec<std::net::SocketAddr>,
    /// A user's mail changed (delivery, IMAP, POP3): open IMAP sessions of that user
    /// refresh their view.
    pub mailbox_events: tokio::sync::broadcast::Sender<String>,
    /// Last-read folder snapshots shared by IMAP sessions.
    pub folder_index: crate::access::imap::index::FolderIndex,
    /// Outbound routes and their schedules.
    pub connectors: Connectors,
    pub outbound: Outbound,
    /// Wakes the outbound runner when mail was routed to a remote queue, a queue was
    /// thawed or a schedule changed.
    pub outbound_wake: Notify,
    /// Bulk actions, imports and reindexing in progress (and the last finished).
    pub jobs: crate::admin::jobs::Jobs,
    /// Signatures, the engines, and how mail is scanned on ingest.
    pub scanner: crate::scan::Scanner,
    /// Wakes the after-queue scanner when new mail is committed.
    pub scan_wake: Notify,
    /// Held while a switch (`smtp`, `access`, a connector schedule) is stored and
    /// applied, so that following other nodes' switches never lands in between
    /// (`serve/shared_switches.rs`).
    pub switching: tokio::sync::Mutex<()>,
    /// `[limits]`: per authenticated user on submission, per client IP inbound.
    pub rate_submission: crate::accept::rate::RateLimiter,
    pub rate_inbound: crate::accept::rate::RateLimiter,
    /// `[limits.connections]`: per client address, every listener.
    pub connection_gate: Arc<crate::connection_limits::ConnectionGate>,
    /// `[store] min_free`: whether new mail still fits.
    pub disk: crate::disk_space::DiskSpace,
    /// Counters for `/metrics`.
    pub metrics: crate::metrics::Metrics,
    /// `[auth_checks]`: SPF, DKIM, DMARC of inbound mail (None: off).
    pub auth_checks: Option<crate::accept::auth_checks::AuthChecks>,
    /// DKIM signers of the domains that sign (`lazaret dkim`), swapped whole on change.
    pub dkim: std::sync::RwLock<Arc<crate::dkim::Signers>>,
}

impl Server {
    /// The current DKIM signer set.
    pub fn dkim_signers(&self) -> Arc<crate::dkim::Signers> {
        self.dkim.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reads the DKIM keys again (after `lazaret dkim` changed them).
    pub fn reload_dkim(&self) -> anyhow::Result<()> {
        let store = crate::dkim::KeyStore::new(&self.config.data_dir);
        let signers = Arc::new(crate::dkim::Signers::load(&store)?);
        *self.dkim.write().unwrap_or_else(|e| e.into_inner()) = signers;
        Ok(())
    }

    /// Runs blocking store work off the async threads.
    pub async fn store_call<R, F>(self: &Arc<Self>, f: F) -> Result<R, lazaret_store::StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<R, lazaret_store::StoreError> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .unwrap_or_else(|e| {
                Err(lazaret_store::StoreError::Invalid(format!(
                    "store task failed: {e}"
                )))
            })
    }

    /// Records an admin action; failing to record it fails the action's reply.
    pub async fn audit(
        self: &Arc<Self>,
        entry: AuditEntry,
    ) -> Result<(), lazaret_store::StoreError> {
        tracing::info!(actor = %entry.actor, action = %entry.action, query = ?entry.query, count = ?entry.count, "audit");
        self.store_call(move |s| s.audit(entry)).await
    }
}
