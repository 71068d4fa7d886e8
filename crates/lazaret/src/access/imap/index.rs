//! The folder index shared by IMAP sessions: the last snapshot read of each folder,
//! reused while the store's write generation is unchanged. A repeated SELECT of a big
//! folder then costs nothing instead of re-reading every row; any committed write
//! (delivery, another session, an admin action) makes the next SELECT read again.

use crate::server::Server;
use lazaret_store::{FolderSnapshot, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Folders kept; the least useful are dropped wholesale beyond this.
const MAX_FOLDERS: usize = 256;

#[derive(Default)]
pub struct FolderIndex {
    folders: Mutex<HashMap<(String, String), (u64, FolderSnapshot)>>,
    /// Where `\Recent` starts at least, per folder, as claims by this server's sessions
    /// left it: claims do not invalidate cached snapshots (they are quiet writes), so a
    /// snapshot's own `recent_uid` may be older.
    /// Keyed by UIDVALIDITY too: a folder deleted and created again starts afresh.
    recent_floor: Mutex<HashMap<(String, String, i64), i64>>,
}

fn key(user: &str, folder: &str) -> (String, String) {
    let folder = if folder.eq_ignore_ascii_case("INBOX") {
        "INBOX"
    } else {
        folder
    };
    (user.to_string(), folder.to_string())
}

impl FolderIndex {
    pub async fn snapshot(
        &self,
        server: &Arc<Server>,
        user: &str,
        folder: &str,
    ) -> Result<FolderSnapshot, StoreError> {
        let key = key(user, folder);
        let (floor_user, floor_folder) = key.clone();
        let with_floor = |mut snap: FolderSnapshot| {
            let floor = self
                .recent_floor
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&(floor_user.clone(), floor_folder.clone(), snap.uidvalidity))
                .copied()
                .unwrap_or(0);
            snap.recent_uid = snap.recent_uid.max(floor);
            snap
        };
        // Read before the snapshot: a write committing meanwhile changes it, so the
        // entry stored below is never taken for newer than it is.
        let generation = server.store.write_generation();
        if let Some((g, snap)) = self.lock().get(&key) {
            if *g == generation {
                return Ok(with_floor(snap.clone()));
            }
        }
        let (u, f) = key.clone();
        let snap = server
            .store_call(move |s| s.folder_snapshot(&u, &f))
            .await?;
        let mut folders = self.lock();
        if folders.len() >= MAX_FOLDERS {
            folders.clear();
        }
        folders.insert(key, (generation, snap.clone()));
        Ok(with_floor(snap))
    }

    /// A session learnt that the folder's recent messages start at `from` at least.
    pub fn claimed(&self, user: &str, folder: &str, uidvalidity: i64, from: i64) {
        let mut floors = self.recent_floor.lock().unwrap_or_else(|e| e.into_inner());
        if floors.len() >= MAX_FOLDERS * 16 {
            floors.clear();
        }
        let (user, folder) = key(user, folder);
        let floor = floors.entry((user, folder, uidvalidity)).or_insert(0);
        *floor = (*floor).max(from);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), (u64, FolderSnapshot)>> {
        self.folders.lock().unwrap_or_else(|e| e.into_inner())
    }
}
