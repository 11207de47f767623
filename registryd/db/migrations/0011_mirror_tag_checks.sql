-- 0011: pull-through cache: when each mirrored tag was last confirmed with its upstream.
-- The manifests and tags themselves live in v2_manifests / v2_tags like pushed ones.
CREATE TABLE mirror_tag_checks (
    repository_id  bigint NOT NULL REFERENCES repositories ON DELETE CASCADE,
    tag            text COLLATE "C" NOT NULL,
    checked_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repository_id, tag)
);
