//! The single-machine store: SQLite (WAL, synchronous=FULL) for metadata, message
//! bodies appended to pack files. Reads use a small pool of connections; every write
//! goes through the group-commit [`writer::Writer`]. Background threads at lower
//! priority keep the text index, checkpoint the log and compact packs.
//!
//! One file per concern: `ingest` (accept a message), `queues` (routing, local
//! delivery), `outbound` (remote queues, attempts, DSNs), `folders` (IMAP's view),
//! `messages` (reading bodies, deletion, reclaiming rows nothing holds), `accounts`,
//! `find`, `clusters` (outbreak clusters), `quarantine` (and import), `scanning`, `reindex`,
//! `check` (invariants, `lazaret check`), `events` (the message event log: trace,
//! exposure), `settings` (settings,
//! audit, figures); storage mechanics in `blobs`, `compaction`, `text_index`,
//! `checkpoint`, `changed_pages` (for incremental backups), `writer`, `schema`.

mod accounts;
mod blobs;
mod changed_pages;
pub(crate) mod check;
mod checkpoint;
pub(crate) mod clusters;
mod compaction;
pub(crate) mod events;
pub(crate) mod find;
mod folders;
pub(crate) mod ingest;
mod lookups;
pub(crate) mod messages;
pub(crate) mod outbound;
pub(crate) mod quarantine;
pub(crate) mod queues;
mod reindex;
pub(crate) mod scanning;
mod schema;
mod settings;
mod snapshot;
mod text_index;
mod writer;

pub use check::{CheckFault, CheckReport, RepairReport};
pub use clusters::set_enabled as set_clustering;
pub use ingest::{new_message_id, AUTH_CHECKS_ACTOR};
pub use outbound::OUTBOUND_DISABLED;
pub use reindex::ReindexBatch;
pub use snapshot::{renew_store_id, STORE_ID};
#[cfg(feature = "postgres")]
pub(crate) use writer::WriterFigures;
pub use writer::{WriterHistograms, BATCH_BUCKETS, COMMIT_BUCKETS_US};

use crate::metadata::{Digests, MessageMetadata};
use crate::model::*;
use crate::{now, password, Result, Store, StoreError};
pub use blobs::Location as BlobLocation;
use blobs::{BlobRef, Blobs};
use lazaret_core::state::{QUEUE_INBOUND, QUEUE_LOCAL, SYSTEM_QUEUES};
use lazaret_core::QueueState;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use text_index::TextIndex;
use writer::Writer;

use ingest::{insert_parts, Prepared};
use messages::{blob_ref_of, count_pack_bytes, release, summary_row, unreferenced};

/// How much of the database file a bulk reader maps (SQLite caps it at 2 GB by default).
const BULK_READ_MMAP_BYTES: i64 = 2 << 30;

/// Read connections kept for reuse; more may exist during a burst, but each holds its
/// own page cache, so the surplus is closed after use to keep memory flat.
const POOLED_READERS: usize = 8;

pub struct EmbeddedStore {
    db_path: PathBuf,
    data_dir: PathBuf,
    blobs: Arc<Blobs>,
    writer: Writer,
    readers: Mutex<Vec<Connection>>,
    text: TextIndex,
    _compactor: compaction::Compactor,
    /// `[outbreak] hold_growth`, applied when mail leaves `inbound`.
    hold: Mutex<Option<HoldRule>>,
    changes: Arc<changed_pages::ChangedPages>,
}

/// Setting naming the bucket a store's messages went to, once any did.
const OBJECTS_SETTING: &str = "blobs.objects";

/// Connects to the bucket new messages go to, if any. A store whose messages went to
/// a bucket cannot be opened without it: its rows without a pack name objects, and
/// would read as missing files.
fn object_bucket(
    conn: &Connection,
    settings: Option<&crate::objects::ObjectSettings>,
) -> Result<Option<crate::objects::Objects>> {
    let recorded: Option<String> = conn
        .query_row(
            "SELECT value FROM settings WHERE key=?1",
            [OBJECTS_SETTING],
            |r| r.get(0),
        )
        .optional()?;
    let Some(settings) = settings else {
        return match recorded {
            Some(bucket) => Err(StoreError::Invalid(format!(
                "this store keeps messages in {bucket}: set [store] blobs = \"s3\" with that bucket"
            ))),
            None => Ok(None),
        };
    };
    let bucket = format!("s3://{}/{}", settings.bucket, settings.prefix);
    if let Some(recorded) = recorded.filter(|r| *r != bucket) {
        return Err(StoreError::Invalid(format!(
            "this store keeps messages in {recorded}, not {bucket}: [store] bucket and prefix must name the same place"
        )));
    }
    let objects = crate::objects::Objects::open(settings)?;
    conn.execute(
        "INSERT OR IGNORE INTO settings(key, value) VALUES(?1, ?2)",
        [OBJECTS_SETTING, &bucket],
    )?;
    Ok(Some(objects))
}

