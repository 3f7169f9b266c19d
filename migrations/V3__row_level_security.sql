-- Row-level security: head office sees every row; a store manager sees the
-- customers, orders, order items and inventory of the store whose rls_user_id
-- they are. The caller's id comes from the transaction-local setting
-- app.current_rls_user_id. Ids are compared as text, so a malformed, unknown
-- or missing id matches no store and sees no tenant rows, without an error.

CREATE FUNCTION retail.caller_is_head_office() RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT coalesce(lower(current_setting('app.current_rls_user_id', true))
                    = '00000000-0000-0000-0000-000000000000', false)
$$;

CREATE FUNCTION retail.caller_store_ids() RETURNS integer[]
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT coalesce(array_agg(s.store_id), '{}')
    FROM retail.stores s
    WHERE s.rls_user_id::text = lower(current_setting('app.current_rls_user_id', true))
$$;

COMMENT ON FUNCTION retail.caller_store_ids() IS
    'Stores whose rls_user_id is the caller''s app.current_rls_user_id; used by the row-level-security policies';

-- The policies wrap both functions in scalar subqueries so that PostgreSQL
-- evaluates them once per query (as InitPlans), not once per row, and can use
-- the store_id indexes. Only SELECT policies exist: with row-level security
-- on and no write policy, every write by a role subject to it is refused.

ALTER TABLE retail.customers ENABLE ROW LEVEL SECURITY;
ALTER TABLE retail.customers FORCE ROW LEVEL SECURITY;
CREATE POLICY customers_by_store ON retail.customers FOR SELECT
    USING ((SELECT retail.caller_is_head_office())
           OR primary_store_id = ANY ((SELECT retail.caller_store_ids())::integer[]));

ALTER TABLE retail.orders ENABLE ROW LEVEL SECURITY;
ALTER TABLE retail.orders FORCE ROW LEVEL SECURITY;
CREATE POLICY orders_by_store ON retail.orders FOR SELECT
    USING ((SELECT retail.caller_is_head_office())
           OR store_id = ANY ((SELECT retail.caller_store_ids())::integer[]));

ALTER TABLE retail.order_items ENABLE ROW LEVEL SECURITY;
ALTER TABLE retail.order_items FORCE ROW LEVEL SECURITY;
CREATE POLICY order_items_by_store ON retail.order_items FOR SELECT
    USING ((SELECT retail.caller_is_head_office())
           OR store_id = ANY ((SELECT retail.caller_store_ids())::integer[]));

ALTER TABLE retail.inventory ENABLE ROW LEVEL SECURITY;
ALTER TABLE retail.inventory FORCE ROW LEVEL SECURITY;
CREATE POLICY inventory_by_store ON retail.inventory FOR SELECT
    USING ((SELECT retail.caller_is_head_office())
           OR store_id = ANY ((SELECT retail.caller_store_ids())::integer[]));
