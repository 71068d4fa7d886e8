//! Lazaret's store: message bodies as blob files, metadata in an embedded database.
//!
//! Protocol and admin code talk to the [`Store`] trait only, so a PostgreSQL + object
//! storage backend can be added beside [`embedded::EmbeddedStore`] without touching them.
//! Every call blocks; async callers run them on a blocking thread.

mod addresses;
#[cfg(any(feature = "s3", feature = "postgres"))]
mod bridge;
pub mod embedded;
mod folder_rules;
mod message_path;
mod metadata;
mod model;
#[cfg(feature = "s3")]
pub mod objects;
#[cfg(not(feature = "s3"))]
#[path = "objects_absent.rs"]
pub mod objects;
mod objects_settings;
pub mod paced_file;
pub mod pages;
mod password;
#[cfg(feature = "postgres")]
pub mod postgres;

pub use addresses::normalize_address;
pub use embedded::{
    new_message_id, renew_store_id, BlobLocation, CheckFault, CheckReport, EmbeddedStore,
    ReindexBatch, RepairReport, WriterHistograms, AUTH_CHECKS_ACTOR, BATCH_BUCKETS,
    COMMIT_BUCKETS_US, OUTBOUND_DISABLED, STORE_ID,
};
pub use metadata::{Digests, MessageMetadata, PartInfo};
pub use model::*;

/// Bodies with no row younger than this may belong to an ingest still committing: the
/// orphan sweeps leave them.
pub const ORPHAN_MIN_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Slices of the cluster key space `Store::prune_cluster_keys` works through, one per call.
pub const CLUSTER_KEY_SLICES: u32 = 256;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Exists(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the store is shutting down")]
    Closed,
    /// An error PostgreSQL reported (its message and SQLSTATE).
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    /// A service the store needs (the database server) cannot be reached now: a
    /// temporary condition.
    #[error("{0}")]
    Unavailable(String),
    /// No room left on the store's filesystem (a commit that SQLite could not write).
    #[error("{0}")]
    DiskFull(String),
}

impl StoreError {
    /// Whether the filesystem under the store is full (a write failed with ENOSPC or
    /// EDQUOT, or SQLite found no room): a temporary condition for the sender.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Io { source, .. } => {
                matches!(
                    source.raw_os_error(),
                    Some(libc::ENOSPC) | Some(libc::EDQUOT)
                )
            }
            StoreError::Db(rusqlite::Error::SqliteFailure(e, _)) => {
                e.code == rusqlite::ErrorCode::DiskFull
            }
            StoreError::DiskFull(_) => true,
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::Io { context, source }
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Everything the server and the admin API need from a store.
pub trait Store: Send + Sync {
    /// Ends background work and leaves files as a clean shutdown should (called once
    /// when the server stops).
    fn close(&self) {}

    /// Makes a message durable (blob fsynced, metadata committed) in queue `inbound`.
    /// Returns only once it would survive a crash.
    fn ingest(&self, message: Incoming) -> Result<Accepted>;
    /// Is this address one of ours, and does the user exist?
    fn recipient_status(&self, address: &str) -> Result<RecipientStatus>;

    fn domain_add(&self, name: &str) -> Result<()>;
    fn domain_list(&self) -> Result<Vec<DomainInfo>>;
    fn domain_remove(&self, name: &str) -> Result<()>;
    fn user_add(&self, address: &str, password: &str) -> Result<()>;
    /// Every user with their message count and bytes (reads every mailbox entry).
    fn user_list(&self) -> Result<Vec<UserInfo>>;
    /// Whether `address` (any case) is a user: one lookup.
    fn user_exists(&self, address: &str) -> Result<bool>;
    /// Removes a user. With mail still in their mailboxes it refuses unless
    /// `delete_mail`; returns how many mailbox messages were deleted.
    fn user_remove(&self, address: &str, delete_mail: bool) -> Result<u64>;
    fn user_set_password(&self, address: &str, password: &str) -> Result<()>;
    fn user_verify_password(&self, address: &str, password: &str) -> Result<bool>;

