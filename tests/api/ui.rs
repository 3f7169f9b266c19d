//! The workbench (`sqlmcp serve --ui`): off by default; every response
//! locked down (a strict Content-Security-Policy, the `Host` and `Origin`
//! checks of `/mcp`, small pages); its endpoints behind the same
//! authentication as `/mcp`; the raw-SQL verdict as `execute_sales_query`
//! gives it; recent calls shown to whom they belong. Then the page itself in
//! headless Chromium (`tests/clients/ui.mjs`), its numbers held against
//! independent SQL run as the same caller; screenshots go to
//! `target/ui-artifacts/`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};
use sqlmcp::auth::ClaimNames;

use crate::clients::{node, run_to_end};
use crate::helpers::process::ServeProcess;
use crate::helpers::server::{
    JWT_ISSUER, JWT_SECRET, TestApp, as_caller, call, claims, spawn_app, spawn_app_with,
    spawn_jwt_app_with, text, token,
};
use crate::helpers::{HEAD_OFFICE, ONLINE, REDMOND, SEATTLE, TestDb, url_of};
use crate::tools::expected;

/// The files of the page: each, and all together, well under 200 KB.
const PAGES: [(&str, &str); 5] = [
    ("/ui/", "text/html; charset=utf-8"),
    ("/ui/app.js", "text/javascript; charset=utf-8"),
    ("/ui/app.css", "text/css; charset=utf-8"),
    ("/ui/icon.svg", "image/svg+xml"),
    ("/ui/api/config", "application/json"),
];
const PAGE_LIMIT: usize = 200 * 1024;

/// A raw query the policy refuses, and where: the forbidden function.
const REFUSED_SQL: &str =
    "SELECT store_name,\n       pg_read_file('/etc/passwd') AS secret\nFROM retail.stores";

fn base(app: &TestApp) -> String {
    format!("http://{}", app.address())
}

