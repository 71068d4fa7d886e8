//! `LISTEN lazaret_queue` and `lazaret_mailbox`: a node hears at once when another
//! node gave a queue work (a message accepted, a DSN queued) or a user new mail,
//! instead of at its next look. A hint only: a notification lost while the
//! connection was down costs a delay, never mail, because every node also looks on
//! a timer.
//!
//! Mailbox notifications also move this node's write generation (`Store::
//! write_generation`), which IMAP's folder cache is keyed on: a flag set or a message
//! expunged on another node makes the next SELECT here read the folder again. Every
//! commit that changes a folder notifies its user for that reason.

use super::{PostgresStore, MAILBOX_CHANNEL, QUEUE_CHANNEL};
use crate::Result;
use futures::StreamExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_postgres::AsyncMessage;

/// How long the listener waits before connecting again after losing its connection.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

impl PostgresStore {
    /// Queue names, as nodes announce new work in them. A receiver that falls more
    /// than a few hundred behind loses the oldest (`RecvError::Lagged`): it should
    /// then look at every queue.
    pub fn queue_wakeups(&self) -> broadcast::Receiver<String> {
        self.wakeups.queues.subscribe()
    }

    /// Users, as nodes announce new mail for them (the same caveat).
    pub fn mailbox_wakeups(&self) -> broadcast::Receiver<String> {
        self.wakeups.mailboxes.subscribe()
    }

    /// Hands what the nodes announce to `tell`, from tasks of the store's own.
    pub fn watch_news(&self, tell: Box<dyn Fn(crate::News) + Send + Sync>) {
        let tell: Arc<dyn Fn(crate::News) + Send + Sync> = Arc::from(tell);
        for (mut heard, news) in [
            (
                self.queue_wakeups(),
                crate::News::Queue as fn(String) -> crate::News,
            ),
            (self.mailbox_wakeups(), crate::News::Mailbox),
        ] {
            let tell = tell.clone();
            // Only a store shutting down refuses the task; it then has no news.
            let _ = self.bridge.spawn(async move {
                loop {
                    match heard.recv().await {
                        Ok(what) => tell(news(what)),
                        // Fell behind: what was missed is found at the next look.
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            });
        }
    }

    /// Changes whenever a folder may have changed, on this node or another.
    pub fn write_generation(&self) -> u64 {
        self.wakeups.generation.load(Ordering::SeqCst)
    }

    /// This node changed a folder: its own sessions must see it at once, not only once
    /// the notification comes back.
    pub(super) fn folders_changed(&self) {
        self.wakeups.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Starts the listening connection; it reconnects on its own.
    pub(super) fn listen(&self) -> Result<()> {
        let (config, tls, wakeups) = (self.config.clone(), self.tls.clone(), self.wakeups.clone());
        self.bridge.spawn(async move {
            loop {
                if let Err(e) = listen_once(&config, tls.clone(), &wakeups).await {
                    tracing::debug!("PostgreSQL notifications: {e}; listening again shortly");
                }
                tokio::time::sleep(RECONNECT_AFTER).await;
            }
        })
    }
}

/// Where the listener hands what it hears.
#[derive(Clone)]
pub(super) struct Wakeups {
    queues: broadcast::Sender<String>,
    mailboxes: broadcast::Sender<String>,
    generation: Arc<AtomicU64>,
}

impl Wakeups {
    pub(super) fn new() -> Wakeups {
        Wakeups {
            queues: broadcast::channel(256).0,
            mailboxes: broadcast::channel(256).0,
            generation: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// Listens on one connection until it fails.
async fn listen_once(
    config: &tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    wakeups: &Wakeups,
) -> std::result::Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(tls).await?;
    // The connection's messages (notifications among them) arrive only while it is
    // polled; the client's LISTEN below is answered through the same polling.
    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
    let statement = format!("LISTEN {QUEUE_CHANNEL}; LISTEN {MAILBOX_CHANNEL}");
    let listen = client.batch_execute(&statement);
    tokio::pin!(listen);
    let mut listening = false;
    loop {
        tokio::select! {
            done = &mut listen, if !listening => {
                done?;
                listening = true;
                // What changed while no one listened is unknown: caches start over.
                wakeups.generation.fetch_add(1, Ordering::SeqCst);
            }
            message = messages.next() => match message {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    let to = match n.channel() {
                        MAILBOX_CHANNEL => {
                            wakeups.generation.fetch_add(1, Ordering::SeqCst);
                            &wakeups.mailboxes
                        }
                        _ => &wakeups.queues,
                    };
                    // No receiver yet is no error.
                    let _ = to.send(n.payload().to_string());
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            },
        }
    }
}