/// Every checkpoint goes through `ChangedPages` (incremental backups rely on it):
/// none when a connection closes, none automatic on a connection that writes.
fn no_untracked_checkpoints(conn: &Connection) -> Result<()> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    Ok(())
}

fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // The writer runs some 30 distinct statements per batch of mail (ingest, scan
    // verdicts, routing, delivery, clusters); rusqlite's default cache of 16 would
    // evict and parse them again every time.
    conn.set_prepared_statement_cache_capacity(128);
    // Statement journals (every multi-row change keeps one) in memory, not temp files.
    conn.execute_batch(
        "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA temp_store=MEMORY;",
    )?;
    no_untracked_checkpoints(&conn)?;
    find::register_functions(&conn)?;
    Ok(conn)
}

/// A connection for a background thread that only reads.
fn open_read_only(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    no_untracked_checkpoints(&conn)?;
    Ok(conn)
}

/// For background threads (text index, compaction): they run only on CPU that mail
/// leaves idle. A niced thread still keeps a core for its time slice when an SMTP
/// session wakes up (p99 DATA→250 at 400 msgs/s was 3.5–4.4 ms with the text indexer
/// at nice 10, 1.6–1.9 ms without it); `SCHED_IDLE` gives the core up at once.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread; the parameter outlives the call.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::pid_t;
        let param = libc::sched_param { sched_priority: 0 };
        if libc::sched_setscheduler(tid, libc::SCHED_IDLE, &param) != 0 {
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19);
        }
    }
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store under `data_dir`. A new store gets the
    /// local domain `localhost`, so built-in defaults can take mail at once.
    pub fn open(data_dir: &Path) -> Result<EmbeddedStore> {
        Self::open_with(data_dir, blobs::PACK_LIMIT, None)
    }

    /// As `open`, with new message bodies going to a bucket (`[store] blobs = "s3"`)
    /// when `objects` names one.
    pub fn open_with_objects(
        data_dir: &Path,
        objects: Option<&crate::objects::ObjectSettings>,
    ) -> Result<EmbeddedStore> {
        Self::open_with(data_dir, blobs::PACK_LIMIT, objects)
    }

    /// As `open`, closing pack files at `pack_limit` bytes (tests use small packs).
    #[cfg(test)]
    pub(crate) fn open_with_pack_limit(data_dir: &Path, pack_limit: u64) -> Result<EmbeddedStore> {
        Self::open_with(data_dir, pack_limit, None)
    }

    fn open_with(
        data_dir: &Path,
        pack_limit: u64,
        objects: Option<&crate::objects::ObjectSettings>,
    ) -> Result<EmbeddedStore> {
        std::fs::create_dir_all(data_dir)
            .map_err(crate::io_err(format!("create {}", data_dir.display())))?;
        let db_path = data_dir.join("lazaret.db");
        let changes = changed_pages::ChangedPages::open(&db_path);
        let mut conn = open_connection(&db_path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(schema::SCHEMA)?;
        for (table, column, definition) in schema::ADDED_COLUMNS {
            let present = conn
                .prepare(&format!(
                    "SELECT 1 FROM pragma_table_info('{table}') WHERE name=?1"
                ))?
                .exists([column])?;
            if !present {
                conn.execute_batch(&format!(
                    "ALTER TABLE {table} ADD COLUMN {column} {definition}"
                ))?;
            }
        }
        conn.execute_batch(schema::LATE_INDEXES)?;
        conn.execute_batch(schema::SEED_ID_HIGH)?;
        // Stores from before the text index moved to its own file: the indexer
        // rebuilds it there from the blobs.
        conn.execute_batch("DROP TABLE IF EXISTS text_index")?;
        // The writer's page cache (default 2 MB) holds a batch's dirty pages: smaller,
        // and a bulk action spills them to the WAL mid-transaction.
        conn.pragma_update(None, "cache_size", -32768)?;
        let fresh: bool = conn
            .query_row("SELECT value FROM settings WHERE key='created'", [], |r| {
                r.get::<_, String>(0)
            })
            .optional()?
            .is_none();
        if fresh {
            conn.execute(
                "INSERT INTO settings(key, value) VALUES('created', ?1)",
                [now().to_string()],
            )?;
            conn.execute(
                "INSERT OR IGNORE INTO domains(name, created) VALUES('localhost', ?1)",
                [now()],
            )?;
        }
        // Stores from before subscriptions had their own table kept a flag per folder.
        conn.execute_batch(
            "INSERT OR IGNORE INTO subscriptions(user, name)
                 SELECT user, name FROM mailboxes WHERE subscribed=1
                 AND NOT EXISTS(SELECT 1 FROM settings WHERE key='subscriptions.table');
             INSERT OR IGNORE INTO settings(key, value) VALUES('subscriptions.table', '1');",
        )?;
        // Which store this is, for backups (a backup only builds on earlier backups of
        // the same store); stores from before it get one now.
        conn.execute(
            "INSERT OR IGNORE INTO settings(key, value) VALUES(?1, ?2)",
            [STORE_ID, &new_message_id()],
        )?;
        // Before anything below changes a message: the triggers keep the file exact.
        lookups::open_for_writer(&conn, data_dir)?;
        let mut blobs = Blobs::open(data_dir.join("blobs"), pack_limit)?;
        if let Some(bucket) = object_bucket(&conn, objects)? {
            blobs = blobs.with_objects(bucket);
        }
        let blobs = Arc::new(blobs);
        ingest::verify_newest_pack(&conn, &blobs)?;
        checkpoint::install(&mut conn, &db_path, data_dir, changes.clone())?;
        let writer = Writer::start(conn);
        let text = TextIndex::open(data_dir, &db_path, blobs.clone(), writer.clone())?;
        let compactor = compaction::Compactor::start(blobs.clone(), writer.clone(), &db_path);
        Ok(EmbeddedStore {
            db_path,
            data_dir: data_dir.to_path_buf(),
            blobs,
            writer,
            readers: Mutex::new(Vec::new()),
            text,
            _compactor: compactor,
            hold: Mutex::new(None),
            changes,
        })
    }

    /// Compacts mostly-dead packs now (the background thread does it every minute);
    /// returns how many pack files were removed.
    pub fn compact_packs(&self) -> Result<u64> {
        self.read(|c| compaction::compact(&self.blobs, &self.writer, c))
    }

    fn open_reader(&self) -> Result<Connection> {
        let conn = open_connection(&self.db_path)?;
        self.text.attach(&conn)?;
        lookups::attach(&conn, &self.data_dir)?;
        Ok(conn)
    }

    fn read<R>(&self, f: impl FnOnce(&Connection) -> Result<R>) -> Result<R> {
        let pooled = self.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => self.open_reader()?,
        };
        let result = f(&conn);
        let mut pool = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOLED_READERS {
            pool.push(conn);
        }
        result
    }

    /// `read` with the database file mapped for the call: a page not in the
    /// connection's own small cache is then a memory access, not a pread copying it
    /// from the kernel's cache (45% of the time of `clusters` on 110,000 messages went
    /// there). Only for the bulk walks that gain from it, and unmapped after: every
    /// page a mapping touches stays in the process's resident set while it is mapped,
    /// so readers that kept one grew it to the database's size (2.7 GB at 1M messages,
    /// 140 MB of it the server's own memory).
    fn read_mapped<R>(&self, f: impl FnOnce(&Connection) -> Result<R>) -> Result<R> {
        self.read(|c| {
            c.pragma_update(None, "mmap_size", BULK_READ_MMAP_BYTES)?;
            let result = f(c);
            // Setting the limit to 0 unmaps the file.
            c.pragma_update(None, "mmap_size", 0)?;
            result
        })
    }

    fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        self.writer.write(f)
    }
}

