//! Folder names in UTF-8. Stores from before names were decoded at the IMAP edge kept
//! them as clients sent them, in modified UTF-7 (`Entw&APw-rfe`); they are renamed to
//! UTF-8 once, at the first start that knows better, so that the admin tools show
//! them readably and IMAP finds them again (it now decodes what clients send).

use lazaret_proto::imap::mutf7;
use lazaret_store::{Store, StoreError};

/// Set once every folder name is UTF-8.
const DONE: &str = "imap.names_utf8";

pub fn convert_once(store: &dyn Store) -> Result<(), StoreError> {
    if store.setting(DONE)?.is_some() {
        return Ok(());
    }
    for user in store.user_list()? {
        for folder in store.folders(&user.address)? {
            if !folder.name.contains('&') {
                continue;
            }
            match mutf7::decode(&folder.name) {
                Ok(utf8) if utf8 != folder.name => {
                    match store.folder_rename(&user.address, &folder.name, &utf8) {
                        Ok(()) => tracing::info!(
                            user = %user.address,
                            "folder {} is now named {utf8}", folder.name
                        ),
                        Err(e) => tracing::warn!(
                            user = %user.address,
                            "folder {} kept its name: {e}", folder.name
                        ),
                    }
                }
                _ => {}
            }
        }
    }
    store.set_setting(DONE, "1")
}
