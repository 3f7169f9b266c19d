//! Live generation against a scratch database.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tokio_postgres::Statement;
use tokio_postgres::error::ErrorPosition;

use crate::{Paths, input_hashes, relative, sql_files};
use sqlmcp_catalogue::query_file::{self, Declared, QueryFile};
use sqlmcp_catalogue::{
    self as catalogue, Catalogue, Column, CompletionSource, Embed, GENERATED_NOTICE, Param, Query,
    ResourceTemplate, TemplateVariable, ValueKind, write_if_changed,
};

pub fn generate(url: &str, paths: &Paths) -> Result<(), String> {
    let admin_config: tokio_postgres::Config = url
        .parse()
        .map_err(|err| format!("{}: not a PostgreSQL URL: {err}", crate::URL_VAR))?;
    // cornucopia drives its queries with a blocking executor on this thread,
    // so the connections run on worker threads of their own.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|err| format!("cannot start a runtime: {err}"))?;
    let admin = runtime.block_on(connect(&runtime, &admin_config))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let scratch = format!("sqlmcp_codegen_{}_{nanos}", std::process::id());
    runtime
        .block_on(admin.batch_execute(&format!("CREATE DATABASE {scratch}")))
        .map_err(|err| {
            format!(
                "cannot create the scratch database {scratch}: {}",
                pg_message(&err)
            )
        })?;

    let mut scratch_config = admin_config.clone();
    scratch_config.dbname(&scratch);
    // cornucopia panics on some inputs; the scratch database is dropped then
    // too, and the panic becomes an error naming what failed.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        generate_in(&runtime, &scratch_config, paths)
    }))
    .unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("no message");
        Err(format!(
            "generating the query code failed inside cornucopia: {message}"
        ))
    });

    if let Err(err) = runtime
        .block_on(admin.batch_execute(&format!("DROP DATABASE IF EXISTS {scratch} WITH (FORCE)")))
    {
        println!(
            "cargo::warning=cannot drop the scratch database {scratch}: {}",
            pg_message(&err)
        );
    }
    outcome
}

async fn connect(
    runtime: &tokio::runtime::Runtime,
    config: &tokio_postgres::Config,
) -> Result<tokio_postgres::Client, String> {
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|err| format!("{}: cannot connect: {err}", crate::URL_VAR))?;
    runtime.spawn(connection);
    Ok(client)
}

fn generate_in(
    runtime: &tokio::runtime::Runtime,
    config: &tokio_postgres::Config,
    paths: &Paths,
) -> Result<(), String> {
    let mut client = runtime.block_on(connect(runtime, config))?;
    migrate(runtime, &mut client, paths)?;
    let inputs = input_hashes(paths)?;
    let mut queries: Vec<Query> = Vec::new();
    for file in sql_files(&paths.queries)? {
        let query = read_query(runtime, &client, paths, &file)?;
        check_template_is_unique(&query, &queries)?;
        queries.push(query);
    }
    if queries.is_empty() {
        return Err("queries/ holds no .sql file; there would be no tools".to_owned());
    }
    let prompts = crate::prompts::read(paths, &queries)?;
    let prompt_sources = prompts
        .iter()
        .flat_map(|prompt| &prompt.arguments)
        .filter_map(|argument| argument.completion.as_ref());
    for source in prompt_sources {
        check_completion_source(runtime, &client, source)?;
    }
    let tables = retail_tables(runtime, &client)?;
    let code = run_cornucopia(&client, paths)?;
    let catalogue = Catalogue {
        generated: GENERATED_NOTICE.to_owned(),
        inputs,
        queries,
        prompts,
        tables,
    };
    let json = serde_json::to_string_pretty(&catalogue).expect("the catalogue serialises") + "\n";
    std::fs::create_dir_all(&paths.snapshot)
        .map_err(|err| format!("cannot create codegen/snapshot/: {err}"))?;
    write_if_changed(&paths.snapshot.join("cornucopia.rs"), &code)?;
    write_if_changed(&paths.snapshot.join("catalogue.json"), &json)
}

