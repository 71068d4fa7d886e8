//! The page around every view: title, navigation, the notice a POST left, sign-out.

use super::Admin;
use axum::response::Html;
use maud::{html, Markup, DOCTYPE};

pub use crate::cli::output::{age, text, time};

pub fn bare(title: &str, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · Lazaret" }
                    link rel="stylesheet" href="/console.css";
                }
                body { (body) }
            }
        }
        .into_string(),
    )
}

const NAV: [(&str, &str); 8] = [
    ("/", "Status"),
    ("/queues", "Queues"),
    ("/clusters", "Clusters"),
    ("/find", "Find"),
    ("/quarantine", "Quarantine"),
    ("/signatures", "Signatures"),
    ("/accounts", "Users"),
    ("/audit", "Audit log"),
];

pub fn page(title: &str, current: &str, admin: &Admin, body: Markup) -> Html<String> {
    bare(
        title,
        html! {
            header {
                nav aria-label="Console" {
                    span.brand { "Lazaret" }
                    ul {
                        @for (href, label) in NAV {
                            li {
                                @if href == current {
                                    a href=(href) aria-current="page" { (label) }
                                } @else {
                                    a href=(href) { (label) }
                                }
                            }
                        }
                    }
                    form.signout method="post" action="/signout" {
                        (csrf(admin))
                        button type="submit" { "Sign out" }
                    }
                }
            }
            main {
                h1 { (title) }
                @if let Some(n) = &admin.notice {
                    p.notice role="status" { (n) }
                }
                (body)
            }
        },
    )
}

/// The hidden CSRF field every form carries.
pub fn csrf(admin: &Admin) -> Markup {
    html! { input type="hidden" name="csrf" value=(admin.csrf); }
}

/// A one-button form posting to `action` (switches, freeze/thaw).
pub fn button(admin: &Admin, action: &str, label: &str, hidden: &[(&str, &str)]) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (csrf(admin))
            @for (name, value) in hidden {
                input type="hidden" name=(name) value=(value);
            }
            button type="submit" { (label) }
        }
    }
}

pub fn bytes(n: u64) -> String {
    lazaret_core::units::Size(n).to_string()
}