impl Store for EmbeddedStore {
    fn close(&self) {
        self.text.close();
    }

    fn ingest(&self, incoming: Incoming) -> Result<Accepted> {
        self.ingest_impl(incoming)
    }

    fn recipient_status(&self, address: &str) -> Result<RecipientStatus> {
        self.recipient_status_impl(address)
    }

    fn domain_add(&self, name: &str) -> Result<()> {
        self.domain_add_impl(name)
    }

    fn domain_list(&self) -> Result<Vec<DomainInfo>> {
        self.domain_list_impl()
    }

    fn domain_remove(&self, name: &str) -> Result<()> {
        self.domain_remove_impl(name)
    }

    fn user_add(&self, address: &str, password: &str) -> Result<()> {
        self.user_add_impl(address, password)
    }

    fn user_list(&self) -> Result<Vec<UserInfo>> {
        self.user_list_impl()
    }

    fn user_exists(&self, address: &str) -> Result<bool> {
        let address = address.trim().to_ascii_lowercase();
        self.read(move |c| {
            Ok(c.prepare_cached("SELECT 1 FROM users WHERE address=?1")?
                .exists([&address])?)
        })
    }

    fn user_remove(&self, address: &str, delete_mail: bool) -> Result<u64> {
        self.user_remove_impl(address, delete_mail)
    }

