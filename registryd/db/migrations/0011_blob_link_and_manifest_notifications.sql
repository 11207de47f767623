-- 0011: tell every registryd process when a blob link, a manifest or a tag changes.

-- registryd/access/facts.py also caches that a repository holds a blob (positive facts only,
-- so a new link needs no notification); a deleted link must stop being served at once.
-- A cascade from a deleted repository or blob row fires this trigger too.
CREATE TRIGGER v2_repository_blobs_access_change
    AFTER DELETE OR TRUNCATE ON v2_repository_blobs
    FOR EACH STATEMENT EXECUTE FUNCTION registryd_notify_access_change();

-- Manifests by digest and by tag are cached on their own channel, so that a tag push
-- does not empty the access facts. A manifest's bytes never change; tags move.
CREATE FUNCTION registryd_notify_manifest_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('registryd_manifests', TG_TABLE_NAME);
    RETURN NULL;
END;
$$;

CREATE TRIGGER v2_manifests_manifest_change
    AFTER DELETE OR TRUNCATE ON v2_manifests
    FOR EACH STATEMENT EXECUTE FUNCTION registryd_notify_manifest_change();
CREATE TRIGGER v2_tags_manifest_change
    AFTER INSERT OR UPDATE OF manifest_digest OR DELETE OR TRUNCATE ON v2_tags
    FOR EACH STATEMENT EXECUTE FUNCTION registryd_notify_manifest_change();
