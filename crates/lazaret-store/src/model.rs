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
    /// Set when the message was scanned before it was accepted (reject mode).
    pub scan: Option<ScanStamp>,
    /// How it arrived: its first event in the message event log.
    pub via: Via,
    /// What `[auth_checks]` found (mail on the inbound port, when they are on).
    pub auth: Option<AuthVerdict>,
}

/// SPF, DKIM, DMARC and ARC of an arriving message.
#[derive(Debug, Clone, Default)]
pub struct AuthVerdict {
    /// `spf=… dkim=… dmarc=… arc=…`, kept with the message for `find --auth`.
    pub results: String,
    /// Set: the message goes to quarantine as it is stored, for this reason.
    pub quarantine: Option<String>,
}

/// How a message came into the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Via {
    /// The inbound SMTP listener.
    #[default]
    Smtp,
    /// Submission, by this authenticated user: a user sending (or forwarding) mail.
    Submission(String),
    /// Made by the server itself: a DSN, a hold notice, an IMAP APPEND, an import.
    Server(&'static str),
}

/// What the scanner recorded about a message's contents.
#[derive(Debug, Clone, Default)]
pub struct ScanStamp {
    /// The signature set version it was scanned with.
    pub version: String,
    /// The version of the set's content signatures (body patterns, rules).
    pub content_version: String,
    /// Signature names found, comma-separated; None when clean.
    pub verdict: Option<String>,
}

/// A message waiting for the scanner.
#[derive(Debug, Clone)]
pub struct PendingScan {
    /// The message's row id.
    pub message: i64,
    /// Its blob (store id).
    pub uid: String,
    /// Recipients of its copies waiting in `inbound` (empty for a rescan), so that the
    /// scanner can route what it passes in the commit that records the scan.
    pub recipients: Vec<String>,
}

/// What to do with a message once scanned.
#[derive(Debug, Clone)]
pub enum ScanAction {
    /// Record the stamp only.
    Keep,
    /// Move every copy in the chosen places into quarantine.
    Quarantine {
        reason: String,
        queues: bool,
        mailboxes: bool,
    },
    /// The contents were rewritten (a header added) into blob `uid`, already durable
    /// at `location` (what `Store::blob_write` returned: None for an object).
    Replace {
        uid: String,
        size: u64,
        digests: crate::Digests,
        location: Option<crate::BlobLocation>,
    },
}

#[derive(Debug, Clone)]
pub struct ScanRecord {
    pub message: i64,
    /// Empty version strings keep the message's stamp (a verdict from the hash index
    /// says nothing about the rest of the contents).
    pub stamp: ScanStamp,
    pub action: ScanAction,
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

/// What "retry now" did.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct RetryReport {
    /// Items made due at once.
    pub due: u64,
    /// Items left alone because they are frozen.
    pub frozen: u64,
}

/// What routing out of `inbound` did.
#[derive(Debug, Default)]
pub struct RouteReport {
    /// Inbound messages moved on.
    pub routed: usize,
    /// Copies put in a remote or smarthost queue (outbound delivery is told).
    pub to_remote: usize,
    /// The copies for local users, filed in their INBOX in the same commit.
    pub local: DeliveryReport,
    /// Copies left frozen in `inbound` because their cluster is held.
    pub held: usize,
    /// Clusters the hold rule started holding in this step.
    pub holds: Vec<ClusterHold>,
}

/// Which stored mail a rescan looks at.
#[derive(Debug, Clone, Copy, Default)]
pub struct RescanScope {
    pub queues: bool,
    pub mailboxes: bool,
    /// Only this cluster's messages (`rescan --cluster ID`).
    pub cluster: Option<i64>,
}

/// `[outbreak] hold_growth`: new copies of a cluster that gained `messages` members
/// within `window_secs`, from `senders` distinct envelope senders or more, stay frozen
/// in `inbound`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldRule {
    pub messages: u64,
    pub window_secs: i64,
    pub senders: u64,
}

/// A cluster the hold rule started holding, for the audit log and the notice.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterHold {
    pub cluster: i64,
    /// New members within the rule's window.
    pub growth: u64,
    /// Distinct envelope senders among the newest of them.
    pub senders: u64,
    /// The subject of the copy that tipped it.
    pub subject: String,
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
    /// Messages no read-write session has seen yet (IMAP `\Recent`).
    pub recent: u64,
    pub highestmodseq: i64,
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
    /// The folder's mod-sequence of this entry's last change (CONDSTORE).
    pub modseq: i64,
}

