//! `[store] min_free`: new mail is refused while the data directory's filesystem has
//! less free space than the reserve, so that a flood can never fill the disk under the
//! store, and the admin's own actions (quarantine, delete, restore: a few rows each)
//! still find room. Also what every listener answers when a write did fail for want of
//! space.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// statvfs is cheap, but a flood asks for every recipient of every message: a figure
/// this recent is used again while it is far from the reserve ...
const FRESH: Duration = Duration::from_millis(250);
/// ... by this much; nearer, every question looks again, so that mail is refused and
/// taken again the moment the line is crossed.
const NEAR: u64 = 64 << 20;

pub struct DiskSpace {
    dir: PathBuf,
    min_free: u64,
    last: Mutex<Option<(Instant, u64)>>,
    /// Refusing now (for the log line on each change and for `status`).
    refusing: AtomicBool,
}

impl DiskSpace {
    pub fn new(dir: PathBuf, min_free: u64) -> DiskSpace {
        DiskSpace {
            dir,
            min_free,
            last: Mutex::new(None),
            refusing: AtomicBool::new(false),
        }
    }

    pub fn min_free(&self) -> u64 {
        self.min_free
    }

    /// Bytes free for an unprivileged writer (what the server has once it dropped
    /// root), as of at most `FRESH` ago.
    pub fn free(&self) -> u64 {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, free)) = *last {
            if at.elapsed() < FRESH && free >= self.min_free.saturating_add(NEAR) {
                return free;
            }
        }
        let free = statvfs_free(&self.dir).unwrap_or(u64::MAX);
        *last = Some((Instant::now(), free));
        free
    }

    /// Whether `incoming` more bytes would eat into the reserve: new mail is then
    /// refused. Logs when refusing starts and ends.
    pub fn refuses(&self, incoming: u64) -> bool {
        let mut free = self.free();
        if free < self.min_free.saturating_add(NEAR).saturating_add(incoming) {
            *self.last.lock().unwrap_or_else(|e| e.into_inner()) = None;
            free = self.free();
        }
        let refuse = free < self.min_free.saturating_add(incoming);
        if incoming == 0 && refuse != self.refusing.swap(refuse, Ordering::Relaxed) {
            if refuse {
                tracing::error!(
                    free,
                    min_free = self.min_free,
                    "refusing new mail: {} has less free space than [store] min_free; free some, or move the data",
                    self.dir.display()
                );
            } else {
                tracing::warn!(
                    free,
                    "free space is back above [store] min_free: taking mail again"
                );
            }
        }
        refuse
    }

    /// A write failed for want of space: the next question looks again.
    pub fn note_full(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if !self.refusing.swap(true, Ordering::Relaxed) {
            tracing::error!(
                "a write failed: the filesystem of {} is full",
                self.dir.display()
            );
        }
    }

    pub fn refusing(&self) -> bool {
        self.refuses(0)
    }
}

fn statvfs_free(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `st` is a valid out-parameter.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

/// What SMTP answers for want of space (RFC 3463 4.3.1: mail system full).
pub fn smtp_reply() -> lazaret_proto::smtp::Reply {
    lazaret_proto::smtp::Reply::new(
        452,
        [4, 3, 1],
        "Insufficient system storage; try again later",
    )
}

/// What IMAP APPEND answers for want of space (as Dovecot does).
pub const IMAP_TEXT: &str = "[OVERQUOTA] Not enough disk space on the server; try again later";
