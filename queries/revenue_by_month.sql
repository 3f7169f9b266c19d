--! revenue_by_month (start_date?, end_date?, store_id?, category?)
--- Revenue (after discounts), orders and units sold per calendar month over
--- a date range, optionally for one store or one category. Months without
--- sales are left out. Only the stores you may see are counted.
--@ title Revenue by month
--@ param start_date "First order date included, YYYY-MM-DD; omit for all history"
--@ param end_date "Last order date included, YYYY-MM-DD; omit for all history"
--@ param store_id "Only this store (store_id from the stores table); omit for every store you may see"
--@ param category "Only this category, e.g. Garden & Outdoor (case-insensitive)"
SELECT date_trunc('month', o.order_date)::date AS month,
       sum(oi.total_amount) AS revenue,
       count(DISTINCT o.order_id)::bigint AS orders,
       sum(oi.quantity)::bigint AS units
FROM retail.orders o
JOIN retail.order_items oi ON oi.order_id = o.order_id
JOIN retail.products p ON p.product_id = oi.product_id
JOIN retail.categories c ON c.category_id = p.category_id
WHERE (:start_date::date IS NULL OR o.order_date >= :start_date)
  AND (:end_date::date IS NULL OR o.order_date <= :end_date)
  AND (:store_id::integer IS NULL OR o.store_id = :store_id)
  AND (:category::text IS NULL OR lower(c.category_name) = lower(:category))
GROUP BY 1
ORDER BY 1;
