--! product_details (sku?, name_contains?) : (gross_margin_percent?)
--- Look up products by exact SKU (e.g. PWR-DRL-1001) or by a fragment of
--- their name (case-insensitive): prices, cost, margin, category, type,
--- description, and the units in stock across the stores you may see. With
--- neither argument, lists products alphabetically.
--@ title Product details
--@ param sku "Exact SKU, e.g. PWR-DRL-1001 (case-insensitive)"
--@ param name_contains "A fragment of the product name, e.g. drill (case-insensitive)"
--@ param limit "How many products to return at most" default=20 min=1 max=100
--@ resource zava://products/{sku} "One product by its SKU (case-insensitive): prices, cost, margin, category, type, description, and the units in stock across the stores you may see."
--@ complete sku "SELECT sku FROM retail.products WHERE sku ILIKE :prefix || '%' ORDER BY sku"
SELECT p.product_id,
       p.sku,
       p.product_name,
       c.category_name,
       t.type_name,
       p.base_price,
       p.cost,
       p.gross_margin_percent,
       p.product_description,
       (SELECT coalesce(sum(i.stock_level), 0)
          FROM retail.inventory i
         WHERE i.product_id = p.product_id)::bigint AS units_in_stock
FROM retail.products p
JOIN retail.categories c ON c.category_id = p.category_id
JOIN retail.product_types t ON t.type_id = p.type_id
WHERE (:sku::text IS NULL OR upper(p.sku) = upper(:sku))
  AND (:name_contains::text IS NULL OR strpos(lower(p.product_name), lower(:name_contains)) > 0)
ORDER BY p.product_name
LIMIT :limit;
