//! The PostgreSQL store as the server sees it: the `Store` trait, each call answered
//! by the method of the same name in the module that owns that part of the schema.

use super::PostgresStore;
use crate::model::*;
use crate::{BlobLocation, CheckReport, ReindexBatch, RepairReport, Result, Store, StoreError};

impl Store for PostgresStore {
    /// Gives back the outbound claims this node holds, so that other nodes deliver
    /// those items at once rather than when the leases lapse.
    fn close(&self) {
        if let Err(e) = self.release_all_claims() {
            tracing::warn!("cannot give back this node's outbound claims: {e}");
        }
    }

    /// `lazaret backup` copies the embedded store's files; a shared database and
    /// bucket are backed up with PostgreSQL's and the object service's own tools
    /// (docs/SCALE-OUT.md), which see the whole cluster at one moment.
    fn backup_snapshot(
        &self,
        _db_copy: &mut dyn std::io::Write,
        _base: Option<&BackupBase>,
    ) -> Result<BackupSnapshot> {
        Err(StoreError::Invalid(
            "`lazaret backup` backs up the embedded store; with [store] backend = \"postgres\" \
             back up the database (pg_dump, or continuous archiving) and the bucket \
             (versioning or replication), as docs/SCALE-OUT.md explains"
                .into(),
        ))
    }

    fn ingest(&self, message: Incoming) -> Result<Accepted> {
        PostgresStore::ingest(self, message)
    }

    fn recipient_status(&self, address: &str) -> Result<RecipientStatus> {
        PostgresStore::recipient_status(self, address)
    }

    fn domain_add(&self, name: &str) -> Result<()> {
        PostgresStore::domain_add(self, name)
    }

    fn domain_list(&self) -> Result<Vec<DomainInfo>> {
        PostgresStore::domain_list(self)
    }

    fn domain_remove(&self, name: &str) -> Result<()> {
        PostgresStore::domain_remove(self, name)
    }

    fn user_add(&self, address: &str, password: &str) -> Result<()> {
        PostgresStore::user_add(self, address, password)
    }

    fn user_list(&self) -> Result<Vec<UserInfo>> {
        PostgresStore::user_list(self)
    }

    fn user_exists(&self, address: &str) -> Result<bool> {
        PostgresStore::user_exists(self, address)
    }

    fn user_remove(&self, address: &str, delete_mail: bool) -> Result<u64> {
        PostgresStore::user_remove(self, address, delete_mail)
    }

    fn user_set_password(&self, address: &str, password: &str) -> Result<()> {
        PostgresStore::user_set_password(self, address, password)
    }

    fn user_verify_password(&self, address: &str, password: &str) -> Result<bool> {
        PostgresStore::user_verify_password(self, address, password)
    }

    fn queue_list(&self) -> Result<Vec<QueueSummary>> {
        PostgresStore::queue_list(self)
    }

    fn queue_set_state(&self, name: &str, state: lazaret_core::QueueState) -> Result<()> {
        PostgresStore::queue_set_state(self, name, state)
    }

    fn route_inbound(
        &self,
        limit: usize,
        require_scan: bool,
        next_hop: &dyn Fn(&str) -> String,
        retry_delay_secs: i64,
    ) -> Result<RouteReport> {
        PostgresStore::route_inbound(self, limit, require_scan, next_hop, retry_delay_secs)
    }

    fn deliver_local(&self, limit: usize, retry_delay_secs: i64) -> Result<DeliveryReport> {
        PostgresStore::deliver_local(self, limit, retry_delay_secs)
    }

    fn next_due(&self, queues: &[&str]) -> Result<Option<i64>> {
        PostgresStore::next_due(self, queues)
    }

    fn outbound_queues(&self) -> Result<Vec<(String, i64)>> {
        PostgresStore::outbound_queues(self)
    }

