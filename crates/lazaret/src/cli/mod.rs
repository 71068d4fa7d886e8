//! Command-line definitions and dispatch. `serve` runs the server; everything else is
//! an admin command spoken over the admin API.

mod accounts;
mod client;
mod outbound;
mod output;
mod overview;
mod queues;

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
    /// Config file (default: ./lazaret.toml if it exists, else built-in defaults)
    #[arg(short, long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

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
    /// List, freeze and thaw queues
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
    /// Hold single queued messages (ids from `queue show` or `find --ids-only`)
    Freeze {
        /// `-` reads ids from stdin, one a line; or a comma-separated list
        #[arg(long, value_name = "IDS|-")]
        ids: String,
    },
    /// Release held queued messages; they are due at once
    Thaw {
        #[arg(long, value_name = "IDS|-")]
        ids: String,
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

/// The config the user meant: `-c`, else `./lazaret.toml`, else built-in defaults.
pub fn load_config(path: Option<&Path>) -> Result<Config> {
    let usage = |e: lazaret_core::ConfigError| Failure::new(EXIT_USAGE, e.to_string());
    match path {
        Some(p) => Ok(Config::load(p).map_err(usage)?),
        None if Path::new("lazaret.toml").exists() => {
            Ok(Config::load(Path::new("lazaret.toml")).map_err(usage)?)
        }
        None => Ok(Config::default()),
    }
}

pub fn run(args: Args) -> Result<()> {
    let config = load_config(args.config.as_deref())?;
    if let Command::Serve = args.command {
        crate::serve::tune_allocator();
        init_logging();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        return runtime.block_on(crate::serve::run(config));
    }
    let api = client::Api::discover(&config)?;
    match args.command {
        Command::Serve => unreachable!("handled above"),
        Command::Status { json } => overview::status(&api, json),
        Command::Smtp { action } => overview::smtp(&api, &action),
        Command::Access { command } => overview::access(&api, command),
        Command::Audit { since, json } => overview::audit(&api, since.as_deref(), json),
        Command::Queue { command } => queues::run(&api, command),
        Command::Mailbox { command } => queues::mailbox(&api, command),
        Command::Connector { command } => outbound::connector(&api, command),
        Command::Outbound { action } => outbound::outbound(&api, &action),
        Command::Freeze { ids } => outbound::freeze(&api, "freeze", &ids),
        Command::Thaw { ids } => outbound::freeze(&api, "thaw", &ids),
        Command::Domain { command } => accounts::domain(&api, command),
        Command::User { command } => accounts::user(&api, command),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LAZARET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
