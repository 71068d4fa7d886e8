//! Local domains and users (argon2id passwords), and the RCPT check.

use super::cached::Cached;
use super::{pg, PostgresStore};
use crate::addresses::{new_account, normalize_address, valid_domain};
use crate::{
    now, password, DomainInfo, RecipientStatus, Result, StoreError, UserInfo, DEFAULT_FOLDERS,
};

impl PostgresStore {
    pub fn recipient_status(&self, address: &str) -> Result<RecipientStatus> {
        let Some((address, domain)) = normalize_address(address) else {
            return Ok(RecipientStatus::NotLocal);
        };
        self.with_client(move |c| async move {
            let row = c
                .query_one_cached(
                    "SELECT EXISTS(SELECT 1 FROM domains WHERE name=$1),
                            EXISTS(SELECT 1 FROM users WHERE address=$2)",
                    &[&domain, &address],
                )
                .await?;
            Ok(match (row.get(0), row.get(1)) {
                (false, _) => RecipientStatus::NotLocal,
                (true, true) => RecipientStatus::LocalUser,
                (true, false) => RecipientStatus::UnknownLocalUser,
            })
        })
    }

    pub fn domain_add(&self, name: &str) -> Result<()> {
        let name = name.trim().to_ascii_lowercase();
        if !valid_domain(&name) {
            return Err(StoreError::Invalid(format!(
                "{name:?} is not a domain name (letters, digits, hyphens and dots)"
            )));
        }
        self.with_client(move |c| async move {
            let n = c
                .execute_cached(
                    "INSERT INTO domains(name, created) VALUES($1, $2) ON CONFLICT DO NOTHING",
                    &[&name, &now()],
                )
                .await?;
            if n == 0 {
                return Err(StoreError::Exists(format!("domain {name} already exists")));
            }
            Ok(())
        })
    }

