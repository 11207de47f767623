-- 0009: tell every registryd process when a fact behind an access decision changes.

-- registryd/access/facts.py caches repository rows and v1 image references per process
-- and empties the cache on any notification; statement-level triggers keep it cheap.
CREATE FUNCTION registryd_notify_access_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('registryd_access', TG_TABLE_NAME);
    RETURN NULL;
END;
$$;

CREATE TRIGGER repositories_access_change
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON repositories
    FOR EACH STATEMENT EXECUTE FUNCTION registryd_notify_access_change();
CREATE TRIGGER v1_tags_access_change
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON v1_tags
    FOR EACH STATEMENT EXECUTE FUNCTION registryd_notify_access_change();
CREATE TRIGGER repository_images_access_change
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON repository_images
    FOR EACH STATEMENT EXECUTE FUNCTION registryd_notify_access_change();
