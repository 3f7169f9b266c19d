//! Reads one `queries/*.sql` file: cornucopia's `--!` annotation, the `---`
//! doc lines, sqlmcp's `--@` directives and the SQL with its `:name` bind
//! parameters. Errors name the file and line.
//!
//! ```sql
//! --! top_products (start_date?, end_date?) : (category_name?)
//! --- Best-selling products over a period.
//! --@ title Top products
//! --@ param limit "How many products to return" default=10 min=1 max=100
//! --@ param rank_by "Rank by revenue or by units sold" default="revenue" enum=["revenue","units"]
//! --@ embed query_embedding from query_description "What to look for" model=model_id dims=384 vectors=retail.product_description_embeddings
//! SELECT ...
//! ```
//!
//! A query may also be read as a resource template, whose variables are
//! its arguments, with completions for them; and a file may serve only
//! that template, not a tool:
//!
//! ```sql
//! --@ resource zava://stores/{store_id}/summary "One store at a glance"
//! --@ resource-only
//! --@ complete store_id "SELECT store_id::text FROM retail.stores WHERE store_id::text LIKE :prefix || '%'"
//! --@ complete rank_by ["revenue", "units"]
//! ```

use std::fmt;

use serde_json::Value;

use crate::Embed;
use crate::uri_template::UriTemplate;

#[derive(Debug)]
pub struct QueryFile {
    pub name: String,
    pub nullable_params: Vec<String>,
    pub nullable_columns: Vec<String>,
    pub doc: Vec<String>,
    pub title: Option<String>,
    pub params: Vec<ParamDirective>,
    pub embeds: Vec<EmbedDirective>,
    /// The SQL with `:name` replaced by `$n`, for preparing.
    pub numbered_sql: String,
    /// Bind parameter names in order of first appearance.
    pub bind_params: Vec<String>,
    /// 1-based line of the file where each bind parameter first appears.
    pub bind_param_lines: Vec<usize>,
    /// 1-based line of the file where the SQL starts.
    pub sql_line: usize,
    /// `--@ resource <URI template>`.
    pub resource: Option<ResourceDirective>,
    /// The line of `--@ resource-only`: the file serves no tool.
    pub resource_only: Option<usize>,
    /// `--@ complete` lines, each for a variable of the template.
    pub completions: Vec<CompleteDirective>,
}

/// A `--@ resource <URI template> ["<description>"]` line.
#[derive(Debug)]
pub struct ResourceDirective {
    pub line: usize,
    pub template: UriTemplate,
    /// What a read answers, when it says less than the tool does (without
    /// one, the `---` description serves).
    pub description: Option<String>,
}

/// A `--@ complete <variable> <source>` line.
#[derive(Debug)]
pub struct CompleteDirective {
    pub line: usize,
    pub name: String,
    pub declared: Declared,
}

/// What a `--@ complete` line offers.
#[derive(Debug, Clone, PartialEq)]
pub enum Declared {
    /// `["a", "b"]`
    Values(Vec<String>),
    /// `"SELECT … LIKE :prefix || '%'"`, as written (checked by
    /// [`completion_sql`]).
    Query(String),
}

#[derive(Debug)]
pub struct ParamDirective {
    pub line: usize,
    pub name: String,
    pub description: String,
    pub default: Option<Value>,
    pub minimum: Option<Value>,
    pub maximum: Option<Value>,
    pub allowed: Option<Value>,
}

/// A `--@ embed` line: what the catalogue keeps of it, and where it is.
#[derive(Debug)]
pub struct EmbedDirective {
    pub line: usize,
    pub embed: Embed,
}

impl std::ops::Deref for EmbedDirective {
    type Target = Embed;

    fn deref(&self) -> &Embed {
        &self.embed
    }
}

#[derive(Debug)]
pub struct FileError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

fn error<T>(line: usize, message: impl Into<String>) -> Result<T, FileError> {
    Err(FileError {
        line,
        message: message.into(),
    })
}

pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.contains("__")
        && !name.ends_with('_')
}

