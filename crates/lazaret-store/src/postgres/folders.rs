//! What IMAP does to a user's folders, on the shared database: list, create, delete,
//! rename, subscribe, the snapshot SELECT works from, flag changes, copy and move,
//! append. The rules are the embedded store's (`folder_rules.rs`).
//!
//! Sessions of one user may sit on different nodes. Every commit that changes what a
//! session shows notifies the user (`lazaret_mailbox`), which moves every node's write
//! generation, and moves this node's at once (`folders_changed`). A folder's row is
//! the lock: UIDs and mod-sequences are taken by updating it, so two nodes appending
//! to one folder queue behind each other and never hand out a UID twice.

use super::cached::Cached;
use super::local::notify_users;
use super::{ingest, pg, record_event, record_events, release, Event, PostgresStore};
use crate::embedded::events::{EXPUNGED, MOVED, READ};
use crate::embedded::ingest::{appended, Prepared};
use crate::folder_rules::{
    canonical, changed_flags, join_flags, keywords, new_folder_name, parse_flags, seen,
    special_use, valid_folder,
};
use crate::model::{FlagChange, FlagsStored, Folder, FolderEntry, FolderSnapshot};
use crate::{now, Result, StoreError};
use deadpool_postgres::Transaction;

impl PostgresStore {
    pub fn folders(&self, user: &str) -> Result<Vec<Folder>> {
        let user = user.to_string();
        self.with_client(move |c| async move {
            // `lower` and `strpos`: IMAP compares flags without case, and LIKE would
            // read the backslash of \Seen as its escape character.
            let rows = c
                .query_cached(
                    "SELECT b.name, b.special,
                        EXISTS(SELECT 1 FROM subscriptions s
                               WHERE s.\"user\"=b.\"user\" AND s.name=b.name),
                        b.uidvalidity, b.uidnext,
                        (SELECT COUNT(*) FROM mailbox_entries e WHERE e.mailbox=b.id),
                        (SELECT COUNT(*) FROM mailbox_entries e WHERE e.mailbox=b.id
                           AND strpos(' ' || lower(e.flags) || ' ', ' \\seen ') = 0),
                        (SELECT COUNT(*) FROM mailbox_entries e WHERE e.mailbox=b.id
                           AND e.uid >= b.recent_uid),
                        b.highestmodseq
                     FROM mailboxes b WHERE b.\"user\"=$1
                     ORDER BY b.name='INBOX' DESC, b.name COLLATE \"C\"",
                    &[&user],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| Folder {
                    name: r.get(0),
                    special: r.get(1),
                    subscribed: r.get(2),
                    uidvalidity: r.get(3),
                    uidnext: r.get(4),
                    messages: r.get::<_, i64>(5) as u64,
                    unseen: r.get::<_, i64>(6) as u64,
                    recent: r.get::<_, i64>(7) as u64,
                    highestmodseq: r.get(8),
                })
                .collect())
        })
    }

