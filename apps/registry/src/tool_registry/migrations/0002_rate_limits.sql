-- Rate-limit token buckets shared by every process of this app (platform_common.sharedlimit).
-- UNLOGGED: no WAL, not replicated, emptied after a crash; losing it only refills every bucket.
-- A missing row is a full bucket; rows idle for a whole refill period are deleted.
CREATE UNLOGGED TABLE registry_rate_limits (
    key text PRIMARY KEY,
    tokens double precision NOT NULL,
    granted double precision NOT NULL,  -- the last grant, so that the lease query can return it
    updated_at timestamptz NOT NULL
);
