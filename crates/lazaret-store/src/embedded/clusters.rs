//! Outbreak clusters: groups of near-identical messages, kept up to date as messages
//! are stored, so that `lazaret clusters` can point at a worm before any signature
//! names it.
//!
//! Each message gets lookup keys at ingest (`Fingerprint`): exact keys for its
//! attachments and archive members, and either the band keys of its text's MinHash
//! signature or one exact key of a short text. Ingest only records them (a pending
//! `fingerprints` row, appended in id order); `file_pending` files messages in batches
//! of hundreds behind the commit. The key table is looked up and grown at random
//! places, and one transaction per message would write most of its pages again for
//! every message (measured: ingest 15–25% slower, the writer's time per message up by
//! half); a batch writes each page once. A new message looks its keys up
//! (`cluster_keys` in `lookups.db`: a few point lookups, never a comparison with every
//! message); a holder found by an exact key is a match, one found by a band key is a
//! match if their signatures agree on at least `AGREE` values. The message joins the matches'
//! cluster; matches in different clusters merge them (the oldest survives, the others
//! point at it); matches in none start a new cluster. A message that matches nothing
//! stays alone: clusters have two members or more.
//!
//! A merged cluster keeps its row with `parent` set to the survivor, which is always
//! a root (a merge re-points the children of the cluster it absorbs), so a message's
//! cluster is one lookup from its root.

use crate::metadata::MessageMetadata;
use crate::model::*;
use crate::Result;
use lazaret_core::state::QUEUE_INBOUND;
use lazaret_scan::fingerprint::{self, TextFingerprint};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

/// Signature values two texts must share to be near-duplicates. Measured on the
/// synthetic corpus of `tests/worm_corpus.py` (word pairs, 32 values): two copies of one
/// worm with 5–20% of their words changed agree on 13 values at the median pair (one
/// pair in twenty on 8 or fewer: single linkage through other copies finds those);
/// unrelated texts on at most 5. A band hit already makes 4 agree, so the bar is well
/// above that.
pub(crate) const AGREE: usize = 12;
/// Holders of one key looked at: the most recent ones (an outbreak is recent).
pub(crate) const HOLDERS: usize = 4;
/// Attachments smaller than this are not keys: tiny common files (a spacer gif, an
/// empty text) would join unrelated mail.
const MIN_ATTACHMENT: u64 = 64;

/// Whether messages are fingerprinted and filed as they are stored (`[outbreak]
/// clusters`). One switch for the process: a server runs one store, and every path
/// that stores a message (SMTP, IMAP APPEND, import, restore, DSNs) reads it here.
static ENABLED: AtomicBool = AtomicBool::new(true);

pub fn set_enabled(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
}

/// What a message contributes to clustering, computed outside the writer.
#[derive(Debug, Clone, Default)]
pub struct Fingerprint {
    /// Text keys: band keys (`exact` false) or one short-text key (`exact` true).
    text_keys: Vec<i64>,
    text_exact: bool,
    signature: Option<Vec<u8>>,
    /// Exact keys of attachments and archive members.
    attachment_keys: Vec<i64>,
}

impl Fingerprint {
    pub fn of(meta: &MessageMetadata) -> Fingerprint {
        if !ENABLED.load(Ordering::Relaxed) {
            return Fingerprint::default();
        }
        let text = TextFingerprint::of(&meta.text);
        let attachment_keys: BTreeSet<i64> = meta
            .parts
            .iter()
            .filter(|p| {
                p.size >= MIN_ATTACHMENT
                    && (p.inside.is_some()
                        || (p.filename.is_some() && !p.content_type.starts_with("text/")))
            })
            .map(|p| fingerprint::exact_key(b"part", p.sha256.as_bytes()) as i64)
            .collect();
        Fingerprint {
            text_keys: text.keys().into_iter().map(|k| k as i64).collect(),
            text_exact: matches!(text, TextFingerprint::Exact(_)),
            signature: text.signature_bytes(),
            attachment_keys: attachment_keys.into_iter().collect(),
        }
    }

    /// The text's MinHash signature, stored with the keys (None: a short text).
    pub(crate) fn signature(&self) -> Option<&[u8]> {
        self.signature.as_deref()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.text_keys.is_empty() && self.attachment_keys.is_empty()
    }

    /// The keys as stored until filed: a flag byte (text key exact), the number of
    /// attachment keys, then every key, 8 bytes little-endian each.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(3 + 8 * (self.attachment_keys.len() + self.text_keys.len()));
        out.push(u8::from(self.text_exact));
        out.extend_from_slice(&(self.attachment_keys.len() as u16).to_le_bytes());
        for k in self.attachment_keys.iter().chain(&self.text_keys) {
            out.extend_from_slice(&k.to_le_bytes());
        }
        out
    }

    /// The inverse of `encode` (a damaged record decodes to fewer keys, never fails).
    pub(crate) fn decode(signature: Option<Vec<u8>>, bytes: &[u8]) -> Fingerprint {
        let text_exact = bytes.first() == Some(&1);
        let attachments = bytes
            .get(1..3)
            .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]) as usize);
        let keys: Vec<i64> = bytes
            .get(3..)
            .unwrap_or_default()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap_or_default()))
            .collect();
        let split = attachments.min(keys.len());
        Fingerprint {
            attachment_keys: keys[..split].to_vec(),
            text_keys: keys[split..].to_vec(),
            text_exact,
            signature,
        }
    }
}

