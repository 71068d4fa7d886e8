//! `status`, `smtp stop|start`, `audit`.

use super::client::{segment, Api, Failure};
use super::output;
use anyhow::Result;
use clap::Subcommand;
use lazaret_core::Size;
use serde_json::Value;

/// The servers sharing a PostgreSQL store, with their last heartbeat.
fn print_nodes(nodes: &[Value]) {
    if nodes.is_empty() {
        return;
    }
    println!("\nNodes sharing the store");
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                output::text(&n["name"]),
                if n["up"].as_bool() == Some(true) {
                    "up"
                } else {
                    "DOWN"
                }
                .into(),
                output::time(n["heartbeat"].as_i64()),
                output::time(n["started"].as_i64()),
                output::text(&n["version"]),
            ]
        })
        .collect();
    output::table(
        &["NODE", "STATE", "LAST HEARTBEAT", "STARTED", "VERSION"],
        &rows,
    );
}

pub fn status(api: &Api, json: bool) -> Result<()> {
    let s: Value = api.get("/api/status")?;
    if json {
        return output::json(&s);
    }
    println!(
        "Lazaret {} on {}, up {}s",
        s["version"].as_str().unwrap_or("?"),
        s["hostname"].as_str().unwrap_or("?"),
        s["uptime_secs"]
    );
    if let Some(l) = s["lockdown"].as_object() {
        println!(
            "\nLOCKDOWN since {} by {} (signature set then: {}); `lazaret recover` ends it",
            output::time(l["since"].as_i64()),
            l["by"].as_str().unwrap_or("?"),
            l["signatures"].as_str().unwrap_or("?"),
        );
    }
    println!("\nListeners");
    let rows: Vec<Vec<String>> = s["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            vec![
                l["name"].as_str().unwrap_or("").into(),
                l["address"].as_str().unwrap_or("").into(),
                if l["up"].as_bool() == Some(true) {
                    "up"
                } else {
                    "DOWN"
                }
                .into(),
            ]
        })
        .collect();
    output::table(&["NAME", "ADDRESS", "STATE"], &rows);
    println!(
        "\nUser access: {}",
        s["user_access"].as_str().unwrap_or("?")
    );
    println!("Outbound: {}", s["outbound"].as_str().unwrap_or("?"));
    let signing: Vec<String> = s["dkim"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            format!(
                "{} (selector {})",
                output::text(&d["domain"]),
                output::text(&d["selector"])
            )
        })
        .collect();
    println!(
        "DKIM signing: {}",
        if signing.is_empty() {
            "none (`lazaret dkim generate DOMAIN`)".to_string()
        } else {
            signing.join(", ")
        }
    );
    println!("Checking senders: {}", auth_checks(&s["auth_checks"]));
    println!("Outbound TLS: {}", outbound_tls(&s["outbound_tls"]));
    println!("\nConnectors");
    super::outbound::print_connectors(s["connectors"].as_array().map(Vec::as_slice).unwrap_or(&[]));
    println!("\nQueues");
    print_queues(s["queues"].as_array().map(Vec::as_slice).unwrap_or(&[]));
    let st = &s["store"];
    println!(
        "\nStore: {} messages ({}), {} queued, {} in mailboxes, database {}",
        st["messages"],
        Size(st["message_bytes"].as_u64().unwrap_or(0)),
        st["queued"],
        st["in_mailboxes"],
        Size(st["database_bytes"].as_u64().unwrap_or(0)),
    );
    print_nodes(s["nodes"].as_array().map(Vec::as_slice).unwrap_or(&[]));
    let blobs = &s["blobs"];
    if blobs["backend"] == "s3" {
        println!(
            "Message bodies: s3://{}/{} at {}",
            blobs["bucket"].as_str().unwrap_or(""),
            blobs["prefix"].as_str().unwrap_or(""),
            blobs["endpoint"].as_str().unwrap_or("Amazon S3"),
        );
    }
    let disk = &s["disk"];
    println!(
        "Disk: {} free, {} kept in reserve ([store] min_free){}",
        Size(disk["free_bytes"].as_u64().unwrap_or(0)),
        Size(disk["min_free_bytes"].as_u64().unwrap_or(0)),
        if disk["refusing_mail"].as_bool() == Some(true) {
            " — REFUSING NEW MAIL (452 4.3.1) until space is freed"
        } else {
            ""
        }
    );
    println!(
        "Quarantine: {} messages ({})",
        st["quarantined"],
        Size(st["quarantine_bytes"].as_u64().unwrap_or(0)),
    );
    if st["clusters_held"].as_u64().unwrap_or(0) > 0 {
        println!(
            "OUTBREAK HOLD: {} cluster(s) held, {} cop(ies) frozen in inbound (`lazaret clusters --sort growth`)",
            st["clusters_held"], st["held_copies"]
        );
    } else if let Some(h) = s["outbreak_hold"].as_object() {
        println!(
            "Outbreak hold: on at {} from {} senders; nothing held",
            h["growth"].as_str().unwrap_or("?"),
            h["senders"]
        );
    }
    match s["last_backup"].as_object() {
        None => println!("Last backup: none (`lazaret backup create`)"),
        Some(b) if b["ok"] == true => println!(
            "Last backup: {} at {}, {} of store, {} written, in {}",
            b["id"].as_str().unwrap_or("?"),
            output::time(b["at"].as_i64()),
            Size(b["total_bytes"].as_u64().unwrap_or(0)),
            Size(b["stored_bytes"].as_u64().unwrap_or(0)),
            b["dir"].as_str().unwrap_or("?"),
        ),
        Some(b) => println!(
            "Last backup: FAILED at {}: {}",
            output::time(b["at"].as_i64()),
            b["error"].as_str().unwrap_or("?")
        ),
    }
    println!();
    print_scanning(&s["scan"], s["unscanned"].as_u64().unwrap_or(0));
    Ok(())
}

