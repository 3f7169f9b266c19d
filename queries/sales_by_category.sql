--! sales_by_category (start_date?, end_date?, store_id?) : (gross_margin_percent?)
--- Sales per product category over an optional date range: revenue after
--- discounts, units, orders, gross profit (revenue minus cost of the units
--- sold) and gross margin in percent. Only the stores you may see are counted.
--@ title Sales by category
--@ param start_date "First order date included, YYYY-MM-DD; omit for all history"
--@ param end_date "Last order date included, YYYY-MM-DD; omit for all history"
--@ param store_id "Only this store (store_id from the stores table); omit for every store you may see"
SELECT c.category_id,
       c.category_name,
       sum(oi.total_amount) AS revenue,
       sum(oi.quantity)::bigint AS units_sold,
       count(DISTINCT oi.order_id)::bigint AS orders,
       sum(oi.total_amount - oi.quantity * p.cost) AS gross_profit,
       round(100 * sum(oi.total_amount - oi.quantity * p.cost) / nullif(sum(oi.total_amount), 0), 2)
           AS gross_margin_percent
FROM retail.order_items oi
JOIN retail.orders o ON o.order_id = oi.order_id
JOIN retail.products p ON p.product_id = oi.product_id
JOIN retail.categories c ON c.category_id = p.category_id
WHERE (:start_date::date IS NULL OR o.order_date >= :start_date)
  AND (:end_date::date IS NULL OR o.order_date <= :end_date)
  AND (:store_id::integer IS NULL OR oi.store_id = :store_id)
GROUP BY c.category_id
ORDER BY revenue DESC, c.category_id;
