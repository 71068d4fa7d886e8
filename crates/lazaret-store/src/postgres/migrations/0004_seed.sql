-- What a new store starts with, as on one node: when it was created, and the local
-- domain `localhost`, so that a server on its built-in defaults takes mail at once.
INSERT INTO settings(key, value)
    VALUES('created', extract(epoch FROM now())::bigint::text)
    ON CONFLICT DO NOTHING;
INSERT INTO domains(name, created)
    VALUES('localhost', extract(epoch FROM now())::bigint)
    ON CONFLICT DO NOTHING;
