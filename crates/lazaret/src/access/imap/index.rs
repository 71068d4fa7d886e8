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
}

impl FolderIndex {
    pub async fn snapshot(
        &self,
        server: &Arc<Server>,
        user: &str,
        folder: &str,
    ) -> Result<FolderSnapshot, StoreError> {
        let folder = if folder.eq_ignore_ascii_case("INBOX") {
            "INBOX"
        } else {
            folder
        };
        let key = (user.to_string(), folder.to_string());
        // Read before the snapshot: a write committing meanwhile changes it, so the
        // entry stored below is never taken for newer than it is.
        let generation = server.store.write_generation();
        if let Some((g, snap)) = self.lock().get(&key) {
            if *g == generation {
                return Ok(snap.clone());
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
        Ok(snap)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), (u64, FolderSnapshot)>> {
        self.folders.lock().unwrap_or_else(|e| e.into_inner())
    }
}
