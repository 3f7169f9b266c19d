//! The `.sql` reader of the build script, on its own.

use serde_json::json;
use sqlmcp_catalogue::CompletionSource;
use sqlmcp_catalogue::query_file::{Declared, number_params, parse};

#[test]
fn reads_annotation_docs_directives_and_numbers_params_like_cornucopia() {
    let file = "\
-- leading comment
--! top_products (start_date?, category?) : (category_name?)
--- Best sellers.
---
--- Second paragraph.
--@ title Top products
--@ param limit \"How many\" default=10 min=1 max=100
--@ param rank_by \"Rank by\" default=\"revenue\" enum=[\"revenue\",\"units\"]
--@ embed vec from query_text \"What to find\" model=model_id
SELECT :start_date::date, :category, :limit, :start_date -- :not_a_param
FROM t WHERE s = 'it''s :quoted' AND d = $tag$ :dollar $tag$ AND \"x:y\" = 1 /* :comment */;
";
    let parsed = parse(file).unwrap();
    assert_eq!(parsed.name, "top_products");
    assert_eq!(parsed.nullable_params, ["start_date", "category"]);
    assert_eq!(parsed.nullable_columns, ["category_name"]);
    assert_eq!(parsed.doc, ["Best sellers.", "", "Second paragraph."]);
    assert_eq!(parsed.title.as_deref(), Some("Top products"));
    assert_eq!(parsed.bind_params, ["start_date", "category", "limit"]);
    assert_eq!(parsed.sql_line, 10);
    assert!(
        parsed
            .numbered_sql
            .starts_with("SELECT $1::date, $2, $3, $1 \nFROM t"),
        "{}",
        parsed.numbered_sql
    );
    assert!(parsed.numbered_sql.contains("'it''s :quoted'"));
    assert!(parsed.numbered_sql.contains("$tag$ :dollar $tag$"));
    assert!(parsed.numbered_sql.contains("\"x:y\""));
    assert!(!parsed.numbered_sql.contains(":comment") && !parsed.numbered_sql.ends_with(';'));

    let limit = &parsed.params[0];
    assert_eq!(
        (limit.name.as_str(), limit.description.as_str()),
        ("limit", "How many")
    );
    assert_eq!(
        (
            limit.default.clone(),
            limit.minimum.clone(),
            limit.maximum.clone()
        ),
        (Some(json!(10)), Some(json!(1)), Some(json!(100)))
    );
    assert_eq!(parsed.params[1].allowed, Some(json!(["revenue", "units"])));
    let embed = &parsed.embeds[0];
    assert_eq!(
        (
            embed.vector_param.as_str(),
            embed.text_arg.as_str(),
            embed.model_param.as_deref()
        ),
        ("vec", "query_text", Some("model_id"))
    );
}

#[test]
fn block_comments_keep_tokens_and_lines_apart() {
    let numbered = number_params("SELECT a/* x */b,\n/* one\ntwo */ :p", 1).unwrap();
    assert_eq!(numbered.text, "SELECT a b,\n\n $1");
    assert_eq!(numbered.lines, [3]);
}

#[test]
fn each_parameter_keeps_the_line_of_its_first_use() {
    let parsed = parse("--! q\n--- d\nSELECT :a,\n  :b,\n  :a,\n  :c").unwrap();
    assert_eq!(parsed.bind_params, ["a", "b", "c"]);
    assert_eq!(parsed.bind_param_lines, [3, 4, 6]);
}

