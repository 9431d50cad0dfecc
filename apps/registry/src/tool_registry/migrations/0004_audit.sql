-- The call_tool audit log: who called which tool on which upstream, when, how it ended and how long it
-- took. Arguments are never stored, only the SHA-256 of their canonical JSON (keys sorted, no spaces),
-- which proves what was sent when the caller's copy is at hand without keeping secrets they contain.
-- A call that reaches the gateway is written 'pending' before the upstream is contacted and updated
-- with its outcome after, so a crash mid-call still leaves its row. Rows older than
-- AUDIT_RETENTION_DAYS are deleted by a periodic sweep (one replica at a time, advisory lock).
CREATE TABLE tool_call_audit (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at               timestamptz NOT NULL DEFAULT now(),
    subject          text NOT NULL,
    principal_kind   text NOT NULL,
    tool             text NOT NULL,
    upstream         text,
    arguments_sha256 text NOT NULL CHECK (arguments_sha256 ~ '^[0-9a-f]{64}$'),
    outcome          text NOT NULL
        CHECK (outcome IN ('pending', 'ok', 'tool_error', 'error', 'not_found', 'denied')),
    latency_ms       double precision,
    request_id       text
);
CREATE INDEX tool_call_audit_at ON tool_call_audit (at);
CREATE INDEX tool_call_audit_subject ON tool_call_audit (subject, id);
CREATE INDEX tool_call_audit_tool ON tool_call_audit (tool, id);
