//! Turns the query catalogue (from `sqlmcp-codegen`) into typed MCP tools:
//! for every query, an argument struct (serde + schemars, unknown fields
//! rejected), its validation, an output schema derived from the result
//! columns, and the call into the cornucopia-generated function.
//!
//! Stages: load the catalogue → generate one module per tool → write each to
//! `OUT_DIR/tools/<name>.rs` and `OUT_DIR/curated_tools.rs` (only when the
//! content changed). The prompts of the catalogue go to `OUT_DIR/prompts.json`
//! as they are, for `src/prompts/` to embed.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use sqlmcp_catalogue::{self as catalogue, Catalogue, Column, Param, Query, ValueKind};

fn main() {
    let path = std::env::var("DEP_SQLMCP_CODEGEN_CATALOGUE")
        .expect("sqlmcp-codegen hands over the catalogue path");
    println!("cargo::rerun-if-changed={path}");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("cannot read {path}: {err}"));
    let catalogue: Catalogue =
        serde_json::from_str(&text).unwrap_or_else(|err| panic!("cannot parse {path}: {err}"));

    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    let tools_dir = out_dir.join("tools");
    std::fs::create_dir_all(&tools_dir).expect("create OUT_DIR/tools");
    let mut index = String::new();
    writeln!(index, "// {}\n", catalogue::GENERATED_NOTICE).unwrap();
    for query in &catalogue.queries {
        write(
            &tools_dir.join(format!("{}.rs", query.name)),
            &tool_module(query),
        );
        writeln!(
            index,
            "#[path = {:?}]\npub mod {};",
            tools_dir.join(format!("{}.rs", query.name)).display(),
            query.name
        )
        .unwrap();
    }
    writeln!(
        index,
        "/// The built-in tools' names, which no query may take (checked by a test).\n#[cfg(test)]\npub const BUILT_IN_NAMES: &[&str] = &{:?};",
        catalogue::BUILT_IN_TOOLS
    )
    .unwrap();
    index.push_str(&registry(&catalogue.queries));
    write(&out_dir.join("curated_tools.rs"), &index);
    write_prompts(&catalogue, &out_dir);
    write(
        &out_dir.join("resource_catalogue.rs"),
        &resource_catalogue(&catalogue),
    );
}

/// The prompts, checked when the catalogue was made, as JSON that
/// `src/prompts/` embeds with `include_str!`.
fn write_prompts(catalogue: &Catalogue, out_dir: &Path) {
    let json = serde_json::to_string_pretty(&catalogue.prompts).expect("prompts serialise");
    write(&out_dir.join("prompts.json"), &json);
}