pub fn parse(text: &str) -> Result<QueryFile, FileError> {
    let lines: Vec<&str> = text.lines().collect();
    let annotations: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].trim_start().starts_with("--!"))
        .collect();
    let start = match annotations.as_slice() {
        [one] => *one,
        [] => return error(1, "no `--! name` query annotation found"),
        [_, second, ..] => {
            return error(
                second + 1,
                "a second `--!` query; put each query (each tool) in a file of its own",
            );
        }
    };
    for (i, line) in lines[..start].iter().enumerate() {
        if !line.trim().is_empty() && !line.trim_start().starts_with("--") {
            return error(i + 1, "SQL before the `--!` annotation");
        }
    }
    let (name, nullable_params, nullable_columns) = parse_annotation(lines[start], start + 1)?;

    let mut doc = Vec::new();
    let mut title = None;
    let mut params = Vec::new();
    let mut embeds = Vec::new();
    let mut resource: Option<ResourceDirective> = None;
    let mut resource_only = None;
    let mut completions: Vec<CompleteDirective> = Vec::new();
    let mut index = start + 1;
    while index < lines.len() {
        let line = lines[index].trim_start();
        let line_no = index + 1;
        if let Some(rest) = line.strip_prefix("---") {
            doc.push(rest.trim().to_owned());
        } else if let Some(rest) = line.strip_prefix("--@") {
            let rest = rest.trim();
            let (directive, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            match directive {
                "title" if !args.trim().is_empty() => title = Some(args.trim().to_owned()),
                "param" => params.push(parse_param(args, line_no)?),
                "embed" => embeds.push(parse_embed(args, line_no)?),
                "resource" => {
                    if resource.is_some() {
                        return error(
                            line_no,
                            "a second `--@ resource`; a file serves one resource template",
                        );
                    }
                    resource = Some(parse_resource(args, line_no)?);
                }
                "resource-only" if args.trim().is_empty() => resource_only = Some(line_no),
                "complete" => {
                    let directive = parse_complete(args, line_no)?;
                    if completions.iter().any(|c| c.name == directive.name) {
                        return error(
                            line_no,
                            format!("a second `--@ complete {}`", directive.name),
                        );
                    }
                    completions.push(directive);
                }
                _ => {
                    return error(
                        line_no,
                        format!(
                            "unknown directive `--@ {rest}`; expected `--@ title <text>`, \
                             `--@ param <name> \"<description>\" [default=…] [min=…] [max=…] [enum=[…]]`, \
                             `--@ embed <vector param> from <text argument> \"<description>\" [model=<param>]`, \
                             `--@ resource <URI template> [\"<description>\"]`, `--@ resource-only` \
                             or `--@ complete <variable> \"<SQL with :prefix>\"|[\"<value>\", …]`"
                        ),
                    );
                }
            }
        } else if line.starts_with("--") || line.is_empty() {
            // an ordinary comment or a blank line
        } else {
            break;
        }
        index += 1;
    }
    let sql_line = index + 1;
    let body = lines[index..].join("\n");
    let numbered = number_params(&body, sql_line)?;
    if numbered.text.trim().is_empty() {
        return error(sql_line, format!("query `{name}` has no SQL"));
    }
    check_read_only(&numbered.text, sql_line)?;
    check_resource_directives(resource.as_ref(), resource_only, &completions)?;
    Ok(QueryFile {
        name,
        nullable_params,
        nullable_columns,
        doc,
        title,
        params,
        embeds,
        numbered_sql: numbered.text,
        bind_params: numbered.names,
        bind_param_lines: numbered.lines,
        sql_line,
        resource,
        resource_only,
        completions,
    })
}

/// `--@ resource-only` and `--@ complete` go with a `--@ resource`, and
/// each `--@ complete` names one of its variables.
fn check_resource_directives(
    resource: Option<&ResourceDirective>,
    resource_only: Option<usize>,
    completions: &[CompleteDirective],
) -> Result<(), FileError> {
    let Some(resource) = resource else {
        if let Some(line) = resource_only {
            return error(
                line,
                "`--@ resource-only` without a `--@ resource <URI template>`: the file would \
                 serve nothing",
            );
        }
        if let Some(complete) = completions.first() {
            return error(
                complete.line,
                format!(
                    "`--@ complete {}` without a `--@ resource <URI template>`: completions are \
                     offered for the variables of a resource template",
                    complete.name
                ),
            );
        }
        return Ok(());
    };
    for complete in completions {
        if !resource.template.variables().any(|v| v == complete.name) {
            return error(
                complete.line,
                format!(
                    "`--@ complete {}`: `{}` has no variable `{{{}}}` (its variables: {})",
                    complete.name,
                    resource.template,
                    complete.name,
                    resource.template.variables().collect::<Vec<_>>().join(", ")
                ),
            );
        }
    }
    Ok(())
}

