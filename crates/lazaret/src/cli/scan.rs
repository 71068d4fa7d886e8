//! `signatures list|add|update|remove`, `rescan` (through the server) and `scan PATH…`
//! (here, in this process, with the server's signature directory: it works with the
//! server down, and exits like clamscan: 0 clean, 1 found, 2 error).

use super::actions::follow;
use super::client::{segment, Api, Failure};
use super::output::text;
use super::{output, EXIT_USAGE};
use anyhow::Result;
use clap::{Args, Subcommand};
use lazaret_core::{Config, Size};
use lazaret_scan::clamd::Clamd;
use lazaret_scan::signatures::{self, FileKind, SignatureFile};
use lazaret_scan::Engine;
use serde_json::{json, Value};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

#[derive(Subcommand)]
pub enum SignaturesCommand {
    /// The signature set: version, files, refused files, scanning mode, clamd
    List {
        #[arg(long)]
        json: bool,
    },
    /// Add (or replace) signature files: .hdb, .hsb, .ndb or .rules
    Add {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Install every signature file of a directory (a vendor's release, say)
    Update {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Remove a signature file by its name, or a signature by its name
    Remove {
        #[arg(value_name = "NAME")]
        name: String,
    },
}

pub fn signatures_command(api: &Api, command: SignaturesCommand) -> Result<()> {
    match command {
        SignaturesCommand::List { json } => {
            let v: Value = api.get("/api/signatures")?;
            if json {
                return output::json(&v);
            }
            let rows: Vec<Vec<String>> = v["files"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| {
                    vec![
                        text(&f["name"]),
                        text(&f["kind"]),
                        f["signatures"].to_string(),
                    ]
                })
                .collect();
            output::table(&["FILE", "KIND", "SIGNATURES"], &rows);
            println!("built-in: {}", lazaret_scan::engine::EICAR_NAME);
            println!();
            super::overview::print_scanning(&v, 0);
            Ok(())
        }
        SignaturesCommand::Add { files } => {
            let uploads = files
                .iter()
                .map(|p| upload(p))
                .collect::<Result<Vec<_>>>()?;
            install(api, uploads, "add")
        }
        SignaturesCommand::Update { dir } => {
            let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(|e| Failure::new(EXIT_USAGE, format!("{}: {e}", dir.display())))?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.is_file()
                        && p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| !n.starts_with('.') && FileKind::of(n).is_some())
                })
                .collect();
            names.sort();
            if names.is_empty() {
                return Err(Failure::new(
                    EXIT_USAGE,
                    format!(
                        "{}: no signature files (.hdb, .hsb, .ndb, .rules) in it",
                        dir.display()
                    ),
                )
                .into());
            }
            let uploads = names
                .iter()
                .map(|p| upload(p))
                .collect::<Result<Vec<_>>>()?;
            install(api, uploads, "update")
        }
        SignaturesCommand::Remove { name } => {
            let r = api.send(
                "DELETE",
                &format!("/api/signatures/{}", segment(&name)),
                json!({}),
            )?;
            let files: Vec<String> = r["files"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            if files.is_empty() {
                println!("removed {} signature(s) named {name}", r["signatures"]);
            } else {
                println!("removed {}", files.join(", "));
            }
            println!("signature set version {}", text(&r["version"]));
            Ok(())
        }
    }
}

fn upload(path: &Path) -> Result<Value> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Failure::new(EXIT_USAGE, format!("{}: not a file name", path.display())))?;
    let bytes = std::fs::read(path)
        .map_err(|e| Failure::new(EXIT_USAGE, format!("{}: {e}", path.display())))?;
    // Checked here too, so a typo is reported before anything is sent.
    signatures::parse_file(name, &bytes).map_err(|e| Failure::new(EXIT_USAGE, e.to_string()))?;
    let content = String::from_utf8(bytes)
        .map_err(|_| Failure::new(EXIT_USAGE, format!("{}: not text", path.display())))?;
    Ok(json!({ "name": name, "content": content }))
}

fn install(api: &Api, files: Vec<Value>, action: &str) -> Result<()> {
    let r = api.send(
        "POST",
        "/api/signatures",
        json!({ "files": files, "action": action }),
    )?;
    for (key, label) in [
        ("added", "added"),
        ("replaced", "replaced"),
        ("unchanged", "unchanged"),
    ] {
        let names: Vec<String> = r[key].as_array().into_iter().flatten().map(text).collect();
        if !names.is_empty() {
            println!("{label}: {}", names.join(", "));
        }
    }
    println!(
        "signature set version {}, {} signature(s); run `lazaret rescan` to check mail already accepted",
        text(&r["version"]),
        r["signatures"]
    );
    Ok(())
}

