//! Acting on messages: `quarantine` (and its list/show/restore/purge), `delete`,
//! `sweep`, `freeze`/`thaw`, `export`, `import`, `reindex`. Each counts first, says the
//! count, asks on a terminal (or needs `--yes`), then follows the server's job with a
//! progress bar.

use super::client::{segment, Api, Failure};
use super::find::{FilterFlags, PLACES};
use super::output::text;
use super::{output, queues, EXIT_USAGE};
use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

#[derive(Args)]
pub struct ActArgs {
    #[command(flatten)]
    pub filters: FilterFlags,
    /// Where to look (default: queues and mailboxes)
    #[arg(long = "in", value_name = "WHERE", value_parser = PLACES)]
    pub places: Option<String>,
    /// Show what would be touched; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation (needed without a terminal)
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct QuarantineArgs {
    #[command(subcommand)]
    command: Option<QuarantineCommand>,
    #[command(flatten)]
    act: ActArgs,
    /// Why, kept with each quarantined message
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
}

// Parsed once per process: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum QuarantineCommand {
    /// Quarantined messages, where they came from and why (filters apply)
    List {
        #[command(flatten)]
        filters: FilterFlags,
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// One quarantined message: origin, reason, recipients or flags, headers
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Put messages back exactly where they were taken from (`-` reads ids from stdin)
    Restore {
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
    /// Delete quarantined messages for good
    Purge {
        /// Quarantined longer ago than DUR (e.g. 30d)
        #[arg(long, value_name = "DUR")]
        older_than: String,
        #[arg(long)]
        dry_run: bool,
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

pub fn quarantine(api: &Api, args: QuarantineArgs) -> Result<()> {
    match args.command {
        None => act(
            api,
            "quarantine",
            &args.act,
            json!({ "reason": args.reason }),
        ),
        Some(QuarantineCommand::List {
            filters,
            limit,
            json,
        }) => {
            let r = api.send(
                "POST",
                "/api/find",
                json!({ "filters": filters.to_json()?, "in": "quarantine", "limit": limit }),
            )?;
            let messages: Vec<Value> = r["messages"].as_array().cloned().unwrap_or_default();
            if json {
                return output::json(&messages);
            }
            let rows: Vec<Vec<String>> = messages
                .iter()
                .map(|m| {
                    vec![
                        text(&m["id"]),
                        text(&m["origin"]),
                        text(&m["from"]),
                        text(&m["subject"]).chars().take(50).collect(),
                        m["size"].to_string(),
                        text(&m["reason"]).chars().take(40).collect(),
                    ]
                })
                .collect();
            output::table(
                &["ID", "FROM LOCATION", "SENDER", "SUBJECT", "SIZE", "REASON"],
                &rows,
            );
            Ok(())
        }
        Some(QuarantineCommand::Show { id, json }) => {
            let d: Value = api.get(&format!("/api/quarantine/{}", segment(&id)))?;
            if json {
                return output::json(&d);
            }
            let m = &d["message"];
            println!("id:           {}", text(&d["id"]));
            println!("taken from:   {}", text(&d["origin"]));
            println!(
                "quarantined:  {} by {}",
                output::time(d["quarantined"].as_i64()),
                text(&d["actor"])
            );
            println!("reason:       {}", text(&d["reason"]));
            println!("from:         {}", text(&m["from"]));
            println!("recipients:   {}", output::joined(&d["recipients"]));
            if d["flags"].as_array().is_some_and(|f| !f.is_empty()) {
                println!("flags:        {}", output::joined(&d["flags"]));
            }
            println!("subject:      {}", text(&m["subject"]));
            println!("size:         {}", m["size"]);
            println!("sha256:       {}", text(&m["sha256"]));
            println!("\n{}", text(&d["headers"]).trim_end());
            Ok(())
        }
        Some(QuarantineCommand::Restore { ids }) => {
            let flags = FilterFlags::with_ids(ids.join(","));
            let args = ActArgs {
                filters: flags,
                places: None,
                dry_run: false,
                yes: true,
            };
            act(api, "restore", &args, json!({}))
        }
        Some(QuarantineCommand::Purge {
            older_than,
            dry_run,
            yes,
        }) => {
            let args = ActArgs {
                filters: FilterFlags::older_than(older_than),
                places: None,
                dry_run,
                yes,
            };
            act(api, "purge", &args, json!({}))
        }
    }
}

/// Counts, confirms, starts the job and follows it. `extra` adds action fields
/// (`ndr`, `reason`).
pub fn act(api: &Api, action: &str, args: &ActArgs, extra: Value) -> Result<()> {
    let path = format!("/api/actions/{action}");
    let mut body = json!({ "filters": args.filters.to_json()?, "in": args.places });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            if !v.is_null() {
                b.insert(k.clone(), v.clone());
            }
        }
    }
    let mut preview = body.clone();
    preview["dry_run"] = json!(true);
    let counted = api.send("POST", &path, preview)?;
    let count = counted["count"].as_u64().unwrap_or(0);
    let verb = match action {
        "purge" => "delete from quarantine",
        other => other,
    };
    if args.dry_run {
        let messages: Vec<Value> = counted["messages"].as_array().cloned().unwrap_or_default();
        queues::print_messages(&messages, false)?;
        if counted["more"].as_bool() == Some(true) {
            eprintln!("(first {} shown)", messages.len());
        }
        println!("dry run: would {verb} {count} message(s); nothing changed");
        return Ok(());
    }
    if count == 0 {
        println!("nothing matched; nothing to {verb}");
        return Ok(());
    }
    eprintln!("{count} message(s) to {verb}");
    if !args.filters.by_ids() && !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(Failure::new(
                EXIT_USAGE,
                format!("refusing to {verb} {count} message(s) without confirmation: pass --yes (no terminal to ask on), or --dry-run to look first"),
            )
            .into());
        }
        eprint!("{verb} {count} message(s)? [y/N] ");
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("nothing changed");
            return Ok(());
        }
    }
    let started = api.send("POST", &path, body)?;
    let report = follow(api, &started)?;
    let verb = report["verb"].as_str().unwrap_or(action);
    print!("{verb} {} message(s)", report["done"]);
    let frozen = report["frozen"].as_u64().unwrap_or(0);
    let other = report["skipped"]
        .as_u64()
        .unwrap_or(0)
        .saturating_sub(frozen);
    if frozen > 0 {
        print!("; {frozen} frozen, left frozen (thaw them to let them go)");
    }
    if other > 0 {
        match action {
            "thaw" => print!(
                "; {other} were not frozen (`lazaret retry` makes mail waiting to retry go now)"
            ),
            _ => print!("; {other} already gone or not of a kind this action takes"),
        }
    }
    println!();
    if let Some(created) = report["created"]
        .as_array()
        .filter(|c| !c.is_empty() && action == "restore")
    {
        println!(
            "now at: {}",
            created
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    let failed = report["failed"].as_array().cloned().unwrap_or_default();
    for f in &failed {
        eprintln!("{}: {}", text(&f["id"]), text(&f["error"]));
    }
    if !failed.is_empty() {
        return Err(Failure::new(
            EXIT_USAGE,
            format!("{} message(s) could not be {verb}", failed.len()),
        )
        .into());
    }
    Ok(())
}

/// Polls a job until it ends, with a progress bar on a terminal; returns its report.
pub fn follow(api: &Api, started: &Value) -> Result<Value> {
    let id = started["job"].as_u64().unwrap_or(0);
    let total = started["total"].as_u64().unwrap_or(0);
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    let mut styled = false;
    let started_at = std::time::Instant::now();
    let (mut action, mut done) = (String::from("the job"), 0);
    loop {
        let job: Value = match api.get(&format!("/api/jobs/{id}")) {
            Ok(job) => job,
            Err(e) => {
                bar.abandon();
                // The node went away mid-job: on a shared store another node finishes
                // it, and the admin needs to know where to look rather than only
                // that this server is gone.
                return Err(Failure::new(
                    super::EXIT_UNREACHABLE,
                    format!(
                        "lost the server while following {action} (job {id}, {done} of {total} done \
                         at the last look): {e:#}\nOn the embedded store the job stopped there: run the \
                         command again once the server is back. On a shared store (PostgreSQL) \
                         another node takes the job over within about 20 s and finishes it: \
                         follow it with `lazaret audit` or the console of another node."
                    ),
                )
                .into());
            }
        };
        action = text(&job["action"]);
        done = job["done"].as_u64().unwrap_or(done);
        if !styled {
            output::bar_style(&bar, job["unit"] == "bytes");
            bar.set_message(text(&job["action"]));
            styled = true;
        }
        bar.set_length(job["total"].as_u64().unwrap_or(total));
        bar.set_position(job["done"].as_u64().unwrap_or(0));
        match job["state"].as_str() {
            Some("done") => {
                bar.finish_and_clear();
                return Ok(job["report"].clone());
            }
            Some("failed") => {
                bar.abandon();
                return Err(Failure::new(
                    super::EXIT_UNREACHABLE,
                    format!("{} failed: {}", text(&job["action"]), text(&job["error"])),
                )
                .into());
            }
            // Short jobs end within a few quick polls; long ones need no more than 10/s.
            // (An incremental backup of a 1M-message store takes about a second: a
            // 100 ms poll could add a tenth to it.)
            _ if started_at.elapsed().as_secs() < 2 => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            _ => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    }
}

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    filters: FilterFlags,
    #[arg(long = "in", value_name = "WHERE", value_parser = PLACES)]
    places: Option<String>,
    /// Write one mbox file (mboxrd)
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "eml_dir",
        required_unless_present = "eml_dir"
    )]
    mbox: Option<PathBuf>,
    /// Write one ID.eml file per message into DIR
    #[arg(long, value_name = "DIR")]
    eml_dir: Option<PathBuf>,
}

