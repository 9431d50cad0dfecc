-- Upstream servers: credentials by reference only, and tools pinned to an approved digest.

-- A server's credential is a name <NAME> whose token the registry reads from the variable
-- UPSTREAM_CREDENTIAL_<NAME>, never an arbitrary environment variable (which let a caller send
-- DATABASE_URL to a server of theirs). Legacy auth_env values that already used the prefix keep
-- working; any other value stays as a name no UPSTREAM_CREDENTIAL_ variable is likely to match,
-- so those servers fail to connect with a clear message instead of sending the old variable.
ALTER TABLE upstream_servers RENAME COLUMN auth_env TO credential;
ALTER TABLE upstream_servers DROP CONSTRAINT upstream_servers_auth_env_check;
UPDATE upstream_servers SET credential = substr(credential, length('UPSTREAM_CREDENTIAL_') + 1)
    WHERE credential LIKE 'UPSTREAM\_CREDENTIAL\_%' AND length(credential) > length('UPSTREAM_CREDENTIAL_');
ALTER TABLE upstream_servers
    ADD CONSTRAINT upstream_servers_credential_check CHECK (credential ~ '^[A-Z0-9_]{1,128}$'),
    -- Plain http:// may carry the credential only when this is set and the host is loopback.
    ADD COLUMN allow_insecure_http boolean NOT NULL DEFAULT false,
    -- Trusted upstreams: new tools and changes are applied by sync without review.
    ADD COLUMN auto_approve boolean NOT NULL DEFAULT false,
    -- While a change of an approved tool waits for review: keep serving the approved version,
    -- or disable the tool (deprecated, calls refused) until an admin approves.
    ADD COLUMN on_change text NOT NULL DEFAULT 'keep' CHECK (on_change IN ('keep', 'disable'));

-- sha256 over the canonical JSON of what an upstream declared (title, description, schemas,
-- annotations) for the version the catalogue serves. NULL: a manual tool, or an upstream tool
-- catalogued before pinning (sync adopts the digest if the upstream still declares the same).
ALTER TABLE tools ADD COLUMN approved_digest text;

-- Upstream tool versions waiting for an admin: new tools, and changes of approved ones.
CREATE TABLE upstream_pending (
    server        text NOT NULL REFERENCES upstream_servers (name) ON DELETE CASCADE,
    upstream_name text NOT NULL,
    tool_name     text NOT NULL,
    digest        text NOT NULL,
    definition    jsonb NOT NULL,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (server, upstream_name)
);

ALTER TABLE tool_history DROP CONSTRAINT tool_history_operation_check;
ALTER TABLE tool_history ADD CONSTRAINT tool_history_operation_check
    CHECK (operation IN ('create', 'replace', 'patch', 'delete', 'import', 'sync', 'approve'));
