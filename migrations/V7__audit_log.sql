-- The audit log: one row per tool call, written by the server in batches
-- through a connection of its own as sqlmcp_audit, a role that may INSERT
-- here and do nothing else. The application role store_manager can neither
-- read nor write the table, so SQL running for a caller can neither see who
-- else called nor rewrite its own record. Operators read it as the owner, or
-- as a role they grant SELECT.
--
-- Roles are cluster-wide: create sqlmcp_audit only if it is missing (as
-- V2 does for store_manager), and refuse one that could do more than insert,
-- or that the application role could act as. No password is set here; the
-- operator sets one (sqlmcp migrate --audit-password, or ALTER ROLE).
DO $$
DECLARE
    existing pg_roles%ROWTYPE;
BEGIN
    SELECT * INTO existing FROM pg_roles WHERE rolname = 'sqlmcp_audit';
    IF NOT FOUND THEN
        BEGIN
            CREATE ROLE sqlmcp_audit LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            -- created concurrently by a migration of another database
            NULL;
        END;
    ELSIF existing.rolsuper OR existing.rolbypassrls OR existing.rolcreaterole THEN
        RAISE EXCEPTION 'role sqlmcp_audit exists with SUPERUSER, BYPASSRLS or CREATEROLE, so it could do more than append to the audit log'
            USING HINT = 'run ALTER ROLE sqlmcp_audit NOSUPERUSER NOBYPASSRLS NOCREATEROLE as a superuser, then migrate again';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'store_manager')
       AND pg_has_role('store_manager', 'sqlmcp_audit', 'MEMBER') THEN
        RAISE EXCEPTION 'role store_manager is a member of sqlmcp_audit, so callers could write the audit log'
            USING HINT = 'run REVOKE sqlmcp_audit FROM store_manager, then migrate again';
    END IF;
END
$$;

CREATE SCHEMA sqlmcp_audit;
REVOKE ALL ON SCHEMA sqlmcp_audit FROM PUBLIC;

-- Every value comes from the server. Nothing here checks the values it
-- writes (no CHECK constraints, no foreign keys): a row the table refused
-- would be an entry lost.
CREATE TABLE sqlmcp_audit.calls (
    -- made by the server (a UUIDv7, so in time order); an entry written
    -- twice, say replayed from the spool after a timeout that had in fact
    -- committed, is skipped the second time (ON CONFLICT DO NOTHING)
    id          uuid PRIMARY KEY,
    -- when the call began
    at          timestamptz NOT NULL,
    request_id  text NOT NULL,
    -- the id the database maps to stores; NULL when the call named no
    -- caller (and was refused), or a token listed its stores instead
    caller_id   uuid,
    -- header, jwt, configured (stdio) or default (--default-caller)
    auth_method text,
    -- a token's issuer and subject; the id otherwise
    issuer      text,
    subject     text,
    -- the stores the call could see, as the database resolved them; NULL:
    -- every store, or not known (the call ended before it opened)
    stores      integer[],
    tool        text NOT NULL,
    -- as the caller sent them, raw SQL included; never a secret or a result
    arguments   jsonb NOT NULL,
    -- ok, error, refused (before it ran) or interrupted (the call was dropped)
    outcome     text NOT NULL,
    error_class text,
    row_count   bigint,
    -- the size of the answer sent, in bytes
    bytes       bigint,
    duration_ms double precision NOT NULL,
    -- answered from the result cache
    cached      boolean NOT NULL,
    -- when the row reached the table: later than `at` for spooled entries
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX calls_at ON sqlmcp_audit.calls (at);
CREATE INDEX calls_caller_at ON sqlmcp_audit.calls (caller_id, at);
REVOKE ALL ON sqlmcp_audit.calls FROM PUBLIC;

GRANT USAGE ON SCHEMA sqlmcp_audit TO sqlmcp_audit;
GRANT INSERT ON sqlmcp_audit.calls TO sqlmcp_audit;
