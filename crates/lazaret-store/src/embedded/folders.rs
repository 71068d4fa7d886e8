//! What IMAP does to a user's folders: list, create, delete, rename, subscribe, the
//! snapshot SELECT works from, flag changes, copy and move (new UIDs in the target, as
//! UIDPLUS reports them), append and expunge.

use super::events;
use super::{release, EmbeddedStore, Prepared};
use crate::model::{FlagChange, FlagsStored, Folder, FolderEntry, FolderSnapshot};
use crate::{now, Result, StoreError};
use rusqlite::{params, Connection, OptionalExtension};

pub(super) use crate::folder_rules::{canonical, join_flags, parse_flags, valid_folder};
use crate::folder_rules::{changed_flags, keywords, new_folder_name, seen, special_use};

pub(super) fn folder_id(c: &Connection, user: &str, name: &str) -> Result<i64> {
    c.prepare_cached("SELECT id FROM mailboxes WHERE user=?1 AND name=?2")?
        .query_row(params![user, name], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("no folder {name}")))
}

/// Puts a message into a folder under `uid` (from `take_uids`); returns the entry's id.
pub(super) fn add_entry(
    c: &Connection,
    mailbox: i64,
    uid: i64,
    message: i64,
    flags: &str,
    internal_date: i64,
) -> Result<i64> {
    // The mod-sequence `take_uids` just gave the folder.
    c.prepare_cached(&format!(
        "INSERT INTO mailbox_entries(id, mailbox, uid, message, flags, internal_date, modseq)
         VALUES({}, ?1, ?2, ?3, ?4, ?5, (SELECT highestmodseq FROM mailboxes WHERE id=?1))",
        super::schema::NEXT_ENTRY_ID
    ))?
    .execute(params![mailbox, uid, message, flags, internal_date])?;
    Ok(c.last_insert_rowid())
}

/// A UIDVALIDITY no folder of this store had before: the clock's seconds, or one more
/// than the last one given when that is ahead (a folder deleted and created again
/// within a second must not look like the same folder to a client's cache).
pub(super) fn new_uidvalidity(c: &Connection) -> Result<i64> {
    let last: i64 = c
        .prepare_cached("SELECT value FROM settings WHERE key='imap.uidvalidity'")?
        .query_row([], |r| r.get::<_, String>(0))
        .optional()?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // UIDVALIDITY is a non-zero 32-bit number.
    let next = (now() as u32)
        .max(1)
        .max((last as u32).wrapping_add(1).max(1)) as i64;
    c.prepare_cached("INSERT OR REPLACE INTO settings(key, value) VALUES('imap.uidvalidity', ?1)")?
        .execute([next.to_string()])?;
    Ok(next)
}

/// Takes the next `n` UIDs of a folder, and its next mod-sequence for them once a
/// CONDSTORE client has used the folder (`modseq_on`); returns (uidvalidity, first uid).
pub(super) fn take_uids(c: &Connection, folder: i64, n: i64) -> Result<(i64, i64)> {
    Ok(c.prepare_cached(
        "UPDATE mailboxes SET uidnext=uidnext+?2, highestmodseq=highestmodseq+modseq_on WHERE id=?1
         RETURNING uidvalidity, uidnext-?2",
    )?
    .query_row(params![folder, n], |r| Ok((r.get(0)?, r.get(1)?)))?)
}

/// Takes a folder's next mod-sequence (a change other than new messages: flags, an
/// expunge) and returns it.
pub(super) fn next_modseq(c: &Connection, folder: i64) -> Result<i64> {
    Ok(c.prepare_cached(
        "UPDATE mailboxes SET highestmodseq=highestmodseq+1 WHERE id=?1 RETURNING highestmodseq",
    )?
    .query_row([folder], |r| r.get(0))?)
}