async fn spawn_workbench() -> TestApp {
    spawn_app_with(Arc::new(TestDb::seeded().await), |s| s.ui = true).await
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_workbench_is_off_unless_asked_for() {
    let app = spawn_app().await;
    for (path, _) in PAGES {
        let response = http()
            .get(format!("{}{path}", base(&app)))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
    app.stop().await.unwrap();
}

#[test]
fn the_workbench_needs_http() {
    let output = crate::helpers::sqlmcp(
        &[
            "serve",
            "--stdio",
            "--ui",
            "--database-url",
            "postgres://nobody@127.0.0.1:1/none",
        ],
        &[],
    );
    assert!(!output.status.success());
    assert!(
        crate::helpers::stderr(&output).contains("--ui needs HTTP"),
        "{}",
        crate::helpers::stderr(&output)
    );
}

#[tokio::test]
async fn every_workbench_response_is_small_and_locked_down() {
    let app = spawn_workbench().await;
    let mut total = 0;
    for (path, content_type) in PAGES {
        let response = http()
            .get(format!("{}{path}", base(&app)))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        let csp = headers["content-security-policy"].to_str().unwrap();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["content-type"], content_type, "{path}");
        let body = response.text().await.unwrap();
        assert!(body.len() < PAGE_LIMIT, "{path}: {} bytes", body.len());
        total += body.len();
        if path == "/ui/" {
            // nothing inline for the policy to refuse: scripts by src only,
            // no style attributes or event handlers
            assert_eq!(
                body.matches("<script").count(),
                body.matches("<script type=\"module\" src=\"app.js\"></script>")
                    .count(),
                "{body}"
            );
            for inline in [" style=", " onclick=", " onload=", "<style", "javascript:"] {
                assert!(!body.contains(inline), "{inline} in the page");
            }
        }
    }
    assert!(total < PAGE_LIMIT, "all pages together: {total} bytes");
    let redirect = http()
        .get(format!("{}/ui", base(&app)))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 308);
    assert_eq!(redirect.headers()["location"], "/ui/");
    let missing = http()
        .get(format!("{}/ui/nothing-here.js", base(&app)))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.headers().contains_key("content-security-policy"));
    // the rest of the server is as it was
    let health = http()
        .get(format!("{}/healthz", base(&app)))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert!(!health.headers().contains_key("content-security-policy"));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_workbench_checks_host_and_origin_as_mcp_does() {
    let app = spawn_app_with(Arc::new(TestDb::seeded().await), |s| {
        s.ui = true;
        s.allowed_origins = vec!["https://tools.example.com".into()];
    })
    .await;
    let get = |path: &'static str, headers: &'static [(&'static str, &'static str)]| {
        let mut request = http().get(format!("{}{path}", base(&app)));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    for path in ["/ui/", "/ui/app.js", "/ui/api/config", "/ui/api/recent"] {
        assert_eq!(get(path, &[("host", "evil.example")]).await, 403, "{path}");
        assert_eq!(
            get(path, &[("origin", "https://evil.example")]).await,
            403,
            "{path}"
        );
    }
    assert_eq!(
        get("/ui/", &[("origin", "https://tools.example.com")]).await,
        200
    );
    assert_eq!(get("/ui/", &[]).await, 200);
    // /mcp answers the same
    let mcp = http()
        .post(&app.url)
        .header("host", "evil.example")
        .header("x-rls-user-id", SEATTLE)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(mcp.status(), 403);
    app.stop().await.unwrap();
}

/// The verdict of `POST /ui/api/check` as `caller` (header mode).
async fn verdict(app: &TestApp, caller: Option<&str>, query: &str) -> (u16, Value) {
    let mut request = http()
        .post(format!("{}/ui/api/check", base(app)))
        .json(&json!({ "query": query }));
    if let Some(caller) = caller {
        request = request.header("x-rls-user-id", caller);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn the_raw_sql_verdict_is_the_tools_own() {
    let app = spawn_workbench().await;
    let (status, accepted) = verdict(
        &app,
        Some(SEATTLE),
        "SELECT store_id, count(*) FROM retail.orders GROUP BY 1",
    )
    .await;
    assert_eq!((status, accepted), (200, json!({"verdict": "accepted"})));

    let seattle = as_caller(&app, SEATTLE).await;
    let refused_queries = [
        REFUSED_SQL,
        "SELECT 1; SELECT 2",
        "DELETE FROM retail.orders",
        "SELECT * FROM sqlmcp_audit.calls",
        "SELECT 1 FROM retail.orders FOR UPDATE",
        "",
    ];
    for query in refused_queries {
        let (status, refused) = verdict(&app, Some(SEATTLE), query).await;
        assert_eq!(status, 200, "{query}: {refused}");
        assert_eq!(refused["verdict"], "refused", "{query}: {refused}");
        let rule = refused["rule"].as_str().unwrap();
        let said = match refused["position"].as_u64() {
            Some(position) => format!("{rule} (at character {position})"),
            None => rule.to_owned(),
        };
        // execute_sales_query refuses it in the same words
        let answer = call(
            &seattle,
            "execute_sales_query",
            json!({ "postgresql_query": query }),
        )
        .await;
        assert_eq!(answer.is_error, Some(true), "{query}");
        assert!(
            text(&answer).contains(&said),
            "{query}: the tool said {:?}, the workbench {said:?}",
            text(&answer)
        );
    }
    let (_, refused) = verdict(&app, Some(SEATTLE), REFUSED_SQL).await;
    assert_eq!(
        refused["position"].as_u64().unwrap() as usize,
        REFUSED_SQL.find("pg_read_file").unwrap() + 1,
        "{refused}"
    );
    seattle.cancel().await.unwrap();

    // no identity, no verdict; a body that is not the expected one is named
    let (status, body) = verdict(&app, None, "SELECT 1").await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("names no caller"));
    let wrong = http()
        .post(format!("{}/ui/api/check", base(&app)))
        .header("x-rls-user-id", SEATTLE)
        .json(&json!({"sql": "SELECT 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 400);
    let plain = http()
        .post(format!("{}/ui/api/check", base(&app)))
        .header("x-rls-user-id", SEATTLE)
        .body(r#"{"query": "SELECT 1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 415);
    app.stop().await.unwrap();
}

/// `GET /ui/api/recent` as `caller` (header mode).
async fn recent(app: &TestApp, caller: &str) -> Value {
    let response = http()
        .get(format!("{}/ui/api/recent", base(app)))
        .header("x-rls-user-id", caller)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn tools_and_callers(answer: &Value) -> Vec<(String, String)> {
    answer["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|call| {
            (
                call["tool"].as_str().unwrap().to_owned(),
                call["caller"].as_str().unwrap_or("none").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn recent_calls_are_everyones_for_head_office_and_their_own_for_others() {
    // the audit log is off: the list comes from the same entries all the same
    let app = spawn_workbench().await;
    let seattle = as_caller(&app, SEATTLE).await;
    let redmond = as_caller(&app, REDMOND).await;
    call(&seattle, "store_performance", json!({})).await;
    call(&redmond, "top_products", json!({"limit": 3})).await;
    call(
        &seattle,
        "execute_sales_query",
        json!({"postgresql_query": "SELECT store_name FROM retail.stores"}),
    )
    .await;
    let refused = call(&redmond, "top_products", json!({"limit": 500})).await;
    assert_eq!(refused.is_error, Some(true));

    let head_office = recent(&app, HEAD_OFFICE).await;
    assert_eq!(head_office["everyone"], true);
    assert_eq!(
        tools_and_callers(&head_office),
        [
            ("top_products".to_owned(), REDMOND.to_owned()),
            ("execute_sales_query".to_owned(), SEATTLE.to_owned()),
            ("top_products".to_owned(), REDMOND.to_owned()),
            ("store_performance".to_owned(), SEATTLE.to_owned()),
        ]
    );
    let newest = &head_office["calls"][0];
    assert_eq!(newest["outcome"], "error");
    assert_eq!(newest["error_class"], "invalid_arguments");
    let sql_call = &head_office["calls"][1];
    assert_eq!(sql_call["outcome"], "ok");
    assert_eq!(sql_call["row_count"], 8);
    assert_eq!(sql_call["auth_method"], "header");
    assert!(sql_call["duration_ms"].as_f64().unwrap() > 0.0);
    // never result data, nor the arguments
    let everything = head_office.to_string();
    for secret in ["Zava Retail", "retail.stores", "\"limit\""] {
        assert!(!everything.contains(secret), "{secret}: {everything}");
    }

    let own = recent(&app, SEATTLE).await;
    assert_eq!(own["everyone"], false);
    assert_eq!(
        tools_and_callers(&own),
        [
            ("execute_sales_query".to_owned(), SEATTLE.to_owned()),
            ("store_performance".to_owned(), SEATTLE.to_owned()),
        ]
    );
    let others = recent(&app, ONLINE).await;
    assert_eq!(others["calls"], json!([]));
    let nobody = http()
        .get(format!("{}/ui/api/recent", base(&app)))
        .send()
        .await
        .unwrap();
    assert_eq!(nobody.status(), 403);
    seattle.cancel().await.unwrap();
    redmond.cancel().await.unwrap();
    app.stop().await.unwrap();
}

fn signed(claims: Value) -> String {
    token(
        claims,
        jsonwebtoken::Algorithm::HS256,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
}

#[tokio::test]
async fn in_jwt_mode_the_workbench_asks_for_a_token_and_lists_no_identities() {
    let app = spawn_jwt_app_with(
        Arc::new(TestDb::seeded().await),
        ClaimNames::default(),
        |s| s.ui = true,
    )
    .await;
    let config: Value = http()
        .get(format!("{}/ui/api/config", base(&app)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["auth"], "jwt");
    assert_eq!(config["identities"], Value::Null);

    let seattle = signed(claims(SEATTLE, "sqlmcp", JWT_ISSUER, 600));
    let reader = {
        let mut claims = claims(SEATTLE, "sqlmcp", JWT_ISSUER, 600);
        claims["scope"] = json!("sales:read");
        signed(claims)
    };
    let check = |token: Option<String>| {
        let mut request = http()
            .post(format!("{}/ui/api/check", base(&app)))
            .json(&json!({"query": "SELECT 1"}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.unwrap() }
    };
    let refused = check(None).await;
    assert_eq!(refused.status(), 401);
    assert!(refused.headers().contains_key("www-authenticate"));
    assert_eq!(check(Some("not.a.jwt".into())).await.status(), 401);
    assert_eq!(check(Some(seattle.clone())).await.status(), 200);
    // no raw SQL scope, no raw SQL verdict
    let no_scope = check(Some(reader)).await;
    assert_eq!(no_scope.status(), 403);
    assert!(
        no_scope
            .text()
            .await
            .unwrap()
            .contains("needs the scope `sales:sql`")
    );
    let recent = |token: Option<&str>| {
        let mut request = http().get(format!("{}/ui/api/recent", base(&app)));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(recent(None).await, 401);
    assert_eq!(recent(Some(&seattle)).await, 200);
    app.stop().await.unwrap();
}

// ---------------------------------------------------------------------------
// In the browser

fn artefacts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-artifacts")
}

/// The Chromium the browser tests drive, which `scripts/browser` installs.
fn chromium() -> PathBuf {
    let path = std::env::var_os("SQLMCP_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/browser (scripts/test runs it) to install Chromium, or set SQLMCP_CHROMIUM",
        path.display()
    );
    path
}

/// What `tests/clients/ui.mjs` reports of `scenario` against `base`.
async fn browse(base: &str, scenario: &str, parameters: Value) -> Value {
    let program = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/ui.mjs");
    let folder = artefacts().join(scenario);
    let stdout = run_to_end(
        &format!("the workbench in Chromium ({scenario})"),
        tokio::process::Command::new(node())
            .arg(program)
            .args([base, scenario, folder.to_str().unwrap()])
            .arg(parameters.to_string())
            .env("SQLMCP_CHROMIUM", chromium()),
    )
    .await;
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|err| panic!("no report ({err}):\n{stdout}"))
}

/// Revenue, orders and units per month of 2025, as `caller` sees them.
async fn revenue_2025(db: &TestDb, caller: &str) -> Vec<Vec<String>> {
    let sql = "SELECT make_date(extract(year FROM o.order_date)::int, extract(month FROM o.order_date)::int, 1)::text, \
                      sum(oi.total_amount)::text, count(DISTINCT o.order_id)::text, sum(oi.quantity)::text \
               FROM retail.orders o JOIN retail.order_items oi USING (order_id) \
               WHERE o.order_date >= '2025-01-01' AND o.order_date < '2026-01-01' GROUP BY 1 ORDER BY 1";
    expected(db, caller, sql).await
}

fn strings(rows: &Value) -> Vec<Vec<String>> {
    serde_json::from_value(rows.clone()).unwrap()
}

#[tokio::test]
async fn in_chromium_a_store_manager_runs_tools_and_raw_sql_and_sees_their_numbers() {
    let db = TestDb::seeded().await;
    let server = ServeProcess::sqlmcp(&["--ui", "--database-url", &url_of(&db.app_config())]).await;
    let accepted_sql = "SELECT store_id, count(*) AS orders FROM retail.orders GROUP BY store_id ORDER BY store_id";
    let report = browse(
        &format!("http://{}", server.address),
        "header",
        json!({
            "seattle": SEATTLE,
            "redmond": REDMOND,
            "headOffice": HEAD_OFFICE,
            "refusedSql": REFUSED_SQL,
            "acceptedSql": accepted_sql,
        }),
    )
    .await;
    assert_eq!(report["problems"], json!([]), "the browser complained");

    // the identities come from the server, with a warning beside them
    let ids: Vec<&str> = report["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    for id in [
        HEAD_OFFICE,
        SEATTLE,
        REDMOND,
        ONLINE,
        crate::helpers::EAST_REGIONAL,
    ] {
        assert!(ids.contains(&id), "{id}: {ids:?}");
    }
    assert!(
        report["developmentNote"]
            .as_str()
            .unwrap()
            .contains("development convenience")
    );
    let all_tools: Vec<String> = sqlmcp::tools::definitions()
        .iter()
        .map(|t| t.name.to_owned())
        .collect();
    assert_eq!(
        serde_json::from_value::<Vec<String>>(report["tools"].clone()).unwrap(),
        all_tools
    );

    // revenue_by_month for 2025: the table is the database's, exactly
    let seattle = &report["seattle"];
    assert_eq!(
        seattle["columns"],
        json!(["month", "revenue", "orders", "units"])
    );
    assert_eq!(seattle["rightAligned"], json!([false, true, true, true]));
    let seattle_rows = revenue_2025(&db, SEATTLE).await;
    assert_eq!(seattle_rows.len(), 12);
    assert_eq!(strings(&seattle["rows"]), seattle_rows);
    assert_eq!(seattle["rowCount"], 12);
    assert_eq!(seattle["truncated"], false);
    assert_eq!(seattle["chart"]["kind"], "line");
    assert_eq!(seattle["chart"]["points"], 12);
    assert_eq!(seattle["chart"]["drawn"], 12);
    assert!(seattle["chart"]["width"].as_f64().unwrap() > 400.0);
    assert_eq!(
        report["formFieldTypes"],
        json!({"start_date": "date", "end_date": "date", "store_id": "number", "category": "text"})
    );

    // another identity, other numbers: Redmond's own
    assert!(
        report["afterSwitch"]
            .as_str()
            .unwrap()
            .contains("identity changed")
    );
    let redmond_rows = revenue_2025(&db, REDMOND).await;
    assert_eq!(strings(&report["redmond"]["rows"]), redmond_rows);
    assert_ne!(redmond_rows, seattle_rows);
    assert_eq!(report["categories"]["chart"]["kind"], "bar");
    assert_eq!(
        report["rankBy"],
        json!({"tag": "SELECT", "options": ["revenue", "units"], "value": "revenue"})
    );

    // raw SQL: refused before it is sent, with the rule and its place
    let refused = &report["refused"];
    let position = REFUSED_SQL.find("pg_read_file").unwrap() + 1;
    assert_eq!(refused["verdict"], "refused");
    assert_eq!(refused["position"], position);
    assert!(
        refused["rule"].as_str().unwrap().contains("pg_read_file"),
        "{refused}"
    );
    assert!(
        refused["pointer"]
            .as_str()
            .unwrap()
            .ends_with("       ^ line 2, column 8"),
        "{refused}"
    );
    assert_eq!(refused["selection"], json!([position - 1, position]));
    assert!(refused["result"].as_str().unwrap().contains("Not sent"));
    let accepted = &report["accepted"];
    assert_eq!(accepted["columns"], json!(["store_id", "orders"]));
    assert_eq!(
        strings(&accepted["rows"]),
        expected(
            &db,
            REDMOND,
            "SELECT store_id::text, count(*)::text FROM retail.orders GROUP BY store_id ORDER BY store_id"
        )
        .await
    );

    // recent calls: Redmond's own; head office everyone's, Seattle's too
    let callers = |calls: &Value| -> Vec<(String, String, String)> {
        calls
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["tool"].as_str().unwrap().to_owned(),
                    c["caller"].as_str().unwrap().to_owned(),
                    c["outcome"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let own = callers(&report["recentAsRedmond"]["calls"]);
    assert!(
        own.iter().all(|(_, caller, _)| caller == REDMOND),
        "{own:?}"
    );
    let tools_run: Vec<&str> = own.iter().map(|(tool, _, _)| tool.as_str()).collect();
    // newest first; the refused raw query was never sent
    assert_eq!(
        tools_run,
        [
            "execute_sales_query",
            "sales_by_category",
            "revenue_by_month"
        ]
    );
    let everyone = callers(&report["recentAsHeadOffice"]["calls"]);
    assert!(everyone.contains(&(
        "revenue_by_month".to_owned(),
        SEATTLE.to_owned(),
        "ok".to_owned()
    )));
    assert!(everyone.len() > own.len());

    for (page, bytes) in report["transferred"].as_object().unwrap() {
        assert!(
            bytes.as_u64().unwrap() < PAGE_LIMIT as u64,
            "{page}: {bytes}"
        );
    }
    assert_eq!(report["keyboardTab"], "tab-sql:true");
    assert_eq!(report["unlabelled"], json!([]));
    assert!(artefacts().join("header/workbench.png").exists());
    server.kill().await;
}

#[tokio::test]
async fn in_chromium_jwt_mode_asks_for_a_token_and_runs_with_it() {
    let db = Arc::new(TestDb::seeded().await);
    let app = spawn_jwt_app_with(db.clone(), ClaimNames::default(), |s| s.ui = true).await;
    let token = signed(claims(SEATTLE, "sqlmcp", JWT_ISSUER, 600));
    let report = browse(&base(&app), "jwt", json!({ "token": token })).await;
    assert_eq!(report["selectorShown"], false);
    assert!(
        report["withoutToken"].as_str().unwrap().contains("401"),
        "{report}"
    );
    assert!(
        report["who"]
            .as_str()
            .unwrap()
            .contains(&format!("subject {SEATTLE}"))
    );
    assert_eq!(
        strings(&report["seattle"]["rows"]),
        revenue_2025(&db, SEATTLE).await
    );
    assert_eq!(report["tokenKept"], true);
    let recent = &report["recent"]["calls"];
    assert_eq!(recent[0]["tool"], "revenue_by_month");
    assert_eq!(recent[0]["caller"], SEATTLE);
    // only the expected refusals: the calls made before the token was given
    for problem in report["problems"].as_array().unwrap() {
        assert!(
            problem.as_str().unwrap().contains("401"),
            "the browser complained: {problem}"
        );
    }
    app.stop().await.unwrap();
}
