//! One IMAP session's state (who is logged in, which folder is selected and the
//! sequence numbers the client knows) and the dispatch of each parsed command to the
//! file that handles it.

use super::{fetch, folders, search, uids, update};
use crate::access::login::{login, LoginError};
use crate::net::Conn;
use crate::server::Server;
use lazaret_proto::imap::mutf7;
use lazaret_proto::imap::types::command::{Command, CommandBody, SelectParameter, StoreModifier};
use lazaret_proto::imap::types::mailbox::Mailbox;
use lazaret_proto::imap::types::sequence::{SeqOrUid, Sequence, SequenceSet};
use lazaret_store::{FolderEntry, StoreError};
use std::net::SocketAddr;
use std::sync::Arc;

/// What the connection driver must do after a command.
pub enum Next {
    Continue,
    StartTls,
    /// COMPRESS DEFLATE: the OK is out; compress from the next byte on.
    Compress,
    /// AUTHENTICATE PLAIN without an initial response: ask for it.
    AuthPlain(String),
    Idle(String),
    Logout,
}

pub struct Selected {
    pub name: String,
    pub read_only: bool,
    pub uidnext: i64,
    /// In UID order; sequence number = index + 1. Shared with the server's folder
    /// index until this session changes it (copy on write).
    pub entries: Arc<Vec<FolderEntry>>,
    /// UIDs `\Recent` in this session, as ranges `[from, to)`: the first read-write
    /// session to see a message gets it (RFC 3501 2.3.2), so these are few ranges.
    pub recent: Vec<(i64, i64)>,
    /// The RECENT count last told to the client.
    pub recent_told: usize,
    /// Keywords the client was told of in the last FLAGS response: a FETCH may only
    /// show keywords announced there.
    pub keywords: Vec<String>,
    pub highestmodseq: i64,
    /// The folder tracks a mod-sequence per change (a CONDSTORE client used it).
    pub modseq_on: bool,
}

impl Selected {
    pub fn is_recent(&self, uid: i64) -> bool {
        self.recent
            .iter()
            .any(|&(from, to)| uid >= from && uid < to)
    }

    pub fn recent_count(&self) -> usize {
        let at = |uid: i64| self.entries.partition_point(|e| e.uid < uid);
        self.recent
            .iter()
            .map(|&(from, to)| at(to).saturating_sub(at(from)))
            .sum()
    }

    /// An unsolicited or STORE FETCH response with an entry's flags (and its MODSEQ once
    /// CONDSTORE is on).
    pub fn fetch_flags_line(&self, index: usize, with_uid: bool, condstore: bool) -> String {
        let e = &self.entries[index];
        let uid = if with_uid {
            format!("UID {} ", e.uid)
        } else {
            String::new()
        };
        let modseq = if condstore {
            format!(" MODSEQ ({})", e.modseq)
        } else {
            String::new()
        };
        format!(
            "* {} FETCH ({uid}FLAGS ({}){modseq})",
            index + 1,
            self.flags_of(e)
        )
    }

    /// An entry's flags as this session shows them (with `\Recent`).
    pub fn flags_of(&self, entry: &FolderEntry) -> String {
        flags_text(&entry.flags, self.is_recent(entry.uid))
    }
}

/// Flags as a FETCH shows them: the stored ones, and `\Recent` for this session.
pub fn flags_text(flags: &[String], recent: bool) -> String {
    let mut text = flags.join(" ");
    if recent {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str("\\Recent");
    }
    text
}

/// What a client knew at its last session: `SELECT … (QRESYNC (…))`.
pub struct Resync {
    pub uidvalidity: i64,
    pub modseq: i64,
    pub known_uids: Option<SequenceSet>,
}

/// Keywords (flags that are not system flags) among `flags` not yet in `known`.
fn new_keywords<'a>(known: &[String], flags: &'a [String]) -> Vec<&'a String> {
    let mut out: Vec<&String> = Vec::new();
    for f in flags {
        if !f.starts_with('\\')
            && !known.iter().any(|k| k.eq_ignore_ascii_case(f))
            && !out.iter().any(|k| k.eq_ignore_ascii_case(f))
        {
            out.push(f);
        }
    }
    out
}

