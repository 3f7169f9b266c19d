//! What the generated tool code calls: argument parsing and checks that name
//! the argument and the rule, embedding, and result collection with a row cap.

use futures_util::{Stream, TryStreamExt};
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use super::{ToolContext, ToolDescriptor, ToolError, ToolOutput};
pub use crate::db::Call;
use crate::embeddings::Embedder;

/// The JSON Schema of an argument struct, as MCP's `inputSchema`.
pub fn input_schema<T: schemars::JsonSchema>() -> Value {
    let schema = schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<T>();
    let mut value = serde_json::to_value(schema).expect("schemas serialise");
    standard_formats(&mut value);
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

/// The `format`s JSON Schema 2020-12 defines; strict validators (Ajv's
/// default) refuse a schema with any other.
const STANDARD_FORMATS: [&str; 19] = [
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "idn-email",
    "hostname",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "iri",
    "iri-reference",
    "uuid",
    "uri-template",
    "json-pointer",
    "relative-json-pointer",
    "regex",
];

/// `YYYY-MM-DDTHH:MM:SS[.fraction]`: a date and time without a time zone, as
/// the tools read and write it.
pub const LOCAL_DATE_TIME_PATTERN: &str =
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?$";

/// Rewrites schemars' OpenAPI-style formats (`int32`, `double`,
/// `partial-date-time`, …) into standard keywords: integer widths become
/// `minimum`/`maximum`, a date-time without a zone a `pattern`; other
/// unknown formats are dropped.
fn standard_formats(schema: &mut Value) {
    match schema {
        Value::Object(object) => {
            let format = object
                .get("format")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if let Some(format) = format.filter(|f| !STANDARD_FORMATS.contains(&f.as_str())) {
                object.remove("format");
                let bounds = match format.as_str() {
                    "int8" => Some((i64::from(i8::MIN), i64::from(i8::MAX))),
                    "int16" => Some((i64::from(i16::MIN), i64::from(i16::MAX))),
                    "int32" => Some((i64::from(i32::MIN), i64::from(i32::MAX))),
                    _ => None,
                };
                if let Some((minimum, maximum)) = bounds {
                    object.entry("minimum").or_insert(minimum.into());
                    object.entry("maximum").or_insert(maximum.into());
                }
                if format == "partial-date-time" {
                    object.insert("pattern".to_owned(), LOCAL_DATE_TIME_PATTERN.into());
                }
            }
            object.values_mut().for_each(standard_formats);
        }
        Value::Array(items) => items.iter_mut().for_each(standard_formats),
        _ => {}
    }
}

/// Deserialises arguments, naming the argument that does not fit.
pub fn parse_arguments<T: DeserializeOwned + schemars::JsonSchema>(
    arguments: Value,
) -> Result<T, ToolError> {
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
            None => {
                let rule = match expected_form(&input_schema::<T>(), &path) {
                    Some(form) if !message.starts_with("invalid type") => {
                        format!("{message}; expected {form}")
                    }
                    _ => message,
                };
                ToolError::InvalidArgument {
                    argument: path,
                    rule,
                }
            }
        }
    })
}

/// What a text argument at `path` (`since`, `days[2]`) must look like,
/// from its schema: date and time parsers' own messages do not say.
fn expected_form(schema: &Value, path: &str) -> Option<&'static str> {
    let name = path.split(['[', '.']).next()?;
    let mut property = &schema["properties"][name];
    if path.contains('[') {
        property = &property["items"];
    }
    if property["pattern"] == LOCAL_DATE_TIME_PATTERN {
        return Some("a date and time without a time zone, YYYY-MM-DDTHH:MM:SS[.fraction]");
    }
    match property["format"].as_str()? {
        "date" => Some("a date, YYYY-MM-DD"),
        "date-time" => Some("an RFC 3339 date and time with its offset, e.g. 2024-05-31T10:00:00Z"),
        "uuid" => Some("a UUID, e.g. f47ac10b-58cc-4372-a567-0e02b2c3d479"),
        _ => None,
    }
}

/// A `real` (f32) value, or an array of them, as its shortest decimal: JSON
/// numbers are doubles, and the double nearest an f32 prints its binary
/// noise.
#[allow(
    dead_code,
    reason = "called by generated tools with real columns, and no shipped query has one"
)]
pub fn real_as_written(value: &mut Value) {
    match value {
        Value::Number(number) => {
            if let Some(widened) = number.as_f64()
                && let Ok(shortest) = (widened as f32).to_string().parse::<f64>()
                && let Some(written) = serde_json::Number::from_f64(shortest)
            {
                *number = written;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(real_as_written),
        _ => {}
    }
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
/// nothing about the products. `sql` is `vectors_check_sql` of the table.
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
    Ok(ToolOutput {
        structured,
        visible: None,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reals_are_written_as_their_shortest_decimal() {
        let mut value =
            json!({ "one": 0.1_f32, "many": [0.1_f32, 3.4028235e38_f32], "other": "x" });
        assert_ne!(value["one"], json!(0.1), "widened, an f32 prints its noise");
        real_as_written(&mut value["one"]);
        real_as_written(&mut value["many"]);
        real_as_written(&mut value["other"]);
        assert_eq!(
            value,
            json!({ "one": 0.1, "many": [0.1, 3.4028235e38], "other": "x" })
        );
    }

    #[test]
    fn openapi_formats_become_standard_keywords() {
        let mut schema = json!({
            "properties": {
                "small": { "type": "integer", "format": "int16" },
                "days": { "type": "array", "items": { "type": "integer", "format": "int32", "minimum": 1 } },
                "ratio": { "type": "number", "format": "double" },
                "at": { "type": ["string", "null"], "format": "partial-date-time" },
                "day": { "type": "string", "format": "date" }
            }
        });
        standard_formats(&mut schema);
        assert_eq!(
            schema["properties"],
            json!({
                "small": { "type": "integer", "minimum": -32768, "maximum": 32767 },
                "days": { "type": "array", "items": { "type": "integer", "minimum": 1, "maximum": 2147483647 } },
                "ratio": { "type": "number" },
                "at": { "type": ["string", "null"], "pattern": LOCAL_DATE_TIME_PATTERN },
                "day": { "type": "string", "format": "date" }
            })
        );
        assert_eq!(
            expected_form(&schema, "at"),
            Some("a date and time without a time zone, YYYY-MM-DDTHH:MM:SS[.fraction]")
        );
        assert_eq!(expected_form(&schema, "day"), Some("a date, YYYY-MM-DD"));
        assert_eq!(expected_form(&schema, "ratio"), None);
    }
}
