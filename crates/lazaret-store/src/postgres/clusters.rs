//! Outbreak clusters on PostgreSQL: the embedded store's scheme (`embedded/clusters.rs`
//! says how messages are keyed, matched and merged) on tables every node shares.
//!
//! Filing changes clusters at places no row lock names in advance (a merge touches
//! every cluster a message matches), so one node files at a time: whoever holds the
//! transaction-level advisory lock `FILING_LOCK`. A node that finds it taken files
//! nothing this round. Routing with a hold rule and the reclaim (which counts
//! clusters down) take the same lock, so cluster counts never race.

use super::cached::Cached;
use super::{pg, read_only, PostgresStore};
use crate::embedded::clusters::{
    wanted, ClusterRow, Fingerprint, Lookup, MemberFigures, GROWTH_KEPT, HELD, SENDERS_RECHECK,
};
use crate::model::*;
use crate::{now, Result};
use deadpool_postgres::Transaction;
use lazaret_core::state::QUEUE_INBOUND;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Key of the advisory lock filing runs under ("clusters" in ASCII).
const FILING_LOCK: i64 = 0x636c_7573_7465_7273;

/// Waits for the filing lock, held to the end of the caller's transaction.
pub(super) async fn lock_filing(tx: &Transaction<'_>) -> Result<()> {
    tx.execute_cached("SELECT pg_advisory_xact_lock($1)", &[&FILING_LOCK])
        .await?;
    Ok(())
}

/// Records just-inserted messages' fingerprints, to be filed by `file_clusters`: one
/// statement for all.
pub(super) async fn record(tx: &Transaction<'_>, messages: &[(i64, &Fingerprint)]) -> Result<()> {
    let keyed = || messages.iter().filter(|(_, fp)| !fp.is_empty());
    if keyed().next().is_none() {
        return Ok(());
    }
    let ids: Vec<i64> = keyed().map(|(id, _)| *id).collect();
    let signatures: Vec<Option<&[u8]>> = keyed().map(|(_, fp)| fp.signature()).collect();
    let pending: Vec<Vec<u8>> = keyed().map(|(_, fp)| fp.encode()).collect();
    tx.execute_cached(
        "INSERT INTO fingerprints(message, signature, pending)
         SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bytea[])
         ON CONFLICT DO NOTHING",
        &[&ids, &signatures, &pending],
    )
    .await?;
    Ok(())
}

