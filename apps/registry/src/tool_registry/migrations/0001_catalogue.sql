-- The catalogue: one row per tool. Embeddings live in their own table (a later migration),
-- so several models can coexist while the catalogue is re-embedded.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE tools (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9_.-]{1,128}$'),
    title       text,
    description text NOT NULL DEFAULT '',
    category    text NOT NULL DEFAULT 'general',
    tags        text[] NOT NULL DEFAULT '{}',
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'deprecated', 'deleted')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
