//! `connector list|schedule`, `outbound disable|enable`, `freeze|thaw --ids`.

use super::client::{segment, Api, Failure};
use super::{output, EXIT_USAGE};
use anyhow::Result;
use clap::Subcommand;
use serde_json::{json, Value};
use std::io::BufRead;

#[derive(Subcommand)]
pub enum ConnectorCommand {
    /// Every connector: route, schedule, whether it may send now, mail waiting
    List {
        #[arg(long)]
        json: bool,
    },
    /// When a connector may send: never, always, or windows like "mon-fri 18:00-06:00"
    Schedule {
        name: String,
        /// never | always | windows, e.g. `mon-fri 18:00-06:00, sat-sun`
        #[arg(required = true, num_args = 1.., value_name = "SCHEDULE")]
        schedule: Vec<String>,
    },
}

pub fn connector(api: &Api, command: ConnectorCommand) -> Result<()> {
    match command {
        ConnectorCommand::List { json } => {
            let list: Vec<Value> = api.get("/api/connectors")?;
            if json {
                return output::json(&list);
            }
            print_connectors(&list);
            Ok(())
        }
        ConnectorCommand::Schedule { name, schedule } => {
            let r = api.send(
                "PUT",
                &format!("/api/connectors/{}/schedule", segment(&name)),
                json!({ "schedule": schedule.join(" ") }),
            )?;
            let open = if r["open"].as_bool() == Some(true) {
                "open now: sending"
            } else {
                "closed now: no delivery attempts"
            };
            println!(
                "connector {name} schedule: {} ({open})",
                r["schedule"].as_str().unwrap_or("")
            );
            Ok(())
        }
    }
}

pub fn print_connectors(list: &[Value]) {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|c| {
            let domains: Vec<&str> = c["domains"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let route = match c["smarthost"].as_str() {
                Some(h) => format!("smarthost {h}"),
                None => "mx".into(),
            };
            vec![
                c["name"].as_str().unwrap_or("").into(),
                domains.join(","),
                route,
                c["schedule"].as_str().unwrap_or("").into(),
                if c["open"].as_bool() == Some(true) {
                    "open"
                } else {
                    "CLOSED"
                }
                .into(),
                c["messages"].to_string(),
            ]
        })
        .collect();
    output::table(
        &[
            "CONNECTOR",
            "DOMAINS",
            "ROUTE",
            "SCHEDULE",
            "NOW",
            "WAITING",
        ],
        &rows,
    );
}

pub fn outbound(api: &Api, action: &str) -> Result<()> {
    let r = api.send(
        "POST",
        &format!("/api/outbound/{}", segment(action)),
        Value::Null,
    )?;
    let n = r["remote_messages"].as_u64().unwrap_or(0);
    match action {
        "disable" => println!(
            "outbound disabled: every remote queue is held ({n} message(s) waiting); `lazaret outbound enable` sends again"
        ),
        _ => println!("outbound enabled: remote queues deliver again ({n} message(s) waiting)"),
    }
    Ok(())
}

/// Message ids from `--ids`: `-` reads them from stdin, one a line (as `find --ids-only`
/// prints them); otherwise a comma-separated list.
fn read_ids(ids: &str) -> Result<Vec<String>> {
    let list: Vec<String> = if ids == "-" {
        std::io::stdin()
            .lock()
            .lines()
            .collect::<std::io::Result<Vec<_>>>()?
            .into_iter()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    } else {
        ids.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    if list.is_empty() {
        return Err(Failure::new(
            EXIT_USAGE,
            "no message ids given (--ids - reads them from stdin, one a line)",
        )
        .into());
    }
    Ok(list)
}

pub fn freeze(api: &Api, action: &str, ids: &str) -> Result<()> {
    let ids = read_ids(ids)?;
    let r = api.send(
        "POST",
        &format!("/api/messages/{action}"),
        json!({ "ids": ids }),
    )?;
    let verb = if action == "freeze" {
        "frozen"
    } else {
        "thawed"
    };
    let (changed, requested) = (
        r["changed"].as_u64().unwrap_or(0),
        r["requested"].as_u64().unwrap_or(0),
    );
    println!("{verb}: {changed} of {requested} message(s)");
    if changed < requested {
        println!("(the others were already {verb}, or are not in a queue)");
    }
    Ok(())
}
