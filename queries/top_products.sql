--! top_products (start_date?, end_date?, category?, store_id?)
--- Best-selling products, ranked by revenue (after discounts) or by units
--- sold, over an optional date range, optionally for one category or one
--- store. Only the stores you may see are counted.
--@ title Top products
--@ param rank_by "Rank by revenue (after discounts) or by units sold" default="revenue" enum=["revenue","units"]
--@ param start_date "First order date included, YYYY-MM-DD; omit for all history"
--@ param end_date "Last order date included, YYYY-MM-DD; omit for all history"
--@ param category "Category name, e.g. Power Tools (case-insensitive); omit for all categories"
--@ param store_id "Only this store (store_id from the stores table); omit for every store you may see"
--@ param limit "How many products to return" default=10 min=1 max=100
--@ resource zava://top-products/{rank_by} "The 10 best-selling products of all history in the stores you may see, ranked by revenue (after discounts) or by units sold."
SELECT p.product_id,
       p.sku,
       p.product_name,
       c.category_name,
       sum(oi.quantity)::bigint AS units_sold,
       sum(oi.total_amount) AS revenue,
       count(DISTINCT oi.order_id)::bigint AS orders
FROM retail.order_items oi
JOIN retail.orders o ON o.order_id = oi.order_id
JOIN retail.products p ON p.product_id = oi.product_id
JOIN retail.categories c ON c.category_id = p.category_id
WHERE (:start_date::date IS NULL OR o.order_date >= :start_date)
  AND (:end_date::date IS NULL OR o.order_date <= :end_date)
  AND (:category::text IS NULL OR lower(c.category_name) = lower(:category))
  AND (:store_id::integer IS NULL OR oi.store_id = :store_id)
GROUP BY p.product_id, c.category_name
ORDER BY CASE WHEN :rank_by = 'units' THEN sum(oi.quantity) ELSE sum(oi.total_amount) END DESC,
         p.product_id
LIMIT :limit;
