-- `status`'s totals of the big tables (messages and their bytes, folder entries,
-- queue items), kept as rows come and go instead of counted at every look: counting
-- a million message rows took 0.86 s. Each statement that inserts or deletes rows
-- adds one row of differences, written by a statement-level trigger from the
-- statement's transition table: a batch of 500 adds one row, not 500, and rows added
-- by any node (or by hand) count. `status` sums the rows; the nodes fold them into
-- one now and then (`fold_totals`). Differences in rows of their own, not one counter
-- row updated by everyone, so that writers on several nodes never wait for each other.
CREATE TABLE totals(
    messages bigint NOT NULL DEFAULT 0,
    message_bytes bigint NOT NULL DEFAULT 0,
    entries bigint NOT NULL DEFAULT 0,
    queued bigint NOT NULL DEFAULT 0);

CREATE FUNCTION totals_messages() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
    bytes bigint;
BEGIN
    SELECT COUNT(*), COALESCE(SUM(size), 0) INTO n, bytes FROM changed;
    IF n > 0 THEN
        IF TG_OP = 'DELETE' THEN
            n := -n;
            bytes := -bytes;
        END IF;
        INSERT INTO totals(messages, message_bytes) VALUES(n, bytes);
    END IF;
    RETURN NULL;
END $$;

-- Rows of the table the trigger is on: TG_ARGV[0] names the column they count in.
CREATE FUNCTION totals_rows() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    SELECT COUNT(*) INTO n FROM changed;
    IF n > 0 THEN
        IF TG_OP = 'DELETE' THEN
            n := -n;
        END IF;
        IF TG_ARGV[0] = 'entries' THEN
            INSERT INTO totals(entries) VALUES(n);
        ELSE
            INSERT INTO totals(queued) VALUES(n);
        END IF;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER messages_in AFTER INSERT ON messages
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION totals_messages();
CREATE TRIGGER messages_out AFTER DELETE ON messages
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION totals_messages();
CREATE TRIGGER entries_in AFTER INSERT ON mailbox_entries
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION totals_rows('entries');
CREATE TRIGGER entries_out AFTER DELETE ON mailbox_entries
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION totals_rows('entries');
CREATE TRIGGER queued_in AFTER INSERT ON queue_items
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION totals_rows('queued');
CREATE TRIGGER queued_out AFTER DELETE ON queue_items
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION totals_rows('queued');

-- The totals so far. CREATE TRIGGER has locked the three tables against writers
-- until this transaction commits, so no row is counted both here and by a trigger,
-- nor by neither.
INSERT INTO totals(messages, message_bytes, entries, queued)
    SELECT (SELECT COUNT(*) FROM messages), (SELECT COALESCE(SUM(size), 0) FROM messages),
           (SELECT COUNT(*) FROM mailbox_entries), (SELECT COUNT(*) FROM queue_items);
