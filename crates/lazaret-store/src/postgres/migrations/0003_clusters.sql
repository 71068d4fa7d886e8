-- What outbreak clustering needs beyond the first tables.
--
-- Lookup keys: which filed messages hold each key (the embedded store keeps this
-- table in lookups.db). A message holds only the keys no earlier holder matched.
CREATE TABLE cluster_keys(
    key bigint NOT NULL,
    message bigint NOT NULL,
    PRIMARY KEY(key, message));
CREATE INDEX cluster_keys_message ON cluster_keys(message);

-- The messages waiting to be filed, oldest first.
CREATE INDEX fingerprints_pending ON fingerprints(message) WHERE pending IS NOT NULL;
-- Growth rows by age, for pruning.
CREATE INDEX cluster_growth_minute ON cluster_growth(minute);