    pub fn folder_create(&self, user: &str, name: &str, special: Option<&str>) -> Result<()> {
        let (user, name) = (user.to_string(), new_folder_name(name)?);
        let special = special_use(special)?;
        self.with_client(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            // Parents that do not exist yet are created with it (RFC 3501 6.3.3).
            let mut at = 0;
            while let Some(slash) = name[at..].find('/') {
                let parent = &name[..at + slash];
                insert_folder(&tx, &user, parent, None).await?;
                at += slash + 1;
            }
            if !insert_folder(&tx, &user, &name, special.as_deref()).await? {
                return Err(StoreError::Exists(format!("folder {name} already exists")));
            }
            notify_users(&tx, &[user]).await?;
            super::commit(tx).await
        })?;
        self.folders_changed();
        Ok(())
    }

    pub fn folder_delete(&self, user: &str, name: &str) -> Result<()> {
        let (user, name) = (user.to_string(), canonical(name));
        if name == "INBOX" {
            return Err(StoreError::Invalid("INBOX cannot be deleted".into()));
        }
        self.with_client(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            let folder = folder_id(&tx, &user, &name).await?;
            let messages: Vec<i64> = tx
                .query_cached(
                    "DELETE FROM mailbox_entries WHERE mailbox=$1 RETURNING message",
                    &[&folder],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            tx.execute_cached("DELETE FROM mailboxes WHERE id=$1", &[&folder])
                .await?;
            release(&tx, &messages).await?;
            notify_users(&tx, &[user]).await?;
            super::commit(tx).await
        })?;
        self.folders_changed();
        Ok(())
    }

    pub fn folder_rename(&self, user: &str, from: &str, to: &str) -> Result<()> {
        let (user, from, to) = (user.to_string(), canonical(from), canonical(to));
        if from == "INBOX" || to == "INBOX" {
            return Err(StoreError::Invalid("INBOX cannot be renamed".into()));
        }
        if !valid_folder(&to) {
            return Err(StoreError::Invalid(format!(
                "{to:?} is not a valid folder name"
            )));
        }
        self.with_client(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            let folder = folder_id(&tx, &user, &from).await?;
            if tx
                .query_opt_cached(
                    "SELECT 1 FROM mailboxes WHERE \"user\"=$1 AND name=$2",
                    &[&user, &to],
                )
                .await?
                .is_some()
            {
                return Err(StoreError::Exists(format!("folder {to} already exists")));
            }
            // Children move with their parent; a new UIDVALIDITY says "not the same
            // folder".
            tx.execute(
                "UPDATE mailboxes SET name = $3 || substr(name, length($2) + 1)
                 WHERE \"user\"=$1 AND left(name, length($2) + 1) = $2 || '/'",
                &[&user, &from, &to],
            )
            .await
            .map_err(unique_is_exists)?;
            let uidvalidity = super::accounts::new_uidvalidity(&tx).await?;
            tx.execute_cached(
                "UPDATE mailboxes SET name=$2, uidvalidity=$3 WHERE id=$1",
                &[&folder, &to, &uidvalidity],
            )
            .await?;
            // Subscriptions follow the folder and its children, as clients expect; a
            // name already subscribed under the new name stays once.
            tx.execute_cached(
                "WITH moved AS (
                     DELETE FROM subscriptions WHERE \"user\"=$1
                       AND (name=$2 OR left(name, length($2) + 1) = $2 || '/')
                     RETURNING name)
                 INSERT INTO subscriptions(\"user\", name)
                 SELECT $1, $3 || substr(name, length($2) + 1) FROM moved
                 ON CONFLICT DO NOTHING",
                &[&user, &from, &to],
            )
            .await?;
            notify_users(&tx, &[user]).await?;
            super::commit(tx).await
        })?;
        self.folders_changed();
        Ok(())
    }

    pub fn folder_subscribe(&self, user: &str, name: &str, on: bool) -> Result<()> {
        let user = user.to_string();
        let name = match on {
            true => new_folder_name(name)?,
            false => canonical(name.trim_end_matches('/')),
        };
        self.with_client(move |c| async move {
            let sql = match on {
                true => {
                    "INSERT INTO subscriptions(\"user\", name) VALUES($1, $2) ON CONFLICT DO NOTHING"
                }
                false => "DELETE FROM subscriptions WHERE \"user\"=$1 AND name=$2",
            };
            c.execute(sql, &[&user, &name]).await.map_err(pg)?;
            Ok(())
        })?;
        self.folders_changed();
        Ok(())
    }

    pub fn folder_track_modseq(&self, user: &str, name: &str) -> Result<i64> {
        let (user, name) = (user.to_string(), canonical(name));
        let modseq = self.with_client(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            // A fresh mod-sequence: from here every change takes a new one.
            let row = tx
                .query_opt_cached(
                    "UPDATE mailboxes m SET modseq_on=true,
                         highestmodseq=m.highestmodseq + (CASE WHEN o.was THEN 0 ELSE 1 END)
                     FROM (SELECT id, modseq_on AS was FROM mailboxes
                           WHERE \"user\"=$1 AND name=$2 FOR UPDATE) o
                     WHERE m.id=o.id RETURNING m.highestmodseq, o.was",
                    &[&user, &name],
                )
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("no folder {name}")))?;
            let (modseq, was_on): (i64, bool) = (row.get(0), row.get(1));
            // Sessions on other nodes learn the folder's new mod-sequence (only the
            // first time: every CONDSTORE session asks again).
            if !was_on {
                notify_users(&tx, std::slice::from_ref(&user)).await?;
            }
            super::commit(tx).await?;
            Ok(modseq)
        })?;
        self.folders_changed();
        Ok(modseq)
    }

    pub fn subscriptions(&self, user: &str) -> Result<Vec<String>> {
        let user = user.to_string();
        self.with_client(move |c| async move {
            Ok(c.query_cached(
                "SELECT name FROM subscriptions WHERE \"user\"=$1 ORDER BY name COLLATE \"C\"",
                &[&user],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect())
        })
    }

    /// Quiet, as in the embedded store: a claim must not make every session's cached
    /// folder stale.
    pub fn folder_claim_recent(&self, user: &str, name: &str, upto: i64) -> Result<i64> {
        let (user, name) = (user.to_string(), canonical(name));
        self.with_client(move |c| async move {
            // The subquery locks the row and keeps its value from before the update.
            c.query_opt_cached(
                "UPDATE mailboxes b SET recent_uid = GREATEST(b.recent_uid, $3)
                 FROM (SELECT id, recent_uid FROM mailboxes
                       WHERE \"user\"=$1 AND name=$2 FOR UPDATE) old
                 WHERE b.id=old.id RETURNING old.recent_uid",
                &[&user, &name, &upto],
            )
            .await?
            .map(|r| r.get(0))
            .ok_or_else(|| StoreError::NotFound(format!("no folder {name}")))
        })
    }

    pub fn folder_snapshot(&self, user: &str, name: &str) -> Result<FolderSnapshot> {
        let (user, name) = (user.to_string(), canonical(name));
        self.with_client(move |mut c| async move {
            // One snapshot for the folder's row and its entries.
            let tx = c
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(pg)?;
            let folder = tx
                .query_opt_cached(
                    "SELECT id, uidvalidity, uidnext, recent_uid, highestmodseq, modseq_on
                     FROM mailboxes WHERE \"user\"=$1 AND name=$2",
                    &[&user, &name],
                )
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("no folder {name}")))?;
            let entries: Vec<FolderEntry> = tx
                .query_cached(
                    "SELECT e.id, e.uid, m.uid, e.flags, e.internal_date, m.size, e.modseq
                     FROM mailbox_entries e JOIN messages m ON m.id=e.message
                     WHERE e.mailbox=$1 ORDER BY e.uid",
                    &[&folder.get::<_, i64>(0)],
                )
                .await?
                .iter()
                .map(|r| FolderEntry {
                    entry: r.get(0),
                    uid: r.get(1),
                    message: r.get(2),
                    flags: parse_flags(r.get(3)),
                    internal_date: r.get(4),
                    size: r.get::<_, i64>(5) as u64,
                    modseq: r.get(6),
                })
                .collect();
            super::commit(tx).await?;
            Ok(FolderSnapshot {
                uidvalidity: folder.get(1),
                uidnext: folder.get(2),
                recent_uid: folder.get(3),
                highestmodseq: folder.get(4),
                modseq_on: folder.get(5),
                keywords: keywords(entries.iter().flat_map(|e| e.flags.iter())),
                entries: std::sync::Arc::new(entries),
            })
        })
    }

    pub fn set_flags(
        &self,
        user: &str,
        name: &str,
        entries: Vec<i64>,
        change: FlagChange,
        flags: Vec<String>,
        unchanged_since: Option<i64>,
    ) -> Result<FlagsStored> {
        let (user, name) = (user.to_string(), canonical(name));
        let stored = self.with_client(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            let folder = folder_id(&tx, &user, &name).await?;
            let rows = tx
                .query_cached(
                    "SELECT id, flags, modseq, message FROM mailbox_entries
                     WHERE id=ANY($1) AND mailbox=$2 FOR UPDATE",
                    &[&entries, &folder],
                )
                .await?;
            let current: std::collections::HashMap<i64, (String, i64, i64)> = rows
                .iter()
                .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
                .collect();
            let mut out = FlagsStored::default();
            // One mod-sequence for the whole command, taken at its first real change.
            let mut modseq = None;
            let t = now();
            for entry in entries {
                let Some((current, current_modseq, message)) = current.get(&entry) else {
                    continue;
                };
                if unchanged_since.is_some_and(|u| *current_modseq > u) {
                    out.modified.push(entry);
                    continue;
                }
                let before = parse_flags(current);
                let set = changed_flags(before.clone(), change, &flags);
                let joined = join_flags(&set);
                let mut entry_modseq = *current_modseq;
                if joined != *current {
                    let m = match modseq {
                        Some(m) => m,
                        None => *modseq.insert(next_modseq(&tx, folder).await?),
                    };
                    tx.execute_cached(
                        "UPDATE mailbox_entries SET flags=$2, modseq=$3 WHERE id=$1",
                        &[&entry, &joined, &m],
                    )
                    .await?;
                    entry_modseq = m;
                    if seen(&set) && !seen(&before) {
                        record_event(&tx, *message, t, READ, &user, &format!("imap {name}"))
                            .await?;
                    }
                }
                out.entries
                    .push((entry, parse_flags(&joined), entry_modseq));
            }
            if modseq.is_some() {
                notify_users(&tx, &[user]).await?;
            }
            super::commit(tx).await?;
            Ok(out)
        })?;
        self.folders_changed();
        Ok(stored)
    }

    /// Copies (or moves) entries into another folder of the same user, in UID order.
    /// Returns the target's UIDVALIDITY and (source uid, new uid) pairs.
    pub fn copy_entries(
        &self,
        user: &str,
        from: &str,
        to: &str,
        entries: Vec<i64>,
        remove: bool,
    ) -> Result<(i64, Vec<(i64, i64)>)> {
        let (user, from, to) = (user.to_string(), canonical(from), canonical(to));
        let copied = self.with_client(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            let source = folder_id(&tx, &user, &from).await?;
            let target = folder_id(&tx, &user, &to)
                .await
                .map_err(|_| StoreError::NotFound(format!("[TRYCREATE] no folder {to}")))?;
            let rows = tx
                .query_cached(
                    "SELECT id, uid, message, flags, internal_date FROM mailbox_entries
                     WHERE id=ANY($1) AND mailbox=$2 ORDER BY uid FOR UPDATE",
                    &[&entries, &source],
                )
                .await?;
            let (uidvalidity, first, modseq) = take_uids(&tx, target, rows.len() as i64).await?;
            if remove && !rows.is_empty() {
                next_modseq(&tx, source).await?;
            }
            let t = now();
            let mut pairs = Vec::with_capacity(rows.len());
            for (n, row) in rows.iter().enumerate() {
                let (entry, uid, message): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
                let (flags, date): (String, i64) = (row.get(3), row.get(4));
                let new_uid = first + n as i64;
                add_entry(&tx, target, new_uid, message, &flags, date, modseq).await?;
                if remove {
                    tx.execute_cached("DELETE FROM mailbox_entries WHERE id=$1", &[&entry])
                        .await?;
                    record_event(&tx, message, t, MOVED, &user, &format!("{from} to {to}")).await?;
                }
                pairs.push((uid, new_uid));
            }
            if !pairs.is_empty() {
                notify_users(&tx, &[user]).await?;
            }
            super::commit(tx).await?;
            Ok((uidvalidity, pairs))
        })?;
        self.folders_changed();
        Ok(copied)
    }

    /// Stores a message a client uploads (IMAP APPEND) straight into a folder: the
    /// object first, then the rows; a failed commit deletes the object again.
    pub fn append(
        &self,
        user: &str,
        name: &str,
        id: String,
        data: Vec<u8>,
        flags: Vec<String>,
        internal_date: Option<i64>,
    ) -> Result<(i64, i64)> {
        let (user, name) = (user.to_string(), canonical(name));
        let objects = self.objects()?;
        let mut prepared = Prepared::new(appended(&user, id, data))?;
        let uid = prepared.incoming.id.clone();
        objects.put(&uid, std::mem::take(&mut prepared.incoming.data))?;
        let appended = self.with_client(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            let folder = folder_id(&tx, &user, &name)
                .await
                .map_err(|_| StoreError::NotFound(format!("[TRYCREATE] no folder {name}")))?;
            let t = now();
            let message = ingest::insert_message(&tx, &prepared, t).await?;
            let (uidvalidity, uid, modseq) = take_uids(&tx, folder, 1).await?;
            let flags = join_flags(&flags);
            let date = internal_date.unwrap_or(t);
            add_entry(&tx, folder, uid, message, &flags, date, modseq).await?;
            notify_users(&tx, &[user]).await?;
            super::commit(tx).await?;
            Ok((uidvalidity, uid))
        });
        match appended {
            Ok(appended) => {
                self.folders_changed();
                Ok(appended)
            }
            Err(e) => {
                objects.delete(vec![uid]);
                Err(e)
            }
        }
    }
}

