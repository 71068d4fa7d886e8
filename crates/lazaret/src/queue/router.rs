//! Chooses each recipient's next-hop queue: `local` for our users. Remote next hops
//! get `remote:DOMAIN` queues, where mail waits until outbound delivery exists.

use lazaret_core::state::QUEUE_LOCAL;
use lazaret_store::{RecipientStatus, Store};

/// The name of the queue this recipient's copy goes to.
pub fn next_hop(store: &dyn Store, recipient: &str) -> String {
    match store.recipient_status(recipient) {
        Ok(RecipientStatus::NotLocal) => {
            let domain = recipient.rsplit_once('@').map_or("", |(_, d)| d);
            format!("remote:{}", domain.to_ascii_lowercase())
        }
        // Local, or unknown now: local delivery keeps it and reports the failure.
        _ => QUEUE_LOCAL.to_string(),
    }
}
