-- 0001: content-addressed blobs, v1 images with their upload state, repositories and v1 tags.

-- One row per stored blob, keyed like the storage backend: 'sha256:<hex>' of the stored bytes.
-- The v1 layer store and the OCI (v2) blob store are this one table.
CREATE TABLE blobs (
    digest      text PRIMARY KEY CHECK (digest ~ '^sha(256:[a-f0-9]{64}|512:[a-f0-9]{128})$'),
    size_bytes  bigint NOT NULL CHECK (size_bytes >= 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- v1 images are global (not per repository), addressed by a 64-hex id (v1 spec §3.1).
-- state follows the upload state machine of §6; a tag may only point at a complete image.
CREATE TABLE v1_images (
    image_id          text PRIMARY KEY CHECK (image_id ~ '^[a-f0-9]{64}$'),
    json              bytea NOT NULL,              -- exactly the bytes of PUT json
    parent_id         text REFERENCES v1_images (image_id),
    ancestry          text[] NOT NULL,             -- [image_id, parent, grand-parent, ...]
    state             text NOT NULL CHECK (state IN ('uploading', 'complete')),
    json_generation   integer NOT NULL DEFAULT 1,  -- bumped by every PUT json retry
    layer_digest      text REFERENCES blobs (digest),
    layer_size_bytes  bigint CHECK (layer_size_bytes >= 0),
    checksum_payload  text,                        -- 'sha256:<hex>' computed while streaming
    checksum_tarsum   text,                        -- as sent by the client, not verified
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK (state = 'uploading' OR (layer_digest IS NOT NULL AND checksum_payload IS NOT NULL))
);
CREATE INDEX v1_images_layer_digest ON v1_images (layer_digest);
CREATE INDEX v1_images_parent_id ON v1_images (parent_id);
CREATE INDEX v1_images_uploading ON v1_images (updated_at) WHERE state = 'uploading';

-- A repository is namespace/name; one-segment v1 names live in 'library'.
CREATE TABLE repositories (
    repository_id  bigserial PRIMARY KEY,
    namespace      text NOT NULL,
    name           text NOT NULL,
    description    text,
    is_public      boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (namespace, name)
);

-- v1 tags point at image ids; v2 tags (manifests) get their own table.
CREATE TABLE v1_tags (
    repository_id  bigint NOT NULL REFERENCES repositories ON DELETE CASCADE,
    tag            text NOT NULL,
    image_id       text NOT NULL REFERENCES v1_images (image_id),
    metadata       jsonb NOT NULL DEFAULT '{}',
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repository_id, tag)
);
CREATE INDEX v1_tags_image_id ON v1_tags (image_id);