/// A folder's id, its row locked for the transaction (changes to one folder queue
/// behind each other on every node).
pub(super) async fn folder_id(tx: &Transaction<'_>, user: &str, name: &str) -> Result<i64> {
    tx.query_opt_cached(
        "SELECT id FROM mailboxes WHERE \"user\"=$1 AND name=$2 FOR UPDATE",
        &[&user, &name],
    )
    .await?
    .map(|r| r.get(0))
    .ok_or_else(|| StoreError::NotFound(format!("no folder {name}")))
}

/// Creates a folder unless the user has one of that name; says whether it did.
async fn insert_folder(
    tx: &Transaction<'_>,
    user: &str,
    name: &str,
    special: Option<&str>,
) -> Result<bool> {
    let uidvalidity = super::accounts::new_uidvalidity(tx).await?;
    let n = tx
        .execute_cached(
            "INSERT INTO mailboxes(\"user\", name, uidvalidity, special) VALUES($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
            &[&user, &name, &uidvalidity, &special],
        )
        .await?;
    Ok(n == 1)
}

/// Takes the next `n` UIDs of a folder, and its next mod-sequence for them once a
/// CONDSTORE client has used the folder; returns (uidvalidity, first uid, modseq).
pub(super) async fn take_uids(
    tx: &Transaction<'_>,
    folder: i64,
    n: i64,
) -> Result<(i64, i64, i64)> {
    let row = tx
        .query_one_cached(
            "UPDATE mailboxes SET uidnext=uidnext+$2,
                 highestmodseq=highestmodseq + (CASE WHEN modseq_on THEN 1 ELSE 0 END)
             WHERE id=$1 RETURNING uidvalidity, uidnext-$2, highestmodseq",
            &[&folder, &n],
        )
        .await?;
    Ok((row.get(0), row.get(1), row.get(2)))
}

