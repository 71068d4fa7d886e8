//! The embedded database's tables. Times are unix seconds.

pub const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS settings(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS domains(name TEXT PRIMARY KEY, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS users(
    address TEXT PRIMARY KEY,
    domain TEXT NOT NULL REFERENCES domains(name),
    password TEXT NOT NULL,
    created INTEGER NOT NULL);
-- One row per message content; queue items and mailbox entries point at it.
CREATE TABLE IF NOT EXISTS messages(
    id INTEGER PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    received INTEGER NOT NULL,
    env_from TEXT NOT NULL,
    helo TEXT NOT NULL,
    peer TEXT NOT NULL,
    hdr_from TEXT NOT NULL,
    hdr_to TEXT NOT NULL,
    hdr_cc TEXT NOT NULL,
    subject TEXT NOT NULL,
    date INTEGER,
    message_id TEXT NOT NULL,
    -- What the scanner found (NULL: nothing); such mail is never bounced.
    verdict TEXT,
    -- The signature set version the content was last scanned with (NULL: never), and
    -- the version of its content signatures (body, rules): a rescan reads the blob
    -- only when the latter changed.
    scan_version TEXT,
    scan_content TEXT);
CREATE TABLE IF NOT EXISTS parts(
    message INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    part INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    filename TEXT,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    inside INTEGER,
    md5 TEXT,
    PRIMARY KEY(message, part)) WITHOUT ROWID;
-- Messages deleted since the text index (its own file, text.db) last caught up: the
-- indexer drops them from it.
CREATE TABLE IF NOT EXISTS text_deleted(message INTEGER PRIMARY KEY);
-- Messages whose last queue item, folder entry or quarantine row went: their rows,
-- parts, lookups and fingerprints are removed behind the action, in id order, by the
-- background reclaim (messages.rs says why).
CREATE TABLE IF NOT EXISTS reclaim(message INTEGER PRIMARY KEY);
-- Bytes of messages (with their record headers) still referenced in each pack file;
-- compaction rewrites packs that are mostly dead.
CREATE TABLE IF NOT EXISTS packs(id INTEGER PRIMARY KEY, live INTEGER NOT NULL);
-- Digests and senders are looked up in lookups.db (lookups.rs), not by indexes here.
-- Only queues whose state differs from the default (active) need a row.
CREATE TABLE IF NOT EXISTS queues(name TEXT PRIMARY KEY, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS queue_items(
    id INTEGER PRIMARY KEY,
    message INTEGER NOT NULL REFERENCES messages(id),
    queue TEXT NOT NULL,
    state TEXT NOT NULL,
    next_attempt INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created INTEGER NOT NULL,
    -- Deliveries of this item that made a worker fail; at 2 it goes to `poison`.
    worker_failures INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS queue_items_due ON queue_items(queue, state, next_attempt);
CREATE INDEX IF NOT EXISTS queue_items_message ON queue_items(message);
CREATE TABLE IF NOT EXISTS queue_rcpts(
    item INTEGER NOT NULL REFERENCES queue_items(id) ON DELETE CASCADE,
    address TEXT NOT NULL,
    PRIMARY KEY(item, address)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS queue_rcpts_address ON queue_rcpts(address);
CREATE TABLE IF NOT EXISTS mailboxes(
    id INTEGER PRIMARY KEY,
    user TEXT NOT NULL REFERENCES users(address) ON DELETE CASCADE,
    name TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uidnext INTEGER NOT NULL DEFAULT 1,
    special TEXT,
    subscribed INTEGER NOT NULL DEFAULT 1,
    UNIQUE(user, name));
CREATE TABLE IF NOT EXISTS mailbox_entries(
    id INTEGER PRIMARY KEY,
    mailbox INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid INTEGER NOT NULL,
    message INTEGER NOT NULL REFERENCES messages(id),
    flags TEXT NOT NULL DEFAULT '',
    internal_date INTEGER NOT NULL,
    UNIQUE(mailbox, uid));
CREATE INDEX IF NOT EXISTS mailbox_entries_message ON mailbox_entries(message);
-- IMAP subscriptions: names, not folders (RFC 3501 6.3.6: a name stays subscribed
-- when its folder is deleted, and a name may be subscribed before it exists).
CREATE TABLE IF NOT EXISTS subscriptions(
    user TEXT NOT NULL REFERENCES users(address) ON DELETE CASCADE,
    name TEXT NOT NULL,
    PRIMARY KEY(user, name)) WITHOUT ROWID;
-- ENVELOPE and BODYSTRUCTURE as IMAP sends them, filled on first FETCH (keyed by
-- the message's store id; removed with the message).
CREATE TABLE IF NOT EXISTS imap_cache(
    uid TEXT PRIMARY KEY,
    envelope BLOB,
    bodystructure BLOB) WITHOUT ROWID;
-- Messages taken out of queues and mailboxes: never delivered, bounced or shown to
-- users; `origin` (JSON) says exactly where each came from, for restore.
CREATE TABLE IF NOT EXISTS quarantine(
    id INTEGER PRIMARY KEY,
    message INTEGER NOT NULL REFERENCES messages(id),
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    -- `queue:NAME` or `mailbox:USER/FOLDER`.
    origin_location TEXT NOT NULL,
    -- Queued recipients, or the mailbox owner (comma-separated), for find --to.
    recipients TEXT NOT NULL,
    origin TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS quarantine_message ON quarantine(message);
CREATE INDEX IF NOT EXISTS quarantine_at ON quarantine(at);
CREATE TABLE IF NOT EXISTS audit(
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    query TEXT,
    count INTEGER,
    detail TEXT);
CREATE INDEX IF NOT EXISTS audit_at ON audit(at);
-- Outbreak clusters (groups of near-identical messages, two members or more). A
-- cluster merged into another points at it (`parent`, always a root); `messages`
-- counts a root's members, its absorbed clusters' included.
CREATE TABLE IF NOT EXISTS clusters(
    id INTEGER PRIMARY KEY,
    parent INTEGER,
    messages INTEGER NOT NULL DEFAULT 0,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    -- The admin said this is known mail (a newsletter): not an outbreak.
    allowed INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS clusters_parent ON clusters(parent) WHERE parent IS NOT NULL;
-- Each message's cluster (NULL: alone) and text signature (MinHash, NULL for short
-- texts); `pending` holds its lookup keys until it is filed into a cluster.
CREATE TABLE IF NOT EXISTS fingerprints(
    message INTEGER PRIMARY KEY,
    cluster INTEGER,
    signature BLOB,
    pending BLOB);
CREATE INDEX IF NOT EXISTS fingerprints_cluster ON fingerprints(cluster)
    WHERE cluster IS NOT NULL;
CREATE INDEX IF NOT EXISTS fingerprints_pending ON fingerprints(message)
    WHERE pending IS NOT NULL;
-- Members each cluster gained per minute (`minute` = unix time / 60), for its growth
-- (`clusters` sorted by growth, `[outbreak] hold_growth`); a merged cluster's rows stay
-- under its id. Rows older than two days are pruned.
CREATE TABLE IF NOT EXISTS cluster_growth(
    cluster INTEGER NOT NULL,
    minute INTEGER NOT NULL,
    messages INTEGER NOT NULL,
    PRIMARY KEY(cluster, minute)) WITHOUT ROWID;
-- The message event log: one row per step of a message's path (accepted, scanned,
-- delivered, deferred, bounced, quarantined, read, downloaded, expunged, gone…), for
-- `lazaret trace` and `lazaret exposure`; pruned after `[log] event_retention`.
-- `message` is the messages row id, which is never given out twice, so rows outlive
-- the message. `uid` (the store id) is set only where the messages row cannot give it
-- any more: on `gone` rows, and on the `scanned` row of a message whose id changed (a
-- tagged copy replaced it); trace finds such messages through them. Kept off the
-- `accepted` row: a random key in an index on every ingest costs a page write.
-- On `gone` rows `who` is the outbreak cluster the message was in ('' if none).
CREATE TABLE IF NOT EXISTS message_events(
    id INTEGER PRIMARY KEY,
    message INTEGER NOT NULL,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    who TEXT NOT NULL,
    detail TEXT NOT NULL,
    uid TEXT);
CREATE INDEX IF NOT EXISTS message_events_message ON message_events(message);
CREATE INDEX IF NOT EXISTS message_events_uid ON message_events(uid) WHERE uid IS NOT NULL;
CREATE INDEX IF NOT EXISTS message_events_gone ON message_events(who) WHERE kind='gone';
-- The highest id each of these tables ever gave out: their ids are what the admin
-- acts on (`q12`, `m7`, `x3`, from a `find` a moment or a day earlier), so one must
-- never name another row later. SQLite's own choice (highest present + 1) gives the
-- id of a just-deleted last row again: a copy delivered between `find` and
-- `quarantine` let the next message's inbound item take its id, and be quarantined.
-- Inserts take `id+1` from here; the triggers below keep it current.
CREATE TABLE IF NOT EXISTS id_high(tbl TEXT PRIMARY KEY, id INTEGER NOT NULL) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS queue_items_id_high AFTER INSERT ON queue_items BEGIN
    UPDATE id_high SET id=new.id WHERE tbl='queue_items' AND id<new.id; END;
CREATE TRIGGER IF NOT EXISTS mailbox_entries_id_high AFTER INSERT ON mailbox_entries BEGIN
    UPDATE id_high SET id=new.id WHERE tbl='mailbox_entries' AND id<new.id; END;
CREATE TRIGGER IF NOT EXISTS quarantine_id_high AFTER INSERT ON quarantine BEGIN
    UPDATE id_high SET id=new.id WHERE tbl='quarantine' AND id<new.id; END;
"#;

/// Columns added after a table was first created: (table, column, definition).
/// Applied to older stores on open.
pub const ADDED_COLUMNS: [(&str, &str, &str); 17] = [
    // Whether a CONDSTORE client has used the folder (1) — until then new messages
    // take the current mod-sequence instead of a new one each, as Dovecot does, so
    // that a folder's mod-sequences stay small numbers (fewer bytes in every resync).
    ("mailboxes", "modseq_on", "INTEGER NOT NULL DEFAULT 0"),
    // CONDSTORE (RFC 7162): every change to a folder (new message, flags, expunge)
    // takes the folder's next mod-sequence; an entry keeps the one of its last change.
    ("mailboxes", "highestmodseq", "INTEGER NOT NULL DEFAULT 1"),
    ("mailbox_entries", "modseq", "INTEGER NOT NULL DEFAULT 1"),
    // The first UID no read-write IMAP session has seen yet: those are \Recent to the
    // next session that selects the folder (and to it only).
    ("mailboxes", "recent_uid", "INTEGER NOT NULL DEFAULT 1"),
    // Where the message's bytes are: pack file and offset (NULL: a file of its own, as
    // stores from before packs kept them).
    ("messages", "blob_pack", "INTEGER"),
    ("messages", "blob_offset", "INTEGER"),
    // MD5 of the whole message (NULL in stores from before it: `reindex` fills it).
    ("messages", "md5", "TEXT"),
    ("messages", "verdict", "TEXT"),
    ("messages", "scan_version", "TEXT"),
    ("messages", "scan_content", "TEXT"),
    // What `[auth_checks]` found (`spf=pass dkim=none dmarc=fail arc=none`; NULL: not
    // checked), for `find --auth`.
    ("messages", "auth", "TEXT"),
    ("parts", "inside", "INTEGER"),
    ("parts", "md5", "TEXT"),
    (
        "queue_items",
        "worker_failures",
        "INTEGER NOT NULL DEFAULT 0",
    ),
    // `[outbreak] hold_growth`: since when the cluster's new copies are held (NULL:
    // not held), and when its distinct senders were last counted.
    ("clusters", "held_since", "INTEGER"),
    ("clusters", "hold_checked", "INTEGER"),
    // The lookup keys this message was made a holder of when it was filed (8 bytes
    // each): `lookups.db`'s `cluster_keys` is rebuilt from them.
    ("fingerprints", "held_keys", "BLOB"),
];

/// Indexes on columns of [`ADDED_COLUMNS`]: created once those exist.
pub const LATE_INDEXES: &str = "
CREATE INDEX IF NOT EXISTS messages_blob_pack ON messages(blob_pack, blob_offset)
    WHERE blob_pack IS NOT NULL;
CREATE INDEX IF NOT EXISTS clusters_held ON clusters(held_since) WHERE held_since IS NOT NULL;
-- Message files from before packs (a backup lists them without reading every row).
CREATE INDEX IF NOT EXISTS messages_unpacked ON messages(id) WHERE blob_pack IS NULL;
";

/// The next never-used id of `queue_items`, `mailbox_entries` or `quarantine` (see
/// `id_high`), as an SQL expression for an INSERT's `id` value.
pub const NEXT_ITEM_ID: &str = "(SELECT id+1 FROM id_high WHERE tbl='queue_items')";
pub const NEXT_ENTRY_ID: &str = "(SELECT id+1 FROM id_high WHERE tbl='mailbox_entries')";
pub const NEXT_QUARANTINE_ID: &str = "(SELECT id+1 FROM id_high WHERE tbl='quarantine')";

/// Seeds `id_high` from the rows present (stores from before it; a no-op after).
pub const SEED_ID_HIGH: &str = "
INSERT INTO id_high(tbl, id) VALUES
    ('queue_items', COALESCE((SELECT max(id) FROM queue_items), 0)),
    ('mailbox_entries', COALESCE((SELECT max(id) FROM mailbox_entries), 0)),
    ('quarantine', COALESCE((SELECT max(id) FROM quarantine), 0))
ON CONFLICT(tbl) DO UPDATE SET id=max(id, excluded.id);
";
