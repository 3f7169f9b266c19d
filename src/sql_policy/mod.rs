//! Which raw SQL `execute_sales_query` may run, decided with PostgreSQL's own
//! grammar (libpg_query): exactly one `SELECT` (or `EXPLAIN (COSTS OFF)` of
//! one), reading only `retail` relations and reaching only the functions,
//! types and operators of the reviewed allow-lists in [`allowed`], by
//! whatever syntax reaches them. The result is a [`ReadOnlySql`], the only
//! thing the raw-SQL tool executes, and it executes its bytes unchanged.
//!
//! Every node of the parse tree is visited, and every node type is
//! classified in `nodes`: one that may reach a function (a call, a
//! column reference or field selection that can name a function, an
//! operator, a type) is checked; one that has no business in a query is
//! refused; one not classified is refused too, so a parser upgrade cannot
//! open a path silently.
//!
//! This is one layer of several: the statement also runs as a role that may
//! only read, in a read-only transaction that is rolled back, under an
//! identity no SQL can forge, a deadline and result caps; the README says
//! what each layer stops on its own.

pub mod allowed;
mod nodes;
#[cfg(test)]
mod tests;
mod walk;

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use pg_query::NodeEnum;

use walk::Message;

/// A statement the policy accepted; only [`check`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOnlySql {
    /// The text as the caller sent it.
    text: String,
    /// Where the statement lies in `text`: its bytes, without a trailing
    /// `;` and what follows it (whitespace and comments only).
    statement: std::ops::Range<usize>,
    explain: bool,
}

impl ReadOnlySql {
    /// The text exactly as checked.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The statement's own bytes within [`Self::text`], exactly as the
    /// parser delimited them, for running it as a subquery.
    pub fn statement(&self) -> &str {
        &self.text[self.statement.clone()]
    }

    /// How many characters of [`Self::text`] come before the statement.
    pub fn statement_offset(&self) -> usize {
        self.text[..self.statement.start].chars().count()
    }

    /// An `EXPLAIN`, whose result is a plan rather than rows of data.
    pub fn is_explain(&self) -> bool {
        self.explain
    }

    /// A statement that was NOT checked, for the tests that prove the
    /// database layers hold without the policy. Text that does not parse
    /// as one statement is passed whole. Built only with the `test-support`
    /// feature.
    #[cfg(any(test, feature = "test-support"))]
    pub fn unchecked_for_tests(sql: &str) -> ReadOnlySql {
        let parsed = pg_query::parse(sql, pg_query::ParserOptions::default()).ok();
        let (statement, explain) = match parsed.as_ref().map(|p| p.protobuf.stmts.as_slice()) {
            Some([one]) => (
                statement_range(sql, one),
                matches!(
                    one.stmt.as_ref().and_then(|s| s.node.as_ref()),
                    Some(pg_query::NodeEnum::ExplainStmt(_))
                ),
            ),
            _ => (0..sql.len(), false),
        };
        ReadOnlySql {
            text: sql.to_owned(),
            statement,
            explain,
        }
    }
}

/// Why a statement was refused, and where (a 1-based character position).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: String,
    pub position: Option<usize>,
    /// The rule is about a name the database did not have when its names
    /// were read: it may have been created since.
    pub unknown_name: bool,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(position) => write!(f, "{} (at character {position})", self.rule),
            None => write!(f, "{}", self.rule),
        }
    }
}

fn violation(rule: impl Into<String>, location: Option<i64>) -> Violation {
    Violation {
        rule: rule.into(),
        // libpg_query locations are 0-based byte offsets; -1 means unknown
        position: location.filter(|l| *l >= 0).map(|l| l as usize + 1),
        unknown_name: false,
    }
}

fn refuse<T>(rule: impl Into<String>, location: Option<i64>) -> Result<T, Violation> {
    Err(violation(rule, location))
}

fn unknown<T>(rule: impl Into<String>, location: Option<i64>) -> Result<T, Violation> {
    Err(Violation {
        unknown_name: true,
        ..violation(rule, location)
    })
}