    fn user_set_password(&self, address: &str, password: &str) -> Result<()> {
        self.user_set_password_impl(address, password)
    }

    fn user_verify_password(&self, address: &str, password: &str) -> Result<bool> {
        self.user_verify_password_impl(address, password)
    }

    fn queue_list(&self) -> Result<Vec<QueueSummary>> {
        self.queue_list_impl()
    }

    fn queue_set_state(&self, name: &str, state: QueueState) -> Result<()> {
        self.queue_set_state_impl(name, state)
    }

    fn route_inbound(
        &self,
        limit: usize,
        require_scan: bool,
        next_hop: &dyn Fn(&str) -> String,
        retry_delay_secs: i64,
    ) -> Result<RouteReport> {
        self.route_inbound_impl(limit, require_scan, next_hop, retry_delay_secs)
    }

    fn deliver_local(&self, limit: usize, retry_delay_secs: i64) -> Result<DeliveryReport> {
        self.deliver_local_impl(limit, retry_delay_secs)
    }

    fn next_due(&self, queues: &[&str]) -> Result<Option<i64>> {
        self.next_due_impl(queues)
    }

    fn outbound_queues(&self) -> Result<Vec<(String, i64)>> {
        self.outbound_queues_impl()
    }

    fn outbound_due(&self, queue: &str, limit: usize, busy: &[i64]) -> Result<Vec<QueuedMessage>> {
        self.outbound_due_impl(queue, limit, busy)
    }

    fn record_attempts(&self, outcomes: Vec<AttemptOutcome>) -> Result<()> {
        self.record_attempts_impl(outcomes)
    }

    fn record_worker_failure(&self, items: Vec<i64>, error: String) -> Result<u64> {
        self.record_worker_failure_impl(items, error)
    }

    fn items_set_frozen(&self, ids: &[String], frozen: bool) -> Result<u64> {
        self.items_set_frozen_impl(ids, frozen)
    }

    fn queue_retry_now(&self, queues: &[String]) -> Result<RetryReport> {
        self.queue_retry_now_impl(queues)
    }

    fn items_retry_now(&self, ids: &[String]) -> Result<RetryReport> {
        self.items_retry_now_impl(ids)
    }

    fn set_outbound_disabled(&self, disabled: bool) -> Result<()> {
        self.set_setting(OUTBOUND_DISABLED, if disabled { "1" } else { "0" })
    }

    fn outbound_disabled(&self) -> Result<bool> {
        self.read(outbound::outbound_disabled)
    }