/// Records a just-inserted message's fingerprint, to be filed by `file_pending`.
pub(super) fn record(c: &Connection, message: i64, fp: &Fingerprint) -> Result<()> {
    if fp.is_empty() {
        return Ok(());
    }
    c.prepare_cached(
        "INSERT OR IGNORE INTO fingerprints(message, signature, pending) VALUES(?1, ?2, ?3)",
    )?
    .execute(params![message, fp.signature(), fp.encode()])?;
    Ok(())
}

/// A message waiting to be filed: id, signature, encoded keys, when it was received.
type PendingRow = (i64, Option<Vec<u8>>, Vec<u8>, i64);

/// Files up to `limit` pending messages, oldest first, into their clusters (one
/// transaction: the caller's); returns how many.
pub(super) fn file_pending(c: &Connection, limit: usize, now: i64) -> Result<usize> {
    // A message gone before it was filed (no messages row) is filed all the same, then
    // forgotten, its cluster written into its `gone` event (see `forget`).
    let pending: Vec<(PendingRow, bool)> = c
        .prepare_cached(
            "SELECT f.message, f.signature, f.pending, COALESCE(m.received, ?2), m.id IS NULL
             FROM fingerprints f LEFT JOIN messages m ON m.id=f.message
             WHERE f.pending IS NOT NULL ORDER BY f.message LIMIT ?1",
        )?
        .query_map(params![limit as i64, now], |r| {
            Ok(((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?), r.get(4)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let filed = pending.len();
    for (row, gone) in pending {
        let message = row.0;
        let root = file_row(c, row, now)?;
        if gone {
            forget(c, &[message])?;
            if let Some(root) = root {
                c.prepare_cached(
                    "UPDATE message_events SET who=?2 WHERE message=?1 AND kind='gone'",
                )?
                .execute(params![message, root.to_string()])?;
            }
        }
    }
    Ok(filed)
}

/// Files one waiting message; returns its cluster's root (None: it matched nothing).
fn file_row(
    c: &Connection,
    (message, signature, keys, received): PendingRow,
    now: i64,
) -> Result<Option<i64>> {
    let fp = Fingerprint::decode(signature, &keys);
    let found = lookup(c, &fp, message)?;
    file(c, message, &fp, &found, received.min(now))
}

/// The root of message `message`'s cluster (None: alone, or no fingerprint), filing
/// it first if it waits: the hold rule must know a copy's cluster before the copy
/// leaves `inbound`, whether or not the clusterer got to it.
fn cluster_of(c: &Connection, message: i64, now: i64) -> Result<Option<i64>> {
    let waiting: Option<PendingRow> = c
        .prepare_cached(
            "SELECT f.message, f.signature, f.pending, m.received FROM fingerprints f
             JOIN messages m ON m.id=f.message WHERE f.message=?1 AND f.pending IS NOT NULL",
        )?
        .query_row([message], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    if let Some(row) = waiting {
        return file_row(c, row, now);
    }
    Ok(c.prepare_cached(
        "SELECT COALESCE(k.parent, k.id) FROM fingerprints f JOIN clusters k ON k.id=f.cluster
             WHERE f.message=?1",
    )?
    .query_row([message], |r| r.get(0))
    .optional()?)
}

/// How the last error of a copy held by a cluster starts; a routed copy that carries it
/// was thawed by the admin since, and is let go.
pub(crate) const HELD: &str = "held: outbreak cluster ";

/// The last error of a copy a hold froze in `inbound`: what it is and what to do.
pub(crate) fn held_error(cluster: i64) -> String {
    format!("{HELD}{cluster} (growing fast): thaw or quarantine with --cluster {cluster}")
}

/// How often a cluster's distinct senders are counted again while its growth is over
/// the rule but its senders are too few (one sender's mailing): the count reads the
/// newest members, and must not run for every copy of a big mailing.
pub(crate) const SENDERS_RECHECK: i64 = 60;

/// Whether inbound item `item` (message `message`) stays frozen in `inbound` because its
/// cluster is held, starting the hold if the cluster now grows past `rule` (it is then
/// added to `holds`). Returns the held cluster's root.
pub(super) fn holds(
    c: &Connection,
    item: i64,
    message: i64,
    rule: &HoldRule,
    now: i64,
    holds: &mut Vec<ClusterHold>,
) -> Result<Option<i64>> {
    let Some(root) = cluster_of(c, message, now)? else {
        return Ok(None);
    };
    let last_error: Option<String> = c
        .prepare_cached("SELECT last_error FROM queue_items WHERE id=?1")?
        .query_row([item], |r| r.get(0))
        .optional()?
        .flatten();
    if last_error.is_some_and(|e| e.starts_with(HELD)) {
        // Held once, thawed by the admin: let go.
        return Ok(None);
    }
    let (allowed, held_since, checked): (bool, Option<i64>, Option<i64>) = c
        .prepare_cached("SELECT allowed, held_since, hold_checked FROM clusters WHERE id=?1")?
        .query_row([root], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    if allowed {
        return Ok(None);
    }
    if held_since.is_some() {
        return Ok(Some(root));
    }
    let since = now - rule.window_secs;
    let grown = growth(c, root, since)?;
    if grown < rule.messages || checked.is_some_and(|t| now - t < SENDERS_RECHECK) {
        return Ok(None);
    }
    // The newest members (a few times the rule's worth) are the growth's copies.
    let senders: u64 = c
        .prepare_cached(
            "SELECT COUNT(DISTINCT lower(env_from)) FROM (
               SELECT m.env_from FROM fingerprints f CROSS JOIN messages m ON m.id=f.message
               WHERE f.cluster IN (SELECT id FROM clusters WHERE id=?1 OR parent=?1)
                 AND m.received>=?2
               ORDER BY f.message DESC LIMIT ?3)",
        )?
        .query_row(
            params![root, since, (grown.max(rule.messages) * 2) as i64],
            |r| r.get::<_, i64>(0),
        )?
        .max(0) as u64;
    c.prepare_cached("UPDATE clusters SET hold_checked=?2 WHERE id=?1")?
        .execute(params![root, now])?;
    if senders < rule.senders {
        return Ok(None);
    }
    c.prepare_cached("UPDATE clusters SET held_since=?2 WHERE id=?1")?
        .execute(params![root, now])?;
    let subject: String = c
        .prepare_cached("SELECT subject FROM messages WHERE id=?1")?
        .query_row([message], |r| r.get(0))?;
    holds.push(ClusterHold {
        cluster: root,
        growth: grown,
        senders,
        subject,
    });
    Ok(Some(root))
}

/// Copies frozen in `inbound` by cluster holds, and clusters held now.
pub(super) fn held(c: &Connection) -> Result<(u64, u64)> {
    let copies: i64 = c
        .prepare_cached(
            "SELECT COUNT(*) FROM queue_items WHERE queue=?1 AND state='frozen'
               AND last_error LIKE ?2",
        )?
        .query_row(params![QUEUE_INBOUND, format!("{HELD}%")], |r| r.get(0))?;
    let clusters: i64 = c
        .prepare_cached(
            "SELECT COUNT(*) FROM clusters WHERE held_since IS NOT NULL AND parent IS NULL
               AND allowed=0",
        )?
        .query_row([], |r| r.get(0))?;
    Ok((copies.max(0) as u64, clusters.max(0) as u64))
}

/// Messages whose fingerprint waits to be filed.
pub(super) fn behind(c: &Connection) -> Result<u64> {
    Ok(
        c.prepare_cached("SELECT COUNT(*) FROM fingerprints WHERE pending IS NOT NULL")?
            .query_row([], |r| r.get::<_, i64>(0))? as u64,
    )
}

/// How many wait, and since when (the oldest's arrival).
pub(super) fn pending(c: &Connection) -> Result<ClustersPending> {
    let oldest: Option<i64> = c
        .prepare_cached(
            "SELECT m.received FROM messages m WHERE m.id=
               (SELECT min(message) FROM fingerprints WHERE pending IS NOT NULL)",
        )?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(ClustersPending {
        messages: if oldest.is_some() { behind(c)? } else { 0 },
        oldest,
    })
}

/// What looking a message's keys up found: the matching messages (with their
/// cluster's root, None for a message alone) and the keys no holder of which matched.
#[derive(Debug, Default)]
pub(crate) struct Lookup {
    matched: BTreeMap<i64, Option<i64>>,
    new_keys: Vec<i64>,
}

/// Looks the keys of message `message` up among the messages filed before it.
fn lookup(c: &Connection, fp: &Fingerprint, message: i64) -> Result<Lookup> {
    if fp.is_empty() {
        return Ok(Lookup::default());
    }
    // Every key's holders in one statement: the writer runs this for every message
    // stored, so statements are counted.
    let keys = fp.keys();
    let holders: Vec<(i64, i64)> = c
        .prepare_cached(&format!(
            "SELECT key, message FROM lk.cluster_keys WHERE key IN ({})",
            vec!["?"; keys.len()].join(",")
        ))?
        .query_map(rusqlite::params_from_iter(keys.iter().map(|k| k.0)), |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut holder_of = c.prepare_cached(
        "SELECT f.signature, COALESCE(k.parent, k.id) FROM fingerprints f
         LEFT JOIN clusters k ON k.id=f.cluster WHERE f.message=?1",
    )?;
    Lookup::decide(fp, message, holders, |holder| {
        Ok(holder_of
            .query_row([holder], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    })
}

impl Fingerprint {
    /// Every lookup key, with whether a holder of it is a match without comparing
    /// signatures (attachment keys and a short text's key).
    pub(crate) fn keys(&self) -> Vec<(i64, bool)> {
        self.attachment_keys
            .iter()
            .map(|k| (*k, true))
            .chain(self.text_keys.iter().map(|k| (*k, self.text_exact)))
            .collect()
    }
}

/// A filed message as a holder of a key: its signature and its cluster's root (None:
/// alone). None for a holder deleted since (no fingerprint row any more).
pub(crate) type Holder = Option<(Option<Vec<u8>>, Option<i64>)>;

impl Lookup {
    /// Which holders of message `message`'s keys (`holders`: key, holder) it matches,
    /// the `HOLDERS` newest of each key looked at; `holder_of` reads one holder.
    pub(crate) fn decide(
        fp: &Fingerprint,
        message: i64,
        mut holders: Vec<(i64, i64)>,
        mut holder_of: impl FnMut(i64) -> Result<Holder>,
    ) -> Result<Lookup> {
        holders.sort_by_key(|&(key, message)| (key, std::cmp::Reverse(message)));
        // Matched holders, with their cluster's root (None: the holder is alone).
        let mut matched: BTreeMap<i64, Option<i64>> = BTreeMap::new();
        let mut rejected: BTreeSet<i64> = BTreeSet::new();
        // Keys no holder of which matched: this message becomes a holder. A key some
        // holder matched adds nothing (the cluster is found by it already), so a flood
        // of copies does not grow the key table.
        let mut new_keys: Vec<i64> = Vec::new();
        for (key, is_exact) in fp.keys() {
            let mut key_matched = false;
            let of_key = holders.iter().filter(|h| h.0 == key).take(HOLDERS);
            for &(_, holder) in of_key {
                if holder == message {
                    continue;
                }
                if matched.contains_key(&holder) {
                    key_matched = true;
                    continue;
                }
                if rejected.contains(&holder) {
                    continue;
                }
                let Some((theirs, root)) = holder_of(holder)? else {
                    rejected.insert(holder);
                    continue;
                };
                let near = is_exact
                    || match (theirs, fp.signature()) {
                        (Some(theirs), Some(ours)) => {
                            fingerprint::agreement(&theirs, ours).is_some_and(|n| n >= AGREE)
                        }
                        _ => false,
                    };
                if near {
                    matched.insert(holder, root);
                    key_matched = true;
                } else {
                    rejected.insert(holder);
                }
            }
            if !key_matched {
                new_keys.push(key);
            }
        }
        Ok(Lookup { matched, new_keys })
    }

    /// The matching messages, with their cluster's root (None: alone).
    pub(crate) fn matched(&self) -> &BTreeMap<i64, Option<i64>> {
        &self.matched
    }

    /// The keys this message becomes a holder of.
    pub(crate) fn new_keys(&self) -> &[i64] {
        &self.new_keys
    }
}

/// Files message `message` with what `lookup` found; returns its cluster's root, or
/// None if it matched no other message.
fn file(
    c: &Connection,
    message: i64,
    fp: &Fingerprint,
    found: &Lookup,
    now: i64,
) -> Result<Option<i64>> {
    if fp.is_empty() {
        return Ok(None);
    }
    let cluster = if found.matched().is_empty() {
        None
    } else {
        Some(join(c, found.matched(), now)?)
    };
    let new_keys = found.new_keys();
    c.prepare_cached(
        "UPDATE fingerprints SET cluster=?2, pending=NULL, held_keys=?3 WHERE message=?1",
    )?
    .execute(params![
        message,
        cluster,
        super::lookups::encode_keys(new_keys)
    ])?;
    if !new_keys.is_empty() {
        // One statement for all of them (one per key costs the writer more than the
        // inserts themselves).
        c.prepare_cached(&format!(
            "INSERT OR IGNORE INTO lk.cluster_keys(key, message) VALUES {}",
            vec!["(?, ?)"; new_keys.len()].join(",")
        ))?
        .execute(rusqlite::params_from_iter(
            new_keys.iter().flat_map(|k| [*k, message]),
        ))?;
        super::lookups::mark_changed(c)?;
    }
    if let Some(root) = cluster {
        c.prepare_cached(
            "UPDATE clusters SET messages=messages+1, last_seen=max(last_seen, ?2) WHERE id=?1",
        )?
        .execute(params![root, now])?;
        grew(c, root, now, 1)?;
    }
    Ok(cluster)
}

/// Counts `n` new members of cluster `root` in the minute of `at`.
fn grew(c: &Connection, root: i64, at: i64, n: i64) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO cluster_growth(cluster, minute, messages) VALUES(?1, ?2, ?3)
         ON CONFLICT(cluster, minute) DO UPDATE SET messages=messages+excluded.messages",
    )?
    .execute(params![root, at.div_euclid(60), n])?;
    Ok(())
}

/// Members cluster `root` (with the clusters it absorbed) gained since `since`, to the
/// minute.
fn growth(c: &Connection, root: i64, since: i64) -> Result<u64> {
    Ok(c.prepare_cached(
        "SELECT COALESCE(SUM(g.messages), 0) FROM cluster_growth g
             WHERE g.cluster IN (SELECT id FROM clusters WHERE id=?1 OR parent=?1)
               AND g.minute>=?2",
    )?
    .query_row(params![root, since.div_euclid(60)], |r| r.get::<_, i64>(0))?
    .max(0) as u64)
}

/// Growth rows older than this are pruned (with the keys' first slice, an hourly pass):
/// `clusters` looks back an hour, a hold rule's window is minutes to hours.
pub(crate) const GROWTH_KEPT: i64 = 2 * 86_400;

/// Drops growth rows nothing looks at any more.
pub(super) fn prune_growth(c: &Connection, now: i64) -> Result<usize> {
    Ok(
        c.prepare_cached("DELETE FROM cluster_growth WHERE minute<?1")?
            .execute([(now - GROWTH_KEPT).div_euclid(60)])?,
    )
}

/// The root cluster the matched messages (with their roots) now share, creating or
/// merging as needed.
fn join(c: &Connection, matched: &BTreeMap<i64, Option<i64>>, now: i64) -> Result<i64> {
    let roots: BTreeSet<i64> = matched.values().flatten().copied().collect();
    let loose: Vec<i64> = matched
        .iter()
        .filter(|(_, root)| root.is_none())
        .map(|(m, _)| *m)
        .collect();
    let target = match roots.first() {
        Some(&oldest) => oldest,
        None => {
            c.prepare_cached(
                "INSERT INTO clusters(messages, first_seen, last_seen) VALUES(0, ?1, ?1)",
            )?
            .execute([now])?;
            c.last_insert_rowid()
        }
    };
    for &other in roots.iter().filter(|&&r| r != target) {
        c.prepare_cached(
            "UPDATE clusters SET
               messages=messages+(SELECT messages FROM clusters WHERE id=?2),
               first_seen=min(first_seen, (SELECT first_seen FROM clusters WHERE id=?2)),
               last_seen=max(last_seen, (SELECT last_seen FROM clusters WHERE id=?2)),
               allowed=max(allowed, (SELECT allowed FROM clusters WHERE id=?2)),
               held_since=COALESCE(held_since, (SELECT held_since FROM clusters WHERE id=?2))
             WHERE id=?1",
        )?
        .execute(params![target, other])?;
        c.prepare_cached("UPDATE clusters SET parent=?1, messages=0 WHERE id=?2 OR parent=?2")?
            .execute(params![target, other])?;
    }
    if !loose.is_empty() {
        let mut adopt = c.prepare_cached(
            "UPDATE fingerprints SET cluster=?1 WHERE message=?2 AND cluster IS NULL",
        )?;
        let mut adopted = 0;
        for m in &loose {
            adopted += adopt.execute(params![target, m])?;
        }
        c.prepare_cached("UPDATE clusters SET messages=messages+?2 WHERE id=?1")?
            .execute(params![target, adopted as i64])?;
        grew(c, target, now, adopted as i64)?;
    }
    Ok(target)
}

/// Message rows are being deleted: their fingerprints go, and each cluster counts its
/// members fewer. One count update per cluster, not per message: deleting 50,000 worm
/// copies of one cluster is the outbreak's usual shape, and on a 1M-message store a
/// per-message update left queue delete at 0.98x `postsuper -d` (from 1.05-1.15x).
///
/// A message not filed yet keeps its fingerprint: the clusterer files it when it gets
/// there and then forgets it (`file_pending`), so that the message event log can name
/// the cluster of a copy deleted within seconds (`exposure --cluster`). Filing it here
/// instead put the clusterer's work on the delivery path (outbound at 0.83x Postfix).
/// Returns (message, cluster) of the filed messages that went.
pub(super) fn forget(c: &Connection, messages: &[i64]) -> Result<Vec<(i64, i64)>> {
    let mut fewer: BTreeMap<i64, i64> = BTreeMap::new();
    let mut members = Vec::new();
    {
        let mut delete = c.prepare_cached(
            "DELETE FROM fingerprints WHERE message=?1 AND pending IS NULL RETURNING cluster",
        )?;
        for m in messages {
            let cluster: Option<Option<i64>> = delete.query_row([m], |r| r.get(0)).optional()?;
            if let Some(Some(cluster)) = cluster {
                *fewer.entry(cluster).or_default() += 1;
                members.push((*m, cluster));
            }
        }
    }
    let mut update = c.prepare_cached(
        "UPDATE clusters SET messages=messages-?2
         WHERE id=(SELECT COALESCE(parent, id) FROM clusters WHERE id=?1)",
    )?;
    for (cluster, n) in fewer {
        update.execute(params![cluster, n])?;
    }
    Ok(members)
}

/// Drops lookup keys whose message is gone (purged or deleted: its fingerprint row went
/// with it), in slice `slice` of `slices` equal ranges of the key space. Dead holders
/// take the `HOLDERS` places of a key before live older ones, so a worm that comes
/// back after its copies were purged would otherwise start a new cluster. Keys are
/// hashes, spread evenly: each slice is about the same work.
pub(super) fn prune_keys(c: &Connection, slice: u32, slices: u32) -> Result<usize> {
    let slices = slices.max(1);
    let width = (1i128 << 64) / i128::from(slices);
    let start = i128::from(i64::MIN) + width * i128::from(slice.min(slices - 1));
    // Past i64::MAX (the last slice): no upper bound.
    let end = i64::try_from(start + width).ok();
    let pruned = c
        .prepare_cached(
            "DELETE FROM lk.cluster_keys WHERE key>=?1 AND (?2 IS NULL OR key<?2)
             AND NOT EXISTS (SELECT 1 FROM fingerprints f WHERE f.message=cluster_keys.message)",
        )?
        .execute(params![start as i64, end])?;
    if pruned > 0 {
        super::lookups::mark_changed(c)?;
    }
    Ok(pruned)
}

/// The SQL condition "message `m` is in cluster X as it is now" (X's root, or any
/// cluster the root absorbed: a merged cluster's id still names its members), X being
/// the statement's parameter `param` (`?`, `?3`).
pub(super) fn member_of(param: &str) -> String {
    format!(
        "m.id IN (SELECT f.message FROM fingerprints f
           WHERE f.cluster IN (SELECT k.id FROM clusters k,
             (SELECT COALESCE(parent, id) AS root FROM clusters WHERE id={param}) r
             WHERE k.id=r.root OR k.parent=r.root))"
    )
}

/// The root of cluster `id` (a merged cluster's id still names its members).
pub(super) fn root(c: &Connection, id: i64) -> Result<Option<i64>> {
    Ok(
        c.prepare_cached("SELECT COALESCE(parent, id) FROM clusters WHERE id=?1")?
            .query_row([id], |r| r.get(0))
            .optional()?,
    )
}

/// Marks a cluster as mail the admin knows (a newsletter): it is listed as allowed and
/// never held; copies a hold froze in `inbound` go on at once. Returns how many were
/// let go, None if there is no such cluster.
pub(super) fn set_allowed(c: &Connection, id: i64, allowed: bool, now: i64) -> Result<Option<u64>> {
    let Some(root) = root(c, id)? else {
        return Ok(None);
    };
    if !allowed {
        c.prepare_cached("UPDATE clusters SET allowed=0 WHERE id=?1")?
            .execute([root])?;
        return Ok(Some(0));
    }
    c.prepare_cached(
        "UPDATE clusters SET allowed=1, held_since=NULL, hold_checked=NULL WHERE id=?1",
    )?
    .execute([root])?;
    let released = c
        .prepare_cached(&format!(
            "UPDATE queue_items SET state='ready', next_attempt=?3, last_error=NULL
             WHERE queue=?2 AND state='frozen' AND last_error LIKE ?4
               AND message IN (SELECT m.id FROM messages m WHERE {})",
            member_of("?1")
        ))?
        .execute(params![root, QUEUE_INBOUND, now, format!("{HELD}%")])?;
    Ok(Some(released as u64))
}

/// The clusters the query asks for, best first: more than the page when a place
/// filter will drop some (the caller keeps the first `query.limit` that pass
/// [`wanted`]). From the size index, or from the last hour's growth rows.
pub(super) fn candidates(c: &Connection, query: &ClusterQuery, now: i64) -> Result<Vec<i64>> {
    let page = query.limit.max(1);
    let look_at = if query.places.is_empty() {
        page
    } else {
        page * 4
    } as i64;
    let ids = if query.by_growth {
        // Growth rows of the last hour, summed per root: a few rows per active cluster.
        c.prepare_cached(
            "SELECT r.id, SUM(g.messages) AS n
             FROM cluster_growth g CROSS JOIN clusters k ON k.id=g.cluster
               CROSS JOIN clusters r ON r.id=COALESCE(k.parent, k.id)
             WHERE g.minute>=?3 AND r.messages>=?1 AND r.last_seen>=?2
             GROUP BY r.id ORDER BY n DESC, r.id LIMIT ?4",
        )?
        .query_map(
            params![
                query.min.max(1) as i64,
                query.since.unwrap_or(0),
                (now - 3600).div_euclid(60),
                look_at
            ],
            |r| r.get(0),
        )?
        .collect::<rusqlite::Result<_>>()?
    } else {
        c.prepare_cached(
            "SELECT id FROM clusters WHERE parent IS NULL AND messages>=?1 AND last_seen>=?2
             ORDER BY messages DESC, id LIMIT ?3",
        )?
        .query_map(
            params![query.min.max(1) as i64, query.since.unwrap_or(0), look_at],
            |r| r.get(0),
        )?
        .collect::<rusqlite::Result<_>>()?
    };
    Ok(ids)
}

/// Whether a summary passes the query's place filter.
pub(crate) fn wanted(query: &ClusterQuery, s: &ClusterSummary) -> bool {
    query.places.is_empty()
        || query.places.iter().any(|p| match p {
            Place::Queues => s.in_queues > 0,
            Place::Mailboxes => s.in_mailboxes > 0,
            Place::Quarantine => s.in_quarantine > 0,
        })
}

/// Everything `clusters` and `clusters show` say about one cluster; `samples` subjects
/// and attachments at most.
pub(super) fn summary(
    c: &Connection,
    id: i64,
    now: i64,
    samples: usize,
) -> Result<Option<ClusterSummary>> {
    let Some(root) = root(c, id)? else {
        return Ok(None);
    };
    let (messages, first_seen, last_seen, allowed, held_since): (i64, i64, i64, bool, Option<i64>) =
        c.prepare_cached(
            "SELECT messages, first_seen, last_seen, allowed, held_since FROM clusters WHERE id=?1",
        )?
        .query_row([root], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?;
    // The members once, in a temporary table the passes below join. The joins are
    // CROSS JOINs so SQLite loops over the members (a temporary table has no
    // statistics; the planner otherwise scanned the whole of `parts` or
    // `mailbox_entries` for each figure: 13 s to list 62 clusters among 110,000).
    // One pass per table the figures come from, counted here rather than in one
    // query per figure: a listing on 1M messages whose 61 clusters held 210,000
    // members took 2.9 s with a query per figure.
    c.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS cluster_members(message INTEGER PRIMARY KEY);
         DELETE FROM temp.cluster_members;",
    )?;
    c.prepare_cached(&format!(
        "INSERT INTO temp.cluster_members(message) SELECT m.id FROM messages m WHERE {}",
        member_of("?1")
    ))?
    .execute([root])?;
    let figures = member_figures(c, samples);
    c.execute_batch("DELETE FROM temp.cluster_members;")?;
    let row = ClusterRow {
        root,
        messages,
        first_seen,
        last_seen,
        allowed,
        held_since,
    };
    Ok(Some(figures?.summary(
        row,
        growth(c, root, now - 3600)?,
        samples,
    )))
}

/// A cluster's own row, as both stores keep it.
pub(crate) struct ClusterRow {
    pub root: i64,
    pub messages: i64,
    pub first_seen: i64,
    pub last_seen: i64,
    pub allowed: bool,
    pub held_since: Option<i64>,
}

/// What a cluster's members add up to, fed a table at a time by the store.
#[derive(Default)]
pub(crate) struct MemberFigures {
    senders: HashSet<String>,
    recipients: HashSet<String>,
    in_queues: HashSet<i64>,
    in_mailboxes: HashSet<i64>,
    in_quarantine: HashSet<i64>,
    held_copies: u64,
    queues: BTreeSet<String>,
    mailboxes: BTreeSet<String>,
    newest_subject: HashMap<String, i64>,
    verdicts: HashMap<String, u64>,
    attachments: Vec<ClusterAttachment>,
}

impl MemberFigures {
    fn add_recipients(&mut self, list: &str) {
        for address in list.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            self.recipients.insert(address.to_ascii_lowercase());
        }
    }

    /// A member's message row.
    pub(crate) fn message(
        &mut self,
        id: i64,
        env_from: Option<String>,
        subject: Option<String>,
        verdict: Option<String>,
    ) {
        if let Some(mut from) = env_from {
            from.make_ascii_lowercase();
            self.senders.insert(from);
        }
        if let Some(subject) = subject {
            let newest = self.newest_subject.entry(subject).or_insert(id);
            *newest = (*newest).max(id);
        }
        if let Some(verdict) = verdict {
            *self.verdicts.entry(verdict).or_default() += 1;
        }
    }

    /// A queue item of a member: its queue, whether a hold froze it, its recipients
    /// (comma-separated).
    pub(crate) fn queued(&mut self, message: i64, queue: String, held: bool, rcpts: Option<&str>) {
        self.in_queues.insert(message);
        self.queues.insert(queue);
        self.held_copies += u64::from(held);
        if let Some(list) = rcpts {
            self.add_recipients(list);
        }
    }

    /// A member's copy in `user`'s mailbox.
    pub(crate) fn in_mailbox(&mut self, message: i64, user: String) {
        self.in_mailboxes.insert(message);
        self.add_recipients(&user);
        self.mailboxes.insert(user);
    }

    /// A member in quarantine, taken from these recipients.
    pub(crate) fn quarantined(&mut self, message: i64, recipients: Option<&str>) {
        self.in_quarantine.insert(message);
        if let Some(list) = recipients {
            self.add_recipients(list);
        }
    }

    pub(crate) fn attachments(&mut self, attachments: Vec<ClusterAttachment>) {
        self.attachments = attachments;
    }

    /// The summary `clusters` shows: `samples` subjects, queues and mailboxes at most.
    pub(crate) fn summary(self, row: ClusterRow, last_hour: u64, samples: usize) -> ClusterSummary {
        let mut subjects: Vec<(i64, String)> = self
            .newest_subject
            .into_iter()
            .map(|(s, id)| (id, s))
            .collect();
        subjects.sort_unstable_by(|a, b| b.cmp(a));
        let mut verdicts: Vec<(String, u64)> = self.verdicts.into_iter().collect();
        verdicts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        ClusterSummary {
            id: row.root,
            messages: row.messages.max(0) as u64,
            first_seen: row.first_seen,
            last_seen: row.last_seen,
            allowed: row.allowed,
            held_since: row.held_since.filter(|_| !row.allowed),
            held_copies: self.held_copies,
            last_hour,
            senders: self.senders.len() as u64,
            recipients: self.recipients.len() as u64,
            in_queues: self.in_queues.len() as u64,
            in_mailboxes: self.in_mailboxes.len() as u64,
            in_quarantine: self.in_quarantine.len() as u64,
            queues: self.queues.into_iter().take(samples).collect(),
            mailboxes: self.mailboxes.into_iter().take(samples).collect(),
            subjects: subjects.into_iter().take(samples).map(|(_, s)| s).collect(),
            attachments: self.attachments,
            verdicts,
        }
    }
}

/// What the members of `temp.cluster_members` add up to.
fn member_figures(c: &Connection, samples: usize) -> Result<MemberFigures> {
    let mut f = MemberFigures::default();
    // Messages: senders, recent distinct subjects, verdicts.
    let mut stmt = c.prepare_cached(
        "SELECT m.id, m.env_from, m.subject, m.verdict
         FROM temp.cluster_members x CROSS JOIN messages m ON m.id=x.message",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        f.message(r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
    }
    // Queue items: where copies wait, their recipients, those a hold froze.
    let held = format!("{HELD}%");
    let mut stmt = c.prepare_cached(
        "SELECT q.message, q.queue, q.queue=?1 AND q.state='frozen' AND q.last_error LIKE ?2,
                (SELECT group_concat(r.address) FROM queue_rcpts r WHERE r.item=q.id)
         FROM temp.cluster_members x CROSS JOIN queue_items q ON q.message=x.message",
    )?;
    let mut rows = stmt.query(params![QUEUE_INBOUND, held])?;
    while let Some(r) = rows.next()? {
        let rcpts: Option<String> = r.get(3)?;
        f.queued(r.get(0)?, r.get(1)?, r.get(2)?, rcpts.as_deref());
    }
    // Mailbox entries: whose mailboxes copies are in.
    let mut stmt = c.prepare_cached(
        "SELECT e.message, b.user FROM temp.cluster_members x
         CROSS JOIN mailbox_entries e ON e.message=x.message JOIN mailboxes b ON b.id=e.mailbox",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        f.in_mailbox(r.get(0)?, r.get(1)?);
    }
    // Quarantine: copies taken out, and the recipients they were taken from.
    let mut stmt = c.prepare_cached(
        "SELECT z.message, z.recipients FROM temp.cluster_members x
         CROSS JOIN quarantine z ON z.message=x.message",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let recipients: Option<String> = r.get(1)?;
        f.quarantined(r.get(0)?, recipients.as_deref());
    }
    f.attachments(
        c.prepare_cached(
            "SELECT p.sha256, min(p.filename), COUNT(DISTINCT p.message) AS n
             FROM temp.cluster_members x CROSS JOIN parts p ON p.message=x.message
             WHERE p.filename IS NOT NULL AND (p.inside IS NOT NULL OR p.content_type NOT LIKE 'text/%')
             GROUP BY p.sha256 ORDER BY n DESC, p.sha256 LIMIT ?1",
        )?
        .query_map([samples as i64], |r| {
            Ok(ClusterAttachment {
                sha256: r.get(0)?,
                name: r.get(1)?,
                messages: r.get::<_, i64>(2)? as u64,
            })
        })?
        .collect::<rusqlite::Result<_>>()?,
    );
    Ok(f)
}
