-- Bulk admin jobs (quarantine, delete, restore, freeze, thaw, retry on thousands of
-- messages) as the node running them records them: another node finishes a job
-- whose node went away (`jobs.rs`).
CREATE TABLE admin_jobs(
    id bigserial PRIMARY KEY,
    action text NOT NULL,
    -- What to do, as the node that started it wrote it: the ids and the arguments.
    spec text NOT NULL,
    -- The node working on it now, and since when.
    node text NOT NULL,
    claimed bigint NOT NULL,
    -- How many of the spec's ids are done (each batch commits whole).
    done bigint NOT NULL DEFAULT 0,
    state text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'done', 'failed')),
    started bigint NOT NULL,
    finished bigint,
    -- The nodes that worked on it before, in order.
    handed_over text NOT NULL DEFAULT ''
);
CREATE INDEX admin_jobs_running ON admin_jobs(id) WHERE state = 'running';