/// Applies `migrations/` to the scratch database.
fn migrate(
    runtime: &tokio::runtime::Runtime,
    client: &mut tokio_postgres::Client,
    paths: &Paths,
) -> Result<(), String> {
    let migrations = refinery::load_sql_migrations(&paths.migrations)
        .map_err(|err| format!("cannot read migrations/: {err}"))?;
    runtime
        .block_on(refinery::Runner::new(&migrations).run_async(client))
        .map_err(|err| {
            let cause = std::error::Error::source(&err)
                .and_then(|s| s.downcast_ref::<tokio_postgres::Error>())
                .map(pg_message)
                .unwrap_or_default();
            format!("migrations/ do not apply to a fresh database: {err} {cause}\n(run `sqlmcp migrate` against a scratch database for details)")
        })?;
    Ok(())
}

/// The tables and views of the `retail` schema (`retail.orders`), served
/// as resources: what `get_multiple_table_schemas` describes.
fn retail_tables(
    runtime: &tokio::runtime::Runtime,
    client: &tokio_postgres::Client,
) -> Result<Vec<String>, String> {
    let rows = runtime
        .block_on(client.query(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'retail' AND c.relkind IN ('r', 'p', 'v', 'm') ORDER BY c.relname",
            &[],
        ))
        .map_err(|err| format!("cannot list the retail tables: {}", pg_message(&err)))?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// No two resource templates read the same URIs.
fn check_template_is_unique(query: &Query, earlier: &[Query]) -> Result<(), String> {
    let Some(resource) = &query.resource else {
        return Ok(());
    };
    let shape = |r: &ResourceTemplate| {
        catalogue::uri_template::UriTemplate::parse(&r.uri_template)
            .map(|t| t.shape())
            .unwrap_or_default()
    };
    for other in earlier {
        if let Some(theirs) = &other.resource
            && shape(theirs) == shape(resource)
        {
            return Err(format!(
                "{}: line {}: `{}` reads the same URIs as `{}` of {} (line {}); change one of them",
                query.file,
                resource.line,
                resource.uri_template,
                theirs.uri_template,
                other.file,
                theirs.line
            ));
        }
    }
    Ok(())
}

/// Checks where a completion's values come from against the schema of
/// `migrations/`: a query must prepare, take exactly one parameter, of type
/// text (`:prefix`), and return exactly one column, of a text type. Errors
/// name the declaring file and line. Resource templates' variables and
/// prompts' arguments are checked alike.
pub fn check_completion_source(
    runtime: &tokio::runtime::Runtime,
    client: &tokio_postgres::Client,
    source: &CompletionSource,
) -> Result<(), String> {
    let CompletionSource::Query { sql, file, line } = source else {
        return Ok(());
    };
    let fail = |message: String| Err(format!("{file}: line {line}: {message}"));
    let statement = match runtime.block_on(client.prepare(sql)) {
        Ok(statement) => statement,
        Err(err) => {
            let hint = err
                .as_db_error()
                .and_then(|db| db.hint())
                .map(|hint| format!("\n  hint: {hint}"))
                .unwrap_or_default();
            return fail(format!(
                "the completion query does not type-check against the schema of \
                 migrations/:\n  PostgreSQL: {}{hint}",
                pg_message(&err)
            ));
        }
    };
    match statement.params() {
        [prefix] if prefix.name() == "text" => {}
        [prefix] => {
            return fail(format!(
                "in the completion query :prefix has type {}; it is text (the typed characters): \
                 compare it with text (`sku LIKE :prefix || '%'`)",
                prefix.name()
            ));
        }
        params => {
            return fail(format!(
                "a completion query takes exactly one parameter, :prefix; this one takes {}",
                params.len()
            ));
        }
    }
    match statement.columns() {
        [column] if TEXT_TYPES.contains(&column.type_().name()) => Ok(()),
        [column] => fail(format!(
            "the completion query returns `{}` of type {}; it returns text (cast it: `{}::text`)",
            column.name(),
            column.type_().name(),
            column.name()
        )),
        columns => fail(format!(
            "a completion query returns exactly one column, the values offered; this one returns {}",
            columns.len()
        )),
    }
}

/// The types a completion value may have.
const TEXT_TYPES: [&str; 4] = ["text", "varchar", "bpchar", "name"];

/// Reads one `.sql` file, checks it against the schema and describes it.
fn read_query(
    runtime: &tokio::runtime::Runtime,
    client: &tokio_postgres::Client,
    paths: &Paths,
    file: &Path,
) -> Result<Query, String> {
    let rel = relative(paths, file);
    let text = std::fs::read_to_string(file).map_err(|err| format!("cannot read {rel}: {err}"))?;
    let parsed = query_file::parse(&text).map_err(|err| format!("{rel}: {err}"))?;
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    check_query_name(&rel, &parsed.name, stem)?;
    let statement = runtime
        .block_on(client.prepare(&parsed.numbered_sql))
        .map_err(|err| describe_prepare_error(&rel, &text, &parsed, &err))?;
    for embed in &parsed.embeds {
        if let Some(table) = &embed.vectors {
            runtime
                .block_on(client.prepare(&catalogue::vectors_check_sql(table)))
                .map_err(|err| {
                    format!(
                        "{rel}: line {}: vectors={table}: {}; it must name a table with a text column model_id",
                        embed.line,
                        pg_message(&err)
                    )
                })?;
        }
    }
    let query = describe_query(&rel, parsed, &statement)?;
    let sources = query
        .resource
        .iter()
        .flat_map(|r| &r.variables)
        .filter_map(|v| v.completion.as_ref());
    for source in sources {
        check_completion_source(runtime, client, source)?;
    }
    Ok(query)
}

/// A query's name becomes a tool's and a module's name, and its file's.
fn check_query_name(rel: &str, name: &str, stem: &str) -> Result<(), String> {
    if catalogue::BUILT_IN_TOOLS.contains(&name) {
        return Err(format!(
            "{rel}: line 1: `{name}` is the name of a built-in tool; name the query (and its \
             file) differently"
        ));
    }
    if catalogue::is_rust_keyword(name) {
        return Err(format!(
            "{rel}: line 1: the query name `{name}` is a Rust keyword, and the generated code \
             names a module after the query; choose another name (e.g. `{name}_query`) for the \
             query and its file"
        ));
    }
    if name != stem {
        return Err(format!(
            "{rel}: the query is named `{name}`; name the file {name}.sql (one tool per file, named alike)"
        ));
    }
    Ok(())
}

/// cornucopia's query functions for `queries/`, as one file.
fn run_cornucopia(client: &tokio_postgres::Client, paths: &Paths) -> Result<String, String> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("cornucopia");
    let _ = std::fs::remove_dir_all(&out_dir);
    let cornucopia_config = cornucopia::config::Config::builder()
        .queries(&paths.queries)
        .destination(&out_dir)
        .add_derive_trait("serde::Serialize")
        .build();
    cornucopia::gen_live(client, cornucopia_config).map_err(|err| {
        format!(
            "cornucopia rejected queries/:\n{:?}",
            miette::Report::new(err)
        )
    })?;
    let code = inline_module(&out_dir.join("src"), &out_dir.join("src/lib.rs"))?;
    Ok(format!(
        "// {GENERATED_NOTICE}\n// Query functions generated by cornucopia.\n\n{code}"
    ))
}

