--! store_performance (start_date?, end_date?)
--- Stores compared over an optional date range: revenue after discounts,
--- orders, distinct customers, units sold and average order value, best
--- first. Lists the stores you may see that had sales in the period.
--@ title Store performance
--@ param start_date "First order date included, YYYY-MM-DD; omit for all history"
--@ param end_date "Last order date included, YYYY-MM-DD; omit for all history"
SELECT s.store_id,
       s.store_name,
       s.is_online,
       sum(oi.total_amount) AS revenue,
       count(DISTINCT o.order_id)::bigint AS orders,
       count(DISTINCT o.customer_id)::bigint AS customers,
       sum(oi.quantity)::bigint AS units_sold,
       round(sum(oi.total_amount) / count(DISTINCT o.order_id), 2) AS average_order_value
FROM retail.orders o
JOIN retail.order_items oi ON oi.order_id = o.order_id
JOIN retail.stores s ON s.store_id = o.store_id
WHERE (:start_date::date IS NULL OR o.order_date >= :start_date)
  AND (:end_date::date IS NULL OR o.order_date <= :end_date)
GROUP BY s.store_id
ORDER BY revenue DESC, s.store_id;
