-- Approximate nearest-neighbour search over product vectors (pgvector HNSW,
-- cosine distance).
--
-- The embeddings column holds vectors of any length (one row per product and
-- model), and an HNSW index needs one length, so each length gets its own
-- partial expression index. A query uses it when it orders by the same
-- expression and states the same condition:
--   WHERE vector_dims(description_embedding) = 384
--   ORDER BY description_embedding::vector(384) <=> $1
-- 384 is all-MiniLM-L6-v2, the default local model. A model of another
-- length needs a migration like this one and a query that names its length.
CREATE INDEX product_description_embeddings_hnsw_384
    ON retail.product_description_embeddings
    USING hnsw ((description_embedding::vector(384)) vector_cosine_ops)
    WHERE vector_dims(description_embedding) = 384;