/// `--@ resource zava://stores/{store_id}/summary ["<description>"]`
fn parse_resource(args: &str, line: usize) -> Result<ResourceDirective, FileError> {
    let args = args.trim();
    let (text, description) = match args.find(char::is_whitespace) {
        Some(end) => {
            let (description, rest) = leading_string(&args[end..], line, "resource")?;
            if !rest.trim().is_empty() {
                return error(
                    line,
                    format!(
                        "unexpected `{}` after the description; expected `--@ resource <URI \
                         template> [\"<description>\"]`",
                        rest.trim()
                    ),
                );
            }
            (&args[..end], Some(description))
        }
        None => (args, None),
    };
    let template = UriTemplate::parse(text).or_else(|message| error(line, message))?;
    for reserved in [crate::TABLE_RESOURCES, crate::QUERY_RESOURCES] {
        if text.starts_with(reserved) {
            return error(
                line,
                format!(
                    "`{text}`: URIs under {reserved} are the server's own resources; choose \
                     another path"
                ),
            );
        }
    }
    Ok(ResourceDirective {
        line,
        template,
        description,
    })
}

/// `--@ complete <variable> "<SQL>"` or `--@ complete <variable> ["a", …]`
fn parse_complete(args: &str, line: usize) -> Result<CompleteDirective, FileError> {
    let usage = "expected `--@ complete <variable> \"SELECT … WHERE … LIKE :prefix || '%'\"` \
                 or `--@ complete <variable> [\"value\", …]`";
    let args = args.trim_start();
    let name_end = args.find(char::is_whitespace).unwrap_or(args.len());
    let name = &args[..name_end];
    if !is_identifier(name) {
        return error(line, format!("`{name}` is not a variable name; {usage}"));
    }
    let rest = args[name_end..].trim();
    let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
    let value = match stream.next() {
        Some(Ok(value)) if rest[stream.byte_offset()..].trim().is_empty() => value,
        _ => return error(line, format!("complete {name}: {usage}")),
    };
    let declared = match value {
        Value::String(sql) => {
            completion_sql(&sql, line)?;
            Declared::Query(sql)
        }
        Value::Array(items) if !items.is_empty() => Declared::Values(
            items
                .into_iter()
                .map(|item| match item {
                    Value::String(value) => Ok(value),
                    _ => error(
                        line,
                        format!("complete {name}: the values are strings; {usage}"),
                    ),
                })
                .collect::<Result<_, _>>()?,
        ),
        _ => return error(line, format!("complete {name}: {usage}")),
    };
    Ok(CompleteDirective {
        line,
        name: name.to_owned(),
        declared,
    })
}

/// The SQL of a completion query, with `:prefix` numbered `$1`; `line` is
/// where it is declared (on one line). Refused: a statement that is not a
/// query, any parameter but `:prefix`, and a query that does not compare
/// with LIKE or ILIKE (`:prefix` arrives escaped for LIKE).
pub fn completion_sql(sql: &str, line: usize) -> Result<String, FileError> {
    let numbered = number_params(sql, line)?;
    if numbered.text.trim().is_empty() {
        return error(line, "the completion query is empty");
    }
    if numbered.names != ["prefix"] {
        let found = match numbered.names.as_slice() {
            [] => "none".to_owned(),
            names => names
                .iter()
                .map(|n| format!(":{n}"))
                .collect::<Vec<_>>()
                .join(", "),
        };
        return error(
            line,
            format!(
                "a completion query takes one parameter, :prefix (what the user typed so far); \
                 found {found}"
            ),
        );
    }
    check_read_only(&numbered.text, line)?;
    if !tokens(&numbered.text)
        .iter()
        .any(|(_, word)| word == "like" || word == "ilike")
    {
        return error(
            line,
            "a completion query compares with `LIKE :prefix || '%'` (or ILIKE): :prefix arrives \
             as a LIKE pattern with `\\`, `%` and `_` escaped, so what a user types is never a \
             wildcard",
        );
    }
    Ok(numbered.text)
}

