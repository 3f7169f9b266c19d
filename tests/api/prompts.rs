//! The prompts of `prompts/*.md`, served to a real MCP client: listed with
//! their arguments, rendered with checked arguments (every mistake an
//! invalid-params error naming the argument and the rule), and offered only
//! to callers whose scopes allow every tool a prompt chains. Also, in the
//! workspace copy of `codegen.rs`, the developer's loop: a new `.md` file
//! becomes a prompt, and a mistake fails the build with the file and line.

use std::path::Path;
use std::sync::Arc;

use rmcp::model::{GetPromptRequestParams, GetPromptResult, JsonObject, Role};
use rmcp::service::RunningService;
use rmcp::{RoleClient, model::ClientConfig};
use serde_json::{Value, json};
use sqlmcp::auth::{Authenticator, ToolScopes};
use sqlmcp::caller::Scopes;

use crate::codegen::Workspace;
use crate::helpers::server::{as_caller, spawn_app, spawn_app_with};
use crate::helpers::{HEAD_OFFICE, SEATTLE, TestDb, stderr};

type Client = RunningService<RoleClient, ClientConfig>;

const PROMPTS: [&str; 3] = ["category_deep_dive", "monthly_store_review", "restock_plan"];

fn arguments(value: Value) -> JsonObject {
    value.as_object().expect("an object").clone()
}

async fn get(client: &Client, name: &str, args: Value) -> Result<GetPromptResult, String> {
    client
        .get_prompt(GetPromptRequestParams::new(name).with_arguments(arguments(args)))
        .await
        .map_err(|err| err.to_string())
}

/// The text of the one user message a prompt renders.
fn text(result: &GetPromptResult) -> String {
    assert_eq!(result.messages.len(), 1, "{result:?}");
    let message = &result.messages[0];
    assert_eq!(message.role, Role::User);
    message
        .content
        .as_text()
        .expect("a text message")
        .text
        .clone()
}

async fn listed(client: &Client) -> Vec<String> {
    client
        .list_all_prompts()
        .await
        .expect("prompts/list")
        .into_iter()
        .map(|prompt| prompt.name)
        .collect()
}

#[tokio::test]
async fn lists_every_prompt_with_its_arguments() {
    let app = spawn_app().await;
    let client = as_caller(&app, HEAD_OFFICE).await;
    let info = client.peer_info().unwrap();
    assert!(
        info.capabilities.prompts.is_some(),
        "the prompts capability"
    );

    let page = client.list_prompts(None).await.unwrap();
    let names: Vec<&str> = page.prompts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, PROMPTS, "in name order");
    assert_eq!(
        page.cache_scope,
        Some(rmcp::model::CacheScope::Private),
        "the list depends on the caller"
    );

    let review = serde_json::to_value(&page.prompts[1]).unwrap();
    assert_eq!(review["title"], "Monthly store review");
    assert!(
        review["description"]
            .as_str()
            .unwrap()
            .starts_with("A store's month in review"),
        "{review:#}"
    );
    assert_eq!(
        review["arguments"],
        json!([
            {"name": "store_id", "description": "The store to review, by store_id. An integer, at least 1.", "required": true},
            {"name": "month", "description": "The month to review. A month, YYYY-MM.", "required": true},
            {"name": "threshold", "description": "Report items with fewer units in stock than this. An integer from 1 to 100000; default 10.", "required": false},
        ])
    );
    let arguments_of = |index: usize| -> Vec<(String, bool)> {
        page.prompts[index]
            .arguments
            .as_ref()
            .unwrap()
            .iter()
            .map(|a| (a.name.clone(), a.required == Some(true)))
            .collect()
    };
    let owned = |pairs: &[(&str, bool)]| -> Vec<(String, bool)> {
        pairs.iter().map(|(n, r)| (n.to_string(), *r)).collect()
    };
    assert_eq!(
        arguments_of(0),
        owned(&[
            ("category", true),
            ("start_date", true),
            ("end_date", true),
            ("store_id", false),
            ("rank_by", false)
        ])
    );
    assert_eq!(
        arguments_of(2),
        owned(&[
            ("store_id", true),
            ("threshold", false),
            ("category", false),
            ("days", false),
            ("cover_weeks", false)
        ])
    );
    client.cancel().await.unwrap();
    app.stop().await.unwrap();
}

