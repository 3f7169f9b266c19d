--! store_summary : (region_name?, first_order_date?, last_order_date?)
--- One store at a glance: its region, its customers, orders, units sold and
--- revenue after discounts over all its history, its first and last order
--- days, and its stock (products stocked, units in stock, products below 10
--- units). Only a store you may see has a summary.
--@ title Store summary
--@ resource zava://stores/{store_id}/summary
--@ resource-only
--@ param store_id "The store (store_id from the stores table)"
--@ complete store_id "SELECT store_id::text FROM retail.stores WHERE ((SELECT retail.caller_is_head_office()) OR store_id = ANY ((SELECT retail.caller_store_ids())::integer[])) AND store_id::text LIKE :prefix || '%' ORDER BY store_id"
-- retail.stores is not under row-level security (every caller may see the
-- list of stores), so the last condition keeps the stores the caller may
-- see, with the functions the policies use: another store's summary is
-- missing, as a store that does not exist is.
SELECT s.store_id,
       s.store_name,
       r.region_name,
       s.is_online,
       (SELECT count(*) FROM retail.customers c WHERE c.primary_store_id = s.store_id)::bigint
           AS customers,
       orders.orders,
       sales.units_sold,
       sales.revenue,
       orders.first_order_date,
       orders.last_order_date,
       stock.products_stocked,
       stock.units_in_stock,
       stock.low_stock_products
FROM retail.stores s
LEFT JOIN retail.regions r ON r.region_id = s.region_id
CROSS JOIN LATERAL (
    SELECT coalesce(sum(oi.quantity), 0)::bigint AS units_sold,
           coalesce(sum(oi.total_amount), 0) AS revenue
    FROM retail.order_items oi
    WHERE oi.store_id = s.store_id
) sales
CROSS JOIN LATERAL (
    SELECT count(*)::bigint AS orders,
           min(o.order_date) AS first_order_date,
           max(o.order_date) AS last_order_date
    FROM retail.orders o
    WHERE o.store_id = s.store_id
) orders
CROSS JOIN LATERAL (
    SELECT count(*)::bigint AS products_stocked,
           coalesce(sum(i.stock_level), 0)::bigint AS units_in_stock,
           (count(*) FILTER (WHERE i.stock_level < 10))::bigint AS low_stock_products
    FROM retail.inventory i
    WHERE i.store_id = s.store_id
) stock
WHERE s.store_id = :store_id
  AND ((SELECT retail.caller_is_head_office())
       OR s.store_id = ANY ((SELECT retail.caller_store_ids())::integer[]));