#[test]
fn statements_that_write_or_lock_are_refused_with_their_line() {
    let refused = [
        (
            "--! q\nUPDATE t SET a = :a RETURNING a",
            "line 2: a `UPDATE` statement cannot be a tool",
        ),
        (
            "--! q\n-- a comment\ninsert into t values (:a) returning a",
            "line 3: a `INSERT` statement cannot be a tool",
        ),
        (
            "--! q\nWITH gone AS (\n  DELETE FROM t RETURNING a)\nSELECT a FROM gone",
            "line 3: a `WITH … AS (DELETE)` writes",
        ),
        (
            "--! q\nWITH m AS NOT MATERIALIZED (MERGE INTO t USING u ON true WHEN MATCHED THEN DELETE RETURNING 1)\nSELECT 1",
            "line 2: a `WITH … AS (MERGE)` writes",
        ),
        (
            "--! q\nSELECT a FROM t\nFOR NO KEY UPDATE",
            "line 3: `FOR UPDATE`/`FOR SHARE` locks rows",
        ),
        (
            "--! q\nEXPLAIN SELECT 1",
            "a `EXPLAIN` statement cannot be a tool",
        ),
    ];
    for (file, expected) in refused {
        let err = parse(file).unwrap_err().to_string();
        assert!(err.contains(expected), "{file:?}: {err}");
    }
    // Words inside literals, quoted names and functions are not statements.
    for file in [
        "--! q\n(SELECT 'DELETE' AS \"update\")",
        "--! q\nVALUES (substring('abc' FROM 1 FOR 2))",
        "--! q\nWITH x AS (SELECT $$ insert $$ AS a) TABLE x",
        "--! q\nSELECT a AS \"for\", update FROM t",
    ] {
        parse(file).unwrap_or_else(|err| panic!("{file:?}: {err}"));
    }
}

#[test]
fn errors_name_the_line_and_the_rule() {
    let cases = [
        ("SELECT 1;", "line 1: no `--! name` query annotation"),
        (
            "--! a\nSELECT 1;\n--! b\nSELECT 2;",
            "line 3: a second `--!` query",
        ),
        (
            "--! TopProducts\nSELECT 1",
            "line 1: query name `TopProducts` must be snake_case",
        ),
        ("--! q (a)\nSELECT :a", "line 1: list only nullable names"),
        ("--! q : Row(a)\nSELECT 1", "named row types"),
        (
            "--! q\n--@ param x \"d\" maxx=3\nSELECT :x",
            "line 2: param x: unknown key `maxx`",
        ),
        (
            "--! q\n--@ param x no quotes\nSELECT :x",
            "line 2: param x: expected a description in double quotes",
        ),
        (
            "--! q\n--@ tilte Typo\nSELECT 1",
            "line 2: unknown directive `--@ tilte Typo`",
        ),
        (
            "--! q\n--@ embed v to t \"d\"\nSELECT :v",
            "line 2: expected `--@ embed",
        ),
        ("--! q\nSELECT 'open", "line 2: unclosed quote"),
        ("--! q\n", "query `q` has no SQL"),
    ];
    for (file, expected) in cases {
        let err = parse(file).unwrap_err().to_string();
        assert!(err.contains(expected), "{file:?}: {err}");
    }
}

#[test]
fn reads_resource_templates_and_their_completions() {
    let file = "\
--! store_summary
--- One store.
--@ resource zava://stores/{store_id}/summary
--@ resource-only
--@ complete store_id \"SELECT store_id::text FROM retail.stores WHERE store_id::text LIKE :prefix || '%' -- ends here\"
SELECT :store_id::int AS store_id;
";
    let parsed = parse(file).unwrap();
    let resource = parsed.resource.as_ref().unwrap();
    assert_eq!(resource.line, 3);
    assert_eq!(
        resource.template.as_str(),
        "zava://stores/{store_id}/summary"
    );
    assert_eq!(parsed.resource_only, Some(4));
    assert_eq!(parsed.completions.len(), 1);
    assert_eq!(parsed.completions[0].line, 5);
    assert_eq!(parsed.completions[0].name, "store_id");
    assert!(
        matches!(&parsed.completions[0].declared, Declared::Query(sql) if sql.contains(":prefix"))
    );

    let values = parse(
        "--! top\n--- Top.\n--@ resource zava://top/{rank_by} \"The best, ranked.\"\n--@ complete rank_by [\"revenue\", \"units\"]\nSELECT :rank_by AS r",
    )
    .unwrap();
    assert_eq!(values.resource_only, None);
    let resource = values.resource.as_ref().unwrap();
    assert_eq!(resource.description.as_deref(), Some("The best, ranked."));
    assert_eq!(resource.template.as_str(), "zava://top/{rank_by}");
    assert_eq!(parsed.resource.as_ref().unwrap().description, None);
    assert_eq!(
        values.completions[0].declared,
        Declared::Values(vec!["revenue".into(), "units".into()])
    );

    let source = CompletionSource::query(
        "SELECT sku FROM retail.products WHERE sku ILIKE :prefix || '%' AND sku <> ':x'",
        "queries/p.sql",
        7,
    )
    .unwrap();
    assert_eq!(
        source,
        CompletionSource::Query {
            sql: "SELECT sku FROM retail.products WHERE sku ILIKE $1 || '%' AND sku <> ':x'".into(),
            file: "queries/p.sql".into(),
            line: 7,
        }
    );
}

