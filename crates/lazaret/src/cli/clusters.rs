//! `lazaret clusters`: groups of near-identical mail (an outbreak before any signature
//! names it), one cluster in detail, and marking known mail (newsletters) as allowed.

use super::client::{segment, Api};
use super::find::PLACES;
use super::output;
use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::Value;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ClustersArgs {
    #[command(subcommand)]
    command: Option<ClustersCommand>,
    /// Only clusters with a member stored within DUR (e.g. 1h, 2d)
    #[arg(long, value_name = "DUR")]
    since: Option<String>,
    /// Only clusters with members there
    #[arg(long = "in", value_name = "WHERE", value_parser = PLACES)]
    places: Option<String>,
    /// Only clusters of at least N messages (default 3)
    #[arg(long, value_name = "N")]
    min: Option<u64>,
    /// At most N clusters (default 20)
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Biggest first (size, the default) or most new members in the last hour first
    /// (growth)
    #[arg(long, value_name = "ORDER", value_parser = ["size", "growth"])]
    sort: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub enum ClustersCommand {
    /// One cluster: where it went, senders, subjects, attachments, verdicts
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Mark a cluster as known mail (a newsletter): listed as allowed
    Allow { id: i64 },
    /// Take `allow` back
    Unallow { id: i64 },
}

pub fn clusters(api: &Api, args: ClustersArgs) -> Result<()> {
    match args.command {
        Some(ClustersCommand::Show { id, json }) => show(api, id, json),
        Some(ClustersCommand::Allow { id }) => allow(api, id, "allow"),
        Some(ClustersCommand::Unallow { id }) => allow(api, id, "unallow"),
        None => list(api, &args),
    }
}

fn list(api: &Api, args: &ClustersArgs) -> Result<()> {
    let mut query = Vec::new();
    if let Some(s) = &args.since {
        query.push(format!("since={}", segment(s)));
    }
    if let Some(p) = &args.places {
        query.push(format!("in={}", segment(p)));
    }
    if let Some(n) = args.min {
        query.push(format!("min={n}"));
    }
    if let Some(n) = args.limit {
        query.push(format!("limit={n}"));
    }
    if let Some(o) = &args.sort {
        query.push(format!("sort={}", segment(o)));
    }
    let path = if query.is_empty() {
        "/api/clusters".to_string()
    } else {
        format!("/api/clusters?{}", query.join("&"))
    };
    let clusters: Vec<Value> = api.get(&path)?;
    if args.json {
        return output::json(&clusters);
    }
    let rows: Vec<Vec<String>> = clusters
        .iter()
        .map(|c| {
            vec![
                c["id"].to_string(),
                c["messages"].to_string(),
                c["last_hour"].to_string(),
                c["senders"].to_string(),
                c["recipients"].to_string(),
                format!(
                    "{}/{}/{}",
                    c["in_queues"], c["in_mailboxes"], c["in_quarantine"]
                ),
                output::age(c["first_seen"].as_i64()),
                attachment_names(c),
                verdicts(c),
                state(c),
                first_subject(c),
            ]
        })
        .collect();
    output::table(
        &[
            "ID",
            "MSGS",
            "LAST 1H",
            "SENDERS",
            "RCPTS",
            "Q/MBOX/QUAR",
            "AGE",
            "ATTACHMENTS",
            "VERDICTS",
            "",
            "SUBJECT (latest)",
        ],
        &rows,
    );
    if clusters.is_empty() {
        eprintln!(
            "no clusters (of at least {} messages)",
            args.min.unwrap_or(3)
        );
    } else {
        eprintln!(
            "`lazaret clusters show ID` for one; `lazaret find --cluster ID` for its messages"
        );
    }
    Ok(())
}

fn show(api: &Api, id: i64, json: bool) -> Result<()> {
    let c: Value = api.get(&format!("/api/clusters/{id}"))?;
    if json {
        return output::json(&c);
    }
    println!(
        "Cluster {}{}",
        c["id"],
        if c["allowed"].as_bool() == Some(true) {
            " (allowed: known mail)".to_string()
        } else if c["held_since"].is_i64() {
            format!(
                " (HELD since {}: new copies stay frozen in inbound)",
                output::time(c["held_since"].as_i64())
            )
        } else {
            String::new()
        }
    );
    println!(
        "  messages     {} ({} in the last hour)",
        c["messages"], c["last_hour"]
    );
    println!(
        "  seen         {} .. {}",
        output::time(c["first_seen"].as_i64()),
        output::time(c["last_seen"].as_i64())
    );
    println!("  senders      {} distinct", c["senders"]);
    println!("  recipients   {} distinct", c["recipients"]);
    println!(
        "  where        {} queued, {} in mailboxes, {} quarantined",
        c["in_queues"], c["in_mailboxes"], c["in_quarantine"]
    );
    if c["held_copies"].as_u64().unwrap_or(0) > 0 {
        println!(
            "  held         {} cop(ies) frozen in inbound",
            c["held_copies"]
        );
    }
    println!("  queues       {}", output::joined(&c["queues"]));
    println!("  mailboxes    {}", output::joined(&c["mailboxes"]));
    println!("  verdicts     {}", verdicts(&c));
    println!("  subjects");
    for s in c["subjects"].as_array().into_iter().flatten() {
        println!("    {}", s.as_str().unwrap_or(""));
    }
    println!("  attachments (shared by)");
    for a in c["attachments"].as_array().into_iter().flatten() {
        println!(
            "    {:<32} {}  {}",
            a["name"].as_str().unwrap_or("-"),
            a["sha256"].as_str().unwrap_or(""),
            a["messages"]
        );
    }
    println!(
        "\nIts messages: `lazaret find --cluster {id} --in all`; contain it: `lazaret quarantine --cluster {id}`"
    );
    if c["held_since"].is_i64() {
        println!(
            "Held copies: let them go with `lazaret thaw --cluster {id}`; known mail: `lazaret clusters allow {id}` (ends the hold)"
        );
    }
    Ok(())
}

fn allow(api: &Api, id: i64, action: &str) -> Result<()> {
    let r = api.send(
        "POST",
        &format!("/api/clusters/{id}/{action}"),
        serde_json::json!({}),
    )?;
    match action {
        "allow" => println!(
            "cluster {id} marked as known mail: never held; {} held cop(ies) let go",
            r["released"].as_u64().unwrap_or(0)
        ),
        _ => println!("cluster {id} no longer marked as known mail"),
    }
    Ok(())
}

/// `allowed`, `HELD`, or nothing.
fn state(c: &Value) -> String {
    if c["allowed"].as_bool() == Some(true) {
        "allowed".into()
    } else if c["held_since"].is_i64() {
        format!("HELD({})", c["held_copies"])
    } else {
        String::new()
    }
}

fn attachment_names(c: &Value) -> String {
    c["attachments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["name"].as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn verdicts(c: &Value) -> String {
    c["verdicts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| format!("{}×{}", v[0].as_str().unwrap_or("?"), v[1]))
        .collect::<Vec<_>>()
        .join(",")
}

fn first_subject(c: &Value) -> String {
    c["subjects"][0]
        .as_str()
        .unwrap_or("")
        .chars()
        .take(50)
        .collect()
}
