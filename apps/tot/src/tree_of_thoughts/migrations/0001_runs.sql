-- Tree-of-Thoughts runs. One row per run; the tree is written once, when the run ends.
-- heartbeat_at is refreshed by the worker (the replica running the search); a queued or running
-- run whose heartbeat is older than 60 s has lost its worker and is reported as failed.
CREATE TABLE tot_runs (
    id               uuid PRIMARY KEY,
    owner            text        NOT NULL,
    params           jsonb       NOT NULL,
    status           text        NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    progress         double precision NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 1),
    progress_message text        NOT NULL DEFAULT '',
    answer           text,
    solved           boolean     NOT NULL DEFAULT false,
    stop_reason      text,
    error            text,
    stats            jsonb,
    best_node_id     integer,
    tree             jsonb,
    cancel_requested boolean     NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    heartbeat_at     timestamptz NOT NULL DEFAULT now()
);

-- "My runs, newest first" (the list endpoint pages on created_at, id).
CREATE INDEX tot_runs_owner_created ON tot_runs (owner, created_at DESC, id DESC);
-- The active-run count per owner and the lost-worker sweep only look at unfinished runs.
CREATE INDEX tot_runs_active ON tot_runs (owner) WHERE status IN ('queued', 'running');
-- TTL cleanup.
CREATE INDEX tot_runs_finished ON tot_runs (finished_at) WHERE finished_at IS NOT NULL;