    fn outbound_due(&self, queue: &str, limit: usize, busy: &[i64]) -> Result<Vec<QueuedMessage>> {
        PostgresStore::outbound_due(self, queue, limit, busy)
    }

    fn record_attempts(&self, outcomes: Vec<AttemptOutcome>) -> Result<()> {
        PostgresStore::record_attempts(self, outcomes)
    }

    fn record_worker_failure(&self, items: Vec<i64>, error: String) -> Result<u64> {
        PostgresStore::record_worker_failure(self, items, error)
    }

    fn items_set_frozen(&self, ids: &[String], frozen: bool) -> Result<u64> {
        PostgresStore::items_set_frozen(self, ids, frozen)
    }

    fn queue_retry_now(&self, queues: &[String]) -> Result<RetryReport> {
        PostgresStore::queue_retry_now(self, queues)
    }

    fn items_retry_now(&self, ids: &[String]) -> Result<RetryReport> {
        PostgresStore::items_retry_now(self, ids)
    }

    fn set_outbound_disabled(&self, disabled: bool) -> Result<()> {
        PostgresStore::set_outbound_disabled(self, disabled)
    }

    fn outbound_disabled(&self) -> Result<bool> {
        PostgresStore::outbound_disabled(self)
    }

    fn folders(&self, user: &str) -> Result<Vec<Folder>> {
        PostgresStore::folders(self, user)
    }

    fn folder_create(&self, user: &str, name: &str, special: Option<&str>) -> Result<()> {
        PostgresStore::folder_create(self, user, name, special)
    }

    fn folder_delete(&self, user: &str, name: &str) -> Result<()> {
        PostgresStore::folder_delete(self, user, name)
    }

    fn folder_rename(&self, user: &str, from: &str, to: &str) -> Result<()> {
        PostgresStore::folder_rename(self, user, from, to)
    }

    fn folder_subscribe(&self, user: &str, name: &str, on: bool) -> Result<()> {
        PostgresStore::folder_subscribe(self, user, name, on)
    }

    fn folder_snapshot(&self, user: &str, name: &str) -> Result<FolderSnapshot> {
        PostgresStore::folder_snapshot(self, user, name)
    }

    fn folder_track_modseq(&self, user: &str, name: &str) -> Result<i64> {
        PostgresStore::folder_track_modseq(self, user, name)
    }

    fn subscriptions(&self, user: &str) -> Result<Vec<String>> {
        PostgresStore::subscriptions(self, user)
    }

    fn folder_claim_recent(&self, user: &str, name: &str, upto: i64) -> Result<i64> {
        PostgresStore::folder_claim_recent(self, user, name, upto)
    }

    fn write_generation(&self) -> u64 {
        PostgresStore::write_generation(self)
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
        PostgresStore::set_flags(self, user, folder, entries, change, flags, unchanged_since)
    }

    fn copy_entries(
        &self,
        user: &str,
        from: &str,
        to: &str,
        entries: Vec<i64>,
        remove: bool,
    ) -> Result<(i64, Vec<(i64, i64)>)> {
        PostgresStore::copy_entries(self, user, from, to, entries, remove)
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
        PostgresStore::append(self, user, folder, id, data, flags, internal_date)
    }

    fn mailbox_list(&self, user: &str) -> Result<Vec<MailboxInfo>> {
        PostgresStore::mailbox_list(self, user)
    }

    fn mailbox_messages(&self, user: &str, mailbox: &str) -> Result<Vec<MessageSummary>> {
        PostgresStore::mailbox_messages(self, user, mailbox)
    }

    fn queue_messages(&self, queue: &str) -> Result<Vec<MessageSummary>> {
        PostgresStore::queue_messages(self, queue)
    }

    fn message_raw(&self, id: &str) -> Result<Vec<u8>> {
        PostgresStore::message_raw(self, id)
    }

    fn imap_cache_get(&self, messages: &[String]) -> Result<Vec<ImapCached>> {
        PostgresStore::imap_cache_get(self, messages)
    }

