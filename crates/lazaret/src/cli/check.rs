//! `lazaret check [--deep] [--repair] [--json]`: prints what the store check found
//! (and repaired); exit 1 while a fault remains.

use super::actions::follow;
use super::client::{Api, Failure};
use super::output;
use super::output::text;
use anyhow::Result;
use serde_json::{json, Value};

pub fn run(api: &Api, deep: bool, repair: bool, as_json: bool) -> Result<()> {
    let started = api.send(
        "POST",
        "/api/check",
        json!({ "deep": deep, "repair": repair }),
    )?;
    let report = follow(api, &started)?;
    // What is left: after a repair, the check that followed it.
    let remaining = if report["after"].is_null() {
        &report["found"]
    } else {
        &report["after"]
    };
    let faults = remaining["faults"].as_array().map_or(0, Vec::len);
    if as_json {
        output::json(&report)?;
    } else {
        let found = &report["found"];
        println!(
            "checked {} message(s) ({}), {} folder entr(ies), {} queue item(s), {} quarantined",
            found["messages"],
            if deep {
                "every byte hashed"
            } else {
                "record headers"
            },
            found["mailbox_entries"],
            found["queue_items"],
            found["quarantined"],
        );
        print_faults("found", found);
        if let Some(done) = report["repaired"]["repaired"].as_array() {
            for pair in done {
                println!("repaired {}: {}", text(&pair[0]), pair[1]);
            }
            print_faults("left after the repair", remaining);
        }
        if faults == 0 {
            println!("the store is sound");
        }
    }
    if faults > 0 {
        let hint = if repair {
            ""
        } else {
            " (`lazaret check --repair` fixes those marked repairable)"
        };
        return Err(
            Failure::new(1, format!("{faults} kind(s) of fault in the store{hint}")).into(),
        );
    }
    Ok(())
}

fn print_faults(heading: &str, report: &Value) {
    for f in report["faults"].as_array().into_iter().flatten() {
        println!(
            "{heading}: {} × {}{}",
            text(&f["kind"]),
            f["count"],
            if f["repairable"].as_bool() == Some(true) {
                format!(" — repairable: {}", text(&f["repair"]))
            } else {
                format!(" — {}", text(&f["repair"]))
            }
        );
        for e in f["examples"].as_array().into_iter().flatten() {
            println!("    {}", text(e));
        }
    }
}