/// Takes a folder's next mod-sequence (a change other than new messages: flags, an
/// expunge) and returns it.
pub(super) async fn next_modseq(tx: &Transaction<'_>, folder: i64) -> Result<i64> {
    Ok(tx
        .query_one_cached(
            "UPDATE mailboxes SET highestmodseq=highestmodseq+1 WHERE id=$1 RETURNING highestmodseq",
            &[&folder],
        )
        .await?
        .get(0))
}

/// Puts a message into a folder under `uid` (from `take_uids`, with its modseq);
/// returns the entry's id.
pub(super) async fn add_entry(
    tx: &Transaction<'_>,
    mailbox: i64,
    uid: i64,
    message: i64,
    flags: &str,
    internal_date: i64,
    modseq: i64,
) -> Result<i64> {
    Ok(tx
        .query_one_cached(
            "INSERT INTO mailbox_entries(mailbox, uid, message, flags, internal_date, modseq)
             VALUES($1, $2, $3, $4, $5, $6) RETURNING id",
            &[&mailbox, &uid, &message, &flags, &internal_date, &modseq],
        )
        .await?
        .get(0))
}

/// Puts messages into a folder in one statement: `entries` are (UID, message, flags,
/// internal date), the UIDs taken with `take_uids` (whose mod-sequence they share).
pub(super) async fn add_entries(
    tx: &Transaction<'_>,
    mailbox: i64,
    modseq: i64,
    entries: &[(i64, i64, String, i64)],
) -> Result<()> {
    let uids: Vec<i64> = entries.iter().map(|e| e.0).collect();
    let messages: Vec<i64> = entries.iter().map(|e| e.1).collect();
    let flags: Vec<&str> = entries.iter().map(|e| e.2.as_str()).collect();
    let dates: Vec<i64> = entries.iter().map(|e| e.3).collect();
    // In UID order, so entry ids ascend with UIDs as one at a time would leave them.
    tx.execute_cached(
        "INSERT INTO mailbox_entries(mailbox, uid, message, flags, internal_date, modseq)
         SELECT $1, u.uid, u.m, u.f, u.d, $2
         FROM unnest($3::bigint[], $4::bigint[], $5::text[], $6::bigint[])
             WITH ORDINALITY AS u(uid, m, f, d, n)
         ORDER BY u.n",
        &[&mailbox, &modseq, &uids, &messages, &flags, &dates],
    )
    .await?;
    Ok(())
}

/// A rename whose children would take a name already in use.
fn unique_is_exists(e: tokio_postgres::Error) -> StoreError {
    match e.code() {
        Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
            StoreError::Exists("a folder of the new name already exists".into())
        }
        _ => pg(e),
    }
}

/// Expunges (IMAP EXPUNGE, POP3 DELE) used by `messages.rs`.
pub(super) async fn expunge(
    tx: &Transaction<'_>,
    user: &str,
    folder: &str,
    entries: &[i64],
) -> Result<u64> {
    let Ok(id) = folder_id(tx, user, folder).await else {
        return Ok(0);
    };
    let messages: Vec<i64> = tx
        .query_cached(
            "DELETE FROM mailbox_entries WHERE id=ANY($1) AND mailbox=$2 RETURNING message",
            &[&entries, &id],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let events: Vec<Event> = messages
        .iter()
        .map(|&m| Event::new(m, EXPUNGED, user, folder))
        .collect();
    record_events(tx, now(), &events).await?;
    if !messages.is_empty() {
        next_modseq(tx, id).await?;
        notify_users(tx, &[user.to_string()]).await?;
    }
    release(tx, &messages).await?;
    Ok(messages.len() as u64)
}