/// `lockdown` and `recover`: each step with its result; exit 1 if one failed.
pub fn runbook(api: &Api, path: &str, body: Value) -> Result<()> {
    let started = api.send("POST", path, body).map_err(|e| {
        // A refusal (recover before new signatures) is an answer, not a usage error.
        let code = e.downcast_ref::<Failure>().map_or(1, |f| f.code);
        Failure::new(
            if code == super::EXIT_USAGE { 1 } else { code },
            format!("{e:#}"),
        )
    })?;
    let report = super::actions::follow(api, &started)?;
    let action = report["action"].as_str().unwrap_or("?");
    for step in report["steps"].as_array().into_iter().flatten() {
        println!(
            "{:<18} {:<6} {:>8} {}",
            step["step"].as_str().unwrap_or("?"),
            if step["ok"] == true { "ok" } else { "FAILED" },
            format!("{:.2} s", step["seconds"].as_f64().unwrap_or(0.0)),
            step["result"].as_str().unwrap_or("")
        );
    }
    if let Some(step) = report["failed_step"].as_str() {
        return Err(Failure::new(
            1,
            format!("{action} stopped at \"{step}\"; the steps before it stay in force (fix it and run `lazaret {action}` again)"),
        )
        .into());
    }
    println!("{action}: done");
    Ok(())
}

/// The signature set, scanning mode and clamd, as `status` and `signatures list` show.
pub fn print_scanning(scan: &Value, unscanned: u64) {
    println!(
        "Signatures: version {} loaded {}, {} signature(s) in {} file(s) from {}",
        scan["version"].as_str().unwrap_or("?"),
        output::time(scan["loaded_at"].as_i64()),
        scan["signatures"],
        scan["files"].as_array().map_or(0, Vec::len),
        scan["directory"].as_str().unwrap_or("?"),
    );
    for r in scan["rejected"].as_array().into_iter().flatten() {
        println!("  REFUSED {}", r.as_str().unwrap_or(""));
    }
    println!(
        "Scanning on ingest: {}{}",
        scan["on_ingest"].as_str().unwrap_or("?"),
        if unscanned > 0 {
            format!(" ({unscanned} message(s) in inbound waiting for the scanner)")
        } else {
            String::new()
        }
    );
    match scan["clamd"].as_object() {
        None => println!("clamd: not configured"),
        Some(c) => println!(
            "clamd: {} {} {}",
            c["address"].as_str().unwrap_or("?"),
            if c["state"] == "up" { "up" } else { "DOWN" },
            c["detail"].as_str().unwrap_or("")
        ),
    }
}

pub fn print_queues(queues: &[Value]) {
    let rows: Vec<Vec<String>> = queues
        .iter()
        .map(|q| {
            vec![
                q["name"].as_str().unwrap_or("").into(),
                match q["held"].as_str() {
                    Some(why) => format!("{} (held: {why})", q["state"].as_str().unwrap_or("")),
                    None => q["state"].as_str().unwrap_or("").into(),
                },
                q["messages"].to_string(),
                q["ready"].to_string(),
                q["retry"].to_string(),
                q["frozen"].to_string(),
                output::age(q["oldest"].as_i64()),
                output::time(q["next_attempt"].as_i64()),
            ]
        })
        .collect();
    output::table(
        &[
            "QUEUE",
            "STATE",
            "MESSAGES",
            "READY",
            "RETRY",
            "FROZEN",
            "OLDEST",
            "NEXT ATTEMPT",
        ],
        &rows,
    );
}

