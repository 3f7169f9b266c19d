//! Turns the query catalogue (from `sqlmcp-codegen`) into typed MCP tools:
//! for every query, an argument struct (serde + schemars, unknown fields
//! rejected), its validation, an output schema derived from the result
//! columns, and the call into the cornucopia-generated function.
//!
//! Stages: load the catalogue → generate one module per tool → write each to
//! `OUT_DIR/tools/<name>.rs` and `OUT_DIR/curated_tools.rs` (only when the
//! content changed).

#[path = "codegen/build/catalogue.rs"]
#[allow(dead_code)]
mod catalogue;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use catalogue::{Catalogue, Column, Param, Query, ValueKind};

fn main() {
    let path = std::env::var("DEP_SQLMCP_CODEGEN_CATALOGUE")
        .expect("sqlmcp-codegen hands over the catalogue path");
    println!("cargo::rerun-if-changed={path}");
    println!("cargo::rerun-if-changed=codegen/build/catalogue.rs");
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
        write_if_changed(
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
    index.push_str(&registry(&catalogue.queries));
    write_if_changed(&out_dir.join("curated_tools.rs"), &index);
}

fn write_if_changed(path: &Path, content: &str) {
    if std::fs::read_to_string(path).is_ok_and(|old| old == content) {
        return;
    }
    std::fs::write(path, content)
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
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
    match catalogue::array_element(&param.pg_type) {
        Some(_) => ValueKind::Other,
        None => catalogue::type_mapping(&param.pg_type).map_or(ValueKind::Other, |m| m.kind),
    }
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
    let name = &query.name;
    let row_struct = catalogue::struct_name(name);
    let mut out = String::new();
    writeln!(out, "// {}", catalogue::GENERATED_NOTICE).unwrap();
    writeln!(out, "// Tool `{name}`, from {}.\n", query.file).unwrap();
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

    // The argument struct.
    writeln!(out, "/// Arguments of the `{name}` tool.").unwrap();
    writeln!(
        out,
        "#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]"
    )
    .unwrap();
    writeln!(out, "#[serde(deny_unknown_fields)]").unwrap();
    writeln!(out, "pub struct Args {{").unwrap();
    for embed in &query.embeds {
        out.push_str(&doc_lines(&embed.description, "    "));
        writeln!(out, "    #[schemars(length(min = 1))]").unwrap();
        writeln!(out, "    pub {}: String,", embed.text_arg).unwrap();
    }
    let mut defaults = String::new();
    for param in visible_params(query) {
        let rust = rust_type(&param.pg_type);
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
        if kind(param) != ValueKind::Decimal && (param.minimum.is_some() || param.maximum.is_some())
        {
            let bounds: Vec<String> = [("min", &param.minimum), ("max", &param.maximum)]
                .into_iter()
                .filter_map(|(key, bound)| {
                    bound.as_ref().map(|b| {
                        format!(
                            "{key} = {}",
                            literal(kind(param), &serde_json::Value::Number(b.clone()), &rust)
                        )
                    })
                })
                .collect();
            writeln!(out, "    #[schemars(range({}))]", bounds.join(", ")).unwrap();
        }
        if let Some(allowed) = &param.allowed {
            writeln!(out, "    #[schemars(extend(\"enum\" = {allowed:?}))]").unwrap();
        }
        writeln!(out, "    pub {}: {field_type},", param.name).unwrap();
    }
    writeln!(out, "}}\n").unwrap();
    out.push_str(&defaults);

    // Validation of what the types alone do not say.
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
            embed.text_arg, embed.text_arg
        )
        .unwrap();
    }
    for param in visible_params(query) {
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
            continue;
        }
        let optional = param.default.is_none() && param.nullable;
        if optional {
            writeln!(out, "        if let Some(value) = &self.{} {{", param.name).unwrap();
        } else {
            writeln!(
                out,
                "        {{\n            let value = &self.{};",
                param.name
            )
            .unwrap();
        }
        for check in checks {
            writeln!(out, "            {check}").unwrap();
        }
        writeln!(out, "        }}").unwrap();
    }
    writeln!(out, "        Ok(())\n    }}\n}}\n").unwrap();

    // Embedding happens before the call takes a database connection.
    writeln!(
        out,
        "/// The arguments, with every `--@ embed` text turned into its vector."
    )
    .unwrap();
    writeln!(
        out,
        "#[derive(Debug)]\npub struct Ready {{\n    args: Args,"
    )
    .unwrap();
    for embed in &query.embeds {
        writeln!(out, "    {}: Vec<f32>,", embed.vector_param).unwrap();
    }
    if !query.embeds.is_empty() {
        writeln!(out, "    embedding_model: String,").unwrap();
    }
    writeln!(out, "}}\n").unwrap();
    writeln!(
        out,
        "/// Embeds the text arguments (no database needed).\n\
         pub async fn prepare(args: Args, context: &ToolContext<'_>) -> Result<Ready, ToolError> {{"
    )
    .unwrap();
    let mut fields = vec!["args".to_owned()];
    if !query.embeds.is_empty() {
        writeln!(out, "    let embedder = context.embedder()?;").unwrap();
        for embed in &query.embeds {
            let dimensions = match embed.dimensions {
                Some(n) => format!("Some({n})"),
                None => "None".to_owned(),
            };
            writeln!(
                out,
                "    let {} = embed(embedder, NAME, {:?}, &args.{}, {dimensions}).await?;",
                embed.vector_param, embed.text_arg, embed.text_arg
            )
            .unwrap();
            fields.push(embed.vector_param.clone());
        }
        writeln!(
            out,
            "    let embedding_model = embedder.model_id().to_owned();"
        )
        .unwrap();
        fields.push("embedding_model".to_owned());
    } else {
        writeln!(out, "    let _ = context;").unwrap();
    }
    writeln!(out, "    Ok(Ready {{ {} }})\n}}\n", fields.join(", ")).unwrap();

    // The call.
    writeln!(out, "/// Runs the query with validated arguments.").unwrap();
    writeln!(
        out,
        "pub async fn run(client: &impl sqlmcp_codegen::client::GenericClient, ready: Ready, context: &ToolContext<'_>) -> Result<ToolOutput, ToolError> {{"
    )
    .unwrap();
    writeln!(out, "    let Ready {{ {} }} = ready;", fields.join(", ")).unwrap();
    let mut extra = "None".to_owned();
    for embed in &query.embeds {
        if let Some(model) = &embed.model_param {
            writeln!(out, "    let {model} = embedding_model.clone();").unwrap();
        }
        extra = "Some((\"embedding_model\", &embedding_model))".to_owned();
    }
    writeln!(out, "    let statement = query::{name}();").unwrap();
    let bound: Vec<String> = query
        .params
        .iter()
        .map(|param| {
            let hidden = !visible_params(query).any(|p| p.name == param.name);
            let value = if hidden {
                param.name.clone()
            } else {
                format!("args.{}", param.name)
            };
            // cornucopia takes a nullable parameter as an Option
            if param.nullable && (hidden || param.default.is_some()) {
                format!("{}: Some({value})", param.name)
            } else if hidden {
                value
            } else {
                format!("{}: {value}", param.name)
            }
        })
        .collect();
    let call = if bound.is_empty() {
        "statement.bind(client)".to_owned()
    } else {
        format!(
            "sqlmcp_codegen::client::Params::params(&statement, client, &query::{row_struct}Params {{ {} }})",
            bound.join(", ")
        )
    };
    let row = match query.columns.as_slice() {
        [single] => format!(
            "|value| Ok::<_, serde_json::Error>(serde_json::json!({{ {:?}: value }}))",
            single.name
        ),
        _ => "serde_json::to_value".to_owned(),
    };
    writeln!(
        out,
        "    let rows = {call}.iter().await.map_err(ToolError::from_database)?;"
    )
    .unwrap();
    writeln!(
        out,
        "    let output = collect_rows(rows, {row}, context.max_rows, {extra}).await?;"
    )
    .unwrap();
    for embed in &query.embeds {
        if let Some(table) = &embed.vectors {
            writeln!(
                out,
                "    if output.is_empty() {{\n        \
                 check_stored_vectors(client, {:?}, {table:?}, &embedding_model).await?;\n    }}",
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

/// The list of generated tools and the dispatch by name.
fn registry(queries: &[Query]) -> String {
    let mut out = String::from(
        "\n/// Every generated tool, in name order.\npub const DEFINITIONS: &[CuratedTool] = &[\n",
    );
    let mut sorted: Vec<&Query> = queries.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for query in &sorted {
        let name = &query.name;
        writeln!(
            out,
            "    CuratedTool {{ name: {name}::NAME, title: {name}::TITLE, description: {name}::DESCRIPTION, \
             source: {name}::SOURCE, output_schema: {name}::OUTPUT_SCHEMA, input_schema: input_schema::<{name}::Args> }},"
        )
        .unwrap();
    }
    out.push_str("];\n\n");
    out.push_str("/// A call whose arguments are parsed and validated, ready to run.\n#[derive(Debug)]\npub enum CuratedCall {\n");
    for query in &sorted {
        writeln!(
            out,
            "    {}({}::Args),",
            catalogue::struct_name(&query.name),
            query.name
        )
        .unwrap();
    }
    out.push_str("}\n\nimpl CuratedCall {\n");
    out.push_str("    /// Parses and validates `arguments` for the tool `name`; `None` if no generated tool has that name.\n");
    out.push_str("    pub fn parse(name: &str, arguments: serde_json::Value) -> Option<Result<CuratedCall, ToolError>> {\n        Some(match name {\n");
    for query in &sorted {
        let name = &query.name;
        writeln!(
            out,
            "            {name}::NAME => parse_arguments::<{name}::Args>(arguments).and_then(|args| {{ args.validate()?; Ok(CuratedCall::{}(args)) }}),",
            catalogue::struct_name(name)
        )
        .unwrap();
    }
    out.push_str("            _ => return None,\n        })\n    }\n\n");
    out.push_str("    /// Embeds what the tool embeds; no database needed.\n");
    out.push_str("    pub async fn prepare(self, context: &ToolContext<'_>) -> Result<ReadyCall, ToolError> {\n        Ok(match self {\n");
    for query in &sorted {
        let variant = catalogue::struct_name(&query.name);
        writeln!(
            out,
            "            CuratedCall::{variant}(args) => ReadyCall::{variant}({}::prepare(args, context).await?),",
            query.name
        )
        .unwrap();
    }
    out.push_str("        })\n    }\n}\n\n");
    out.push_str("/// A call ready to run: arguments valid, texts embedded.\n#[derive(Debug)]\npub enum ReadyCall {\n");
    for query in &sorted {
        writeln!(
            out,
            "    {}({}::Ready),",
            catalogue::struct_name(&query.name),
            query.name
        )
        .unwrap();
    }
    out.push_str("}\n\nimpl ReadyCall {\n");
    out.push_str("    pub async fn run(self, client: &impl sqlmcp_codegen::client::GenericClient, context: &ToolContext<'_>) -> Result<ToolOutput, ToolError> {\n        match self {\n");
    for query in &sorted {
        writeln!(
            out,
            "            ReadyCall::{}(ready) => {}::run(client, ready, context).await,",
            catalogue::struct_name(&query.name),
            query.name
        )
        .unwrap();
    }
    out.push_str("        }\n    }\n}\n");
    out
}