    fn queue_list(&self) -> Result<Vec<QueueSummary>>;
    fn queue_set_state(&self, name: &str, state: lazaret_core::QueueState) -> Result<()>;
    /// Moves up to `limit` due messages out of `inbound` into the queue of their next
    /// hop, as `next_hop` names it per recipient; copies for queue `local` (when not
    /// frozen) go straight into their INBOX folders in the same commit.
    /// With `require_scan`, only messages the scanner has stamped are routed (nothing
    /// unscanned reaches a mailbox or a remote server).
    fn route_inbound(
        &self,
        limit: usize,
        require_scan: bool,
        next_hop: &dyn Fn(&str) -> String,
        retry_delay_secs: i64,
    ) -> Result<RouteReport>;
    /// Delivers up to `limit` due messages of queue `local` into their recipients'
    /// INBOX folders.
    fn deliver_local(&self, limit: usize, retry_delay_secs: i64) -> Result<DeliveryReport>;
    /// Earliest time (unix seconds) a message in one of these queues (if active)
    /// becomes due.
    fn next_due(&self, queues: &[&str]) -> Result<Option<i64>>;

    /// Remote queues with mail ready or waiting to retry (not frozen, outbound not
    /// disabled), each with its earliest attempt time.
    fn outbound_queues(&self) -> Result<Vec<(String, i64)>>;
    /// Up to `limit` messages of a remote queue due now, leaving out `busy` items.
    fn outbound_due(&self, queue: &str, limit: usize, busy: &[i64]) -> Result<Vec<QueuedMessage>>;
    /// Records what delivery attempts came to, with their DSNs, in one transaction.
    fn record_attempts(&self, outcomes: Vec<AttemptOutcome>) -> Result<()>;
    /// Counts a worker failure (panic, unclassified error) against items; returns how
    /// many were moved to `poison` for it.
    fn record_worker_failure(&self, items: Vec<i64>, error: String) -> Result<u64>;
    /// Freezes or thaws single queued messages (`q<n>` ids); returns how many changed.
    fn items_set_frozen(&self, ids: &[String], frozen: bool) -> Result<u64>;
    /// Makes every `ready`/`retry` item of these queues due now (`postqueue -f`);
    /// frozen items stay frozen. Returns how many were made due and how many are frozen.
    fn queue_retry_now(&self, queues: &[String]) -> Result<RetryReport>;
    /// The same for single queued messages (`q<n>` ids).
    fn items_retry_now(&self, ids: &[String]) -> Result<RetryReport>;
    /// `lazaret outbound disable|enable`: holds every remote queue, existing or new.
    fn set_outbound_disabled(&self, disabled: bool) -> Result<()>;
    fn outbound_disabled(&self) -> Result<bool>;

    // IMAP's view of a user's folders. Names are exact except INBOX (any case).
    fn folders(&self, user: &str) -> Result<Vec<Folder>>;
    /// Creates a folder (and missing parents), with an RFC 6154 special use if given
    /// (`\\Sent`, `\\Drafts`, `\\Trash`, `\\Junk`, `\\Archive`, `\\All`, `\\Flagged`).
    fn folder_create(&self, user: &str, name: &str, special: Option<&str>) -> Result<()>;
    /// Deletes a folder and its messages (not INBOX).
    fn folder_delete(&self, user: &str, name: &str) -> Result<()>;
    /// Renames a folder and its children; the new name gets a new UIDVALIDITY.
    fn folder_rename(&self, user: &str, from: &str, to: &str) -> Result<()>;
    fn folder_subscribe(&self, user: &str, name: &str, on: bool) -> Result<()>;
    fn folder_snapshot(&self, user: &str, name: &str) -> Result<FolderSnapshot>;
    /// A CONDSTORE client uses the folder: from now on new messages take a new
    /// mod-sequence each (before, they share the current one). Returns HIGHESTMODSEQ.
    fn folder_track_modseq(&self, user: &str, name: &str) -> Result<i64>;
    /// Subscribed names (folders or not), sorted.
    fn subscriptions(&self, user: &str) -> Result<Vec<String>>;
    /// A read-write session takes the folder's `\Recent` messages up to UID `upto`
    /// (exclusive); returns the first UID that was still recent before, so the caller's
    /// recent messages are those from it to `upto`. No other session gets them. With
    /// `upto` 0 it only tells where the recent messages start (EXAMINE).
    fn folder_claim_recent(&self, user: &str, name: &str, upto: i64) -> Result<i64>;
    /// A value that changes whenever any write may have committed; results read while
    /// it stayed the same are still current (for caches such as IMAP's folder index).
    fn write_generation(&self) -> u64;
    /// Changes flags of entries of one folder; returns each entry's flags after.
    fn set_flags(
        &self,
        user: &str,
        folder: &str,
        entries: Vec<i64>,
        change: FlagChange,
        flags: Vec<String>,
        unchanged_since: Option<i64>,
    ) -> Result<FlagsStored>;
    /// Copies (`remove`: moves) entries to another folder of the user; returns the
    /// target's UIDVALIDITY and (old uid, new uid) pairs.
    fn copy_entries(
        &self,
        user: &str,
        from: &str,
        to: &str,
        entries: Vec<i64>,
        remove: bool,
    ) -> Result<(i64, Vec<(i64, i64)>)>;
    /// Stores an uploaded message in a folder; returns (uidvalidity, uid).
    fn append(
        &self,
        user: &str,
        folder: &str,
        id: String,
        data: Vec<u8>,
        flags: Vec<String>,
        internal_date: Option<i64>,
    ) -> Result<(i64, i64)>;