    fn folders(&self, user: &str) -> Result<Vec<Folder>> {
        self.folders_impl(user)
    }
    fn folder_create(&self, user: &str, name: &str, special: Option<&str>) -> Result<()> {
        self.folder_create_impl(user, name, special)
    }
    fn folder_delete(&self, user: &str, name: &str) -> Result<()> {
        self.folder_delete_impl(user, name)
    }
    fn folder_rename(&self, user: &str, from: &str, to: &str) -> Result<()> {
        self.folder_rename_impl(user, from, to)
    }
    fn folder_subscribe(&self, user: &str, name: &str, on: bool) -> Result<()> {
        self.folder_subscribe_impl(user, name, on)
    }
    fn folder_snapshot(&self, user: &str, name: &str) -> Result<FolderSnapshot> {
        self.folder_snapshot_impl(user, name)
    }
    fn folder_track_modseq(&self, user: &str, name: &str) -> Result<i64> {
        self.folder_track_modseq_impl(user, name)
    }
    fn subscriptions(&self, user: &str) -> Result<Vec<String>> {
        self.subscriptions_impl(user)
    }
    fn folder_claim_recent(&self, user: &str, name: &str, upto: i64) -> Result<i64> {
        self.folder_claim_recent_impl(user, name, upto)
    }
    fn write_generation(&self) -> u64 {
        self.writer.generation()
    }
    fn set_flags(
        &self,
        user: &str,
        folder: &str,
        entries: Vec<i64>,
        change: FlagChange,
        flags: Vec<String>,
        unchanged_since: Option<i64>,
    ) -> Result<FlagsStored> {
        self.set_flags_impl(user, folder, entries, change, flags, unchanged_since)
    }
    fn copy_entries(
        &self,
        user: &str,
        from: &str,
        to: &str,
        entries: Vec<i64>,
        remove: bool,
    ) -> Result<(i64, Vec<(i64, i64)>)> {
        self.copy_impl(user, from, to, entries, remove)
    }
    fn append(
        &self,
        user: &str,
        folder: &str,
        id: String,
        data: Vec<u8>,
        flags: Vec<String>,
        internal_date: Option<i64>,
    ) -> Result<(i64, i64)> {
        self.append_impl(user, folder, id, data, flags, internal_date)
    }

    fn mailbox_list(&self, user: &str) -> Result<Vec<MailboxInfo>> {
        self.mailbox_list_impl(user)
    }

    fn mailbox_messages(&self, user: &str, mailbox: &str) -> Result<Vec<MessageSummary>> {
        self.mailbox_messages_impl(user, mailbox)
    }

    fn queue_messages(&self, queue: &str) -> Result<Vec<MessageSummary>> {
        self.queue_messages_impl(queue)
    }

    fn message_raw(&self, id: &str) -> Result<Vec<u8>> {
        self.message_raw_impl(id)
    }

    fn imap_cache_get(&self, messages: &[String]) -> Result<Vec<ImapCached>> {
        self.imap_cache_get_impl(messages)
    }

    fn imap_cache_put(&self, entries: Vec<(String, ImapCached)>) -> Result<()> {
        self.imap_cache_put_impl(entries)
    }

    fn message_append_to(&self, message: &str, buf: &mut Vec<u8>) -> Result<usize> {
        self.message_append_to_impl(message, buf)
    }

    fn message_head(&self, message: &str) -> Result<Vec<u8>> {
        self.message_head_impl(message)
    }

    fn mailbox_delete(&self, user: &str, mailbox: &str, ids: &[String]) -> Result<u64> {
        self.mailbox_delete_impl(user, mailbox, ids)
    }

    fn find(
        &self,
        places: &[Place],
        filters: &Filters,
        sort: Option<SortKey>,
        offset: usize,
        limit: Option<usize>,
    ) -> Result<FindResult> {
        let (places, filters) = (places.to_vec(), filters.clone());
        self.read(move |c| find::find(c, &places, &filters, sort, offset, limit))
    }

    fn find_ids(&self, places: &[Place], filters: &Filters) -> Result<Vec<String>> {
        let (places, filters) = (places.to_vec(), filters.clone());
        self.read(move |c| find::find_ids(c, &places, &filters))
    }