/// A folder's state when an IMAP session (re)reads it; entries in UID order.
#[derive(Debug, Clone)]
pub struct FolderSnapshot {
    pub uidvalidity: i64,
    pub uidnext: i64,
    /// The first UID still `\Recent` (not yet claimed by a read-write session) when
    /// the snapshot was read; a cached snapshot may be behind (claims do not refresh
    /// caches), so it is a lower bound: `folder_claim_recent` has the exact value.
    pub recent_uid: i64,
    pub highestmodseq: i64,
    /// A CONDSTORE client has used the folder: every change takes a new mod-sequence.
    pub modseq_on: bool,
    /// The keywords (non-system flags) the folder's messages carry, each once, in the
    /// order first seen: what IMAP announces in FLAGS. Read with the entries, so a
    /// cached snapshot answers SELECT without going over every entry again.
    pub keywords: Vec<String>,
    /// Shared: sessions selecting the same unchanged folder share one copy.
    pub entries: std::sync::Arc<Vec<FolderEntry>>,
}

/// What IMAP computed once from a message's bytes and keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImapCached {
    pub envelope: Option<Vec<u8>>,
    pub bodystructure: Option<Vec<u8>>,
}

/// What a flag change did (IMAP STORE).
#[derive(Debug, Clone, Default)]
pub struct FlagsStored {
    /// Each entry found: (entry, flags after, its mod-sequence).
    pub entries: Vec<(i64, Vec<String>, i64)>,
    /// Entries left alone because they changed after the client's UNCHANGEDSINCE.
    pub modified: Vec<i64>,
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
    /// The host that answered (for the `delivered` event).
    pub remote: Option<String>,
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

impl QueueSummary {
    /// An active queue with nothing in it.
    pub fn empty(name: &str) -> QueueSummary {
        QueueSummary {
            name: name.to_string(),
            state: "active".into(),
            messages: 0,
            ready: 0,
            retry: 0,
            frozen: 0,
            oldest: None,
            next_attempt: None,
            held: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MailboxInfo {
    pub name: String,
    pub uidvalidity: i64,
    pub uidnext: i64,
    pub messages: u64,
}

/// One message in one place (queue or mailbox), as PRODUCT.md describes message objects.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
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
    /// For a quarantined message: where it was taken from, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the scanner found in it (such mail is never bounced).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
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
    pub quarantined: u64,
    pub quarantine_bytes: u64,
    pub database_bytes: u64,
    /// Messages accepted but not yet in the text index (find matches them directly
    /// meanwhile).
    #[serde(default)]
    pub text_index_behind: u64,
    /// Messages stored but not yet filed into outbreak clusters.
    pub clusters_behind: u64,
    /// Messages deleted but not yet reclaimed (their rows and lookups go in the
    /// background; they are in no place and not in the totals above).
    #[serde(default)]
    pub reclaim_behind: u64,
    /// Clusters held by `[outbreak] hold_growth` (not allowed since).
    pub clusters_held: u64,
    /// Copies frozen in `inbound` by a cluster hold, waiting for the admin.
    pub held_copies: u64,
}

/// Where `find` looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Place {
    Queues,
    Mailboxes,
    Quarantine,
}

/// Sort keys of `find --sort`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SortKey {
    Date,
    /// The order the store took the messages in, newest first (the web console's
    /// default: the first page of a million-message search comes from the index
    /// without sorting every match).
    Arrival,
    Subject,
    Size,
    From,
}

/// The filters of PRODUCT.md, AND-ed; text already validated, times absolute.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Filters {
    /// Substring of the subject, any case.
    pub subject: Option<String>,
    /// Regular expression over the subject.
    pub subject_re: Option<String>,
    /// Envelope sender or header From: an address, `@domain`, or a glob with `*`.
    pub from: Option<String>,
    /// A recipient: queued recipient, mailbox owner, or header To/Cc.
    pub to: Option<String>,
    /// Substring of the text (text/plain, text/html without tags), any case.
    pub body: Option<String>,
    /// Glob over attachment names and names inside archives, any case.
    pub attachment: Option<String>,
    /// SHA-256 of the whole message or of any decoded part or archive member.
    pub sha256: Option<String>,
    /// The scanner's verdict for the message.
    pub signature: Option<String>,
    /// What `[auth_checks]` found: `METHOD=RESULT` terms, comma-separated, all holding.
    pub auth: Option<String>,
    pub queue: Option<String>,
    /// `user@domain` or `user@domain/Folder`.
    pub mailbox: Option<String>,
    /// ready | retry | frozen (queued mail only); None for all.
    pub state: Option<String>,
    /// Received at or before this time (unix seconds).
    pub received_before: Option<i64>,
    /// Received at or after this time.
    pub received_after: Option<i64>,
    /// Quarantined at or before this time (quarantine only).
    pub quarantined_before: Option<i64>,
    pub larger_than: Option<u64>,
    /// Members of this outbreak cluster (`clusters`).
    pub cluster: Option<i64>,
    /// Only these ids (`q…`, `m…`, `x…`).
    pub ids: Option<Vec<String>>,
}