/// What `lazaret rescan` looks at.
pub struct RescanArgs {
    pub queues: bool,
    pub mailboxes: bool,
    pub full: bool,
    pub cluster: Option<i64>,
}

pub fn rescan(api: &Api, args: RescanArgs, json_out: bool) -> Result<()> {
    let started = api.send(
        "POST",
        "/api/rescan",
        json!({
            "queues": args.queues,
            "mailboxes": args.mailboxes,
            "full": args.full,
            "cluster": args.cluster,
        }),
    )?;
    let report = follow(api, &started)?;
    if json_out {
        return output::json(&report);
    }
    let names: Vec<String> = report["signatures"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    println!(
        "rescan with signature set {}: {} hash signature(s) looked up in the index, {} message(s) read",
        text(&report["version"]),
        report["hash_signatures_checked"],
        report["messages_scanned"]
    );
    println!(
        "{} message(s) detected, {} cop(ies) moved to quarantine{}",
        report["detected"],
        report["quarantined"],
        if names.is_empty() {
            String::new()
        } else {
            format!(": {}", names.join(", "))
        }
    );
    Ok(())
}

#[derive(Args)]
pub struct ScanArgs {
    /// Files and directories (scanned recursively, archives and mail included)
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Signature file or directory to use instead of the server's (repeatable)
    #[arg(short = 'd', long = "database", value_name = "PATH")]
    databases: Vec<PathBuf>,
    /// Print only infected files
    #[arg(short, long)]
    infected: bool,
    /// No summary at the end
    #[arg(long)]
    no_summary: bool,
    #[arg(long)]
    json: bool,
    /// Files scanned at once (default: one per core); 1 leaves the other cores to a live
    /// server
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
}

/// Files bigger than this are not read (reported as skipped), as clamscan's MaxFileSize.
const MAX_FILE: u64 = 100 << 20;

struct FileResult {
    path: String,
    names: Vec<String>,
    objects: Vec<(String, String)>,
    error: Option<String>,
    skipped: bool,
}

/// Returns the exit code: 0 clean, 1 found, 2 error.
pub fn scan(config: &Config, args: ScanArgs) -> Result<i32> {
    let started = std::time::Instant::now();
    let files = load_signatures(config, &args.databases)?;
    let engine = Engine::new(files, crate::scan::limits_of(config));
    // Signatures given with -d are a check of those files alone: no clamd.
    let clamd = if args.databases.is_empty() {
        crate::scan::clamd_of(config).map_err(|e| Failure::new(EXIT_USAGE, e))?
    } else {
        None
    };

    let mut list = Vec::new();
    let mut errors = Vec::new();
    for p in &args.paths {
        collect(p, true, &mut list, &mut errors);
    }
    let total_bytes: u64 = list.iter().map(|(_, size)| size).sum();
    let bar = if std::io::stderr().is_terminal() && !args.json {
        let bar = indicatif::ProgressBar::new(total_bytes);
        super::output::bar_style(&bar, true);
        bar.set_message("scanning");
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };

    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<FileResult>> = Mutex::new(
        errors
            .into_iter()
            .map(|(path, error)| FileResult {
                path,
                names: Vec::new(),
                objects: Vec::new(),
                error: Some(error),
                skipped: false,
            })
            .collect(),
    );
    let print = |r: &FileResult| {
        if args.json {
            return;
        }
        bar.suspend(|| {
            if let Some(e) = &r.error {
                eprintln!("{}: {e} ERROR", r.path);
            } else if r.names.is_empty() {
                if !args.infected {
                    println!(
                        "{}: {}",
                        r.path,
                        if r.skipped {
                            "Skipped (larger than 100 MB)"
                        } else {
                            "OK"
                        }
                    );
                }
            } else {
                for n in &r.names {
                    println!("{}: {n} FOUND", r.path);
                }
            }
        });
    };
    for r in results.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        print(r);
    }
    let workers = args.threads.map_or_else(
        || std::thread::available_parallelism().map_or(2, |n| n.get()),
        usize::from,
    );
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((path, size)) = list.get(i) else {
                    break;
                };
                let r = scan_one(&engine, clamd.as_ref(), path, *size);
                bar.inc(*size);
                print(&r);
                results.lock().unwrap_or_else(|e| e.into_inner()).push(r);
            });
        }
    });
    bar.finish_and_clear();
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by(|a, b| a.path.cmp(&b.path));
    let infected = results.iter().filter(|r| !r.names.is_empty()).count();
    let failed = results.iter().filter(|r| r.error.is_some()).count();
    if args.json {
        let out: Vec<Value> = results
            .iter()
            .map(|r| {
                json!({
                    "path": r.path,
                    "infected": !r.names.is_empty(),
                    "signatures": r.names,
                    "found_in": r.objects.iter().map(|(n, o)| json!({"signature": n, "object": o})).collect::<Vec<_>>(),
                    "skipped": r.skipped,
                    "error": r.error,
                })
            })
            .collect();
        output::json(&out)?;
    } else if !args.no_summary {
        println!("\n----------- SCAN SUMMARY -----------");
        println!("Known viruses: {}", engine.signature_count());
        println!("Engine version: lazaret {}", env!("CARGO_PKG_VERSION"));
        println!("Signature set: {}", engine.version());
        println!("Scanned files: {}", results.len() - failed);
        println!("Infected files: {infected}");
        if failed > 0 {
            println!("Total errors: {failed}");
        }
        println!("Data scanned: {}", Size(total_bytes));
        println!("Time: {:.3} sec", started.elapsed().as_secs_f64());
    }
    Ok(if failed > 0 {
        2
    } else if infected > 0 {
        1
    } else {
        0
    })
}