/// What `src/resources/` serves from the catalogue: each query file's text
/// (embedded, so a model can read the SQL behind a tool), the `retail`
/// tables, and the resource templates with their completions (as the
/// catalogue's JSON, read once by the server).
fn resource_catalogue(catalogue: &Catalogue) -> String {
    let workspace = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let mut out = String::new();
    writeln!(
        out,
        "// {}
",
        catalogue::GENERATED_NOTICE
    )
    .unwrap();
    writeln!(
        out,
        "/// Every file of `queries/`, in name order, its text as built.
pub const QUERY_FILES: &[QueryText] = &["
    )
    .unwrap();
    let mut queries: Vec<&Query> = catalogue.queries.iter().collect();
    queries.sort_by(|a, b| a.name.cmp(&b.name));
    for query in &queries {
        writeln!(
            out,
            "    QueryText {{ query: {:?}, file: {:?}, title: {:?}, tool: {}, text: include_str!({:?}) }},",
            query.name,
            query.file,
            query.title,
            query.tool,
            workspace.join(&query.file).display()
        )
        .unwrap();
    }
    writeln!(
        out,
        "];
"
    )
    .unwrap();
    writeln!(
        out,
        "/// The tables and views of the `retail` schema, as the migrations make them.
pub const TABLES: &[&str] = &{:?};
",
        catalogue.tables
    )
    .unwrap();
    let templates: Vec<&Query> = queries
        .into_iter()
        .filter(|q| q.resource.is_some())
        .collect();
    let json = serde_json::to_string(&templates).expect("the catalogue serialises");
    let hashes = "#".repeat(
        (1..)
            .find(|n| !json.contains(&format!("\"{}", "#".repeat(*n))))
            .unwrap(),
    );
    writeln!(
        out,
        "/// The queries that serve a resource template (`--@ resource`), as the\n/// catalogue describes them.\npub const TEMPLATE_QUERIES: &str = r{hashes}\"{json}\"{hashes};"
    )
    .unwrap();
    out
}

fn write(path: &Path, content: &str) {
    catalogue::write_if_changed(path, content).unwrap_or_else(|err| panic!("{err}"));
}

/// Parameters the caller passes (not filled by `--@ embed`).
fn visible_params(query: &Query) -> impl Iterator<Item = &Param> {
    query.params.iter().filter(|p| {
        !query
            .embeds
            .iter()
            .any(|e| e.vector_param == p.name || e.model_param.as_deref() == Some(p.name.as_str()))
    })
}

fn rust_type(pg_type: &str) -> String {
    catalogue::rust_type(pg_type).expect("codegen admits only mapped types")
}

fn kind(param: &Param) -> ValueKind {
    catalogue::value_kind(&param.pg_type)
}
/// A Rust expression of `value` for a parameter of this kind.
fn literal(kind: ValueKind, value: &serde_json::Value, rust: &str) -> String {
    match (kind, value) {
        (ValueKind::Text, serde_json::Value::String(s)) => format!("{s:?}.to_owned()"),
        (ValueKind::Boolean, serde_json::Value::Bool(b)) => b.to_string(),
        (ValueKind::Integer, serde_json::Value::Number(n)) => format!("{n}"),
        (ValueKind::Float, serde_json::Value::Number(n)) => {
            let text = n.to_string();
            if text.contains(['.', 'e', 'E']) {
                text
            } else {
                format!("{text}.0")
            }
        }
        (ValueKind::Decimal, serde_json::Value::Number(n)) => {
            format!("\"{n}\".parse::<{rust}>().expect(\"checked when generated\")")
        }
        _ => panic!("codegen admits no such value: {value}"),
    }
}

fn doc_lines(text: &str, indent: &str) -> String {
    text.lines()
        .map(|line| {
            if line.is_empty() {
                format!("{indent}///\n")
            } else {
                format!("{indent}/// {line}\n")
            }
        })
        .collect()
}

fn tool_module(query: &Query) -> String {
    [
        header(query),
        args_struct(query),
        validate_fn(query),
        admit_fn(query),
        run_fn(query),
    ]
    .concat()
}

/// Where the module comes from, its imports and its constants.
fn header(query: &Query) -> String {
    let name = &query.name;
    let mut out = String::new();
    writeln!(out, "// {}", catalogue::GENERATED_NOTICE).unwrap();
    let what = if query.tool { "Tool" } else { "Query" };
    writeln!(out, "// {what} `{name}`, from {}.\n", query.file).unwrap();
    writeln!(out, "use super::super::support::*;").unwrap();
    writeln!(out, "use sqlmcp_codegen::queries::{name} as query;\n").unwrap();
    writeln!(out, "pub const NAME: &str = {name:?};").unwrap();
    writeln!(out, "pub const TITLE: &str = {:?};", query.title).unwrap();
    writeln!(
        out,
        "pub const DESCRIPTION: &str = {:?};",
        query.description
    )
    .unwrap();
    writeln!(out, "pub const SOURCE: &str = {:?};", query.file).unwrap();
    let schema = serde_json::to_string_pretty(&output_schema(query)).expect("schemas serialise");
    // a raw string needs more #s than any "# run inside it
    let hashes = "#".repeat(
        (1..)
            .find(|n| !schema.contains(&format!("\"{}", "#".repeat(*n))))
            .unwrap(),
    );
    writeln!(
        out,
        "pub const OUTPUT_SCHEMA: &str = r{hashes}\"{schema}\"{hashes};\n"
    )
    .unwrap();
    out.push_str(
        "pub const TOOL: ToolDescriptor = ToolDescriptor {
    name: NAME,
    title: TITLE,
    description: DESCRIPTION,
    source: SOURCE,
    input_schema: input_schema::<Args>,
    output_schema: || serde_json::from_str(OUTPUT_SCHEMA).expect(\"generated output schemas are valid JSON\"),
};\n\n",
    );
    out
}

/// The argument struct (serde + schemars, unknown fields refused) and the
/// functions giving its defaults.
fn args_struct(query: &Query) -> String {
    let mut out = String::new();
    writeln!(out, "/// Arguments of the `{}` tool.", query.name).unwrap();
    writeln!(
        out,
        "#[derive(Debug, Clone, serde::Deserialize, schemars::JsonSchema)]"
    )
    .unwrap();
    writeln!(out, "#[serde(deny_unknown_fields)]").unwrap();
    writeln!(out, "pub struct Args {{").unwrap();
    for embed in &query.embeds {
        out.push_str(&doc_lines(&embed.description, "    "));
        writeln!(out, "    #[schemars(length(min = 1))]").unwrap();
        writeln!(
            out,
            "    pub {}: String,",
            catalogue::field(&embed.text_arg)
        )
        .unwrap();
    }
    let mut defaults = String::new();
    for param in visible_params(query) {
        out.push_str(&arg_field(param, &mut defaults));
    }
    writeln!(out, "}}\n").unwrap();
    out.push_str(&defaults);
    out
}

/// One field of `Args`; a defaulted one adds its default function to
/// `defaults`.
fn arg_field(param: &Param, defaults: &mut String) -> String {
    let rust = rust_type(&param.pg_type);
    let mut out = String::new();
    if let Some(description) = &param.description {
        out.push_str(&doc_lines(description, "    "));
    }
    let field_type = match (&param.default, param.nullable) {
        (Some(default), _) => {
            let function = format!("default_{}", param.name);
            writeln!(out, "    #[serde(default = {function:?})]").unwrap();
            writeln!(
                defaults,
                "fn {function}() -> {rust} {{\n    {}\n}}\n",
                literal(kind(param), default, &rust)
            )
            .unwrap();
            rust.clone()
        }
        (None, true) => {
            writeln!(out, "    #[serde(default)]").unwrap();
            format!("Option<{rust}>")
        }
        (None, false) => rust.clone(),
    };
    if param.minimum.is_some() || param.maximum.is_some() {
        // The schema states a decimal's bounds as JSON numbers; they apply
        // when the caller sends a number, and `validate` checks strings too.
        let schema_kind = match kind(param) {
            ValueKind::Decimal => ValueKind::Float,
            other => other,
        };
        let bounds: Vec<String> = [("min", &param.minimum), ("max", &param.maximum)]
            .into_iter()
            .filter_map(|(key, bound)| {
                bound.as_ref().map(|b| {
                    format!(
                        "{key} = {}",
                        literal(schema_kind, &serde_json::Value::Number(b.clone()), &rust)
                    )
                })
            })
            .collect();
        writeln!(out, "    #[schemars(range({}))]", bounds.join(", ")).unwrap();
    }
    if let Some(allowed) = &param.allowed {
        writeln!(out, "    #[schemars(extend(\"enum\" = {allowed:?}))]").unwrap();
    }
    writeln!(
        out,
        "    pub {}: {field_type},",
        catalogue::field(&param.name)
    )
    .unwrap();
    out
}

/// `Args::validate`: what the types alone do not say.
fn validate_fn(query: &Query) -> String {
    let mut out = String::new();
    writeln!(out, "impl Args {{").unwrap();
    writeln!(
        out,
        "    /// Checks bounds and allowed values; names the argument and the rule."
    )
    .unwrap();
    writeln!(
        out,
        "    pub fn validate(&self) -> Result<(), ToolError> {{"
    )
    .unwrap();
    for embed in &query.embeds {
        writeln!(
            out,
            "        check_not_blank({:?}, &self.{})?;",
            embed.text_arg,
            catalogue::field(&embed.text_arg)
        )
        .unwrap();
    }
    for param in visible_params(query) {
        out.push_str(&param_checks(param));
    }
    writeln!(out, "        Ok(())\n    }}\n}}\n").unwrap();
    out
}

/// The range and enum checks of one argument, if it has any.
fn param_checks(param: &Param) -> String {
    let rust = rust_type(&param.pg_type);
    let bound = |b: &Option<serde_json::Number>| match b {
        Some(n) => format!(
            "Some({})",
            literal(kind(param), &serde_json::Value::Number(n.clone()), &rust)
        ),
        None => "None".to_owned(),
    };
    let mut checks = Vec::new();
    if param.minimum.is_some() || param.maximum.is_some() {
        checks.push(format!(
            "check_range({:?}, value, {}, {})?;",
            param.name,
            bound(&param.minimum),
            bound(&param.maximum)
        ));
    }
    if let Some(allowed) = &param.allowed {
        checks.push(format!(
            "check_allowed({:?}, value, &{allowed:?})?;",
            param.name
        ));
    }
    if checks.is_empty() {
        return String::new();
    }
    let field = catalogue::field(&param.name);
    let mut out = if param.default.is_none() && param.nullable {
        format!("        if let Some(value) = &self.{field} {{\n")
    } else {
        format!("        {{\n            let value = &self.{field};\n")
    };
    for check in checks {
        writeln!(out, "            {check}").unwrap();
    }
    out.push_str("        }\n");
    out
}

/// The name `Ready` and `run` give the vector embedded for `param`.
fn embedded(vector_param: &str) -> String {
    format!("embedded_{vector_param}")
}

/// The fields of `Ready`, in order. The arguments are kept only if some are
/// bound to the query (embedded texts are not).
fn ready_fields(query: &Query) -> Vec<String> {
    let mut fields = Vec::new();
    if visible_params(query).next().is_some() {
        fields.push("args".to_owned());
    }
    fields.extend(query.embeds.iter().map(|e| embedded(&e.vector_param)));
    if !query.embeds.is_empty() {
        fields.push("embedding_model".to_owned());
    }
    fields
}

/// `Ready { args, … }`, as a pattern or a struct expression.
fn ready_pattern(query: &Query) -> String {
    match ready_fields(query).join(", ") {
        fields if fields.is_empty() => "Ready {}".to_owned(),
        fields => format!("Ready {{ {fields} }}"),
    }
}

/// `Ready` and `admit`: embedding happens before the call takes a
/// database connection.
fn admit_fn(query: &Query) -> String {
    let mut out = String::new();
    writeln!(
        out,
        "/// The arguments, with every `--@ embed` text turned into its vector."
    )
    .unwrap();
    writeln!(out, "#[derive(Debug, Clone)]\npub struct Ready {{").unwrap();
    if visible_params(query).next().is_some() {
        writeln!(out, "    args: Args,").unwrap();
    }
    for embed in &query.embeds {
        writeln!(out, "    {}: Vec<f32>,", embedded(&embed.vector_param)).unwrap();
    }
    if !query.embeds.is_empty() {
        writeln!(out, "    embedding_model: String,").unwrap();
    }
    writeln!(out, "}}\n").unwrap();
    writeln!(
        out,
        "/// Embeds the text arguments (no database needed).\n\
         pub async fn admit(args: Args, context: &ToolContext<'_>) -> Result<Ready, ToolError> {{"
    )
    .unwrap();
    if query.embeds.is_empty() {
        let unused = if visible_params(query).next().is_some() {
            "context"
        } else {
            "(args, context)"
        };
        writeln!(out, "    let _ = {unused};").unwrap();
    } else {
        writeln!(out, "    let embedder = context.embedder()?;").unwrap();
        for embed in &query.embeds {
            let dimensions = match embed.dimensions {
                Some(n) => format!("Some({n})"),
                None => "None".to_owned(),
            };
            writeln!(
                out,
                "    let {} = embed(embedder, NAME, {:?}, &args.{}, {dimensions}).await?;",
                embedded(&embed.vector_param),
                embed.text_arg,
                catalogue::field(&embed.text_arg)
            )
            .unwrap();
        }
        writeln!(
            out,
            "    let embedding_model = embedder.model_id().to_owned();"
        )
        .unwrap();
    }
    writeln!(out, "    Ok({})\n}}\n", ready_pattern(query)).unwrap();
    out
}

/// The value bound to `param`, as an expression borrowed by cornucopia's
/// `bind`.
fn bound_value(query: &Query, param: &Param) -> String {
    let embed = query.embeds.iter().find(|e| e.vector_param == param.name);
    let is_model = query
        .embeds
        .iter()
        .any(|e| e.model_param.as_deref() == Some(param.name.as_str()));
    let value = match (embed, is_model) {
        (Some(embed), _) => embedded(&embed.vector_param),
        (None, true) => "embedding_model.clone()".to_owned(),
        (None, false) => format!("args.{}", catalogue::field(&param.name)),
    };
    let hidden = embed.is_some() || is_model;
    // cornucopia takes a nullable parameter as an Option
    if param.nullable && (hidden || param.default.is_some()) {
        format!("&Some({value})")
    } else if is_model {
        "&embedding_model".to_owned()
    } else {
        format!("&{value}")
    }
}

/// The closure turning one row from cornucopia into its JSON object.
/// `real` values are written as their shortest decimal (`0.1`, not the
/// `0.10000000149011612` of the same value widened to a double).
fn row_to_json(query: &Query) -> String {
    let to_value = match query.columns.as_slice() {
        [single] => format!("serde_json::json!({{ {:?}: row }})", single.name),
        _ => "serde_json::to_value(row)?".to_owned(),
    };
    let reals: String = query
        .columns
        .iter()
        .filter(|c| matches!(c.pg_type.as_str(), "float4" | "_float4"))
        .map(|c| format!(" real_as_written(&mut value[{:?}]);", c.name))
        .collect();
    if reals.is_empty() && query.columns.len() > 1 {
        return "serde_json::to_value".to_owned();
    }
    let binding = if reals.is_empty() {
        "value"
    } else {
        "mut value"
    };
    format!("|row| {{ let {binding} = {to_value};{reals} Ok::<_, serde_json::Error>(value) }}")
}

/// `run`: binds the arguments, runs the query, collects its rows.
fn run_fn(query: &Query) -> String {
    let mut out = String::new();
    writeln!(out, "/// Runs the query with validated arguments.").unwrap();
    writeln!(
        out,
        "pub async fn run(call: &Call<'_>, ready: Ready, context: &ToolContext<'_>) -> Result<ToolOutput, ToolError> {{"
    )
    .unwrap();
    writeln!(out, "    let {} = ready;", ready_pattern(query)).unwrap();
    writeln!(out, "    let statement = query::{}();", query.name).unwrap();
    let bound: String = query
        .params
        .iter()
        .map(|param| format!(", {}", bound_value(query, param)))
        .collect();
    // The query is the call's last statement, and the COMMIT follows it in
    // the same round trip, unless an empty result sends a second one.
    let checks_vectors = query.embeds.iter().any(|e| e.vectors.is_some());
    let client = if checks_vectors {
        "call"
    } else {
        writeln!(out, "    let last = call.last();").unwrap();
        "&last"
    };
    writeln!(
        out,
        "    let rows = statement.bind({client}{bound}).iter().await.map_err(ToolError::from_database)?;"
    )
    .unwrap();
    let row = row_to_json(query);
    let extra = if query.embeds.is_empty() {
        "None"
    } else {
        "Some((\"embedding_model\", &embedding_model))"
    };
    writeln!(
        out,
        "    let output = collect_rows(rows, {row}, context.limits.max_rows, {extra}).await?;"
    )
    .unwrap();
    for embed in &query.embeds {
        if let Some(table) = &embed.vectors {
            writeln!(
                out,
                "    if output.is_empty() {{\n        \
                 check_stored_vectors(call, {:?}, {table:?}, &embedding_model).await?;\n    }}",
                catalogue::vectors_check_sql(table)
            )
            .unwrap();
        }
    }
    writeln!(out, "    Ok(output)\n}}").unwrap();
    out
}

fn column_schema(column: &Column) -> serde_json::Value {
    let schema = catalogue::json_schema(&column.pg_type).expect("codegen admits only mapped types");
    if column.nullable {
        serde_json::json!({ "anyOf": [schema, { "type": "null" }] })
    } else {
        schema
    }
}

/// `{rows: [...], row_count, truncated}` with one property per column.
fn output_schema(query: &Query) -> serde_json::Value {
    let properties: serde_json::Map<String, serde_json::Value> = query
        .columns
        .iter()
        .map(|c| (c.name.clone(), column_schema(c)))
        .collect();
    let required: Vec<&str> = query.columns.iter().map(|c| c.name.as_str()).collect();
    let mut schema = serde_json::json!({
        "type": "object",
        "properties": {
            "rows": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": properties,
                    "required": required,
                    "additionalProperties": false,
                },
            },
            "row_count": { "type": "integer", "minimum": 0 },
            "truncated": {
                "type": "boolean",
                "description": "true when more rows matched than the server returns",
            },
        },
        "required": ["rows", "row_count", "truncated"],
        "additionalProperties": false,
    });
    if !query.embeds.is_empty() {
        schema["properties"]["embedding_model"] = serde_json::json!({
            "type": "string",
            "description": "the embedding model that produced the ranking",
        });
        schema["required"]
            .as_array_mut()
            .unwrap()
            .push("embedding_model".into());
    }
    schema
}