/// `--! name (a?, b) : (c?)`
fn parse_annotation(
    line: &str,
    line_no: usize,
) -> Result<(String, Vec<String>, Vec<String>), FileError> {
    let rest = line.trim_start().trim_start_matches("--!").trim();
    let name_end = rest
        .find(|c: char| c.is_whitespace() || c == '(' || c == ':')
        .unwrap_or(rest.len());
    let name = &rest[..name_end];
    if !is_identifier(name) {
        return error(
            line_no,
            format!("query name `{name}` must be snake_case (it becomes the tool name)"),
        );
    }
    let mut rest = rest[name_end..].trim_start();
    let list = |rest: &mut &str| -> Result<Vec<String>, FileError> {
        let Some(inner) = rest.strip_prefix('(') else {
            return Ok(Vec::new());
        };
        let Some(close) = inner.find(')') else {
            return error(line_no, "unclosed `(` in the `--!` annotation");
        };
        let names = inner[..close]
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.trim_end_matches('?').trim().to_owned())
            .collect();
        let all_nullable = inner[..close]
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .all(|s| s.ends_with('?'));
        if !all_nullable {
            return error(
                line_no,
                "list only nullable names, each with `?`, in the `--!` annotation \
                 (`(start_date?, store_id?)`)",
            );
        }
        *rest = inner[close + 1..].trim_start();
        Ok(names)
    };
    let params = list(&mut rest)?;
    let columns = match rest.strip_prefix(':') {
        Some(after) => {
            let mut after = after.trim_start();
            if !after.starts_with('(') {
                return error(
                    line_no,
                    "named row types (`: RowType(...)`) are not supported for tools; \
                     use `: (column?, ...)`",
                );
            }
            let columns = list(&mut after)?;
            rest = after;
            columns
        }
        None => Vec::new(),
    };
    if !rest.trim().is_empty() {
        return error(
            line_no,
            format!("unexpected `{}` in the `--!` annotation", rest.trim()),
        );
    }
    Ok((name.to_owned(), params, columns))
}

/// Reads a JSON string at the start of `text`; returns it and the rest.
fn leading_string(text: &str, line: usize, what: &str) -> Result<(String, String), FileError> {
    let text = text.trim_start();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    match stream.next() {
        Some(Ok(Value::String(s))) => Ok((s, text[stream.byte_offset()..].to_owned())),
        _ => error(
            line,
            format!("{what}: expected a description in double quotes"),
        ),
    }
}

/// `key=<JSON value>` pairs.
fn key_values(mut text: &str, line: usize) -> Result<Vec<(String, Value)>, FileError> {
    let mut pairs = Vec::new();
    loop {
        text = text.trim_start();
        if text.is_empty() {
            return Ok(pairs);
        }
        let Some((key, after)) = text.split_once('=') else {
            return error(line, format!("expected key=value, found `{text}`"));
        };
        let mut stream = serde_json::Deserializer::from_str(after).into_iter::<Value>();
        let value = match stream.next() {
            Some(Ok(value)) => value,
            // bare words read as strings: model=model_id
            _ => {
                let word_end = after.find(char::is_whitespace).unwrap_or(after.len());
                pairs.push((
                    key.trim().to_owned(),
                    Value::String(after[..word_end].to_owned()),
                ));
                text = &after[word_end..];
                continue;
            }
        };
        pairs.push((key.trim().to_owned(), value));
        text = &after[stream.byte_offset()..];
    }
}

fn parse_param(args: &str, line: usize) -> Result<ParamDirective, FileError> {
    let args = args.trim_start();
    let name_end = args.find(char::is_whitespace).unwrap_or(args.len());
    let name = &args[..name_end];
    if !is_identifier(name) {
        return error(
            line,
            format!("`--@ param`: `{name}` is not a parameter name"),
        );
    }
    let (description, rest) = leading_string(&args[name_end..], line, &format!("param {name}"))?;
    let mut directive = ParamDirective {
        line,
        name: name.to_owned(),
        description,
        default: None,
        minimum: None,
        maximum: None,
        allowed: None,
    };
    for (key, value) in key_values(&rest, line)? {
        let slot = match key.as_str() {
            "default" => &mut directive.default,
            "min" => &mut directive.minimum,
            "max" => &mut directive.maximum,
            "enum" => &mut directive.allowed,
            _ => {
                return error(
                    line,
                    format!(
                        "param {name}: unknown key `{key}` (expected default, min, max or enum)"
                    ),
                );
            }
        };
        *slot = Some(value);
    }
    Ok(directive)
}

