-- Lazaret's tables on PostgreSQL: the embedded store's (embedded/schema.rs) as real
-- tables, plus what several nodes share (nodes). Times are unix seconds (bigint), as
-- in the embedded store, so that both give the same figures.
--
-- Ids: identity columns draw from sequences, which never hand out a value twice, even
-- after the newest row is deleted; the embedded store needs its `id_high` table for
-- the same promise (an id from `find` never names another row later).

CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE settings(key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE domains(name text PRIMARY KEY, created bigint NOT NULL);
CREATE TABLE users(
    address text PRIMARY KEY,
    domain text NOT NULL REFERENCES domains(name),
    password text NOT NULL,
    created bigint NOT NULL);

-- One row per message content; queue items and mailbox entries point at it. The body
-- is the object `<prefix>messages/<uid>` in the bucket.
CREATE TABLE messages(
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uid text NOT NULL UNIQUE,
    sha256 text NOT NULL,
    md5 text,
    size bigint NOT NULL,
    received bigint NOT NULL,
    env_from text NOT NULL,
    helo text NOT NULL,
    peer text NOT NULL,
    hdr_from text NOT NULL,
    hdr_to text NOT NULL,
    hdr_cc text NOT NULL,
    subject text NOT NULL,
    date bigint,
    message_id text NOT NULL,
    verdict text,
    scan_version text,
    scan_content text,
    auth text);
-- `find`'s substring filters (--subject, --from, --to, --mail-from): trigram GIN
-- indexes answer `ILIKE '%text%'` for three characters or more.
CREATE INDEX messages_subject_trgm ON messages USING gin(subject gin_trgm_ops);
CREATE INDEX messages_hdr_from_trgm ON messages USING gin(hdr_from gin_trgm_ops);
CREATE INDEX messages_hdr_to_trgm ON messages USING gin(hdr_to gin_trgm_ops);
CREATE INDEX messages_env_from_trgm ON messages USING gin(env_from gin_trgm_ops);
CREATE INDEX messages_received ON messages(received);
CREATE INDEX messages_sha256 ON messages(sha256);
CREATE INDEX messages_message_id ON messages(message_id);

CREATE TABLE parts(
    message bigint NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    part integer NOT NULL,
    content_type text NOT NULL,
    filename text,
    size bigint NOT NULL,
    sha256 text NOT NULL,
    inside integer,
    md5 text,
    PRIMARY KEY(message, part));
CREATE INDEX parts_sha256 ON parts(sha256);
CREATE INDEX parts_md5 ON parts(md5) WHERE md5 IS NOT NULL;
CREATE INDEX parts_filename_trgm ON parts USING gin(filename gin_trgm_ops);

-- Messages whose last queue item, folder entry or quarantine row went: removed behind
-- the action, with their objects, by the background reclaim.
CREATE TABLE reclaim(message bigint PRIMARY KEY);

-- Only queues whose state differs from the default (active) need a row.
CREATE TABLE queues(name text PRIMARY KEY, state text NOT NULL);
-- `lease_owner`/`lease_until`: the node delivering the item now (claimed with
-- `FOR UPDATE SKIP LOCKED`); a dead node's leases lapse at `lease_until`.
CREATE TABLE queue_items(
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message bigint NOT NULL REFERENCES messages(id),
    queue text NOT NULL,
    state text NOT NULL,
    next_attempt bigint NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    created bigint NOT NULL,
    worker_failures integer NOT NULL DEFAULT 0,
    lease_owner text,
    lease_until bigint);
CREATE INDEX queue_items_due ON queue_items(queue, state, next_attempt);
CREATE INDEX queue_items_message ON queue_items(message);
CREATE TABLE queue_rcpts(
    item bigint NOT NULL REFERENCES queue_items(id) ON DELETE CASCADE,
    address text NOT NULL,
    PRIMARY KEY(item, address));
CREATE INDEX queue_rcpts_address ON queue_rcpts(address);

CREATE TABLE mailboxes(
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    "user" text NOT NULL REFERENCES users(address) ON DELETE CASCADE,
    name text NOT NULL,
    uidvalidity bigint NOT NULL,
    uidnext bigint NOT NULL DEFAULT 1,
    special text,
    subscribed boolean NOT NULL DEFAULT true,
    modseq_on boolean NOT NULL DEFAULT false,
    highestmodseq bigint NOT NULL DEFAULT 1,
    recent_uid bigint NOT NULL DEFAULT 1,
    UNIQUE("user", name));
CREATE TABLE mailbox_entries(
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    mailbox bigint NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid bigint NOT NULL,
    message bigint NOT NULL REFERENCES messages(id),
    flags text NOT NULL DEFAULT '',
    internal_date bigint NOT NULL,
    modseq bigint NOT NULL DEFAULT 1,
    UNIQUE(mailbox, uid));
CREATE INDEX mailbox_entries_message ON mailbox_entries(message);
-- IMAP subscriptions: names, not folders (RFC 3501 6.3.6).
CREATE TABLE subscriptions(
    "user" text NOT NULL REFERENCES users(address) ON DELETE CASCADE,
    name text NOT NULL,
    PRIMARY KEY("user", name));
CREATE TABLE imap_cache(
    uid text PRIMARY KEY,
    envelope bytea,
    bodystructure bytea);

-- Messages taken out of queues and mailboxes; `origin` (JSON) says where each came
-- from, for restore.
CREATE TABLE quarantine(
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message bigint NOT NULL REFERENCES messages(id),
    at bigint NOT NULL,
    actor text NOT NULL,
    reason text NOT NULL,
    origin_location text NOT NULL,
    recipients text NOT NULL,
    origin jsonb NOT NULL);
CREATE INDEX quarantine_message ON quarantine(message);
CREATE INDEX quarantine_at ON quarantine(at);

CREATE TABLE audit(
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at bigint NOT NULL,
    actor text NOT NULL,
    action text NOT NULL,
    query text,
    count bigint,
    detail text);
CREATE INDEX audit_at ON audit(at);

-- Outbreak clusters (embedded/schema.rs says how they are kept).
CREATE TABLE clusters(
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    parent bigint,
    messages bigint NOT NULL DEFAULT 0,
    first_seen bigint NOT NULL,
    last_seen bigint NOT NULL,
    allowed boolean NOT NULL DEFAULT false,
    held_since bigint,
    hold_checked bigint);
CREATE INDEX clusters_parent ON clusters(parent) WHERE parent IS NOT NULL;
CREATE INDEX clusters_held ON clusters(held_since) WHERE held_since IS NOT NULL;
CREATE TABLE fingerprints(
    message bigint PRIMARY KEY,
    cluster bigint,
    signature bytea,
    pending bytea,
    held_keys bytea);
CREATE INDEX fingerprints_cluster ON fingerprints(cluster) WHERE cluster IS NOT NULL;
CREATE TABLE cluster_growth(
    cluster bigint NOT NULL,
    minute bigint NOT NULL,
    messages bigint NOT NULL,
    PRIMARY KEY(cluster, minute));

-- The message event log, for `trace` and `exposure`.
CREATE TABLE message_events(
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message bigint NOT NULL,
    at bigint NOT NULL,
    kind text NOT NULL,
    who text NOT NULL,
    detail text NOT NULL,
    uid text);
CREATE INDEX message_events_message ON message_events(message);
CREATE INDEX message_events_uid ON message_events(uid) WHERE uid IS NOT NULL;
CREATE INDEX message_events_gone ON message_events(who) WHERE kind = 'gone';

-- The nodes sharing this database: each writes its heartbeat every few seconds
-- (`status` lists them; a node whose heartbeat is old is down).
CREATE TABLE nodes(
    name text PRIMARY KEY,
    started bigint NOT NULL,
    heartbeat bigint NOT NULL,
    version text NOT NULL);
