//! The `.md` prompt reader of the build script, on its own: what it keeps,
//! how a template renders, and every mistake refused with its line.

use std::collections::BTreeMap;

use sqlmcp_catalogue::prompt_file::{Template, parse};
use sqlmcp_catalogue::{ArgumentKind, CompletionSource, Prompt};

const TOOLS: [&str; 5] = [
    "low_stock",
    "top_products",
    "revenue_by_month",
    "sales_by_category",
    "get_current_utc_date",
];

const RESTOCK: &str = r#"+++
title = "Restock plan"
description = """
What to reorder for a store,
most urgent first."""
tools = [
    "low_stock",
    "top_products",
]

[[arguments]]
name = "store_id"
description = "The store to restock"
type = "integer"
required = true
min = 1
max = 8
complete = "SELECT store_id::text FROM retail.stores WHERE store_id::text LIKE :prefix || '%' ORDER BY 1"

[[arguments]]
name = "threshold"
description = "Stock below this"
type = "integer"
default = 10

[[arguments]]
name = "category"
description = "Only this category"
max_length = 40
values = ["Plumbing", "Power Tools"]

[[arguments]]
name = "rank_by"
description = "Velocity by revenue or units"
one_of = ["revenue", "units"]
default = "Units"

[[arguments]]
name = "month"
description = "The month"
type = "month"
+++