impl PostgresStore {
    /// Files up to `limit` waiting messages, oldest first; 0 while another node files.
    pub fn file_clusters(&self, limit: usize) -> Result<usize> {
        self.with_client(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            let mine: bool = tx
                .query_one_cached("SELECT pg_try_advisory_xact_lock($1)", &[&FILING_LOCK])
                .await?
                .get(0);
            if !mine {
                return Ok(0);
            }
            let filed = file_pending(&tx, limit, now()).await?;
            super::commit(tx).await?;
            Ok(filed)
        })
    }

    /// How many messages wait to be filed, and since when.
    pub fn clusters_pending(&self) -> Result<ClustersPending> {
        self.with_client(|c| async move {
            let row = c
                .query_one_cached(
                    "SELECT COUNT(*), (SELECT m.received FROM messages m WHERE m.id=
                        (SELECT min(message) FROM fingerprints WHERE pending IS NOT NULL))
                     FROM fingerprints WHERE pending IS NOT NULL",
                    &[],
                )
                .await?;
            let oldest: Option<i64> = row.get(1);
            Ok(ClustersPending {
                messages: if oldest.is_some() {
                    row.get::<_, i64>(0).max(0) as u64
                } else {
                    0
                },
                oldest,
            })
        })
    }

    /// Drops lookup keys of messages gone (the reclaim drops most with the message;
    /// this catches the rest), slice `slice` of the key space; slice 0 also drops old
    /// growth rows.
    pub fn prune_cluster_keys(&self, slice: u32) -> Result<usize> {
        self.with_client(move |c| async move {
            let mut pruned = 0;
            if slice == 0 {
                pruned += c
                    .execute_cached(
                        "DELETE FROM cluster_growth WHERE minute<$1",
                        &[&(now() - GROWTH_KEPT).div_euclid(60)],
                    )
                    .await? as usize;
            }
            let (start, end) = key_slice(slice, crate::CLUSTER_KEY_SLICES);
            pruned += c
                .execute_cached(
                    "DELETE FROM cluster_keys k WHERE k.key>=$1 AND ($2::bigint IS NULL OR k.key<$2)
                       AND NOT EXISTS (SELECT 1 FROM fingerprints f WHERE f.message=k.message)",
                    &[&start, &end],
                )
                .await? as usize;
            Ok(pruned)
        })
    }

    /// Allows (or stops allowing) a cluster; copies a hold froze in `inbound` go on at
    /// once. None: no such cluster.
    pub fn cluster_allow(&self, id: i64, allowed: bool) -> Result<Option<u64>> {
        let released = self.with_client(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            // Routing decides holds under this lock: an allow must not interleave.
            lock_filing(&tx).await?;
            let Some(root) = root(&tx, id).await? else {
                return Ok(None);
            };
            if !allowed {
                tx.execute_cached("UPDATE clusters SET allowed=false WHERE id=$1", &[&root])
                    .await?;
                super::commit(tx).await?;
                return Ok(Some(0));
            }
            tx.execute_cached(
                "UPDATE clusters SET allowed=true, held_since=NULL, hold_checked=NULL WHERE id=$1",
                &[&root],
            )
            .await?;
            let released = tx
                .execute(
                    &format!(
                        "UPDATE queue_items SET state='ready', next_attempt=$3, last_error=NULL
                         WHERE queue=$2 AND state='frozen' AND last_error LIKE $4
                           AND message IN (SELECT m.id FROM messages m WHERE {})",
                        member_of("$1")
                    ),
                    &[&root, &QUEUE_INBOUND, &now(), &format!("{HELD}%")],
                )
                .await
                .map_err(pg)?;
            if released > 0 {
                tx.execute_cached("SELECT pg_notify($1, '')", &[&super::QUEUE_CHANNEL])
                    .await?;
            }
            super::commit(tx).await?;
            Ok(Some(released))
        })?;
        Ok(released)
    }

    /// Everything `clusters show` says about one cluster.
    pub fn cluster(&self, id: i64) -> Result<Option<ClusterSummary>> {
        self.with_client(move |mut c| async move {
            let tx = read_only(&mut c).await?;
            summary(&tx, id, now(), 10).await
        })
    }

    /// The clusters `lazaret clusters` lists, best first.
    pub fn clusters(&self, query: &ClusterQuery) -> Result<Vec<ClusterSummary>> {
        let query = query.clone();
        self.with_client(move |mut c| async move {
            let tx = read_only(&mut c).await?;
            let t = now();
            let mut out = Vec::new();
            for id in candidates(&tx, &query, t).await? {
                let Some(s) = summary(&tx, id, t, 3).await? else {
                    continue;
                };
                if wanted(&query, &s) {
                    out.push(s);
                    if out.len() >= query.limit.max(1) {
                        break;
                    }
                }
            }
            Ok(out)
        })
    }
}

/// The bounds of slice `slice` of `slices` equal ranges of the key space (keys are
/// hashes, spread evenly); the last has no upper bound.
fn key_slice(slice: u32, slices: u32) -> (i64, Option<i64>) {
    let slices = slices.max(1);
    let width = (1i128 << 64) / i128::from(slices);
    let start = i128::from(i64::MIN) + width * i128::from(slice.min(slices - 1));
    (start as i64, i64::try_from(start + width).ok())
}

/// A message waiting to be filed: id, signature, encoded keys, when it was received.
type PendingRow = (i64, Option<Vec<u8>>, Vec<u8>, i64);

/// Files up to `limit` waiting messages, oldest first (the caller holds the lock).
async fn file_pending(tx: &Transaction<'_>, limit: usize, now: i64) -> Result<usize> {
    // A message gone before it was filed is filed all the same, then forgotten, its
    // cluster written into its `gone` event (as the embedded store does).
    let rows = tx
        .query_cached(
            "SELECT f.message, f.signature, f.pending, COALESCE(m.received, $2), m.id IS NULL
             FROM fingerprints f LEFT JOIN messages m ON m.id=f.message
             WHERE f.pending IS NOT NULL ORDER BY f.message LIMIT $1",
            &[&(limit as i64), &now],
        )
        .await?;
    for r in &rows {
        let message: i64 = r.get(0);
        let root = file_row(tx, (message, r.get(1), r.get(2), r.get(3)), now).await?;
        if r.get::<_, bool>(4) {
            forget(tx, &[message]).await?;
            if let Some(root) = root {
                tx.execute_cached(
                    "UPDATE message_events SET who=$2 WHERE message=$1 AND kind='gone'",
                    &[&message, &root.to_string()],
                )
                .await?;
            }
        }
    }
    Ok(rows.len())
}

