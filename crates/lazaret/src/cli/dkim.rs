//! `lazaret dkim generate|list|rotate|remove`: the keys mail from our domains is signed
//! with, and the DNS TXT records to publish for them.

use super::client::{segment, Api};
use super::output;
use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

/// A new key: for `generate` and for `rotate` (where `--selector`/`--algorithm` make a
/// new key rather than switch to the standby one).
#[derive(Args)]
pub struct NewKey {
    domain: String,
    /// The record's name part (default: lzYYYYMMDD)
    #[arg(long)]
    selector: Option<String>,
    /// rsa2048 (the default: every receiver checks it) or ed25519 (RFC 8463)
    #[arg(long, value_parser = ["rsa2048", "ed25519"])]
    algorithm: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub enum DkimCommand {
    /// Make a key for DOMAIN and print the DNS record to publish. A domain's first key
    /// signs at once; a later one waits for `rotate` (publish its record first)
    Generate(NewKey),
    /// Every key, which one each domain signs with, and its DNS record
    List {
        #[arg(long)]
        json: bool,
    },
    /// Switch DOMAIN to its newest standby key (made with `generate`, record published),
    /// or to a new key if it has none; the old one stays listed (keep its DNS record a
    /// few days, then `remove --selector OLD`)
    Rotate(NewKey),
    /// Remove DOMAIN's key with SELECTOR, or all its keys (its mail then goes out
    /// unsigned)
    Remove {
        domain: String,
        #[arg(long)]
        selector: Option<String>,
    },
}

pub fn run(api: &Api, command: DkimCommand) -> Result<()> {
    match command {
        DkimCommand::Generate(key) => {
            make(api, &format!("/api/dkim/{}", segment(&key.domain)), key)
        }
        DkimCommand::Rotate(key) => make(
            api,
            &format!("/api/dkim/{}/rotate", segment(&key.domain)),
            key,
        ),
        DkimCommand::List { json } => {
            let keys: Vec<Value> = api.get("/api/dkim")?;
            if json {
                return output::json(&keys);
            }
            let rows: Vec<Vec<String>> = keys
                .iter()
                .map(|k| {
                    vec![
                        output::text(&k["domain"]),
                        output::text(&k["selector"]),
                        output::text(&k["algorithm"]),
                        if k["active"].as_bool() == Some(true) {
                            "signing".into()
                        } else {
                            "kept".into()
                        },
                        output::time(k["created"].as_i64()),
                        output::text(&k["dns_name"]),
                    ]
                })
                .collect();
            output::table(
                &[
                    "DOMAIN",
                    "SELECTOR",
                    "ALGORITHM",
                    "STATE",
                    "CREATED",
                    "DNS NAME",
                ],
                &rows,
            );
            if keys.is_empty() {
                eprintln!("no DKIM keys: `lazaret dkim generate DOMAIN` makes one");
            }
            Ok(())
        }
        DkimCommand::Remove { domain, selector } => {
            let path = match &selector {
                Some(s) => format!("/api/dkim/{}?selector={}", segment(&domain), segment(s)),
                None => format!("/api/dkim/{}", segment(&domain)),
            };
            let gone = api.send("DELETE", &path, Value::Null)?;
            for k in gone.as_array().into_iter().flatten() {
                println!(
                    "removed {} (selector {}); its DNS record {} can go once mail signed with it is delivered",
                    output::text(&k["domain"]),
                    output::text(&k["selector"]),
                    output::text(&k["dns_name"])
                );
            }
            Ok(())
        }
    }
}

/// `generate` and `rotate`: the same request to their own path.
fn make(api: &Api, path: &str, key: NewKey) -> Result<()> {
    let body = json!({ "selector": key.selector, "algorithm": key.algorithm });
    let made = api.send("POST", path, body)?;
    print_new(&made, key.json)
}

fn print_new(key: &Value, json: bool) -> Result<()> {
    if json {
        return output::json(key);
    }
    let domain = output::text(&key["domain"]);
    if key["active"].as_bool() == Some(true) {
        println!(
            "{domain} signs with selector {} ({}). Publish this DNS TXT record:\n",
            output::text(&key["selector"]),
            output::text(&key["algorithm"])
        );
    } else {
        println!(
            "{domain} has a new standby key, selector {} ({}). Publish this DNS TXT record, \
             then `lazaret dkim rotate {domain}` to sign with it:\n",
            output::text(&key["selector"]),
            output::text(&key["algorithm"])
        );
    }
    // Zone-file syntax; TXT strings longer than 255 bytes are split (RFC 4408 3.1.3
    // style): an RSA key does not fit in one.
    let txt = output::text(&key["dns_txt"]);
    let parts: Vec<String> = txt
        .as_bytes()
        .chunks(250)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    println!(
        "{}. IN TXT ( {} )",
        output::text(&key["dns_name"]),
        parts.join(" ")
    );
    Ok(())
}