Call `low_stock` with store_id {{store_id}} and threshold {{threshold}}.
{{#category}}
Only the {{category}} category.
{{/category}}
{{^category}}
Every category.
{{/category}}
Rank `top_products` by {{ rank_by }}{{#month}} from {{month.start}} to {{month.end}}{{/month}}.
"#;

fn restock() -> Prompt {
    parse(RESTOCK, "prompts/restock_plan.md", &TOOLS).unwrap()
}

fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn reads_the_front_matter_arguments_and_completion_sources() {
    let prompt = restock();
    assert_eq!(prompt.name, "restock_plan", "the file stem");
    assert_eq!(prompt.file, "prompts/restock_plan.md");
    assert_eq!(prompt.title, "Restock plan");
    assert_eq!(
        prompt.description,
        "What to reorder for a store,\nmost urgent first."
    );
    assert_eq!(prompt.tools, ["low_stock", "top_products"]);
    assert_eq!(
        prompt.body_line, 44,
        "blank lines before the template are skipped"
    );
    assert!(prompt.body.starts_with("Call `low_stock`") && prompt.body.ends_with("{{/month}}."));

    let [store, threshold, category, rank_by, month] = prompt.arguments.as_slice() else {
        panic!("five arguments: {:?}", prompt.arguments)
    };
    assert_eq!(
        (store.kind, store.required, store.minimum, store.maximum),
        (ArgumentKind::Integer, true, Some(1), Some(8))
    );
    assert_eq!(
        store.completion,
        Some(CompletionSource::Query {
            sql: "SELECT store_id::text FROM retail.stores WHERE store_id::text LIKE $1 || '%' ORDER BY 1"
                .to_owned(),
            file: "prompts/restock_plan.md".to_owned(),
            line: 18,
        })
    );
    assert_eq!(
        (threshold.required, threshold.default.as_deref()),
        (false, Some("10"))
    );
    assert_eq!(threshold.completion, None);
    assert_eq!(
        (category.kind, category.max_length),
        (ArgumentKind::Text, Some(40)),
        "text by default"
    );
    assert_eq!(
        category.completion,
        Some(CompletionSource::Values(vec![
            "Plumbing".into(),
            "Power Tools".into()
        ]))
    );
    assert_eq!(
        rank_by.default.as_deref(),
        Some("units"),
        "a default in its listed spelling"
    );
    assert_eq!(
        rank_by.completion,
        Some(CompletionSource::Values(vec![
            "revenue".into(),
            "units".into()
        ])),
        "one_of offers its own values"
    );
    assert_eq!(month.kind, ArgumentKind::Month);
    assert_eq!(month.expected(), "a month, YYYY-MM");
    assert_eq!(store.expected(), "an integer from 1 to 8");
    assert_eq!(threshold.expected(), "an integer; default 10");
    assert_eq!(rank_by.expected(), "one of revenue, units; default units");
    assert_eq!(category.expected(), "text, at most 40 characters");
}

#[test]
fn a_name_in_the_front_matter_wins_over_the_file_stem_and_the_title_defaults_to_it_in_words() {
    let file = "+++\nname = \"store.review-v2\"\ndescription = \"d\"\n+++\nHello.\n";
    let prompt = parse(file, "prompts/x.md", &TOOLS).unwrap();
    assert_eq!(
        (prompt.name.as_str(), prompt.title.as_str()),
        ("store.review-v2", "Store review v2")
    );
    assert!(prompt.tools.is_empty() && prompt.arguments.is_empty());
}

#[test]
fn renders_values_sections_and_the_days_of_a_month() {
    let prompt = restock();
    let template = Template::parse(&prompt.body, prompt.body_line).unwrap();
    let all = template.render(&values(&[
        ("store_id", "3"),
        ("threshold", "10"),
        ("category", "Plumbing"),
        ("rank_by", "units"),
        ("month", "2024-02"),
    ]));
    assert_eq!(
        all,
        "Call `low_stock` with store_id 3 and threshold 10.\n\
         Only the Plumbing category.\n\
         Rank `top_products` by units from 2024-02-01 to 2024-02-29.",
        "section tags alone on their line take the line with them"
    );
    let fewer = template.render(&values(&[
        ("store_id", "3"),
        ("threshold", "5"),
        ("rank_by", "revenue"),
    ]));
    assert_eq!(
        fewer,
        "Call `low_stock` with store_id 3 and threshold 5.\n\
         Every category.\n\
         Rank `top_products` by revenue."
    );
    // a value is written as it is, never read as a tag
    let odd = template.render(&values(&[
        ("store_id", "3"),
        ("threshold", "5"),
        ("category", "{{store_id}}"),
        ("rank_by", "units"),
        ("month", "2023-12"),
    ]));
    assert!(odd.contains("Only the {{store_id}} category."), "{odd}");
    assert!(odd.ends_with("from 2023-12-01 to 2023-12-31."), "{odd}");
}

#[test]
fn values_are_checked_like_tool_arguments() {
    let prompt = restock();
    let argument = |name: &str| prompt.arguments.iter().find(|a| a.name == name).unwrap();
    let store = argument("store_id");
    assert_eq!(store.check("7"), Ok("7".to_owned()));
    assert_eq!(store.check("+07"), Ok("7".to_owned()));
    assert_eq!(
        store.check("seven"),
        Err("must be an integer, got \"seven\"".to_owned())
    );
    assert_eq!(
        store.check("0"),
        Err("must be at least 1, got 0".to_owned())
    );
    assert_eq!(store.check("9"), Err("must be at most 8, got 9".to_owned()));
    let rank_by = argument("rank_by");
    assert_eq!(rank_by.check("REVENUE"), Ok("revenue".to_owned()));
    assert_eq!(
        rank_by.check("margin"),
        Err("must be one of revenue, units, got \"margin\"".to_owned())
    );
    assert_eq!(
        argument("category").check(&"x".repeat(41)),
        Err("must be at most 40 characters, got 41".to_owned())
    );
    let month = argument("month");
    assert_eq!(month.check("2024-02"), Ok("2024-02".to_owned()));
    for bad in ["2024-13", "2024-2", "March", "0000-01", "2024-02-01"] {
        assert_eq!(
            month.check(bad),
            Err(format!("must be a month, YYYY-MM, got {bad:?}"))
        );
    }
    let file = "+++\ndescription = \"d\"\n[[arguments]]\nname = \"day\"\ndescription = \"A day\"\ntype = \"date\"\nrequired = true\n+++\n{{day}}\n";
    let day = &parse(file, "prompts/x.md", &TOOLS).unwrap().arguments[0];
    for good in ["2024-02-29", "2023-12-31", "2000-02-29"] {
        assert_eq!(day.check(good), Ok(good.to_owned()));
    }
    for bad in [
        "2023-02-29",
        "1900-02-29",
        "2024-04-31",
        "2024-1-01",
        "yesterday",
    ] {
        assert_eq!(
            day.check(bad),
            Err(format!("must be a date, YYYY-MM-DD, got {bad:?}"))
        );
    }
}

/// `RESTOCK` with `from` replaced by `to`, once.
fn restock_with(from: &str, to: &str) -> String {
    assert!(RESTOCK.contains(from), "{from}");
    RESTOCK.replacen(from, to, 1)
}

fn refused(text: &str) -> (usize, String) {
    let err = parse(text, "prompts/restock_plan.md", &TOOLS).unwrap_err();
    (err.line, err.message)
}

#[track_caller]
fn assert_refused(text: &str, line: usize, expected: &str) {
    let (at, message) = refused(text);
    assert!(message.contains(expected), "line {at}: {message}");
    assert_eq!(at, line, "{message}");
}

#[test]
fn malformed_front_matter_is_refused_with_its_line() {
    assert_refused("Hello.\n", 1, "a prompt file starts with a line `+++`");
    assert_refused(
        "+++\ndescription = \"d\"\nHello.\n",
        1,
        "the front matter is never closed",
    );
    assert_refused(
        "+++\ndescription = \"d\"\ntitle = \"Unclosed\n+++\nHello.\n",
        3,
        "front matter: ",
    );
    assert_refused(
        &restock_with("title = ", "summary = "),
        2,
        "front matter: unknown field `summary`, expected one of `name`, `title`, `description`, `tools`, `arguments`",
    );
    assert_refused(
        &restock_with("type = \"month\"", "type = \"float\""),
        41,
        "front matter: unknown variant `float`, expected one of `text`, `integer`, `date`, `month`",
    );
    assert_refused(
        &restock_with("max_length = 40", "maxlength = 40"),
        29,
        "unknown field `maxlength`",
    );
    assert_refused(
        &restock_with("min = 1", "min = \"one\""),
        16,
        "front matter: invalid type: string \"one\", expected i64",
    );
    assert_refused(
        &restock_with("name = \"threshold\"\n", ""),
        20,
        "front matter: missing field `name`",
    );
    assert_refused(
        "+++\ntitle = \"t\"\n+++\nHello.\n",
        1,
        "the front matter has no `description`",
    );
    assert_refused(
        "+++\nname = \"monthly review\"\ndescription = \"d\"\n+++\nHello.\n",
        2,
        "`monthly review` is not a prompt name",
    );
    let err = parse(
        "+++\ndescription = \"d\"\n+++\nHello.\n",
        "prompts/store review.md",
        &TOOLS,
    )
    .unwrap_err();
    assert_eq!(err.line, 1);
    assert!(
        err.message
            .contains("the file name `store review` is not a prompt name"),
        "{}",
        err.message
    );
    assert_refused(
        "+++\ndescription = \"d\"\n+++\n\n\n",
        3,
        "the prompt has no template",
    );
}

#[test]
fn unknown_and_unnamed_tools_are_refused_with_their_line() {
    assert_refused(
        &restock_with("    \"top_products\",", "    \"top_product\","),
        8,
        "`tools`: there is no tool `top_product` (the tools: get_current_utc_date, low_stock, revenue_by_month, sales_by_category, top_products)",
    );
    assert_refused(
        &restock_with("    \"top_products\",", "    \"low_stock\","),
        8,
        "`tools` lists `low_stock` twice",
    );
    assert_refused(
        &restock_with(
            "    \"top_products\",",
            "    \"top_products\", \"sales_by_category\",",
        ),
        8,
        "`tools` lists `sales_by_category`, which the template never names",
    );
    assert_refused(
        &restock_with("Every category.", "Every category; see sales_by_category."),
        49,
        "the template names the tool `sales_by_category`, which `tools` does not list",
    );
    // a longer word is not the tool's name
    parse(
        &restock_with("Every category.", "Every category (no low_stock_report)."),
        "prompts/restock_plan.md",
        &TOOLS,
    )
    .unwrap();
}

#[test]
fn bad_arguments_are_refused_with_their_line() {
    let cases = [
        (
            "name = \"store_id\"",
            "name = \"Store\"",
            12,
            "argument name `Store` must be snake_case",
        ),
        (
            "name = \"threshold\"",
            "name = \"store_id\"",
            21,
            "a second argument `store_id` (the first is at line 12)",
        ),
        (
            "description = \"Stock below this\"\n",
            "",
            21,
            "argument `threshold` has no `description`",
        ),
        (
            "max_length = 40",
            "max_length = 0",
            29,
            "argument `category`: `max_length` must be at least 1",
        ),
        (
            "type = \"month\"",
            "type = \"month\"\nmin = 1",
            42,
            "argument `month`: `min` and `max` bound an integer argument, not a month one",
        ),
        (
            "max = 8",
            "max = 0",
            17,
            "argument `store_id`: `max` 0 is below `min` 1",
        ),
        (
            "max_length = 40",
            "type = \"date\"\nmax_length = 40",
            30,
            "`max_length` bounds a text argument, not a date one",
        ),
        (
            "type = \"month\"",
            "type = \"month\"\none_of = [\"a\"]",
            42,
            "`one_of` lists the values of a text argument, not of a month one",
        ),
        (
            "one_of = [\"revenue\", \"units\"]",
            "one_of = [\"revenue\", \"Revenue\"]",
            35,
            "`one_of` lists \"Revenue\" twice",
        ),
        (
            "one_of = [\"revenue\", \"units\"]",
            "one_of = []",
            35,
            "`one_of` must list one value or more",
        ),
        (
            "default = \"Units\"",
            "default = \"Units\"\nvalues = [\"units\"]",
            37,
            "`one_of` already gives the values a client is offered",
        ),
        (
            "required = true",
            "required = true\ndefault = 3",
            16,
            "argument `store_id`: a required argument takes no `default`",
        ),
        (
            "default = 10",
            "default = 1000000000000000000000",
            24,
            "front matter: ",
        ),
        (
            "default = 10",
            "default = \"ten\"",
            24,
            "argument `threshold`: the `default` of an integer argument is an integer",
        ),
        (
            "default = \"Units\"",
            "default = 1",
            36,
            "argument `rank_by`: the `default` of a text argument is a string",
        ),
        (
            "default = \"Units\"",
            "default = \"margin\"",
            36,
            "argument `rank_by`: `default` must be one of revenue, units, got \"margin\"",
        ),
        (
            "values = [\"Plumbing\", \"Power Tools\"]",
            "values = [\"Plumbing\", \"Power Tools\"]\ncomplete = \"SELECT 'x' WHERE :prefix = ''\"",
            31,
            "give `values` or `complete`, not both",
        ),
        (
            "values = [\"Plumbing\", \"Power Tools\"]",
            "values = []",
            30,
            "argument `category`: `values` must list one value or more",
        ),
        (
            ":prefix || '%'",
            ":typed || '%'",
            18,
            "argument `store_id`: `complete`: a completion query takes one parameter, :prefix (what the user typed so far); found :typed",
        ),
        (
            ":prefix || '%'",
            ":prefix || :suffix",
            18,
            "found :prefix, :suffix",
        ),
        (
            ":prefix || '%' ORDER BY 1",
            "'1' ORDER BY 1",
            18,
            "found none",
        ),
        (
            "ORDER BY 1\"",
            "ORDER BY 1 /* unclosed\"",
            18,
            "argument `store_id`: `complete`: unclosed /* comment",
        ),
    ];
    for (from, to, line, expected) in cases {
        let (at, message) = refused(&restock_with(from, to));
        assert!(
            message.contains(expected),
            "{from} → {to}: line {at}: {message}"
        );
        assert_eq!(at, line, "{from} → {to}: {message}");
    }
    let long = "x".repeat(41);
    assert_refused(
        &restock_with("\"Power Tools\"]", &format!("\"{long}\"]")),
        30,
        &format!("argument `category`: `values`: \"{long}\" must be at most 40 characters, got 41"),
    );
    assert_refused(
        &restock_with("max = 8", "max = 8\nrequired = false"),
        18,
        "front matter: duplicate key",
    );
    assert_refused(
        &restock_with("default = 10", "default = 0\nmin = 1"),
        24,
        "argument `threshold`: `default` must be at least 1, got 0",
    );
}

#[test]
fn template_mistakes_are_refused_with_their_line() {
    let cases = [
        (
            "threshold {{threshold}}.",
            "threshold {{treshold}}.",
            44,
            "`{{treshold}}` names no argument (the arguments: store_id, threshold, category, rank_by, month)",
        ),
        (
            "{{#month}} from {{month.start}} to {{month.end}}{{/month}}",
            "",
            39,
            "argument `month` is never used by the template; write `{{month}}` where its value goes, or drop the argument",
        ),
        (
            "Rank `top_products` by {{ rank_by }}",
            "Rank `top_products` by {{ rank_by }} in {{month}}",
            51,
            "`{{month}}`: `month` is optional and has no default, so it may have no value here; put it inside `{{#month}}…{{/month}}`, or give it a default",
        ),
        (
            "{{^category}}\nEvery category.",
            "{{^category}}\nEvery category but {{category}}.",
            49,
            "`{{category}}`: `category` is optional and has no default",
        ),
        (
            "{{#category}}\n",
            "{{#store_id}}{{/store_id}}\n{{#category}}\n",
            45,
            "`{{#store_id}}`: `store_id` is required, so it always has a value and the section would always show",
        ),
        (
            "{{#category}}\n",
            "{{^threshold}}x{{/threshold}}\n{{#category}}\n",
            45,
            "`{{^threshold}}`: `threshold` has a default, so it always has a value and the section would never show",
        ),
        (
            "{{#category}}\nOnly",
            "{{#category}}\n{{#month}}\nOnly",
            48,
            "`{{/category}}` does not close `{{#month}}` of line 46; close that one first",
        ),
        (
            "{{/category}}\n{{^category}}",
            "{{/category}}\n{{/category}}\n{{^category}}",
            48,
            "`{{/category}}` closes no section",
        ),
        (
            "{{^category}}\nEvery category.\n{{/category}}\n",
            "{{^category}}\nEvery category.\n",
            48,
            "`{{^category}}` is never closed; end the section with `{{/category}}`",
        ),
        (
            "threshold {{threshold}}.",
            "threshold {{threshold}.",
            44,
            "`{{` is never closed by `}}` on this line",
        ),
        (
            "threshold {{threshold}}.",
            "threshold {{the threshold}}.",
            44,
            "`{{the threshold}}` is not a tag",
        ),
        (
            "threshold {{threshold}}.",
            "threshold {{!threshold}}.",
            44,
            "`{{!threshold}}` is not a tag",
        ),
        (
            "threshold {{threshold}}.",
            "threshold {{threshold.end}}.",
            44,
            "`{{threshold.end}}`: `.start` and `.end` are the first and last day of a month argument, and `threshold` is an integer one",
        ),
    ];
    for (from, to, line, expected) in cases {
        let (at, message) = refused(&restock_with(from, to));
        assert!(
            message.contains(expected),
            "{from} → {to}: line {at}: {message}"
        );
        assert_eq!(at, line, "{from} → {to}: {message}");
    }
    assert_refused(
        "+++\ndescription = \"d\"\n+++\nHello {{name}}.\n",
        4,
        "`{{name}}` names no argument (this prompt has no arguments)",
    );
}

/// The example of the README's "Add a prompt" reads, and renders what the
/// README says a client gets.
#[test]
fn the_readme_example_reads_and_renders_as_shown() {
    let readme = include_str!("../../../README.md");
    let section = &readme[readme.find("### Add a prompt").unwrap()..];
    let start = section.find("```markdown\n").unwrap() + "```markdown\n".len();
    let example: String = section[start..]
        .lines()
        .take_while(|line| line.trim() != "```")
        .map(|line| format!("{}\n", line.strip_prefix("   ").unwrap_or(line)))
        .collect();
    let mut tools = TOOLS.to_vec();
    tools.push("best_customers");
    let prompt = parse(&example, "prompts/best_customers_call.md", &tools).unwrap();
    assert_eq!(prompt.name, "best_customers_call");
    let template = Template::parse(&prompt.body, prompt.body_line).unwrap();
    let rendered = template.render(&values(&[
        ("start_date", "2025-01-01"),
        ("category", "Plumbing"),
    ]));
    let shown = &section[section.find("answers one user message:\n\n```\n").unwrap()..];
    let shown: Vec<&str> = shown.lines().skip(3).take(2).collect();
    assert_eq!(rendered.lines().take(2).collect::<Vec<_>>(), shown);
    for (argument, description) in [
        (
            "start_date",
            "The first day of the period. A date, YYYY-MM-DD.",
        ),
        (
            "category",
            "Only customers' purchases in this category. Text.",
        ),
    ] {
        let declared = prompt
            .arguments
            .iter()
            .find(|a| a.name == argument)
            .unwrap();
        let expected = sqlmcp_catalogue::capitalised(&declared.expected());
        assert_eq!(
            format!("{}. {expected}.", declared.description),
            description
        );
        assert!(section.contains(description), "{description}");
    }
    // the README's example of a refusal
    let restock = include_str!("../../../prompts/restock_plan.md");
    let err = parse(
        &restock.replacen("{{threshold}}", "{{treshold}}", 1),
        "prompts/restock_plan.md",
        &[
            "low_stock",
            "get_current_utc_date",
            "top_products",
            "product_details",
        ],
    )
    .unwrap_err();
    let shown = format!("error: prompts/restock_plan.md: {err}");
    assert!(section.contains(&shown), "{shown}");
}
