//! Addresses and domain names as every store keeps them: lower-case, checked.

use crate::{password, Result, StoreError};

/// Splits `local@domain` and lower-cases it; None if it is not an address.
pub fn normalize_address(address: &str) -> Option<(String, String)> {
    let address = address.trim().to_ascii_lowercase();
    let (local, domain) = address.rsplit_once('@')?;
    let ok_local =
        !local.is_empty() && !local.contains(|c: char| c.is_whitespace() || c == '<' || c == '>');
    let ok_domain = !domain.is_empty()
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    (ok_local && ok_domain).then(|| (format!("{local}@{domain}"), domain.to_string()))
}

pub(crate) fn valid_domain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// A new account's address (normalised), domain and password hash, or why not.
pub(crate) fn new_account(address: &str, password: &str) -> Result<(String, String, String)> {
    let Some((address, domain)) = normalize_address(address) else {
        return Err(StoreError::Invalid(format!(
            "{address:?} is not an address of the form user@domain"
        )));
    };
    if password.is_empty() {
        return Err(StoreError::Invalid("the password is empty".into()));
    }
    Ok((address, domain, password::hash(password)))
}
