-- The catalogue: tools, their change history, their embeddings (per model) and upstream servers.
CREATE EXTENSION IF NOT EXISTS vector;

-- array_to_string is only STABLE (element output functions could vary), so a generated column
-- cannot call it; for text[] the result never changes, which makes this wrapper truly immutable.
CREATE FUNCTION registry_join(text[]) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$ SELECT array_to_string($1, ' ') $$;

-- Upstream MCP servers whose tools the registry imports and proxies. Credentials are never stored:
-- auth_env names an environment variable of the registry's process that holds the bearer token.
CREATE TABLE upstream_servers (
    name            text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_-]{1,64}$'),
    url             text NOT NULL,
    auth_env        text CHECK (auth_env ~ '^[A-Z_][A-Z0-9_]{0,127}$'),
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_sync_at    timestamptz,
    last_sync_error text,
    tool_count      integer NOT NULL DEFAULT 0
);

CREATE TABLE tools (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9_.-]{1,128}$'),
    title         text NOT NULL DEFAULT '',
    description   text NOT NULL DEFAULT '',
    category      text NOT NULL DEFAULT 'general',
    tags          text[] NOT NULL DEFAULT '{}',
    input_schema  jsonb NOT NULL,
    output_schema jsonb,
    annotations   jsonb,
    version       text NOT NULL DEFAULT '1.0.0',
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'deprecated', 'deleted')),
    examples      text[] NOT NULL DEFAULT '{}',
    -- 'manual', or the name of the upstream server the tool was imported from.
    source        text NOT NULL DEFAULT 'manual',
    -- The tool's name on its upstream server (NULL for manual tools).
    upstream_name text,
    -- sha256 of the texts the embedding is computed from: re-embed only when it changes.
    content_hash  text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    -- Full-text search document. Names are split at camelCase and punctuation so "WeatherTool"
    -- and "github.create_issue" match their words.
    search_text   tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english'::regconfig,
            regexp_replace(regexp_replace(name, '([a-z0-9])([A-Z])', '\1 \2', 'g'), '[_.-]+', ' ', 'g')), 'A')
        || setweight(to_tsvector('english'::regconfig, title), 'A')
        || setweight(to_tsvector('english'::regconfig, description), 'B')
        || setweight(to_tsvector('english'::regconfig, coalesce(registry_join(tags), '')), 'B')
        || setweight(to_tsvector('english'::regconfig, coalesce(registry_join(examples), '')), 'C')
    ) STORED
);

CREATE INDEX tools_search_text ON tools USING gin (search_text);
CREATE INDEX tools_tags ON tools USING gin (tags);
CREATE INDEX tools_category ON tools (category, name);
CREATE INDEX tools_source ON tools (source, name);

-- Every change to a tool: who (the principal's subject), when, and the rows before and after.
CREATE TABLE tool_history (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tool_id    bigint NOT NULL REFERENCES tools (id) ON DELETE CASCADE,
    tool_name  text NOT NULL,
    operation  text NOT NULL CHECK (operation IN ('create', 'replace', 'patch', 'delete', 'import', 'sync')),
    actor      text NOT NULL,
    at         timestamptz NOT NULL DEFAULT now(),
    before     jsonb,
    after      jsonb
);
CREATE INDEX tool_history_tool ON tool_history (tool_id, id);

-- Models whose vectors the table below holds. A model is "ready" once it covered every
-- non-deleted tool; searches switch to the configured model only then.
CREATE TABLE embedding_models (
    model      text PRIMARY KEY,
    dimension  integer NOT NULL CHECK (dimension BETWEEN 1 AND 4096),
    created_at timestamptz NOT NULL DEFAULT now(),
    ready_at   timestamptz
);

-- One vector per tool and model: the normalised mean of the description's vector (weighted) and
-- the examples' vectors. The column is an untyped `vector` so models of any dimension coexist;
-- each model gets a partial HNSW index over `embedding::vector(N)` created at start-up.
CREATE TABLE tool_embeddings (
    tool_id      bigint NOT NULL REFERENCES tools (id) ON DELETE CASCADE,
    model        text NOT NULL REFERENCES embedding_models (model) ON DELETE CASCADE,
    content_hash text NOT NULL,
    embedding    vector NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tool_id, model)
);
CREATE INDEX tool_embeddings_model ON tool_embeddings (model, tool_id);