    fn mailbox_list(&self, user: &str) -> Result<Vec<MailboxInfo>>;
    fn mailbox_messages(&self, user: &str, mailbox: &str) -> Result<Vec<MessageSummary>>;
    fn queue_messages(&self, queue: &str) -> Result<Vec<MessageSummary>>;
    fn message_raw(&self, id: &str) -> Result<Vec<u8>>;
    /// Cached IMAP ENVELOPE/BODYSTRUCTURE per message store id (empty when not cached).
    fn imap_cache_get(&self, messages: &[String]) -> Result<Vec<ImapCached>>;
    fn imap_cache_put(&self, entries: Vec<(String, ImapCached)>) -> Result<()>;
    /// Appends a message's bytes (by its store id) to `buf`, with no copy in between;
    /// returns how many.
    fn message_append_to(&self, message: &str, buf: &mut Vec<u8>) -> Result<usize>;
    /// Only the header block of a message (by its store id), for ENVELOPE and the like.
    fn message_head(&self, message: &str) -> Result<Vec<u8>>;
    /// Deletes the user's own messages (`m<n>` ids) from one folder, at the user's
    /// request (POP3 DELE, IMAP EXPUNGE); ids not in that folder are ignored.
    /// Returns how many were deleted.
    fn mailbox_delete(&self, user: &str, mailbox: &str, ids: &[String]) -> Result<u64>;

