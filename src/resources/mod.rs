//! The MCP resources (`resources/list`, `resources/templates/list`,
//! `resources/read`), all from files:
//!
//! - `zava://tables/retail.<table>`: each table of the `retail` schema, as
//!   the migrations make it, described by `get_multiple_table_schemas` (read
//!   as a call of that tool);
//! - `zava://queries/<file>.sql`: the text of each file of `queries/`,
//!   embedded at build time, so a model can read the SQL behind a tool;
//! - the resource templates that query files declare (`--@ resource
//!   zava://products/{sku}`): reading one of their URIs is a call of the
//!   file's query with the arguments the URI holds, through the very path
//!   of `tools/call` ([`Handler::run_call`]: the caller's scopes and rate
//!   limits, the audit log, the deadline, the database under the caller's
//!   identity). A read that finds no row is "resource not found", whether
//!   the row does not exist or the caller may not see it.
//!
//! A caller sees and reads what their scopes allow: a table as the schema
//! tool needs, a query's text and template as its query needs.

mod catalogue;

use std::sync::LazyLock;

use rmcp::RoleServer;
use rmcp::model::{
    CacheScope, ErrorData as McpError, JsonObject, ListResourceTemplatesResult,
    ListResourcesResult, ReadResourceResult, Resource, ResourceContents, ResourceTemplate,
};
use rmcp::service::RequestContext;
use serde_json::{Value, json};
use sqlmcp_catalogue::uri_template::UriTemplate;
use sqlmcp_catalogue::{self as names, Query, TemplateVariable, ValueKind};

pub use catalogue::{QUERY_FILES, TABLES};

use crate::caller::Caller;
use crate::server::{Called, Handler, State};
use crate::tools::{ToolError, table_schemas};

/// A file of `queries/`, its text as built.
#[derive(Debug, Clone, Copy)]
pub struct QueryText {
    /// The query's name (its tool's, unless `tool` is false).
    pub query: &'static str,
    /// Its path in the workspace: `queries/top_products.sql`.
    pub file: &'static str,
    pub title: &'static str,
    /// Served as a tool (`false`: `--@ resource-only`).
    pub tool: bool,
    pub text: &'static str,
}

impl QueryText {
    /// `zava://queries/top_products.sql`
    pub fn uri(&self) -> String {
        let name = self.file.rsplit('/').next().unwrap_or(self.file);
        format!("{}{name}", names::QUERY_RESOURCES)
    }
}

pub const SQL: &str = "application/sql";
pub const JSON: &str = "application/json";

/// `zava://tables/retail.orders`
pub fn table_uri(table: &str) -> String {
    format!("{}{table}", names::TABLE_RESOURCES)
}

/// A resource template: its query as the catalogue describes it, and its
/// URI template parsed.
#[derive(Debug)]
pub struct Template {
    pub query: Query,
    pub uri: UriTemplate,
}

impl Template {
    pub fn variables(&self) -> &[TemplateVariable] {
        self.query
            .resource
            .as_ref()
            .map_or(&[], |resource| &resource.variables)
    }

    /// What a read answers: the template's own description, or its
    /// query's.
    pub fn description(&self) -> String {
        self.query
            .resource
            .as_ref()
            .and_then(|r| r.description.clone())
            .unwrap_or_else(|| self.query.description.clone())
    }

    /// The template as `resources/templates/list` lists it.
    pub fn to_mcp(&self) -> ResourceTemplate {
        ResourceTemplate::new(self.uri.as_str(), self.query.name.clone())
            .with_title(self.query.title.clone())
            .with_description(self.description())
            .with_mime_type(JSON)
    }
}

/// Every resource template, in query name order.
pub fn templates_served() -> &'static [Template] {
    static TEMPLATES: LazyLock<Vec<Template>> = LazyLock::new(|| {
        let queries: Vec<Query> = serde_json::from_str(catalogue::TEMPLATE_QUERIES)
            .expect("the build writes the templates as the catalogue's JSON");
        queries
            .into_iter()
            .map(|query| {
                let text = &query.resource.as_ref().expect("a template").uri_template;
                let uri = UriTemplate::parse(text).expect("the build checked the template");
                Template { query, uri }
            })
            .collect()
    });
    &TEMPLATES
}

/// The template whose URI template is `uri_template`, as written.
pub fn template(uri_template: &str) -> Option<&'static Template> {
    templates_served()
        .iter()
        .find(|t| t.uri.as_str() == uri_template)
}

