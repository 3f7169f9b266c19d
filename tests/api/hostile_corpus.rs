//! More hostile inputs for `execute_sales_query`, found by reading
//! PostgreSQL 18's grammar (gram.y: every production that builds a FuncCall,
//! TypeCast or relation reference) and its system catalog of functions (pg_proc,
//! pg_cast, pg_operator), grouped by what they are after:
//!
//! * Escape — becoming someone else: set_config and current_setting reached
//!   through attribute notation `(x).f`, `TREAT(x AS f)`, FROM, WHERE,
//!   JSON_TABLE defaults, and functions that run SQL from a string (ts_stat,
//!   ts_rewrite, query_to_xmlschema, table/schema/database_to_xml).
//! * SideEffect — locks, sleeps, setseed, notifications, WAL and statistics
//!   resets, in every clause that takes an expression: target list, FILTER,
//!   ORDER BY, GROUP BY, HAVING, LIMIT, window PARTITION BY, JOIN ON,
//!   VALUES, ROWS FROM, LATERAL, MATERIALIZED CTE, TABLESAMPLE arguments and
//!   REPEATABLE, and the TABLESAMPLE method name itself.
//! * Write — data-modifying CTEs (UPDATE, MERGE … RETURNING), and functions
//!   that write although called from a SELECT (lo_*, pg_restore_*_stats,
//!   pg_clear_*_stats, brin_summarize_new_values, replication origins).
//! * Snoop — the system catalog: reg* casts in every spelling (`::`, CAST,
//!   `type 'literal'`, function-style `regrole('…')`, `TREAT(… AS regclass)`),
//!   implicit reg* input through pg_typeof, to_reg*, has_*_privilege,
//!   pg_get_*, xml, SQL-syntax functions (CURRENT_USER, SYSTEM_USER,
//!   CURRENT_CATALOG), settings, files, system relations, 3-part column refs.
//! * Stats — row counts and value distributions across tenants (pg_class,
//!   pg_stats, pg_stat_*, relation sizes, system columns ctid/xmin, EXPLAIN
//!   with costs) and stores.rls_user_id through every way a column is
//!   reached: by name, qualified, in WHERE/ORDER BY/USING, whole-row
//!   `alias.f`, to_jsonb(row), max(row), `*`, TABLE, NATURAL JOIN.
//! * OtherCallers — pg_stat_get_activity, backend ids, pids, cancelling and
//!   terminating through subqueries and attribute notation, locks.
//! * Encoding — Unicode spaces (U+00A0, U+2003, U+3000) that PostgreSQL
//!   treats as identifier characters, U& escapes with UESCAPE, unquoted
//!   upper case, E'' escapes, dollar quotes, nested comments, vertical tab.
//! * Control — PREPARE, DECLARE, LISTEN, SET, FETCH, EXPLAIN ANALYSE.
//!
//! Every statement parses with PostgreSQL 18.6's own parser (checked with
//! psql as a superuser against a copy of the retail schema with pgvector;
//! the few that fail later, at analysis, say why in a comment). The second
//! element is the name a refusal must contain, lower-case. None repeats an
//! entry of `raw_sql.rs`'s ATTACKS.

use super::raw_sql::Class::{self, *};

