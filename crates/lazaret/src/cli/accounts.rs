//! `domain add|list|remove` and `user add|list|remove|passwd`.

use super::client::{segment, Api, Failure};
use super::{output, EXIT_USAGE};
use anyhow::Result;
use clap::Subcommand;
use lazaret_core::Size;
use serde_json::{json, Value};
use std::io::{BufRead, IsTerminal};

#[derive(Subcommand)]
pub enum DomainCommand {
    /// Accept mail for this domain
    Add { name: String },
    /// Local domains and their user counts
    List {
        #[arg(long)]
        json: bool,
    },
    /// Stop accepting mail for a domain (it must have no users)
    Remove { name: String },
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Add a user (password asked on the terminal)
    Add {
        address: String,
        /// Read the password from the first line of standard input
        #[arg(long)]
        password_stdin: bool,
    },
    /// Users with their message counts
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a user
    Remove {
        address: String,
        /// Also delete the mail in the user's mailboxes (refused otherwise)
        #[arg(long)]
        delete_mail: bool,
    },
    /// Set a user's password
    Passwd {
        address: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

pub fn domain(api: &Api, command: DomainCommand) -> Result<()> {
    match command {
        DomainCommand::Add { name } => {
            let r = api.send("POST", "/api/domains", json!({ "name": name }))?;
            println!("domain {} added", r["domain"].as_str().unwrap_or(&name));
        }
        DomainCommand::List { json } => {
            let domains: Vec<Value> = api.get("/api/domains")?;
            if json {
                return output::json(&domains);
            }
            let rows: Vec<Vec<String>> = domains
                .iter()
                .map(|d| {
                    vec![
                        d["name"].as_str().unwrap_or("").into(),
                        d["users"].to_string(),
                    ]
                })
                .collect();
            output::table(&["DOMAIN", "USERS"], &rows);
        }
        DomainCommand::Remove { name } => {
            api.send(
                "DELETE",
                &format!("/api/domains/{}", segment(&name)),
                Value::Null,
            )?;
            println!("domain {name} removed");
        }
    }
    Ok(())
}

fn read_password(password_stdin: bool) -> Result<String> {
    let password = if password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        let again = rpassword::prompt_password("Again: ")?;
        if first != again {
            return Err(
                Failure::new(EXIT_USAGE, "the two passwords differ; nothing changed").into(),
            );
        }
        first
    } else {
        return Err(Failure::new(
            EXIT_USAGE,
            "no terminal to ask the password on; pass --password-stdin and write it to standard input",
        )
        .into());
    };
    if password.is_empty() {
        return Err(Failure::new(EXIT_USAGE, "the password is empty; nothing changed").into());
    }
    Ok(password)
}

pub fn user(api: &Api, command: UserCommand) -> Result<()> {
    match command {
        UserCommand::Add {
            address,
            password_stdin,
        } => {
            let password = read_password(password_stdin)?;
            let r = api.send(
                "POST",
                "/api/users",
                json!({ "address": address, "password": password }),
            )?;
            println!("user {} added", r["user"].as_str().unwrap_or(&address));
        }
        UserCommand::List { json } => {
            let users: Vec<Value> = api.get("/api/users")?;
            if json {
                return output::json(&users);
            }
            let rows: Vec<Vec<String>> = users
                .iter()
                .map(|u| {
                    vec![
                        u["address"].as_str().unwrap_or("").into(),
                        u["messages"].to_string(),
                        Size(u["bytes"].as_u64().unwrap_or(0)).to_string(),
                    ]
                })
                .collect();
            output::table(&["USER", "MESSAGES", "SIZE"], &rows);
        }
        UserCommand::Remove {
            address,
            delete_mail,
        } => {
            let r = api.send(
                "DELETE",
                &format!("/api/users/{}?delete_mail={delete_mail}", segment(&address)),
                Value::Null,
            )?;
            println!(
                "user {address} removed ({} messages deleted)",
                r["messages_deleted"]
            );
        }
        UserCommand::Passwd {
            address,
            password_stdin,
        } => {
            let password = read_password(password_stdin)?;
            api.send(
                "PUT",
                &format!("/api/users/{}/password", segment(&address)),
                json!({ "password": password }),
            )?;
            println!("password of {address} changed");
        }
    }
    Ok(())
}