/// Every resource that is no template, as MCP lists it, with the tool or
/// query whose scope a caller needs to read it.
pub fn fixed() -> Vec<(Resource, &'static str)> {
    let tables = TABLES.iter().map(|table| {
        let resource = Resource::new(table_uri(table), *table)
            .with_title(format!("Table {table}"))
            .with_description(format!(
                "Columns (with types and nullability), primary and foreign keys of {table}, and \
                 for a small reference table its rows: what {} answers for it.",
                table_schemas::NAME
            ))
            .with_mime_type(JSON);
        (resource, table_schemas::NAME)
    });
    let files = QUERY_FILES.iter().map(|file| {
        let name = file.file.rsplit('/').next().unwrap_or(file.file);
        let behind = match (file.tool, template_of(file.query)) {
            (true, _) => format!("the tool `{}`", file.query),
            (false, Some(template)) => format!("the resource template {}", template.uri),
            (false, None) => format!("the query `{}`", file.query),
        };
        let resource = Resource::new(file.uri(), name)
            .with_title(format!("SQL of {}", file.title))
            .with_description(format!(
                "The SQL behind {behind}, as written in {}: its parameters, directives and query.",
                file.file
            ))
            .with_mime_type(SQL)
            .with_size(file.text.len() as u64);
        (resource, file.query)
    });
    tables.chain(files).collect()
}

fn template_of(query: &str) -> Option<&'static Template> {
    templates_served().iter().find(|t| t.query.name == query)
}

/// Whether `caller` may use what needs the scope of `name`; a request that
/// names no caller is shown everything (it can read nothing), as with
/// `tools/list`.
fn listed_for(state: &State, caller: Option<&Caller>, name: &str) -> bool {
    caller.is_none_or(|caller| state.tool_scopes.allows(&caller.scopes, name))
}

/// `resources/list`: the tables and query files the caller's scopes allow.
pub fn list(state: &State, caller: Option<&Caller>) -> ListResourcesResult {
    let resources = fixed()
        .into_iter()
        .filter(|(_, needs)| listed_for(state, caller, needs))
        .map(|(resource, _)| resource)
        .collect();
    ListResourcesResult::with_all_items(resources).with_cache_scope(CacheScope::Private)
}

/// `resources/templates/list`: the templates whose queries the caller's
/// scopes allow.
pub fn templates(state: &State, caller: Option<&Caller>) -> ListResourceTemplatesResult {
    let templates = templates_served()
        .iter()
        .filter(|t| listed_for(state, caller, &t.query.name))
        .map(Template::to_mcp)
        .collect();
    ListResourceTemplatesResult::with_all_items(templates).with_cache_scope(CacheScope::Private)
}

/// MCP's "resource not found" (-32002), for a URI that names nothing, and
/// for a read that finds nothing the caller may see.
pub fn not_found(uri: &str) -> McpError {
    McpError::resource_not_found(
        format!("Resource not found: {uri}"),
        Some(json!({ "uri": uri })),
    )
}

/// `resources/read`.
pub async fn read(
    handler: &Handler,
    state: &State,
    uri: &str,
    context: &RequestContext<RoleServer>,
) -> Result<ReadResourceResult, McpError> {
    let contents = if uri.starts_with(names::QUERY_RESOURCES) {
        let file = QUERY_FILES
            .iter()
            .find(|file| file.uri() == uri)
            .ok_or_else(|| not_found(uri))?;
        permitted(state, handler.caller(context).as_deref(), uri, file.query)?;
        ResourceContents::text(file.text, uri).with_mime_type(SQL)
    } else if let Some(table) = uri.strip_prefix(names::TABLE_RESOURCES) {
        if !TABLES.contains(&table) {
            return Err(not_found(uri));
        }
        let mut arguments = JsonObject::new();
        arguments.insert("table_names".to_owned(), json!([table]));
        let answer = call(handler, table_schemas::NAME, arguments, context).await?;
        json_contents(uri, &answer["tables"][0])
    } else {
        let (template, values) = templates_served()
            .iter()
            .find_map(|t| t.uri.matches(uri).map(|values| (t, values)))
            .ok_or_else(|| not_found(uri))?;
        let arguments = arguments(template, values);
        let answer = call(handler, &template.query.name, arguments, context).await?;
        if answer["row_count"] == 0 {
            return Err(not_found(uri));
        }
        json_contents(uri, &answer)
    };
    Ok(ReadResourceResult::new(vec![contents]).with_cache_scope(CacheScope::Private))
}