pub struct Session {
    pub server: Arc<Server>,
    pub peer: SocketAddr,
    pub tls: bool,
    pub user: Option<String>,
    pub selected: Option<Selected>,
    /// Another session (or delivery) changed this user's mail since the last refresh.
    pub dirty: bool,
    /// CONDSTORE is on (RFC 7162 3.1): every FETCH response carries MODSEQ.
    pub condstore: bool,
    /// QRESYNC is enabled: expunges are reported as VANISHED (UIDs).
    pub qresync: bool,
    /// Responses not yet written.
    pub out: Vec<u8>,
    /// The connection; taken out briefly while STARTTLS upgrades it.
    pub conn: Option<Conn>,
    /// Mailbox entries whose download this session has already noted in the event log.
    pub downloaded: std::collections::HashSet<i64>,
}

pub const SYSTEM_FLAGS: &str = "\\Answered \\Flagged \\Deleted \\Seen \\Draft";
/// Flags a client may not set: the server's own.
pub const SERVER_FLAGS: [&str; 1] = ["\\Recent"];

impl Session {
    pub fn new(server: Arc<Server>, peer: SocketAddr, conn: Conn) -> Session {
        Session {
            server,
            peer,
            tls: false,
            user: None,
            selected: None,
            dirty: false,
            condstore: false,
            qresync: false,
            out: Vec::new(),
            conn: Some(conn),
            downloaded: Default::default(),
        }
    }