fn parse_embed(args: &str, line: usize) -> Result<EmbedDirective, FileError> {
    let usage = "expected `--@ embed <vector param> from <text argument> \"<description>\" \
                 [model=<param>] [dims=<n>] [vectors=<schema>.<table>]`";
    let mut words = args.split_whitespace();
    let (Some(vector_param), Some("from"), Some(text_arg)) =
        (words.next(), words.next(), words.next())
    else {
        return error(line, usage);
    };
    if !is_identifier(vector_param) || !is_identifier(text_arg) {
        return error(line, usage);
    }
    let after_arg = &args[args.find(text_arg).expect("word of args") + text_arg.len()..];
    let (description, rest) = leading_string(after_arg, line, &format!("embed {vector_param}"))?;
    let mut model_param = None;
    let mut dimensions = None;
    let mut vectors = None;
    for (key, value) in key_values(&rest, line)? {
        match (key.as_str(), value) {
            ("model", Value::String(param)) if is_identifier(&param) => model_param = Some(param),
            ("dims", Value::Number(n)) if n.as_u64().is_some_and(|n| (1..=16_000).contains(&n)) => {
                dimensions = n.as_u64().map(|n| n as u32);
            }
            ("vectors", Value::String(table))
                if table
                    .split_once('.')
                    .is_some_and(|(schema, name)| is_identifier(schema) && is_identifier(name)) =>
            {
                vectors = Some(table);
            }
            _ => {
                return error(
                    line,
                    format!("embed {vector_param}: `{key}=…` is unknown or invalid; {usage}"),
                );
            }
        }
    }
    Ok(EmbedDirective {
        line,
        embed: Embed {
            vector_param: vector_param.to_owned(),
            text_arg: text_arg.to_owned(),
            description,
            model_param,
            dimensions,
            vectors,
        },
    })
}

/// A query's SQL with its bind parameters numbered.
#[derive(Debug)]
pub struct NumberedSql {
    /// The SQL with `$n` for `:name`, comments blanked (line breaks kept)
    /// and the final `;` removed.
    pub text: String,
    /// Parameter names, in order of first appearance.
    pub names: Vec<String>,
    /// The line of each parameter's first appearance.
    pub lines: Vec<usize>,
}

