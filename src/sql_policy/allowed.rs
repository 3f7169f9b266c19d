//! The reviewed allow-lists of the raw-SQL policy: the only functions, types
//! and non-immutable operators a query written by a model may reach.
//!
//! How the lists were made (PostgreSQL 18.6 + pgvector 0.8.6):
//!
//! * Every name below was checked to exist in `pg_catalog` (or, for
//!   [`VECTOR_FUNCTIONS`], to belong to the `vector` extension), and **every
//!   overload** of it was listed with
//!   `SELECT proname, pg_get_function_identity_arguments(oid), provolatile FROM pg_proc WHERE proname = ANY (…)`.
//!   The check is by name, so a name is only here if *all* its overloads are
//!   harmless; overloads that take a system catalog type (`xid`, `oid`, `name`,
//!   `regconfig`, …) are noted next to the name with why they cannot be abused.
//! * A name is here because an analyst over the `retail` schema needs it, not
//!   because it is immutable: volatile or stable overloads are noted and
//!   justified (time, randomness, time zone, text-search configuration).
//! * Nothing here runs SQL from a string, reads or writes files, the
//!   system catalog, settings or statistics, takes a lock, sleeps, signals or
//!   observes another backend, or changes the session. In particular these
//!   are deliberately absent: `ts_stat`, `ts_rewrite` (its `(tsquery, text)`
//!   overload runs a query), every `*_to_xml*`/xml function, `current_setting`,
//!   `set_config`, `pg_*` (all of them, pg_typeof included), `has_*_privilege`, `to_reg*`,
//!   `pg_input_is_valid`/`pg_input_error_info`, `format_type`,
//!   `obj_description`/`col_description`, `current_user`/`session_user`/
//!   `current_database`/`current_schema(s)`/`system_user`, `version`,
//!   `txid_*`, `nextval`/`currval`/`setval`/`lastval`, `setseed`, `lo_*`,
//!   advisory locks and `inet_*`.
//!
//! Rule for adding a name: it must be needed by a real analytics query; list
//! all its overloads on the target PostgreSQL version and confirm none takes
//! SQL text, a `reg*`/`oid`/`xid`/`name` argument that looks something up,
//! a file path or a process id, and none has an effect outside the result;
//! note any non-immutable overload in a comment; have a second person review
//! it. Names are compared lower-case, as `proname`.
//!
//! Beware that some SQL syntax becomes a function call in the raw parse tree
//! (`pg_catalog.<name>`, `funcformat = COERCE_SQL_SYNTAX`): `EXTRACT` →
//! `extract`, `OVERLAY` → `overlay`, `POSITION` → `position`, `SUBSTRING` →
//! `substring`, `TRIM` → `btrim`/`ltrim`/`rtrim`, `AT TIME ZONE`/`AT LOCAL`
//! → `timezone`, `a OVERLAPS b` → `overlaps`, `NORMALIZE`/`IS NORMALIZED` →
//! `normalize`/`is_normalized`, `LIKE … ESCAPE` → `like_escape`,
//! `SIMILAR TO` → `similar_to_escape`, `COLLATION FOR` → `pg_collation_for`,
//! `CURRENT_USER`/`SESSION_USER`/`CURRENT_ROLE`/`USER` → `current_user`/
//! `session_user`, `CURRENT_CATALOG` → `current_database`, `CURRENT_SCHEMA`
//! → `current_schema`, `SYSTEM_USER` → `system_user`, `XMLEXISTS` →
//! `xmlexists`, and `TREAT(x AS t)` → a call of the function named `t`. The
//! first group is listed here; the rest is refused on purpose.

