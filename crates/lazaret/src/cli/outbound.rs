//! `connector list|schedule`, `outbound disable|enable`, `freeze|thaw --ids`.

use super::client::{segment, Api};
use super::output;
use anyhow::Result;
use clap::Subcommand;
use serde_json::{json, Value};

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
                c["tls"].as_str().unwrap_or("may").into(),
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
            "TLS",
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
