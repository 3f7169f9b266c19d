--! semantic_search_products
--- Find products by meaning rather than exact words: describe what you need
--- ("something to cut copper pipe", "keeps tools dry in the truck") and get
--- the closest products by description, most similar first, with their
--- similarity in percent.
--@ title Semantic product search
--@ embed query_embedding from query_description "What you are looking for, in plain words" model=model_id dims=384 vectors=retail.product_description_embeddings
--@ param max_rows "How many products to return at most" default=20 min=1 max=100
--@ param similarity_threshold "Minimum similarity in percent; lower finds more, looser matches" default=30 min=20 max=80
-- The length condition and the ::vector(384) casts match the HNSW index of
-- migration V4, so PostgreSQL can use it.
SELECT p.product_id,
       p.sku,
       p.product_name,
       c.category_name,
       p.base_price,
       p.product_description,
       round((100 * (1 - (e.description_embedding::vector(384) <=> :query_embedding::real[]::vector(384))))::numeric, 2)::float8
           AS similarity_percent
FROM retail.product_description_embeddings e
JOIN retail.products p ON p.product_id = e.product_id
JOIN retail.categories c ON c.category_id = p.category_id
WHERE e.model_id = :model_id
  AND vector_dims(e.description_embedding) = 384
  AND 100 * (1 - (e.description_embedding::vector(384) <=> :query_embedding::real[]::vector(384))) >= :similarity_threshold::float8
ORDER BY e.description_embedding::vector(384) <=> :query_embedding::real[]::vector(384)
LIMIT :max_rows;