/// Replaces `mod x;` by `mod x { <x.rs> }`, recursively, so that the whole
/// generated crate becomes one file to `include!` at a crate root.
fn inline_module(module_dir: &Path, file: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|err| format!("cannot read {}: {err}", file.display()))?;
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line.starts_with("// This file was generated with `cornucopia`") {
            continue;
        }
        let trimmed = line.trim();
        let declaration = trimmed
            .strip_suffix(';')
            .and_then(|d| d.rsplit_once("mod "))
            .filter(|(visibility, name)| {
                ["", "pub ", "pub(crate) "].contains(visibility)
                    && query_file::is_identifier(name.trim_end_matches('_'))
            });
        match declaration {
            Some((visibility, name)) => {
                let child_dir = module_dir.join(name);
                let child = [
                    module_dir.join(format!("{name}.rs")),
                    child_dir.join("mod.rs"),
                ]
                .into_iter()
                .find(|path| path.exists())
                .ok_or_else(|| format!("cornucopia output has no file for module {name}"))?;
                out.push_str(&format!("{visibility}mod {name} {{\n"));
                out.push_str(&inline_module(&child_dir, &child)?);
                out.push_str("}\n");
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    Ok(out)
}

fn pg_message(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => err.to_string(),
    }
}

fn describe_prepare_error(
    rel: &str,
    text: &str,
    parsed: &QueryFile,
    err: &tokio_postgres::Error,
) -> String {
    let mut message = format!(
        "{rel}: query `{}` does not type-check against the schema of migrations/:",
        parsed.name
    );
    if let Some(db) = err.as_db_error() {
        if let Some(ErrorPosition::Original(position)) = db.position() {
            let before: String = parsed
                .numbered_sql
                .chars()
                .take(*position as usize - 1)
                .collect();
            let line = parsed.sql_line + before.matches('\n').count();
            let source = text.lines().nth(line - 1).unwrap_or_default().trim();
            message.push_str(&format!("\n  line {line}: {source}"));
        }
        message.push_str(&format!("\n  PostgreSQL: {}", pg_message(err)));
        if let Some(hint) = db.hint() {
            message.push_str(&format!("\n  hint: {hint}"));
        }
    } else {
        message.push_str(&format!("\n  {err}"));
    }
    message
}

