-- 0006: garbage collection review queues, pending blob file deletions, and the indexes GC needs.

-- Each queue holds things that may have become garbage because a reference to them
-- disappeared (or because they were just created and nothing may ever reference them).
-- The collector re-checks each one under a row lock when review_after has passed, so
-- its work grows with what changed, not with the size of the store. seq changes on
-- every new event, so the collector never drops an event that arrived while it looked.
CREATE SEQUENCE gc_review_seq;

CREATE TABLE gc_blob_reviews (
    digest        text PRIMARY KEY,
    review_after  timestamptz NOT NULL DEFAULT now(),
    event         text NOT NULL,
    seq           bigint NOT NULL DEFAULT nextval('gc_review_seq')
);
CREATE INDEX gc_blob_reviews_due ON gc_blob_reviews (review_after);

-- A repository's link to a blob (v2_repository_blobs).
CREATE TABLE gc_link_reviews (
    repository_id  bigint NOT NULL,
    digest         text NOT NULL,
    review_after   timestamptz NOT NULL DEFAULT now(),
    event          text NOT NULL,
    seq            bigint NOT NULL DEFAULT nextval('gc_review_seq'),
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX gc_link_reviews_due ON gc_link_reviews (review_after);

CREATE TABLE gc_manifest_reviews (
    repository_id  bigint NOT NULL,
    digest         text NOT NULL,
    review_after   timestamptz NOT NULL DEFAULT now(),
    event          text NOT NULL,
    seq            bigint NOT NULL DEFAULT nextval('gc_review_seq'),
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX gc_manifest_reviews_due ON gc_manifest_reviews (review_after);

CREATE TABLE gc_v1_image_reviews (
    image_id      text PRIMARY KEY,
    review_after  timestamptz NOT NULL DEFAULT now(),
    event         text NOT NULL,
    seq           bigint NOT NULL DEFAULT nextval('gc_review_seq')
);
CREATE INDEX gc_v1_image_reviews_due ON gc_v1_image_reviews (review_after);

-- Blobs whose row is gone and whose file is still to be removed. The file is removed
-- only while this row is locked, and a writer reviving the digest deletes the row
-- first (waiting for a removal in progress), so a revived file is never removed.
CREATE TABLE blob_deletions (
    digest      text PRIMARY KEY,
    size_bytes  bigint NOT NULL,
    deleted_at  timestamptz NOT NULL DEFAULT now()
);

-- Liveness checks: "does any manifest refer to this digest (in this repository)?" and
-- "is this manifest tagged?" (v1 images are removed leaf first, via v1_images_parent_id).
CREATE INDEX v2_manifest_references_digest ON v2_manifest_references (digest, repository_id);
CREATE INDEX v2_tags_manifest ON v2_tags (repository_id, manifest_digest);
