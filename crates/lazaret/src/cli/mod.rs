//! Command-line definitions and dispatch. `serve` runs the server; everything else is
//! an admin command spoken over the admin API.

mod accounts;
mod actions;
mod backup;
mod check;
pub(crate) mod client;
mod clusters;
mod dkim;
mod find;
mod outbound;
pub(crate) mod output;
mod overview;
mod queues;
mod scan;
mod tracking;

use anyhow::Result;
use clap::{Parser, Subcommand};
use lazaret_core::Config;
use std::path::{Path, PathBuf};

pub use client::Failure;

/// Exit codes of PRODUCT.md.
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_UNREACHABLE: i32 = 3;

#[derive(Parser)]
#[command(
    name = "lazaret",
    version,
    about = "A mail server built to survive a virus outbreak"
)]
pub struct Args {
    /// Config file (default: ./lazaret.toml if it exists, else /etc/lazaret/lazaret.toml
    /// if it exists, else built-in defaults)
    #[arg(short, long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the mail server
    Serve,
    /// Listeners, user access, queues and store at a glance
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Stop or start the inbound SMTP listener
    Smtp {
        #[arg(value_parser = ["stop", "start"])]
        action: String,
    },
    /// Keep users out (IMAP, POP3, submission) while the store stays up, or let them back
    Access {
        #[command(subcommand)]
        command: overview::AccessCommand,
    },
    /// Outbreak mode in one step: backup, SMTP stop, outbound disable, user access
    /// disable, every queue frozen
    Lockdown {
        /// Shown to users whose logins are refused
        #[arg(long)]
        message: Option<String>,
        /// Skip the backup (not advised: it is the copy to go back to)
        #[arg(long)]
        no_backup: bool,
        /// Backups directory (default: [backup] dir)
        #[arg(long, value_name = "DIR")]
        backup_to: Option<PathBuf>,
    },
    /// Out of outbreak mode once new signatures are in: rescan, thaw, retry now,
    /// outbound enable, SMTP start, user access enable
    Recover {
        /// Go ahead although the signatures did not change (needs --reason)
        #[arg(long, requires = "reason")]
        force: bool,
        /// Why, for the audit log
        #[arg(long)]
        reason: Option<String>,
    },
    /// Back up the store while the server runs; list, verify, restore, prune backups
    Backup {
        #[command(subcommand)]
        command: backup::BackupCommand,
    },
    /// List, freeze, thaw and retry queues
    Queue {
        #[command(subcommand)]
        command: queues::QueueCommand,
    },
    /// Outbound routes and when they may send
    Connector {
        #[command(subcommand)]
        command: outbound::ConnectorCommand,
    },
    /// Hold every remote queue at once (disable) or let them send again (enable)
    Outbound {
        #[arg(value_parser = ["disable", "enable"])]
        action: String,
    },
    /// Find messages in queues, mailboxes and quarantine by anything
    Find(find::FindArgs),
    /// DKIM keys: mail from a domain with a key is signed as users submit it
    Dkim {
        #[command(subcommand)]
        command: dkim::DkimCommand,
    },
    /// A message's whole path: accepted, scanned, queued, delivered, deferred, bounced,
    /// quarantined, read, downloaded, deleted — and where its copies are now
    Trace(tracking::TraceArgs),
    /// After an outbreak: who received each copy, who read, downloaded or forwarded
    /// it, and where it is now (--cluster ID or find's filters)
    Exposure(tracking::ExposureArgs),
    /// Move messages to quarantine (restorable); or list|show|restore|purge it
    Quarantine(actions::QuarantineArgs),
    /// Outbreak clusters: groups of near-identical mail, biggest first (`show ID`,
    /// `allow ID` for known mail such as newsletters)
    Clusters(clusters::ClustersArgs),
    /// Delete messages for good, saying whether senders get a bounce
    Delete {
        /// No bounce to the senders (the usual choice for worm copies)
        #[arg(long, conflicts_with = "ndr", required_unless_present = "ndr")]
        no_ndr: bool,
        /// Send the senders of queued mail a DSN (never for scanner-flagged mail)
        #[arg(long)]
        ndr: bool,
        #[command(flatten)]
        act: actions::ActArgs,
    },
    /// Clean every mailbox and folder of every user: quarantine (default) or delete
    Sweep {
        #[arg(long, default_value = "quarantine", value_parser = ["quarantine", "delete"])]
        action: String,
        #[command(flatten)]
        filters: find::FilterFlags,
        #[arg(long)]
        dry_run: bool,
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Hold queued messages (by filters or --ids)
    Freeze(actions::ActArgs),
    /// Release held queued messages; they are due at once
    Thaw(actions::ActArgs),
    /// Make queued messages (by filters or --ids) due now; frozen ones stay frozen
    Retry(actions::ActArgs),
    /// Write messages to an mbox file or a directory of .eml files
    Export(actions::ExportArgs),
    /// Import mbox files and Maildirs into a user's folders
    Import(actions::ImportArgs),
    /// Rebuild the search index from the message files
    Reindex,
    /// Verify the store's invariants while the server runs (exit 0 sound, 1 faults)
    Check {
        /// Read every message and compare its SHA-256 (default: record headers only)
        #[arg(long)]
        deep: bool,
        /// Repair what can be repaired (audited), then check again
        #[arg(long)]
        repair: bool,
        #[arg(long)]
        json: bool,
    },
    /// The signature set: list, add, update, remove (loaded without a restart)
    Signatures {
        #[command(subcommand)]
        command: scan::SignaturesCommand,
    },
    /// Scan files and directories here (archives and mail included); exit 0 clean,
    /// 1 found, 2 error, as clamscan
    Scan(scan::ScanArgs),
    /// Quarantine what today's signatures catch in mail already accepted or delivered
    Rescan {
        /// Only queued mail (default: queues and mailboxes)
        #[arg(long)]
        queues: bool,
        /// Only mail in mailboxes (default: queues and mailboxes)
        #[arg(long)]
        mailboxes: bool,
        /// Read every message and look up every hash again (after clamd's own
        /// database changed, say)
        #[arg(long)]
        full: bool,
        /// Only this outbreak cluster's messages (from `lazaret clusters`)
        #[arg(long, value_name = "ID")]
        cluster: Option<i64>,
        #[arg(long)]
        json: bool,
    },
    /// Local domains
    Domain {
        #[command(subcommand)]
        command: accounts::DomainCommand,
    },
    /// User accounts
    User {
        #[command(subcommand)]
        command: accounts::UserCommand,
    },
    /// A user's folders and the messages in them
    Mailbox {
        #[command(subcommand)]
        command: queues::MailboxCommand,
    },
    /// The audit log of admin actions
    Audit {
        /// How far back, e.g. 1h, 7d (default: everything)
        #[arg(long, value_name = "DUR")]
        since: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

impl Args {
    pub fn is_serve(&self) -> bool {
        matches!(self.command, Command::Serve)
    }
}

/// The config the user meant: `-c`, else `./lazaret.toml`, else built-in defaults.
/// The installed server's config (Debian package), used when there is no -c and no
/// ./lazaret.toml.
const SYSTEM_CONFIG: &str = "/etc/lazaret/lazaret.toml";

pub fn load_config(path: Option<&Path>) -> Result<Config> {
    let usage = |e: lazaret_core::ConfigError| Failure::new(EXIT_USAGE, e.to_string());
    match path {
        Some(p) => Ok(Config::load(p).map_err(usage)?),
        None if Path::new("lazaret.toml").exists() => {
            Ok(Config::load(Path::new("lazaret.toml")).map_err(usage)?)
        }
        // Where the Debian package puts it: the CLI finds the installed server.
        None if Path::new(SYSTEM_CONFIG).exists() => {
            Ok(Config::load(Path::new(SYSTEM_CONFIG)).map_err(usage)?)
        }
        None => Ok(Config::default()),
    }
}

pub fn run(args: Args) -> Result<()> {
    let config = load_config(args.config.as_deref())?;
    if let Command::Serve = args.command {
        crate::memory::tune();
        init_logging(config.log.format);
        // Before the runtime's threads exist: they inherit what this sets.
        crate::privileges::settle(&config)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        return runtime.block_on(crate::serve::run(config));
    }
    if let Command::Scan(scan_args) = args.command {
        let code = scan::scan(&config, scan_args)?;
        use std::io::Write;
        let _ = std::io::stdout().flush();
        std::process::exit(code);
    }
    if let Command::Backup { command } = args.command {
        if !command.needs_server() {
            return backup::local(&config, command);
        }
        let api = client::Api::discover(&config)?;
        let backup::BackupCommand::Create { to, full, json } = command else {
            unreachable!("only create needs the server")
        };
        return backup::create(&api, to, full, json);
    }
    let api = client::Api::discover(&config)?;
    match args.command {
        Command::Serve => unreachable!("handled above"),
        Command::Status { json } => overview::status(&api, json),
        Command::Lockdown {
            message,
            no_backup,
            backup_to,
        } => overview::runbook(
            &api,
            "/api/lockdown",
            serde_json::json!({
                "message": message,
                "no_backup": no_backup,
                "backup_to": backup_to.map(|p| std::path::absolute(&p).unwrap_or(p)),
            }),
        ),
        Command::Recover { force, reason } => overview::runbook(
            &api,
            "/api/recover",
            serde_json::json!({ "force": force, "reason": reason }),
        ),
        Command::Smtp { action } => overview::smtp(&api, &action),
        Command::Access { command } => overview::access(&api, command),
        Command::Audit { since, json } => overview::audit(&api, since.as_deref(), json),
        Command::Queue { command } => queues::run(&api, command),
        Command::Mailbox { command } => queues::mailbox(&api, command),
        Command::Connector { command } => outbound::connector(&api, command),
        Command::Outbound { action } => outbound::outbound(&api, &action),
        Command::Find(args) => find::find(&api, args),
        Command::Trace(args) => tracking::trace(&api, args),
        Command::Dkim { command } => dkim::run(&api, command),
        Command::Exposure(args) => tracking::exposure(&api, args),
        Command::Quarantine(args) => actions::quarantine(&api, args),
        Command::Clusters(args) => clusters::clusters(&api, args),
        Command::Delete { ndr, act, .. } => {
            actions::act(&api, "delete", &act, serde_json::json!({ "ndr": ndr }))
        }
        Command::Sweep {
            action,
            filters,
            dry_run,
            yes,
        } => {
            let args = actions::ActArgs {
                filters,
                places: Some("mailboxes".into()),
                dry_run,
                yes,
            };
            let extra = serde_json::json!({ "ndr": (action == "delete").then_some(false) });
            actions::act(&api, &action, &args, extra)
        }
        Command::Freeze(args) => actions::act(&api, "freeze", &args, serde_json::json!({})),
        Command::Thaw(args) => actions::act(&api, "thaw", &args, serde_json::json!({})),
        Command::Retry(args) => actions::act(&api, "retry", &args, serde_json::json!({})),
        Command::Export(args) => actions::export(&api, args),
        Command::Import(args) => actions::import(&api, args),
        Command::Reindex => actions::reindex(&api),
        Command::Check { deep, repair, json } => check::run(&api, deep, repair, json),
        Command::Signatures { command } => scan::signatures_command(&api, command),
        Command::Scan(_) | Command::Backup { .. } => unreachable!("handled above"),
        Command::Rescan {
            queues,
            mailboxes,
            full,
            cluster,
            json,
        } => scan::rescan(
            &api,
            scan::RescanArgs {
                queues,
                mailboxes,
                full,
                cluster,
            },
            json,
        ),
        Command::Domain { command } => accounts::domain(&api, command),
        Command::User { command } => accounts::user(&api, command),
    }
}

fn init_logging(format: lazaret_core::config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LAZARET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // One object per line with the event's fields at the top level, so that a log
        // shipper can index `id`, `who` and the event name (`message`) directly.
        lazaret_core::config::LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        // Colour codes only for a person at a terminal, not into a log file.
        lazaret_core::config::LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}