/// Files one waiting message; returns its cluster's root (None: it matched nothing).
async fn file_row(
    tx: &Transaction<'_>,
    (message, signature, keys, received): PendingRow,
    now: i64,
) -> Result<Option<i64>> {
    let fp = Fingerprint::decode(signature, &keys);
    let found = lookup(tx, &fp, message).await?;
    file(tx, message, &fp, &found, received.min(now)).await
}

/// Looks the keys of message `message` up among the messages filed before it: the
/// holders of all its keys in one statement, then those holders in one more.
async fn lookup(tx: &Transaction<'_>, fp: &Fingerprint, message: i64) -> Result<Lookup> {
    if fp.is_empty() {
        return Ok(Lookup::default());
    }
    let keys: Vec<i64> = fp.keys().into_iter().map(|(k, _)| k).collect();
    let holders: Vec<(i64, i64)> = tx
        .query_cached(
            "SELECT key, message FROM cluster_keys WHERE key=ANY($1)",
            &[&keys],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let ids: Vec<i64> = holders.iter().map(|h| h.1).collect();
    let mut holder_rows: HashMap<i64, (Option<Vec<u8>>, Option<i64>)> = tx
        .query_cached(
            "SELECT f.message, f.signature, COALESCE(k.parent, k.id) FROM fingerprints f
             LEFT JOIN clusters k ON k.id=f.cluster WHERE f.message=ANY($1)",
            &[&ids],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    Lookup::decide(fp, message, holders, |holder| {
        Ok(holder_rows.remove(&holder))
    })
}

/// Files message `message` with what `lookup` found; returns its cluster's root.
async fn file(
    tx: &Transaction<'_>,
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
        Some(join(tx, found.matched(), now).await?)
    };
    tx.execute_cached(
        "UPDATE fingerprints SET cluster=$2, pending=NULL WHERE message=$1",
        &[&message, &cluster],
    )
    .await?;
    let new_keys = found.new_keys();
    if !new_keys.is_empty() {
        tx.execute_cached(
            "INSERT INTO cluster_keys(key, message) SELECT unnest($1::bigint[]), $2
             ON CONFLICT DO NOTHING",
            &[&new_keys, &message],
        )
        .await?;
    }
    if let Some(root) = cluster {
        tx.execute_cached(
            "UPDATE clusters SET messages=messages+1, last_seen=GREATEST(last_seen, $2)
             WHERE id=$1",
            &[&root, &now],
        )
        .await?;
        grew(tx, root, now, 1).await?;
    }
    Ok(cluster)
}

/// Counts `n` new members of cluster `root` in the minute of `at`.
async fn grew(tx: &Transaction<'_>, root: i64, at: i64, n: i64) -> Result<()> {
    tx.execute_cached(
        "INSERT INTO cluster_growth(cluster, minute, messages) VALUES($1, $2, $3)
         ON CONFLICT(cluster, minute) DO UPDATE
           SET messages=cluster_growth.messages+excluded.messages",
        &[&root, &at.div_euclid(60), &n],
    )
    .await?;
    Ok(())
}

/// Members cluster `root` (with the clusters it absorbed) gained since `since`.
async fn growth(tx: &Transaction<'_>, root: i64, since: i64) -> Result<u64> {
    let n: i64 = tx
        .query_one_cached(
            "SELECT COALESCE(SUM(g.messages), 0)::bigint FROM cluster_growth g
             WHERE g.cluster IN (SELECT id FROM clusters WHERE id=$1 OR parent=$1)
               AND g.minute>=$2",
            &[&root, &since.div_euclid(60)],
        )
        .await?
        .get(0);
    Ok(n.max(0) as u64)
}

/// The root cluster the matched messages now share, creating or merging as needed
/// (the oldest survives; the others point at it).
async fn join(tx: &Transaction<'_>, matched: &BTreeMap<i64, Option<i64>>, now: i64) -> Result<i64> {
    let roots: BTreeSet<i64> = matched.values().flatten().copied().collect();
    let loose: Vec<i64> = matched
        .iter()
        .filter(|(_, root)| root.is_none())
        .map(|(m, _)| *m)
        .collect();
    let target: i64 = match roots.first() {
        Some(&oldest) => oldest,
        None => tx
            .query_one_cached(
                "INSERT INTO clusters(messages, first_seen, last_seen) VALUES(0, $1, $1)
                 RETURNING id",
                &[&now],
            )
            .await?
            .get(0),
    };
    for &other in roots.iter().filter(|&&r| r != target) {
        tx.execute_cached(
            "UPDATE clusters t SET messages=t.messages+o.messages,
               first_seen=LEAST(t.first_seen, o.first_seen),
               last_seen=GREATEST(t.last_seen, o.last_seen),
               allowed=t.allowed OR o.allowed,
               held_since=COALESCE(t.held_since, o.held_since)
             FROM clusters o WHERE t.id=$1 AND o.id=$2",
            &[&target, &other],
        )
        .await?;
        tx.execute_cached(
            "UPDATE clusters SET parent=$1, messages=0 WHERE id=$2 OR parent=$2",
            &[&target, &other],
        )
        .await?;
    }
    if !loose.is_empty() {
        let adopted = tx
            .execute_cached(
                "UPDATE fingerprints SET cluster=$1 WHERE message=ANY($2) AND cluster IS NULL",
                &[&target, &loose],
            )
            .await? as i64;
        tx.execute_cached(
            "UPDATE clusters SET messages=messages+$2 WHERE id=$1",
            &[&target, &adopted],
        )
        .await?;
        grew(tx, target, now, adopted).await?;
    }
    Ok(target)
}

/// Message rows are being deleted: their filed fingerprints and lookup keys go, and
/// each cluster counts its members fewer (one update per cluster). A message not filed
/// yet keeps its fingerprint for `file_pending`, as in the embedded store. Returns
/// message → cluster of the members that went. The caller holds the filing lock.
pub(super) async fn forget(tx: &Transaction<'_>, messages: &[i64]) -> Result<HashMap<i64, i64>> {
    let members: HashMap<i64, i64> = tx
        .query_cached(
            "DELETE FROM fingerprints WHERE message=ANY($1) AND pending IS NULL
             RETURNING message, cluster",
            &[&messages],
        )
        .await?
        .iter()
        .filter_map(|r| Some((r.get(0), r.get::<_, Option<i64>>(1)?)))
        .collect();
    tx.execute_cached(
        "DELETE FROM cluster_keys WHERE message=ANY($1)",
        &[&messages],
    )
    .await?;
    let mut fewer: BTreeMap<i64, i64> = BTreeMap::new();
    for cluster in members.values() {
        *fewer.entry(*cluster).or_default() += 1;
    }
    for (cluster, n) in fewer {
        tx.execute_cached(
            "UPDATE clusters SET messages=messages-$2
             WHERE id=(SELECT COALESCE(parent, id) FROM clusters WHERE id=$1)",
            &[&cluster, &n],
        )
        .await?;
    }
    Ok(members)
}

/// The root of message `message`'s cluster (None: alone, or no fingerprint), filing
/// it first if it waits: the hold rule must know a copy's cluster before the copy
/// leaves `inbound`. The caller holds the filing lock.
async fn cluster_of(tx: &Transaction<'_>, message: i64, now: i64) -> Result<Option<i64>> {
    let waiting = tx
        .query_opt_cached(
            "SELECT f.message, f.signature, f.pending, m.received FROM fingerprints f
             JOIN messages m ON m.id=f.message WHERE f.message=$1 AND f.pending IS NOT NULL",
            &[&message],
        )
        .await?;
    if let Some(r) = waiting {
        return file_row(tx, (r.get(0), r.get(1), r.get(2), r.get(3)), now).await;
    }
    Ok(tx
        .query_opt_cached(
            "SELECT COALESCE(k.parent, k.id) FROM fingerprints f JOIN clusters k ON k.id=f.cluster
             WHERE f.message=$1",
            &[&message],
        )
        .await?
        .map(|r| r.get(0)))
}

/// Whether inbound item `item` (message `message`) stays frozen in `inbound` because
/// its cluster is held, starting the hold if the cluster now grows past `rule` (it is
/// then added to `holds`). Returns the held cluster's root. The caller holds the
/// filing lock.
pub(super) async fn holds(
    tx: &Transaction<'_>,
    item: i64,
    message: i64,
    rule: &HoldRule,
    now: i64,
    holds: &mut Vec<ClusterHold>,
) -> Result<Option<i64>> {
    let Some(root) = cluster_of(tx, message, now).await? else {
        return Ok(None);
    };
    let last_error: Option<String> = tx
        .query_opt_cached("SELECT last_error FROM queue_items WHERE id=$1", &[&item])
        .await?
        .and_then(|r| r.get(0));
    if last_error.is_some_and(|e| e.starts_with(HELD)) {
        // Held once, thawed by the admin: let go.
        return Ok(None);
    }
    let r = tx
        .query_one_cached(
            "SELECT allowed, held_since, hold_checked FROM clusters WHERE id=$1",
            &[&root],
        )
        .await?;
    let (allowed, held_since, checked): (bool, Option<i64>, Option<i64>) =
        (r.get(0), r.get(1), r.get(2));
    if allowed {
        return Ok(None);
    }
    if held_since.is_some() {
        return Ok(Some(root));
    }
    let since = now - rule.window_secs;
    let grown = growth(tx, root, since).await?;
    if grown < rule.messages || checked.is_some_and(|t| now - t < SENDERS_RECHECK) {
        return Ok(None);
    }
    // The newest members (a few times the rule's worth) are the growth's copies.
    let senders: i64 = tx
        .query_one_cached(
            "SELECT COUNT(DISTINCT lower(env_from)) FROM (
               SELECT m.env_from FROM fingerprints f JOIN messages m ON m.id=f.message
               WHERE f.cluster IN (SELECT id FROM clusters WHERE id=$1 OR parent=$1)
                 AND m.received>=$2
               ORDER BY f.message DESC LIMIT $3) newest",
            &[&root, &since, &((grown.max(rule.messages) * 2) as i64)],
        )
        .await?
        .get(0);
    let senders = senders.max(0) as u64;
    tx.execute_cached(
        "UPDATE clusters SET hold_checked=$2 WHERE id=$1",
        &[&root, &now],
    )
    .await?;
    if senders < rule.senders {
        return Ok(None);
    }
    tx.execute_cached(
        "UPDATE clusters SET held_since=$2 WHERE id=$1",
        &[&root, &now],
    )
    .await?;
    let subject: String = tx
        .query_one_cached("SELECT subject FROM messages WHERE id=$1", &[&message])
        .await?
        .get(0);
    holds.push(ClusterHold {
        cluster: root,
        growth: grown,
        senders,
        subject,
    });
    Ok(Some(root))
}

