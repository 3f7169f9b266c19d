//! The policy on its own, without a database: names built by hand, and
//! property tests that whatever text it is given, it neither panics nor
//! accepts anything but one read-only `SELECT`.

use super::{DatabaseNames, check};
use proptest::prelude::*;

fn names() -> DatabaseNames {
    let mut names = DatabaseNames::default();
    for name in ["count", "now", "sum", "pg_sleep", "nextval", "upper"] {
        names
            .functions
            .insert(name.to_owned(), ["pg_catalog".to_owned()].into());
    }
    names.operators.insert("=".to_owned(), Default::default());
    for table in ["orders", "order_items", "stores"] {
        names.retail_relations.insert(table.to_owned());
    }
    names.system_relations.insert("pg_authid".to_owned());
    names
}

const PIECES: &[&str] = &[
    "SELECT ",
    "1",
    ", ",
    ";",
    " FROM ",
    "retail.orders",
    "orders",
    "pg_authid",
    " WHERE ",
    "count(*)",
    "pg_sleep(1)",
    "nextval('s')",
    "DELETE FROM retail.orders",
    "UPDATE retail.orders SET store_id = 1",
    "INSERT INTO retail.orders VALUES (1)",
    "WITH x AS (",
    ")",
    "(",
    "'",
    "''",
    "$$",
    "$t$",
    "--",
    "\n",
    "/*",
    "*/",
    "\"",
    "E'\\''",
    "U&\"\\0070\"",
    "FOR UPDATE",
    "EXPLAIN ",
    "ANALYZE ",
    "INTO ",
    "COMMIT",
    "BEGIN",
    " UNION ",
    "VALUES (1)",
    "SET ROLE x",
    "COPY ",
    "DO ",
];

fn is_read_only_select(sql: &str) -> bool {
    let parsed = pg_query::parse(sql, pg_query::ParserOptions::default())
        .expect("an accepted statement parses");
    if parsed.protobuf.stmts.len() != 1 {
        return false;
    }
    let tree = serde_json::to_string(&parsed.protobuf.stmts[0]).unwrap();
    let top_ok = tree.contains("\"SelectStmt\"");
    let forbidden = [
        "InsertStmt",
        "UpdateStmt",
        "DeleteStmt",
        "MergeStmt",
        "IntoClause",
        "LockingClause",
        "TransactionStmt",
        "VariableSetStmt",
        "CopyStmt",
        "DoStmt",
    ];
    top_ok
        && !forbidden
            .iter()
            .any(|node| tree.contains(&format!("\"{node}\"")))
}

/// Only names the system catalog does not know make the tool read it again.
#[test]
fn unknown_names_are_told_apart_from_refused_ones() {
    let unknown = |sql: &str| check(sql, &names()).unwrap_err().unknown_name;
    assert!(unknown("SELECT * FROM brand_new_table"));
    assert!(unknown("SELECT brand_new_function()"));
    assert!(!unknown("SELECT * FROM pg_authid"));
    assert!(!unknown("SELECT pg_sleep(1)"));
    assert!(!unknown("DELETE FROM retail.orders"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn the_policy_never_panics_and_accepts_only_one_read_only_select(pieces in proptest::collection::vec(0..PIECES.len(), 0..12)) {
        let sql: String = pieces.iter().map(|i| PIECES[*i]).collect();
        if let Ok(accepted) = check(&sql, &names()) {
            prop_assert!(is_read_only_select(accepted.text()), "accepted {sql:?}");
        }
    }

    #[test]
    fn arbitrary_text_never_panics(sql in "\\PC{0,200}") {
        if let Ok(accepted) = check(&sql, &names()) {
            prop_assert!(is_read_only_select(accepted.text()), "accepted {sql:?}");
        }
    }
}

#[test]
fn a_refusal_points_at_the_character_not_the_byte_after_non_ascii_text() {
    for sql in [
        "SELECT 'crème brûlée' AS dessert, pg_sleep(1)",
        "SELECT '日本語のテキスト' AS t, pg_sleep(1)",
        "SELECT pg_sleep(1)",
    ] {
        let violation = check(sql, &names()).unwrap_err();
        let at = sql.find("pg_sleep").unwrap();
        let expected = sql[..at].chars().count() + 1;
        assert_eq!(violation.position, Some(expected), "{sql}: {violation}");
    }
}
