//! Chooses each recipient's next-hop queue: `local` for our users. Remote next hops
//! get `remote:DOMAIN` queues, where mail waits until outbound delivery exists.

use lazaret_core::state::QUEUE_LOCAL;
use lazaret_store::{RecipientStatus, Route, Store};

pub fn route(store: &dyn Store, recipient: &str) -> Route {
    match store.recipient_status(recipient) {
        Ok(RecipientStatus::NotLocal) => {
            let domain = recipient.rsplit_once('@').map_or("", |(_, d)| d);
            Route::Queue(format!("remote:{}", domain.to_ascii_lowercase()))
        }
        // Local, or unknown now: local delivery keeps it and reports the failure.
        _ => Route::Queue(QUEUE_LOCAL.to_string()),
    }
}