/// A shape the generator refuses: the line of the `.sql` file and why.
type Refusal = (usize, String);

/// Combines the file's annotations with the server's view of the statement.
fn describe_query(rel: &str, parsed: QueryFile, statement: &Statement) -> Result<Query, String> {
    let described = || -> Result<Query, Refusal> {
        check_nullable_lists(&parsed, statement)?;
        let embeds = describe_embeds(&parsed, statement)?;
        check_param_directives(&parsed, &embeds)?;
        let params = describe_params(&parsed, statement)?;
        let columns = describe_columns(&parsed, statement)?;
        let (title, description) = describe_tool(&parsed)?;
        let resource = describe_resource(rel, &parsed, &params, &embeds)?;
        Ok(Query {
            name: parsed.name.clone(),
            file: rel.to_owned(),
            title,
            description,
            params,
            embeds,
            columns,
            tool: parsed.resource_only.is_none(),
            resource,
        })
    };
    described().map_err(|(line, message)| format!("{rel}: line {line}: {message}"))
}

/// The `?` lists of the `--!` line name parameters and columns that exist.
fn check_nullable_lists(parsed: &QueryFile, statement: &Statement) -> Result<(), Refusal> {
    let name = &parsed.name;
    if let Some(listed) = parsed
        .nullable_params
        .iter()
        .find(|listed| !parsed.bind_params.contains(listed))
    {
        return Err((
            1,
            format!("`{listed}?` names no parameter of query `{name}`"),
        ));
    }
    let column_names: Vec<&str> = statement.columns().iter().map(|c| c.name()).collect();
    if let Some(listed) = parsed
        .nullable_columns
        .iter()
        .find(|listed| !column_names.contains(&listed.as_str()))
    {
        return Err((
            1,
            format!("`{listed}?` names no result column of query `{name}`"),
        ));
    }
    Ok(())
}

/// The `--@ embed` lines, checked against the parameters they fill.
fn describe_embeds(parsed: &QueryFile, statement: &Statement) -> Result<Vec<Embed>, Refusal> {
    let name = &parsed.name;
    let mut embeds = Vec::new();
    for embed in &parsed.embeds {
        let fail = |message: String| (embed.line, message);
        let vector_type = param_type(parsed, statement, &embed.vector_param).ok_or_else(|| {
            fail(format!(
                "`{}` is not a parameter of query `{name}`",
                embed.vector_param
            ))
        })?;
        if vector_type != "_float4" {
            return Err(fail(format!(
                "`{}` has type {vector_type}; an embedded vector is a real[] parameter \
                 (write `:{}::real[]::vector` in the SQL)",
                embed.vector_param, embed.vector_param
            )));
        }
        if parsed.bind_params.contains(&embed.text_arg) {
            return Err(fail(format!(
                "`{}` is already a parameter; name the text argument differently",
                embed.text_arg
            )));
        }
        if let Some(model) = &embed.model_param
            && param_type(parsed, statement, model) != Some("text")
        {
            return Err(fail(format!(
                "model={model}: `:{model}` must be a text parameter of the query"
            )));
        }
        if embed.vectors.is_some() && embed.model_param.is_none() {
            return Err(fail(
                "vectors=… needs model=<param>: it checks the stored vectors of the caller's model"
                    .to_owned(),
            ));
        }
        embeds.push(embed.embed.clone());
    }
    Ok(embeds)
}