/// The list of generated tools and the dispatch by name: `DEFINITIONS`,
/// `CuratedCall` (parsed arguments) and `ReadyCall` (embedded, ready to run),
/// one line of each per tool.
fn registry(queries: &[Query]) -> String {
    let mut sorted: Vec<&Query> = queries.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let [
        mut definitions,
        mut call_variants,
        mut parse_arms,
        mut admit_arms,
        mut ready_variants,
        mut run_arms,
    ] = <[String; 6]>::default();
    let mut resource_only = String::new();
    for query in sorted {
        let module = &query.name;
        let variant = catalogue::struct_name(&query.name);
        if query.tool {
            writeln!(definitions, "    &{module}::TOOL,").unwrap();
        } else {
            writeln!(resource_only, "    &{module}::TOOL,").unwrap();
        }
        writeln!(call_variants, "    {variant}(Box<{module}::Args>),").unwrap();
        writeln!(
            parse_arms,
            "            {module}::NAME => parse_arguments::<{module}::Args>(arguments).and_then(|args| {{ args.validate()?; Ok(CuratedCall::{variant}(Box::new(args))) }}),"
        )
        .unwrap();
        writeln!(
            admit_arms,
            "            CuratedCall::{variant}(args) => ReadyCall::{variant}(Box::new({module}::admit(*args, context).await?)),"
        )
        .unwrap();
        writeln!(ready_variants, "    {variant}(Box<{module}::Ready>),").unwrap();
        writeln!(
            run_arms,
            "            ReadyCall::{variant}(ready) => {module}::run(call, *ready, context).await,"
        )
        .unwrap();
    }
    format!(
        "
/// Every generated tool, in name order.
pub const DEFINITIONS: &[&ToolDescriptor] = &[
{definitions}];

/// The queries of files marked `--@ resource-only`: no tool, only a
/// resource template reads them.
pub const RESOURCE_ONLY: &[&ToolDescriptor] = &[
{resource_only}];

/// A call whose arguments are parsed and validated, ready to run.
#[derive(Debug)]
pub enum CuratedCall {{
{call_variants}}}

impl CuratedCall {{
    /// Parses and validates `arguments` for the tool `name`; `None` if no generated tool has that name.
    pub fn parse(name: &str, arguments: serde_json::Value) -> Option<Result<CuratedCall, ToolError>> {{
        Some(match name {{
{parse_arms}            _ => return None,
        }})
    }}

    /// Embeds what the tool embeds; no database needed.
    pub async fn admit(self, context: &ToolContext<'_>) -> Result<ReadyCall, ToolError> {{
        Ok(match self {{
{admit_arms}        }})
    }}
}}

/// A call ready to run: arguments valid, texts embedded. A clone runs
/// the call again after a transient fault, without embedding again.
#[derive(Debug, Clone)]
pub enum ReadyCall {{
{ready_variants}}}

impl ReadyCall {{
    pub async fn run(self, call: &Call<'_>, context: &ToolContext<'_>) -> Result<ToolOutput, ToolError> {{
        match self {{
{run_arms}        }}
    }}
}}
"
    )
}