    /// Writes what is pending, then `data` as it is (a pre-rendered FETCH batch).
    pub async fn write_direct(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.flush().await?;
        match self.conn.as_mut() {
            Some(conn) => conn.write_all(data).await,
            None => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }

    /// Writes what is pending.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        let result = match self.conn.as_mut() {
            Some(conn) => conn.write_all(&self.out).await,
            None => Err(std::io::ErrorKind::NotConnected.into()),
        };
        // Keep the buffer's capacity: a big FETCH refills it many times.
        self.out.clear();
        if self.out.capacity() > 4 << 20 {
            self.out.shrink_to(64 * 1024);
        }
        result
    }

    /// Plain-text passwords only over TLS, or from this machine.
    pub fn plaintext_allowed(&self) -> bool {
        self.tls || self.peer.ip().is_loopback()
    }

    pub fn capabilities(&self) -> String {
        let mut caps = String::from(
            "IMAP4rev1 LITERAL+ IDLE UIDPLUS MOVE UNSELECT NAMESPACE ENABLE SPECIAL-USE CHILDREN ID CONDSTORE QRESYNC LIST-EXTENDED LIST-STATUS CREATE-SPECIAL-USE",
        );
        if !self.conn.as_ref().is_some_and(|c| c.compressed()) {
            caps.push_str(" COMPRESS=DEFLATE");
        }
        // RFC 7889: the largest APPEND accepted, so a client need not try.
        caps.push_str(&format!(
            " APPENDLIMIT={}",
            self.server.config.smtp.max_message_size.0
        ));
        if !self.tls && self.server.tls.is_some() {
            caps.push_str(" STARTTLS");
        }
        if self.plaintext_allowed() {
            caps.push_str(" AUTH=PLAIN");
        } else {
            caps.push_str(" LOGINDISABLED");
        }
        caps
    }

    pub fn line(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    pub fn tagged(&mut self, tag: &str, status: &str, text: &str) {
        self.line(&format!("{tag} {status} {text}"));
    }

    pub fn user(&self) -> &str {
        self.user.as_deref().unwrap_or("")
    }

    /// Tells other sessions of this user (and IDLE) that a folder changed.
    pub fn announce(&self) {
        let _ = self.server.mailbox_events.send(self.user().to_string());
    }

    pub async fn execute(&mut self, command: Command<'static>) -> Next {
        let tag = command.tag.as_ref().to_string();
        let name = command.body.name();
        let authenticated = self.user.is_some();
        let selected = self.selected.is_some();
        use CommandBody as C;
        if let Some(why) = invalid_name(&command.body).filter(|_| authenticated) {
            self.tagged(&tag, "NO", &format!("[CANNOT] {why}"));
            return Next::Continue;
        }
        match command.body {
            C::Capability => {
                let caps = self.capabilities();
                self.line(&format!("* CAPABILITY {caps}"));
                self.tagged(&tag, "OK", "CAPABILITY completed");
            }
            C::Noop | C::Check => {
                if selected {
                    self.refresh(true).await;
                }
                self.tagged(&tag, "OK", &format!("{name} completed"));
            }
            C::Id { .. } => {
                // RFC 2971: what the client says about itself is only worth a log line;
                // the answer names the server (no version: it helps attackers only).
                tracing::debug!(peer = %self.peer, "IMAP ID");
                self.line("* ID (\"name\" \"Lazaret\")");
                self.tagged(&tag, "OK", "ID completed");
            }
            C::Logout => {
                self.line("* BYE Lazaret IMAP logging out");
                self.tagged(&tag, "OK", "LOGOUT completed");
                return Next::Logout;
            }
            C::StartTLS if self.tls || self.server.tls.is_none() => {
                self.tagged(&tag, "BAD", "TLS is already active or not available")
            }
            C::StartTLS => {
                self.tagged(&tag, "OK", "Begin TLS negotiation now");
                return Next::StartTls;
            }
            C::Login { .. } | C::Authenticate { .. } if authenticated => {
                self.tagged(&tag, "BAD", "already logged in")
            }
            C::Login { username, password } => {
                if !self.plaintext_allowed() {
                    self.tagged(&tag, "NO", "[PRIVACYREQUIRED] use STARTTLS before LOGIN");
                } else {
                    let user = String::from_utf8_lossy(username.as_ref()).into_owned();
                    let pass = String::from_utf8_lossy(password.declassify().as_ref()).into_owned();
                    self.login(&tag, &user, &pass).await;
                }
            }
            C::Authenticate {
                mechanism,
                initial_response,
            } => {
                if !mechanism.as_ref().eq_ignore_ascii_case("PLAIN") {
                    self.tagged(&tag, "NO", "only AUTHENTICATE PLAIN is supported");
                } else if !self.plaintext_allowed() {
                    self.tagged(&tag, "NO", "[PRIVACYREQUIRED] use STARTTLS first");
                } else if let Some(ir) = initial_response {
                    let decoded = ir.declassify().to_vec();
                    self.auth_plain(&tag, &decoded).await;
                } else {
                    return Next::AuthPlain(tag);
                }
            }
            _ if !authenticated => self.tagged(&tag, "BAD", &format!("{name}: log in first")),
            C::Compress { .. } if self.conn.as_ref().is_some_and(|c| c.compressed()) => {
                self.tagged(&tag, "NO", "[COMPRESSIONACTIVE] DEFLATE is already on")
            }
            C::Compress { .. } => {
                self.tagged(&tag, "OK", "DEFLATE active");
                return Next::Compress;
            }
            C::Select {
                mailbox,
                parameters,
            } => {
                self.select_with(&tag, &mailbox_name(&mailbox), false, parameters)
                    .await
            }
            C::Examine {
                mailbox,
                parameters,
            } => {
                self.select_with(&tag, &mailbox_name(&mailbox), true, parameters)
                    .await
            }
            C::Create { mailbox } => {
                folders::create(self, &tag, &mailbox_name(&mailbox), None).await
            }
            C::Delete { mailbox } => folders::delete(self, &tag, &mailbox_name(&mailbox)).await,
            C::Rename { from, to } => {
                folders::rename(self, &tag, &mailbox_name(&from), &mailbox_name(&to)).await
            }
            C::Subscribe { mailbox } => {
                folders::subscribe(self, &tag, &mailbox_name(&mailbox), true).await
            }
            C::Unsubscribe { mailbox } => {
                folders::subscribe(self, &tag, &mailbox_name(&mailbox), false).await
            }
            C::List {
                reference,
                mailbox_wildcard,
            } => folders::list(self, &tag, &reference, &mailbox_wildcard, false).await,
            C::Lsub {
                reference,
                mailbox_wildcard,
            } => folders::list(self, &tag, &reference, &mailbox_wildcard, true).await,
            C::Status {
                mailbox,
                item_names,
            } => folders::status(self, &tag, &mailbox_name(&mailbox), &item_names).await,
            C::Append {
                mailbox,
                flags,
                date,
                message,
            } => update::append(self, &tag, &mailbox_name(&mailbox), flags, date, message).await,
            C::Namespace => {
                self.line("* NAMESPACE ((\"\" \"/\")) NIL NIL");
                self.tagged(&tag, "OK", "NAMESPACE completed");
            }
            C::Enable { capabilities } => {
                let mut enabled = Vec::new();
                for c in capabilities.as_ref() {
                    match c.to_string().to_ascii_uppercase().as_str() {
                        "CONDSTORE" => {
                            self.condstore = true;
                            enabled.push("CONDSTORE");
                        }
                        // QRESYNC implies CONDSTORE (RFC 7162 3.2.3).
                        "QRESYNC" => {
                            self.condstore = true;
                            self.qresync = true;
                            enabled.push("QRESYNC");
                        }
                        _ => {}
                    }
                }
                let line = format!("* ENABLED {}", enabled.join(" "));
                self.line(line.trim_end());
                // A failure here is met again, and answered, by the next CONDSTORE command.
                let _ = self.track_modseq().await;
                self.tagged(&tag, "OK", "ENABLE completed");
            }
            C::Idle => return Next::Idle(tag),
            _ if !selected => self.tagged(&tag, "BAD", &format!("{name}: select a folder first")),
            C::Close => {
                if !self.read_only() {
                    update::expunge(self, None, true).await;
                }
                self.selected = None;
                self.tagged(&tag, "OK", "CLOSE completed");
            }
            C::Unselect => {
                self.selected = None;
                self.tagged(&tag, "OK", "UNSELECT completed");
            }
            C::Expunge => self.expunge_command(&tag, None).await,
            C::ExpungeUid { sequence_set } => self.expunge_command(&tag, Some(sequence_set)).await,
            C::Search { criteria, uid, .. } => {
                search::search(self, &tag, criteria.as_ref(), uid).await
            }
            C::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                modifiers,
            } => {
                fetch::fetch(
                    self,
                    &tag,
                    &sequence_set,
                    macro_or_item_names,
                    uid,
                    &modifiers,
                )
                .await
            }
            C::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                modifiers,
            } => {
                let unchanged_since = modifiers.first().map(|m| match m {
                    StoreModifier::UnchangedSince(n) => (*n).min(i64::MAX as u64) as i64,
                });
                let request = update::StoreRequest {
                    kind,
                    response,
                    flags,
                    uid,
                    unchanged_since,
                };
                update::store(self, &tag, &sequence_set, request).await
            }
            C::Copy {
                sequence_set,
                mailbox,
                uid,
            } => {
                update::copy(
                    self,
                    &tag,
                    &sequence_set,
                    &mailbox_name(&mailbox),
                    uid,
                    false,
                )
                .await
            }
            C::Move {
                sequence_set,
                mailbox,
                uid,
            } => {
                update::copy(
                    self,
                    &tag,
                    &sequence_set,
                    &mailbox_name(&mailbox),
                    uid,
                    true,
                )
                .await
            }
            _ => self.tagged(&tag, "BAD", &format!("{name} is not supported")),
        }
        Next::Continue
    }

    async fn expunge_command(&mut self, tag: &str, only: Option<SequenceSet>) {
        if self.read_only() {
            self.tagged(tag, "NO", "the folder is read-only (EXAMINE)");
            return;
        }
        let only = only.map(|set| self.resolve(&set, true));
        update::expunge(self, only, false).await;
        self.tagged(tag, "OK", "EXPUNGE completed");
    }

    pub fn read_only(&self) -> bool {
        self.selected.as_ref().is_none_or(|s| s.read_only)
    }

    pub async fn login(&mut self, tag: &str, user: &str, password: &str) {
        match login(&self.server, self.peer.ip(), user, password).await {
            Ok(address) => {
                self.user = Some(address);
                let caps = self.capabilities();
                self.tagged(tag, "OK", &format!("[CAPABILITY {caps}] logged in"));
            }
            Err(LoginError::Disabled(message)) => {
                self.tagged(tag, "NO", &format!("[UNAVAILABLE] {message}"))
            }
            Err(LoginError::Invalid) => {
                self.tagged(tag, "NO", "[AUTHENTICATIONFAILED] invalid credentials")
            }
            Err(LoginError::Throttled) => self.tagged(
                tag,
                "NO",
                "[UNAVAILABLE] too many failed logins from your address; try later",
            ),
            Err(LoginError::Unavailable) => self.tagged(tag, "NO", "[UNAVAILABLE] try again later"),
        }
    }

    /// SASL PLAIN: the decoded response `authzid NUL user NUL password`.
    pub async fn auth_plain(&mut self, tag: &str, response: &[u8]) {
        match lazaret_proto::sasl::decode_plain_bytes(response) {
            Some((user, password)) => self.login(tag, &user, &password).await,
            None => self.tagged(tag, "BAD", "malformed PLAIN response"),
        }
    }

    /// SELECT/EXAMINE with their RFC 7162 parameters: `(CONDSTORE)` turns CONDSTORE
    /// on, `(QRESYNC (uidvalidity modseq [known-uids]))` asks for what changed since.
    async fn select_with(
        &mut self,
        tag: &str,
        name: &str,
        read_only: bool,
        parameters: Vec<SelectParameter>,
    ) {
        let mut resync = None;
        for p in parameters {
            match p {
                SelectParameter::CondStore => self.condstore = true,
                SelectParameter::QResync {
                    uid_validity,
                    mod_sequence_value,
                    known_uids,
                    ..
                } => {
                    if !self.qresync {
                        self.selected = None;
                        self.tagged(tag, "BAD", "QRESYNC must be enabled first (ENABLE QRESYNC)");
                        return;
                    }
                    resync = Some(Resync {
                        uidvalidity: i64::from(uid_validity.get()),
                        modseq: mod_sequence_value.get().min(i64::MAX as u64) as i64,
                        known_uids,
                    });
                }
            }
        }
        self.select(tag, name, read_only, resync).await
    }

    async fn select(&mut self, tag: &str, name: &str, read_only: bool, resync: Option<Resync>) {
        // With CONDSTORE on, the client learns where the old folder's responses end.
        if self.selected.take().is_some() && self.condstore {
            self.line("* OK [CLOSED] previous folder closed");
        }
        let snapshot = self
            .server
            .folder_index
            .snapshot(&self.server, self.user(), name)
            .await;
        let snapshot = match snapshot {
            Ok(s) => s,
            Err(StoreError::NotFound(_)) => {
                self.tagged(tag, "NO", &format!("[NONEXISTENT] no folder {name}"));
                return;
            }
            Err(e) => {
                self.tagged(tag, "NO", &format!("[UNAVAILABLE] {e}"));
                return;
            }
        };
        let first_unseen = snapshot
            .entries
            .iter()
            .position(|e| !has_flag(&e.flags, "\\Seen"));
        // EXAMINE shows what is recent without taking it; SELECT takes it, so that no
        // other session sees the same messages as recent.
        // The snapshot's `recent_uid` is a lower bound (it may be cached): when it says
        // nothing is recent, nothing is; otherwise the store has the exact value.
        let recent_from = if snapshot.recent_uid >= snapshot.uidnext {
            snapshot.recent_uid
        } else {
            let (user, folder) = (self.user().to_string(), name.to_string());
            let upto = if read_only { 0 } else { snapshot.uidnext };
            match self
                .server
                .store_call(move |s| s.folder_claim_recent(&user, &folder, upto))
                .await
            {
                Ok(from) => {
                    self.server.folder_index.claimed(
                        self.user(),
                        name,
                        snapshot.uidvalidity,
                        upto.max(from),
                    );
                    from
                }
                Err(e) => {
                    self.tagged(tag, "NO", &format!("[UNAVAILABLE] {e}"));
                    return;
                }
            }
        };
        let keywords = snapshot.keywords.clone();
        let mut selected = Selected {
            name: name.to_string(),
            read_only,
            uidnext: snapshot.uidnext,
            entries: snapshot.entries,
            recent: Vec::new(),
            recent_told: 0,
            keywords,
            highestmodseq: snapshot.highestmodseq,
            modseq_on: snapshot.modseq_on,
        };
        if recent_from < snapshot.uidnext {
            selected.recent.push((recent_from, snapshot.uidnext));
        }
        selected.recent_told = selected.recent_count();
        if self.condstore && !selected.modseq_on {
            match self.start_tracking(name).await {
                Ok(h) => {
                    selected.highestmodseq = h;
                    selected.modseq_on = true;
                }
                Err(e) => {
                    self.tagged(tag, "NO", &format!("[UNAVAILABLE] {e}"));
                    return;
                }
            }
        }
        self.flags_and_permanentflags(&selected.keywords);
        self.line(&format!("* {} EXISTS", selected.entries.len()));
        self.line(&format!("* {} RECENT", selected.recent_told));
        if let Some(i) = first_unseen {
            self.line(&format!("* OK [UNSEEN {}] first unseen", i + 1));
        }
        self.line(&format!(
            "* OK [UIDVALIDITY {}] UIDs valid",
            snapshot.uidvalidity
        ));
        self.line(&format!(
            "* OK [UIDNEXT {}] predicted next UID",
            snapshot.uidnext
        ));
        if self.condstore {
            let highest = selected.highestmodseq;
            self.line(&format!("* OK [HIGHESTMODSEQ {highest}] highest"));
        }
        let uidvalidity = snapshot.uidvalidity;
        self.selected = Some(selected);
        self.dirty = false;
        if let Some(r) = resync.filter(|r| r.uidvalidity == uidvalidity) {
            self.resync(&r);
        }
        let mode = if read_only { "READ-ONLY" } else { "READ-WRITE" };
        self.tagged(
            tag,
            "OK",
            &format!(
                "[{mode}] {} completed",
                if read_only { "EXAMINE" } else { "SELECT" }
            ),
        );
    }

    /// CONDSTORE was turned on with a folder selected that did not track mod-sequences
    /// yet: it does from now on (see `Store::folder_track_modseq`).
    pub async fn track_modseq(&mut self) -> Result<(), StoreError> {
        let Some(name) = self
            .selected
            .as_ref()
            .filter(|s| self.condstore && !s.modseq_on)
            .map(|s| s.name.clone())
        else {
            return Ok(());
        };
        let h = self.start_tracking(&name).await?;
        if let Some(sel) = self.selected.as_mut() {
            sel.highestmodseq = h;
            sel.modseq_on = true;
        }
        Ok(())
    }

    /// `Store::folder_track_modseq` for one of this user's folders: its HIGHESTMODSEQ.
    async fn start_tracking(&self, name: &str) -> Result<i64, StoreError> {
        let (user, folder) = (self.user().to_string(), name.to_string());
        self.server
            .store_call(move |s| s.folder_track_modseq(&user, &folder))
            .await
    }

    /// After SELECT with QRESYNC (RFC 7162 3.2.5): VANISHED (EARLIER) for the known
    /// UIDs that are gone, then FETCH for the messages changed since the client's
    /// mod-sequence. Nothing when the folder did not change since.
    fn resync(&mut self, r: &Resync) {
        let Some(sel) = &self.selected else { return };
        if r.modseq >= sel.highestmodseq {
            return;
        }
        let max = sel.uidnext - 1;
        let ranges = match &r.known_uids {
            Some(set) => uids::uid_ranges(set, max),
            None if max >= 1 => vec![(1, max)],
            None => Vec::new(),
        };
        let mut lines = Vec::new();
        let gone = uids::missing(&sel.entries, &ranges);
        if !gone.is_empty() {
            lines.push(format!("* VANISHED (EARLIER) {}", uids::ranges_text(&gone)));
        }
        for (i, e) in sel.entries.iter().enumerate() {
            if e.modseq > r.modseq && uids::in_ranges(e.uid, &ranges) {
                lines.push(sel.fetch_flags_line(i, true, true));
            }
        }
        for l in lines {
            self.line(&l);
        }
    }

    /// Tells the client of messages gone from the selected folder, given as (sequence
    /// number, UID) highest first, as each was removed: `n EXPUNGE` each, or one
    /// VANISHED with their UIDs once QRESYNC is enabled (RFC 7162 3.2.10).
    pub fn report_expunged(&mut self, removed: &[(usize, i64)]) {
        if removed.is_empty() {
            return;
        }
        if self.qresync {
            let mut uids: Vec<i64> = removed.iter().map(|&(_, uid)| uid).collect();
            uids.sort_unstable();
            self.line(&format!("* VANISHED {}", uids::uid_set(&uids)));
        } else {
            for &(seq, _) in removed {
                self.line(&format!("* {seq} EXPUNGE"));
            }
        }
    }

    /// The FLAGS and PERMANENTFLAGS responses: system flags, the folder's keywords, and
    /// `\*` (any new keyword may be stored).
    fn flags_and_permanentflags(&mut self, keywords: &[String]) {
        let mut all = SYSTEM_FLAGS.to_string();
        for k in keywords {
            all.push(' ');
            all.push_str(k);
        }
        self.line(&format!("* FLAGS ({all})"));
        self.line(&format!(
            "* OK [PERMANENTFLAGS ({all} \\*)] flags permitted"
        ));
    }

    /// Before FETCH responses show `flags`: a new FLAGS response if any keyword among
    /// them was not announced yet (RFC 3501 7.2.6).
    pub fn announce_keywords(&mut self, flags: &[String]) {
        let Some(sel) = self.selected.as_mut() else {
            return;
        };
        let fresh: Vec<String> = new_keywords(&sel.keywords, flags)
            .into_iter()
            .cloned()
            .collect();
        if fresh.is_empty() {
            return;
        }
        sel.keywords.extend(fresh);
        let keywords = sel.keywords.clone();
        self.flags_and_permanentflags(&keywords);
    }

    /// Re-reads the selected folder and tells the client what changed: EXPUNGE (when
    /// `expunges` may be sent now), FLAGS for new keywords, FETCH FLAGS for changed
    /// flags, then EXISTS and RECENT for new messages.
    pub async fn refresh(&mut self, expunges: bool) {
        if !self.dirty {
            return;
        }
        let Some(sel) = &self.selected else { return };
        let (name, read_only, old_uidnext) = (sel.name.clone(), sel.read_only, sel.uidnext);
        let Ok(snapshot) = self
            .server
            .folder_index
            .snapshot(&self.server, self.user(), &name)
            .await
        else {
            return;
        };
        self.dirty = false;
        // New messages are recent here if no read-write session took them before.
        // (A read-only session only looks: `upto` 0.)
        let mut recent_from = snapshot.recent_uid.max(old_uidnext);
        if recent_from < snapshot.uidnext {
            let user = self.user().to_string();
            let upto = if read_only { 0 } else { snapshot.uidnext };
            let folder = name.clone();
            let from = self
                .server
                .store_call(move |s| s.folder_claim_recent(&user, &folder, upto))
                .await
                .unwrap_or(snapshot.uidnext);
            self.server.folder_index.claimed(
                self.user(),
                &name,
                snapshot.uidvalidity,
                upto.max(from),
            );
            recent_from = from.max(old_uidnext);
        }
        let Some(sel) = self.selected.as_mut() else {
            return;
        };
        let mut expunged = Vec::new();
        if expunges {
            let mut seq = sel.entries.len();
            let alive: std::collections::HashSet<i64> =
                snapshot.entries.iter().map(|e| e.uid).collect();
            while seq > 0 {
                let uid = sel.entries[seq - 1].uid;
                if !alive.contains(&uid) {
                    Arc::make_mut(&mut sel.entries).remove(seq - 1);
                    expunged.push((seq, uid));
                }
                seq -= 1;
            }
        }
        let known_max = sel.entries.last().map_or(0, |e| e.uid);
        let mut changed = Vec::new();
        for (i, entry) in Arc::make_mut(&mut sel.entries).iter_mut().enumerate() {
            if let Ok(pos) = snapshot.entries.binary_search_by_key(&entry.uid, |e| e.uid) {
                let now = &snapshot.entries[pos];
                if now.flags != entry.flags || now.modseq != entry.modseq {
                    entry.flags = now.flags.clone();
                    entry.modseq = now.modseq;
                    changed.push(i);
                }
            }
        }
        let fresh: Vec<FolderEntry> = snapshot
            .entries
            .iter()
            .filter(|e| e.uid > known_max)
            .cloned()
            .collect();
        if recent_from < snapshot.uidnext {
            sel.recent.push((recent_from, snapshot.uidnext));
        }
        sel.uidnext = snapshot.uidnext;
        sel.highestmodseq = sel.highestmodseq.max(snapshot.highestmodseq);
        sel.modseq_on |= snapshot.modseq_on;
        let mut flags_seen: Vec<String> = fresh.iter().flat_map(|e| e.flags.clone()).collect();
        for &i in &changed {
            flags_seen.extend(sel.entries[i].flags.iter().cloned());
        }
        let grew = !fresh.is_empty();
        if grew {
            Arc::make_mut(&mut sel.entries).extend(fresh);
        }
        // Once QRESYNC is enabled every FETCH response carries the UID (RFC 7162 3.2.4).
        let (condstore, qresync) = (self.condstore, self.qresync);
        let fetches: Vec<String> = changed
            .iter()
            .map(|&i| sel.fetch_flags_line(i, qresync, condstore))
            .collect();
        let exists = sel.entries.len();
        let recent = sel.recent_count();
        let recent_changed = recent != sel.recent_told;
        sel.recent_told = recent;
        self.report_expunged(&expunged);
        self.announce_keywords(&flags_seen);
        for l in fetches {
            self.line(&l);
        }
        if grew {
            self.line(&format!("* {exists} EXISTS"));
        }
        if grew || recent_changed {
            self.line(&format!("* {recent} RECENT"));
        }
    }

    /// Indexes (0-based) of the selected folder's entries a sequence set names, by
    /// sequence number or by UID, in ascending order and without duplicates.
    pub fn resolve(&self, set: &SequenceSet, uid: bool) -> Vec<usize> {
        let Some(sel) = &self.selected else {
            return Vec::new();
        };
        let n = sel.entries.len();
        if n == 0 {
            return Vec::new();
        }
        let max = if uid {
            sel.entries[n - 1].uid as u64
        } else {
            n as u64
        };
        let value = |s: &SeqOrUid| match s {
            SeqOrUid::Value(v) => u64::from(v.get()),
            SeqOrUid::Asterisk => max,
        };
        let mut out = Vec::new();
        for seq in set.0.as_ref() {
            let (a, b) = match seq {
                Sequence::Single(s) => (value(s), value(s)),
                Sequence::Range(a, b) => (value(a), value(b)),
            };
            let (lo, hi) = (a.min(b), a.max(b));
            if uid {
                let start = sel.entries.partition_point(|e| (e.uid as u64) < lo);
                let end = sel.entries.partition_point(|e| (e.uid as u64) <= hi);
                out.extend(start..end);
            } else {
                let lo = lo.max(1);
                let hi = hi.min(n as u64);
                if lo <= hi {
                    out.extend((lo - 1) as usize..hi as usize);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

pub fn has_flag(flags: &[String], flag: &str) -> bool {
    flags.iter().any(|f| f.eq_ignore_ascii_case(flag))
}

/// The folder name a client gave, in UTF-8 (INBOX in any case is INBOX). Commands
/// with a name that is not modified UTF-7 were refused before (`invalid_name`).
pub fn mailbox_name(mailbox: &Mailbox<'_>) -> String {
    match mailbox {
        Mailbox::Inbox => "INBOX".into(),
        Mailbox::Other(other) => {
            let wire = String::from_utf8_lossy(other.as_ref());
            mutf7::decode(&wire).unwrap_or_else(|_| wire.into_owned())
        }
    }
}

/// Why a command's mailbox argument is not a valid name, if it is not.
fn invalid_name(body: &CommandBody<'_>) -> Option<String> {
    use CommandBody as C;
    let names: Vec<&Mailbox<'_>> = match body {
        C::Select { mailbox, .. }
        | C::Examine { mailbox, .. }
        | C::Create { mailbox }
        | C::Delete { mailbox }
        | C::Subscribe { mailbox }
        | C::Unsubscribe { mailbox }
        | C::Status { mailbox, .. }
        | C::Append { mailbox, .. }
        | C::Copy { mailbox, .. }
        | C::Move { mailbox, .. } => vec![mailbox],
        C::Rename { from, to } => vec![from, to],
        _ => return None,
    };
    names.into_iter().find_map(|m| match m {
        Mailbox::Inbox => None,
        Mailbox::Other(other) => mutf7::decode(&String::from_utf8_lossy(other.as_ref()))
            .err()
            .map(|e| e.to_string()),
    })
}