/// What `find` returns: the page asked for and whether more matched.
#[derive(Debug, Clone, Serialize)]
pub struct FindResult {
    pub messages: Vec<MessageSummary>,
    pub more: bool,
}

/// What an action did to a batch of ids.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ActionReport {
    /// Ids acted on.
    pub done: u64,
    /// Ids that were gone already or not of a kind the action takes.
    pub skipped: u64,
    /// Ids that could not be acted on, with why.
    pub failed: Vec<(String, String)>,
    /// Users whose folders changed (their IMAP sessions are told).
    pub users: Vec<String>,
    /// Ids created: for restore, where each message is now.
    pub created: Vec<String>,
}

/// A quarantined message and where it was taken from.
#[derive(Debug, Clone, Serialize)]
pub struct QuarantineDetail {
    pub id: String,
    pub message: MessageSummary,
    pub origin: String,
    pub quarantined: i64,
    pub actor: String,
    pub reason: String,
    /// Recipients (queued mail) or flags (mailbox mail) it had.
    pub recipients: Vec<String>,
    pub flags: Vec<String>,
    pub headers: String,
}

/// One message handed to `import`.
#[derive(Debug, Clone)]
pub struct ImportMessage {
    pub data: Vec<u8>,
    pub flags: Vec<String>,
    pub internal_date: Option<i64>,
}

/// One file an online backup copies.
#[derive(Debug, Clone)]
pub struct BackupSource {
    /// Its path relative to the data directory, which is also its name in the backup.
    pub name: String,
    pub path: std::path::PathBuf,
    /// Bytes to copy from its start (a pack goes on growing after the snapshot).
    pub len: u64,
    /// Its first `len` bytes never change: a copy of the same name and length held by
    /// an earlier backup stands in for it (what makes a backup incremental).
    pub append_only: bool,
}

/// The earlier backup a new one builds on.
#[derive(Debug, Clone)]
pub struct BackupBase {
    /// Names it uniquely (directory and id).
    pub id: String,
    /// A page copy larger than this (bytes) is not worth it: the whole database is
    /// copied.
    pub max_bytes: u64,
}

/// What `Store::backup_snapshot` wrote to `db_copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseCopy {
    /// The whole database file.
    Whole,
    /// The pages that changed since the base backup (format: [`crate::pages`]), and
    /// the size of the database they rebuild.
    Pages { count: u64, database_bytes: u64 },
}

/// What `Store::backup_snapshot` hands a backup.
pub struct BackupSnapshot {
    pub database: DatabaseCopy,
    /// The message files the database copy names.
    pub files: Vec<BackupSource>,
    /// Keeps those files from being removed (compaction, deletions wait) until dropped.
    pub pin: Box<dyn std::any::Any + Send>,
    /// Call once the backup is kept, with its [`BackupBase::id`]: the next page copy
    /// counts from this snapshot. Dropped uncalled, nothing changes.
    pub keep: Box<dyn FnOnce(&str) + Send>,
}

/// Which clusters `clusters` lists.
#[derive(Debug, Clone, Default)]
pub struct ClusterQuery {
    /// Seen (a member stored) at or after this time.
    pub since: Option<i64>,
    /// Only clusters with members in these places (empty: anywhere).
    pub places: Vec<Place>,
    /// At least this many members.
    pub min: u64,
    pub limit: usize,
    /// Fastest-growing first (new members in the last hour) instead of biggest first.
    pub by_growth: bool,
}

