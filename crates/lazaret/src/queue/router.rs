//! Chooses each recipient's next-hop queue: `local` for our users; for other domains
//! the queue of the first connector whose `domains` match (`smarthost:NAME` for a
//! smarthost, `remote:DOMAIN` for MX delivery). A domain no connector takes still gets
//! `remote:DOMAIN`, where outbound delivery fails it with a DSN.

use lazaret_core::config::{ConnectorConfig, REMOTE_QUEUE_PREFIX};
use lazaret_core::state::QUEUE_LOCAL;
use lazaret_store::{RecipientStatus, Store};

/// The name of the queue this recipient's copy goes to.
pub fn next_hop(store: &dyn Store, connectors: &[ConnectorConfig], recipient: &str) -> String {
    match store.recipient_status(recipient) {
        Ok(RecipientStatus::NotLocal) => {
            let domain = recipient
                .rsplit_once('@')
                .map_or("", |(_, d)| d)
                .to_ascii_lowercase();
            match connectors.iter().find(|c| c.matches(&domain)) {
                Some(c) => c.queue_for(&domain),
                None => format!("{REMOTE_QUEUE_PREFIX}{domain}"),
            }
        }
        // Local, or unknown now: local delivery keeps it and reports the failure.
        _ => QUEUE_LOCAL.to_string(),
    }
}