#[tokio::test]
async fn each_prompt_renders_its_arguments_and_names_its_tools() {
    let app = spawn_app().await;
    let client = as_caller(&app, SEATTLE).await;
    let tools_of = |name: &str| -> Vec<String> {
        sqlmcp::prompts::all()
            .find(|p| p.name == name)
            .unwrap()
            .tools
            .clone()
    };

    let review = get(
        &client,
        "monthly_store_review",
        json!({"store_id": "1", "month": "2024-02"}),
    )
    .await
    .unwrap();
    assert!(
        review
            .description
            .as_deref()
            .unwrap()
            .starts_with("A store's month in review")
    );
    let review = text(&review);
    for expected in [
        "Prepare the monthly review of store 1 for 2024-02 (2024-02-01 to 2024-02-29)",
        "`low_stock` with `store_id` 1 and `threshold` 10:",
        "`sales_by_category` with `store_id` 1, `start_date` 2024-02-01 and `end_date` 2024-02-29",
    ] {
        assert!(review.contains(expected), "{expected}\n{review}");
    }
    for tool in tools_of("monthly_store_review") {
        assert!(review.contains(&format!("`{tool}`")), "{tool}\n{review}");
    }
    assert!(!review.contains("{{"), "every tag rendered:\n{review}");

    // optional arguments given, as strings or (leniently) as numbers
    let restock = get(
        &client,
        "restock_plan",
        json!({"store_id": 1, "threshold": "25", "category": "Power Tools", "days": "30", "cover_weeks": "6"}),
    )
    .await
    .unwrap();
    let restock = text(&restock);
    for expected in [
        "Draw up a restock plan for store 1, for the Power Tools category only.",
        "`low_stock` with `store_id` 1, `threshold` 25, `category` \"Power Tools\" and `limit` 200",
        "`start_date` 30 days before today, `end_date` today, `category` \"Power Tools\" and `limit` 100",
        "weekly pace × 6 − units in stock",
    ] {
        assert!(restock.contains(expected), "{expected}\n{restock}");
    }
    for tool in tools_of("restock_plan") {
        assert!(restock.contains(&format!("`{tool}`")), "{tool}\n{restock}");
    }

    // left out, or sent blank as a client's empty form field: defaults,
    // and the optional sections gone
    let plain = text(
        &get(
            &client,
            "restock_plan",
            json!({"store_id": "1", "category": "", "days": "  "}),
        )
        .await
        .unwrap(),
    );
    assert!(
        plain.starts_with("Draw up a restock plan for store 1. It is"),
        "{plain}"
    );
    assert!(plain.contains("`threshold` 10 and `limit` 200"), "{plain}");
    assert!(plain.contains("the 90 days up to today"), "{plain}");
    assert!(!plain.contains("category` \""), "{plain}");

    let dive = get(
        &client,
        "category_deep_dive",
        json!({"category": "Plumbing", "start_date": "2024-01-01", "end_date": "2024-06-30", "rank_by": "UNITS"}),
    )
    .await
    .unwrap();
    let dive = text(&dive);
    for expected in [
        "Give a deep dive into the Plumbing category from 2024-01-01 to 2024-06-30 across all the stores you may see,",
        "`top_products` with `category` \"Plumbing\", `rank_by` \"units\", `start_date` 2024-01-01, `end_date` 2024-06-30 and `limit` 10",
    ] {
        assert!(dive.contains(expected), "{expected}\n{dive}");
    }
    for tool in tools_of("category_deep_dive") {
        assert!(dive.contains(&format!("`{tool}`")), "{tool}\n{dive}");
    }
    let one_store = text(
        &get(
            &client,
            "category_deep_dive",
            json!({"category": "Plumbing", "start_date": "2024-01-01", "end_date": "2024-06-30", "store_id": "1"}),
        )
        .await
        .unwrap(),
    );
    assert!(
        one_store.contains("from 2024-01-01 to 2024-06-30 at store 1,"),
        "{one_store}"
    );
    assert!(
        one_store.contains("`rank_by` \"revenue\""),
        "the default: {one_store}"
    );
    assert!(!one_store.contains("across all the stores"), "{one_store}");

    client.cancel().await.unwrap();
    app.stop().await.unwrap();
}

