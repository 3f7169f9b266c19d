-- An identity that no SQL running under it can forge.
--
-- Until now the row-level-security policies read the plain setting
-- app.current_rls_user_id, which any query may change with set_config() —
-- directly, or through a function that runs SQL from a string. Now:
--
-- 1. A secret key lives in sqlmcp_identity.key, which only the owning role
--    can read. It is made here, at random, and never leaves the database.
-- 2. The server opens every call with its own statement, exactly
--        SELECT sqlmcp_identity.open_call($1)
--    with the caller's id as a bind parameter (so the id appears in no
--    query text that pg_stat_activity or a log could show). open_call
--    (SECURITY DEFINER) refuses to run unless current_query() — the text
--    of the top-level statement the client sent — is exactly that text,
--    so SQL of a caller's own, which is always another top-level text and
--    runs with no bind parameters, can never reach it. It sets the
--    transaction-local setting sqlmcp.caller to the id and an HMAC-SHA256
--    of the id and the transaction's start time, keyed by the secret.
-- 3. The policies read sqlmcp_identity.caller_id(), which recomputes the
--    HMAC and returns the id only when it matches. A value set by
--    set_config(), one copied from another transaction, or none at all
--    gives NULL: the caller then sees no tenant rows.
--
-- Only built-in functions are used (sha256(), not pgcrypto), and nothing
-- here needs a superuser, so it holds on managed PostgreSQL too. The key
-- can be replaced at any time with sqlmcp_identity.rotate_key() as the
-- owning role; calls already open then see nothing and fail closed.

CREATE SCHEMA sqlmcp_identity;
REVOKE ALL ON SCHEMA sqlmcp_identity FROM PUBLIC;

-- HMAC pads the key to 64 bytes and XORs it with 0x36 and 0x5c; both padded
-- keys are stored, so a MAC costs two sha256() calls and no bit twiddling.
CREATE TABLE sqlmcp_identity.key (
    only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    inner_pad bytea NOT NULL CHECK (length(inner_pad) = 64),
    outer_pad bytea NOT NULL CHECK (length(outer_pad) = 64)
);
REVOKE ALL ON sqlmcp_identity.key FROM PUBLIC;

CREATE FUNCTION sqlmcp_identity.rotate_key() RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    -- 32 random bytes (gen_random_uuid() draws from the strong random source),
    -- zero-padded to the 64-byte block
    WITH secret AS (
        SELECT sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text
                                 || gen_random_uuid()::text, 'UTF8'))
               || decode(repeat('00', 32), 'hex') AS k
    ),
    pads AS (
        SELECT decode(string_agg(lpad(to_hex(get_byte(k, i) # 54), 2, '0'), '' ORDER BY i), 'hex') AS inner_pad,
               decode(string_agg(lpad(to_hex(get_byte(k, i) # 92), 2, '0'), '' ORDER BY i), 'hex') AS outer_pad
        FROM secret, generate_series(0, 63) AS i
    )
    INSERT INTO sqlmcp_identity.key (only_row, inner_pad, outer_pad)
    SELECT true, inner_pad, outer_pad FROM pads
    ON CONFLICT (only_row) DO UPDATE
        SET inner_pad = excluded.inner_pad, outer_pad = excluded.outer_pad;
$$;
REVOKE ALL ON FUNCTION sqlmcp_identity.rotate_key() FROM PUBLIC;
SELECT sqlmcp_identity.rotate_key();

-- The HMAC of a caller id for the current transaction. Never callable by the
-- application role: it would sign any id it was given.
CREATE FUNCTION sqlmcp_identity.mac(caller text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT encode(sha256(k.outer_pad || sha256(k.inner_pad || convert_to(
               caller || '|' || extract(epoch FROM transaction_timestamp())::text, 'UTF8'))), 'hex')
    FROM sqlmcp_identity.key k
$$;
REVOKE ALL ON FUNCTION sqlmcp_identity.mac(text) FROM PUBLIC;

-- The server's first statement in every call; see the top of this file.
CREATE FUNCTION sqlmcp_identity.open_call(caller text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF current_query() IS DISTINCT FROM 'SELECT sqlmcp_identity.open_call($1)' THEN
        RAISE EXCEPTION 'sqlmcp_identity.open_call may only be sent by the server, as a statement of its own'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- anything but a UUID is no one: it sees no tenant rows
    IF caller IS NULL OR caller !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
        PERFORM set_config('sqlmcp.caller', '', true);
        RETURN false;
    END IF;
    PERFORM set_config('sqlmcp.caller', lower(caller) || ':' || sqlmcp_identity.mac(lower(caller)), true);
    RETURN true;
END
$$;
REVOKE ALL ON FUNCTION sqlmcp_identity.open_call(text) FROM PUBLIC;

-- The verified caller of the current transaction, or NULL.
CREATE FUNCTION sqlmcp_identity.caller_id() RETURNS uuid
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    token text := current_setting('sqlmcp.caller', true);
BEGIN
    IF token IS NULL OR token !~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}:[0-9a-f]{64}$' THEN
        RETURN NULL;
    END IF;
    IF split_part(token, ':', 2) = sqlmcp_identity.mac(split_part(token, ':', 1)) THEN
        RETURN split_part(token, ':', 1)::uuid;
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION sqlmcp_identity.caller_id() FROM PUBLIC;

GRANT USAGE ON SCHEMA sqlmcp_identity TO store_manager;
GRANT EXECUTE ON FUNCTION sqlmcp_identity.open_call(text), sqlmcp_identity.caller_id() TO store_manager;

-- The policies' functions keep their names (the policies refer to them) and
-- now read the verified identity. caller_store_ids runs as the owner because
-- the application role may no longer read stores.rls_user_id (below).
CREATE OR REPLACE FUNCTION retail.caller_is_head_office() RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(sqlmcp_identity.caller_id() = '00000000-0000-0000-0000-000000000000'::uuid, false)
$$;

CREATE OR REPLACE FUNCTION retail.caller_store_ids() RETURNS integer[]
LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    -- the scalar subquery verifies the caller once, not once per store
    SELECT coalesce(array_agg(s.store_id), '{}')
    FROM retail.stores s
    WHERE s.rls_user_id = (SELECT sqlmcp_identity.caller_id())
$$;

COMMENT ON FUNCTION retail.caller_store_ids() IS
    'Stores whose rls_user_id is the verified caller of this transaction (sqlmcp_identity.caller_id()); used by the row-level-security policies';

-- In header mode a store manager's id is the credential that impersonates
-- them, so the application role may read every column of stores but that one.
REVOKE SELECT ON retail.stores FROM store_manager;
GRANT SELECT (store_id, store_name, is_online) ON retail.stores TO store_manager;
