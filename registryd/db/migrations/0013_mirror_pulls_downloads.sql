-- 0013: the pull-through cache's bookkeeping: when cached content was last pulled, downloads in flight.

-- When a mirrored repository's blob or manifest was last pulled (written in batches, a few
-- seconds late): the cache evicts the least recently pulled content first. No foreign key
-- to the links and manifests it describes, so it never holds their rows against the
-- collector; the eviction removes rows whose content is gone.
CREATE TABLE mirror_pulls (
    repository_id   bigint NOT NULL REFERENCES repositories ON DELETE CASCADE,
    digest          text NOT NULL,
    last_pulled_at  timestamptz NOT NULL,
    PRIMARY KEY (repository_id, digest)
);

-- A blob download from an upstream in progress, once its first bytes are in: the temp
-- file that grows in the store, so that other processes stream it rather than wait for
-- the end. Written and deleted by the process holding the digest's download lock, on the
-- lock's connection (holder_pid): a row whose holder no longer holds a lock is stale.
CREATE TABLE mirror_downloads (
    digest      text PRIMARY KEY,
    temp_path   text NOT NULL,
    size_bytes  bigint NOT NULL CHECK (size_bytes >= 0),
    holder_pid  integer NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now()
);
