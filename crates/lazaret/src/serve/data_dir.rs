//! Files the server keeps in its data directory besides the store: the admin token,
//! the addresses it actually listens on, and the lock that keeps a second server off
//! the same store.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

pub const TOKEN_FILE: &str = "admin.token";
pub const LISTENERS_FILE: &str = "listeners.json";

/// What `data_dir/listeners.json` says: where the running server can be reached.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Listeners {
    pub pid: u32,
    pub smtp: Vec<SocketAddr>,
    #[serde(default)]
    pub pop3: Vec<SocketAddr>,
    pub imap: Vec<SocketAddr>,
    pub imaps: Vec<SocketAddr>,
    #[serde(default)]
    pub submission: Vec<SocketAddr>,
    /// Submission with implicit TLS (`[submission] tls_listen`, port 465).
    #[serde(default)]
    pub submissions: Vec<SocketAddr>,
    pub admin: SocketAddr,
    /// `[admin] tls_listen`: the API and console over HTTPS.
    #[serde(default)]
    pub admin_tls: Vec<SocketAddr>,
}

pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join(TOKEN_FILE)
}

/// Reads the admin token, creating a random one (mode 0600) on first start.
pub fn load_or_create_token(data_dir: &Path) -> Result<String> {
    let path = token_path(data_dir);
    if let Ok(token) = fs::read_to_string(&path) {
        let token = token.trim().to_string();
        if token.len() >= 32 {
            return Ok(token);
        }
    }
    let token = hex::encode(rand::random::<[u8; 32]>());
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot write the admin token to {}", path.display()))?;
    f.write_all(token.as_bytes())?;
    f.sync_all()?;
    Ok(token)
}

pub fn write_listeners(data_dir: &Path, listeners: &Listeners) -> Result<()> {
    let path = data_dir.join(LISTENERS_FILE);
    let tmp = data_dir.join(format!("{LISTENERS_FILE}.tmp"));
    fs::write(&tmp, serde_json::to_vec_pretty(listeners)?)
        .and_then(|_| fs::rename(&tmp, &path))
        .with_context(|| format!("cannot write {}", path.display()))
}

pub fn read_listeners(data_dir: &Path) -> Option<Listeners> {
    let text = fs::read(data_dir.join(LISTENERS_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

pub fn remove_listeners(data_dir: &Path) {
    let _ = fs::remove_file(data_dir.join(LISTENERS_FILE));
}

/// Holds an exclusive lock on `data_dir/lock` for the life of the server.
pub struct DataDirLock {
    _file: File,
}

pub fn lock(data_dir: &Path) -> Result<DataDirLock> {
    let path = data_dir.join("lock");
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on a file descriptor we own; no memory is shared.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        bail!(
            "another Lazaret server is already using {} (stop it first, or give this one another data_dir)",
            data_dir.display()
        );
    }
    Ok(DataDirLock { _file: file })
}