/// The schemas a query's unqualified names resolve in, in PostgreSQL's
/// order: `pg_catalog` is always searched first, then the pinned
/// `search_path` (`retail, public`; see `tools::raw_sql::settings`).
pub const SEARCH_PATH: [&str; 3] = ["pg_catalog", "retail", "public"];

/// What the database says about the names a query may use; read by
/// [`crate::tools::raw_sql`] and refreshed when a name is unknown.
#[derive(Debug, Default, Clone)]
pub struct DatabaseNames {
    /// Function name → the schemas of [`SEARCH_PATH`] that have a function
    /// of that name.
    pub functions: HashMap<String, BTreeSet<String>>,
    /// Operator name → the functions that implement operators of that
    /// name in [`SEARCH_PATH`] and are not immutable (most sets are empty).
    pub operators: HashMap<String, BTreeSet<String>>,
    /// Relations of the `retail` schema that may be read (also the names of
    /// their row types).
    pub retail_relations: BTreeSet<String>,
    /// Relations of `pg_catalog`, which an unqualified name reaches first.
    pub system_relations: BTreeSet<String>,
    /// Relation names everywhere else, which a CTE may not take either.
    pub other_relations: BTreeSet<String>,
}

/// Statement kinds and clauses with no business in a query, wherever they
/// appear (data-modifying CTEs, `EXPLAIN` of a write, …), with the word
/// the refusal names.
fn refused_node(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "InsertStmt" => "INSERT not allowed",
        "UpdateStmt" => "UPDATE not allowed",
        "DeleteStmt" => "DELETE not allowed",
        "MergeStmt" => "MERGE not allowed",
        "IntoClause" => "SELECT … INTO not allowed",
        "LockingClause" => "locking clause (FOR UPDATE/SHARE) not allowed",
        "CallStmt" => "CALL not allowed",
        "DoStmt" => "DO not allowed",
        "CopyStmt" => "COPY not allowed",
        "VariableSetStmt" => "SET not allowed",
        "TransactionStmt" => "transaction control not allowed",
        "ParamRef" => "parameters ($1) not allowed: write the values into the query",
        "XmlExpr" | "XmlSerialize" | "RangeTableFunc" | "RangeTableFuncCol" => {
            "XML (xmlparse, xmlelement, xmlserialize, xmltable, …) not allowed: use JSON functions instead"
        }
        _ => return None,
    })
}

/// Checks `sql` against the policy.
pub fn check(sql: &str, names: &DatabaseNames) -> Result<ReadOnlySql, Violation> {
    check_bytes(sql, names).map_err(|mut violation| {
        violation.position = violation.position.map(|byte| character_position(sql, byte));
        violation
    })
}

/// The 1-based character position of the 1-based byte position `byte` in
/// `sql` (libpg_query counts bytes, PostgreSQL and people characters).
fn character_position(sql: &str, byte: usize) -> usize {
    let before = byte.saturating_sub(1).min(sql.len());
    sql.char_indices()
        .take_while(|(at, _)| *at < before)
        .count()
        + 1
}

fn check_bytes(sql: &str, names: &DatabaseNames) -> Result<ReadOnlySql, Violation> {
    check_identifiers(sql)?;
    let parsed = match pg_query::parse(sql, pg_query::ParserOptions::default()) {
        Ok(parsed) => parsed,
        Err(err) => return refuse(format!("syntax error: {err}"), None),
    };
    let statement = one_statement(&parsed.protobuf.stmts)?;
    let Some(tree) = statement.stmt.as_deref() else {
        return refuse("empty query: write one SELECT statement", None);
    };
    let explain = check_kind(sql, statement, tree)?;
    let mut found = Found::default();
    walk::walk(tree, &mut found)?;
    check_found(&found, names)?;
    Ok(ReadOnlySql {
        text: sql.to_owned(),
        statement: statement_range(sql, statement),
        explain,
    })
}

fn one_statement(
    statements: &[pg_query::protobuf::RawStmt],
) -> Result<&pg_query::protobuf::RawStmt, Violation> {
    match statements {
        [one] => Ok(one),
        [] => refuse("empty query: write one SELECT statement", None),
        [_, second, ..] => refuse(
            "only one statement allowed",
            Some(i64::from(second.stmt_location)),
        ),
    }
}