#[tokio::test]
async fn every_argument_mistake_is_an_invalid_params_error_naming_the_argument_and_the_rule() {
    let app = spawn_app().await;
    let client = as_caller(&app, SEATTLE).await;
    let review = |extra: Value| {
        let mut args = json!({"store_id": "1", "month": "2024-02"});
        for (key, value) in extra.as_object().unwrap() {
            args[key] = value.clone();
        }
        args
    };
    let cases = [
        (
            "monthly_store_review",
            json!({"store_id": "1"}),
            "invalid argument `month`: is required",
        ),
        (
            "monthly_store_review",
            review(json!({"store_id": ""})),
            "invalid argument `store_id`: is required",
        ),
        (
            "monthly_store_review",
            review(json!({"store_id": "Seattle"})),
            "invalid argument `store_id`: must be an integer, got \"Seattle\"",
        ),
        (
            "monthly_store_review",
            review(json!({"store_id": "0"})),
            "invalid argument `store_id`: must be at least 1, got 0",
        ),
        (
            "monthly_store_review",
            review(json!({"threshold": "100001"})),
            "invalid argument `threshold`: must be at most 100000, got 100001",
        ),
        (
            "monthly_store_review",
            review(json!({"month": "February"})),
            "invalid argument `month`: must be a month, YYYY-MM, got \"February\"",
        ),
        (
            "monthly_store_review",
            review(json!({"store_id": ["1"]})),
            "invalid argument `store_id`: must be a string (prompt arguments are strings), got [\"1\"]",
        ),
        (
            "monthly_store_review",
            review(json!({"region": "East"})),
            "invalid argument `region`: no such argument; expected one of `store_id`, `month`, `threshold`",
        ),
        (
            "restock_plan",
            json!({"store_id": "1", "days": "400"}),
            "invalid argument `days`: must be at most 365, got 400",
        ),
        (
            "restock_plan",
            json!({"store_id": "1", "category": "x".repeat(101)}),
            "invalid argument `category`: must be at most 100 characters, got 101",
        ),
        (
            "category_deep_dive",
            json!({"category": "Plumbing", "start_date": "2024-01-01", "end_date": "2024-02-30"}),
            "invalid argument `end_date`: must be a date, YYYY-MM-DD, got \"2024-02-30\"",
        ),
        (
            "category_deep_dive",
            json!({"category": "Plumbing", "start_date": "2024-01-01", "end_date": "2024-06-30", "rank_by": "margin"}),
            "invalid argument `rank_by`: must be one of revenue, units, got \"margin\"",
        ),
        (
            "weekly_review",
            json!({}),
            "unknown prompt `weekly_review`; the prompts: category_deep_dive, monthly_store_review, restock_plan",
        ),
    ];
    for (prompt, args, expected) in cases {
        let err = get(&client, prompt, args.clone())
            .await
            .expect_err(expected);
        assert!(
            err.contains("-32602") && err.contains(expected),
            "{prompt} {args}: {err}"
        );
    }
    client.cancel().await.unwrap();
    app.stop().await.unwrap();
}

#[tokio::test]
async fn scopes_decide_which_prompts_a_caller_is_offered() {
    let db = Arc::new(TestDb::seeded().await);
    // `store_performance` needs a scope of its own; callers hold only
    // `sales:read`, or that and the new scope.
    let serve = |scopes: &'static [&'static str]| {
        spawn_app_with(db.clone(), move |s| {
            s.tool_scopes =
                ToolScopes::new(&[("store_performance".into(), "sales:stores".into())]).unwrap();
            s.authenticator = Arc::new(Authenticator::Header(Scopes::new(scopes.iter().copied())));
        })
    };

    let app = serve(&["sales:read"]).await;
    let reader = as_caller(&app, SEATTLE).await;
    assert_eq!(
        listed(&reader).await,
        ["category_deep_dive", "restock_plan"],
        "monthly_store_review chains store_performance"
    );
    let err = get(
        &reader,
        "monthly_store_review",
        json!({"store_id": "1", "month": "2024-02"}),
    )
    .await
    .unwrap_err();
    assert!(
        err.contains(
            "refused: prompt `monthly_store_review` chains the tool `store_performance`, which \
             needs the scope `sales:stores`; this caller's credential does not grant it"
        ),
        "{err}"
    );
    let err = get(&reader, "weekly_review", json!({})).await.unwrap_err();
    assert!(
        err.contains("the prompts: category_deep_dive, restock_plan"),
        "only the prompts the caller may use: {err}"
    );
    reader.cancel().await.unwrap();
    app.stop().await.unwrap();

    let app = serve(&["sales:read", "sales:stores"]).await;
    let both = as_caller(&app, SEATTLE).await;
    assert_eq!(listed(&both).await, PROMPTS);
    get(
        &both,
        "monthly_store_review",
        json!({"store_id": "1", "month": "2024-02"}),
    )
    .await
    .unwrap();
    both.cancel().await.unwrap();
    app.stop().await.unwrap();

    // a caller with only raw SQL is offered no prompt
    let app = serve(&["sales:sql"]).await;
    let analyst = as_caller(&app, SEATTLE).await;
    assert!(listed(&analyst).await.is_empty());
    analyst.cancel().await.unwrap();
    app.stop().await.unwrap();
}

