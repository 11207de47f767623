-- 0014: tell every registryd process when a repository loses a blob link.

-- registryd/access/facts.py also caches that a repository holds a blob (positive facts only,
-- so a new link needs no notification); a deleted link must stop being served at once.
-- A cascade from a deleted repository or blob row fires this trigger too.
CREATE TRIGGER v2_repository_blobs_access_change
    AFTER DELETE OR TRUNCATE ON v2_repository_blobs
    FOR EACH STATEMENT EXECUTE FUNCTION registryd_notify_access_change();