/// A `SELECT` (`false`) or an allowed `EXPLAIN` of one (`true`).
fn check_kind(
    sql: &str,
    statement: &pg_query::protobuf::RawStmt,
    tree: &pg_query::protobuf::Node,
) -> Result<bool, Violation> {
    match &tree.node {
        Some(NodeEnum::SelectStmt(_)) => Ok(false),
        Some(NodeEnum::ExplainStmt(explain)) => check_explain(explain).map(|()| true),
        other => {
            // SET, RESET, SHOW, … are one node type each for several
            // keywords: name the statement by its first word
            let first = sql[statement_range(sql, statement)]
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_uppercase();
            let name = node_name(other.as_ref())
                .trim_end_matches("Stmt")
                .to_uppercase();
            refuse(
                format!("only SELECT or EXPLAIN allowed, not {first} ({name})"),
                None,
            )
        }
    }
}

/// Checks every name the walk found against the database's names.
fn check_found(found: &Found, names: &DatabaseNames) -> Result<(), Violation> {
    for (cte, location) in &found.ctes {
        if names.system_relations.contains(cte) || names.other_relations.contains(cte) {
            return refuse(
                format!("WITH query name {cte} shadows a system relation; choose another name"),
                *location,
            );
        }
    }
    let ctes: BTreeSet<&str> = found.ctes.iter().map(|(name, _)| name.as_str()).collect();
    for reach in &found.reaches {
        match reach {
            Reach::Function(name, location) => check_function(name, *location, names)?,
            Reach::Field(name, location) => check_field(name, *location, names)?,
            Reach::Operator(name, location) => check_operator(name, *location, names)?,
            Reach::Type(name, location) => check_type(name, *location, names)?,
            Reach::Relation(name, location) => check_relation(name, *location, &ctes, names)?,
            Reach::SystemColumn(name, location) => {
                return refuse(
                    format!(
                        "system column {name} not allowed: it describes how rows are stored, which \
                         reveals rows of stores you may not see"
                    ),
                    *location,
                );
            }
            Reach::SessionValue(location) => {
                return refuse(
                    "CURRENT_USER, SESSION_USER, CURRENT_CATALOG (current_database) and CURRENT_SCHEMA \
                     not allowed: they describe the server, not the data",
                    *location,
                );
            }
            Reach::Sample(name, location) => check_sample(name, *location)?,
        }
    }
    Ok(())
}

fn check_sample(method: &[String], location: Option<i64>) -> Result<(), Violation> {
    if matches!(method, [m] if m == "bernoulli" || m == "system") {
        return Ok(());
    }
    refuse(
        format!(
            "TABLESAMPLE method {} not allowed: use BERNOULLI or SYSTEM",
            method.join(".")
        ),
        location,
    )
}

/// Refuses a name holding a character that looks like nothing: PostgreSQL
/// reads a Unicode space (U+00A0, U+2003, …) or a zero-width character as
/// part of an identifier, so `pg_settings<U+00A0>` is another name than the
/// one a reader sees.
fn check_identifiers(sql: &str) -> Result<(), Violation> {
    if sql.is_ascii() {
        return Ok(());
    }
    let Ok(scanned) = pg_query::scan(sql) else {
        // the parser reports the same text's error
        return Ok(());
    };
    let identifiers = [
        pg_query::protobuf::Token::Ident,
        pg_query::protobuf::Token::Uident,
    ];
    for token in &scanned.tokens {
        if !identifiers.iter().any(|kind| *kind as i32 == token.token) {
            continue;
        }
        let (start, end) = (token.start.max(0) as usize, token.end.max(0) as usize);
        let Some(text) = sql.get(start..end) else {
            continue;
        };
        if let Some(invisible) = text.chars().find(|c| is_invisible(*c)) {
            return refuse(
                format!(
                    "the name {text:?} holds U+{:04X}, an invisible character that PostgreSQL reads \
                     as part of the name; remove it",
                    invisible as u32
                ),
                Some(i64::from(token.start)),
            );
        }
    }
    Ok(())
}