#[test]
fn the_markdown_catalogue_lists_the_prompts_with_their_arguments() {
    let output = crate::helpers::sqlmcp(&["catalogue", "--markdown"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let markdown = crate::helpers::stdout(&output);
    assert!(
        markdown.contains("| prompt | what it does | arguments | tools it chains |"),
        "{markdown}"
    );
    let line = markdown
        .lines()
        .find(|line| line.starts_with("| `restock_plan` |"))
        .expect("a row per prompt");
    for expected in [
        "`store_id` (an integer, at least 1, required)",
        "`days` (an integer from 7 to 365; default 90)",
        "`low_stock`, `get_current_utc_date`, `top_products`, `product_details`",
    ] {
        assert!(line.contains(expected), "{expected}\n{line}");
    }
    let output = crate::helpers::sqlmcp(&["prompts"], &[]);
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    let names: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, PROMPTS);
    assert_eq!(json[2]["source"], "prompts/restock_plan.md");
}

/// The fixture prompt, which chains the fixture query of `codegen.rs`.
const FIXTURE: &str = "tests/fixtures/prompts/order_follow_up.md";

/// Before the copy's first live build: a new prompt beside the new query.
pub fn add_fixture(workspace: &Workspace) {
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE),
        workspace.root.join("prompts/order_follow_up.md"),
    )
    .unwrap();
}

/// After it: the copy's binary lists the new prompt, with its arguments.
pub fn check_fixture(workspace: &Workspace) {
    let output = std::process::Command::new(workspace.binary())
        .arg("prompts")
        .output()
        .expect("run sqlmcp prompts");
    assert!(output.status.success(), "{}", stderr(&output));
    let prompts: Value = serde_json::from_slice(&output.stdout).unwrap();
    let prompt = prompts
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "order_follow_up")
        .expect("the new prompt is listed");
    assert_eq!(prompt["title"], "Order follow-up");
    assert_eq!(prompt["tools"], json!(["recent_orders", "product_details"]));
    assert_eq!(
        prompt["arguments"],
        json!([
            {"name": "since", "description": "Only orders on or after this day. A date, YYYY-MM-DD.", "required": true},
            {"name": "online", "description": "Online orders or store orders. One of true, false; default false.", "required": false},
        ])
    );
}

/// Mistakes in a prompt fail the live build with the file, the line and
/// what is wrong; a prompt changed without a database to regenerate fails
/// the offline build. The copy is left as it was.
pub fn check_build_refusals(workspace: &Workspace, url: &str) {
    let fixture =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE)).unwrap();
    let file = "prompts/order_follow_up.md";
    let cases = [
        (
            file,
            fixture.replace("\"recent_orders\", ", "\"recent_order\", "),
            "prompts/order_follow_up.md: line 4: `tools`: there is no tool `recent_order`",
        ),
        (
            file,
            fixture.replace("`since` {{since}}", "`since` {{sinse}}"),
            "prompts/order_follow_up.md: line 18: `{{sinse}}` names no argument (the arguments: since, online)",
        ),
        (
            file,
            fixture.replace("`since` {{since}}, ", ""),
            "prompts/order_follow_up.md: line 7: argument `since` is never used by the template",
        ),
        (
            file,
            fixture.replace("type = \"date\"", "type = \"datetime\""),
            "prompts/order_follow_up.md: line 9: front matter: unknown variant `datetime`, expected one of `text`, `integer`, `date`, `month`",
        ),
        (
            file,
            fixture.replacen("+++\n", "", 1),
            "prompts/order_follow_up.md: line 1: a prompt file starts with a line `+++`",
        ),
        (
            "prompts/zz_copy.md",
            fixture.replace("title = ", "name = \"order_follow_up\"\ntitle = "),
            "prompts/zz_copy.md: line 1: a second prompt named `order_follow_up` (the first is prompts/order_follow_up.md)",
        ),
    ];
    for (path, text, expected) in cases {
        let path = workspace.root.join(path);
        let original = std::fs::read_to_string(&path).ok();
        std::fs::write(&path, text).unwrap();
        let refused = workspace.build(Some(url));
        match original {
            Some(original) => std::fs::write(&path, original).unwrap(),
            None => std::fs::remove_file(&path).unwrap(),
        }
        assert!(!refused.status.success(), "{expected}: the build must fail");
        let err = stderr(&refused);
        assert!(err.contains(expected), "{err}");
        assert!(
            !err.contains("panicked") && !err.contains("error["),
            "{err}"
        );
    }

    let path = workspace.root.join(file);
    std::fs::write(
        &path,
        fixture.replace("a short call script", "a call script"),
    )
    .unwrap();
    let stale = workspace.build(None);
    std::fs::write(&path, &fixture).unwrap();
    assert!(
        !stale.status.success(),
        "a stale snapshot fails the offline build"
    );
    let err = stderr(&stale);
    assert!(err.contains("prompts/order_follow_up.md changed"), "{err}");
    assert!(err.contains("scripts/codegen"), "{err}");
}
