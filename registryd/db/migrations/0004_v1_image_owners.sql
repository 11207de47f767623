-- 0004: which repository holds a v1 image id: only its writers may upload the image.

-- v1 image ids are global and chosen by clients, and docker declares them before uploading.
-- The first repository to declare (or upload) an id holds it: only writers of that repository
-- may write the image's JSON, layer and checksum while it is uploading; a complete image is
-- immutable, and its holder's writers may still reuse it. Kept by name, not by foreign key:
-- deleting the repository must not free the id for anyone else to upload or re-declare.
CREATE TABLE v1_image_owners (
    image_id    text PRIMARY KEY CHECK (image_id ~ '^[a-f0-9]{64}$'),
    namespace   text NOT NULL,
    name        text NOT NULL,
    claimed_at  timestamptz NOT NULL DEFAULT now()
);
