//! `LISTEN lazaret_queue` and `lazaret_mailbox`: a node hears at once when another
//! node gave a queue work (a message accepted, a DSN queued) or a user new mail,
//! instead of at its next look. A hint only: a notification lost while the
//! connection was down costs a delay, never mail, because every node also looks on
//! a timer.

use super::{PostgresStore, MAILBOX_CHANNEL, QUEUE_CHANNEL};
use crate::Result;
use futures::StreamExt;
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

    /// Starts the listening connection; it reconnects on its own.
    pub(super) fn listen(&self) -> Result<()> {
        let (config, wakeups) = (self.config.clone(), self.wakeups.clone());
        self.bridge.spawn(async move {
            loop {
                if let Err(e) = listen_once(&config, &wakeups).await {
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
}

impl Wakeups {
    pub(super) fn new() -> Wakeups {
        Wakeups {
            queues: broadcast::channel(256).0,
            mailboxes: broadcast::channel(256).0,
        }
    }
}

/// Listens on one connection until it fails.
async fn listen_once(
    config: &tokio_postgres::Config,
    wakeups: &Wakeups,
) -> std::result::Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(tokio_postgres::NoTls).await?;
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
            }
            message = messages.next() => match message {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    let to = match n.channel() {
                        MAILBOX_CHANNEL => &wakeups.mailboxes,
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