    fn clusters(&self, query: &ClusterQuery) -> Result<Vec<ClusterSummary>> {
        let now = now();
        let candidates = self.read_mapped(|c| clusters::candidates(c, query, now))?;
        // Each summary walks every member of its cluster: on 1M messages the 61
        // clusters listed held 210,000 members. Summaries are made on several read
        // connections at once, candidate `i` by worker `i % workers`.
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 4)
            .min(candidates.len().max(1));
        let summaries: Vec<Result<Vec<Option<ClusterSummary>>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|w| {
                    let mine: Vec<i64> = candidates
                        .iter()
                        .skip(w)
                        .step_by(workers)
                        .copied()
                        .collect();
                    scope.spawn(move || {
                        self.read_mapped(|c| {
                            mine.iter()
                                .map(|&id| clusters::summary(c, id, now, 3))
                                .collect()
                        })
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        let mut per_worker = Vec::with_capacity(workers);
        for s in summaries {
            per_worker.push(s?.into_iter());
        }
        let mut out = Vec::new();
        for i in 0..candidates.len() {
            let Some(Some(s)) = per_worker[i % workers].next() else {
                continue;
            };
            if clusters::wanted(query, &s) {
                out.push(s);
                if out.len() >= query.limit.max(1) {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn cluster(&self, id: i64) -> Result<Option<ClusterSummary>> {
        self.read(move |c| clusters::summary(c, id, now(), 10))
    }

    fn cluster_allow(&self, id: i64, allowed: bool) -> Result<Option<u64>> {
        self.write(move |c| clusters::set_allowed(c, id, allowed, now()))
    }

    fn set_cluster_hold(&self, rule: Option<HoldRule>) {
        *self.hold.lock().unwrap_or_else(|e| e.into_inner()) = rule;
    }

    fn file_clusters(&self, limit: usize) -> Result<usize> {
        // Quiet: clusters are nothing IMAP's cached folder views show, and a write that
        // moved the generation would make every session re-read its folder.
        self.writer
            .write_quiet(move |c| clusters::file_pending(c, limit, now()))
    }

    fn reclaim(&self, limit: usize) -> Result<usize> {
        // Quiet: the messages are in no folder, so no IMAP session's view changes.
        let (reclaimed, legacy) = self
            .writer
            .write_quiet(move |c| messages::reclaim_batch(c, limit))?;
        self.discard_blobs(legacy);
        Ok(reclaimed)
    }

    fn reclaim_backlog(&self) -> Result<u64> {
        self.read(messages::reclaim_backlog)
    }

    fn clusters_pending(&self) -> Result<ClustersPending> {
        self.read(clusters::pending)
    }

    fn prune_cluster_keys(&self, slice: u32) -> Result<usize> {
        self.writer.write_quiet(move |c| {
            if slice == 0 {
                clusters::prune_growth(c, now())?;
            }
            clusters::prune_keys(c, slice, crate::CLUSTER_KEY_SLICES)
        })
    }

    fn scan_pending(&self, limit: usize) -> Result<Vec<PendingScan>> {
        self.read(move |c| scanning::pending(c, limit))
    }

    fn unscanned_inbound(&self) -> Result<u64> {
        self.read(scanning::unscanned_inbound)
    }

    fn rescan_candidates(
        &self,
        after: i64,
        limit: usize,
        content_version: &str,
        scope: RescanScope,
    ) -> Result<Vec<PendingScan>> {
        let version = content_version.to_string();
        self.read(move |c| scanning::rescan_candidates(c, after, limit, &version, scope))
    }

    fn hash_matches(
        &self,
        md5: Vec<(String, Option<u64>)>,
        sha256: Vec<(String, Option<u64>)>,
        scope: RescanScope,
    ) -> Result<Vec<(i64, String)>> {
        self.read(move |c| scanning::hash_matches(c, &md5, &sha256, scope))
    }

    fn messages_of_size(&self, sizes: Vec<u64>, scope: RescanScope) -> Result<Vec<PendingScan>> {
        self.read(move |c| scanning::messages_of_size(c, &sizes, scope))
    }

    fn record_scans(&self, records: Vec<ScanRecord>) -> Result<ActionReport> {
        let (report, old_blobs) = self.write(move |c| scanning::record(c, &records))?;
        self.discard_blobs(old_blobs);
        Ok(report)
    }

    fn backup_snapshot(
        &self,
        db_copy: &mut dyn std::io::Write,
        base: Option<&BackupBase>,
    ) -> Result<BackupSnapshot> {
        snapshot::take(self, db_copy, base)
    }

    fn record_scans_and_route(
        &self,
        records: Vec<ScanRecord>,
        next_hops: std::collections::HashMap<String, String>,
        retry_delay_secs: i64,
    ) -> Result<(ActionReport, RouteReport)> {
        let hold = *self.hold.lock().unwrap_or_else(|e| e.into_inner());
        let (report, routed, old_blobs) = self.write(move |c| {
            let (report, old_blobs) = scanning::record(c, &records)?;
            let routed = scanning::route_passed(c, &records, &next_hops, retry_delay_secs, hold)?;
            Ok((report, routed, old_blobs))
        })?;
        self.discard_blobs(old_blobs);
        Ok((report, routed))
    }

    fn blob_write(&self, uid: &str, data: &[u8]) -> Result<Option<BlobLocation>> {
        self.blob_write_impl(uid, data)
    }

    fn blob_read(&self, uid: &str) -> Result<Vec<u8>> {
        self.blob_read_impl(uid)
    }

    fn quarantine(&self, ids: &[String], actor: &str, reason: &str) -> Result<ActionReport> {
        let (ids, actor, reason) = (ids.to_vec(), actor.to_string(), reason.to_string());
        self.write(move |c| quarantine::quarantine(c, &ids, &actor, &reason))
    }

    fn quarantine_restore(&self, ids: &[String]) -> Result<ActionReport> {
        let ids = ids.to_vec();
        self.write(move |c| quarantine::restore(c, &ids))
    }

    fn quarantine_detail(&self, id: &str) -> Result<QuarantineDetail> {
        self.quarantine_detail_impl(id)
    }

    fn remove(&self, ids: &[String], dsns: Vec<Incoming>) -> Result<ActionReport> {
        self.remove_impl(ids, dsns)
    }

    fn import(&self, user: &str, folder: &str, messages: Vec<ImportMessage>) -> Result<u64> {
        self.import_impl(user, folder, messages)
    }

    fn message_count(&self) -> Result<u64> {
        EmbeddedStore::message_count(self)
    }

    fn reindex_batch(&self, after: i64, limit: usize) -> Result<ReindexBatch> {
        EmbeddedStore::reindex_batch(self, after, limit)
    }

    fn remove_orphan_blobs(&self) -> Result<u64> {
        EmbeddedStore::remove_orphan_blobs(self)
    }

    fn check(&self, deep: bool, progress: &(dyn Fn(u64) + Sync)) -> Result<CheckReport> {
        EmbeddedStore::check(self, deep, progress)
    }

    fn repair(&self) -> Result<RepairReport> {
        EmbeddedStore::repair(self)
    }

    fn writer_figures(&self) -> WriterHistograms {
        self.writer.figures()
    }

    fn setting(&self, key: &str) -> Result<Option<String>> {
        self.setting_impl(key)
    }

    fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        self.set_setting_impl(key, value)
    }

    fn audit(&self, entry: AuditEntry) -> Result<()> {
        self.audit_impl(entry)
    }

    fn audit_since(&self, since: i64) -> Result<Vec<AuditRecord>> {
        self.audit_since_impl(since)
    }

    fn stats(&self) -> Result<StoreStats> {
        self.stats_impl()
    }

    fn record_downloads(&self, user: &str, detail: &str, entries: Vec<i64>) {
        if entries.is_empty() {
            return;
        }
        let (user, detail) = (user.to_string(), detail.to_string());
        // Quiet: no cached read shows the log, so IMAP's folder caches stay valid.
        let _ = self.writer.submit_quiet(move |c| {
            let mut message_of =
                c.prepare_cached("SELECT message FROM mailbox_entries WHERE id=?1")?;
            for entry in entries {
                let found: Option<i64> = message_of.query_row([entry], |r| r.get(0)).optional()?;
                if let Some(message) = found {
                    let id = events::StoreId::Unlogged;
                    events::insert(c, message, events::DOWNLOADED, &user, &detail, id)?;
                }
            }
            Ok(())
        });
    }

    fn trace(&self, id: Option<&str>, message_id: Option<&str>) -> Result<Vec<MessageTrace>> {
        self.read(|c| events::trace(c, id, message_id))
    }

    fn exposure(&self, scope: &ExposureScope) -> Result<Vec<ExposureRow>> {
        self.read(|c| events::exposure(c, scope))
    }

    fn prune_events(&self, before: i64, limit: usize) -> Result<usize> {
        self.write(move |c| events::prune(c, before, limit))
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