/// Unicode spaces, zero-width and direction marks, and the byte order mark.
fn is_invisible(c: char) -> bool {
    (c.is_whitespace() && !c.is_ascii())
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{00AD}')
}

/// The byte range of `statement` in `sql`, as the parser delimited it.
fn statement_range(sql: &str, statement: &pg_query::protobuf::RawStmt) -> std::ops::Range<usize> {
    let start = usize::try_from(statement.stmt_location).unwrap_or(0);
    let end = match usize::try_from(statement.stmt_len) {
        // 0: the statement runs to the end of the text
        Ok(0) | Err(_) => sql.len(),
        Ok(len) => start + len,
    };
    if start <= end && end <= sql.len() && sql.is_char_boundary(start) && sql.is_char_boundary(end)
    {
        start..end
    } else {
        0..sql.len()
    }
}

/// The name of a node's type, as [`nodes`] spells it.
fn node_name(node: Option<&NodeEnum>) -> &'static str {
    node.map_or("empty", walk::node_type)
}

/// `EXPLAIN` of a `SELECT`, without `ANALYZE` (it would run the statement)
/// and with `COSTS OFF`: cost and row estimates come from statistics of the
/// whole table, every store's rows included.
fn check_explain(explain: &pg_query::protobuf::ExplainStmt) -> Result<(), Violation> {
    let options: Vec<(String, &pg_query::protobuf::DefElem)> = explain
        .options
        .iter()
        .filter_map(|option| match &option.node {
            Some(NodeEnum::DefElem(elem)) => Some((elem.defname.to_lowercase(), &**elem)),
            _ => None,
        })
        .collect();
    if let Some((_, elem)) = options.iter().find(|(name, _)| name == "analyze") {
        return refuse(
            "EXPLAIN ANALYZE not allowed: it runs the statement",
            Some(elem.location.into()),
        );
    }
    if !matches!(
        explain.query.as_deref().and_then(|q| q.node.as_ref()),
        Some(NodeEnum::SelectStmt(_))
    ) {
        return refuse("EXPLAIN allowed only of a SELECT", None);
    }
    let mut costs_off = false;
    for (name, elem) in &options {
        match name.as_str() {
            "costs" => costs_off = option_is_off(elem),
            "format" if option_text(elem).is_some_and(|f| f.eq_ignore_ascii_case("xml")) => {
                return refuse(
                    "EXPLAIN FORMAT XML not allowed: use TEXT, JSON or YAML",
                    Some(elem.location.into()),
                );
            }
            "format" | "verbose" | "summary" | "generic_plan" => {}
            other => {
                return refuse(
                    format!(
                        "EXPLAIN option {} not allowed: use FORMAT, VERBOSE or COSTS OFF",
                        other.to_uppercase()
                    ),
                    Some(elem.location.into()),
                );
            }
        }
    }
    if !costs_off {
        return refuse(
            "EXPLAIN only with COSTS OFF: write EXPLAIN (COSTS OFF) SELECT …; costs and row estimates \
             would reveal the volumes of stores you may not see",
            None,
        );
    }
    Ok(())
}

/// What an EXPLAIN option is set to.
fn option_arg(elem: &pg_query::protobuf::DefElem) -> Option<&NodeEnum> {
    elem.arg.as_deref().and_then(|arg| arg.node.as_ref())
}

/// The word an EXPLAIN option is set to (`FORMAT JSON`, `COSTS OFF`).
fn option_text(elem: &pg_query::protobuf::DefElem) -> Option<&str> {
    match option_arg(elem) {
        Some(NodeEnum::String(text)) => Some(&text.sval),
        _ => None,
    }
}

/// Whether an EXPLAIN option says off (`COSTS OFF`, `COSTS false`, `COSTS 0`).
fn option_is_off(elem: &pg_query::protobuf::DefElem) -> bool {
    match option_arg(elem) {
        Some(NodeEnum::String(text)) => {
            matches!(text.sval.to_lowercase().as_str(), "off" | "false")
        }
        Some(NodeEnum::Integer(integer)) => integer.ival == 0,
        _ => false,
    }
}