fn scan_one(engine: &Engine, clamd: Option<&Clamd>, path: &Path, size: u64) -> FileResult {
    let mut r = FileResult {
        path: path.display().to_string(),
        names: Vec::new(),
        objects: Vec::new(),
        error: None,
        skipped: false,
    };
    if size > MAX_FILE {
        r.skipped = true;
        return r;
    }
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) => {
            r.error = Some(e.to_string());
            return r;
        }
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let report = engine.scan_file(name, &data);
    r.names = report.names();
    r.objects = report
        .detections
        .iter()
        .map(|d| (d.name.clone(), d.object.clone()))
        .collect();
    if let Some(c) = clamd {
        match c.scan(&data) {
            Ok(Some(found)) if !r.names.contains(&found) => {
                r.objects.push((found.clone(), "clamd".into()));
                r.names.push(found);
                r.names.sort();
            }
            Ok(_) => {}
            Err(e) => r.error = Some(e.to_string()),
        }
    }
    r
}

/// Files under `path` with their sizes; symlinks are followed only when named.
fn collect(
    path: &Path,
    named: bool,
    out: &mut Vec<(PathBuf, u64)>,
    errors: &mut Vec<(String, String)>,
) {
    let meta = if named {
        std::fs::metadata(path)
    } else {
        std::fs::symlink_metadata(path)
    };
    let meta = match meta {
        Ok(m) => m,
        Err(e) => {
            errors.push((path.display().to_string(), e.to_string()));
            return;
        }
    };
    if meta.is_file() {
        out.push((path.to_path_buf(), meta.len()));
    } else if meta.is_dir() {
        let entries = match std::fs::read_dir(path) {
            Ok(e) => e,
            Err(e) => {
                errors.push((path.display().to_string(), e.to_string()));
                return;
            }
        };
        let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        children.sort();
        for c in children {
            collect(&c, false, out, errors);
        }
    }
}

/// The server's signature directory, or the files and directories given with -d.
fn load_signatures(config: &Config, databases: &[PathBuf]) -> Result<Vec<SignatureFile>> {
    let sources: Vec<PathBuf> = if databases.is_empty() {
        vec![crate::scan::signature_dir(config)]
    } else {
        databases.to_vec()
    };
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for src in sources {
        if src.is_dir() {
            let (f, e) = signatures::load_dir(&src);
            files.extend(f);
            errors.extend(e.into_iter().map(|e| e.to_string()));
        } else if databases.is_empty() {
            // The server's directory not made yet: only the built-in signatures.
        } else {
            let name = src.file_name().and_then(|n| n.to_str()).unwrap_or("");
            match std::fs::read(&src) {
                Ok(bytes) => match signatures::parse_file(name, &bytes) {
                    Ok(f) => files.push(f),
                    Err(e) => errors.push(e.to_string()),
                },
                Err(e) => errors.push(format!("{}: {e}", src.display())),
            }
        }
    }
    if !errors.is_empty() {
        return Err(Failure::new(
            EXIT_USAGE,
            format!("signatures refused:\n  {}", errors.join("\n  ")),
        )
        .into());
    }
    Ok(files)
}
