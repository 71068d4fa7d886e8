//! Scan: the step between accepting a message and routing it. Holds the loaded
//! signature set (swapped whole on a change, never paused), merges the built-in engine's
//! verdict with clamd's, and runs the after-queue scanner, `rescan`, the filing of
//! mail into outbreak clusters and the reports of clusters held.

pub mod after_queue;
pub mod clusterer;
pub mod hold;
pub mod rescan;
pub mod signature_set;

use lazaret_core::config::{ClamdFailure, Config, OnIngest, OnLimits};
use lazaret_scan::clamd::{Clamd, ClamdError};
use lazaret_scan::signatures::SignatureError;
use lazaret_scan::{Engine, Limits, ScanLimits};
use lazaret_store::ScanStamp;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

/// A signature set as loaded, with what was refused.
pub struct Loaded {
    pub engine: Engine,
    /// Unix seconds.
    pub loaded_at: i64,
    /// Files in the directory that were not loaded, with why.
    pub rejected: Vec<SignatureError>,
    /// What the directory looked like when read (names, sizes, mtimes): a change
    /// made by hand is noticed and loaded.
    fingerprint: Vec<(String, u64, i64)>,
}

/// What a message scan came to.
pub struct Verdict {
    /// Signature names found (clamd's included), sorted; empty when clean.
    pub names: Vec<String>,
    pub stamp: ScanStamp,
}

pub struct Scanner {
    pub dir: PathBuf,
    pub on_ingest: OnIngest,
    pub clamd: Option<Clamd>,
    clamd_failure: ClamdFailure,
    limits: ScanLimits,
    current: RwLock<Arc<Loaded>>,
    /// Signature changes one at a time.
    pub changes: tokio::sync::Mutex<()>,
    /// The last clamd failure (None while it answers), for `status`.
    pub clamd_error: Mutex<Option<String>>,
}

impl Scanner {
    pub fn new(config: &Config) -> anyhow::Result<Scanner> {
        let scan = &config.scan;
        let dir = signature_dir(config);
        let clamd = clamd_of(config).map_err(|e| anyhow::anyhow!("{e}"))?;
        let limits = limits_of(config);
        let loaded = load(&dir, limits);
        Ok(Scanner {
            dir,
            on_ingest: scan.on_ingest,
            clamd,
            clamd_failure: scan.clamd_failure,
            limits,
            current: RwLock::new(Arc::new(loaded)),
            changes: tokio::sync::Mutex::new(()),
            clamd_error: Mutex::new(None),
        })
    }

    /// The signature set in use now.
    pub fn current(&self) -> Arc<Loaded> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads the directory again and swaps the new set in; scans running on the old
    /// one finish with it. Blocking (parses and builds the matcher).
    pub fn reload(&self) -> Arc<Loaded> {
        let loaded = Arc::new(load(&self.dir, self.limits));
        for e in &loaded.rejected {
            tracing::error!("signature file refused: {e}");
        }
        tracing::info!(
            version = loaded.engine.version(),
            signatures = loaded.engine.signature_count(),
            "signatures loaded"
        );
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = loaded.clone();
        loaded
    }

    /// Reloads when the directory changed behind our back (files copied in by hand).
    pub fn reload_if_changed(&self) -> bool {
        if fingerprint(&self.dir) != self.current().fingerprint {
            self.reload();
            return true;
        }
        false
    }

    /// Scans a message with the built-in engine and clamd. Err when clamd could not
    /// answer and the configuration says to wait for it. Blocking.
    pub fn scan_message(&self, raw: &[u8]) -> Result<Verdict, ClamdError> {
        let loaded = self.current();
        let report = loaded.engine.scan_message(raw);
        for note in &report.notes {
            tracing::info!("scan limit passed by configuration: {note}");
        }
        let mut names = report.names();
        if let Some(clamd) = &self.clamd {
            match clamd.scan(raw) {
                Ok(found) => {
                    self.set_clamd_error(None);
                    names.extend(found);
                }
                Err(e) => {
                    self.set_clamd_error(Some(e.to_string()));
                    if self.clamd_failure == ClamdFailure::Defer {
                        return Err(e);
                    }
                    tracing::warn!(
                        "{e}; scanned with the built-in engine only (clamd_failure = \"accept\")"
                    );
                }
            }
            names.sort();
            names.dedup();
        }
        Ok(Verdict {
            stamp: ScanStamp {
                version: loaded.engine.version().to_string(),
                content_version: loaded.engine.content_version().to_string(),
                verdict: (!names.is_empty()).then(|| names.join(",")),
            },
            names,
        })
    }

    fn set_clamd_error(&self, error: Option<String>) {
        let mut slot = self.clamd_error.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() != error.is_some() {
            match &error {
                Some(e) => tracing::error!("clamd unavailable: {e}"),
                None => tracing::info!("clamd answers again"),
            }
        }
        *slot = error;
    }
}

/// `[scan] signatures`, relative paths inside `data_dir`.
pub fn signature_dir(config: &Config) -> PathBuf {
    let dir = &config.scan.signatures;
    if dir.is_absolute() {
        dir.clone()
    } else {
        config.data_dir.join(dir)
    }
}

/// How far the walk goes, from `[scan]`.
pub fn limits_of(config: &Config) -> ScanLimits {
    let scan = &config.scan;
    ScanLimits {
        archive: Limits {
            max_depth: scan.max_archive_depth,
            max_files: scan.max_archive_files,
            max_bytes: scan.max_expanded_size.0,
            max_ratio: scan.max_expansion_ratio,
            files_only: false,
        },
        max_total: scan.max_expanded_size.0.saturating_mul(4),
        flag: scan.on_limits == OnLimits::Flag,
    }
}

/// The clamd client `[scan] clamd` names, if any.
pub fn clamd_of(config: &Config) -> Result<Option<Clamd>, String> {
    config
        .scan
        .clamd
        .as_deref()
        .map(|a| {
            a.parse()
                .map(Clamd::new)
                .map_err(|e| format!("scan.clamd: {e}"))
        })
        .transpose()
}

fn load(dir: &std::path::Path, limits: ScanLimits) -> Loaded {
    let fingerprint = fingerprint(dir);
    let (files, rejected) = lazaret_scan::signatures::load_dir(dir);
    Loaded {
        engine: Engine::new(files, limits),
        loaded_at: crate::deliver::now(),
        rejected,
        fingerprint,
    }
}

fn fingerprint(dir: &std::path::Path) -> Vec<(String, u64, i64)> {
    let mut out: Vec<(String, u64, i64)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    lazaret_scan::signatures::FileKind::of(&name)?;
                    let meta = e.metadata().ok()?;
                    let mtime = meta
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_nanos() as i64);
                    Some((name, meta.len(), mtime))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}
