--! low_stock (store_id?, category?)
--- Products whose stock level in a store is below a threshold, lowest stock
--- first: what to reorder. Covers the stores you may see.
--@ title Low stock
--@ param threshold "Report stock levels strictly below this number" default=10 min=1 max=100000
--@ param store_id "Only this store (store_id from the stores table); omit for every store you may see"
--@ param category "Only this category, e.g. Plumbing (case-insensitive)"
--@ param limit "How many rows to return at most" default=50 min=1 max=500
SELECT s.store_id,
       s.store_name,
       p.product_id,
       p.sku,
       p.product_name,
       c.category_name,
       i.stock_level
FROM retail.inventory i
JOIN retail.stores s ON s.store_id = i.store_id
JOIN retail.products p ON p.product_id = i.product_id
JOIN retail.categories c ON c.category_id = p.category_id
WHERE i.stock_level < :threshold
  AND (:store_id::integer IS NULL OR i.store_id = :store_id)
  AND (:category::text IS NULL OR lower(c.category_name) = lower(:category))
ORDER BY i.stock_level, s.store_id, p.product_id
LIMIT :limit;
