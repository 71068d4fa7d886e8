//! Quarantine, restore and removal on the shared database, with the embedded store's
//! semantics (embedded/quarantine.rs): each call is one transaction over the ids it
//! is given; the origin (jsonb) says exactly where a message goes back to. Rows are
//! taken `FOR UPDATE`: an item another node is routing or delivering at that moment
//! is waited for, and then found gone (skipped) or taken.
//!
//! Also import, which fills one folder in one transaction.

use super::cached::Cached;
use super::folders::{add_entries, folder_id, next_modseq, take_uids};
use super::local::notify_users;
use super::{ingest, pg, record_events, release, Event, PostgresStore, QUEUE_CHANNEL};
use crate::embedded::events::{QUARANTINED, REMOVED, RESTORED};
use crate::embedded::ingest::{imported, Prepared};
use crate::embedded::messages::address_list;
use crate::embedded::quarantine::{add_user, parse_id, Origin};
use crate::folder_rules::{canonical, join_flags, parse_flags, valid_folder};
use crate::model::{ActionReport, ImportMessage, MessageSummary, QuarantineDetail};
use crate::{now, Incoming, Result, StoreError};
use deadpool_postgres::Transaction;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

impl PostgresStore {
    pub fn quarantine(&self, ids: &[String], actor: &str, reason: &str) -> Result<ActionReport> {
        let (ids, actor, reason) = (ids.to_vec(), actor.to_string(), reason.to_string());
        let report = self.with_client(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            let report = quarantine(&tx, &ids, &actor, &reason).await?;
            notify_users(&tx, &report.users).await?;
            super::commit(tx).await?;
            Ok(report)
        })?;
        self.after(&report);
        Ok(report)
    }

    pub fn quarantine_restore(&self, ids: &[String]) -> Result<ActionReport> {
        let ids = ids.to_vec();
        let report = self.with_client(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            let (report, queues) = restore(&tx, &ids).await?;
            notify_users(&tx, &report.users).await?;
            for queue in queues {
                tx.execute_cached("SELECT pg_notify($1, $2)", &[&QUEUE_CHANNEL, &queue])
                    .await?;
            }
            super::commit(tx).await?;
            Ok(report)
        })?;
        self.after(&report);
        Ok(report)
    }

    /// Deletes for good, with the DSNs (their objects written first) queued in the
    /// same transaction.
    pub fn remove(&self, ids: &[String], dsns: Vec<Incoming>) -> Result<ActionReport> {
        let objects = self.objects()?;
        let mut prepared = dsns
            .into_iter()
            .map(Prepared::new)
            .collect::<Result<Vec<_>>>()?;
        let written: Vec<String> = prepared.iter().map(|p| p.incoming.id.clone()).collect();
        objects.put_many(
            prepared
                .iter_mut()
                .map(|p| (p.incoming.id.clone(), std::mem::take(&mut p.incoming.data)))
                .collect(),
        )?;
        let ids = ids.to_vec();
        let removed = self.with_client(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            let report = remove(&tx, &ids, &prepared).await?;
            notify_users(&tx, &report.users).await?;
            if !prepared.is_empty() {
                tx.execute_cached(
                    "SELECT pg_notify($1, $2)",
                    &[&QUEUE_CHANNEL, &lazaret_core::state::QUEUE_INBOUND],
                )
                .await?;
            }
            super::commit(tx).await?;
            Ok(report)
        });
        match removed {
            Ok(report) => {
                self.after(&report);
                Ok(report)
            }
            Err(e) => {
                objects.delete(written);
                Err(e)
            }
        }
    }

    pub fn quarantine_detail(&self, id: &str) -> Result<QuarantineDetail> {
        let not_found = || {
            StoreError::NotFound(
                "no such quarantined message (ids look like x12; see `lazaret quarantine list`)"
                    .into(),
            )
        };
        let Some(('x', n)) = parse_id(id) else {
            return Err(not_found());
        };
        let id = id.to_string();
        let detail = self.with_client(move |c| async move {
            let Some(r) = c
                .query_opt_cached(
                    "SELECT m.env_from, z.recipients, m.subject, COALESCE(m.date, m.received),
                            m.size, m.sha256, m.uid, z.origin_location, z.reason, m.verdict,
                            z.at, z.actor, z.origin::text
                     FROM quarantine z JOIN messages m ON m.id=z.message WHERE z.id=$1",
                    &[&n],
                )
                .await?
            else {
                return Ok(None);
            };
            let message = MessageSummary {
                id: id.clone(),
                location: "quarantine".into(),
                from: r.get(0),
                to: address_list(r.get(1)),
                subject: r.get(2),
                date: r.get(3),
                size: r.get::<_, i64>(4) as u64,
                state: "quarantined".into(),
                sha256: r.get(5),
                uid: None,
                message: r.get(6),
                attempts: None,
                next_attempt: None,
                last_error: None,
                origin: r.get(7),
                reason: r.get(8),
                verdict: r.get(9),
            };
            let (recipients, flags) = Origin::recipients_and_flags(r.get(12));
            Ok(Some(QuarantineDetail {
                id,
                origin: r.get(7),
                quarantined: r.get(10),
                actor: r.get(11),
                reason: r.get(8),
                recipients,
                flags,
                headers: String::new(),
                message,
            }))
        })?;
        let mut detail = detail.ok_or_else(not_found)?;
        detail.headers =
            String::from_utf8_lossy(&self.message_head(&detail.message.message)?).into_owned();
        Ok(detail)
    }

    /// Stores messages into one folder of a user: the objects first (several requests
    /// at a time), then every row in one transaction; a failed commit deletes the
    /// objects again.
    pub fn import(&self, user: &str, folder: &str, messages: Vec<ImportMessage>) -> Result<u64> {
        let user = user.trim().to_ascii_lowercase();
        let folder = canonical(folder);
        if !valid_folder(&folder) {
            return Err(StoreError::Invalid(format!(
                "{folder:?} is not a valid folder name"
            )));
        }
        let objects = self.objects()?;
        let mut prepared = Vec::with_capacity(messages.len());
        for m in messages {
            let p = Prepared::new(imported(m.data))?;
            prepared.push((p, m.flags, m.internal_date));
        }
        let written: Vec<String> = prepared
            .iter()
            .map(|(p, ..)| p.incoming.id.clone())
            .collect();
        objects.put_many(
            prepared
                .iter_mut()
                .map(|(p, ..)| (p.incoming.id.clone(), std::mem::take(&mut p.incoming.data)))
                .collect(),
        )?;
        let notified = user.clone();
        let imported = self.with_client(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            if tx
                .query_opt_cached("SELECT 1 FROM users WHERE address=$1 FOR SHARE", &[&user])
                .await?
                .is_none()
            {
                return Err(StoreError::NotFound(format!(
                    "no user {user}; add it first with `lazaret user add {user}`"
                )));
            }
            let box_id = folder_or_new(&tx, &user, &folder).await?;
            let (_, mut uid, modseq) = take_uids(&tx, box_id, prepared.len() as i64).await?;
            let t = now();
            // Imported mail keeps its date, as in the embedded store.
            let dated: Vec<(&Prepared, i64)> = prepared
                .iter()
                .map(|(p, _, internal_date)| (p, internal_date.unwrap_or(t)))
                .collect();
            let messages = ingest::insert_messages(&tx, &dated).await?;
            let entries: Vec<(i64, i64, String, i64)> = messages
                .iter()
                .zip(&dated)
                .zip(&prepared)
                .map(|((message, (_, received)), (_, flags, _))| {
                    let entry = (uid, *message, join_flags(flags), *received);
                    uid += 1;
                    entry
                })
                .collect();
            add_entries(&tx, box_id, modseq, &entries).await?;
            notify_users(&tx, &[notified]).await?;
            super::commit(tx).await?;
            Ok(prepared.len() as u64)
        });
        match imported {
            Ok(n) => {
                self.folders_changed();
                Ok(n)
            }
            Err(e) => {
                objects.delete(written);
                Err(e)
            }
        }
    }

    /// A committed action that changed folders: this node's sessions look again now.
    fn after(&self, report: &ActionReport) {
        if !report.users.is_empty() {
            self.folders_changed();
        }
    }
}

