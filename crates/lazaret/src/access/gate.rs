//! `lazaret access disable|enable`: while disabled, every user login (POP3, IMAP,
//! submission) is refused with the admin's message and open sessions are closed; the
//! store, inbound SMTP and admin commands carry on. The state persists in settings,
//! so a restart during an outbreak keeps users out.

use serde::Serialize;
use tokio::sync::watch;

pub const SETTING: &str = "access.disabled_message";
pub const DEFAULT_MESSAGE: &str = "Mail access is temporarily disabled by the administrator";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessState {
    pub enabled: bool,
    pub message: Option<String>,
}

impl AccessState {
    /// The state the stored setting says: its message while access is disabled, empty
    /// or absent once enabled again.
    pub fn from_setting(stored: Option<String>) -> AccessState {
        let message = stored.filter(|m| !m.is_empty());
        AccessState {
            enabled: message.is_none(),
            message,
        }
    }
}

pub struct AccessGate {
    state: watch::Sender<AccessState>,
}

impl AccessGate {
    /// `stored` is the persisted setting (`AccessState::from_setting`).
    pub fn new(stored: Option<String>) -> AccessGate {
        let (state, _) = watch::channel(AccessState::from_setting(stored));
        AccessGate { state }
    }

    pub fn current(&self) -> AccessState {
        self.state.borrow().clone()
    }

    /// The refusal to give a login now, if access is disabled.
    pub fn refusal(&self) -> Option<String> {
        let s = self.state.borrow();
        (!s.enabled).then(|| s.message.clone().unwrap_or_else(|| DEFAULT_MESSAGE.into()))
    }

    pub fn set(&self, state: AccessState) {
        self.state.send_replace(state);
    }

    /// Sessions watch this and close themselves when access is disabled.
    pub fn subscribe(&self) -> watch::Receiver<AccessState> {
        self.state.subscribe()
    }
}