#[test]
fn resource_directives_that_cannot_work_are_refused_with_their_line() {
    let head = "--! q\n--- Q.\n";
    let cases = [
        (
            "--@ resource stores/{id}\nSELECT :id AS id",
            "line 3: `stores/{id}` does not start with a scheme",
        ),
        (
            "--@ resource zava://stores/{+id}\nSELECT :id AS id",
            "line 3: `zava://stores/{+id}`: `{+id}` is not a variable",
        ),
        (
            "--@ resource zava://tables/{id}\nSELECT :id AS id",
            "line 3: `zava://tables/{id}`: URIs under zava://tables/ are the server's own",
        ),
        (
            "--@ resource zava://a/{id}\n--@ resource zava://b/{id}\nSELECT :id AS id",
            "line 4: a second `--@ resource`",
        ),
        (
            "--@ resource-only\nSELECT 1 AS one",
            "line 3: `--@ resource-only` without a `--@ resource",
        ),
        (
            "--@ complete id [\"1\"]\nSELECT :id AS id",
            "line 3: `--@ complete id` without a `--@ resource",
        ),
        (
            "--@ resource zava://a/{id}\n--@ complete ids [\"1\"]\nSELECT :id AS id",
            "line 4: `--@ complete ids`: `zava://a/{id}` has no variable `{ids}` (its variables: id)",
        ),
        (
            "--@ resource zava://a/{id}\n--@ complete id [\"1\"]\n--@ complete id [\"2\"]\nSELECT :id AS id",
            "line 5: a second `--@ complete id`",
        ),
        (
            "--@ resource zava://a/{id}\n--@ complete id []\nSELECT :id AS id",
            "line 4: complete id: expected",
        ),
        (
            "--@ resource zava://a/{id}\n--@ complete id [1, 2]\nSELECT :id AS id",
            "line 4: complete id: the values are strings",
        ),
        (
            "--@ resource zava://a/{id}\n--@ complete id \"SELECT x FROM t WHERE x LIKE :typed\"\nSELECT :id AS id",
            "line 4: a completion query takes one parameter, :prefix (what the user typed so far); found :typed",
        ),
        (
            "--@ resource zava://a/{id}\n--@ complete id \"SELECT x FROM t WHERE starts_with(x, :prefix)\"\nSELECT :id AS id",
            "line 4: a completion query compares with `LIKE :prefix || '%'`",
        ),
        (
            "--@ resource zava://a/{id}\n--@ complete id \"DELETE FROM t WHERE x LIKE :prefix RETURNING x\"\nSELECT :id AS id",
            "line 4: a `DELETE` statement",
        ),
        (
            "--@ resource zava://a/{id} \"d\" extra\nSELECT :id AS id",
            "line 3: unexpected `extra` after the description",
        ),
        (
            "--@ resource zava://a/{id} no quotes\nSELECT :id AS id",
            "line 3: resource: expected a description in double quotes",
        ),
        (
            "--@ resource-only please\nSELECT 1 AS one",
            "line 3: unknown directive `--@ resource-only please`",
        ),
    ];
    for (tail, expected) in cases {
        let file = format!("{head}{tail}");
        let err = parse(&file).unwrap_err().to_string();
        assert!(err.contains(expected), "{file:?}: {err}");
    }
}
