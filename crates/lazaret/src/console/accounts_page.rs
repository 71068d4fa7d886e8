//! `/accounts`: the local domains and users, as `lazaret domain` and `lazaret user` keep
//! them: add, remove (a user's mail only when asked, after a tick), set a password.
//! Every form names its target in a field, not in the path: an address needs no
//! escaping there.

use super::layout::{self, bytes};
use super::{see_other, Admin, Console, PageError, PageResult};
use crate::admin;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::{Extension, Form, Json};
use maud::html;
use serde::Deserialize;
use std::sync::Arc;

pub async fn show(State(console): State<Arc<Console>>, admin: Admin) -> PageResult {
    let Json(domains) = admin::accounts::domain_list(State(console.server.clone())).await?;
    let Json(users) = admin::accounts::user_list(State(console.server.clone())).await?;
    let body = html! {
        section aria-labelledby="domains" {
            h2 #domains { "Domains" }
            table.results {
                thead { tr { th { "Domain" } th.num { "Users" } th { "" } } }
                tbody { @for d in &domains { tr {
                    td { (d.name) }
                    td.num { (d.users) }
                    td { (layout::button(&admin, "/accounts/domains/remove", "Remove", &[("name", &d.name)])) }
                } } }
            }
            form.inline method="post" action="/accounts/domains/add" {
                (layout::csrf(&admin))
                label for="domain-name" { "New domain" }
                input #domain-name type="text" name="name" size="30" placeholder="example.org" required;
                button type="submit" { "Add domain" }
            }
        }
        section aria-labelledby="users" {
            h2 #users { "Users" }
            form.inline method="post" action="/accounts/users/add" {
                (layout::csrf(&admin))
                label for="user-address" { "Address" }
                input #user-address type="email" name="address" size="30" placeholder="alice@example.org" required;
                label for="user-password" { "Password" }
                input #user-password type="password" name="password" size="20" autocomplete="new-password" required;
                button type="submit" { "Add user" }
            }
            table.results {
                thead { tr { th { "User" } th.num { "Messages" } th.num { "Size" } th { "Password" } th { "Remove" } } }
                tbody { @for u in &users { tr {
                    td { (u.address) }
                    td.num { (u.messages) }
                    td.num { (bytes(u.bytes)) }
                    td {
                        form.inline method="post" action="/accounts/users/password" {
                            (layout::csrf(&admin))
                            input type="hidden" name="address" value=(u.address);
                            input type="password" name="password" size="14" autocomplete="new-password"
                                aria-label={ "New password for " (u.address) } required;
                            button type="submit" { "Set" }
                        }
                    }
                    td {
                        form.inline method="post" action="/accounts/users/remove" {
                            (layout::csrf(&admin))
                            input type="hidden" name="address" value=(u.address);
                            label { input type="checkbox" name="delete_mail"; " and their " (u.messages) " message(s)" }
                            label { input type="checkbox" name="confirm" required; " sure" }
                            button type="submit" { "Remove" }
                        }
                    }
                } } }
            }
        }
    };
    Ok(layout::page("Users and domains", "/accounts", &admin, body).into_response())
}

/// Every form of the page; a checkbox is present (`on`) only when ticked.
#[derive(Deserialize)]
pub struct AccountForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    delete_mail: Option<String>,
    #[serde(default)]
    confirm: Option<String>,
}

pub async fn domain_add(
    State(console): State<Arc<Console>>,
    admin: Admin,
    headers: HeaderMap,
    Form(form): Form<AccountForm>,
) -> PageResult {
    admin.check_post(&headers, &form.csrf)?;
    let request = admin::accounts::NewDomain { name: form.name };
    let Json(r) = admin::accounts::domain_add(
        State(console.server.clone()),
        Extension(admin.actor()),
        Json(request),
    )
    .await?;
    let name = r["domain"].as_str().unwrap_or_default();
    console
        .sessions
        .notice(&admin, format!("Domain {name} added"));
    see_other("/accounts")
}

pub async fn domain_remove(
    State(console): State<Arc<Console>>,
    admin: Admin,
    headers: HeaderMap,
    Form(form): Form<AccountForm>,
) -> PageResult {
    admin.check_post(&headers, &form.csrf)?;
    let Json(_) = admin::accounts::domain_remove(
        State(console.server.clone()),
        Extension(admin.actor()),
        Path(form.name.clone()),
    )
    .await?;
    console
        .sessions
        .notice(&admin, format!("Domain {} removed", form.name));
    see_other("/accounts")
}

pub async fn user_add(
    State(console): State<Arc<Console>>,
    admin: Admin,
    headers: HeaderMap,
    Form(form): Form<AccountForm>,
) -> PageResult {
    admin.check_post(&headers, &form.csrf)?;
    let request = admin::accounts::NewUser {
        address: form.address,
        password: form.password,
    };
    let Json(r) = admin::accounts::user_add(
        State(console.server.clone()),
        Extension(admin.actor()),
        Json(request),
    )
    .await?;
    let user = r["user"].as_str().unwrap_or_default();
    console
        .sessions
        .notice(&admin, format!("User {user} added"));
    see_other("/accounts")
}

pub async fn user_password(
    State(console): State<Arc<Console>>,
    admin: Admin,
    headers: HeaderMap,
    Form(form): Form<AccountForm>,
) -> PageResult {
    admin.check_post(&headers, &form.csrf)?;
    let request = admin::accounts::NewPassword {
        password: form.password,
    };
    let Json(_) = admin::accounts::user_passwd(
        State(console.server.clone()),
        Extension(admin.actor()),
        Path(form.address.clone()),
        Json(request),
    )
    .await?;
    console
        .sessions
        .notice(&admin, format!("Password of {} set", form.address));
    see_other("/accounts")
}

pub async fn user_remove(
    State(console): State<Arc<Console>>,
    admin: Admin,
    headers: HeaderMap,
    Form(form): Form<AccountForm>,
) -> PageResult {
    admin.check_post(&headers, &form.csrf)?;
    if form.confirm.is_none() {
        return Err(PageError::Status(
            StatusCode::BAD_REQUEST,
            format!("Removing {} wants the \"sure\" tick.", form.address),
        ));
    }
    let options = admin::accounts::RemoveOptions {
        delete_mail: form.delete_mail.is_some(),
    };
    let Json(r) = admin::accounts::user_remove(
        State(console.server.clone()),
        Extension(admin.actor()),
        Path(form.address.clone()),
        Query(options),
    )
    .await?;
    console.sessions.notice(
        &admin,
        format!(
            "User {} removed; {} message(s) deleted",
            form.address, r["messages_deleted"]
        ),
    );
    see_other("/accounts")
}
