-- What `find` needs beyond the first tables.
--
-- The readable text of each message (text/plain and tag-stripped HTML, at most 64 KB,
-- as the embedded store's text index holds it), for `--body`: a trigram GIN index
-- answers `ILIKE '%text%'` for three characters or more.
CREATE TABLE message_text(
    message bigint PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
    body text NOT NULL);
CREATE INDEX message_text_body_trgm ON message_text USING gin(body gin_trgm_ops);

-- `--from ADDRESS`: both senders, compared lower-cased.
CREATE INDEX messages_env_from_lower ON messages(lower(env_from));
CREATE INDEX messages_hdr_from_lower ON messages(lower(hdr_from));

-- Hash signatures (MD5 of a whole message) during scans and rescans.
CREATE INDEX messages_md5 ON messages(md5) WHERE md5 IS NOT NULL;
