//! `get_current_utc_date`: today's date and time in UTC, so a model can turn
//! "last month" into a date range.

use serde_json::{Value, json};

use super::{ToolDescriptor, ToolOutput};

pub const TOOL: ToolDescriptor = ToolDescriptor {
    name: "get_current_utc_date",
    title: "Current UTC date",
    description: "The current date and time in UTC. Use it to turn relative periods \
         (\"last quarter\", \"this year\") into the start_date and end_date arguments of other tools.",
    source: "src/tools/current_date.rs",
    input_schema: super::support::input_schema::<Args>,
    output_schema,
};

pub const NAME: &str = TOOL.name;

/// The tool takes no arguments.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Args {}

pub fn output_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "utc_datetime": { "type": "string", "format": "date-time" },
            "date": { "type": "string", "format": "date" },
            "weekday": { "type": "string" },
        },
        "required": ["utc_datetime", "date", "weekday"],
        "additionalProperties": false,
    })
}

pub fn call() -> ToolOutput {
    let now = chrono::Utc::now();
    ToolOutput {
        structured: json!({
            "utc_datetime": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "date": now.date_naive().to_string(),
            "weekday": now.format("%A").to_string(),
        }),
        visible: None,
    }
}