pub fn export(api: &Api, args: ExportArgs) -> Result<()> {
    let filters = args.filters.to_json()?;
    let r = api.send(
        "POST",
        "/api/find",
        json!({ "filters": filters, "in": args.places }),
    )?;
    let messages: Vec<Value> = r["messages"].as_array().cloned().unwrap_or_default();
    let usage = |e: std::io::Error, p: &std::path::Path| {
        Failure::new(EXIT_USAGE, format!("{}: {e}", p.display()))
    };
    let bar = indicatif::ProgressBar::new(messages.len() as u64);
    output::bar_style(&bar, false);
    bar.set_message("export");
    let mut mbox = match &args.mbox {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| usage(e, path))?,
        )),
        None => None,
    };
    if let Some(dir) = &args.eml_dir {
        std::fs::create_dir_all(dir).map_err(|e| usage(e, dir))?;
    }
    for m in &messages {
        let id = text(&m["id"]);
        let data = api.get_bytes(&format!("/api/messages/{}/raw", segment(&id)))?;
        if let Some(out) = mbox.as_mut() {
            let sender = text(&m["from"]);
            crate::mailfile::mbox::write_message(
                out,
                &sender,
                m["date"].as_i64().unwrap_or(0),
                &data,
            )
            .map_err(|e| {
                usage(
                    e,
                    args.mbox
                        .as_deref()
                        .unwrap_or_else(|| std::path::Path::new("mbox")),
                )
            })?;
        }
        if let Some(dir) = &args.eml_dir {
            let path = dir.join(format!("{id}.eml"));
            std::fs::write(&path, &data).map_err(|e| usage(e, &path))?;
        }
        bar.inc(1);
    }
    if let (Some(mut out), Some(path)) = (mbox, &args.mbox) {
        out.flush().map_err(|e| usage(e, path))?;
    }
    bar.finish_and_clear();
    let target = args
        .mbox
        .as_ref()
        .or(args.eml_dir.as_ref())
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    println!("exported {} message(s) to {target}", messages.len());
    Ok(())
}