/// The SQL condition "message `m` is in cluster X as it is now" (X's root, or any
/// cluster the root absorbed), X being the statement's parameter `param` (`$3`).
pub(super) fn member_of(param: &str) -> String {
    format!(
        "m.id IN (SELECT f.message FROM fingerprints f
           WHERE f.cluster IN (SELECT k.id FROM clusters k,
             (SELECT COALESCE(parent, id) AS root FROM clusters WHERE id={param}) r
             WHERE k.id=r.root OR k.parent=r.root))"
    )
}

/// The root of cluster `id` (a merged cluster's id still names its members).
async fn root(tx: &Transaction<'_>, id: i64) -> Result<Option<i64>> {
    Ok(tx
        .query_opt_cached(
            "SELECT COALESCE(parent, id) FROM clusters WHERE id=$1",
            &[&id],
        )
        .await?
        .map(|r| r.get(0)))
}

/// The clusters the query asks for, best first: more than the page when a place filter
/// will drop some.
async fn candidates(tx: &Transaction<'_>, query: &ClusterQuery, now: i64) -> Result<Vec<i64>> {
    let page = query.limit.max(1);
    let look_at = if query.places.is_empty() {
        page
    } else {
        page * 4
    } as i64;
    let (min, since) = (query.min.max(1) as i64, query.since.unwrap_or(0));
    let rows = if query.by_growth {
        tx.query(
            "SELECT r.id FROM cluster_growth g JOIN clusters k ON k.id=g.cluster
               JOIN clusters r ON r.id=COALESCE(k.parent, k.id)
             WHERE g.minute>=$3 AND r.messages>=$1 AND r.last_seen>=$2
             GROUP BY r.id ORDER BY SUM(g.messages) DESC, r.id LIMIT $4",
            &[&min, &since, &(now - 3600).div_euclid(60), &look_at],
        )
        .await
    } else {
        tx.query(
            "SELECT id FROM clusters WHERE parent IS NULL AND messages>=$1 AND last_seen>=$2
             ORDER BY messages DESC, id LIMIT $3",
            &[&min, &since, &look_at],
        )
        .await
    };
    Ok(rows.map_err(pg)?.iter().map(|r| r.get(0)).collect())
}