/// A name the query reaches, to be checked against the database's names.
enum Reach {
    /// A function called by name: `[schema.]name`.
    Function(Vec<String>, Option<i64>),
    /// A field selection (`t.x`, `(expr).x`): a column or field, or a
    /// function applied to the value on its left.
    Field(String, Option<i64>),
    /// An operator: `[schema.]name`.
    Operator(Vec<String>, Option<i64>),
    /// A type: `[schema.]name`.
    Type(Vec<String>, Option<i64>),
    /// A relation: `[schema.]name`.
    Relation(Vec<String>, Option<i64>),
    /// A TABLESAMPLE method.
    Sample(Vec<String>, Option<i64>),
    /// A system column (`ctid`, `xmin`, …).
    SystemColumn(String, Option<i64>),
    /// `CURRENT_USER`, `SESSION_USER`, `CURRENT_CATALOG`, … .
    SessionValue(Option<i64>),
}

/// System columns describe where and when rows were stored: gaps in `ctid`
/// or a `xmin` show rows of other stores that row-level security hides.
const SYSTEM_COLUMNS: &[&str] = &["ctid", "xmin", "xmax", "cmin", "cmax", "tableoid"];

/// The SQL value functions a query may use: dates and times. The others
/// (`CURRENT_USER`, `SESSION_USER`, `CURRENT_CATALOG`, `CURRENT_SCHEMA`)
/// describe the server, not the data.
const DATE_TIME_VALUES: &[pg_query::protobuf::SqlValueFunctionOp] = {
    use pg_query::protobuf::SqlValueFunctionOp::*;
    &[
        SvfopCurrentDate,
        SvfopCurrentTime,
        SvfopCurrentTimeN,
        SvfopCurrentTimestamp,
        SvfopCurrentTimestampN,
        SvfopLocaltime,
        SvfopLocaltimeN,
        SvfopLocaltimestamp,
        SvfopLocaltimestampN,
    ]
};

#[derive(Default)]
struct Found {
    reaches: Vec<Reach>,
    ctes: Vec<(String, Option<i64>)>,
}

/// What a message of class [`NodeClass::Reaches`] may resolve to: a
/// function (directly, or through an operator or a type's input and cast
/// functions) or a relation.
fn reaches_of(message: &Message, found: &mut Found) {
    let at = message.location;
    let push = |found: &mut Found, reach| found.reaches.push(reach);
    match message.kind {
        "FuncCall" => push(found, Reach::Function(message.names("funcname"), at)),
        "ColumnRef" => {
            // `a.b.c`: every field after the first may be a function applied
            // to what precedes it (`t.f` is f(t)); a bare `a` is a column
            let fields = message.names("fields");
            if let Some(system) = fields.iter().find(|f| SYSTEM_COLUMNS.contains(&f.as_str())) {
                push(found, Reach::SystemColumn(system.clone(), at));
            }
            for field in fields.into_iter().skip(1) {
                push(found, Reach::Field(field, at));
            }
        }
        "SqlvalueFunction" => {
            let op = message.number("op").unwrap_or_default();
            if !DATE_TIME_VALUES.iter().any(|allowed| *allowed as i64 == op) {
                push(found, Reach::SessionValue(at));
            }
        }
        "AIndirection" => {
            // where the value before the dot starts
            for field in message.names("indirection") {
                push(found, Reach::Field(field, message.arg_location));
            }
        }
        // BETWEEN's "name" is the keyword; it compares with the type's own
        // btree operators, as ORDER BY does
        "AExpr" if message.number("kind").is_some_and(is_between) => {}
        "AExpr" => push(found, Reach::Operator(message.names("name"), at)),
        "SubLink" => {
            let operator = message.names("oper_name");
            if !operator.is_empty() {
                push(found, Reach::Operator(operator, at));
            }
        }
        "SortBy" => {
            let operator = message.names("use_op");
            if !operator.is_empty() {
                push(found, Reach::Operator(operator, at));
            }
        }
        "TypeName" => push(found, Reach::Type(message.names("names"), at)),
        "RangeVar" => {
            let name = ["catalogname", "schemaname", "relname"]
                .into_iter()
                .filter_map(|part| message.text(part).filter(|s| !s.is_empty()))
                .map(str::to_owned)
                .collect();
            push(found, Reach::Relation(name, at));
        }
        "CommonTableExpr" => {
            if let Some(name) = message.text("ctename") {
                found.ctes.push((name.to_owned(), at));
            }
        }
        "RangeTableSample" => push(found, Reach::Sample(message.names("method"), at)),
        kind => unreachable!("every Reaches node is handled: {kind}"),
    }
}