#[derive(Args)]
pub struct ImportArgs {
    /// The user whose folders receive the mail
    #[arg(long, value_name = "ADDR")]
    user: String,
    /// Folder for mbox files and a Maildir's top level (default INBOX)
    #[arg(long, value_name = "NAME")]
    folder: Option<String>,
    /// mbox files and Maildir directories (read by the server: paths on its machine)
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

pub fn import(api: &Api, args: ImportArgs) -> Result<()> {
    let mut paths = Vec::new();
    for p in &args.paths {
        let abs = std::fs::canonicalize(p)
            .map_err(|e| Failure::new(EXIT_USAGE, format!("{}: {e}", p.display())))?;
        paths.push(abs);
    }
    let started = api.send(
        "POST",
        "/api/import",
        json!({ "user": args.user, "folder": args.folder, "paths": paths }),
    )?;
    let report = follow(api, &started)?;
    println!(
        "imported {} message(s) for {}",
        report["imported"],
        text(&report["user"])
    );
    Ok(())
}

pub fn reindex(api: &Api) -> Result<()> {
    let started = api.send("POST", "/api/reindex", json!({}))?;
    let report = follow(api, &started)?;
    let missing = report["missing_blobs"].as_array().map_or(0, Vec::len);
    println!(
        "reindexed {} message(s); {missing} without a blob file; {} orphan blob file(s) removed",
        report["indexed"], report["orphans_removed"]
    );
    Ok(())
}