/// An outbreak cluster: near-identical messages, with what an admin needs to judge it.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterSummary {
    pub id: i64,
    /// Members still stored (queues, mailboxes, quarantine).
    pub messages: u64,
    pub first_seen: i64,
    pub last_seen: i64,
    /// Members that joined in the last hour (deleted ones included: it is growth).
    pub last_hour: u64,
    /// Distinct envelope senders.
    pub senders: u64,
    /// Distinct recipients reached (queued, mailbox owners, quarantined from).
    pub recipients: u64,
    pub in_queues: u64,
    pub in_mailboxes: u64,
    pub in_quarantine: u64,
    /// Queues and mailbox owners it reached (a sample).
    pub queues: Vec<String>,
    pub mailboxes: Vec<String>,
    /// Recent distinct subjects (a sample).
    pub subjects: Vec<String>,
    /// Attachments and archive members most members share.
    pub attachments: Vec<ClusterAttachment>,
    /// The scanner's verdicts among the members, with counts.
    pub verdicts: Vec<(String, u64)>,
    /// Marked as known mail by the admin (`clusters allow`).
    pub allowed: bool,
    /// Since when `[outbreak] hold_growth` holds its new copies (None: not held).
    pub held_since: Option<i64>,
    /// Copies frozen in `inbound` by the hold now.
    pub held_copies: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterAttachment {
    pub sha256: String,
    pub name: Option<String>,
    /// Members that carry it.
    pub messages: u64,
}

/// Messages waiting to be filed into outbreak clusters.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ClustersPending {
    pub messages: u64,
    /// When the oldest of them was received (unix seconds).
    pub oldest: Option<i64>,
}

/// One step of a message's path.
#[derive(Debug, Clone, Serialize)]
pub struct TraceEvent {
    /// Unix seconds.
    pub at: i64,
    pub event: String,
    /// The user, recipient, sender or actor the step concerns ('' if none).
    pub who: String,
    pub detail: String,
}

/// A message's whole path (`lazaret trace`) and where its copies are now.
#[derive(Debug, Clone, Serialize)]
pub struct MessageTrace {
    /// The store id ("queued as").
    pub id: String,
    /// False once nothing holds the message any more (delivered on, deleted, purged).
    pub exists: bool,
    pub message_id: String,
    pub subject: String,
    pub from: String,
    pub events: Vec<TraceEvent>,
    /// Where its copies are: `queue:NAME (state) rcpts`, `mailbox:USER/FOLDER`,
    /// `quarantine:xN`.
    pub now: Vec<String>,
}

/// Which messages an exposure report covers.
#[derive(Debug, Clone)]
pub enum ExposureScope {
    /// An outbreak cluster (and those merged into it), copies deleted since included.
    Cluster(i64),
    /// Queue items, mailbox entries and quarantined messages (ids from `find`).
    Places(Vec<String>),
}

/// One copy of a message and what became of it, for `lazaret exposure`.
#[derive(Debug, Clone, Serialize)]
pub struct ExposureRow {
    /// The message's store id.
    pub message: String,
    pub subject: String,
    /// The local user or remote address that received the copy.
    pub recipient: String,
    /// A user of this server (false: delivered to a remote address).
    pub local: bool,
    /// When it was delivered (unix seconds; None: not delivered).
    pub delivered: Option<i64>,
    /// When the user first read it (IMAP \Seen set, POP3 RETR).
    pub read: Option<i64>,
    /// When the user's client first downloaded its body or an attachment.
    pub downloaded: Option<i64>,
    /// When the user sent a copy on through submission.
    pub forwarded: Option<i64>,
    /// The copy in the user's folder carries `\\Seen` now (read, perhaps before the
    /// event log recorded reads).
    pub seen: bool,
    /// Where it is now: `mailbox:USER/FOLDER`, `quarantine:xN`, `queue:NAME`,
    /// `deleted by the user`, `delivered to HOST`, `bounced`, `gone`.
    pub now: String,
}

/// Folders every new user gets, with their RFC 6154 special-use attribute.
pub const DEFAULT_FOLDERS: [(&str, Option<&str>); 5] = [
    ("INBOX", None),
    ("Sent", Some("\\Sent")),
    ("Drafts", Some("\\Drafts")),
    ("Trash", Some("\\Trash")),
    ("Junk", Some("\\Junk")),
];

/// A server sharing the store with others (`[store] backend = "postgres"`), as `status`
/// lists it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeInfo {
    pub name: String,
    /// When the node last started (unix seconds).
    pub started: i64,
    /// Its last heartbeat (unix seconds).
    pub heartbeat: i64,
    pub version: String,
    /// Whether a heartbeat came within the last three periods.
    pub up: bool,
}
