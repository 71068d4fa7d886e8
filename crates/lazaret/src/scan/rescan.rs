//! `lazaret rescan`: quarantine what today's signatures catch in mail already accepted
//! or delivered. Two steps:
//!
//! 1. Hash signatures are answered from the index of part hashes, without reading a
//!    message. Only digests new since the last complete rescan are looked up: every
//!    message was checked against the older ones then, or at ingest after it. The
//!    index has no SHA-1: for a new SHA-1 signature the messages with an object of its
//!    size are read (every message, for one of any size).
//! 2. Messages whose contents were not scanned with today's body patterns and rules
//!    (their content version differs) are read and scanned, in row order, each batch
//!    recorded in one transaction: an interrupted rescan resumes where it stopped.

use super::Scanner;
use lazaret_scan::signatures::{self, HashKind};
use lazaret_store::{
    PendingScan, RescanScope, ScanAction, ScanRecord, ScanStamp, Store, StoreError,
};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

/// Messages read and scanned per transaction.
const BATCH: usize = 256;

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Scope {
    pub queues: bool,
    pub mailboxes: bool,
    /// Only this outbreak cluster's messages.
    pub cluster: Option<i64>,
    /// Look up every hash and read every message, whatever was checked before (after
    /// clamd's own database changed, say).
    pub full: bool,
}

impl Scope {
    fn store(&self) -> RescanScope {
        RescanScope {
            queues: self.queues,
            mailboxes: self.mailboxes,
            cluster: self.cluster,
        }
    }
}

#[derive(Debug, Default, serde::Serialize)]
pub struct Outcome {
    pub hash_signatures_checked: u64,
    pub messages_scanned: u64,
    /// Messages found (each may have had several copies).
    pub detected: u64,
    /// Copies moved to quarantine.
    pub quarantined: u64,
    pub signatures: Vec<String>,
    pub version: String,
    pub users: Vec<String>,
}

/// Where the hash files a complete rescan checked are kept, to tell new digests.
fn state_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("rescan-state")
}

fn digests_in(dir: &Path) -> HashSet<(HashKind, Vec<u8>, Option<u64>)> {
    let (files, _) = signatures::load_dir(dir);
    files
        .into_iter()
        .flat_map(|f| f.hashes)
        .map(|h| (h.kind, h.digest, h.size))
        .collect()
}

