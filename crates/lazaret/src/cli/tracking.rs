//! `lazaret trace` (one message's whole path, like Postfix's `grep QUEUE-ID maillog`
//! or Exchange's message tracking) and `lazaret exposure` (after an outbreak: who
//! received each copy, who read, downloaded or forwarded it, where it is now).

use super::client::{segment, Api, Failure};
use super::find::FilterFlags;
use super::output;
use super::EXIT_USAGE;
use anyhow::Result;
use clap::Args;
use serde_json::{json, Value};

#[derive(Args)]
pub struct TraceArgs {
    /// The message's store id (the `queued as` id, find's MESSAGE column)
    #[arg(required_unless_present = "message_id")]
    id: Option<String>,
    /// Find the message by its Message-ID header instead
    #[arg(long, value_name = "MID", conflicts_with = "id")]
    message_id: Option<String>,
    #[arg(long)]
    json: bool,
}

pub fn trace(api: &Api, args: TraceArgs) -> Result<()> {
    let query = match (&args.id, &args.message_id) {
        (Some(id), _) => format!("id={}", segment(id.trim())),
        (None, Some(mid)) => format!("message_id={}", segment(mid.trim())),
        (None, None) => {
            return Err(Failure::new(EXIT_USAGE, "give a message id or --message-id MID").into())
        }
    };
    let r: Value = api.get(&format!("/api/trace?{query}"))?;
    let messages = r["messages"].as_array().cloned().unwrap_or_default();
    if args.json {
        return output::json(&messages);
    }
    for (n, m) in messages.iter().enumerate() {
        if n > 0 {
            println!();
        }
        println!(
            "message {}{}",
            output::text(&m["id"]),
            if m["exists"].as_bool() == Some(false) {
                " (no longer stored)"
            } else {
                ""
            }
        );
        for (label, key) in [
            ("Message-ID", "message_id"),
            ("From", "from"),
            ("Subject", "subject"),
        ] {
            let v = output::text(&m[key]);
            if !v.is_empty() {
                println!("  {label}: {v}");
            }
        }
        let rows: Vec<Vec<String>> = m["events"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                vec![
                    output::time(e["at"].as_i64()),
                    output::text(&e["event"]),
                    output::text(&e["who"]),
                    output::text(&e["detail"]),
                ]
            })
            .collect();
        if rows.is_empty() {
            println!("  (no events recorded: stored before the event log, or pruned)");
        } else {
            output::table(&["TIME", "EVENT", "WHO", "DETAIL"], &rows);
        }
        let now = output::joined(&m["now"]);
        println!(
            "now: {}",
            if now.is_empty() {
                "nowhere on this server (delivered on, deleted or purged)".to_string()
            } else {
                now
            }
        );
    }
    Ok(())
}

#[derive(Args)]
pub struct ExposureArgs {
    #[command(flatten)]
    filters: FilterFlags,
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// One row per copy as CSV (RFC 4180), for a spreadsheet
    #[arg(long)]
    csv: bool,
}

pub fn exposure(api: &Api, args: ExposureArgs) -> Result<()> {
    let filters = args.filters.to_json()?;
    if filters
        .as_object()
        .is_some_and(|o| o.values().all(Value::is_null))
    {
        return Err(Failure::new(
            EXIT_USAGE,
            "say which messages: --cluster ID (from `lazaret clusters`) or find's filters",
        )
        .into());
    }
    let r = api.send("POST", "/api/exposure", json!({ "filters": filters }))?;
    if args.json {
        return output::json(&r);
    }
    let copies = r["copies"].as_array().cloned().unwrap_or_default();
    if args.csv {
        let mut w = csv::Writer::from_writer(std::io::stdout().lock());
        w.write_record([
            "message",
            "subject",
            "recipient",
            "local",
            "delivered",
            "read",
            "seen",
            "downloaded",
            "forwarded",
            "now",
        ])?;
        for c in &copies {
            let when = |k: &str| output::time(c[k].as_i64());
            w.write_record([
                output::text(&c["message"]),
                output::text(&c["subject"]),
                output::text(&c["recipient"]),
                c["local"].as_bool().unwrap_or(false).to_string(),
                blank_dash(when("delivered")),
                blank_dash(when("read")),
                c["seen"].as_bool().unwrap_or(false).to_string(),
                blank_dash(when("downloaded")),
                blank_dash(when("forwarded")),
                output::text(&c["now"]),
            ])?;
        }
        w.flush()?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = copies
        .iter()
        .map(|c| {
            let read = match (c["read"].as_i64(), c["seen"].as_bool()) {
                (Some(t), _) => output::time(Some(t)),
                (None, Some(true)) => "yes (time not logged)".into(),
                _ => "-".into(),
            };
            vec![
                output::text(&c["recipient"]),
                output::text(&c["message"]),
                output::time(c["delivered"].as_i64()),
                read,
                output::time(c["downloaded"].as_i64()),
                output::time(c["forwarded"].as_i64()),
                output::text(&c["now"]),
            ]
        })
        .collect();
    output::table(
        &[
            "RECIPIENT",
            "MESSAGE",
            "DELIVERED",
            "READ",
            "DOWNLOADED",
            "FORWARDED",
            "NOW",
        ],
        &rows,
    );
    let s = &r["summary"];
    println!(
        "{} message(s), {} cop(ies) to {} local user(s): {} read, {} downloaded, {} forwarded on",
        s["messages"], s["copies"], s["users"], s["read"], s["downloaded"], s["forwarded"]
    );
    Ok(())
}

fn blank_dash(s: String) -> String {
    if s == "-" {
        String::new()
    } else {
        s
    }
}