/// Every `--@ param` line describes a parameter the caller passes.
fn check_param_directives(parsed: &QueryFile, embeds: &[Embed]) -> Result<(), Refusal> {
    let filled = |param: &str| {
        embeds
            .iter()
            .any(|e| e.vector_param == param || e.model_param.as_deref() == Some(param))
    };
    for directive in &parsed.params {
        if !parsed.bind_params.contains(&directive.name) {
            return Err((
                directive.line,
                format!(
                    "`--@ param {}`: query `{}` has no parameter :{}",
                    directive.name, parsed.name, directive.name
                ),
            ));
        }
        if filled(&directive.name) {
            return Err((
                directive.line,
                format!(
                    "`{}` is filled by `--@ embed`; it takes no `--@ param`",
                    directive.name
                ),
            ));
        }
    }
    Ok(())
}

/// The bind parameters, in cornucopia's order, with their types and
/// directives.
fn describe_params(parsed: &QueryFile, statement: &Statement) -> Result<Vec<Param>, Refusal> {
    let name = &parsed.name;
    let mut params = Vec::new();
    for (index, param_name) in parsed.bind_params.iter().enumerate() {
        let pg_type = statement.params()[index].name().to_owned();
        let line = parsed.bind_param_lines[index];
        if catalogue::UNUSABLE_NAMES.contains(&param_name.as_str()) {
            return Err((
                line,
                format!(
                    "parameter :{param_name} of query `{name}` has a name Rust cannot use for a \
                     field; rename it (e.g. :{param_name}_value)"
                ),
            ));
        }
        if catalogue::rust_type(&pg_type).is_none() {
            return Err((
                line,
                format!(
                    "parameter :{param_name} of query `{name}` has type {pg_type}, which sqlmcp cannot \
                     take from JSON; cast it in the SQL (e.g. `:{param_name}::text::{pg_type}`)"
                ),
            ));
        }
        let directive = parsed.params.iter().find(|d| &d.name == param_name);
        let mut param = Param {
            name: param_name.clone(),
            pg_type,
            nullable: parsed.nullable_params.contains(param_name),
            description: directive.map(|d| d.description.clone()),
            default: None,
            minimum: None,
            maximum: None,
            allowed: None,
        };
        if let Some(directive) = directive {
            check_directive(&mut param, directive).map_err(|message| (directive.line, message))?;
        }
        params.push(param);
    }
    Ok(params)
}

/// The result columns: at least one, each with a snake_case name of its own
/// and a mapped type.
fn describe_columns(parsed: &QueryFile, statement: &Statement) -> Result<Vec<Column>, Refusal> {
    let name = &parsed.name;
    let fail = |message: String| (parsed.sql_line, message);
    if statement.columns().is_empty() {
        return Err(fail(format!(
            "query `{name}` returns no columns, so its tool would have nothing to answer; \
             select the values the tool should return (`SELECT … AS name`)"
        )));
    }
    let mut columns: Vec<Column> = Vec::new();
    for column in statement.columns() {
        let column_name = column.name();
        let pg_type = column.type_().name();
        if !query_file::is_identifier(column_name) {
            return Err(fail(format!(
                "result column `{column_name}` of query `{name}` is not a snake_case name; alias it (`AS total_revenue`)"
            )));
        }
        if catalogue::UNUSABLE_NAMES.contains(&column_name) {
            return Err(fail(format!(
                "result column `{column_name}` of query `{name}` has a name Rust cannot use \
                 for a field; alias it (`AS {column_name}_value`)"
            )));
        }
        if columns.iter().any(|c| c.name == column_name) {
            return Err(fail(format!(
                "query `{name}` returns two columns named `{column_name}`"
            )));
        }
        if catalogue::rust_type(pg_type).is_none() {
            return Err(fail(format!(
                "result column `{column_name}` of query `{name}` has type {pg_type}, which sqlmcp cannot write as JSON; cast it (e.g. `::text`)"
            )));
        }
        columns.push(Column {
            name: column_name.to_owned(),
            pg_type: pg_type.to_owned(),
            nullable: parsed.nullable_columns.iter().any(|c| c == column_name),
        });
    }
    Ok(columns)
}