/// Runs the rescan (blocking). `progress(done, total)` is called as messages are read.
pub fn run(
    store: &dyn Store,
    scanner: &Scanner,
    data_dir: &Path,
    scope: Scope,
    progress: &dyn Fn(u64, u64),
) -> Result<Outcome, StoreError> {
    let loaded = scanner.current();
    let engine = &loaded.engine;
    let mut outcome = Outcome {
        version: engine.version().to_string(),
        ..Outcome::default()
    };
    let mut found_names: BTreeMap<String, ()> = BTreeMap::new();

    // 1. Hash signatures from the index.
    let checked = if scope.full {
        HashSet::new()
    } else {
        digests_in(&state_dir(data_dir))
    };
    let mut names_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let (mut md5, mut sha256, mut sha1_sizes) = (Vec::new(), Vec::new(), Vec::new());
    let mut sha1_any_size = false;
    for (kind, digest, size, name) in engine.hash_signatures() {
        if checked.contains(&(kind, digest.clone(), size)) {
            continue;
        }
        let hex = hex::encode(&digest);
        names_of
            .entry(hex.clone())
            .or_default()
            .push(name.to_string());
        match kind {
            HashKind::Md5 => md5.push((hex, size)),
            HashKind::Sha256 => sha256.push((hex, size)),
            HashKind::Sha1 => match size {
                Some(s) => sha1_sizes.push(s),
                None => sha1_any_size = true,
            },
        }
    }
    outcome.hash_signatures_checked =
        (md5.len() + sha256.len() + sha1_sizes.len()) as u64 + u64::from(sha1_any_size);
    let hits = store.hash_matches(md5, sha256, scope.store())?;
    let mut by_message: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for (message, digest) in hits {
        let names = by_message.entry(message).or_default();
        for n in names_of.get(&digest).into_iter().flatten() {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
    }
    let records: Vec<ScanRecord> = by_message
        .into_iter()
        .map(|(message, names)| {
            for n in &names {
                found_names.insert(n.clone(), ());
            }
            quarantine_record(message, names, ScanStamp::default(), scope)
        })
        .collect();
    outcome.detected += records.len() as u64;
    // A batch per transaction, as for the messages read below: SQLite's cost of each
    // statement grows with the transaction it is in (50,000 hits in one took 78 s on a
    // 1M-message store, in batches 2.5 s), and the writer is every session's.
    for batch in records.chunks(BATCH) {
        let report = store.record_scans(batch.to_vec())?;
        outcome.quarantined += report.done;
        outcome.users.extend(report.users);
    }

    let total = store.message_count()?;
    // SHA-1 signatures of known sizes: the messages holding an object of that size.
    if !sha1_sizes.is_empty() && !sha1_any_size && !scope.full {
        sha1_sizes.sort_unstable();
        sha1_sizes.dedup();
        let sized = store.messages_of_size(sha1_sizes, scope.store())?;
        for batch in sized.chunks(BATCH) {
            scan_batch(store, scanner, batch, scope, &mut outcome, &mut found_names)?;
            progress(outcome.messages_scanned, total);
        }
    }

    // 2. Contents not scanned with today's body patterns and rules.
    let content = if scope.full || sha1_any_size {
        // No message carries this version: all are read.
        format!("full-{}", engine.version())
    } else {
        engine.content_version().to_string()
    };
    let mut after = 0i64;
    loop {
        let batch = store.rescan_candidates(after, BATCH, &content, scope.store())?;
        let Some(last) = batch.last() else { break };
        after = last.message;
        scan_batch(
            store,
            scanner,
            &batch,
            scope,
            &mut outcome,
            &mut found_names,
        )?;
        progress(outcome.messages_scanned, total);
    }

    // Only when the set did not change under the rescan, and the rescan looked at all
    // mail, are its hashes all checked.
    if scope.queues
        && scope.mailboxes
        && scope.cluster.is_none()
        && scanner.current().engine.version() == outcome.version
    {
        remember_hashes(&scanner.dir, &state_dir(data_dir));
    }
    outcome.signatures = found_names.into_keys().collect();
    outcome.users.sort();
    outcome.users.dedup();
    Ok(outcome)
}

/// Reads and scans a batch of messages on two threads, then records the verdicts (and
/// quarantines what was found) in one transaction.
fn scan_batch(
    store: &dyn Store,
    scanner: &Scanner,
    batch: &[PendingScan],
    scope: Scope,
    outcome: &mut Outcome,
    found_names: &mut BTreeMap<String, ()>,
) -> Result<(), StoreError> {
    let results: Vec<Result<Option<ScanRecord>, String>> = std::thread::scope(|s| {
        let half = batch.len().div_ceil(2);
        let workers: Vec<_> = batch
            .chunks(half.max(1))
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|p| {
                            let raw = match store.blob_read(&p.uid) {
                                Ok(raw) => raw,
                                // Gone since the query (deleted): nothing to scan.
                                Err(_) => return Ok(None),
                            };
                            let v = scanner.scan_message(&raw).map_err(|e| e.to_string())?;
                            Ok(Some(if v.names.is_empty() {
                                ScanRecord {
                                    message: p.message,
                                    stamp: v.stamp,
                                    action: ScanAction::Keep,
                                }
                            } else {
                                quarantine_record(p.message, v.names, v.stamp, scope)
                            }))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect()
    });
    let mut records = Vec::new();
    for r in results {
        match r {
            Ok(Some(rec)) => records.push(rec),
            Ok(None) => {}
            Err(e) => {
                return Err(StoreError::Invalid(format!(
                    "{e}; the rescan stopped, run it again to resume"
                )))
            }
        }
    }
    outcome.messages_scanned += records.len() as u64;
    for r in &records {
        if let ScanAction::Quarantine { .. } = r.action {
            outcome.detected += 1;
            for n in r.stamp.verdict.iter().flat_map(|v| v.split(',')) {
                found_names.insert(n.to_string(), ());
            }
        }
    }
    let report = store.record_scans(records)?;
    outcome.quarantined += report.done;
    outcome.users.extend(report.users);
    Ok(())
}

fn quarantine_record(
    message: i64,
    names: Vec<String>,
    stamp: ScanStamp,
    scope: Scope,
) -> ScanRecord {
    ScanRecord {
        message,
        stamp: ScanStamp {
            verdict: Some(names.join(",")),
            ..stamp
        },
        action: ScanAction::Quarantine {
            reason: format!("rescan: {}", names.join(", ")),
            queues: scope.queues,
            mailboxes: scope.mailboxes,
        },
    }
}

/// Copies today's hash files into the state directory (replacing what was there).
fn remember_hashes(signatures: &Path, state: &Path) {
    let _ = std::fs::remove_dir_all(state);
    if let Err(e) = std::fs::create_dir_all(state) {
        tracing::warn!("cannot keep rescan state in {}: {e}", state.display());
        return;
    }
    let Ok(entries) = std::fs::read_dir(signatures) else {
        return;
    };
    for e in entries.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        if signatures::FileKind::of(&name).is_some_and(|k| k.is_hash()) {
            let _ = std::fs::copy(e.path(), state.join(&name));
        }
    }
}