/// Built-in functions (schema pg_catalog) a query may call by name, lower-case `proname`.
pub const FUNCTIONS: &[&str] = &[
    // arithmetic and math (greatest/least/coalesce/nullif are syntax, not functions)
    "abs",
    "cbrt",
    "ceil",
    "ceiling",
    "degrees",
    "div",
    "erf",
    "erfc",
    "exp",
    "factorial",
    "floor",
    "gamma",
    "gcd",
    "lcm",
    "lgamma",
    "ln",
    "log",
    "log10",
    "min_scale",
    "mod",
    "pi",
    "pow",
    "power",
    "radians",
    "round",
    "scale",
    "sign",
    "sqrt",
    "trim_scale",
    "trunc",
    "width_bucket",
    // trigonometry
    "acos",
    "acosd",
    "acosh",
    "asin",
    "asind",
    "asinh",
    "atan",
    "atan2",
    "atan2d",
    "atand",
    "atanh",
    "cos",
    "cosd",
    "cosh",
    "cot",
    "cotd",
    "sin",
    "sind",
    "sinh",
    "tan",
    "tand",
    "tanh",
    // randomness: volatile (they advance this backend's PRNG) but harmless;
    // `setseed`, which would make them predictable across calls, is not here
    "random",        // also random(min, max) for int, bigint, numeric
    "random_normal", // volatile, as random
    // casts spelled as functions. Overloads on system catalog types: int8(oid)
    // needs an oid value, which cannot be named (type oid is refused);
    // text(name)/varchar(name)/bpchar(name) need a `name` value, and text(xml)
    // an xml value, neither of which a query can produce.
    "bit",
    "bool",
    "bpchar",
    "date",
    "float4",
    "float8",
    "int2",
    "int4",
    "int8",
    "interval",
    "numeric",
    "text",
    "time",
    "timestamp",
    "timestamptz", // stable: depends on TimeZone
    "timetz",
    "to_char",   // stable: locale and TimeZone
    "to_number", // stable: locale
    "varbit",
    "varchar",
    // strings
    "ascii",
    "bit_length",
    "btrim", // TRIM(BOTH …)
    "casefold",
    "char_length",
    "character_length",
    "chr",
    "concat",       // stable: calls the output function of each argument's type
    "concat_ws",    // stable, as concat
    "convert",      // (bytea, name, name): encoding names, no lookup beyond encodings
    "convert_from", // (bytea, name)
    "convert_to",   // (text, name)
    "decode",
    "encode",
    "format", // stable, as concat; %I/%L only quote text
    "initcap",
    "is_normalized", // x IS NORMALIZED
    "left",
    "length",      // also length(bytea, name encoding), length(tsvector), length(bit)
    "like_escape", // LIKE … ESCAPE
    "lower",       // also lower(range)
    "lpad",
    "ltrim",     // TRIM(LEADING …)
    "normalize", // NORMALIZE(x)
    "octet_length",
    "overlay",  // OVERLAY(… PLACING …)
    "position", // POSITION(a IN b)
    "quote_ident",
    "quote_literal",  // stable for anyelement: output function
    "quote_nullable", // stable, as quote_literal
    "regexp_count",
    "regexp_instr",
    "regexp_like",
    "regexp_match",
    "regexp_matches",
    "regexp_replace",
    "regexp_split_to_array",
    "regexp_split_to_table",
    "regexp_substr",
    "repeat",
    "replace",
    "reverse",
    "right",
    "rpad",
    "rtrim",             // TRIM(TRAILING …)
    "similar_to_escape", // a SIMILAR TO b puts similar_to_escape(b) in the parse tree
    "split_part",
    "starts_with",
    "string_to_array",
    "string_to_table",
    "strpos",
    "substr",
    "substring", // SUBSTRING(… FROM … FOR …), SUBSTRING(… SIMILAR … ESCAPE …)
    "to_bin",
    "to_hex",
    "to_oct",
    "translate",
    "unistr",
    "upper", // also upper(range)
    // hashes and checksums
    "crc32",
    "crc32c",
    "md5",
    "sha224",
    "sha256",
    "sha384",
    "sha512",
    // bits and bytes
    "bit_count",
    "get_bit",
    "get_byte",
    "set_bit",  // returns a modified copy of its argument, writes nothing
    "set_byte", // as set_bit
    // date and time. now/statement_timestamp/transaction_timestamp are
    // stable, clock_timestamp/timeofday volatile: they only read the clock.
    // also age(xid): an xid value cannot be produced (type xid is refused,
    // and so must be the system columns xmin/xmax); mxid_age is not here
    "age",
    "clock_timestamp",
    "date_add", // stable for timestamptz: TimeZone
    "date_bin",
    "date_part",
    "date_subtract", // stable for timestamptz: TimeZone
    "date_trunc",    // stable for timestamptz: TimeZone
    "extract",       // EXTRACT(field FROM x)
    "isfinite",
    "justify_days",
    "justify_hours",
    "justify_interval",
    "make_date",
    "make_interval",
    "make_time",
    "make_timestamp",
    "make_timestamptz", // stable: TimeZone
    "now",
    "overlaps", // (a, b) OVERLAPS (c, d)
    "statement_timestamp",
    "timeofday",
    "timezone", // AT TIME ZONE / AT LOCAL
    "to_date",
    "to_timestamp",
    "transaction_timestamp",
    // aggregates (rank/dense_rank/percent_rank/cume_dist double as
    // hypothetical-set aggregates, below under window functions)
    "any_value",
    "array_agg",
    "avg",
    "bit_and",
    "bit_or",
    "bit_xor",
    "bool_and",
    "bool_or",
    "corr",
    "count",
    "covar_pop",
    "covar_samp",
    "every",
    "json_agg",
    "json_agg_strict",
    "json_object_agg",
    "json_object_agg_strict",
    "json_object_agg_unique",
    "json_object_agg_unique_strict",
    "jsonb_agg",
    "jsonb_agg_strict",
    "jsonb_object_agg",
    "jsonb_object_agg_strict",
    "jsonb_object_agg_unique",
    "jsonb_object_agg_unique_strict",
    "max", // also max(oid/tid/xid8/pg_lsn): needs values of refused types/system columns
    "min", // as max
    "mode",
    "percentile_cont",
    "percentile_disc",
    "range_agg",
    "range_intersect_agg",
    "regr_avgx",
    "regr_avgy",
    "regr_count",
    "regr_intercept",
    "regr_r2",
    "regr_slope",
    "regr_sxx",
    "regr_sxy",
    "regr_syy",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "string_agg",
    "sum",
    "var_pop",
    "var_samp",
    "variance",
    // window functions
    "cume_dist",
    "dense_rank",
    "first_value",
    "lag",
    "last_value",
    "lead",
    "nth_value",
    "ntile",
    "percent_rank",
    "rank",
    "row_number",
    // JSON. Stable ones call output functions or record I/O; the types named
    // in a column definition list (json_to_record … AS t(a int)) are checked
    // against TYPES like any other type name.
    "array_to_json",
    "json_array_elements",
    "json_array_elements_text",
    "json_array_length",
    "json_build_array",
    "json_build_object",
    "json_each",
    "json_each_text",
    "json_extract_path",
    "json_extract_path_text",
    "json_object",
    "json_object_keys",
    "json_populate_record",
    "json_populate_recordset",
    "json_strip_nulls",
    "json_to_record",
    "json_to_recordset",
    "json_typeof",
    "jsonb_array_elements",
    "jsonb_array_elements_text",
    "jsonb_array_length",
    "jsonb_build_array",
    "jsonb_build_object",
    "jsonb_each",
    "jsonb_each_text",
    "jsonb_extract_path",
    "jsonb_extract_path_text",
    "jsonb_insert", // returns a modified copy of its argument
    "jsonb_object",
    "jsonb_object_keys",
    "jsonb_path_exists",
    // the _tz variants are stable only because .datetime() comparisons read
    // TimeZone; kept so that jsonpath date arithmetic works
    "jsonb_path_exists_tz",
    "jsonb_path_match",
    "jsonb_path_match_tz",
    "jsonb_path_query",
    "jsonb_path_query_array",
    "jsonb_path_query_array_tz",
    "jsonb_path_query_first",
    "jsonb_path_query_first_tz",
    "jsonb_path_query_tz",
    "jsonb_populate_record",
    "jsonb_populate_recordset",
    "jsonb_pretty",
    "jsonb_set",     // returns a modified copy of its argument
    "jsonb_set_lax", // as jsonb_set
    "jsonb_strip_nulls",
    "jsonb_to_record",
    "jsonb_to_recordset",
    "jsonb_typeof",
    // whole-row arguments: row_to_json(s) of retail.stores would include
    // rls_user_id; the policy refuses whole-row references of stores.
    "row_to_json",
    "to_json",
    "to_jsonb",
    // arrays
    "array_append",
    "array_cat",
    "array_dims",
    "array_fill",
    "array_length",
    "array_lower",
    "array_ndims",
    "array_position",
    "array_positions",
    "array_prepend",
    "array_remove",
    "array_replace",
    "array_reverse",
    "array_sample",  // volatile: random choice, harmless (as random)
    "array_shuffle", // volatile: random order, harmless (as random)
    "array_sort",
    "array_to_string", // stable: output function of the element type
    "array_upper",
    "cardinality",
    "generate_subscripts",
    "trim_array",
    "unnest",
    // series
    "generate_series", // stable for timestamptz steps: TimeZone
    // ranges and multiranges
    "daterange",
    "datemultirange",
    "int4multirange",
    "int4range",
    "int8multirange",
    "int8range",
    "isempty",
    "lower_inc",
    "lower_inf",
    "multirange",
    "nummultirange",
    "numrange",
    "range_merge",
    "tsmultirange",
    "tsrange",
    "tstzmultirange",
    "tstzrange",
    "upper_inc",
    "upper_inf",
    // full-text search. Overloads taking regconfig look a text-search
    // configuration up by name ('english'): public, built-in, no data.
    // ts_stat and ts_rewrite are NOT here: they run SQL from a text argument.
    "array_to_tsvector",
    "json_to_tsvector",
    "jsonb_to_tsvector",
    "numnode",
    "phraseto_tsquery", // stable without a regconfig: default_text_search_config
    "plainto_tsquery",  // as phraseto_tsquery
    "querytree",
    "setweight",
    "strip",
    "to_tsquery",  // as phraseto_tsquery
    "to_tsvector", // as phraseto_tsquery
    "ts_delete",
    "ts_filter",
    "ts_headline", // as phraseto_tsquery
    "ts_rank",
    "ts_rank_cd",
    "tsquery_phrase",
    "tsvector_to_array",
    "websearch_to_tsquery", // as phraseto_tsquery
    // uuids: gen_random_uuid/uuidv4/uuidv7 are volatile, only random and clock
    "gen_random_uuid",
    "uuid_extract_timestamp",
    "uuid_extract_version",
    "uuidv4",
    "uuidv7",
    // miscellaneous
    "num_nonnulls",
    "num_nulls",
    // NOT pg_typeof, although it looks harmless: it returns regtype, and an
    // untyped literal compared with a regtype is run through the regtype
    // input function with no cast in the parse tree —
    // `pg_typeof(1) IN ('int4', 'retail.secret')` errors "type … does not
    // exist" or not, an oracle for every type and relation name.
];

