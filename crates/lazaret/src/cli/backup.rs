//! `backup create|list|verify|restore|prune`. Create asks the running server (only it
//! can copy its store consistently while mail flows); the others read the backups
//! directory here, so verify and restore work with the server down.

use super::client::{Api, Failure};
use super::{actions, output, EXIT_USAGE};
use crate::backup::{catalog, create::Progress, manifest, restore};
use anyhow::Result;
use clap::Subcommand;
use lazaret_core::Config;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum BackupCommand {
    /// Back up the running server's store (online; incremental unless --full)
    Create {
        /// Backups directory (default: [backup] dir)
        #[arg(long, value_name = "DIR")]
        to: Option<PathBuf>,
        /// Copy everything, not only what the latest backup there lacks
        #[arg(long)]
        full: bool,
        #[arg(long)]
        json: bool,
    },
    /// The backups in the directory, oldest first
    List {
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Re-read every byte a backup needs against its checksums; exit 1 naming the
    /// first bad file
    Verify {
        id: String,
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Write a backup into a new, empty directory, with a config to serve it from
    Restore {
        id: String,
        /// The new data directory (must not exist or be empty)
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Remove all but the newest N backups (and those they still need)
    Prune {
        #[arg(long, value_name = "N")]
        keep: usize,
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

impl BackupCommand {
    /// Create goes through the server; the rest work on the directory.
    pub fn needs_server(&self) -> bool {
        matches!(self, BackupCommand::Create { .. })
    }
}

pub fn create(api: &Api, to: Option<PathBuf>, full: bool, as_json: bool) -> Result<()> {
    let to = to.map(|p| std::path::absolute(&p).unwrap_or(p));
    let started = api.send("POST", "/api/backups", json!({ "to": to, "full": full }))?;
    let report = actions::follow(api, &started)?;
    if as_json {
        return output::json(&report);
    }
    print_created(&report);
    Ok(())
}

pub fn print_created(report: &Value) {
    println!(
        "backup {} in {}: {} file(s), {} of store, {} written in {:.1}s ({})",
        report["id"].as_str().unwrap_or("?"),
        report["dir"].as_str().unwrap_or("?"),
        report["files"],
        bytes(report["total_bytes"].as_u64().unwrap_or(0)),
        bytes(report["stored_bytes"].as_u64().unwrap_or(0)),
        report["seconds"].as_f64().unwrap_or(0.0),
        match report["parent"].as_str() {
            Some(p) => format!("incremental, on top of {p}"),
            None => "full".into(),
        }
    );
}

pub fn local(config: &Config, command: BackupCommand) -> Result<()> {
    let dir = |d: Option<PathBuf>| d.unwrap_or_else(|| config.backup_dir());
    match command {
        BackupCommand::Create { .. } => unreachable!("goes through the server"),
        BackupCommand::List { dir: d, json } => list(&dir(d), json),
        BackupCommand::Verify { id, dir: d } => {
            let bar = Bar::new("verify");
            let m = restore::verify(&dir(d), &id, &bar)
                .map_err(|e| Failure::new(1, format!("{e:#}")))?;
            bar.0.finish_and_clear();
            println!(
                "backup {id} is intact: {} file(s), {} checked",
                m.files.len(),
                bytes(m.total_bytes)
            );
            Ok(())
        }
        BackupCommand::Restore { id, to, dir: d } => {
            let bar = Bar::new("restore");
            let r = restore::restore(&dir(d), &id, &to, &bar)?;
            bar.0.finish_and_clear();
            println!(
                "restored backup {id} into {}: {} file(s), {}",
                to.display(),
                r.manifest.files.len(),
                bytes(r.manifest.total_bytes)
            );
            if let Some(config) = &r.config {
                println!(
                    "serve it with: lazaret serve -c {} (it listens where the backed-up server did: change the ports first if that one still runs)",
                    config.display()
                );
            }
            for name in &r.external {
                println!("note: {name} lived outside the data directory; it is restored under the new directory, and the config still names the old place");
            }
            Ok(())
        }
        BackupCommand::Prune { keep, dir: d } => {
            if keep == 0 {
                return Err(Failure::new(
                    EXIT_USAGE,
                    "--keep must be at least 1 (prune never removes every backup)",
                )
                .into());
            }
            let p = catalog::prune(&dir(d), keep)?;
            println!(
                "removed {} backup(s){}{}",
                p.removed.len(),
                if p.removed.is_empty() { "" } else { ": " },
                p.removed.join(" ")
            );
            if !p.kept_for_chain.is_empty() {
                println!(
                    "kept {} older backup(s) that kept ones build on: {}",
                    p.kept_for_chain.len(),
                    p.kept_for_chain.join(" ")
                );
            }
            Ok(())
        }
    }
}

fn list(dir: &Path, as_json: bool) -> Result<()> {
    let all = manifest::list(dir)?;
    let rows: Vec<Value> = all.iter().map(crate::admin::backup::summary).collect();
    if as_json {
        return output::json(&rows);
    }
    if all.is_empty() {
        println!("no backups in {}", dir.display());
        return Ok(());
    }
    let table: Vec<Vec<String>> = all
        .iter()
        .map(|m| {
            vec![
                m.id.clone(),
                if m.full { "full" } else { "incremental" }.into(),
                output::time(Some(m.created)),
                m.files.len().to_string(),
                bytes(m.total_bytes),
                bytes(m.stored_bytes),
                match &m.parent {
                    None => "-".into(),
                    // Its own files are still whole: a backup needs only what its
                    // manifest names, and prune keeps those.
                    Some(p) if !all.iter().any(|o| &o.id == p) => format!("{p} (pruned)"),
                    Some(p) => p.clone(),
                },
            ]
        })
        .collect();
    output::table(
        &[
            "ID",
            "KIND",
            "CREATED",
            "FILES",
            "STORE",
            "WRITTEN",
            "ON TOP OF",
        ],
        &table,
    );
    Ok(())
}

fn bytes(n: u64) -> String {
    lazaret_core::Size(n).to_string()
}

/// A progress bar on the terminal for work done here.
struct Bar(indicatif::ProgressBar);

impl Bar {
    fn new(what: &str) -> Bar {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(0),
            indicatif::ProgressDrawTarget::stderr(),
        );
        output::bar_style(&bar, true);
        bar.set_message(what.to_string());
        Bar(bar)
    }
}

impl Progress for Bar {
    fn total(&self, bytes: u64) {
        self.0.set_length(bytes);
    }
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
}
