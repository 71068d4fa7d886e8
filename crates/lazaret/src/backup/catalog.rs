//! `backup list` and `backup prune`: what is in the backups directory, and removing
//! old backups without breaking a chain a kept one needs.

use super::manifest::{self, Manifest};
use anyhow::{Context, Result};
use std::collections::BTreeSet;
use std::path::Path;

pub struct Pruned {
    pub removed: Vec<String>,
    /// Older than the kept ones, but holding files a kept backup needs.
    pub kept_for_chain: Vec<String>,
}

/// Keeps the newest `keep` backups and every backup they need; removes the rest, and
/// partial backups left by an interrupted run (not one being written now).
pub fn prune(dir: &Path, keep: usize) -> Result<Pruned> {
    let all = manifest::list(dir)?;
    let kept: Vec<&Manifest> = all.iter().rev().take(keep).collect();
    let needed: BTreeSet<&str> = kept.iter().flat_map(|m| m.needs()).collect();
    let kept_ids: BTreeSet<&str> = kept.iter().map(|m| m.id.as_str()).collect();
    let mut pruned = Pruned {
        removed: Vec::new(),
        kept_for_chain: Vec::new(),
    };
    for m in &all {
        if kept_ids.contains(m.id.as_str()) {
            continue;
        }
        if needed.contains(m.id.as_str()) {
            pruned.kept_for_chain.push(m.id.clone());
            continue;
        }
        remove(dir, &m.id)?;
        pruned.removed.push(m.id.clone());
    }
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.')
            && name.ends_with(manifest::PARTIAL_SUFFIX)
            && !manifest::partial_in_progress(&entry.path())
        {
            remove(dir, &name)?;
        }
    }
    Ok(pruned)
}

fn remove(dir: &Path, id: &str) -> Result<()> {
    let path = dir.join(id);
    std::fs::remove_dir_all(&path).with_context(|| format!("cannot remove {}", path.display()))
}