/// Replaces `:name` bind parameters by `$n` (numbered by first appearance,
/// as cornucopia does), skipping literals, quoted identifiers, comments and
/// `::` casts.
pub fn number_params(sql: &str, first_line: usize) -> Result<NumberedSql, FileError> {
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut names: Vec<String> = Vec::new();
    let mut lines: Vec<usize> = Vec::new();
    let mut i = 0;
    let line_of = |at: usize| first_line + sql[..at].matches('\n').count();
    while i < bytes.len() {
        let c = bytes[i];
        let rest = &sql[i..];
        if rest.starts_with("--") {
            let end = rest.find('\n').map_or(sql.len(), |n| i + n);
            i = end;
        } else if rest.starts_with("/*") {
            let Some(end) = rest.find("*/") else {
                return error(line_of(i), "unclosed /* comment");
            };
            // keep the tokens on either side apart, and the line numbers
            let newlines = rest[..end].matches('\n').count();
            out.push_str(if newlines == 0 { " " } else { "" });
            out.push_str(&"\n".repeat(newlines));
            i += end + 2;
        } else if c == b'\'' || c == b'"' {
            let mut j = i + 1;
            loop {
                match bytes.get(j) {
                    None => return error(line_of(i), "unclosed quote"),
                    Some(&q) if q == c && bytes.get(j + 1) == Some(&c) => j += 2,
                    Some(&q) if q == c => break,
                    Some(_) => j += 1,
                }
            }
            out.push_str(&sql[i..=j]);
            i = j + 1;
        } else if c == b'$' && dollar_tag(rest).is_some() {
            let tag = dollar_tag(rest).expect("checked");
            let Some(end) = sql[i + tag.len()..].find(tag) else {
                return error(line_of(i), format!("unclosed {tag} quote"));
            };
            let end = i + tag.len() + end + tag.len();
            out.push_str(&sql[i..end]);
            i = end;
        } else if rest.starts_with("::") {
            out.push_str("::");
            i += 2;
        } else if c == b':'
            && bytes
                .get(i + 1)
                .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
        {
            let len = rest[1..]
                .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                .unwrap_or(rest.len() - 1);
            let name = &rest[1..1 + len];
            let number = match names.iter().position(|n| n == name) {
                Some(position) => position + 1,
                None => {
                    names.push(name.to_owned());
                    lines.push(line_of(i));
                    names.len()
                }
            };
            out.push_str(&format!("${number}"));
            i += 1 + len;
        } else {
            let ch = rest.chars().next().expect("not at the end");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    let text = out.trim_end().trim_end_matches(';').trim_end().to_owned();
    Ok(NumberedSql { text, names, lines })
}

/// Words and opening parentheses of SQL whose comments are blanked, with
/// their byte offsets; literals and quoted identifiers are skipped.
fn tokens(sql: &str) -> Vec<(usize, String)> {
    let bytes = sql.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'\'' || c == b'"' {
            i += 1;
            while i < bytes.len() {
                if bytes[i] == c && bytes.get(i + 1) == Some(&c) {
                    i += 2;
                } else if bytes[i] == c {
                    break;
                } else {
                    i += 1;
                }
            }
            i += 1;
        } else if c == b'$' && dollar_tag(&sql[i..]).is_some() {
            let tag = dollar_tag(&sql[i..]).expect("checked");
            i = sql[i + tag.len()..]
                .find(tag)
                .map_or(sql.len(), |end| i + tag.len() + end + tag.len());
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let end = sql[i..]
                .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_' || ch == '$'))
                .map_or(sql.len(), |n| i + n);
            tokens.push((i, sql[i..end].to_ascii_lowercase()));
            i = end;
        } else if c == b'(' {
            tokens.push((i, "(".to_owned()));
            i += 1;
        } else {
            i += 1;
        }
    }
    tokens
}

/// Every call runs in a read-only transaction: a statement that writes or
/// locks rows would fail on every call, so it fails the build instead.
fn check_read_only(sql: &str, first_line: usize) -> Result<(), FileError> {
    let tokens = tokens(sql);
    let line_of = |at: usize| first_line + sql[..at].matches('\n').count();
    let words: Vec<&str> = tokens.iter().map(|(_, word)| word.as_str()).collect();
    if let Some((at, first)) = tokens.first()
        && !["select", "with", "values", "table", "("].contains(&first.as_str())
    {
        return error(
            line_of(*at),
            format!(
                "a `{}` statement cannot be a tool: every call runs in a read-only transaction; \
                 write a query (SELECT, WITH … SELECT, VALUES or TABLE)",
                first.to_ascii_uppercase()
            ),
        );
    }
    for (index, (at, word)) in tokens.iter().enumerate() {
        let after = |n: usize| words.get(index + n).copied().unwrap_or_default();
        if word == "as" {
            // AS [NOT] [MATERIALIZED] ( INSERT | UPDATE | DELETE | MERGE
            let mut next = 1;
            next += usize::from(after(next) == "not");
            next += usize::from(after(next) == "materialized");
            let verb = after(next + 1);
            if after(next) == "(" && ["insert", "update", "delete", "merge"].contains(&verb) {
                return error(
                    line_of(tokens[index + next + 1].0),
                    format!(
                        "a `WITH … AS ({})` writes, which no call can do: every call runs in a \
                         read-only transaction; tools only read",
                        verb.to_ascii_uppercase()
                    ),
                );
            }
        }
        if word == "for" && ["update", "share", "no", "key"].contains(&after(1)) {
            return error(
                line_of(*at),
                "`FOR UPDATE`/`FOR SHARE` locks rows, which no call can do: every call runs in a \
                 read-only transaction; remove the locking clause",
            );
        }
    }
    Ok(())
}

/// `$$` or `$tag$` at the start of `text`.
fn dollar_tag(text: &str) -> Option<&str> {
    let inner_end = text[1..].find('$')?;
    let tag = &text[1..1 + inner_end];
    let valid = tag
        .chars()
        .enumerate()
        .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
    valid.then(|| &text[..inner_end + 2])
}
