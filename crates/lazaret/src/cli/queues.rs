//! `queue list|freeze|thaw|retry` and `mailbox list|show`.

use super::client::{segment, Api, Failure};
use super::{output, overview, EXIT_USAGE};
use anyhow::Result;
use clap::Subcommand;
use serde_json::{json, Value};

#[derive(Subcommand)]
pub enum QueueCommand {
    /// Every queue with its state and counts
    List {
        #[arg(long)]
        json: bool,
    },
    /// Stop all delivery attempts from these queues (they keep accepting mail)
    Freeze {
        names: Vec<String>,
        #[arg(long)]
        all: bool,
    },
    /// Let these queues deliver again
    Thaw {
        names: Vec<String>,
        #[arg(long)]
        all: bool,
    },
    /// Make every ready or waiting-to-retry message of these queues due now (frozen
    /// ones stay frozen), as `postqueue -f`
    Retry {
        names: Vec<String>,
        #[arg(long)]
        all: bool,
    },
    /// The messages in one queue
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum MailboxCommand {
    /// A user's folders with message counts
    List {
        user: String,
        #[arg(long)]
        json: bool,
    },
    /// The messages in one folder
    Show {
        user: String,
        #[arg(default_value = "INBOX")]
        folder: String,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(api: &Api, command: QueueCommand) -> Result<()> {
    match command {
        QueueCommand::List { json } => {
            let queues: Vec<Value> = api.get("/api/queues")?;
            if json {
                return output::json(&queues);
            }
            overview::print_queues(&queues);
            Ok(())
        }
        QueueCommand::Freeze { names, all } => set_state(api, "freeze", names, all),
        QueueCommand::Thaw { names, all } => set_state(api, "thaw", names, all),
        QueueCommand::Retry { names, all } => retry(api, names, all),
        QueueCommand::Show { name, json } => {
            let messages: Vec<Value> =
                api.get(&format!("/api/queues/{}/messages", segment(&name)))?;
            print_messages(&messages, json)
        }
    }
}

fn set_state(api: &Api, action: &str, names: Vec<String>, all: bool) -> Result<()> {
    if all != names.is_empty() {
        return Err(Failure::new(
            EXIT_USAGE,
            format!("name the queues to {action}, or pass --all"),
        )
        .into());
    }
    let r = api.send(
        "POST",
        &format!("/api/queues/{action}"),
        json!({ "queues": names, "all": all }),
    )?;
    let done: Vec<&str> = r["queues"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let verb = if action == "freeze" {
        "frozen"
    } else {
        "thawed"
    };
    println!("{verb}: {}", done.join(" "));
    Ok(())
}

fn retry(api: &Api, names: Vec<String>, all: bool) -> Result<()> {
    if all != names.is_empty() {
        return Err(Failure::new(EXIT_USAGE, "name the queues to retry, or pass --all").into());
    }
    let r = api.send(
        "POST",
        "/api/queues/retry",
        json!({ "queues": names, "all": all }),
    )?;
    println!(
        "due now: {} message(s); frozen, left frozen: {}",
        r["due"], r["frozen"]
    );
    Ok(())
}

pub fn mailbox(api: &Api, command: MailboxCommand) -> Result<()> {
    match command {
        MailboxCommand::List { user, json } => {
            let boxes: Vec<Value> = api.get(&format!("/api/users/{}/mailboxes", segment(&user)))?;
            if json {
                return output::json(&boxes);
            }
            let rows: Vec<Vec<String>> = boxes
                .iter()
                .map(|b| {
                    vec![
                        b["name"].as_str().unwrap_or("").into(),
                        b["messages"].to_string(),
                        b["uidvalidity"].to_string(),
                        b["uidnext"].to_string(),
                    ]
                })
                .collect();
            output::table(&["FOLDER", "MESSAGES", "UIDVALIDITY", "UIDNEXT"], &rows);
            Ok(())
        }
        MailboxCommand::Show { user, folder, json } => {
            let messages: Vec<Value> = api.get(&format!(
                "/api/users/{}/mailboxes/{}/messages",
                segment(&user),
                segment(&folder)
            ))?;
            print_messages(&messages, json)
        }
    }
}

pub fn print_messages(messages: &[Value], json: bool) -> Result<()> {
    if json {
        return output::json(&messages);
    }
    let rows: Vec<Vec<String>> = messages
        .iter()
        .map(|m| {
            let to: Vec<&str> = m["to"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            vec![
                m["id"].as_str().unwrap_or("").into(),
                m["location"].as_str().unwrap_or("").into(),
                m["state"].as_str().unwrap_or("").into(),
                m["from"].as_str().unwrap_or("").into(),
                to.join(","),
                m["subject"]
                    .as_str()
                    .unwrap_or("")
                    .chars()
                    .take(60)
                    .collect(),
                output::time(m["date"].as_i64()),
                m["size"].to_string(),
            ]
        })
        .collect();
    output::table(
        &[
            "ID", "LOCATION", "STATE", "FROM", "TO", "SUBJECT", "DATE", "SIZE",
        ],
        &rows,
    );
    Ok(())
}
