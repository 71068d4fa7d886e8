//! Root only for as long as it takes: `serve` started as root switches to `[server]
//! user` before it opens a file or a socket, keeping one capability,
//! CAP_NET_BIND_SERVICE, so that ports below 1024 can be bound then and again later
//! (`lazaret smtp start` rebinds port 25 after a stop). Everything the server creates
//! is private to that user (umask 077: files 0600, directories 0700).
//!
//! This runs before the async runtime starts any thread: capabilities are per thread
//! on Linux, and threads created afterwards inherit the ones set here. Written with
//! libc calls rather than a crate because it is five system calls; `capset` has no
//! libc wrapper, so its two structures are declared here as the kernel defines them
//! (linux/capability.h).

use anyhow::{bail, Context, Result};
use lazaret_core::Config;
use std::ffi::{CStr, CString};
use std::path::Path;

const CAP_NET_BIND_SERVICE: u32 = 10;
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

struct Account {
    name: String,
    uid: libc::uid_t,
    gid: libc::gid_t,
}

/// Sets the umask and, when running as root, switches to `[server] user`.
pub fn settle(config: &Config) -> Result<()> {
    // SAFETY: umask only changes this process's file creation mask.
    unsafe {
        libc::umask(0o077);
    }
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let wanted = config.server.user.as_deref();
    if euid != 0 {
        if let Some(name) = wanted {
            let account = lookup(name)?;
            if account.uid != euid {
                bail!(
                    "[server] user = \"{name}\", but lazaret runs as uid {euid}: only root can switch users; start it as root or as {name}"
                );
            }
        }
        return Ok(());
    }
    match wanted {
        None if config.source.is_none() => {
            tracing::warn!(
                "running as root on built-in defaults (a loopback try-out); with a config file set [server] user = \"lazaret\" to run as an unprivileged account"
            );
            Ok(())
        }
        None => bail!(
            "lazaret serve will not run as root without [server] user: add\n\n    [server]\n    user = \"lazaret\"\n\nto {} (create the account with `useradd --system --home-dir /var/lib/lazaret lazaret`); the server binds its ports and then runs as that user. user = \"root\" stays root (not advised)",
            config.source.as_deref().map_or("the config".into(), |p| p.display().to_string())
        ),
        Some("root") => {
            tracing::warn!("running as root ([server] user = \"root\"): a flaw in any parser would be a flaw with root's rights");
            Ok(())
        }
        Some(name) => {
            let account = lookup(name)?;
            if account.uid == 0 {
                bail!("[server] user = \"{name}\" is root itself (uid 0); name an unprivileged account");
            }
            hand_over(&config.data_dir, &account)?;
            let backups = config.backup_dir();
            if !backups.starts_with(&config.data_dir) && backups.exists() {
                hand_over(&backups, &account)?;
            }
            switch_to(&account)?;
            tracing::info!("running as {} (uid {}), allowed to bind ports below 1024", account.name, account.uid);
            Ok(())
        }
    }
}

fn lookup(name: &str) -> Result<Account> {
    let c_name = CString::new(name).context("[server] user: the name holds a NUL byte")?;
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and `buf` outlives the use of `pw`.
    let rc = unsafe {
        libc::getpwnam_r(
            c_name.as_ptr(),
            &mut pw,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() {
        bail!(
            "[server] user = \"{name}\": no such account; create it (`useradd --system --home-dir /var/lib/lazaret {name}`) or name another"
        );
    }
    // SAFETY: getpwnam_r filled `pw`, whose name points into `buf`.
    let name = unsafe { CStr::from_ptr(pw.pw_name) }
        .to_string_lossy()
        .into_owned();
    Ok(Account {
        name,
        uid: pw.pw_uid,
        gid: pw.pw_gid,
    })
}

/// Creates `dir` if missing and gives it and everything in it to the account, mode
/// 0700 at the top (the files a root start left behind would otherwise stay root's).
fn hand_over(dir: &Path, account: &Account) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    chown_tree(dir, account)
        .with_context(|| format!("cannot give {} to {}", dir.display(), account.name))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} private", dir.display()))
}

fn chown_tree(path: &Path, account: &Account) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path)?;
    if meta.uid() != account.uid || meta.gid() != account.gid {
        std::os::unix::fs::lchown(path, Some(account.uid), Some(account.gid))?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), account)?;
        }
    }
    Ok(())
}

fn switch_to(account: &Account) -> Result<()> {
    let os = |what: &str| anyhow::anyhow!("{what}: {}", std::io::Error::last_os_error());
    // SAFETY: plain system calls on this (still single-threaded) process; the
    // structures passed live across each call.
    unsafe {
        if libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 {
            return Err(os("prctl(PR_SET_KEEPCAPS)"));
        }
        if libc::setgroups(1, &account.gid) != 0 {
            return Err(os("setgroups"));
        }
        if libc::setgid(account.gid) != 0 {
            return Err(os("setgid"));
        }
        if libc::setuid(account.uid) != 0 {
            return Err(os("setuid"));
        }
        let header = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let bit = 1u32 << CAP_NET_BIND_SERVICE;
        let data = [
            CapData {
                effective: bit,
                permitted: bit,
                inheritable: 0,
            },
            CapData::default(),
        ];
        if libc::syscall(libc::SYS_capset, &header, data.as_ptr()) != 0 {
            return Err(os("capset(CAP_NET_BIND_SERVICE)"));
        }
        libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0);
        // No way back: if root could be regained, the switch did not happen.
        if libc::setuid(0) == 0 {
            bail!(
                "switched to {} but could become root again; refusing to run",
                account.name
            );
        }
    }
    Ok(())
}