/// (sql, a word the refusal must name — the offending function, type, operator, relation or clause, lower-case, class)
pub const MORE_ATTACKS: &[(&str, &str, Class)] = &[
    // Escape: identity forgery and SQL run from strings
    (
        "WITH t AS (SELECT ($q$SELECT to_tsvector('simple', set_config('app.current_rls_user_id', '00000000-0000-0000-0000-000000000000', true))$q$::text).ts_stat) SELECT (SELECT count(*) FROM retail.orders) FROM t",
        "ts_stat",
        Escape,
    ),
    (
        "SELECT ('app.current_rls_user_id'::text).current_setting",
        "current_setting",
        Escape,
    ),
    // TREAT(x AS t) is a call of the function named t (gram.y: makeFuncCall of the type name)
    (
        "SELECT TREAT('app.current_rls_user_id'::text AS current_setting)",
        "current_setting",
        Escape,
    ),
    (
        "SELECT pg_catalog.set_config('app.current_rls_user_id', '00000000-0000-0000-0000-000000000000', true)",
        "set_config",
        Escape,
    ),
    (
        "SELECT count(*) FROM retail.orders WHERE set_config('row_security', 'off', true) IS NOT NULL",
        "set_config",
        Escape,
    ),
    (
        "SELECT * FROM set_config('role', 'sqlmcp', true)",
        "set_config",
        Escape,
    ),
    (
        "SELECT * FROM ts_stat('SELECT to_tsvector(current_setting(''app.current_rls_user_id''))')",
        "ts_stat",
        Escape,
    ),
    (
        "SELECT ts_rewrite('a'::tsquery, $$SELECT 'a'::tsquery, set_config('role', 'sqlmcp', true)::tsquery$$)",
        "ts_rewrite",
        Escape,
    ),
    (
        "SELECT query_to_xmlschema('SELECT * FROM retail.orders', true, true, '')",
        "query_to_xmlschema",
        Escape,
    ),
    (
        "SELECT table_to_xml('retail.orders', true, true, '')",
        "table_to_xml",
        Escape,
    ),
    (
        "SELECT schema_to_xml('retail', true, true, '')",
        "schema_to_xml",
        Escape,
    ),
    (
        "SELECT database_to_xml(true, true, '')",
        "database_to_xml",
        Escape,
    ),
    // a function inside a JSON_TABLE column's DEFAULT … ON EMPTY
    (
        "SELECT * FROM JSON_TABLE(jsonb '{}', '$' COLUMNS (who text PATH '$.a' DEFAULT current_setting('app.current_rls_user_id') ON EMPTY)) jt",
        "current_setting",
        Escape,
    ),
    ("RESET SESSION AUTHORIZATION", "reset", Escape),
    ("SET LOCAL ROLE NONE", "set", Escape),
    // SideEffect: side effects a read-only transaction does not stop, through every syntax that reaches a function
    (
        "SELECT (901::bigint).pg_advisory_lock",
        "pg_advisory_lock",
        SideEffect,
    ),
    ("SELECT (0.5::float8).setseed", "setseed", SideEffect),
    ("SELECT (1::float8).pg_sleep", "pg_sleep", SideEffect),
    // TREAT again: no TypeCast node, a FuncCall pg_catalog.pg_sleep
    (
        "SELECT TREAT(1::float8 AS pg_sleep)",
        "pg_sleep",
        SideEffect,
    ),
    (
        "SELECT TREAT(7::bigint AS pg_advisory_lock)",
        "pg_advisory_lock",
        SideEffect,
    ),
    (
        "SELECT pg_catalog.pg_advisory_lock_shared(42)",
        "pg_advisory_lock_shared",
        SideEffect,
    ),
    (
        "SELECT pg_try_advisory_xact_lock_shared(1, 2)",
        "pg_try_advisory_xact_lock_shared",
        SideEffect,
    ),
    (
        "SELECT pg_advisory_unlock_all()",
        "pg_advisory_unlock_all",
        SideEffect,
    ),
    (
        "SELECT count(*) FILTER (WHERE pg_sleep(1) IS NULL) FROM retail.orders",
        "pg_sleep",
        SideEffect,
    ),
    (
        "SELECT order_id FROM retail.orders ORDER BY pg_try_advisory_lock(order_id)",
        "pg_try_advisory_lock",
        SideEffect,
    ),
    (
        "SELECT store_id FROM retail.orders GROUP BY store_id HAVING pg_try_advisory_lock(store_id)",
        "pg_try_advisory_lock",
        SideEffect,
    ),
    (
        "SELECT order_id FROM retail.orders GROUP BY order_id, pg_try_advisory_lock(order_id)",
        "pg_try_advisory_lock",
        SideEffect,
    ),
    (
        "SELECT * FROM retail.orders LIMIT (SELECT length(pg_sleep(5)::text) + 1)",
        "pg_sleep",
        SideEffect,
    ),
    (
        "SELECT sum(quantity) OVER (PARTITION BY pg_try_advisory_lock(order_id)) FROM retail.order_items",
        "pg_try_advisory_lock",
        SideEffect,
    ),
    (
        "SELECT o.order_id FROM retail.orders o JOIN retail.stores s ON pg_try_advisory_lock(s.store_id) AND o.store_id = s.store_id",
        "pg_try_advisory_lock",
        SideEffect,
    ),
    (
        "SELECT * FROM (VALUES (pg_try_advisory_lock(1))) v(locked)",
        "pg_try_advisory_lock",
        SideEffect,
    ),
    (
        "SELECT * FROM ROWS FROM (generate_series(1, 3), pg_sleep(1))",
        "pg_sleep",
        SideEffect,
    ),
    (
        "SELECT * FROM retail.orders o, LATERAL (SELECT pg_try_advisory_lock(o.order_id)) l",
        "pg_try_advisory_lock",
        SideEffect,
    ),
    (
        "WITH s AS MATERIALIZED (SELECT pg_sleep_for('5 seconds')) SELECT 1 FROM s",
        "pg_sleep_for",
        SideEffect,
    ),
    (
        "SELECT ('5 seconds'::interval).pg_sleep_for",
        "pg_sleep_for",
        SideEffect,
    ),
    (
        "SELECT pg_sleep_until(now() + interval '1 minute')",
        "pg_sleep_until",
        SideEffect,
    ),
    (
        "SELECT count(*) FROM retail.orders TABLESAMPLE SYSTEM (50) REPEATABLE (pg_try_advisory_lock(7)::int)",
        "pg_try_advisory_lock",
        SideEffect,
    ),
    (
        "SELECT count(*) FROM retail.orders TABLESAMPLE BERNOULLI (length(pg_sleep(1)::text) + 50)",
        "pg_sleep",
        SideEffect,
    ),
    // the TABLESAMPLE method is itself a function (tsm_handler)
    // fails at analysis here: tsm_system_time is not installed
    (
        "SELECT count(*) FROM retail.orders TABLESAMPLE system_time (1000)",
        "system_time",
        SideEffect,
    ),
    ("SELECT * FROM setseed(0.1)", "setseed", SideEffect),
    (
        "SELECT pg_current_xact_id()",
        "pg_current_xact_id",
        SideEffect,
    ),
    (
        "SELECT pg_logical_emit_message(false, 'sqlmcp', 'x')",
        "pg_logical_emit_message",
        SideEffect,
    ),
    ("SELECT pg_stat_reset()", "pg_stat_reset", SideEffect),
    (
        "SELECT pg_stat_force_next_flush()",
        "pg_stat_force_next_flush",
        SideEffect,
    ),
    (
        "SELECT pg_notify(chr(99), 'x') FROM retail.orders",
        "pg_notify",
        SideEffect,
    ),
    (
        "LOCK TABLE retail.orders IN ACCESS EXCLUSIVE MODE",
        "lock",
        SideEffect,
    ),
    ("LOAD 'dblink'", "load", SideEffect),
    ("CHECKPOINT", "checkpoint", SideEffect),
    // Write: writes, including functions that write from a SELECT
    (
        "WITH x AS MATERIALIZED (UPDATE retail.inventory SET stock_level = 0 RETURNING 1) SELECT count(*) FROM x",
        "update",
        Write,
    ),
    (
        "WITH m AS (MERGE INTO retail.categories c USING (VALUES ('x')) v(n) ON false WHEN NOT MATCHED THEN INSERT (category_name) VALUES (v.n) RETURNING c.category_id) SELECT * FROM m",
        "merge",
        Write,
    ),
    // fails at analysis: a data-modifying WITH must be at the top level
    (
        "SELECT * FROM (SELECT 1) s, LATERAL (WITH d AS (DELETE FROM retail.orders RETURNING 1) SELECT 1) x",
        "delete",
        Write,
    ),
    (
        "CREATE TEMP TABLE stolen AS SELECT * FROM retail.customers",
        "create",
        Write,
    ),
    (r#"SELECT lo_from_bytea(0, '\x41')"#, "lo_from_bytea", Write),
    (r#"SELECT lo_put(424242, 0, '\x41')"#, "lo_put", Write),
    ("SELECT lo_unlink(424242)", "lo_unlink", Write),
    (
        "SELECT pg_catalog.lo_import('/etc/hostname', 424242)",
        "lo_import",
        Write,
    ),
    // text reaches nextval(regclass) through an implicit cast
    (
        "SELECT ('retail.orders_order_id_seq'::text).nextval",
        "nextval",
        Write,
    ),
    // PostgreSQL 18: writes pg_class statistics from a SELECT
    (
        "SELECT pg_restore_relation_stats('schemaname', 'retail', 'relname', 'orders', 'reltuples', 1e9::real)",
        "pg_restore_relation_stats",
        Write,
    ),
    (
        "SELECT pg_clear_attribute_stats('retail', 'orders', 'store_id', false)",
        "pg_clear_attribute_stats",
        Write,
    ),
    // an index maintenance function: the literal becomes regclass implicitly
    (
        "SELECT brin_summarize_new_values('retail.orders_order_date_idx')",
        "brin_summarize_new_values",
        Write,
    ),
    (
        "SELECT pg_replication_origin_create('sqlmcp')",
        "pg_replication_origin_create",
        Write,
    ),
    (
        "SELECT pg_import_system_collations('retail')",
        "pg_import_system_collations",
        Write,
    ),
    // Snoop: the system catalog, settings, files and the server: functions, reg* types and their input functions, xml, relations, SQL-syntax functions
    (
        "SELECT * FROM pg_show_all_settings()",
        "pg_show_all_settings",
        Snoop,
    ),
    (
        "SELECT pg_get_functiondef('retail.caller_store_ids'::regproc)",
        "pg_get_functiondef",
        Snoop,
    ),
    (
        "SELECT pg_relation_filepath('retail.orders')",
        "pg_relation_filepath",
        Snoop,
    ),
    ("SELECT 1260::regrole", "regrole", Snoop),
    ("SELECT 'pg_authid'::regclass::int8", "regclass", Snoop),
    ("SELECT regclass 'pg_authid'", "regclass", Snoop),
    (
        "SELECT CAST('pg_catalog' AS regnamespace)::text",
        "regnamespace",
        Snoop,
    ),
    (
        "SELECT 'retail.caller_is_head_office'::regproc",
        "regproc",
        Snoop,
    ),
    (
        "SELECT 'retail.caller_store_ids()'::regprocedure",
        "regprocedure",
        Snoop,
    ),
    ("SELECT '+(int4,int4)'::regoperator", "regoperator", Snoop),
    ("SELECT 'retail.stores'::regtype", "regtype", Snoop),
    ("SELECT regrole('pg_read_server_files')", "regrole", Snoop),
    ("SELECT TREAT('pg_authid' AS regclass)", "regclass", Snoop),
    ("SELECT 16384::oid", "oid", Snoop),
    // this server has no libxml: fails at analysis, the policy must refuse it first anyway
    ("SELECT '<a/>'::xml", "xml", Snoop),
    (
        r#"SELECT XMLPARSE(DOCUMENT '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>')"#,
        "xmlparse",
        Snoop,
    ),
    // no libxml here: fails at analysis
    (
        "SELECT xmlelement(name a, current_setting('data_directory'))",
        "xmlelement",
        Snoop,
    ),
    // no libxml here: fails at analysis
    (
        "SELECT * FROM XMLTABLE('/r' PASSING ('<r/>') COLUMNS x text PATH '.')",
        "xmltable",
        Snoop,
    ),
    ("SELECT to_regclass('pg_authid')", "to_regclass", Snoop),
    (
        "SELECT to_regrole('pg_read_server_files')",
        "to_regrole",
        Snoop,
    ),
    (
        "SELECT pg_input_is_valid('retail.secret', 'regclass')",
        "pg_input_is_valid",
        Snoop,
    ),
    (
        "SELECT has_table_privilege('retail.orders', 'DELETE')",
        "has_table_privilege",
        Snoop,
    ),
    (
        "SELECT pg_has_role('sqlmcp', 'MEMBER')",
        "pg_has_role",
        Snoop,
    ),
    // the literals go through regtype's input function with no cast in the tree: an existence oracle
    (
        "SELECT pg_typeof(1) IN ('int4', 'retail.secret')",
        "pg_typeof",
        Snoop,
    ),
    ("SELECT current_user", "current_user", Snoop),
    ("SELECT session_user", "session_user", Snoop),
    ("SELECT system_user", "system_user", Snoop),
    // CURRENT_CATALOG is a FuncCall pg_catalog.current_database in the raw tree
    ("SELECT current_catalog", "current_database", Snoop),
    ("SELECT current_schemas(true)", "current_schemas", Snoop),
    ("SELECT pg_catalog.version()", "version", Snoop),
    (
        "SELECT inet_server_addr(), inet_server_port()",
        "inet_server_addr",
        Snoop,
    ),
    (
        "SELECT pg_postmaster_start_time()",
        "pg_postmaster_start_time",
        Snoop,
    ),
    (
        "SELECT name, setting FROM pg_settings WHERE name = 'data_directory'",
        "pg_settings",
        Snoop,
    ),
    (
        "SELECT prosrc FROM pg_catalog.pg_proc WHERE proname = 'caller_store_ids'",
        "pg_proc",
        Snoop,
    ),
    ("SELECT qual FROM pg_policies", "pg_policies", Snoop),
    (
        "SELECT obj_description(16384, 'pg_class')",
        "obj_description",
        Snoop,
    ),
    ("SELECT format_type(16384, NULL)", "format_type", Snoop),
    ("SELECT pg_get_userbyid(10)", "pg_get_userbyid", Snoop),
    (
        "SELECT pg_describe_object(1259, 16384, 0)",
        "pg_describe_object",
        Snoop,
    ),
    (
        "SELECT pg_stat_file('postgresql.conf')",
        "pg_stat_file",
        Snoop,
    ),
    ("SELECT * FROM pg_ls_waldir()", "pg_ls_waldir", Snoop),
    ("SELECT pg_current_logfile()", "pg_current_logfile", Snoop),
    (
        "SELECT pg_catalog.pg_authid.rolpassword FROM pg_catalog.pg_authid",
        "pg_authid",
        Snoop,
    ),
    (
        "SELECT tableoid, order_id FROM retail.orders",
        "tableoid",
        Snoop,
    ),
    ("SHOW data_directory", "show", Snoop),
    // Stats: other tenants' volumes and the stores' credentials
    (
        "SELECT store_name FROM retail.stores WHERE rls_user_id OPERATOR(pg_catalog.=) '00000000-0000-0000-0000-000000000000'",
        "rls_user_id",
        Stats,
    ),
    (
        "SELECT pg_stat_get_live_tuples('retail.orders'::regclass)",
        "pg_stat_get_live_tuples",
        Stats,
    ),
    (
        "SELECT rls_user_id FROM retail.stores",
        "rls_user_id",
        Stats,
    ),
    (
        "SELECT retail.stores.rls_user_id FROM retail.stores",
        "rls_user_id",
        Stats,
    ),
    (
        "SELECT store_name FROM retail.stores s WHERE s.rls_user_id::text LIKE '0%'",
        "rls_user_id",
        Stats,
    ),
    (
        "SELECT store_name FROM retail.stores ORDER BY rls_user_id",
        "rls_user_id",
        Stats,
    ),
    (
        "SELECT s.row_to_json FROM retail.stores s",
        "rls_user_id",
        Stats,
    ),
    (
        "SELECT to_jsonb(s) FROM retail.stores s",
        "rls_user_id",
        Stats,
    ),
    // whole-row alias.f: concat(VARIADIC "any") accepts the row and prints every column
    ("SELECT s.concat FROM retail.stores s", "rls_user_id", Stats),
    // max(record) over a whole row
    ("SELECT max(s) FROM retail.stores s", "rls_user_id", Stats),
    (
        "SELECT (s).rls_user_id FROM retail.stores s",
        "rls_user_id",
        Stats,
    ),
    (
        "SELECT * FROM retail.orders JOIN retail.stores USING (store_id)",
        "rls_user_id",
        Stats,
    ),
    ("TABLE retail.stores", "rls_user_id", Stats),
    (
        "SELECT store_name FROM retail.stores JOIN (VALUES ('00000000-0000-0000-0000-000000000000'::uuid)) v(rls_user_id) USING (rls_user_id)",
        "rls_user_id",
        Stats,
    ),
    // NATURAL JOIN compares rls_user_id without naming it anywhere in the parse tree
    (
        "SELECT store_name FROM retail.stores NATURAL JOIN (VALUES ('00000000-0000-0000-0000-000000000000'::uuid)) v(rls_user_id)",
        "rls_user_id",
        Stats,
    ),
    (
        "SELECT reltuples FROM pg_class WHERE relname = 'orders'",
        "pg_class",
        Stats,
    ),
    (
        "SELECT most_common_vals, histogram_bounds FROM pg_stats WHERE tablename = 'orders'",
        "pg_stats",
        Stats,
    ),
    (
        "SELECT n_live_tup FROM pg_stat_user_tables",
        "pg_stat_user_tables",
        Stats,
    ),
    (
        "SELECT pg_relation_size('retail.orders')",
        "pg_relation_size",
        Stats,
    ),
    (
        "SELECT pg_total_relation_size('retail.order_items')",
        "pg_total_relation_size",
        Stats,
    ),
    (
        "SELECT pg_catalog.pg_stat_get_numscans(16400)",
        "pg_stat_get_numscans",
        Stats,
    ),
    (
        "SELECT sum(pg_column_size(o)) FROM retail.orders o",
        "pg_column_size",
        Stats,
    ),
    // gaps in ctid reveal rows hidden by row-level security
    ("SELECT ctid, order_id FROM retail.orders", "ctid", Stats),
    // system columns: transaction ids count everyone's writes
    (
        "SELECT o.xmin, o.order_id FROM retail.orders o",
        "xmin",
        Stats,
    ),
    ("SELECT '1'::xid8", "xid8", Stats),
    (
        "EXPLAIN SELECT count(*) FROM retail.orders WHERE store_id = 2",
        "costs",
        Stats,
    ),
    (
        "EXPLAIN (COSTS true) SELECT * FROM retail.customers",
        "costs",
        Stats,
    ),
    (
        "EXPLAIN (FORMAT YAML, SUMMARY) SELECT * FROM retail.order_items",
        "costs",
        Stats,
    ),
    // OtherCallers: other backends: observing, cancelling, terminating
    // OPERATOR(schema.op) syntax around a refused function
    (
        "SELECT 'pid ' OPERATOR(pg_catalog.||) pg_backend_pid()",
        "pg_backend_pid",
        OtherCallers,
    ),
    (
        "SELECT pg_stat_get_activity(NULL)",
        "pg_stat_get_activity",
        OtherCallers,
    ),
    (
        "SELECT (SELECT pg_cancel_backend(pid) FROM unnest(ARRAY(SELECT pg_stat_get_backend_pid(i) FROM pg_stat_get_backend_idset() i)) pid)",
        "pg_cancel_backend",
        OtherCallers,
    ),
    (
        "SELECT (SELECT pg_terminate_backend(pid) FROM unnest(ARRAY(SELECT pg_stat_get_backend_pid(i) FROM pg_stat_get_backend_idset() i)) pid)",
        "pg_terminate_backend",
        OtherCallers,
    ),
    (
        "SELECT (1::int).pg_cancel_backend",
        "pg_cancel_backend",
        OtherCallers,
    ),
    (
        "SELECT (pg_stat_get_backend_pid(1)).pg_terminate_backend",
        "pg_terminate_backend",
        OtherCallers,
    ),
    (
        "SELECT * FROM pg_stat_get_backend_idset()",
        "pg_stat_get_backend_idset",
        OtherCallers,
    ),
    (
        "SELECT pg_stat_get_backend_activity(1), pg_stat_get_backend_client_addr(1)",
        "pg_stat_get_backend_activity",
        OtherCallers,
    ),
    ("SELECT pg_backend_pid()", "pg_backend_pid", OtherCallers),
    (
        "SELECT pg_blocking_pids(1)",
        "pg_blocking_pids",
        OtherCallers,
    ),
    (
        "SELECT pg_safe_snapshot_blocking_pids(1)",
        "pg_safe_snapshot_blocking_pids",
        OtherCallers,
    ),
    (
        "SELECT * FROM pg_lock_status()",
        "pg_lock_status",
        OtherCallers,
    ),
    ("SELECT pid, mode FROM pg_locks", "pg_locks", OtherCallers),
    (
        "SELECT pg_log_backend_memory_contexts(1)",
        "pg_log_backend_memory_contexts",
        OtherCallers,
    ),
    // Encoding: lexer tricks; the trailing U+00A0/U+2003/U+3000 ones read a system relation if anything trims the text (Rust str::trim does) between check and execution
    // as written, fails at analysis (the CTE has no column name); trimmed, it reads pg_settings
    (
        "WITH pg_settings\u{a0} AS (SELECT 1) SELECT name, setting FROM pg_settings\u{a0}",
        "pg_settings",
        Encoding,
    ),
    (
        "WITH pg_authid\u{2003} AS (SELECT 'x' AS rolname, 'y' AS rolpassword) SELECT rolname, rolpassword FROM pg_authid\u{2003}",
        "pg_authid",
        Encoding,
    ),
    (
        "WITH pg_stat_activity\u{3000} AS (SELECT 1 AS pid, 'x' AS query) SELECT pid, query FROM pg_stat_activity\u{3000}",
        "pg_stat_activity",
        Encoding,
    ),
    // as written, no such relation; trimmed, pg_authid
    (
        "SELECT * FROM pg_catalog.pg_authid\u{3000}",
        "pg_authid",
        Encoding,
    ),
    // as written, no such column; trimmed, the credential
    (
        "SELECT store_name FROM retail.stores ORDER BY rls_user_id\u{2003}",
        "rls_user_id",
        Encoding,
    ),
    (
        r#"SELECT U&"rls\005fuser\005fid" FROM retail.stores"#,
        "rls_user_id",
        Encoding,
    ),
    (
        "SELECT RLS_USER_ID FROM retail.stores",
        "rls_user_id",
        Encoding,
    ),
    (
        r#"SELECT U&"!0070!0067_sleep" UESCAPE '!' (1)"#,
        "pg_sleep",
        Encoding,
    ),
    (
        r#"SELECT E'\x27', pg_read_file(E'/etc/\x70asswd')"#,
        "pg_read_file",
        Encoding,
    ),
    (
        "SELECT $f$1$f$::float8, pg_sleep($f$1$f$::float8)",
        "pg_sleep",
        Encoding,
    ),
    // comments nest in PostgreSQL: pg_sleep is commented out, pg_terminate_backend is not
    (
        "SELECT 1 /* /* */ pg_sleep(1) */ , pg_terminate_backend(1)",
        "pg_terminate_backend",
        Encoding,
    ),
    ("SELECT pg_catalog . pg_sleep (1)", "pg_sleep", Encoding),
    // vertical tab is whitespace to PostgreSQL's lexer
    ("SELECT\u{b}pg_sleep(1)", "pg_sleep", Encoding),
    (
        r#"SELECT "pg_catalog"."set_config"('role', 'sqlmcp', true)"#,
        "set_config",
        Encoding,
    ),
    // Control: sessions, transactions, cursors, plans
    ("PREPARE q AS SELECT 1", "prepare", Control),
    (
        "DECLARE c CURSOR WITH HOLD FOR SELECT * FROM retail.orders",
        "declare",
        Control,
    ),
    ("LISTEN sqlmcp_channel", "listen", Control),
    ("SET statement_timeout = 0", "set", Control),
    ("SET TRANSACTION READ WRITE", "set", Control),
    ("EXPLAIN ANALYSE SELECT 1", "analyze", Control),
    (
        "EXPLAIN (ANALYZE on, COSTS off, TIMING off) SELECT count(*) FROM retail.orders",
        "analyze",
        Control,
    ),
    // fails at execution: no cursor
    ("FETCH ALL FROM c", "fetch", Control),
    // Escape: identity sets (migration V6) — signing a longer list of stores,
    // or every store, with the caller's own MAC; the server's statement
    (
        "SELECT set_config('sqlmcp.caller', '*:' || split_part(current_setting('sqlmcp.caller'), ':', 2), true)",
        "set_config",
        Escape,
    ),
    (
        "SELECT sqlmcp_identity.open_call(NULL, ARRAY[1, 2, 3, 4, 5, 6, 7, 8], NULL)",
        "open_call",
        Escape,
    ),
    (
        "SELECT count(*) FROM retail.orders, LATERAL (SELECT sqlmcp_identity.open_call('00000000-0000-0000-0000-000000000000', NULL, NULL)) o",
        "open_call",
        Escape,
    ),
    // Stats: who manages which region is a credential in header mode
    (
        "SELECT rls_user_id FROM sqlmcp_identity.region_managers",
        "region_managers",
        Stats,
    ),
    (
        "SELECT s.store_name, r.region_name, s.rls_user_id FROM retail.stores s JOIN retail.regions r USING (region_id)",
        "rls_user_id",
        Stats,
    ),
    (
        "SELECT sqlmcp_identity.granted_stores()",
        "granted_stores",
        Snoop,
    ),
];

/// Legitimate analytics over the retail schema that use allow-listed functions.
/// Each ran as written against a copy of the schema (PostgreSQL 18.6 +
/// pgvector). They exercise the syntax that turns into function calls in the
/// raw parse tree (EXTRACT, LIKE … ESCAPE → like_escape, SIMILAR TO →
/// similar_to_escape) and none reads stores.rls_user_id or uses EXPLAIN.
pub const MORE_LEGITIMATE: &[&str] = &[
    "SELECT percentile_cont(ARRAY[0.25, 0.5, 0.75]) WITHIN GROUP (ORDER BY total_amount) AS quartiles, percentile_disc(0.5) WITHIN GROUP (ORDER BY quantity) AS median_qty FROM retail.order_items",
    "SELECT order_date, sum(total_amount) AS revenue, avg(sum(total_amount)) OVER (ORDER BY order_date ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS moving_avg_3 FROM retail.orders JOIN retail.order_items USING (order_id) GROUP BY order_date ORDER BY order_date",
    "SELECT o.order_date, count(*) OVER (ORDER BY o.order_date RANGE BETWEEN interval '30 days' PRECEDING AND CURRENT ROW) AS orders_last_30_days FROM retail.orders o ORDER BY o.order_date",
    "SELECT c.category_name, jsonb_agg(jsonb_build_object('sku', p.sku, 'price', p.base_price) ORDER BY p.base_price DESC) AS products FROM retail.categories c JOIN retail.products p USING (category_id) GROUP BY c.category_name",
    "SELECT jsonb_object_agg(store_name, is_online) AS online_by_store FROM retail.stores",
    "SELECT doc ->> 'sku' AS sku, (doc ->> 'price')::numeric(10,2) AS price FROM (SELECT to_jsonb(p) - 'product_description' AS doc FROM retail.products p) d ORDER BY price DESC",
    r#"SELECT regexp_replace(phone, '[^0-9]', '', 'g') AS digits, (regexp_match(email, '@(.*)$'))[1] AS domain FROM retail.customers WHERE email ~* '@EXAMPLE\.com$' OR phone SIMILAR TO '555[- ]%'"#,
    "SELECT split_part(email, '@', 2) AS domain, count(*) FROM retail.customers WHERE email LIKE '%!_%' ESCAPE '!' OR email ILIKE '%.COM' GROUP BY 1 ORDER BY 2 DESC",
    "SELECT m::date AS month, count(o.order_id) AS orders FROM generate_series(date_trunc('month', DATE '2024-01-01'), DATE '2024-06-01', interval '1 month') AS m LEFT JOIN retail.orders o ON date_trunc('month', o.order_date) = m GROUP BY m ORDER BY m",
    "SELECT customer_id, age(DATE '2024-06-30', min(order_date)::timestamp) AS customer_for, extract(isodow FROM max(order_date)) AS last_isodow, max(order_date) + make_interval(days => 30) AS follow_up FROM retail.orders GROUP BY customer_id",
    "SELECT date_bin(interval '7 days', order_date::timestamp, TIMESTAMP '2024-01-01') AS week, count(*) FROM retail.orders GROUP BY 1 ORDER BY 1",
    "SELECT product_name, ts_rank(to_tsvector('english', product_description), websearch_to_tsquery('english', 'copper pipe')) AS rank, ts_headline('english', product_description, websearch_to_tsquery('english', 'copper pipe')) AS snippet FROM retail.products WHERE to_tsvector('english', product_description) @@ websearch_to_tsquery('english', 'copper pipe') ORDER BY rank DESC",
    "SELECT product_name FROM retail.products WHERE to_tsvector('english', product_name || ' ' || product_description) @@ plainto_tsquery('english', 'extension cord')",
    "SELECT o.store_id, string_agg(DISTINCT p.product_name, '; ' ORDER BY p.product_name) FILTER (WHERE oi.discount_percent > 0) AS discounted_products FROM retail.order_items oi JOIN retail.orders o USING (order_id) JOIN retail.products p ON p.product_id = oi.product_id GROUP BY o.store_id",
    "SELECT c.category_name, o.store_id, sum(oi.total_amount) AS revenue, GROUPING(c.category_name, o.store_id) AS level FROM retail.order_items oi JOIN retail.orders o USING (order_id) JOIN retail.products p ON p.product_id = oi.product_id JOIN retail.categories c ON c.category_id = p.category_id GROUP BY CUBE (c.category_name, o.store_id) ORDER BY level, revenue DESC",
    "SELECT DISTINCT ON (c.customer_id) c.customer_id, c.first_name, o.order_id, o.order_date FROM retail.customers c JOIN retail.orders o USING (customer_id) ORDER BY c.customer_id, o.order_date DESC",
    "SELECT s.store_name, top.product_name, top.sold FROM retail.stores s CROSS JOIN LATERAL (SELECT p.product_name, sum(oi.quantity) AS sold FROM retail.order_items oi JOIN retail.products p USING (product_id) WHERE oi.store_id = s.store_id GROUP BY p.product_name ORDER BY sold DESC LIMIT 2) top ORDER BY s.store_name, top.sold DESC",
    "SELECT e.product_id, e.description_embedding <=> q.description_embedding AS distance, cosine_distance(e.description_embedding, q.description_embedding) AS same_distance, l2_distance(e.description_embedding, q.description_embedding) AS l2 FROM retail.product_description_embeddings e JOIN retail.product_description_embeddings q ON q.product_id = 1 AND q.model_id = e.model_id WHERE e.product_id <> 1 ORDER BY distance LIMIT 5",
    "SELECT model_id, vector_dims(description_embedding) AS dims, count(*), avg(description_embedding) AS centroid FROM retail.product_description_embeddings GROUP BY model_id, vector_dims(description_embedding)",
    "WITH RECURSIVE weeks(n, week_start) AS (SELECT 0, DATE '2024-01-01' UNION ALL SELECT n + 1, week_start + 7 FROM weeks WHERE n < 25) SELECT w.week_start, count(o.order_id) AS orders FROM weeks w LEFT JOIN retail.orders o ON o.order_date >= w.week_start AND o.order_date < w.week_start + 7 GROUP BY w.week_start ORDER BY w.week_start",
    "SELECT product_name, CASE WHEN gross_margin_percent >= 60 THEN 'high' WHEN gross_margin_percent >= 50 THEN 'medium' ELSE 'low' END AS margin_band, COALESCE(NULLIF(gross_margin_percent, 0), round((base_price - cost) / NULLIF(base_price, 0) * 100, 2)) AS margin, GREATEST(base_price - cost, 0) AS profit, LEAST(cost, base_price) AS floor_price FROM retail.products",
    "SELECT to_char(order_date, 'FMMonth YYYY') AS month, to_char(sum(total_amount), 'FM999G999D00') AS revenue, round(avg(quantity)::numeric, 1) AS avg_qty, trunc(sum(discount_amount), 0) AS discounts FROM retail.orders JOIN retail.order_items USING (order_id) GROUP BY 1, date_trunc('month', order_date) ORDER BY date_trunc('month', order_date)",
    "SELECT order_id::text AS id, total_amount::numeric(10,2) AS total, (unit_price * quantity)::int AS gross, order_date::date AS day, CAST(discount_percent AS float8) / 100 AS discount_rate FROM retail.order_items JOIN retail.orders USING (order_id) ORDER BY 1",
    "SELECT initcap(first_name) || ' ' || upper(left(last_name, 1)) || '.' AS name, lpad(customer_id::text, 6, '0') AS code, concat_ws(', ', last_name, first_name) AS sort_name, coalesce(phone, 'n/a') AS phone, created_at::date FROM retail.customers ORDER BY created_at",
    "SELECT p.product_name, i.store_id, i.stock_level, sum(i.stock_level) OVER (PARTITION BY p.product_id) AS total_stock, round(100.0 * i.stock_level / NULLIF(sum(i.stock_level) OVER (PARTITION BY p.product_id), 0), 1) AS share_pct, lead(i.stock_level) OVER (PARTITION BY p.product_id ORDER BY i.store_id) AS next_store_stock FROM retail.inventory i JOIN retail.products p USING (product_id)",
    "SELECT width_bucket(base_price, 0, 100, 4) AS price_band, count(*), min(base_price), max(base_price), array_agg(sku ORDER BY sku) FROM retail.products GROUP BY 1 ORDER BY 1",
    "SELECT c.customer_id, count(o.order_id) AS orders, bool_or(o.order_date >= DATE '2024-03-01') AS active_since_march, max(o.order_date) - min(o.order_date) AS span_days, date_part('year', c.created_at) AS cohort FROM retail.customers c LEFT JOIN retail.orders o USING (customer_id) GROUP BY c.customer_id, c.created_at HAVING count(o.order_id) > 0",
    r#"SELECT j.sku, j.qty FROM jsonb_to_recordset('[{"sku": "PL-001", "qty": 3}, {"sku": "EL-002", "qty": 1}]'::jsonb) AS j(sku varchar, qty int) JOIN retail.products p ON p.sku = j.sku"#,
    "SELECT corr(quantity, total_amount) AS qty_revenue_corr, regr_slope(total_amount, quantity) AS slope, stddev_samp(total_amount) AS sd, mode() WITHIN GROUP (ORDER BY product_id) AS most_common_product, rank(50) WITHIN GROUP (ORDER BY total_amount) AS rank_of_50 FROM retail.order_items",
    "SELECT r.region_name, count(DISTINCT o.store_id) AS stores, sum(oi.total_amount) AS revenue FROM retail.orders o JOIN retail.order_items oi USING (order_id) JOIN retail.stores s ON s.store_id = o.store_id JOIN retail.regions r ON r.region_id = s.region_id GROUP BY r.region_name ORDER BY revenue DESC",
    "SELECT t.type_name, count(*) FILTER (WHERE i.stock_level = 0) AS out_of_stock, count(*) FILTER (WHERE i.stock_level BETWEEN 1 AND 5) AS low FROM retail.inventory i JOIN retail.products p USING (product_id) JOIN retail.product_types t USING (type_id) GROUP BY ROLLUP (t.type_name)",
];
