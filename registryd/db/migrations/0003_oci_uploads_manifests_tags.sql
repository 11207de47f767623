-- 0003: OCI distribution (v2): blobs linked to repositories, upload sessions, manifests and tags.

-- A repository holds a blob once it was uploaded or mounted there (the file and the blobs row are
-- shared with v1 and every other repository). Blob DELETE removes only this link.
CREATE TABLE v2_repository_blobs (
    repository_id  bigint NOT NULL REFERENCES repositories ON DELETE CASCADE,
    digest         text NOT NULL REFERENCES blobs (digest),
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX v2_repository_blobs_digest ON v2_repository_blobs (digest);

-- An upload session: its bytes so far live in the storage's uploads/<upload_id>.part, so any
-- replica sharing storage and database can take the next chunk, also after a restart.
-- busy_since marks a request writing to it; a stale mark (crashed process) may be taken over.
CREATE TABLE v2_uploads (
    upload_id      text PRIMARY KEY CHECK (upload_id ~ '^[a-f0-9]{32}$'),
    repository_id  bigint NOT NULL REFERENCES repositories ON DELETE CASCADE,
    size_bytes     bigint NOT NULL DEFAULT 0 CHECK (size_bytes >= 0),
    busy_since     timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX v2_uploads_updated_at ON v2_uploads (updated_at);

-- Manifests are stored byte-exact with the media type they were pushed with.
-- subject_digest may name a manifest that does not exist (yet): OCI 1.1 referrers.
CREATE TABLE v2_manifests (
    repository_id   bigint NOT NULL REFERENCES repositories ON DELETE CASCADE,
    digest          text NOT NULL
                    CHECK (digest ~ '^sha(256:[a-f0-9]{64}|512:[a-f0-9]{128})$'),
    media_type      text NOT NULL,
    body            bytea NOT NULL,
    subject_digest  text,
    artifact_type   text,       -- what the referrers API reports: artifactType or config type
    annotations     jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX v2_manifests_subject ON v2_manifests (repository_id, subject_digest)
    WHERE subject_digest IS NOT NULL;

-- What a manifest refers to: its config and layers, or an index's child manifests.
CREATE TABLE v2_manifest_references (
    repository_id    bigint NOT NULL,
    manifest_digest  text NOT NULL,
    digest           text NOT NULL,
    PRIMARY KEY (repository_id, manifest_digest, digest),
    FOREIGN KEY (repository_id, manifest_digest)
        REFERENCES v2_manifests (repository_id, digest) ON DELETE CASCADE
);

-- Tags sort byte-wise ("lexical order", spec end-8a), whatever the database's collation.
CREATE TABLE v2_tags (
    repository_id    bigint NOT NULL,
    tag              text COLLATE "C" NOT NULL,
    manifest_digest  text NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repository_id, tag),
    FOREIGN KEY (repository_id, manifest_digest)
        REFERENCES v2_manifests (repository_id, digest) ON DELETE CASCADE
);
