-- 0005: upload claims held by live processes, per-takeover file generations, caps, reference lookups.

-- claim_owner: the key of the process holding the claim (busy_since); the claim is live exactly
-- while that process holds its advisory lock (registryd.db.process_owner), so the claims of a
-- process that died are free at once. file_token: the generation of the session's temp file
-- (NULL: the first one); a takeover copies the bytes into a new generation, so a request that
-- lost its claim never holds a descriptor of a file that can be committed.
ALTER TABLE v2_uploads
    ADD COLUMN claim_owner integer,
    ADD COLUMN file_token text CHECK (file_token ~ '^[a-f0-9]{16}$'),
    ADD COLUMN created_by text,
    ADD COLUMN declared_size bigint CHECK (declared_size >= 0);

CREATE INDEX v2_uploads_created_by ON v2_uploads (created_by) WHERE created_by IS NOT NULL;

-- A blob or manifest DELETE looks for the manifests that refer to it (and refuses).
CREATE INDEX v2_manifest_references_target ON v2_manifest_references (repository_id, digest);