fn is_between(kind: i64) -> bool {
    use pg_query::protobuf::AExprKind;
    [
        AExprKind::AexprBetween,
        AExprKind::AexprNotBetween,
        AExprKind::AexprBetweenSym,
        AExprKind::AexprNotBetweenSym,
    ]
    .iter()
    .any(|between| *between as i64 == kind)
}

fn shown(name: &[String]) -> String {
    name.join(".")
}

/// `object` or `schema.object`; a longer name of a `what` is refused.
fn qualified<'a>(
    name: &'a [String],
    what: &str,
    location: Option<i64>,
) -> Result<(Option<&'a str>, &'a str), Violation> {
    match name {
        [object] => Ok((None, object)),
        [schema, object] => Ok((Some(schema), object)),
        _ => refuse(format!("{what} {} not allowed", shown(name)), location),
    }
}

fn check_function(
    name: &[String],
    location: Option<i64>,
    names: &DatabaseNames,
) -> Result<(), Violation> {
    let (schema, function) = qualified(name, "function", location)?;
    let Some(schemas) = names.functions.get(function) else {
        return unknown(
            format!("function {} does not exist or is not allowed", shown(name)),
            location,
        );
    };
    // the schemas the call can resolve in: the one named, or every one on
    // the search path that has a function of this name
    let candidates: Vec<&str> = match schema {
        Some(schema) => vec![schema],
        None => schemas.iter().map(String::as_str).collect(),
    };
    for schema in candidates {
        if !function_allowed(schema, function) {
            return refuse(
                format!(
                    "function {} is not allowed{}",
                    shown(name),
                    suggestion(function)
                        .map(|s| format!(": {s}"))
                        .unwrap_or_default()
                ),
                location,
            );
        }
    }
    Ok(())
}

/// Functions of schema `retail` a query may call: none. The policies'
/// helpers there answer only for the caller's own identity, but a query has
/// no need of them.
const RETAIL_FUNCTIONS: &[&str] = &[];

/// What to use instead of a function an analyst may miss.
fn suggestion(function: &str) -> Option<&'static str> {
    Some(match function {
        "current_setting" | "set_config" => "settings can be neither read nor changed",
        "pg_sleep" | "pg_sleep_for" | "pg_sleep_until" => "a query may not wait",
        "version" | "current_user" | "session_user" | "current_database" | "current_schema" => {
            "the server's details are not part of the data"
        }
        "pg_typeof" => return None,
        "pg_column_size" | "pg_relation_size" | "pg_total_relation_size" | "pg_table_size" => {
            "sizes describe every store's rows; use octet_length() on a value"
        }
        "ts_stat" | "ts_rewrite" | "query_to_xml" => "it runs SQL from a string",
        "to_regclass" | "to_regtype" | "to_regproc" | "format_type" => {
            "it looks names up in the system catalog"
        }
        "txid_current" | "pg_current_xact_id" => "transaction ids are not part of the data",
        "nextval" | "currval" | "setval" | "lastval" => "sequences may not be used",
        _ if function.starts_with("pg_stat") => "statistics describe every store's rows",
        _ if function.contains("advisory") => "a query may not take locks",
        _ => return None,
    })
}

fn function_allowed(schema: &str, function: &str) -> bool {
    match schema {
        "pg_catalog" => allowed::FUNCTIONS.contains(&function),
        "public" => allowed::VECTOR_FUNCTIONS.contains(&function),
        "retail" => RETAIL_FUNCTIONS.contains(&function),
        _ => false,
    }
}

