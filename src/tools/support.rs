//! What the generated tool code calls: argument parsing and checks that name
//! the argument and the rule, embedding, and result collection with a row cap.

use futures_util::{Stream, TryStreamExt};
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use super::{ToolContext, ToolError, ToolOutput};
use crate::embeddings::Embedder;

/// A generated tool's static description.
pub struct CuratedTool {
    pub name: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub source: &'static str,
    pub output_schema: &'static str,
    pub input_schema: fn() -> Value,
}

/// The JSON Schema of an argument struct, as MCP's `inputSchema`.
pub fn input_schema<T: schemars::JsonSchema>() -> Value {
    let schema = schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<T>();
    let mut value = serde_json::to_value(schema).expect("schemas serialise");
    if let Some(object) = value.as_object_mut() {
        // the tool carries its own title and description
        object.remove("$schema");
        object.remove("title");
        object.remove("description");
        // some clients require `properties`, even when there are none
        object
            .entry("properties")
            .or_insert_with(|| serde_json::json!({}));
    }
    value
}

/// Deserialises arguments, naming the argument that does not fit.
pub fn parse_arguments<T: DeserializeOwned>(arguments: Value) -> Result<T, ToolError> {
    let arguments = match arguments {
        Value::Null => Value::Object(Default::default()),
        Value::Object(_) => arguments,
        other => {
            return Err(ToolError::InvalidArguments(format!(
                "expected an object of named arguments, got {other}"
            )));
        }
    };
    serde_path_to_error::deserialize(arguments).map_err(|err| {
        let path = err.path().to_string();
        let message = err.inner().to_string();
        match message.strip_prefix("unknown field ") {
            Some(rest) => {
                // serde ends the message with ", expected one of …", or with
                // ", there are no fields" for a tool that takes no arguments
                let (field, expected) = match (
                    rest.split_once(", expected "),
                    rest.split_once(", there are no fields"),
                ) {
                    (Some((field, expected)), _) => (field, format!("; expected {expected}")),
                    (None, Some((field, _))) => (field, "; this tool takes none".to_owned()),
                    (None, None) => (rest, String::new()),
                };
                ToolError::InvalidArgument {
                    argument: field.trim_matches('`').to_owned(),
                    rule: format!("no such argument{expected}"),
                }
            }
            None if path == "." => match message.strip_prefix("missing field ") {
                Some(field) => ToolError::InvalidArgument {
                    argument: field.trim_matches('`').to_owned(),
                    rule: "is required".to_owned(),
                },
                None => ToolError::InvalidArguments(message),
            },
            None => ToolError::InvalidArgument {
                argument: path,
                rule: message,
            },
        }
    })
}

pub fn check_range<T: PartialOrd + std::fmt::Display>(
    argument: &str,
    value: &T,
    minimum: Option<T>,
    maximum: Option<T>,
) -> Result<(), ToolError> {
    let fail = |rule: String| ToolError::InvalidArgument {
        argument: argument.to_owned(),
        rule,
    };
    if let Some(minimum) = minimum.filter(|min| value < min) {
        return Err(fail(format!("must be at least {minimum}, got {value}")));
    }
    if let Some(maximum) = maximum.filter(|max| value > max) {
        return Err(fail(format!("must be at most {maximum}, got {value}")));
    }
    Ok(())
}

pub fn check_allowed(argument: &str, value: &str, allowed: &[&str]) -> Result<(), ToolError> {
    if allowed.contains(&value) {
        return Ok(());
    }
    Err(ToolError::InvalidArgument {
        argument: argument.to_owned(),
        rule: format!("must be one of {}, got {value:?}", allowed.join(", ")),
    })
}

pub fn check_not_blank(argument: &str, value: &str) -> Result<(), ToolError> {
    if value.trim().is_empty() {
        return Err(ToolError::InvalidArgument {
            argument: argument.to_owned(),
            rule: "must not be empty".to_owned(),
        });
    }
    Ok(())
}

/// The vector of `text` (the argument `argument` of tool `tool`), checked to
/// have the length the query compares, when it declares one.
pub async fn embed(
    embedder: &dyn Embedder,
    tool: &str,
    argument: &str,
    text: &str,
    dimensions: Option<usize>,
) -> Result<Vec<f32>, ToolError> {
    let mismatch = |made: usize, expected: usize| {
        ToolError::Unavailable(format!(
            "{tool} compares {expected}-dimensional vectors, but the embedding model {} makes \
             {made}-dimensional ones; configure a {expected}-dimensional model (e.g. \
             --embedding-dimensions {expected} --embedding-request-dimensions for OpenAI's \
             text-embedding-3 models)",
            embedder.model_id()
        ))
    };
    if let Some(expected) = dimensions
        && embedder.dimensions() != expected
    {
        return Err(mismatch(embedder.dimensions(), expected));
    }
    let vector = embedder
        .embed(text)
        .await
        .map_err(|err| ToolError::Embedding(format!("{argument}: {err:#}")))?;
    if let Some(expected) = dimensions
        && vector.len() != expected
    {
        return Err(mismatch(vector.len(), expected));
    }
    Ok(vector)
}

/// After an embedding query found nothing: refuses when no stored vector
/// was made by the caller's model, since an empty answer would then say
/// nothing about the catalogue. `sql` is `vectors_check_sql` of the table.
pub async fn check_stored_vectors(
    client: &impl sqlmcp_codegen::client::GenericClient,
    sql: &str,
    table: &str,
    model: &str,
) -> Result<(), ToolError> {
    let row = client
        .query_one(sql, &[&model])
        .await
        .map_err(ToolError::from_database)?;
    let known: bool = row.get(0);
    if known {
        return Ok(());
    }
    let stored: Option<String> = row.get(1);
    Err(ToolError::Unavailable(match stored {
        Some(stored) => format!(
            "{table} holds no vectors of the embedding model {model}, only of: {stored}; \
             vectors of different models cannot be compared. Run `sqlmcp embed` with this \
             server's embedding settings, or configure the server with the stored model"
        ),
        None => format!(
            "{table} holds no vectors yet; run `sqlmcp embed` with this server's embedding settings"
        ),
    }))
}

/// Reads at most `max_rows` rows from the stream (one more tells whether
/// there were more) into `{rows, row_count, truncated}`.
pub async fn collect_rows<T, E: std::fmt::Display>(
    rows: impl Stream<Item = Result<T, tokio_postgres::Error>>,
    to_json: impl Fn(T) -> Result<Value, E>,
    max_rows: usize,
    extra: Option<(&str, &str)>,
) -> Result<ToolOutput, ToolError> {
    let mut rows = std::pin::pin!(rows);
    let mut out = Vec::new();
    let mut truncated = false;
    while let Some(row) = rows.try_next().await.map_err(ToolError::from_database)? {
        if out.len() == max_rows {
            truncated = true;
            break;
        }
        out.push(
            to_json(row)
                .map_err(|err| ToolError::Database(format!("cannot encode a row: {err}")))?,
        );
    }
    let mut structured = serde_json::json!({
        "row_count": out.len(),
        "truncated": truncated,
        "rows": out,
    });
    if let Some((key, value)) = extra {
        structured[key] = Value::String(value.to_owned());
    }
    Ok(ToolOutput { structured })
}