/// Functions of the vector extension (schema public) a query may call.
/// Type I/O, typmod, cast helpers (vector_in, vector_to_float4, …), operator
/// implementations (vector_add, vector_lt, …) and index support functions
/// (hnswhandler, …) are left out: they are reached through casts and
/// operators, not by name.
pub const VECTOR_FUNCTIONS: &[&str] = &[
    // distances (vector, halfvec, sparsevec overloads; bit for hamming/jaccard)
    "cosine_distance",
    "hamming_distance",
    "inner_product",
    "jaccard_distance",
    "l1_distance",
    "l2_distance",
    // utilities
    "array_to_halfvec",
    "array_to_sparsevec",
    "array_to_vector",
    "binary_quantize",
    "l2_norm",
    "l2_normalize",
    "subvector",
    "vector_dims",
    "vector_norm",
    // aggregates over vectors (also pg_catalog names for numbers)
    "avg",
    "sum",
];

/// Types a query may name (casts, `type 'literal'`, column definition lists), as pg_query reports
/// them: the pg_catalog `typname` (int4, int8, float8, bpchar, varchar, timestamptz, bool, …) plus `vector`.
///
/// Left out on purpose: every reg* type but regconfig (their input functions
/// look up system catalog objects by name: `'pg_authid'::regclass`, `1260::regrole`),
/// oid, xid, xid8, cid, tid, pg_lsn, pg_snapshot, txid_snapshot, xml,
/// pg_node_tree, aclitem, refcursor, every pg_* type, and every pseudo-type
/// including record and unknown (nothing in a query needs to name them).
/// Also left out, harmless but unneeded: `"char"` and `name` (system catalog
/// column types), money (its output depends on the server's lc_monetary),
/// inet/cidr/macaddr and the geometric types (no such columns). Array types
/// are named as `int4[]`, which pg_query reports as int4 with array bounds;
/// the `_int4` spelling is not listed.
pub const TYPES: &[&str] = &[
    // boolean and numbers
    "bool",
    "float4",
    "float8",
    "int2",
    "int4",
    "int8",
    "numeric",
    // text: bpchar is char(n)/character(n), varchar is character varying
    "bpchar",
    "text",
    "varchar",
    // binary and bit strings
    "bit",
    "bytea",
    "varbit",
    // date and time
    "date",
    "interval",
    "time",
    "timestamp",
    "timestamptz",
    "timetz",
    // identifiers and documents
    "json",
    "jsonb",
    "jsonpath",
    "uuid",
    // full-text search. regconfig is the one reg* type: 'english'::regconfig
    // looks up a text-search configuration (built-in, public, no data). It
    // is not needed for to_tsvector('english', …), where the literal is
    // coerced without a cast, but analysts write it.
    "regconfig",
    "tsquery",
    "tsvector",
    // ranges and multiranges
    "datemultirange",
    "daterange",
    "int4multirange",
    "int4range",
    "int8multirange",
    "int8range",
    "nummultirange",
    "numrange",
    "tsmultirange",
    "tsrange",
    "tstzmultirange",
    "tstzrange",
    // pgvector (schema public): the stored type and its compact variants
    "halfvec",
    "sparsevec",
    "vector",
];