fn json_contents(uri: &str, value: &Value) -> ResourceContents {
    ResourceContents::text(value.to_string(), uri).with_mime_type(JSON)
}

/// The query's arguments from a URI's variables: each value as JSON of its
/// parameter's type. A value that does not read as that type is passed as
/// text, so that the query's own argument check names it.
fn arguments(template: &Template, values: Vec<(String, String)>) -> JsonObject {
    values
        .into_iter()
        .map(|(name, text)| {
            let pg_type = template
                .variables()
                .iter()
                .find(|v| v.name == name)
                .map_or("text", |v| v.pg_type.as_str());
            let value = match names::value_kind(pg_type) {
                ValueKind::Integer => text.parse::<i64>().map(Value::from).ok(),
                ValueKind::Float => text
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number),
                ValueKind::Boolean => text.parse::<bool>().map(Value::Bool).ok(),
                _ => None,
            };
            (name, value.unwrap_or(Value::String(text)))
        })
        .collect()
}

/// A call of `name` through the path of `tools/call`; its structured
/// answer, or its refusal or failure as an MCP error.
async fn call(
    handler: &Handler,
    name: &str,
    arguments: JsonObject,
    context: &RequestContext<RoleServer>,
) -> Result<Value, McpError> {
    let text = |result: &rmcp::model::CallToolResult| {
        result
            .content
            .first()
            .and_then(|c| c.as_text())
            .map(|t| t.text.clone())
            .unwrap_or_default()
    };
    match handler.run_call(name, Some(arguments), context).await {
        Called::Answered(result) => Ok(result.structured_content.unwrap_or_default()),
        Called::Refused(result) => Err(McpError::invalid_request(text(&result), None)),
        Called::Failed(result, ToolError::InvalidArgument { .. })
        | Called::Failed(result, ToolError::InvalidArguments(_)) => {
            Err(McpError::invalid_params(text(&result), None))
        }
        Called::Failed(result, _) => Err(McpError::internal_error(text(&result), None)),
    }
}

/// Whether `caller` may read `uri`, which needs the scope of `name`;
/// refused as `tools/call` refuses (no identity, a missing scope), as an
/// MCP error.
pub fn permitted(
    state: &State,
    caller: Option<&Caller>,
    uri: &str,
    name: &str,
) -> Result<(), McpError> {
    let Some(caller) = caller else {
        return Err(McpError::invalid_request(
            "refused: this request names no caller. Send the x-rls-user-id header (header mode) \
             or an Authorization: Bearer token (jwt mode), or configure a stdio caller or a \
             default caller.",
            None,
        ));
    };
    if state.tool_scopes.allows(&caller.scopes, name) {
        return Ok(());
    }
    Err(McpError::invalid_request(
        format!(
            "refused: `{uri}` needs the scope `{}`, which this caller's credential does not grant \
             (it grants: {})",
            state.tool_scopes.required(name),
            caller.scopes
        ),
        None,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_query_file_is_a_resource_with_its_text() {
        assert!(QUERY_FILES.len() >= 8);
        for file in QUERY_FILES {
            assert!(
                file.text.contains(&format!("--! {}", file.query)),
                "{}",
                file.file
            );
            assert_eq!(
                file.uri(),
                format!("zava://queries/{}.sql", file.query),
                "one query per file, named alike"
            );
        }
        assert!(TABLES.contains(&"retail.orders"), "{TABLES:?}");
    }

    #[test]
    fn the_shipped_templates_are_served() {
        let uris: Vec<&str> = templates_served().iter().map(|t| t.uri.as_str()).collect();
        for expected in ["zava://products/{sku}", "zava://stores/{store_id}/summary"] {
            assert!(uris.contains(&expected), "{uris:?}");
        }
        for template in templates_served() {
            for variable in template.variables() {
                assert!(
                    variable.completion.is_some(),
                    "{}: `{}` offers no completions",
                    template.uri,
                    variable.name
                );
            }
        }
        let summary = template("zava://stores/{store_id}/summary").unwrap();
        assert!(!summary.query.tool, "resource-only");
        let values = summary.uri.matches("zava://stores/3/summary").unwrap();
        assert_eq!(
            arguments(summary, values),
            json!({"store_id": 3}).as_object().unwrap().clone()
        );
        let values = summary.uri.matches("zava://stores/x/summary").unwrap();
        assert_eq!(
            arguments(summary, values),
            json!({"store_id": "x"}).as_object().unwrap().clone()
        );
    }
}