    pub fn domain_list(&self) -> Result<Vec<DomainInfo>> {
        self.with_client(|c| async move {
            let rows = c
                .query_cached(
                    "SELECT d.name, (SELECT COUNT(*) FROM users u WHERE u.domain=d.name)
                     FROM domains d ORDER BY d.name",
                    &[],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| DomainInfo {
                    name: r.get(0),
                    users: r.get::<_, i64>(1) as u64,
                })
                .collect())
        })
    }

    pub fn domain_remove(&self, name: &str) -> Result<()> {
        let name = name.trim().to_ascii_lowercase();
        self.with_client(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            // Locks the domain's row: a user added meanwhile on another node waits
            // for this transaction and then finds no domain.
            if tx
                .query_opt_cached("SELECT 1 FROM domains WHERE name=$1 FOR UPDATE", &[&name])
                .await?
                .is_none()
            {
                return Err(StoreError::NotFound(format!("no local domain {name}")));
            }
            let users: i64 = tx
                .query_one_cached("SELECT COUNT(*) FROM users WHERE domain=$1", &[&name])
                .await?
                .get(0);
            if users > 0 {
                return Err(StoreError::Invalid(format!(
                    "domain {name} still has {users} user(s); remove them first"
                )));
            }
            tx.execute_cached("DELETE FROM domains WHERE name=$1", &[&name])
                .await?;
            super::commit(tx).await
        })
    }

    pub fn user_add(&self, address: &str, password: &str) -> Result<()> {
        let (address, domain, hash) = new_account(address, password)?;
        self.with_client(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            if tx
                .query_opt_cached("SELECT 1 FROM domains WHERE name=$1 FOR SHARE", &[&domain])
                .await?
                .is_none()
            {
                return Err(StoreError::NotFound(format!(
                    "{domain} is not a local domain; add it first with `lazaret domain add {domain}`"
                )));
            }
            let n = tx
                .execute_cached(
                    "INSERT INTO users(address, domain, password, created) VALUES($1, $2, $3, $4)
                     ON CONFLICT DO NOTHING",
                    &[&address, &domain, &hash, &now()],
                )
                .await?;
            if n == 0 {
                return Err(StoreError::Exists(format!("user {address} already exists")));
            }
            for (name, special) in DEFAULT_FOLDERS {
                let uidvalidity = new_uidvalidity(&tx).await?;
                tx.execute_cached(
                    "INSERT INTO mailboxes(\"user\", name, uidvalidity, special)
                     VALUES($1, $2, $3, $4)",
                    &[&address, &name, &uidvalidity, &special],
                )
                .await?;
                tx.execute_cached(
                    "INSERT INTO subscriptions(\"user\", name) VALUES($1, $2) ON CONFLICT DO NOTHING",
                    &[&address, &name],
                )
                .await?;
            }
            super::commit(tx).await
        })
    }

    pub fn user_list(&self) -> Result<Vec<UserInfo>> {
        self.with_client(|c| async move {
            let rows = c
                .query_cached(
                    "SELECT u.address, COUNT(e.id), COALESCE(SUM(m.size), 0)::bigint FROM users u
                     LEFT JOIN mailboxes b ON b.\"user\"=u.address
                     LEFT JOIN mailbox_entries e ON e.mailbox=b.id
                     LEFT JOIN messages m ON m.id=e.message
                     GROUP BY u.address ORDER BY u.address",
                    &[],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| UserInfo {
                    address: r.get(0),
                    messages: r.get::<_, i64>(1) as u64,
                    bytes: r.get::<_, i64>(2) as u64,
                })
                .collect())
        })
    }

    pub fn user_exists(&self, address: &str) -> Result<bool> {
        let address = address.trim().to_ascii_lowercase();
        self.with_client(move |c| async move {
            Ok(
                c.query_opt_cached("SELECT 1 FROM users WHERE address=$1", &[&address])
                    .await?
                    .is_some(),
            )
        })
    }

    /// Removes the account; its folders' messages go with it only if `delete_mail`.
    /// Messages no longer held anywhere are left to the reclaim. Returns how many
    /// folder entries went.
    pub fn user_remove(&self, address: &str, delete_mail: bool) -> Result<u64> {
        let address = address.trim().to_ascii_lowercase();
        self.with_client(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            if tx
                .query_opt_cached("SELECT 1 FROM users WHERE address=$1 FOR UPDATE", &[&address])
                .await?
                .is_none()
            {
                return Err(StoreError::NotFound(format!("no user {address}")));
            }
            let count: i64 = tx
                .query_one_cached(
                    "SELECT COUNT(*) FROM mailbox_entries e JOIN mailboxes b ON b.id=e.mailbox
                     WHERE b.\"user\"=$1",
                    &[&address],
                )
                .await?
                .get(0);
            if count > 0 && !delete_mail {
                return Err(StoreError::Invalid(format!(
                    "user {address} has {count} message(s); pass --delete-mail to delete them with the account"
                )));
            }
            let messages: Vec<i64> = tx
                .query_cached(
                    "DELETE FROM mailbox_entries WHERE mailbox IN
                         (SELECT id FROM mailboxes WHERE \"user\"=$1)
                     RETURNING message",
                    &[&address],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            tx.execute_cached("DELETE FROM mailboxes WHERE \"user\"=$1", &[&address])
                .await?;
            tx.execute_cached("DELETE FROM users WHERE address=$1", &[&address])
                .await?;
            super::release(&tx, &messages).await?;
            super::commit(tx).await?;
            Ok(count as u64)
        })
    }

    pub fn user_set_password(&self, address: &str, password: &str) -> Result<()> {
        if password.is_empty() {
            return Err(StoreError::Invalid("the password is empty".into()));
        }
        let address = address.trim().to_ascii_lowercase();
        let hash = password::hash(password);
        self.with_client(move |c| async move {
            let n = c
                .execute_cached(
                    "UPDATE users SET password=$1 WHERE address=$2",
                    &[&hash, &address],
                )
                .await?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("no user {address}")));
            }
            Ok(())
        })
    }

    pub fn user_verify_password(&self, address: &str, password: &str) -> Result<bool> {
        let address = address.trim().to_ascii_lowercase();
        let hash: Option<String> = self.with_client(move |c| async move {
            Ok(
                c.query_opt_cached("SELECT password FROM users WHERE address=$1", &[&address])
                    .await?
                    .map(|r| r.get(0)),
            )
        })?;
        // Verified here, not on the client's runtime: argon2 is seconds of CPU per
        // hundred logins, and the runtime's two threads serve every request.
        Ok(hash.is_some_and(|h| password::verify(password, &h)))
    }
}

/// A new folder's UIDVALIDITY: a non-zero 32-bit number, the time or one more than the
/// last one given, whichever is greater (a folder deleted and created again in the
/// same second still gets a new one). One statement, so nodes never hand out the same
/// value at once.
pub(super) async fn new_uidvalidity(tx: &deadpool_postgres::Transaction<'_>) -> Result<i64> {
    let now = (now() as u32).max(1) as i64;
    let value: String = tx
        .query_one_cached(
            "INSERT INTO settings(key, value) VALUES('imap.uidvalidity', $1::bigint::text)
             ON CONFLICT(key) DO UPDATE SET value = GREATEST($1::bigint,
                 CASE WHEN settings.value::bigint >= 4294967295 THEN 1
                      ELSE settings.value::bigint + 1 END)::text
             RETURNING value",
            &[&now],
        )
        .await?
        .get(0);
    value
        .parse()
        .map_err(|_| StoreError::Invalid(format!("setting imap.uidvalidity is {value:?}")))
}
