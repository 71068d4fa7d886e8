//! Plain data passed in and out of the store.

use serde::Serialize;

/// A message as SMTP received it, before it is durable.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// Store id chosen by the caller, so it can appear in the Received header.
    pub id: String,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub helo: String,
    pub peer: String,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Accepted {
    pub id: String,
    pub size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipientStatus {
    LocalUser,
    UnknownLocalUser,
    NotLocal,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DeliveryReport {
    pub delivered: usize,
    pub deferred: usize,
    pub failed: usize,
    /// Users who got new mail (their open IMAP sessions are told).
    pub users: Vec<String>,
}

/// A user's folder as IMAP LIST/STATUS see it.
#[derive(Debug, Clone, Serialize)]
pub struct Folder {
    pub name: String,
    /// RFC 6154 attribute, e.g. `\Sent`.
    pub special: Option<String>,
    pub subscribed: bool,
    pub uidvalidity: i64,
    pub uidnext: i64,
    pub messages: u64,
    pub unseen: u64,
}

/// One message of a selected folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderEntry {
    /// The entry's id (`m<entry>` to the admin).
    pub entry: i64,
    pub uid: i64,
    /// The message's store id (its blob).
    pub message: String,
    pub flags: Vec<String>,
    pub internal_date: i64,
    pub size: u64,
}

/// A folder's state when an IMAP session (re)reads it; entries in UID order.
#[derive(Debug, Clone)]
pub struct FolderSnapshot {
    pub uidvalidity: i64,
    pub uidnext: i64,
    /// Shared: sessions selecting the same unchanged folder share one copy.
    pub entries: std::sync::Arc<Vec<FolderEntry>>,
}

/// What IMAP computed once from a message's bytes and keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImapCached {
    pub envelope: Option<Vec<u8>>,
    pub bodystructure: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagChange {
    Replace,
    Add,
    Remove,
}

/// A queued message handed to outbound delivery.
#[derive(Debug, Clone)]
pub struct QueuedMessage {
    /// The queue item (`q<item>` to the admin).
    pub item: i64,
    pub queue: String,
    /// The message's store id: its blob, and the "queued as" id.
    pub message: String,
    pub mail_from: String,
    pub rcpts: Vec<String>,
    pub attempts: i64,
    /// When the message was accepted (unix seconds).
    pub created: i64,
    pub size: u64,
    /// The scanner found something in it: never bounce it.
    pub flagged: bool,
}

/// What one delivery attempt of a queue item came to, per recipient.
#[derive(Debug, Clone, Default)]
pub struct AttemptOutcome {
    pub item: i64,
    /// Accepted by the next hop: done.
    pub delivered: Vec<String>,
    /// Refused for good (or given up on): removed from the queue.
    pub failed: Vec<String>,
    /// To be tried again at `next_attempt`.
    pub deferred: Vec<String>,
    pub next_attempt: i64,
    /// The last error, shown by `queue show`.
    pub error: Option<String>,
    /// A delivery status notification to queue, in the same transaction.
    pub dsn: Option<Incoming>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DomainInfo {
    pub name: String,
    pub users: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserInfo {
    pub address: String,
    pub messages: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueueSummary {
    pub name: String,
    pub state: String,
    pub messages: u64,
    pub ready: u64,
    pub retry: u64,
    pub frozen: u64,
    /// Received time (unix seconds) of the oldest message.
    pub oldest: Option<i64>,
    pub next_attempt: Option<i64>,
    /// Why an active queue makes no attempts anyway (outbound disabled, schedule).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MailboxInfo {
    pub name: String,
    pub uidvalidity: i64,
    pub uidnext: i64,
    pub messages: u64,
}

/// One message in one place (queue or mailbox), as PRODUCT.md describes message objects.
#[derive(Debug, Clone, Serialize)]
pub struct MessageSummary {
    pub id: String,
    pub location: String,
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    /// Header Date as unix seconds, else the received time.
    pub date: i64,
    pub size: u64,
    pub state: String,
    pub sha256: String,
    /// IMAP UID, for a message in a mailbox.
    pub uid: Option<i64>,
    /// The id SMTP reported ("queued as"), shared by every copy of the message.
    pub message: String,
    /// For a queued message: delivery attempts so far, next one, last error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct AuditEntry {
    pub actor: String,
    pub action: String,
    pub query: Option<String>,
    pub count: Option<u64>,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    pub id: i64,
    pub at: i64,
    #[serde(flatten)]
    pub entry: AuditEntry,
}

#[derive(Debug, Clone, Serialize)]
pub struct StoreStats {
    pub messages: u64,
    pub message_bytes: u64,
    pub queued: u64,
    pub in_mailboxes: u64,
    pub database_bytes: u64,
}
