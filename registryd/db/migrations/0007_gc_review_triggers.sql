-- 0007: triggers that queue a review whenever a reference disappears or an object appears.

CREATE FUNCTION gc_review_blob(d text, why text) RETURNS void LANGUAGE sql AS $$
    INSERT INTO gc_blob_reviews (digest, event) VALUES (d, why)
    ON CONFLICT (digest) DO UPDATE
    SET review_after = LEAST(gc_blob_reviews.review_after, EXCLUDED.review_after),
        event = EXCLUDED.event, seq = EXCLUDED.seq
$$;

CREATE FUNCTION gc_review_link(r bigint, d text, why text) RETURNS void LANGUAGE sql AS $$
    INSERT INTO gc_link_reviews (repository_id, digest, event) VALUES (r, d, why)
    ON CONFLICT (repository_id, digest) DO UPDATE
    SET review_after = LEAST(gc_link_reviews.review_after, EXCLUDED.review_after),
        event = EXCLUDED.event, seq = EXCLUDED.seq
$$;

CREATE FUNCTION gc_review_manifest(r bigint, d text, why text) RETURNS void LANGUAGE sql AS $$
    INSERT INTO gc_manifest_reviews (repository_id, digest, event) VALUES (r, d, why)
    ON CONFLICT (repository_id, digest) DO UPDATE
    SET review_after = LEAST(gc_manifest_reviews.review_after, EXCLUDED.review_after),
        event = EXCLUDED.event, seq = EXCLUDED.seq
$$;

CREATE FUNCTION gc_review_v1_image(i text, why text) RETURNS void LANGUAGE sql AS $$
    INSERT INTO gc_v1_image_reviews (image_id, event) VALUES (i, why)
    ON CONFLICT (image_id) DO UPDATE
    SET review_after = LEAST(gc_v1_image_reviews.review_after, EXCLUDED.review_after),
        event = EXCLUDED.event, seq = EXCLUDED.seq
$$;

-- A new blob may never be referenced (a layer whose manifest never comes).
CREATE FUNCTION gc_blobs_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM gc_review_blob(NEW.digest, 'blob pushed');
    RETURN NULL;
END $$;
CREATE TRIGGER gc_blobs_inserted AFTER INSERT ON blobs
    FOR EACH ROW EXECUTE FUNCTION gc_blobs_changed();

-- A new (or re-pushed) link may stay unreferenced; a removed one may free its blob.
CREATE FUNCTION gc_links_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM gc_review_blob(OLD.digest, 'blob link deleted');
    ELSE
        PERFORM gc_review_link(NEW.repository_id, NEW.digest, 'blob linked');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER gc_links_changed AFTER INSERT OR UPDATE OR DELETE ON v2_repository_blobs
    FOR EACH ROW EXECUTE FUNCTION gc_links_changed();

CREATE FUNCTION gc_v1_images_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM gc_review_v1_image(NEW.image_id, 'image pushed');
        RETURN NULL;
    END IF;
    IF OLD.layer_digest IS NOT NULL
       AND (TG_OP = 'DELETE' OR OLD.layer_digest IS DISTINCT FROM NEW.layer_digest) THEN
        PERFORM gc_review_blob(OLD.layer_digest, 'v1 layer released');
    END IF;
    IF OLD.parent_id IS NOT NULL
       AND (TG_OP = 'DELETE' OR OLD.parent_id IS DISTINCT FROM NEW.parent_id) THEN
        PERFORM gc_review_v1_image(OLD.parent_id, 'v1 child released');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER gc_v1_images_changed AFTER INSERT OR UPDATE OR DELETE ON v1_images
    FOR EACH ROW EXECUTE FUNCTION gc_v1_images_changed();

CREATE FUNCTION gc_v1_tags_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR OLD.image_id IS DISTINCT FROM NEW.image_id THEN
        PERFORM gc_review_v1_image(OLD.image_id, 'v1 tag removed');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER gc_v1_tags_changed AFTER UPDATE OR DELETE ON v1_tags
    FOR EACH ROW EXECUTE FUNCTION gc_v1_tags_changed();

CREATE FUNCTION gc_repository_images_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM gc_review_v1_image(OLD.image_id, 'v1 declaration removed');
    RETURN NULL;
END $$;
CREATE TRIGGER gc_repository_images_deleted AFTER DELETE ON repository_images
    FOR EACH ROW EXECUTE FUNCTION gc_repository_images_deleted();

CREATE FUNCTION gc_v2_tags_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR OLD.manifest_digest IS DISTINCT FROM NEW.manifest_digest THEN
        PERFORM gc_review_manifest(OLD.repository_id, OLD.manifest_digest, 'tag removed');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER gc_v2_tags_changed AFTER UPDATE OR DELETE ON v2_tags
    FOR EACH ROW EXECUTE FUNCTION gc_v2_tags_changed();

-- A new manifest may stay untagged; a deleted one takes its referrers with it.
CREATE FUNCTION gc_v2_manifests_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM gc_review_manifest(NEW.repository_id, NEW.digest, 'manifest pushed');
    ELSE
        PERFORM gc_review_manifest(m.repository_id, m.digest, 'subject deleted')
        FROM v2_manifests m
        WHERE m.repository_id = OLD.repository_id AND m.subject_digest = OLD.digest;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER gc_v2_manifests_changed AFTER INSERT OR DELETE ON v2_manifests
    FOR EACH ROW EXECUTE FUNCTION gc_v2_manifests_changed();

-- A manifest's reference is a blob (its repository link may now be unreferenced)
-- or, for an index, a child manifest (which may now have no live parent). A primary-key
-- lookup tells which, so only one review is queued.
CREATE FUNCTION gc_v2_references_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM v2_repository_blobs
        WHERE repository_id = OLD.repository_id AND digest = OLD.digest
    ) THEN
        PERFORM gc_review_link(OLD.repository_id, OLD.digest, 'manifest reference removed');
    END IF;
    IF EXISTS (
        SELECT 1 FROM v2_manifests WHERE repository_id = OLD.repository_id AND digest = OLD.digest
    ) THEN
        PERFORM gc_review_manifest(OLD.repository_id, OLD.digest, 'manifest reference removed');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER gc_v2_references_deleted AFTER DELETE ON v2_manifest_references
    FOR EACH ROW EXECUTE FUNCTION gc_v2_references_deleted();