    fn imap_cache_put(&self, entries: Vec<(String, ImapCached)>) -> Result<()> {
        PostgresStore::imap_cache_put(self, entries)
    }

    fn message_append_to(&self, message: &str, buf: &mut Vec<u8>) -> Result<usize> {
        PostgresStore::message_append_to(self, message, buf)
    }

    fn message_head(&self, message: &str) -> Result<Vec<u8>> {
        PostgresStore::message_head(self, message)
    }

    fn mailbox_delete(&self, user: &str, mailbox: &str, ids: &[String]) -> Result<u64> {
        PostgresStore::mailbox_delete(self, user, mailbox, ids)
    }

    fn find(
        &self,
        places: &[Place],
        filters: &Filters,
        sort: Option<SortKey>,
        offset: usize,
        limit: Option<usize>,
    ) -> Result<FindResult> {
        PostgresStore::find(self, places, filters, sort, offset, limit)
    }

    fn find_ids(&self, places: &[Place], filters: &Filters) -> Result<Vec<String>> {
        PostgresStore::find_ids(self, places, filters)
    }

    fn clusters(&self, query: &ClusterQuery) -> Result<Vec<ClusterSummary>> {
        PostgresStore::clusters(self, query)
    }

    fn cluster(&self, id: i64) -> Result<Option<ClusterSummary>> {
        PostgresStore::cluster(self, id)
    }

    fn cluster_allow(&self, id: i64, allowed: bool) -> Result<Option<u64>> {
        PostgresStore::cluster_allow(self, id, allowed)
    }

    fn set_cluster_hold(&self, rule: Option<HoldRule>) {
        PostgresStore::set_cluster_hold(self, rule)
    }

    fn file_clusters(&self, limit: usize) -> Result<usize> {
        PostgresStore::file_clusters(self, limit)
    }

    fn clusters_pending(&self) -> Result<ClustersPending> {
        PostgresStore::clusters_pending(self)
    }

    fn prune_cluster_keys(&self, slice: u32) -> Result<usize> {
        PostgresStore::prune_cluster_keys(self, slice)
    }

    fn reclaim(&self, limit: usize) -> Result<usize> {
        PostgresStore::reclaim(self, limit)
    }

    fn reclaim_backlog(&self) -> Result<u64> {
        PostgresStore::reclaim_backlog(self)
    }

    fn quarantine(&self, ids: &[String], actor: &str, reason: &str) -> Result<ActionReport> {
        PostgresStore::quarantine(self, ids, actor, reason)
    }

    fn quarantine_restore(&self, ids: &[String]) -> Result<ActionReport> {
        PostgresStore::quarantine_restore(self, ids)
    }

    fn quarantine_detail(&self, id: &str) -> Result<QuarantineDetail> {
        PostgresStore::quarantine_detail(self, id)
    }

    fn remove(&self, ids: &[String], dsns: Vec<Incoming>) -> Result<ActionReport> {
        PostgresStore::remove(self, ids, dsns)
    }

    fn import(&self, user: &str, folder: &str, messages: Vec<ImportMessage>) -> Result<u64> {
        PostgresStore::import(self, user, folder, messages)
    }

    fn message_count(&self) -> Result<u64> {
        PostgresStore::message_count(self)
    }

    fn reindex_batch(&self, after: i64, limit: usize) -> Result<ReindexBatch> {
        PostgresStore::reindex_batch(self, after, limit)
    }

    fn remove_orphan_blobs(&self) -> Result<u64> {
        PostgresStore::remove_orphan_blobs(self)
    }

    fn check(&self, deep: bool, progress: &(dyn Fn(u64) + Sync)) -> Result<CheckReport> {
        PostgresStore::check(self, deep, progress)
    }

    fn repair(&self) -> Result<RepairReport> {
        PostgresStore::repair(self)
    }

    fn scan_pending(&self, limit: usize) -> Result<Vec<PendingScan>> {
        PostgresStore::scan_pending(self, limit)
    }

