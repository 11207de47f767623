-- 0002: users, repository ownership and visibility, and the index's declared image lists.

CREATE TABLE users (
    user_id        bigserial PRIMARY KEY,
    username       text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9_]{4,30}$'),
    email          text,
    password_hash  text NOT NULL,
    is_admin       boolean NOT NULL DEFAULT false,
    is_active      boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
-- "Username or email already exists": an e-mail address belongs to one account.
CREATE UNIQUE INDEX users_email ON users (lower(email)) WHERE email IS NOT NULL;

-- Who created the repository (the namespace decides permissions; this is for the record).
ALTER TABLE repositories ADD COLUMN created_by bigint REFERENCES users ON DELETE SET NULL;

-- Image ids declared by PUT /v1/repositories/<name>/ and .../images (v1 spec §5.9, §5.10).
-- The list only grows; ids may be declared before the image is pushed, hence no foreign key.
CREATE TABLE repository_images (
    repository_id  bigint NOT NULL REFERENCES repositories ON DELETE CASCADE,
    image_id       text NOT NULL CHECK (image_id ~ '^[a-f0-9]{64}$'),
    checksum       text,
    declared_seq   bigserial,                   -- keeps the order clients declared them in
    declared_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repository_id, image_id)
);
CREATE INDEX repository_images_image_id ON repository_images (image_id);
