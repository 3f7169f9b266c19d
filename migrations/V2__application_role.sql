-- The role the MCP server connects as. Roles are cluster-wide, so several
-- databases in one cluster share it: create it only if it is missing, and
-- refuse to go on if an existing one could bypass row-level security.
-- No password is set here; the operator sets one (ALTER ROLE ... PASSWORD).
DO $$
DECLARE
    existing pg_roles%ROWTYPE;
BEGIN
    SELECT * INTO existing FROM pg_roles WHERE rolname = 'store_manager';
    IF NOT FOUND THEN
        BEGIN
            CREATE ROLE store_manager LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            -- created concurrently by a migration of another database
            NULL;
        END;
    ELSIF existing.rolsuper OR existing.rolbypassrls THEN
        RAISE EXCEPTION 'role store_manager exists with SUPERUSER or BYPASSRLS, so row-level security would not apply to it'
            USING HINT = 'run ALTER ROLE store_manager NOSUPERUSER NOBYPASSRLS as a superuser, then migrate again';
    END IF;
END
$$;

-- Read-only access to the retail schema and nothing else. The default
-- privileges make tables added by later migrations readable too.
GRANT USAGE ON SCHEMA retail TO store_manager;
GRANT SELECT ON ALL TABLES IN SCHEMA retail TO store_manager;
ALTER DEFAULT PRIVILEGES IN SCHEMA retail GRANT SELECT ON TABLES TO store_manager;

-- The server reads the migration history to report whether the schema is current.
GRANT SELECT ON refinery_schema_history TO store_manager;