/// The tool's title (`--@ title`, or the name in words) and description
/// (the `---` lines, paragraphs kept).
fn describe_tool(parsed: &QueryFile) -> Result<(String, String), Refusal> {
    if parsed.doc.iter().all(|line| line.is_empty()) {
        return Err((
            1,
            format!(
                "query `{}` has no `---` description; it is what a model reads to choose the tool",
                parsed.name
            ),
        ));
    }
    let description = parsed
        .doc
        .split(|line| line.is_empty())
        .map(|paragraph| paragraph.join(" "))
        .filter(|paragraph| !paragraph.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n");
    let title = parsed
        .title
        .clone()
        .unwrap_or_else(|| catalogue::capitalised(&parsed.name.replace('_', " ")));
    Ok((title, description))
}

/// The `--@ resource` template: each variable is an argument of the query
/// that one value can fill, and every argument without a variable may be
/// left out. A variable completes from its `--@ complete`, or else from its
/// parameter's `enum=`.
fn describe_resource(
    rel: &str,
    parsed: &QueryFile,
    params: &[Param],
    embeds: &[Embed],
) -> Result<Option<ResourceTemplate>, Refusal> {
    let Some(directive) = &parsed.resource else {
        return Ok(None);
    };
    let name = &parsed.name;
    let template = &directive.template;
    let fail = |message: String| (directive.line, message);
    let filled = |param: &str| {
        embeds
            .iter()
            .any(|e| e.vector_param == param || e.model_param.as_deref() == Some(param))
    };
    let arguments: Vec<&str> = embeds
        .iter()
        .map(|e| e.text_arg.as_str())
        .chain(
            params
                .iter()
                .map(|p| p.name.as_str())
                .filter(|p| !filled(p)),
        )
        .collect();
    let mut variables = Vec::new();
    for variable in template.variables() {
        let param = params.iter().find(|p| p.name == variable);
        let pg_type = match param {
            _ if embeds.iter().any(|e| e.text_arg == variable) => "text",
            Some(param) if !filled(variable) => param.pg_type.as_str(),
            _ => {
                return Err(fail(format!(
                    "`{{{variable}}}` in `{template}` is not an argument of query `{name}`; its \
                     arguments: {}",
                    arguments.join(", ")
                )));
            }
        };
        if catalogue::array_element(pg_type).is_some() {
            return Err(fail(format!(
                "`{{{variable}}}` in `{template}` would fill :{variable}, of type {pg_type}; a URI \
                 variable holds one value, not an array"
            )));
        }
        let declared = parsed.completions.iter().find(|c| c.name == variable);
        let completion = match declared {
            Some(complete) => Some(match &complete.declared {
                Declared::Values(values) => CompletionSource::Values(values.clone()),
                Declared::Query(sql) => CompletionSource::query(sql, rel, complete.line)
                    .map_err(|err| (err.line, err.message))?,
            }),
            None => param
                .and_then(|p| p.allowed.clone())
                .map(CompletionSource::Values),
        };
        variables.push(TemplateVariable {
            name: variable.to_owned(),
            pg_type: pg_type.to_owned(),
            completion,
        });
    }
    for argument in &arguments {
        let optional = params
            .iter()
            .find(|p| p.name == *argument)
            .is_some_and(|p| p.nullable || p.default.is_some());
        if !optional && !template.variables().any(|v| v == *argument) {
            return Err(fail(format!(
                "`{template}` has no variable for :{argument}, which query `{name}` needs (it has \
                 neither a default nor `?`); add `{{{argument}}}` to the template, or a default"
            )));
        }
    }
    Ok(Some(ResourceTemplate {
        uri_template: template.as_str().to_owned(),
        line: directive.line,
        description: directive.description.clone(),
        variables,
    }))
}

fn param_type<'a>(parsed: &QueryFile, statement: &'a Statement, name: &str) -> Option<&'a str> {
    let index = parsed.bind_params.iter().position(|p| p == name)?;
    Some(statement.params()[index].name())
}