    // Find and act. Ids: `q<n>` queue items, `m<n>` mailbox entries, `x<n>` quarantine.
    // Actions take a batch of ids and do it in one transaction: all or nothing.
    /// Matches in `sort` order, the first `offset` left out (a page further on).
    fn find(
        &self,
        places: &[Place],
        filters: &Filters,
        sort: Option<SortKey>,
        offset: usize,
        limit: Option<usize>,
    ) -> Result<FindResult>;
    fn find_ids(&self, places: &[Place], filters: &Filters) -> Result<Vec<String>>;
    /// Outbreak clusters, biggest first.
    fn clusters(&self, query: &ClusterQuery) -> Result<Vec<ClusterSummary>>;
    /// One cluster (a merged cluster's id names the cluster it joined).
    fn cluster(&self, id: i64) -> Result<Option<ClusterSummary>>;
    /// Marks a cluster as known mail, or not. Allowing ends a hold and lets the copies
    /// it froze go on: returns how many, None if there is no such cluster.
    fn cluster_allow(&self, id: i64, allowed: bool) -> Result<Option<u64>>;
    /// `[outbreak] hold_growth`: from now on, mail leaving `inbound` whose cluster grows
    /// past `rule` is left frozen there instead (None: never).
    fn set_cluster_hold(&self, rule: Option<HoldRule>);
    /// Files up to `limit` messages stored since the last call into their clusters;
    /// returns how many (fewer than `limit`: none are left).
    fn file_clusters(&self, limit: usize) -> Result<usize>;
    /// Messages stored but not yet filed into clusters, and when the oldest arrived.
    fn clusters_pending(&self) -> Result<ClustersPending>;
    /// Drops the lookup keys of deleted messages in slice `slice` of
    /// `CLUSTER_KEY_SLICES` (of the key space), and with slice 0 growth rows older than
    /// two days; returns how many keys.
    fn prune_cluster_keys(&self, slice: u32) -> Result<usize>;
    /// Removes up to `limit` messages that no queue, folder or quarantine holds any
    /// more (their rows, parts, lookups, fingerprints, and files of older stores):
    /// deletions leave that to this, called in the background. Returns how many left
    /// the backlog (fewer than `limit`: it is empty).
    fn reclaim(&self, limit: usize) -> Result<usize>;
    /// Messages waiting for `reclaim`.
    fn reclaim_backlog(&self) -> Result<u64>;
    /// Moves queued and mailbox messages into quarantine.
    fn quarantine(&self, ids: &[String], actor: &str, reason: &str) -> Result<ActionReport>;
    /// Puts quarantined messages back where they were taken from.
    fn quarantine_restore(&self, ids: &[String]) -> Result<ActionReport>;
    fn quarantine_detail(&self, id: &str) -> Result<QuarantineDetail>;
    /// Deletes for good, queueing the given DSNs in the same transaction.
    fn remove(&self, ids: &[String], dsns: Vec<Incoming>) -> Result<ActionReport>;
    /// Stores messages into a user's folder (created if missing); returns how many.
    fn import(&self, user: &str, folder: &str, messages: Vec<ImportMessage>) -> Result<u64>;
    fn message_count(&self) -> Result<u64>;
    /// Rebuilds the index of up to `limit` messages after row id `after` from their blobs.
    fn reindex_batch(&self, after: i64, limit: usize) -> Result<ReindexBatch>;
    /// Deletes blob files no message names (older than an hour); returns how many.
    fn remove_orphan_blobs(&self) -> Result<u64>;
    /// Verifies the store's invariants (`lazaret check`); with `deep` every message's
    /// bytes are read and hashed. `progress` counts messages whose bytes were checked.
    fn check(&self, deep: bool, progress: &(dyn Fn(u64) + Sync)) -> Result<CheckReport>;
    /// Repairs what `check` finds and can be repaired; returns what changed.
    fn repair(&self) -> Result<RepairReport>;
    /// Histograms of the group commits so far (latency, requests per commit).
    fn writer_figures(&self) -> WriterHistograms {
        WriterHistograms::default()
    }

    // Scanning.
    /// Up to `limit` messages in `inbound`, due, never scanned. On a shared store they
    /// are this node's to scan for a while: other nodes' scanners take other messages.
    fn scan_pending(&self, limit: usize) -> Result<Vec<PendingScan>>;
    /// Messages in `inbound` waiting for the scanner.
    fn unscanned_inbound(&self) -> Result<u64>;
    /// Messages in the scope not scanned with `content_version`, after row id `after`,
    /// in row id order.
    fn rescan_candidates(
        &self,
        after: i64,
        limit: usize,
        content_version: &str,
        scope: RescanScope,
    ) -> Result<Vec<PendingScan>>;
    /// Messages in the scope holding a part (or being a message) with one of these hex
    /// digests (and size, when given): (message row id, digest).
    fn hash_matches(
        &self,
        md5: Vec<(String, Option<u64>)>,
        sha256: Vec<(String, Option<u64>)>,
        scope: RescanScope,
    ) -> Result<Vec<(i64, String)>>;
    /// Messages in the scope that are, or hold a part of, one of these sizes: what a
    /// hash signature the index has no digest for (SHA-1) could match.
    fn messages_of_size(&self, sizes: Vec<u64>, scope: RescanScope) -> Result<Vec<PendingScan>>;
    /// Records scan results in one transaction; `done` counts copies quarantined.
    /// For an online backup: writes a consistent copy of the database to `db_copy`
    /// while writers go on — the whole file, or with `base` the pages that
    /// changed since that backup when the store can tell ([`DatabaseCopy`]) — and lists
    /// the message files that copy names, pinned until the snapshot is dropped.
    fn backup_snapshot(
        &self,
        db_copy: &mut dyn std::io::Write,
        base: Option<&BackupBase>,
    ) -> Result<BackupSnapshot>;