impl EmbeddedStore {
    pub(super) fn folders_impl(&self, user: &str) -> Result<Vec<Folder>> {
        let user = user.to_string();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT b.name, b.special,
                        EXISTS(SELECT 1 FROM subscriptions s WHERE s.user=b.user AND s.name=b.name),
                        b.uidvalidity, b.uidnext,
                        (SELECT COUNT(*) FROM mailbox_entries e WHERE e.mailbox=b.id),
                        (SELECT COUNT(*) FROM mailbox_entries e WHERE e.mailbox=b.id
                           AND (' ' || e.flags || ' ') NOT LIKE '% \\Seen %'),
                        (SELECT COUNT(*) FROM mailbox_entries e WHERE e.mailbox=b.id
                           AND e.uid >= b.recent_uid),
                        b.highestmodseq
                 FROM mailboxes b WHERE b.user=?1 ORDER BY b.name='INBOX' DESC, b.name",
            )?;
            let rows = stmt.query_map([&user], |r| {
                Ok(Folder {
                    name: r.get(0)?,
                    special: r.get(1)?,
                    subscribed: r.get(2)?,
                    uidvalidity: r.get(3)?,
                    uidnext: r.get(4)?,
                    messages: r.get::<_, i64>(5)? as u64,
                    unseen: r.get::<_, i64>(6)? as u64,
                    recent: r.get::<_, i64>(7)? as u64,
                    highestmodseq: r.get(8)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    pub(super) fn folder_create_impl(
        &self,
        user: &str,
        name: &str,
        special: Option<&str>,
    ) -> Result<()> {
        let (user, name) = (user.to_string(), new_folder_name(name)?);
        let special = special_use(special)?;
        self.write(move |c| {
            if folder_id(c, &user, &name).is_ok() {
                return Err(StoreError::Exists(format!("folder {name} already exists")));
            }
            // Parents that do not exist yet are created with it (RFC 3501 6.3.3).
            let mut at = 0;
            while let Some(slash) = name[at..].find('/') {
                let parent = &name[..at + slash];
                if folder_id(c, &user, parent).is_err() {
                    c.execute(
                        "INSERT INTO mailboxes(user, name, uidvalidity) VALUES(?1, ?2, ?3)",
                        params![user, parent, new_uidvalidity(c)?],
                    )?;
                }
                at += slash + 1;
            }
            c.execute(
                "INSERT INTO mailboxes(user, name, uidvalidity, special) VALUES(?1, ?2, ?3, ?4)",
                params![user, name, new_uidvalidity(c)?, special],
            )?;
            Ok(())
        })
    }

    pub(super) fn folder_delete_impl(&self, user: &str, name: &str) -> Result<()> {
        let (user, name) = (user.to_string(), canonical(name));
        if name == "INBOX" {
            return Err(StoreError::Invalid("INBOX cannot be deleted".into()));
        }
        self.write(move |c| {
            let folder = folder_id(c, &user, &name)?;
            let messages: Vec<i64> = c
                .prepare_cached("DELETE FROM mailbox_entries WHERE mailbox=?1 RETURNING message")?
                .query_map([folder], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            c.execute("DELETE FROM mailboxes WHERE id=?1", [folder])?;
            release(c, &messages)
        })
    }

    pub(super) fn folder_rename_impl(&self, user: &str, from: &str, to: &str) -> Result<()> {
        let (user, from, to) = (user.to_string(), canonical(from), canonical(to));
        if from == "INBOX" || to == "INBOX" {
            return Err(StoreError::Invalid("INBOX cannot be renamed".into()));
        }
        if !valid_folder(&to) {
            return Err(StoreError::Invalid(format!(
                "{to:?} is not a valid folder name"
            )));
        }
        self.write(move |c| {
            let folder = folder_id(c, &user, &from)?;
            if c.prepare_cached("SELECT 1 FROM mailboxes WHERE user=?1 AND name=?2")?
                .exists(params![user, to])?
            {
                return Err(StoreError::Exists(format!("folder {to} already exists")));
            }
            // Children move with their parent; a new UIDVALIDITY says "not the same folder".
            c.execute(
                "UPDATE mailboxes SET name=?3 || substr(name, length(?2) + 1)
                 WHERE user=?1 AND substr(name, 1, length(?2) + 1) = ?2 || '/'",
                params![user, from, to],
            )?;
            c.execute(
                "UPDATE mailboxes SET name=?2, uidvalidity=?3 WHERE id=?1",
                params![folder, to, new_uidvalidity(c)?],
            )?;
            // Subscriptions follow the folder and its children, as clients expect.
            c.execute(
                "UPDATE OR REPLACE subscriptions SET name=?3 || substr(name, length(?2) + 1)
                 WHERE user=?1 AND (name=?2 OR substr(name, 1, length(?2) + 1) = ?2 || '/')",
                params![user, from, to],
            )?;
            Ok(())
        })
    }

    pub(super) fn folder_subscribe_impl(&self, user: &str, name: &str, on: bool) -> Result<()> {
        let user = user.to_string();
        let name = match on {
            true => new_folder_name(name)?,
            false => canonical(name.trim_end_matches('/')),
        };
        self.write(move |c| {
            if on {
                c.execute(
                    "INSERT OR IGNORE INTO subscriptions(user, name) VALUES(?1, ?2)",
                    params![user, name],
                )?;
            } else {
                c.execute(
                    "DELETE FROM subscriptions WHERE user=?1 AND name=?2",
                    params![user, name],
                )?;
            }
            Ok(())
        })
    }

    pub(super) fn folder_track_modseq_impl(&self, user: &str, name: &str) -> Result<i64> {
        let (user, name) = (user.to_string(), canonical(name));
        self.write(move |c| {
            let folder = folder_id(c, &user, &name)?;
            // A fresh mod-sequence: from here every change takes a new one.
            Ok(c.prepare_cached(
                "UPDATE mailboxes SET highestmodseq=highestmodseq+(1-modseq_on), modseq_on=1
                 WHERE id=?1 RETURNING highestmodseq",
            )?
            .query_row([folder], |r| r.get(0))?)
        })
    }

    pub(super) fn subscriptions_impl(&self, user: &str) -> Result<Vec<String>> {
        let user = user.to_string();
        self.read(move |c| {
            let names = c
                .prepare_cached("SELECT name FROM subscriptions WHERE user=?1 ORDER BY name")?
                .query_map([&user], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(names)
        })
    }

    pub(super) fn folder_claim_recent_impl(
        &self,
        user: &str,
        name: &str,
        upto: i64,
    ) -> Result<i64> {
        let (user, name) = (user.to_string(), canonical(name));
        // Quiet: a claim must not make every session's cached folder stale (a SELECT
        // would then read the whole folder again). Snapshots carry `recent_uid` only
        // as a lower bound; this call gives the exact value.
        self.writer.write_quiet(move |c| {
            let (folder, recent_uid): (i64, i64) = c
                .prepare_cached("SELECT id, recent_uid FROM mailboxes WHERE user=?1 AND name=?2")?
                .query_row(params![user, name], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?
                .ok_or_else(|| StoreError::NotFound(format!("no folder {name}")))?;
            if recent_uid < upto {
                c.prepare_cached("UPDATE mailboxes SET recent_uid=?2 WHERE id=?1")?
                    .execute(params![folder, upto])?;
            }
            Ok(recent_uid)
        })
    }

    pub(super) fn folder_snapshot_impl(&self, user: &str, name: &str) -> Result<FolderSnapshot> {
        let (user, name) = (user.to_string(), canonical(name));
        self.read(move |c| {
            let (folder, uidvalidity, uidnext, recent_uid, highestmodseq, modseq_on): (
                i64,
                i64,
                i64,
                i64,
                i64,
                bool,
            ) = c
                .prepare_cached(
                    "SELECT id, uidvalidity, uidnext, recent_uid, highestmodseq, modseq_on
                     FROM mailboxes WHERE user=?1 AND name=?2",
                )?
                .query_row(params![user, name], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })
                .optional()?
                .ok_or_else(|| StoreError::NotFound(format!("no folder {name}")))?;
            let mut stmt = c.prepare_cached(
                "SELECT e.id, e.uid, m.uid, e.flags, e.internal_date, m.size, e.modseq
                 FROM mailbox_entries e JOIN messages m ON m.id=e.message
                 WHERE e.mailbox=?1 ORDER BY e.uid",
            )?;
            let entries: Vec<FolderEntry> = stmt
                .query_map([folder], |r| {
                    Ok(FolderEntry {
                        entry: r.get(0)?,
                        uid: r.get(1)?,
                        message: r.get(2)?,
                        flags: parse_flags(&r.get::<_, String>(3)?),
                        internal_date: r.get(4)?,
                        size: r.get::<_, i64>(5)? as u64,
                        modseq: r.get(6)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            let keywords = keywords(entries.iter().flat_map(|e| e.flags.iter()));
            Ok(FolderSnapshot {
                uidvalidity,
                uidnext,
                recent_uid,
                highestmodseq,
                modseq_on,
                keywords,
                entries: std::sync::Arc::new(entries),
            })
        })
    }

    pub(super) fn set_flags_impl(
        &self,
        user: &str,
        name: &str,
        entries: Vec<i64>,
        change: FlagChange,
        flags: Vec<String>,
        unchanged_since: Option<i64>,
    ) -> Result<FlagsStored> {
        let (user, name) = (user.to_string(), canonical(name));
        self.write(move |c| {
            let folder = folder_id(c, &user, &name)?;
            let mut out = FlagsStored::default();
            // One mod-sequence for the whole command, taken at its first real change.
            let mut modseq = None;
            for entry in entries {
                let current: Option<(String, i64, i64)> = c
                    .prepare_cached(
                        "SELECT flags, modseq, message FROM mailbox_entries
                         WHERE id=?1 AND mailbox=?2",
                    )?
                    .query_row(params![entry, folder], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .optional()?;
                let Some((current, current_modseq, message)) = current else {
                    continue;
                };
                if unchanged_since.is_some_and(|u| current_modseq > u) {
                    out.modified.push(entry);
                    continue;
                }
                let set = changed_flags(parse_flags(&current), change, &flags);
                let joined = join_flags(&set);
                let mut entry_modseq = current_modseq;
                if joined != current {
                    let m = match modseq {
                        Some(m) => m,
                        None => *modseq.insert(next_modseq(c, folder)?),
                    };
                    c.prepare_cached("UPDATE mailbox_entries SET flags=?2, modseq=?3 WHERE id=?1")?
                        .execute(params![entry, joined, m])?;
                    entry_modseq = m;
                    if seen(&set) && !seen(&parse_flags(&current)) {
                        events::record(c, message, events::READ, &user, &format!("imap {name}"))?;
                    }
                }
                out.entries
                    .push((entry, parse_flags(&joined), entry_modseq));
            }
            Ok(out)
        })
    }

    /// Copies (or moves) entries into another folder of the same user, in UID order.
    /// Returns the target's UIDVALIDITY and (source uid, new uid) pairs.
    pub(super) fn copy_impl(
        &self,
        user: &str,
        from: &str,
        to: &str,
        entries: Vec<i64>,
        remove: bool,
    ) -> Result<(i64, Vec<(i64, i64)>)> {
        let (user, from, to) = (user.to_string(), canonical(from), canonical(to));
        self.write(move |c| {
            let source = folder_id(c, &user, &from)?;
            let target = folder_id(c, &user, &to)
                .map_err(|_| StoreError::NotFound(format!("[TRYCREATE] no folder {to}")))?;
            let mut rows: Vec<(i64, i64, i64, String, i64)> = Vec::new();
            for entry in entries {
                if let Some(row) = c
                    .prepare_cached(
                        "SELECT id, uid, message, flags, internal_date FROM mailbox_entries
                         WHERE id=?1 AND mailbox=?2",
                    )?
                    .query_row(params![entry, source], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                    })
                    .optional()?
                {
                    rows.push(row);
                }
            }
            rows.sort_by_key(|r| r.1);
            let (uidvalidity, first) = take_uids(c, target, rows.len() as i64)?;
            if remove && !rows.is_empty() {
                next_modseq(c, source)?;
            }
            let mut pairs = Vec::with_capacity(rows.len());
            for (n, (entry, uid, message, flags, date)) in rows.into_iter().enumerate() {
                let new_uid = first + n as i64;
                add_entry(c, target, new_uid, message, &flags, date)?;
                if remove {
                    c.prepare_cached("DELETE FROM mailbox_entries WHERE id=?1")?
                        .execute([entry])?;
                    events::record(c, message, events::MOVED, &user, &format!("{from} to {to}"))?;
                }
                pairs.push((uid, new_uid));
            }
            Ok((uidvalidity, pairs))
        })
    }

    /// Stores a message a client uploads (IMAP APPEND) straight into a folder.
    pub(super) fn append_impl(
        &self,
        user: &str,
        name: &str,
        id: String,
        data: Vec<u8>,
        flags: Vec<String>,
        internal_date: Option<i64>,
    ) -> Result<(i64, i64)> {
        let (user, name) = (user.to_string(), canonical(name));
        let mut prepared = Prepared::new(super::ingest::appended(&user, id, data))?;
        self.write_blob(&mut prepared)?;
        self.write(move |c| {
            let folder = folder_id(c, &user, &name)
                .map_err(|_| StoreError::NotFound(format!("[TRYCREATE] no folder {name}")))?;
            let message = prepared.insert_message(c)?;
            let (uidvalidity, uid) = take_uids(c, folder, 1)?;
            add_entry(
                c,
                folder,
                uid,
                message,
                &join_flags(&flags),
                internal_date.unwrap_or_else(now),
            )?;
            Ok((uidvalidity, uid))
        })
    }
}