#[derive(Subcommand)]
pub enum AccessCommand {
    /// Refuse user logins with a message and close open sessions
    Disable {
        /// What users are told (default: access is temporarily disabled)
        #[arg(long, value_name = "TEXT")]
        message: Option<String>,
    },
    /// Let users log in again
    Enable,
}

pub fn access(api: &Api, command: AccessCommand) -> Result<()> {
    match command {
        AccessCommand::Disable { message } => {
            let r = api.send(
                "POST",
                "/api/access/disable",
                serde_json::json!({ "message": message }),
            )?;
            println!(
                "user access disabled; logins are refused with: {}",
                r["user_access"]["message"].as_str().unwrap_or("")
            );
        }
        AccessCommand::Enable => {
            api.send("POST", "/api/access/enable", serde_json::json!({}))?;
            println!("user access enabled");
        }
    }
    Ok(())
}

pub fn smtp(api: &Api, action: &str) -> Result<()> {
    let r = api.send(
        "POST",
        &format!("/api/smtp/{}", segment(action)),
        Value::Null,
    )?;
    let was = if r["was_up"].as_bool() == Some(true) {
        "up"
    } else {
        "down"
    };
    match action {
        "stop" => println!("inbound SMTP stopped (it was {was}); sessions already open may finish"),
        _ => println!("inbound SMTP started (it was {was})"),
    }
    Ok(())
}

pub fn audit(api: &Api, since: Option<&str>, json: bool) -> Result<()> {
    let path = match since {
        Some(d) => format!("/api/audit?since={}", segment(d)),
        None => "/api/audit".into(),
    };
    let records: Vec<Value> = api.get(&path)?;
    if json {
        return output::json(&records);
    }
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                output::time(r["at"].as_i64()),
                r["actor"].as_str().unwrap_or("").into(),
                r["action"].as_str().unwrap_or("").into(),
                r["count"].as_u64().map_or("-".into(), |n| n.to_string()),
                r["query"].as_str().unwrap_or("").into(),
            ]
        })
        .collect();
    output::table(&["WHEN", "WHO", "ACTION", "COUNT", "WHAT"], &rows);
    Ok(())
}

/// One line for `[auth_checks]`: off, or what a failure leads to.
fn auth_checks(c: &Value) -> String {
    if c.is_null() {
        return "off (`[auth_checks] enabled = true`: SPF, DKIM, DMARC, ARC)".into();
    }
    let on = |key: &str| c[key].as_bool().unwrap_or(false);
    let mut rules = Vec::new();
    if on("dmarc_reject") {
        rules.push("DMARC p=reject refused");
    }
    if on("dmarc_quarantine") {
        rules.push("p=quarantine quarantined");
    }
    if on("own_domain_quarantine") {
        rules.push("forged own-domain senders quarantined");
    }
    if rules.is_empty() {
        rules.push("results marked only");
    }
    format!("SPF, DKIM, DMARC, ARC ({})", rules.join(", "))
}

/// One line for outbound TLS: MTA-STS on or off, the policies it holds, the roots.
fn outbound_tls(t: &Value) -> String {
    let roots = t["trusted_roots"].as_u64().unwrap_or(0);
    let roots = if roots == 0 {
        "no trusted certificate authorities (install ca-certificates or set SSL_CERT_FILE)"
            .to_string()
    } else {
        format!("{roots} trusted certificate authorities")
    };
    let dane = match t["dane"].as_bool() {
        Some(true) => {
            let resolvers: Vec<String> = t["dane_resolvers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(output::text)
                .collect();
            format!("DANE on (trusting {})", resolvers.join(", "))
        }
        _ => "DANE off".to_string(),
    };
    if t["mta_sts"].as_bool() != Some(true) {
        return format!("MTA-STS off ([delivery] mta_sts = false), {dane}, {roots}");
    }
    let held: Vec<String> = t["policies"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            format!(
                "{} {}",
                output::text(&p["domain"]),
                output::text(&p["mode"])
            )
        })
        .collect();
    let policies = match held.len() {
        0 => "no policies held yet".to_string(),
        n if n <= 5 => format!("policies held: {}", held.join(", ")),
        n => format!("{n} policies held: {}, …", held[..5].join(", ")),
    };
    format!("MTA-STS on ({policies}), {dane}, {roots}")
}
