-- Each model's HNSW index moves from 32-bit `vector` to 16-bit `halfvec` elements: half the index size
-- (a 100k catalogue's graph stays in shared_buffers) and cheaper distance computations. Only candidate
-- selection uses it; the cosine the score is computed from still reads the full-precision column.
-- Names follow indexer.index_name(model, dimension) + '_half'. The new index is built before the old one
-- is dropped, in this migration's transaction: searches keep using the old one until the commit.
-- halfvec HNSW indexes take up to 4,000 dimensions (vector: 2,000, so no larger model had an index).
DO $$
DECLARE
    m record;
    old_name text;
BEGIN
    FOR m IN SELECT model, dimension FROM embedding_models WHERE dimension <= 4000 LOOP
        old_name := 'tool_embeddings_hnsw_' || left(encode(sha256(convert_to(m.model, 'UTF8')), 'hex'), 12)
            || '_' || m.dimension;
        EXECUTE format(
            'CREATE INDEX IF NOT EXISTS %I ON tool_embeddings USING hnsw ((embedding::halfvec(%s)) halfvec_cosine_ops) '
            'WHERE model = %L',
            old_name || '_half', m.dimension, m.model);
        EXECUTE format('DROP INDEX IF EXISTS %I', old_name);
    END LOOP;
END
$$;