/// Operators (pg_catalog, public) whose underlying function is not immutable, reviewed: allowed ones.
///
/// Entries are the operator's underlying function (`pg_operator.oprcode`),
/// which is how the policy resolves an operator. On PostgreSQL 18.6 +
/// pgvector 0.8.6 these are all 31 such operators (every pgvector operator is
/// immutable); none is dangerous. All are stable, none volatile.
pub const NON_IMMUTABLE_OPERATORS_ALLOWED: &[&str] = &[
    // `||` with one non-text operand: calls that operand's output function,
    // which is stable for some types. The operand's type is itself checked
    // (a reg* value cannot be produced), so this only formats ordinary values.
    "anytextcat", // anynonarray || text
    "textanycat", // text || anynonarray
    // date compared with timestamptz: converts the date in the session TimeZone
    "date_eq_timestamptz",
    "date_ge_timestamptz",
    "date_gt_timestamptz",
    "date_le_timestamptz",
    "date_lt_timestamptz",
    "date_ne_timestamptz",
    // timestamp compared with timestamptz: TimeZone, as above
    "timestamp_eq_timestamptz",
    "timestamp_ge_timestamptz",
    "timestamp_gt_timestamptz",
    "timestamp_le_timestamptz",
    "timestamp_lt_timestamptz",
    "timestamp_ne_timestamptz",
    // timestamptz compared with date or timestamp: TimeZone, as above
    "timestamptz_eq_date",
    "timestamptz_eq_timestamp",
    "timestamptz_ge_date",
    "timestamptz_ge_timestamp",
    "timestamptz_gt_date",
    "timestamptz_gt_timestamp",
    "timestamptz_le_date",
    "timestamptz_le_timestamp",
    "timestamptz_lt_date",
    "timestamptz_lt_timestamp",
    "timestamptz_ne_date",
    "timestamptz_ne_timestamp",
    // timestamptz ± interval: day and month steps depend on TimeZone (DST)
    "interval_pl_timestamptz",
    "timestamptz_mi_interval",
    "timestamptz_pl_interval",
    // text @@ tsquery / text @@ text: parse with default_text_search_config
    "ts_match_tq",
    "ts_match_tt",
];