/// `x.name` or `(x).name`: a column or a field when one is so named;
/// otherwise PostgreSQL calls the function `name` on `x`. Any name that is
/// a function on the search path must be one that may be called.
fn check_field(name: &str, location: Option<i64>, names: &DatabaseNames) -> Result<(), Violation> {
    let Some(schemas) = names.functions.get(name) else {
        return Ok(());
    };
    if schemas.iter().all(|schema| function_allowed(schema, name)) {
        return Ok(());
    }
    refuse(
        format!(
            "function {name} is not allowed (here `.{name}` would call it on the value before \
             the dot; if you meant a column, rename it)"
        ),
        location,
    )
}

fn check_operator(
    name: &[String],
    location: Option<i64>,
    names: &DatabaseNames,
) -> Result<(), Violation> {
    let (schema, operator) = qualified(name, "operator", location)?;
    if schema.is_some_and(|s| !SEARCH_PATH.contains(&s)) {
        return refuse(format!("operator {} not allowed", shown(name)), location);
    }
    let Some(non_immutable) = names.operators.get(operator) else {
        return unknown(
            format!("operator {} does not exist or is not allowed", shown(name)),
            location,
        );
    };
    match non_immutable
        .iter()
        .find(|function| !allowed::NON_IMMUTABLE_OPERATORS_ALLOWED.contains(&function.as_str()))
    {
        None => Ok(()),
        Some(function) => refuse(
            format!(
                "operator {} is not allowed (it calls {function})",
                shown(name)
            ),
            location,
        ),
    }
}

fn check_type(
    name: &[String],
    location: Option<i64>,
    names: &DatabaseNames,
) -> Result<(), Violation> {
    let allowed = match name {
        [ty] | [_, ty] if allowed::TYPES.contains(&ty.as_str()) => {
            name.len() == 1 || SEARCH_PATH.contains(&name[0].as_str())
        }
        // the row type of a retail table
        [ty] | [_, ty] if names.retail_relations.contains(ty) => {
            name.len() == 1 || name[0] == "retail"
        }
        _ => false,
    };
    if allowed {
        return Ok(());
    }
    let ty = name.last().map(String::as_str).unwrap_or_default();
    refuse(
        format!(
            "type {ty} not allowed{}",
            if ty.starts_with("reg") || ty == "oid" {
                ": it looks names up in the system catalog"
            } else {
                ": use an ordinary type (text, integer, numeric, date, timestamp, jsonb, …)"
            }
        ),
        location,
    )
}

fn check_relation(
    name: &[String],
    location: Option<i64>,
    ctes: &BTreeSet<&str>,
    names: &DatabaseNames,
) -> Result<(), Violation> {
    let allowed = match name {
        [schema, relation] if schema == "retail" => names.retail_relations.contains(relation),
        // resolved as PostgreSQL will: a WITH query in the statement, then
        // pg_catalog, then retail (the pinned search_path)
        [relation] if ctes.contains(relation.as_str()) => true,
        [relation] if names.system_relations.contains(relation) => false,
        [relation] if names.retail_relations.contains(relation) => true,
        [_, _, _] => {
            return refuse("database-qualified names not allowed", location);
        }
        _ => false,
    };
    if allowed {
        return Ok(());
    }
    let shown = shown(name);
    let relation = name.last().map(String::as_str).unwrap_or_default();
    let known = names.retail_relations.contains(relation)
        || names.system_relations.contains(relation)
        || names.other_relations.contains(relation);
    let refused = violation(
        format!(
            "relation {shown} not allowed: only the retail tables may be read ({})",
            names
                .retail_relations
                .iter()
                .map(|r| format!("retail.{r}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        location,
    );
    Err(Violation {
        unknown_name: !known,
        ..refused
    })
}

/// For the test that checks every node type is attacked (`tests/api/raw_sql.rs`).
#[cfg(any(test, feature = "test-support"))]
pub use nodes::{ALL_NODE_NAMES, NodeClass, class_of};