    fn record_scans(&self, records: Vec<ScanRecord>) -> Result<ActionReport>;
    /// As `record_scans`, and in the same commit routes the inbound copies of the
    /// messages let through (as `route_inbound` does), `next_hops` naming the queue of
    /// each of their recipients.
    fn record_scans_and_route(
        &self,
        records: Vec<ScanRecord>,
        next_hops: std::collections::HashMap<String, String>,
        retry_delay_secs: i64,
    ) -> Result<(ActionReport, RouteReport)>;
    /// Writes a message body under a new store id, durably (for rewritten messages);
    /// returns where, for [`ScanAction::Replace`] (None: an object of its own).
    fn blob_write(&self, uid: &str, data: &[u8]) -> Result<Option<BlobLocation>>;
    /// Reads a message body by its store id.
    fn blob_read(&self, uid: &str) -> Result<Vec<u8>>;

    fn setting(&self, key: &str) -> Result<Option<String>>;
    fn set_setting(&self, key: &str, value: &str) -> Result<()>;

    fn audit(&self, entry: AuditEntry) -> Result<()>;
    fn audit_since(&self, since: i64) -> Result<Vec<AuditRecord>>;
    fn stats(&self) -> Result<StoreStats>;

    /// Notes in the message event log that `user`'s client downloaded the body (or a
    /// part) of these mailbox entries (IMAP `BODY[]`, POP3 RETR; `detail` says which).
    /// Does not wait for the commit: reading mail must not wait on the log.
    fn record_downloads(&self, user: &str, detail: &str, entries: Vec<i64>);
    /// The paths of the messages with store id `id` or Message-ID `message_id`.
    fn trace(&self, id: Option<&str>, message_id: Option<&str>) -> Result<Vec<MessageTrace>>;
    /// Every copy of the messages in `scope` and what became of it.
    fn exposure(&self, scope: &ExposureScope) -> Result<Vec<ExposureRow>>;
    /// Removes message events older than `before` (unix seconds), at most `limit`;
    /// returns how many went.
    fn prune_events(&self, before: i64, limit: usize) -> Result<usize>;

    /// The servers sharing this store, by name (none: the store has one server).
    fn nodes(&self) -> Result<Vec<NodeInfo>> {
        Ok(Vec::new())
    }

    /// From now on, calls `tell` with what the servers sharing this store announce
    /// (this one's own news included): a queue given work, a user given mail. A hint
    /// for waking sooner than the next look; a store with one server has none.
    fn watch_news(&self, tell: Box<dyn Fn(News) + Send + Sync>) {
        let _ = tell;
    }

    /// Records a bulk job this server starts (`spec`: what to do, as the server
    /// writes it), so that another server sharing the store can finish it should this
    /// one go away. None: the store has one server, and keeps no jobs.
    fn shared_job_start(&self, action: &str, spec: &str) -> Result<Option<i64>> {
        let _ = (action, spec);
        Ok(None)
    }

    /// How many of a shared job's items are done (a resumed job starts there).
    fn shared_job_progress(&self, id: i64, done: u64) -> Result<()> {
        let _ = (id, done);
        Ok(())
    }

    /// A shared job ended (`ok`: done, else failed: not resumed either way).
    fn shared_job_end(&self, id: i64, ok: bool) -> Result<()> {
        let _ = (id, ok);
        Ok(())
    }

    /// Takes over one running shared job whose server went away (silent past its
    /// heartbeat, or started again since it took the job), if there is one.
    fn shared_job_take_orphan(&self) -> Result<Option<SharedJob>> {
        Ok(None)
    }
}

/// A bulk job another server started and this one takes over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedJob {
    pub id: i64,
    pub action: String,
    pub spec: String,
    /// Items done before the takeover.
    pub done: u64,
    /// The server that worked on it last.
    pub from_node: String,
}

/// What one server sharing a store tells the others ([`Store::watch_news`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum News {
    /// This queue has new work.
    Queue(String),
    /// This user has new mail, or a folder of theirs changed.
    Mailbox(String),
}