/// Everything `clusters` says about one cluster; `samples` subjects and attachments
/// at most. One pass per table the figures come from, over the members' ids.
async fn summary(
    tx: &Transaction<'_>,
    id: i64,
    now: i64,
    samples: usize,
) -> Result<Option<ClusterSummary>> {
    let Some(root) = root(tx, id).await? else {
        return Ok(None);
    };
    let r = tx
        .query_one_cached(
            "SELECT messages, first_seen, last_seen, allowed, held_since FROM clusters
             WHERE id=$1",
            &[&root],
        )
        .await?;
    let row = ClusterRow {
        root,
        messages: r.get(0),
        first_seen: r.get(1),
        last_seen: r.get(2),
        allowed: r.get(3),
        held_since: r.get(4),
    };
    let members: Vec<i64> = tx
        .query(
            &format!("SELECT m.id FROM messages m WHERE {}", member_of("$1")),
            &[&root],
        )
        .await
        .map_err(pg)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut f = MemberFigures::default();
    for r in tx
        .query_cached(
            "SELECT id, env_from, subject, verdict FROM messages WHERE id=ANY($1)",
            &[&members],
        )
        .await?
    {
        f.message(r.get(0), r.get(1), r.get(2), r.get(3));
    }
    for r in tx
        .query_cached(
            "SELECT q.message, q.queue,
                    q.queue=$2 AND q.state='frozen' AND COALESCE(q.last_error LIKE $3, false),
                    (SELECT string_agg(r.address, ',') FROM queue_rcpts r WHERE r.item=q.id)
             FROM queue_items q WHERE q.message=ANY($1)",
            &[&members, &QUEUE_INBOUND, &format!("{HELD}%")],
        )
        .await?
    {
        let rcpts: Option<String> = r.get(3);
        f.queued(r.get(0), r.get(1), r.get(2), rcpts.as_deref());
    }
    for r in tx
        .query_cached(
            "SELECT e.message, b.\"user\" FROM mailbox_entries e JOIN mailboxes b ON b.id=e.mailbox
             WHERE e.message=ANY($1)",
            &[&members],
        )
        .await?
    {
        f.in_mailbox(r.get(0), r.get(1));
    }
    for r in tx
        .query_cached(
            "SELECT message, recipients FROM quarantine WHERE message=ANY($1)",
            &[&members],
        )
        .await?
    {
        let recipients: Option<String> = r.get(1);
        f.quarantined(r.get(0), recipients.as_deref());
    }
    f.attachments(
        tx.query_cached(
            "SELECT p.sha256, min(p.filename), COUNT(DISTINCT p.message) AS n
             FROM parts p WHERE p.message=ANY($1) AND p.filename IS NOT NULL
               AND (p.inside IS NOT NULL OR p.content_type NOT LIKE 'text/%')
             GROUP BY p.sha256 ORDER BY n DESC, p.sha256 LIMIT $2",
            &[&members, &(samples as i64)],
        )
        .await?
        .iter()
        .map(|r| ClusterAttachment {
            sha256: r.get(0),
            name: r.get(1),
            messages: r.get::<_, i64>(2).max(0) as u64,
        })
        .collect(),
    );
    let last_hour = growth(tx, root, now - 3600).await?;
    Ok(Some(f.summary(row, last_hour, samples)))
}