/// Checks `default`, `min`, `max` and `enum` against the parameter's type,
/// and keeps them in `param`. A new `--@ param` key is checked here.
fn check_directive(
    param: &mut Param,
    directive: &query_file::ParamDirective,
) -> Result<(), String> {
    let kind = catalogue::value_kind(&param.pg_type);
    check_bounds(param, kind, directive)?;
    if let Some(allowed) = &directive.allowed {
        param.allowed = Some(check_allowed(param, kind, allowed)?);
    }
    if let Some(default) = &directive.default {
        check_default(param, kind, default)?;
        param.default = Some(default.clone());
    }
    Ok(())
}

/// A `min`, `max` or numeric `default` of a parameter of this kind.
fn directive_number(
    param: &Param,
    kind: ValueKind,
    what: &str,
    value: &Value,
) -> Result<serde_json::Number, String> {
    match value {
        Value::Number(n) if kind != ValueKind::Integer || n.is_i64() => Ok(n.clone()),
        _ => Err(format!(
            "param {}: {what} must be {} for a {} parameter",
            param.name,
            if kind == ValueKind::Integer {
                "an integer"
            } else {
                "a number"
            },
            param.pg_type
        )),
    }
}

/// `min` and `max`: numbers, for numeric parameters only.
fn check_bounds(
    param: &mut Param,
    kind: ValueKind,
    directive: &query_file::ParamDirective,
) -> Result<(), String> {
    let numeric = matches!(
        kind,
        ValueKind::Integer | ValueKind::Float | ValueKind::Decimal
    );
    for (what, value) in [("min", &directive.minimum), ("max", &directive.maximum)] {
        let Some(value) = value else { continue };
        if !numeric {
            return Err(format!(
                "param {}: {what} applies to numeric parameters, not {}",
                param.name, param.pg_type
            ));
        }
        let number = directive_number(param, kind, what, value)?;
        match what {
            "min" => param.minimum = Some(number),
            _ => param.maximum = Some(number),
        }
    }
    Ok(())
}

/// `enum`: a non-empty list of strings, for text parameters only.
fn check_allowed(param: &Param, kind: ValueKind, allowed: &Value) -> Result<Vec<String>, String> {
    let name = &param.name;
    let values = allowed
        .as_array()
        .filter(|values| !values.is_empty())
        .and_then(|values| values.iter().map(|v| v.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>())
        .ok_or_else(|| format!("param {name}: enum must be a non-empty list of strings, like enum=[\"revenue\",\"units\"]"))?;
    if kind != ValueKind::Text {
        return Err(format!(
            "param {name}: enum applies to text parameters, not {}",
            param.pg_type
        ));
    }
    Ok(values)
}

/// `default`: of the parameter's type, within its bounds and its enum.
fn check_default(param: &Param, kind: ValueKind, default: &Value) -> Result<(), String> {
    let name = &param.name;
    let fits = match (kind, default) {
        (ValueKind::Integer | ValueKind::Float | ValueKind::Decimal, Value::Number(_)) => {
            directive_number(param, kind, "default", default)?;
            true
        }
        (ValueKind::Text, Value::String(_)) | (ValueKind::Boolean, Value::Bool(_)) => true,
        _ => false,
    };
    if !fits {
        return Err(format!(
            "param {name}: default {default} does not fit type {} (defaults are supported for text, numbers and booleans)",
            param.pg_type
        ));
    }
    let as_f64 = |n: &Option<serde_json::Number>| n.as_ref().and_then(serde_json::Number::as_f64);
    if let Some(value) = default.as_f64()
        && (as_f64(&param.minimum).is_some_and(|min| value < min)
            || as_f64(&param.maximum).is_some_and(|max| value > max))
    {
        return Err(format!(
            "param {name}: default {default} is outside min/max"
        ));
    }
    if let (Some(allowed), Some(text)) = (&param.allowed, default.as_str())
        && !allowed.iter().any(|a| a == text)
    {
        return Err(format!(
            "param {name}: default {default} is not one of enum"
        ));
    }
    Ok(())
}
