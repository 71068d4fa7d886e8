//! Folder names and flags as both stores keep them: what IMAP allows as a name, INBOX
//! in any case, RFC 6154's special uses, and flags stored as one space-separated
//! string.

use crate::model::FlagChange;
use crate::{Result, StoreError};

/// RFC 6154's special uses.
pub(crate) const SPECIAL_USES: [&str; 7] = [
    "\\All",
    "\\Archive",
    "\\Drafts",
    "\\Flagged",
    "\\Junk",
    "\\Sent",
    "\\Trash",
];

/// Folder names IMAP may use: no control characters, no empty hierarchy levels.
pub(crate) fn valid_folder(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.chars().any(|c| c.is_control() || c == '*' || c == '%')
        && !name.split('/').any(str::is_empty)
}

/// IMAP names INBOX case-insensitively; every other name is exact.
pub(crate) fn canonical(name: &str) -> String {
    if name.eq_ignore_ascii_case("INBOX") {
        "INBOX".into()
    } else {
        name.to_string()
    }
}

pub(crate) fn parse_flags(text: &str) -> Vec<String> {
    text.split(' ')
        .filter(|f| !f.is_empty())
        .map(str::to_string)
        .collect()
}

/// Flags as stored: unique (case-insensitive, as IMAP compares them), space-separated.
pub(crate) fn join_flags(flags: &[String]) -> String {
    let mut out: Vec<&str> = Vec::new();
    for f in flags {
        if !out.iter().any(|o| o.eq_ignore_ascii_case(f)) {
            out.push(f);
        }
    }
    out.join(" ")
}

/// A name for a new folder (or a subscription): INBOX in its one spelling, without
/// a trailing hierarchy separator, refused if IMAP cannot use it.
pub(crate) fn new_folder_name(name: &str) -> Result<String> {
    let name = canonical(name.trim_end_matches('/'));
    match valid_folder(&name) {
        true => Ok(name),
        false => Err(StoreError::Invalid(format!(
            "{name:?} is not a valid folder name"
        ))),
    }
}

/// A special use as RFC 6154 spells it, whatever case the client sent.
pub(crate) fn special_use(asked: Option<&str>) -> Result<Option<String>> {
    let Some(asked) = asked else {
        return Ok(None);
    };
    SPECIAL_USES
        .iter()
        .find(|u| u.eq_ignore_ascii_case(asked))
        .map(|u| Some(u.to_string()))
        .ok_or_else(|| StoreError::Invalid(format!("[USEATTR] {asked} is not a special use")))
}

/// The keywords (flags not starting with `\`) used in a folder, each once, for
/// SELECT's FLAGS.
pub(crate) fn keywords<'a>(flags: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut keywords: Vec<String> = Vec::new();
    for f in flags {
        if !f.starts_with('\\') && !keywords.iter().any(|k| k.eq_ignore_ascii_case(f)) {
            keywords.push(f.clone());
        }
    }
    keywords
}

/// Whether a flag list holds `\Seen`.
pub(crate) fn seen(flags: &[String]) -> bool {
    flags.iter().any(|f| f.eq_ignore_ascii_case("\\Seen"))
}

/// A message's flags after a STORE: replaced, added to, or taken from (without case).
pub(crate) fn changed_flags(
    mut set: Vec<String>,
    change: FlagChange,
    flags: &[String],
) -> Vec<String> {
    match change {
        FlagChange::Replace => set = flags.to_vec(),
        FlagChange::Add => set.extend(flags.iter().cloned()),
        FlagChange::Remove => set.retain(|f| !flags.iter().any(|x| x.eq_ignore_ascii_case(f))),
    }
    set
}
