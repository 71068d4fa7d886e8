//! Local domains and users (argon2id passwords), and the RCPT check: is an address
//! one of ours, and does the user exist.

use super::*;
use crate::addresses::{new_account, normalize_address, valid_domain};

impl EmbeddedStore {
    pub(super) fn recipient_status_impl(&self, address: &str) -> Result<RecipientStatus> {
        let Some((address, domain)) = normalize_address(address) else {
            return Ok(RecipientStatus::NotLocal);
        };
        self.read(move |c| {
            let local: bool = c
                .prepare_cached("SELECT 1 FROM domains WHERE name=?1")?
                .exists([&domain])?;
            if !local {
                return Ok(RecipientStatus::NotLocal);
            }
            let user: bool = c
                .prepare_cached("SELECT 1 FROM users WHERE address=?1")?
                .exists([&address])?;
            Ok(if user {
                RecipientStatus::LocalUser
            } else {
                RecipientStatus::UnknownLocalUser
            })
        })
    }

    pub(super) fn domain_add_impl(&self, name: &str) -> Result<()> {
        let name = name.trim().to_ascii_lowercase();
        if !valid_domain(&name) {
            return Err(StoreError::Invalid(format!(
                "{name:?} is not a domain name (letters, digits, hyphens and dots)"
            )));
        }
        self.write(move |c| {
            let n = c.execute(
                "INSERT OR IGNORE INTO domains(name, created) VALUES(?1, ?2)",
                params![name, now()],
            )?;
            if n == 0 {
                return Err(StoreError::Exists(format!("domain {name} already exists")));
            }
            Ok(())
        })
    }

    pub(super) fn domain_list_impl(&self) -> Result<Vec<DomainInfo>> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT d.name, (SELECT COUNT(*) FROM users u WHERE u.domain=d.name)
                 FROM domains d ORDER BY d.name",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(DomainInfo {
                    name: r.get(0)?,
                    users: r.get::<_, i64>(1)? as u64,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    pub(super) fn domain_remove_impl(&self, name: &str) -> Result<()> {
        let name = name.trim().to_ascii_lowercase();
        self.write(move |c| {
            let users: i64 =
                c.query_row("SELECT COUNT(*) FROM users WHERE domain=?1", [&name], |r| {
                    r.get(0)
                })?;
            if users > 0 {
                return Err(StoreError::Invalid(format!(
                    "domain {name} still has {users} user(s); remove them first"
                )));
            }
            if c.execute("DELETE FROM domains WHERE name=?1", [&name])? == 0 {
                return Err(StoreError::NotFound(format!("no local domain {name}")));
            }
            Ok(())
        })
    }

    pub(super) fn user_add_impl(&self, address: &str, password: &str) -> Result<()> {
        let (address, domain, hash) = new_account(address, password)?;
        self.write(move |c| {
            if !c.prepare_cached("SELECT 1 FROM domains WHERE name=?1")?.exists([&domain])? {
                return Err(StoreError::NotFound(format!(
                    "{domain} is not a local domain; add it first with `lazaret domain add {domain}`"
                )));
            }
            let n = c.execute(
                "INSERT OR IGNORE INTO users(address, domain, password, created) VALUES(?1,?2,?3,?4)",
                params![address, domain, hash, now()],
            )?;
            if n == 0 {
                return Err(StoreError::Exists(format!("user {address} already exists")));
            }
            for (name, special) in DEFAULT_FOLDERS {
                c.execute(
                    "INSERT INTO mailboxes(user, name, uidvalidity, special) VALUES(?1,?2,?3,?4)",
                    params![address, name, super::folders::new_uidvalidity(c)?, special],
                )?;
                c.execute(
                    "INSERT OR IGNORE INTO subscriptions(user, name) VALUES(?1, ?2)",
                    params![address, name],
                )?;
            }
            Ok(())
        })
    }

    pub(super) fn user_list_impl(&self) -> Result<Vec<UserInfo>> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT u.address, COUNT(e.id), COALESCE(SUM(m.size), 0) FROM users u
                 LEFT JOIN mailboxes b ON b.user=u.address
                 LEFT JOIN mailbox_entries e ON e.mailbox=b.id
                 LEFT JOIN messages m ON m.id=e.message
                 GROUP BY u.address ORDER BY u.address",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(UserInfo {
                    address: r.get(0)?,
                    messages: r.get::<_, i64>(1)? as u64,
                    bytes: r.get::<_, i64>(2)? as u64,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    pub(super) fn user_remove_impl(&self, address: &str, delete_mail: bool) -> Result<u64> {
        let address = address.trim().to_ascii_lowercase();
        let removed = self.write(move |c| {
            if !c.prepare_cached("SELECT 1 FROM users WHERE address=?1")?.exists([&address])? {
                return Err(StoreError::NotFound(format!("no user {address}")));
            }
            let count: i64 = c.query_row(
                "SELECT COUNT(*) FROM mailbox_entries e JOIN mailboxes b ON b.id=e.mailbox
                 WHERE b.user=?1",
                [&address],
                |r| r.get(0),
            )?;
            if count > 0 && !delete_mail {
                return Err(StoreError::Invalid(format!(
                    "user {address} has {count} message(s); pass --delete-mail to delete them with the account"
                )));
            }
            let messages: Vec<i64> = c
                .prepare(
                    "SELECT DISTINCT e.message FROM mailbox_entries e
                     JOIN mailboxes b ON b.id=e.mailbox WHERE b.user=?1",
                )?
                .query_map([&address], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            c.execute(
                "DELETE FROM mailbox_entries WHERE mailbox IN (SELECT id FROM mailboxes WHERE user=?1)",
                [&address],
            )?;
            c.execute("DELETE FROM mailboxes WHERE user=?1", [&address])?;
            c.execute("DELETE FROM users WHERE address=?1", [&address])?;
            release(c, &messages)?;
            Ok(count as u64)
        })?;
        Ok(removed)
    }

    pub(super) fn user_set_password_impl(&self, address: &str, password: &str) -> Result<()> {
        if password.is_empty() {
            return Err(StoreError::Invalid("the password is empty".into()));
        }
        let address = address.trim().to_ascii_lowercase();
        let hash = password::hash(password);
        self.write(move |c| {
            if c.execute(
                "UPDATE users SET password=?1 WHERE address=?2",
                params![hash, address],
            )? == 0
            {
                return Err(StoreError::NotFound(format!("no user {address}")));
            }
            Ok(())
        })
    }

    pub(super) fn user_verify_password_impl(&self, address: &str, password: &str) -> Result<bool> {
        let address = address.trim().to_ascii_lowercase();
        let hash: Option<String> = self.read(move |c| {
            Ok(
                c.prepare_cached("SELECT password FROM users WHERE address=?1")?
                    .query_row([address], |r| r.get(0))
                    .optional()?,
            )
        })?;
        Ok(hash.is_some_and(|h| password::verify(password, &h)))
    }
}