    fn unscanned_inbound(&self) -> Result<u64> {
        PostgresStore::unscanned_inbound(self)
    }

    fn rescan_candidates(
        &self,
        after: i64,
        limit: usize,
        content_version: &str,
        scope: RescanScope,
    ) -> Result<Vec<PendingScan>> {
        PostgresStore::rescan_candidates(self, after, limit, content_version, scope)
    }

    fn hash_matches(
        &self,
        md5: Vec<(String, Option<u64>)>,
        sha256: Vec<(String, Option<u64>)>,
        scope: RescanScope,
    ) -> Result<Vec<(i64, String)>> {
        PostgresStore::hash_matches(self, md5, sha256, scope)
    }

    fn messages_of_size(&self, sizes: Vec<u64>, scope: RescanScope) -> Result<Vec<PendingScan>> {
        PostgresStore::messages_of_size(self, sizes, scope)
    }

    fn record_scans(&self, records: Vec<ScanRecord>) -> Result<ActionReport> {
        PostgresStore::record_scans(self, records)
    }

    /// Routing is left to the next routing pass, which any node may run (the
    /// commit notifies them).
    fn record_scans_and_route(
        &self,
        records: Vec<ScanRecord>,
        _next_hops: std::collections::HashMap<String, String>,
        _retry_delay_secs: i64,
    ) -> Result<(ActionReport, RouteReport)> {
        PostgresStore::record_scans_and_route(self, records)
    }

    fn blob_write(&self, uid: &str, data: &[u8]) -> Result<Option<BlobLocation>> {
        PostgresStore::blob_write(self, uid, data)
    }

    fn blob_read(&self, uid: &str) -> Result<Vec<u8>> {
        PostgresStore::blob_read(self, uid)
    }

    fn setting(&self, key: &str) -> Result<Option<String>> {
        PostgresStore::setting(self, key)
    }

    fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        PostgresStore::set_setting(self, key, value)
    }

    fn audit(&self, entry: AuditEntry) -> Result<()> {
        PostgresStore::audit(self, entry)
    }

    fn audit_since(&self, since: i64) -> Result<Vec<AuditRecord>> {
        PostgresStore::audit_since(self, since)
    }

    fn stats(&self) -> Result<StoreStats> {
        PostgresStore::stats(self)
    }

    fn record_downloads(&self, user: &str, detail: &str, entries: Vec<i64>) {
        PostgresStore::record_downloads(self, user, detail, entries)
    }

    fn trace(&self, id: Option<&str>, message_id: Option<&str>) -> Result<Vec<MessageTrace>> {
        PostgresStore::trace(self, id, message_id)
    }

    fn exposure(&self, scope: &ExposureScope) -> Result<Vec<ExposureRow>> {
        PostgresStore::exposure(self, scope)
    }

    fn prune_events(&self, before: i64, limit: usize) -> Result<usize> {
        PostgresStore::prune_events(self, before, limit)
    }

    fn nodes(&self) -> Result<Vec<NodeInfo>> {
        PostgresStore::nodes(self)
    }

    /// Each committed request counts as a commit of one request.
    fn writer_figures(&self) -> crate::WriterHistograms {
        self.figures.snapshot()
    }

    fn watch_news(&self, tell: Box<dyn Fn(crate::News) + Send + Sync>) {
        PostgresStore::watch_news(self, tell)
    }

    fn shared_job_start(&self, action: &str, spec: &str) -> Result<Option<i64>> {
        self.job_start(action, spec)
    }

    fn shared_job_progress(&self, id: i64, done: u64) -> Result<()> {
        self.job_progress(id, done)
    }

    fn shared_job_end(&self, id: i64, ok: bool) -> Result<()> {
        self.job_end(id, ok)
    }

    fn shared_job_take_orphan(&self) -> Result<Option<crate::SharedJob>> {
        self.job_take_orphan()
    }
}
