-- 0012: tell every registryd process when a complete v1 image is deleted or changed.

-- Each process caches complete v1 images (domain/image_cache.py): they are immutable, but
-- garbage collection deletes them and scrub --repair sends one whose layer is lost back to
-- "uploading". registryd/gc/image_notices.py makes every process forget the image named in
-- the payload (an empty payload: all of them). Pushes never fire these: a row is complete
-- only once, and a complete row is never updated by a writer.
CREATE FUNCTION registryd_notify_v1_image_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('registryd_v1_images', OLD.image_id);
    RETURN NULL;
END;
$$;

CREATE FUNCTION registryd_notify_v1_images_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('registryd_v1_images', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER v1_images_cache_change
    AFTER UPDATE OR DELETE ON v1_images
    FOR EACH ROW WHEN (OLD.state = 'complete')
    EXECUTE FUNCTION registryd_notify_v1_image_changed();
CREATE TRIGGER v1_images_cache_truncate
    AFTER TRUNCATE ON v1_images
    FOR EACH STATEMENT EXECUTE FUNCTION registryd_notify_v1_images_truncated();
