//! `lazaret find` and the filter flags every message action shares.

use super::client::{Api, Failure};
use super::{output, queues, EXIT_USAGE};
use anyhow::Result;
use clap::Args;
use serde_json::{json, Value};
use std::io::{BufRead, IsTerminal};

/// FILTERS of PRODUCT.md (all AND-ed).
#[derive(Args, Debug, Default, Clone)]
pub struct FilterFlags {
    /// Subject contains TEXT (any case)
    #[arg(long, value_name = "TEXT")]
    subject: Option<String>,
    /// Subject matches the regular expression RE (any case unless (?-i))
    #[arg(long, value_name = "RE")]
    subject_re: Option<String>,
    /// Sender (envelope or From:): an address, @domain, or a glob like '*@*.example'
    #[arg(long, value_name = "ADDR")]
    from: Option<String>,
    /// Recipient: queued recipient, mailbox owner, or To:/Cc: containing ADDR
    #[arg(long, value_name = "ADDR")]
    to: Option<String>,
    /// The text (text/plain, text/html without tags; first 64 KB) contains TEXT, 3+ chars
    #[arg(long, value_name = "TEXT")]
    body: Option<String>,
    /// An attachment, or a file inside a zip/tar/gzip attachment, is named like GLOB
    #[arg(long, value_name = "GLOB")]
    attachment: Option<String>,
    /// SHA-256 of the message or of any decoded MIME part or archive member
    #[arg(long, value_name = "HEX")]
    sha256: Option<String>,
    /// The scanner's verdict for the message
    #[arg(long, value_name = "NAME")]
    signature: Option<String>,
    /// What [auth_checks] found on arrival: METHOD=RESULT, e.g. dmarc=fail, spf=softfail
    /// (methods spf, dkim, dmarc, arc; several comma-separated, all must hold)
    #[arg(long, value_name = "METHOD=RESULT")]
    auth: Option<String>,
    /// Only this queue (e.g. local, remote:example.org)
    #[arg(long, value_name = "NAME")]
    queue: Option<String>,
    /// Only this user's mailboxes, or one folder: ADDR/FOLDER
    #[arg(long, value_name = "ADDR")]
    mailbox: Option<String>,
    /// Queued mail in this state
    #[arg(long, value_parser = ["ready", "retry", "frozen", "all"])]
    state: Option<String>,
    /// Received longer ago than DUR (e.g. 2h, 7d)
    #[arg(long, value_name = "DUR")]
    older_than: Option<String>,
    /// Received within DUR
    #[arg(long, value_name = "DUR")]
    newer_than: Option<String>,
    /// Bigger than SIZE (e.g. 5MB)
    #[arg(long, value_name = "SIZE")]
    larger_than: Option<String>,
    /// Members of this outbreak cluster (an id from `lazaret clusters`)
    #[arg(long, value_name = "ID")]
    cluster: Option<i64>,
    /// These ids: `-` reads them from stdin (one a line, as `find --ids-only` prints),
    /// or a comma-separated list
    #[arg(long, value_name = "IDS|-")]
    ids: Option<String>,
}

impl FilterFlags {
    pub fn with_ids(ids: String) -> FilterFlags {
        FilterFlags {
            ids: Some(ids),
            ..FilterFlags::default()
        }
    }

    pub fn older_than(duration: String) -> FilterFlags {
        FilterFlags {
            older_than: Some(duration),
            ..FilterFlags::default()
        }
    }

    pub fn by_ids(&self) -> bool {
        self.ids.is_some()
    }

    /// The filters as the admin API takes them (ids read from stdin for `-`).
    pub fn to_json(&self) -> Result<Value> {
        let ids = match self.ids.as_deref() {
            None => None,
            Some("-") => Some(read_ids(std::io::stdin().lock())?),
            Some(list) => Some(
                list.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
            ),
        };
        if ids.as_ref().is_some_and(Vec::is_empty) {
            return Err(Failure::new(EXIT_USAGE, "--ids: no ids given").into());
        }
        Ok(json!({
            "subject": self.subject, "subject_re": self.subject_re, "from": self.from,
            "to": self.to, "body": self.body, "attachment": self.attachment,
            "sha256": self.sha256, "signature": self.signature, "auth": self.auth, "queue": self.queue,
            "mailbox": self.mailbox, "state": self.state, "older_than": self.older_than,
            "newer_than": self.newer_than, "larger_than": self.larger_than, "cluster": self.cluster, "ids": ids,
        }))
    }
}

fn read_ids(input: impl BufRead) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    for line in input.lines() {
        let line = line?;
        let id = line.split_whitespace().next().unwrap_or("");
        if !id.is_empty() && !id.starts_with('#') {
            ids.push(id.to_string());
        }
    }
    Ok(ids)
}

/// `--in`, as PRODUCT.md names the places.
pub const PLACES: [&str; 4] = ["queues", "mailboxes", "quarantine", "all"];

#[derive(Args)]
pub struct FindArgs {
    #[command(flatten)]
    filters: FilterFlags,
    /// Where to look (default: queues and mailboxes)
    #[arg(long = "in", value_name = "WHERE", value_parser = PLACES)]
    places: Option<String>,
    /// Order of the rows (default date); arrival = newest first, the order the store
    /// took them in, whose first rows come fastest
    #[arg(long, value_parser = ["date", "subject", "size", "from", "arrival"])]
    sort: Option<String>,
    /// At most N messages (default 200 in the table; 0 for all)
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    #[arg(long, conflicts_with = "ids_only")]
    json: bool,
    /// One id a line, every match, for `--ids -` of an action
    #[arg(long)]
    ids_only: bool,
}

/// The table's default page: enough to see what matched, small enough for a terminal.
const TABLE_LIMIT: usize = 200;

pub fn find(api: &Api, args: FindArgs) -> Result<()> {
    let filters = args.filters.to_json()?;
    if args.ids_only {
        let r = api.send(
            "POST",
            "/api/find",
            json!({ "filters": filters, "in": args.places, "ids_only": true }),
        )?;
        let mut out = String::new();
        for id in r["ids"].as_array().into_iter().flatten() {
            out.push_str(id.as_str().unwrap_or(""));
            out.push('\n');
        }
        print!("{out}");
        return Ok(());
    }
    let limit = match args.limit {
        Some(0) => None,
        Some(n) => Some(n),
        None if args.json => None,
        None => Some(TABLE_LIMIT),
    };
    let r = api.send(
        "POST",
        "/api/find",
        json!({ "filters": filters, "in": args.places, "sort": args.sort, "limit": limit }),
    )?;
    let messages: Vec<Value> = r["messages"].as_array().cloned().unwrap_or_default();
    if args.json {
        return output::json(&messages);
    }
    queues::print_messages(&messages, false)?;
    if r["more"].as_bool() == Some(true) {
        eprintln!(
            "(first {} shown; more matched: --limit 0 for all, or --ids-only)",
            messages.len()
        );
    } else if std::io::stderr().is_terminal() {
        eprintln!("{} message(s)", messages.len());
    }
    Ok(())
}