/// The folder's id, creating it as a plain folder if it is gone (restore, import).
async fn folder_or_new(tx: &Transaction<'_>, user: &str, folder: &str) -> Result<i64> {
    if let Ok(id) = folder_id(tx, user, folder).await {
        return Ok(id);
    }
    let uidvalidity = super::accounts::new_uidvalidity(tx).await?;
    Ok(tx
        .query_one_cached(
            "INSERT INTO mailboxes(\"user\", name, uidvalidity) VALUES($1, $2, $3)
             ON CONFLICT(\"user\", name) DO UPDATE SET name=EXCLUDED.name RETURNING id",
            &[&user, &folder, &uidvalidity],
        )
        .await?
        .get(0))
}

/// Where queue items and folder entries are (by kind and id), with the message each
/// holds, their rows locked in id order (so two nodes taking overlapping sets never
/// wait on each other in a circle); the ones gone are not in the answer.
async fn origins_of(
    tx: &Transaction<'_>,
    items: &[i64],
    entries: &[i64],
) -> Result<HashMap<(char, i64), (i64, Origin)>> {
    let mut found = HashMap::new();
    if !items.is_empty() {
        let rows = tx
            .query_cached(
                "SELECT id, message, queue, state, next_attempt, attempts, last_error, created,
                        worker_failures FROM queue_items WHERE id=ANY($1) ORDER BY id FOR UPDATE",
                &[&items],
            )
            .await?;
        let mut rcpts: HashMap<i64, Vec<String>> = HashMap::new();
        for r in tx
            .query_cached(
                "SELECT item, address FROM queue_rcpts WHERE item=ANY($1)
                 ORDER BY item, address COLLATE \"C\"",
                &[&items],
            )
            .await?
        {
            rcpts.entry(r.get(0)).or_default().push(r.get(1));
        }
        for r in rows {
            let id: i64 = r.get(0);
            let origin = Origin::Queue {
                queue: r.get(2),
                state: r.get(3),
                next_attempt: r.get(4),
                attempts: r.get::<_, i32>(5) as i64,
                last_error: r.get(6),
                created: r.get(7),
                worker_failures: r.get::<_, i32>(8) as i64,
                rcpts: rcpts.remove(&id).unwrap_or_default(),
            };
            found.insert(('q', id), (r.get(1), origin));
        }
    }
    if !entries.is_empty() {
        for r in tx
            .query_cached(
                "SELECT e.id, e.message, b.\"user\", b.name, e.flags, e.internal_date
                 FROM mailbox_entries e JOIN mailboxes b ON b.id=e.mailbox
                 WHERE e.id=ANY($1) ORDER BY e.id FOR UPDATE OF e",
                &[&entries],
            )
            .await?
        {
            let origin = Origin::Mailbox {
                user: r.get(2),
                folder: r.get(3),
                flags: parse_flags(r.get(4)),
                internal_date: r.get(5),
            };
            found.insert(('m', r.get(0)), (r.get(1), origin));
        }
    }
    Ok(found)
}

/// An id's kind (`q`, `m`, `x`) and number.
type Key = (char, i64);

/// Ids parsed, in the order given and each kind's numbers apart.
struct ParsedIds {
    /// Each id's key; None for one of another kind, unreadable, or given before (the
    /// second finds it gone, as one by one would).
    keys: Vec<Option<Key>>,
    by_kind: HashMap<char, Vec<i64>>,
}

impl ParsedIds {
    fn new(ids: &[String], kinds: &[char]) -> ParsedIds {
        let mut seen = HashSet::new();
        let mut by_kind: HashMap<char, Vec<i64>> = HashMap::new();
        let keys = ids
            .iter()
            .map(|id| match parse_id(id) {
                Some((kind, n)) if kinds.contains(&kind) && seen.insert((kind, n)) => {
                    by_kind.entry(kind).or_default().push(n);
                    Some((kind, n))
                }
                _ => None,
            })
            .collect();
        ParsedIds { keys, by_kind }
    }

    /// The numbers of the ids of this kind.
    fn of(&self, kind: char) -> &[i64] {
        self.by_kind.get(&kind).map_or(&[], Vec::as_slice)
    }
}

/// Moves queue items and folder entries into quarantine, in the caller's transaction
/// (also ingest's, for a forgery caught on arrival). Set-based: a batch of any size
/// takes a fixed number of statements.
pub(super) async fn quarantine(
    tx: &Transaction<'_>,
    ids: &[String],
    actor: &str,
    reason: &str,
) -> Result<ActionReport> {
    let mut report = ActionReport::default();
    let at = now();
    let parsed = ParsedIds::new(ids, &['q', 'm']);
    let (items, entries) = (parsed.of('q'), parsed.of('m'));
    let mut origins = origins_of(tx, items, entries).await?;
    // In the order given, as the report's `created` lists them.
    let mut taken = Vec::new();
    for &key in &parsed.keys {
        match key.and_then(|k| origins.remove(&k)) {
            Some((message, origin)) => taken.push((message, origin)),
            None => report.skipped += 1,
        }
    }
    if taken.is_empty() {
        return Ok(report);
    }
    // The quarantine ids are drawn first so that each row's is known in order.
    let quarantined = draw_ids(tx, "quarantine", taken.len()).await?;
    let messages: Vec<i64> = taken.iter().map(|(m, _)| *m).collect();
    let locations: Vec<String> = taken.iter().map(|(_, o)| o.location()).collect();
    let recipients: Vec<String> = taken.iter().map(|(_, o)| o.recipients()).collect();
    let stored: Vec<String> = taken
        .iter()
        .map(|(_, o)| serde_json::to_string(o).unwrap_or_default())
        .collect();
    tx.execute_cached(
        "INSERT INTO quarantine(id, message, at, actor, reason, origin_location, recipients,
             origin)
         OVERRIDING SYSTEM VALUE
         SELECT u.id, u.message, $3, $4, $5, u.location, u.recipients, CAST(u.origin AS jsonb)
         FROM unnest($1::bigint[], $2::bigint[], $6::text[], $7::text[], $8::text[])
             AS u(id, message, location, recipients, origin)",
        &[
            &quarantined,
            &messages,
            &at,
            &actor,
            &reason,
            &locations,
            &recipients,
            &stored,
        ],
    )
    .await?;
    let events: Vec<Event> = (0..taken.len())
        .map(|i| {
            let detail = format!(
                "x{} from {} by {actor}: {reason}",
                quarantined[i], locations[i]
            );
            Event::new(messages[i], QUARANTINED, recipients[i].clone(), detail)
        })
        .collect();
    record_events(tx, at, &events).await?;
    if !items.is_empty() {
        tx.execute_cached("DELETE FROM queue_items WHERE id=ANY($1)", &[&items])
            .await?;
    }
    if !entries.is_empty() {
        // Folders that lost messages: each takes a new mod-sequence once (CONDSTORE).
        let folders_changed: BTreeSet<i64> = tx
            .query_cached(
                "DELETE FROM mailbox_entries WHERE id=ANY($1) RETURNING mailbox",
                &[&entries],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for folder in folders_changed {
            next_modseq(tx, folder).await?;
        }
    }
    for ((_, origin), x) in taken.iter().zip(&quarantined) {
        if let Origin::Mailbox { user, .. } = origin {
            add_user(&mut report, user);
        }
        report.done += 1;
        report.created.push(format!("x{x}"));
    }
    Ok(report)
}

/// Puts quarantined messages back where they were taken from; also returns the
/// queues that got work. Set-based, as `quarantine`: each folder takes its UIDs for
/// the batch at once, and the new rows' ids are drawn first so the report can name
/// them in the order given.
async fn restore(tx: &Transaction<'_>, ids: &[String]) -> Result<(ActionReport, Vec<String>)> {
    let mut report = ActionReport::default();
    let t = now();
    let parsed = ParsedIds::new(ids, &['x']);
    let mut held: HashMap<i64, (i64, String)> = tx
        .query_cached(
            "SELECT id, message, origin::text FROM quarantine WHERE id=ANY($1)
             ORDER BY id FOR UPDATE",
            &[&parsed.of('x')],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    // What goes back, in the order given: (id as given, quarantine id, message,
    // origin).
    let mut back = Vec::new();
    for (id, key) in ids.iter().zip(parsed.keys) {
        let Some((x, (message, stored))) = key.and_then(|(_, n)| held.remove(&n).map(|h| (n, h)))
        else {
            report.skipped += 1;
            continue;
        };
        match serde_json::from_str::<Origin>(&stored) {
            Ok(origin) => back.push((id, x, message, origin)),
            Err(e) => report
                .failed
                .push((id.clone(), format!("unreadable origin: {e}"))),
        }
    }
    // A folder entry goes back only to a user who still exists.
    let named: Vec<&str> = back
        .iter()
        .filter_map(|(.., o)| match o {
            Origin::Mailbox { user, .. } => Some(user.as_str()),
            Origin::Queue { .. } => None,
        })
        .collect();
    let users: HashSet<String> = if named.is_empty() {
        HashSet::new()
    } else {
        tx.query_cached(
            "SELECT address FROM users WHERE address=ANY($1) ORDER BY address FOR SHARE",
            &[&named],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    back.retain(|(id, .., o)| match o {
        Origin::Mailbox { user, .. } if !users.contains(user) => {
            report.failed.push((
                id.to_string(),
                format!("user {user} no longer exists; add the user first"),
            ));
            false
        }
        _ => true,
    });
    if back.is_empty() {
        return Ok((report, Vec::new()));
    }
    // Each folder (created again if deleted since, as the user had it) takes the
    // UIDs of all its entries at once, folders in name order (the order their rows
    // are locked in). Per folder: its id, the next UID to hand out, and the batch's
    // mod-sequence.
    let mut counts: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for (.., o) in &back {
        if let Origin::Mailbox { user, folder, .. } = o {
            *counts.entry((user, folder)).or_default() += 1;
        }
    }
    let mut next: HashMap<(&str, &str), (i64, i64, i64)> = HashMap::new();
    for (key, n) in counts {
        let id = folder_or_new(tx, key.0, key.1).await?;
        let (_, first, modseq) = take_uids(tx, id, n).await?;
        next.insert(key, (id, first, modseq));
    }
    let entries = back
        .iter()
        .filter(|(.., o)| matches!(o, Origin::Mailbox { .. }))
        .count();
    let items = back.len() - entries;
    let mut entry_ids = draw_ids(tx, "mailbox_entries", entries).await?.into_iter();
    let mut item_ids = draw_ids(tx, "queue_items", items).await?.into_iter();
    let mut e = EntryRows::default();
    let mut q = ItemRows::default();
    let mut queues = Vec::new();
    let mut events = Vec::new();
    for (_, x, message, origin) in &back {
        let created = match origin {
            Origin::Queue {
                queue,
                state,
                next_attempt,
                attempts,
                last_error,
                created,
                worker_failures,
                rcpts,
            } => {
                let item = item_ids.next().unwrap_or_default();
                q.ids.push(item);
                q.messages.push(*message);
                q.queues.push(queue.clone());
                q.states.push(state.clone());
                q.next_attempts.push(*next_attempt);
                q.attempts.push(*attempts as i32);
                q.last_errors.push(last_error.clone());
                q.created.push(*created);
                q.worker_failures.push(*worker_failures as i32);
                for r in rcpts {
                    q.rcpt_items.push(item);
                    q.rcpts.push(r.clone());
                }
                if !queues.contains(queue) {
                    queues.push(queue.clone());
                }
                format!("q{item}")
            }
            Origin::Mailbox {
                user,
                folder,
                flags,
                internal_date,
            } => {
                let entry = entry_ids.next().unwrap_or_default();
                let slot = next
                    .get_mut(&(user.as_str(), folder.as_str()))
                    .ok_or_else(|| StoreError::Invalid("restore lost a folder".into()))?;
                e.ids.push(entry);
                e.folders.push(slot.0);
                e.uids.push(slot.1);
                slot.1 += 1;
                e.messages.push(*message);
                e.flags.push(join_flags(flags));
                e.dates.push(*internal_date);
                e.modseqs.push(slot.2);
                add_user(&mut report, user);
                format!("m{entry}")
            }
        };
        let detail = format!("x{x} back to {created}");
        events.push(Event::new(*message, RESTORED, origin.recipients(), detail));
        report.done += 1;
        report.created.push(created);
    }
    e.insert(tx).await?;
    q.insert(tx).await?;
    let restored: Vec<i64> = back.iter().map(|(_, x, ..)| *x).collect();
    tx.execute_cached("DELETE FROM quarantine WHERE id=ANY($1)", &[&restored])
        .await?;
    record_events(tx, t, &events).await?;
    Ok((report, queues))
}

/// `n` new ids of `table`'s identity column, in order.
async fn draw_ids(tx: &Transaction<'_>, table: &'static str, n: usize) -> Result<Vec<i64>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    Ok(tx
        .query_cached(
            "SELECT nextval(pg_get_serial_sequence($1, 'id')) FROM generate_series(1, $2::bigint)",
            &[&table, &(n as i64)],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Folder entries to insert in one statement, a column each.
#[derive(Default)]
struct EntryRows {
    ids: Vec<i64>,
    folders: Vec<i64>,
    uids: Vec<i64>,
    messages: Vec<i64>,
    flags: Vec<String>,
    dates: Vec<i64>,
    modseqs: Vec<i64>,
}

impl EntryRows {
    async fn insert(&self, tx: &Transaction<'_>) -> Result<()> {
        if self.ids.is_empty() {
            return Ok(());
        }
        tx.execute_cached(
            "INSERT INTO mailbox_entries(id, mailbox, uid, message, flags, internal_date, modseq)
             OVERRIDING SYSTEM VALUE
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[],
                                  $5::text[], $6::bigint[], $7::bigint[])",
            &[
                &self.ids,
                &self.folders,
                &self.uids,
                &self.messages,
                &self.flags,
                &self.dates,
                &self.modseqs,
            ],
        )
        .await?;
        Ok(())
    }
}

/// Queue items (and their recipients) to insert in two statements, a column each.
#[derive(Default)]
struct ItemRows {
    ids: Vec<i64>,
    messages: Vec<i64>,
    queues: Vec<String>,
    states: Vec<String>,
    next_attempts: Vec<i64>,
    attempts: Vec<i32>,
    last_errors: Vec<Option<String>>,
    created: Vec<i64>,
    worker_failures: Vec<i32>,
    rcpt_items: Vec<i64>,
    rcpts: Vec<String>,
}

impl ItemRows {
    async fn insert(&self, tx: &Transaction<'_>) -> Result<()> {
        if self.ids.is_empty() {
            return Ok(());
        }
        tx.execute_cached(
            "INSERT INTO queue_items(id, message, queue, state, next_attempt, attempts,
                 last_error, created, worker_failures)
             OVERRIDING SYSTEM VALUE
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[],
                                  $5::bigint[], $6::int[], $7::text[], $8::bigint[], $9::int[])",
            &[
                &self.ids,
                &self.messages,
                &self.queues,
                &self.states,
                &self.next_attempts,
                &self.attempts,
                &self.last_errors,
                &self.created,
                &self.worker_failures,
            ],
        )
        .await?;
        tx.execute_cached(
            "INSERT INTO queue_rcpts(item, address)
             SELECT * FROM unnest($1::bigint[], $2::text[]) ON CONFLICT DO NOTHING",
            &[&self.rcpt_items, &self.rcpts],
        )
        .await?;
        Ok(())
    }
}

/// A folder entry's user and folder id.
type UserFolder = (String, i64);

/// Deletes queue items, folder entries or quarantined messages for good, with DSNs
/// queued in the same transaction; messages no place holds go to the reclaim.
async fn remove(tx: &Transaction<'_>, ids: &[String], dsns: &[Prepared]) -> Result<ActionReport> {
    let mut report = ActionReport::default();
    let t = now();
    let parsed = ParsedIds::new(ids, &['q', 'm', 'x']);
    // What each id held, and for a folder entry its user and folder.
    let mut gone: HashMap<Key, (i64, Option<UserFolder>)> = HashMap::new();
    let items = parsed.of('q');
    if !items.is_empty() {
        for r in tx
            .query_cached(
                "DELETE FROM queue_items WHERE id=ANY($1) RETURNING id, message",
                &[&items],
            )
            .await?
        {
            gone.insert(('q', r.get(0)), (r.get(1), None));
        }
    }
    let entries = parsed.of('m');
    if !entries.is_empty() {
        for r in tx
            .query_cached(
                "DELETE FROM mailbox_entries e WHERE id=ANY($1)
                 RETURNING id, message,
                           (SELECT \"user\" FROM mailboxes b WHERE b.id=e.mailbox), mailbox",
                &[&entries],
            )
            .await?
        {
            gone.insert(('m', r.get(0)), (r.get(1), Some((r.get(2), r.get(3)))));
        }
    }
    let quarantined = parsed.of('x');
    if !quarantined.is_empty() {
        for r in tx
            .query_cached(
                "DELETE FROM quarantine WHERE id=ANY($1) RETURNING id, message",
                &[&quarantined],
            )
            .await?
        {
            gone.insert(('x', r.get(0)), (r.get(1), None));
        }
    }
    let mut events = Vec::new();
    let mut folders_changed = BTreeSet::new();
    for (id, key) in ids.iter().zip(parsed.keys) {
        match key.and_then(|k| gone.remove(&k)) {
            Some((message, entry)) => {
                if let Some((user, folder)) = entry {
                    add_user(&mut report, &user);
                    folders_changed.insert(folder);
                }
                events.push(Event::new(
                    message,
                    REMOVED,
                    "",
                    format!("{id} by an admin"),
                ));
                report.done += 1;
            }
            None => report.skipped += 1,
        }
    }
    record_events(tx, t, &events).await?;
    for dsn in dsns {
        ingest::insert(tx, dsn).await?;
    }
    for folder in folders_changed {
        next_modseq(tx, folder).await?;
    }
    let mut messages: Vec<i64> = events.iter().map(|e| e.message).collect();
    messages.sort_unstable();
    messages.dedup();
    release(tx, &messages).await?;
    Ok(report)
}
